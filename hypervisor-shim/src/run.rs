//! One run: build the VM, start the vCPU threads and the scheduler tick, stop the guest after
//! the configured duration, force-stop stragglers after the grace period, check the results.

use crate::config::{ConfigError, Lock, PolicyKind, RunConfig, VmConfig, misbehave_name};
use crate::page::PageError;
use crate::sched::os::{available_cpus, rdtsc, realtime_priority};
use crate::sched::{
    Options, Policy, Scheduler, SlotSnapshot, VcpuState, VcpuStats, VmSlots, policy_for,
};
use crate::vcpu::{SignalError, install_signal, vcpu_thread};
use crate::vm::{Vm, VmError, VmSpec, layout};
use crate::workload::exit_code;
use kvm_ioctls::VcpuFd;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

/// Errors that prevent a run from starting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The VM could not be built.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// Guest memory lookups failed (a layout bug).
    #[error("guest memory: {0}")]
    Memory(#[from] PageError),
    /// The preemption signal's handler could not be installed.
    #[error(transparent)]
    Signal(#[from] SignalError),
}

impl RunError {
    /// Whether the error is "no usable /dev/kvm" (exit code 3 of the command).
    pub fn kvm_unavailable(&self) -> bool {
        matches!(self, RunError::Vm(VmError::OpenKvm(_)))
    }
}

/// One vCPU's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VcpuReport {
    /// vCPU index, host-wide (VM 0's vCPUs first, then VM 1's, ...).
    pub vcpu: u32,
    /// Its VM.
    pub vm: u32,
    /// Its index in its VM (what its guest calls it).
    pub vm_vcpu: u32,
    /// Final state.
    pub state: VcpuState,
    /// Host-side metrics and guest reports.
    #[serde(flatten)]
    pub stats: VcpuStats,
    /// Its hint slot as the run left it.
    pub slot: SlotSnapshot,
}

/// One VM's outcome in a run (every run has at least one).
#[derive(Clone, Debug, serde::Serialize)]
pub struct VmReport {
    /// Its index.
    pub vm: u32,
    /// Its spec (`VCPUS:WORKLOAD[:WEIGHT[:MISBEHAVE]]`).
    pub spec: String,
    /// Its workload.
    pub workload: Lock,
    /// vCPUs.
    pub vcpus: u32,
    /// Its weight in the fair shares.
    pub weight: u32,
    /// Its misbehaviour (`none` for a well-behaved VM).
    pub misbehave: &'static str,
    /// The host-wide index of its vCPU 0.
    pub first_vcpu: u32,
    /// Operations per second (its vCPUs).
    pub ops_per_sec: f64,
    /// Operations per second of CPU time its vCPU threads received.
    pub ops_per_cpu_sec: f64,
    /// Totals over its vCPUs (the same fields a one-VM run's `total` has).
    pub total: VcpuStats,
    /// pCPU time its vCPUs held before the run's stop, ns: the scheduler's accounting of its
    /// share (`total.run_ns_before_stop`).
    pub pcpu_ns: u64,
    /// Its share of the pCPU time every VM held before the stop (0..1).
    pub pcpu_share: f64,
    /// Its fair share: its weight over the sum of the weights.
    pub fair_share: f64,
    /// `pcpu_share / fair_share`: 1 = exactly its fair share.
    pub of_fair_share: f64,
    /// Jain's index of its vCPUs' operations.
    pub jain: Option<f64>,
    /// Its protected counter's final value, as its guest reported it.
    pub counter: Option<u64>,
    /// When it was told to stop, s since the start (its failure, or the run's stop).
    pub stopped_at_secs: Option<f64>,
    /// What went wrong in it (also in the run's `failures`).
    pub failures: Vec<String>,
}

/// The result of one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunReport {
    /// Lock kind.
    pub lock: Lock,
    /// Policy.
    pub policy: PolicyKind,
    /// vCPUs.
    pub vcpus: u32,
    /// pCPUs.
    pub pcpus: u32,
    /// Time slice, ms.
    pub slice_ms: f64,
    /// Critical-section work per operation (guest loop iterations).
    pub cs_iters: u32,
    /// Whether KVM's halt-polling was on.
    pub halt_poll: bool,
    /// Whether the host published its hints to the guest (`--guest-hints`).
    pub guest_hints: bool,
    /// Work between acquisitions (guest loop iterations).
    pub think_iters: u32,
    /// Measured workload time (start to the stop request), seconds.
    pub secs: f64,
    /// Operations per second (all vCPUs).
    pub ops_per_sec: f64,
    /// Operations per second of CPU time the host gave the vCPU threads: throughput per
    /// pCPU actually received, less sensitive to other load on a shared host.
    pub ops_per_cpu_sec: f64,
    /// Totals over the vCPUs.
    pub total: VcpuStats,
    /// The fewest operations one vCPU completed (fairness: no per-vCPU cap limits it).
    pub ops_min: u64,
    /// The most operations one vCPU completed.
    pub ops_max: u64,
    /// Jain's fairness index of the per-vCPU operations (1 = equal; `1/n` = one vCPU did all),
    /// if any operation was done.
    pub jain: Option<f64>,
    /// The protected counter's final value, as the guest reported it.
    pub counter: Option<u64>,
    /// The TSC frequency, Hz, measured over this run (TSC cycles / host clock between the
    /// vCPUs' start and the end of the run). Under KVM the guest reads the host's TSC (no
    /// offset or scaling is set), so guest-reported cycles convert with it.
    pub tsc_hz: f64,
    /// RCU: mean grace-period wait of the writers, TSC cycles (`GRACE_CYCLES / GRACE_PERIODS`
    /// over every vCPU), if any grace period was waited for.
    pub grace_mean_cycles: Option<f64>,
    /// The same in microseconds (with [`RunReport::tsc_hz`]).
    pub grace_mean_us: Option<f64>,
    /// TSC cycles one PAUSE takes on this machine (measured when the shim started).
    pub cycles_per_pause: f64,
    /// The base pause-loop window in spins (KVM's 4096 cycles converted, or `--ple-window`);
    /// 0 when the policy does not emulate PLE.
    pub ple_base_window: u32,
    /// Wake-up latencies of halted or polling waiters (kick to resume), if any was woken.
    pub wakeup: Option<WakeLatency>,
    /// Tick lateness: from when a preemption was due (the slice's end, or the tick that found
    /// an extension over) to when the vCPU left its pCPU, if any preemption was asked for.
    /// What delays it: the tick's granularity, the signal's delivery, and the scheduler lock
    /// (the tick waits for it while a vCPU thread that holds it is descheduled by the host).
    pub preempt_lateness: Option<Latency>,
    /// Preemptions the tick asked for without the scheduler lock, because a vCPU thread held
    /// it (the policy still decided each under the lock, when the vCPU left guest mode).
    pub lockfree_kicks: u64,
    /// Per vCPU.
    pub per_vcpu: Vec<VcpuReport>,
    /// Per VM (one in a one-VM run), in `--vm` order.
    pub vms: Vec<VmReport>,
    /// What went wrong, if anything (empty = the run passed every check).
    pub failures: Vec<String>,
}

impl RunReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Percentiles of a latency: wake-ups of blocked waiters (a kick to the moment the woken vCPU
/// resumes, its thread about to enter the guest, by the host's TSC: [`WakeLatency`]) or tick
/// lateness (a preemption due to the vCPU leaving its pCPU, by the host clock).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    /// Wake-ups measured.
    pub samples: usize,
    /// Median, us.
    pub p50_us: f64,
    /// 90th percentile, us.
    pub p90_us: f64,
    /// 99th percentile, us.
    pub p99_us: f64,
    /// The largest, us.
    pub max_us: f64,
}

/// Wake-up latencies (kick to resume): [`Latency`].
pub type WakeLatency = Latency;

impl Latency {
    /// The percentiles of `cycles` at `tsc_hz` (`None` without samples or a TSC frequency).
    pub fn of(cycles: &[u32], tsc_hz: f64) -> Option<Self> {
        if tsc_hz <= 0.0 {
            return None;
        }
        let us: Vec<f64> = cycles
            .iter()
            .map(|&c| f64::from(c) / tsc_hz * 1e6)
            .collect();
        Self::of_us(us)
    }

    /// The percentiles of `ns` (`None` without samples).
    pub fn of_ns(ns: &[u64]) -> Option<Self> {
        Self::of_us(ns.iter().map(|&n| n as f64 / 1e3).collect())
    }

    fn of_us(us: Vec<f64>) -> Option<Self> {
        if us.is_empty() {
            return None;
        }
        let p = |q| crate::stats::percentile(&us, q).unwrap_or(0.0);
        Some(Latency {
            samples: us.len(),
            p50_us: p(0.5),
            p90_us: p(0.9),
            p99_us: p(0.99),
            max_us: p(1.0),
        })
    }
}

/// Live progress, for display (and for tests of the hint protocol).
#[derive(Clone, Debug)]
pub struct Progress {
    /// Time since the vCPUs started.
    pub elapsed: Duration,
    /// Operations so far (sum of the slots' `progress`, guest-written).
    pub ops: u64,
    /// Every slot's guest-visible state at this moment.
    pub slots: Vec<SlotSnapshot>,
}

fn exit_code_name(code: u32) -> &'static str {
    match code {
        exit_code::OK => "OK",
        exit_code::BAD_CONFIG => "BAD_CONFIG",
        exit_code::CHECK_FAILED => "CHECK_FAILED",
        exit_code::REGISTER_FAILED => "REGISTER_FAILED",
        exit_code::GARBAGE_ACCEPTED => "GARBAGE_ACCEPTED",
        exit_code::PANIC => "PANIC",
        exit_code::BAD_BOOT => "BAD_BOOT",
        exit_code::NO_FAULT => "NO_FAULT",
        _ => "unknown",
    }
}

/// Runs `body`; if it panics, passes the panic's message to `on_panic` instead of unwinding
/// further (a host thread's panic must end the run with a message, never hang it).
fn guarded(body: impl FnOnce(), on_panic: impl FnOnce(&str)) {
    // The closures only share the scheduler, whose lock tolerates poisoning: carrying on after a
    // panic is what it is built for.
    if let Err(payload) = catch_unwind(AssertUnwindSafe(body)) {
        on_panic(panic_message(payload.as_ref()));
    }
}

/// The text of a panic payload (`panic!` with a literal or with format arguments).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(a non-string payload)"
    }
}

/// Fault injection for the tests of the run's panic handling (a host bug has no other way to
/// be triggered on purpose). Not part of the interface.
#[doc(hidden)]
pub mod test_hooks {
    use core::sync::atomic::{AtomicU8, Ordering};

    /// Makes vCPU 0's thread panic as it starts.
    pub const VCPU0: u8 = 1;
    /// Makes the scheduler tick thread panic as it starts.
    pub const TICK: u8 = 2;
    /// Which host thread of every later run panics (0 = none; process-wide, so only for a test
    /// binary of its own).
    pub static PANIC_IN: AtomicU8 = AtomicU8::new(0);

    pub(super) fn maybe_panic(which: u8, here: bool) {
        if here && PANIC_IN.load(Ordering::Relaxed) == which {
            panic!("injected panic (test_hooks::PANIC_IN = {which})");
        }
    }
}

/// Runs `elf` under `cfg`; calls `progress` about every `progress_every` while it runs.
pub fn run(
    cfg: &RunConfig,
    elf: &[u8],
    progress_every: Duration,
    progress: &mut dyn FnMut(Progress),
) -> Result<RunReport, RunError> {
    cfg.validate()?;
    let policy = policy_for(cfg);
    let specs = cfg.vm_list();
    // One KVM VM per `--vm`: its own memory, guest program instance, hint area and workload
    // block. Isolation between them is by construction: no VM can address another's memory.
    let mut vms = specs
        .iter()
        .map(|v| Vm::new(elf, &vm_spec(cfg, v, &*policy)))
        .collect::<Result<Vec<Vm>, VmError>>()?;
    install_signal()?;
    let cpus = pinning(cfg);
    let mut slots = Vec::new();
    let mut fds: Vec<&mut VcpuFd> = Vec::new();
    for (vm, spec) in vms.iter_mut().zip(&specs) {
        let (mem, vm_fds) = vm.split();
        slots.push(VmSlots {
            area: mem.hint_area(layout::HINT_AREA, spec.vcpus)?,
            config: mem.workload_config(layout::CONFIG)?,
            weight: spec.weight,
        });
        fds.extend(vm_fds.iter_mut());
    }
    let opts = Options {
        nr_pcpus: cfg.pcpus,
        slice: cfg.slice,
        halt_poll: cfg.halt_poll,
        guest_hints: cfg.guest_hints,
    };
    let sched = Scheduler::multi(slots, policy, opts);
    let tsc = TscClock::start();
    std::thread::scope(|s| {
        let vcpus = spawn_vcpus(s, cfg, &sched, fds, &cpus);
        let tick = spawn_tick(s, cfg, &sched);
        supervise(&sched, &vcpus, tick.as_ref(), progress_every, progress);
    });
    Ok(report(cfg, &specs, &sched, tsc.hz()))
}

/// What a VM is built with: its shape, the policy's advertised features, its workload.
fn vm_spec(cfg: &RunConfig, vm: &VmConfig, policy: &dyn Policy) -> VmSpec {
    VmSpec {
        nr_vcpus: vm.vcpus,
        nr_pcpus: cfg.pcpus,
        // Without guest hints the header does not advertise them: the guest's locks run as on
        // a host that has none.
        features: if cfg.guest_hints {
            policy.features()
        } else {
            policy.features() & !ecs_sys::abi::FEATURE_HINTS
        },
        ple_window: policy.ple_window(),
        lock: vm.workload.0,
        cs_iters: cfg.cs_iters,
        think_iters: cfg.think_iters,
        read_percent: cfg.read_percent,
        misbehave: vm.misbehave,
        max_ops: cfg.max_ops,
    }
}

/// The host CPUs the thread holding pCPU k is pinned to (`cpus[k % len]`), or none (no
/// pinning asked for, or fewer host CPUs than pCPUs).
fn pinning(cfg: &RunConfig) -> Vec<usize> {
    let c = if cfg.pin {
        available_cpus()
    } else {
        Vec::new()
    };
    if c.len() >= cfg.pcpus as usize {
        c
    } else {
        Vec::new()
    }
}

/// Starts one thread per vCPU; a thread that cannot start, or panics, fails its vCPU (and so
/// the run) with a message instead of leaving it "running" for [`supervise`] to wait on.
fn spawn_vcpus<'s, 'e>(
    s: &'s Scope<'s, 'e>,
    cfg: &'e RunConfig,
    sched: &'e Scheduler<'e>,
    fds: Vec<&'e mut VcpuFd>,
    cpus: &'e [usize],
) -> Vec<(u32, ScopedJoinHandle<'s, ()>)> {
    let mut threads = Vec::new();
    for (id, fd) in fds.into_iter().enumerate() {
        let id = id as u32;
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn_scoped(s, move || {
                guarded(
                    || {
                        test_hooks::maybe_panic(test_hooks::VCPU0, id == 0);
                        vcpu_thread(id, fd, sched, cpus, cfg.grace)
                    },
                    |msg| sched.fail(id, &format!("vCPU {id} thread panicked: {msg}")),
                )
            });
        match spawned {
            Ok(h) => threads.push((id, h)),
            Err(e) => sched.fail(id, &format!("cannot start the thread of vCPU {id}: {e}")),
        }
    }
    threads
}

/// Starts the scheduler tick thread ([`tick_loop`]). Without a tick nothing stops the guest:
/// if it cannot start, or panics, every vCPU is force-stopped at once.
fn spawn_tick<'s, 'e>(
    s: &'s Scope<'s, 'e>,
    cfg: &'e RunConfig,
    sched: &'e Scheduler<'e>,
) -> Option<ScopedJoinHandle<'s, ()>> {
    let spawned = std::thread::Builder::new()
        .name("sched-tick".into())
        .spawn_scoped(s, move || {
            guarded(
                || {
                    test_hooks::maybe_panic(test_hooks::TICK, true);
                    tick_loop(cfg, sched)
                },
                |msg| sched.abandon_all(&format!("scheduler tick thread panicked: {msg}")),
            )
        });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            sched.abandon_all(&format!("cannot start the scheduler tick thread: {e}"));
            None
        }
    }
}

/// The tick thread's body: every `cfg.tick`, asks the scheduler's policy about the running
/// vCPUs; sets `stop` when the duration is over and force-stops stragglers after the grace.
fn tick_loop(cfg: &RunConfig, sched: &Scheduler<'_>) {
    // `validate` bounded both (a u64 of ns holds them, with room for the sums below).
    let duration = cfg.duration.as_nanos() as u64;
    let grace = cfg.grace.as_nanos() as u64;
    realtime_priority();
    loop {
        std::thread::sleep(cfg.tick);
        if sched.all_done() {
            break;
        }
        let now = sched.now();
        if sched.stop_time().is_none() && now >= duration {
            sched.request_stop();
        }
        // Every VM told to stop (the run's stop, or a failure in it) gets the grace period;
        // then its stragglers are force-stopped.
        sched.force_stop_overdue(now, grace);
        sched.tick(now);
    }
}

/// The run's main thread until every vCPU is done: reports progress, and ends the run if a
/// host thread ended while its work is not done.
fn supervise(
    sched: &Scheduler<'_>,
    vcpus: &[(u32, ScopedJoinHandle<'_, ()>)],
    tick: Option<&ScopedJoinHandle<'_, ()>>,
    progress_every: Duration,
    progress: &mut dyn FnMut(Progress),
) {
    let started = Instant::now();
    let mut next = progress_every;
    let mut tick_gone = false;
    while !sched.all_done() {
        std::thread::sleep(Duration::from_millis(20).min(progress_every));
        // Belt and braces (`guarded` already reports panics): a thread that ended while
        // its vCPU is not done would leave this loop waiting forever.
        for (id, h) in vcpus {
            if h.is_finished() && !sched.is_done(*id) {
                sched.fail(*id, &format!("vCPU {id} thread ended before its vCPU did"));
            }
        }
        if !tick_gone && tick.is_some_and(|h| h.is_finished()) && !sched.all_done() {
            tick_gone = true;
            sched.abandon_all("the scheduler tick thread ended before the vCPUs");
        }
        if started.elapsed() >= next {
            next += progress_every;
            progress(Progress {
                elapsed: started.elapsed(),
                ops: sched.progress(),
                slots: sched.slot_snapshots(),
            });
        }
    }
}

/// The TSC frequency measured over a run: TSC cycles against the host clock.
struct TscClock {
    started: Instant,
    tsc: u64,
}

impl TscClock {
    fn start() -> Self {
        TscClock {
            started: Instant::now(),
            tsc: rdtsc(),
        }
    }

    /// Hz since [`TscClock::start`] (0 if no time passed).
    fn hz(&self) -> f64 {
        let cycles = rdtsc().wrapping_sub(self.tsc);
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            cycles as f64 / secs
        } else {
            0.0
        }
    }
}

/// The run's report from the scheduler's final state, with its checks.
fn report(cfg: &RunConfig, specs: &[VmConfig], sched: &Scheduler<'_>, tsc_hz: f64) -> RunReport {
    let end_ns = sched.stop_time().unwrap_or_else(|| sched.now());
    let (vcpus, counter, mut failures) = sched.results();
    let vm_results = sched.vm_results();
    let snapshots = sched.slot_snapshots();
    let mut total = VcpuStats::default();
    let mut per_vcpu = Vec::new();
    for (id, (state, mut st)) in vcpus.into_iter().enumerate() {
        st.steal_ns = st.run_ns.saturating_sub(st.cpu_ns);
        if let VcpuState::Exited { code } = state
            && code != exit_code::OK
        {
            failures.push(format!(
                "{} exited with code {code} ({})",
                sched.name(id as u32),
                exit_code_name(code)
            ));
        }
        total.add(&st);
        per_vcpu.push(VcpuReport {
            vcpu: id as u32,
            vm: sched.vm_of(id as u32),
            vm_vcpu: sched.local_id(id as u32),
            state,
            stats: st,
            slot: snapshots[id],
        });
    }
    total.registered = per_vcpu.iter().all(|v| v.stats.registered);
    let mut vms = vm_reports(specs, &per_vcpu, &vm_results, sched, end_ns, &mut failures);
    if vms.len() == 1 {
        if failures.is_empty() {
            check_results(&total, counter, &mut failures);
        }
        vms[0].failures = failures.clone();
    }
    let ops: Vec<f64> = per_vcpu.iter().map(|v| v.stats.ops as f64).collect();
    let jain = crate::stats::jain(&ops);
    let ops_min = per_vcpu.iter().map(|v| v.stats.ops).min().unwrap_or(0);
    let ops_max = per_vcpu.iter().map(|v| v.stats.ops).max().unwrap_or(0);
    let secs = end_ns as f64 / 1e9;
    let grace_mean_cycles =
        (total.grace_periods > 0).then(|| total.grace_cycles as f64 / total.grace_periods as f64);
    let grace_mean_us = grace_mean_cycles
        .filter(|_| tsc_hz > 0.0)
        .map(|c| c / tsc_hz * 1e6);
    RunReport {
        lock: cfg.lock,
        policy: cfg.policy,
        vcpus: cfg.vcpus,
        pcpus: cfg.pcpus,
        slice_ms: cfg.slice.as_secs_f64() * 1e3,
        cs_iters: cfg.cs_iters,
        halt_poll: cfg.halt_poll,
        guest_hints: cfg.guest_hints,
        think_iters: cfg.think_iters,
        secs,
        ops_per_sec: if secs > 0.0 {
            total.ops as f64 / secs
        } else {
            0.0
        },
        ops_per_cpu_sec: if total.cpu_ns > 0 {
            total.ops as f64 / (total.cpu_ns as f64 / 1e9)
        } else {
            0.0
        },
        total,
        ops_min,
        ops_max,
        jain,
        counter,
        tsc_hz,
        grace_mean_cycles,
        grace_mean_us,
        cycles_per_pause: crate::sched::pause::cycles_per_pause(),
        wakeup: WakeLatency::of(&sched.wake_cycles(), tsc_hz),
        preempt_lateness: Latency::of_ns(&sched.lateness_ns()),
        lockfree_kicks: sched.lockfree_kicks(),
        ple_base_window: if cfg.policy.ple() {
            cfg.ple_base_window()
        } else {
            0
        },
        per_vcpu,
        vms,
        failures,
    }
}

/// The per-VM reports; with several VMs, each VM's own checks (its counter against its
/// writes), named by VM, go into `failures` as well as its own list.
fn vm_reports(
    specs: &[VmConfig],
    per_vcpu: &[VcpuReport],
    results: &[crate::sched::VmResult],
    sched: &Scheduler<'_>,
    end_ns: u64,
    failures: &mut Vec<String>,
) -> Vec<VmReport> {
    let secs = end_ns as f64 / 1e9;
    let weights: u32 = specs.iter().map(|v| v.weight).sum();
    let mut out = Vec::new();
    for (k, spec) in specs.iter().enumerate() {
        let mine: Vec<&VcpuReport> = per_vcpu.iter().filter(|v| v.vm == k as u32).collect();
        let mut total = VcpuStats::default();
        for v in &mine {
            total.add(&v.stats);
        }
        total.registered = mine.iter().all(|v| v.stats.registered);
        let counter = results.get(k).and_then(|r| r.counter);
        let prefix = format!("VM {k} ");
        let mut own: Vec<String> = failures
            .iter()
            .filter(|f| specs.len() > 1 && f.starts_with(&prefix))
            .cloned()
            .collect();
        if specs.len() > 1 && own.is_empty() {
            let mut checks = Vec::new();
            check_results(&total, counter, &mut checks);
            for c in checks {
                let f = format!("VM {k}: {c}");
                failures.push(f.clone());
                own.push(f);
            }
        }
        let ops: Vec<f64> = mine.iter().map(|v| v.stats.ops as f64).collect();
        out.push(VmReport {
            vm: k as u32,
            spec: spec.spec(),
            workload: spec.workload,
            vcpus: spec.vcpus,
            weight: spec.weight,
            misbehave: misbehave_name(spec.misbehave),
            first_vcpu: sched.global_id(k as u32, 0),
            ops_per_sec: if secs > 0.0 {
                total.ops as f64 / secs
            } else {
                0.0
            },
            ops_per_cpu_sec: if total.cpu_ns > 0 {
                total.ops as f64 / (total.cpu_ns as f64 / 1e9)
            } else {
                0.0
            },
            pcpu_ns: total.run_ns_before_stop,
            pcpu_share: 0.0,
            fair_share: f64::from(spec.weight) / f64::from(weights.max(1)),
            of_fair_share: 0.0,
            jain: crate::stats::jain(&ops),
            counter,
            stopped_at_secs: results
                .get(k)
                .and_then(|r| r.stopped_at)
                .map(|t| t as f64 / 1e9),
            total,
            failures: own,
        });
    }
    let held: u64 = out.iter().map(|v| v.pcpu_ns).sum();
    for v in &mut out {
        if held > 0 {
            v.pcpu_share = v.pcpu_ns as f64 / held as f64;
            v.of_fair_share = v.pcpu_share / v.fair_share;
        }
    }
    out
}

/// The run's own checks: the protected counter equals the writes, readers saw no violation.
fn check_results(total: &VcpuStats, counter: Option<u64>, failures: &mut Vec<String>) {
    match counter {
        None => failures.push("no vCPU reported the protected counter (COUNTER)".into()),
        Some(c) if c != total.writes => failures.push(format!(
            "mutual exclusion failed: protected counter {c} != sum of WRITES {}",
            total.writes
        )),
        Some(_) => {}
    }
    if total.violations != 0 {
        failures.push(format!(
            "readers saw {} invariant violations",
            total.violations
        ));
    }
}
