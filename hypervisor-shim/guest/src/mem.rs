//! The C memory functions the compiler may call, and the unwinding personality symbol.
//!
//! `-nostdlib` leaves out libc, and on the `x86_64-unknown-linux-gnu` target `compiler_builtins`
//! expects libc to provide `memcpy` and friends. Today's optimised guest needs none of them, but
//! any struct copy or zeroing may bring in a call, so they are defined here rather than break the
//! link one day. They use the string instructions (`rep movsb`/`rep stosb`, fast on every CPU
//! with ERMSB), written in `asm!` so the compiler cannot turn them back into calls to themselves.

use core::arch::asm;

/// `memcpy(3)`.
///
/// # Safety
///
/// `src` is valid for reads and `dest` for writes of `n` bytes, and the ranges do not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; the direction flag is clear (SysV ABI), so
    // `rep movsb` copies forwards, `n` bytes from `rsi` to `rdi`.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dest
}

/// `memmove(3)`: like [`memcpy`], and the ranges may overlap.
///
/// # Safety
///
/// `src` is valid for reads and `dest` for writes of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // `dest` is below `src` or past the end of the source: a forward copy never reads a byte
        // it has already overwritten.
        // SAFETY: as in `memcpy`; the check above makes the forward order correct.
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
                 options(nostack, preserves_flags));
        }
    } else {
        // `dest` overlaps the tail of the source: copy backwards, from the last byte down, with
        // the direction flag set for the copy only (the ABI wants it clear at every call).
        // SAFETY: the caller guarantees both ranges and `n > 0` here (`dest - src < n`), so
        // `dest + n - 1` and `src + n - 1` are the last bytes of the ranges.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _,
                 inout("rdi") dest.add(n - 1) => _,
                 inout("rsi") src.add(n - 1) => _,
                 options(nostack));
        }
    }
    dest
}

/// `memset(3)`.
///
/// # Safety
///
/// `dest` is valid for writes of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range; `rep stosb` stores `al` forwards `n` times.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dest
}

/// `memcmp(3)`.
///
/// # Safety
///
/// `a` and `b` are valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n` and the caller guarantees `n` readable bytes behind each pointer.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// `bcmp(3)`: zero if the ranges are equal.
///
/// # Safety
///
/// `a` and `b` are valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's guarantee is `memcmp`'s.
    unsafe { memcmp(a, b, n) }
}

/// The unwinding personality routine, referenced by the precompiled `core` in unoptimised
/// builds. The guest is `panic = "abort"`, so nothing unwinds and this is never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
