//! The pickle dialects of ZEO messages: decoding protocols 0-3 into
//! [`Value`] behind a GLOBAL allowlist, and encoding [`Value`] the way the
//! Python servers do (protocol 3, or protocol 1 with Python 2 conventions).
//!
//! We do not use `serde-pickle` (it does keep tuples apart from lists and
//! Python 2 strings as bytes): its decoder turns every global outside its
//! own fixed handful into an anonymous placeholder, so there is no module
//! and name to check against our allowlist or to report as forbidden. Its
//! encoder writes only protocols 2-3, never GLOBAL/REDUCE, and pickles bytes
//! for protocol 2 as `_codecs.encode(...)` calls, so it cannot produce the
//! protocol-1 replies (`U` strings, `I01\n` booleans) or the pickled
//! exceptions ZEO 4 clients need.

mod calls;
mod decode;
mod encode;
pub(crate) mod operands;
mod stack;

pub use decode::{decode, decode_with, Decoded, Limits};
pub use encode::{encode, encode_extension, encode_tuple, Dialect};

use super::{Result, Value};

/// Decodes the extension bytes ZODB stores in a transaction record (a
/// protocol-3 pickle written with memo opcodes) into a dict; empty bytes
/// are the empty dict.
pub fn decode_extension(data: &[u8]) -> Result<Value> {
    if data.is_empty() {
        return Ok(Value::Dict(Vec::new()));
    }
    decode(data)
}

/// The globals a message may name: `(module, name)`. ZEO's own servers admit
/// the modules `ZopeUndo.Prefix`, `zodbpickle`, `builtins`, `copy_reg` and
/// `__builtin__`; of those we take only what the clients actually send
/// (undo `Prefix` specifications and Python 2 `zodbpickle.binary` oids, the
/// latter possibly through `copy_reg._reconstructor`), plus `dict`, which
/// a transaction extension that is a dict subclass reduces to
/// (`dict, (items,)`): it is built as a plain dict, never called.
pub const ALLOWED_GLOBALS: &[(&str, &str)] = &[
    ("ZopeUndo.Prefix", "Prefix"),
    ("zodbpickle", "binary"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("__builtin__", "str"),
    ("builtins", "object"),
    ("builtins", "bytes"),
    ("builtins", "str"),
    ("builtins", "dict"),
    ("__builtin__", "dict"),
];

pub(crate) fn is_allowed(module: &str, name: &str) -> bool {
    ALLOWED_GLOBALS
        .iter()
        .any(|&(m, n)| m == module && n == name)
}

/// Pickle opcodes of protocols 0-3 (names as in Python's `pickletools`).
pub(crate) mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
}
