//! Loom models of the blocking `RawMutex` / `RawFairMutex`: mutual exclusion, no lost wake-up
//! through the park queue (loom sees the parking through loom's Mutex/Condvar, see
//! `ecs_locks` `park/queue.rs`), fair hand-off, and the timed path's clean-up of `PARKED`.
#![cfg(loom)]

use ecs_locks::{RawFairMutex, RawMutex};
use lock_api::{RawMutex as _, RawMutexTimed as _};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;

struct Guarded<R> {
    raw: R,
    data: UnsafeCell<u32>,
}

// SAFETY: `data` is only accessed while `raw` is held (loom checks the accesses).
unsafe impl<R: Sync> Sync for Guarded<R> {}

impl<R: lock_api::RawMutexFair> Guarded<R> {
    fn add(&self, n: u32, fair: bool) {
        let g = self.raw.lock();
        // SAFETY: the lock is held.
        self.data.with_mut(|p| unsafe { *p += n });
        if fair {
            // SAFETY: `g` is the state of the acquisition above.
            unsafe { self.raw.unlock_fair(g) };
        } else {
            // SAFETY: as above.
            unsafe { self.raw.unlock(g) };
        }
    }

    fn value(&self) -> u32 {
        // SAFETY: called after every other thread was joined.
        self.data.with(|p| unsafe { *p })
    }
}

/// Two threads contend: under loom a waiter never spins, so the loser parks and the winner's
/// unlock must find it (PARKED set under the queue lock, validate re-checks the word).
#[test]
fn mutual_exclusion_and_no_lost_wakeup() {
    loom::model(|| {
        let g = Arc::new(Guarded {
            raw: RawMutex::new(),
            data: UnsafeCell::new(0),
        });
        let g2 = g.clone();
        let t = thread::spawn(move || g2.add(1, false));
        g.add(1, false);
        t.join().unwrap();
        assert_eq!(g.value(), 2);
        assert!(!g.raw.is_locked());
    });
}

/// Three contenders: a woken waiter can lose the lock to a barging thread and must park again.
#[test]
fn three_contenders() {
    loom::model(|| {
        let g = Arc::new(Guarded {
            raw: RawMutex::new(),
            data: UnsafeCell::new(0),
        });
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                thread::spawn(move || g.add(1, false))
            })
            .collect();
        g.add(1, false);
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(g.value(), 3);
    });
}

/// Fair unlock hands the still-locked mutex to the parked waiter (TOKEN_HANDOFF).
#[test]
fn fair_handoff() {
    loom::model(|| {
        let g = Arc::new(Guarded {
            raw: RawFairMutex::new(),
            data: UnsafeCell::new(0),
        });
        let g2 = g.clone();
        let t = thread::spawn(move || g2.add(1, true));
        g.add(1, true);
        t.join().unwrap();
        assert_eq!(g.value(), 2);
        assert!(!g.raw.is_locked());
    });
}

/// A timed waiter (which times out at once under loom, having no clock) must leave the word
/// clean: whatever it did, the other thread still gets the lock and nothing stays PARKED
/// without a parked thread (a lost wake-up would deadlock the final lock).
#[test]
fn timed_waiter_cleans_up() {
    loom::model(|| {
        let g = Arc::new(Guarded {
            raw: RawMutex::new(),
            data: UnsafeCell::new(0),
        });
        let g2 = g.clone();
        let t = thread::spawn(move || {
            if let Some(guard) = g2.raw.try_lock_for(Duration::from_millis(1)) {
                // SAFETY: the lock is held.
                g2.data.with_mut(|p| unsafe { *p += 1 });
                // SAFETY: `guard` is the state of the acquisition above.
                unsafe { g2.raw.unlock(guard) };
            }
        });
        g.add(1, false);
        t.join().unwrap();
        g.add(1, false);
        assert!((2..=3).contains(&g.value()));
    });
}
