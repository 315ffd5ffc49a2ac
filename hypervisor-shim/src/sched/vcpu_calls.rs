//! The scheduler's calls from the vCPU threads: wait for a pCPU, serve an exit (`EINTR`, a
//! hypercall, a poll), report a bad hypercall or a failure, record the thread's CPU time.
//! Each takes the state lock for its decision only.

use super::os;
use super::{After, Reported, Scheduler, TargetView, TickDecision, VcpuState, YieldChoice};
use crate::hypercall::Request;
use core::sync::atomic::Ordering;
use ecs_sys::hypercall::Status;
use std::time::Duration;

impl Scheduler<'_> {
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
}
