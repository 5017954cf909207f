//! Opening a storage: lock, magic, index load or rebuild, tail recovery.

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tracing::{info, warn};

use super::blob::BlobDir;
use super::format::{Reader, MAGIC, MAGIC_PY2};
use super::index::Index;
use super::lockfile::LockFile;
use super::scan::{check_sanity, scan, Tail};
use super::{index_file, Error, FileStorage, OpenOptions, Published, Result};
use crate::ids::{Oid, Tid};
use crate::progress::Progress;

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub(super) fn open(path: &Path, options: OpenOptions) -> Result<FileStorage> {
    let read_only = options.read_only;
    let lock = if read_only {
        None
    } else {
        Some(LockFile::acquire(&sibling(path, ".lock"))?)
    };
    let file = if read_only {
        File::open(path).map_err(io_err(format!("opening {} read-only", path.display())))?
    } else {
        FsOpenOptions::new()
            .read(true)
            .write(true)
            .create(options.create)
            .truncate(false)
            .open(path)
            .map_err(io_err(format!("opening {}", path.display())))?
    };
    let mut size = file
        .metadata()
        .map_err(io_err(format!("stat {}", path.display())))?
        .len();
    if size == 0 {
        if read_only {
            return Err(Error::Corrupt {
                path: path.into(),
                pos: 0,
                reason: "empty file (no FS30 magic)".into(),
            });
        }
        (&file)
            .write_all(MAGIC)
            .map_err(io_err(format!("initializing {}", path.display())))?;
        file.sync_all()
            .map_err(io_err(format!("fsync {}", path.display())))?;
        size = MAGIC.len() as u64;
    }
    let r = Reader::new(&file, path);
    let mut magic = [0u8; 4];
    r.read_at(&mut magic, 0)?;
    if &magic == MAGIC_PY2 {
        if !read_only {
            return Err(Error::BadArgument(format!(
                "{} has the FS21 magic of a Python 2 ZODB: its pickles may hold py2 str values; open it \
                 read-only, or convert it (zodbupdate --convert-py3) and set the magic to FS30",
                path.display()
            )));
        }
        warn!(path = %path.display(), "FS21 (Python 2) data file opened read-only");
    } else if &magic != MAGIC {
        return Err(Error::Corrupt {
            path: path.into(),
            pos: 0,
            reason: format!("not a FileStorage file: magic {magic:02x?}, expected \"FS30\""),
        });
    }

    let index_path = index_file::index_path(path);
    let saved = match index_file::read(&index_path) {
        // Python only checks the last transaction's records; positions
        // outside the covered range are cheap to rule out as well.
        Ok(Some((pos, index))) if index.iter().any(|(_, p)| p < 4 || p >= pos) => {
            warn!(path = %index_path.display(), pos, "ignoring index: it points outside the data it covers");
            None
        }
        Ok(Some((pos, index))) => match check_sanity(r, size, &index, pos) {
            Some(tid) => Some((pos, index, tid)),
            None => {
                warn!(path = %index_path.display(), pos, "ignoring index: it does not match the data file");
                None
            }
        },
        Ok(None) => None,
        Err(err) => {
            warn!(path = %index_path.display(), %err, "ignoring index");
            None
        }
    };
    let rebuilt = saved.is_none();
    let (start, mut index, last_tid) =
        saved.unwrap_or((MAGIC.len() as u64, Index::new(), Tid::ZERO));
    let scanned = scan(r, size, start, &mut index, last_tid, &options.progress)?;
    if let Some(tail) = scanned.tail {
        if read_only {
            warn!(path = %path.display(), pos = tail.pos, "interrupted transaction at end of file ignored (read-only)");
        } else {
            cut_tail(path, &file, size, tail)?;
        }
    }
    index.shrink();
    let max_oid = index.max_oid().unwrap_or(Oid::ZERO);
    info!(
        path = %path.display(),
        size = scanned.end,
        objects = index.len(),
        index_bytes_per_object = format!("{:.1}", index.bytes_per_object()),
        last_tid = %scanned.last_tid,
        "opened FileStorage"
    );
    let blobs = match &options.blob_dir {
        Some(dir) => Some(BlobDir::open(dir, read_only)?),
        None => None,
    };
    let storage = FileStorage {
        path: path.to_path_buf(),
        read_only,
        published: RwLock::new(Published {
            file: Arc::new(file),
            index,
            end: scanned.end,
            last_tid: scanned.last_tid,
        }),
        max_oid: Mutex::new(max_oid),
        last_begun: Mutex::new(scanned.last_tid),
        busy: Arc::new(AtomicBool::new(false)),
        lock: Mutex::new(lock),
        closed: AtomicBool::new(false),
        packing: AtomicBool::new(false),
        pack_progress: Progress::new(),
        pack_holds_busy: AtomicBool::new(false),
        blobs,
        options,
        group: Default::default(),
    };
    if rebuilt && !read_only {
        storage.save_index()?;
    }
    Ok(storage)
}

/// Saves `[tail.pos, EOF)` to the first free `Data.fs.trN` and truncates,
/// as Python's `_truncate` does, so a half-written commit is never lost.
fn cut_tail(path: &Path, file: &File, size: u64, tail: Tail) -> Result<()> {
    if tail.save {
        let saved = (0..)
            .map(|i| sibling(path, &format!(".tr{i}")))
            .find(|p| !p.exists())
            .ok_or_else(|| Error::BadArgument("no free .trN name".into()))?;
        warn!(path = %path.display(), pos = tail.pos, to = %saved.display(), "saving interrupted transaction and truncating");
        let mut out =
            File::create(&saved).map_err(io_err(format!("creating {}", saved.display())))?;
        let r = Reader::new(file, path);
        let mut buf = vec![0u8; 1 << 20];
        let mut at = tail.pos;
        while at < size {
            let n = (size - at).min(buf.len() as u64) as usize;
            r.read_at(&mut buf[..n], at)?;
            out.write_all(&buf[..n])
                .map_err(io_err(format!("writing {}", saved.display())))?;
            at += n as u64;
        }
        out.sync_all()
            .map_err(io_err(format!("fsync {}", saved.display())))?;
    } else {
        warn!(path = %path.display(), pos = tail.pos, "truncating partial transaction header");
    }
    file.set_len(tail.pos)
        .map_err(io_err(format!("truncating {}", path.display())))?;
    file.sync_all()
        .map_err(io_err(format!("fsync {}", path.display())))?;
    Ok(())
}
