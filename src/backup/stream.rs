//! Byte streams with an md5 on the side: copying a range of the live file
//! into the repository (optionally gzipped), and reading repository files
//! back (gunzipping `.fsz`/`.deltafsz`). Long copies report progress.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use md5::{Digest, Md5};

use super::{io, Error, Result};
use crate::progress::{Reporter, Unit};

const CHUNK: usize = 1 << 20;

/// How far a long copy got: a bar on a terminal, log lines otherwise
/// (see [`crate::progress`]), until dropped.
pub struct Progress {
    progress: crate::progress::Progress,
    _shown: Reporter,
}

impl Progress {
    pub fn new(what: impl Into<String>, total: u64) -> Progress {
        Progress::counting(what, total, Unit::Bytes)
    }

    /// Counts files rather than bytes.
    pub fn files(what: impl Into<String>, total: u64) -> Progress {
        Progress::counting(what, total, Unit::Files)
    }

    fn counting(what: impl Into<String>, total: u64, unit: Unit) -> Progress {
        let progress = crate::progress::Progress::new();
        progress.start_counting(what, total, unit);
        let shown = Reporter::auto(&progress);
        Progress {
            progress,
            _shown: shown,
        }
    }

    pub fn tick(&mut self, done: u64) {
        self.progress.set(done);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.progress.finish();
    }
}

pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A temp name next to `dest`, renamed over it once complete and synced.
pub fn temp_name(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Copies `src[start, start+len)` to `dest` (via a synced temp file) and
/// returns the md5 of the plain bytes.
pub fn copy_range(
    src: &File,
    src_path: &Path,
    start: u64,
    len: u64,
    dest: &Path,
    gzip: bool,
) -> Result<String> {
    let tmp = temp_name(dest);
    let ctx = || format!("writing {}", tmp.display());
    let file = File::create(&tmp).map_err(io(ctx()))?;
    let plain = BufWriter::new(file);
    let mut sum = Md5::new();
    let mut progress = Progress::new(
        format!("copy {} -> {}", src_path.display(), dest.display()),
        len,
    );
    let mut pump = |out: &mut dyn Write| -> Result<()> {
        let mut buf = vec![0u8; CHUNK];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            let chunk = &mut buf[..n];
            src.read_exact_at(chunk, start + done).map_err(io(format!(
                "reading {} at {}",
                src_path.display(),
                start + done
            )))?;
            sum.update(&*chunk);
            out.write_all(chunk).map_err(io(ctx()))?;
            done += n as u64;
            progress.tick(done);
        }
        Ok(())
    };
    let plain = if gzip {
        let mut gz = GzEncoder::new(plain, flate2::Compression::default());
        pump(&mut gz)?;
        gz.finish().map_err(io(ctx()))?
    } else {
        let mut plain = plain;
        pump(&mut plain)?;
        plain
    };
    let file = plain.into_inner().map_err(|e| io(ctx())(e.into_error()))?;
    file.sync_all().map_err(io(ctx()))?;
    std::fs::rename(&tmp, dest).map_err(io(format!(
        "renaming {} to {}",
        tmp.display(),
        dest.display()
    )))?;
    Ok(hex(&sum.finalize()))
}

/// Reads a repository file to the end (gunzipping when `gzip`), feeding the
/// plain bytes to `sink`; returns their count and md5. A corrupt gzip stream
/// is a verification failure, not an I/O error.
pub fn read_all(
    path: &Path,
    gzip: bool,
    quick: bool,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<(u64, String)> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Verification(format!("{} is missing", path.display()))
        } else {
            io(format!("opening {}", path.display()))(e)
        }
    })?;
    let mut input: Box<dyn Read> = if gzip {
        Box::new(MultiGzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(file)
    };
    let mut sum = Md5::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if gzip
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::InvalidInput
                            | std::io::ErrorKind::InvalidData
                            | std::io::ErrorKind::UnexpectedEof
                    ) =>
            {
                return Err(Error::Verification(format!(
                    "{} is not a valid gzip file: {e}",
                    path.display()
                )));
            }
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        if !quick {
            sum.update(&buf[..n]);
        }
        sink(&buf[..n])?;
        size += n as u64;
    }
    Ok((size, hex(&sum.finalize())))
}

/// Writes `bytes` to `dest` via a synced temp file.
pub fn write_synced(
    dest: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temp_name(dest);
    let ctx = || format!("writing {}", tmp.display());
    let file = File::create(&tmp).map_err(io(ctx()))?;
    let mut w = BufWriter::new(file);
    write(&mut w).map_err(io(ctx()))?;
    let file = w.into_inner().map_err(|e| io(ctx())(e.into_error()))?;
    file.sync_all().map_err(io(ctx()))?;
    std::fs::rename(&tmp, dest).map_err(io(format!(
        "renaming {} to {}",
        tmp.display(),
        dest.display()
    )))
}

/// Makes the renames in `dir` durable: a backup that a power cut can
/// unlist is no backup.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing directory {}", dir.display())))
}
