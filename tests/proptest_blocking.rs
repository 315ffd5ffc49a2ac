//! Random operation sequences against a sequential model, for every public blocking type:
//! `Mutex`, `FairMutex`, `RwLock` (upgradable reads, downgrades, timed variants),
//! `ReentrantMutex`, `Once`, `Condvar` (wait_for / notify with a helper thread).
//!
//! The test thread holds guards across operations; "other thread" operations run on a scoped
//! helper thread and must agree with the model about what a second thread can take. Blocking
//! operations that the model says would wait forever are skipped (they would deadlock).
#![allow(clippy::disallowed_types)]

use ecs_locks::{
    Condvar, Mutex, Once, OnceState, RawFairMutex, RawMutex, ReentrantMutex, RwLock,
    RwLockReadGuard, RwLockUpgradableReadGuard, RwLockWriteGuard,
};
use lock_api::{RawMutexFair, RawMutexTimed};
use proptest::prelude::*;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;
use std::time::{Duration, Instant};

fn ms(n: u8) -> Duration {
    Duration::from_millis(u64::from(n % 3))
}

// ---------------------------------------------------------------- Mutex / FairMutex

#[derive(Debug, Clone)]
enum MOp {
    Lock,
    TryLock,
    TryLockFor(u8),
    TryLockUntil(u8),
    Add(i8),
    Unlock,
    UnlockFair,
    Bump,
    Unlocked,
    OtherTry,
    OtherTimed(u8),
    Check,
}

fn mop() -> impl Strategy<Value = MOp> {
    prop_oneof![
        Just(MOp::Lock),
        Just(MOp::TryLock),
        any::<u8>().prop_map(MOp::TryLockFor),
        any::<u8>().prop_map(MOp::TryLockUntil),
        any::<i8>().prop_map(MOp::Add),
        Just(MOp::Unlock),
        Just(MOp::UnlockFair),
        Just(MOp::Bump),
        Just(MOp::Unlocked),
        Just(MOp::OtherTry),
        any::<u8>().prop_map(MOp::OtherTimed),
        Just(MOp::Check),
    ]
}

fn run_mutex<R>(ops: &[MOp])
where
    R: RawMutexFair + RawMutexTimed<Duration = Duration, Instant = Instant> + Send + Sync,
{
    let m: lock_api::Mutex<R, i64> = lock_api::Mutex::new(0);
    let mut value = 0i64;
    let mut guard: Option<lock_api::MutexGuard<'_, R, i64>> = None;
    for op in ops {
        let held = guard.is_some();
        match op {
            MOp::Lock if !held => {
                let g = m.lock();
                assert_eq!(*g, value);
                guard = Some(g);
            }
            MOp::Lock => {}
            MOp::TryLock => match m.try_lock() {
                Some(g) => {
                    assert!(!held);
                    guard = Some(g);
                }
                None => assert!(held, "try_lock failed on a free mutex"),
            },
            MOp::TryLockFor(t) => match m.try_lock_for(ms(*t)) {
                Some(g) => {
                    assert!(!held);
                    guard = Some(g);
                }
                None => assert!(held, "timed lock failed on a free mutex"),
            },
            MOp::TryLockUntil(t) => match m.try_lock_until(Instant::now() + ms(*t)) {
                Some(g) => {
                    assert!(!held);
                    guard = Some(g);
                }
                None => assert!(held),
            },
            MOp::Add(x) => {
                if let Some(g) = guard.as_mut() {
                    **g += i64::from(*x);
                    value += i64::from(*x);
                }
            }
            MOp::Unlock => guard = None,
            MOp::UnlockFair => {
                if let Some(g) = guard.take() {
                    lock_api::MutexGuard::unlock_fair(g);
                }
            }
            MOp::Bump => {
                if let Some(g) = guard.as_mut() {
                    lock_api::MutexGuard::bump(g);
                    assert_eq!(**g, value);
                }
            }
            MOp::Unlocked => {
                if let Some(g) = guard.as_mut() {
                    let m = &m;
                    lock_api::MutexGuard::unlocked(g, || {
                        thread::scope(|s| {
                            s.spawn(|| assert!(m.try_lock().is_some())).join().unwrap();
                        })
                    });
                }
            }
            MOp::OtherTry => thread::scope(|s| {
                let got = s.spawn(|| m.try_lock().is_some()).join().unwrap();
                assert_eq!(got, !held);
            }),
            MOp::OtherTimed(t) => thread::scope(|s| {
                let got = s
                    .spawn(|| m.try_lock_for(ms(*t)).map(|g| *g))
                    .join()
                    .unwrap();
                assert_eq!(got.is_some(), !held);
                if let Some(v) = got {
                    assert_eq!(v, value);
                }
            }),
            MOp::Check => assert_eq!(m.is_locked(), held),
        }
    }
    drop(guard);
    assert!(!m.is_locked());
    assert_eq!(m.into_inner(), value);
}

// ---------------------------------------------------------------- RwLock

#[derive(Debug, Clone)]
enum ROp {
    Read,
    TryRead,
    TryReadFor(u8),
    Write,
    TryWrite,
    TryWriteFor(u8),
    Upgradable,
    TryUpgradable,
    TryUpgradableFor(u8),
    DropRead,
    DropWrite,
    DropWriteFair,
    DropUpgradable,
    Upgrade,
    TryUpgrade,
    TryUpgradeFor(u8),
    Downgrade,
    DowngradeToUpgradable,
    DowngradeUpgradable,
    WriteAdd(i8),
    OtherTryRead,
    OtherTryWrite,
    OtherTryUpgradable,
    OtherTimedWrite(u8),
}

fn rop() -> impl Strategy<Value = ROp> {
    prop_oneof![
        Just(ROp::Read),
        Just(ROp::TryRead),
        any::<u8>().prop_map(ROp::TryReadFor),
        Just(ROp::Write),
        Just(ROp::TryWrite),
        any::<u8>().prop_map(ROp::TryWriteFor),
        Just(ROp::Upgradable),
        Just(ROp::TryUpgradable),
        any::<u8>().prop_map(ROp::TryUpgradableFor),
        Just(ROp::DropRead),
        Just(ROp::DropWrite),
        Just(ROp::DropWriteFair),
        Just(ROp::DropUpgradable),
        Just(ROp::Upgrade),
        Just(ROp::TryUpgrade),
        any::<u8>().prop_map(ROp::TryUpgradeFor),
        Just(ROp::Downgrade),
        Just(ROp::DowngradeToUpgradable),
        Just(ROp::DowngradeUpgradable),
        any::<i8>().prop_map(ROp::WriteAdd),
        Just(ROp::OtherTryRead),
        Just(ROp::OtherTryWrite),
        Just(ROp::OtherTryUpgradable),
        any::<u8>().prop_map(ROp::OtherTimedWrite),
    ]
}

fn run_rwlock(ops: &[ROp]) {
    let l = RwLock::new(0i64);
    let mut value = 0i64;
    let mut readers: Vec<RwLockReadGuard<'_, i64>> = Vec::new();
    let mut up: Option<RwLockUpgradableReadGuard<'_, i64>> = None;
    let mut w: Option<RwLockWriteGuard<'_, i64>> = None;
    for op in ops {
        // What may be taken now (no other holders, no pending writers in this model).
        let can_read = w.is_none();
        let can_write = readers.is_empty() && up.is_none() && w.is_none();
        let can_up = w.is_none() && up.is_none();
        match op {
            ROp::Read if can_read => readers.push(l.read()),
            ROp::Write if can_write => w = Some(l.write()),
            ROp::Upgradable if can_up => up = Some(l.upgradable_read()),
            ROp::Read | ROp::Write | ROp::Upgradable => {}
            ROp::TryRead => {
                let g = l.try_read();
                assert_eq!(g.is_some(), can_read);
                readers.extend(g);
            }
            ROp::TryReadFor(t) => {
                let g = l.try_read_for(ms(*t));
                assert_eq!(g.is_some(), can_read);
                readers.extend(g);
            }
            ROp::TryWrite => {
                let g = l.try_write();
                assert_eq!(g.is_some(), can_write);
                if g.is_some() {
                    w = g;
                }
            }
            ROp::TryWriteFor(t) => {
                // Blocked by our own readers: takes WRITER_BIT, times out, rolls back.
                let g = l.try_write_for(ms(*t));
                assert_eq!(g.is_some(), can_write);
                if g.is_some() {
                    w = g;
                }
            }
            ROp::TryUpgradable => {
                let g = l.try_upgradable_read();
                assert_eq!(g.is_some(), can_up);
                if g.is_some() {
                    up = g;
                }
            }
            ROp::TryUpgradableFor(t) => {
                let g = l.try_upgradable_read_for(ms(*t));
                assert_eq!(g.is_some(), can_up);
                if g.is_some() {
                    up = g;
                }
            }
            ROp::DropRead => {
                readers.pop();
            }
            ROp::DropWrite => w = None,
            ROp::DropWriteFair => {
                if let Some(g) = w.take() {
                    RwLockWriteGuard::unlock_fair(g);
                }
            }
            ROp::DropUpgradable => up = None,
            ROp::Upgrade => {
                if readers.is_empty()
                    && let Some(u) = up.take()
                {
                    w = Some(RwLockUpgradableReadGuard::upgrade(u));
                }
            }
            ROp::TryUpgrade => {
                if let Some(u) = up.take() {
                    match RwLockUpgradableReadGuard::try_upgrade(u) {
                        Ok(g) => {
                            assert!(readers.is_empty());
                            w = Some(g);
                        }
                        Err(u) => {
                            assert!(!readers.is_empty());
                            up = Some(u);
                        }
                    }
                }
            }
            ROp::TryUpgradeFor(t) => {
                if let Some(u) = up.take() {
                    match RwLockUpgradableReadGuard::try_upgrade_for(u, ms(*t)) {
                        Ok(g) => {
                            assert!(readers.is_empty());
                            w = Some(g);
                        }
                        Err(u) => {
                            assert!(!readers.is_empty());
                            up = Some(u);
                        }
                    }
                }
            }
            ROp::Downgrade => {
                if let Some(g) = w.take() {
                    readers.push(RwLockWriteGuard::downgrade(g));
                }
            }
            ROp::DowngradeToUpgradable => {
                if let Some(g) = w.take() {
                    up = Some(RwLockWriteGuard::downgrade_to_upgradable(g));
                }
            }
            ROp::DowngradeUpgradable => {
                if let Some(u) = up.take() {
                    readers.push(RwLockUpgradableReadGuard::downgrade(u));
                }
            }
            ROp::WriteAdd(x) => {
                if let Some(g) = w.as_mut() {
                    **g += i64::from(*x);
                    value += i64::from(*x);
                }
            }
            ROp::OtherTryRead => thread::scope(|s| {
                let got = s.spawn(|| l.try_read().map(|g| *g)).join().unwrap();
                assert_eq!(got.is_some(), can_read);
                if let Some(v) = got {
                    assert_eq!(v, value);
                }
            }),
            ROp::OtherTryWrite => thread::scope(|s| {
                let got = s.spawn(|| l.try_write().is_some()).join().unwrap();
                assert_eq!(got, can_write);
            }),
            ROp::OtherTryUpgradable => thread::scope(|s| {
                let got = s
                    .spawn(|| l.try_upgradable_read().is_some())
                    .join()
                    .unwrap();
                assert_eq!(got, can_up);
            }),
            ROp::OtherTimedWrite(t) => thread::scope(|s| {
                let got = s
                    .spawn(|| l.try_write_for(ms(*t)).is_some())
                    .join()
                    .unwrap();
                assert_eq!(got, can_write);
            }),
        }
        for r in &readers {
            assert_eq!(**r, value);
        }
        if let Some(u) = &up {
            assert_eq!(**u, value);
        }
        assert_eq!(
            l.is_locked(),
            !readers.is_empty() || up.is_some() || w.is_some()
        );
        assert_eq!(l.is_locked_exclusive(), w.is_some());
    }
    drop((readers, up, w));
    assert!(!l.is_locked());
    assert_eq!(l.into_inner(), value);
}

// ---------------------------------------------------------------- ReentrantMutex

#[derive(Debug, Clone)]
enum EOp {
    Lock,
    TryLock,
    TryLockFor(u8),
    Unlock,
    OtherTry,
    OtherTimed(u8),
    Add(i8),
}

fn eop() -> impl Strategy<Value = EOp> {
    prop_oneof![
        Just(EOp::Lock),
        Just(EOp::TryLock),
        any::<u8>().prop_map(EOp::TryLockFor),
        Just(EOp::Unlock),
        Just(EOp::OtherTry),
        any::<u8>().prop_map(EOp::OtherTimed),
        any::<i8>().prop_map(EOp::Add),
    ]
}

fn run_remutex(ops: &[EOp]) {
    let m = ReentrantMutex::new(Cell::new(0i64));
    let mut value = 0i64;
    let mut guards = Vec::new();
    for op in ops {
        match op {
            EOp::Lock => guards.push(m.lock()),
            EOp::TryLock => guards.push(m.try_lock().expect("the owner always re-enters")),
            EOp::TryLockFor(t) => guards.push(m.try_lock_for(ms(*t)).expect("owner re-enters")),
            EOp::Unlock => {
                guards.pop();
            }
            EOp::OtherTry => thread::scope(|s| {
                let free = s.spawn(|| m.try_lock().is_some()).join().unwrap();
                assert_eq!(free, guards.is_empty());
            }),
            EOp::OtherTimed(t) => thread::scope(|s| {
                let free = s.spawn(|| m.try_lock_for(ms(*t)).is_some()).join().unwrap();
                assert_eq!(free, guards.is_empty());
            }),
            EOp::Add(x) => {
                if let Some(g) = guards.last() {
                    g.set(g.get() + i64::from(*x));
                    value += i64::from(*x);
                }
            }
        }
        assert_eq!(m.is_locked(), !guards.is_empty());
        assert_eq!(m.is_owned_by_current_thread(), !guards.is_empty());
    }
    drop(guards);
    assert_eq!(m.into_inner().get(), value);
}

// ---------------------------------------------------------------- Once

#[derive(Debug, Clone)]
enum OOp {
    CallOnce { panics: bool },
    CallOnceForce { panics: bool },
    OtherCallOnce,
    Wait,
    Check,
}

fn oop() -> impl Strategy<Value = OOp> {
    prop_oneof![
        any::<bool>().prop_map(|panics| OOp::CallOnce { panics }),
        any::<bool>().prop_map(|panics| OOp::CallOnceForce { panics }),
        Just(OOp::OtherCallOnce),
        Just(OOp::Wait),
        Just(OOp::Check),
    ]
}

fn run_once(ops: &[OOp]) {
    let o = Once::new();
    let mut model = OnceState::New;
    let runs = Cell::new(0u32);
    let mut expected_runs = 0u32;
    for op in ops {
        match op {
            OOp::CallOnce { panics } => {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    o.call_once(|| {
                        runs.set(runs.get() + 1);
                        if *panics {
                            panic!("init fails");
                        }
                    })
                }));
                match model {
                    OnceState::New => {
                        expected_runs += 1;
                        assert_eq!(r.is_err(), *panics);
                        model = if *panics {
                            OnceState::Poisoned
                        } else {
                            OnceState::Done
                        };
                    }
                    OnceState::Poisoned => assert!(r.is_err(), "poisoned call_once panics"),
                    _ => assert!(r.is_ok()),
                }
            }
            OOp::CallOnceForce { panics } => {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    o.call_once_force(|state| {
                        assert_eq!(state, model);
                        runs.set(runs.get() + 1);
                        if *panics {
                            panic!("init fails");
                        }
                    })
                }));
                if model != OnceState::Done {
                    expected_runs += 1;
                    assert_eq!(r.is_err(), *panics);
                    model = if *panics {
                        OnceState::Poisoned
                    } else {
                        OnceState::Done
                    };
                } else {
                    assert!(r.is_ok());
                }
            }
            OOp::OtherCallOnce => {
                let ran = thread::scope(|s| {
                    s.spawn(|| {
                        let ran = Cell::new(false);
                        let r = catch_unwind(AssertUnwindSafe(|| o.call_once(|| ran.set(true))));
                        (r.is_ok(), ran.get())
                    })
                    .join()
                    .unwrap()
                });
                match model {
                    OnceState::New => {
                        assert_eq!(ran, (true, true));
                        model = OnceState::Done;
                    }
                    OnceState::Poisoned => assert_eq!(ran, (false, false)),
                    _ => assert_eq!(ran, (true, false)),
                }
            }
            OOp::Wait => match model {
                OnceState::Done => o.wait(),
                OnceState::Poisoned => {
                    assert!(catch_unwind(AssertUnwindSafe(|| o.wait())).is_err());
                }
                _ => {} // would block forever
            },
            OOp::Check => {}
        }
        assert_eq!(o.state(), model);
        assert_eq!(o.is_completed(), model == OnceState::Done);
    }
    assert_eq!(runs.get(), expected_runs);
}

// ---------------------------------------------------------------- Condvar

#[derive(Debug, Clone)]
enum COp {
    NotifyOne,
    NotifyAll,
    WaitForTimesOut(u8),
    WaitUntilPast,
    WaitWhileForSatisfied,
    NotifiedByHelper { all: bool },
    NotifyAllWaiters(u8),
    Add(i8),
}

fn cop() -> impl Strategy<Value = COp> {
    prop_oneof![
        Just(COp::NotifyOne),
        Just(COp::NotifyAll),
        any::<u8>().prop_map(COp::WaitForTimesOut),
        Just(COp::WaitUntilPast),
        Just(COp::WaitWhileForSatisfied),
        any::<bool>().prop_map(|all| COp::NotifiedByHelper { all }),
        (1u8..4).prop_map(COp::NotifyAllWaiters),
        any::<i8>().prop_map(COp::Add),
    ]
}

fn run_condvar(ops: &[COp]) {
    struct State {
        value: i64,
        flag: bool,
        waiting: usize,
    }
    let m = Mutex::new(State {
        value: 0,
        flag: false,
        waiting: 0,
    });
    let c = Condvar::new();
    let mut value = 0i64;
    for op in ops {
        match op {
            COp::NotifyOne => assert!(!c.notify_one(), "nobody waits"),
            COp::NotifyAll => assert_eq!(c.notify_all(), 0),
            COp::WaitForTimesOut(t) => {
                let mut g = m.lock();
                let r = c.wait_for(&mut g, ms(*t));
                assert!(
                    r.timed_out(),
                    "no notifier: only a timeout can end the wait"
                );
                assert_eq!(g.value, value);
                assert!(m.is_locked());
            }
            COp::WaitUntilPast => {
                let mut g = m.lock();
                assert!(c.wait_until(&mut g, Instant::now()).timed_out());
            }
            COp::WaitWhileForSatisfied => {
                let mut g = m.lock();
                let r = c.wait_while_for(&mut g, |_| false, Duration::from_secs(30));
                assert!(!r.timed_out());
            }
            COp::NotifiedByHelper { all } => {
                let mut g = m.lock();
                g.flag = false;
                thread::scope(|s| {
                    s.spawn(|| {
                        // Gets the mutex only once the main thread waits (queued first).
                        let mut h = m.lock();
                        h.flag = true;
                        if *all {
                            assert_eq!(c.notify_all(), 1);
                        } else {
                            assert!(c.notify_one());
                        }
                    });
                    let r = c.wait_for(&mut g, Duration::from_secs(60));
                    assert!(!r.timed_out());
                    assert!(g.flag, "no spurious wake-up");
                });
            }
            COp::NotifyAllWaiters(k) => {
                let k = usize::from(*k);
                m.lock().flag = false;
                thread::scope(|s| {
                    for _ in 0..k {
                        s.spawn(|| {
                            let mut g = m.lock();
                            g.waiting += 1;
                            while !g.flag {
                                c.wait(&mut g);
                            }
                            g.waiting -= 1;
                        });
                    }
                    loop {
                        let mut g = m.lock();
                        if g.waiting == k {
                            g.flag = true;
                            assert_eq!(c.notify_all(), k);
                            break;
                        }
                        drop(g);
                        thread::yield_now();
                    }
                });
                assert_eq!(m.lock().waiting, 0);
            }
            COp::Add(x) => {
                m.lock().value += i64::from(*x);
                value += i64::from(*x);
            }
        }
    }
    assert_eq!(m.into_inner().value, value);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn mutex_matches_model(ops in proptest::collection::vec(mop(), 1..40)) {
        run_mutex::<RawMutex>(&ops);
    }

    #[test]
    fn fair_mutex_matches_model(ops in proptest::collection::vec(mop(), 1..40)) {
        run_mutex::<RawFairMutex>(&ops);
    }

    #[test]
    fn rwlock_matches_model(ops in proptest::collection::vec(rop(), 1..50)) {
        run_rwlock(&ops);
    }

    #[test]
    fn reentrant_mutex_matches_model(ops in proptest::collection::vec(eop(), 1..40)) {
        run_remutex(&ops);
    }

    #[test]
    fn once_matches_model(ops in proptest::collection::vec(oop(), 1..12)) {
        run_once(&ops);
    }

    #[test]
    fn condvar_matches_model(ops in proptest::collection::vec(cop(), 1..16)) {
        run_condvar(&ops);
    }
}
