//! [`Once`]: one-time initialization, parking_lot 0.13's `Once` on [`crate::park`].
//!
//! # Algorithm
//!
//! parking_lot 0.13 `src/once.rs`: a state word; the first caller takes `LOCKED` and runs the
//! closure, others spin a bounded while ([`AdaptiveSpin`]) and park on the `Once`'s address;
//! the runner stores `DONE` (or `POISON` if the closure panicked) and, when `PARKED` was set,
//! unparks every waiter.
//!
//! | bit | name | meaning |
//! |-----|------|---------|
//! | 0 | `DONE_BIT` | the closure completed; final |
//! | 1 | `POISON_BIT` | a closure panicked; `call_once` then panics, `call_once_force` retries |
//! | 2 | `LOCKED_BIT` | a closure is running |
//! | 3 | `PARKED_BIT` | threads are parked waiting for the running closure |

use crate::adaptive_spin::AdaptiveSpin;
use crate::park::{self, DEFAULT_PARK_TOKEN, DEFAULT_UNPARK_TOKEN};
use crate::sync::{AtomicU32, Ordering, fence};
use core::fmt;

const DONE_BIT: u32 = 1;
const POISON_BIT: u32 = 2;
const LOCKED_BIT: u32 = 4;
const PARKED_BIT: u32 = 8;

/// Current state of a [`Once`].
#[derive(Copy, Clone, Eq, PartialEq, Debug)]
pub enum OnceState {
    /// No closure has run yet.
    New,
    /// A closure panicked; the `Once` is poisoned.
    Poisoned,
    /// A closure is running now.
    InProgress,
    /// A closure completed; the `Once` is done.
    Done,
}

impl OnceState {
    /// Whether the `Once` is poisoned (a closure panicked).
    #[inline]
    pub const fn is_poisoned(self) -> bool {
        matches!(self, OnceState::Poisoned)
    }

    /// Deprecated parking_lot spelling of [`OnceState::is_poisoned`].
    #[inline]
    pub const fn poisoned(self) -> bool {
        self.is_poisoned()
    }

    /// Whether a closure completed.
    #[inline]
    pub const fn is_completed(self) -> bool {
        matches!(self, OnceState::Done)
    }

    /// Deprecated parking_lot spelling of [`OnceState::is_completed`].
    #[inline]
    pub const fn done(self) -> bool {
        self.is_completed()
    }
}

/// A synchronization primitive that runs a one-time initialization (parking_lot 0.13's `Once`).
///
/// Poisoning as parking_lot: if the closure panics the `Once` is poisoned; later `call_once`
/// and `wait` panic, `call_once_force` and `wait_force` ignore the poison (the forced closure
/// sees [`OnceState::Poisoned`] and, if it completes, the `Once` is done).
///
/// # Fairness
///
/// Not applicable: one closure runs; every waiter is woken when it finishes.
///
/// # Differences from parking_lot's `Once`
///
/// The word is a `u32` (4 bytes, parking_lot's is 1); waiters use the adaptive spin of the
/// blocking locks, and without `std` park in the crate's portable wait queue (`park/queue.rs`).
///
/// # Examples
///
/// ```
/// use ecs_locks::Once;
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// static INIT: Once = Once::new();
/// static VALUE: AtomicU32 = AtomicU32::new(0);
/// INIT.call_once(|| VALUE.store(42, Ordering::Relaxed));
/// INIT.call_once(|| unreachable!());
/// assert!(INIT.state().is_completed());
/// assert_eq!(VALUE.load(Ordering::Relaxed), 42);
/// ```
pub struct Once(AtomicU32);

impl Once {
    crate::sync::loom_const_fn! {
        /// A new `Once` that has not run.
        pub fn new() -> Once {
            Once(AtomicU32::new(0))
        }
    }

    crate::sync::loom_const_fn! {
        /// A `Once` that is already done.
        pub fn new_completed() -> Once {
            Once(AtomicU32::new(DONE_BIT))
        }
    }

    /// The current state.
    #[inline]
    pub fn state(&self) -> OnceState {
        let state = self.0.load(Ordering::Acquire);
        if state & DONE_BIT != 0 {
            OnceState::Done
        } else if state & LOCKED_BIT != 0 {
            OnceState::InProgress
        } else if state & POISON_BIT != 0 {
            OnceState::Poisoned
        } else {
            OnceState::New
        }
    }

    /// Whether a closure completed.
    #[inline]
    pub fn is_completed(&self) -> bool {
        self.0.load(Ordering::Acquire) & DONE_BIT != 0
    }

    /// Blocks until a closure completes. Panics if the `Once` is or becomes poisoned.
    #[inline]
    pub fn wait(&self) {
        if !self.is_completed() {
            self.wait_slow(false);
        }
    }

    /// Blocks until a closure completes, ignoring poison.
    #[inline]
    pub fn wait_force(&self) {
        if !self.is_completed() {
            self.wait_slow(true);
        }
    }

    /// Runs `f` if no closure has completed yet, exactly once across all threads; other
    /// callers block until it is done.
    ///
    /// # Panics
    ///
    /// If the `Once` is poisoned (an earlier closure panicked); if `f` panics the `Once`
    /// becomes poisoned and the panic propagates.
    #[inline]
    pub fn call_once<F: FnOnce()>(&self, f: F) {
        if self.0.load(Ordering::Acquire) == DONE_BIT {
            return;
        }
        let mut f = Some(f);
        self.call_once_slow(false, &mut |_| {
            if let Some(f) = f.take() {
                f();
            }
        });
    }

    /// Like [`Once::call_once`] but also runs on a poisoned `Once`; `f` is told the state.
    #[inline]
    pub fn call_once_force<F: FnOnce(OnceState)>(&self, f: F) {
        if self.0.load(Ordering::Acquire) == DONE_BIT {
            return;
        }
        let mut f = Some(f);
        self.call_once_slow(true, &mut |state| {
            if let Some(f) = f.take() {
                f(state);
            }
        });
    }

    #[cold]
    fn wait_slow(&self, ignore_poison: bool) {
        let mut spin = AdaptiveSpin::new();
        let mut state = self.0.load(Ordering::Relaxed);
        loop {
            if state & DONE_BIT != 0 {
                fence(Ordering::Acquire);
                return;
            }
            if state & POISON_BIT != 0 && !ignore_poison {
                fence(Ordering::Acquire);
                panic!("Once instance has previously been poisoned");
            }
            if state & LOCKED_BIT != 0 && state & PARKED_BIT == 0 && spin.spin(None) {
                state = self.0.load(Ordering::Relaxed);
                continue;
            }
            if let Err(x) = self
                .0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |state| {
                    if state & DONE_BIT != 0 || (state & POISON_BIT != 0 && !ignore_poison) {
                        None
                    } else {
                        Some(state | PARKED_BIT)
                    }
                })
            {
                state = x;
                continue;
            }
            let addr = core::ptr::from_ref(self).addr();
            let validate = || {
                let state = self.0.load(Ordering::Relaxed);
                state & PARKED_BIT != 0
                    && state & DONE_BIT == 0
                    && (ignore_poison || state & POISON_BIT == 0)
            };
            // SAFETY: our own address; `validate` only reads the word; no timeout, so
            // `timed_out` is never called; `before_sleep` does nothing.
            unsafe {
                park::park(addr, validate, || {}, |_, _| {}, DEFAULT_PARK_TOKEN, None);
            }
            spin.reset();
            state = self.0.load(Ordering::Relaxed);
        }
    }

    #[cold]
    fn call_once_slow(&self, ignore_poison: bool, f: &mut dyn FnMut(OnceState)) {
        let mut spin = AdaptiveSpin::new();
        let mut state = self.0.load(Ordering::Relaxed);
        loop {
            if state & DONE_BIT != 0 {
                fence(Ordering::Acquire);
                return;
            }
            if state & POISON_BIT != 0 && !ignore_poison {
                fence(Ordering::Acquire);
                panic!("Once instance has previously been poisoned");
            }
            // Take the lock (clearing the poison: we are about to retry).
            if state & LOCKED_BIT == 0 {
                match self.0.compare_exchange_weak(
                    state,
                    (state | LOCKED_BIT) & !POISON_BIT,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(x) => state = x,
                }
                continue;
            }
            if state & PARKED_BIT == 0 && spin.spin(None) {
                state = self.0.load(Ordering::Relaxed);
                continue;
            }
            if state & PARKED_BIT == 0
                && let Err(x) = self.0.compare_exchange_weak(
                    state,
                    state | PARKED_BIT,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
            {
                state = x;
                continue;
            }
            let addr = core::ptr::from_ref(self).addr();
            let validate = || self.0.load(Ordering::Relaxed) == LOCKED_BIT | PARKED_BIT;
            // SAFETY: as in `wait_slow`.
            unsafe {
                park::park(addr, validate, || {}, |_, _| {}, DEFAULT_PARK_TOKEN, None);
            }
            spin.reset();
            state = self.0.load(Ordering::Relaxed);
        }

        /// Poisons and wakes everyone if the closure unwinds.
        struct PanicGuard<'a>(&'a Once);
        impl Drop for PanicGuard<'_> {
            fn drop(&mut self) {
                let once = self.0;
                // SAFETY: not inside a parking callback.
                unsafe { crate::deadlock::release_resource(crate::deadlock::key(once)) };
                let state = once.0.swap(POISON_BIT, Ordering::Release);
                if state & PARKED_BIT != 0 {
                    let addr = core::ptr::from_ref(once).addr();
                    // SAFETY: our own address.
                    unsafe {
                        park::unpark_all(addr, DEFAULT_UNPARK_TOKEN);
                    }
                }
            }
        }

        // Record the running closure as a held resource (`deadlock_detection`, as parking_lot).
        // SAFETY: not inside a parking callback.
        unsafe { crate::deadlock::acquire_resource(crate::deadlock::key(self)) };
        let guard = PanicGuard(self);
        let once_state = if state & POISON_BIT != 0 {
            OnceState::Poisoned
        } else {
            OnceState::New
        };
        f(once_state);
        // SAFETY: as above.
        unsafe { crate::deadlock::release_resource(crate::deadlock::key(self)) };
        core::mem::forget(guard);

        let state = self.0.swap(DONE_BIT, Ordering::Release);
        if state & PARKED_BIT != 0 {
            let addr = core::ptr::from_ref(self).addr();
            // SAFETY: our own address.
            unsafe {
                park::unpark_all(addr, DEFAULT_UNPARK_TOKEN);
            }
        }
    }
}

impl Default for Once {
    #[inline]
    fn default() -> Once {
        Once::new()
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once")
            .field("state", &self.state())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::panic;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn runs_once_across_threads() {
        static O: Once = Once::new();
        let runs = Arc::new(crate::Mutex::new(0));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let runs = runs.clone();
                thread::spawn(move || {
                    O.call_once(|| *runs.lock() += 1);
                    assert!(O.is_completed());
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*runs.lock(), 1);
        assert_eq!(O.state(), OnceState::Done);
    }

    #[test]
    fn poison_then_force() {
        let o = Once::new();
        assert!(panic::catch_unwind(|| o.call_once(|| panic!("init fails"))).is_err());
        assert!(o.state().is_poisoned());
        assert!(panic::catch_unwind(|| o.call_once(|| {})).is_err());
        assert!(panic::catch_unwind(|| o.wait()).is_err());
        let mut seen = None;
        o.call_once_force(|s| seen = Some(s));
        assert_eq!(seen, Some(OnceState::Poisoned));
        assert!(o.state().done());
        o.wait();
    }

    #[test]
    fn waiters_wake_when_done() {
        let o = Arc::new(Once::new());
        let o2 = o.clone();
        let w = thread::spawn(move || o2.wait());
        while o.0.load(Ordering::Relaxed) & PARKED_BIT == 0 {
            thread::yield_now();
        }
        o.call_once(|| {});
        w.join().unwrap();
        assert!(Once::new_completed().is_completed());
    }
}
