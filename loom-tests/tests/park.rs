//! Loom models of the portable park queue (`ecs_locks` `park/queue.rs`, the queue the guest's
//! blocking locks run), driven directly through the loom-only `__loom_park` hook.
//!
//! Under loom the queue is the real one: the TTAS bucket lock on loom atomics, waiter records
//! on the parkers' stacks with `woken` published last, and WAIT/KICK modelled as a per-thread
//! pending kick (a loom `Notify`: WAIT consumes a pending kick or blocks until one arrives,
//! and may return spuriously, like an interrupt). A lost wake-up leaves a parker blocked
//! forever, which loom reports as a deadlock.
//! Not covered: the record's non-atomic fields are plain `Cell`s that loom does not track (a
//! write after the `woken` hand-off would not be flagged); the 64-bucket hash (loom uses one
//! bucket); real timeouts (loom has no clock: a timed park times out at once, which
//! `timed_parker_and_unparker` uses); and,
//! directly, more than one parker (too slow here; the condvar models run two parkers and one
//! unparker on this same queue).
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 cargo test
//! -p loom-tests --release --test park`.
#![cfg(loom)]

use ecs_locks::__loom_park as q;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

const KEY: usize = 0x1000;

/// `loom::model` with room for long executions: every bucket-lock spin is a branch.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = b.max_branches.max(5_000);
    b.check(f);
}
const TOKEN: usize = 7;

/// Parks on `KEY` unless `released`; returns whether it was unparked (and checks the token).
fn parker(released: &AtomicBool) -> bool {
    match q::park(KEY, || !released.load(Ordering::Relaxed)) {
        Some(t) => {
            assert_eq!(t, TOKEN, "the unparker's token");
            true
        }
        None => {
            assert!(released.load(Ordering::Relaxed));
            false
        }
    }
}

/// One parker, one unparker: the parker either refuses (it saw `released`) or is woken with
/// the token; never lost. (Two parkers and one unparker on the real queue are the condvar
/// models `notify_all_requeues_onto_held_mutex` and `two_notify_ones_wake_two_waiters`; a
/// direct two-parker model of the queue did not finish within 5 minutes here.)
#[test]
fn parker_and_unparker() {
    model(|| {
        let released = Arc::new(AtomicBool::new(false));
        let t = {
            let r = released.clone();
            thread::spawn(move || parker(&r))
        };
        released.store(true, Ordering::Relaxed);
        let woke = q::unpark_one(KEY, TOKEN);
        assert_eq!(woke, t.join().unwrap());
    });
}

/// A timed parker and an unparker (issue 9: unparkers now wake after releasing the bucket
/// lock): the parker times out, or the unparker claims it, and then a parker whose deadline
/// passed finds itself unlinked but not yet woken and waits for the hand-off. Exactly one
/// side sees the wake-up; the record is never used after the parker returns.
#[test]
fn timed_parker_and_unparker() {
    model(|| {
        let t = thread::spawn(|| q::park_timed(KEY));
        let woke = q::unpark_one(KEY, TOKEN);
        let got = t.join().unwrap();
        assert_eq!(got.is_some(), woke, "unparked iff the unparker found it");
        if let Some(t) = got {
            assert_eq!(t, TOKEN);
        }
    });
}
