//! The Prometheus endpoint of a real `zeod serve` process during a real
//! ZEO workload: every counter the workload should move moves by exactly
//! that much, the gauges match the storage on disk, and the page parses
//! as both exposition formats a scraper may ask for.

#[path = "ops_support/bigfile.rs"]
mod bigfile;
#[path = "server_support/harness.rs"]
mod harness;
#[path = "ops_support/process.rs"]
mod process;

#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::{Duration, Instant};

    use super::bigfile;
    use super::harness::{items, record, Client};
    use super::process::{self, http_get, scrape, value, value_or_zero, Zeod};
    use zeod::ids::Tid;
    use zeod::protocol::{Encoding, Value};

    const STORAGE: &[(&str, &str)] = &[("storage", "1")];

    fn method(name: &'static str) -> [(&'static str, &'static str); 1] {
        [("method", name)]
    }

    async fn client(zeod: &Zeod) -> Client {
        let mut c = Client::connect(zeod.addr, Encoding::Pickle3).await;
        c.call("register", vec![Value::Str("1".into()), Value::Bool(false)])
            .await
            .unwrap();
        c
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counters_follow_a_real_workload() {
        let zeod = Zeod::start(false);
        let before = scrape(&zeod);
        assert_eq!(value(&before, "zeod_storage_objects", STORAGE), 0.0);
        assert_eq!(value(&before, "zeod_commits_total", STORAGE), 0.0);
        assert_eq!(value(&before, "zeod_storage_read_only", STORAGE), 0.0);

        // Three commits of two new objects each, then loads of all six.
        let mut a = client(&zeod).await;
        let oids: Vec<_> = items(&a.call("new_oids", vec![Value::Int(6)]).await.unwrap())
            .iter()
            .map(|v| v.as_oid().unwrap())
            .collect();
        let mut last = Tid::ZERO;
        for (n, pair) in oids.chunks(2).enumerate() {
            let r = record(n as u8);
            last = a
                .commit(
                    n as i128 + 1,
                    &[(pair[0], Tid::ZERO, &r[..]), (pair[1], Tid::ZERO, &r[..])],
                )
                .await
                .unwrap();
        }
        for oid in &oids {
            a.call("loadBefore", vec![Value::oid(*oid), Value::tid(Tid::MAX)])
                .await
                .unwrap();
        }
        // A second client stores over a stale serial: the conflict comes
        // back from vote, and the client aborts.
        let mut b = client(&zeod).await;
        b.begin(10).await;
        b.store(10, oids[0], Tid::ZERO, &record(9)).await;
        let voted = b.call("vote", vec![Value::Int(10)]).await.unwrap();
        assert_eq!(items(&voted).len(), 1, "expected one conflict: {voted:?}");
        b.call("tpc_abort", vec![Value::Int(10)]).await.unwrap();
        // An unknown oid: a POSKeyError reply.
        let missing = Value::oid(zeod::ids::Oid::from_u64(999_999));
        assert!(a
            .call("loadBefore", vec![missing, Value::tid(Tid::MAX)])
            .await
            .is_err());

        let after = scrape(&zeod);
        let moved = |name: &str, labels: &[(&str, &str)]| {
            value(&after, name, labels) - value_or_zero(&before, name, labels)
        };
        assert_eq!(moved("zeod_commits_total", STORAGE), 3.0);
        assert_eq!(moved("zeod_stores_total", STORAGE), 7.0);
        assert_eq!(moved("zeod_aborts_total", STORAGE), 1.0);
        assert_eq!(moved("zeod_loads_total", STORAGE), 7.0);
        let unresolved = [("storage", "1"), ("resolved", "false")];
        assert_eq!(moved("zeod_conflicts_total", &unresolved), 1.0);
        assert_eq!(moved("zeod_rpc_calls_total", &method("vote")), 4.0);
        assert_eq!(moved("zeod_rpc_calls_total", &method("tpc_finish")), 3.0);
        assert_eq!(moved("zeod_rpc_calls_total", &method("loadBefore")), 7.0);
        assert_eq!(moved("zeod_rpc_calls_total", &method("register")), 2.0);
        let poskey = [("class", "ZODB.POSException.POSKeyError")];
        assert_eq!(moved("zeod_rpc_errors_total", &poskey), 1.0);
        assert_eq!(
            moved("zeod_rpc_duration_seconds_count", &method("loadBefore")),
            7.0
        );
        let le_inf = [("method", "loadBefore"), ("le", "+Inf")];
        assert_eq!(moved("zeod_rpc_duration_seconds_bucket", &le_inf), 7.0);
        // Every vote is timed for the lock, including those that got it at once.
        assert_eq!(moved("zeod_commit_lock_wait_seconds_count", STORAGE), 4.0);
        assert_eq!(moved("zeod_commit_lock_hold_seconds_count", STORAGE), 3.0);
        assert!(moved("zeod_received_bytes_total", &[]) > 0.0);
        assert!(moved("zeod_sent_bytes_total", &[]) > 0.0);
        let z5 = [("protocol", "Z5")];
        assert_eq!(moved("zeod_connections_total", &z5), 2.0);
        assert_eq!(value(&after, "zeod_connections_open", &z5), 2.0);
        assert_eq!(value(&after, "zeod_storage_connections", STORAGE), 2.0);
        // Gauges agree with the storage itself.
        assert_eq!(value(&after, "zeod_storage_objects", STORAGE), 6.0);
        let file = std::fs::metadata(zeod.data_fs()).unwrap().len() as f64;
        assert_eq!(value(&after, "zeod_storage_size_bytes", STORAGE), file);
        assert!(value(&after, "zeod_storage_index_bytes", STORAGE) > 0.0);
        let committed = value(&after, "zeod_last_transaction_timestamp_seconds", STORAGE);
        assert!((committed - last.to_unix()).abs() < 1e-3);
        assert_eq!(
            value(&after, "zeod_invalidation_queue_length", STORAGE),
            3.0
        );
        assert_eq!(value(&after, "zeod_commit_lock_waiting", STORAGE), 0.0);
        assert_eq!(value(&after, "zeod_transactions_active", STORAGE), 0.0);
        assert!(value(&after, "zeod_process_resident_memory_bytes", &[]) > 0.0);
        dashboard_reads_only_exported_metrics(&after);

        // Closing the clients closes their sessions in the gauges.
        drop(a);
        drop(b);
        let deadline = Instant::now() + process::WAIT;
        loop {
            let now = scrape(&zeod);
            if value(&now, "zeod_connections_open", &z5) == 0.0
                && value(&now, "zeod_storage_connections", STORAGE) == 0.0
            {
                break;
            }
            assert!(Instant::now() < deadline, "connections never closed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every `zeod_*` series the Grafana dashboard queries exists on a
    /// server that has served a workload (a renamed metric breaks a panel).
    fn dashboard_reads_only_exported_metrics(samples: &process::Samples) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/zeod.json");
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut exprs = Vec::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                exprs.push(target["expr"].as_str().unwrap().to_string());
            }
        }
        assert!(exprs.len() > 10);
        for expr in &exprs {
            let mut rest = expr.as_str();
            while let Some(at) = rest.find("zeod_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    samples.keys().any(|(n, _)| *n == name),
                    "the dashboard queries {name}, which zeod does not export ({expr})"
                );
                rest = &rest[at + name.len()..];
            }
        }
    }

    /// Which `zeod_pack_phase` is 1; panics unless exactly one is.
    fn pack_phase(samples: &process::Samples) -> &'static str {
        let on: Vec<&str> = PACK_PHASES
            .iter()
            .copied()
            .filter(|phase| {
                value(
                    samples,
                    "zeod_pack_phase",
                    &[("storage", "1"), ("phase", phase)],
                ) == 1.0
            })
            .collect();
        assert_eq!(on.len(), 1, "pack phases set: {on:?}");
        on[0]
    }

    const PACK_PHASES: &[&str] = &["idle", "prepare", "gc", "copy", "swap", "cleanup"];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pack_state_and_progress_while_a_pack_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        bigfile::write(&path, 96, 200);
        let size = std::fs::metadata(&path).unwrap().len();
        let zeod = Zeod::start_in(dir, false, &[], &[("ZEOD_PROGRESS_INTERVAL", "0.01")]);
        // Ready means exported: the storage is there from the first scrape.
        let idle = scrape(&zeod);
        assert_eq!(value(&idle, "zeod_pack_running", STORAGE), 0.0);
        assert_eq!(value(&idle, "zeod_pack_progress_ratio", STORAGE), 0.0);
        assert_eq!(pack_phase(&idle), "idle");

        // wait=False: the reply comes at once and the pack runs on.
        let mut c = client(&zeod).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        c.call("pack", vec![Value::Float(now), Value::Bool(false)])
            .await
            .unwrap();
        let mut during: Vec<(f64, &str)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = scrape(&zeod);
            let ratio = value(&s, "zeod_pack_progress_ratio", STORAGE);
            let phase = pack_phase(&s);
            if value(&s, "zeod_pack_running", STORAGE) == 1.0 {
                assert_ne!(phase, "idle");
                assert!((0.0..=1.0).contains(&ratio), "{ratio}");
                during.push((ratio, phase));
            } else {
                assert_eq!((ratio, phase), (0.0, "idle"));
                if std::fs::metadata(zeod.data_fs()).unwrap().len() < size {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the pack did not end");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!during.is_empty(), "no scrape saw the pack running");
        // Progress and phases only move forward.
        for pair in during.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(b.0 >= a.0, "progress went back: {during:?}");
            let rank = |p| PACK_PHASES.iter().position(|x| *x == p).unwrap();
            assert!(rank(b.1) >= rank(a.1), "phase went back: {during:?}");
        }
        assert!(
            during.iter().any(|(r, _)| *r > 0.0),
            "progress never moved: {during:?}"
        );
        // The server logged the same progress.
        let log = zeod.log();
        assert!(
            log.lines()
                .any(|l| l.contains(": progress ") && l.contains("task=\"pack\"")),
            "{log}"
        );
    }

    #[tokio::test]
    async fn classic_text_format_health_and_errors() {
        // Configured through the environment this time.
        let zeod = Zeod::start(true);
        let probe = zeod::health::probe(&zeod.addr.to_string(), process::WAIT).unwrap();
        assert_eq!(probe.storages.len(), 1);
        // Browsers and plain curl get the classic text format.
        let (status, headers, body) = http_get(zeod.metrics, "/metrics", "*/*");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers.contains("Content-Type: text/plain; version=0.0.4"),
            "{headers}"
        );
        let samples = process::parse_exposition(&body, false);
        // The health probe above was a `ruok` connection.
        assert_eq!(
            value(&samples, "zeod_connections_total", &[("protocol", "ruok")]),
            1.0
        );
        assert_eq!(
            value(
                &samples,
                "zeod_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            1.0
        );
        let (status, _, body) = http_get(zeod.metrics, "/healthz", "*/*");
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("HTTP/1.1 200 OK", "ok\n")
        );
        let (status, _, _) = http_get(zeod.metrics, "/nothing", "*/*");
        assert_eq!(status, "HTTP/1.1 404 Not Found");
    }
}
