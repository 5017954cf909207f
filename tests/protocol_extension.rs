//! Transaction extension bytes as ZODB stores them in `Data.fs`: compared
//! with what ZODB 6.4 itself writes (`protocol_support/extensions.txt`,
//! from `make_extensions.py`) and found in a Python-written fixture.

#[allow(dead_code, clippy::unwrap_used)]
#[path = "protocol_support/captures.rs"]
mod captures;

#[allow(clippy::unwrap_used)]
mod tests {
    use super::captures::{spec_dir, unhex};

    use zeod::protocol::pickle;
    use zeod::protocol::Value;

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
}
