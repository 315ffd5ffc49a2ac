//! `RawFairMutex`: [`RawMutex`] whose every unlock is fair.
//!
//! Same word and algorithm as [`RawMutex`](crate::RawMutex) (see `raw_mutex.rs` for the table of
//! bits); `unlock` is `unlock_fair`, which hands the still-locked mutex to the first parked
//! waiter (parking_lot 0.13 `src/raw_fair_mutex.rs`).

use crate::GuardMarker;
use crate::raw_mutex::RawMutex;
use lock_api::RawMutexFair as _;

/// Raw fair mutex: a [`RawMutex`] that always unlocks fairly (FIFO hand-off to parked waiters).
///
/// Differs from parking_lot's `RawFairMutex` as [`RawMutex`] differs from parking_lot's.
///
/// ```
/// use ecs_locks::RawFairMutex;
/// use lock_api::RawMutex as _;
///
/// let raw = RawFairMutex::new();
/// let g = raw.lock();
/// // SAFETY: `g` is the state of the acquisition above.
/// unsafe { raw.unlock(g) }; // always a fair unlock
/// assert!(!raw.is_locked());
/// ```
#[derive(Debug, Default)]
pub struct RawFairMutex(RawMutex);

impl RawFairMutex {
    crate::sync::loom_const_fn! {
        /// An unlocked mutex.
        pub fn new() -> Self {
            Self(RawMutex::new())
        }
    }
}

// SAFETY: delegates to `RawMutex`, whose `unlock_fair` satisfies `unlock`'s contract.
unsafe impl lock_api::RawMutex for RawFairMutex {
    crate::sync::loom_init!();

    type Guard = GuardMarker;

    #[inline]
    fn lock(&self) -> GuardMarker {
        self.0.lock()
    }

    #[inline]
    fn try_lock(&self) -> Option<GuardMarker> {
        self.0.try_lock()
    }

    #[inline]
    unsafe fn unlock(&self, guard: GuardMarker) {
        // SAFETY: the caller holds the lock (trait contract).
        unsafe { self.0.unlock_fair(guard) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.0.is_locked()
    }
}

// SAFETY: delegates to `RawMutex`.
unsafe impl lock_api::RawMutexFair for RawFairMutex {
    #[inline]
    unsafe fn unlock_fair(&self, guard: GuardMarker) {
        // SAFETY: the caller holds the lock (trait contract).
        unsafe { self.0.unlock_fair(guard) }
    }

    #[inline]
    unsafe fn bump(&self, guard: &mut GuardMarker) {
        // SAFETY: the caller holds the lock (trait contract).
        unsafe { self.0.bump(guard) }
    }
}

// SAFETY: delegates to `RawMutex`.
#[cfg(feature = "std")]
unsafe impl lock_api::RawMutexTimed for RawFairMutex {
    type Duration = core::time::Duration;
    type Instant = std::time::Instant;

    #[inline]
    fn try_lock_for(&self, timeout: Self::Duration) -> Option<GuardMarker> {
        lock_api::RawMutexTimed::try_lock_for(&self.0, timeout)
    }

    #[inline]
    fn try_lock_until(&self, timeout: Self::Instant) -> Option<GuardMarker> {
        lock_api::RawMutexTimed::try_lock_until(&self.0, timeout)
    }
}
