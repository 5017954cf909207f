//! Prometheus metrics of `zeod serve`: the registry, the handles the server
//! updates as events happen, and the per-storage figures read at scrape
//! time. [`http`] serves them (`GET /metrics`, `GET /healthz`); [`io`]
//! counts the bytes of a connection; [`storages`] turns the server's
//! per-storage state into metric families on each scrape.
//!
//! Event metrics (updated by the server as things happen):
//!
//! ```text
//!   zeod_connections_total{protocol}          accepted, by handshake: Z5 M5 ruok old invalid none
//!   zeod_connections_open{protocol}           open ZEO sessions (Z5 / M5)
//!   zeod_rpc_calls_total{method}              calls after the handshake, incl. register
//!   zeod_rpc_errors_total{class}              error replies, by exception class
//!   zeod_rpc_duration_seconds{method}         histogram: request decoded → handler done
//!   zeod_commit_lock_wait_seconds{storage}    histogram: vote → commit lock granted (0 if free)
//!   zeod_commit_lock_hold_seconds{storage}    histogram: lock granted → tpc_finish done
//!   zeod_received_bytes_total / zeod_sent_bytes_total   ZEO traffic incl. frame headers
//! ```
//!
//! Scrape-time metrics (read from the storages when `/metrics` is fetched):
//! see [`storages`].

pub mod http;
pub mod io;
pub mod storages;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use storages::{Sampler, StorageSample};

/// The two text expositions: OpenMetrics for Prometheus (which asks for it
/// in `Accept`), the classic text format for everyone else (browsers show
/// it instead of offering a download; older scrapers parse it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    /// Picks the format from a request's `Accept` header.
    pub fn from_accept(accept: &str) -> Format {
        if accept.contains("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StorageLabel {
    storage: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 50 µs … ~1.6 s in doublings: a load from the page cache takes tens of
/// microseconds, a commit with fsync milliseconds, a pack reply longer.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// 100 µs … ~100 s: lock waits range from nothing to a slow committer.
fn lock_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 4.0, 11))
}

/// The kind of a connection, from its first frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// ZEO 5, pickle.
    Z5,
    /// ZEO 5, msgpack.
    M5,
    /// The `ruok` status probe.
    Ruok,
    /// A ZEO 4-era client (Z4, Z3101, Z310, Z309), served.
    Z4,
    /// An older ZODB 3 / ZEO 2 client (Z308 and before), refused.
    Old,
    /// Anything else in the first frame.
    Invalid,
    /// Closed before sending a frame (port probes).
    None,
}

impl Protocol {
    /// Classifies a connection by its first frame (`None`: it sent none).
    pub fn classify(first_frame: Option<&[u8]>) -> Protocol {
        use crate::protocol::Handshake;
        let Some(frame) = first_frame else {
            return Protocol::None;
        };
        match Handshake::parse(frame) {
            Handshake::Z5 => Protocol::Z5,
            Handshake::M5 => Protocol::M5,
            Handshake::Ruok => Protocol::Ruok,
            Handshake::Z4 | Handshake::Z3101 | Handshake::Z310 | Handshake::Z309 => Protocol::Z4,
            Handshake::Unsupported(bytes)
                if matches!(&bytes[..], b"Z308" | b"Z303" | b"Z201" | b"Z200") =>
            {
                Protocol::Old
            }
            Handshake::Unsupported(_) => Protocol::Invalid,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Protocol::Z5 => "Z5",
            Protocol::M5 => "M5",
            Protocol::Z4 => "Z4",
            Protocol::Ruok => "ruok",
            Protocol::Old => "old",
            Protocol::Invalid => "invalid",
            Protocol::None => "none",
        }
    }
}

/// Every metric of one server. Cheap to update from any task: counters
/// and histograms are atomics behind a read-mostly label map.
pub struct Metrics {
    registry: Registry,
    connections: Family<ProtocolLabel, Counter>,
    open: Family<ProtocolLabel, Gauge>,
    calls: Family<MethodLabel, Counter>,
    errors: Family<ClassLabel, Counter>,
    duration: HistogramFamily<MethodLabel>,
    lock_wait: HistogramFamily<StorageLabel>,
    lock_hold: HistogramFamily<StorageLabel>,
    received: Counter,
    sent: Counter,
    sampler: Arc<storages::SamplerSlot>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("zeod");
        let connections = Family::<ProtocolLabel, Counter>::default();
        registry.register(
            "connections",
            "Connections accepted, by the protocol of their handshake",
            connections.clone(),
        );
        let open = Family::<ProtocolLabel, Gauge>::default();
        registry.register(
            "connections_open",
            "ZEO sessions open now, by protocol",
            open.clone(),
        );
        let calls = Family::<MethodLabel, Counter>::default();
        registry.register("rpc_calls", "ZEO calls served, by method", calls.clone());
        let errors = Family::<ClassLabel, Counter>::default();
        registry.register(
            "rpc_errors",
            "Error replies sent, by exception class (POSKeyError, ConflictError, …)",
            errors.clone(),
        );
        let duration: HistogramFamily<MethodLabel> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "rpc_duration_seconds",
            "Time from a decoded call to its handler's end, by method (a vote that waits for the lock returns at once; see commit_lock_wait)",
            duration.clone(),
        );
        let lock_wait: HistogramFamily<StorageLabel> = Family::new_with_constructor(lock_histogram);
        registry.register(
            "commit_lock_wait_seconds",
            "Time a vote waited for the storage's commit lock",
            lock_wait.clone(),
        );
        let lock_hold: HistogramFamily<StorageLabel> = Family::new_with_constructor(lock_histogram);
        registry.register(
            "commit_lock_hold_seconds",
            "Time the commit lock was held by a transaction that finished",
            lock_hold.clone(),
        );
        let received = Counter::default();
        registry.register(
            "received_bytes",
            "Bytes read from ZEO connections",
            received.clone(),
        );
        let sent = Counter::default();
        registry.register(
            "sent_bytes",
            "Bytes written to ZEO connections",
            sent.clone(),
        );
        storages::mark_start();
        let sampler = Arc::new(storages::SamplerSlot::default());
        registry.register_collector(Box::new(storages::StorageCollector::new(sampler.clone())));
        Metrics {
            registry,
            connections,
            open,
            calls,
            errors,
            duration,
            lock_wait,
            lock_hold,
            received,
            sent,
            sampler,
        }
    }

    /// Installs what reads the per-storage figures at scrape time. The
    /// server passes a closure over a weak reference to its state, so the
    /// registry never keeps a stopped server alive.
    pub fn set_sampler(&self, sampler: Sampler) {
        *self.sampler.0.lock() = Some(sampler);
    }

    /// A connection was accepted and its first frame classified it.
    /// For Z5/M5 the returned guard counts it open until dropped.
    pub fn connection(self: &Arc<Self>, protocol: Protocol) -> Option<OpenConnection> {
        let label = ProtocolLabel {
            protocol: protocol.label(),
        };
        self.connections.get_or_create(&label).inc();
        if !matches!(protocol, Protocol::Z5 | Protocol::M5) {
            return None;
        }
        self.open.get_or_create(&label).inc();
        Some(OpenConnection {
            metrics: self.clone(),
            label,
        })
    }

    /// One call ran (`method` is a known method name: the label set stays small).
    pub fn rpc(&self, method: &str, elapsed: Duration) {
        let label = MethodLabel {
            method: method.to_string(),
        };
        self.calls.get_or_create(&label).inc();
        self.duration
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    /// Wraps a connection's halves so their bytes are counted.
    pub fn count_io<R, W>(&self, reader: R, writer: W) -> (io::Counted<R>, io::Counted<W>) {
        (
            io::Counted::new(reader, self.received.clone()),
            io::Counted::new(writer, self.sent.clone()),
        )
    }

    /// An error reply of exception `class` was sent.
    pub fn rpc_error(&self, class: &'static str) {
        self.errors.get_or_create(&ClassLabel { class }).inc();
    }

    pub fn lock_wait(&self, storage: &str, waited: Duration) {
        self.lock_wait
            .get_or_create(&StorageLabel {
                storage: storage.to_string(),
            })
            .observe(waited.as_secs_f64());
    }

    pub fn lock_hold(&self, storage: &str, held: Duration) {
        self.lock_hold
            .get_or_create(&StorageLabel {
                storage: storage.to_string(),
            })
            .observe(held.as_secs_f64());
    }

    /// The exposition of everything.
    pub fn render(&self, format: Format) -> String {
        use prometheus_client::encoding::{prometheus_text, text};
        let mut out = String::with_capacity(8 << 10);
        let encoded = match format {
            Format::OpenMetrics => text::encode(&mut out, &self.registry),
            Format::Text => prometheus_text::encode(&mut out, &self.registry),
        };
        // Writing to a String cannot fail; an encoder error would be a bug
        // in a label value, and a partial page is better than none.
        if let Err(err) = encoded {
            tracing::error!(%err, "encoding metrics failed");
        }
        out
    }
}

/// Counts a ZEO session as open while it lives.
pub struct OpenConnection {
    metrics: Arc<Metrics>,
    label: ProtocolLabel,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.open.get_or_create(&self.label).dec();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_labelled_by_their_handshake() {
        for (frame, label) in [
            (&b"Z5"[..], "Z5"),
            (b"M5", "M5"),
            (b"ruok", "ruok"),
            (b"Z4", "Z4"),
            (b"Z3101", "Z4"),
            (b"Z309", "Z4"),
            (b"Z308", "old"),
            (b"Z200", "old"),
            (b"GET / HTTP/1.1", "invalid"),
        ] {
            assert_eq!(Protocol::classify(Some(frame)).label(), label, "{frame:?}");
        }
        assert_eq!(Protocol::classify(None).label(), "none");
    }

    #[test]
    fn events_show_up_in_the_exposition() {
        let metrics = Arc::new(Metrics::new());
        let open = metrics.connection(Protocol::Z5);
        assert!(open.is_some());
        assert!(metrics.connection(Protocol::Ruok).is_none());
        metrics.rpc("loadBefore", Duration::from_micros(120));
        metrics.rpc("loadBefore", Duration::from_micros(80));
        metrics.rpc_error("ZODB.POSException.POSKeyError");
        metrics.lock_wait("1", Duration::ZERO);
        let text = metrics.render(Format::OpenMetrics);
        assert!(text.contains("zeod_connections_total{protocol=\"Z5\"} 1"));
        assert!(text.contains("zeod_connections_open{protocol=\"Z5\"} 1"));
        assert!(text.contains("zeod_rpc_calls_total{method=\"loadBefore\"} 2"));
        assert!(text.contains("zeod_rpc_errors_total{class=\"ZODB.POSException.POSKeyError\"} 1"));
        assert!(text.contains("zeod_rpc_duration_seconds_count{method=\"loadBefore\"} 2"));
        assert!(text.contains("zeod_commit_lock_wait_seconds_count{storage=\"1\"} 1"));
        assert!(text.ends_with("# EOF\n"));
        drop(open);
        assert!(metrics
            .render(Format::Text)
            .contains("zeod_connections_open{protocol=\"Z5\"} 0"));
    }
}
