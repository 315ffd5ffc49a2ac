//! The portable parking lot: hashed buckets of intrusive waiter lists. Used under loom and
//! without `std` (see the module docs); a port of parking_lot_core's queue operations without
//! its rehashing and thread-local data (records live on the waiter's stack).

use super::Instant;
use crate::sync::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use core::cell::Cell;
use core::ptr;
use crossbeam_utils::CachePadded;

/// Result of [`park`].
#[derive(Copy, Clone, Eq, PartialEq, Debug)]
pub(crate) enum ParkResult {
    /// Unparked by another thread with the given token.
    Unparked(UnparkToken),
    /// `validate` returned false.
    Invalid,
    /// The timeout expired.
    #[cfg_attr(
        not(feature = "std"),
        allow(dead_code, reason = "timed parks exist only with std")
    )]
    TimedOut,
}

impl ParkResult {
    /// Whether another thread unparked us.
    #[inline]
    pub(crate) const fn is_unparked(self) -> bool {
        matches!(self, ParkResult::Unparked(_))
    }
}

/// Result of an unpark operation (parking_lot_core's fields).
#[derive(Copy, Clone, Default, Eq, PartialEq, Debug)]
pub(crate) struct UnparkResult {
    /// Threads unparked.
    pub(crate) unparked_threads: usize,
    /// Threads moved to another key.
    pub(crate) requeued_threads: usize,
    /// Whether threads remain parked on the original key.
    pub(crate) have_more_threads: bool,
}

/// What [`unpark_requeue`] does.
#[derive(Copy, Clone, Eq, PartialEq, Debug)]
pub(crate) enum RequeueOp {
    /// Nothing.
    Abort,
    /// Unpark one, requeue the rest.
    UnparkOneRequeueRest,
    /// Requeue all.
    RequeueAll,
    /// Unpark one, leave the rest.
    UnparkOne,
    /// Requeue one, leave the rest.
    RequeueOne,
}

/// What [`unpark_filter`] does with one waiter.
#[derive(Copy, Clone, Eq, PartialEq, Debug)]
pub(crate) enum FilterOp {
    /// Unpark it and go on.
    Unpark,
    /// Leave it and go on.
    Skip,
    /// Leave it and stop.
    Stop,
}

/// Value passed from an unparker to the waiter.
#[derive(Copy, Clone, Eq, PartialEq, Debug)]
pub(crate) struct UnparkToken(pub(crate) usize);

/// Value a waiter parks with, seen by [`unpark_filter`].
#[derive(Copy, Clone, Eq, PartialEq, Debug)]
pub(crate) struct ParkToken(pub(crate) usize);

/// Default unpark token.
pub(crate) const DEFAULT_UNPARK_TOKEN: UnparkToken = UnparkToken(0);
/// Default park token.
pub(crate) const DEFAULT_PARK_TOKEN: ParkToken = ParkToken(0);

/// One parked waiter, on its own stack. Every `Cell` is touched only under its bucket's
/// lock, or, once an unparker has unlinked the record under that lock, by that unparker
/// alone until it publishes `woken`: the hand-off to the waiter, published last.
struct Waiter {
    /// The key, changed only under the lock of the bucket the record is in (requeue).
    key: AtomicUsize,
    next: Cell<*const Waiter>,
    park_token: Cell<ParkToken>,
    unpark_token: Cell<UnparkToken>,
    woken: AtomicBool,
    /// The vCPU to kick (guest).
    #[cfg(not(loom))]
    vcpu: u32,
    /// Under loom, the waiting thread's "vCPU": its pending-kick flag (see [`vcpu_model`]).
    #[cfg(loom)]
    vcpu: crate::park::vcpu_model::Vcpu,
}

/// A bucket: a lock and the FIFO list of its waiters.
struct Bucket {
    /// 0 when free, else the holder's vCPU id + 1 (for the waiters' directed yield).
    locked: AtomicU32,
    head: Cell<*const Waiter>,
    tail: Cell<*const Waiter>,
}

// SAFETY: `head`/`tail` (and the records they point to) are only accessed with the bucket
// lock held, which serializes all threads.
unsafe impl Sync for Bucket {}
// SAFETY: as above; the raw pointers are only dereferenced under the lock.
unsafe impl Send for Bucket {}

/// Held bucket lock.
struct BucketGuard<'a> {
    bucket: &'a Bucket,
}

impl Bucket {
    crate::sync::loom_const_fn! {
        fn new() -> Self {
            Self {
                locked: AtomicU32::new(0),
                head: Cell::new(ptr::null()),
                tail: Cell::new(ptr::null()),
            }
        }
    }

    /// Takes the bucket lock: a test-and-test-and-set spinlock whose holder is an
    /// enlightened critical section (held for a few list operations only) and names its
    /// vCPU, so a waiter yields to that vCPU when it is preempted. Under loom the same code
    /// runs on loom atomics (each spin is a loom yield).
    fn lock(&self) -> BucketGuard<'_> {
        let me = crate::cs::my_holder_tag();
        #[cfg(not(loom))]
        let mut backoff = crate::backoff::Backoff::new();
        while self
            .locked
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            loop {
                let holder = self.locked.load(Ordering::Relaxed);
                if holder == 0 {
                    break;
                }
                // Under loom one yield per look (the backoff's growing spin counts, each
                // spin a loom yield, only multiply the schedules to explore).
                #[cfg(loom)]
                crate::sync::spin_loop();
                #[cfg(not(loom))]
                backoff.snooze(Some(holder - 1));
            }
        }
        crate::cs::enter();
        BucketGuard { bucket: self }
    }

    /// Appends `w` to the queue. Caller holds the lock.
    fn push(&self, w: &Waiter) {
        w.next.set(ptr::null());
        let tail = self.tail.get();
        if tail.is_null() {
            self.head.set(w);
        } else {
            // SAFETY: records in the list stay valid until unlinked (their waiter is
            // blocked until woken), and we hold the bucket lock.
            unsafe { (*tail).next.set(w) };
        }
        self.tail.set(w);
    }

    /// Unlinks `cur` (whose predecessor is `prev`, null for the head). Caller holds the lock.
    ///
    /// # Safety
    /// `cur` is in this bucket's list after `prev`; the caller holds the bucket lock.
    unsafe fn unlink(&self, prev: *const Waiter, cur: *const Waiter) {
        // SAFETY: by the contract `cur` (and `prev` if non-null) are live listed records.
        let next = unsafe { (*cur).next.get() };
        if prev.is_null() {
            self.head.set(next);
        } else {
            // SAFETY: as above.
            unsafe { (*prev).next.set(next) };
        }
        if self.tail.get() == cur {
            self.tail.set(prev);
        }
    }

    /// Whether a record with `key` follows `from` (inclusive). Caller holds the lock.
    ///
    /// # Safety
    /// `from` is null or a listed record; the caller holds the bucket lock.
    unsafe fn any_with_key(&self, mut from: *const Waiter, key: usize) -> bool {
        while !from.is_null() {
            // SAFETY: listed records are live while the lock is held.
            let w = unsafe { &*from };
            if w.key.load(Ordering::Relaxed) == key {
                return true;
            }
            from = w.next.get();
        }
        false
    }
}

/// Hands `token` to the unlinked waiter `w` and wakes it. Called after the bucket lock is
/// released (issue 9: a KICK is a VM exit, and the bucket lock is a spinlock other vCPUs may
/// be waiting for), so the record is the unparker's alone from its unlinking until the
/// `woken` store; after that store the record may be gone: nothing touches it afterwards.
///
/// # Safety
/// `w` was unlinked from its bucket by the caller, under the bucket lock, and not woken yet.
unsafe fn wake(w: *const Waiter, token: UnparkToken) {
    // SAFETY: the waiter blocks until `woken` (a timed-out waiter that finds itself unlinked
    // waits for it too, see `finish_timed_park`), so its record is live until the store.
    let w = unsafe { &*w };
    w.unpark_token.set(token);
    #[allow(clippy::clone_on_copy)] // a `u32` natively, an `Arc` under loom
    let vcpu = w.vcpu.clone();
    w.woken.store(true, Ordering::Release);
    #[cfg(all(not(loom), ecs_guest))]
    ecs_sys::kick(vcpu);
    #[cfg(all(not(loom), not(ecs_guest)))]
    let _ = vcpu;
    #[cfg(loom)]
    crate::park::vcpu_model::kick(&vcpu);
}

/// Waiters an unparker has unlinked, chained through their `next` until it wakes them.
struct Chain {
    head: *const Waiter,
    tail: *const Waiter,
}

impl Chain {
    fn new() -> Self {
        Self {
            head: ptr::null(),
            tail: ptr::null(),
        }
    }

    /// Appends `w`.
    ///
    /// # Safety
    /// `w` was just unlinked from its bucket under the lock and is not woken.
    unsafe fn push(&mut self, w: *const Waiter) {
        // SAFETY: by the contract the record is live and ours (its waiter waits for `woken`).
        unsafe { (*w).next.set(ptr::null()) };
        if self.tail.is_null() {
            self.head = w;
        } else {
            // SAFETY: chained records are unlinked but not woken: live and ours.
            unsafe { (*self.tail).next.set(w) };
        }
        self.tail = w;
    }

    /// Wakes every chained waiter with `token`, in order.
    ///
    /// # Safety
    /// Every chained record is still unwoken (call once, after the bucket lock is released).
    unsafe fn wake_all(self, token: UnparkToken) {
        let mut cur = self.head;
        while !cur.is_null() {
            // SAFETY: live until woken; read `next` before waking.
            let next = unsafe { (*cur).next.get() };
            // SAFETY: unlinked under the lock, not woken yet (contract).
            unsafe { wake(cur, token) };
            cur = next;
        }
    }
}

impl Drop for BucketGuard<'_> {
    fn drop(&mut self) {
        self.bucket.locked.store(0, Ordering::Release);
        crate::cs::exit();
    }
}

/// Number of buckets: one under loom (fewer objects to model; keys still compared), 64
/// otherwise (a guest has at most a few hundred vCPUs, each parked on one key at a time).
#[cfg(loom)]
const BUCKETS: usize = 1;
#[cfg(not(loom))]
const BUCKETS: usize = 64;

#[cfg(not(loom))]
static TABLE: [CachePadded<Bucket>; BUCKETS] = [const { CachePadded::new(Bucket::new()) }; BUCKETS];

#[cfg(loom)]
loom::lazy_static! {
    static ref TABLE: [CachePadded<Bucket>; BUCKETS] = [CachePadded::new(Bucket::new())];
}

/// Bucket index of `key` (Fibonacci hashing, as parking_lot_core): the top 6 bits.
#[cfg(not(loom))]
#[inline]
fn index(key: usize) -> usize {
    const _: () = assert!(BUCKETS == 1 << 6);
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> (usize::BITS - 6)
}

/// Bucket index of `key`: the only bucket under loom.
#[cfg(loom)]
#[inline]
fn index(_key: usize) -> usize {
    0
}

/// Bucket index, for tests that need keys in distinct buckets.
#[cfg(test)]
pub(crate) fn index_for_tests(key: usize) -> usize {
    index(key)
}

#[inline]
fn bucket(key: usize) -> &'static Bucket {
    &TABLE[index(key)]
}

/// Parks the caller on `key`; parking_lot_core's `park` contract.
///
/// # Safety
/// `key` is an address the caller controls. `validate` and `timed_out` run under the
/// bucket lock and must not unwind or call into this module; `before_sleep` may unpark but
/// not park, and must not unwind.
pub(crate) unsafe fn park(
    key: usize,
    validate: impl FnOnce() -> bool,
    before_sleep: impl FnOnce(),
    timed_out: impl FnOnce(usize, bool),
    park_token: ParkToken,
    timeout: Option<Instant>,
) -> ParkResult {
    let waiter = Waiter {
        key: AtomicUsize::new(key),
        next: Cell::new(ptr::null()),
        park_token: Cell::new(park_token),
        unpark_token: Cell::new(DEFAULT_UNPARK_TOKEN),
        woken: AtomicBool::new(false),
        #[cfg(not(loom))]
        vcpu: crate::cs::vcpu_id(),
        #[cfg(loom)]
        vcpu: crate::park::vcpu_model::current(),
    };
    {
        let b = bucket(key);
        let _g = b.lock();
        if !validate() {
            return ParkResult::Invalid;
        }
        b.push(&waiter);
    }
    before_sleep();

    if let Some(deadline) = timeout {
        #[cfg(not(feature = "std"))]
        match deadline {}
        // Natively (test builds) wait for a wake-up or the deadline; loom has no clock,
        // so there the deadline counts as passed at once (see the module docs).
        #[cfg(all(feature = "std", not(loom)))]
        {
            let mut backoff = crate::backoff::Backoff::new();
            while !waiter.woken.load(Ordering::Acquire) && Instant::now() < deadline {
                backoff.snooze(None);
            }
        }
        #[cfg(loom)]
        let _ = deadline;
        #[cfg(feature = "std")]
        {
            // SAFETY: `waiter` was pushed above and lives until we return.
            return unsafe { finish_timed_park(&waiter, timed_out) };
        }
    }

    let _ = timed_out;
    #[cfg(all(not(loom), not(ecs_guest)))]
    let mut backoff = crate::backoff::Backoff::new();
    while !waiter.woken.load(Ordering::Acquire) {
        // A stale kick makes WAIT return early: loop and re-check.
        #[cfg(all(not(loom), ecs_guest))]
        ecs_sys::wait();
        #[cfg(all(not(loom), not(ecs_guest)))]
        backoff.snooze(None);
        #[cfg(loom)]
        crate::park::vcpu_model::wait();
    }
    ParkResult::Unparked(waiter.unpark_token.get())
}

/// The end of a timed park whose deadline passed: under the lock of the bucket the waiter
/// is in now (a requeue may have moved it), either it was woken after all, or it leaves
/// the queue and reports through `timed_out`.
///
/// # Safety
/// `waiter` was queued by `park` on this thread and is still live.
#[cfg(feature = "std")]
unsafe fn finish_timed_park(waiter: &Waiter, timed_out: impl FnOnce(usize, bool)) -> ParkResult {
    let (b, g) = loop {
        let key = waiter.key.load(Ordering::Relaxed);
        let b = bucket(key);
        let g = b.lock();
        // The key only changes under the lock of the bucket the waiter is in.
        if waiter.key.load(Ordering::Relaxed) == key {
            break (b, g);
        }
    };
    if waiter.woken.load(Ordering::Acquire) {
        return ParkResult::Unparked(waiter.unpark_token.get());
    }
    let me: *const Waiter = waiter;
    let mut prev = ptr::null();
    let mut cur = b.head.get();
    while cur != me {
        if cur.is_null() {
            // Not listed and not woken: an unparker has unlinked us and wakes us right after
            // releasing the bucket lock. The record must stay until then.
            drop(g);
            while !waiter.woken.load(Ordering::Acquire) {
                crate::sync::spin_loop();
            }
            return ParkResult::Unparked(waiter.unpark_token.get());
        }
        prev = cur;
        // SAFETY: listed records are live under the lock.
        cur = unsafe { (*cur).next.get() };
    }
    let key = waiter.key.load(Ordering::Relaxed);
    // SAFETY: we hold the bucket lock.
    let more = unsafe { others_with_key(b, me, key) };
    // SAFETY: `me` is listed after `prev`; we hold the lock.
    unsafe { b.unlink(prev, me) };
    timed_out(key, !more);
    drop(g);
    ParkResult::TimedOut
}

/// Whether a record other than `me` has `key`.
///
/// # Safety
/// The caller holds `b`'s lock.
#[cfg(feature = "std")]
unsafe fn others_with_key(b: &Bucket, me: *const Waiter, key: usize) -> bool {
    let mut cur = b.head.get();
    while !cur.is_null() {
        // SAFETY: listed records are live under the lock.
        let w = unsafe { &*cur };
        if cur != me && w.key.load(Ordering::Relaxed) == key {
            return true;
        }
        cur = w.next.get();
    }
    false
}

/// Loom-only test hook: the portable queue's `park`/`unpark_one`/`unpark_all` with plain
/// arguments, so `loom-tests/tests/park.rs` can model the queue directly. Not an API.
#[cfg(loom)]
pub mod loom_hook {
    use super::{DEFAULT_PARK_TOKEN, ParkResult, UnparkToken};

    /// Parks on `key` unless `validate` (run under the bucket lock, must not unwind or
    /// call into the queue) returns `false`: `Some(token)` when unparked, `None` when
    /// `validate` refused.
    pub fn park(key: usize, validate: impl FnOnce() -> bool) -> Option<usize> {
        // SAFETY: no callback touches the queue or unwinds (the caller's `validate` is
        // required not to); `key` is only a number to the queue.
        match unsafe { super::park(key, validate, || {}, |_, _| {}, DEFAULT_PARK_TOKEN, None) } {
            ParkResult::Unparked(t) => Some(t.0),
            ParkResult::Invalid => None,
            ParkResult::TimedOut => unreachable!("no deadline"),
        }
    }

    /// Parks on `key` with a deadline that has already passed (loom has no clock, so a timed
    /// park that was not woken times out at once): `Some(token)` when an unparker claimed
    /// it first, `None` when it timed out.
    pub fn park_timed(key: usize) -> Option<usize> {
        let deadline = std::time::Instant::now();
        // SAFETY: no callback touches the queue or unwinds; `key` is only a number here.
        match unsafe {
            super::park(
                key,
                || true,
                || {},
                |_, _| {},
                DEFAULT_PARK_TOKEN,
                Some(deadline),
            )
        } {
            ParkResult::Unparked(t) => Some(t.0),
            ParkResult::TimedOut => None,
            ParkResult::Invalid => unreachable!("validate is true"),
        }
    }

    /// Unparks the first waiter on `key` with `token`; whether there was one.
    pub fn unpark_one(key: usize, token: usize) -> bool {
        // SAFETY: the callback does not touch the queue or unwind.
        unsafe { super::unpark_one(key, |_| UnparkToken(token)) }.unparked_threads == 1
    }

    /// Unparks every waiter on `key` with `token`; how many.
    pub fn unpark_all(key: usize, token: usize) -> usize {
        // SAFETY: `key` is only a number to the queue.
        unsafe { super::unpark_all(key, UnparkToken(token)) }
    }
}

/// Unparks the first waiter on `key`; parking_lot_core's `unpark_one` contract.
///
/// # Safety
/// `key` is an address the caller controls; `callback` runs under the bucket lock and must
/// not unwind or call into this module.
pub(crate) unsafe fn unpark_one(
    key: usize,
    callback: impl FnOnce(UnparkResult) -> UnparkToken,
) -> UnparkResult {
    let b = bucket(key);
    let g = b.lock();
    let mut result = UnparkResult::default();
    let mut prev = ptr::null();
    let mut cur = b.head.get();
    while !cur.is_null() {
        // SAFETY: listed records are live under the lock.
        let w = unsafe { &*cur };
        let next = w.next.get();
        if w.key.load(Ordering::Relaxed) == key {
            // SAFETY: `cur` is listed after `prev`; we hold the lock.
            unsafe { b.unlink(prev, cur) };
            // SAFETY: as above, `next` is null or listed.
            result.have_more_threads = unsafe { b.any_with_key(next, key) };
            result.unparked_threads = 1;
            let token = callback(result);
            drop(g);
            // SAFETY: just unlinked under the lock, not woken yet.
            unsafe { wake(cur, token) };
            return result;
        }
        prev = cur;
        cur = next;
    }
    callback(result);
    result
}

/// Unparks every waiter on `key`; returns how many.
///
/// # Safety
/// `key` is an address the caller controls.
pub(crate) unsafe fn unpark_all(key: usize, token: UnparkToken) -> usize {
    let b = bucket(key);
    let g = b.lock();
    let mut n = 0;
    // Unlinked waiters, woken after the lock is released.
    let mut chosen = Chain::new();
    let mut prev = ptr::null();
    let mut cur = b.head.get();
    while !cur.is_null() {
        // SAFETY: listed records are live under the lock.
        let next = unsafe { (*cur).next.get() };
        // SAFETY: as above.
        if unsafe { (*cur).key.load(Ordering::Relaxed) } == key {
            // SAFETY: `cur` is listed after `prev`; we hold the lock.
            unsafe { b.unlink(prev, cur) };
            // SAFETY: just unlinked, not woken: ours.
            unsafe { chosen.push(cur) };
            n += 1;
        } else {
            prev = cur;
        }
        cur = next;
    }
    drop(g);
    // SAFETY: every chained record was unlinked under the lock and not woken.
    unsafe { chosen.wake_all(token) };
    n
}

/// Unparks waiters on `key` chosen by `filter`; parking_lot_core's `unpark_filter`.
///
/// # Safety
/// `key` is an address the caller controls; `filter` and `callback` run under the bucket
/// lock and must not unwind or call into this module.
pub(crate) unsafe fn unpark_filter(
    key: usize,
    mut filter: impl FnMut(ParkToken) -> FilterOp,
    callback: impl FnOnce(UnparkResult) -> UnparkToken,
) -> UnparkResult {
    let b = bucket(key);
    let g = b.lock();
    let mut result = UnparkResult::default();
    // Unlinked waiters, woken after the lock is released.
    let mut chosen = Chain::new();
    let mut prev = ptr::null();
    let mut cur = b.head.get();
    while !cur.is_null() {
        // SAFETY: listed records are live under the lock.
        let w = unsafe { &*cur };
        let next = w.next.get();
        if w.key.load(Ordering::Relaxed) == key {
            match filter(w.park_token.get()) {
                FilterOp::Unpark => {
                    // SAFETY: `cur` is listed after `prev`; we hold the lock.
                    unsafe { b.unlink(prev, cur) };
                    // SAFETY: just unlinked, not woken: ours.
                    unsafe { chosen.push(cur) };
                    result.unparked_threads += 1;
                    cur = next;
                    continue;
                }
                FilterOp::Skip => result.have_more_threads = true,
                FilterOp::Stop => {
                    result.have_more_threads = true;
                    break;
                }
            }
        }
        prev = cur;
        cur = next;
    }
    let token = callback(result);
    drop(g);
    // SAFETY: every chained record was unlinked under the lock and not woken.
    unsafe { chosen.wake_all(token) };
    result
}

/// Moves waiters from `key_from` to `key_to`, maybe unparking one; parking_lot_core's
/// `unpark_requeue` contract.
///
/// # Safety
/// Both keys are addresses the caller controls; `validate` and `callback` run under the
/// bucket locks and must not unwind or call into this module.
pub(crate) unsafe fn unpark_requeue(
    key_from: usize,
    key_to: usize,
    validate: impl FnOnce() -> RequeueOp,
    callback: impl FnOnce(RequeueOp, UnparkResult) -> UnparkToken,
) -> UnparkResult {
    let (i, j) = (index(key_from), index(key_to));
    let from = &TABLE[i];
    let to = &TABLE[j];
    // Lock in index order so two requeues cannot deadlock.
    let (g_from, _g_to) = if i == j {
        (from.lock(), None)
    } else if i < j {
        let gf = from.lock();
        (gf, Some(to.lock()))
    } else {
        let gt = to.lock();
        (from.lock(), Some(gt))
    };
    let mut result = UnparkResult::default();
    let op = validate();
    if op == RequeueOp::Abort {
        return result;
    }
    let mut wakeup: *const Waiter = ptr::null();
    let mut prev = ptr::null();
    let mut cur = from.head.get();
    while !cur.is_null() {
        // SAFETY: listed records are live under the lock.
        let w = unsafe { &*cur };
        let next = w.next.get();
        if w.key.load(Ordering::Relaxed) == key_from {
            // SAFETY: `cur` is listed after `prev`; we hold the lock.
            unsafe { from.unlink(prev, cur) };
            if matches!(op, RequeueOp::UnparkOneRequeueRest | RequeueOp::UnparkOne)
                && wakeup.is_null()
            {
                wakeup = cur;
                result.unparked_threads = 1;
            } else {
                w.key.store(key_to, Ordering::Relaxed);
                to.push(w);
                result.requeued_threads += 1;
            }
            if matches!(op, RequeueOp::UnparkOne | RequeueOp::RequeueOne) {
                // SAFETY: `next` is null or listed; we hold the lock.
                result.have_more_threads = unsafe { from.any_with_key(next, key_from) };
                break;
            }
            cur = next;
            continue;
        }
        prev = cur;
        cur = next;
    }
    let token = callback(op, result);
    drop(_g_to);
    drop(g_from);
    if !wakeup.is_null() {
        // SAFETY: unlinked under the `from` lock and not woken yet.
        unsafe { wake(wakeup, token) };
    }
    result
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{FilterOp, ParkResult, ParkToken, RequeueOp, UnparkToken};
    use crate::sync::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    /// Parks `n` threads on `key` with park tokens 0..n and waits until all are queued.
    fn park_threads(
        key: usize,
        n: usize,
    ) -> (Arc<AtomicUsize>, Vec<thread::JoinHandle<ParkResult>>) {
        let queued = Arc::new(AtomicUsize::new(0));
        let hs = (0..n)
            .map(|i| {
                let q = queued.clone();
                thread::spawn(move || {
                    // SAFETY: test keys are private to this test; the callbacks only touch an
                    // atomic counter.
                    unsafe {
                        super::park(
                            key,
                            || true,
                            || {
                                q.fetch_add(1, Ordering::SeqCst);
                            },
                            |_, _| {},
                            ParkToken(i),
                            None,
                        )
                    }
                })
            })
            .collect();
        while queued.load(Ordering::SeqCst) < n {
            thread::yield_now();
        }
        (queued, hs)
    }

    #[test]
    fn queue_unpark_one_in_fifo_order_with_tokens() {
        let key = 0x1000;
        let (_q, hs) = park_threads(key, 1);
        let (_q2, hs2) = park_threads(key, 1);
        let mut seen = Vec::new();
        for expect_more in [true, false] {
            // SAFETY: private key; the callback only records.
            let r = unsafe {
                super::unpark_one(key, |r| {
                    seen.push(r.have_more_threads);
                    UnparkToken(7)
                })
            };
            assert_eq!(r.unparked_threads, 1);
            assert_eq!(r.have_more_threads, expect_more);
        }
        assert_eq!(seen, [true, false]);
        for h in hs.into_iter().chain(hs2) {
            assert_eq!(h.join().unwrap(), ParkResult::Unparked(UnparkToken(7)));
        }
        // SAFETY: private key.
        let r = unsafe { super::unpark_one(key, |_| UnparkToken(0)) };
        assert_eq!(r.unparked_threads, 0);
    }

    #[test]
    fn queue_validate_false_is_invalid() {
        // SAFETY: private key; callbacks do nothing.
        let r = unsafe { super::park(0x2000, || false, || {}, |_, _| {}, ParkToken(0), None) };
        assert_eq!(r, ParkResult::Invalid);
    }

    #[test]
    fn queue_unpark_all_and_filter() {
        let key = 0x3000;
        let (_q, hs) = park_threads(key, 4);
        // Unpark the even tokens only.
        // SAFETY: private key; the filter only reads tokens.
        let r = unsafe {
            super::unpark_filter(
                key,
                |ParkToken(t)| {
                    if t % 2 == 0 {
                        FilterOp::Unpark
                    } else {
                        FilterOp::Skip
                    }
                },
                |r| {
                    assert_eq!(r.unparked_threads, 2);
                    UnparkToken(1)
                },
            )
        };
        assert_eq!(r.unparked_threads, 2);
        assert!(r.have_more_threads);
        // SAFETY: private key.
        assert_eq!(unsafe { super::unpark_all(key, UnparkToken(2)) }, 2);
        let mut tokens: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        tokens.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            tokens,
            [
                ParkResult::Unparked(UnparkToken(1)),
                ParkResult::Unparked(UnparkToken(1)),
                ParkResult::Unparked(UnparkToken(2)),
                ParkResult::Unparked(UnparkToken(2)),
            ]
        );
    }

    #[test]
    fn queue_requeue_across_buckets() {
        // Find two keys in different buckets.
        let from = 0x4000;
        let to = (1..)
            .map(|i| from + 8 * i)
            .find(|k| super::index_for_tests(*k) != super::index_for_tests(from))
            .unwrap();
        let (_q, hs) = park_threads(from, 3);
        // SAFETY: private keys; callbacks only check counts.
        let r = unsafe {
            super::unpark_requeue(
                from,
                to,
                || RequeueOp::UnparkOneRequeueRest,
                |op, r| {
                    assert_eq!(op, RequeueOp::UnparkOneRequeueRest);
                    assert_eq!((r.unparked_threads, r.requeued_threads), (1, 2));
                    UnparkToken(3)
                },
            )
        };
        assert_eq!((r.unparked_threads, r.requeued_threads), (1, 2));
        // Nobody is left on `from`; both requeued threads are on `to`.
        // SAFETY: private keys.
        assert_eq!(unsafe { super::unpark_all(from, UnparkToken(0)) }, 0);
        // SAFETY: private keys.
        assert_eq!(unsafe { super::unpark_all(to, UnparkToken(4)) }, 2);
        let mut results: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        results.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            results,
            [
                ParkResult::Unparked(UnparkToken(3)),
                ParkResult::Unparked(UnparkToken(4)),
                ParkResult::Unparked(UnparkToken(4)),
            ]
        );
    }

    #[test]
    fn queue_timed_park_reports_last_and_requeued_key() {
        let key = 0x5000;
        let mut report = None;
        let deadline = std::time::Instant::now() + Duration::from_millis(5);
        // SAFETY: private key; `timed_out` only records.
        let r = unsafe {
            super::park(
                key,
                || true,
                || {},
                |k, last| report = Some((k, last)),
                ParkToken(0),
                Some(deadline),
            )
        };
        assert_eq!(r, ParkResult::TimedOut);
        assert!(
            std::time::Instant::now() >= deadline,
            "never before the deadline"
        );
        assert_eq!(report, Some((key, true)));
        // SAFETY: private key.
        let left = unsafe { super::unpark_all(key, UnparkToken(0)) };
        assert_eq!(left, 0, "it left the queue");
    }
}
