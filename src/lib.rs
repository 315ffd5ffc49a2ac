//! Enlightened locks for code that runs inside virtual machines.
//!
//! Work in progress: see the README for the plan.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[allow(dead_code)] // used by the lock modules as they land
mod backoff;
#[allow(dead_code)]
mod cs;
#[cfg(any(feature = "std", feature = "guest"))]
mod raw_rcu;
pub mod rcu;
mod sync;

// Spinning family (spin, ticket, MCS, spin rwlock).
#[cfg(any(feature = "std", feature = "guest"))]
mod mcs;
#[cfg(any(feature = "std", feature = "guest"))]
mod raw_mcs;
mod raw_spin;
mod raw_spin_rwlock;
mod raw_ticket;
mod spin;
mod spin_rwlock;
mod ticket;

#[cfg(any(feature = "std", feature = "guest"))]
pub use mcs::{MappedMcsMutexGuard, McsMutex, McsMutexGuard};
#[cfg(any(feature = "std", feature = "guest"))]
pub use raw_mcs::RawMcsMutex;
pub use raw_spin::RawSpinMutex;
pub use raw_spin_rwlock::RawSpinRwLock;
pub use raw_ticket::RawTicketMutex;
pub use spin::{MappedSpinMutexGuard, SpinMutex, SpinMutexGuard};
pub use spin_rwlock::{
    MappedSpinRwLockReadGuard, MappedSpinRwLockWriteGuard, SpinRwLock, SpinRwLockReadGuard,
    SpinRwLockUpgradableReadGuard, SpinRwLockWriteGuard,
};
pub use ticket::{MappedTicketMutexGuard, TicketMutex, TicketMutexGuard};

pub use ecs_sys;
pub use lock_api;

// The blocking family (parking_lot 0.13 names).
mod condvar;
mod fair_mutex;
mod mutex;
mod once;
mod park;
mod raw_condvar;
mod raw_fair_mutex;
mod raw_mutex;
mod raw_rwlock;
#[cfg(any(feature = "std", feature = "guest"))]
mod remutex;
mod rwlock;

pub use condvar::{Condvar, WaitTimeoutResult};
#[cfg(not(loom))]
pub use fair_mutex::const_fair_mutex;
pub use fair_mutex::{FairMutex, FairMutexGuard, MappedFairMutexGuard};
#[cfg(not(loom))]
pub use mutex::const_mutex;
pub use mutex::{MappedMutexGuard, Mutex, MutexGuard};
pub use once::{Once, OnceState};
pub use raw_condvar::RawCondvar;
pub use raw_fair_mutex::RawFairMutex;
pub use raw_mutex::RawMutex;
pub use raw_rwlock::RawRwLock;
#[cfg(all(any(feature = "std", feature = "guest"), not(loom)))]
pub use remutex::const_reentrant_mutex;
#[cfg(any(feature = "std", feature = "guest"))]
pub use remutex::{MappedReentrantMutexGuard, RawThreadId, ReentrantMutex, ReentrantMutexGuard};
#[cfg(not(loom))]
pub use rwlock::const_rwlock;
pub use rwlock::{
    MappedRwLockReadGuard, MappedRwLockWriteGuard, RwLock, RwLockReadGuard,
    RwLockUpgradableReadGuard, RwLockWriteGuard,
};

// Read-copy-update.
#[cfg(feature = "std")]
pub use rcu::Rcu;
#[cfg(any(feature = "std", feature = "guest"))]
pub use rcu::{RcuReadGuard, RcuRing};
