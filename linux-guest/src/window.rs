//! `window`: where a grant ends, as the kernel and user space see it. Diagnostics for the
//! benchmark's 5 µs grant, not a benchmark: it prints counts and asserts only that they agree.
//!
//! 8 threads on the 2 vCPUs each enter a section (`ecs_sys::cs_enter`, which requests), then
//! poll `slice_ctrl` until the kernel changes it, and leave. A change to `granted = 1` is a grant
//! that user space saw alive ("live"); the thread then holds it `D` more nanoseconds and leaves
//! (the crate's exit yields). A change to both bytes clear is a request the kernel dropped
//! before user space ran again: the thread went through `schedule()` on its way back, either
//! because no grant was possible or because the grant was revoked before it reached user space.
//!
//! In the kernel (Linux 7.2, `include/linux/rseq_entry.h`, `kernel/rseq.c`): `sgrant` counts a
//! grant made on an interrupt's return to user space with `TIF_NEED_RESCHED` set; `srevok`
//! counts every grant dropped by `rseq_slice_clear_grant()`, i.e. any later return to user
//! space with a reschedule pending while granted (the expiry timer's own interrupt included)
//! and any return after a context switch while still granted; `sexpir` counts the expiry timer
//! firing while the grant is held; `syield`/`sabort` a syscall (471 or another) while granted.
//! The path that counts `srevok` without `sexpir`: `__rseq_arm_slice_extension_timer()`, run
//! on the same return to user space right after the grant, finds the grant already expired
//! (`slice.expires < ktime_get_mono_fast_ns()`, `expires` taken at the grant) and reschedules.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use ecs_sys::backend::linux;

use crate::kstats;
use crate::work::{now_ns, scaled_ms};

/// One thread's counts.
#[derive(Default, Clone, Copy)]
struct Seen {
    sections: u64,
    live: u64,
    dropped: u64,
    /// Sum and max of the poll gap (ns) in which the change happened: the time the thread
    /// spent away from user space (interrupt, grant, arming, or a context switch).
    gap_live: (u64, u64),
    gap_dropped: (u64, u64),
}

fn add(a: &mut (u64, u64), v: u64) {
    a.0 += v;
    a.1 = a.1.max(v);
}

/// `window [GRANT_NS]`: runs the probe at the kernel's grant length (or GRANT_NS) for hold
/// times D = 0, 1, 2, 4 µs after the grant is seen, printing one line each.
pub fn run(grant_ns: Option<u64>) -> Result<(), String> {
    let backend = ecs_sys::thread_backend();
    if linux::slice_ctrl().is_none() {
        return Err(format!("the extension must be on: {backend}"));
    }
    let old = match grant_ns {
        Some(ns) => Some(kstats::set_slice_nsec(ns)?),
        None => None,
    };
    let irq0 = interrupts();
    for d in [0u64, 1000, 2000, 4000] {
        let before = kstats::read()?;
        let crate_before = linux::stats();
        let i0 = interrupts();
        let stop = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || probe(&stop, d))
            })
            .collect();
        thread::sleep(scaled_ms(1500));
        stop.store(true, Ordering::Relaxed);
        let mut s = Seen::default();
        for h in hs {
            let t = h.join().map_err(|_| "probe thread panicked")?;
            s.sections += t.sections;
            s.live += t.live;
            s.dropped += t.dropped;
            s.gap_live.0 += t.gap_live.0;
            s.gap_live.1 = s.gap_live.1.max(t.gap_live.1);
            s.gap_dropped.0 += t.gap_dropped.0;
            s.gap_dropped.1 = s.gap_dropped.1.max(t.gap_dropped.1);
        }
        let k = kstats::read()?.since(&before);
        let c = linux::stats();
        let (grants, yields) = (
            c.grants - crate_before.grants,
            c.yields - crate_before.yields,
        );
        let irqs = diff(&interrupts(), &i0);
        println!(
            "window: grant_ns={} hold_after_grant_ns={d} sections={} live={} dropped={} \
             gap_live_mean_ns={} gap_live_max_ns={} gap_dropped_mean_ns={} gap_dropped_max_ns={} \
             crate_grants={grants} crate_yields={yields} sgrant={} syield={} sexpir={} srevok={} \
             sabort={} revoked_not_expired={} irqs[{irqs}]",
            slice_nsec(),
            s.sections,
            s.live,
            s.dropped,
            s.gap_live.0 / s.live.max(1),
            s.gap_live.1,
            s.gap_dropped.0 / s.dropped.max(1),
            s.gap_dropped.1,
            k.sgrant,
            k.syield,
            k.sexpir,
            k.srevok,
            k.sabort,
            k.srevok.saturating_sub(k.sexpir),
        );
        if yields != k.syield {
            return Err(format!(
                "crate yields {yields} != kernel syield {}",
                k.syield
            ));
        }
        if k.syield + k.srevok + k.sabort > k.sgrant + 16 {
            return Err("the kernel ended more grants than it made".into());
        }
    }
    println!(
        "window: interrupts over all runs: {}",
        diff(&interrupts(), &irq0)
    );
    if let Some(old) = old {
        kstats::set_slice_nsec(old)?;
    }
    Ok(())
}

/// One probe thread: sections that wait for the kernel to act on their request.
fn probe(stop: &AtomicBool, hold_ns: u64) -> Seen {
    let mut s = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        ecs_sys::cs_enter();
        s.sections += 1;
        let mut last = now_ns();
        let limit = last + 20_000_000;
        loop {
            let c = linux::slice_ctrl();
            let t = now_ns();
            match c {
                Some((true, false)) if t < limit => last = t,
                Some((_, true)) => {
                    s.live += 1;
                    add(&mut s.gap_live, t - last);
                    while now_ns() < t + hold_ns {}
                    break;
                }
                Some((false, false)) => {
                    s.dropped += 1;
                    add(&mut s.gap_dropped, t - last);
                    break;
                }
                _ => break,
            }
        }
        if ecs_sys::cs_exit() {
            ecs_sys::yield_now();
        }
    }
    s
}

fn slice_nsec() -> String {
    std::fs::read_to_string("/sys/kernel/debug/rseq/slice_ext_nsec")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// `/proc/interrupts` as (name, total over CPUs).
fn interrupts() -> Vec<(String, u64)> {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.trim_end_matches(':').to_string();
            let total = w.take(2).filter_map(|v| v.parse::<u64>().ok()).sum();
            Some((name, total))
        })
        .collect()
}

fn diff(now: &[(String, u64)], before: &[(String, u64)]) -> String {
    now.iter()
        .filter_map(|(n, v)| {
            let b = before.iter().find(|(m, _)| m == n).map_or(0, |x| x.1);
            (v > &b).then(|| format!("{n}={}", v - b))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
