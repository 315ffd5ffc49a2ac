//! The run queue: runnable vCPUs waiting for a pCPU, served in FIFO order.

use std::collections::VecDeque;

/// Runnable vCPUs waiting for a pCPU, head first. Each vCPU is in it at most once (the
/// scheduler's invariant; [`RunQueue::push_back`] and [`RunQueue::push_front`] do not check).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunQueue(VecDeque<u32>);

impl RunQueue {
    /// A queue holding `ids` in order.
    pub fn new(ids: impl IntoIterator<Item = u32>) -> Self {
        RunQueue(ids.into_iter().collect())
    }

    /// Queues `id` at the back (preempted, yielded).
    pub fn push_back(&mut self, id: u32) {
        self.0.push_back(id);
    }

    /// Queues `id` at the head (the wake-up boost of a vCPU woken from a halt).
    pub fn push_front(&mut self, id: u32) {
        self.0.push_front(id);
    }

    /// Takes the head.
    pub fn pop_front(&mut self) -> Option<u32> {
        self.0.pop_front()
    }

    /// The head.
    pub fn front(&self) -> Option<u32> {
        self.0.front().copied()
    }

    /// Takes `id` out wherever it is (no-op if absent).
    pub fn remove(&mut self, id: u32) {
        self.0.retain(|&q| q != id);
    }

    /// Whether `id` waits in the queue.
    pub fn contains(&self, id: u32) -> bool {
        self.0.contains(&id)
    }

    /// Puts `new` in `old`'s place (a directed yield: the caller takes its target's place, so
    /// the round-robin order is kept); `false`, and no change, if `old` is not queued.
    pub fn replace(&mut self, old: u32, new: u32) -> bool {
        match self.0.iter().position(|&q| q == old) {
            Some(i) => {
                self.0[i] = new;
                true
            }
            None => false,
        }
    }

    /// The waiting vCPUs, head first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// How many vCPUs wait.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(q: &RunQueue) -> Vec<u32> {
        q.0.iter().copied().collect()
    }

    #[test]
    fn fifo_with_boost_removal_and_replacement() {
        let mut q = RunQueue::new([1, 2, 3]);
        q.push_back(4);
        q.push_front(0);
        assert_eq!(ids(&q), [0, 1, 2, 3, 4]);
        assert_eq!(q.pop_front(), Some(0));
        q.remove(2);
        q.remove(9);
        assert_eq!(ids(&q), [1, 3, 4]);
        assert!(q.replace(3, 7));
        assert!(!q.replace(3, 8), "3 is gone");
        assert_eq!(ids(&q), [1, 7, 4]);
        assert!(q.contains(7) && !q.contains(3));
        assert_eq!((q.front(), q.len(), q.is_empty()), (Some(1), 3, false));
    }
}
