//! Blob files of a backup: which ones, where they go in the repository,
//! the manifest that lets `--verify` check them, and putting them back.
//!
//! ```text
//! blobs/<stem>/.layout           copied from the source ("bushy"/"lawn")
//! blobs/<stem>/<oid path>/<tid>.blob
//! blobs/<stem>.blobs             "zeod-blobs 1 tid <hex> layout <name>"
//!                                then "<relative path> <size> <md5>"
//! ```
//!
//! Blob files are immutable once committed (ZODB never writes one in
//! place; a new revision is a new file), so a revision already in an older
//! backup of the repository is hard-linked from there instead of copied.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use tracing::{info, warn};

use super::source::Snapshot;
use super::stream::{hex, temp_name, write_synced, Progress};
use super::{io, Error, Result};
use crate::ids::{Oid, Tid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Bushy,
    Lawn,
}

impl Layout {
    /// ZODB's rule: the `.layout` marker, else lawn for a directory that
    /// already holds something, else bushy.
    pub fn of(dir: &Path) -> Result<Layout> {
        match fs::read_to_string(dir.join(".layout")) {
            Ok(s) if s.trim() == "lawn" => Ok(Layout::Lawn),
            Ok(_) => Ok(Layout::Bushy),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let occupied = fs::read_dir(dir)
                    .map(|mut it| it.any(|e| e.is_ok_and(|e| e.file_name() != "tmp")))
                    .unwrap_or(false);
                Ok(if occupied {
                    Layout::Lawn
                } else {
                    Layout::Bushy
                })
            }
            Err(e) => Err(io(format!("reading {}/.layout", dir.display()))(e)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::Bushy => "bushy",
            Layout::Lawn => "lawn",
        }
    }

    fn parse(s: &str) -> Option<Layout> {
        match s {
            "bushy" => Some(Layout::Bushy),
            "lawn" => Some(Layout::Lawn),
            _ => None,
        }
    }

    /// `<oid path>/<tid_repr>.blob`, relative to the blob dir.
    pub fn rel_path(self, oid: Oid, tid: Tid) -> String {
        let dir = match self {
            Layout::Bushy => oid
                .0
                .iter()
                .map(|b| format!("0x{b:02x}"))
                .collect::<Vec<_>>()
                .join("/"),
            Layout::Lawn => oid.repr(),
        };
        format!("{dir}/{}.blob", tid.repr())
    }
}

/// One blob file of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rel: String,
    pub size: u64,
    pub md5: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub tid: Option<Tid>,
    pub layout: Layout,
    pub entries: Vec<Entry>,
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Option<Manifest>> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        let bad = |line: usize| Error::BadManifest {
            path: path.to_path_buf(),
            line,
        };
        let mut lines = text.lines();
        let head: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let (tid, layout) = match head[..] {
            ["zeod-blobs", "1", "tid", tid, "layout", layout] => {
                let tid = match tid {
                    "none" => None,
                    hex => Some(Tid::from_u64(
                        u64::from_str_radix(hex, 16).map_err(|_| bad(1))?,
                    )),
                };
                (tid, Layout::parse(layout).ok_or_else(|| bad(1))?)
            }
            _ => return Err(bad(1)),
        };
        let mut entries = Vec::new();
        for (n, line) in lines.enumerate() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [rel, size, md5] = f[..] else {
                return Err(bad(n + 2));
            };
            if rel.split('/').any(|c| c.is_empty() || c == "..") || rel.starts_with('/') {
                return Err(bad(n + 2));
            }
            entries.push(Entry {
                rel: rel.to_string(),
                size: size.parse().map_err(|_| bad(n + 2))?,
                md5: md5.to_string(),
            });
        }
        Ok(Some(Manifest {
            tid,
            layout,
            entries,
        }))
    }

    fn write(&self, path: &Path) -> Result<()> {
        write_synced(path, |w| {
            let tid = self
                .tid
                .map(|t| t.to_string())
                .unwrap_or_else(|| "none".into());
            writeln!(w, "zeod-blobs 1 tid {tid} layout {}", self.layout.name())?;
            for e in &self.entries {
                writeln!(w, "{} {} {}", e.rel, e.size, e.md5)?;
            }
            Ok(())
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub copied: u64,
    pub linked: u64,
    pub missing: u64,
    pub bytes: u64,
}

/// Where older copies of blob files may be linked from: the blob dirs and
/// manifests of earlier backups in the repository.
pub struct Earlier {
    files: HashMap<String, (PathBuf, Entry)>,
}

impl Earlier {
    pub fn load(backups: &[(PathBuf, PathBuf)]) -> Earlier {
        let mut files = HashMap::new();
        for (dir, manifest) in backups {
            if let Ok(Some(m)) = Manifest::read(manifest) {
                for e in m.entries {
                    files.insert(e.rel.clone(), (dir.join(&e.rel), e));
                }
            }
        }
        Earlier { files }
    }
}

/// Copies the blob files of `revisions` from `source` into `dest`, then
/// writes the manifest (last, so a manifest always describes files that
/// are on disk).
pub fn back_up(
    snap: &Snapshot,
    source: &Path,
    revisions: &[(Oid, Tid)],
    dest: &Path,
    manifest: &Path,
    earlier: &Earlier,
) -> Result<Stats> {
    let layout = Layout::of(source)?;
    fs::create_dir_all(dest).map_err(io(format!("creating {}", dest.display())))?;
    fs::write(dest.join(".layout"), layout.name())
        .map_err(io(format!("writing {}/.layout", dest.display())))?;
    let mut stats = Stats::default();
    let mut entries = Vec::with_capacity(revisions.len());
    let mut seen = std::collections::HashSet::new();
    let mut progress = Progress::files(
        format!("blobs -> {}", dest.display()),
        revisions.len() as u64,
    );
    for (i, (oid, tid)) in revisions.iter().enumerate() {
        progress.tick(i as u64);
        let rel = layout.rel_path(*oid, *tid);
        if !seen.insert(rel.clone()) {
            continue;
        }
        let from = source.join(&rel);
        let to = dest.join(&rel);
        let size = match fs::metadata(&from) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !snap.still_current() {
                    return Err(Error::SourceReplaced(snap.path.clone()));
                }
                warn!(oid = %oid, tid = %tid, file = %from.display(), "blob file referenced by the data file is missing; not in the backup");
                stats.missing += 1;
                continue;
            }
            Err(e) => return Err(io(format!("inspecting {}", from.display()))(e)),
        };
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
        }
        let linked = match earlier.files.get(&rel) {
            Some((old, e)) if e.size == size => fs::hard_link(old, &to).is_ok().then(|| e.clone()),
            _ => None,
        };
        let entry = match linked {
            Some(e) => {
                stats.linked += 1;
                e
            }
            None => {
                let md5 = copy_file(&from, &to)?;
                stats.copied += 1;
                Entry { rel, size, md5 }
            }
        };
        stats.bytes += entry.size;
        entries.push(entry);
    }
    Manifest {
        tid: snap.tid,
        layout,
        entries,
    }
    .write(manifest)?;
    if stats.copied + stats.linked > 0 {
        info!(
            copied = stats.copied,
            linked = stats.linked,
            missing = stats.missing,
            bytes = stats.bytes,
            "blob files backed up"
        );
    }
    Ok(stats)
}

/// Copies one file through a synced temp name; returns its md5.
fn copy_file(from: &Path, to: &Path) -> Result<String> {
    let tmp = temp_name(to);
    let mut input = File::open(from).map_err(io(format!("opening {}", from.display())))?;
    let mut out = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    let mut sum = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(format!("reading {}", from.display()))(e)),
        };
        sum.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io(format!("writing {}", tmp.display())))?;
    }
    out.sync_all()
        .map_err(io(format!("syncing {}", tmp.display())))?;
    fs::rename(&tmp, to).map_err(io(format!("renaming {}", tmp.display())))?;
    Ok(hex(&sum.finalize()))
}

/// md5 and size of a file, or a verification failure naming it.
pub fn check_file(path: &Path, expect: &Entry, quick: bool) -> Result<()> {
    let meta = fs::metadata(path)
        .map_err(|_| Error::Verification(format!("blob file {} is missing", path.display())))?;
    if meta.len() != expect.size {
        return Err(Error::Verification(format!(
            "blob file {} is {} bytes, should be {} bytes",
            path.display(),
            meta.len(),
            expect.size
        )));
    }
    if !quick {
        let mut input = File::open(path).map_err(io(format!("opening {}", path.display())))?;
        let mut sum = Md5::new();
        std::io::copy(&mut input, &mut sum).map_err(io(format!("reading {}", path.display())))?;
        let got = hex(&sum.finalize());
        if got != expect.md5 {
            return Err(Error::Verification(format!(
                "blob file {} has checksum {got} instead of {}",
                path.display(),
                expect.md5
            )));
        }
    }
    Ok(())
}

/// Refuses, before anything is written, a destination that already holds
/// blob files or a chain with a backup that has no blob files.
pub fn preflight(backups: &[(String, PathBuf, PathBuf)], dest: &Path) -> Result<()> {
    if dest.exists() {
        let occupied = fs::read_dir(dest)
            .map_err(io(format!("listing {}", dest.display())))?
            .any(|e| e.is_ok_and(|e| e.file_name() != "tmp" && e.file_name() != ".layout"));
        if occupied {
            return Err(Error::BlobDirNotEmpty(dest.to_path_buf()));
        }
    }
    for (stem, _, manifest) in backups {
        if !manifest.exists() {
            return Err(Error::NoBlobBackup(stem.clone()));
        }
    }
    Ok(())
}

/// Puts the blob files of a chain of backups into the empty directory
/// `dest`, checking each against its manifest. Returns the file count.
pub fn recover(backups: &[(String, PathBuf, PathBuf)], dest: &Path) -> Result<u64> {
    preflight(backups, dest)?;
    fs::create_dir_all(dest).map_err(io(format!("creating {}", dest.display())))?;
    let mut count = 0;
    let mut layout = None;
    for (stem, dir, manifest_path) in backups {
        let manifest =
            Manifest::read(manifest_path)?.ok_or_else(|| Error::NoBlobBackup(stem.clone()))?;
        layout.get_or_insert(manifest.layout);
        let mut progress = Progress::files(
            format!("blobs of {stem} -> {}", dest.display()),
            manifest.entries.len() as u64,
        );
        for (i, e) in manifest.entries.iter().enumerate() {
            progress.tick(i as u64);
            let from = dir.join(&e.rel);
            let to = dest.join(&e.rel);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
            }
            let md5 = copy_file(&from, &to).map_err(|err| match err {
                Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    Error::Verification(format!("blob file {} is missing", from.display()))
                }
                other => other,
            })?;
            let size = fs::metadata(&to)
                .map_err(io(format!("inspecting {}", to.display())))?
                .len();
            if md5 != e.md5 || size != e.size {
                return Err(Error::Verification(format!(
                    "blob file {} is {size} bytes with checksum {md5}, should be {} bytes with {}",
                    from.display(),
                    e.size,
                    e.md5
                )));
            }
            count += 1;
        }
    }
    let layout = layout.unwrap_or(Layout::Bushy);
    fs::write(dest.join(".layout"), layout.name())
        .map_err(io(format!("writing {}/.layout", dest.display())))?;
    Ok(count)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn e_blobs() -> (tempfile::TempDir, PathBuf) {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|a| a.join("shared/fixtures/e_blobs"))
            .find(|p| p.is_dir())
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(fixtures.join("."))
            .arg(tmp.path())
            .status()
            .unwrap();
        assert!(status.success());
        let data = tmp.path().join("Data.fs");
        (tmp, data)
    }

    #[test]
    fn a_pack_that_removes_needed_blobs_fails_the_backup() {
        let (tmp, data) = e_blobs();
        let snap = Snapshot::take(&data, None).unwrap();
        let revisions = snap.blob_revisions(4).unwrap();
        assert_eq!(revisions.len(), 3);
        // What pack does: a new file renamed over the old, then the blob
        // revisions it dropped removed.
        let packed = tmp.path().join("Data.fs.pack");
        fs::copy(&data, &packed).unwrap();
        fs::rename(&packed, &data).unwrap();
        let blobs = tmp.path().join("blobs");
        let (oid, tid) = revisions[0];
        let layout = Layout::of(&blobs).unwrap();
        fs::remove_file(blobs.join(layout.rel_path(oid, tid))).unwrap();

        let dest = tmp.path().join("repo/blobs/x");
        let manifest = tmp.path().join("repo/blobs/x.blobs");
        let none = Earlier {
            files: HashMap::new(),
        };
        let err = back_up(&snap, &blobs, &revisions, &dest, &manifest, &none).unwrap_err();
        assert!(matches!(err, Error::SourceReplaced(_)), "{err}");
        assert!(!manifest.exists());
    }

    #[test]
    fn manifests_round_trip_and_reject_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.blobs");
        let m = Manifest {
            tid: Some(Tid::from_u64(0x03f5_8e00_0ccc_cccc)),
            layout: Layout::Bushy,
            entries: vec![Entry {
                rel: Layout::Bushy.rel_path(Oid::from_u64(1), Tid::from_u64(0x03f5_8e00_0ccc_cccc)),
                size: 28,
                md5: "0c8358ff17e6bf80a986720355e94fb2".into(),
            }],
        };
        m.write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), Some(m));
        fs::write(
            &path,
            "zeod-blobs 1 tid none layout bushy\n../../etc/passwd 1 x\n",
        )
        .unwrap();
        assert!(matches!(
            Manifest::read(&path),
            Err(Error::BadManifest { line: 2, .. })
        ));
    }
}
