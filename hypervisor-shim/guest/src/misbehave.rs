//! Deliberate misbehaviour ([`Misbehave`]), so the shim's tests can show that no guest makes the
//! host panic or hang.
//!
//! | mode | who | what |
//! |------|-----|------|
//! | `NeverLeaveCs` | vCPU 0 | `cs_enter` once and spin forever (a section that never ends; no hypercalls, `stop` ignored) |
//! | `GarbageHypercalls` | every vCPU | the [`GARBAGE`] calls, each of which must get a known error status; then the normal workload |
//! | `Fault` | vCPU 0 | reads [`UNMAPPED`]: a page fault with no IDT, so the vCPU triple-faults |
//! | `Hang` | vCPU 0 | spins forever without hypercalls, ignoring `stop` |
//! | `FloodHypercalls` | vCPU 0 | `Yield` and `Report` hypercalls back to back forever, ignoring `stop` |
//! | `YieldPingPong` | vCPUs 0 and 1 | `YieldTo` each other forever, ignoring `stop` |
//! | `ScribbleSiblings` | vCPU 0 | writes large values into every other vCPU's slot (`cs_depth`, `blocking_depth`, `progress`, the host's counters) forever, ignoring `stop` |
//!
//! In these modes the other vCPUs run the workload normally, and the misbehaving ones do not
//! count as participants (the last of the others reports `COUNTER`).

use crate::Config;
use crate::workload::{Misbehave, exit_code, report};
use core::arch::asm;
use core::hint::black_box;
use core::sync::atomic::Ordering;
use ecs_sys::abi::HintHeader;
use ecs_sys::backend::guest::Guest;
use ecs_sys::hypercall::{ARG_MAX, Op, PORT, Status, encode};

/// An address no identity map of guest RAM covers (PML4 entry 255): reading it page-faults.
pub(crate) const UNMAPPED: u64 = 0x7fff_0000_0000;

/// Whether vCPU `me` never finishes the workload in `mode` (of `nr_vcpus`).
pub(crate) fn drops_out(mode: Misbehave, me: u32, nr_vcpus: u32) -> bool {
    match mode {
        Misbehave::None | Misbehave::GarbageHypercalls => false,
        Misbehave::YieldPingPong => me < 2.min(nr_vcpus),
        Misbehave::NeverLeaveCs
        | Misbehave::Fault
        | Misbehave::Hang
        | Misbehave::FloodHypercalls
        | Misbehave::ScribbleSiblings => me == 0,
    }
}

/// How many of `nr_vcpus` vCPUs never finish the workload in `mode`.
pub(crate) fn dropouts(mode: Misbehave, nr_vcpus: u32) -> u32 {
    (0..nr_vcpus)
        .filter(|&me| drops_out(mode, me, nr_vcpus))
        .count() as u32
}

/// Acts out `cfg.misbehave` for vCPU `me`; returns only if `me` then runs the workload.
pub(crate) fn act(cfg: &Config, me: u32, header: &HintHeader) {
    match cfg.misbehave {
        Misbehave::None => {}
        Misbehave::GarbageHypercalls => garbage(header),
        Misbehave::YieldPingPong if me < 2 => {
            let other = if cfg.nr_vcpus >= 2 { 1 - me } else { me };
            loop {
                call(Op::YieldTo, other);
            }
        }
        _ if me != 0 => {}
        Misbehave::YieldPingPong => {}
        Misbehave::FloodHypercalls => loop {
            call(Op::Yield, 0);
            call(Op::Report, 0x7f);
        },
        Misbehave::ScribbleSiblings => scribble(header),
        Misbehave::NeverLeaveCs => {
            ecs_sys::cs_enter();
            spin_forever()
        }
        Misbehave::Hang => spin_forever(),
        Misbehave::Fault => {
            // SAFETY: none needed for soundness here: the read is meant to fault, and if the
            // host has mapped the address after all, it reads plain memory and the vCPU exits
            // with NO_FAULT below. The address is 8-aligned.
            let v = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
            black_box(v);
            Guest::exit(exit_code::NO_FAULT)
        }
    }
}

/// Issues hypercall `op` with `arg`, ignoring the answer.
fn call(op: Op, arg: u32) {
    // SAFETY: port I/O at CPL 3 with IOPL 3 exits to the VMM, which answers and resumes the
    // vCPU after the instruction; the instruction touches no guest memory.
    unsafe {
        asm!("out dx, eax", in("dx") PORT, in("eax") encode(op, arg), options(nostack));
    }
}

/// Writes large values into every other vCPU's hint slot, forever (what a buggy or hostile
/// vCPU can do to its own VM: the area is one shared page).
fn scribble(header: &HintHeader) -> ! {
    let n = header.nr_vcpus.load(Ordering::Relaxed);
    let base = header.slots_addr.load(Ordering::Relaxed) as *const ecs_sys::abi::HintSlot;
    let mut x = 1u32;
    loop {
        for i in 1..n {
            // SAFETY: the header (validated at boot) says `n` slots follow at `slots_addr`,
            // mapped for the VM's lifetime; a slot is all atomics, so a shared reference is
            // sound while the host and the other vCPUs write it.
            let s = unsafe { &*base.add(i as usize) };
            s.cs_depth.store(u32::MAX - x, Ordering::Relaxed);
            s.blocking_depth.store(u32::MAX, Ordering::Relaxed);
            s.progress.store(u64::MAX / 2, Ordering::Relaxed);
            s.nr_extensions.store(x, Ordering::Relaxed);
            s.ple_window.store(x, Ordering::Relaxed);
            s.preempted.store(x & 1, Ordering::Relaxed);
        }
        x = black_box(x.wrapping_add(1));
    }
}

/// Busy work forever: no hypercall, no memory traffic beyond the stack.
fn spin_forever() -> ! {
    let mut x = 1u64;
    loop {
        x = black_box(x.wrapping_mul(3).wrapping_add(1));
    }
}

/// How a garbage call reaches the port.
#[derive(Clone, Copy, Debug)]
enum Access {
    /// `out dx, eax`: the right instruction, with a data word that must be rejected.
    Out32(u16, u32),
    /// `out dx, eax` to the port of `op` with the vCPU index one past the last vCPU.
    PastLastVcpu(Op),
    /// `out dx, al` to the port: the wrong width.
    Out8(u16, u8),
    /// `out dx, ax` to the port: the wrong width.
    Out16(u16, u16),
    /// `in eax, dx` from the port: the wrong direction.
    In32(u16),
}

/// The garbage calls, in order. Each must be answered with a known error [`Status`] in
/// `hc_status`. Re-registering with a wrong ABI version is left out on purpose: how a host
/// treats an already registered vCPU that re-registers is its own business.
const GARBAGE: [Access; 10] = [
    Access::Out32(PORT, 0),                     // op 0: unknown
    Access::Out32(PORT, 0xff),                  // op 255: unknown
    Access::Out32(PORT, 9 | (1 << 8)),          // one past the last op
    Access::Out32(PORT, 0x42 | (ARG_MAX << 8)), // unknown op, largest argument
    Access::PastLastVcpu(Op::YieldTo),
    Access::PastLastVcpu(Op::Kick),
    Access::Out8(PORT, Op::Yield as u8),
    Access::Out16(PORT, Op::Yield as u16),
    Access::In32(PORT),
    Access::Out32(PORT + 1, Op::Yield as u32), // the wrong port
];

/// Issues one access. The status word is set to a value no host writes first, so a call the
/// host leaves unanswered is caught too.
fn issue(access: Access, nr_vcpus: u32) -> Result<Status, u32> {
    let status = &Guest::my_slot().hc_status;
    status.store(u32::MAX, Ordering::Relaxed);
    // Port I/O at CPL 3 with IOPL 3 exits to the VMM, which answers and resumes the vCPU after
    // the instruction; the instructions touch no guest memory. Each block is a compiler barrier,
    // so the status store above and the load below stay on their sides.
    match access {
        // SAFETY: port I/O as described above.
        Access::Out32(port, w) => unsafe {
            asm!("out dx, eax", in("dx") port, in("eax") w, options(nostack));
        },
        // SAFETY: port I/O as described above.
        Access::PastLastVcpu(op) => unsafe {
            asm!("out dx, eax", in("dx") PORT, in("eax") encode(op, nr_vcpus), options(nostack));
        },
        // SAFETY: port I/O as described above.
        Access::Out8(port, b) => unsafe {
            asm!("out dx, al", in("dx") port, in("al") b, options(nostack));
        },
        // SAFETY: port I/O as described above.
        Access::Out16(port, h) => unsafe {
            asm!("out dx, ax", in("dx") port, in("ax") h, options(nostack));
        },
        // SAFETY: port I/O as described above; the value read is discarded.
        Access::In32(port) => unsafe {
            asm!("in eax, dx", in("dx") port, out("eax") _, options(nostack));
        },
    }
    Status::try_from(status.load(Ordering::Relaxed))
}

/// Issues every [`GARBAGE`] call; exits with `GARBAGE_ACCEPTED` at the first one not answered
/// with a known error status, after reporting how many were rejected before it.
fn garbage(header: &HintHeader) {
    let nr_vcpus = header.nr_vcpus.load(Ordering::Relaxed);
    for (i, access) in GARBAGE.into_iter().enumerate() {
        match issue(access, nr_vcpus) {
            Ok(Status::Ok) | Err(_) => {
                let _ = Guest::report(report::GARBAGE_REJECTED, i as u64);
                Guest::exit(exit_code::GARBAGE_ACCEPTED)
            }
            Ok(_) => {}
        }
    }
    let _ = Guest::report(report::GARBAGE_REJECTED, GARBAGE.len() as u64);
}
