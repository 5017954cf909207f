//! Python's ordering of the values BTrees compare, including where Python
//! raises instead of answering (`str < int`, unequal persistent
//! references, anything with a user-defined `__eq__`): such comparisons
//! are reported as [`Raised`] so the merge can fail exactly where
//! `_p_resolveConflict` would.

use std::cmp::Ordering;
use std::rc::Rc;

use crate::record::{Value, MAX_DEPTH};

/// Python raised during a comparison (TypeError, or ValueError from
/// `PersistentReference.__cmp__`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised;

/// BTrees' `COMPARE(lhs, rhs)` macro for object keys and values: `None`
/// sorts first without asking Python; otherwise `<`, then `==`. The answer
/// is -1/0/1; `raised` tells whether Python left an exception set (the
/// answer is then -1 when `<` raised, 1 when `==` raised).
///
/// `pending`: an earlier comparison left an exception set. C-level
/// comparisons (ints, strings, tuples of them) still answer, but a call
/// into Python code (`PersistentReference.__lt__`) then fails with
/// SystemError, so comparing references answers -1.
pub fn compare(a: &Value, b: &Value, pending: bool) -> (Ordering, bool) {
    let cx = Cx { pending };
    match (a, b) {
        (Value::None, Value::None) => return (Ordering::Equal, false),
        (Value::None, _) => return (Ordering::Less, false),
        (_, Value::None) => return (Ordering::Greater, false),
        _ => {}
    }
    match cx.lt(a, b, 0) {
        Err(Raised) => (Ordering::Less, true),
        Ok(true) => (Ordering::Less, false),
        Ok(false) => match cx.eq(a, b, 0) {
            Err(Raised) => (Ordering::Greater, true),
            Ok(true) => (Ordering::Equal, false),
            Ok(false) => (Ordering::Greater, false),
        },
    }
}

/// C's `(a < b) ? -1 : (a > b) ? 1 : 0` on floats: NaN compares equal.
pub fn compare_c_float(a: f64, b: f64) -> Ordering {
    if a < b {
        Ordering::Less
    } else if a > b {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

enum Num {
    Int(i128),
    Float(f64),
}

fn num(v: &Value) -> Option<Num> {
    match v {
        Value::Bool(b) => Some(Num::Int((*b).into())),
        Value::Int(i) => Some(Num::Int(*i)),
        Value::Float(f) => Some(Num::Float(*f)),
        _ => None,
    }
}

/// Python's exact int/float comparison (no rounding of big ints).
fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y),
        (Num::Int(x), Num::Float(y)) => int_float_cmp(x, y),
        (Num::Float(x), Num::Int(y)) => int_float_cmp(y, x).map(Ordering::reverse),
    }
}

fn int_float_cmp(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // Beyond ±2**126 every i128 is smaller in magnitude.
    if f >= 1.7e38 {
        return Some(Ordering::Less);
    }
    if f <= -1.7e38 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // |whole| < 2**127 and integral: exact as i128.
    let w = whole as i128;
    Some(i.cmp(&w).then_with(|| {
        let frac = f - whole;
        if frac > 0.0 {
            Ordering::Less
        } else if frac < 0.0 {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }))
}

fn same_object(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Ref(x), Value::Ref(y)) => Rc::ptr_eq(x, y),
        (Value::Tuple(x), Value::Tuple(y)) => Rc::ptr_eq(x, y),
        (Value::List(x), Value::List(y)) => Rc::ptr_eq(x, y),
        (Value::Dict(x), Value::Dict(y)) => Rc::ptr_eq(x, y),
        (Value::Object(x), Value::Object(y)) => Rc::ptr_eq(x, y),
        _ => false,
    }
}

#[derive(Clone, Copy)]
struct Cx {
    pending: bool,
}

impl Cx {
    /// `PersistentReference.__cmp__`: equal iff same oid and database and
    /// neither is weak (or the very same object); otherwise it raises.
    fn refs_equal(self, a: &Value, b: &Value) -> Result<bool, Raised> {
        if self.pending {
            return Err(Raised);
        }
        match (a, b) {
            (Value::Ref(x), Value::Ref(y)) => {
                let equal = Rc::ptr_eq(x, y)
                    || (x.oid().is_some()
                        && x.oid() == y.oid()
                        && !x.is_weak()
                        && !y.is_weak()
                        && db_eq(x.database_name(), y.database_name()));
                if equal {
                    Ok(true)
                } else {
                    Err(Raised)
                }
            }
            _ => Err(Raised),
        }
    }
}

fn db_eq(a: Option<Value>, b: Option<Value>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Value::Str(x)), Some(Value::Str(y))) => x == y,
        _ => false,
    }
}

impl Cx {
    /// Python's `a == b` for the values data records hold.
    fn eq(self, a: &Value, b: &Value, depth: usize) -> Result<bool, Raised> {
        if depth > MAX_DEPTH {
            return Err(Raised);
        }
        if same_object(a, b) {
            return Ok(true);
        }
        if matches!(a, Value::Ref(_)) || matches!(b, Value::Ref(_)) {
            return self.refs_equal(a, b);
        }
        if matches!(a, Value::Object(_)) || matches!(b, Value::Object(_)) {
            // A user-defined __eq__ we cannot run.
            return Err(Raised);
        }
        if let (Some(x), Some(y)) = (num(a), num(b)) {
            return Ok(num_cmp(x, y) == Some(Ordering::Equal));
        }
        Ok(match (a, b) {
            (Value::None, Value::None) => true,
            (Value::Str(x), Value::Str(y)) => x == y,
            (Value::Bytes(x), Value::Bytes(y)) => x == y,
            (Value::Global(x), Value::Global(y)) => x == y,
            (Value::Tuple(x), Value::Tuple(y)) => self.seq_eq(x, y, depth)?,
            (Value::List(x), Value::List(y)) => self.seq_eq(&x.borrow(), &y.borrow(), depth)?,
            (Value::Dict(x), Value::Dict(y)) => self.dict_eq(&x.borrow(), &y.borrow(), depth)?,
            _ => false,
        })
    }

    fn seq_eq(self, x: &[Value], y: &[Value], depth: usize) -> Result<bool, Raised> {
        if x.len() != y.len() {
            return Ok(false);
        }
        for (a, b) in x.iter().zip(y) {
            if !self.eq(a, b, depth + 1)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Dict equality for dicts keyed by plain data (where Python's hash lookup
    /// and a linear scan with `==` agree); anything fancier is not decided.
    fn dict_eq(
        self,
        x: &[(Value, Value)],
        y: &[(Value, Value)],
        depth: usize,
    ) -> Result<bool, Raised> {
        let plain = |k: &Value| {
            matches!(
                k,
                Value::None | Value::Bool(_) | Value::Int(_) | Value::Str(_) | Value::Bytes(_)
            )
        };
        if !x.iter().chain(y).all(|(k, _)| plain(k)) {
            return Err(Raised);
        }
        // The last assignment of a key wins, as when Python built the dict.
        let last = |d: &[(Value, Value)]| -> Result<Vec<(Value, Value)>, Raised> {
            let mut out: Vec<(Value, Value)> = Vec::new();
            for (k, v) in d {
                let mut found = false;
                for slot in out.iter_mut() {
                    if self.eq(&slot.0, k, depth + 1)? {
                        slot.1 = v.clone();
                        found = true;
                        break;
                    }
                }
                if !found {
                    out.push((k.clone(), v.clone()));
                }
            }
            Ok(out)
        };
        let (x, y) = (last(x)?, last(y)?);
        if x.len() != y.len() {
            return Ok(false);
        }
        for (k, v) in &x {
            let mut matched = None;
            for (k2, v2) in &y {
                if self.eq(k, k2, depth + 1)? {
                    matched = Some(v2);
                    break;
                }
            }
            match matched {
                Some(v2) if self.eq(v, v2, depth + 1)? => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Python's `a < b`; `Err` where Python raises TypeError/ValueError.
    fn lt(self, a: &Value, b: &Value, depth: usize) -> Result<bool, Raised> {
        if depth > MAX_DEPTH {
            return Err(Raised);
        }
        if matches!(a, Value::Ref(_)) || matches!(b, Value::Ref(_)) {
            // `__lt__` is `__cmp__(other) < 0`: False for equal refs, else raise.
            return self.refs_equal(a, b).map(|_| false);
        }
        if let (Some(x), Some(y)) = (num(a), num(b)) {
            return Ok(num_cmp(x, y) == Some(Ordering::Less));
        }
        match (a, b) {
            (Value::Str(x), Value::Str(y)) => Ok(x < y),
            (Value::Bytes(x), Value::Bytes(y)) => Ok(x < y),
            (Value::Tuple(x), Value::Tuple(y)) => self.seq_lt(x, y, depth),
            (Value::List(x), Value::List(y)) => self.seq_lt(&x.borrow(), &y.borrow(), depth),
            _ => Err(Raised),
        }
    }

    /// Sequence order: the first unequal pair decides, else the length.
    fn seq_lt(self, x: &[Value], y: &[Value], depth: usize) -> Result<bool, Raised> {
        for (a, b) in x.iter().zip(y) {
            if !(same_object(a, b) || self.eq(a, b, depth + 1)?) {
                return self.lt(a, b, depth + 1);
            }
        }
        Ok(x.len() < y.len())
    }
}
