//! Transactional undo (spec §8.2): a new transaction whose records point
//! back at the revisions before the undone transaction's. Nothing already
//! in the file changes. Per-oid failures are collected like Python's
//! `MultipleUndoErrors`, and a failed undo leaves the transaction as it was.

use base64::Engine;

use super::blob::is_blob_record;
use super::format::{DataHeader, STATUS_DONE};
use super::transaction::Transaction;
use super::{Error, FileStorage, Result};
use crate::ids::{Oid, Tid};

fn undo_error(reason: &str) -> Error {
    Error::Undo(vec![(None, reason.to_string())])
}

/// What to write for one undone record: a pickle or a back pointer, and the
/// `prev` of the new record.
struct UndoRecord {
    back: u64,
    prev: u64,
    /// A merged pickle when the undo needed conflict resolution.
    data: Option<Vec<u8>>,
}

pub(super) fn undo(s: &FileStorage, txn: &mut Transaction, id: &[u8]) -> Result<Vec<Oid>> {
    super::commit::check_owner(s, txn)?;
    let id = id.strip_suffix(b"\n").unwrap_or(id);
    let tid = base64::engine::general_purpose::STANDARD
        .decode(id)
        .ok()
        .and_then(|b| Tid::from_slice(&b))
        .ok_or_else(|| undo_error("Invalid transaction id"))?;
    let tpos =
        super::read::txn_find(s, tid)?.ok_or_else(|| undo_error("Invalid transaction id"))?;
    let file = txn.data_file();
    let r = s.reader(&file);
    let th = r.txn_header(tpos)?;
    if th.status != STATUS_DONE {
        return Err(undo_error("non-undoable transaction"));
    }
    let snapshot = txn.snapshot();
    let installed_before = txn.installed_count();
    let mut failures: Vec<(Oid, String)> = Vec::new();
    let mut rewritten: Vec<Oid> = Vec::new();
    let tend = tpos + th.tlen;
    let mut pos = tpos + th.header_len();
    let outcome = (|| -> Result<()> {
        while pos < tend {
            let h = r.data_header(pos)?;
            // A later record of the same oid gets a second chance.
            failures.retain(|(oid, _)| *oid != h.oid);
            match undo_record(s, txn, h.oid, pos, h.prev)? {
                Err(reason) => failures.push((h.oid, reason)),
                Ok(rec) => {
                    if rec.data.is_none() {
                        copy_blob(s, txn, h.oid, rec.back)?;
                    }
                    let new = DataHeader {
                        oid: h.oid,
                        tid: txn.tid,
                        prev: rec.prev,
                        tloc: txn.tpos(),
                        vlen: 0,
                        plen: rec.data.as_ref().map_or(0, |d| d.len() as u64),
                    };
                    txn.append(s, new, rec.data.as_deref(), rec.back)?;
                    if !rewritten.contains(&h.oid) {
                        rewritten.push(h.oid);
                    }
                }
            }
            pos += h.record_len();
            if pos > tend {
                return Err(undo_error("non-undoable transaction"));
            }
        }
        Ok(())
    })();
    if outcome.is_err() || !failures.is_empty() {
        let (len, tindex, oids) = snapshot;
        txn.rollback(len, tindex, oids);
        txn.remove_installed_since(installed_before);
    }
    outcome?;
    if !failures.is_empty() {
        return Err(Error::Undo(
            failures
                .into_iter()
                .map(|(oid, reason)| (Some(oid), reason))
                .collect(),
        ));
    }
    Ok(rewritten)
}

/// Python's `_transactionalUndoRecord` without conflict resolution: the
/// inner `Err` is a per-oid reason, the outer one an I/O or format error.
fn undo_record(
    s: &FileStorage,
    txn: &Transaction,
    oid: Oid,
    pos: u64,
    pre: u64,
) -> Result<std::result::Result<UndoRecord, String>> {
    let file = txn.data_file();
    let r = s.reader(&file);
    let in_txn = txn.tindex_get(oid);
    let ipos = super::group_commit::locate_written(s, oid).map_or(0, |(pos, _)| pos);
    let tipos = in_txn.unwrap_or(ipos);
    // (data undone, current data) when they differ and must be merged.
    let mut merge = None;
    if tipos != pos {
        // Current data: where it lives, and the bytes if held inline.
        let (cdataptr, mut current) = match in_txn.and_then(|p| txn.record_at(p)) {
            Some((h, body)) if h.plen > 0 => (tipos, Some(body.to_vec())),
            Some((_, body)) => (
                u64::from_be_bytes(<[u8; 8]>::try_from(body).unwrap_or([0; 8])),
                None,
            ),
            None => {
                let h = r.data_header_of(ipos, oid)?;
                if h.plen > 0 {
                    (
                        ipos,
                        Some(r.read_vec(ipos + super::format::DATA_HEADER_LEN, h.plen)?),
                    )
                } else {
                    (r.back_of(ipos)?, None)
                }
            }
        };
        if cdataptr != pos {
            let Some((undone, _, _)) = r.load_back(oid, pos)? else {
                return Ok(Err("_loadBack() failed".into()));
            };
            if current.is_none() {
                current = r.load_back(oid, cdataptr)?.map(|(d, _, _)| d);
                if current.is_none() {
                    return Ok(Err("_loadBack() failed".into()));
                }
            }
            if current.as_deref() != Some(undone.as_slice()) {
                if pre == 0 {
                    return Ok(Err(
                        "Can't undo an add transaction followed by conflicting transactions."
                            .into(),
                    ));
                }
                merge = current.map(|c| (undone, c));
            }
        }
    }
    let Some((undone, current)) = merge.filter(|_| pre != 0) else {
        return Ok(Ok(UndoRecord {
            back: pre,
            prev: ipos,
            data: None,
        }));
    };
    // Like ZODB: merge "back to before the undone txn" into the current
    // state, when the class has a resolver (BTrees, Length).
    let Some((before, _, _)) = r.load_back(oid, pre)? else {
        return Ok(Err("_loadBack() failed".into()));
    };
    if s.options.resolve_conflicts {
        if let Ok(merged) = crate::conflict::try_resolve(oid, &undone, &current, &before) {
            return Ok(Ok(UndoRecord {
                back: 0,
                prev: ipos,
                data: Some(merged),
            }));
        }
    }
    Ok(Err("Some data were modified by a later transaction".into()))
}

/// Undoing a blob change restores the older blob under the new tid.
fn copy_blob(s: &FileStorage, txn: &mut Transaction, oid: Oid, back: u64) -> Result<()> {
    let Some(blobs) = &s.blobs else { return Ok(()) };
    if back == 0 {
        return Ok(());
    }
    let file = txn.data_file();
    let Some((data, serial, _)) = s.reader(&file).load_back(oid, back)? else {
        return Ok(());
    };
    if is_blob_record(&data) {
        if let Some(path) = blobs.copy_revision(oid, serial, txn.tid)? {
            txn.add_installed_blob(path);
        }
    }
    Ok(())
}
