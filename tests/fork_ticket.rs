//! Issue 9, fork: a child forked while another thread waited for a `TicketMutex` (holding a
//! ticket) must still be able to take the lock once it is free. The waiter does not exist in the
//! child, so a strict ticket lock would hand the lock to its ticket for ever; take-over skips it.
//!
//! A `harness = false` binary: `fork` in a process running libtest's threads is hazardous, and the
//! scenario needs exact control of which threads exist. The child reports by exit status; the
//! parent kills it after a deadline, so a regression fails instead of hanging.
//!
//! Run: `cargo test -p ecs-locks --test fork_ticket`.

use ecs_locks::{RawTicketMutex, TicketMutex};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long the child may take (take-over needs microseconds).
const DEADLINE: Duration = Duration::from_secs(10);
/// How long the strict-FIFO control child is given before it counts as hung.
const CONTROL_DEADLINE: Duration = Duration::from_millis(500);

type Ticket = lock_api::Mutex<RawTicketMutex, u64>;

/// Holds `m` while a helper thread queues on it, forks, and returns the child's verdict:
/// `Ok(true)` if it could lock and exited 0, `Ok(false)` if it had to be killed.
fn fork_with_queued_waiter(m: Arc<Ticket>, deadline: Duration) -> Result<bool, String> {
    let g = m.lock();
    let m2 = Arc::clone(&m);
    let helper = thread::spawn(move || *m2.lock() += 1);
    // SAFETY: reading the raw lock only.
    let raw = unsafe { m.raw() };
    while raw.queue_len() < 2 {
        thread::yield_now();
    }
    // SAFETY: the child only uses async-signal-safe operations plus the lock's atomics (no
    // allocation, no locks of the runtime), then leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork failed: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // Child: only this thread exists; the helper's ticket is outstanding.
        // SAFETY: the guard `g` is this thread's acquisition (copied into the child); releasing
        // through the raw lock and forgetting the guard avoids running its drop twice.
        unsafe { raw.unlock(lock_api::GuardNoSend::new()) };
        let mut c = m.lock();
        *c += 10;
        let ok = *c == 10;
        drop(c);
        // SAFETY: `_exit` ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 2 }) };
    }
    drop(g);
    helper.join().map_err(|_| "helper panicked".to_string())?;
    let t0 = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ok(true)
            } else {
                Err(format!("child ended with status {status:#x}"))
            };
        }
        if r < 0 {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        if t0.elapsed() > deadline {
            // SAFETY: `pid` is our child, still running.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above; reaps it.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn main() -> ExitCode {
    let m: Arc<Ticket> = Arc::new(TicketMutex::new(0));
    match fork_with_queued_waiter(Arc::clone(&m), DEADLINE) {
        Ok(true) => {
            println!("fork_ticket: child took the lock past the vanished waiter's ticket: ok")
        }
        Ok(false) => {
            eprintln!(
                "fork_ticket: FAIL: the child hung for {DEADLINE:?} on a free lock (the queued \
                 waiter's ticket belongs to a thread that does not exist in the child)"
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("fork_ticket: FAIL: {e}");
            return ExitCode::FAILURE;
        }
    }
    assert_eq!(*m.lock(), 1, "the parent's helper ran once");
    // Strict FIFO (take-over disabled) is the classic ticket lock: its child must hang, which
    // shows the scenario really puts a dead ticket in the child's way (the test can fail).
    let strict = Arc::new(Ticket::from_raw(RawTicketMutex::with_patience(u32::MAX), 0));
    match fork_with_queued_waiter(Arc::clone(&strict), CONTROL_DEADLINE) {
        Ok(false) => println!("fork_ticket: control: the strict FIFO child hangs, as expected: ok"),
        Ok(true) => {
            eprintln!("fork_ticket: FAIL: control: the strict FIFO child took the lock");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("fork_ticket: FAIL: control: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
