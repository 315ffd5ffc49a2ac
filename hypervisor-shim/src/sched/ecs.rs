//! `ecs`: the paper's policy, with short grants.
//!
//! - At slice end, a vCPU inside a critical section (`cs_depth > 0`, or holding a blocking
//!   mutex: `blocking_depth > 0`, whose parked waiters would otherwise wait a whole round of
//!   the run queue for it) is not preempted: the host
//!   grants one extension (at most one per slice, at most a quarter slice; by default 200 us,
//!   about two ticks) and sets `ext_granted`, so the guest yields when it leaves its outermost
//!   section. When the extension runs out the vCPU is preempted whatever its depth: a guest
//!   that never leaves its section cannot keep a pCPU beyond slice + extension. The extension
//!   is measured in the vCPU thread's CPU time (what a dedicated pCPU would have given it; on
//!   this shared machine the host kernel deschedules vCPU threads for milliseconds), capped at
//!   four slices of wall-clock time (measured: with other work on the host, a vCPU thread got
//!   40-150 us of CPU time in 4 ms of wall-clock time).
//! - A `Yield` from a vCPU with `ext_granted` ends the extension at once (the core clears the
//!   flag and gives the pCPU to the queue head).
//! - `YieldTo(n)` is a directed yield: the caller's pCPU goes to vCPU `n` when `n` is waiting
//!   for a pCPU (preempted), for the rest of the caller's slice, else to the queue head.
//! - The scheduler keeps `preempted` and `overloaded` current in every hint slot
//!   (`publishes_hints`), unless guest hints are off (`--guest-hints off`, the ablation).
//!
//! Why short grants (DESIGN.md, pitfalls): the original eCS granted a whole extra tick; Linux's
//! rseq time-slice extension grants 5 us (50 us at most) and requires a yield at exit. A long
//! grant lets a vCPU re-enter sections on the borrowed time; a short one plus yield-at-exit
//! returns the pCPU as soon as the lock is free.

use super::policy::{Policy, TargetView, TickDecision, TickView, YieldChoice};
use crate::config::PolicyKind;
use ecs_sys::abi::{FEATURE_HINTS, FEATURE_PLE};

/// The eCS policy.
#[derive(Debug, Clone, Copy)]
pub struct Ecs {
    /// Length of one extension in ns of the vCPU's CPU time (at most a quarter slice).
    extension: u64,
    /// Wall-clock cap of an extension in ns: four slices.
    cap: u64,
    /// Pause-loop window when the host also emulates PLE (`ecs-ple`), 0 = no PLE.
    ple_window: u32,
}

impl Ecs {
    /// An eCS policy granting `extension_ns`, bounded by a quarter of `slice_ns`.
    pub fn new(extension_ns: u64, slice_ns: u64) -> Self {
        Ecs {
            extension: extension_ns.min(slice_ns / 4),
            cap: slice_ns.saturating_mul(4),
            ple_window: 0,
        }
    }

    /// The same policy on a host that also has pause-loop exiting (`ecs-ple`): the header
    /// advertises `FEATURE_PLE` with `window`, and a `PauseExit` yields to the vCPU
    /// `kvm_vcpu_on_spin` picks, as under `ple`. A production KVM host keeps PLE on; the
    /// paper's eCS runs on top.
    pub fn with_ple(self, window: u32) -> Self {
        Ecs {
            ple_window: window,
            ..self
        }
    }

    /// The extension actually granted, in ns.
    pub fn extension(&self) -> u64 {
        self.extension
    }
}

impl Policy for Ecs {
    fn kind(&self) -> PolicyKind {
        if self.ple_window > 0 {
            PolicyKind::EcsPle
        } else {
            PolicyKind::Ecs
        }
    }

    fn features(&self) -> u32 {
        if self.ple_window > 0 {
            FEATURE_HINTS | FEATURE_PLE
        } else {
            FEATURE_HINTS
        }
    }

    fn ple_window(&self) -> u32 {
        self.ple_window
    }

    fn publishes_hints(&self) -> bool {
        true
    }

    fn at_tick(&self, v: &TickView) -> TickDecision {
        if let Some(until) = v.ext_until {
            // The bound: an extension that ran out ends in a preemption, in a section or not.
            // It runs out after `extension` of the vCPU's own CPU time, or at the wall-clock
            // cap (one slice) whatever the host did to the vCPU thread.
            return if v.ext_cpu_ns < self.extension && v.now < until {
                TickDecision::Continue
            } else if v.waiting == 0 {
                TickDecision::NewSlice
            } else {
                TickDecision::Preempt
            };
        }
        if v.now < v.slice_start.saturating_add(v.slice) {
            TickDecision::Continue
        } else if v.waiting == 0 {
            TickDecision::NewSlice
        } else if (v.cs_depth > 0 || v.blocking_depth > 0) && self.extension > 0 {
            TickDecision::Extend {
                until: v.now.saturating_add(self.cap),
            }
        } else {
            TickDecision::Preempt
        }
    }

    fn on_yield_to(&self, t: &TargetView) -> YieldChoice {
        if t.target_queued && t.target != t.caller {
            YieldChoice::Directed(t.target)
        } else {
            YieldChoice::QueueHead
        }
    }

    fn on_pause_exit(&self) -> bool {
        self.ple_window > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(now: u64, cs_depth: u32, ext_until: Option<u64>, waiting: usize) -> TickView {
        TickView {
            now,
            slice_start: 0,
            slice: 4_000_000,
            cs_depth,
            blocking_depth: 0,
            ext_until,
            // In these tests the vCPU ran all the time since the grant at 4 ms.
            ext_cpu_ns: ext_until.map_or(0, |_| now.saturating_sub(4_000_000)),
            waiting,
        }
    }

    #[test]
    fn defers_once_in_a_critical_section() {
        let p = Ecs::new(200_000, 4_000_000);
        assert_eq!(
            p.at_tick(&view(3_999_999, 1, None, 3)),
            TickDecision::Continue
        );
        assert_eq!(
            p.at_tick(&view(4_000_000, 1, None, 3)),
            TickDecision::Extend { until: 20_000_000 }
        );
        assert_eq!(
            p.at_tick(&view(4_000_000, 0, None, 3)),
            TickDecision::Preempt
        );
        assert_eq!(
            p.at_tick(&view(4_000_000, 1, None, 0)),
            TickDecision::NewSlice
        );
    }

    #[test]
    fn a_blocking_mutex_holder_is_deferred_too() {
        let p = Ecs::new(200_000, 4_000_000);
        let mut v = view(4_000_000, 0, None, 3);
        v.blocking_depth = 1;
        assert_eq!(p.at_tick(&v), TickDecision::Extend { until: 20_000_000 });
    }

    #[test]
    fn the_extension_is_bounded() {
        assert_eq!(
            Ecs::new(u64::MAX, 4_000_000).extension(),
            1_000_000,
            "a quarter slice"
        );
        let p = Ecs::new(200_000, 4_000_000);
        let until = Some(20_000_000);
        assert_eq!(
            p.at_tick(&view(4_100_000, 1, until, 3)),
            TickDecision::Continue
        );
        // Still inside the section when the extension ends: preempted anyway, no second grant.
        assert_eq!(
            p.at_tick(&view(4_200_000, 1, until, 3)),
            TickDecision::Preempt
        );
        assert_eq!(
            p.at_tick(&view(4_200_000, 9, until, 0)),
            TickDecision::NewSlice
        );
    }

    #[test]
    fn the_extension_counts_cpu_time_up_to_a_wall_clock_cap() {
        let p = Ecs::new(200_000, 4_000_000);
        let mut v = view(5_000_000, 1, Some(20_000_000), 3);
        // The host kernel descheduled the vCPU thread: 1 ms passed, 50 us of CPU time used.
        v.ext_cpu_ns = 50_000;
        assert_eq!(p.at_tick(&v), TickDecision::Continue);
        v.ext_cpu_ns = 200_000;
        assert_eq!(p.at_tick(&v), TickDecision::Preempt);
        // Never past the cap, whatever the CPU time says.
        v.ext_cpu_ns = 0;
        v.now = 20_000_000;
        assert_eq!(p.at_tick(&v), TickDecision::Preempt);
    }

    #[test]
    fn directed_yield_only_to_a_waiting_vcpu() {
        let p = Ecs::new(200_000, 4_000_000);
        let t = |target, target_queued| TargetView {
            caller: 0,
            target,
            target_queued,
        };
        assert_eq!(p.on_yield_to(&t(3, true)), YieldChoice::Directed(3));
        assert_eq!(p.on_yield_to(&t(3, false)), YieldChoice::QueueHead);
        assert_eq!(p.on_yield_to(&t(0, true)), YieldChoice::QueueHead);
        assert!(p.publishes_hints());
        assert_eq!(p.features(), FEATURE_HINTS);
        assert!(!p.on_pause_exit());
        assert_eq!(p.kind(), PolicyKind::Ecs);
    }

    #[test]
    fn ecs_ple_adds_pause_loop_exits_and_keeps_the_rest() {
        let p = Ecs::new(200_000, 4_000_000).with_ple(256);
        assert_eq!(p.kind(), PolicyKind::EcsPle);
        assert_eq!(p.features(), FEATURE_HINTS | FEATURE_PLE);
        assert_eq!(p.ple_window(), 256);
        assert!(p.on_pause_exit());
        assert_eq!(
            p.at_tick(&view(4_000_000, 1, None, 3)),
            TickDecision::Extend { until: 20_000_000 }
        );
    }
}
