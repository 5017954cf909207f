//! Golden bytes: the annotated wire examples of the spec's appendix A and
//! §3.5, error replies built by our helpers against frames the Python
//! servers sent, the GLOBAL allowlist, and transaction extension bytes as
//! ZODB writes them.

#[allow(dead_code, clippy::unwrap_used)]
#[path = "protocol_support/captures.rs"]
mod captures;

#[allow(clippy::unwrap_used)]
mod tests {
    use super::captures::{spec_dir, unhex};
    use zeod::ids::{Oid, Tid};
    use zeod::protocol::message::{self, SerialNo};
    use zeod::protocol::pickle;
    use zeod::protocol::{
        decode_message, encode_message, error_reply, frame, msgpack, reply, z4_error_reply,
        ConflictDetail, Encoding, Error, Generation, Message, ServerError, Value,
    };

    fn s(x: &str) -> Value {
        Value::Str(x.to_owned())
    }
    fn b(x: &[u8]) -> Value {
        Value::Bytes(x.to_vec())
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

    /// A frame given as spec hex (length prefix included): its payload.
    fn payload(hex: &str) -> Vec<u8> {
        let bytes = unhex(hex);
        match frame::parse(&bytes, frame::DEFAULT_MAX_FRAME).unwrap() {
            frame::Parsed::Frame { payload, consumed } => {
                assert_eq!(consumed, bytes.len(), "spec frame has trailing bytes");
                payload.to_vec()
            }
            frame::Parsed::Incomplete { .. } => panic!("spec frame incomplete: {hex}"),
        }
    }

    fn framed(enc: Encoding, msg: &Message) -> Vec<u8> {
        frame::encode(&encode_message(enc, msg).unwrap()).unwrap()
    }

    #[test]
    fn a1_greetings() {
        assert_eq!(
            zeod::protocol::greeting_frame(false).to_vec(),
            unhex("000000025a35")
        );
        assert_eq!(
            zeod::protocol::greeting_frame(true).to_vec(),
            unhex("000000024d35")
        );
    }

    #[test]
    fn a2_register_and_reply() {
        let call = decode_message(
            Encoding::Pickle3,
            &payload("0000001e 80 03 28 4b 01 89 58 08000000 7265676973746572 58 01000000 31 4b 00 86 74 2e"),
        )
        .unwrap();
        assert_eq!(call.msgid, i(1));
        assert_eq!(call.flags, Value::Bool(false));
        assert!(!call.is_one_way());
        assert_eq!(call.method, "register");
        assert_eq!(call.args, t(vec![s("1"), i(0)]));
        let answer = reply(call.msgid.clone(), Value::oid(Oid::ZERO));
        assert_eq!(
            framed(Encoding::Pickle3, &answer),
            unhex("0000001e 80 03 28 4b 01 4b 00 58 06000000 2e7265706c79 43 08 0000000000000000 74 2e")
        );
    }

    #[test]
    fn a3_tuple_msgid_and_poskeyerror() {
        let call = decode_message(
            Encoding::Pickle3,
            &payload(
                "0000003f 80 03 28 43 08 0000000000000000 43 08 0000000000000001 86 89
                 58 0a000000 6c6f61644265666f7265 43 08 0000000000000000 43 08 0000000000000001 86 74 2e",
            ),
        )
        .unwrap();
        let pair = t(vec![Value::oid(Oid::ZERO), Value::tid(Tid::from_u64(1))]);
        assert_eq!(call.msgid, pair);
        assert_eq!(call.args, pair);
        let err = error_reply(call.msgid, &ServerError::PosKey { oid: Oid::ZERO });
        assert_eq!(
            framed(Encoding::Pickle3, &err),
            unhex(
                "00000055 80 03 28 43 08 0000000000000000 43 08 0000000000000001 86 4b 02
                 58 06000000 2e7265706c79
                 58 1d000000 5a4f44422e504f53457863657074696f6e2e504f534b65794572726f72
                 43 08 0000000000000000 85 86 74 2e"
            )
        );
    }

    #[test]
    fn a4_load_reply() {
        let record = vec![0x5a; 115];
        let tid = tid_hex("040d3e5ae1892222");
        let msg = reply(i(8), t(vec![b(&record), Value::tid(tid), Value::None]));
        let mut expected = unhex("00000095 80 03 28 4b 08 4b 00 58 06000000 2e7265706c79 43 73");
        expected.extend_from_slice(&record);
        expected.extend(unhex("43 08 040d3e5ae1892222 4e 87 74 2e"));
        assert_eq!(framed(Encoding::Pickle3, &msg), expected);
    }

    #[test]
    fn a5_conflict_error_reply() {
        let err = ServerError::Conflict(ConflictDetail {
            message: None,
            oid: Some(oid(2)),
            class_name: Some("ZODB.tests.MinPO.MinPO".to_owned()),
            serials: Some((tid_hex("040d3e5ae2dbf8dd"), Tid::ZERO)),
        });
        let expected = unhex(
            "000000c1 80 03 28 4b 0f 4b 02 58 06000000 2e7265706c79
             58 1f000000 5a4f44422e504f53457863657074696f6e2e436f6e666c6963744572726f72
             7d 28 58 07000000 6d657373616765 58 17000000 646174616261736520636f6e666c696374206572726f72
                   58 03000000 6f6964 43 08 0000000000000002
                   58 0a000000 636c6173735f6e616d65 58 16000000 5a4f44422e74657374732e4d696e504f2e4d696e504f
                   58 07000000 73657269616c73 43 08 040d3e5ae2dbf8dd 43 08 0000000000000000 86
                75 86 74 2e",
        );
        assert_eq!(
            framed(Encoding::Pickle3, &error_reply(i(15), &err)),
            expected
        );
    }

    #[test]
    fn a6_tpc_finish_info_and_invalidation() {
        let call = decode_message(
            Encoding::Pickle3,
            &unhex("8003284b0489580a0000007470635f66696e6973688a069050cdd6997f85742e"),
        )
        .unwrap();
        assert_eq!(call.args, t(vec![i(140298710503568)]));
        let info = message::info(Generation::Zeo5, Encoding::Pickle3, 1, 166);
        assert_eq!(
            encode_message(Encoding::Pickle3, &info).unwrap(),
            unhex("8003284b00885804000000696e666f7d2858060000006c656e6774684b01580400000073697a654ba67585742e")
        );
        let tid = tid_hex("040d3e5ae1802ccc");
        let inval = message::invalidate_transaction(Generation::Zeo5, tid, &[Oid::ZERO]);
        assert_eq!(
            framed(Encoding::Pickle3, &inval),
            unhex("00000039 8003284b00885815000000696e76616c69646174655472616e73616374696f6e4308040d3e5ae1802ccc5d430800000000000000006186742e")
        );
    }

    #[test]
    fn a7_heartbeats_are_ignorable_replies_in_any_pickle_connection() {
        for hex in [
            "00000018 8003284affffffff4b0058060000002e7265706c794e742e",
            "00000013 284affffffff4b0055062e7265706c794e742e",
        ] {
            for enc in [Encoding::Pickle3, Encoding::Pickle1] {
                let msg = decode_message(enc, &payload(hex)).unwrap();
                assert_eq!(msg.msgid, i(-1));
                assert!(msg.is_reply());
                assert_eq!(msg.args, Value::None);
            }
        }
        let z5 = Message {
            msgid: i(-1),
            flags: i(0),
            method: ".reply".into(),
            args: Value::None,
        };
        assert_eq!(
            framed(Encoding::Pickle3, &z5),
            unhex("00000018 8003284affffffff4b0058060000002e7265706c794e742e")
        );
        assert_eq!(
            framed(Encoding::Pickle1, &z5),
            unhex("00000013 284affffffff4b0055062e7265706c794e742e")
        );
    }

    #[test]
    fn a8_msgpack() {
        let call = decode_message(
            Encoding::Msgpack,
            &payload("00000010 94 01 c2 a8 7265676973746572 92 a1 31 00"),
        )
        .unwrap();
        assert_eq!(call.method, "register");
        assert_eq!(call.args, t(vec![s("1"), i(0)]));
        assert_eq!(
            framed(Encoding::Msgpack, &reply(i(1), Value::oid(Oid::ZERO))),
            unhex("00000014 94 01 00 a6 2e7265706c79 c4 08 0000000000000000")
        );
        let o = Oid::from_u64(5);
        let t1 = Tid::from_u64(7);
        let msgid = t(vec![Value::oid(o), Value::tid(t1)]);
        let err = error_reply(msgid, &ServerError::PosKey { oid: o });
        let mut expected =
            unhex("94 92 c4 08 0000000000000005 c4 08 0000000000000007 02 a6 2e7265706c79 92 bd");
        expected.extend_from_slice(b"ZODB.POSException.POSKeyError");
        expected.extend(unhex("91 c4 08 0000000000000005"));
        assert_eq!(encode_message(Encoding::Msgpack, &err).unwrap(), expected);
    }

    #[test]
    fn a9_zeo4_py3_handshake_tail_and_serialnos() {
        let auth = decode_message(
            Encoding::Pickle3,
            &payload(
                "0000001d 80 03 28 4b 00 89 58 0f000000 67657441757468 50726f746f636f6c 29 74 2e",
            ),
        )
        .unwrap();
        assert_eq!(auth.method, "getAuthProtocol");
        assert_eq!(auth.args, t(vec![]));
        assert_eq!(
            framed(Encoding::Pickle3, &reply(i(0), Value::None)),
            unhex("00000015 80 03 28 4b 00 4b 00 58 06000000 2e7265706c79 4e 74 2e")
        );
        let label = decode_message(
            Encoding::Pickle3,
            &payload("00000027 80 03 28 4b 00 4b 01 58 10000000 7365745f636c69656e745f6c6162656c 58 03000000 7a3441 85 74 2e"),
        )
        .unwrap();
        assert_eq!(label.flags, i(1));
        assert!(label.is_one_way());
        let (o, tid) = (oid(0), tid_hex("040d3e5df72d94dd"));
        let msg = message::serialnos(Encoding::Pickle3, &[(o, SerialNo::Stored(tid))]);
        let mut expected =
            unhex("0000002f 80 03 28 4b 00 4b 01 58 09000000 73657269616c6e6f73 5d 43 08");
        expected.extend(o.0);
        expected.extend(unhex("43 08"));
        expected.extend(tid.0);
        expected.extend(unhex("86 61 85 74 2e"));
        assert_eq!(framed(Encoding::Pickle3, &msg), expected);
    }

    #[test]
    fn a10_zeo4_py2_protocol_1() {
        let auth =
            decode_message(Encoding::Pickle1, b"(K\x00I00\nU\x0fgetAuthProtocol)t.").unwrap();
        assert_eq!(
            (auth.msgid, auth.flags, auth.method.as_str()),
            (i(0), Value::Bool(false), "getAuthProtocol")
        );
        let reg = decode_message(
            Encoding::Pickle1,
            b"(K\x01I00\nU\x08register(U\x011K\x00tt.",
        )
        .unwrap();
        assert_eq!(reg.args, t(vec![b(b"1"), i(0)]));
        assert_eq!(reg.call_args().unwrap()[0].as_text(), Some("1"));
        let begin = decode_message(
            Encoding::Pickle1,
            b"(K\x00K\x01U\ttpc_begin(I139888621815376\nU\x00X\x19\x00\x00\x00initial database creation}NU\x01 tt.",
        )
        .unwrap();
        assert_eq!(
            begin.args,
            t(vec![
                i(139888621815376),
                b(b""),
                s("initial database creation"),
                Value::Dict(vec![]),
                Value::None,
                b(b" "),
            ])
        );
        assert_eq!(
            encode_message(Encoding::Pickle1, &reply(i(0), Value::None)).unwrap(),
            b"(K\x00K\x00U\x06.replyNt."
        );
        let msg = message::serialnos(
            Encoding::Pickle1,
            &[(Oid::ZERO, SerialNo::Stored(Tid(*b"\x04\r>b\x16q\xaa\"")))],
        );
        assert_eq!(
            encode_message(Encoding::Pickle1, &msg).unwrap(),
            b"(K\x00K\x01U\tserialnos(](U\x08\x00\x00\x00\x00\x00\x00\x00\x00U\x08\x04\r>b\x16q\xaa\"tatt."
        );
        let resolved = message::serialnos(Encoding::Pickle1, &[(oid(2), SerialNo::Resolved)]);
        assert_eq!(
            encode_message(Encoding::Pickle1, &resolved).unwrap(),
            b"(K\x00K\x01U\tserialnos(](U\x08\x00\x00\x00\x00\x00\x00\x00\x02U\x02rstatt."
        );
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
            oid(1),
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
    fn one_way_calls_carry_the_generations_flag() {
        let (o, serial) = (oid(3), Tid::from_u64(9));
        for (gen, flag) in [
            (Generation::Zeo5, Value::Bool(true)),
            (Generation::Zeo4, i(1)),
        ] {
            for msg in [
                message::receive_blob_start(gen, o, serial),
                message::receive_blob_chunk(gen, o, serial, vec![1, 2, 3]),
                message::receive_blob_stop(gen, o, serial),
            ] {
                assert_eq!((msg.msgid.clone(), msg.flags.clone()), (i(0), flag.clone()));
                let again = decode_message(
                    Encoding::Pickle3,
                    &encode_message(Encoding::Pickle3, &msg).unwrap(),
                )
                .unwrap();
                assert_eq!(again, msg);
            }
        }
        let end = encode_message(Encoding::Pickle1, &message::end_verify()).unwrap();
        assert_eq!(end, b"(K\x00K\x01U\tendVerify)t.");
    }

    #[test]
    fn forbidden_globals_are_rejected() {
        let evil = b"cos\nsystem\n(S'echo pwned'\ntR.";
        match pickle::decode(evil) {
            Err(Error::ForbiddenGlobal { module, name }) => {
                assert_eq!((module.as_str(), name.as_str()), ("os", "system"))
            }
            other => panic!("{other:?}"),
        }
        // Inside a message envelope, protocol 3.
        let msg = b"\x80\x03(K\x01\x89X\x08\x00\x00\x00registerc__builtin__\neval\nX\x01\x00\x00\x001\x85R\x85t.";
        assert!(matches!(
            decode_message(Encoding::Pickle3, msg),
            Err(Error::ForbiddenGlobal { ref module, ref name }) if module == "__builtin__" && name == "eval"
        ));
        // What a server may send is still forbidden from a client.
        let recon = b"\x80\x03cZODB.POSException\n_recon\n.";
        assert!(matches!(
            pickle::decode(recon),
            Err(Error::ForbiddenGlobal { .. })
        ));
        // Allowed globals cannot be called with arbitrary arguments either.
        let odd = b"\x80\x03ccopy_reg\n_reconstructor\n(cbuiltins\nobject\ncbuiltins\nobject\nNtR.";
        assert!(matches!(
            pickle::decode(odd),
            Err(Error::UnsupportedCall { .. })
        ));
        assert!(matches!(
            pickle::decode(b"\x80\x03cbuiltins\nbytes\n)R."),
            Err(Error::UnsupportedCall { .. })
        ));
        // Persistent ids never belong in a message.
        assert!(matches!(
            pickle::decode(b"\x80\x03C\x01xQ."),
            Err(Error::PersistentId)
        ));
    }

    /// `undoInfo(0, 20, {'user_name': Prefix('/plone/admin')})` as Zope's
    /// undo UI sends it, pickled by Python in protocol 3 and (as Python 2
    /// clients do) protocol 1.
    #[test]
    fn zopeundo_prefix_specifications_decode() {
        let py3 = unhex("8003284b07895808000000756e646f496e666f4b004b147d5809000000757365725f6e616d65635a6f7065556e646f2e5072656669780a5072656669780a29817d2858060000006c656e6774684b035804000000706174685d2858000000005805000000706c6f6e65580500000061646d696e6575627387742e");
        let py1 = unhex("284b074930300a5808000000756e646f496e666f284b004b147d5809000000757365725f6e616d6563636f70795f7265670a5f7265636f6e7374727563746f720a28635a6f7065556e646f2e5072656669780a5072656669780a635f5f6275696c74696e5f5f0a6f626a6563740a4e74527d2858060000006c656e6774684b035804000000706174685d2858000000005805000000706c6f6e65580500000061646d696e6575627374742e");
        let state = Value::Dict(vec![
            (s("length"), i(3)),
            (s("path"), Value::List(vec![s(""), s("plone"), s("admin")])),
        ]);
        let prefix = Value::Object {
            class: Box::new(Value::Global {
                module: "ZopeUndo.Prefix".into(),
                name: "Prefix".into(),
            }),
            args: Box::new(t(vec![])),
            state: Some(Box::new(state)),
        };
        for (enc, bytes) in [(Encoding::Pickle3, py3), (Encoding::Pickle1, py1)] {
            let msg = decode_message(enc, &bytes).unwrap();
            assert_eq!(msg.method, "undoInfo");
            let spec = &msg.call_args().unwrap()[2];
            assert_eq!(spec.get("user_name"), Some(&prefix), "{enc:?}");
        }
    }

    #[test]
    fn zodbpickle_binary_from_python_2_is_bytes() {
        let oid8 = b"\x00\x00\x00\x00\x00\x00\x00\x07";
        let mut reduce = b"czodbpickle\nbinary\n(U\x08".to_vec();
        reduce.extend_from_slice(oid8);
        reduce.extend_from_slice(b"tR.");
        let mut reconstructor =
            b"ccopy_reg\n_reconstructor\n(czodbpickle\nbinary\nc__builtin__\nstr\nU\x08".to_vec();
        reconstructor.extend_from_slice(oid8);
        reconstructor.extend_from_slice(b"tR.");
        let mut newobj = b"\x80\x02czodbpickle\nbinary\nU\x08".to_vec();
        newobj.extend_from_slice(oid8);
        newobj.extend_from_slice(b"\x85\x81.");
        for p in [reduce, reconstructor, newobj] {
            assert_eq!(pickle::decode(&p).unwrap().as_oid(), Some(oid(7)));
        }
    }

    fn python_extensions() -> Vec<(String, Vec<u8>)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/protocol_support/extensions.txt");
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (name, hex) = l.split_once(' ').unwrap();
                (name.to_owned(), unhex(hex))
            })
            .collect()
    }

    #[test]
    fn extensions_encode_as_zodb_stores_them() {
        let mixed = Value::Dict(vec![
            (s("user_name"), s("admin")),
            (s("path"), s("/plone/front-page")),
            (s("x"), s("x")),
            (s("empty"), s("")),
            (s("b"), b(b"")),
            (s("b1"), b(b"\x00")),
            (
                s("l"),
                Value::List(vec![
                    i(1),
                    s("x"),
                    i(1 << 40),
                    i(-5),
                    Value::Float(1.5),
                    Value::None,
                    Value::Bool(true),
                ]),
            ),
            (s("t"), t(vec![s("a"), s("bb")])),
            (s("d"), Value::Dict(vec![(s("x"), s("y"))])),
            (s("u"), s("caf\u{e9} \u{2603}")),
            (s("big"), i(1 << 70)),
        ]);
        let k300 = Value::Dict((0..300).map(|n| (s(&format!("k{n}")), i(n))).collect());
        let expected = [
            ("note", Value::Dict(vec![(s("note"), s("first"))])),
            ("n", Value::Dict(vec![(s("n"), i(2))])),
            ("mixed", mixed),
            ("k300", k300),
        ];
        let python = python_extensions();
        assert_eq!(python.len(), expected.len());
        for ((name, bytes), (want_name, value)) in python.iter().zip(expected) {
            assert_eq!(name, want_name);
            assert_eq!(pickle::decode_extension(bytes).unwrap(), value, "{name}");
            assert_eq!(pickle::encode_extension(&value), *bytes, "{name}");
        }
        assert!(pickle::encode_extension(&Value::Dict(vec![])).is_empty());
        assert_eq!(pickle::decode_extension(b"").unwrap(), Value::Dict(vec![]));
    }

    #[test]
    fn extensions_are_found_in_python_written_data_fs() {
        let fixtures = spec_dir().join("../fixtures");
        let data = std::fs::read(fixtures.join("a_basic/Data.fs")).unwrap();
        for ext in [
            Value::Dict(vec![(s("note"), s("first"))]),
            Value::Dict(vec![(s("n"), i(2))]),
        ] {
            let bytes = pickle::encode_extension(&ext);
            let at = data
                .windows(bytes.len())
                .position(|w| w == bytes.as_slice());
            assert!(at.is_some(), "{ext:?} not stored as {bytes:x?}");
        }
    }

    #[test]
    fn msgpack_rejects_what_it_cannot_carry() {
        let msg = reply(
            i(1),
            Value::Global {
                module: "a".into(),
                name: "b".into(),
            },
        );
        assert!(matches!(
            encode_message(Encoding::Msgpack, &msg),
            Err(Error::Unencodable { .. })
        ));
        assert!(msgpack::encode(&i(u64::MAX.into())).is_ok());
        assert!(msgpack::encode(&i(i128::from(u64::MAX) + 1)).is_err());
    }
}
