//! Our replies, error replies and one-way calls, fed to the real ZEO 6
//! client's receive path (`ZEO.asyncio.client.Protocol.message_received`
//! from the pinned venv, `tests/python/venv.sh`): the client must raise the
//! exceptions its users catch, with the attributes they read, and invoke
//! the callbacks. The oracle is `protocol_support/zeo_client_check.py`.

#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use zeod::ids::{Oid, Tid};
    use zeod::protocol::message::{self, z4_error_reply};
    use zeod::protocol::{
        encode_message, error_reply, reply, ConflictDetail, Encoding, Generation, Message,
        ServerError, Value,
    };

    fn venv_python(root: &Path) -> String {
        let out = Command::new("bash")
            .arg(root.join("tests/python/venv.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/python/venv.sh");
        assert!(out.status.success(), "tests/python/venv.sh failed");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn cases() -> Vec<(&'static str, Encoding, Message)> {
        let tid = Tid::from_u64(0x040d3e5ae1802ccc);
        let conflict = ConflictDetail {
            oid: Some(Oid::from_u64(2)),
            class_name: Some("ZODB.tests.MinPO.MinPO".into()),
            serials: Some((tid, Tid::ZERO)),
            ..ConflictDetail::default()
        };
        let read_conflict = ConflictDetail {
            class_name: None,
            ..conflict.clone()
        };
        let z5_errors = [
            (
                "poskey",
                ServerError::PosKey {
                    oid: Oid::from_u64(7),
                },
            ),
            ("conflict", ServerError::Conflict(conflict.clone())),
            ("read_conflict", ServerError::ReadConflict(read_conflict)),
            ("read_only", ServerError::ReadOnly),
            (
                "storage_txn",
                ServerError::StorageTransaction(vec![Value::None, Value::Int(12345)]),
            ),
            (
                "multiple_undo",
                ServerError::MultipleUndo(vec![
                    (Some(Oid::from_u64(1)), "first".into()),
                    (Some(Oid::from_u64(2)), "second".into()),
                ]),
            ),
            (
                "undo",
                ServerError::Undo {
                    reason: "non-undoable transaction".into(),
                    oid: None,
                },
            ),
            (
                "value_error",
                ServerError::ValueError("unknown storage: nope".into()),
            ),
            ("type_error", ServerError::TypeError("bad".into())),
            (
                "other",
                ServerError::Other {
                    class_name: "ZODB.POSException.StorageSystemError".into(),
                    args: vec![Value::Str("disk full".into())],
                },
            ),
            (
                "key_error",
                ServerError::KeyError(Value::Bytes(b"k".to_vec())),
            ),
        ];
        let mut cases = Vec::new();
        for enc in [Encoding::Pickle3, Encoding::Msgpack] {
            for (i, (name, err)) in z5_errors.iter().enumerate() {
                let msgid = Value::Int(i as i128 + 1);
                cases.push((*name, enc, error_reply(msgid, err)));
            }
            let load_msgid = Value::Tuple(vec![Value::oid(Oid::ZERO), Value::tid(tid)]);
            let load = Value::Tuple(vec![
                Value::Bytes(b"data".to_vec()),
                Value::tid(tid),
                Value::None,
            ]);
            cases.push(("load_reply", enc, reply(load_msgid, load)));
            cases.push((
                "invalidate",
                enc,
                message::invalidate_transaction(
                    Generation::Zeo5,
                    tid,
                    &[Oid::ZERO, Oid::from_u64(1)],
                ),
            ));
            cases.push(("info", enc, message::info(Generation::Zeo5, enc, 3, 571)));
            cases.push((
                "blob_chunk",
                enc,
                message::receive_blob_chunk(
                    Generation::Zeo5,
                    Oid::from_u64(3),
                    tid,
                    b"chunk".to_vec(),
                ),
            ));
        }
        // ZEO 4 style errors, which the ZEO 6 client also understands.
        let z4 = [
            (
                "z4_poskey",
                ServerError::PosKey {
                    oid: Oid::from_u64(7),
                },
            ),
            ("z4_conflict", ServerError::Conflict(conflict)),
            ("z4_value_error", ServerError::ValueError("x".into())),
            (
                "z4_other",
                ServerError::Other {
                    class_name: "ZODB.POSException.StorageSystemError".into(),
                    args: vec![Value::Str("disk full".into())],
                },
            ),
        ];
        for (name, err) in z4 {
            let msg = z4_error_reply(Value::Int(40), &err, Encoding::Pickle3);
            cases.push((name, Encoding::Pickle3, msg));
        }
        cases
    }

    #[test]
    fn the_real_zeo6_client_accepts_what_we_send() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = venv_python(root);
        let cases = cases();
        let mut input = String::new();
        for (name, enc, msg) in &cases {
            let id = if *enc == Encoding::Msgpack {
                "M5"
            } else {
                "Z5"
            };
            let bytes = encode_message(*enc, msg).unwrap();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            input.push_str(&format!("{name} {id} {hex}\n"));
        }
        let mut child = Command::new(python)
            .arg(root.join("tests/protocol_support/zeo_client_check.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "client check failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ok: Vec<&str> = stdout.lines().filter(|l| l.starts_with("ok ")).collect();
        assert_eq!(ok.len(), cases.len(), "{stdout}");
    }
}
