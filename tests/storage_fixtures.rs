//! Every fixture Python ZODB 6.4 wrote opens and answers exactly what
//! Python's FileStorage answered (expected.json): load, history,
//! loadBefore, undoLog, iterator, len, size, lastTransaction; interrupted
//! commits are recovered like Python does; our `.index` is Python's.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

#[path = "common/fixtures.rs"]
mod common;

use std::sync::Arc;

use common::*;
use serde_json::Value;
use zeod::ids::{Oid, Tid};
use zeod::storage::{BeginOptions, Error, FileStorage, OpenOptions, TxnMeta};

fn open(path: &std::path::Path, read_only: bool) -> Arc<FileStorage> {
    let blob_dir = path.parent().unwrap().join("blobs");
    let blob_dir = blob_dir.is_dir().then_some(blob_dir);
    FileStorage::open(
        path,
        OpenOptions {
            read_only,
            blob_dir,
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

fn check_against_expected(name: &str, fs: &Arc<FileStorage>) {
    let exp = expected(name);
    assert_eq!(fs.size(), exp["size"].as_u64().unwrap(), "{name}: size");
    assert_eq!(fs.len() as u64, exp["len"].as_u64().unwrap(), "{name}: len");
    assert_eq!(
        fs.last_transaction(),
        tid(s(&exp["lastTransaction"])),
        "{name}: lastTransaction"
    );

    for (oid_hex, o) in exp["objects"].as_object().unwrap() {
        let oid = oid(oid_hex);
        let ctx = format!("{name} oid {oid_hex}");
        match o["load"].get("data") {
            Some(data) => {
                let (got, serial) = fs.load(oid).unwrap();
                assert_eq!(hex(&got), s(data), "{ctx}: load data");
                assert_eq!(serial, tid(s(&o["load"]["serial"])), "{ctx}: serial");
                assert_eq!(fs.get_tid(oid).unwrap(), serial, "{ctx}: getTid");
                assert_eq!(
                    fs.load_serial(oid, serial).unwrap(),
                    got,
                    "{ctx}: loadSerial"
                );
            }
            None => {
                assert_eq!(s(&o["load"]["error"]), "POSKeyError");
                assert!(
                    matches!(fs.load(oid), Err(Error::PosKey(x)) if x == oid),
                    "{ctx}: load must fail"
                );
                assert!(
                    matches!(fs.get_tid(oid), Err(Error::PosKey(_))),
                    "{ctx}: getTid must fail"
                );
            }
        }
        let hist = fs.history(oid, 100).unwrap();
        let exp_hist = o["history"].as_array().unwrap();
        assert_eq!(hist.len(), exp_hist.len(), "{ctx}: history length");
        for (h, e) in hist.iter().zip(exp_hist) {
            assert_eq!(h.tid, tid(s(&e["tid"])), "{ctx}: history tid");
            assert_eq!(h.size, e["size"].as_u64().unwrap(), "{ctx}: history size");
            assert_eq!(
                h.meta.user,
                s(&e["user_name"]).as_bytes(),
                "{ctx}: history user"
            );
            assert_eq!(
                h.meta.description,
                s(&e["description"]).as_bytes(),
                "{ctx}: history description"
            );
        }
        assert_eq!(fs.history(oid, 1).unwrap().len(), 1);
        for lb in o["loadBefore"].as_array().unwrap() {
            let before = tid(s(&lb["before"]));
            let got = fs.load_before(oid, before).unwrap();
            match lb["result"].as_array() {
                None => assert_eq!(got, None, "{ctx}: loadBefore {before} must be None"),
                Some(r) => {
                    let got = got.unwrap_or_else(|| panic!("{ctx}: loadBefore {before} is None"));
                    assert_eq!(hex(&got.data), s(&r[0]), "{ctx}: loadBefore data");
                    assert_eq!(got.start, tid(s(&r[1])), "{ctx}: loadBefore start");
                    assert_eq!(got.end, r[2].as_str().map(tid), "{ctx}: loadBefore end");
                    // loadSerial of every revision in history.
                    assert_eq!(fs.load_serial(oid, got.start).unwrap(), got.data);
                }
            }
        }
    }

    let txns: Vec<_> = fs.iterator(None, None).collect::<Result<_, _>>().unwrap();
    let exp_txns = exp["iterator"].as_array().unwrap();
    assert_eq!(txns.len(), exp_txns.len(), "{name}: iterator length");
    for (t, e) in txns.iter().zip(exp_txns) {
        let ctx = format!("{name} txn {}", s(&e["tid"]));
        assert_eq!(t.tid, tid(s(&e["tid"])), "{ctx}");
        assert_eq!(t.tid.timestamp_string(), s(&e["tid_str"]), "{ctx}");
        assert_eq!(t.pos, e["pos"].as_u64().unwrap(), "{ctx}: pos");
        assert_eq!(
            char::from(t.status).to_string(),
            s(&e["status"]),
            "{ctx}: status"
        );
        assert_eq!(t.meta.user, s(&e["user"]).as_bytes(), "{ctx}: user");
        assert_eq!(
            t.meta.description,
            s(&e["description"]).as_bytes(),
            "{ctx}: description"
        );
        assert_eq!(
            ext_json(&t.meta.extension),
            e["extension"],
            "{ctx}: extension"
        );
        let recs = e["records"].as_array().unwrap();
        assert_eq!(t.records.len(), recs.len(), "{ctx}: records");
        for (r, er) in t.records.iter().zip(recs) {
            assert_eq!(r.oid, oid(s(&er["oid"])), "{ctx}");
            assert_eq!(r.tid, tid(s(&er["tid"])), "{ctx}");
            assert_eq!(r.pos, er["pos"].as_u64().unwrap(), "{ctx}");
            assert_eq!(
                r.data.as_deref().map(hex),
                er["data"].as_str().map(String::from),
                "{ctx}: data"
            );
            assert_eq!(
                r.data_txn,
                er["data_txn"].as_str().map(tid),
                "{ctx}: data_txn"
            );
        }
    }
    // Iterator ranges are inclusive on both ends.
    if txns.len() >= 3 {
        let (a, b) = (txns[1].tid, txns[txns.len() - 2].tid);
        let sub: Vec<_> = fs
            .iterator(Some(a), Some(b))
            .map(|t| t.unwrap().tid)
            .collect();
        let want: Vec<_> = txns[1..txns.len() - 1].iter().map(|t| t.tid).collect();
        assert_eq!(sub, want, "{name}: iterator(start, stop)");
        let last = txns.last().unwrap().tid;
        let tail: Vec<_> = fs
            .iterator(Some(last), None)
            .map(|t| t.unwrap().tid)
            .collect();
        assert_eq!(tail, vec![last], "{name}: iterator from the last tid");
    }

    let log = fs.undo_log(0, 100).unwrap();
    let exp_log = exp["undoLog"].as_array().unwrap();
    assert_eq!(log.len(), exp_log.len(), "{name}: undoLog length");
    for (u, e) in log.iter().zip(exp_log) {
        assert_eq!(u.id, s(&e["id"]).as_bytes(), "{name}: undo id");
        assert_eq!(u.size, e["size"].as_u64().unwrap(), "{name}: undo size");
        assert_eq!(u.meta.user, s(&e["user_name"]).as_bytes());
        assert_eq!(u.meta.description, s(&e["description"]).as_bytes());
        assert!((u.tid.to_unix() - e["time"].as_f64().unwrap()).abs() < 1e-6);
    }
    if exp_log.len() > 2 {
        let window = fs.undo_log(1, -1).unwrap();
        assert_eq!(window.len(), 1);
        assert_eq!(
            window[0].id,
            s(&exp_log[1]["id"]).as_bytes(),
            "{name}: undoLog(1, -1)"
        );
    }

    // record_iternext walks every oid in order.
    let mut next = None;
    let mut seen = Vec::new();
    loop {
        match fs.record_iternext(next) {
            Ok(Some((oid, _, _, following))) => {
                seen.push(oid);
                match following {
                    Some(n) => next = Some(n),
                    None => break,
                }
            }
            Ok(None) => break,
            // A deleted object (undone creation) has no current data.
            Err(Error::PosKey(oid)) => {
                seen.push(oid);
                next = Some(Oid::from_u64(oid.as_u64() + 1));
            }
            Err(e) => panic!("{name}: record_iternext: {e}"),
        }
    }
    let mut want: Vec<Oid> = exp["objects"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| common::oid(k))
        .collect();
    want.sort();
    assert_eq!(seen, want, "{name}: record_iternext");
}

#[test]
fn every_fixture_opens_and_matches_python() {
    for name in ALL_FIXTURES {
        let (_dir, path) = copy_fixture(name);
        let before = std::fs::read(&path).unwrap();
        let fs = open(&path, true);
        check_against_expected(name, &fs);
        drop(fs);
        let fs = open(&path, false);
        check_against_expected(name, &fs);
        fs.close().unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "{name}: opening must not change Data.fs"
        );
    }
}

#[test]
fn our_index_file_is_byte_identical_to_pythons() {
    for name in ALL_FIXTURES {
        let (_dir, path) = copy_fixture(name);
        let index = path.with_file_name("Data.fs.index");
        let python = std::fs::read(&index).unwrap();
        // Loaded, then saved on close.
        open(&path, false).close().unwrap();
        assert_eq!(
            std::fs::read(&index).unwrap(),
            python,
            "{name}: index after close"
        );
        // Rebuilt by a full scan, saved right after open.
        std::fs::remove_file(&index).unwrap();
        let fs = open(&path, false);
        assert_eq!(
            std::fs::read(&index).unwrap(),
            python,
            "{name}: rebuilt index"
        );
        check_against_expected(name, &fs);
        fs.close().unwrap();
    }
}

#[test]
fn read_only_open_writes_nothing() {
    let (dir, path) = copy_fixture("a_basic");
    std::fs::remove_file(path.with_file_name("Data.fs.index")).unwrap();
    let fs = open(&path, true);
    check_against_expected("a_basic", &fs);
    assert!(matches!(
        fs.tpc_begin(BeginOptions::default()),
        Err(Error::ReadOnly)
    ));
    assert!(matches!(fs.new_oids(1), Err(Error::ReadOnly)));
    fs.close().unwrap();
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, vec!["Data.fs", "expected.json"]);
}

#[test]
fn interrupted_commits_are_cut_and_saved_like_python() {
    for name in ["f_crash_c", "f_crash_partial"] {
        let exp = &expected(name)["recovery"][name];
        let good = expected("a_basic");
        let (dir, path) = copy_fixture(name);
        let original = std::fs::read(&path).unwrap();
        assert_eq!(
            original.len() as u64,
            exp["size_before_open"].as_u64().unwrap()
        );

        // Read-only: stop before the damaged transaction, touch nothing.
        let fs = open(&path, true);
        assert_eq!(fs.size(), 1367);
        check_objects_of_a_basic(&fs, &good);
        drop(fs);
        assert_eq!(std::fs::read(&path).unwrap(), original);
        assert!(!dir.path().join("Data.fs.tr0").exists());

        let fs = open(&path, false);
        assert_eq!(
            fs.size(),
            exp["size_after_open"].as_u64().unwrap(),
            "{name}"
        );
        // Python keeps the cut transaction's tid as the last one, so it is
        // never issued again.
        assert_eq!(
            fs.last_transaction(),
            tid(s(&exp["lastTransaction"])),
            "{name}"
        );
        check_objects_of_a_basic(&fs, &good);
        let now = std::fs::read(&path).unwrap();
        assert_eq!(
            now[..],
            original[..1367],
            "{name}: bytes before the damage changed"
        );
        let tr0 = std::fs::read(dir.path().join("Data.fs.tr0")).unwrap();
        assert_eq!(tr0.len() as u64, exp["tr0_size"].as_u64().unwrap());
        assert_eq!(tr0[..], original[1367..]);

        // The next commit gets a tid after the cut one and lands at 1367.
        let mut txn = fs.tpc_begin(BeginOptions::default()).unwrap();
        assert!(txn.tid > tid(s(&exp["lastTransaction"])));
        let (data, serial) = fs.load(Oid::from_u64(3)).unwrap();
        fs.store(&mut txn, Oid::from_u64(3), serial, &data).unwrap();
        fs.tpc_vote(&mut txn).unwrap();
        fs.tpc_finish(txn).unwrap();
        fs.close().unwrap();
        drop(fs);
        // A second open finds a clean file and makes no .tr1.
        let fs = open(&path, false);
        assert_eq!(fs.iterator(None, None).count(), 5);
        assert!(!dir.path().join("Data.fs.tr1").exists());
    }
}

fn check_objects_of_a_basic(fs: &FileStorage, exp: &Value) {
    for (oid_hex, o) in exp["objects"].as_object().unwrap() {
        let (data, serial) = fs.load(oid(oid_hex)).unwrap();
        assert_eq!(hex(&data), s(&o["load"]["data"]));
        assert_eq!(serial, tid(s(&o["load"]["serial"])));
    }
}

#[test]
fn failed_undo_of_t6_in_b_undo_matches_python() {
    let (_dir, path) = copy_fixture("b_undo");
    let exp = expected("b_undo");
    let fs = open(&path, false);
    let t6 = fs
        .undo_log(0, 100)
        .unwrap()
        .into_iter()
        .find(|u| u.meta.description == b"undo modify a")
        .unwrap();
    let mut txn = fs.tpc_begin(BeginOptions::default()).unwrap();
    let err = fs.undo(&mut txn, &t6.id).unwrap_err();
    match &err {
        Error::Undo(errs) => {
            assert_eq!(
                errs,
                &vec![(
                    Some(Oid::from_u64(1)),
                    "Some data were modified by a later transaction".to_string()
                )]
            )
        }
        other => panic!("expected an undo error, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(
        s(&exp["failed_undo_of_T6"]).ends_with(shown.trim_start_matches("undo failed: ")),
        "{shown} vs {}",
        exp["failed_undo_of_T6"]
    );
    fs.tpc_abort(txn);
    assert_eq!(fs.size(), 1847);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1847);
    assert_eq!(
        s(&exp["undone_T4_id"]).as_bytes(),
        &fs.undo_log(3, -1).unwrap()[0].id[..]
    );
}

#[test]
fn undo_in_a_basic_writes_the_same_records_python_wrote_in_b_undo() {
    // b_undo = a_basic + undo(T4) as T5 (by dave, "undo drop b").
    let (_dir, path) = copy_fixture("a_basic");
    let b = expected("b_undo");
    let fs = open(&path, false);
    let t4 = fs.undo_log(0, 1).unwrap().remove(0);
    let t5 = &b["iterator"][4];
    let mut txn = fs
        .tpc_begin(BeginOptions {
            meta: TxnMeta {
                user: b"dave".to_vec(),
                description: b"undo drop b".to_vec(),
                extension: vec![],
            },
            tid: Some(tid(s(&t5["tid"]))),
            status: None,
        })
        .unwrap();
    let mut oids = fs.undo(&mut txn, &t4.id).unwrap();
    oids.sort();
    assert_eq!(oids, vec![Oid::ZERO, Oid::from_u64(1)]);
    fs.tpc_vote(&mut txn).unwrap();
    let (tid5, _) = fs.tpc_finish(txn).unwrap();
    assert_eq!(tid5, tid(s(&t5["tid"])));
    fs.close().unwrap();
    let ours = std::fs::read(&path).unwrap();
    let python = std::fs::read(fixtures_dir().join("b_undo/Data.fs")).unwrap();
    assert_eq!(
        ours[..],
        python[..1513],
        "T5 differs from Python's undo transaction"
    );
}

#[test]
fn blobs_of_e_blobs_are_found() {
    let (dir, path) = copy_fixture("e_blobs");
    let fs = open(&path, false);
    let exp = expected("e_blobs");
    for f in exp["blob_files"].as_array().unwrap() {
        let p = dir.path().join(s(&f["path"]));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), s(&f["content"]));
    }
    let p = fs
        .load_blob(Oid::from_u64(1), Tid::from_u64(0x03f5_8e00_0ccc_cccc))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(p).unwrap(),
        "hello blob one, version two\n"
    );
    assert!(matches!(
        fs.load_blob(Oid::from_u64(2), Tid::from_u64(0x03f5_8e00_0ccc_cccc)),
        Err(Error::PosKey(_))
    ));
    assert_eq!(fs.blob_tmp_dir().unwrap(), dir.path().join("blobs/tmp"));
}
