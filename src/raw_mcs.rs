//! `RawMcsMutex`: a queued spinlock in the style of Linux's qspinlock: a lock word that any
//! flow may take with one CAS, plus an MCS queue that orders the flows that had to wait.
//!
//! # Algorithm
//!
//! Linux's qspinlock (Waiman Long, `kernel/locking/qspinlock.c`, 2015), which builds on the
//! MCS list lock of Mellor-Crummey & Scott ("Algorithms for scalable synchronization on
//! shared-memory multiprocessors", ACM TOCS 9(1), 1991, figure 5), and its answer to
//! lock-waiter preemption in guests, `virt_spin_lock` (arrivals may take a free lock word even
//! while others are queued):
//!
//! - **fast path** (`lock`, `try_lock`): one `compare_exchange(locked: 0 -> vcpu + 1)`. No
//!   queue node, no thread-local access.
//! - **slow path**: take this flow's queue node, reset it and swap it into `tail`. With a
//!   predecessor, link into it (`pred.next = me`) and spin on *my own* node until the
//!   predecessor makes me the queue **head** (`me.head = true`). The head spins on `locked`
//!   and takes it with a CAS when it reads 0 (or [`HANDOFF`], see below). Now the holder, it
//!   passes head-ness on without waiting: if `tail` is still its own node it CASes `tail`
//!   back to null; otherwise it swaps [`GONE`] into its node's `next`. If that swap returns
//!   the successor, it sets `next.head`; if it returns null, the successor has swapped
//!   `tail` but not linked yet, and will find `GONE` when it links (a swap too) and make
//!   itself the head.
//! - **release**: a plain `store(locked: 0, Release)`: no queue work, no RMW.
//!
//! Linux's qspinlock (and this lock until issue 9) made the new holder wait for a late
//! successor's link while it already held the word: in user space a successor descheduled
//! between its `tail` swap and its link then stalled every acquisition. Here nobody waits for
//! the link: the late successor makes itself head when it runs. Until then the queued waiters
//! behind it wait for it (they would anyway), and arrivals keep taking the free word.
//!
//! Nobody is ever *handed* the lock (except by the opt-in fair unlock): the lock word is free
//! for whoever CASes it first. That is what survives preemption. A strict FIFO queue lock
//! hands the lock to the next waiter even when the OS (or the host, for a vCPU) has
//! descheduled it, and then nobody can use the lock until that waiter runs again (measured
//! with the classic MCS lock, 8 threads on 2 cores: seconds for 160 000 acquisitions, against
//! milliseconds for a test-and-set lock). Here a descheduled queue head only delays the
//! waiters queued behind it; flows that arrive meanwhile, and the releasing flow itself, keep
//! using the lock.
//!
//! # Fairness
//!
//! Queued waiters are served in queue order among themselves. Flows that find the word free
//! when they arrive (fast path, `try_lock`), including the flow that just released, overtake
//! them (barging, as parking_lot's `Mutex` and Linux's `virt_spin_lock` allow). A flow that
//! finds the word held queues at once and never overtakes a queued flow, except while the
//! host reports over-commit (below) or without a usable node (the "Fallback"): then it waits
//! node-less and competes with the queue head for the free word. So this is not
//! strictly FIFO, and a queued waiter has no bound on how often it is overtaken (in practice
//! it loses only to a flow that re-locks within the few nanoseconds it takes the head to see
//! the release); pick `TicketMutex` for strict FIFO.
//!
//! Starvation is not bounded by a "head waiting, stop stealing" flag on purpose: a flag set by
//! a head that is then descheduled makes every arrival wait for that one flow again, which is
//! the stall this design removes, and natively nobody can tell that the flag's owner is not
//! running (Linux's paravirtual qspinlock has the same tension and clears its flag before the
//! head halts, which a preempted flow cannot do). What is offered instead is the opt-in fair
//! unlock: `unlock_fair` (and `bump`) store [`HANDOFF`] when flows wait (queued, or node-less
//! and counted in `unqueued`), which only those waiters may take: the queue head and the
//! node-less waiters, never an arrival's fast path or `try_lock`.
//!
//! # Where the nodes live
//!
//! A node is needed only while its flow *waits*: holding needs none, so the guard state is a
//! plain `!Send` marker and guards move freely. A flow waits on one lock at a time, so each
//! flow owns exactly one node, as Linux keeps one per CPU and context:
//! - `std`: a node in a `thread_local!`.
//! - `guest` (`no_std`, one flow per vCPU, no TLS): a static array of nodes indexed by
//!   `cs::vcpu_id()`, bounded by `ecs_sys::abi::MAX_VCPUS`.
//! - neither: `McsMutex` is not available (there is nowhere to keep a node).
//!
//! **Node reuse.** A node is touched by others only while its owner waits or is *pending*:
//! the predecessor's `head` store is read by the owner (`Acquire`) before the owner can end
//! its wait; the successor reads the node's `vcpu` and then swaps `next` (`AcqRel`). The
//! owner's pass-on either CASes `tail` from its node to null (no successor exists), or swaps
//! `GONE` into `next` and gets the successor (it then resets `next` to null: free), or gets
//! null: the node is pending, `next == GONE`, until the late successor's swap replaces
//! `GONE` with its own address. A pending node is never reused: the owner's next slow-path
//! wait sees `next == GONE` (`Acquire`, pairing with the successor's swap) and waits
//! node-less instead (the "Fallback" below), and a thread's node is not freed before its
//! successor linked (its thread-local's destructor waits for that). Predecessors are never
//! read after linking (their `vcpu` is copied first). The loom models check this with `vcpu`
//! as a plain cell.
//!
//! **Fallback.** If a flow has no node (its thread-local is already destroyed, as in a lock
//! taken by a TLS destructor; its vCPU id is out of range; or its node is in use, which the
//! protocol never does; or it is pending, see above; or its address uses the bits `tail`
//! keeps for the fork generation, see `TAG_MASK`), it waits without queueing: it reads
//! `locked` until it is 0 and CASes it (test-and-test-and-set, as `SpinMutex` does). Correct,
//! it never blocks the queue, and it competes with the queue head like any arrival. It is a
//! waiter all the same: counted in `unqueued` while it waits, so a fair unlock reserves the
//! word for it too, and it takes [`HANDOFF`] as the head does. (In the child of a `fork` the
//! count, like `tail`, may still name a parent's thread: a fair unlock there reserves the
//! word until the child's next `lock`, which takes it; `try_lock` fails meanwhile.)
//!
//! # Enlightenment
//!
//! The holder is an eCS critical section ([`cs::enter`] right after the CAS that takes the
//! word, so a queue head passing head-ness on is already inside it; [`cs::exit`] right after
//! the release store). The lock word names
//! the holder's vCPU, so the head (and a node-less waiter) passes it to
//! `Backoff::snooze(Some(holder))`: directed yield the moment the holder is preempted. A
//! queued non-head waiter copies its predecessor's vCPU before linking and, after
//! [`DAMP_ROUNDS`] backoff rounds of plain spinning, directed-yields to it whenever it is
//! preempted (that predecessor is the one who will make it head). Waiters never halt and do
//! not act on the predecessor's hint before spinning a while: Linux once let qspinlock
//! waiters halt on a preempted predecessor and throughput under heavy over-commit fell about
//! 8x (docs/DESIGN.md, "Enlightenment rules"). Natively (no live hints) every waiter past
//! the spin limit yields its thread to the OS (`Backoff`).
//!
//! # Over-commit
//!
//! The queue serves its waiters in order, and in an over-committed VM most of them are
//! descheduled vCPUs: the host preempts waiters (never the holder, which is inside an eCS
//! section) while they are queued, and the running waiters queued behind one of them cannot
//! take the free word until it runs again and passes head-ness on. Only the releasing vCPU,
//! barging, keeps the lock busy, so one pCPU of two does the work (the shim measured 58-60 % of
//! the no-over-commit ceiling at 8 and 16 vCPUs on 2, docs/BENCHMARKS.md). Directed yields to
//! the preempted predecessor do not help: the yielder is then the descheduled one.
//!
//! So while the host reports this pCPU *overloaded* (a runnable vCPU waits for a pCPU; only with
//! live hints), a waiter does not queue: it waits node-less, test-and-test-and-set with a
//! directed yield to a preempted holder, as `SpinMutex` does. That is Linux's answer for guests
//! (`virt_spin_lock`: a qspinlock in a VM without paravirtual spinlocks falls back to a
//! test-and-set lock). Flows already queued keep their places and compete with the node-less
//! ones for the free word, as every arrival does. Under-committed, the queue is used as
//! everywhere else; natively the flag is constant `false`.
//!
//! # Words
//!
//! | word | value | meaning |
//! |---|---|---|
//! | `locked` | `0` (`UNLOCKED`) | free: the next CAS takes it |
//! | `locked` | `v + 1`, `v < ecs_sys::abi::MAX_VCPUS` | held by a flow on vCPU `v` (`v = 0` natively) |
//! | `locked` | `u32::MAX` ([`HANDOFF`]) | released by a fair unlock, reserved for the waiters (queue head, node-less) |
//! | `tail` | null | no flow queued |
//! | `tail` | node address, with the fork generation in bits 0..6 and 48..64 | the last queued node (see `TAG_MASK`) |
//! | `unqueued` | `n` | flows waiting node-less (for the fair unlock) |
//! | `node.head` | `false` / `true` | waiting behind a predecessor / queue head (spins on `locked`) |
//! | `node.next` | null / node / [`GONE`] | successor not linked yet / successor / owner passed head-ness on before its successor linked (pending) |
//! | `node.vcpu` | `u32` | owner's vCPU, read by the successor before it links |
//!
//! # Misuse caught in debug builds
//!
//! - A flow that `lock`s an MCS lock it already holds panics (instead of deadlocking behind
//!   itself); `try_lock` just fails. Debug builds keep a short per-flow list of held lock
//!   addresses for this ([`DEBUG_HELD`] entries; deeper nesting goes unchecked). A false
//!   positive needs a held lock that was moved (or whose guard was forgotten and the lock
//!   dropped) and another lock, held by someone else, at its old address.
//! - Unlocking a lock that is not held (a guard of another lock through the raw API) panics.
//!   A guard of another lock that is *also* held is not detected.

use crate::backoff::Backoff;
use crate::cs;
use crate::sync::{AtomicBool, AtomicPtr, AtomicU32, Ordering, UnsafeCell};
use core::ptr;
use lock_api::GuardNoSend;

/// `locked` value of a free mutex.
const UNLOCKED: u32 = 0;

/// `locked` value after a fair unlock with flows waiting: only the queue head and node-less
/// waiters may take it.
/// Never a holder value (`vcpu + 1 <= MAX_VCPUS`).
const HANDOFF: u32 = u32::MAX;

/// `node.next` of a holder that passed head-ness on before its successor linked: the late
/// successor finds it when it links and makes itself the queue head. Never a node address
/// (nodes are aligned).
const GONE: *mut Node = ptr::without_provenance_mut(1);

/// Backoff rounds a queued waiter spins before it acts on its predecessor's preempted hint.
const DAMP_ROUNDS: u32 = 16;

/// Backoff steps `bump` waits for a waiter to take the word it reserved before it locks again
/// (natively the last ones yield to the OS). One under loom, whose model explores both
/// outcomes without the spins.
const BUMP_WAIT_LOOKS: u32 = if cfg!(loom) { 1 } else { 12 };

/// Held-lock addresses a flow records in debug builds, for the reentrancy check.
const DEBUG_HELD: usize = 8;

/// A queue node: one per flow, used only while that flow waits. One cache line each
/// (natively), so neighbours' spinning does not collide.
#[cfg_attr(not(loom), repr(align(64)))]
#[derive(Debug)]
pub(crate) struct Node {
    /// Set by the predecessor when it makes this node the queue head.
    head: AtomicBool,
    /// The successor, once it has linked itself.
    next: AtomicPtr<Node>,
    /// The owner's vCPU: written by the owner before it publishes the node, read by the
    /// successor between its swap and its link. A plain cell, so loom checks node reuse.
    vcpu: UnsafeCell<u32>,
}

/// Bits of a `tail` value that carry the fork generation (`crate::fork`) its node was queued
/// in: a waiter whose predecessor carries another one waits behind a thread that does not exist
/// in this process. A tag in the tail word rather than a field of the node, because after a
/// fork the dead thread's memory is recycled for new threads: a stale node may be a live node of
/// another thread, or the reader's own.
///
/// The tag is the generation modulo 2^22: its low 6 bits below the node's alignment and, on
/// 64-bit targets, the next 16 above bit 47, which user-space addresses leave clear (x86_64 and
/// aarch64 with 48-bit or wider, only-on-request address spaces). A node whose address uses
/// those bits waits without queueing (the "Fallback"). Generations alias only after 2^22
/// (4 194 304) nested forks without a contended lock in between; with the 6 low bits alone
/// (before the review) a chain of 64 did (`tests/issue_fork.rs`). Under loom (no fork; nodes
/// not over-aligned) there is no tag.
#[cfg(not(loom))]
const LOW_GEN_BITS: u32 = 6;
#[cfg(loom)]
const LOW_GEN_BITS: u32 = 0;

/// Address bits a node may use; the bits above carry the generation's high part.
const ADDR_BITS: u32 = if cfg!(all(not(loom), target_pointer_width = "64")) {
    48
} else {
    usize::BITS
};

/// Every tag bit of a `tail` value.
const TAG_MASK: usize = ((1 << LOW_GEN_BITS) - 1) | !(usize::MAX >> (usize::BITS - ADDR_BITS));

#[cfg(not(loom))]
const _: () = assert!(core::mem::align_of::<Node>() >= 1 << LOW_GEN_BITS);

/// The tag bits for fork generation `generation`.
#[inline]
const fn generation_tag(generation: u32) -> usize {
    let low = generation as usize & ((1 << LOW_GEN_BITS) - 1);
    let high = if ADDR_BITS < usize::BITS {
        ((generation >> LOW_GEN_BITS) as usize) << ADDR_BITS
    } else {
        0
    };
    low | (high & TAG_MASK)
}

/// Whether `node` can carry a tag: its address leaves the tag bits clear.
#[inline]
#[cfg_attr(
    loom,
    allow(clippy::bad_bit_mask, reason = "no tag under loom: the mask is 0")
)]
fn taggable(node: *const Node) -> bool {
    node.addr() & TAG_MASK == 0
}

/// `node` tagged with the current fork generation, for `tail`.
#[inline]
fn tagged(node: *mut Node) -> *mut Node {
    let tag = generation_tag(crate::fork::generation());
    node.map_addr(|a| a | tag)
}

/// A `tail` value without its tag.
#[inline]
fn untagged(tail: *mut Node) -> *mut Node {
    tail.map_addr(|a| a & !TAG_MASK)
}

/// Whether a non-null `tail` value was queued in this process's fork generation.
#[inline]
fn is_current(tail: *mut Node) -> bool {
    tail.addr() & TAG_MASK == generation_tag(crate::fork::generation())
}

// SAFETY: `head` and `next` are atomics. `vcpu` is written only by the owner while no other
// flow can reach the node (before its `tail` swap publishes it, and only after the node's
// last successor has linked or none exists: "Node reuse" in the module docs), and read only
// by the successor between its `tail` swap (`Acquire`, after the owner's `Release` swap) and
// its link (`Release`, read by the owner with `Acquire` before the next write).
unsafe impl Sync for Node {}

impl Node {
    crate::sync::loom_const_fn! {
        fn new() -> Self {
            Self {
                head: AtomicBool::new(false),
                next: AtomicPtr::new(ptr::null_mut()),
                vcpu: UnsafeCell::new(0),
            }
        }
    }
}

/// A raw queued spinlock (qspinlock-style): a lock word that any flow takes with one CAS and
/// clears with one store, and an MCS queue of waiting flows, each spinning on its own node;
/// only the queue head spins on the lock word. Arrivals may take a free word while flows are
/// queued, so a descheduled waiter never blocks the lock. The guard state is a plain `!Send`
/// marker. The protocol, fairness, node storage and words are documented at the top of
/// `src/raw_mcs.rs`.
///
/// Use it through [`McsMutex`](crate::McsMutex). The inherent methods expose the same
/// protocol as the `lock_api` impls, for models and low-level code.
///
/// ```
/// use ecs_locks::RawMcsMutex;
///
/// let raw = RawMcsMutex::new();
/// let g = raw.lock();
/// assert!(raw.try_lock().is_none());
/// // SAFETY: `g` is the state of the acquisition above.
/// unsafe { raw.unlock(g) };
/// assert!(!raw.is_locked());
/// ```
#[derive(Debug)]
pub struct RawMcsMutex {
    /// `UNLOCKED`, the holder's vCPU + 1, or `HANDOFF`.
    locked: AtomicU32,
    /// Last queued node, or null.
    tail: AtomicPtr<Node>,
    /// Flows waiting node-less (in `lock_unqueued`): a fair unlock reserves the word for them
    /// too, since they are not in the queue that `has_waiters` sees.
    unqueued: AtomicU32,
}

impl RawMcsMutex {
    crate::sync::loom_const_fn! {
        /// A new, unlocked mutex.
        pub fn new() -> Self {
            Self {
                locked: AtomicU32::new(UNLOCKED),
                tail: AtomicPtr::new(ptr::null_mut()),
                unqueued: AtomicU32::new(0),
            }
        }
    }

    #[inline(always)]
    fn id(&self) -> usize {
        ptr::from_ref(self).addr()
    }

    /// One CAS from a free word to ours: the fast path of `lock`, `try_lock` and
    /// `lock_node_less`.
    #[inline(always)]
    fn take_free(&self) -> bool {
        self.locked
            .compare_exchange(
                UNLOCKED,
                Self::my_word(),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The lock word value that names this vCPU as the holder.
    #[inline(always)]
    fn my_word() -> u32 {
        cs::my_holder_tag()
    }

    /// Acquires the mutex: one CAS if it is free, otherwise queue and wait (see the module
    /// docs for the order in which waiters are served).
    ///
    /// # Panics
    ///
    /// In debug builds, if this flow already holds this lock.
    #[inline]
    pub fn lock(&self) -> GuardNoSend {
        if self.take_free() {
            cs::enter();
        } else {
            // Enters the critical section itself, right after taking the word: a queue head
            // still passes head-ness on after that, as the holder.
            self.lock_slow();
        }
        if cfg!(debug_assertions) {
            slots::note_held(self.id());
        }
        GuardNoSend::new()
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self) {
        if cfg!(debug_assertions) {
            assert!(
                !slots::holds(self.id()),
                "McsMutex locked twice by the same flow (reentrant lock would deadlock)"
            );
        }
        // Over-committed (the host says a runnable vCPU waits for a pCPU): wait without
        // queueing, as Linux's `virt_spin_lock` does in a guest ("Over-commit" in the module
        // docs). A queue there hands head-ness to vCPUs the host has descheduled.
        if cs::overloaded() || slots::with_node(|n| self.lock_queued(n)) != Some(true) {
            self.lock_unqueued();
        }
    }

    /// Queue on `n`, wait to become head, take the word, pass head-ness on. Returns `false`
    /// without touching the lock when `n` is still pending (see "Node reuse").
    fn lock_queued(&self, n: &Node) -> bool {
        let node = ptr::from_ref(n).cast_mut();
        // Acquire: pairs with a late successor's link, after which it no longer touches `n`.
        if n.next.load(Ordering::Acquire) == GONE || !taggable(node) {
            return false;
        }
        n.next.store(ptr::null_mut(), Ordering::Relaxed);
        n.head.store(false, Ordering::Relaxed);
        // SAFETY: the node is ours and unpublished: no other flow reaches it until the swap
        // below (module docs, "Node reuse").
        n.vcpu.with_mut(|v| unsafe { *v = cs::vcpu_id() });
        slots::watch_fork();
        let me = tagged(node);
        // Release: a successor reads our reset node; Acquire: we read the predecessor's.
        let pred = self.tail.swap(me, Ordering::AcqRel);
        if !pred.is_null() && !is_current(pred) {
            // The predecessor queued before this process was forked from its parent: its
            // thread does not exist here (its memory may even be a new thread's by now, ours
            // included), so it will never make us head. Make ourselves the head without
            // touching it.
        } else if !pred.is_null() {
            let pred = untagged(pred);
            // SAFETY: `pred` was the tail, so it is the node of a flow that waits (nodes are
            // used only while waiting) and cannot end its wait before it reads our link
            // below; we touch it only up to that link.
            let p = unsafe { &*pred };
            // SAFETY: the predecessor wrote `vcpu` before its swap, which our swap read; it
            // rewrites it only after reading our link (module docs, "Node reuse").
            let pred_vcpu = p.vcpu.with(|v| unsafe { *v });
            if p.next.swap(node, Ordering::AcqRel) != GONE {
                // Release: the predecessor (or whoever reuses its node) reads our reset node;
                // Acquire: on `GONE`, what the predecessor did before passing head-ness on.
                // Our last access to `pred`.
                self.wait_for_head(n, pred_vcpu);
            }
            // Else the predecessor took the word and moved on before we linked: we are the head.
        }
        self.take_as_head();
        // Holder now. Pass head-ness on, without waiting for a successor that has not linked.
        if self
            .tail
            .compare_exchange(me, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            let next = n.next.swap(GONE, Ordering::AcqRel);
            if !next.is_null() {
                // Linked already: our node is free again (nobody else touches it now).
                n.next.store(ptr::null_mut(), Ordering::Relaxed);
                // SAFETY: `next` linked itself into our node, so it is a waiting flow's node
                // that stays valid until it reads this store; this is our last access to it.
                unsafe { (*next).head.store(true, Ordering::Release) };
            }
            // Else: pending until the late successor links, finds `GONE` and becomes head.
        }
        true
    }

    /// Spins on our own node until the predecessor makes it the queue head.
    #[inline]
    fn wait_for_head(&self, n: &Node, pred_vcpu: u32) {
        let mut backoff = Backoff::new();
        let mut rounds = 0u32;
        while !n.head.load(Ordering::Acquire) {
            // Damped: act on the predecessor's preempted hint only after spinning a while.
            let target = if rounds >= DAMP_ROUNDS {
                Some(pred_vcpu)
            } else {
                rounds += 1;
                None
            };
            backoff.snooze(target);
        }
    }

    /// Queue head: spin on the lock word until it is free (or handed to the head), take it
    /// and enter the critical section.
    #[inline]
    fn take_as_head(&self) {
        let me = Self::my_word();
        let mut backoff = Backoff::new();
        loop {
            let w = self.locked.load(Ordering::Relaxed);
            if w == UNLOCKED || w == HANDOFF {
                if self
                    .locked
                    .compare_exchange(w, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    cs::enter();
                    return;
                }
                // An arrival took the free word first: go on waiting.
                backoff.spin();
            } else {
                backoff.snooze(Some(w - 1));
            }
        }
    }

    /// Node-less wait (see "Fallback" in the module docs): test-and-test-and-set, then enter
    /// the critical section. Counted in `unqueued` meanwhile, so a fair unlock reserves the
    /// word ([`HANDOFF`]) for the node-less waiters too, and they take it as the queue head
    /// does.
    #[cold]
    #[inline(never)]
    fn lock_unqueued(&self) {
        let me = Self::my_word();
        let mut backoff = Backoff::new();
        self.unqueued.fetch_add(1, Ordering::Relaxed);
        loop {
            let w = self.locked.load(Ordering::Relaxed);
            if w == UNLOCKED || w == HANDOFF {
                if self
                    .locked
                    .compare_exchange(w, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    // While holding: the next holder's fair unlock, which reads the count, is
                    // ordered after this through the lock word.
                    self.unqueued.fetch_sub(1, Ordering::Relaxed);
                    cs::enter();
                    return;
                }
                backoff.spin();
            } else {
                backoff.snooze(Some(w - 1));
            }
        }
    }

    /// Acquires the mutex like [`lock`](Self::lock) but always waits node-less, as an
    /// over-committed guest's waiters (and flows without a usable node) do: for the loom
    /// models, which cannot otherwise make a flow wait without queueing.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn lock_node_less(&self) -> GuardNoSend {
        if self.take_free() {
            cs::enter();
        } else {
            self.lock_unqueued();
        }
        GuardNoSend::new()
    }

    /// Whether a fair unlock has someone to reserve the word for: a queued flow, or a flow
    /// waiting node-less (a momentary snapshot).
    #[inline]
    fn has_fair_taker(&self) -> bool {
        self.has_waiters() || self.unqueued.load(Ordering::Relaxed) != 0
    }

    /// Acquires the mutex if its word is free, without waiting (it may overtake queued
    /// waiters, like the fast path of [`lock`](Self::lock)).
    #[inline]
    pub fn try_lock(&self) -> Option<GuardNoSend> {
        self.take_free().then(|| {
            if cfg!(debug_assertions) {
                slots::note_held(self.id());
            }
            cs::enter();
            GuardNoSend::new()
        })
    }

    /// Debug check shared by the unlocks; runs before any state changes.
    #[inline]
    fn debug_check_unlock(&self) {
        if cfg!(debug_assertions) {
            let w = self.locked.load(Ordering::Relaxed);
            assert!(
                w != UNLOCKED && w != HANDOFF,
                "RawMcsMutex::unlock called on an unlocked mutex (a guard of another lock?)"
            );
            slots::note_released(self.id());
        }
    }

    /// Releases the mutex: one store. Queued waiters and arrivals then compete for it.
    ///
    /// # Safety
    ///
    /// The mutex must be held in the current context, and `guard` must be the state returned
    /// by the [`lock`](Self::lock) or [`try_lock`](Self::try_lock) that acquired it.
    #[inline]
    pub unsafe fn unlock(&self, guard: GuardNoSend) {
        let _ = guard;
        self.debug_check_unlock();
        self.locked.store(UNLOCKED, Ordering::Release);
        cs::exit();
    }

    /// Releases the mutex to a waiter if flows wait, queued or node-less (no arrival can take
    /// it meanwhile: only the queue head and node-less waiters take [`HANDOFF`]), otherwise as
    /// [`unlock`](Self::unlock) does.
    ///
    /// # Safety
    ///
    /// As for [`unlock`](Self::unlock).
    #[inline]
    pub unsafe fn unlock_fair(&self, guard: GuardNoSend) {
        let _ = guard;
        self.debug_check_unlock();
        // A queued flow exists, and while we hold the lock it is the head or becomes it
        // without the lock word (our own acquisition passed head-ness on before returning, or
        // left `GONE` for a late successor, which makes itself head when it links): it will
        // take `HANDOFF`. Or a node-less waiter is counted: it decrements the count only once
        // it holds the lock, after which our acquisition is ordered through the word, so it
        // is still waiting and will take `HANDOFF`.
        let word = if self.has_fair_taker() {
            HANDOFF
        } else {
            UNLOCKED
        };
        self.locked.store(word, Ordering::Release);
        cs::exit();
    }

    /// Whether the mutex is held, or reserved for the queue head by a fair unlock (a
    /// momentary snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed) != UNLOCKED
    }

    /// Whether flows are queued (a momentary snapshot; node-less waiters are not counted).
    #[inline]
    pub fn has_waiters(&self) -> bool {
        !self.tail.load(Ordering::Relaxed).is_null()
    }

    /// The vCPU of the current holder, if any (a momentary snapshot; 0 natively).
    #[inline]
    pub fn holder_vcpu(&self) -> Option<u32> {
        match self.locked.load(Ordering::Relaxed) {
            UNLOCKED | HANDOFF => None,
            w => Some(w - 1),
        }
    }
}

impl Default for RawMcsMutex {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: ownership is the lock word: every acquisition succeeds only by a CAS from
// `UNLOCKED` (or, for the queue head and node-less waiters, from `HANDOFF`) to a holder value,
// with `Acquire`,
// so at most one is outstanding; `unlock`/`unlock_fair` store a non-holder value with
// `Release`. The queue only decides which waiter spins on the word; nodes are used only while
// waiting and are free again when `lock` returns, so a moved, dropped-while-held (by its
// exclusive owner) or forgotten guard leaves no node behind. Unwinding: the only panics are
// debug checks that run before any state changes (the reentrancy check in `lock`, the
// unlocked check in the unlocks).
crate::sync::raw_mutex_from_inherent!(unsafe impl RawMcsMutex);

// SAFETY: `unlock_fair` reserves the word for the waiters (the queue head and node-less
// waiters) when flows wait, so no arrival can take it first; `bump` does that and re-locks
// only when flows wait. The
// guard state is a marker, so there is nothing to restore; the re-lock cannot panic (the
// reentrancy check passes after the unlock), and is under an abort guard anyway.
unsafe impl lock_api::RawMutexFair for RawMcsMutex {
    #[inline]
    unsafe fn unlock_fair(&self, guard: GuardNoSend) {
        // SAFETY: forwarded caller contract.
        unsafe { RawMcsMutex::unlock_fair(self, guard) }
    }

    #[inline]
    unsafe fn bump(&self, guard: &mut GuardNoSend) {
        if self.has_fair_taker() {
            crate::sync::abort_on_panic(|| {
                // SAFETY: the caller holds the lock; it is re-acquired before returning, and
                // `GuardNoSend` carries no state to restore.
                unsafe { RawMcsMutex::unlock_fair(self, GuardNoSend::new()) };
                // A node-less waiter takes `HANDOFF` only at its next look, and our re-lock
                // could take it back first (waiting node-less, or as the head of an empty
                // queue): give the waiters a while to take it. Bounded, because a child of
                // `fork` may count a waiter that does not exist in it.
                let mut backoff = Backoff::new();
                for _ in 0..BUMP_WAIT_LOOKS {
                    if self.locked.load(Ordering::Relaxed) != HANDOFF {
                        break;
                    }
                    backoff.snooze(None);
                }
                *guard = RawMcsMutex::lock(self);
            });
        }
    }
}

/// Per-flow node storage: a thread-local node (`std`) or a per-vCPU node (`guest`).
///
/// `with_node(f)` runs `f` with this flow's node, marked in use meanwhile, or returns `None`
/// if the flow has no usable node. In debug builds, `note_held`/`note_released`/`holds` keep
/// the flow's list of held lock addresses (reentrancy check). Only the owning flow touches
/// the marks.
#[cfg(not(ecs_guest))]
mod slots {
    use super::{DEBUG_HELD, GONE, Node};
    use crate::backoff::Backoff;
    use crate::sync::{AtomicBool, Ordering};
    use core::cell::Cell;
    use core::sync::atomic::{Ordering as CompilerOrdering, compiler_fence};

    /// One thread's node and marks.
    struct Local {
        node: Node,
        /// The node is in use by a wait. An atomic fenced against the compiler rather than a
        /// `Cell`: a signal handler that takes an MCS lock runs between any two instructions
        /// of the interrupted thread and must see the mark set before the node is touched
        /// and cleared only after the last touch (issue 9). The thread-local is
        /// `const`-initialized, so a first use inside a handler does not run a lazy
        /// initializer that the interrupted code may be in the middle of.
        busy: AtomicBool,
        /// Addresses of the locks this thread holds (debug builds; 0 = empty).
        held: [Cell<usize>; DEBUG_HELD],
    }

    impl Local {
        crate::sync::loom_const_fn! {
            fn new() -> Self {
                Self {
                    node: Node::new(),
                    busy: AtomicBool::new(false),
                    held: [const { Cell::new(0) }; DEBUG_HELD],
                }
            }
        }
    }

    impl Drop for Local {
        fn drop(&mut self) {
            // A pending node (module docs, "Node reuse") is still to be written by a late
            // successor's link: the thread's memory must outlive that store. The wait is
            // for two instructions of a flow that has already swapped itself into `tail`.
            let mut backoff = Backoff::new();
            while self.node.next.load(Ordering::Acquire) == GONE {
                backoff.snooze(None);
            }
        }
    }

    #[cfg(not(loom))]
    crate::sync::thread_local! {
        static LOCAL: Local = const { Local::new() };
    }
    #[cfg(loom)]
    crate::sync::thread_local! {
        static LOCAL: Local = Local::new();
    }

    /// Registers the fork repair below (once per process).
    #[inline]
    pub(super) fn watch_fork() {
        static REGISTERED: crate::fork::Registered = crate::fork::Registered::new();
        crate::fork::on_child(&REGISTERED, repair_after_fork);
    }

    /// In the child of a `fork()`: the forking thread's node may be pending for a late
    /// successor that was another thread, which no longer exists: free it.
    fn repair_after_fork() {
        let _ = LOCAL.try_with(|l| {
            if l.node.next.load(Ordering::Relaxed) == GONE {
                l.node.next.store(core::ptr::null_mut(), Ordering::Relaxed);
            }
        });
    }

    #[inline]
    pub(super) fn with_node<R>(f: impl FnOnce(&Node) -> R) -> Option<R> {
        LOCAL
            .try_with(|l| {
                if l.busy.swap(true, Ordering::Relaxed) {
                    return None;
                }
                // Same-thread ordering against a signal handler: the mark is set before the
                // node is touched, and cleared after.
                compiler_fence(CompilerOrdering::SeqCst);
                let r = f(&l.node);
                compiler_fence(CompilerOrdering::SeqCst);
                l.busy.store(false, Ordering::Relaxed);
                Some(r)
            })
            .ok()
            .flatten()
    }

    pub(super) fn note_held(lock: usize) {
        let _ = LOCAL.try_with(|l| {
            if let Some(slot) = l.held.iter().find(|h| h.get() == 0) {
                slot.set(lock);
            }
        });
    }

    pub(super) fn note_released(lock: usize) {
        let _ = LOCAL.try_with(|l| {
            if let Some(slot) = l.held.iter().find(|h| h.get() == lock) {
                slot.set(0);
            }
        });
    }

    pub(super) fn holds(lock: usize) -> bool {
        LOCAL
            .try_with(|l| l.held.iter().any(|h| h.get() == lock))
            .unwrap_or(false)
    }
}

/// Per-flow node storage: a static node per vCPU (`guest`: one flow per vCPU, no TLS).
#[cfg(ecs_guest)]
mod slots {
    use super::{DEBUG_HELD, Node};
    use crate::sync::{AtomicBool, AtomicUsize, Ordering};
    use ecs_sys::abi::MAX_VCPUS;

    /// One vCPU's node and marks. The marks are touched only by the owning vCPU (`Relaxed`).
    struct Slot {
        node: Node,
        busy: AtomicBool,
        held: [AtomicUsize; DEBUG_HELD],
    }

    static SLOTS: [Slot; MAX_VCPUS as usize] = [const {
        Slot {
            node: Node::new(),
            busy: AtomicBool::new(false),
            held: [const { AtomicUsize::new(0) }; DEBUG_HELD],
        }
    }; MAX_VCPUS as usize];

    /// No fork inside a guest.
    #[inline(always)]
    pub(super) fn watch_fork() {}

    fn mine() -> Option<&'static Slot> {
        SLOTS.get(crate::cs::vcpu_id() as usize)
    }

    #[inline]
    pub(super) fn with_node<R>(f: impl FnOnce(&Node) -> R) -> Option<R> {
        let s = mine()?;
        if s.busy.load(Ordering::Relaxed) {
            return None;
        }
        s.busy.store(true, Ordering::Relaxed);
        let r = f(&s.node);
        s.busy.store(false, Ordering::Relaxed);
        Some(r)
    }

    pub(super) fn note_held(lock: usize) {
        if let Some(s) = mine()
            && let Some(slot) = s.held.iter().find(|h| h.load(Ordering::Relaxed) == 0)
        {
            slot.store(lock, Ordering::Relaxed);
        }
    }

    pub(super) fn note_released(lock: usize) {
        if let Some(s) = mine()
            && let Some(slot) = s.held.iter().find(|h| h.load(Ordering::Relaxed) == lock)
        {
            slot.store(0, Ordering::Relaxed);
        }
    }

    pub(super) fn holds(lock: usize) -> bool {
        mine().is_some_and(|s| s.held.iter().any(|h| h.load(Ordering::Relaxed) == lock))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_alias_only_after_2_22_generations() {
        // Review finding (issue 9): the tag was the generation modulo 64.
        assert_ne!(generation_tag(0), generation_tag(64));
        assert_ne!(generation_tag(0), generation_tag(1 << 21));
        assert_eq!(
            generation_tag(0),
            generation_tag(1 << 22),
            "documented alias"
        );
        for g in [1, 63, 64, 65, 4095, (1 << 22) - 1] {
            let tag = generation_tag(g);
            assert_ne!(tag, 0, "generation {g}");
            assert_eq!(tag & !TAG_MASK, 0, "generation {g} stays in the tag bits");
        }
        let node = Node::new();
        let p = ptr::from_ref(&node).cast_mut();
        assert!(taggable(p), "a thread's node leaves the tag bits clear");
        let t = p.map_addr(|a| a | generation_tag(12345));
        assert_eq!(untagged(t), p);
    }

    /// Issue 9: the new holder waited for a late successor's link (a flow between its `tail`
    /// swap and its link) while holding the word, so a successor descheduled there stalled
    /// every acquisition. Here the late successor is faked by hand and links only after the
    /// holder has finished: the holder must not wait for it.
    #[test]
    fn holder_does_not_wait_for_a_late_successor() {
        use std::sync::{Arc, mpsc};
        use std::time::Duration;
        let m = Arc::new(RawMcsMutex::new());
        let g = m.lock();
        let (done_tx, done_rx) = mpsc::channel();
        let (exit_tx, exit_rx) = mpsc::channel::<()>();
        let m2 = Arc::clone(&m);
        let t = std::thread::spawn(move || {
            let h = m2.lock(); // queues: the word is held
            // SAFETY: `h` is the state of the acquisition above.
            unsafe { m2.unlock(h) };
            // Another acquisition while the late successor has still not linked: the node is
            // pending, so this one waits node-less (here it finds the word free).
            let h = m2.lock();
            // SAFETY: as above.
            unsafe { m2.unlock(h) };
            done_tx.send(()).unwrap();
            // The thread's node must outlive the late link: keep the thread until then.
            exit_rx.recv().unwrap();
        });
        while !m.has_waiters() {
            std::thread::yield_now();
        }
        // The late successor: swapped into `tail`, not linked.
        let late = Box::leak(Box::new(Node::new()));
        let pred = untagged(m.tail.swap(tagged(late), Ordering::AcqRel));
        assert!(!pred.is_null());
        // SAFETY: `g` is the state of the acquisition above.
        unsafe { m.unlock(g) };
        done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the holder waited for a successor that had not linked");
        // Now the late successor links, finds GONE, and is the head: it takes the word and
        // leaves the queue as `lock_queued` would.
        // SAFETY: `pred` is the waiting thread's node, pending until this link.
        let prev = unsafe { &*pred }.next.swap(late, Ordering::AcqRel);
        assert_eq!(prev, GONE, "the holder passed head-ness on through GONE");
        m.take_as_head();
        assert!(
            m.tail
                .compare_exchange(
                    tagged(late),
                    ptr::null_mut(),
                    Ordering::AcqRel,
                    Ordering::Relaxed
                )
                .is_ok()
        );
        // SAFETY: taken by `take_as_head` above, on this thread.
        unsafe { m.unlock(GuardNoSend::new()) };
        exit_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(!m.is_locked() && !m.has_waiters());
    }

    #[test]
    fn word_names_holder_and_guard_needs_no_node() {
        let a = RawMcsMutex::new();
        let b = RawMcsMutex::new();
        assert_eq!(a.holder_vcpu(), None);
        let ga = a.lock();
        let gb = b.lock();
        assert_eq!(a.holder_vcpu(), Some(ecs_sys::vcpu_id()));
        assert!(!a.has_waiters() && !b.has_waiters());
        // Holding needs no node: this thread's node is free for a wait.
        assert_eq!(slots::with_node(|_| ()), Some(()));
        // Out of order release.
        // SAFETY: each guard is the state of its lock's acquisition above.
        unsafe { a.unlock(ga) };
        // SAFETY: as above.
        unsafe { b.unlock(gb) };
        assert!(!a.is_locked() && !b.is_locked());
    }

    #[test]
    fn deep_nesting_needs_no_fallback() {
        let locks: Vec<RawMcsMutex> = (0..12).map(|_| RawMcsMutex::new()).collect();
        let depth = ecs_sys::cs_depth();
        let guards: Vec<GuardNoSend> = locks.iter().map(RawMcsMutex::lock).collect();
        assert_eq!(ecs_sys::cs_depth(), depth + locks.len() as u32);
        assert!(locks.iter().all(|l| l.try_lock().is_none()));
        for (l, g) in locks.iter().zip(guards) {
            // SAFETY: each guard is the state of its lock's acquisition above.
            unsafe { l.unlock(g) };
        }
        assert!(!locks.iter().any(RawMcsMutex::is_locked));
        assert_eq!(ecs_sys::cs_depth(), depth);
    }

    /// Waits until `m` has a queued flow (bounded by iterations, not time).
    fn wait_queued(m: &RawMcsMutex) {
        for _ in 0..10_000_000u32 {
            if m.has_waiters() {
                return;
            }
            std::thread::yield_now();
        }
        panic!("no waiter queued");
    }

    #[test]
    fn arrival_barges_past_queued_waiter() {
        use std::sync::Arc;
        let m = Arc::new(RawMcsMutex::new());
        let g = m.lock();
        let m2 = Arc::clone(&m);
        let t = std::thread::spawn(move || {
            let g = m2.lock();
            // SAFETY: `g` is the state of the acquisition above.
            unsafe { m2.unlock(g) };
        });
        wait_queued(&m);
        // SAFETY: `g` is the state of the acquisition above.
        unsafe { m.unlock(g) };
        // A free word can be taken although a flow is (or just was) queued; either way the
        // queued flow gets it eventually.
        if let Some(g) = m.try_lock() {
            // SAFETY: `g` is the state of the acquisition above.
            unsafe { m.unlock(g) };
        }
        t.join().unwrap();
        assert!(!m.is_locked() && !m.has_waiters());
    }

    #[test]
    fn fair_unlock_reserves_word_for_head() {
        use std::sync::Arc;
        let m = Arc::new(RawMcsMutex::new());
        let g = m.lock();
        let m2 = Arc::clone(&m);
        let t = std::thread::spawn(move || {
            let g = m2.lock();
            // Queued (the main thread waits for that): the queue head entered exactly once.
            assert_eq!(ecs_sys::cs_depth(), 1);
            // SAFETY: `g` is the state of the acquisition above.
            unsafe { m2.unlock(g) };
        });
        wait_queued(&m);
        // SAFETY: `g` is the state of the acquisition above.
        unsafe { m.unlock_fair(g) };
        // Reserved for (or already taken by) the queued flow: no arrival can take it while the
        // flow still waits. If the flow already took and released it, `try_lock` may succeed:
        // then release it again (the test used to leave it held, and fail below).
        if let Some(g) = m.try_lock() {
            assert!(
                !m.has_waiters(),
                "an arrival took a word reserved for the queue head"
            );
            // SAFETY: `g` is the state of the acquisition just above.
            unsafe { m.unlock(g) };
        }
        t.join().unwrap();
        assert!(!m.is_locked() && !m.has_waiters());
    }

    #[test]
    fn node_less_fallback_excludes() {
        // Threads whose node is in use (`with_node` entered around their work) wait without
        // queueing; they mix with queued waiters and barging arrivals on one counter.
        use std::sync::Arc;
        let m = Arc::new(crate::McsMutex::new(0u64));
        let hs: Vec<_> = (0..6)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    let work = || {
                        for i in 0..300u64 {
                            let mut g = m.lock();
                            let v = core::hint::black_box(*g);
                            if i % 50 == 0 {
                                std::thread::yield_now();
                            }
                            *g = v + 1;
                        }
                    };
                    if t % 2 == 0 {
                        // Our node is busy inside: every contended `lock` is node-less.
                        assert!(slots::with_node(|_| work()).is_some());
                    } else {
                        work();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock(), 6 * 300);
        // SAFETY: only a snapshot query; nothing is unlocked through the raw mutex.
        assert!(!unsafe { m.raw() }.has_waiters());
    }

    /// Review finding: `unlock_fair` and `bump` saw only queued waiters, so with node-less
    /// waiters only (every contended waiter while the host reports over-commit, or a flow
    /// without a usable node) `bump` kept the lock and they never got in. Here the waiter's
    /// node is busy, so it waits node-less; the holder bumps until the waiter has had the lock
    /// (bounded by iterations: without the fix it never does).
    #[test]
    fn bump_yields_to_a_node_less_waiter() {
        use std::sync::Arc;
        let m = Arc::new(crate::McsMutex::new(0u32));
        let mut g = m.lock();
        let m2 = Arc::clone(&m);
        let t = std::thread::spawn(move || {
            assert!(slots::with_node(|_| *m2.lock() += 1).is_some());
        });
        let mut bumps = 0u32;
        while *g == 0 && bumps < 20_000 {
            crate::McsMutexGuard::bump(&mut g);
            std::thread::yield_now();
            bumps += 1;
        }
        assert_eq!(
            *g, 1,
            "the node-less waiter never got the lock in {bumps} bumps"
        );
        drop(g);
        t.join().unwrap();
        // SAFETY: only snapshot queries; nothing is unlocked through the raw mutex.
        let raw = unsafe { m.raw() };
        assert!(!raw.is_locked() && !raw.has_waiters());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "locked twice")]
    fn debug_reentrant_lock_panics() {
        let m = RawMcsMutex::new();
        let _g = m.lock();
        let _ = m.lock();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "unlocked mutex")]
    fn debug_unlock_with_foreign_guard_panics() {
        let a = RawMcsMutex::new();
        let b = RawMcsMutex::new();
        let ga = a.lock();
        // SAFETY: deliberately violated to check the debug diagnostic, which fires before any
        // state changes.
        unsafe { b.unlock(ga) };
    }

    #[test]
    fn moved_locked_mutex_unlocks_and_relocks() {
        // lock_api allows moving a held mutex one owns exclusively; the same thread can then
        // lock a new mutex at the old address.
        let mut slot = [RawMcsMutex::new()];
        let g = slot[0].lock();
        let moved = core::mem::take(&mut slot[0]);
        let g2 = slot[0].lock(); // same address as the held one, but free: fast path
        // SAFETY: `g` is the state of `moved`'s acquisition (it moved with its words).
        unsafe { moved.unlock(g) };
        // SAFETY: `g2` is the state of the acquisition above.
        unsafe { slot[0].unlock(g2) };
        assert!(!moved.is_locked() && !slot[0].is_locked());
    }

    #[test]
    fn forgotten_guard_leaves_no_node_behind() {
        // A thread forgets a guard and exits: the lock stays held, but no node is queued.
        let m = std::sync::Arc::new(crate::McsMutex::new(()));
        let m2 = std::sync::Arc::clone(&m);
        std::thread::spawn(move || core::mem::forget(m2.lock()))
            .join()
            .unwrap();
        // SAFETY: only a snapshot query; nothing is unlocked through the raw mutex.
        assert!(m.is_locked() && !unsafe { m.raw() }.has_waiters());
        assert!(m.try_lock().is_none());
        // Other threads still use other MCS locks, contended.
        let other = std::sync::Arc::new(RawMcsMutex::new());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let other = std::sync::Arc::clone(&other);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let g = other.lock();
                        // SAFETY: `g` is the state of the acquisition above.
                        unsafe { other.unlock(g) };
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(!other.is_locked() && !other.has_waiters());
    }
}
