//! `ecs-guest`: the program every vCPU of an `ecs-shim` VM runs.
//!
//! A freestanding `no_std` x86_64 binary: each vCPU registers with the host, reads the workload
//! configuration the host wrote, contends on one lock from `ecs-locks` (guest backend: hints
//! through `%fs`/`%gs`, hypercalls by port I/O), checks mutual exclusion as it goes, reports its
//! figures and exits. The shim embeds the built ELF (`hypervisor_shim::guest_image::guest_elf`).
//!
//! # Contract with the host VMM
//!
//! Machine state at the entry point, for every vCPU:
//!
//! | what | value |
//! |------|-------|
//! | mode | 64-bit long mode, paging on, CPL 3, `RFLAGS.IOPL` = 3 (so `out`/`in` exit to the VMM) |
//! | CR4 | `OSFXSR` (SSE is used), `TSD` clear (`rdtsc` at CPL 3); no `OSXSAVE` needed (no AVX) |
//! | interrupts | none: no IDT; any exception triple-faults the vCPU (`KVM_EXIT_SHUTDOWN`) |
//! | memory | identity-mapped (virtual = guest physical), user bit set, readable, writable and executable wherever the guest touches: the image, the stacks, the hint area, the config block |
//! | `rip` | the ELF entry, `_start` |
//! | `rdi` | this vCPU's index `n` (0-based), equal to the slot's `vcpu_id` |
//! | `rsi` | guest address of the [`HintHeader`] (the same address as the `%gs` base) |
//! | `rsp` | top of this vCPU's own stack, at least [`STACK_NEEDED`] bytes below it usable; any alignment (`_start` aligns it) |
//! | `%fs` base | this vCPU's [`HintSlot`](ecs_sys::abi::HintSlot) (`header.slots_addr + 64 * n`) |
//! | `%gs` base | the [`HintHeader`], valid (magic, version, slot size), `nr_vcpus` > `n` |
//! | `header.config_addr` | a 64-byte aligned [`WorkloadConfig`] with [`CONFIG_MAGIC`], written before any vCPU starts |
//!
//! The image is an `ET_EXEC` static ELF linked at `0x400000` whose `PT_LOAD` segments all end
//! below `0x800000` (checked by the shim's `guest_image` tests), so the host may put the hint
//! area, config block and stacks at `0x800000` and above. The loader copies each segment's file
//! bytes and zero-fills the rest of `p_memsz` (`.bss`: the locks and the shared counters live
//! there, and every vCPU shares the one copy).
//!
//! # What each vCPU does
//!
//! 1. Checks the boot state: `rsi` points at a valid header, `%gs` agrees with it (same
//!    `config_addr`), the slot behind `%fs` carries `vcpu_id == rdi`, `rdi < nr_vcpus`;
//!    otherwise exits with `BAD_BOOT`.
//! 2. `Op::Register` with this ABI version; an error status exits with `REGISTER_FAILED`.
//! 3. Validates the config block (address, magic, lock kind, misbehave mode,
//!    `1 <= nr_vcpus <= header.nr_vcpus`, `rdi < nr_vcpus`, `read_percent <= 100`); anything
//!    else exits with `BAD_CONFIG`.
//! 4. Acts out the misbehave mode, if any (see [`misbehave`]).
//! 5. Runs the workload on the chosen lock (see [`run`]; RCU: see [`rcu`]) until `stop != 0` or `max_ops`
//!    operations, publishing its operation count in the slot's `progress` every
//!    [`run::PROGRESS_EVERY`] operations and at the end.
//! 6. Reports `OPS`, `WRITES`, `VIOLATIONS`, `RUN_CYCLES` (and, after RCU writes,
//!    `GRACE_PERIODS`, `GRACE_CYCLES`); the last participating vCPU to finish
//!    also reports `COUNTER` (the protected counter, read under the lock). Then exits with `OK`,
//!    or `CHECK_FAILED` if it saw a violation.
//!
//! A panic exits with `PANIC`.
//!
//! # Hypercalls and reports
//!
//! The guest itself makes `Register` (argument: ABI version), `Report` (key in the argument,
//! value in the slot's `hc_arg`) and `Exit` (argument: exit code); the locks add `Yield`,
//! `YieldTo`, `Wait`, `Kick` and `PauseExit` as their hints dictate. Reports, per vCPU, in this
//! order:
//!
//! | key | value |
//! |-----|-------|
//! | `GARBAGE_REJECTED` | only with `Misbehave::GarbageHypercalls`, before the workload: garbage calls rejected (see [`misbehave`]) |
//! | `OPS` | operations completed (reads and writes) |
//! | `WRITES` | write operations (each added one to the protected counter) |
//! | `VIOLATIONS` | mutual-exclusion or reader-invariant violations seen (must be 0) |
//! | `RUN_CYCLES` | TSC cycles from the start to the end of the operation loop |
//! | `GRACE_PERIODS` | RCU only, if it wrote: grace periods it waited for (one per write) |
//! | `GRACE_CYCLES` | RCU only, if it wrote: TSC cycles spent in those waits |
//! | `COUNTER` | only from the last participant: the protected counter (RCU: the published version), which must equal the sum of every vCPU's `WRITES` |
//!
//! Exit codes: `OK`, or `BAD_BOOT`, `REGISTER_FAILED`, `BAD_CONFIG`, `CHECK_FAILED`,
//! `GARBAGE_ACCEPTED`, `NO_FAULT`, `PANIC` (all in `hypervisor_shim::workload::exit_code`).
//!
//! # Building
//!
//! `hypervisor-shim/build.rs` builds this crate with
//! `cargo build --release --locked --target x86_64-unknown-linux-gnu` into its `OUT_DIR` and the
//! shim embeds the result. By hand, from this directory: `cargo build --release`, then
//! `target/release/ecs-guest`. This crate is its own workspace (its link arguments, in
//! `build.rs`, and `panic = "abort"` must not touch the root workspace), with its own
//! `Cargo.lock`: when a dependency of `ecs-locks` or `ecs-sys` changes, build once without
//! `--locked` (`cargo build --release` here), which updates it minimally, and commit it.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

// The outer build's flags must never reach the guest (hypervisor-shim/build.rs clears them);
// loom's atomics in the lock crate would be the first sign that they did.
#[cfg(loom)]
compile_error!("the guest was built with `--cfg loom`: RUSTFLAGS leaked into its build");

// The guest backend is `--cfg ecs_guest`, set in .cargo/config.toml (a user or environment
// override of the target's rustflags would drop it and silently build the native backend).
#[cfg(not(ecs_guest))]
compile_error!(
    "the guest must be built with `--cfg ecs_guest` (hypervisor-shim/guest/.cargo/config.toml)"
);
// The cfg reached ecs-sys (and with it ecs-locks, which uses ecs-sys's backend).
const _: () = assert!(
    matches!(ecs_sys::BACKEND.as_bytes(), b"guest"),
    "ecs-sys was built without `--cfg ecs_guest`"
);

mod mem;
mod misbehave;
mod pingpong;
mod rcu;
mod run;

/// The guest/host contract, shared word for word with the shim (`hypervisor_shim::workload`).
#[allow(dead_code)] // The host uses the parts the guest does not (LockKind::ALL, RCU keys, ...).
#[path = "../../src/workload.rs"]
mod workload;

use ecs_sys::abi::HintHeader;
use ecs_sys::backend::guest::Guest;
use workload::{CONFIG_MAGIC, LockKind, Misbehave, WorkloadConfig, exit_code};

/// Stack bytes one vCPU needs below its initial `rsp` (measured use is under 1 KiB with every lock
/// kind; the margin is for future workloads). The shim's `guest_image::STACK_MIN` says the same.
pub const STACK_NEEDED: usize = 16 * 1024;

/// The entry point: aligns the stack as the SysV ABI expects at a call, clears the frame pointer
/// and calls [`guest_main`] with `rdi`/`rsi` untouched.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn _start(vcpu_id: u64, header_addr: u64) -> ! {
    core::arch::naked_asm!(
        "and rsp, -16",
        "xor ebp, ebp",
        "call {main}",
        "ud2",
        main = sym guest_main,
    )
}

/// One vCPU's run, from boot checks to exit. See the crate docs for the steps.
extern "C" fn guest_main(vcpu_id: u64, header_addr: u64) -> ! {
    let Some(header) = boot_header(vcpu_id, header_addr) else {
        Guest::exit(exit_code::BAD_BOOT)
    };
    if Guest::register().is_err() {
        Guest::exit(exit_code::REGISTER_FAILED);
    }
    let me = vcpu_id as u32;
    let Some(cfg) = Config::read(me, header) else {
        Guest::exit(exit_code::BAD_CONFIG)
    };
    misbehave::act(&cfg, me, header);
    match cfg.kind {
        LockKind::Spin => run::mutex(&run::locks::SPIN, &cfg, me),
        LockKind::Ticket => run::mutex(&run::locks::TICKET, &cfg, me),
        LockKind::Mcs => run::mutex(&run::locks::MCS, &cfg, me),
        LockKind::Mutex => run::mutex(&run::locks::MUTEX, &cfg, me),
        LockKind::SpinRw => run::rwlock(&run::locks::SPIN_RW, &cfg, me),
        LockKind::RwLock => run::rwlock(&run::locks::RW_LOCK, &cfg, me),
        LockKind::Rcu => run::generic(&rcu::RCU, &cfg, me),
        LockKind::FairMutex => run::mutex(&run::locks::FAIR_MUTEX, &cfg, me),
        LockKind::Condvar => {
            pingpong::RING.configure(&cfg);
            run::generic(&pingpong::RING, &cfg, me)
        }
        LockKind::Hog => run::generic(&run::HOG, &cfg, me),
    }
}

/// The hint header at `header_addr`, if the boot state matches the contract (step 1).
fn boot_header(vcpu_id: u64, header_addr: u64) -> Option<&'static HintHeader> {
    if header_addr == 0 || !header_addr.is_multiple_of(core::mem::align_of::<HintHeader>() as u64) {
        return None;
    }
    // SAFETY: by the boot contract `rsi` is the identity-mapped address of the hint header, which
    // the host keeps mapped for the VM's lifetime; it is non-null and aligned (checked above),
    // and a header is all atomics, so a shared reference is sound while the host writes it.
    let header = unsafe { &*(header_addr as *const HintHeader) };
    let nr_vcpus = header.nr_vcpus.load(core::sync::atomic::Ordering::Relaxed);
    let ok = header.is_valid()
        // %gs is the same header: both read the same config address.
        && Guest::config_addr() == header.config_addr.load(core::sync::atomic::Ordering::Relaxed)
        && vcpu_id < u64::from(nr_vcpus)
        // %fs is this vCPU's slot.
        && u64::from(ecs_sys::vcpu_id()) == vcpu_id;
    ok.then_some(header)
}

/// The validated configuration, copied out of the host's block (only `stop` is re-read).
#[derive(Debug)]
pub(crate) struct Config {
    /// The host's block, for `stop`.
    pub(crate) block: &'static WorkloadConfig,
    /// The lock to contend on.
    pub(crate) kind: LockKind,
    /// vCPUs running the workload.
    pub(crate) nr_vcpus: u32,
    /// Work iterations inside the critical section.
    pub(crate) cs_iters: u32,
    /// Work iterations between two acquisitions.
    pub(crate) think_iters: u32,
    /// Percentage of read-only operations (reader-writer kinds).
    pub(crate) read_percent: u32,
    /// The misbehave mode.
    pub(crate) misbehave: Misbehave,
    /// Operations per vCPU before stopping on its own (0 = until `stop`).
    pub(crate) max_ops: u64,
}

impl Config {
    /// Reads and validates the block at the header's `config_addr` for vCPU `me` (step 3).
    fn read(me: u32, header: &HintHeader) -> Option<Config> {
        use core::sync::atomic::Ordering::{Acquire, Relaxed};
        let addr = Guest::config_addr();
        if addr == 0 || !addr.is_multiple_of(core::mem::align_of::<WorkloadConfig>() as u64) {
            return None;
        }
        // SAFETY: by the boot contract a non-zero `config_addr` is the identity-mapped address of
        // the host's config block, mapped for the VM's lifetime; it is aligned (checked above),
        // and the block is all atomics, so a shared reference is sound while the host sets `stop`.
        let block = unsafe { &*(addr as *const WorkloadConfig) };
        if block.magic.load(Acquire) != CONFIG_MAGIC {
            return None;
        }
        let cfg = Config {
            block,
            kind: LockKind::try_from(block.lock_kind.load(Relaxed)).ok()?,
            nr_vcpus: block.nr_vcpus.load(Relaxed),
            cs_iters: block.cs_iters.load(Relaxed),
            think_iters: block.think_iters.load(Relaxed),
            read_percent: block.read_percent.load(Relaxed),
            misbehave: Misbehave::try_from(block.misbehave.load(Relaxed)).ok()?,
            max_ops: block.max_ops.load(Relaxed),
        };
        let ok = cfg.nr_vcpus >= 1
            && cfg.nr_vcpus <= header.nr_vcpus.load(Relaxed)
            && me < cfg.nr_vcpus
            && cfg.read_percent <= 100;
        ok.then_some(cfg)
    }

    /// The vCPUs that run the workload to the end and take part in the final count: all of
    /// them, less those its misbehave mode keeps from finishing.
    pub(crate) fn participants(&self) -> u32 {
        self.nr_vcpus - misbehave::dropouts(self.misbehave, self.nr_vcpus)
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    Guest::exit(exit_code::PANIC)
}
