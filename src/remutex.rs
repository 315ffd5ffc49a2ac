//! [`ReentrantMutex`]: lock_api's reentrant wrapper over [`RawMutex`] with a thread id.

use crate::raw_mutex::RawMutex;
use core::num::NonZeroUsize;
use lock_api::GetThreadId;

/// The thread id for [`ReentrantMutex`]: natively the address of a thread-local byte (as
/// parking_lot's `RawThreadId`); in an eCS guest (no_std) the vCPU id + 1, since the guest runs
/// one thread per vCPU.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawThreadId;

// SAFETY: natively, the address of a live thread-local with non-zero size is unique among live
// threads and non-zero; in a guest, each vCPU runs exactly one thread of execution and its id
// + 1 is non-zero and unique.
unsafe impl GetThreadId for RawThreadId {
    const INIT: Self = RawThreadId;

    #[inline]
    fn nonzero_thread_id(&self) -> NonZeroUsize {
        #[cfg(feature = "std")]
        {
            #[cfg(not(loom))]
            crate::sync::thread_local!(static KEY: u8 = const { 0 });
            #[cfg(loom)]
            crate::sync::thread_local!(static KEY: u8 = 0);
            KEY.with(|x| {
                NonZeroUsize::new(core::ptr::from_ref(x).addr())
                    .expect("thread-local variable address is null")
            })
        }
        #[cfg(not(feature = "std"))]
        {
            NonZeroUsize::new(crate::cs::vcpu_id() as usize + 1).expect("vCPU id + 1 is non-zero")
        }
    }
}

/// A mutex that the holding thread may lock again (parking_lot 0.13's `ReentrantMutex`).
///
/// Guards give shared access only (`&T`), since several may coexist on one thread; use a
/// `Cell`/`RefCell` inside to mutate. Built on [`RawMutex`](crate::RawMutex): the first
/// acquisition by a thread is an adaptive, hinted blocking acquisition, nested ones only count.
///
/// # Fairness
///
/// As [`Mutex`](crate::Mutex): unfair by default, `unlock_fair`/`bump` hand off.
///
/// # Differences from parking_lot's `ReentrantMutex`
///
/// Those of the underlying [`Mutex`](crate::Mutex); in a no_std guest the thread id is the
/// vCPU id (one thread per vCPU). Not available in no_std builds without `guest`.
///
/// # Examples
///
/// ```
/// use ecs_locks::ReentrantMutex;
/// use std::cell::RefCell;
///
/// let lock = ReentrantMutex::new(RefCell::new(0));
/// let first = lock.lock();
/// let second = lock.lock();
/// *first.borrow_mut() += 1;
/// *second.borrow_mut() += 1;
/// drop((first, second));
/// assert_eq!(*lock.lock().borrow(), 2);
/// ```
pub type ReentrantMutex<T> = lock_api::ReentrantMutex<RawMutex, RawThreadId, T>;

/// An RAII guard of a [`ReentrantMutex`]: releases one level when dropped. `!Send`.
pub type ReentrantMutexGuard<'a, T> = lock_api::ReentrantMutexGuard<'a, RawMutex, RawThreadId, T>;

/// A [`ReentrantMutexGuard`] mapped to a part of the protected data.
pub type MappedReentrantMutexGuard<'a, T> =
    lock_api::MappedReentrantMutexGuard<'a, RawMutex, RawThreadId, T>;

/// Creates a [`ReentrantMutex`] in a `const` context (parking_lot 0.12's
/// `const_reentrant_mutex`; 0.13 dropped it since `ReentrantMutex::new` is `const`).
///
/// ```
/// static M: ecs_locks::ReentrantMutex<u8> = ecs_locks::const_reentrant_mutex(1);
/// assert_eq!(*M.lock(), 1);
/// ```
#[cfg(not(loom))]
#[inline]
pub const fn const_reentrant_mutex<T>(val: T) -> ReentrantMutex<T> {
    ReentrantMutex::new(val)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn nests_and_excludes_other_threads() {
        let m = Arc::new(ReentrantMutex::new(RefCell::new(0)));
        let g1 = m.lock();
        let g2 = m.lock();
        let m2 = m.clone();
        let other = thread::spawn(move || m2.try_lock().is_none())
            .join()
            .unwrap();
        assert!(other, "another thread cannot take a held reentrant mutex");
        *g2.borrow_mut() += 1;
        drop(g2);
        drop(g1);
        let m2 = m.clone();
        thread::spawn(move || *m2.lock().borrow_mut() += 1)
            .join()
            .unwrap();
        assert_eq!(*m.lock().borrow(), 2);
    }

    #[test]
    fn contended_counter_is_exact() {
        let m = Arc::new(ReentrantMutex::new(RefCell::new(0u32)));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    for _ in 0..500 {
                        let a = m.lock();
                        let b = m.lock();
                        *b.borrow_mut() += 1;
                        drop(b);
                        *a.borrow_mut() += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock().borrow(), 4000);
    }
}
