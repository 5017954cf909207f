//! ZEO 4-era clients (Z4, Z3101, Z310, Z309) on the wire, beside a ZEO 5
//! client on the same storage: the Z4 call set, the `serialnos` commit,
//! ZEO 4 error pickles, one-way errors that keep the connection, full
//! cache verification, and the refusal of older protocols. The real ZEO 4
//! client (Python 2.7) is exercised by tests/legacy.

#[path = "server_support/harness.rs"]
mod harness;

#[allow(clippy::unwrap_used)]
mod tests {
    use super::harness::*;
    use zeod::ids::{Oid, Tid};
    use zeod::protocol::{Encoding, Message, Value};

    /// A Python 2 ZEO 4 client after `getAuthProtocol` and `register`.
    async fn z4_client(server: &TestServer, protocol: &[u8]) -> Client {
        let mut c = Client::connect_raw(server.addr).await;
        assert_eq!(c.greeting, b"Z5");
        c.send_frame(protocol).await;
        c.encoding = Encoding::Pickle1;
        assert_eq!(c.call("getAuthProtocol", vec![]).await, Ok(Value::None));
        assert_eq!(
            c.call("register", vec![b(b"1"), Value::Int(0)]).await,
            Ok(Value::None)
        );
        c
    }

    /// The frames up to the reply to `msgid`, raw.
    async fn frames_until_reply(c: &mut Client, msgid: &Value) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        loop {
            let raw = c.recv_raw().await.expect("connection closed");
            let is_reply = contains(&raw, b".reply") && reply_msgid(&raw) == Some(msgid.clone());
            frames.push(raw);
            if is_reply {
                return frames;
            }
        }
    }

    /// The msgid of a protocol-1 reply frame: `(K<id>` at its start.
    fn reply_msgid(raw: &[u8]) -> Option<Value> {
        match raw {
            [b'(', b'K', id, ..] => Some(Value::Int(i128::from(*id))),
            _ => None,
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    async fn z4_begin_store(c: &mut Client, txn: i128, oid: Oid, serial: Tid, data: &[u8]) {
        c.call_async(
            "tpc_begin",
            vec![
                Value::Int(txn),
                b(b""),
                b(b"z4"),
                Value::Dict(vec![]),
                Value::None,
                b(b" "),
            ],
        )
        .await;
        c.store(txn, oid, serial, data).await;
    }

    #[tokio::test]
    async fn a_zeo4_client_commits_through_serialnos_beside_a_zeo5_client() {
        let server = TestServer::start().await;
        let mut z5 = server.client().await;
        let mut z4 = z4_client(&server, b"Z4").await;

        let info = z4.call("get_info", vec![]).await.unwrap();
        let Value::Dict(entries) = &info else {
            panic!("{info:?}")
        };
        // Python 2 natives: byte-string keys and names.
        assert!(entries
            .iter()
            .any(|(k, v)| *k == b(b"extensionMethods") && *v == Value::Dict(vec![])));
        assert!(entries
            .iter()
            .any(|(k, v)| *k == b(b"supportsUndo") && *v == Value::Bool(true)));

        let oid = Oid::from_u64(0);
        z4_begin_store(&mut z4, 7, oid, Tid::ZERO, &record(1)).await;
        assert_eq!(z4.call("vote", vec![Value::Int(7)]).await, Ok(Value::None));
        let serialnos = z4
            .callbacks
            .pop_front()
            .expect("no serialnos before the vote reply");
        assert_eq!(serialnos.method, "serialnos");
        assert_eq!(serialnos.flags, Value::Int(1));
        let tid = z4.call("tpc_finish", vec![Value::Int(7)]).await.unwrap();
        assert_eq!(
            z4.callbacks.pop_front().map(|m| m.method),
            Some("info".into())
        );
        assert_eq!(
            serialnos.args,
            Value::Tuple(vec![Value::List(vec![Value::Tuple(vec![
                Value::oid(oid),
                tid.clone()
            ])])])
        );
        let tid = tid.as_tid().unwrap();

        // The ZEO 5 client is told, and sees the data.
        let inval = z5.callback().await;
        assert_eq!(inval.method, "invalidateTransaction");
        assert_eq!(
            inval.args,
            Value::Tuple(vec![Value::tid(tid), Value::List(vec![Value::oid(oid)])])
        );
        let loaded = z5
            .call("loadBefore", vec![Value::oid(oid), Value::tid(Tid::MAX)])
            .await
            .unwrap();
        assert_eq!(
            loaded,
            Value::Tuple(vec![b(&record(1)), Value::tid(tid), Value::None])
        );

        // The ZEO 5 client commits; the ZEO 4 client is told and loads
        // the current revision with loadEx.
        let tid2 = z5.commit(9, &[(oid, tid, &record(2))]).await.unwrap();
        let inval = z4.callback().await;
        assert_eq!(inval.method, "invalidateTransaction");
        assert_eq!(
            inval.args,
            Value::Tuple(vec![Value::tid(tid2), Value::List(vec![Value::oid(oid)])])
        );
        assert_eq!(
            z4.call("loadEx", vec![Value::oid(oid)]).await,
            Ok(Value::Tuple(vec![b(&record(2)), Value::tid(tid2)]))
        );
        assert_eq!(
            z4.call("lastTransaction", vec![]).await,
            Ok(Value::tid(tid2))
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn conflicts_and_errors_come_back_as_zeo4_exceptions() {
        let server = TestServer::start().await;
        let mut z5 = server.client().await;
        let mut z4 = z4_client(&server, b"Z4").await;
        let oid = Oid::from_u64(0);
        let tid = z5.commit(1, &[(oid, Tid::ZERO, &record(1))]).await.unwrap();
        z5.commit(2, &[(oid, tid, &record(2))]).await.unwrap();

        // A stale serial: serialnos carries the ConflictError instance
        // (`_recon`), the vote reply is None, and the lock is free again.
        z4_begin_store(&mut z4, 5, oid, tid, &record(3)).await;
        let vote = z4.start_call("vote", vec![Value::Int(5)]).await;
        let frames = frames_until_reply(&mut z4, &vote).await;
        let serialnos = frames
            .iter()
            .find(|f| contains(f, b"serialnos"))
            .expect("no serialnos");
        assert!(contains(serialnos, b"cZODB.POSException\n_recon\n"));
        assert!(contains(serialnos, b"cZODB.POSException\nConflictError\n"));
        assert!(contains(serialnos, b"persistent.mapping.PersistentMapping"));
        assert!(contains(frames.last().unwrap(), b".replyN"));
        assert_eq!(
            z4.call("tpc_abort", vec![Value::Int(5)]).await,
            Ok(Value::None)
        );
        let current = z5_serial(&mut z5, oid).await;
        let tid3 = z5.commit(3, &[(oid, current, &record(4))]).await;
        assert!(tid3.is_ok(), "the commit lock was left held: {tid3:?}");

        // A missing object: a (Class, instance) reply with flags 0.
        let load = z4
            .start_call("loadEx", vec![Value::oid(Oid::from_u64(99))])
            .await;
        let frames = frames_until_reply(&mut z4, &load).await;
        let reply = frames.last().unwrap();
        assert!(
            contains(reply, b"K\x00U\x06.reply(cZODB.POSException\nPOSKeyError\n"),
            "{}",
            String::from_utf8_lossy(reply)
        );

        // A failing one-way call is logged; the connection stays.
        z4.store(77, oid, Tid::ZERO, &record(5)).await;
        assert_eq!(
            z4.call("lastTransaction", vec![]).await,
            Ok(Value::tid(tid3.unwrap()))
        );

        // A second register is an error, not a disconnect.
        let again = z4
            .start_call("register", vec![b(b"1"), Value::Int(0)])
            .await;
        let frames = frames_until_reply(&mut z4, &again).await;
        assert!(contains(
            frames.last().unwrap(),
            b"duplicate register() call"
        ));
        server.stop().await;
    }

    async fn z5_serial(c: &mut Client, oid: Oid) -> Tid {
        let found = c
            .call("loadBefore", vec![Value::oid(oid), Value::tid(Tid::MAX)])
            .await
            .unwrap();
        items(&found)[1].as_tid().unwrap()
    }

    #[tokio::test]
    async fn full_verification_invalidates_stale_and_missing_objects() {
        let server = TestServer::start().await;
        let mut z5 = server.client().await;
        let (fresh, stale) = (Oid::from_u64(0), Oid::from_u64(1));
        let t1 = z5
            .commit(
                1,
                &[
                    (fresh, Tid::ZERO, &record(1)),
                    (stale, Tid::ZERO, &record(1)),
                ],
            )
            .await
            .unwrap();
        let t2 = z5.commit(2, &[(stale, t1, &record(2))]).await.unwrap();

        let mut z4 = z4_client(&server, b"Z3101").await;
        for (oid, serial) in [(fresh, t1), (stale, t1), (Oid::from_u64(42), t1)] {
            z4.call_async("verify", vec![Value::oid(oid), Value::tid(serial)])
                .await;
        }
        z4.call_async("endZeoVerify", vec![]).await;
        let mut invalidated = Vec::new();
        loop {
            let m: Message = z4.callback().await;
            match m.method.as_str() {
                "invalidateVerify" => invalidated.push(m.args),
                "endVerify" => break,
                other => panic!("unexpected callback {other}"),
            }
        }
        assert_eq!(
            invalidated,
            vec![
                Value::Tuple(vec![Value::oid(stale)]),
                Value::Tuple(vec![Value::oid(Oid::from_u64(42))])
            ]
        );
        assert_eq!(z4.call("lastTransaction", vec![]).await, Ok(Value::tid(t2)));
        server.stop().await;
    }

    #[tokio::test]
    async fn zodb_39_clients_get_no_undo_and_older_ones_are_refused() {
        let server = TestServer::start().await;
        let mut z309 = z4_client(&server, b"Z309").await;
        let info = z309.call("get_info", vec![]).await.unwrap();
        let Value::Dict(entries) = &info else {
            panic!("{info:?}")
        };
        assert!(entries
            .iter()
            .any(|(k, v)| *k == b(b"supportsUndo") && *v == Value::Bool(false)));
        for old in [&b"Z200"[..], b"Z201", b"Z303", b"Z308"] {
            let mut c = Client::connect_raw(server.addr).await;
            c.send_frame(old).await;
            c.expect_closed().await;
        }
        // Z4 clients may not call anything but these two before register.
        let mut c = Client::connect_raw(server.addr).await;
        c.send_frame(b"Z4").await;
        c.encoding = Encoding::Pickle1;
        c.start_call("loadEx", vec![Value::oid(Oid::from_u64(0))])
            .await;
        c.expect_closed().await;
        server.stop().await;
    }
}
