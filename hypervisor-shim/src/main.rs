//! `ecs-shim`: run the eCS guest workload in a KVM VM under a chosen vCPU scheduling policy, or
//! compare the policies (the eCS paper's over-commit experiment).

use clap::{Args, Parser, Subcommand};
use hypervisor_shim::config::{Lock, PolicyKind, RunConfig};
use hypervisor_shim::guest_image::guest_elf;
use hypervisor_shim::report;
use hypervisor_shim::run::{Progress, RunError, RunReport, run};
use hypervisor_shim::workload::Misbehave;
use std::process::ExitCode;
use std::time::Duration;

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
    /// One run: N vCPUs on P pCPU slots, one lock kind, one policy.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Every combination of vCPU counts, lock kinds and policies on the same workload, with
    /// throughput ratios against `baseline` (the README's main command).
    ///
    /// With no flags it runs the paper's experiment in a few minutes: under-commit (2 vCPUs on
    /// 2 pCPU slots) and over-commit (8 and 16 on 2) on spin, mcs, the blocking mutex and RCU,
    /// policies baseline, ple and ecs, 1 s per run, 3 rounds (the median run of each
    /// combination is reported), then prints the table and a summary of the ratios. Every flag
    /// narrows or widens that set.
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
    /// vCPUs in the VM.
    #[arg(long, default_value_t = 8)]
    vcpus: u32,
    /// pCPU slots the vCPUs share.
    #[arg(long, default_value_t = 2)]
    pcpus: u32,
    /// Lock kind: spin, ticket, mcs, spin-rw, mutex, rwlock, rcu.
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
    /// vCPU counts, comma-separated (at or below --pcpus is under-commit).
    #[arg(long, value_delimiter = ',', default_value = "2,8,16")]
    vcpus: Vec<u32>,
    /// pCPU slots.
    #[arg(long, default_value_t = 2)]
    pcpus: u32,
    /// Lock kinds, comma-separated: spin, ticket, mcs, spin-rw, mutex, rwlock, rcu.
    #[arg(long, value_delimiter = ',', default_value = "spin,mcs,mutex,rcu")]
    locks: Vec<Lock>,
    /// Policies, comma-separated (ratios need `baseline`): baseline, ple, ecs, ecs-ple.
    #[arg(long, value_delimiter = ',', default_value = "baseline,ple,ecs")]
    policies: Vec<PolicyKind>,
    /// Run every combination this many times, interleaved (round after round), and report the
    /// run with the median throughput of each (this machine is shared and noisy).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Write every run's full report and the table rows as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Write a bar chart of the throughputs as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    plot: Option<std::path::PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct Common {
    /// Seconds each run's workload runs.
    #[arg(long, default_value_t = 1.0)]
    secs: f64,
    /// Time slice in ms.
    #[arg(long, default_value_t = 4.0)]
    slice_ms: f64,
    /// Scheduler tick in us (granularity of preemption and of extension deadlines).
    #[arg(long, default_value_t = 100)]
    tick_us: u64,
    /// eCS extension in us (at most a quarter slice).
    #[arg(long, default_value_t = 200)]
    ext_us: u64,
    /// Pause-loop window (spins) advertised under `ple` and `ecs-ple`.
    #[arg(long, default_value_t = hypervisor_shim::config::DEFAULT_PLE_WINDOW)]
    ple_window: u32,
    /// Work inside the critical section (guest loop iterations).
    #[arg(long, default_value_t = hypervisor_shim::config::DEFAULT_CS_ITERS)]
    cs_iters: u32,
    /// Work between acquisitions (guest loop iterations).
    #[arg(long, default_value_t = hypervisor_shim::config::DEFAULT_THINK_ITERS)]
    think_iters: u32,
    /// Share of read operations for spin-rw, rwlock and rcu (0-100).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u32).range(0..=100))]
    read_percent: u32,
    /// Do not pin the thread holding pCPU slot k to host CPU k.
    #[arg(long)]
    no_pin: bool,
    /// Seconds a vCPU gets to exit after the stop request before it is force-stopped.
    #[arg(long, default_value_t = 2.0)]
    grace_secs: f64,
    /// Run this guest ELF instead of the embedded guest program (same boot contract).
    #[arg(long, value_name = "FILE")]
    guest: Option<std::path::PathBuf>,
    /// Deliberate guest misbehaviour, to exercise the host's robustness.
    #[arg(long, default_value = "none", value_parser = parse_misbehave)]
    misbehave: Misbehave,
}

fn parse_misbehave(s: &str) -> Result<Misbehave, String> {
    Ok(match s {
        "none" => Misbehave::None,
        "never-leave-cs" => Misbehave::NeverLeaveCs,
        "garbage-hypercalls" => Misbehave::GarbageHypercalls,
        "fault" => Misbehave::Fault,
        "hang" => Misbehave::Hang,
        _ => {
            return Err(
                "expected none, never-leave-cs, garbage-hypercalls, fault or hang".to_owned(),
            );
        }
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
        c.duration = secs(self.secs, "--secs");
        c.slice = secs(self.slice_ms / 1e3, "--slice-ms");
        c.tick = Duration::from_micros(self.tick_us);
        c.extension = Duration::from_micros(self.ext_us);
        c.ple_window = self.ple_window;
        c.cs_iters = self.cs_iters;
        c.think_iters = self.think_iters;
        c.read_percent = self.read_percent;
        c.pin = !self.no_pin;
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
fn run_one(cfg: &RunConfig, elf: &[u8], label: &str) -> Result<RunReport, ExitCode> {
    let mut last = 0u64;
    let mut last_t = Duration::ZERO;
    let mut show = |p: Progress| {
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

fn label(c: &RunConfig) -> String {
    format!("{} vCPU/{} pCPU {} {}", c.vcpus, c.pcpus, c.lock, c.policy)
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

/// `ecs-shim plot`: the table on stdout and the chart in `out`, from a compare JSON file.
fn plot(a: &PlotArgs) -> ExitCode {
    #[derive(serde::Deserialize)]
    struct Doc {
        rows: Vec<report::Row>,
    }
    let doc: Doc = match std::fs::read_to_string(&a.json)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("ecs-shim: cannot read {}: {e}", a.json.display());
            return ExitCode::from(1);
        }
    };
    print!("{}", report::table(&doc.rows));
    print!("{}", report::summary(&doc.rows));
    if let Err(e) = std::fs::write(&a.out, report::svg(&doc.rows)) {
        eprintln!("ecs-shim: cannot write {}: {e}", a.out.display());
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Plot(a) => plot(&a),
        Cmd::Run(a) => {
            let cfg = a.common.config(a.vcpus, a.pcpus, a.lock, a.policy);
            let elf = match load_guest(&a.common) {
                Ok(elf) => elf,
                Err(code) => return code,
            };
            let r = match run_one(&cfg, &elf, &label(&cfg)) {
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
        Cmd::Compare(a) => {
            let mut configs = Vec::new();
            for &v in &a.vcpus {
                for &l in &a.locks {
                    for &p in &a.policies {
                        configs.push(a.common.config(v, a.pcpus, l, p));
                    }
                }
            }
            let elf = match load_guest(&a.common) {
                Ok(elf) => elf,
                Err(code) => return code,
            };
            let mut runs = Vec::new();
            let mut failed = false;
            let total = configs.len() * a.repeat as usize;
            let rounds = (0..a.repeat).flat_map(|_| configs.iter());
            for (i, c) in rounds.enumerate() {
                let l = label(c);
                eprintln!("[{}/{total}] {l}", i + 1);
                match run_one(c, &elf, &l) {
                    Ok(r) => {
                        eprintln!(
                            "  {l}: {:.0} ops/s, {} preemptions ({} in CS){}",
                            r.ops_per_sec,
                            r.total.preemptions,
                            r.total.preemptions_in_cs,
                            if r.ok() { "" } else { ", FAILED" }
                        );
                        for f in &r.failures {
                            eprintln!("  {l}: FAILED: {f}");
                        }
                        failed |= !r.ok();
                        runs.push(r);
                    }
                    Err(code) if code == ExitCode::from(3) => return code,
                    Err(_) => failed = true,
                }
            }
            let rows = report::rows(&report::medians(&runs));
            print!("{}", report::table(&rows));
            print!("{}", report::summary(&rows));
            if let Some(path) = &a.json {
                let doc = serde_json::json!({ "rows": rows, "runs": runs });
                let text = serde_json::to_string_pretty(&doc).expect("reports serialize");
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("ecs-shim: cannot write {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            if let Some(path) = &a.plot
                && let Err(e) = std::fs::write(path, report::svg(&rows))
            {
                eprintln!("ecs-shim: cannot write {}: {e}", path.display());
                return ExitCode::from(1);
            }
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
