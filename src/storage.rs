//! FileStorage: a `Data.fs` byte-compatible with Python ZODB, independent of
//! the network. The server sees only this API: it knows nothing of record
//! layouts, and this module knows nothing of sockets, clients or pickled
//! messages. `tpc_finish` returns `(tid, oids)`; announcing them is the
//! server's business.
//!
//! CONTRACT (written before the implementation; the storage owner may add
//! to it but must not change these signatures without updating the server).
//!
//! Concurrency: `FileStorage` is `Send + Sync` and shared as
//! `Arc<FileStorage>`. Reads may run concurrently with each other and with a
//! commit in progress. At most one transaction is between `tpc_begin` and
//! `tpc_finish`/`tpc_abort` at a time; the server's commit lock guarantees
//! it, and `tpc_begin` returns `Error::TransactionInProgress` otherwise.
//! The slot is held from `tpc_begin` to `seal` (or `tpc_abort`): sealing
//! writes the final status byte and frees it, so the next transaction is
//! written while the sealed one waits for the fsync, which concurrent
//! finishers share (group commit, [`group_commit`]). A transaction becomes
//! visible to reads only once durable (fsync unless disabled) and
//! published, in tid order: `tpc_finish` is `seal`, `wait_durable`, then
//! `publish_durable`, which the server calls separately to publish under
//! its own lock. The write side (conflict checks, the next tid, undo and
//! restore lookups) sees sealed transactions before readers do.
//!
//! # Layout (in reading order)
//!
//! - [`format`]: the on-disk records (ASCII tables) and `pread` helpers.
//! - [`index`]: oid → position, fsIndex-shaped, ~8 bytes per object.
//! - [`index_file`]: the `.index` pickles Python reads and writes.
//! - `lockfile`: `Data.fs.lock`, zc.lockfile's protocol.
//! - [`scan`]: building the index by reading the file; tail recovery rules.
//! - `open`: magic, index load/validation/rebuild, cutting a crashed tail.
//! - `read`, `iter`: loads, history, undo log, the transaction iterator.
//! - `transaction`, `commit`, `undo`: the write path.
//! - [`group_commit`]: sealed transactions, the shared fsync, publication.
//! - `blob`: the blob directory layout.
//! - `pack`: pack with GC (references come from [`crate::record::references`]).
//!
//! Differences from Python's FileStorage, all deliberate: `load_before` of
//! a deletion is `PosKey` (Python returns empty data); conflicts are
//! resolved (store and undo) only for the classes [`crate::conflict`]
//! knows, as there is no Python to import application classes; pack
//! tolerates dangling references and back pointers into dropped revisions
//! where ZODB raises; a saved index pointing outside the data it covers is
//! rejected (Python only samples the last transaction).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::ids::{Oid, Tid};
use crate::progress::Progress;

mod blob;
mod commit;
pub mod format;
pub mod group_commit;
pub mod index;
pub mod index_file;
mod invalidations;
mod iter;
mod lockfile;
mod open;
mod pack;
mod read;
pub mod scan;
mod transaction;
mod undo;

use blob::BlobDir;
use format::Reader;
use index::Index;
use lockfile::LockFile;

/// How to open a storage; mirrors `<filestorage>` keys of zeo.conf.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub read_only: bool,
    /// Create the file if it does not exist (zeo.conf `create`, default true
    /// for a missing file).
    pub create: bool,
    /// fsync the data file before `tpc_finish` returns (default true).
    pub fsync: bool,
    pub blob_dir: Option<PathBuf>,
    pub pack_gc: bool,
    pub pack_keep_old: bool,
    /// FileStorageQuotaError above this size.
    pub quota: Option<u64>,
    /// Resolve write conflicts on BTrees and `BTrees.Length` in `store`
    /// (see [`crate::conflict`]); off for zeo.conf
    /// `client-conflict-resolution true`, where clients resolve.
    pub resolve_conflicts: bool,
    /// Where opening reports the index scan (rebuild or catch-up); the
    /// caller chooses how it is shown ([`crate::progress::Reporter`]).
    pub progress: Progress,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read_only: false,
            create: true,
            fsync: true,
            blob_dir: None,
            pack_gc: true,
            pack_keep_old: true,
            quota: None,
            resolve_conflicts: true,
            progress: Progress::new(),
        }
    }
}

/// Result of `load_before`: the revision whose tid is the greatest one
/// strictly below the given tid.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBefore {
    pub data: Vec<u8>,
    pub start: Tid,
    /// Tid of the next newer revision; `None` when this one is current.
    pub end: Option<Tid>,
}

/// Transaction metadata as kept in the transaction header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TxnMeta {
    pub user: Vec<u8>,
    pub description: Vec<u8>,
    /// The extension pickle, verbatim (empty for an empty dict).
    pub extension: Vec<u8>,
}

/// One entry of `history`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub tid: Tid,
    pub meta: TxnMeta,
    /// Pickle length of the record (0 for a back pointer).
    pub size: u64,
}

/// One entry of `undo_log`.
#[derive(Debug, Clone, PartialEq)]
pub struct UndoEntry {
    /// base64 of the tid without the trailing newline, as Python's
    /// FileStorage builds it; opaque to clients.
    pub id: Vec<u8>,
    pub tid: Tid,
    pub meta: TxnMeta,
    /// The transaction's `tlen`.
    pub size: u64,
}

/// A transaction as the iterator yields it.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionRecord {
    pub tid: Tid,
    /// `b' '`, `b'p'`, …
    pub status: u8,
    pub meta: TxnMeta,
    pub pos: u64,
    pub records: Vec<DataRecord>,
}

/// A data record as the iterator yields it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataRecord {
    pub oid: Oid,
    pub tid: Tid,
    /// Resolved through back pointers; `None` for a deletion.
    pub data: Option<Vec<u8>>,
    /// For back-pointer records: the tid of the record pointed to.
    pub data_txn: Option<Tid>,
    pub pos: u64,
}

/// `record_iternext`'s answer: `(oid, tid, data, next_oid)`.
pub type IterNext = (Oid, Tid, Vec<u8>, Option<Oid>);

/// What `tpc_begin` needs: metadata, and for restores/copies the tid and
/// status the client dictates.
#[derive(Debug, Clone, Default)]
pub struct BeginOptions {
    pub meta: TxnMeta,
    pub tid: Option<Tid>,
    /// `b' '` unless copying packed transactions.
    pub status: Option<u8>,
}

/// Errors at the storage boundary. `server::dispatch` maps each to the ZODB
/// exception class its clients expect.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such object {0:?}")]
    PosKey(Oid),
    #[error("database conflict error (oid {oid:?}, committed {committed:?}, serial {serial:?})")]
    Conflict {
        oid: Oid,
        committed: Tid,
        serial: Tid,
    },
    #[error(
        "database read conflict error (oid {oid:?}, committed {committed:?}, serial {serial:?})"
    )]
    ReadConflict {
        oid: Oid,
        committed: Tid,
        serial: Tid,
    },
    #[error("storage is read-only")]
    ReadOnly,
    #[error("another transaction is in progress")]
    TransactionInProgress,
    #[error("undo failed: {}", format_undo_errors(.0))]
    Undo(Vec<(Option<Oid>, String)>),
    #[error("explicit tid {requested:?} is not after the last tid {last:?}")]
    TidNotIncreasing { requested: Tid, last: Tid },
    #[error("data file {path}: {reason}")]
    Corrupt {
        path: PathBuf,
        pos: u64,
        reason: String,
    },
    #[error("{path} uses ZODB <= 3.8 versions (record at {pos}); convert it first: {hint}")]
    VersionedRecord {
        path: PathBuf,
        pos: u64,
        hint: &'static str,
    },
    #[error("{path} is locked by another process")]
    Locked { path: PathBuf },
    #[error("quota exceeded: {size} > {quota}")]
    Quota { size: u64, quota: u64 },
    #[error("bad argument: {0}")]
    BadArgument(String),
    /// The open was abandoned on request ([`Progress::request_stop`])
    /// while it scanned the data file; nothing was written.
    #[error("{path}: opening stopped on request")]
    Stopped { path: PathBuf },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn format_undo_errors(errs: &[(Option<Oid>, String)]) -> String {
    errs.iter()
        .map(|(oid, reason)| match oid {
            Some(oid) => format!("Undo error {}: {reason}", oid.repr()),
            None => reason.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T> = std::result::Result<T, Error>;

/// An open FileStorage. See the module docs for the concurrency contract.
///
/// Readers take `published` for reading just long enough to look up a
/// position, then `pread` without any lock: the committer only appends past
/// `published.end` and publishes new positions after the fsync.
pub struct FileStorage {
    path: PathBuf,
    read_only: bool,
    options: OpenOptions,
    published: RwLock<Published>,
    /// The last oid handed out (or seen in the file); `new_oids` counts up.
    max_oid: Mutex<Oid>,
    /// The tid of the last `tpc_begin`, so aborted tids are not reissued.
    last_begun: Mutex<Tid>,
    /// Set between `tpc_begin` and the end of the transaction.
    busy: Arc<AtomicBool>,
    lock: Mutex<Option<LockFile>>,
    closed: AtomicBool,
    /// A pack is running (one at a time).
    packing: AtomicBool,
    /// How far the running pack is (read by metrics and reporters).
    pack_progress: Progress,
    /// The pack holds `busy` for its final copy and rename; commits wait.
    pack_holds_busy: AtomicBool,
    blobs: Option<BlobDir>,
    /// Sealed transactions awaiting the fsync and publication.
    group: group_commit::GroupCommit,
}

/// What readers may see: only finished, durable transactions. The file
/// handle lives here too because a pack replaces file and index together.
struct Published {
    file: Arc<File>,
    index: Index,
    /// End of the last finished transaction (`getSize`).
    end: u64,
    last_tid: Tid,
}

pub use group_commit::{Committed, SealTicket};
pub use invalidations::{Since, SinceBound};
pub use transaction::Transaction;

impl FileStorage {
    /// Opens (or creates) `path`, takes `path.lock`, loads or rebuilds the
    /// index, truncates an incomplete trailing transaction (read-write only).
    pub fn open(path: &Path, options: OpenOptions) -> Result<Arc<FileStorage>> {
        open::open(path, options).map(Arc::new)
    }

    /// Writes the `.index` (read-write only) and releases the lock.
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = if self.read_only {
            Ok(())
        } else {
            self.save_index()
        };
        self.lock.lock().take();
        result
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn blob_dir(&self) -> Option<&Path> {
        self.blobs.as_ref().map(|b| b.root())
    }

    pub fn last_transaction(&self) -> Tid {
        self.published.read().last_tid
    }

    /// Number of objects (index entries).
    pub fn len(&self) -> usize {
        self.published.read().index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// File size in bytes (`getSize`).
    pub fn size(&self) -> u64 {
        self.published.read().end
    }

    /// Estimated heap bytes of the in-memory index (for metrics).
    pub fn index_heap_bytes(&self) -> usize {
        self.published.read().index.heap_bytes()
    }

    /// Whether a pack is running.
    pub fn is_packing(&self) -> bool {
        self.packing.load(Ordering::Relaxed)
    }

    /// How far the running pack is: `snapshot()` is `None` when none runs.
    /// Packs report into it; callers attach a [`crate::progress::Reporter`].
    pub fn pack_progress(&self) -> &Progress {
        &self.pack_progress
    }

    /// Current revision: `(data, tid)`. `PosKey` if absent or deleted.
    pub fn load(&self, oid: Oid) -> Result<(Vec<u8>, Tid)> {
        read::load(self, oid)
    }

    /// `Ok(None)`: the oid exists but has no revision before `before`.
    /// `PosKey`: never existed, or the selected revision is a deletion.
    pub fn load_before(&self, oid: Oid, before: Tid) -> Result<Option<LoadBefore>> {
        read::load_before(self, oid, before)
    }

    pub fn load_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
        read::load_serial(self, oid, serial)
    }

    pub fn get_tid(&self, oid: Oid) -> Result<Tid> {
        read::get_tid(self, oid)
    }

    /// Newest first, at most `size` entries.
    pub fn history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>> {
        read::history(self, oid, size)
    }

    /// `(oid, tid, data, next_oid)` of the first oid >= `next` (or the first).
    pub fn record_iternext(&self, next: Option<Oid>) -> Result<Option<IterNext>> {
        read::record_iternext(self, next)
    }

    /// Transactions with `start <= tid <= stop`, in file order. Lazy: reads
    /// as it goes, so a server may hold one per client.
    pub fn iterator(
        self: &Arc<Self>,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> Box<dyn Iterator<Item = Result<TransactionRecord>> + Send> {
        Box::new(iter::TransactionIterator::new(
            Arc::clone(self),
            start,
            stop,
        ))
    }

    /// Python's `undoLog(first, last)`; `last < 0` means `first - last` entries.
    pub fn undo_log(&self, first: i64, last: i64) -> Result<Vec<UndoEntry>> {
        read::undo_log(self, first, last)
    }

    /// The last `n` transactions' `(tid, oids)`, newest first (seeds the
    /// server's invalidation queue).
    pub fn last_invalidations(&self, n: usize) -> Result<Vec<(Tid, Vec<Oid>)>> {
        read::last_invalidations(self, n)
    }

    /// Oids changed by transactions with tid > `after`, and the last tid;
    /// `None` if `after` is older than the oldest transaction kept.
    pub fn invalidations_since(&self, after: Tid) -> Result<Option<(Tid, Vec<Oid>)>> {
        Ok(match self.changed_since(after, SinceBound::NONE)? {
            Since::Changed { tid, oids, .. } => Some((tid, oids)),
            _ => None,
        })
    }

    /// The same within `bound`, scanning back from the end; no lock is
    /// held while it reads, so commits go on meanwhile.
    pub fn changed_since(&self, after: Tid, bound: SinceBound) -> Result<Since> {
        invalidations::changed_since(self, after, bound)
    }

    pub fn new_oids(&self, n: usize) -> Result<Vec<Oid>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let mut max = self.max_oid.lock();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let next = max
                .as_u64()
                .checked_add(1)
                .ok_or_else(|| Error::BadArgument("oid space exhausted".into()))?;
            *max = Oid::from_u64(next);
            out.push(*max);
        }
        Ok(out)
    }

    /// Starts the one commit; assigns the tid (`now.later_than(last)`, or the
    /// explicit tid, which must be > last).
    pub fn tpc_begin(&self, options: BeginOptions) -> Result<Transaction> {
        commit::tpc_begin(self, options)
    }

    /// `serial` is the tid the client read (`Tid::ZERO` for a new object).
    /// When the current tid differs, the conflict is resolved if
    /// `resolve_conflicts` is on and the class is one [`crate::conflict`]
    /// knows (the merged record is stored, the oid goes to `tpc_vote`'s
    /// answer); otherwise `Conflict`.
    pub fn store(&self, txn: &mut Transaction, oid: Oid, serial: Tid, data: &[u8]) -> Result<()> {
        commit::store(self, txn, oid, serial, data)
    }

    /// Like `store`, then moves `blob_file` into the blob directory at vote.
    pub fn store_blob(
        &self,
        txn: &mut Transaction,
        oid: Oid,
        serial: Tid,
        data: &[u8],
        blob_file: &Path,
    ) -> Result<()> {
        commit::store_blob(self, txn, oid, serial, data, blob_file)
    }

    pub fn check_current_serial(&self, txn: &mut Transaction, oid: Oid, serial: Tid) -> Result<()> {
        commit::check_current_serial(self, txn, oid, serial)
    }

    pub fn delete_object(&self, txn: &mut Transaction, oid: Oid, serial: Tid) -> Result<()> {
        commit::delete_object(self, txn, oid, serial)
    }

    pub fn restore(
        &self,
        txn: &mut Transaction,
        oid: Oid,
        serial: Tid,
        data: Option<&[u8]>,
        prev_txn: Option<Tid>,
    ) -> Result<()> {
        commit::restore(self, txn, oid, serial, data, prev_txn)
    }

    /// Transactional undo of the transaction with undo id `id`; returns the
    /// oids it rewrote.
    pub fn undo(&self, txn: &mut Transaction, id: &[u8]) -> Result<Vec<Oid>> {
        undo::undo(self, txn, id)
    }

    /// Writes the transaction with status 'c' (not yet visible); returns the
    /// oids whose conflicts the storage resolved.
    pub fn tpc_vote(&self, txn: &mut Transaction) -> Result<Vec<Oid>> {
        commit::tpc_vote(self, txn)
    }

    /// Seals, fsyncs, publishes; returns the tid and the oids written (for
    /// invalidations). For callers that commit alone; a server calls the
    /// three steps itself so that it can announce what it publishes.
    pub fn tpc_finish(&self, txn: Transaction) -> Result<(Tid, Vec<Oid>)> {
        commit::tpc_finish(self, txn)
    }

    /// Undoes whatever the transaction wrote; never fails on a clean state.
    pub fn tpc_abort(&self, txn: Transaction) {
        commit::tpc_abort(self, txn)
    }

    /// Path of the blob file of `(oid, serial)`; `PosKey` if missing.
    pub fn load_blob(&self, oid: Oid, serial: Tid) -> Result<PathBuf> {
        let blobs = self
            .blobs
            .as_ref()
            .ok_or_else(|| Error::BadArgument("no blob directory configured".into()))?;
        let path = blobs.path_of(oid, serial);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::PosKey(oid))
        }
    }

    /// Where uploads are staged before `store_blob` (`<blob_dir>/tmp`).
    pub fn blob_tmp_dir(&self) -> Option<PathBuf> {
        self.blobs.as_ref().map(|b| b.tmp_dir())
    }

    /// Pack to `pack_time` (a tid), with GC unless `gc` is false.
    pub fn pack(&self, pack_time: Tid, gc: bool) -> Result<()> {
        pack::pack(self, pack_time, gc)
    }

    fn reader<'a>(&'a self, file: &'a File) -> Reader<'a> {
        Reader::new(file, &self.path)
    }

    /// The published end and the file it belongs to, taken together.
    fn snapshot(&self) -> (Arc<File>, u64) {
        let p = self.published.read();
        (Arc::clone(&p.file), p.end)
    }

    /// Position of the current record of `oid` and the file it is in, or
    /// `PosKey`.
    fn locate(&self, oid: Oid) -> Result<(u64, Arc<File>)> {
        let p = self.published.read();
        let pos = p.index.get(oid).ok_or(Error::PosKey(oid))?;
        Ok((pos, Arc::clone(&p.file)))
    }

    /// Saves the index as of the last finished transaction. Taken under
    /// the read lock so the position and the entries agree.
    fn save_index(&self) -> Result<()> {
        let published = self.published.read();
        let path = index_file::index_path(&self.path);
        index_file::write(&path, published.end, &published.index).map_err(|source| Error::Io {
            context: format!("writing {}", path.display()),
            source,
        })
    }
}
