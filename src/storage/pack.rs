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

/// Takes the commit slot, then waits for the sealed transactions to be
/// published: the tail copied under the slot must be all of them, and the
/// file they are fsynced in must not be swapped away beneath them.
fn take_slot(s: &FileStorage) -> Result<Slot<'_>> {
    let deadline = Instant::now() + SLOT_WAIT;
    loop {
        if s.busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            s.pack_holds_busy.store(true, Ordering::SeqCst);
            let slot = Slot(s);
            let left = deadline.saturating_duration_since(Instant::now());
            if !super::group_commit::wait_drained(s, left) {
                return Err(Error::TransactionInProgress);
            }
            return Ok(slot);
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
    // Until the GC pass knows the file's end: an estimate, two passes.
    let _running = s.pack_progress.run_phase("pack", 2 * s.size(), "prepare");
    let old_path = sibling(&s.path, ".old");
    if old_path.exists() {
        std::fs::remove_file(&old_path).map_err(io(format!("removing {}", old_path.display())))?;
    }
    if let Some(blobs) = &s.blobs {
        let old_blobs = sibling(blobs.root(), ".old");
        if old_blobs.exists() {
            std::fs::remove_dir_all(&old_blobs)
                .map_err(io(format!("removing {}", old_blobs.display())))?;
        }
    }
    let pack_path = sibling(&s.path, ".pack");
    let result = pack_into(s, pack_time, gc, &pack_path, &old_path);
    if result.is_err() {
        let _ = std::fs::remove_file(&pack_path);
    }
    result
}

/// Puts the packed file in place of `Data.fs` so that a crash at any
/// instant leaves a complete `Data.fs`, old or new, and never an index
/// that belongs to the other one: the saved index (of the old file) is
/// removed first, the old file is hard-linked as `.old` when it is kept,
/// and one rename replaces `Data.fs`. Python's packer renames `Data.fs`
/// away first, leaving an instant without one; that sequence remains the
/// fallback where hard links are not supported. True if `.old` exists
/// afterwards.
fn swap_in(s: &FileStorage, pack_path: &Path, old_path: &Path) -> Result<bool> {
    let index_path = index_file::index_path(&s.path);
    match std::fs::remove_file(&index_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("removing {}", index_path.display()))(e)),
    }
    let linked = s.options.pack_keep_old && std::fs::hard_link(&s.path, old_path).is_ok();
    if s.options.pack_keep_old && !linked {
        std::fs::rename(&s.path, old_path)
            .map_err(io(format!("renaming {} to .old", s.path.display())))?;
    }
    if let Err(e) = std::fs::rename(pack_path, &s.path) {
        if s.options.pack_keep_old && !linked {
            // Put the original back: nothing is lost.
            let _ = std::fs::rename(old_path, &s.path);
        }
        // The old file stays in service; so may its index.
        let _ = s.save_index();
        return Err(io(format!("renaming {} into place", pack_path.display()))(
            e,
        ));
    }
    // The rename must be on disk before commits to the new file are
    // acknowledged, or a power loss could bring the old file back.
    if let Some(dir) = s.path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        // The new file is in place now: failing here would leave the
        // storage writing to the old one. A warning is all it can be.
        if let Err(err) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %dir.display(), %err, "pack: cannot sync the directory after the rename");
        }
    }
    Ok(s.options.pack_keep_old)
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
    // Progress counts two passes over the file: the GC reads [4, eof), the
    // copy reads it again plus what is committed meanwhile.
    let progress = &s.pack_progress;
    progress.set_total(2 * eof);
    progress.phase("gc");
    let r = Reader::new(&file, &s.path);
    let mut g = Gc::new(r, eof, pack_time, progress);
    if let Plan::Redundant = g.build_pack_index()? {
        info!(path = %s.path.display(), "already packed to a later time, or no changes since the last pack");
        return Ok(());
    }
    g.find_reachable(gc)?;
    info!(
        path = %s.path.display(),
        pack_time = %pack_time.timestamp_string(),
        gc,
        packpos = g.packpos,
        size = eof,
        kept_objects = g.reachable.len(),
        seconds = started.elapsed().as_secs_f64(),
        "pack: reachability computed; copying history up to the pack time"
    );

    progress.phase("copy");
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
    info!(
        path = %s.path.display(),
        packed_part = opos,
        committed_meanwhile = end.saturating_sub(ipos),
        seconds = started.elapsed().as_secs_f64(),
        "pack: history copied; copying transactions committed since the pack started"
    );
    let ipos = copy_rest(r, &mut out, ipos, end, progress, eof)?;
    progress.phase("swap");
    let slot = take_slot(s)?;
    let locked = Instant::now();
    let (_, end) = s.snapshot();
    copy_rest(r, &mut out, ipos, end, progress, eof)?;
    progress.set(eof + end);
    out.sync()?;

    let keep_old = swap_in(s, pack_path, old_path)?;
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
            index: index.finish(),
            end: new_end,
            last_tid,
        };
    }
    super::group_commit::file_replaced(s);
    // Still holding the slot: no vote can install a blob into a directory
    // the cleanup is pruning.
    if let Some(blobs) = &s.blobs {
        blobs.remove_dropped(&dropped, keep_old);
    }
    drop(slot);
    progress.phase("cleanup");
    info!(
        path = %s.path.display(),
        commits_held_seconds = locked.elapsed().as_secs_f64(),
        "pack: new file in place; commits resumed"
    );

    if let (Some(blobs), true) = (&s.blobs, keep_old) {
        blobs.link_kept_into_old();
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
    /// `<blob_dir>.old`, the blob tree that goes with `Data.fs.old`.
    fn old_root(&self) -> PathBuf {
        sibling(self.root(), ".old")
    }

    /// Removes the blob files of dropped revisions or, keeping old files,
    /// moves them into `<blob_dir>.old` (created with its `.layout` even
    /// when nothing was dropped, as ZODB does); then prunes empty
    /// directories.
    fn remove_dropped(&self, dropped: &[DroppedBlob], keep_old: bool) {
        let old_root = self.old_root();
        if keep_old {
            let made = std::fs::create_dir_all(&old_root).and_then(|_| {
                link_or_copy(&self.root().join(".layout"), &old_root.join(".layout"))
            });
            if let Err(e) = made {
                tracing::warn!(path = %old_root.display(), %e, "pack could not create the .old blob directory");
            }
        }
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

    /// Keeping old files: hard-links (copies across file systems) every
    /// blob file still in use into `<blob_dir>.old` too, as ZODB's
    /// FileStorage does, so `Data.fs.old` with `<blob_dir>.old` is the
    /// whole database as it was before the pack. Runs after commits
    /// resumed; a blob committed meanwhile may be linked as well, which
    /// only costs a directory entry.
    fn link_kept_into_old(&self) {
        let old_root = self.old_root();
        let tmp = self.tmp_dir();
        let (mut linked, mut failed) = (0u64, 0u64);
        let mut todo = vec![self.root().to_path_buf()];
        while let Some(dir) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    if path != tmp {
                        todo.push(path);
                    }
                    continue;
                }
                if path.extension().is_none_or(|e| e != "blob") {
                    continue;
                }
                let rel = path.strip_prefix(self.root()).unwrap_or(&path);
                let dest = old_root.join(rel);
                let done = dest
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|_| link_or_copy(&path, &dest));
                match done {
                    Ok(()) => linked += 1,
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(path = %path.display(), %e, "pack could not link a blob into the .old blob directory");
                    }
                }
            }
        }
        info!(path = %old_root.display(), linked, failed, "pack: kept blobs linked into the .old blob directory");
    }
}

/// ZODB's `link_or_copy`: a hard link, or a copy where links cannot be
/// made (another file system, a file system without links). An existing
/// destination is left alone.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) => std::fs::copy(from, to).map(|_| ()),
    }
}
