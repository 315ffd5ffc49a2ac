//! Every public item parking_lot 0.13 re-exports (its `src/lib.rs`), imported under the same path
//! from `ecs_locks`, and from `parking_lot` for comparison: a name missing or renamed on either
//! side fails to compile. The feature-gated items need `arc_lock` and `deadlock_detection`
//! (`cargo test --all-features`, scripts/test-all.sh); the other two parking_lot features,
//! `send_guard` and `serde`, add no names (tests/parking_lot_features.rs tests what they do).
//! `owning_ref` and `nightly` are not provided (README "Features").
#![allow(unused_imports)]

macro_rules! parking_lot_0_13_api {
    ($name:ident, $krate:ident) => {
        mod $name {
            pub use $krate::{
                Condvar, FairMutex, FairMutexGuard, MappedFairMutexGuard, MappedMutexGuard,
                MappedRecursiveRwLockReadGuard, MappedRecursiveRwLockWriteGuard,
                MappedReentrantMutexGuard, MappedRwLockReadGuard, MappedRwLockWriteGuard, Mutex,
                MutexGuard, Once, OnceState, RawCondvar, RawFairMutex, RawMutex, RawRwLock,
                RawRwLockRecursive, RawThreadId, RecursiveRwLock, RecursiveRwLockReadGuard,
                RecursiveRwLockUpgradableReadGuard, RecursiveRwLockWriteGuard, ReentrantMutex,
                ReentrantMutexGuard, RwLock, RwLockReadGuard, RwLockUpgradableReadGuard,
                RwLockWriteGuard, WaitTimeoutResult, lock_api,
            };
            // `arc_lock` (enabled on the parking_lot dev-dependency too).
            pub use $krate::{
                ArcMutexGuard, ArcReentrantMutexGuard, ArcRwLockReadGuard,
                ArcRwLockUpgradableReadGuard, ArcRwLockWriteGuard,
            };
        }
    };
}

#[cfg(feature = "arc_lock")]
parking_lot_0_13_api!(ecs, ecs_locks);
parking_lot_0_13_api!(reference, parking_lot);

/// `deadlock_detection`: the `deadlock` module and its function, same path and signature.
#[cfg(feature = "deadlock_detection")]
#[test]
fn deadlock_module() {
    // Same function as parking_lot's (a re-export of parking_lot_core's).
    let ours = ecs_locks::deadlock::check_deadlock;
    let found = ours();
    assert!(found.iter().all(|cycle| !cycle.is_empty()));
    assert!(
        found.is_empty(),
        "nothing is deadlocked in this test binary"
    );
}

/// The imported items are the working types, not just names.
#[cfg(feature = "arc_lock")]
#[test]
fn imported_items_work() {
    use ecs::*;
    use std::sync::Arc;
    let m = Arc::new(Mutex::new(1));
    let g: ArcMutexGuard<RawMutex, i32> = m.lock_arc();
    drop(g);
    let l = RecursiveRwLock::new(2);
    let (a, b): (
        RecursiveRwLockReadGuard<'_, i32>,
        RecursiveRwLockReadGuard<'_, i32>,
    ) = (l.read(), l.read());
    assert_eq!(*a + *b, 4);
    let o = Once::new();
    o.call_once(|| {});
    assert_eq!(o.state(), OnceState::Done);
}
