//! [`Mutex`]: the blocking, adaptive mutex under parking_lot 0.13's names.

use crate::raw_mutex::RawMutex;

/// A blocking mutual-exclusion lock, parking_lot 0.13's `Mutex` with eCS hints.
///
/// A waiter spins a bounded while and then parks (blocks its thread; in an eCS guest, halts
/// its vCPU until kicked). Natively the budget is parking_lot's. In an eCS guest it spins
/// while the holder's vCPU runs, up to about one halt-and-kick round trip, and when the
/// holder's vCPU is preempted it yields its pCPU to the holder once and then parks, since
/// spinning cannot help then. While held, the holder is inside a
/// *blocking* section for the host (`blocking_depth`, the weaker hint).
///
/// # Fairness
///
/// Like parking_lot's: unfair by default (an unlocking thread wakes one waiter but a running
/// thread may take the lock first), which maximizes throughput; use
/// [`MutexGuard::unlock_fair`](lock_api::MutexGuard::unlock_fair) or
/// [`FairMutex`](crate::FairMutex) to hand the lock to the longest waiter. parking_lot 0.13
/// dropped the old "eventual fairness" timer, and so does this type.
///
/// # Differences from parking_lot's `Mutex`
///
/// - the raw word is a `u32` (the holder's vCPU id lives in it), and debug builds add a holder
///   id, so `Mutex<()>` is 4 bytes (16 in debug builds) instead of 1;
/// - debug builds panic on a second `lock` by the holding thread and on unlocking an unlocked
///   mutex through the raw API (parking_lot deadlocks / corrupts silently);
/// - it builds without `std` (the guest VM program uses it); timed locking
///   (`try_lock_for`, `try_lock_until`) needs `std`;
/// - no `deadlock_detection`, `arc_lock`, `serde` or `send_guard` features; guards are `!Send`.
///
/// # Examples
///
/// ```
/// use ecs_locks::Mutex;
/// use std::sync::Arc;
/// use std::thread;
///
/// let counter = Arc::new(Mutex::new(0));
/// let handles: Vec<_> = (0..4)
///     .map(|_| {
///         let c = Arc::clone(&counter);
///         thread::spawn(move || {
///             for _ in 0..100 {
///                 *c.lock() += 1;
///             }
///         })
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(*counter.lock(), 400);
/// ```
pub type Mutex<T> = lock_api::Mutex<RawMutex, T>;

/// An RAII guard of a [`Mutex`]; the lock is released when it drops. `!Send`.
pub type MutexGuard<'a, T> = lock_api::MutexGuard<'a, RawMutex, T>;

/// A [`MutexGuard`] mapped to a part of the protected data ([`MutexGuard::map`](lock_api::MutexGuard::map)).
pub type MappedMutexGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawMutex, T>;

/// Creates a [`Mutex`] in a `const` context.
///
/// For parking_lot 0.12 users: parking_lot 0.13 removed `const_mutex` because
/// [`Mutex::new`](lock_api::Mutex::new) is a `const fn`; this is kept so 0.12-era code
/// compiles, and is exactly `Mutex::new(val)`.
///
/// ```
/// static M: ecs_locks::Mutex<u32> = ecs_locks::const_mutex(7);
/// assert_eq!(*M.lock(), 7);
/// ```
#[cfg(not(loom))]
#[inline]
pub const fn const_mutex<T>(val: T) -> Mutex<T> {
    Mutex::new(val)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn smoke_and_try_lock() {
        let m = Mutex::new(());
        drop(m.lock());
        let g = m.try_lock().unwrap();
        assert!(m.try_lock().is_none());
        drop(g);
        assert!(m.try_lock().is_some());
    }

    #[test]
    fn contended_counter_is_exact() {
        let m = Arc::new(Mutex::new(0u64));
        let hs: Vec<_> = (0..6)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    for _ in 0..2000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock(), 12_000);
    }

    #[test]
    fn map_and_unlocked() {
        let m = Mutex::new((1, 2));
        let mut g = m.lock();
        MutexGuard::unlocked(&mut g, || assert!(m.try_lock().is_some()));
        let mut mapped = MutexGuard::map(g, |p| &mut p.1);
        *mapped += 1;
        drop(mapped);
        assert_eq!(*m.lock(), (1, 3));
    }

    #[test]
    fn poison_free_after_panic() {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = thread::spawn(move || {
            let _g = m2.lock();
            panic!("holder panics");
        })
        .join();
        assert_eq!(*m.lock(), 1, "parking_lot mutexes do not poison");
    }

    #[test]
    fn const_constructor() {
        static M: Mutex<u8> = const_mutex(3);
        *M.lock() += 1;
        assert_eq!(*M.lock(), 4);
    }
}
