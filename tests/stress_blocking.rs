//! Stress tests of the blocking family: 16-32 threads on this machine's 2 cores, bounded in
//! iterations (never in wall time), checking exactness and progress, never speed. Workers start
//! together on a barrier, and the exact-count tests assert that some worker found the lock held
//! by another one just before it locked, so an exact count cannot come from a serial run.
#![allow(clippy::disallowed_types)]

use ecs_locks::{
    Condvar, FairMutex, FairMutexGuard, Mutex, MutexGuard, Once, ReentrantMutex, RwLock,
    RwLockUpgradableReadGuard, RwLockWriteGuard,
};
use std::cell::{Cell, UnsafeCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

const THREADS: usize = 24;
/// Fewer with `--cfg ecs_portable_park`, whose parked waiters spin instead of sleeping: a fair hand-off
/// then waits until the (often descheduled) receiver runs, a convoy on 2 cores.
const ITERS: usize = if cfg!(ecs_portable_park) {
    4000
} else {
    20_000
};

/// A counter that is deliberately not atomic: only the lock under test makes it exact.
struct Racy(UnsafeCell<u64>);
// SAFETY: every access below happens while holding the lock under test.
unsafe impl Sync for Racy {}
impl Racy {
    fn bump(&self) {
        // SAFETY: caller holds the lock under test (the point of the test).
        unsafe {
            let v = std::ptr::read_volatile(self.0.get());
            std::ptr::write_volatile(self.0.get(), v + 1);
        }
    }
    fn get(&self) -> u64 {
        // SAFETY: read after all threads joined.
        unsafe { *self.0.get() }
    }
}

/// Runs `f(thread_index)` on `threads` threads, started together on a barrier.
fn run(threads: usize, f: impl Fn(usize) + Send + Sync + 'static) {
    let f = Arc::new(f);
    let start = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            let (f, start) = (f.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                f(i)
            })
        })
        .collect();
    for h in hs {
        h.join().expect("worker panicked");
    }
}

/// Gives up the CPU inside a critical section now and then (a preempted holder), so that the
/// other workers run while the lock is held even when a whole loop fits in a time slice.
fn yield_sometimes(k: usize) {
    if k.is_multiple_of(64) {
        thread::yield_now();
    }
}

/// Counts how often a worker found the lock held (`is_locked()`) right before locking it.
#[derive(Default)]
struct Contention(AtomicUsize);

impl Contention {
    fn probe(&self, locked: bool) {
        if locked {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asserts that the run was concurrent.
    fn assert_seen(&self, what: &str) {
        assert!(
            self.0.load(Ordering::Relaxed) > 0,
            "{what}: no worker ever found the lock held, so the exact count proves nothing"
        );
    }
}

#[test]
fn mutex_counter_exact() {
    let m = Arc::new((Mutex::new(()), Racy(UnsafeCell::new(0))));
    let seen = Arc::new(Contention::default());
    let (m2, seen2) = (m.clone(), seen.clone());
    run(THREADS, move |i| {
        for k in 0..ITERS {
            seen2.probe(m2.0.is_locked());
            let g = m2.0.lock();
            m2.1.bump();
            yield_sometimes(k);
            if (i + k) % 64 == 0 {
                MutexGuard::unlock_fair(g);
            } else {
                drop(g);
            }
        }
    });
    assert_eq!(m.1.get(), (THREADS * ITERS) as u64);
    seen.assert_seen("Mutex");
}

#[test]
fn fair_mutex_counter_exact_with_bumps() {
    let m = Arc::new(FairMutex::new(0u64));
    let seen = Arc::new(Contention::default());
    let (m2, seen2) = (m.clone(), seen.clone());
    run(THREADS, move |_| {
        for k in 0..ITERS / 2 {
            seen2.probe(m2.is_locked());
            let mut g = m2.lock();
            *g += 1;
            yield_sometimes(k);
            if k % 16 == 0 {
                FairMutexGuard::bump(&mut g);
            }
            *g += 1;
        }
    });
    assert_eq!(*m.lock(), (THREADS * (ITERS / 2) * 2) as u64);
    seen.assert_seen("FairMutex");
}

#[test]
fn reentrant_mutex_counter_exact() {
    let m = Arc::new(ReentrantMutex::new(Cell::new(0u64)));
    let seen = Arc::new(Contention::default());
    let (m2, seen2) = (m.clone(), seen.clone());
    run(THREADS, move |_| {
        for k in 0..ITERS / 2 {
            seen2.probe(m2.is_locked());
            let a = m2.lock();
            yield_sometimes(k);
            let b = m2.lock();
            b.set(b.get() + 1);
            drop(b);
            a.set(a.get() + 1);
        }
    });
    assert_eq!(m.lock().get(), (THREADS * (ITERS / 2) * 2) as u64);
    seen.assert_seen("ReentrantMutex");
}

#[test]
fn timed_locks_time_out_and_succeed() {
    let m = Arc::new(Mutex::new(0u64));
    let successes = Arc::new(AtomicUsize::new(0));
    let timeouts = Arc::new(AtomicUsize::new(0));
    // Phase 1: held by the main thread, every timed attempt must fail.
    let g = m.lock();
    {
        let (m, t) = (m.clone(), timeouts.clone());
        run(16, move |_| {
            assert!(m.try_lock_for(Duration::from_millis(2)).is_none());
            t.fetch_add(1, Ordering::Relaxed);
        });
    }
    drop(g);
    assert_eq!(timeouts.load(Ordering::Relaxed), 16);
    // Phase 2: contended but always released: generous deadlines all succeed.
    let (m2, s) = (m.clone(), successes.clone());
    run(16, move |_| {
        for _ in 0..200 {
            let mut g = m2
                .try_lock_for(Duration::from_secs(60))
                .expect("a 60 s deadline on a lock held for microseconds");
            *g += 1;
            s.fetch_add(1, Ordering::Relaxed);
        }
    });
    assert_eq!(*m.lock(), 16 * 200);
    // Timed rwlock: a writer held elsewhere makes timed reads and writes fail.
    let l = Arc::new(RwLock::new(()));
    let w = l.write();
    let l2 = l.clone();
    run(16, move |i| {
        if i % 2 == 0 {
            assert!(l2.try_read_for(Duration::from_millis(1)).is_none());
        } else {
            assert!(l2.try_write_for(Duration::from_millis(1)).is_none());
            assert!(
                l2.try_upgradable_read_for(Duration::from_millis(1))
                    .is_none()
            );
        }
    });
    drop(w);
    assert!(l.try_write_for(Duration::from_millis(1)).is_some());
}

#[test]
fn rwlock_readers_see_writer_invariants() {
    // Writers keep a == b == c (updated in three steps); readers must never see them differ.
    let l = Arc::new(RwLock::new([0u64; 3]));
    let seen = Arc::new(Contention::default());
    let (l2, seen2) = (l.clone(), seen.clone());
    run(THREADS, move |i| {
        for k in 0..ITERS / 2 {
            match i % 4 {
                0 => {
                    seen2.probe(l2.is_locked());
                    let mut w = l2.write();
                    for x in w.iter_mut() {
                        *x += 1;
                    }
                    yield_sometimes(k);
                }
                1 if k % 8 == 0 => {
                    let mut w = l2.write();
                    w[0] += 1;
                    w[1] += 1;
                    w[2] += 1;
                    let r = RwLockWriteGuard::downgrade(w);
                    assert!(r[0] == r[1] && r[1] == r[2]);
                }
                _ => {
                    let r = l2.read();
                    assert!(r[0] == r[1] && r[1] == r[2], "torn read {:?}", *r);
                }
            }
        }
    });
    let writes = (THREADS / 4) * (ITERS / 2) + (THREADS / 4) * (ITERS / 2).div_ceil(8);
    assert_eq!(*l.read(), [writes as u64; 3]);
    seen.assert_seen("RwLock");
}

#[test]
fn rwlock_upgradable_and_downgrade_paths() {
    let l = Arc::new(RwLock::new((0u64, 0u64)));
    let l2 = l.clone();
    run(THREADS, move |i| {
        for k in 0..ITERS / 3 {
            match (i + k) % 5 {
                0 => {
                    let u = l2.upgradable_read();
                    assert_eq!(u.0, u.1);
                    let mut w = RwLockUpgradableReadGuard::upgrade(u);
                    w.0 += 1;
                    w.1 += 1;
                }
                1 => {
                    let u = l2.upgradable_read();
                    match RwLockUpgradableReadGuard::try_upgrade(u) {
                        Ok(mut w) => {
                            w.0 += 1;
                            w.1 += 1;
                            let u = RwLockWriteGuard::downgrade_to_upgradable(w);
                            assert_eq!(u.0, u.1);
                            let r = RwLockUpgradableReadGuard::downgrade(u);
                            assert_eq!(r.0, r.1);
                        }
                        Err(u) => assert_eq!(u.0, u.1),
                    }
                }
                2 => {
                    if let Some(u) = l2.try_upgradable_read_for(Duration::from_millis(1))
                        && let Ok(mut w) =
                            RwLockUpgradableReadGuard::try_upgrade_for(u, Duration::from_millis(1))
                    {
                        w.0 += 1;
                        w.1 += 1;
                    }
                }
                3 => {
                    let mut w = l2.write();
                    w.0 += 1;
                    w.1 += 1;
                    RwLockWriteGuard::unlock_fair(w);
                }
                _ => {
                    let r = l2.read();
                    assert_eq!(r.0, r.1);
                }
            }
        }
    });
    let v = *l.read();
    assert_eq!(v.0, v.1);
    assert!(v.0 > 0);
}

#[test]
fn condvar_producer_consumer_no_lost_wakeup() {
    // Bounded queue with two condvars; every item produced is consumed exactly once.
    const PRODUCERS: usize = 12;
    const CONSUMERS: usize = 12;
    const ITEMS: usize = 400;
    const CAP: usize = 4;
    struct Q {
        items: Mutex<(VecDeque<usize>, usize)>, // queue, producers finished
        not_empty: Condvar,
        not_full: Condvar,
    }
    let q = Arc::new(Q {
        items: Mutex::new((VecDeque::new(), 0)),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
    });
    let consumed = Arc::new(Mutex::new(vec![0u8; PRODUCERS * ITEMS]));
    let mut hs = Vec::new();
    for p in 0..PRODUCERS {
        let q = q.clone();
        hs.push(thread::spawn(move || {
            for i in 0..ITEMS {
                let mut g = q.items.lock();
                q.not_full.wait_while(&mut g, |(v, _)| v.len() >= CAP);
                g.0.push_back(p * ITEMS + i);
                drop(g);
                q.not_empty.notify_one();
            }
            let mut g = q.items.lock();
            g.1 += 1;
            drop(g);
            q.not_empty.notify_all();
        }));
    }
    for _ in 0..CONSUMERS {
        let (q, consumed) = (q.clone(), consumed.clone());
        hs.push(thread::spawn(move || {
            loop {
                let mut g = q.items.lock();
                q.not_empty
                    .wait_while(&mut g, |(v, done)| v.is_empty() && *done < PRODUCERS);
                let Some(item) = g.0.pop_front() else {
                    return; // empty and every producer finished
                };
                drop(g);
                q.not_full.notify_one();
                consumed.lock()[item] += 1;
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    assert!(consumed.lock().iter().all(|&c| c == 1));
}

#[test]
fn condvar_notify_counts_are_exact() {
    for round in 0..20 {
        let n = 1 + round % 16;
        let s = Arc::new((Mutex::new((0usize, false)), Condvar::new()));
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || {
                    let (m, c) = &*s;
                    let mut g = m.lock();
                    g.0 += 1;
                    while !g.1 {
                        c.wait(&mut g);
                    }
                })
            })
            .collect();
        let (m, c) = &*s;
        loop {
            let mut g = m.lock();
            if g.0 == n {
                // Every waiter is queued (it released the lock only after queueing).
                g.1 = true;
                assert_eq!(c.notify_all(), n, "no spurious wake-ups: exact count");
                break;
            }
            drop(g);
            thread::yield_now();
        }
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(c.notify_all(), 0);
    }
}

#[test]
fn once_runs_once_under_stampede() {
    for _ in 0..20 {
        let o = Arc::new(Once::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let seen_done = Arc::new(AtomicBool::new(true));
        let (o2, r2, s2) = (o.clone(), runs.clone(), seen_done.clone());
        run(THREADS, move |_| {
            o2.call_once(|| {
                r2.fetch_add(1, Ordering::Relaxed);
                thread::yield_now();
            });
            if !o2.is_completed() {
                s2.store(false, Ordering::Relaxed);
            }
        });
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        assert!(seen_done.load(Ordering::Relaxed));
    }
}

#[test]
fn mixed_types_oversubscribed() {
    // Everything at once, 32 threads: no deadlock, no livelock, exact counts.
    let m = Arc::new(Mutex::new(0u64));
    let f = Arc::new(FairMutex::new(0u64));
    let l = Arc::new(RwLock::new(0u64));
    let seen = Arc::new(Contention::default());
    let (m2, f2, l2, seen2) = (m.clone(), f.clone(), l.clone(), seen.clone());
    run(32, move |i| {
        for k in 0..300 {
            match i % 3 {
                0 => {
                    seen2.probe(m2.is_locked());
                    let mut g = m2.lock();
                    *g += 1;
                    yield_sometimes(k);
                }
                1 => {
                    seen2.probe(f2.is_locked());
                    let mut g = f2.lock();
                    *g += 1;
                    yield_sometimes(k);
                }
                _ => {
                    seen2.probe(l2.is_locked());
                    *l2.write() += 1;
                }
            }
            let _ = *l2.read();
        }
    });
    let per = |k: usize| ((0..32).filter(|i| i % 3 == k).count() * 300) as u64;
    assert_eq!(*m.lock(), per(0));
    assert_eq!(*f.lock(), per(1));
    assert_eq!(*l.read(), per(2));
    seen.assert_seen("mixed");
}
