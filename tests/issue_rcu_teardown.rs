//! Issue 9: a read-side section taken in a thread-local destructor, after the thread's RCU
//! handle was destroyed, got a fresh reader slot, and `in_read_section` then looked at yet
//! another fresh (quiescent) slot. A `defer_update` with a full backlog inside that section
//! therefore waited for a grace period that waits for the section itself: forever.

use ecs_locks::Rcu;
use std::cell::Cell;
use std::sync::{LazyLock, mpsc};
use std::thread;
use std::time::Duration;

static CELL: LazyLock<Rcu<u64>> = LazyLock::new(|| Rcu::new(0));

/// Runs its closure when the thread's locals are destroyed.
struct Late(Option<Box<dyn FnOnce()>>);

impl Drop for Late {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

thread_local! {
    static LATE: Cell<Option<Late>> = const { Cell::new(None) };
}

#[test]
fn defer_update_inside_a_teardown_section_does_not_wait_for_itself() {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // Registered before the RCU handle (the first read below), so destroyed after it.
        LATE.with(|l| {
            l.set(Some(Late(Some(Box::new(move || {
                let guard = CELL.read();
                assert!(ecs_locks::rcu::in_read_section());
                // Far past the deferral batch: every grace period started here waits for
                // `guard`, so a writer that waited would wait forever.
                for i in 0..200 {
                    CELL.defer_update(|v| v + i);
                }
                drop(guard);
                assert!(!ecs_locks::rcu::in_read_section());
                tx.send(*CELL.read()).unwrap();
            })))))
        });
        assert_eq!(*CELL.read(), 0);
    });
    let v = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("defer_update inside a teardown section waited for its own section");
    assert_eq!(v, (0..200).sum::<u64>());
}
