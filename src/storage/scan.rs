//! Building the index by reading transactions front to back (Python's
//! `read_index`), validating a saved `.index` against the file
//! (`_check_sanity`), and deciding what to do with a damaged tail.
//!
//! Tail policy, as ZODB's: a trailing transaction that is short, still
//! marked 'c' (voted, never finished) or runs past the end of the file is an
//! interrupted commit. Read-write opens save it to `Data.fs.trN` and cut it
//! off; read-only opens just stop before it. Damage *before* the tail is
//! never repaired here: it is a `Corrupt` error (use fsrecover).

use std::time::Instant;

use tracing::{info, warn};

use super::format::{
    Reader, SeqReader, MAGIC, SCAN_BUFFER, STATUS_CHECKPOINT, STATUS_DONE, STATUS_PACKED,
    STATUS_UNDONE, TXN_HEADER_LEN,
};
use super::index::Index;
use super::{Error, Result};
use crate::ids::{Oid, Tid};
use crate::progress::Progress;

/// What a scan found.
#[derive(Debug, Clone, PartialEq)]
pub struct Scanned {
    /// End of the last complete transaction.
    pub end: u64,
    /// Tid of the last transaction header read. Like Python, this includes
    /// an interrupted trailing transaction, so its tid is never reissued.
    pub last_tid: Tid,
    /// An interrupted transaction starts here and runs to EOF.
    pub tail: Option<Tail>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tail {
    pub pos: u64,
    /// Python copies the cut bytes to `.trN` except for a header fragment.
    pub save: bool,
}

/// Reads transactions from `start` (4, or a saved index's `pos`) to
/// `file_size`, adding every data record to `index`, reporting the bytes
/// read into `progress`.
pub fn scan(
    r: Reader<'_>,
    file_size: u64,
    start: u64,
    index: &mut Index,
    mut last_tid: Tid,
    progress: &Progress,
) -> Result<Scanned> {
    let mut seq = SeqReader::new(r, SCAN_BUFFER, file_size);
    let mut pos = start;
    let mut tindex: Vec<(Oid, u64)> = Vec::new();
    let began = Instant::now();
    let big = file_size - start > 64 << 20;
    if big {
        info!(path = %r.path.display(), from = start, size = file_size, "scanning data file to build its index");
    }
    let task = if start <= MAGIC.len() as u64 {
        "index rebuild"
    } else {
        "index update"
    };
    let _running = progress.run(task, file_size.saturating_sub(start));
    let stop = |pos, save, last_tid| {
        Ok(Scanned {
            end: pos,
            last_tid,
            tail: Some(Tail { pos, save }),
        })
    };
    while pos < file_size {
        progress.set(pos - start);
        // Only reads so far: the scan can be abandoned at any transaction.
        if progress.stop_requested() {
            return Err(Error::Stopped {
                path: r.path.to_path_buf(),
            });
        }
        if file_size - pos < TXN_HEADER_LEN {
            warn!(path = %r.path.display(), pos, "truncated transaction header at end of file");
            return stop(pos, false, last_tid);
        }
        let h = seq.txn_header(pos)?;
        if h.tid <= last_tid {
            warn!(path = %r.path.display(), pos, "time-stamp reduction");
        }
        last_tid = h.tid;
        let past_eof = pos
            .checked_add(h.tlen)
            .and_then(|e| e.checked_add(8))
            .is_none_or(|e| e > file_size);
        if past_eof || h.status == STATUS_CHECKPOINT {
            warn!(path = %r.path.display(), pos, status = %char::from(h.status), "interrupted transaction at end of file");
            return stop(pos, true, last_tid);
        }
        if ![STATUS_DONE, STATUS_PACKED, STATUS_UNDONE].contains(&h.status) {
            warn!(path = %r.path.display(), pos, status = h.status, "invalid transaction status");
        }
        let thl = h.header_len();
        if h.tlen < thl {
            // Garbage at the end after a crash, or damage in the middle? The
            // last 8 bytes tell: a plausible trailer means real data follows.
            let rtl = seq.u64_at(file_size - 8)?;
            if file_size - rtl.min(file_size) < pos || rtl < TXN_HEADER_LEN {
                warn!(path = %r.path.display(), pos, "invalid transaction header; cutting bad data at end of file");
                return stop(pos, true, last_tid);
            }
            return Err(r.corrupt(
                pos,
                "invalid transaction header (tlen shorter than its header)",
            ));
        }
        let tend = pos + h.tlen;
        if h.status != STATUS_UNDONE {
            let mut rpos = pos + thl;
            while rpos < tend {
                let d = seq.data_header(rpos)?;
                let reclen = d.record_len();
                if rpos.saturating_add(reclen) > tend || d.tloc != pos {
                    return Err(r.corrupt(rpos, "data record exceeds transaction record"));
                }
                let expected_prev = index.get(d.oid).unwrap_or(0);
                if expected_prev != d.prev {
                    warn!(path = %r.path.display(), pos = rpos, oid = %d.oid, "incorrect previous pointer");
                }
                tindex.push((d.oid, rpos));
                rpos += reclen;
            }
            if rpos != tend {
                return Err(r.corrupt(pos, "data records don't add up"));
            }
        }
        if seq.u64_at(tend)? != h.tlen {
            return Err(r.corrupt(tend, "redundant transaction length check failed"));
        }
        for (oid, at) in tindex.drain(..) {
            index.insert(oid, at);
        }
        pos = tend + 8;
    }
    if big {
        info!(
            objects = index.len(),
            seconds = began.elapsed().as_secs_f64(),
            "index scan done"
        );
    }
    Ok(Scanned {
        end: pos,
        last_tid,
        tail: None,
    })
}

/// Python's `_check_sanity`: walk back from `pos` over at most a few
/// transactions and check up to 5 records of the last non-empty one against
/// the index. Returns the tid of the transaction ending at `pos`.
pub fn check_sanity(r: Reader<'_>, file_size: u64, index: &Index, mut pos: u64) -> Option<Tid> {
    if pos < 100 || file_size < pos {
        return None;
    }
    let mut last_tid = None;
    loop {
        let tl = r.u64_at(pos - 8).ok()?;
        pos = pos.checked_sub(tl)?.checked_sub(8)?;
        if pos < 4 {
            return None;
        }
        let h = r.txn_header(pos).ok()?;
        let ltid = *last_tid.get_or_insert(h.tid);
        if h.tlen != tl {
            return None;
        }
        if h.status == STATUS_UNDONE {
            continue;
        }
        if h.status != STATUS_DONE && h.status != STATUS_PACKED {
            return None;
        }
        let thl = h.header_len();
        if h.tlen < thl {
            return None;
        }
        let tend = pos + h.tlen;
        let mut opos = pos + thl;
        if opos == tend {
            continue;
        }
        let mut checked = 0;
        while opos < tend && checked < 5 {
            let d = r.data_header(opos).ok()?;
            if opos + d.record_len() > tend || d.tloc != pos {
                return None;
            }
            if index.get(d.oid) != Some(opos) {
                return None;
            }
            checked += 1;
            opos += d.record_len();
        }
        return Some(ltid);
    }
}
