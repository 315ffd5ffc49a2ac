//! The same small parking_lot-using module compiled twice: once against `parking_lot` 0.13 and
//! once against `ecs_locks`, changing only the `use` line (`use $krate as pl;`). Every
//! assertion must hold for both. Also the compile-time guard trait checks (`!Send` guards,
//! `Send + Sync` locks), for both crates.
#![allow(clippy::disallowed_types)]

/// Fails to compile if `$t: Send` (an ambiguous-impl trick, as static_assertions does).
macro_rules! assert_not_send {
    ($t:ty) => {
        const _: fn() = || {
            trait AmbiguousIfSend<A> {
                fn some_item() {}
            }
            impl<T: ?Sized> AmbiguousIfSend<()> for T {}
            impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
            let _item = <$t as AmbiguousIfSend<_>>::some_item;
        };
    };
}

macro_rules! user_module {
    ($name:ident, $krate:ident) => {
        mod $name {
            use $krate as pl;

            use pl::{
                Condvar, FairMutex, MappedMutexGuard, Mutex, MutexGuard, Once, OnceState,
                ReentrantMutex, RwLock, RwLockReadGuard, RwLockUpgradableReadGuard,
                RwLockWriteGuard,
            };
            use std::cell::RefCell;
            use std::collections::HashMap;
            use std::sync::Arc;
            use std::thread;
            use std::time::Duration;

            // --- the "user code": what a parking_lot user typically writes ---------------

            static GLOBAL: Mutex<Vec<u32>> = Mutex::new(Vec::new());
            static INIT: Once = Once::new();
            static TABLE: RwLock<Option<u32>> = RwLock::new(None);

            /// A memoizing cache: read-mostly, upgradable read to fill a miss.
            struct Cache {
                map: RwLock<HashMap<u32, u64>>,
            }

            impl Cache {
                fn get_or_compute(&self, k: u32) -> u64 {
                    if let Some(v) = self.map.read().get(&k) {
                        return *v;
                    }
                    let up = self.map.upgradable_read();
                    if let Some(v) = up.get(&k) {
                        return *v;
                    }
                    let mut w = RwLockUpgradableReadGuard::upgrade(up);
                    let v = u64::from(k) * u64::from(k);
                    w.insert(k, v);
                    let r = RwLockWriteGuard::downgrade(w);
                    r[&k]
                }
            }

            /// A one-slot channel with a Mutex and a Condvar.
            struct Slot {
                value: Mutex<Option<u32>>,
                cv: Condvar,
            }

            impl Slot {
                fn put(&self, v: u32) {
                    let mut g = self.value.lock();
                    self.cv.wait_while(&mut g, |s| s.is_some());
                    *g = Some(v);
                    self.cv.notify_all();
                }
                fn take(&self) -> u32 {
                    let mut g = self.value.lock();
                    self.cv.wait_while(&mut g, |s| s.is_none());
                    let v = g.take().unwrap();
                    self.cv.notify_all();
                    v
                }
            }

            // --- the assertions ------------------------------------------------------------

            #[test]
            fn statics_and_once() {
                INIT.call_once(|| GLOBAL.lock().push(1));
                INIT.call_once(|| GLOBAL.lock().push(2));
                assert_eq!(INIT.state(), OnceState::Done);
                assert_eq!(*GLOBAL.lock(), [1]);
                *TABLE.write() = Some(3);
                assert_eq!(*TABLE.read(), Some(3));
            }

            /// parking_lot 0.13's `RecursiveRwLock`: a second read while a writer waits.
            #[test]
            fn recursive_rwlock_reads_twice_with_a_writer_waiting() {
                let l = Arc::new(pl::RecursiveRwLock::new(1u32));
                let first: pl::RecursiveRwLockReadGuard<'_, u32> = l.read();
                let l2 = Arc::clone(&l);
                let writer = thread::spawn(move || {
                    let mut w: pl::RecursiveRwLockWriteGuard<'_, u32> = l2.write();
                    *w += 1;
                });
                // Give the writer time to queue behind `first` (either way must not deadlock).
                thread::sleep(Duration::from_millis(20));
                let second = l.read();
                assert_eq!(*first + *second, 2);
                drop((first, second));
                writer.join().unwrap();
                let up: pl::RecursiveRwLockUpgradableReadGuard<'_, u32> = l.upgradable_read();
                assert_eq!(*up, 2);
            }

            #[test]
            fn once_poisoning() {
                let o = Once::new();
                let r = std::panic::catch_unwind(|| o.call_once(|| panic!("boom")));
                assert!(r.is_err());
                assert!(o.state().is_poisoned());
                let r = std::panic::catch_unwind(|| o.call_once(|| {}));
                assert!(r.is_err(), "call_once on a poisoned Once panics");
                o.call_once_force(|s| assert_eq!(s, OnceState::Poisoned));
                assert!(o.state().is_completed());
            }

            #[test]
            fn mutex_api() {
                let m = Mutex::new((1u8, 2u8));
                {
                    let g = m.lock();
                    assert!(m.try_lock().is_none());
                    assert!(m.is_locked());
                    let mut mapped: MappedMutexGuard<'_, u8> = MutexGuard::map(g, |p| &mut p.1);
                    *mapped = 20;
                }
                assert!(m.try_lock_for(Duration::from_millis(1)).is_some());
                let mut g = m.lock();
                MutexGuard::unlocked(&mut g, || assert!(!m.is_locked()));
                MutexGuard::bump(&mut g);
                MutexGuard::unlock_fair(g);
                assert_eq!(m.into_inner(), (1, 20));
                let f = FairMutex::new(5);
                *f.lock() += 1;
                assert_eq!(*f.lock(), 6);
            }

            #[test]
            fn rwlock_api() {
                let l = RwLock::new(1);
                let r1 = l.read();
                let r2: RwLockReadGuard<'_, i32> = l.read();
                assert!(l.try_write().is_none());
                assert!(l.try_write_for(Duration::from_millis(1)).is_none());
                let up = l.upgradable_read();
                assert!(l.try_upgradable_read().is_none());
                drop((r1, r2));
                let mut w = RwLockUpgradableReadGuard::upgrade(up);
                *w += 1;
                let up = RwLockWriteGuard::downgrade_to_upgradable(w);
                let r = RwLockUpgradableReadGuard::downgrade(up);
                assert_eq!(*r, 2);
                drop(r);
                assert!(!l.is_locked());
            }

            #[test]
            fn cache_from_threads() {
                let c = Arc::new(Cache {
                    map: RwLock::new(HashMap::new()),
                });
                let hs: Vec<_> = (0..8)
                    .map(|i| {
                        let c = c.clone();
                        thread::spawn(move || {
                            (0..50).map(|k| c.get_or_compute((k + i) % 20)).sum::<u64>()
                        })
                    })
                    .collect();
                for (i, h) in hs.into_iter().enumerate() {
                    let expect: u64 = (0..50u64).map(|k| ((k + i as u64) % 20).pow(2)).sum();
                    assert_eq!(h.join().unwrap(), expect);
                }
                assert_eq!(c.map.read().len(), 20);
            }

            #[test]
            fn condvar_semantics() {
                let m = Mutex::new(());
                let c = Condvar::new();
                assert!(!c.notify_one());
                assert_eq!(c.notify_all(), 0);
                let mut g = m.lock();
                assert!(c.wait_for(&mut g, Duration::from_millis(5)).timed_out());
                drop(g);
                let slot = Arc::new(Slot {
                    value: Mutex::new(None),
                    cv: Condvar::new(),
                });
                let s2 = slot.clone();
                let producer = thread::spawn(move || (0..100).for_each(|v| s2.put(v)));
                let sum: u32 = (0..100).map(|_| slot.take()).sum();
                producer.join().unwrap();
                assert_eq!(sum, 4950);
            }

            #[test]
            fn reentrant() {
                let m = ReentrantMutex::new(RefCell::new(0));
                let a = m.lock();
                let b = m.lock();
                *b.borrow_mut() += 1;
                drop(b);
                *a.borrow_mut() += 1;
                drop(a);
                assert_eq!(*m.lock().borrow(), 2);
            }

            // --- compile-time guard traits, as parking_lot without `send_guard` -----------

            const _: () = {
                const fn send_sync<T: Send + Sync>() {}
                send_sync::<Mutex<u8>>();
                send_sync::<FairMutex<u8>>();
                send_sync::<RwLock<u8>>();
                send_sync::<ReentrantMutex<u8>>();
                send_sync::<Condvar>();
                send_sync::<Once>();
                // Guards are Sync for Sync data.
                send_sync::<u8>();
            };
            const _: fn() = || {
                fn sync<T: Sync>() {}
                sync::<MutexGuard<'static, u8>>();
                sync::<RwLockReadGuard<'static, u8>>();
                sync::<RwLockWriteGuard<'static, u8>>();
                sync::<RwLockUpgradableReadGuard<'static, u8>>();
            };
            // `send_guard` makes these `Send` (tests/parking_lot_features.rs); parking_lot's
            // dev-dependency is built without it, so the check is for the default build.
            #[cfg(not(feature = "send_guard"))]
            mod not_send {
                use super::*;
                assert_not_send!(MutexGuard<'static, u8>);
                assert_not_send!(MappedMutexGuard<'static, u8>);
                assert_not_send!(pl::FairMutexGuard<'static, u8>);
                assert_not_send!(RwLockReadGuard<'static, u8>);
                assert_not_send!(RwLockWriteGuard<'static, u8>);
                assert_not_send!(RwLockUpgradableReadGuard<'static, u8>);
                assert_not_send!(pl::MappedRwLockReadGuard<'static, u8>);
                assert_not_send!(pl::MappedRwLockWriteGuard<'static, u8>);
            }
            assert_not_send!(pl::ReentrantMutexGuard<'static, u8>);
        }
    };
}

user_module!(with_parking_lot, parking_lot);
user_module!(with_ecs_locks, ecs_locks);

/// parking_lot 0.12's `const_*` constructors, kept by ecs_locks for old code.
#[test]
fn const_constructors_for_parking_lot_012_users() {
    static M: ecs_locks::Mutex<u8> = ecs_locks::const_mutex(1);
    static F: ecs_locks::FairMutex<u8> = ecs_locks::const_fair_mutex(2);
    static R: ecs_locks::RwLock<u8> = ecs_locks::const_rwlock(3);
    static E: ecs_locks::ReentrantMutex<u8> = ecs_locks::const_reentrant_mutex(4);
    assert_eq!(*M.lock() + *F.lock() + *R.read() + *E.lock(), 10);
}
