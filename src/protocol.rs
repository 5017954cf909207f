//! The ZEO wire protocol: frames, the pickle and msgpack dialects, and the
//! `(msgid, flags, method, args)` envelope. Pure: bytes in, values out; no I/O.
//!
//! CONTRACT (written before the implementation; the protocol owner may add
//! to it but must not change these items without updating the server).

use crate::ids::{Oid, Tid};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
