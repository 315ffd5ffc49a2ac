//! [`TicketMutex`]: the FIFO ticket spinlock as a `lock_api` mutex.

use crate::raw_ticket::RawTicketMutex;

/// A FIFO ticket spinlock whose holder is an enlightened critical section, and whose waiters
/// survive both lock-holder and lock-waiter preemption.
///
/// Protocol and words: [`RawTicketMutex`]. Waiters spin with exponential backoff while the lock
/// is held (natively a yield to the OS past the spin limit; inside an eCS VM a directed yield to
/// the holder's vCPU when it is preempted).
///
/// # Fairness
///
/// FIFO among waiters that run: tickets are served in the order they were taken, and every
/// unlock leaves the lock to the next ticket. If that waiter does not take the free lock within
/// a hand-off window (it is descheduled, or its thread no longer exists), the nearest waiter
/// behind it takes over (the preemptable ticket lock of Ouyang & Lange, VEE 2013): the window
/// grows with the distance, [`RawTicketMutex::DEFAULT_PATIENCE`] pauses per position, and inside
/// a VM waiters known to be preempted are skipped at once. A skipped waiter is *late*: when it
/// runs again it takes the lock the next time it sees it free, without order.
/// `TicketMutex::from_raw(RawTicketMutex::with_patience(u32::MAX), v)` is the strict-FIFO
/// classic. `unlock_fair` is the same as `unlock`; `TicketMutexGuard::bump` re-queues behind
/// the current waiters when there are any.
///
/// # Oversubscription (bare metal)
///
/// With more runnable threads than CPUs the OS deschedules waiters holding tickets. A strict
/// ticket lock then hands the lock to a sleeping thread and everybody waits for its next time
/// slice (8 threads on 2 CPUs: about 250x parking_lot's time before take-over). With take-over,
/// such a hand-off costs one window (a few microseconds) and the running threads continue in
/// order; `examples/ticket_order.rs` counts the acquisitions that were not in turn.
///
/// # Differences from parking_lot and `spin`
///
/// - parking_lot has no spinlock; its closest type, `FairMutex`, parks waiters in the kernel
///   and hands off on `unlock_fair`. This lock never parks: use it for short sections where
///   FIFO order matters, and in `no_std` guests.
/// - `spin::TicketMutex` (the `spin` crate) is the strict algorithm spinning forever; this one
///   backs off, yields, skips waiters that do not run, records each ticket's vCPU inside a VM,
///   and marks the holder as a critical section. Its guards are `!Send`.
/// - Not reentrant: locking it again on the same thread deadlocks.
/// - 16 bytes of lock state natively (the word, the patience, one hint slot); 32 hint slots
///   (128 bytes) with live hints.
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
        // must get it in that order. Strict FIFO: with take-over, a helper the OS keeps off the
        // CPU at the hand-off (the test threads run in parallel) may be skipped, by design.
        let m = Arc::new(TicketMutex::from_raw(
            RawTicketMutex::with_patience(u32::MAX),
            Vec::new(),
        ));
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
