//! Pack (spec §9): drop the revisions nobody can reach any more, as ZODB's
//! FileStorage packer does, producing the same bytes. Reads, GC and the
//! copy run beside commits; only the last stretch (copying what was
//! committed meanwhile, renaming, installing the new index) holds the
//! commit slot, and commits wait for it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use super::format::Reader;
use super::{index_file, Error, FileStorage, Published, Result};
use crate::ids::Tid;

mod copy;
mod gc;

use copy::{copy_rest, copy_to_packtime, DroppedBlob, PackOut};
use gc::{Gc, Plan};

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Clears the storage's `packing` flag however the pack ends.
struct Packing<'a>(&'a FileStorage);

impl Drop for Packing<'_> {
    fn drop(&mut self) {
        self.0.packing.store(false, Ordering::SeqCst);
    }
}

/// The commit slot, held by the pack; commits wait while it is.
struct Slot<'a>(&'a FileStorage);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.pack_holds_busy.store(false, Ordering::SeqCst);
        self.0.busy.store(false, Ordering::SeqCst);
    }
}

/// How long the pack waits for a running commit to end.
const SLOT_WAIT: Duration = Duration::from_secs(300);

fn take_slot(s: &FileStorage) -> Result<Slot<'_>> {
    let deadline = Instant::now() + SLOT_WAIT;
    loop {
        if s.busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            s.pack_holds_busy.store(true, Ordering::SeqCst);
            return Ok(Slot(s));
        }
        if Instant::now() >= deadline {
            return Err(Error::TransactionInProgress);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(super) fn pack(s: &FileStorage, pack_time: Tid, gc: bool) -> Result<()> {
    if s.read_only {
        return Err(Error::ReadOnly);
    }
    if pack_time == Tid::ZERO {
        return Err(Error::BadArgument("invalid pack time".into()));
    }
    if s.is_empty() {
        return Ok(());
    }
    if s.packing.swap(true, Ordering::SeqCst) {
        return Err(Error::BadArgument("already packing".into()));
    }
    let _packing = Packing(s);
    let old_path = sibling(&s.path, ".old");
    if old_path.exists() {
        std::fs::remove_file(&old_path).map_err(io(format!("removing {}", old_path.display())))?;
    }
    let pack_path = sibling(&s.path, ".pack");
    let result = pack_into(s, pack_time, gc, &pack_path, &old_path);
    if result.is_err() {
        let _ = std::fs::remove_file(&pack_path);
    }
    result
}

fn pack_into(
    s: &FileStorage,
    pack_time: Tid,
    gc: bool,
    pack_path: &Path,
    old_path: &Path,
) -> Result<()> {
    let started = Instant::now();
    let (file, eof) = s.snapshot();
    let r = Reader::new(&file, &s.path);
    let mut g = Gc::new(r, eof, pack_time);
    if let Plan::Redundant = g.build_pack_index()? {
        info!(path = %s.path.display(), "already packed to a later time, or no changes since the last pack");
        return Ok(());
    }
    g.find_reachable(gc)?;

    let mut out = PackOut::create(pack_path)?;
    let mut dropped = Vec::new();
    let opos = copy_to_packtime(&g, &mut out, s.blobs.is_some(), &mut dropped)?;
    let ipos = g.packpos;
    if ipos == opos {
        info!(path = %s.path.display(), "pack: nothing to remove");
        drop(out);
        let _ = std::fs::remove_file(pack_path);
        return Ok(());
    }
    // What was committed while we worked: first without the commit slot,
    // then the last few transactions with it.
    let (_, end) = s.snapshot();
    let ipos = copy_rest(r, &mut out, ipos, end)?;
    let slot = take_slot(s)?;
    let (_, end) = s.snapshot();
    copy_rest(r, &mut out, ipos, end)?;
    out.sync()?;

    std::fs::rename(&s.path, old_path)
        .map_err(io(format!("renaming {} to .old", s.path.display())))?;
    if let Err(e) = std::fs::rename(pack_path, &s.path) {
        // Put the original back: nothing is lost.
        let _ = std::fs::rename(old_path, &s.path);
        return Err(io(format!("renaming {} into place", pack_path.display()))(
            e,
        ));
    }
    let new_end = out.pos;
    let PackOut {
        file: new_file,
        index,
        ..
    } = out;
    {
        let mut p = s.published.write();
        let last_tid = p.last_tid;
        *p = Published {
            file: Arc::new(new_file),
            index,
            end: new_end,
            last_tid,
        };
    }
    drop(slot);

    if let Some(blobs) = &s.blobs {
        blobs.remove_dropped(&dropped, s.options.pack_keep_old);
    }
    if !s.options.pack_keep_old {
        std::fs::remove_file(old_path).map_err(io(format!("removing {}", old_path.display())))?;
    }
    let index_path = index_file::index_path(&s.path);
    s.save_index()?;
    info!(
        path = %s.path.display(),
        before = eof,
        after = new_end,
        seconds = started.elapsed().as_secs_f64(),
        index = %index_path.display(),
        "packed"
    );
    Ok(())
}

impl super::blob::BlobDir {
    /// Removes (or, keeping old files, moves to `<blob_dir>.old`) the blob
    /// files of dropped revisions, then prunes empty directories.
    fn remove_dropped(&self, dropped: &[DroppedBlob], keep_old: bool) {
        let old_root = sibling(self.root(), ".old");
        for d in dropped {
            let target = match d {
                DroppedBlob::Object(oid) => self.oid_dir(*oid),
                DroppedBlob::Revision(oid, tid) => self.path_of(*oid, *tid),
            };
            if !target.exists() {
                continue;
            }
            let result = if keep_old {
                let rel = target.strip_prefix(self.root()).unwrap_or(&target);
                let dest = old_root.join(rel);
                dest.parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|_| std::fs::rename(&target, &dest))
            } else if target.is_dir() {
                std::fs::remove_dir_all(&target)
            } else {
                std::fs::remove_file(&target)
            };
            if let Err(e) = result {
                tracing::warn!(path = %target.display(), %e, "pack could not remove a blob");
            }
            // Prune now-empty parents up to the blob root.
            let mut dir = target.parent();
            while let Some(d) = dir {
                if d == self.root() || std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }
}
