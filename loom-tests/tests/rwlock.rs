//! Loom models of the blocking `RawRwLock`: reader/writer exclusion, the pending writer's
//! wake-up on the secondary queue, and upgrade/downgrade paths; and of its recursive mode
//! (`RawRwLockRecursive`): a second read by a reader never deadlocks behind a waiting writer.
#![cfg(loom)]

use ecs_locks::RawRwLock;
use lock_api::{
    RawRwLock as _, RawRwLockDowngrade as _, RawRwLockUpgrade as _, RawRwLockUpgradeDowngrade as _,
};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

struct Guarded<const RECURSIVE: bool = false> {
    raw: RawRwLock<RECURSIVE>,
    /// Two fields a writer keeps equal; readers check it.
    data: UnsafeCell<(u32, u32)>,
}

// SAFETY: `data` is written only under the exclusive lock and read under a shared lock.
unsafe impl<const RECURSIVE: bool> Sync for Guarded<RECURSIVE> {}

fn new() -> Arc<Guarded> {
    Arc::new(Guarded {
        raw: RawRwLock::new(),
        data: UnsafeCell::new((0, 0)),
    })
}

/// A recursive lock beside its data.
fn new_recursive() -> Arc<Guarded<true>> {
    Arc::new(Guarded {
        raw: RawRwLock::new_recursive(),
        data: UnsafeCell::new((0, 0)),
    })
}

impl<const RECURSIVE: bool> Guarded<RECURSIVE> {
    fn write(&self) {
        let g = self.raw.lock_exclusive();
        // SAFETY: exclusive lock held.
        self.data.with_mut(|p| unsafe {
            (*p).0 += 1;
            (*p).1 += 1;
        });
        // SAFETY: `g` is this acquisition's state.
        unsafe { self.raw.unlock_exclusive(g) };
    }

    fn read(&self) -> u32 {
        let g = self.raw.lock_shared();
        // SAFETY: shared lock held; writers are excluded.
        let v = self.data.with(|p| unsafe {
            assert_eq!((*p).0, (*p).1, "torn read");
            (*p).0
        });
        // SAFETY: `g` is this acquisition's state.
        unsafe { self.raw.unlock_shared(g) };
        v
    }
}

/// A writer and a reader: exclusion, and the writer that took WRITER_BIT while the reader
/// held the lock parks on the secondary key and must be woken by the last reader.
#[test]
fn writer_and_reader() {
    loom::model(|| {
        let g = new();
        let g2 = g.clone();
        let t = thread::spawn(move || g2.write());
        let v = g.read();
        assert!(v <= 1);
        t.join().unwrap();
        assert_eq!(g.read(), 1);
        assert!(!g.raw.is_locked());
    });
}

/// Two writers: exclusion and wake-up through the primary queue.
#[test]
fn two_writers() {
    loom::model(|| {
        let g = new();
        let g2 = g.clone();
        let t = thread::spawn(move || g2.write());
        g.write();
        t.join().unwrap();
        assert_eq!(g.read(), 2);
    });
}

/// An upgradable reader upgrades while a plain reader may hold the lock, writes, downgrades
/// to a reader; the other thread reads. No torn read, no lost wake-up.
#[test]
fn upgrade_then_downgrade() {
    loom::model(|| {
        let g = new();
        let g2 = g.clone();
        let t = thread::spawn(move || {
            let u = g2.raw.lock_upgradable();
            // SAFETY: `u` is this acquisition's state.
            let w = unsafe { g2.raw.upgrade(u) };
            // SAFETY: exclusive lock held.
            g2.data.with_mut(|p| unsafe {
                (*p).0 += 1;
                (*p).1 += 1;
            });
            // SAFETY: `w` is the upgraded state.
            let r = unsafe { g2.raw.downgrade(w) };
            // SAFETY: shared lock held.
            g2.data.with(|p| unsafe { assert_eq!(*p, (1, 1)) });
            // SAFETY: `r` is the downgraded state.
            unsafe { g2.raw.unlock_shared(r) };
        });
        g.read();
        t.join().unwrap();
        assert_eq!(g.read(), 1);
    });
}

/// Writer downgrades to upgradable, then to shared, while another thread wants the
/// upgradable lock: each downgrade wakes whoever can now proceed.
#[test]
fn downgrade_to_upgradable_wakes_upgrader() {
    loom::model(|| {
        let g = new();
        let w = g.raw.lock_exclusive();
        let g2 = g.clone();
        let t = thread::spawn(move || {
            let u = g2.raw.lock_upgradable();
            // SAFETY: upgradable (shared) lock held.
            let v = g2.data.with(|p| unsafe { *p });
            // SAFETY: `u` is this acquisition's state.
            unsafe { g2.raw.unlock_upgradable(u) };
            v
        });
        // SAFETY: exclusive lock held.
        g.data.with_mut(|p| unsafe { *p = (7, 7) });
        // SAFETY: `w` is the exclusive state.
        let u = unsafe { g.raw.downgrade_to_upgradable(w) };
        // SAFETY: `u` is the upgradable state.
        let r = unsafe { g.raw.downgrade_upgradable(u) };
        // SAFETY: `r` is the shared state.
        unsafe { g.raw.unlock_shared(r) };
        assert_eq!(t.join().unwrap(), (7, 7));
    });
}

/// Two readers and a writer: the writer takes WRITER_BIT while readers hold the lock, parks on
/// the secondary key until the last of them leaves; readers arriving after it queue behind it.
#[test]
fn two_readers_one_writer() {
    loom::model(|| {
        let g = new();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                thread::spawn(move || g.read())
            })
            .collect();
        g.write();
        for t in ts {
            assert!(t.join().unwrap() <= 1);
        }
        assert_eq!(g.read(), 1);
    });
}

/// A timed writer (times out at once under loom) that took WRITER_BIT while a reader held the
/// lock must roll it back and wake the reader that parked behind it: no thread is left parked.
#[test]
fn timed_writer_rolls_back_and_wakes_readers() {
    use lock_api::RawRwLockTimed as _;
    loom::model(|| {
        let g = new();
        let r = g.raw.lock_shared();
        let g2 = g.clone();
        let writer = thread::spawn(move || {
            if let Some(w) = g2
                .raw
                .try_lock_exclusive_for(std::time::Duration::from_millis(1))
            {
                // SAFETY: `w` is this acquisition's state.
                unsafe { g2.raw.unlock_exclusive(w) };
                true
            } else {
                false
            }
        });
        let g3 = g.clone();
        let reader = thread::spawn(move || g3.read());
        // SAFETY: `r` is the shared state taken above.
        unsafe { g.raw.unlock_shared(r) };
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), 0);
        assert!(!g.raw.is_locked());
    });
}

/// Recursive mode: a reader takes the lock a second time while a writer may be waiting (it
/// took WRITER_BIT and waits for readers). The second read must never block (loom reports a
/// deadlock if every thread ends up waiting), and the writer still excludes both reads.
#[test]
fn recursive_second_read_with_waiting_writer() {
    loom::model(|| {
        let g = new_recursive();
        let first = g.raw.lock_shared();
        let g2 = g.clone();
        let writer = thread::spawn(move || g2.write());
        // The second read, while the first is held: with the default mode this deadlocks in
        // the interleavings where the writer already waits.
        let v = g.read();
        assert_eq!(
            v, 0,
            "the writer cannot have written while we hold the first read"
        );
        // SAFETY: `first` is the shared state taken above.
        unsafe { g.raw.unlock_shared(first) };
        writer.join().unwrap();
        assert_eq!(g.read(), 1);
        assert!(!g.raw.is_locked());
    });
}

/// Recursive mode, two readers and a writer: exclusion (no torn read) and the writer is woken.
#[test]
fn recursive_two_readers_one_writer() {
    loom::model(|| {
        let g = new_recursive();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                thread::spawn(move || g.read())
            })
            .collect();
        g.write();
        for t in ts {
            assert!(t.join().unwrap() <= 1);
        }
        assert_eq!(g.read(), 1);
        assert!(!g.raw.is_locked());
    });
}
