//! [`TicketMutex`]: the FIFO ticket spinlock as a `lock_api` mutex.

use crate::raw_ticket::RawTicketMutex;

/// A FIFO ticket spinlock whose holder is an enlightened critical section, and whose waiters
/// survive both lock-holder and lock-waiter preemption.
///
/// Protocol and words: [`RawTicketMutex`]. Waiters spin with exponential backoff (natively a
/// yield to the OS past the spin limit); inside an eCS VM a waiter yields its pCPU to the
/// holder's vCPU, or to a waiter ahead of it, when that vCPU is preempted.
///
/// # Fairness
///
/// Strictly FIFO: tickets are served in the order they were taken, every unlock hands the lock
/// to the next ticket, and no waiter starves. `unlock_fair` is the same as `unlock`;
/// `TicketMutexGuard::bump` re-queues behind the current waiters when there are any. The cost
/// of fairness: a hand-off to a flow that is not running stalls the lock until it runs
/// (mitigated in a VM by the directed yields above; natively by yielding to the OS).
///
/// # Differences from parking_lot and `spin`
///
/// - parking_lot has no spinlock; its closest type, `FairMutex`, parks waiters in the kernel
///   and hands off on `unlock_fair`. This lock never parks: use it for short sections where
///   FIFO order matters, and in `no_std` guests.
/// - `spin::TicketMutex` (the `spin` crate) is the same algorithm spinning forever; this one
///   backs off, yields, records each ticket's vCPU so waiters can directed-yield, and marks the
///   holder as a critical section. Its guards are `!Send`.
/// - Not reentrant: locking it again on the same thread deadlocks.
/// - 24 bytes of lock state (two ticket counters and four hint slots).
///
/// # Example
///
/// ```
/// use ecs_locks::{TicketMutex, TicketMutexGuard};
/// use std::sync::Arc;
/// use std::thread;
///
/// let log = Arc::new(TicketMutex::new(Vec::new()));
/// let handles: Vec<_> = (0..4)
///     .map(|i| {
///         let log = Arc::clone(&log);
///         thread::spawn(move || {
///             let mut g = log.lock();
///             g.push(i);
///             // Let any waiters go first, then continue (FIFO re-queue).
///             TicketMutexGuard::bump(&mut g);
///             g.push(i + 10);
///         })
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(log.lock().len(), 8);
/// ```
pub type TicketMutex<T> = lock_api::Mutex<RawTicketMutex, T>;

/// RAII guard of a [`TicketMutex`]; hands the lock to the next ticket on drop. `!Send`.
pub type TicketMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawTicketMutex, T>;

/// A [`TicketMutexGuard`] narrowed to a part of the data by `TicketMutexGuard::map`.
pub type MappedTicketMutexGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawTicketMutex, T>;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::spin::assert_traits::{AmbiguousIfSend, is_send, is_sync};
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::thread;

    #[test]
    fn send_sync() {
        is_send::<TicketMutex<u32>>();
        is_sync::<TicketMutex<u32>>();
        is_sync::<TicketMutexGuard<'static, u32>>();
        <TicketMutexGuard<'static, u32> as AmbiguousIfSend<_>>::some_item();
        <MappedTicketMutexGuard<'static, u32> as AmbiguousIfSend<_>>::some_item();
    }

    #[test]
    fn lock_try_lock_map() {
        static M: TicketMutex<[u8; 2]> = TicketMutex::new([0, 0]);
        {
            let g = M.lock();
            assert!(M.try_lock().is_none());
            let mut b = TicketMutexGuard::map(g, |a| &mut a[1]);
            *b = 9;
        }
        assert_eq!(*M.lock(), [0, 9]);
    }

    #[test]
    fn fifo_hand_off() {
        // The main thread holds the lock while two helpers queue up in a known order; they
        // must get it in that order.
        let m = Arc::new(TicketMutex::new(Vec::new()));
        let g = m.lock();
        let mut hs = Vec::new();
        for id in 0..2u32 {
            let (tx, rx) = mpsc::channel();
            let m2 = Arc::clone(&m);
            hs.push(thread::spawn(move || {
                tx.send(()).unwrap();
                m2.lock().push(id);
            }));
            rx.recv().unwrap();
            // SAFETY: reading the raw lock only.
            let raw = unsafe { m.raw() };
            while raw.queue_len() != id + 2 {
                thread::yield_now();
            }
        }
        drop(g);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock(), vec![0, 1]);
    }

    #[test]
    fn bump_without_waiters_keeps_lock() {
        let m = TicketMutex::new(1);
        let mut g = m.lock();
        TicketMutexGuard::bump(&mut g);
        *g += 1;
        // SAFETY: reading the raw lock only.
        assert_eq!(unsafe { m.raw() }.queue_len(), 1);
        drop(g);
        assert_eq!(*m.lock(), 2);
    }
}
