//! Mutexes side by side in one run: every ecs-locks mutex against parking_lot, std and spin.
//!
//! Scenarios (DESIGN.md "What fast means here"): uncontended lock+unlock; 2 threads contended
//! (this machine has 2 cores); 8 threads on 2 cores (oversubscribed: holders get preempted by
//! the OS, which is what a VM's vCPUs suffer from the host).
//!
//! Run: `cargo bench --bench mutex` (results and ratios: docs/BENCHMARKS.md).
#![allow(missing_docs)]

mod common;

use common::{StdMutex, config, contended, uncontended};
use criterion::{Criterion, criterion_group, criterion_main};

/// `TicketMutex` with take-over disabled (`patience = u32::MAX`): the classic strict FIFO ticket
/// lock, i.e. the ticket lock before issue 9, so one run shows what take-over changes.
struct StrictTicket(ecs_locks::TicketMutex<u64>);

impl common::BenchLock for StrictTicket {
    const NAME: &'static str = "ecs::TicketMutex(strict)";
    fn new(v: u64) -> Self {
        Self(ecs_locks::TicketMutex::from_raw(
            ecs_locks::RawTicketMutex::with_patience(u32::MAX),
            v,
        ))
    }
    fn with<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R {
        f(&mut self.0.lock())
    }
}

/// Every mutex, in the same order in every group.
macro_rules! each_mutex {
    ($f:ident($($arg:expr),*)) => {
        $f::<ecs_locks::Mutex<u64>>($($arg),*);
        $f::<ecs_locks::FairMutex<u64>>($($arg),*);
        $f::<ecs_locks::SpinMutex<u64>>($($arg),*);
        $f::<ecs_locks::TicketMutex<u64>>($($arg),*);
        $f::<StrictTicket>($($arg),*);
        $f::<ecs_locks::McsMutex<u64>>($($arg),*);
        $f::<parking_lot::Mutex<u64>>($($arg),*);
        $f::<StdMutex>($($arg),*);
        $f::<spin::Mutex<u64>>($($arg),*);
    };
}

fn mutexes(c: &mut Criterion) {
    each_mutex!(uncontended(c, "uncontended"));
    each_mutex!(contended(c, "contended-2-threads", 2));
    each_mutex!(contended(c, "oversubscribed-8-threads", 8));
}

criterion_group! { name = benches; config = config(); targets = mutexes }
criterion_main!(benches);
