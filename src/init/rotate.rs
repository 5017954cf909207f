//! Rotation of the log files the child writes: when a file outgrows
//! `max_size` or is older than `every`, shift `path.1 … path.<keep>`, rename
//! `path` to `path.1`, and let the supervisor signal the child to reopen if
//! the rule names a signal (runzeo reopens on SIGUSR2; Python's
//! WatchedFileHandler, which zope.ini uses, reopens by itself). Renaming,
//! not copying, loses no line: the child keeps writing into `path.1` until
//! it reopens.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sys::signal::Signal;

use super::settings::Rotate;

/// One rotation rule and when it is next due by age.
#[derive(Debug)]
pub struct Rotator {
    rule: Rotate,
    next_by_age: Option<Instant>,
}

impl Rotator {
    pub fn new(rule: Rotate, now: Instant) -> Rotator {
        let next_by_age = rule.every.map(|every| now + every.0);
        Rotator { rule, next_by_age }
    }

    /// Rotates the file if a condition holds. Returns the signal that tells
    /// the child to reopen it, if it was rotated.
    pub fn check(&mut self, now: Instant) -> Option<Signal> {
        let len = fs::metadata(&self.rule.path).map(|m| m.len()).ok()?;
        let by_size = self.rule.max_size.is_some_and(|max| len >= max.0);
        let by_age = self.next_by_age.is_some_and(|due| now >= due);
        if by_age {
            self.next_by_age = self.rule.every.map(|every| now + every.0);
        }
        // An empty file is not worth a rotated copy.
        if !(by_size || by_age) || len == 0 {
            return None;
        }
        match shift(&self.rule.path, self.rule.keep) {
            Ok(()) => {
                tracing::info!(path = %self.rule.path.display(), bytes = len, by_size, by_age, "rotated log");
                self.rule.signal.0
            }
            Err(error) => {
                tracing::warn!(path = %self.rule.path.display(), %error, "log rotation failed");
                None
            }
        }
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// `path.<keep-1>` → `path.<keep>`, …, `path` → `path.1`.
fn shift(path: &Path, keep: u32) -> io::Result<()> {
    if keep == 0 {
        return fs::remove_file(path);
    }
    for n in (1..keep).rev() {
        match fs::rename(numbered(path, n), numbered(path, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    fs::rename(path, numbered(path, 1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::init::values::{Reopen, Size};

    #[test]
    fn rotates_by_size_and_keeps_the_asked_number_of_copies() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("instance.log");
        let rule = Rotate {
            path: log.clone(),
            max_size: Some(Size(10)),
            every: None,
            keep: 2,
            signal: Reopen(Some(Signal::SIGUSR2)),
        };
        let mut rotator = Rotator::new(rule, Instant::now());
        for round in 0..4 {
            fs::write(&log, format!("round {round}: more than ten bytes")).unwrap();
            assert_eq!(rotator.check(Instant::now()), Some(Signal::SIGUSR2));
        }
        fs::write(&log, "short").unwrap();
        assert_eq!(rotator.check(Instant::now()), None);
        assert!(fs::read_to_string(numbered(&log, 1))
            .unwrap()
            .starts_with("round 3"));
        assert!(fs::read_to_string(numbered(&log, 2))
            .unwrap()
            .starts_with("round 2"));
        assert!(!numbered(&log, 3).exists());
    }

    #[test]
    fn rotates_by_age_only_when_due_and_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let rule = Rotate {
            path: log.clone(),
            max_size: None,
            every: Some(crate::init::values::Span(std::time::Duration::from_secs(
                60,
            ))),
            keep: 1,
            signal: Reopen(None),
        };
        let start = Instant::now();
        let mut rotator = Rotator::new(rule, start);
        fs::write(&log, "line\n").unwrap();
        assert_eq!(rotator.check(start), None);
        assert!(!numbered(&log, 1).exists(), "not due yet");
        let due = start + std::time::Duration::from_secs(61);
        // Rotated, with no reopen signal to send.
        assert_eq!(rotator.check(due), None);
        assert_eq!(fs::read_to_string(numbered(&log, 1)).unwrap(), "line\n");
        // The next period starts at the rotation; an empty file stays.
        fs::write(&log, "").unwrap();
        assert_eq!(
            rotator.check(due + std::time::Duration::from_secs(61)),
            None
        );
        assert!(log.exists());
    }
}
