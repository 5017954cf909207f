//! Per-storage statistics and their three renderings: the `server_status()`
//! dict and the `ruok` JSON (spec §5.4), whose key set monitoring tools
//! read, so it is Python's exactly; and the Prometheus sample ([`sample`]).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::Tid;
use crate::protocol::Value;

use super::exported::Exported;

#[derive(Default)]
pub struct Stats {
    pub loads: AtomicU64,
    pub stores: AtomicU64,
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
    pub conflicts: AtomicU64,
    pub conflicts_resolved: AtomicU64,
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One storage's status, in Python's key order.
pub struct Status {
    pub entries: Vec<(&'static str, StatusValue)>,
}

pub enum StatusValue {
    Int(u64),
    Float(Option<f64>),
    Text(String),
    Bool(bool),
}

/// `start` is `time.ctime()` of the server start; `timeout` whether a
/// transaction timeout is configured (Python reports `'stub'` otherwise).
pub fn status(exported: &Exported, start: &str, timeout: bool) -> Status {
    let s = &exported.stats;
    let get = |c: &AtomicU64| StatusValue::Int(c.load(Ordering::Relaxed));
    Status {
        entries: vec![
            (
                "connections",
                StatusValue::Int(exported.peers.lock().len() as u64),
            ),
            ("loads", get(&s.loads)),
            ("stores", get(&s.stores)),
            ("commits", get(&s.commits)),
            ("aborts", get(&s.aborts)),
            (
                "active_txns",
                StatusValue::Int(exported.active_txns.load(Ordering::Relaxed) as u64),
            ),
            ("lock_time", StatusValue::Float(exported.lock_time())),
            ("conflicts", get(&s.conflicts)),
            ("conflicts_resolved", get(&s.conflicts_resolved)),
            ("start", StatusValue::Text(start.to_string())),
            (
                "waiting",
                StatusValue::Int(exported.waiting.load(Ordering::Relaxed) as u64),
            ),
            (
                "timeout-thread-is-alive",
                if timeout {
                    StatusValue::Bool(true)
                } else {
                    StatusValue::Text("stub".into())
                },
            ),
            (
                "last-transaction",
                StatusValue::Text(exported.storage.last_transaction().to_string()),
            ),
        ],
    }
}

impl Status {
    pub fn to_value(&self) -> Value {
        Value::Dict(
            self.entries
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        StatusValue::Int(n) => Value::Int(*n as i128),
                        StatusValue::Float(Some(f)) => Value::Float(*f),
                        StatusValue::Float(None) => Value::None,
                        StatusValue::Text(t) => Value::Str(t.clone()),
                        StatusValue::Bool(b) => Value::Bool(*b),
                    };
                    (Value::Str(k.to_string()), v)
                })
                .collect(),
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (k, v) in &self.entries {
            let v = match v {
                StatusValue::Int(n) => serde_json::Value::from(*n),
                StatusValue::Float(Some(f)) => serde_json::Value::from(*f),
                StatusValue::Float(None) => serde_json::Value::Null,
                StatusValue::Text(t) => serde_json::Value::from(t.clone()),
                StatusValue::Bool(b) => serde_json::Value::from(*b),
            };
            map.insert(k.to_string(), v);
        }
        serde_json::Value::Object(map)
    }
}

/// The `zeod_pack` entry of `get_info` while a pack runs (absent
/// otherwise, so the info dict stays Python's when nothing is packing):
/// `{'phase': 'copy', 'done': n, 'total': n, 'elapsed': seconds}`, the same
/// reading the metrics take. `zeod status` shows it; ZEO clients keep info
/// keys they do not know without looking at them.
pub fn pack_info(exported: &Exported) -> Option<(Value, Value)> {
    let pack = exported.storage.pack_progress().snapshot()?;
    let entry = |k: &str, v| (Value::Str(k.to_string()), v);
    Some(entry(
        "zeod_pack",
        Value::Dict(vec![
            entry("phase", Value::Str(pack.phase.to_string())),
            entry("done", Value::Int(pack.done as i128)),
            entry("total", Value::Int(pack.total as i128)),
            entry("elapsed", Value::Float(pack.elapsed.as_secs_f64())),
        ]),
    ))
}

/// Everything `crate::metrics` reports per storage, read at scrape time.
pub fn sample(exported: &Exported, now: f64) -> crate::metrics::StorageSample {
    let s = &exported.stats;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let storage = &exported.storage;
    let (fsyncs, fsynced_commits) = storage.fsync_counts();
    let pack = storage.pack_progress().snapshot();
    crate::metrics::StorageSample {
        name: exported.name.clone(),
        size_bytes: storage.size(),
        objects: storage.len() as u64,
        index_bytes: Some(storage.index_heap_bytes() as u64),
        read_only: storage.is_read_only(),
        connections: exported.peers.lock().len() as u64,
        last_transaction_unix: storage.last_transaction().to_unix(),
        active_transactions: exported.active_txns.load(Ordering::Relaxed) as u64,
        lock_waiting: exported.waiting.load(Ordering::Relaxed) as u64,
        lock_held_seconds: exported.lock_time().map(|since| (now - since).max(0.0)),
        invalidation_queue: exported.invalidations.lock().len() as u64,
        // From the same reading as the phase, so the two always agree.
        packing: pack.is_some(),
        pack_phase: pack.as_ref().map(|p| p.phase),
        pack_progress: pack.as_ref().map_or(0.0, |p| p.fraction()),
        loads: get(&s.loads),
        stores: get(&s.stores),
        commits: get(&s.commits),
        aborts: get(&s.aborts),
        conflicts: get(&s.conflicts),
        conflicts_resolved: get(&s.conflicts_resolved),
        fsyncs,
        fsynced_commits,
    }
}

/// Python's `time.ctime()` of a unix time, in UTC: `Wed Nov 25 02:34:49 2026`.
pub fn ctime(unix: f64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // TimeStamp text is "YYYY-MM-DD HH:MM:SS.ffffff".
    let text = Tid::from_unix(unix.floor()).timestamp_string();
    let field = |range: std::ops::Range<usize>| {
        text.get(range)
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let weekday = DAYS[((unix / 86_400.0).floor() as i64).rem_euclid(7) as usize];
    let month = MONTHS[field(5..7).clamp(1, 12) - 1];
    format!(
        "{weekday} {month} {:2} {}:{}:{} {}",
        field(8..10),
        text.get(11..13).unwrap_or("00"),
        text.get(14..16).unwrap_or("00"),
        text.get(17..19).unwrap_or("00"),
        field(0..4)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ctime_matches_python() {
        // time.ctime(1795574089) in UTC.
        assert_eq!(ctime(1_795_574_089.0), "Wed Nov 25 02:34:49 2026");
        assert_eq!(ctime(0.0), "Thu Jan  1 00:00:00 1970");
    }
}
