//! Conflict resolution inside FileStorage's store path: a stale store of a
//! BTrees bucket or Length is merged, written, reported by `tpc_vote`, and
//! readable; everything else, or a storage with resolution switched off,
//! keeps raising `Conflict`.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::rc::Rc;
use std::sync::Arc;

use zeod::ids::{Oid, Tid};
use zeod::record::{self, Global, Value};
use zeod::storage::{BeginOptions, Error, FileStorage, OpenOptions};

fn class(module: &str, name: &str) -> Value {
    Value::Global(Rc::new(Global {
        module: module.into(),
        name: name.into(),
    }))
}

fn length(n: i128) -> Vec<u8> {
    record::write(&class("BTrees.Length", "Length"), &Value::Int(n)).unwrap()
}

fn bucket(items: &[i128]) -> Vec<u8> {
    let items = Value::tuple(items.iter().map(|&i| Value::Int(i)).collect());
    record::write(
        &class("BTrees.IIBTree", "IIBucket"),
        &Value::tuple(vec![items]),
    )
    .unwrap()
}

fn open(dir: &tempfile::TempDir, resolve_conflicts: bool) -> Arc<FileStorage> {
    FileStorage::open(
        &dir.path().join("Data.fs"),
        OpenOptions {
            fsync: false,
            resolve_conflicts,
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

/// One transaction storing `data` for `oid` based on `serial`: the
/// committed tid and the vote's resolved oids, or the store's error.
fn commit(fs: &FileStorage, oid: Oid, serial: Tid, data: &[u8]) -> Result<(Tid, Vec<Oid>), Error> {
    let mut txn = fs.tpc_begin(BeginOptions::default()).unwrap();
    if let Err(e) = fs.store(&mut txn, oid, serial, data) {
        fs.tpc_abort(txn);
        return Err(e);
    }
    let resolved = fs.tpc_vote(&mut txn).unwrap();
    let (tid, _) = fs.tpc_finish(txn).unwrap();
    Ok((tid, resolved))
}

#[test]
fn stale_length_store_is_merged_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&dir, true);
    let oid = Oid::from_u64(1);
    let (t1, _) = commit(&fs, oid, Tid::ZERO, &length(5)).unwrap();
    let (t2, resolved) = commit(&fs, oid, t1, &length(8)).unwrap();
    assert!(resolved.is_empty());
    // Based on t1 (5 → 6) while t2 (8) is current: 8 + 6 - 5.
    let (t3, resolved) = commit(&fs, oid, t1, &length(6)).unwrap();
    assert_eq!(resolved, vec![oid]);
    assert!(t3 > t2);
    assert_eq!(fs.load(oid).unwrap(), (length(9), t3));
}

#[test]
fn stale_bucket_store_is_merged_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let oid = Oid::from_u64(3);
    {
        let fs = open(&dir, true);
        let (t1, _) = commit(&fs, oid, Tid::ZERO, &bucket(&[1, 10, 2, 20])).unwrap();
        commit(&fs, oid, t1, &bucket(&[1, 10, 2, 20, 3, 30])).unwrap();
        let (_, resolved) = commit(&fs, oid, t1, &bucket(&[1, 11, 2, 20])).unwrap();
        assert_eq!(resolved, vec![oid]);
        fs.close().unwrap();
    }
    let fs = open(&dir, true);
    assert_eq!(fs.load(oid).unwrap().0, bucket(&[1, 11, 2, 20, 3, 30]));
}

#[test]
fn unresolvable_or_disabled_conflicts_stay_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&dir, true);
    let oid = Oid::from_u64(2);
    let (t1, _) = commit(&fs, oid, Tid::ZERO, &bucket(&[1, 10, 2, 20])).unwrap();
    let (t2, _) = commit(&fs, oid, t1, &bucket(&[1, 10, 2, 21])).unwrap();
    // Both changed key 2: BTrees reason 1.
    match commit(&fs, oid, t1, &bucket(&[1, 10, 2, 22])) {
        Err(Error::Conflict {
            oid: o,
            committed,
            serial,
        }) => assert_eq!((o, committed, serial), (oid, t2, t1)),
        other => panic!("{other:?}"),
    }
    // A class without server-side resolution.
    let pm = record::write(
        &class("persistent.mapping", "PersistentMapping"),
        &Value::None,
    )
    .unwrap();
    let other = Oid::from_u64(4);
    let (p1, _) = commit(&fs, other, Tid::ZERO, &pm).unwrap();
    commit(&fs, other, p1, &pm).unwrap();
    assert!(matches!(
        commit(&fs, other, p1, &pm),
        Err(Error::Conflict { .. })
    ));
    fs.close().unwrap();
    drop(fs);

    let fs = open(&dir, false);
    let len = Oid::from_u64(5);
    let (l1, _) = commit(&fs, len, Tid::ZERO, &length(1)).unwrap();
    commit(&fs, len, l1, &length(2)).unwrap();
    assert!(matches!(
        commit(&fs, len, l1, &length(3)),
        Err(Error::Conflict { .. })
    ));
}
