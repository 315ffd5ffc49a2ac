//! The RCU workload ([`LockKind::Rcu`](crate::workload::LockKind::Rcu)): a read-mostly
//! [`Snapshot`] in an [`RcuRing`], with every reader an enlightened critical section and every
//! writer waiting for a grace period.
//!
//! One operation is:
//!
//! ```text
//! read  (read_percent %):  g = ring.read()                       (read-side section)
//!                          a = g.version; c = g.canary;  cs_iters of work;
//!                          b = g.mirror;  d = g.canary
//!                          check a == b and c == d == LIVE, and a >= the last version
//!                          this vCPU saw (a reader never goes back in time)
//!                          end of section
//! write (the rest):        ring.defer_update(|s| s.version + 1)  (under the ring's writer lock)
//!                          t0 = rdtsc; rcu::synchronize(); GRACE_CYCLES += rdtsc - t0
//!                          ring.reclaim()                        (drops retired snapshots in place)
//! think_iters of work
//! ```
//!
//! Dropping a [`Snapshot`] poisons its canary where it lies (the ring drops retired values in
//! their slots), and a reused slot is rewritten field by field: a reader that a grace period
//! failed to wait for sees the poison, or a `version` and `mirror` from two different
//! snapshots. Either is a violation. Writers serialize on the ring's own writer lock, so
//! `version` counts writes exactly: the last participant reports it as `COUNTER`, which must
//! equal the sum of every vCPU's `WRITES`.
//!
//! The grace-period wait is timed alone (`synchronize`, not the publish or the reclaim): it is
//! what a preempted reader stretches, from microseconds to time slices, and what the `ecs`
//! policy shortens (the reader's section is an eCS the host does not preempt, and the writer
//! yields its pCPU to a preempted reader's vCPU).

use crate::run::{Grace, Workload, rdtsc, work};
use core::ptr::read_volatile;
use core::sync::atomic::{AtomicU64, Ordering};
use ecs_locks::RcuRing;
use ecs_locks::rcu;

/// The canary of a live snapshot.
const LIVE: u64 = 0x5AFE_C0DE_5AFE_C0DE;
/// The canary of a dropped one.
const POISON: u64 = 0xDEAD_DEAD_DEAD_DEAD;

/// Ring slots: enough that the writers of a few dozen vCPUs, each with one snapshot retired
/// and not yet reclaimed, rarely find the ring full (a full ring makes a writer wait for a
/// grace period inside `defer_update`, which is correct but not the wait measured here).
const SLOTS: usize = 64;

/// The read-mostly value. Invariant of a live snapshot: `version == mirror`, `canary == LIVE`.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Writes published so far.
    version: u64,
    /// Equal to `version`.
    mirror: u64,
    /// [`LIVE`] until dropped, [`POISON`] after.
    canary: u64,
}

impl Snapshot {
    const fn new(version: u64) -> Self {
        Snapshot {
            version,
            mirror: version,
            canary: LIVE,
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // A volatile store, so the poisoning of a value about to die is not optimised away:
        // it is the point.
        // SAFETY: `self.canary` is a valid, aligned field of a value we have `&mut` to.
        unsafe { core::ptr::write_volatile(&mut self.canary, POISON) };
    }
}

/// A volatile read of a field of a snapshot a read guard holds.
#[inline(always)]
fn peek(field: &u64) -> u64 {
    // SAFETY: `field` is a valid, aligned reference (it lives in a snapshot the caller's read
    // section keeps published or retired-but-unreclaimed). Should RCU fail, a writer may rewrite
    // it concurrently: that race is what the check is there to catch.
    unsafe { read_volatile(field) }
}

/// The last version each vCPU read (only that vCPU touches its entry).
static LAST_SEEN: [AtomicU64; ecs_sys::abi::MAX_VCPUS as usize] =
    [const { AtomicU64::new(0) }; ecs_sys::abi::MAX_VCPUS as usize];

/// The RCU cell of the workload (in `.bss`/`.data`, shared by every vCPU).
pub(crate) struct Cell(RcuRing<Snapshot, SLOTS>);

/// The one cell.
pub(crate) static RCU: Cell = Cell(RcuRing::new(Snapshot::new(0)));

impl Workload for Cell {
    const HAS_READS: bool = true;

    #[inline(always)]
    fn write(&self, _me: u32, _cs_iters: u32, acc: u64, grace: &mut Grace) -> (bool, u64) {
        self.0.defer_update(|s| Snapshot::new(s.version + 1));
        let t0 = rdtsc();
        rcu::synchronize();
        grace.cycles += rdtsc().wrapping_sub(t0);
        grace.periods += 1;
        // The grace period above covers the snapshot this call retired (its own grace period
        // started before), so at least that one is dropped (poisoned) here.
        self.0.reclaim();
        (false, acc)
    }

    #[inline(always)]
    fn read(&self, cs_iters: u32, acc: u64) -> (bool, u64) {
        let g = self.0.read();
        // Volatile reads: each field is read where the code puts it, with the work between.
        let a = peek(&g.version);
        let c = peek(&g.canary);
        let acc = work(cs_iters, acc ^ a);
        let b = peek(&g.mirror);
        let d = peek(&g.canary);
        drop(g);
        // Writers serialize and each publishes the next version, and every read loads the
        // published slot index with Acquire: later reads of one vCPU never see older versions.
        let last = &LAST_SEEN[ecs_sys::vcpu_id() as usize];
        let went_back = a < last.load(Ordering::Relaxed);
        last.store(a, Ordering::Relaxed);
        (a != b || c != LIVE || d != LIVE || went_back, acc)
    }

    fn total(&self) -> (u64, bool) {
        let g = self.0.read();
        (g.version, g.version == g.mirror && g.canary == LIVE)
    }
}
