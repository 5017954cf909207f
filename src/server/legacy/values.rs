//! The values of replies to Z4-family clients: `get_info` as they know
//! it, Python 2 native strings, and errors as `(Class, instance)` pickles
//! (`ZODB.POSException._recon`) instead of Z5's `(name, state)` pairs.

use super::Z4Protocol;
use crate::protocol::exception::{ConflictDetail, ServerError};
use crate::protocol::{Encoding, Value};

/// `get_info` for the Z4 family: `extensionMethods` (none offered), undo
/// only from Z310 on, native strings for Python 2.
pub(super) fn z4_info(info: Value, protocol: Option<Z4Protocol>, enc: Encoding) -> Value {
    let Value::Dict(mut entries) = info else {
        return info;
    };
    if protocol < Some(Z4Protocol::Z310) {
        for (k, v) in entries.iter_mut() {
            if k.as_text() == Some("supportsUndo") {
                *v = Value::Bool(false);
            }
        }
    }
    entries.push((
        Value::Str("extensionMethods".into()),
        Value::Dict(Vec::new()),
    ));
    let info = Value::Dict(entries);
    if enc == Encoding::Pickle1 {
        all_text_native(info)
    } else {
        info
    }
}

/// Every text as a Python 2 native string (the names in `get_info`).
fn all_text_native(value: Value) -> Value {
    match value {
        Value::Str(s) => Value::Bytes(s.into_bytes()),
        Value::Tuple(items) => Value::Tuple(items.into_iter().map(all_text_native).collect()),
        Value::List(items) => Value::List(items.into_iter().map(all_text_native).collect()),
        Value::Dict(pairs) => Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (all_text_native(k), all_text_native(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Dict keys as Python 2 native strings, as a Python 2 server's replies
/// have them (`history`, `undoLog`, `server_status`, …). Values keep their
/// type: text a client stored stays unicode.
pub fn native_keys(value: Value) -> Value {
    match value {
        Value::Tuple(items) => Value::Tuple(items.into_iter().map(native_keys).collect()),
        Value::List(items) => Value::List(items.into_iter().map(native_keys).collect()),
        Value::Dict(pairs) => Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let k = match k {
                        Value::Str(s) => Value::Bytes(s.into_bytes()),
                        other => other,
                    };
                    (k, native_keys(v))
                })
                .collect(),
        ),
        other => other,
    }
}

/// The `(Class, instance)` reply value of a ZEO 4 error reply.
pub fn error_value(enc: Encoding, class: &str, state: Value) -> Value {
    let error = server_error(class, state);
    Value::Tuple(vec![error.z4_class(enc), error.z4_instance(enc)])
}

/// A server error from its Z5 `(class name, state)` form.
fn server_error(class: &str, state: Value) -> ServerError {
    let args = match &state {
        Value::Tuple(items) => items.clone(),
        _ => Vec::new(),
    };
    let first_text = || {
        args.first()
            .and_then(Value::as_text)
            .unwrap_or_default()
            .to_string()
    };
    let detail = |state: &Value| ConflictDetail {
        message: state
            .get("message")
            .and_then(Value::as_text)
            .map(str::to_string),
        oid: state.get("oid").and_then(Value::as_oid),
        class_name: state
            .get("class_name")
            .and_then(Value::as_text)
            .map(str::to_string),
        serials: match state.get("serials") {
            Some(Value::Tuple(pair)) => pair
                .first()
                .and_then(Value::as_tid)
                .zip(pair.get(1).and_then(Value::as_tid)),
            _ => None,
        },
    };
    match class {
        "ZODB.POSException.POSKeyError" => match args.first().and_then(Value::as_oid) {
            Some(oid) => ServerError::PosKey { oid },
            None => ServerError::Other {
                class_name: class.to_string(),
                args,
            },
        },
        "ZODB.POSException.ConflictError" => ServerError::Conflict(detail(&state)),
        "ZODB.POSException.ReadConflictError" => ServerError::ReadConflict(detail(&state)),
        "ZODB.POSException.ReadOnlyError" => ServerError::ReadOnly,
        "ZODB.POSException.StorageTransactionError" => ServerError::StorageTransaction(args),
        "ZODB.POSException.MultipleUndoErrors" => {
            let errs = match state.get("_errs") {
                Some(Value::List(errs)) => errs
                    .iter()
                    .map(|e| match e {
                        Value::Tuple(pair) => (
                            pair.first().and_then(Value::as_oid),
                            pair.get(1)
                                .and_then(Value::as_text)
                                .unwrap_or_default()
                                .to_string(),
                        ),
                        _ => (None, String::new()),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            ServerError::MultipleUndo(errs)
        }
        "builtins.ValueError" => ServerError::ValueError(first_text()),
        "builtins.TypeError" => ServerError::TypeError(first_text()),
        "builtins.KeyError" => ServerError::KeyError(args.first().cloned().unwrap_or(Value::None)),
        _ => ServerError::Other {
            class_name: class.to_string(),
            args,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ids::{Oid, Tid};

    #[test]
    fn z5_error_states_become_the_matching_exceptions() {
        let oid = Oid([0, 0, 0, 0, 0, 0, 0, 7]);
        let state = Value::Dict(vec![
            (
                Value::Str("message".into()),
                Value::Str("database conflict error".into()),
            ),
            (Value::Str("oid".into()), Value::oid(oid)),
            (Value::Str("class_name".into()), Value::Str("a.B".into())),
            (
                Value::Str("serials".into()),
                Value::Tuple(vec![Value::tid(Tid([1; 8])), Value::tid(Tid([2; 8]))]),
            ),
        ]);
        match server_error("ZODB.POSException.ConflictError", state) {
            ServerError::Conflict(d) => {
                assert_eq!(d.oid, Some(oid));
                assert_eq!(d.class_name.as_deref(), Some("a.B"));
                assert_eq!(d.serials, Some((Tid([1; 8]), Tid([2; 8]))));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            server_error(
                "ZODB.POSException.POSKeyError",
                Value::Tuple(vec![Value::oid(oid)])
            ),
            ServerError::PosKey { oid }
        );
        assert_eq!(
            server_error(
                "builtins.ValueError",
                Value::Tuple(vec![Value::Str("x".into())])
            ),
            ServerError::ValueError("x".into())
        );
    }

    #[test]
    fn python2_info_has_native_names_and_no_undo_before_z310() {
        let info = Value::Dict(vec![
            (Value::Str("supportsUndo".into()), Value::Bool(true)),
            (
                Value::Str("interfaces".into()),
                Value::Tuple(vec![Value::Tuple(vec![
                    Value::Str("ZODB.interfaces".into()),
                    Value::Str("IStorage".into()),
                ])]),
            ),
        ]);
        let z309 = z4_info(info.clone(), Some(Z4Protocol::Z309), Encoding::Pickle1);
        assert_eq!(z309.get("supportsUndo"), Some(&Value::Bool(false)));
        assert_eq!(z309.get("extensionMethods"), Some(&Value::Dict(Vec::new())));
        let Some(Value::Tuple(ifaces)) = z309.get("interfaces") else {
            panic!("{z309:?}")
        };
        assert_eq!(
            ifaces[0],
            Value::Tuple(vec![
                Value::Bytes(b"ZODB.interfaces".to_vec()),
                Value::Bytes(b"IStorage".to_vec())
            ])
        );
        let z4 = z4_info(info, Some(Z4Protocol::Z4), Encoding::Pickle3);
        assert_eq!(z4.get("supportsUndo"), Some(&Value::Bool(true)));
        assert!(matches!(z4.get("interfaces"), Some(Value::Tuple(_))));
    }
}
