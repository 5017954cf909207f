//! The Python side of the differential tests: running fs_peer.py with the
//! venv's python, and zeod's own view in the same JSON shape.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};
use zeod::ids::Oid;
use zeod::storage::{Error, FileStorage};

use super::common::*;

const PEER: &str = include_str!("fs_peer.py");

pub fn python() -> Option<PathBuf> {
    match std::env::var_os("ZEOD_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            // Straight to the stream: the harness captures eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: set ZEOD_PYTHON=$(bash tests/python/venv.sh) to run the Python ZODB differential tests"
            );
            None
        }
    }
}

pub struct Peer {
    python: PathBuf,
    script: PathBuf,
    _dir: tempfile::TempDir,
}

impl Peer {
    pub fn new(python: PathBuf) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fs_peer.py");
        std::fs::write(&script, PEER).unwrap();
        Peer {
            python,
            script,
            _dir: dir,
        }
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fs_peer.py {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.run(args)).unwrap()
    }

    pub fn module(&self, module: &str, path: &Path) -> (bool, String) {
        let out = Command::new(&self.python)
            .args(["-m", module])
            .arg(path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// What fs_peer.py's `dump` prints, computed through zeod's API.
pub fn our_dump(fs: &Arc<FileStorage>) -> Value {
    let txns: Vec<_> = fs.iterator(None, None).map(|t| t.unwrap()).collect();
    let oids: BTreeSet<Oid> = txns
        .iter()
        .flat_map(|t| t.records.iter().map(|r| r.oid))
        .collect();
    let mut objects = serde_json::Map::new();
    for oid in oids {
        let load = match fs.load(oid) {
            Ok((data, serial)) => json!([hex(&data), hex(&serial.0)]),
            Err(Error::PosKey(_)) => json!("POSKeyError"),
            Err(e) => panic!("{e}"),
        };
        let hist = fs.history(oid, 1000).unwrap();
        let mut serial = serde_json::Map::new();
        let mut before = serde_json::Map::new();
        for h in &hist {
            let key = hex(&h.tid.0);
            serial.insert(
                key.clone(),
                match fs.load_serial(oid, h.tid) {
                    Ok(d) => json!(hex(&d)),
                    Err(Error::PosKey(_)) => json!("POSKeyError"),
                    Err(e) => panic!("{e}"),
                },
            );
            before.insert(
                key,
                match fs.load_before(oid, h.tid) {
                    Ok(None) => Value::Null,
                    Ok(Some(lb)) => {
                        json!([hex(&lb.data), hex(&lb.start.0), lb.end.map(|t| hex(&t.0))])
                    }
                    Err(Error::PosKey(_)) => json!("POSKeyError"),
                    Err(e) => panic!("{e}"),
                },
            );
        }
        let history: Vec<Value> = hist
            .iter()
            .map(|h| {
                json!([
                    hex(&h.tid.0),
                    h.size,
                    text(&h.meta.user),
                    text(&h.meta.description)
                ])
            })
            .collect();
        objects.insert(
            hex(&oid.0),
            json!({"load": load, "history": history, "serial": serial, "before": before}),
        );
    }
    let iterator: Vec<Value> = txns
        .iter()
        .map(|t| {
            let recs: Vec<Value> = t
                .records
                .iter()
                .map(|r| {
                    json!([
                        hex(&r.oid.0),
                        hex(&r.tid.0),
                        r.data.as_deref().map(hex),
                        r.data_txn.map(|t| hex(&t.0)),
                        r.pos
                    ])
                })
                .collect();
            json!([
                hex(&t.tid.0),
                char::from(t.status).to_string(),
                text(&t.meta.user),
                text(&t.meta.description),
                ext_json(&t.meta.extension),
                t.pos,
                recs
            ])
        })
        .collect();
    let undo_log: Vec<Value> = fs
        .undo_log(0, 1_000_000_000)
        .unwrap()
        .iter()
        .map(|u| {
            json!([
                text(&u.id),
                u.size,
                text(&u.meta.user),
                text(&u.meta.description)
            ])
        })
        .collect();
    json!({
        "size": fs.size(),
        "len": fs.len(),
        "last": hex(&fs.last_transaction().0),
        "objects": objects,
        "iterator": iterator,
        "undo_log": undo_log,
    })
}

pub fn assert_same(ours: &Value, python: &Value, what: &str) {
    if ours == python {
        return;
    }
    for key in ["size", "len", "last", "undo_log", "iterator", "objects"] {
        if ours[key] != python[key] {
            panic!(
                "{what}: '{key}' differs\nzeod:   {}\npython: {}",
                serde_json::to_string(&ours[key]).unwrap(),
                serde_json::to_string(&python[key]).unwrap()
            );
        }
    }
    panic!("{what}: dumps differ");
}
