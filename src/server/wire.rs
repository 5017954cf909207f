//! The server's seam to the protocol codec: length-prefixed frames and
//! message (de)serialisation in a connection's encoding. Everything the
//! server sends or receives passes through here, so swapping the codec
//! touches this file only.
//!
//! Interim implementation over serde-pickle and rmpv until `protocol`'s
//! own codec lands.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::protocol::{Encoding, Message, Value};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge { size: usize, limit: usize },
    #[error("empty frame")]
    EmptyFrame,
    #[error("cannot decode message: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// `u32` big-endian length + payload (spec §1.2).
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    pub fn new(max_frame: usize) -> FrameCodec {
        FrameCodec { max_frame }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let size = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if size > self.max_frame {
            return Err(WireError::FrameTooLarge {
                size,
                limit: self.max_frame,
            });
        }
        if size == 0 {
            return Err(WireError::EmptyFrame);
        }
        if src.len() < 4 + size {
            // Grow as bytes arrive rather than trusting the length word
            // with a huge reservation up front.
            src.reserve((4 + size - src.len()).min(1 << 20));
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(size)))
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), WireError> {
        let size = u32::try_from(item.len()).map_err(|_| WireError::FrameTooLarge {
            size: item.len(),
            limit: u32::MAX as usize,
        })?;
        dst.reserve(4 + item.len());
        dst.put_u32(size);
        dst.put_slice(item);
        Ok(())
    }
}

/// Decodes one RPC message.
pub fn decode(encoding: Encoding, payload: &[u8]) -> Result<Message, WireError> {
    let value = match encoding {
        Encoding::Msgpack => {
            let mut cursor = payload;
            let v = rmpv::decode::read_value(&mut cursor)
                .map_err(|e| WireError::Decode(e.to_string()))?;
            from_msgpack(v)?
        }
        Encoding::Pickle3 | Encoding::Pickle1 => unpickle(payload)?,
    };
    let Value::Tuple(mut items) = value else {
        return Err(WireError::Decode("message is not a tuple".into()));
    };
    if items.len() != 4 {
        return Err(WireError::Decode(format!(
            "message tuple has {} items, not 4",
            items.len()
        )));
    }
    let args = items.pop().unwrap_or(Value::None);
    let method = match items.pop() {
        Some(Value::Str(s)) => s,
        Some(Value::Bytes(b)) => String::from_utf8(b)
            .map_err(|_| WireError::Decode("method name is not UTF-8".into()))?,
        _ => return Err(WireError::Decode("method name is not text".into())),
    };
    let flags = items.pop().unwrap_or(Value::None);
    let msgid = items.pop().unwrap_or(Value::None);
    Ok(Message {
        msgid,
        flags,
        method,
        args,
    })
}

/// Encodes one RPC message.
pub fn encode(encoding: Encoding, message: &Message) -> Result<Vec<u8>, WireError> {
    let tuple = Value::Tuple(vec![
        message.msgid.clone(),
        message.flags.clone(),
        Value::Str(message.method.clone()),
        message.args.clone(),
    ]);
    match encoding {
        Encoding::Msgpack => {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &to_msgpack(&tuple)?)
                .map_err(|e| WireError::Encode(e.to_string()))?;
            Ok(out)
        }
        Encoding::Pickle3 | Encoding::Pickle1 => pickle(&tuple),
    }
}

/// A value as a protocol-3 pickle (transaction extensions are stored so).
pub fn pickle(value: &Value) -> Result<Vec<u8>, WireError> {
    serde_pickle::value_to_vec(&to_pickle(value)?, serde_pickle::SerOptions::new())
        .map_err(|e| WireError::Encode(e.to_string()))
}

/// A pickle as a value (any protocol; no globals).
pub fn unpickle(payload: &[u8]) -> Result<Value, WireError> {
    let v = serde_pickle::value_from_slice(payload, serde_pickle::DeOptions::new())
        .map_err(|e| WireError::Decode(e.to_string()))?;
    Ok(from_pickle(v))
}

fn from_pickle(v: serde_pickle::Value) -> Value {
    use serde_pickle::Value as P;
    match v {
        P::None => Value::None,
        P::Bool(b) => Value::Bool(b),
        P::I64(i) => Value::Int(i as i128),
        P::Int(big) => big
            .to_string()
            .parse()
            .map(Value::Int)
            .unwrap_or(Value::None),
        P::F64(f) => Value::Float(f),
        P::Bytes(b) => Value::Bytes(b),
        P::String(s) => Value::Str(s),
        P::List(l) => Value::List(l.into_iter().map(from_pickle).collect()),
        P::Tuple(t) => Value::Tuple(t.into_iter().map(from_pickle).collect()),
        P::Set(s) | P::FrozenSet(s) => {
            Value::List(s.into_iter().map(|h| from_pickle(h.into_value())).collect())
        }
        P::Dict(d) => Value::Dict(
            d.into_iter()
                .map(|(k, v)| (from_pickle(k.into_value()), from_pickle(v)))
                .collect(),
        ),
    }
}

fn to_pickle(v: &Value) -> Result<serde_pickle::Value, WireError> {
    use serde_pickle::Value as P;
    Ok(match v {
        Value::None => P::None,
        Value::Bool(b) => P::Bool(*b),
        Value::Int(i) => match i64::try_from(*i) {
            Ok(i) => P::I64(i),
            Err(_) => return Err(WireError::Encode(format!("integer {i} too large"))),
        },
        Value::Float(f) => P::F64(*f),
        Value::Bytes(b) => P::Bytes(b.clone()),
        Value::Str(s) => P::String(s.clone()),
        Value::Tuple(t) => P::Tuple(t.iter().map(to_pickle).collect::<Result<_, _>>()?),
        Value::List(l) => P::List(l.iter().map(to_pickle).collect::<Result<_, _>>()?),
        Value::Dict(d) => P::Dict(
            d.iter()
                .map(|(k, v)| {
                    let k = to_pickle(k)?
                        .into_hashable()
                        .map_err(|e| WireError::Encode(e.to_string()))?;
                    Ok((k, to_pickle(v)?))
                })
                .collect::<Result<_, WireError>>()?,
        ),
        Value::Global { .. } | Value::Object { .. } => {
            return Err(WireError::Encode("objects need the protocol codec".into()))
        }
    })
}

fn from_msgpack(v: rmpv::Value) -> Result<Value, WireError> {
    use rmpv::Value as M;
    Ok(match v {
        M::Nil => Value::None,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(i), _) => Value::Int(i as i128),
            (None, Some(u)) => Value::Int(u as i128),
            _ => return Err(WireError::Decode("bad integer".into())),
        },
        M::F32(f) => Value::Float(f as f64),
        M::F64(f) => Value::Float(f),
        M::String(s) => match s.into_str() {
            Some(s) => Value::Str(s),
            None => return Err(WireError::Decode("string is not UTF-8".into())),
        },
        M::Binary(b) => Value::Bytes(b),
        M::Array(a) => Value::Tuple(a.into_iter().map(from_msgpack).collect::<Result<_, _>>()?),
        M::Map(m) => Value::Dict(
            m.into_iter()
                .map(|(k, v)| Ok((from_msgpack(k)?, from_msgpack(v)?)))
                .collect::<Result<_, WireError>>()?,
        ),
        M::Ext(..) => {
            return Err(WireError::Decode(
                "msgpack extension types are not used by ZEO".into(),
            ))
        }
    })
}

fn to_msgpack(v: &Value) -> Result<rmpv::Value, WireError> {
    use rmpv::Value as M;
    Ok(match v {
        Value::None => M::Nil,
        Value::Bool(b) => M::Boolean(*b),
        Value::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
            (Ok(i), _) => M::from(i),
            (_, Ok(u)) => M::from(u),
            _ => return Err(WireError::Encode(format!("integer {i} too large"))),
        },
        Value::Float(f) => M::F64(*f),
        Value::Bytes(b) => M::Binary(b.clone()),
        Value::Str(s) => M::String(s.clone().into()),
        Value::Tuple(t) | Value::List(t) => {
            M::Array(t.iter().map(to_msgpack).collect::<Result<_, _>>()?)
        }
        Value::Dict(d) => M::Map(
            d.iter()
                .map(|(k, v)| Ok((to_msgpack(k)?, to_msgpack(v)?)))
                .collect::<Result<_, WireError>>()?,
        ),
        Value::Global { .. } | Value::Object { .. } => {
            return Err(WireError::Encode(
                "objects cannot be sent as msgpack".into(),
            ))
        }
    })
}
