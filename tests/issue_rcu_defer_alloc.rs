//! Issue 9: `Rcu::defer_update` allocated under the cell's writer spinlock (the retirement
//! queue's `Vec` growing, and a fresh `Vec` for every batch it drained), so writers could
//! wait behind the allocator. Now retiring links the old value's own node and the new node is
//! allocated before the lock is taken: exactly one allocation per update, none for the queue.

use ecs_locks::Rcu;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts the allocations of the thread that enabled counting.
struct Counting;

thread_local! {
    static COUNT: Cell<Option<usize>> = const { Cell::new(None) };
}

// SAFETY: delegates to `System`; the counter is a destructor-free thread-local, so it never
// allocates itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
        // SAFETY: the caller's contract, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn one_allocation_per_deferred_update() {
    let cell = Rcu::new(0u64);
    // Warm up: this thread's RCU registry slot and thread-locals.
    cell.defer_update(|v| v + 1);
    cell.barrier();
    const N: usize = 1000;
    COUNT.with(|c| c.set(Some(0)));
    for _ in 0..N {
        cell.defer_update(|v| v + 1);
    }
    let n = COUNT.with(|c| c.replace(None)).unwrap();
    assert_eq!(*cell.read(), N as u64 + 1);
    assert_eq!(
        n, N,
        "{n} allocations for {N} deferred updates: only the new values' nodes may allocate"
    );
}
