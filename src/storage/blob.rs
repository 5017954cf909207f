//! The blob directory: where blob files live, named by oid and tid the way
//! ZODB's `FileSystemHelper` names them, so Python and ZEO clients with a
//! shared blob dir find them.
//!
//! ```text
//! <blob_dir>/.layout            "bushy" (or "lawn"), no newline
//! <blob_dir>/tmp/               uploads waiting for store_blob
//! bushy: <blob_dir>/0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x01/0x03f58e000ccccccc.blob
//! lawn:  <blob_dir>/0x01/0x03f58e000ccccccc.blob
//! ```

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::{Error, Result};
use crate::ids::{Oid, Tid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Bushy,
    Lawn,
}

#[derive(Debug)]
pub struct BlobDir {
    root: PathBuf,
    layout: Layout,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

fn make_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io(format!("creating {}", path.display())))
}

impl BlobDir {
    pub fn open(root: &Path, read_only: bool) -> Result<BlobDir> {
        if !read_only {
            make_dir(root)?;
            make_dir(&root.join("tmp"))?;
        }
        let marker = root.join(".layout");
        let layout = match fs::read_to_string(&marker) {
            Ok(s) => match s.trim() {
                "bushy" => Layout::Bushy,
                "lawn" => Layout::Lawn,
                other => {
                    return Err(Error::BadArgument(format!(
                        "{}: unknown blob layout {other:?} (expected bushy or lawn)",
                        marker.display()
                    )))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let occupied = fs::read_dir(root)
                    .map(|entries| entries.flatten().any(|e| e.file_name() != "tmp"))
                    .unwrap_or(false);
                let layout = if occupied {
                    warn!(dir = %root.display(), "blob directory without .layout holds files: assuming the deprecated lawn layout");
                    Layout::Lawn
                } else {
                    Layout::Bushy
                };
                if !read_only {
                    let name = if layout == Layout::Bushy {
                        "bushy"
                    } else {
                        "lawn"
                    };
                    fs::write(&marker, name)
                        .map_err(io(format!("writing {}", marker.display())))?;
                }
                layout
            }
            Err(e) => return Err(io(format!("reading {}", marker.display()))(e)),
        };
        Ok(BlobDir {
            root: root.to_path_buf(),
            layout,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn oid_dir(&self, oid: Oid) -> PathBuf {
        match self.layout {
            Layout::Bushy => {
                let mut p = self.root.clone();
                for b in oid.0 {
                    p.push(format!("0x{b:02x}"));
                }
                p
            }
            Layout::Lawn => self.root.join(oid.repr()),
        }
    }

    pub fn path_of(&self, oid: Oid, tid: Tid) -> PathBuf {
        self.oid_dir(oid).join(format!("{}.blob", tid.repr()))
    }

    /// Moves an uploaded file to its final name (copying across devices).
    /// Committed blobs are read-only, as ZODB leaves them.
    pub fn install(&self, from: &Path, oid: Oid, tid: Tid) -> Result<PathBuf> {
        make_dir(&self.oid_dir(oid))?;
        let to = self.path_of(oid, tid);
        if fs::rename(from, &to).is_err() {
            fs::copy(from, &to).map_err(io(format!(
                "copying {} to {}",
                from.display(),
                to.display()
            )))?;
            let _ = fs::remove_file(from);
        }
        let _ = fs::set_permissions(&to, fs::Permissions::from_mode(0o444));
        Ok(to)
    }

    /// Copies a committed blob to the name of a new revision (undo).
    pub fn copy_revision(&self, oid: Oid, from_tid: Tid, to_tid: Tid) -> Result<Option<PathBuf>> {
        let from = self.path_of(oid, from_tid);
        if !from.is_file() {
            return Ok(None);
        }
        make_dir(&self.oid_dir(oid))?;
        let to = self.path_of(oid, to_tid);
        fs::copy(&from, &to).map_err(io(format!(
            "copying {} to {}",
            from.display(),
            to.display()
        )))?;
        Ok(Some(to))
    }
}

/// A blob record's pickle: class `ZODB.blob.Blob`, state None.
pub fn is_blob_record(data: &[u8]) -> bool {
    const MARK: &[u8] = b"cZODB.blob\nBlob\n";
    data.windows(MARK.len()).take(64).any(|w| w == MARK)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bushy_paths_match_zodb() {
        let dir = tempfile::tempdir().unwrap();
        let b = BlobDir::open(dir.path(), false).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(".layout")).unwrap(),
            "bushy"
        );
        let p = b.path_of(Oid::from_u64(1), Tid::from_u64(0x03f5_8e00_0ccc_cccc));
        assert_eq!(
            p.strip_prefix(dir.path()).unwrap(),
            Path::new("0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x01/0x03f58e000ccccccc.blob")
        );
    }

    #[test]
    fn recognizes_blob_pickle() {
        let rec = b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.";
        assert!(is_blob_record(rec));
        assert!(!is_blob_record(
            b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00."
        ));
    }
}
