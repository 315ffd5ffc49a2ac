//! The user-space vCPU scheduler: N vCPUs share P pCPU slots.
//!
//! A vCPU thread calls `KVM_RUN` only while it holds a slot; the others block on their condvar.
//! Slots are handed over in FIFO order (a run queue) at slice end, on yield, on halt and on
//! exit. A scheduler thread ticks at a fine granularity (default 100 us) and asks the
//! [`Policy`] what to do with each running vCPU. The mechanics live here; the decisions are
//! pure functions of (vCPU state, hint snapshot, clock) in `baseline.rs`, `ple.rs`, `ecs.rs`,
//! so they can be unit-tested and could move into a host scheduler.
//!
//! Preemption is a signal that sets `immediate_exit` (see `Scheduler::request_preempt`); the
//! vCPU thread acknowledges it when `KVM_RUN` returns `EINTR`, and only then is the slot handed
//! to the next vCPU, so two vCPUs never run on one slot.
//!
//! Metrics are kept here, host-side, and are authoritative (the guest may scribble on its
//! slot); a copy goes into each slot's counters for the guest to read.

pub mod baseline;
pub mod ecs;
pub mod ple;

use crate::config::{PolicyKind, RunConfig};
use crate::hypercall::Request;
use crate::page::HintArea;
use crate::vcpu::{VcpuError, VcpuState, kick_signal, set_immediate_exit};
use crate::workload::{WorkloadConfig, report};
use core::fmt;
use core::sync::atomic::Ordering;
use ecs_sys::abi::HintSlot;
use ecs_sys::hypercall::Status;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the policy sees of a running vCPU at a tick. Times in ns since the run started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickView {
    /// Now.
    pub now: u64,
    /// When this vCPU's current slice began.
    pub slice_start: u64,
    /// Slice length.
    pub slice: u64,
    /// The guest's `cs_depth` (any value: guest-written).
    pub cs_depth: u32,
    /// The guest's `blocking_depth` (blocking-mutex sections held; guest-written).
    pub blocking_depth: u32,
    /// The wall-clock cap of the extension granted in this slice, if any.
    pub ext_until: Option<u64>,
    /// CPU time the vCPU's thread has consumed since the extension was granted (0 without
    /// one). The extension's length is measured in this time: a vCPU thread that the host
    /// kernel descheduled (this machine is shared) did not use its extension.
    pub ext_cpu_ns: u64,
    /// Runnable vCPUs waiting for a slot.
    pub waiting: usize,
}

/// A policy's decision for a running vCPU at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickDecision {
    /// Keep running.
    Continue,
    /// The slice is over but nobody waits: start a new slice, no preemption.
    NewSlice,
    /// Take the slot away now.
    Preempt,
    /// Defer the preemption (and set `ext_granted`) for the policy's extension, measured in
    /// the vCPU's CPU time, and never past `until` in wall-clock time.
    Extend {
        /// Wall-clock cap, ns since start.
        until: u64,
    },
}

/// What the policy sees of a directed yield.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetView {
    /// The yielding vCPU.
    pub caller: u32,
    /// The vCPU it yields to.
    pub target: u32,
    /// Whether the target is runnable and waiting for a slot (preempted).
    pub target_queued: bool,
}

/// Where a directed yield's slot goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YieldChoice {
    /// To this vCPU (a directed yield served).
    Directed(u32),
    /// To the head of the run queue (a plain yield).
    QueueHead,
}

/// A scheduling policy: pure decisions, no state of its own beyond its parameters.
pub trait Policy: Send + Sync + fmt::Debug {
    /// Which policy this is.
    fn kind(&self) -> PolicyKind;
    /// The `FEATURE_*` bits the header advertises.
    fn features(&self) -> u32;
    /// The pause-loop window advertised (0 = none).
    fn ple_window(&self) -> u32 {
        0
    }
    /// Whether the core keeps `preempted`/`overloaded` current in the slots.
    fn publishes_hints(&self) -> bool {
        false
    }
    /// The decision for a running vCPU at a tick.
    fn at_tick(&self, v: &TickView) -> TickDecision;
    /// Where a `YieldTo` sends the caller's slot.
    fn on_yield_to(&self, t: &TargetView) -> YieldChoice;
    /// Whether a `PauseExit` gives the caller's slot to the queue head.
    fn on_pause_exit(&self) -> bool;
}

/// The policy object for a run.
pub fn policy_for(cfg: &RunConfig) -> Box<dyn Policy> {
    match cfg.policy {
        PolicyKind::Baseline => Box::new(baseline::Baseline),
        PolicyKind::Ple => Box::new(ple::Ple {
            window: cfg.ple_window,
        }),
        PolicyKind::Ecs => Box::new(ecs::Ecs::new(
            cfg.effective_extension().as_nanos() as u64,
            cfg.slice.as_nanos() as u64,
        )),
        PolicyKind::EcsPle => Box::new(
            ecs::Ecs::new(
                cfg.effective_extension().as_nanos() as u64,
                cfg.slice.as_nanos() as u64,
            )
            .with_ple(cfg.ple_window),
        ),
    }
}

/// Per-vCPU host-side metrics and guest reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VcpuStats {
    /// Operations (guest report `OPS`).
    pub ops: u64,
    /// Writes (guest report `WRITES`).
    pub writes: u64,
    /// Reader violations (guest report `VIOLATIONS`).
    pub violations: u64,
    /// Involuntary preemptions at slice end.
    pub preemptions: u64,
    /// Of those, with `cs_depth > 0` at the moment of preemption.
    pub preemptions_in_cs: u64,
    /// Of those, with `blocking_depth > 0` (a blocking-mutex holder) at that moment.
    pub preemptions_in_blocking: u64,
    /// Slice extensions granted.
    pub extensions: u64,
    /// Preemptions at the end of an extension (the bound was reached).
    pub preemptions_at_bound: u64,
    /// Directed yields served to this vCPU (another gave it its slot).
    pub directed_yields: u64,
    /// Pause-loop exits.
    pub ple_exits: u64,
    /// Voluntary yields (Yield, undirected YieldTo, PauseExit that gave the slot away).
    pub yields: u64,
    /// Halts (Wait that gave up the slot).
    pub halts: u64,
    /// Hypercalls answered with an error status.
    pub bad_hypercalls: u64,
    /// Time this vCPU held a slot, ns.
    pub run_ns: u64,
    /// Of that, before the stop request (the measured part of the run), ns.
    pub run_ns_before_stop: u64,
    /// CPU time the host gave this vCPU's thread over the whole run, ns (`KVM_RUN` time plus
    /// the thread's share of exit handling; blocked time is not counted).
    pub cpu_ns: u64,
    /// Whether it registered the hint area.
    pub registered: bool,
    /// Its exit code, if it exited.
    pub exit_code: Option<u32>,
    /// RCU grace periods (report `GRACE_PERIODS`).
    pub grace_periods: u64,
    /// RCU grace-period cycles (report `GRACE_CYCLES`).
    pub grace_cycles: u64,
    /// Cycles the workload ran (report `RUN_CYCLES`).
    pub run_cycles: u64,
    /// Garbage hypercalls the guest saw rejected (report `GARBAGE_REJECTED`).
    pub garbage_rejected: u64,
}

/// The guest-visible fields of one hint slot at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SlotSnapshot {
    /// `cs_depth`.
    pub cs_depth: u32,
    /// `preempted`.
    pub preempted: u32,
    /// `overloaded`.
    pub overloaded: u32,
    /// `ext_granted`.
    pub ext_granted: u32,
    /// `nr_preempted`.
    pub nr_preempted: u32,
    /// `nr_preempted_in_cs`.
    pub nr_preempted_in_cs: u32,
    /// `nr_extensions`.
    pub nr_extensions: u32,
    /// `nr_directed_yields`.
    pub nr_directed_yields: u32,
    /// `progress`.
    pub progress: u64,
}

impl SlotSnapshot {
    /// Reads `slot` (field by field; the guest may be writing).
    pub fn of(slot: &HintSlot) -> Self {
        let r = |a: &core::sync::atomic::AtomicU32| a.load(Ordering::Acquire);
        SlotSnapshot {
            cs_depth: r(&slot.cs_depth),
            preempted: r(&slot.preempted),
            overloaded: r(&slot.overloaded),
            ext_granted: r(&slot.ext_granted),
            nr_preempted: r(&slot.nr_preempted),
            nr_preempted_in_cs: r(&slot.nr_preempted_in_cs),
            nr_extensions: r(&slot.nr_extensions),
            nr_directed_yields: r(&slot.nr_directed_yields),
            progress: slot.progress.load(Ordering::Relaxed),
        }
    }
}

/// A vCPU's scheduling record.
#[derive(Debug)]
struct VcpuSched {
    state: VcpuState,
    slice_start: u64,
    ext_until: Option<u64>,
    ext_cpu_start: u64,
    cpu_clock: Option<libc::clockid_t>,
    kick_pending: bool,
    preempt_pending: bool,
    force_stop: bool,
    run_since: Option<u64>,
    thread: Option<libc::pthread_t>,
    stats: VcpuStats,
}

/// Everything the scheduler lock protects.
#[derive(Debug)]
struct Core {
    vcpus: Vec<VcpuSched>,
    queue: VecDeque<u32>,
    slots: Vec<Option<u32>>,
    overloaded_published: bool,
    stopping: Option<u64>,
    counter: Option<u64>,
    failures: Vec<String>,
}

/// What the vCPU thread does after a scheduler call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Re-enter the guest.
    Resume,
    /// The slot was taken: wait for a slot again.
    Descheduled,
    /// The vCPU is done (exited or failed).
    Stopped,
    /// The host force-stops this vCPU (it did not exit in time): read its RIP and report.
    ForceStop,
}

/// The scheduler shared by the vCPU threads, the tick thread and the run's main thread.
pub struct Scheduler<'m> {
    core: Mutex<Core>,
    cvs: Vec<Condvar>,
    policy: Box<dyn Policy>,
    area: HintArea<'m>,
    config: &'m WorkloadConfig,
    start: Instant,
    slice: u64,
    hints: bool,
    nr_pcpus: u32,
}

impl fmt::Debug for Scheduler<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("policy", &self.policy)
            .field("nr_pcpus", &self.nr_pcpus)
            .finish_non_exhaustive()
    }
}

impl<'m> Scheduler<'m> {
    /// A scheduler for `area.slots().len()` vCPUs on `nr_pcpus` slots. vCPUs 0..P start on
    /// the slots; the rest wait in the queue in index order.
    pub fn new(
        area: HintArea<'m>,
        config: &'m WorkloadConfig,
        policy: Box<dyn Policy>,
        nr_pcpus: u32,
        slice: Duration,
    ) -> Self {
        let n = area.slots().len();
        let vcpus = (0..n)
            .map(|_| VcpuSched {
                state: VcpuState::Runnable,
                slice_start: 0,
                ext_until: None,
                ext_cpu_start: 0,
                cpu_clock: None,
                kick_pending: false,
                preempt_pending: false,
                force_stop: false,
                run_since: None,
                thread: None,
                stats: VcpuStats::default(),
            })
            .collect();
        let hints = policy.publishes_hints();
        let s = Scheduler {
            core: Mutex::new(Core {
                vcpus,
                queue: (0..n as u32).collect(),
                slots: vec![None; nr_pcpus as usize],
                overloaded_published: false,
                stopping: None,
                counter: None,
                failures: Vec::new(),
            }),
            cvs: (0..n).map(|_| Condvar::new()).collect(),
            policy,
            area,
            config,
            start: Instant::now(),
            slice: slice.as_nanos() as u64,
            hints,
            nr_pcpus,
        };
        {
            let mut core = s.lock();
            if hints {
                for slot in area.slots() {
                    slot.preempted.store(1, Ordering::Release);
                }
            }
            for k in 0..nr_pcpus {
                if let Some(h) = core.queue.pop_front() {
                    s.grant(&mut core, h, k, 0);
                }
            }
            s.sync_overloaded(&mut core);
        }
        s
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A poisoned lock means a host thread panicked (a host bug); the data is still
        // consistent enough to finish and report, so carry on.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Nanoseconds since the scheduler was created.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// The policy.
    pub fn policy(&self) -> &dyn Policy {
        &*self.policy
    }

    /// The hint area.
    pub fn area(&self) -> HintArea<'m> {
        self.area
    }

    /// Number of vCPUs.
    pub fn nr_vcpus(&self) -> u32 {
        self.cvs.len() as u32
    }

    fn slot(&self, id: u32) -> &'m HintSlot {
        self.area.hint_slot(id)
    }

    /// CPU time consumed by vCPU `id`'s thread, ns (wall-clock `now` if its clock is unknown).
    fn cpu_ns(&self, core: &Core, id: u32, now: u64) -> u64 {
        let Some(clock) = core.vcpus[id as usize].cpu_clock else {
            return now;
        };
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `clock` is the CPU-time clock of a thread of this process that is alive
        // (vCPU threads are joined after the scheduler's last use); `ts` is a valid out-pointer.
        if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
            return now;
        }
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// The policy's view of running vCPU `id` at `now`.
    fn view(&self, core: &Core, id: u32, now: u64) -> TickView {
        let v = &core.vcpus[id as usize];
        TickView {
            now,
            slice_start: v.slice_start,
            slice: self.slice,
            cs_depth: self.slot(id).cs_depth.load(Ordering::Acquire),
            blocking_depth: self.slot(id).blocking_depth.load(Ordering::Acquire),
            ext_until: v.ext_until,
            ext_cpu_ns: if v.ext_until.is_some() {
                self.cpu_ns(core, id, now).saturating_sub(v.ext_cpu_start)
            } else {
                0
            },
            waiting: core.queue.len(),
        }
    }

    // ----- slot hand-over (all with the lock held) -----

    /// Gives pCPU slot `k` to vCPU `h` (taken off the queue) and wakes its thread.
    fn grant(&self, core: &mut Core, h: u32, k: u32, now: u64) {
        core.queue.retain(|&q| q != h);
        let v = &mut core.vcpus[h as usize];
        v.state = VcpuState::Running { slot: k };
        v.slice_start = now;
        v.ext_until = None;
        v.run_since = Some(now);
        core.slots[k as usize] = Some(h);
        let slot = self.slot(h);
        if self.hints {
            slot.ext_granted.store(0, Ordering::Relaxed);
            slot.preempted.store(0, Ordering::Release);
        }
        self.cvs[h as usize].notify_one();
    }

    /// Takes `id` (whose new state the caller sets) off slot `k`, and gives the slot to
    /// `next` if given, else to the queue head, else leaves it idle.
    fn vacate(&self, core: &mut Core, id: u32, k: u32, next: Option<u32>, now: u64) {
        let v = &mut core.vcpus[id as usize];
        if let Some(since) = v.run_since.take() {
            v.stats.run_ns += now.saturating_sub(since);
        }
        v.ext_until = None;
        // The vCPU leaves the slot anyway: a pending preemption is moot. (Its thread clears a
        // stale `immediate_exit` itself, when it gets a slot again: `wait_for_slot`.)
        v.preempt_pending = false;
        let slot = self.slot(id);
        if self.hints {
            slot.ext_granted.store(0, Ordering::Relaxed);
            slot.preempted.store(1, Ordering::Release);
        }
        core.slots[k as usize] = None;
        if let Some(h) = next.or_else(|| core.queue.front().copied()) {
            self.grant(core, h, k, now);
        }
        self.sync_overloaded(core);
    }

    /// Makes `id` runnable at the back of the queue (or, `boost`ed, at its head); gives it an
    /// idle slot if there is one.
    fn enqueue(&self, core: &mut Core, id: u32, now: u64, boost: bool) {
        core.vcpus[id as usize].state = VcpuState::Runnable;
        if boost {
            core.queue.push_front(id);
        } else {
            core.queue.push_back(id);
        }
        if let Some(k) = core.slots.iter().position(Option::is_none)
            && let Some(h) = core.queue.pop_front()
        {
            self.grant(core, h, k as u32, now);
        }
        self.sync_overloaded(core);
    }

    /// Publishes `overloaded` (a runnable vCPU waits for a slot) in every slot when it changes.
    fn sync_overloaded(&self, core: &mut Core) {
        let over = !core.queue.is_empty();
        if self.hints && over != core.overloaded_published {
            for s in self.area.slots() {
                s.overloaded.store(u32::from(over), Ordering::Release);
            }
            core.overloaded_published = over;
        }
    }

    fn copy_counters(&self, core: &Core, id: u32) {
        let st = &core.vcpus[id as usize].stats;
        let slot = self.slot(id);
        slot.nr_preempted
            .store(st.preemptions as u32, Ordering::Relaxed);
        slot.nr_preempted_in_cs
            .store(st.preemptions_in_cs as u32, Ordering::Relaxed);
        slot.nr_extensions
            .store(st.extensions as u32, Ordering::Relaxed);
        slot.nr_directed_yields
            .store(st.directed_yields as u32, Ordering::Relaxed);
    }

    /// `id` gives its slot to `next` (or the queue head) and goes to the back of the queue,
    /// if anyone waits; otherwise it keeps running.
    fn yield_slot(&self, core: &mut Core, id: u32, next: Option<u32>, now: u64) -> After {
        let VcpuState::Running { slot: k } = core.vcpus[id as usize].state else {
            return After::Resume;
        };
        if core.queue.is_empty() {
            // Nobody to give the slot to: an extension is over, the slice continues.
            let v = &mut core.vcpus[id as usize];
            if v.ext_until.take().is_some() {
                v.slice_start = now;
            }
            if self.hints {
                self.slot(id).ext_granted.store(0, Ordering::Relaxed);
            }
            return After::Resume;
        }
        core.vcpus[id as usize].stats.yields += 1;
        core.vcpus[id as usize].state = VcpuState::Runnable;
        // A directed yield swaps places: the target takes the caller's slot and the caller the
        // target's place in the run queue (as Linux's yield_to gives the target the caller's
        // turn without sending the caller to the back). The round-robin order is kept, so
        // vCPUs keep the order in which FIFO locks serve them. A plain yield goes to the back.
        match next.and_then(|t| core.queue.iter().position(|&q| q == t)) {
            Some(i) => core.queue[i] = id,
            None => core.queue.push_back(id),
        }
        self.vacate(core, id, k, next, now);
        After::Descheduled
    }

    /// Ends the run early (a failure): the guest is told to stop now.
    fn stop_now(&self, core: &mut Core, now: u64) {
        if core.stopping.is_none() {
            core.stopping = Some(now);
            for v in &mut core.vcpus {
                let current = v.run_since.map_or(0, |since| now.saturating_sub(since));
                v.stats.run_ns_before_stop = v.stats.run_ns + current;
            }
            self.config.stop.store(1, Ordering::Release);
            // Halted vCPUs get a spurious wake-up so they see `stop`.
            for id in 0..self.nr_vcpus() {
                if core.vcpus[id as usize].state == VcpuState::Halted {
                    self.enqueue(core, id, now, false);
                }
            }
        }
    }

    // ----- calls from the vCPU threads -----

    /// Records the calling thread as vCPU `id`'s (for the preemption signal).
    pub fn register_thread(&self, id: u32) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let mut clock: libc::clockid_t = 0;
        // SAFETY: `me` is the calling (live) thread; `clock` is a valid out-pointer.
        let ok = unsafe { libc::pthread_getcpuclockid(me, &mut clock) } == 0;
        let mut core = self.lock();
        core.vcpus[id as usize].thread = Some(me);
        core.vcpus[id as usize].cpu_clock = ok.then_some(clock);
    }

    /// Blocks until vCPU `id` holds a slot (`Ok(slot)`) or must stop (`Err(After)`).
    pub fn wait_for_slot(&self, id: u32) -> Result<u32, After> {
        let mut core = self.lock();
        loop {
            let v = &mut core.vcpus[id as usize];
            if v.force_stop {
                return Err(After::ForceStop);
            }
            match v.state {
                VcpuState::Running { slot } => {
                    // Only this (vCPU) thread writes its `immediate_exit`, besides its signal
                    // handler: drop a stale preemption, keep one requested since the grant.
                    set_immediate_exit(v.preempt_pending);
                    return Ok(slot);
                }
                s if s.is_terminal() => return Err(After::Stopped),
                _ => {}
            }
            core = self.cvs[id as usize]
                .wait(core)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// `KVM_RUN` returned `EINTR`: a preemption (acknowledged here: the slot goes to the next
    /// vCPU), a force-stop, or a stray signal (resume).
    pub fn on_eintr(&self, id: u32) -> After {
        let now = self.now();
        let mut guard = self.lock();
        let core = &mut *guard;
        // Acknowledge the signal (this is the vCPU thread). Safe under the lock: a request made
        // before it was taken is visible below; a later one sends a new signal, whose handler
        // sets the flag again (at worst one spurious EINTR, which resumes).
        set_immediate_exit(false);
        let v = &mut core.vcpus[id as usize];
        if v.force_stop {
            return After::ForceStop;
        }
        if !v.preempt_pending {
            return After::Resume;
        }
        let VcpuState::Running { slot: k } = v.state else {
            v.preempt_pending = false;
            return After::Resume;
        };
        // The vCPU is out of guest mode: its depth is stable, this is "the moment of
        // preemption". The tick decided on a snapshot taken some microseconds ago (the signal
        // takes that long to land, longer under nested virtualization), and the guest may have
        // entered a critical section since: the policy decides again on the stable state.
        let view = self.view(core, id, now);
        let cs_depth = view.cs_depth;
        let v = &mut core.vcpus[id as usize];
        match self.policy.at_tick(&view) {
            TickDecision::Preempt => {}
            decision => {
                v.preempt_pending = false;
                self.apply(core, id, decision);
                return After::Resume;
            }
        }
        let v = &mut core.vcpus[id as usize];
        let in_cs = cs_depth != 0;
        v.stats.preemptions_in_blocking += u64::from(view.blocking_depth != 0);
        v.stats.preemptions += 1;
        v.stats.preemptions_at_bound += u64::from(v.ext_until.is_some());
        v.stats.preemptions_in_cs += u64::from(in_cs);
        v.state = VcpuState::Runnable;
        core.queue.push_back(id);
        self.vacate(core, id, k, None, now);
        self.copy_counters(core, id);
        After::Descheduled
    }

    /// Serves a decoded hypercall of vCPU `id`; writes `Status::Ok` into its slot first.
    pub fn hypercall(&self, id: u32, req: Request) -> After {
        let slot = self.slot(id);
        slot.hc_status.store(Status::Ok as u32, Ordering::Release);
        let now = self.now();
        let mut guard = self.lock();
        let core = &mut *guard;
        let after = match req {
            Request::Register => {
                core.vcpus[id as usize].stats.registered = true;
                After::Resume
            }
            Request::Report { key, value } => {
                let st = &mut core.vcpus[id as usize].stats;
                match key {
                    report::OPS => st.ops = value,
                    report::WRITES => st.writes = value,
                    report::VIOLATIONS => st.violations = value,
                    report::GRACE_PERIODS => st.grace_periods = value,
                    report::GRACE_CYCLES => st.grace_cycles = value,
                    report::RUN_CYCLES => st.run_cycles = value,
                    report::GARBAGE_REJECTED => st.garbage_rejected = value,
                    report::COUNTER => core.counter = Some(value),
                    _ => {}
                }
                After::Resume
            }
            Request::Exit { code } => {
                let v = &mut core.vcpus[id as usize];
                v.stats.exit_code = Some(code);
                let prev = core::mem::replace(&mut v.state, VcpuState::Exited { code });
                if let VcpuState::Running { slot: k } = prev {
                    self.vacate(core, id, k, None, now);
                }
                After::Stopped
            }
            Request::Yield => self.yield_slot(core, id, None, now),
            Request::YieldTo(t) => {
                let view = TargetView {
                    caller: id,
                    target: t,
                    target_queued: core.vcpus[t as usize].state == VcpuState::Runnable
                        && core.queue.contains(&t),
                };
                match self.policy.on_yield_to(&view) {
                    YieldChoice::Directed(n) if n == t && view.target_queued && t != id => {
                        core.vcpus[t as usize].stats.directed_yields += 1;
                        let a = self.yield_slot(core, id, Some(t), now);
                        self.copy_counters(core, t);
                        a
                    }
                    _ => self.yield_slot(core, id, None, now),
                }
            }
            Request::Wait => {
                let v = &mut core.vcpus[id as usize];
                if v.kick_pending || core.stopping.is_some() {
                    v.kick_pending = false;
                    After::Resume
                } else if let VcpuState::Running { slot: k } = v.state {
                    v.stats.halts += 1;
                    v.state = VcpuState::Halted;
                    self.vacate(core, id, k, None, now);
                    After::Descheduled
                } else {
                    After::Resume
                }
            }
            Request::Kick(t) => {
                let target = &mut core.vcpus[t as usize];
                match target.state {
                    // Wake-up boost (Xen credit's BOOST, CFS's wake-up placement): a vCPU
                    // woken from a halt runs next, so a woken lock waiter does not wait a
                    // whole round of the run queue.
                    VcpuState::Halted => self.enqueue(core, t, now, true),
                    s if s.is_terminal() => {}
                    _ => target.kick_pending = true,
                }
                After::Resume
            }
            Request::PauseExit => {
                core.vcpus[id as usize].stats.ple_exits += 1;
                if self.policy.on_pause_exit() {
                    self.yield_slot(core, id, None, now)
                } else {
                    After::Resume
                }
            }
        };
        self.copy_counters(core, id);
        after
    }

    /// Records an error status answered to vCPU `id`.
    pub fn bad_hypercall(&self, id: u32, status: Status) {
        self.slot(id)
            .hc_status
            .store(status as u32, Ordering::Release);
        self.lock().vcpus[id as usize].stats.bad_hypercalls += 1;
    }

    /// vCPU `id` failed (a fault, a bad exit): record it, free its slot, end the run.
    pub fn fail(&self, id: u32, err: &VcpuError) {
        let now = self.now();
        let mut guard = self.lock();
        let core = &mut *guard;
        core.failures.push(err.to_string());
        let v = &mut core.vcpus[id as usize];
        let prev = core::mem::replace(&mut v.state, VcpuState::Failed);
        if let VcpuState::Running { slot: k } = prev {
            self.vacate(core, id, k, None, now);
        }
        core.queue.retain(|&q| q != id);
        self.sync_overloaded(core);
        self.stop_now(core, now);
    }

    /// Records the CPU time vCPU `id`'s thread used (called by the thread as it ends).
    pub fn record_cpu(&self, id: u32, cpu_ns: u64) {
        self.lock().vcpus[id as usize].stats.cpu_ns = cpu_ns;
    }

    /// vCPU `id`'s thread could not be started, or panicked: `why` is recorded, the vCPU is
    /// marked failed (unless it had already finished) and the run ends.
    pub fn abandon(&self, id: u32, why: &str) {
        let now = self.now();
        let mut guard = self.lock();
        let core = &mut *guard;
        core.failures.push(why.to_owned());
        if !core.vcpus[id as usize].state.is_terminal() {
            let prev = core::mem::replace(&mut core.vcpus[id as usize].state, VcpuState::Failed);
            if let VcpuState::Running { slot: k } = prev {
                self.vacate(core, id, k, None, now);
            }
            core.queue.retain(|&q| q != id);
            self.sync_overloaded(core);
        }
        self.stop_now(core, now);
    }

    /// The run cannot go on (`why`): every vCPU is force-stopped at once.
    pub fn abandon_all(&self, why: &str) {
        {
            let now = self.now();
            let mut guard = self.lock();
            guard.failures.push(why.to_owned());
            self.stop_now(&mut guard, now);
        }
        self.force_stop_all();
    }

    /// vCPU `id` was force-stopped at `rip`.
    pub fn force_stopped(&self, id: u32, rip: Option<u64>, grace: Duration) {
        let now = self.now();
        let mut guard = self.lock();
        let core = &mut *guard;
        let rip = rip.map_or_else(|| "unknown".to_owned(), |r| format!("{r:#x}"));
        core.failures.push(format!(
            "vCPU {id} did not stop within {grace:?} of the stop request: rip={rip}"
        ));
        let v = &mut core.vcpus[id as usize];
        let prev = core::mem::replace(&mut v.state, VcpuState::ForceStopped);
        if let VcpuState::Running { slot: k } = prev {
            self.vacate(core, id, k, None, now);
        }
        core.queue.retain(|&q| q != id);
        self.sync_overloaded(core);
    }

    // ----- calls from the tick thread -----

    /// Preempts vCPU `id`, which holds a slot.
    fn request_preempt(&self, core: &mut Core, id: u32) {
        let v = &mut core.vcpus[id as usize];
        v.preempt_pending = true;
        // Ordering: `preempt_pending` (under the lock), then the signal, whose handler runs on
        // the vCPU thread and sets that thread's `immediate_exit` (vcpu.rs, Firecracker's
        // pattern: only the vCPU thread ever writes its kvm_run). KVM checks `immediate_exit`
        // on entry to KVM_RUN, so a vCPU thread that is between two KVM_RUNs (serving an exit)
        // when the signal lands returns EINTR at its next entry; a vCPU inside KVM_RUN is taken
        // out of guest mode by the signal's IPI. A signal alone would leave a window: it lands
        // while the thread is outside KVM_RUN, then the thread enters with nothing pending and
        // runs on until the next tick. The thread re-syncs its flag with `preempt_pending`
        // under this lock (`on_eintr`, `wait_for_slot`), so no request is lost.
        if let Some(t) = v.thread {
            // SAFETY: `t` is the live thread of vCPU `id` (registered by itself and joined only
            // after the scheduler stops); the kick signal's handler is installed
            // (vcpu::install_signal, before any vCPU thread starts).
            unsafe { libc::pthread_kill(t, kick_signal()) };
        }
    }

    /// One scheduler tick at time `now`: applies the policy to every running vCPU.
    pub fn tick(&self, now: u64) {
        let mut guard = self.lock();
        let core = &mut *guard;
        for k in 0..self.nr_pcpus as usize {
            let Some(id) = core.slots[k] else { continue };
            let v = &core.vcpus[id as usize];
            if v.preempt_pending || v.force_stop {
                continue;
            }
            let view = self.view(core, id, now);
            match self.policy.at_tick(&view) {
                TickDecision::Preempt => self.request_preempt(core, id),
                decision => self.apply(core, id, decision),
            }
        }
    }

    /// Applies a decision other than `Preempt` to running vCPU `id`.
    fn apply(&self, core: &mut Core, id: u32, decision: TickDecision) {
        let now = self.now();
        let v = &mut core.vcpus[id as usize];
        match decision {
            TickDecision::Continue | TickDecision::Preempt => {}
            TickDecision::NewSlice => {
                v.slice_start = now;
                v.ext_until = None;
                if self.hints {
                    self.slot(id).ext_granted.store(0, Ordering::Relaxed);
                }
            }
            TickDecision::Extend { until } => {
                v.ext_until = Some(until);
                let cpu = self.cpu_ns(core, id, now);
                let v = &mut core.vcpus[id as usize];
                v.ext_cpu_start = cpu;
                v.stats.extensions += 1;
                self.slot(id).ext_granted.store(1, Ordering::Release);
                self.copy_counters(core, id);
            }
        }
    }

    /// Sets the guest's `stop` flag (the run's duration is over); wakes halted vCPUs.
    pub fn request_stop(&self) {
        let now = self.now();
        let mut guard = self.lock();
        let core = &mut *guard;
        self.stop_now(core, now);
    }

    /// When the stop was requested (ns since start), if it was.
    pub fn stop_time(&self) -> Option<u64> {
        self.lock().stopping
    }

    /// Force-stops every vCPU that has not finished.
    pub fn force_stop_all(&self) {
        let mut guard = self.lock();
        let core = &mut *guard;
        for id in 0..self.nr_vcpus() {
            let v = &mut core.vcpus[id as usize];
            if v.state.is_terminal() || v.force_stop {
                continue;
            }
            v.force_stop = true;
            if matches!(v.state, VcpuState::Running { .. }) {
                self.request_preempt(core, id);
            }
            self.cvs[id as usize].notify_one();
        }
    }

    /// Whether vCPU `id` has finished (exited, failed or force-stopped).
    pub fn is_done(&self, id: u32) -> bool {
        self.lock().vcpus[id as usize].state.is_terminal()
    }

    /// Whether every vCPU has finished (exited, failed or force-stopped).
    pub fn all_done(&self) -> bool {
        self.lock().vcpus.iter().all(|v| v.state.is_terminal())
    }

    /// The guest's live progress (sum of the slots' `progress`, saturating: the guest writes
    /// them, and may write anything).
    pub fn progress(&self) -> u64 {
        self.area
            .slots()
            .iter()
            .map(|s| s.progress.load(Ordering::Relaxed))
            .fold(0, u64::saturating_add)
    }

    /// A snapshot of every slot's hint fields and counters (guest-visible state).
    pub fn slot_snapshots(&self) -> Vec<SlotSnapshot> {
        self.area.slots().iter().map(SlotSnapshot::of).collect()
    }

    /// The final per-vCPU statistics, the reported counter and the failures so far.
    pub fn results(&self) -> (Vec<(VcpuState, VcpuStats)>, Option<u64>, Vec<String>) {
        let core = self.lock();
        (
            core.vcpus
                .iter()
                .map(|v| (v.state, v.stats.clone()))
                .collect(),
            core.counter,
            core.failures.clone(),
        )
    }
}
