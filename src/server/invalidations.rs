//! The per-storage invalidation queue behind `getInvalidations` (spec §9):
//! the most recent commits' `(tid, oids)`, so a reconnecting client with a
//! persistent cache learns what changed instead of dropping its cache.

use std::collections::VecDeque;

use crate::ids::{Oid, Tid};

pub struct InvalidationQueue {
    capacity: usize,
    /// Newest first.
    entries: VecDeque<(Tid, Vec<Oid>)>,
}

impl InvalidationQueue {
    /// `seed` is newest first, as `FileStorage::last_invalidations` gives it.
    pub fn new(capacity: usize, seed: Vec<(Tid, Vec<Oid>)>) -> InvalidationQueue {
        let mut entries: VecDeque<_> = seed.into_iter().collect();
        entries.truncate(capacity);
        InvalidationQueue { capacity, entries }
    }

    /// Transactions kept (for metrics).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn push(&mut self, tid: Tid, oids: Vec<Oid>) {
        if self.capacity == 0 {
            return;
        }
        self.entries.push_front((tid, oids));
        self.entries.truncate(self.capacity);
    }

    /// `(newest tid, oids changed after `after`)` if the queue reaches back
    /// far enough to answer exactly; `None` if it does not.
    pub fn since(&self, after: Tid) -> Option<(Tid, Vec<Oid>)> {
        let (oldest, _) = self.entries.back()?;
        if *oldest > after {
            return None;
        }
        let newest = self.entries.front().map(|(tid, _)| *tid)?;
        let mut oids: Vec<Oid> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (tid, changed) in self.entries.iter().rev() {
            if *tid > after {
                for oid in changed {
                    if seen.insert(*oid) {
                        oids.push(*oid);
                    }
                }
            }
        }
        Some((newest, oids))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(n: u64) -> Tid {
        Tid::from_u64(n)
    }

    #[test]
    fn answers_only_when_it_reaches_back_far_enough() {
        let mut q = InvalidationQueue::new(
            3,
            vec![
                (t(2), vec![Oid::from_u64(2)]),
                (t(1), vec![Oid::from_u64(1)]),
            ],
        );
        assert_eq!(q.since(t(0)), None);
        assert_eq!(q.since(t(1)), Some((t(2), vec![Oid::from_u64(2)])));
        assert_eq!(q.since(t(2)), Some((t(2), vec![])));
        q.push(t(3), vec![Oid::from_u64(2), Oid::from_u64(3)]);
        q.push(t(4), vec![Oid::from_u64(4)]);
        assert_eq!(q.since(t(1)), None, "t(1) fell out");
        assert_eq!(
            q.since(t(2)),
            Some((
                t(4),
                vec![Oid::from_u64(2), Oid::from_u64(3), Oid::from_u64(4)]
            ))
        );
        assert!(InvalidationQueue::new(0, vec![]).since(t(0)).is_none());
    }
}
