//! Properties of the codec: decoding arbitrary or corrupted bytes never
//! panics (hostile clients), generated values round-trip through every
//! encoding, frames reassemble however the stream is split, and the limits
//! stop nesting and memo bombs before they cost the stack or memory.

#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::BytesMut;
    use proptest::prelude::*;
    use tokio_util::codec::{Decoder, Encoder};
    use zeod::protocol::pickle::{self, Dialect, Limits};
    use zeod::protocol::{
        decode_message, encode_message, frame, msgpack, Encoding, Error, FrameCodec, Message, Value,
    };

    fn scalar(msgpack_safe: bool) -> BoxedStrategy<Value> {
        let int = if msgpack_safe {
            prop_oneof![
                any::<i64>().prop_map(i128::from),
                any::<u64>().prop_map(i128::from),
                (-70_000i128..70_000),
            ]
            .boxed()
        } else {
            prop_oneof![any::<i128>(), (-70_000i128..70_000)].boxed()
        };
        prop_oneof![
            Just(Value::None),
            any::<bool>().prop_map(Value::Bool),
            int.prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Value::Float),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
            ".{0,20}".prop_map(Value::Str),
        ]
        .boxed()
    }

    fn value(msgpack_safe: bool) -> impl Strategy<Value = Value> {
        scalar(msgpack_safe).prop_recursive(4, 64, 8, move |inner| {
            let mut options = vec![
                prop::collection::vec(inner.clone(), 0..8)
                    .prop_map(Value::Tuple)
                    .boxed(),
                prop::collection::vec(inner.clone(), 0..8)
                    .prop_map(Value::List)
                    .boxed(),
                prop::collection::vec((inner.clone(), inner.clone()), 0..6)
                    .prop_map(Value::Dict)
                    .boxed(),
            ];
            if !msgpack_safe {
                // The only callable a client may send: ZopeUndo's Prefix.
                options.push(
                    (
                        prop::collection::vec(inner.clone(), 0..3),
                        prop::option::of(prop::collection::vec((inner.clone(), inner), 0..3)),
                    )
                        .prop_map(|(args, state)| Value::Object {
                            class: Box::new(Value::Global {
                                module: "ZopeUndo.Prefix".into(),
                                name: "Prefix".into(),
                            }),
                            args: Box::new(Value::Tuple(args)),
                            state: state.map(|s| Box::new(Value::Dict(s))),
                        })
                        .boxed(),
                );
            }
            prop::strategy::Union::new(options)
        })
    }

    fn tuples_only(v: &Value) -> Value {
        match v {
            Value::List(items) | Value::Tuple(items) => {
                Value::Tuple(items.iter().map(tuples_only).collect())
            }
            Value::Dict(pairs) => Value::Dict(
                pairs
                    .iter()
                    .map(|(k, v)| (tuples_only(k), tuples_only(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = pickle::decode(&data);
            let _ = pickle::decode_extension(&data);
            let _ = msgpack::decode(&data);
            for enc in [Encoding::Pickle3, Encoding::Pickle1, Encoding::Msgpack] {
                let _ = decode_message(enc, &data);
            }
            let _ = frame::parse(&data, 64);
        }

        /// Valid messages with a few bytes overwritten or cut off: the
        /// decoders walk deep into the input before failing.
        #[test]
        fn corrupted_messages_never_panic(
            v in value(false),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let msg = Message { msgid: Value::Int(1), flags: Value::Bool(false), method: "m".into(), args: v };
            for enc in [Encoding::Pickle3, Encoding::Pickle1] {
                let mut bytes = encode_message(enc, &msg).unwrap();
                for (at, byte) in &edits {
                    let i = at.index(bytes.len());
                    bytes[i] = *byte;
                }
                let _ = decode_message(enc, &bytes);
                let _ = decode_message(enc, &bytes[..cut.index(bytes.len())]);
            }
        }

        #[test]
        fn pickles_round_trip(v in value(false)) {
            for dialect in [Dialect::Proto3, Dialect::Proto1] {
                let bytes = pickle::encode(&v, dialect);
                prop_assert_eq!(pickle::decode(&bytes).unwrap(), v.clone());
            }
            let msg = Message { msgid: Value::Int(7), flags: Value::Int(0), method: ".reply".into(), args: v };
            for enc in [Encoding::Pickle3, Encoding::Pickle1] {
                let back = decode_message(enc, &encode_message(enc, &msg).unwrap()).unwrap();
                prop_assert_eq!(&back, &msg);
            }
        }

        #[test]
        fn msgpack_round_trips(v in value(true)) {
            let bytes = msgpack::encode(&v).unwrap();
            prop_assert_eq!(msgpack::decode(&bytes).unwrap(), tuples_only(&v));
        }

        #[test]
        fn extensions_round_trip(pairs in prop::collection::vec((".{0,3}", value(false)), 0..8)) {
            let ext = Value::Dict(pairs.into_iter().map(|(k, v)| (Value::Str(k), v)).collect());
            let bytes = pickle::encode_extension(&ext);
            prop_assert_eq!(pickle::decode_extension(&bytes).unwrap(), ext);
        }

        #[test]
        fn frames_reassemble_however_split(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut codec = FrameCodec::new();
            let mut wire = BytesMut::new();
            for p in &payloads {
                codec.encode(p.clone(), &mut wire).unwrap();
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            cuts.push(wire.len());
            cuts.sort_unstable();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut from = 0;
            for cut in cuts {
                buf.extend_from_slice(&wire[from..cut]);
                from = cut;
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    got.push(frame.to_vec());
                }
            }
            prop_assert_eq!(got, payloads);
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        // `(` × N, `N`, `t` × N: a tuple nested 100 000 deep in 200 KB.
        let nested = [&[b'('; 100_000][..], b"N", &[b't'; 100_000][..], b"."].concat();
        assert!(matches!(
            pickle::decode(&nested),
            Err(Error::TooDeep { limit: 200 })
        ));
        // `]` × N then `a` × (N-1): each APPEND nests the list below deeper.
        let lists = [&[b']'; 100_000][..], &[b'a'; 99_999][..], b"."].concat();
        assert!(matches!(pickle::decode(&lists), Err(Error::TooDeep { .. })));
        let mut mp = vec![0x91u8; 100_000];
        mp.push(0xc0);
        assert!(matches!(msgpack::decode(&mp), Err(Error::TooDeep { .. })));
        // Within the limit, fine.
        let ok = [&[b'('; 150][..], b"N", &[b't'; 150][..], b"."].concat();
        assert!(pickle::decode(&ok).is_ok());
    }

    #[test]
    fn memo_and_dup_bombs_hit_the_copy_budget() {
        // x = b'A'*200; then repeatedly x = [x, x] via memo: 2^40 bytes.
        let mut p = b"\x80\x03B\xc8\x00\x00\x00".to_vec();
        p.extend(std::iter::repeat_n(b'A', 200));
        p.extend_from_slice(b"q\x00");
        for _ in 0..40 {
            p.extend_from_slice(b"0(h\x00h\x00lq\x00");
        }
        p.push(b'.');
        assert!(matches!(pickle::decode(&p), Err(Error::TooLarge { .. })));
        let mut d = b"\x80\x03B\xc8\x00\x00\x00".to_vec();
        d.extend(std::iter::repeat_n(b'A', 200));
        for _ in 0..40 {
            d.extend_from_slice(b"2\x86");
        }
        d.push(b'.');
        assert!(matches!(pickle::decode(&d), Err(Error::TooLarge { .. })));
        let tight = Limits {
            max_memo_copy: 1000,
            ..Limits::default()
        };
        // Two doublings copy 604 units, three 1411.
        let doubled = |n: usize| [&d[..207], &b"2\x86".repeat(n), b"."].concat();
        assert!(pickle::decode_with(&doubled(2), &tight).is_ok());
        assert!(matches!(
            pickle::decode_with(&doubled(3), &tight),
            Err(Error::TooLarge { limit: 1000 })
        ));
    }

    #[test]
    fn memo_get_of_a_filled_container_sees_its_items() {
        // Python memoizes a list when it is created and fills it afterwards:
        // `l = [1, 2]; (l, l)` pickles as ]q0(K1K2e h0 \x86.
        let p = b"\x80\x03]q\x00(K\x01K\x02eh\x00\x86.";
        let l = Value::List(vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(pickle::decode(p).unwrap(), Value::Tuple(vec![l.clone(), l]));
    }

    #[test]
    fn oversized_frames_are_refused_before_buffering() {
        let mut codec = FrameCodec::with_max_frame(1 << 20);
        let mut buf = BytesMut::from(&b"\x40\x00\x00\x00"[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(Error::FrameTooLarge { .. })
        ));
    }
}
