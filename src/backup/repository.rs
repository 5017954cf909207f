//! The repository directory as repozo sees it: file names, chains of a full
//! backup and its incrementals, and the `.dat` ledger of each chain.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{io, Error, Result};
use crate::ids::Tid;

/// A backup's time-stamp name, `YYYY-MM-DD-HH-MM-SS` (UTC), and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupName {
    pub stem: String,
    pub full: bool,
    pub gzip: bool,
}

impl BackupName {
    /// The name repozo would pick now.
    pub fn now(full: bool, gzip: bool) -> BackupName {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        BackupName {
            stem: stem_at(secs),
            full,
            gzip,
        }
    }

    /// Parses repozo's data file names; anything else is not ours.
    pub fn parse(file_name: &str) -> Option<BackupName> {
        let (stem, ext) = file_name.split_once('.')?;
        let (full, gzip) = match ext {
            "fs" => (true, false),
            "fsz" => (true, true),
            "deltafs" => (false, false),
            "deltafsz" => (false, true),
            _ => return None,
        };
        let ok = stem.len() == 19
            && stem.bytes().enumerate().all(|(i, b)| {
                if [4, 7, 10, 13, 16].contains(&i) {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        ok.then(|| BackupName {
            stem: stem.to_string(),
            full,
            gzip,
        })
    }

    pub fn file_name(&self) -> String {
        let ext = match (self.full, self.gzip) {
            (true, false) => "fs",
            (true, true) => "fsz",
            (false, false) => "deltafs",
            (false, true) => "deltafsz",
        };
        format!("{}.{ext}", self.stem)
    }

    pub fn with_ext(&self, ext: &str) -> String {
        format!("{}.{ext}", self.stem)
    }
}

impl fmt::Display for BackupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

/// `YYYY-MM-DD-HH-MM-SS` of a Unix time, truncated to the second as
/// repozo's `time.gmtime()` truncates it. Rounding instead would name a
/// backup up to half a second in the future, and a `repozo -R` started in
/// that half second (its default `-D` is its own truncated now) would not
/// see the backup: "No files in repository".
fn stem_at(unix_secs: f64) -> String {
    stem_of(Tid::from_unix(unix_secs.floor()))
}

/// `YYYY-MM-DD-HH-MM-SS` of a TimeStamp on a whole second, decoded as
/// spec §5 says.
fn stem_of(t: Tid) -> String {
    let b = t.as_bytes();
    let a = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let frac = u64::from(u32::from_be_bytes([b[4], b[5], b[6], b[7]]));
    let (minute, hour, day) = (a % 60, a / 60 % 24, a / 1440 % 31 + 1);
    let (month, year) = (a / 44640 % 12 + 1, a / 535680 + 1900);
    // b = int(seconds * 2**32 / 60) truncates, so a whole second decodes
    // a hair below itself: round back to it.
    let second = (((frac * 60) + (1 << 31)) >> 32).min(59);
    format!("{year:04}-{month:02}-{day:02}-{hour:02}-{minute:02}-{second:02}")
}

/// Checks a `-D` date and returns it in the form compared with names.
pub fn parse_date(date: &str) -> Result<String> {
    let parts: Vec<&str> = date.split('-').collect();
    let widths = [4, 2, 2, 2, 2, 2];
    let ok = (3..=6).contains(&parts.len())
        && parts
            .iter()
            .zip(widths)
            .all(|(p, w)| p.len() == w && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(date.to_string())
    } else {
        Err(Error::BadDate(date.to_string()))
    }
}

/// All backup data files in the repository, oldest first.
pub fn list(repository: &Path) -> Result<Vec<BackupName>> {
    if !repository.is_dir() {
        return Err(Error::NoRepository(repository.to_path_buf()));
    }
    let entries =
        fs::read_dir(repository).map_err(io(format!("listing {}", repository.display())))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(format!("listing {}", repository.display())))?;
        if let Some(name) = entry.file_name().to_str().and_then(BackupName::parse) {
            names.push(name);
        }
    }
    names.sort_by_key(BackupName::file_name);
    Ok(names)
}

/// repozo's `find_files`: the latest full backup whose name is `<= when`
/// and the incrementals after it up to `when`, oldest first.
pub fn chain(repository: &Path, when: Option<&str>) -> Result<Vec<BackupName>> {
    let now = BackupName::now(true, false).stem;
    let when = when.unwrap_or(&now);
    let mut needed = Vec::new();
    for name in list(repository)?.into_iter().rev() {
        if name.stem.as_str() <= when {
            let full = name.full;
            needed.push(name);
            if full {
                break;
            }
        }
    }
    needed.reverse();
    Ok(needed)
}

/// One line of a `.dat` file: a backup file and the source range it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatLine {
    /// As written (repozo writes the repository-joined path); only the
    /// base name is used to find the file.
    pub file: String,
    pub start: u64,
    pub end: u64,
    pub md5: String,
}

impl DatLine {
    pub fn base_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }
}

pub fn dat_path(repository: &Path, full: &BackupName) -> PathBuf {
    repository.join(full.with_ext("dat"))
}

/// The lines of a chain's `.dat`; a missing file reads as empty.
pub fn read_dat(path: &Path) -> Result<Vec<DatLine>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
    };
    let mut lines = Vec::new();
    for (n, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let bad = || Error::BadDat {
            path: path.to_path_buf(),
            line: n + 1,
            text: text.to_string(),
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [file, start, end, md5] = fields[..] else {
            return Err(bad());
        };
        let (Ok(start), Ok(end)) = (start.parse(), end.parse()) else {
            return Err(bad());
        };
        if end < start {
            return Err(bad());
        }
        lines.push(DatLine {
            file: file.to_string(),
            start,
            end,
            md5: md5.to_string(),
        });
    }
    Ok(lines)
}

/// Appends one line and fsyncs, as repozo does after each backup file.
pub fn append_dat(path: &Path, line: &DatLine) -> Result<()> {
    let ctx = || format!("appending to {}", path.display());
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(ctx()))?;
    writeln!(f, "{} {} {} {}", line.file, line.start, line.end, line.md5).map_err(io(ctx()))?;
    f.sync_all().map_err(io(ctx()))
}

/// The directory holding one backup's blob files.
pub fn blob_dir(repository: &Path, name: &BackupName) -> PathBuf {
    repository.join("blobs").join(&name.stem)
}

pub fn blob_manifest(repository: &Path, name: &BackupName) -> PathBuf {
    repository.join("blobs").join(name.with_ext("blobs"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_strangers() {
        let n = BackupName::parse("2026-11-25-15-00-01.deltafsz").unwrap();
        assert!(!n.full && n.gzip);
        assert_eq!(n.file_name(), "2026-11-25-15-00-01.deltafsz");
        assert!(BackupName::parse("2026-11-25-15-00-01.dat").is_none());
        assert!(BackupName::parse("2026-11-25-15-00.fs").is_none());
        assert!(BackupName::parse("blobs").is_none());
    }

    #[test]
    fn stem_decodes_a_timestamp() {
        // spec §5: 03f58e0004444444 = 2024-01-01 00:00:01
        let t = Tid::from_u64(0x03f5_8e00_0444_4444);
        assert_eq!(stem_of(t), "2024-01-01-00-00-01");
    }

    #[test]
    fn names_truncate_to_the_second_as_repozo_does() {
        // 2026-11-25 16:50:55 UTC plus fractions: repozo's gmtime() names
        // every one of them ...-55, and so must we, or a repozo -R started
        // in the same second misses the backup.
        let base = 1_795_625_455.0;
        for frac in [0.0, 0.2, 0.5, 0.7, 0.999] {
            assert_eq!(stem_at(base + frac), "2026-11-25-16-50-55", "at +{frac}");
        }
        assert_eq!(stem_at(base + 5.0), "2026-11-25-16-51-00");
    }

    #[test]
    fn dates_are_checked() {
        assert!(parse_date("2026-11-25").is_ok());
        assert!(parse_date("2026-11-25-15-04-05").is_ok());
        assert!(parse_date("2026-11").is_err());
        assert!(parse_date("2026-11-25 15").is_err());
    }
}
