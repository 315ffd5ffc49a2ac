//! What a thread got: the diagnostics types, the same on every target.

use core::fmt;

/// Which backend the calling thread uses and, on Linux, whether it requests rseq time-slice
/// extensions or why not. Returned by [`thread_backend`](crate::thread_backend); its `Display`
/// is one line for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadBackend {
    /// A backend without a per-thread choice (`"native"`, `"guest"`).
    Fixed(&'static str),
    /// Linux: this thread's spin-family sections request rseq time-slice extensions.
    RseqExtension(RseqArea),
    /// Linux: this thread takes the native path, for the reason given.
    RseqFallback(Fallback),
}

/// Whose rseq area a thread uses for the extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RseqArea {
    /// libc's registration (glibc >= 2.41, the kernel's "optimized v2" mode).
    Libc,
    /// The crate's own per-thread registration (nobody else had registered).
    Own,
}

/// Why a thread does not use the time-slice extension. Errno values are the raw numbers the
/// kernel returned (ENOTSUPP is the kernel-internal 524).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// `ECS_LOCKS_RSEQ=0` was in the environment at the first decision.
    OptOutEnv,
    /// [`opt_out`](super::opt_out) was called before this thread decided.
    OptOutApi,
    /// The kernel's rseq has no time-slice extension field: `AT_RSEQ_FEATURE_SIZE` (given; 0
    /// when absent, Linux < 6.3) is below 33, the end of `slice_ctrl` plus the reserved byte of
    /// Linux 7.0.
    NoSliceField {
        /// `AT_RSEQ_FEATURE_SIZE`.
        feature_size: u32,
    },
    /// libc registered rseq in the legacy mode of this length, which the extension does not
    /// support.
    LibcLegacy {
        /// libc's `__rseq_size`.
        size: u32,
        /// The kernel's `AT_RSEQ_FEATURE_SIZE`.
        feature_size: u32,
    },
    /// Nobody registered rseq, and the crate's own area cannot hold what the kernel asks for.
    AreaTooSmall {
        /// `AT_RSEQ_FEATURE_SIZE`.
        feature_size: u32,
        /// `AT_RSEQ_ALIGN`.
        align: u32,
    },
    /// Nobody registered rseq, and this crate lives in a shared object (which could be
    /// `dlclose`d while the kernel still writes to its thread-local area): own registration
    /// refused.
    SharedObject,
    /// The crate's own `rseq` registration failed with this errno (EINVAL: someone else
    /// registered an area for this thread; ENOSYS/EPERM: no rseq or a seccomp filter).
    Register(i32),
    /// `prctl(PR_RSEQ_SLICE_EXTENSION, SET, ENABLE)` failed with this errno (EINVAL: kernel
    /// without `CONFIG_RSEQ_SLICE_EXTENSION`; 524 ENOTSUPP: disabled on the kernel command line
    /// with `rseq_slice_ext=0`, or a legacy registration; ENXIO: no registration).
    Prctl(i32),
    /// `rseq_slice_yield` (syscall 471) failed with this errno: the extension is off for the
    /// whole process from then on.
    Yield(i32),
}

/// Process-wide counts of the time-slice extension's use by this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RseqStats {
    /// Outermost section exits that found `granted` set (each then calls `rseq_slice_yield`).
    pub grants: u64,
    /// `rseq_slice_yield` calls that returned 1 (yielded within the grant; the kernel's
    /// `syield` statistic counts the same event).
    pub yields: u64,
}

impl fmt::Display for ThreadBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThreadBackend::Fixed(name) => write!(f, "{name}"),
            ThreadBackend::RseqExtension(RseqArea::Libc) => {
                f.write_str("linux-rseq: time-slice extension on (libc's rseq area, v2 mode)")
            }
            ThreadBackend::RseqExtension(RseqArea::Own) => {
                f.write_str("linux-rseq: time-slice extension on (own rseq registration)")
            }
            ThreadBackend::RseqFallback(why) => write!(f, "linux-rseq: native path: {why}"),
        }
    }
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fallback::OptOutEnv => f.write_str("opted out by ECS_LOCKS_RSEQ=0"),
            Fallback::OptOutApi => f.write_str("opted out by ecs_sys::backend::linux::opt_out()"),
            Fallback::NoSliceField { feature_size } => write!(
                f,
                "kernel without the rseq time-slice extension (AT_RSEQ_FEATURE_SIZE={feature_size}, \
                 needs >= 33): needs Linux >= 7.0 with CONFIG_RSEQ_SLICE_EXTENSION"
            ),
            Fallback::LibcLegacy { size, feature_size } => write!(
                f,
                "rseq registered by libc in legacy mode (__rseq_size={size}, kernel feature size \
                 {feature_size}): set GLIBC_TUNABLES=glibc.pthread.rseq=0 (or use glibc >= 2.41)"
            ),
            Fallback::AreaTooSmall {
                feature_size,
                align,
            } => write!(
                f,
                "kernel asks for an rseq area of {feature_size} bytes aligned to {align}; the \
                 crate's own area has 64"
            ),
            Fallback::SharedObject => f.write_str(
                "nobody registered rseq and ecs-sys is in a shared object that may be dlclosed: \
                 own registration refused",
            ),
            Fallback::Register(e) => write!(f, "rseq registration failed (errno {e})"),
            Fallback::Prctl(e) => write!(
                f,
                "prctl(PR_RSEQ_SLICE_EXTENSION) failed (errno {e}{})",
                match e {
                    22 => ": kernel without CONFIG_RSEQ_SLICE_EXTENSION",
                    524 => ": disabled on the kernel command line, or a legacy registration",
                    6 => ": no rseq registration",
                    1 | 38 => ": refused (seccomp?)",
                    _ => "",
                }
            ),
            Fallback::Yield(e) => write!(
                f,
                "rseq_slice_yield failed (errno {e}): extension disabled for the process"
            ),
        }
    }
}
