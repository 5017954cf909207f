//! Server-side conflict resolution over the wire: a ZEO 5 client storing a
//! stale `BTrees.Length` gets the oid back from `vote` (the server changed
//! the data) and the merged state is what everyone loads; with resolution
//! switched off (zeo.conf `client-conflict-resolution true`) the conflict
//! goes back to the client as a dict instead. With ZEOD_PYTHON set, real
//! ZODB clients whose own resolution is disabled commit conflicting
//! changes to BTrees and a Length (tests/conflict_support/zeo_clients.py).

#[path = "server_support/harness.rs"]
mod harness;

#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;
    use std::rc::Rc;

    use super::harness::*;
    use zeod::config::ServerConfig;
    use zeod::ids::{Oid, Tid};
    use zeod::protocol::Value;
    use zeod::record::{self, Global};

    fn length(n: i128) -> Vec<u8> {
        let class = record::Value::Global(Rc::new(Global {
            module: "BTrees.Length".into(),
            name: "Length".into(),
        }));
        record::write(&class, &record::Value::Int(n)).unwrap()
    }

    /// Commits Length 5 then 8; returns (oid, first tid, second tid).
    async fn two_commits(a: &mut Client) -> (Oid, Tid, Tid) {
        let oid = a.new_oid().await;
        let t1 = a.commit(1, &[(oid, Tid::ZERO, &length(5))]).await.unwrap();
        let t2 = a.commit(2, &[(oid, t1, &length(8))]).await.unwrap();
        (oid, t1, t2)
    }

    #[tokio::test]
    async fn stale_length_is_resolved_by_the_server() {
        let server = TestServer::start().await;
        let mut a = server.client().await;
        let (oid, t1, _) = two_commits(&mut a).await;

        let mut other = server.client().await;
        other.begin(7).await;
        other.store(7, oid, t1, &length(6)).await;
        let voted = other.call("vote", vec![Value::Int(7)]).await.unwrap();
        assert_eq!(items(&voted), [Value::oid(oid)]);
        let t3 = other.finish(7).await.unwrap();
        let loaded = a
            .call("loadBefore", vec![Value::oid(oid), Value::tid(Tid::MAX)])
            .await
            .unwrap();
        assert_eq!(
            loaded,
            Value::Tuple(vec![b(&length(9)), Value::tid(t3), Value::None])
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn without_server_resolution_the_client_gets_the_conflict() {
        let mut storage = storage_config("1", false);
        storage.options.resolve_conflicts = false;
        let server = TestServer::start_with(ServerConfig {
            storages: vec![storage],
            ..ServerConfig::default()
        })
        .await;
        let mut a = server.client().await;
        let (oid, t1, t2) = two_commits(&mut a).await;

        let mut other = server.client().await;
        other.begin(7).await;
        other.store(7, oid, t1, &length(6)).await;
        let voted = other.call("vote", vec![Value::Int(7)]).await.unwrap();
        let conflicts = items(&voted);
        assert_eq!(conflicts.len(), 1);
        assert_eq!(get(&conflicts[0], "oid"), Some(&Value::oid(oid)));
        assert_eq!(
            get(&conflicts[0], "serials"),
            Some(&Value::Tuple(vec![Value::tid(t2), Value::tid(t1)]))
        );
        // The client can't resolve either: it gives up.
        other.call("tpc_abort", vec![Value::Int(7)]).await.unwrap();
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn python_clients_rely_on_server_resolution() {
        let Ok(python) = std::env::var("ZEOD_PYTHON") else {
            // Straight to the stream: libtest captures eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED conflict_zeo python clients: ZEOD_PYTHON is not set ***\n"
            );
            return;
        };
        let server = TestServer::start().await;
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/conflict_support/zeo_clients.py"
        );
        let run = tokio::process::Command::new(python)
            .args([script, &server.addr.port().to_string()])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(WAIT * 6, run).await.unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim() == "ok",
            "python clients failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.stop().await;
    }
}
