//! The contract between the shim and its guest program: the workload configuration block the host
//! writes into guest memory before the vCPUs start, and the report keys and exit codes the guest
//! answers with.
//!
//! This file is compiled twice: into the shim (`hypervisor_shim::workload`) and, through
//! `#[path]`, into the no_std guest program (`hypervisor-shim/guest`). It therefore uses `core`
//! only. The host publishes the block's guest address in the hint header's `config_addr`.

use core::sync::atomic::{AtomicU32, AtomicU64};

/// `b"eCSWORK1"` as a little-endian `u64`: the first word of a valid block.
pub const CONFIG_MAGIC: u64 = u64::from_le_bytes(*b"eCSWORK1");

/// Which lock the workload contends on.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// `ecs_locks::SpinMutex` (test-and-test-and-set).
    Spin = 1,
    /// `ecs_locks::TicketMutex`.
    Ticket = 2,
    /// `ecs_locks::McsMutex` (queued).
    Mcs = 3,
    /// `ecs_locks::SpinRwLock` (`read_percent` of the operations are reads).
    SpinRw = 4,
    /// `ecs_locks::Mutex` (blocking: WAIT/KICK in the guest).
    Mutex = 5,
    /// `ecs_locks::RwLock` (blocking reader-writer).
    RwLock = 6,
    /// `ecs_locks::RcuRing` read-mostly cell: `read_percent` of the operations read it in a
    /// read-side section, the rest publish a new version and wait for a grace period (each
    /// wait timed and reported as `GRACE_PERIODS`/`GRACE_CYCLES`).
    Rcu = 7,
    /// `ecs_locks::FairMutex` (blocking, hands the lock off in FIFO order on unlock).
    FairMutex = 8,
    /// A `ecs_locks::Condvar` ping-pong over an `ecs_locks::Mutex`: the vCPUs take turns in a
    /// ring (two vCPUs: ping-pong), each waiting on the condvar until it is its turn; every
    /// turn is one write operation. Every operation wakes a blocked waiter.
    Condvar = 9,
    /// No lock: CPU-bound work only (`cs_iters + think_iters` of work per operation, no shared
    /// memory, no hypercalls until the end). The neighbour VM of the multi-VM experiments: it
    /// always wants a pCPU, so its share shows what the host gives it.
    Hog = 10,
}

impl LockKind {
    /// Every kind, in numeric order.
    pub const ALL: [LockKind; 10] = [
        LockKind::Spin,
        LockKind::Ticket,
        LockKind::Mcs,
        LockKind::SpinRw,
        LockKind::Mutex,
        LockKind::RwLock,
        LockKind::Rcu,
        LockKind::FairMutex,
        LockKind::Condvar,
        LockKind::Hog,
    ];
}

impl TryFrom<u32> for LockKind {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        LockKind::ALL.into_iter().find(|k| *k as u32 == v).ok_or(v)
    }
}

/// Deliberate misbehaviour, for the shim's robustness tests (0 = behave).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Misbehave {
    /// Run the workload normally.
    None = 0,
    /// vCPU 0 enters a critical section (`cs_depth` + 1) and never leaves it, spinning forever.
    NeverLeaveCs = 1,
    /// Every vCPU issues garbage hypercalls (unknown ops, out-of-range vCPU ids), checks that each
    /// gets an error status, then runs the workload normally.
    GarbageHypercalls = 2,
    /// vCPU 0 touches unmapped memory (a page fault with no IDT: the VM shuts down).
    Fault = 3,
    /// vCPU 0 never stops: it ignores `stop` and spins without hypercalls.
    Hang = 4,
    /// vCPU 0 floods the host with hypercalls (`Yield` and `Report`, alternating) forever,
    /// ignoring `stop`.
    FloodHypercalls = 5,
    /// vCPUs 0 and 1 ping-pong `YieldTo` to each other forever, ignoring `stop` (with one vCPU,
    /// vCPU 0 yields to itself).
    YieldPingPong = 6,
    /// vCPU 0 scribbles on every sibling's hint slot forever (`cs_depth`, `blocking_depth` and
    /// `progress` set to large values, the counters overwritten), ignoring `stop`.
    ScribbleSiblings = 7,
}

impl TryFrom<u32> for Misbehave {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        Ok(match v {
            0 => Misbehave::None,
            1 => Misbehave::NeverLeaveCs,
            2 => Misbehave::GarbageHypercalls,
            3 => Misbehave::Fault,
            4 => Misbehave::Hang,
            5 => Misbehave::FloodHypercalls,
            6 => Misbehave::YieldPingPong,
            7 => Misbehave::ScribbleSiblings,
            other => return Err(other),
        })
    }
}

/// The configuration block. Written by the host before any vCPU starts; only `stop` changes
/// afterwards (the host sets it to end the run).
#[repr(C, align(64))]
#[derive(Debug)]
pub struct WorkloadConfig {
    /// [`CONFIG_MAGIC`].
    pub magic: AtomicU64,
    /// [`LockKind`] as `u32`.
    pub lock_kind: AtomicU32,
    /// Number of vCPUs running the workload.
    pub nr_vcpus: AtomicU32,
    /// Work inside the critical section, in iterations of a small dependent arithmetic loop.
    pub cs_iters: AtomicU32,
    /// Work outside the critical section between two acquisitions, same unit.
    pub think_iters: AtomicU32,
    /// For reader-writer kinds and RCU: percentage of operations that only read (0-100).
    pub read_percent: AtomicU32,
    /// [`Misbehave`] as `u32`.
    pub misbehave: AtomicU32,
    /// Stop after this many operations per vCPU (0 = run until `stop`).
    pub max_ops: AtomicU64,
    /// Set to 1 by the host to end the run; every vCPU then reports and exits.
    pub stop: AtomicU32,
    /// Reserved, zero.
    pub reserved: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<WorkloadConfig>() == 64);

/// Report keys (`Op::Report`'s argument); the value travels in the slot's `hc_arg`.
pub mod report {
    /// Operations this vCPU completed (lock acquisitions for writers and readers alike).
    pub const OPS: u32 = 1;
    /// Write operations this vCPU completed (each incremented the protected counter once).
    pub const WRITES: u32 = 2;
    /// The protected counter's final value (RCU: the published version), reported by the last
    /// vCPU to finish. The host checks it equals the sum of every vCPU's `WRITES`: a mismatch
    /// means mutual exclusion (RCU: writer serialization) failed.
    pub const COUNTER: u32 = 3;
    /// A reader saw a torn or stale-invariant value (value = how many times): must be 0.
    pub const VIOLATIONS: u32 = 4;
    /// RCU: grace periods this vCPU waited for as a writer (one per write).
    pub const GRACE_PERIODS: u32 = 5;
    /// RCU: total TSC cycles this vCPU spent waiting for grace periods (the host converts
    /// them with the TSC frequency it measures over the run).
    pub const GRACE_CYCLES: u32 = 6;
    /// TSC cycles this vCPU ran the workload (from its first to its last operation).
    pub const RUN_CYCLES: u32 = 7;
    /// `Misbehave::GarbageHypercalls`: garbage hypercalls this vCPU issued that the host rejected
    /// with an error status (all of them on success; on `exit_code::GARBAGE_ACCEPTED`, the index
    /// of the one that was accepted).
    pub const GARBAGE_REJECTED: u32 = 8;
}

/// Guest exit codes (`Op::Exit`'s argument).
pub mod exit_code {
    /// The workload ran and every check passed.
    pub const OK: u32 = 0;
    /// The configuration block was missing or invalid.
    pub const BAD_CONFIG: u32 = 1;
    /// A mutual-exclusion or reader invariant check failed inside the guest.
    pub const CHECK_FAILED: u32 = 2;
    /// Registering the hint area failed (ABI version mismatch).
    pub const REGISTER_FAILED: u32 = 3;
    /// A garbage hypercall was answered with `Status::Ok` (the host accepted nonsense).
    pub const GARBAGE_ACCEPTED: u32 = 4;
    /// The guest panicked.
    pub const PANIC: u32 = 5;
    /// The boot state broke the contract: `rsi` is not a valid hint header, `%gs` disagrees with
    /// it, the slot behind `%fs` carries another vCPU index than `rdi`, or `rdi >= nr_vcpus`.
    pub const BAD_BOOT: u32 = 6;
    /// `Misbehave::Fault`: the read of the unmapped address returned instead of faulting.
    pub const NO_FAULT: u32 = 7;
}
