//! The unpickler for data records (protocols 0-3, Python 2 and 3 forms).
//! It builds [`Value`]s and never resolves a global or calls anything; one
//! [`Reader`] keeps its memo across the pickles of a record, as ZODB's
//! single `Unpickler` does.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::protocol::pickle::op;

use super::{
    dismantle, nests_deeper_than, Ctor, Global, Object, PersistentRef, Post, Record, RecordError,
    Value, MAX_DEPTH,
};

type Result<T> = std::result::Result<T, RecordError>;

/// Reads a whole data record: the meta pickle and the state pickle, one
/// memo. Trailing bytes after the second STOP are an error.
pub fn parse(data: &[u8]) -> Result<Record> {
    let mut r = Reader::new();
    let (meta, state) = parse_pickles(&mut r, data)?;
    Ok(Record { meta, state })
}

/// Reads the two pickles of `data` with `reader` (whose persistent-id
/// table may be shared with other records).
pub fn parse_pickles(reader: &mut Reader, data: &[u8]) -> Result<(Value, Value)> {
    reader.clear_memo();
    let (meta, used) = reader.load(data)?;
    let rest = &data[used..];
    if rest.is_empty() {
        return Err(RecordError::PickleCount(1));
    }
    let (state, used2) = reader.load(rest)?;
    if used + used2 != data.len() {
        return Err(RecordError::PickleCount(3));
    }
    Ok((meta, state))
}

/// An unpickler whose memo spans the pickles it loads.
#[derive(Default)]
pub struct Reader {
    memo: HashMap<u32, Value>,
    /// Equal persistent ids yield one `Rc<PersistentRef>` across every
    /// pickle this reader loads, like ZODB's `PersistentReferenceFactory`
    /// during conflict resolution (re-pickling then shares them).
    intern: bool,
    small: HashMap<Small, Value>,
    refs: HashMap<String, Rc<PersistentRef>>,
    /// Every persistent id met, in order (what `referencesf` collects).
    pub pids: Vec<Rc<PersistentRef>>,
}

#[derive(Hash, PartialEq, Eq)]
enum Small {
    Str(Option<char>),
    Bytes(Option<u8>),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    /// A reader that interns persistent ids (see [`Reader`]).
    pub fn interning() -> Reader {
        let mut r = Reader::default();
        r.intern = true;
        r
    }

    fn clear_memo(&mut self) {
        for (_, v) in self.memo.drain() {
            dismantle(v);
        }
    }

    /// Loads one pickle from the start of `data`; returns the value and
    /// the number of bytes up to and including STOP.
    pub fn load(&mut self, data: &[u8]) -> Result<(Value, usize)> {
        let mut m = Machine {
            data,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
        };
        loop {
            let at = m.pos;
            let code = m.byte()?;
            if code == op::STOP {
                let v = m.pop(at)?;
                if nests_deeper_than(&v, MAX_DEPTH) {
                    dismantle(v);
                    return Err(RecordError::TooDeep(MAX_DEPTH));
                }
                return Ok((v, m.pos));
            }
            self.step(&mut m, code, at)?;
        }
    }

    fn step(&mut self, m: &mut Machine<'_>, code: u8, at: usize) -> Result<()> {
        match code {
            op::PROTO => {
                m.byte()?;
            }
            op::MARK => m.marks.push(m.stack.len()),
            op::POP => {
                // POP right after a MARK pops the mark (pickletools' rule).
                if m.marks.last() == Some(&m.stack.len()) {
                    m.marks.pop();
                } else {
                    m.pop(at)?;
                }
            }
            op::POP_MARK => {
                m.pop_mark(at)?;
            }
            op::DUP => {
                let v = m
                    .stack
                    .last()
                    .cloned()
                    .ok_or(RecordError::StackUnderflow(at))?;
                m.stack.push(v);
            }
            op::NONE => m.stack.push(Value::None),
            op::NEWTRUE => m.stack.push(Value::Bool(true)),
            op::NEWFALSE => m.stack.push(Value::Bool(false)),
            op::INT => {
                let line = m.line()?;
                let v = match line {
                    b"01" => Value::Bool(true),
                    b"00" => Value::Bool(false),
                    _ => Value::Int(parse_int_text(line, at)?),
                };
                m.stack.push(v);
            }
            op::LONG => {
                let line = m.line()?;
                let line = line.strip_suffix(b"L").unwrap_or(line);
                m.stack.push(Value::Int(parse_int_text(line, at)?));
            }
            op::BININT => {
                let b = m.take(4)?;
                m.stack.push(Value::Int(i32::from_le_bytes(arr4(b)).into()));
            }
            op::BININT1 => {
                let b = m.byte()?;
                m.stack.push(Value::Int(b.into()));
            }
            op::BININT2 => {
                let b = m.take(2)?;
                m.stack
                    .push(Value::Int(u16::from_le_bytes([b[0], b[1]]).into()));
            }
            op::LONG1 => {
                let n = usize::from(m.byte()?);
                let b = m.take(n)?;
                m.stack.push(Value::Int(decode_long(b, at)?));
            }
            op::LONG4 => {
                let n = m.len4()?;
                let b = m.take(n)?;
                m.stack.push(Value::Int(decode_long(b, at)?));
            }
            op::FLOAT => {
                let line = m.line()?;
                let f = std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .ok_or(RecordError::BadLiteral(at))?;
                m.stack.push(Value::Float(f));
            }
            op::BINFLOAT => {
                let b = m.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                m.stack.push(Value::Float(f64::from_be_bytes(a)));
            }
            op::STRING => {
                let line = m.line()?;
                let raw = unquote_py2(line, at)?;
                let s = py2_str(&raw, at)?;
                m.stack.push(self.text(s));
            }
            op::BINSTRING => {
                let n = m.len4()?;
                let s = py2_str(m.take(n)?, at)?;
                m.stack.push(self.text(s));
            }
            op::SHORT_BINSTRING => {
                let n = usize::from(m.byte()?);
                let s = py2_str(m.take(n)?, at)?;
                m.stack.push(self.text(s));
            }
            op::BINBYTES => {
                let n = m.len4()?;
                let b = m.take(n)?;
                m.stack.push(self.bytes(b));
            }
            op::SHORT_BINBYTES => {
                let n = usize::from(m.byte()?);
                let b = m.take(n)?;
                m.stack.push(self.bytes(b));
            }
            op::BINUNICODE => {
                let n = m.len4()?;
                let b = m.take(n)?;
                let s = std::str::from_utf8(b).map_err(|_| RecordError::BadUtf8(at))?;
                m.stack.push(self.text(s));
            }
            op::UNICODE => {
                let s = raw_unicode_escape(m.line()?, at)?;
                m.stack.push(self.text(&s));
            }
            op::EMPTY_TUPLE => m.stack.push(Value::tuple(Vec::new())),
            op::TUPLE => {
                let items = m.pop_mark(at)?;
                m.stack.push(Value::tuple(items));
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(code - op::TUPLE1 + 1);
                let start = m
                    .stack
                    .len()
                    .checked_sub(n)
                    .ok_or(RecordError::StackUnderflow(at))?;
                let items = m.stack.split_off(start);
                m.stack.push(Value::tuple(items));
            }
            op::EMPTY_LIST => m.stack.push(Value::List(Rc::new(RefCell::new(Vec::new())))),
            op::LIST => {
                let items = m.pop_mark(at)?;
                m.stack.push(Value::List(Rc::new(RefCell::new(items))));
            }
            op::EMPTY_DICT => m.stack.push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
            op::DICT => {
                let items = m.pop_mark(at)?;
                let pairs = pairs(items, at)?;
                m.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
            }
            op::APPEND => {
                let v = m.pop(at)?;
                append(m.top(at)?, vec![v], at)?;
            }
            op::APPENDS => {
                let items = m.pop_mark(at)?;
                append(m.top(at)?, items, at)?;
            }
            op::SETITEM => {
                let v = m.pop(at)?;
                let k = m.pop(at)?;
                set_items(m.top(at)?, vec![(k, v)], at)?;
            }
            op::SETITEMS => {
                let items = m.pop_mark(at)?;
                let pairs = pairs(items, at)?;
                set_items(m.top(at)?, pairs, at)?;
            }
            op::GLOBAL => {
                let module = text_line(m.line()?, at)?;
                let name = text_line(m.line()?, at)?;
                m.stack
                    .push(Value::Global(Rc::new(Global { module, name })));
            }
            op::REDUCE => {
                let args = m.pop(at)?;
                let callable = m.pop(at)?;
                m.stack.push(object(Ctor::Reduce { callable, args }));
            }
            op::NEWOBJ => {
                let args = m.pop(at)?;
                let cls = m.pop(at)?;
                m.stack.push(object(Ctor::NewObj { cls, args }));
            }
            op::INST => {
                let module = text_line(m.line()?, at)?;
                let name = text_line(m.line()?, at)?;
                let args = m.pop_mark(at)?;
                let global = Rc::new(Global { module, name });
                m.stack.push(object(Ctor::Inst { global, args }));
            }
            op::OBJ => {
                let mut items = m.pop_mark(at)?;
                if items.is_empty() {
                    return Err(RecordError::StackUnderflow(at));
                }
                let cls = items.remove(0);
                m.stack.push(object(Ctor::Obj { cls, args: items }));
            }
            op::BUILD => {
                let state = m.pop(at)?;
                match m.top(at)? {
                    Value::Object(o) => o.borrow_mut().post.push(Post::Build(state)),
                    _ => return Err(RecordError::WrongKind(at)),
                }
            }
            op::PERSID => {
                let pid = Value::Str(text_line(m.line()?, at)?.into());
                let r = self.persistent(pid);
                m.stack.push(r);
            }
            op::BINPERSID => {
                let pid = m.pop(at)?;
                let r = self.persistent(pid);
                m.stack.push(r);
            }
            op::PUT => {
                let idx = parse_int_text(m.line()?, at)?;
                let idx = u32::try_from(idx).map_err(|_| RecordError::BadLiteral(at))?;
                self.put(m, idx, at)?;
            }
            op::BINPUT => {
                let idx = m.byte()?;
                self.put(m, idx.into(), at)?;
            }
            op::LONG_BINPUT => {
                let idx = u32::from_le_bytes(arr4(m.take(4)?));
                self.put(m, idx, at)?;
            }
            op::GET => {
                let idx = parse_int_text(m.line()?, at)?;
                let idx = u32::try_from(idx).map_err(|_| RecordError::BadLiteral(at))?;
                self.get(m, idx)?;
            }
            op::BINGET => {
                let idx = m.byte()?;
                self.get(m, idx.into())?;
            }
            op::LONG_BINGET => {
                let idx = u32::from_le_bytes(arr4(m.take(4)?));
                self.get(m, idx)?;
            }
            // EXT1/2/4 (the copyreg extension registry) and protocols 4-5.
            0x82..=0x84 | 0x8c..=0x98 => {
                return Err(RecordError::UnsupportedOpcode {
                    opcode: code,
                    pos: at,
                })
            }
            _ => {
                return Err(RecordError::UnknownOpcode {
                    opcode: code,
                    pos: at,
                })
            }
        }
        Ok(())
    }

    /// CPython hands out one shared object for `''`, `b''`, every 1-byte
    /// bytes and every 1-character str below U+0100; re-pickling memoizes
    /// them once, so they are shared here too.
    fn text(&mut self, s: &str) -> Value {
        let mut chars = s.chars();
        let key = match (chars.next(), chars.next()) {
            (None, _) => Small::Str(None),
            (Some(c), None) if u32::from(c) < 0x100 => Small::Str(Some(c)),
            _ => return Value::Str(s.into()),
        };
        self.small
            .entry(key)
            .or_insert_with(|| Value::Str(s.into()))
            .clone()
    }

    fn bytes(&mut self, b: &[u8]) -> Value {
        let key = match b {
            [] => Small::Bytes(None),
            [x] => Small::Bytes(Some(*x)),
            _ => return Value::Bytes(b.into()),
        };
        self.small
            .entry(key)
            .or_insert_with(|| Value::Bytes(b.into()))
            .clone()
    }

    fn put(&mut self, m: &Machine<'_>, idx: u32, at: usize) -> Result<()> {
        let v = m
            .stack
            .last()
            .cloned()
            .ok_or(RecordError::StackUnderflow(at))?;
        self.memo.insert(idx, v);
        Ok(())
    }

    fn get(&mut self, m: &mut Machine<'_>, idx: u32) -> Result<()> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or(RecordError::MemoMissing(idx))?;
        m.stack.push(v);
        Ok(())
    }

    fn persistent(&mut self, pid: Value) -> Value {
        let key = if self.intern {
            intern_key(&pid, 0)
        } else {
            None
        };
        let r = match key {
            Some(key) => Rc::clone(
                self.refs
                    .entry(key)
                    .or_insert_with(|| Rc::new(PersistentRef { pid })),
            ),
            None => Rc::new(PersistentRef { pid }),
        };
        self.pids.push(Rc::clone(&r));
        Value::Ref(r)
    }
}

/// The factory's key: `tuple(pid)` in ZODB, i.e. equal contents of the same
/// types. Only plain data is interned; anything else stays distinct.
fn intern_key(v: &Value, depth: usize) -> Option<String> {
    if depth > 8 {
        return None;
    }
    Some(match v {
        Value::None => "N".into(),
        Value::Bool(b) => format!("b{b}"),
        Value::Int(i) => format!("i{i}"),
        Value::Bytes(b) => format!("y{b:?}"),
        Value::Str(s) => format!("s{s:?}"),
        Value::Global(g) => format!("g{:?}.{:?}", g.module, g.name),
        Value::Tuple(t) => seq_key('(', t, depth)?,
        // A list is only hashable as the outer pid (`tuple(pid)`).
        Value::List(l) if depth == 0 => seq_key('[', &l.borrow(), depth)?,
        _ => return None,
    })
}

fn seq_key(open: char, items: &[Value], depth: usize) -> Option<String> {
    let mut key = String::from(open);
    for item in items {
        key.push_str(&intern_key(item, depth + 1)?);
        key.push(',');
    }
    Some(key)
}

fn object(ctor: Ctor) -> Value {
    Value::Object(Rc::new(RefCell::new(Object {
        ctor,
        post: Vec::new(),
    })))
}

fn append(target: &Value, items: Vec<Value>, at: usize) -> Result<()> {
    match target {
        Value::List(l) => l.borrow_mut().extend(items),
        Value::Object(o) => o.borrow_mut().post.push(Post::Append(items)),
        _ => return Err(RecordError::WrongKind(at)),
    }
    Ok(())
}

fn set_items(target: &Value, items: Vec<(Value, Value)>, at: usize) -> Result<()> {
    match target {
        Value::Dict(d) => d.borrow_mut().extend(items),
        Value::Object(o) => o.borrow_mut().post.push(Post::SetItems(items)),
        _ => return Err(RecordError::WrongKind(at)),
    }
    Ok(())
}

fn pairs(items: Vec<Value>, at: usize) -> Result<Vec<(Value, Value)>> {
    if items.len() % 2 != 0 {
        return Err(RecordError::StackUnderflow(at));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.clear_memo();
        self.refs.clear();
        for r in self.pids.drain(..) {
            dismantle(Value::Ref(r));
        }
    }
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        for v in self.stack.drain(..) {
            dismantle(v);
        }
    }
}

impl<'a> Machine<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or(RecordError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(RecordError::Truncated(self.pos))?;
        let b = self
            .data
            .get(self.pos..end)
            .ok_or(RecordError::Truncated(self.pos))?;
        self.pos = end;
        Ok(b)
    }

    fn len4(&mut self) -> Result<usize> {
        let n = u32::from_le_bytes(arr4(self.take(4)?));
        usize::try_from(n).map_err(|_| RecordError::Truncated(self.pos))
    }

    /// A newline-terminated argument, without the newline.
    fn line(&mut self) -> Result<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(RecordError::Truncated(self.data.len()))?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    fn pop(&mut self, at: usize) -> Result<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(RecordError::StackUnderflow(at));
        }
        self.stack.pop().ok_or(RecordError::StackUnderflow(at))
    }

    fn top(&self, at: usize) -> Result<&Value> {
        self.stack.last().ok_or(RecordError::StackUnderflow(at))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Value>> {
        let mark = self.marks.pop().ok_or(RecordError::NoMark(at))?;
        if mark > self.stack.len() {
            return Err(RecordError::StackUnderflow(at));
        }
        Ok(self.stack.split_off(mark))
    }
}

fn arr4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    a
}

/// Two's complement, little-endian (`LONG1`/`LONG4`).
fn decode_long(b: &[u8], at: usize) -> Result<i128> {
    if b.is_empty() {
        return Ok(0);
    }
    let negative = b[b.len() - 1] & 0x80 != 0;
    // Strip sign-extension bytes beyond 16 so that e.g. a 17-byte
    // encoding of a 128-bit value is still accepted.
    let mut b = b;
    while b.len() > 16 {
        let last = b[b.len() - 1];
        if (negative && last == 0xff) || (!negative && last == 0) {
            b = &b[..b.len() - 1];
        } else {
            return Err(RecordError::IntTooLarge(at));
        }
    }
    let mut a = if negative { [0xffu8; 16] } else { [0u8; 16] };
    a[..b.len()].copy_from_slice(b);
    let v = i128::from_le_bytes(a);
    if (v < 0) != negative {
        return Err(RecordError::IntTooLarge(at));
    }
    Ok(v)
}

fn parse_int_text(line: &[u8], at: usize) -> Result<i128> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.trim().parse::<i128>().ok())
        .ok_or(RecordError::BadLiteral(at))
}

fn text_line(line: &[u8], at: usize) -> Result<String> {
    String::from_utf8(line.to_vec()).map_err(|_| RecordError::BadUtf8(at))
}

/// py3 ZODB reads py2 `str` with `encoding='ASCII', errors='strict'`.
fn py2_str(b: &[u8], at: usize) -> Result<&str> {
    if !b.is_ascii() {
        return Err(RecordError::NonAsciiString(at));
    }
    std::str::from_utf8(b).map_err(|_| RecordError::NonAsciiString(at))
}

/// The argument of protocol-0 `STRING`: a Python 2 `repr` of a str.
fn unquote_py2(line: &[u8], at: usize) -> Result<Vec<u8>> {
    let bad = || RecordError::BadLiteral(at);
    let inner = match line {
        [q, inner @ .., q2] if (*q == b'\'' || *q == b'"') && q == q2 => inner,
        _ => return Err(bad()),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *inner.get(i).ok_or_else(bad)?;
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'x' => {
                let h = inner.get(i..i + 2).ok_or_else(bad)?;
                let h = std::str::from_utf8(h).map_err(|_| bad())?;
                out.push(u8::from_str_radix(h, 16).map_err(|_| bad())?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match inner.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v).map_err(|_| bad())?);
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// The argument of protocol-0 `UNICODE`: raw-unicode-escape.
fn raw_unicode_escape(line: &[u8], at: usize) -> Result<String> {
    let bad = || RecordError::BadLiteral(at);
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c == b'\\' && matches!(line.get(i + 1), Some(b'u' | b'U')) {
            let n = if line[i + 1] == b'u' { 4 } else { 8 };
            let h = line.get(i + 2..i + 2 + n).ok_or_else(bad)?;
            let h = std::str::from_utf8(h).map_err(|_| bad())?;
            let cp = u32::from_str_radix(h, 16).map_err(|_| bad())?;
            out.push(char::from_u32(cp).ok_or_else(bad)?);
            i += 2 + n;
        } else {
            out.push(char::from(c));
            i += 1;
        }
    }
    Ok(out)
}
