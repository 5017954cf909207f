//! Building an index from entries that arrive out of oid order.

use rustc_hash::FxHashMap;

use super::Index;
use crate::ids::Oid;

/// Lower bound of the number of new entries merged at a time.
const MERGE_AT_LEAST: usize = 1 << 16;

/// An [`Index`] filled in no particular oid order: the pack's reachable
/// set (in the order references are found) and the new file's index (in
/// file order). An index bucket keeps up to 65536 positions by rank, so a
/// new oid in the middle of one moves up to 256 KiB: inserting in reference
/// order sent 80 % of a 200k-object pack to `memmove`. New entries collect in a hash map
/// instead, merged into the index in one sorted pass whenever the map holds
/// a quarter as many entries as the index (so each entry is copied a few
/// times in all, and the map adds at most ~8 bytes per object).
#[derive(Default)]
pub struct IndexBuilder {
    index: Index,
    /// Oids are small consecutive integers: FxHash (one multiply) instead
    /// of the default SipHash, which was a tenth of a pack's CPU.
    recent: FxHashMap<Oid, u64>,
}

impl IndexBuilder {
    pub fn get(&self, oid: Oid) -> Option<u64> {
        self.recent
            .get(&oid)
            .copied()
            .or_else(|| self.index.get(oid))
    }

    pub fn insert(&mut self, oid: Oid, pos: u64) {
        self.recent.insert(oid, pos);
        if self.recent.len() >= MERGE_AT_LEAST.max(self.index.len() / 4) {
            self.merge();
        }
    }

    fn merge(&mut self) {
        let mut recent: Vec<(Oid, u64)> = self.recent.drain().collect();
        recent.sort_unstable_by_key(|(oid, _)| *oid);
        let old = std::mem::take(&mut self.index);
        let mut old = old.iter().peekable();
        let mut recent = recent.into_iter().peekable();
        // Both in oid order, so every insert appends to its array.
        loop {
            let next = match (old.peek(), recent.peek()) {
                (Some(o), Some(r)) if o.0 < r.0 => old.next(),
                (Some(o), Some(r)) if o.0 == r.0 => {
                    old.next();
                    recent.next()
                }
                (_, Some(_)) => recent.next(),
                (Some(_), None) => old.next(),
                (None, None) => break,
            };
            if let Some((oid, pos)) = next {
                self.index.insert(oid, pos);
            }
        }
    }

    pub fn finish(mut self) -> Index {
        self.merge();
        self.index.shrink();
        self.index
    }
}
