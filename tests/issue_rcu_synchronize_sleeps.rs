//! Issue 9: `Rcu::synchronize` only spun and yielded while a reader's section lasted, burning
//! a CPU for the whole wait. It now sleeps after a bounded spin, woken by the reader's
//! outermost unlock (or a short timeout).
#![cfg(unix)]

use ecs_locks::rcu;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID is always available on
    // Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn a_writer_waiting_for_a_long_section_sleeps() {
    const HOLD: Duration = Duration::from_millis(400);
    let entered = Arc::new(Barrier::new(2));
    let e2 = Arc::clone(&entered);
    let reader = thread::spawn(move || {
        let section = rcu::read_lock();
        e2.wait();
        thread::sleep(HOLD);
        drop(section);
    });
    entered.wait();
    let (cpu0, t0) = (thread_cpu_time(), Instant::now());
    rcu::synchronize();
    let (cpu, wall) = (thread_cpu_time() - cpu0, t0.elapsed());
    reader.join().unwrap();
    assert!(
        wall >= HOLD / 2,
        "the grace period waited for the section ({wall:?})"
    );
    assert!(
        cpu < wall / 4,
        "the writer used {cpu:?} of CPU while waiting {wall:?}: it did not sleep"
    );
    assert!(
        wall < HOLD + Duration::from_secs(2),
        "woken promptly after the section ended ({wall:?})"
    );
}
