//! `RawMcsMutex`: the MCS queue lock, with queue nodes in stable per-thread (per-vCPU) slots.
//!
//! # Algorithm
//!
//! Mellor-Crummey & Scott, "Algorithms for scalable synchronization on shared-memory
//! multiprocessors", ACM TOCS 9(1), 1991, figure 5 (the list-based queue lock):
//!
//! - **acquire**: initialise my node (`next = null`, `locked = true`) and swap it into `tail`.
//!   A null predecessor means the lock was free. Otherwise link myself (`pred.next = me`) and
//!   spin on *my own* node's `locked` flag, so each waiter spins on its own cache line.
//!   Uncontended this is one CAS `tail: null -> me`.
//! - **release**: if `me.next` is null, CAS `tail: me -> null`; if that fails a successor is
//!   between its swap and its link, so wait for `me.next`. Then clear `next.locked` (the
//!   hand-off). Every release hands the lock to the next waiter in FIFO order.
//!
//! # Where the nodes live
//!
//! lock_api 0.5 guards are movable (no `Pin`), so a node cannot live in the guard. As Linux's
//! qspinlock does per CPU, each thread (or vCPU) owns [`NODES_PER_FLOW`] nodes, one per nesting
//! level of MCS locks held or awaited at once; the guard state ([`McsHandle`]) names one.
//! - `std`: a `thread_local!` names a node block that is leaked, so it stays valid forever even
//!   if a guard is `mem::forget`ten and its thread exits while the node is still queued. At
//!   thread exit the block goes to a global free list for the next thread, but only if none of
//!   its nodes is in use (a forgotten guard keeps its block out of circulation for good). No
//!   heap allocation per acquisition; one per thread at most, and none once blocks recycle.
//!   Under loom blocks are not recycled (loom objects cannot outlive one execution).
//! - `guest` (`no_std`, one flow per vCPU, no TLS): a static array of node blocks indexed by
//!   `cs::vcpu_id()`, bounded by `ecs_sys::abi::MAX_VCPUS`.
//! - neither: `McsMutex` is not available (there is nowhere to keep a stable node).
//!
//! **Fallback.** When a flow nests deeper than its nodes, when its vCPU id is out of range, or
//! when its thread-local storage is already destroyed (a lock taken in a TLS destructor), it
//! acquires *without a node*: it waits until `tail` is null and CASes in the `ANON` sentinel.
//! A waiter whose swap returns `ANON` cannot link into a node, so it publishes itself in the
//! `handoff` word instead, and the anonymous holder's release hands off through it. At most one
//! `ANON` is ever queued (it enters only into an empty queue), so one `handoff` word suffices.
//! The fallback is correct but not FIFO for the anonymous acquirer (it barges only into an
//! empty queue, and can wait long under sustained contention).
//!
//! # Enlightenment
//!
//! The holder is an eCS critical section ([`cs::enter`] / [`cs::exit`]). Each node records its
//! owner's vCPU (live hints only). A waiter copies its predecessor's vCPU before linking and,
//! after [`DAMP_ROUNDS`] backoff rounds of plain spinning, directed-yields to it whenever that
//! vCPU is preempted: the predecessor is the holder or the waiter who will hand the lock on, so
//! a preempted waiter in the middle of the queue (lock-waiter preemption) gets the pCPU of the
//! flow right behind it. Waiters never halt and never act on the hint before spinning a while:
//! Linux once let qspinlock waiters halt on a preempted predecessor and throughput under heavy
//! over-commit fell about 8x (DESIGN.md, pitfalls).
//!
//! # Words
//!
//! | word | value | meaning |
//! |---|---|---|
//! | `tail` | null | free |
//! | `tail` | `ANON` (address 1) | held by a node-less (fallback) holder, no waiters |
//! | `tail` | node address | held; this node is the last in the queue (holder or waiter) |
//! | `handoff` | null / node | the successor of a node-less holder, published by that successor |
//! | `node.locked` | `true` / `false` | still waiting / lock handed to this node |
//! | `node.next` | null / node | successor not linked yet / successor |
//! | `node.vcpu` | `u32` | owner's vCPU (live hints only) |
//!
//! # Misuse caught in debug builds
//!
//! - A flow that `lock`s an MCS lock it already holds or awaits through one of its nodes panics
//!   (instead of deadlocking behind itself); `try_lock` just fails. Not caught when the first
//!   acquisition was node-less.
//! - Unlocking with a handle from another lock (raw API) panics, as does unlocking a lock that
//!   is not held through a node-less handle.

use crate::backoff::Backoff;
use crate::cs;
use crate::sync::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use core::marker::PhantomData;
use core::ptr;

/// Nodes per thread (per vCPU in the guest): how many MCS locks one flow can hold or await at
/// once before falling back to node-less acquisition. Linux's qspinlock keeps 4 per CPU (task,
/// soft IRQ, hard IRQ, NMI); here 4 is a nesting depth of distinct MCS locks.
pub(crate) const NODES_PER_FLOW: usize = 4;

/// Backoff rounds a queued waiter spins before it acts on its predecessor's preempted hint.
const DAMP_ROUNDS: u32 = 16;

/// A queue node. One cache line each (natively), so neighbours' spinning does not collide.
#[cfg_attr(not(loom), repr(align(64)))]
#[derive(Debug)]
pub(crate) struct Node {
    /// `true` while the owner waits; the predecessor clears it to hand the lock over.
    locked: AtomicBool,
    /// The successor, once it has linked itself.
    next: AtomicPtr<Node>,
    /// The owner's vCPU (written with live hints only).
    vcpu: AtomicU32,
}

impl Node {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            next: AtomicPtr::new(ptr::null_mut()),
            vcpu: AtomicU32::new(0),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            next: AtomicPtr::new(ptr::null_mut()),
            vcpu: AtomicU32::new(0),
        }
    }
}

/// The tail value of a node-less holder. Never dereferenced; nodes are aligned, so no node
/// has this address.
#[inline(always)]
fn anon() -> *mut Node {
    ptr::without_provenance_mut(1)
}

/// Guard state of one [`RawMcsMutex`] acquisition: a handle to the queue node it used (or
/// none, for a node-less fallback acquisition).
///
/// `!Send`: the node belongs to the acquiring thread (vCPU), and so does the critical-section
/// depth. `Sync`: a shared reference gives no access to the node.
#[derive(Debug)]
pub struct McsHandle {
    /// The node, or null for a node-less acquisition.
    node: *mut Node,
    /// The node's index in its flow's block.
    index: u8,
    _not_send: PhantomData<*mut ()>,
}

// SAFETY: `McsHandle` has no methods usable through `&McsHandle`; sharing a reference cannot
// touch the node.
unsafe impl Sync for McsHandle {}

/// A raw MCS queue lock; see the [module docs](self) for the protocol and where nodes live.
///
/// Use it through [`McsMutex`](crate::McsMutex). The inherent methods expose the same protocol
/// as the `lock_api` impls, for models and low-level code.
///
/// ```
/// use ecs_locks::RawMcsMutex;
///
/// let raw = RawMcsMutex::new();
/// let h = raw.lock();
/// assert!(raw.try_lock().is_none());
/// // SAFETY: `h` is the state of the acquisition above.
/// unsafe { raw.unlock(h) };
/// assert!(!raw.is_locked());
/// ```
#[derive(Debug)]
pub struct RawMcsMutex {
    /// Last node in the queue, `ANON`, or null when free.
    tail: AtomicPtr<Node>,
    /// Successor of a node-less holder.
    handoff: AtomicPtr<Node>,
}

impl RawMcsMutex {
    /// A new, unlocked mutex.
    #[cfg(not(loom))]
    #[inline]
    pub const fn new() -> Self {
        Self {
            tail: AtomicPtr::new(ptr::null_mut()),
            handoff: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// A new, unlocked mutex (not `const` under loom, whose atomics are not).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            tail: AtomicPtr::new(ptr::null_mut()),
            handoff: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Queue nodes per thread (per vCPU in the guest): MCS locks one flow can hold or await
    /// at once before its acquisitions fall back to node-less (see the module docs).
    pub const NODES_PER_FLOW: usize = NODES_PER_FLOW;

    #[inline(always)]
    fn id(&self) -> usize {
        ptr::from_ref(self).addr()
    }

    /// Acquires the mutex, queueing (FIFO) behind the current holder and waiters.
    ///
    /// # Panics
    ///
    /// In debug builds, if this flow already holds or awaits this lock through a node.
    #[inline]
    pub fn lock(&self) -> McsHandle {
        let Some((node, index)) = slots::claim(self.id(), true) else {
            return self.lock_anon();
        };
        // SAFETY: `claim` hands out a node of this flow's block that no acquisition uses;
        // blocks are never freed, so the node is valid.
        let n = unsafe { &*node };
        n.next.store(ptr::null_mut(), Ordering::Relaxed);
        if ecs_sys::LIVE_HINTS {
            n.vcpu.store(cs::vcpu_id(), Ordering::Relaxed);
        }
        // Release: a successor that finds `node` in `tail` writes `node.next` after our reset.
        if self
            .tail
            .compare_exchange(ptr::null_mut(), node, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            self.lock_queued(n, node);
        }
        cs::enter();
        McsHandle {
            node,
            index,
            _not_send: PhantomData,
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_queued(&self, n: &Node, node: *mut Node) {
        n.locked.store(true, Ordering::Relaxed);
        let pred = self.tail.swap(node, Ordering::AcqRel);
        if pred.is_null() {
            return; // freed between our CAS and our swap
        }
        let pred_vcpu = if pred == anon() {
            self.handoff.store(node, Ordering::Release);
            None
        } else {
            // SAFETY: `pred` was the tail, so it is a node of some flow's block (blocks are
            // never freed) that stays in use until its owner has handed the lock on, which
            // needs our link below; we touch it only before linking.
            let p = unsafe { &*pred };
            let v = ecs_sys::LIVE_HINTS.then(|| p.vcpu.load(Ordering::Relaxed));
            p.next.store(node, Ordering::Release);
            v
        };
        let mut backoff = Backoff::new();
        let mut rounds = 0u32;
        while n.locked.load(Ordering::Acquire) {
            // Damped: act on the predecessor's preempted hint only after spinning a while.
            let target = if rounds >= DAMP_ROUNDS {
                pred_vcpu
            } else {
                rounds += 1;
                None
            };
            backoff.snooze(target);
        }
    }

    /// Node-less acquisition (see "Fallback" in the module docs).
    #[cold]
    #[inline(never)]
    fn lock_anon(&self) -> McsHandle {
        let mut backoff = Backoff::new();
        loop {
            if self.tail.load(Ordering::Relaxed).is_null()
                && self
                    .tail
                    .compare_exchange(
                        ptr::null_mut(),
                        anon(),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                cs::enter();
                return McsHandle {
                    node: ptr::null_mut(),
                    index: 0,
                    _not_send: PhantomData,
                };
            }
            backoff.snooze(None);
        }
    }

    /// Acquires the mutex if nobody holds or waits for it.
    #[inline]
    pub fn try_lock(&self) -> Option<McsHandle> {
        let (node, index, tail) = match slots::claim(self.id(), false) {
            Some((node, index)) => {
                // SAFETY: as in `lock`.
                let n = unsafe { &*node };
                n.next.store(ptr::null_mut(), Ordering::Relaxed);
                if ecs_sys::LIVE_HINTS {
                    n.vcpu.store(cs::vcpu_id(), Ordering::Relaxed);
                }
                (node, index, node)
            }
            None => (ptr::null_mut(), 0, anon()),
        };
        if self
            .tail
            .compare_exchange(ptr::null_mut(), tail, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            cs::enter();
            Some(McsHandle {
                node,
                index,
                _not_send: PhantomData,
            })
        } else {
            if !node.is_null() {
                slots::release(index);
            }
            None
        }
    }

    /// Releases the mutex, handing it to the next waiter if there is one.
    ///
    /// # Safety
    ///
    /// The mutex must be held in the current context, and `handle` must be the state returned
    /// by the [`lock`](Self::lock) or [`try_lock`](Self::try_lock) that acquired it.
    #[inline]
    pub unsafe fn unlock(&self, handle: McsHandle) {
        if handle.node.is_null() {
            self.unlock_anon();
        } else {
            if cfg!(debug_assertions) {
                slots::check_owner(handle.index, self.id());
            }
            // SAFETY: the caller's contract: `handle` names the node that holds this lock.
            unsafe { self.unlock_node(handle.node) };
            slots::release(handle.index);
        }
        cs::exit();
    }

    /// # Safety
    ///
    /// `node` holds this lock.
    #[inline]
    unsafe fn unlock_node(&self, node: *mut Node) {
        // SAFETY: `node` is ours (caller) and blocks are never freed.
        let n = unsafe { &*node };
        let mut next = n.next.load(Ordering::Acquire);
        if next.is_null() {
            if self
                .tail
                .compare_exchange(node, ptr::null_mut(), Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            next = Self::wait_for_link(n);
        }
        // SAFETY: `next` linked itself and waits for this store; its node is in use until it
        // has the lock, so it is valid. This is our last access to it.
        unsafe { (*next).locked.store(false, Ordering::Release) };
    }

    /// A successor swapped itself into `tail` but has not linked yet: wait for the link.
    #[cold]
    #[inline(never)]
    fn wait_for_link(n: &Node) -> *mut Node {
        let mut backoff = Backoff::new();
        loop {
            let next = n.next.load(Ordering::Acquire);
            if !next.is_null() {
                return next;
            }
            backoff.snooze(None);
        }
    }

    #[cold]
    #[inline(never)]
    fn unlock_anon(&self) {
        if cfg!(debug_assertions) {
            assert!(
                !self.tail.load(Ordering::Relaxed).is_null(),
                "RawMcsMutex::unlock called on an unlocked mutex"
            );
        }
        if self
            .tail
            .compare_exchange(
                anon(),
                ptr::null_mut(),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            return;
        }
        let mut backoff = Backoff::new();
        loop {
            if !self.handoff.load(Ordering::Relaxed).is_null() {
                let next = self.handoff.swap(ptr::null_mut(), Ordering::Acquire);
                // SAFETY: the successor published its node and waits for this store; its node
                // is in use (valid) until it has the lock.
                unsafe { (*next).locked.store(false, Ordering::Release) };
                return;
            }
            backoff.snooze(None);
        }
    }

    /// Whether the mutex is held (a momentary snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        !self.tail.load(Ordering::Relaxed).is_null()
    }

    /// Whether flows wait behind the holder of `handle` (a momentary snapshot).
    #[inline]
    pub fn has_waiters(&self, handle: &McsHandle) -> bool {
        let tail = self.tail.load(Ordering::Relaxed);
        if handle.node.is_null() {
            tail != anon()
        } else {
            tail != handle.node
        }
    }
}

impl Default for RawMcsMutex {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the holder is the queue head: a flow returns from `lock` only after finding a null
// tail or being handed the lock through its `locked` flag (`Release` store, `Acquire` load),
// and `try_lock` only through the CAS `null -> node`; `unlock` hands to exactly one successor or
// empties the queue with a `Release` CAS. Nodes are never freed, so a forgotten handle leaves
// the lock held forever but never dangling. Unwinding: the only panics are debug checks that
// run before any state changes (`claim` in `lock`, the owner/unlocked checks in `unlock`).
unsafe impl lock_api::RawMutex for RawMcsMutex {
    #[cfg(not(loom))]
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self::new();
    #[cfg(loom)]
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = panic!("loom atomics are not const: build with RawMcsMutex::new()");

    type Guard = McsHandle;

    #[inline]
    fn lock(&self) -> McsHandle {
        RawMcsMutex::lock(self)
    }

    #[inline]
    fn try_lock(&self) -> Option<McsHandle> {
        RawMcsMutex::try_lock(self)
    }

    #[inline]
    unsafe fn unlock(&self, guard: McsHandle) {
        // SAFETY: forwarded caller contract.
        unsafe { RawMcsMutex::unlock(self, guard) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        RawMcsMutex::is_locked(self)
    }
}

// SAFETY: every unlock hands the lock to the queue successor (FIFO), the fair protocol. `bump`
// re-queues only when there are waiters, restoring a valid handle or aborting.
unsafe impl lock_api::RawMutexFair for RawMcsMutex {
    #[inline]
    unsafe fn unlock_fair(&self, guard: McsHandle) {
        // SAFETY: forwarded caller contract.
        unsafe { RawMcsMutex::unlock(self, guard) }
    }

    #[inline]
    unsafe fn bump(&self, guard: &mut McsHandle) {
        if self.has_waiters(guard) {
            crate::raw_ticket::abort_on_unwind(|| {
                // SAFETY: the caller holds the lock with `guard`; its state is moved out and
                // replaced by a fresh acquisition before returning (or the process aborts).
                unsafe {
                    let old = ptr::read(guard);
                    RawMcsMutex::unlock(self, old);
                    ptr::write(guard, RawMcsMutex::lock(self));
                }
            });
        }
    }
}

/// Per-flow node storage: a thread-local block (`std`) or a per-vCPU block (`guest`).
///
/// `claim(lock, check)` returns a free node of the current flow and marks it busy (and, in
/// debug builds with `check`, panics if the flow already uses a node for `lock`);
/// `release(index)` frees it. Only the owning flow touches the busy marks.
#[cfg(not(feature = "guest"))]
mod slots {
    use super::{NODES_PER_FLOW, Node};
    use core::cell::Cell;

    /// One thread's nodes. Leaked: valid for the rest of the program.
    struct Block {
        nodes: [Node; NODES_PER_FLOW],
    }

    /// The thread's view of its block.
    struct Local {
        block: &'static Block,
        /// Bit `i`: node `i` is in use by an acquisition (or a forgotten guard).
        busy: Cell<u8>,
        /// Lock each busy node is used for (debug reentrancy check).
        held: [Cell<usize>; NODES_PER_FLOW],
    }

    #[cfg(not(loom))]
    static FREE: std::sync::Mutex<Vec<&'static Block>> = std::sync::Mutex::new(Vec::new());

    impl Local {
        fn new() -> Self {
            #[cfg(not(loom))]
            let recycled = FREE.lock().ok().and_then(|mut f| f.pop());
            #[cfg(loom)]
            let recycled = None;
            let block = recycled.unwrap_or_else(|| {
                Box::leak(Box::new(Block {
                    nodes: core::array::from_fn(|_| Node::new()),
                }))
            });
            Self {
                block,
                busy: Cell::new(0),
                held: Default::default(),
            }
        }
    }

    impl Drop for Local {
        fn drop(&mut self) {
            // A busy node may still be queued (a forgotten guard): then the block is never
            // reused. Otherwise no other flow can reach its nodes any more.
            #[cfg(not(loom))]
            if self.busy.get() == 0
                && let Ok(mut free) = FREE.lock()
            {
                free.push(self.block);
            }
        }
    }

    crate::sync::thread_local! {
        static LOCAL: Local = Local::new();
    }

    pub(super) fn claim(lock: usize, check: bool) -> Option<(*mut Node, u8)> {
        LOCAL
            .try_with(|l| {
                let busy = l.busy.get();
                if cfg!(debug_assertions) && check {
                    for (i, h) in l.held.iter().enumerate() {
                        assert!(
                            busy & (1 << i) == 0 || h.get() != lock,
                            "McsMutex locked twice by the same thread (reentrant lock would deadlock)"
                        );
                    }
                }
                let i = (!busy).trailing_zeros() as usize;
                if i >= NODES_PER_FLOW {
                    return None;
                }
                l.busy.set(busy | (1 << i));
                l.held[i].set(lock);
                Some((core::ptr::from_ref(&l.block.nodes[i]).cast_mut(), i as u8))
            })
            .ok()
            .flatten()
    }

    pub(super) fn release(index: u8) {
        // If the thread-local is gone, its destructor saw this node busy and leaked the block.
        let _ = LOCAL.try_with(|l| l.busy.set(l.busy.get() & !(1 << index)));
    }

    pub(super) fn check_owner(index: u8, lock: usize) {
        let _ = LOCAL.try_with(|l| {
            assert!(
                l.busy.get() & (1 << index) != 0 && l.held[index as usize].get() == lock,
                "RawMcsMutex::unlock called with a handle that does not hold this lock"
            );
        });
    }

    #[cfg(all(test, not(loom)))]
    pub(super) fn busy() -> u8 {
        LOCAL.with(|l| l.busy.get())
    }
}

/// Per-flow node storage: a static block per vCPU (`guest`: one flow per vCPU, no TLS).
#[cfg(feature = "guest")]
mod slots {
    use super::{NODES_PER_FLOW, Node};
    use crate::sync::{AtomicU32, AtomicUsize, Ordering};
    use ecs_sys::abi::MAX_VCPUS;

    /// One vCPU's nodes. The atomics are touched only by the owning vCPU (`Relaxed`).
    struct Block {
        nodes: [Node; NODES_PER_FLOW],
        busy: AtomicU32,
        held: [AtomicUsize; NODES_PER_FLOW],
    }

    static BLOCKS: [Block; MAX_VCPUS as usize] = [const {
        Block {
            nodes: [const { Node::new() }; NODES_PER_FLOW],
            busy: AtomicU32::new(0),
            held: [const { AtomicUsize::new(0) }; NODES_PER_FLOW],
        }
    }; MAX_VCPUS as usize];

    fn mine() -> Option<&'static Block> {
        BLOCKS.get(crate::cs::vcpu_id() as usize)
    }

    pub(super) fn claim(lock: usize, check: bool) -> Option<(*mut Node, u8)> {
        let b = mine()?;
        let busy = b.busy.load(Ordering::Relaxed);
        if cfg!(debug_assertions) && check {
            for (i, h) in b.held.iter().enumerate() {
                assert!(
                    busy & (1 << i) == 0 || h.load(Ordering::Relaxed) != lock,
                    "McsMutex locked twice by the same vCPU (reentrant lock would deadlock)"
                );
            }
        }
        let i = (!busy).trailing_zeros() as usize;
        if i >= NODES_PER_FLOW {
            return None;
        }
        b.busy.store(busy | (1 << i), Ordering::Relaxed);
        b.held[i].store(lock, Ordering::Relaxed);
        Some((core::ptr::from_ref(&b.nodes[i]).cast_mut(), i as u8))
    }

    pub(super) fn release(index: u8) {
        if let Some(b) = mine() {
            b.busy.fetch_and(!(1 << index), Ordering::Relaxed);
        }
    }

    pub(super) fn check_owner(index: u8, lock: usize) {
        if let Some(b) = mine() {
            assert!(
                b.busy.load(Ordering::Relaxed) & (1 << index) != 0
                    && b.held[index as usize].load(Ordering::Relaxed) == lock,
                "RawMcsMutex::unlock called with a handle that does not hold this lock"
            );
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_claimed_and_released() {
        let a = RawMcsMutex::new();
        let b = RawMcsMutex::new();
        let before = slots::busy();
        let ha = a.lock();
        let hb = b.lock();
        assert_eq!(slots::busy().count_ones(), before.count_ones() + 2);
        assert!(a.try_lock().is_none());
        assert_eq!(
            slots::busy().count_ones(),
            before.count_ones() + 2,
            "failed try_lock frees"
        );
        // Out of order release: handles are independent.
        // SAFETY: each handle is the state of its lock's acquisition above.
        unsafe { a.unlock(ha) };
        // SAFETY: as above.
        unsafe { b.unlock(hb) };
        assert_eq!(slots::busy(), before);
    }

    #[test]
    fn nesting_deeper_than_nodes_falls_back() {
        let locks: Vec<RawMcsMutex> = (0..NODES_PER_FLOW + 3)
            .map(|_| RawMcsMutex::new())
            .collect();
        let depth = ecs_sys::cs_depth();
        let handles: Vec<McsHandle> = locks.iter().map(RawMcsMutex::lock).collect();
        assert_eq!(ecs_sys::cs_depth(), depth + locks.len() as u32);
        let anon_count = handles.iter().filter(|h| h.node.is_null()).count();
        assert_eq!(anon_count, 3);
        assert!(locks.iter().all(RawMcsMutex::is_locked));
        assert!(locks.iter().all(|l| l.try_lock().is_none()));
        for (l, h) in locks.iter().zip(handles) {
            // SAFETY: each handle is the state of its lock's acquisition above.
            unsafe { l.unlock(h) };
        }
        assert!(!locks.iter().any(RawMcsMutex::is_locked));
        assert_eq!(ecs_sys::cs_depth(), depth);
    }

    #[test]
    fn anon_holder_hands_off_to_queued_waiter() {
        use std::sync::Arc;
        // Hold NODES_PER_FLOW other locks so the next acquisition is node-less.
        let fillers: Vec<RawMcsMutex> = (0..NODES_PER_FLOW).map(|_| RawMcsMutex::new()).collect();
        let fh: Vec<McsHandle> = fillers.iter().map(RawMcsMutex::lock).collect();
        let m = Arc::new(RawMcsMutex::new());
        let h = m.lock();
        assert!(h.node.is_null());
        let m2 = Arc::clone(&m);
        let t = std::thread::spawn(move || {
            let h = m2.lock(); // queues behind ANON through `handoff`
            assert!(!h.node.is_null());
            // SAFETY: `h` is the state of the acquisition above.
            unsafe { m2.unlock(h) };
        });
        while !m.has_waiters(&h) {
            std::thread::yield_now();
        }
        // SAFETY: `h` is the state of the acquisition above.
        unsafe { m.unlock(h) };
        t.join().unwrap();
        assert!(!m.is_locked());
        for (l, h) in fillers.iter().zip(fh) {
            // SAFETY: as above.
            unsafe { l.unlock(h) };
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "locked twice")]
    fn debug_reentrant_lock_panics() {
        let m = RawMcsMutex::new();
        let _h = m.lock();
        let _ = m.lock();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "does not hold this lock")]
    fn debug_unlock_with_foreign_handle_panics() {
        let a = RawMcsMutex::new();
        let b = RawMcsMutex::new();
        let ha = a.lock();
        let _hb = b.lock();
        // SAFETY: deliberately violated to check the debug diagnostic, which fires before any
        // state changes.
        unsafe { b.unlock(ha) };
    }

    #[test]
    fn forgotten_guard_keeps_block_out_of_circulation() {
        // A thread forgets a handle and exits: its node stays queued in `m` and valid.
        let m = std::sync::Arc::new(crate::McsMutex::new(()));
        let m2 = std::sync::Arc::clone(&m);
        std::thread::spawn(move || core::mem::forget(m2.lock()))
            .join()
            .unwrap();
        assert!(m.is_locked());
        assert!(m.try_lock().is_none());
        // Fresh threads get fresh or recycled blocks, never the leaked one: they can still
        // use other MCS locks.
        let other = std::sync::Arc::new(RawMcsMutex::new());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let other = std::sync::Arc::clone(&other);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let h = other.lock();
                        // SAFETY: `h` is the state of the acquisition above.
                        unsafe { other.unlock(h) };
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(!other.is_locked());
    }
}
