//! Pack, phase 2: writing `Data.fs.pack` (Python's `FileStoragePacker`).
//! Up to the pack position only surviving records are copied, with data
//! inlined, `prev` 0 and status 'p'; after it every transaction is copied
//! as is, with `prev` and back pointers recomputed for the new file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::super::blob::is_blob_record;
use super::super::format::{
    DataHeader, Reader, SeqReader, TxnHeader, DATA_HEADER_LEN, MAGIC, SCAN_BUFFER, STATUS_PACKED,
};
use super::super::index::IndexBuilder;
use super::super::{Error, Result};
use super::gc::Gc;
use crate::ids::{Oid, Tid};
use crate::progress::Progress;

/// A blob file the pack made unreachable.
#[derive(Debug, Clone, PartialEq)]
pub enum DroppedBlob {
    /// No revision of the object survives.
    Object(Oid),
    Revision(Oid, Tid),
}

/// The output file: appended one transaction at a time.
pub struct PackOut<'p> {
    pub file: File,
    pub path: &'p Path,
    pub pos: u64,
    /// oid → position of its current record in the new file.
    pub index: IndexBuilder,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    }
}

impl<'p> PackOut<'p> {
    pub fn create(path: &'p Path) -> Result<PackOut<'p>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io(path))?;
        file.write_all_at(MAGIC, 0).map_err(io(path))?;
        Ok(PackOut {
            file,
            path,
            pos: MAGIC.len() as u64,
            index: IndexBuilder::default(),
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, self.pos)
            .map_err(io(self.path))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn reader(&self) -> Reader<'_> {
        Reader::new(&self.file, self.path)
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync_all().map_err(io(self.path))
    }
}

fn header_bytes(seq: &mut SeqReader<'_>, pos: u64, h: &TxnHeader, status: u8) -> Result<Vec<u8>> {
    let mut v = seq.read_vec(pos, h.header_len())?;
    v[16] = status;
    Ok(v)
}

/// Data of a record whose body is a back pointer: `None` for a deletion.
fn via_back(r: Reader<'_>, oid: Oid, back: u64) -> Result<Option<Vec<u8>>> {
    Ok(r.load_back(oid, back)?.map(|(d, _, _)| d))
}

/// `copyToPacktime`: returns the output position after the copied prefix.
pub fn copy_to_packtime(
    gc: &Gc<'_>,
    out: &mut PackOut<'_>,
    with_blobs: bool,
    dropped: &mut Vec<DroppedBlob>,
) -> Result<u64> {
    let r = gc.r;
    let mut seq = SeqReader::new(r, SCAN_BUFFER, gc.packpos);
    let mut pos = 4;
    while pos < gc.packpos {
        gc.progress.set(gc.eof + pos);
        let th = seq.txn_header(pos)?;
        let tend = pos + th.tlen;
        let new_tpos = out.pos;
        let mut buf: Vec<u8> = Vec::new();
        let mut rpos = pos + th.header_len();
        while rpos < tend {
            let d = seq.data_header(rpos)?;
            let here = rpos;
            rpos += d.record_len();
            let reachable = gc.is_reachable(d.oid, here);
            if !reachable && !with_blobs {
                continue;
            }
            let data = if d.plen > 0 {
                Some(seq.read_vec(here + DATA_HEADER_LEN, d.plen)?)
            } else {
                via_back(r, d.oid, seq.back_of(here)?)?
            };
            if !reachable {
                if data.as_deref().is_some_and(is_blob_record) {
                    let kept = gc.reachable.get(d.oid);
                    let is_dup = match kept {
                        Some(k) => r.data_header(k)?.tid == d.tid,
                        None => false,
                    };
                    if !is_dup {
                        dropped.push(match kept {
                            None => DroppedBlob::Object(d.oid),
                            Some(_) => DroppedBlob::Revision(d.oid, d.tid),
                        });
                    }
                }
                continue;
            }
            if buf.is_empty() {
                buf = header_bytes(&mut seq, pos, &th, STATUS_PACKED)?;
            }
            let data = data.unwrap_or_default();
            let h = DataHeader {
                oid: d.oid,
                tid: d.tid,
                prev: 0,
                tloc: new_tpos,
                vlen: 0,
                plen: data.len() as u64,
            };
            out.index.insert(d.oid, new_tpos + buf.len() as u64);
            buf.extend_from_slice(&h.encode());
            if data.is_empty() {
                buf.extend_from_slice(&0u64.to_be_bytes());
            } else {
                buf.extend_from_slice(&data);
            }
        }
        if !buf.is_empty() {
            let tlen = buf.len() as u64;
            buf[8..16].copy_from_slice(&tlen.to_be_bytes());
            buf.extend_from_slice(&tlen.to_be_bytes());
            out.append(&buf)?;
        }
        if seq.u64_at(tend)? != th.tlen {
            return Err(r.corrupt(tend, "redundant transaction length does not match"));
        }
        pos = tend + 8;
    }
    Ok(out.pos)
}

/// `copyRest` for the input range `[ipos, end)`: returns the next input
/// position (== `end`). Reports `offset + ipos` as done.
pub fn copy_rest(
    r: Reader<'_>,
    out: &mut PackOut<'_>,
    mut ipos: u64,
    end: u64,
    progress: &Progress,
    offset: u64,
) -> Result<u64> {
    progress.set_total(offset + end);
    let mut seq = SeqReader::new(r, SCAN_BUFFER, end);
    while ipos < end {
        progress.set(offset + ipos);
        let th = seq.txn_header(ipos)?;
        let tpos = out.pos;
        let mut buf = header_bytes(&mut seq, ipos, &th, th.status)?;
        let mut tindex: Vec<(Oid, u64)> = Vec::new();
        let tend = ipos + th.tlen;
        let mut rpos = ipos + th.header_len();
        while rpos < tend {
            let d = seq.data_header(rpos)?;
            let here = rpos;
            rpos += d.record_len();
            let (data, prev_txn) = if d.plen > 0 {
                (Some(seq.read_vec(here + DATA_HEADER_LEN, d.plen)?), None)
            } else {
                let back = seq.back_of(here)?;
                let prev_txn = if back != 0 {
                    Some(r.data_header(back)?.tid)
                } else {
                    None
                };
                (via_back(r, d.oid, back)?, prev_txn)
            };
            let back = match prev_txn {
                Some(t) => resolve_backpointer(out, tpos, t, d.oid, data.as_deref())?,
                None => 0,
            };
            let datapos = tpos + buf.len() as u64;
            let payload = if back != 0 { None } else { data.as_deref() };
            let h = DataHeader {
                oid: d.oid,
                tid: d.tid,
                prev: out.index.get(d.oid).unwrap_or(0),
                tloc: tpos,
                vlen: 0,
                plen: payload.map_or(0, |p| p.len() as u64),
            };
            buf.extend_from_slice(&h.encode());
            match payload {
                Some(p) => buf.extend_from_slice(p),
                None => buf.extend_from_slice(&back.to_be_bytes()),
            }
            tindex.push((d.oid, datapos));
        }
        // Only an inlined back pointer changes the length: ZODB raises
        // PackError there (a pack without GC dropped the revision the
        // pointer named); the data itself is still at hand.
        let tlen = buf.len() as u64;
        buf[8..16].copy_from_slice(&tlen.to_be_bytes());
        buf.extend_from_slice(&tlen.to_be_bytes());
        out.append(&buf)?;
        for (oid, pos) in tindex {
            out.index.insert(oid, pos);
        }
        ipos = tend + 8;
    }
    Ok(ipos)
}

/// `PackCopier._resolve_backpointer`: the record in the new file that the
/// copied back pointer should name, or 0 to inline the data.
fn resolve_backpointer(
    out: &PackOut<'_>,
    from: u64,
    prev_txn: Tid,
    oid: Oid,
    data: Option<&[u8]>,
) -> Result<u64> {
    let r = out.reader();
    let mut pos = from;
    let mut tpos = None;
    while pos > 4 {
        let tl = r.u64_at(pos - 8)?;
        pos = pos
            .checked_sub(tl + 8)
            .ok_or_else(|| r.corrupt(pos, "bad trailer in pack output"))?;
        let h = r.txn_header(pos)?;
        if h.tid == prev_txn {
            tpos = Some((pos, h));
            break;
        }
        if h.tid < prev_txn {
            break;
        }
    }
    // ZODB raises PackError when the transaction is gone; inlining the
    // data is always correct.
    let Some((tpos, h)) = tpos else { return Ok(0) };
    let tend = tpos + h.tlen;
    let mut pos = tpos + h.header_len();
    while pos < tend {
        let d = r.data_header(pos)?;
        if d.oid == oid {
            if d.plen == 0 {
                return Ok(pos);
            }
            return Ok(match data {
                Some(data)
                    if data.len() as u64 == d.plen
                        && r.read_vec(pos + DATA_HEADER_LEN, d.plen)? == data =>
                {
                    pos
                }
                _ => 0,
            });
        }
        pos += d.record_len();
    }
    Ok(0)
}
