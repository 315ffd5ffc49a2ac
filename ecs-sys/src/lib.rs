//! The eCS ABI between a guest and its hypervisor, and the hint API locks call.
//!
//! "Scaling Guest OS Critical Sections with eCS" (Kashyap, Min, Kim; USENIX ATC 2018) shares a
//! page per vCPU between guest and host: the guest marks "I am inside a critical section", the
//! host marks "this vCPU is preempted" and "this pCPU is overloaded", defers preempting a vCPU
//! inside a critical section (bounded), and the guest's lock waiters act on the host's marks.
//!
//! This crate is the one place both sides meet:
//! - [`abi`]: the layout of the shared area (header + one 64-byte slot per vCPU);
//! - [`hypercall`]: the guest -> host call numbers and status codes;
//! - [`backend`]: the compile-time choice of where hints come from, and the free functions below,
//!   which the locks in `ecs-locks` call and nothing else.
//!
//! It is `no_std`. Natively the default `std` feature gives the native backend a thread-local
//! depth; code inside an `ecs-shim` VM is built with `--cfg ecs_guest` (a rustflag the final
//! binary sets, never a Cargo feature: see [`backend`]), which selects the guest backend.
//!
//! ```
//! // Natively nothing is ever preempted, and the depth is per thread.
//! ecs_sys::cs_enter();
//! assert_eq!(ecs_sys::cs_depth(), 1);
//! assert!(!ecs_sys::vcpu_preempted(0));
//! let must_yield = ecs_sys::cs_exit();
//! assert!(!must_yield);
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod abi;
pub mod backend;
pub mod hypercall;

pub use backend::{Active, Backend};

/// Name of the compiled-in backend.
pub const BACKEND: &str = <Active as Backend>::NAME;

/// Whether the compiled-in backend's hints can change (false natively).
pub const LIVE_HINTS: bool = <Active as Backend>::LIVE_HINTS;

/// Enters an enlightened critical section. See [`Backend::cs_enter`].
#[inline(always)]
pub fn cs_enter() {
    Active::cs_enter()
}

/// Leaves an enlightened critical section; `true` means "yield now". See [`Backend::cs_exit`].
#[inline(always)]
#[must_use = "when this returns true the caller must yield the pCPU"]
pub fn cs_exit() -> bool {
    Active::cs_exit()
}

/// Current enlightened critical-section depth. See [`Backend::cs_depth`].
#[inline]
pub fn cs_depth() -> u32 {
    Active::cs_depth()
}

/// Enters a blocking-mutex section. See [`Backend::blocking_enter`].
#[inline(always)]
pub fn blocking_enter() {
    #[cfg(all(ecs_count_hints, feature = "std"))]
    count::BLOCKING.with(|d| d.set(d.get() + 1));
    Active::blocking_enter()
}

/// Leaves a blocking-mutex section. See [`Backend::blocking_exit`].
#[inline(always)]
pub fn blocking_exit() {
    #[cfg(all(ecs_count_hints, feature = "std"))]
    count::BLOCKING.with(|d| d.set(d.get() - 1));
    Active::blocking_exit()
}

/// This thread's blocking-section depth as the locks marked it ([`blocking_enter`] minus
/// [`blocking_exit`] calls), in a build with `--cfg ecs_count_hints` (a test instrument: the
/// native backends do nothing with the blocking mark, so without it no test could see whether
/// a lock raises the mark, or which thread it unbalances). `None` in every other build.
#[doc(hidden)]
pub fn counted_blocking_depth() -> Option<i64> {
    #[cfg(all(ecs_count_hints, feature = "std"))]
    return Some(count::BLOCKING.with(core::cell::Cell::get));
    #[cfg(not(all(ecs_count_hints, feature = "std")))]
    None
}

/// The `--cfg ecs_count_hints` instrument (see [`counted_blocking_depth`]).
#[cfg(all(ecs_count_hints, feature = "std"))]
mod count {
    std::thread_local! {
        /// This thread's blocking-section depth (signed: a foreign release shows as -1).
        pub(crate) static BLOCKING: core::cell::Cell<i64> = const { core::cell::Cell::new(0) };
    }
}

/// This vCPU's index. See [`Backend::vcpu_id`].
#[inline(always)]
pub fn vcpu_id() -> u32 {
    Active::vcpu_id()
}

/// Whether vCPU `vcpu` is descheduled. See [`Backend::vcpu_preempted`].
#[inline(always)]
pub fn vcpu_preempted(vcpu: u32) -> bool {
    Active::vcpu_preempted(vcpu)
}

/// Whether this pCPU is overloaded. See [`Backend::pcpu_overloaded`].
#[inline(always)]
pub fn pcpu_overloaded() -> bool {
    Active::pcpu_overloaded()
}

/// Gives up the pCPU. See [`Backend::yield_now`].
#[inline]
pub fn yield_now() {
    Active::yield_now()
}

/// Directed yield to vCPU `vcpu`. See [`Backend::yield_to`].
#[inline]
pub fn yield_to(vcpu: u32) {
    Active::yield_to(vcpu)
}

/// Halts until kicked. See [`Backend::wait`].
#[inline]
pub fn wait() {
    Active::wait()
}

/// Wakes vCPU `vcpu`. See [`Backend::kick`].
#[inline]
pub fn kick(vcpu: u32) {
    Active::kick(vcpu)
}

/// Which backend the calling thread uses and, on Linux, whether its spin-family sections
/// request rseq time-slice extensions or why not. See [`backend::linux`].
///
/// ```
/// println!("{}", ecs_sys::thread_backend());
/// ```
pub fn thread_backend() -> backend::linux::ThreadBackend {
    Active::thread_backend()
}

/// Pause-loop window in spin iterations (0 = no PLE). See [`Backend::ple_window`].
#[inline]
pub fn ple_window() -> u32 {
    Active::ple_window()
}

/// Reports a pause-loop exit. See [`Backend::pause_exit`].
#[inline]
pub fn pause_exit() {
    Active::pause_exit()
}
