//! What the building opcodes do to values: the containers and objects
//! `APPENDS`/`SETITEMS`/`REDUCE` make or fill, and the key under which
//! equal persistent ids are interned.

use std::cell::RefCell;
use std::rc::Rc;

use super::{dismantle, Ctor, Object, Post, RecordError, Value};

type Result<T> = std::result::Result<T, RecordError>;

/// The factory's key: `tuple(pid)` in ZODB, i.e. equal contents of the same
/// types. Only plain data is interned; anything else stays distinct.
pub(super) fn intern_key(v: &Value, depth: usize) -> Option<String> {
    if depth > 8 {
        return None;
    }
    Some(match v {
        Value::None => "N".into(),
        Value::Bool(b) => format!("b{b}"),
        Value::Int(i) => format!("i{i}"),
        Value::Bytes(b) => format!("y{b:?}"),
        Value::Str(s) => format!("s{s:?}"),
        Value::Global(g) => format!("g{:?}.{:?}", g.module, g.name),
        Value::Tuple(t) => seq_key('(', t, depth)?,
        // A list is only hashable as the outer pid (`tuple(pid)`).
        Value::List(l) if depth == 0 => seq_key('[', &l.borrow(), depth)?,
        _ => return None,
    })
}

fn seq_key(open: char, items: &[Value], depth: usize) -> Option<String> {
    let mut key = String::from(open);
    for item in items {
        key.push_str(&intern_key(item, depth + 1)?);
        key.push(',');
    }
    Some(key)
}

pub(super) fn object(ctor: Ctor) -> Value {
    Value::Object(Rc::new(RefCell::new(Object {
        ctor,
        post: Vec::new(),
    })))
}

/// `APPEND`/`APPENDS` onto `target` (the value below the items).
pub(super) fn append(target: Option<&Value>, items: Vec<Value>, at: usize) -> Result<()> {
    match target {
        Some(Value::List(l)) => l.borrow_mut().extend(items),
        Some(Value::Object(o)) => o.borrow_mut().post.push(Post::Append(items)),
        _ => {
            items.into_iter().for_each(dismantle);
            return Err(RecordError::WrongKind(at));
        }
    }
    Ok(())
}

/// `SETITEM`/`SETITEMS` onto `target` (the value below the items).
pub(super) fn set_items(
    target: Option<&Value>,
    items: Vec<(Value, Value)>,
    at: usize,
) -> Result<()> {
    match target {
        Some(Value::Dict(d)) => d.borrow_mut().extend(items),
        Some(Value::Object(o)) => o.borrow_mut().post.push(Post::SetItems(items)),
        _ => {
            for (k, v) in items {
                dismantle(k);
                dismantle(v);
            }
            return Err(RecordError::WrongKind(at));
        }
    }
    Ok(())
}

pub(super) fn pairs(items: Vec<Value>, at: usize) -> Result<Vec<(Value, Value)>> {
    if items.len() % 2 != 0 {
        items.into_iter().for_each(dismantle);
        return Err(RecordError::StackUnderflow(at));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}
