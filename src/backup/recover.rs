//! `-R`: concatenates a chain into a Data.fs (or stdout), copies the last
//! file's `.index` next to it, and with `--blob-dir` puts the chain's blob
//! files back. Every file is checked against the `.dat` while it streams
//! (repozo's `-w`, always on): a damaged backup stops the recovery and
//! leaves only `OUTPUT.part` behind.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use tracing::{info, warn};

use super::blobs::{self, Manifest};
use super::repository::{self, BackupName, DatLine};
use super::stream::{self, temp_name};
use super::{io, BackupArgs, Error, Result};
use crate::ids::Tid;

#[derive(Debug, Clone)]
pub struct Recovered {
    pub files: Vec<BackupName>,
    pub bytes: u64,
    pub blobs: u64,
    /// The last committed transaction of the recovered file, when the
    /// backup recorded it (zeod backups with --blob-dir do).
    pub tid: Option<Tid>,
}

pub fn recover(args: &BackupArgs) -> Result<Recovered> {
    let repo = args.repository.as_path();
    let date = args
        .date
        .as_deref()
        .map(repository::parse_date)
        .transpose()?;
    let chain = repository::chain(repo, date.as_deref())?;
    let Some(first) = chain.first() else {
        return Err(Error::NoFiles(date));
    };
    let dat = repository::read_dat(&repository::dat_path(repo, first))?;
    check_complete(repo, &chain, &dat, date.as_deref())?;
    let expected: HashMap<String, (u64, String)> = dat
        .into_iter()
        .map(|l| (l.base_name().to_string(), (l.end - l.start, l.md5)))
        .collect();

    let blob_backups: Vec<(String, PathBuf, PathBuf)> = chain
        .iter()
        .map(|n| {
            (
                n.file_name(),
                repository::blob_dir(repo, n),
                repository::blob_manifest(repo, n),
            )
        })
        .collect();
    if let Some(dest) = &args.blob_dir {
        blobs::preflight(&blob_backups, dest)?;
    }

    let (tmp, mut out): (Option<PathBuf>, Box<dyn Write>) = match &args.output {
        Some(output) => {
            if output.exists() {
                info!(file = %output.display(), "deleting the old file before recovering");
                std::fs::remove_file(output)
                    .map_err(io(format!("removing {}", output.display())))?;
            }
            if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(io(format!("creating {}", parent.display())))?;
            }
            let tmp = temp_name(output);
            let f = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
            (Some(tmp), Box::new(BufWriter::with_capacity(1 << 20, f)))
        }
        None => (None, Box::new(std::io::stdout().lock())),
    };
    let mut total = 0u64;
    let expected_total = chain
        .iter()
        .filter_map(|n| expected.get(&n.file_name()).map(|(size, _)| *size))
        .sum();
    let mut progress = stream::Progress::new(
        match &args.output {
            Some(output) => format!("restore -> {}", output.display()),
            None => "restore -> stdout".to_string(),
        },
        expected_total,
    );
    let mut written = 0u64;
    for name in &chain {
        let path = repo.join(name.file_name());
        let (size, md5) = stream::read_all(&path, name.gzip, false, |b| {
            out.write_all(b).map_err(io("writing the recovered file"))?;
            written += b.len() as u64;
            progress.tick(written);
            Ok(())
        })?;
        match expected.get(&name.file_name()) {
            Some((want_size, want_md5)) => {
                if size != *want_size {
                    return Err(Error::Verification(format!(
                        "{} is {size} bytes, should be {want_size} bytes",
                        path.display()
                    )));
                }
                if md5 != *want_md5 {
                    return Err(Error::Verification(format!(
                        "{} has checksum {md5} instead of {want_md5}",
                        path.display()
                    )));
                }
            }
            None => {
                warn!(file = %path.display(), "not listed in the .dat file; its contents cannot be checked")
            }
        }
        info!(file = %path.display(), bytes = size, md5 = %md5, "recovered chunk");
        total += size;
    }
    out.flush().map_err(io("writing the recovered file"))?;
    drop(out);
    drop(progress);

    let mut tid = None;
    if let (Some(output), Some(tmp)) = (&args.output, &tmp) {
        File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(format!("syncing {}", tmp.display())))?;
        let last = chain.last().ok_or(Error::NoFiles(None))?;
        let source_index = repo.join(last.with_ext("index"));
        let mut target_index = output.as_os_str().to_owned();
        target_index.push(".index");
        if source_index.exists() {
            std::fs::copy(&source_index, &target_index)
                .map_err(io(format!("copying {}", source_index.display())))?;
        } else {
            info!(file = %source_index.display(), "no index file to restore");
        }
        std::fs::rename(tmp, output).map_err(io(format!(
            "renaming {} to {}",
            tmp.display(),
            output.display()
        )))?;
        stream::sync_dir(output.parent().unwrap_or(std::path::Path::new(".")))?;
    }

    let mut blob_count = 0;
    if let Some(dest) = &args.blob_dir {
        blob_count = blobs::recover(&blob_backups, dest)?;
    }
    if let Some(last) = chain.last() {
        tid = Manifest::read(&repository::blob_manifest(repo, last))?.and_then(|m| m.tid);
    }
    Ok(Recovered {
        files: chain,
        bytes: total,
        blobs: blob_count,
        tid,
    })
}

/// A chain is found by listing the directory, so a lost incremental would
/// silently drop its transactions (and every later one would be refused
/// by the storage as a gap only if its positions disagreed). The `.dat`
/// knows every file the chain should have up to the date: all must be
/// there, and each must start where the one before it ended.
fn check_complete(
    repo: &std::path::Path,
    chain: &[BackupName],
    dat: &[DatLine],
    date: Option<&str>,
) -> Result<()> {
    let now = BackupName::now(true, false).stem;
    let when = date.unwrap_or(&now);
    let present: std::collections::HashSet<String> =
        chain.iter().map(BackupName::file_name).collect();
    let mut end = 0;
    for line in dat {
        let Some(name) = BackupName::parse(line.base_name()) else {
            continue;
        };
        if name.stem.as_str() > when {
            break;
        }
        if !present.contains(line.base_name()) {
            return Err(Error::Verification(format!(
                "{} is missing (listed in the .dat); recovering without it would lose its transactions",
                repo.join(line.base_name()).display()
            )));
        }
        if line.start != end {
            return Err(Error::Verification(format!(
                "{} starts at {} but the backup before it ends at {end}",
                repo.join(line.base_name()).display(),
                line.start
            )));
        }
        end = line.end;
    }
    Ok(())
}
