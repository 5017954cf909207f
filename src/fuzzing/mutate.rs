//! Byte-level mutation without coverage feedback: a deterministic PRNG
//! (splitmix64, so `--seed` replays a run) and the classic AFL-style
//! operators — bit flips, interesting integers (lengths and positions near
//! the limits, big-endian as every ZEO and FileStorage field is), block
//! deletion, duplication and insertion, truncation, splicing two inputs,
//! and tokens of the target's format.

/// splitmix64: tiny, fast, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Inputs never grow past this.
pub const MAX_INPUT: usize = 1 << 20;

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    4,
    8,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Tokens worth splicing in, by target.
pub fn tokens(target: &str) -> &'static [&'static [u8]] {
    match target {
        "pickle3" | "pickle1" | "record" => &[
            b"\x80\x03",
            b"\x80\x02",
            b"(",
            b")",
            b"t",
            b"\x85",
            b"\x86",
            b"\x87",
            b"}",
            b"]",
            b"e",
            b"u",
            b"s",
            b"a",
            b"0",
            b"2",
            b"q\x00",
            b"h\x00",
            b"r\x00\x00\x00\x00",
            b"j\x00\x00\x00\x00",
            b"g0\n",
            b"p0\n",
            b"K\x01",
            b"M\xff\xff",
            b"J\xff\xff\xff\xff",
            b"\x8a\x08",
            b"\x8b\xff\xff\xff\xff",
            b"L123L\n",
            b"I01\n",
            b"F1.5\n",
            b"G\x7f\xf0\x00\x00\x00\x00\x00\x00",
            b"C\x08",
            b"B\xff\xff\xff\x7f",
            b"U\x08",
            b"T\xff\xff\xff\x7f",
            b"X\x04\x00\x00\x00",
            b"V\\u1234\n",
            b"S'x'\n",
            b"cZODB.broken\nBroken\n",
            b"czodbpickle\nbinary\n",
            b"c__builtin__\nset\n",
            b"ccopy_reg\n_reconstructor\n",
            b"cos\nsystem\n",
            b"\x93",
            b"R",
            b"b",
            b"Q",
            b"P0\n",
            b"N",
            b"\x88",
            b"\x89",
            b".",
        ],
        "msgpack" => &[
            b"\x90",
            b"\x93",
            b"\xdc\xff\xff",
            b"\xdd\xff\xff\xff\xff",
            b"\x80",
            b"\xde\xff\xff",
            b"\xdf\xff\xff\xff\xff",
            b"\xc4\xff",
            b"\xc5\xff\xff",
            b"\xc6\xff\xff\xff\xff",
            b"\xd9\x10",
            b"\xdb\xff\xff\xff\xff",
            b"\xa8register",
            b"\xa6.reply",
            b"\xc0",
            b"\xc2",
            b"\xc3",
            b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xd3",
            b"\xcb",
            b"\xd4\x01\x00",
            b"\xc7\x00\x05",
            b"\xc1",
        ],
        "zconfig" => &[
            b"<zeo>\n",
            b"</zeo>\n",
            b"<filestorage 1>\n",
            b"</filestorage>\n",
            b"<blobstorage>\n",
            b"</blobstorage>\n",
            b"<eventlog>\n",
            b"<logfile>\n",
            b"</logfile>\n",
            b"<ssl>\n",
            b"%import ZEO\n",
            b"%define X y\n",
            b"%include other.conf\n",
            b"$X",
            b"${X}",
            b"$$",
            b" address ",
            b" path ",
            b" blob-dir ",
            b" read-only true\n",
            b" quota 1KB\n",
            b" max-frame-size 99999999999GB\n",
            b" handshake-timeout -1\n",
            b" pack-schedule ",
            b" pack-days nan\n",
            b"#",
            b"\n",
            b"<",
            b">",
            b"</",
            b"\t",
            b"\r\n",
        ],
        _ => &[],
    }
}

/// One mutant of `input`; `other` (another seed) feeds splicing.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8], target: &str) -> Vec<u8> {
    let mut data = input.to_vec();
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        mutate_once(rng, &mut data, other, target);
    }
    data.truncate(MAX_INPUT);
    data
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], target: &str) {
    let len = data.len();
    match rng.below(12) {
        0 if len > 0 => {
            let at = rng.below(len);
            data[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            data[at] = rng.next_u64() as u8;
        }
        2 | 3 if len > 0 => {
            // An interesting integer, big-endian, 1/2/4/8 bytes wide.
            let width = 1 << rng.below(4);
            let mut value = INTERESTING[rng.below(INTERESTING.len())];
            if rng.chance(3) {
                value = value.wrapping_add(rng.below(5) as u64).wrapping_sub(2);
            }
            let bytes = value.to_be_bytes();
            let at = rng.below(len);
            for (i, b) in bytes[8 - width..].iter().enumerate() {
                if let Some(slot) = data.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        4 if len > 1 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            data.drain(at..at + n);
        }
        5 if len > 0 => {
            // Duplicate a block (repeated records, nested containers).
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(256));
            let block = data[at..at + n].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, block);
        }
        6 => {
            let n = 1 + rng.below(16);
            let to = rng.below(len + 1);
            let fill: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(to..to, fill);
        }
        7 if len > 0 => {
            let to = rng.below(len);
            data.truncate(to);
        }
        8 if !other.is_empty() => {
            // Splice: our head, the other input's tail.
            let cut = rng.below(len + 1);
            let from = rng.below(other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        9 | 10 => {
            let list = tokens(target);
            if !list.is_empty() {
                let token = list[rng.below(list.len())];
                let to = rng.below(len + 1);
                if rng.chance(2) && to + token.len() <= len {
                    data[to..to + token.len()].copy_from_slice(token);
                } else {
                    data.splice(to..to, token.iter().copied());
                }
            }
        }
        _ if len > 0 => {
            // Swap two bytes.
            let (a, b) = (rng.below(len), rng.below(len));
            data.swap(a, b);
        }
        _ => data.push(rng.next_u64() as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_mutants() {
        let seed = b"\x80\x03(K\x01t.";
        let run = |s| {
            let mut rng = Rng::new(s);
            (0..100)
                .map(|_| mutate(&mut rng, seed, b"other", "pickle3"))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).iter().any(|m| m.as_slice() != seed));
    }
}
