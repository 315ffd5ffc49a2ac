//! Property tests of the spin family: random operation sequences (lock, try_lock, unlock,
//! fair unlock, bump, writes, read/write/upgradable locks, upgrade, downgrade, nesting of
//! distinct locks) run against a sequential model, on one thread and with a helper thread that
//! holds locks on request. Every step checks the lock's observable state (`is_locked`, the
//! outcome of `try_*`, the data, the critical-section depth) against the model.

use ecs_locks::{
    McsMutex, RawMcsMutex, RawSpinMutex, RawSpinRwLock, RawTicketMutex, SpinMutex, SpinRwLock,
    TicketMutex,
};
use lock_api::{
    Mutex, MutexGuard, RawMutex, RwLockReadGuard, RwLockUpgradableReadGuard, RwLockWriteGuard,
};
use proptest::prelude::*;
use std::sync::mpsc;
use std::thread;

/// Distinct locks per case, any number of them held at once (MCS holders need no queue
/// node, only waiters do).
const LOCKS: usize = 6;

// ----------------------------------------------------------------------------------------
// Mutexes
// ----------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum MOp {
    Lock(usize),
    TryLock(usize),
    Unlock(usize),
    /// `unlock_fair` where supported (else a plain unlock).
    UnlockFair(usize),
    /// `MutexGuard::bump` where supported (else nothing).
    Bump(usize),
    Write(usize, u32),
    /// Ask the helper thread to lock / unlock / write (helper tests only).
    HelperLock(usize),
    HelperUnlock(usize),
    HelperWrite(usize, u32),
}

fn mutex_op(helper: bool) -> impl Strategy<Value = MOp> {
    let i = 0..LOCKS;
    let local = prop_oneof![
        3 => i.clone().prop_map(MOp::Lock),
        2 => i.clone().prop_map(MOp::TryLock),
        3 => i.clone().prop_map(MOp::Unlock),
        1 => i.clone().prop_map(MOp::UnlockFair),
        1 => i.clone().prop_map(MOp::Bump),
        2 => (i.clone(), any::<u32>()).prop_map(|(i, v)| MOp::Write(i, v)),
    ];
    if helper {
        prop_oneof![
            6 => local,
            2 => i.clone().prop_map(MOp::HelperLock),
            2 => i.clone().prop_map(MOp::HelperUnlock),
            1 => (i, any::<u32>()).prop_map(|(i, v)| MOp::HelperWrite(i, v)),
        ]
        .boxed()
    } else {
        local.boxed()
    }
}

/// What a mutex type supports beyond `RawMutex`.
struct Extras<R: RawMutex + 'static> {
    unlock_fair: Option<fn(MutexGuard<'_, R, u32>)>,
    bump: Option<fn(&mut MutexGuard<'_, R, u32>)>,
}

/// Commands for the helper thread; it acknowledges each on `ack`.
enum HelperCmd {
    Lock(usize),
    Unlock(usize),
    Write(usize, u32),
}

/// Runs `ops` on `LOCKS` mutexes against the model; with `helper`, a second thread takes and
/// releases locks on request (the main thread then only `try_lock`s those).
fn run_mutex<R: RawMutex + Sync + 'static>(
    make: fn(u32) -> Mutex<R, u32>,
    extras: &Extras<R>,
    ops: &[MOp],
) -> Result<(), TestCaseError> {
    let locks: Vec<Mutex<R, u32>> = (0..LOCKS as u32).map(make).collect();
    let mut model: Vec<u32> = (0..LOCKS as u32).collect();
    let depth0 = ecs_sys::cs_depth();
    thread::scope(|s| {
        let (cmd_tx, cmd_rx) = mpsc::channel::<HelperCmd>();
        let (ack_tx, ack_rx) = mpsc::channel::<()>();
        let locks_ref = &locks;
        s.spawn(move || {
            let mut held: Vec<Option<MutexGuard<'_, R, u32>>> = (0..LOCKS).map(|_| None).collect();
            for cmd in cmd_rx {
                match cmd {
                    HelperCmd::Lock(i) => held[i] = Some(locks_ref[i].lock()),
                    HelperCmd::Unlock(i) => held[i] = None,
                    HelperCmd::Write(i, v) => **held[i].as_mut().unwrap() = v,
                }
                ack_tx.send(()).unwrap();
            }
        });
        let helper = |cmd| {
            cmd_tx.send(cmd).unwrap();
            ack_rx.recv().unwrap();
        };

        let mut mine: Vec<Option<MutexGuard<'_, R, u32>>> = (0..LOCKS).map(|_| None).collect();
        let mut helpers = [false; LOCKS];
        for op in ops {
            match *op {
                MOp::Lock(i) if mine[i].is_none() && !helpers[i] => {
                    let g = locks[i].lock();
                    prop_assert_eq!(*g, model[i]);
                    mine[i] = Some(g);
                }
                MOp::TryLock(i) => {
                    let g = locks[i].try_lock();
                    let expect = mine[i].is_none() && !helpers[i];
                    prop_assert_eq!(g.is_some(), expect, "try_lock({}) outcome", i);
                    if let Some(g) = g {
                        prop_assert_eq!(*g, model[i]);
                        mine[i] = Some(g);
                    }
                }
                MOp::Unlock(i) => mine[i] = None,
                MOp::UnlockFair(i) => {
                    if let Some(g) = mine[i].take() {
                        match extras.unlock_fair {
                            Some(f) => f(g),
                            None => drop(g),
                        }
                    }
                }
                MOp::Bump(i) => {
                    if let (Some(g), Some(f)) = (mine[i].as_mut(), extras.bump) {
                        f(g);
                        prop_assert_eq!(**g, model[i]);
                    }
                }
                MOp::Write(i, v) => {
                    if let Some(g) = mine[i].as_mut() {
                        **g = v;
                        model[i] = v;
                    }
                }
                MOp::HelperLock(i) if mine[i].is_none() && !helpers[i] => {
                    helper(HelperCmd::Lock(i));
                    helpers[i] = true;
                }
                MOp::HelperUnlock(i) if helpers[i] => {
                    helper(HelperCmd::Unlock(i));
                    helpers[i] = false;
                }
                MOp::HelperWrite(i, v) if helpers[i] => {
                    helper(HelperCmd::Write(i, v));
                    model[i] = v;
                }
                _ => {} // would block or deadlock in this state: skip
            }
            let held = mine.iter().filter(|g| g.is_some()).count();
            prop_assert_eq!(ecs_sys::cs_depth(), depth0 + held as u32, "cs depth");
            for i in 0..LOCKS {
                prop_assert_eq!(
                    locks[i].is_locked(),
                    mine[i].is_some() || helpers[i],
                    "is_locked({})",
                    i
                );
            }
        }
        drop(mine);
        drop(cmd_tx); // the helper drops its guards and exits
        Ok::<(), TestCaseError>(())
    })?;
    for (i, l) in locks.iter().enumerate() {
        prop_assert!(!l.is_locked());
        prop_assert_eq!(*l.lock(), model[i], "final value of lock {}", i);
    }
    prop_assert_eq!(ecs_sys::cs_depth(), depth0);
    Ok(())
}

fn spin_extras() -> Extras<RawSpinMutex> {
    Extras {
        unlock_fair: None,
        bump: None,
    }
}

fn ticket_extras() -> Extras<RawTicketMutex> {
    Extras {
        unlock_fair: Some(|g| MutexGuard::unlock_fair(g)),
        bump: Some(|g| MutexGuard::bump(g)),
    }
}

fn mcs_extras() -> Extras<RawMcsMutex> {
    Extras {
        unlock_fair: Some(|g| MutexGuard::unlock_fair(g)),
        bump: Some(|g| MutexGuard::bump(g)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn spin_mutex_single_thread(ops in prop::collection::vec(mutex_op(false), 1..60)) {
        run_mutex(SpinMutex::new, &spin_extras(), &ops)?;
    }

    #[test]
    fn ticket_mutex_single_thread(ops in prop::collection::vec(mutex_op(false), 1..60)) {
        run_mutex(TicketMutex::new, &ticket_extras(), &ops)?;
    }

    #[test]
    fn mcs_mutex_single_thread(ops in prop::collection::vec(mutex_op(false), 1..60)) {
        run_mutex(McsMutex::new, &mcs_extras(), &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn spin_mutex_with_helper(ops in prop::collection::vec(mutex_op(true), 1..60)) {
        run_mutex(SpinMutex::new, &spin_extras(), &ops)?;
    }

    #[test]
    fn ticket_mutex_with_helper(ops in prop::collection::vec(mutex_op(true), 1..60)) {
        run_mutex(TicketMutex::new, &ticket_extras(), &ops)?;
    }

    #[test]
    fn mcs_mutex_with_helper(ops in prop::collection::vec(mutex_op(true), 1..60)) {
        run_mutex(McsMutex::new, &mcs_extras(), &ops)?;
    }
}

// ----------------------------------------------------------------------------------------
// SpinRwLock
// ----------------------------------------------------------------------------------------

const RW_LOCKS: usize = 2;

#[derive(Debug, Clone)]
enum RwOp {
    Read(usize),
    TryRead(usize),
    UnlockRead(usize),
    Write(usize),
    TryWrite(usize),
    UnlockWrite(usize),
    Upgradable(usize),
    TryUpgradable(usize),
    UnlockUpgradable(usize),
    Upgrade(usize),
    TryUpgrade(usize),
    Downgrade(usize),
    DowngradeToUpgradable(usize),
    DowngradeUpgradable(usize),
    Store(usize, u32),
    HelperRead(usize),
    HelperWrite(usize, u32),
    HelperRelease(usize),
}

fn rw_op(helper: bool) -> impl Strategy<Value = RwOp> {
    let i = 0..RW_LOCKS;
    let local = prop_oneof![
        i.clone().prop_map(RwOp::Read),
        i.clone().prop_map(RwOp::TryRead),
        i.clone().prop_map(RwOp::UnlockRead),
        i.clone().prop_map(RwOp::Write),
        i.clone().prop_map(RwOp::TryWrite),
        i.clone().prop_map(RwOp::UnlockWrite),
        i.clone().prop_map(RwOp::Upgradable),
        i.clone().prop_map(RwOp::TryUpgradable),
        i.clone().prop_map(RwOp::UnlockUpgradable),
        i.clone().prop_map(RwOp::Upgrade),
        i.clone().prop_map(RwOp::TryUpgrade),
        i.clone().prop_map(RwOp::Downgrade),
        i.clone().prop_map(RwOp::DowngradeToUpgradable),
        i.clone().prop_map(RwOp::DowngradeUpgradable),
        (i.clone(), any::<u32>()).prop_map(|(i, v)| RwOp::Store(i, v)),
    ];
    if helper {
        prop_oneof![
            8 => local,
            1 => i.clone().prop_map(RwOp::HelperRead),
            1 => (i.clone(), any::<u32>()).prop_map(|(i, v)| RwOp::HelperWrite(i, v)),
            2 => i.prop_map(RwOp::HelperRelease),
        ]
        .boxed()
    } else {
        local.boxed()
    }
}

type Rw = SpinRwLock<u32>;

/// What this thread holds on one rwlock.
#[derive(Default)]
struct Held<'a> {
    readers: Vec<RwLockReadGuard<'a, RawSpinRwLock, u32>>,
    upgradable: Option<RwLockUpgradableReadGuard<'a, RawSpinRwLock, u32>>,
    writer: Option<RwLockWriteGuard<'a, RawSpinRwLock, u32>>,
}

impl Held<'_> {
    fn count(&self) -> usize {
        self.readers.len()
            + usize::from(self.upgradable.is_some())
            + usize::from(self.writer.is_some())
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum HelperHold {
    None,
    Read,
    Write,
}

enum RwCmd {
    Read(usize),
    Write(usize, u32),
    Release(usize),
}

fn run_rwlock(ops: &[RwOp]) -> Result<(), TestCaseError> {
    let locks: Vec<Rw> = (0..RW_LOCKS as u32).map(SpinRwLock::new).collect();
    let mut model: Vec<u32> = (0..RW_LOCKS as u32).collect();
    let depth0 = ecs_sys::cs_depth();
    thread::scope(|s| {
        let (cmd_tx, cmd_rx) = mpsc::channel::<RwCmd>();
        let (ack_tx, ack_rx) = mpsc::channel::<()>();
        let locks_ref = &locks;
        s.spawn(move || {
            let mut reads: Vec<Option<RwLockReadGuard<'_, RawSpinRwLock, u32>>> =
                (0..RW_LOCKS).map(|_| None).collect();
            let mut writes: Vec<Option<RwLockWriteGuard<'_, RawSpinRwLock, u32>>> =
                (0..RW_LOCKS).map(|_| None).collect();
            for cmd in cmd_rx {
                match cmd {
                    RwCmd::Read(i) => reads[i] = Some(locks_ref[i].read()),
                    RwCmd::Write(i, v) => {
                        let mut w = locks_ref[i].write();
                        *w = v;
                        writes[i] = Some(w);
                    }
                    RwCmd::Release(i) => {
                        reads[i] = None;
                        writes[i] = None;
                    }
                }
                ack_tx.send(()).unwrap();
            }
        });
        let helper = |cmd| {
            cmd_tx.send(cmd).unwrap();
            ack_rx.recv().unwrap();
        };

        let mut held: Vec<Held<'_>> = (0..RW_LOCKS).map(|_| Held::default()).collect();
        let mut hh = [HelperHold::None; RW_LOCKS];
        for op in ops {
            match *op {
                // Blocking acquisitions only when they cannot wait on this thread (or on the
                // helper, which waits for our commands).
                RwOp::Read(i) if held[i].writer.is_none() && hh[i] != HelperHold::Write => {
                    let r = locks[i].read();
                    prop_assert_eq!(*r, model[i]);
                    held[i].readers.push(r);
                }
                // Non-blocking acquisitions run in every state.
                RwOp::TryRead(i) => {
                    let r = locks[i].try_read();
                    let expect = held[i].writer.is_none() && hh[i] != HelperHold::Write;
                    prop_assert_eq!(r.is_some(), expect, "try_read");
                    if let Some(r) = r {
                        prop_assert_eq!(*r, model[i]);
                        held[i].readers.push(r);
                    }
                }
                RwOp::UnlockRead(i) => {
                    held[i].readers.pop();
                }
                RwOp::Write(i) if held[i].count() == 0 && hh[i] == HelperHold::None => {
                    held[i].writer = Some(locks[i].write());
                }
                RwOp::TryWrite(i) => {
                    let w = locks[i].try_write();
                    let free = held[i].count() == 0 && hh[i] == HelperHold::None;
                    prop_assert_eq!(w.is_some(), free, "try_write");
                    if w.is_some() {
                        held[i].writer = w;
                    }
                }
                RwOp::UnlockWrite(i) => held[i].writer = None,
                RwOp::Upgradable(i)
                    if held[i].writer.is_none()
                        && held[i].upgradable.is_none()
                        && hh[i] != HelperHold::Write =>
                {
                    let u = locks[i].upgradable_read();
                    prop_assert_eq!(*u, model[i]);
                    held[i].upgradable = Some(u);
                }
                RwOp::TryUpgradable(i) => {
                    let u = locks[i].try_upgradable_read();
                    let expect = held[i].writer.is_none()
                        && held[i].upgradable.is_none()
                        && hh[i] != HelperHold::Write;
                    prop_assert_eq!(u.is_some(), expect, "try_upgradable_read");
                    if u.is_some() {
                        held[i].upgradable = u;
                    }
                }
                RwOp::UnlockUpgradable(i) => held[i].upgradable = None,
                RwOp::Upgrade(i) if held[i].readers.is_empty() && hh[i] == HelperHold::None => {
                    if let Some(u) = held[i].upgradable.take() {
                        held[i].writer = Some(RwLockUpgradableReadGuard::upgrade(u));
                    }
                }
                RwOp::TryUpgrade(i) => {
                    if let Some(u) = held[i].upgradable.take() {
                        let expect = held[i].readers.is_empty() && hh[i] == HelperHold::None;
                        match RwLockUpgradableReadGuard::try_upgrade(u) {
                            Ok(w) => {
                                prop_assert!(expect, "try_upgrade succeeded with readers");
                                held[i].writer = Some(w);
                            }
                            Err(u) => {
                                prop_assert!(!expect, "try_upgrade failed without readers");
                                held[i].upgradable = Some(u);
                            }
                        }
                    }
                }
                RwOp::Downgrade(i) => {
                    if let Some(w) = held[i].writer.take() {
                        let r = RwLockWriteGuard::downgrade(w);
                        prop_assert_eq!(*r, model[i]);
                        held[i].readers.push(r);
                    }
                }
                RwOp::DowngradeToUpgradable(i) => {
                    if let Some(w) = held[i].writer.take() {
                        held[i].upgradable = Some(RwLockWriteGuard::downgrade_to_upgradable(w));
                    }
                }
                RwOp::DowngradeUpgradable(i) => {
                    if let Some(u) = held[i].upgradable.take() {
                        held[i]
                            .readers
                            .push(RwLockUpgradableReadGuard::downgrade(u));
                    }
                }
                RwOp::Store(i, v) => {
                    if let Some(w) = held[i].writer.as_mut() {
                        **w = v;
                        model[i] = v;
                    }
                }
                RwOp::HelperRead(i) if hh[i] == HelperHold::None && held[i].writer.is_none() => {
                    helper(RwCmd::Read(i));
                    hh[i] = HelperHold::Read;
                }
                RwOp::HelperWrite(i, v) if hh[i] == HelperHold::None && held[i].count() == 0 => {
                    helper(RwCmd::Write(i, v));
                    hh[i] = HelperHold::Write;
                    model[i] = v;
                }
                RwOp::HelperRelease(i) if hh[i] != HelperHold::None => {
                    helper(RwCmd::Release(i));
                    hh[i] = HelperHold::None;
                }
                _ => {}
            }
            let total: usize = held.iter().map(Held::count).sum();
            prop_assert_eq!(ecs_sys::cs_depth(), depth0 + total as u32, "cs depth");
            for i in 0..RW_LOCKS {
                let h = &held[i];
                prop_assert_eq!(
                    locks[i].is_locked(),
                    h.count() > 0 || hh[i] != HelperHold::None,
                    "is_locked({})",
                    i
                );
                prop_assert_eq!(
                    locks[i].is_locked_exclusive(),
                    h.writer.is_some() || hh[i] == HelperHold::Write,
                    "is_locked_exclusive({})",
                    i
                );
                // SAFETY: reading the raw lock's counter only.
                let readers = unsafe { locks[i].raw() }.reader_count();
                let helper_reads = usize::from(hh[i] == HelperHold::Read);
                prop_assert_eq!(
                    readers,
                    h.readers.len() + helper_reads,
                    "reader_count({})",
                    i
                );
            }
        }
        drop(held);
        drop(cmd_tx);
        Ok::<(), TestCaseError>(())
    })?;
    for (i, l) in locks.iter().enumerate() {
        prop_assert!(!l.is_locked());
        prop_assert_eq!(*l.read(), model[i]);
    }
    prop_assert_eq!(ecs_sys::cs_depth(), depth0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn spin_rwlock_single_thread(ops in prop::collection::vec(rw_op(false), 1..80)) {
        run_rwlock(&ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn spin_rwlock_with_helper(ops in prop::collection::vec(rw_op(true), 1..80)) {
        run_rwlock(&ops)?;
    }
}
