//! [`RcuRing<T, N>`]: a read-mostly value in `N` preallocated slots, for code without a heap.

use super::{GracePeriod, RcuReadGuard, read_lock, start_grace_period};
use crate::backoff::Backoff;
use crate::raw_rcu::{WriterGuard, WriterLock};
use crate::sync::{AtomicUsize, Ordering, UnsafeCell};
use core::fmt;
use core::mem::MaybeUninit;

/// What a slot of the ring holds. Writer-only bookkeeping, under the writer lock.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// No value; a writer may fill it.
    Free,
    /// The published value.
    Current,
    /// An unpublished value, freed (and the slot reusable) once this grace period completed.
    Retired(GracePeriod),
    /// An unpublished value that an `update`/`replace` call takes out after its grace period.
    Taken,
}

/// Turns a `Taken` slot into a `Retired` one when the [`RcuRing::update`] that took it
/// unwinds before taking its value out.
struct Untake<'a, T, const N: usize> {
    ring: &'a RcuRing<T, N>,
    slot: usize,
    gp: GracePeriod,
}

impl<T, const N: usize> Drop for Untake<'_, T, N> {
    fn drop(&mut self) {
        let w = self.ring.writer.lock();
        debug_assert!(matches!(self.ring.state(&w, self.slot), Slot::Taken));
        self.ring.set_state(&w, self.slot, Slot::Retired(self.gp));
    }
}

/// What [`RcuRing::free_slot`] found.
enum FreeSlot {
    /// This slot is `Free` (possibly just reclaimed).
    Free(usize),
    /// None is free; a retired slot becomes reclaimable once this grace period completed.
    Wait(GracePeriod),
    /// Every spare slot is `Taken`.
    AllTaken,
}

/// A read-mostly value in `N` preallocated slots, without heap allocation: a writer fills a
/// free slot and publishes it; the old slot becomes reusable after a grace period.
///
/// The same contract as [`Rcu`](super::Rcu): [`read`](Self::read) never waits and writes only
/// the reader's own slot; [`replace`](Self::replace)/[`update`](Self::update) wait for a grace
/// period and return the old value; [`defer_replace`](Self::defer_replace)/
/// [`defer_update`](Self::defer_update) leave the old value in its slot until its grace period
/// completed, and wait only when no slot is free and none of the retired ones has completed
/// (then the writer releases the ring's writer lock, waits for one, and scans again, so other
/// writers are never held up by a grace period). With `N` slots, `N - 1`
/// updates can be in flight without waiting. Since any update may wait, none may be called
/// inside a read-side section of the calling thread (debug builds panic; release builds would
/// wait forever): unlike [`Rcu`](super::Rcu), the ring cannot grow its backlog instead.
///
/// `const`-constructible, so it fits in a `static` of a no_std guest (`--cfg ecs_guest`),
/// where readers are vCPUs. Writers serialize on a small spin lock (see [`Rcu`](super::Rcu)).
///
/// ```
/// use ecs_locks::RcuRing;
///
/// static LIMITS: RcuRing<[u32; 2], 4> = RcuRing::new([10, 20]);
///
/// assert_eq!(LIMITS.read()[1], 20);
/// LIMITS.defer_update(|l| [l[0] + 1, l[1]]); // no wait: a free slot is ready
/// assert_eq!(*LIMITS.read(), [11, 20]);
/// let old = LIMITS.replace([0, 0]); // waits for a grace period
/// assert_eq!(old, [11, 20]);
/// ```
pub struct RcuRing<T, const N: usize> {
    /// Index of the published slot.
    current: AtomicUsize,
    /// The values; initialized exactly where `states` says `Current`, `Retired` or `Taken`.
    values: [UnsafeCell<MaybeUninit<T>>; N],
    /// Serializes writers.
    writer: WriterLock,
    /// Per-slot state; only touched under `writer` (or with `&mut self`).
    states: UnsafeCell<[Slot; N]>,
}

// SAFETY: the ring owns up to `N` values of `T`; moving it moves them.
unsafe impl<T: Send, const N: usize> Send for RcuRing<T, N> {}
// SAFETY: readers on any thread get `&T` (needs `T: Sync`); writers on any thread drop or
// return values another thread wrote (needs `T: Send`). `states` is only touched under
// `writer`; a slot's value is written only while it is `Free`, which no reader can see (it is
// not published, and was reclaimed only after a grace period).
unsafe impl<T: Send + Sync, const N: usize> Sync for RcuRing<T, N> {}

impl<T, const N: usize> RcuRing<T, N> {
    /// A ring publishing `value` in its first slot. `N` must be at least 2.
    #[cfg(not(loom))]
    pub const fn new(value: T) -> Self {
        const { assert!(N >= 2, "an RcuRing needs a spare slot") };
        let mut values = [const { UnsafeCell::new(MaybeUninit::uninit()) }; N];
        values[0] = UnsafeCell::new(MaybeUninit::new(value));
        let mut states = [Slot::Free; N];
        states[0] = Slot::Current;
        Self {
            current: AtomicUsize::new(0),
            values,
            writer: WriterLock::new(),
            states: UnsafeCell::new(states),
        }
    }

    /// A ring publishing `value` in its first slot. `N` must be at least 2.
    #[cfg(loom)]
    pub fn new(value: T) -> Self {
        const { assert!(N >= 2, "an RcuRing needs a spare slot") };
        let mut value = Some(value);
        let mut states = [Slot::Free; N];
        states[0] = Slot::Current;
        Self {
            current: AtomicUsize::new(0),
            values: core::array::from_fn(|i| {
                UnsafeCell::new(match i {
                    0 => MaybeUninit::new(value.take().expect("slot 0 once")),
                    _ => MaybeUninit::uninit(),
                })
            }),
            writer: WriterLock::new(),
            states: UnsafeCell::new(states),
        }
    }

    /// Reads the current value (see [`Rcu::read`](super::Rcu::read)).
    #[inline]
    pub fn read(&self) -> RcuReadGuard<'_, T> {
        let section = read_lock();
        let i = self.current.load(Ordering::Acquire);
        let p = self.values[i].with(|p| p);
        // SAFETY: slot `i` was written before the Release store that published `i`, and is
        // rewritten or dropped only after being unpublished and a grace period that started
        // afterwards completed; `section` began before the load of `i`, so that grace period
        // waits for it.
        unsafe { RcuReadGuard::new(section, (*p).assume_init_ref()) }
    }

    /// Publishes `value` and returns the old value once no reader can see it (waits for a grace
    /// period; do not call inside a read-side section of this thread).
    pub fn replace(&self, value: T) -> T {
        self.update(|_| value)
    }

    /// Publishes `f(current)` and returns the old value once no reader can see it (waits for a
    /// grace period). `f` runs under the ring's writer lock and must not write to this ring.
    pub fn update(&self, f: impl FnOnce(&T) -> T) -> T {
        let (old, gp) = self.publish(f, true);
        // If the wait unwinds (the debug check for a wait inside one's own section), the
        // `Taken` slot would be stranded: no call would ever take it out, and with every spare
        // slot stranded the ring could never be written again (issue 9). Hand it back as
        // `Retired`, so it is dropped once its grace period completes.
        let untake = Untake {
            ring: self,
            slot: old,
            gp,
        };
        gp.wait();
        core::mem::forget(untake);
        let _w = self.writer.lock();
        self.states.with_mut(|s| {
            // SAFETY: `states` is only touched under `writer`, which we hold.
            let s = unsafe { &mut *s };
            debug_assert!(matches!(s[old], Slot::Taken));
            s[old] = Slot::Free;
        });
        // SAFETY: slot `old` is `Taken` by this call (no other writer touches it), holds a value
        // (it was published), and its grace period completed: no reader sees it. Marked `Free`
        // above, so it is read out exactly once.
        self.values[old].with(|p| unsafe { (*p).assume_init_read() })
    }

    /// Publishes `value`; the old value stays in its slot until its grace period completed.
    pub fn defer_replace(&self, value: T) {
        self.defer_update(|_| value);
    }

    /// Publishes `f(current)`; the old value stays in its slot until its grace period
    /// completed. `f` runs under the ring's writer lock and must not write to this ring.
    pub fn defer_update(&self, f: impl FnOnce(&T) -> T) {
        self.publish(f, false);
    }

    /// Drops the retired values whose grace periods have completed, without waiting, and
    /// returns how many.
    pub fn reclaim(&self) -> usize {
        let w = self.writer.lock();
        let mut n = 0;
        for i in 0..N {
            if let Slot::Retired(gp) = self.state(&w, i)
                && gp.is_completed()
            {
                self.drop_retired(&w, i);
                n += 1;
            }
        }
        n
    }

    /// Waits for the grace periods of every retired value and drops them (like
    /// `rcu_barrier`). Waits without the writer lock, so other writers go on meanwhile (values
    /// they retire after this call began may stay). Do not call inside a read-side section of
    /// this thread.
    pub fn barrier(&self) {
        let pending: [Option<GracePeriod>; N] = {
            let w = self.writer.lock();
            core::array::from_fn(|i| match self.state(&w, i) {
                Slot::Retired(gp) => Some(gp),
                _ => None,
            })
        };
        for gp in pending.iter().flatten() {
            gp.wait();
        }
        // Every value seen retired above is now past its grace period: it is either still
        // `Retired` with that (completed) grace period, or another writer reclaimed it.
        self.reclaim();
    }

    /// Number of retired values waiting for their grace periods.
    pub fn deferred(&self) -> usize {
        let w = self.writer.lock();
        (0..N)
            .filter(|&i| matches!(self.state(&w, i), Slot::Retired(_)))
            .count()
    }

    /// The value, through exclusive access (no reader can exist).
    pub fn get_mut(&mut self) -> &mut T {
        let i = self.current.load(Ordering::Relaxed);
        let p = self.values[i].with_mut(|p| p);
        // SAFETY: `&mut self` excludes readers and writers; the current slot holds a value.
        unsafe { (*p).assume_init_mut() }
    }

    /// Unwraps the value (retired values are dropped).
    pub fn into_inner(self) -> T {
        let mut this = core::mem::ManuallyDrop::new(self);
        this.drop_retired_exclusive();
        let i = this.current.load(Ordering::Relaxed);
        // SAFETY: the current slot holds a value; `this` is never dropped, so it is read once.
        // The other fields own nothing that needs dropping (the retired values are gone).
        this.values[i].with(|p| unsafe { (*p).assume_init_read() })
    }

    /// Publishes `f(current)` in a free slot. The old slot becomes `Taken` (returned for the
    /// caller to take out after the returned grace period) or `Retired`.
    fn publish(&self, f: impl FnOnce(&T) -> T, take: bool) -> (usize, GracePeriod) {
        let mut backoff = Backoff::new();
        loop {
            let w = self.writer.lock();
            let i = match self.free_slot(&w) {
                FreeSlot::Free(i) => i,
                FreeSlot::Wait(gp) => {
                    // No slot is free and no retired one has completed its grace period. The
                    // writer lock is an enlightened critical section: wait without it, then
                    // scan again (another writer may have taken the reclaimed slot meanwhile).
                    drop(w);
                    gp.wait();
                    continue;
                }
                FreeSlot::AllTaken => {
                    // Every spare slot is `Taken` by an `update` waiting for its grace period;
                    // it needs the writer lock to finish, so let go and retry.
                    drop(w);
                    backoff.snooze(None);
                    continue;
                }
            };
            let old = self.current.load(Ordering::Relaxed);
            // SAFETY: slot `old` is the published one and holds a value; we hold the writer
            // lock, so nobody retires it while `f` reads it.
            let cur = self.values[old].with(|p| unsafe { (*p).assume_init_ref() });
            let value = f(cur);
            // SAFETY: slot `i` is `Free`: no value to leak, no reader can see it (never
            // published since it was reclaimed after a grace period), only this writer (under
            // the lock) writes it.
            self.values[i].with_mut(|p| unsafe { (*p).write(value) });
            self.current.store(i, Ordering::Release);
            let gp = start_grace_period();
            self.set_state(&w, i, Slot::Current);
            self.set_state(&w, old, if take { Slot::Taken } else { Slot::Retired(gp) });
            return (old, gp);
        }
    }

    /// A `Free` slot, reclaiming a retired one whose grace period has completed if needed; else
    /// the grace period of a retired slot to wait for (without the lock), or
    /// [`FreeSlot::AllTaken`]. Never waits.
    fn free_slot(&self, w: &WriterGuard<'_>) -> FreeSlot {
        let mut waitable = None;
        for i in 0..N {
            match self.state(w, i) {
                Slot::Free => return FreeSlot::Free(i),
                Slot::Retired(gp) if gp.is_completed() => {
                    self.drop_retired(w, i);
                    return FreeSlot::Free(i);
                }
                Slot::Retired(gp) => waitable = waitable.or(Some(gp)),
                Slot::Current | Slot::Taken => {}
            }
        }
        waitable.map_or(FreeSlot::AllTaken, FreeSlot::Wait)
    }

    /// The state of slot `i`; the caller holds the writer lock.
    fn state(&self, _w: &WriterGuard<'_>, i: usize) -> Slot {
        // SAFETY: `states` is only touched under `writer`, which the caller holds.
        self.states.with(|s| unsafe { (*s)[i] })
    }

    /// Sets the state of slot `i`; the caller holds the writer lock.
    fn set_state(&self, _w: &WriterGuard<'_>, i: usize, state: Slot) {
        // SAFETY: `states` is only touched under `writer`, which the caller holds.
        self.states.with_mut(|s| unsafe { (*s)[i] = state });
    }

    /// Drops the value of the retired slot `i`, whose grace period completed, and frees the slot.
    fn drop_retired(&self, w: &WriterGuard<'_>, i: usize) {
        debug_assert!(matches!(self.state(w, i), Slot::Retired(_)));
        self.set_state(w, i, Slot::Free);
        // SAFETY: a `Retired` slot holds a value; its grace period completed, so no reader sees
        // it; it is now `Free`, so it is dropped once.
        self.values[i].with_mut(|p| unsafe { (*p).assume_init_drop() });
    }

    /// Drops every retired value, with exclusive access (no reader can exist).
    fn drop_retired_exclusive(&mut self) {
        let states = self.states.with_mut(|s| {
            // SAFETY: `&mut self`: exclusive.
            unsafe { *s }
        });
        for (i, s) in states.iter().enumerate() {
            debug_assert!(!matches!(s, Slot::Taken), "no update can be in flight");
            if let Slot::Retired(_) = s {
                // SAFETY: a retired slot holds a value, and with `&mut self` nobody reads it;
                // the state is reset below, so it is dropped once.
                self.values[i].with_mut(|p| unsafe { (*p).assume_init_drop() });
            }
        }
        self.states.with_mut(|s| {
            // SAFETY: `&mut self`: exclusive.
            for st in unsafe { &mut *s }.iter_mut() {
                if let Slot::Retired(_) = st {
                    *st = Slot::Free;
                }
            }
        });
    }
}

impl<T, const N: usize> Drop for RcuRing<T, N> {
    fn drop(&mut self) {
        self.drop_retired_exclusive();
        let i = self.current.load(Ordering::Relaxed);
        // SAFETY: the current slot holds a value and, with `&mut self`, nobody reads it.
        self.values[i].with_mut(|p| unsafe { (*p).assume_init_drop() });
    }
}

impl<T: Default, const N: usize> Default for RcuRing<T, N> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for RcuRing<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RcuRing")
            .field("value", &&*self.read())
            .finish()
    }
}

#[cfg(all(test, not(loom), feature = "std", not(ecs_guest)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Barrier;

    #[test]
    fn ring_recycles_slots_and_drops_each_value_once() {
        let live = Arc::new(());
        let ring: RcuRing<Arc<()>, 3> = RcuRing::new(live.clone());
        for _ in 0..10 {
            ring.defer_replace(live.clone());
            assert!(ring.deferred() <= 2);
        }
        assert!(Arc::strong_count(&live) <= 4, "at most N values live");
        ring.barrier();
        assert_eq!(Arc::strong_count(&live), 2);
        let old = ring.replace(live.clone());
        drop(old);
        assert_eq!(Arc::strong_count(&live), 2);
        drop(ring);
        assert_eq!(Arc::strong_count(&live), 1);
    }

    #[test]
    fn open_reader_keeps_retired_slot() {
        let ring: RcuRing<&str, 2> = RcuRing::new("a");
        let step = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                let g = ring.read();
                step.wait(); // entered
                step.wait(); // the writer is done
                assert_eq!(*g, "a");
            });
            step.wait();
            ring.defer_replace("b");
            assert_eq!(
                ring.reclaim(),
                0,
                "a reader from before the update holds slot 0"
            );
            step.wait();
            // The only spare slot is retired: this waits for the reader, then reuses it.
            ring.defer_replace("c");
        });
        assert_eq!(*ring.read(), "c");
        let mut ring = ring;
        *ring.get_mut() = "d";
        assert_eq!(format!("{ring:?}"), "RcuRing { value: \"d\" }");
        assert_eq!(ring.into_inner(), "d");
    }
}
