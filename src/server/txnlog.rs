//! A connection's transaction log and its replay at vote time. Until
//! `vote`, a transaction is only this log; replaying it into a storage
//! transaction under the commit lock is where conflicts are found.

use std::path::PathBuf;

use crate::ids::{Oid, Tid};
use crate::protocol::Value;
use crate::storage::{self, BeginOptions, FileStorage};

/// One logged operation of a transaction, replayed at vote.
pub enum TxnOp {
    Store {
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
    },
    CheckCurrent {
        oid: Oid,
        serial: Tid,
    },
    Delete {
        oid: Oid,
        serial: Tid,
    },
    Restore {
        oid: Oid,
        serial: Tid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
    },
    Undo {
        id: Vec<u8>,
    },
    StoreBlob {
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
        file: PathBuf,
    },
}

/// The connection's open transaction.
pub struct PendingTxn {
    /// The client's `id(txn)`.
    pub id: i128,
    pub begin: BeginOptions,
    pub ops: Vec<TxnOp>,
}

impl TxnOp {
    /// Bytes of record data the operation carries.
    pub fn size(&self) -> usize {
        match self {
            TxnOp::Store { data, .. } | TxnOp::StoreBlob { data, .. } => data.len(),
            TxnOp::Restore { data, .. } => data.as_ref().map_or(0, Vec::len),
            TxnOp::CheckCurrent { .. } | TxnOp::Delete { .. } | TxnOp::Undo { .. } => 0,
        }
    }
}

impl PendingTxn {
    pub fn blob_files(&self) -> impl Iterator<Item = &PathBuf> {
        self.ops.iter().filter_map(|op| match op {
            TxnOp::StoreBlob { file, .. } => Some(file),
            _ => None,
        })
    }
}

/// What replaying a transaction log at vote time came to.
pub enum VoteOutcome {
    Voted {
        txn: Box<storage::Transaction>,
        /// Undone and server-resolved oids, for the vote result.
        changed: Vec<Oid>,
        /// How many conflicts the storage resolved.
        resolved: usize,
    },
    /// Write conflicts handed back to the client; the storage transaction
    /// was aborted.
    Conflicts(Vec<Value>),
    /// The storage transaction was aborted; `data` is the record that
    /// failed, if any (for the conflict's class name).
    Failed {
        error: storage::Error,
        data: Option<Vec<u8>>,
    },
}

impl VoteOutcome {
    /// A write or read conflict goes back to the client.
    pub fn shows_conflict(&self) -> bool {
        match self {
            VoteOutcome::Conflicts(_) => true,
            VoteOutcome::Failed { error, .. } => matches!(
                error,
                storage::Error::Conflict { .. } | storage::Error::ReadConflict { .. }
            ),
            VoteOutcome::Voted { .. } => false,
        }
    }
}

/// Begins the storage transaction and applies the log (blocking).
pub fn replay(storage: &FileStorage, begin: BeginOptions, ops: &[TxnOp]) -> VoteOutcome {
    let mut txn = match storage.tpc_begin(begin) {
        Ok(txn) => txn,
        Err(error) => return VoteOutcome::Failed { error, data: None },
    };
    let mut changed = Vec::new();
    // Conflicts to hand back, by oid; a later store of the same oid in this
    // log (the client's resolution) replaces the conflicting one.
    let mut conflicts: Vec<(Oid, Value)> = Vec::new();
    for op in ops {
        let result = match op {
            TxnOp::Store { oid, serial, data } => {
                match storage.store(&mut txn, *oid, *serial, data) {
                    Ok(()) => {
                        conflicts.retain(|(o, _)| o != oid);
                        Ok(())
                    }
                    Err(storage::Error::Conflict {
                        oid,
                        committed,
                        serial,
                    }) => {
                        conflicts.retain(|(o, _)| *o != oid);
                        conflicts.push((oid, conflict_dict(oid, committed, serial, data)));
                        Ok(())
                    }
                    Err(error) => Err((error, Some(data))),
                }
            }
            TxnOp::StoreBlob {
                oid,
                serial,
                data,
                file,
            } => storage
                .store_blob(&mut txn, *oid, *serial, data, file)
                .map_err(|e| (e, Some(data))),
            TxnOp::CheckCurrent { oid, serial } => storage
                .check_current_serial(&mut txn, *oid, *serial)
                .map_err(|e| (e, None)),
            TxnOp::Delete { oid, serial } => storage
                .delete_object(&mut txn, *oid, *serial)
                .map_err(|e| (e, None)),
            TxnOp::Restore {
                oid,
                serial,
                data,
                prev_txn,
            } => storage
                .restore(&mut txn, *oid, *serial, data.as_deref(), *prev_txn)
                .map_err(|e| (e, None)),
            TxnOp::Undo { id } => storage
                .undo(&mut txn, id)
                .map(|oids| changed.extend(oids))
                .map_err(|e| (e, None)),
        };
        if let Err((error, data)) = result {
            storage.tpc_abort(txn);
            return VoteOutcome::Failed {
                error,
                data: data.cloned(),
            };
        }
    }
    if !conflicts.is_empty() {
        storage.tpc_abort(txn);
        return VoteOutcome::Conflicts(conflicts.into_iter().map(|(_, c)| c).collect());
    }
    match storage.tpc_vote(&mut txn) {
        Ok(resolved) => {
            let count = resolved.len();
            changed.extend(resolved);
            VoteOutcome::Voted {
                txn: Box::new(txn),
                changed,
                resolved: count,
            }
        }
        Err(error) => {
            storage.tpc_abort(txn);
            VoteOutcome::Failed { error, data: None }
        }
    }
}

fn conflict_dict(oid: Oid, committed: Tid, serial: Tid, data: &[u8]) -> Value {
    Value::Dict(vec![
        (Value::Str("oid".into()), Value::oid(oid)),
        (
            Value::Str("serials".into()),
            Value::Tuple(vec![Value::tid(committed), Value::tid(serial)]),
        ),
        (Value::Str("data".into()), Value::Bytes(data.to_vec())),
    ])
}
