//! `-V`: checks every file the latest chain's `.dat` lists (size, and md5
//! unless `-Q`), gunzipping `.fsz`/`.deltafsz`, then every blob file the
//! chain's manifests list. The first damage found is the error.

use std::path::Path;

use tracing::info;

use super::blobs::{self, Manifest};
use super::repository::{self, BackupName};
use super::stream;
use super::{BackupArgs, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub files: u64,
    pub blobs: u64,
}

pub fn verify(args: &BackupArgs) -> Result<Verified> {
    let repo = args.repository.as_path();
    let chain = repository::chain(repo, None)?;
    let Some(first) = chain.first() else {
        return Err(Error::NoFiles(None));
    };
    let dat = repository::dat_path(repo, first);
    let lines = repository::read_dat(&dat)?;
    if lines.is_empty() {
        return Err(Error::Verification(format!(
            "{} is missing or empty",
            dat.display()
        )));
    }
    let mut verified = Verified { files: 0, blobs: 0 };
    for line in &lines {
        let path = repo.join(line.base_name());
        info!(file = %path.display(), "verifying");
        let expected = line.end - line.start;
        let gzip = line.base_name().ends_with("fsz");
        let (size, md5) = if args.quick && !gzip {
            let size = std::fs::metadata(&path)
                .map_err(|_| Error::Verification(format!("{} is missing", path.display())))?
                .len();
            (size, String::new())
        } else {
            stream::read_all(&path, gzip, args.quick, |_| Ok(()))?
        };
        let plain = if gzip { " (when uncompressed)" } else { "" };
        if size != expected {
            return Err(Error::Verification(format!(
                "{} is {size} bytes{plain}, should be {expected} bytes",
                path.display()
            )));
        }
        if !args.quick && md5 != line.md5 {
            return Err(Error::Verification(format!(
                "{} has checksum {md5}{plain} instead of {}",
                path.display(),
                line.md5
            )));
        }
        verified.files += 1;
        if let Some(name) = BackupName::parse(line.base_name()) {
            verified.blobs += verify_blobs(repo, &name, args.quick)?;
        }
    }
    Ok(verified)
}

fn verify_blobs(repo: &Path, name: &BackupName, quick: bool) -> Result<u64> {
    let dir = repository::blob_dir(repo, name);
    let manifest_path = repository::blob_manifest(repo, name);
    let Some(manifest) = Manifest::read(&manifest_path)? else {
        if dir.exists() {
            return Err(Error::Verification(format!(
                "{} exists but its manifest {} is missing",
                dir.display(),
                manifest_path.display()
            )));
        }
        return Ok(0);
    };
    for e in &manifest.entries {
        blobs::check_file(&dir.join(&e.rel), e, quick)?;
    }
    Ok(manifest.entries.len() as u64)
}
