//! Loom models of `RawMcsMutex`: mutual exclusion, queue hand-off (including a waiter that
//! enqueues while the holder releases), nesting of distinct locks on per-thread nodes, and the
//! node-less fallback's hand-off.
#![cfg(loom)]

use ecs_locks::RawMcsMutex;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

struct Guarded {
    raw: RawMcsMutex,
    data: UnsafeCell<u32>,
}

// SAFETY: `data` is only accessed while `raw` is held (checked by loom).
unsafe impl Sync for Guarded {}

impl Guarded {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            raw: RawMcsMutex::new(),
            data: UnsafeCell::new(0),
        })
    }

    fn add(&self, n: u32) {
        let h = self.raw.lock();
        // SAFETY: the lock is held.
        self.data.with_mut(|p| unsafe { *p += n });
        // SAFETY: `h` is the state of the acquisition above.
        unsafe { self.raw.unlock(h) };
    }

    fn value(&self) -> u32 {
        // SAFETY: called after every other thread was joined.
        self.data.with(|p| unsafe { *p })
    }
}

/// Two threads contend: covers the uncontended CAS, the queued swap + link + hand-off, and the
/// release that finds a successor between its swap and its link (`wait_for_link`).
#[test]
fn lock_excludes_and_hands_off() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || g2.add(1));
        g.add(1);
        t.join().unwrap();
        assert_eq!(g.value(), 2);
        assert!(!g.raw.is_locked());
    });
}

/// The holder releases while a waiter enqueues: every interleaving of the waiter's swap/link
/// with the holder's `next` check and tail CAS must hand the lock over exactly once.
#[test]
fn waiter_enqueues_while_holder_releases() {
    loom::model(|| {
        let g = Guarded::new();
        let h = g.raw.lock();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || g2.add(1));
        // SAFETY: the lock is held.
        g.data.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: `h` is the state of the acquisition above.
        unsafe { g.raw.unlock(h) };
        t.join().unwrap();
        assert_eq!(g.value(), 2);
        assert!(!g.raw.is_locked());
    });
}

#[test]
fn try_lock_excludes() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || {
            if let Some(h) = g2.raw.try_lock() {
                // SAFETY: the lock is held.
                g2.data.with_mut(|p| unsafe { *p += 10 });
                // SAFETY: `h` is the state of the acquisition above.
                unsafe { g2.raw.unlock(h) };
            }
        });
        g.add(1);
        t.join().unwrap();
        let v = g.value();
        assert!(v == 1 || v == 11, "{v}");
        assert!(!g.raw.is_locked());
    });
}

/// Nested acquisition of two distinct locks uses two nodes of the same thread; the other
/// thread contends on the inner one.
#[test]
fn nested_distinct_locks() {
    loom::model(|| {
        let outer = Guarded::new();
        let inner = Guarded::new();
        let inner2 = Arc::clone(&inner);
        let t = thread::spawn(move || inner2.add(1));
        let ho = outer.raw.lock();
        inner.add(1);
        // SAFETY: `ho` is the state of the acquisition above.
        unsafe { outer.raw.unlock(ho) };
        t.join().unwrap();
        assert_eq!(inner.value(), 2);
    });
}

/// A thread whose nodes are all in use acquires node-less; a queued waiter must get the lock
/// through the `handoff` word.
#[test]
fn node_less_holder_hands_off() {
    loom::model(|| {
        let fillers: Vec<RawMcsMutex> = (0..RawMcsMutex::NODES_PER_FLOW)
            .map(|_| RawMcsMutex::new())
            .collect();
        let held: Vec<_> = fillers.iter().map(RawMcsMutex::lock).collect();
        let g = Guarded::new();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || g2.add(1));
        g.add(1); // node-less: this thread's nodes all hold fillers
        t.join().unwrap();
        assert_eq!(g.value(), 2);
        assert!(!g.raw.is_locked());
        for (l, h) in fillers.iter().zip(held) {
            // SAFETY: `h` is the state of `l`'s acquisition above.
            unsafe { l.unlock(h) };
        }
    });
}

/// Three flows: a holder and two waiters queued behind it, so a hand-off goes down a chain of
/// two links (a waiter is both a successor and, later, a predecessor).
#[test]
fn chain_of_two_waiters() {
    loom::model(|| {
        let g = Guarded::new();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let g = Arc::clone(&g);
                thread::spawn(move || g.add(1))
            })
            .collect();
        g.add(1);
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(g.value(), 3);
        assert!(!g.raw.is_locked());
    });
}

/// `bump` (fair yield to a waiter, `RawMutexFair`): unlock-and-requeue when someone waits,
/// keep the lock otherwise; exclusion holds across it.
#[test]
fn bump_keeps_exclusion() {
    use lock_api::RawMutexFair;
    loom::model(|| {
        let g = Guarded::new();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || g2.add(10));
        let mut h = g.raw.lock();
        // SAFETY: the lock is held.
        g.data.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: `h` is the state of the acquisition above; `bump` restores it.
        unsafe { g.raw.bump(&mut h) };
        // SAFETY: the lock is held again.
        g.data.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: `h` is the state of the (re-)acquisition.
        unsafe { g.raw.unlock(h) };
        t.join().unwrap();
        assert_eq!(g.value(), 12);
        assert!(!g.raw.is_locked());
    });
}
