//! The harness functions. Each takes arbitrary bytes and exercises one
//! parser the way zeod uses it; where a parse succeeds, the result is fed
//! onward (re-encoded and decoded again, walked, loaded) so the code behind
//! the parser is reached too.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::protocol::{self, msgpack, pickle, Encoding, FrameCodec};
use crate::storage::{index_file, FileStorage, OpenOptions};

/// One fuzz target: a name for the command line and its harness.
pub struct Target {
    pub name: &'static str,
    /// True if the input was accepted (parsed) rather than refused.
    pub run: fn(&[u8]) -> bool,
    /// What the target covers, for `zeod-fuzz --list`.
    pub about: &'static str,
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "frame",
        run: frame,
        about: "u32 length-prefixed frames: parse() and the tokio codec over arbitrary splits",
    },
    Target {
        name: "pickle3",
        run: pickle3,
        about: "pickle protocol 3 messages (Z5), bare pickles, re-encoded round trip",
    },
    Target {
        name: "pickle1",
        run: pickle1,
        about: "pickle protocol 1 messages (Python 2 clients), transaction extensions",
    },
    Target {
        name: "msgpack",
        run: msgpack_target,
        about: "msgpack messages (M5), re-encoded round trip",
    },
    Target {
        name: "record",
        run: record,
        about: "data-record pickles (class meta + state): parse, references, re-pickle",
    },
    Target {
        name: "zconfig",
        run: zconfig,
        about: "zeo.conf: the ZConfig parser and zeod's schema",
    },
    Target {
        name: "index",
        run: index,
        about: "Data.fs.index pickles (fsIndex)",
    },
    Target {
        name: "datafs",
        run: datafs,
        about: "Data.fs: open (recovery, index rebuild), zeod check, loads, history, iterator, undo log",
    },
];

/// Runs target `name` on `data`: `None` if there is no such target, else
/// whether the input was accepted.
pub fn run(name: &str, data: &[u8]) -> Option<bool> {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .map(|target| (target.run)(data))
}

/// The largest frame the frame target accepts: small, so that announced
/// lengths are refused rather than reserved.
const FRAME_LIMIT: u32 = 1 << 20;

pub fn frame(data: &[u8]) -> bool {
    let mut rest = data;
    let mut frames = 0;
    while let Ok(protocol::frame::Parsed::Frame { payload, consumed }) =
        protocol::frame::parse(rest, FRAME_LIMIT)
    {
        if consumed == 0 || consumed > rest.len() {
            panic!("frame::parse consumed {consumed} of {} bytes", rest.len());
        }
        let _ = protocol::decode_message(Encoding::Pickle3, payload);
        rest = &rest[consumed..];
        frames += 1;
    }
    // The codec, fed in pieces whose sizes come from the input itself,
    // must cut the same frames.
    let mut codec = FrameCodec::with_max_frame(FRAME_LIMIT);
    let mut buf = BytesMut::new();
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut decoded = 0;
    'feed: for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => decoded += 1,
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    if decoded != frames {
        panic!("frame::parse cut {frames} frames, the codec {decoded}");
    }
    frames > 0
}

fn message_round_trip(encoding: Encoding, data: &[u8]) -> bool {
    let Ok(message) = protocol::decode_message(encoding, data) else {
        return false;
    };
    let _ = message.call_args();
    if let Ok(bytes) = protocol::encode_message(encoding, &message) {
        if protocol::decode_message(encoding, &bytes).is_err() {
            panic!("{encoding:?}: a re-encoded message does not decode");
        }
    }
    true
}

pub fn pickle3(data: &[u8]) -> bool {
    let message = message_round_trip(Encoding::Pickle3, data);
    let Ok(value) = pickle::decode(data) else {
        return message;
    };
    let bytes = pickle::encode(&value, pickle::Dialect::Proto3);
    if pickle::decode(&bytes).is_err() {
        panic!("a re-encoded pickle does not decode");
    }
    true
}

pub fn pickle1(data: &[u8]) -> bool {
    let message = message_round_trip(Encoding::Pickle1, data);
    match pickle::decode_extension(data) {
        Ok(extension) => {
            let _ = pickle::decode_extension(&pickle::encode_extension(&extension));
            true
        }
        Err(_) => message,
    }
}

pub fn msgpack_target(data: &[u8]) -> bool {
    let message = message_round_trip(Encoding::Msgpack, data);
    let Ok(value) = msgpack::decode(data) else {
        return message;
    };
    if let Ok(bytes) = msgpack::encode(&value) {
        if msgpack::decode(&bytes).is_err() {
            panic!("re-encoded msgpack does not decode");
        }
    }
    true
}

pub fn record(data: &[u8]) -> bool {
    let refs = crate::record::references(data).is_ok();
    match crate::record::parse(data) {
        Ok(parsed) => {
            let _ = parsed.meta.meta_class();
            true
        }
        Err(_) => refs,
    }
}

pub fn zconfig(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    match crate::config::zconfig::parse(&text) {
        Ok(tree) => crate::config::layer_from_zeo_conf(&tree).is_ok(),
        Err(_) => false,
    }
}

pub fn index(data: &[u8]) -> bool {
    match index_file::parse(data) {
        Ok((_, index)) => {
            let _ = index.len();
            true
        }
        Err(_) => false,
    }
}
/// A fresh directory per execution, under /dev/shm when there is one so
/// that the file traffic stays in memory; removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Option<Scratch> {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "zeod-fuzz-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).ok()?;
        Some(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `data` is a whole Data.fs, or, split at the first `INDEX_SEPARATOR`, a
/// Data.fs and its `.index` (so saved indexes that lie are reached too).
pub const INDEX_SEPARATOR: &[u8] = b"\n--zeod-fuzz-index--\n";

pub fn datafs(data: &[u8]) -> bool {
    let Some(dir) = Scratch::new() else {
        return false;
    };
    let path = dir.0.join("Data.fs");
    let (file, saved_index) = match data
        .windows(INDEX_SEPARATOR.len())
        .position(|w| w == INDEX_SEPARATOR)
    {
        Some(at) => (&data[..at], Some(&data[at + INDEX_SEPARATOR.len()..])),
        None => (data, None),
    };
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(file));
    if written.is_err() {
        return false;
    }
    if let Some(saved) = saved_index {
        if std::fs::write(index_file::index_path(&path), saved).is_err() {
            return false;
        }
    }
    let _ = crate::check::check(&path, 0, &mut std::io::sink());
    let options = OpenOptions {
        create: false,
        fsync: false,
        ..OpenOptions::default()
    };
    let Ok(storage) = FileStorage::open(&path, options) else {
        return false;
    };
    exercise(&storage);
    let _ = storage.close();
    true
}

/// Everything a client can read, on a storage that opened.
fn exercise(storage: &std::sync::Arc<FileStorage>) {
    let mut next = None;
    for _ in 0..10_000 {
        let Ok(Some((oid, _, _, following))) = storage.record_iternext(next) else {
            break;
        };
        let _ = storage.load(oid);
        let _ = storage.history(oid, 10);
        let _ = storage.load_before(oid, crate::ids::Tid::MAX);
        match following {
            Some(oid) => next = Some(oid),
            None => break,
        }
    }
    for txn in storage.iterator(None, None).take(10_000) {
        if txn.is_err() {
            break;
        }
    }
    let _ = storage.undo_log(0, 20);
    let _ = storage.last_invalidations(10);
}
