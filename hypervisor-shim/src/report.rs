//! Presenting runs: one run's summary, the `compare` table with ratios against `baseline`,
//! JSON (serde), and a hand-written SVG bar chart.

use crate::config::{Lock, PolicyKind};
use crate::run::RunReport;
use core::fmt::Write as _;

/// One line of the `compare` table.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// vCPUs.
    pub vcpus: u32,
    /// pCPU slots.
    pub pcpus: u32,
    /// Lock kind.
    pub lock: Lock,
    /// Policy.
    pub policy: PolicyKind,
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
    /// Halts: blocking waiters that gave their slot up (WAIT), to be woken by a KICK.
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
    let key = |r: &RunReport| (r.vcpus, r.pcpus, r.lock, r.policy);
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
/// the same vCPU count, slot count and lock.
pub fn rows(runs: &[RunReport]) -> Vec<Row> {
    runs.iter()
        .map(|r| {
            let base = runs.iter().find(|b| {
                b.policy == PolicyKind::Baseline
                    && b.vcpus == r.vcpus
                    && b.pcpus == r.pcpus
                    && b.lock == r.lock
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
    let _ = writeln!(
        s,
        "{} vCPUs on {} pCPU slots, lock {}, policy {}, {:.2} s, slice {} ms",
        r.vcpus, r.pcpus, r.lock, r.policy, r.secs, r.slice_ms
    );
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
    if let (Some(c), Some(us)) = (r.grace_mean_cycles, r.grace_mean_us) {
        let _ = writeln!(
            s,
            "RCU grace periods {}  mean wait {c:.0} cycles = {us:.1} us (TSC {:.3} GHz)",
            t.grace_periods,
            r.tsc_hz / 1e9
        );
    }
    let _ = writeln!(
        s,
        "{:>5} {:>10} {:>8} {:>6} {:>6} {:>6} {:>6} {:>7} {:>8}  state",
        "vcpu", "ops", "preempt", "in-CS", "ext", "dyield", "halts", "pl-exit", "run ms"
    );
    for v in &r.per_vcpu {
        let st = &v.stats;
        let _ = writeln!(
            s,
            "{:>5} {:>10} {:>8} {:>6} {:>6} {:>6} {:>6} {:>7} {:>8.1}  {:?}",
            v.vcpu,
            st.ops,
            st.preemptions,
            st.preemptions_in_cs,
            st.extensions,
            st.directed_yields,
            st.halts,
            st.ple_exits,
            st.run_ns as f64 / 1e6,
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Colours of the policies' bars (colour-blind-safe Okabe-Ito).
fn colour(p: PolicyKind) -> &'static str {
    match p {
        PolicyKind::Baseline => "#999999",
        PolicyKind::Ple => "#E69F00",
        PolicyKind::Ecs => "#0072B2",
        PolicyKind::EcsPle => "#009E73",
    }
}

/// The over-commit ratio `vcpus / pcpus` as an axis label: `1x`, `4x`, `1.5x`.
fn commit_label(vcpus: u32, pcpus: u32) -> String {
    let r = f64::from(vcpus) / f64::from(pcpus.max(1));
    if (r - r.round()).abs() < 1e-9 {
        format!("{r:.0}x")
    } else {
        let t = format!("{r:.2}");
        format!("{}x", t.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// Grouped bars: each policy's throughput relative to `baseline` (ops/s ratio, the bar) with
/// the ratio in operations per CPU-second as a dot on the bar. One block per lock kind (in
/// first-seen order), and inside it one group per over-commit ratio (vCPUs / pCPU slots,
/// ascending), so under-commit (<= 1x) and over-commit sit side by side on one x axis. A
/// dashed line marks baseline (1.0). Under RCU groups a line `ecs GP ÷N` gives how many
/// times shorter the `ecs` grace periods are than `baseline`'s. Normalising makes FIFO locks, whose
/// absolute throughput under over-commit is a hundred times lower, readable beside the
/// others. Axis labels and a legend included; no plotting dependency.
pub fn svg(rows: &[Row]) -> String {
    let mut locks: Vec<Lock> = Vec::new();
    let mut policies: Vec<PolicyKind> = Vec::new();
    for r in rows {
        if !locks.contains(&r.lock) {
            locks.push(r.lock);
        }
        if !policies.contains(&r.policy) {
            policies.push(r.policy);
        }
    }
    // Per lock kind, its (vcpus, pcpus) groups by ascending over-commit ratio.
    let blocks: Vec<(Lock, Vec<(u32, u32)>)> = locks
        .iter()
        .map(|&lock| {
            let mut gs: Vec<(u32, u32)> = Vec::new();
            for r in rows.iter().filter(|r| r.lock == lock) {
                if !gs.contains(&(r.vcpus, r.pcpus)) {
                    gs.push((r.vcpus, r.pcpus));
                }
            }
            gs.sort_by(|a, b| {
                (u64::from(a.0) * u64::from(b.1))
                    .cmp(&(u64::from(b.0) * u64::from(a.1)))
                    .then(a.1.cmp(&b.1))
            });
            (lock, gs)
        })
        .collect();
    let max = rows
        .iter()
        .flat_map(|r| [r.ratio_to_baseline, r.cpu_ratio_to_baseline])
        .flatten()
        .fold(1.0f64, f64::max);
    // A round axis maximum: the next integer (or half) above the largest ratio.
    let axis_max = if max <= 2.0 {
        (max * 2.0).ceil() / 2.0
    } else {
        max.ceil()
    };
    let (bar_w, gap, block_gap) = (22.0, 18.0, 26.0);
    let group_w = bar_w * policies.len().max(1) as f64 + gap;
    let (left, top, plot_h, bottom) = (80.0, 60.0, 320.0, 112.0);
    let n_groups: usize = blocks.iter().map(|(_, g)| g.len()).sum();
    let plot_w = group_w * n_groups.max(1) as f64 + block_gap * blocks.len().max(1) as f64;
    let width = left + plot_w + 190.0;
    let height = top + plot_h + bottom;
    let y = |v: f64| top + plot_h - plot_h * v / axis_max;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{:.0}" y="28" font-size="15" text-anchor="middle">ecs-shim compare: throughput relative to baseline (higher is better)</text>"#,
        left + plot_w / 2.0
    );
    let steps = if axis_max <= 2.0 {
        (axis_max * 4.0) as u32
    } else {
        axis_max as u32
    };
    for i in 0..=steps {
        let v = axis_max * f64::from(i) / f64::from(steps.max(1));
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{:.0}" y="{:.1}" text-anchor="end">{v:.2}x</text>"##,
            left + plot_w,
            left - 6.0,
            yy + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text transform="translate(22,{:.0}) rotate(-90)" text-anchor="middle">throughput / baseline throughput</text>"#,
        top + plot_h / 2.0
    );
    let mut gx = left;
    for (bi, (lock, groups)) in blocks.iter().enumerate() {
        if bi > 0 {
            let _ = writeln!(
                s,
                r##"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{:.1}" stroke="#bbbbbb"/>"##,
                top + plot_h + 44.0
            );
        }
        let block_start = gx;
        gx += block_gap / 2.0;
        for &(vcpus, pcpus) in groups {
            let bx = gx + gap / 2.0;
            for (pi, p) in policies.iter().enumerate() {
                let Some(r) = rows.iter().find(|r| {
                    r.lock == *lock && r.vcpus == vcpus && r.pcpus == pcpus && r.policy == *p
                }) else {
                    continue;
                };
                let x = bx + bar_w * pi as f64;
                let cx = x + (bar_w - 3.0) / 2.0;
                let (label, top_y) = match (r.ok, r.ratio_to_baseline) {
                    (true, Some(v)) => {
                        let yy = y(v);
                        let _ = writeln!(
                            s,
                            r#"<rect x="{x:.1}" y="{yy:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {} {vcpus}/{pcpus}: {:.0} ops/s, {:.0} ops/cpu-s</title></rect>"#,
                            bar_w - 3.0,
                            top + plot_h - yy,
                            colour(*p),
                            p.name(),
                            esc(lock.name()),
                            r.ops_per_sec,
                            r.ops_per_cpu_sec
                        );
                        (format!("{v:.1}x"), yy)
                    }
                    (false, _) => ("FAIL".to_owned(), y(0.0)),
                    (true, None) => ("n/a".to_owned(), y(0.0)),
                };
                let mut label_y = top_y - 4.0;
                if let (true, Some(c)) = (r.ok, r.cpu_ratio_to_baseline) {
                    let cy = y(c);
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="3.5" fill="black"/>"#
                    );
                    // The label names the bar: it stays at the bar's top unless the dot
                    // would sit on it, then it moves just above the dot.
                    if cy < top_y + 4.0 && cy > label_y - 14.0 {
                        label_y = cy - 6.0;
                    }
                }
                let _ = writeln!(
                    s,
                    r#"<text x="{cx:.1}" y="{label_y:.1}" font-size="9" text-anchor="middle">{label}</text>"#
                );
            }
            let cx = bx + bar_w * policies.len() as f64 / 2.0;
            let _ = writeln!(
                s,
                r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="9" fill="#555555">{vcpus} on {pcpus}</text>"##,
                top + plot_h + 16.0,
                commit_label(vcpus, pcpus),
                top + plot_h + 28.0
            );
            let gp = rows.iter().find(|r| {
                r.lock == *lock
                    && r.vcpus == vcpus
                    && r.pcpus == pcpus
                    && r.policy == PolicyKind::Ecs
            });
            if let Some(g) = gp.and_then(|r| r.grace_shorter) {
                let _ = writeln!(
                    s,
                    r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="9">ecs GP ÷{g:.1}</text>"#,
                    top + plot_h + 40.0
                );
            }
            gx += group_w;
        }
        gx += block_gap / 2.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
            (block_start + gx) / 2.0,
            top + plot_h + 60.0,
            esc(lock.name())
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black" stroke-dasharray="5,4"/>"##,
        y(1.0),
        left + plot_w,
        y(1.0)
    );
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{:.1}" stroke="black"/>"#,
        top + plot_h,
        left + plot_w,
        top + plot_h,
        top + plot_h
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.0}" y="{:.0}" text-anchor="middle">over-commit (vCPUs / pCPU slots) per lock kind; 1x and below is under-commit</text>"#,
        left + plot_w / 2.0,
        top + plot_h + 84.0
    );
    let lx = left + plot_w + 20.0;
    for (i, p) in policies.iter().enumerate() {
        let ly = top + 10.0 + 22.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.0}" y="{ly:.0}" width="14" height="14" fill="{}"/><text x="{:.0}" y="{:.0}">{}</text>"#,
            colour(*p),
            lx + 20.0,
            ly + 12.0,
            p.name()
        );
    }
    let ly = top + 10.0 + 22.0 * policies.len() as f64;
    let _ = writeln!(
        s,
        r#"<circle cx="{:.0}" cy="{:.0}" r="3.5" fill="black"/><text x="{:.0}" y="{:.0}">ratio in ops per</text><text x="{:.0}" y="{:.0}">CPU-second</text><line x1="{lx:.0}" y1="{:.0}" x2="{:.0}" y2="{:.0}" stroke="black" stroke-dasharray="5,4"/><text x="{:.0}" y="{:.0}">baseline</text>"#,
        lx + 7.0,
        ly + 7.0,
        lx + 20.0,
        ly + 11.0,
        lx + 20.0,
        ly + 25.0,
        ly + 44.0,
        lx + 14.0,
        ly + 44.0,
        lx + 20.0,
        ly + 48.0
    );
    if rows.iter().any(|r| r.grace_shorter.is_some()) {
        let _ = writeln!(
            s,
            r#"<text x="{lx:.0}" y="{:.0}" font-size="11">ecs GP ÷N: RCU grace</text><text x="{lx:.0}" y="{:.0}" font-size="11">periods N times shorter</text><text x="{lx:.0}" y="{:.0}" font-size="11">than baseline's</text>"#,
            ly + 74.0,
            ly + 88.0,
            ly + 102.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunReport;
    use crate::sched::VcpuStats;
    use crate::workload::LockKind;

    fn report(policy: PolicyKind, ops_per_sec: f64, in_cs: u64) -> RunReport {
        RunReport {
            lock: Lock(LockKind::Spin),
            policy,
            vcpus: 8,
            pcpus: 2,
            slice_ms: 4.0,
            secs: 1.0,
            ops_per_sec,
            ops_per_cpu_sec: ops_per_sec / 2.0,
            total: VcpuStats {
                preemptions_in_cs: in_cs,
                ..VcpuStats::default()
            },
            counter: Some(0),
            tsc_hz: 2e9,
            grace_mean_cycles: None,
            grace_mean_us: None,
            per_vcpu: Vec::new(),
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
        let svg = svg(&rows);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<rect x=").count(),
            3 + 3,
            "3 bars and 3 legend boxes"
        );
        assert_eq!(
            svg.matches("<circle").count(),
            3 + 1,
            "3 CPU-ratio dots and the legend's"
        );
        assert!(svg.contains(">3.0x<") && svg.contains("throughput / baseline throughput"));
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
        let one = svg.find(">1x<").expect("under-commit group");
        let four = svg.find(">4x<").expect("over-commit group");
        assert!(one < four, "groups by ascending over-commit");
        assert!(svg.find(">mutex<").unwrap() < svg.find(">rcu<").unwrap());
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
        assert_eq!(commit_label(3, 2), "1.5x");
        assert_eq!(commit_label(1, 3), "0.33x");
        assert_eq!(commit_label(16, 2), "8x");
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
