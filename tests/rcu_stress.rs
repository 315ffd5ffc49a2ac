//! Stress: many more threads than cores read values that writers replace and free; the value's
//! destructor poisons its canary and payload right before the memory is freed, so a reader that
//! ever sees the poison read a freed value. Bounded in iterations (the machine has 2 cores).
#![cfg(feature = "std")]
#![allow(clippy::disallowed_types)] // std atomics for the canary, outside the lock crate

use ecs_locks::rcu::{self, Rcu, RcuRing};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

const POISON: u64 = 0xdead_beef_dead_beef;
const READERS: usize = 24;
const READS: usize = 20_000;
const UPDATES: u64 = 3_000;

/// A value with a canary and a payload derived from its sequence number. Atomics, so that a
/// reader racing with the poisoning (the bug this test hunts) is a detectable wrong value
/// rather than a data race.
struct Value {
    seq: u64,
    canary: AtomicU64,
    payload: [AtomicU64; 4],
}

impl Value {
    fn new(seq: u64) -> Self {
        Self {
            seq,
            canary: AtomicU64::new(!seq),
            payload: core::array::from_fn(|i| AtomicU64::new(seq.wrapping_mul(31) + i as u64)),
        }
    }

    /// Checks the value is whole and not poisoned; returns its sequence number.
    fn check(&self) -> u64 {
        let c = self.canary.load(Ordering::Relaxed);
        assert_ne!(c, POISON, "a reader saw a freed value (seq {})", self.seq);
        assert_eq!(c, !self.seq, "canary");
        for (i, p) in self.payload.iter().enumerate() {
            let v = p.load(Ordering::Relaxed);
            assert_ne!(v, POISON, "a reader saw a freed payload");
            assert_eq!(v, self.seq.wrapping_mul(31) + i as u64, "payload");
        }
        self.seq
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        // Poison right before the memory goes back to the allocator.
        self.canary.store(POISON, Ordering::Relaxed);
        for p in &self.payload {
            p.store(POISON, Ordering::Relaxed);
        }
    }
}

#[test]
fn readers_never_see_freed_values() {
    let cell = Rcu::new(Value::new(0));
    let ring: RcuRing<Value, 4> = RcuRing::new(Value::new(0));
    let writers_done = AtomicUsize::new(0);
    let reads = AtomicUsize::new(0);
    let start = Barrier::new(READERS + 3);
    std::thread::scope(|s| {
        for r in 0..READERS {
            let (cell, ring, start, reads) = (&cell, &ring, &start, &reads);
            s.spawn(move || {
                start.wait();
                let (mut last, mut last_ring) = (0, 0);
                for i in 0..READS {
                    let g = cell.read();
                    let seq = g.check();
                    assert!(seq >= last, "values are published in order");
                    last = seq;
                    if (i + r) % 7 == 0 {
                        // Nested: an inner section and a second cell inside the first.
                        let inner = rcu::read_lock();
                        let h = ring.read();
                        let seq = h.check();
                        assert!(seq >= last_ring);
                        last_ring = seq;
                        drop(inner);
                        assert_eq!(h.check(), seq);
                    }
                    if i % 64 == 0 {
                        // Get preempted inside a section now and then.
                        std::thread::yield_now();
                    }
                    assert_eq!(g.check(), seq, "a guard's value stays put");
                }
                reads.fetch_add(READS, Ordering::Relaxed);
            });
        }
        let waiting_writer = {
            let (cell, start, done) = (&cell, &start, &writers_done);
            s.spawn(move || {
                start.wait();
                for _ in 0..UPDATES / 2 {
                    let old = cell.update(|v| Value::new(v.seq + 1));
                    old.check();
                    drop(old);
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        };
        let deferring_writer = {
            let (cell, start, done) = (&cell, &start, &writers_done);
            s.spawn(move || {
                start.wait();
                for _ in 0..UPDATES / 2 {
                    cell.defer_update(|v| Value::new(v.seq + 1));
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        };
        let ring_writer = {
            let (ring, start, done) = (&ring, &start, &writers_done);
            s.spawn(move || {
                start.wait();
                for i in 0..UPDATES {
                    if i % 5 == 0 {
                        drop(ring.update(|v| Value::new(v.seq + 1)));
                    } else {
                        ring.defer_update(|v| Value::new(v.seq + 1));
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        };
        for w in [waiting_writer, deferring_writer, ring_writer] {
            w.join().unwrap();
        }
    });
    assert_eq!(writers_done.load(Ordering::Relaxed), 3);
    assert_eq!(reads.load(Ordering::Relaxed), READERS * READS);
    assert_eq!(cell.read().check(), UPDATES, "no update lost");
    assert_eq!(ring.read().check(), UPDATES, "no ring update lost");
    cell.barrier();
    ring.barrier();
    assert_eq!(cell.deferred(), 0);
    assert_eq!(ring.deferred(), 0);
}

#[test]
fn grace_periods_make_progress_under_oversubscription() {
    // 16 threads on 2 cores enter and leave sections back to back, yielding inside now and
    // then (so the OS preempts them in sections): a grace period waits only for sections that
    // began before it, so the writer's grace periods complete while readers keep coming. A
    // writer starved by new readers, or a reader slot left active, hangs this test. Readers stop
    // when the writer is done, or after a bounded number of sections.
    const GRACE_PERIODS: usize = 200;
    let stop = AtomicBool::new(false);
    let start = Barrier::new(17);
    let overlapped = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                start.wait();
                for n in 0..200_000 {
                    let sec = rcu::read_lock();
                    if n % 16 == 0 {
                        std::thread::yield_now();
                    }
                    drop(sec);
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            });
        }
        start.wait();
        for _ in 0..GRACE_PERIODS {
            let gp = rcu::start_grace_period();
            if !gp.is_completed() {
                overlapped.fetch_add(1, Ordering::Relaxed); // a reader held it up
            }
            gp.wait();
            assert!(gp.is_completed());
        }
        stop.store(true, Ordering::Relaxed);
    });
    println!(
        "{} of {GRACE_PERIODS} grace periods had to wait for readers",
        overlapped.load(Ordering::Relaxed)
    );
}
