//! [`RecursiveRwLock`]: the blocking reader-writer lock in its recursive mode, under parking_lot
//! 0.13's names.

use crate::raw_rwlock::RawRwLockRecursive;

/// A blocking reader-writer lock that permits recursive read locking (parking_lot 0.13's
/// `RecursiveRwLock`, with eCS hints).
///
/// Like [`RwLock`](crate::RwLock) (upgradable reads, downgrades, timed and fair variants),
/// except that a reader is only blocked by a writer that *holds* the lock: while other readers
/// hold it, new readers join even if a writer waits. A thread can therefore take the read lock
/// again without deadlocking, at the cost of letting a steady stream of readers starve writers.
/// Upgradable reads are not recursive (an upgradable reader still excludes another).
///
/// ```
/// use ecs_locks::RecursiveRwLock;
/// use std::sync::Arc;
/// use std::thread;
///
/// let lock = Arc::new(RecursiveRwLock::new(5));
/// let first = lock.read();
/// let l2 = Arc::clone(&lock);
/// let writer = thread::spawn(move || *l2.write() += 1);
/// // Even with the writer queued, the second read does not deadlock.
/// let second = lock.read();
/// assert_eq!(*first + *second, 10);
/// drop((first, second));
/// writer.join().unwrap();
/// assert_eq!(*lock.read(), 6);
/// ```
pub type RecursiveRwLock<T> = lock_api::RwLock<RawRwLockRecursive, T>;

/// RAII guard releasing shared read access of a [`RecursiveRwLock`] when dropped.
pub type RecursiveRwLockReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, RawRwLockRecursive, T>;

/// RAII guard releasing exclusive write access of a [`RecursiveRwLock`] when dropped.
pub type RecursiveRwLockWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, RawRwLockRecursive, T>;

/// RAII guard releasing upgradable read access of a [`RecursiveRwLock`] when dropped.
pub type RecursiveRwLockUpgradableReadGuard<'a, T> =
    lock_api::RwLockUpgradableReadGuard<'a, RawRwLockRecursive, T>;

/// A [`RecursiveRwLockReadGuard`] narrowed to a part of the data.
pub type MappedRecursiveRwLockReadGuard<'a, T> =
    lock_api::MappedRwLockReadGuard<'a, RawRwLockRecursive, T>;

/// A [`RecursiveRwLockWriteGuard`] narrowed to a part of the data.
pub type MappedRecursiveRwLockWriteGuard<'a, T> =
    lock_api::MappedRwLockWriteGuard<'a, RawRwLockRecursive, T>;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn recursive_read_with_waiting_writer() {
        let lock = Arc::new(RecursiveRwLock::new(0u32));
        let first = lock.read();
        let l2 = Arc::clone(&lock);
        let writer = thread::spawn(move || *l2.write() += 1);
        // Wait until the writer has announced itself: WRITER_BIT set while we read (the raw
        // lock's Debug shows the bit).
        // SAFETY: reading the raw lock's state only.
        while !format!("{:?}", unsafe { lock.raw() }).contains("writer: true") {
            thread::yield_now();
        }
        let second = lock
            .try_read()
            .expect("a recursive read joins other readers");
        let third = lock.read();
        assert_eq!(*first + *second + *third, 0);
        drop((first, second, third));
        writer.join().unwrap();
        assert_eq!(*lock.read(), 1);
    }

    #[test]
    fn writers_and_readers_exact() {
        let lock = Arc::new(RecursiveRwLock::new(0u64));
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let l = Arc::clone(&lock);
                thread::spawn(move || {
                    for _ in 0..500 {
                        if i % 4 == 0 {
                            *l.write() += 1;
                        } else {
                            let a = l.read();
                            let b = l.read();
                            assert_eq!(*a, *b);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*lock.read(), 1000);
    }

    #[test]
    fn timed_upgrade_and_mapped() {
        let lock = RecursiveRwLock::new([1u8, 2]);
        {
            let up = lock.upgradable_read();
            let r = lock.read();
            assert_eq!(r[0], 1);
            drop(r);
            let mut w = RecursiveRwLockUpgradableReadGuard::upgrade(up);
            w[1] = 3;
            let d = RecursiveRwLockWriteGuard::downgrade(w);
            let m: MappedRecursiveRwLockReadGuard<'_, u8> =
                RecursiveRwLockReadGuard::map(d, |a| &a[1]);
            assert_eq!(*m, 3);
        }
        let w = lock.try_write_for(Duration::from_millis(10)).expect("free");
        let mut m: MappedRecursiveRwLockWriteGuard<'_, u8> =
            RecursiveRwLockWriteGuard::map(w, |a| &mut a[0]);
        *m = 7;
        drop(m);
        assert_eq!(*lock.read(), [7, 3]);
    }
}
