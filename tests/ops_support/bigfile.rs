//! A Data.fs big enough for long work to report progress: a root that
//! reaches oid 1, and 1000 objects rewritten in every transaction that
//! nothing reaches, so a pack to now drops nearly everything. Small
//! records make many of them: the work is per record as much as per byte.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test
#![allow(dead_code)] // each test crate uses a subset

use std::path::Path;

use zeod::ids::{Oid, Tid};
use zeod::storage::{BeginOptions, FileStorage, OpenOptions};

/// A root (`PersistentMapping`) whose one item refers to oid 1.
pub const ROOT: &[u8] = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01(X\x01\x00\x00\x00aC\x08\x00\x00\x00\x00\x00\x00\x00\x01h\x00\x86Qu.";

/// A mapping holding `payload` bytes under `x`; refers to nothing.
pub fn padded(payload: usize, tag: u8) -> Vec<u8> {
    let mut data =
        b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x01\x00\x00\x00xq\x02B"
            .to_vec();
    data.extend_from_slice(&(payload as u32).to_le_bytes());
    data.extend(std::iter::repeat_n(tag, payload));
    data.extend_from_slice(b"s.");
    data
}

/// Writes about `megabytes` MiB of history, records of `payload` bytes,
/// to `path`, then closes it (its `.index` is written; remove it to make
/// the next open rebuild).
pub fn write(path: &Path, megabytes: usize, payload: usize) {
    let fs = FileStorage::open(
        path,
        OpenOptions {
            fsync: false,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let oids = fs.new_oids(1001).unwrap();
    let mut serials = vec![Tid::ZERO; oids.len()];
    let per_txn = 1000 * (payload + 100);
    let txns = (megabytes << 20).div_ceil(per_txn);
    for n in 0..txns {
        let mut txn = fs.tpc_begin(BeginOptions::default()).unwrap();
        if n == 0 {
            fs.store(&mut txn, Oid::ZERO, Tid::ZERO, ROOT).unwrap();
            fs.store(&mut txn, oids[0], serials[0], &padded(16, 1))
                .unwrap();
        }
        for (i, oid) in oids.iter().enumerate().skip(1) {
            fs.store(&mut txn, *oid, serials[i], &padded(payload, n as u8))
                .unwrap();
        }
        fs.tpc_vote(&mut txn).unwrap();
        let (tid, _) = fs.tpc_finish(txn).unwrap();
        if n == 0 {
            serials[0] = tid;
        }
        for serial in serials.iter_mut().skip(1) {
            *serial = tid;
        }
    }
    fs.close().unwrap();
}
