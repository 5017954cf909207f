//! The pickle decoder: a stack machine over protocols 0-3 that never runs
//! code. Calls (REDUCE, NEWOBJ, OBJ, INST) are evaluated only for the
//! allowlisted globals and only into plain values; nesting depth and the
//! bytes copied out of the memo are bounded so hostile input can neither
//! overflow the stack (values drop recursively) nor balloon memory.

use std::collections::HashMap;

use super::op;
use crate::protocol::{Error, Result, Value};

/// Bounds on what one pickle may make us build, and which globals beyond
/// [`ALLOWED_GLOBALS`](super::ALLOWED_GLOBALS) it may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest container nesting accepted (a scalar is depth 0). ZEO
    /// messages nest about six levels; tpc_begin extensions a few more.
    pub max_depth: usize,
    /// Budget for copies made by memo GET/PUT and DUP, in bytes plus one
    /// per value node: the only ways a short pickle can build a big value.
    pub max_memo_copy: usize,
    /// Globals accepted in addition to the allowlist, for reading what a
    /// trusted Python *server* wrote (ZEO 4 error replies name
    /// `ZODB.POSException` classes). Calls on them decode to
    /// [`Value::Object`]. Never set this for bytes from a client.
    pub trusted_globals: &'static [(&'static str, &'static str)],
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 200,
            max_memo_copy: 64 << 20,
            trusted_globals: &[],
        }
    }
}

/// A decoded pickle with what the decoder noticed on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub value: Value,
    /// The PROTO header's number; `None` for protocol 0/1 pickles.
    pub protocol: Option<u8>,
    /// Whether memo opcodes (PUT/GET families) occurred.
    pub used_memo: bool,
}

/// Decodes one whole pickle (nothing may follow STOP) with default limits.
pub fn decode(data: &[u8]) -> Result<Value> {
    decode_with(data, &Limits::default()).map(|d| d.value)
}

pub fn decode_with(data: &[u8], limits: &Limits) -> Result<Decoded> {
    let mut machine = Machine {
        data,
        pos: 0,
        limits: *limits,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        copied: 0,
        protocol: None,
        used_memo: false,
    };
    let value = machine.run()?;
    Ok(Decoded {
        value,
        protocol: machine.protocol,
        used_memo: machine.used_memo,
    })
}

/// A value on the stack with its nesting depth and the memo keys that
/// refer to it while it is still there.
struct Entry {
    value: Value,
    depth: usize,
    memo: Vec<u32>,
}

impl Entry {
    fn leaf(value: Value) -> Entry {
        Entry {
            value,
            depth: 0,
            memo: Vec::new(),
        }
    }
}

/// Python memoizes objects, not values: a container PUT when empty and
/// filled afterwards must come back filled from a later GET. So a memo slot
/// points at the stack entry until that entry leaves the stack (into a
/// container, or popped), and only then holds a snapshot.
enum Slot {
    OnStack(usize),
    Done { value: Value, depth: usize },
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    limits: Limits,
    stack: Vec<Entry>,
    /// Stack lengths at each MARK; the last one is the "fence" below which
    /// ordinary pops may not reach.
    marks: Vec<usize>,
    memo: HashMap<u32, Slot>,
    copied: usize,
    protocol: Option<u8>,
    used_memo: bool,
}

impl<'a> Machine<'a> {
    fn run(&mut self) -> Result<Value> {
        loop {
            let offset = self.pos;
            let opcode = self.byte()?;
            if opcode == op::STOP {
                break;
            }
            self.step(opcode, offset)?;
        }
        if self.pos != self.data.len() {
            return Err(Error::TrailingBytes {
                extra: self.data.len() - self.pos,
            });
        }
        if self.stack.len() != 1 || !self.marks.is_empty() {
            return Err(Error::UnbalancedStop {
                depth: self.stack.len(),
            });
        }
        let top = self.stack.len() - 1;
        let entry = self.stack.remove(top);
        Ok(entry.value)
    }

    fn step(&mut self, opcode: u8, offset: usize) -> Result<()> {
        match opcode {
            op::PROTO => {
                let n = self.byte()?;
                self.protocol.get_or_insert(n);
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop(opcode, offset)?;
                }
            }
            op::POP_MARK => {
                self.take_mark(opcode, offset)?;
            }
            op::DUP => {
                let top = self.top(opcode, offset)?;
                let (value, depth) = (top.value.clone(), top.depth);
                self.charge(&value)?;
                self.push_entry(Entry {
                    value,
                    depth,
                    memo: Vec::new(),
                })?;
            }

            op::NONE => self.push(Value::None),
            op::NEWTRUE => self.push(Value::Bool(true)),
            op::NEWFALSE => self.push(Value::Bool(false)),
            op::BININT1 => {
                let n = self.byte()?;
                self.push(Value::Int(n.into()));
            }
            op::BININT2 => {
                let n = u16::from_le_bytes(self.array()?);
                self.push(Value::Int(n.into()));
            }
            op::BININT => {
                let n = i32::from_le_bytes(self.array()?);
                self.push(Value::Int(n.into()));
            }
            op::LONG1 => {
                let n = self.byte()?;
                let bytes = self.take(n.into())?;
                let v = long_from_le(bytes)?;
                self.push(Value::Int(v));
            }
            op::LONG4 => {
                let n = self.length(offset)?;
                let bytes = self.take(n)?;
                let v = long_from_le(bytes)?;
                self.push(Value::Int(v));
            }
            op::INT => {
                let line = self.line()?;
                let value = match line {
                    b"00" => Value::Bool(false),
                    b"01" => Value::Bool(true),
                    _ => Value::Int(parse_int(line, offset)?),
                };
                self.push(value);
            }
            op::LONG => {
                let line = self.line()?;
                let digits = line.strip_suffix(b"L").unwrap_or(line);
                self.push(Value::Int(parse_int(digits, offset)?));
            }
            op::FLOAT => {
                let line = self.line()?;
                let f = std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .ok_or(Error::BadArgument { offset })?;
                self.push(Value::Float(f));
            }
            op::BINFLOAT => {
                let f = f64::from_be_bytes(self.array()?);
                self.push(Value::Float(f));
            }

            op::SHORT_BINSTRING | op::SHORT_BINBYTES => {
                let n = self.byte()?;
                let bytes = self.take(n.into())?;
                self.push(Value::Bytes(bytes.to_vec()));
            }
            op::BINSTRING | op::BINBYTES => {
                let n = self.length(offset)?;
                let bytes = self.take(n)?;
                self.push(Value::Bytes(bytes.to_vec()));
            }
            op::STRING => {
                let line = self.line()?;
                self.push(Value::Bytes(unquote_string(line, offset)?));
            }
            op::BINUNICODE => {
                let n = self.length(offset)?;
                let bytes = self.take(n)?;
                let s = std::str::from_utf8(bytes).map_err(|_| Error::BadArgument { offset })?;
                self.push(Value::Str(s.to_owned()));
            }
            op::UNICODE => {
                let line = self.line()?;
                self.push(Value::Str(raw_unicode_unescape(line, offset)?));
            }

            op::EMPTY_TUPLE => self.push_container(Value::Tuple(Vec::new()), 0)?,
            op::TUPLE => {
                let items = self.take_mark(opcode, offset)?;
                self.push_items(items, Value::Tuple)?;
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(opcode - op::TUPLE1) + 1;
                let items = self.pop_n(n, opcode, offset)?;
                self.push_items(items, Value::Tuple)?;
            }
            op::EMPTY_LIST => self.push_container(Value::List(Vec::new()), 0)?,
            op::LIST => {
                let items = self.take_mark(opcode, offset)?;
                self.push_items(items, Value::List)?;
            }
            op::APPEND => {
                let item = self.pop(opcode, offset)?;
                self.extend_list(vec![item], opcode, offset)?;
            }
            op::APPENDS => {
                let items = self.take_mark(opcode, offset)?;
                self.extend_list(items, opcode, offset)?;
            }
            op::EMPTY_DICT => self.push_container(Value::Dict(Vec::new()), 0)?,
            op::DICT => {
                let items = self.take_mark(opcode, offset)?;
                self.push_container(Value::Dict(Vec::new()), 0)?;
                self.extend_dict(items, opcode, offset)?;
            }
            op::SETITEM => {
                let items = self.pop_n(2, opcode, offset)?;
                self.extend_dict(items, opcode, offset)?;
            }
            op::SETITEMS => {
                let items = self.take_mark(opcode, offset)?;
                self.extend_dict(items, opcode, offset)?;
            }

            op::PUT => {
                let key = parse_int(self.line()?, offset)?;
                let key = u32::try_from(key).map_err(|_| Error::BadArgument { offset })?;
                self.put(key, opcode, offset)?;
            }
            op::BINPUT => {
                let key = self.byte()?;
                self.put(key.into(), opcode, offset)?;
            }
            op::LONG_BINPUT => {
                let key = u32::from_le_bytes(self.array()?);
                self.put(key, opcode, offset)?;
            }
            op::GET => {
                let key = parse_int(self.line()?, offset)?;
                let key = u32::try_from(key).map_err(|_| Error::BadArgument { offset })?;
                self.get(key)?;
            }
            op::BINGET => {
                let key = self.byte()?;
                self.get(key.into())?;
            }
            op::LONG_BINGET => {
                let key = u32::from_le_bytes(self.array()?);
                self.get(key)?;
            }

            op::GLOBAL => {
                let global = self.global_operand()?;
                self.push(global);
            }
            op::REDUCE | op::NEWOBJ => {
                let mut pair = self.pop_n(2, opcode, offset)?;
                let args = pair.pop();
                let callable = pair.pop();
                let (Some(callable), Some(args)) = (callable, args) else {
                    return Err(Error::StackUnderflow { opcode, offset });
                };
                let result = self.call(callable, args, opcode, offset)?;
                self.push_entry(result)?;
            }
            op::OBJ => {
                let mut items = self.take_mark(opcode, offset)?.into_iter();
                let callable = items
                    .next()
                    .ok_or(Error::StackUnderflow { opcode, offset })?;
                let args = tuple_entry(items.collect());
                let result = self.call(callable, args, opcode, offset)?;
                self.push_entry(result)?;
            }
            op::INST => {
                let global = self.global_operand()?;
                let args = tuple_entry(self.take_mark(opcode, offset)?);
                let result = self.call(Entry::leaf(global), args, opcode, offset)?;
                self.push_entry(result)?;
            }
            op::BUILD => {
                let state = self.pop(opcode, offset)?;
                let max_depth = self.limits.max_depth;
                let obj = self.top_mut(opcode, offset)?;
                let Value::Object { state: slot, .. } = &mut obj.value else {
                    return Err(Error::WrongType { opcode, offset });
                };
                *slot = Some(Box::new(state.value));
                obj.depth = obj.depth.max(state.depth + 1);
                if obj.depth > max_depth {
                    return Err(Error::TooDeep { limit: max_depth });
                }
            }

            op::PERSID | op::BINPERSID => return Err(Error::PersistentId),
            _ => return Err(Error::UnsupportedOpcode { opcode, offset }),
        }
        Ok(())
    }

    // --- reading operands -------------------------------------------------

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let bytes = self.data.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8> {
        let [b] = self.array()?;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| Error::Truncated)
    }

    /// A 4-byte little-endian length; Python reads it signed and refuses
    /// negative counts.
    fn length(&mut self, offset: usize) -> Result<usize> {
        let n = i32::from_le_bytes(self.array()?);
        usize::try_from(n).map_err(|_| Error::BadArgument { offset })
    }

    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = self.data.get(self.pos..).ok_or(Error::Truncated)?;
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(Error::Truncated)?;
        let line = self.take(n + 1)?;
        Ok(&line[..n])
    }

    fn global_operand(&mut self) -> Result<Value> {
        let module = self.line()?;
        let name = self.line()?;
        let (Ok(module), Ok(name)) = (std::str::from_utf8(module), std::str::from_utf8(name))
        else {
            return Err(Error::ForbiddenGlobal {
                module: String::from_utf8_lossy(module).into_owned(),
                name: String::from_utf8_lossy(name).into_owned(),
            });
        };
        let trusted = self
            .limits
            .trusted_globals
            .iter()
            .any(|&(m, n)| m == module && n == name);
        if !trusted && !super::is_allowed(module, name) {
            return Err(Error::ForbiddenGlobal {
                module: module.to_owned(),
                name: name.to_owned(),
            });
        }
        Ok(Value::Global {
            module: module.to_owned(),
            name: name.to_owned(),
        })
    }

    // --- the stack --------------------------------------------------------

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, value: Value) {
        self.stack.push(Entry::leaf(value));
    }

    fn push_entry(&mut self, entry: Entry) -> Result<()> {
        if entry.depth > self.limits.max_depth {
            return Err(Error::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        self.stack.push(entry);
        Ok(())
    }

    fn push_container(&mut self, value: Value, child_depth: usize) -> Result<()> {
        self.push_entry(Entry {
            value,
            depth: child_depth + 1,
            memo: Vec::new(),
        })
    }

    fn push_items(&mut self, items: Vec<Entry>, make: fn(Vec<Value>) -> Value) -> Result<()> {
        let depth = items.iter().map(|e| e.depth).max().unwrap_or(0);
        let values = items.into_iter().map(|e| e.value).collect();
        self.push_container(make(values), depth)
    }

    fn top(&self, opcode: u8, offset: usize) -> Result<&Entry> {
        if self.stack.len() <= self.fence() {
            return Err(Error::StackUnderflow { opcode, offset });
        }
        self.stack
            .last()
            .ok_or(Error::StackUnderflow { opcode, offset })
    }

    fn top_mut(&mut self, opcode: u8, offset: usize) -> Result<&mut Entry> {
        if self.stack.len() <= self.fence() {
            return Err(Error::StackUnderflow { opcode, offset });
        }
        self.stack
            .last_mut()
            .ok_or(Error::StackUnderflow { opcode, offset })
    }

    fn pop(&mut self, opcode: u8, offset: usize) -> Result<Entry> {
        let mut items = self.pop_n(1, opcode, offset)?;
        items.pop().ok_or(Error::StackUnderflow { opcode, offset })
    }

    fn pop_n(&mut self, n: usize, opcode: u8, offset: usize) -> Result<Vec<Entry>> {
        let start = self
            .stack
            .len()
            .checked_sub(n)
            .filter(|&start| start >= self.fence())
            .ok_or(Error::StackUnderflow { opcode, offset })?;
        self.split_off(start)
    }

    fn take_mark(&mut self, opcode: u8, offset: usize) -> Result<Vec<Entry>> {
        let start = self
            .marks
            .pop()
            .ok_or(Error::MissingMark { opcode, offset })?;
        self.split_off(start)
    }

    /// Removes entries from `start` up; memo slots pointing at them become
    /// snapshots now that the values are final.
    fn split_off(&mut self, start: usize) -> Result<Vec<Entry>> {
        let items = self.stack.split_off(start.min(self.stack.len()));
        for (i, entry) in items.iter().enumerate() {
            for &key in &entry.memo {
                if let Some(Slot::OnStack(at)) = self.memo.get(&key) {
                    if *at == start + i {
                        self.charge(&entry.value)?;
                        self.memo.insert(
                            key,
                            Slot::Done {
                                value: entry.value.clone(),
                                depth: entry.depth,
                            },
                        );
                    }
                }
            }
        }
        Ok(items)
    }

    fn extend_list(&mut self, items: Vec<Entry>, opcode: u8, offset: usize) -> Result<()> {
        let max_depth = self.limits.max_depth;
        let list = self.top_mut(opcode, offset)?;
        let Value::List(values) = &mut list.value else {
            return Err(Error::WrongType { opcode, offset });
        };
        for item in items {
            list.depth = list.depth.max(item.depth + 1);
            values.push(item.value);
        }
        if list.depth > max_depth {
            return Err(Error::TooDeep { limit: max_depth });
        }
        Ok(())
    }

    /// Keys stay in pickle order; a repeated key is kept twice (Python's
    /// pickler never writes one, and a linear dedup would be quadratic).
    fn extend_dict(&mut self, items: Vec<Entry>, opcode: u8, offset: usize) -> Result<()> {
        if items.len() % 2 != 0 {
            return Err(Error::BadArgument { offset });
        }
        let max_depth = self.limits.max_depth;
        let dict = self.top_mut(opcode, offset)?;
        let Value::Dict(pairs) = &mut dict.value else {
            return Err(Error::WrongType { opcode, offset });
        };
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            dict.depth = dict.depth.max(k.depth + 1).max(v.depth + 1);
            pairs.push((k.value, v.value));
        }
        if dict.depth > max_depth {
            return Err(Error::TooDeep { limit: max_depth });
        }
        Ok(())
    }

    // --- the memo ---------------------------------------------------------

    fn put(&mut self, key: u32, opcode: u8, offset: usize) -> Result<()> {
        self.used_memo = true;
        let at = self.stack.len().wrapping_sub(1);
        let entry = self.top_mut(opcode, offset)?;
        entry.memo.push(key);
        self.memo.insert(key, Slot::OnStack(at));
        Ok(())
    }

    fn get(&mut self, key: u32) -> Result<()> {
        self.used_memo = true;
        let (value, depth) = match self.memo.get(&key) {
            Some(Slot::Done { value, depth }) => (value.clone(), *depth),
            Some(Slot::OnStack(at)) => {
                let entry = self.stack.get(*at).ok_or(Error::MissingMemo { key })?;
                (entry.value.clone(), entry.depth)
            }
            None => return Err(Error::MissingMemo { key }),
        };
        self.charge(&value)?;
        self.push_entry(Entry {
            value,
            depth,
            memo: Vec::new(),
        })
    }

    fn call(&self, callable: Entry, args: Entry, opcode: u8, offset: usize) -> Result<Entry> {
        let trusted = matches!(&callable.value, Value::Global { module, name }
            if self.limits.trusted_globals.iter().any(|&(m, n)| m == module && n == name));
        if trusted && matches!(args.value, Value::Tuple(_)) {
            return Ok(Entry {
                depth: args.depth + 1,
                value: Value::Object {
                    class: Box::new(callable.value),
                    args: Box::new(args.value),
                    state: None,
                },
                memo: Vec::new(),
            });
        }
        call(callable, args, opcode, offset)
    }

    fn charge(&mut self, value: &Value) -> Result<()> {
        let limit = self.limits.max_memo_copy;
        let budget = limit.saturating_sub(self.copied);
        let cost = weight(value, budget).ok_or(Error::TooLarge { limit })?;
        self.copied += cost;
        Ok(())
    }
}

fn tuple_entry(items: Vec<Entry>) -> Entry {
    let depth = items.iter().map(|e| e.depth + 1).max().unwrap_or(1);
    Entry {
        value: Value::Tuple(items.into_iter().map(|e| e.value).collect()),
        depth,
        memo: Vec::new(),
    }
}

/// Size of a value in bytes of payload plus one per node; `None` once it
/// exceeds `budget`.
fn weight(value: &Value, budget: usize) -> Option<usize> {
    let mut total = 1usize;
    let add = |v: &Value, total: &mut usize| -> Option<()> {
        let remaining = budget.checked_sub(*total)?;
        *total += weight(v, remaining)?;
        Some(())
    };
    match value {
        Value::Bytes(b) => total += b.len(),
        Value::Str(s) => total += s.len(),
        Value::Global { module, name } => total += module.len() + name.len(),
        Value::Tuple(items) | Value::List(items) => {
            for v in items {
                add(v, &mut total)?;
            }
        }
        Value::Dict(pairs) => {
            for (k, v) in pairs {
                add(k, &mut total)?;
                add(v, &mut total)?;
            }
        }
        Value::Object { class, args, state } => {
            add(class, &mut total)?;
            add(args, &mut total)?;
            if let Some(state) = state {
                add(state, &mut total)?;
            }
        }
        Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
    }
    (total <= budget).then_some(total)
}

/// Evaluates a call on an allowlisted global. Only shapes Python clients
/// produce are understood; everything else is refused rather than guessed.
fn call(callable: Entry, args: Entry, opcode: u8, offset: usize) -> Result<Entry> {
    let Value::Global { module, name } = &callable.value else {
        return Err(Error::WrongType { opcode, offset });
    };
    let Value::Tuple(arg_values) = &args.value else {
        return Err(Error::WrongType { opcode, offset });
    };
    let unsupported = || Error::UnsupportedCall {
        module: module.clone(),
        name: name.clone(),
    };
    let is = |v: &Value, m: &str, n: &str| matches!(v, Value::Global { module, name } if module == m && name == n);
    let value = match (module.as_str(), name.as_str()) {
        // Python 2 `zodbpickle.binary(b'...')`: just bytes.
        ("zodbpickle", "binary") => match arg_values.as_slice() {
            [] => Value::Bytes(Vec::new()),
            [Value::Bytes(b)] => Value::Bytes(b.clone()),
            _ => return Err(unsupported()),
        },
        // Protocol 0/1 spelling of str subclasses and new-style instances.
        ("copy_reg" | "copyreg", "_reconstructor") => match arg_values.as_slice() {
            [cls, base, Value::Bytes(b)]
                if is(cls, "zodbpickle", "binary")
                    && (is(base, "__builtin__", "str") || is(base, "builtins", "bytes")) =>
            {
                Value::Bytes(b.clone())
            }
            [cls, base, Value::None]
                if is(cls, "ZopeUndo.Prefix", "Prefix")
                    && (is(base, "__builtin__", "object") || is(base, "builtins", "object")) =>
            {
                Value::Object {
                    class: Box::new(cls.clone()),
                    args: Box::new(Value::Tuple(Vec::new())),
                    state: None,
                }
            }
            _ => return Err(unsupported()),
        },
        ("ZopeUndo.Prefix", "Prefix") => {
            return Ok(Entry {
                depth: args.depth + 1,
                value: Value::Object {
                    class: Box::new(callable.value),
                    args: Box::new(args.value),
                    state: None,
                },
                memo: Vec::new(),
            })
        }
        _ => return Err(unsupported()),
    };
    Ok(Entry {
        depth: args.depth,
        value,
        memo: Vec::new(),
    })
}

/// Little-endian two's complement, as LONG1/LONG4 carry it.
fn long_from_le(bytes: &[u8]) -> Result<i128> {
    let Some(&last) = bytes.last() else {
        return Ok(0);
    };
    let fill = if last & 0x80 != 0 { 0xff } else { 0x00 };
    let mut buf = [fill; 16];
    let (low, high) = bytes.split_at(bytes.len().min(16));
    buf[..low.len()].copy_from_slice(low);
    let v = i128::from_le_bytes(buf);
    // Extra high bytes must be pure sign extension of what fits.
    let sign = if v < 0 { 0xff } else { 0x00 };
    if high.iter().any(|&b| b != sign) {
        return Err(Error::IntegerOverflow);
    }
    Ok(v)
}

fn parse_int(text: &[u8], offset: usize) -> Result<i128> {
    let s = std::str::from_utf8(text)
        .map_err(|_| Error::BadArgument { offset })?
        .trim();
    match s.parse::<i128>() {
        Ok(v) => Ok(v),
        Err(e) => match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                Err(Error::IntegerOverflow)
            }
            _ => Err(Error::BadArgument { offset }),
        },
    }
}

/// STRING's operand: a quoted Python 2 `repr` of a byte string.
fn unquote_string(line: &[u8], offset: usize) -> Result<Vec<u8>> {
    let bad = || Error::BadArgument { offset };
    let quote = *line.first().ok_or_else(bad)?;
    if line.len() < 2 || !(quote == b'\'' || quote == b'"') || line.last() != Some(&quote) {
        return Err(bad());
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let esc = *body.get(i).ok_or_else(bad)?;
        i += 1;
        match esc {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(esc),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'x' => {
                let hex = body.get(i..i + 2).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(esc - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            _ => {
                out.push(b'\\');
                out.push(esc);
            }
        }
    }
    Ok(out)
}

/// UNICODE's operand: Python's `raw-unicode-escape` (Latin-1 bytes with
/// `\uXXXX` / `\UXXXXXXXX` escapes).
fn raw_unicode_unescape(line: &[u8], offset: usize) -> Result<String> {
    let bad = || Error::BadArgument { offset };
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while let Some(&b) = line.get(i) {
        let digits = match (b, line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => {
                out.push(char::from(b));
                i += 1;
                continue;
            }
        };
        let hex = line.get(i + 2..i + 2 + digits).ok_or_else(bad)?;
        let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
        let code = u32::from_str_radix(hex, 16).map_err(|_| bad())?;
        out.push(char::from_u32(code).ok_or_else(bad)?);
        i += 2 + digits;
    }
    Ok(out)
}
