//! The kernel and libc interfaces the Linux backend uses: the rseq ABI
//! (`include/uapi/linux/rseq.h`, `Documentation/userspace-api/rseq.rst` of Linux 7.x), the
//! syscalls and `prctl`, glibc's exported registration, and where this crate is loaded.

use core::cell::UnsafeCell;

/// `AT_RSEQ_FEATURE_SIZE`: the length of the kernel's active rseq area (33 on 7.2).
const AT_RSEQ_FEATURE_SIZE: libc::c_ulong = 27;
/// `AT_RSEQ_ALIGN`: the alignment the kernel asks for (64 on 7.2).
const AT_RSEQ_ALIGN: libc::c_ulong = 28;
/// `__NR_rseq` on x86_64.
const SYS_RSEQ: libc::c_long = 334;
/// `__NR_rseq_slice_yield` on x86_64.
const SYS_RSEQ_SLICE_YIELD: libc::c_long = 471;
/// `PR_RSEQ_SLICE_EXTENSION`, `PR_RSEQ_SLICE_EXTENSION_SET`, `PR_RSEQ_SLICE_EXT_ENABLE`.
const PR_RSEQ_SLICE_EXTENSION: libc::c_int = 79;
const PR_RSEQ_SLICE_EXTENSION_SET: libc::c_ulong = 2;
const PR_RSEQ_SLICE_EXT_ENABLE: libc::c_ulong = 1;
/// The abort-handler signature our registration carries (librseq's x86 value). The crate has
/// no rseq critical sections, so it is never checked.
const RSEQ_SIG: u32 = 0x5305_3053;

/// Offset of `struct rseq_slice_ctrl slice_ctrl` in `struct rseq`: `request` is its first
/// byte, `granted` (kernel-owned, read-only for user space) the second.
pub(super) const SLICE_CTRL_OFFSET: usize = 28;

/// The smallest `AT_RSEQ_FEATURE_SIZE` with the time-slice extension: `slice_ctrl` ends at 32,
/// and Linux 7.0 added a reserved byte so that a v2 registration is longer than the legacy 32.
pub(super) const MIN_FEATURE_SIZE: u32 = 33;

/// Size of the crate's own area; the kernel's feature size must fit.
pub(super) const OWN_AREA_SIZE: u32 = 64;

/// The crate's own rseq area: `struct rseq` with room to grow, 64-byte aligned. Fields are
/// written by the kernel (and `slice_ctrl.request` by this crate) after registration.
#[repr(C, align(64))]
pub(super) struct OwnArea(UnsafeCell<[u32; 16]>);

impl OwnArea {
    /// The area before registration: zero, except `cpu_id = RSEQ_CPU_ID_UNINITIALIZED (-1)`.
    pub(super) const fn new() -> Self {
        let mut w = [0u32; 16];
        w[1] = u32::MAX;
        OwnArea(UnsafeCell::new(w))
    }

    /// The area's address.
    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.0.get().cast()
    }
}

/// The kernel's `(AT_RSEQ_FEATURE_SIZE, AT_RSEQ_ALIGN)`; 0 where absent.
pub(super) fn feature_size_align() -> (u32, u32) {
    // SAFETY: getauxval reads the process's auxiliary vector; it has no preconditions.
    let (size, align) = unsafe {
        (
            libc::getauxval(AT_RSEQ_FEATURE_SIZE),
            libc::getauxval(AT_RSEQ_ALIGN),
        )
    };
    (size as u32, align as u32)
}

/// glibc's registration as `(__rseq_offset, __rseq_size)`, or `None` when the libc does not
/// export them (glibc < 2.35, or not glibc).
///
/// The symbols are weak references: the linker and the dynamic loader resolve a missing one to
/// address 0 instead of failing, so the binary still loads on an older glibc. The addresses are
/// loaded from the GOT in assembly, where no compiler can assume them non-null.
#[cfg(target_env = "gnu")]
pub(super) fn libc_registration() -> Option<(isize, u32)> {
    let offset_addr: *const isize;
    let size_addr: *const u32;
    // SAFETY: two loads of GOT entries (link-time constants); no memory is written, the stack
    // is not touched.
    unsafe {
        core::arch::asm!(
            ".weak __rseq_offset",
            ".weak __rseq_size",
            "mov {o}, qword ptr [rip + __rseq_offset@GOTPCREL]",
            "mov {s}, qword ptr [rip + __rseq_size@GOTPCREL]",
            o = out(reg) offset_addr,
            s = out(reg) size_addr,
            options(nostack, readonly, preserves_flags),
        );
    }
    if offset_addr.is_null() || size_addr.is_null() {
        return None;
    }
    // SAFETY: non-null, the symbols are glibc's `const ptrdiff_t __rseq_offset` and
    // `const unsigned int __rseq_size`, set before any user code runs and never changed.
    unsafe { Some((offset_addr.read(), size_addr.read())) }
}

/// musl and other libcs register no rseq and export nothing.
#[cfg(not(target_env = "gnu"))]
pub(super) fn libc_registration() -> Option<(isize, u32)> {
    None
}

/// The thread pointer (`%fs:0` on x86_64, the TCB's self pointer).
pub(super) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86_64 Linux `%fs:0` holds the thread pointer itself (both glibc and musl).
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
    }
    tp
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Registers `area` (64 bytes, 64-byte aligned) with length `len` for the calling thread.
///
/// # Safety
///
/// `area` must stay valid, and be used for nothing else, until the calling thread exits.
pub(super) unsafe fn register(area: *mut u8, len: u32) -> Result<(), i32> {
    // SAFETY: the caller keeps `area` valid for the thread's life; flags 0 registers.
    let r = unsafe { libc::syscall(SYS_RSEQ, area, len, 0, RSEQ_SIG) };
    if r == 0 { Ok(()) } else { Err(errno()) }
}

/// Enables the time-slice extension for the calling thread (which has a v2 registration).
pub(super) fn enable_slice_extension() -> Result<(), i32> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            PR_RSEQ_SLICE_EXTENSION,
            PR_RSEQ_SLICE_EXTENSION_SET,
            PR_RSEQ_SLICE_EXT_ENABLE,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r == 0 { Ok(()) } else { Err(errno()) }
}

/// `rseq_slice_yield()`: 1 when the thread yielded within its grant, 0 when the grant was
/// already gone.
pub(super) fn slice_yield() -> Result<i64, i32> {
    // SAFETY: a syscall without arguments.
    let r = unsafe { libc::syscall(SYS_RSEQ_SLICE_YIELD) };
    if r >= 0 { Ok(r) } else { Err(errno()) }
}

/// The value of the environment variable `name` (NUL-terminated) is exactly `"0"`. Reads the
/// environment without allocating.
pub(super) fn env_is_zero(name: &[u8]) -> bool {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: `name` is NUL-terminated; getenv returns null or a NUL-terminated string that
    // stays valid while nobody modifies the environment (std's `set_var` is `unsafe` for that
    // reason, and the value is read here at once).
    unsafe {
        let v = libc::getenv(name.as_ptr().cast());
        !v.is_null() && *v == b'0' as libc::c_char && *v.add(1) == 0
    }
}

/// Whether this code is part of the main executable (not a shared object, which could be
/// `dlclose`d). The first object `dl_iterate_phdr` reports is the main program.
pub(super) fn in_main_executable() -> bool {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info` whose `dlpi_phdr` has `dlpi_phnum`
        // entries; `data` is the `&mut (usize, bool)` passed below.
        unsafe {
            let info = &*info;
            let (addr, found) = &mut *data.cast::<(usize, bool)>();
            for i in 0..usize::from(info.dlpi_phnum) {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type == libc::PT_LOAD {
                    let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
                    if (start..start + ph.p_memsz as usize).contains(addr) {
                        *found = true;
                    }
                }
            }
        }
        1 // stop after the first object
    }
    let mut data = (in_main_executable as *const () as usize, false);
    // SAFETY: `first` matches the callback type and only reads the headers it is given; `data`
    // outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(first), (&raw mut data).cast());
    }
    data.1
}
