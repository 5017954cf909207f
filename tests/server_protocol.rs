//! The server's protocol surface over real TCP: handshake, register,
//! `get_info`, error reply shapes, `ruok`, and how it treats bad input
//! (bad frames, unknown methods, forbidden globals, oversized frames,
//! calls before register): it closes that connection only, changes
//! nothing on disk, and keeps serving everyone else.

#[path = "server_support/harness.rs"]
mod harness;

#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::harness::*;
    use zeod::config::ServerConfig;
    use zeod::ids::{Oid, Tid};
    use zeod::protocol::{Encoding, Message, Value};

    #[tokio::test]
    async fn greets_registers_and_describes_the_storage() {
        let server = TestServer::start().await;
        let mut c = server.connect().await;
        assert_eq!(c.greeting, b"Z5");
        let last = c
            .call("register", vec![s("1"), Value::Bool(false)])
            .await
            .unwrap();
        assert_eq!(last, Value::tid(Tid::ZERO));
        let info = c.call("get_info", vec![]).await.unwrap();
        assert_eq!(get(&info, "length"), Some(&Value::Int(0)));
        assert_eq!(get(&info, "supportsUndo"), Some(&Value::Bool(true)));
        let iface = |n: &str| Value::Tuple(vec![s("ZODB.interfaces"), s(n)]);
        let expected = Value::Tuple(vec![
            iface("IBlobStorageRestoreable"),
            iface("IBlobStorage"),
            iface("IStorageRestoreable"),
            iface("IStorageIteration"),
            iface("IStorageUndoable"),
            iface("IStorageCurrentRecordIteration"),
            iface("IExternalGC"),
            iface("IStorage"),
            Value::Tuple(vec![s("zope.interface"), s("Interface")]),
        ]);
        assert_eq!(get(&info, "interfaces"), Some(&expected));
        assert_eq!(
            c.call("lastTransaction", vec![]).await.unwrap(),
            Value::tid(Tid::ZERO)
        );
        assert_eq!(c.call("ping", vec![]).await.unwrap(), Value::None);
        server.stop().await;
    }

    #[tokio::test]
    async fn load_before_echoes_tuple_msgids_and_raises_poskeyerror() {
        let server = TestServer::start().await;
        let mut c = server.client().await;
        let key = Value::Tuple(vec![Value::oid(Oid::ZERO), Value::tid(Tid::from_u64(1))]);
        c.send(&Message {
            msgid: key.clone(),
            flags: Value::Bool(false),
            method: "loadBefore".into(),
            args: key.clone(),
        })
        .await;
        let err = c.reply_to(&key).await.unwrap_err();
        assert_eq!(
            err,
            (
                "ZODB.POSException.POSKeyError".to_string(),
                Value::Tuple(vec![Value::oid(Oid::ZERO)])
            )
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn register_errors_have_python_shapes() {
        let mut config = config();
        config.storages.push(storage_config("ro", false));
        config.storages[1].options.read_only = true;
        // A read-only storage must exist before it can be opened read-only.
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro.fs");
        zeod::storage::FileStorage::open(&ro, Default::default())
            .unwrap()
            .close()
            .unwrap();
        config.storages[1].path = ro;
        let server = TestServer::start_with(config).await;
        let mut c = server.connect().await;
        let err = c
            .call("register", vec![s("nope"), Value::Bool(false)])
            .await
            .unwrap_err();
        assert_eq!(
            err,
            (
                "builtins.ValueError".to_string(),
                Value::Tuple(vec![s("unknown storage: nope")])
            )
        );
        let err = c
            .call("register", vec![s("ro"), Value::Bool(false)])
            .await
            .unwrap_err();
        assert_eq!(
            err,
            (
                "ZODB.POSException.ReadOnlyError".to_string(),
                Value::Tuple(vec![])
            )
        );
        // read_only_fallback: register again, read-only, on the same connection.
        c.call("register", vec![s("ro"), Value::Bool(true)])
            .await
            .unwrap();
        let err = c.call("new_oids", vec![]).await.unwrap_err();
        assert_eq!(err.0, "ZODB.POSException.ReadOnlyError");
        // A second successful register is a protocol violation.
        c.start_call("register", vec![s("ro"), Value::Bool(true)])
            .await;
        c.expect_closed().await;
        server.stop().await;
    }

    #[tokio::test]
    async fn ruok_answers_json_and_closes() {
        let server = TestServer::start().await;
        let mut c = Client::connect_raw(server.addr).await;
        c.send_frame(b"ruok").await;
        let status: serde_json::Value =
            serde_json::from_slice(&c.recv_raw().await.unwrap()).unwrap();
        assert_eq!(status["1"]["last-transaction"], "0000000000000000");
        assert_eq!(status["1"]["connections"], 0);
        c.expect_closed().await;
        let health = tokio::task::spawn_blocking({
            let addr = server.addr.to_string();
            move || zeod::health::probe(&addr, Duration::from_secs(5))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(health.greeting, "Z5");
        assert_eq!(
            health.storages,
            vec![("1".to_string(), "0000000000000000".to_string())]
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn bad_input_closes_only_that_connection() {
        let server = TestServer::start().await;
        let mut good = server.client().await;
        let oid = good.new_oid().await;
        good.commit(1, &[(oid, Tid::ZERO, &record(1))])
            .await
            .unwrap();
        let data_fs = server.path("1.fs");
        let size = file_len(&data_fs);

        // Garbage instead of a pickle.
        let mut c = server.client().await;
        c.send_frame(b"\x80\x03this is not a pickle").await;
        c.expect_closed().await;

        // A global outside the allowlist (os.system).
        let mut c = server.client().await;
        c.send_frame(b"\x80\x03(K\x05\x89X\x04\x00\x00\x00pingcos\nsystem\n\x85t.")
            .await;
        c.expect_closed().await;

        // An unknown method.
        let mut c = server.client().await;
        c.start_call("no_such_method", vec![]).await;
        c.expect_closed().await;

        // Anything but register before register.
        let mut c = server.connect().await;
        c.start_call("lastTransaction", vec![]).await;
        c.expect_closed().await;

        // A one-way call that fails (storea outside a transaction).
        let mut c = server.client().await;
        c.store(7, oid, Tid::ZERO, &record(2)).await;
        c.expect_closed().await;

        // A ZEO 2 / ZODB 3.8 client is refused at the handshake (ZEO 4
        // clients are served: tests/server_legacy.rs).
        for old in [&b"Z200"[..], b"Z201", b"Z308"] {
            let mut c = Client::connect_raw(server.addr).await;
            c.send_frame(old).await;
            c.expect_closed().await;
        }

        assert_eq!(file_len(&data_fs), size, "bad input changed Data.fs");
        assert_eq!(good.call("ping", vec![]).await.unwrap(), Value::None);
        let (data, _) = server.storage("1").load(oid).unwrap();
        assert_eq!(data, record(1));
        server.stop().await;
    }

    #[tokio::test]
    async fn oversized_frames_close_the_connection() {
        let server = TestServer::start_with(ServerConfig {
            max_frame_size: 1024,
            ..config()
        })
        .await;
        let mut c = server.client().await;
        c.begin(1).await;
        c.store(1, Oid::from_u64(1), Tid::ZERO, &vec![b'x'; 4096])
            .await;
        c.expect_closed().await;
        let mut other = server.client().await;
        assert_eq!(other.call("ping", vec![]).await.unwrap(), Value::None);
        server.stop().await;
    }

    #[tokio::test]
    async fn heartbeats_are_ignored() {
        let server = TestServer::start().await;
        let mut c = server.client().await;
        // The exact protocol-3 heartbeat of a ZEO 6 client.
        c.send_frame(b"\x80\x03(J\xff\xff\xff\xffK\x00X\x06\x00\x00\x00.replyNt.")
            .await;
        assert!(
            c.quiet_for(Duration::from_millis(200)).await,
            "server answered a heartbeat"
        );
        assert_eq!(c.call("ping", vec![]).await.unwrap(), Value::None);
        server.stop().await;
    }

    #[tokio::test]
    async fn wrong_arity_is_a_type_error() {
        let server = TestServer::start().await;
        let mut c = server.client().await;
        let (class, _) = c
            .call("loadBefore", vec![Value::oid(Oid::ZERO)])
            .await
            .unwrap_err();
        assert_eq!(class, "builtins.TypeError");
        let (class, _) = c
            .call("history", vec![Value::oid(Oid::ZERO), Value::None])
            .await
            .unwrap_err();
        assert_eq!(class, "builtins.TypeError");
        server.stop().await;
    }

    #[tokio::test]
    async fn msgpack_servers_announce_m5() {
        let server = TestServer::start_with(ServerConfig {
            msgpack: true,
            ..config()
        })
        .await;
        let mut c = Client::connect(server.addr, Encoding::Msgpack).await;
        assert_eq!(c.greeting, b"M5");
        let last = c
            .call("register", vec![s("1"), Value::Bool(false)])
            .await
            .unwrap();
        assert_eq!(last, Value::tid(Tid::ZERO));
        let oid = c.new_oid().await;
        let tid = c.commit(9, &[(oid, Tid::ZERO, &record(1))]).await.unwrap();
        let loaded = c
            .call("loadBefore", vec![Value::oid(oid), Value::tid(Tid::MAX)])
            .await
            .unwrap();
        assert_eq!(
            loaded,
            Value::Tuple(vec![b(&record(1)), Value::tid(tid), Value::None])
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn server_status_has_pythons_keys() {
        let server = TestServer::start().await;
        let mut c = server.client().await;
        let status = c.call("server_status", vec![]).await.unwrap();
        for key in [
            "connections",
            "loads",
            "stores",
            "commits",
            "aborts",
            "active_txns",
            "lock_time",
            "conflicts",
            "conflicts_resolved",
            "start",
            "waiting",
            "timeout-thread-is-alive",
            "last-transaction",
        ] {
            assert!(get(&status, key).is_some(), "missing {key}");
        }
        assert_eq!(get(&status, "connections"), Some(&Value::Int(1)));
        server.stop().await;
    }

    #[tokio::test]
    async fn serves_unix_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        let storage = zeod::storage::FileStorage::open(&path, Default::default()).unwrap();
        let socket = dir.path().join("zeo.sock");
        let listener = zeod::server::Listener::bind(&zeod::config::Address::Unix(socket.clone()))
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(zeod::server::run(
            listener,
            vec![("1".into(), storage)],
            config(),
            async {
                let _ = stopped.await;
            },
        ));
        let probe = socket.to_str().unwrap().to_string();
        let health = tokio::task::spawn_blocking(move || {
            zeod::health::probe(&probe, Duration::from_secs(5))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(health.storages.len(), 1);
        // A second server on the same socket is refused while the first runs.
        let second =
            zeod::server::Listener::bind(&zeod::config::Address::Unix(socket.clone())).await;
        assert!(second.is_err(), "bound a live socket twice");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
