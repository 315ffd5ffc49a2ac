//! [`Rcu<T>`]: a heap-allocated read-mostly value, replaced by publishing a new `Box`.

use super::{GracePeriod, RcuReadGuard, in_read_section, read_lock, start_grace_period};
use crate::raw_rcu::{WriterGuard, WriterLock};
use crate::sync::{AtomicPtr, Ordering, UnsafeCell};
use core::cell::Cell;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr;

/// Values unpublished by `defer_*` that may wait for their grace periods before a writer waits.
///
/// Bounds the memory a cell holds on to: at most this many old values besides the current one.
/// liburcu's `call_rcu` worker batches similarly; 32 keeps the backlog within a few cache lines
/// of pointers while letting most grace periods complete on their own before anyone waits.
pub const DEFER_BATCH: usize = 32;

/// One published value, in its own allocation, with room for its place in the retirement
/// queue: retiring a value links its node, so a writer never allocates under the writer lock
/// (issue 9; the new node is allocated before the lock is taken).
struct Node<T> {
    value: T,
    /// The grace period after which the node may be freed; set when it is retired.
    gp: Cell<Option<GracePeriod>>,
    /// The next (younger) retired node.
    next: Cell<*mut Node<T>>,
}

impl<T> Node<T> {
    fn new(value: T) -> Self {
        Self {
            value,
            gp: Cell::new(None),
            next: Cell::new(ptr::null_mut()),
        }
    }
}

/// Retired nodes, oldest first, linked through `next`. Only touched under the writer lock.
struct Queue<T> {
    head: *mut Node<T>,
    tail: *mut Node<T>,
    len: usize,
}

/// Retired nodes taken out of a [`Queue`], to free outside the writer lock.
struct Chain<T>(*mut Node<T>);

impl<T> Queue<T> {
    const fn new() -> Self {
        Self {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    /// Appends the unpublished node `n` with its grace period `gp`.
    ///
    /// # Safety
    /// `n` is a live node from `Box::into_raw` that no queue holds.
    unsafe fn push(&mut self, n: *mut Node<T>, gp: GracePeriod) {
        // SAFETY: by the contract `n` is live and ours; readers read only its `value`.
        let node = unsafe { &*n };
        node.gp.set(Some(gp));
        node.next.set(ptr::null_mut());
        if self.tail.is_null() {
            self.head = n;
        } else {
            // SAFETY: queued nodes are live until taken out.
            unsafe { (*self.tail).next.set(n) };
        }
        self.tail = n;
        self.len += 1;
    }

    /// How many nodes from the oldest have completed grace periods.
    fn completed(&self) -> usize {
        let mut n = 0;
        let mut p = self.head;
        // SAFETY: queued nodes are live until taken out.
        while let Some(node) = unsafe { p.as_ref() } {
            if !node.gp.get().is_some_and(|gp| gp.is_completed()) {
                break;
            }
            n += 1;
            p = node.next.get();
        }
        n
    }

    /// The youngest node's grace period (it covers every older one).
    fn newest_gp(&self) -> Option<GracePeriod> {
        // SAFETY: queued nodes are live until taken out.
        unsafe { self.tail.as_ref() }.and_then(|n| n.gp.get())
    }

    /// Takes the `n` oldest nodes out.
    fn take_front(&mut self, n: usize) -> Chain<T> {
        if n == 0 {
            return Chain(ptr::null_mut());
        }
        if n >= self.len {
            return self.take_all();
        }
        let first = self.head;
        let mut last = first;
        for _ in 1..n {
            // SAFETY: `n < len`, so the first `n` nodes exist; they are live.
            last = unsafe { (*last).next.get() };
        }
        // SAFETY: as above.
        self.head = unsafe { (*last).next.get() };
        // SAFETY: as above; the chain ends at `last`.
        unsafe { (*last).next.set(ptr::null_mut()) };
        self.len -= n;
        Chain(first)
    }

    /// Takes every node out.
    fn take_all(&mut self) -> Chain<T> {
        let first = self.head;
        *self = Self::new();
        Chain(first)
    }
}

impl<T> Chain<T> {
    /// Frees every node of the chain.
    ///
    /// # Safety
    /// The caller established that every node's grace period completed (or that no reader
    /// can exist); each node is in this chain only, so it is freed once.
    unsafe fn free(self) {
        let mut p = self.0;
        while !p.is_null() {
            // SAFETY: chained nodes came from `Box::into_raw` and are live until freed here.
            let next = unsafe { (*p).next.get() };
            // SAFETY: as above, and by the contract no reader can see the node any more.
            drop(unsafe { Box::from_raw(p) });
            p = next;
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_null()
    }
}

/// A read-mostly value: readers get a guard without writing shared memory; writers publish a
/// new `Box` and free the old one after a grace period.
///
/// - [`read`](Self::read): enters a read-side section (an enlightened critical section) and
///   returns a `!Send` guard; never waits.
/// - [`replace`](Self::replace) / [`update`](Self::update): publish, wait for a grace period,
///   return the old value.
/// - [`defer_replace`](Self::defer_replace) / [`defer_update`](Self::defer_update): publish and
///   queue the old value; it is freed once its grace period completed, checked whenever the
///   queue reaches [`DEFER_BATCH`] (then the writer waits only if the oldest is still held up
///   and the writer is not inside a read-side section of its own),
///   at [`reclaim`](Self::reclaim), [`barrier`](Self::barrier), or when the cell drops (no guard
///   can outlive the cell, so dropping frees everything at once).
///
/// Writers of one cell serialize on a small internal spin lock (unfair; the holder's vCPU is in
/// the lock word, so waiters yield to a preempted holder) held for the swap and bookkeeping;
/// grace periods are waited for outside it. An `update` closure runs under that lock.
///
/// Unlike `parking_lot::RwLock`, readers never block writers and writers never block readers;
/// readers may see the old value until the swap. See the [module docs](super) for the
/// algorithm and how it differs from crossbeam-epoch and arc-swap.
///
/// ```
/// use ecs_locks::Rcu;
///
/// let routes = Rcu::new(vec!["a", "b"]);
/// let before = routes.read();
/// routes.defer_update(|r| {
///     let mut r = r.clone();
///     r.push("c");
///     r
/// });
/// assert_eq!(before.len(), 2, "a reader keeps the value it read");
/// drop(before);
/// assert_eq!(routes.read().len(), 3);
/// routes.barrier(); // frees the queued old value
/// ```
pub struct Rcu<T> {
    /// The published node, from `Box::into_raw`.
    ptr: AtomicPtr<Node<T>>,
    /// Serializes writers.
    writer: WriterLock,
    /// Old values and their grace periods, oldest first. Only touched under `writer`.
    retired: UnsafeCell<Queue<T>>,
}

// SAFETY: the cell owns a `T` (sent along with it) and its queued old values; moving the cell
// moves them.
unsafe impl<T: Send> Send for Rcu<T> {}
// SAFETY: readers on any thread get `&T` (needs `T: Sync`); a writer on any thread drops old
// values that another thread created (needs `T: Send`). `retired` is only touched under
// `writer`, and the pointer is atomic.
unsafe impl<T: Send + Sync> Sync for Rcu<T> {}

impl<T> Rcu<T> {
    /// A cell holding `value`.
    pub fn new(value: T) -> Self {
        Self {
            ptr: AtomicPtr::new(Box::into_raw(Box::new(Node::new(value)))),
            writer: WriterLock::new(),
            retired: UnsafeCell::new(Queue::new()),
        }
    }

    /// Reads the current value. The guard keeps it alive (its read-side section holds up any
    /// grace period that starts while it lives); drop it soon, since writers that wait, wait
    /// for it.
    #[inline]
    pub fn read(&self) -> RcuReadGuard<'_, T> {
        let section = read_lock();
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: `p` was published by `new` or a writer (Release store after the `Box` was
        // written) and is freed only after a grace period started after it was unpublished;
        // `section` began before this load, so that grace period waits for it.
        unsafe { RcuReadGuard::new(section, &(*p).value) }
    }

    /// Publishes `value` and returns the old value once no reader can see it (waits for a grace
    /// period; do not call inside a read-side section of this thread).
    pub fn replace(&self, value: T) -> T {
        let new = Box::into_raw(Box::new(Node::new(value)));
        let old = {
            let _w = self.writer.lock();
            self.ptr.swap(new, Ordering::AcqRel)
        };
        start_grace_period().wait();
        // SAFETY: `old` came from `Box::into_raw`, was unpublished by the swap, and the grace
        // period that started after it has completed: no reader holds it. Only this writer got
        // it from the swap.
        unsafe { Box::from_raw(old) }.value
    }

    /// Publishes `f(current)` and returns the old value once no reader can see it (waits for a
    /// grace period). `f` runs under the cell's writer lock, so concurrent updates compose;
    /// it must not write to this cell.
    pub fn update(&self, f: impl FnOnce(&T) -> T) -> T {
        let old = self.publish_with(f);
        start_grace_period().wait();
        // SAFETY: as in `replace`.
        unsafe { Box::from_raw(old) }.value
    }

    /// Publishes `value` and queues the old one for reclamation after a grace period. Waits
    /// only when [`DEFER_BATCH`] old values are queued and the oldest is still held up, and
    /// never inside a read-side section of the calling thread (the queue then grows past
    /// [`DEFER_BATCH`] until a later call, [`reclaim`](Self::reclaim),
    /// [`barrier`](Self::barrier) or drop drains it).
    pub fn defer_replace(&self, value: T) {
        self.defer_update(|_| value);
    }

    /// Publishes `f(current)` and queues the old value for reclamation after a grace period
    /// (see [`defer_replace`](Self::defer_replace)). `f` runs under the cell's writer lock.
    pub fn defer_update(&self, f: impl FnOnce(&T) -> T) {
        let slot = Box::new_uninit();
        let (done, wait_for) = {
            let w = self.writer.lock();
            let old = self.swap_locked(&w, slot, f);
            // Started under the writer lock, so the queue's grace periods are in start order.
            let gp = start_grace_period();
            self.retired.with_mut(|r| {
                // SAFETY: `retired` is only touched under `writer`, which we hold.
                let r = unsafe { &mut *r };
                // SAFETY: `old` was just unpublished by this writer: live, in no queue.
                unsafe { r.push(old, gp) };
                if r.len < DEFER_BATCH {
                    return (Chain(ptr::null_mut()), None);
                }
                match r.completed() {
                    // Inside a section of our own, waiting would wait for ourselves: let the
                    // backlog grow until a later writer (or `barrier`, or drop) drains it.
                    0 if in_read_section() => (Chain(ptr::null_mut()), None),
                    // The backlog is full and its oldest entry is held up: wait for all of it
                    // at once (the newest grace period covers every older one).
                    0 => (r.take_all(), Some(gp)),
                    n => (r.take_front(n), None),
                }
            })
        };
        if let Some(gp) = wait_for {
            gp.wait();
        }
        // SAFETY: `done` holds completed nodes, or all of them after waiting for the newest
        // grace period, which covers the older ones.
        unsafe { done.free() };
    }

    /// Frees the queued old values whose grace periods have completed, without waiting, and
    /// returns how many it freed.
    pub fn reclaim(&self) -> usize {
        let (done, n) = {
            let _w = self.writer.lock();
            self.retired.with_mut(|r| {
                // SAFETY: `retired` is only touched under `writer`, which we hold.
                let r = unsafe { &mut *r };
                let n = r.completed();
                (r.take_front(n), n)
            })
        };
        // SAFETY: the nodes' grace periods completed.
        unsafe { done.free() };
        n
    }

    /// Waits for the grace periods of every queued old value and frees them (like
    /// `rcu_barrier`). Do not call inside a read-side section of this thread.
    pub fn barrier(&self) {
        let (all, newest) = {
            let _w = self.writer.lock();
            self.retired.with_mut(|r| {
                // SAFETY: `retired` is only touched under `writer`, which we hold.
                let r = unsafe { &mut *r };
                let newest = r.newest_gp();
                (r.take_all(), newest)
            })
        };
        if let Some(gp) = newest {
            gp.wait();
        }
        debug_assert!(newest.is_some() || all.is_empty());
        // SAFETY: the newest grace period completed, and it covers the older ones.
        unsafe { all.free() };
    }

    /// Number of old values queued for reclamation.
    pub fn deferred(&self) -> usize {
        let _w = self.writer.lock();
        // SAFETY: `retired` is only touched under `writer`, which we hold.
        self.retired.with(|r| unsafe { &*r }.len)
    }

    /// The value, through exclusive access (no reader can exist).
    pub fn get_mut(&mut self) -> &mut T {
        let p = self.ptr.load(Ordering::Relaxed);
        // SAFETY: `&mut self` excludes readers (their guards borrow the cell) and writers; the
        // pointer is the live published `Box`.
        unsafe { &mut (*p).value }
    }

    /// Unwraps the value (queued old values are dropped).
    pub fn into_inner(self) -> T {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so each field is read out once.
        let (ptr, mut retired) = unsafe {
            (
                core::ptr::read(&this.ptr),
                core::ptr::read(&this.retired).into_inner(),
            )
        };
        // SAFETY: the cell is consumed: no reader can exist.
        unsafe { retired.take_all().free() };
        let p = ptr.load(Ordering::Relaxed);
        // SAFETY: the cell is consumed: no reader or writer exists, `p` is the live `Box`.
        unsafe { Box::from_raw(p) }.value
    }

    /// Publishes `f(current)` under the writer lock and returns the old pointer (unpublished,
    /// not yet safe to free).
    fn publish_with(&self, f: impl FnOnce(&T) -> T) -> *mut Node<T> {
        let slot = Box::new_uninit();
        let w = self.writer.lock();
        self.swap_locked(&w, slot, f)
    }

    /// Publishes `f(current)` in `slot` (allocated before the writer lock was taken) and
    /// returns the old node; the caller holds the writer lock.
    fn swap_locked(
        &self,
        _w: &WriterGuard<'_>,
        mut slot: Box<MaybeUninit<Node<T>>>,
        f: impl FnOnce(&T) -> T,
    ) -> *mut Node<T> {
        let cur = self.ptr.load(Ordering::Acquire);
        // SAFETY: we hold the writer lock, so no other writer can unpublish (and then free)
        // `cur` while `f` reads it.
        slot.write(Node::new(f(unsafe { &(*cur).value })));
        // SAFETY: just written.
        let new = Box::into_raw(unsafe { slot.assume_init() });
        let old = self.ptr.swap(new, Ordering::AcqRel);
        debug_assert_eq!(old, cur);
        old
    }
}

impl<T> Drop for Rcu<T> {
    fn drop(&mut self) {
        // No guard can outlive the cell (guards borrow it), so nothing is being read.
        let retired = self.retired.with_mut(|r| {
            // SAFETY: `&mut self`: exclusive.
            unsafe { &mut *r }.take_all()
        });
        // SAFETY: no reader can exist.
        unsafe { retired.free() };
        let p = self.ptr.load(Ordering::Relaxed);
        // SAFETY: the live published `Box`, and nobody can read it any more.
        drop(unsafe { Box::from_raw(p) });
    }
}

impl<T: Default> Default for Rcu<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> From<T> for Rcu<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: fmt::Debug> fmt::Debug for Rcu<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rcu")
            .field("value", &&*self.read())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Barrier;

    /// Counts live values through the `Arc`'s strong count.
    struct Counted(#[allow(dead_code)] Arc<()>);

    #[test]
    fn deferred_backlog_is_bounded_and_drained() {
        let live = Arc::new(());
        let cell = Rcu::new(Counted(live.clone()));
        for _ in 0..3 * DEFER_BATCH {
            cell.defer_replace(Counted(live.clone()));
            assert!(cell.deferred() <= DEFER_BATCH);
        }
        cell.barrier();
        assert_eq!(cell.deferred(), 0);
        assert_eq!(
            Arc::strong_count(&live),
            2,
            "only the current value is left"
        );
        drop(cell);
        assert_eq!(Arc::strong_count(&live), 1);
    }

    #[test]
    fn open_reader_keeps_deferred_value_alive() {
        let cell = Rcu::new(String::from("old"));
        let step = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                let g = cell.read();
                step.wait(); // entered
                step.wait(); // the writer is done
                assert_eq!(
                    *g, "old",
                    "the value read stays intact while the guard lives"
                );
            });
            step.wait();
            cell.defer_replace(String::from("new"));
            assert_eq!(
                cell.reclaim(),
                0,
                "a reader from before the update holds it"
            );
            assert_eq!(cell.deferred(), 1);
            step.wait();
        });
        cell.barrier();
        assert_eq!(cell.deferred(), 0);
        assert_eq!(*cell.read(), "new");
    }

    #[test]
    fn deferring_inside_own_section_never_waits() {
        let live = Arc::new(());
        let cell = Rcu::new(Counted(live.clone()));
        let section = crate::rcu::read_lock();
        for _ in 0..2 * DEFER_BATCH {
            cell.defer_replace(Counted(live.clone())); // would deadlock if it waited
        }
        assert!(cell.deferred() >= DEFER_BATCH, "held up by our own section");
        drop(section);
        cell.barrier();
        assert_eq!(Arc::strong_count(&live), 2);
    }

    #[test]
    fn exclusive_access() {
        let mut cell = Rcu::from(vec![1]);
        cell.get_mut().push(2);
        cell.defer_replace(vec![3]);
        assert_eq!(format!("{cell:?}"), "Rcu { value: [3] }");
        assert_eq!(cell.into_inner(), [3]);
        assert_eq!(*Rcu::<u8>::default().read(), 0);
    }
}
