//! ZEO 4 clients on the same server, at the same time, as ZEO 5/6 ones:
//! the Z4 family of protocols (`Z4` for ZEO 4.x, `Z3101`/`Z310` for ZODB
//! 3.10's ZEO, `Z309` for ZODB 3.9's; spec §4.2, §5.5, §8.8), chosen by the
//! client's handshake answer to our `Z5` greeting.
//!
//! The data methods are the ZEO 5 ones ([`super::dispatch`]); what differs
//! lives here:
//!
//! - the call set: `getAuthProtocol` before `register`, which returns
//!   `None`; `loadEx`/`load`, `verify`/`zeoVerify`/`endZeoVerify`,
//!   `getExtensionMethods`; `get_info` with `extensionMethods`;
//! - the commit: `vote` answers `None` after a `serialnos` callback that
//!   gives every stored oid its new tid, `b'rs'` (resolved or undone), or
//!   the exception of the first failed store. ZEO 4 clients cannot resolve
//!   conflicts themselves, so what zeod cannot merge natively is a
//!   `ConflictError` here;
//! - errors: `(Class, instance)` pickles (`ZODB.POSException._recon`)
//!   instead of `(name, state)` pairs, and a failed one-way call is logged
//!   instead of closing the connection;
//! - Python 2 conventions for protocol-1 peers: dict keys and the
//!   `get_info` names are native (byte) strings.
//!
//! The reply values (`get_info`, native strings, error pickles) are built
//! in [`values`]; the calls and the vote are here.

mod values;

use std::collections::HashSet;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use super::commit::LockState;
use super::connection::{short, Connection};
use super::dispatch::{self, pickle_class_name, Args, CallError};
use super::status::Stats;
use super::txnlog::{TxnOp, VoteOutcome};
use super::wire;
use crate::ids::{Oid, Tid};
use crate::protocol::exception::{ConflictDetail, ServerError};
use crate::protocol::message::{self, SerialNo};
use crate::protocol::{Message, Value};
use crate::storage;
use values::z4_info;
pub use values::{error_value, native_keys};

/// The protocol a ZEO 4-era client chose. Ordered oldest first, as the
/// protocol ids compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Z4Protocol {
    /// ZODB 3.9.
    Z309,
    /// ZODB 3.10 pre-releases: adds `undoa` and undo through `vote`.
    Z310,
    /// ZODB 3.10.x: adds `checkCurrentSerialInTransaction`.
    Z3101,
    /// ZEO 4.x.
    Z4,
}

impl Z4Protocol {
    pub fn parse(handshake: &[u8]) -> Option<Z4Protocol> {
        match handshake {
            b"Z309" => Some(Z4Protocol::Z309),
            b"Z310" => Some(Z4Protocol::Z310),
            b"Z3101" => Some(Z4Protocol::Z3101),
            b"Z4" => Some(Z4Protocol::Z4),
            _ => None,
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Z4Protocol::Z309 => "Z309",
            Z4Protocol::Z310 => "Z310",
            Z4Protocol::Z3101 => "Z3101",
            Z4Protocol::Z4 => "Z4",
        }
    }
}

/// Handshakes of clients older than ZODB 3.9 (ZEO 2 and ZODB 3.3-3.8),
/// which speak the versioned API (spec §5.6). zeod refuses them; see
/// docs/LEGACY.md for what serving them would take.
pub fn is_pre_z309(handshake: &[u8]) -> bool {
    matches!(handshake, b"Z200" | b"Z201" | b"Z303" | b"Z308")
}

/// Methods only the Z4 family calls (besides the shared set of
/// [`dispatch::is_method`]).
const Z4_METHODS: &[&str] = &[
    "getAuthProtocol",
    "register",
    "getExtensionMethods",
    "loadEx",
    "load",
    "verify",
    "zeoVerify",
    "endZeoVerify",
];

impl Connection {
    /// Runs one decoded call of a Z4-family connection. `Err` closes the
    /// connection.
    pub(super) async fn handle_z4(&mut self, message: Message) -> Result<(), String> {
        let one_way = dispatch::truthy(&message.flags);
        let method = message.method.as_str();
        if self.exported.is_none() && !matches!(method, "register" | "getAuthProtocol") {
            return Err(format!("invalid method {method:?} before register"));
        }
        if !Z4_METHODS.contains(&method) && !dispatch::is_method(method) {
            return Err(format!("invalid method {method:?}"));
        }
        let started = std::time::Instant::now();
        let result = self.call_z4(method, &message.args, &message.msgid).await;
        self.shared.metrics.rpc(method, started.elapsed());
        match (result, one_way) {
            (Ok(None), _) | (Ok(Some(_)), true) => Ok(()),
            (Ok(Some(value)), false) => self.reply(&message.msgid, Ok(value)).await,
            (Err(CallError::Close(reason)), _) => Err(reason),
            // ZEO 4 servers log a failed one-way call and carry on.
            (Err(CallError::Raise { class, state }), true) => {
                tracing::warn!(
                    conn = self.id,
                    peer = %self.address,
                    method,
                    class,
                    state = %short(&state),
                    "one-way call failed"
                );
                Ok(())
            }
            (Err(err), false) => self.reply(&message.msgid, Err(err)).await,
        }
    }

    async fn call_z4(
        &mut self,
        method: &str,
        args: &Value,
        msgid: &Value,
    ) -> Result<Option<Value>, CallError> {
        let a = Args::new(method, args)?;
        let value = match method {
            // No authentication: ZEO 4's digest scheme is not offered.
            "getAuthProtocol" => Value::None,
            "register" => {
                if self.exported.is_some() {
                    return Err(CallError::value_error("duplicate register() call"));
                }
                self.register(args).await?;
                Value::None
            }
            "getExtensionMethods" => Value::Dict(Vec::new()),
            "get_info" => {
                let info = self.read_value("get_info", &a).await?;
                z4_info(info, self.z4, self.encoding)
            }
            "loadEx" | "load" => return self.load_current(&a, msgid).await.map(|_| None),
            "verify" | "zeoVerify" => {
                a.arity(2, 2)?;
                self.verify(a.oid(0)?, a.tid(1)?).await?;
                Value::None
            }
            "endZeoVerify" => {
                a.arity(0, 0)?;
                let bytes = self.encode_z4_call(message::end_verify())?;
                self.reserve().await.map_err(CallError::Close)?.send(bytes);
                Value::None
            }
            _ => return self.dispatch(method, args, msgid).await,
        };
        Ok(Some(value))
    }

    /// A read's value without replying, for calls whose Z4 answer is the
    /// Z5 one adjusted.
    async fn read_value(&mut self, method: &str, a: &Args<'_>) -> Result<Value, CallError> {
        let exported = self
            .exported
            .clone()
            .ok_or_else(|| CallError::close("not registered"))?;
        let _visible = exported.visibility.read().await;
        self.read(method, a, &exported).await
    }

    /// `loadEx(oid)` / `load(oid, version)`: `(data, serial)` of the
    /// current revision, queued under the visibility lock like every read.
    async fn load_current(&mut self, a: &Args<'_>, msgid: &Value) -> Result<(), CallError> {
        a.arity(1, 2)?;
        let oid = a.oid(0)?;
        if a.len() == 2 && dispatch::truthy(a.get(1)) {
            return Err(CallError::message(
                "ZODB.POSException.Unsupported",
                "Versions aren't supported.",
            ));
        }
        let exported = self
            .exported
            .clone()
            .ok_or_else(|| CallError::close("not registered"))?;
        let slot = self.reserve().await.map_err(CallError::Close)?;
        let visible = exported.visibility.read().await;
        Stats::bump(&exported.stats.loads);
        let result = match exported.storage.load_before(oid, Tid::MAX) {
            Ok(Some(found)) => Ok(Value::Tuple(vec![
                Value::Bytes(found.data),
                Value::tid(found.start),
            ])),
            // An object created after MAX: cannot happen; as missing.
            Ok(None) => Err(CallError::from(storage::Error::PosKey(oid))),
            Err(err) => Err(err.into()),
        };
        slot.send(self.encode_reply(msgid, result).map_err(CallError::Close)?);
        drop(visible);
        Ok(())
    }

    /// `verify(oid, serial)` (one-way): tells the client to drop its cached
    /// copy if it is not the current revision.
    async fn verify(&mut self, oid: Oid, serial: Tid) -> Result<(), CallError> {
        let exported = self
            .exported
            .clone()
            .ok_or_else(|| CallError::close("not registered"))?;
        let current = match exported.storage.get_tid(oid) {
            Ok(tid) => Some(tid),
            Err(storage::Error::PosKey(_)) => None,
            Err(err) => return Err(err.into()),
        };
        if current != Some(serial) {
            let bytes = self.encode_z4_call(message::invalidate_verify(oid))?;
            self.reserve().await.map_err(CallError::Close)?.send(bytes);
        }
        Ok(())
    }

    fn encode_z4_call(&self, call: Message) -> Result<Vec<u8>, CallError> {
        wire::encode(self.encoding, &call).map_err(|e| CallError::close(e.to_string()))
    }

    /// The Z4 end of a vote that ran with the commit lock: `serialnos`,
    /// then `None` (or an error reply for failures of the vote itself).
    pub(super) async fn z4_vote_outcome(
        &mut self,
        outcome: VoteOutcome,
        guard: OwnedMutexGuard<()>,
        since: Instant,
        msgid: Value,
    ) -> Result<(), String> {
        let exported = self
            .exported
            .clone()
            .ok_or_else(|| "not registered".to_string())?;
        let failure = match outcome {
            VoteOutcome::Voted {
                txn,
                changed,
                resolved,
            } => {
                for _ in 0..resolved {
                    Stats::bump(&exported.stats.conflicts_resolved);
                }
                let entries = serial_entries(self.stored_oids(), txn.tid, &changed);
                self.lock = LockState::Held { guard, since, txn };
                self.send_serialnos(&entries).await?;
                return self.reply(&msgid, Ok(Value::None)).await;
            }
            // zeod merges BTrees natively at store time; what is left is a
            // conflict a ZEO 4 client cannot resolve either.
            VoteOutcome::Conflicts(conflicts) => {
                let first = conflicts.into_iter().next().unwrap_or(Value::None);
                Err(conflict_from_dict(&first))
            }
            VoteOutcome::Failed { error, data } => match serial_failure(error, data.as_deref()) {
                Ok(failed) => Err(failed),
                Err(err) => Ok(err),
            },
        };
        drop(guard);
        exported.set_lock_time(None);
        self.forget_transaction();
        match failure {
            Err((oid, error)) => {
                Stats::bump(&exported.stats.conflicts);
                tracing::debug!(conn = self.id, ?error, "vote failed");
                self.send_serialnos(&[(oid, SerialNo::Failed(error))])
                    .await?;
                self.reply(&msgid, Ok(Value::None)).await
            }
            Ok(err) => self.reply(&msgid, Err(err)).await,
        }
    }

    /// Oids of the transaction's stores, in order (the ones `serialnos`
    /// must answer for).
    fn stored_oids(&self) -> Vec<Oid> {
        self.txn
            .iter()
            .flat_map(|t| t.ops.iter())
            .filter_map(|op| match op {
                TxnOp::Store { oid, .. } | TxnOp::StoreBlob { oid, .. } => Some(*oid),
                _ => None,
            })
            .collect()
    }

    async fn send_serialnos(&mut self, entries: &[(Oid, SerialNo)]) -> Result<(), String> {
        let bytes = wire::encode(self.encoding, &message::serialnos(self.encoding, entries))
            .map_err(|e| e.to_string())?;
        self.reserve().await?.send(bytes);
        Ok(())
    }
}

/// One `serialnos` entry per store (the tid, or `b'rs'` where the server
/// changed the data: resolved conflicts), then `b'rs'` for the other
/// changed oids (undone ones).
fn serial_entries(stored: Vec<Oid>, tid: Tid, changed: &[Oid]) -> Vec<(Oid, SerialNo)> {
    let changed_set: HashSet<Oid> = changed.iter().copied().collect();
    let stored_set: HashSet<Oid> = stored.iter().copied().collect();
    let mut entries: Vec<(Oid, SerialNo)> = stored
        .into_iter()
        .map(|oid| {
            let serial = if changed_set.contains(&oid) {
                SerialNo::Resolved
            } else {
                SerialNo::Stored(tid)
            };
            (oid, serial)
        })
        .collect();
    let mut seen = HashSet::new();
    for oid in changed {
        if !stored_set.contains(oid) && seen.insert(*oid) {
            entries.push((*oid, SerialNo::Resolved));
        }
    }
    entries
}

/// A vote failure that `serialnos` reports (the failures of logged
/// operations: conflicts, missing objects, undo errors), or else the error
/// reply to the vote (failures of the storage's own begin and vote).
fn serial_failure(
    error: storage::Error,
    data: Option<&[u8]>,
) -> Result<(Oid, ServerError), CallError> {
    use storage::Error as E;
    match error {
        E::Conflict {
            oid,
            committed,
            serial,
        } => Ok((
            oid,
            ServerError::Conflict(ConflictDetail {
                message: None,
                oid: Some(oid),
                class_name: data.and_then(pickle_class_name),
                serials: Some((committed, serial)),
            }),
        )),
        E::ReadConflict {
            oid,
            committed,
            serial,
        } => Ok((
            oid,
            ServerError::ReadConflict(ConflictDetail {
                message: None,
                oid: Some(oid),
                class_name: None,
                serials: Some((committed, serial)),
            }),
        )),
        E::PosKey(oid) => Ok((oid, ServerError::PosKey { oid })),
        // ZEO 4 reports a failed undo under z64.
        E::Undo(errs) => Ok((Oid([0; 8]), ServerError::MultipleUndo(errs))),
        other => Err(CallError::from_storage(other, data)),
    }
}

/// A handed-back conflict (`{'oid', 'serials', 'data'}`, the Z5 form) as
/// the `ConflictError` a ZEO 4 client raises.
fn conflict_from_dict(conflict: &Value) -> (Oid, ServerError) {
    let oid = conflict
        .get("oid")
        .and_then(Value::as_oid)
        .unwrap_or(Oid([0; 8]));
    let serials = match conflict.get("serials") {
        Some(Value::Tuple(pair)) => match (
            pair.first().and_then(Value::as_tid),
            pair.get(1).and_then(Value::as_tid),
        ) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        },
        _ => None,
    };
    let class_name = conflict
        .get("data")
        .and_then(Value::as_bytes)
        .and_then(pickle_class_name);
    (
        oid,
        ServerError::Conflict(ConflictDetail {
            message: None,
            oid: Some(oid),
            class_name,
            serials,
        }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn protocol_ids_order_like_their_bytes() {
        let ids = [&b"Z309"[..], b"Z310", b"Z3101", b"Z4"];
        let parsed: Vec<_> = ids.iter().map(|i| Z4Protocol::parse(i).unwrap()).collect();
        let mut sorted = parsed.clone();
        sorted.sort();
        assert_eq!(parsed, sorted);
        for (id, p) in ids.iter().zip(parsed) {
            assert_eq!(p.id().as_bytes(), *id);
        }
        assert_eq!(Z4Protocol::parse(b"Z5"), None);
        assert!(is_pre_z309(b"Z200") && is_pre_z309(b"Z201") && is_pre_z309(b"Z308"));
        assert!(!is_pre_z309(b"Z309"));
    }

    #[test]
    fn serialnos_answer_every_store_and_mark_changed_oids() {
        let (a, b, c) = (Oid([0; 8]), Oid([1; 8]), Oid([2; 8]));
        let tid = Tid([9; 8]);
        let entries = serial_entries(vec![a, b], tid, &[b, c, c]);
        assert_eq!(
            entries,
            vec![
                (a, SerialNo::Stored(tid)),
                (b, SerialNo::Resolved),
                (c, SerialNo::Resolved),
            ]
        );
    }
}
