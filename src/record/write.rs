//! The protocol-3 pickler, producing the bytes CPython's (and zodbpickle's)
//! `Pickler(protocol=3)` produces for the same objects: one memo across
//! the meta and state pickles, memo entries for every str, bytes, non-empty
//! tuple, list, dict and global, shared objects written once and fetched
//! with `BINGET` after. Objects built by calls are written back as the
//! operations that built them (Python would re-reduce them; the unpickled
//! result is the same).

use std::collections::HashMap;
use std::rc::Rc;

use crate::protocol::pickle::op;

use super::{Ctor, Global, Post, RecordError, Value, MAX_DEPTH};

type Result<T> = std::result::Result<T, RecordError>;

/// Items per `APPENDS`/`SETITEMS`, as CPython batches them.
const BATCH: usize = 1000;

/// Writes a data record: the meta pickle then the state pickle.
pub fn write(meta: &Value, state: &Value) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.dump(meta)?;
    w.dump(state)?;
    Ok(w.finish())
}

/// Writes a data record for Python 2 readers (ZODB3, ZODB 4 on Python 2):
/// protocol 2, with ASCII text as native `str` (`SHORT_BINSTRING`), as
/// cPickle writes it. Python 3's protocol 3 would turn the oids of
/// persistent references into `unicode`, which Python 2 ZODB rejects, and
/// `str` keys into `unicode` ones. Non-ASCII text stays `unicode` (it can
/// only have come from a `unicode`: a non-ASCII Python 2 `str` does not
/// parse).
pub fn write_py2(meta: &Value, state: &Value) -> Result<Vec<u8>> {
    let mut w = Writer {
        py2: true,
        ..Writer::default()
    };
    w.dump(meta)?;
    w.dump(state)?;
    Ok(w.finish())
}

#[derive(Hash, PartialEq, Eq)]
enum MemoKey {
    Ptr(usize),
    Global(Global),
}

/// A pickler whose memo spans every `dump`, like one Python `Pickler`
/// used for two `dump` calls.
#[derive(Default)]
pub struct Writer {
    out: Vec<u8>,
    memo: HashMap<MemoKey, u32>,
    /// Protocol 2 with Python 2 strings ([`write_py2`]).
    py2: bool,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Appends one complete pickle (`PROTO 3` … `STOP`) of `v`.
    pub fn dump(&mut self, v: &Value) -> Result<()> {
        self.out
            .extend_from_slice(&[op::PROTO, if self.py2 { 2 } else { 3 }]);
        self.save(v, 0)?;
        self.out.push(op::STOP);
        Ok(())
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }

    fn save(&mut self, v: &Value, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(RecordError::TooDeep(MAX_DEPTH));
        }
        let depth = depth + 1;
        match v {
            Value::None => self.out.push(op::NONE),
            Value::Bool(true) => self.out.push(op::NEWTRUE),
            Value::Bool(false) => self.out.push(op::NEWFALSE),
            Value::Int(i) => self.save_int(*i),
            Value::Float(f) => {
                self.out.push(op::BINFLOAT);
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Value::Bytes(b) => {
                let key = MemoKey::Ptr(b.as_ptr() as usize);
                if self.get(&key) {
                    return Ok(());
                }
                if self.py2 {
                    self.save_py2_str(b)?;
                } else if b.len() < 256 {
                    self.out.push(op::SHORT_BINBYTES);
                    self.out.push(b.len() as u8);
                } else {
                    self.out.push(op::BINBYTES);
                    self.out.extend_from_slice(&len4(b.len())?);
                }
                self.out.extend_from_slice(b);
                self.put(key);
            }
            Value::Str(s) => {
                let key = MemoKey::Ptr(s.as_ptr() as usize);
                if self.get(&key) {
                    return Ok(());
                }
                if self.py2 && s.is_ascii() {
                    self.save_py2_str(s.as_bytes())?;
                } else {
                    self.out.push(op::BINUNICODE);
                    self.out.extend_from_slice(&len4(s.len())?);
                    self.out.extend_from_slice(s.as_bytes());
                }
                self.put(key);
            }
            Value::Tuple(t) => self.save_tuple(t, depth)?,
            Value::List(l) => {
                let key = MemoKey::Ptr(Rc::as_ptr(l) as usize);
                if self.get(&key) {
                    return Ok(());
                }
                self.out.push(op::EMPTY_LIST);
                self.put(key);
                let items = l.borrow().clone();
                self.save_appends(&items, depth)?;
            }
            Value::Dict(d) => {
                let key = MemoKey::Ptr(Rc::as_ptr(d) as usize);
                if self.get(&key) {
                    return Ok(());
                }
                self.out.push(op::EMPTY_DICT);
                self.put(key);
                let items = d.borrow().clone();
                self.save_setitems(&items, depth)?;
            }
            Value::Global(g) => self.save_global(g),
            Value::Ref(r) => {
                self.save(&r.pid, depth)?;
                self.out.push(op::BINPERSID);
            }
            Value::Object(o) => {
                let key = MemoKey::Ptr(Rc::as_ptr(o) as usize);
                if self.get(&key) {
                    return Ok(());
                }
                let o = o.borrow().clone();
                match &o.ctor {
                    Ctor::Reduce { callable, args } => {
                        self.save(callable, depth)?;
                        self.save(args, depth)?;
                        self.out.push(op::REDUCE);
                    }
                    Ctor::NewObj { cls, args } => {
                        self.save(cls, depth)?;
                        self.save(args, depth)?;
                        self.out.push(op::NEWOBJ);
                    }
                    Ctor::Inst { global, args } => {
                        self.out.push(op::MARK);
                        for a in args {
                            self.save(a, depth)?;
                        }
                        self.out.push(op::INST);
                        self.global_text(global);
                    }
                    Ctor::Obj { cls, args } => {
                        self.out.push(op::MARK);
                        self.save(cls, depth)?;
                        for a in args {
                            self.save(a, depth)?;
                        }
                        self.out.push(op::OBJ);
                    }
                }
                self.put(key);
                for p in &o.post {
                    match p {
                        Post::Build(state) => {
                            self.save(state, depth)?;
                            self.out.push(op::BUILD);
                        }
                        Post::Append(items) => self.save_appends(items, depth)?,
                        Post::SetItems(items) => self.save_setitems(items, depth)?,
                    }
                }
            }
        }
        Ok(())
    }

    /// A Python 2 `str`: `SHORT_BINSTRING` or `BINSTRING`.
    fn save_py2_str(&mut self, b: &[u8]) -> Result<()> {
        if b.len() < 256 {
            self.out.push(op::SHORT_BINSTRING);
            self.out.push(b.len() as u8);
        } else {
            self.out.push(op::BINSTRING);
            self.out.extend_from_slice(&len4(b.len())?);
        }
        self.out.extend_from_slice(b);
        Ok(())
    }

    fn save_int(&mut self, i: i128) {
        match i {
            0..=0xff => {
                self.out.push(op::BININT1);
                self.out.push(i as u8);
            }
            0x100..=0xffff => {
                self.out.push(op::BININT2);
                self.out.extend_from_slice(&(i as u16).to_le_bytes());
            }
            _ => match i32::try_from(i) {
                Ok(i) => {
                    self.out.push(op::BININT);
                    self.out.extend_from_slice(&i.to_le_bytes());
                }
                Err(_) => {
                    let bytes = i.to_le_bytes();
                    let mut n = 16;
                    // Minimal two's complement: drop sign-extension bytes.
                    while n > 1 {
                        let top = bytes[n - 1];
                        let next_sign = bytes[n - 2] & 0x80;
                        if (top == 0 && next_sign == 0) || (top == 0xff && next_sign != 0) {
                            n -= 1;
                        } else {
                            break;
                        }
                    }
                    self.out.push(op::LONG1);
                    self.out.push(n as u8);
                    self.out.extend_from_slice(&bytes[..n]);
                }
            },
        }
    }

    fn save_tuple(&mut self, t: &Rc<[Value]>, depth: usize) -> Result<()> {
        if t.is_empty() {
            self.out.push(op::EMPTY_TUPLE);
            return Ok(());
        }
        let key = MemoKey::Ptr(t.as_ptr() as usize);
        if self.get(&key) {
            return Ok(());
        }
        let small = t.len() <= 3;
        if !small {
            self.out.push(op::MARK);
        }
        for item in t.iter() {
            self.save(item, depth)?;
        }
        // A tuple reached again through its own items was memoized
        // meanwhile: drop what was built and fetch it (CPython's rule).
        if let Some(&idx) = self.memo.get(&key) {
            if small {
                self.out.extend(std::iter::repeat_n(op::POP, t.len()));
            } else {
                self.out.push(op::POP_MARK);
            }
            self.emit_get(idx);
            return Ok(());
        }
        if small {
            self.out.push(op::TUPLE1 + (t.len() as u8 - 1));
        } else {
            self.out.push(op::TUPLE);
        }
        self.put(key);
        Ok(())
    }

    fn save_appends(&mut self, items: &[Value], depth: usize) -> Result<()> {
        if let [one] = items {
            self.save(one, depth)?;
            self.out.push(op::APPEND);
            return Ok(());
        }
        for chunk in items.chunks(BATCH) {
            self.out.push(op::MARK);
            for v in chunk {
                self.save(v, depth)?;
            }
            self.out.push(op::APPENDS);
        }
        Ok(())
    }

    fn save_setitems(&mut self, items: &[(Value, Value)], depth: usize) -> Result<()> {
        if let [(k, v)] = items {
            self.save(k, depth)?;
            self.save(v, depth)?;
            self.out.push(op::SETITEM);
            return Ok(());
        }
        for chunk in items.chunks(BATCH) {
            self.out.push(op::MARK);
            for (k, v) in chunk {
                self.save(k, depth)?;
                self.save(v, depth)?;
            }
            self.out.push(op::SETITEMS);
        }
        Ok(())
    }

    fn save_global(&mut self, g: &Global) {
        let key = MemoKey::Global(g.clone());
        if self.get(&key) {
            return;
        }
        self.out.push(op::GLOBAL);
        self.global_text(g);
        self.put(key);
    }

    fn global_text(&mut self, g: &Global) {
        self.out.extend_from_slice(g.module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(g.name.as_bytes());
        self.out.push(b'\n');
    }

    /// Emits a memo fetch when `key` was written before.
    fn get(&mut self, key: &MemoKey) -> bool {
        match self.memo.get(key) {
            Some(&idx) => {
                self.emit_get(idx);
                true
            }
            None => false,
        }
    }

    fn emit_get(&mut self, idx: u32) {
        if idx < 256 {
            self.out.push(op::BINGET);
            self.out.push(idx as u8);
        } else {
            self.out.push(op::LONG_BINGET);
            self.out.extend_from_slice(&idx.to_le_bytes());
        }
    }

    fn put(&mut self, key: MemoKey) {
        let idx = self.memo.len() as u32;
        self.memo.insert(key, idx);
        if idx < 256 {
            self.out.push(op::BINPUT);
            self.out.push(idx as u8);
        } else {
            self.out.push(op::LONG_BINPUT);
            self.out.extend_from_slice(&idx.to_le_bytes());
        }
    }
}

fn len4(n: usize) -> Result<[u8; 4]> {
    u32::try_from(n)
        .map(u32::to_le_bytes)
        .map_err(|_| RecordError::BadLiteral(n))
}
