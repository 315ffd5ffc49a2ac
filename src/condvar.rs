//! [`Condvar`]: parking_lot 0.13's condition variable over [`Mutex`](crate::Mutex).

use crate::raw_condvar::RawCondvar;

pub use lock_api::WaitTimeoutResult;

/// A condition variable, used with [`Mutex`](crate::Mutex) (parking_lot 0.13's `Condvar`).
///
/// - No spurious wake-ups: `wait` returns only after a `notify_one`/`notify_all` selected this
///   waiter (timed waits may also time out). Code with several predicates should still loop
///   (or use `wait_while`).
/// - `notify_one` returns exactly whether a waiter was notified, `notify_all` exactly how many.
/// - `notify_all` requeues waiters onto the mutex instead of waking them all at once.
/// - One mutex at a time per condvar: waiting with a second mutex while threads wait with the
///   first panics.
///
/// # Fairness
///
/// Waiters are notified in FIFO order; after a notify they compete for the mutex like any
/// other thread (requeued ones are woken by the mutex's unlocks in queue order).
///
/// # Differences from parking_lot's `Condvar`
///
/// Waiting releases the blocking-section hint of the mutex and takes it back on wake-up; the
/// timed waits (`wait_for`, `wait_until`, `wait_while_for`, ...) need `std`; without `std`
/// waiters block in the crate's portable wait queue (`park/queue.rs`: the WAIT hypercall and
/// KICK in a guest, spinning in a no_std build without `guest`).
///
/// # Examples
///
/// ```
/// use ecs_locks::{Condvar, Mutex};
/// use std::sync::Arc;
/// use std::thread;
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let pair2 = Arc::clone(&pair);
/// thread::spawn(move || {
///     let (lock, cvar) = &*pair2;
///     *lock.lock() = true;
///     cvar.notify_one();
/// });
/// let (lock, cvar) = &*pair;
/// let mut started = lock.lock();
/// cvar.wait_while(&mut started, |s| !*s);
/// assert!(*started);
/// ```
pub type Condvar = lock_api::Condvar<RawCondvar>;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Mutex;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn notify_without_waiters_counts_zero() {
        let c = Condvar::new();
        assert!(!c.notify_one());
        assert_eq!(c.notify_all(), 0);
    }

    #[test]
    fn wait_for_times_out_and_relocks() {
        let m = Mutex::new(5);
        let c = Condvar::new();
        let mut g = m.lock();
        assert!(c.wait_for(&mut g, Duration::from_millis(10)).timed_out());
        assert_eq!(*g, 5);
        assert!(m.is_locked());
        drop(g);
        assert!(!c.notify_one(), "the timed-out waiter left the queue");
    }

    #[test]
    fn notify_all_counts_every_waiter() {
        const N: usize = 6;
        let data = Arc::new((Mutex::new(0usize), Condvar::new()));
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let data = data.clone();
                thread::spawn(move || {
                    let (m, c) = &*data;
                    let mut g = m.lock();
                    *g += 1;
                    c.wait(&mut g);
                })
            })
            .collect();
        let (m, c) = &*data;
        // Every thread increments under the lock before waiting, and `wait` releases the lock
        // only after queueing, so once the count is N all N are queued.
        loop {
            let g = m.lock();
            if *g == N {
                break;
            }
            drop(g);
            thread::yield_now();
        }
        let g = m.lock();
        assert_eq!(c.notify_all(), N);
        drop(g);
        for h in hs {
            h.join().unwrap();
        }
    }

    #[test]
    #[should_panic(expected = "more than one mutex")]
    fn two_mutexes_panic() {
        let m1 = Arc::new(Mutex::new(()));
        let m2 = Mutex::new(());
        let c = Arc::new(Condvar::new());
        let (m1b, cb) = (m1.clone(), c.clone());
        let t = thread::spawn(move || {
            let mut g = m1b.lock();
            cb.wait_for(&mut g, Duration::from_secs(5));
        });
        // Wait until the helper is queued with m1.
        while !c.raw().has_waiters_for_tests() {
            thread::yield_now();
        }
        let mut g2 = m2.lock();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.wait_for(&mut g2, Duration::from_millis(1));
        }));
        drop(g2);
        c.notify_all();
        t.join().unwrap();
        std::panic::resume_unwind(r.unwrap_err());
    }
}
