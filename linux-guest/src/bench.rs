//! The benchmark: 8 threads on the guest's 2 vCPUs around one lock, sections of about 1 µs,
//! hold time by `CLOCK_MONOTONIC` around the section. "off" is the same binary with
//! `ECS_LOCKS_RSEQ=0`; off and on alternate twice in one boot. Reports throughput, sections
//! held longer than 200 µs (the holder was preempted inside) and the longest hold.
//!
//! `rcu-read` has only readers: nothing waits for them, so the extension can only cost there.
//! `rcu-update` is what RCU readers request it for: thread 0 is an updater whose every
//! [`Rcu::update`] waits for a grace period, that is for every reader section older than it;
//! a reader preempted inside its section holds the updater up until it runs again. Its row
//! counts reader sections and updates as its operations, its holds are the reader sections,
//! and the updates and their grace-period waits get a table of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use ecs_locks::{McsMutex, Rcu, SpinMutex, SpinRwLock, TicketMutex};

use crate::work::{self, now_ns, rounds_for_ns, scaled_ms, side, spin_work};

const LOCKS: [&str; 6] = ["spin", "mcs", "ticket", "spin-rw", "rcu-read", "rcu-update"];
const THREADS: usize = 8;
const SLOW_NS: u64 = 200_000;

/// One thread's tally.
#[derive(Default, Clone, Copy)]
struct Tally {
    ops: u64,
    slow: u64,
    max_ns: u64,
    sum_ns: u64,
    /// `rcu-update`'s updater: updates, and the longest and total time one took (its grace
    /// period wait).
    updates: u64,
    upd_max_ns: u64,
    upd_sum_ns: u64,
}

impl Tally {
    #[inline]
    fn hold(&mut self, t0: u64) {
        let d = now_ns() - t0;
        self.ops += 1;
        self.sum_ns += d;
        self.slow += u64::from(d > SLOW_NS);
        self.max_ns = self.max_ns.max(d);
    }
    #[inline]
    fn update(&mut self, t0: u64) {
        let d = now_ns() - t0;
        self.updates += 1;
        self.upd_sum_ns += d;
        self.upd_max_ns = self.upd_max_ns.max(d);
    }
    fn add(&mut self, o: Tally) {
        self.ops += o.ops;
        self.slow += o.slow;
        self.sum_ns += o.sum_ns;
        self.max_ns = self.max_ns.max(o.max_ns);
        self.updates += o.updates;
        self.upd_sum_ns += o.upd_sum_ns;
        self.upd_max_ns = self.upd_max_ns.max(o.upd_max_ns);
    }
}

/// `bench-one LOCK`: one measurement, printed as one `bench:` line.
pub fn one(lock: &str) -> Result<(), String> {
    if !LOCKS.contains(&lock) {
        return Err(format!("unknown lock {lock:?}; one of {LOCKS:?}"));
    }
    let rounds = rounds_for_ns(1000);
    let dur = scaled_ms(2000);
    let stop = Arc::new(AtomicBool::new(false));
    let k0 = crate::kstats::read()?;
    let spin = Arc::new(SpinMutex::new(0u64));
    let mcs = Arc::new(McsMutex::new(0u64));
    let ticket = Arc::new(TicketMutex::new(0u64));
    let rw = Arc::new(SpinRwLock::new(0u64));
    let rcu = Arc::new(Rcu::new(0u64));
    let lock = lock.to_string();
    let hs: Vec<_> = (0..THREADS)
        .map(|i| {
            let (stop, spin, mcs, ticket, rw, rcu, lock) = (
                stop.clone(),
                spin.clone(),
                mcs.clone(),
                ticket.clone(),
                rw.clone(),
                rcu.clone(),
                lock.clone(),
            );
            thread::spawn(move || {
                let mut t = Tally::default();
                let mut k = i as u64;
                while !stop.load(Ordering::Relaxed) {
                    match lock.as_str() {
                        "spin" => {
                            let mut g = spin.lock();
                            let t0 = now_ns();
                            *g += spin_work(rounds) & 1;
                            t.hold(t0);
                        }
                        "mcs" => {
                            let mut g = mcs.lock();
                            let t0 = now_ns();
                            *g += spin_work(rounds) & 1;
                            t.hold(t0);
                        }
                        "ticket" => {
                            let mut g = ticket.lock();
                            let t0 = now_ns();
                            *g += spin_work(rounds) & 1;
                            t.hold(t0);
                        }
                        "spin-rw" if k.is_multiple_of(4) => {
                            let mut g = rw.write();
                            let t0 = now_ns();
                            *g += spin_work(rounds) & 1;
                            t.hold(t0);
                        }
                        "spin-rw" => {
                            let g = rw.read();
                            let t0 = now_ns();
                            std::hint::black_box(*g + spin_work(rounds));
                            t.hold(t0);
                        }
                        "rcu-update" if i == 0 => {
                            let t0 = now_ns();
                            rcu.update(|v| v + 1);
                            t.update(t0);
                        }
                        _ => {
                            let g = rcu.read();
                            let t0 = now_ns();
                            std::hint::black_box(*g + spin_work(rounds));
                            t.hold(t0);
                        }
                    }
                    k += 1;
                    spin_work(rounds);
                }
                t
            })
        })
        .collect();
    thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let mut t = Tally::default();
    for h in hs {
        t.add(h.join().map_err(|_| "worker panicked")?);
    }
    let st = ecs_sys::backend::linux::stats();
    let k = crate::kstats::read()?.since(&k0);
    println!(
        "bench: lock={lock} ext={} ops={} slow={} max_us={} mean_ns={} updates={} \
         upd_sum_ns={} upd_max_us={} grants={} yields={} sgrant={} syield={} srevok={} \
         sexpir={} sabort={} ({})",
        side(),
        t.ops,
        t.slow,
        t.max_ns / 1000,
        t.sum_ns / t.ops.max(1),
        t.updates,
        t.upd_sum_ns,
        t.upd_max_ns / 1000,
        st.grants,
        st.yields,
        k.sgrant,
        k.syield,
        k.srevok,
        k.sexpir,
        k.sabort,
        ecs_sys::thread_backend()
    );
    Ok(())
}

/// `key=value` of a `bench:` line, 0 when absent.
fn field(line: &str, key: &str) -> u64 {
    work::field(line, key).unwrap_or(0)
}

/// `bench`: every lock, off/on alternating twice, then the summary; then the uncontended pair
/// costs ([`crate::pairs`]).
pub fn run() -> Result<(), String> {
    println!(
        "linux-guest: bench: this thread {}",
        ecs_sys::thread_backend()
    );
    // The default grant is 5 µs; `ECS_GUEST_SLICE_NS` (a kernel command-line word) changes it.
    if let Some(ns) = std::env::var("ECS_GUEST_SLICE_NS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let old = crate::kstats::set_slice_nsec(ns)?;
        println!("linux-guest: bench: grant {ns} ns (was {old})");
    }
    let mut rows = Vec::new();
    for lock in LOCKS {
        // [off, on] x [ops, slow, max_us, updates, update time in ns, longest update in us]
        let mut by = [[0u64; 6]; 2];
        for round in 0..2 {
            for (m, off) in [(0usize, true), (1, false)] {
                let result = work::child_result(&["bench-one", lock], off, "bench:")?;
                println!("{result} round={round}");
                let line = result.as_str();
                // Every operation: sections, and `rcu-update`'s updates.
                by[m][0] += field(line, "ops") + field(line, "updates");
                by[m][1] += field(line, "slow");
                by[m][2] = by[m][2].max(field(line, "max_us"));
                by[m][3] += field(line, "updates");
                by[m][4] += field(line, "upd_sum_ns");
                by[m][5] = by[m][5].max(field(line, "upd_max_us"));
            }
        }
        rows.push((lock, by));
    }
    println!("linux-guest: bench summary (2 rounds each, 8 threads, 2 vCPUs, ~1 us sections)");
    println!(
        "  lock        ops off   ops on  ratio  >200us off  >200us on  reduction  max_us off  max_us on"
    );
    for (lock, [off, on]) in &rows {
        let ratio = on[0] as f64 / off[0].max(1) as f64;
        let red = if off[1] == 0 {
            0.0
        } else {
            100.0 * (1.0 - on[1] as f64 / off[1] as f64)
        };
        println!(
            "  {lock:<10} {:>8} {:>8} {ratio:>6.2} {:>11} {:>10} {red:>9.1}% {:>11} {:>10}",
            off[0], on[0], off[1], on[1], off[2], on[2]
        );
    }
    println!("  updates (the updater's grace-period waits)");
    println!(
        "  lock        upd off   upd on  ratio  mean_us off  mean_us on  max_us off  max_us on"
    );
    for (lock, [off, on]) in rows.iter().filter(|(_, [off, _])| off[3] > 0) {
        println!(
            "  {lock:<10} {:>8} {:>8} {:>6.2} {:>12.1} {:>11.1} {:>11} {:>10}",
            off[3],
            on[3],
            on[3] as f64 / off[3].max(1) as f64,
            off[4] as f64 / off[3].max(1) as f64 / 1000.0,
            on[4] as f64 / on[3].max(1) as f64 / 1000.0,
            off[5],
            on[5]
        );
    }
    crate::pairs::run()
}
