//! Damaged inputs: a_basic cut at every byte, every byte flipped, bad
//! `.index` files, foreign magic, version records. Each gives a clear
//! error or a correct recovery, never a panic, and nothing before the
//! damage is modified (only an interrupted tail may be cut, and then it is
//! saved byte for byte to `Data.fs.trN`).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

#[path = "common/fixtures.rs"]
mod common;

use std::path::Path;

use common::*;
use zeod::ids::{Oid, Tid};
use zeod::storage::{Error, FileStorage, OpenOptions};

const A_BASIC_TXNS: [u64; 5] = [4, 166, 680, 1025, 1367];

fn open(path: &Path, read_only: bool) -> Result<std::sync::Arc<FileStorage>, Error> {
    FileStorage::open(
        path,
        OpenOptions {
            read_only,
            ..OpenOptions::default()
        },
    )
}

/// Exercises every read; errors are fine, panics are not.
fn read_everything(fs: &std::sync::Arc<FileStorage>) {
    for t in fs.iterator(None, None) {
        let Ok(t) = t else { break };
        for r in t.records {
            let _ = fs.load(r.oid);
            let _ = fs.history(r.oid, 10);
            let _ = fs.load_before(r.oid, r.tid);
            let _ = fs.load_before(r.oid, Tid::MAX);
            let _ = fs.load_serial(r.oid, r.tid);
        }
    }
    let _ = fs.undo_log(0, -100);
    let _ = fs.last_invalidations(10);
    let _ = fs.invalidations_since(Tid::ZERO);
    let _ = fs.record_iternext(None);
}

#[test]
fn a_basic_cut_at_every_byte_recovers_to_the_last_whole_transaction() {
    let original = std::fs::read(fixtures_dir().join("a_basic/Data.fs")).unwrap();
    let python_index = std::fs::read(fixtures_dir().join("a_basic/Data.fs.index")).unwrap();
    let exp = expected("a_basic");
    for cut in 0..=original.len() {
        for with_index in [false, true] {
            let dir = scratch_dir();
            let path = dir.path().join("Data.fs");
            std::fs::write(&path, &original[..cut]).unwrap();
            if with_index {
                std::fs::write(path.with_file_name("Data.fs.index"), &python_index).unwrap();
            }
            if cut == 0 {
                // An empty file is a new storage, but only a writer makes it one.
                assert!(matches!(open(&path, true), Err(Error::Corrupt { .. })));
                assert_eq!(open(&path, false).unwrap().size(), 4);
                assert_eq!(std::fs::read(&path).unwrap(), b"FS30");
                continue;
            }
            if (1..4).contains(&cut) {
                assert!(
                    matches!(open(&path, true), Err(Error::Corrupt { .. })),
                    "cut {cut}"
                );
                assert!(
                    matches!(open(&path, false), Err(Error::Corrupt { .. })),
                    "cut {cut}"
                );
                assert_eq!(std::fs::read(&path).unwrap(), &original[..cut]);
                continue;
            }
            let good = *A_BASIC_TXNS
                .iter()
                .rev()
                .find(|b| **b as usize <= cut.max(4))
                .unwrap();
            let ro = open(&path, true).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            assert_eq!(ro.size(), good, "cut {cut}");
            drop(ro);
            assert_eq!(
                std::fs::read(&path).unwrap().len(),
                cut,
                "read-only open changed the file"
            );

            let fs = open(&path, false).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            assert_eq!(fs.size(), good, "cut {cut}");
            let now = std::fs::read(&path).unwrap();
            assert_eq!(
                now[..],
                original[..good as usize],
                "cut {cut}: bytes before the damage changed"
            );
            let tr0 = std::fs::read(dir.path().join("Data.fs.tr0")).ok();
            let rest = cut.saturating_sub(good as usize);
            if rest >= 23 {
                assert_eq!(
                    tr0.as_deref(),
                    Some(&original[good as usize..cut]),
                    "cut {cut}: .tr0"
                );
            } else {
                assert_eq!(tr0, None, "cut {cut}: a header fragment is not saved");
            }
            // Every committed object loads as Python loads it at that point.
            let txns = A_BASIC_TXNS.iter().position(|b| *b == good).unwrap();
            assert_eq!(fs.iterator(None, None).count(), txns, "cut {cut}");
            if good == 1367 {
                for (oid_hex, o) in exp["objects"].as_object().unwrap() {
                    assert_eq!(
                        hex(&fs.load(oid(oid_hex)).unwrap().0),
                        o["load"]["data"].as_str().unwrap()
                    );
                }
            }
            read_everything(&fs);
        }
    }
}

#[test]
fn every_flipped_byte_gives_an_error_or_a_faithful_recovery() {
    let original = std::fs::read(fixtures_dir().join("a_basic/Data.fs")).unwrap();
    let python_index = std::fs::read(fixtures_dir().join("a_basic/Data.fs.index")).unwrap();
    for at in 0..original.len() {
        let mut damaged = original.clone();
        damaged[at] ^= 0xff;
        let dir = scratch_dir();
        let path = dir.path().join("Data.fs");
        std::fs::write(&path, &damaged).unwrap();

        if let Ok(fs) = open(&path, true) {
            read_everything(&fs);
        }
        // With Python's index beside it, damage before the last transaction
        // goes unnoticed at open (as in Python); reads must still not panic.
        let index = path.with_file_name("Data.fs.index");
        std::fs::write(&index, &python_index).unwrap();
        if let Ok(fs) = open(&path, true) {
            read_everything(&fs);
        }
        std::fs::remove_file(&index).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            damaged,
            "flip at {at}: read-only open wrote"
        );
        // zeod check never panics and never writes.
        let _ = zeod::check::check(&path, 2, &mut Vec::new()).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            damaged,
            "flip at {at}: check wrote"
        );

        match open(&path, false) {
            Ok(fs) => {
                read_everything(&fs);
                let size = fs.size() as usize;
                fs.close().unwrap();
                let now = std::fs::read(&path).unwrap();
                assert_eq!(now.len(), size);
                assert_eq!(now[..], damaged[..size], "flip at {at}: bytes changed");
                // Only a tail may be cut, and it starts at or before the flip.
                if size < damaged.len() {
                    assert!(
                        A_BASIC_TXNS.contains(&(size as u64)) && size <= at,
                        "flip at {at}: cut at {size}"
                    );
                    let tr0 = std::fs::read(dir.path().join("Data.fs.tr0")).unwrap();
                    assert_eq!(tr0[..], damaged[size..], "flip at {at}: .tr0");
                }
            }
            Err(e) => {
                assert!(
                    matches!(e, Error::Corrupt { .. } | Error::VersionedRecord { .. }),
                    "flip at {at}: unexpected error kind {e:?}"
                );
                assert!(!e.to_string().is_empty());
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    damaged,
                    "flip at {at}: a failed open wrote"
                );
            }
        }
    }
}

/// Opens b_undo with the given `.index` bytes; the results must be Python's.
fn open_b_undo_with_index(index: &[u8]) {
    let (_dir, path) = copy_fixture("b_undo");
    let python_index = std::fs::read(path.with_file_name("Data.fs.index")).unwrap();
    std::fs::write(path.with_file_name("Data.fs.index"), index).unwrap();
    let fs = open(&path, false).unwrap();
    let exp = expected("b_undo");
    assert_eq!(fs.len(), 4);
    assert_eq!(fs.size(), 1847);
    for (oid_hex, o) in exp["objects"].as_object().unwrap() {
        match o["load"]["data"].as_str() {
            Some(d) => assert_eq!(hex(&fs.load(oid(oid_hex)).unwrap().0), d),
            None => assert!(fs.load(oid(oid_hex)).is_err()),
        }
    }
    fs.close().unwrap();
    assert_eq!(
        std::fs::read(path.with_file_name("Data.fs.index")).unwrap(),
        python_index
    );
}

#[test]
fn bad_index_files_are_ignored_and_rebuilt() {
    let good = std::fs::read(fixtures_dir().join("b_undo/Data.fs.index")).unwrap();
    // Truncated at every byte.
    for cut in 0..good.len() {
        open_b_undo_with_index(&good[..cut]);
    }
    // Garbage, and the ZODB 3 single-dict format.
    open_b_undo_with_index(b"\x00\x01\x02garbage");
    open_b_undo_with_index(b"\x80\x02}q\x00(U\x03posq\x01M\x57\x05u.");
    // An older, valid index of a prefix of the file: the tail is scanned.
    open_b_undo_with_index(&std::fs::read(fixtures_dir().join("a_basic/Data.fs.index")).unwrap());
    // Positions that do not match the records of the last transaction
    // (oid 1 at 1702 = 0x06a6), or lie past the covered range (oid 3).
    let mut wrong = good.clone();
    let at = wrong
        .windows(6)
        .position(|w| w == [0, 0, 0, 0, 0x06, 0xa6])
        .unwrap();
    wrong[at + 5] ^= 0x01;
    open_b_undo_with_index(&wrong);
    let mut wrong = good.clone();
    let n = wrong.len();
    wrong[n - 8] ^= 0x01;
    open_b_undo_with_index(&wrong);
    // A position past the end of the file.
    let mut past = good.clone();
    past[3] = 0xff;
    open_b_undo_with_index(&past);
}

#[test]
fn foreign_magic_and_python2_files() {
    let dir = scratch_dir();
    let path = dir.path().join("Data.fs");
    let original = std::fs::read(fixtures_dir().join("a_basic/Data.fs")).unwrap();
    for magic in [&b"FS31"[..], b"GIF8", b"\0\0\0\0"] {
        let mut bytes = original.clone();
        bytes[..4].copy_from_slice(magic);
        std::fs::write(&path, &bytes).unwrap();
        for read_only in [true, false] {
            match open(&path, read_only) {
                Err(Error::Corrupt { pos: 0, reason, .. }) => {
                    assert!(reason.contains("FS30"), "{reason}")
                }
                other => panic!("{magic:?}: {:?}", other.map(|_| ())),
            }
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
    let mut py2 = original.clone();
    py2[..4].copy_from_slice(b"FS21");
    std::fs::write(&path, &py2).unwrap();
    match open(&path, false) {
        Err(Error::BadArgument(msg)) => {
            assert!(msg.contains("read-only") && msg.contains("FS21"), "{msg}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let fs = open(&path, true).unwrap();
    assert_eq!(fs.len(), 4);
    assert!(fs.load(Oid::ZERO).is_ok());
    assert_eq!(std::fs::read(&path).unwrap(), py2);
}

#[test]
fn version_records_are_refused_with_a_hint() {
    let (_dir, path) = copy_fixture("a_basic");
    std::fs::remove_file(path.with_file_name("Data.fs.index")).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[731 + 33] = 3; // vlen of oid 1's record in T3
    std::fs::write(&path, &bytes).unwrap();
    match open(&path, false) {
        Err(e @ Error::VersionedRecord { pos: 731, .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("versions") && msg.contains("zodbupdate"),
                "{msg}"
            );
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let damage = zeod::check::check(&path, 0, &mut Vec::new())
        .unwrap()
        .unwrap_err();
    assert_eq!(damage.pos, 731);
}

#[test]
fn zeod_check_exits_non_zero_on_damage_and_never_writes() {
    let bin = env!("CARGO_BIN_EXE_zeod");
    let (_dir, path) = copy_fixture("b_undo");
    let out = std::process::Command::new(bin)
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("7 transactions") && text.contains("no errors detected"),
        "{text}"
    );

    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1513 + 8 + 7] ^= 0x40; // tlen of T6
    std::fs::write(&path, &bytes).unwrap();
    let out = std::process::Command::new(bin)
        .args(["check", "-v"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    // Somewhere inside T6 (1513..1661), whose length no longer adds up.
    let at: u64 = text.rsplit(" at ").next().unwrap().trim().parse().unwrap();
    assert!(
        text.contains("DAMAGED") && (1513..1661).contains(&at),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let (_dir, crashed) = copy_fixture("f_crash_c");
    let out = std::process::Command::new(bin)
        .arg("check")
        .arg(&crashed)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("checkpoint flag"));
}
