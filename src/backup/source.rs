//! The consistency point of a backup: the source Data.fs opened once, read
//! up to the end of its last *committed* transaction, with the fsIndex at
//! that point and the blob revisions its records name.
//!
//! A running server appends a voted transaction with status 'c' and flips
//! the byte to ' ' only in tpc_finish; it never rewrites committed bytes,
//! and pack replaces the file by rename. So the bytes `[0, end)` of the one
//! descriptor we hold do not change under us, whatever the server does,
//! and a voted-but-unfinished tail (which repozo would copy if it raced a
//! vote, since it copies what the scan saw at open) is never included.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use tracing::{debug, info};

use super::{io, Error, Result};
use crate::ids::{Oid, Tid};
use crate::storage::format::{
    Reader, SeqReader, DATA_HEADER_LEN, MAGIC, MAGIC_PY2, SCAN_BUFFER, STATUS_UNDONE,
};
use crate::storage::index::Index;
use crate::storage::{index_file, scan};

/// The source file at one committed transaction.
pub struct Snapshot {
    pub path: PathBuf,
    pub file: File,
    /// End of the last committed transaction: what a backup copies to.
    pub end: u64,
    /// That transaction's tid (`None` for a file with no transactions).
    pub tid: Option<Tid>,
    pub index: Index,
    identity: (u64, u64),
}

impl Snapshot {
    /// Opens `path` and finds its committed end. `base` is the index of a
    /// previous backup that ended at its `pos`, which spares re-reading the
    /// prefix when it still matches the file.
    pub fn take(path: &Path, base: Option<(u64, Index)>) -> Result<Snapshot> {
        let file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
        let meta = file
            .metadata()
            .map_err(io(format!("inspecting {}", path.display())))?;
        let mut magic = [0u8; 4];
        if file.read_exact_at(&mut magic, 0).is_err() || (&magic != MAGIC && &magic != MAGIC_PY2) {
            return Err(Error::NotFileStorage(path.to_path_buf()));
        }
        let size = meta.len();
        let reader = Reader::new(&file, path);
        let saved = || -> Option<(u64, Index)> {
            index_file::read(&index_file::index_path(path))
                .ok()
                .flatten()
        };
        let (start, mut index) = [base, saved()]
            .into_iter()
            .flatten()
            .find(|(pos, index)| scan::check_sanity(reader, size, index, *pos).is_some())
            .unwrap_or((4, Index::new()));
        debug!(path = %path.display(), start, size, "scanning for the last committed transaction");
        let progress = crate::progress::Progress::new();
        let _report = crate::progress::Reporter::auto(&progress);
        let scanned = scan::scan(reader, size, start, &mut index, Tid::ZERO, &progress)?;
        if let Some(tail) = scanned.tail {
            info!(
                path = %path.display(),
                pos = tail.pos,
                "a transaction is being committed at the end of the file; the backup stops before it"
            );
        }
        let end = scanned.end;
        let tid = if end > 4 {
            let tlen = reader.u64_at(end - 8)?;
            let tpos = end.checked_sub(tlen + 8).ok_or_else(|| {
                reader.corrupt(end - 8, "transaction length points before the file")
            })?;
            Some(reader.txn_header(tpos)?.tid)
        } else {
            None
        };
        Ok(Snapshot {
            path: path.to_path_buf(),
            file,
            end,
            tid,
            index,
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// Whether the path still names the file we read (pack renames a new
    /// file over it, and its blob cleanup may then remove revisions we
    /// were about to copy).
    pub fn still_current(&self) -> bool {
        std::fs::metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.identity)
            .unwrap_or(false)
    }

    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.file, &self.path)
    }

    /// The `(oid, tid)` of every blob revision recorded in `[from, end)`,
    /// the names of the blob files that range needs. A record that points
    /// back to a blob's data (undo) names a file of its own tid, as ZODB's
    /// undo copies the blob file to the new revision.
    pub fn blob_revisions(&self, from: u64) -> Result<Vec<(Oid, Tid)>> {
        let r = self.reader();
        let mut seq = SeqReader::new(r, SCAN_BUFFER, self.end);
        let mut found = Vec::new();
        let mut pos = from;
        while pos < self.end {
            let h = seq.txn_header(pos)?;
            let tend = pos + h.tlen;
            if h.status != STATUS_UNDONE {
                let mut rpos = pos + h.header_len();
                while rpos < tend {
                    let d = seq.data_header(rpos)?;
                    let is_blob = if d.plen > 0 {
                        let n = d.plen.min(PREFIX) as usize;
                        is_blob_pickle(seq.get(rpos + DATA_HEADER_LEN, n)?)
                    } else {
                        let back = seq.u64_at(rpos + DATA_HEADER_LEN)?;
                        match r.load_back(d.oid, back)? {
                            Some((data, _, _)) => is_blob_pickle(&data),
                            None => false,
                        }
                    };
                    if is_blob {
                        found.push((d.oid, d.tid));
                    }
                    rpos += d.record_len();
                }
            }
            pos = tend + 8;
        }
        Ok(found)
    }
}

/// Enough of a pickle to see its class reference.
const PREFIX: u64 = 96;

/// ZODB's `is_blob_record` in effect: the record's class is
/// `ZODB.blob.Blob`, as a GLOBAL (protocols 0-3) or STACK_GLOBAL (4+).
pub fn is_blob_pickle(data: &[u8]) -> bool {
    let head = &data[..data.len().min(PREFIX as usize)];
    let contains = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    contains(b"cZODB.blob\nBlob\n") || contains(b"\x8c\x09ZODB.blob\x94\x8c\x04Blob\x94\x93")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_blob_class_pickle() {
        // spec §10: the data record of a Blob, as ZODB 6 writes it.
        let rec = b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.";
        assert!(is_blob_pickle(rec));
        assert!(!is_blob_pickle(
            b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00."
        ));
        assert!(!is_blob_pickle(b"\x80\x03cZODB.blobby\nBlob\nq\x00."));
    }
}
