//! One index bucket: the objects whose oids share the high 48 bits, as a
//! suffix set and a parallel position array (entry i of [`Positions`] is
//! the suffix of rank i in [`Keys`]).

use super::keys::{Keys, KeysIter};
use super::positions::Positions;

#[derive(Debug, Clone, Default)]
pub struct Bucket {
    keys: Keys,
    pos: Positions,
}

impl Bucket {
    /// `suffixes` sorted without duplicates (checked by the caller), with
    /// their positions.
    pub fn from_sorted(suffixes: Vec<u16>, positions: Vec<u64>) -> Bucket {
        Bucket {
            keys: Keys::from_sorted(suffixes),
            pos: Positions::from_vec(positions),
        }
    }

    pub fn len(&self) -> usize {
        self.pos.len()
    }

    pub fn get(&self, s: u16) -> Option<u64> {
        self.keys.find(s).ok().map(|i| self.pos.get(i))
    }

    /// True when `s` is new.
    pub fn insert(&mut self, s: u16, pos: u64) -> bool {
        match self.keys.find(s) {
            Ok(i) => {
                self.pos.set(i, pos);
                false
            }
            Err(i) => {
                self.pos.insert(i, pos);
                self.keys.insert(s, i, self.pos.len());
                true
            }
        }
    }

    pub fn remove(&mut self, s: u16) -> Option<u64> {
        let i = self.keys.find(s).ok()?;
        let pos = self.pos.remove(i);
        self.keys.remove(s, i, self.pos.len());
        Some(pos)
    }

    pub fn max_suffix(&self) -> Option<u16> {
        self.keys.max()
    }

    /// The first entry with suffix >= `s`.
    pub fn first_from(&self, s: u16) -> Option<(u16, u64)> {
        self.keys
            .next_from(s)
            .map(|(found, i)| (found, self.pos.get(i)))
    }

    pub fn iter(&self) -> BucketIter<'_> {
        BucketIter {
            keys: self.keys.iter(),
            pos: &self.pos,
            next: 0,
        }
    }

    pub fn shrink(&mut self) {
        self.keys.shrink();
        self.pos.shrink();
    }

    pub fn heap_bytes(&self) -> usize {
        self.keys.heap_bytes() + self.pos.heap_bytes()
    }
}

pub struct BucketIter<'a> {
    keys: KeysIter<'a>,
    pos: &'a Positions,
    next: usize,
}

impl Iterator for BucketIter<'_> {
    type Item = (u16, u64);

    fn next(&mut self) -> Option<(u16, u64)> {
        let s = self.keys.next()?;
        let pos = self.pos.get(self.next);
        self.next += 1;
        Some((s, pos))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.pos.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for BucketIter<'_> {}
