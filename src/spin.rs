//! [`SpinMutex`]: the test-and-test-and-set spinlock as a `lock_api` mutex.

use crate::raw_spin::RawSpinMutex;

/// A spinlock (test-and-test-and-set with bounded exponential backoff) whose holder is an
/// enlightened critical section.
///
/// Protocol and lock word: [`RawSpinMutex`]. Waiters spin with exponential backoff; natively
/// a waiter past the spin limit yields its thread to the OS (so oversubscription does not
/// collapse); inside an eCS VM a waiter whose holder's vCPU is preempted yields its pCPU to
/// that vCPU at once (directed yield), and the host defers preempting the holder.
///
/// # Fairness
///
/// None: whoever's CAS lands first after a release wins, including the releasing thread, so a
/// waiter can starve under sustained contention. Use [`TicketMutex`](crate::TicketMutex) or
/// [`McsMutex`](crate::McsMutex) for FIFO order. `RawMutexFair` is not implemented: there is
/// no queue to hand the lock to.
///
/// # Differences from parking_lot and `spin`
///
/// - parking_lot has no spinlock: its `Mutex` spins briefly and then parks the thread in the
///   kernel. Use this type for short critical sections where parking costs more than the
///   section, and in `no_std` guests.
/// - Compared with `spin::Mutex` (the `spin` crate): the same test-and-test-and-set idea, but
///   `spin` spins forever with `spin_loop`; this lock backs off exponentially, yields to the OS
///   after the spin limit, and cooperates with the hypervisor (critical-section marks, directed
///   yield). Its guards are `!Send`, because the critical-section depth is per thread/vCPU.
/// - Not reentrant: locking it again on the same thread deadlocks (undetectable: the word
///   names a vCPU, not a thread).
/// - 4 bytes of lock state; `const` constructor (`SpinMutex::new` is `const`).
///
/// # Example
///
/// ```
/// use ecs_locks::SpinMutex;
/// use std::sync::Arc;
/// use std::thread;
///
/// let counter = Arc::new(SpinMutex::new(0u64));
/// let handles: Vec<_> = (0..4)
///     .map(|_| {
///         let counter = Arc::clone(&counter);
///         thread::spawn(move || {
///             for _ in 0..1000 {
///                 *counter.lock() += 1;
///             }
///         })
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(*counter.lock(), 4000);
/// ```
pub type SpinMutex<T> = lock_api::Mutex<RawSpinMutex, T>;

/// RAII guard of a [`SpinMutex`]; releases it (and leaves the critical section) on drop.
/// `!Send`: it must be dropped on the thread that locked.
pub type SpinMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawSpinMutex, T>;

/// A [`SpinMutexGuard`] narrowed to a part of the data by `SpinMutexGuard::map`.
pub type MappedSpinMutexGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawSpinMutex, T>;

/// Compile-time trait checks shared by the spin family's unit tests.
#[cfg(all(test, not(loom)))]
pub(crate) mod assert_traits {
    /// `<T as AmbiguousIfSend<_>>::some_item` compiles only if `T: !Send` (for a `Send` type
    /// both impls apply and inference fails), as in `static_assertions::assert_not_impl_any`.
    pub(crate) trait AmbiguousIfSend<A> {
        fn some_item() {}
    }
    impl<T: ?Sized> AmbiguousIfSend<()> for T {}
    impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}

    pub(crate) fn is_send<T: ?Sized + Send>() {}
    pub(crate) fn is_sync<T: ?Sized + Sync>() {}
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::assert_traits::{AmbiguousIfSend, is_send, is_sync};
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn send_sync() {
        is_send::<SpinMutex<u32>>();
        is_sync::<SpinMutex<u32>>();
        is_sync::<SpinMutexGuard<'static, u32>>();
        is_sync::<MappedSpinMutexGuard<'static, u32>>();
        <SpinMutexGuard<'static, u32> as AmbiguousIfSend<_>>::some_item();
        <MappedSpinMutexGuard<'static, u32> as AmbiguousIfSend<_>>::some_item();
    }

    #[test]
    fn lock_try_lock_map() {
        static M: SpinMutex<(u32, u32)> = SpinMutex::new((1, 2));
        {
            let g = M.lock();
            assert!(M.try_lock().is_none());
            let mut second = SpinMutexGuard::map(g, |p| &mut p.1);
            *second += 40;
            assert!(M.is_locked());
        }
        assert!(!M.is_locked());
        assert_eq!(*M.try_lock().unwrap(), (1, 42));
    }

    #[test]
    fn unlocked_releases_and_reacquires() {
        let m = SpinMutex::new(5);
        let mut g = m.lock();
        SpinMutexGuard::unlocked(&mut g, || {
            assert!(!m.is_locked());
            *m.lock() += 1;
        });
        assert_eq!(*g, 6);
    }

    #[test]
    fn counter_two_threads() {
        let m = Arc::new(SpinMutex::new(0u32));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let m = Arc::clone(&m);
                thread::spawn(move || {
                    for _ in 0..2000 {
                        let mut g = m.lock();
                        let v = *g;
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock(), 4000);
    }
}
