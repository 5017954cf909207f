//! The in-memory index: oid → file position of the object's current data
//! record, shaped like ZODB's fsIndex so it maps 1:1 onto the `.index` file.
//!
//! ```text
//! BTreeMap<prefix: oid >> 16, Bucket>
//! Bucket: suffixes (oid & 0xffff)   bitmap (dense) or sorted list (sparse)
//!         positions, by rank        base + u32 offsets, or 48-bit values
//! ```
//! Oids are handed out by a counter, so a bucket is normally a run of
//! consecutive suffixes: a presence bitmap (~1/8 byte an object) and
//! 4-byte offsets from the bucket's lowest position. A lookup is a B-tree
//! step and a rank (one table lookup, at most eight popcounts); replacing
//! the position of an existing oid (every commit) is O(1) after that; a new
//! oid past the bucket's last one appends. Sparse buckets fall back to a
//! sorted suffix list, buckets whose positions span over 4 GiB to 6-byte
//! positions (see `keys.rs`, `positions.rs`).
//!
//! Measured footprint (`bytes_per_object`, test
//! `footprint_is_about_four_bytes_per_object`): 4.13 bytes per object for a
//! dense 1M-object index after `shrink`, 4.1 on benches/makefs.py's 1M file
//! (8.3 with the former suffix+position u64 entries); at most ~8 for
//! scattered oids with positions over 4 GiB apart. fsIndex in Python needs
//! roughly 8 plus per-bucket object headers, a dict over 100.
//!
//! An index filled out of oid order (the pack's reachable set and the
//! packed file's index) is built with [`IndexBuilder`], which batches new
//! oids instead of inserting each into the middle of a bucket.

mod bucket;
mod builder;
mod keys;
mod positions;

use std::collections::BTreeMap;

use bucket::Bucket;
pub use builder::IndexBuilder;

use crate::ids::Oid;

/// The largest position the file format can hold.
const POS_MAX: u64 = (1 << 48) - 1;

#[derive(Debug, Default, Clone)]
pub struct Index {
    buckets: BTreeMap<u64, Bucket>,
    len: usize,
}

fn split(oid: Oid) -> (u64, u16) {
    let n = oid.as_u64();
    (n >> 16, (n & 0xffff) as u16)
}

fn join(prefix: u64, suffix: u16) -> Oid {
    Oid::from_u64((prefix << 16) | u64::from(suffix))
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, oid: Oid) -> Option<u64> {
        let (prefix, suffix) = split(oid);
        self.buckets.get(&prefix)?.get(suffix)
    }

    /// `pos` must fit in 48 bits (the file format's limit, checked by the
    /// writer before it ever produces such a position).
    pub fn insert(&mut self, oid: Oid, pos: u64) {
        debug_assert!(pos <= POS_MAX);
        let (prefix, suffix) = split(oid);
        if self.buckets.entry(prefix).or_default().insert(suffix, pos) {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, oid: Oid) -> Option<u64> {
        let (prefix, suffix) = split(oid);
        let bucket = self.buckets.get_mut(&prefix)?;
        let pos = bucket.remove(suffix)?;
        if bucket.len() == 0 {
            self.buckets.remove(&prefix);
        }
        self.len -= 1;
        Some(pos)
    }

    pub fn max_oid(&self) -> Option<Oid> {
        let (prefix, bucket) = self.buckets.iter().next_back()?;
        bucket.max_suffix().map(|s| join(*prefix, s))
    }

    /// The first entry with oid >= `from`.
    pub fn first_from(&self, from: Oid) -> Option<(Oid, u64)> {
        let (prefix, suffix) = split(from);
        self.buckets.range(prefix..).find_map(|(p, bucket)| {
            let start = if *p == prefix { suffix } else { 0 };
            bucket.first_from(start).map(|(s, pos)| (join(*p, s), pos))
        })
    }

    /// The first entry with oid > `after`.
    pub fn first_after(&self, after: Oid) -> Option<(Oid, u64)> {
        let next = after.as_u64().checked_add(1)?;
        self.first_from(Oid::from_u64(next))
    }

    pub fn iter(&self) -> impl Iterator<Item = (Oid, u64)> + '_ {
        self.buckets
            .iter()
            .flat_map(|(p, b)| b.iter().map(move |(s, pos)| (join(*p, s), pos)))
    }

    /// `(prefix, [(suffix, pos)])` in order: the shape of the `.index` file.
    pub fn buckets(
        &self,
    ) -> impl Iterator<Item = (u64, impl ExactSizeIterator<Item = (u16, u64)> + '_)> + '_ {
        self.buckets.iter().map(|(p, b)| (*p, b.iter()))
    }

    /// Installs a whole bucket read from an `.index` file. `pairs` must be
    /// sorted by suffix without duplicates; returns false (and changes
    /// nothing) otherwise, or when the prefix is already present.
    pub fn insert_bucket(&mut self, prefix: u64, pairs: impl Iterator<Item = (u16, u64)>) -> bool {
        if prefix >> 48 != 0 || self.buckets.contains_key(&prefix) {
            return false;
        }
        let n = pairs.size_hint().0;
        let (mut suffixes, mut positions) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (suffix, pos) in pairs {
            if pos > POS_MAX || suffixes.last().is_some_and(|last| *last >= suffix) {
                return false;
            }
            suffixes.push(suffix);
            positions.push(pos);
        }
        if !suffixes.is_empty() {
            self.len += suffixes.len();
            self.buckets
                .insert(prefix, Bucket::from_sorted(suffixes, positions));
        }
        true
    }

    /// Drops growth slack after a bulk load.
    pub fn shrink(&mut self) {
        for b in self.buckets.values_mut() {
            b.shrink();
        }
    }

    /// Approximate heap bytes held (bucket arrays plus B-tree nodes).
    pub fn heap_bytes(&self) -> usize {
        // A BTreeMap leaf holds up to 11 (key, value) pairs plus ~16 bytes
        // of node bookkeeping per pair on average.
        let per_bucket = 8 + std::mem::size_of::<Bucket>() + 16;
        self.buckets
            .values()
            .map(|b| b.heap_bytes() + per_bucket)
            .sum()
    }

    pub fn bytes_per_object(&self) -> f64 {
        if self.len == 0 {
            return 0.0;
        }
        self.heap_bytes() as f64 / self.len as f64
    }
}

#[cfg(test)]
mod tests;
