//! One storage as the server exports it under a name: the FileStorage, its
//! commit lock, the connections registered on it, its invalidation queue
//! and its statistics. Everything per-storage lives here; connections of
//! different storages share nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use super::invalidations::InvalidationQueue;
use super::outbound::{Outbound, Slot};
use super::status::Stats;
use crate::ids::{Oid, Tid};
use crate::protocol::{Encoding, Message, Value};
use crate::storage::FileStorage;

/// Identifies a connection for the life of the process.
pub type ConnId = u64;

/// A committer's answer to `tpc_finish`, sent by whoever publishes its
/// transaction: queued on the committer's connection before any later
/// transaction's invalidation, as a ZEO client's cache requires (its last
/// tid only moves forward).
pub struct Finisher {
    pub encoding: Encoding,
    pub info_slot: Slot,
    pub reply_slot: Slot,
    /// The encoded reply carrying the tid.
    pub reply: Vec<u8>,
}

/// What a committer needs to reach another connection.
#[derive(Clone)]
pub struct Peer {
    pub encoding: Encoding,
    pub out: Outbound,
    /// Cancelled to throw the connection out (its queue overflowed).
    pub kill: CancellationToken,
    pub address: String,
}

pub struct Exported {
    pub name: String,
    pub storage: Arc<FileStorage>,
    /// `pack-gc` of the storage's configuration.
    pub pack_gc: bool,
    /// The commit lock: held from a successful `vote` to `tpc_finish`,
    /// `tpc_abort` or disconnect. tokio's mutex queues waiters in FIFO
    /// order, which is the order voters are served in.
    pub commit_lock: Arc<tokio::sync::Mutex<()>>,
    /// Makes "commit published + invalidations queued" one step for
    /// readers: `tpc_finish` publishes under the write side, and every
    /// request whose reply could reveal a commit computes and queues that
    /// reply under the read side. So no reply showing transaction T can
    /// overtake T's `invalidateTransaction` on any connection.
    pub visibility: RwLock<()>,
    pub peers: Mutex<HashMap<ConnId, Peer>>,
    /// Sealed transactions' pending `tpc_finish` answers, by tid.
    pub finishers: Mutex<HashMap<Tid, Finisher>>,
    pub invalidations: Mutex<InvalidationQueue>,
    pub stats: Stats,
    /// Voters waiting for the commit lock (for `server_status`).
    pub waiting: AtomicUsize,
    /// Connections with a transaction open (for `server_status`).
    pub active_txns: AtomicUsize,
    /// When the current holder got the commit lock (unix seconds as bits; 0 = free).
    lock_time: AtomicU64,
}

impl Exported {
    pub fn new(
        name: String,
        storage: Arc<FileStorage>,
        pack_gc: bool,
        invalidations: InvalidationQueue,
    ) -> Exported {
        Exported {
            name,
            storage,
            pack_gc,
            commit_lock: Arc::new(tokio::sync::Mutex::new(())),
            visibility: RwLock::new(()),
            peers: Mutex::new(HashMap::new()),
            finishers: Mutex::new(HashMap::new()),
            invalidations: Mutex::new(invalidations),
            stats: Stats::default(),
            waiting: AtomicUsize::new(0),
            active_txns: AtomicUsize::new(0),
            lock_time: AtomicU64::new(0),
        }
    }

    pub fn set_lock_time(&self, unix: Option<f64>) {
        self.lock_time
            .store(unix.map(f64::to_bits).unwrap_or(0), Ordering::Relaxed);
    }

    pub fn lock_time(&self) -> Option<f64> {
        match self.lock_time.load(Ordering::Relaxed) {
            0 => None,
            bits => Some(f64::from_bits(bits)),
        }
    }

    /// Queues `invalidateTransaction(tid, oids)` on every connection of this
    /// storage except `committer`, and records it for `getInvalidations`.
    /// Must be called under the write side of `visibility`, right after the
    /// storage published `tid`. Never waits: a connection whose queue is
    /// full is disconnected (it would otherwise miss an invalidation).
    pub fn broadcast_invalidation(&self, committer: ConnId, tid: Tid, oids: &[Oid]) {
        self.invalidations.lock().push(tid, oids.to_vec());
        let call = Message {
            msgid: Value::Int(0),
            flags: Value::Bool(true),
            method: "invalidateTransaction".to_string(),
            args: Value::Tuple(vec![
                Value::tid(tid),
                Value::List(oids.iter().map(|o| Value::oid(*o)).collect()),
            ]),
        };
        self.send_to_all(Some(committer), &call);
    }

    /// Under the write side of `visibility`, for each transaction just
    /// published, in tid order: its committer's `info` and `tpc_finish`
    /// reply, then its invalidation to everyone else.
    pub fn announce(&self, committed: &[crate::storage::Committed]) {
        for c in committed {
            if let Some(f) = self.finishers.lock().remove(&c.tid) {
                let info = Message {
                    msgid: Value::Int(0),
                    flags: Value::Bool(true),
                    method: "info".into(),
                    args: Value::Tuple(vec![super::finish::info_dict(&self.storage)]),
                };
                match super::wire::encode(f.encoding, &info) {
                    Ok(bytes) => f.info_slot.send(bytes),
                    Err(err) => {
                        tracing::error!(storage = %self.name, %err, "cannot encode info")
                    }
                }
                f.reply_slot.send(f.reply);
            }
            self.broadcast_invalidation(c.tag, c.tid, &c.oids);
        }
    }

    /// Queues `info({'length', 'size'})` on every connection of this
    /// storage, as ZEO's server does after a pack, so clients' `getSize()`
    /// and `len()` show the packed storage.
    pub fn broadcast_size_info(&self) {
        let info = Message {
            msgid: Value::Int(0),
            flags: Value::Bool(true),
            method: "info".into(),
            args: Value::Tuple(vec![super::finish::info_dict(&self.storage)]),
        };
        self.send_to_all(None, &info);
    }

    /// Queues a one-way call on every connection (but `except`), encoding
    /// it once per encoding in use.
    pub fn send_to_all(&self, except: Option<ConnId>, call: &Message) {
        // At most three encodings are in use; a list beats a map here.
        let mut encoded: Vec<(Encoding, Option<Vec<u8>>)> = Vec::new();
        let peers = self.peers.lock();
        for (id, peer) in peers.iter() {
            if Some(*id) == except {
                continue;
            }
            let index = match encoded.iter().position(|(e, _)| *e == peer.encoding) {
                Some(index) => index,
                None => {
                    let bytes = match super::wire::encode(peer.encoding, call) {
                        Ok(bytes) => Some(bytes),
                        Err(err) => {
                            tracing::error!(storage = %self.name, method = %call.method, %err, "cannot encode callback");
                            None
                        }
                    };
                    encoded.push((peer.encoding, bytes));
                    encoded.len() - 1
                }
            };
            let Some(bytes) = &encoded[index].1 else {
                continue;
            };
            if let Err(full) = peer.out.try_push(bytes.clone()) {
                tracing::warn!(
                    storage = %self.name,
                    conn = id,
                    peer = %peer.address,
                    queued_bytes = full.queued,
                    "outbound queue full (client not reading); disconnecting it"
                );
                peer.kill.cancel();
            }
        }
    }
}
