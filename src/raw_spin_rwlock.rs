//! `RawSpinRwLock`: a writer-preferring spinning reader-writer lock with upgradable reads, in
//! one word that also names the exclusive holder's vCPU.
//!
//! # Algorithm
//!
//! A counter-based reader-writer spinlock (Mellor-Crummey & Scott, "Scalable reader-writer
//! synchronization for shared-memory multiprocessors", PPoPP 1991, section 2, the centralized
//! writer-preference lock), extended with an upgradable-read state as in parking_lot's
//! `RawRwLock`:
//!
//! - **read**: CAS `readers + 1` while no writer holds *or waits*.
//! - **write**: CAS `0 -> WRITER | vcpu` (fast path). A writer that has to wait sets
//!   `WRITER_WAITING`, which stops new readers and upgradable readers, so the readers drain
//!   and the writer gets in (writer preference). Any writer's acquisition clears the bit; the
//!   writers still waiting set it again on their next look.
//! - **upgradable read**: coexists with readers, excludes writers and other upgradable readers
//!   (at most one, so upgrades cannot deadlock each other).
//! - **upgrade**: the upgradable holder sets `WRITER_WAITING` and waits for the readers to
//!   drain, then swaps `UPGRADABLE` for `WRITER` in one CAS.
//! - **downgrade**: writer -> reader or writer -> upgradable, and upgradable -> reader, each one
//!   CAS that never lets a writer in between.
//!
//! Every read, upgradable or write holder is an eCS critical section ([`cs::enter`] on
//! acquiring, [`cs::exit`] on releasing; mode changes keep the section). The exclusive or
//! upgradable holder's vCPU sits in the word, so readers and writers waiting on it pass it to
//! [`Backoff::snooze`] and directed-yield to it when it is preempted. Readers are anonymous:
//! a writer waiting for readers to drain backs off without a target.
//!
//! # Over-commit: a preempted waiting writer
//!
//! Writer preference lets one *waiting* writer stop every new reader. A waiting writer is not
//! inside a critical section, so in an over-committed VM the host preempts it like any vCPU,
//! and then the readers wait for a writer that does not run, with the lock free (the shim
//! measured spin-rw at 77-82 % of the no-over-commit ceiling at 8 and 16 vCPUs on 2, against
//! 99-101 % for `SpinMutex`, docs/BENCHMARKS.md). With live hints the word names the vCPU that
//! set `WRITER_WAITING` (the `WAITER` field), and readers and upgradable readers ignore the bit
//! while the host reports that vCPU preempted; a running waiting writer then claims the bit
//! for itself, and the readers hold back for it again. Only the preference changes: readers
//! still never enter while `WRITER` is set, and a writer still takes the lock only with no
//! readers, so exclusion is what the loom models check. Natively nothing is known to be
//! preempted and the word has no `WAITER` field.
//!
//! # Policy
//!
//! Writer preference: readers can starve under a steady stream of writers. Recursive read
//! locking (a thread taking a second read lock while holding one) can deadlock when a writer
//! starts waiting in between; `try_lock_shared` and `try_lock_upgradable` ignore
//! `WRITER_WAITING` (they never wait, so they cannot starve a writer for long), so a recursive
//! `try_read` succeeds whenever no writer *holds* the lock.
//!
//! # Lock word (`AtomicUsize`)
//!
//! | bits | name | meaning |
//! |---|---|---|
//! | 0 | `WRITER` | held exclusively |
//! | 1 | `UPGRADABLE` | an upgradable reader holds it |
//! | 2 | `WRITER_WAITING` | a writer (or an upgrading reader) waits: new readers hold back |
//! | 3..11 | `VCPU` | vCPU of the `WRITER` or `UPGRADABLE` holder (0 when neither is set: every release clears it with its bit, so a free word is 0 for the writers' fast path) |
//! | 11..19 | `WAITER` | with live hints only: vCPU of the writer that set `WRITER_WAITING` |
//! | 11.. (19.. with live hints) | readers | number of plain read holders (`ONE_READER`) |
//!
//! # Misuse caught in debug builds
//!
//! Releasing a mode that is not held (through the raw API with forged guard state: a read
//! unlock with no readers, a write unlock without `WRITER`, an upgradable unlock, upgrade or
//! downgrade without `UPGRADABLE`) panics with a clear message. Recursive locking is not
//! detected.

use crate::backoff::Backoff;
use crate::cs;
use crate::sync::{AtomicUsize, Ordering};
use lock_api::GuardNoSend;

/// Held exclusively.
const WRITER: usize = 1;
/// An upgradable reader holds the lock.
const UPGRADABLE: usize = 1 << 1;
/// A writer or an upgrading reader waits; new readers and upgradable readers hold back.
const WRITER_WAITING: usize = 1 << 2;
/// Position of the exclusive/upgradable holder's vCPU.
const VCPU_SHIFT: u32 = 3;
/// The vCPU field.
const VCPU_MASK: usize = 0xff << VCPU_SHIFT;
/// Position of the vCPU of the writer that set `WRITER_WAITING` (live hints only).
const WAITER_SHIFT: u32 = 11;
/// The waiting writer's vCPU field: 8 bits with live hints, none natively (nothing there is
/// ever known to be preempted, so the word keeps its reader bits).
const WAITER_MASK: usize = if ecs_sys::LIVE_HINTS {
    0xff << WAITER_SHIFT
} else {
    0
};
/// Position of the reader count.
const READER_SHIFT: u32 = if ecs_sys::LIVE_HINTS { 19 } else { 11 };
/// One plain reader.
const ONE_READER: usize = 1 << READER_SHIFT;
/// Most readers the count can hold.
const MAX_READERS: usize = usize::MAX >> READER_SHIFT;
/// `WRITER_WAITING` and the vCPU that set it: what a mode change must keep or clear together.
const WAITING: usize = WRITER_WAITING | WAITER_MASK;

const _: () = assert!(
    ecs_sys::abi::MAX_VCPUS <= 256,
    "the VCPU and waiter fields have 8 bits"
);

// The layout of whichever build this is, checked at compile time (the unit tests run only the
// native one; the guest build, `cargo build -p hypervisor-shim`, checks the one with `WAITER`):
// the fields are disjoint, readers start right above the last vCPU field, and the reader count
// fills every bit above.
#[allow(clippy::bad_bit_mask, reason = "WAITER_MASK is 0 natively")]
const _: () = {
    let flags = WRITER | UPGRADABLE | WRITER_WAITING;
    assert!(VCPU_MASK & flags == 0 && WAITER_MASK & (flags | VCPU_MASK) == 0);
    let top = if WAITER_MASK != 0 {
        WAITER_MASK
    } else {
        VCPU_MASK
    };
    assert!(
        ONE_READER == (top | (top - 1)) + 1,
        "readers right above the fields"
    );
    assert!(
        MAX_READERS * ONE_READER == !(ONE_READER - 1),
        "the count fills the rest"
    );
    assert!(WAITER_MASK == 0 || WAITER_MASK >> WAITER_SHIFT == 0xff);
};

#[inline(always)]
fn readers(s: usize) -> usize {
    s >> READER_SHIFT
}

/// `s` with `WRITER_WAITING` set by the current vCPU (its vCPU in the waiter field).
#[inline(always)]
fn with_me_waiting(s: usize) -> usize {
    (s & !WAITER_MASK) | WRITER_WAITING | (((cs::vcpu_id() as usize) << WAITER_SHIFT) & WAITER_MASK)
}

/// Whether `s` has `WRITER_WAITING` set by a vCPU the host reports preempted (never natively):
/// then the bit holds nobody back ("Over-commit" in the module docs).
#[inline(always)]
fn waiter_preempted(s: usize) -> bool {
    ecs_sys::LIVE_HINTS
        && s & WRITER_WAITING != 0
        && cs::preempted(((s & WAITER_MASK) >> WAITER_SHIFT) as u32)
}

/// `s`'s vCPU field replaced by the current vCPU.
#[inline(always)]
fn with_my_vcpu(s: usize) -> usize {
    (s & !VCPU_MASK) | (((cs::vcpu_id() as usize) << VCPU_SHIFT) & VCPU_MASK)
}

/// What a waiter in [`RawSpinRwLock::lock_slow`] wants.
#[derive(Clone, Copy)]
enum Want {
    Shared,
    Exclusive,
    Upgradable,
    /// The upgradable holder becoming the writer.
    Upgrade,
}

impl Want {
    /// Whether word `s` lets the waiter take what it wants now.
    #[inline]
    fn allowed(self, s: usize) -> bool {
        match self {
            Want::Shared => s & WRITER == 0 && (s & WRITER_WAITING == 0 || waiter_preempted(s)),
            Want::Exclusive => s & (WRITER | UPGRADABLE) == 0 && readers(s) == 0,
            Want::Upgradable => {
                s & (WRITER | UPGRADABLE) == 0 && (s & WRITER_WAITING == 0 || waiter_preempted(s))
            }
            Want::Upgrade => readers(s) == 0,
        }
    }

    /// The word after taking it from `s` (where [`Want::allowed`]).
    #[inline]
    fn taken(self, s: usize) -> usize {
        match self {
            Want::Shared => {
                assert!(
                    readers(s) < MAX_READERS,
                    "RawSpinRwLock reader count overflow"
                );
                s + ONE_READER
            }
            Want::Exclusive => with_my_vcpu(WRITER),
            Want::Upgradable => with_my_vcpu(s | UPGRADABLE),
            Want::Upgrade => RawSpinRwLock::upgraded(s),
        }
    }

    /// Whether the waiter sets `WRITER_WAITING` while it waits.
    #[inline]
    fn holds_readers_back(self) -> bool {
        matches!(self, Want::Exclusive | Want::Upgrade)
    }

    /// The vCPU the waiter waits for, if one holder is known (an upgrading reader waits for
    /// plain readers, which the word does not name).
    #[inline]
    fn waits_for(self, s: usize) -> Option<u32> {
        match self {
            Want::Upgrade => None,
            _ => holder(s),
        }
    }
}

/// The vCPU of the exclusive or upgradable holder in `s`, if there is one.
#[inline(always)]
fn holder(s: usize) -> Option<u32> {
    (s & (WRITER | UPGRADABLE) != 0).then_some(((s & VCPU_MASK) >> VCPU_SHIFT) as u32)
}

/// A raw writer-preferring reader-writer spinlock with upgradable reads and downgrades, in one
/// word: writer, upgradable and writer-waiting bits, the exclusive/upgradable holder's vCPU, and
/// the reader count. The protocol is documented at the top of `src/raw_spin_rwlock.rs`.
///
/// Use it through [`SpinRwLock`](crate::SpinRwLock). The inherent methods expose the same
/// protocol as the `lock_api` impls, for models and low-level code.
///
/// ```
/// use ecs_locks::RawSpinRwLock;
///
/// let raw = RawSpinRwLock::new();
/// let u = raw.lock_upgradable();
/// let r = raw.lock_shared();
/// assert!(raw.try_lock_exclusive().is_none());
/// // SAFETY: each state belongs to the acquisition above it.
/// unsafe {
///     raw.unlock_shared(r);
///     let w = raw.upgrade(u);
///     assert!(raw.is_locked_exclusive());
///     let r = raw.downgrade(w);
///     raw.unlock_shared(r);
/// }
/// assert!(!raw.is_locked());
/// ```
#[derive(Debug)]
pub struct RawSpinRwLock {
    word: AtomicUsize,
}

impl RawSpinRwLock {
    crate::sync::loom_const_fn! {
        /// A new, unlocked lock.
        pub fn new() -> Self {
            Self {
                word: AtomicUsize::new(0),
            }
        }
    }

    #[inline(always)]
    fn cas(&self, current: usize, new: usize, success: Ordering) -> Result<usize, usize> {
        self.word
            .compare_exchange_weak(current, new, success, Ordering::Relaxed)
    }

    /// The one slow path: waits until the word allows `want`, then takes it with one CAS.
    /// Writers (and an upgrading reader) first set `WRITER_WAITING` so new readers and
    /// upgradable readers hold back while the current ones drain.
    #[cold]
    #[inline(never)]
    fn lock_slow(&self, want: Want) {
        let mut backoff = Backoff::new();
        loop {
            let s = self.word.load(Ordering::Relaxed);
            if want.allowed(s) {
                // Clears WRITER_WAITING for a writer: the writers still waiting set it again.
                if self.cas(s, want.taken(s), Ordering::Acquire).is_ok() {
                    return;
                }
                backoff.spin();
            } else if want.holds_readers_back() && (s & WRITER_WAITING == 0 || waiter_preempted(s))
            {
                // Also when the writer that set it is preempted: readers ignore its bit, so
                // a running waiter claims it.
                let _ = self.cas(s, with_me_waiting(s), Ordering::Relaxed);
            } else {
                backoff.snooze(want.waits_for(s));
            }
        }
    }

    // ----- shared -----

    /// Acquires a read lock, waiting while a writer holds or waits.
    #[inline]
    pub fn lock_shared(&self) -> GuardNoSend {
        let s = self.word.load(Ordering::Relaxed);
        if s & (WRITER | WRITER_WAITING) != 0
            || readers(s) == MAX_READERS
            || self.cas(s, s + ONE_READER, Ordering::Acquire).is_err()
        {
            self.lock_slow(Want::Shared);
        }
        cs::enter();
        GuardNoSend::new()
    }

    /// Acquires a read lock unless a writer holds it (a waiting writer does not stop it).
    #[inline]
    pub fn try_lock_shared(&self) -> Option<GuardNoSend> {
        let mut s = self.word.load(Ordering::Relaxed);
        loop {
            if s & WRITER != 0 || readers(s) == MAX_READERS {
                return None;
            }
            match self.cas(s, s + ONE_READER, Ordering::Acquire) {
                Ok(_) => {
                    cs::enter();
                    return Some(GuardNoSend::new());
                }
                Err(now) => s = now,
            }
        }
    }

    /// Releases a read lock.
    ///
    /// # Safety
    ///
    /// A read lock must be held in the current context, acquired with `guard`.
    #[inline]
    pub unsafe fn unlock_shared(&self, guard: GuardNoSend) {
        let _ = guard;
        let prev = self.word.fetch_sub(ONE_READER, Ordering::Release);
        if cfg!(debug_assertions) && readers(prev) == 0 {
            // Undo the borrow from the flag bits before reporting.
            self.word.fetch_add(ONE_READER, Ordering::Relaxed);
            panic!("RawSpinRwLock::unlock_shared called without a read lock held");
        }
        cs::exit();
    }

    // ----- exclusive -----

    /// Acquires the write lock, waiting for readers, writers and the upgradable reader.
    #[inline]
    pub fn lock_exclusive(&self) -> GuardNoSend {
        if self
            .cas(0, with_my_vcpu(WRITER), Ordering::Acquire)
            .is_err()
        {
            self.lock_slow(Want::Exclusive);
        }
        cs::enter();
        GuardNoSend::new()
    }

    /// Acquires the write lock if nobody holds the lock in any mode.
    #[inline]
    pub fn try_lock_exclusive(&self) -> Option<GuardNoSend> {
        let mut s = self.word.load(Ordering::Relaxed);
        loop {
            if s & (WRITER | UPGRADABLE) != 0 || readers(s) != 0 {
                return None;
            }
            match self.cas(s, with_my_vcpu(WRITER), Ordering::Acquire) {
                Ok(_) => {
                    cs::enter();
                    return Some(GuardNoSend::new());
                }
                Err(now) => s = now,
            }
        }
    }

    /// Releases the write lock.
    ///
    /// # Safety
    ///
    /// The write lock must be held in the current context, acquired with `guard`.
    #[inline]
    pub unsafe fn unlock_exclusive(&self, guard: GuardNoSend) {
        let _ = guard;
        // The vCPU field goes with the bit: a free word is 0, which the next writer's fast
        // path (a CAS from 0) needs.
        let prev = self
            .word
            .fetch_and(!(WRITER | VCPU_MASK), Ordering::Release);
        if cfg!(debug_assertions) && prev & WRITER == 0 {
            // Misuse: put back the vCPU field, which may be an upgradable holder's.
            self.word.fetch_or(prev & VCPU_MASK, Ordering::Relaxed);
            panic!("RawSpinRwLock::unlock_exclusive called without the write lock held");
        }
        cs::exit();
    }

    // ----- upgradable -----

    /// Acquires the upgradable read lock: shares with readers, excludes writers and other
    /// upgradable readers; waits while a writer holds or waits.
    #[inline]
    pub fn lock_upgradable(&self) -> GuardNoSend {
        let s = self.word.load(Ordering::Relaxed);
        if s & (WRITER | UPGRADABLE | WRITER_WAITING) != 0
            || self
                .cas(s, with_my_vcpu(s | UPGRADABLE), Ordering::Acquire)
                .is_err()
        {
            self.lock_slow(Want::Upgradable);
        }
        cs::enter();
        GuardNoSend::new()
    }

    /// Acquires the upgradable read lock unless a writer or another upgradable reader holds
    /// the lock.
    #[inline]
    pub fn try_lock_upgradable(&self) -> Option<GuardNoSend> {
        let mut s = self.word.load(Ordering::Relaxed);
        loop {
            if s & (WRITER | UPGRADABLE) != 0 {
                return None;
            }
            match self.cas(s, with_my_vcpu(s | UPGRADABLE), Ordering::Acquire) {
                Ok(_) => {
                    cs::enter();
                    return Some(GuardNoSend::new());
                }
                Err(now) => s = now,
            }
        }
    }

    /// Releases the upgradable read lock.
    ///
    /// # Safety
    ///
    /// The upgradable read lock must be held in the current context, acquired with `guard`.
    #[inline]
    pub unsafe fn unlock_upgradable(&self, guard: GuardNoSend) {
        let _ = guard;
        // The vCPU field is the upgradable holder's (no writer holds): it goes with the bit.
        let prev = self
            .word
            .fetch_and(!(UPGRADABLE | VCPU_MASK), Ordering::Release);
        if cfg!(debug_assertions) && prev & UPGRADABLE == 0 {
            // Misuse: put back the vCPU field, which may be a writer's.
            self.word.fetch_or(prev & VCPU_MASK, Ordering::Relaxed);
            panic!("RawSpinRwLock::unlock_upgradable called without the upgradable lock held");
        }
        cs::exit();
    }

    /// Checks (debug builds) that the upgradable lock is held.
    #[inline(always)]
    fn debug_check_upgradable(&self, what: &str) {
        if cfg!(debug_assertions) {
            assert!(
                self.word.load(Ordering::Relaxed) & UPGRADABLE != 0,
                "RawSpinRwLock::{what} called without the upgradable lock held"
            );
        }
    }

    /// Checks (debug builds) that the write lock is held.
    #[inline(always)]
    fn debug_check_writer(&self, what: &str) {
        if cfg!(debug_assertions) {
            assert!(
                self.word.load(Ordering::Relaxed) & WRITER != 0,
                "RawSpinRwLock::{what} called without the write lock held"
            );
        }
    }

    /// Upgrades the upgradable read lock to the write lock, waiting for readers to drain (new
    /// readers are held back meanwhile).
    ///
    /// # Safety
    ///
    /// The upgradable read lock must be held in the current context, acquired with `guard`.
    #[inline]
    pub unsafe fn upgrade(&self, guard: GuardNoSend) -> GuardNoSend {
        self.debug_check_upgradable("upgrade");
        let s = self.word.load(Ordering::Relaxed);
        if readers(s) != 0 || self.cas(s, Self::upgraded(s), Ordering::Acquire).is_err() {
            self.lock_slow(Want::Upgrade);
        }
        guard
    }

    /// The word after the upgradable holder became the writer.
    #[inline(always)]
    fn upgraded(s: usize) -> usize {
        with_my_vcpu((s & !(UPGRADABLE | WAITING)) | WRITER)
    }

    /// Upgrades to the write lock if no plain readers hold the lock; otherwise keeps the
    /// upgradable lock and returns its state in `Err`.
    ///
    /// # Safety
    ///
    /// The upgradable read lock must be held in the current context, acquired with `guard`.
    #[inline]
    pub unsafe fn try_upgrade(&self, guard: GuardNoSend) -> Result<GuardNoSend, GuardNoSend> {
        self.debug_check_upgradable("try_upgrade");
        let mut s = self.word.load(Ordering::Relaxed);
        loop {
            if readers(s) != 0 {
                return Err(guard);
            }
            match self.cas(s, Self::upgraded(s), Ordering::Acquire) {
                Ok(_) => return Ok(guard),
                Err(now) => s = now,
            }
        }
    }

    /// Applies `f` to the word in one CAS loop (`Release`: a downgrade publishes the writer's
    /// work to the readers it lets in).
    #[inline(always)]
    fn update(&self, f: impl Fn(usize) -> usize) {
        let mut s = self.word.load(Ordering::Relaxed);
        while let Err(now) =
            self.word
                .compare_exchange_weak(s, f(s), Ordering::Release, Ordering::Relaxed)
        {
            s = now;
        }
    }

    /// Turns the write lock into a read lock; no writer can get in between.
    ///
    /// # Safety
    ///
    /// The write lock must be held in the current context, acquired with `guard`.
    #[inline]
    pub unsafe fn downgrade(&self, guard: GuardNoSend) -> GuardNoSend {
        self.debug_check_writer("downgrade");
        // Only WRITER_WAITING (and its waiter) can change under a writer; keep it, so waiting
        // writers keep priority over new readers.
        self.update(|s| (s & WAITING) | ONE_READER);
        guard
    }

    /// Turns the write lock into the upgradable read lock; no writer can get in between.
    ///
    /// # Safety
    ///
    /// The write lock must be held in the current context, acquired with `guard`.
    #[inline]
    pub unsafe fn downgrade_to_upgradable(&self, guard: GuardNoSend) -> GuardNoSend {
        self.debug_check_writer("downgrade_to_upgradable");
        self.update(|s| (s & (WAITING | VCPU_MASK)) | UPGRADABLE);
        guard
    }

    /// Turns the upgradable read lock into a plain read lock.
    ///
    /// # Safety
    ///
    /// The upgradable read lock must be held in the current context, acquired with `guard`.
    #[inline]
    pub unsafe fn downgrade_upgradable(&self, guard: GuardNoSend) -> GuardNoSend {
        self.debug_check_upgradable("downgrade_upgradable");
        let mut s = self.word.load(Ordering::Relaxed);
        loop {
            if readers(s) == MAX_READERS {
                // No room for one more reader. lock_api has already consumed the caller's
                // guard, so release the upgradable lock before reporting: a panic must not
                // leave UPGRADABLE held with nobody to release it (issue 9).
                // SAFETY: the caller holds the upgradable lock with `guard` (our contract).
                unsafe { self.unlock_upgradable(guard) };
                panic!("RawSpinRwLock reader count overflow");
            }
            let new = (s & !(UPGRADABLE | VCPU_MASK)) + ONE_READER;
            match self
                .word
                .compare_exchange_weak(s, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return guard,
                Err(now) => s = now,
            }
        }
    }

    // ----- queries -----

    /// Whether the lock is held in any mode (a momentary snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        let s = self.word.load(Ordering::Relaxed);
        s & (WRITER | UPGRADABLE) != 0 || readers(s) != 0
    }

    /// Whether the write lock is held (a momentary snapshot).
    #[inline]
    pub fn is_locked_exclusive(&self) -> bool {
        self.word.load(Ordering::Relaxed) & WRITER != 0
    }

    /// Number of plain read holders (a momentary snapshot; the upgradable reader not counted).
    #[inline]
    pub fn reader_count(&self) -> usize {
        readers(self.word.load(Ordering::Relaxed))
    }
}

impl Default for RawSpinRwLock {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: readers enter only by a CAS that sees no WRITER, writers only by a CAS that sees no
// WRITER, UPGRADABLE or readers, the upgradable reader only by a CAS that sees no WRITER or
// UPGRADABLE; every acquiring CAS is `Acquire` and every release an RMW with `Release`, and all
// writes to the word are RMWs, so each acquisition synchronizes with every earlier release.
// Debug checks in release paths panic only when the released mode was not held (after undoing
// the read count borrow), so no held acquisition is lost by unwinding. States are
// `GuardNoSend`: the critical-section depth belongs to the thread.
unsafe impl lock_api::RawRwLock for RawSpinRwLock {
    crate::sync::loom_init!();

    type SharedGuard = GuardNoSend;
    type ExclusiveGuard = GuardNoSend;

    #[inline]
    fn lock_shared(&self) -> GuardNoSend {
        RawSpinRwLock::lock_shared(self)
    }

    #[inline]
    fn try_lock_shared(&self) -> Option<GuardNoSend> {
        RawSpinRwLock::try_lock_shared(self)
    }

    #[inline]
    unsafe fn unlock_shared(&self, guard: GuardNoSend) {
        // SAFETY: forwarded caller contract.
        unsafe { RawSpinRwLock::unlock_shared(self, guard) }
    }

    #[inline]
    fn lock_exclusive(&self) -> GuardNoSend {
        RawSpinRwLock::lock_exclusive(self)
    }

    #[inline]
    fn try_lock_exclusive(&self) -> Option<GuardNoSend> {
        RawSpinRwLock::try_lock_exclusive(self)
    }

    #[inline]
    unsafe fn unlock_exclusive(&self, guard: GuardNoSend) {
        // SAFETY: forwarded caller contract.
        unsafe { RawSpinRwLock::unlock_exclusive(self, guard) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        RawSpinRwLock::is_locked(self)
    }

    #[inline]
    fn is_locked_exclusive(&self) -> bool {
        RawSpinRwLock::is_locked_exclusive(self)
    }
}

// SAFETY: `downgrade` replaces WRITER by one reader in a single CAS, so no writer can acquire
// in between, and releases (`Release`) the writer's work to later acquirers.
unsafe impl lock_api::RawRwLockDowngrade for RawSpinRwLock {
    #[inline]
    unsafe fn downgrade(&self, guard: GuardNoSend) -> GuardNoSend {
        // SAFETY: forwarded caller contract.
        unsafe { RawSpinRwLock::downgrade(self, guard) }
    }
}

// SAFETY: at most one UPGRADABLE holder exists (acquired by CAS seeing no UPGRADABLE or
// WRITER); `upgrade` swaps it for WRITER with an `Acquire` CAS only once no readers remain,
// synchronizing with their `Release` unlocks; on `try_upgrade` failure the upgradable state is
// returned untouched.
unsafe impl lock_api::RawRwLockUpgrade for RawSpinRwLock {
    type UpgradableGuard = GuardNoSend;

    #[inline]
    fn lock_upgradable(&self) -> GuardNoSend {
        RawSpinRwLock::lock_upgradable(self)
    }

    #[inline]
    fn try_lock_upgradable(&self) -> Option<GuardNoSend> {
        RawSpinRwLock::try_lock_upgradable(self)
    }

    #[inline]
    unsafe fn unlock_upgradable(&self, guard: GuardNoSend) {
        // SAFETY: forwarded caller contract.
        unsafe { RawSpinRwLock::unlock_upgradable(self, guard) }
    }

    #[inline]
    unsafe fn upgrade(&self, guard: GuardNoSend) -> GuardNoSend {
        // SAFETY: forwarded caller contract.
        unsafe { RawSpinRwLock::upgrade(self, guard) }
    }

    #[inline]
    unsafe fn try_upgrade(&self, guard: GuardNoSend) -> Result<GuardNoSend, GuardNoSend> {
        // SAFETY: forwarded caller contract.
        unsafe { RawSpinRwLock::try_upgrade(self, guard) }
    }
}

// SAFETY: both transitions are single CAS updates that never clear the last exclusive bit
// before setting the new mode, so no writer gets in between; they release with `Release`.
unsafe impl lock_api::RawRwLockUpgradeDowngrade for RawSpinRwLock {
    #[inline]
    unsafe fn downgrade_upgradable(&self, guard: GuardNoSend) -> GuardNoSend {
        // SAFETY: forwarded caller contract.
        unsafe { RawSpinRwLock::downgrade_upgradable(self, guard) }
    }

    #[inline]
    unsafe fn downgrade_to_upgradable(&self, guard: GuardNoSend) -> GuardNoSend {
        // SAFETY: forwarded caller contract.
        unsafe { RawSpinRwLock::downgrade_to_upgradable(self, guard) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// Issue 9: an overflow panic inside `downgrade_upgradable`'s CAS closure left
    /// `UPGRADABLE` set with the guard already consumed: nobody could release it.
    #[test]
    fn downgrade_upgradable_overflow_releases_the_upgradable_lock() {
        let raw = RawSpinRwLock::new();
        let depth = ecs_sys::cs_depth();
        let u = raw.lock_upgradable();
        // Fill the reader count (no real reader could get there).
        raw.word
            .fetch_or(MAX_READERS * ONE_READER, Ordering::Relaxed);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: `u` is this thread's upgradable lock.
            unsafe { raw.downgrade_upgradable(u) }
        }));
        assert!(r.is_err(), "the overflow is reported");
        let s = raw.word.load(Ordering::Relaxed);
        assert_eq!(s & UPGRADABLE, 0, "the upgradable lock was released");
        assert_eq!(ecs_sys::cs_depth(), depth, "and its critical section left");
        raw.word
            .fetch_and(!(MAX_READERS * ONE_READER), Ordering::Relaxed);
        assert!(raw.try_lock_upgradable().is_some());
    }

    use super::*;

    #[test]
    fn word_layout() {
        assert_eq!(VCPU_MASK & (WRITER | UPGRADABLE | WRITER_WAITING), 0);
        assert_eq!(VCPU_MASK & ONE_READER, 0);
        assert_eq!(VCPU_MASK & WAITER_MASK, 0);
        assert_eq!(
            WAITER_MASK & (ONE_READER | WRITER | UPGRADABLE | WRITER_WAITING),
            0
        );
        // The fields are contiguous: readers start right above the last vCPU field.
        let top = if WAITER_MASK != 0 {
            WAITER_MASK
        } else {
            VCPU_MASK
        };
        assert_eq!(ONE_READER, (top | (top - 1)) + 1);
        assert!(!waiter_preempted(with_me_waiting(0)), "natively never");
        assert_eq!(holder(with_my_vcpu(WRITER)), Some(ecs_sys::vcpu_id()));
        assert_eq!(holder(ONE_READER | WRITER_WAITING | VCPU_MASK), None);
    }

    #[test]
    fn modes_exclude_as_documented() {
        let l = RawSpinRwLock::new();
        let r1 = l.lock_shared();
        let r2 = l.try_lock_shared().unwrap();
        assert_eq!(l.reader_count(), 2);
        let u = l.try_lock_upgradable().unwrap();
        assert!(
            l.try_lock_upgradable().is_none(),
            "one upgradable reader at most"
        );
        assert!(l.try_lock_exclusive().is_none());
        // SAFETY: every state below belongs to its acquisition above.
        unsafe {
            let Err(u) = l.try_upgrade(u) else {
                panic!("readers still hold")
            };
            l.unlock_shared(r1);
            l.unlock_shared(r2);
            let Ok(w) = l.try_upgrade(u) else {
                panic!("no readers left")
            };
            assert!(l.is_locked_exclusive());
            assert!(l.try_lock_shared().is_none());
            assert!(l.try_lock_upgradable().is_none());
            let u = l.downgrade_to_upgradable(w);
            assert!(!l.is_locked_exclusive());
            let r = l.downgrade_upgradable(u);
            assert_eq!(l.reader_count(), 1);
            assert!(l.try_lock_upgradable().is_some_and(|u| {
                l.unlock_upgradable(u);
                true
            }));
            l.unlock_shared(r);
        }
        assert!(!l.is_locked());
        assert_eq!(l.word.load(Ordering::Relaxed), 0);
    }

    /// Issue 8: a writer's or upgradable reader's release left its vCPU in the word, so the
    /// next writer's fast path (a CAS from 0) failed, and took the slow path, whenever the
    /// last holder ran on a vCPU other than 0: in an 8-vCPU guest about 7 writes in 8 if the
    /// last holders spread evenly over the vCPUs. Natively every
    /// id is 0, so the words below are written as a holder on vCPU 5 would leave them.
    #[test]
    fn releases_clear_the_holders_vcpu() {
        let on_vcpu_5 = |bits: usize| bits | (5 << VCPU_SHIFT);
        let l = RawSpinRwLock::new();
        let word = || l.word.load(Ordering::Relaxed);
        // SAFETY: each stored word is the state a holder of the released mode on vCPU 5 is in;
        // the cs::enter before each release is that holder's mark.
        unsafe {
            l.word.store(on_vcpu_5(WRITER), Ordering::Relaxed);
            cs::enter();
            l.unlock_exclusive(GuardNoSend::new());
            assert_eq!(word(), 0, "after a write unlock");

            l.word.store(on_vcpu_5(UPGRADABLE), Ordering::Relaxed);
            cs::enter();
            l.unlock_upgradable(GuardNoSend::new());
            assert_eq!(word(), 0, "after an upgradable unlock");

            l.word.store(on_vcpu_5(UPGRADABLE), Ordering::Relaxed);
            cs::enter();
            let r = l.downgrade_upgradable(GuardNoSend::new());
            assert_eq!(word(), ONE_READER, "after a downgrade to a reader");
            l.unlock_shared(r);
        }
        assert_eq!(word(), 0);
        // So the writers' fast path (a CAS from 0) takes it.
        assert!(
            l.word
                .compare_exchange(
                    0,
                    with_my_vcpu(WRITER),
                    Ordering::Acquire,
                    Ordering::Relaxed
                )
                .is_ok()
        );
    }

    #[test]
    fn critical_section_depth_follows_holders() {
        let l = RawSpinRwLock::new();
        let d = ecs_sys::cs_depth();
        let r = l.lock_shared();
        let u = l.lock_upgradable();
        assert_eq!(ecs_sys::cs_depth(), d + 2);
        // SAFETY: states belong to the acquisitions above.
        unsafe {
            l.unlock_shared(r);
            let w = l.upgrade(u);
            assert_eq!(ecs_sys::cs_depth(), d + 1, "mode changes keep the section");
            let r = l.downgrade(w);
            assert_eq!(ecs_sys::cs_depth(), d + 1);
            l.unlock_shared(r);
        }
        assert_eq!(ecs_sys::cs_depth(), d);
    }

    #[test]
    fn waiting_writer_holds_new_readers_back() {
        let l = RawSpinRwLock::new();
        let r = l.lock_shared();
        l.word.fetch_or(WRITER_WAITING, Ordering::Relaxed); // as a waiting writer would
        assert!(
            l.try_lock_shared().is_some_and(|g| {
                // SAFETY: `g` is the state of this acquisition.
                unsafe { l.unlock_shared(g) };
                true
            }),
            "try_lock_shared ignores waiting writers"
        );
        // SAFETY: `r` is the state of the first acquisition.
        unsafe { l.unlock_shared(r) };
        let w = l.lock_exclusive();
        assert_eq!(
            l.word.load(Ordering::Relaxed) & WRITER_WAITING,
            0,
            "acquisition clears it"
        );
        // SAFETY: `w` is the state of this acquisition.
        unsafe { l.unlock_exclusive(w) };
    }

    /// A write unlock while only an upgradable reader holds panics (debug) and leaves that
    /// holder's vCPU in the word, and the reverse.
    #[test]
    #[cfg(debug_assertions)]
    fn debug_misused_unlock_keeps_the_holders_vcpu() {
        let held = |bits: usize| bits | (5 << VCPU_SHIFT);
        for (holder, write_unlock) in [(UPGRADABLE, true), (WRITER, false)] {
            let l = RawSpinRwLock::new();
            l.word.store(held(holder), Ordering::Relaxed);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // SAFETY: deliberately violated to check the debug diagnostic.
                unsafe {
                    if write_unlock {
                        l.unlock_exclusive(GuardNoSend::new());
                    } else {
                        l.unlock_upgradable(GuardNoSend::new());
                    }
                }
            }));
            assert!(r.is_err(), "the misuse panics");
            assert_eq!(l.word.load(Ordering::Relaxed), held(holder));
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "without a read lock held")]
    fn debug_unlock_shared_without_readers_panics() {
        let l = RawSpinRwLock::new();
        // SAFETY: deliberately violated to check the debug diagnostic.
        unsafe { l.unlock_shared(GuardNoSend::new()) };
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "without the upgradable lock held")]
    fn debug_upgrade_without_upgradable_panics() {
        let l = RawSpinRwLock::new();
        let _r = l.lock_shared();
        // SAFETY: deliberately violated to check the debug diagnostic.
        let _ = unsafe { l.upgrade(GuardNoSend::new()) };
    }
}
