//! [`RwLock`]: the blocking reader-writer lock under parking_lot 0.13's names.

use crate::raw_rwlock::RawRwLock;

/// A blocking reader-writer lock with upgradable reads (parking_lot 0.13's `RwLock`, with eCS
/// hints).
///
/// Many readers or one writer; one *upgradable* reader may coexist with plain readers and
/// later upgrade to a writer without letting another writer in between. Writers can downgrade
/// to readers or to an upgradable read.
///
/// # Fairness
///
/// Writer-preferring: once a writer is waiting, new readers (and upgraders) block, so writers
/// are not starved; on release all queued readers and at most one writer/upgrader are woken in
/// queue order, so readers are not starved either. Unfair by default (a running thread may
/// take the lock before woken ones); `unlock_fair`/`bump` hand the lock over. A thread that
/// takes a second read lock while a writer waits deadlocks: use
/// [`RecursiveRwLock`](crate::RecursiveRwLock) to read-lock recursively.
///
/// # Differences from parking_lot's `RwLock`
///
/// - in a VM waiters spin while the writer's vCPU runs (capped) and yield to it, then park,
///   when it is preempted;
///   every holder is inside a blocking section for the host;
/// - builds without `std` (timed methods need `std`); guest builds add a writer-vCPU word
///   (16 bytes instead of 8); debug builds panic on raw unlocks of a mode that is not held.
///
/// # Examples
///
/// ```
/// use ecs_locks::{RwLock, RwLockUpgradableReadGuard};
///
/// let lock = RwLock::new(5);
/// {
///     let r1 = lock.read();
///     let r2 = lock.read();
///     assert_eq!(*r1 + *r2, 10);
/// }
/// let up = lock.upgradable_read();
/// let mut w = RwLockUpgradableReadGuard::upgrade(up);
/// *w += 1;
/// drop(w);
/// assert_eq!(*lock.read(), 6);
/// ```
pub type RwLock<T> = lock_api::RwLock<RawRwLock, T>;

/// RAII guard of a shared read lock. `!Send`.
pub type RwLockReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, RawRwLock, T>;

/// RAII guard of an exclusive write lock. `!Send`.
pub type RwLockWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, RawRwLock, T>;

/// A read guard mapped to a part of the protected data.
pub type MappedRwLockReadGuard<'a, T> = lock_api::MappedRwLockReadGuard<'a, RawRwLock, T>;

/// A write guard mapped to a part of the protected data.
pub type MappedRwLockWriteGuard<'a, T> = lock_api::MappedRwLockWriteGuard<'a, RawRwLock, T>;

/// RAII guard of an upgradable read lock. `!Send`.
pub type RwLockUpgradableReadGuard<'a, T> = lock_api::RwLockUpgradableReadGuard<'a, RawRwLock, T>;

/// Creates a [`RwLock`] in a `const` context (parking_lot 0.12's `const_rwlock`; 0.13 dropped
/// it since `RwLock::new` is `const`).
///
/// ```
/// static L: ecs_locks::RwLock<u8> = ecs_locks::const_rwlock(9);
/// assert_eq!(*L.read(), 9);
/// ```
#[cfg(not(loom))]
#[inline]
pub const fn const_rwlock<T>(val: T) -> RwLock<T> {
    RwLock::new(val)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn readers_share_writers_exclude() {
        let l = RwLock::new(0);
        let r1 = l.read();
        let r2 = l.try_read().unwrap();
        assert!(l.try_write().is_none());
        drop((r1, r2));
        let w = l.write();
        assert!(l.try_read().is_none());
        assert!(l.try_upgradable_read().is_none());
        drop(w);
    }

    #[test]
    fn downgrade_paths() {
        let l = RwLock::new(1);
        let mut w = l.write();
        *w = 2;
        let r = RwLockWriteGuard::downgrade(w);
        assert_eq!(*r, 2);
        assert!(l.try_read().is_some());
        assert!(l.try_write().is_none());
        drop(r);
        let w = l.write();
        let u = RwLockWriteGuard::downgrade_to_upgradable(w);
        assert!(l.try_read().is_some());
        assert!(l.try_upgradable_read().is_none());
        let r = RwLockUpgradableReadGuard::downgrade(u);
        assert!(l.try_upgradable_read().is_some());
        drop(r);
    }

    #[test]
    fn pending_writer_blocks_new_readers() {
        let l = Arc::new(RwLock::new(()));
        let r = l.read();
        let l2 = l.clone();
        let writer = thread::spawn(move || drop(l2.write()));
        // Wait until the writer owns WRITER_BIT (it then waits for our read lock).
        // SAFETY: only formats the raw lock's state; nothing is locked or unlocked through it.
        while !format!("{:?}", unsafe { l.raw() }).contains("writer: true") {
            thread::yield_now();
        }
        assert!(l.try_read().is_none(), "writer preference");
        assert!(l.try_read_for(Duration::from_millis(5)).is_none());
        drop(r);
        writer.join().unwrap();
        assert!(l.try_read().is_some());
    }

    #[test]
    fn contended_counter_is_exact() {
        let l = Arc::new(RwLock::new((0u64, 0u64)));
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let l = l.clone();
                thread::spawn(move || {
                    for _ in 0..1000 {
                        if i % 2 == 0 {
                            let mut w = l.write();
                            w.0 += 1;
                            w.1 += 1;
                        } else {
                            let r = l.read();
                            assert_eq!(r.0, r.1);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*l.read(), (3000, 3000));
    }

    #[test]
    fn const_constructor() {
        static L: RwLock<u8> = const_rwlock(0);
        *L.write() += 1;
        assert_eq!(*L.read(), 1);
    }
}
