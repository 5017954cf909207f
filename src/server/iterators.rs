//! Server-side storage iterators of one connection (`iterator_start`,
//! `iterator_next`, `iterator_record_start/next`, `iterator_gc`). Ids come
//! from one per-connection counter shared by both kinds, as in Python.

use std::collections::HashMap;
use std::sync::Arc;

use super::connection::Connection;
use super::dispatch::{Args, CallError, CallResult};
use super::reads::{blocking, extension};
use crate::protocol::Value;
use crate::storage::{self, DataRecord, FileStorage, TransactionRecord};

type TxnIter = Box<dyn Iterator<Item = storage::Result<TransactionRecord>> + Send>;

/// Iterators are dropped when the connection closes.
#[derive(Default)]
pub struct Iterators {
    next_id: i128,
    transactions: HashMap<i128, (Option<TxnIter>, Option<TransactionRecord>)>,
    records: HashMap<i128, std::vec::IntoIter<DataRecord>>,
}

/// A connection may not pile up iterators without bound.
const MAX_ITERATORS: usize = 1000;

impl Iterators {
    pub fn clear(&mut self) {
        self.transactions.clear();
        self.records.clear();
    }

    fn allocate(&mut self) -> Result<i128, CallError> {
        if self.transactions.len() + self.records.len() >= MAX_ITERATORS {
            return Err(CallError::value_error(format!(
                "too many open iterators (limit {MAX_ITERATORS})"
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        Ok(id)
    }
}

impl Connection {
    pub(super) async fn iterator_start(
        &mut self,
        a: &Args<'_>,
        storage: Arc<FileStorage>,
    ) -> CallResult {
        a.arity(2, 2)?;
        let (start, stop) = (a.opt_tid(0)?, a.opt_tid(1)?);
        // Like Python's FileStorage iterator, an open-ended one ends at the
        // last transaction when it was created.
        let stop = Some(stop.unwrap_or_else(|| storage.last_transaction()));
        let id = self.iterators.allocate()?;
        let iter = blocking(move || storage.iterator(start, stop)).await?;
        self.iterators.transactions.insert(id, (Some(iter), None));
        Ok(Value::Int(id))
    }

    pub(super) async fn iterator_next(&mut self, a: &Args<'_>) -> CallResult {
        a.arity(1, 1)?;
        let id = a.int(0)?;
        let Some((iter, _)) = self.iterators.transactions.get_mut(&id) else {
            return Err(CallError::key_error(Value::Int(id)));
        };
        let Some(mut iter) = iter.take() else {
            return Err(CallError::key_error(Value::Int(id)));
        };
        let (iter, next) = blocking(move || {
            let next = iter.next();
            (iter, next)
        })
        .await?;
        match next {
            None => {
                self.iterators.transactions.remove(&id);
                Ok(Value::None)
            }
            Some(Err(err)) => {
                self.iterators.transactions.remove(&id);
                Err(err.into())
            }
            Some(Ok(txn)) => {
                let value = Value::Tuple(vec![
                    Value::tid(txn.tid),
                    Value::Str(char::from(txn.status).to_string()),
                    Value::Bytes(txn.meta.user.clone()),
                    Value::Bytes(txn.meta.description.clone()),
                    extension(&txn.meta),
                ]);
                self.iterators
                    .transactions
                    .insert(id, (Some(iter), Some(txn)));
                Ok(value)
            }
        }
    }

    pub(super) fn iterator_record_start(&mut self, a: &Args<'_>) -> CallResult {
        a.arity(2, 2)?;
        let (txn_id, tid) = (a.int(0)?, a.tid(1)?);
        let records = match self.iterators.transactions.get(&txn_id) {
            Some((_, Some(txn))) if txn.tid == tid => txn.records.clone(),
            Some(_) => {
                return Err(CallError::value_error(format!(
                    "iterator_record_start: transaction {tid} is not the current one of iterator {txn_id}"
                )))
            }
            None => return Err(CallError::key_error(Value::Int(txn_id))),
        };
        let id = self.iterators.allocate()?;
        self.iterators.records.insert(id, records.into_iter());
        Ok(Value::Int(id))
    }

    pub(super) fn iterator_record_next(&mut self, a: &Args<'_>) -> CallResult {
        a.arity(1, 1)?;
        let id = a.int(0)?;
        let Some(records) = self.iterators.records.get_mut(&id) else {
            return Err(CallError::key_error(Value::Int(id)));
        };
        match records.next() {
            Some(r) => Ok(Value::Tuple(vec![
                Value::oid(r.oid),
                Value::tid(r.tid),
                r.data.map(Value::Bytes).unwrap_or(Value::None),
                r.data_txn.map(Value::tid).unwrap_or(Value::None),
            ])),
            None => {
                self.iterators.records.remove(&id);
                Ok(Value::None)
            }
        }
    }

    /// `iterator_gc([iid, …])` (one-way): unknown ids are ignored.
    pub(super) fn iterator_gc(&mut self, a: &Args<'_>) -> CallResult {
        a.arity(1, 1)?;
        if let Value::List(ids) | Value::Tuple(ids) = a.get(0) {
            for id in ids {
                if let Value::Int(id) = id {
                    self.iterators.transactions.remove(id);
                    self.iterators.records.remove(id);
                }
            }
        }
        Ok(Value::None)
    }
}
