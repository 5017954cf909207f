//! `zeod serve` as a process: logging, the storages opened, the ports
//! bound, the address and pid files, and the signals that end it.
//!
//! Signal handlers come first, before any storage is opened: an index
//! rebuild or an export of a big file takes minutes, and a SIGTERM then
//! (a pod deleted during start-up) must end the process cleanly, not kill
//! it where it stands (or, as PID 1 in a container, be ignored). A stop
//! during start-up abandons an index rebuild in progress (it only reads),
//! closes what is open and exits without ever binding.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::{eventlog, export, Listener};
use crate::config::{Address, ServeArgs, ServerConfig};
use crate::metrics::Metrics;
use crate::storage::{self, FileStorage};

/// `zeod serve`.
pub fn main(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServerConfig::load(&args)?;
    let eventlog = init_logging(&config)?;
    if let Some(files) = &config.tls {
        // Fail before the storages are opened, naming the bad file.
        crate::tls::server_config(files).context("TLS (<ssl>)")?;
    }
    for note in &config.notes {
        tracing::info!("{note}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(serve(config, eventlog))
}

/// stderr logging as everywhere (`telemetry`), plus the `<eventlog>` file
/// (returned, to be reopened on SIGUSR2).
fn init_logging(config: &ServerConfig) -> anyhow::Result<Option<eventlog::EventLog>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let Some((path, level)) = &config.eventlog else {
        crate::telemetry::init(config.log_format);
        return Ok(None);
    };
    let level = eventlog::parse_level(level).unwrap_or(tracing::Level::INFO);
    let file = eventlog::EventLog::open(path, level)
        .with_context(|| format!("opening log file {}", path.display()))?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let stderr = match config.log_format {
        crate::telemetry::LogFormat::Text => stderr.boxed(),
        crate::telemetry::LogFormat::Json => stderr.json().boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(stderr.with_filter(filter))
        .with(file.clone())
        .try_init();
    Ok(Some(file))
}

async fn serve(
    config: ServerConfig,
    eventlog: Option<eventlog::EventLog>,
) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::install().context("installing signal handlers")?;
    if let Some(log) = eventlog {
        reopen_on_usr2(log)?;
    }
    let mut storages = Vec::new();
    for s in &config.storages {
        let (path, options) = (s.path.clone(), s.options.clone());
        if s.truncate && !options.read_only && path.exists() {
            tracing::warn!(storage = %s.name, path = %path.display(), "create true: starting from an empty storage");
            for file in [
                path.clone(),
                PathBuf::from(format!("{}.index", path.display())),
            ] {
                std::fs::remove_file(&file)
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .with_context(|| format!("removing {}", file.display()))?;
            }
        }
        tracing::info!(storage = %s.name, path = %path.display(), read_only = options.read_only, "opening storage");
        let progress = options.progress.clone();
        let mut opening = tokio::task::spawn_blocking(move || {
            let _shown = crate::progress::Reporter::log(&options.progress);
            FileStorage::open(&path, options.clone())
        });
        let (opened, stop) = tokio::select! {
            opened = &mut opening => (opened, None),
            stop = signals.recv() => {
                // The rebuild scan polls the request; the rest of an open
                // is short, so it is waited for.
                progress.request_stop();
                (opening.await, Some(stop))
            }
        };
        match (opened?, &stop) {
            (Ok(storage), _) => storages.push((s.name.clone(), storage)),
            (Err(storage::Error::Stopped { .. }), Some(_)) => {
                tracing::info!(storage = %s.name, "index rebuild abandoned; the data file is untouched");
            }
            (Err(err), _) => {
                return Err(err).with_context(|| {
                    format!("opening storage {:?} ({})", s.name, s.path.display())
                })
            }
        }
        if let Some(stop) = stop {
            return stopped_starting(stop, &storages).await;
        }
    }
    if config.test {
        close_storages(&storages).await;
        println!("configuration OK");
        return Ok(ExitCode::SUCCESS);
    }
    // Readiness is honest: nothing listens until every storage is open and
    // exported, so the first scrape, probe or client sees all of them
    // (runzeo, too, opens its storages before it binds).
    let metrics = Arc::new(Metrics::new());
    let exports = tokio::select! {
        exports = export(storages.clone(), config.clone(), metrics.clone()) => exports?,
        stop = signals.recv() => return stopped_starting(stop, &storages).await,
    };
    // Bound before the ZEO port, so once the address file is written
    // both are up.
    let metrics_stop = CancellationToken::new();
    if let Some(addr) = config.metrics {
        let http = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        let bound = http.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(address = %bound, "serving metrics on http://{bound}/metrics");
        let stop = metrics_stop.clone();
        tokio::spawn(crate::metrics::http::serve(
            http,
            metrics.clone(),
            async move { stop.cancelled().await },
        ));
    }
    let listener = Listener::bind(&config.address)
        .await
        .with_context(|| format!("cannot listen on {}", config.address))?;
    let bound = listener.local_address();
    if let Some(path) = &config.address_file {
        write_file(path, &bound)?;
    }
    let pid_file = if config.read_only {
        None
    } else {
        config.pid_file.clone()
    };
    if let Some(path) = &pid_file {
        write_file(path, &std::process::id().to_string())?;
    }
    let unix_path = match &config.address {
        Address::Unix(path) => Some(path.clone()),
        Address::Tcp(_) => None,
    };
    let mut exit = 0;
    let shutdown = async {
        let stop = signals.recv().await;
        match stop.exit {
            0 => tracing::info!("{}: shutting down", stop.name),
            _ => tracing::info!(
                "{}: shutting down with exit status {} (restart requested)",
                stop.name,
                stop.exit
            ),
        }
        exit = stop.exit;
    };
    let result = exports.run(listener, shutdown).await;
    metrics_stop.cancel();
    close_storages(&storages).await;
    for path in pid_file.iter().chain(unix_path.iter()) {
        let _ = std::fs::remove_file(path);
    }
    result?;
    tracing::info!(exit_code = exit, "stopped");
    Ok(ExitCode::from(exit))
}

/// The signals that stop the server: SIGTERM and SIGINT (exit status 0),
/// SIGHUP (exit status 1, so supervisors restart us, like runzeo).
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

/// One received stop signal.
struct Stop {
    name: &'static str,
    exit: u8,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next stop signal, or one received since the last call. Cancel
    /// safe: a signal is not lost when another branch of a select wins.
    async fn recv(&mut self) -> Stop {
        let (name, exit) = tokio::select! {
            _ = self.term.recv() => ("SIGTERM", 0),
            _ = self.int.recv() => ("SIGINT", 0),
            _ = self.hup.recv() => ("SIGHUP", 1),
        };
        Stop { name, exit }
    }
}

async fn stopped_starting(
    stop: Stop,
    storages: &[(String, Arc<FileStorage>)],
) -> anyhow::Result<ExitCode> {
    tracing::info!("{} during start-up: stopping before serving", stop.name);
    close_storages(storages).await;
    tracing::info!(exit_code = stop.exit, "stopped");
    Ok(ExitCode::from(stop.exit))
}

/// SIGUSR2 reopens the `<eventlog>` file (logrotate), from the start: its
/// default action would end the process.
fn reopen_on_usr2(log: eventlog::EventLog) -> anyhow::Result<()> {
    let mut usr2 = signal(SignalKind::user_defined2()).context("installing SIGUSR2")?;
    tokio::spawn(async move {
        while usr2.recv().await.is_some() {
            match log.reopen() {
                Ok(()) => tracing::info!("SIGUSR2: log file reopened"),
                Err(err) => tracing::error!(%err, "SIGUSR2: cannot reopen the log file"),
            }
        }
    });
    Ok(())
}

async fn close_storages(storages: &[(String, Arc<FileStorage>)]) {
    for (name, storage) in storages {
        let storage = storage.clone();
        match tokio::task::spawn_blocking(move || storage.close()).await {
            Ok(Ok(())) => tracing::info!(storage = %name, "storage closed"),
            Ok(Err(err)) => tracing::error!(storage = %name, %err, "closing storage failed"),
            Err(err) => tracing::error!(storage = %name, %err, "closing storage panicked"),
        }
    }
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&tmp, format!("{text}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
