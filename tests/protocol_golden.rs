//! Golden bytes: the annotated wire examples of the spec's appendix A
//! (handshake, register, loads, conflicts, heartbeats, msgpack, ZEO 4 on
//! Python 3 and 2) encoded and decoded by our codec, and one-way calls.

#[allow(dead_code, clippy::unwrap_used)]
#[path = "protocol_support/captures.rs"]
mod captures;

#[allow(clippy::unwrap_used)]
mod tests {
    use super::captures::unhex;
    use zeod::ids::{Oid, Tid};
    use zeod::protocol::message::{self, SerialNo};

    use zeod::protocol::{
        decode_message, encode_message, error_reply, frame, msgpack, reply, ConflictDetail,
        Encoding, Error, Generation, Message, ServerError, Value,
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
