//! The policy interface: what a policy sees ([`TickView`], [`TargetView`]), what it decides
//! ([`TickDecision`], [`YieldChoice`]), the [`Policy`] trait, and [`policy_for`], which picks the
//! policy of a run. The policies themselves (`baseline.rs`, `ple.rs`, `ecs.rs`) are pure
//! functions of these views, so they can be unit-tested and could move into a host scheduler.

use super::{baseline, ecs, ple};
use crate::config::{PolicyKind, RunConfig};
use core::fmt;

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
    /// Runnable vCPUs waiting for a pCPU.
    pub waiting: usize,
}

/// A policy's decision for a running vCPU at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickDecision {
    /// Keep running.
    Continue,
    /// The slice is over but nobody waits: start a new slice, no preemption.
    NewSlice,
    /// Take the pCPU away now.
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
    /// Whether the target is runnable and waiting for a pCPU (preempted).
    pub target_queued: bool,
}

/// Where a directed yield's pCPU goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YieldChoice {
    /// To this vCPU (a directed yield served).
    Directed(u32),
    /// To the head of the run queue (a plain yield).
    QueueHead,
}

/// A candidate of a pause-loop exit's yield, as `kvm_vcpu_on_spin` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The vCPU.
    pub vcpu: u32,
    /// Runnable and waiting for a pCPU (KVM's `vcpu->ready`: preempted while runnable).
    pub ready: bool,
    /// Eligible for a directed yield (KVM's `kvm_vcpu_eligible_for_directed_yield`: a vCPU
    /// that left its pCPU spinning itself is eligible only every other time it is considered).
    pub eligible: bool,
}

/// What the policy sees of a pause-loop exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpinView<'a> {
    /// The spinning vCPU.
    pub caller: u32,
    /// The other vCPUs of the VM in round-robin order, starting after the last one a
    /// pause-loop exit boosted (`kvm->last_boosted_vcpu`).
    pub candidates: &'a [Candidate],
}

/// `kvm_vcpu_on_spin`'s choice: the first ready, eligible vCPU in round-robin order; none means
/// the spinner keeps its pCPU.
pub fn kvm_on_spin(v: &SpinView<'_>) -> Option<u32> {
    v.candidates
        .iter()
        .find(|c| c.vcpu != v.caller && c.ready && c.eligible)
        .map(|c| c.vcpu)
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
    /// Whether the scheduler keeps `preempted`/`overloaded` current in the hint slots.
    fn publishes_hints(&self) -> bool {
        false
    }
    /// The decision for a running vCPU at a tick.
    fn at_tick(&self, v: &TickView) -> TickDecision;
    /// Where a `YieldTo` sends the caller's pCPU.
    fn on_yield_to(&self, t: &TargetView) -> YieldChoice;
    /// Whether a `PauseExit` may give the caller's pCPU away (the host emulates PLE).
    fn on_pause_exit(&self) -> bool;
    /// To whom a `PauseExit` gives the caller's pCPU (for the rest of its slice), if anyone;
    /// asked only when [`Policy::on_pause_exit`] is true. KVM's rule by default.
    fn pause_exit_target(&self, v: &SpinView<'_>) -> Option<u32> {
        kvm_on_spin(v)
    }
}

/// The policy object for a run.
pub fn policy_for(cfg: &RunConfig) -> Box<dyn Policy> {
    let ecs = || {
        ecs::Ecs::new(
            cfg.effective_extension().as_nanos() as u64,
            cfg.slice.as_nanos() as u64,
        )
    };
    match cfg.policy {
        PolicyKind::Baseline => Box::new(baseline::Baseline),
        PolicyKind::Ple => Box::new(ple::Ple {
            window: cfg.ple_base_window(),
        }),
        PolicyKind::Ecs => Box::new(ecs()),
        PolicyKind::EcsPle => Box::new(ecs().with_ple(cfg.ple_base_window())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_spin_takes_the_first_ready_eligible_vcpu_in_round_robin_order() {
        let c = |vcpu, ready, eligible| Candidate {
            vcpu,
            ready,
            eligible,
        };
        let cands = [
            c(3, false, true),
            c(4, true, false),
            c(5, true, true),
            c(0, true, true),
        ];
        let v = SpinView {
            caller: 2,
            candidates: &cands,
        };
        assert_eq!(kvm_on_spin(&v), Some(5), "3 not ready, 4 spun recently");
        let none = [c(3, false, true), c(4, true, false)];
        let v = SpinView {
            caller: 2,
            candidates: &none,
        };
        assert_eq!(
            kvm_on_spin(&v),
            None,
            "no eligible sibling: the spinner keeps its pCPU"
        );
        let me = [c(2, true, true)];
        let v = SpinView {
            caller: 2,
            candidates: &me,
        };
        assert_eq!(kvm_on_spin(&v), None, "never itself");
    }
}
