//! Loom models of `RawMcsMutex` (qspinlock-style): mutual exclusion between queued waiters
//! and arrivals that take the free lock word ahead of them, hand-off of head-ness down the
//! queue (including a successor that links late, after the holder passed head-ness on through
//! `GONE` without waiting), reuse of a waiter's node for its next wait while its successor may
//! still be linking into it (a pending node is skipped; the node's `vcpu` is a plain cell, so
//! a premature reuse is a reported data race), nesting, and the fair unlock to the queue head
//! and to node-less waiters (`lock_node_less`).
#![cfg(loom)]

use ecs_locks::RawMcsMutex;
use loom::sync::Arc;
use loom::thread;

mod common;

use common::Guarded;

fn guarded() -> Arc<Guarded<RawMcsMutex>> {
    Guarded::new(RawMcsMutex::new())
}

/// Two threads contend: covers the uncontended CAS, the queued swap + link + hand-off, and the
/// release that finds a successor between its swap and its link: the holder swaps `GONE`
/// into its node without waiting, and the late successor finds it when it links and makes
/// itself the head (issue 9; both branches are reached by the models in this file).
#[test]
fn lock_excludes_and_hands_off() {
    loom::model(|| common::two_adders_exclude(guarded));
}

/// The holder releases while a waiter enqueues: every interleaving of the waiter's swap/link
/// with the holder's `next` check and tail CAS must hand the lock over exactly once.
#[test]
fn waiter_enqueues_while_holder_releases() {
    loom::model(|| {
        let g = guarded();
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
        let g = guarded();
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

/// Nested acquisition of two distinct locks (holding needs no node); the other thread
/// contends on the inner one, so this thread may queue on it while holding the outer.
#[test]
fn nested_distinct_locks() {
    loom::model(|| {
        let outer = guarded();
        let inner = guarded();
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

/// Node reuse, the classic queue-lock bug: both flows acquire twice, so a flow that was
/// queued reuses its node for its next wait while the other flow may have swapped in behind
/// it and not linked yet (or linked, and the owner must not erase that link with its reset).
/// The owner must not reset its node before its successor has linked.
#[test]
fn node_reused_only_after_successor_linked() {
    loom::model(|| {
        let g = guarded();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || {
            g2.add(1);
            g2.add(1);
        });
        g.add(1);
        g.add(1);
        t.join().unwrap();
        assert_eq!(g.value(), 4);
        assert!(!g.raw.is_locked());
        assert!(!g.raw.has_waiters());
    });
}

/// Node reuse with a third flow: the main flow acquires twice while two others queue, so its
/// second wait can reuse its node after a successor linked into it in the first.
#[test]
fn node_reused_with_three_flows() {
    loom::model(|| {
        let g = guarded();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let g = Arc::clone(&g);
                thread::spawn(move || g.add(1))
            })
            .collect();
        g.add(1);
        g.add(1);
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(g.value(), 4);
        assert!(!g.raw.is_locked());
        assert!(!g.raw.has_waiters());
    });
}

/// A queued waiter and a barging arrival: the holder releases while one flow is queued and
/// another takes the word with `try_lock` (ahead of the queue, or failing). Exclusion holds
/// and the queued flow still gets the lock.
#[test]
fn queued_waiter_and_barging_arrival() {
    loom::model(|| {
        let g = guarded();
        let h = g.raw.lock();
        let g2 = Arc::clone(&g);
        let waiter = thread::spawn(move || g2.add(1));
        let g3 = Arc::clone(&g);
        let arrival = thread::spawn(move || {
            if let Some(h) = g3.raw.try_lock() {
                // SAFETY: the lock is held.
                g3.data.with_mut(|p| unsafe { *p += 10 });
                // SAFETY: `h` is the state of the acquisition above.
                unsafe { g3.raw.unlock(h) };
            }
        });
        // SAFETY: the lock is held.
        g.data.with_mut(|p| unsafe { *p += 100 });
        // SAFETY: `h` is the state of the acquisition above.
        unsafe { g.raw.unlock(h) };
        waiter.join().unwrap();
        arrival.join().unwrap();
        let v = g.value();
        assert!(v == 101 || v == 111, "{v}");
        assert!(!g.raw.is_locked());
        assert!(!g.raw.has_waiters());
    });
}

/// Three flows: a holder and two waiters queued behind it, so a hand-off goes down a chain of
/// two links (a waiter is both a successor and, later, a predecessor).
#[test]
fn chain_of_two_waiters() {
    loom::model(|| {
        let g = guarded();
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
        let g = guarded();
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

/// Fair unlock: with a flow queued, the word is reserved for the queue head, and an arrival's
/// `try_lock` cannot take it until the head has had it.
#[test]
fn fair_unlock_reserves_for_head() {
    loom::model(|| {
        let g = guarded();
        let h = g.raw.lock();
        let g2 = Arc::clone(&g);
        let waiter = thread::spawn(move || g2.add(1));
        let queued = g.raw.has_waiters();
        // SAFETY: `h` is the state of the acquisition above.
        unsafe { g.raw.unlock_fair(h) };
        if let Some(h) = g.raw.try_lock() {
            // SAFETY: the lock is held.
            let v = g.data.with(|p| unsafe { *p });
            // The waiter was queued at the fair unlock, so it went first.
            assert!(!queued || v == 1, "arrival overtook a fair hand-off");
            // SAFETY: `h` is the state of the acquisition above.
            unsafe { g.raw.unlock(h) };
        }
        waiter.join().unwrap();
        assert_eq!(g.value(), 1);
        assert!(!g.raw.is_locked());
    });
}

/// Adds `n` under the lock, waiting node-less if it is held (as every contended waiter does in
/// an over-committed guest, and a flow without a usable node does anywhere).
fn add_node_less(g: &Guarded<RawMcsMutex>, n: u32) {
    let h = g.raw.lock_node_less();
    // SAFETY: the lock is held.
    g.data.with_mut(|p| unsafe { *p += n });
    // SAFETY: `h` is the state of the acquisition above.
    unsafe { g.raw.unlock(h) };
}

/// Review finding: a fair unlock with only node-less waiters reserved nothing for them. Now it
/// stores `HANDOFF` when a node-less waiter is counted, and that waiter (not an arrival's
/// `try_lock`) takes it: exclusion holds, and the reserved word is always taken (a `HANDOFF`
/// left with nobody to take it would make the final `is_locked` check fail).
#[test]
fn fair_unlock_reserves_for_node_less_waiter() {
    loom::model(|| {
        let g = guarded();
        let h = g.raw.lock();
        let g2 = Arc::clone(&g);
        let waiter = thread::spawn(move || add_node_less(&g2, 1));
        // SAFETY: `h` is the state of the acquisition above.
        unsafe { g.raw.unlock_fair(h) };
        if let Some(h) = g.raw.try_lock() {
            // SAFETY: `h` is the state of the acquisition above.
            unsafe { g.raw.unlock(h) };
        }
        waiter.join().unwrap();
        assert_eq!(g.value(), 1);
        assert!(!g.raw.is_locked());
    });
}

/// `bump` with a node-less waiter: exclusion holds across the bump, and the waiter gets the
/// lock (during the bump or after the unlock).
#[test]
fn bump_with_node_less_waiter() {
    use lock_api::RawMutexFair;
    loom::model(|| {
        let g = guarded();
        let mut h = g.raw.lock();
        let g2 = Arc::clone(&g);
        let node_less = thread::spawn(move || add_node_less(&g2, 10));
        // SAFETY: `h` is the state of the acquisition above; `bump` restores it.
        unsafe { g.raw.bump(&mut h) };
        // SAFETY: the lock is held again.
        g.data.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: `h` is the state of the (re-)acquisition.
        unsafe { g.raw.unlock(h) };
        node_less.join().unwrap();
        assert_eq!(g.value(), 11);
        assert!(!g.raw.is_locked() && !g.raw.has_waiters());
    });
}
