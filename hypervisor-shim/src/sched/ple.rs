//! `ple`: round robin plus pause-loop exiting, stock KVM's answer to lock-holder preemption.
//!
//! The header advertises `FEATURE_PLE` with KVM's base window (4096 cycles in spins, see
//! [`super::pause`]); each vCPU's window, in its slot, grows x2 per exit and is reset when it
//! is scheduled in. The guest's `Backoff` issues `PauseExit` after spinning that long
//! (hardware PLE traps a PAUSE loop the same way). The host then gives the spinner's pCPU,
//! for the rest of its slice, to the vCPU `kvm_vcpu_on_spin` would boost (round robin from the
//! last boosted, skipping the not-ready and recent spinners), not knowing which vCPU holds the
//! lock; with no eligible sibling the spinner keeps its pCPU. No hints are published.

use super::baseline::round_robin;
use super::policy::{Policy, TargetView, TickDecision, TickView, YieldChoice};
use crate::config::PolicyKind;
use ecs_sys::abi::FEATURE_PLE;

/// Round robin with pause-loop exits.
#[derive(Debug, Clone, Copy)]
pub struct Ple {
    /// Spin iterations before a waiter traps.
    pub window: u32,
}

impl Policy for Ple {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Ple
    }

    fn features(&self) -> u32 {
        FEATURE_PLE
    }

    fn ple_window(&self) -> u32 {
        self.window
    }

    fn at_tick(&self, v: &TickView) -> TickDecision {
        round_robin(v)
    }

    fn on_yield_to(&self, _target: &TargetView) -> YieldChoice {
        YieldChoice::QueueHead
    }

    fn on_pause_exit(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertises_the_window_and_yields_on_pause_exit() {
        let p = Ple { window: 4096 };
        assert_eq!(p.features(), FEATURE_PLE);
        assert_eq!(p.ple_window(), 4096);
        assert!(p.on_pause_exit());
        assert!(!p.publishes_hints());
    }

    #[test]
    fn does_not_know_the_holder() {
        let p = Ple { window: 1 };
        let t = TargetView {
            caller: 2,
            target: 5,
            target_queued: true,
        };
        assert_eq!(p.on_yield_to(&t), YieldChoice::QueueHead);
        let v = TickView {
            now: 10_000,
            slice_start: 0,
            slice: 4000,
            cs_depth: 1,
            blocking_depth: 0,
            ext_until: None,
            ext_cpu_ns: 0,
            waiting: 2,
        };
        assert_eq!(p.at_tick(&v), TickDecision::Preempt);
    }
}
