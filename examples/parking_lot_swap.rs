//! A small parking_lot program moved to ecs-locks by its imports alone.
//!
//! The body below was written against parking_lot 0.13; the only line that changed is the `use`
//! (it read `use parking_lot::{Condvar, Mutex, Once, RwLock};`). Run it with
//! `cargo run --example parking_lot_swap`.

use ecs_locks::{Condvar, Mutex, Once, RwLock};
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread;

/// A bounded work queue: producers wait while it is full, consumers while it is empty.
struct Queue {
    items: Mutex<VecDeque<u64>>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
}

impl Queue {
    fn push(&self, v: u64) {
        let mut items = self.items.lock();
        while items.len() == self.capacity {
            self.not_full.wait(&mut items);
        }
        items.push_back(v);
        self.not_empty.notify_one();
    }

    fn pop(&self) -> Option<u64> {
        let mut items = self.items.lock();
        loop {
            if let Some(v) = items.pop_front() {
                self.not_full.notify_one();
                return Some(v);
            }
            if *DONE.read() {
                return None;
            }
            self.not_empty.wait(&mut items);
        }
    }
}

static DONE: RwLock<bool> = RwLock::new(false);
static INIT: Once = Once::new();

fn main() {
    INIT.call_once(|| {
        println!(
            "parking_lot_swap: ecs-locks with the {} hint backend",
            ecs_locks::ecs_sys::BACKEND
        )
    });

    let queue = Arc::new(Queue {
        items: Mutex::new(VecDeque::new()),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
        capacity: 16,
    });
    let total = Arc::new(Mutex::new(0u64));

    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let (queue, total) = (queue.clone(), total.clone());
            thread::spawn(move || {
                while let Some(v) = queue.pop() {
                    *total.lock() += v;
                }
            })
        })
        .collect();
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let queue = queue.clone();
            thread::spawn(move || {
                for i in 0..10_000 {
                    queue.push(p * 10_000 + i);
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    *DONE.write() = true;
    {
        // Wake every consumer so each sees DONE once the queue is drained.
        let _items = queue.items.lock();
        queue.not_empty.notify_all();
    }
    for c in consumers {
        c.join().unwrap();
    }

    let n = 40_000u64;
    let expected = n * (n - 1) / 2;
    let got = *total.lock();
    println!("parking_lot_swap: consumed sum {got}, expected {expected}");
    assert_eq!(got, expected, "items were lost or duplicated");
}
