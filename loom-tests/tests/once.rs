//! Loom model of `Once`: the closure runs exactly once, and every caller returns only after it
//! completed (waiters parked on the `Once` are all woken).
#![cfg(loom)]

use ecs_locks::Once;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

#[test]
fn runs_once_and_publishes() {
    loom::model(|| {
        let once = Arc::new(Once::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let (once, runs) = (once.clone(), runs.clone());
                thread::spawn(move || {
                    once.call_once(|| {
                        runs.fetch_add(1, Ordering::Relaxed);
                    });
                    // The closure's effect is visible to every caller after call_once.
                    assert_eq!(runs.load(Ordering::Relaxed), 1);
                    assert!(once.is_completed());
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn wait_returns_after_completion() {
    loom::model(|| {
        let once = Arc::new(Once::new());
        let value = Arc::new(AtomicUsize::new(0));
        let (o2, v2) = (once.clone(), value.clone());
        let t = thread::spawn(move || {
            o2.wait();
            assert_eq!(v2.load(Ordering::Relaxed), 7);
        });
        once.call_once(|| value.store(7, Ordering::Relaxed));
        t.join().unwrap();
    });
}
