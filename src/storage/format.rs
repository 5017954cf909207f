//! The byte layout of `Data.fs`: file magic, transaction headers and data
//! record headers, and the `pread` helpers that decode them. Pure layout
//! knowledge; no policy about what a damaged record means.
//!
//! ```text
//! file:        "FS30" | txn | txn | ...            (no footer)
//!
//! txn (tpos):  off size
//!              0   8    tid
//!              8   8    tlen   = 23 + ulen + dlen + elen + data records
//!              16  1    status ' ' done, 'p' packed, 'c' in progress, 'u'
//!              17  2    ulen
//!              19  2    dlen
//!              21  2    elen
//!              23  ..   user | description | extension pickle
//!              ..  ..   data records, exactly up to tpos + tlen
//!              tlen 8   tlen again (trailer); next txn at tpos + tlen + 8
//!
//! data (pos):  off size
//!              0   8    oid
//!              8   8    tid
//!              16  8    prev   pos of this oid's previous record, 0 = none
//!              24  8    tloc   tpos of the enclosing txn
//!              32  2    vlen   must be 0 (versions died with ZODB 3.8)
//!              34  8    plen
//!              42  plen pickle             when plen > 0
//!              42  8    back pointer       when plen == 0 (0 = deleted)
//! ```
//! All integers are unsigned big-endian.

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::ids::{Oid, Tid};
use crate::storage::{Error, Result, TxnMeta};

pub const MAGIC: &[u8; 4] = b"FS30";
/// Written by every ZODB running on Python 2; read-only for us.
pub const MAGIC_PY2: &[u8; 4] = b"FS21";
pub const TXN_HEADER_LEN: u64 = 23;
pub const DATA_HEADER_LEN: u64 = 42;
/// Size of a data record that holds a back pointer instead of a pickle.
pub const BACKPOINTER_RECORD_LEN: u64 = DATA_HEADER_LEN + 8;
/// Positions are stored in 6 bytes by the `.index` (fsIndex).
pub const MAX_POS: u64 = (1 << 48) - 1;

pub const STATUS_DONE: u8 = b' ';
pub const STATUS_PACKED: u8 = b'p';
pub const STATUS_CHECKPOINT: u8 = b'c';
pub const STATUS_UNDONE: u8 = b'u';

pub const VERSION_HINT: &str =
    "open it with ZODB 3.8 to commit or abort all versions and pack, then \
     copy it with a version-aware reader to a file without versions (see the FileStorage spec, \
     section 13), convert the pickles with zodbupdate --convert-py3";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnHeader {
    pub tid: Tid,
    pub tlen: u64,
    pub status: u8,
    pub ulen: u16,
    pub dlen: u16,
    pub elen: u16,
}

impl TxnHeader {
    pub fn parse(b: &[u8; TXN_HEADER_LEN as usize]) -> TxnHeader {
        TxnHeader {
            tid: Tid(be8(&b[0..8])),
            tlen: u64::from_be_bytes(be8(&b[8..16])),
            status: b[16],
            ulen: u16::from_be_bytes([b[17], b[18]]),
            dlen: u16::from_be_bytes([b[19], b[20]]),
            elen: u16::from_be_bytes([b[21], b[22]]),
        }
    }

    pub fn encode(&self) -> [u8; TXN_HEADER_LEN as usize] {
        let mut b = [0u8; TXN_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&self.tid.0);
        b[8..16].copy_from_slice(&self.tlen.to_be_bytes());
        b[16] = self.status;
        b[17..19].copy_from_slice(&self.ulen.to_be_bytes());
        b[19..21].copy_from_slice(&self.dlen.to_be_bytes());
        b[21..23].copy_from_slice(&self.elen.to_be_bytes());
        b
    }

    /// Header plus user, description and extension.
    pub fn header_len(&self) -> u64 {
        TXN_HEADER_LEN + u64::from(self.ulen) + u64::from(self.dlen) + u64::from(self.elen)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    pub oid: Oid,
    pub tid: Tid,
    pub prev: u64,
    pub tloc: u64,
    pub vlen: u16,
    pub plen: u64,
}

impl DataHeader {
    pub fn parse(b: &[u8; DATA_HEADER_LEN as usize]) -> DataHeader {
        DataHeader {
            oid: Oid(be8(&b[0..8])),
            tid: Tid(be8(&b[8..16])),
            prev: u64::from_be_bytes(be8(&b[16..24])),
            tloc: u64::from_be_bytes(be8(&b[24..32])),
            vlen: u16::from_be_bytes([b[32], b[33]]),
            plen: u64::from_be_bytes(be8(&b[34..42])),
        }
    }

    pub fn encode(&self) -> [u8; DATA_HEADER_LEN as usize] {
        let mut b = [0u8; DATA_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&self.oid.0);
        b[8..16].copy_from_slice(&self.tid.0);
        b[16..24].copy_from_slice(&self.prev.to_be_bytes());
        b[24..32].copy_from_slice(&self.tloc.to_be_bytes());
        b[32..34].copy_from_slice(&self.vlen.to_be_bytes());
        b[34..42].copy_from_slice(&self.plen.to_be_bytes());
        b
    }

    /// Bytes from the header start to the next record (vlen must be 0).
    pub fn record_len(&self) -> u64 {
        if self.plen == 0 {
            BACKPOINTER_RECORD_LEN
        } else {
            DATA_HEADER_LEN.saturating_add(self.plen)
        }
    }
}

fn be8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// Reads longer than this check the file's size first.
const LARGE_READ: u64 = 1 << 20;

/// Positioned reads of one data file. Never moves a shared cursor, so any
/// number of readers can use the same `File` while a commit appends.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    pub file: &'a File,
    pub path: &'a Path,
}

impl<'a> Reader<'a> {
    pub fn new(file: &'a File, path: &'a Path) -> Reader<'a> {
        Reader { file, path }
    }

    pub fn corrupt(&self, pos: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.to_path_buf(),
            pos,
            reason: reason.into(),
        }
    }

    /// Fills `buf` from `pos`; a short file is corruption, not an I/O error.
    pub fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<()> {
        match self.file.read_exact_at(buf, pos) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(self.corrupt(pos, format!("file ends inside a {}-byte read", buf.len())))
            }
            Err(source) => Err(Error::Io {
                context: format!("reading {} at {pos}", self.path.display()),
                source,
            }),
        }
    }

    /// Reads `len` bytes at `pos`. A length from a damaged record can be
    /// anything: a large one is checked against the file's size before
    /// anything is allocated for it (found by the `datafs` fuzz target).
    pub fn read_vec(&self, pos: u64, len: u64) -> Result<Vec<u8>> {
        if len > LARGE_READ {
            let size = self
                .file
                .metadata()
                .map_err(|source| Error::Io {
                    context: format!("reading the size of {}", self.path.display()),
                    source,
                })?
                .len();
            if pos.checked_add(len).is_none_or(|end| end > size) {
                return Err(self.corrupt(
                    pos,
                    format!("a {len}-byte read runs past the end of the file ({size} bytes)"),
                ));
            }
        }
        let len = usize::try_from(len).map_err(|_| self.corrupt(pos, "length overflows memory"))?;
        let mut v = vec![0u8; len];
        self.read_at(&mut v, pos)?;
        Ok(v)
    }

    pub fn u64_at(&self, pos: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_at(&mut b, pos)?;
        Ok(u64::from_be_bytes(b))
    }

    pub fn txn_header(&self, pos: u64) -> Result<TxnHeader> {
        let mut b = [0u8; TXN_HEADER_LEN as usize];
        self.read_at(&mut b, pos)?;
        Ok(TxnHeader::parse(&b))
    }

    /// A data header; refuses version records, which nothing after ZODB
    /// 3.8 can interpret.
    pub fn data_header(&self, pos: u64) -> Result<DataHeader> {
        let mut b = [0u8; DATA_HEADER_LEN as usize];
        self.read_at(&mut b, pos)?;
        let h = DataHeader::parse(&b);
        if h.vlen != 0 {
            return Err(Error::VersionedRecord {
                path: self.path.to_path_buf(),
                pos,
                hint: VERSION_HINT,
            });
        }
        Ok(h)
    }

    /// A data header that must belong to `oid` (the index said so).
    pub fn data_header_of(&self, pos: u64, oid: Oid) -> Result<DataHeader> {
        let h = self.data_header(pos)?;
        if h.oid != oid {
            return Err(self.corrupt(
                pos,
                format!("record of {:?} where the index expects {:?}", h.oid, oid),
            ));
        }
        Ok(h)
    }

    /// The record at `pos`, which the index says belongs to `oid`, read
    /// into the caller's `buf` (on its stack: returning the 4 KiB by value
    /// cost a copy per load, 5 % of a load's CPU).
    pub fn peek<'b>(&self, pos: u64, oid: Oid, buf: &'b mut PeekBuf) -> Result<Peek<'b>> {
        let mut got = 0;
        while got < PEEK {
            match self.file.read_at(&mut buf[got..], pos + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        context: format!("reading {} at {pos}", self.path.display()),
                        source,
                    })
                }
            }
            if got >= DATA_HEADER_LEN as usize + 8 {
                break;
            }
        }
        if got < DATA_HEADER_LEN as usize {
            return Err(self.corrupt(pos, "file ends inside a data record header"));
        }
        let mut head = [0u8; DATA_HEADER_LEN as usize];
        head.copy_from_slice(&buf[..DATA_HEADER_LEN as usize]);
        let h = DataHeader::parse(&head);
        if h.vlen != 0 {
            return Err(Error::VersionedRecord {
                path: self.path.to_path_buf(),
                pos,
                hint: VERSION_HINT,
            });
        }
        if h.oid != oid {
            return Err(self.corrupt(
                pos,
                format!("record of {:?} where the index expects {:?}", h.oid, oid),
            ));
        }
        Ok(Peek {
            h,
            pos,
            buf: &buf[..got],
        })
    }

    /// The back pointer of a record with `plen == 0`.
    pub fn back_of(&self, pos: u64) -> Result<u64> {
        self.u64_at(pos + DATA_HEADER_LEN)
    }

    pub fn txn_meta(&self, pos: u64, h: &TxnHeader) -> Result<TxnMeta> {
        let all = self.read_vec(pos + TXN_HEADER_LEN, h.header_len() - TXN_HEADER_LEN)?;
        let (u, rest) = all.split_at(usize::from(h.ulen));
        let (d, e) = rest.split_at(usize::from(h.dlen));
        Ok(TxnMeta {
            user: u.to_vec(),
            description: d.to_vec(),
            extension: e.to_vec(),
        })
    }

    /// Follows back pointers from `pos` to the record holding a pickle:
    /// `(data, tid of the holder, holder pos)`, `None` for a deletion.
    /// Bounded because every hop must point strictly backwards.
    pub fn load_back(&self, oid: Oid, mut pos: u64) -> Result<Option<(Vec<u8>, Tid, u64)>> {
        let mut limit = pos;
        loop {
            if pos == 0 {
                return Ok(None);
            }
            let h = self.data_header_of(pos, oid)?;
            if h.plen > 0 {
                return Ok(Some((
                    self.read_vec(pos + DATA_HEADER_LEN, h.plen)?,
                    h.tid,
                    pos,
                )));
            }
            let back = self.back_of(pos)?;
            if back >= limit {
                return Err(
                    self.corrupt(pos, format!("back pointer {back} does not point backwards"))
                );
            }
            limit = back;
            pos = back;
        }
    }
}

/// Bytes read speculatively with a data header: most pickles fit, so a
/// load is one `pread` and one exact allocation.
pub const PEEK: usize = 4096;

/// Where [`Reader::peek`] reads.
pub type PeekBuf = [u8; PEEK];

/// A data record read with one `pread`: the header and, when it fits,
/// the payload.
pub struct Peek<'b> {
    pub h: DataHeader,
    pos: u64,
    /// The bytes read.
    buf: &'b [u8],
}

impl Peek<'_> {
    /// The back pointer of a record without a pickle.
    pub fn back(&self, r: &Reader<'_>) -> Result<u64> {
        let at = DATA_HEADER_LEN as usize;
        match self.buf.get(at..at + 8) {
            Some(b) => Ok(u64::from_be_bytes(be8(b))),
            None => r.back_of(self.pos),
        }
    }

    /// The pickle of a record with `plen > 0`.
    pub fn data(&self, r: &Reader<'_>) -> Result<Vec<u8>> {
        let at = DATA_HEADER_LEN as usize;
        // `plen` is from the file: near 2^64 the sum wrapped (found by the
        // `datafs` fuzz target).
        match usize::try_from(self.h.plen)
            .ok()
            .and_then(|n| at.checked_add(n))
            .filter(|end| *end <= self.buf.len())
        {
            Some(end) => Ok(self.buf[at..end].to_vec()),
            None => r.read_vec(self.pos + DATA_HEADER_LEN, self.h.plen),
        }
    }
}

/// The buffer of a [`SeqReader`] that walks a whole file front to back
/// (index rebuild, the pack's passes, `zeod check`, backups): one `pread`
/// per MiB instead of one per 42-byte header.
pub const SCAN_BUFFER: usize = 1 << 20;

/// Forward reads through a buffer: scans, the iterator and `zeod check`
/// walk the file front to back and would otherwise issue one `pread` per
/// 42-byte header.
pub struct SeqReader<'a> {
    pub r: Reader<'a>,
    buf: Vec<u8>,
    start: u64,
    len: usize,
    cap: usize,
    /// End of the readable data; the buffer never grows past it.
    limit: u64,
}

impl<'a> SeqReader<'a> {
    pub fn new(r: Reader<'a>, cap: usize, limit: u64) -> SeqReader<'a> {
        SeqReader {
            r,
            buf: Vec::new(),
            start: 0,
            len: 0,
            cap,
            limit,
        }
    }

    /// `n` bytes at `pos`; corruption if the file ends first.
    pub fn get(&mut self, pos: u64, n: usize) -> Result<&[u8]> {
        let in_buf = pos >= self.start && pos - self.start + n as u64 <= self.len as u64;
        if !in_buf {
            let room = usize::try_from(self.limit.saturating_sub(pos)).unwrap_or(usize::MAX);
            let want = n.max(self.cap.min(room));
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
            let mut got = 0;
            while got < want {
                match self
                    .r
                    .file
                    .read_at(&mut self.buf[got..want], pos + got as u64)
                {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(Error::Io {
                            context: format!("reading {} at {pos}", self.r.path.display()),
                            source,
                        })
                    }
                }
            }
            self.start = pos;
            self.len = got;
            if got < n {
                return Err(self
                    .r
                    .corrupt(pos, format!("file ends inside a {n}-byte read")));
            }
        }
        let off = (pos - self.start) as usize;
        Ok(&self.buf[off..off + n])
    }

    pub fn txn_header(&mut self, pos: u64) -> Result<TxnHeader> {
        let b = self.get(pos, TXN_HEADER_LEN as usize)?;
        let mut a = [0u8; TXN_HEADER_LEN as usize];
        a.copy_from_slice(b);
        Ok(TxnHeader::parse(&a))
    }

    pub fn data_header(&mut self, pos: u64) -> Result<DataHeader> {
        let b = self.get(pos, DATA_HEADER_LEN as usize)?;
        let mut a = [0u8; DATA_HEADER_LEN as usize];
        a.copy_from_slice(b);
        let h = DataHeader::parse(&a);
        if h.vlen != 0 {
            return Err(Error::VersionedRecord {
                path: self.r.path.to_path_buf(),
                pos,
                hint: VERSION_HINT,
            });
        }
        Ok(h)
    }

    pub fn u64_at(&mut self, pos: u64) -> Result<u64> {
        let b = self.get(pos, 8)?;
        Ok(u64::from_be_bytes(be8(b)))
    }

    /// The back pointer of the record at `pos` (see [`Reader::back_of`]).
    pub fn back_of(&mut self, pos: u64) -> Result<u64> {
        self.u64_at(pos + DATA_HEADER_LEN)
    }

    /// `len` bytes at `pos`: borrowed from the buffer, or, for a length
    /// beyond its capacity, read by [`Reader::read_vec`], which checks it
    /// against the file's size before allocating (the length comes from
    /// the file).
    pub fn bytes(&mut self, pos: u64, len: u64) -> Result<Cow<'_, [u8]>> {
        match usize::try_from(len) {
            Ok(n) if n <= self.cap => Ok(Cow::Borrowed(self.get(pos, n)?)),
            _ => Ok(Cow::Owned(self.r.read_vec(pos, len)?)),
        }
    }

    /// [`Self::bytes`], copied out.
    pub fn read_vec(&mut self, pos: u64, len: u64) -> Result<Vec<u8>> {
        Ok(self.bytes(pos, len)?.into_owned())
    }
}

/// The 23-byte header, user, description and extension of a new txn.
pub fn encode_txn_header(tid: Tid, tlen: u64, status: u8, meta: &TxnMeta) -> Vec<u8> {
    let h = TxnHeader {
        tid,
        tlen,
        status,
        ulen: meta.user.len() as u16,
        dlen: meta.description.len() as u16,
        elen: meta.extension.len() as u16,
    };
    let mut v = Vec::with_capacity(h.header_len() as usize);
    v.extend_from_slice(&h.encode());
    v.extend_from_slice(&meta.user);
    v.extend_from_slice(&meta.description);
    v.extend_from_slice(&meta.extension);
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Regression (the `datafs` fuzz target): a data record whose length
    /// says 549 GB made `load` allocate that much and abort the process.
    #[test]
    fn a_huge_record_length_is_corruption_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let file = File::open(&path).unwrap();
        let r = Reader::new(&file, &path);
        for len in [0x80_0000_0000, u64::MAX, LARGE_READ + 1] {
            assert!(matches!(
                r.read_vec(100, len),
                Err(Error::Corrupt { pos: 100, .. })
            ));
        }
        assert_eq!(r.read_vec(100, 16).unwrap().len(), 16);
    }

    #[test]
    fn txn_header_round_trips() {
        // a_basic's second transaction header (pos 166).
        let raw: [u8; 23] = [
            0x03, 0xf5, 0x8e, 0x00, 0x08, 0x88, 0x88, 0x88, 0, 0, 0, 0, 0, 0, 0x01, 0xf2, b' ', 0,
            5, 0, 11, 0, 30,
        ];
        let h = TxnHeader::parse(&raw);
        assert_eq!(h.tid, Tid::from_u64(0x03f5_8e00_0888_8888));
        assert_eq!((h.status, h.ulen, h.dlen, h.elen), (b' ', 5, 11, 30));
        assert_eq!(h.header_len(), 23 + 46);
        assert_eq!(h.encode(), raw);
    }

    #[test]
    fn data_record_lengths() {
        let mut h = DataHeader {
            oid: Oid::ZERO,
            tid: Tid::ZERO,
            prev: 0,
            tloc: 4,
            vlen: 0,
            plen: 0,
        };
        assert_eq!(h.record_len(), 50);
        h.plen = 64;
        assert_eq!(h.record_len(), 106);
        assert_eq!(DataHeader::parse(&h.encode()), h);
    }
}
