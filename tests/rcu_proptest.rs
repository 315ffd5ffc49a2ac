//! Random sequences of reads, nested sections, updates (waiting and deferred), grace periods
//! and reclamation on `Rcu` and `RcuRing`, against a sequential model.
//!
//! Every value records its id and a payload derived from it, and its `Drop` logs the id (a
//! second drop of the same id fails). Checked after every step: a read sees the model's current
//! value; every guard still open sees its value intact and not freed; a waiting update returns
//! the model's previous value; the backlog stays within its bound. At the end every value was
//! dropped exactly once.
#![cfg(feature = "std")]

use ecs_locks::rcu::{self, DEFER_BATCH, Rcu, RcuReadGuard, RcuReadSection, RcuRing};
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Log {
    freed: Mutex<HashSet<u64>>,
}

struct Tracked {
    id: u64,
    payload: Vec<u64>,
    log: Arc<Log>,
}

impl Tracked {
    fn new(id: u64, log: &Arc<Log>) -> Self {
        Self {
            id,
            payload: vec![id, id ^ 0x5555, !id],
            log: log.clone(),
        }
    }

    fn check(&self) {
        assert_eq!(
            self.payload,
            [self.id, self.id ^ 0x5555, !self.id],
            "payload intact"
        );
        assert!(
            !self.log.freed.lock().unwrap().contains(&self.id),
            "value {} read after it was freed",
            self.id
        );
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        assert!(
            self.log.freed.lock().unwrap().insert(self.id),
            "value {} freed twice",
            self.id
        );
        self.payload.fill(0xdead);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Read,
    /// Open a guard (a read section holding the value it read).
    Open,
    /// Open a bare section (`rcu::read_lock`), nesting inside whatever is open.
    OpenSection,
    /// Close the most recent (`true`) or the oldest (`false`) open guard or section.
    Close(bool),
    Replace,
    Update,
    DeferReplace,
    DeferUpdate,
    Synchronize,
    Reclaim,
    Barrier,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Read),
        2 => Just(Op::Open),
        1 => Just(Op::OpenSection),
        2 => any::<bool>().prop_map(Op::Close),
        1 => Just(Op::Replace),
        1 => Just(Op::Update),
        3 => Just(Op::DeferReplace),
        2 => Just(Op::DeferUpdate),
        1 => Just(Op::Synchronize),
        1 => Just(Op::Reclaim),
        1 => Just(Op::Barrier),
    ]
}

/// What this thread holds open.
enum Held<'a> {
    Guard(RcuReadGuard<'a, Tracked>),
    Section(#[allow(dead_code)] RcuReadSection), // held for its `Drop`
}

/// The operations both cells offer, so one model drives both.
trait Cell {
    fn read(&self) -> RcuReadGuard<'_, Tracked>;
    fn replace(&self, v: Tracked) -> Tracked;
    fn update(&self, f: impl FnOnce(&Tracked) -> Tracked) -> Tracked;
    fn defer_replace(&self, v: Tracked);
    fn defer_update(&self, f: impl FnOnce(&Tracked) -> Tracked);
    fn reclaim(&self) -> usize;
    fn barrier(&self);
    fn deferred(&self) -> usize;
    /// Most old values it keeps queued.
    const BACKLOG: usize;
    /// Whether a deferred update with `deferred` values queued may wait for a grace period.
    fn defer_may_wait(deferred: usize) -> bool;
}

macro_rules! impl_cell {
    ($t:ty, $backlog:expr, $may_wait:expr) => {
        impl Cell for $t {
            fn read(&self) -> RcuReadGuard<'_, Tracked> {
                <$t>::read(self)
            }
            fn replace(&self, v: Tracked) -> Tracked {
                <$t>::replace(self, v)
            }
            fn update(&self, f: impl FnOnce(&Tracked) -> Tracked) -> Tracked {
                <$t>::update(self, f)
            }
            fn defer_replace(&self, v: Tracked) {
                <$t>::defer_replace(self, v)
            }
            fn defer_update(&self, f: impl FnOnce(&Tracked) -> Tracked) {
                <$t>::defer_update(self, f)
            }
            fn reclaim(&self) -> usize {
                <$t>::reclaim(self)
            }
            fn barrier(&self) {
                <$t>::barrier(self)
            }
            fn deferred(&self) -> usize {
                <$t>::deferred(self)
            }
            const BACKLOG: usize = $backlog;
            fn defer_may_wait(deferred: usize) -> bool {
                $may_wait(deferred)
            }
        }
    };
}

// `Rcu` waits when the push fills its batch; the ring when no spare slot is free.
impl_cell!(Rcu<Tracked>, DEFER_BATCH, |d| d + 1 >= DEFER_BATCH);
impl_cell!(RcuRing<Tracked, 3>, 2, |d| d == 2);

fn run<C: Cell>(make: impl FnOnce(Tracked) -> C, ops: &[Op]) {
    let log = Arc::new(Log::default());
    let mut next_id = 0;
    let mut fresh = |log: &Arc<Log>| {
        next_id += 1;
        Tracked::new(next_id, log)
    };
    let cell = make(fresh(&log));
    let mut current = 1u64;
    let mut held: Vec<Held<'_>> = Vec::new();
    for op in ops {
        // A grace period waits for this thread's own open sections: a waiting operation first
        // closes them (as a real caller must); a deferred one may wait when its backlog is full.
        let waits = matches!(op, Op::Replace | Op::Update | Op::Synchronize | Op::Barrier)
            || (matches!(op, Op::DeferReplace | Op::DeferUpdate)
                && C::defer_may_wait(cell.deferred()));
        if waits {
            held.clear();
        }
        match *op {
            Op::Read => {
                let g = cell.read();
                assert_eq!(g.id, current);
                g.check();
            }
            Op::Open => {
                let g = cell.read();
                assert_eq!(g.id, current);
                held.push(Held::Guard(g));
            }
            Op::OpenSection => held.push(Held::Section(rcu::read_lock())),
            Op::Close(newest) => {
                if !held.is_empty() {
                    let i = if newest { held.len() - 1 } else { 0 };
                    drop(held.remove(i));
                }
            }
            Op::Replace => {
                let v = fresh(&log);
                let id = v.id;
                let old = cell.replace(v);
                assert_eq!(old.id, current);
                old.check();
                current = id;
            }
            Op::Update => {
                let v = fresh(&log);
                let id = v.id;
                let old = cell.update(|cur| {
                    assert_eq!(cur.id, current);
                    v
                });
                assert_eq!(old.id, current);
                current = id;
            }
            Op::DeferReplace => {
                let v = fresh(&log);
                current = v.id;
                cell.defer_replace(v);
            }
            Op::DeferUpdate => {
                let v = fresh(&log);
                let id = v.id;
                cell.defer_update(|cur| {
                    assert_eq!(cur.id, current);
                    v
                });
                current = id;
            }
            Op::Synchronize => rcu::synchronize(),
            Op::Reclaim => {
                let before = cell.deferred();
                let n = cell.reclaim();
                assert!(n <= before);
                assert_eq!(cell.deferred(), before - n);
            }
            Op::Barrier => {
                cell.barrier();
                assert_eq!(cell.deferred(), 0);
            }
        }
        assert!(cell.deferred() <= C::BACKLOG, "backlog bound");
        for h in &held {
            if let Held::Guard(g) = h {
                g.check();
            }
        }
        let g = cell.read();
        assert_eq!(g.id, current);
    }
    drop(held);
    drop(cell);
    let freed = log.freed.lock().unwrap();
    assert_eq!(freed.len() as u64, next_id, "every value dropped once");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn rcu_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(Rcu::new, &ops);
    }

    #[test]
    fn ring_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(RcuRing::<Tracked, 3>::new, &ops);
    }
}
