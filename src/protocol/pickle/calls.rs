//! Calls a pickle may make (REDUCE, NEWOBJ, OBJ, INST), evaluated without
//! running anything: only allowlisted globals, only with the argument
//! shapes Python clients produce, and only into plain values.

use super::stack::Entry;
use crate::protocol::{Error, Result, Value};

/// `callable(*args)`. Globals in `trusted` (server replies read by a
/// client) become opaque [`Value::Object`]s; the allowlisted ones are
/// evaluated; anything else is refused rather than guessed.
pub(super) fn call(
    callable: Entry,
    args: Entry,
    trusted: &[(&str, &str)],
    (opcode, offset): (u8, usize),
) -> Result<Entry> {
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
    let is_trusted = trusted.iter().any(|&(m, n)| m == module && n == name);
    let value = match (module.as_str(), name.as_str()) {
        _ if is_trusted => return Ok(object(callable, args)),
        ("ZopeUndo.Prefix", "Prefix") => return Ok(object(callable, args)),
        // Python 2 `zodbpickle.binary(b'...')`: just bytes.
        ("zodbpickle", "binary") => match arg_values.as_slice() {
            [] => Value::Bytes(Vec::new()),
            [Value::Bytes(b)] => Value::Bytes(b.clone()),
            _ => return Err(unsupported()),
        },
        // `dict(items)`: what a dict subclass (e.g. a transaction's
        // extension mapping) reduces to. Only an iterable of pairs is taken.
        ("builtins" | "__builtin__", "dict") => match arg_values.as_slice() {
            [] => Value::Dict(Vec::new()),
            [Value::Dict(items)] => Value::Dict(items.clone()),
            [Value::Tuple(items) | Value::List(items)] => {
                let mut pairs = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::Tuple(kv) | Value::List(kv) if kv.len() == 2 => {
                            pairs.push((kv[0].clone(), kv[1].clone()));
                        }
                        _ => return Err(unsupported()),
                    }
                }
                Value::Dict(pairs)
            }
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
        _ => return Err(unsupported()),
    };
    Ok(Entry::new(value, args.depth))
}

fn is(v: &Value, m: &str, n: &str) -> bool {
    matches!(v, Value::Global { module, name } if module == m && name == n)
}

fn object(class: Entry, args: Entry) -> Entry {
    let depth = args.depth + 1;
    let value = Value::Object {
        class: Box::new(class.value),
        args: Box::new(args.value),
        state: None,
    };
    Entry::new(value, depth)
}
