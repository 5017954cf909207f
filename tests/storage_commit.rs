//! The write path of our FileStorage against its own reads and the
//! on-disk promises: visibility only after finish, conflicts, aborts,
//! restore, delete, undo, blobs, oids, the lock, reopen.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use zeod::ids::{Oid, Tid};
use zeod::storage::{BeginOptions, Error, FileStorage, OpenOptions, TxnMeta};

fn open_new(dir: &Path) -> Arc<FileStorage> {
    FileStorage::open(&dir.join("Data.fs"), OpenOptions::default()).unwrap()
}

fn meta(desc: &str) -> BeginOptions {
    BeginOptions {
        meta: TxnMeta {
            user: b"tester".to_vec(),
            description: desc.as_bytes().to_vec(),
            extension: vec![],
        },
        ..BeginOptions::default()
    }
}

/// A pickle-shaped payload; the storage treats it as opaque bytes.
fn pickle(text: &str) -> Vec<u8> {
    let mut v = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03X".to_vec();
    v.extend_from_slice(&(text.len() as u32).to_le_bytes());
    v.extend_from_slice(text.as_bytes());
    v.extend_from_slice(b"q\x01.");
    v
}

fn commit(fs: &FileStorage, writes: &[(Oid, Tid, Vec<u8>)]) -> Tid {
    let mut txn = fs.tpc_begin(meta("commit")).unwrap();
    for (oid, serial, data) in writes {
        fs.store(&mut txn, *oid, *serial, data).unwrap();
    }
    fs.tpc_vote(&mut txn).unwrap();
    fs.tpc_finish(txn).unwrap().0
}

#[test]
fn a_new_file_commits_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_new(dir.path());
    assert_eq!(
        (fs.size(), fs.len(), fs.last_transaction()),
        (4, 0, Tid::ZERO)
    );
    let oids = fs.new_oids(2).unwrap();
    assert_eq!(oids, vec![Oid::from_u64(1), Oid::from_u64(2)]);
    let t1 = commit(
        &fs,
        &[
            (Oid::ZERO, Tid::ZERO, pickle("root")),
            (oids[0], Tid::ZERO, pickle("one")),
        ],
    );
    let t2 = commit(&fs, &[(oids[0], t1, pickle("one v2"))]);
    assert!(t2 > t1);
    assert_eq!(fs.load(oids[0]).unwrap(), (pickle("one v2"), t2));
    assert_eq!(
        fs.load_before(oids[0], t2).unwrap().unwrap().data,
        pickle("one")
    );
    assert_eq!(fs.history(oids[0], 10).unwrap().len(), 2);
    let size = fs.size();
    fs.close().unwrap();
    drop(fs);

    let fs = open_new(dir.path());
    assert_eq!(fs.size(), size);
    assert_eq!(fs.last_transaction(), t2);
    assert_eq!(fs.load(Oid::ZERO).unwrap(), (pickle("root"), t1));
    // The oid counter continues after the highest oid in the file (oid 2
    // was handed out but never stored, so ZODB hands it out again).
    assert_eq!(fs.new_oids(1).unwrap(), vec![Oid::from_u64(2)]);
    let report = zeod::check::check(&dir.path().join("Data.fs"), 0, &mut Vec::new())
        .unwrap()
        .unwrap();
    assert_eq!(
        (report.transactions, report.records, report.objects),
        (2, 3, 2)
    );
}

#[test]
fn nothing_is_visible_before_finish_and_abort_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_new(dir.path());
    let t1 = commit(&fs, &[(Oid::ZERO, Tid::ZERO, pickle("root"))]);
    let size = fs.size();

    let mut txn = fs.tpc_begin(meta("aborted")).unwrap();
    fs.store(&mut txn, Oid::ZERO, t1, &pickle("never")).unwrap();
    fs.store(&mut txn, Oid::from_u64(7), Tid::ZERO, &pickle("new"))
        .unwrap();
    fs.tpc_vote(&mut txn).unwrap();
    // Voted: on disk with status 'c', invisible to every read.
    assert!(std::fs::metadata(dir.path().join("Data.fs")).unwrap().len() > size);
    assert_eq!(fs.load(Oid::ZERO).unwrap().1, t1);
    assert!(matches!(fs.load(Oid::from_u64(7)), Err(Error::PosKey(_))));
    assert_eq!((fs.size(), fs.last_transaction()), (size, t1));
    assert_eq!(fs.iterator(None, None).count(), 1);
    fs.tpc_abort(txn);
    assert_eq!(
        std::fs::metadata(dir.path().join("Data.fs")).unwrap().len(),
        size
    );

    // The aborted tid is not reused, and the next commit is clean.
    let t2 = commit(&fs, &[(Oid::ZERO, t1, pickle("root v2"))]);
    assert!(t2 > t1);
    assert_eq!(fs.iterator(None, None).count(), 2);
    assert!(
        zeod::check::check(&dir.path().join("Data.fs"), 0, &mut Vec::new())
            .unwrap()
            .is_ok()
    );
}

#[test]
fn concurrent_readers_only_ever_see_finished_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(
        &dir.path().join("Data.fs"),
        OpenOptions {
            fsync: false,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let mut serial = commit(&fs, &[(Oid::ZERO, Tid::ZERO, pickle("0"))]);
    let stop = Arc::new(AtomicBool::new(false));
    let reads: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let readers: Vec<_> = (0..2)
        .map(|k| {
            let (fs, stop, reads) = (Arc::clone(&fs), Arc::clone(&stop), Arc::clone(&reads));
            std::thread::spawn(move || {
                let mut seen = 0;
                let mut last = Tid::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    reads[k].fetch_add(1, Ordering::Relaxed);
                    let (data, tid) = fs.load(Oid::ZERO).unwrap();
                    assert!(tid >= last, "went back in time");
                    assert!(tid <= fs.last_transaction());
                    assert_eq!(fs.load_serial(Oid::ZERO, tid).unwrap(), data);
                    last = tid;
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    // Keep committing until both readers have really raced with us (on a
    // loaded machine a thread may start late).
    let mut i = 0;
    let started = std::time::Instant::now();
    let min_reads = || {
        reads
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    };
    while i < 200 || (min_reads() < 500 && started.elapsed() < std::time::Duration::from_secs(60)) {
        i += 1;
        let mut txn = fs.tpc_begin(meta("bump")).unwrap();
        fs.store(&mut txn, Oid::ZERO, serial, &pickle(&i.to_string()))
            .unwrap();
        fs.tpc_vote(&mut txn).unwrap();
        assert_eq!(
            fs.load(Oid::ZERO).unwrap().1,
            serial,
            "voted data visible before finish"
        );
        if i % 7 == 0 {
            fs.tpc_abort(txn);
        } else {
            serial = fs.tpc_finish(txn).unwrap().0;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

#[test]
fn conflicts_and_read_conflicts_name_the_serials() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_new(dir.path());
    let t1 = commit(&fs, &[(Oid::ZERO, Tid::ZERO, pickle("root"))]);
    let t2 = commit(&fs, &[(Oid::ZERO, t1, pickle("root 2"))]);
    let mut txn = fs.tpc_begin(meta("stale")).unwrap();
    match fs.store(&mut txn, Oid::ZERO, t1, &pickle("stale")) {
        Err(Error::Conflict {
            oid,
            committed,
            serial,
        }) => assert_eq!((oid, committed, serial), (Oid::ZERO, t2, t1)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match fs.check_current_serial(&mut txn, Oid::ZERO, t1) {
        Err(Error::ReadConflict {
            committed, serial, ..
        }) => assert_eq!((committed, serial), (t2, t1)),
        other => panic!("expected a read conflict, got {other:?}"),
    }
    fs.check_current_serial(&mut txn, Oid::ZERO, t2).unwrap();
    assert!(matches!(
        fs.check_current_serial(&mut txn, Oid::from_u64(9), t2),
        Err(Error::PosKey(_))
    ));
    assert!(matches!(
        fs.delete_object(&mut txn, Oid::ZERO, t1),
        Err(Error::Conflict { .. })
    ));
    fs.tpc_abort(txn);
}

#[test]
fn one_transaction_at_a_time_and_a_dropped_one_frees_the_storage() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_new(dir.path());
    let mut txn = fs.tpc_begin(meta("first")).unwrap();
    assert!(matches!(
        fs.tpc_begin(meta("second")),
        Err(Error::TransactionInProgress)
    ));
    fs.store(&mut txn, Oid::ZERO, Tid::ZERO, &pickle("root"))
        .unwrap();
    fs.tpc_vote(&mut txn).unwrap();
    drop(txn); // a client vanished between vote and finish
    let t = commit(&fs, &[(Oid::ZERO, Tid::ZERO, pickle("root again"))]);
    assert_eq!(fs.load(Oid::ZERO).unwrap(), (pickle("root again"), t));
    assert!(
        zeod::check::check(&dir.path().join("Data.fs"), 0, &mut Vec::new())
            .unwrap()
            .is_ok()
    );
}

#[test]
fn explicit_tids_restore_and_back_pointers() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_new(dir.path());
    let t1 = Tid::from_u64(0x03f5_8e00_0444_4444);
    let mut txn = fs
        .tpc_begin(BeginOptions {
            tid: Some(t1),
            ..meta("copy 1")
        })
        .unwrap();
    assert_eq!(txn.tid, t1);
    fs.restore(&mut txn, Oid::ZERO, t1, Some(&pickle("root")), None)
        .unwrap();
    fs.restore(&mut txn, Oid::from_u64(5), t1, Some(&pickle("five")), None)
        .unwrap();
    fs.tpc_vote(&mut txn).unwrap();
    fs.tpc_finish(txn).unwrap();
    assert!(matches!(
        fs.tpc_begin(BeginOptions {
            tid: Some(t1),
            ..meta("same")
        }),
        Err(Error::TidNotIncreasing { .. })
    ));
    // The restore of oid 5 bumped the oid counter.
    assert_eq!(fs.new_oids(1).unwrap(), vec![Oid::from_u64(6)]);

    let t2 = Tid::from_u64(0x03f5_8e00_0888_8888);
    let mut txn = fs
        .tpc_begin(BeginOptions {
            tid: Some(t2),
            ..meta("copy 2")
        })
        .unwrap();
    // Same data as in t1: becomes a back pointer; None: an undone creation.
    fs.restore(
        &mut txn,
        Oid::from_u64(5),
        t2,
        Some(&pickle("five")),
        Some(t1),
    )
    .unwrap();
    fs.restore(&mut txn, Oid::ZERO, t2, Some(&pickle("root 2")), Some(t1))
        .unwrap();
    fs.restore(&mut txn, Oid::from_u64(8), t2, None, None)
        .unwrap();
    fs.tpc_vote(&mut txn).unwrap();
    fs.tpc_finish(txn).unwrap();
    let txns: Vec<_> = fs.iterator(None, None).map(|t| t.unwrap()).collect();
    let recs = &txns[1].records;
    assert_eq!(
        (recs[0].data.as_deref(), recs[0].data_txn),
        (Some(&pickle("five")[..]), Some(t1))
    );
    assert_eq!(
        (recs[1].data.as_deref(), recs[1].data_txn),
        (Some(&pickle("root 2")[..]), None)
    );
    assert_eq!((recs[2].data.as_deref(), recs[2].data_txn), (None, None));
    assert_eq!(fs.history(Oid::from_u64(5), 5).unwrap()[0].size, 0);
    assert_eq!(fs.load(Oid::from_u64(5)).unwrap(), (pickle("five"), t2));
    assert!(matches!(fs.load(Oid::from_u64(8)), Err(Error::PosKey(_))));
}

#[test]
fn delete_undo_and_invalidations() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_new(dir.path());
    let t1 = commit(
        &fs,
        &[
            (Oid::ZERO, Tid::ZERO, pickle("root")),
            (Oid::from_u64(1), Tid::ZERO, pickle("a")),
        ],
    );
    let t2 = commit(&fs, &[(Oid::from_u64(1), t1, pickle("a2"))]);
    let mut txn = fs.tpc_begin(meta("delete")).unwrap();
    fs.delete_object(&mut txn, Oid::from_u64(1), t2).unwrap();
    fs.tpc_vote(&mut txn).unwrap();
    let (t3, oids) = fs.tpc_finish(txn).unwrap();
    assert_eq!(oids, vec![Oid::from_u64(1)]);
    assert!(matches!(fs.load(Oid::from_u64(1)), Err(Error::PosKey(_))));
    assert!(matches!(
        fs.get_tid(Oid::from_u64(1)),
        Err(Error::PosKey(_))
    ));
    assert!(matches!(
        fs.load_before(Oid::from_u64(1), Tid::MAX),
        Err(Error::PosKey(_))
    ));
    assert_eq!(
        fs.load_before(Oid::from_u64(1), t3).unwrap().unwrap().data,
        pickle("a2")
    );
    assert_eq!(fs.len(), 2);

    // Undo the delete: the object is back with t2's data.
    let log = fs.undo_log(0, -20).unwrap();
    assert_eq!(
        log.iter().map(|u| u.tid).collect::<Vec<_>>(),
        vec![t3, t2, t1]
    );
    let mut txn = fs.tpc_begin(meta("undo delete")).unwrap();
    assert_eq!(
        fs.undo(&mut txn, &log[0].id).unwrap(),
        vec![Oid::from_u64(1)]
    );
    fs.tpc_vote(&mut txn).unwrap();
    let (t4, _) = fs.tpc_finish(txn).unwrap();
    assert_eq!(fs.load(Oid::from_u64(1)).unwrap(), (pickle("a2"), t4));

    // Undoing t1 (the creation) now conflicts for a, which later
    // transactions changed; the root could be undone, but nothing is kept.
    let mut txn = fs.tpc_begin(meta("undo create")).unwrap();
    match fs.undo(&mut txn, &log[2].id) {
        Err(Error::Undo(errs)) => assert_eq!(
            errs,
            vec![(
                Some(Oid::from_u64(1)),
                "Can't undo an add transaction followed by conflicting transactions.".to_string()
            )]
        ),
        other => panic!("expected undo errors, got {other:?}"),
    }
    assert!(matches!(
        fs.undo(&mut txn, b"not base64!"),
        Err(Error::Undo(_))
    ));
    fs.tpc_abort(txn);

    assert_eq!(
        fs.last_invalidations(2).unwrap(),
        vec![(t4, vec![Oid::from_u64(1)]), (t3, vec![Oid::from_u64(1)])]
    );
    assert_eq!(
        fs.invalidations_since(t2).unwrap(),
        Some((t4, vec![Oid::from_u64(1)]))
    );
    assert_eq!(fs.invalidations_since(t4).unwrap(), Some((t4, vec![])));
    assert_eq!(
        fs.invalidations_since(t1).unwrap(),
        Some((t4, vec![Oid::from_u64(1)]))
    );
    // Older than the first transaction: the caller must verify its cache.
    assert_eq!(fs.invalidations_since(Tid::ZERO).unwrap(), None);
}

#[test]
fn the_lock_keeps_a_second_writer_out() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_new(dir.path());
    let path = dir.path().join("Data.fs");
    assert!(matches!(
        FileStorage::open(&path, OpenOptions::default()),
        Err(Error::Locked { .. })
    ));
    let lock = std::fs::read_to_string(dir.path().join("Data.fs.lock")).unwrap();
    assert_eq!(lock, format!(" {}\n", std::process::id()));
    // Readers need no lock.
    FileStorage::open(
        &path,
        OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    fs.close().unwrap();
    assert!(matches!(
        fs.tpc_begin(meta("closed")),
        Err(Error::BadArgument(_))
    ));
    FileStorage::open(&path, OpenOptions::default()).unwrap();
}

#[test]
fn blobs_are_installed_at_vote_and_removed_on_abort() {
    let dir = tempfile::tempdir().unwrap();
    let blob_dir = dir.path().join("blobs");
    let fs = FileStorage::open(
        &dir.path().join("Data.fs"),
        OpenOptions {
            blob_dir: Some(blob_dir.clone()),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(blob_dir.join(".layout")).unwrap(),
        "bushy"
    );
    let tmp = fs.blob_tmp_dir().unwrap();
    let blob_pickle = b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.".to_vec();

    let upload = tmp.join("upload1");
    std::fs::write(&upload, b"blob bytes").unwrap();
    let mut txn = fs.tpc_begin(meta("blob")).unwrap();
    fs.store_blob(&mut txn, Oid::from_u64(1), Tid::ZERO, &blob_pickle, &upload)
        .unwrap();
    fs.tpc_vote(&mut txn).unwrap();
    let tid = txn.tid;
    let want = blob_dir.join(format!(
        "0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x01/{}.blob",
        tid.repr()
    ));
    assert!(want.is_file() && !upload.exists());
    fs.tpc_finish(txn).unwrap();
    assert_eq!(fs.load_blob(Oid::from_u64(1), tid).unwrap(), want);
    assert_eq!(std::fs::read(&want).unwrap(), b"blob bytes");

    let upload = tmp.join("upload2");
    std::fs::write(&upload, b"second").unwrap();
    let mut txn = fs.tpc_begin(meta("blob aborted")).unwrap();
    fs.store_blob(&mut txn, Oid::from_u64(1), tid, &blob_pickle, &upload)
        .unwrap();
    fs.tpc_vote(&mut txn).unwrap();
    let aborted = txn.tid;
    assert!(fs.load_blob(Oid::from_u64(1), aborted).is_ok());
    fs.tpc_abort(txn);
    assert!(matches!(
        fs.load_blob(Oid::from_u64(1), aborted),
        Err(Error::PosKey(_))
    ));
    assert_eq!(fs.load_blob(Oid::from_u64(1), tid).unwrap(), want);
}

#[test]
fn quota_and_empty_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(
        &dir.path().join("Data.fs"),
        OpenOptions {
            quota: Some(200),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    // An empty transaction is legal and advances the tid.
    let mut txn = fs.tpc_begin(meta("empty")).unwrap();
    fs.tpc_vote(&mut txn).unwrap();
    let (t, oids) = fs.tpc_finish(txn).unwrap();
    assert!(oids.is_empty());
    assert_eq!(fs.last_transaction(), t);
    let mut txn = fs.tpc_begin(meta("big")).unwrap();
    fs.store(&mut txn, Oid::ZERO, Tid::ZERO, &[b'x'; 150])
        .unwrap();
    assert!(matches!(
        fs.store(&mut txn, Oid::from_u64(1), Tid::ZERO, b"y"),
        Err(Error::Quota { .. })
    ));
    fs.tpc_abort(txn);
}

#[test]
fn undo_merges_a_length_changed_later_like_zodb() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_new(dir.path());
    let length = |n: u8| {
        let mut v = b"\x80\x03cBTrees.Length\nLength\nq\x00.\x80\x03K".to_vec();
        v.extend_from_slice(&[n, b'.']);
        v
    };
    let value = |data: &[u8]| {
        let at = data.windows(2).rposition(|w| w == b"\x80\x03").unwrap();
        serde_pickle::value_from_slice(&data[at..], serde_pickle::DeOptions::new()).unwrap()
    };
    let oid = Oid::from_u64(1);
    let t1 = commit(&fs, &[(oid, Tid::ZERO, length(5))]);
    let t2 = commit(&fs, &[(oid, t1, length(8))]);
    let t3 = commit(&fs, &[(oid, t2, length(10))]);
    // Undo t2 (5 -> 8) after t3 (8 -> 10): 10 + 5 - 8 = 7.
    let id = fs
        .undo_log(0, 10)
        .unwrap()
        .into_iter()
        .find(|u| u.tid == t2)
        .unwrap()
        .id;
    let mut txn = fs.tpc_begin(meta("undo t2")).unwrap();
    assert_eq!(fs.undo(&mut txn, &id).unwrap(), vec![oid]);
    fs.tpc_vote(&mut txn).unwrap();
    let (t4, _) = fs.tpc_finish(txn).unwrap();
    let (data, serial) = fs.load(oid).unwrap();
    assert_eq!(serial, t4);
    assert_eq!(value(&data), serde_pickle::Value::I64(7));
    assert!(
        fs.history(oid, 1).unwrap()[0].size > 0,
        "a merged record holds data"
    );
    let _ = t3;
}
