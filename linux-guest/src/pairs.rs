//! The extension's cost per section where the extension is available: one thread, uncontended
//! lock/unlock pairs with empty sections, timed by `CLOCK_MONOTONIC`. Under QEMU's
//! `-icount shift=0` (the benchmark's default) the guest's clock advances 1 ns per emulated
//! instruction, so on minus off is the extension's cost in instructions per pair (the loop,
//! the `black_box`es and the rare interrupt are the same on both sides; the absolute figures
//! include them, so they are not the locks' own counts). "off" is the same binary with
//! `ECS_LOCKS_RSEQ=0`.

use std::hint::black_box;

use ecs_locks::{McsMutex, Rcu, SpinMutex, SpinRwLock, TicketMutex};

use crate::work::{child_result, field, now_ns, scaled, side};

/// The locks measured, as `bench-pairs` prints them.
const KINDS: [&str; 6] = [
    "spin",
    "mcs",
    "ticket",
    "spin-rw-read",
    "spin-rw-write",
    "rcu-read",
];

/// Nanoseconds per pair of `n` pairs of `f`, after a warm-up of `n / 10`.
fn per_pair(n: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let t0 = now_ns();
    for _ in 0..n {
        f();
    }
    (now_ns() - t0) as f64 / n as f64
}

/// `bench-pairs`: one `pairs:` line with every kind's nanoseconds per pair.
pub fn one() -> Result<(), String> {
    let n = scaled(1_000_000, 10_000);
    let spin = SpinMutex::new(0u64);
    let mcs = McsMutex::new(0u64);
    let ticket = TicketMutex::new(0u64);
    let rw = SpinRwLock::new(0u64);
    let rcu = Rcu::new(0u64);
    let mut line = format!("pairs: ext={} n={n}", side());
    for kind in KINDS {
        let ns = match kind {
            "spin" => per_pair(n, || *black_box(&spin).lock() += 1),
            "mcs" => per_pair(n, || *black_box(&mcs).lock() += 1),
            "ticket" => per_pair(n, || *black_box(&ticket).lock() += 1),
            "spin-rw-read" => per_pair(n, || {
                black_box(*black_box(&rw).read());
            }),
            "spin-rw-write" => per_pair(n, || *black_box(&rw).write() += 1),
            _ => per_pair(n, || {
                black_box(*black_box(&rcu).read());
            }),
        };
        line.push_str(&format!(" {kind}={ns:.1}"));
    }
    println!("{line} ({})", ecs_sys::thread_backend());
    Ok(())
}

/// Runs `bench-pairs` off and on, twice each alternating, and prints the table: per kind the
/// smaller of the two rounds per side (interrupts only add), and on minus off.
pub fn run() -> Result<(), String> {
    let mut best = [[f64::INFINITY; KINDS.len()]; 2];
    for round in 0..2 {
        for (m, off) in [(0usize, true), (1, false)] {
            let line = child_result(&["bench-pairs"], off, "pairs:")?;
            println!("{line} round={round}");
            for (k, kind) in KINDS.iter().enumerate() {
                let v =
                    field::<f64>(&line, kind).ok_or_else(|| format!("no {kind} in {line:?}"))?;
                best[m][k] = best[m][k].min(v);
            }
        }
    }
    println!(
        "linux-guest: uncontended pairs, one thread (ns per lock+unlock and loop step; under \
         -icount shift=0 on-off is the extension's instructions per pair)"
    );
    println!("  lock            off      on   on-off");
    for (k, kind) in KINDS.iter().enumerate() {
        let (off, on) = (best[0][k], best[1][k]);
        println!("  {kind:<13} {off:>6.1} {on:>7.1} {:>+8.1}", on - off);
    }
    Ok(())
}
