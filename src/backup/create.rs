//! `-B`: a full or incremental backup, decided as repozo decides (the
//! repository's bytes must be a prefix of the source for an incremental),
//! but measured against the committed end of the source, not its size.
//!
//! Order of writes, so that a crash leaves nothing a restore would trust
//! half-done: blob files and their manifest, then the `.index`, then the
//! data file (temp name, fsync, rename), then the `.dat` line.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use tracing::info;

use super::blobs::{self, Earlier};
use super::repository::{self, BackupName, DatLine};
use super::source::Snapshot;
use super::stream::{self, hex, write_synced};
use super::{io, BackupArgs, Error, Result};
use crate::ids::Tid;
use crate::storage::index_file;

/// What one `-B` run wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub full: bool,
    pub start: u64,
    pub end: u64,
    pub tid: Tid,
    pub blobs: blobs::Stats,
}

#[derive(Debug, Clone)]
pub enum BackupOutcome {
    /// The source has no committed change since the last backup.
    Unchanged,
    Written(Written),
}

/// Where an incremental would start, if the repository allows one.
enum Plan {
    Full(&'static str),
    Nothing,
    Incremental(u64),
}

pub fn backup(args: &BackupArgs) -> Result<BackupOutcome> {
    let source = args.file.as_deref().ok_or(Error::NoSourceFile)?;
    let repo = args.repository.as_path();
    let chain = repository::chain(repo, None)?;
    // The previous backup's index ends where an incremental would start;
    // offering it to the scan saves re-reading the whole source.
    let base = chain.last().and_then(|last| {
        index_file::read(&repo.join(last.with_ext("index")))
            .ok()
            .flatten()
    });
    let snap = Snapshot::take(source, base)?;
    let plan = if args.full || chain.is_empty() {
        Plan::Full(if chain.is_empty() {
            "no earlier backup"
        } else {
            "--full"
        })
    } else if args.quick {
        plan_quick(repo, &chain, &snap)?
    } else {
        plan_thorough(repo, &chain, &snap)?
    };
    let start = match plan {
        Plan::Nothing => return Ok(BackupOutcome::Unchanged),
        Plan::Full(why) => {
            info!(reason = why, "doing a full backup");
            0
        }
        Plan::Incremental(at) => {
            info!(start = at, "doing an incremental backup");
            at
        }
    };
    let full = start == 0;
    let name = BackupName::now(full, args.gzip);
    let dest = repo.join(name.file_name());
    for ext in ["fs", "fsz", "deltafs", "deltafsz", "index"] {
        let p = repo.join(name.with_ext(ext));
        if p.exists() {
            return Err(Error::WouldOverwrite(p));
        }
    }
    let tid = snap.tid.unwrap_or(Tid::ZERO);
    info!(
        file = %dest.display(),
        bytes = snap.end - start,
        tid = %tid,
        committed_at = %tid.timestamp_string(),
        "backing up to the last committed transaction"
    );

    // Finding blob records means reading every pickle's first bytes: only
    // worth it when the blobs are to be backed up.
    let mut blob_stats = blobs::Stats::default();
    if let Some(dir) = &args.blob_dir {
        let revisions = snap.blob_revisions(start.max(4))?;
        let earlier: Vec<(PathBuf, PathBuf)> = repository::list(repo)?
            .iter()
            .map(|n| {
                (
                    repository::blob_dir(repo, n),
                    repository::blob_manifest(repo, n),
                )
            })
            .collect();
        blob_stats = blobs::back_up(
            &snap,
            dir,
            &revisions,
            &repository::blob_dir(repo, &name),
            &repository::blob_manifest(repo, &name),
            &Earlier::load(&earlier),
        )?;
    }

    let index_path = repo.join(name.with_ext("index"));
    write_synced(&index_path, |w| {
        index_file::encode(w, snap.end, &snap.index)
    })?;
    let md5 = stream::copy_range(
        &snap.file,
        source,
        start,
        snap.end - start,
        &dest,
        args.gzip,
    )?;
    let full_name = if full {
        name.clone()
    } else {
        chain.first().cloned().ok_or(Error::NoFiles(None))?
    };
    repository::append_dat(
        &repository::dat_path(repo, &full_name),
        &DatLine {
            file: dest.display().to_string(),
            start,
            end: snap.end,
            md5,
        },
    )?;
    stream::sync_dir(repo)?;
    if full && args.kill_old {
        kill_old(repo, &name)?;
    }
    Ok(BackupOutcome::Written(Written {
        path: dest,
        full,
        start,
        end: snap.end,
        tid,
        blobs: blob_stats,
    }))
}

/// repozo's default: checksum the whole chain against the source prefix.
fn plan_thorough(repo: &Path, chain: &[BackupName], snap: &Snapshot) -> Result<Plan> {
    let mut repo_sum = Md5::new();
    let mut repo_size = 0u64;
    for name in chain {
        let (n, _) = stream::read_all(&repo.join(name.file_name()), name.gzip, false, |b| {
            repo_sum.update(b);
            Ok(())
        })?;
        repo_size += n;
    }
    if snap.end < repo_size {
        return Ok(Plan::Full("the file shrank, possibly because of a pack"));
    }
    let repo_sum = hex(&repo_sum.finalize());
    if checksum(&snap.file, &snap.path, 0, repo_size)? != repo_sum {
        return Ok(Plan::Full("the file changed, possibly because of a pack"));
    }
    Ok(if snap.end == repo_size {
        Plan::Nothing
    } else {
        Plan::Incremental(repo_size)
    })
}

/// `-Q`: compare only the range of the last file the `.dat` lists.
fn plan_quick(repo: &Path, chain: &[BackupName], snap: &Snapshot) -> Result<Plan> {
    let Some(first) = chain.first() else {
        return Ok(Plan::Full("no earlier backup"));
    };
    let lines = repository::read_dat(&repository::dat_path(repo, first))?;
    let Some(last) = lines.last() else {
        return Ok(Plan::Full("missing or empty .dat file"));
    };
    if snap.end < last.end {
        return Ok(Plan::Full("the file shrank, possibly because of a pack"));
    }
    if checksum(&snap.file, &snap.path, last.start, last.end - last.start)? != last.md5 {
        return Ok(Plan::Full("the file changed, possibly because of a pack"));
    }
    Ok(if snap.end == last.end {
        Plan::Nothing
    } else {
        Plan::Incremental(last.end)
    })
}

fn checksum(file: &File, path: &Path, start: u64, len: u64) -> Result<String> {
    let mut sum = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], start + done)
            .map_err(io(format!(
                "reading {} at {}",
                path.display(),
                start + done
            )))?;
        sum.update(&buf[..n]);
        done += n as u64;
    }
    Ok(hex(&sum.finalize()))
}

/// repozo's `-k`: remove every backup older than the new full one, with
/// its `.dat`, `.index` and (ours) blob files.
pub(super) fn kill_old(repo: &Path, keep: &BackupName) -> Result<()> {
    for name in repository::list(repo)? {
        if name.stem >= keep.stem {
            continue;
        }
        info!(file = %name, "removing old backup");
        for p in [
            repo.join(name.file_name()),
            repo.join(name.with_ext("dat")),
            repo.join(name.with_ext("index")),
            repository::blob_manifest(repo, &name),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("removing {}", p.display()))(e)),
            }
        }
        let dir = repository::blob_dir(repo, &name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(format!("removing {}", dir.display())))?;
        }
    }
    Ok(())
}
