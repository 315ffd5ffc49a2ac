//! Paired, shuffled rounds, the machinery that one-VM and multi-VM comparisons share: a plan of
//! groups run once per round in a random order ([`PairedPlan`]), its length, the loop that
//! executes it with progress, the time left and the host's foreign CPU time per round
//! ([`PairedPlan::execute`]), and the median-with-interval estimates of the summaries.
//!
//! What a group is, and what its runs are compared with, is the comparison's own business
//! ([`crate::compare`] for one VM, [`crate::compare_vms`] for several).

use crate::config::{ConfigError, RunConfig, VmConfig};
use crate::host::{Host, cpu_use, sample};
use crate::run::RunReport;
use crate::stats::{Interval, median, median_interval};
use std::time::{Duration, Instant};

/// What a run costs beyond its duration (VM creation, guest boot, the stop): a few tens of
/// ms here (a 16-run smoke `compare` of 0.2 s runs took 3.5 s); the first estimate of a
/// `compare`'s length counts 50 ms.
pub const RUN_OVERHEAD: Duration = Duration::from_millis(50);

/// The confidence level of every interval.
pub const LEVEL: f64 = 0.95;

/// How the intervals are computed, in words (printed under the table, stored in the JSON).
pub const METHOD: &str = "medians over paired rounds; [lo, hi] is a distribution-free 95 % \
    interval of the median from order statistics (binomial: [x(k), x(n+1-k)] with the largest k \
    such that 2 P(Binomial(n, 1/2) <= k-1) <= 5 %; needs at least 6 rounds, n/a below)";

/// A median over rounds, with its interval.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    /// The median.
    pub median: f64,
    /// The 95 % interval of the median (`None`: too few rounds).
    pub interval: Option<Interval>,
    /// Rounds it is computed from.
    pub n: usize,
}

impl Estimate {
    /// The estimate of `xs` (`None` if empty).
    pub fn of(xs: &[f64]) -> Option<Self> {
        Some(Estimate {
            median: median(xs)?,
            interval: median_interval(xs, LEVEL),
            n: xs.len(),
        })
    }
}

/// The runs compared with each other inside a round: what a comparison's group must say.
pub trait RoundGroup {
    /// Runs in the group.
    fn len(&self) -> usize;

    /// Whether the group has no runs.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configuration of run `i`, on top of the plan's `template`.
    fn config(&self, i: usize, template: &RunConfig) -> RunConfig;

    /// What the progress line adds to the run's label (e.g. ` (ceiling)`).
    fn label_suffix(&self, _i: usize) -> &'static str {
        ""
    }

    /// Time one round of the group takes beyond its runs' durations and overheads (e.g. the
    /// grace of a VM that ignores `stop`).
    fn extra_time(&self, _template: &RunConfig) -> Duration {
        Duration::ZERO
    }

    /// Prints (on stderr) what the progress shows of a finished run.
    fn report_run(&self, label: &str, report: &RunReport);
}

/// A whole experiment of paired rounds.
#[derive(Clone, Debug)]
pub struct PairedPlan<G> {
    /// The groups.
    pub groups: Vec<G>,
    /// Rounds.
    pub rounds: u32,
    /// The seed of the orders.
    pub seed: u64,
    /// The configuration every run starts from (duration, slice, workload defaults).
    pub template: RunConfig,
}

/// One executed run, with where it sat in the experiment.
#[derive(Clone, Debug)]
pub struct Executed {
    /// Round (0-based).
    pub round: u32,
    /// Its position in the round's execution order (0-based).
    pub position: usize,
    /// Its group.
    pub group: usize,
    /// Its index in the group.
    pub index: usize,
    /// The run.
    pub report: RunReport,
}

/// What an executed plan produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The runs that produced a report, in execution order.
    pub runs: Vec<Executed>,
    /// The host, with its CPU use before and during every round.
    pub host: Host,
    /// Every warning printed (foreign CPU time over the threshold).
    pub warnings: Vec<String>,
}

impl<G: RoundGroup> PairedPlan<G> {
    /// Runs in the whole experiment.
    pub fn total_runs(&self) -> usize {
        self.groups.iter().map(G::len).sum::<usize>() * self.rounds as usize
    }

    /// The execution order of round `round`: (group, run) pairs.
    pub fn order(&self, round: u32) -> Vec<(usize, usize)> {
        let sizes: Vec<usize> = self.groups.iter().map(G::len).collect();
        crate::stats::round_order(&sizes, self.seed, round)
    }

    /// The configuration of run `i` of group `g`.
    pub fn config(&self, g: usize, i: usize) -> RunConfig {
        self.groups[g].config(i, &self.template)
    }

    /// Checks every run's configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (g, group) in self.groups.iter().enumerate() {
            for i in 0..group.len() {
                self.config(g, i).validate()?;
            }
        }
        Ok(())
    }

    /// A first estimate of the experiment's length: every run's duration plus `overhead` (VM
    /// creation and the stop), plus what the groups add per round.
    pub fn estimate(&self, overhead: Duration) -> Duration {
        let extra: Duration = self
            .groups
            .iter()
            .map(|g| g.extra_time(&self.template))
            .sum();
        (self.template.duration + overhead) * self.total_runs() as u32 + extra * self.rounds
    }

    /// Executes every round in its order, with a progress line per run on stderr (the time
    /// left, from the runs so far), and the host's CPU use before the first run and across
    /// each round. `exec` runs one configuration under its label: `Ok(None)` is a run that
    /// produced no report (it reported why; the experiment goes on), `Err` ends the
    /// experiment.
    pub fn execute<E>(
        &self,
        mut exec: impl FnMut(&RunConfig, &str) -> Result<Option<RunReport>, E>,
    ) -> Result<Outcome, E> {
        let mut host = Host::probe();
        let mut warnings: Vec<String> = host.look_before().into_iter().collect();
        for w in &warnings {
            eprintln!("ecs-shim: warning: {w}");
        }
        let total = self.total_runs();
        let guess = self.estimate(RUN_OVERHEAD);
        let started = Instant::now();
        let mut runs = Vec::new();
        let mut done = 0;
        for round in 0..self.rounds {
            let before = sample();
            for (position, (g, i)) in self.order(round).into_iter().enumerate() {
                let c = self.config(g, i);
                let l = format!("{}{}", run_label(&c), self.groups[g].label_suffix(i));
                let left = eta(started.elapsed(), done, total, guess);
                done += 1;
                eprintln!(
                    "[{done}/{total}] round {}/{}: {l}  ({} left)",
                    round + 1,
                    self.rounds,
                    mmss(left)
                );
                let Some(report) = exec(&c, &l)? else {
                    continue;
                };
                self.groups[g].report_run(&l, &report);
                runs.push(Executed {
                    round,
                    position,
                    group: g,
                    index: i,
                    report,
                });
            }
            let used = before.zip(sample()).and_then(|(a, b)| cpu_use(&a, &b));
            if let Some(w) = host.record_round(round, used) {
                eprintln!("ecs-shim: warning: {w}");
                warnings.push(w);
            }
        }
        host.load_end = crate::host::load_average();
        Ok(Outcome {
            runs,
            host,
            warnings,
        })
    }
}

/// A run's label in progress lines and errors: its vCPUs, pCPUs, workload and policy.
pub fn run_label(c: &RunConfig) -> String {
    if c.multi_vm() {
        let vms: Vec<String> = c.vms.iter().map(VmConfig::spec).collect();
        format!("VMs {} on {} pCPU {}", vms.join(" + "), c.pcpus, c.policy)
    } else {
        format!("{} vCPU/{} pCPU {} {}", c.vcpus, c.pcpus, c.lock, c.policy)
    }
}

/// The time left, estimated from the runs done so far (`elapsed` for `done` of `total`), or
/// from `first_guess` before any run finished.
pub fn eta(elapsed: Duration, done: usize, total: usize, first_guess: Duration) -> Duration {
    if done == 0 {
        return first_guess;
    }
    elapsed.mul_f64(total.saturating_sub(done) as f64 / done as f64)
}

/// `mm:ss`.
pub fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyKind;
    use crate::workload::LockKind;
    use std::cell::RefCell;

    /// A group of `n` runs, run `i` with `i + 1` vCPUs; it records what was reported.
    struct Fake {
        n: usize,
        reported: RefCell<Vec<String>>,
    }

    impl RoundGroup for Fake {
        fn len(&self) -> usize {
            self.n
        }
        fn config(&self, i: usize, template: &RunConfig) -> RunConfig {
            RunConfig {
                vcpus: i as u32 + 1,
                ..template.clone()
            }
        }
        fn label_suffix(&self, i: usize) -> &'static str {
            if i == 0 { " (first)" } else { "" }
        }
        fn extra_time(&self, _: &RunConfig) -> Duration {
            Duration::from_millis(7)
        }
        fn report_run(&self, label: &str, _: &RunReport) {
            self.reported.borrow_mut().push(label.to_owned());
        }
    }

    fn plan(rounds: u32) -> PairedPlan<Fake> {
        let mut template = RunConfig::new(1, 2, LockKind::Spin, PolicyKind::Baseline);
        template.duration = Duration::from_millis(100);
        PairedPlan {
            groups: vec![
                Fake {
                    n: 2,
                    reported: RefCell::default(),
                },
                Fake {
                    n: 3,
                    reported: RefCell::default(),
                },
            ],
            rounds,
            seed: 9,
            template,
        }
    }

    #[test]
    fn execute_runs_every_round_in_its_order_and_records_the_host_per_round() {
        let p = plan(2);
        assert_eq!(p.total_runs(), 10);
        assert_eq!(
            p.estimate(Duration::from_millis(50)),
            Duration::from_millis(10 * 150 + 2 * 2 * 7)
        );
        let mut seen = Vec::new();
        let out = p
            .execute(|c, label| -> Result<Option<RunReport>, ()> {
                seen.push((c.vcpus, label.to_owned()));
                // Time passes as the kernel counts it (ticks), so every round has a CPU record.
                std::thread::sleep(Duration::from_millis(25));
                // The third run produces no report: the experiment goes on without it.
                if seen.len() == 3 {
                    return Ok(None);
                }
                let policy = c.policy;
                Ok(Some(crate::compare::tests::report(c.vcpus, policy, 1.0)))
            })
            .unwrap();
        assert_eq!(seen.len(), 10);
        assert_eq!(out.runs.len(), 9);
        for round in 0..2 {
            let order = p.order(round);
            let done: Vec<(usize, usize)> = out
                .runs
                .iter()
                .filter(|r| r.round == round)
                .map(|r| (r.group, r.index))
                .collect();
            let expected: Vec<(usize, usize)> = order
                .iter()
                .enumerate()
                .filter(|&(pos, _)| !(round == 0 && pos == 2))
                .map(|(_, &gi)| gi)
                .collect();
            assert_eq!(done, expected, "round {round} in its order");
        }
        for r in &out.runs {
            assert_eq!(r.report.vcpus, r.index as u32 + 1);
            assert_eq!(p.order(r.round)[r.position], (r.group, r.index));
        }
        assert!(seen.iter().any(|(v, l)| *v == 1 && l.ends_with(" (first)")));
        let reported: usize = p.groups.iter().map(|g| g.reported.borrow().len()).sum();
        assert_eq!(reported, 9, "each report shown once");
        assert_eq!(out.host.rounds.len(), 2, "one CPU record per round");
        assert!(out.host.before.is_some() && out.host.measurement.is_some());
        assert!(out.host.load_end.is_some());
        // An error ends the experiment at once.
        let mut calls = 0;
        let err = p.execute(|_, _| {
            calls += 1;
            Err::<Option<RunReport>, _>("no KVM")
        });
        assert_eq!((err.map(|o| o.runs.len()), calls), (Err("no KVM"), 1));
    }

    #[test]
    fn eta_and_mmss() {
        let d = Duration::from_secs;
        assert_eq!(eta(d(10), 0, 100, d(500)), d(500));
        assert_eq!(eta(d(10), 10, 100, d(500)), d(90));
        assert_eq!(mmss(d(125)), "2:05");
    }
}
