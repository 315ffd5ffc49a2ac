//! Loom models of `RawSpinMutex`: mutual exclusion through `lock` and `try_lock`.
#![cfg(loom)]

use ecs_locks::RawSpinMutex;
use loom::sync::Arc;
use loom::thread;

mod common;

use common::Guarded;

fn guarded() -> Arc<Guarded<RawSpinMutex>> {
    Guarded::new(RawSpinMutex::new())
}

#[test]
fn lock_excludes() {
    loom::model(|| common::two_adders_exclude(guarded));
}

#[test]
fn try_lock_excludes() {
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
        g.increment();
        t.join().unwrap();
        let v = g.value();
        assert!(v == 1 || v == 11, "{v}");
    });
}

#[test]
fn lock_api_wrapper() {
    loom::model(|| {
        let m = Arc::new(lock_api::Mutex::from_raw(RawSpinMutex::new(), 0u32));
        let m2 = Arc::clone(&m);
        let t = thread::spawn(move || *m2.lock() += 1);
        *m.lock() += 1;
        t.join().unwrap();
        assert_eq!(*m.lock(), 2);
    });
}
