//! Reads of finished transactions: load, loadBefore, loadSerial, history,
//! record_iternext, undoLog, and the invalidation summaries. Each looks up
//! a position under the index's read lock, then reads without any lock.

use base64::Engine;
use rustc_hash::FxHashSet;

use super::format::{
    Peek, PeekBuf, Reader, SeqReader, PEEK, STATUS_DONE, STATUS_PACKED, TXN_HEADER_LEN,
};
use super::{Error, FileStorage, HistoryEntry, IterNext, LoadBefore, Result, UndoEntry};
use crate::ids::{Oid, Tid};

/// The pickle of a peeked record, following back pointers.
fn data_of(r: Reader<'_>, oid: Oid, pos: u64, p: &Peek<'_>) -> Result<Vec<u8>> {
    if p.h.plen > 0 {
        return p.data(&r);
    }
    let back = p.back(&r)?;
    if back >= pos {
        return Err(r.corrupt(pos, format!("back pointer {back} does not point backwards")));
    }
    match r.load_back(oid, back)? {
        Some((data, _, _)) => Ok(data),
        None => Err(Error::PosKey(oid)),
    }
}

pub(super) fn load(s: &FileStorage, oid: Oid) -> Result<(Vec<u8>, Tid)> {
    let (pos, file) = s.locate(oid)?;
    let r = s.reader(&file);
    let mut buf: PeekBuf = [0; PEEK];
    let p = r.peek(pos, oid, &mut buf)?;
    Ok((data_of(r, oid, pos, &p)?, p.h.tid))
}

pub(super) fn load_before(s: &FileStorage, oid: Oid, before: Tid) -> Result<Option<LoadBefore>> {
    let (mut pos, file) = s.locate(oid)?;
    let r = s.reader(&file);
    let mut buf: PeekBuf = [0; PEEK];
    let mut end = None;
    loop {
        let p = r.peek(pos, oid, &mut buf)?;
        if p.h.tid < before {
            let data = data_of(r, oid, pos, &p)?;
            return Ok(Some(LoadBefore {
                data,
                start: p.h.tid,
                end,
            }));
        }
        if p.h.prev == 0 {
            return Ok(None);
        }
        if p.h.prev >= pos {
            return Err(r.corrupt(pos, "previous-record pointer does not point backwards"));
        }
        end = Some(p.h.tid);
        pos = p.h.prev;
    }
}

pub(super) fn load_serial(s: &FileStorage, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
    let (pos, file) = s.locate(oid)?;
    load_serial_at(s, &file, pos, oid, serial)
}

/// `load_serial` walking back from the record at `pos` (the write side
/// starts at sealed transactions readers do not see yet).
pub(super) fn load_serial_at(
    s: &FileStorage,
    file: &std::fs::File,
    mut pos: u64,
    oid: Oid,
    serial: Tid,
) -> Result<Vec<u8>> {
    let r = s.reader(file);
    let mut buf: PeekBuf = [0; PEEK];
    loop {
        let p = r.peek(pos, oid, &mut buf)?;
        if p.h.tid == serial {
            return data_of(r, oid, pos, &p);
        }
        if p.h.tid < serial || p.h.prev == 0 {
            return Err(Error::PosKey(oid));
        }
        if p.h.prev >= pos {
            return Err(r.corrupt(pos, "previous-record pointer does not point backwards"));
        }
        pos = p.h.prev;
    }
}

pub(super) fn get_tid(s: &FileStorage, oid: Oid) -> Result<Tid> {
    let (pos, file) = s.locate(oid)?;
    get_tid_at(s, &file, pos, oid)
}

/// `get_tid` of the record at `pos`.
pub(super) fn get_tid_at(s: &FileStorage, file: &std::fs::File, pos: u64, oid: Oid) -> Result<Tid> {
    let r = s.reader(file);
    let mut buf: PeekBuf = [0; PEEK];
    let p = r.peek(pos, oid, &mut buf)?;
    if p.h.plen == 0 && p.back(&r)? == 0 {
        return Err(Error::PosKey(oid));
    }
    Ok(p.h.tid)
}

pub(super) fn history(s: &FileStorage, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>> {
    let (mut pos, file) = s.locate(oid)?;
    let r = s.reader(&file);
    let mut out = Vec::new();
    while out.len() < size {
        let h = r.data_header_of(pos, oid)?;
        let th = r.txn_header(h.tloc)?;
        let meta = r.txn_meta(h.tloc, &th)?;
        out.push(HistoryEntry {
            tid: h.tid,
            meta,
            size: h.plen,
        });
        if h.prev == 0 {
            break;
        }
        if h.prev >= pos {
            return Err(r.corrupt(pos, "previous-record pointer does not point backwards"));
        }
        pos = h.prev;
    }
    Ok(out)
}

pub(super) fn record_iternext(s: &FileStorage, next: Option<Oid>) -> Result<Option<IterNext>> {
    let (oid, following) = {
        let p = s.published.read();
        let Some((oid, _)) = p.index.first_from(next.unwrap_or(Oid::ZERO)) else {
            return Ok(None);
        };
        (oid, p.index.first_after(oid).map(|(o, _)| o))
    };
    let (data, tid) = load(s, oid)?;
    Ok(Some((oid, tid, data, following)))
}

/// Walks transactions backwards from the published end via trailers,
/// calling `f(pos, header)` until it returns false or the file start.
pub(super) fn walk_back(
    s: &FileStorage,
    f: impl FnMut(Reader<'_>, u64, &super::format::TxnHeader) -> Result<bool>,
) -> Result<()> {
    let (file, end) = s.snapshot();
    walk_back_from(s, &file, end, f)
}

/// `walk_back` from `pos` (the write side starts past sealed transactions).
fn walk_back_from(
    s: &FileStorage,
    file: &std::fs::File,
    mut pos: u64,
    mut f: impl FnMut(Reader<'_>, u64, &super::format::TxnHeader) -> Result<bool>,
) -> Result<()> {
    let r = s.reader(file);
    while pos > 4 + TXN_HEADER_LEN {
        let tl = r.u64_at(pos - 8)?;
        let tpos = pos
            .checked_sub(tl)
            .and_then(|p| p.checked_sub(8))
            .filter(|p| *p >= 4)
            .ok_or_else(|| {
                r.corrupt(pos - 8, "transaction trailer points before the file start")
            })?;
        let h = r.txn_header(tpos)?;
        if h.tlen != tl {
            return Err(r.corrupt(tpos, "transaction length does not match its trailer"));
        }
        if !f(r, tpos, &h)? {
            return Ok(());
        }
        pos = tpos;
    }
    Ok(())
}

/// The undo log id of a transaction: base64 of the tid, no newline.
pub fn undo_id(tid: Tid) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(tid.0)
        .into_bytes()
}

pub(super) fn undo_log(s: &FileStorage, first: i64, last: i64) -> Result<Vec<UndoEntry>> {
    let last = if last < 0 { first - last } else { last };
    let mut out = Vec::new();
    let mut i: i64 = 0;
    walk_back(s, |r, tpos, h| {
        if i >= last {
            return Ok(false);
        }
        if h.status == STATUS_PACKED {
            return Ok(false);
        }
        if h.status != STATUS_DONE {
            return Ok(true);
        }
        if i >= first {
            let meta = r.txn_meta(tpos, h)?;
            out.push(UndoEntry {
                id: undo_id(h.tid),
                tid: h.tid,
                meta,
                size: h.tlen,
            });
        }
        i += 1;
        Ok(i < last)
    })?;
    Ok(out)
}

/// Reads of a transaction's records go through a buffer of this size.
const TXN_READ_BUFFER: usize = 256 << 10;

/// The oids of the data records of the transaction at `tpos`, in file order.
pub(super) fn txn_oids(r: Reader<'_>, tpos: u64, h: &super::format::TxnHeader) -> Result<Vec<Oid>> {
    // Lengths from a damaged file can be anything: sums that overflow
    // are damage (found by the `datafs` fuzz target).
    let overflow = || r.corrupt(tpos, "record lengths overflow");
    let tend = tpos.checked_add(h.tlen).ok_or_else(overflow)?;
    let mut pos = tpos.checked_add(h.header_len()).ok_or_else(overflow)?;
    // One read for a whole small transaction, not one per record header:
    // a server's start seeds its invalidation queue with the last
    // transactions, and an import's are thousands of records each.
    let mut seq = SeqReader::new(r, TXN_READ_BUFFER, tend);
    let mut seen = FxHashSet::default();
    let mut oids = Vec::new();
    while pos < tend {
        let d = seq.data_header(pos)?;
        if seen.insert(d.oid) {
            oids.push(d.oid);
        }
        pos = pos.checked_add(d.record_len()).ok_or_else(overflow)?;
    }
    Ok(oids)
}

pub(super) fn last_invalidations(s: &FileStorage, n: usize) -> Result<Vec<(Tid, Vec<Oid>)>> {
    let mut out = Vec::with_capacity(n.min(1024));
    walk_back(s, |r, tpos, h| {
        if out.len() >= n {
            return Ok(false);
        }
        out.push((h.tid, txn_oids(r, tpos, h)?));
        Ok(out.len() < n)
    })?;
    Ok(out)
}

/// Python's `_txn_find`: the position of the transaction with `tid`,
/// searching back from the end the write side sees (undo and restore
/// may name a transaction sealed but not yet published).
pub(super) fn txn_find(s: &FileStorage, tid: Tid) -> Result<Option<u64>> {
    let mut found = None;
    let (file, end, _) = super::group_commit::write_tail(s);
    walk_back_from(s, &file, end, |_, tpos, h| {
        if h.tid == tid {
            found = Some(tpos);
            return Ok(false);
        }
        Ok(h.tid > tid)
    })?;
    Ok(found)
}
