//! What the scheduler knows of each vCPU, and everything its lock protects.
//!
//! ```text
//!            grant                 preempt / yield              exit hypercall
//! Runnable ---------> Running ---------------------> Runnable   Running -----> Exited
//!    ^                   |  wait (no kick pending)               fault / bad exit -> Failed
//!    |      kick         v                                       grace expired   -> ForceStopped
//!    +-------------- Halted
//! ```
//!
//! The scheduler owns these states and every transition between them; the vCPU thread only
//! learns what to do next ([`After`]).

use super::metrics::VcpuStats;
use super::os::ThreadClock;
use super::run_queue::RunQueue;
use core::fmt;

/// A vCPU's scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum VcpuState {
    /// Waiting in the run queue for a pCPU (preempted).
    Runnable,
    /// Holding pCPU `pcpu`; the thread may be inside `KVM_RUN`.
    Running {
        /// The pCPU (named `slot` in the JSON, as before).
        #[serde(rename = "slot")]
        pcpu: u32,
    },
    /// Halted in `Wait` until kicked.
    Halted,
    /// The guest exited with `code`.
    Exited {
        /// Exit code.
        code: u32,
    },
    /// The vCPU faulted or exited in a way the shim does not serve.
    Failed,
    /// The host stopped it after the grace period.
    ForceStopped,
}

impl VcpuState {
    /// Whether the vCPU is done.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            VcpuState::Exited { .. } | VcpuState::Failed | VcpuState::ForceStopped
        )
    }

    /// The pCPU it holds, if it runs.
    pub fn pcpu(self) -> Option<u32> {
        match self {
            VcpuState::Running { pcpu } => Some(pcpu),
            _ => None,
        }
    }
}

/// What the vCPU thread does after a scheduler call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Re-enter the guest.
    Resume,
    /// The pCPU was taken: wait for a pCPU again.
    Descheduled,
    /// The vCPU is done (exited or failed).
    Stopped,
    /// The host force-stops this vCPU (it did not exit in time): read its RIP and report.
    ForceStop,
    /// Halt-polling: wait for a kick keeping the pCPU until `until` (ns since the start), then
    /// ask the scheduler again ([`crate::sched::Scheduler::poll`]).
    Poll {
        /// When polling ends.
        until: u64,
    },
}

/// Wake-up latency samples kept per vCPU (the first ones of the run).
pub const WAKE_SAMPLES: usize = 1 << 16;

/// A vCPU's scheduling record.
pub(super) struct VcpuRecord {
    pub(super) state: VcpuState,
    pub(super) slice_start: u64,
    pub(super) ext_until: Option<u64>,
    pub(super) ext_cpu_start: u64,
    pub(super) clock: Option<ThreadClock>,
    pub(super) kick_pending: bool,
    pub(super) preempt_pending: bool,
    pub(super) force_stop: bool,
    pub(super) run_since: Option<u64>,
    /// (wall clock, thread CPU time) at the previous tick while it holds a pCPU; `None` right
    /// after a grant (the thread was blocked, not descheduled).
    pub(super) last_tick: Option<(u64, u64)>,
    /// Whether the host has descheduled its thread (published as `preempted`).
    pub(super) host_stalled: bool,
    /// Its current pause-loop window in spins (KVM's per-vCPU `ple_window`).
    pub(super) ple_window: u32,
    /// It last left its pCPU through a pause-loop exit (it was spinning): KVM's
    /// `in_spin_loop`, which makes it eligible as a yield target only every other time.
    pub(super) spun_recently: bool,
    /// KVM's `dy_eligible` toggle.
    pub(super) dy_eligible: bool,
    /// Its halt-polling window, ns (KVM's per-vCPU `halt_poll_ns`).
    pub(super) poll_ns: u64,
    /// When its current halt began (polling included), until the wake-up.
    pub(super) halt_start: Option<u64>,
    /// Whether it is polling in a halt.
    pub(super) polling: bool,
    /// TSC when a kick woke it from a halt (or a poll), until it resumes.
    pub(super) kicked_tsc: Option<u64>,
    /// Wake-up latencies, kick to resume, TSC cycles (at most [`WAKE_SAMPLES`]).
    pub(super) wake_cycles: Vec<u32>,
    /// When the pending preemption became due (the slice's end, or the tick that found the
    /// extension over), until the vCPU leaves its pCPU or the request is dropped.
    pub(super) preempt_due: Option<u64>,
    /// Tick lateness samples: from when a preemption was due to when the vCPU left its pCPU,
    /// ns (at most [`WAKE_SAMPLES`]).
    pub(super) lateness_ns: Vec<u64>,
    pub(super) stats: VcpuStats,
}

impl VcpuRecord {
    /// The vCPU resumes: the wake-up latency since its kick, if one woke it.
    pub(super) fn resumed(&mut self) {
        if let Some(k) = self.kicked_tsc.take()
            && self.wake_cycles.len() < WAKE_SAMPLES
        {
            let c = super::os::rdtsc().saturating_sub(k);
            self.wake_cycles.push(u32::try_from(c).unwrap_or(u32::MAX));
        }
    }

    pub(super) fn new() -> Self {
        VcpuRecord {
            state: VcpuState::Runnable,
            slice_start: 0,
            ext_until: None,
            ext_cpu_start: 0,
            clock: None,
            kick_pending: false,
            preempt_pending: false,
            force_stop: false,
            run_since: None,
            last_tick: None,
            host_stalled: false,
            ple_window: 0,
            spun_recently: false,
            dy_eligible: false,
            poll_ns: 0,
            halt_start: None,
            polling: false,
            kicked_tsc: None,
            wake_cycles: Vec::new(),
            preempt_due: None,
            lateness_ns: Vec::new(),
            stats: VcpuStats::default(),
        }
    }
}

impl fmt::Debug for VcpuRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VcpuRecord")
            .field("state", &self.state)
            .field("preempt_pending", &self.preempt_pending)
            .field("force_stop", &self.force_stop)
            .finish_non_exhaustive()
    }
}

/// What the scheduler keeps of one VM (host-wide accounting: see [`super::fair`]).
#[derive(Debug, Default)]
pub(super) struct VmRecord {
    /// Its virtual runtime, not counting the vCPUs running now.
    pub(super) vruntime: u64,
    /// pCPU time its vCPUs held, ns, not counting the vCPUs running now.
    pub(super) run_ns: u64,
    /// When it was told to stop (its guest's `stop` flag), ns since the start.
    pub(super) stopping: Option<u64>,
    /// Whether its stragglers were force-stopped.
    pub(super) forced: bool,
    /// The vCPU (host-wide index) the last pause-loop exit in it boosted
    /// (`kvm->last_boosted_vcpu`).
    pub(super) last_boosted: u32,
    /// Its protected counter's final value, as its guest reported it.
    pub(super) counter: Option<u64>,
}

/// Everything the scheduler lock protects.
#[derive(Debug)]
pub(super) struct SchedState {
    pub(super) vcpus: Vec<VcpuRecord>,
    pub(super) queue: RunQueue,
    /// Which vCPU holds each pCPU.
    pub(super) pcpus: Vec<Option<u32>>,
    pub(super) overloaded_published: bool,
    /// When every VM had been told to stop (the run's stop), ns since the start.
    pub(super) stopping: Option<u64>,
    /// Per VM.
    pub(super) vms: Vec<VmRecord>,
    pub(super) failures: Vec<String>,
}
