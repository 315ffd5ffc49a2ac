//! Loom models of the RCU grace-period protocol (`ecs_locks::rcu`).
//!
//! - a reader inside a section never sees a value freed by a concurrent grace period (the
//!   value's `Drop` poisons a loom-tracked canary, so a free that does not happen after the
//!   read is reported as a data race, and a read after the poison fails the assertion);
//! - a grace period waits for the sections that began before it, and not for later ones;
//! - the no-alloc ring reuses a slot only after its grace period, and a ring writer waiting for
//!   a grace period does not hold the ring's writer lock (another writer's call goes through).
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 cargo test
//! -p loom-tests --release --test rcu`.
#![cfg(loom)]

use ecs_locks::rcu::{self, Rcu, RcuRing};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

const POISON: usize = 0xdead;

/// A value whose destructor poisons its canary, so a use after free is a loom-visible race.
struct Value {
    canary: UnsafeCell<usize>,
}

// SAFETY: the canary is written only by `Drop` (exclusive) and read through shared references;
// loom checks that those accesses never race, which is what the models are about.
unsafe impl Sync for Value {}

impl Value {
    fn new(v: usize) -> Self {
        Self {
            canary: UnsafeCell::new(v),
        }
    }

    fn check(&self) -> usize {
        // SAFETY: a shared read; loom reports it if it races with the poisoning write.
        let v = self.canary.with(|p| unsafe { *p });
        assert_ne!(v, POISON, "a reader saw a freed value");
        v
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        self.canary.with_mut(|p| {
            // SAFETY: `&mut self`: exclusive.
            unsafe { *p = POISON }
        });
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

#[test]
fn reader_never_sees_value_freed_by_replace() {
    model(|| {
        let cell = Arc::new(Rcu::new(Value::new(1)));
        let reader = {
            let cell = cell.clone();
            thread::spawn(move || {
                let outer = cell.read();
                let v = outer.check();
                // A nested section keeps the outer one's protection.
                let inner = cell.read();
                assert!(inner.check() >= v);
                drop(inner);
                assert_eq!(outer.check(), v);
            })
        };
        let old = cell.replace(Value::new(2));
        assert_eq!(old.check(), 1);
        drop(old); // poisons: after the grace period, no reader may still look
        reader.join().unwrap();
    });
}

#[test]
fn back_to_back_grace_periods_against_a_re_entering_reader() {
    // The case that makes liburcu flip its parity bit twice: a reader that loaded the global
    // word before one grace period and announces it after; the next grace period must still
    // wait for it. With an epoch, one pass per grace period suffices.
    model(|| {
        let cell = Arc::new(Rcu::new(Value::new(1)));
        let reader = {
            let cell = cell.clone();
            thread::spawn(move || {
                let a = cell.read().check();
                let b = cell.read().check();
                assert!(b >= a, "values are published in order");
            })
        };
        drop(cell.replace(Value::new(2)));
        drop(cell.replace(Value::new(3)));
        reader.join().unwrap();
    });
}

#[test]
fn concurrent_writers_and_a_reader() {
    // Writers run their grace periods concurrently (no grace-period lock); updates serialize
    // on the cell's writer lock, so neither is lost.
    model(|| {
        let cell = Arc::new(Rcu::new(Value::new(1)));
        let reader = {
            let cell = cell.clone();
            thread::spawn(move || {
                cell.read().check();
            })
        };
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || drop(cell.update(|v| Value::new(v.check() + 10))))
        };
        drop(cell.update(|v| Value::new(v.check() + 100)));
        writer.join().unwrap();
        reader.join().unwrap();
        assert_eq!(cell.read().check(), 111);
    });
}

#[test]
fn recycled_reader_slot_is_still_waited_for() {
    // The first reader's thread exits and frees its slot; the second reader may claim it
    // while a grace period scans.
    model(|| {
        let cell = Arc::new(Rcu::new(Value::new(1)));
        let first = {
            let cell = cell.clone();
            thread::spawn(move || {
                cell.read().check();
            })
        };
        let second = {
            let cell = cell.clone();
            thread::spawn(move || {
                first.join().unwrap();
                cell.read().check();
            })
        };
        drop(cell.replace(Value::new(2)));
        second.join().unwrap();
    });
}

#[test]
fn reader_never_sees_value_freed_by_deferred_reclaim() {
    model(|| {
        let cell = Arc::new(Rcu::new(Value::new(1)));
        let reader = {
            let cell = cell.clone();
            thread::spawn(move || {
                let g = cell.read();
                g.check();
            })
        };
        cell.defer_replace(Value::new(2));
        cell.barrier(); // waits for the deferred value's grace period, then frees it
        assert_eq!(cell.deferred(), 0);
        reader.join().unwrap();
    });
}

#[test]
fn grace_period_waits_for_preexisting_reader() {
    model(|| {
        let entered = Arc::new(AtomicBool::new(false));
        let left = Arc::new(AtomicBool::new(false));
        let reader = {
            let (entered, left) = (entered.clone(), left.clone());
            thread::spawn(move || {
                let section = rcu::read_lock();
                entered.store(true, Ordering::Release);
                left.store(true, Ordering::Relaxed);
                drop(section);
            })
        };
        while !entered.load(Ordering::Acquire) {
            thread::yield_now();
        }
        rcu::synchronize();
        // The section's last store before it ended must be visible after the grace period.
        assert!(
            left.load(Ordering::Relaxed),
            "synchronize returned inside a reader's section"
        );
        reader.join().unwrap();
    });
}

#[test]
fn grace_period_does_not_wait_for_new_reader() {
    model(|| {
        let go = Arc::new(AtomicBool::new(false));
        let inside = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (go, inside, done) = (go.clone(), inside.clone(), done.clone());
            thread::spawn(move || {
                while !go.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                let section = rcu::read_lock();
                inside.store(true, Ordering::Release);
                while !done.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                drop(section);
            })
        };
        let gp = rcu::start_grace_period();
        go.store(true, Ordering::Release);
        while !inside.load(Ordering::Acquire) {
            thread::yield_now();
        }
        // The reader's section began after the grace period started: it must not hold it up
        // (waiting here would deadlock, since the reader waits for `done`).
        assert!(
            gp.is_completed(),
            "a grace period waited for a newer reader"
        );
        gp.wait();
        done.store(true, Ordering::Release);
        reader.join().unwrap();
    });
}

#[test]
fn ring_reuses_a_slot_only_after_its_grace_period() {
    model(|| {
        // Two slots: the second update must reclaim the first value's slot.
        let ring = Arc::new(RcuRing::<Value, 2>::new(Value::new(1)));
        let reader = {
            let ring = ring.clone();
            thread::spawn(move || {
                let g = ring.read();
                g.check();
            })
        };
        ring.defer_replace(Value::new(2));
        ring.defer_replace(Value::new(3)); // drops value 1 and rewrites its slot
        assert_eq!(ring.read().check(), 3);
        reader.join().unwrap();
    });
}

#[test]
fn ring_writer_waits_for_a_grace_period_without_the_writer_lock() {
    model(|| {
        let ring = Arc::new(RcuRing::<Value, 2>::new(Value::new(1)));
        // Held across the writer's second update, whose only spare slot holds value 1.
        let g = ring.read();
        let writer = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.defer_replace(Value::new(2));
                ring.defer_replace(Value::new(3)); // waits for `g`
            })
        };
        // Needs the writer lock: if the writer waited holding it, this would never return
        // (loom reports the livelock), since `g` is only dropped afterwards.
        ring.reclaim();
        assert!(ring.deferred() <= 1);
        g.check();
        drop(g);
        writer.join().unwrap();
        assert_eq!(ring.read().check(), 3);
        ring.barrier();
        assert_eq!(ring.deferred(), 0);
    });
}
