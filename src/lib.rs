//! Enlightened locks for code that runs inside virtual machines.
//!
//! Work in progress: see the README for the plan.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[allow(dead_code)] // used by the lock modules as they land
mod backoff;
#[allow(dead_code)]
mod cs;
mod sync;

pub use ecs_sys;
pub use lock_api;

// RCU with enlightened readers (grace-period protocol in raw_rcu, cells in rcu).
#[cfg(any(feature = "std", feature = "guest"))]
mod raw_rcu;
pub mod rcu;
#[cfg(feature = "std")]
pub use rcu::Rcu;
#[cfg(any(feature = "std", feature = "guest"))]
pub use rcu::{RcuReadGuard, RcuRing};
