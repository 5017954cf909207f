//! Routes a decoded call to its handler, checks arguments the way Python's
//! signatures would, and maps every error to the exception a ZEO client
//! expects. This is the ONE place where `storage::Error` becomes a ZODB
//! exception name and state (spec §3.5.1).

use crate::ids::{Oid, Tid};
use crate::protocol::Value;
use crate::storage;

use super::connection::Connection;

/// Why a call did not produce a result.
#[derive(Debug)]
pub enum CallError {
    /// Raised to the client: `(msgid, 2, '.reply', (class, state))`.
    /// (An async call has no reply; raising in one closes the connection.)
    Raise { class: &'static str, state: Value },
    /// The connection must be closed (protocol violation, client gone).
    Close(String),
}

pub type CallResult = Result<Value, CallError>;

impl CallError {
    pub fn args(class: &'static str, args: Vec<Value>) -> CallError {
        CallError::Raise {
            class,
            state: Value::Tuple(args),
        }
    }
    pub fn message(class: &'static str, message: impl Into<String>) -> CallError {
        CallError::args(class, vec![Value::Str(message.into())])
    }
    pub fn type_error(message: impl Into<String>) -> CallError {
        CallError::message("builtins.TypeError", message)
    }
    pub fn value_error(message: impl Into<String>) -> CallError {
        CallError::message("builtins.ValueError", message)
    }
    pub fn key_error(key: Value) -> CallError {
        CallError::args("builtins.KeyError", vec![key])
    }
    pub fn read_only() -> CallError {
        CallError::args("ZODB.POSException.ReadOnlyError", vec![])
    }
    pub fn transaction(state: Vec<Value>) -> CallError {
        CallError::args("ZODB.POSException.StorageTransactionError", state)
    }
    pub fn close(reason: impl Into<String>) -> CallError {
        CallError::Close(reason.into())
    }

    /// A storage error, with the data record involved if known (its class
    /// name goes into `ConflictError.class_name`).
    pub fn from_storage(err: storage::Error, data: Option<&[u8]>) -> CallError {
        use storage::Error as E;
        let conflict =
            |message: &str, oid: Oid, committed: Tid, serial: Tid, data: Option<&[u8]>| {
                Value::Dict(vec![
                    (Value::Str("message".into()), Value::Str(message.into())),
                    (Value::Str("oid".into()), Value::oid(oid)),
                    (
                        Value::Str("class_name".into()),
                        data.and_then(pickle_class_name)
                            .map(Value::Str)
                            .unwrap_or(Value::None),
                    ),
                    (
                        Value::Str("serials".into()),
                        Value::Tuple(vec![Value::tid(committed), Value::tid(serial)]),
                    ),
                ])
            };
        match err {
            E::PosKey(oid) => {
                CallError::args("ZODB.POSException.POSKeyError", vec![Value::oid(oid)])
            }
            E::Conflict {
                oid,
                committed,
                serial,
            } => CallError::Raise {
                class: "ZODB.POSException.ConflictError",
                state: conflict("database conflict error", oid, committed, serial, data),
            },
            E::ReadConflict {
                oid,
                committed,
                serial,
            } => CallError::Raise {
                class: "ZODB.POSException.ReadConflictError",
                state: conflict("database read conflict error", oid, committed, serial, None),
            },
            E::ReadOnly => CallError::read_only(),
            E::TransactionInProgress => CallError::transaction(vec![Value::Str(err.to_string())]),
            E::TidNotIncreasing { .. } => CallError::transaction(vec![Value::Str(err.to_string())]),
            E::Undo(errs) => CallError::Raise {
                class: "ZODB.POSException.MultipleUndoErrors",
                state: Value::Dict(vec![(
                    Value::Str("_errs".into()),
                    Value::List(
                        errs.into_iter()
                            .map(|(oid, reason)| {
                                Value::Tuple(vec![
                                    oid.map(Value::oid).unwrap_or(Value::None),
                                    Value::Str(reason),
                                ])
                            })
                            .collect(),
                    ),
                )]),
            },
            E::Quota { .. } => CallError::message(
                "ZODB.FileStorage.FileStorage.FileStorageQuotaError",
                err.to_string(),
            ),
            E::BadArgument(message) => CallError::value_error(message),
            E::Corrupt { .. }
            | E::VersionedRecord { .. }
            | E::Locked { .. }
            | E::Stopped { .. }
            | E::Io { .. } => {
                tracing::error!(%err, "storage failure");
                CallError::message("ZODB.POSException.StorageSystemError", err.to_string())
            }
        }
    }
}

impl From<storage::Error> for CallError {
    fn from(err: storage::Error) -> CallError {
        CallError::from_storage(err, None)
    }
}

/// `module.Class` of a data record, as ZODB's `get_pickle_metadata` finds
/// it at the start of the class pickle: `c module\nname\n`, or the
/// `((module, name), args)` tuple form of newer records.
pub fn pickle_class_name(data: &[u8]) -> Option<String> {
    let mut at = if data.first() == Some(&0x80) { 2 } else { 0 };
    while data.get(at) == Some(&b'(') {
        at += 1;
    }
    if data.get(at) == Some(&b'c') {
        let mut lines = data.get(at + 1..)?.splitn(3, |b| *b == b'\n');
        let module = std::str::from_utf8(lines.next()?).ok()?;
        let name = std::str::from_utf8(lines.next()?).ok()?;
        return Some(format!("{module}.{name}"));
    }
    let mut parts = Vec::new();
    while parts.len() < 2 {
        let (len, skip) = match *data.get(at)? {
            b'U' | b'C' => (*data.get(at + 1)? as usize, 2),
            b'X' | b'T' | b'B' => {
                let b = data.get(at + 1..at + 5)?;
                (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 5)
            }
            // BINPUT: the memo index after a string.
            b'q' => {
                at += 2;
                continue;
            }
            _ => return None,
        };
        parts.push(
            std::str::from_utf8(data.get(at + skip..at + skip + len)?)
                .ok()?
                .to_string(),
        );
        at += skip + len;
    }
    Some(format!("{}.{}", parts[0], parts[1]))
}

/// Positional arguments of one call, checked like a Python signature.
pub struct Args<'a> {
    method: &'a str,
    items: &'a [Value],
}

impl<'a> Args<'a> {
    pub fn new(method: &'a str, args: &'a Value) -> Result<Args<'a>, CallError> {
        match args {
            Value::Tuple(items) | Value::List(items) => Ok(Args { method, items }),
            _ => Err(CallError::close(format!(
                "{method}: arguments are not a tuple"
            ))),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Python's message for a wrong number of positional arguments.
    pub fn arity(&self, min: usize, max: usize) -> Result<(), CallError> {
        let n = self.items.len();
        if n < min || n > max {
            let takes = if min == max {
                format!("{min}")
            } else {
                format!("from {min} to {max}")
            };
            return Err(CallError::type_error(format!(
                "{}() takes {takes} positional arguments but {n} were given",
                self.method
            )));
        }
        Ok(())
    }

    pub fn get(&self, i: usize) -> &'a Value {
        self.items.get(i).unwrap_or(&Value::None)
    }

    fn bad(&self, i: usize, expected: &str) -> CallError {
        CallError::type_error(format!(
            "{}: argument {} must be {expected}, got {:?}",
            self.method,
            i + 1,
            self.get(i)
        ))
    }

    /// Eight bytes, also from text the way Python would have passed it
    /// through (tests send `'\0' * 8` as a serial).
    fn eight(&self, i: usize) -> Option<[u8; 8]> {
        match self.get(i) {
            Value::Bytes(b) => <[u8; 8]>::try_from(b.as_slice()).ok(),
            Value::Str(s) => {
                let bytes: Option<Vec<u8>> =
                    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
                <[u8; 8]>::try_from(bytes?.as_slice()).ok()
            }
            _ => None,
        }
    }

    pub fn oid(&self, i: usize) -> Result<Oid, CallError> {
        self.eight(i)
            .map(Oid)
            .ok_or_else(|| self.bad(i, "an 8-byte oid"))
    }

    pub fn tid(&self, i: usize) -> Result<Tid, CallError> {
        self.eight(i)
            .map(Tid)
            .ok_or_else(|| self.bad(i, "an 8-byte tid"))
    }

    /// A tid where Python tolerates None (serials of new objects from
    /// ZODB 4, open iterator bounds).
    pub fn opt_tid(&self, i: usize) -> Result<Option<Tid>, CallError> {
        match self.get(i) {
            Value::None => Ok(None),
            _ => self.tid(i).map(Some),
        }
    }

    /// Bytes; text is taken as its UTF-8 bytes (Python would pass it on).
    pub fn bytes(&self, i: usize) -> Result<&'a [u8], CallError> {
        match self.get(i) {
            Value::Bytes(b) => Ok(b),
            Value::Str(s) => Ok(s.as_bytes()),
            _ => Err(self.bad(i, "bytes")),
        }
    }

    pub fn opt_bytes(&self, i: usize) -> Result<Option<&'a [u8]>, CallError> {
        match self.get(i) {
            Value::None => Ok(None),
            _ => self.bytes(i).map(Some),
        }
    }

    /// Text or bytes, as UTF-8 bytes (user names, descriptions).
    pub fn text_bytes(&self, i: usize) -> Result<Vec<u8>, CallError> {
        match self.get(i) {
            Value::Bytes(b) => Ok(b.clone()),
            Value::Str(s) => Ok(s.as_bytes().to_vec()),
            Value::None => Ok(Vec::new()),
            _ => Err(self.bad(i, "bytes or text")),
        }
    }

    /// Text or bytes, as text (storage names, labels, file names).
    pub fn text(&self, i: usize) -> Result<String, CallError> {
        match self.get(i) {
            Value::Str(s) => Ok(s.clone()),
            Value::Bytes(b) => String::from_utf8(b.clone()).map_err(|_| self.bad(i, "text")),
            _ => Err(self.bad(i, "text")),
        }
    }

    pub fn int(&self, i: usize) -> Result<i128, CallError> {
        match self.get(i) {
            Value::Int(n) => Ok(*n),
            Value::Bool(b) => Ok(*b as i128),
            _ => Err(self.bad(i, "an integer")),
        }
    }

    pub fn float(&self, i: usize) -> Result<f64, CallError> {
        match self.get(i) {
            Value::Float(f) => Ok(*f),
            Value::Int(n) => Ok(*n as f64),
            _ => Err(self.bad(i, "a number")),
        }
    }

    /// Python truthiness of the simple values ZEO sends as flags.
    pub fn truthy(&self, i: usize) -> bool {
        truthy(self.get(i))
    }

    /// The client's transaction id (`id(txn)`): compared by equality only.
    pub fn txn(&self, i: usize) -> Result<i128, CallError> {
        self.int(i)
    }
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::None => false,
        Value::Bool(b) => *b,
        Value::Int(n) => *n != 0,
        Value::Float(f) => *f != 0.0,
        Value::Bytes(b) => !b.is_empty(),
        Value::Str(s) => !s.is_empty(),
        Value::Tuple(t) | Value::List(t) => !t.is_empty(),
        Value::Dict(d) => !d.is_empty(),
        Value::Global { .. } | Value::Object { .. } => true,
    }
}

/// Every method a ZEO 5/6 client may call after `register` (spec §5.1).
const METHODS: &[&str] = &[
    "get_info",
    "lastTransaction",
    "getInvalidations",
    "loadBefore",
    "loadSerial",
    "getTid",
    "history",
    "new_oids",
    "new_oid",
    "tpc_begin",
    "storea",
    "checkCurrentSerialInTransaction",
    "deleteObject",
    "restorea",
    "undoa",
    "storeBlobStart",
    "storeBlobChunk",
    "storeBlobEnd",
    "storeBlobShared",
    "vote",
    "tpc_finish",
    "tpc_abort",
    "sendBlob",
    "undoLog",
    "undoInfo",
    "pack",
    "iterator_start",
    "iterator_next",
    "iterator_record_start",
    "iterator_record_next",
    "iterator_gc",
    "record_iternext",
    "server_status",
    "set_client_label",
    "ping",
];

pub fn is_method(name: &str) -> bool {
    METHODS.contains(&name)
}

impl Connection {
    /// Runs one call of a registered connection. `Ok(Some(v))` is a reply,
    /// `Ok(None)` means the handler replied itself (or will, later).
    pub(super) async fn dispatch(
        &mut self,
        method: &str,
        args: &Value,
        msgid: &Value,
    ) -> Result<Option<Value>, CallError> {
        let a = Args::new(method, args)?;
        let value = match method {
            // Transactions: recorded now, applied at vote.
            "tpc_begin" => self.tpc_begin(&a)?,
            "storea" => self.storea(&a)?,
            "checkCurrentSerialInTransaction" => self.check_current_serial(&a)?,
            "deleteObject" => self.delete_object(&a)?,
            "restorea" => self.restorea(&a)?,
            "undoa" => self.undoa(&a)?,
            "storeBlobStart" => self.store_blob_start(&a).await?,
            "storeBlobChunk" => self.store_blob_chunk(&a).await?,
            "storeBlobEnd" => self.store_blob_end(&a).await?,
            "storeBlobShared" => self.store_blob_shared(&a)?,
            "vote" => return self.vote(&a, msgid).await.map(|_| None),
            "tpc_finish" => return self.tpc_finish(&a, msgid).await.map(|_| None),
            "tpc_abort" => self.tpc_abort(&a).await?,
            // Replies that need more than one frame or run long.
            "sendBlob" => return self.send_blob(&a, msgid).await.map(|_| None),
            "pack" => return self.pack(&a, msgid).await.map(|_| None),
            "iterator_gc" => self.iterator_gc(&a)?,
            "set_client_label" => {
                let label = a.text(0).unwrap_or_default();
                tracing::info!(conn = self.id, peer = %self.address, label = %label, "client label");
                self.label = Some(label);
                Value::None
            }
            "new_oid" => return Err(CallError::message("builtins.AttributeError", "new_oid")),
            _ => return self.read_call(method, &a, msgid).await.map(|_| None),
        };
        Ok(Some(value))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_class_names_in_record_pickles() {
        assert_eq!(
            pickle_class_name(b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.").as_deref(),
            Some("persistent.mapping.PersistentMapping")
        );
        let tuple_form = b"\x80\x03X\x10\x00\x00\x00ZODB.tests.MinPOq\x00X\x05\x00\x00\x00MinPOq\x01\x86q\x02N\x86q\x03.";
        assert_eq!(
            pickle_class_name(tuple_form).as_deref(),
            Some("ZODB.tests.MinPO.MinPO")
        );
        assert_eq!(pickle_class_name(b"garbage"), None);
    }
}
