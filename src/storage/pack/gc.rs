//! Pack, phase 1: which records survive (Python's `fspack.GC`).
//! `oid2curpos` is each oid's record current at the pack time; with GC,
//! `reachable` is the closure of references from the root over those
//! records, plus older revisions that back pointers after the pack time
//! still need (`reach_ex`).

use std::collections::HashMap;

use tracing::warn;

use super::super::format::{
    DataHeader, Reader, SeqReader, TxnHeader, SCAN_BUFFER, STATUS_CHECKPOINT, STATUS_PACKED,
};
use super::super::index::{Index, IndexBuilder};
use super::super::{Error, Result};
use crate::ids::{Oid, Tid};
use crate::progress::Progress;
use crate::record::references_into;

/// The reference walk reads the records of one level of the object graph
/// in file order through a buffer of this size: big enough to serve the
/// dense levels (most objects) with few reads, small enough that a sparse
/// level does not read much more than it needs.
const WALK_BUFFER: usize = 128 << 10;

pub struct Gc<'a> {
    pub r: Reader<'a>,
    /// Counts the bytes of the GC pass over `[4, eof)` (see `pack.rs`).
    pub progress: &'a Progress,
    pub eof: u64,
    pub packtime: Tid,
    /// End of the last transaction with tid <= packtime.
    pub packpos: u64,
    oid2curpos: Index,
    /// The result of `find_reachable`.
    pub reachable: Index,
    /// `reachable` while the references are followed.
    building: IndexBuilder,
    reach_ex: HashMap<Oid, Vec<u64>>,
    ltid: Tid,
    dangling: usize,
}

pub enum Plan {
    /// Everything up to the pack time is packed already.
    Redundant,
    Pack,
}

impl<'a> Gc<'a> {
    pub fn new(r: Reader<'a>, eof: u64, packtime: Tid, progress: &'a Progress) -> Gc<'a> {
        Gc {
            r,
            progress,
            eof,
            packtime,
            packpos: 4,
            oid2curpos: Index::new(),
            reachable: Index::new(),
            building: IndexBuilder::default(),
            reach_ex: HashMap::new(),
            ltid: Tid::ZERO,
            dangling: 0,
        }
    }

    fn fail(&self, pos: u64, reason: String) -> Error {
        self.r.corrupt(pos, reason)
    }

    fn check_txn(&mut self, h: &TxnHeader, pos: u64) -> Result<()> {
        if h.tid <= self.ltid {
            return Err(self.fail(
                pos,
                format!("time-stamp reduction: {} <= {}", h.tid, self.ltid),
            ));
        }
        self.ltid = h.tid;
        if h.status == STATUS_CHECKPOINT {
            return Err(self.fail(pos, "transaction with checkpoint flag set".into()));
        }
        if h.tlen < h.header_len() || pos + h.tlen + 8 > self.eof {
            return Err(self.fail(pos, "invalid transaction header".into()));
        }
        Ok(())
    }

    /// A checked data header and its back pointer (0 when it holds data).
    fn data(
        &self,
        seq: &mut SeqReader<'_>,
        tpos: u64,
        tend: u64,
        pos: u64,
    ) -> Result<(DataHeader, u64)> {
        let d = seq.data_header(pos)?;
        if d.tloc != tpos {
            return Err(self.fail(
                pos,
                "data record does not point to its transaction header".into(),
            ));
        }
        if pos + d.record_len() > tend {
            return Err(self.fail(pos, "data record size exceeds transaction size".into()));
        }
        if d.prev >= pos {
            return Err(self.fail(pos, format!("invalid previous pointer: {}", d.prev)));
        }
        let back = if d.plen == 0 { seq.back_of(pos)? } else { 0 };
        if back >= pos && back != 0 {
            return Err(self.fail(pos, format!("invalid back pointer: {back}")));
        }
        Ok((d, back))
    }

    fn trailer(&self, seq: &mut SeqReader<'_>, tend: u64, h: &TxnHeader) -> Result<()> {
        if seq.u64_at(tend)? != h.tlen {
            return Err(self.fail(tend, "redundant transaction length does not match".into()));
        }
        Ok(())
    }

    /// `buildPackIndex`: finds `packpos` and each oid's current record.
    pub fn build_pack_index(&mut self) -> Result<Plan> {
        let mut pos = 4;
        let mut unpacked = false;
        let mut last_status = None;
        let mut seq = SeqReader::new(self.r, SCAN_BUFFER, self.eof);
        while pos < self.eof {
            self.progress.set(pos);
            let th = seq.txn_header(pos)?;
            if th.tid > self.packtime {
                break;
            }
            self.check_txn(&th, pos)?;
            if th.status != STATUS_PACKED {
                unpacked = true;
            }
            let tpos = pos;
            let tend = pos + th.tlen;
            pos += th.header_len();
            while pos < tend {
                let (d, back) = self.data(&mut seq, tpos, tend, pos)?;
                if d.plen > 0 || back != 0 {
                    self.oid2curpos.insert(d.oid, pos);
                } else {
                    self.oid2curpos.remove(d.oid);
                }
                pos += d.record_len();
            }
            self.trailer(&mut seq, tend, &th)?;
            pos += 8;
            last_status = Some(th.status);
        }
        self.packpos = pos;
        if unpacked {
            return Ok(Plan::Pack);
        }
        let next = if pos < self.eof {
            Some(self.r.txn_header(pos)?.status)
        } else {
            last_status
        };
        Ok(if next == Some(STATUS_PACKED) {
            Plan::Redundant
        } else {
            Plan::Pack
        })
    }

    pub fn find_reachable(&mut self, gc: bool) -> Result<()> {
        if !gc {
            self.reachable = std::mem::take(&mut self.oid2curpos);
            return Ok(());
        }
        self.reachable_at_packtime(vec![Oid::ZERO])?;
        self.reachable_from_future()?;
        self.reachable = std::mem::take(&mut self.building).finish();
        if self.dangling > 0 {
            warn!(
                count = self.dangling,
                "pack: references to objects that do not exist at the pack time"
            );
        }
        self.oid2curpos = Index::new();
        Ok(())
    }

    /// Marks what `roots` reach at the pack time, level by level: each
    /// level's records are read in file order through one buffer, so a
    /// big file is read about front to back once per level of the object
    /// graph instead of with two random `pread`s per object (the walk was
    /// most of a 1M-object pack).
    fn reachable_at_packtime(&mut self, roots: Vec<Oid>) -> Result<()> {
        let mut level = Vec::new();
        for oid in roots {
            self.visit(oid, &mut level);
        }
        let mut seq = SeqReader::new(self.r, WALK_BUFFER, self.eof);
        let mut refs = Vec::new();
        while !level.is_empty() {
            level.sort_unstable();
            let mut next = Vec::new();
            for &(pos, _) in &level {
                refs.clear();
                self.findrefs(&mut seq, pos, &mut refs)?;
                for &r in &refs {
                    self.visit(r, &mut next);
                }
            }
            level = next;
        }
        Ok(())
    }

    /// Marks `oid` reachable and queues its current record, unless it is
    /// marked already or has no record at the pack time.
    fn visit(&mut self, oid: Oid, queue: &mut Vec<(u64, Oid)>) {
        if self.building.get(oid).is_some() {
            return;
        }
        match self.oid2curpos.get(oid) {
            Some(pos) => {
                self.building.insert(oid, pos);
                queue.push((pos, oid));
            }
            // ZODB raises KeyError here and the pack fails; a dangling
            // reference keeps nothing alive either way.
            None if oid == Oid::ZERO && self.oid2curpos.is_empty() => {}
            None => self.dangling += 1,
        }
    }

    fn reachable_from_future(&mut self) -> Result<()> {
        let mut extra_roots = Vec::new();
        let mut pos = self.packpos;
        let mut seq = SeqReader::new(self.r, SCAN_BUFFER, self.eof);
        while pos < self.eof {
            self.progress.set(pos);
            let th = seq.txn_header(pos)?;
            self.check_txn(&th, pos)?;
            let tpos = pos;
            let tend = pos + th.tlen;
            pos += th.header_len();
            while pos < tend {
                let (d, back) = self.data(&mut seq, tpos, tend, pos)?;
                if back != 0 && back < self.packpos {
                    if self.building.get(d.oid).is_some() {
                        let extra = self.reach_ex.entry(d.oid).or_default();
                        if !extra.contains(&back) {
                            extra.push(back);
                            extra_roots.push(back);
                        }
                    } else {
                        self.building.insert(d.oid, back);
                    }
                }
                pos += d.record_len();
            }
            self.trailer(&mut seq, tend, &th)?;
            pos += 8;
        }
        extra_roots.sort_unstable();
        let mut walk = SeqReader::new(self.r, WALK_BUFFER, self.eof);
        let mut refs = Vec::new();
        for pos in extra_roots {
            self.findrefs(&mut walk, pos, &mut refs)?;
        }
        self.reachable_at_packtime(refs)
    }

    /// Appends the references of the record at `pos` to `out`, back
    /// pointers followed.
    fn findrefs(&self, seq: &mut SeqReader<'_>, mut pos: u64, out: &mut Vec<Oid>) -> Result<()> {
        loop {
            let d = seq.data_header(pos)?;
            if d.plen > 0 {
                let at = pos + super::super::format::DATA_HEADER_LEN;
                return references_into(&seq.bytes(at, d.plen)?, out).map_err(|e| {
                    self.fail(
                        pos,
                        format!("cannot find the references of oid {} for pack: {e}", d.oid),
                    )
                });
            }
            let back = seq.back_of(pos)?;
            if back == 0 {
                return Ok(());
            }
            if back >= pos {
                return Err(self.fail(pos, format!("invalid back pointer: {back}")));
            }
            pos = back;
        }
    }

    pub fn is_reachable(&self, oid: Oid, pos: u64) -> bool {
        match self.reachable.get(oid) {
            None => false,
            Some(p) if p == pos => true,
            Some(_) => self.reach_ex.get(&oid).is_some_and(|l| l.contains(&pos)),
        }
    }
}
