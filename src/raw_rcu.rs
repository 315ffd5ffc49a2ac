//! The RCU grace-period protocol: reader slots, the global epoch, and the writer's wait.
//!
//! # Algorithm
//!
//! User-space RCU with per-reader counters, after liburcu's general-purpose flavors ("mb" and
//! "memb": M. Desnoyers, P. E. McKenney, A. S. Stern, M. R. Dagenais, J. Walpole, *User-Level
//! Implementations of Read-Copy Update*, IEEE TPDS 23(2), 2012, section 3; liburcu
//! `include/urcu/static/urcu-common.h` and `src/urcu.c`), with two changes:
//!
//! - **An epoch, not a parity bit.** liburcu's global counter carries a one-bit phase, which is
//!   why its `synchronize_rcu` flips the phase twice: a reader that loaded the phase, was
//!   delayed, and stored it after a flip would carry a phase that becomes "current" again at the
//!   next flip and would be ignored. Here the global word carries a 48-bit epoch that only grows,
//!   so a stale epoch never becomes current again (short of 2^47 grace periods passing while one
//!   reader sits between two instructions) and one pass suffices. This is the shape of Linux's
//!   polled grace periods (`start_poll_synchronize_rcu` / `poll_state_synchronize_rcu`): a grace
//!   period is a cookie, the epoch it started, and any number of writers may start and await
//!   grace periods concurrently without a writer lock.
//! - **Enlightened waiting.** Each reader slot names the vCPU of its reader. A writer waiting on
//!   a reader whose vCPU the host has preempted yields its pCPU to it (directed yield, through
//!   [`Backoff::snooze`]); otherwise it spins and, natively, yields to the OS after a while, so
//!   grace periods also survive oversubscription.
//!
//! Readers write nothing but their own cache-padded slot: no shared reader count.
//!
//! ```text
//! reader (read_lock .. read_unlock)                writer (start .. wait)
//!  (a) e = GP.load(Relaxed)                         (1) unpublish: ptr.store(new) / swap
//!  (b) slot = e | depth 1          (Release)        (2) fence(SeqCst)                    F_W
//!  (c) fence(SeqCst)                        F_R     (3) t = GP.fetch_add(1 epoch) + 1 epoch
//!  (d) p = ptr.load(Acquire); use *p                (4) for each slot: wait until the slot is
//!  (e) slot = depth 0              (Release)            quiescent or its epoch >= t (Acquire)
//!                                                   (5) free the old value
//! ```
//!
//! Nested `read_lock`s only add to the depth (Release store to the own slot) and keep the epoch
//! of the outermost one, so a section is one interval for the writer.
//!
//! # Why a grace period waits for every pre-existing reader
//!
//! Suppose the reader's load (d) returned the old pointer. Consider the value of the reader's
//! slot that the writer's load in (4) reads.
//! - If it is older than (b): the writer's load (after F_W) did not see a store made before F_R,
//!   so F_W precedes F_R in the single total order of SeqCst fences (C++20 \[atomics.order\]: had
//!   F_R come first, the load would see (b) or later). Then (1) is before F_W, F_W before F_R,
//!   F_R before (d), so (d) sees (1) or later: not the old pointer. Contradiction. (The same
//!   argument covers a reader slot the writer does not know about yet: registering a slot is a
//!   store before F_R, discovering it a load after F_W.)
//! - If it is (b) or a later store of the same section (nesting keeps the epoch `e`): had the
//!   reader read `e >= t` at (a), it read the value written by (3) or by a later read-modify-write
//!   of its release sequence; F_W (before (3)) then synchronizes with F_R (after (a)), so (1)
//!   happens before (d): again not the old pointer. So `e < t` and the writer keeps waiting.
//! - The writer stops waiting only on a value that is quiescent or carries an epoch `>= t`: that
//!   is (e) or a later store of the reader. Every slot store is Release and the writer loads
//!   Acquire, so the reader's whole section, its use of `*p` included, happens before (5).
//!
//! A grace period does not wait for new readers: a reader whose (a) reads `t` or later is never
//! waited for by the grace period `t`. The loom model (`loom-tests/tests/rcu.rs`) checks both
//! directions and the use-after-free case.
//!
//! # Words
//!
//! The global word `GP` and every reader slot word share one layout:
//!
//! | bits   | field | meaning |
//! |--------|-------|---------|
//! | 0..16  | depth | nesting depth of the reader's section; 0 = quiescent. `GP` holds 1 here, so the outermost `read_lock` copies `GP` verbatim (liburcu's `URCU_GP_COUNT` trick) |
//! | 16..64 | epoch | `GP`: the current epoch, +1 per grace period started; a slot: the epoch its outermost `read_lock` saw |
//!
//! Epochs compare with wrapping (serial-number) arithmetic on the 48-bit field.
//!
//! # Where reader slots live
//!
//! - `std` (and not `guest`): a registry, a lock-free singly linked list of leaked, cache-padded
//!   slots. A thread claims a free slot on its first `read_lock` (a thread-local handle from
//!   `crate::sync::thread_local!`) or pushes a new one; the handle's destructor frees the slot
//!   for the next thread. Sections taken after the handle is gone (in other thread-locals'
//!   destructors) share one teardown slot per thread, freed when its outermost section ends.
//!   Slots are never deallocated, so a writer walking the list never touches freed memory,
//!   and the list grows without blocking readers or writers.
//! - `guest` (no_std, one flow per vCPU, no TLS): a static table of one slot per vCPU, indexed by
//!   `cs::vcpu_id()`, bounded by [`ecs_sys::abi::MAX_VCPUS`]; writers scan up to the highest vCPU
//!   that ever read.
//! - neither: this module is not compiled (there is no way to enumerate the readers).
//!
//! The reader's full fence is a plain `fence(SeqCst)` (`mfence` on x86-64). crossbeam-epoch's
//! `Local::pin` uses a `lock cmpxchg` there instead; an `xchg` variant measured no faster here
//! (within this machine's noise, 5-15 ns either way), so the code keeps the fence that the C++
//! model and loom both describe exactly. liburcu's "memb" flavor removes the reader's fence
//! altogether with `membarrier(2)` on the writer side; neither loom nor the guest (no
//! membarrier across vCPUs without a hypercall) could use that.

use crate::backoff::Backoff;
use crate::cs;
use crate::sync::{AtomicU32, AtomicU64, Ordering, fence};
use crossbeam_utils::CachePadded;

/// Bits of a word that hold the nesting depth.
const DEPTH_BITS: u32 = 16;
/// Mask of the depth field (also the deepest nesting allowed).
pub(crate) const DEPTH_MASK: u64 = (1 << DEPTH_BITS) - 1;
/// One epoch, as an addend to a word.
const EPOCH_ONE: u64 = 1 << DEPTH_BITS;
/// The initial global word: epoch 1, depth 1.
const GP_INIT: u64 = EPOCH_ONE | 1;

/// Whether the epoch of word `a` is at or after the epoch of word `b` (serial-number
/// arithmetic: the masked difference, read as signed, is the 48-bit difference shifted left).
#[inline]
fn epoch_at_or_after(a: u64, b: u64) -> bool {
    ((a & !DEPTH_MASK).wrapping_sub(b & !DEPTH_MASK) as i64) >= 0
}

/// A sleeping writer's first nap (see [`ReaderSlot::wait_passed`]).
#[cfg(all(feature = "std", not(loom)))]
const SLEEP_MIN: core::time::Duration = core::time::Duration::from_micros(50);

/// A sleeping writer's longest nap: the most a wake-up the reader missed can delay it.
#[cfg(all(feature = "std", not(loom)))]
const SLEEP_MAX: core::time::Duration = core::time::Duration::from_millis(1);

/// One reader's slot. Only its reader writes `ctr` and `vcpu`; writers read them.
#[derive(Debug)]
pub(crate) struct ReaderSlot {
    /// Depth and epoch (see the table in the module docs).
    ctr: AtomicU64,
    /// The vCPU the reader ran on at its outermost `read_lock` (for directed yields).
    vcpu: AtomicU32,
    /// What the reader's outermost unlock must do besides its store (`std`), in one word so
    /// that an uncontended unlock reads one field of the slot it just wrote and touches no
    /// thread-local: the count of writers asleep on the slot (low bits, see
    /// [`Self::wait_passed`]) and [`TEARDOWN_SLOT`]. Zero on the common path.
    #[cfg(feature = "std")]
    notify: AtomicU32,
}

/// `ReaderSlot::notify` bit: the slot is its thread's teardown slot, freed by its outermost
/// unlock (see `slots::teardown_slot`). Set and cleared by the owning thread only; the
/// sleeper count below it is changed by writers with RMWs, which leave the bit alone.
#[cfg(feature = "std")]
const TEARDOWN_SLOT: u32 = 1 << 31;

impl ReaderSlot {
    crate::sync::loom_const_fn! {
        fn new() -> Self {
            Self {
                ctr: AtomicU64::new(0),
                vcpu: AtomicU32::new(0),
                #[cfg(feature = "std")]
                notify: AtomicU32::new(0),
            }
        }
    }

    /// Whether this slot no longer holds up the grace period that started epoch word `target`.
    #[inline]
    fn passed(&self, target: u64) -> bool {
        let v = self.ctr.load(Ordering::Acquire);
        v & DEPTH_MASK == 0 || epoch_at_or_after(v, target)
    }

    /// Waits until [`Self::passed`]: spins a bounded while (yielding to the reader's vCPU
    /// while it is preempted), then, with `std`, sleeps (issue 9: a grace period used to spin
    /// and yield for as long as the reader's section lasted).
    ///
    /// The sleep is a park on the slot's address, announced in `notify`'s count; the reader's
    /// outermost unlock reads `notify` after its release store and wakes the slot's
    /// sleepers. Readers do not fence there (the read path stays one store); the writer
    /// issues a process-wide barrier ([`heavy_barrier`]) after announcing itself instead, so
    /// the two cannot miss each other. Where that barrier is unavailable a reader may miss a
    /// writer that announced itself at that very moment: each sleep is therefore also timed
    /// (from [`SLEEP_MIN`] doubling to [`SLEEP_MAX`]) and the writer re-checks when it ends.
    fn wait_passed(&self, target: u64) {
        let mut backoff = Backoff::new();
        while !self.passed(target) {
            #[cfg(all(feature = "std", not(loom)))]
            if backoff.is_completed() {
                return self.sleep_until_passed(target);
            }
            backoff.snooze(Some(self.vcpu.load(Ordering::Relaxed)));
        }
    }

    /// The sleeping half of [`Self::wait_passed`].
    #[cfg(all(feature = "std", not(loom)))]
    #[cold]
    fn sleep_until_passed(&self, target: u64) {
        let key = core::ptr::from_ref(self).addr();
        let mut nap = SLEEP_MIN;
        while !self.passed(target) {
            self.notify.fetch_add(1, Ordering::SeqCst);
            // The reader's unlock stores `ctr` and then loads `notify` with no fence between
            // (store buffering could let it read the old count while this writer reads the old
            // `ctr`, and both miss each other). A process-wide barrier here upgrades the
            // reader's compiler fence to a full one: either its store is visible to the
            // re-check in `validate`, or its load sees this announcement.
            heavy_barrier();
            let deadline = crate::park::to_deadline(nap);
            // SAFETY: the key is this slot's address, which only RCU parks on; `validate`
            // only reads the slot and cannot unwind; the other callbacks do nothing.
            let _result = unsafe {
                crate::park::park(
                    key,
                    || !self.passed(target),
                    || {},
                    |_, _| {},
                    crate::park::DEFAULT_PARK_TOKEN,
                    deadline,
                )
            };
            #[cfg(test)]
            if matches!(_result, crate::park::ParkResult::Unparked(_)) {
                tests::WOKEN_BY_READER.fetch_add(1, Ordering::Relaxed);
            }
            self.notify.fetch_sub(1, Ordering::Relaxed);
            nap = (nap * 2).min(SLEEP_MAX);
        }
    }

    /// Wakes the writers asleep on this slot (the reader just left its outermost section).
    #[cfg(all(feature = "std", not(loom)))]
    #[cold]
    #[inline(never)]
    fn wake_sleepers(&self) {
        let key = core::ptr::from_ref(self).addr();
        // SAFETY: only RCU parks on a slot's address.
        unsafe { crate::park::unpark_all(key, crate::park::DEFAULT_UNPARK_TOKEN) };
    }

    /// The current depth of this slot's section (0 = quiescent). For the owner and for tests.
    #[inline]
    pub(crate) fn depth(&self) -> u64 {
        self.ctr.load(Ordering::Relaxed) & DEPTH_MASK
    }
}

/// Enters a read-side section on the calling thread's (or vCPU's) slot and returns the slot,
/// which the matching [`read_unlock`] takes back.
#[inline]
pub(crate) fn read_lock() -> &'static ReaderSlot {
    let slot = slots::current();
    let v = slot.ctr.load(Ordering::Relaxed);
    if v & DEPTH_MASK == 0 {
        if ecs_sys::LIVE_HINTS {
            slot.vcpu.store(cs::vcpu_id(), Ordering::Relaxed);
        }
        let gp = slots::domain().gp.load(Ordering::Relaxed);
        publish_outermost(slot, gp);
    } else {
        assert!(
            v & DEPTH_MASK != DEPTH_MASK,
            "RCU read sections nested too deeply"
        );
        slot.ctr.store(v + 1, Ordering::Release);
    }
    cs::enter();
    slot
}

/// Steps (b) and (c): announce the section, then order every later load after the announcement.
#[inline(always)]
fn publish_outermost(slot: &ReaderSlot, gp: u64) {
    slot.ctr.store(gp, Ordering::Release);
    fence(Ordering::SeqCst);
}

/// Leaves the innermost read-side section on `slot`.
///
/// # Safety
///
/// `slot` comes from a [`read_lock`] on this same thread (vCPU) whose section has not been left
/// yet, and each `read_lock` is matched by one `read_unlock` (the slot holds a depth: an extra
/// unlock would end another section of this thread early and let a writer free what that
/// section still reads; the order of unlocks among this thread's sections does not matter).
#[inline]
pub(crate) unsafe fn read_unlock(slot: &'static ReaderSlot) {
    let v = slot.ctr.load(Ordering::Relaxed);
    debug_assert!(v & DEPTH_MASK != 0, "RCU read_unlock without read_lock");
    // The outermost unlock leaves the epoch behind: a quiescent slot's epoch is never looked at.
    slot.ctr.store(v - 1, Ordering::Release);
    #[cfg(feature = "std")]
    if v & DEPTH_MASK == 1 {
        // Free at run time; a sleeping writer's `heavy_barrier` makes it a full fence
        // (liburcu's membarrier scheme): the store above is ordered before the load below.
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        let notify = slot.notify.load(Ordering::Relaxed);
        if notify != 0 {
            left_outermost_slow(slot, notify);
        }
    }
    cs::exit();
}

/// A memory barrier on every running thread of the process (Linux `membarrier`, private
/// expedited), pairing with the compiler fence of `read_unlock`. Without it (another OS, or a
/// kernel that refuses it) a sleeping writer can miss a wake-up, and its nap timeout
/// ([`SLEEP_MAX`]) bounds the delay.
#[cfg(all(feature = "std", not(loom)))]
#[cold]
fn heavy_barrier() {
    #[cfg(target_os = "linux")]
    {
        /// `MEMBARRIER_CMD_PRIVATE_EXPEDITED` (linux/membarrier.h; not in `libc`).
        const PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
        /// `MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED`.
        const REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;
        static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        // SAFETY: membarrier takes two integers and touches no memory of ours.
        let membarrier =
            |cmd: libc::c_int| unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0) } == 0;
        if *REGISTERED.get_or_init(|| membarrier(REGISTER_PRIVATE_EXPEDITED)) {
            membarrier(PRIVATE_EXPEDITED);
        }
    }
}

/// The rare work of an outermost unlock (`notify != 0`): wake sleeping writers, free a
/// teardown slot.
#[cfg(feature = "std")]
#[cold]
#[inline(never)]
fn left_outermost_slow(slot: &'static ReaderSlot, notify: u32) {
    #[cfg(not(loom))]
    if notify & !TEARDOWN_SLOT != 0 {
        slot.wake_sleepers();
    }
    if notify & TEARDOWN_SLOT != 0 {
        slots::left_outermost(slot);
    }
}

/// Whether the calling thread (vCPU) is inside a read-side section.
pub(crate) fn in_section() -> bool {
    slots::current().depth() != 0
}

/// Starts a grace period (steps (2) and (3)) and returns its target word. Everything this thread
/// unpublished before the call may be freed once [`poll`] or [`wait`] says the period completed.
#[inline]
pub(crate) fn start() -> u64 {
    fence(Ordering::SeqCst);
    slots::domain()
        .gp
        .fetch_add(EPOCH_ONE, Ordering::Relaxed)
        .wrapping_add(EPOCH_ONE)
}

/// Whether every reader that could have seen state unpublished before `start()` returned
/// `target` has left its section (step (4) without waiting).
pub(crate) fn poll(target: u64) -> bool {
    let mut done = true;
    slots::for_each(|slot| {
        done = done && slot.passed(target);
        done
    });
    done
}

/// Waits for the grace period `target` (step (4)).
#[cold]
pub(crate) fn wait(target: u64) {
    // Waiting inside an older section of one's own is a self-deadlock; debug builds say so.
    #[cfg(debug_assertions)]
    assert!(
        slots::current().passed(target),
        "RCU grace period awaited inside a read-side section of the same thread (vCPU) that \
         began before it: it would wait forever"
    );
    slots::for_each(|slot| {
        slot.wait_passed(target);
        true
    });
}

/// Serializes the writers of one RCU cell (never readers, never grace periods).
///
/// A test-and-test-and-set spin lock whose word names the holder's vCPU (`vcpu + 1`; 0 = free),
/// so a waiter yields to a preempted holder. Writers hold it for a pointer swap and a little
/// bookkeeping, never across a grace period of their own: `Rcu` and `RcuRing` drop it before
/// waiting and re-lock (and re-scan) afterwards.
#[derive(Debug)]
pub(crate) struct WriterLock {
    word: AtomicU32,
}

impl WriterLock {
    crate::sync::loom_const_fn! {
        pub(crate) fn new() -> Self {
            Self {
                word: AtomicU32::new(0),
            }
        }
    }

    /// Acquires the lock; the holder is an enlightened critical section until the guard drops
    /// (a panic in the holder unlocks on unwind).
    #[inline]
    pub(crate) fn lock(&self) -> WriterGuard<'_> {
        let me = cs::my_holder_tag();
        if self
            .word
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(me);
        }
        cs::enter();
        WriterGuard { lock: self }
    }

    #[cold]
    fn lock_slow(&self, me: u32) {
        let mut backoff = Backoff::new();
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                if self
                    .word
                    .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                backoff.spin();
            } else {
                backoff.snooze(Some(w - 1));
            }
        }
    }
}

/// Holds a [`WriterLock`]; releases it on drop.
#[derive(Debug)]
pub(crate) struct WriterGuard<'a> {
    lock: &'a WriterLock,
}

impl Drop for WriterGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.word.store(0, Ordering::Release);
        cs::exit();
    }
}

/// The global RCU state.
pub(crate) struct Domain {
    /// The global word: current epoch, depth 1.
    gp: CachePadded<AtomicU64>,
    /// Registered reader slots (std registry only).
    #[cfg(all(feature = "std", not(ecs_guest)))]
    head: crate::sync::AtomicPtr<slots::Entry>,
}

impl Domain {
    crate::sync::loom_const_fn! {
        fn new() -> Self {
            Self {
                gp: CachePadded::new(AtomicU64::new(GP_INIT)),
                #[cfg(all(feature = "std", not(ecs_guest)))]
                head: crate::sync::AtomicPtr::new(core::ptr::null_mut()),
            }
        }
    }
}

/// The per-thread registry (std).
#[cfg(all(feature = "std", not(ecs_guest)))]
mod slots {
    use super::{Domain, ReaderSlot, TEARDOWN_SLOT};
    use crate::sync::{AtomicBool, Ordering};
    use core::cell::Cell;
    use crossbeam_utils::CachePadded;

    #[cfg(not(loom))]
    static DOMAIN: Domain = Domain::new();

    // Loom's atomics belong to one execution: a fresh domain per execution.
    #[cfg(loom)]
    loom::lazy_static! {
        static ref DOMAIN: Domain = Domain::new();
    }

    /// The global RCU state.
    #[inline(always)]
    pub(super) fn domain() -> &'static Domain {
        &DOMAIN
    }

    /// A registry entry, one cache line (or two) of its own.
    pub(crate) type Entry = CachePadded<Node>;

    /// A registry entry: a reader slot and whether a thread owns it. Leaked, never freed.
    pub(crate) struct Node {
        slot: ReaderSlot,
        in_use: AtomicBool,
        /// The next entry; written before the entry is published, immutable after.
        next: *const Entry,
    }

    /// This thread's claim on a registry entry; frees it when the thread exits.
    struct Handle(&'static Entry);

    impl Handle {
        fn claim() -> Self {
            let entry = claim();
            let _ = OWN.try_with(|o| o.set(entry));
            Self(entry)
        }
    }

    impl Drop for Handle {
        fn drop(&mut self) {
            // A section still open here belongs to another thread-local whose destructor has
            // not run yet (it will close the section through the slot pointer its guard
            // holds), or to a forgotten guard (which stalls grace periods forever, as in any
            // RCU). Either way the slot must not get a second owner: it stays this thread's
            // teardown slot, so later sections of this thread nest on it (and
            // `in_read_section` still sees the open one); the outermost unlock frees it.
            let _ = OWN.try_with(|o| o.set(core::ptr::null()));
            if self.0.slot.depth() == 0 {
                self.0.in_use.store(false, Ordering::Release);
            } else {
                self.0
                    .slot
                    .notify
                    .fetch_or(TEARDOWN_SLOT, Ordering::Relaxed);
                let _ = TEARDOWN.try_with(|t| t.set(self.0));
            }
        }
    }

    crate::sync::thread_local! {
        static HANDLE: Handle = Handle::claim();
    }

    // The slot this thread reads on once `HANDLE` is gone (sections taken in other
    // thread-locals' destructors), or null. No destructor, so it stays usable through the
    // whole teardown.
    // `OWN`: the handle's entry while the handle lives, or null (read by the fork repair,
    // which must not initialize `HANDLE`).
    #[cfg(not(loom))]
    crate::sync::thread_local! {
        static TEARDOWN: Cell<*const Entry> = const { Cell::new(core::ptr::null()) };
        static OWN: Cell<*const Entry> = const { Cell::new(core::ptr::null()) };
    }
    #[cfg(loom)]
    crate::sync::thread_local! {
        static TEARDOWN: Cell<*const Entry> = Cell::new(core::ptr::null());
        static OWN: Cell<*const Entry> = Cell::new(core::ptr::null());
    }

    /// This thread's reader slot.
    #[inline]
    pub(super) fn current() -> &'static ReaderSlot {
        match HANDLE.try_with(|h| h.0) {
            Ok(node) => &node.slot,
            Err(_) => teardown_slot(),
        }
    }

    /// The slot for a read section taken while this thread's locals are being destroyed (a
    /// `read_lock` in another thread-local's destructor): one per thread at a time, claimed
    /// at the first such section and freed when its outermost section ends
    /// ([`left_outermost`]), so thread churn does not grow the registry (issue 9), and every
    /// section of the thread nests on the same slot, so `in_read_section` tells the truth.
    #[cold]
    fn teardown_slot() -> &'static ReaderSlot {
        let cached = TEARDOWN.try_with(Cell::get).unwrap_or(core::ptr::null());
        if !cached.is_null() {
            // SAFETY: registry entries are leaked and never freed.
            return &unsafe { &*cached }.slot;
        }
        let entry = claim();
        entry.slot.notify.fetch_or(TEARDOWN_SLOT, Ordering::Relaxed);
        // `TEARDOWN` has no destructor, so this cannot fail on a live thread.
        let _ = TEARDOWN.try_with(|t| t.set(entry));
        &entry.slot
    }

    /// Called when the outermost section of `slot`, marked [`TEARDOWN_SLOT`], ended: frees
    /// the thread's teardown slot.
    pub(super) fn left_outermost(slot: &'static ReaderSlot) {
        let _ = TEARDOWN.try_with(|t| {
            let e = t.get();
            if !e.is_null() && core::ptr::eq(slot, &unsafe_entry(e).slot) {
                t.set(core::ptr::null());
                let entry = unsafe_entry(e);
                entry
                    .slot
                    .notify
                    .fetch_and(!TEARDOWN_SLOT, Ordering::Relaxed);
                // Release: the next owner's claim (Acquire) sees the cleared mark.
                entry.in_use.store(false, Ordering::Release);
            }
        });
    }

    /// The entry behind a non-null `TEARDOWN` pointer.
    #[inline]
    fn unsafe_entry(e: *const Entry) -> &'static Entry {
        // SAFETY: `TEARDOWN` only holds pointers from `claim`: leaked, never freed entries.
        unsafe { &*e }
    }

    /// In the child of a `fork()` (see `crate::fork`): every slot but the forking thread's
    /// belongs to a thread that does not exist here. A section open in one of them would
    /// never end and stall every grace period: mark them quiescent and free them. The
    /// forking thread's own slots (its handle's and its teardown slot) keep their sections.
    fn repair_after_fork() {
        let mine = OWN.try_with(Cell::get).unwrap_or(core::ptr::null());
        let teardown = TEARDOWN.try_with(Cell::get).unwrap_or(core::ptr::null());
        let mut p = domain().head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: as in `claim`: published, leaked, never freed.
            let node: &'static Entry = unsafe { &*p };
            let this = core::ptr::from_ref(node);
            if this != mine && this != teardown && node.in_use.load(Ordering::Relaxed) {
                node.slot.ctr.store(0, Ordering::Release);
                node.slot
                    .notify
                    .fetch_and(!TEARDOWN_SLOT, Ordering::Relaxed);
                node.in_use.store(false, Ordering::Release);
            }
            p = node.next.cast_mut();
        }
    }

    /// Claims a free registry entry, or registers a new one.
    #[cold]
    fn claim() -> &'static Entry {
        static FORK_HOOK: crate::fork::Registered = crate::fork::Registered::new();
        crate::fork::on_child(&FORK_HOOK, repair_after_fork);
        let d = domain();
        let mut p = d.head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: registry entries are leaked `Box`es, published by a Release CAS on `head`
            // after `next` was written, and never freed: the pointer stays valid for 'static.
            let node: &'static Entry = unsafe { &*p };
            if !node.in_use.load(Ordering::Relaxed)
                && node
                    .in_use
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return node;
            }
            p = node.next.cast_mut();
        }
        let node: &'static mut Entry = Box::leak(Box::new(CachePadded::new(Node {
            slot: ReaderSlot::new(),
            in_use: AtomicBool::new(true),
            next: core::ptr::null(),
        })));
        let mut head = d.head.load(Ordering::Relaxed);
        loop {
            node.next = head;
            match d.head.compare_exchange_weak(
                head,
                core::ptr::from_mut(node),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return node,
                Err(h) => head = h,
            }
        }
    }

    /// Calls `f` on every registered slot, in list order, while it returns `true`.
    pub(super) fn for_each(mut f: impl FnMut(&ReaderSlot) -> bool) {
        let mut p = domain().head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: as in `claim`: published, leaked, never freed.
            let node = unsafe { &*p };
            if !f(&node.slot) {
                return;
            }
            p = node.next.cast_mut();
        }
    }

    /// Number of registered slots (tests).
    #[cfg(all(test, not(loom)))]
    pub(super) fn registered() -> usize {
        let mut n = 0;
        for_each(|_| {
            n += 1;
            true
        });
        n
    }
}

/// One static slot per vCPU (guest: one flow per vCPU, no TLS).
#[cfg(ecs_guest)]
mod slots {
    use super::{Domain, ReaderSlot};
    use crate::sync::{AtomicU32, Ordering};
    use crossbeam_utils::CachePadded;
    use ecs_sys::abi::MAX_VCPUS;

    static DOMAIN: Domain = Domain::new();

    /// One slot per possible vCPU (`MAX_VCPUS` cache lines).
    static SLOTS: [CachePadded<ReaderSlot>; MAX_VCPUS as usize] =
        [const { CachePadded::new(ReaderSlot::new()) }; MAX_VCPUS as usize];

    /// One past the highest vCPU index that ever entered a section: writers scan below it.
    static HIGH_WATER: AtomicU32 = AtomicU32::new(0);

    /// The global RCU state.
    #[inline(always)]
    pub(super) fn domain() -> &'static Domain {
        &DOMAIN
    }

    /// This vCPU's reader slot.
    #[inline]
    pub(super) fn current() -> &'static ReaderSlot {
        let id = crate::cs::vcpu_id();
        assert!(id < MAX_VCPUS, "vCPU id out of range for RCU reader slots");
        // Registering is a store before the reader's fence, like the registry's push: a writer
        // that misses it is ordered before the reader's loads (see the module docs).
        if HIGH_WATER.load(Ordering::Relaxed) <= id {
            register(id);
        }
        &SLOTS[id as usize]
    }

    /// Nothing to do: a vCPU's slot is static.
    #[cfg(feature = "std")]
    #[inline(always)]
    pub(super) fn left_outermost(_slot: &'static ReaderSlot) {}

    #[cold]
    fn register(id: u32) {
        HIGH_WATER.fetch_max(id + 1, Ordering::Release);
    }

    /// Calls `f` on every slot a reader ever used, while it returns `true`.
    pub(super) fn for_each(mut f: impl FnMut(&ReaderSlot) -> bool) {
        let n = HIGH_WATER.load(Ordering::Acquire) as usize;
        for slot in &SLOTS[..n] {
            if !f(slot) {
                return;
            }
        }
    }
}

#[cfg(all(test, not(loom), feature = "std", not(ecs_guest)))]
mod tests {
    use super::*;

    #[test]
    fn epochs_compare_with_wrapping() {
        let w = |e: u64| e << DEPTH_BITS | 1;
        assert!(epoch_at_or_after(w(5), w(5)));
        assert!(epoch_at_or_after(w(6), w(5)));
        assert!(!epoch_at_or_after(w(4), w(5)));
        let top = (1u64 << (64 - DEPTH_BITS)) - 1;
        assert!(
            epoch_at_or_after(w(0), w(top)),
            "epoch 0 follows the last epoch"
        );
        assert!(!epoch_at_or_after(w(top), w(0)));
        assert!(epoch_at_or_after(w(3) + 7, w(3)), "depth bits are ignored");
    }

    #[test]
    fn nesting_counts_on_own_slot() {
        let a = read_lock();
        let b = read_lock();
        assert!(core::ptr::eq(a, b));
        assert_eq!(a.depth(), 2);
        // SAFETY: `b` is the innermost open section of this thread.
        unsafe { read_unlock(b) };
        assert_eq!(a.depth(), 1);
        // SAFETY: `a` is now the innermost open section.
        unsafe { read_unlock(a) };
        assert_eq!(a.depth(), 0);
    }

    #[test]
    fn grace_period_sees_open_section_then_completes() {
        let s = read_lock();
        let t = start();
        assert!(
            !poll(t),
            "a section open before start() holds up the grace period"
        );
        // SAFETY: `s` is this thread's innermost open section.
        unsafe { read_unlock(s) };
        // Other tests' threads may be inside sections right now; they end soon.
        wait(t);
        assert!(poll(t), "a completed grace period stays completed");
        let s = read_lock();
        let t2 = start();
        let s_new = read_lock();
        // SAFETY: innermost first.
        unsafe { read_unlock(s_new) };
        // SAFETY: `s` is the innermost open section again.
        unsafe { read_unlock(s) };
        wait(t2);
    }

    #[test]
    fn exited_threads_recycle_slots() {
        std::thread::spawn(|| assert_eq!(read_lock_unlock(), 1))
            .join()
            .unwrap();
        let before = slots::registered();
        for _ in 0..8 {
            std::thread::spawn(|| assert_eq!(read_lock_unlock(), 1))
                .join()
                .unwrap();
        }
        // Other tests run threads concurrently and may register a few slots of their own, but
        // eight sequential threads must not take eight fresh slots.
        assert!(
            slots::registered() < before + 8,
            "slots of exited threads are reused"
        );
    }

    /// Naps of sleeping writers that ended because a reader's outermost unlock woke them (not
    /// by their timeout).
    #[allow(clippy::disallowed_types, reason = "a test counter, not lock state")]
    pub(super) static WOKEN_BY_READER: core::sync::atomic::AtomicU32 =
        core::sync::atomic::AtomicU32::new(0);

    /// A writer asleep on a long section is woken by the reader's outermost unlock, not only
    /// by its nap timeout (which alone would also end the wait, within `SLEEP_MAX`: a lost
    /// wake-up would go unnoticed by a latency check). Also with the reader's slot being its
    /// teardown slot, whose unlock takes the `notify` slow path for both reasons at once.
    #[test]
    fn sleeping_writer_is_woken_by_the_outermost_unlock() {
        use std::sync::{Arc, Barrier};
        use std::time::Duration;
        for teardown in [false, true] {
            let before = WOKEN_BY_READER.load(Ordering::Relaxed);
            let entered = Arc::new(Barrier::new(2));
            let e2 = Arc::clone(&entered);
            let reader = std::thread::spawn(move || {
                let hold = move || {
                    let s = read_lock();
                    e2.wait();
                    // Long against the writer's spin phase, so it is asleep by the unlock.
                    std::thread::sleep(Duration::from_millis(100));
                    // SAFETY: the section above, on this thread.
                    unsafe { read_unlock(s) };
                };
                if teardown {
                    struct Late(Option<Box<dyn FnOnce()>>);
                    impl Drop for Late {
                        fn drop(&mut self) {
                            if let Some(f) = self.0.take() {
                                f();
                            }
                        }
                    }
                    std::thread_local! {
                        static LATE: core::cell::RefCell<Late> =
                            const { core::cell::RefCell::new(Late(None)) };
                    }
                    LATE.with(|l| l.borrow_mut().0 = Some(Box::new(hold)));
                    read_lock_unlock(); // the handle is destroyed before `LATE`
                } else {
                    hold();
                }
            });
            entered.wait();
            wait(start());
            reader.join().unwrap();
            assert!(
                WOKEN_BY_READER.load(Ordering::Relaxed) > before,
                "the writer's wait ended by timeout only (teardown slot: {teardown})"
            );
        }
    }

    /// Runs `f` in a destructor of a thread-local registered before the thread's RCU handle,
    /// so it runs after the handle is gone (thread-local destructors run in reverse order).
    fn in_teardown(f: fn()) {
        struct Late(fn());
        impl Drop for Late {
            fn drop(&mut self) {
                (self.0)();
            }
        }
        std::thread_local! {
            static LATE: core::cell::Cell<Option<Late>> = const { core::cell::Cell::new(None) };
        }
        std::thread::spawn(move || {
            LATE.with(|l| l.set(Some(Late(f))));
            read_lock_unlock(); // registers the handle after `LATE`
        })
        .join()
        .unwrap();
    }

    /// Issue 9: once the handle was gone, every `read_lock` claimed a fresh registry slot for
    /// good: the registry grew by one slot per read section of each exiting thread.
    #[test]
    fn teardown_sections_reuse_one_slot_and_free_it() {
        in_teardown(|| {
            for _ in 0..50 {
                assert_eq!(read_lock_unlock(), 1);
            }
        });
        let before = slots::registered();
        for _ in 0..4 {
            in_teardown(|| {
                for _ in 0..50 {
                    let a = read_lock();
                    let b = read_lock();
                    assert!(core::ptr::eq(a, b), "teardown sections nest on one slot");
                    assert!(in_section());
                    // SAFETY: innermost first, on this thread.
                    unsafe { read_unlock(b) };
                    // SAFETY: as above.
                    unsafe { read_unlock(a) };
                }
            });
        }
        // Concurrent tests may register a few slots; 200 teardown sections must not add 200.
        assert!(
            slots::registered() < before + 20,
            "teardown sections claimed {} fresh slots",
            slots::registered() - before
        );
    }

    fn read_lock_unlock() -> u64 {
        let s = read_lock();
        let d = s.depth();
        assert_eq!(slots::current().depth(), d);
        // SAFETY: innermost open section of this thread.
        unsafe { read_unlock(s) };
        d
    }
}
