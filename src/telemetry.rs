//! Logging setup: tracing-subscriber, human-readable by default, JSON when
//! asked; levels from `RUST_LOG` (default `info`). Log lines share stderr
//! with the progress bars of [`crate::progress`]: both go through here.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressDrawTarget};

use tracing_subscriber::EnvFilter;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber; logs go to stderr. Calling it twice is
/// harmless (the second call is ignored), which keeps tests simple.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Around the progress bars, which a log line must not tear.
        .with_writer(|| LogStderr)
        // Colour codes only help a person at a terminal; in container logs
        // and log files they are noise.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The progress bars on stderr, created with the first bar.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Where progress bars are drawn, so log lines can step around them.
pub fn progress_bars() -> &'static MultiProgress {
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// stderr for log lines: while bars are drawn, each write hides them,
/// writes, and draws them again below, instead of the line landing in
/// the middle of a bar. Without bars (servers, `zeod init`) a plain write.
pub struct LogStderr;

impl Write for LogStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(bars) => bars.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match BARS.get() {
            Some(bars) => bars.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
