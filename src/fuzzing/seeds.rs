//! Starting inputs for each target: the payloads of the spec's wire
//! captures (`captures/*.txt`, the `hex:` lines, split by dialect), the
//! `Data.fs` and `.index` files Python ZODB wrote for the fixtures, the
//! data-record pickles inside both, and a few built-in inputs so that every
//! target has seeds even without the shared directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::targets::INDEX_SEPARATOR;
use crate::protocol::{self, Encoding};

/// Seeds by target name.
pub type Seeds = BTreeMap<&'static str, Vec<Vec<u8>>>;

/// Where the shared inputs are: the spec's `captures/` and the fixtures.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub captures: Option<PathBuf>,
    pub fixtures: Option<PathBuf>,
    /// Extra files per target (a saved corpus): `<dir>/<target>/*`.
    pub corpus: Option<PathBuf>,
}

impl Sources {
    /// `ZEOD_SPEC_DIR`/`ZEOD_FIXTURES_DIR`, else `shared/spec` and
    /// `shared/fixtures` beside `start` or one of its ancestors.
    pub fn discover(start: &Path) -> Sources {
        let find = |var: &str, rel: &str| {
            std::env::var_os(var).map(PathBuf::from).or_else(|| {
                start
                    .ancestors()
                    .map(|dir| dir.join(rel))
                    .find(|dir| dir.is_dir())
            })
        };
        Sources {
            captures: find("ZEOD_SPEC_DIR", "shared/spec").map(|d| d.join("captures")),
            fixtures: find("ZEOD_FIXTURES_DIR", "shared/fixtures"),
            corpus: None,
        }
    }
}

const BUILTIN_CONF: &[&str] = &[
    "<zeo>\n  address 127.0.0.1:8100\n  read-only false\n  invalidation-queue-size 100\n  transaction-timeout 300\n  max-frame-size 64MB\n  max-output-buffer 32MB\n  handshake-timeout 60\n</zeo>\n<filestorage 1>\n  path /data/Data.fs\n  pack-gc true\n  pack-schedule daily 03:30\n  pack-days 7\n</filestorage>\n",
    "%import ZEO\n<zeo>\n address 8100\n msgpack true\n</zeo>\n<blobstorage main>\n blob-dir /data/blobs\n <filestorage>\n  path /data/Data.fs\n  quota 2GB\n </filestorage>\n</blobstorage>\n<eventlog>\n level INFO\n <logfile>\n  path /var/log/zeo.log\n  format %(asctime)s %(message)s\n </logfile>\n</eventlog>\n<runner>\n program runzeo\n</runner>\n",
    "# comment\n%define DATA /data\n<zeo>\n address $DATA/zeo.sock\n</zeo>\n<filestorage>\n path ${DATA}/Data.fs\n</filestorage>\n",
];

/// Reads every source; missing directories just give fewer seeds.
pub fn load(sources: &Sources) -> Seeds {
    let mut seeds = Seeds::new();
    for name in super::TARGETS.iter().map(|t| t.name) {
        seeds.insert(name, Vec::new());
    }
    let mut found: Vec<(&'static str, Vec<u8>)> = Vec::new();
    if let Some(dir) = &sources.captures {
        for path in files(dir, "txt") {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let mut stream = Vec::new();
            let python2 = path.to_string_lossy().contains("proto1");
            for (dialect, payload) in capture_payloads(&text, python2) {
                stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                stream.extend_from_slice(&payload);
                for record in embedded_records(&payload) {
                    found.push(("record", record));
                }
                found.push((dialect, payload));
            }
            found.push(("frame", stream));
        }
    }
    if let Some(dir) = &sources.fixtures {
        for case in subdirs(dir) {
            let data = std::fs::read(case.join("Data.fs")).ok();
            let index = std::fs::read(case.join("Data.fs.index")).ok();
            if let Some(data) = &data {
                for record in embedded_records(data) {
                    found.push(("record", record));
                }
                found.push(("datafs", data.clone()));
                if let Some(index) = &index {
                    let mut both = data.clone();
                    both.extend_from_slice(INDEX_SEPARATOR);
                    both.extend_from_slice(index);
                    found.push(("datafs", both));
                }
            }
            if let Some(index) = index {
                found.push(("index", index));
            }
            for conf in files(&case, "conf") {
                if let Ok(text) = std::fs::read(conf) {
                    found.push(("zconfig", text));
                }
            }
        }
    }
    // The messages in the other dialects, so msgpack (whose capture has no
    // hex dump) and pickle 1 get the same variety of calls and replies.
    let transcoded: Vec<(&'static str, Vec<u8>)> = found
        .iter()
        .filter(|(name, _)| *name == "pickle3")
        .filter_map(|(_, payload)| protocol::decode_message(Encoding::Pickle3, payload).ok())
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|message| {
            [
                ("msgpack", Encoding::Msgpack),
                ("pickle1", Encoding::Pickle1),
            ]
            .into_iter()
            .filter_map(move |(name, enc)| {
                protocol::encode_message(enc, &message)
                    .ok()
                    .map(|bytes| (name, bytes))
            })
        })
        .collect();
    for (name, bytes) in transcoded {
        found.push((name, bytes));
    }
    for conf in BUILTIN_CONF {
        found.push(("zconfig", conf.as_bytes().to_vec()));
    }
    found.push(("datafs", b"FS21".to_vec()));
    found.push(("index", Vec::new()));
    found.push(("frame", vec![0, 0, 0, 2, b'Z', b'5']));
    found.push((
        "pickle3",
        b"\x80\x03(K\x01\x89X\x08\x00\x00\x00registerX\x01\x00\x00\x001K\x00\x86t.".to_vec(),
    ));
    found.push((
        "pickle1",
        b"(I1\nI00\nU\x08registerq\x01(U\x011I00\ntt.".to_vec(),
    ));
    found.push(("msgpack", b"\x94\x01\xc2\xa8register\x92\xa11\xc2".to_vec()));
    found.push(("record", b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03s.".to_vec()));
    if let Some(dir) = &sources.corpus {
        for name in super::TARGETS.iter().map(|t| t.name) {
            for path in files(&dir.join(name), "") {
                if let Ok(data) = std::fs::read(path) {
                    found.push((name, data));
                }
            }
        }
    }
    for (name, data) in found {
        if let Some(list) = seeds.get_mut(name) {
            if !list.contains(&data) {
                list.push(data);
            }
        }
    }
    seeds
}

/// The payloads of a decoded capture, with the dialect each was in: the
/// `hex:` dumps, and in a Python 2 capture (no hex dumps) the `raw b'…'`
/// reprs of its protocol-1 messages.
fn capture_payloads(text: &str, python2: bool) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dialect = None;
    for line in text.lines() {
        if python2 {
            let declared = line
                .split_once(" len=")
                .and_then(|(_, rest)| rest.split(' ').next())
                .and_then(|n| n.parse::<usize>().ok());
            if let Some(bytes) = line.split_once(" raw b").and_then(|(_, r)| unrepr(r)) {
                if bytes.len() > 4 && Some(bytes.len()) == declared {
                    out.push(("pickle1", bytes));
                }
            }
            continue;
        }
        let trimmed = line.trim_start();
        if let Some(hex) = trimmed.strip_prefix("hex: ") {
            if let (Some(d), Some(bytes)) = (dialect, unhex(hex.trim())) {
                out.push((d, bytes));
            }
            continue;
        }
        dialect = if line.contains("pickle-proto=3") || line.contains("pickle-proto=2") {
            Some("pickle3")
        } else if line.contains("pickle-proto=") {
            Some("pickle1")
        } else if line.contains(" msgpack") {
            Some("msgpack")
        } else {
            None
        };
    }
    out
}

/// Python's repr of a bytes object, quotes included (`'…'` or `"…"`).
fn unrepr(text: &str) -> Option<Vec<u8>> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = text.get(1..)?.strip_suffix(quote)?;
    let mut out = Vec::new();
    let mut chars = body.bytes();
    while let Some(c) = chars.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'x' => {
                let hi = chars.next()?;
                let lo = chars.next()?;
                let hex = [hi, lo];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Data-record pickles inside `data` (a message or a Data.fs): each run
/// from a protocol-3 `c` (GLOBAL) header to the next one, at most 4 KiB.
/// In a Data.fs the next record's header trails it, which still makes a
/// useful seed.
fn embedded_records(data: &[u8]) -> Vec<Vec<u8>> {
    const HEADER: &[u8] = b"\x80\x03c";
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = find(&data[at..], HEADER).map(|i| i + at) {
        // The state pickle has its own header: skip one.
        let state = find(&data[start + HEADER.len()..], b".\x80\x03")
            .map(|i| start + HEADER.len() + i + 3)
            .unwrap_or(data.len());
        let end = find(&data[state..], HEADER)
            .map(|i| state + i)
            .unwrap_or(data.len())
            .min(start + 4096);
        out.push(data[start..end].to_vec());
        at = start + HEADER.len();
        if out.len() >= 64 {
            break;
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| ext.is_empty() || p.extension().is_some_and(|e| e == ext))
        .collect();
    list.sort();
    list
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    // Nested cases (c_pack/prepack) too.
    let nested: Vec<PathBuf> = list.iter().flat_map(|d| subdirs_shallow(d)).collect();
    list.extend(nested);
    list.sort();
    list
}

fn subdirs_shallow(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}
