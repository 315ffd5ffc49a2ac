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
pub use raw_mcs::{McsHandle, RawMcsMutex};
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
