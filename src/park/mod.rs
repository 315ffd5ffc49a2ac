//! The one place the blocking locks block: a keyed parking lot, and the choice of its backend.
//! (When to stop spinning and park is [`AdaptiveSpin`](crate::adaptive_spin::AdaptiveSpin).)
//!
//! Every blocking lock (`RawMutex`, `RawRwLock`, `RawCondvar`, `Once`) parks its waiters in a
//! wait queue keyed by an address it owns, with parking_lot_core's contract: `validate` runs
//! under the queue lock and may cancel the park, `before_sleep` runs after the waiter is queued,
//! and the unpark functions call their callbacks under the queue lock before any waiter wakes.
//! The backend is a compile-time choice:
//!
//! | build | backend | how a waiter sleeps |
//! |-------|---------|---------------------|
//! | `std`, not loom, not `ecs_portable_park` | `parking_lot_core` itself (re-exported) | futex, keyed by the lock address |
//! | `cfg(loom)` | [`queue`] with one spin-locked bucket (the same TTAS lock on loom atomics) | a model of WAIT/KICK ([`vcpu_model`]): a per-thread loom `Notify` as the pending kick |
//! | `--cfg ecs_guest` (no_std) | [`queue`] with hashed spin-locked buckets | the WAIT hypercall; the unparker KICKs the waiter's vCPU |
//! | other no_std, or `--cfg ecs_portable_park` | [`queue`] with hashed spin-locked buckets | spinning through `Backoff` (there is nothing to halt) |
//!
//! In the queue backend each parked waiter is a record on its own stack, linked into the
//! bucket of its key; the record names the waiter's vCPU, so an unparker knows whom to kick.
//! An unparker unlinks the record under the bucket lock, releases the lock, then writes the
//! unpark token, reads the vCPU, publishes `woken` (Release) as its last access to the record
//! (the waiter may return and pop the record right after) and kicks: no KICK (a VM exit) is
//! issued with the bucket lock held. A timed-out waiter that finds itself unlinked but not
//! woken waits for `woken` too.
//! The waiter loops `while !woken { WAIT }`: WAIT returns at once when a kick is pending, and a
//! spurious return (a stale kick) just loops, so no wake-up is lost and none is invented.
//!
//! Timeouts exist only with `std`. Loom has no clock: under loom a timed park that was not
//! already woken times out at once, which lets the models explore the time-out paths.
//!
//! The queue backend is also compiled in `std` test builds, where its unit tests drive
//! it with real threads (waiters then spin through `Backoff`, as in a no_std build without
//! `ecs_guest`). The `ecs_portable_park` cfg makes every lock use it with `std`, so the whole
//! native suite runs on the guest's queue logic (minus WAIT/KICK):
//! `RUSTFLAGS="--cfg ecs_portable_park" cargo test -p ecs-locks --test stress_blocking --test proptest_blocking`
//! (a cfg, not a feature, so that no dependency can turn every user's `Mutex` into a spinning
//! queue).

#[cfg(all(feature = "std", not(loom), not(ecs_portable_park)))]
mod imp {
    pub(crate) use parking_lot_core::{
        DEFAULT_PARK_TOKEN, DEFAULT_UNPARK_TOKEN, FilterOp, ParkResult, ParkToken, RequeueOp,
        UnparkResult, UnparkToken, park, unpark_all, unpark_filter, unpark_one, unpark_requeue,
    };
}

#[cfg(any(loom, not(feature = "std"), ecs_portable_park))]
mod imp {
    pub(crate) use super::queue::*;
}

pub(crate) use imp::*;

#[cfg(loom)]
pub use queue::loom_hook;

/// The deadline type of a timed park: `std::time::Instant` with `std`; without `std` there
/// are no timed operations and the type is uninhabited.
#[cfg(feature = "std")]
pub(crate) type Instant = std::time::Instant;

/// The deadline type of a timed park: uninhabited without `std` (no clock, no timed locks).
#[cfg(not(feature = "std"))]
#[derive(Clone, Copy, Debug)]
pub(crate) enum Instant {}

/// `now + timeout`, or `None` (wait forever) when that overflows, as parking_lot does.
#[cfg(feature = "std")]
#[inline]
pub(crate) fn to_deadline(timeout: core::time::Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Unpark token: the waiter should try to take the lock again.
pub(crate) const TOKEN_NORMAL: UnparkToken = UnparkToken(0);
/// Unpark token: the lock was handed to the waiter without being released (fair unlock).
pub(crate) const TOKEN_HANDOFF: UnparkToken = UnparkToken(1);

#[cfg(any(loom, not(feature = "std"), ecs_portable_park, test))]
#[cfg_attr(
    all(feature = "std", not(loom), not(ecs_portable_park)),
    allow(
        dead_code,
        reason = "with parking_lot_core as the backend only the queue's unit tests use it"
    )
)]
mod queue;
#[cfg(loom)]
mod vcpu_model;
