//! The GLOBAL allowlist: what a client may name in a pickle (ZopeUndo
//! `Prefix` specifications, Python 2 `zodbpickle.binary`) decodes; any
//! other global, or an allowed one called oddly, is refused.

#[allow(dead_code, clippy::unwrap_used)]
#[path = "protocol_support/captures.rs"]
mod captures;

#[allow(clippy::unwrap_used)]
mod tests {
    use super::captures::unhex;
    use zeod::ids::Oid;
    use zeod::protocol::pickle;
    use zeod::protocol::{decode_message, Encoding, Error, Value};

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
}
