//! Counts the `TicketMutex` acquisitions that were not in FIFO order.
//!
//! Every thread locks the same `RawTicketMutex` in a tight loop through
//! [`RawTicketMutex::lock_ordered`], which reports each acquisition as in turn, taken over (the
//! waiter whose turn it was did not take the free lock within the hand-off window) or late (a
//! waiter skipped earlier). Two configurations:
//!
//! - strict FIFO (`patience = u32::MAX`): take-over cannot trigger, so every acquisition must be
//!   in turn. Always checked.
//! - the default patience: with threads <= cores, waiters run and almost every acquisition is in
//!   turn (target: under 1 % out of order at 2 threads on 2 cores); oversubscribed, the share
//!   shows how often a ticket's thread was descheduled when its turn came.
//!
//! ```text
//! cargo run --release --example ticket_order              # 2 and 8 threads, report only
//! cargo run --release --example ticket_order -- --check   # also fail if 2 threads exceed 1 %
//! cargo run --release --example ticket_order -- 4 16      # other thread counts
//! ```
//! A third table counts **owner changes**: the share of acquisitions whose owner differs from
//! the previous one, for `TicketMutex` and `parking_lot::Mutex` under the section and think
//! work of `benches/paired.rs`. Each change hands the lock's cache line (and the data) to
//! another thread, usually on the other core; it is what `TicketMutex` pays for FIFO order
//! among running waiters (`docs/BENCHMARKS.md`, the bare-metal rounds).
//!
//! The counts are not timings, but they depend on the OS scheduler: run `--check` on a quiet
//! machine. Exit status 1 when a check fails.

// The paired benchmark's section and think work, from the module every bench shares.
#[path = "../benches/common/mod.rs"]
mod common;

use common::{CS_WORK, THINK_WORK, work};
use ecs_locks::{RawTicketMutex, TicketOrder};
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Barrier;
use std::thread;

/// Acquisitions per thread.
const ITERS: u64 = 100_000;
/// Acquisitions per thread when counting owner changes: long enough that one thread cannot
/// finish before the others have started (at 100 000, one of two threads sometimes did).
const OWNER_ITERS: u64 = 1_000_000;

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    in_turn: u64,
    took_over: u64,
    late: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.in_turn + self.took_over + self.late
    }

    fn out_of_order_percent(&self) -> f64 {
        100.0 * (self.took_over + self.late) as f64 / self.total().max(1) as f64
    }
}

/// `threads` threads each take the lock `ITERS` times; returns the orders seen, after checking
/// the counter the lock protects.
fn run(threads: u64, patience: u32, iters: u64) -> Counts {
    let m = lock_api::Mutex::from_raw(RawTicketMutex::with_patience(patience), 0u64);
    let start = Barrier::new(threads as usize);
    let per_thread: Vec<Counts> = thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut c = Counts::default();
                    start.wait();
                    for _ in 0..iters {
                        // SAFETY: only the raw lock is used, through its own protocol.
                        let (state, order) = unsafe { m.raw() }.lock_ordered();
                        // SAFETY: `state` is the state of the acquisition just made.
                        let mut g = unsafe { m.make_guard_unchecked(state) };
                        *g += 1;
                        drop(g);
                        match order {
                            TicketOrder::InTurn => c.in_turn += 1,
                            TicketOrder::TookOver => c.took_over += 1,
                            TicketOrder::Late => c.late += 1,
                        }
                    }
                    c
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(m.into_inner(), threads * iters, "mutual exclusion broken");
    per_thread.iter().fold(Counts::default(), |a, c| Counts {
        in_turn: a.in_turn + c.in_turn,
        took_over: a.took_over + c.took_over,
        late: a.late + c.late,
    })
}

/// `threads` threads each take a lock of type `R` [`OWNER_ITERS`] times with the benchmark's
/// section and think work; returns the percentage of acquisitions that changed the owner.
fn owner_changes<R: lock_api::RawMutex + Sync>(threads: usize) -> f64 {
    // (acquisitions, last owner, owner changes)
    let m = lock_api::Mutex::<R, (u64, usize, u64)>::new((0, usize::MAX, 0));
    let start = Barrier::new(threads);
    thread::scope(|s| {
        for id in 0..threads {
            let (m, start) = (&m, &start);
            s.spawn(move || {
                let mut x = id as u64;
                start.wait();
                for _ in 0..OWNER_ITERS {
                    {
                        let mut g = m.lock();
                        black_box(work(CS_WORK, g.0));
                        g.0 += 1;
                        if g.1 != id {
                            g.1 = id;
                            g.2 += 1;
                        }
                    }
                    x = work(THINK_WORK, x);
                }
                black_box(x);
            });
        }
    });
    let (ops, _, changes) = m.into_inner();
    assert_eq!(ops, threads as u64 * OWNER_ITERS, "mutual exclusion broken");
    100.0 * changes as f64 / ops as f64
}

fn report(label: &str, threads: u64, c: Counts) {
    println!(
        "{label:<16} {threads:>3} threads: {:>8} in turn {:>7} took over {:>7} late  ({:.3} % out of order)",
        c.in_turn,
        c.took_over,
        c.late,
        c.out_of_order_percent()
    );
}

fn main() -> ExitCode {
    let mut check = false;
    let mut counts = Vec::new();
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--check" => check = true,
            n => match n.parse::<u64>() {
                Ok(n) if n > 0 => counts.push(n),
                _ => {
                    eprintln!("ticket_order: expected thread counts (>= 1) and --check, got {a:?}");
                    return ExitCode::FAILURE;
                }
            },
        }
    }
    if counts.is_empty() {
        counts = vec![2, 8];
    }
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "ticket_order: {cores} cores, {ITERS} acquisitions per thread ({} strict FIFO oversubscribed)",
        ITERS / 100
    );
    let mut ok = true;
    for &n in &counts {
        // Strict FIFO oversubscribed waits for a time slice at most hand-offs: fewer rounds.
        let strict_iters = if n as usize > cores {
            ITERS / 100
        } else {
            ITERS
        };
        let strict = run(n, u32::MAX, strict_iters);
        report("strict FIFO", n, strict);
        if strict.in_turn != strict.total() {
            eprintln!("ticket_order: FAIL: out-of-order acquisition without take-over");
            ok = false;
        }
        let default = run(n, RawTicketMutex::DEFAULT_PATIENCE, ITERS);
        report("default patience", n, default);
        if check && n == 2 && default.out_of_order_percent() >= 1.0 {
            eprintln!("ticket_order: FAIL: 2 threads: 1 % or more out of order");
            ok = false;
        }
    }
    println!("owner changes, benches/paired.rs's section and think work:");
    for &n in &counts {
        let ticket = owner_changes::<RawTicketMutex>(n as usize);
        let pl = owner_changes::<parking_lot::RawMutex>(n as usize);
        println!("  {n:>3} threads: TicketMutex {ticket:5.1} %   parking_lot::Mutex {pl:5.1} %");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
