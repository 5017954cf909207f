//! Error replies built by our helpers, byte for byte against frames the
//! Python servers sent: ZEO 5 `(class_name, state)` pairs from the ZEO 6
//! server, ZEO 4 `_recon` pickles from ZEO 4 on Python 3 and Python 2.

#[allow(dead_code, clippy::unwrap_used)]
#[path = "protocol_support/captures.rs"]
mod captures;

#[allow(clippy::unwrap_used)]
mod tests {
    use super::captures::unhex;
    use zeod::ids::{Oid, Tid};
    use zeod::protocol::message::{self, SerialNo};

    use zeod::protocol::{
        encode_message, error_reply, z4_error_reply, ConflictDetail, Encoding, ServerError, Value,
    };

    fn s(x: &str) -> Value {
        Value::Str(x.to_owned())
    }

    fn i(x: i128) -> Value {
        Value::Int(x)
    }

    fn t(items: Vec<Value>) -> Value {
        Value::Tuple(items)
    }

    fn oid(n: u64) -> Oid {
        Oid::from_u64(n)
    }

    fn tid_hex(h: &str) -> Tid {
        Tid::from_slice(&unhex(h)).unwrap()
    }

    #[test]
    fn z4_error_replies_match_zeo4_servers() {
        let err = ServerError::PosKey { oid: Oid::ZERO };
        // §3.5.2, Python 3 ZEO 4 (capture zeo4-server_zeo4-client_py36_proto3).
        assert_eq!(
            encode_message(Encoding::Pickle3, &z4_error_reply(i(4), &err, Encoding::Pickle3)).unwrap(),
            unhex("8003284b044b0058060000002e7265706c79635a4f44422e504f53457863657074696f6e0a504f534b65794572726f720a635a4f44422e504f53457863657074696f6e0a5f7265636f6e0a635a4f44422e504f53457863657074696f6e0a504f534b65794572726f720a7d580400000061726773430800000000000000008573865286742e")
        );
        // Python 2 ZEO 4 (capture zeo4-server_zeo4-client_py27_proto1).
        assert_eq!(
            encode_message(Encoding::Pickle1, &z4_error_reply(i(4), &err, Encoding::Pickle1)).unwrap(),
            &b"(K\x04K\x00U\x06.reply(cZODB.POSException\nPOSKeyError\ncZODB.POSException\n_recon\n(cZODB.POSException\nPOSKeyError\n}U\x04args(U\x08\x00\x00\x00\x00\x00\x00\x00\x00tstRtt."[..]
        );
    }

    #[test]
    fn z4_conflicts_in_serialnos_match_zeo4_servers() {
        let py3 = ServerError::Conflict(ConflictDetail {
            oid: Some(oid(2)),
            class_name: Some("ZODB.tests.MinPO.MinPO".into()),
            serials: Some((tid_hex("040d3e5df8bb3555"), tid_hex("040d3e5df72d94dd"))),
            ..ConflictDetail::default()
        });
        let msg = message::serialnos(Encoding::Pickle3, &[(oid(2), SerialNo::Failed(py3))]);
        assert_eq!(
            encode_message(Encoding::Pickle3, &msg).unwrap(),
            unhex("8003284b004b01580900000073657269616c6e6f735d43080000000000000002635a4f44422e504f53457863657074696f6e0a5f7265636f6e0a635a4f44422e504f53457863657074696f6e0a436f6e666c6963744572726f720a7d2858070000006d6573736167655817000000646174616261736520636f6e666c696374206572726f7258030000006f696443080000000000000002580a000000636c6173735f6e616d6558160000005a4f44422e74657374732e4d696e504f2e4d696e504f580700000073657269616c734308040d3e5df8bb35554308040d3e5df72d94dd8658040000006172677329758652866185742e")
        );
        let py2 = ServerError::Conflict(ConflictDetail {
            oid: Some(oid(1)),
            class_name: Some("ZODB.tests.MinPO.MinPO".into()),
            serials: Some((Tid(*b"\x04\r>b\x185\xaaU"), Tid(*b"\x04\r>b\x16\xaamf"))),
            ..ConflictDetail::default()
        });
        let msg = message::serialnos(Encoding::Pickle1, &[(oid(1), SerialNo::Failed(py2))]);
        assert_eq!(
            encode_message(Encoding::Pickle1, &msg).unwrap(),
            &b"(K\x00K\x01U\tserialnos(](U\x08\x00\x00\x00\x00\x00\x00\x00\x01cZODB.POSException\n_recon\n(cZODB.POSException\nConflictError\n}(U\nclass_nameX\x16\x00\x00\x00ZODB.tests.MinPO.MinPOU\x07serials(U\x08\x04\r>b\x185\xaaUU\x08\x04\r>b\x16\xaamftU\x07messageU\x17database conflict errorU\x03oidU\x08\x00\x00\x00\x00\x00\x00\x00\x01U\x04args)utRtatt."[..]
        );
    }

    #[test]
    fn z5_error_replies_match_the_zeo6_server() {
        let cases: Vec<(i128, ServerError, &str)> = vec![
            (1, ServerError::ValueError("unknown storage: nope".into()),
             "8003284b014b0258060000002e7265706c7958130000006275696c74696e732e56616c75654572726f725815000000756e6b6e6f776e2073746f726167653a206e6f70658586742e"),
            (2, ServerError::ReadOnly,
             "8003284b024b0258060000002e7265706c79581f0000005a4f44422e504f53457863657074696f6e2e526561644f6e6c794572726f722986742e"),
            (1, ServerError::TypeError("ZEOStorage.register() takes 3 positional arguments but 4 were given".into()),
             "8003284b014b0258060000002e7265706c7958120000006275696c74696e732e547970654572726f7258430000005a454f53746f726167652e726567697374657228292074616b6573203320706f736974696f6e616c20617267756d656e7473206275742034207765726520676976656e8586742e"),
            (4, ServerError::StorageTransaction(vec![s("Multiple simultaneous tpc_begin requests from one client.")]),
             "8003284b044b0258060000002e7265706c7958290000005a4f44422e504f53457863657074696f6e2e53746f726167655472616e73616374696f6e4572726f7258390000004d756c7469706c652073696d756c74616e656f7573207470635f626567696e2072657175657374732066726f6d206f6e6520636c69656e742e8586742e"),
            (24, ServerError::StorageTransaction(vec![Value::None, i(12345)]),
             "8003284b184b0258060000002e7265706c7958290000005a4f44422e504f53457863657074696f6e2e53746f726167655472616e73616374696f6e4572726f724e4d39308686742e"),
            (17, ServerError::ReadConflict(ConflictDetail {
                oid: Some(oid(2)),
                serials: Some((tid_hex("040d3e5ae2dbf8dd"), Tid::ZERO)),
                ..ConflictDetail::default()
             }),
             "8003284b114b0258060000002e7265706c7958230000005a4f44422e504f53457863657074696f6e2e52656164436f6e666c6963744572726f727d2858070000006d657373616765581c0000006461746162617365207265616420636f6e666c696374206572726f7258030000006f696443080000000000000002580a000000636c6173735f6e616d654e580700000073657269616c734308040d3e5ae2dbf8dd43080000000000000000867586742e"),
            (5, ServerError::PosKey { oid: oid(0x1869f) },
             "8003284b054b0258060000002e7265706c79581d0000005a4f44422e504f53457863657074696f6e2e504f534b65794572726f724308000000000001869f8586742e"),
        ];
        for (msgid, err, hex) in cases {
            let bytes = encode_message(Encoding::Pickle3, &error_reply(i(msgid), &err)).unwrap();
            assert_eq!(bytes, unhex(hex), "{err:?}");
        }
    }

    #[test]
    fn undo_error_states_have_the_shapes_clients_read() {
        let err = ServerError::MultipleUndo(vec![(
            Some(oid(1)),
            "Some data were modified by a later transaction".into(),
        )]);
        assert_eq!(err.class_name(), "ZODB.POSException.MultipleUndoErrors");
        let state = err.state();
        assert_eq!(
            state.get("_errs"),
            Some(&Value::List(vec![t(vec![
                Value::oid(oid(1)),
                s("Some data were modified by a later transaction")
            ])]))
        );
        // Encodable in every dialect (msgpack cannot carry exception objects).
        encode_message(Encoding::Msgpack, &error_reply(i(3), &err)).unwrap();
        let undo = ServerError::Undo {
            reason: "non-undoable transaction".into(),
            oid: None,
        };
        assert_eq!(
            undo.state(),
            Value::Dict(vec![
                (s("_reason"), s("non-undoable transaction")),
                (s("_oid"), Value::None)
            ])
        );
    }

    #[test]
    fn other_exceptions_keep_their_class_and_args() {
        let err = ServerError::Other {
            class_name: "ZODB.POSException.StorageSystemError".into(),
            args: vec![s("disk full")],
        };
        assert_eq!(err.state(), t(vec![s("disk full")]));
        let z4 = err.z4_instance(Encoding::Pickle3);
        let Value::Object { class, args, .. } = z4 else {
            panic!("{z4:?}")
        };
        assert_eq!(
            *class,
            Value::Global {
                module: "ZODB.POSException".into(),
                name: "_recon".into()
            }
        );
        assert_eq!(
            *args,
            t(vec![
                Value::Global {
                    module: "ZODB.POSException".into(),
                    name: "StorageSystemError".into()
                },
                Value::Dict(vec![(s("args"), t(vec![s("disk full")]))]),
            ])
        );
        let plain = ServerError::Other {
            class_name: "builtins.RuntimeError".into(),
            args: vec![],
        };
        assert_eq!(
            plain.z4_class(Encoding::Pickle1),
            Value::Global {
                module: "exceptions".into(),
                name: "RuntimeError".into()
            }
        );
    }
}
