//! `ecs-shim`: run the eCS guest workload in a KVM VM under a chosen vCPU scheduling policy, or
//! compare the policies (the eCS paper's over-commit experiment).

use clap::{Args, Parser, Subcommand};
use hypervisor_shim::compare::{self, Plan, PlanSpec, Preset, RoundRun};
use hypervisor_shim::compare_vms::{self, VmPlan, VmPreset, VmRoundRun};
use hypervisor_shim::config::{ConfigError, Lock, PolicyKind, RunConfig, VmConfig};
use hypervisor_shim::guest_image::guest_elf;
use hypervisor_shim::host::Host;
use hypervisor_shim::report;
use hypervisor_shim::rounds::{self, Executed, PairedPlan, RoundGroup, run_label};
use hypervisor_shim::run::{Progress, RunError, RunReport, run};
use hypervisor_shim::workload::{LockKind, Misbehave};
use std::process::ExitCode;
use std::time::Duration;

/// `--grace-secs` by default.
const DEFAULT_GRACE_SECS: f64 = 2.0;

const EXIT_CODES: &str = "\
Exit codes:
  0  every run passed its checks
  1  a run failed (guest fault or hang, bad guest exit, mutual-exclusion check, VMM error)
  2  bad command-line arguments
  3  /dev/kvm is not available";

#[derive(Parser, Debug)]
#[command(name = "ecs-shim", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One run: N vCPUs on P pCPUs, one lock kind, one policy.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// The policies against each other and against the ceiling (the same workload without
    /// over-commit), in paired, shuffled rounds (the README's main command).
    ///
    /// With no flags it runs the paper's experiment: every lock kind, under-commit (2 vCPUs on
    /// 2 pCPUs) and over-commit (8 and 16 on 2), policies baseline, ple and ecs, 6 rounds of
    /// 1 s runs (420 runs, about 8 minutes), with progress and the time left on stderr; then
    /// prints the medians with their 95 % intervals and a summary. `--quick` and `--preset`
    /// choose other sets; every flag narrows or widens the chosen one.
    #[command(after_help = EXIT_CODES)]
    Compare(CompareArgs),
    /// Redraw the table and the SVG chart from the JSON file of an earlier `compare --json`.
    #[command(after_help = EXIT_CODES)]
    Plot(PlotArgs),
}

#[derive(Args, Debug)]
struct PlotArgs {
    /// The JSON file `compare --json` wrote.
    #[arg(long, value_name = "FILE")]
    json: std::path::PathBuf,
    /// Where to write the SVG chart.
    #[arg(long, value_name = "FILE")]
    out: std::path::PathBuf,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A VM sharing the pCPUs, repeatable: `VCPUS:WORKLOAD[:WEIGHT[:MISBEHAVE]]` (WORKLOAD a
    /// lock kind or `hog`, CPU-bound without locks; WEIGHT 1..=1000, default 1: the VMs get
    /// pCPU time in proportion). Each is its own KVM VM. Without it, one VM of --vcpus
    /// running --lock (`--vm N:K`).
    #[arg(long = "vm", value_name = "SPEC", value_parser = parse_vm)]
    vms: Vec<VmConfig>,
    /// vCPUs in the VM (the one-VM form).
    #[arg(long, default_value_t = 8)]
    vcpus: u32,
    /// pCPUs the vCPUs share.
    #[arg(long, default_value_t = 2)]
    pcpus: u32,
    /// Lock kind: spin, ticket, mcs, spin-rw, mutex, rwlock, rcu, fair-mutex, condvar.
    #[arg(long, default_value = "spin")]
    lock: Lock,
    /// Scheduling policy: baseline, ple, ecs, ecs-ple.
    #[arg(long, default_value = "ecs")]
    policy: PolicyKind,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// Named parameter set: default (every lock kind; 2, 8 and 16 vCPUs on 2 pCPUs; baseline,
    /// ple, ecs; 6 rounds of 1 s runs), quick, ablations (every policy at 8 on 2),
    /// under-commit (2 on 2 over critical sections of about 0.25, 2.5, 25 and 250 us on the
    /// blocking locks), smoke (CI: 2 rounds of 0.2 s runs). The flags below override it.
    #[arg(long, default_value = "default")]
    preset: Preset,
    /// Shorthand for `--preset quick`: a first look in well under a minute.
    #[arg(long, conflicts_with = "preset")]
    quick: bool,
    /// Several VMs on one host instead: a named set (lock-hog: a lock VM beside a hog VM, 8 + 8
    /// on 2; two-locks: spin + mcs and mutex + rcu, 8 + 8 on 2, with each workload alone at 16;
    /// hostile: a hog VM beside a VM acting out each misbehaviour; vm-smoke: CI). Each VM's
    /// work and CPU time are compared with the same VM's under baseline in the same round.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["preset", "quick", "vcpus", "locks"])]
    vm_preset: Option<hypervisor_shim::compare_vms::VmPreset>,
    /// One group of VMs sharing the pCPUs (repeatable, `VCPUS:WORKLOAD[:WEIGHT[:MISBEHAVE]]`),
    /// compared as --vm-preset does (it replaces the preset's groups).
    #[arg(long = "vm", value_name = "SPEC", value_parser = parse_vm, conflicts_with_all = ["preset", "quick", "vcpus", "locks"])]
    vms: Vec<VmConfig>,
    /// vCPU counts, comma-separated (at or below --pcpus is under-commit).
    #[arg(long, value_delimiter = ',')]
    vcpus: Option<Vec<u32>>,
    /// pCPUs.
    #[arg(long)]
    pcpus: Option<u32>,
    /// Lock kinds, comma-separated: spin, ticket, mcs, spin-rw, mutex, rwlock, rcu,
    /// fair-mutex, condvar (a ping-pong on a condvar).
    #[arg(long, value_delimiter = ',')]
    locks: Option<Vec<Lock>>,
    /// Policies, comma-separated (ratios need `baseline`): baseline, ple, ecs, ecs-ple.
    #[arg(long, value_delimiter = ',')]
    policies: Option<Vec<PolicyKind>>,
    /// Paired rounds: each runs every policy once plus the ceiling, in a random order. At
    /// least 6 give a 95 % interval of the median.
    #[arg(long, visible_alias = "repeat", value_parser = clap::value_parser!(u32).range(1..))]
    rounds: Option<u32>,
    /// The seed of the rounds' random orders (printed by every `compare`; give it back to
    /// repeat an order).
    #[arg(long)]
    seed: Option<u64>,
    /// Write every round's runs, the summary, the host and the load average as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Write a bar chart of the shares of the ceiling as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    plot: Option<std::path::PathBuf>,
    /// Print the plan (groups, runs, the time it will take, the seed) and exit without running
    /// anything (no /dev/kvm needed).
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct Common {
    /// Seconds each run's workload runs [default: 1 for `run`, the preset's for `compare`].
    #[arg(long)]
    secs: Option<f64>,
    /// Time slice in ms.
    #[arg(long, default_value_t = 4.0)]
    slice_ms: f64,
    /// Scheduler tick in us (granularity of preemption and of extension deadlines).
    #[arg(long, default_value_t = 100)]
    tick_us: u64,
    /// eCS extension in us (at most a quarter slice).
    #[arg(long, default_value_t = 200)]
    ext_us: u64,
    /// Base pause-loop window (spins) under `ple` and `ecs-ple`; 0 = KVM's 4096 cycles in
    /// spins of this machine (measured at startup). It grows x2 per exit, per vCPU.
    #[arg(long, default_value_t = hypervisor_shim::config::DEFAULT_PLE_WINDOW)]
    ple_window: u32,
    /// Work inside the critical section (guest loop iterations) [default: 100; `compare`: the
    /// preset's, a sweep under `under-commit`].
    #[arg(long)]
    cs_iters: Option<u32>,
    /// Work between acquisitions (guest loop iterations) [default: 400; in a sweep, four times
    /// the section].
    #[arg(long, default_value_t = hypervisor_shim::config::DEFAULT_THINK_ITERS)]
    think_iters: u32,
    /// Share of read operations for spin-rw, rwlock and rcu (0-100).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u32).range(0..=100))]
    read_percent: u32,
    /// Do not pin the thread holding pCPU k to host CPU k.
    #[arg(long)]
    no_pin: bool,
    /// KVM's halt-polling, which KVM applies to every VM: a halting vCPU polls for a kick
    /// (up to 200 us, adapted per vCPU) while no vCPU waits for its pCPU.
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    halt_poll: bool,
    /// Whether the host publishes `preempted`/`overloaded` to the guest under `ecs` and
    /// `ecs-ple`; off, the same guest runs as under a host without hints (an ablation).
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    guest_hints: bool,
    /// Seconds a vCPU gets to exit after the stop request before it is force-stopped
    /// [`compare --vm-preset hostile`: 0.5].
    #[arg(long, default_value_t = DEFAULT_GRACE_SECS)]
    grace_secs: f64,
    /// Run this guest ELF instead of the embedded guest program (same boot contract).
    #[arg(long, value_name = "FILE")]
    guest: Option<std::path::PathBuf>,
    /// Deliberate guest misbehaviour, to exercise the host's robustness.
    #[arg(long, default_value = "none", value_parser = parse_misbehave)]
    misbehave: Misbehave,
}

fn parse_vm(s: &str) -> Result<VmConfig, String> {
    if s.trim().is_empty() {
        return Err(ConfigError::NoVm.to_string());
    }
    s.parse().map_err(|e: ConfigError| e.to_string())
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off".to_owned()),
    }
}

fn parse_misbehave(s: &str) -> Result<Misbehave, String> {
    hypervisor_shim::config::parse_misbehave(s).ok_or_else(|| {
        format!(
            "expected one of {}",
            hypervisor_shim::config::MISBEHAVE_ALL
                .map(hypervisor_shim::config::misbehave_name)
                .join(", ")
        )
    })
}

fn secs(v: f64, what: &str) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or_else(|_| {
        clap::Error::raw(
            clap::error::ErrorKind::InvalidValue,
            format!("{what} must be a non-negative number of seconds, got {v}\n"),
        )
        .exit()
    })
}

impl Common {
    fn config(&self, vcpus: u32, pcpus: u32, lock: Lock, policy: PolicyKind) -> RunConfig {
        let mut c = RunConfig::new(vcpus, pcpus, lock.0, policy);
        c.duration = secs(self.secs.unwrap_or(1.0), "--secs");
        c.slice = secs(self.slice_ms / 1e3, "--slice-ms");
        c.tick = Duration::from_micros(self.tick_us);
        c.extension = Duration::from_micros(self.ext_us);
        c.ple_window = self.ple_window;
        c.cs_iters = self
            .cs_iters
            .unwrap_or(hypervisor_shim::config::DEFAULT_CS_ITERS);
        c.think_iters = self.think_iters;
        c.read_percent = self.read_percent;
        c.pin = !self.no_pin;
        c.halt_poll = self.halt_poll;
        c.guest_hints = self.guest_hints;
        c.grace = secs(self.grace_secs, "--grace-secs");
        c.misbehave = self.misbehave;
        if let Err(e) = c.validate() {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n")).exit();
        }
        c
    }
}

/// Runs one configuration with a progress line on stderr; `Err` carries the exit code after
/// the error was reported.
fn run_one(cfg: &RunConfig, elf: &[u8], label: &str, live: bool) -> Result<RunReport, ExitCode> {
    let mut last = 0u64;
    let mut last_t = Duration::ZERO;
    let mut show = |p: Progress| {
        if !live {
            return;
        }
        let rate = p.ops.saturating_sub(last) as f64 / (p.elapsed - last_t).as_secs_f64().max(1e-9);
        last = p.ops;
        last_t = p.elapsed;
        eprintln!(
            "  {label}: {:>5.1} s  {:>12} ops  {:>12.0} ops/s",
            p.elapsed.as_secs_f64(),
            p.ops,
            rate
        );
    };
    match run(cfg, elf, Duration::from_secs(1), &mut show) {
        Ok(r) => Ok(r),
        Err(e @ RunError::Vm(_)) if e.kvm_unavailable() => {
            eprintln!("ecs-shim: {e}: this command needs KVM");
            Err(ExitCode::from(3))
        }
        Err(e) => {
            eprintln!("ecs-shim: {label}: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// The guest image: `--guest FILE` or the embedded one.
fn load_guest(c: &Common) -> Result<std::borrow::Cow<'static, [u8]>, ExitCode> {
    match &c.guest {
        None => Ok(guest_elf().into()),
        Some(path) => std::fs::read(path).map(Into::into).map_err(|e| {
            eprintln!("ecs-shim: cannot read {}: {e}", path.display());
            ExitCode::from(1)
        }),
    }
}

/// `ecs-shim plot`: the table on stdout and the chart in `out`, from a compare JSON file (the
/// paired-rounds `summary`, or the older files' `rows`).
fn plot(a: &PlotArgs) -> ExitCode {
    let doc: serde_json::Value = match std::fs::read_to_string(&a.json)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("ecs-shim: cannot read {}: {e}", a.json.display());
            return ExitCode::from(1);
        }
    };
    let picture = if let Some(summary) = doc.get("summary") {
        match serde_json::from_value::<Vec<compare::SummaryRow>>(summary.clone()) {
            Ok(rows) => {
                print!("{}", report::summary_table(&rows));
                print!("{}", report::summary_lines(&rows));
                let host = doc.get("host").cloned().map(serde_json::from_value::<Host>);
                if let Some(line) = host.and_then(Result::ok).and_then(|h| h.summary_line()) {
                    print!("{line}");
                }
                hypervisor_shim::chart::svg(&report::summary_chart(&rows))
            }
            Err(e) => return bad_json(a, &e),
        }
    } else {
        match serde_json::from_value::<Vec<report::Row>>(doc["rows"].clone()) {
            Ok(rows) => {
                print!("{}", report::table(&rows));
                print!("{}", report::summary(&rows));
                report::svg(&rows)
            }
            Err(e) => return bad_json(a, &e),
        }
    };
    match write(&a.out, picture) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn bad_json(a: &PlotArgs, e: &serde_json::Error) -> ExitCode {
    eprintln!(
        "ecs-shim: {} is not a compare JSON file (no `summary` or `rows`): {e}",
        a.json.display()
    );
    ExitCode::from(1)
}

fn bad_arg(msg: String) -> ! {
    clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{msg}\n")).exit()
}

/// The flags that override a preset of either kind: pCPUs, policies, rounds, seconds.
fn override_shared(
    a: &CompareArgs,
    pcpus: &mut u32,
    policies: &mut Vec<PolicyKind>,
    rounds: &mut u32,
    secs: &mut f64,
) {
    if let Some(p) = a.pcpus {
        *pcpus = p;
    }
    if let Some(p) = &a.policies {
        policies.clone_from(p);
    }
    if let Some(r) = a.rounds {
        *rounds = r;
    }
    if let Some(s) = a.common.secs {
        *secs = s;
    }
}

/// The plan `new` makes from the template (the common flags, `secs` long) and the seed, every
/// run of it checked (exit 2 with the reason).
fn checked_plan<G: RoundGroup>(
    a: &CompareArgs,
    (vcpus, pcpus, lock): (u32, u32, Lock),
    run_secs: f64,
    new: impl FnOnce(RunConfig, u64) -> PairedPlan<G>,
) -> PairedPlan<G> {
    let mut template = a.common.config(vcpus, pcpus, lock, PolicyKind::Baseline);
    template.duration = secs(run_secs, "--secs");
    let plan = new(template, a.seed.unwrap_or_else(|| fastrand::u64(..)));
    if let Err(e) = plan.validate() {
        bad_arg(e.to_string());
    }
    plan
}

/// The plan of a `compare`: the preset, overridden by the flags given.
fn compare_plan(a: &CompareArgs) -> (Preset, Plan) {
    let preset = if a.quick { Preset::Quick } else { a.preset };
    let mut spec: PlanSpec = preset.spec();
    if let Some(v) = &a.vcpus {
        spec.vcpus = v.clone();
    }
    if let Some(l) = &a.locks {
        spec.locks = l.clone();
    }
    if let Some(c) = a.common.cs_iters {
        spec.cs_iters = vec![c];
    }
    let s = &mut spec;
    override_shared(a, &mut s.pcpus, &mut s.policies, &mut s.rounds, &mut s.secs);
    let first = (spec.pcpus.max(1), spec.pcpus, spec.locks[0]);
    let plan = checked_plan(a, first, spec.secs, |t, seed| Plan::new(&spec, t, seed));
    (preset, plan)
}

/// The plan of a multi-VM `compare`: the VM preset (or `--vm`), overridden by the flags.
fn compare_vms_plan(a: &CompareArgs) -> (String, VmPlan) {
    let preset = a.vm_preset.unwrap_or(VmPreset::Smoke);
    let mut spec = preset.spec();
    let mut name = preset.name().to_owned();
    if !a.vms.is_empty() {
        spec.groups = vec![a.vms.clone()];
        name = "--vm".to_owned();
        if a.vm_preset.is_none() {
            spec.rounds = 6;
            spec.secs = 1.0;
        }
    }
    let s = &mut spec;
    override_shared(a, &mut s.pcpus, &mut s.policies, &mut s.rounds, &mut s.secs);
    if a.common.grace_secs != DEFAULT_GRACE_SECS {
        spec.grace = Some(secs(a.common.grace_secs, "--grace-secs"));
    }
    let total = spec.groups[0].iter().map(|v| v.vcpus).sum::<u32>().max(1);
    let first = (total, spec.pcpus, Lock(LockKind::Spin));
    let plan = checked_plan(a, first, spec.secs, |t, seed| VmPlan::new(&spec, t, seed));
    (name, plan)
}

/// What a `compare` produced: its runs, the host and the warnings.
struct Done<R> {
    runs: Vec<R>,
    host: Host,
    warnings: Vec<String>,
}

/// Executes `plan`'s rounds on the guest of `common`, each run kept as `record` makes it;
/// `Err` is the exit code of a failure that ends the experiment (no guest image, no KVM).
fn execute<G: RoundGroup, R>(
    plan: &PairedPlan<G>,
    common: &Common,
    record: fn(&PairedPlan<G>, Executed) -> R,
) -> Result<Done<R>, ExitCode> {
    let elf = load_guest(common)?;
    let out = plan.execute(|c, l| match run_one(c, &elf, l, false) {
        Ok(r) => Ok(Some(r)),
        Err(code) if code == ExitCode::from(3) => Err(code),
        Err(_) => Ok(None),
    })?;
    Ok(Done {
        runs: out.runs.into_iter().map(|r| record(plan, r)).collect(),
        host: out.host,
        warnings: out.warnings,
    })
}

/// Writes `text` to `path`, or reports why not (exit 1).
fn write(path: &std::path::Path, text: String) -> Result<(), ExitCode> {
    std::fs::write(path, text).map_err(|e| {
        eprintln!("ecs-shim: cannot write {}: {e}", path.display());
        ExitCode::from(1)
    })
}

/// Writes `--json` (`doc`) and `--plot` (the chart `svg` draws), where asked for.
fn write_outputs(
    a: &CompareArgs,
    doc: serde_json::Value,
    svg: impl FnOnce() -> String,
) -> Result<(), ExitCode> {
    if let Some(path) = &a.json {
        write(
            path,
            serde_json::to_string_pretty(&doc).expect("reports serialize"),
        )?;
    }
    if let Some(path) = &a.plot {
        write(path, svg())?;
    }
    Ok(())
}

/// `ecs-shim compare --vm-preset` / `--vm`: several VMs on one host.
fn compare_vms_cmd(a: &CompareArgs) -> ExitCode {
    let (preset, plan) = compare_vms_plan(a);
    if a.dry_run {
        print!("{}", compare_vms::describe(&plan, &preset));
        return ExitCode::SUCCESS;
    }
    eprint!("{}", compare_vms::describe(&plan, &preset));
    eprintln!("(--seed {} repeats these orders)", plan.seed);
    let done = match execute(&plan, &a.common, VmRoundRun::new) {
        Ok(done) => done,
        Err(code) => return code,
    };
    let runs = &done.runs;
    let summary = compare_vms::summarize(&plan, runs);
    print!("{}", compare_vms::table(&summary, plan.template.pcpus));
    print!("{}", compare_vms::target_lines(&plan, &summary));
    print!("{}", done.host.summary_line().unwrap_or_default());
    let doc = serde_json::json!({
        "version": 3,
        "kind": "vms",
        "preset": preset,
        "seed": plan.seed,
        "rounds": plan.rounds,
        "secs": plan.template.duration.as_secs_f64(),
        "pcpus": plan.template.pcpus,
        "method": rounds::METHOD,
        "host": done.host,
        "warnings": done.warnings,
        "summary": summary,
        "runs": runs,
    });
    let chart = || hypervisor_shim::chart::svg(&compare_vms::chart(&plan, &summary));
    if let Err(code) = write_outputs(a, doc, chart) {
        return code;
    }
    // A run that failed outside its hostile VM fails the command.
    let unexpected = runs.iter().any(|r| {
        let hostile: Vec<bool> = plan.groups[r.group]
            .vms
            .iter()
            .map(|v| v.misbehave != Misbehave::None)
            .collect();
        let expected = |vm: u32| r.alone.is_none() && hostile[vm as usize];
        r.report
            .vms
            .iter()
            .any(|v| !v.failures.is_empty() && !expected(v.vm))
    });
    if unexpected || runs.len() < plan.total_runs() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `ecs-shim compare`.
fn compare_cmd(a: &CompareArgs) -> ExitCode {
    if a.vm_preset.is_some() || !a.vms.is_empty() {
        return compare_vms_cmd(a);
    }
    let (preset, plan) = compare_plan(a);
    if a.dry_run {
        print!("{}", compare::describe(&plan, preset));
        return ExitCode::SUCCESS;
    }
    let total = plan.total_runs();
    eprintln!(
        "compare: preset {preset}, {} groups, {} rounds, {total} runs of {:.1} s: about {} \
         (seed {}: --seed {} repeats these orders)",
        plan.groups.len(),
        plan.rounds,
        plan.template.duration.as_secs_f64(),
        rounds::mmss(plan.estimate(rounds::RUN_OVERHEAD)),
        plan.seed,
        plan.seed
    );
    let done = match execute(&plan, &a.common, RoundRun::new) {
        Ok(done) => done,
        Err(code) => return code,
    };
    let runs = &done.runs;
    let summary = compare::summarize(&plan, runs);
    print!("{}", report::summary_table(&summary));
    print!("{}", report::summary_lines(&summary));
    print!("{}", done.host.summary_line().unwrap_or_default());
    let policy_runs: Vec<RunReport> = runs
        .iter()
        .filter(|r| !r.ceiling)
        .map(|r| r.report.clone())
        .collect();
    let doc = serde_json::json!({
        "version": 2,
        "preset": preset.name(),
        "seed": plan.seed,
        "rounds": plan.rounds,
        "secs": plan.template.duration.as_secs_f64(),
        "method": rounds::METHOD,
        "host": done.host,
        "warnings": done.warnings,
        "summary": summary,
        "rows": report::rows(&report::medians(&policy_runs)),
        "runs": runs,
    });
    let chart = || hypervisor_shim::chart::svg(&report::summary_chart(&summary));
    if let Err(code) = write_outputs(a, doc, chart) {
        return code;
    }
    if runs.len() < total || runs.iter().any(|r| !r.report.ok()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Plot(a) => plot(&a),
        Cmd::Run(a) => {
            let cfg = if a.vms.is_empty() {
                a.common.config(a.vcpus, a.pcpus, a.lock, a.policy)
            } else {
                let total = a.vms.iter().map(|v| v.vcpus).fold(0, u32::saturating_add);
                let max = ecs_sys::abi::MAX_VCPUS;
                if total > max {
                    bad_arg(ConfigError::TotalVcpus { got: total, max }.to_string());
                }
                if a.common.misbehave != Misbehave::None {
                    bad_arg(
                        "--misbehave is for the one-VM form; with --vm give MISBEHAVE in the \
                         spec (VCPUS:WORKLOAD:WEIGHT:MISBEHAVE)"
                            .to_owned(),
                    );
                }
                let c = a
                    .common
                    .config(total, a.pcpus, a.vms[0].workload, a.policy)
                    .with_vms(a.vms.clone());
                if let Err(e) = c.validate() {
                    bad_arg(e.to_string());
                }
                c
            };
            let elf = match load_guest(&a.common) {
                Ok(elf) => elf,
                Err(code) => return code,
            };
            let r = match run_one(&cfg, &elf, &run_label(&cfg), true) {
                Ok(r) => r,
                Err(code) => return code,
            };
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r).expect("reports serialize")
                );
            } else {
                print!("{}", report::run_summary(&r));
            }
            if r.ok() {
                ExitCode::SUCCESS
            } else {
                for f in &r.failures {
                    eprintln!("ecs-shim: run failed: {f}");
                }
                ExitCode::from(1)
            }
        }
        Cmd::Compare(a) => compare_cmd(&a),
    }
}
