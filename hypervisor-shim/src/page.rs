//! Guest memory, and the only ways the shim touches it.
//!
//! The guest runs concurrently with the host and may write anything anywhere in its memory, so
//! the host never holds a `&T` to plain guest data. After setup it reads and writes guest memory
//! only through bounds- and alignment-checked atomic accessors ([`GuestMemory::atomic_u32`],
//! [`GuestMemory::atomic_u64`]) and through the all-atomic ABI structs ([`HintArea`],
//! [`WorkloadConfig`]), checked once when they are first looked up. Plain byte writes (the ELF
//! image, the page tables) need `&mut GuestMemory`, which only exists while no vCPU has been
//! created. (After vm-memory's `get_atomic_ref`.)

use crate::workload::WorkloadConfig;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64};
use ecs_sys::abi::{HintHeader, HintSlot, area_size};

/// Errors of guest-memory setup and access.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The requested size is zero or not a multiple of the 2 MiB page size.
    #[error("guest memory size {0:#x} is not a non-zero multiple of 2 MiB")]
    BadSize(usize),
    /// `mmap` of the guest memory failed.
    #[error("cannot map {size:#x} bytes of guest memory: {source}")]
    Mmap {
        /// Requested size.
        size: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// An access reaches past the end of guest memory.
    #[error("guest access {gpa:#x}+{len:#x} is outside guest memory (size {size:#x})")]
    OutOfBounds {
        /// Guest physical address.
        gpa: u64,
        /// Length of the access.
        len: usize,
        /// Guest memory size.
        size: usize,
    },
    /// An access is not aligned for its type.
    #[error("guest access at {gpa:#x} is not {align}-byte aligned")]
    Misaligned {
        /// Guest physical address.
        gpa: u64,
        /// Required alignment.
        align: usize,
    },
}

/// The guest's physical memory: one anonymous shared mapping, identity-mapped into the guest
/// from guest physical address 0.
#[derive(Debug)]
pub struct GuestMemory {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value. Shared access (`&self`) only ever
// produces atomic references (see the module docs), so concurrent use from several threads
// (and from the guest) is data-race free; non-atomic writes need `&mut self`.
unsafe impl Send for GuestMemory {}
// SAFETY: as for `Send`.
unsafe impl Sync for GuestMemory {}

/// The 2 MiB page size the guest is mapped with.
pub const PAGE_2M: usize = 2 << 20;

impl GuestMemory {
    /// Maps `len` bytes of zeroed memory (a multiple of 2 MiB).
    pub fn new(len: usize) -> Result<Self, PageError> {
        if len == 0 || !len.is_multiple_of(PAGE_2M) {
            return Err(PageError::BadSize(len));
        }
        // SAFETY: an anonymous mapping with no address hint has no preconditions; the result is
        // checked against MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(PageError::Mmap {
                size: len,
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(PageError::Mmap {
            size: len,
            source: std::io::Error::other("mmap returned null"),
        })?;
        Ok(GuestMemory { base, len })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping is never empty (kept for the `len`/`is_empty` convention).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Host virtual address of guest physical address 0 (for `KVM_SET_USER_MEMORY_REGION`).
    pub fn host_addr(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// Checks that `[gpa, gpa + len)` is inside guest memory and `gpa` is `align`-aligned, and
    /// returns the host pointer of `gpa`.
    fn check(&self, gpa: u64, len: usize, align: usize) -> Result<*mut u8, PageError> {
        let oob = PageError::OutOfBounds {
            gpa,
            len,
            size: self.len,
        };
        let start = usize::try_from(gpa).map_err(|_| oob)?;
        match start.checked_add(len) {
            Some(end) if end <= self.len => {}
            _ => {
                return Err(PageError::OutOfBounds {
                    gpa,
                    len,
                    size: self.len,
                });
            }
        }
        if !start.is_multiple_of(align) {
            return Err(PageError::Misaligned { gpa, align });
        }
        // SAFETY: `start + len <= self.len`, so the offset stays inside the mapping.
        Ok(unsafe { self.base.as_ptr().add(start) })
    }

    /// Copies `bytes` to guest address `gpa`. Needs `&mut self`: only during setup, before any
    /// vCPU (and so any guest code or atomic accessor) exists.
    pub fn write_bytes(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), PageError> {
        let dst = self.check(gpa, bytes.len(), 1)?;
        // SAFETY: `check` proved `dst..dst + len` is inside the mapping; `&mut self` excludes
        // any other access to it; the source is a distinct host slice.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
        Ok(())
    }

    /// Writes a little-endian `u64` at `gpa` (8-byte aligned), during setup.
    pub fn write_u64(&mut self, gpa: u64, value: u64) -> Result<(), PageError> {
        self.check(gpa, 8, 8)?;
        self.write_bytes(gpa, &value.to_le_bytes())
    }

    /// Reads `len` bytes at `gpa` into a new vector. Needs `&mut self`, as [`write_bytes`]
    /// does, so only while no vCPU exists (module docs): plain reads would race with the
    /// guest's writes and the host's atomic accesses (and byte-sized atomics would mix access
    /// sizes with them, which Rust's memory model does not allow either).
    ///
    /// [`write_bytes`]: GuestMemory::write_bytes
    pub fn read_bytes(&mut self, gpa: u64, len: usize) -> Result<Vec<u8>, PageError> {
        let src = self.check(gpa, len, 1)?;
        let mut out = vec![0u8; len];
        // SAFETY: `check` proved `src..src + len` is inside the mapping; `&mut self` excludes
        // any other access to it (no vCPU, no atomic accessor); the destination is a distinct
        // host vector of `len` bytes.
        unsafe { core::ptr::copy_nonoverlapping(src.cast_const(), out.as_mut_ptr(), len) };
        Ok(out)
    }

    /// The `u32` at `gpa` as an atomic (bounds- and 4-byte-alignment-checked).
    pub fn atomic_u32(&self, gpa: u64) -> Result<&AtomicU32, PageError> {
        let p = self.check(gpa, 4, 4)?;
        // SAFETY: `p` is inside the mapping, aligned, and lives as long as `&self`; every
        // shared access to guest memory is atomic (module docs), and any bit pattern is a
        // valid `u32`.
        Ok(unsafe { AtomicU32::from_ptr(p.cast()) })
    }

    /// The `u64` at `gpa` as an atomic (bounds- and 8-byte-alignment-checked).
    pub fn atomic_u64(&self, gpa: u64) -> Result<&AtomicU64, PageError> {
        let p = self.check(gpa, 8, 8)?;
        // SAFETY: as in `atomic_u32`, for 8 bytes.
        Ok(unsafe { AtomicU64::from_ptr(p.cast()) })
    }

    /// The hint area at `gpa` with `nr_vcpus` slots, bounds- and alignment-checked once.
    pub fn hint_area(&self, gpa: u64, nr_vcpus: u32) -> Result<HintArea<'_>, PageError> {
        let p = self.check(gpa, area_size(nr_vcpus), 64)?;
        // SAFETY: the whole area (header + slots) is inside the mapping and 64-byte aligned
        // (the alignment of both types); `HintHeader` and `HintSlot` consist of atomics only,
        // for which every bit pattern is valid and shared concurrent access is sound; the
        // references live as long as `&self`, which keeps the mapping alive.
        let (header, slots) = unsafe {
            let header = &*p.cast::<HintHeader>();
            let slots = core::slice::from_raw_parts(
                p.add(ecs_sys::abi::HEADER_SIZE).cast::<HintSlot>(),
                nr_vcpus as usize,
            );
            (header, slots)
        };
        Ok(HintArea { header, slots })
    }

    /// The workload configuration block at `gpa`, bounds- and alignment-checked.
    pub fn workload_config(&self, gpa: u64) -> Result<&WorkloadConfig, PageError> {
        let p = self.check(
            gpa,
            core::mem::size_of::<WorkloadConfig>(),
            core::mem::align_of::<WorkloadConfig>(),
        )?;
        // SAFETY: in bounds and aligned; `WorkloadConfig` is all atomics (valid for any bits,
        // sound under concurrent access); lives as long as `&self`.
        Ok(unsafe { &*p.cast::<WorkloadConfig>() })
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping created in `new`; `&mut self` proves no
        // reference into it is still alive. (The VM that uses it is dropped first: see `Vm`.)
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The hint area in guest memory: a header and one slot per vCPU, checked once at lookup.
#[derive(Debug, Clone, Copy)]
pub struct HintArea<'m> {
    header: &'m HintHeader,
    slots: &'m [HintSlot],
}

impl<'m> HintArea<'m> {
    /// The header.
    pub fn header(&self) -> &'m HintHeader {
        self.header
    }

    /// Every slot, in vCPU order.
    pub fn slots(&self) -> &'m [HintSlot] {
        self.slots
    }

    /// Slot `n`, or `None` past the last vCPU.
    pub fn slot(&self, n: u32) -> Option<&'m HintSlot> {
        self.slots.get(n as usize)
    }

    /// Slot `n` of a vCPU index the host itself owns (always `< nr_vcpus`).
    ///
    /// # Panics
    /// If `n` is out of range: a host bug, never reachable from guest input (guest-supplied
    /// indices go through [`HintArea::slot`]).
    pub fn hint_slot(&self, n: u32) -> &'m HintSlot {
        &self.slots[n as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::Ordering;

    #[test]
    fn accessors_are_checked() {
        let mut m = GuestMemory::new(PAGE_2M).unwrap();
        assert!(matches!(GuestMemory::new(4096), Err(PageError::BadSize(_))));
        m.write_u64(0x1000, 0xdead_beef).unwrap();
        assert_eq!(
            m.atomic_u64(0x1000).unwrap().load(Ordering::Relaxed),
            0xdead_beef
        );
        assert_eq!(m.atomic_u32(0x1004).unwrap().load(Ordering::Relaxed), 0);
        assert!(matches!(
            m.atomic_u32(0x1002),
            Err(PageError::Misaligned { .. })
        ));
        assert!(matches!(
            m.atomic_u64(0x1004),
            Err(PageError::Misaligned { .. })
        ));
        assert!(matches!(
            m.atomic_u64(PAGE_2M as u64 - 4),
            Err(PageError::OutOfBounds { .. })
        ));
        assert!(matches!(
            m.atomic_u32(PAGE_2M as u64),
            Err(PageError::OutOfBounds { .. })
        ));
        assert!(matches!(
            m.atomic_u32(u64::MAX - 1),
            Err(PageError::OutOfBounds { .. })
        ));
        assert!(m.write_bytes(PAGE_2M as u64 - 2, &[1, 2, 3]).is_err());
        assert_eq!(m.read_bytes(0x1000, 2).unwrap(), vec![0xef, 0xbe]);
    }

    #[test]
    fn hint_area_is_bounds_checked_once() {
        let m = GuestMemory::new(PAGE_2M).unwrap();
        let a = m.hint_area(0x10_0000, 4).unwrap();
        assert_eq!(a.slots().len(), 4);
        assert!(a.slot(4).is_none());
        a.hint_slot(3).reset(3);
        assert_eq!(a.slot(3).unwrap().vcpu_id.load(Ordering::Relaxed), 3);
        assert!(m.hint_area(PAGE_2M as u64 - 64, 1).is_err());
        assert!(m.hint_area(0x10_0020, 1).is_err());
        assert!(m.workload_config(0x20).is_err());
        assert!(m.workload_config(0x40).is_ok());
    }
}
