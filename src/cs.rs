//! The one enlightenment hook. Only acquire and release paths call it.
//!
//! Every holder of a spinning lock (and every RCU reader) is an enlightened critical section:
//! [`enter`] right after acquisition, [`exit`] right after release. When the host extended the
//! vCPU's slice because it was inside a section, leaving the outermost one gives the pCPU back
//! at once (the eCS paper's yield-at-exit; Linux's `rseq_slice_yield` does the same).
//!
//! With the native backend [`enter`]/[`exit`] compile to a thread-local increment/decrement
//! (the blocking-section marks to nothing) and every hint is a constant `false`, so the hint
//! checks in waiters fold away.
//!
//! A guard that is leaked (`mem::forget`, `MutexGuard::leak`) leaks its mark too: the lock stays
//! held, which lock_api allows, and the vCPU stays "inside a critical section". That is safe —
//! the host bounds every extension, so a vCPU cannot keep a pCPU by it — but the `ecs` policy
//! then extends that vCPU's slices (within the bound) until the lock is released with
//! `force_unlock`, which also ends the mark.

/// Marks the start of an enlightened critical section. Call right after acquiring.
#[inline(always)]
pub(crate) fn enter() {
    ecs_sys::cs_enter();
}

/// Marks the end of an enlightened critical section. Call right after releasing.
#[inline(always)]
pub(crate) fn exit() {
    if ecs_sys::cs_exit() {
        yield_at_exit();
    }
}

/// The host extended our slice for the section we just left: give the pCPU back.
#[cold]
#[inline(never)]
fn yield_at_exit() {
    ecs_sys::yield_now();
}

/// Marks the start of a blocking-mutex section (the weaker hint).
#[inline(always)]
pub(crate) fn blocking_enter() {
    // With `send_guard` a guard may be released on another thread (another vCPU), whose
    // per-vCPU depth this would unbalance: the blocking hint is not raised at all.
    #[cfg(not(feature = "send_guard"))]
    ecs_sys::blocking_enter();
}

/// Marks the end of a blocking-mutex section.
#[inline(always)]
pub(crate) fn blocking_exit() {
    #[cfg(not(feature = "send_guard"))]
    ecs_sys::blocking_exit();
}

/// This vCPU's index, as stored in lock words to name the holder (0 natively).
#[inline(always)]
pub(crate) fn vcpu_id() -> u32 {
    ecs_sys::vcpu_id()
}

/// The value a lock word stores to name vCPU `vcpu` as its holder: `vcpu + 1`, so that 0 can
/// mean "free". An id past [`ecs_sys::abi::MAX_VCPUS`] (the guest reads its id from its slot,
/// which it can scribble on) is clamped to `MAX_VCPUS`, a vCPU that is never reported
/// preempted: the tag is never 0 ("free") nor `u32::MAX` (the MCS hand-off value), where a
/// wrapping `+ 1` would turn `u32::MAX` into "free".
#[inline(always)]
pub(crate) const fn holder_tag(vcpu: u32) -> u32 {
    if vcpu < ecs_sys::abi::MAX_VCPUS {
        vcpu + 1
    } else {
        ecs_sys::abi::MAX_VCPUS + 1
    }
}

/// [`holder_tag`] of the calling vCPU.
#[inline(always)]
pub(crate) fn my_holder_tag() -> u32 {
    holder_tag(vcpu_id())
}

/// Whether the vCPU `vcpu` (a lock holder or queue predecessor) is descheduled by the host.
/// Constant `false` natively.
#[inline(always)]
pub(crate) fn preempted(vcpu: u32) -> bool {
    ecs_sys::LIVE_HINTS && ecs_sys::vcpu_preempted(vcpu)
}

/// Whether the host reports this pCPU over-committed (a runnable vCPU waits for a pCPU).
/// Constant `false` natively. Its user, `McsMutex`, needs `std` or the guest backend.
#[cfg(any(feature = "std", ecs_guest))]
#[inline(always)]
pub(crate) fn overloaded() -> bool {
    ecs_sys::LIVE_HINTS && ecs_sys::pcpu_overloaded()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::holder_tag;
    use ecs_sys::abi::MAX_VCPUS;

    /// Issue 9: `vcpu_id + 1` wrapped a corrupt id `u32::MAX` to 0, "free".
    #[test]
    fn holder_tag_is_never_free_nor_handoff() {
        for v in [
            0,
            1,
            MAX_VCPUS - 1,
            MAX_VCPUS,
            MAX_VCPUS + 1,
            u32::MAX - 1,
            u32::MAX,
        ] {
            let t = holder_tag(v);
            assert!(t != 0 && t != u32::MAX, "tag {t} for vCPU {v}");
        }
        assert_eq!(holder_tag(0), 1);
        assert_eq!(holder_tag(MAX_VCPUS - 1), MAX_VCPUS);
        assert_eq!(holder_tag(u32::MAX), MAX_VCPUS + 1);
    }
}
