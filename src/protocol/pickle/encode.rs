//! The pickle encoder, byte-for-byte what CPython's C pickler writes for the
//! same objects: smallest int forms, APPENDS/SETITEMS in batches of 1000
//! (with Python 3's and Python 2's different edge cases), no memo for
//! messages (ZEO pickles in "fast" mode) and memo PUTs for stored
//! transaction extensions (ZODB pickles those normally).

use std::collections::HashMap;

use super::op;
use crate::protocol::Value;

/// Which pickle a peer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Protocol 3 as Python 3 writes it (`80 03` header).
    Proto3,
    /// Protocol 1 as Python 2's cPickle writes it: no header, byte strings
    /// as SHORT_BINSTRING/BINSTRING, booleans as `I01\n`/`I00\n`, ints
    /// beyond 32 bits as INT/LONG text.
    Proto1,
}

/// Pickles a value in fast mode (no memo), as ZEO does for every message.
pub fn encode(value: &Value, dialect: Dialect) -> Vec<u8> {
    let mut enc = Encoder {
        out: Vec::new(),
        dialect,
        memo: None,
    };
    enc.pickle(value);
    enc.out
}

/// Pickles a tuple of borrowed values (a message envelope) without
/// cloning them into a `Value::Tuple` first.
pub fn encode_tuple(items: &[&Value], dialect: Dialect) -> Vec<u8> {
    let mut enc = Encoder {
        out: Vec::new(),
        dialect,
        memo: None,
    };
    enc.header();
    enc.tuple(None, items.iter().copied(), items.len());
    enc.out.push(op::STOP);
    enc.out
}

/// The extension bytes ZODB stores for a transaction's extension dict:
/// empty for an empty dict, else `zodbpickle` protocol 3 with memo. Python
/// memoizes by object identity; the objects CPython shares for equal values
/// (empty and one-character texts, empty and one-byte bytes) are written
/// once and fetched with BINGET, as a ZEO server writes them.
pub fn encode_extension(extension: &Value) -> Vec<u8> {
    if matches!(extension, Value::Dict(pairs) if pairs.is_empty()) {
        return Vec::new();
    }
    let mut enc = Encoder {
        out: Vec::new(),
        dialect: Dialect::Proto3,
        memo: Some(Memo::default()),
    };
    enc.pickle(extension);
    enc.out
}

const BATCH: usize = 1000;

#[derive(Default)]
struct Memo {
    next: u32,
    shared: HashMap<Shared, u32>,
}

/// Values CPython keeps as singletons, hence the same memo entry.
#[derive(PartialEq, Eq, Hash)]
enum Shared {
    Str(String),
    Bytes(Vec<u8>),
}

impl Shared {
    fn of(value: &Value) -> Option<Shared> {
        match value {
            Value::Str(s) if s.chars().count() <= 1 && s.chars().all(|c| u32::from(c) < 256) => {
                Some(Shared::Str(s.clone()))
            }
            Value::Bytes(b) if b.len() <= 1 => Some(Shared::Bytes(b.clone())),
            _ => None,
        }
    }
}

struct Encoder {
    out: Vec<u8>,
    dialect: Dialect,
    memo: Option<Memo>,
}

impl Encoder {
    fn pickle(&mut self, value: &Value) {
        self.header();
        self.value(value);
        self.out.push(op::STOP);
    }

    fn header(&mut self) {
        if self.dialect == Dialect::Proto3 {
            self.out.extend_from_slice(&[op::PROTO, 3]);
        }
    }

    fn value(&mut self, value: &Value) {
        if self.memo_get(value) {
            return;
        }
        match value {
            Value::None => self.out.push(op::NONE),
            Value::Bool(b) => match self.dialect {
                Dialect::Proto3 => self.out.push(if *b { op::NEWTRUE } else { op::NEWFALSE }),
                Dialect::Proto1 => self
                    .out
                    .extend_from_slice(if *b { b"I01\n" } else { b"I00\n" }),
            },
            Value::Int(i) => self.int(*i),
            Value::Float(f) => {
                self.out.push(op::BINFLOAT);
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Value::Bytes(b) => {
                let (short, long) = match self.dialect {
                    Dialect::Proto3 => (op::SHORT_BINBYTES, op::BINBYTES),
                    Dialect::Proto1 => (op::SHORT_BINSTRING, op::BINSTRING),
                };
                match u8::try_from(b.len()) {
                    Ok(n) => self.out.extend_from_slice(&[short, n]),
                    Err(_) => {
                        self.out.push(long);
                        self.len32(b.len());
                    }
                }
                self.out.extend_from_slice(b);
                self.memo_put(value);
            }
            Value::Str(s) => {
                self.out.push(op::BINUNICODE);
                self.len32(s.len());
                self.out.extend_from_slice(s.as_bytes());
                self.memo_put(value);
            }
            Value::Tuple(items) => self.tuple(Some(value), items.iter(), items.len()),
            Value::List(items) => {
                self.out.push(op::EMPTY_LIST);
                self.memo_put(value);
                self.batched(
                    items.len(),
                    items.iter(),
                    op::APPEND,
                    op::APPENDS,
                    |enc, v| enc.value(v),
                );
            }
            Value::Dict(pairs) => {
                self.out.push(op::EMPTY_DICT);
                self.memo_put(value);
                self.batched(
                    pairs.len(),
                    pairs.iter(),
                    op::SETITEM,
                    op::SETITEMS,
                    |enc, (k, v)| {
                        enc.value(k);
                        enc.value(v);
                    },
                );
            }
            Value::Global { module, name } => {
                self.out.push(op::GLOBAL);
                for part in [module, name] {
                    self.out.extend_from_slice(part.as_bytes());
                    self.out.push(b'\n');
                }
                self.memo_put(value);
            }
            Value::Object { class, args, state } => {
                self.value(class);
                self.value(args);
                self.out.push(op::REDUCE);
                self.memo_put(value);
                if let Some(state) = state {
                    self.value(state);
                    self.out.push(op::BUILD);
                }
            }
        }
    }

    fn int(&mut self, i: i128) {
        if let Ok(n) = u8::try_from(i) {
            self.out.extend_from_slice(&[op::BININT1, n]);
        } else if let Ok(n) = u16::try_from(i) {
            self.out.push(op::BININT2);
            self.out.extend_from_slice(&n.to_le_bytes());
        } else if let Ok(n) = i32::try_from(i) {
            self.out.push(op::BININT);
            self.out.extend_from_slice(&n.to_le_bytes());
        } else if self.dialect == Dialect::Proto1 {
            // Python 2: a 64-bit `int` is INT text, a `long` LONG text.
            if i64::try_from(i).is_ok() {
                self.out.extend_from_slice(format!("I{i}\n").as_bytes());
            } else {
                self.out.extend_from_slice(format!("L{i}L\n").as_bytes());
            }
        } else {
            let bytes = long_to_le(i);
            self.out.push(op::LONG1);
            // At most 17 bytes for an i128.
            self.out.push(bytes.len() as u8);
            self.out.extend_from_slice(&bytes);
        }
    }

    /// `value` is the tuple itself when it may be memoized.
    fn tuple<'v>(
        &mut self,
        value: Option<&Value>,
        items: impl Iterator<Item = &'v Value>,
        len: usize,
    ) {
        if len == 0 {
            // The empty tuple is a singleton and never memoized.
            self.out.push(op::EMPTY_TUPLE);
            return;
        }
        let short = self.dialect == Dialect::Proto3 && len <= 3;
        if !short {
            self.out.push(op::MARK);
        }
        for item in items {
            self.value(item);
        }
        self.out.push(match (short, len) {
            (true, 1) => op::TUPLE1,
            (true, 2) => op::TUPLE2,
            (true, _) => op::TUPLE3,
            (false, _) => op::TUPLE,
        });
        if let Some(value) = value {
            self.memo_put(value);
        }
    }

    /// Python 3 writes one item with the single opcode and otherwise
    /// MARK…multi batches of up to 1000, a lone trailing item included
    /// (dicts of exactly k·1000 items even end in an empty `(u`). Python 2
    /// writes any lone item, first or trailing, with the single opcode.
    fn batched<T>(
        &mut self,
        len: usize,
        items: impl Iterator<Item = T>,
        single: u8,
        multi: u8,
        mut save: impl FnMut(&mut Encoder, T),
    ) {
        if len == 0 {
            return;
        }
        let mut items = items.peekable();
        let mut written = 0;
        loop {
            let batch = (len - written).min(BATCH);
            let lone = batch == 1 && (written == 0 || self.dialect == Dialect::Proto1);
            if lone {
                if let Some(item) = items.next() {
                    save(self, item);
                }
                self.out.push(single);
                return;
            }
            self.out.push(op::MARK);
            for item in items.by_ref().take(batch) {
                save(self, item);
            }
            self.out.push(multi);
            written += batch;
            let more = match (single, self.dialect) {
                // CPython 3's dict loop repeats while the last batch was full.
                (op::SETITEM, Dialect::Proto3) => batch == BATCH,
                _ => written < len,
            };
            if !more {
                return;
            }
            if written == len {
                self.out.extend_from_slice(&[op::MARK, multi]);
                return;
            }
        }
    }

    fn len32(&mut self, len: usize) {
        // Frames are capped below 2 GiB, so no encodable value is longer.
        let n = u32::try_from(len).unwrap_or(u32::MAX);
        self.out.extend_from_slice(&n.to_le_bytes());
    }

    fn memo_put(&mut self, value: &Value) {
        let Some(memo) = &mut self.memo else {
            return;
        };
        let key = memo.next;
        memo.next += 1;
        if let Some(shared) = Shared::of(value) {
            memo.shared.insert(shared, key);
        }
        match u8::try_from(key) {
            Ok(k) => self.out.extend_from_slice(&[op::BINPUT, k]),
            Err(_) => {
                self.out.push(op::LONG_BINPUT);
                self.out.extend_from_slice(&key.to_le_bytes());
            }
        }
    }

    fn memo_get(&mut self, value: &Value) -> bool {
        let Some(memo) = &self.memo else {
            return false;
        };
        let Some(key) = Shared::of(value).and_then(|s| memo.shared.get(&s).copied()) else {
            return false;
        };
        match u8::try_from(key) {
            Ok(k) => self.out.extend_from_slice(&[op::BINGET, k]),
            Err(_) => {
                self.out.push(op::LONG_BINGET);
                self.out.extend_from_slice(&key.to_le_bytes());
            }
        }
        true
    }
}

/// Python's `encode_long`: the shortest little-endian two's complement.
fn long_to_le(i: i128) -> Vec<u8> {
    if i == 0 {
        return Vec::new();
    }
    let nbits = 128 - i.unsigned_abs().leading_zeros() as usize;
    let nbytes = nbits / 8 + 1;
    let fill = if i < 0 { 0xff } else { 0x00 };
    let mut bytes = i.to_le_bytes().to_vec();
    bytes.push(fill);
    bytes.truncate(nbytes);
    if i < 0 && nbytes > 1 {
        if let [.., prev, 0xff] = bytes[..] {
            if prev & 0x80 != 0 {
                bytes.pop();
            }
        }
    }
    bytes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn long1_matches_python_encode_long() {
        assert_eq!(long_to_le(1 << 31), [0, 0, 0, 0x80, 0]);
        assert_eq!(long_to_le(-(1 << 31) - 1), [0xff, 0xff, 0xff, 0x7f, 0xff]);
        assert_eq!(long_to_le(1 << 63), [0, 0, 0, 0, 0, 0, 0, 0x80, 0]);
        assert_eq!(long_to_le(-128), [0x80]);
        assert_eq!(long_to_le(-256), [0x00, 0xff]);
        assert_eq!(long_to_le(0x7f_cd_d6_99_7f), [0x7f, 0x99, 0xd6, 0xcd, 0x7f]);
    }

    #[test]
    fn dict_batches_follow_cpython3_quirk() {
        let d = Value::Dict((0..1000).map(|i| (Value::Int(i), Value::Int(0))).collect());
        let out = encode(&d, Dialect::Proto3);
        assert!(out.ends_with(b"K\x00u(u."));
        let l = Value::List((0..1001).map(Value::Int).collect());
        assert!(encode(&l, Dialect::Proto3).ends_with(b"e(M\xe8\x03e."));
        assert!(encode(&l, Dialect::Proto1).ends_with(b"eM\xe8\x03a."));
    }
}
