//! Issue 9: the MCS per-thread "node in use" flag was a `Cell` in a lazily initialized
//! thread-local, which a signal handler on the same thread could race: it is now a
//! compiler-fenced atomic in a `const`-initialized thread-local. This test takes an
//! `McsMutex` inside a signal handler that interrupts threads in the middle of their own
//! contended MCS acquisitions of another lock (so the handler runs while the interrupted
//! thread's node is queued, and must wait node-less) and checks that both locks still
//! exclude and that nothing hangs.
//! (No test can force the compiler reordering the old flag allowed; this one checks the
//! behaviour the flag exists for.)
#![cfg(unix)]
#![allow(clippy::disallowed_types)] // std atomics for the test's own counters, outside the lock crate

use ecs_locks::McsMutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The lock the signal handler takes; other threads contend for it too.
static HANDLER_LOCK: McsMutex<u64> = McsMutex::new(0);
static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    *HANDLER_LOCK.lock() += 1;
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// SIGUSR1 blocked on this thread while it lives.
struct Blocked(libc::sigset_t);

impl Blocked {
    fn new() -> Self {
        // SAFETY: plain signal-mask calls on valid, initialized sets.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            Self(old)
        }
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

#[test]
fn mcs_in_a_signal_handler_during_an_mcs_wait() {
    // SAFETY: installs a handler for SIGUSR1 (unused by the test harness); `on_signal` only
    // takes a spin lock (no allocation: its thread-local is const-initialized) and bumps an
    // atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    static MAIN_LOCK: McsMutex<u64> = McsMutex::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    const ITERS: u64 = 20_000;
    // Workers go on past ITERS until some handler ran (a fast host can finish 20 000
    // iterations before the first signal lands), within a deadline; each returns its count.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let tx = tx.clone();
            thread::spawn(move || {
                // SAFETY: `pthread_self` has no preconditions.
                tx.send(unsafe { libc::pthread_self() } as usize).unwrap();
                let mut i = 0u64;
                while i < ITERS
                    || (HANDLED.load(Ordering::Relaxed) == 0 && Instant::now() < deadline)
                {
                    *MAIN_LOCK.lock() += 1;
                    if i.is_multiple_of(64) {
                        // The handler takes this lock too: hold it only with the signal
                        // blocked, or a handler on this thread would wait for itself.
                        let _blocked = Blocked::new();
                        *HANDLER_LOCK.lock() += 1;
                    }
                    i += 1;
                }
                i
            })
        })
        .collect();
    let ids: Vec<usize> = (0..3).map(|_| rx.recv().unwrap()).collect();
    // Signal the workers while they run, so handlers interrupt their MCS waits.
    let signaller = thread::spawn(move || {
        while !STOP.load(Ordering::Relaxed) {
            for &id in &ids {
                // SAFETY: `id` is a worker's pthread id; workers are joined only after this
                // thread stops (STOP), so the id stays valid. The handler is installed above.
                unsafe { libc::pthread_kill(id as libc::pthread_t, libc::SIGUSR1) };
            }
            thread::sleep(Duration::from_micros(300));
        }
    });
    // A finished but unjoined thread's id stays valid (signalling it is harmless), so the
    // workers are joined only after the signaller stopped.
    while !workers.iter().all(|w| w.is_finished()) {
        thread::sleep(Duration::from_millis(1));
    }
    STOP.store(true, Ordering::Relaxed);
    signaller.join().unwrap();
    let iters: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(*MAIN_LOCK.lock(), iters.iter().sum::<u64>());
    let handled = HANDLED.load(Ordering::Relaxed) as u64;
    assert!(handled > 0, "no signal was handled within the deadline");
    let by_workers: u64 = iters.iter().map(|i| i.div_ceil(64)).sum();
    assert_eq!(*HANDLER_LOCK.lock(), by_workers + handled);
}
