//! The scheduler's calls from the tick thread and the run's main thread: the tick (with its
//! lock-free path), stopping and force-stopping, and the run's results.

use super::state::SchedState;
use super::{Scheduler, SlotSnapshot, TickDecision, VcpuState, VcpuStats, VmResult};
use core::sync::atomic::Ordering;
use std::sync::TryLockError;

impl Scheduler<'_> {
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
    pub(super) fn stop_polls(&self, st: &SchedState) {
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
