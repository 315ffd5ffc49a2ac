//! Loom models of `RawTicketMutex`: mutual exclusion, `try_lock`, and FIFO hand-off.
#![cfg(loom)]

use ecs_locks::RawTicketMutex;
use loom::sync::Arc;
use loom::thread;

mod common;

use common::Guarded;

fn guarded() -> Arc<Guarded<RawTicketMutex>> {
    Guarded::new(RawTicketMutex::new())
}

#[test]
fn lock_excludes() {
    loom::model(|| common::two_adders_exclude(guarded));
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
        let g = guarded();
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

/// `bump` (fair yield, `RawMutexFair`): when the helper holds a ticket, it must run between
/// the two halves of our critical section; exclusion holds either way.
#[test]
fn bump_yields_to_a_queued_waiter() {
    use lock_api::RawMutexFair;
    loom::model(|| {
        let g = guarded();
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
