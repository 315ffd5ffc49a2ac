//! Loom model of `ReentrantMutex` over the blocking `RawMutex`: nested locking by the owner,
//! mutual exclusion between threads, and the wake-up of the other thread.
#![cfg(loom)]

use ecs_locks::{RawMutex, RawThreadId, ReentrantMutex};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

fn add(m: &ReentrantMutex<UnsafeCell<u32>>) {
    let outer = m.lock();
    let inner = m.lock();
    // SAFETY: the reentrant mutex is held by this thread, excluding others.
    inner.with_mut(|p| unsafe { *p += 1 });
    drop(inner);
    // SAFETY: as above.
    outer.with_mut(|p| unsafe { *p += 1 });
}

#[test]
fn nested_and_exclusive() {
    loom::model(|| {
        let m = Arc::new(ReentrantMutex::from_raw(
            RawMutex::new(),
            RawThreadId,
            UnsafeCell::new(0),
        ));
        let m2 = m.clone();
        let t = thread::spawn(move || add(&m2));
        add(&m);
        t.join().unwrap();
        let g = m.lock();
        // SAFETY: held.
        assert_eq!(g.with(|p| unsafe { *p }), 4);
    });
}
