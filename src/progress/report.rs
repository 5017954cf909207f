//! Showing a [`Progress`]: a thread that reads it a few times a second and
//! draws an indicatif bar (stderr is a terminal) or logs a `progress` line
//! every [`super::log_interval`] (default 5 s) with percent, rate
//! and ETA as structured fields, so JSON logs carry them as numbers.
//! Work shorter than one interval logs nothing extra.

use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracing::{info, warn};

use super::{log_interval, Progress, Snapshot, Unit};
use crate::telemetry::progress_bars;

/// How to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A bar if stderr is a terminal, log lines otherwise.
    Auto,
    Bar,
    Log,
}

const BAR_TICK: Duration = Duration::from_millis(100);
const LOG_TICK: Duration = Duration::from_millis(250);

/// Shows a [`Progress`] until dropped.
pub struct Reporter {
    stop: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    pub fn start(progress: &Progress, style: Style) -> Reporter {
        let bar = match style {
            Style::Bar => true,
            Style::Log => false,
            Style::Auto => std::io::stderr().is_terminal(),
        };
        let (stop, stopped) = mpsc::sync_channel(1);
        let progress = progress.clone();
        let spawned = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                if bar {
                    watch(BarView::default(), BAR_TICK, &progress, &stopped);
                } else {
                    let interval = log_interval();
                    let every = LOG_TICK.min(interval);
                    watch(LogView::new(interval), every, &progress, &stopped);
                }
            });
        match spawned {
            Ok(thread) => Reporter {
                stop: Some(stop),
                thread: Some(thread),
            },
            Err(err) => {
                warn!(%err, "cannot start the progress reporter; working without it");
                Reporter {
                    stop: None,
                    thread: None,
                }
            }
        }
    }

    /// A bar on a terminal, log lines otherwise: for commands a person runs.
    pub fn auto(progress: &Progress) -> Reporter {
        Reporter::start(progress, Style::Auto)
    }

    /// Log lines only: for the server, whose stderr is a log.
    pub fn log(progress: &Progress) -> Reporter {
        Reporter::start(progress, Style::Log)
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        // A full channel means a stop is already pending; a closed one
        // that the thread is gone. Either way, join.
        if let Some(stop) = self.stop.take() {
            let _ = stop.try_send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A way of showing the runs of a [`Progress`], fed a reading every tick.
trait View {
    /// The latest reading; `None` while no work runs.
    fn observe(&mut self, snapshot: Option<Snapshot>);
    /// The reporter stops: close what is shown.
    fn end(&mut self);
}

/// Feeds `view` a reading now and every `every` until the reporter is
/// dropped, then a last one, so the end of the work is shown.
fn watch(mut view: impl View, every: Duration, progress: &Progress, stopped: &mpsc::Receiver<()>) {
    loop {
        view.observe(progress.snapshot());
        if !matches!(stopped.recv_timeout(every), Err(RecvTimeoutError::Timeout)) {
            break;
        }
    }
    view.observe(progress.snapshot());
    view.end();
}

/// Log lines for one run of the work (a restarted [`Progress`] is a new run).
struct LogView {
    interval: Duration,
    /// The run being watched: its start, when it last logged, its last reading.
    current: Option<Watched>,
}

struct Watched {
    started: Instant,
    last_line: Instant,
    logged: bool,
    last: Snapshot,
}

impl LogView {
    fn new(interval: Duration) -> LogView {
        LogView {
            interval,
            current: None,
        }
    }
}

impl View for LogView {
    fn observe(&mut self, snapshot: Option<Snapshot>) {
        let Some(s) = snapshot else {
            self.end();
            return;
        };
        let now = Instant::now();
        let same_run = self
            .current
            .as_ref()
            .is_some_and(|w| w.last.task == s.task && w.last.elapsed <= s.elapsed);
        if !same_run {
            self.end();
            self.current = Some(Watched {
                started: now - s.elapsed,
                last_line: now - s.elapsed,
                logged: false,
                last: s,
            });
            return;
        }
        let Some(w) = self.current.as_mut() else {
            return;
        };
        if now.duration_since(w.last_line) >= self.interval {
            w.last_line = now;
            w.logged = true;
            log_line(&s);
        }
        w.last = s;
    }

    /// The run ended: one closing line if it logged any.
    fn end(&mut self) {
        if let Some(w) = self.current.take() {
            if w.logged {
                info!(
                    task = w.last.task.as_str(),
                    total = w.last.total,
                    elapsed_seconds = round1(w.started.elapsed().as_secs_f64()),
                    "progress: finished"
                );
            }
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn log_line(s: &Snapshot) {
    let eta_seconds = s.eta().map(|d| round1(d.as_secs_f64()));
    let phase = (!s.phase.is_empty()).then_some(s.phase);
    info!(
        task = s.task.as_str(),
        phase,
        percent = round1(s.fraction() * 100.0),
        done = s.done,
        total = s.total,
        unit = s.unit.name(),
        per_second = s.rate().round() as u64,
        eta_seconds,
        elapsed_seconds = round1(s.elapsed.as_secs_f64()),
        "progress"
    );
}

/// An indicatif bar on stderr, one per run of the work.
#[derive(Default)]
struct BarView {
    bar: Option<(String, ProgressBar)>,
}

impl View for BarView {
    fn observe(&mut self, snapshot: Option<Snapshot>) {
        let Some(s) = snapshot else {
            self.end();
            return;
        };
        if self.bar.as_ref().is_none_or(|(task, _)| *task != s.task) {
            self.end();
            let bar = progress_bars().add(ProgressBar::new(s.total));
            let template = match s.unit {
                Unit::Bytes => "{msg} [{wide_bar}] {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
                Unit::Files => "{msg} [{wide_bar}] {percent:>3}% {human_pos}/{human_len} files {per_sec} ETA {eta}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            self.bar = Some((s.task.clone(), bar));
        }
        if let Some((_, bar)) = &self.bar {
            bar.set_message(if s.phase.is_empty() {
                s.task.clone()
            } else {
                format!("{} ({})", s.task, s.phase)
            });
            bar.set_length(s.total);
            bar.set_position(s.done.min(s.total));
        }
    }

    fn end(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            bar.finish_and_clear();
            progress_bars().remove(&bar);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_reporter_stops_when_dropped_even_while_work_runs() {
        let p = Progress::new();
        let _running = p.run("test", 10);
        for style in [Style::Log, Style::Bar] {
            let r = Reporter::start(&p, style);
            p.set(5);
            drop(r);
        }
    }
}
