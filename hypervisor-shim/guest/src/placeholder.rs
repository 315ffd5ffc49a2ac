//! PLACEHOLDER locks, standing in for every `ecs-locks` type until the lock family reaches `main`
//! (then this module is deleted and `run::locks` names the real types).
//!
//! Both are minimal spin locks that mark their holders as enlightened critical sections through
//! `ecs_sys` (depth +1 right after acquiring, -1 right after releasing, yield when the host
//! extended the slice), so the host's `ecs` policy already sees real hints. They do not name
//! the holder, do not yield to a preempted holder and are not fair: do not read benchmark
//! results of a placeholder build as results of the lock family.
//!
//! | lock | state word |
//! |------|------------|
//! | [`RawTasMutex`] | `AtomicBool`: `true` while held |
//! | [`RawTasRwLock`] | `AtomicU32`: bit 31 writer holds, bit 30 a writer waits (new readers hold off), bits 0-29 readers |

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use lock_api::GuardNoSend;

/// Leaves an enlightened critical section; gives the pCPU back if the host asked for it.
#[inline(always)]
fn cs_exit() {
    if ecs_sys::cs_exit() {
        ecs_sys::yield_now();
    }
}

/// Test-and-test-and-set mutex.
#[derive(Debug)]
pub(crate) struct RawTasMutex {
    locked: AtomicBool,
}

// SAFETY: `locked` is taken by an Acquire swap from false to true, so at most one context holds
// it, and released by a Release store, which orders the critical section before the next holder.
unsafe impl lock_api::RawMutex for RawTasMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawTasMutex {
        locked: AtomicBool::new(false),
    };
    type Guard = GuardNoSend;

    #[inline]
    fn lock(&self) -> GuardNoSend {
        while self.locked.swap(true, Ordering::Acquire) {
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        ecs_sys::cs_enter();
        GuardNoSend::new()
    }

    #[inline]
    fn try_lock(&self) -> Option<GuardNoSend> {
        if self.locked.swap(true, Ordering::Acquire) {
            return None;
        }
        ecs_sys::cs_enter();
        Some(GuardNoSend::new())
    }

    #[inline]
    unsafe fn unlock(&self, _guard: GuardNoSend) {
        self.locked.store(false, Ordering::Release);
        cs_exit();
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

/// Writer-preferring spin reader-writer lock.
#[derive(Debug)]
pub(crate) struct RawTasRwLock {
    state: AtomicU32,
}

/// A writer holds the lock.
const WRITER: u32 = 1 << 31;
/// A writer waits: new readers hold off so writers are not starved.
const WRITER_WAITING: u32 = 1 << 30;
/// The reader count.
const READERS: u32 = WRITER_WAITING - 1;

// SAFETY: a reader enters only by a CAS that sees no WRITER bit and raises the reader count; a
// writer enters only by a CAS from "no writer, no readers" to WRITER; both with Acquire, and every
// release is a Release RMW, so sections are exclusive as the traits require and ordered.
unsafe impl lock_api::RawRwLock for RawTasRwLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawTasRwLock {
        state: AtomicU32::new(0),
    };
    type SharedGuard = GuardNoSend;
    type ExclusiveGuard = GuardNoSend;

    #[inline]
    fn lock_shared(&self) -> GuardNoSend {
        while self.try_lock_shared_once().is_none() {
            core::hint::spin_loop();
        }
        ecs_sys::cs_enter();
        GuardNoSend::new()
    }

    #[inline]
    fn try_lock_shared(&self) -> Option<GuardNoSend> {
        self.try_lock_shared_once()?;
        ecs_sys::cs_enter();
        Some(GuardNoSend::new())
    }

    #[inline]
    unsafe fn unlock_shared(&self, _guard: GuardNoSend) {
        self.state.fetch_sub(1, Ordering::Release);
        cs_exit();
    }

    #[inline]
    fn lock_exclusive(&self) -> GuardNoSend {
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & (WRITER | READERS) == 0 {
                // Clears WRITER_WAITING too: the next waiting writer sets it again.
                if self
                    .state
                    .compare_exchange_weak(s, WRITER, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    break;
                }
            } else if s & WRITER_WAITING == 0 {
                self.state.fetch_or(WRITER_WAITING, Ordering::Relaxed);
            }
            core::hint::spin_loop();
        }
        ecs_sys::cs_enter();
        GuardNoSend::new()
    }

    #[inline]
    fn try_lock_exclusive(&self) -> Option<GuardNoSend> {
        self.state
            .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        ecs_sys::cs_enter();
        Some(GuardNoSend::new())
    }

    #[inline]
    unsafe fn unlock_exclusive(&self, _guard: GuardNoSend) {
        self.state.fetch_and(!WRITER, Ordering::Release);
        cs_exit();
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & (WRITER | READERS) != 0
    }

    #[inline]
    fn is_locked_exclusive(&self) -> bool {
        self.state.load(Ordering::Relaxed) & WRITER != 0
    }
}

impl RawTasRwLock {
    /// One attempt at a shared acquisition, without the critical-section mark.
    #[inline]
    fn try_lock_shared_once(&self) -> Option<()> {
        let s = self.state.load(Ordering::Relaxed);
        if s & (WRITER | WRITER_WAITING) != 0 || s & READERS == READERS {
            return None;
        }
        self.state
            .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(drop)
    }
}
