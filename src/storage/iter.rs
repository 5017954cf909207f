//! The transaction iterator (Python's `FileIterator`): finished
//! transactions in file order, each read with one `pread`, back pointers
//! resolved. Lazy and independent of other readers and of commits.

use std::fs::File;
use std::sync::Arc;

use super::format::{
    DataHeader, Reader, TxnHeader, DATA_HEADER_LEN, STATUS_UNDONE, TXN_HEADER_LEN,
};
use super::{DataRecord, FileStorage, Result, TransactionRecord, TxnMeta};
use crate::ids::{Oid, Tid};

/// Iterates a snapshot: the file and its published end when created, so
/// a pack that replaces the file meanwhile does not disturb it.
pub struct TransactionIterator {
    storage: Arc<FileStorage>,
    file: Arc<File>,
    end: u64,
    pos: u64,
    start: Option<Tid>,
    stop: Option<Tid>,
    positioned: bool,
    done: bool,
}

impl TransactionIterator {
    pub fn new(
        storage: Arc<FileStorage>,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> TransactionIterator {
        let (file, end) = storage.snapshot();
        TransactionIterator {
            storage,
            file,
            end,
            pos: 4,
            start,
            stop,
            positioned: false,
            done: false,
        }
    }

    /// Finds a position at or before the first transaction with tid >=
    /// start. Walking back from the end wins when `start` is recent, which
    /// is what replication and catch-up ask for.
    fn position(&mut self) -> Result<()> {
        let Some(start) = self.start else {
            return Ok(());
        };
        let end = self.end;
        let r = self.storage.reader(&self.file);
        if end <= 4 {
            return Ok(());
        }
        let last_len = r.u64_at(end - 8)?;
        let last_pos = end
            .checked_sub(last_len)
            .and_then(|p| p.checked_sub(8))
            .filter(|p| *p >= 4)
            .ok_or_else(|| r.corrupt(end - 8, "trailer points before the file start"))?;
        let last = r.txn_header(last_pos)?.tid;
        if start > last {
            self.pos = end;
            return Ok(());
        }
        let first = r.txn_header(4)?.tid;
        if start <= first {
            return Ok(());
        }
        let fraction =
            (start.to_unix() - first.to_unix()) / (last.to_unix() - first.to_unix()).max(1e-9);
        if fraction < 0.5 {
            return Ok(());
        }
        let mut pos = end;
        while pos > 4 {
            let tl = r.u64_at(pos - 8)?;
            let tpos = pos
                .checked_sub(tl)
                .and_then(|p| p.checked_sub(8))
                .filter(|p| *p >= 4);
            let Some(tpos) = tpos else {
                return Err(r.corrupt(pos - 8, "trailer points before the file start"));
            };
            if r.txn_header(tpos)?.tid < start {
                break;
            }
            pos = tpos;
        }
        self.pos = pos;
        Ok(())
    }

    fn read_next(&mut self) -> Result<Option<TransactionRecord>> {
        if !self.positioned {
            self.positioned = true;
            self.position()?;
        }
        let r = self.storage.reader(&self.file);
        let end = self.end;
        loop {
            let pos = self.pos;
            if pos >= end {
                return Ok(None);
            }
            let h = r.txn_header(pos)?;
            let thl = h.header_len();
            if h.tlen < thl || pos.saturating_add(h.tlen).saturating_add(8) > end {
                return Err(r.corrupt(pos, "transaction length out of range"));
            }
            if self.stop.is_some_and(|stop| h.tid > stop) {
                return Ok(None);
            }
            let next = pos + h.tlen + 8;
            if h.status == STATUS_UNDONE || self.start.is_some_and(|start| h.tid < start) {
                self.pos = next;
                continue;
            }
            let buf = r.read_vec(pos, h.tlen + 8)?;
            let record = parse_txn(r, pos, &h, &buf)?;
            self.pos = next;
            return Ok(Some(record));
        }
    }
}

impl Iterator for TransactionIterator {
    type Item = Result<TransactionRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_next() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Decodes a whole transaction (`buf` = header through trailer).
fn parse_txn(r: Reader<'_>, tpos: u64, h: &TxnHeader, buf: &[u8]) -> Result<TransactionRecord> {
    let tlen = h.tlen as usize;
    if buf[tlen..tlen + 8] != h.tlen.to_be_bytes() {
        return Err(r.corrupt(tpos + h.tlen, "redundant transaction length check failed"));
    }
    let mut at = TXN_HEADER_LEN as usize;
    let mut take = |n: usize| {
        let s = &buf[at..at + n];
        at += n;
        s.to_vec()
    };
    let meta = TxnMeta {
        user: take(usize::from(h.ulen)),
        description: take(usize::from(h.dlen)),
        extension: take(usize::from(h.elen)),
    };
    let mut off = h.header_len() as usize;
    let mut records = Vec::new();
    while off < tlen {
        let pos = tpos + off as u64;
        let head = buf
            .get(off..off + DATA_HEADER_LEN as usize)
            .ok_or_else(|| r.corrupt(pos, "data record header crosses the transaction end"))?;
        let mut a = [0u8; DATA_HEADER_LEN as usize];
        a.copy_from_slice(head);
        let d = DataHeader::parse(&a);
        if d.vlen != 0 {
            return Err(super::Error::VersionedRecord {
                path: r.path.to_path_buf(),
                pos,
                hint: super::format::VERSION_HINT,
            });
        }
        let reclen = d.record_len();
        if (off as u64).saturating_add(reclen) > h.tlen || d.tloc != tpos {
            return Err(r.corrupt(pos, "data record exceeds transaction record"));
        }
        let body = &buf[off + DATA_HEADER_LEN as usize..off + reclen as usize];
        let (data, data_txn) = if d.plen > 0 {
            (Some(body.to_vec()), None)
        } else {
            let back = u64::from_be_bytes(
                <[u8; 8]>::try_from(body).map_err(|_| r.corrupt(pos, "short back pointer"))?,
            );
            resolve_back(r, d.oid, pos, back)?
        };
        records.push(DataRecord {
            oid: d.oid,
            tid: d.tid,
            data,
            data_txn,
            pos,
        });
        off += reclen as usize;
    }
    Ok(TransactionRecord {
        tid: h.tid,
        status: h.status,
        meta,
        pos: tpos,
        records,
    })
}

/// `(data, data_txn)` of a back-pointer record: the data at the end of the
/// chain, and the tid of the record pointed to directly.
fn resolve_back(
    r: Reader<'_>,
    oid: Oid,
    pos: u64,
    back: u64,
) -> Result<(Option<Vec<u8>>, Option<Tid>)> {
    if back == 0 {
        return Ok((None, None));
    }
    if back >= pos {
        return Err(r.corrupt(pos, format!("back pointer {back} does not point backwards")));
    }
    let target = r.data_header_of(back, oid)?;
    let data = r.load_back(oid, back)?.map(|(d, _, _)| d);
    Ok((data, Some(target.tid)))
}
