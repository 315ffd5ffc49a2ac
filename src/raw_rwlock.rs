//! `RawRwLock`: the blocking reader-writer lock behind [`RwLock`](crate::RwLock), with
//! upgradable reads, downgrades, timed and fair variants.
//!
//! # Algorithm
//!
//! parking_lot 0.13's non-recursive `RawRwLock` (`src/raw_rwlock.rs`, after Boost's
//! `upgrade_mutex`), with its recursive mode (`RawRwLock<true>`, [`RawRwLockRecursive`]). Two wait queues:
//! the primary one at the lock's address for every new waiter, and a secondary one at
//! address + 1 for the one writer that already owns `WRITER_BIT` and waits for the remaining
//! readers to leave. A writer takes `WRITER_BIT` first, which stops new readers and
//! upgraders, then waits for the reader count to drain: the lock is **writer-preferring**
//! (a pending writer blocks new readers, so readers cannot starve writers). Releasing
//! `WRITER_BIT`/`UPGRADABLE_BIT` with parked threads wakes, in queue order, every parked reader
//! plus at most one writer or upgrader (the scan stops at a writer), so queued readers are not
//! starved either. Unfair by default (a running thread may barge ahead of woken ones); the
//! `*_fair` unlocks hand the lock, still held, to the woken threads.
//!
//! What eCS adds: every holder (reader, upgradable reader, writer) is inside a blocking
//! section (`cs::blocking_enter` after acquiring, `cs::blocking_exit` after releasing); a
//! writer records its vCPU (guest builds only, in a separate word: the state word's upper bits
//! count readers; written just *before* the acquiring CAS, see `holder_hint` for what the hint
//! can still get wrong) so that a waiter stops spinning when that vCPU is preempted
//! ([`AdaptiveSpin`]: a directed yield to it, then park). Readers are many and unnamed, so a
//! waiter behind readers spins up to the cap and then parks.
//!
//! # The state word (`AtomicUsize`)
//!
//! | bits | name | meaning |
//! |------|------|---------|
//! | 0 | `PARKED_BIT` | at least one thread is parked in the primary queue |
//! | 1 | `WRITER_PARKED_BIT` | the writer holding `WRITER_BIT` is parked in the secondary queue, waiting for readers |
//! | 2 | `UPGRADABLE_BIT` | an upgradable reader holds the lock (counted in the readers too) |
//! | 3 | `WRITER_BIT` | readers = 0: a writer holds the lock; readers > 0: a writer waits for them to leave |
//! | 4.. | readers | number of readers (`ONE_READER` = 1 << 4), upgradable reader included |
//!
//! # Misuse
//!
//! Unlocking a mode that is not held through the raw API is undefined behaviour the types
//! cannot prevent; debug builds catch an underflow of the reader count and an exclusive
//! unlock without `WRITER_BIT`. Recursive read locking of the default mode can deadlock when a
//! writer is queued between the two reads (as with parking_lot's `RwLock`); the recursive mode
//! lets a reader in whenever other readers hold the lock.

use crate::GuardMarker;
use crate::adaptive_spin::AdaptiveSpin;
use crate::cs;
use crate::park::{
    self, FilterOp, ParkResult, ParkToken, TOKEN_HANDOFF, TOKEN_NORMAL, UnparkResult, UnparkToken,
};
use crate::sync::{AtomicUsize, Ordering};
use core::cell::Cell;
use lock_api::{RawRwLock as _, RawRwLockUpgrade as _};

/// There is at least one thread in the main queue.
const PARKED_BIT: usize = 0b0001;
/// There is a parked thread holding WRITER_BIT. WRITER_BIT must be set.
const WRITER_PARKED_BIT: usize = 0b0010;
/// A reader is holding an upgradable lock. The reader count must be non-zero and WRITER_BIT
/// must not be set.
const UPGRADABLE_BIT: usize = 0b0100;
/// Readers = 0: a writer holds the lock. Otherwise: a writer waits for the readers to leave.
const WRITER_BIT: usize = 0b1000;
/// Mask of bits used to count readers.
const READERS_MASK: usize = !0b1111;
/// Base unit for counting readers.
const ONE_READER: usize = 0b10000;

/// Park token: what a queued thread wants.
const TOKEN_SHARED: ParkToken = ParkToken(ONE_READER);
const TOKEN_EXCLUSIVE: ParkToken = ParkToken(WRITER_BIT);
const TOKEN_UPGRADABLE: ParkToken = ParkToken(ONE_READER | UPGRADABLE_BIT);

/// Raw blocking reader-writer lock: writer-preferring, adaptive, with upgradable reads,
/// downgrades, fair unlocks and (with `std`) timeouts. See the module docs for the algorithm.
///
/// Same contract and fairness as parking_lot 0.13's non-recursive `RawRwLock`; it differs in
/// the spin decision (hint-driven in a VM), the blocking-section hints, a writer-vCPU word in
/// guest builds, and the parking backend without `std` (the crate's portable wait queue,
/// `park/queue.rs`).
///
/// ```
/// use ecs_locks::RawRwLock;
/// use lock_api::RawRwLock as _;
///
/// let raw = RawRwLock::new();
/// let r1 = raw.lock_shared();
/// let r2 = raw.lock_shared();
/// assert!(raw.try_lock_exclusive().is_none());
/// // SAFETY: both are states of shared acquisitions above.
/// unsafe {
///     raw.unlock_shared(r1);
///     raw.unlock_shared(r2);
/// }
/// assert!(!raw.is_locked());
/// ```
///
/// `RawRwLock<true>` is [`RawRwLockRecursive`]: readers may join while other readers hold the
/// lock even if a writer waits, so a thread can take the read lock again without deadlock, at
/// the cost of letting readers starve writers (parking_lot 0.13's `RawRwLock<true>`).
pub struct RawRwLock<const RECURSIVE: bool = false> {
    state: AtomicUsize,
    /// vCPU of the last writer (guest builds): a hint for waiters' spin decision.
    #[cfg(ecs_guest)]
    writer_vcpu: crate::sync::AtomicU32,
}

impl RawRwLock {
    crate::sync::loom_const_fn! {
        /// An unlocked lock.
        pub fn new() -> Self {
            Self::new_inner()
        }
    }
}

/// The raw lock of [`RecursiveRwLock`](crate::RecursiveRwLock): [`RawRwLock`] in its recursive
/// mode (readers are not blocked by a waiting writer while other readers hold the lock).
///
/// ```
/// use ecs_locks::RawRwLockRecursive;
/// use lock_api::RawRwLock as _;
///
/// let raw = RawRwLockRecursive::new_recursive();
/// let r1 = raw.lock_shared();
/// let r2 = raw.lock_shared(); // never blocks while r1 is held
/// // SAFETY: both are states of shared acquisitions above.
/// unsafe {
///     raw.unlock_shared(r2);
///     raw.unlock_shared(r1);
/// }
/// ```
pub type RawRwLockRecursive = RawRwLock<true>;

impl RawRwLock<true> {
    crate::sync::loom_const_fn! {
        /// An unlocked recursive lock ([`RawRwLockRecursive`]; named apart from
        /// [`RawRwLock::new`] so that `RawRwLock::new()` needs no type annotation).
        pub fn new_recursive() -> Self {
            Self::new_inner()
        }
    }
}

impl<const RECURSIVE: bool> RawRwLock<RECURSIVE> {
    crate::sync::loom_const_fn! {
        /// An unlocked lock of either mode.
        fn new_inner() -> Self {
            Self {
                state: AtomicUsize::new(0),
                #[cfg(ecs_guest)]
                writer_vcpu: crate::sync::AtomicU32::new(0),
            }
        }
    }

    /// Records the calling vCPU as the writer (guest builds; nothing natively). Called *before*
    /// the atomic operation that gives this thread `WRITER_BIT` (with the lock seen free, or
    /// while holding `UPGRADABLE_BIT`, which keeps other writers out), never after: a vCPU
    /// preempted right after its acquiring CAS is then already named, so its waiters park.
    #[inline(always)]
    fn set_writer(&self) {
        #[cfg(ecs_guest)]
        self.writer_vcpu.store(cs::vcpu_id(), Ordering::Relaxed);
    }

    /// The vCPU a waiter waits for, when it is a single writer.
    ///
    /// A hint, not a fact: writers record their vCPU just before their acquiring CAS, so two
    /// writers racing for a free lock may leave the loser's vCPU (a waiter about to park or
    /// spin) named for the winner's hold; a writer handed the lock by a fair unlock is named
    /// only once it runs again (until then the unlocking writer is); and the `Relaxed` store is only guaranteed visible
    /// with the state word on a TSO machine (x86, the guest's target). The cost of a wrong
    /// hint is a spin-versus-park decision, never correctness.
    #[inline(always)]
    fn holder_hint(&self, _state: usize) -> Option<u32> {
        #[cfg(ecs_guest)]
        if _state & WRITER_BIT != 0 && _state & READERS_MASK == 0 {
            return Some(self.writer_vcpu.load(Ordering::Relaxed));
        }
        None
    }

    #[inline(always)]
    fn acquired_exclusive(&self) -> GuardMarker {
        self.deadlock_acquire(true, true);
        cs::blocking_enter();
        GuardMarker::new()
    }

    #[inline(always)]
    fn acquired_shared(&self) -> GuardMarker {
        self.deadlock_acquire(false, true);
        cs::blocking_enter();
        GuardMarker::new()
    }

    #[inline(always)]
    fn acquired_upgradable(&self) -> GuardMarker {
        self.deadlock_acquire(true, true);
        cs::blocking_enter();
        GuardMarker::new()
    }

    /// Deadlock-detector bookkeeping (the `deadlock_detection` feature; nothing otherwise), as
    /// parking_lot 0.13 does it: the *primary* resource (the lock's address) is the writer /
    /// upgradable stage, the *secondary* one (address + 1) the reader stage. Writers and
    /// upgradable readers hold both, readers the secondary one.
    #[inline(always)]
    fn deadlock_acquire(&self, primary: bool, secondary: bool) {
        self.deadlock_record(true, primary, secondary);
    }

    /// Releases what [`Self::deadlock_acquire`] recorded.
    #[inline(always)]
    fn deadlock_release(&self, primary: bool, secondary: bool) {
        self.deadlock_record(false, primary, secondary);
    }

    /// Records (`acquire`) or releases the stages named with the deadlock detector.
    #[inline(always)]
    fn deadlock_record(&self, acquire: bool, primary: bool, secondary: bool) {
        let key = crate::deadlock::key(self);
        let record = |k| {
            // SAFETY: the detector's calls must not run inside a parking callback; the lock
            // methods that call `deadlock_acquire`/`deadlock_release` never run inside one.
            unsafe {
                if acquire {
                    crate::deadlock::acquire_resource(k);
                } else {
                    crate::deadlock::release_resource(k);
                }
            }
        };
        if primary {
            record(key);
        }
        if secondary {
            record(key + 1);
        }
    }

    /// The uncontended exclusive acquisition: one CAS from 0 (`weak` or strong). Guest builds
    /// first check that the lock looks free, so a writer arriving at a held lock does not
    /// overwrite the holder's vCPU, then record the writer (see [`Self::set_writer`]).
    #[inline(always)]
    fn try_lock_exclusive_fast(&self, weak: bool) -> bool {
        #[cfg(ecs_guest)]
        {
            if self.state.load(Ordering::Relaxed) != 0 {
                return false;
            }
            self.set_writer();
        }
        if weak {
            self.state
                .compare_exchange_weak(0, WRITER_BIT, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        } else {
            self.state
                .compare_exchange(0, WRITER_BIT, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }
    }

    #[inline(always)]
    fn try_lock_shared_fast(&self) -> bool {
        let state = self.state.load(Ordering::Relaxed);
        // A pending or active writer blocks new readers (writer preference); recursive locks
        // let readers join while other readers still hold the lock.
        if state & WRITER_BIT != 0 && (!RECURSIVE || state & READERS_MASK == 0) {
            return false;
        }
        let Some(new_state) = state.checked_add(ONE_READER) else {
            return false;
        };
        self.state
            .compare_exchange_weak(state, new_state, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[cold]
    fn try_lock_shared_slow(&self) -> bool {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |state| {
                if state & WRITER_BIT != 0 && (!RECURSIVE || state & READERS_MASK == 0) {
                    None
                } else {
                    Some(
                        state
                            .checked_add(ONE_READER)
                            .expect("RwLock reader count overflow"),
                    )
                }
            })
            .is_ok()
    }

    #[inline(always)]
    fn try_lock_upgradable_fast(&self) -> bool {
        let state = self.state.load(Ordering::Relaxed);
        if state & (WRITER_BIT | UPGRADABLE_BIT) != 0 {
            return false;
        }
        let Some(new_state) = state.checked_add(ONE_READER | UPGRADABLE_BIT) else {
            return false;
        };
        self.state
            .compare_exchange_weak(state, new_state, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[cold]
    fn try_lock_upgradable_slow(&self) -> bool {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |state| {
                if state & (WRITER_BIT | UPGRADABLE_BIT) != 0 {
                    None
                } else {
                    Some(
                        state
                            .checked_add(ONE_READER | UPGRADABLE_BIT)
                            .expect("RwLock reader count overflow"),
                    )
                }
            })
            .is_ok()
    }

    /// Contended exclusive acquisition; `false` only on timeout.
    #[cold]
    fn lock_exclusive_slow(&self, timeout: Option<park::Instant>) -> bool {
        let try_lock = |state: &mut usize| {
            loop {
                if *state & (WRITER_BIT | UPGRADABLE_BIT) != 0 {
                    return false;
                }
                // Grab WRITER_BIT if it isn't set, even if there are parked threads.
                self.set_writer();
                match self.state.compare_exchange_weak(
                    *state,
                    *state | WRITER_BIT,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    Err(x) => *state = x,
                }
            }
        };
        // Step 1: own WRITER_BIT.
        if !self.lock_common(timeout, TOKEN_EXCLUSIVE, try_lock, |state| {
            state & (WRITER_BIT | UPGRADABLE_BIT) != 0
        }) {
            return false;
        }
        // A fair unlock may have handed WRITER_BIT to this thread without `try_lock` running
        // (the hint then named the unlocking writer until here); record this writer.
        self.set_writer();
        // Step 2: wait for the remaining readers to leave.
        self.wait_for_readers(timeout, 0)
    }

    #[cold]
    fn unlock_exclusive_or_upgradable_slow(&self) {
        let callback = |_, result: UnparkResult| {
            if !result.have_more_threads {
                self.state.fetch_and(!PARKED_BIT, Ordering::Relaxed);
            }
            TOKEN_NORMAL
        };
        // SAFETY: the callback only touches the state word.
        unsafe { self.wake_parked_threads(0, callback) };
    }

    #[cold]
    fn unlock_exclusive_fair_slow(&self) {
        let callback = |mut new_state, result: UnparkResult| {
            if result.unparked_threads != 0 {
                // Keep the lock held and hand it to the woken threads.
                if result.have_more_threads {
                    new_state |= PARKED_BIT;
                }
                self.state.store(new_state, Ordering::Release);
                TOKEN_HANDOFF
            } else {
                if result.have_more_threads {
                    self.state.store(PARKED_BIT, Ordering::Release);
                } else {
                    self.state.store(0, Ordering::Release);
                }
                TOKEN_NORMAL
            }
        };
        // SAFETY: the callback only touches the state word.
        unsafe { self.wake_parked_threads(0, callback) };
    }

    /// Contended shared acquisition; `false` only on timeout.
    #[cold]
    fn lock_shared_slow(&self, timeout: Option<park::Instant>) -> bool {
        let try_lock = |state: &mut usize| {
            let mut backoff = crate::backoff::Backoff::new();
            loop {
                if *state & WRITER_BIT != 0 && (!RECURSIVE || *state & READERS_MASK == 0) {
                    return false;
                }
                if self
                    .state
                    .compare_exchange_weak(
                        *state,
                        state
                            .checked_add(ONE_READER)
                            .expect("RwLock reader count overflow"),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return true;
                }
                // Contention on the reader count: leave other readers room.
                backoff.spin();
                *state = self.state.load(Ordering::Relaxed);
            }
        };
        self.lock_common(timeout, TOKEN_SHARED, try_lock, |state| {
            state & WRITER_BIT != 0 && (!RECURSIVE || state & READERS_MASK == 0)
        })
    }

    #[cold]
    fn unlock_shared_slow(&self) {
        // WRITER_PARKED_BIT is set and the reader count is zero: wake the pending writer on
        // the secondary key.
        let addr = core::ptr::from_ref(self).addr() + 1;
        let callback = |_result: UnparkResult| {
            // Only one writer can be parked there.
            self.state.fetch_and(!WRITER_PARKED_BIT, Ordering::Relaxed);
            TOKEN_NORMAL
        };
        // SAFETY: address + 1 of this lock is only used by this lock's pending writer; the
        // callback only touches the state word.
        unsafe {
            park::unpark_one(addr, callback);
        }
    }

    /// Contended upgradable acquisition; `false` only on timeout.
    #[cold]
    fn lock_upgradable_slow(&self, timeout: Option<park::Instant>) -> bool {
        let try_lock = |state: &mut usize| {
            let mut backoff = crate::backoff::Backoff::new();
            loop {
                if *state & (WRITER_BIT | UPGRADABLE_BIT) != 0 {
                    return false;
                }
                if self
                    .state
                    .compare_exchange_weak(
                        *state,
                        state
                            .checked_add(ONE_READER | UPGRADABLE_BIT)
                            .expect("RwLock reader count overflow"),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return true;
                }
                backoff.spin();
                *state = self.state.load(Ordering::Relaxed);
            }
        };
        self.lock_common(timeout, TOKEN_UPGRADABLE, try_lock, |state| {
            state & (WRITER_BIT | UPGRADABLE_BIT) != 0
        })
    }

    #[cold]
    fn unlock_upgradable_fair_slow(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        while state & PARKED_BIT == 0 {
            match self.state.compare_exchange_weak(
                state,
                state - (ONE_READER | UPGRADABLE_BIT),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(x) => state = x,
            }
        }
        let callback = |new_state, result: UnparkResult| {
            let mut state = self.state.load(Ordering::Relaxed);
            // Hand off unless the reader count would overflow (no panics in callbacks).
            while let Some(mut new_state) =
                (state - (ONE_READER | UPGRADABLE_BIT)).checked_add(new_state)
            {
                if result.have_more_threads {
                    new_state |= PARKED_BIT;
                } else {
                    new_state &= !PARKED_BIT;
                }
                match self.state.compare_exchange_weak(
                    state,
                    new_state,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return TOKEN_HANDOFF,
                    Err(x) => state = x,
                }
            }
            loop {
                let mut new_state = state - (ONE_READER | UPGRADABLE_BIT);
                if result.have_more_threads {
                    new_state |= PARKED_BIT;
                } else {
                    new_state &= !PARKED_BIT;
                }
                match self.state.compare_exchange_weak(
                    state,
                    new_state,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return TOKEN_NORMAL,
                    Err(x) => state = x,
                }
            }
        };
        // SAFETY: the callback only touches the state word.
        unsafe { self.wake_parked_threads(0, callback) };
    }

    #[cold]
    fn downgrade_slow(&self, new_state: usize) {
        let callback = |_, result: UnparkResult| {
            if !result.have_more_threads {
                self.state.fetch_and(!PARKED_BIT, Ordering::Relaxed);
            }
            TOKEN_NORMAL
        };
        // SAFETY: the callback only touches the state word.
        unsafe { self.wake_parked_threads(new_state, callback) };
    }

    /// Wakes parked threads after `WRITER_BIT` or `UPGRADABLE_BIT` was released: every reader
    /// and at most one writer/upgrader, in queue order, stopping at a writer.
    ///
    /// # Safety
    /// `callback` must not unwind or call into the parking lot.
    #[inline]
    unsafe fn wake_parked_threads(
        &self,
        new_state: usize,
        callback: impl FnOnce(usize, UnparkResult) -> UnparkToken,
    ) {
        let new_state = Cell::new(new_state);
        let addr = core::ptr::from_ref(self).addr();
        let filter = |ParkToken(token)| {
            let s = new_state.get();
            // Normal locks stop after selecting a writer; recursive ones keep scanning for the
            // readers forward progress may need (parking_lot 0.13).
            if !RECURSIVE && s & WRITER_BIT != 0 {
                return FilterOp::Stop;
            }
            if token & (UPGRADABLE_BIT | WRITER_BIT) != 0 && s & (UPGRADABLE_BIT | WRITER_BIT) != 0
            {
                // Already waking a writer or upgrader: skip writers and upgraders.
                FilterOp::Skip
            } else {
                new_state.set(s + token);
                FilterOp::Unpark
            }
        };
        let callback = |result| callback(new_state.get(), result);
        // SAFETY: our own address; `filter` only reads tokens and a Cell; `callback`'s
        // requirements are the caller's.
        unsafe {
            park::unpark_filter(addr, filter, callback);
        }
    }

    /// With `WRITER_BIT` owned, waits for the readers to leave. On timeout restores
    /// `prev_value` (0 for a fresh writer, the upgradable reader for an upgrade), wakes whoever
    /// waited on `WRITER_BIT`, and returns `false`.
    #[inline]
    fn wait_for_readers(&self, timeout: Option<park::Instant>, prev_value: usize) -> bool {
        let mut spin = AdaptiveSpin::new();
        let mut state = self.state.load(Ordering::Acquire);
        while state & READERS_MASK != 0 {
            if spin.spin(None) {
                state = self.state.load(Ordering::Acquire);
                continue;
            }
            if state & WRITER_PARKED_BIT == 0
                && let Err(x) = self.state.compare_exchange_weak(
                    state,
                    state | WRITER_PARKED_BIT,
                    Ordering::Acquire,
                    Ordering::Acquire,
                )
            {
                state = x;
                continue;
            }
            let addr = core::ptr::from_ref(self).addr() + 1;
            let validate = || {
                let state = self.state.load(Ordering::Relaxed);
                state & READERS_MASK != 0 && state & WRITER_PARKED_BIT != 0
            };
            let timed_out = |_, was_last_thread: bool| {
                // Only this thread parks on the secondary key.
                debug_assert!(was_last_thread);
                self.state.fetch_and(!WRITER_PARKED_BIT, Ordering::Relaxed);
            };
            // SAFETY: address + 1 belongs to this lock; `validate`/`timed_out` only touch the
            // state word; `before_sleep` does nothing.
            let park_result =
                unsafe { park::park(addr, validate, || {}, timed_out, TOKEN_EXCLUSIVE, timeout) };
            match park_result {
                ParkResult::Unparked(_) | ParkResult::Invalid => {
                    state = self.state.load(Ordering::Acquire);
                    continue;
                }
                ParkResult::TimedOut => {
                    let state = self
                        .state
                        .fetch_add(prev_value.wrapping_sub(WRITER_BIT), Ordering::Relaxed);
                    if state & PARKED_BIT != 0 {
                        let callback = |_, result: UnparkResult| {
                            if !result.have_more_threads {
                                self.state.fetch_and(!PARKED_BIT, Ordering::Relaxed);
                            }
                            TOKEN_NORMAL
                        };
                        // SAFETY: the callback only touches the state word.
                        unsafe { self.wake_parked_threads(prev_value, callback) };
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Common slow path: try, spin while worthwhile, park on the primary key, retry.
    #[inline]
    fn lock_common(
        &self,
        timeout: Option<park::Instant>,
        token: ParkToken,
        mut try_lock: impl FnMut(&mut usize) -> bool,
        should_park: impl Fn(usize) -> bool,
    ) -> bool {
        let mut spin = AdaptiveSpin::new();
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if try_lock(&mut state) {
                return true;
            }
            if state & (PARKED_BIT | WRITER_PARKED_BIT) == 0 && spin.spin(self.holder_hint(state)) {
                state = self.state.load(Ordering::Relaxed);
                continue;
            }
            if state & PARKED_BIT == 0
                && let Err(x) = self.state.compare_exchange_weak(
                    state,
                    state | PARKED_BIT,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
            {
                state = x;
                continue;
            }
            let addr = core::ptr::from_ref(self).addr();
            let validate = || {
                let state = self.state.load(Ordering::Relaxed);
                state & PARKED_BIT != 0 && should_park(state)
            };
            let timed_out = |_, was_last_thread| {
                if was_last_thread {
                    self.state.fetch_and(!PARKED_BIT, Ordering::Relaxed);
                }
            };
            // SAFETY: our own address; `validate`/`timed_out` only touch the state word;
            // `before_sleep` does nothing.
            let park_result =
                unsafe { park::park(addr, validate, || {}, timed_out, token, timeout) };
            match park_result {
                ParkResult::Unparked(TOKEN_HANDOFF) => return true,
                ParkResult::Unparked(_) | ParkResult::Invalid => {}
                ParkResult::TimedOut => return false,
            }
            spin.reset();
            state = self.state.load(Ordering::Relaxed);
        }
    }
}

impl<const RECURSIVE: bool> Default for RawRwLock<RECURSIVE> {
    fn default() -> Self {
        Self::new_inner()
    }
}

impl<const RECURSIVE: bool> core::fmt::Debug for RawRwLock<RECURSIVE> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.state.load(Ordering::Relaxed);
        f.debug_struct(if RECURSIVE {
            "RawRwLockRecursive"
        } else {
            "RawRwLock"
        })
        .field("readers", &((s & READERS_MASK) / ONE_READER))
        .field("writer", &(s & WRITER_BIT != 0))
        .field("upgradable", &(s & UPGRADABLE_BIT != 0))
        .finish()
    }
}

// SAFETY: a writer owns WRITER_BIT with a zero reader count, readers hold a count without
// WRITER_BIT held by an active writer, both taken with Acquire and released with Release
// (parking_lot's proven protocol); guards are stateless `GuardMarker`.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLock for RawRwLock<RECURSIVE> {
    // `loom_init!` names `Self::new()`, which exists per mode; both modes share `new_inner`.
    #[cfg(not(loom))]
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self::new_inner();
    #[cfg(loom)]
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = panic!("loom atomics are not const: build raw locks with `new()`");

    type SharedGuard = GuardMarker;
    type ExclusiveGuard = GuardMarker;

    #[inline]
    fn lock_exclusive(&self) -> GuardMarker {
        if !self.try_lock_exclusive_fast(true) {
            let locked = self.lock_exclusive_slow(None);
            debug_assert!(locked);
        }
        self.acquired_exclusive()
    }

    #[inline]
    fn try_lock_exclusive(&self) -> Option<GuardMarker> {
        self.try_lock_exclusive_fast(false)
            .then(|| self.acquired_exclusive())
    }

    #[inline]
    unsafe fn unlock_exclusive(&self, _guard: GuardMarker) {
        self.deadlock_release(true, true);
        let state = self.state.fetch_sub(WRITER_BIT, Ordering::Release);
        debug_assert!(
            state & WRITER_BIT != 0 && state & READERS_MASK == 0,
            "ecs_locks::RawRwLock: exclusive unlock without holding the write lock"
        );
        cs::blocking_exit();
        if state & PARKED_BIT != 0 {
            self.unlock_exclusive_or_upgradable_slow();
        }
    }

    #[inline]
    fn lock_shared(&self) -> GuardMarker {
        if !self.try_lock_shared_fast() {
            let locked = self.lock_shared_slow(None);
            debug_assert!(locked);
        }
        self.acquired_shared()
    }

    #[inline]
    fn try_lock_shared(&self) -> Option<GuardMarker> {
        if self.try_lock_shared_fast() || self.try_lock_shared_slow() {
            Some(self.acquired_shared())
        } else {
            None
        }
    }

    #[inline]
    unsafe fn unlock_shared(&self, _guard: GuardMarker) {
        self.deadlock_release(false, true);
        let state = self.state.fetch_sub(ONE_READER, Ordering::Release);
        debug_assert!(
            state & READERS_MASK != 0,
            "ecs_locks::RawRwLock: shared unlock without any reader"
        );
        cs::blocking_exit();
        if state & (READERS_MASK | WRITER_PARKED_BIT) == (ONE_READER | WRITER_PARKED_BIT) {
            self.unlock_shared_slow();
        }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & (WRITER_BIT | READERS_MASK) != 0
    }

    #[inline]
    fn is_locked_exclusive(&self) -> bool {
        self.state.load(Ordering::Relaxed) & (WRITER_BIT | READERS_MASK) == WRITER_BIT
    }
}

// SAFETY: fair unlocks release (or hand over, still held) exactly the caller's acquisition;
// bumps re-acquire the same mode, aborting if that could unwind.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockFair for RawRwLock<RECURSIVE> {
    #[inline]
    unsafe fn unlock_shared_fair(&self, guard: GuardMarker) {
        // Shared unlocking is always fair in this implementation.
        // SAFETY: the caller holds a shared lock.
        unsafe { self.unlock_shared(guard) };
    }

    #[inline]
    unsafe fn unlock_exclusive_fair(&self, _guard: GuardMarker) {
        self.deadlock_release(true, true);
        if self
            .state
            .compare_exchange(WRITER_BIT, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_exclusive_fair_slow();
        }
        cs::blocking_exit();
    }

    #[inline]
    unsafe fn bump_shared(&self, guard: &mut GuardMarker) {
        let state = self.state.load(Ordering::Relaxed);
        // A recursive reader bumps only as the last reader (others may not leave).
        if state & WRITER_BIT != 0 && (!RECURSIVE || state & READERS_MASK == ONE_READER) {
            // SAFETY: the caller holds a shared lock, released here and re-taken.
            unsafe { self.unlock_shared(GuardMarker::new()) };
            *guard = crate::sync::abort_on_panic(|| self.lock_shared());
        }
    }

    #[inline]
    unsafe fn bump_exclusive(&self, guard: &mut GuardMarker) {
        if self.state.load(Ordering::Relaxed) & PARKED_BIT != 0 {
            self.deadlock_release(true, true);
            self.unlock_exclusive_fair_slow();
            cs::blocking_exit();
            *guard = crate::sync::abort_on_panic(|| self.lock_exclusive());
        }
    }
}

// SAFETY: a writer atomically becomes a reader (WRITER_BIT -> one reader), waking readers.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockDowngrade for RawRwLock<RECURSIVE> {
    #[inline]
    unsafe fn downgrade(&self, guard: GuardMarker) -> GuardMarker {
        self.deadlock_release(true, false);
        let state = self
            .state
            .fetch_add(ONE_READER - WRITER_BIT, Ordering::Release);
        if state & PARKED_BIT != 0 {
            self.downgrade_slow(ONE_READER);
        }
        guard
    }
}

// SAFETY: timed acquisitions either acquire or return `None` after the deadline holding
// nothing (a writer that timed out waiting for readers gives WRITER_BIT back).
#[cfg(feature = "std")]
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockTimed for RawRwLock<RECURSIVE> {
    type Duration = core::time::Duration;
    type Instant = std::time::Instant;

    #[inline]
    fn try_lock_shared_for(&self, timeout: Self::Duration) -> Option<GuardMarker> {
        (self.try_lock_shared_fast() || self.lock_shared_slow(park::to_deadline(timeout)))
            .then(|| self.acquired_shared())
    }

    #[inline]
    fn try_lock_shared_until(&self, timeout: Self::Instant) -> Option<GuardMarker> {
        (self.try_lock_shared_fast() || self.lock_shared_slow(Some(timeout)))
            .then(|| self.acquired_shared())
    }

    #[inline]
    fn try_lock_exclusive_for(&self, timeout: Self::Duration) -> Option<GuardMarker> {
        self.try_lock_exclusive_until_inner(park::to_deadline(timeout))
    }

    #[inline]
    fn try_lock_exclusive_until(&self, timeout: Self::Instant) -> Option<GuardMarker> {
        self.try_lock_exclusive_until_inner(Some(timeout))
    }
}

#[cfg(feature = "std")]
impl<const RECURSIVE: bool> RawRwLock<RECURSIVE> {
    #[inline]
    fn try_lock_exclusive_until_inner(
        &self,
        deadline: Option<park::Instant>,
    ) -> Option<GuardMarker> {
        (self.try_lock_exclusive_fast(true) || self.lock_exclusive_slow(deadline))
            .then(|| self.acquired_exclusive())
    }

    #[inline]
    fn try_upgrade_until_inner(
        &self,
        guard: GuardMarker,
        deadline: Option<park::Instant>,
    ) -> Result<GuardMarker, GuardMarker> {
        self.deadlock_release(false, true);
        self.set_writer();
        let state = self.state.fetch_sub(
            (ONE_READER | UPGRADABLE_BIT) - WRITER_BIT,
            Ordering::Acquire,
        );
        let upgraded = state & READERS_MASK == ONE_READER
            || self.wait_for_readers(deadline, ONE_READER | UPGRADABLE_BIT);
        // Upgraded or still upgradable: both stages are ours again.
        self.deadlock_acquire(false, true);
        if upgraded { Ok(guard) } else { Err(guard) }
    }
}

// SAFETY: at most one upgradable reader (UPGRADABLE_BIT); an upgrade keeps WRITER_BIT out of
// reach of others and waits for the other readers; downgrades only release rights.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockUpgrade for RawRwLock<RECURSIVE> {
    type UpgradableGuard = GuardMarker;

    #[inline]
    fn lock_upgradable(&self) -> GuardMarker {
        if !self.try_lock_upgradable_fast() {
            let locked = self.lock_upgradable_slow(None);
            debug_assert!(locked);
        }
        self.acquired_upgradable()
    }

    #[inline]
    fn try_lock_upgradable(&self) -> Option<GuardMarker> {
        (self.try_lock_upgradable_fast() || self.try_lock_upgradable_slow())
            .then(|| self.acquired_upgradable())
    }

    #[inline]
    unsafe fn unlock_upgradable(&self, _guard: GuardMarker) {
        self.deadlock_release(true, true);
        let state = self
            .state
            .fetch_sub(ONE_READER | UPGRADABLE_BIT, Ordering::Release);
        debug_assert!(
            state & UPGRADABLE_BIT != 0,
            "ecs_locks::RawRwLock: upgradable unlock without the upgradable lock"
        );
        cs::blocking_exit();
        if state & PARKED_BIT != 0 {
            self.unlock_exclusive_or_upgradable_slow();
        }
    }

    #[inline]
    unsafe fn upgrade(&self, guard: GuardMarker) -> GuardMarker {
        // Stop owning the reader stage while waiting for the other readers (parking_lot).
        self.deadlock_release(false, true);
        self.set_writer();
        let state = self.state.fetch_sub(
            (ONE_READER | UPGRADABLE_BIT) - WRITER_BIT,
            Ordering::Acquire,
        );
        if state & READERS_MASK != ONE_READER {
            let upgraded = self.wait_for_readers(None, ONE_READER | UPGRADABLE_BIT);
            debug_assert!(upgraded);
        }
        self.deadlock_acquire(false, true);
        guard
    }

    #[inline]
    unsafe fn try_upgrade(&self, guard: GuardMarker) -> Result<GuardMarker, GuardMarker> {
        // Harmless if the upgrade fails: UPGRADABLE_BIT keeps every other writer out.
        self.set_writer();
        match self
            .state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |state| {
                (state & READERS_MASK == ONE_READER)
                    .then_some(state - (ONE_READER | UPGRADABLE_BIT) + WRITER_BIT)
            }) {
            Ok(_) => Ok(guard),
            Err(_) => Err(guard),
        }
    }
}

// SAFETY: as for `RawRwLockFair`.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockUpgradeFair for RawRwLock<RECURSIVE> {
    #[inline]
    unsafe fn unlock_upgradable_fair(&self, _guard: GuardMarker) {
        self.deadlock_release(true, true);
        self.unlock_upgradable_fair_slow();
        cs::blocking_exit();
    }

    #[inline]
    unsafe fn bump_upgradable(&self, guard: &mut GuardMarker) {
        if self.state.load(Ordering::Relaxed) & PARKED_BIT != 0 {
            self.deadlock_release(true, true);
            self.unlock_upgradable_fair_slow();
            cs::blocking_exit();
            *guard = crate::sync::abort_on_panic(|| self.lock_upgradable());
        }
    }
}

// SAFETY: downgrades only give up rights and wake those who can now proceed.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockUpgradeDowngrade for RawRwLock<RECURSIVE> {
    #[inline]
    unsafe fn downgrade_upgradable(&self, guard: GuardMarker) -> GuardMarker {
        self.deadlock_release(true, false);
        let state = self.state.fetch_sub(UPGRADABLE_BIT, Ordering::Relaxed);
        if state & PARKED_BIT != 0 {
            self.downgrade_slow(ONE_READER);
        }
        guard
    }

    #[inline]
    unsafe fn downgrade_to_upgradable(&self, guard: GuardMarker) -> GuardMarker {
        let state = self.state.fetch_add(
            (ONE_READER | UPGRADABLE_BIT) - WRITER_BIT,
            Ordering::Release,
        );
        if state & PARKED_BIT != 0 {
            self.downgrade_slow(ONE_READER | UPGRADABLE_BIT);
        }
        guard
    }
}

// SAFETY: as for `RawRwLockTimed`; a timed-out upgrade restores the upgradable read.
#[cfg(feature = "std")]
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockUpgradeTimed for RawRwLock<RECURSIVE> {
    #[inline]
    fn try_lock_upgradable_for(&self, timeout: Self::Duration) -> Option<GuardMarker> {
        (self.try_lock_upgradable_fast() || self.lock_upgradable_slow(park::to_deadline(timeout)))
            .then(|| self.acquired_upgradable())
    }

    #[inline]
    fn try_lock_upgradable_until(&self, timeout: Self::Instant) -> Option<GuardMarker> {
        (self.try_lock_upgradable_fast() || self.lock_upgradable_slow(Some(timeout)))
            .then(|| self.acquired_upgradable())
    }

    #[inline]
    unsafe fn try_upgrade_for(
        &self,
        guard: GuardMarker,
        timeout: Self::Duration,
    ) -> Result<GuardMarker, GuardMarker> {
        self.try_upgrade_until_inner(guard, park::to_deadline(timeout))
    }

    #[inline]
    unsafe fn try_upgrade_until(
        &self,
        guard: GuardMarker,
        timeout: Self::Instant,
    ) -> Result<GuardMarker, GuardMarker> {
        self.try_upgrade_until_inner(guard, Some(timeout))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use lock_api::{RawRwLockDowngrade as _, RawRwLockTimed as _, RawRwLockUpgradeTimed as _};
    use std::time::Duration;

    #[test]
    fn word_transitions() {
        let l = RawRwLock::new();
        let r1 = l.lock_shared();
        let u = l.lock_upgradable();
        assert_eq!(
            l.state.load(Ordering::Relaxed),
            (2 * ONE_READER) | UPGRADABLE_BIT
        );
        assert!(l.try_lock_exclusive().is_none());
        assert!(l.try_lock_upgradable().is_none());
        // SAFETY: we hold r1.
        unsafe { l.unlock_shared(r1) };
        // SAFETY: we hold the upgradable lock and are its only reader.
        let w = unsafe { l.upgrade(u) };
        assert!(l.is_locked_exclusive());
        // SAFETY: we hold the write lock.
        let r = unsafe { l.downgrade(w) };
        assert_eq!(l.state.load(Ordering::Relaxed), ONE_READER);
        // SAFETY: we hold the read lock.
        unsafe { l.unlock_shared(r) };
        assert_eq!(l.state.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn timed_writer_gives_writer_bit_back() {
        let l = std::sync::Arc::new(RawRwLock::new());
        let r = l.lock_shared();
        let l2 = l.clone();
        std::thread::spawn(move || {
            assert!(
                l2.try_lock_exclusive_for(Duration::from_millis(20))
                    .is_none()
            );
        })
        .join()
        .unwrap();
        assert_eq!(l.state.load(Ordering::Relaxed), ONE_READER, "rolled back");
        // A timed-out upgrade restores the upgradable read.
        let u = l.lock_upgradable();
        // SAFETY: we hold the upgradable lock.
        let Err(u) = (unsafe { l.try_upgrade_for(u, Duration::from_millis(10)) }) else {
            panic!("another reader holds the lock: the upgrade must time out");
        };
        assert_eq!(
            l.state.load(Ordering::Relaxed),
            (2 * ONE_READER) | UPGRADABLE_BIT
        );
        // SAFETY: we hold both.
        unsafe {
            l.unlock_upgradable(u);
            l.unlock_shared(r);
        }
        assert_eq!(l.state.load(Ordering::Relaxed), 0);
    }
}
