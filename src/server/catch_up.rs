//! `getInvalidations` for a client the in-memory queue cannot catch up: a
//! renderer that was away for a busy hour, or every client after a server
//! restart. Instead of answering `None` (the client drops its whole cache,
//! runzeo's default), the answer is read from the Data.fs by walking back
//! from its end (`FileStorage::changed_since`), within `invalidation-age`
//! and `invalidation-max-oids`.
//!
//! The scan may read for seconds, so it runs on the blocking pool without
//! the visibility lock (which `tpc_finish` needs). Its answer ends at the
//! commit published when it began, T1. The reply must still not reveal a
//! commit whose `invalidateTransaction` has not been queued to this
//! client (ZEO's cache refuses a last tid going backwards), so the gap
//! after T1 is closed under the read side of the lock, from the queue, or
//! by a short scan of what was committed meanwhile:
//!
//! ```text
//!   client tid ... T1 ................ Tn (published)
//!   |-- unlocked scan --|-- under the lock: queue.since(T1) ---|
//! ```

use std::collections::HashSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tracing::info;

use super::connection::Connection;
use super::dispatch::CallError;
use super::exported::Exported;
use super::reads::blocking;
use crate::config::ServerConfig;
use crate::ids::{Oid, Tid};
use crate::protocol::Value;
use crate::storage::{Since, SinceBound};

/// Unlocked catch-up scans before the last step under the lock, so a
/// scan that took long under heavy commits leaves little for the lock.
const UNLOCKED_ROUNDS: usize = 3;

/// What the scans found so far, or why the client must drop its cache.
enum Partial {
    Upto {
        tid: Tid,
        oids: HashSet<Oid>,
        transactions: u64,
    },
    Drop(&'static str),
}

const TOO_OLD: &str = "the client's cache is older than invalidation-age";
const TOO_MANY: &str = "more objects changed than invalidation-max-oids";

impl Connection {
    /// Answers `getInvalidations(after)` and queues the reply.
    pub(super) async fn get_invalidations(
        &mut self,
        after: Tid,
        msgid: &Value,
        exported: &Exported,
    ) -> Result<(), CallError> {
        let slot = self.reserve().await.map_err(CallError::Close)?;
        let visible = exported.visibility.read().await;
        let quick = exported.invalidations.lock().since(after);
        if let Some((tid, oids)) = quick {
            let reply = self.encode_reply(msgid, Ok(invalidations_value(tid, oids)));
            slot.send(reply.map_err(CallError::Close)?);
            drop(visible);
            return Ok(());
        }
        drop(visible);

        let started = Instant::now();
        let shared = self.shared.clone();
        let config = &shared.config;
        let mut partial = scan_unlocked(config, after, exported).await?;
        let visible = exported.visibility.read().await;
        if let Partial::Upto { tid, oids, .. } = &mut partial {
            let queued = exported.invalidations.lock().since(*tid);
            let (newest, more) = match queued {
                Some(found) => found,
                None => {
                    // Only what was committed since the unlocked scans
                    // (more than the queue holds): short, and bounded by
                    // the oid count checked below.
                    let (storage, from) = (exported.storage.clone(), *tid);
                    match blocking(move || storage.changed_since(from, SinceBound::NONE)).await?? {
                        Since::Changed { tid, oids, .. } => (tid, oids),
                        _ => (Tid::ZERO, Vec::new()),
                    }
                }
            };
            oids.extend(more);
            if newest == Tid::ZERO {
                partial = Partial::Drop(TOO_OLD);
            } else if oids.len() > config.invalidation_max_oids {
                partial = Partial::Drop(TOO_MANY);
            } else {
                *tid = newest;
            }
        }
        let value = match partial {
            Partial::Upto {
                tid,
                oids,
                transactions,
            } => {
                info!(
                    conn = self.id,
                    peer = %self.address,
                    storage = %exported.name,
                    client_tid = %after.timestamp_string(),
                    transactions,
                    oids = oids.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "client cache kept: invalidations since its tid read back from the file"
                );
                let mut oids: Vec<Oid> = oids.into_iter().collect();
                oids.sort_unstable();
                invalidations_value(tid, oids)
            }
            Partial::Drop(why) => {
                info!(
                    conn = self.id,
                    peer = %self.address,
                    storage = %exported.name,
                    client_tid = %after.timestamp_string(),
                    why,
                    "client must drop its cache"
                );
                Value::None
            }
        };
        slot.send(
            self.encode_reply(msgid, Ok(value))
                .map_err(CallError::Close)?,
        );
        drop(visible);
        Ok(())
    }
}

/// The scan's bounds for a client at `after`, `None` if it may not scan.
fn since_bound(config: &ServerConfig, after: Tid) -> Option<SinceBound> {
    let age = config.invalidation_age?;
    let not_before = Tid::from_unix(unix_now() - age.as_secs_f64());
    (after >= not_before).then_some(SinceBound {
        not_before,
        max_oids: config.invalidation_max_oids,
    })
}

/// Scans back from the end, then again for what was committed during
/// the previous scan, without any lock.
async fn scan_unlocked(
    config: &ServerConfig,
    after: Tid,
    exported: &Exported,
) -> Result<Partial, CallError> {
    let Some(bound) = since_bound(config, after) else {
        return Ok(Partial::Drop(if config.invalidation_age.is_none() {
            "invalidation-age is 0: the file is never scanned"
        } else {
            TOO_OLD
        }));
    };
    let (mut from, mut all, mut transactions) = (after, HashSet::new(), 0);
    for round in 0..UNLOCKED_ROUNDS {
        if round > 0 && exported.storage.last_transaction() <= from {
            break;
        }
        let storage = exported.storage.clone();
        let since = blocking(move || storage.changed_since(from, bound)).await??;
        match since {
            Since::Changed {
                tid,
                oids,
                transactions: n,
            } => {
                all.extend(oids);
                transactions += n;
                from = tid;
                if all.len() > bound.max_oids {
                    return Ok(Partial::Drop(TOO_MANY));
                }
            }
            Since::TooOld { .. } => return Ok(Partial::Drop(TOO_OLD)),
            Since::TooMany { .. } => return Ok(Partial::Drop(TOO_MANY)),
            Since::Unknown { .. } => {
                return Ok(Partial::Drop(
                    "the file holds no transaction at or before the client's tid",
                ))
            }
        }
    }
    Ok(Partial::Upto {
        tid: from,
        oids: all,
        transactions,
    })
}

fn invalidations_value(tid: Tid, oids: Vec<Oid>) -> Value {
    Value::Tuple(vec![
        Value::tid(tid),
        Value::List(oids.into_iter().map(Value::oid).collect()),
    ])
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
