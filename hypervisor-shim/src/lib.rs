//! The host side of eCS (being built; see issue 3).
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod guest_image;
pub mod workload;
