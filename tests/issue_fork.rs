//! Issue 9: locks across `fork()`. In the child only the forking thread exists; before the
//! fix, a child could hang on a *free* `McsMutex` (its queue still held the node of a parent
//! thread that was waiting at the time of the fork) and every RCU grace period waited for the
//! read-side section of a parent thread that no longer exists.
//!
//! A `harness = false` binary: the libtest harness runs tests on threads, and a fork must
//! happen where the test controls every thread. Each case forks a child that runs the
//! scenario and exits 0; the parent waits for it with a deadline.
#![allow(clippy::disallowed_types)] // std atomics for the test's own flag, outside the lock crate

#[cfg(unix)]
use ecs_locks::{McsMutex, Rcu};
#[cfg(unix)]
use std::sync::Arc;
#[cfg(unix)]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(unix)]
use std::thread;
#[cfg(unix)]
use std::time::{Duration, Instant};

/// Child-side deadline: a hang fails the case instead of the whole run.
/// Generous: the machine may be loaded, and the case's parent-side waiter keeps spinning.
#[cfg(unix)]
const DEADLINE: Duration = Duration::from_secs(60);

#[cfg(not(unix))]
fn main() {
    println!("issue_fork: skipped, no fork() on this platform");
}

#[cfg(unix)]
fn main() {
    let mut failed = 0;
    for (name, case) in [
        (
            "mcs_free_lock_with_a_dead_waiter_in_its_queue",
            mcs_case as fn(),
        ),
        ("mcs_dead_waiter_after_64_nested_forks", mcs_nested_case),
        ("rcu_grace_period_with_a_dead_reader", rcu_case),
    ] {
        match run_forked(case) {
            Ok(()) => println!("test {name} ... ok"),
            Err(why) => {
                println!("test {name} ... FAILED: {why}");
                failed += 1;
            }
        }
    }
    if failed != 0 {
        std::process::exit(1);
    }
}

/// Sets up parent state with `case`'s first half, forks, and runs the rest in the child;
/// `case` calls `in_child` itself (see the cases).
#[cfg(unix)]
fn run_forked(case: fn()) -> Result<(), String> {
    // The case runs in a helper process of its own, so its parent-side threads (blocked for
    // good in the state the fork must cope with) do not outlive the case.
    // SAFETY: no other thread exists in this process at this point.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            case();
            // SAFETY: `_exit` is async-signal-safe and ends this helper process.
            unsafe { libc::_exit(0) }
        }
        pid => wait_for(pid, DEADLINE * 2),
    }
}

/// Forks from the case's helper process: the child runs `child` and exits 0 (a panic exits
/// non-zero); the helper waits for it and exits with its result.
#[cfg(unix)]
fn in_child(child: impl FnOnce()) -> ! {
    // SAFETY: the forking thread only calls async-signal-safe code in the child until `child`
    // runs; `child` uses the locks, which is what is under test.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => {
            eprintln!("fork: {}", std::io::Error::last_os_error());
            // SAFETY: ends the helper.
            unsafe { libc::_exit(2) }
        }
        0 => {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child));
            // SAFETY: ends the child without running the parent's atexit state.
            unsafe { libc::_exit(if r.is_ok() { 0 } else { 3 }) }
        }
        pid => {
            let code = match wait_for(pid, DEADLINE) {
                Ok(()) => 0,
                Err(why) => {
                    eprintln!("{why}");
                    1
                }
            };
            // SAFETY: ends the helper (its blocked threads with it).
            unsafe { libc::_exit(code) }
        }
    }
}

/// Waits for `pid` to exit 0 within `limit`; kills it on the deadline.
#[cfg(unix)]
fn wait_for(pid: libc::pid_t, limit: Duration) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ok(())
            } else {
                Err(format!("child ended with status {status:#x}"))
            };
        }
        if r == -1 {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        if t0.elapsed() > limit {
            // SAFETY: `pid` is our child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: reaps it.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return Err(format!("child hung for {limit:?} (killed)"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A thread waits in the MCS queue while this thread holds the lock, and this thread forks.
/// In the child the lock is released (the forking thread held it) and taken again; a new thread
/// that then finds it held queues, and finds the dead waiter's node as its predecessor.
#[cfg(unix)]
fn mcs_case() {
    let m = Arc::new(McsMutex::new(0u64));
    std::mem::forget(m.lock()); // released in the child (this thread holds it)
    let m2 = Arc::clone(&m);
    thread::spawn(move || *m2.lock() += 1); // queues, and stays queued in the child
    // SAFETY: only reads the raw lock's queue state.
    while !unsafe { m.raw() }.has_waiters() {
        thread::yield_now();
    }
    in_child(move || mcs_child(&m))
}

/// The child side of the MCS cases: release the lock the forking thread held, take it again,
/// make a new thread queue behind the dead waiter's node, and check the queue keeps working.
#[cfg(unix)]
fn mcs_child(m: &Arc<McsMutex<u64>>) {
    // SAFETY: the forking thread (this one) took the lock before the fork and forgot its guard.
    unsafe { m.force_unlock(ecs_locks::lock_api::GuardNoSend::new()) };
    let g = m.lock(); // free: the fast path
    let m2 = Arc::clone(m);
    let queued = thread::spawn(move || *m2.lock() += 1); // held: it queues
    // SAFETY: only reads the raw lock's queue state.
    while !unsafe { m.raw() }.has_waiters() {
        thread::yield_now();
    }
    thread::sleep(Duration::from_millis(20)); // let it reach its predecessor
    drop(g);
    queued.join().unwrap();
    assert_eq!(*m.lock(), 1);
    // And the queue keeps working under contention.
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = Arc::clone(m);
            thread::spawn(move || {
                for _ in 0..5_000 {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), 10_001);
}

/// Nested forks (review finding, issue 9): `mcs_case`'s child scenario, but run 64 fork
/// generations below the parent whose thread left its node queued. The generation tag was kept
/// modulo 64, so there the dead node's tag read as current again and the child hung behind it.
#[cfg(unix)]
fn mcs_nested_case() {
    let m = Arc::new(McsMutex::new(0u64));
    std::mem::forget(m.lock());
    let m2 = Arc::clone(&m);
    thread::spawn(move || *m2.lock() += 1);
    // SAFETY: only reads the raw lock's queue state.
    while !unsafe { m.raw() }.has_waiters() {
        thread::yield_now();
    }
    in_nested_child(64, move || mcs_child(&m))
}

/// Runs `child` `depth` fork generations below this process (each generation forks the next
/// and waits for it).
#[cfg(unix)]
fn in_nested_child(depth: u32, child: impl FnOnce()) -> ! {
    if depth <= 1 {
        in_child(child)
    } else {
        in_child(move || {
            in_nested_child(depth - 1, child);
        })
    }
}

/// A thread sits in an RCU read-side section when this thread forks; in the child a grace
/// period must not wait for it.
#[cfg(unix)]
fn rcu_case() {
    let cell = Arc::new(Rcu::new(1u64));
    let entered = Arc::new(AtomicBool::new(false));
    let (c2, e2) = (Arc::clone(&cell), Arc::clone(&entered));
    thread::spawn(move || {
        let _section = c2.read();
        e2.store(true, Ordering::Release);
        // The section stays open for good. Parked rather than blocked on a channel or a
        // barrier: the child must not find a lock of theirs held by this thread.
        loop {
            thread::park();
        }
    });
    while !entered.load(Ordering::Acquire) {
        thread::yield_now();
    }
    in_child(move || {
        assert_eq!(cell.update(|v| v + 1), 1, "update waits for a grace period");
        ecs_locks::rcu::synchronize();
        assert_eq!(*cell.read(), 2);
    })
}
