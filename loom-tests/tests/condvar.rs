//! Loom models of `RawCondvar` with `RawMutex`: no lost notify (the waiter is queued before
//! it releases the mutex), and `notify_all` requeueing waiters onto a held mutex.
#![cfg(loom)]

use ecs_locks::{RawCondvar, RawMutex};
use lock_api::{RawCondvar as _, RawCondvarTimed as _, RawMutex as _};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;

struct Shared {
    mutex: RawMutex,
    cv: RawCondvar,
    /// Protected by `mutex`.
    ready: UnsafeCell<u32>,
}

// SAFETY: `ready` is only accessed with `mutex` held.
unsafe impl Sync for Shared {}

fn new() -> Arc<Shared> {
    Arc::new(Shared {
        mutex: RawMutex::new(),
        cv: RawCondvar::new(),
        ready: UnsafeCell::new(0),
    })
}

impl Shared {
    /// Waits until `ready >= n`; returns how many times `wait` returned.
    fn wait_for_ready(&self, n: u32) -> u32 {
        let mut g = self.mutex.lock();
        let mut wakeups = 0;
        // SAFETY: the mutex is held whenever `ready` is read.
        while self.ready.with(|p| unsafe { *p }) < n {
            // SAFETY: `g` is the state of our acquisition of `self.mutex`.
            unsafe { self.cv.wait(&self.mutex, &mut g) };
            wakeups += 1;
        }
        // SAFETY: `g` is the state of our (re-)acquisition.
        unsafe { self.mutex.unlock(g) };
        wakeups
    }

    /// Sets `ready += 1` and notifies; returns the notify result.
    fn signal(&self, all: bool, notify_while_locked: bool) -> usize {
        let g = self.mutex.lock();
        // SAFETY: the mutex is held.
        self.ready.with_mut(|p| unsafe { *p += 1 });
        let notify = || {
            if all {
                self.cv.notify_all()
            } else {
                usize::from(self.cv.notify_one())
            }
        };
        if notify_while_locked {
            let n = notify();
            // SAFETY: `g` is our acquisition's state.
            unsafe { self.mutex.unlock(g) };
            n
        } else {
            // SAFETY: as above.
            unsafe { self.mutex.unlock(g) };
            notify()
        }
    }
}

/// One waiter, one notifier (notify after unlocking): no lost wake-up, no spurious one.
#[test]
fn notify_one_not_lost() {
    loom::model(|| {
        let s = new();
        let s2 = s.clone();
        let t = thread::spawn(move || s2.signal(false, false));
        let wakeups = s.wait_for_ready(1);
        let notified = t.join().unwrap();
        // No spurious wake-ups: the waiter waited at most once, and only if it was notified.
        assert!(wakeups <= 1);
        assert_eq!(wakeups, notified as u32);
    });
}

/// Two waiters, `notify_all` while holding the mutex: the RequeueAll path moves both onto the
/// mutex queue; the mutex's unlocks must wake them one after the other.
#[test]
fn notify_all_requeues_onto_held_mutex() {
    loom::model(|| {
        let s = new();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.wait_for_ready(1))
            })
            .collect();
        let n = s.signal(true, true);
        let woken: u32 = ts.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(n <= 2);
        assert_eq!(woken, n as u32, "exactly the notified waiters woke");
    });
}

/// A timed wait (which times out at once under loom) racing a notify: either it was notified
/// (not a timeout) or it timed out and left the condvar's state clean.
#[test]
fn timed_wait_races_notify() {
    loom::model(|| {
        let s = new();
        let s2 = s.clone();
        let t = thread::spawn(move || s2.signal(false, false));
        let mut g = s.mutex.lock();
        // SAFETY: `g` is our acquisition's state.
        let timed_out = unsafe { s.cv.wait_for(&s.mutex, &mut g, &Duration::from_millis(1)) };
        // SAFETY: as above.
        unsafe { s.mutex.unlock(g) };
        let notified = t.join().unwrap();
        if !timed_out {
            assert_eq!(notified, 1, "a non-timeout return means we were notified");
        }
        assert!(!s.cv.notify_one(), "nobody is left waiting");
    });
}

/// Two waiters, two `notify_one`s (one while holding the mutex, so RequeueOne is explored):
/// both waiters must finish.
#[test]
fn two_notify_ones_wake_two_waiters() {
    loom::model(|| {
        let s = new();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.wait_for_ready(1))
            })
            .collect();
        s.signal(false, true);
        s.signal(false, false);
        // Only threads that checked `ready` before the first signal wait (at most two), and
        // each of the two notifies selects a different one of them; a notify that found
        // nobody is fine since a late waiter sees `ready` and does not wait.
        for t in ts {
            t.join().unwrap();
        }
    });
}
