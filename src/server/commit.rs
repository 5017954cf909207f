//! The two-phase commit as the server runs it (spec §8). `tpc_begin` and
//! the store-like calls only append to the connection's transaction log;
//! nothing touches the storage before `vote`. `vote` takes the storage's
//! commit lock (waiting voters are queued FIFO, their replies deferred),
//! begins the storage transaction (which fixes the tid), replays the log,
//! and votes. `tpc_finish` and `tpc_abort` are in `finish.rs`.
//!
//! Write conflicts go back to ZEO 5 clients as `{'oid', 'serials', 'data'}`
//! dicts in the vote result with the log kept, so the client resolves them
//! (zeod cannot run application conflict resolution) and votes again —
//! Python's `client-conflict-resolution` protocol, which every ZEO >= 5
//! client speaks. Unlike Python, the commit lock stays held meanwhile (as
//! it does while Python resolves on the server), so the resolution is
//! against the final committed state and the next vote cannot conflict
//! again.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use super::connection::Connection;
use super::dispatch::{Args, CallError};
use super::exported::Exported;
use super::status::Stats;
use super::txnlog::{replay, PendingTxn, TxnOp, VoteOutcome};
use super::wire;
use crate::ids::Tid;
use crate::protocol::Value;
use crate::storage::{self, BeginOptions, TxnMeta};

/// Transactions with at most this much data are replayed on the reactor.
const INLINE_VOTE_BYTES: usize = 256 * 1024;

/// How long a conflicting vote waits for the transactions before it to be
/// published (they are only waiting for their fsync).
const PUBLISH_WAIT: Duration = Duration::from_secs(60);

type LockFuture = Pin<Box<dyn Future<Output = OwnedMutexGuard<()>> + Send>>;

/// Where the connection stands with its storage's commit lock.
#[derive(Default)]
pub enum LockState {
    #[default]
    Free,
    /// A `vote` is queued for the lock; its reply is deferred.
    Waiting {
        lock: LockFuture,
        msgid: Value,
        /// When the vote was queued (for the lock-wait metric).
        queued: Instant,
    },
    /// Conflicts were handed back; the storage transaction was aborted but
    /// the lock is kept for the client's next vote, so its resolution
    /// cannot be overtaken by another commit (under contention a client
    /// would otherwise run out of its 9 vote attempts).
    Resolving {
        guard: OwnedMutexGuard<()>,
        since: Instant,
    },
    /// Voted: the storage transaction is written, awaiting finish or abort.
    Held {
        guard: OwnedMutexGuard<()>,
        since: Instant,
        txn: Box<storage::Transaction>,
    },
}

impl LockState {
    /// True while the connection holds its storage's commit lock.
    pub fn is_held(&self) -> bool {
        matches!(self, LockState::Held { .. } | LockState::Resolving { .. })
    }

    /// When the connection got the commit lock.
    pub fn held_since(&self) -> Option<Instant> {
        match self {
            LockState::Held { since, .. } | LockState::Resolving { since, .. } => Some(*since),
            _ => None,
        }
    }

    /// Resolves when a queued vote gets the lock; never, otherwise.
    pub async fn granted(state: &mut LockState) -> OwnedMutexGuard<()> {
        match state {
            LockState::Waiting { lock, .. } => lock.as_mut().await,
            _ => std::future::pending().await,
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Connection {
    pub(super) fn exported(&self) -> Result<Arc<Exported>, CallError> {
        self.exported
            .clone()
            .ok_or_else(|| CallError::close("not registered"))
    }

    /// The open transaction if `a[index]` names it (Python's `_check_tid`).
    fn txn_for(&mut self, a: &Args, index: usize) -> Result<&mut PendingTxn, CallError> {
        if self.read_only {
            return Err(CallError::read_only());
        }
        let id = a.txn(index)?;
        let current = self.txn.as_ref().map(|t| t.id);
        let mismatch = || {
            CallError::transaction(vec![
                current.map(Value::Int).unwrap_or(Value::None),
                Value::Int(id),
            ])
        };
        if current != Some(id) {
            return Err(mismatch());
        }
        self.txn.as_mut().ok_or_else(mismatch)
    }

    /// `tpc_begin(txn, user, description, extension, tid, status)` (one-way).
    pub(super) fn tpc_begin(&mut self, a: &Args) -> Result<Value, CallError> {
        a.arity(4, 6)?;
        if self.read_only {
            return Err(CallError::read_only());
        }
        let id = a.txn(0)?;
        if let Some(txn) = &self.txn {
            if txn.id == id {
                return Ok(Value::None);
            }
            return Err(CallError::transaction(vec![Value::Str(
                "Multiple simultaneous tpc_begin requests from one client.".into(),
            )]));
        }
        let extension = match a.get(3) {
            Value::Dict(items) if items.is_empty() => Vec::new(),
            Value::None => Vec::new(),
            ext @ Value::Dict(_) => wire::pickle_extension(ext),
            _ => return Err(CallError::type_error("tpc_begin: extension must be a dict")),
        };
        let status = match a.get(5) {
            Value::Str(s) => s.bytes().next().unwrap_or(b' '),
            Value::Bytes(b) => b.first().copied().unwrap_or(b' '),
            _ => b' ',
        };
        let begin = BeginOptions {
            meta: TxnMeta {
                user: a.text_bytes(1)?,
                description: a.text_bytes(2)?,
                extension,
            },
            tid: if a.len() > 4 { a.opt_tid(4)? } else { None },
            status: Some(status),
        };
        self.txn = Some(PendingTxn {
            id,
            begin,
            ops: Vec::new(),
        });
        if let Some(exported) = &self.exported {
            exported.active_txns.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Value::None)
    }

    fn log_op(&mut self, a: &Args, txn_index: usize, op: TxnOp) -> Result<Value, CallError> {
        self.txn_for(a, txn_index)?.ops.push(op);
        Ok(Value::None)
    }

    /// `storea(oid, serial, data, txn)`.
    pub(super) fn storea(&mut self, a: &Args) -> Result<Value, CallError> {
        a.arity(4, 4)?;
        let op = TxnOp::Store {
            oid: a.oid(0)?,
            serial: a.opt_tid(1)?.unwrap_or(Tid::ZERO),
            data: a.bytes(2)?.to_vec(),
        };
        self.log_op(a, 3, op)?;
        if let Some(exported) = &self.exported {
            Stats::bump(&exported.stats.stores);
        }
        Ok(Value::None)
    }

    /// `checkCurrentSerialInTransaction(oid, serial, txn)`.
    pub(super) fn check_current_serial(&mut self, a: &Args) -> Result<Value, CallError> {
        a.arity(3, 3)?;
        let op = TxnOp::CheckCurrent {
            oid: a.oid(0)?,
            serial: a.opt_tid(1)?.unwrap_or(Tid::ZERO),
        };
        self.log_op(a, 2, op)
    }

    /// `deleteObject(oid, serial, txn)`.
    pub(super) fn delete_object(&mut self, a: &Args) -> Result<Value, CallError> {
        a.arity(3, 3)?;
        let op = TxnOp::Delete {
            oid: a.oid(0)?,
            serial: a.opt_tid(1)?.unwrap_or(Tid::ZERO),
        };
        self.log_op(a, 2, op)
    }

    /// `restorea(oid, serial, data, prev_txn, txn)`.
    pub(super) fn restorea(&mut self, a: &Args) -> Result<Value, CallError> {
        a.arity(5, 5)?;
        let op = TxnOp::Restore {
            oid: a.oid(0)?,
            serial: a.tid(1)?,
            data: a.opt_bytes(2)?.map(<[u8]>::to_vec),
            prev_txn: a.opt_tid(3)?,
        };
        self.log_op(a, 4, op)
    }

    /// `undoa(trans_id, txn)`.
    pub(super) fn undoa(&mut self, a: &Args) -> Result<Value, CallError> {
        a.arity(2, 2)?;
        let op = TxnOp::Undo {
            id: a.text_bytes(0)?,
        };
        self.log_op(a, 1, op)
    }

    /// Queues a blob store (from `storeBlobEnd`/`storeBlobShared`); it
    /// supersedes an earlier plain store of the same oid.
    pub(super) fn log_blob_store(
        &mut self,
        a: &Args,
        txn_index: usize,
        op: TxnOp,
    ) -> Result<(), CallError> {
        let txn = self.txn_for(a, txn_index)?;
        if let TxnOp::StoreBlob { oid, .. } = &op {
            let oid = *oid;
            txn.ops
                .retain(|o| !matches!(o, TxnOp::Store { oid: stored, .. } if *stored == oid));
        }
        txn.ops.push(op);
        Ok(())
    }

    /// `vote(txn)`: replies now if the commit lock is free, later otherwise.
    pub(super) async fn vote(&mut self, a: &Args<'_>, msgid: &Value) -> Result<(), CallError> {
        a.arity(1, 1)?;
        self.txn_for(a, 0)?;
        match self.lock {
            LockState::Held { .. } => {
                return Err(CallError::transaction(vec![Value::Str(
                    "Already voting (locked)".into(),
                )]))
            }
            LockState::Waiting { .. } => {
                return Err(CallError::transaction(vec![Value::Str(
                    "Already voting (waiting)".into(),
                )]))
            }
            LockState::Resolving { .. } => {
                let LockState::Resolving { guard, since } = std::mem::take(&mut self.lock) else {
                    return Ok(());
                };
                return self
                    .run_vote(guard, since, msgid.clone())
                    .await
                    .map_err(CallError::Close);
            }
            LockState::Free => {}
        }
        let exported = self.exported()?;
        match exported.commit_lock.clone().try_lock_owned() {
            Ok(guard) => {
                self.shared
                    .metrics
                    .lock_wait(&exported.name, Duration::ZERO);
                self.run_vote(guard, Instant::now(), msgid.clone())
                    .await
                    .map_err(CallError::Close)
            }
            Err(_) => {
                exported.waiting.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(conn = self.id, storage = %exported.name, "vote waits for the commit lock");
                self.lock = LockState::Waiting {
                    lock: Box::pin(exported.commit_lock.clone().lock_owned()),
                    msgid: msgid.clone(),
                    queued: Instant::now(),
                };
                Ok(())
            }
        }
    }

    /// A queued vote got the lock.
    pub(super) async fn lock_granted(&mut self, guard: OwnedMutexGuard<()>) -> Result<(), String> {
        let LockState::Waiting { msgid, queued, .. } = std::mem::take(&mut self.lock) else {
            return Ok(());
        };
        if let Some(exported) = &self.exported {
            exported.waiting.fetch_sub(1, Ordering::Relaxed);
            self.shared
                .metrics
                .lock_wait(&exported.name, queued.elapsed());
        }
        self.run_vote(guard, Instant::now(), msgid).await
    }

    /// Holding the lock: replays the log into a storage transaction and
    /// replies to the vote.
    async fn run_vote(
        &mut self,
        guard: OwnedMutexGuard<()>,
        since: Instant,
        msgid: Value,
    ) -> Result<(), String> {
        let exported = self.exported().map_err(|_| "not registered".to_string())?;
        let Some(txn) = self.txn.as_mut() else {
            let err =
                CallError::transaction(vec![Value::Str("transaction aborted while voting".into())]);
            return self.reply(&msgid, Err(err)).await;
        };
        exported.set_lock_time(Some(now()));
        let begin = txn.begin.clone();
        let ops = std::mem::take(&mut txn.ops);
        let storage = exported.storage.clone();
        // A small transaction is a few writes to the page cache: cheaper
        // here than a hop to the blocking pool. Big ones (and blob moves)
        // go there so they do not hold up other connections.
        let small = ops.iter().all(|op| !matches!(op, TxnOp::StoreBlob { .. }))
            && ops.iter().map(TxnOp::size).sum::<usize>() <= INLINE_VOTE_BYTES;
        let (ops, outcome) = if small {
            let outcome = replay(&storage, begin, &ops);
            (ops, outcome)
        } else {
            tokio::task::spawn_blocking(move || {
                let outcome = replay(&storage, begin, &ops);
                (ops, outcome)
            })
            .await
            .map_err(|e| format!("vote failed: {e}"))?
        };
        if let Some(txn) = self.txn.as_mut() {
            txn.ops = ops;
        }
        // A conflict may name a transaction sealed but not yet published;
        // the client must be able to load it (to resolve, or in its retry)
        // and must hear of it first. A ZEO 4 client must not get another
        // transaction's invalidation between its vote and its finish
        // replies: it processes invalidations under the lock its
        // tpc_finish holds while it waits (a deadlock); with those sealed
        // before its vote published first, none can come (the commit lock
        // is held until its finish).
        if outcome.shows_conflict() || self.z4.is_some() {
            let storage = exported.storage.clone();
            let published =
                tokio::task::spawn_blocking(move || storage.wait_published(PUBLISH_WAIT))
                    .await
                    .unwrap_or(false);
            if !published {
                tracing::warn!(conn = self.id, storage = %exported.name, "a conflict is answered before the transaction it names is published");
            }
        }
        if self.z4.is_some() {
            return self.z4_vote_outcome(outcome, guard, since, msgid).await;
        }
        match outcome {
            VoteOutcome::Voted {
                txn,
                changed,
                resolved,
            } => {
                for _ in 0..resolved {
                    Stats::bump(&exported.stats.conflicts_resolved);
                }
                self.lock = LockState::Held { guard, since, txn };
                self.reply(
                    &msgid,
                    Ok(Value::List(changed.into_iter().map(Value::oid).collect())),
                )
                .await
            }
            VoteOutcome::Conflicts(conflicts) => {
                self.lock = LockState::Resolving { guard, since };
                for _ in &conflicts {
                    Stats::bump(&exported.stats.conflicts);
                }
                self.reply(&msgid, Ok(Value::List(conflicts))).await
            }
            VoteOutcome::Failed { error, data } => {
                drop(guard);
                exported.set_lock_time(None);
                if matches!(
                    error,
                    storage::Error::Conflict { .. } | storage::Error::ReadConflict { .. }
                ) {
                    Stats::bump(&exported.stats.conflicts);
                }
                tracing::debug!(conn = self.id, %error, "vote failed");
                self.forget_transaction();
                self.reply(&msgid, Err(CallError::from_storage(error, data.as_deref())))
                    .await
            }
        }
    }
}
