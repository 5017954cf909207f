//! The suffixes (oid & 0xffff) present in one index bucket, each with its
//! rank: the slot of its position in the bucket's [`Positions`].
//!
//! ```text
//! List([u16])                       sorted suffixes, 2 bytes an entry
//! Bits { words: [u64], ranks: [u16] }
//!   bit s of words = suffix s present (suffixes 0 .. 64 * words.len())
//!   ranks[b]       = set bits in words[.. 8 * b]
//! ```
//! New oids count up, so a bucket is usually dense and the bitmap costs
//! about 1/8 byte an entry; a rank is one `ranks` lookup plus at most
//! eight popcounts. Sparse buckets (huge or scattered oids) keep a list.
//! The form is chosen by size: a list becomes a bitmap once the bitmap is
//! smaller, a bitmap a list once it is four times larger than the list
//! (the margin keeps a bucket from flipping back and forth).
//!
//! [`Positions`]: super::positions::Positions

const BLOCK_WORDS: usize = 8;

#[derive(Debug, Clone)]
pub enum Keys {
    List(Vec<u16>),
    Bits { words: Vec<u64>, ranks: Vec<u16> },
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::List(Vec::new())
    }
}

/// Heap bytes of a bitmap of `words` words with its rank directory.
fn bits_bytes(words: usize) -> usize {
    words * 8 + words.div_ceil(BLOCK_WORDS) * 2
}

fn words_for(max_suffix: u16) -> usize {
    usize::from(max_suffix) / 64 + 1
}

impl Keys {
    /// Sorted, distinct suffixes (as read from an `.index` file).
    pub fn from_sorted(list: Vec<u16>) -> Keys {
        let len = list.len();
        let mut k = Keys::List(list);
        k.tune(len);
        k
    }

    /// `Ok(rank)` when `s` is present, else `Err(rank it would get)`.
    pub fn find(&self, s: u16) -> Result<usize, usize> {
        match self {
            Keys::List(v) => v.binary_search(&s),
            Keys::Bits { words, ranks } => {
                let rank = count_below(words, ranks, usize::from(s));
                match words.get(usize::from(s) / 64) {
                    Some(w) if w & (1 << (s % 64)) != 0 => Ok(rank),
                    _ => Err(rank),
                }
            }
        }
    }

    /// Adds `s`, absent, at `rank` (from [`Keys::find`]); `len` is the
    /// entry count after it.
    pub fn insert(&mut self, s: u16, rank: usize, len: usize) {
        match self {
            Keys::List(v) => v.insert(rank, s),
            Keys::Bits { words, ranks } => {
                let w = usize::from(s) / 64;
                if w >= words.len() {
                    let total = count_below(words, ranks, words.len() * 64);
                    let total = u16::try_from(total).unwrap_or(u16::MAX);
                    words.resize(w + 1, 0);
                    ranks.resize(words.len().div_ceil(BLOCK_WORDS), total);
                }
                words[w] |= 1 << (s % 64);
                for r in &mut ranks[w / BLOCK_WORDS + 1..] {
                    *r += 1;
                }
            }
        }
        self.tune(len);
    }

    /// Drops `s`, present at `rank`; `len` is the entry count after it.
    pub fn remove(&mut self, s: u16, rank: usize, len: usize) {
        match self {
            Keys::List(v) => {
                v.remove(rank);
            }
            Keys::Bits { words, ranks } => {
                let w = usize::from(s) / 64;
                words[w] &= !(1 << (s % 64));
                for r in &mut ranks[w / BLOCK_WORDS + 1..] {
                    *r -= 1;
                }
            }
        }
        self.tune(len);
    }

    pub fn max(&self) -> Option<u16> {
        match self {
            Keys::List(v) => v.last().copied(),
            Keys::Bits { words, .. } => {
                let (w, word) = words.iter().enumerate().rev().find(|(_, w)| **w != 0)?;
                u16::try_from(w * 64 + 63 - word.leading_zeros() as usize).ok()
            }
        }
    }

    /// The first suffix >= `s` and its rank.
    pub fn next_from(&self, s: u16) -> Option<(u16, usize)> {
        match self {
            Keys::List(v) => {
                let i = v.partition_point(|x| *x < s);
                v.get(i).map(|x| (*x, i))
            }
            Keys::Bits { words, ranks } => {
                let mut w = usize::from(s) / 64;
                let mut word = *words.get(w)? & (u64::MAX << (s % 64));
                while word == 0 {
                    w += 1;
                    word = *words.get(w)?;
                }
                let found = w * 64 + word.trailing_zeros() as usize;
                let found16 = u16::try_from(found).ok()?;
                Some((found16, count_below(words, ranks, found)))
            }
        }
    }

    pub fn iter(&self) -> KeysIter<'_> {
        match self {
            Keys::List(v) => KeysIter::List(v.iter()),
            Keys::Bits { words, .. } => KeysIter::Bits {
                words,
                w: 0,
                cur: words.first().copied().unwrap_or(0),
            },
        }
    }

    pub fn shrink(&mut self) {
        match self {
            Keys::List(v) => v.shrink_to_fit(),
            Keys::Bits { words, ranks } => {
                words.shrink_to_fit();
                ranks.shrink_to_fit();
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Keys::List(v) => v.capacity() * 2,
            Keys::Bits { words, ranks } => words.capacity() * 8 + ranks.capacity() * 2,
        }
    }

    /// Switches form when the other one is smaller (see the module doc).
    fn tune(&mut self, len: usize) {
        match self {
            Keys::List(v) => {
                let Some(max) = v.last() else { return };
                if bits_bytes(words_for(*max)) < len * 2 {
                    let mut words = vec![0u64; words_for(*max)];
                    for s in v.iter() {
                        words[usize::from(*s) / 64] |= 1 << (s % 64);
                    }
                    let ranks = rank_directory(&words);
                    *self = Keys::Bits { words, ranks };
                }
            }
            Keys::Bits { words, .. } => {
                if bits_bytes(words.len()) > len * 2 * 4 {
                    *self = Keys::List(self.iter().collect());
                }
            }
        }
    }
}

fn rank_directory(words: &[u64]) -> Vec<u16> {
    let mut total = 0usize;
    words
        .chunks(BLOCK_WORDS)
        .map(|block| {
            let before = u16::try_from(total).unwrap_or(u16::MAX);
            total += block.iter().map(|w| w.count_ones() as usize).sum::<usize>();
            before
        })
        .collect()
}

/// Set bits below bit `s`; any `s` past the bitmap counts them all.
fn count_below(words: &[u64], ranks: &[u16], s: usize) -> usize {
    let w = s / 64;
    let (w, partial) = if w >= words.len() {
        (words.len(), 0)
    } else {
        (w, words[w] & ((1u64 << (s % 64)) - 1))
    };
    let block = w / BLOCK_WORDS;
    let Some(base) = ranks.get(block.min(ranks.len().saturating_sub(1))) else {
        return 0;
    };
    let from = block.min(ranks.len() - 1) * BLOCK_WORDS;
    let whole: usize = words[from..w].iter().map(|x| x.count_ones() as usize).sum();
    usize::from(*base) + whole + partial.count_ones() as usize
}

pub enum KeysIter<'a> {
    List(std::slice::Iter<'a, u16>),
    Bits {
        words: &'a [u64],
        w: usize,
        cur: u64,
    },
}

impl Iterator for KeysIter<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        match self {
            KeysIter::List(it) => it.next().copied(),
            KeysIter::Bits { words, w, cur } => {
                while *cur == 0 {
                    *w += 1;
                    *cur = *words.get(*w)?;
                }
                let bit = cur.trailing_zeros() as usize;
                *cur &= *cur - 1;
                u16::try_from(*w * 64 + bit).ok()
            }
        }
    }
}
