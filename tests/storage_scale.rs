//! Scale measurements (ignored by default; never asserts speed): builds a
//! storage of `ZEOD_SCALE_OBJECTS` objects (default 1,000,000) and prints
//! commit, open (saved index and full scan), index footprint and load
//! rates. Run: `cargo test --release --test storage_scale -- --ignored --nocapture`.
//!
//! On the 2-core CI machine (shared, release build), 1,000,000 objects,
//! 145 MB: commit 470k objects/s (fsync off), `.index` written in 0.02 s,
//! open with the index 0.03 s, open by full scan 0.14 s (1 GB/s), load
//! 145k/s on one thread, loadBefore 214k/s on two.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::sync::Arc;
use std::time::Instant;

use zeod::ids::{Oid, Tid};
use zeod::storage::{BeginOptions, FileStorage, OpenOptions};

#[test]
#[ignore]
fn scale_report() {
    let n: u64 = std::env::var("ZEOD_SCALE_OBJECTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let options = OpenOptions {
        fsync: false,
        ..OpenOptions::default()
    };
    let fs = FileStorage::open(&path, options.clone()).unwrap();
    let pickle = |i: u64| {
        let mut v = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x01\x00\x00\x00nq\x02J".to_vec();
        v.extend_from_slice(&(i as u32).to_le_bytes());
        v.extend_from_slice(&[b'x'; 40]);
        v.extend_from_slice(b"s.");
        v
    };
    let t = Instant::now();
    let per_txn = 1000;
    let mut oid = 0;
    while oid < n {
        let mut txn = fs.tpc_begin(BeginOptions::default()).unwrap();
        for _ in 0..per_txn.min(n - oid) {
            fs.store(&mut txn, Oid::from_u64(oid), Tid::ZERO, &pickle(oid))
                .unwrap();
            oid += 1;
        }
        fs.tpc_vote(&mut txn).unwrap();
        fs.tpc_finish(txn).unwrap();
    }
    let commit_s = t.elapsed().as_secs_f64();
    let size = fs.size();
    let t = Instant::now();
    fs.close().unwrap();
    let close_s = t.elapsed().as_secs_f64();
    drop(fs);

    let t = Instant::now();
    let fs = FileStorage::open(&path, options.clone()).unwrap();
    let open_index_s = t.elapsed().as_secs_f64();
    assert_eq!(fs.len() as u64, n);
    drop(fs);
    std::fs::remove_file(path.with_file_name("Data.fs.index")).unwrap();
    let t = Instant::now();
    let fs = FileStorage::open(&path, options).unwrap();
    let open_scan_s = t.elapsed().as_secs_f64();

    let loads = n.min(1_000_000);
    let t = Instant::now();
    for i in 0..loads {
        let oid = Oid::from_u64((i * 7919) % n);
        std::hint::black_box(fs.load(oid).unwrap());
    }
    let load_s = t.elapsed().as_secs_f64();
    let threads: Vec<_> = (0..2)
        .map(|k| {
            let fs = Arc::clone(&fs);
            std::thread::spawn(move || {
                for i in 0..loads / 2 {
                    let oid = Oid::from_u64((i * 7919 + k) % n);
                    std::hint::black_box(fs.load_before(oid, Tid::MAX).unwrap());
                }
            })
        })
        .collect();
    let t = Instant::now();
    threads.into_iter().for_each(|h| h.join().unwrap());
    let load2_s = t.elapsed().as_secs_f64();
    println!(
        "objects {n}, file {size} bytes\n\
         commit: {:.0} objects/s ({per_txn} per txn, fsync off)\n\
         close (write .index): {close_s:.2} s\n\
         open with .index: {open_index_s:.2} s; open by full scan: {open_scan_s:.2} s ({:.0} MB/s)\n\
         load (1 thread): {:.0}/s; loadBefore (2 threads): {:.0}/s",
        n as f64 / commit_s,
        size as f64 / open_scan_s / 1e6,
        loads as f64 / load_s,
        loads as f64 / load2_s,
    );
}
