//! The ZEO wire protocol: frames, the pickle and msgpack dialects, and the
//! `(msgid, flags, method, args)` envelope. Pure: bytes in, values out; no I/O.
//!
//! CONTRACT (written before the implementation; the protocol owner may add
//! to it but must not change these items without updating the server).
//!
//! - [`frame`]: u32 big-endian length-prefixed frames, `FrameCodec`.
//! - [`pickle`]: the pickle dialects (decode protocols 0-3, encode 1 and 3).
//! - [`msgpack`]: the `M5` dialect.
//! - [`handshake`]: protocol ids, the greeting, the client's choice.
//! - [`message`]: the `(msgid, flags, name, args)` envelope, replies and
//!   one-way calls; [`exception`]: error replies in ZEO 5 and ZEO 4 shape.

pub mod exception;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod msgpack;
pub mod pickle;

pub use exception::{ConflictDetail, ServerError};
pub use frame::{FrameCodec, DEFAULT_MAX_FRAME};
pub use handshake::{greeting_frame, Generation, Handshake};
pub use message::{decode_message, encode_message, error_reply, reply, z4_error_reply};

use crate::ids::{Oid, Tid};

/// Everything that can go wrong turning bytes into values and back.
/// Any of these on a client's frame means "close the connection".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u64, max: u64 },
    #[error("pickle ends before its STOP opcode")]
    Truncated,
    #[error("unsupported pickle opcode 0x{opcode:02x} at offset {offset}")]
    UnsupportedOpcode { opcode: u8, offset: usize },
    #[error(
        "pickle opcode 0x{opcode:02x} at offset {offset} needs more values than the stack holds"
    )]
    StackUnderflow { opcode: u8, offset: usize },
    #[error("pickle opcode 0x{opcode:02x} at offset {offset} has no matching MARK")]
    MissingMark { opcode: u8, offset: usize },
    #[error("pickle opcode 0x{opcode:02x} at offset {offset} got an operand of the wrong type")]
    WrongType { opcode: u8, offset: usize },
    #[error("pickle memo key {key} was never stored")]
    MissingMemo { key: u32 },
    #[error("malformed pickle argument at offset {offset}")]
    BadArgument { offset: usize },
    #[error("integer does not fit in 128 bits")]
    IntegerOverflow,
    #[error("pickle has {extra} bytes after STOP")]
    TrailingBytes { extra: usize },
    #[error("pickle STOP leaves {depth} values on the stack instead of one")]
    UnbalancedStop { depth: usize },
    #[error("global {module}.{name} is not allowed")]
    ForbiddenGlobal { module: String, name: String },
    #[error("global {module}.{name} cannot be called with these arguments")]
    UnsupportedCall { module: String, name: String },
    #[error("persistent references are not allowed in protocol messages")]
    PersistentId,
    #[error("values nest deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("memo copies exceed the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("malformed msgpack")]
    MalformedMsgpack(#[source] rmpv::decode::Error),
    #[error("msgpack str is not UTF-8")]
    MsgpackText,
    #[error("msgpack ext type {code} is not part of the protocol")]
    MsgpackExt { code: i8 },
    #[error("message is not a (msgid, flags, name, args) tuple")]
    NotAnEnvelope,
    #[error("message method name is not UTF-8 text")]
    MethodName,
    #[error("value cannot be encoded as {encoding:?}: {what}")]
    Unencodable {
        encoding: Encoding,
        what: &'static str,
    },
    #[error("I/O error on a frame stream")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A decoded protocol value: the subset of Python objects ZEO messages use.
/// Data-record pickles inside messages stay opaque `Bytes`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    /// Python ints, including transaction ids (`id(txn)`, up to 2**64).
    Int(i128),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered.
    Dict(Vec<(Value, Value)>),
    /// A class reference (`GLOBAL module name`): only allowlisted names are
    /// ever decoded; the encoder emits it for ZEO 4 error replies.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)` (REDUCE / NEWOBJ), optionally with BUILD state:
    /// decoded only for allowlisted globals (e.g. `ZopeUndo.Prefix`),
    /// encoded for ZEO 4 exception instances (`ZODB.POSException._recon`).
    Object {
        class: Box<Value>,
        args: Box<Value>,
        state: Option<Box<Value>>,
    },
}

/// How a connection encodes its messages, chosen by the client's handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Pickle protocol 3 (every Python 3 client, ZEO 5.2+ on Python 2).
    Pickle3,
    /// Pickle protocol 1 with Python 2 conventions (ZEO 4 on Python 2).
    Pickle1,
    /// msgpack with bin types (`M5`).
    Msgpack,
}

/// One RPC message, in either direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Opaque: echoed verbatim in the reply (ZEO 5 `loadBefore` uses a tuple).
    pub msgid: Value,
    /// Calls: truthy = one-way (async). Replies: 0 = result, 2 = Z5 error.
    pub flags: Value,
    pub method: String,
    /// Calls: the positional arguments (a tuple). Replies: the bare value.
    pub args: Value,
}

impl Value {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_oid(&self) -> Option<Oid> {
        self.as_bytes().and_then(Oid::from_slice)
    }
    pub fn as_tid(&self) -> Option<Tid> {
        self.as_bytes().and_then(Tid::from_slice)
    }
    pub fn oid(oid: Oid) -> Value {
        Value::Bytes(oid.0.to_vec())
    }
    pub fn tid(tid: Tid) -> Value {
        Value::Bytes(tid.0.to_vec())
    }
}
