//! What survives `fork()`: a generation counter and repair hooks run in the child.
//!
//! After `fork()` the child has one thread, the one that forked, and a copy of every other
//! thread's memory with nobody running it. Lock state that names those threads stays behind:
//! an MCS queue node of a thread that no longer exists, or an RCU reader slot whose section
//! will never end. This module registers one `pthread_atfork` child handler (lazily, the first
//! time a lock builds such state, so a program that never queues pays nothing) that
//!
//! - bumps [`generation`]: state stamped with an older generation belongs to a thread that
//!   does not exist in this process. `RawMcsMutex` tags its `tail` word with it, and a waiter
//!   whose predecessor carries an older tag makes itself the queue head instead of waiting for
//!   it (a tag in the lock word, not a field of the node: the child recycles the memory of the
//!   threads that are gone for its new threads);
//! - runs the repair hooks registered with [`on_child`]: RCU marks every reader slot but the
//!   forking thread's quiescent and frees it, and MCS frees the forking thread's node if it
//!   was left pending for a late successor (a thread that is gone).
//!
//! Locks that other code inside the crate adds can use the same two tools: compare a stamp
//! with [`generation`], or register a hook with [`on_child`] (at most eight).
//!
//! What cannot be repaired, as with any mutex across `fork()` (POSIX allows only
//! async-signal-safe calls in the child of a multithreaded process for this reason): a lock
//! *held* by another thread at the time of the fork stays held in the child (its data may be
//! half-updated, so nothing may take it over), and so does an RCU writer lock; the blocking
//! locks park through parking_lot_core, whose own queues are not repaired. The forking
//! thread's own locks and read sections carry over unchanged. See docs/DESIGN.md, "Fork and
//! thread exit".

#[cfg(all(feature = "std", unix, not(loom)))]
mod imp {
    use crate::sync::{AtomicPtr, AtomicU32, Ordering};
    use std::sync::Once;

    /// How many repair hooks [`on_child`] accepts.
    const MAX_HOOKS: usize = 8;

    /// A caller's "my hook is registered" flag. Not lock state and never loom-modelled (no
    /// fork under loom), so a plain atomic.
    #[allow(clippy::disallowed_types, reason = "not a lock protocol; see above")]
    pub(crate) struct Registered(core::sync::atomic::AtomicBool);

    impl Registered {
        pub(crate) const fn new() -> Self {
            #[allow(clippy::disallowed_types, reason = "see the type")]
            Self(core::sync::atomic::AtomicBool::new(false))
        }
    }

    static GENERATION: AtomicU32 = AtomicU32::new(0);
    static REGISTER: Once = Once::new();
    static HOOKS: [AtomicPtr<()>; MAX_HOOKS] =
        [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_HOOKS];

    pub(crate) fn generation() -> u32 {
        GENERATION.load(Ordering::Relaxed)
    }

    pub(crate) fn watch() {
        REGISTER.call_once(|| {
            // SAFETY: `child` is an `extern "C" fn()` that lives for the program; the other
            // two handlers are absent. The call has no other precondition.
            let rc = unsafe { libc::pthread_atfork(None, None, Some(child)) };
            // ENOMEM only: then a fork's child keeps the stale state, as before this module.
            debug_assert_eq!(rc, 0, "pthread_atfork failed");
        });
    }

    pub(crate) fn on_child(registered: &Registered, hook: fn()) {
        let registered = &registered.0;
        if registered.load(Ordering::Acquire) {
            return;
        }
        watch();
        let h = hook as *mut ();
        for slot in &HOOKS {
            match slot.compare_exchange(
                core::ptr::null_mut(),
                h,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return registered.store(true, Ordering::Release),
                Err(cur) if cur == h => return registered.store(true, Ordering::Release),
                Err(_) => {}
            }
        }
        panic!("ecs_locks::fork: more than {MAX_HOOKS} repair hooks");
    }

    /// The child handler: runs in the only thread of the new process.
    extern "C" fn child() {
        GENERATION.fetch_add(1, Ordering::Relaxed);
        for slot in &HOOKS {
            let h = slot.load(Ordering::Acquire);
            if !h.is_null() {
                // SAFETY: only `on_child` stores non-null values, each a `fn()` cast to a
                // pointer.
                let hook: fn() = unsafe { core::mem::transmute::<*mut (), fn()>(h) };
                hook();
            }
        }
    }
}

#[cfg(not(all(feature = "std", unix, not(loom))))]
mod imp {
    // No fork here (no_std, a guest, loom): one generation forever, nothing to run.
    #[inline(always)]
    pub(crate) fn generation() -> u32 {
        0
    }

    /// A caller's "my hook is registered" flag (nothing to register here).
    pub(crate) struct Registered;

    impl Registered {
        #[allow(dead_code, reason = "callers are std-only")]
        pub(crate) const fn new() -> Self {
            Self
        }
    }

    #[allow(dead_code, reason = "callers are std-only")]
    pub(crate) fn on_child(_registered: &Registered, _hook: fn()) {}
}

pub(crate) use imp::Registered;

/// The fork generation: 0 in the original process, +1 in each child of a `fork()` (once
/// [`watch`] or [`on_child`] has run in the parent).
#[inline]
pub(crate) fn generation() -> u32 {
    imp::generation()
}

/// Registers `hook` to run in the child after every later `fork()`, unless `registered`
/// (the caller's own flag, so the common call is one load) says it already is.
///
/// # Panics
///
/// When more than [`MAX_HOOKS`] distinct hooks are registered (a bug in this crate).
#[allow(dead_code, reason = "callers are std-only")]
pub(crate) fn on_child(registered: &Registered, hook: fn()) {
    imp::on_child(registered, hook);
}
