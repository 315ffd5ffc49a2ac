//! Lock + unlock one uncontended lock N times: a deterministic companion to the criterion
//! benchmarks, for counting instructions instead of timing on a noisy machine.
//!
//! ```text
//! cargo build --release --example lock_unlock_loop
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/lock_unlock_loop ecs-mutex 1000000
//! ```
//! The difference between the totals for N = 1,000,000 and N = 0, divided by N, is the
//! instructions per lock+unlock pair (docs/BENCHMARKS.md records them). Without arguments it
//! runs every lock a little, so `scripts/test-all.sh` keeps it compiling and working.

use std::hint::black_box;

fn run<L>(n: u64, new: impl Fn() -> L, op: impl Fn(&L)) {
    let lock = black_box(new());
    for _ in 0..n {
        op(black_box(&lock));
    }
}

fn by_name(name: &str, n: u64) -> bool {
    match name {
        "ecs-mutex" => run(n, || ecs_locks::Mutex::new(0u64), |l| *l.lock() += 1),
        "ecs-spin" => run(n, || ecs_locks::SpinMutex::new(0u64), |l| *l.lock() += 1),
        "ecs-ticket" => run(n, || ecs_locks::TicketMutex::new(0u64), |l| *l.lock() += 1),
        "ecs-mcs" => run(n, || ecs_locks::McsMutex::new(0u64), |l| *l.lock() += 1),
        "ecs-rwlock-read" => run(
            n,
            || ecs_locks::RwLock::new(0u64),
            |l| {
                black_box(*l.read());
            },
        ),
        "ecs-rcu-read" => run(
            n,
            || ecs_locks::Rcu::new(0u64),
            |l| {
                black_box(*l.read());
            },
        ),
        "parking_lot-mutex" => run(n, || parking_lot::Mutex::new(0u64), |l| *l.lock() += 1),
        "parking_lot-rwlock-read" => run(
            n,
            || parking_lot::RwLock::new(0u64),
            |l| {
                black_box(*l.read());
            },
        ),
        "std-mutex" => run(
            n,
            || std::sync::Mutex::new(0u64),
            |l| *l.lock().unwrap() += 1,
        ),
        "spin-mutex" => run(n, || spin::Mutex::new(0u64), |l| *l.lock() += 1),
        _ => return false,
    }
    true
}

const ALL: [&str; 10] = [
    "ecs-mutex",
    "ecs-spin",
    "ecs-ticket",
    "ecs-mcs",
    "ecs-rwlock-read",
    "ecs-rcu-read",
    "parking_lot-mutex",
    "parking_lot-rwlock-read",
    "std-mutex",
    "spin-mutex",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            for name in ALL {
                assert!(by_name(name, 10_000));
            }
            println!(
                "lock_unlock_loop: {} locks x 10000 lock+unlock pairs ok",
                ALL.len()
            );
        }
        [name, n] => {
            let Ok(n) = n.parse() else {
                eprintln!("lock_unlock_loop: N must be a whole number, got {n:?}");
                std::process::exit(2);
            };
            if !by_name(name, n) {
                eprintln!(
                    "lock_unlock_loop: unknown lock {name:?}; one of: {}",
                    ALL.join(", ")
                );
                std::process::exit(2);
            }
        }
        _ => {
            eprintln!(
                "usage: lock_unlock_loop [LOCK N]; LOCK one of: {}",
                ALL.join(", ")
            );
            std::process::exit(2);
        }
    }
}
