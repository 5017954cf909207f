//! The three-way merge of bucket and set states, rule for rule as BTrees'
//! `_bucket__p_resolveConflict` and `bucket_merge` decide it — the same
//! walk, the same order of checks, the same reason codes (spec §12).

use std::cmp::Ordering;

use super::classes::{Family, Slot};
use super::compare::{compare, compare_c_float};
use super::Unresolved;
use crate::record::Value;

/// A bucket (or set) after `__setstate__`: items converted to the
/// family's C types, and the `next` bucket reference if the state had one.
#[derive(Debug, Default)]
pub struct Bucket {
    pub keys: Vec<Value>,
    /// Empty for sets.
    pub values: Vec<Value>,
    pub next: Option<Value>,
}

/// `__setstate__` of a bucket (`mapping`) or set; `None` is empty.
pub fn load(state: &Value, family: Family, mapping: bool) -> Result<Bucket, Unresolved> {
    let mut b = Bucket::default();
    let t = match state {
        Value::None => return Ok(b),
        Value::Tuple(t) if (1..=2).contains(&t.len()) => t,
        _ => return Err(Unresolved::BadState("a bucket state is a 1- or 2-tuple")),
    };
    let Value::Tuple(items) = &t[0] else {
        return Err(Unresolved::BadState(
            "tuple required for first state element",
        ));
    };
    if mapping {
        for pair in items.chunks_exact(2) {
            b.keys.push(convert(&pair[0], family.key)?);
            b.values.push(convert(&pair[1], family.value)?);
        }
    } else {
        for k in items.iter() {
            b.keys.push(convert(k, family.key)?);
        }
    }
    b.next = t.get(1).cloned();
    Ok(b)
}

/// `COPY_KEY_FROM_ARG`/`COPY_VALUE_FROM_ARG`: what the C slot accepts, as
/// the Python object it turns back into.
fn convert(v: &Value, slot: Slot) -> Result<Value, Unresolved> {
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(i128::from(*b)),
        _ => None,
    };
    let range = |lo: i128, hi: i128| match int(v) {
        Some(i) if (lo..=hi).contains(&i) => Ok(Value::Int(i)),
        _ => Err(Unresolved::BadState(
            "key or value out of the family's range",
        )),
    };
    match slot {
        Slot::Object => Ok(v.clone()),
        Slot::Int32 => range(i32::MIN.into(), i32::MAX.into()),
        Slot::UInt32 => range(0, u32::MAX.into()),
        Slot::Int64 => range(i64::MIN.into(), i64::MAX.into()),
        Slot::UInt64 => range(0, u64::MAX.into()),
        Slot::Float32 => match v {
            Value::Float(f) => Ok(Value::Float(f64::from(*f as f32))),
            _ => match int(v) {
                Some(i) => Ok(Value::Float(f64::from(i as f32))),
                None => Err(Unresolved::BadState("float value expected")),
            },
        },
    }
}

/// `_bucket__p_resolveConflict` on loaded states: the `next` pointers must
/// agree (reason 0), then `bucket_merge`. Returns the merged state.
pub fn resolve(
    old: &Bucket,
    committed: &Bucket,
    new: &Bucket,
    family: Family,
    mapping: bool,
) -> Result<Value, Unresolved> {
    if !same_next(&old.next, &committed.next) || !same_next(&old.next, &new.next) {
        return Err(Unresolved::BTrees(0));
    }
    let mut m = Merge {
        family,
        mapping,
        pending: false,
        keys: Vec::new(),
        values: Vec::new(),
    };
    m.run(old, committed, new)?;
    let mut items = Vec::with_capacity(m.keys.len() * 2);
    if mapping {
        for (k, v) in m.keys.into_iter().zip(m.values) {
            items.push(k);
            items.push(v);
        }
    } else {
        items = m.keys;
    }
    let mut state = vec![Value::tuple(items)];
    if let Some(next) = &old.next {
        state.push(next.clone());
    }
    Ok(Value::tuple(state))
}

/// Python compares the `next` objects by identity; ZODB's reference
/// factory hands out one object per distinct persistent id, so equal ids
/// (same spelling) are the same object.
fn same_next(a: &Option<Value>, b: &Option<Value>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Value::Ref(x)), Some(Value::Ref(y))) => std::rc::Rc::ptr_eq(x, y),
        (Some(Value::None), Some(Value::None)) => true,
        _ => false,
    }
}

/// A position in one of the three inputs; `pos()` is the C iterator's
/// `position` (1-based index of the current item, -1 when exhausted).
struct Cursor<'a> {
    b: &'a Bucket,
    i: usize,
}

impl Cursor<'_> {
    fn live(&self) -> bool {
        self.i < self.b.keys.len()
    }
    fn key(&self) -> &Value {
        &self.b.keys[self.i]
    }
    fn value(&self) -> &Value {
        &self.b.values[self.i]
    }
    fn at_first(&self) -> bool {
        self.i == 0
    }
}

struct Merge {
    family: Family,
    mapping: bool,
    /// Python has an exception set from a value comparison that the C
    /// code did not check (`TEST_VALUE` ignores errors); the next object
    /// key comparison, or the end of the merge, turns it into a failure.
    pending: bool,
    keys: Vec<Value>,
    values: Vec<Value>,
}

impl Merge {
    fn key_cmp(&mut self, a: &Value, b: &Value) -> Result<Ordering, Unresolved> {
        if self.family.key != Slot::Object {
            return Ok(int_cmp(a, b));
        }
        let (ord, raised) = compare(a, b, self.pending);
        if raised || self.pending {
            return Err(Unresolved::Incomparable);
        }
        Ok(ord)
    }

    /// `set || TEST_VALUE(a, b) == 0`.
    fn same_value(&mut self, a: &Cursor<'_>, b: &Cursor<'_>) -> bool {
        if !self.mapping {
            return true;
        }
        let (x, y) = (a.value(), b.value());
        match self.family.value {
            Slot::Object => {
                let (ord, raised) = compare(x, y, self.pending);
                self.pending |= raised;
                ord == Ordering::Equal
            }
            Slot::Float32 => match (x, y) {
                (Value::Float(x), Value::Float(y)) => compare_c_float(*x, *y) == Ordering::Equal,
                _ => false,
            },
            _ => int_cmp(x, y) == Ordering::Equal,
        }
    }

    fn output(&mut self, c: &Cursor<'_>) {
        self.keys.push(c.key().clone());
        if self.mapping {
            self.values.push(c.value().clone());
        }
    }

    fn run(&mut self, s1: &Bucket, s2: &Bucket, s3: &Bucket) -> Result<(), Unresolved> {
        use Ordering::{Equal, Greater, Less};
        let fail = |reason| Err(Unresolved::BTrees(reason));
        if s2.keys.is_empty() || s3.keys.is_empty() {
            return fail(12);
        }
        let mut i1 = Cursor { b: s1, i: 0 };
        let mut i2 = Cursor { b: s2, i: 0 };
        let mut i3 = Cursor { b: s3, i: 0 };

        while i1.live() && i2.live() && i3.live() {
            let cmp12 = self.key_cmp(i1.key(), i2.key())?;
            let cmp13 = self.key_cmp(i1.key(), i3.key())?;
            if cmp12 == Equal {
                if cmp13 == Equal {
                    if self.same_value(&i1, &i2) {
                        self.output(&i3);
                    } else if self.same_value(&i1, &i3) {
                        self.output(&i2);
                    } else {
                        return fail(1);
                    }
                    i1.i += 1;
                    i2.i += 1;
                    i3.i += 1;
                } else if cmp13 == Greater {
                    self.output(&i3);
                    i3.i += 1;
                } else if self.same_value(&i1, &i2) {
                    // Deleted in s3; removing a bucket's first key changes
                    // its parent, which conflict resolution cannot do.
                    if i3.at_first() {
                        return fail(13);
                    }
                    i1.i += 1;
                    i2.i += 1;
                } else {
                    return fail(2);
                }
            } else if cmp13 == Equal {
                if cmp12 == Greater {
                    self.output(&i2);
                    i2.i += 1;
                } else if self.same_value(&i1, &i3) {
                    if i2.at_first() {
                        return fail(13);
                    }
                    i1.i += 1;
                    i3.i += 1;
                } else {
                    return fail(3);
                }
            } else {
                let cmp23 = self.key_cmp(i2.key(), i3.key())?;
                if cmp23 == Equal {
                    return fail(4);
                }
                if cmp12 == Greater {
                    if cmp23 == Greater {
                        self.output(&i3);
                        i3.i += 1;
                    } else {
                        self.output(&i2);
                        i2.i += 1;
                    }
                } else if cmp13 == Greater {
                    self.output(&i3);
                    i3.i += 1;
                } else {
                    return fail(5);
                }
            }
        }

        while i2.live() && i3.live() {
            match self.key_cmp(i2.key(), i3.key())? {
                Equal => return fail(6),
                Greater => {
                    self.output(&i3);
                    i3.i += 1;
                }
                Less => {
                    self.output(&i2);
                    i2.i += 1;
                }
            }
        }

        while i1.live() && i2.live() {
            let cmp12 = self.key_cmp(i1.key(), i2.key())?;
            if cmp12 == Greater {
                self.output(&i2);
                i2.i += 1;
            } else if cmp12 == Equal && self.same_value(&i1, &i2) {
                i1.i += 1;
                i2.i += 1;
            } else {
                return fail(7);
            }
        }

        while i1.live() && i3.live() {
            let cmp13 = self.key_cmp(i1.key(), i3.key())?;
            if cmp13 == Greater {
                self.output(&i3);
                i3.i += 1;
            } else if cmp13 == Equal && self.same_value(&i1, &i3) {
                i1.i += 1;
                i3.i += 1;
            } else {
                return fail(8);
            }
        }

        if i1.live() {
            return fail(9);
        }
        while i2.live() {
            self.output(&i2);
            i2.i += 1;
        }
        while i3.live() {
            self.output(&i3);
            i3.i += 1;
        }
        if self.keys.is_empty() {
            return fail(10);
        }
        if self.pending {
            // The C function returns a state with an exception set; Python
            // turns that into a SystemError.
            return Err(Unresolved::Incomparable);
        }
        Ok(())
    }
}

/// Keys and values of the integer slots were converted to `Value::Int`.
fn int_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}
