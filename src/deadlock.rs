//! \[Experimental\] Deadlock detection (the `deadlock_detection` feature), as in parking_lot 0.13.
//!
//! With the feature, every blocking lock records its acquisitions in parking_lot_core's
//! per-thread resource lists (`acquire_resource` right after acquiring, `release_resource`
//! right before releasing, at the same points as parking_lot: [`Mutex`](crate::Mutex),
//! [`FairMutex`](crate::FairMutex), [`ReentrantMutex`](crate::ReentrantMutex), the
//! [`Condvar`](crate::Condvar) re-lock, [`RwLock`](crate::RwLock) and
//! [`RecursiveRwLock`](crate::RecursiveRwLock) with a primary and a secondary resource each,
//! and the closure of [`Once`](crate::Once)). [`check_deadlock`](crate::deadlock::check_deadlock) then finds cycles among
//! threads parked in parking_lot_core. The spinning locks never park, so they are not part of
//! the graph (a thread spinning on one is running, not deadlocked, as far as the detector can
//! tell).
//!
//! The feature needs `std` (it enables it) and parks through parking_lot_core: a build with
//! `--cfg ecs_portable_park` parks in the crate's own queue, which the detector cannot see.
//!
//! Reporting is destructive, as in parking_lot: detected threads are removed from their
//! parking queues, capture their backtraces, and then stay blocked for ever.
//!
//! With `send_guard` as well (parking_lot refuses the combination; here both may be on so that
//! `--all-features` builds): a guard released on another thread than the one that acquired it
//! leaves the acquisition recorded on the acquiring thread (parking_lot_core ignores a release
//! of a resource the releasing thread does not hold), so a later report may name that thread as
//! a holder of a lock it no longer holds. Release guards on their own thread when detecting.
//!
//! ```
//! #[cfg(feature = "deadlock_detection")]
//! { // only for #[cfg]
//! use std::thread;
//! use std::time::Duration;
//! use ecs_locks::deadlock;
//!
//! // A background thread that checks for deadlocks every 10 s.
//! thread::spawn(move || loop {
//!     thread::sleep(Duration::from_secs(10));
//!     let deadlocks = deadlock::check_deadlock();
//!     for (i, threads) in deadlocks.iter().enumerate() {
//!         println!("deadlock #{i}");
//!         for t in threads {
//!             println!("thread {:#?}\n{:#?}", t.thread_id(), t.backtrace());
//!         }
//!     }
//! });
//! } // only for #[cfg]
//! ```

#[cfg(feature = "deadlock_detection")]
pub use parking_lot_core::deadlock::check_deadlock;

/// Records that the current thread acquired the resource `key` (a lock's address, or the
/// address + 1 for a reader-writer lock's secondary resource). Nothing without the feature.
///
/// # Safety
///
/// Must not be called from a callback passed to a parking function.
#[inline(always)]
pub(crate) unsafe fn acquire_resource(key: usize) {
    #[cfg(feature = "deadlock_detection")]
    // SAFETY: forwarded caller contract.
    unsafe {
        parking_lot_core::deadlock::acquire_resource(key)
    };
    let _ = key;
}

/// Stops recording one acquisition of `key` by the current thread. Nothing without the feature.
///
/// # Safety
///
/// Must not be called from a callback passed to a parking function.
#[inline(always)]
pub(crate) unsafe fn release_resource(key: usize) {
    #[cfg(feature = "deadlock_detection")]
    // SAFETY: forwarded caller contract.
    unsafe {
        parking_lot_core::deadlock::release_resource(key)
    };
    let _ = key;
}

/// Key of `lock`'s primary resource (its address).
#[inline(always)]
pub(crate) fn key<T>(lock: &T) -> usize {
    core::ptr::from_ref(lock).addr()
}
