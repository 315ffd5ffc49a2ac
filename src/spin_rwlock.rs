//! [`SpinRwLock`]: the spinning reader-writer lock as a `lock_api` rwlock.

use crate::raw_spin_rwlock::RawSpinRwLock;

/// A spinning reader-writer lock with upgradable reads and downgrades, preferring writers;
/// every holder (readers included) is an enlightened critical section.
///
/// Protocol and lock word: [`RawSpinRwLock`]. Waiters spin with exponential backoff
/// (natively a yield to the OS past the spin limit); inside an eCS VM a waiter blocked by a
/// writer or the upgradable reader yields its pCPU to that holder's vCPU when it is preempted.
///
/// # Fairness
///
/// Writer preference, no FIFO order: a waiting writer stops new readers, so writers do not
/// starve behind a stream of readers, but readers can starve behind a stream of writers, and
/// writers among themselves race. A thread that already holds a read lock must not take
/// another one with `read()` (it can deadlock once a writer waits in between); `try_read()`
/// ignores waiting writers and is safe for that. No fair unlocking (`RawRwLockFair` is not
/// implemented: there is no queue to hand the lock to).
///
/// # Differences from parking_lot and `spin`
///
/// - parking_lot's `RwLock` parks waiters in the kernel and is task-fair with eventual
///   fairness; this lock never parks: for short read-mostly sections, and in `no_std` guests.
///   The guard API is the same (`read`, `write`, `upgradable_read`,
///   `SpinRwLockUpgradableReadGuard::upgrade`, `SpinRwLockWriteGuard::downgrade`, `map`, ...).
///   No timed variants: a spinning lock has no clock to wait on.
/// - `spin::RwLock` (the `spin` crate) is reader-preferring with the same upgradable state and
///   spins forever; this one prefers writers, backs off, yields, names the exclusive holder's
///   vCPU for directed yields, and marks holders as critical sections. Guards are `!Send`.
/// - One word of lock state.
///
/// # Example
///
/// ```
/// use ecs_locks::{SpinRwLock, SpinRwLockUpgradableReadGuard, SpinRwLockWriteGuard};
///
/// let config = SpinRwLock::new(vec![1, 2, 3]);
/// {
///     let a = config.read();
///     let b = config.read();
///     assert_eq!(a.len() + b.len(), 6);
/// }
/// let up = config.upgradable_read();
/// if !up.contains(&4) {
///     let mut w = SpinRwLockUpgradableReadGuard::upgrade(up);
///     w.push(4);
///     let r = SpinRwLockWriteGuard::downgrade(w);
///     assert_eq!(*r, [1, 2, 3, 4]);
/// }
/// assert!(!config.is_locked());
/// ```
pub type SpinRwLock<T> = lock_api::RwLock<RawSpinRwLock, T>;

/// RAII read guard of a [`SpinRwLock`]. `!Send`.
pub type SpinRwLockReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, RawSpinRwLock, T>;

/// RAII write guard of a [`SpinRwLock`]. `!Send`.
pub type SpinRwLockWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, RawSpinRwLock, T>;

/// RAII upgradable read guard of a [`SpinRwLock`]. `!Send`.
pub type SpinRwLockUpgradableReadGuard<'a, T> =
    lock_api::RwLockUpgradableReadGuard<'a, RawSpinRwLock, T>;

/// A [`SpinRwLockReadGuard`] narrowed to a part of the data by `SpinRwLockReadGuard::map`.
pub type MappedSpinRwLockReadGuard<'a, T> = lock_api::MappedRwLockReadGuard<'a, RawSpinRwLock, T>;

/// A [`SpinRwLockWriteGuard`] narrowed to a part of the data by `SpinRwLockWriteGuard::map`.
pub type MappedSpinRwLockWriteGuard<'a, T> = lock_api::MappedRwLockWriteGuard<'a, RawSpinRwLock, T>;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::spin::assert_traits::{AmbiguousIfSend, is_send, is_sync};
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn send_sync() {
        is_send::<SpinRwLock<u32>>();
        is_sync::<SpinRwLock<u32>>();
        is_sync::<SpinRwLockReadGuard<'static, u32>>();
        is_sync::<SpinRwLockWriteGuard<'static, u32>>();
        <SpinRwLockReadGuard<'static, u32> as AmbiguousIfSend<_>>::some_item();
        <SpinRwLockWriteGuard<'static, u32> as AmbiguousIfSend<_>>::some_item();
        <SpinRwLockUpgradableReadGuard<'static, u32> as AmbiguousIfSend<_>>::some_item();
        <MappedSpinRwLockReadGuard<'static, u32> as AmbiguousIfSend<_>>::some_item();
        <MappedSpinRwLockWriteGuard<'static, u32> as AmbiguousIfSend<_>>::some_item();
    }

    #[test]
    fn guards_and_maps() {
        static L: SpinRwLock<(u8, u8)> = SpinRwLock::new((1, 2));
        {
            let w = L.write();
            let mut first = SpinRwLockWriteGuard::map(w, |p| &mut p.0);
            *first = 7;
        }
        {
            let r = L.read();
            let second = SpinRwLockReadGuard::map(r, |p| &p.1);
            assert_eq!(*second, 2);
            assert!(L.try_write().is_none());
        }
        let u = L.upgradable_read();
        let u = SpinRwLockUpgradableReadGuard::try_upgrade(u)
            .map(SpinRwLockWriteGuard::downgrade_to_upgradable)
            .unwrap_or_else(|_| panic!("no readers"));
        let r = SpinRwLockUpgradableReadGuard::downgrade(u);
        assert_eq!(*r, (7, 2));
    }

    #[test]
    fn readers_see_writers_invariant() {
        let l = Arc::new(SpinRwLock::new((0u64, 0u64)));
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let l = Arc::clone(&l);
                thread::spawn(move || {
                    for _ in 0..300 {
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
        assert_eq!(*l.read(), (600, 600));
    }
}
