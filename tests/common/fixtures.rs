//! Helpers shared by the storage tests: locating and copying the fixtures
//! Python ZODB wrote, hex, and expected.json access.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test
#![allow(dead_code)] // each test crate uses a subset

use std::path::{Path, PathBuf};

use zeod::ids::{Oid, Tid};

/// `ZEOD_FIXTURES`, else `../shared/fixtures` next to the crate (the CI
/// layout: shared/ is a sibling of the clone), else the same a level up
/// (a git worktree under `wt/`).
pub fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ZEOD_FIXTURES") {
        return PathBuf::from(dir);
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .skip(1)
        .map(|a| a.join("shared/fixtures"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| crate_dir.join("../shared/fixtures"))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let mut perm = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&target, perm).unwrap();
        }
    }
}

/// A scratch directory, in RAM when the machine has /dev/shm: the
/// damage tests open thousands of files, and every recovery fsyncs.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

/// A writable copy of a fixture directory: opening read-write may truncate.
pub fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = scratch_dir();
    copy_tree(&fixtures_dir().join(name), tmp.path());
    let data = tmp.path().join("Data.fs");
    (tmp, data)
}

pub fn expected(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures_dir().join(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn oid(s: &str) -> Oid {
    Oid::from_slice(&unhex(s)).unwrap()
}

pub fn tid(s: &str) -> Tid {
    Tid::from_slice(&unhex(s)).unwrap()
}

/// The extension pickle as JSON (string keys; ints and strings as values).
pub fn ext_json(pickle: &[u8]) -> serde_json::Value {
    if pickle.is_empty() {
        return serde_json::json!({});
    }
    let v = serde_pickle::value_from_slice(pickle, serde_pickle::DeOptions::new()).unwrap();
    to_json(&v)
}

fn to_json(v: &serde_pickle::Value) -> serde_json::Value {
    use serde_pickle::{HashableValue as H, Value as V};
    match v {
        V::None => serde_json::Value::Null,
        V::Bool(b) => (*b).into(),
        V::I64(i) => (*i).into(),
        V::F64(f) => (*f).into(),
        V::String(s) => s.clone().into(),
        V::Bytes(b) => hex(b).into(),
        V::List(l) | V::Tuple(l) => l.iter().map(to_json).collect(),
        V::Dict(d) => {
            let mut m = serde_json::Map::new();
            for (k, v) in d {
                let key = match k {
                    H::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                m.insert(key, to_json(v));
            }
            serde_json::Value::Object(m)
        }
        other => format!("{other:?}").into(),
    }
}

pub const ALL_FIXTURES: &[&str] = &[
    "a_basic",
    "b_undo",
    "c_pack",
    "c_pack/prepack",
    "c_pack_mid",
    "c_pack_nogc",
    "d_btrees",
    "e_blobs",
    "e_blobs_packed",
    "g_py2_protocol1",
];
