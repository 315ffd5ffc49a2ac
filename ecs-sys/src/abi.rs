//! The shared hint area: one header followed by one 64-byte slot per vCPU.
//!
//! The host (the VMM) allocates the area in guest memory, fills the header, and points each
//! vCPU's `%fs` base at its own slot and every vCPU's `%gs` base at the header. Every field is an
//! atomic so that both sides may read and write concurrently without a data race; the layout is
//! `#[repr(C)]`, little-endian (x86_64 only), and checked below by `const` assertions.
//!
//! ```text
//! area + 0            HintHeader   (64 bytes)
//! area + 64 + 64 * n  HintSlot n   (64 bytes, one cache line)
//! ```
//!
//! Slot fields, by writer (docs/DESIGN.md, "The ABI"):
//!
//! | offset | field                 | writer | meaning |
//! |-------:|-----------------------|--------|---------|
//! |      0 | `cs_depth`            | guest  | enlightened critical sections this vCPU is inside |
//! |      4 | `blocking_depth`      | guest  | blocking-mutex sections held (weaker hint) |
//! |      8 | `preempted`           | host   | 1 while this vCPU is descheduled |
//! |     12 | `overloaded`          | host   | 1 while runnable vCPUs wait for a pCPU |
//! |     16 | `ext_granted`         | host   | slice extended because `cs_depth > 0`: yield at outermost exit |
//! |     20 | `vcpu_id`             | host   | this slot's vCPU index, set once before the vCPU starts |
//! |     24 | `hc_status`           | host   | [`Status`](crate::hypercall::Status) of the last hypercall |
//! |     28 | `nr_preempted`        | host   | times preempted |
//! |     32 | `hc_arg`              | guest  | 64-bit hypercall argument (`Report` value) |
//! |     40 | `nr_preempted_in_cs`  | host   | times preempted with `cs_depth > 0` |
//! |     44 | `nr_extensions`       | host   | slice extensions granted |
//! |     48 | `nr_directed_yields`  | host   | directed yields received (another vCPU gave us its pCPU) |
//! |     52 | `ple_window`          | host   | this vCPU's pause-loop window in spins (0: the header's) |
//! |     56 | `progress`            | guest  | workload operations completed so far (read by the host for progress) |
//!
//! The host's counters here are a copy for the guest to read; the host keeps its own
//! authoritative figures, since a guest may scribble over its slot.

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// `b"eCS-HINT"` read as a little-endian `u64`: the first word of a valid area.
pub const MAGIC: u64 = u64::from_le_bytes(*b"eCS-HINT");

/// The ABI version this crate speaks. Bumped on any incompatible change of layout or meaning.
pub const ABI_VERSION: u32 = 1;

/// Size of one slot in bytes: one x86_64 cache line, so vCPUs never share a line.
pub const SLOT_SIZE: usize = 64;

/// Size of the header in bytes.
pub const HEADER_SIZE: usize = 64;

/// The most vCPUs one area describes (the hypercall argument field and test budgets).
pub const MAX_VCPUS: u32 = 256;

/// Header feature bit: the host publishes `preempted` and `overloaded` and may grant extensions.
pub const FEATURE_HINTS: u32 = 1 << 0;

/// Header feature bit: the host emulates pause-loop exiting; a waiter that spins for
/// [`HintHeader::ple_window`] iterations traps with [`Op::PauseExit`](crate::hypercall::Op).
pub const FEATURE_PLE: u32 = 1 << 1;

/// Bytes an area for `nr_vcpus` vCPUs occupies.
pub const fn area_size(nr_vcpus: u32) -> usize {
    HEADER_SIZE + SLOT_SIZE * nr_vcpus as usize
}

/// The area header, at offset 0. Written by the host before any vCPU starts; read-only after.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct HintHeader {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`ABI_VERSION`].
    pub version: AtomicU32,
    /// Number of vCPU slots that follow.
    pub nr_vcpus: AtomicU32,
    /// [`SLOT_SIZE`], so a reader can check the stride.
    pub slot_size: AtomicU32,
    /// Number of physical CPU slots the host schedules the vCPUs on.
    pub nr_pcpus: AtomicU32,
    /// `FEATURE_*` bits.
    pub features: AtomicU32,
    /// Pause-loop window: spin iterations before a waiter traps (with [`FEATURE_PLE`]).
    pub ple_window: AtomicU32,
    /// Guest address of slot 0 (`area + HEADER_SIZE`), so the guest can find any slot from `%gs`.
    pub slots_addr: AtomicU64,
    /// Guest address of the workload's configuration block (host-defined, 0 if none).
    pub config_addr: AtomicU64,
    /// Reserved, zero.
    pub reserved: [AtomicU64; 2],
}

/// One vCPU's slot. See the module docs for the field table.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct HintSlot {
    /// Guest: enlightened critical sections this vCPU is inside.
    pub cs_depth: AtomicU32,
    /// Guest: blocking-mutex sections held.
    pub blocking_depth: AtomicU32,
    /// Host: 1 while this vCPU is descheduled.
    pub preempted: AtomicU32,
    /// Host: 1 while runnable vCPUs wait for a pCPU.
    pub overloaded: AtomicU32,
    /// Host: the slice was extended because `cs_depth > 0`; the guest yields at outermost exit.
    pub ext_granted: AtomicU32,
    /// Host: this slot's vCPU index.
    pub vcpu_id: AtomicU32,
    /// Host: status of the last hypercall.
    pub hc_status: AtomicU32,
    /// Host: times preempted.
    pub nr_preempted: AtomicU32,
    /// Guest: 64-bit hypercall argument.
    pub hc_arg: AtomicU64,
    /// Host: times preempted with `cs_depth > 0`.
    pub nr_preempted_in_cs: AtomicU32,
    /// Host: slice extensions granted.
    pub nr_extensions: AtomicU32,
    /// Host: directed yields received.
    pub nr_directed_yields: AtomicU32,
    /// Host: this vCPU's current pause-loop window in spins, when the host sizes it per vCPU
    /// as KVM does (grown on every pause-loop exit, reset when the vCPU is scheduled in); 0
    /// means the header's `ple_window`. (Was `reserved`, always zero: same layout.)
    pub ple_window: AtomicU32,
    /// Guest: workload operations completed so far.
    pub progress: AtomicU64,
}

/// Byte offsets of the slot fields the guest backend addresses through `%fs`.
pub mod slot_offset {
    use super::HintSlot;
    use core::mem::offset_of;
    /// `cs_depth`.
    pub const CS_DEPTH: usize = offset_of!(HintSlot, cs_depth);
    /// `blocking_depth`.
    pub const BLOCKING_DEPTH: usize = offset_of!(HintSlot, blocking_depth);
    /// `preempted`.
    pub const PREEMPTED: usize = offset_of!(HintSlot, preempted);
    /// `overloaded`.
    pub const OVERLOADED: usize = offset_of!(HintSlot, overloaded);
    /// `ext_granted`.
    pub const EXT_GRANTED: usize = offset_of!(HintSlot, ext_granted);
    /// `vcpu_id`.
    pub const VCPU_ID: usize = offset_of!(HintSlot, vcpu_id);
    /// `hc_status`.
    pub const HC_STATUS: usize = offset_of!(HintSlot, hc_status);
    /// `hc_arg`.
    pub const HC_ARG: usize = offset_of!(HintSlot, hc_arg);
    /// `ple_window`.
    pub const PLE_WINDOW: usize = offset_of!(HintSlot, ple_window);
    /// `progress`.
    pub const PROGRESS: usize = offset_of!(HintSlot, progress);
}

/// Byte offsets of the header fields the guest backend addresses through `%gs`.
pub mod header_offset {
    use super::HintHeader;
    use core::mem::offset_of;
    /// `nr_vcpus`.
    pub const NR_VCPUS: usize = offset_of!(HintHeader, nr_vcpus);
    /// `features`.
    pub const FEATURES: usize = offset_of!(HintHeader, features);
    /// `ple_window`.
    pub const PLE_WINDOW: usize = offset_of!(HintHeader, ple_window);
    /// `slots_addr`.
    pub const SLOTS_ADDR: usize = offset_of!(HintHeader, slots_addr);
    /// `config_addr`.
    pub const CONFIG_ADDR: usize = offset_of!(HintHeader, config_addr);
}

// The layout is the ABI: any change here is an ABI_VERSION bump.
const _: () = assert!(size_of::<HintSlot>() == SLOT_SIZE);
const _: () = assert!(size_of::<HintHeader>() == HEADER_SIZE);
const _: () = assert!(core::mem::align_of::<HintSlot>() == 64);
const _: () = assert!(offset_of!(HintSlot, cs_depth) == 0);
const _: () = assert!(offset_of!(HintSlot, blocking_depth) == 4);
const _: () = assert!(offset_of!(HintSlot, preempted) == 8);
const _: () = assert!(offset_of!(HintSlot, overloaded) == 12);
const _: () = assert!(offset_of!(HintSlot, ext_granted) == 16);
const _: () = assert!(offset_of!(HintSlot, vcpu_id) == 20);
const _: () = assert!(offset_of!(HintSlot, hc_status) == 24);
const _: () = assert!(offset_of!(HintSlot, ple_window) == 52);
const _: () = assert!(offset_of!(HintSlot, nr_preempted) == 28);
const _: () = assert!(offset_of!(HintSlot, hc_arg) == 32);
const _: () = assert!(offset_of!(HintSlot, nr_preempted_in_cs) == 40);
const _: () = assert!(offset_of!(HintSlot, nr_extensions) == 44);
const _: () = assert!(offset_of!(HintSlot, nr_directed_yields) == 48);
const _: () = assert!(offset_of!(HintSlot, progress) == 56);
const _: () = assert!(offset_of!(HintHeader, magic) == 0);
const _: () = assert!(offset_of!(HintHeader, version) == 8);
const _: () = assert!(offset_of!(HintHeader, nr_vcpus) == 12);
const _: () = assert!(offset_of!(HintHeader, slot_size) == 16);
const _: () = assert!(offset_of!(HintHeader, nr_pcpus) == 20);
const _: () = assert!(offset_of!(HintHeader, features) == 24);
const _: () = assert!(offset_of!(HintHeader, ple_window) == 28);
const _: () = assert!(offset_of!(HintHeader, slots_addr) == 32);
const _: () = assert!(offset_of!(HintHeader, config_addr) == 40);
#[cfg(not(target_endian = "little"))]
compile_error!("the eCS hint ABI is little-endian");

impl HintSlot {
    /// A zeroed slot (what the host writes before a vCPU starts, then sets `vcpu_id`).
    #[allow(clippy::declare_interior_mutable_const)]
    pub const ZERO: HintSlot = HintSlot {
        cs_depth: AtomicU32::new(0),
        blocking_depth: AtomicU32::new(0),
        preempted: AtomicU32::new(0),
        overloaded: AtomicU32::new(0),
        ext_granted: AtomicU32::new(0),
        vcpu_id: AtomicU32::new(0),
        hc_status: AtomicU32::new(0),
        nr_preempted: AtomicU32::new(0),
        hc_arg: AtomicU64::new(0),
        nr_preempted_in_cs: AtomicU32::new(0),
        nr_extensions: AtomicU32::new(0),
        nr_directed_yields: AtomicU32::new(0),
        ple_window: AtomicU32::new(0),
        progress: AtomicU64::new(0),
    };

    /// Resets every field to zero and sets `vcpu_id`.
    pub fn reset(&self, vcpu_id: u32) {
        for f in [
            &self.cs_depth,
            &self.blocking_depth,
            &self.preempted,
            &self.overloaded,
            &self.ext_granted,
            &self.hc_status,
            &self.nr_preempted,
            &self.nr_preempted_in_cs,
            &self.nr_extensions,
            &self.nr_directed_yields,
            &self.ple_window,
        ] {
            f.store(0, Ordering::Relaxed);
        }
        self.hc_arg.store(0, Ordering::Relaxed);
        self.progress.store(0, Ordering::Relaxed);
        self.vcpu_id.store(vcpu_id, Ordering::Release);
    }
}

impl HintHeader {
    /// Fills the header for an area at guest address `area_addr` with `nr_vcpus` slots.
    pub fn init(
        &self,
        area_addr: u64,
        nr_vcpus: u32,
        nr_pcpus: u32,
        features: u32,
        ple_window: u32,
    ) {
        self.version.store(ABI_VERSION, Ordering::Relaxed);
        self.nr_vcpus.store(nr_vcpus, Ordering::Relaxed);
        self.slot_size.store(SLOT_SIZE as u32, Ordering::Relaxed);
        self.nr_pcpus.store(nr_pcpus, Ordering::Relaxed);
        self.features.store(features, Ordering::Relaxed);
        self.ple_window.store(ple_window, Ordering::Relaxed);
        self.slots_addr
            .store(area_addr + HEADER_SIZE as u64, Ordering::Relaxed);
        self.config_addr.store(0, Ordering::Relaxed);
        for r in &self.reserved {
            r.store(0, Ordering::Relaxed);
        }
        // The magic goes last: a reader that sees it sees the rest.
        self.magic.store(MAGIC, Ordering::Release);
    }

    /// Whether the header carries this crate's magic, version and slot size.
    pub fn is_valid(&self) -> bool {
        self.magic.load(Ordering::Acquire) == MAGIC
            && self.version.load(Ordering::Relaxed) == ABI_VERSION
            && self.slot_size.load(Ordering::Relaxed) == SLOT_SIZE as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_magic() {
        assert_eq!(area_size(0), 64);
        assert_eq!(area_size(8), 64 * 9);
        assert_eq!(&MAGIC.to_le_bytes(), b"eCS-HINT");
    }

    #[test]
    fn header_init_is_valid_and_reset_clears() {
        // SAFETY-free construction: all-atomic structs are valid when zeroed, built field by field.
        let h = HintHeader {
            magic: AtomicU64::new(0),
            version: AtomicU32::new(0),
            nr_vcpus: AtomicU32::new(0),
            slot_size: AtomicU32::new(0),
            nr_pcpus: AtomicU32::new(0),
            features: AtomicU32::new(0),
            ple_window: AtomicU32::new(0),
            slots_addr: AtomicU64::new(0),
            config_addr: AtomicU64::new(0),
            reserved: [AtomicU64::new(0), AtomicU64::new(0)],
        };
        assert!(!h.is_valid());
        h.init(0x80_0000, 8, 2, FEATURE_HINTS, 4096);
        assert!(h.is_valid());
        assert_eq!(h.slots_addr.load(Ordering::Relaxed), 0x80_0040);
        h.version.store(ABI_VERSION + 1, Ordering::Relaxed);
        assert!(!h.is_valid(), "a version mismatch must be detected");

        let s = HintSlot::ZERO;
        s.cs_depth.store(3, Ordering::Relaxed);
        s.progress.store(99, Ordering::Relaxed);
        s.reset(5);
        assert_eq!(s.cs_depth.load(Ordering::Relaxed), 0);
        assert_eq!(s.progress.load(Ordering::Relaxed), 0);
        assert_eq!(s.vcpu_id.load(Ordering::Relaxed), 5);
    }
}
