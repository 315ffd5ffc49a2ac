//! Loom models of `RawTicketMutex`: mutual exclusion with and without take-over, `try_lock`,
//! FIFO hand-off while take-over cannot trigger (`patience == u32::MAX`), and take-over happening
//! (and excluding) when it can (`patience == 0`: a waiter takes a free lock out of turn at once).
#![cfg(loom)]

use ecs_locks::{RawTicketMutex, TicketOrder};
use loom::sync::Arc;
use loom::thread;
use std::sync::atomic::{AtomicBool, Ordering};

mod common;

use common::Guarded;

/// Take-over disabled: the classic strict FIFO ticket lock.
const STRICT: u32 = u32::MAX;
/// Take-over as soon as the lock is seen free out of turn.
const EAGER: u32 = 0;

fn guarded() -> Arc<Guarded<RawTicketMutex>> {
    Guarded::new(RawTicketMutex::new())
}

fn guarded_with(patience: u32) -> Arc<Guarded<RawTicketMutex>> {
    Guarded::new(RawTicketMutex::with_patience(patience))
}

/// Adds `n` under the lock, taken with `lock_ordered`; returns how the acquisition went.
fn add_ordered(g: &Guarded<RawTicketMutex>, n: u32) -> TicketOrder {
    let (s, order) = g.raw.lock_ordered();
    // SAFETY: the lock is held.
    g.data.with_mut(|p| unsafe { *p += n });
    // SAFETY: `s` is the state of the acquisition above.
    unsafe { g.raw.unlock(s) };
    order
}

#[test]
fn lock_excludes() {
    loom::model(|| common::two_adders_exclude(guarded));
}

#[test]
fn lock_excludes_strict_and_eager() {
    loom::model(|| common::two_adders_exclude(|| guarded_with(STRICT)));
    loom::model(|| common::two_adders_exclude(|| guarded_with(EAGER)));
}

#[test]
fn try_lock_excludes_and_takes_no_ticket_on_failure() {
    loom::model(|| {
        let g = guarded();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || {
            if let Some(s) = g2.raw.try_lock() {
                // SAFETY: the lock is held.
                g2.data.with_mut(|p| unsafe { *p += 10 });
                // SAFETY: `s` is the state of the acquisition above.
                unsafe { g2.raw.unlock(s) };
            }
        });
        g.add(1);
        t.join().unwrap();
        let v = g.value();
        assert!(v == 1 || v == 11, "{v}");
        // A failed try_lock must not leave a ticket behind (that would deadlock the next lock).
        assert_eq!(g.raw.queue_len(), 0);
    });
}

#[test]
fn hand_off_is_fifo() {
    // The main thread holds the lock while the helper takes a ticket; the helper must get the
    // lock only after the main thread's release, and a second main-thread `lock` afterwards
    // must wait for the helper (its ticket is later).
    loom::model(|| {
        let g = guarded_with(STRICT);
        let s = g.raw.lock();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || {
            let s = g2.raw.lock();
            // SAFETY: the lock is held.
            g2.data.with_mut(|p| unsafe { *p = *p * 10 + 2 });
            // SAFETY: `s` is the state of the acquisition above.
            unsafe { g2.raw.unlock(s) };
        });
        // SAFETY: the lock is held.
        g.data.with_mut(|p| unsafe { *p = 1 });
        let helper_queued = g.raw.has_waiters();
        // SAFETY: `s` is the state of the acquisition above.
        unsafe { g.raw.unlock(s) };
        g.add(0);
        let after = g.value_locked();
        t.join().unwrap();
        if helper_queued {
            assert_eq!(after, 12, "the queued helper goes before our second lock");
        }
        assert_eq!(g.value(), 12);
    });
}

/// Two flows, each taking the lock twice (so a flow can queue behind the other while the lock
/// is free and not its turn: the take-over situation). `patience` decides what may happen;
/// returns every acquisition's order after checking exclusion and that the lock ends idle.
fn two_flows_twice(patience: u32) -> Vec<TicketOrder> {
    let g = guarded_with(patience);
    let g2 = Arc::clone(&g);
    let h = thread::spawn(move || [add_ordered(&g2, 1), add_ordered(&g2, 1)]);
    let mut orders = vec![add_ordered(&g, 1), add_ordered(&g, 1)];
    orders.extend(h.join().unwrap());
    assert_eq!(g.value(), 4);
    assert!(!g.raw.is_locked());
    assert_eq!(g.raw.queue_len(), 0);
    orders
}

/// While take-over cannot trigger, every acquisition is in turn (FIFO), and exclusion holds.
#[test]
fn strict_every_acquisition_in_turn() {
    loom::model(|| {
        let orders = two_flows_twice(STRICT);
        assert!(
            orders.iter().all(|o| *o == TicketOrder::InTurn),
            "{orders:?}"
        );
    });
}

/// With eager take-over exclusion still holds, the lock ends idle, and some executions really
/// take over and acquire late (the skipped ticket), so the model covers both paths.
#[test]
fn eager_takeover_excludes() {
    static TOOK_OVER: AtomicBool = AtomicBool::new(false);
    static LATE: AtomicBool = AtomicBool::new(false);
    loom::model(|| {
        let orders = two_flows_twice(EAGER);
        if orders.contains(&TicketOrder::TookOver) {
            TOOK_OVER.store(true, Ordering::Relaxed);
        }
        if orders.contains(&TicketOrder::Late) {
            LATE.store(true, Ordering::Relaxed);
        }
    });
    assert!(
        TOOK_OVER.load(Ordering::Relaxed),
        "no execution took the lock over: the model does not reach take-over"
    );
    assert!(
        LATE.load(Ordering::Relaxed),
        "no execution acquired late: the model does not reach a skipped ticket"
    );
}

/// `bump` (fair yield, `RawMutexFair`): when the helper holds a ticket, it must run between
/// the two halves of our critical section; exclusion holds either way.
#[test]
fn bump_yields_to_a_queued_waiter() {
    use lock_api::RawMutexFair;
    loom::model(|| {
        let g = guarded_with(STRICT);
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || {
            let s = g2.raw.lock();
            // SAFETY: the lock is held.
            g2.data.with_mut(|p| unsafe { *p = *p * 10 + 2 });
            // SAFETY: `s` is the state of the acquisition above.
            unsafe { g2.raw.unlock(s) };
        });
        let mut s = g.raw.lock();
        // SAFETY: the lock is held.
        g.data.with_mut(|p| unsafe { *p = 1 });
        let queued = g.raw.has_waiters();
        // SAFETY: `s` is the state of the acquisition above; `bump` restores it.
        unsafe { g.raw.bump(&mut s) };
        // SAFETY: the lock is held again.
        let mid = g.data.with(|p| unsafe { *p });
        if queued {
            assert_eq!(mid, 12, "the queued helper ran inside the bump");
        }
        // SAFETY: `s` is the state of the (re-)acquisition.
        unsafe { g.raw.unlock(s) };
        t.join().unwrap();
        // Helper first: 0 -> 2, then we overwrite with 1. Otherwise 1 -> 12.
        assert!(g.value() == 1 || g.value() == 12, "{}", g.value());
    });
}
