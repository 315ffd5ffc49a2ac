//! The adaptive spin policy of the blocking locks: how long a waiter spins before it parks
//! (the spin steps themselves are [`Backoff`](crate::backoff::Backoff)'s). The parking is
//! `park`'s; the enlightenment rules are `docs/DESIGN.md`, "Enlightenment rules".

/// Native budget, as parking_lot_core 0.10's `SpinWait` (`src/spinwait.rs`: `1 << (counter -
/// 1)` pauses; issue 9 measured the old budget at 127 pauses and 4 yields): this many rounds of
/// doubling pause spins (1, 2, 4: 7 pauses; 0.9's 2, 4, 8 doubled it, and cost 10-15 % at 8
/// threads on 2 cores, docs/BENCHMARKS.md) ...
const NATIVE_SPIN_ROUNDS: u32 = 3;
/// ... then yields to the OS until this many steps in all (7 yields), then park.
const NATIVE_STEPS: u32 = 10;

/// The guest's spin cap while the holder's vCPU runs, in `Backoff` steps: the doubling ramp (1
/// to 64 pauses, 127 in 7 steps) and then 64 pauses a step, about 4 100 pauses in all. Sized
/// near the cost of one halt-and-kick round trip, which is what parking instead would cost:
/// on this project's machine (nested KVM) a pCPU hand-over through the VMM costs 100-250 us
/// (docs/BENCHMARKS.md, "A guest exit is expensive"), and 4 100 pauses at 40-140 cycles each
/// (the shim measures cycles per PAUSE at start) are 55-190 us at 3 GHz. On bare-metal KVM,
/// where the round trip is a few microseconds, this cap is generous; past it the waiter parks
/// anyway.
const GUEST_SPIN_STEPS: u32 = 7 + 62;

/// One step of the native budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NativeStep {
    /// Spin this many pauses.
    Pause(u32),
    /// Yield the thread to the OS.
    Yield,
    /// Stop spinning: park.
    Park,
}

/// The native budget's step number `step` (from 0).
const fn native_step(step: u32) -> NativeStep {
    if step < NATIVE_SPIN_ROUNDS {
        NativeStep::Pause(1 << step)
    } else if step < NATIVE_STEPS {
        NativeStep::Yield
    } else {
        NativeStep::Park
    }
}

/// The adaptive spin policy of the blocking locks: spin while spinning can pay off, park
/// otherwise (docs/DESIGN.md, "Enlightenment rules", blocking waiters).
///
/// - natively (constant hints) parking_lot's budget: 3 rounds of 1, 2 and 4 pauses, 7 yields,
///   then park;
/// - in a VM whose host publishes hints (`FEATURE_HINTS`), a waiter spins while the holder's
///   vCPU runs (eCS guarantees a running holder leaves its section soon), up to
///   [`GUEST_SPIN_STEPS`], about one halt-and-kick round trip; when the holder's vCPU is
///   preempted it gives the holder its pCPU once (directed yield) and parks if the holder is
///   still preempted after that. "This pCPU is overloaded" is no reason to park: over-committed
///   it is always true, and parking then only adds WAIT/KICK round trips (issue 8);
/// - in a VM without host hints, the bounded [`Backoff`](crate::backoff::Backoff) phase
///   (spinning only: a guest yield is a VM exit), then park;
/// - under loom it never spins (every spin would be a scheduling point to explore).
#[derive(Debug)]
pub(crate) struct AdaptiveSpin {
    backoff: crate::backoff::Backoff,
    steps: u32,
    yielded: bool,
}

impl AdaptiveSpin {
    /// A fresh policy, for one acquisition attempt.
    #[inline]
    pub(crate) const fn new() -> Self {
        Self {
            backoff: crate::backoff::Backoff::new(),
            steps: 0,
            yielded: false,
        }
    }

    /// Starts over after a park.
    #[inline]
    pub(crate) fn reset(&mut self) {
        *self = Self::new();
    }

    /// Spins once if spinning is worthwhile for a lock held by vCPU `holder` (if known) and
    /// returns `true`; returns `false` when the caller should park now.
    #[inline]
    pub(crate) fn spin(&mut self, holder: Option<u32>) -> bool {
        if cfg!(loom) {
            return false;
        }
        if !ecs_sys::LIVE_HINTS {
            return self.native();
        }
        if !host_publishes_hints() {
            if self.backoff.is_completed() {
                return false;
            }
            self.backoff.snooze(holder);
            return true;
        }
        if let Some(h) = holder
            && crate::cs::preempted(h)
        {
            // The holder cannot leave while descheduled: spinning is useless. Give it this
            // pCPU once; if it is still preempted afterwards, park.
            if self.yielded {
                return false;
            }
            self.yielded = true;
            ecs_sys::yield_to(h);
            return true;
        }
        if self.steps >= GUEST_SPIN_STEPS {
            return false;
        }
        self.steps += 1;
        // The holder runs (or is unknown): spin (with the pause-loop accounting).
        self.backoff.snooze(holder);
        true
    }

    /// One step of the native budget.
    #[inline]
    fn native(&mut self) -> bool {
        match native_step(self.steps) {
            NativeStep::Pause(n) => {
                for _ in 0..n {
                    crate::sync::spin_loop();
                }
            }
            NativeStep::Yield => ecs_sys::yield_now(),
            NativeStep::Park => return false,
        }
        self.steps += 1;
        true
    }
}

/// Whether the host publishes `preempted`/`overloaded` (the header's `FEATURE_HINTS`).
#[inline]
fn host_publishes_hints() -> bool {
    #[cfg(all(ecs_guest, target_arch = "x86_64", not(loom)))]
    return ecs_sys::backend::guest::Guest::features() & ecs_sys::abi::FEATURE_HINTS != 0;
    #[cfg(not(all(ecs_guest, target_arch = "x86_64", not(loom))))]
    false
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Issue 9: the native budget is parking_lot_core 0.10's (7 pauses, 7 yields), not 127 and
    /// 4 (and not 0.9's 14 pauses).
    #[test]
    fn native_budget_is_parking_lots() {
        let steps: Vec<_> = (0..)
            .map(native_step)
            .take_while(|s| *s != NativeStep::Park)
            .collect();
        let pauses: u32 = steps
            .iter()
            .map(|s| match s {
                NativeStep::Pause(n) => *n,
                _ => 0,
            })
            .sum();
        let yields = steps.iter().filter(|s| **s == NativeStep::Yield).count();
        assert_eq!((pauses, yields), (7, 7));
        assert_eq!(steps.len() as u32, NATIVE_STEPS);
    }

    #[test]
    fn adaptive_spin_is_bounded_natively() {
        let mut s = AdaptiveSpin::new();
        let mut spins = 0;
        while s.spin(Some(0)) {
            spins += 1;
            assert!(spins < 100, "native spinning must be bounded");
        }
        assert!(spins > 0, "natively a waiter spins a little before parking");
        s.reset();
        assert!(s.spin(None));
    }
}
