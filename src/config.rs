//! `zeod serve` configuration: runzeo's command line, the ZConfig `zeo.conf`
//! it names, and `ZEOD_*` environment variables, layered with figment as
//!
//! ```text
//!   built-in defaults  <  zeo.conf (-C)  <  ZEOD_* environment  <  command line
//! ```
//!
//! Environment (names are case-insensitive after the prefix):
//!
//! | variable | zeo.conf equivalent |
//! |---|---|
//! | `ZEOD_ADDRESS` | `<zeo> address` (`HOST:PORT`, `PORT`, or a socket path) |
//! | `ZEOD_READ_ONLY` | `<zeo> read-only` |
//! | `ZEOD_INVALIDATION_QUEUE_SIZE`, `ZEOD_INVALIDATION_AGE` | same keys |
//! | `ZEOD_INVALIDATION_MAX_OIDS` | `<zeo> invalidation-max-oids` (zeod only) |
//! | `ZEOD_TRANSACTION_TIMEOUT` | `<zeo> transaction-timeout` |
//! | `ZEOD_CLIENT_CONFLICT_RESOLUTION`, `ZEOD_MSGPACK` | same keys |
//! | `ZEOD_PID_FILE` | `<zeo> pid-filename` |
//! | `ZEOD_MAX_FRAME_SIZE`, `ZEOD_MAX_CONNECTIONS` | `<zeo> max-frame-size`, `max-connections` (zeod only) |
//! | `ZEOD_MAX_OUTPUT_BUFFER`, `ZEOD_HANDSHAKE_TIMEOUT` | `<zeo> max-output-buffer`, `handshake-timeout` (zeod only) |
//! | `ZEOD_LOG_FORMAT` | (zeod only) |
//! | `ZEOD_METRICS` | `<zeo> metrics-address` (zeod only: Prometheus `HOST:PORT`) |
//! | `ZEOD_LOG_FILE` | `<eventlog><logfile> path` |
//! | `ZEOD_SSL_CERTIFICATE`, `ZEOD_SSL_KEY`, `ZEOD_SSL_AUTHENTICATE` | `<zeo><ssl>` `certificate`, `key`, `authenticate` |
//! | `ZEOD_STORAGE_<NAME>_<KEY>` | key of storage `<NAME>`: `PATH`, `BLOB_DIR`, `READ_ONLY`, `CREATE`, `QUOTA`, `PACK_GC`, `PACK_KEEP_OLD`, `PACK_SCHEDULE`, `PACK_DAYS`, `BACKUP_SCHEDULE`, `BACKUP_REPOSITORY`, `BACKUP_KEEP`, `BACKUP_FULL_EVERY`, `BACKUP_GZIP` (so `<NAME>` cannot contain `_`) |
//!
//! `ZEO_MSGPACK` (non-empty) turns msgpack on when nothing else set it, as
//! with runzeo. `ZEOD_PROGRESS_INTERVAL` (seconds between the progress log
//! lines of long work) applies to every subcommand: [`progress_interval`].

mod address;
mod env;
mod resolve;
mod schema;
pub mod zconfig;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::Serialized;
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::backup::{ScheduledBackup, DEFAULT_FULL_EVERY};
use crate::schedule::{PackSchedule, ScheduledPack};
use crate::storage::OpenOptions;
use crate::telemetry::LogFormat;
use crate::tls::TlsFiles;

pub use address::Address;
pub use schema::SchemaError;

/// Default listening address, as in the ZEO documentation.
pub const DEFAULT_ADDRESS: &str = "0.0.0.0:8100";
/// Largest accepted frame. Python imposes none; this only stops a corrupt
/// or hostile length word from reserving gigabytes.
pub const DEFAULT_MAX_FRAME_SIZE: u64 = 1 << 30;
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
pub const DEFAULT_INVALIDATION_QUEUE_SIZE: u64 = 100;
/// Callback bytes (invalidations, `info`) queued for a client before it
/// counts as not reading and is disconnected. Python buffers without bound;
/// this is thousands of large invalidations.
pub const DEFAULT_MAX_OUTPUT_BUFFER: u64 = 32 << 20;
/// A connection that has not sent its handshake by then is dropped.
pub const DEFAULT_HANDSHAKE_TIMEOUT: f64 = 60.0;

/// `ZEOD_PROGRESS_INTERVAL`: seconds (fractions allowed) between the
/// `progress` log lines of long work, for the server and every CLI
/// (`main` hands it to [`crate::progress::set_log_interval`]); `None` when
/// unset or not a positive number.
pub fn progress_interval() -> Option<Duration> {
    std::env::var("ZEOD_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}
/// How old a reconnecting client's cache may be for `getInvalidations` to
/// be answered by scanning the file back (`invalidation-age`; runzeo
/// leaves the scan off unless it is set, zeod has it on by default).
pub const DEFAULT_INVALIDATION_AGE: Duration = Duration::from_secs(7 * 86_400);
/// The most oids such an answer may name (`invalidation-max-oids`).
pub const DEFAULT_INVALIDATION_MAX_OIDS: u64 = 100_000;

/// runzeo's command line (plus a few zeod options).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// ZConfig configuration file (zeo.conf).
    #[arg(short = 'C', long = "configure", value_name = "FILE")]
    pub configure: Option<PathBuf>,
    /// HOST:PORT, PORT (all interfaces) or a Unix socket path (contains '/').
    #[arg(short = 'a', long, value_name = "ADDRESS")]
    pub address: Option<String>,
    /// A FileStorage to serve; repeat for storages "1", "2", ….
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filename: Vec<PathBuf>,
    /// Serve every storage read-only.
    #[arg(short = 'r', long)]
    pub read_only: bool,
    /// Blob directory of storage "1" (given with -f).
    #[arg(short = 'b', long, value_name = "DIR")]
    pub blob_dir: Option<PathBuf>,
    /// Transaction timeout: a commit lock held longer closes its connection.
    #[arg(short = 't', long = "timeout", value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Write the process id here while serving.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Write the bound address (HOST:PORT or socket path) here once listening;
    /// useful with port 0.
    #[arg(long, value_name = "PATH")]
    pub address_file: Option<PathBuf>,
    /// Also log to this file, in runzeo's line format (zeo.conf's
    /// `<eventlog><logfile>`); SIGUSR2 reopens it after rotation.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Serve Prometheus metrics (GET /metrics, /healthz) on this HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
    /// Largest accepted frame in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_frame_size: Option<u64>,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u64>,
    /// Serve TLS with this certificate (PEM, then its chain), as zeo.conf's
    /// `<ssl> certificate`.
    #[arg(long, value_name = "PEM")]
    pub ssl_certificate: Option<PathBuf>,
    /// Private key of the certificate (PEM, unencrypted); default: in the
    /// certificate file.
    #[arg(long, value_name = "PEM")]
    pub ssl_key: Option<PathBuf>,
    /// Require client certificates listed in, or signed by one in, this PEM
    /// file or directory (`<ssl> authenticate`).
    #[arg(long, value_name = "PEM")]
    pub ssl_authenticate: Option<PathBuf>,
    /// Bytes of invalidations queued for a client that does not read before
    /// it is disconnected.
    #[arg(long, value_name = "BYTES")]
    pub max_output_buffer: Option<u64>,
    /// Seconds a new connection has to send its handshake.
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<f64>,
    /// Parse the configuration, open the storages, and exit.
    #[arg(long)]
    pub test: bool,
}

/// One configuration layer; every field optional so layers merge key by key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Layer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalidation_queue_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalidation_age: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalidation_max_oids: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_conflict_resolution: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgpack: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_buffer: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_timeout: Option<f64>,
    /// `HOST:PORT` of the metrics listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// `text` or `json` (kept as text so the layer stays plain data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// `<eventlog><logfile> path`: a copy of the log in Python's format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eventlog: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eventlog_level: Option<String>,
    /// `<ssl> certificate`, `key`, `authenticate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_certificate: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_authenticate: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storages: BTreeMap<String, StorageLayer>,
}

/// One storage's keys in a layer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StorageLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack_gc: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack_keep_old: Option<bool>,
    /// `pack-schedule`: `daily HH:MM` (UTC) or an interval (`24h`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack_schedule: Option<String>,
    /// `pack-days`: history the scheduled pack keeps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack_days: Option<f64>,
    /// `backup-schedule`: when to back up (the syntax of `pack-schedule`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_repository: Option<PathBuf>,
    /// `backup-keep`: full backups kept, with their incrementals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_keep: Option<u64>,
    /// `backup-full-every`: backups per chain before the next full one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_full_every: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_gzip: Option<bool>,
}

/// One storage to serve.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub name: String,
    pub path: PathBuf,
    pub options: OpenOptions,
    /// zeo.conf `create true`: start from an empty file, discarding an
    /// existing one (ZODB's meaning). A missing file is always created.
    pub truncate: bool,
}

/// The resolved configuration of `zeod serve`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub address: Address,
    pub read_only: bool,
    pub invalidation_queue_size: usize,
    /// How far back `getInvalidations` may scan the file when the queue
    /// does not reach the client's tid; `None` (`invalidation-age 0`):
    /// never, the client drops its cache as with runzeo's default.
    pub invalidation_age: Option<Duration>,
    /// The most oids a scanned `getInvalidations` answer may name.
    pub invalidation_max_oids: usize,
    pub transaction_timeout: Option<Duration>,
    /// Python's option; zeod hands write conflicts back to ZEO 5 clients
    /// either way (it cannot run Python resolution code), see `server::commit`.
    pub client_conflict_resolution: bool,
    /// Announce `M5` instead of `Z5`.
    pub msgpack: bool,
    pub pid_file: Option<PathBuf>,
    pub address_file: Option<PathBuf>,
    pub max_frame_size: usize,
    pub max_connections: usize,
    /// Bytes of callbacks a connection may have queued (see
    /// `server::outbound`).
    pub max_output_buffer: usize,
    pub handshake_timeout: Duration,
    /// Where to serve Prometheus metrics (`--metrics`), if anywhere.
    pub metrics: Option<SocketAddr>,
    pub log_format: LogFormat,
    /// zeo.conf `<eventlog>`: log file (Python's line format) and level.
    pub eventlog: Option<(PathBuf, String)>,
    /// In name order.
    pub storages: Vec<StorageConfig>,
    /// `--test`: set up and exit.
    pub test: bool,
    /// Things worth a log line once logging is set up (ignored sections…).
    pub notes: Vec<String>,
    /// Storage name → its `pack-schedule`, for storages that have one.
    pub pack_schedules: Vec<(String, ScheduledPack)>,
    /// `<ssl>`: the listening address speaks TLS.
    pub tls: Option<TlsFiles>,
    /// Storage name → its `backup-schedule`, for storages that have one.
    pub backup_schedules: Vec<(String, ScheduledBackup)>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            address: Address::Tcp(SocketAddr::from(([0, 0, 0, 0], 8100))),
            read_only: false,
            invalidation_queue_size: DEFAULT_INVALIDATION_QUEUE_SIZE as usize,
            invalidation_age: Some(DEFAULT_INVALIDATION_AGE),
            invalidation_max_oids: DEFAULT_INVALIDATION_MAX_OIDS as usize,
            transaction_timeout: None,
            client_conflict_resolution: false,
            msgpack: false,
            pid_file: None,
            address_file: None,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE as usize,
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            max_output_buffer: DEFAULT_MAX_OUTPUT_BUFFER as usize,
            handshake_timeout: Duration::from_secs_f64(DEFAULT_HANDSHAKE_TIMEOUT),
            metrics: None,
            log_format: LogFormat::Text,
            eventlog: None,
            storages: Vec::new(),
            test: false,
            notes: Vec::new(),
            pack_schedules: Vec::new(),
            tls: None,
            backup_schedules: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is the error's source; `{:#}` prints it after the path.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}")]
    Syntax {
        path: PathBuf,
        source: zconfig::SyntaxError,
    },
    #[error("{path}")]
    Schema { path: PathBuf, source: SchemaError },
    #[error("configuration: {0}")]
    Layering(#[from] Box<figment::Error>),
    #[error("bad address {address:?} (expected HOST:PORT, PORT or a socket path)")]
    Address { address: String },
    #[error("no storage configured: give -f PATH, a storage section in zeo.conf, or ZEOD_STORAGE_1_PATH")]
    NoStorage,
    #[error("environment {var}={value:?}: expected {expected}")]
    Env {
        var: String,
        value: String,
        expected: &'static str,
    },
    #[error("storage {name:?} has no path")]
    StoragePath { name: String },
    #[error("storage {name:?}: backup-schedule needs backup-repository")]
    BackupRepository { name: String },
    #[error("storage {name:?}: {source}")]
    PackSchedule {
        name: String,
        source: crate::schedule::ScheduleError,
    },
    #[error("{key} is set but no TLS certificate is (ssl-certificate, <ssl> certificate)")]
    SslWithoutCertificate { key: &'static str },
    #[error("{key} must be {expected}, got {value}")]
    OutOfRange {
        key: &'static str,
        expected: &'static str,
        value: String,
    },
}

impl ServerConfig {
    /// Builds the configuration from the command line and the process
    /// environment.
    pub fn load(args: &ServeArgs) -> Result<ServerConfig, ConfigError> {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::load_with_env(args, vars)
    }

    fn load_with_env(
        args: &ServeArgs,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<ServerConfig, ConfigError> {
        let vars: Vec<(String, String)> = vars.collect();
        let zeo_msgpack = vars
            .iter()
            .find(|(k, _)| k == "ZEO_MSGPACK")
            .map(|(_, v)| v.clone());
        let mut notes = schema::Notes::default();
        let mut figment = Figment::from(Serialized::defaults(Layer {
            address: Some(DEFAULT_ADDRESS.to_string()),
            ..Layer::default()
        }));
        if let Some(path) = &args.configure {
            figment = figment.merge(Serialized::defaults(file_layer(path, &mut notes)?));
        }
        figment = figment.merge(Serialized::defaults(env::env_layer(vars.into_iter())?));
        figment = figment.merge(Serialized::defaults(cli_layer(args)));
        let layer: Layer = figment
            .extract()
            .map_err(|e| ConfigError::Layering(Box::new(e)))?;
        let msgpack = match layer.msgpack {
            Some(on) => on,
            None => zeo_msgpack.is_some_and(|v| !v.is_empty()),
        };
        resolve::resolve(layer, msgpack, args.test, notes.0)
    }
}

/// The settings a parsed `zeo.conf` gives, notes dropped (the fuzz
/// targets' way in).
pub fn layer_from_zeo_conf(tree: &zconfig::Section) -> Result<Layer, SchemaError> {
    schema::layer_from_tree(tree, &mut schema::Notes::default())
}

fn file_layer(path: &Path, notes: &mut schema::Notes) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let tree = zconfig::parse(&text).map_err(|source| ConfigError::Syntax {
        path: path.to_path_buf(),
        source,
    })?;
    schema::layer_from_tree(&tree, notes).map_err(|source| ConfigError::Schema {
        path: path.to_path_buf(),
        source,
    })
}

fn cli_layer(args: &ServeArgs) -> Layer {
    let mut storages = BTreeMap::new();
    for (index, path) in args.filename.iter().enumerate() {
        storages.insert(
            (index + 1).to_string(),
            StorageLayer {
                path: Some(path.clone()),
                blob_dir: if index == 0 {
                    args.blob_dir.clone()
                } else {
                    None
                },
                ..StorageLayer::default()
            },
        );
    }
    if args.filename.is_empty() {
        if let Some(blob_dir) = &args.blob_dir {
            storages.insert(
                "1".to_string(),
                StorageLayer {
                    blob_dir: Some(blob_dir.clone()),
                    ..StorageLayer::default()
                },
            );
        }
    }
    Layer {
        address: args.address.clone(),
        read_only: args.read_only.then_some(true),
        transaction_timeout: args.timeout,
        pid_file: args.pid_file.clone(),
        address_file: args.address_file.clone(),
        max_frame_size: args.max_frame_size,
        max_connections: args.max_connections,
        max_output_buffer: args.max_output_buffer,
        handshake_timeout: args.handshake_timeout,
        metrics: args.metrics.clone(),
        eventlog: args.log_file.clone(),
        ssl_certificate: args.ssl_certificate.clone(),
        ssl_key: args.ssl_key.clone(),
        ssl_authenticate: args.ssl_authenticate.clone(),
        log_format: args.log_format.map(|f| match f {
            LogFormat::Text => "text".to_string(),
            LogFormat::Json => "json".to_string(),
        }),
        storages,
        ..Layer::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
