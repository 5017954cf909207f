//! `FileStorage::changed_since`, the backwards scan that answers a
//! reconnecting client's `getInvalidations` when the server's queue does
//! not reach back to its tid: exact answers, each bound, and that it never
//! reads the file before the client's tid.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::os::unix::fs::FileExt;

use zeod::ids::{Oid, Tid};
use zeod::storage::{BeginOptions, FileStorage, OpenOptions, Since, SinceBound};

fn commit(fs: &FileStorage, oids: &[Oid], serials: &mut [Tid]) -> Tid {
    let mut txn = fs.tpc_begin(BeginOptions::default()).unwrap();
    for oid in oids {
        let data = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.}q\x01.".to_vec();
        fs.store(&mut txn, *oid, serials[oid.as_u64() as usize], &data)
            .unwrap();
    }
    fs.tpc_vote(&mut txn).unwrap();
    let tid = fs.tpc_finish(txn).unwrap().0;
    for oid in oids {
        serials[oid.as_u64() as usize] = tid;
    }
    tid
}

fn oid(n: u64) -> Oid {
    Oid::from_u64(n)
}

/// 60 transactions: the first writes oids 0..20, then transaction i
/// writes oid i % 10 (and oid 19 every 20th).
fn sixty(fs: &FileStorage) -> Vec<Tid> {
    let mut serials = vec![Tid::ZERO; 20];
    fs.new_oids(19).unwrap();
    let all: Vec<Oid> = (0..20).map(oid).collect();
    let mut tids = vec![commit(fs, &all, &mut serials)];
    for i in 1..60u64 {
        let mut oids = vec![oid(i % 10)];
        if i % 20 == 0 {
            oids.push(oid(19));
        }
        tids.push(commit(fs, &oids, &mut serials));
    }
    tids
}

#[test]
fn answers_exactly_the_oids_changed_after_the_tid() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(&dir.path().join("Data.fs"), OpenOptions::default()).unwrap();
    let tids = sixty(&fs);
    let last = *tids.last().unwrap();
    // After transaction 52: 53..59 wrote oids 3..9.
    assert_eq!(
        fs.changed_since(tids[52], SinceBound::NONE).unwrap(),
        Since::Changed {
            tid: last,
            oids: (3..10).map(oid).collect(),
            transactions: 7
        }
    );
    // After transaction 35: every oid 0..9, and 19 (written by 40).
    let mut want: Vec<Oid> = (0..10).map(oid).collect();
    want.push(oid(19));
    assert_eq!(
        fs.changed_since(tids[35], SinceBound::NONE).unwrap(),
        Since::Changed {
            tid: last,
            oids: want,
            transactions: 24
        }
    );
    assert_eq!(
        fs.changed_since(last, SinceBound::NONE).unwrap(),
        Since::Changed {
            tid: last,
            oids: vec![],
            transactions: 0
        }
    );
    // Before the first transaction: not a history this file holds.
    assert_eq!(
        fs.changed_since(Tid::ZERO, SinceBound::NONE).unwrap(),
        Since::Unknown { transactions: 60 }
    );
}

#[test]
fn bounds_turn_long_absences_into_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(&dir.path().join("Data.fs"), OpenOptions::default()).unwrap();
    let tids = sixty(&fs);
    let at_most = |max_oids| SinceBound {
        not_before: Tid::ZERO,
        max_oids,
    };
    // 53..59 changed 7 oids: 7 is fine, 6 is not.
    assert!(matches!(
        fs.changed_since(tids[52], at_most(7)).unwrap(),
        Since::Changed { .. }
    ));
    assert!(matches!(
        fs.changed_since(tids[52], at_most(6)).unwrap(),
        Since::TooMany { .. }
    ));
    let newer_than = |i: usize| SinceBound {
        not_before: tids[i],
        max_oids: usize::MAX,
    };
    assert!(matches!(
        fs.changed_since(tids[52], newer_than(53)).unwrap(),
        Since::Changed { .. }
    ));
    assert_eq!(
        fs.changed_since(tids[30], newer_than(40)).unwrap(),
        Since::TooOld { transactions: 20 }
    );
}

#[test]
fn never_reads_the_file_before_the_tid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let fs = FileStorage::open(&path, OpenOptions::default()).unwrap();
    let tids = sixty(&fs);
    // Wreck the first transaction's header and records: a scan from the
    // start of the file would fail on them, a scan back from the end
    // never gets there.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xff; 200], 4).unwrap();
    assert!(matches!(
        fs.changed_since(tids[50], SinceBound::NONE).unwrap(),
        Since::Changed {
            transactions: 9,
            ..
        }
    ));
    assert!(fs.changed_since(Tid::ZERO, SinceBound::NONE).is_err());
}
