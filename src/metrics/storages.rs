//! Figures read at scrape time rather than counted as they happen: each
//! storage's size and object count, its commit-lock queue, the counters
//! `server_status` reports, and a few process figures from `/proc`.
//! Reading them on demand costs nothing between scrapes and can never
//! drift from what the server itself reports.
//!
//! ```text
//!   zeod_storage_size_bytes{storage}              Data.fs size (getSize)
//!   zeod_storage_objects{storage}                 objects in the index
//!   zeod_storage_index_bytes{storage}             estimated heap of the in-memory index
//!   zeod_storage_read_only{storage}               1 if served read-only
//!   zeod_storage_connections{storage}             registered connections
//!   zeod_last_transaction_timestamp_seconds{storage}
//!   zeod_transactions_active{storage}             connections inside tpc_begin … finish/abort
//!   zeod_commit_lock_waiting{storage}             votes queued for the commit lock
//!   zeod_commit_lock_held_seconds{storage}        age of the current holder (0 when free)
//!   zeod_invalidation_queue_length{storage}       transactions kept for getInvalidations
//!   zeod_pack_running{storage}                    1 while a pack runs
//!   zeod_pack_progress_ratio{storage}             0..1 of the running pack's work (0 when none)
//!   zeod_pack_phase{storage,phase}                1 for the phase the pack is in (idle, prepare, gc, copy, swap, cleanup)
//!   zeod_loads_total / stores / commits / aborts {storage}
//!   zeod_fsyncs_total{storage}                    data-file fsyncs made by commits
//!   zeod_fsync_commits_total{storage}             transactions they made durable (group commit batches)
//!   zeod_conflicts_total{storage,resolved}        handed back (false) / resolved by zeod (true)
//!   zeod_process_resident_memory_bytes, zeod_process_open_fds, zeod_process_start_time_seconds
//!   zeod_build_info{version}                      always 1
//! ```

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// One storage as the server sees it at the moment of a scrape.
#[derive(Debug, Clone, Default)]
pub struct StorageSample {
    pub name: String,
    pub size_bytes: u64,
    pub objects: u64,
    /// `None` when the storage cannot tell.
    pub index_bytes: Option<u64>,
    pub read_only: bool,
    pub connections: u64,
    pub last_transaction_unix: f64,
    pub active_transactions: u64,
    pub lock_waiting: u64,
    /// Seconds the current holder has had the commit lock.
    pub lock_held_seconds: Option<f64>,
    pub invalidation_queue: u64,
    pub packing: bool,
    /// Phase of the running pack (one of [`PACK_PHASES`]); `None` when idle.
    pub pack_phase: Option<&'static str>,
    /// Done / total of the running pack's work, 0 when idle.
    pub pack_progress: f64,
    pub loads: u64,
    pub stores: u64,
    pub commits: u64,
    pub aborts: u64,
    pub conflicts: u64,
    pub conflicts_resolved: u64,
    /// Data-file fsyncs of commits, and the transactions they made durable
    /// (their ratio is the group commit's batch size).
    pub fsyncs: u64,
    pub fsynced_commits: u64,
}

/// Reads every storage's sample; installed by the server.
pub type Sampler = Box<dyn Fn() -> Vec<StorageSample> + Send + Sync>;

#[derive(Default)]
pub(super) struct SamplerSlot(pub(super) Mutex<Option<Sampler>>);

impl SamplerSlot {
    fn sample(&self) -> Vec<StorageSample> {
        self.0.lock().as_ref().map(|f| f()).unwrap_or_default()
    }
}

pub(super) struct StorageCollector {
    slot: Arc<SamplerSlot>,
}

impl StorageCollector {
    pub(super) fn new(slot: Arc<SamplerSlot>) -> StorageCollector {
        StorageCollector { slot }
    }
}

impl std::fmt::Debug for StorageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageCollector")
    }
}

type Read = fn(&StorageSample) -> Option<f64>;

/// Gauges per storage: name, help, how to read it.
const GAUGES: &[(&str, &str, Read)] = &[
    (
        "storage_size_bytes",
        "Size of the storage file (getSize)",
        |s| Some(s.size_bytes as f64),
    ),
    ("storage_objects", "Objects in the storage's index", |s| {
        Some(s.objects as f64)
    }),
    (
        "storage_index_bytes",
        "Estimated heap memory of the in-memory oid index",
        |s| s.index_bytes.map(|b| b as f64),
    ),
    (
        "storage_read_only",
        "1 if the storage is served read-only",
        |s| Some(f64::from(u8::from(s.read_only))),
    ),
    (
        "storage_connections",
        "Connections registered on the storage",
        |s| Some(s.connections as f64),
    ),
    (
        "last_transaction_timestamp_seconds",
        "Unix time of the storage's last committed transaction",
        |s| Some(s.last_transaction_unix),
    ),
    (
        "transactions_active",
        "Connections with a transaction begun and not yet finished or aborted",
        |s| Some(s.active_transactions as f64),
    ),
    (
        "commit_lock_waiting",
        "Votes queued for the commit lock",
        |s| Some(s.lock_waiting as f64),
    ),
    (
        "commit_lock_held_seconds",
        "How long the current holder has had the commit lock (0 when free)",
        |s| Some(s.lock_held_seconds.unwrap_or(0.0)),
    ),
    (
        "invalidation_queue_length",
        "Transactions kept in the invalidation queue for getInvalidations",
        |s| Some(s.invalidation_queue as f64),
    ),
    ("pack_running", "1 while a pack of the storage runs", |s| {
        Some(f64::from(u8::from(s.packing)))
    }),
    (
        "pack_progress_ratio",
        "Fraction (0 to 1) of the running pack's work done; 0 when no pack runs",
        |s| Some(s.pack_progress),
    ),
];

/// The phases of a pack, in order, as `zeod_pack_phase{phase}` labels:
/// removing the previous pack's `.old` files, finding reachable objects,
/// copying, the short locked swap, and removing/linking blobs and writing
/// the index after commits resumed.
pub const PACK_PHASES: &[&str] = &["idle", "prepare", "gc", "copy", "swap", "cleanup"];

type Count = fn(&StorageSample) -> u64;

/// Counters per storage (the `server_status` figures).
const COUNTERS: &[(&str, &str, Count)] = &[
    ("loads", "Object loads served", |s| s.loads),
    ("stores", "Object stores received", |s| s.stores),
    ("commits", "Transactions committed", |s| s.commits),
    ("aborts", "Transactions aborted", |s| s.aborts),
    ("fsyncs", "Data-file fsyncs made by commits", |s| s.fsyncs),
    (
        "fsync_commits",
        "Transactions made durable by those fsyncs (divided by zeod_fsyncs_total: commits per fsync)",
        |s| s.fsynced_commits,
    ),
];

impl Collector for StorageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let samples = self.slot.sample();
        if !samples.is_empty() {
            for (name, help, read) in GAUGES {
                let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                for s in &samples {
                    if let Some(value) = read(s) {
                        let labels = [("storage", s.name.as_str())];
                        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
            for (name, help, read) in COUNTERS {
                let mut family =
                    encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                for s in &samples {
                    let labels = [("storage", s.name.as_str())];
                    ConstCounter::new(read(s)).encode(family.encode_family(&labels)?)?;
                }
            }
            let mut family = encoder.encode_descriptor(
                "conflicts",
                "Write conflicts: handed back to the client (resolved=false) or resolved by zeod (resolved=true)",
                None,
                MetricType::Counter,
            )?;
            for s in &samples {
                for (resolved, value) in [("false", s.conflicts), ("true", s.conflicts_resolved)] {
                    let labels = [("storage", s.name.as_str()), ("resolved", resolved)];
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
            let mut family = encoder.encode_descriptor(
                "pack_phase",
                "1 for the phase the storage's pack is in: idle, prepare, gc (finding reachable objects), copy, swap (commits held), cleanup",
                None,
                MetricType::Gauge,
            )?;
            for s in &samples {
                let current = s.pack_phase.unwrap_or("idle");
                for phase in PACK_PHASES {
                    let labels = [("storage", s.name.as_str()), ("phase", *phase)];
                    ConstGauge::new(i64::from(*phase == current))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        encode_process(&mut encoder)
    }
}

/// Process figures from `/proc/self` (Linux); absent elsewhere.
fn encode_process(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    // `VmRSS:   12345 kB` needs no page size, unlike statm.
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib = line.split_whitespace().nth(1)?.parse::<f64>().ok()?;
            Some(kib * 1024.0)
        });
    let fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    for (name, help, value) in [
        (
            "process_resident_memory_bytes",
            "Resident memory of the zeod process",
            rss,
        ),
        ("process_open_fds", "Open file descriptors", fds),
        (
            "process_start_time_seconds",
            "Unix time the process started",
            Some(*START),
        ),
    ] {
        if let Some(value) = value {
            ConstGauge::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "build_info",
        "Always 1; the zeod version as a label",
        None,
        MetricType::Gauge,
    )?;
    let labels = [("version", env!("CARGO_PKG_VERSION"))];
    ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
    Ok(())
}

static START: std::sync::LazyLock<f64> = std::sync::LazyLock::new(|| {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
});

/// Fixes the process start time (the first call wins).
pub(super) fn mark_start() {
    std::sync::LazyLock::force(&START);
}
