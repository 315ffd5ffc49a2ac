//! The adaptive spin policy of the blocking locks: how long a waiter spins before it parks
//! (the spin steps themselves are [`Backoff`](crate::backoff::Backoff)'s). The parking is
//! `park`'s; the enlightenment rules are `docs/DESIGN.md`, "Enlightenment rules".

/// Rounds of extra spinning (64 `pause`s each) a guest waiter may add after the bounded spin,
/// while the host publishes hints, the holder runs and the pCPU is not overloaded: halting
/// then costs a WAIT/KICK round trip through the VMM for nothing (issue 4). About a time
/// slice of pauses; past it the waiter halts anyway.
const EXTENDED_SPIN_ROUNDS: u32 = 1024;

/// The adaptive spin policy of the blocking locks: spin while spinning can pay off, park
/// otherwise.
///
/// - natively (constant hints) this is a bounded spin then park, like parking_lot's
///   `SpinWait`: [`Backoff`](crate::backoff::Backoff) spins with doubling counts, then yields a
///   few times, then [`AdaptiveSpin::spin`] says "park";
/// - in a VM with live hints a waiter parks at once when the holder's vCPU is preempted or the
///   pCPU is overloaded (someone else could use it), and otherwise spins; when the host
///   publishes hints (`FEATURE_HINTS`) it keeps spinning past the bounded phase for up to
///   [`EXTENDED_SPIN_ROUNDS`] while those conditions hold;
/// - under loom it never spins (every spin would be a scheduling point to explore).
#[derive(Debug)]
pub(crate) struct AdaptiveSpin {
    backoff: crate::backoff::Backoff,
    extended: u32,
}

impl AdaptiveSpin {
    /// A fresh policy, for one acquisition attempt.
    #[inline]
    pub(crate) const fn new() -> Self {
        Self {
            backoff: crate::backoff::Backoff::new(),
            extended: 0,
        }
    }

    /// Starts over after a park.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.backoff.reset();
        self.extended = 0;
    }

    /// Spins once if spinning is worthwhile for a lock held by vCPU `holder` (if known) and
    /// returns `true`; returns `false` when the caller should park now.
    #[inline]
    pub(crate) fn spin(&mut self, holder: Option<u32>) -> bool {
        if cfg!(loom) {
            return false;
        }
        if ecs_sys::LIVE_HINTS {
            if crate::cs::overloaded() || holder.is_some_and(crate::cs::preempted) {
                return false;
            }
            if self.backoff.is_completed() {
                if !host_publishes_hints() || self.extended >= EXTENDED_SPIN_ROUNDS {
                    return false;
                }
                // Past the bounded phase `snooze` spins 64 pauses per step (with the PLE
                // accounting), and `is_completed` stays true.
                self.extended += 1;
                self.backoff.snooze(holder);
                return true;
            }
        } else if self.backoff.is_completed() {
            return false;
        }
        self.backoff.snooze(holder);
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
