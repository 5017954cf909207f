//! `referencesf`: the oids a data record's pickles refer to, as pack's
//! garbage collection follows them (spec §9.1). A small pickle machine
//! that builds only what a persistent id can be made of (bytes, strings,
//! tuples, lists) and keeps every other value as an opaque placeholder,
//! so the stack stays in step through any protocol 0–4 pickle. Both
//! pickles of a record share one memo, as ZODB writes them.
//!
//! Persistent ids: `oid` or `(oid, class)` → a reference; a list (`['w',
//! …]` weak, `['n', …]`/`['m', …]` cross-database) → ignored, like ZODB's
//! GC. Python 2 `str` oids are taken as bytes (ZODB 6 would fail on
//! non-ASCII ones; the oid bytes are what matter here).

use crate::ids::Oid;

#[derive(Debug, Clone, PartialEq)]
enum V {
    Bytes(Vec<u8>),
    Tuple(Vec<V>),
    List,
    Mark,
    Other,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RefsError {
    #[error("pickle ends early at byte {0}")]
    Truncated(usize),
    #[error("unsupported pickle opcode {opcode:#04x} at byte {at}")]
    Opcode { opcode: u8, at: usize },
    #[error("malformed pickle at byte {0}")]
    Malformed(usize),
}

struct Machine<'a> {
    p: &'a [u8],
    at: usize,
    stack: Vec<V>,
    /// Memo keys are small integers: FxHash, not SipHash (the pack's
    /// reference walk runs this per record).
    memo: rustc_hash::FxHashMap<u64, V>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RefsError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.p.len())
            .ok_or(RefsError::Truncated(self.at))?;
        let s = &self.p[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<usize, RefsError> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u32(&mut self) -> Result<usize, RefsError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn u64(&mut self) -> Result<usize, RefsError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        usize::try_from(u64::from_le_bytes(a)).map_err(|_| RefsError::Malformed(self.at))
    }

    fn line(&mut self) -> Result<&'a [u8], RefsError> {
        let rest = &self.p[self.at..];
        let n = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(RefsError::Truncated(self.at))?;
        let s = &rest[..n];
        self.at += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<V, RefsError> {
        self.stack.pop().ok_or(RefsError::Malformed(self.at))
    }

    fn pop_mark(&mut self) -> Result<Vec<V>, RefsError> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| *v == V::Mark)
            .ok_or(RefsError::Malformed(self.at))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&self) -> Result<V, RefsError> {
        self.stack
            .last()
            .cloned()
            .ok_or(RefsError::Malformed(self.at))
    }

    /// Runs one pickle to its STOP, adding persistent references to `out`.
    fn run(&mut self, out: &mut Vec<Oid>) -> Result<(), RefsError> {
        self.stack.clear();
        loop {
            let at = self.at;
            let op = self.u8()? as u8;
            match op {
                b'.' => return Ok(()),
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.u64()?;
                }
                // Values we never need to look into.
                b'N' | 0x88 | 0x89 => self.stack.push(V::Other),
                b'I' | b'L' | b'F' => {
                    self.line()?;
                    self.stack.push(V::Other);
                }
                b'K' => {
                    self.take(1)?;
                    self.stack.push(V::Other);
                }
                b'M' => {
                    self.take(2)?;
                    self.stack.push(V::Other);
                }
                b'J' => {
                    self.take(4)?;
                    self.stack.push(V::Other);
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(V::Other);
                }
                0x8a => {
                    let n = self.u8()?;
                    self.take(n)?;
                    self.stack.push(V::Other);
                }
                0x8b => {
                    let n = self.u32()?;
                    self.take(n)?;
                    self.stack.push(V::Other);
                }
                // Strings and bytes: possible oids.
                b'S' => {
                    let raw = self.line()?;
                    let unquoted = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
                    self.stack.push(V::Bytes(unescape(unquoted)));
                }
                b'V' => {
                    let s = self.line()?.to_vec();
                    self.stack.push(V::Bytes(s));
                }
                b'U' | b'C' | 0x8c => {
                    let n = self.u8()?;
                    let s = self.take(n)?.to_vec();
                    self.stack.push(V::Bytes(s));
                }
                b'T' | b'B' | b'X' => {
                    let n = self.u32()?;
                    let s = self.take(n)?.to_vec();
                    self.stack.push(V::Bytes(s));
                }
                0x8d | 0x8e | 0x96 => {
                    let n = self.u64()?;
                    let s = self.take(n)?.to_vec();
                    self.stack.push(V::Bytes(s));
                }
                // Containers.
                b'(' => self.stack.push(V::Mark),
                b')' => self.stack.push(V::Tuple(Vec::new())),
                b']' => self.stack.push(V::List),
                b'}' | 0x8f => self.stack.push(V::Other),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(V::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(RefsError::Malformed(at));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(V::Tuple(items));
                }
                b'l' => {
                    self.pop_mark()?;
                    self.stack.push(V::List);
                }
                b'd' | 0x91 => {
                    self.pop_mark()?;
                    self.stack.push(V::Other);
                }
                b'a' => {
                    self.pop()?;
                }
                b'e' | b'u' | 0x90 => {
                    self.pop_mark()?;
                }
                b's' => {
                    self.pop()?;
                    self.pop()?;
                }
                // Objects and globals.
                b'c' => {
                    self.line()?;
                    self.line()?;
                    self.stack.push(V::Other);
                }
                0x93 => {
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(V::Other);
                }
                b'i' => {
                    self.line()?;
                    self.line()?;
                    self.pop_mark()?;
                    self.stack.push(V::Other);
                }
                b'o' => {
                    self.pop_mark()?;
                    self.stack.push(V::Other);
                }
                b'R' | 0x81 => {
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(V::Other);
                }
                0x92 => {
                    self.pop()?;
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(V::Other);
                }
                b'b' => {
                    self.pop()?;
                }
                0x82 => {
                    self.take(1)?;
                    self.stack.push(V::Other);
                }
                0x83 => {
                    self.take(2)?;
                    self.stack.push(V::Other);
                }
                0x84 => {
                    self.take(4)?;
                    self.stack.push(V::Other);
                }
                // Stack and memo.
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?;
                    self.stack.push(v);
                }
                b'p' => {
                    let key = self.line()?;
                    let key = std::str::from_utf8(key)
                        .ok()
                        .and_then(|k| k.parse().ok())
                        .ok_or(RefsError::Malformed(at))?;
                    let v = self.top()?;
                    self.memo.insert(key, v);
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => self.u8()? as u64,
                        b'r' => self.u32()? as u64,
                        _ => self.memo.len() as u64,
                    };
                    let v = self.top()?;
                    self.memo.insert(key, v);
                }
                b'g' | b'h' | b'j' => {
                    let key = match op {
                        b'h' => self.u8()? as u64,
                        b'j' => self.u32()? as u64,
                        _ => {
                            let k = self.line()?;
                            std::str::from_utf8(k)
                                .ok()
                                .and_then(|k| k.parse().ok())
                                .ok_or(RefsError::Malformed(at))?
                        }
                    };
                    let v = self
                        .memo
                        .get(&key)
                        .cloned()
                        .ok_or(RefsError::Malformed(at))?;
                    self.stack.push(v);
                }
                // Persistent ids: the point of the exercise.
                b'P' => {
                    let pid = self.line()?.to_vec();
                    out.extend(oid_of(&V::Bytes(pid)));
                    self.stack.push(V::Other);
                }
                b'Q' => {
                    let pid = self.pop()?;
                    out.extend(oid_of(&pid));
                    self.stack.push(V::Other);
                }
                opcode => return Err(RefsError::Opcode { opcode, at }),
            }
        }
    }
}

/// ZODB's classification of a persistent id.
fn oid_of(pid: &V) -> Option<Oid> {
    let raw = match pid {
        V::Bytes(b) => b,
        V::Tuple(items) => match items.first() {
            Some(V::Bytes(b)) => b,
            _ => return None,
        },
        _ => return None,
    };
    Oid::from_slice(raw)
}

/// Python 2 protocol-0 string escapes (`\x..`, `\\`, `\'`, `\n`).
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            match s[i + 1] {
                b'x' if i + 3 < s.len() => {
                    let hex = std::str::from_utf8(&s[i + 2..i + 4])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if let Some(b) = hex {
                        out.push(b);
                        i += 4;
                        continue;
                    }
                    out.push(b'\\');
                    i += 1;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                }
                c => {
                    out.push(c);
                    i += 2;
                }
            }
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// The oids referenced by a record's data (class pickle + state pickle).
pub fn references(data: &[u8]) -> Result<Vec<Oid>, RefsError> {
    let mut out = Vec::new();
    references_into(data, &mut out)?;
    Ok(out)
}

/// [`references`], appended to `out` (the pack's walk reuses one vector).
pub fn references_into(data: &[u8], out: &mut Vec<Oid>) -> Result<(), RefsError> {
    let mut m = Machine {
        p: data,
        at: 0,
        stack: Vec::new(),
        memo: Default::default(),
    };
    m.run(out)?;
    if m.at < data.len() {
        m.run(out)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_basic_root_refers_to_a_and_b() {
        // Root of a_basic in T2: {'a': (oid 1, PM), 'b': (oid 2, PL)}.
        let root = unhex(concat!(
            "80036370657273697374656e742e6d617070696e670a50657273697374656e744d617070696e670a71002e",
            "80037d710158040000006461746171027d710328580100000061710443080000000000000001710568008671",
            "0651580100000062710743080000000000000002710863706572736973",
            "74656e742e6c6973740a50657273697374656e744c6973740a710986710a5175732e"
        ));
        assert_eq!(
            references(&root).unwrap(),
            vec![Oid::from_u64(1), Oid::from_u64(2)]
        );
    }

    #[test]
    fn py2_protocol1_records_and_weak_refs() {
        // g_py2_protocol1 root: MARK oid GLOBAL TUPLE BINPERSID, U strings.
        let root = unhex(concat!(
            "6370657273697374656e742e6d617070696e670a50657273697374656e744d617070696e670a71012e7d71",
            "025504646174617d71032855056368696c6428550800000000000000016370657273697374656e742e6d61",
            "7070696e670a50657273697374656e744d617070696e670a71047471055155057469746c65550870793220",
            "726f6f7475732e"
        ));
        assert_eq!(references(&root).unwrap(), vec![Oid::from_u64(1)]);
        // A weak reference ['w', (oid,)] is not followed.
        let weak = b"\x80\x03N.\x80\x03]q\x00(X\x01\x00\x00\x00wC\x08\x00\x00\x00\x00\x00\x00\x00\x07\x85eQ.";
        assert_eq!(references(weak).unwrap(), vec![]);
        // A bare oid persistent id is.
        let bare = b"\x80\x03N.\x80\x03C\x08\x00\x00\x00\x00\x00\x00\x00\x09Q.";
        assert_eq!(references(bare).unwrap(), vec![Oid::from_u64(9)]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(references(b"\x80\x03\xff").is_err());
        assert!(references(b"\x80\x03C\x08\x00").is_err());
        assert!(references(b"Q.").is_err());
    }
}
