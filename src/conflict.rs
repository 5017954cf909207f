//! Server-side conflict resolution: what ZODB's `tryToResolveConflict`
//! does when two transactions wrote the same object, for the classes whose
//! `_p_resolveConflict` is known here — BTrees buckets and sets of every
//! family, BTrees and TreeSets holding one inline bucket, and
//! `BTrees.Length.Length` — computed natively on the pickled states
//! without running Python. Every other class, and every state this code
//! cannot decide exactly as Python would, stays a conflict.
//!
//! ```text
//! new record ──meta──▶ class ──classes::lookup──▶ Kind ─┐
//! old, committed, new states (one reference table) ─────┴▶ resolve ──▶ write(meta, state)
//! ```

use crate::ids::Oid;
use crate::record::{self, Reader, RecordError, Value};

mod bucket;
pub mod classes;
mod compare;

pub use classes::{lookup, Family, Kind, Slot, FAMILIES};

/// Why a conflict stays a `ConflictError`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unresolved {
    #[error("unreadable record: {0}")]
    Record(#[from] RecordError),
    #[error("{0} has no server-side conflict resolution")]
    NotResolvable(String),
    #[error("unexpected state: {0}")]
    BadState(&'static str),
    /// `BTreesConflictError` with this reason code (spec §12; BTrees'
    /// `Interfaces.py` explains each).
    #[error("BTrees conflict, reason {0}")]
    BTrees(u8),
    /// Python would raise comparing these keys or values.
    #[error("keys or values are not comparable")]
    Incomparable,
    #[error("Length arithmetic overflows")]
    Overflow,
}

/// Resolves a write conflict on `oid`: `old` is the revision the writer
/// started from, `committed` the current one, `new` what it wants to
/// store. Returns the record to store instead of `new`.
pub fn try_resolve(
    oid: Oid,
    old: &[u8],
    committed: &[u8],
    new: &[u8],
) -> Result<Vec<u8>, Unresolved> {
    let result = resolve_records(old, committed, new);
    match &result {
        Ok(_) => tracing::debug!(%oid, "conflict resolved"),
        Err(reason) => tracing::debug!(%oid, %reason, "conflict not resolved"),
    }
    result
}

fn resolve_records(old: &[u8], committed: &[u8], new: &[u8]) -> Result<Vec<u8>, Unresolved> {
    // One reader: equal persistent ids in the three records become one
    // reference, as with ZODB's PersistentReferenceFactory. The states
    // load in ZODB's order: new, old, committed.
    let mut reader = Reader::interning();
    let (meta, new_state) = record::parse_pickles(&mut reader, new)?;
    let kind = class_kind(&meta)?;
    let (_, old_state) = record::parse_pickles(&mut reader, old)?;
    let (_, committed_state) = record::parse_pickles(&mut reader, committed)?;
    let state = resolve_state(kind, &old_state, &committed_state, &new_state)?;
    // A Python 2 writer (ZEO 4 / ZODB3 clients) must be able to load the
    // result: write it back in its own dialect.
    if new.starts_with(&[0x80, 3]) {
        Ok(record::write(&meta, &state)?)
    } else {
        Ok(record::write_py2(&meta, &state)?)
    }
}

fn class_kind(meta: &Value) -> Result<Kind, Unresolved> {
    let (class, newargs) = meta
        .meta_class()
        .ok_or(Unresolved::BadState("class metadata"))?;
    let no_args = match &newargs {
        Value::None => true,
        Value::Tuple(t) => t.is_empty(),
        _ => false,
    };
    match lookup(&class) {
        Some(kind) if no_args => Ok(kind),
        _ => Err(Unresolved::NotResolvable(format!(
            "{}.{}",
            class.module, class.name
        ))),
    }
}

/// `_p_resolveConflict(old, committed, new)` of the class.
pub fn resolve_state(
    kind: Kind,
    old: &Value,
    committed: &Value,
    new: &Value,
) -> Result<Value, Unresolved> {
    match kind {
        Kind::Length => length(old, committed, new),
        Kind::Bucket(f) | Kind::Set(f) => {
            let mapping = matches!(kind, Kind::Bucket(_));
            let b = |s| bucket::load(s, f, mapping);
            bucket::resolve(&b(old)?, &b(committed)?, &b(new)?, f, mapping)
        }
        Kind::BTree(f) | Kind::TreeSet(f) => {
            let mapping = matches!(kind, Kind::BTree(_));
            let (s0, s1, s2) = (
                inline_bucket(old)?,
                inline_bucket(committed)?,
                inline_bucket(new)?,
            );
            let b = |s| bucket::load(s, f, mapping);
            let merged = bucket::resolve(&b(&s0)?, &b(&s1)?, &b(&s2)?, f, mapping)?;
            Ok(Value::tuple(vec![Value::tuple(vec![merged])]))
        }
    }
}

/// BTrees' `get_bucket_state`: `None` (empty tree) or `((bucket_state,),)`;
/// a tree with children (a 2-tuple) is reason 11.
fn inline_bucket(state: &Value) -> Result<Value, Unresolved> {
    let t = match state {
        Value::None => return Ok(Value::None),
        Value::Tuple(t) => t,
        _ => return Err(Unresolved::BadState("a BTree state is a tuple or None")),
    };
    if t.len() == 2 {
        return Err(Unresolved::BTrees(11));
    }
    let [Value::Tuple(inner)] = &t[..] else {
        return Err(Unresolved::BadState("expected 1- or 2-tuple for state"));
    };
    match &inner[..] {
        [bucket @ Value::Tuple(_)] => Ok(bucket.clone()),
        _ => Err(Unresolved::BadState(
            "expected 1-tuple containing bucket state",
        )),
    }
}

/// `Length._p_resolveConflict`: `committed + new - old`, with Python's
/// int/float arithmetic.
fn length(old: &Value, committed: &Value, new: &Value) -> Result<Value, Unresolved> {
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(i128::from(*b)),
        _ => None,
    };
    if let (Some(o), Some(c), Some(n)) = (int(old), int(committed), int(new)) {
        return c
            .checked_add(n)
            .and_then(|s| s.checked_sub(o))
            .map(Value::Int)
            .ok_or(Unresolved::Overflow);
    }
    let float = |v: &Value| match v {
        Value::Float(f) => Some(*f),
        other => int(other).map(|i| i as f64),
    };
    match (float(old), float(committed), float(new)) {
        (Some(o), Some(c), Some(n)) => Ok(Value::Float(add_sub(committed, c, new, n) - o)),
        _ => Err(Unresolved::BadState("a Length holds a number")),
    }
}

/// `committed + new` as Python computes it: int + int stays exact.
fn add_sub(a: &Value, af: f64, b: &Value, bf: f64) -> f64 {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.checked_add(*y).map_or(af + bf, |s| s as f64),
        _ => af + bf,
    }
}
