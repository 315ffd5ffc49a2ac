//! Presenting runs: one run's summary, the `compare` tables (the paired-rounds summary, and
//! the older per-combination rows with ratios against `baseline`), and their charts
//! ([`crate::chart`]).

use crate::chart::{self, Bar, Chart, commit_label};
use crate::compare::SummaryRow;
use crate::config::{Lock, PolicyKind};
use crate::rounds::Estimate;
use crate::run::RunReport;
use crate::sched::VcpuStats;
use core::fmt::Write as _;

/// One line of the `compare` table.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// vCPUs.
    pub vcpus: u32,
    /// pCPUs.
    pub pcpus: u32,
    /// Lock kind.
    pub lock: Lock,
    /// Policy.
    pub policy: PolicyKind,
    /// Critical-section work (guest loop iterations; 0 in files written before it was
    /// recorded).
    #[serde(default)]
    pub cs_iters: u32,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Operations per CPU-second the vCPU threads received.
    pub ops_per_cpu_sec: f64,
    /// Involuntary preemptions.
    pub preemptions: u64,
    /// Of those, inside a critical section.
    pub preemptions_in_cs: u64,
    /// Extensions granted.
    pub extensions: u64,
    /// Directed yields served.
    pub directed_yields: u64,
    /// Pause-loop exits.
    pub ple_exits: u64,
    /// Halts: blocking waiters that gave their pCPU up (WAIT), to be woken by a KICK.
    #[serde(default)]
    pub halts: u64,
    /// Throughput over `baseline`'s on the same (vcpus, pcpus, lock), if that run exists.
    pub ratio_to_baseline: Option<f64>,
    /// The same ratio for operations per CPU-second.
    pub cpu_ratio_to_baseline: Option<f64>,
    /// Reduction of in-CS preemptions against `baseline`, percent, if baseline had any.
    pub in_cs_reduction_pct: Option<f64>,
    /// RCU: the writers' mean grace-period wait, microseconds.
    #[serde(default)]
    pub grace_us: Option<f64>,
    /// RCU: how many times shorter the mean grace-period wait is than `baseline`'s (baseline's
    /// mean in cycles over this run's; > 1 is better).
    #[serde(default)]
    pub grace_shorter: Option<f64>,
    /// Whether the run passed its checks.
    pub ok: bool,
}

/// Picks, for every (vCPUs, pCPUs, lock, policy) among `runs` (repeats of the same
/// combination), the run with the median throughput, in first-seen order. With one run per
/// combination this is `runs` itself. A failed run counts as throughput 0.
pub fn medians(runs: &[RunReport]) -> Vec<RunReport> {
    let key = |r: &RunReport| (r.vcpus, r.pcpus, r.lock, r.policy, r.cs_iters);
    let mut keys = Vec::new();
    for r in runs {
        if !keys.contains(&key(r)) {
            keys.push(key(r));
        }
    }
    keys.into_iter()
        .map(|k| {
            let mut same: Vec<&RunReport> = runs.iter().filter(|r| key(r) == k).collect();
            let score = |r: &RunReport| if r.ok() { r.ops_per_sec } else { 0.0 };
            same.sort_by(|a, b| score(a).total_cmp(&score(b)));
            same[(same.len() - 1) / 2].clone()
        })
        .collect()
}

/// Builds the comparison rows of `runs` (in order), with ratios against the `baseline` run of
/// the same vCPU count, pCPU count and lock.
pub fn rows(runs: &[RunReport]) -> Vec<Row> {
    runs.iter()
        .map(|r| {
            let base = runs.iter().find(|b| {
                b.policy == PolicyKind::Baseline
                    && b.vcpus == r.vcpus
                    && b.pcpus == r.pcpus
                    && b.lock == r.lock
                    && b.cs_iters == r.cs_iters
                    && b.ok()
            });
            let ratio = base
                .filter(|b| b.ops_per_sec > 0.0 && r.ok())
                .map(|b| r.ops_per_sec / b.ops_per_sec);
            let cpu_ratio = base
                .filter(|b| b.ops_per_cpu_sec > 0.0 && r.ok())
                .map(|b| r.ops_per_cpu_sec / b.ops_per_cpu_sec);
            let reduction = base
                .filter(|b| b.total.preemptions_in_cs > 0 && r.ok())
                .map(|b| {
                    100.0
                        * (1.0
                            - r.total.preemptions_in_cs as f64 / b.total.preemptions_in_cs as f64)
                });
            let grace_shorter = base
                .and_then(|b| b.grace_mean_cycles)
                .zip(r.grace_mean_cycles.filter(|_| r.ok()))
                .filter(|&(_, mine)| mine > 0.0)
                .map(|(b, mine)| b / mine);
            Row {
                vcpus: r.vcpus,
                pcpus: r.pcpus,
                lock: r.lock,
                policy: r.policy,
                cs_iters: r.cs_iters,
                ops_per_sec: r.ops_per_sec,
                ops_per_cpu_sec: r.ops_per_cpu_sec,
                preemptions: r.total.preemptions,
                preemptions_in_cs: r.total.preemptions_in_cs,
                extensions: r.total.extensions,
                directed_yields: r.total.directed_yields,
                ple_exits: r.total.ple_exits,
                halts: r.total.halts,
                ratio_to_baseline: ratio,
                cpu_ratio_to_baseline: cpu_ratio,
                in_cs_reduction_pct: reduction,
                grace_us: r.grace_mean_us,
                grace_shorter,
                ok: r.ok(),
            }
        })
        .collect()
}

/// Steal as a share of the time holding a pCPU, percent.
pub fn steal_pct(t: &VcpuStats) -> Option<f64> {
    (t.run_ns > 0).then(|| 100.0 * t.steal_ns as f64 / t.run_ns as f64)
}

fn opt(v: Option<f64>, prec: usize, suffix: &str) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.prec$}{suffix}"))
}

/// The `compare` table, one line per run.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>5} {:>5} {:<8} {:<8} {:>12} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>10} {:>9} {:>7} {:>4}",
        "vcpus",
        "pcpus",
        "lock",
        "policy",
        "ops/s",
        "ops/cpu-s",
        "preempt",
        "in-CS",
        "ext",
        "dyield",
        "ple-exit",
        "halts",
        "x-base",
        "x-cpu",
        "in-CS cut",
        "gp-us",
        "gp-x",
        "ok"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:>5} {:>5} {:<8} {:<8} {:>12.0} {:>12.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>10} {:>9} {:>7} {:>4}",
            r.vcpus,
            r.pcpus,
            r.lock.name(),
            r.policy.name(),
            r.ops_per_sec,
            r.ops_per_cpu_sec,
            r.preemptions,
            r.preemptions_in_cs,
            r.extensions,
            r.directed_yields,
            r.ple_exits,
            r.halts,
            opt(r.ratio_to_baseline, 2, "x"),
            opt(r.cpu_ratio_to_baseline, 2, "x"),
            opt(r.in_cs_reduction_pct, 1, "%"),
            opt(r.grace_us, 1, ""),
            opt(r.grace_shorter, 2, "x"),
            if r.ok { "yes" } else { "NO" }
        );
    }
    s
}

/// The ratios in words, one line per (lock kind, vCPUs, pCPUs) that has a passing
/// `baseline`: each other policy's throughput ratio (wall clock, then per CPU-second) and,
/// for RCU, how many times shorter its grace periods are.
pub fn summary(rows: &[Row]) -> String {
    let mut s = String::new();
    let mut seen = Vec::new();
    for b in rows
        .iter()
        .filter(|r| r.policy == PolicyKind::Baseline && r.ok)
    {
        let key = (b.lock, b.vcpus, b.pcpus);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let others: Vec<&Row> = rows
            .iter()
            .filter(|r| (r.lock, r.vcpus, r.pcpus) == key && r.policy != PolicyKind::Baseline)
            .collect();
        if others.is_empty() {
            continue;
        }
        if s.is_empty() {
            let _ = writeln!(s, "\nagainst baseline (ops/s ratio, ops/cpu-s ratio):");
        }
        let _ = write!(
            s,
            "  {:<7} {:>3} on {:<3} ({}):",
            b.lock.name(),
            b.vcpus,
            b.pcpus,
            commit_label(b.vcpus, b.pcpus)
        );
        for r in &others {
            let _ = write!(
                s,
                "  {} {} / {}",
                r.policy.name(),
                opt(r.ratio_to_baseline, 2, "x"),
                opt(r.cpu_ratio_to_baseline, 2, "x")
            );
            if !r.ok {
                let _ = write!(s, " (FAILED)");
            }
        }
        let _ = writeln!(s);
        if let Some(bg) = b.grace_us {
            let _ = write!(s, "  {:<22} grace period: baseline {bg:.1} us", "");
            for r in &others {
                if let (Some(g), Some(x)) = (r.grace_us, r.grace_shorter) {
                    let _ = if x >= 1.0 {
                        write!(s, ", {} {g:.1} us ({x:.1}x shorter)", r.policy.name())
                    } else {
                        write!(
                            s,
                            ", {} {g:.1} us ({:.1}x longer)",
                            r.policy.name(),
                            1.0 / x
                        )
                    };
                }
            }
            let _ = writeln!(s);
        }
    }
    s
}

/// A one-run summary: totals, then one line per vCPU, then the failures.
pub fn run_summary(r: &RunReport) -> String {
    let mut s = String::new();
    let t = &r.total;
    if r.vms.len() > 1 {
        let specs: Vec<&str> = r.vms.iter().map(|v| v.spec.as_str()).collect();
        let _ = writeln!(
            s,
            "{} VMs ({}) with {} vCPUs on {} pCPUs, policy {}, {:.2} s, slice {} ms",
            r.vms.len(),
            specs.join(" + "),
            r.vcpus,
            r.pcpus,
            r.policy,
            r.secs,
            r.slice_ms
        );
    } else {
        let _ = writeln!(
            s,
            "{} vCPUs on {} pCPUs, lock {}, policy {}, {:.2} s, slice {} ms",
            r.vcpus, r.pcpus, r.lock, r.policy, r.secs, r.slice_ms
        );
    }
    let _ = writeln!(
        s,
        "ops/s {:.0}  ops/cpu-s {:.0}  ops {}  writes {}  counter {}  preemptions {} (in CS {}, holding a blocking mutex {}, at the extension bound {})  extensions {}  directed yields {}  PLE exits {}  yields {}  halts {}  bad hypercalls {}",
        r.ops_per_sec,
        r.ops_per_cpu_sec,
        t.ops,
        t.writes,
        r.counter
            .map_or_else(|| "not reported".to_owned(), |c| c.to_string()),
        t.preemptions,
        t.preemptions_in_cs,
        t.preemptions_in_blocking,
        t.preemptions_at_bound,
        t.extensions,
        t.directed_yields,
        t.ple_exits,
        t.yields,
        t.halts,
        t.bad_hypercalls
    );
    let _ = writeln!(
        s,
        "guest hints {}; halt-polling {}: {} halts polled first, {} woken while polling",
        if r.guest_hints { "on" } else { "off" },
        if r.halt_poll { "on" } else { "off" },
        t.halt_polls,
        t.halt_poll_hits
    );
    let _ = writeln!(
        s,
        "host: pCPU time {:.1} ms, thread CPU time {:.1} ms, steal {:.1} ms ({}); host deschedules of a pCPU holder {} (in CS {})",
        t.run_ns as f64 / 1e6,
        t.cpu_ns as f64 / 1e6,
        t.steal_ns as f64 / 1e6,
        opt(steal_pct(t), 1, " %"),
        t.host_deschedules,
        t.host_deschedules_in_cs
    );
    if let Some(w) = r.wakeup {
        let _ = writeln!(
            s,
            "wake-ups (kick to resume, TSC): {} measured, p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us",
            w.samples, w.p50_us, w.p90_us, w.p99_us, w.max_us
        );
    }
    if let Some(l) = r.preempt_lateness {
        let _ = writeln!(
            s,
            "tick lateness (preemption due to the vCPU leaving its pCPU): {} measured, p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us; {} asked without the lock",
            l.samples, l.p50_us, l.p90_us, l.p99_us, l.max_us, r.lockfree_kicks
        );
    }
    if r.ple_base_window > 0 {
        let _ = writeln!(
            s,
            "PLE: base window {} spins (KVM's 4096 cycles at {:.0} cycles per PAUSE), x2 per exit, reset on schedule-in",
            r.ple_base_window, r.cycles_per_pause
        );
    }
    if let (Some(c), Some(us)) = (r.grace_mean_cycles, r.grace_mean_us) {
        let _ = writeln!(
            s,
            "RCU grace periods {}  mean wait {c:.0} cycles = {us:.1} us (TSC {:.3} GHz)",
            t.grace_periods,
            r.tsc_hz / 1e9
        );
    }
    if r.vms.len() > 1 {
        s += &vm_table(r);
    }
    let _ = writeln!(
        s,
        "{:>5} {:>10} {:>8} {:>6} {:>6} {:>6} {:>6} {:>7} {:>8} {:>8} {:>8} {:>7}  state",
        "vcpu",
        "ops",
        "preempt",
        "in-CS",
        "ext",
        "dyield",
        "halts",
        "pl-exit",
        "run ms",
        "cpu ms",
        "steal ms",
        "h-desch"
    );
    for v in &r.per_vcpu {
        let st = &v.stats;
        let name = if r.vms.len() > 1 {
            format!("{}.{}", v.vm, v.vm_vcpu)
        } else {
            v.vcpu.to_string()
        };
        let _ = writeln!(
            s,
            "{:>5} {:>10} {:>8} {:>6} {:>6} {:>6} {:>6} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>7}  {:?}",
            name,
            st.ops,
            st.preemptions,
            st.preemptions_in_cs,
            st.extensions,
            st.directed_yields,
            st.halts,
            st.ple_exits,
            st.run_ns as f64 / 1e6,
            st.cpu_ns as f64 / 1e6,
            st.steal_ns as f64 / 1e6,
            st.host_deschedules,
            v.state
        );
    }
    if r.ok() {
        let _ = writeln!(s, "checks: passed");
    } else {
        for f in &r.failures {
            let _ = writeln!(s, "FAILED: {f}");
        }
    }
    s
}

/// One line per VM of a multi-VM run: its spec, work, the pCPU time the scheduler gave it
/// against its fair share, its threads' CPU time, and the totals.
pub fn vm_table(r: &RunReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>3} {:<28} {:>12} {:>12} {:>9} {:>7} {:>7} {:>8} {:>8} {:>7} {:>6}  checks",
        "vm",
        "spec",
        "ops/s",
        "ops/cpu-s",
        "pcpu ms",
        "share",
        "fair",
        "of fair",
        "cpu ms",
        "preempt",
        "ext"
    );
    for v in &r.vms {
        let t = &v.total;
        let _ = writeln!(
            s,
            "{:>3} {:<28} {:>12.0} {:>12.0} {:>9.1} {:>6.1}% {:>6.1}% {:>7.1}% {:>8.1} {:>7} {:>6}  {}",
            v.vm,
            v.spec,
            v.ops_per_sec,
            v.ops_per_cpu_sec,
            v.pcpu_ns as f64 / 1e6,
            v.pcpu_share * 100.0,
            v.fair_share * 100.0,
            v.of_fair_share * 100.0,
            t.cpu_ns as f64 / 1e6,
            t.preemptions,
            t.extensions,
            if v.failures.is_empty() {
                "passed"
            } else {
                "FAILED"
            }
        );
    }
    let _ = writeln!(
        s,
        "{:>3} {:<28} {:>12.0} {:>12.0} {:>9.1} {:>7} {:>7} {:>8} {:>8.1} {:>7} {:>6}",
        "all",
        format!("{} vCPUs", r.vcpus),
        r.ops_per_sec,
        r.ops_per_cpu_sec,
        r.total.run_ns_before_stop as f64 / 1e6,
        "",
        "",
        "",
        r.total.cpu_ns as f64 / 1e6,
        r.total.preemptions,
        r.total.extensions
    );
    s
}

/// The chart of the older `compare` rows (one run per combination, no ceiling): each policy's
/// throughput relative to `baseline` as the bar, the ratio in operations per CPU-second as the
/// dot, `baseline` (1.0) dashed; under RCU groups, how many times shorter the `ecs` grace
/// periods are than `baseline`'s. Normalising makes FIFO locks, whose absolute throughput
/// under over-commit is a hundred times lower, readable beside the others.
pub fn rows_chart(rows: &[Row]) -> Chart {
    let bars = rows
        .iter()
        .map(|r| Bar {
            lock: r.lock,
            vcpus: r.vcpus,
            pcpus: r.pcpus,
            cs_iters: 0,
            policy: Some(r.policy),
            hints_off: false,
            value: r.ratio_to_baseline.filter(|_| r.ok),
            interval: None,
            dot: r.cpu_ratio_to_baseline.filter(|_| r.ok),
            failed: !r.ok,
        })
        .collect();
    let group_notes = rows
        .iter()
        .filter(|r| r.policy == PolicyKind::Ecs)
        .filter_map(|r| {
            let g = r.grace_shorter?;
            Some(((r.lock, r.vcpus, r.pcpus, 0), format!("ecs GP ÷{g:.1}")))
        })
        .collect();
    Chart {
        title: "ecs-shim compare: throughput relative to baseline (higher is better)".into(),
        y_label: "throughput / baseline throughput".into(),
        reference: (1.0, "1.0 = baseline".into()),
        dot_label: Some("ratio in ops/CPU-s".into()),
        note: "over-commit (vCPUs / pCPUs) per lock kind; 1x and below is under-commit; \
               ecs GP ÷N: RCU grace periods N times shorter than baseline's"
            .into(),
        group_notes,
        sub_labels: Vec::new(),
        bars,
    }
}

/// The SVG chart of the older `compare` rows ([`rows_chart`]).
pub fn svg(rows: &[Row]) -> String {
    chart::svg(&rows_chart(rows))
}

/// The chart of a paired-rounds summary: every policy's (and the ceiling's) median share of
/// the ceiling with its 95 % interval; the ceiling (1.0) dashed.
pub fn summary_chart(rows: &[SummaryRow]) -> Chart {
    let bars = rows
        .iter()
        .map(|r| {
            let share = r.share_of_ceiling;
            Bar {
                lock: r.lock,
                vcpus: r.vcpus,
                pcpus: r.pcpus,
                cs_iters: r.cs_iters,
                policy: (!r.ceiling).then_some(r.policy),
                hints_off: !r.guest_hints,
                value: share.map(|e| e.median),
                interval: share.and_then(|e| e.interval).map(|i| (i.lo, i.hi)),
                dot: None,
                failed: share.is_none() && r.failed > 0,
            }
        })
        .collect();
    Chart {
        title: "ecs-shim compare: throughput as a share of the ceiling (the same workload \
                without over-commit)"
            .into(),
        y_label: "ops/s / ceiling ops/s (same round)".into(),
        reference: (1.0, "1.0 = the ceiling".into()),
        dot_label: None,
        note: "medians of paired rounds; whiskers: distribution-free 95 % interval of the \
               median (order statistics), none below 6 rounds"
            .into(),
        group_notes: Vec::new(),
        sub_labels: Vec::new(),
        bars,
    }
}

fn est(e: Option<Estimate>, suffix: &str) -> String {
    match e {
        None => "-".to_owned(),
        Some(e) => match e.interval {
            Some(i) => format!("{:.2}{suffix} [{:.2}-{:.2}]", e.median, i.lo, i.hi),
            None => format!("{:.2}{suffix} [n/a]", e.median),
        },
    }
}

/// The paired-rounds table: one line per (group, vCPUs, policy), medians with their intervals.
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let sweep = rows.iter().any(|r| r.cs_iters != rows[0].cs_iters);
    let cs = |v: String| {
        if sweep {
            format!(" {v:>7}")
        } else {
            String::new()
        }
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>5} {:>5} {:<8}{} {:<14} {:>12} {:<22} {:<22} {:<22} {:>8} {:>8} {:>7} {:>7} {:>15} {:<18} {:>17} {:>7}",
        "vcpus",
        "pcpus",
        "lock",
        cs("cs".to_owned()),
        "policy",
        "ops/s",
        "x-ceiling [95%]",
        "x-base [95%]",
        "x-ple [95%]",
        "in-CS",
        "halts",
        "h-desch",
        "steal%",
        "wake p50/p99us",
        "jain [95%]",
        "ops/vCPU min-max",
        "rounds"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:>5} {:>5} {:<8}{} {:<14} {:>12} {:<22} {:<22} {:<22} {:>8} {:>8} {:>7} {:>7} {:>15} {:<18} {:>17} {:>7}",
            r.vcpus,
            r.pcpus,
            r.lock.name(),
            cs(r.cs_iters.to_string()),
            r.label(),
            r.ops_per_sec
                .map_or_else(|| "-".to_owned(), |e| format!("{:.0}", e.median)),
            est(r.share_of_ceiling, "x"),
            est(r.ratio_to_baseline, "x"),
            est(r.ratio_to_ple, "x"),
            opt(r.preemptions_in_cs, 0, ""),
            opt(r.halts, 0, ""),
            opt(r.host_deschedules, 0, ""),
            opt(r.steal_pct, 1, ""),
            format!(
                "{}/{}",
                opt(r.wake_p50_us, 1, ""),
                opt(r.wake_p99_us, 0, "")
            ),
            est(r.jain, "") + if r.unfair() { " !" } else { "" },
            format!("{}-{}", opt(r.ops_min, 0, ""), opt(r.ops_max, 0, "")),
            if r.failed > 0 {
                format!("{}/{} ok", r.rounds - r.failed, r.rounds)
            } else {
                r.rounds.to_string()
            }
        );
    }
    let _ = writeln!(s, "{}", crate::rounds::METHOD);
    s
}

/// The headline in words: per over-committed group, `ecs`'s share of the ceiling and its ratio
/// to `ple` and `baseline`; then the barging locks whose Jain's index is below 0.9.
pub fn summary_lines(rows: &[SummaryRow]) -> String {
    let mut s = String::new();
    let med = |e: Option<Estimate>| est(e, "x");
    for r in rows
        .iter()
        .filter(|r| !r.ceiling && r.policy == PolicyKind::Ecs)
    {
        if s.is_empty() {
            let _ = writeln!(s, "\necs, medians [95 % interval]:");
        }
        let _ = writeln!(
            s,
            "  {:<7} {:>3} on {:<3} ({}{}): {} of the ceiling, {} ple, {} baseline",
            r.lock.name(),
            r.vcpus,
            r.pcpus,
            chart::commit_label(r.vcpus, r.pcpus),
            if rows.iter().any(|o| o.cs_iters != r.cs_iters) {
                format!(", cs {}", r.cs_iters)
            } else {
                String::new()
            },
            med(r.share_of_ceiling),
            med(r.ratio_to_ple),
            med(r.ratio_to_baseline)
        );
        let base = rows.iter().find(|b| {
            !b.ceiling
                && b.policy == PolicyKind::Baseline
                && (b.lock, b.cs_iters, b.vcpus) == (r.lock, r.cs_iters, r.vcpus)
        });
        if let Some(h) = base
            .and_then(|b| b.halts_per_100_ops)
            .filter(|_| r.vcpus <= r.pcpus)
        {
            let _ = writeln!(s, "  {:<22} baseline halts {h:.2} per 100 operations", "");
        }
    }
    let unfair: Vec<String> = rows
        .iter()
        .filter(|r| r.unfair())
        .map(|r| {
            format!(
                "{} {} {} on {} (Jain {:.2})",
                r.lock.name(),
                r.label(),
                r.vcpus,
                r.pcpus,
                r.jain.map_or(0.0, |j| j.median)
            )
        })
        .collect();
    if !unfair.is_empty() {
        let _ = writeln!(
            s,
            "unfair (barging lock, Jain's index < 0.9; marked ! in the table): {}",
            unfair.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunReport;
    use crate::workload::LockKind;

    fn report(policy: PolicyKind, ops_per_sec: f64, in_cs: u64) -> RunReport {
        RunReport {
            lock: Lock(LockKind::Spin),
            policy,
            vcpus: 8,
            pcpus: 2,
            slice_ms: 4.0,
            cs_iters: 100,
            halt_poll: true,
            guest_hints: true,
            think_iters: 400,
            secs: 1.0,
            ops_per_sec,
            ops_per_cpu_sec: ops_per_sec / 2.0,
            total: VcpuStats {
                preemptions_in_cs: in_cs,
                ..VcpuStats::default()
            },
            ops_min: 0,
            ops_max: 0,
            jain: None,
            counter: Some(0),
            tsc_hz: 2e9,
            grace_mean_cycles: None,
            grace_mean_us: None,
            cycles_per_pause: 170.0,
            wakeup: None,
            preempt_lateness: None,
            lockfree_kicks: 0,
            ple_base_window: 0,
            per_vcpu: Vec::new(),
            vms: Vec::new(),
            failures: Vec::new(),
        }
    }

    #[test]
    fn ratios_against_baseline() {
        let runs = [
            report(PolicyKind::Baseline, 100.0, 50),
            report(PolicyKind::Ple, 150.0, 40),
            report(PolicyKind::Ecs, 300.0, 1),
        ];
        let rows = rows(&runs);
        assert_eq!(rows[0].ratio_to_baseline, Some(1.0));
        assert_eq!(rows[2].ratio_to_baseline, Some(3.0));
        assert!((rows[2].in_cs_reduction_pct.unwrap() - 98.0).abs() < 1e-9);
        let t = table(&rows);
        assert!(t.contains("3.00x") && t.contains("98.0%"), "{t}");
        let c = rows_chart(&rows);
        assert_eq!(c.bars.len(), 3);
        assert_eq!(c.bars[2].value, Some(3.0));
        assert_eq!(c.bars[2].dot, Some(3.0), "the CPU ratio is the dot");
        let svg = svg(&rows);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<circle").count(),
            3 + 1,
            "3 CPU-ratio dots and the legend's"
        );
        assert!(svg.contains(">\n3.00\n<") && svg.contains("throughput / baseline throughput"));
    }

    #[test]
    fn chart_groups_by_lock_then_over_commit_and_shows_grace_periods() {
        let mut runs = Vec::new();
        for (vcpus, lock) in [
            (8, LockKind::Mutex),
            (2, LockKind::Mutex),
            (8, LockKind::Rcu),
        ] {
            for (policy, ops, gp) in [
                (PolicyKind::Baseline, 100.0, 50_000.0),
                (PolicyKind::Ecs, 200.0, 2_000.0),
            ] {
                let mut r = report(policy, ops, 0);
                r.vcpus = vcpus;
                r.lock = Lock(lock);
                if lock == LockKind::Rcu {
                    r.grace_mean_cycles = Some(gp);
                    r.grace_mean_us = Some(gp / 2_000.0);
                }
                runs.push(r);
            }
        }
        let rows = rows(&runs);
        let rcu_ecs = &rows[5];
        assert_eq!(rcu_ecs.grace_shorter, Some(25.0));
        assert_eq!(rcu_ecs.grace_us, Some(1.0));
        assert_eq!(rows[0].grace_shorter, None, "no grace periods outside RCU");
        let svg = svg(&rows);
        // Within the mutex block, 2 on 2 (1x) comes before 8 on 2 (4x), though run later.
        let one = svg.find(">\n1x\n<").expect("under-commit group");
        let four = svg.find(">\n4x\n<").expect("over-commit group");
        assert!(one < four, "groups by ascending over-commit");
        assert!(svg.find(">\nmutex\n<").unwrap() < svg.find(">\nrcu\n<").unwrap());
        assert!(svg.contains("ecs GP ÷25.0"), "{svg}");
        let t = table(&rows);
        assert!(t.contains("25.00x") && t.contains("gp-us"), "{t}");
        let sum = summary(&rows);
        assert!(
            sum.contains("mutex     2 on 2   (1x):  ecs 2.00x / 2.00x"),
            "{sum}"
        );
        assert!(
            sum.contains("grace period: baseline 25.0 us, ecs 1.0 us (25.0x shorter)"),
            "{sum}"
        );
    }

    #[test]
    fn medians_pick_the_middle_run_per_combination() {
        let runs = [
            report(PolicyKind::Baseline, 100.0, 5),
            report(PolicyKind::Ecs, 300.0, 0),
            report(PolicyKind::Baseline, 90.0, 6),
            report(PolicyKind::Ecs, 310.0, 0),
            report(PolicyKind::Baseline, 120.0, 7),
            report(PolicyKind::Ecs, 10.0, 0),
        ];
        let m = medians(&runs);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].policy, m[0].ops_per_sec),
            (PolicyKind::Baseline, 100.0)
        );
        assert_eq!((m[1].policy, m[1].ops_per_sec), (PolicyKind::Ecs, 300.0));
        assert_eq!(
            m[0].total.preemptions_in_cs, 5,
            "the whole median run, not a mix"
        );
    }

    #[test]
    fn no_ratio_without_a_passing_baseline() {
        let mut base = report(PolicyKind::Baseline, 100.0, 0);
        base.failures.push("x".into());
        let rows = rows(&[base, report(PolicyKind::Ecs, 300.0, 0)]);
        assert_eq!(rows[1].ratio_to_baseline, None);
        assert_eq!(rows[1].in_cs_reduction_pct, None);
    }
}
