//! The file positions of one index bucket, in suffix order.
//!
//! ```text
//! Narrow { base, offs: [u32] }   pos = base + off   (4 bytes an entry)
//! Wide([u8; 6])                  48-bit little-endian (6 bytes an entry)
//! ```
//! A bucket's objects are usually written within a few transactions of
//! each other and rewritten later in the same file, so their positions
//! span far less than 4 GiB: Narrow holds almost every bucket of a file
//! under 4 GiB and many of a larger one. Wide is the fallback when the
//! span grows past that.

const WIDE_BYTES: usize = 6;
const SPAN: u64 = u32::MAX as u64;

#[derive(Debug, Clone)]
pub enum Positions {
    Narrow { base: u64, offs: Vec<u32> },
    Wide(Vec<[u8; WIDE_BYTES]>),
}

impl Default for Positions {
    fn default() -> Positions {
        Positions::Narrow {
            base: 0,
            offs: Vec::new(),
        }
    }
}

fn wide(pos: u64) -> [u8; WIDE_BYTES] {
    let b = pos.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

fn unwide(w: &[u8; WIDE_BYTES]) -> u64 {
    let mut b = [0u8; 8];
    b[..WIDE_BYTES].copy_from_slice(w);
    u64::from_le_bytes(b)
}

impl Positions {
    /// A bucket loaded whole (from an `.index` file): Narrow when it fits.
    pub fn from_vec(all: Vec<u64>) -> Positions {
        let mut p = Positions::default();
        p.refit(all, None);
        p
    }

    pub fn len(&self) -> usize {
        match self {
            Positions::Narrow { offs, .. } => offs.len(),
            Positions::Wide(v) => v.len(),
        }
    }

    pub fn get(&self, i: usize) -> u64 {
        match self {
            Positions::Narrow { base, offs } => base + u64::from(offs[i]),
            Positions::Wide(v) => unwide(&v[i]),
        }
    }

    pub fn set(&mut self, i: usize, pos: u64) {
        match self {
            Positions::Narrow { base, offs } => match narrow(*base, pos) {
                Some(off) => offs[i] = off,
                None => {
                    let mut all = self.to_vec();
                    all[i] = pos;
                    self.refit(all, Some(pos));
                }
            },
            Positions::Wide(v) => v[i] = wide(pos),
        }
    }

    pub fn insert(&mut self, i: usize, pos: u64) {
        match self {
            Positions::Narrow { base, offs } => {
                if offs.is_empty() {
                    *base = pos;
                }
                match narrow(*base, pos) {
                    Some(off) => offs.insert(i, off),
                    None => {
                        let mut all = self.to_vec();
                        all.insert(i, pos);
                        self.refit(all, Some(pos));
                    }
                }
            }
            Positions::Wide(v) => v.insert(i, wide(pos)),
        }
    }

    pub fn remove(&mut self, i: usize) -> u64 {
        match self {
            Positions::Narrow { base, offs } => *base + u64::from(offs.remove(i)),
            Positions::Wide(v) => unwide(&v.remove(i)),
        }
    }

    /// Drops growth slack, and goes back to Narrow if rewrites have
    /// brought a Wide bucket's span under 4 GiB again.
    pub fn shrink(&mut self) {
        match self {
            Positions::Narrow { offs, .. } => offs.shrink_to_fit(),
            Positions::Wide(_) => {
                let all = self.to_vec();
                self.refit(all, None);
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Positions::Narrow { offs, .. } => offs.capacity() * 4,
            Positions::Wide(v) => v.capacity() * WIDE_BYTES,
        }
    }

    fn to_vec(&self) -> Vec<u64> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// Re-encodes `all`. `new` is the position that did not fit: when it
    /// lies below the old base, the base moves down by half the spare span
    /// too, so positions arriving in decreasing order (a pack merging in
    /// oid order) re-encode a bucket O(log span) times, not once each.
    fn refit(&mut self, all: Vec<u64>, new: Option<u64>) {
        let (Some(lo), Some(hi)) = (all.iter().min().copied(), all.iter().max().copied()) else {
            *self = Positions::default();
            return;
        };
        if hi - lo > SPAN {
            *self = Positions::Wide(all.into_iter().map(wide).collect());
            return;
        }
        let base = match new {
            Some(p) if p == lo => lo.saturating_sub((SPAN - (hi - lo)) / 2),
            _ => lo,
        };
        let offs = all.iter().map(|p| (p - base) as u32).collect();
        *self = Positions::Narrow { base, offs };
    }
}

fn narrow(base: u64, pos: u64) -> Option<u32> {
    pos.checked_sub(base)
        .and_then(|off| u32::try_from(off).ok())
}
