//! The `M5` dialect: msgpack with bin types, as ZEO 5.1+ speaks it
//! (`msgpack.packb(use_bin_type=True)` / `unpackb(raw=False, use_list=False)`).
//!
//! bin ↔ `Bytes`, str ↔ `Str`, arrays decode to `Tuple` (Python reads them
//! with `use_list=False`), lists and tuples both encode as arrays, map ↔
//! `Dict`, nil, bool, ints up to uint64, float64. rmpv picks the smallest
//! forms exactly as Python's packer does (positive ints as uint, str8 for
//! 32-255 byte texts); encoding borrows payloads rather than copying them.

use rmpv::{Value as Mp, ValueRef as MpRef};

use super::pickle::Limits;
use super::{Encoding, Error, Result, Value};

pub fn decode(data: &[u8]) -> Result<Value> {
    decode_with(data, &Limits::default())
}

/// Only `max_depth` of the limits applies: msgpack has no memo.
pub fn decode_with(data: &[u8], limits: &Limits) -> Result<Value> {
    let mut rd = data;
    // rmpv counts a str or bin as a level of its own; leave room for it.
    let mp = rmpv::decode::read_value_with_max_depth(&mut rd, limits.max_depth + 2).map_err(
        |e| match e {
            rmpv::decode::Error::DepthLimitExceeded => Error::TooDeep {
                limit: limits.max_depth,
            },
            other => Error::MalformedMsgpack(other),
        },
    )?;
    if !rd.is_empty() {
        return Err(Error::TrailingBytes { extra: rd.len() });
    }
    from_mp(mp)
}

fn from_mp(mp: Mp) -> Result<Value> {
    Ok(match mp {
        Mp::Nil => Value::None,
        Mp::Boolean(b) => Value::Bool(b),
        Mp::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(n), _) => Value::Int(n.into()),
            (None, Some(n)) => Value::Int(n.into()),
            (None, None) => return Err(Error::IntegerOverflow),
        },
        Mp::F32(f) => Value::Float(f.into()),
        Mp::F64(f) => Value::Float(f),
        Mp::String(s) => match s.into_str() {
            Some(s) => Value::Str(s),
            None => return Err(Error::MsgpackText),
        },
        Mp::Binary(b) => Value::Bytes(b),
        Mp::Array(items) => Value::Tuple(items.into_iter().map(from_mp).collect::<Result<_>>()?),
        Mp::Map(pairs) => Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| Ok((from_mp(k)?, from_mp(v)?)))
                .collect::<Result<_>>()?,
        ),
        Mp::Ext(code, _) => return Err(Error::MsgpackExt { code }),
    })
}

/// Fails only for what msgpack cannot express: globals, objects, and ints
/// outside `i64::MIN..=u64::MAX`.
pub fn encode(value: &Value) -> Result<Vec<u8>> {
    write(&to_mp(value)?)
}

/// An array of borrowed values (the message envelope), without copying
/// their payloads.
pub fn encode_tuple(items: &[&Value]) -> Result<Vec<u8>> {
    write(&MpRef::Array(
        items.iter().map(|v| to_mp(v)).collect::<Result<_>>()?,
    ))
}

fn write(mp: &MpRef<'_>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    rmpv::encode::write_value_ref(&mut out, mp).map_err(|e| Error::Io(e.into()))?;
    Ok(out)
}

fn to_mp(value: &Value) -> Result<MpRef<'_>> {
    let unencodable = |what| Error::Unencodable {
        encoding: Encoding::Msgpack,
        what,
    };
    Ok(match value {
        Value::None => MpRef::Nil,
        Value::Bool(b) => MpRef::Boolean(*b),
        Value::Int(i) => {
            if let Ok(n) = u64::try_from(*i) {
                MpRef::from(n)
            } else if let Ok(n) = i64::try_from(*i) {
                MpRef::from(n)
            } else {
                return Err(unencodable("an integer beyond 64 bits"));
            }
        }
        Value::Float(f) => MpRef::F64(*f),
        Value::Bytes(b) => MpRef::Binary(b),
        Value::Str(s) => MpRef::from(s.as_str()),
        Value::Tuple(items) | Value::List(items) => {
            MpRef::Array(items.iter().map(to_mp).collect::<Result<_>>()?)
        }
        Value::Dict(pairs) => MpRef::Map(
            pairs
                .iter()
                .map(|(k, v)| Ok((to_mp(k)?, to_mp(v)?)))
                .collect::<Result<_>>()?,
        ),
        Value::Global { .. } => return Err(unencodable("a global")),
        Value::Object { .. } => return Err(unencodable("an object")),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn register_matches_appendix_a8() {
        let bytes = b"\x94\x01\xc2\xa8register\x92\xa11\x00";
        let v = decode(bytes).unwrap();
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::Int(1),
                Value::Bool(false),
                Value::Str("register".into()),
                Value::Tuple(vec![Value::Str("1".into()), Value::Int(0)]),
            ])
        );
        assert_eq!(encode(&v).unwrap(), bytes);
    }

    #[test]
    fn uint64_and_str8_use_python_forms() {
        let txn = Value::Int(140601160827536);
        assert_eq!(encode(&txn).unwrap()[0], 0xcf);
        assert_eq!(encode(&Value::Int(-1)).unwrap(), [0xff]);
        assert_eq!(encode(&Value::Int(-33)).unwrap(), [0xd0, 0xdf]);
        let s = Value::Str("x".repeat(40));
        assert_eq!(encode(&s).unwrap()[..2], [0xd9, 40]);
        assert!(encode(&Value::Int(1 << 64)).is_err());
    }

    #[test]
    fn ext_types_and_trailing_bytes_are_rejected() {
        assert!(matches!(
            decode(b"\xd4\x01\x00"),
            Err(Error::MsgpackExt { code: 1 })
        ));
        assert!(matches!(
            decode(b"\xc0\xc0"),
            Err(Error::TrailingBytes { extra: 1 })
        ));
    }
}
