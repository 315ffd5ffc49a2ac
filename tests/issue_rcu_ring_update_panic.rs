//! Issue 9: an `RcuRing::update` that panicked while waiting for its grace period (the debug
//! check for a wait inside one's own read-side section) left its old slot `Taken` for good.
//! With `N = 2` the ring then had no spare slot, and the next write spun forever.
#![cfg(debug_assertions)]

use ecs_locks::RcuRing;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

static RING: RcuRing<u32, 2> = RcuRing::new(1);

#[test]
fn a_panicking_update_does_not_strand_its_slot() {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let guard = RING.read();
        let r = catch_unwind(AssertUnwindSafe(|| RING.update(|v| v + 1)));
        assert!(
            r.is_err(),
            "waiting inside one's own section panics in debug builds"
        );
        drop(guard);
        // The old value is retired, and the ring keeps working.
        assert_eq!(*RING.read(), 2);
        assert_eq!(RING.update(|v| v + 1), 2);
        assert_eq!(RING.replace(10), 3);
        RING.barrier();
        assert_eq!(RING.deferred(), 0);
        tx.send(*RING.read()).unwrap();
    });
    let v = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the ring is stuck: the panicked update stranded its slot");
    assert_eq!(v, 10);
}
