//! The exceptions a server reports to clients, in the two shapes clients
//! rebuild them from: ZEO 5's `(class_name, state)` pair (spec §3.5.1) and
//! ZEO 4's pickled `(Class, instance)` built with `ZODB.POSException._recon`
//! (§3.5.2). States mirror the Python instances' `__dict__` key for key, in
//! the order CPython writes them, because ZEO clients index into them.

use super::{Encoding, Value};
use crate::ids::{Oid, Tid};

const POS: &str = "ZODB.POSException";

/// What a conflict error carries (`ConflictError.__dict__`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConflictDetail {
    /// `None` is Python's default text for the class.
    pub message: Option<String>,
    pub oid: Option<Oid>,
    /// Dotted class of the object, e.g. `ZODB.tests.MinPO.MinPO`.
    pub class_name: Option<String>,
    /// `(committed_tid, read_serial)`.
    pub serials: Option<(Tid, Tid)>,
}

/// An exception raised on behalf of a client request.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerError {
    PosKey {
        oid: Oid,
    },
    Conflict(ConflictDetail),
    ReadConflict(ConflictDetail),
    ReadOnly,
    /// Its args, e.g. `(None, txn_id)` or `('Multiple simultaneous …',)`.
    StorageTransaction(Vec<Value>),
    Undo {
        reason: String,
        oid: Option<Oid>,
    },
    /// `(oid, reason)` per failed object; reasons are texts (Python puts
    /// `UndoError` instances there, which msgpack could not carry; the
    /// client only formats them).
    MultipleUndo(Vec<(Option<Oid>, String)>),
    ValueError(String),
    TypeError(String),
    KeyError(Value),
    /// Any other exception, by dotted class name and constructor args, e.g.
    /// `ZODB.POSException.StorageSystemError` or
    /// `ZODB.FileStorage.FileStorage.FileStorageQuotaError`. ZEO 5 clients
    /// raise it as `ServerException`; for ZEO 4 a class under `ZODB.` is
    /// taken to be a `POSError` (pickled via `_recon`), anything else a
    /// plain exception.
    Other {
        class_name: String,
        args: Vec<Value>,
    },
}

impl ServerError {
    /// What ZEO 6 sends when a result cannot be encoded.
    pub fn unpicklable_response() -> ServerError {
        ServerError::ValueError("Couldn't pickle response".to_owned())
    }

    fn module_and_name(&self) -> (&str, &str) {
        match self {
            ServerError::PosKey { .. } => (POS, "POSKeyError"),
            ServerError::Conflict(_) => (POS, "ConflictError"),
            ServerError::ReadConflict(_) => (POS, "ReadConflictError"),
            ServerError::ReadOnly => (POS, "ReadOnlyError"),
            ServerError::StorageTransaction(_) => (POS, "StorageTransactionError"),
            ServerError::Undo { .. } => (POS, "UndoError"),
            ServerError::MultipleUndo(_) => (POS, "MultipleUndoErrors"),
            ServerError::ValueError(_) => ("builtins", "ValueError"),
            ServerError::TypeError(_) => ("builtins", "TypeError"),
            ServerError::KeyError(_) => ("builtins", "KeyError"),
            ServerError::Other { class_name, .. } => class_name
                .rsplit_once('.')
                .unwrap_or(("builtins", class_name.as_str())),
        }
    }

    /// `module.ClassName` as ZEO 5 error replies name it.
    pub fn class_name(&self) -> String {
        let (module, name) = self.module_and_name();
        format!("{module}.{name}")
    }

    /// The ZEO 5 state: the instance `__dict__` if non-empty, else `args`.
    pub fn state(&self) -> Value {
        let attrs = self.attributes(Encoding::Pickle3);
        if attrs.is_empty() {
            Value::Tuple(self.args(Encoding::Pickle3))
        } else {
            Value::Dict(attrs)
        }
    }

    /// The class as a pickled global (ZEO 4 replies). Python 2 built-in
    /// exceptions live in `exceptions`.
    pub fn z4_class(&self, enc: Encoding) -> Value {
        let (module, name) = self.module_and_name();
        let module = match (module, enc) {
            ("builtins", Encoding::Pickle1) => "exceptions",
            (module, _) => module,
        };
        Value::Global {
            module: module.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The instance as Python pickles it: POSError subclasses reduce to
    /// `_recon(Class, __dict__ + {'args': args})`, built-ins to
    /// `Class(*args)`.
    pub fn z4_instance(&self, enc: Encoding) -> Value {
        let class = self.z4_class(enc);
        let args = Value::Tuple(self.args(enc));
        if !self.is_pos_error() {
            return Value::Object {
                class: Box::new(class),
                args: Box::new(args),
                state: None,
            };
        }
        let mut state = self.attributes(enc);
        let args_key = (enc.text("args"), args);
        if enc == Encoding::Pickle1
            && matches!(
                self,
                ServerError::Conflict(_) | ServerError::ReadConflict(_)
            )
        {
            // Python 2's dict order for these keys, as captured on the wire.
            reorder(&mut state, &["class_name", "serials", "message", "oid"]);
        }
        state.push(args_key);
        Value::Object {
            class: Box::new(Value::Global {
                module: POS.to_owned(),
                name: "_recon".to_owned(),
            }),
            args: Box::new(Value::Tuple(vec![class, Value::Dict(state)])),
            state: None,
        }
    }

    fn is_pos_error(&self) -> bool {
        let (module, _) = self.module_and_name();
        module == POS || module.starts_with("ZODB.")
    }

    /// `__dict__`, in insertion order.
    fn attributes(&self, enc: Encoding) -> Vec<(Value, Value)> {
        let key = |k: &str| enc.text(k);
        let opt_oid = |oid: &Option<Oid>| oid.map_or(Value::None, Value::oid);
        match self {
            ServerError::Conflict(c) | ServerError::ReadConflict(c) => {
                let default = match self {
                    ServerError::ReadConflict(_) => "database read conflict error",
                    _ => "database conflict error",
                };
                vec![
                    (
                        key("message"),
                        enc.text(c.message.as_deref().unwrap_or(default)),
                    ),
                    (key("oid"), opt_oid(&c.oid)),
                    (
                        key("class_name"),
                        // Python 2 servers had it as unicode.
                        c.class_name
                            .as_deref()
                            .map_or(Value::None, |s| Value::Str(s.to_owned())),
                    ),
                    (
                        key("serials"),
                        c.serials.map_or(Value::None, |(a, b)| {
                            Value::Tuple(vec![Value::tid(a), Value::tid(b)])
                        }),
                    ),
                ]
            }
            ServerError::Undo { reason, oid } => vec![
                (key("_reason"), enc.text(reason)),
                (key("_oid"), opt_oid(oid)),
            ],
            ServerError::MultipleUndo(errs) => {
                // `MultipleUndoErrors.__init__` calls `UndoError.__init__(
                // self, *errs[0])`, which swaps the pair into
                // (_reason=oid, _oid=reason).
                let (first_oid, first_reason) =
                    errs.first().map_or((Value::None, Value::None), |(o, r)| {
                        (opt_oid(o), enc.text(r))
                    });
                vec![
                    (key("_reason"), first_oid),
                    (key("_oid"), first_reason),
                    (key("_errs"), undo_errs(errs, enc)),
                ]
            }
            _ => Vec::new(),
        }
    }

    /// `args`, as the exception's constructor received them.
    fn args(&self, enc: Encoding) -> Vec<Value> {
        match self {
            ServerError::PosKey { oid } => vec![Value::oid(*oid)],
            ServerError::StorageTransaction(args) => args.clone(),
            ServerError::Undo { reason, oid } => {
                let mut args = vec![enc.text(reason)];
                args.extend(oid.map(Value::oid));
                args
            }
            ServerError::MultipleUndo(errs) => vec![undo_errs(errs, enc)],
            ServerError::ValueError(s) | ServerError::TypeError(s) => vec![enc.text(s)],
            ServerError::KeyError(v) => vec![v.clone()],
            ServerError::Other { args, .. } => args.clone(),
            ServerError::Conflict(_) | ServerError::ReadConflict(_) | ServerError::ReadOnly => {
                Vec::new()
            }
        }
    }
}

fn undo_errs(errs: &[(Option<Oid>, String)], enc: Encoding) -> Value {
    Value::List(
        errs.iter()
            .map(|(oid, reason)| {
                Value::Tuple(vec![oid.map_or(Value::None, Value::oid), enc.text(reason)])
            })
            .collect(),
    )
}

fn reorder(pairs: &mut [(Value, Value)], order: &[&str]) {
    let rank = |k: &Value| {
        order
            .iter()
            .position(|o| k.as_text() == Some(o))
            .unwrap_or(order.len())
    };
    pairs.sort_by_key(|(k, _)| rank(k));
}
