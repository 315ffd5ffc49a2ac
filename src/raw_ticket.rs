//! `RawTicketMutex`: a FIFO ticket spinlock that knows which vCPU holds each ticket.
//!
//! # Algorithm
//!
//! The ticket lock (Reed & Kanodia, "Synchronization with eventcounts and sequencers",
//! CACM 1979; as a spinlock: Mellor-Crummey & Scott, "Algorithms for scalable synchronization
//! on shared-memory multiprocessors", ACM TOCS 1991, section 2.2):
//!
//! - **acquire**: take a ticket `t = next.fetch_add(1)`; the lock is ours when `owner == t`.
//!   Uncontended this is one RMW and one load.
//! - **try_lock**: `compare_exchange(next: owner -> owner + 1)`: succeeds only if nobody holds
//!   or waits.
//! - **release**: `owner.store(owner + 1, Release)`: the lock passes to the next ticket, so
//!   every unlock is already a fair hand-off (FIFO).
//!
//! # Enlightenment: lock-holder and lock-waiter preemption
//!
//! The holder is an eCS critical section ([`cs::enter`] / [`cs::exit`]). A FIFO lock has a
//! second problem beyond lock-holder preemption: the lock is handed to the *next ticket* even
//! if that waiter's vCPU is descheduled (lock-waiter preemption), and then nobody can use it
//! until that vCPU runs again. So each acquirer records its vCPU in a ring of hint slots (32
//! in a VM, see `RING`) indexed by ticket (`ring[t % RING]`, tagged with the ticket's low bits
//! so a stale slot is recognised). A waiter with ticket `t`, while the lock serves `owner`:
//! 1. if the holder's vCPU (`ring[owner]`) is preempted, it directed-yields to it;
//! 2. otherwise, if a waiter ahead of it (tickets `owner + 1 .. t`, those still in the ring) is
//!    preempted, it directed-yields to that vCPU, so the waiter gets its pCPU back before (or
//!    as soon as) the lock reaches it; in particular once the lock has been handed to a
//!    preempted waiter, that waiter *is* `ring[owner]` and everyone behind it yields to it;
//! 3. otherwise it backs off through [`Backoff`] (exponential spinning; natively a yield to the
//!    OS past the spin limit, so waiters far from their turn do not burn the CPU).
//!
//! Waiters never halt: only directed yields to a *preempted* holder or predecessor, the damped
//! policy DESIGN.md asks for after Linux's qspinlock experience. The ring is written only when
//! the backend has live hints ([`ecs_sys::LIVE_HINTS`]): natively nothing is ever preempted and
//! the fast path stays one RMW + one load.
//!
//! # Words
//!
//! | field | bits | meaning |
//! |---|---|---|
//! | `next` | 32 | next ticket to hand out (wrapping) |
//! | `owner` | 32 | ticket being served; `owner == next` means free (wrapping) |
//! | `ring[i]` | 31..16 | low 16 bits of the ticket `t` with `t % RING == i` that wrote the slot |
//! | `ring[i]` | 15..0 | that ticket's vCPU + 1 (0 = never written) |
//!
//! Tickets wrap at 2^32: correct as long as fewer than 2^32 flows wait at once.
//!
//! # Misuse caught in debug builds
//!
//! Unlocking a mutex that is not locked (only possible through the raw API with forged guard
//! state) panics. Reentrant locking cannot be told apart from another thread's waiting and
//! deadlocks (the second ticket waits for the first).

use crate::backoff::Backoff;
use crate::cs;
use crate::sync::{AtomicU32, Ordering};
use lock_api::GuardNoSend;

/// Hint slots: how many tickets (holder + waiters) have their vCPU recorded. With live hints,
/// 32: enough for every waiter of a VM with up to 32 vCPUs to find a preempted holder or
/// predecessor (with 4 slots, 8 or more waiters mostly could not, and spun whole slices:
/// docs/BENCHMARKS.md, shim section); 128 bytes per lock. Natively the ring is never written,
/// so it shrinks to one slot.
const RING: usize = if ecs_sys::LIVE_HINTS { 32 } else { 1 };

/// A raw FIFO ticket spinlock: `next`/`owner` ticket counters plus a small ring naming the
/// vCPU of each recent ticket, so waiters can directed-yield to a preempted holder or to a
/// preempted waiter ahead of them. The protocol is documented at the top of `src/raw_ticket.rs`.
///
/// Use it through [`TicketMutex`](crate::TicketMutex). The inherent methods expose the same
/// protocol as the `lock_api` impls, for models and low-level code.
///
/// ```
/// use ecs_locks::RawTicketMutex;
///
/// let raw = RawTicketMutex::new();
/// let guard = raw.lock();
/// assert!(raw.try_lock().is_none());
/// assert_eq!(raw.queue_len(), 1);
/// // SAFETY: `guard` is the state of the acquisition above.
/// unsafe { raw.unlock(guard) };
/// assert!(!raw.is_locked());
/// ```
#[derive(Debug)]
pub struct RawTicketMutex {
    /// Next ticket to hand out.
    next: AtomicU32,
    /// Ticket now holding the lock (free when equal to `next`).
    owner: AtomicU32,
    /// vCPU hints per ticket (written only with live hints).
    ring: [AtomicU32; RING],
}

/// Ring slot value naming `vcpu` as the taker of ticket `t`.
#[inline(always)]
fn ring_entry(t: u32, vcpu: u32) -> u32 {
    (t << 16) | (vcpu.wrapping_add(1) & 0xffff)
}

impl RawTicketMutex {
    /// A new, unlocked mutex.
    #[cfg(not(loom))]
    #[inline]
    pub const fn new() -> Self {
        Self {
            next: AtomicU32::new(0),
            owner: AtomicU32::new(0),
            ring: [const { AtomicU32::new(0) }; RING],
        }
    }

    /// A new, unlocked mutex (not `const` under loom, whose atomics are not).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            next: AtomicU32::new(0),
            owner: AtomicU32::new(0),
            ring: core::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// The hint slot of ticket `t`.
    #[inline(always)]
    #[allow(clippy::modulo_one)] // RING is 1 natively
    fn slot(&self, t: u32) -> &AtomicU32 {
        &self.ring[t as usize % RING]
    }

    /// Records that the current vCPU took ticket `t` (live hints only).
    #[inline(always)]
    fn record(&self, t: u32) {
        if ecs_sys::LIVE_HINTS {
            self.slot(t)
                .store(ring_entry(t, cs::vcpu_id()), Ordering::Relaxed);
        }
    }

    /// The vCPU that took ticket `t`, if its ring slot still names it.
    #[inline]
    fn vcpu_of(&self, t: u32) -> Option<u32> {
        let e = self.slot(t).load(Ordering::Relaxed);
        ((e >> 16) == (t & 0xffff) && (e & 0xffff) != 0).then(|| (e & 0xffff) - 1)
    }

    /// Acquires the mutex: takes a ticket and waits for its turn (FIFO).
    #[inline]
    pub fn lock(&self) -> GuardNoSend {
        let t = self.next.fetch_add(1, Ordering::Relaxed);
        self.record(t);
        if self.owner.load(Ordering::Acquire) != t {
            self.lock_contended(t);
        }
        cs::enter();
        GuardNoSend::new()
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self, t: u32) {
        let mut backoff = Backoff::new();
        loop {
            let owner = self.owner.load(Ordering::Acquire);
            if owner == t {
                return;
            }
            backoff.snooze(self.yield_target(owner, t));
        }
    }

    /// Whom a waiter with ticket `t` should yield to while `owner` is served: the holder, or a
    /// preempted waiter ahead of `t` (see the module docs). `None` without live hints.
    #[inline]
    fn yield_target(&self, owner: u32, t: u32) -> Option<u32> {
        if !ecs_sys::LIVE_HINTS {
            return None;
        }
        let holder = self.vcpu_of(owner);
        if holder.is_some_and(cs::preempted) {
            return holder;
        }
        // Waiters ahead of us whose slots are still in the ring, nearest to the lock first.
        let ahead = t.wrapping_sub(owner).min(RING as u32);
        for d in 1..ahead {
            let v = self.vcpu_of(owner.wrapping_add(d));
            if v.is_some_and(cs::preempted) {
                return v;
            }
        }
        holder
    }

    /// Acquires the mutex if nobody holds or waits for it.
    #[inline]
    pub fn try_lock(&self) -> Option<GuardNoSend> {
        let owner = self.owner.load(Ordering::Acquire);
        self.next
            .compare_exchange(
                owner,
                owner.wrapping_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| {
                self.record(owner);
                cs::enter();
                GuardNoSend::new()
            })
    }

    /// Releases the mutex to the next ticket.
    ///
    /// # Safety
    ///
    /// The mutex must be held in the current context, and `guard` must be the state returned
    /// by the [`lock`](Self::lock) or [`try_lock`](Self::try_lock) that acquired it.
    #[inline]
    pub unsafe fn unlock(&self, guard: GuardNoSend) {
        let _ = guard;
        // Only the holder writes `owner`.
        let owner = self.owner.load(Ordering::Relaxed);
        if cfg!(debug_assertions) {
            assert!(
                self.next.load(Ordering::Relaxed) != owner,
                "RawTicketMutex::unlock called on an unlocked mutex (forged or reused guard state)"
            );
        }
        self.owner.store(owner.wrapping_add(1), Ordering::Release);
        cs::exit();
    }

    /// Whether the mutex is held (a momentary snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.queue_len() != 0
    }

    /// Holder plus waiters (a momentary snapshot).
    #[inline]
    pub fn queue_len(&self) -> u32 {
        let owner = self.owner.load(Ordering::Relaxed);
        self.next.load(Ordering::Relaxed).wrapping_sub(owner)
    }

    /// Whether flows other than the holder wait (a momentary snapshot; call while holding).
    #[inline]
    pub fn has_waiters(&self) -> bool {
        self.queue_len() > 1
    }
}

impl Default for RawTicketMutex {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: a flow holds the lock exactly while `owner` equals its ticket; tickets are unique
// (`fetch_add`, or the `try_lock` CAS on `next`), and `owner` advances only in `unlock`
// (`Release`), read with `Acquire` by the next holder. The debug check in `unlock` fires only
// when the mutex was not held (nothing to release). The state is `GuardNoSend`: the
// critical-section depth entered on acquisition belongs to this thread.
unsafe impl lock_api::RawMutex for RawTicketMutex {
    #[cfg(not(loom))]
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self::new();
    #[cfg(loom)]
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = panic!("loom atomics are not const: build with RawTicketMutex::new()");

    type Guard = GuardNoSend;

    #[inline]
    fn lock(&self) -> GuardNoSend {
        RawTicketMutex::lock(self)
    }

    #[inline]
    fn try_lock(&self) -> Option<GuardNoSend> {
        RawTicketMutex::try_lock(self)
    }

    #[inline]
    unsafe fn unlock(&self, guard: GuardNoSend) {
        // SAFETY: forwarded caller contract.
        unsafe { RawTicketMutex::unlock(self, guard) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        RawTicketMutex::is_locked(self)
    }
}

// SAFETY: every unlock hands the lock to the next ticket in FIFO order, which is the fair
// protocol; `bump` re-queues behind the current waiters only when there are some, restoring
// valid state (or aborting) as the trait requires.
unsafe impl lock_api::RawMutexFair for RawTicketMutex {
    #[inline]
    unsafe fn unlock_fair(&self, guard: GuardNoSend) {
        // SAFETY: forwarded caller contract.
        unsafe { RawTicketMutex::unlock(self, guard) }
    }

    #[inline]
    unsafe fn bump(&self, guard: &mut GuardNoSend) {
        if self.has_waiters() {
            crate::sync::abort_on_panic(|| {
                // SAFETY: the caller holds the lock with `guard`; it is re-acquired before
                // returning, and `GuardNoSend` carries no state to restore.
                unsafe { RawTicketMutex::unlock(self, GuardNoSend::new()) };
                *guard = RawTicketMutex::lock(self);
            });
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn tickets_and_queue_len() {
        let raw = RawTicketMutex::new();
        assert_eq!(raw.queue_len(), 0);
        let g = raw.lock();
        assert_eq!(raw.queue_len(), 1);
        assert!(!raw.has_waiters());
        assert!(raw.try_lock().is_none());
        assert_eq!(raw.queue_len(), 1, "a failed try_lock takes no ticket");
        // SAFETY: `g` is the state of the acquisition above.
        unsafe { raw.unlock(g) };
        assert_eq!(raw.queue_len(), 0);
    }

    #[test]
    fn tickets_wrap() {
        let raw = RawTicketMutex::new();
        raw.next.store(u32::MAX, Ordering::Relaxed);
        raw.owner.store(u32::MAX, Ordering::Relaxed);
        for _ in 0..3 {
            let g = raw.try_lock().expect("free");
            assert!(raw.is_locked());
            // SAFETY: `g` is the state of the acquisition above.
            unsafe { raw.unlock(g) };
            let g = raw.lock();
            // SAFETY: as above.
            unsafe { raw.unlock(g) };
            assert!(!raw.is_locked());
        }
    }

    #[test]
    fn ring_entries_are_tagged() {
        let raw = RawTicketMutex::new();
        assert_eq!(raw.vcpu_of(2), None, "never written");
        raw.slot(5).store(ring_entry(5, 7), Ordering::Relaxed);
        assert_eq!(raw.vcpu_of(5), Some(7));
        // Tickets sharing ticket 5's slot see a tag that is not theirs.
        assert_eq!(raw.vcpu_of(5 + RING as u32), None, "stale tag");
        assert_eq!(raw.vcpu_of(5 + 2 * RING as u32), None, "stale tag");
        assert_eq!(raw.yield_target(0, 1), None, "no live hints natively");
    }

    #[test]
    fn holder_is_a_critical_section() {
        let raw = RawTicketMutex::new();
        let before = ecs_sys::cs_depth();
        let g = raw.lock();
        assert_eq!(ecs_sys::cs_depth(), before + 1);
        // SAFETY: `g` is the state of the acquisition above.
        unsafe { raw.unlock(g) };
        assert_eq!(ecs_sys::cs_depth(), before);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "unlocked mutex")]
    fn debug_unlock_of_unlocked_panics() {
        let raw = RawTicketMutex::new();
        // SAFETY: deliberately violated to check the debug diagnostic; nothing is held.
        unsafe { raw.unlock(GuardNoSend::new()) };
    }
}
