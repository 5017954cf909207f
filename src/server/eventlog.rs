//! zeo.conf's `<eventlog><logfile path …>`: a copy of the server's log in
//! the file and line format of Python's ZConfig logfile handler, which
//! runzeo users' tooling (and ZEO's own tests) read:
//!
//! ```text
//! ------
//! 2026-11-25T14:06:42 INFO ZEO.StorageServer (label 127.0.0.1:5123) message key=value
//! ```
//!
//! Events of the server get the logger name `ZEO.StorageServer`; an event
//! with `critical = true` is logged as `CRITICAL` (tracing has no such
//! level). Logs on stderr are unaffected.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

pub struct EventLog {
    file: Mutex<File>,
    level: Level,
}

impl EventLog {
    pub fn open(path: &Path, level: Level) -> std::io::Result<EventLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(EventLog {
            file: Mutex::new(file),
            level,
        })
    }
}

/// Python's level names for ZConfig's `level` key.
pub fn parse_level(name: &str) -> Option<Level> {
    match name.trim().to_ascii_uppercase().as_str() {
        "TRACE" | "BLATHER" | "ALL" | "NOTSET" => Some(Level::TRACE),
        "DEBUG" => Some(Level::DEBUG),
        "INFO" => Some(Level::INFO),
        "WARN" | "WARNING" => Some(Level::WARN),
        "ERROR" | "CRITICAL" | "FATAL" | "PANIC" => Some(Level::ERROR),
        _ => None,
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    label: Option<String>,
    peer: Option<String>,
    critical: bool,
    rest: String,
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "critical" {
            self.critical = value;
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field.name(), format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, name: &str, value: String) {
        match name {
            "message" => self.message = value,
            "label" => self.label = Some(value).filter(|l| !l.is_empty()),
            "peer" => self.peer = Some(value),
            _ => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for EventLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > self.level {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match (*meta.level(), fields.critical) {
            (_, true) => "CRITICAL",
            (Level::ERROR, _) => "ERROR",
            (Level::WARN, _) => "WARNING",
            (Level::INFO, _) => "INFO",
            (Level::DEBUG, _) => "DEBUG",
            (Level::TRACE, _) => "BLATHER",
        };
        let name = if meta.target().starts_with("zeod::server") {
            "ZEO.StorageServer"
        } else {
            meta.target()
        };
        let who = match (&fields.label, &fields.peer) {
            (Some(label), Some(peer)) => format!("({label} {peer}) "),
            (None, Some(peer)) => format!("({peer}) "),
            (Some(label), None) => format!("({label}) "),
            (None, None) => String::new(),
        };
        let now = crate::ids::Tid::now().timestamp_string();
        let stamp = format!(
            "{}T{}",
            now.get(..10).unwrap_or(""),
            now.get(11..19).unwrap_or("")
        );
        let line = format!(
            "------\n{stamp} {level} {name} {who}{}{}\n",
            fields.message, fields.rest
        );
        let mut file = self.file.lock();
        let _ = file.write_all(line.as_bytes());
    }
}
