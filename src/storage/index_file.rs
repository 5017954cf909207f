//! The `Data.fs.index` file Python's fsIndex writes and reads: a
//! concatenation of protocol-3 pickles in "fast" mode (no memo).
//!
//! ```text
//! pickle 1:   pos                       int: file size the index covers
//! pickle 2..: (prefix, bucketstring)    6-byte oid prefix; bucketstring =
//!                                       n 2-byte suffixes, then n 6-byte
//!                                       positions (same order, sorted)
//! last:       None
//! each pickle: 80 03 <object> 2e        PROTO 3 ... STOP
//! ```
//! Only the opcodes such files contain are understood; anything else (the
//! ZODB 3.x single-dict format, for one) is reported as unsupported, and
//! the caller rebuilds the index by scanning the data file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::index::Index;

#[derive(Debug, thiserror::Error)]
pub enum IndexFileError {
    #[error("unreadable: {0}")]
    Io(#[from] std::io::Error),
    #[error("truncated pickle at byte {0}")]
    Truncated(usize),
    #[error("pickle opcode {opcode:#04x} at byte {at} is not part of the fsIndex format")]
    UnsupportedOpcode { opcode: u8, at: usize },
    #[error("unexpected pickle structure at byte {0}")]
    Structure(usize),
    #[error("bucket for prefix {0:012x} is malformed")]
    BadBucket(u64),
}

/// `Data.fs` → `Data.fs.index`.
pub fn index_path(data_path: &Path) -> PathBuf {
    let mut s = data_path.as_os_str().to_owned();
    s.push(".index");
    PathBuf::from(s)
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(u64),
    Bytes(Vec<u8>),
    None,
    Tuple(Vec<Value>),
    Mark,
}

/// One pickle starting at `*at`, advancing `*at` past its STOP.
fn read_pickle(buf: &[u8], at: &mut usize) -> Result<Value, IndexFileError> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: Vec<Option<Value>> = Vec::new();
    let take = |at: &mut usize, n: usize| -> Result<&[u8], IndexFileError> {
        let end = at
            .checked_add(n)
            .filter(|e| *e <= buf.len())
            .ok_or(IndexFileError::Truncated(*at))?;
        let s = &buf[*at..end];
        *at = end;
        Ok(s)
    };
    loop {
        let op_at = *at;
        let op = *take(at, 1)?
            .first()
            .ok_or(IndexFileError::Truncated(op_at))?;
        match op {
            0x80 => {
                take(at, 1)?;
            }
            0x95 => {
                take(at, 8)?;
            }
            b'K' => stack.push(Value::Int(u64::from(take(at, 1)?[0]))),
            b'M' => {
                let b = take(at, 2)?;
                stack.push(Value::Int(u64::from(u16::from_le_bytes([b[0], b[1]]))));
            }
            b'J' => {
                let b = take(at, 4)?;
                let n = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                stack.push(Value::Int(
                    u64::try_from(n).map_err(|_| IndexFileError::Structure(op_at))?,
                ));
            }
            0x8a => {
                let n = usize::from(take(at, 1)?[0]);
                let b = take(at, n)?;
                // Non-negative and at most 8 significant bytes.
                if b.last().is_some_and(|top| top & 0x80 != 0) || b.iter().skip(8).any(|x| *x != 0)
                {
                    return Err(IndexFileError::Structure(op_at));
                }
                let mut v = [0u8; 8];
                for (i, x) in b.iter().take(8).enumerate() {
                    v[i] = *x;
                }
                stack.push(Value::Int(u64::from_le_bytes(v)));
            }
            b'C' | b'U' => {
                let n = usize::from(take(at, 1)?[0]);
                stack.push(Value::Bytes(take(at, n)?.to_vec()));
            }
            b'B' | b'T' => {
                let b = take(at, 4)?;
                let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                stack.push(Value::Bytes(take(at, n)?.to_vec()));
            }
            b'N' => stack.push(Value::None),
            b'(' => stack.push(Value::Mark),
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if stack.len() < n {
                    return Err(IndexFileError::Structure(op_at));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b't' => {
                let mark = stack
                    .iter()
                    .rposition(|v| *v == Value::Mark)
                    .ok_or(IndexFileError::Structure(op_at))?;
                let items = stack.split_off(mark + 1);
                stack.pop();
                stack.push(Value::Tuple(items));
            }
            b'q' | b'r' | 0x94 => {
                let idx = match op {
                    b'q' => usize::from(take(at, 1)?[0]),
                    b'r' => {
                        let b = take(at, 4)?;
                        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
                    }
                    _ => memo.len(),
                };
                let top = stack
                    .last()
                    .cloned()
                    .ok_or(IndexFileError::Structure(op_at))?;
                if idx > 1 << 20 {
                    return Err(IndexFileError::Structure(op_at));
                }
                if memo.len() <= idx {
                    memo.resize(idx + 1, None);
                }
                memo[idx] = Some(top);
            }
            b'h' | b'j' => {
                let idx = if op == b'h' {
                    usize::from(take(at, 1)?[0])
                } else {
                    let b = take(at, 4)?;
                    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
                };
                let v = memo
                    .get(idx)
                    .cloned()
                    .flatten()
                    .ok_or(IndexFileError::Structure(op_at))?;
                stack.push(v);
            }
            b'.' => {
                return match (stack.pop(), stack.is_empty()) {
                    (Some(v), true) => Ok(v),
                    _ => Err(IndexFileError::Structure(op_at)),
                };
            }
            opcode => return Err(IndexFileError::UnsupportedOpcode { opcode, at: op_at }),
        }
    }
}

/// Parses an `.index` file's bytes: `(pos, index)`.
pub fn parse(buf: &[u8]) -> Result<(u64, Index), IndexFileError> {
    let mut at = 0;
    let pos = match read_pickle(buf, &mut at)? {
        Value::Int(pos) => pos,
        _ => return Err(IndexFileError::Structure(0)),
    };
    let mut index = Index::new();
    loop {
        let start = at;
        match read_pickle(buf, &mut at)? {
            Value::None => return Ok((pos, index)),
            Value::Tuple(items) => match items.as_slice() {
                [Value::Bytes(prefix), Value::Bytes(bucket)]
                    if prefix.len() == 6 && bucket.len() % 8 == 0 =>
                {
                    let mut p = [0u8; 8];
                    p[2..].copy_from_slice(prefix);
                    let prefix = u64::from_be_bytes(p);
                    let n = bucket.len() / 8;
                    let (keys, values) = bucket.split_at(2 * n);
                    let pairs = keys
                        .chunks_exact(2)
                        .zip(values.chunks_exact(6))
                        .map(|(k, v)| {
                            let mut b = [0u8; 8];
                            b[2..].copy_from_slice(v);
                            (u16::from_be_bytes([k[0], k[1]]), u64::from_be_bytes(b))
                        });
                    if !index.insert_bucket(prefix, pairs) {
                        return Err(IndexFileError::BadBucket(prefix));
                    }
                }
                _ => return Err(IndexFileError::Structure(start)),
            },
            _ => return Err(IndexFileError::Structure(start)),
        }
    }
}

/// Reads `path`; `Ok(None)` when there is no such file.
pub fn read(path: &Path) -> Result<Option<(u64, Index)>, IndexFileError> {
    match std::fs::read(path) {
        Ok(buf) => parse(&buf).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn put_int(out: &mut impl Write, n: u64) -> std::io::Result<()> {
    if n <= 0xff {
        out.write_all(&[b'K', n as u8])
    } else if n <= 0xffff {
        out.write_all(b"M")?;
        out.write_all(&(n as u16).to_le_bytes())
    } else if n <= 0x7fff_ffff {
        out.write_all(b"J")?;
        out.write_all(&(n as u32).to_le_bytes())
    } else {
        // Python's encode_long: (bit_length >> 3) + 1 little-endian bytes.
        let bits = 64 - n.leading_zeros() as usize;
        let len = (bits >> 3) + 1;
        let mut le = n.to_le_bytes().to_vec();
        le.resize(len, 0);
        out.write_all(&[0x8a, len as u8])?;
        out.write_all(&le)
    }
}

fn put_bytes(out: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
    if b.len() <= 0xff {
        out.write_all(&[b'C', b.len() as u8])?;
    } else {
        out.write_all(b"B")?;
        out.write_all(&(b.len() as u32).to_le_bytes())?;
    }
    out.write_all(b)
}

/// Serializes exactly as `fsIndex.save(pos, fname)` does.
pub fn encode(out: &mut impl Write, pos: u64, index: &Index) -> std::io::Result<()> {
    out.write_all(&[0x80, 3])?;
    put_int(out, pos)?;
    out.write_all(b".")?;
    let mut bucket = Vec::new();
    for (prefix, pairs) in index.buckets() {
        bucket.clear();
        let pairs: Vec<(u16, u64)> = pairs.collect();
        for (k, _) in &pairs {
            bucket.extend_from_slice(&k.to_be_bytes());
        }
        for (_, v) in &pairs {
            bucket.extend_from_slice(&v.to_be_bytes()[2..]);
        }
        out.write_all(&[0x80, 3])?;
        put_bytes(out, &prefix.to_be_bytes()[2..])?;
        put_bytes(out, &bucket)?;
        out.write_all(&[0x86, b'.'])?;
    }
    out.write_all(&[0x80, 3, b'N', b'.'])
}

/// Writes `<index>.index_tmp` and renames it over `path`. Not fsynced (nor
/// is it in Python): an index torn by a crash fails validation on the next
/// open and is rebuilt from the data file, which is the only truth.
pub fn write(path: &Path, pos: u64, index: &Index) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".index_tmp");
    let tmp = PathBuf::from(tmp);
    let file = File::create(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    encode(&mut w, pos, index)?;
    w.into_inner().map_err(|e| e.into_error())?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ids::Oid;

    /// `a_basic/Data.fs.index`, byte for byte (spec §6.2).
    const A_BASIC: &[u8] = &[
        0x80, 0x03, 0x4d, 0x57, 0x05, 0x2e, 0x80, 0x03, 0x43, 0x06, 0, 0, 0, 0, 0, 0, 0x43, 0x20,
        0, 0, 0, 1, 0, 2, 0, 3, 0, 0, 0, 0, 0x04, 0x23, 0, 0, 0, 0, 0x04, 0xa8, 0, 0, 0, 0, 0x01,
        0xab, 0, 0, 0, 0, 0x03, 0x82, 0x86, 0x2e, 0x80, 0x03, 0x4e, 0x2e,
    ];

    #[test]
    fn parses_and_reencodes_python_index() {
        let (pos, ix) = parse(A_BASIC).unwrap();
        assert_eq!(pos, 1367);
        let got: Vec<_> = ix.iter().map(|(o, p)| (o.as_u64(), p)).collect();
        assert_eq!(got, vec![(0, 1059), (1, 1192), (2, 427), (3, 898)]);
        let mut out = Vec::new();
        encode(&mut out, pos, &ix).unwrap();
        assert_eq!(out, A_BASIC);
    }

    #[test]
    fn big_positions_and_buckets_round_trip() {
        let mut ix = Index::new();
        for i in 0..70_000u64 {
            ix.insert(Oid::from_u64(i * 3), (1 << 40) + i);
        }
        for pos in [
            0u64,
            255,
            256,
            65_535,
            65_536,
            0x7fff_ffff,
            0x8000_0000,
            1 << 47,
        ] {
            let mut out = Vec::new();
            encode(&mut out, pos, &ix).unwrap();
            let (p, back) = parse(&out).unwrap();
            assert_eq!(p, pos);
            assert!(back.iter().eq(ix.iter()));
        }
    }

    #[test]
    fn long1_matches_python_encoding() {
        // pickle.dumps(2**31, 3) == b'\x80\x03\x8a\x05\x00\x00\x00\x80\x00.'
        let mut out = Vec::new();
        put_int(&mut out, 1 << 31).unwrap();
        assert_eq!(out, [0x8a, 5, 0, 0, 0, 0x80, 0]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for cut in 0..A_BASIC.len() {
            assert!(parse(&A_BASIC[..cut]).is_err());
        }
        assert!(matches!(
            parse(b"\x80\x03}q\x00."),
            Err(IndexFileError::UnsupportedOpcode { .. })
        ));
    }
}
