//! Issue 9: `force_unlock` of a lock another thread took ran the release's `cs_exit` on the
//! calling thread, whose native depth wrapped from 0 to `u32::MAX`: that thread was marked
//! inside a critical section for good. The depth now stops at 0. (The same happens when a
//! guard made `Send` is dropped on another thread.)

use ecs_locks::lock_api::GuardNoSend;
use ecs_locks::{McsMutex, SpinMutex, SpinRwLock};
use std::thread;

#[test]
fn force_unlock_from_another_thread_keeps_the_callers_depth() {
    let spin = SpinMutex::new(0u32);
    let mcs = McsMutex::new(0u32);
    let rw = SpinRwLock::new(0u32);
    thread::scope(|s| {
        s.spawn(|| {
            std::mem::forget(spin.lock());
            std::mem::forget(mcs.lock());
            std::mem::forget(rw.write());
            // This thread keeps its marks (a leaked guard leaks its mark, as documented).
            assert_eq!(ecs_locks::ecs_sys::cs_depth(), 3);
        });
    });
    assert_eq!(ecs_locks::ecs_sys::cs_depth(), 0);
    // The guard states are stateless markers (`GuardNoSend`); the locks' release paths do not
    // look at which thread calls them.
    // SAFETY: each lock is held by an acquisition whose guard was forgotten and whose thread
    // has ended; nobody else uses the locks meanwhile.
    unsafe {
        spin.force_unlock(GuardNoSend::new());
        mcs.force_unlock(GuardNoSend::new());
        rw.force_unlock_write(GuardNoSend::new());
    }
    assert_eq!(
        ecs_locks::ecs_sys::cs_depth(),
        0,
        "an exit without an enter on this thread must not wrap the depth"
    );
    // The locks and this thread's marks work normally afterwards.
    *spin.lock() += 1;
    *mcs.lock() += 1;
    *rw.write() += 1;
    {
        let _g = spin.lock();
        assert_eq!(ecs_locks::ecs_sys::cs_depth(), 1);
    }
    assert_eq!(ecs_locks::ecs_sys::cs_depth(), 0);
}
