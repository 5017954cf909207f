//! Group commit in the storage: sealed transactions free the commit slot,
//! share one fsync, are seen by the write side (conflicts) before readers
//! see them, are published in tid order, and a pack waits for them.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::path::Path;
use std::sync::Arc;

use zeod::ids::{Oid, Tid};
use zeod::storage::{BeginOptions, Error, FileStorage, OpenOptions, Transaction, TxnMeta};

fn open(dir: &Path, fsync: bool) -> Arc<FileStorage> {
    let options = OpenOptions {
        fsync,
        ..OpenOptions::default()
    };
    FileStorage::open(&dir.join("Data.fs"), options).unwrap()
}

fn begin(fs: &FileStorage) -> Transaction {
    fs.tpc_begin(BeginOptions {
        meta: TxnMeta {
            user: b"tester".to_vec(),
            description: b"group".to_vec(),
            extension: vec![],
        },
        ..BeginOptions::default()
    })
    .unwrap()
}

/// Not a class zeod can merge, so a stale store stays a conflict.
fn pickle(text: &str) -> Vec<u8> {
    let mut v = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03X".to_vec();
    v.extend_from_slice(&(text.len() as u32).to_le_bytes());
    v.extend_from_slice(text.as_bytes());
    v.extend_from_slice(b"q\x01.");
    v
}

/// Begins, stores and votes one transaction, then seals it.
fn seal(fs: &FileStorage, tag: u64, writes: &[(Oid, Tid, Vec<u8>)]) -> zeod::storage::SealTicket {
    let mut txn = begin(fs);
    for (oid, serial, data) in writes {
        fs.store(&mut txn, *oid, *serial, data).unwrap();
    }
    fs.tpc_vote(&mut txn).unwrap();
    fs.seal(txn, tag).unwrap()
}

#[test]
fn sealed_transactions_share_one_fsync_and_publish_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(dir.path(), true);
    let oids = fs.new_oids(2).unwrap();
    let size = fs.size();
    let first = seal(&fs, 1, &[(oids[0], Tid::ZERO, pickle("a1"))]);
    // The slot is free again: a second transaction is written meanwhile.
    let second = seal(&fs, 2, &[(oids[1], Tid::ZERO, pickle("b1"))]);
    assert!(second.tid > first.tid);
    // Neither is visible to readers before it is durable and published.
    assert!(matches!(fs.load(oids[0]), Err(Error::PosKey(_))));
    assert_eq!((fs.size(), fs.last_transaction()), (size, Tid::ZERO));

    let before = fs.fsync_counts();
    fs.wait_durable(&second).unwrap();
    // The fsync the second one led covered the first too.
    fs.wait_durable(&first).unwrap();
    let after = fs.fsync_counts();
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 2));

    let published = fs.publish_durable();
    let order: Vec<(Tid, u64, Vec<Oid>)> = published
        .into_iter()
        .map(|c| (c.tid, c.tag, c.oids))
        .collect();
    assert_eq!(
        order,
        vec![
            (first.tid, 1, vec![oids[0]]),
            (second.tid, 2, vec![oids[1]])
        ]
    );
    assert!(fs.publish_durable().is_empty());
    assert_eq!(fs.load(oids[1]).unwrap(), (pickle("b1"), second.tid));
    assert_eq!(fs.last_transaction(), second.tid);

    drop(fs);
    let fs = open(dir.path(), true);
    assert_eq!(fs.load(oids[0]).unwrap(), (pickle("a1"), first.tid));
    assert_eq!(fs.load(oids[1]).unwrap(), (pickle("b1"), second.tid));
}

#[test]
fn the_write_side_sees_sealed_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(dir.path(), true);
    let oid = fs.new_oids(1).unwrap()[0];
    let t1 = fs
        .tpc_finish({
            let mut txn = begin(&fs);
            fs.store(&mut txn, oid, Tid::ZERO, &pickle("v1")).unwrap();
            txn
        })
        .unwrap()
        .0;
    let sealed = seal(&fs, 1, &[(oid, t1, pickle("v2"))]);
    // Readers still see t1 ...
    assert_eq!(fs.get_tid(oid).unwrap(), t1);
    // ... but a store based on t1 conflicts with the sealed transaction,
    // and so does a read-current check.
    let mut txn = begin(&fs);
    assert!(txn.tid > sealed.tid);
    match fs.store(&mut txn, oid, t1, &pickle("v3")) {
        Err(Error::Conflict {
            committed, serial, ..
        }) => assert_eq!((committed, serial), (sealed.tid, t1)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match fs.check_current_serial(&mut txn, oid, t1) {
        Err(Error::ReadConflict { committed, .. }) => assert_eq!(committed, sealed.tid),
        other => panic!("expected a read conflict, got {other:?}"),
    }
    // A store based on the sealed revision is fine, and lands after it.
    fs.store(&mut txn, oid, sealed.tid, &pickle("v3")).unwrap();
    fs.tpc_vote(&mut txn).unwrap();
    let third = fs.seal(txn, 2).unwrap();
    fs.wait_durable(&third).unwrap();
    assert_eq!(fs.publish_durable().len(), 2);
    assert_eq!(fs.load(oid).unwrap(), (pickle("v3"), third.tid));
    assert_eq!(fs.load_serial(oid, sealed.tid).unwrap(), pickle("v2"));
}

#[test]
fn without_fsync_a_sealed_transaction_is_published_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(dir.path(), false);
    let oid = fs.new_oids(1).unwrap()[0];
    let sealed = seal(&fs, 7, &[(oid, Tid::ZERO, pickle("x"))]);
    let published = fs.publish_durable();
    assert_eq!(published.len(), 1);
    assert_eq!((published[0].tid, published[0].tag), (sealed.tid, 7));
    fs.wait_durable(&sealed).unwrap();
    assert_eq!(fs.fsync_counts(), (0, 0));
    assert_eq!(fs.load(oid).unwrap().1, sealed.tid);
}

/// Committers in threads, each finishing as a server does (seal, then
/// wait and publish outside the slot), while a pack runs: every commit
/// survives the pack and a reopen.
#[test]
fn pack_runs_beside_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(dir.path(), true);
    let oids = fs.new_oids(8).unwrap();
    // History for the pack to drop.
    let mut serials = vec![Tid::ZERO; oids.len()];
    for round in 0..3 {
        for (i, oid) in oids.iter().enumerate() {
            let ticket = seal(
                &fs,
                0,
                &[(*oid, serials[i], pickle(&format!("{i}/{round}")))],
            );
            fs.wait_durable(&ticket).unwrap();
            fs.publish_durable();
            serials[i] = ticket.tid;
        }
    }
    let pack_time = Tid::now();
    let writers: Vec<_> = oids
        .iter()
        .enumerate()
        .map(|(i, oid)| {
            let (fs, oid, mut serial) = (Arc::clone(&fs), *oid, serials[i]);
            std::thread::spawn(move || {
                for n in 0..25 {
                    let data = pickle(&format!("{i}:{n}"));
                    let ticket = loop {
                        let mut txn = match fs.tpc_begin(BeginOptions::default()) {
                            Ok(txn) => txn,
                            Err(Error::TransactionInProgress) => {
                                std::thread::yield_now();
                                continue;
                            }
                            Err(e) => panic!("tpc_begin: {e}"),
                        };
                        fs.store(&mut txn, oid, serial, &data).unwrap();
                        fs.tpc_vote(&mut txn).unwrap();
                        break fs.seal(txn, i as u64).unwrap();
                    };
                    fs.wait_durable(&ticket).unwrap();
                    fs.publish_durable();
                    serial = ticket.tid;
                }
                (oid, serial, pickle(&format!("{i}:24")))
            })
        })
        .collect();
    fs.pack(pack_time, true).unwrap();
    let last: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    for (oid, tid, data) in &last {
        assert_eq!(&fs.load(*oid).unwrap(), &(data.clone(), *tid));
    }
    fs.close().unwrap();
    drop(fs);
    let fs = open(dir.path(), true);
    for (oid, tid, data) in &last {
        assert_eq!(&fs.load(*oid).unwrap(), &(data.clone(), *tid));
    }
}
