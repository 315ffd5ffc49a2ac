//! Read-copy-update with enlightened readers: read-mostly data that readers reach without
//! writing anything shared, and that writers replace and reclaim after a grace period.
//!
//! - [`Rcu<T>`] (`std`): a heap-allocated value behind an atomic pointer. [`Rcu::read`] returns
//!   a guard; [`Rcu::replace`]/[`Rcu::update`] publish a new `Box` and free the old one after a
//!   grace period; [`Rcu::defer_replace`]/[`Rcu::defer_update`] queue the old value and free it
//!   at a later grace period (`call_rcu`-style), so writers rarely wait.
//! - [`RcuRing<T, N>`] (`std` or `--cfg ecs_guest`, no allocation): `N` preallocated slots; a writer fills
//!   a free slot and publishes it, and the old slot is reusable after a grace period. `const`
//!   constructible, so it fits in a `static` of a no_std guest.
//! - [`read_lock`], [`synchronize`], [`start_grace_period`]: the raw read-side section and grace
//!   periods, for structures of your own.
//!
//! # Algorithm
//!
//! User-space RCU after liburcu's general-purpose flavor (Desnoyers, McKenney, Stern, Dagenais,
//! Walpole, *User-Level Implementations of Read-Copy Update*, IEEE TPDS 2012): each reader owns
//! a cache-padded slot holding the global epoch it saw at its outermost `read_lock` and its
//! nesting depth, and a full fence orders that announcement before its reads. A writer
//! unpublishes, fences, advances the global epoch, and waits until every slot is either
//! quiescent or announced the new epoch (or a later one). A 48-bit epoch replaces liburcu's parity bit, so one
//! pass suffices where liburcu flips twice, and grace periods are cookies that can be polled
//! ([`GracePeriod`], like Linux's `start_poll_synchronize_rcu`). The full argument, with the
//! memory orderings, opens `src/raw_rcu.rs`.
//!
//! Reader slots: under `std`, a lock-free registry of per-thread slots (claimed at a thread's
//! first read, recycled when it exits, never freed); under `--cfg ecs_guest`, one static slot per
//! vCPU, indexed by its vCPU id (no TLS in the guest). Without either there is no way to
//! enumerate readers, and this module is empty.
//!
//! # Enlightenment
//!
//! Every read-side section is an enlightened critical section (`cs_depth` +1 at `read_lock`, -1
//! at unlock, per nesting level), so a host running the `ecs` policy defers preempting a vCPU
//! inside one, and a vCPU granted an extension gives the pCPU back when it leaves its outermost
//! section. Each reader slot names its vCPU: a writer waiting for a reader whose vCPU is
//! preempted yields its pCPU to that vCPU (directed yield) instead of spinning a whole slice;
//! otherwise it spins, and natively yields to the OS after a while, so grace periods survive
//! oversubscription too.
//!
//! # Fairness and progress
//!
//! Readers never wait and never fail. A grace period waits only for sections that began before
//! it, so a stream of new readers cannot starve a writer; a reader that never leaves its section
//! (a forgotten [`RcuReadSection`]) stalls every grace period after it, as in any RCU. Writers
//! of one cell serialize on a small unfair spin lock (holder's vCPU in the word) held for a
//! pointer swap, never across a grace period of their own.
//!
//! # Compared with crossbeam-epoch and arc-swap
//!
//! - `crossbeam-epoch`: `pin` costs about the same as `read_lock` here (a per-thread epoch store
//!   and a full fence), but a writer cannot wait for readers: garbage is queued and freed when
//!   the global epoch has advanced twice, advanced and collected by *readers* as they pin. Here
//!   readers never collect, and a writer can wait ([`synchronize`]) or defer, and bounds its
//!   backlog by waiting when the backlog is full.
//! - `arc-swap`: a load takes a per-thread debt slot or bumps a reference count and yields an
//!   owned `Arc` whose last holder frees the value, so writers never wait. Here readers touch no
//!   count and a guard is tied to its thread (`!Send`) and to the cell.
//! - Neither knows about vCPUs: a reader preempted inside its pin or load is invisible to the
//!   host and to the writer, which only sees reclamation lag. Here that reader is an
//!   enlightened critical section the host avoids preempting, and a writer waiting for it
//!   yields its pCPU to it.
//!
//! # Example
//!
//! ```
//! use ecs_locks::rcu::{self, Rcu};
//!
//! #[derive(Debug, Clone, PartialEq)]
//! struct Config { verbose: bool, limit: u32 }
//!
//! let config = Rcu::new(Config { verbose: false, limit: 10 });
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         let c = config.read(); // no shared write, never blocks
//!         assert!(c.limit == 10 || c.limit == 20);
//!     });
//!     // Copy, modify, publish; the old value is freed after a grace period.
//!     let old = config.update(|c| Config { limit: 20, ..c.clone() });
//!     assert_eq!(old.limit, 10);
//! });
//! assert_eq!(config.read().limit, 20);
//!
//! // Deferred: no wait here; the old value is freed at a later grace period.
//! config.defer_replace(Config { verbose: true, limit: 30 });
//! rcu::synchronize();
//! assert!(config.read().verbose);
//! ```

// The docs are written for the default (std) build; without std some linked items do not exist.
#![cfg_attr(not(feature = "std"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "std")]
mod cell;
#[cfg(any(feature = "std", ecs_guest))]
mod ring;

#[cfg(feature = "std")]
pub use cell::{DEFER_BATCH, Rcu};
#[cfg(any(feature = "std", ecs_guest))]
pub use ring::RcuRing;

#[cfg(any(feature = "std", ecs_guest))]
pub use section::*;

#[cfg(any(feature = "std", ecs_guest))]
mod section {
    use crate::raw_rcu::{self, ReaderSlot};
    use core::fmt;
    use core::marker::PhantomData;
    use core::ops::Deref;

    /// A read-side section: while it lives, nothing unpublished before a grace period that
    /// started during it is freed. Dropping it leaves the section. Sections nest.
    ///
    /// `!Send` (the section lives in this thread's or vCPU's slot), and an enlightened
    /// critical section of the running vCPU.
    ///
    /// ```compile_fail
    /// fn assert_send<T: Send>(_: T) {}
    /// assert_send(ecs_locks::rcu::read_lock()); // a section cannot move to another thread
    /// ```
    #[must_use = "dropping the section ends it at once"]
    pub struct RcuReadSection {
        slot: &'static ReaderSlot,
        _not_send: PhantomData<lock_api::GuardNoSend>,
    }

    impl Drop for RcuReadSection {
        #[inline]
        fn drop(&mut self) {
            // SAFETY: `slot` came from `read_lock` on this thread (the section is `!Send`) and
            // this section is still open (each section value drops once). The slot counts
            // depth, so the order in which one thread's sections drop does not matter: the
            // slot stays active until the last of them drops.
            unsafe { raw_rcu::read_unlock(self.slot) };
        }
    }

    impl fmt::Debug for RcuReadSection {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RcuReadSection")
                .field("depth", &self.slot.depth())
                .finish()
        }
    }

    /// Enters a read-side section on this thread (vCPU). Cost: a store to the own slot and a
    /// full fence for the outermost section, a store for a nested one; never waits.
    ///
    /// ```
    /// let outer = ecs_locks::rcu::read_lock();
    /// let inner = ecs_locks::rcu::read_lock(); // nesting is fine
    /// drop(inner);
    /// drop(outer);
    /// ```
    #[inline]
    pub fn read_lock() -> RcuReadSection {
        RcuReadSection {
            slot: raw_rcu::read_lock(),
            _not_send: PhantomData,
        }
    }

    /// Whether the calling thread (vCPU) is inside a read-side section (like Linux's
    /// `rcu_read_lock_held`). A thread's first RCU call registers its reader slot.
    ///
    /// ```
    /// use ecs_locks::rcu;
    ///
    /// assert!(!rcu::in_read_section());
    /// let section = rcu::read_lock();
    /// assert!(rcu::in_read_section());
    /// drop(section);
    /// ```
    #[inline]
    pub fn in_read_section() -> bool {
        raw_rcu::in_section()
    }

    /// Waits until every read-side section that began before the call has ended (a grace
    /// period). Anything unpublished before the call may be freed when it returns.
    ///
    /// Must not be called inside a read-side section of the calling thread: the grace period
    /// would wait for that section, that is, forever (debug builds panic with a message
    /// instead).
    ///
    /// Waits by spinning; natively it yields to the OS after a while, and in a VM it yields the
    /// pCPU to a reader whose vCPU is preempted.
    pub fn synchronize() {
        start_grace_period().wait();
    }

    /// Starts a grace period without waiting for it. See [`GracePeriod`].
    #[inline]
    pub fn start_grace_period() -> GracePeriod {
        GracePeriod(raw_rcu::start())
    }

    /// A grace period started by [`start_grace_period`]: it completes once every read-side
    /// section that began before it has ended. A polled grace period, like Linux's
    /// `start_poll_synchronize_rcu`/`poll_state_synchronize_rcu`: unpublish, start, go on
    /// working, and free once [`GracePeriod::is_completed`].
    ///
    /// ```
    /// use ecs_locks::rcu;
    ///
    /// let reader = rcu::read_lock();
    /// let gp = rcu::start_grace_period();
    /// assert!(!gp.is_completed(), "a section older than the grace period holds it up");
    /// drop(reader);
    /// gp.wait();
    /// assert!(gp.is_completed());
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct GracePeriod(u64);

    impl GracePeriod {
        /// Whether the grace period has completed. Never waits; scans the reader slots.
        pub fn is_completed(&self) -> bool {
            raw_rcu::poll(self.0)
        }

        /// Waits for the grace period to complete (see [`synchronize`] for how, and why not
        /// inside a read-side section).
        pub fn wait(&self) {
            raw_rcu::wait(self.0);
        }
    }

    /// A shared reference to a value read from an RCU cell ([`Rcu`](super::Rcu) or
    /// [`RcuRing`](super::RcuRing)), valid while its read-side section lives.
    ///
    /// `!Send`: the section belongs to the thread (vCPU) that entered it.
    ///
    /// ```compile_fail
    /// fn assert_send<T: Send>(_: T) {}
    /// let cell = ecs_locks::Rcu::new(1);
    /// assert_send(cell.read()); // a guard cannot move to another thread
    /// ```
    pub struct RcuReadGuard<'a, T: ?Sized> {
        value: &'a T,
        _section: RcuReadSection,
    }

    impl<'a, T: ?Sized> RcuReadGuard<'a, T> {
        /// Pairs `value` with the section that protects it.
        ///
        /// # Safety
        ///
        /// `value` must stay valid for as long as `section` lives (it was published and is
        /// reclaimed only after a grace period that starts after it is unpublished).
        #[inline]
        pub(crate) unsafe fn new(section: RcuReadSection, value: &'a T) -> Self {
            Self {
                value,
                _section: section,
            }
        }
    }

    impl<T: ?Sized> Deref for RcuReadGuard<'_, T> {
        type Target = T;

        #[inline]
        fn deref(&self) -> &T {
            self.value
        }
    }

    impl<T: ?Sized + fmt::Debug> fmt::Debug for RcuReadGuard<'_, T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(self.value, f)
        }
    }

    impl<T: ?Sized + fmt::Display> fmt::Display for RcuReadGuard<'_, T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Display::fmt(self.value, f)
        }
    }
}

#[cfg(all(test, not(loom), feature = "std", not(ecs_guest)))]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_sync<T: Sync>() {}

    #[test]
    fn traits() {
        assert_send_sync::<Rcu<u32>>();
        assert_send_sync::<RcuRing<u32, 4>>();
        assert_sync::<RcuReadSection>();
        assert_sync::<RcuReadGuard<'_, u32>>();
        assert_send_sync::<GracePeriod>();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "inside a read-side section")]
    fn synchronize_inside_own_section_panics_in_debug() {
        // The section is a guard: unwinding ends it, so other tests' grace periods go on.
        let _section = read_lock();
        synchronize();
    }

    #[test]
    fn section_is_enlightened_and_nests() {
        let base = ecs_sys::cs_depth();
        let a = read_lock();
        let b = read_lock();
        assert_eq!(ecs_sys::cs_depth(), base + 2);
        drop(a); // out of order: the section stays open until the last one drops
        assert_eq!(ecs_sys::cs_depth(), base + 1);
        let gp = start_grace_period();
        assert!(!gp.is_completed());
        drop(b);
        assert_eq!(ecs_sys::cs_depth(), base);
        gp.wait();
    }
}
