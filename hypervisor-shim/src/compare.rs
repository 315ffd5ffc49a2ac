//! `compare` as paired, shuffled rounds (the experiment of issue 8).
//!
//! A plan is a list of *groups*: the runs that are compared with each other, one lock kind (and
//! critical-section length) on one pCPU count. A group holds every (vCPU count, policy) asked
//! for plus the *ceiling*: the same workload without over-commit (as many vCPUs as pCPUs,
//! `baseline`), the physical limit of an over-committed run. Each round runs every group once,
//! the groups in a random order and each group's runs in a random order (the seed is printed
//! and accepted back), so slow drifts of a shared host hit every policy alike. Shares of the
//! ceiling and ratios between policies are computed inside a round, then summarised over the
//! rounds as medians with a distribution-free 95 % interval ([`crate::stats`]).

use crate::config::{Lock, PolicyKind, RunConfig};
use crate::rounds::{Estimate, Executed, PairedPlan, RUN_OVERHEAD, RoundGroup, mmss};
use crate::run::RunReport;
use crate::stats::median;
use crate::workload::LockKind;
use core::fmt;
use core::str::FromStr;

/// A named set of `compare` parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// The README's main command: every lock kind, 2, 8 and 16 vCPUs on 2 pCPUs, baseline,
    /// ple and ecs, 6 rounds of 1 s runs.
    Default,
    /// A first look: four lock kinds at 8 on 2, 3 rounds of 0.5 s runs (no intervals).
    Quick,
    /// Every policy, `ecs-ple` included, on every lock kind at 8 on 2.
    Ablations,
    /// Under-commit (2 on 2) over critical sections of about 0.25, 2.5, 25 and 250 us on the
    /// blocking `Mutex`, `FairMutex` (hand-off) and a `Condvar` ping-pong.
    UnderCommit,
    /// The CI smoke test: every lock kind at 8 on 2, 2 rounds of 0.2 s runs.
    Smoke,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 5] = [
        Preset::Default,
        Preset::Quick,
        Preset::Ablations,
        Preset::UnderCommit,
        Preset::Smoke,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::Quick => "quick",
            Preset::Ablations => "ablations",
            Preset::UnderCommit => "under-commit",
            Preset::Smoke => "smoke",
        }
    }

    /// The preset's parameters.
    pub fn spec(self) -> PlanSpec {
        // The over-commit experiment's lock kinds (the sweep's blocking kinds are apart).
        let all: Vec<Lock> = [
            LockKind::Spin,
            LockKind::Ticket,
            LockKind::Mcs,
            LockKind::SpinRw,
            LockKind::Mutex,
            LockKind::RwLock,
            LockKind::Rcu,
        ]
        .into_iter()
        .map(Lock)
        .collect();
        let three = vec![PolicyKind::Baseline, PolicyKind::Ple, PolicyKind::Ecs];
        let base = PlanSpec {
            vcpus: vec![2, 8, 16],
            pcpus: 2,
            locks: all.clone(),
            policies: three.clone(),
            cs_iters: vec![crate::config::DEFAULT_CS_ITERS],
            rounds: 6,
            secs: 1.0,
            hint_ablation: false,
        };
        match self {
            Preset::Default => base,
            Preset::Quick => PlanSpec {
                vcpus: vec![8],
                locks: [
                    LockKind::Spin,
                    LockKind::Mcs,
                    LockKind::Mutex,
                    LockKind::Rcu,
                ]
                .into_iter()
                .map(Lock)
                .collect(),
                rounds: 3,
                secs: 0.5,
                ..base
            },
            Preset::Ablations => PlanSpec {
                vcpus: vec![8],
                policies: PolicyKind::ALL.to_vec(),
                hint_ablation: true,
                ..base
            },
            Preset::UnderCommit => PlanSpec {
                vcpus: vec![2],
                locks: vec![
                    Lock(LockKind::Mutex),
                    Lock(LockKind::FairMutex),
                    Lock(LockKind::Condvar),
                ],
                cs_iters: UNDER_COMMIT_CS_ITERS.to_vec(),
                ..base
            },
            Preset::Smoke => PlanSpec {
                vcpus: vec![8],
                rounds: 2,
                secs: 0.2,
                ..base
            },
        }
    }
}

/// The critical-section lengths of the under-commit sweep, in guest loop iterations: the
/// default 100 (well under a microsecond, about 0.25 us) times 1, 10, 100 and 1000. The think
/// time is kept at four times the section ([`THINK_PER_CS`]) so that the share of time inside
/// the lock is the same at every point. Frozen before measuring; not tuned per point.
pub const UNDER_COMMIT_CS_ITERS: [u32; 4] = [100, 1_000, 10_000, 100_000];

/// Think time per unit of critical section at every point of a critical-section sweep (the
/// default workload's ratio, 400 / 100).
pub const THINK_PER_CS: u32 = 4;

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!("unknown preset {s:?} (default, quick, ablations, under-commit, smoke)")
            })
    }
}

/// What a `compare` runs (a preset's values, overridden by flags).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSpec {
    /// vCPU counts.
    pub vcpus: Vec<u32>,
    /// pCPUs.
    pub pcpus: u32,
    /// Lock kinds.
    pub locks: Vec<Lock>,
    /// Policies.
    pub policies: Vec<PolicyKind>,
    /// Critical-section lengths (guest loop iterations); more than one makes a sweep, where
    /// the think time follows ([`THINK_PER_CS`]).
    pub cs_iters: Vec<u32>,
    /// Rounds.
    pub rounds: u32,
    /// Seconds per run.
    pub secs: f64,
    /// Also run every hint-publishing policy with `--guest-hints off` (the ablation of the
    /// guest's use of the hints).
    pub hint_ablation: bool,
}

/// One run of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    /// vCPUs.
    pub vcpus: u32,
    /// Policy.
    pub policy: PolicyKind,
    /// Whether this is the group's ceiling (vCPUs = pCPUs, `baseline`).
    pub ceiling: bool,
    /// Whether the host publishes its hints to the guest (`--guest-hints`).
    pub guest_hints: bool,
}

/// The runs compared with each other inside a round.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Lock kind.
    pub lock: Lock,
    /// Critical-section work.
    pub cs_iters: u32,
    /// Think time.
    pub think_iters: u32,
    /// The runs, the ceiling first.
    pub runs: Vec<Planned>,
}

impl RoundGroup for Group {
    fn len(&self) -> usize {
        self.runs.len()
    }

    fn config(&self, i: usize, template: &RunConfig) -> RunConfig {
        let p = self.runs[i];
        RunConfig {
            vcpus: p.vcpus,
            lock: self.lock,
            policy: p.policy,
            cs_iters: self.cs_iters,
            think_iters: self.think_iters,
            guest_hints: p.guest_hints,
            ..template.clone()
        }
    }

    fn label_suffix(&self, i: usize) -> &'static str {
        if self.runs[i].ceiling {
            " (ceiling)"
        } else {
            ""
        }
    }

    fn report_run(&self, label: &str, report: &RunReport) {
        eprintln!(
            "  {:.0} ops/s, {} preemptions ({} in CS){}",
            report.ops_per_sec,
            report.total.preemptions,
            report.total.preemptions_in_cs,
            if report.ok() { "" } else { ", FAILED" }
        );
        for f in &report.failures {
            eprintln!("  {label}: FAILED: {f}");
        }
    }
}

/// The whole experiment: groups of one VM each.
pub type Plan = PairedPlan<Group>;

impl PairedPlan<Group> {
    /// The plan of `spec` on top of `template` (whose vCPUs, lock and policy are replaced).
    pub fn new(spec: &PlanSpec, template: RunConfig, seed: u64) -> Self {
        let sweep = spec.cs_iters.len() > 1;
        let mut groups = Vec::new();
        for &lock in &spec.locks {
            for &cs in &spec.cs_iters {
                let mut runs = vec![Planned {
                    vcpus: spec.pcpus,
                    policy: PolicyKind::Baseline,
                    ceiling: true,
                    guest_hints: true,
                }];
                for &vcpus in &spec.vcpus {
                    for &policy in &spec.policies {
                        let off = spec.hint_ablation && policy.hints();
                        for guest_hints in [true, false].into_iter().take(1 + usize::from(off)) {
                            runs.push(Planned {
                                vcpus,
                                policy,
                                ceiling: false,
                                guest_hints,
                            });
                        }
                    }
                }
                groups.push(Group {
                    lock,
                    cs_iters: cs,
                    think_iters: if sweep {
                        cs.saturating_mul(THINK_PER_CS)
                    } else {
                        template.think_iters
                    },
                    runs,
                });
            }
        }
        let mut template = template;
        template.pcpus = spec.pcpus;
        Plan {
            groups,
            rounds: spec.rounds,
            seed,
            template,
        }
    }
}

/// One executed run, with where it sat in the experiment.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RoundRun {
    /// Round (0-based).
    pub round: u32,
    /// Its position in the round's execution order (0-based).
    pub position: usize,
    /// Its group (index into the plan's groups).
    pub group: usize,
    /// Whether it is the group's ceiling.
    pub ceiling: bool,
    /// The run.
    #[serde(flatten)]
    pub report: RunReport,
}

impl RoundRun {
    /// The record of `run`, an executed run of `plan`.
    pub fn new(plan: &Plan, run: Executed) -> Self {
        RoundRun {
            round: run.round,
            position: run.position,
            group: run.group,
            ceiling: plan.groups[run.group].runs[run.index].ceiling,
            report: run.report,
        }
    }
}

/// One line of the summary: a (group, vCPU count, policy) over every round.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SummaryRow {
    /// Lock kind.
    pub lock: Lock,
    /// Critical-section work.
    pub cs_iters: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// pCPUs.
    pub pcpus: u32,
    /// Policy.
    pub policy: PolicyKind,
    /// Whether this is the ceiling.
    pub ceiling: bool,
    /// Whether the host published its hints to the guest.
    #[serde(default = "yes")]
    pub guest_hints: bool,
    /// Rounds run.
    pub rounds: usize,
    /// Rounds whose run failed its checks (left out of every figure).
    pub failed: usize,
    /// Operations per second.
    pub ops_per_sec: Option<Estimate>,
    /// Operations per second over the same round's ceiling's.
    pub share_of_ceiling: Option<Estimate>,
    /// Operations per second over the same round's `baseline` at the same vCPU count.
    pub ratio_to_baseline: Option<Estimate>,
    /// Operations per second over the same round's `ple` at the same vCPU count.
    pub ratio_to_ple: Option<Estimate>,
    /// Preemptions inside critical sections (median).
    pub preemptions_in_cs: Option<f64>,
    /// Halts (median).
    pub halts: Option<f64>,
    /// Halts per 100 operations (median): how often a waiter blocked (the under-commit
    /// target applies where `baseline` halts at least once per 100 operations).
    #[serde(default)]
    pub halts_per_100_ops: Option<f64>,
    /// Host-level deschedulings of a pCPU holder (median; not the shim's decisions).
    #[serde(default)]
    pub host_deschedules: Option<f64>,
    /// Of those, inside a critical section (median).
    #[serde(default)]
    pub host_deschedules_in_cs: Option<f64>,
    /// Steal: time holding a pCPU without a host CPU, percent of the pCPU time (median).
    #[serde(default)]
    pub steal_pct: Option<f64>,
    /// Wake-up latency (kick to resume), median over rounds of each run's p50, us.
    #[serde(default)]
    pub wake_p50_us: Option<f64>,
    /// The same for each run's p99, us.
    #[serde(default)]
    pub wake_p99_us: Option<f64>,
    /// Jain's index of the per-vCPU operations.
    pub jain: Option<Estimate>,
    /// The fewest operations of one vCPU (median over rounds).
    pub ops_min: Option<f64>,
    /// The most operations of one vCPU (median over rounds).
    pub ops_max: Option<f64>,
}

fn yes() -> bool {
    true
}

impl SummaryRow {
    /// The row's series name: the policy (`, hints off` for the ablation) or `ceiling`.
    pub fn label(&self) -> String {
        match (self.ceiling, self.guest_hints) {
            (true, _) => "ceiling".to_owned(),
            (false, true) => self.policy.name().to_owned(),
            (false, false) => format!("{} -hints", self.policy.name()),
        }
    }

    /// Whether a barging lock (spin, mcs, spin-rw, mutex, rwlock: no hand-off order) let
    /// vCPUs starve: median Jain's index below 0.9.
    pub fn unfair(&self) -> bool {
        let barging = matches!(
            self.lock.0,
            LockKind::Spin | LockKind::Mcs | LockKind::SpinRw | LockKind::Mutex | LockKind::RwLock
        );
        barging && self.jain.is_some_and(|j| j.median < 0.9)
    }
}

/// One (group, run)'s figures, one value per passing round.
#[derive(Default)]
struct PerRound {
    ops: Vec<f64>,
    share: Vec<f64>,
    x_base: Vec<f64>,
    x_ple: Vec<f64>,
    in_cs: Vec<f64>,
    halts: Vec<f64>,
    halt_rate: Vec<f64>,
    jain: Vec<f64>,
    ops_min: Vec<f64>,
    ops_max: Vec<f64>,
    h_desch: Vec<f64>,
    h_desch_cs: Vec<f64>,
    steal: Vec<f64>,
    wake50: Vec<f64>,
    wake99: Vec<f64>,
}

/// The summary of every (group, run) of `plan` over `runs`, in plan order.
pub fn summarize(plan: &Plan, runs: &[RoundRun]) -> Vec<SummaryRow> {
    // The run of `p` in group `g` of `round`; `find`: the same if it passed.
    let run_of = |round: u32, g: usize, p: Planned| {
        runs.iter().find(|r| {
            r.round == round
                && r.group == g
                && r.ceiling == p.ceiling
                && r.report.vcpus == p.vcpus
                && r.report.policy == p.policy
                && r.report.guest_hints == p.guest_hints
        })
    };
    let find = |round, g, p| run_of(round, g, p).filter(|r| r.report.ok());
    let mut rows = Vec::new();
    for (g, group) in plan.groups.iter().enumerate() {
        let ceiling = group.runs[0];
        for &p in &group.runs {
            let same = |policy| Planned {
                vcpus: p.vcpus,
                policy,
                ceiling: false,
                guest_hints: true,
            };
            let mut v = PerRound::default();
            let (mut ran, mut failed) = (0, 0);
            for round in 0..plan.rounds {
                let Some(mine) = run_of(round, g, p) else {
                    continue;
                };
                ran += 1;
                if !mine.report.ok() {
                    failed += 1;
                    continue;
                }
                let r = &mine.report;
                let ratio = |other: Option<&RoundRun>| {
                    other
                        .map(|o| o.report.ops_per_sec)
                        .filter(|&o| o > 0.0)
                        .map(|o| r.ops_per_sec / o)
                };
                v.ops.push(r.ops_per_sec);
                v.share.extend(ratio(find(round, g, ceiling)));
                if !p.ceiling {
                    v.x_base
                        .extend(ratio(find(round, g, same(PolicyKind::Baseline))));
                    if p.policy != PolicyKind::Ple || !p.guest_hints {
                        v.x_ple.extend(ratio(find(round, g, same(PolicyKind::Ple))));
                    }
                }
                v.in_cs.push(r.total.preemptions_in_cs as f64);
                v.halts.push(r.total.halts as f64);
                if r.total.ops > 0 {
                    v.halt_rate
                        .push(100.0 * r.total.halts as f64 / r.total.ops as f64);
                }
                v.jain.extend(r.jain);
                v.ops_min.push(r.ops_min as f64);
                v.ops_max.push(r.ops_max as f64);
                v.h_desch.push(r.total.host_deschedules as f64);
                v.h_desch_cs.push(r.total.host_deschedules_in_cs as f64);
                v.steal.extend(crate::report::steal_pct(&r.total));
                v.wake50.extend(r.wakeup.map(|w| w.p50_us));
                v.wake99.extend(r.wakeup.map(|w| w.p99_us));
            }
            rows.push(SummaryRow {
                lock: group.lock,
                cs_iters: group.cs_iters,
                vcpus: p.vcpus,
                pcpus: plan.template.pcpus,
                policy: p.policy,
                ceiling: p.ceiling,
                guest_hints: p.guest_hints,
                rounds: ran,
                failed,
                ops_per_sec: Estimate::of(&v.ops),
                share_of_ceiling: Estimate::of(&v.share),
                ratio_to_baseline: Estimate::of(&v.x_base),
                ratio_to_ple: Estimate::of(&v.x_ple),
                preemptions_in_cs: median(&v.in_cs),
                halts: median(&v.halts),
                halts_per_100_ops: median(&v.halt_rate),
                jain: Estimate::of(&v.jain),
                ops_min: median(&v.ops_min),
                ops_max: median(&v.ops_max),
                host_deschedules: median(&v.h_desch),
                host_deschedules_in_cs: median(&v.h_desch_cs),
                steal_pct: median(&v.steal),
                wake_p50_us: median(&v.wake50),
                wake_p99_us: median(&v.wake99),
            });
        }
    }
    rows
}

/// The plan in words: one line per group with its runs, then the totals and the estimate
/// (`compare --dry-run`).
pub fn describe(plan: &Plan, preset: Preset) -> String {
    let mut s = String::new();
    for g in &plan.groups {
        let runs: Vec<String> = g
            .runs
            .iter()
            .map(|p| match (p.ceiling, p.guest_hints) {
                (true, _) => format!("ceiling {} on {}", p.vcpus, plan.template.pcpus),
                (false, true) => format!("{} {}", p.vcpus, p.policy),
                (false, false) => format!("{} {} -hints", p.vcpus, p.policy),
            })
            .collect();
        s += &format!(
            "{} cs {} think {}: {}\n",
            g.lock,
            g.cs_iters,
            g.think_iters,
            runs.join(", ")
        );
    }
    let total = plan.total_runs();
    s += &format!(
        "preset {preset}: {} groups, {} runs per round, {} rounds = {total} runs of {:.1} s: \
         about {} (seed {})\n",
        plan.groups.len(),
        total / plan.rounds.max(1) as usize,
        plan.rounds,
        plan.template.duration.as_secs_f64(),
        mmss(plan.estimate(RUN_OVERHEAD)),
        plan.seed
    );
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sched::VcpuStats;

    /// A passing run's report with `ops_per_sec` (for the summaries' tests).
    pub(crate) fn report(vcpus: u32, policy: PolicyKind, ops_per_sec: f64) -> RunReport {
        RunReport {
            lock: Lock(LockKind::Spin),
            policy,
            vcpus,
            pcpus: 2,
            slice_ms: 4.0,
            cs_iters: 100,
            halt_poll: true,
            guest_hints: true,
            think_iters: 400,
            secs: 1.0,
            ops_per_sec,
            ops_per_cpu_sec: ops_per_sec,
            total: VcpuStats::default(),
            ops_min: 1,
            ops_max: 3,
            jain: Some(0.8),
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

    fn plan(rounds: u32) -> Plan {
        let spec = PlanSpec {
            vcpus: vec![8],
            pcpus: 2,
            locks: vec![Lock(LockKind::Spin)],
            policies: vec![PolicyKind::Baseline, PolicyKind::Ple, PolicyKind::Ecs],
            cs_iters: vec![100],
            rounds,
            secs: 1.0,
            hint_ablation: false,
        };
        let t = RunConfig::new(2, 2, LockKind::Spin, PolicyKind::Baseline);
        Plan::new(&spec, t, 1)
    }

    #[test]
    fn the_plan_holds_a_ceiling_per_group_and_every_run() {
        let p = plan(6);
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.groups[0].runs.len(), 4);
        assert!(p.groups[0].runs[0].ceiling && p.groups[0].runs[0].vcpus == 2);
        assert_eq!(p.total_runs(), 24);
        let c = p.config(0, 3);
        assert_eq!((c.vcpus, c.pcpus, c.policy), (8, 2, PolicyKind::Ecs));
        let sweep = Plan::new(
            &Preset::UnderCommit.spec(),
            RunConfig::new(2, 2, LockKind::Spin, PolicyKind::Baseline),
            1,
        );
        assert_eq!(sweep.groups.len(), 3 * 4);
        assert_eq!(sweep.groups[3].think_iters, 400_000);
        assert_eq!(
            Plan::new(
                &Preset::Default.spec(),
                RunConfig::new(2, 2, LockKind::Spin, PolicyKind::Baseline),
                1
            )
            .total_runs(),
            7 * 10 * 6
        );
        let abl = Plan::new(
            &Preset::Ablations.spec(),
            RunConfig::new(2, 2, LockKind::Spin, PolicyKind::Baseline),
            1,
        );
        // Ceiling, 4 policies with hints on, ecs and ecs-ple with hints off.
        assert_eq!(abl.groups[0].runs.len(), 1 + 4 + 2);
        assert!(!abl.config(0, 4).guest_hints && abl.config(0, 4).policy == PolicyKind::Ecs);
    }

    #[test]
    fn shares_and_ratios_are_paired_within_a_round() {
        let p = plan(6);
        let mut runs = Vec::new();
        for round in 0..6u32 {
            // Round-to-round drift of the host: every run of a round scaled alike.
            let k = 1.0 + f64::from(round);
            for (i, (vcpus, policy, ops, ceiling)) in [
                (2, PolicyKind::Baseline, 200.0, true),
                (8, PolicyKind::Baseline, 100.0, false),
                (8, PolicyKind::Ple, 150.0, false),
                (8, PolicyKind::Ecs, 190.0, false),
            ]
            .into_iter()
            .enumerate()
            {
                let mut r = report(vcpus, policy, ops * k);
                if round == 5 && policy == PolicyKind::Ple {
                    r.failures.push("x".into());
                }
                runs.push(RoundRun {
                    round,
                    position: i,
                    group: 0,
                    ceiling,
                    report: r,
                });
            }
        }
        let rows = summarize(&p, &runs);
        let ecs = &rows[3];
        assert_eq!(ecs.policy, PolicyKind::Ecs);
        let share = ecs.share_of_ceiling.unwrap();
        assert!(
            (share.median - 0.95).abs() < 1e-12,
            "drift cancels in pairs"
        );
        let i = share.interval.expect("6 rounds");
        assert!((i.lo - 0.95).abs() < 1e-12 && (i.hi - 0.95).abs() < 1e-12);
        assert!((ecs.ratio_to_baseline.unwrap().median - 1.9).abs() < 1e-12);
        let x_ple = ecs.ratio_to_ple.unwrap();
        assert_eq!(x_ple.n, 5, "the round whose ple run failed is left out");
        assert!(x_ple.interval.is_none(), "5 rounds: n/a");
        assert_eq!((rows[2].failed, rows[2].rounds), (1, 6));
        assert!(rows[0].ceiling && rows[0].ratio_to_baseline.is_none());
        assert!(ecs.unfair(), "spin with Jain 0.8 is flagged");
        let one = summarize(&plan(1), &runs[..4]);
        assert!(one[3].share_of_ceiling.unwrap().interval.is_none());
    }

    #[test]
    fn presets_parse() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>(), Ok(p));
        }
        assert!("fast".parse::<Preset>().is_err());
    }
}
