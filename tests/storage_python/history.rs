//! A seeded random history of stores, deletes, read checks, restores,
//! undos, commits and aborts, chosen from the storage's current state and
//! recorded as fs_peer.py `apply` operations with their outcomes.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use zeod::ids::{Oid, Tid};
use zeod::storage::{BeginOptions, Error, FileStorage, TxnMeta};

use super::common::*;
use super::peer::text;

/// xorshift64*: a seeded generator is all these tests need.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const ANCHORS: u64 = 3;
const PM: &[u8] = b"cpersistent.mapping\nPersistentMapping\n";

/// A PersistentMapping pickle `{'n': n, 'ref': <anchor>, 'pad': 'xx…'}`
/// (both pickles share one memo, as ZODB writes them).
fn object_pickle(n: u32, anchor: u64, pad: usize) -> Vec<u8> {
    let mut v = b"\x80\x03".to_vec();
    v.extend_from_slice(PM);
    v.extend_from_slice(
        b"q\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03(X\x01\x00\x00\x00nq\x04J",
    );
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(b"X\x03\x00\x00\x00refq\x05C\x08");
    v.extend_from_slice(&anchor.to_be_bytes());
    v.extend_from_slice(b"h\x00\x86q\x06QX\x03\x00\x00\x00padq\x07X");
    v.extend_from_slice(&(pad as u32).to_le_bytes());
    v.extend(std::iter::repeat_n(b'x', pad));
    v.extend_from_slice(b"q\x08us.");
    v
}

fn root_pickle() -> Vec<u8> {
    let mut v = b"\x80\x03".to_vec();
    v.extend_from_slice(PM);
    v.extend_from_slice(b"q\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03(");
    for a in 1..=ANCHORS {
        v.extend_from_slice(b"X\x02\x00\x00\x00a");
        v.push(b'0' + a as u8);
        v.extend_from_slice(b"C\x08");
        v.extend_from_slice(&a.to_be_bytes());
        v.extend_from_slice(b"h\x00\x86Q");
    }
    v.extend_from_slice(b"us.");
    v
}

fn error_name(e: &Error) -> String {
    match e {
        Error::Conflict { .. } => "ConflictError".into(),
        Error::ReadConflict { .. } => "ReadConflictError".into(),
        Error::PosKey(_) => "POSKeyError".into(),
        Error::Undo(_) => "UndoError".into(),
        other => format!("unexpected: {other}"),
    }
}

/// The tid an object's current record has (also for a deletion).
pub fn current_tid(fs: &FileStorage, oid: Oid) -> Option<Tid> {
    fs.history(oid, 1).ok().map(|h| h[0].tid)
}

/// Applies `txns` random transactions to `fs`, choosing each operation
/// from the storage's current state; returns the operations (fs_peer.py
/// `apply` format) and their outcomes.
pub fn random_history(
    fs: &FileStorage,
    seed: u64,
    txns: usize,
    explicit_tids: bool,
) -> (Value, Value) {
    let mut rng = Rng(seed | 1);
    let mut tid = Tid::from_u64(0x03f5_8e00_0444_4444);
    let mut ops_out = Vec::new();
    let mut outcomes = Vec::new();
    let mut objects: Vec<Oid> = Vec::new();
    for i in 0..txns {
        tid = Tid::from_u64(tid.as_u64() + 1 + rng.below(1 << 30));
        let ext = if rng.chance(20) {
            // {'note': 'first'}, pickled as ZODB pickles extensions.
            unhex("80037d710058040000006e6f74657101580500000066697273747102732e")
        } else {
            Vec::new()
        };
        let meta = TxnMeta {
            user: format!("user{}", rng.below(3)).into_bytes(),
            description: format!("txn {i}").into_bytes(),
            extension: ext.clone(),
        };
        let mut txn = fs
            .tpc_begin(BeginOptions {
                meta: meta.clone(),
                tid: explicit_tids.then_some(tid),
                status: None,
            })
            .unwrap();
        let mut ops: Vec<Value> = Vec::new();
        let mut results: Vec<Value> = Vec::new();
        let mut failed = false;
        let mut run = |op: Value, r: Result<Value, Error>, results: &mut Vec<Value>| {
            ops.push(op);
            match r {
                Ok(v) => {
                    results.push(v);
                    true
                }
                Err(e) => {
                    results.push(json!(error_name(&e)));
                    false
                }
            }
        };
        if i == 0 {
            let oids = fs.new_oids(ANCHORS as usize).unwrap();
            let r = fs.store(&mut txn, Oid::ZERO, Tid::ZERO, &root_pickle());
            let data = hex(&root_pickle());
            run(
                json!({"op": "store", "oid": hex(&[0; 8]), "serial": hex(&[0; 8]), "data": data}),
                r.map(|_| json!("ok")),
                &mut results,
            );
            for oid in oids {
                let d = object_pickle(0, 1, 0);
                let r = fs.store(&mut txn, oid, Tid::ZERO, &d);
                run(
                    json!({"op": "store", "oid": hex(&oid.0), "serial": hex(&[0; 8]), "data": hex(&d)}),
                    r.map(|_| json!("ok")),
                    &mut results,
                );
            }
        } else if rng.chance(15) {
            // Undo one of the recent transactions (never the first: the
            // anchors must stay for fsrefs).
            let log = fs.undo_log(0, 10).unwrap();
            let candidates: Vec<_> = log
                .iter()
                .filter(|u| u.meta.description != b"txn 0")
                .collect();
            if let Some(u) = candidates.get(rng.below(candidates.len().max(1) as u64) as usize) {
                let id = text(&u.id);
                let r = fs.undo(&mut txn, &u.id).map(|mut oids| {
                    oids.sort();
                    json!(oids.iter().map(|o| hex(&o.0)).collect::<Vec<_>>())
                });
                failed |= !run(json!({"op": "undo", "id": id}), r, &mut results);
            }
        } else {
            let mut used = BTreeSet::new();
            for _ in 0..1 + rng.below(4) {
                let kind = rng.below(100);
                let existing = (!objects.is_empty())
                    .then(|| objects[rng.below(objects.len() as u64) as usize]);
                let op_result = if let Some(oid) = existing.filter(|_| kind >= 45) {
                    if !used.insert(oid) {
                        continue;
                    }
                    // Created by a transaction that was aborted: gone.
                    let Some(cur) = current_tid(fs, oid) else {
                        continue;
                    };
                    let serial = if rng.chance(10) {
                        Tid::from_u64(cur.as_u64() - 1)
                    } else {
                        cur
                    };
                    if kind < 80 {
                        let d = object_pickle(
                            i as u32,
                            1 + rng.below(ANCHORS),
                            rng.below(300) as usize,
                        );
                        let r = fs.store(&mut txn, oid, serial, &d);
                        (
                            json!({"op": "store", "oid": hex(&oid.0), "serial": hex(&serial.0), "data": hex(&d)}),
                            r.map(|_| json!("ok")),
                        )
                    } else if kind < 88 {
                        let r = fs.delete_object(&mut txn, oid, serial);
                        (
                            json!({"op": "delete", "oid": hex(&oid.0), "serial": hex(&serial.0)}),
                            r.map(|_| json!("ok")),
                        )
                    } else if kind < 94 || !explicit_tids {
                        let r = fs.check_current_serial(&mut txn, oid, serial);
                        (
                            json!({"op": "check", "oid": hex(&oid.0), "serial": hex(&serial.0)}),
                            r.map(|_| json!("ok")),
                        )
                    } else {
                        // Copy an older revision the way zodbconvert does:
                        // restore with prev_txn, which becomes a back pointer.
                        let hist = fs.history(oid, 100).unwrap();
                        let old = &hist[rng.below(hist.len() as u64) as usize];
                        let data = fs.load_serial(oid, old.tid).ok();
                        let serial = txn.tid;
                        let r = fs.restore(&mut txn, oid, serial, data.as_deref(), Some(old.tid));
                        (
                            json!({"op": "restore", "oid": hex(&oid.0), "serial": hex(&serial.0),
                                   "data": data.as_deref().map(hex), "prev_txn": hex(&old.tid.0)}),
                            r.map(|_| json!("ok")),
                        )
                    }
                } else {
                    let oid = fs.new_oids(1).unwrap()[0];
                    objects.push(oid);
                    let d =
                        object_pickle(i as u32, 1 + rng.below(ANCHORS), rng.below(300) as usize);
                    let r = fs.store(&mut txn, oid, Tid::ZERO, &d);
                    used.insert(oid);
                    (
                        json!({"op": "store", "oid": hex(&oid.0), "serial": hex(&[0; 8]), "data": hex(&d)}),
                        r.map(|_| json!("ok")),
                    )
                };
                let (op, r) = op_result;
                if !run(op, r, &mut results) {
                    failed = true;
                    break;
                }
            }
        }
        let abort = failed || (i > 0 && rng.chance(15));
        let committed = if abort {
            fs.tpc_abort(txn);
            Value::Null
        } else {
            fs.tpc_vote(&mut txn).unwrap();
            json!(hex(&fs.tpc_finish(txn).unwrap().0 .0))
        };
        ops_out.push(json!({
            "tid": if explicit_tids { hex(&tid.0) } else { String::new() },
            "user": text(&meta.user),
            "desc": text(&meta.description),
            "ext": hex(&ext),
            "ops": ops,
            "end": if abort { "abort" } else { "finish" },
        }));
        outcomes.push(json!({"ops": results, "tid": committed}));
    }
    (Value::Array(ops_out), Value::Array(outcomes))
}
