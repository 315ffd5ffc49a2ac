//! `RawTicketMutex`: a FIFO ticket spinlock that stops handing the lock to waiters that do not
//! run (a preemptable ticket lock), and knows which vCPU holds each ticket.
//!
//! # Algorithm
//!
//! The ticket lock (Reed & Kanodia, "Synchronization with eventcounts and sequencers",
//! CACM 1979; as a spinlock: Mellor-Crummey & Scott, ACM TOCS 1991, section 2.2) serves tickets
//! in the order they were taken. Its weakness is *lock-waiter preemption*: each unlock hands the
//! lock to the next ticket even if that waiter's thread (or vCPU) is descheduled, and then nobody
//! can use the lock until it runs again. With 8 threads on 2 cores that made every other hand-off
//! wait for an OS time slice (issue 9: about 250x parking_lot's time). A process forked while a
//! ticket was outstanding hangs for ever on the same thing: the ticket's thread does not exist.
//!
//! The fix is the *preemptable ticket lock* (Ouyang & Lange, "Preemptable ticket spinlocks",
//! VEE 2013): a waiter that has waited longer than its distance in the queue times an expected
//! delay may take the lock out of order. Here the wait that counts is the *hand-off window*: the
//! time the lock has been seen **free** while the ticket whose turn it is does not take it. A
//! running next waiter takes a free lock within a few pauses, so the window only grows when that
//! waiter is not running. A waiter `d` positions behind the turn takes over after the window has
//! lasted `d * patience` pauses, so the nearest running waiter acts first and FIFO order holds
//! among waiters that run; with `patience == u32::MAX` take-over never happens (strict FIFO).
//!
//! - **word**: one `AtomicU64`: `next` (the ticket dispenser), the `turn` (the ticket to be
//!   served next) and a `HELD` bit. Acquisition is a CAS setting `HELD`, so an in-turn waiter and
//!   a waiter taking over cannot both win.
//! - **lock**: if the lock is idle (free, no outstanding ticket) one CAS takes a ticket and the
//!   lock at once. Otherwise take ticket `t = next++` and wait until the lock is free and either
//!   `turn == t` (in turn), `turn > t` (late: the turn passed while this waiter did not run; it
//!   competes for the free lock without order), or the hand-off window exceeded
//!   `(t - turn) * patience` (take-over). Acquiring in turn or by take-over sets
//!   `turn = t + 1`: tickets skipped by a take-over become late, the queue behind continues in
//!   order. A late acquisition leaves `turn` alone.
//! - **try_lock**: the idle CAS only: succeeds if nobody holds the lock and no ticket at or after
//!   the turn is outstanding.
//! - **unlock**: clear `HELD` (`fetch_sub(1)`, `Release`). The turn was already advanced by the
//!   acquisition, so the next ticket may take the lock.
//!
//! [`RawTicketMutex::lock_ordered`] reports how each acquisition went ([`TicketOrder`]), which is
//! what the loom models and `examples/ticket_order.rs` count.
//!
//! # Enlightenment: lock-holder and lock-waiter preemption
//!
//! The holder is an eCS critical section ([`cs::enter`] / [`cs::exit`]). With live hints (inside
//! an ecs-shim VM) each ticket also records its vCPU in a ring of hint slots (32, see `RING`)
//! indexed by ticket (`ring[t % RING]`, tagged with the ticket's low bits so a stale slot is
//! recognised), written once by the flow that took the ticket, and every acquisition records
//! the holder's vCPU in a word of its own (`holder`). A waiter:
//! 1. while the lock is held, directed-yields to the holder's vCPU when it is preempted;
//!    otherwise the waiter whose turn is next (and, with live hints, one whose tickets ahead
//!    are all preempted: it takes over at the release) looks every pause for up to
//!    `NEXT_POLLS` looks per holder, and the others back off through [`Backoff`] (exponential
//!    spinning, natively a yield to the OS past the spin limit);
//! 2. while the lock is free and not its turn, counts only the waiters ahead of it whose vCPU is
//!    *not* known to be preempted as its distance: preempted waiters are skipped at once instead
//!    of after a window, and directed yields to them (the previous design) are no longer needed.
//!
//! Natively nothing is known to be preempted: the ring is never written and shrinks to one slot.
//!
//! # Words
//!
//! | field | bits | meaning |
//! |---|---|---|
//! | `word` | 63..32 | `next`: next ticket to hand out (wrapping at 2^32) |
//! | `word` | 31..1 | `turn`: the ticket served next, modulo 2^31 |
//! | `word` | 0 | `HELD` |
//! | `ring[i]` | 31..16 | low 16 bits of the ticket `t` with `t % RING == i` that wrote the slot |
//! | `ring[i]` | 15..0 | that ticket's vCPU + 1, clamped as lock words clamp it (`cs::holder_tag`; 0 = never written) |
//! | `holder` | 31..0 | the last acquirer's vCPU + 1, clamped the same way (0 = none yet) |
//!
//! Distances are taken modulo 2^31 as signed numbers: correct while fewer than 2^30 flows wait.
//!
//! # Fork
//!
//! A child forked while tickets were outstanding finds them owned by threads that do not exist
//! in it. Its first `lock` takes a ticket behind them and, the lock being free, takes over after
//! `d * patience` pauses (`tests/fork_ticket.rs`); no `pthread_atfork` handler is needed. Until a
//! `lock` has done so, `try_lock` fails (the dead tickets count as waiters). With
//! `patience == u32::MAX` (strict FIFO) the child hangs, as every classic ticket lock does.
//!
//! # Misuse caught in debug builds
//!
//! Unlocking a mutex that is not locked (only possible through the raw API with forged guard
//! state) panics. Reentrant locking deadlocks (the second ticket waits for the first, whose
//! holder never releases: the lock is never free, so take-over cannot help).

use crate::backoff::Backoff;
use crate::cs;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use lock_api::GuardNoSend;

/// Hint slots: how many tickets (holder + waiters) have their vCPU recorded. With live hints,
/// 32: enough for every waiter of a VM with up to 32 vCPUs to see which waiters ahead of it are
/// preempted (docs/BENCHMARKS.md, shim section); 128 bytes per lock. Natively the ring is never
/// written, so it shrinks to one slot.
const RING: usize = if ecs_sys::LIVE_HINTS { 32 } else { 1 };

/// Bit 0 of the word: the lock is held.
const HELD: u64 = 1;
/// One ticket in the `next` field.
const ONE_TICKET: u64 = 1 << 32;
/// `turn` is kept modulo 2^31.
const TURN_MASK: u32 = (1 << 31) - 1;
/// Pauses between two looks at a free lock that is not ours to take yet.
const FREE_SPINS: u32 = 4;
/// Pauses between two looks at a held lock by the waiter whose turn is next.
const NEXT_POLL_SPINS: u32 = 1;
/// Looks at [`NEXT_POLL_SPINS`] the next waiter takes per holder before it backs off as the
/// others do (natively: towards yielding to the OS, for a holder that was descheduled): about
/// as long as `Backoff`'s spinning phase (127 pauses).
const NEXT_POLLS: u32 = 128;

/// How an acquisition of a [`RawTicketMutex`] went, as [`RawTicketMutex::lock_ordered`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TicketOrder {
    /// It was this ticket's turn (FIFO order; includes the idle fast path).
    InTurn,
    /// The lock was free but the ticket whose turn it was did not take it within the hand-off
    /// window, so this ticket took it out of order.
    TookOver,
    /// The turn had passed this ticket (another waiter took over while this one was not running),
    /// and it took the free lock later, without order.
    Late,
}

/// A raw FIFO ticket spinlock that lets a waiter take over from a waiter that does not run,
/// plus a small ring naming the vCPU of each recent ticket. The protocol is documented at the
/// top of `src/raw_ticket.rs`.
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
    /// `next` (bits 63..32), `turn` (31..1), `HELD` (0).
    word: AtomicU64,
    /// Hand-off window, in pauses per queue position, before a waiter takes over
    /// (`u32::MAX`: never).
    patience: u32,
    /// vCPU hints per ticket (written only with live hints).
    ring: [AtomicU32; RING],
    /// [`cs::holder_tag`] of the last flow that acquired the lock, 0 before any (written only
    /// with live hints). Its own word, so that no acquisition writes a waiter's ring slot.
    holder: AtomicU32,
}

/// Ring slot value naming `vcpu` as the taker of ticket `t`: the ticket's low 16 bits and the
/// vCPU's [`cs::holder_tag`] (an id out of range is clamped to a vCPU never reported preempted,
/// so no id wraps to 0, "never written").
#[inline(always)]
fn ring_entry(t: u32, vcpu: u32) -> u32 {
    (t << 16) | cs::holder_tag(vcpu)
}

const _: () = assert!(
    cs::holder_tag(u32::MAX) < 1 << 16,
    "a holder tag fits the ring entry's 16 bits"
);

/// An empty hint ring.
#[cfg(not(loom))]
const fn new_ring() -> [AtomicU32; RING] {
    [const { AtomicU32::new(0) }; RING]
}

/// An empty hint ring (loom's atomics are not `const`).
#[cfg(loom)]
fn new_ring() -> [AtomicU32; RING] {
    core::array::from_fn(|_| AtomicU32::new(0))
}

/// `next` of a word.
#[inline(always)]
fn next_of(w: u64) -> u32 {
    (w >> 32) as u32
}

/// `turn` of a word (modulo 2^31).
#[inline(always)]
fn turn_of(w: u64) -> u32 {
    (w as u32) >> 1
}

/// Signed distance from the turn to ticket `t`, modulo 2^31: 0 = its turn, > 0 = waiters
/// ahead, < 0 = the turn has passed it.
#[inline(always)]
fn distance(t: u32, turn: u32) -> i32 {
    ((t.wrapping_sub(turn) << 1) as i32) >> 1
}

/// Free, and no ticket at or after the turn is outstanding.
#[inline(always)]
fn is_idle(w: u64) -> bool {
    w & HELD == 0 && next_of(w) & TURN_MASK == turn_of(w)
}

/// `w` with `HELD` set and the turn set to `turn`.
#[inline(always)]
fn held_with_turn(w: u64, turn: u32) -> u64 {
    (w & !0xffff_ffff) | (u64::from(turn & TURN_MASK) << 1) | HELD
}

impl RawTicketMutex {
    /// The default hand-off window, in pauses per queue position. A running next waiter looks
    /// at the lock every few pauses, so a window of this length means it is not running; a few
    /// microseconds on current x86 cores, far below an OS time slice.
    pub const DEFAULT_PATIENCE: u32 = 256;

    crate::sync::loom_const_fn! {
        /// A new, unlocked mutex with the default patience ([`Self::DEFAULT_PATIENCE`]).
        pub fn new() -> Self {
            Self::with_patience(Self::DEFAULT_PATIENCE)
        }
    }

    crate::sync::loom_const_fn! {
        /// A new, unlocked mutex whose waiters take over after the lock stayed free for
        /// `patience` pauses per queue position. `u32::MAX` disables take-over: strict FIFO, the
        /// classic ticket lock (hangs on a descheduled waiter, and in a forked child; see the
        /// module docs).
        pub fn with_patience(patience: u32) -> Self {
            Self {
                word: AtomicU64::new(0),
                patience,
                ring: new_ring(),
                holder: AtomicU32::new(0),
            }
        }
    }

    /// The hand-off window in pauses per queue position (`u32::MAX`: never take over).
    #[inline]
    pub fn patience(&self) -> u32 {
        self.patience
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

    /// Records that the current vCPU holds the lock, for waiters' directed yields (live
    /// hints only). Called after every acquisition, whichever way it went.
    #[inline(always)]
    fn note_holder(&self) {
        if ecs_sys::LIVE_HINTS {
            self.holder.store(cs::my_holder_tag(), Ordering::Relaxed);
        }
    }

    /// The vCPU that took ticket `t`, if its ring slot still names it.
    #[inline]
    fn vcpu_of(&self, t: u32) -> Option<u32> {
        let e = self.slot(t).load(Ordering::Relaxed);
        ((e >> 16) == (t & 0xffff) && (e & 0xffff) != 0).then(|| (e & 0xffff) - 1)
    }

    /// Acquires the mutex: FIFO among running waiters (see the module docs).
    #[inline]
    pub fn lock(&self) -> GuardNoSend {
        self.lock_ordered().0
    }

    /// Acquires the mutex like [`lock`](Self::lock) and reports whether it was this ticket's
    /// turn. For models, tests and diagnostics (`examples/ticket_order.rs`).
    #[inline]
    pub fn lock_ordered(&self) -> (GuardNoSend, TicketOrder) {
        let order = match self.try_idle() {
            true => TicketOrder::InTurn,
            false => {
                let t = next_of(self.word.fetch_add(ONE_TICKET, Ordering::Relaxed));
                self.record(t);
                self.lock_contended(t)
            }
        };
        cs::enter();
        (GuardNoSend::new(), order)
    }

    /// The idle fast path: one CAS takes the next ticket and the lock.
    #[inline(always)]
    fn try_idle(&self) -> bool {
        let mut w = self.word.load(Ordering::Relaxed);
        while is_idle(w) {
            let t = next_of(w);
            let new = held_with_turn(w.wrapping_add(ONE_TICKET), t.wrapping_add(1));
            match self
                .word
                .compare_exchange_weak(w, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.note_holder();
                    return true;
                }
                Err(now) => w = now,
            }
        }
        false
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self, t: u32) -> TicketOrder {
        let mut backoff = Backoff::new();
        // The free turn last seen (new tickets do not matter), and how many pauses it has
        // stayed so.
        let mut seen_free = None;
        let mut window: u64 = 0;
        // The turn last seen while held (progress resets the backoff), and how often this
        // waiter has polled at the next-in-line rate since.
        let mut seen_turn = None;
        let mut next_polls = 0u32;
        loop {
            let w = self.word.load(Ordering::Relaxed);
            let turn = turn_of(w);
            let d = distance(t, turn);
            if w & HELD != 0 {
                seen_free = None;
                if seen_turn != Some(turn) {
                    seen_turn = Some(turn);
                    backoff.reset();
                    next_polls = 0;
                }
                let holder = self.holder_hint();
                if holder.is_none()
                    && next_polls < NEXT_POLLS
                    && (d == 0
                        || (ecs_sys::LIVE_HINTS && d > 0 && self.running_ahead(t, d as u32) == 0))
                {
                    // Next in line (or every waiter ahead is preempted, so we take over at
                    // the release): the lock comes to us when the holder releases it, so look
                    // often (exponential backoff would leave a FIFO lock idle for up to its
                    // step after every release), for as long as a short section lasts.
                    next_polls += 1;
                    backoff.pause(NEXT_POLL_SPINS);
                } else {
                    backoff.snooze(holder);
                }
                continue;
            }
            if seen_free != Some(turn) {
                seen_free = Some(turn);
                window = 0;
            }
            if d <= 0 || self.may_take_over(t, d as u32, window) {
                let new_turn = if d >= 0 { t.wrapping_add(1) } else { turn };
                if self
                    .word
                    .compare_exchange(
                        w,
                        held_with_turn(w, new_turn),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    self.note_holder();
                    return match d {
                        0 => TicketOrder::InTurn,
                        1.. => TicketOrder::TookOver,
                        _ => TicketOrder::Late,
                    };
                }
                continue;
            }
            if self.patience == u32::MAX {
                // Strict FIFO: nothing to count; wait as for a held lock (natively the OS
                // yields let a descheduled next waiter run).
                backoff.snooze(None);
                continue;
            }
            // Counted toward emulated pause-loop exiting in a guest, as every spin is.
            backoff.pause(FREE_SPINS);
            window += u64::from(FREE_SPINS);
        }
    }

    /// Whether a waiter `d >= 1` positions behind the turn may take the free lock after it has
    /// stayed free for `window` pauses. With live hints, waiters ahead whose vCPU is preempted
    /// (those still in the ring) do not count in the distance.
    #[inline]
    fn may_take_over(&self, t: u32, d: u32, window: u64) -> bool {
        if self.patience == u32::MAX {
            return false;
        }
        window >= u64::from(self.running_ahead(t, d)) * u64::from(self.patience)
    }

    /// How many of the `d` tickets ahead of ticket `t` are not known to be preempted: all `d`
    /// without live hints; with them, those whose ring slot names a preempted vCPU are left out.
    #[inline]
    fn running_ahead(&self, t: u32, d: u32) -> u32 {
        let mut running_ahead = d;
        if ecs_sys::LIVE_HINTS {
            for k in 0..d.min(RING as u32) {
                let ahead = t.wrapping_sub(d).wrapping_add(k);
                if self.vcpu_of(ahead).is_some_and(cs::preempted) {
                    running_ahead -= 1;
                }
            }
        }
        running_ahead
    }

    /// The holder's vCPU (as the last acquisition recorded it), if it is preempted. `None`
    /// without live hints.
    #[inline]
    fn holder_hint(&self) -> Option<u32> {
        if !ecs_sys::LIVE_HINTS {
            return None;
        }
        match self.holder.load(Ordering::Relaxed) {
            0 => None,
            tag => Some(tag - 1).filter(|&v| cs::preempted(v)),
        }
    }

    /// Acquires the mutex if nobody holds it and no ticket at or after the turn is outstanding.
    #[inline]
    pub fn try_lock(&self) -> Option<GuardNoSend> {
        self.try_idle().then(|| {
            cs::enter();
            GuardNoSend::new()
        })
    }

    /// Releases the mutex (the turn was advanced on acquisition).
    ///
    /// # Safety
    ///
    /// The mutex must be held in the current context, and `guard` must be the state returned
    /// by the [`lock`](Self::lock) or [`try_lock`](Self::try_lock) that acquired it.
    #[inline]
    pub unsafe fn unlock(&self, guard: GuardNoSend) {
        let _ = guard;
        if cfg!(debug_assertions) {
            assert!(
                self.word.load(Ordering::Relaxed) & HELD != 0,
                "RawTicketMutex::unlock called on an unlocked mutex (forged or reused guard state)"
            );
        }
        // `HELD` is set and only the holder clears it: no borrow into `turn`.
        self.word.fetch_sub(HELD, Ordering::Release);
        cs::exit();
    }

    /// Whether the mutex is held (a momentary snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) & HELD != 0
    }

    /// Holder plus waiters whose ticket is at or after the turn (a momentary snapshot). Late
    /// waiters (skipped by a take-over) are not counted.
    #[inline]
    pub fn queue_len(&self) -> u32 {
        let w = self.word.load(Ordering::Relaxed);
        (next_of(w).wrapping_sub(turn_of(w)) & TURN_MASK) + (w & HELD) as u32
    }

    /// Whether tickets at or after the turn are outstanding (a momentary snapshot; call while
    /// holding: then these are waiters).
    #[inline]
    pub fn has_waiters(&self) -> bool {
        let w = self.word.load(Ordering::Relaxed);
        next_of(w) & TURN_MASK != turn_of(w)
    }
}

impl Default for RawTicketMutex {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: a flow holds the lock exactly from its successful CAS setting `HELD` (`Acquire`) in
// the word until its `fetch_sub` clearing it (`Release`); every acquisition path CASes from a
// word with `HELD` clear, so two flows never hold it at once, whatever the order of tickets. The
// debug check in `unlock` fires only when the mutex was not held (nothing to release). The state
// is `GuardNoSend`: the critical-section depth entered on acquisition belongs to this thread.
crate::sync::raw_mutex_from_inherent!(unsafe impl RawTicketMutex);

// SAFETY: every unlock leaves the lock to the next ticket in FIFO order (take-over aside, which
// only happens when that waiter does not take it), which is the fair protocol; `bump` re-queues behind the current waiters only when there are some, restoring
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
        // Both counters just below their wrap points.
        let t = u32::MAX - 1;
        raw.word.store(
            u64::from(t) << 32 | u64::from(t & TURN_MASK) << 1,
            Ordering::Relaxed,
        );
        assert!(!raw.is_locked());
        assert_eq!(raw.queue_len(), 0);
        for _ in 0..3 {
            let g = raw.try_lock().expect("idle");
            assert!(raw.is_locked());
            assert_eq!(raw.queue_len(), 1);
            // SAFETY: `g` is the state of the acquisition above.
            unsafe { raw.unlock(g) };
            let (g, order) = raw.lock_ordered();
            assert_eq!(order, TicketOrder::InTurn);
            // SAFETY: as above.
            unsafe { raw.unlock(g) };
            assert!(!raw.is_locked());
            assert_eq!(raw.queue_len(), 0);
        }
    }

    #[test]
    fn distance_is_signed_modulo_2_31() {
        assert_eq!(distance(5, 5), 0);
        assert_eq!(distance(7, 5), 2);
        assert_eq!(distance(4, 5), -1);
        // `turn` is 31 bits, tickets 32: ticket 2^31 + 3 is ticket 3 modulo 2^31.
        assert_eq!(distance((1 << 31) + 3, 3), 0);
        assert_eq!(distance(1, TURN_MASK), 2, "across the wrap");
        assert_eq!(distance(TURN_MASK, 1), -2, "across the wrap");
    }

    #[test]
    fn ticket_outstanding_blocks_try_lock_and_is_taken_over() {
        // A ticket taken by nobody (as a forked child sees one of a vanished thread): try_lock
        // fails, lock takes over after the window, and the turn moves past the dead ticket.
        let raw = RawTicketMutex::with_patience(8);
        raw.word.fetch_add(ONE_TICKET, Ordering::Relaxed);
        assert_eq!(raw.queue_len(), 1);
        assert!(raw.try_lock().is_none());
        let (g, order) = raw.lock_ordered();
        assert_eq!(order, TicketOrder::TookOver);
        // SAFETY: `g` is the state of the acquisition above.
        unsafe { raw.unlock(g) };
        assert_eq!(raw.queue_len(), 0, "idle again");
        let g = raw.try_lock().expect("idle");
        // SAFETY: as above.
        unsafe { raw.unlock(g) };
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
        assert_eq!(raw.holder_hint(), None, "no live hints natively");
    }

    #[test]
    fn ring_entries_never_wrap_a_vcpu_to_never_written() {
        // Review finding (issue 9): `vcpu + 1` kept to 16 bits turned vCPU 0xffff into 0,
        // "never written", and 0x1_0005 into vCPU 5. Out-of-range ids are clamped as lock
        // words clamp them: to MAX_VCPUS, never reported preempted.
        let raw = RawTicketMutex::new();
        for (vcpu, seen) in [
            (0, 0),
            (ecs_sys::abi::MAX_VCPUS - 1, ecs_sys::abi::MAX_VCPUS - 1),
            (0xffff, ecs_sys::abi::MAX_VCPUS),
            (0x1_0005, ecs_sys::abi::MAX_VCPUS),
            (u32::MAX, ecs_sys::abi::MAX_VCPUS),
        ] {
            raw.slot(9).store(ring_entry(9, vcpu), Ordering::Relaxed);
            assert_eq!(raw.vcpu_of(9), Some(seen), "vCPU {vcpu:#x}");
        }
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
