//! The condvar workload ([`LockKind::Condvar`](crate::workload::LockKind::Condvar)): the
//! participating vCPUs take turns in a ring (with two, a ping-pong). A vCPU waits on the condvar
//! until it is its turn, does the write operation on the shared record under the mutex, passes
//! the turn on and notifies. Every operation therefore wakes a blocked waiter: the workload
//! measures the blocked-waiter wake-up path (halt, kick, resume) that short critical sections
//! never reach.
//!
//! When a vCPU leaves (the run is over), it closes the ring and wakes everyone: a waiter that
//! wakes on a closed ring does its operation without waiting for its turn (the counts stay
//! exact), then sees `stop` and leaves too.

use crate::Config;
use crate::run::{Grace, Shared, Workload, write_op};
use core::sync::atomic::{AtomicU32, Ordering};

/// The ring's state, under the mutex.
#[derive(Debug)]
pub(crate) struct Turns {
    shared: Shared,
    /// Whose turn it is.
    next: u32,
    /// A vCPU has left: nobody waits any more.
    closed: bool,
}

/// The ring: the state, the condvar, and the participants `first..end` (set by
/// [`Ring::configure`] before any vCPU runs the workload).
#[derive(Debug)]
pub(crate) struct Ring {
    state: ecs_locks::Mutex<Turns>,
    turn: ecs_locks::Condvar,
    first: AtomicU32,
    end: AtomicU32,
}

/// The one ring, in `.bss` like the other kinds' locks.
pub(crate) static RING: Ring = Ring {
    state: ecs_locks::Mutex::new(Turns {
        shared: Shared::ZERO,
        next: 0,
        closed: false,
    }),
    turn: ecs_locks::Condvar::new(),
    first: AtomicU32::new(0),
    end: AtomicU32::new(0),
};

impl Ring {
    /// Sets the participants from `cfg` (every vCPU calls it with the same values, before its
    /// first turn; the first turn is the first participant's).
    pub(crate) fn configure(&self, cfg: &Config) {
        let first = cfg.nr_vcpus - cfg.participants();
        self.first.store(first, Ordering::Relaxed);
        self.end.store(cfg.nr_vcpus, Ordering::Relaxed);
        let mut t = self.state.lock();
        if t.shared.total().0 == 0 && t.next < first {
            t.next = first;
        }
    }

    fn after(&self, me: u32) -> u32 {
        let (first, end) = (
            self.first.load(Ordering::Relaxed),
            self.end.load(Ordering::Relaxed),
        );
        if me + 1 >= end { first } else { me + 1 }
    }
}

impl Workload for Ring {
    const HAS_READS: bool = false;

    fn write(&self, me: u32, cs_iters: u32, acc: u64, _: &mut Grace) -> (bool, u64) {
        let mut t = self.state.lock();
        while t.next != me && !t.closed {
            self.turn.wait(&mut t);
        }
        let r = write_op(&mut t.shared, me, cs_iters, acc);
        t.next = self.after(me);
        drop(t);
        self.turn.notify_all();
        r
    }

    fn read(&self, _: u32, _: u64) -> (bool, u64) {
        unreachable!("the condvar ring has no reads (HAS_READS is false)")
    }

    fn total(&self) -> (u64, bool) {
        self.state.lock().shared.total()
    }

    fn leave(&self) {
        self.state.lock().closed = true;
        self.turn.notify_all();
    }
}
