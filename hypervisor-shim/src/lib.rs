//! The host side of eCS: a KVM VMM whose user-space vCPU scheduler consumes the guest's
//! critical-section hints, and the over-commit experiment of the eCS paper (USENIX ATC 2018).
//!
//! ```text
//! guest_image.rs the embedded guest program (built by build.rs from guest/)
//! config.rs     what a run is (vCPUs, pCPUs, lock, policy, slice, workload)
//! vm.rs         the KVM VM: memory, page tables, guest ELF, hint area, vCPUs at CPL 3
//! page.rs       the only (checked, atomic) ways the host touches guest memory
//! vcpu.rs       the vCPU thread: exits, and the scheduler's Kick as a signal
//! hypercall.rs  port write -> scheduler request or error status
//! sched/        N vCPUs on P pCPUs: states, run queue, hand-over, metrics, OS plumbing;
//!               policies baseline, ple, ecs (pure decisions)
//! run.rs        one run end to end, with its checks
//! rounds.rs     paired, shuffled rounds: the plan's shape, its execution with progress and
//!               ETA, the medians with intervals
//! compare.rs    one VM per run: groups with a ceiling, presets, summary
//! compare_vms.rs several VMs per run: groups of VMs, presets, per-VM summary, targets
//! host.rs       the host: cores, kernel, load averages, other processes' CPU time per round
//! stats.rs      median, its distribution-free interval, Jain's index, round orders
//! report.rs     tables and the charts' data
//! chart.rs      the SVG chart (plotters)
//! ```
//!
//! The binary `ecs-shim` is a thin command line over [`run::run`] and [`report`].
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod chart;
pub mod compare;
pub mod compare_vms;
pub mod config;
pub mod guest_image;
pub mod host;
pub mod hypercall;
pub mod page;
pub mod report;
pub mod rounds;
pub mod run;
pub mod sched;
pub mod stats;
pub mod vcpu;
pub mod vm;
pub mod workload;

pub use config::{PolicyKind, RunConfig};
pub use run::{RunError, RunReport, run};
