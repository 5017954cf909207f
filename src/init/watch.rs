//! Watching the config file and the template dir for changes, including
//! Kubernetes' ConfigMap update (files are symlinks through `..data`, and an
//! update swaps `..data` to a new timestamped directory with one rename):
//! we watch directories, not files, so the swap shows up as an event in the
//! watched directory. Every relevant event becomes one `Event::Changed`; the
//! supervisor debounces them.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use parking_lot::Mutex;

use super::supervisor::Event;

/// Paths whose events are our own doing (the rendered outputs), shared
/// with the watcher thread so writing an output into a watched directory
/// does not trigger another render.
pub type Outputs = Arc<Mutex<Vec<PathBuf>>>;

/// A directory that could not be watched.
#[derive(Debug, thiserror::Error)]
#[error("watching {}: {source}", dir.display())]
pub struct Error {
    pub dir: PathBuf,
    pub source: notify::Error,
}

/// Starts watching. Keep the returned watcher alive as long as events are
/// wanted.
pub fn start(
    config: Option<&Path>,
    templates: &Path,
    outputs: Outputs,
    events: SyncSender<Event>,
) -> Result<RecommendedWatcher, Error> {
    let watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let event = match result {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "file watch error");
                return;
            }
        };
        if !relevant(&event, &outputs.lock()) {
            return;
        }
        tracing::debug!(kind = ?event.kind, paths = ?event.paths, "watched file changed");
        // A full queue already holds a Changed that will cause the render.
        if let Err(TrySendError::Disconnected(_)) = events.try_send(Event::Changed) {
            tracing::debug!("supervisor gone; dropping file event");
        }
    });
    let mut watcher = watcher.map_err(|source| Error {
        dir: templates.to_owned(),
        source,
    })?;
    let add = |watcher: &mut RecommendedWatcher, dir: &Path, mode| {
        watcher.watch(dir, mode).map_err(|source| Error {
            dir: dir.to_owned(),
            source,
        })
    };
    add(&mut watcher, templates, RecursiveMode::Recursive)?;
    if let Some(config) = config {
        let dir = match config.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        add(&mut watcher, dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

fn relevant(event: &notify::Event, outputs: &[PathBuf]) -> bool {
    match event.kind {
        // Opening and reading (our own render reads every template) change
        // nothing; only a close after writing does.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    event.paths.iter().any(|path| {
        let ours = outputs.contains(path)
            || path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().contains(".zeod-"));
        !ours
    })
}
