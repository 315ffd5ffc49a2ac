//! The one spin policy: spin -> yield -> directed yield to the holder.
//!
//! Exponential spinning as in crossbeam-utils' `Backoff` (`SPIN_LIMIT` = 6 doublings, 64
//! `pause`s at most per step), then:
//! - natively (no live hints), a waiter past the spin limit yields its thread to the OS, so
//!   spinlocks survive oversubscription (many more threads than cores);
//! - in a VM with live hints, a waiter whose lock holder's vCPU is preempted stops spinning at
//!   once and yields to that vCPU (directed yield): spinning cannot help until it runs again.
//!   Otherwise it keeps spinning, as an unenlightened guest spinlock would, and the host's
//!   pause-loop exiting (when the host emulates it) traps it after `ple_window` spins.
//!
//! Under loom every spin is a yield to the model scheduler (see `sync`).

use crate::{cs, sync};

/// Doublings of the spin count before a native waiter starts yielding to the OS.
const SPIN_LIMIT: u32 = 6;

/// Steps after which [`Backoff::is_completed`] says a blocking lock should park instead
/// (crossbeam-utils' `YIELD_LIMIT`).
const YIELD_LIMIT: u32 = 10;

/// Per-wait backoff state. Create one per acquisition attempt.
#[derive(Debug)]
pub(crate) struct Backoff {
    step: u32,
    /// Spins since the last pause-loop exit (guest with PLE only).
    ple_spins: u32,
}

impl Backoff {
    /// A fresh backoff.
    #[inline]
    pub(crate) const fn new() -> Self {
        Self {
            step: 0,
            ple_spins: 0,
        }
    }

    /// Starts over (after progress, e.g. the lock changed hands).
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.step = 0;
    }

    /// Backs off after a failed CAS on a contended word: spins only, never yields.
    #[inline]
    pub(crate) fn spin(&mut self) {
        for _ in 0..1u32 << self.step.min(SPIN_LIMIT) {
            sync::spin_loop();
        }
        if self.step <= SPIN_LIMIT {
            self.step += 1;
        }
    }

    /// Waits one step for a lock held (or about to be handed to) vCPU `holder`, if known.
    #[inline]
    pub(crate) fn snooze(&mut self, holder: Option<u32>) {
        if let Some(h) = holder
            && cs::preempted(h)
        {
            ecs_sys::yield_to(h);
            self.ple_spins = 0;
            return;
        }
        let spins = 1u32 << self.step.min(SPIN_LIMIT);
        if ecs_sys::LIVE_HINTS || self.step <= SPIN_LIMIT || cfg!(loom) {
            for _ in 0..spins {
                sync::spin_loop();
            }
            self.account_pause_loop(spins);
        } else {
            ecs_sys::yield_now();
        }
        if self.step <= YIELD_LIMIT {
            self.step += 1;
        }
    }

    /// Whether this waiter has spun long enough that a blocking lock should park now.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        self.step > YIELD_LIMIT
    }

    /// Spins `spins` pauses at a fixed rate (no doubling, no yield), counted toward the host's
    /// emulated pause-loop exiting like every other spin: for waiters that poll a word on their
    /// own schedule (the ticket lock's hand-off window).
    #[inline]
    pub(crate) fn pause(&mut self, spins: u32) {
        for _ in 0..spins {
            sync::spin_loop();
        }
        self.account_pause_loop(spins);
    }

    /// Hardware pause-loop exiting, as the host emulates it: after `ple_window` spins the
    /// waiter traps to the host, which may hand its pCPU to another vCPU.
    #[inline]
    fn account_pause_loop(&mut self, spins: u32) {
        if !ecs_sys::LIVE_HINTS {
            return;
        }
        let window = ecs_sys::ple_window();
        if window == 0 {
            return;
        }
        self.ple_spins = self.ple_spins.saturating_add(spins);
        if self.ple_spins >= window {
            self.ple_spins = 0;
            ecs_sys::pause_exit();
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn completes_after_yield_limit() {
        let mut b = Backoff::new();
        for _ in 0..=YIELD_LIMIT {
            assert!(!b.is_completed());
            b.snooze(Some(0));
        }
        assert!(b.is_completed());
        b.reset();
        assert!(!b.is_completed());
    }
}
