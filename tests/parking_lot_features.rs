//! parking_lot 0.13's Cargo features on ecs_locks: `arc_lock`, `send_guard`, `serde` and
//! `deadlock_detection`, each tested when enabled (`cargo test -p ecs-locks --all-features
//! --test parking_lot_features`; scripts/test-all.sh runs the workspace with all features).
//! Without a feature its tests compile out and the file checks nothing.

#[cfg(feature = "arc_lock")]
mod arc_lock {
    use ecs_locks::{
        ArcMutexGuard, ArcReentrantMutexGuard, ArcRwLockReadGuard, ArcRwLockUpgradableReadGuard,
        ArcRwLockWriteGuard, Mutex, RawMutex, RawRwLock, RawThreadId, ReentrantMutex, RwLock,
    };
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn arc_guards_own_their_lock() {
        let m = Arc::new(Mutex::new(0));
        let g: ArcMutexGuard<RawMutex, i32> = m.lock_arc();
        // The guard keeps the lock alive and can leave the scope that created it.
        let h = {
            let m2 = Arc::clone(&m);
            thread::spawn(move || *m2.lock() += 1)
        };
        drop(g);
        h.join().unwrap();
        assert_eq!(*m.lock(), 1);

        let l = Arc::new(RwLock::new(5));
        let r: ArcRwLockReadGuard<RawRwLock, i32> = l.read_arc();
        assert!(l.try_write().is_none());
        drop(r);
        let u: ArcRwLockUpgradableReadGuard<RawRwLock, i32> = l.upgradable_read_arc();
        let mut w: ArcRwLockWriteGuard<RawRwLock, i32> = ArcRwLockUpgradableReadGuard::upgrade(u);
        *w += 1;
        drop(w);
        assert_eq!(*l.read(), 6);

        let re = Arc::new(ReentrantMutex::new(3));
        let a: ArcReentrantMutexGuard<RawMutex, RawThreadId, i32> = re.lock_arc();
        let b = re.lock_arc();
        assert_eq!(*a + *b, 6);
    }
}

#[cfg(feature = "send_guard")]
mod send_guard {
    use ecs_locks::*;
    use std::thread;

    fn assert_send<T: Send>() {}

    /// Exactly parking_lot's list (its `test_send_guards`).
    #[test]
    fn parking_lot_named_guards_are_send() {
        assert_send::<MutexGuard<'static, ()>>();
        assert_send::<MappedMutexGuard<'static, ()>>();
        assert_send::<FairMutexGuard<'static, ()>>();
        assert_send::<MappedFairMutexGuard<'static, ()>>();
        assert_send::<RwLockReadGuard<'static, ()>>();
        assert_send::<RwLockWriteGuard<'static, ()>>();
        assert_send::<RwLockUpgradableReadGuard<'static, ()>>();
        assert_send::<MappedRwLockReadGuard<'static, ()>>();
        assert_send::<MappedRwLockWriteGuard<'static, ()>>();
        assert_send::<RecursiveRwLockReadGuard<'static, ()>>();
        assert_send::<RecursiveRwLockWriteGuard<'static, ()>>();
        assert_send::<RecursiveRwLockUpgradableReadGuard<'static, ()>>();
        assert_send::<MappedRecursiveRwLockReadGuard<'static, ()>>();
        assert_send::<MappedRecursiveRwLockWriteGuard<'static, ()>>();
    }

    /// The specified effect on hints of a guard released on another thread: the blocking
    /// locks raise no section mark under `send_guard`, so neither thread's critical-section
    /// depth (the hint the host reads) moves, on acquisition or on the foreign release; the
    /// lock itself is released normally. (Natively the blocking mark is a no-op anyway; in a
    /// guest it is a per-vCPU counter that a foreign release would have decremented.)
    #[test]
    fn guard_dropped_on_another_thread_leaves_both_threads_hints_alone() {
        let m = Mutex::new(0u32);
        let l = RwLock::new(0u32);
        let before = ecs_sys::cs_depth();
        let mut g = m.lock();
        let w = l.write();
        assert_eq!(
            ecs_sys::cs_depth(),
            before,
            "a blocking lock raises no section mark"
        );
        *g += 1;
        let blocking_before = ecs_sys::counted_blocking_depth();
        let moved = thread::scope(|s| {
            s.spawn(move || {
                let d = ecs_sys::cs_depth();
                let b = ecs_sys::counted_blocking_depth();
                drop(g);
                drop(w);
                let blocking = ecs_sys::counted_blocking_depth();
                (ecs_sys::cs_depth() - d, b.zip(blocking).map(|(b, a)| a - b))
            })
            .join()
            .unwrap()
        });
        assert_eq!(moved.0, 0, "the releasing thread's depth did not move");
        // The blocking mark itself: a no-op natively, so only a build with
        // `--cfg ecs_count_hints` (scripts/test-all.sh) sees it. Without `send_guard` the
        // foreign release would read -1 here and the acquiring thread +2.
        if let Some(released) = moved.1 {
            assert_eq!(
                released, 0,
                "the releasing thread's blocking mark did not move"
            );
            assert_eq!(
                ecs_sys::counted_blocking_depth(),
                blocking_before,
                "the acquiring thread's blocking mark did not move"
            );
        } else {
            super::not_counted();
        }
        assert_eq!(
            ecs_sys::cs_depth(),
            before,
            "the acquiring thread's depth did not move"
        );
        assert!(
            !m.is_locked() && !l.is_locked(),
            "released on the other thread"
        );
        assert_eq!(*m.lock(), 1);
        // The spinning family keeps `!Send` guards: its holder *is* the thread's section.
        let s = SpinMutex::new(());
        let sg = s.lock();
        assert_eq!(ecs_sys::cs_depth(), before + 1);
        drop(sg);
    }
}

/// Says that this build does not count blocking marks; fails where the test script asked for
/// a build that does (`ECS_EXPECT_COUNTED_HINTS=1`, scripts/test-all.sh).
fn not_counted() {
    assert!(
        std::env::var_os("ECS_EXPECT_COUNTED_HINTS").is_none(),
        "ECS_EXPECT_COUNTED_HINTS is set but this build does not count blocking marks: build with RUSTFLAGS=\"--cfg ecs_count_hints\""
    );
    println!("blocking marks not counted in this build (--cfg ecs_count_hints)");
}

/// The counterpart of the `send_guard` test above, in a build without the feature: the
/// blocking locks raise their mark on the acquiring thread and lower it on release, which is
/// what a guard released on another thread would unbalance (and why `send_guard` turns the mark
/// off). Needs `--cfg ecs_count_hints` to see the mark (scripts/test-all.sh).
#[cfg(not(feature = "send_guard"))]
#[test]
fn blocking_locks_mark_their_sections() {
    let Some(before) = ecs_sys::counted_blocking_depth() else {
        not_counted();
        return;
    };
    let m = ecs_locks::Mutex::new(0u32);
    let l = ecs_locks::RwLock::new(0u32);
    let g = m.lock();
    assert_eq!(ecs_sys::counted_blocking_depth(), Some(before + 1));
    let r = l.read();
    assert_eq!(ecs_sys::counted_blocking_depth(), Some(before + 2));
    drop(r);
    drop(g);
    assert_eq!(ecs_sys::counted_blocking_depth(), Some(before));
}

#[cfg(feature = "serde")]
mod serde {
    use ecs_locks::{FairMutex, Mutex, ReentrantMutex, RwLock, SpinMutex, TicketMutex};

    #[test]
    fn locks_serialize_as_their_data() {
        let m = Mutex::new(vec![1, 2]);
        assert_eq!(serde_json::to_string(&m).unwrap(), "[1,2]");
        let back: Mutex<Vec<u32>> = serde_json::from_str("[3,4]").unwrap();
        assert_eq!(*back.lock(), [3, 4]);
        let rw: RwLock<u8> = serde_json::from_str("7").unwrap();
        assert_eq!(serde_json::to_string(&rw).unwrap(), "7");
        let f: FairMutex<bool> = serde_json::from_str("true").unwrap();
        assert!(*f.lock());
        let r: ReentrantMutex<i8> = serde_json::from_str("-1").unwrap();
        assert_eq!(*r.lock(), -1);
        // lock_api's impls cover the spinning family too.
        assert_eq!(serde_json::to_string(&SpinMutex::new(1)).unwrap(), "1");
        assert_eq!(
            serde_json::to_string(&TicketMutex::new("x")).unwrap(),
            "\"x\""
        );
        assert!(
            serde_json::from_str::<Mutex<u8>>("300").is_err(),
            "bad input is an error"
        );
    }
}

#[cfg(all(feature = "deadlock_detection", not(ecs_portable_park)))]
mod deadlock_detection {
    use ecs_locks::{Condvar, Mutex, RwLock, deadlock};
    use std::sync::{Arc, Barrier};
    use std::thread;
    use std::time::{Duration, Instant};

    /// Polls `check_deadlock` until it reports something (the threads need time to park).
    fn wait_for_report() -> Vec<usize> {
        let t0 = Instant::now();
        loop {
            let found = deadlock::check_deadlock();
            if !found.is_empty() {
                return found.iter().map(Vec::len).collect();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no deadlock reported"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Both deadlock shapes in one test: the detector's state is process-global, and a
    /// report leaves its threads blocked for ever, so the cases run one after the other.
    #[test]
    fn mutex_and_rwlock_cycles_are_reported() {
        assert!(
            deadlock::check_deadlock().is_empty(),
            "nothing deadlocked yet"
        );

        // Two threads, two mutexes, taken in opposite orders.
        let a = Arc::new(Mutex::new(()));
        let b = Arc::new(Mutex::new(()));
        let barrier = Arc::new(Barrier::new(2));
        for (first, second) in [(a.clone(), b.clone()), (b.clone(), a.clone())] {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let _g = first.lock();
                barrier.wait();
                let _h = second.lock();
            });
        }
        assert_eq!(wait_for_report(), [2]);

        // A writer waiting on a lock whose reader waits on the writer's mutex.
        let rw = Arc::new(RwLock::new(()));
        let m = Arc::new(Mutex::new(()));
        let barrier = Arc::new(Barrier::new(2));
        {
            let (rw, m, barrier) = (rw.clone(), m.clone(), barrier.clone());
            thread::spawn(move || {
                let _r = rw.read();
                barrier.wait();
                let _g = m.lock();
            });
        }
        {
            let (rw, m, barrier) = (rw.clone(), m.clone(), barrier.clone());
            thread::spawn(move || {
                let _g = m.lock();
                barrier.wait();
                let _w = rw.write();
            });
        }
        assert_eq!(wait_for_report(), [2]);

        // A lock held and released on one thread leaves nothing recorded.
        let free = Mutex::new(());
        drop(free.lock());
        assert!(deadlock::check_deadlock().is_empty());

        // A condvar waiter: its mutex record is dropped before it parks (outside the parking
        // callbacks, as parking_lot does) and restored by the re-lock; a parked waiter is not
        // a deadlock, and the round trip leaves the detector consistent.
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let p2 = Arc::clone(&pair);
        let waiter = thread::spawn(move || {
            let (m, c) = &*p2;
            let mut g = m.lock();
            while !*g {
                c.wait(&mut g);
            }
        });
        thread::sleep(Duration::from_millis(50));
        assert!(
            deadlock::check_deadlock().is_empty(),
            "a condvar waiter is not deadlocked"
        );
        *pair.0.lock() = true;
        pair.1.notify_all();
        waiter.join().unwrap();
        assert!(deadlock::check_deadlock().is_empty());
    }
}
