//! The loom facade: every atomic, `spin_loop`, `UnsafeCell` and `thread_local!` the locks use
//! comes from here, so `--cfg loom` swaps all of them at once (crossbeam-utils' `primitive`
//! module does the same). Outside this file clippy's `disallowed-types` (clippy.toml) rejects
//! `core::sync::atomic` and `core::cell::UnsafeCell`.
//!
//! Conventions under loom, for every raw lock:
//! - loom's atomics are not `const`, so a raw lock has `pub const fn new()` normally and a plain
//!   `pub fn new()` under loom; its lock_api `INIT` is `Self::new()` normally and a
//!   compile-time-unreachable panic under loom (models build locks with `new()` and wrap them with
//!   `lock_api::Mutex::from_raw`).
//! - a spin is a `loom::thread::yield_now()`, so a waiting thread lets the model schedule the
//!   holder and every model terminates.
//! - blocking goes through loom's `Mutex`/`Condvar`, since loom cannot see futex parking.
#![allow(clippy::disallowed_types)]
#![cfg_attr(
    not(feature = "std"),
    allow(
        dead_code,
        reason = "the facade names every primitive; without std the RCU cell (and without \
                  ecs_guest RCU and MCS), which use some of them, are not compiled"
    )
)]

// Type aliases rather than a `use` re-export: clippy's `disallowed-types` resolves a
// re-export to the core type and would flag every use outside this file; an alias is its own
// path, so only a direct `core::sync::atomic` mention is flagged.
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{Ordering, fence};
/// `core::sync::atomic::AtomicBool` (loom's under `--cfg loom`).
#[cfg(not(loom))]
pub(crate) type AtomicBool = core::sync::atomic::AtomicBool;
/// `core::sync::atomic::AtomicPtr` (loom's under `--cfg loom`).
#[cfg(not(loom))]
pub(crate) type AtomicPtr<T> = core::sync::atomic::AtomicPtr<T>;
/// `core::sync::atomic::AtomicU32` (loom's under `--cfg loom`).
#[cfg(not(loom))]
pub(crate) type AtomicU32 = core::sync::atomic::AtomicU32;
/// `core::sync::atomic::AtomicU64` (loom's under `--cfg loom`).
#[cfg(not(loom))]
pub(crate) type AtomicU64 = core::sync::atomic::AtomicU64;
/// `core::sync::atomic::AtomicUsize` (loom's under `--cfg loom`).
#[cfg(not(loom))]
pub(crate) type AtomicUsize = core::sync::atomic::AtomicUsize;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(loom)]
pub(crate) use loom::thread_local;
#[cfg(all(not(loom), feature = "std"))]
pub(crate) use std::thread_local;

/// Defines a constructor that is a `const fn` normally and a plain `fn` under loom, whose
/// atomics are not `const` (the first convention above). Docs and attributes apply to both;
/// the `const` one is `#[inline]`.
macro_rules! loom_const_fn {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($args:tt)*) -> $ret:ty $body:block) => {
        $(#[$attr])*
        #[cfg(not(loom))]
        #[inline]
        $vis const fn $name($($args)*) -> $ret $body

        $(#[$attr])*
        #[cfg(loom)]
        $vis fn $name($($args)*) -> $ret $body
    };
}
pub(crate) use loom_const_fn;

/// A lock_api `INIT` constant: `Self::new()` normally, a compile-time-unreachable panic under
/// loom (the second convention above). Use inside the `unsafe impl` of a lock_api trait.
macro_rules! loom_init {
    () => {
        #[cfg(not(loom))]
        #[allow(clippy::declare_interior_mutable_const)]
        const INIT: Self = Self::new();
        #[cfg(loom)]
        #[allow(clippy::declare_interior_mutable_const)]
        const INIT: Self = panic!("loom atomics are not const: build raw locks with `new()`");
    };
}
pub(crate) use loom_init;

/// `unsafe impl lock_api::RawMutex` for a spin-family raw mutex (guard `GuardNoSend`) whose
/// inherent `lock`, `try_lock`, `unlock` and `is_locked` are the protocol: each method
/// forwards to its namesake. The invocation spells `unsafe impl`, so the `// SAFETY:` argument
/// that those methods uphold the trait's contract (at most one holder, `Acquire` on taking,
/// `Release` on releasing, no unwinding while ownership changes) stands above each invocation
/// (by convention: clippy's `undocumented_unsafe_blocks` does not look into the expansion).
macro_rules! raw_mutex_from_inherent {
    ($unsafe:tt impl $ty:ident) => {
        $unsafe impl lock_api::RawMutex for $ty {
            crate::sync::loom_init!();

            type Guard = lock_api::GuardNoSend;

            #[inline]
            fn lock(&self) -> lock_api::GuardNoSend {
                $ty::lock(self)
            }

            #[inline]
            fn try_lock(&self) -> Option<lock_api::GuardNoSend> {
                $ty::try_lock(self)
            }

            #[inline]
            unsafe fn unlock(&self, guard: lock_api::GuardNoSend) {
                // SAFETY: forwarded caller contract.
                unsafe { $ty::unlock(self, guard) }
            }

            #[inline]
            fn is_locked(&self) -> bool {
                $ty::is_locked(self)
            }
        }
    };
}
pub(crate) use raw_mutex_from_inherent;

/// One iteration of a busy-wait. Under loom, a yield to the model's scheduler.
#[inline(always)]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// `UnsafeCell` with loom's closure API (`with`, `with_mut`), so loom can track every access.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `UnsafeCell` with loom's closure API (`with`, `with_mut`), so loom can track every access.
#[cfg(not(loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T: ?Sized>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    #[inline(always)]
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Unwraps the value.
    #[inline(always)]
    pub(crate) fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

#[cfg(not(loom))]
impl<T: ?Sized> UnsafeCell<T> {
    /// Runs `f` with a shared raw pointer to the value.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a mutable raw pointer to the value.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Runs `f`; if it unwinds, panics again while unwinding, which aborts the process. For
/// ownership hand-offs that cannot be rolled back half-way (parking_lot's and lock_api's
/// `abort_on_panic`: a re-lock after a condvar wait or a fair-unlock bump).
#[inline]
pub(crate) fn abort_on_panic<R>(f: impl FnOnce() -> R) -> R {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("aborting: a panic while changing lock ownership");
        }
    }
    let bomb = Bomb;
    let r = f();
    core::mem::forget(bomb);
    r
}
