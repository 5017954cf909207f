//! The end of a transaction: `tpc_finish` seals it (the final status
//! byte) and releases the commit lock at once; then it waits for the fsync
//! it shares with the other finishers (group commit,
//! [`crate::storage::group_commit`]), publishes what is durable and queues
//! the invalidations to every other connection under the write side of the
//! visibility lock, so no reply can overtake them, and sends `info` and
//! the tid. `tpc_abort`, and the abort of whatever a closing connection
//! has in progress.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::commit::LockState;
use super::connection::Connection;
use super::dispatch::{Args, CallError};
use super::exported::{Exported, Finisher};
use super::status::Stats;
use crate::protocol::Value;
use crate::storage::{self, FileStorage};

impl Connection {
    /// `tpc_finish(txn)`.
    pub(super) async fn tpc_finish(
        &mut self,
        a: &Args<'_>,
        msgid: &Value,
    ) -> Result<(), CallError> {
        a.arity(1, 1)?;
        let id = a.txn(0)?;
        if self.txn.as_ref().map(|t| t.id) != Some(id) {
            return self
                .reply(msgid, Ok(Value::None))
                .await
                .map_err(CallError::Close);
        }
        if !matches!(self.lock, LockState::Held { .. }) {
            return Err(CallError::transaction(vec![Value::Str(
                "tpc_finish without a successful vote".into(),
            )]));
        }
        let LockState::Held { guard, txn, since } = std::mem::take(&mut self.lock) else {
            return Ok(());
        };
        let exported = self.exported()?;
        let info_slot = self.reserve().await.map_err(CallError::Close)?;
        let reply_slot = self.reserve().await.map_err(CallError::Close)?;
        let tid = txn.tid;
        // Whoever publishes the transaction answers for it (see
        // `Exported::announce`); registered before sealing, as another
        // finisher's fsync may cover and publish it at once.
        let finisher = Finisher {
            encoding: self.encoding,
            info_slot,
            reply_slot,
            reply: self
                .encode_reply(msgid, Ok(Value::tid(tid)))
                .map_err(CallError::Close)?,
        };
        exported.finishers.lock().insert(tid, finisher);
        // Sealing is one byte written to the page cache: done here, under
        // the commit lock, which is released right after so the next
        // voter writes while this transaction waits for the disk.
        let sealed = exported.storage.seal(*txn, self.id);
        self.forget_transaction();
        // A ZEO 4 client keeps the lock until its commit is announced, as
        // with ZEO 4's server: its client library deadlocks when another
        // commit's messages come between its own vote and finish (seen in
        // ZEO 4's CommitLockTests), so its commit is not overlapped.
        let guard = if self.z4.is_some() {
            Some(guard)
        } else {
            drop(guard);
            exported.set_lock_time(None);
            self.shared
                .metrics
                .lock_hold(&exported.name, since.elapsed());
            None
        };
        let result = match sealed {
            // Its own task, so that a connection that goes away meanwhile
            // cannot leave its transaction unannounced.
            Ok(ticket) => tokio::spawn(publish_sealed(Arc::clone(&exported), ticket))
                .await
                .unwrap_or_else(|err| {
                    Err(storage::Error::Io {
                        context: "waiting for the fsync".into(),
                        source: std::io::Error::other(err.to_string()),
                    })
                }),
            Err(err) => Err(err),
        };
        if let Some(guard) = guard {
            drop(guard);
            exported.set_lock_time(None);
            self.shared
                .metrics
                .lock_hold(&exported.name, since.elapsed());
        }
        match result {
            Ok(()) => {
                Stats::bump(&exported.stats.commits);
                tracing::debug!(conn = self.id, storage = %exported.name, %tid, "committed");
            }
            Err(err) => {
                tracing::error!(conn = self.id, storage = %exported.name, %err, "tpc_finish failed");
                // Not published, so nobody answered for it.
                if let Some(f) = exported.finishers.lock().remove(&tid) {
                    f.reply_slot.send(
                        self.encode_reply(msgid, Err(CallError::from(err)))
                            .map_err(CallError::Close)?,
                    );
                }
            }
        }
        Ok(())
    }

    /// `tpc_abort(txn)`: always `None`.
    pub(super) async fn tpc_abort(&mut self, a: &Args<'_>) -> Result<Value, CallError> {
        a.arity(1, 1)?;
        let id = a.txn(0)?;
        if self.txn.as_ref().map(|t| t.id) == Some(id) {
            self.abort_transaction().await;
            if let Some(exported) = &self.exported {
                Stats::bump(&exported.stats.aborts);
            }
        }
        Ok(Value::None)
    }

    /// Aborts whatever the connection has in progress: the storage
    /// transaction (if voted), its place in the lock queue, the log.
    pub(super) async fn abort_transaction(&mut self) {
        match std::mem::take(&mut self.lock) {
            LockState::Held { guard, txn, .. } => {
                if let Some(exported) = &self.exported {
                    let storage = exported.storage.clone();
                    if tokio::task::spawn_blocking(move || storage.tpc_abort(*txn))
                        .await
                        .is_err()
                    {
                        tracing::error!(conn = self.id, "storage tpc_abort panicked");
                    }
                    exported.set_lock_time(None);
                }
                drop(guard);
            }
            LockState::Resolving { guard, .. } => {
                drop(guard);
                if let Some(exported) = &self.exported {
                    exported.set_lock_time(None);
                }
            }
            LockState::Waiting { msgid, .. } => {
                if let Some(exported) = &self.exported {
                    exported.waiting.fetch_sub(1, Ordering::Relaxed);
                }
                let err = CallError::transaction(vec![Value::Str(
                    "transaction aborted while voting".into(),
                )]);
                if let Ok(bytes) = self.encode_reply(&msgid, Err(err)) {
                    let _ = self.out.try_push(bytes);
                }
            }
            LockState::Free => {}
        }
        self.forget_transaction();
        self.upload = None;
    }

    /// Drops the transaction log and any blob files it still owns.
    pub(super) fn forget_transaction(&mut self) {
        if let Some(txn) = self.txn.take() {
            for file in txn.blob_files() {
                let _ = std::fs::remove_file(file);
            }
            if let Some(exported) = &self.exported {
                exported.active_txns.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Waits until the sealed transaction is durable, then publishes whatever
/// is durable and announces it, in tid order, under the write side of the
/// visibility lock. Whoever publishes a batch announces every transaction
/// in it (its committer's reply, its invalidation to everyone else), so
/// each connection sees replies and invalidations in tid order even when
/// a later committer wakes first.
async fn publish_sealed(
    exported: Arc<Exported>,
    ticket: storage::SealTicket,
) -> storage::Result<()> {
    let storage = exported.storage.clone();
    tokio::task::spawn_blocking(move || storage.wait_durable(&ticket))
        .await
        .map_err(|err| storage::Error::Io {
            context: "waiting for the fsync".into(),
            source: std::io::Error::other(err.to_string()),
        })??;
    let visible = exported.visibility.write().await;
    exported.announce(&exported.storage.publish_durable());
    drop(visible);
    Ok(())
}

/// `{'length': …, 'size': …}` for `info` callbacks.
pub fn info_dict(storage: &FileStorage) -> Value {
    Value::Dict(vec![
        (
            Value::Str("length".into()),
            Value::Int(storage.len() as i128),
        ),
        (
            Value::Str("size".into()),
            Value::Int(storage.size() as i128),
        ),
    ])
}
