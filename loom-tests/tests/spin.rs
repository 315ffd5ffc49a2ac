//! Loom models of `RawSpinMutex`: mutual exclusion through `lock` and `try_lock`.
#![cfg(loom)]

use ecs_locks::RawSpinMutex;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// A raw lock and the data it protects; loom checks every access to `data` for races.
struct Guarded {
    raw: RawSpinMutex,
    data: UnsafeCell<u32>,
}

// SAFETY: `data` is only accessed while `raw` is held (checked by loom).
unsafe impl Sync for Guarded {}

impl Guarded {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            raw: RawSpinMutex::new(),
            data: UnsafeCell::new(0),
        })
    }

    fn increment(&self) {
        let g = self.raw.lock();
        // SAFETY: the lock is held.
        self.data.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: `g` is the state of the acquisition above.
        unsafe { self.raw.unlock(g) };
    }

    fn value(&self) -> u32 {
        // SAFETY: called after every other thread was joined.
        self.data.with(|p| unsafe { *p })
    }
}

#[test]
fn lock_excludes() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || g2.increment());
        g.increment();
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
