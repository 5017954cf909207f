//! The pickle decoder: a stack machine over protocols 0-3 that never runs
//! code. Calls (REDUCE, NEWOBJ, OBJ, INST) are evaluated only for the
//! allowlisted globals and only into plain values; nesting depth and the
//! bytes copied out of the memo are bounded so hostile input can neither
//! overflow the stack (values drop recursively) nor balloon memory.

use super::calls;
use super::op;
use super::operands::{long_from_le, parse_int, raw_unicode_unescape, unquote_string};
use super::stack::{Entry, Stack};
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
    let machine = Machine {
        data,
        pos: 0,
        trusted_globals: limits.trusted_globals,
        stack: Stack::new(*limits),
        protocol: None,
    };
    machine.run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    trusted_globals: &'static [(&'static str, &'static str)],
    stack: Stack,
    protocol: Option<u8>,
}

impl<'a> Machine<'a> {
    fn run(mut self) -> Result<Decoded> {
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
        let used_memo = self.stack.used_memo;
        Ok(Decoded {
            value: self.stack.finish()?,
            protocol: self.protocol,
            used_memo,
        })
    }

    fn step(&mut self, opcode: u8, offset: usize) -> Result<()> {
        self.stack.at = (opcode, offset);
        match opcode {
            op::PROTO => {
                let n = self.byte()?;
                self.protocol.get_or_insert(n);
            }
            op::MARK => self.stack.mark(),
            op::POP => self.stack.pop_or_unmark()?,
            op::POP_MARK => {
                self.stack.take_mark()?;
            }
            op::DUP => self.stack.dup()?,

            op::NONE => self.stack.push(Value::None),
            op::NEWTRUE => self.stack.push(Value::Bool(true)),
            op::NEWFALSE => self.stack.push(Value::Bool(false)),
            op::BININT1 => {
                let n = self.byte()?;
                self.stack.push(Value::Int(n.into()));
            }
            op::BININT2 => {
                let n = u16::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(n.into()));
            }
            op::BININT => {
                let n = i32::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(n.into()));
            }
            op::LONG1 => {
                let n = self.byte()?;
                let bytes = self.take(n.into())?;
                let v = long_from_le(bytes)?;
                self.stack.push(Value::Int(v));
            }
            op::LONG4 => {
                let n = self.length(offset)?;
                let bytes = self.take(n)?;
                let v = long_from_le(bytes)?;
                self.stack.push(Value::Int(v));
            }
            op::INT => {
                let line = self.line()?;
                let value = match line {
                    b"00" => Value::Bool(false),
                    b"01" => Value::Bool(true),
                    _ => Value::Int(parse_int(line, offset)?),
                };
                self.stack.push(value);
            }
            op::LONG => {
                let line = self.line()?;
                let digits = line.strip_suffix(b"L").unwrap_or(line);
                self.stack.push(Value::Int(parse_int(digits, offset)?));
            }
            op::FLOAT => {
                let line = self.line()?;
                let f = std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .ok_or(Error::BadArgument { offset })?;
                self.stack.push(Value::Float(f));
            }
            op::BINFLOAT => {
                let f = f64::from_be_bytes(self.array()?);
                self.stack.push(Value::Float(f));
            }

            op::SHORT_BINSTRING | op::SHORT_BINBYTES => {
                let n = self.byte()?;
                let bytes = self.take(n.into())?;
                self.stack.push(Value::Bytes(bytes.to_vec()));
            }
            op::BINSTRING | op::BINBYTES => {
                let n = self.length(offset)?;
                let bytes = self.take(n)?;
                self.stack.push(Value::Bytes(bytes.to_vec()));
            }
            op::STRING => {
                let line = self.line()?;
                self.stack.push(Value::Bytes(unquote_string(line, offset)?));
            }
            op::BINUNICODE => {
                let n = self.length(offset)?;
                let bytes = self.take(n)?;
                let s = std::str::from_utf8(bytes).map_err(|_| Error::BadArgument { offset })?;
                self.stack.push(Value::Str(s.to_owned()));
            }
            op::UNICODE => {
                let line = self.line()?;
                self.stack
                    .push(Value::Str(raw_unicode_unescape(line, offset)?));
            }

            op::EMPTY_TUPLE => self.stack.push_empty(Value::Tuple(Vec::new()))?,
            op::TUPLE => {
                let items = self.stack.take_mark()?;
                self.stack.push_items(items, Value::Tuple)?;
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(opcode - op::TUPLE1) + 1;
                let items = self.stack.pop_n(n)?;
                self.stack.push_items(items, Value::Tuple)?;
            }
            op::EMPTY_LIST => self.stack.push_empty(Value::List(Vec::new()))?,
            op::LIST => {
                let items = self.stack.take_mark()?;
                self.stack.push_items(items, Value::List)?;
            }
            op::APPEND => {
                let item = self.stack.pop()?;
                self.stack.extend_list(vec![item])?;
            }
            op::APPENDS => {
                let items = self.stack.take_mark()?;
                self.stack.extend_list(items)?;
            }
            op::EMPTY_DICT => self.stack.push_empty(Value::Dict(Vec::new()))?,
            op::DICT => {
                let items = self.stack.take_mark()?;
                self.stack.push_empty(Value::Dict(Vec::new()))?;
                self.stack.extend_dict(items)?;
            }
            op::SETITEM => {
                let items = self.stack.pop_n(2)?;
                self.stack.extend_dict(items)?;
            }
            op::SETITEMS => {
                let items = self.stack.take_mark()?;
                self.stack.extend_dict(items)?;
            }

            op::PUT => {
                let key = parse_int(self.line()?, offset)?;
                let key = u32::try_from(key).map_err(|_| Error::BadArgument { offset })?;
                self.stack.put(key)?;
            }
            op::BINPUT => {
                let key = self.byte()?;
                self.stack.put(key.into())?;
            }
            op::LONG_BINPUT => {
                let key = u32::from_le_bytes(self.array()?);
                self.stack.put(key)?;
            }
            op::GET => {
                let key = parse_int(self.line()?, offset)?;
                let key = u32::try_from(key).map_err(|_| Error::BadArgument { offset })?;
                self.stack.get(key)?;
            }
            op::BINGET => {
                let key = self.byte()?;
                self.stack.get(key.into())?;
            }
            op::LONG_BINGET => {
                let key = u32::from_le_bytes(self.array()?);
                self.stack.get(key)?;
            }

            op::GLOBAL => {
                let global = self.global_operand()?;
                self.stack.push(global);
            }
            op::REDUCE | op::NEWOBJ => {
                let mut pair = self.stack.pop_n(2)?;
                let args = pair.pop();
                let callable = pair.pop();
                let (Some(callable), Some(args)) = (callable, args) else {
                    return Err(Error::StackUnderflow { opcode, offset });
                };
                let result = self.call(callable, args)?;
                self.stack.push_entry(result)?;
            }
            op::OBJ => {
                let mut items = self.stack.take_mark()?.into_iter();
                let callable = items
                    .next()
                    .ok_or(Error::StackUnderflow { opcode, offset })?;
                let args = Entry::tuple(items.collect());
                let result = self.call(callable, args)?;
                self.stack.push_entry(result)?;
            }
            op::INST => {
                let global = self.global_operand()?;
                let args = Entry::tuple(self.stack.take_mark()?);
                let result = self.call(Entry::leaf(global), args)?;
                self.stack.push_entry(result)?;
            }
            op::BUILD => self.stack.build()?,

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

    fn call(&self, callable: Entry, args: Entry) -> Result<Entry> {
        calls::call(callable, args, self.trusted_globals, self.stack.at)
    }
}
