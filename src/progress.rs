//! Progress of long work (index rebuild, pack, `zeod check`, backup and
//! restore). The work only counts: it reports bytes done of a total into a
//! [`Progress`], a cheap shared handle of atomics, from its hot loop. How
//! that is shown is chosen by whoever started the work, through a
//! [`Reporter`]: a bar when stderr is a terminal, a log line every few
//! seconds otherwise. The server's metrics read the same handle at scrape
//! time, so the storage code never knows whether anyone is watching.
//! Bars are drawn where [`crate::telemetry`] writes log lines around them;
//! the log interval is set once by `main` ([`set_log_interval`]).
//!
//! ```text
//!   storage / check / backup ──set(done)──► Progress ◄──snapshot()── Reporter (bar | log)
//!                                               ▲
//!                                               └────snapshot()───── /metrics (pack)
//! ```

mod report;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub use report::{Reporter, Style};

const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(5);
static LOG_INTERVAL: OnceLock<Duration> = OnceLock::new();

/// Sets the time between `progress` log lines for the whole process
/// (`main` passes `ZEOD_PROGRESS_INTERVAL`); the first call wins.
pub fn set_log_interval(interval: Duration) {
    let _ = LOG_INTERVAL.set(interval);
}

fn log_interval() -> Duration {
    LOG_INTERVAL.get().copied().unwrap_or(DEFAULT_LOG_INTERVAL)
}

/// A handle on one piece of long work; clones share it.
#[derive(Clone, Default)]
pub struct Progress(Arc<Shared>);

#[derive(Default)]
struct Shared {
    running: AtomicBool,
    stop: AtomicBool,
    done: AtomicU64,
    total: AtomicU64,
    labels: Mutex<Labels>,
}

#[derive(Default)]
struct Labels {
    task: String,
    phase: &'static str,
    unit: Unit,
    started: Option<Instant>,
}

/// What is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Unit {
    #[default]
    Bytes,
    Files,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::Files => "files",
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.snapshot() {
            Some(s) => write!(f, "Progress({} {}/{})", s.task, s.done, s.total),
            None => f.write_str("Progress(idle)"),
        }
    }
}

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Starts (or restarts) the work: `total` bytes, none done yet.
    pub fn start(&self, task: impl Into<String>, total: u64) {
        self.start_counting(task, total, Unit::Bytes);
    }

    /// Starts work counted in `unit`.
    pub fn start_counting(&self, task: impl Into<String>, total: u64, unit: Unit) {
        self.begin(task.into(), total, unit, "");
    }

    /// Sets everything before flagging the work running, so no reader
    /// sees a half-started run.
    fn begin(&self, task: String, total: u64, unit: Unit, phase: &'static str) {
        {
            let mut labels = self.0.labels.lock();
            labels.task = task;
            labels.phase = phase;
            labels.unit = unit;
            labels.started = Some(Instant::now());
        }
        self.0.done.store(0, Ordering::Relaxed);
        self.0.total.store(total, Ordering::Relaxed);
        self.0.running.store(true, Ordering::Release);
    }

    /// Names the current step of the work (`gc`, `copy`, …).
    pub fn phase(&self, phase: &'static str) {
        self.0.labels.lock().phase = phase;
    }

    /// Bytes done so far. Called from hot loops: one relaxed store.
    pub fn set(&self, done: u64) {
        self.0.done.store(done, Ordering::Relaxed);
    }

    pub fn add(&self, bytes: u64) {
        self.0.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The total grew (a pack also copies what is committed meanwhile).
    pub fn set_total(&self, total: u64) {
        self.0.total.store(total, Ordering::Relaxed);
    }

    /// The work ended, however it ended.
    pub fn finish(&self) {
        self.0.running.store(false, Ordering::Release);
    }

    pub fn is_running(&self) -> bool {
        self.0.running.load(Ordering::Acquire)
    }

    /// Asks the work to stop early (a signal during start-up): work that
    /// can be abandoned without harm polls [`Progress::stop_requested`]
    /// from its loop; other work ignores the request and runs to its end.
    pub fn request_stop(&self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }

    /// Whether [`Progress::request_stop`] was called. One relaxed load.
    pub fn stop_requested(&self) -> bool {
        self.0.stop.load(Ordering::Relaxed)
    }

    /// Where the work is; `None` when nothing runs.
    pub fn snapshot(&self) -> Option<Snapshot> {
        if !self.is_running() {
            return None;
        }
        let labels = self.0.labels.lock();
        Some(Snapshot {
            task: labels.task.clone(),
            phase: labels.phase,
            unit: labels.unit,
            done: self.0.done.load(Ordering::Relaxed),
            total: self.0.total.load(Ordering::Relaxed),
            elapsed: labels.started.map(|s| s.elapsed()).unwrap_or_default(),
        })
    }

    /// Marks the work started and returns a guard that marks it finished
    /// when dropped, so an early `?` return cannot leave it "running".
    pub fn run(&self, task: impl Into<String>, total: u64) -> Running<'_> {
        self.start(task, total);
        Running(self)
    }

    /// [`Progress::run`], starting in `phase`.
    pub fn run_phase(
        &self,
        task: impl Into<String>,
        total: u64,
        phase: &'static str,
    ) -> Running<'_> {
        self.begin(task.into(), total, Unit::Bytes, phase);
        Running(self)
    }
}

/// See [`Progress::run`].
pub struct Running<'a>(&'a Progress);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// One reading of a [`Progress`].
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub task: String,
    pub phase: &'static str,
    pub unit: Unit,
    pub done: u64,
    pub total: u64,
    pub elapsed: Duration,
}

impl Snapshot {
    /// Done / total in `[0, 1]` (0 for an empty total).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        (self.done as f64 / self.total as f64).clamp(0.0, 1.0)
    }

    /// Average units per second since the start.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.done as f64 / secs
    }

    /// Time left at the average rate so far; `None` before anything is done.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        if self.done == 0 || rate <= 0.0 {
            return None;
        }
        let left = self.total.saturating_sub(self.done) as f64 / rate;
        Duration::try_from_secs_f64(left).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn idle_until_started_and_after_the_guard_drops() {
        let p = Progress::new();
        assert!(p.snapshot().is_none());
        {
            let _running = p.run("check", 1000);
            p.set(250);
            let s = p.snapshot().unwrap();
            assert_eq!((s.task.as_str(), s.done, s.total), ("check", 250, 1000));
            assert!((s.fraction() - 0.25).abs() < 1e-9);
        }
        assert!(p.snapshot().is_none());
    }

    #[test]
    fn eta_follows_the_average_rate() {
        let s = Snapshot {
            task: "pack".into(),
            phase: "copy",
            unit: Unit::Bytes,
            done: 300,
            total: 1200,
            elapsed: Duration::from_secs(3),
        };
        assert_eq!(s.rate(), 100.0);
        assert_eq!(s.eta(), Some(Duration::from_secs(9)));
        let none_done = Snapshot {
            done: 0,
            ..s.clone()
        };
        assert_eq!(none_done.eta(), None);
        let overshoot = Snapshot { done: 2000, ..s };
        assert_eq!(overshoot.fraction(), 1.0);
        assert_eq!(overshoot.eta(), Some(Duration::ZERO));
    }
}
