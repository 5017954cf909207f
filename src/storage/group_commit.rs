//! Group commit: the transactions sealed (status byte written, commit slot
//! released) but not yet published, and the fsync they share.
//!
//! ```text
//!   published.end        durable_end               write_end
//!   |  T1 sealed   |  T2 sealed  |   T3 sealed   |  (next tpc_begin appends here)
//!   '---- queue (tid order = file order), published front first ----'
//! ```
//!
//! A finisher seals under the server's commit lock, which it then drops,
//! and asks for durability up to its transaction's end. Whoever finds no
//! fsync in flight becomes the leader: it fsyncs everything sealed so far
//! and wakes the others, whose transactions that fsync covered. So the
//! committers that queued behind one fsync share the next one. Publishing
//! pops the queue's durable front in order; readers never see a sealed
//! transaction before it is durable, while the write side (conflict checks,
//! the next tid, where the next transaction goes) sees all of them.
//!
//! An fsync failure fails every transaction not yet durable and the
//! storage refuses commits until it is reopened: after a failed fsync the
//! kernel may have dropped the dirty pages, so nothing written since the
//! last good fsync can be trusted, nor can a retry be.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use tracing::{debug, error};

use super::transaction::remove_blobs;
use super::{Error, FileStorage, Result, Transaction};
use crate::ids::{Oid, Tid};

/// A sealed transaction waiting for durability and publication.
pub(super) struct Sealed {
    pub(super) tid: Tid,
    pub(super) tag: u64,
    pub(super) tpos: u64,
    /// Just past its trailing length: where the next transaction begins.
    pub(super) end: u64,
    pub(super) tindex: HashMap<Oid, u64>,
    pub(super) oids: Vec<Oid>,
    /// Removed again if the fsync fails.
    pub(super) blobs: Vec<PathBuf>,
}

/// What [`FileStorage::seal`] hands back: enough to wait for durability.
#[derive(Debug, Clone)]
pub struct SealTicket {
    pub tid: Tid,
    pub oids: Vec<Oid>,
    end: u64,
}

/// A transaction made visible by [`FileStorage::publish_durable`].
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub tid: Tid,
    pub oids: Vec<Oid>,
    /// The `tag` given to `seal` (the server's connection id).
    pub tag: u64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Sealed>,
    /// Everything before this offset has been fsynced (0 until the first
    /// fsync; only compared with ends of sealed transactions).
    durable_end: u64,
    syncing: bool,
    /// Set by a failed fsync; commits are refused from then on.
    failed: Option<String>,
}

#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    changed: Condvar,
    fsyncs: AtomicU64,
    fsynced_txns: AtomicU64,
    /// Unit tests make the fsyncs fail (a disk error cannot be had on
    /// demand) to check what the clients and the file see then.
    #[cfg(test)]
    fail_fsyncs: std::sync::atomic::AtomicBool,
}

impl GroupCommit {
    /// `(fsyncs, transactions they made durable)` since open.
    pub(super) fn fsync_counts(&self) -> (u64, u64) {
        (
            self.fsyncs.load(Ordering::Relaxed),
            self.fsynced_txns.load(Ordering::Relaxed),
        )
    }

    /// Refuses commits after a failed fsync.
    pub(super) fn check_usable(&self, s: &FileStorage) -> Result<()> {
        match &self.state.lock().failed {
            Some(reason) => Err(refused(s, reason)),
            None => Ok(()),
        }
    }
}

fn refused(s: &FileStorage, reason: &str) -> Error {
    Error::Io {
        context: format!(
            "{} refuses commits until the server restarts: an fsync failed",
            s.path.display()
        ),
        source: std::io::Error::other(reason.to_string()),
    }
}

/// The write side's view: where the next transaction goes and the last
/// tid sealed, sealed-but-unpublished transactions included. The caller
/// holds the commit slot, so nothing is sealed meanwhile.
pub(super) fn write_tail(s: &FileStorage) -> (Arc<File>, u64, Tid) {
    let st = s.group.state.lock();
    let p = s.published.read();
    match st.queue.back() {
        Some(last) => (Arc::clone(&p.file), last.end, last.tid),
        None => (Arc::clone(&p.file), p.end, p.last_tid),
    }
}

/// The current record of `oid` as the write side sees it (the newest
/// sealed transaction that wrote it, else the published index).
pub(super) fn locate_written(s: &FileStorage, oid: Oid) -> Option<(u64, Arc<File>)> {
    let st = s.group.state.lock();
    let p = s.published.read();
    let pos = st
        .queue
        .iter()
        .rev()
        .find_map(|t| t.tindex.get(&oid).copied())
        .or_else(|| p.index.get(oid))?;
    Some((pos, Arc::clone(&p.file)))
}

/// Queues a written transaction (status byte already final) and returns
/// its ticket. The caller drops the transaction afterwards, which frees
/// the commit slot.
pub(super) fn enqueue(s: &FileStorage, sealed: Sealed) -> SealTicket {
    let mut st = s.group.state.lock();
    if !s.options.fsync {
        // Nothing to wait for: "durable" as soon as written.
        st.durable_end = st.durable_end.max(sealed.end);
    }
    let ticket = SealTicket {
        tid: sealed.tid,
        oids: sealed.oids.clone(),
        end: sealed.end,
    };
    st.queue.push_back(sealed);
    ticket
}

/// Blocks until the transaction of `ticket` is on disk, fsyncing as the
/// leader when no fsync covering it is in flight.
pub(super) fn wait_durable(s: &FileStorage, ticket: &SealTicket) -> Result<()> {
    let g = &s.group;
    let mut st = g.state.lock();
    loop {
        if st.durable_end >= ticket.end {
            return Ok(());
        }
        if let Some(reason) = &st.failed {
            return Err(Error::Io {
                context: format!("finishing transaction in {}", s.path.display()),
                source: std::io::Error::other(reason.clone()),
            });
        }
        if st.syncing {
            g.changed.wait(&mut st);
            continue;
        }
        lead_fsync(s, &mut st);
    }
}

/// One fsync for everything sealed so far, the lock released meanwhile.
fn lead_fsync(s: &FileStorage, st: &mut MutexGuard<'_, State>) {
    let g = &s.group;
    let Some(target) = st.queue.back().map(|t| t.end) else {
        return;
    };
    st.syncing = true;
    let file = Arc::clone(&s.published.read().file);
    let result = MutexGuard::unlocked(st, || sync(s, &file));
    st.syncing = false;
    match result {
        Ok(()) => {
            let covered = st
                .queue
                .iter()
                .filter(|t| t.end > st.durable_end && t.end <= target)
                .count() as u64;
            st.durable_end = st.durable_end.max(target);
            g.fsyncs.fetch_add(1, Ordering::Relaxed);
            g.fsynced_txns.fetch_add(covered, Ordering::Relaxed);
            debug!(path = %s.path.display(), transactions = covered, "fsync");
        }
        Err(err) => fail(s, st, err),
    }
    g.changed.notify_all();
}

#[cfg_attr(not(test), allow(unused_variables))]
fn sync(s: &FileStorage, file: &File) -> std::io::Result<()> {
    #[cfg(test)]
    if s.group.fail_fsyncs.load(Ordering::SeqCst) {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    file.sync_data()
}

/// Drops every transaction the failed fsync should have covered and
/// stops accepting commits.
fn fail(s: &FileStorage, st: &mut State, err: std::io::Error) {
    error!(path = %s.path.display(), %err, "fsync failed: transactions not yet durable fail, and this storage refuses commits until the server restarts");
    let durable_end = st.durable_end;
    let mut cut = None;
    while st.queue.back().is_some_and(|t| t.end > durable_end) {
        if let Some(mut t) = st.queue.pop_back() {
            remove_blobs(&mut t.blobs);
            cut = Some(t.tpos);
        }
    }
    if let Some(tpos) = cut {
        // So a restart does not bring back transactions whose clients got
        // an error; best effort, the disk is failing.
        let file = Arc::clone(&s.published.read().file);
        if let Err(e) = file.set_len(tpos) {
            error!(path = %s.path.display(), %e, "could not truncate the transactions that failed");
        }
    }
    st.failed = Some(err.to_string());
}

/// Makes the durable front of the queue visible to reads, in tid order,
/// and returns what it published (the caller announces it).
pub(super) fn publish_durable(s: &FileStorage) -> Vec<Committed> {
    let g = &s.group;
    let mut st = g.state.lock();
    let durable_end = st.durable_end;
    let mut out = Vec::new();
    let mut p = s.published.write();
    while st.queue.front().is_some_and(|t| t.end <= durable_end) {
        let Some(t) = st.queue.pop_front() else { break };
        for (oid, pos) in &t.tindex {
            p.index.insert(*oid, *pos);
        }
        p.end = t.end;
        p.last_tid = t.tid;
        debug!(tid = %t.tid, objects = t.oids.len(), end = t.end, "transaction published");
        out.push(Committed {
            tid: t.tid,
            oids: t.oids,
            tag: t.tag,
        });
    }
    drop(p);
    if !out.is_empty() {
        g.changed.notify_all();
    }
    out
}

/// Waits until every sealed transaction is published; false on timeout.
/// Called holding the commit slot or the server's commit lock, so nothing
/// new is sealed meanwhile.
pub(super) fn wait_drained(s: &FileStorage, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut st = s.group.state.lock();
    while !st.queue.is_empty() {
        if s.group.changed.wait_until(&mut st, deadline).timed_out() {
            return st.queue.is_empty();
        }
    }
    true
}

/// A pack installed a new file (holding the slot, the queue empty): the
/// durable offset belonged to the old one.
pub(super) fn file_replaced(s: &FileStorage) {
    s.group.state.lock().durable_end = 0;
}

/// The steps of a finish that a server takes one by one, so that it can
/// announce what it publishes ([`FileStorage::tpc_finish`] runs them in a
/// row for a caller that commits alone).
impl FileStorage {
    /// Writes the final status byte (voting first if needed) and queues
    /// the transaction for durability; frees the commit slot. `tag` comes
    /// back with the transaction from [`Self::publish_durable`] (the
    /// server's connection id). On error the transaction is rolled back.
    pub fn seal(&self, txn: Transaction, tag: u64) -> Result<SealTicket> {
        super::commit::seal(self, txn, tag)
    }

    /// Blocks until the sealed transaction is on disk, sharing fsyncs with
    /// concurrent finishers. An error means it never will be: it is not
    /// published, and the storage refuses commits until reopened.
    pub fn wait_durable(&self, ticket: &SealTicket) -> Result<()> {
        wait_durable(self, ticket)
    }

    /// Makes every durable sealed transaction visible to reads, in tid
    /// order, and returns them (possibly others' transactions, possibly
    /// none when another caller published the caller's already).
    pub fn publish_durable(&self) -> Vec<Committed> {
        publish_durable(self)
    }

    /// Blocks until every sealed transaction is published (false after
    /// `timeout`). For a caller holding the commit lock that is about to
    /// show a client the write side's state, e.g. a conflict naming a
    /// sealed tid the client must then be able to load.
    pub fn wait_published(&self, timeout: Duration) -> bool {
        wait_drained(self, timeout)
    }

    /// `(fsyncs, transactions they made durable)` since open (metrics).
    pub fn fsync_counts(&self) -> (u64, u64) {
        self.group.fsync_counts()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::storage::{BeginOptions, OpenOptions, SealTicket, TxnMeta};

    fn seal(s: &FileStorage, oid: Oid, serial: Tid, text: &[u8]) -> SealTicket {
        let mut txn = s
            .tpc_begin(BeginOptions {
                meta: TxnMeta::default(),
                ..BeginOptions::default()
            })
            .unwrap();
        s.store(&mut txn, oid, serial, text).unwrap();
        s.seal(txn, 0).unwrap()
    }

    /// A failed fsync fails every transaction it should have made durable
    /// (their clients get an error), publishes none of them, cuts them off
    /// the file so a restart cannot bring them back, and refuses commits.
    #[test]
    fn a_failed_fsync_fails_and_removes_every_transaction_not_yet_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        let s = FileStorage::open(&path, OpenOptions::default()).unwrap();
        let oid = s.new_oids(1).unwrap()[0];
        let kept = seal(&s, oid, Tid::ZERO, b"kept");
        s.wait_durable(&kept).unwrap();
        assert_eq!(s.publish_durable().len(), 1);
        let size = s.size();

        // Two sealed behind it, then the disk fails.
        let lost1 = seal(&s, oid, kept.tid, b"lost 1");
        let lost2 = seal(&s, oid, lost1.tid, b"lost 2");
        assert!(std::fs::metadata(&path).unwrap().len() > size);
        s.group.fail_fsyncs.store(true, Ordering::SeqCst);
        assert!(matches!(s.wait_durable(&lost2), Err(Error::Io { .. })));
        assert!(matches!(s.wait_durable(&lost1), Err(Error::Io { .. })));
        assert!(s.publish_durable().is_empty());

        assert_eq!(s.load(oid).unwrap(), (b"kept".to_vec(), kept.tid));
        assert_eq!((s.size(), s.last_transaction()), (size, kept.tid));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        let refused = s.tpc_begin(BeginOptions::default()).err();
        assert!(matches!(refused, Some(Error::Io { .. })), "{refused:?}");

        // The disk is back, the server restarts: the failed ones stay gone.
        s.group.fail_fsyncs.store(false, Ordering::SeqCst);
        s.close().unwrap();
        drop(s);
        let s = FileStorage::open(&path, OpenOptions::default()).unwrap();
        assert_eq!(s.load(oid).unwrap(), (b"kept".to_vec(), kept.tid));
        assert_eq!(s.last_transaction(), kept.tid);
        let next = seal(&s, oid, kept.tid, b"next");
        s.wait_durable(&next).unwrap();
        assert_eq!(s.publish_durable().len(), 1);
        assert_eq!(s.load(oid).unwrap(), (b"next".to_vec(), next.tid));
    }
}
