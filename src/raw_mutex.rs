//! `RawMutex`: the blocking, adaptive mutex behind [`Mutex`](crate::Mutex).
//!
//! # Algorithm
//!
//! parking_lot 0.13's `RawMutex` (`src/raw_mutex.rs`, itself after WebKit's `WTF::Lock`): one
//! atomic word, a CAS fast path, and a slow path that spins a bounded while and then parks the
//! thread in a wait queue keyed by the lock's address ([`crate::park`]). The unlocker clears
//! `LOCKED` with one RMW and, only when `PARKED` was set, wakes one waiter; the woken waiter
//! competes for the lock again (barging, so the lock is not FIFO). A fair unlock instead hands
//! the still-locked mutex directly to the first waiter.
//!
//! What eCS adds (docs/DESIGN.md, "Enlightenment rules", blocking waiters):
//! - the holder's vCPU id lives in the upper bits of the word, written by the acquiring CAS
//!   itself, so a waiter knows whom it waits for at no extra cost;
//! - the spin decision is [`AdaptiveSpin`]: in a guest a waiter spins while the holder's vCPU
//!   runs (capped near one halt-and-kick round trip) and yields to the holder, then parks,
//!   when it is preempted; natively (hints constant false) it is parking_lot's `SpinWait`
//!   budget, then park;
//! - a holder is inside a *blocking* section: `cs::blocking_enter()` right after acquiring,
//!   `cs::blocking_exit()` right after releasing (the paper's weaker hint, not `cs::enter`).
//!
//! # The lock word (`AtomicU32`)
//!
//! | bits | name | meaning |
//! |------|------|---------|
//! | 0 | `LOCKED` | held by some thread |
//! | 1 | `PARKED` | one or more threads are parked or about to park on this lock; while `LOCKED` is set it is only cleared under the queue lock (a park callback), so parked threads are never forgotten |
//! | 2..8 | - | zero |
//! | 8..32 | holder | the vCPU id of the holder (`cs::vcpu_id()`, always 0 natively); meaningful only while `LOCKED` is set, a hint only (after a fair hand-off it briefly names the unlocker) |
//!
//! | `PARKED` | `LOCKED` | state |
//! |---|---|---|
//! | 0 | 0 | free, no waiters |
//! | 0 | 1 | held, no parked waiters |
//! | 1 | 0 | free; a woken waiter is about to retry, or a waiter about to park will re-validate |
//! | 1 | 1 | held, waiters parked |
//!
//! # Misuse
//!
//! The type system allows unlocking through the raw API without holding the lock, and locking
//! a `Mutex` twice on one thread (a self-deadlock). Debug builds catch, with a panic naming the
//! mistake: unlocking an unlocked mutex, and a second `lock` by the thread (natively) or vCPU
//! (guest) that holds it — the holder's id is kept in a debug-only field. Release builds do
//! neither check; a double lock then deadlocks as in parking_lot.

use crate::GuardMarker;
use crate::adaptive_spin::AdaptiveSpin;
use crate::cs;
use crate::park::{self, ParkResult, TOKEN_HANDOFF, TOKEN_NORMAL, UnparkResult};
use crate::sync::{AtomicU32, Ordering};

/// Held by some thread.
const LOCKED: u32 = 0b01;
/// Threads are parked (or about to park) on this lock.
const PARKED: u32 = 0b10;
/// Shift of the holder's vCPU id.
const HOLDER_SHIFT: u32 = 8;

// Every vCPU id fits in the holder bits.
const _: () = assert!(ecs_sys::abi::MAX_VCPUS <= 1 << (32 - HOLDER_SHIFT));

/// The lock-word bits naming the calling vCPU as holder (constant 0 natively).
#[inline(always)]
fn me() -> u32 {
    cs::vcpu_id() << HOLDER_SHIFT
}

/// Raw blocking mutex: adaptive (spins while the holder runs, parks otherwise), barging by
/// default with fair unlock and bump ([`lock_api::RawMutexFair`]), timed with `std`.
///
/// Same contract and fairness as parking_lot 0.13's `RawMutex`; it differs in the word (a
/// `u32` holding the holder's vCPU instead of a `u8`, plus a debug-only holder id), the spin
/// decision (hint-driven in a VM), the blocking-section hints, and the parking backend in
/// `no_std` builds (the crate's portable wait queue, `park/queue.rs`: WAIT/KICK in a guest).
///
/// ```
/// use ecs_locks::RawMutex;
/// use lock_api::RawMutex as _;
///
/// let raw = RawMutex::new();
/// let guard = raw.lock();
/// assert!(raw.is_locked() && raw.try_lock().is_none());
/// // SAFETY: `guard` is the state of the acquisition above.
/// unsafe { raw.unlock(guard) };
/// // Usually through the alias instead: ecs_locks::Mutex<T> = lock_api::Mutex<RawMutex, T>.
/// let m = lock_api::Mutex::<RawMutex, _>::new(1);
/// assert_eq!(*m.lock(), 1);
/// ```
pub struct RawMutex {
    state: AtomicU32,
    /// Debug builds: a cheap id of the holding thread (0 = none), for the self-deadlock check.
    #[cfg(debug_assertions)]
    owner: crate::sync::AtomicUsize,
}

impl RawMutex {
    crate::sync::loom_const_fn! {
        /// An unlocked mutex.
        pub fn new() -> Self {
            Self {
                state: AtomicU32::new(0),
                #[cfg(debug_assertions)]
                owner: crate::sync::AtomicUsize::new(0),
            }
        }
    }

    /// The vCPU that holds the lock, if it is held: a momentary hint (0 natively).
    #[inline]
    pub fn holder(&self) -> Option<u32> {
        let s = self.state.load(Ordering::Relaxed);
        (s & LOCKED != 0).then_some(s >> HOLDER_SHIFT)
    }

    /// Bookkeeping right after any acquisition.
    #[inline(always)]
    fn acquired(&self) {
        #[cfg(debug_assertions)]
        self.owner.store(debug_thread_id(), Ordering::Relaxed);
        // SAFETY: not inside a parking callback.
        unsafe { crate::deadlock::acquire_resource(crate::deadlock::key(self)) };
        cs::blocking_enter();
    }

    /// Bookkeeping right before any release (the hint is dropped after the release). The
    /// deadlock detector's record is dropped separately, by [`Self::release_detector_record`],
    /// because `Condvar` releases the mutex inside a parking callback, where the detector must
    /// not be called.
    #[inline(always)]
    fn releasing(&self) {
        #[cfg(debug_assertions)]
        self.owner.store(0, Ordering::Relaxed);
    }

    /// Stops recording this mutex as held by the current thread (`deadlock_detection`; nothing
    /// otherwise). Every release calls it once, outside any parking callback.
    #[inline(always)]
    pub(crate) fn release_detector_record(&self) {
        // SAFETY: the callers are never inside a parking callback.
        unsafe { crate::deadlock::release_resource(crate::deadlock::key(self)) };
    }

    /// Records this mutex as held again after [`Self::release_detector_record`] when the
    /// release did not happen after all (a `Condvar` wait refused before parking).
    #[inline(always)]
    pub(crate) fn restore_detector_record(&self) {
        // SAFETY: never inside a parking callback.
        unsafe { crate::deadlock::acquire_resource(crate::deadlock::key(self)) };
    }

    /// Releases the lock (unfair) and drops the blocking hint; used by `unlock` and `Condvar`.
    /// The deadlock detector's record is the caller's ([`Self::release_detector_record`]).
    ///
    /// # Safety
    /// The caller holds the lock.
    #[inline]
    pub(crate) unsafe fn unlock_inner(&self) {
        self.releasing();
        let prev = self.state.fetch_and(PARKED, Ordering::Release);
        debug_assert!(
            prev & LOCKED != 0,
            "ecs_locks::RawMutex: unlock of a mutex that is not locked"
        );
        cs::blocking_exit();
        if prev & PARKED != 0 {
            self.unlock_slow();
        }
    }

    /// Takes the lock; `Condvar` uses it to re-lock after a wait that was not handed the lock.
    #[inline]
    pub(crate) fn lock_inner(&self) {
        if self
            .state
            .compare_exchange_weak(0, LOCKED | me(), Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(None);
        }
        self.acquired();
    }

    /// Completes an acquisition that a fair unlock handed to us (`TOKEN_HANDOFF`).
    #[inline]
    pub(crate) fn acquired_by_handoff(&self) {
        self.claim_holder_bits();
        self.acquired();
    }

    /// After a hand-off the word still names the unlocker's vCPU: name ours (guest only).
    #[inline]
    fn claim_holder_bits(&self) {
        if ecs_sys::LIVE_HINTS {
            let _ = self
                .state
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                    Some((s & (LOCKED | PARKED)) | me())
                });
        }
    }

    /// Sets `PARKED` if the lock is held (Condvar requeue, under the queue lock).
    #[inline]
    pub(crate) fn mark_parked_if_locked(&self) -> bool {
        self.state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (s & LOCKED != 0).then_some(s | PARKED)
            })
            .is_ok()
    }

    /// Sets `PARKED` (Condvar requeue, under the queue lock).
    #[inline]
    pub(crate) fn mark_parked(&self) {
        self.state.fetch_or(PARKED, Ordering::Relaxed);
    }

    /// Debug builds: panics if the calling thread already holds this lock.
    #[inline]
    fn check_not_reentrant(&self) {
        #[cfg(debug_assertions)]
        {
            let me = debug_thread_id();
            if me != 0 && self.owner.load(Ordering::Relaxed) == me {
                panic!(
                    "ecs_locks::Mutex: the thread that holds this mutex tried to lock it again \
                     (a self-deadlock); use ReentrantMutex for reentrant locking"
                );
            }
        }
    }

    /// Contended acquisition. Returns `false` only when `timeout` passed.
    #[cold]
    fn lock_slow(&self, timeout: Option<park::Instant>) -> bool {
        // Only an untimed lock by the holder is a certain deadlock; a timed one times out.
        if timeout.is_none() {
            self.check_not_reentrant();
        }
        let mut spin = AdaptiveSpin::new();
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            // Take the lock if it is free, even if others are queued (barging).
            if state & LOCKED == 0 {
                match self.state.compare_exchange_weak(
                    state,
                    (state & PARKED) | LOCKED | me(),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    Err(x) => state = x,
                }
                continue;
            }

            // Nobody queued yet: spin while that can pay off (holder running, pCPU free).
            if state & PARKED == 0 && spin.spin(Some(state >> HOLDER_SHIFT)) {
                state = self.state.load(Ordering::Relaxed);
                continue;
            }

            if state & PARKED == 0
                && let Err(x) = self.state.compare_exchange_weak(
                    state,
                    state | PARKED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
            {
                state = x;
                continue;
            }

            let addr = core::ptr::from_ref(self).addr();
            let validate =
                || self.state.load(Ordering::Relaxed) & (LOCKED | PARKED) == LOCKED | PARKED;
            let timed_out = |_, was_last_thread| {
                if was_last_thread {
                    self.state.fetch_and(!PARKED, Ordering::Relaxed);
                }
            };
            // SAFETY: `addr` is this lock's address, which only this lock parks on;
            // `validate` and `timed_out` only touch the atomic word (no unwinding, no
            // re-entry into the parking lot); `before_sleep` does nothing.
            match unsafe {
                park::park(
                    addr,
                    validate,
                    || {},
                    timed_out,
                    park::DEFAULT_PARK_TOKEN,
                    timeout,
                )
            } {
                ParkResult::Unparked(TOKEN_HANDOFF) => {
                    self.claim_holder_bits();
                    return true;
                }
                ParkResult::Unparked(_) | ParkResult::Invalid => {}
                ParkResult::TimedOut => return false,
            }
            spin.reset();
            state = self.state.load(Ordering::Relaxed);
        }
    }

    /// Wakes one parked waiter after an unfair release.
    #[cold]
    fn unlock_slow(&self) {
        let addr = core::ptr::from_ref(self).addr();
        let callback = |result: UnparkResult| {
            // The lock is already released; keep LOCKED if someone took it meanwhile.
            if !result.have_more_threads {
                self.state.fetch_and(!PARKED, Ordering::Relaxed);
            }
            TOKEN_NORMAL
        };
        // SAFETY: our own address; the callback only touches the word.
        unsafe {
            park::unpark_one(addr, callback);
        }
    }

    /// Fair release with waiters: hand the lock to the first one, still locked.
    #[cold]
    fn unlock_fair_slow(&self) {
        let addr = core::ptr::from_ref(self).addr();
        let callback = |result: UnparkResult| {
            if result.unparked_threads != 0 {
                if !result.have_more_threads {
                    self.state.fetch_and(!PARKED, Ordering::Relaxed);
                }
                return TOKEN_HANDOFF;
            }
            if result.have_more_threads {
                self.state.store(PARKED, Ordering::Release);
            } else {
                self.state.store(0, Ordering::Release);
            }
            TOKEN_NORMAL
        };
        // SAFETY: our own address; the callback only touches the word.
        unsafe {
            park::unpark_one(addr, callback);
        }
    }

    #[cold]
    fn bump_slow(&self) {
        self.release_detector_record();
        self.releasing();
        self.unlock_fair_slow();
        cs::blocking_exit();
        crate::sync::abort_on_panic(|| self.lock_inner());
    }
}

impl Default for RawMutex {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for RawMutex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawMutex")
            .field("holder", &self.holder())
            .finish()
    }
}

// SAFETY: LOCKED is taken only by a successful Acquire CAS from a state without LOCKED and
// released by a Release RMW, so at most one guard exists at a time with acquire/release
// ordering; guard state is stateless (`GuardMarker`), forgetting it only leaks the lock; no
// operation unwinds while holding a new acquisition (the debug reentrancy panic fires before
// acquiring).
unsafe impl lock_api::RawMutex for RawMutex {
    crate::sync::loom_init!();

    type Guard = GuardMarker;

    #[inline]
    fn lock(&self) -> GuardMarker {
        self.lock_inner();
        GuardMarker::new()
    }

    #[inline]
    fn try_lock(&self) -> Option<GuardMarker> {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| {
                (s & LOCKED == 0).then_some((s & PARKED) | LOCKED | me())
            })
            .ok()?;
        self.acquired();
        Some(GuardMarker::new())
    }

    #[inline]
    unsafe fn unlock(&self, _guard: GuardMarker) {
        self.release_detector_record();
        // SAFETY: the caller holds the lock (trait contract).
        unsafe { self.unlock_inner() };
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & LOCKED != 0
    }
}

// SAFETY: `unlock_fair` releases exactly the caller's acquisition (or hands it, still locked,
// to a parked waiter that then owns it); `bump` releases and re-acquires, aborting if the
// re-acquisition could unwind.
unsafe impl lock_api::RawMutexFair for RawMutex {
    #[inline]
    unsafe fn unlock_fair(&self, _guard: GuardMarker) {
        self.release_detector_record();
        self.releasing();
        // One CAS, without a load first, from the word as this holder's acquisition usually
        // left it (its own holder bits, 0 natively): clearing a word that is `LOCKED` with
        // `PARKED` clear is right whatever its holder bits say, and any other word (parked
        // waiters, bits of another vCPU) only costs the loop below.
        let mut state = match self.state.compare_exchange(
            LOCKED | me(),
            0,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                cs::blocking_exit();
                return;
            }
            Err(now) => now,
        };
        debug_assert!(
            state & LOCKED != 0,
            "ecs_locks::RawMutex: unlock of a mutex that is not locked"
        );
        loop {
            if state & PARKED != 0 {
                self.unlock_fair_slow();
                break;
            }
            match self
                .state
                .compare_exchange_weak(state, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(x) => state = x,
            }
        }
        cs::blocking_exit();
    }

    #[inline]
    unsafe fn bump(&self, _guard: &mut GuardMarker) {
        if self.state.load(Ordering::Relaxed) & PARKED != 0 {
            self.bump_slow();
        }
    }
}

// SAFETY: a timed acquisition either returns a guard for a real acquisition or `None` after
// the deadline without holding the lock.
#[cfg(feature = "std")]
unsafe impl lock_api::RawMutexTimed for RawMutex {
    type Duration = core::time::Duration;
    type Instant = std::time::Instant;

    #[inline]
    fn try_lock_for(&self, timeout: Self::Duration) -> Option<GuardMarker> {
        self.try_lock_until_inner(park::to_deadline(timeout))
    }

    #[inline]
    fn try_lock_until(&self, timeout: Self::Instant) -> Option<GuardMarker> {
        self.try_lock_until_inner(Some(timeout))
    }
}

#[cfg(feature = "std")]
impl RawMutex {
    #[inline]
    fn try_lock_until_inner(&self, deadline: Option<park::Instant>) -> Option<GuardMarker> {
        if self
            .state
            .compare_exchange_weak(0, LOCKED | me(), Ordering::Acquire, Ordering::Relaxed)
            .is_err()
            && !self.lock_slow(deadline)
        {
            return None;
        }
        self.acquired();
        Some(GuardMarker::new())
    }

    /// Whether `PARKED` is set (tests of the raw word).
    #[cfg(test)]
    fn parked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & PARKED != 0
    }
}

/// A cheap id of the calling thread for debug checks: non-zero when known, 0 when there is no
/// notion of thread (no_std without `guest`). Natively the address of a thread-local byte (as
/// parking_lot's `RawThreadId`); in a guest the vCPU id + 1 (one thread per vCPU).
#[cfg(debug_assertions)]
#[inline]
pub(crate) fn debug_thread_id() -> usize {
    #[cfg(feature = "std")]
    {
        #[cfg(not(loom))]
        crate::sync::thread_local!(static KEY: u8 = const { 0 });
        #[cfg(loom)]
        crate::sync::thread_local!(static KEY: u8 = 0);
        KEY.try_with(|k| core::ptr::from_ref(k).addr()).unwrap_or(0)
    }
    #[cfg(all(not(feature = "std"), ecs_guest))]
    {
        cs::vcpu_id() as usize + 1
    }
    #[cfg(all(not(feature = "std"), not(ecs_guest)))]
    {
        0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use lock_api::{RawMutex as _, RawMutexFair as _, RawMutexTimed as _};
    use std::time::Duration;

    #[test]
    fn word_bits() {
        let m = RawMutex::new();
        assert_eq!(m.holder(), None);
        let g = m.lock();
        assert!(m.is_locked());
        assert_eq!(m.holder(), Some(0), "natively the holder is vCPU 0");
        assert!(m.try_lock().is_none());
        // SAFETY: we hold it.
        unsafe { m.unlock(g) };
        assert!(!m.is_locked());
        assert_eq!(m.state.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn size_is_one_word_in_release() {
        let expect = if cfg!(debug_assertions) { 16 } else { 4 };
        assert_eq!(core::mem::size_of::<RawMutex>(), expect);
    }

    #[test]
    fn fair_unlock_and_bump_without_waiters() {
        let m = RawMutex::new();
        let mut g = m.lock();
        // SAFETY: we hold it.
        unsafe { m.bump(&mut g) };
        assert!(m.is_locked());
        // SAFETY: we hold it.
        unsafe { m.unlock_fair(g) };
        assert_eq!(m.state.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn timed_lock_times_out_and_parked_bit_clears() {
        let m = std::sync::Arc::new(RawMutex::new());
        let g = m.lock();
        let m2 = m.clone();
        std::thread::spawn(move || assert!(m2.try_lock_for(Duration::from_millis(20)).is_none()))
            .join()
            .unwrap();
        assert!(!m.parked(), "the last timed-out waiter clears PARKED");
        // SAFETY: we hold it.
        unsafe { m.unlock(g) };
        let g = m.try_lock_for(Duration::from_millis(1)).expect("free lock");
        // SAFETY: we hold it.
        unsafe { m.unlock(g) };
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "tried to lock it again")]
    fn debug_catches_self_deadlock() {
        let m = RawMutex::new();
        let _g = m.lock();
        let _g2 = m.lock();
    }

    #[test]
    fn timed_lock_by_holder_times_out_instead_of_panicking() {
        let m = RawMutex::new();
        let g = m.lock();
        assert!(m.try_lock_for(Duration::from_millis(1)).is_none());
        // SAFETY: we hold it.
        unsafe { m.unlock(g) };
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "unlock of a mutex that is not locked")]
    fn debug_catches_unlock_of_unlocked() {
        let m = RawMutex::new();
        // SAFETY: deliberately violated; debug builds catch it before any harm.
        unsafe { m.unlock(GuardMarker::new()) };
    }
}
