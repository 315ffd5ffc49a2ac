//! The native backend: no hypervisor to talk to.
//!
//! With `std`, the enlightened critical-section depth lives in a thread-local so tools and
//! tests can see it (`cs_depth`, `examples/hints.rs`); without `std` it is not tracked. The
//! blocking-section depth is not tracked natively: nothing reads it off a hypervisor's page, and
//! the blocking `Mutex`'s uncontended path then costs exactly parking_lot's two atomics. Hints are constant: nothing is ever preempted or
//! overloaded as far as this backend knows, so waiters behave like ordinary spinlocks and
//! adaptive mutexes (bounded spinning, then the OS).

use super::Backend;

/// The native backend. See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Native;

#[cfg(feature = "std")]
mod depth {
    use core::cell::Cell;

    std::thread_local! {
        static CS: Cell<i32> = const { Cell::new(0) };
    }

    // `try_with`: during thread teardown (a lock taken in a TLS destructor) the counter may
    // already be gone; the depth is a hint, so losing it there is harmless.

    /// Depth + 1.
    #[inline]
    pub(super) fn enter() {
        let _ = CS.try_with(|d| d.set(d.get().wrapping_add(1)));
    }

    /// Depth - 1. The depth never goes below 0: an exit without an enter on this thread (a
    /// `force_unlock` of a lock another thread took, issue 9) leaves it at 0 instead of -1,
    /// which would hide the next section. The decrement's sign flag picks that case, so the
    /// fast path is `dec` on the thread-local and a branch never taken.
    #[inline]
    pub(super) fn exit() {
        let _ = CS.try_with(|d| {
            let v = d.get().wrapping_sub(1);
            d.set(v);
            if v < 0 {
                exit_without_enter(d);
            }
        });
    }

    #[cold]
    #[inline(never)]
    fn exit_without_enter(d: &Cell<i32>) {
        d.set(0);
    }

    /// The depth.
    #[inline]
    pub(super) fn get() -> u32 {
        CS.try_with(|d| d.get().max(0) as u32).unwrap_or(0)
    }
}

/// The hooks of a backend with no hypervisor behind it: blocking sections unmarked, constant
/// hints, no halting or kicking. Expanded inside `impl Backend` blocks (here and in the Linux
/// backend, which adds only critical sections and yields).
macro_rules! no_hypervisor_hooks {
    () => {
        #[inline(always)]
        fn blocking_enter() {}

        #[inline(always)]
        fn blocking_exit() {}

        #[inline]
        fn vcpu_id() -> u32 {
            0
        }

        #[inline]
        fn vcpu_preempted(_vcpu: u32) -> bool {
            false
        }

        #[inline]
        fn pcpu_overloaded() -> bool {
            false
        }

        #[inline]
        fn kick(_vcpu: u32) {}

        #[inline]
        fn ple_window() -> u32 {
            0
        }

        #[inline]
        fn pause_exit() {}
    };
}
#[allow(unused_imports)] // unused where the Linux backend is not compiled
pub(super) use no_hypervisor_hooks;

impl Backend for Native {
    const NAME: &'static str = "native";
    const LIVE_HINTS: bool = false;

    #[inline]
    fn cs_enter() {
        #[cfg(feature = "std")]
        depth::enter();
    }

    #[inline]
    fn cs_exit() -> bool {
        #[cfg(feature = "std")]
        depth::exit();
        false
    }

    #[inline]
    fn cs_depth() -> u32 {
        #[cfg(feature = "std")]
        return depth::get();
        #[cfg(not(feature = "std"))]
        0
    }

    no_hypervisor_hooks!();

    #[inline]
    fn yield_now() {
        #[cfg(feature = "std")]
        std::thread::yield_now();
        #[cfg(not(feature = "std"))]
        core::hint::spin_loop();
    }

    #[inline]
    fn yield_to(_vcpu: u32) {
        Self::yield_now();
    }

    #[inline]
    fn wait() {
        Self::yield_now();
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn depth_nests_per_thread() {
        assert_eq!(Native::cs_depth(), 0);
        Native::cs_enter();
        Native::cs_enter();
        assert_eq!(Native::cs_depth(), 2);
        std::thread::spawn(|| assert_eq!(Native::cs_depth(), 0, "depth is per thread"))
            .join()
            .unwrap();
        assert!(!Native::cs_exit(), "natively no extension is ever granted");
        assert!(!Native::cs_exit());
        assert_eq!(Native::cs_depth(), 0);
    }

    #[test]
    fn exit_without_enter_keeps_the_depth_at_zero() {
        std::thread::spawn(|| {
            assert!(!Native::cs_exit());
            assert!(!Native::cs_exit());
            assert_eq!(Native::cs_depth(), 0);
            Native::cs_enter();
            assert_eq!(Native::cs_depth(), 1, "the next section still counts");
            assert!(!Native::cs_exit());
            assert_eq!(Native::cs_depth(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn hints_are_constant() {
        for v in [0, 1, 255, u32::MAX] {
            assert!(!Native::vcpu_preempted(v));
        }
        assert!(!Native::pcpu_overloaded());
        assert_eq!(Native::vcpu_id(), 0);
        assert_eq!(Native::ple_window(), 0);
        Native::yield_to(3);
        Native::wait();
        Native::kick(1);
        Native::blocking_enter();
        Native::blocking_exit();
    }
}
