//! pCPU hand-over: granting, vacating, queueing, yielding, retiring a vCPU and ending the run.
//! Every function here runs with the scheduler lock held (it takes the [`SchedState`]).

use super::Scheduler;
use super::policy::{Candidate, SpinView, TickDecision, TickView};
use super::state::{After, SchedState, VcpuState};
use core::sync::atomic::Ordering;

impl Scheduler<'_> {
    /// The policy's view of running vCPU `id` at `now`.
    pub(super) fn view(&self, st: &SchedState, id: u32, now: u64) -> TickView {
        let v = &st.vcpus[id as usize];
        let hint = self.hint(id);
        TickView {
            now,
            slice_start: v.slice_start,
            slice: self.slice,
            cs_depth: hint.cs_depth.load(Ordering::Acquire),
            blocking_depth: hint.blocking_depth.load(Ordering::Acquire),
            ext_until: v.ext_until,
            ext_cpu_ns: if v.ext_until.is_some() {
                self.cpu_ns(st, id, now).saturating_sub(v.ext_cpu_start)
            } else {
                0
            },
            waiting: st.queue.len(),
        }
    }

    /// Gives pCPU `k` to vCPU `h` (taken off the queue) and wakes its thread; its slice
    /// starts at `slice_start` (now, or a yield's donor's: see [`Scheduler::directed_yield`]).
    /// Scheduling in resets its pause-loop window.
    pub(super) fn grant(&self, st: &mut SchedState, h: u32, k: u32, now: u64, slice_start: u64) {
        st.queue.remove(h);
        let v = &mut st.vcpus[h as usize];
        v.state = VcpuState::Running { pcpu: k };
        v.slice_start = slice_start;
        v.ext_until = None;
        v.run_since = Some(now);
        v.last_tick = None;
        v.host_stalled = false;
        st.pcpus[k as usize] = Some(h);
        self.holder[k as usize].store(h, Ordering::Release);
        // A lock-free request left from its previous turn would keep the tick's lock-free path
        // from asking again in this one.
        self.requested[h as usize].store(false, Ordering::Release);
        self.sync_due(st, h);
        self.reset_ple_window(st, h);
        if self.hints {
            self.hint(h).ext_granted.store(0, Ordering::Relaxed);
        }
        if self.publish {
            self.hint(h).preempted.store(0, Ordering::Release);
        }
        self.cvs[h as usize].notify_one();
    }

    /// Takes `id` (whose new state the caller sets) off pCPU `k`, and gives the pCPU to
    /// `next` if given (for the rest of `id`'s slice: the one yield rule), else to the queue
    /// head (a fresh slice), else leaves it idle.
    pub(super) fn vacate(&self, st: &mut SchedState, id: u32, k: u32, next: Option<u32>, now: u64) {
        let donor_slice = st.vcpus[id as usize].slice_start;
        let v = &mut st.vcpus[id as usize];
        if let Some(since) = v.run_since.take() {
            let held = now.saturating_sub(since);
            v.stats.run_ns += held;
            // Host-wide accounting: everything a vCPU holds a pCPU for is its VM's.
            let vm = self.vm_of(id) as usize;
            let r = &mut st.vms[vm];
            r.run_ns += held;
            r.vruntime = r
                .vruntime
                .saturating_add(super::fair::charge(held, self.vms[vm].weight));
        }
        let v = &mut st.vcpus[id as usize];
        v.ext_until = None;
        v.last_tick = None;
        v.host_stalled = false;
        v.spun_recently = false;
        // The vCPU leaves the pCPU anyway: a pending preemption is moot. (Its thread clears a
        // stale exit request itself, when it gets a pCPU again: `wait_for_pcpu`.)
        v.preempt_pending = false;
        // Tick lateness: it leaves now; the preemption was due then.
        if let Some(due) = v.preempt_due.take()
            && v.lateness_ns.len() < super::state::WAKE_SAMPLES
        {
            v.lateness_ns.push(now.saturating_sub(due));
        }
        if self.hints {
            self.hint(id).ext_granted.store(0, Ordering::Relaxed);
        }
        if self.publish {
            self.hint(id).preempted.store(1, Ordering::Release);
        }
        st.pcpus[k as usize] = None;
        self.holder[k as usize].store(u32::MAX, Ordering::Release);
        self.sync_due(st, id);
        // A lock-free request for its old turn is moot.
        self.requested[id as usize].store(false, Ordering::Release);
        match next {
            Some(h) => self.grant(st, h, k, now, donor_slice),
            None => {
                if let Some(h) = self.pick(st, now) {
                    self.grant(st, h, k, now, now);
                }
            }
        }
        self.sync_overloaded(st);
    }

    /// Resets vCPU `id`'s pause-loop window to the base (KVM: on schedule-in) and publishes it.
    pub(super) fn reset_ple_window(&self, st: &mut SchedState, id: u32) {
        let base = self.policy.ple_window();
        if base > 0 {
            st.vcpus[id as usize].ple_window = base;
            self.hint(id).ple_window.store(base, Ordering::Release);
        }
    }

    /// `id` gives its pCPU to queued vCPU `t` for the rest of its slice (a directed yield).
    pub(super) fn directed_yield(&self, st: &mut SchedState, id: u32, t: u32, now: u64) -> After {
        st.vcpus[t as usize].stats.directed_yields += 1;
        let a = self.yield_pcpu(st, id, Some(t), now);
        self.publish_counters(st, t);
        a
    }

    /// A pause-loop exit of `id` (its window of spins is over): the window grows x2, and if the
    /// host emulates PLE, `kvm_vcpu_on_spin` picks a target in round-robin order from the last
    /// boosted vCPU, skipping the not-ready and those that spun recently (every other time);
    /// the target runs on the rest of the spinner's slice. No eligible target: the spinner
    /// keeps its pCPU.
    pub(super) fn pause_exit(&self, st: &mut SchedState, id: u32, now: u64) -> After {
        let v = &mut st.vcpus[id as usize];
        v.stats.ple_exits += 1;
        if v.ple_window > 0 {
            v.ple_window = super::pause::grow(v.ple_window);
            self.hint(id)
                .ple_window
                .store(v.ple_window, Ordering::Release);
        }
        if !self.policy.on_pause_exit() {
            return After::Resume;
        }
        // The candidates are the spinner's siblings only: a pause-loop exit's yield stays in
        // its VM, as `kvm_vcpu_on_spin` walks only its own VM's vCPUs.
        let vm = self.vm_of(id);
        let first = self.global_id(vm, 0);
        let n = self.vm_nr_vcpus(id);
        let last = self.local_id(st.vms[vm as usize].last_boosted);
        let order: Vec<u32> = (1..=n).map(|i| first + (last + i) % n).collect();
        let candidates: Vec<Candidate> = order
            .iter()
            .map(|&c| {
                let v = &st.vcpus[c as usize];
                Candidate {
                    vcpu: c,
                    ready: v.state == VcpuState::Runnable && st.queue.contains(c),
                    eligible: !v.spun_recently || v.dy_eligible,
                }
            })
            .collect();
        let target = self.policy.pause_exit_target(&SpinView {
            caller: id,
            candidates: &candidates,
        });
        // KVM flips `dy_eligible` of every spinning vCPU it considered.
        let considered = target.map_or(candidates.len(), |t| {
            candidates
                .iter()
                .position(|c| c.vcpu == t)
                .map_or(0, |i| i + 1)
        });
        for c in &candidates[..considered] {
            let v = &mut st.vcpus[c.vcpu as usize];
            if v.spun_recently && c.ready {
                v.dy_eligible = !v.dy_eligible;
            }
        }
        match target.filter(|&t| t != id && candidates.iter().any(|c| c.vcpu == t && c.ready)) {
            Some(t) => {
                st.vms[vm as usize].last_boosted = t;
                let a = self.yield_pcpu(st, id, Some(t), now);
                st.vcpus[id as usize].spun_recently = a == After::Descheduled;
                a
            }
            None => After::Resume,
        }
    }

    /// Makes `id` runnable at the back of the queue (or, `boost`ed, at its head); gives it an
    /// idle pCPU if there is one.
    pub(super) fn enqueue(&self, st: &mut SchedState, id: u32, now: u64, boost: bool) {
        self.place_on_wake(st, id, now);
        st.vcpus[id as usize].state = VcpuState::Runnable;
        if boost {
            st.queue.push_front(id);
        } else {
            st.queue.push_back(id);
        }
        if let Some(k) = st.pcpus.iter().position(Option::is_none)
            && let Some(h) = self.pick(st, now)
        {
            self.grant(st, h, k as u32, now, now);
        }
        self.sync_overloaded(st);
    }

    /// `id` wakes (a kick, or the stop): if its VM was not waiting for a pCPU (none of its
    /// vCPUs queued: it used less than it could), its virtual runtime is placed
    /// ([`super::fair::placed`]) so it does not bank the time it left unused. With one VM
    /// there is nothing to place.
    fn place_on_wake(&self, st: &mut SchedState, id: u32, now: u64) {
        if self.vms.len() == 1 {
            return;
        }
        let vm = self.vm_of(id);
        let queued = |st: &SchedState, vm: u32| self.vm_vcpus(vm).any(|c| st.queue.contains(c));
        if queued(st, vm) {
            return;
        }
        let busy = |st: &SchedState, vm: u32| {
            queued(st, vm)
                || self
                    .vm_vcpus(vm)
                    .any(|c| st.vcpus[c as usize].state.pcpu().is_some())
        };
        let loads = self.vm_loads(st, now);
        let min_busy = (0..self.nr_vms())
            .filter(|&o| o != vm && busy(st, o))
            .map(|o| loads[o as usize].vruntime)
            .min();
        let slack = super::fair::charge(self.slice, self.vms[vm as usize].weight);
        let r = &mut st.vms[vm as usize];
        r.vruntime = super::fair::placed(r.vruntime, min_busy, slack);
    }

    /// Publishes `overloaded` (a runnable vCPU waits for a pCPU) in every hint slot when it
    /// changes; a vCPU waiting also ends every halt-poll (KVM polls only while its CPU has
    /// nothing else to run).
    pub(super) fn sync_overloaded(&self, st: &mut SchedState) {
        self.waiting.store(st.queue.len(), Ordering::Release);
        let over = !st.queue.is_empty();
        if over {
            self.stop_polls(st);
        }
        if self.publish && over != st.overloaded_published {
            for s in self.vms.iter().flat_map(|v| v.area.slots()) {
                s.overloaded.store(u32::from(over), Ordering::Release);
            }
            st.overloaded_published = over;
        }
    }

    /// Copies vCPU `id`'s counters into its hint slot for the guest to read.
    pub(super) fn publish_counters(&self, st: &SchedState, id: u32) {
        st.vcpus[id as usize].stats.publish(self.hint(id));
    }

    /// `id` gives its pCPU to `next` (taking its place in the queue) or to the queue head
    /// (going to the back), if anyone waits; otherwise it keeps running.
    pub(super) fn yield_pcpu(
        &self,
        st: &mut SchedState,
        id: u32,
        next: Option<u32>,
        now: u64,
    ) -> After {
        let Some(k) = st.vcpus[id as usize].state.pcpu() else {
            return After::Resume;
        };
        if st.queue.is_empty() {
            // Nobody to give the pCPU to: an extension is over, the slice continues.
            let v = &mut st.vcpus[id as usize];
            if v.ext_until.take().is_some() {
                v.slice_start = now;
            }
            self.sync_due(st, id);
            if self.hints {
                self.hint(id).ext_granted.store(0, Ordering::Relaxed);
            }
            return After::Resume;
        }
        let v = &mut st.vcpus[id as usize];
        v.stats.yields += 1;
        v.state = VcpuState::Runnable;
        // A targeted yield (directed, or a pause-loop exit's boost) swaps places: the target
        // takes the caller's pCPU for the rest of the caller's slice (the one yield rule, in
        // `vacate`) and the caller the target's place in the run queue (as Linux's yield_to
        // gives the target the caller's turn without sending the caller to the back). The
        // round-robin order is kept, so vCPUs keep the order in which FIFO locks serve them.
        // A plain yield goes to the back.
        if !next.is_some_and(|t| st.queue.replace(t, id)) {
            st.queue.push_back(id);
        }
        self.vacate(st, id, k, next, now);
        After::Descheduled
    }

    /// Halts running vCPU `id` for real: it gives its pCPU up until a kick.
    pub(super) fn halt(&self, st: &mut SchedState, id: u32, now: u64) -> After {
        let v = &mut st.vcpus[id as usize];
        let Some(k) = v.state.pcpu() else {
            return After::Resume;
        };
        v.stats.halts += 1;
        v.state = VcpuState::Halted;
        self.vacate(st, id, k, None, now);
        After::Descheduled
    }

    /// The halt of `id` is over at `now` (woken): adapts its halt-polling window to how long
    /// the halt lasted, as KVM does.
    pub(super) fn adapt_poll_window(&self, st: &mut SchedState, id: u32, now: u64) {
        let v = &mut st.vcpus[id as usize];
        if let Some(t0) = v.halt_start.take()
            && self.halt_poll
        {
            v.poll_ns = super::halt_poll::next_window(v.poll_ns, now.saturating_sub(t0));
        }
    }

    /// Preempts running vCPU `id`: marks the request, then kicks its thread.
    pub(super) fn request_preempt(&self, st: &mut SchedState, id: u32) {
        if st.vcpus[id as usize].polling {
            self.poll_stop[id as usize].store(true, Ordering::Release);
        }
        let now = self.now();
        let slice = self.slice;
        let v = &mut st.vcpus[id as usize];
        v.preempt_pending = true;
        // Due at the slice's end, or now when an extension ran out (its end, in CPU time, is
        // only seen at a tick) or the vCPU is force-stopped.
        let slice_end = v.slice_start.saturating_add(slice);
        v.preempt_due = Some(if v.ext_until.is_some() || v.force_stop {
            now
        } else {
            slice_end.min(now)
        });
        // Ordering: `preempt_pending` (under the lock), then the kick, which makes the vCPU
        // thread's current or next KVM_RUN return EINTR (see `Kick`). A kick alone would leave
        // a window: it lands while the thread is outside KVM_RUN, the thread enters with
        // nothing pending and runs on until the next tick. The thread re-syncs its exit
        // request with `preempt_pending` under this lock (`on_eintr`, `wait_for_pcpu`), so no
        // request is lost.
        if let Some(kick) = self.kick_of(id) {
            kick.kick();
        }
    }

    /// Whether the host descheduled running vCPU `id`'s thread since the previous tick: its
    /// CPU clock advanced by less than a tenth of the wall-clock time. Publishes `preempted`
    /// while it is (and clears it when the thread runs again), counts each descheduling once.
    pub(super) fn watch_host(&self, st: &mut SchedState, id: u32, now: u64) {
        let cpu = st.vcpus[id as usize].clock.and_then(|c| c.cpu_ns());
        let v = &mut st.vcpus[id as usize];
        let Some(cpu) = cpu else { return };
        let prev = v.last_tick.replace((now, cpu));
        let Some((t0, c0)) = prev else { return };
        let stalled = host_stalled(now.saturating_sub(t0), cpu.saturating_sub(c0));
        if stalled == v.host_stalled {
            return;
        }
        v.host_stalled = stalled;
        if !stalled {
            // The host scheduled the thread in again: KVM's sched_in resets the window.
            self.reset_ple_window(st, id);
        }
        let v = &mut st.vcpus[id as usize];
        if stalled {
            v.stats.host_deschedules += 1;
            let in_cs = self.hint(id).cs_depth.load(Ordering::Acquire) != 0;
            v.stats.host_deschedules_in_cs += u64::from(in_cs);
        }
        if self.publish {
            self.hint(id)
                .preempted
                .store(u32::from(stalled), Ordering::Release);
        }
    }

    /// Applies a decision other than `Preempt` to running vCPU `id`.
    pub(super) fn apply(&self, st: &mut SchedState, id: u32, decision: TickDecision) {
        let now = self.now();
        let v = &mut st.vcpus[id as usize];
        match decision {
            TickDecision::Continue | TickDecision::Preempt => {}
            TickDecision::NewSlice => {
                v.slice_start = now;
                v.ext_until = None;
                if self.hints {
                    self.hint(id).ext_granted.store(0, Ordering::Relaxed);
                }
            }
            TickDecision::Extend { until } => {
                v.ext_until = Some(until);
                let cpu = self.cpu_ns(st, id, now);
                let v = &mut st.vcpus[id as usize];
                v.ext_cpu_start = cpu;
                v.stats.extensions += 1;
                self.hint(id).ext_granted.store(1, Ordering::Release);
                self.publish_counters(st, id);
            }
        }
        self.sync_due(st, id);
    }

    /// Retires vCPU `id` into terminal state `end` (unless it already is terminal): frees its
    /// pCPU and takes it off the queue. The one path of an exit, a failure and a force-stop.
    pub(super) fn retire(&self, st: &mut SchedState, id: u32, end: VcpuState, now: u64) {
        debug_assert!(end.is_terminal());
        let v = &mut st.vcpus[id as usize];
        if v.state.is_terminal() {
            return;
        }
        if let VcpuState::Exited { code } = end {
            v.stats.exit_code = Some(code);
        }
        let prev = core::mem::replace(&mut v.state, end);
        if let Some(k) = prev.pcpu() {
            self.vacate(st, id, k, None, now);
        }
        st.queue.remove(id);
        self.sync_overloaded(st);
    }

    /// Ends the run (the duration is over, or the run cannot go on): every VM is told to
    /// stop now.
    pub(super) fn stop_now(&self, st: &mut SchedState, now: u64) {
        for vm in 0..self.nr_vms() {
            self.stop_vm(st, vm, now);
        }
    }

    /// Tells `vm`'s guest to stop now (the run's stop, or its vCPU failed); when every VM has
    /// been told, that is the run's stop (the pCPU times "before the stop" are taken then).
    pub(super) fn stop_vm(&self, st: &mut SchedState, vm: u32, now: u64) {
        if st.vms[vm as usize].stopping.is_none() {
            st.vms[vm as usize].stopping = Some(now);
            self.vms[vm as usize]
                .config
                .stop
                .store(1, Ordering::Release);
            self.stop_polls(st);
            // Halted vCPUs get a spurious wake-up so they see `stop`.
            for id in self.vm_vcpus(vm) {
                if st.vcpus[id as usize].state == VcpuState::Halted {
                    self.enqueue(st, id, now, false);
                }
            }
        }
        if st.stopping.is_none() && st.vms.iter().all(|v| v.stopping.is_some()) {
            st.stopping = Some(now);
            for v in &mut st.vcpus {
                let current = v.run_since.map_or(0, |since| now.saturating_sub(since));
                v.stats.run_ns_before_stop = v.stats.run_ns + current;
            }
        }
    }
}

/// The host-descheduling rule: over `wall_ns` of wall-clock time the thread got `cpu_ns` of
/// CPU time, less than a tenth of it (a thread that ran at all for most of the interval is not
/// "descheduled"; one that got nothing surely is).
pub fn host_stalled(wall_ns: u64, cpu_ns: u64) -> bool {
    wall_ns > 0 && cpu_ns.saturating_mul(10) < wall_ns
}

#[cfg(test)]
mod tests {
    use super::host_stalled;

    #[test]
    fn a_clock_that_stalls_across_a_tick_is_host_descheduling() {
        assert!(host_stalled(100_000, 0));
        assert!(host_stalled(100_000, 9_999));
        assert!(!host_stalled(100_000, 10_000));
        assert!(!host_stalled(100_000, 100_000));
        assert!(!host_stalled(0, 0), "no time passed: nothing to say");
    }
}
