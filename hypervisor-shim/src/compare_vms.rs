//! `compare` with several VMs on one host (issue 10 items 3 and 4): paired, shuffled rounds
//! ([`crate::rounds`]), where a VM's share is both the work it did and the CPU time its
//! threads received, each against the same VM in the same round under `baseline`.
//!
//! A group is one set of VMs (e.g. `8:spin + 8:hog` on 2 pCPUs) run under every policy, plus,
//! for the two-lock figure, each VM's workload alone at the group's total vCPUs under
//! `baseline` and `ecs` (the one-VM ratio at the same total over-commit). Each round runs
//! every group once in a random order, each group's runs in a random order (the seed is
//! printed and accepted back). A VM's figures of a round count only if that VM passed its
//! checks (a hostile VM fails; its neighbour's figures still count).

use crate::config::{Lock, PolicyKind, RunConfig, VmConfig};
use crate::rounds::{Estimate, Executed, METHOD, PairedPlan, RUN_OVERHEAD, RoundGroup, mmss};
use crate::run::RunReport;
use crate::workload::{LockKind, Misbehave};
use core::fmt;
use core::fmt::Write as _;
use core::str::FromStr;
use std::time::Duration;

/// A named multi-VM experiment (`compare --vm-preset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmPreset {
    /// A lock VM beside a hog VM, 8 + 8 vCPUs on 2 pCPUs, for spin, mcs and mutex. Target:
    /// the lock VM under `ecs` >= 1.5x its `baseline` work while the hog VM keeps >= 95 % of
    /// its `baseline` work and CPU time.
    LockHog,
    /// Two lock VMs, 8 + 8 on 2: spin + mcs, mutex + rcu, with each workload's one-VM runs at
    /// 16 on 2. Target: each VM's `ecs`/`baseline` ratio at least its one-VM ratio (within the
    /// intervals), and ahead of `ple`.
    TwoLocks,
    /// A hog VM (8 vCPUs) beside a hostile spin VM (8) acting out each misbehaviour, on 2.
    /// Target: the hog VM keeps >= 90 % of its fair share of pCPU time under every policy.
    Hostile,
    /// CI: `2:spin + 2:hog` on 2, 2 rounds of 0.2 s runs.
    Smoke,
}

impl VmPreset {
    /// Every preset.
    pub const ALL: [VmPreset; 4] = [
        VmPreset::LockHog,
        VmPreset::TwoLocks,
        VmPreset::Hostile,
        VmPreset::Smoke,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            VmPreset::LockHog => "lock-hog",
            VmPreset::TwoLocks => "two-locks",
            VmPreset::Hostile => "hostile",
            VmPreset::Smoke => "vm-smoke",
        }
    }

    /// The preset's plan parameters.
    pub fn spec(self) -> VmPlanSpec {
        let vm = |n, k| VmConfig::new(n, k);
        let three = vec![PolicyKind::Baseline, PolicyKind::Ple, PolicyKind::Ecs];
        let base = VmPlanSpec {
            groups: Vec::new(),
            pcpus: 2,
            policies: three,
            one_vm_references: false,
            rounds: 6,
            secs: 1.0,
            grace: None,
        };
        match self {
            VmPreset::LockHog => VmPlanSpec {
                groups: [LockKind::Spin, LockKind::Mcs, LockKind::Mutex]
                    .into_iter()
                    .map(|k| vec![vm(8, k), vm(8, LockKind::Hog)])
                    .collect(),
                ..base
            },
            VmPreset::TwoLocks => VmPlanSpec {
                groups: vec![
                    vec![vm(8, LockKind::Spin), vm(8, LockKind::Mcs)],
                    vec![vm(8, LockKind::Mutex), vm(8, LockKind::Rcu)],
                ],
                one_vm_references: true,
                ..base
            },
            VmPreset::Hostile => VmPlanSpec {
                groups: crate::config::MISBEHAVE_ALL
                    .into_iter()
                    .filter(|&m| !matches!(m, Misbehave::None | Misbehave::GarbageHypercalls))
                    .map(|m| {
                        vec![
                            vm(8, LockKind::Hog),
                            VmConfig {
                                misbehave: m,
                                ..vm(8, LockKind::Spin)
                            },
                        ]
                    })
                    .collect(),
                rounds: 6,
                secs: 0.5,
                grace: Some(Duration::from_millis(500)),
                ..base
            },
            VmPreset::Smoke => VmPlanSpec {
                groups: vec![vec![vm(2, LockKind::Spin), vm(2, LockKind::Hog)]],
                rounds: 2,
                secs: 0.2,
                ..base
            },
        }
    }
}

impl fmt::Display for VmPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VmPreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        VmPreset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!("unknown VM preset {s:?} (lock-hog, two-locks, hostile, vm-smoke)")
            })
    }
}

/// What a multi-VM `compare` runs.
#[derive(Clone, Debug, PartialEq)]
pub struct VmPlanSpec {
    /// The groups: each a set of VMs sharing the pCPUs.
    pub groups: Vec<Vec<VmConfig>>,
    /// pCPUs.
    pub pcpus: u32,
    /// Policies (ratios need `baseline`).
    pub policies: Vec<PolicyKind>,
    /// Also run each VM's workload alone at the group's total vCPUs, under `baseline` and
    /// `ecs` (the one-VM ratio at the same total over-commit).
    pub one_vm_references: bool,
    /// Rounds.
    pub rounds: u32,
    /// Seconds per run.
    pub secs: f64,
    /// The grace a vCPU gets to stop (`None`: the template's): a hostile VM that ignores
    /// `stop` is force-stopped only after it, so the hostile preset keeps it short.
    pub grace: Option<Duration>,
}

/// One run of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmPlanned {
    /// Policy.
    pub policy: PolicyKind,
    /// `None`: the group's VMs together; `Some(k)`: VM k's workload alone at the group's
    /// total vCPUs.
    pub alone: Option<usize>,
}

/// A group of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct VmGroup {
    /// The VMs.
    pub vms: Vec<VmConfig>,
    /// The runs.
    pub runs: Vec<VmPlanned>,
}

impl VmGroup {
    /// The group's name: its VMs' specs joined by ` + `.
    pub fn name(&self) -> String {
        let specs: Vec<String> = self.vms.iter().map(VmConfig::spec).collect();
        specs.join(" + ")
    }

    /// vCPUs over its VMs.
    pub fn total_vcpus(&self) -> u32 {
        self.vms.iter().map(|v| v.vcpus).sum()
    }
}

impl RoundGroup for VmGroup {
    fn len(&self) -> usize {
        self.runs.len()
    }

    fn config(&self, i: usize, template: &RunConfig) -> RunConfig {
        let p = self.runs[i];
        let t = RunConfig {
            policy: p.policy,
            ..template.clone()
        };
        match p.alone {
            None => t.with_vms(self.vms.clone()),
            Some(k) => RunConfig {
                vcpus: self.total_vcpus(),
                lock: self.vms[k].workload,
                misbehave: Misbehave::None,
                vms: Vec::new(),
                ..t
            },
        }
    }

    /// The grace of every run in which a VM ignores `stop`.
    fn extra_time(&self, template: &RunConfig) -> Duration {
        if !self.vms.iter().any(|v| ignores_stop(v.misbehave)) {
            return Duration::ZERO;
        }
        template.grace * self.runs.iter().filter(|r| r.alone.is_none()).count() as u32
    }

    // A hostile VM's failures are expected: they are reported, and only its own figures are
    // left out.
    fn report_run(&self, label: &str, report: &RunReport) {
        for f in &report.failures {
            eprintln!("  {label}: {f}");
        }
    }
}

/// The whole multi-VM experiment.
pub type VmPlan = PairedPlan<VmGroup>;

impl PairedPlan<VmGroup> {
    /// The plan of `spec` on top of `template` (whose VMs, pCPUs and policy are replaced).
    pub fn new(spec: &VmPlanSpec, template: RunConfig, seed: u64) -> Self {
        let groups = spec
            .groups
            .iter()
            .map(|vms| {
                let mut runs: Vec<VmPlanned> = spec
                    .policies
                    .iter()
                    .map(|&policy| VmPlanned {
                        policy,
                        alone: None,
                    })
                    .collect();
                if spec.one_vm_references {
                    for k in 0..vms.len() {
                        for policy in [PolicyKind::Baseline, PolicyKind::Ecs] {
                            runs.push(VmPlanned {
                                policy,
                                alone: Some(k),
                            });
                        }
                    }
                }
                VmGroup {
                    vms: vms.clone(),
                    runs,
                }
            })
            .collect();
        let mut template = template;
        template.pcpus = spec.pcpus;
        template.duration = Duration::try_from_secs_f64(spec.secs).unwrap_or(template.duration);
        if let Some(g) = spec.grace {
            template.grace = g;
        }
        PairedPlan {
            groups,
            rounds: spec.rounds,
            seed,
            template,
        }
    }
}

/// Whether a VM acting out `m` ignores `stop` (it is force-stopped after the grace).
fn ignores_stop(m: Misbehave) -> bool {
    !matches!(
        m,
        Misbehave::None | Misbehave::GarbageHypercalls | Misbehave::Fault
    )
}

/// One executed run of a multi-VM `compare`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VmRoundRun {
    /// Round (0-based).
    pub round: u32,
    /// Its position in the round's order.
    pub position: usize,
    /// Its group.
    pub group: usize,
    /// `None`: the group's VMs together; `Some(k)`: VM k's workload alone.
    pub alone: Option<usize>,
    /// The run.
    #[serde(flatten)]
    pub report: RunReport,
}

impl VmRoundRun {
    /// The record of `run`, an executed run of `plan`.
    pub fn new(plan: &VmPlan, run: Executed) -> Self {
        VmRoundRun {
            round: run.round,
            position: run.position,
            group: run.group,
            alone: plan.groups[run.group].runs[run.index].alone,
            report: run.report,
        }
    }
}

/// One line of the summary: a VM of a group under a policy, over every round.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VmSummaryRow {
    /// The group's index.
    pub group: usize,
    /// The group's name.
    pub group_name: String,
    /// The VM's index in the group.
    pub vm: usize,
    /// The VM's spec.
    pub spec: String,
    /// Policy.
    pub policy: PolicyKind,
    /// Rounds run.
    pub rounds: usize,
    /// Rounds in which this VM failed its checks (left out of its figures).
    pub failed: usize,
    /// Its operations per second.
    pub ops_per_sec: Option<Estimate>,
    /// Its work over the same VM's under `baseline` in the same round.
    pub work_x_base: Option<Estimate>,
    /// Its threads' CPU time over the same VM's under `baseline` in the same round.
    pub cpu_x_base: Option<Estimate>,
    /// Its work over the same VM's under `ple` in the same round.
    pub work_x_ple: Option<Estimate>,
    /// Its share of the pCPU time (the scheduler's accounting).
    pub pcpu_share: Option<Estimate>,
    /// Its pCPU share over its fair share.
    pub of_fair_share: Option<Estimate>,
    /// Its workload alone at the group's total vCPUs: `ecs` over `baseline` in the same
    /// round (only with one-VM references).
    pub one_vm_ecs_x_base: Option<Estimate>,
}

/// The summary of every (group, policy, VM) of `plan` over `runs`.
pub fn summarize(plan: &VmPlan, runs: &[VmRoundRun]) -> Vec<VmSummaryRow> {
    let find = |round: u32, g: usize, policy: PolicyKind, alone: Option<usize>| {
        runs.iter().find(|r| {
            r.round == round && r.group == g && r.alone == alone && r.report.policy == policy
        })
    };
    // VM k's figures in a run, if it passed.
    let vm_of = |r: &VmRoundRun, k: usize| {
        r.report
            .vms
            .get(k)
            .filter(|v| v.failures.is_empty())
            .cloned()
    };
    let mut rows = Vec::new();
    for (g, group) in plan.groups.iter().enumerate() {
        let policies: Vec<PolicyKind> = group
            .runs
            .iter()
            .filter(|p| p.alone.is_none())
            .map(|p| p.policy)
            .collect();
        for (k, spec) in group.vms.iter().enumerate() {
            let mut one_vm = Vec::new();
            for round in 0..plan.rounds {
                let alone = |p| find(round, g, p, Some(k)).filter(|r| r.report.ok());
                if let (Some(e), Some(b)) = (alone(PolicyKind::Ecs), alone(PolicyKind::Baseline))
                    && b.report.ops_per_sec > 0.0
                {
                    one_vm.push(e.report.ops_per_sec / b.report.ops_per_sec);
                }
            }
            for &policy in &policies {
                let (mut ran, mut failed) = (0, 0);
                let mut ops = Vec::new();
                let (mut wx, mut cx, mut px) = (Vec::new(), Vec::new(), Vec::new());
                let (mut share, mut fair) = (Vec::new(), Vec::new());
                for round in 0..plan.rounds {
                    let Some(r) = find(round, g, policy, None) else {
                        continue;
                    };
                    ran += 1;
                    let Some(v) = vm_of(r, k) else {
                        failed += 1;
                        continue;
                    };
                    ops.push(v.ops_per_sec);
                    share.push(v.pcpu_share);
                    fair.push(v.of_fair_share);
                    let other = |p| find(round, g, p, None).and_then(|o| vm_of(o, k));
                    if let Some(b) = other(PolicyKind::Baseline) {
                        if b.ops_per_sec > 0.0 {
                            wx.push(v.ops_per_sec / b.ops_per_sec);
                        }
                        if b.total.cpu_ns > 0 {
                            cx.push(v.total.cpu_ns as f64 / b.total.cpu_ns as f64);
                        }
                    }
                    if let Some(p) = other(PolicyKind::Ple)
                        && p.ops_per_sec > 0.0
                    {
                        px.push(v.ops_per_sec / p.ops_per_sec);
                    }
                }
                rows.push(VmSummaryRow {
                    group: g,
                    group_name: group.name(),
                    vm: k,
                    spec: spec.spec(),
                    policy,
                    rounds: ran,
                    failed,
                    ops_per_sec: Estimate::of(&ops),
                    work_x_base: Estimate::of(&wx),
                    cpu_x_base: Estimate::of(&cx),
                    work_x_ple: Estimate::of(&px),
                    pcpu_share: Estimate::of(&share),
                    of_fair_share: Estimate::of(&fair),
                    one_vm_ecs_x_base: Estimate::of(&one_vm),
                });
            }
        }
    }
    rows
}

fn est(e: Option<Estimate>, prec: usize) -> String {
    match e {
        None => "n/a".to_owned(),
        Some(e) => match e.interval {
            Some(i) => format!("{:.prec$} [{:.prec$}, {:.prec$}]", e.median, i.lo, i.hi),
            None => format!("{:.prec$}", e.median),
        },
    }
}

/// The summary as a table, one block per group.
pub fn table(rows: &[VmSummaryRow], pcpus: u32) -> String {
    let mut s = String::new();
    let mut group = usize::MAX;
    for r in rows {
        if r.group != group {
            group = r.group;
            let _ = writeln!(s, "\n{} on {pcpus} pCPUs", r.group_name);
            let _ = writeln!(
                s,
                "  {:<26} {:<8} {:>22} {:>22} {:>22} {:>22} {:>22} {:>22}  failed",
                "vm",
                "policy",
                "ops/s",
                "work x-base",
                "cpu x-base",
                "work x-ple",
                "of fair share",
                "1-VM ecs x-base"
            );
        }
        let _ = writeln!(
            s,
            "  {:<26} {:<8} {:>22} {:>22} {:>22} {:>22} {:>22} {:>22}  {}/{}",
            format!("{}: {}", r.vm, r.spec),
            r.policy.name(),
            est(r.ops_per_sec, 0),
            est(r.work_x_base, 2),
            est(r.cpu_x_base, 2),
            est(r.work_x_ple, 2),
            est(r.of_fair_share, 2),
            est(r.one_vm_ecs_x_base, 2),
            r.failed,
            r.rounds
        );
    }
    let _ = writeln!(s, "\n{METHOD}");
    s
}

/// The figures' targets, one line per group and VM under `ecs`: what the issue asks and
/// whether the medians meet it (intervals in the table).
pub fn target_lines(plan: &VmPlan, rows: &[VmSummaryRow]) -> String {
    let mut s = String::new();
    let m = |e: Option<Estimate>| e.map(|e| e.median);
    for r in rows.iter().filter(|r| r.policy == PolicyKind::Ecs) {
        let group = &plan.groups[r.group];
        let me = group.vms[r.vm];
        let hostile = group.vms.iter().any(|v| v.misbehave != Misbehave::None);
        let with_hog = group.vms.iter().any(|v| v.workload == Lock(LockKind::Hog));
        let line = if hostile {
            if me.misbehave != Misbehave::None {
                continue;
            }
            let ok = m(r.of_fair_share).is_some_and(|x| x >= 0.9);
            format!(
                "{}: {} keeps >= 90 % of its fair share: {}",
                r.group_name,
                r.spec,
                verdict(ok, m(r.of_fair_share))
            )
        } else if me.workload == Lock(LockKind::Hog) {
            let ok = m(r.work_x_base).is_some_and(|x| x >= 0.95)
                && m(r.cpu_x_base).is_some_and(|x| x >= 0.95);
            format!(
                "{}: the hog keeps >= 95 % of its baseline work and CPU time: work {}, cpu {}",
                r.group_name,
                verdict(ok, m(r.work_x_base)),
                est(r.cpu_x_base, 2)
            )
        } else if with_hog {
            let ok = m(r.work_x_base).is_some_and(|x| x >= 1.5);
            format!(
                "{}: {} under ecs >= 1.5x its baseline work: {}",
                r.group_name,
                r.spec,
                verdict(ok, m(r.work_x_base))
            )
        } else {
            let ok = match (m(r.work_x_base), m(r.one_vm_ecs_x_base), m(r.work_x_ple)) {
                (Some(x), Some(one), Some(p)) => x >= one && p >= 1.0,
                _ => false,
            };
            format!(
                "{}: {} ecs x-base {} >= its one-VM ratio {} and ahead of ple (x-ple {}): {}",
                r.group_name,
                r.spec,
                est(r.work_x_base, 2),
                est(r.one_vm_ecs_x_base, 2),
                est(r.work_x_ple, 2),
                if ok { "met" } else { "NOT met" }
            )
        };
        let _ = writeln!(s, "{line}");
    }
    s
}

fn verdict(ok: bool, median: Option<f64>) -> String {
    match median {
        None => "n/a".to_owned(),
        Some(m) => format!("{m:.2}, {}", if ok { "met" } else { "NOT met" }),
    }
}

/// The chart of a multi-VM `compare`: per VM (a block per workload, a group per VM set),
/// each policy's work over the same VM's under `baseline` in the same round as the bar (with
/// its interval), its threads' CPU time ratio as the dot.
pub fn chart(plan: &VmPlan, rows: &[VmSummaryRow]) -> crate::chart::Chart {
    use crate::chart::{Bar, Chart};
    let pcpus = plan.template.pcpus;
    let key = |r: &VmSummaryRow| {
        let vm = plan.groups[r.group].vms[r.vm];
        (vm.workload, vm.vcpus, pcpus, r.group as u32)
    };
    let bars = rows
        .iter()
        .map(|r| {
            let (lock, vcpus, pcpus, group) = key(r);
            Bar {
                lock,
                vcpus,
                pcpus,
                cs_iters: group,
                policy: Some(r.policy),
                hints_off: false,
                value: r.work_x_base.map(|e| e.median),
                interval: r.work_x_base.and_then(|e| e.interval.map(|i| (i.lo, i.hi))),
                dot: r.cpu_x_base.map(|e| e.median),
                failed: r.rounds > 0 && r.failed == r.rounds,
            }
        })
        .collect();
    let mut sub_labels = Vec::new();
    for r in rows {
        let others: Vec<String> = plan.groups[r.group]
            .vms
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != r.vm)
            .map(|(_, v)| v.spec())
            .collect();
        let me = plan.groups[r.group].vms[r.vm];
        let text = format!("{} beside {}", me.spec(), others.join(" + "));
        if !sub_labels.iter().any(|(k, _)| *k == key(r)) {
            sub_labels.push((key(r), text));
        }
    }
    Chart {
        title: "Several VMs on one host: each VM's work over its own under baseline (same round)"
            .to_owned(),
        y_label: "work x baseline (same VM, same round)".to_owned(),
        reference: (1.0, "baseline".to_owned()),
        dot_label: Some("CPU time x baseline".to_owned()),
        note: METHOD.to_owned(),
        group_notes: Vec::new(),
        sub_labels,
        bars,
    }
}

/// The plan in words, for `--dry-run`.
pub fn describe(plan: &VmPlan, preset: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "compare (several VMs) {preset}: {} groups, {} rounds of {:.1} s runs on {} pCPUs, {} runs, about {} (seed {})",
        plan.groups.len(),
        plan.rounds,
        plan.template.duration.as_secs_f64(),
        plan.template.pcpus,
        plan.total_runs(),
        mmss(plan.estimate(RUN_OVERHEAD)),
        plan.seed
    );
    for g in &plan.groups {
        let runs: Vec<String> = g
            .runs
            .iter()
            .map(|p| match p.alone {
                None => p.policy.name().to_owned(),
                Some(k) => format!(
                    "{} alone at {} {}",
                    g.vms[k].workload,
                    g.total_vcpus(),
                    p.policy
                ),
            })
            .collect();
        let _ = writeln!(s, "  {}: {}", g.name(), runs.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VmConfig;
    use crate::run::VmReport;
    use crate::sched::VcpuStats;

    fn vm(k: u32, spec: &str, ops_per_sec: f64, cpu_ns: u64, failed: bool) -> VmReport {
        VmReport {
            vm: k,
            spec: spec.to_owned(),
            workload: Lock(LockKind::Spin),
            vcpus: 2,
            weight: 1,
            misbehave: "none",
            first_vcpu: 2 * k,
            ops_per_sec,
            ops_per_cpu_sec: ops_per_sec,
            total: VcpuStats {
                cpu_ns,
                ..VcpuStats::default()
            },
            pcpu_ns: 500,
            pcpu_share: 0.5,
            fair_share: 0.5,
            of_fair_share: 1.0,
            jain: None,
            counter: None,
            stopped_at_secs: None,
            failures: if failed {
                vec!["VM x: bad".into()]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn each_vm_is_paired_with_itself_under_baseline_in_the_same_round() {
        let spec = VmPlanSpec {
            groups: vec![vec![
                VmConfig::new(2, LockKind::Spin),
                VmConfig::new(2, LockKind::Hog),
            ]],
            pcpus: 2,
            policies: vec![PolicyKind::Baseline, PolicyKind::Ple, PolicyKind::Ecs],
            one_vm_references: false,
            rounds: 6,
            secs: 1.0,
            grace: None,
        };
        let t = RunConfig::new(2, 2, LockKind::Spin, PolicyKind::Baseline);
        let plan = VmPlan::new(&spec, t, 3);
        let mut runs = Vec::new();
        for round in 0..6u32 {
            let r = f64::from(round);
            for (policy, lock_ops, hog_ops, hog_cpu) in [
                (PolicyKind::Baseline, 100.0 + r, 200.0, 2000),
                (PolicyKind::Ple, 120.0, 200.0, 2000),
                (PolicyKind::Ecs, 2.0 * (100.0 + r), 190.0, 1900),
            ] {
                let mut report = crate::compare::tests::report(4, policy, lock_ops + hog_ops);
                // Round 2: the lock VM fails under ecs (its neighbour's figures still count).
                let failed = round == 2 && policy == PolicyKind::Ecs;
                report.vms = vec![
                    vm(0, "2:spin", lock_ops, 1000, failed),
                    vm(1, "2:hog", hog_ops, hog_cpu, false),
                ];
                runs.push(VmRoundRun {
                    round,
                    position: 0,
                    group: 0,
                    alone: None,
                    report,
                });
            }
        }
        let rows = summarize(&plan, &runs);
        assert_eq!(rows.len(), 6);
        let row = |k: usize, p| rows.iter().find(|r| r.vm == k && r.policy == p).unwrap();
        let lock_ecs = row(0, PolicyKind::Ecs);
        assert_eq!((lock_ecs.rounds, lock_ecs.failed), (6, 1));
        let x = lock_ecs.work_x_base.unwrap();
        assert_eq!((x.n, x.median), (5, 2.0), "paired round by round");
        assert_eq!(lock_ecs.cpu_x_base.unwrap().median, 1.0);
        let hog_ecs = row(1, PolicyKind::Ecs);
        assert_eq!(hog_ecs.work_x_base.unwrap().n, 6);
        assert!((hog_ecs.cpu_x_base.unwrap().median - 0.95).abs() < 1e-12);
        assert!(
            hog_ecs.work_x_base.unwrap().interval.is_some(),
            "6 rounds: an interval"
        );
        assert_eq!(
            row(0, PolicyKind::Baseline).work_x_base.unwrap().median,
            1.0
        );
        let lines = target_lines(&plan, &rows);
        assert!(
            lines.contains("2:spin under ecs >= 1.5x its baseline work: 2.00, met"),
            "{lines}"
        );
        assert!(
            lines.contains("hog keeps >= 95 % of its baseline work and CPU time: work 0.95, met"),
            "{lines}"
        );
        let c = chart(&plan, &rows);
        assert_eq!(c.bars.len(), 6);
        assert!(c.sub_labels.iter().any(|(_, t)| t == "2:hog beside 2:spin"));
    }

    fn plan(p: VmPreset) -> VmPlan {
        let t = RunConfig::new(2, 2, LockKind::Spin, PolicyKind::Baseline);
        VmPlan::new(&p.spec(), t, 7)
    }

    #[test]
    fn presets_parse_and_plan() {
        for p in VmPreset::ALL {
            assert_eq!(p.name().parse::<VmPreset>(), Ok(p));
            let plan = plan(p);
            for g in 0..plan.groups.len() {
                for i in 0..plan.groups[g].runs.len() {
                    assert_eq!(plan.config(g, i).validate(), Ok(()), "{p} {g} {i}");
                }
            }
        }
        assert!("nope".parse::<VmPreset>().is_err());
        let lh = plan(VmPreset::LockHog);
        assert_eq!(lh.total_runs(), 3 * 3 * 6);
        let c = lh.config(0, 2);
        assert_eq!((c.vcpus, c.pcpus, c.policy), (16, 2, PolicyKind::Ecs));
        assert_eq!(
            c.vms,
            vec![
                VmConfig::new(8, LockKind::Spin),
                VmConfig::new(8, LockKind::Hog)
            ]
        );
        let two = plan(VmPreset::TwoLocks);
        assert_eq!(two.groups[0].runs.len(), 3 + 4);
        let alone = two.config(1, 5);
        assert_eq!(
            (alone.vcpus, alone.lock, alone.vms.len()),
            (16, Lock(LockKind::Rcu), 0)
        );
        let hostile = plan(VmPreset::Hostile);
        assert_eq!(hostile.groups.len(), 6);
        assert_eq!(hostile.template.grace, Duration::from_millis(500));
        // 108 runs of 0.5 s + 50 ms, and 5 of the 6 groups wait out a 0.5 s grace.
        assert_eq!(
            hostile.estimate(Duration::from_millis(50)),
            Duration::from_millis(108 * 550 + 5 * 3 * 6 * 500)
        );
    }
}
