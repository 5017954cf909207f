//! The write path: `tpc_begin` → store/restore/delete/undo (records go to
//! an in-memory buffer, positioned as if the header were already at the end
//! of the file) → `tpc_vote` (append with status 'c', not yet visible) →
//! `seal` (flip the status byte, free the commit slot) → durability and
//! publication ([`super::group_commit`]), or `tpc_abort` (truncate). One
//! transaction at a time between `tpc_begin` and `seal`, enforced by `busy`.
//! The write side sees sealed transactions that are not yet published:
//! conflict checks, the next tid and where the next transaction goes.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::format::{encode_txn_header, DataHeader, DATA_HEADER_LEN, STATUS_DONE, STATUS_PACKED};
use super::group_commit::{self, SealTicket, Sealed};
use super::transaction::{remove_blobs, BusyGuard, Transaction};
use super::{BeginOptions, Error, FileStorage, Result};
use crate::ids::{Oid, Tid};

pub(super) fn check_owner(s: &FileStorage, txn: &Transaction) -> Result<()> {
    if txn.owner != s as *const FileStorage as usize {
        return Err(Error::BadArgument(
            "transaction belongs to another storage".into(),
        ));
    }
    if txn.voted {
        return Err(Error::BadArgument("transaction already voted".into()));
    }
    Ok(())
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// How long a commit waits for a pack to install the packed file.
const PACK_SWAP_WAIT: Duration = Duration::from_secs(60);

/// Takes the commit slot. Another transaction holding it is the caller's
/// bug (the server serializes commits); a pack holding it for its final
/// copy and rename is waited for.
fn take_busy(s: &FileStorage) -> bool {
    let deadline = Instant::now() + PACK_SWAP_WAIT;
    loop {
        if s.busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return true;
        }
        if !s.pack_holds_busy.load(Ordering::SeqCst) || Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub(super) fn tpc_begin(s: &FileStorage, options: BeginOptions) -> Result<Transaction> {
    if s.read_only {
        return Err(Error::ReadOnly);
    }
    if s.closed.load(Ordering::SeqCst) {
        return Err(Error::BadArgument("storage is closed".into()));
    }
    let meta = options.meta;
    for (what, v) in [
        ("user", &meta.user),
        ("description", &meta.description),
        ("extension", &meta.extension),
    ] {
        if v.len() > 0xffff {
            return Err(Error::BadArgument(format!(
                "transaction {what} is longer than 65535 bytes"
            )));
        }
    }
    let status = options.status.unwrap_or(STATUS_DONE);
    if status != STATUS_DONE && status != STATUS_PACKED {
        return Err(Error::BadArgument(format!(
            "transaction status {:?} cannot be committed",
            char::from(status)
        )));
    }
    s.group.check_usable(s)?;
    if !take_busy(s) {
        return Err(Error::TransactionInProgress);
    }
    let busy = BusyGuard(Arc::clone(&s.busy));
    let (file, end, last) = group_commit::write_tail(s);
    let mut last_begun = s.last_begun.lock();
    let tid = match options.tid {
        Some(tid) if tid <= last => {
            return Err(Error::TidNotIncreasing {
                requested: tid,
                last,
            })
        }
        Some(tid) => tid,
        None => Tid::now().later_than((*last_begun).max(last)),
    };
    *last_begun = tid;
    drop(last_begun);
    // A voted transaction whose owner vanished without abort left bytes
    // past the end; nothing reads them, and the next vote must not mix.
    let file_len = file
        .metadata()
        .map_err(io(format!("stat {}", s.path.display())))?
        .len();
    if file_len > end {
        warn!(path = %s.path.display(), end, file_len, "dropping unfinished transaction data past the end");
        file.set_len(end)
            .map_err(io(format!("truncating {}", s.path.display())))?;
    }
    let thl = 23 + (meta.user.len() + meta.description.len() + meta.extension.len()) as u64;
    Ok(Transaction {
        tid,
        owner: s as *const FileStorage as usize,
        file,
        meta,
        status,
        tpos: end,
        thl,
        buf: Vec::new(),
        tindex: HashMap::new(),
        oids: Vec::new(),
        pending_blobs: Vec::new(),
        installed_blobs: Vec::new(),
        voted: false,
        resolved: Vec::new(),
        _busy: busy,
    })
}

fn bump_max_oid(s: &FileStorage, oid: Oid) {
    let mut max = s.max_oid.lock();
    if oid > *max {
        *max = oid;
    }
}

/// The committed tid of `oid` and its record position, sealed
/// transactions included.
fn committed(s: &FileStorage, oid: Oid) -> Result<Option<(u64, Tid)>> {
    let Some((pos, file)) = group_commit::locate_written(s, oid) else {
        return Ok(None);
    };
    let h = s.reader(&file).data_header_of(pos, oid)?;
    Ok(Some((pos, h.tid)))
}

pub(super) fn store(
    s: &FileStorage,
    txn: &mut Transaction,
    oid: Oid,
    serial: Tid,
    data: &[u8],
) -> Result<()> {
    check_owner(s, txn)?;
    if data.is_empty() {
        return Err(Error::BadArgument(
            "an object's pickle cannot be empty".into(),
        ));
    }
    bump_max_oid(s, oid);
    let old = committed(s, oid)?;
    let mut resolved = None;
    if let Some((_, committed)) = old {
        if committed != serial {
            resolved = Some(resolve_conflict(s, oid, committed, serial, data)?);
        }
    }
    let data = resolved.as_deref().unwrap_or(data);
    let prev = old.map_or(0, |(pos, _)| pos);
    let h = DataHeader {
        oid,
        tid: txn.tid,
        prev,
        tloc: txn.tpos,
        vlen: 0,
        plen: data.len() as u64,
    };
    txn.append(s, h, Some(data), 0)?;
    if resolved.is_some() {
        txn.resolved.push(oid);
    }
    Ok(())
}

/// FileStorage's `tryToResolveConflict` for a store based on `serial`
/// while `committed` is current: the merged record, or the conflict.
fn resolve_conflict(
    s: &FileStorage,
    oid: Oid,
    committed: Tid,
    serial: Tid,
    data: &[u8],
) -> Result<Vec<u8>> {
    let conflict = Error::Conflict {
        oid,
        committed,
        serial,
    };
    if !s.options.resolve_conflicts {
        return Err(conflict);
    }
    // A revision packed away or a deleted object cannot be merged.
    let Some((pos, file)) = group_commit::locate_written(s, oid) else {
        return Err(conflict);
    };
    let load = |tid| super::read::load_serial_at(s, &file, pos, oid, tid);
    let (Ok(old), Ok(current)) = (load(serial), load(committed)) else {
        return Err(conflict);
    };
    crate::conflict::try_resolve(oid, &old, &current, data).map_err(|_| conflict)
}

pub(super) fn store_blob(
    s: &FileStorage,
    txn: &mut Transaction,
    oid: Oid,
    serial: Tid,
    data: &[u8],
    blob_file: &Path,
) -> Result<()> {
    if s.blobs.is_none() {
        return Err(Error::BadArgument("no blob directory configured".into()));
    }
    if !blob_file.is_file() {
        return Err(Error::BadArgument(format!(
            "blob file {} does not exist",
            blob_file.display()
        )));
    }
    store(s, txn, oid, serial, data)?;
    txn.pending_blobs.push((oid, blob_file.to_path_buf()));
    Ok(())
}

pub(super) fn check_current_serial(
    s: &FileStorage,
    txn: &mut Transaction,
    oid: Oid,
    serial: Tid,
) -> Result<()> {
    check_owner(s, txn)?;
    let (pos, file) = group_commit::locate_written(s, oid).ok_or(Error::PosKey(oid))?;
    let committed = super::read::get_tid_at(s, &file, pos, oid)?;
    if committed != serial {
        return Err(Error::ReadConflict {
            oid,
            committed,
            serial,
        });
    }
    Ok(())
}

pub(super) fn delete_object(
    s: &FileStorage,
    txn: &mut Transaction,
    oid: Oid,
    serial: Tid,
) -> Result<()> {
    check_owner(s, txn)?;
    let (prev, committed) = committed(s, oid)?.ok_or(Error::PosKey(oid))?;
    if committed != serial {
        return Err(Error::Conflict {
            oid,
            committed,
            serial,
        });
    }
    let h = DataHeader {
        oid,
        tid: txn.tid,
        prev,
        tloc: txn.tpos,
        vlen: 0,
        plen: 0,
    };
    txn.append(s, h, None, 0)?;
    Ok(())
}

pub(super) fn restore(
    s: &FileStorage,
    txn: &mut Transaction,
    oid: Oid,
    serial: Tid,
    data: Option<&[u8]>,
    prev_txn: Option<Tid>,
) -> Result<()> {
    check_owner(s, txn)?;
    if data.is_some_and(|d| d.is_empty()) {
        return Err(Error::BadArgument(
            "an object's pickle cannot be empty".into(),
        ));
    }
    bump_max_oid(s, oid);
    // prev_txn is a hint: the copy's source may have been packed.
    let back = match prev_txn {
        Some(prev_txn) => match super::read::txn_find(s, prev_txn)? {
            Some(tpos) => data_find(s, txn, tpos, oid, data)?,
            None => 0,
        },
        None => 0,
    };
    let prev = group_commit::locate_written(s, oid).map_or(0, |(pos, _)| pos);
    let payload = if back != 0 { None } else { data };
    let plen = payload.map_or(0, |d| d.len() as u64);
    let h = DataHeader {
        oid,
        tid: serial,
        prev,
        tloc: txn.tpos,
        vlen: 0,
        plen,
    };
    txn.append(s, h, payload, back)?;
    Ok(())
}

/// Python's `_data_find`: the position to point back to for `oid` in the
/// transaction at `tpos`: its (last) record there when that is a back
/// pointer or holds exactly `data`; 0 when there is nothing to share.
fn data_find(
    s: &FileStorage,
    txn: &Transaction,
    tpos: u64,
    oid: Oid,
    data: Option<&[u8]>,
) -> Result<u64> {
    let r = s.reader(&txn.file);
    let th = r.txn_header(tpos)?;
    let tend = tpos + th.tlen;
    let mut pos = tpos + th.header_len();
    let mut found = None;
    while pos < tend {
        let h = r.data_header(pos)?;
        if h.oid == oid {
            found = Some((pos, h));
        }
        pos += h.record_len();
    }
    let Some((pos, h)) = found else { return Ok(0) };
    if h.plen == 0 {
        // A back pointer (or deletion) itself: ZODB 6 chains to it.
        return Ok(pos);
    }
    match data {
        Some(d) if d.len() as u64 == h.plen && r.read_vec(pos + DATA_HEADER_LEN, h.plen)? == d => {
            Ok(pos)
        }
        _ => Ok(0),
    }
}

pub(super) fn tpc_vote(s: &FileStorage, txn: &mut Transaction) -> Result<Vec<Oid>> {
    if txn.owner != s as *const FileStorage as usize {
        return Err(Error::BadArgument(
            "transaction belongs to another storage".into(),
        ));
    }
    if txn.voted {
        return Ok(Vec::new());
    }
    let tlen = txn.thl + txn.buf.len() as u64;
    let header = encode_txn_header(txn.tid, tlen, super::format::STATUS_CHECKPOINT, &txn.meta);
    let write = || -> std::io::Result<()> {
        txn.file.write_all_at(&header, txn.tpos)?;
        txn.file.write_all_at(&txn.buf, txn.tpos + txn.thl)?;
        txn.file.write_all_at(&tlen.to_be_bytes(), txn.tpos + tlen)
    };
    if let Err(source) = write() {
        // A full disk must not leave a turd at the end.
        let _ = txn.file.set_len(txn.tpos);
        return Err(Error::Io {
            context: format!("writing transaction to {}", s.path.display()),
            source,
        });
    }
    if let Some(blobs) = &s.blobs {
        for (oid, from) in std::mem::take(&mut txn.pending_blobs) {
            match blobs.install(&from, oid, txn.tid) {
                Ok(path) => txn.installed_blobs.push(path),
                Err(e) => {
                    let _ = txn.file.set_len(txn.tpos);
                    remove_blobs(&mut txn.installed_blobs);
                    return Err(e);
                }
            }
        }
    }
    txn.voted = true;
    Ok(txn.resolved.clone())
}

/// Writes the final status byte and queues the transaction for the shared
/// fsync; dropping the transaction here frees the commit slot, so the next
/// one can be written while this one waits for the disk. On failure the
/// transaction is rolled back (truncated).
pub(super) fn seal(s: &FileStorage, mut txn: Transaction, tag: u64) -> Result<SealTicket> {
    if !txn.voted {
        tpc_vote(s, &mut txn)?;
    }
    if let Err(source) = txn.file.write_all_at(&[txn.status], txn.tpos + 16) {
        error!(path = %s.path.display(), %source, "could not seal a transaction; rolling it back");
        let _ = txn.file.set_len(txn.tpos);
        remove_blobs(&mut txn.installed_blobs);
        return Err(Error::Io {
            context: format!("finishing transaction in {}", s.path.display()),
            source,
        });
    }
    let sealed = Sealed {
        tid: txn.tid,
        tag,
        tpos: txn.tpos,
        end: txn.here() + 8,
        tindex: std::mem::take(&mut txn.tindex),
        oids: std::mem::take(&mut txn.oids),
        blobs: std::mem::take(&mut txn.installed_blobs),
    };
    Ok(group_commit::enqueue(s, sealed))
}

/// The whole finish for a caller that commits alone: seal, fsync,
/// publish. Returns the transaction's tid and oids (whatever else the
/// same publication made visible is not reported).
pub(super) fn tpc_finish(s: &FileStorage, txn: Transaction) -> Result<(Tid, Vec<Oid>)> {
    let ticket = seal(s, txn, 0)?;
    group_commit::wait_durable(s, &ticket)?;
    group_commit::publish_durable(s);
    Ok((ticket.tid, ticket.oids))
}

pub(super) fn tpc_abort(s: &FileStorage, mut txn: Transaction) {
    if txn.voted {
        if let Err(e) = txn.file.set_len(txn.tpos) {
            // Harmless for readers (they never look past the published
            // end); the next tpc_begin truncates again.
            error!(path = %s.path.display(), %e, "could not truncate an aborted transaction");
        }
    }
    remove_blobs(&mut txn.installed_blobs);
    for (_, upload) in txn.pending_blobs.drain(..) {
        let _ = std::fs::remove_file(upload);
    }
}
