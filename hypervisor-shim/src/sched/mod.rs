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
//! mod.rs        the Scheduler: construction, accessors, the pick of the next vCPU
//! vcpu_calls.rs what the vCPU threads call: wait for a pCPU, exits, hypercalls, failures
//! control.rs    what the tick thread and the main thread call: tick, stop, results
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
mod control;
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
mod vcpu_calls;

pub use kick::Kick;
pub use metrics::{Reported, SlotSnapshot, VcpuStats};
pub use policy::{
    Candidate, Policy, SpinView, TargetView, TickDecision, TickView, YieldChoice, policy_for,
};
pub use state::{After, VcpuState};

use crate::page::HintArea;
use crate::workload::WorkloadConfig;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use ecs_sys::abi::HintSlot;
use os::ThreadClock;
use run_queue::RunQueue;
use state::{SchedState, VcpuRecord, VmRecord};
use std::sync::OnceLock;
use std::sync::{Condvar, Mutex, MutexGuard};
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

    // The calls from the vCPU threads go on in `vcpu_calls.rs`; the tick thread's and the
    // run's main thread's are in `control.rs`.
}
