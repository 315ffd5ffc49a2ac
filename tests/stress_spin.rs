//! Stress tests of the spin family on an oversubscribed machine: 16-32 threads per lock on
//! (typically) 2 cores. Every critical section does a non-atomic read-modify-write of data
//! protected by the lock, sometimes yielding the CPU in the middle (a preempted holder), so a
//! broken mutual exclusion loses updates and the final counts are off. Workers start together
//! on a barrier, and each test asserts that some `try_lock` failed during the run, so an exact
//! count cannot come from threads that happened to run one after another. Iterations are
//! bounded; nothing here measures time.
#![allow(clippy::disallowed_types)]

use ecs_locks::{
    McsMutex, McsMutexGuard, SpinMutex, SpinRwLock, SpinRwLockUpgradableReadGuard,
    SpinRwLockWriteGuard, TicketMutex, TicketMutexGuard,
};
use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

const THREADS: usize = 24;
const ITERS: usize = 1000;

/// The protected non-atomic read-modify-write: read, maybe give up the CPU, write back.
fn bump(counter: &mut u64, i: usize) {
    let v = black_box(*counter);
    if i.is_multiple_of(50) {
        thread::yield_now();
    }
    *counter = v + 1;
}

/// Runs `f(thread_index)` on `n` scoped threads, started together on a barrier.
fn on_threads(n: usize, f: impl Fn(usize) + Sync) {
    let start = Barrier::new(n);
    thread::scope(|s| {
        for t in 0..n {
            let (f, start) = (&f, &start);
            s.spawn(move || {
                start.wait();
                f(t)
            });
        }
    });
}

/// Calls `attempt` (a `try_lock`-like call) until it succeeds, yielding between attempts and
/// counting the failures in `fails`.
fn retry<G>(fails: &AtomicUsize, mut attempt: impl FnMut() -> Option<G>) -> G {
    loop {
        if let Some(g) = attempt() {
            return g;
        }
        fails.fetch_add(1, Ordering::Relaxed);
        thread::yield_now();
    }
}

/// Asserts that the run was concurrent: some `try_lock` found the lock held by another thread.
fn assert_contended(fails: &AtomicUsize) {
    assert!(
        fails.load(Ordering::Relaxed) > 0,
        "no try_lock ever failed: the workers did not contend, so the count proves nothing"
    );
}

#[test]
fn spin_mutex_counter_with_try_lock() {
    let m = SpinMutex::new(0u64);
    let fails = AtomicUsize::new(0);
    on_threads(THREADS, |t| {
        for i in 0..ITERS {
            if t % 4 == 0 {
                // try_lock path: retry until it succeeds.
                let mut g = retry(&fails, || m.try_lock());
                bump(&mut g, i);
            } else {
                bump(&mut m.lock(), i);
            }
        }
    });
    assert_eq!(m.into_inner(), (THREADS * ITERS) as u64);
    assert_contended(&fails);
}

#[test]
fn ticket_mutex_counter_with_try_lock_and_bump() {
    let m = TicketMutex::new(0u64);
    let fails = AtomicUsize::new(0);
    on_threads(THREADS, |t| {
        for i in 0..ITERS {
            match t % 3 {
                0 => {
                    let mut g = retry(&fails, || m.try_lock());
                    bump(&mut g, i);
                }
                1 => {
                    let mut g = m.lock();
                    bump(&mut g, i);
                    TicketMutexGuard::bump(&mut g); // let waiters go first, keep the lock
                    bump(&mut g, i + 1);
                }
                _ => bump(&mut m.lock(), i),
            }
        }
    });
    let bumpers = (0..THREADS).filter(|t| t % 3 == 1).count();
    assert_eq!(m.into_inner(), ((THREADS + bumpers) * ITERS) as u64);
    assert_contended(&fails);
}

#[test]
fn mcs_mutex_counter_nested_barging_and_fair() {
    // Every fourth thread takes a chain of six locks at once (holding needs no queue node, so
    // any depth works) and releases them out of order, some fairly; others barge in with
    // `try_lock` or queue on the last chain lock and on `single`, so queued waiters, arrivals
    // taking a free word ahead of them, and fair hand-offs to the queue head all mix.
    let chain: Vec<McsMutex<u64>> = (0..6).map(|_| McsMutex::new(0)).collect();
    let single = McsMutex::new(0u64);
    let fails = AtomicUsize::new(0);
    on_threads(THREADS, |t| {
        for i in 0..ITERS {
            if t % 4 == 0 {
                // Fixed order: no deadlock.
                let mut guards: Vec<McsMutexGuard<'_, u64>> =
                    chain.iter().map(McsMutex::lock).collect();
                for g in &mut guards {
                    bump(g, i);
                }
                if i % 7 == 0 {
                    let g = guards.pop().unwrap();
                    McsMutexGuard::unlock_fair(g);
                }
                // Released in acquisition order (not LIFO): guards are independent.
                guards.reverse();
                while let Some(g) = guards.pop() {
                    drop(g);
                }
            } else if t % 4 == 1 {
                let mut g = retry(&fails, || single.try_lock());
                bump(&mut g, i);
            } else {
                let mut g = chain[chain.len() - 1].lock();
                bump(&mut g, i);
                drop(g);
                bump(&mut single.lock(), i);
            }
        }
    });
    let deep = (0..THREADS).filter(|t| t % 4 == 0).count();
    let tryers = (0..THREADS).filter(|t| t % 4 == 1).count();
    let plain = THREADS - deep - tryers;
    for (k, m) in chain.iter().enumerate() {
        let extra = if k == chain.len() - 1 { plain } else { 0 };
        assert_eq!(*m.lock(), ((deep + extra) * ITERS) as u64, "chain lock {k}");
    }
    assert_eq!(single.into_inner(), ((tryers + plain) * ITERS) as u64);
    assert_contended(&fails);
}

#[test]
fn spin_rwlock_writers_readers_upgraders() {
    // Invariant kept by every writer: data.0 == data.1. Readers check it; upgraders read,
    // upgrade, bump, then downgrade and check their own write is still there.
    let l = SpinRwLock::new((0u64, 0u64));
    let fails = AtomicUsize::new(0);
    on_threads(32, |t| {
        for i in 0..ITERS / 2 {
            match t % 4 {
                0 => {
                    let mut w = if i % 3 == 0 {
                        retry(&fails, || l.try_write())
                    } else {
                        l.write()
                    };
                    let (a, b) = *w;
                    assert_eq!(a, b);
                    if i.is_multiple_of(50) {
                        thread::yield_now();
                    }
                    *w = (a + 1, b + 1);
                }
                1 => {
                    let u = l.upgradable_read();
                    let (a, b) = *u;
                    assert_eq!(a, b);
                    let mut w = if i % 2 == 0 {
                        SpinRwLockUpgradableReadGuard::upgrade(u)
                    } else {
                        match SpinRwLockUpgradableReadGuard::try_upgrade(u) {
                            Ok(w) => w,
                            Err(u) => {
                                fails.fetch_add(1, Ordering::Relaxed);
                                SpinRwLockUpgradableReadGuard::upgrade(u)
                            }
                        }
                    };
                    assert_eq!(*w, (a, b), "nobody wrote while we held the upgradable lock");
                    *w = (a + 1, b + 1);
                    let r = if i % 2 == 0 {
                        SpinRwLockWriteGuard::downgrade(w)
                    } else {
                        let u = SpinRwLockWriteGuard::downgrade_to_upgradable(w);
                        SpinRwLockUpgradableReadGuard::downgrade(u)
                    };
                    assert_eq!(*r, (a + 1, b + 1), "no writer between write and downgrade");
                }
                _ => {
                    let r = if i % 4 == 0 {
                        l.try_read().unwrap_or_else(|| {
                            fails.fetch_add(1, Ordering::Relaxed);
                            l.read()
                        })
                    } else {
                        l.read()
                    };
                    let (a, b) = *r;
                    if i.is_multiple_of(50) {
                        thread::yield_now();
                    }
                    assert_eq!(a, b, "a reader saw a half-done write");
                    assert_eq!(*r, (a, b), "data changed under a read lock");
                }
            }
        }
    });
    let writers = (0..32).filter(|t| t % 4 == 0 || t % 4 == 1).count();
    let n = (writers * (ITERS / 2)) as u64;
    assert_eq!(l.into_inner(), (n, n));
    assert_contended(&fails);
}
