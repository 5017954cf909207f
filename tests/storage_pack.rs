//! Pack produces the bytes Python's packer produced for the fixtures
//! (c_pack, c_pack_nogc, c_pack_mid, e_blobs_packed), keeps concurrent
//! commits, and leaves a file zeod check accepts.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

#[path = "common/fixtures.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use zeod::ids::{Oid, Tid};
use zeod::storage::{BeginOptions, Error, FileStorage, OpenOptions};

fn pack_time(name: &str) -> Tid {
    Tid::from_unix(expected(name)["pack_time"].as_f64().unwrap())
}

fn pack_fixture(source: &str, target: &str, gc: bool, options: OpenOptions) -> tempfile::TempDir {
    let (dir, path) = copy_fixture(source);
    let fs = FileStorage::open(&path, options).unwrap();
    fs.pack(pack_time(target), gc).unwrap();
    let want = std::fs::read(fixtures_dir().join(target).join("Data.fs")).unwrap();
    let got = std::fs::read(&path).unwrap();
    assert_eq!(got.len(), want.len(), "{target}: size");
    assert_eq!(got, want, "{target}: packed bytes differ from Python's");
    assert_eq!(fs.size(), want.len() as u64);
    // The new index is installed and saved.
    let exp = expected(target);
    assert_eq!(
        fs.len() as u64,
        exp["len"].as_u64().unwrap(),
        "{target}: len"
    );
    for (oid_hex, o) in exp["objects"].as_object().unwrap() {
        let (data, serial) = fs.load(oid(oid_hex)).unwrap();
        assert_eq!(hex(&data), o["load"]["data"].as_str().unwrap());
        assert_eq!(serial, tid(o["load"]["serial"].as_str().unwrap()));
    }
    assert_eq!(
        std::fs::read(path.with_file_name("Data.fs.index")).unwrap(),
        std::fs::read(fixtures_dir().join(target).join("Data.fs.index")).unwrap(),
        "{target}: index"
    );
    fs.close().unwrap();
    dir
}

#[test]
fn gc_pack_matches_python_byte_for_byte() {
    let dir = pack_fixture("c_pack/prepack", "c_pack", true, OpenOptions::default());
    // pack_keep_old (the default) keeps the original as Data.fs.old.
    assert_eq!(
        std::fs::read(dir.path().join("Data.fs.old")).unwrap(),
        std::fs::read(fixtures_dir().join("c_pack/prepack/Data.fs")).unwrap()
    );
    assert!(!dir.path().join("Data.fs.pack").exists());
}

#[test]
fn pack_without_gc_matches_python() {
    pack_fixture(
        "c_pack/prepack",
        "c_pack_nogc",
        false,
        OpenOptions::default(),
    );
}

#[test]
fn pack_between_transactions_copies_the_rest_with_new_prev_pointers() {
    pack_fixture("c_pack/prepack", "c_pack_mid", true, OpenOptions::default());
}

#[test]
fn pack_with_blobs_removes_dropped_blob_files() {
    let (dir, path) = copy_fixture("e_blobs");
    let options = OpenOptions {
        blob_dir: Some(dir.path().join("blobs")),
        pack_keep_old: false,
        ..OpenOptions::default()
    };
    let fs = FileStorage::open(&path, options).unwrap();
    let last = fs.last_transaction();
    fs.pack(Tid::from_unix(last.to_unix() + 0.5), true).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(fixtures_dir().join("e_blobs_packed/Data.fs")).unwrap()
    );
    assert!(!dir.path().join("Data.fs.old").exists());
    let mut files = Vec::new();
    list(&dir.path().join("blobs"), dir.path(), &mut files);
    files.sort();
    let want: Vec<String> = expected("e_blobs_packed")["blob_files_after_pack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(files, want);
}

fn list(dir: &Path, base: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "tmp" {
                list(&e.path(), base, out);
            }
        } else {
            out.push(e.path().strip_prefix(base).unwrap().display().to_string());
        }
    }
}

#[test]
fn packing_twice_is_a_no_op_and_arguments_are_checked() {
    let (_dir, path) = copy_fixture("c_pack");
    let before = std::fs::read(&path).unwrap();
    let fs = FileStorage::open(&path, OpenOptions::default()).unwrap();
    fs.pack(pack_time("c_pack"), true).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(matches!(
        fs.pack(Tid::ZERO, true),
        Err(Error::BadArgument(_))
    ));
    let ro = FileStorage::open(
        &path,
        OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert!(matches!(
        ro.pack(pack_time("c_pack"), true),
        Err(Error::ReadOnly)
    ));
}

#[test]
fn commits_during_a_pack_survive_it() {
    let dir = scratch_dir();
    let path = dir.path().join("Data.fs");
    let fs = FileStorage::open(
        &path,
        OpenOptions {
            fsync: false,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    // A root referring to oid 1; oids 2.. are garbage once replaced.
    let root = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01(X\x01\x00\x00\x00aC\x08\x00\x00\x00\x00\x00\x00\x00\x01h\x00\x86Qu.".to_vec();
    let leaf = |i: u32| {
        let mut v = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03J".to_vec();
        v.extend_from_slice(&i.to_le_bytes());
        v.push(b'.');
        v
    };
    let mut serials = [Tid::ZERO; 40];
    let mut txn = fs.tpc_begin(BeginOptions::default()).unwrap();
    fs.store(&mut txn, Oid::ZERO, Tid::ZERO, &root).unwrap();
    for (i, s) in serials.iter().enumerate().skip(1) {
        fs.store(&mut txn, Oid::from_u64(i as u64), *s, &leaf(0))
            .unwrap();
    }
    fs.tpc_vote(&mut txn).unwrap();
    let t0 = fs.tpc_finish(txn).unwrap().0;
    serials.iter_mut().skip(1).for_each(|s| *s = t0);
    for round in 1..30u32 {
        let mut txn = fs.tpc_begin(BeginOptions::default()).unwrap();
        fs.store(&mut txn, Oid::from_u64(1), serials[1], &leaf(round))
            .unwrap();
        fs.tpc_vote(&mut txn).unwrap();
        serials[1] = fs.tpc_finish(txn).unwrap().0;
    }
    let pack_at = fs.last_transaction();
    let committer = {
        let fs = Arc::clone(&fs);
        let mut serial = serials[1];
        std::thread::spawn(move || {
            for round in 100..200u32 {
                let mut txn = fs.tpc_begin(BeginOptions::default()).unwrap();
                fs.store(&mut txn, Oid::from_u64(1), serial, &leaf(round))
                    .unwrap();
                fs.tpc_vote(&mut txn).unwrap();
                serial = fs.tpc_finish(txn).unwrap().0;
            }
            serial
        })
    };
    fs.pack(Tid::from_u64(pack_at.as_u64() + 1), true).unwrap();
    let last = committer.join().unwrap();
    assert_eq!(fs.load(Oid::from_u64(1)).unwrap(), (leaf(199), last));
    // Oids 2..39 were never reachable: the root refers to oid 1 only.
    assert!(matches!(fs.load(Oid::from_u64(2)), Err(Error::PosKey(_))));
    assert_eq!(fs.load(Oid::ZERO).unwrap().0, root);
    fs.close().unwrap();
    let report = zeod::check::check(&path, 0, &mut Vec::new())
        .unwrap()
        .unwrap();
    assert_eq!(report.objects, 2);
    // Reopening finds the same state.
    let fs = FileStorage::open(&path, OpenOptions::default()).unwrap();
    assert_eq!(fs.load(Oid::from_u64(1)).unwrap(), (leaf(199), last));
    assert!(fs.history(Oid::from_u64(1), 1000).unwrap().len() >= 100);
}

#[test]
fn pack_keeping_old_files_moves_dropped_blobs_aside() {
    let (dir, path) = copy_fixture("e_blobs");
    let options = OpenOptions {
        blob_dir: Some(dir.path().join("blobs")),
        ..OpenOptions::default()
    };
    let fs = FileStorage::open(&path, options).unwrap();
    fs.pack(Tid::from_unix(fs.last_transaction().to_unix() + 0.5), true)
        .unwrap();
    let rel = "0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x01/0x03f58e0008888888.blob";
    assert!(!dir.path().join("blobs").join(rel).exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("blobs.old").join(rel)).unwrap(),
        "hello blob one\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("blobs.old/.layout")).unwrap(),
        "bushy"
    );
    assert!(dir.path().join("Data.fs.old").exists());
    // Kept blobs are hard-linked into blobs.old too (as ZODB does), so
    // Data.fs.old with blobs.old is the whole pre-pack database.
    use std::os::unix::fs::MetadataExt;
    for kept in expected("e_blobs_packed")["blob_files_after_pack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .filter(|p| p.ends_with(".blob"))
    {
        let rel = kept.strip_prefix("blobs/").unwrap();
        let live = std::fs::metadata(dir.path().join("blobs").join(rel)).unwrap();
        let old = std::fs::metadata(dir.path().join("blobs.old").join(rel)).unwrap();
        assert_eq!((live.dev(), live.ino()), (old.dev(), old.ino()), "{rel}");
    }
}
