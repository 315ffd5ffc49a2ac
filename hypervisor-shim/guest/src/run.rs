//! The workload: every participating vCPU contends on one lock over the same [`Shared`] record.
//!
//! One operation is:
//!
//! ```text
//! acquire (write, or read for read_percent % of the operations on reader-writer kinds)
//!   write: holder = me; c = count; count = c + 1;  cs_iters of work;  mirror = c + 1;
//!          check holder == me (and count == mirror at entry)
//!   read:  a = count;                               cs_iters of work;  b = mirror;
//!          check a == b
//! release
//! think_iters of work
//! ```
//!
//! The protected fields are plain integers read and written with volatile accesses, so every
//! access really happens where the code puts it, and the work between the first and the last
//! access keeps the window open: if two writers ever overlap, one of them finds another `holder`
//! or the final `count` falls short of the sum of the `WRITES`; if a reader ever overlaps a
//! writer, it sees `count != mirror`. Each such sighting is a violation, reported and turned
//! into `CHECK_FAILED`. (Should the lock really fail, those accesses race: the check is there to
//! catch exactly that.)

use crate::Config;
use crate::workload::{exit_code, report};
use core::hint::black_box;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, Ordering};
use ecs_sys::backend::guest::Guest;
use lock_api::{RawMutex, RawRwLock};

/// The slot's `progress` is updated every this many operations (a power of two), and at the end.
pub(crate) const PROGRESS_EVERY: u64 = 64;

/// The record the lock protects. Writers keep `count == mirror` outside their critical section.
#[derive(Debug)]
pub(crate) struct Shared {
    /// `vcpu_id + 1` of the last writer (0 = none yet).
    holder: u32,
    /// Writes completed, over every vCPU: the `COUNTER` report.
    count: u64,
    /// Equal to `count` whenever no writer is inside.
    mirror: u64,
}

impl Shared {
    /// The final `(count, count == mirror)`.
    pub(crate) fn total(&self) -> (u64, bool) {
        (self.count, self.count == self.mirror)
    }

    /// The initial record.
    pub(crate) const ZERO: Shared = Shared {
        holder: 0,
        count: 0,
        mirror: 0,
    };
}

/// The locks, one static per kind (only the configured one is touched). They live in `.bss`,
/// which every vCPU shares.
pub(crate) mod locks {
    use super::Shared;

    /// [`LockKind::Spin`](crate::workload::LockKind::Spin).
    pub(crate) static SPIN: ecs_locks::SpinMutex<Shared> = ecs_locks::SpinMutex::new(Shared::ZERO);
    /// [`LockKind::Ticket`](crate::workload::LockKind::Ticket).
    pub(crate) static TICKET: ecs_locks::TicketMutex<Shared> =
        ecs_locks::TicketMutex::new(Shared::ZERO);
    /// [`LockKind::Mcs`](crate::workload::LockKind::Mcs).
    pub(crate) static MCS: ecs_locks::McsMutex<Shared> = ecs_locks::McsMutex::new(Shared::ZERO);
    /// [`LockKind::Mutex`](crate::workload::LockKind::Mutex): blocking, waits by `Wait`/`Kick`.
    pub(crate) static MUTEX: ecs_locks::Mutex<Shared> = ecs_locks::Mutex::new(Shared::ZERO);
    /// [`LockKind::SpinRw`](crate::workload::LockKind::SpinRw).
    pub(crate) static SPIN_RW: ecs_locks::SpinRwLock<Shared> =
        ecs_locks::SpinRwLock::new(Shared::ZERO);
    /// [`LockKind::RwLock`](crate::workload::LockKind::RwLock): blocking, waits by `Wait`/`Kick`.
    pub(crate) static RW_LOCK: ecs_locks::RwLock<Shared> = ecs_locks::RwLock::new(Shared::ZERO);
    /// [`LockKind::FairMutex`](crate::workload::LockKind::FairMutex): blocking, FIFO hand-off.
    pub(crate) static FAIR_MUTEX: ecs_locks::FairMutex<Shared> =
        ecs_locks::FairMutex::new(Shared::ZERO);
}

/// vCPUs that have finished their operations; the one that brings it to
/// [`Config::participants`] reports `COUNTER`.
static DONE: AtomicU32 = AtomicU32::new(0);

/// `iters` steps of a dependent multiply-add chain the compiler cannot fold or vectorise
/// (about one step per few cycles).
#[inline(always)]
pub(crate) fn work(iters: u32, mut x: u64) -> u64 {
    for _ in 0..iters {
        x = black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    x
}

/// The write operation on the record, inside the exclusive section. Returns whether it saw a
/// violation and the work chain's value.
#[inline(always)]
pub(crate) fn write_op(shared: *mut Shared, me: u32, cs_iters: u32, acc: u64) -> (bool, u64) {
    // SAFETY: `shared` comes from a held exclusive guard, so it is valid and (if the lock works)
    // no one else accesses the record until the caller releases it.
    unsafe {
        write_volatile(addr_of_mut!((*shared).holder), me + 1);
        let c = read_volatile(addr_of!((*shared).count));
        let consistent_at_entry = c == read_volatile(addr_of!((*shared).mirror));
        write_volatile(addr_of_mut!((*shared).count), c + 1);
        let acc = work(cs_iters, acc);
        write_volatile(addr_of_mut!((*shared).mirror), c + 1);
        let still_mine = read_volatile(addr_of!((*shared).holder)) == me + 1;
        (!(consistent_at_entry && still_mine), acc)
    }
}

/// The read operation, inside a shared section. Returns whether it saw a violation.
#[inline(always)]
fn read_op(shared: *const Shared, cs_iters: u32, acc: u64) -> (bool, u64) {
    // SAFETY: `shared` comes from a held shared guard, so it is valid and (if the lock works) no
    // writer is inside until the caller releases it.
    unsafe {
        let a = read_volatile(addr_of!((*shared).count));
        let acc = work(cs_iters, acc ^ a);
        let b = read_volatile(addr_of!((*shared).mirror));
        (a != b, acc)
    }
}

/// What a workload can drive: the mutex and reader-writer shapes over [`Shared`], and the RCU
/// cell ([`crate::rcu`]).
pub(crate) trait Workload: Sync {
    /// Called once when this vCPU leaves its operation loop (the run is over for it), before it
    /// reports: a workload whose waiters block on each other wakes them here.
    fn leave(&self) {}
    /// Whether the kind has a shared mode (`read_percent` applies).
    const HAS_READS: bool;
    /// One write operation; `(violation, acc)`. Kinds that wait for RCU grace periods add
    /// each wait to `grace`.
    fn write(&self, me: u32, cs_iters: u32, acc: u64, grace: &mut Grace) -> (bool, u64);
    /// One read operation; `(violation, acc)`. Only called when [`Workload::HAS_READS`].
    fn read(&self, cs_iters: u32, acc: u64) -> (bool, u64);
    /// The final `(count, count == mirror)`, read under the lock.
    fn total(&self) -> (u64, bool);
}

impl<R: RawMutex + Sync> Workload for lock_api::Mutex<R, Shared> {
    const HAS_READS: bool = false;

    #[inline(always)]
    fn write(&self, me: u32, cs_iters: u32, acc: u64, _: &mut Grace) -> (bool, u64) {
        let mut guard = self.lock();
        write_op(&mut *guard, me, cs_iters, acc)
    }

    fn read(&self, cs_iters: u32, acc: u64) -> (bool, u64) {
        let guard = self.lock();
        read_op(&*guard, cs_iters, acc)
    }

    fn total(&self) -> (u64, bool) {
        let guard = self.lock();
        (guard.count, guard.count == guard.mirror)
    }
}

impl<R: RawRwLock + Sync> Workload for lock_api::RwLock<R, Shared> {
    const HAS_READS: bool = true;

    #[inline(always)]
    fn write(&self, me: u32, cs_iters: u32, acc: u64, _: &mut Grace) -> (bool, u64) {
        let mut guard = self.write();
        write_op(&mut *guard, me, cs_iters, acc)
    }

    #[inline(always)]
    fn read(&self, cs_iters: u32, acc: u64) -> (bool, u64) {
        let guard = self.read();
        read_op(&*guard, cs_iters, acc)
    }

    fn total(&self) -> (u64, bool) {
        let guard = self.read();
        (guard.count, guard.count == guard.mirror)
    }
}

/// [`LockKind::Hog`](crate::workload::LockKind::Hog): no lock, no shared memory; every
/// operation is `cs_iters` of work (a "read", so `WRITES` and `COUNTER` stay 0).
#[derive(Debug)]
pub(crate) struct Hog;

/// The hog workload's only instance.
pub(crate) static HOG: Hog = Hog;

impl Workload for Hog {
    const HAS_READS: bool = true;

    fn write(&self, _: u32, cs_iters: u32, acc: u64, _: &mut Grace) -> (bool, u64) {
        (false, work(cs_iters, acc))
    }

    #[inline(always)]
    fn read(&self, cs_iters: u32, acc: u64) -> (bool, u64) {
        (false, work(cs_iters, acc))
    }

    fn total(&self) -> (u64, bool) {
        (0, true)
    }
}

/// RCU grace periods one vCPU waited for, as a writer.
#[derive(Debug, Default)]
pub(crate) struct Grace {
    /// Grace periods waited for.
    pub(crate) periods: u64,
    /// TSC cycles spent waiting for them.
    pub(crate) cycles: u64,
}

/// What one vCPU did.
#[derive(Debug, Default)]
struct Stats {
    ops: u64,
    writes: u64,
    violations: u64,
    run_cycles: u64,
    grace: Grace,
}

/// A xorshift64 generator: which operations read, without a shared random source.
struct XorShift(u64);

impl XorShift {
    fn new(vcpu: u32) -> Self {
        // Any non-zero seed; distinct per vCPU.
        XorShift(0x9e37_79b9_7f4a_7c15 ^ (u64::from(vcpu) + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9))
    }

    fn below_100(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 100) as u32
    }
}

/// The time-stamp counter.
#[inline(always)]
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` is allowed at CPL 3 (the boot contract keeps CR4.TSD clear), has no
    // memory effect and needs no CPU feature beyond x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Runs the operation loop on `lock` until `stop` or `max_ops`.
fn drive<L: Workload>(lock: &L, cfg: &Config, me: u32) -> Stats {
    let mut stats = Stats::default();
    let mut rng = XorShift::new(me);
    let mut acc = u64::from(me);
    // The hog's every operation is a "read" (no writes, no counter).
    let all_reads = matches!(cfg.kind, crate::workload::LockKind::Hog);
    let start = rdtsc();
    while (cfg.max_ops == 0 || stats.ops < cfg.max_ops)
        && cfg.block.stop.load(Ordering::Relaxed) == 0
    {
        let (violation, a) = if L::HAS_READS && (all_reads || rng.below_100() < cfg.read_percent) {
            lock.read(cfg.cs_iters, acc)
        } else {
            stats.writes += 1;
            lock.write(me, cfg.cs_iters, acc, &mut stats.grace)
        };
        stats.violations += u64::from(violation);
        stats.ops += 1;
        if stats.ops % PROGRESS_EVERY == 0 {
            Guest::set_progress(stats.ops);
        }
        acc = work(cfg.think_iters, a);
    }
    stats.run_cycles = rdtsc().wrapping_sub(start);
    lock.leave();
    Guest::set_progress(stats.ops);
    black_box(acc);
    stats
}

/// Reports `stats` and, from the last participant, the final count; then exits.
fn finish<L: Workload>(lock: &L, cfg: &Config, mut stats: Stats) -> ! {
    let last = DONE.fetch_add(1, Ordering::AcqRel) + 1 == cfg.participants();
    let mut counter = None;
    if last {
        // Every other participant has left its loop (and released the lock) before its own
        // increment of DONE; the lock orders their writes before this read.
        let (count, consistent) = lock.total();
        stats.violations += u64::from(!consistent);
        counter = Some(count);
    }
    // A report the host refuses changes nothing here: the host's figures are what count, and
    // it logs what it refused.
    let _ = Guest::report(report::OPS, stats.ops);
    let _ = Guest::report(report::WRITES, stats.writes);
    let _ = Guest::report(report::VIOLATIONS, stats.violations);
    let _ = Guest::report(report::RUN_CYCLES, stats.run_cycles);
    if stats.grace.periods > 0 {
        let _ = Guest::report(report::GRACE_PERIODS, stats.grace.periods);
        let _ = Guest::report(report::GRACE_CYCLES, stats.grace.cycles);
    }
    if let Some(count) = counter {
        let _ = Guest::report(report::COUNTER, count);
    }
    Guest::exit(if stats.violations == 0 {
        exit_code::OK
    } else {
        exit_code::CHECK_FAILED
    })
}

/// The workload on a mutex kind: every operation writes.
pub(crate) fn mutex<R: RawMutex + Sync>(
    lock: &lock_api::Mutex<R, Shared>,
    cfg: &Config,
    me: u32,
) -> ! {
    let stats = drive(lock, cfg, me);
    finish(lock, cfg, stats)
}

/// The workload on any [`Workload`] (the RCU cell).
pub(crate) fn generic<L: Workload>(lock: &L, cfg: &Config, me: u32) -> ! {
    let stats = drive(lock, cfg, me);
    finish(lock, cfg, stats)
}

/// The workload on a reader-writer kind: `read_percent` % of the operations read.
pub(crate) fn rwlock<R: RawRwLock + Sync>(
    lock: &lock_api::RwLock<R, Shared>,
    cfg: &Config,
    me: u32,
) -> ! {
    let stats = drive(lock, cfg, me);
    finish(lock, cfg, stats)
}
