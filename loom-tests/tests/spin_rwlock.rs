//! Loom models of `RawSpinRwLock`: readers vs writers, upgrade, and downgrades.
#![cfg(loom)]

use ecs_locks::RawSpinRwLock;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// A pair the writer keeps equal; readers check it. Loom checks every access for races.
struct Guarded {
    raw: RawSpinRwLock,
    data: UnsafeCell<(u32, u32)>,
}

// SAFETY: `data` is written only under the write lock and read under any lock (loom checks).
unsafe impl Sync for Guarded {}

impl Guarded {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            raw: RawSpinRwLock::new(),
            data: UnsafeCell::new((0, 0)),
        })
    }

    /// # Safety
    /// The write lock is held.
    unsafe fn bump(&self) {
        // SAFETY: the caller holds the write lock.
        self.data.with_mut(|p| unsafe {
            (*p).0 += 1;
            (*p).1 += 1;
        });
    }

    /// # Safety
    /// Some lock is held.
    unsafe fn read(&self) -> u32 {
        // SAFETY: the caller holds a lock.
        let (a, b) = self.data.with(|p| unsafe { *p });
        assert_eq!(a, b, "a reader saw a half-done write");
        a
    }

    fn write(&self) {
        let w = self.raw.lock_exclusive();
        // SAFETY: write lock held; `w` is its state.
        unsafe {
            self.bump();
            self.raw.unlock_exclusive(w);
        }
    }

    fn read_once(&self) -> u32 {
        let r = self.raw.lock_shared();
        // SAFETY: read lock held; `r` is its state.
        unsafe {
            let v = self.read();
            self.raw.unlock_shared(r);
            v
        }
    }
}

#[test]
fn writer_and_reader() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || g2.write());
        let v = g.read_once();
        assert!(v <= 1);
        t.join().unwrap();
        // SAFETY: all other threads joined.
        assert_eq!(unsafe { g.read() }, 1);
        assert!(!g.raw.is_locked());
    });
}

#[test]
fn two_writers() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || g2.write());
        g.write();
        t.join().unwrap();
        // SAFETY: all other threads joined.
        assert_eq!(unsafe { g.read() }, 2);
    });
}

/// An upgradable reader upgrades while another thread reads (or tries to write): the upgrade
/// must wait for the reader to drain, and the write must not race the reader.
#[test]
fn upgrade_waits_for_readers() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || {
            g2.read_once();
        });
        let u = g.raw.lock_upgradable();
        // SAFETY: upgradable lock held; states belong to the acquisitions.
        unsafe {
            g.read();
            let w = g.raw.upgrade(u);
            g.bump();
            // Downgrade to a reader: no writer can get in between, and the data is ours.
            let r = g.raw.downgrade(w);
            assert_eq!(g.read(), 1);
            g.raw.unlock_shared(r);
        }
        t.join().unwrap();
        assert!(!g.raw.is_locked());
    });
}

/// Writer -> upgradable -> writer -> reader while another thread writes once.
#[test]
fn downgrade_paths_against_a_writer() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || g2.write());
        let w = g.raw.lock_exclusive();
        // SAFETY: states belong to the acquisitions; data accessed in the matching modes.
        unsafe {
            g.bump();
            let before = g.read();
            let u = g.raw.downgrade_to_upgradable(w);
            // Still excludes the other writer: the value cannot change.
            assert_eq!(g.read(), before);
            let r = match g.raw.try_upgrade(u) {
                Ok(w) => {
                    g.bump();
                    g.raw.downgrade(w)
                }
                Err(u) => g.raw.downgrade_upgradable(u),
            };
            g.read();
            g.raw.unlock_shared(r);
        }
        t.join().unwrap();
        // SAFETY: all other threads joined.
        let v = unsafe { g.read() };
        assert!(v == 2 || v == 3, "{v}");
        assert!(!g.raw.is_locked());
    });
}

/// Three flows at once: a writer, a non-blocking reader (`try_lock_shared`), and an
/// upgradable reader that upgrades. (A third *spinning* flow makes loom's yield-driven schedules
/// unbounded, so the reader only tries; two spinning flows are covered by the models above.)
#[test]
fn writer_try_reader_upgrader() {
    loom::model(|| {
        let g = Guarded::new();
        let gw = Arc::clone(&g);
        let gr = Arc::clone(&g);
        let tw = thread::spawn(move || gw.write());
        let tr = thread::spawn(move || {
            if let Some(r) = gr.raw.try_lock_shared() {
                // SAFETY: read lock held; `r` is its state.
                unsafe {
                    gr.read();
                    gr.raw.unlock_shared(r);
                }
            }
        });
        let u = g.raw.lock_upgradable();
        // SAFETY: states belong to the acquisitions; data accessed in the matching modes.
        unsafe {
            let w = g.raw.upgrade(u);
            g.bump();
            g.raw.unlock_exclusive(w);
        }
        tw.join().unwrap();
        tr.join().unwrap();
        // SAFETY: all other threads joined.
        assert_eq!(unsafe { g.read() }, 2);
        assert!(!g.raw.is_locked());
    });
}
