//! `zeod check PATH`: an fstest-like consistency walk of a `Data.fs`.
//! Checks what Python's `fstest` checks (magic, header and trailer lengths,
//! status bytes, records inside their transaction, tid order) plus the
//! pointers fstest leaves alone: every `prev` and `back` must point
//! backwards at a record of the same oid, and `prev` must name the oid's
//! previous record. Opens the file read-only and never writes.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::ids::Tid;
use crate::progress::{Progress, Reporter};
use crate::storage::format::{
    Reader, SeqReader, TxnHeader, DATA_HEADER_LEN, MAGIC, MAGIC_PY2, SCAN_BUFFER,
    STATUS_CHECKPOINT, STATUS_DONE, STATUS_PACKED, STATUS_UNDONE, TXN_HEADER_LEN,
};
use crate::storage::index::Index;
use crate::storage::Error;
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The Data.fs to check.
    pub path: PathBuf,
    /// Print a line per transaction; twice: per data record too.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format of the progress lines on stderr (the report goes to stdout).
    #[arg(long, value_enum, env = "ZEOD_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// What a clean walk counted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub size: u64,
    pub transactions: u64,
    pub records: u64,
    pub objects: usize,
    pub first_tid: Option<Tid>,
    pub last_tid: Option<Tid>,
    pub py2_magic: bool,
    /// Oddities that do not stop a load, e.g. a `prev` that skips a
    /// revision (Python writes that when one txn stores an oid twice).
    pub warnings: Vec<String>,
}

/// The first damage found: where, and what.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {reason} at {pos}")]
pub struct Damage {
    pub path: String,
    pub pos: u64,
    pub reason: String,
}

pub fn main(args: CheckArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(args.log_format);
    let mut out = std::io::stdout().lock();
    let progress = Progress::new();
    let report = {
        let _shown = Reporter::auto(&progress);
        check_with_progress(&args.path, args.verbose, &mut out, &progress)?
    };
    match report {
        Ok(report) => {
            writeln!(
                out,
                "{}: {} bytes, {} transactions, {} data records, {} objects{}",
                args.path.display(),
                report.size,
                report.transactions,
                report.records,
                report.objects,
                match (report.first_tid, report.last_tid) {
                    (Some(a), Some(b)) => format!(
                        ", tids {} .. {}",
                        a.timestamp_string(),
                        b.timestamp_string()
                    ),
                    _ => String::new(),
                }
            )?;
            if report.py2_magic {
                writeln!(out, "note: FS21 magic (written by Python 2 ZODB)")?;
            }
            for w in &report.warnings {
                writeln!(out, "warning: {w}")?;
            }
            writeln!(out, "no errors detected")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(damage) => {
            writeln!(out, "DAMAGED: {damage}")?;
            Ok(ExitCode::from(1))
        }
    }
}

/// Walks `path`. The outer error is for files that cannot be read at all;
/// the inner one is the first damage found.
pub fn check(
    path: &Path,
    verbose: u8,
    out: &mut impl Write,
) -> anyhow::Result<Result<Report, Damage>> {
    check_with_progress(path, verbose, out, &Progress::new())
}

/// [`check`], reporting the bytes walked into `progress`.
pub fn check_with_progress(
    path: &Path,
    verbose: u8,
    out: &mut impl Write,
    progress: &Progress,
) -> anyhow::Result<Result<Report, Damage>> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let r = Reader::new(&file, path);
    let _running = progress.run("check", size);
    let mut walker = Walker {
        seq: SeqReader::new(r, SCAN_BUFFER, size),
        index: Index::new(),
        size,
        verbose,
        progress,
    };
    Ok(walker.walk(out))
}

struct Walker<'a> {
    seq: SeqReader<'a>,
    index: Index,
    size: u64,
    verbose: u8,
    progress: &'a Progress,
}

impl Walker<'_> {
    fn damage(&self, pos: u64, reason: impl Into<String>) -> Damage {
        Damage {
            path: self.seq.r.path.display().to_string(),
            pos,
            reason: reason.into(),
        }
    }

    /// Storage errors while reading (short reads, version records) are
    /// damage at their position.
    fn lift(&self, e: Error) -> Damage {
        match e {
            Error::Corrupt { pos, reason, .. } => self.damage(pos, reason),
            Error::VersionedRecord { pos, .. } => self.damage(
                pos,
                "data record with a version length: a ZODB <= 3.8 file (convert it) or damage",
            ),
            other => self.damage(0, other.to_string()),
        }
    }

    fn walk(&mut self, out: &mut impl Write) -> Result<Report, Damage> {
        let mut report = Report {
            size: self.size,
            ..Report::default()
        };
        if self.size == 0 {
            return Err(self.damage(0, "empty file"));
        }
        let magic = self.seq.get(0, 4).map(<[u8]>::to_vec).unwrap_or_default();
        if magic == MAGIC_PY2 {
            report.py2_magic = true;
        } else if magic != MAGIC {
            return Err(self.damage(0, "invalid file header"));
        }
        let mut pos = 4;
        let mut last = Tid::ZERO;
        while pos < self.size {
            self.progress.set(pos);
            if self.size - pos < TXN_HEADER_LEN {
                return Err(self.damage(pos, "truncated"));
            }
            let h = self.seq.txn_header(pos).map_err(|e| self.lift(e))?;
            if h.tid <= last {
                return Err(
                    self.damage(pos, format!("time-stamp reduction: {} <= {}", h.tid, last))
                );
            }
            last = h.tid;
            self.txn(pos, &h, &mut report, out)?;
            report.transactions += 1;
            report.first_tid.get_or_insert(h.tid);
            report.last_tid = Some(h.tid);
            if self.verbose >= 1 {
                let _ = writeln!(
                    out,
                    "{pos:>10}: transaction tid {} #{}",
                    h.tid,
                    report.transactions - 1
                );
            }
            pos += h.tlen + 8;
        }
        report.objects = self.index.len();
        Ok(report)
    }

    fn txn(
        &mut self,
        tpos: u64,
        h: &TxnHeader,
        report: &mut Report,
        out: &mut impl Write,
    ) -> Result<(), Damage> {
        if tpos
            .checked_add(h.tlen)
            .and_then(|e| e.checked_add(8))
            .is_none_or(|e| e > self.size)
        {
            return Err(self.damage(tpos, "truncated possibly because of damaged records"));
        }
        if h.status == STATUS_CHECKPOINT {
            return Err(self.damage(tpos, "checkpoint flag was not cleared"));
        }
        if ![STATUS_DONE, STATUS_PACKED, STATUS_UNDONE].contains(&h.status) {
            return Err(self.damage(tpos, format!("invalid status {:?}", char::from(h.status))));
        }
        if h.header_len() > h.tlen {
            return Err(self.damage(tpos, "invalid transaction header"));
        }
        let tend = tpos + h.tlen;
        if h.status != STATUS_UNDONE {
            let mut pos = tpos + h.header_len();
            let mut tindex = Vec::new();
            let mut i = 0;
            while pos < tend {
                let d = self.seq.data_header(pos).map_err(|e| self.lift(e))?;
                if d.tloc != tpos {
                    return Err(self.damage(
                        pos,
                        format!("data record tloc {} != transaction {tpos}", d.tloc),
                    ));
                }
                if pos.saturating_add(d.record_len()) > tend {
                    return Err(
                        self.damage(pos, "data record extends beyond the transaction record")
                    );
                }
                if d.tid != h.tid && h.status != STATUS_PACKED {
                    // restore() may write another serial; only note it.
                    if self.verbose >= 2 {
                        let _ = writeln!(
                            out,
                            "{pos:>10}: record tid {} differs from its transaction",
                            d.tid
                        );
                    }
                }
                self.pointers(pos, d.oid, d.prev, d.plen, report)?;
                if self.verbose >= 2 {
                    let _ = writeln!(out, "{pos:>10}: object oid {} #{i}", d.oid);
                }
                tindex.push((d.oid, pos));
                i += 1;
                pos += d.record_len();
                report.records += 1;
            }
            if pos != tend {
                return Err(self.damage(tpos, "data records don't add up"));
            }
            for (oid, at) in tindex {
                self.index.insert(oid, at);
            }
        }
        let rtl = self.seq.u64_at(tend).map_err(|e| self.lift(e))?;
        if rtl != h.tlen {
            return Err(self.damage(
                tend,
                format!("inconsistent transaction length {rtl} != {}", h.tlen),
            ));
        }
        Ok(())
    }

    fn pointers(
        &mut self,
        pos: u64,
        oid: crate::ids::Oid,
        prev: u64,
        plen: u64,
        report: &mut Report,
    ) -> Result<(), Damage> {
        if prev >= pos {
            return Err(self.damage(
                pos,
                format!("oid {oid}: prev {prev} does not point backwards"),
            ));
        }
        if prev != 0 {
            let target = self
                .seq
                .data_header(prev)
                .map_err(|_| self.damage(pos, "prev pointer to nowhere"))?;
            if target.oid != oid {
                return Err(self.damage(
                    pos,
                    format!("oid {oid}: prev {prev} is a record of {}", target.oid),
                ));
            }
        }
        let expected = self.index.get(oid).unwrap_or(0);
        if prev != expected && report.warnings.len() < 100 {
            report.warnings.push(format!(
                "{pos}: oid {oid}: prev {prev}, but its previous record is at {expected}"
            ));
        }
        if plen == 0 {
            let back = self
                .seq
                .u64_at(pos + DATA_HEADER_LEN)
                .map_err(|e| self.lift(e))?;
            if back >= pos {
                return Err(self.damage(
                    pos,
                    format!("oid {oid}: back pointer {back} does not point backwards"),
                ));
            }
            if back != 0 {
                let target = self
                    .seq
                    .data_header(back)
                    .map_err(|_| self.damage(pos, "back pointer to nowhere"))?;
                if target.oid != oid {
                    return Err(self.damage(
                        pos,
                        format!(
                            "oid {oid}: back pointer {back} is a record of {}",
                            target.oid
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_foreign_files_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("Data.fs");
        std::fs::write(&p, b"").unwrap();
        assert!(check(&p, 0, &mut Vec::new()).unwrap().is_err());
        std::fs::write(&p, b"GIF89a").unwrap();
        let damage = check(&p, 0, &mut Vec::new()).unwrap().unwrap_err();
        assert_eq!(damage.reason, "invalid file header");
        std::fs::write(&p, b"FS30").unwrap();
        assert_eq!(
            check(&p, 0, &mut Vec::new()).unwrap().unwrap().transactions,
            0
        );
    }
}
