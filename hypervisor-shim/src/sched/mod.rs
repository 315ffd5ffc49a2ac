//! The user-space vCPU scheduler: N vCPUs, of one VM or several, share P pCPUs.
//!
//! Several VMs: every vCPU has a host-wide index (VM 0's vCPUs first, then VM 1's, ...); the
//! guest names its siblings by their index in its own VM, which the scheduler translates, so a
//! guest cannot name another VM's vCPU. Which VM a free pCPU goes to is [`fair`]'s pick.
//!
//! A vCPU thread calls `KVM_RUN` only while it holds a pCPU; the others block on their
//! condvar. pCPUs are handed over in FIFO order (a run queue) at slice end, on yield, on halt
//! and on exit. A scheduler thread ticks at a fine granularity (default 100 us) and asks the
//! [`Policy`] what to do with each running vCPU.
//!
//! Naming: a *pCPU* (`pcpu`) is one of the P places a vCPU runs in, the scheduler's stand-in
//! for a physical CPU; a *slot* is always a vCPU's hint slot in guest memory (the ABI's
//! `HintSlot`).
//!
//! ```text
//! mod.rs        the Scheduler and its entry points (vCPU threads, tick thread, main thread)
//! handover.rs   grant, vacate, queue, yield, retire, stop (with the lock held)
//! state.rs      vCPU states, what the vCPU thread does next, what the lock protects
//! run_queue.rs  the FIFO of runnable vCPUs
//! fair.rs       fair shares between VMs: weighted virtual runtime, which VM a free pCPU goes to
//! policy.rs     the Policy trait and its views; baseline.rs, ple.rs, ecs.rs implement it
//! kick.rs       the interface the vCPU side implements to be preempted
//! metrics.rs    per-vCPU counters, guest report keys, hint-slot snapshots
//! os.rs         thread CPU clocks, pinning, the tick thread's priority
//! ```
//!
//! Preemption is a [`Kick`] (vcpu.rs: a signal that sets `immediate_exit`); the vCPU thread
//! acknowledges it when `KVM_RUN` returns `EINTR`, and only then is the pCPU handed to the next
//! vCPU, so two vCPUs never run on one pCPU.
//!
//! The tick does not wait for the lock: if a vCPU thread holds it, the tick kicks the pCPU
//! holders whose slice is over from values kept current under the lock, and the policy decides
//! on each request under the lock when the vCPU leaves guest mode ([`Scheduler::tick`]).
//!
//! Metrics are kept here, host-side, and are authoritative (the guest may scribble on its
//! slot); a copy goes into each slot's counters for the guest to read.

pub mod baseline;
pub mod ecs;
pub mod fair;
pub mod halt_poll;
mod handover;
pub mod kick;
pub mod metrics;
#[cfg(test)]
mod multi_tests;
pub mod os;
pub mod pause;
pub mod ple;
pub mod policy;
pub mod run_queue;
pub mod state;
#[cfg(test)]
mod tests;

pub use kick::Kick;
pub use metrics::{Reported, SlotSnapshot, VcpuStats};
pub use policy::{
    Candidate, Policy, SpinView, TargetView, TickDecision, TickView, YieldChoice, policy_for,
};
pub use state::{After, VcpuState};

use crate::hypercall::Request;
use crate::page::HintArea;
use crate::workload::WorkloadConfig;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use ecs_sys::abi::HintSlot;
use ecs_sys::hypercall::Status;
use os::ThreadClock;
use run_queue::RunQueue;
use state::{SchedState, VcpuRecord, VmRecord};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::sync::{OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How a [`Scheduler`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// pCPUs.
    pub nr_pcpus: u32,
    /// Time slice.
    pub slice: Duration,
    /// KVM's halt-polling ([`halt_poll`]).
    pub halt_poll: bool,
    /// Whether the host publishes `preempted`/`overloaded` for the guest (under a policy that
    /// does: `ecs`, `ecs-ple`). Off, the guest's locks run as under a host without hints,
    /// while the host policy is the same: the ablation of the guest's use of the hints.
    pub guest_hints: bool,
}

/// One VM's guest-memory structures the scheduler serves.
#[derive(Clone, Copy, Debug)]
pub struct VmSlots<'m> {
    /// Its hint area (one slot per vCPU of this VM).
    pub area: HintArea<'m>,
    /// Its workload block (the scheduler sets its `stop`).
    pub config: &'m WorkloadConfig,
    /// Its weight in the fair shares ([`fair`]; at least 1).
    pub weight: u32,
}

/// The scheduler shared by the vCPU threads, the tick thread and the run's main thread.
pub struct Scheduler<'m> {
    state: Mutex<SchedState>,
    cvs: Vec<Condvar>,
    /// Per vCPU: stop polling (a kick, a preemption, a stop, a vCPU waiting for a pCPU); set
    /// under the lock, read by the polling vCPU thread without it.
    poll_stop: Vec<AtomicBool>,
    /// Per vCPU: how to preempt it (set once, when its thread registers).
    kicks: Vec<OnceLock<Box<dyn Kick>>>,
    /// The tick's way around the lock ([`Scheduler::tick`]), kept current under the lock and
    /// read without it: per vCPU, when its slice ends (ns since the start; `u64::MAX` while it
    /// does not run or runs an extension, whose end only the policy can decide).
    due_ns: Vec<AtomicU64>,
    /// Per pCPU: the vCPU holding it (`u32::MAX`: none).
    holder: Vec<AtomicU32>,
    /// Runnable vCPUs waiting for a pCPU.
    waiting: AtomicUsize,
    /// Per vCPU: a preemption the tick asked for without the lock; the vCPU thread takes it
    /// in [`Scheduler::on_eintr`] and the policy decides on it there, under the lock.
    requested: Vec<AtomicBool>,
    /// Preemptions the tick asked for without the lock (it was held, e.g. by a vCPU thread the
    /// host descheduled).
    lockfree_kicks: AtomicU64,
    halt_poll: bool,
    policy: Box<dyn Policy>,
    vms: Vec<VmSlots<'m>>,
    /// Per host-wide vCPU index: its VM.
    vm_of: Vec<u32>,
    /// Per VM: the host-wide index of its vCPU 0.
    base: Vec<u32>,
    start: Instant,
    slice: u64,
    /// The policy runs the eCS protocol (extensions: `ext_granted`).
    hints: bool,
    /// The host publishes `preempted`/`overloaded` (the policy's, unless guest hints are off).
    publish: bool,
    nr_pcpus: u32,
}

/// What the scheduler accounted to one VM ([`Scheduler::vm_results`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmResult {
    /// Its protected counter's final value, as its guest reported it.
    pub counter: Option<u64>,
    /// pCPU time its vCPUs held, ns (the fair shares' accounting).
    pub pcpu_ns: u64,
    /// When it was told to stop (ns since the start; its failure, or the run's stop).
    pub stopped_at: Option<u64>,
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
    /// A scheduler for `area.slots().len()` vCPUs on `nr_pcpus` pCPUs. vCPUs 0..P start on
    /// the pCPUs; the rest wait in the queue in index order. Halt-polling is on.
    pub fn new(
        area: HintArea<'m>,
        config: &'m WorkloadConfig,
        policy: Box<dyn Policy>,
        nr_pcpus: u32,
        slice: Duration,
    ) -> Self {
        Self::with_halt_poll(area, config, policy, nr_pcpus, slice, true)
    }

    /// [`Scheduler::new`], with KVM's halt-polling on or off.
    pub fn with_halt_poll(
        area: HintArea<'m>,
        config: &'m WorkloadConfig,
        policy: Box<dyn Policy>,
        nr_pcpus: u32,
        slice: Duration,
        halt_poll: bool,
    ) -> Self {
        Self::with_options(
            area,
            config,
            policy,
            Options {
                nr_pcpus,
                slice,
                halt_poll,
                guest_hints: true,
            },
        )
    }

    /// A scheduler with every option.
    pub fn with_options(
        area: HintArea<'m>,
        config: &'m WorkloadConfig,
        policy: Box<dyn Policy>,
        opts: Options,
    ) -> Self {
        Self::multi(
            vec![VmSlots {
                area,
                config,
                weight: 1,
            }],
            policy,
            opts,
        )
    }

    /// A scheduler for several VMs sharing `opts.nr_pcpus` pCPUs (at least one VM). The
    /// pCPUs start with [`fair::pick`]'s choices; the rest wait in the queue, the VMs'
    /// vCPUs interleaved.
    pub fn multi(vms: Vec<VmSlots<'m>>, policy: Box<dyn Policy>, opts: Options) -> Self {
        let Options {
            nr_pcpus,
            slice,
            halt_poll,
            guest_hints,
        } = opts;
        let mut vm_of = Vec::new();
        let mut base = Vec::new();
        for (i, v) in vms.iter().enumerate() {
            base.push(vm_of.len() as u32);
            vm_of.extend(std::iter::repeat_n(i as u32, v.area.slots().len()));
        }
        let n = vm_of.len();
        // The initial queue interleaves the VMs (VM 0's vCPU 0, VM 1's vCPU 0, ...).
        let widest = vms.iter().map(|v| v.area.slots().len()).max().unwrap_or(0);
        let order = (0..widest).flat_map(|i| {
            vms.iter()
                .enumerate()
                .filter(move |(_, v)| i < v.area.slots().len())
                .map(move |(k, _)| k)
                .zip(std::iter::repeat(i))
                .collect::<Vec<_>>()
        });
        let queue: Vec<u32> = order.map(|(k, i)| base[k] + i as u32).collect();
        let hints = policy.publishes_hints();
        let publish = hints && guest_hints;
        let s = Scheduler {
            state: Mutex::new(SchedState {
                vcpus: (0..n).map(|_| VcpuRecord::new()).collect(),
                queue: RunQueue::new(queue),
                pcpus: vec![None; nr_pcpus as usize],
                overloaded_published: false,
                stopping: None,
                vms: base
                    .iter()
                    .map(|&b| VmRecord {
                        last_boosted: b,
                        ..VmRecord::default()
                    })
                    .collect(),
                failures: Vec::new(),
            }),
            cvs: (0..n).map(|_| Condvar::new()).collect(),
            poll_stop: (0..n).map(|_| AtomicBool::new(false)).collect(),
            kicks: (0..n).map(|_| OnceLock::new()).collect(),
            due_ns: (0..n).map(|_| AtomicU64::new(u64::MAX)).collect(),
            holder: (0..nr_pcpus).map(|_| AtomicU32::new(u32::MAX)).collect(),
            waiting: AtomicUsize::new(0),
            requested: (0..n).map(|_| AtomicBool::new(false)).collect(),
            lockfree_kicks: AtomicU64::new(0),
            halt_poll,
            policy,
            vms,
            vm_of,
            base,
            start: Instant::now(),
            slice: slice.as_nanos() as u64,
            hints,
            publish,
            nr_pcpus,
        };
        {
            let mut st = s.lock();
            if publish {
                for slot in s.vms.iter().flat_map(|v| v.area.slots()) {
                    slot.preempted.store(1, Ordering::Release);
                }
            }
            for k in 0..nr_pcpus {
                if let Some(h) = s.pick(&st, 0) {
                    s.grant(&mut st, h, k, 0, 0);
                }
            }
            s.sync_overloaded(&mut st);
        }
        s
    }

    fn lock(&self) -> MutexGuard<'_, SchedState> {
        // A poisoned lock means a host thread panicked (a host bug); the data is still
        // consistent enough to finish and report, so carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Nanoseconds since the scheduler was created.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// The policy.
    pub fn policy(&self) -> &dyn Policy {
        &*self.policy
    }

    /// VM 0's hint area (the one VM's, in a one-VM run).
    pub fn area(&self) -> HintArea<'m> {
        self.vms[0].area
    }

    /// Number of vCPUs, over every VM.
    pub fn nr_vcpus(&self) -> u32 {
        self.cvs.len() as u32
    }

    /// Number of VMs.
    pub fn nr_vms(&self) -> u32 {
        self.vms.len() as u32
    }

    /// The VM of host-wide vCPU `id`.
    pub fn vm_of(&self, id: u32) -> u32 {
        self.vm_of[id as usize]
    }

    /// The index of host-wide vCPU `id` inside its VM (what its guest calls it).
    pub fn local_id(&self, id: u32) -> u32 {
        id - self.base[self.vm_of(id) as usize]
    }

    /// The host-wide index of vCPU `local` of `vm`.
    pub fn global_id(&self, vm: u32, local: u32) -> u32 {
        self.base[vm as usize] + local
    }

    /// vCPUs in the VM of host-wide vCPU `id` (the bound of the vCPU indices its guest may
    /// name).
    pub fn vm_nr_vcpus(&self, id: u32) -> u32 {
        self.vms[self.vm_of(id) as usize].area.slots().len() as u32
    }

    /// The host-wide vCPUs of `vm`.
    pub fn vm_vcpus(&self, vm: u32) -> core::ops::Range<u32> {
        let b = self.base[vm as usize];
        b..b + self.vms[vm as usize].area.slots().len() as u32
    }

    /// How a message names vCPU `id`: `vCPU 3` in a one-VM run, `VM 1 vCPU 3` (its index in
    /// its VM) with several.
    pub fn name(&self, id: u32) -> String {
        if self.vms.len() == 1 {
            format!("vCPU {id}")
        } else {
            format!("VM {} vCPU {}", self.vm_of(id), self.local_id(id))
        }
    }

    /// vCPU `id`'s hint slot (in its VM's area).
    pub fn hint_slot(&self, id: u32) -> &'m HintSlot {
        self.hint(id)
    }

    fn hint(&self, id: u32) -> &'m HintSlot {
        let vm = self.vm_of(id) as usize;
        self.vms[vm].area.hint_slot(id - self.base[vm])
    }

    /// The VM's current load for [`fair::pick`]: its virtual runtime with the time its
    /// running vCPUs have held their pCPUs so far.
    fn vm_loads(&self, st: &SchedState, now: u64) -> Vec<fair::VmLoad> {
        let mut loads: Vec<fair::VmLoad> = st
            .vms
            .iter()
            .map(|v| fair::VmLoad {
                vruntime: v.vruntime,
                running: 0,
            })
            .collect();
        for id in st.pcpus.iter().flatten() {
            let vm = self.vm_of(*id) as usize;
            let v = &st.vcpus[*id as usize];
            let held = v.run_since.map_or(0, |since| now.saturating_sub(since));
            loads[vm].vruntime = loads[vm]
                .vruntime
                .saturating_add(fair::charge(held, self.vms[vm].weight));
            loads[vm].running += 1;
        }
        loads
    }

    /// The vCPU a free pCPU goes to (queue head with one VM).
    fn pick(&self, st: &SchedState, now: u64) -> Option<u32> {
        if self.vms.len() == 1 {
            return st.queue.front();
        }
        let loads = self.vm_loads(st, now);
        fair::pick(st.queue.iter().map(|id| (id, self.vm_of(id))), &loads)
    }

    /// CPU time consumed by vCPU `id`'s thread, ns (wall-clock `now` if its clock is unknown).
    fn cpu_ns(&self, st: &SchedState, id: u32, now: u64) -> u64 {
        st.vcpus[id as usize]
            .clock
            .and_then(ThreadClock::cpu_ns)
            .unwrap_or(now)
    }

    // ----- calls from the vCPU threads -----

    /// Registers the calling thread as vCPU `id`'s, with the way to preempt it.
    pub fn register_thread(&self, id: u32, kick: Box<dyn Kick>) {
        let clock = ThreadClock::current();
        let mut st = self.lock();
        // A second registration of the same vCPU keeps the first kick (one thread per vCPU).
        let _ = self.kicks[id as usize].set(kick);
        st.vcpus[id as usize].clock = clock;
    }

    /// vCPU `id`'s kick, once its thread registered.
    fn kick_of(&self, id: u32) -> Option<&dyn Kick> {
        self.kicks[id as usize].get().map(|k| &**k)
    }

    /// Publishes, for the tick's lock-free path, when running vCPU `id`'s slice ends.
    fn sync_due(&self, st: &SchedState, id: u32) {
        let v = &st.vcpus[id as usize];
        let due = if v.state.pcpu().is_some() && v.ext_until.is_none() {
            v.slice_start.saturating_add(self.slice)
        } else {
            u64::MAX
        };
        self.due_ns[id as usize].store(due, Ordering::Release);
    }

    /// Blocks until vCPU `id` holds a pCPU (`Ok(pcpu)`) or must stop (`Err(After)`).
    pub fn wait_for_pcpu(&self, id: u32) -> Result<u32, After> {
        let mut st = self.lock();
        loop {
            let v = &mut st.vcpus[id as usize];
            if v.force_stop {
                return Err(After::ForceStop);
            }
            match v.state {
                VcpuState::Running { pcpu } => {
                    v.resumed();
                    // Drop a stale preemption, keep one requested since the grant.
                    if let Some(kick) = self.kick_of(id) {
                        kick.set_exit_request(v.preempt_pending);
                    }
                    return Ok(pcpu);
                }
                s if s.is_terminal() => return Err(After::Stopped),
                _ => {}
            }
            st = self.cvs[id as usize]
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// `KVM_RUN` returned `EINTR`: a preemption (acknowledged here: the pCPU goes to the next
    /// vCPU), a force-stop, or a stray signal (resume).
    pub fn on_eintr(&self, id: u32) -> After {
        let now = self.now();
        let mut guard = self.lock();
        let st = &mut *guard;
        let v = &mut st.vcpus[id as usize];
        // Acknowledge the kick (this is the vCPU thread). Safe under the lock: a request made
        // before it was taken is visible below; a later one kicks again, which sets the
        // request again (at worst one spurious EINTR, which resumes).
        if let Some(kick) = self.kick_of(id) {
            kick.set_exit_request(false);
        }
        // A request the tick made without the lock (after clearing the exit request: a later
        // one kicks again). The policy decides on it below like on any other.
        if self.requested[id as usize].swap(false, Ordering::AcqRel) && !v.preempt_pending {
            v.preempt_pending = true;
            v.preempt_due = Some(v.slice_start.saturating_add(self.slice).min(now));
        }
        if v.force_stop {
            return After::ForceStop;
        }
        if !v.preempt_pending {
            return After::Resume;
        }
        let Some(k) = v.state.pcpu() else {
            v.preempt_pending = false;
            v.preempt_due = None;
            return After::Resume;
        };
        // The vCPU is out of guest mode: its depth is stable, this is "the moment of
        // preemption". The tick decided on a snapshot taken some microseconds ago (the signal
        // takes that long to land, longer under nested virtualization), and the guest may have
        // entered a critical section since: the policy decides again on the stable state.
        let view = self.view(st, id, now);
        match self.policy.at_tick(&view) {
            TickDecision::Preempt => {}
            decision => {
                st.vcpus[id as usize].preempt_pending = false;
                st.vcpus[id as usize].preempt_due = None;
                self.apply(st, id, decision);
                return After::Resume;
            }
        }
        let v = &mut st.vcpus[id as usize];
        v.stats.preemptions_in_blocking += u64::from(view.blocking_depth != 0);
        v.stats.preemptions += 1;
        v.stats.preemptions_at_bound += u64::from(v.ext_until.is_some());
        v.stats.preemptions_in_cs += u64::from(view.cs_depth != 0);
        v.state = VcpuState::Runnable;
        st.queue.push_back(id);
        self.vacate(st, id, k, None, now);
        self.publish_counters(st, id);
        After::Descheduled
    }

    /// Serves a decoded hypercall of vCPU `id`; writes `Status::Ok` into its slot first.
    pub fn hypercall(&self, id: u32, req: Request) -> After {
        self.hint(id)
            .hc_status
            .store(Status::Ok as u32, Ordering::Release);
        // Decoded before the lock is taken.
        let reported = match req {
            Request::Report { key, value } => Some((Reported::of_key(key), value)),
            _ => None,
        };
        // The guest names its siblings by their index in its VM (decoded against its VM's size).
        let req = match req {
            Request::YieldTo(t) => Request::YieldTo(self.global_id(self.vm_of(id), t)),
            Request::Kick(t) => Request::Kick(self.global_id(self.vm_of(id), t)),
            other => other,
        };
        let now = self.now();
        let mut guard = self.lock();
        let st = &mut *guard;
        let vm = self.vm_of(id) as usize;
        let after = match req {
            Request::Register => {
                st.vcpus[id as usize].stats.registered = true;
                After::Resume
            }
            Request::Report { .. } => {
                match reported {
                    Some((Reported::Vcpu(field), value)) => {
                        *field(&mut st.vcpus[id as usize].stats) = value;
                    }
                    Some((Reported::Counter, value)) => st.vms[vm].counter = Some(value),
                    _ => {}
                }
                After::Resume
            }
            Request::Exit { code } => {
                self.retire(st, id, VcpuState::Exited { code }, now);
                After::Stopped
            }
            Request::Yield => self.yield_pcpu(st, id, None, now),
            Request::YieldTo(t) => {
                let view = TargetView {
                    caller: id,
                    target: t,
                    target_queued: st.vcpus[t as usize].state == VcpuState::Runnable
                        && st.queue.contains(t),
                };
                match self.policy.on_yield_to(&view) {
                    YieldChoice::Directed(n) if n == t && view.target_queued && t != id => {
                        self.directed_yield(st, id, t, now)
                    }
                    _ => self.yield_pcpu(st, id, None, now),
                }
            }
            Request::Wait => {
                let stopping = st.vms[vm].stopping.is_some();
                let nobody_waits = st.queue.is_empty();
                let v = &mut st.vcpus[id as usize];
                if v.kick_pending || stopping {
                    v.kick_pending = false;
                    After::Resume
                } else if v.state.pcpu().is_none() {
                    After::Resume
                } else if self.halt_poll && v.poll_ns > 0 && nobody_waits {
                    v.halt_start = Some(now);
                    v.polling = true;
                    v.stats.halt_polls += 1;
                    self.poll_stop[id as usize].store(false, Ordering::Release);
                    After::Poll {
                        until: now.saturating_add(v.poll_ns),
                    }
                } else {
                    v.halt_start = Some(now);
                    self.halt(st, id, now)
                }
            }
            Request::Kick(t) => {
                let target = &mut st.vcpus[t as usize];
                match target.state {
                    // Wake-up boost (Xen credit's BOOST, CFS's wake-up placement): a vCPU
                    // woken from a halt runs next, so a woken lock waiter does not wait a
                    // whole round of the run queue.
                    VcpuState::Halted => {
                        target.kicked_tsc = Some(os::rdtsc());
                        self.adapt_poll_window(st, t, now);
                        self.enqueue(st, t, now, true)
                    }
                    s if s.is_terminal() => {}
                    _ => {
                        target.kick_pending = true;
                        if target.polling {
                            target.kicked_tsc = Some(os::rdtsc());
                            self.poll_stop[t as usize].store(true, Ordering::Release);
                        }
                    }
                }
                After::Resume
            }
            Request::PauseExit => self.pause_exit(st, id, now),
        };
        self.publish_counters(st, id);
        after
    }

    /// Halt-polling (after [`After::Poll`]): spins until a kick, a reason to stop polling or
    /// `until`, keeping the pCPU, then either resumes (kicked: no halt) or halts for real.
    pub fn poll(&self, id: u32, until: u64) -> After {
        let stop = &self.poll_stop[id as usize];
        while !stop.load(Ordering::Acquire) && self.now() < until {
            core::hint::spin_loop();
        }
        let now = self.now();
        let mut guard = self.lock();
        let st = &mut *guard;
        let stopping = st.vms[self.vm_of(id) as usize].stopping.is_some();
        let v = &mut st.vcpus[id as usize];
        v.polling = false;
        if v.kick_pending || stopping || v.force_stop || v.state.pcpu().is_none() {
            // Woken while polling (or the run ends): the halt is over without a hand-over.
            let hit = v.kick_pending;
            v.kick_pending = false;
            v.stats.halt_poll_hits += u64::from(hit);
            v.resumed();
            if hit {
                self.adapt_poll_window(st, id, now);
            }
            return After::Resume;
        }
        self.halt(st, id, now)
    }

    /// Records an error status answered to vCPU `id`.
    pub fn bad_hypercall(&self, id: u32, status: Status) {
        self.hint(id)
            .hc_status
            .store(status as u32, Ordering::Release);
        self.lock().vcpus[id as usize].stats.bad_hypercalls += 1;
    }

    /// vCPU `id` cannot go on (`why`: a fault, a bad exit, its thread could not start or
    /// panicked): the failure is recorded (with its VM's name when there are several), the
    /// vCPU is marked failed (unless it had already finished), its pCPU freed, and its VM
    /// stops: with one VM the run ends; with several the other VMs run on and share every
    /// pCPU.
    pub fn fail(&self, id: u32, why: &str) {
        let now = self.now();
        let mut guard = self.lock();
        let st = &mut *guard;
        st.failures.push(self.prefixed(id, why));
        self.retire(st, id, VcpuState::Failed, now);
        self.stop_vm(st, self.vm_of(id), now);
    }

    /// `why` about vCPU `id`, prefixed with its VM's name and its index there when the run
    /// has several VMs (the host-wide index stays in `why`).
    fn prefixed(&self, id: u32, why: &str) -> String {
        if self.vms.len() == 1 {
            why.to_owned()
        } else {
            format!("{}: {why}", self.name(id))
        }
    }

    /// vCPU `id` was force-stopped at `rip` after `grace`.
    pub fn force_stopped(&self, id: u32, rip: Option<u64>, grace: Duration) {
        let now = self.now();
        let mut guard = self.lock();
        let st = &mut *guard;
        let rip = rip.map_or_else(|| "unknown".to_owned(), |r| format!("{r:#x}"));
        let why = format!("vCPU {id} did not stop within {grace:?} of the stop request: rip={rip}");
        st.failures.push(self.prefixed(id, &why));
        self.retire(st, id, VcpuState::ForceStopped, now);
    }

    /// Records the CPU time vCPU `id`'s thread used (called by the thread as it ends).
    pub fn record_cpu(&self, id: u32, cpu_ns: u64) {
        self.lock().vcpus[id as usize].stats.cpu_ns = cpu_ns;
    }

    // ----- calls from the tick thread and the run's main thread -----

    /// One scheduler tick at time `now`: applies the policy to every running vCPU.
    ///
    /// If the lock is held (a vCPU thread serving an exit, perhaps descheduled by the host
    /// while it holds it), the tick does not wait: it kicks every pCPU holder whose slice is
    /// over while others wait, from the values published for it (kept current under the lock),
    /// and the vCPU thread brings the request to the policy under the lock (`on_eintr`), which
    /// may still extend or continue it. Extensions are left to the next tick that gets the lock.
    pub fn tick(&self, now: u64) {
        let mut guard = match self.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.tick_without_lock(now);
                return;
            }
        };
        let st = &mut *guard;
        for k in 0..self.nr_pcpus as usize {
            let Some(id) = st.pcpus[k] else { continue };
            self.watch_host(st, id, now);
            let v = &st.vcpus[id as usize];
            if v.preempt_pending || v.force_stop {
                continue;
            }
            let view = self.view(st, id, now);
            match self.policy.at_tick(&view) {
                TickDecision::Preempt => self.request_preempt(st, id),
                decision => self.apply(st, id, decision),
            }
        }
    }

    /// The tick's lock-free path (see [`Scheduler::tick`]).
    fn tick_without_lock(&self, now: u64) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        for h in &self.holder {
            let id = h.load(Ordering::Acquire);
            if id == u32::MAX || now < self.due_ns[id as usize].load(Ordering::Acquire) {
                continue;
            }
            if !self.requested[id as usize].swap(true, Ordering::AcqRel)
                && let Some(kick) = self.kick_of(id)
            {
                self.lockfree_kicks.fetch_add(1, Ordering::Relaxed);
                kick.kick();
            }
        }
    }

    /// Preemptions the tick asked for without the lock.
    pub fn lockfree_kicks(&self) -> u64 {
        self.lockfree_kicks.load(Ordering::Relaxed)
    }

    /// Sets the guest's `stop` flag (the run's duration is over); wakes halted vCPUs.
    pub fn request_stop(&self) {
        let now = self.now();
        let mut guard = self.lock();
        self.stop_now(&mut guard, now);
    }

    /// Force-stops the vCPUs of every VM told to stop at least `grace` before `now` that
    /// have not finished (each VM once).
    pub fn force_stop_overdue(&self, now: u64, grace: u64) {
        let mut guard = self.lock();
        let st = &mut *guard;
        for vm in 0..self.nr_vms() {
            let r = &mut st.vms[vm as usize];
            let overdue = r.stopping.is_some_and(|t| now >= t.saturating_add(grace));
            if overdue && !r.forced {
                r.forced = true;
                for id in self.vm_vcpus(vm) {
                    self.force_stop(st, id);
                }
            }
        }
    }

    /// Stops every halt-poll in progress (a vCPU now waits for a pCPU, or the run stops).
    fn stop_polls(&self, st: &SchedState) {
        for (id, v) in st.vcpus.iter().enumerate() {
            if v.polling {
                self.poll_stop[id].store(true, Ordering::Release);
            }
        }
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

    /// When the stop was requested (ns since start), if it was.
    pub fn stop_time(&self) -> Option<u64> {
        self.lock().stopping
    }

    /// Force-stops every vCPU that has not finished.
    pub fn force_stop_all(&self) {
        let mut guard = self.lock();
        let st = &mut *guard;
        for id in 0..self.nr_vcpus() {
            self.force_stop(st, id);
        }
    }

    /// Force-stops vCPU `id` unless it has finished or is being force-stopped.
    fn force_stop(&self, st: &mut SchedState, id: u32) {
        let v = &mut st.vcpus[id as usize];
        if v.state.is_terminal() || v.force_stop {
            return;
        }
        v.force_stop = true;
        if v.state.pcpu().is_some() {
            self.request_preempt(st, id);
        }
        self.cvs[id as usize].notify_one();
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
        self.vms
            .iter()
            .flat_map(|v| v.area.slots())
            .map(|s| s.progress.load(Ordering::Relaxed))
            .fold(0, u64::saturating_add)
    }

    /// A snapshot of every slot's hint fields and counters (guest-visible state), by
    /// host-wide vCPU index.
    pub fn slot_snapshots(&self) -> Vec<SlotSnapshot> {
        self.vms
            .iter()
            .flat_map(|v| v.area.slots())
            .map(SlotSnapshot::of)
            .collect()
    }

    /// Every tick lateness measured: from when a preemption was due (the slice's end, or the
    /// tick that found an extension over) to when the vCPU left its pCPU, ns.
    pub fn lateness_ns(&self) -> Vec<u64> {
        let st = self.lock();
        st.vcpus
            .iter()
            .flat_map(|v| v.lateness_ns.iter().copied())
            .collect()
    }

    /// Every wake-up latency measured (kick to resume of a halted or polling vCPU), TSC cycles.
    pub fn wake_cycles(&self) -> Vec<u32> {
        let st = self.lock();
        st.vcpus
            .iter()
            .flat_map(|v| v.wake_cycles.iter().copied())
            .collect()
    }

    /// The final per-vCPU statistics, VM 0's reported counter and the failures so far.
    pub fn results(&self) -> (Vec<(VcpuState, VcpuStats)>, Option<u64>, Vec<String>) {
        let st = self.lock();
        (
            st.vcpus
                .iter()
                .map(|v| (v.state, v.stats.clone()))
                .collect(),
            st.vms[0].counter,
            st.failures.clone(),
        )
    }

    /// Per VM: its reported counter, the pCPU time its vCPUs held (ns, up to now) and when it
    /// was told to stop.
    pub fn vm_results(&self) -> Vec<VmResult> {
        let now = self.now();
        let st = self.lock();
        let mut held: Vec<u64> = st.vms.iter().map(|v| v.run_ns).collect();
        for id in st.pcpus.iter().flatten() {
            let v = &st.vcpus[*id as usize];
            held[self.vm_of(*id) as usize] += v.run_since.map_or(0, |s| now.saturating_sub(s));
        }
        st.vms
            .iter()
            .zip(held)
            .map(|(v, pcpu_ns)| VmResult {
                counter: v.counter,
                pcpu_ns,
                stopped_at: v.stopping,
            })
            .collect()
    }
}
