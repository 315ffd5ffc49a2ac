//! Reader-writer locks side by side on a read-mostly workload (1 write in 64 operations):
//! ecs-locks' blocking and spinning rwlocks against parking_lot, std and spin.
//!
//! Run: `cargo bench --bench rwlock` (results: docs/BENCHMARKS.md).
#![allow(missing_docs)]

mod common;

use common::{StdRwLock, config, read_mostly};
use criterion::{Criterion, criterion_group, criterion_main};

macro_rules! each_rwlock {
    ($f:ident($($arg:expr),*)) => {
        $f::<ecs_locks::RwLock<u64>>($($arg),*);
        $f::<ecs_locks::SpinRwLock<u64>>($($arg),*);
        $f::<parking_lot::RwLock<u64>>($($arg),*);
        $f::<StdRwLock>($($arg),*);
        $f::<spin::RwLock<u64>>($($arg),*);
    };
}

fn rwlocks(c: &mut Criterion) {
    each_rwlock!(read_mostly(c, "read-mostly-2-threads", 2, 64));
    each_rwlock!(read_mostly(c, "read-mostly-8-threads", 8, 64));
}

criterion_group! { name = benches; config = config(); targets = rwlocks }
criterion_main!(benches);
