//! [`McsMutex`]: the MCS queue lock as a `lock_api` mutex.
//!
//! Available with `std` (thread-local queue nodes) or `guest` (per-vCPU queue nodes); a
//! `no_std` build without `guest` has nowhere stable to keep queue nodes and leaves it out.

use crate::raw_mcs::RawMcsMutex;

/// A queued (MCS) spinlock: FIFO, each waiter spinning on its own cache line, the holder an
/// enlightened critical section, waiters robust to lock-holder and lock-waiter preemption.
///
/// Protocol, node storage and words: [`RawMcsMutex`]. The first choice among the spin
/// family when many flows contend: a release touches only the successor's cache line, where
/// a [`SpinMutex`](crate::SpinMutex) release invalidates every waiter's copy.
///
/// # Fairness
///
/// FIFO: each release hands the lock to the queue successor; `unlock_fair` is the same as
/// `unlock` and `McsMutexGuard::bump` re-queues behind the current waiters if there are any.
/// Exception: when a flow nests more than [`RawMcsMutex::NODES_PER_FLOW`]
/// MCS locks at once, the extra acquisitions are node-less and only enter an empty queue
/// (correct, but they may wait long under contention).
///
/// # Differences from parking_lot and `spin`
///
/// - parking_lot has no queue spinlock; its `FairMutex` queues in the kernel-assisted parking
///   lot and parks. This lock never parks: for short sections with many contenders, and in
///   `no_std` guests.
/// - The `spin` crate has no MCS lock (its `TicketMutex` is FIFO but all waiters spin on one
///   word).
/// - lock_api 0.5 guards are movable, so the queue node is not in the guard: each thread (each
///   vCPU in the guest) owns a few nodes in stable storage and the guard carries a handle.
///   Guards are `!Send` (the node and the critical-section depth belong to the thread).
/// - Not reentrant: debug builds panic on a second `lock` by the same thread; release builds
///   deadlock.
/// - 16 bytes of lock state (tail and hand-off words).
///
/// # Example
///
/// ```
/// use ecs_locks::McsMutex;
/// use std::sync::Arc;
/// use std::thread;
///
/// let totals = Arc::new(McsMutex::new([0u64; 2]));
/// let handles: Vec<_> = (0..4)
///     .map(|i| {
///         let totals = Arc::clone(&totals);
///         thread::spawn(move || {
///             for _ in 0..500 {
///                 totals.lock()[i % 2] += 1;
///             }
///         })
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(*totals.lock(), [1000, 1000]);
/// ```
pub type McsMutex<T> = lock_api::Mutex<RawMcsMutex, T>;

/// RAII guard of an [`McsMutex`]; hands the lock to the queue successor on drop. `!Send`.
pub type McsMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawMcsMutex, T>;

/// An [`McsMutexGuard`] narrowed to a part of the data by `McsMutexGuard::map`.
pub type MappedMcsMutexGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawMcsMutex, T>;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::spin::assert_traits::{AmbiguousIfSend, is_send, is_sync};
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn send_sync() {
        is_send::<McsMutex<u32>>();
        is_sync::<McsMutex<u32>>();
        is_sync::<McsMutexGuard<'static, u32>>();
        <McsMutexGuard<'static, u32> as AmbiguousIfSend<_>>::some_item();
        <MappedMcsMutexGuard<'static, u32> as AmbiguousIfSend<_>>::some_item();
        <crate::McsHandle as AmbiguousIfSend<_>>::some_item();
    }

    #[test]
    fn static_lock_map_and_moved_guards() {
        static M: McsMutex<(u32, u32)> = McsMutex::new((0, 0));
        // Guards move freely: the node stays put.
        let g = M.lock();
        let boxed = Box::new(g);
        let mut m = McsMutexGuard::map(*boxed, |p| &mut p.0);
        *m = 3;
        drop(m);
        assert_eq!(*M.lock(), (3, 0));
    }

    #[test]
    fn bump_and_fair_unlock() {
        let m = McsMutex::new(0);
        let mut g = m.lock();
        McsMutexGuard::bump(&mut g);
        *g += 1;
        McsMutexGuard::unlock_fair(g);
        assert!(!m.is_locked());
        assert_eq!(*m.lock(), 1);
    }

    #[test]
    fn counter_four_threads_nested() {
        let outer = Arc::new(McsMutex::new(0u32));
        let inner = Arc::new(McsMutex::new(0u32));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (outer, inner) = (Arc::clone(&outer), Arc::clone(&inner));
                thread::spawn(move || {
                    for _ in 0..300 {
                        let mut o = outer.lock();
                        let mut i = inner.lock();
                        *o += 1;
                        *i += 2;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!((*outer.lock(), *inner.lock()), (1200, 2400));
    }
}
