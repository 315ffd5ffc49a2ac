//! What every lock benchmark shares: one local trait over ecs-locks, parking_lot, std and spin,
//! and the workloads, written once and instantiated per lock (spin's `benches/mutex.rs` style).
#![allow(dead_code, clippy::disallowed_types)]

use criterion::{BenchmarkId, Criterion};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// A mutex as the benchmarks see it: protect a `u64`, run a closure on it.
pub trait BenchLock: Send + Sync + 'static {
    /// Label in criterion's output.
    const NAME: &'static str;
    /// A lock around `v`.
    fn new(v: u64) -> Self;
    /// Runs `f` inside the critical section.
    fn with<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R;
}

/// A reader-writer lock as the benchmarks see it.
pub trait BenchRwLock: Send + Sync + 'static {
    /// Label in criterion's output.
    const NAME: &'static str;
    /// A lock around `v`.
    fn new(v: u64) -> Self;
    /// Runs `f` inside a read section.
    fn read<R>(&self, f: impl FnOnce(&u64) -> R) -> R;
    /// Runs `f` inside a write section.
    fn write<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R;
}

/// Implements [`BenchLock`] for a type whose `lock()` returns a guard that derefs to `u64`.
#[macro_export]
macro_rules! bench_lock {
    ($name:literal, $ty:ty) => {
        impl $crate::common::BenchLock for $ty {
            const NAME: &'static str = $name;
            fn new(v: u64) -> Self {
                <$ty>::new(v)
            }
            fn with<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R {
                f(&mut *self.lock())
            }
        }
    };
}

/// Implements [`BenchRwLock`] for a type with `read()`/`write()` guards.
#[macro_export]
macro_rules! bench_rwlock {
    ($name:literal, $ty:ty) => {
        impl $crate::common::BenchRwLock for $ty {
            const NAME: &'static str = $name;
            fn new(v: u64) -> Self {
                <$ty>::new(v)
            }
            fn read<R>(&self, f: impl FnOnce(&u64) -> R) -> R {
                f(&*self.read())
            }
            fn write<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R {
                f(&mut *self.write())
            }
        }
    };
}

// Every benchmarked lock's impl, once for all the benches that include this module.
bench_lock!("ecs::Mutex", ecs_locks::Mutex<u64>);
bench_lock!("ecs::FairMutex", ecs_locks::FairMutex<u64>);
bench_lock!("ecs::SpinMutex", ecs_locks::SpinMutex<u64>);
bench_lock!("ecs::TicketMutex", ecs_locks::TicketMutex<u64>);
bench_lock!("ecs::McsMutex", ecs_locks::McsMutex<u64>);
bench_lock!("parking_lot::Mutex", parking_lot::Mutex<u64>);
bench_lock!("parking_lot::FairMutex", parking_lot::FairMutex<u64>);
bench_lock!("spin::Mutex", spin::Mutex<u64>);
bench_rwlock!("ecs::RwLock", ecs_locks::RwLock<u64>);
bench_rwlock!("ecs::SpinRwLock", ecs_locks::SpinRwLock<u64>);
bench_rwlock!("parking_lot::RwLock", parking_lot::RwLock<u64>);
bench_rwlock!("spin::RwLock", spin::RwLock<u64>);

/// `std::sync::Mutex` has a poisoning `lock()`; wrap it.
pub struct StdMutex(pub std::sync::Mutex<u64>);
impl BenchLock for StdMutex {
    const NAME: &'static str = "std::Mutex";
    fn new(v: u64) -> Self {
        Self(std::sync::Mutex::new(v))
    }
    fn with<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
}

/// `std::sync::RwLock`, unwrapped.
pub struct StdRwLock(pub std::sync::RwLock<u64>);
impl BenchRwLock for StdRwLock {
    const NAME: &'static str = "std::RwLock";
    fn new(v: u64) -> Self {
        Self(std::sync::RwLock::new(v))
    }
    fn read<R>(&self, f: impl FnOnce(&u64) -> R) -> R {
        f(&self.0.read().unwrap())
    }
    fn write<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R {
        f(&mut self.0.write().unwrap())
    }
}

/// A few nanoseconds of dependent work, the body of a short critical section.
#[inline]
pub fn work(iters: u32, seed: u64) -> u64 {
    let mut x = seed;
    for i in 0..iters {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i as u64));
    }
    x
}

/// Work inside the critical section per operation (a short section, as in the paper's
/// micro-benchmarks).
pub const CS_WORK: u32 = 8;
/// Work outside the critical section between two operations of one thread.
pub const THINK_WORK: u32 = 32;

/// Lock + unlock on one thread, nobody else around.
pub fn uncontended<L: BenchLock>(c: &mut Criterion, group: &str) {
    let lock = L::new(0);
    c.benchmark_group(group).bench_function(L::NAME, |b| {
        b.iter(|| lock.with(|v| *v = black_box(v.wrapping_add(1))))
    });
}

/// `threads` threads share the lock; the measured time is for `iters` operations in total
/// (split over the threads), so criterion's per-iteration time is the time per operation of
/// the whole system. The protected counter is checked exact at the end.
pub fn contended<L: BenchLock>(c: &mut Criterion, group: &str, threads: usize) {
    c.benchmark_group(group).bench_with_input(
        BenchmarkId::new(L::NAME, threads),
        &threads,
        |b, &threads| b.iter_custom(|iters| run_contended::<L>(threads, iters)),
    );
}

pub fn run_contended<L: BenchLock>(threads: usize, iters: u64) -> Duration {
    let lock = Arc::new(L::new(0));
    let per_thread = iters.div_ceil(threads as u64);
    let (elapsed, _) = timed_threads(threads, {
        let lock = lock.clone();
        move |t| {
            let mut x = t as u64;
            for _ in 0..per_thread {
                lock.with(|v| {
                    black_box(work(CS_WORK, *v));
                    *v += 1;
                });
                x = work(THINK_WORK, x);
            }
            black_box(x);
        }
    });
    assert_eq!(
        lock.with(|v| *v),
        per_thread * threads as u64,
        "{} lost updates",
        L::NAME
    );
    elapsed
}

/// Runs `body(t)` on `threads` threads released together by a barrier; returns the wall time
/// from the release to the last join, and each thread's result.
pub fn timed_threads<R: Send + 'static>(
    threads: usize,
    body: impl Fn(usize) -> R + Clone + Send + 'static,
) -> (Duration, Vec<R>) {
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (body, start) = (body.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                body(t)
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let results = handles.into_iter().map(|h| h.join().unwrap()).collect();
    (t0.elapsed(), results)
}

/// `threads` threads, each operation a read except one in `write_every`.
pub fn read_mostly<L: BenchRwLock>(
    c: &mut Criterion,
    group: &str,
    threads: usize,
    write_every: u64,
) {
    c.benchmark_group(group).bench_with_input(
        BenchmarkId::new(L::NAME, threads),
        &threads,
        |b, &threads| b.iter_custom(|iters| run_read_mostly::<L>(threads, iters, write_every)),
    );
}

/// `threads` threads share `iters` operations, each a read except one in `write_every`;
/// returns the wall time from the start barrier to the last join, after checking the writes.
pub fn run_read_mostly<L: BenchRwLock>(threads: usize, iters: u64, write_every: u64) -> Duration {
    let lock = Arc::new(L::new(0));
    let per_thread = iters.div_ceil(threads as u64);
    let (elapsed, writes) = timed_threads(threads, {
        let lock = lock.clone();
        move |t| {
            let mut x = t as u64;
            let mut writes = 0u64;
            for i in 0..per_thread {
                if (i + t as u64).is_multiple_of(write_every) {
                    lock.write(|v| *v += 1);
                    writes += 1;
                } else {
                    x ^= lock.read(|v| work(CS_WORK, *v));
                }
                x = work(THINK_WORK, x);
            }
            black_box(x);
            writes
        }
    });
    let writes: u64 = writes.into_iter().sum();
    assert_eq!(lock.read(|v| *v), writes, "{} lost writes", L::NAME);
    elapsed
}

/// Short measurement settings: many cases, a shared noisy machine, ratios not absolutes.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}
