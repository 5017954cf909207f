//! The codec against real traffic: every frame of the spec's capture
//! transcripts (ZEO 6/5.3/4 clients and servers, Python 3 and 2, pickle and
//! msgpack). Client frames must decode; server frames must re-encode to the
//! very bytes the Python server sent.

#[allow(dead_code, clippy::unwrap_used)]
#[path = "protocol_support/captures.rs"]
mod captures;

#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::captures::{
        capture_files, lists_as_tuples, parse_py, read_frames, Dir, Frame, Shown,
    };
    use zeod::protocol::pickle::{self, Dialect, Limits};
    use zeod::protocol::{decode_message, msgpack, Encoding, Handshake, Value};

    /// What a Python server may name in its replies (never a client).
    const SERVER_GLOBALS: &[(&str, &str)] = &[
        ("ZODB.POSException", "_recon"),
        ("ZODB.POSException", "POSKeyError"),
        ("ZODB.POSException", "ConflictError"),
        ("ZODB.POSException", "ReadConflictError"),
        ("ZODB.POSException", "UndoError"),
        ("ZODB.POSException", "MultipleUndoErrors"),
        ("ZODB.POSException", "StorageTransactionError"),
        ("ZODB.POSException", "ReadOnlyError"),
    ];

    fn server_limits() -> Limits {
        Limits {
            trusted_globals: SERVER_GLOBALS,
            ..Limits::default()
        }
    }

    /// Frames of one direction after each connection's handshake frame,
    /// with the connection's handshake; `ruok` connections are left out.
    fn rpc_frames(frames: &[Frame], dir: Dir) -> Vec<(Handshake, Frame)> {
        let mut client_ids: HashMap<u32, Handshake> = HashMap::new();
        let mut greeted: HashMap<u32, bool> = HashMap::new();
        let mut out = Vec::new();
        for f in frames {
            match f.dir {
                Dir::ToServer if !client_ids.contains_key(&f.conn) => {
                    let payload = f.payload().expect("handshake frames are shown raw");
                    client_ids.insert(f.conn, Handshake::parse(&payload));
                    continue;
                }
                Dir::ToClient if !greeted.get(&f.conn).copied().unwrap_or(false) => {
                    greeted.insert(f.conn, true);
                    continue;
                }
                _ => {}
            }
            let hs = client_ids.get(&f.conn).cloned().expect("handshake first");
            if f.dir == dir && hs != Handshake::Ruok {
                out.push((hs, f.clone()));
            }
        }
        out
    }

    /// The value a transcript line shows, for frames without their bytes.
    fn shown_value(f: &Frame) -> Option<Value> {
        match &f.shown {
            Shown::Pickle { repr } | Shown::Msgpack { repr } => parse_py(repr),
            Shown::Raw(_) => None,
        }
    }

    #[test]
    fn every_client_frame_decodes() {
        let (mut exact, mut rebuilt, mut skipped) = (0, 0, Vec::new());
        for file in capture_files() {
            let frames = read_frames(&file);
            let mut encodings: HashMap<u32, Encoding> = HashMap::new();
            for (hs, f) in rpc_frames(&frames, Dir::ToServer) {
                assert!(
                    hs.generation().is_some(),
                    "{}: handshake {hs:?} followed by RPC",
                    f.at()
                );
                if let Some(payload) = f.payload() {
                    let enc = *encodings
                        .entry(f.conn)
                        .or_insert_with(|| hs.encoding(&payload));
                    let msg =
                        decode_message(enc, &payload).unwrap_or_else(|e| panic!("{}: {e}", f.at()));
                    assert!(!msg.method.is_empty(), "{}", f.at());
                    exact += 1;
                } else if let Some(v) = shown_value(&f) {
                    // No bytes in the transcript: re-pickle the shown value
                    // the way the Python client did and check the length.
                    let (enc, bytes) = match f.shown {
                        Shown::Msgpack { .. } => (Encoding::Msgpack, msgpack::encode(&v).unwrap()),
                        _ => (Encoding::Pickle3, pickle::encode(&v, Dialect::Proto3)),
                    };
                    assert_eq!(bytes.len(), f.len, "{}: re-encoded length", f.at());
                    let msg = decode_message(enc, &bytes).unwrap();
                    let expected = match enc {
                        Encoding::Msgpack => lists_as_tuples(&v),
                        _ => v,
                    };
                    let Value::Tuple(fields) = expected else {
                        panic!("{}: not an envelope", f.at())
                    };
                    assert_eq!(msg.args, fields[3], "{}", f.at());
                    rebuilt += 1;
                } else {
                    skipped.push(f.at());
                }
            }
        }
        eprintln!("client frames: {exact} decoded from their bytes, {rebuilt} rebuilt from repr, skipped (truncated): {skipped:?}");
        assert!(exact >= 379, "only {exact} client frames had bytes");
        assert!(rebuilt >= 45, "only {rebuilt} client frames rebuilt");
        assert!(skipped.len() < 10, "too many truncated frames: {skipped:?}");
    }

    #[test]
    fn zeo6_server_frames_reencode_byte_identical() {
        let (mut exact, mut by_len, mut skipped) = (0, 0, Vec::new());
        for file in capture_files() {
            if !file
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("zeo6-server")
            {
                continue;
            }
            for (_, f) in rpc_frames(&read_frames(&file), Dir::ToClient) {
                if let Some(payload) = &f.hex {
                    let value =
                        pickle::decode(payload).unwrap_or_else(|e| panic!("{}: {e}", f.at()));
                    let again = pickle::encode(&value, Dialect::Proto3);
                    assert_eq!(hex(&again), hex(payload), "{}: {value:?}", f.at());
                    exact += 1;
                } else if let Some(v) = shown_value(&f) {
                    let bytes = match f.shown {
                        Shown::Msgpack { .. } => {
                            let bytes = msgpack::encode(&v).unwrap();
                            assert_eq!(msgpack::decode(&bytes).unwrap(), lists_as_tuples(&v));
                            bytes
                        }
                        _ => {
                            let bytes = pickle::encode(&v, Dialect::Proto3);
                            assert_eq!(pickle::decode(&bytes).unwrap(), v);
                            bytes
                        }
                    };
                    assert_eq!(bytes.len(), f.len, "{}: re-encoded length of {v:?}", f.at());
                    by_len += 1;
                } else {
                    skipped.push(f.at());
                }
            }
        }
        eprintln!("ZEO 6 server frames: {exact} byte-identical, {by_len} same length (no bytes shown), skipped (truncated): {skipped:?}");
        assert!(exact >= 148, "only {exact} byte-identical frames");
        assert!(by_len >= 51, "only {by_len} frames compared by length");
        assert!(skipped.len() < 10, "too many truncated frames: {skipped:?}");
    }

    #[test]
    fn zeo4_py27_server_frames_reencode_as_protocol_1() {
        let file = capture_files()
            .into_iter()
            .find(|p| p.to_string_lossy().contains("py27_proto1"))
            .unwrap();
        let (mut exact, mut memo, mut truncated) = (0, 0, 0);
        for (_, f) in rpc_frames(&read_frames(&file), Dir::ToClient) {
            let Some(payload) = f.payload() else {
                truncated += 1;
                continue;
            };
            let decoded = pickle::decode_with(&payload, &server_limits())
                .unwrap_or_else(|e| panic!("{}: {e}", f.at()));
            assert_eq!(decoded.protocol, None);
            if decoded.used_memo {
                memo += 1;
                continue;
            }
            let again = pickle::encode(&decoded.value, Dialect::Proto1);
            assert_eq!(
                String::from_utf8_lossy(&again),
                String::from_utf8_lossy(&payload),
                "{}",
                f.at()
            );
            exact += 1;
        }
        eprintln!("ZEO 4 py27 server frames: {exact} byte-identical, {memo} used memo, {truncated} truncated");
        assert!(exact >= 97, "only {exact}");
    }

    #[test]
    fn zeo4_py36_server_frames_reencode_as_protocol_3() {
        let file = capture_files()
            .into_iter()
            .find(|p| p.to_string_lossy().contains("py36_proto3"))
            .unwrap();
        let mut exact = 0;
        for (_, f) in rpc_frames(&read_frames(&file), Dir::ToClient) {
            let Some(payload) = &f.hex else { continue };
            let decoded = pickle::decode_with(payload, &server_limits())
                .unwrap_or_else(|e| panic!("{}: {e}", f.at()));
            assert!(!decoded.used_memo);
            let again = pickle::encode(&decoded.value, Dialect::Proto3);
            assert_eq!(hex(&again), hex(payload), "{}", f.at());
            exact += 1;
        }
        eprintln!("ZEO 4 py36 server frames: {exact} byte-identical");
        assert!(exact >= 97, "only {exact}");
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
