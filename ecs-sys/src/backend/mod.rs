//! Hint backends: where critical-section marks go and where the host's hints come from.
//!
//! One backend is compiled in, chosen by cargo feature, and exported as [`Active`]; locks call
//! it through static dispatch only (no `dyn` on the lock path):
//!
//! | feature | backend | what it talks to |
//! |---------|---------|------------------|
//! | `guest` | `guest::Guest` | the shared hint page through `%fs`/`%gs`, port-I/O hypercalls (inside an `ecs-shim` VM) |
//! | `std` (default), Linux x86_64 | `linux::Linux` | the kernel's rseq time-slice extension where the kernel and libc allow it, else as `native` |
//! | `std` (default), elsewhere | [`native::Native`] | nothing: a thread-local depth, constant hints (bare metal, or a VM without eCS) |
//! | neither | [`native::Native`] | nothing: no depth tracking at all (`no_std` without a hypervisor) |

pub mod linux;
pub mod native;

#[cfg(all(feature = "guest", target_arch = "x86_64"))]
pub mod guest;

#[cfg(all(feature = "guest", not(target_arch = "x86_64")))]
compile_error!("the `guest` backend is x86_64 only (port I/O hypercalls, %fs-relative slots)");

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

#[cfg(all(feature = "guest", target_arch = "x86_64"))]
/// The backend compiled in.
pub type Active = guest::Guest;

#[cfg(all(
    feature = "std",
    target_os = "linux",
    target_arch = "x86_64",
    not(loom),
    not(feature = "guest")
))]
/// The backend compiled in.
pub type Active = linux::Linux;

#[cfg(all(
    not(feature = "guest"),
    not(all(
        feature = "std",
        target_os = "linux",
        target_arch = "x86_64",
        not(loom)
    ))
))]
/// The backend compiled in.
pub type Active = native::Native;
