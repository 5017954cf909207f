//! ZODB data records as values: a record is two pickles back to back — the
//! class metadata, then the object's state — sharing ONE memo (the state
//! pickle may `BINGET` what the meta pickle `BINPUT`). This module reads
//! them into a [`Value`] tree without executing anything: `GLOBAL`s stay
//! `(module, name)` pairs, `REDUCE`/`NEWOBJ`/`BUILD` stay recorded
//! operations, persistent ids stay opaque [`PersistentRef`]s. It writes a
//! record back the way ZODB's `ConflictResolution` re-pickles one
//! (protocol 3, one pickler for both pickles; protocol 2 with native
//! strings for records Python 2 wrote), and scans records for
//! strong references the way `ZODB.serialize.referencesf` does (pack GC).
//!
//! ```text
//! record:  80 0x  <meta pickle>  2e  80 0x  <state pickle>  2e
//!          memo:  q 00 ...             h 00 (BINGET 0 = the class) ...
//! ```
//!
//! Python 2 strings (`STRING`, `BINSTRING`, `SHORT_BINSTRING`) are decoded
//! as py3 ZODB does: ASCII, strictly; anything else is an error, like the
//! `UnicodeDecodeError` ZODB raises (spec §11, fixture g).

use std::cell::RefCell;
use std::rc::Rc;

use crate::ids::Oid;

mod build;
mod literal;
mod read;
mod refs;
mod write;

pub use read::{parse, parse_pickles, Reader};
pub use refs::{references, references_into, RefsError};
pub use write::{write, write_py2, Writer};

/// A Python object as a pickle describes it. Containers are shared
/// (`Rc`) because the memo can hand out the same object twice, and mutable
/// ones (`RefCell`) because `APPENDS`/`SETITEMS`/`BUILD` fill them after
/// they were memoized.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    /// Python ints up to 128 bits; wider `LONG`s are rejected.
    Int(i128),
    Float(f64),
    Bytes(Rc<[u8]>),
    Str(Rc<str>),
    Tuple(Rc<[Value]>),
    List(Rc<RefCell<Vec<Value>>>),
    /// Items in insertion order, as the pickle set them.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A class or function named by `GLOBAL`/`INST`; never imported.
    Global(Rc<Global>),
    /// A persistent id (`BINPERSID`/`PERSID`): a reference to another object.
    Ref(Rc<PersistentRef>),
    /// Anything built by calling something (`REDUCE`, `NEWOBJ`, `INST`,
    /// `OBJ`) and its later `BUILD`/`APPENDS`/`SETITEMS`, kept verbatim.
    Object(Rc<RefCell<Object>>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Global {
    pub module: String,
    pub name: String,
}

/// A persistent id as ZODB writes it (spec §11). `pid` is kept verbatim so
/// that re-pickling reproduces it; the accessors classify it.
#[derive(Debug, Clone)]
pub struct PersistentRef {
    pub pid: Value,
}

/// How an [`Object`] was created.
#[derive(Debug, Clone)]
pub enum Ctor {
    /// `callable args REDUCE`
    Reduce { callable: Value, args: Value },
    /// `cls args NEWOBJ`
    NewObj { cls: Value, args: Value },
    /// `MARK args... INST module name`
    Inst {
        global: Rc<Global>,
        args: Vec<Value>,
    },
    /// `MARK cls args... OBJ`
    Obj { cls: Value, args: Vec<Value> },
}

/// What happened to an object after its creation, in order.
#[derive(Debug, Clone)]
pub enum Post {
    Build(Value),
    Append(Vec<Value>),
    SetItems(Vec<(Value, Value)>),
}

#[derive(Debug, Clone)]
pub struct Object {
    pub ctor: Ctor,
    pub post: Vec<Post>,
}

/// A data record: the class metadata and the state.
#[derive(Debug, Clone)]
pub struct Record {
    pub meta: Value,
    pub state: Value,
}

/// Why a pickle could not be read or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("pickle ends before STOP at byte {0}")]
    Truncated(usize),
    #[error("unknown pickle opcode {opcode:#04x} at byte {pos}")]
    UnknownOpcode { opcode: u8, pos: usize },
    #[error("pickle opcode {opcode:#04x} at byte {pos} is not supported in data records")]
    UnsupportedOpcode { opcode: u8, pos: usize },
    #[error("pickle stack underflow at byte {0}")]
    StackUnderflow(usize),
    #[error("pickle MARK missing at byte {0}")]
    NoMark(usize),
    #[error("memo key {0} has never been stored into")]
    MemoMissing(u32),
    #[error("a Python 2 string at byte {0} is not ASCII")]
    NonAsciiString(usize),
    #[error("invalid UTF-8 text at byte {0}")]
    BadUtf8(usize),
    #[error("malformed literal at byte {0}")]
    BadLiteral(usize),
    #[error("integer at byte {0} is wider than 128 bits")]
    IntTooLarge(usize),
    #[error("opcode at byte {0} applied to an object of the wrong kind")]
    WrongKind(usize),
    #[error("a data record holds two pickles, found {0}")]
    PickleCount(usize),
    #[error("pickle nests deeper than {0} levels")]
    TooDeep(usize),
}

/// Deepest nesting the reader accepts and the writer and comparisons
/// follow (they recurse). Real states nest a handful of levels.
pub const MAX_DEPTH: usize = 256;

impl PersistentRef {
    /// The referenced oid, for every form ZODB writes: bare oid, `(oid,
    /// class)`, and the list forms (`['w', (oid,)]`, `['n', (db, oid)]`,
    /// `['m', (db, oid, class)]`, legacy `[oid]`). Text oids (py2 pickles)
    /// are ASCII by construction.
    pub fn oid(&self) -> Option<Oid> {
        match &self.pid {
            Value::List(items) => {
                let items = items.borrow();
                match items.as_slice() {
                    [Value::Str(kind), Value::Tuple(args)] => match (&**kind, &args[..]) {
                        ("w", [oid] | [oid, _]) => oid_of(oid),
                        ("n", [_, oid]) | ("m", [_, oid, _]) => oid_of(oid),
                        _ => None,
                    },
                    [oid] => oid_of(oid),
                    _ => None,
                }
            }
            Value::Tuple(items) => items.first().and_then(oid_of),
            other => oid_of(other),
        }
    }

    /// A strong reference within this database: what pack GC follows.
    pub fn is_strong(&self) -> bool {
        !matches!(self.pid, Value::List(_))
    }

    /// The database name of a cross-database reference.
    pub fn database_name(&self) -> Option<Value> {
        let Value::List(items) = &self.pid else {
            return None;
        };
        let items = items.borrow();
        match items.as_slice() {
            [Value::Str(kind), Value::Tuple(args)] => match (&**kind, &args[..]) {
                ("w", [_, db]) | ("n", [db, _]) | ("m", [db, _, _]) => Some(db.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn is_weak(&self) -> bool {
        let Value::List(items) = &self.pid else {
            return false;
        };
        let items = items.borrow();
        match items.as_slice() {
            [Value::Str(kind), _] => &**kind == "w",
            [_] => true,
            _ => false,
        }
    }
}

fn oid_of(v: &Value) -> Option<Oid> {
    match v {
        Value::Bytes(b) => Oid::from_slice(b),
        Value::Str(s) => Oid::from_slice(s.as_bytes()),
        _ => None,
    }
}

impl Value {
    pub fn tuple(items: Vec<Value>) -> Value {
        Value::Tuple(items.into())
    }

    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(t) => Some(t),
            _ => None,
        }
    }

    /// The class named by a record's meta pickle: `class`, `(class,
    /// newargs)` or `((module, name), newargs)` (spec §11), with its
    /// `newargs` (`None` when absent).
    pub fn meta_class(&self) -> Option<(Global, Value)> {
        match self {
            Value::Global(g) => Some(((**g).clone(), Value::None)),
            Value::Tuple(t) => match &t[..] {
                [Value::Global(g), args] => Some(((**g).clone(), args.clone())),
                [Value::Tuple(mn), args] => match &mn[..] {
                    [Value::Str(m), Value::Str(n)] => Some((
                        Global {
                            module: m.to_string(),
                            name: n.to_string(),
                        },
                        args.clone(),
                    )),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        }
    }
}

/// Frees a value tree without recursion: a hostile pickle can nest tuples a
/// million deep in a megabyte, and the default recursive `Drop` would
/// overflow the stack. Shared or cyclic parts are left to their other owners.
pub(crate) fn dismantle(root: Value) {
    let mut stack = vec![root];
    while let Some(v) = stack.pop() {
        match v {
            Value::Tuple(mut t) => {
                if let Some(items) = Rc::get_mut(&mut t) {
                    stack.extend(items.iter_mut().map(|i| std::mem::replace(i, Value::None)));
                }
            }
            Value::List(mut l) => {
                if let Some(items) = Rc::get_mut(&mut l) {
                    stack.append(items.get_mut());
                }
            }
            Value::Dict(mut d) => {
                if let Some(items) = Rc::get_mut(&mut d) {
                    for (k, v) in items.get_mut().drain(..) {
                        stack.push(k);
                        stack.push(v);
                    }
                }
            }
            Value::Ref(mut r) => {
                if let Some(r) = Rc::get_mut(&mut r) {
                    stack.push(std::mem::replace(&mut r.pid, Value::None));
                }
            }
            Value::Object(mut o) => {
                if let Some(o) = Rc::get_mut(&mut o) {
                    let o = o.get_mut();
                    match &mut o.ctor {
                        Ctor::Reduce {
                            callable: a,
                            args: b,
                        }
                        | Ctor::NewObj { cls: a, args: b } => {
                            stack.push(std::mem::replace(a, Value::None));
                            stack.push(std::mem::replace(b, Value::None));
                        }
                        Ctor::Inst { args, .. } => stack.append(args),
                        Ctor::Obj { cls, args } => {
                            stack.push(std::mem::replace(cls, Value::None));
                            stack.append(args);
                        }
                    }
                    for p in o.post.drain(..) {
                        match p {
                            Post::Build(v) => stack.push(v),
                            Post::Append(vs) => stack.extend(vs),
                            Post::SetItems(kvs) => {
                                for (k, v) in kvs {
                                    stack.push(k);
                                    stack.push(v);
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether `v` nests deeper than `limit` (shared parts are measured once,
/// cycles count as leaves: the writer emits them as memo references).
pub(crate) fn nests_deeper_than(v: &Value, limit: usize) -> bool {
    fn depth(
        v: &Value,
        level: usize,
        limit: usize,
        seen: &mut std::collections::HashMap<usize, usize>,
    ) -> usize {
        if level > limit {
            return level;
        }
        let key = match v {
            Value::Tuple(t) => t.as_ptr() as usize,
            Value::List(l) => Rc::as_ptr(l) as usize,
            Value::Dict(d) => Rc::as_ptr(d) as usize,
            Value::Ref(r) => Rc::as_ptr(r) as usize,
            Value::Object(o) => Rc::as_ptr(o) as usize,
            _ => return 1,
        };
        if let Some(&d) = seen.get(&key) {
            return d;
        }
        seen.insert(key, 1);
        let mut deepest = 0;
        let mut visit = |c: &Value| deepest = deepest.max(depth(c, level + 1, limit, seen));
        match v {
            Value::Tuple(t) => t.iter().for_each(&mut visit),
            Value::List(l) => l.borrow().iter().for_each(&mut visit),
            Value::Dict(d) => d.borrow().iter().for_each(|(k, v)| {
                visit(k);
                visit(v);
            }),
            Value::Ref(r) => visit(&r.pid),
            Value::Object(o) => {
                let o = o.borrow();
                match &o.ctor {
                    Ctor::Reduce {
                        callable: a,
                        args: b,
                    }
                    | Ctor::NewObj { cls: a, args: b } => {
                        visit(a);
                        visit(b);
                    }
                    Ctor::Inst { args, .. } => args.iter().for_each(&mut visit),
                    Ctor::Obj { cls, args } => {
                        visit(cls);
                        args.iter().for_each(&mut visit);
                    }
                }
                for p in &o.post {
                    match p {
                        Post::Build(v) => visit(v),
                        Post::Append(vs) => vs.iter().for_each(&mut visit),
                        Post::SetItems(kvs) => kvs.iter().for_each(|(k, v)| {
                            visit(k);
                            visit(v);
                        }),
                    }
                }
            }
            _ => {}
        }
        let d = deepest + 1;
        seen.insert(key, d);
        d
    }
    depth(v, 0, limit, &mut std::collections::HashMap::new()) > limit
}
