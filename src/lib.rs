//! Enlightened locks for code that runs inside virtual machines.
//!
//! A VM is scheduled twice: the guest puts threads on vCPUs, the host puts vCPUs on physical
//! CPUs. When the host preempts a vCPU that holds a lock, every vCPU waiting for it spins away
//! its slice. Every lock here makes its critical sections *enlightened* (the eCS paper,
//! "Scaling Guest OS Critical Sections with eCS", USENIX ATC 2018): a holder marks "inside a
//! critical section" through [`ecs_sys`] so the host can defer preempting it, and waiters act on
//! the host's "that vCPU is preempted" / "this pCPU is overloaded" hints. On bare metal (the
//! default `native` backend) the marks are a thread-local counter and the hints are constant,
//! so the locks behave like ordinary ones.
//!
//! # From raw lock to use
//!
//! Each lock is a raw type implementing [`lock_api`] 0.5's traits, wrapped by a type alias:
//!
//! ```
//! use ecs_locks::{Mutex, RawSpinMutex, SpinMutex};
//!
//! // The alias: SpinMutex<T> = lock_api::Mutex<RawSpinMutex, T>.
//! let m: SpinMutex<Vec<u32>> = SpinMutex::new(Vec::new());
//! m.lock().push(1);
//! let same: lock_api::Mutex<RawSpinMutex, u8> = lock_api::Mutex::new(0);
//! drop(same);
//!
//! // The blocking default, under parking_lot's name.
//! let counter = Mutex::new(0);
//! *counter.lock() += 1;
//! assert_eq!(*counter.lock(), 1);
//! ```
//!
//! # Moving from parking_lot
//!
//! The public names mirror parking_lot 0.13 (`Mutex`, `FairMutex`, `RwLock` with upgradable
//! reads, `ReentrantMutex`, `Condvar`, `Once`, the guard and mapped-guard types, timed
//! variants), so the migration is the import:
//!
//! ```diff
//! -use parking_lot::{Condvar, Mutex, RwLock};
//! +use ecs_locks::{Condvar, Mutex, RwLock};
//! ```
//!
//! `tests/parking_lot_swap.rs` compiles one module against both crates and runs the same
//! assertions on each; `tests/parking_lot_api.rs` imports every item parking_lot 0.13 exports.
//! Guards are `!Send`, as in parking_lot without `send_guard`; the features `arc_lock`,
//! `send_guard`, `serde` and `deadlock_detection` do what parking_lot's do (below).
//!
//! # The locks
//!
//! | type | kind | fairness |
//! |---|---|---|
//! | [`Mutex`] | blocking, adaptive: spins while the holder runs (capped), parks otherwise | barging, fair unlock on request |
//! | [`FairMutex`] | blocking, hands the lock to the first waiter | FIFO hand-off |
//! | [`RwLock`] | blocking reader-writer, upgradable reads, downgrade, timed | writer-preferring |
//! | [`RecursiveRwLock`] | [`RwLock`] whose readers may read-lock again | readers join other readers ahead of a waiting writer |
//! | [`ReentrantMutex`], [`Condvar`], [`Once`] | as in parking_lot | |
//! | [`SpinMutex`] | test-and-test-and-set with backoff | unfair |
//! | [`TicketMutex`] | ticket spinlock; waiters that do not run are skipped | FIFO among running waiters |
//! | [`McsMutex`] | queued spinlock, local spinning | see its docs |
//! | [`SpinRwLock`] | spinning reader-writer lock | writer-preferring |
//! | [`Rcu`], [`RcuRing`] | read-copy-update; readers write only their own slot | readers never wait |
//!
//! # Features
//!
//! | feature | effect |
//! |---|---|
//! | `std` (default) | the native hint backend (thread-local depth); blocking locks park through parking_lot_core; timed methods; `Rcu<T>` |
//! | `arc_lock` | lock_api's `Arc` guards (`lock_arc`, `read_arc`, ...) and parking_lot's `Arc*Guard` re-exports |
//! | `send_guard` | the blocking locks' guards are `Send`; those locks then raise no blocking-section hint (a foreign release would unbalance the per-thread depth). Spin-family guards stay `!Send` |
//! | `serde` | lock_api's `Serialize`/`Deserialize` for every lock |
//! | `deadlock_detection` | parking_lot_core's detector, `deadlock::check_deadlock` (enables `std`) |
//! | none | `no_std` without a hypervisor: see below |
//!
//! Without `std` (and without `--cfg ecs_guest`) the spinning locks are unchanged; the blocking
//! locks keep their protocols and APIs but a waiter that would sleep spins in the portable wait
//! queue (there is nothing to sleep on), the timed methods are absent (no clock), and
//! `ReentrantMutex`, `McsMutex`, `RcuRing` and `Rcu` are absent (they need thread identity or
//! per-thread state). With `--cfg ecs_guest` blocking waiters halt their vCPU (WAIT/KICK) and
//! those types exist. parking_lot's `owning_ref` and `nightly` features are not provided.
//!
//! Features are additive: none of them changes the hint backend or how a blocking lock
//! blocks, so `--all-features` is sound everywhere. Two rustc cfgs do, and only the final
//! binary sets them (in its rustflags, like `tokio_unstable`), never a dependency:
//!
//! | cfg | effect |
//! |---|---|
//! | `--cfg ecs_guest` | for code inside an `ecs-shim` VM (`no_std`, x86_64): hints read from the vCPU's shared slot, blocking locks halt with the WAIT hypercall and are woken by KICK. Undefined behaviour anywhere else (`%fs` is the TLS block on Linux). |
//! | `--cfg ecs_portable_park` | testing aid: with `std`, the blocking locks use the crate's portable wait queue (waiters spin) instead of parking_lot_core, so the native suites exercise the guest's queue logic (`scripts/test-all.sh`) |
//!
//! The spinning family's guards are `!Send` under every feature set, `send_guard` included:
//! their holder is a critical section of the acquiring thread (its depth is the hint the host
//! reads), so a release elsewhere would unbalance two threads' depths.
//!
//! ```compile_fail
//! fn assert_send<T: Send>() {}
//! assert_send::<ecs_locks::SpinMutexGuard<'static, ()>>();
//! ```
//! ```compile_fail
//! fn assert_send<T: Send>() {}
//! assert_send::<ecs_locks::TicketMutexGuard<'static, ()>>();
//! ```
//! ```compile_fail
//! fn assert_send<T: Send>() {}
//! assert_send::<ecs_locks::SpinRwLockReadGuard<'static, ()>>();
//! ```
//! ```compile_fail
//! fn assert_send<T: Send>() {}
//! assert_send::<ecs_locks::McsMutexGuard<'static, ()>>();
//! ```
//!
//! # Misuse
//!
//! The raw APIs are `unsafe` where the type system cannot check the contract (unlocking with
//! the guard state of another acquisition or another lock). Debug builds catch what they cheaply
//! can with a clear panic: unlocking an unlocked lock, a second `lock` of a non-reentrant
//! [`Mutex`] or [`McsMutex`] by its holder (each type's docs say exactly what it checks).
//! Leaking a guard (`mem::forget`, `MutexGuard::leak`) is safe, as lock_api requires, and leaks
//! its critical-section mark with it: inside a VM the host keeps extending that vCPU's slices,
//! within its bound, until `force_unlock` ends the section.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod adaptive_spin;
mod backoff;
mod cs;
/// Deadlock detection (the `deadlock_detection` feature): [`deadlock::check_deadlock`].
#[cfg(feature = "deadlock_detection")]
pub mod deadlock;
#[cfg(not(feature = "deadlock_detection"))]
mod deadlock;

/// The guard state of the blocking locks: `Send` with the `send_guard` feature (parking_lot's
/// `GuardMarker`). The spinning family keeps `GuardNoSend`: its holder is a critical section of
/// the acquiring thread (or vCPU).
#[cfg(feature = "send_guard")]
type GuardMarker = lock_api::GuardSend;
/// The guard state of the blocking locks: `!Send` without the `send_guard` feature.
#[cfg(not(feature = "send_guard"))]
type GuardMarker = lock_api::GuardNoSend;
#[cfg(any(feature = "std", ecs_guest))]
mod fork;
#[cfg(any(feature = "std", ecs_guest))]
mod raw_rcu;
pub mod rcu;
mod sync;

// Spinning family (spin, ticket, MCS, spin rwlock).
#[cfg(any(feature = "std", ecs_guest))]
mod mcs;
#[cfg(any(feature = "std", ecs_guest))]
mod raw_mcs;
mod raw_spin;
mod raw_spin_rwlock;
mod raw_ticket;
mod spin;
mod spin_rwlock;
mod ticket;

#[cfg(any(feature = "std", ecs_guest))]
pub use mcs::{MappedMcsMutexGuard, McsMutex, McsMutexGuard};
#[cfg(any(feature = "std", ecs_guest))]
pub use raw_mcs::RawMcsMutex;
pub use raw_spin::RawSpinMutex;
pub use raw_spin_rwlock::RawSpinRwLock;
pub use raw_ticket::{RawTicketMutex, TicketOrder};
pub use spin::{MappedSpinMutexGuard, SpinMutex, SpinMutexGuard};
pub use spin_rwlock::{
    MappedSpinRwLockReadGuard, MappedSpinRwLockWriteGuard, SpinRwLock, SpinRwLockReadGuard,
    SpinRwLockUpgradableReadGuard, SpinRwLockWriteGuard,
};
pub use ticket::{MappedTicketMutexGuard, TicketMutex, TicketMutexGuard};

pub use ecs_sys;
pub use lock_api;

// parking_lot's `arc_lock` re-exports (guards that own an `Arc` of their lock).
#[cfg(feature = "arc_lock")]
pub use lock_api::{
    ArcMutexGuard, ArcReentrantMutexGuard, ArcRwLockReadGuard, ArcRwLockUpgradableReadGuard,
    ArcRwLockWriteGuard,
};

// The blocking family (parking_lot 0.13 names).
mod condvar;
mod fair_mutex;
mod mutex;
mod once;
mod park;
/// Loom-only test hook into the portable park queue (see `park/queue.rs`). Not an API.
#[cfg(loom)]
#[doc(hidden)]
pub use park::loom_hook as __loom_park;
mod raw_condvar;
mod raw_fair_mutex;
mod raw_mutex;
mod raw_rwlock;
mod recursive_rwlock;
#[cfg(any(feature = "std", ecs_guest))]
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
pub use raw_rwlock::{RawRwLock, RawRwLockRecursive};
pub use recursive_rwlock::{
    MappedRecursiveRwLockReadGuard, MappedRecursiveRwLockWriteGuard, RecursiveRwLock,
    RecursiveRwLockReadGuard, RecursiveRwLockUpgradableReadGuard, RecursiveRwLockWriteGuard,
};
#[cfg(all(any(feature = "std", ecs_guest), not(loom)))]
pub use remutex::const_reentrant_mutex;
#[cfg(any(feature = "std", ecs_guest))]
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
#[cfg(any(feature = "std", ecs_guest))]
pub use rcu::{RcuReadGuard, RcuRing};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
