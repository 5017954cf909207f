//! The RPC envelope `(msgid, flags, name, args)` in every encoding, and
//! builders for what a server sends: replies, error replies, and one-way
//! calls to the client (spec §3.1, §3.5, §6).

use super::exception::ServerError;
use super::handshake::Generation;
use super::pickle::{self, Dialect};
use super::{msgpack, Encoding, Error, Message, Result, Value};
use crate::ids::{Oid, Tid};

/// The method name of every reply.
pub const REPLY: &str = ".reply";

/// Decodes one frame payload. A pickle connection accepts any protocol
/// 0-3 regardless of its own (ZEO 4 heartbeats are always protocol 1).
pub fn decode_message(enc: Encoding, data: &[u8]) -> Result<Message> {
    let value = match enc {
        Encoding::Pickle3 | Encoding::Pickle1 => pickle::decode(data)?,
        Encoding::Msgpack => msgpack::decode(data)?,
    };
    let Value::Tuple(fields) = value else {
        return Err(Error::NotAnEnvelope);
    };
    let Ok([msgid, flags, name, args]) = <[Value; 4]>::try_from(fields) else {
        return Err(Error::NotAnEnvelope);
    };
    // Python 2 peers send method names as byte strings.
    let method = match name {
        Value::Str(s) => s,
        Value::Bytes(b) => String::from_utf8(b).map_err(|_| Error::MethodName)?,
        _ => return Err(Error::MethodName),
    };
    Ok(Message {
        msgid,
        flags,
        method,
        args,
    })
}

/// Encodes a message as the connection's peer reads it. Fails only for
/// msgpack and values it cannot express (globals, ints beyond 64 bits);
/// ZEO 6 answers those with [`ServerError::unpicklable_response`].
pub fn encode_message(enc: Encoding, msg: &Message) -> Result<Vec<u8>> {
    let method = enc.text(&msg.method);
    let envelope = [&msg.msgid, &msg.flags, &method, &msg.args];
    Ok(match enc {
        Encoding::Pickle3 => pickle::encode_tuple(&envelope, Dialect::Proto3),
        Encoding::Pickle1 => pickle::encode_tuple(&envelope, Dialect::Proto1),
        Encoding::Msgpack => msgpack::encode_tuple(&envelope)?,
    })
}

impl Encoding {
    /// A Python `str` as this peer has it: text, except for Python 2
    /// (protocol 1) peers, whose native strings are bytes.
    pub fn text(self, s: &str) -> Value {
        match self {
            Encoding::Pickle1 => Value::Bytes(s.as_bytes().to_vec()),
            Encoding::Pickle3 | Encoding::Msgpack => Value::Str(s.to_owned()),
        }
    }
}

impl Message {
    /// A heartbeat (`msgid -1`) or any other `.reply` sent to the server:
    /// to be ignored.
    pub fn is_reply(&self) -> bool {
        self.method == REPLY
    }

    /// One-way calls carry a truthy flag and expect no reply.
    pub fn is_one_way(&self) -> bool {
        self.flags.is_truthy()
    }

    /// What a `.reply` from a server answers: its value, or for a ZEO 5
    /// error reply (flag 2) `Err((class name, state))`; an error reply not
    /// shaped `(class, state)` is all state, with no class name.
    pub fn into_result(self) -> std::result::Result<Value, (String, Value)> {
        if self.flags != Value::Int(2) {
            return Ok(self.args);
        }
        match self.args {
            Value::Tuple(mut pair) if pair.len() == 2 => {
                let state = pair.pop().unwrap_or(Value::None);
                let class = pair
                    .pop()
                    .and_then(|c| c.as_text().map(str::to_owned))
                    .unwrap_or_default();
                Err((class, state))
            }
            other => Err((String::new(), other)),
        }
    }

    /// The positional arguments of a call; `None` if the peer sent
    /// something other than a tuple.
    pub fn call_args(&self) -> Option<&[Value]> {
        match &self.args {
            Value::Tuple(items) => Some(items),
            _ => None,
        }
    }
}

impl Value {
    /// Python truthiness of the values a flag can hold.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Bytes(b) => !b.is_empty(),
            Value::Str(s) => !s.is_empty(),
            Value::Tuple(v) | Value::List(v) => !v.is_empty(),
            Value::Dict(d) => !d.is_empty(),
            Value::Global { .. } | Value::Object { .. } => true,
        }
    }

    /// Text or (Python 2) UTF-8 bytes, as a `&str`.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some((*b).into()),
            _ => None,
        }
    }

    /// The value of `key` in a dict; the last one if a pickle repeated it
    /// (as Python's dict would keep).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(pairs) => pairs
                .iter()
                .rev()
                .find(|(k, _)| k.as_text() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A normal reply: `(msgid, 0, '.reply', value)`.
pub fn reply(msgid: Value, value: Value) -> Message {
    Message {
        msgid,
        flags: Value::Int(0),
        method: REPLY.to_owned(),
        args: value,
    }
}

/// A ZEO 5 (Z5/M5) error reply: `(msgid, 2, '.reply', (class_name, state))`.
pub fn error_reply(msgid: Value, error: &ServerError) -> Message {
    error_reply_raw(msgid, &error.class_name(), error.state())
}

/// A ZEO 5 error reply for any class name and state.
pub fn error_reply_raw(msgid: Value, class_name: &str, state: Value) -> Message {
    Message {
        msgid,
        flags: Value::Int(2),
        method: REPLY.to_owned(),
        args: Value::Tuple(vec![Value::Str(class_name.to_owned()), state]),
    }
}

/// A ZEO 4 error reply: `(msgid, 0, '.reply', (Class, instance))`, both
/// real pickled objects. Only pickle encodings can carry it.
pub fn z4_error_reply(msgid: Value, error: &ServerError, enc: Encoding) -> Message {
    reply(
        msgid,
        Value::Tuple(vec![error.z4_class(enc), error.z4_instance(enc)]),
    )
}

/// Either error form, by the connection's generation.
pub fn error_reply_for(
    generation: Generation,
    enc: Encoding,
    msgid: Value,
    error: &ServerError,
) -> Message {
    match generation {
        Generation::Zeo5 => error_reply(msgid, error),
        Generation::Zeo4 => z4_error_reply(msgid, error, enc),
    }
}

/// A one-way call to the client: msgid 0 and a truthy flag, `True` for
/// ZEO 5/6 (which asserts it) and `1` as ZEO 4 servers sent it.
pub fn one_way(generation: Generation, method: &str, args: Vec<Value>) -> Message {
    Message {
        msgid: Value::Int(0),
        flags: match generation {
            Generation::Zeo5 => Value::Bool(true),
            Generation::Zeo4 => Value::Int(1),
        },
        method: method.to_owned(),
        args: Value::Tuple(args),
    }
}

/// `invalidateTransaction(tid, [oid, …])`.
pub fn invalidate_transaction(generation: Generation, tid: Tid, oids: &[Oid]) -> Message {
    let oids = oids.iter().map(|&oid| Value::oid(oid)).collect();
    one_way(
        generation,
        "invalidateTransaction",
        vec![Value::tid(tid), Value::List(oids)],
    )
}

/// `info({'length': …, 'size': …})`.
pub fn info(generation: Generation, enc: Encoding, length: u64, size: u64) -> Message {
    let dict = Value::Dict(vec![
        (enc.text("length"), Value::Int(length.into())),
        (enc.text("size"), Value::Int(size.into())),
    ]);
    one_way(generation, "info", vec![dict])
}

pub fn receive_blob_start(generation: Generation, oid: Oid, serial: Tid) -> Message {
    one_way(
        generation,
        "receiveBlobStart",
        vec![Value::oid(oid), Value::tid(serial)],
    )
}

pub fn receive_blob_chunk(
    generation: Generation,
    oid: Oid,
    serial: Tid,
    chunk: Vec<u8>,
) -> Message {
    one_way(
        generation,
        "receiveBlobChunk",
        vec![Value::oid(oid), Value::tid(serial), Value::Bytes(chunk)],
    )
}

pub fn receive_blob_stop(generation: Generation, oid: Oid, serial: Tid) -> Message {
    one_way(
        generation,
        "receiveBlobStop",
        vec![Value::oid(oid), Value::tid(serial)],
    )
}

/// What `serialnos` reports for one stored oid (ZEO 4 only).
#[derive(Debug, Clone, PartialEq)]
pub enum SerialNo {
    /// Stored; the transaction's tid.
    Stored(Tid),
    /// Conflict resolved by the server, or touched by undo: `b'rs'`.
    Resolved,
    /// The store failed; the client raises this.
    Failed(ServerError),
}

/// `serialnos([(oid, tid | b'rs' | exception), …])`, sent before the vote
/// reply to ZEO 4 clients.
pub fn serialnos(enc: Encoding, entries: &[(Oid, SerialNo)]) -> Message {
    let entries = entries
        .iter()
        .map(|(oid, serial)| {
            let value = match serial {
                SerialNo::Stored(tid) => Value::tid(*tid),
                SerialNo::Resolved => Value::Bytes(b"rs".to_vec()),
                SerialNo::Failed(error) => error.z4_instance(enc),
            };
            Value::Tuple(vec![Value::oid(*oid), value])
        })
        .collect();
    one_way(Generation::Zeo4, "serialnos", vec![Value::List(entries)])
}

/// `invalidateVerify(oid)` during ZEO 4 full verification.
pub fn invalidate_verify(oid: Oid) -> Message {
    one_way(Generation::Zeo4, "invalidateVerify", vec![Value::oid(oid)])
}

/// `endVerify()`, after ZEO 4's `endZeoVerify`.
pub fn end_verify() -> Message {
    one_way(Generation::Zeo4, "endVerify", Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_reads_back_as_its_value_or_its_error() {
        let value = Value::Tuple(vec![Value::Int(1)]);
        assert_eq!(reply(Value::Int(7), value.clone()).into_result(), Ok(value));
        let state = Value::Tuple(vec![Value::Str("why".into())]);
        assert_eq!(
            error_reply_raw(Value::Int(7), "builtins.ValueError", state.clone()).into_result(),
            Err(("builtins.ValueError".to_owned(), state))
        );
        let odd = Message {
            args: Value::Str("no pair".into()),
            ..error_reply_raw(Value::Int(7), "x", Value::None)
        };
        assert_eq!(
            odd.into_result(),
            Err((String::new(), Value::Str("no pair".into())))
        );
    }
}
