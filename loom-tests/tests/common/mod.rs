//! What the mutex models share: a raw lock beside the data it protects, so loom checks every
//! access to the data for races.
#![allow(dead_code)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;

/// A raw lock and the data it protects.
pub struct Guarded<R> {
    /// The lock under test.
    pub raw: R,
    /// Accessed only while `raw` is held.
    pub data: UnsafeCell<u32>,
}

// SAFETY: `data` is only accessed while `raw` is held (which is what loom checks).
unsafe impl<R: Sync> Sync for Guarded<R> {}

/// The basic model every mutex gets: two threads each add 1 under the lock; the sum must be 2
/// and the lock free afterwards. Run inside `loom::model`.
pub fn two_adders_exclude<R>(guarded: impl Fn() -> Arc<Guarded<R>>)
where
    R: lock_api::RawMutex + Send + Sync + 'static,
{
    let g = guarded();
    let g2 = Arc::clone(&g);
    let t = loom::thread::spawn(move || g2.add(1));
    g.add(1);
    t.join().unwrap();
    assert_eq!(g.value(), 2);
    assert!(!g.raw.is_locked());
}

impl<R: lock_api::RawMutex> Guarded<R> {
    /// `raw` around a zero.
    pub fn new(raw: R) -> Arc<Self> {
        Arc::new(Self {
            raw,
            data: UnsafeCell::new(0),
        })
    }

    /// Adds `n` under the lock.
    pub fn add(&self, n: u32) {
        let g = self.raw.lock();
        // SAFETY: the lock is held.
        self.data.with_mut(|p| unsafe { *p += n });
        // SAFETY: `g` is the state of the acquisition above.
        unsafe { self.raw.unlock(g) };
    }

    /// Adds 1 under the lock.
    pub fn increment(&self) {
        self.add(1);
    }

    /// The data, read under the lock.
    pub fn value_locked(&self) -> u32 {
        let g = self.raw.lock();
        // SAFETY: the lock is held.
        let v = self.data.with(|p| unsafe { *p });
        // SAFETY: `g` is the state of the acquisition above.
        unsafe { self.raw.unlock(g) };
        v
    }

    /// The data, once every other thread was joined.
    pub fn value(&self) -> u32 {
        // SAFETY: called after every other thread was joined.
        self.data.with(|p| unsafe { *p })
    }
}
