//! The ZEO server: `zeod serve`. [`main`] ([`process`]) opens the
//! storages, binds, and runs [`run`] until a signal; [`run`] accepts
//! connections and serves each in its own task until its `shutdown` future
//! resolves.
//!
//! Per storage ([`exported`]): the FileStorage, a FIFO commit lock, the
//! registered connections, the invalidation queue, statistics. Per
//! connection ([`connection`]): a reading loop that runs calls in order and
//! a writer task draining a bounded queue ([`outbound`]). Calls are routed
//! and their errors mapped to ZODB exceptions in [`dispatch`]; commits in
//! [`commit`] (begin, stores, vote) and [`finish`] (finish, abort); reads in [`reads`]; blobs in [`blobs`]; `getInvalidations`
//! beyond the queue's reach, read back from the file, in [`catch_up`];
//! what ZEO 4-era clients (Z4, Z3101, Z310, Z309) get differently in
//! [`legacy`].

mod blobs;
mod catch_up;
mod commit;
mod connection;
mod dispatch;
mod eventlog;
mod exported;
mod finish;
mod invalidations;
mod iterators;
mod legacy;
mod outbound;
mod process;
mod reads;
mod status;
mod txnlog;
mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Address, ServerConfig};
use crate::metrics::Metrics;
use crate::storage::FileStorage;

use exported::Exported;
use invalidations::InvalidationQueue;
pub use process::main;

/// Where connections come from.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Listener {
        Listener::Tcp(listener)
    }
}

impl From<UnixListener> for Listener {
    fn from(listener: UnixListener) -> Listener {
        Listener::Unix(listener)
    }
}

impl Listener {
    /// Binds `address`; a stale Unix socket file is removed first.
    pub async fn bind(address: &Address) -> std::io::Result<Listener> {
        match address {
            Address::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr).await?)),
            Address::Unix(path) => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        format!("{} is in use by a running server", path.display()),
                    ));
                }
                let _ = std::fs::remove_file(path);
                Ok(Listener::Unix(UnixListener::bind(path)?))
            }
        }
    }

    /// The bound address as text (`HOST:PORT` or the socket path).
    pub fn local_address(&self) -> String {
        match self {
            Listener::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_default(),
        }
    }
}

/// State shared by all connections.
pub(crate) struct Shared {
    storages: BTreeMap<String, Arc<Exported>>,
    config: ServerConfig,
    /// `time.ctime()` of the start, for `server_status`.
    start: String,
    /// Cancelled when the server shuts down.
    shutdown: CancellationToken,
    /// Every task of the server (connections, background packs); shutdown
    /// waits for them before the storages are closed.
    tasks: TaskTracker,
    metrics: Arc<Metrics>,
    /// `<ssl>`: every accepted stream is a TLS server session.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reading the last transactions of storage {name:?}: {source}")]
    Seed {
        name: String,
        source: crate::storage::Error,
    },
    #[error("storage task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("TLS (<ssl>): {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Serves `storages` (name → storage) on `listener` until `shutdown`
/// resolves. Then it stops accepting, closes idle connections and aborts
/// unvoted transactions, gives voted ones a grace period to finish, and
/// returns once every connection task has ended. The storages stay open:
/// closing them is the caller's business.
pub async fn run(
    listener: Listener,
    storages: Vec<(String, Arc<FileStorage>)>,
    config: ServerConfig,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    let metrics = Arc::new(Metrics::new());
    run_with_metrics(listener, storages, config, metrics, shutdown).await
}

/// [`run`], counting into `metrics` (and installing its per-storage
/// sampler), which the caller may serve over HTTP.
pub async fn run_with_metrics(
    listener: Listener,
    storages: Vec<(String, Arc<FileStorage>)>,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    export(storages, config, metrics)
        .await?
        .run(listener, shutdown)
        .await
}

/// Storages exported and ready to serve: invalidation queues seeded, TLS
/// loaded, the metrics sampler installed. `zeod serve` builds this before
/// it binds anything, so a published address (or a metrics listener) never
/// answers for a server that cannot yet serve its storages.
pub struct Exports {
    shared: Arc<Shared>,
}

/// Exports `storages` (name → storage): the slow part of a start after
/// the files are open, since seeding each invalidation queue reads the
/// last transactions back from the file.
pub async fn export(
    storages: Vec<(String, Arc<FileStorage>)>,
    config: ServerConfig,
    metrics: Arc<Metrics>,
) -> Result<Exports, ServerError> {
    let mut exported = BTreeMap::new();
    for (name, storage) in storages {
        let size = config.invalidation_queue_size;
        let seed_from = storage.clone();
        let seed = tokio::task::spawn_blocking(move || seed_from.last_invalidations(size))
            .await?
            .map_err(|source| ServerError::Seed {
                name: name.clone(),
                source,
            })?;
        let pack_gc = config
            .storages
            .iter()
            .find(|s| s.name == name)
            .is_none_or(|s| s.options.pack_gc);
        let queue = InvalidationQueue::new(size, seed);
        exported.insert(
            name.clone(),
            Arc::new(Exported::new(name, storage, pack_gc, queue)),
        );
    }
    let tls = match &config.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
            files,
        )?)),
        None => None,
    };
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let shared = Arc::new(Shared {
        storages: exported,
        start: status::ctime(unix_now),
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        config,
        metrics: metrics.clone(),
        tls,
    });
    let weak = Arc::downgrade(&shared);
    metrics.set_sampler(Box::new(move || {
        let Some(shared) = weak.upgrade() else {
            return Vec::new();
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        shared
            .storages
            .values()
            .map(|e| status::sample(e, now))
            .collect()
    }));
    Ok(Exports { shared })
}

impl Exports {
    /// Serves the exported storages on `listener` until `shutdown`
    /// resolves (see [`run`]).
    pub async fn run(self, listener: Listener, shutdown: impl Future) -> Result<(), ServerError> {
        serve_exports(self.shared, listener, shutdown).await
    }
}

async fn serve_exports(
    shared: Arc<Shared>,
    listener: Listener,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    let limit = Arc::new(Semaphore::new(shared.config.max_connections));
    let tracker = shared.tasks.clone();
    for (name, plan) in &shared.config.pack_schedules {
        if let Some(e) = shared.storages.get(name) {
            let exported = e.clone();
            tracker.spawn(crate::schedule::run(
                name.clone(),
                e.storage.clone(),
                *plan,
                e.pack_gc,
                shared.shutdown.clone(),
                Box::new(move || exported.broadcast_size_info()),
            ));
        }
    }
    for (name, plan) in &shared.config.backup_schedules {
        if let Some(e) = shared.storages.get(name) {
            tracker.spawn(crate::backup::run_schedule(
                name.clone(),
                e.storage.path().to_path_buf(),
                e.storage.blob_dir().map(Path::to_path_buf),
                plan.clone(),
                shared.shutdown.clone(),
            ));
        }
    }
    let next_id = AtomicU64::new(1);
    tracing::info!(address = %listener.local_address(), storages = ?shared.storages.keys().collect::<Vec<_>>(), tls = shared.tls.is_some(), "serving");

    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(100);
                accepted
            }
            Err(err) => {
                // Out of file descriptors and the like: wait, then retry.
                tracing::error!(%err, "accept failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(conn = id, %peer, "connected");
        let shared = shared.clone();
        tracker.spawn(async move {
            match stream {
                Stream::Tcp(s) => serve_stream(s, peer, id, shared).await,
                Stream::Unix(s) => serve_stream(s, peer, id, shared).await,
            }
            drop(permit);
        });
    }
    tracing::info!(connections = tracker.len(), "shutting down");
    drop(listener);
    shared.shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(
        connection::SHUTDOWN_GRACE + Duration::from_secs(10),
        tracker.wait(),
    )
    .await
    .is_err()
    {
        tracing::warn!(
            connections = tracker.len(),
            "connections still open after the shutdown grace period"
        );
    }
    Ok(())
}

/// Serves one accepted stream, inside TLS when the server has `<ssl>`.
async fn serve_stream<S>(stream: S, peer: String, id: u64, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    match shared.tls.clone() {
        Some(acceptor) => {
            let timeout = shared.config.handshake_timeout;
            let handshake = crate::tls::handshake(&acceptor, stream, &peer, id, timeout);
            // Shutdown does not wait for a handshake in progress.
            let stream = tokio::select! {
                stream = handshake => stream,
                _ = shared.shutdown.cancelled() => None,
            };
            if let Some(stream) = stream {
                connection::serve(stream, peer, id, shared).await;
            }
        }
        None => connection::serve(stream, peer, id, shared).await,
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<(Stream, String)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, addr) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Stream::Tcp(s), addr.to_string()))
        }
        Listener::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok((Stream::Unix(s), "unix".to_string()))
        }
    }
}

/// The `ruok` answer: every storage's status as one JSON object.
fn ruok_json(shared: &Shared) -> String {
    let timeout = shared.config.transaction_timeout.is_some();
    let map: serde_json::Map<String, serde_json::Value> = shared
        .storages
        .iter()
        .map(|(name, e)| {
            (
                name.clone(),
                status::status(e, &shared.start, timeout).to_json(),
            )
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}
