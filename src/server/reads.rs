//! Calls that read the storage (loads, history, undo log, info, status,
//! iterators) and `pack`; `getInvalidations` is `catch_up`'s. Each read computes and
//! queues its reply under the read side of the storage's visibility lock,
//! so a reply that shows a commit follows that commit's invalidation, and
//! one computed before a commit precedes it (else the client would cache
//! stale data as current after applying the invalidation). Point reads
//! (an index lookup and a pread, microseconds when cached) run inline, as
//! in Python; scans (undo log, iteration) and pack run
//! on tokio's blocking pool.

use std::sync::Arc;

use super::connection::Connection;
use super::dispatch::{Args, CallError, CallResult};
use super::exported::Exported;
use super::finish::info_dict;
use super::status::{self, Stats};
use super::wire;
use crate::ids::Tid;
use crate::protocol::{Message, Value};
use crate::storage::{FileStorage, TxnMeta};

/// Runs storage work off the reactor, so a cold read or a slow disk holds
/// up only its own connection. The hop costs tens of microseconds; a Python
/// client's round trip is ~0.5 ms (measured: one ZEO 6 client does ~1.8k
/// sync `loadBefore`/s against zeod, ~1.1k against runzeo), so it is not
/// worth a cleverer scheme.
pub async fn blocking<T, F>(f: F) -> Result<T, CallError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(%e, "storage call panicked");
        CallError::message(
            "ZODB.POSException.StorageSystemError",
            "internal error in the storage",
        )
    })
}

/// Interfaces a FileStorage provides, most specific first (ZEO's test
/// `checkInterfaceFromRemoteStorage` compares this tuple exactly).
fn interfaces(blobs: bool) -> Value {
    let mut names = Vec::new();
    if blobs {
        names.extend(["IBlobStorageRestoreable", "IBlobStorage"]);
    }
    names.extend([
        "IStorageRestoreable",
        "IStorageIteration",
        "IStorageUndoable",
        "IStorageCurrentRecordIteration",
        "IExternalGC",
        "IStorage",
    ]);
    let mut list: Vec<Value> = names
        .into_iter()
        .map(|n| {
            Value::Tuple(vec![
                Value::Str("ZODB.interfaces".into()),
                Value::Str(n.into()),
            ])
        })
        .collect();
    list.push(Value::Tuple(vec![
        Value::Str("zope.interface".into()),
        Value::Str("Interface".into()),
    ]));
    Value::Tuple(list)
}

fn key(k: &str) -> Value {
    Value::Str(k.to_string())
}

/// Transaction metadata as the dict entries of `history`/`undoLog`, with
/// the extension's keys merged in, as FileStorage does.
fn meta_entries(meta: &TxnMeta, mut entries: Vec<(Value, Value)>) -> Value {
    if let Value::Dict(ext) = extension(meta) {
        for (k, v) in ext {
            if !entries.iter().any(|(existing, _)| *existing == k) {
                entries.push((k, v));
            }
        }
    }
    Value::Dict(entries)
}

/// The transaction's extension as a dict (`{}` if empty or unreadable).
pub fn extension(meta: &TxnMeta) -> Value {
    if meta.extension.is_empty() {
        return Value::Dict(Vec::new());
    }
    match wire::unpickle_extension(&meta.extension) {
        Ok(ext @ Value::Dict(_)) => ext,
        _ => Value::Dict(Vec::new()),
    }
}

impl Connection {
    /// A read-only call: computes and queues the reply under the read side
    /// of the visibility lock.
    pub(super) async fn read_call(
        &mut self,
        method: &str,
        a: &Args<'_>,
        msgid: &Value,
    ) -> Result<(), CallError> {
        let exported = self
            .exported
            .clone()
            .ok_or_else(|| CallError::close("not registered"))?;
        if method == "getInvalidations" {
            // Its answer may need a long scan, which must not hold the
            // visibility lock: see catch_up.
            a.arity(1, 1)?;
            return self.get_invalidations(a.tid(0)?, msgid, &exported).await;
        }
        let slot = self.reserve().await.map_err(CallError::Close)?;
        let visible = exported.visibility.read().await;
        let result = self.read(method, a, &exported).await;
        if let Err(CallError::Close(reason)) = result {
            return Err(CallError::Close(reason));
        }
        slot.send(self.encode_reply(msgid, result).map_err(CallError::Close)?);
        drop(visible);
        Ok(())
    }

    pub(super) async fn read(
        &mut self,
        method: &str,
        a: &Args<'_>,
        exported: &Arc<Exported>,
    ) -> CallResult {
        let storage = exported.storage.clone();
        match method {
            "get_info" => {
                a.arity(0, 0)?;
                let name = std::path::absolute(storage.path())
                    .unwrap_or_else(|_| storage.path().to_path_buf());
                let mut info = match info_dict(&storage) {
                    Value::Dict(entries) => entries,
                    _ => Vec::new(),
                };
                info.extend([
                    (key("name"), Value::Str(name.display().to_string())),
                    (key("supportsUndo"), Value::Bool(true)),
                    (key("supports_record_iternext"), Value::Bool(true)),
                    (key("interfaces"), interfaces(storage.blob_dir().is_some())),
                ]);
                info.extend(status::pack_info(exported));
                Ok(Value::Dict(info))
            }
            "lastTransaction" => {
                a.arity(0, 0)?;
                Ok(Value::tid(storage.last_transaction()))
            }
            "ping" => {
                a.arity(0, 0)?;
                Ok(Value::None)
            }
            "server_status" => {
                a.arity(0, 0)?;
                let timeout = self.shared.config.transaction_timeout.is_some();
                Ok(status::status(exported, &self.shared.start, timeout).to_value())
            }
            "loadBefore" => {
                a.arity(2, 2)?;
                let (oid, before) = (a.oid(0)?, a.tid(1)?);
                Stats::bump(&exported.stats.loads);
                match storage.load_before(oid, before) {
                    Ok(Some(found)) => Ok(Value::Tuple(vec![
                        Value::Bytes(found.data),
                        Value::tid(found.start),
                        found.end.map(Value::tid).unwrap_or(Value::None),
                    ])),
                    Ok(None) => Ok(Value::None),
                    Err(err) => Err(err.into()),
                }
            }
            "loadSerial" => {
                a.arity(2, 2)?;
                let (oid, serial) = (a.oid(0)?, a.tid(1)?);
                Stats::bump(&exported.stats.loads);
                Ok(Value::Bytes(storage.load_serial(oid, serial)?))
            }
            "getTid" => {
                a.arity(1, 1)?;
                let oid = a.oid(0)?;
                Ok(Value::tid(storage.get_tid(oid)?))
            }
            "history" => {
                a.arity(1, 2)?;
                // FileStorage looks the oid up first: `history(None)` is a
                // POSKeyError, `history(oid, None)` a TypeError.
                if *a.get(0) == Value::None {
                    return Err(CallError::args(
                        "ZODB.POSException.POSKeyError",
                        vec![Value::None],
                    ));
                }
                let oid = a.oid(0)?;
                let size = match (a.len(), a.get(1)) {
                    (1, _) => 1,
                    (_, Value::Int(n)) => (*n).clamp(0, i128::from(u32::MAX)) as usize,
                    _ => return Err(CallError::type_error("history: size must be an integer")),
                };
                let entries = blocking(move || storage.history(oid, size)).await??;
                Ok(Value::List(
                    entries
                        .into_iter()
                        .map(|h| {
                            meta_entries(
                                &h.meta,
                                vec![
                                    (key("time"), Value::Float(h.tid.to_unix())),
                                    (key("user_name"), Value::Bytes(h.meta.user.clone())),
                                    (key("description"), Value::Bytes(h.meta.description.clone())),
                                    (key("tid"), Value::tid(h.tid)),
                                    (key("size"), Value::Int(h.size as i128)),
                                ],
                            )
                        })
                        .collect(),
                ))
            }
            "new_oids" => {
                a.arity(0, 1)?;
                if self.read_only {
                    return Err(CallError::read_only());
                }
                let n = if a.len() == 1 { a.int(0)? } else { 100 };
                let n = n.clamp(1, 100) as usize;
                let oids = storage.new_oids(n)?;
                Ok(Value::List(oids.into_iter().map(Value::oid).collect()))
            }
            "undoLog" => {
                a.arity(0, 2)?;
                let first = if a.len() > 0 { a.int(0)? as i64 } else { 0 };
                let last = if a.len() > 1 { a.int(1)? as i64 } else { -20 };
                self.undo_entries(storage, first, last, None).await
            }
            "undoInfo" => {
                a.arity(0, 3)?;
                let first = if a.len() > 0 { a.int(0)? as i64 } else { 0 };
                let last = if a.len() > 1 { a.int(1)? as i64 } else { -20 };
                let spec = match a.get(2) {
                    Value::Dict(items) if !items.is_empty() => Some(items.clone()),
                    _ => None,
                };
                self.undo_entries(storage, first, last, spec).await
            }
            "record_iternext" => {
                a.arity(0, 1)?;
                let next = match a.get(0) {
                    Value::None => None,
                    _ => Some(a.oid(0)?),
                };
                match blocking(move || storage.record_iternext(next)).await?? {
                    Some((oid, tid, data, next)) => Ok(Value::Tuple(vec![
                        Value::oid(oid),
                        Value::tid(tid),
                        Value::Bytes(data),
                        next.map(Value::oid).unwrap_or(Value::None),
                    ])),
                    None => Ok(Value::None),
                }
            }
            "iterator_start" => self.iterator_start(a, storage).await,
            "iterator_next" => self.iterator_next(a).await,
            "iterator_record_start" => self.iterator_record_start(a),
            "iterator_record_next" => self.iterator_record_next(a),
            other => Err(CallError::close(format!("invalid method {other:?}"))),
        }
    }

    /// `undoLog`/`undoInfo`: `spec` keeps entries whose keys equal its values
    /// (a `ZopeUndo.Prefix` value matches by prefix).
    async fn undo_entries(
        &mut self,
        storage: Arc<FileStorage>,
        first: i64,
        last: i64,
        spec: Option<Vec<(Value, Value)>>,
    ) -> CallResult {
        let (first, last) = if last < 0 {
            (first, first - last)
        } else {
            (first, last)
        };
        let fetch = if spec.is_some() {
            (0, i64::MAX)
        } else {
            (first, last)
        };
        let entries = blocking(move || storage.undo_log(fetch.0, fetch.1)).await??;
        let dicts = entries.into_iter().map(|e| {
            meta_entries(
                &e.meta,
                vec![
                    (key("id"), Value::Bytes(e.id.clone())),
                    (key("time"), Value::Float(e.tid.to_unix())),
                    (key("user_name"), Value::Bytes(e.meta.user.clone())),
                    (key("description"), Value::Bytes(e.meta.description.clone())),
                    (key("size"), Value::Int(e.size as i128)),
                ],
            )
        });
        let Some(spec) = spec else {
            return Ok(Value::List(dicts.collect()));
        };
        let matching = dicts.filter(|d| matches_spec(d, &spec));
        let skip = usize::try_from(first).unwrap_or(0);
        let take = usize::try_from(last - first).unwrap_or(0);
        Ok(Value::List(matching.skip(skip).take(take).collect()))
    }

    /// `pack(t, wait)`: runs on the blocking pool; when done, `info` goes to
    /// every connection of the storage, then the reply (at once if `wait`
    /// is false).
    pub(super) async fn pack(&mut self, a: &Args<'_>, msgid: &Value) -> Result<(), CallError> {
        a.arity(1, 2)?;
        let when = a.float(0)?;
        let wait = a.len() < 2 || a.truthy(1);
        let exported = self
            .exported
            .clone()
            .ok_or_else(|| CallError::close("not registered"))?;
        let slot = self.reserve().await.map_err(CallError::Close)?;
        let encoded_ok = self
            .encode_reply(msgid, Ok(Value::None))
            .map_err(CallError::Close)?;
        let z4 = self.z4.is_some();
        let pending = if wait {
            Some((slot, self.encoding, msgid.clone()))
        } else {
            slot.send(encoded_ok);
            None
        };
        let gc = exported.pack_gc;
        let conn = self.id;
        self.shared.tasks.spawn(async move {
            let storage = exported.storage.clone();
            tracing::info!(storage = %exported.name, conn, pack_time = when, "pack started");
            let result = blocking(move || {
                let _shown = crate::progress::Reporter::log(storage.pack_progress());
                storage.pack(Tid::from_unix(when), gc)
            })
            .await;
            let result = match result {
                Ok(Ok(())) => {
                    tracing::info!(storage = %exported.name, "pack finished");
                    exported.broadcast_size_info();
                    Ok(Value::None)
                }
                Ok(Err(err)) => {
                    tracing::warn!(storage = %exported.name, %err, "pack failed");
                    Err(CallError::from(err))
                }
                Err(err) => Err(err),
            };
            if let Some((slot, encoding, msgid)) = pending {
                let (flags, args) = match result {
                    Ok(v) => (0, v),
                    Err(CallError::Raise { class, state }) if z4 => {
                        (0, super::legacy::error_value(encoding, class, state))
                    }
                    Err(CallError::Raise { class, state }) => {
                        (2, Value::Tuple(vec![Value::Str(class.into()), state]))
                    }
                    Err(CallError::Close(_)) => (0, Value::None),
                };
                let reply = Message {
                    msgid,
                    flags: Value::Int(flags),
                    method: ".reply".into(),
                    args,
                };
                if let Ok(bytes) = wire::encode(encoding, &reply) {
                    slot.send(bytes);
                }
            }
        });
        Ok(())
    }
}

fn matches_spec(entry: &Value, spec: &[(Value, Value)]) -> bool {
    let Value::Dict(fields) = entry else {
        return false;
    };
    spec.iter().all(|(k, wanted)| {
        let Some((_, have)) = fields.iter().find(|(fk, _)| fk == k) else {
            return false;
        };
        match wanted {
            // ZopeUndo.Prefix(text): matches values starting with text.
            Value::Object { args, .. } => {
                let prefix = match args.as_ref() {
                    Value::Tuple(items) => items.first(),
                    other => Some(other),
                };
                let text = |v: &Value| match v {
                    Value::Str(s) => Some(s.as_bytes().to_vec()),
                    Value::Bytes(b) => Some(b.clone()),
                    _ => None,
                };
                match (prefix.and_then(text), text(have)) {
                    (Some(p), Some(h)) => h.starts_with(&p),
                    _ => false,
                }
            }
            Value::Str(s) => match have {
                Value::Bytes(b) => b == s.as_bytes(),
                other => other == wanted,
            },
            _ => have == wanted,
        }
    })
}
