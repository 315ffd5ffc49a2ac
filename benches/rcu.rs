//! Read-mostly benchmarks: `ecs_locks` RCU (`Rcu`, `RcuRing`) against crossbeam-epoch
//! (pin + load) and arc-swap (load), in the same run.
//!
//! - `read/uncontended`: one thread, read lock + load + use + unlock;
//! - `read/1w+{2,4}r`: the time per read of one reader while other readers read and a writer
//!   publishes a new value every ~50 us (on this 2-core machine, 4 readers + 1 writer is
//!   oversubscribed);
//! - `update/uncontended`: one thread publishing with deferred reclamation.
//!
//! `cargo bench --bench rcu` (about a minute); `-- --quick` for a smoke run.
#![allow(clippy::disallowed_types)] // std atomics for the harness, outside the lock crate

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The value behind every cell: two words a reader sums.
#[derive(Clone, Copy, Default)]
struct Value {
    a: u64,
    b: u64,
}

/// One read-mostly cell, as each library spells it.
trait BenchRcu: Send + Sync + 'static {
    const NAME: &'static str;
    fn new(v: Value) -> Self;
    /// Enter, load, use, leave.
    fn read(&self) -> u64;
    /// Publish a new value; the old one is reclaimed later.
    fn write(&self, v: Value);
}

struct EcsRcu(ecs_locks::Rcu<Value>);
impl BenchRcu for EcsRcu {
    const NAME: &'static str = "ecs_locks::Rcu";
    fn new(v: Value) -> Self {
        Self(ecs_locks::Rcu::new(v))
    }
    #[inline]
    fn read(&self) -> u64 {
        let g = self.0.read();
        g.a + g.b
    }
    fn write(&self, v: Value) {
        self.0.defer_replace(v);
    }
}

struct EcsRing(ecs_locks::RcuRing<Value, 8>);
impl BenchRcu for EcsRing {
    const NAME: &'static str = "ecs_locks::RcuRing";
    fn new(v: Value) -> Self {
        Self(ecs_locks::RcuRing::new(v))
    }
    #[inline]
    fn read(&self) -> u64 {
        let g = self.0.read();
        g.a + g.b
    }
    fn write(&self, v: Value) {
        self.0.defer_replace(v);
    }
}

struct Epoch(crossbeam_epoch::Atomic<Value>);
impl BenchRcu for Epoch {
    const NAME: &'static str = "crossbeam_epoch";
    fn new(v: Value) -> Self {
        Self(crossbeam_epoch::Atomic::new(v))
    }
    #[inline]
    fn read(&self) -> u64 {
        let guard = crossbeam_epoch::pin();
        let p = self.0.load(Ordering::Acquire, &guard);
        // SAFETY: every pointer stored is a live `Owned`, destroyed only through
        // `defer_destroy` after being swapped out, and we are pinned.
        let v = unsafe { p.deref() };
        v.a + v.b
    }
    fn write(&self, v: Value) {
        let guard = crossbeam_epoch::pin();
        let old = self
            .0
            .swap(crossbeam_epoch::Owned::new(v), Ordering::AcqRel, &guard);
        // SAFETY: `old` is unpublished; readers that still see it are pinned.
        unsafe { guard.defer_destroy(old) };
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader is left; the pointer is the live `Owned`.
        unsafe {
            let g = crossbeam_epoch::unprotected();
            drop(self.0.load(Ordering::Relaxed, g).into_owned());
        }
    }
}

struct Swap(arc_swap::ArcSwap<Value>);
impl BenchRcu for Swap {
    const NAME: &'static str = "arc_swap";
    fn new(v: Value) -> Self {
        Self(arc_swap::ArcSwap::from_pointee(v))
    }
    #[inline]
    fn read(&self) -> u64 {
        let g = self.0.load();
        g.a + g.b
    }
    fn write(&self, v: Value) {
        self.0.store(Arc::new(v));
    }
}

fn uncontended_read<L: BenchRcu>(c: &mut Criterion) {
    let cell = L::new(Value { a: 1, b: 2 });
    c.benchmark_group("read")
        .bench_function(BenchmarkId::new("uncontended", L::NAME), |b| {
            b.iter(|| black_box(&cell).read())
        });
}

fn uncontended_update<L: BenchRcu>(c: &mut Criterion) {
    let cell = L::new(Value::default());
    let mut n = 0;
    c.benchmark_group("update")
        .bench_function(BenchmarkId::new("uncontended", L::NAME), |b| {
            b.iter(|| {
                n += 1;
                black_box(&cell).write(Value { a: n, b: n });
            })
        });
}

/// One writer publishing every ~50 us and `readers - 1` background readers; measures the
/// reads of the remaining reader.
fn read_mostly<L: BenchRcu>(c: &mut Criterion, readers: usize) {
    let id = BenchmarkId::new(format!("1w+{readers}r"), L::NAME);
    c.benchmark_group("read").bench_function(id, |b| {
        b.iter_custom(|iters| {
            let cell = Arc::new(L::new(Value { a: 1, b: 2 }));
            let stop = Arc::new(AtomicBool::new(false));
            let mut threads = Vec::new();
            {
                let (cell, stop) = (cell.clone(), stop.clone());
                threads.push(std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        cell.write(Value { a: n, b: n });
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }));
            }
            for _ in 1..readers {
                let (cell, stop) = (cell.clone(), stop.clone());
                threads.push(std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            black_box(cell.read());
                        }
                    }
                }));
            }
            let start = Instant::now();
            for _ in 0..iters {
                black_box(cell.read());
            }
            let t = start.elapsed();
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                t.join().unwrap();
            }
            t
        });
    });
}

fn all<L: BenchRcu>(c: &mut Criterion) {
    uncontended_read::<L>(c);
    read_mostly::<L>(c, 2);
    read_mostly::<L>(c, 4);
    uncontended_update::<L>(c);
}

fn benches(c: &mut Criterion) {
    all::<EcsRcu>(c);
    all::<EcsRing>(c);
    all::<Epoch>(c);
    all::<Swap>(c);
}

criterion_group! {
    name = rcu;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    targets = benches
}
criterion_main!(rcu);
