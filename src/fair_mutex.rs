//! [`FairMutex`]: a [`Mutex`](crate::Mutex) whose every unlock hands off fairly.

use crate::raw_fair_mutex::RawFairMutex;

/// A blocking mutex that is always fair: an unlock with parked waiters hands the lock, still
/// locked, to the longest-parked one (parking_lot 0.13's `FairMutex`, with eCS hints).
///
/// # Fairness
///
/// FIFO among parked waiters; a thread still spinning (not yet parked) can take the lock only
/// when nobody is parked. This costs throughput under contention (every hand-off wakes a
/// thread) and buys bounded waiting.
///
/// # Differences from parking_lot's `FairMutex`
///
/// The same as for [`Mutex`](crate::Mutex): a `u32` word holding the holder's vCPU,
/// hint-driven spinning in a VM, debug-build misuse checks, `no_std` support.
///
/// # Examples
///
/// ```
/// use ecs_locks::FairMutex;
///
/// let m = FairMutex::new(vec![1]);
/// m.lock().push(2);
/// assert_eq!(*m.lock(), [1, 2]);
/// ```
pub type FairMutex<T> = lock_api::Mutex<RawFairMutex, T>;

/// An RAII guard of a [`FairMutex`]. `!Send`.
pub type FairMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawFairMutex, T>;

/// A [`FairMutexGuard`] mapped to a part of the protected data.
pub type MappedFairMutexGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawFairMutex, T>;

/// Creates a [`FairMutex`] in a `const` context (parking_lot 0.12's `const_fair_mutex`; 0.13
/// dropped it since `FairMutex::new` is `const`).
///
/// ```
/// static M: ecs_locks::FairMutex<i32> = ecs_locks::const_fair_mutex(-1);
/// assert_eq!(*M.lock(), -1);
/// ```
#[cfg(not(loom))]
#[inline]
pub const fn const_fair_mutex<T>(val: T) -> FairMutex<T> {
    FairMutex::new(val)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn fair_counter_is_exact() {
        let m = Arc::new(FairMutex::new(0u32));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    for _ in 0..500 {
                        let mut g = m.lock();
                        *g += 1;
                        FairMutexGuard::bump(&mut g);
                        *g += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock(), 4000);
    }

    #[test]
    fn const_constructor() {
        static M: FairMutex<u8> = const_fair_mutex(0);
        assert!(!M.is_locked());
    }
}
