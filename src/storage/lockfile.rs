//! `Data.fs.lock`: the exclusive lock zc.lockfile takes, so zeod and a
//! Python process never open the same storage read-write at once.
//! Same protocol: `flock(LOCK_EX | LOCK_NB)` on the whole file, then the
//! content ` <pid>\n`. The file is left behind on release, as Python does.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::{Error, Result};

pub struct LockFile {
    _lock: Flock<std::fs::File>,
}

impl LockFile {
    pub fn acquire(path: &Path) -> Result<LockFile> {
        let io = |source| Error::Io {
            context: format!("opening lock file {}", path.display()),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        let write = |f: &mut std::fs::File| -> std::io::Result<()> {
            f.seek(SeekFrom::Start(0))?;
            let content = format!(" {}\n", std::process::id());
            f.write_all(content.as_bytes())?;
            f.set_len(content.len() as u64)?;
            f.flush()
        };
        write(&mut lock).map_err(io)?;
        Ok(LockFile { _lock: lock })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs.lock");
        let first = LockFile::acquire(&path).unwrap();
        assert!(matches!(
            LockFile::acquire(&path),
            Err(Error::Locked { .. })
        ));
        let content = std::fs::read_to_string(&path).unwrap();
        assert_eq!(content, format!(" {}\n", std::process::id()));
        drop(first);
        LockFile::acquire(&path).unwrap();
    }
}
