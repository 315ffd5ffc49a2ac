//! `TicketMutex` under 8 and 32 threads with take-over at its most frequent (`patience = 0`: a
//! waiter takes any free lock that is not its turn at once), the default, and strict FIFO: the
//! counter the lock protects must be exact, and every acquisition is reported once.

use ecs_locks::{RawTicketMutex, TicketOrder};
use std::sync::Barrier;
use std::thread;

const ITERS: u64 = 2_000;

/// Runs `threads` workers, each locking `ITERS` times (every third one through `try_lock`
/// retries); returns how many acquisitions were not in turn.
fn hammer(threads: u64, patience: u32) -> u64 {
    let m = lock_api::Mutex::from_raw(RawTicketMutex::with_patience(patience), 0u64);
    let start = Barrier::new(threads as usize);
    let out_of_turn: u64 = thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|id| {
                let (m, start) = (&m, &start);
                s.spawn(move || {
                    start.wait();
                    let mut out = 0;
                    for i in 0..ITERS {
                        if id % 3 == 2 {
                            let mut g = loop {
                                if let Some(g) = m.try_lock() {
                                    break g;
                                }
                                thread::yield_now();
                            };
                            *g += 1;
                            continue;
                        }
                        // SAFETY: only the raw lock is used, through its own protocol.
                        let (state, order) = unsafe { m.raw() }.lock_ordered();
                        // SAFETY: `state` is the state of the acquisition just made.
                        let mut g = unsafe { m.make_guard_unchecked(state) };
                        let before = *g;
                        if i % 64 == 0 {
                            thread::yield_now(); // let others pile up behind a held lock
                        }
                        *g = before + 1;
                        out += u64::from(order != TicketOrder::InTurn);
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(
        m.into_inner(),
        threads * ITERS,
        "lost update: exclusion broken"
    );
    out_of_turn
}

#[test]
fn eager_takeover_8_and_32_threads_exact() {
    for threads in [8, 32] {
        hammer(threads, 0);
    }
}

#[test]
fn default_patience_8_and_32_threads_exact() {
    for threads in [8, 32] {
        hammer(threads, RawTicketMutex::DEFAULT_PATIENCE);
    }
}

#[test]
fn strict_fifo_never_out_of_turn() {
    // Take-over cannot trigger: whatever the scheduler does, every acquisition is in turn.
    assert_eq!(hammer(8, u32::MAX), 0);
}
