//! The scheduler's metrics: per-vCPU counters kept host-side (authoritative: the guest may
//! scribble on its hint slot), the guest's reports mapped onto them, the copy the guest may
//! read in its slot, and snapshots of the slots' guest-visible state.

use crate::workload::report;
use core::sync::atomic::{AtomicU32, Ordering};
use ecs_sys::abi::HintSlot;

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
    /// Directed yields served to this vCPU (another gave it its pCPU).
    pub directed_yields: u64,
    /// Pause-loop exits.
    pub ple_exits: u64,
    /// Voluntary yields (Yield, undirected YieldTo, PauseExit that gave the pCPU away).
    pub yields: u64,
    /// Halts (Wait that gave up the pCPU).
    pub halts: u64,
    /// Hypercalls answered with an error status.
    pub bad_hypercalls: u64,
    /// Halts that polled first (halt-polling: the vCPU kept its pCPU for a while).
    pub halt_polls: u64,
    /// Of those, woken by a kick while polling (no halt, no pCPU hand-over).
    pub halt_poll_hits: u64,
    /// Time this vCPU held a pCPU, ns.
    pub run_ns: u64,
    /// Of that, before the stop request (the measured part of the run), ns.
    pub run_ns_before_stop: u64,
    /// Steal: time this vCPU held a pCPU without its thread getting a host CPU
    /// (`run_ns - cpu_ns`, at least 0), ns. On a quiet host it is near 0.
    pub steal_ns: u64,
    /// Times the tick found this vCPU's thread descheduled by the host while it held a pCPU
    /// (its CPU clock advanced by less than a tenth of the wall-clock time since the previous
    /// tick); `preempted` is published for it meanwhile, as KVM's steal-time flag is.
    pub host_deschedules: u64,
    /// Of those, with `cs_depth > 0` (host-level lock-holder preemption, which the shim's own
    /// decisions, counted in `preemptions_in_cs`, do not include).
    pub host_deschedules_in_cs: u64,
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

impl VcpuStats {
    /// Adds `o` into `self` (the run's totals). Guest-reported values (the guest may report
    /// anything) add up saturating; `registered` and `exit_code` are left to the caller.
    pub fn add(&mut self, o: &VcpuStats) {
        self.ops = self.ops.saturating_add(o.ops);
        self.writes = self.writes.saturating_add(o.writes);
        self.violations = self.violations.saturating_add(o.violations);
        self.preemptions += o.preemptions;
        self.preemptions_in_cs += o.preemptions_in_cs;
        self.preemptions_in_blocking += o.preemptions_in_blocking;
        self.extensions += o.extensions;
        self.preemptions_at_bound += o.preemptions_at_bound;
        self.directed_yields += o.directed_yields;
        self.ple_exits += o.ple_exits;
        self.yields += o.yields;
        self.halts += o.halts;
        self.bad_hypercalls += o.bad_hypercalls;
        self.halt_polls += o.halt_polls;
        self.halt_poll_hits += o.halt_poll_hits;
        self.run_ns += o.run_ns;
        self.run_ns_before_stop += o.run_ns_before_stop;
        self.cpu_ns += o.cpu_ns;
        self.steal_ns += o.steal_ns;
        self.host_deschedules += o.host_deschedules;
        self.host_deschedules_in_cs += o.host_deschedules_in_cs;
        self.grace_periods = self.grace_periods.saturating_add(o.grace_periods);
        self.grace_cycles = self.grace_cycles.saturating_add(o.grace_cycles);
        self.run_cycles = self.run_cycles.saturating_add(o.run_cycles);
        self.garbage_rejected = self.garbage_rejected.saturating_add(o.garbage_rejected);
    }

    /// Copies the counters the guest may read into its hint slot (truncated to the ABI's
    /// `u32`s).
    pub fn publish(&self, hint: &HintSlot) {
        hint.nr_preempted
            .store(self.preemptions as u32, Ordering::Relaxed);
        hint.nr_preempted_in_cs
            .store(self.preemptions_in_cs as u32, Ordering::Relaxed);
        hint.nr_extensions
            .store(self.extensions as u32, Ordering::Relaxed);
        hint.nr_directed_yields
            .store(self.directed_yields as u32, Ordering::Relaxed);
    }
}

/// What a guest `Report` hypercall sets (its key decoded, before the scheduler lock is taken).
#[derive(Clone, Copy, Debug)]
pub enum Reported {
    /// A per-vCPU figure: stored into [`VcpuStats`].
    Vcpu(fn(&mut VcpuStats) -> &mut u64),
    /// The protected counter's final value (one per run).
    Counter,
    /// A key the shim does not know: ignored (the decoder already answered it).
    Ignored,
}

impl Reported {
    /// The meaning of report key `key` (`crate::workload::report`).
    pub fn of_key(key: u32) -> Self {
        match key {
            report::OPS => Reported::Vcpu(|s| &mut s.ops),
            report::WRITES => Reported::Vcpu(|s| &mut s.writes),
            report::VIOLATIONS => Reported::Vcpu(|s| &mut s.violations),
            report::GRACE_PERIODS => Reported::Vcpu(|s| &mut s.grace_periods),
            report::GRACE_CYCLES => Reported::Vcpu(|s| &mut s.grace_cycles),
            report::RUN_CYCLES => Reported::Vcpu(|s| &mut s.run_cycles),
            report::GARBAGE_REJECTED => Reported::Vcpu(|s| &mut s.garbage_rejected),
            report::COUNTER => Reported::Counter,
            _ => Reported::Ignored,
        }
    }
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
        let r = |a: &AtomicU32| a.load(Ordering::Acquire);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_keys_map_to_their_fields_and_totals_saturate() {
        let mut s = VcpuStats::default();
        for (key, v) in [
            (report::OPS, 5),
            (report::WRITES, 3),
            (report::RUN_CYCLES, 9),
        ] {
            let Reported::Vcpu(f) = Reported::of_key(key) else {
                panic!("per-vCPU key {key}");
            };
            *f(&mut s) = v;
        }
        assert_eq!((s.ops, s.writes, s.run_cycles), (5, 3, 9));
        assert!(matches!(
            Reported::of_key(report::COUNTER),
            Reported::Counter
        ));
        assert!(matches!(Reported::of_key(999), Reported::Ignored));
        let mut t = VcpuStats {
            ops: u64::MAX,
            preemptions: 1,
            ..VcpuStats::default()
        };
        t.add(&s);
        assert_eq!((t.ops, t.writes, t.preemptions), (u64::MAX, 3, 1));
    }
}
