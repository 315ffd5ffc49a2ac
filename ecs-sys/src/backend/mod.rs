//! Hint backends: where critical-section marks go and where the host's hints come from.
//!
//! One backend is compiled in and exported as [`Active`]; locks call it through static dispatch
//! only (no `dyn` on the lock path):
//!
//! | build | backend | what it talks to |
//! |-------|---------|------------------|
//! | `--cfg ecs_guest` (x86_64) | `guest::Guest` | the shared hint page through `%fs`/`%gs`, port-I/O hypercalls (inside an `ecs-shim` VM) |
//! | otherwise, `std` (default), Linux x86_64 | `linux::Linux` | the kernel's rseq time-slice extension where the kernel and libc allow it, else as `native` |
//! | otherwise, `std` (default), elsewhere | [`native::Native`] | nothing: a thread-local depth, constant hints (bare metal, or a VM without eCS) |
//! | otherwise, no `std` | [`native::Native`] | nothing: no depth tracking at all (`no_std` without a hypervisor) |
//!
//! # `ecs_guest` is a cfg, not a feature
//!
//! The guest backend reads `%fs`-relative memory that only an `ecs-shim` vCPU maps; on an
//! ordinary host `%fs` is the thread's TLS block and the same instructions corrupt it. Cargo
//! features are unified across a dependency graph, so if the guest backend were a feature, any
//! crate anywhere in the graph could switch every lock of the final program to it. The choice
//! therefore belongs to the final binary alone, the way `tokio_unstable` does: pass
//! `--cfg ecs_guest` in that binary's rustflags (the guest program sets it in
//! `hypervisor-shim/guest/.cargo/config.toml`). No Cargo feature of `ecs-sys` or `ecs-locks`
//! changes the backend, so `--all-features` is always sound on a host. See `docs/DESIGN.md`,
//! "Backends and their selection".

pub mod linux;
pub mod native;

#[cfg(all(ecs_guest, target_arch = "x86_64"))]
pub mod guest;

#[cfg(all(ecs_guest, not(target_arch = "x86_64")))]
compile_error!("`--cfg ecs_guest` is x86_64 only (port I/O hypercalls, %fs-relative slots)");

/// What a lock needs from the platform: mark critical sections, read the host's hints, and ask
/// the host to move the pCPU to someone else.
///
/// Every method is an associated function: a backend is a type, not a value, so the choice costs
/// nothing at run time.
pub trait Backend {
    /// Short name, for diagnostics (`"native"`, `"guest"`).
    const NAME: &'static str;

    /// Whether the hints can ever change. `false` means [`Backend::vcpu_preempted`] and
    /// [`Backend::pcpu_overloaded`] are constant `false`, so callers may skip hint checks.
    const LIVE_HINTS: bool;

    /// Enters an enlightened critical section (depth + 1).
    fn cs_enter();

    /// Leaves an enlightened critical section (depth - 1). Returns `true` when this was the
    /// outermost section and the host extended the slice for it: the caller must then call
    /// [`Backend::yield_now`] to give the pCPU back.
    fn cs_exit() -> bool;

    /// Current enlightened critical-section depth of this vCPU (or thread, natively).
    fn cs_depth() -> u32;

    /// Enters a blocking-mutex section (the weaker hint).
    fn blocking_enter();

    /// Leaves a blocking-mutex section.
    fn blocking_exit();

    /// This vCPU's index (0 natively).
    fn vcpu_id() -> u32;

    /// Whether vCPU `vcpu` is currently descheduled by the host. Out-of-range indices are
    /// reported as not preempted.
    fn vcpu_preempted(vcpu: u32) -> bool;

    /// Whether runnable vCPUs are waiting for a pCPU right now.
    fn pcpu_overloaded() -> bool;

    /// Gives up the pCPU (and any extension granted).
    fn yield_now();

    /// Gives the pCPU to vCPU `vcpu` (directed yield), typically a preempted lock holder.
    fn yield_to(vcpu: u32);

    /// Halts this vCPU until [`Backend::kick`]ed; returns at once if a kick is pending.
    /// Spurious returns are allowed: callers re-check their condition.
    fn wait();

    /// Wakes vCPU `vcpu` from [`Backend::wait`], or makes its next wait return at once.
    fn kick(vcpu: u32);

    /// Spin iterations after which a waiter reports a pause-loop exit, or 0 when the host does
    /// not emulate pause-loop exiting.
    fn ple_window() -> u32;

    /// Reports a pause-loop exit: this waiter has spun for [`Backend::ple_window`] iterations.
    fn pause_exit();

    /// What the calling thread got from this backend (diagnostics; may decide the thread's
    /// per-thread state, never on a lock path).
    fn thread_backend() -> linux::ThreadBackend {
        linux::ThreadBackend::Fixed(Self::NAME)
    }
}

// The backend selection: one arm per backend, exactly one of them true.

/// The backend compiled in.
#[cfg(all(ecs_guest, target_arch = "x86_64"))]
pub type Active = guest::Guest;

/// The backend compiled in.
#[cfg(all(
    feature = "std",
    target_os = "linux",
    target_arch = "x86_64",
    not(ecs_guest),
    not(loom)
))]
pub type Active = linux::Linux;

/// The backend compiled in.
#[cfg(all(
    not(ecs_guest),
    not(all(
        feature = "std",
        target_os = "linux",
        target_arch = "x86_64",
        not(loom)
    ))
))]
pub type Active = native::Native;
