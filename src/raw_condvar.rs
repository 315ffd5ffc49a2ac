//! `RawCondvar`: the condition variable behind [`Condvar`](crate::Condvar).
//!
//! # Algorithm
//!
//! parking_lot 0.13's `RawCondvar` (`src/raw_condvar.rs`): waiters park on the condvar's
//! address; the word remembers which mutex they wait with. `wait` queues the thread and only
//! then (in `before_sleep`) releases the mutex, so a notify that runs after the release always
//! finds the waiter: no lost wake-up. `notify_one`/`notify_all` do not wake a waiter just to
//! have it block on a held mutex: when the mutex is locked they *requeue* waiters onto the
//! mutex's queue (setting its `PARKED` bit), and the mutex's unlock wakes them one by one, which
//! avoids a thundering herd.
//!
//! # The state word (`AtomicPtr<RawMutex>`)
//!
//! | value | meaning |
//! |-------|---------|
//! | null | no thread waits |
//! | `&mutex` | threads wait, all with this mutex (waiting with another one at the same time panics) |
//!
//! Waits never return spuriously: a non-timeout return means a notify selected this waiter
//! (parked, or requeued onto the mutex), so `notify_one` returns exactly whether a waiter was
//! selected and `notify_all` exactly how many.

use crate::GuardMarker;
use crate::park::{
    self, DEFAULT_PARK_TOKEN, ParkResult, RequeueOp, TOKEN_HANDOFF, TOKEN_NORMAL, UnparkResult,
};
use crate::raw_mutex::RawMutex;
use crate::sync::{AtomicPtr, Ordering};
use core::ptr;

/// A raw condition variable for [`RawMutex`]: no spurious wake-ups, exact notify counts,
/// requeueing `notify_all`. See the module docs.
///
/// ```
/// use ecs_locks::RawCondvar;
/// use lock_api::RawCondvar as _;
///
/// let cv = RawCondvar::new();
/// assert!(!cv.notify_one(), "exact: nobody waits");
/// assert_eq!(cv.notify_all(), 0);
/// // Usually through the alias: ecs_locks::Condvar = lock_api::Condvar<RawCondvar>.
/// ```
pub struct RawCondvar {
    state: AtomicPtr<RawMutex>,
}

impl RawCondvar {
    crate::sync::loom_const_fn! {
        /// A condvar nobody waits on.
        pub fn new() -> Self {
            Self {
                state: AtomicPtr::new(ptr::null_mut()),
            }
        }
    }

    #[cold]
    fn notify_one_slow(&self, mutex: *mut RawMutex) -> bool {
        let from = ptr::from_ref(self).addr();
        let to = mutex.addr();
        let validate = || {
            // All waiters of that mutex left and new ones came with another mutex: done.
            if self.state.load(Ordering::Relaxed) != mutex {
                return RequeueOp::Abort;
            }
            // SAFETY: `state` is non-null only while threads wait with this mutex, and a
            // waiting thread keeps its mutex alive (it holds a guard borrowing it).
            if unsafe { (*mutex).mark_parked_if_locked() } {
                RequeueOp::RequeueOne
            } else {
                RequeueOp::UnparkOne
            }
        };
        let callback = |_op, result: UnparkResult| {
            if !result.have_more_threads {
                self.state.store(ptr::null_mut(), Ordering::Relaxed);
            }
            TOKEN_NORMAL
        };
        // SAFETY: both keys are addresses of locks we drive (this condvar, its mutex); the
        // callbacks only touch atomics and never unwind.
        let res = unsafe { park::unpark_requeue(from, to, validate, callback) };
        res.unparked_threads + res.requeued_threads != 0
    }

    #[cold]
    fn notify_all_slow(&self, mutex: *mut RawMutex) -> usize {
        let from = ptr::from_ref(self).addr();
        let to = mutex.addr();
        let validate = || {
            if self.state.load(Ordering::Relaxed) != mutex {
                return RequeueOp::Abort;
            }
            // Every waiter is about to be woken or requeued.
            self.state.store(ptr::null_mut(), Ordering::Relaxed);
            // SAFETY: as in `notify_one_slow`.
            if unsafe { (*mutex).mark_parked_if_locked() } {
                RequeueOp::RequeueAll
            } else {
                RequeueOp::UnparkOneRequeueRest
            }
        };
        let callback = |op, result: UnparkResult| {
            if op == RequeueOp::UnparkOneRequeueRest && result.requeued_threads != 0 {
                // SAFETY: as in `notify_one_slow`.
                unsafe { (*mutex).mark_parked() };
            }
            TOKEN_NORMAL
        };
        // SAFETY: as in `notify_one_slow`.
        let res = unsafe { park::unpark_requeue(from, to, validate, callback) };
        res.unparked_threads + res.requeued_threads
    }

    /// Waits (with an optional deadline); returns `true` when it timed out.
    fn wait_until_internal(&self, mutex: &RawMutex, timeout: Option<park::Instant>) -> bool {
        let mut requeued = false;
        let addr = ptr::from_ref(self).addr();
        let lock_addr = ptr::from_ref(mutex).cast_mut();
        let validate = || {
            // One mutex at a time per condvar; checked under the queue lock.
            let state = self.state.load(Ordering::Relaxed);
            if state.is_null() {
                self.state.store(lock_addr, Ordering::Relaxed);
            } else if state != lock_addr {
                return false;
            }
            true
        };
        let before_sleep = || {
            // Queued: now release the mutex (no notify can be missed any more).
            // SAFETY: the caller holds `mutex` (RawCondvar::wait contract).
            unsafe { mutex.unlock_inner() };
        };
        let timed_out = |k, was_last_thread| {
            // Requeued onto the mutex: that is a notification, not a timeout.
            requeued = k != addr;
            if !requeued && was_last_thread {
                self.state.store(ptr::null_mut(), Ordering::Relaxed);
            }
        };
        // The deadlock detector must not be called from the callbacks: stop recording the mutex
        // as held here, as parking_lot does (re-recorded by the re-lock below).
        mutex.release_detector_record();
        // SAFETY: our own address; `validate`/`timed_out` only touch atomics and a local;
        // `before_sleep` may unpark (the mutex's waiters) but never parks or unwinds.
        let result = unsafe {
            park::park(
                addr,
                validate,
                before_sleep,
                timed_out,
                DEFAULT_PARK_TOKEN,
                timeout,
            )
        };
        if result == ParkResult::Invalid {
            // We never released the mutex; the guard is intact.
            mutex.restore_detector_record();
            panic!("attempted to use a condition variable with more than one mutex");
        }
        if result == ParkResult::Unparked(TOKEN_HANDOFF) {
            // A fair unlock of the mutex handed it to us (we had been requeued onto it).
            mutex.acquired_by_handoff();
        } else {
            crate::sync::abort_on_panic(|| mutex.lock_inner());
        }
        !(result.is_unparked() || requeued)
    }
}

#[cfg(test)]
impl RawCondvar {
    /// Whether any thread waits (tests).
    pub(crate) fn has_waiters_for_tests(&self) -> bool {
        !self.state.load(Ordering::Relaxed).is_null()
    }
}

impl Default for RawCondvar {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for RawCondvar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawCondvar")
            .field(
                "has_waiters",
                &!self.state.load(Ordering::Relaxed).is_null(),
            )
            .finish()
    }
}

// SAFETY: `wait` queues the thread before releasing the mutex (in `before_sleep`) and always
// re-locks it before returning (a hand-off counts as re-locking); it panics only before
// releasing (two mutexes), leaving the guard valid; it never wakes spuriously, so the exact
// counts returned by the notifies are allowed.
unsafe impl lock_api::RawCondvar for RawCondvar {
    crate::sync::loom_init!();

    type RawMutex = RawMutex;

    unsafe fn wait(&self, mutex: &RawMutex, _guard: &mut GuardMarker) {
        self.wait_until_internal(mutex, None);
    }

    #[inline]
    fn notify_one(&self) -> bool {
        let state = self.state.load(Ordering::Relaxed);
        if state.is_null() {
            return false;
        }
        self.notify_one_slow(state)
    }

    #[inline]
    fn notify_all(&self) -> usize {
        let state = self.state.load(Ordering::Relaxed);
        if state.is_null() {
            return 0;
        }
        self.notify_all_slow(state)
    }
}

// SAFETY: timed waits keep the same guarantees and report a timeout only when the deadline
// passed without this waiter being selected by a notify.
#[cfg(feature = "std")]
unsafe impl lock_api::RawCondvarTimed for RawCondvar {
    fn checked_duration_to_instant(timeout: &core::time::Duration) -> Option<std::time::Instant> {
        park::to_deadline(*timeout)
    }

    unsafe fn wait_until(
        &self,
        mutex: &RawMutex,
        _guard: &mut GuardMarker,
        timeout: &std::time::Instant,
    ) -> bool {
        self.wait_until_internal(mutex, Some(*timeout))
    }

    unsafe fn wait_for(
        &self,
        mutex: &RawMutex,
        _guard: &mut GuardMarker,
        timeout: &core::time::Duration,
    ) -> bool {
        self.wait_until_internal(mutex, park::to_deadline(*timeout))
    }
}
