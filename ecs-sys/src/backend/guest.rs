//! The guest backend: code running inside an `ecs-shim` VM.
//!
//! Contract with the VMM (checked by the shim's integration tests):
//! - the hint area (see [`crate::abi`]) is mapped at an identity-mapped guest address;
//! - each vCPU's `%fs` base points at its own [`HintSlot`], and every vCPU's `%gs` base points
//!   at the [`HintHeader`](crate::abi::HintHeader);
//! - the guest runs at CPL 3 with IOPL 3, so `out` to [`PORT`] exits to the VMM.
//!
//! Enter and exit are then single `inc`/`dec` instructions on `%fs`-relative memory. They need
//! no `lock` prefix: only this vCPU writes its depth, and one instruction cannot be split by a
//! VM exit, so the host always reads a whole, current value. Each `asm!` block here is also a
//! compiler barrier (no `nomem`), which keeps the depth change on its side of the lock
//! operation that precedes or follows it.
//!
//! Using this backend outside such a VM is undefined behaviour (on Linux `%fs` is the TLS
//! block): it is only compiled with `--cfg ecs_guest`, which only the guest program sets (see
//! [`super`] for why this is a cfg and not a feature).

use super::Backend;
use crate::abi::{HintSlot, header_offset, slot_offset};
use crate::hypercall::{ABI_VERSION_ARG, Op, PORT, Status, encode};
use core::arch::asm;
use core::sync::atomic::Ordering;

/// The guest backend. See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Guest;

/// Reads a `u32` at `offset` in this vCPU's slot.
#[inline(always)]
fn slot_u32<const OFFSET: usize>() -> u32 {
    let v: u32;
    // SAFETY: by the module contract %fs points at this vCPU's mapped 64-byte slot and OFFSET is
    // a field offset inside it (from `slot_offset`); the read has no side effect.
    unsafe {
        asm!("mov {v:e}, dword ptr fs:[{o}]", o = const OFFSET, v = out(reg) v,
             options(nostack, preserves_flags, readonly))
    };
    v
}

/// Reads a `u32`/`u64` at `offset` in the header.
#[inline(always)]
fn header_u64<const OFFSET: usize>() -> u64 {
    let v: u64;
    // SAFETY: by the module contract %gs points at the mapped 64-byte header; OFFSET is a field
    // offset of an 8-byte field inside it.
    unsafe {
        asm!("mov {v}, qword ptr gs:[{o}]", o = const OFFSET, v = out(reg) v,
             options(nostack, preserves_flags, readonly))
    };
    v
}

#[inline(always)]
fn header_u32<const OFFSET: usize>() -> u32 {
    let v: u32;
    // SAFETY: as in `header_u64`, for a 4-byte field.
    unsafe {
        asm!("mov {v:e}, dword ptr gs:[{o}]", o = const OFFSET, v = out(reg) v,
             options(nostack, preserves_flags, readonly))
    };
    v
}

/// Slot `vcpu` of the area, or `None` past the last vCPU.
#[inline]
fn slot(vcpu: u32) -> Option<&'static HintSlot> {
    if vcpu >= header_u32::<{ header_offset::NR_VCPUS }>() {
        return None;
    }
    let base = header_u64::<{ header_offset::SLOTS_ADDR }>() as *const HintSlot;
    // SAFETY: by the module contract the area holds `nr_vcpus` slots from `slots_addr`, mapped
    // for the VM's lifetime at an identity-mapped address; `vcpu < nr_vcpus` was checked, and a
    // slot is all atomics, so a shared reference is sound while the host writes it.
    Some(unsafe { &*base.add(vcpu as usize) })
}

/// Issues one hypercall and returns the host's status.
#[inline]
fn hypercall(op: Op, arg: u32) -> Result<(), Status> {
    // SAFETY: at CPL 3 with IOPL 3 the port write exits to the VMM, which serves it and resumes
    // the vCPU after the instruction; no guest memory is touched by the instruction itself.
    unsafe {
        asm!("out dx, eax", in("dx") PORT, in("eax") encode(op, arg), options(nostack, preserves_flags))
    };
    match Status::try_from(slot_u32::<{ slot_offset::HC_STATUS }>()) {
        Ok(Status::Ok) => Ok(()),
        Ok(s) => Err(s),
        Err(_) => Err(Status::UnknownOp),
    }
}

impl Guest {
    /// This vCPU's slot.
    #[inline]
    pub fn my_slot() -> &'static HintSlot {
        // A vCPU's own id is always in range; fall back to slot 0 rather than panic on a
        // corrupted id (the host validates ids on its side).
        slot(Self::vcpu_id()).unwrap_or_else(|| slot(0).expect("hint area has no slots"))
    }

    /// Tells the host this vCPU uses the hint area and speaks this ABI version.
    pub fn register() -> Result<(), Status> {
        hypercall(Op::Register, ABI_VERSION_ARG)
    }

    /// Reports `value` under `key` to the host.
    pub fn report(key: u32, value: u64) -> Result<(), Status> {
        Self::my_slot().hc_arg.store(value, Ordering::Relaxed);
        hypercall(Op::Report, key)
    }

    /// Publishes the workload's progress (operations so far) for the host to display.
    #[inline]
    pub fn set_progress(ops: u64) {
        Self::my_slot().progress.store(ops, Ordering::Relaxed);
    }

    /// Ends this vCPU's run with `code` (0 = success). The host stops the vCPU; if it ever
    /// resumes it, this spins.
    pub fn exit(code: u32) -> ! {
        let _ = hypercall(Op::Exit, code);
        loop {
            core::hint::spin_loop();
        }
    }

    /// Guest address of the workload configuration block the host published (0 if none).
    pub fn config_addr() -> u64 {
        header_u64::<{ header_offset::CONFIG_ADDR }>()
    }

    /// The header's `FEATURE_*` bits.
    pub fn features() -> u32 {
        header_u32::<{ header_offset::FEATURES }>()
    }
}

impl Backend for Guest {
    const NAME: &'static str = "guest";
    const LIVE_HINTS: bool = true;

    #[inline(always)]
    fn cs_enter() {
        // SAFETY: %fs points at this vCPU's slot (module contract); CS_DEPTH is the offset of an
        // aligned u32 that only this vCPU writes.
        unsafe {
            asm!("inc dword ptr fs:[{o}]", o = const slot_offset::CS_DEPTH, options(nostack))
        };
    }

    #[inline(always)]
    fn cs_exit() -> bool {
        let depth: u32;
        // SAFETY: as in `cs_enter`.
        unsafe {
            asm!("dec dword ptr fs:[{o}]", "mov {d:e}, dword ptr fs:[{o}]",
                 o = const slot_offset::CS_DEPTH, d = out(reg) depth, options(nostack))
        };
        if depth == u32::MAX {
            // An exit without an enter on this vCPU (a `force_unlock` of a lock another vCPU
            // took): undo the wrap, so the vCPU is not marked inside a section for good.
            Self::cs_enter();
            return false;
        }
        depth == 0 && slot_u32::<{ slot_offset::EXT_GRANTED }>() != 0
    }

    #[inline(always)]
    fn cs_depth() -> u32 {
        slot_u32::<{ slot_offset::CS_DEPTH }>()
    }

    #[inline(always)]
    fn blocking_enter() {
        // SAFETY: as in `cs_enter`, for the blocking depth.
        unsafe {
            asm!("inc dword ptr fs:[{o}]", o = const slot_offset::BLOCKING_DEPTH, options(nostack))
        };
    }

    #[inline(always)]
    fn blocking_exit() {
        // SAFETY: as in `cs_enter`, for the blocking depth.
        unsafe {
            asm!("dec dword ptr fs:[{o}]", o = const slot_offset::BLOCKING_DEPTH, options(nostack))
        };
    }

    #[inline(always)]
    fn vcpu_id() -> u32 {
        slot_u32::<{ slot_offset::VCPU_ID }>()
    }

    #[inline]
    fn vcpu_preempted(vcpu: u32) -> bool {
        slot(vcpu).is_some_and(|s| s.preempted.load(Ordering::Relaxed) != 0)
    }

    #[inline(always)]
    fn pcpu_overloaded() -> bool {
        slot_u32::<{ slot_offset::OVERLOADED }>() != 0
    }

    #[inline]
    fn yield_now() {
        let _ = hypercall(Op::Yield, 0);
    }

    #[inline]
    fn yield_to(vcpu: u32) {
        let _ = hypercall(Op::YieldTo, vcpu);
    }

    #[inline]
    fn wait() {
        let _ = hypercall(Op::Wait, 0);
    }

    #[inline]
    fn kick(vcpu: u32) {
        let _ = hypercall(Op::Kick, vcpu);
    }

    #[inline]
    fn ple_window() -> u32 {
        if Self::features() & crate::abi::FEATURE_PLE != 0 {
            // The host's per-vCPU window (KVM's grow/reset), else the header's.
            match slot_u32::<{ slot_offset::PLE_WINDOW }>() {
                0 => header_u32::<{ header_offset::PLE_WINDOW }>(),
                w => w,
            }
        } else {
            0
        }
    }

    #[inline]
    fn pause_exit() {
        let _ = hypercall(Op::PauseExit, 0);
    }
}
