//! The transaction being committed: its records, byte for byte as they
//! will land in the file, the positions they will have, and its blob files.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracing::warn;

use super::format::{DataHeader, DATA_HEADER_LEN, MAX_POS};
use super::{Error, FileStorage, Result, TxnMeta};
use crate::ids::{Oid, Tid};

/// Clears the storage's busy flag however the transaction ends, so a
/// dropped `Transaction` (a client that vanished) never wedges commits.
pub(super) struct BusyGuard(pub(super) Arc<AtomicBool>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A transaction between `tpc_begin` and `tpc_finish`/`tpc_abort`; owned by
/// the committing connection. Its tid is fixed at `tpc_begin`.
pub struct Transaction {
    pub tid: Tid,
    /// Identifies the storage that began it (its address).
    pub(super) owner: usize,
    /// The data file as of `tpc_begin`; a pack cannot replace it while a
    /// transaction is in progress.
    pub(super) file: Arc<File>,
    pub(super) meta: TxnMeta,
    pub(super) status: u8,
    /// Where the header will be written: the end of the file at begin.
    pub(super) tpos: u64,
    /// Header length (23 + user + description + extension).
    pub(super) thl: u64,
    /// The data records, byte for byte as they will follow the header.
    pub(super) buf: Vec<u8>,
    /// oid → absolute position of its (last) record in this transaction.
    pub(super) tindex: HashMap<Oid, u64>,
    /// Oids in first-write order (the invalidation list).
    pub(super) oids: Vec<Oid>,
    /// Uploaded blob files to install at vote.
    pub(super) pending_blobs: Vec<(Oid, PathBuf)>,
    /// Blob files installed (removed again on abort).
    pub(super) installed_blobs: Vec<PathBuf>,
    pub(super) voted: bool,
    /// Oids whose write conflicts the storage resolved (`tpc_vote`'s answer).
    pub(super) resolved: Vec<Oid>,
    pub(super) _busy: BusyGuard,
}

impl Transaction {
    /// Absolute position the next record will have.
    pub(super) fn here(&self) -> u64 {
        self.tpos + self.thl + self.buf.len() as u64
    }

    pub(super) fn data_file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    pub(super) fn tpos(&self) -> u64 {
        self.tpos
    }

    pub(super) fn tindex_get(&self, oid: Oid) -> Option<u64> {
        self.tindex.get(&oid).copied()
    }

    /// The header and payload (pickle or back pointer) of a record of this
    /// transaction at absolute position `pos`.
    pub(super) fn record_at(&self, pos: u64) -> Option<(DataHeader, &[u8])> {
        let off = usize::try_from(pos.checked_sub(self.tpos + self.thl)?).ok()?;
        let head = self.buf.get(off..off + DATA_HEADER_LEN as usize)?;
        let mut a = [0u8; DATA_HEADER_LEN as usize];
        a.copy_from_slice(head);
        let h = DataHeader::parse(&a);
        let body_len = if h.plen == 0 {
            8
        } else {
            usize::try_from(h.plen).ok()?
        };
        let start = off + DATA_HEADER_LEN as usize;
        Some((h, self.buf.get(start..start + body_len)?))
    }

    /// Appends a record; `payload` is the pickle, or `None` for a back
    /// pointer to `back` (0 = deletion).
    pub(super) fn append(
        &mut self,
        s: &FileStorage,
        h: DataHeader,
        payload: Option<&[u8]>,
        back: u64,
    ) -> Result<u64> {
        let here = self.here();
        let len = DATA_HEADER_LEN + payload.map_or(8, |p| p.len() as u64);
        let end = here + len + 8;
        if end > MAX_POS {
            return Err(Error::BadArgument(
                "the data file would exceed 2**48 bytes".into(),
            ));
        }
        if let Some(quota) = s.options.quota {
            if here > quota {
                return Err(Error::Quota { size: here, quota });
            }
        }
        self.buf.extend_from_slice(&h.encode());
        match payload {
            Some(p) => self.buf.extend_from_slice(p),
            None => self.buf.extend_from_slice(&back.to_be_bytes()),
        }
        if self.tindex.insert(h.oid, here).is_none() {
            self.oids.push(h.oid);
        }
        Ok(here)
    }

    /// Rolls the buffer back to a previous length (a failed multi-record
    /// operation such as undo leaves nothing behind).
    pub(super) fn rollback(&mut self, len: usize, tindex: HashMap<Oid, u64>, oids: usize) {
        self.buf.truncate(len);
        self.tindex = tindex;
        self.oids.truncate(oids);
    }

    pub(super) fn snapshot(&self) -> (usize, HashMap<Oid, u64>, usize) {
        (self.buf.len(), self.tindex.clone(), self.oids.len())
    }

    pub(super) fn add_installed_blob(&mut self, path: PathBuf) {
        self.installed_blobs.push(path);
    }

    pub(super) fn installed_count(&self) -> usize {
        self.installed_blobs.len()
    }

    pub(super) fn remove_installed_since(&mut self, n: usize) {
        let mut extra = self
            .installed_blobs
            .split_off(n.min(self.installed_blobs.len()));
        remove_blobs(&mut extra);
    }
}

pub(super) fn remove_blobs(paths: &mut Vec<PathBuf>) {
    for p in paths.drain(..) {
        if let Err(e) = std::fs::remove_file(&p) {
            warn!(path = %p.display(), %e, "could not remove blob file of an aborted transaction");
        }
    }
}
