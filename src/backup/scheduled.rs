//! The server's built-in backup schedule, next to its pack schedule:
//! zeo.conf `<filestorage>` keys `backup-schedule` (the syntax of
//! `pack-schedule`), `backup-repository DIR`, `backup-keep N` (full
//! backups kept, with their incrementals), `backup-full-every N` (a chain
//! grows to N backups, then the next one is full) and `backup-gzip`.
//!
//! Each run is a `zeod backup -B` of the served Data.fs and its blob
//! directory into the repository, on the blocking pool while the server
//! keeps serving (the backup reads its own descriptor up to the last
//! committed transaction, see `source`), then the retention step, which
//! deletes whole chains as `repozo -k` would: a chain's `.fs`, its
//! `.deltafs`, `.dat`, `.index` files and zeod's blob files.
//!
//! ```text
//!   keep 2, full-every 3:
//!   F1 i i | F2 i i | F3 i      after F3 is written, chain F1 is removed
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::create::kill_old;
use super::repository;
use super::{backup, BackupArgs, BackupOutcome, Result};
use crate::schedule::PackSchedule;

/// One storage's backup plan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledBackup {
    pub schedule: PackSchedule,
    pub repository: PathBuf,
    /// Full backups to keep (each with its incrementals); `None`: all.
    pub keep: Option<usize>,
    /// Backups in a chain before the next one is a full one.
    pub full_every: usize,
    pub gzip: bool,
}

/// Default `backup-full-every`: a week of daily backups per chain.
pub const DEFAULT_FULL_EVERY: usize = 7;

/// What one scheduled run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The file written, `None` if nothing changed since the last backup.
    pub written: Option<PathBuf>,
    pub full: bool,
    pub bytes: u64,
    pub blobs: u64,
    /// Backup files (`.fs`/`.deltafs`) removed by retention.
    pub removed: usize,
}

/// One backup of `data` (and `blob_dir`) by `plan`, then retention.
pub fn run_once(data: &Path, blob_dir: Option<&Path>, plan: &ScheduledBackup) -> Result<RunReport> {
    let chain = repository::chain(&plan.repository, None)?;
    let args = BackupArgs {
        backup: true,
        repository: plan.repository.clone(),
        file: Some(data.to_path_buf()),
        full: plan.full_every > 0 && chain.len() >= plan.full_every,
        gzip: plan.gzip,
        blob_dir: blob_dir.map(Path::to_path_buf),
        ..BackupArgs::default()
    };
    let mut report = RunReport {
        written: None,
        full: false,
        bytes: 0,
        blobs: 0,
        removed: 0,
    };
    if let BackupOutcome::Written(w) = backup(&args)? {
        report.full = w.full;
        report.bytes = w.end - w.start;
        report.blobs = w.blobs.copied + w.blobs.linked;
        report.written = Some(w.path);
    }
    if let Some(keep) = plan.keep {
        report.removed = retain(&plan.repository, keep)?;
    }
    Ok(report)
}

/// Removes every backup older than the `keep`-th newest full backup;
/// returns how many data files went. `keep` 0 is taken as 1: retention
/// never removes the chain a restore would use.
pub fn retain(repo: &Path, keep: usize) -> Result<usize> {
    let names = repository::list(repo)?;
    let fulls: Vec<_> = names.iter().filter(|n| n.full).collect();
    let keep = keep.max(1);
    let Some(oldest_kept) = fulls.len().checked_sub(keep).map(|i| fulls[i]) else {
        return Ok(0);
    };
    let removed = names.iter().filter(|n| n.stem < oldest_kept.stem).count();
    if removed > 0 {
        kill_old(repo, oldest_kept)?;
    }
    Ok(removed)
}

/// Backs up the storage at `data` on `plan` until `shutdown`. A failed run
/// (disk full, a pack replacing the file meanwhile…) is logged and tried
/// again at the next scheduled time; a run in progress at shutdown is
/// waited for by the caller's task tracker.
pub async fn run(
    name: String,
    data: PathBuf,
    blob_dir: Option<PathBuf>,
    plan: ScheduledBackup,
    shutdown: CancellationToken,
) {
    info!(
        storage = %name,
        schedule = %plan.schedule,
        repository = %plan.repository.display(),
        keep = plan.keep.map(|k| k.to_string()).unwrap_or_else(|| "all".into()),
        full_every = plan.full_every,
        blobs = blob_dir.is_some(),
        "backup schedule active"
    );
    loop {
        let wait = plan.schedule.wait_from(unix_now());
        info!(storage = %name, in_seconds = wait.as_secs(), "next scheduled backup");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        info!(storage = %name, repository = %plan.repository.display(), "scheduled backup started");
        let started = Instant::now();
        let (d, b, p) = (data.clone(), blob_dir.clone(), plan.clone());
        match tokio::task::spawn_blocking(move || run_once(&d, b.as_deref(), &p)).await {
            Ok(Ok(r)) => info!(
                storage = %name,
                file = %r.written.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "none (no changes)".into()),
                full = r.full,
                bytes = r.bytes,
                blobs = r.blobs,
                removed_old = r.removed,
                seconds = started.elapsed().as_secs_f64(),
                "scheduled backup finished"
            ),
            Ok(Err(err)) => warn!(storage = %name, %err, "scheduled backup failed"),
            Err(err) => warn!(storage = %name, %err, "scheduled backup task failed"),
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"x").unwrap();
    }

    #[test]
    fn retention_removes_whole_chains_oldest_first() {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        std::fs::create_dir_all(r.join("blobs/2026-01-01-00-00-00")).unwrap();
        for stem in [
            "2026-01-01-00-00-00.fs",
            "2026-01-01-00-00-00.dat",
            "2026-01-01-00-00-00.index",
            "2026-01-02-00-00-00.deltafs",
            "2026-01-02-00-00-00.index",
            "2026-01-03-00-00-00.fsz",
            "2026-01-03-00-00-00.dat",
            "2026-01-04-00-00-00.deltafsz",
            "2026-01-05-00-00-00.fs",
            "2026-01-05-00-00-00.dat",
            "blobs/2026-01-01-00-00-00.blobs",
        ] {
            touch(r, stem);
        }
        assert_eq!(retain(r, 3).unwrap(), 0, "three fulls, keep three");
        assert_eq!(
            retain(r, 2).unwrap(),
            2,
            "the first chain: .fs and .deltafs"
        );
        let mut left: Vec<String> = std::fs::read_dir(r)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "2026-01-03-00-00-00.dat",
                "2026-01-03-00-00-00.fsz",
                "2026-01-04-00-00-00.deltafsz",
                "2026-01-05-00-00-00.dat",
                "2026-01-05-00-00-00.fs",
                "blobs",
            ]
        );
        assert_eq!(std::fs::read_dir(r.join("blobs")).unwrap().count(), 0);
        // keep 0 never removes the chain a restore would use.
        assert_eq!(retain(r, 0).unwrap(), 2);
        assert!(r.join("2026-01-05-00-00-00.fs").exists());
    }
}
