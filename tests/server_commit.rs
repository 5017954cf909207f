//! Commits through the server over real TCP: store and commit, the
//! invalidation other connections get (and the committer does not),
//! conflicts handed back or raised in Python's shapes, the FIFO commit
//! lock with deferred votes, aborts by disconnect and by transaction
//! timeout, `getInvalidations`, blobs both ways, and a clean shutdown.

#[path = "server_support/harness.rs"]
mod harness;

#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::harness::{self, *};
    use zeod::config::ServerConfig;
    use zeod::ids::{Oid, Tid};
    use zeod::protocol::Value;

    #[tokio::test]
    async fn commit_invalidates_other_connections_only() {
        let server = TestServer::start().await;
        let mut a = server.client().await;
        let mut other = server.client().await;
        let oid = a.new_oid().await;
        let tid = a.commit(1, &[(oid, Tid::ZERO, &record(1))]).await.unwrap();
        assert_eq!(
            a.call("lastTransaction", vec![]).await.unwrap(),
            Value::tid(tid)
        );

        let inval = other.callback().await;
        assert_eq!(inval.method, "invalidateTransaction");
        assert_eq!(inval.flags, Value::Bool(true));
        assert_eq!(
            inval.args,
            Value::Tuple(vec![Value::tid(tid), Value::List(vec![Value::oid(oid)])])
        );
        let loaded = other
            .call("loadBefore", vec![Value::oid(oid), Value::tid(Tid::MAX)])
            .await
            .unwrap();
        assert_eq!(
            loaded,
            Value::Tuple(vec![b(&record(1)), Value::tid(tid), Value::None])
        );
        // The committer got `info` and the tid, never its own invalidation.
        assert!(a.callbacks.is_empty());
        assert!(a.quiet_for(Duration::from_millis(100)).await);

        let tid2 = a.commit(2, &[(oid, tid, &record(2))]).await.unwrap();
        let before = other
            .call("loadBefore", vec![Value::oid(oid), Value::tid(tid2)])
            .await
            .unwrap();
        assert_eq!(
            before,
            Value::Tuple(vec![b(&record(1)), Value::tid(tid), Value::tid(tid2)])
        );
        assert_eq!(other.callback().await.method, "invalidateTransaction");
        server.stop().await;
    }

    #[tokio::test]
    async fn write_conflicts_come_back_as_dicts_for_client_resolution() {
        let server = TestServer::start().await;
        let mut a = server.client().await;
        let oid = a.new_oid().await;
        let t1 = a.commit(1, &[(oid, Tid::ZERO, &record(1))]).await.unwrap();
        let t2 = a.commit(2, &[(oid, t1, &record(2))]).await.unwrap();

        let mut b = server.client().await;
        b.begin(5).await;
        b.store(5, oid, t1, &record(3)).await;
        let voted = b.call("vote", vec![Value::Int(5)]).await.unwrap();
        let conflicts = items(&voted);
        assert_eq!(conflicts.len(), 1);
        assert_eq!(get(&conflicts[0], "oid"), Some(&Value::oid(oid)));
        assert_eq!(
            get(&conflicts[0], "serials"),
            Some(&Value::Tuple(vec![Value::tid(t2), Value::tid(t1)]))
        );
        assert_eq!(get(&conflicts[0], "data"), Some(&harness::b(&record(3))));
        // B keeps the lock while it resolves: A's vote has to wait.
        a.begin(3).await;
        a.store(3, oid, t2, &record(4)).await;
        let a_vote = a.start_call("vote", vec![Value::Int(3)]).await;
        assert!(
            a.quiet_for(Duration::from_millis(300)).await,
            "vote overtook a resolving client"
        );
        // B "resolves" against t2 and votes again: no new conflict possible.
        b.store(5, oid, t2, &record(5)).await;
        assert!(items(&b.call("vote", vec![Value::Int(5)]).await.unwrap()).is_empty());
        let t4 = b.finish(5).await.unwrap();
        assert_eq!(server.storage("1").load(oid).unwrap(), (record(5), t4));
        // Now A hears of B's commit, then gets its own conflict back.
        assert_eq!(a.callback().await.method, "invalidateTransaction");
        let voted = a.reply_to(&a_vote).await.unwrap();
        assert_eq!(
            get(&items(&voted)[0], "serials"),
            Some(&Value::Tuple(vec![Value::tid(t4), Value::tid(t2)]))
        );
        assert_eq!(
            a.call("tpc_abort", vec![Value::Int(3)]).await.unwrap(),
            Value::None
        );
        // The abort released the lock.
        let other = b.new_oid().await;
        b.commit(6, &[(other, Tid::ZERO, &record(6))])
            .await
            .unwrap();
        server.stop().await;
    }

    #[tokio::test]
    async fn read_conflicts_raise_with_the_dict_state() {
        let server = TestServer::start().await;
        let mut a = server.client().await;
        let oid = a.new_oid().await;
        let t1 = a.commit(1, &[(oid, Tid::ZERO, &record(1))]).await.unwrap();
        let t2 = a.commit(2, &[(oid, t1, &record(2))]).await.unwrap();
        let other = a.new_oid().await;
        a.begin(3).await;
        a.store(3, other, Tid::ZERO, &record(3)).await;
        a.call_async(
            "checkCurrentSerialInTransaction",
            vec![Value::oid(oid), Value::tid(t1), Value::Int(3)],
        )
        .await;
        let (class, state) = a.call("vote", vec![Value::Int(3)]).await.unwrap_err();
        assert_eq!(class, "ZODB.POSException.ReadConflictError");
        assert_eq!(
            get(&state, "message"),
            Some(&s("database read conflict error"))
        );
        assert_eq!(get(&state, "oid"), Some(&Value::oid(oid)));
        assert_eq!(
            get(&state, "serials"),
            Some(&Value::Tuple(vec![Value::tid(t2), Value::tid(t1)]))
        );
        // The transaction is gone on the server; abort is still fine.
        assert_eq!(
            a.call("tpc_abort", vec![Value::Int(3)]).await.unwrap(),
            Value::None
        );
        let (class, state) = a.call("vote", vec![Value::Int(3)]).await.unwrap_err();
        assert_eq!(class, "ZODB.POSException.StorageTransactionError");
        assert_eq!(state, Value::Tuple(vec![Value::None, Value::Int(3)]));
        server.stop().await;
    }

    #[tokio::test]
    async fn voters_queue_for_the_commit_lock() {
        let server = TestServer::start().await;
        let mut a = server.client().await;
        let mut b = server.client().await;
        let (oa, ob) = (a.new_oid().await, b.new_oid().await);
        a.begin(1).await;
        a.store(1, oa, Tid::ZERO, &record(1)).await;
        assert!(items(&a.call("vote", vec![Value::Int(1)]).await.unwrap()).is_empty());

        b.begin(2).await;
        b.store(2, ob, Tid::ZERO, &record(2)).await;
        let vote = b.start_call("vote", vec![Value::Int(2)]).await;
        assert!(
            b.quiet_for(Duration::from_millis(300)).await,
            "second vote answered while the lock is held"
        );
        // Reads are not blocked by the waiting voter.
        assert_eq!(b.call("ping", vec![]).await.unwrap(), Value::None);

        let ta = a.finish(1).await.unwrap();
        // A's finish released the lock as soon as it was sealed: B's vote
        // may be answered before A's commit is published, but B hears of
        // A's commit before its own finish reply.
        assert!(items(&b.reply_to(&vote).await.unwrap()).is_empty());
        let tb = b.finish(2).await.unwrap();
        let inval = b
            .callbacks
            .pop_front()
            .expect("A's invalidation did not precede B's finish reply");
        assert_eq!(inval.method, "invalidateTransaction");
        assert_eq!(
            inval.args,
            Value::Tuple(vec![Value::tid(ta), Value::List(vec![Value::oid(oa)])])
        );
        assert!(tb > ta);
        server.stop().await;
    }

    /// Concurrent committers (group commit: their fsyncs are shared and
    /// one may publish another's transaction): no committer hears of a
    /// later transaction before its own tid, a third client hears of
    /// every commit exactly once, in tid order, and every commit is
    /// covered by an fsync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_are_announced_in_tid_order() {
        const WRITERS: usize = 6;
        const COMMITS: usize = 15;
        let mut config = harness::config();
        config.storages[0].options.fsync = true;
        let server = TestServer::start_with(config).await;
        let mut observer = server.client().await;
        let mut writers = Vec::new();
        for _ in 0..WRITERS {
            let mut c = server.client().await;
            let oid = c.new_oid().await;
            writers.push((c, oid));
        }
        let (before, _) = server.storage("1").fsync_counts();
        let tasks: Vec<_> = writers
            .into_iter()
            .map(|(mut c, oid)| {
                tokio::spawn(async move {
                    let mut serial = Tid::ZERO;
                    let mut tids = Vec::new();
                    for n in 0..COMMITS {
                        let tid = c
                            .commit(n as i128 + 1, &[(oid, serial, &record(n as u8))])
                            .await
                            .unwrap();
                        // A ZEO client's cache needs its own tid to be
                        // after every invalidation that came before it.
                        for m in c.callbacks.drain(..) {
                            let Value::Tuple(args) = &m.args else {
                                panic!("callback args {:?}", m.args)
                            };
                            let before = args[0].as_tid().unwrap();
                            assert!(
                                before < tid,
                                "invalidation {before:?} before own tid {tid:?}"
                            );
                        }
                        tids.push(tid);
                        serial = tid;
                    }
                    tids
                })
            })
            .collect();
        let mut acknowledged = Vec::new();
        for task in tasks {
            acknowledged.extend(task.await.unwrap());
        }
        let mut announced = Vec::new();
        while announced.len() < acknowledged.len() {
            let message = observer.callback().await;
            assert_eq!(message.method, "invalidateTransaction");
            let Value::Tuple(args) = &message.args else {
                panic!("invalidateTransaction args {:?}", message.args)
            };
            announced.push(args[0].as_tid().unwrap());
        }
        assert!(
            announced.windows(2).all(|w| w[0] < w[1]),
            "invalidations out of tid order: {announced:?}"
        );
        acknowledged.sort();
        assert_eq!(announced, acknowledged);
        let (fsyncs, covered) = server.storage("1").fsync_counts();
        assert!(fsyncs > before && fsyncs - before <= acknowledged.len() as u64);
        assert!(covered >= acknowledged.len() as u64);
        server.stop().await;
    }

    #[tokio::test]
    async fn disconnect_mid_commit_releases_the_lock() {
        let server = TestServer::start().await;
        let mut a = server.client().await;
        let oid = a.new_oid().await;
        a.begin(1).await;
        a.store(1, oid, Tid::ZERO, &record(1)).await;
        assert!(items(&a.call("vote", vec![Value::Int(1)]).await.unwrap()).is_empty());
        let mut b = server.client().await;
        let ob = b.new_oid().await;
        b.begin(2).await;
        b.store(2, ob, Tid::ZERO, &record(2)).await;
        let vote = b.start_call("vote", vec![Value::Int(2)]).await;
        drop(a);
        assert!(items(&b.reply_to(&vote).await.unwrap()).is_empty());
        b.finish(2).await.unwrap();
        assert!(
            server.storage("1").load(oid).is_err(),
            "the aborted store became visible"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn transaction_timeout_disconnects_the_lock_holder() {
        let config = ServerConfig {
            transaction_timeout: Some(Duration::from_millis(300)),
            ..config()
        };
        let server = TestServer::start_with(config).await;
        let mut a = server.client().await;
        let oid = a.new_oid().await;
        a.begin(1).await;
        a.store(1, oid, Tid::ZERO, &record(1)).await;
        assert!(items(&a.call("vote", vec![Value::Int(1)]).await.unwrap()).is_empty());
        a.expect_closed().await;
        let mut b = server.client().await;
        b.commit(2, &[(oid, Tid::ZERO, &record(2))]).await.unwrap();
        server.stop().await;
    }

    #[tokio::test]
    async fn get_invalidations_answers_from_the_queue() {
        let server = TestServer::start().await;
        let mut a = server.client().await;
        let (o1, o2) = (a.new_oid().await, a.new_oid().await);
        let t1 = a.commit(1, &[(o1, Tid::ZERO, &record(1))]).await.unwrap();
        let t2 = a.commit(2, &[(o2, Tid::ZERO, &record(2))]).await.unwrap();
        let since = a
            .call("getInvalidations", vec![Value::tid(t1)])
            .await
            .unwrap();
        assert_eq!(
            since,
            Value::Tuple(vec![Value::tid(t2), Value::List(vec![Value::oid(o2)])])
        );
        assert_eq!(
            a.call("getInvalidations", vec![Value::tid(Tid::ZERO)])
                .await
                .unwrap(),
            Value::None
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn blobs_upload_and_download() {
        let server = TestServer::start().await;
        let mut a = server.client().await;
        let oid = a.new_oid().await;
        let content: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        a.begin(1).await;
        a.store(1, oid, Tid::ZERO, &record(1)).await;
        a.call_async("storeBlobStart", vec![]).await;
        for chunk in content.chunks(59_000) {
            a.call_async("storeBlobChunk", vec![b(chunk)]).await;
        }
        a.call_async(
            "storeBlobEnd",
            vec![
                Value::oid(oid),
                Value::tid(Tid::ZERO),
                b(&record(1)),
                Value::Int(1),
            ],
        )
        .await;
        assert!(items(&a.call("vote", vec![Value::Int(1)]).await.unwrap()).is_empty());
        let tid = a.finish(1).await.unwrap();

        let mut c = server.client().await;
        assert_eq!(
            c.call("sendBlob", vec![Value::oid(oid), Value::tid(tid)])
                .await
                .unwrap(),
            Value::None
        );
        let names: Vec<String> = c.callbacks.iter().map(|m| m.method.clone()).collect();
        assert_eq!(
            names,
            [
                "receiveBlobStart",
                "receiveBlobChunk",
                "receiveBlobChunk",
                "receiveBlobChunk",
                "receiveBlobStop"
            ]
        );
        let mut received = Vec::new();
        for m in &c.callbacks {
            if m.method == "receiveBlobChunk" {
                received.extend_from_slice(items(&m.args)[2].as_bytes().unwrap());
            }
        }
        assert_eq!(received, content);
        let (class, _) = c
            .call(
                "sendBlob",
                vec![Value::oid(Oid::from_u64(999)), Value::tid(tid)],
            )
            .await
            .unwrap_err();
        assert_eq!(class, "ZODB.POSException.POSKeyError");
        server.stop().await;
    }

    #[tokio::test]
    async fn undo_log_and_iteration() {
        let server = TestServer::start().await;
        let mut a = server.client().await;
        let oid = a.new_oid().await;
        let t1 = a.commit(1, &[(oid, Tid::ZERO, &record(1))]).await.unwrap();
        let t2 = a.commit(2, &[(oid, t1, &record(2))]).await.unwrap();
        let log = a
            .call("undoLog", vec![Value::Int(0), Value::Int(10)])
            .await
            .unwrap();
        let log = items(&log);
        assert_eq!(log.len(), 2);
        assert_eq!(get(&log[0], "description"), Some(&b(b"test")));
        let id = get(&log[0], "id").unwrap().clone();
        a.begin(3).await;
        a.call_async("undoa", vec![id, Value::Int(3)]).await;
        let voted = a.call("vote", vec![Value::Int(3)]).await.unwrap();
        assert_eq!(items(&voted), [Value::oid(oid)]);
        let t3 = a.finish(3).await.unwrap();
        let (data, _) = server.storage("1").load(oid).unwrap();
        assert_eq!(data, record(1));

        let it = a
            .call("iterator_start", vec![Value::None, Value::None])
            .await
            .unwrap();
        let mut tids = Vec::new();
        loop {
            let next = a.call("iterator_next", vec![it.clone()]).await.unwrap();
            if next == Value::None {
                break;
            }
            tids.push(items(&next)[0].as_tid().unwrap());
        }
        assert_eq!(tids, [t1, t2, t3]);
        let (class, _) = a.call("iterator_next", vec![it]).await.unwrap_err();
        assert_eq!(class, "builtins.KeyError");
        server.stop().await;
    }

    #[tokio::test]
    async fn shutdown_lets_a_voted_transaction_finish() {
        let server = TestServer::start().await;
        let mut a = server.client().await;
        let oid = a.new_oid().await;
        a.begin(1).await;
        a.store(1, oid, Tid::ZERO, &record(1)).await;
        assert!(items(&a.call("vote", vec![Value::Int(1)]).await.unwrap()).is_empty());
        let mut idle = server.client().await;
        let storage = server.storage("1").clone();
        let stopping = tokio::spawn(server.stop());
        idle.expect_closed().await;
        a.finish(1).await.unwrap();
        a.expect_closed().await;
        stopping.await.unwrap();
        assert_eq!(storage.load(oid).unwrap().0, record(1));
    }

    #[tokio::test]
    async fn storages_have_their_own_locks_and_invalidations() {
        let mut config = config();
        config.storages.push(storage_config("2", false));
        let server = TestServer::start_with(config).await;
        let mut a = server.client().await;
        let mut b = server.connect().await;
        b.call("register", vec![s("2"), Value::Bool(false)])
            .await
            .unwrap();
        let mut watcher = server.connect().await;
        watcher
            .call("register", vec![s("2"), Value::Bool(true)])
            .await
            .unwrap();

        let oid = a.new_oid().await;
        a.begin(1).await;
        a.store(1, oid, Tid::ZERO, &record(1)).await;
        assert!(items(&a.call("vote", vec![Value::Int(1)]).await.unwrap()).is_empty());
        // Storage 1's lock is held; storage 2 commits regardless.
        let other = b.new_oid().await;
        let t2 = b
            .commit(2, &[(other, Tid::ZERO, &record(2))])
            .await
            .unwrap();
        a.finish(1).await.unwrap();
        let inval = watcher.callback().await;
        assert_eq!(
            inval.args,
            Value::Tuple(vec![Value::tid(t2), Value::List(vec![Value::oid(other)])])
        );
        assert!(
            watcher.quiet_for(Duration::from_millis(200)).await,
            "storage 1's commit reached storage 2"
        );
        assert_eq!(server.storage("1").load(oid).unwrap().0, record(1));
        assert_eq!(server.storage("2").load(other).unwrap().0, record(2));
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_load_shows_a_commit_before_its_invalidation() {
        let server = TestServer::start().await;
        let mut a = server.client().await;
        let oid = a.new_oid().await;
        let first = a.commit(1, &[(oid, Tid::ZERO, &record(0))]).await.unwrap();
        let mut b = server.client().await;
        let mut committer = tokio::spawn(async move {
            let mut serial = first;
            for i in 2..40u8 {
                serial = a
                    .commit(i as i128, &[(oid, serial, &record(i))])
                    .await
                    .unwrap();
            }
            serial
        });
        let mut announced = vec![first];
        let mut last = None;
        for _ in 0..100_000 {
            let loaded = b
                .call("loadBefore", vec![Value::oid(oid), Value::tid(Tid::MAX)])
                .await
                .unwrap();
            while let Some(m) = b.callbacks.pop_front() {
                assert_eq!(m.method, "invalidateTransaction");
                announced.push(items(&m.args)[0].as_tid().unwrap());
            }
            let start = items(&loaded)[1].as_tid().unwrap();
            assert!(
                announced.contains(&start),
                "a load showed {start} before its invalidation"
            );
            if last.is_none() && committer.is_finished() {
                last = Some((&mut committer).await.unwrap());
            }
            if last == Some(start) {
                break;
            }
        }
        assert_eq!(announced.last(), last.as_ref(), "loads never caught up");
        server.stop().await;
    }
}
