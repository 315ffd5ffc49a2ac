//! `baseline`: oblivious round robin, plain KVM on an over-committed host.
//!
//! Preempts at the end of every slice when another vCPU waits for a pCPU; publishes no hints
//! (`preempted`/`overloaded` stay 0), ignores `cs_depth`, serves a directed yield as a plain
//! yield to the queue head. Yield, Wait and Kick are still served by the scheduler core.

use super::policy::{Policy, TargetView, TickDecision, TickView, YieldChoice};
use crate::config::PolicyKind;

/// Round robin with a fixed slice.
#[derive(Debug, Default, Clone, Copy)]
pub struct Baseline;

/// The round-robin slice-end rule shared by `baseline` and `ple`.
pub(super) fn round_robin(v: &TickView) -> TickDecision {
    if v.now < v.slice_start.saturating_add(v.slice) {
        TickDecision::Continue
    } else if v.waiting == 0 {
        TickDecision::NewSlice
    } else {
        TickDecision::Preempt
    }
}

impl Policy for Baseline {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Baseline
    }

    fn features(&self) -> u32 {
        0
    }

    fn at_tick(&self, v: &TickView) -> TickDecision {
        round_robin(v)
    }

    fn on_yield_to(&self, _target: &TargetView) -> YieldChoice {
        YieldChoice::QueueHead
    }

    fn on_pause_exit(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(now: u64, cs_depth: u32, waiting: usize) -> TickView {
        TickView {
            now,
            slice_start: 1000,
            slice: 4000,
            cs_depth,
            blocking_depth: 0,
            ext_until: None,
            ext_cpu_ns: 0,
            waiting,
        }
    }

    #[test]
    fn preempts_at_slice_end_only_when_someone_waits() {
        let p = Baseline;
        assert_eq!(p.at_tick(&view(4999, 0, 3)), TickDecision::Continue);
        assert_eq!(p.at_tick(&view(5000, 0, 3)), TickDecision::Preempt);
        assert_eq!(p.at_tick(&view(5000, 0, 0)), TickDecision::NewSlice);
    }

    #[test]
    fn ignores_critical_sections_and_hints() {
        let p = Baseline;
        assert_eq!(p.at_tick(&view(9000, 5, 1)), TickDecision::Preempt);
        assert!(!p.publishes_hints());
        assert_eq!(p.features(), 0);
        let t = TargetView {
            caller: 0,
            target: 1,
            target_queued: true,
        };
        assert_eq!(p.on_yield_to(&t), YieldChoice::QueueHead);
        assert!(!p.on_pause_exit());
    }
}
