//! `zeod backup` / `zeod restore`: repozo-compatible full and incremental
//! backups of a FileStorage, plus its blob files, taken at one committed
//! transaction of a file that a running server may be appending to.
//!
//! The repository is repozo's, so either tool restores what the other wrote:
//!
//! ```text
//! REPOSITORY/
//!   2026-11-25-15-00-00.fs        full backup: Data.fs bytes [0, end)
//!   2026-11-25-15-00-00.index     fsIndex of the file at `end`
//!   2026-11-25-15-00-00.dat       one line per file of this chain:
//!                                 "<path> <startpos> <endpos> <md5>"
//!   2026-11-25-16-00-00.deltafs   incremental: Data.fs bytes [start, end)
//!   2026-11-25-16-00-00.index
//!   (-z: .fsz / .deltafsz, gzip; md5 and positions are of the plain bytes)
//!   blobs/                        zeod only; repozo ignores it
//!     2026-11-25-15-00-00/        blob files referenced by that .fs, in
//!       .layout                   the source blob dir's layout
//!       0x00/…/0x01/0x03f5….blob
//!     2026-11-25-15-00-00.blobs   manifest: "tid <hex>" then
//!                                 "<relative path> <size> <md5>" lines
//!     2026-11-25-16-00-00/        only the blob files new in that delta
//!     2026-11-25-16-00-00.blobs
//! ```
//!
//! A chain is the most recent full backup at or before a date plus the
//! incrementals after it, chosen by file name as repozo does.

mod blobs;
mod create;
mod recover;
mod repository;
mod scheduled;
mod source;
mod stream;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

pub use create::{backup, BackupOutcome, Written};
pub use recover::{recover, Recovered};
pub use repository::{BackupName, DatLine};
pub use scheduled::{retain, run_once, RunReport, ScheduledBackup, DEFAULT_FULL_EVERY};
pub use verify::{verify, Verified};

/// The server's backup schedule task (`backup-schedule`).
pub use scheduled::run as run_schedule;

/// Options, spelled as repozo's so scripts written for it keep working.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(disable_version_flag = true)]
pub struct BackupArgs {
    /// Back up the file given with -f (the default mode of `zeod backup`).
    #[arg(short = 'B', long = "backup", group = "mode")]
    pub backup: bool,
    /// Recover a Data.fs (and blobs) from the repository.
    #[arg(short = 'R', long = "recover", group = "mode")]
    pub recover: bool,
    /// Verify the sizes and checksums of the files of the latest chain.
    #[arg(short = 'V', long = "verify", group = "mode")]
    pub verify: bool,
    /// Directory holding the backup files; must exist.
    #[arg(short = 'r', long = "repository")]
    pub repository: PathBuf,
    /// Source Data.fs (backup mode).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Force a full backup.
    #[arg(short = 'F', long = "full")]
    pub full: bool,
    /// Recover the state as of this UTC date: yyyy-mm-dd[-hh[-mm[-ss]]].
    #[arg(short = 'D', long = "date")]
    pub date: Option<String>,
    /// Write the recovered Data.fs here (default: stdout, without index).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Gzip the backup files (.fsz / .deltafsz).
    #[arg(short = 'z', long = "gzip")]
    pub gzip: bool,
    /// Backup: compare only the last incremental's md5 with the source.
    /// Verify: check sizes only, skip md5 sums.
    #[arg(short = 'Q', long = "quick")]
    pub quick: bool,
    /// After a full backup, remove the older backups (and their blobs).
    #[arg(short = 'k', long = "kill-old-on-full")]
    pub kill_old: bool,
    /// Accepted for repozo compatibility: recover always verifies sizes
    /// and checksums against the .dat as it copies.
    #[arg(short = 'w', long = "with-verify")]
    pub with_verify: bool,
    /// Accepted for repozo compatibility: every step is logged anyway
    /// (RUST_LOG=debug for more).
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Blob directory: the source's when backing up, the destination when
    /// recovering (must be empty or absent).
    #[arg(long = "blob-dir")]
    pub blob_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Backup,
    Recover,
    Verify,
}

impl BackupArgs {
    pub fn mode(&self) -> Mode {
        if self.recover {
            Mode::Recover
        } else if self.verify {
            Mode::Verify
        } else {
            Mode::Backup
        }
    }
}

/// Why a backup, recovery or verification failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
    #[error("repository {0} does not exist or is not a directory")]
    NoRepository(PathBuf),
    #[error("--file is required in backup mode")]
    NoSourceFile,
    #[error("cannot overwrite existing file: {0}")]
    WouldOverwrite(PathBuf),
    #[error("no files in repository{}", .0.as_ref().map(|d| format!(" before {d}")).unwrap_or_default())]
    NoFiles(Option<String>),
    #[error("bad --date {0:?}: expected yyyy-mm-dd[-hh[-mm[-ss]]]")]
    BadDate(String),
    #[error("{path}:{line}: malformed .dat line {text:?}")]
    BadDat {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{0}: not a FileStorage (bad magic)")]
    NotFileStorage(PathBuf),
    #[error("{path}: malformed blob manifest at line {line}")]
    BadManifest { path: PathBuf, line: usize },
    #[error("{0} was replaced while it was being backed up (a pack?); run the backup again")]
    SourceReplaced(PathBuf),
    #[error("blob directory {0} is not empty; recover blobs into an empty or new directory")]
    BlobDirNotEmpty(PathBuf),
    #[error(
        "backup {0} has no blob files in the repository (made without --blob-dir, or by repozo)"
    )]
    NoBlobBackup(String),
    #[error("verification failed: {0}")]
    Verification(String),
}

pub type Result<T> = std::result::Result<T, Error>;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// CLI entry for both `zeod backup` and `zeod restore`.
pub fn main(args: BackupArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(crate::telemetry::LogFormat::Text);
    match args.mode() {
        Mode::Backup => match backup(&args)? {
            BackupOutcome::Unchanged => {
                tracing::info!("no changes since the last backup, nothing to do")
            }
            BackupOutcome::Written(w) => tracing::info!(
                file = %w.path.display(),
                full = w.full,
                bytes = w.end - w.start,
                tid = %w.tid,
                committed_at = %w.tid.timestamp_string(),
                blobs_copied = w.blobs.copied,
                blobs_linked = w.blobs.linked,
                "backup written"
            ),
        },
        Mode::Recover => {
            let r = recover(&args)?;
            tracing::info!(
                files = r.files.len(),
                bytes = r.bytes,
                blobs = r.blobs,
                tid = r.tid.map(|t| t.to_string()).unwrap_or_default(),
                "recovered"
            );
        }
        Mode::Verify => {
            let v = verify(&args)?;
            tracing::info!(files = v.files, blobs = v.blobs, "backup verified");
        }
    }
    Ok(ExitCode::SUCCESS)
}
