//! The Linux backend: critical sections a real Linux kernel respects, through the rseq
//! time-slice extension (Linux >= 7.0 built with `CONFIG_RSEQ_SLICE_EXTENSION`).
//!
//! A thread inside a spin-family critical section (every caller of [`Backend::cs_enter`]:
//! `SpinMutex`, `TicketMutex`, `McsMutex`, `SpinRwLock` holders and RCU readers) sets
//! `rseq->slice_ctrl.request` for its outermost section. If the kernel wants to preempt it
//! there, it grants a short extension instead (5 µs by default) and sets `granted`; leaving the
//! outermost section clears `request` and, when `granted` is set, [`Backend::cs_exit`] returns
//! `true`, and the caller's [`Backend::yield_now`] calls `rseq_slice_yield` (syscall 471) to give
//! the CPU back at once. Everything else is the native backend's behaviour: a thread-local
//! depth, constant hints.
//!
//! Blocking `Mutex`/`RwLock` holders ([`Backend::blocking_enter`]) never request: their sections
//! may be long, sleep on a futex or make other syscalls, and any syscall but 471 inside a granted
//! extension revokes it and reschedules at once, so a request there buys nothing and would only
//! lengthen other threads' scheduling latency.
//!
//! # How a thread gets the extension
//!
//! Decided once per thread, at its first section (or [`thread_backend`](crate::thread_backend)
//! call), never on the fast path, and without allocating (a lock used by a global allocator
//! must not recurse). Once per process: the opt-out ([`opt_out`], or `ECS_LOCKS_RSEQ=0` in the
//! environment, read once), the kernel's `getauxval(AT_RSEQ_FEATURE_SIZE)`, and libc's
//! registration (glibc >= 2.35 exports `__rseq_offset`/`__rseq_size`, reached through weak
//! references so a binary still loads on an older glibc; not looked up on musl). Then per thread:
//!
//! | libc's registration | what the thread does |
//! |---|---|
//! | v2 (`__rseq_size >= AT_RSEQ_FEATURE_SIZE`, glibc >= 2.41) | uses libc's area at thread pointer + `__rseq_offset`, enables the extension with `prctl(PR_RSEQ_SLICE_EXTENSION, SET, ENABLE)` |
//! | legacy (`__rseq_size` 32, or 20 on glibc 2.40) | falls back: the kernel grants only to v2 registrations ([`Fallback::LibcLegacy`]) |
//! | none (`__rseq_size == 0`: `GLIBC_TUNABLES=glibc.pthread.rseq=0`, musl, glibc < 2.35) | registers its own area (a 64-byte aligned thread-local without destructor, length `AT_RSEQ_FEATURE_SIZE`), then the `prctl` |
//!
//! The crate never unregisters, overwrites or races another registration: a failing
//! registration (EINVAL when someone else registered for this thread) is a fallback. Its own
//! area is static TLS of the thread and stays valid until the thread exits; it is only
//! registered when this crate is linked into the main executable, since a `dlclose`d shared
//! object's TLS can be freed or reused while the kernel still writes to it
//! ([`Fallback::SharedObject`]). Every failing call falls back, reporting the errno; a failing
//! `rseq_slice_yield` disables the extension for the whole process (each thread stops requesting
//! at its next grant, threads not yet decided never start).
//!
//! # Sharing the request byte
//!
//! Another library, or a second semver-incompatible copy of this crate, may use the same
//! `slice_ctrl` in the same thread. The crate only writes the `request` byte, never `granted`
//! (kernel-owned; the kernel kills a thread whose control word is inconsistent), and sets
//! `request` only while `granted` is clear. Every outermost exit clears `request`: when sections
//! of two users overlap, the first exit may clear the other's request (its extension is lost),
//! and the last exit always leaves it clear; every outermost exit of this crate that finds
//! `granted` yields, whoever's request drew the grant. The `two-copies` check of the
//! `linux-guest` crate tests this with two copies of this crate on one thread.
//!
//! # fork and exec
//!
//! A forked child inherits the forking thread's registration and enable state from the kernel
//! and its thread-local state from the parent, so it continues as its parent thread did; its
//! new threads decide afresh. `exec` drops the registration and starts a new process.

/// Expands the items given only where `Linux` is the backend (`super::Active`), the rest of
/// a trailing `else { ... }` block elsewhere; the condition is kept in step with the arm in
/// `backend/mod.rs`.
macro_rules! if_linux_backend {
    ({ $($yes:item)* } else { $($no:item)* }) => {
        $(
            #[cfg(all(
                feature = "std",
                target_os = "linux",
                target_arch = "x86_64",
                not(loom),
                not(ecs_guest)
            ))]
            $yes
        )*
        $(
            #[cfg(not(all(
                feature = "std",
                target_os = "linux",
                target_arch = "x86_64",
                not(loom),
                not(ecs_guest)
            )))]
            $no
        )*
    };
}

if_linux_backend!({
    mod imp;
    mod sys;
    pub use imp::Linux;
} else {
    /// Other targets and backends: nothing to opt out of, nothing counted.
    mod imp {
        use super::RseqStats;
        pub(super) fn opt_out() {}
        pub(super) fn stats() -> RseqStats {
            RseqStats::default()
        }
        pub(super) fn slice_ctrl() -> Option<(bool, bool)> {
            None
        }
    }
});

mod status;
pub use status::{Fallback, RseqArea, RseqStats, ThreadBackend};

/// Process-wide opt-out of the time-slice extension: threads that have not yet entered a
/// spin-family section (nor asked [`thread_backend`](crate::thread_backend)) take the native
/// path; threads that already decided keep their decision. The environment variable
/// `ECS_LOCKS_RSEQ=0`, read once at the first decision, has the same effect for the whole
/// process. A no-op with other backends.
pub fn opt_out() {
    imp::opt_out();
}

/// Process-wide counts of the extension's use: grants this crate saw at section exits and
/// successful `rseq_slice_yield` calls. Zero with other backends.
pub fn stats() -> RseqStats {
    imp::stats()
}

/// This thread's `rseq.slice_ctrl` as `(request, granted)` when it uses the extension, `None`
/// otherwise (diagnostics and tests: inside a section `request` is set unless the kernel has
/// granted, outside every section it is clear).
pub fn slice_ctrl() -> Option<(bool, bool)> {
    imp::slice_ctrl()
}
