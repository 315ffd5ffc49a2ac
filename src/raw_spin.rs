//! `RawSpinMutex`: a test-and-test-and-set spinlock whose lock word names the holder's vCPU.
//!
//! # Algorithm
//!
//! Test-and-test-and-set with bounded exponential backoff (Rudolph & Segall, "Dynamic
//! decentralized cache schemes for MIMD parallel processors", ISCA 1984; the backoff is
//! Anderson, "The performance of spin lock alternatives for shared-memory multiprocessors",
//! IEEE TPDS 1990, as crossbeam-utils' `Backoff` implements it):
//!
//! - **acquire**: one `compare_exchange(UNLOCKED, vcpu + 1)`. On failure, read the word
//!   (shared cache line, no write traffic) until it is `UNLOCKED`, backing off between reads
//!   through [`Backoff::snooze`], then try the CAS again.
//! - **release**: one `store(UNLOCKED, Release)`.
//!
//! Enlightenment (eCS, USENIX ATC 2018): the holder is a critical section
//! ([`cs::enter`] right after acquiring, [`cs::exit`] right after releasing), and the word
//! holds the holder's vCPU, so a waiter passes it to `snooze(Some(holder))`: the moment that
//! vCPU is preempted the waiter stops spinning and yields its pCPU to the holder (directed
//! yield). Natively every thread is vCPU 0 and nothing is ever preempted, so this folds away.
//!
//! # Lock word (`AtomicU32`)
//!
//! | value | meaning |
//! |---|---|
//! | `0` (`UNLOCKED`) | free |
//! | `v + 1`, `v < ecs_sys::abi::MAX_VCPUS` | held by a flow running on vCPU `v` (`v = 0` natively) |
//!
//! # Misuse caught in debug builds
//!
//! Unlocking a mutex that is not locked (possible only through the raw API, with forged guard
//! state) panics with a clear message. Reentrant locking cannot be detected: the word names a
//! vCPU, not a thread, and natively every thread is vCPU 0; it deadlocks, as documented on
//! [`SpinMutex`](crate::SpinMutex).

use crate::backoff::Backoff;
use crate::cs;
use crate::sync::{AtomicU32, Ordering};
use lock_api::GuardNoSend;

/// Lock word value of a free mutex.
const UNLOCKED: u32 = 0;

/// A raw test-and-test-and-set spinlock with exponential backoff; the 4-byte lock word is 0
/// when free and the holder's vCPU + 1 when held, so waiters can directed-yield to a preempted
/// holder. The protocol is documented at the top of `src/raw_spin.rs`.
///
/// Use it through [`SpinMutex`](crate::SpinMutex). The inherent methods expose the same
/// protocol as the [`lock_api::RawMutex`] impl, for models and low-level code.
///
/// ```
/// use ecs_locks::RawSpinMutex;
///
/// let raw = RawSpinMutex::new();
/// let guard = raw.lock();
/// assert!(raw.is_locked());
/// assert!(raw.try_lock().is_none());
/// // SAFETY: `guard` is the state of the acquisition above.
/// unsafe { raw.unlock(guard) };
/// assert!(!raw.is_locked());
/// ```
#[derive(Debug)]
pub struct RawSpinMutex {
    /// `UNLOCKED`, or the holder's vCPU + 1.
    word: AtomicU32,
}

impl RawSpinMutex {
    crate::sync::loom_const_fn! {
        /// A new, unlocked mutex.
        pub fn new() -> Self {
            Self {
                word: AtomicU32::new(UNLOCKED),
            }
        }
    }

    /// The lock word value that names this vCPU as the holder.
    #[inline(always)]
    fn my_word() -> u32 {
        cs::my_holder_tag()
    }

    /// Acquires the mutex, spinning (with backoff and directed yield) until it is free.
    #[inline]
    pub fn lock(&self) -> GuardNoSend {
        if self
            .word
            .compare_exchange(
                UNLOCKED,
                Self::my_word(),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            self.lock_contended();
        }
        cs::enter();
        GuardNoSend::new()
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let me = Self::my_word();
        let mut backoff = Backoff::new();
        loop {
            // Test: read-only until the word looks free, so waiters share the cache line.
            let mut word = self.word.load(Ordering::Relaxed);
            while word != UNLOCKED {
                backoff.snooze(Some(word - 1));
                word = self.word.load(Ordering::Relaxed);
            }
            // Test-and-set.
            if self
                .word
                .compare_exchange(UNLOCKED, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Acquires the mutex if it is free, without waiting.
    #[inline]
    pub fn try_lock(&self) -> Option<GuardNoSend> {
        self.word
            .compare_exchange(
                UNLOCKED,
                Self::my_word(),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| {
                cs::enter();
                GuardNoSend::new()
            })
    }

    /// Releases the mutex.
    ///
    /// # Safety
    ///
    /// The mutex must be held in the current context, and `guard` must be the state returned
    /// by the [`lock`](Self::lock) or [`try_lock`](Self::try_lock) that acquired it.
    #[inline]
    pub unsafe fn unlock(&self, guard: GuardNoSend) {
        let _ = guard;
        if cfg!(debug_assertions) {
            let prev = self.word.swap(UNLOCKED, Ordering::Release);
            assert!(
                prev != UNLOCKED,
                "RawSpinMutex::unlock called on an unlocked mutex (forged or reused guard state)"
            );
        } else {
            self.word.store(UNLOCKED, Ordering::Release);
        }
        cs::exit();
    }

    /// Whether the mutex is held (a momentary snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != UNLOCKED
    }

    /// The vCPU of the current holder, if any (a momentary snapshot; 0 natively).
    #[inline]
    pub fn holder_vcpu(&self) -> Option<u32> {
        match self.word.load(Ordering::Relaxed) {
            UNLOCKED => None,
            w => Some(w - 1),
        }
    }
}

impl Default for RawSpinMutex {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: `lock`/`try_lock` succeed only by the CAS `UNLOCKED -> holder` with `Acquire`, so at
// most one acquisition is outstanding; `unlock` stores `UNLOCKED` with `Release`. No operation
// can unwind while changing ownership except the debug check in `unlock`, which fires only
// when the mutex was not held (nothing to release). The state is `GuardNoSend`: the
// critical-section depth entered on acquisition belongs to this thread.
crate::sync::raw_mutex_from_inherent!(unsafe impl RawSpinMutex);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn word_names_holder_vcpu() {
        let raw = RawSpinMutex::new();
        assert_eq!(raw.holder_vcpu(), None);
        let g = raw.lock();
        assert_eq!(raw.holder_vcpu(), Some(ecs_sys::vcpu_id()));
        // SAFETY: `g` is the state of the acquisition above.
        unsafe { raw.unlock(g) };
        assert_eq!(raw.holder_vcpu(), None);
    }

    #[test]
    fn holder_is_a_critical_section() {
        let raw = RawSpinMutex::new();
        let before = ecs_sys::cs_depth();
        let g = raw.lock();
        assert_eq!(ecs_sys::cs_depth(), before + 1);
        assert!(raw.try_lock().is_none());
        assert_eq!(
            ecs_sys::cs_depth(),
            before + 1,
            "a failed try_lock enters nothing"
        );
        // SAFETY: `g` is the state of the acquisition above.
        unsafe { raw.unlock(g) };
        assert_eq!(ecs_sys::cs_depth(), before);
        let g = raw.try_lock().expect("free");
        assert_eq!(ecs_sys::cs_depth(), before + 1);
        // SAFETY: as above.
        unsafe { raw.unlock(g) };
        assert_eq!(ecs_sys::cs_depth(), before);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "unlocked mutex")]
    fn debug_unlock_of_unlocked_panics() {
        let raw = RawSpinMutex::new();
        // SAFETY: deliberately violated to check the debug diagnostic; the mutex is free, so
        // the forged release changes nothing.
        unsafe { raw.unlock(GuardNoSend::new()) };
    }
}
