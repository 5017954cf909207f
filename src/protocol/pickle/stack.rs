//! The unpickler's stack, MARK fences and memo, with the accounting that
//! keeps hostile pickles bounded: every value carries its nesting depth
//! (values drop recursively, so depth is what overflows a thread's stack),
//! and every copy the memo or DUP makes is charged against a byte budget.

use std::collections::HashMap;

use super::decode::Limits;
use crate::protocol::{Error, Result, Value};

/// A value on the stack with its nesting depth (a scalar is 0) and the
/// memo keys that refer to it while it is still on the stack.
pub(super) struct Entry {
    pub value: Value,
    pub depth: usize,
    memo: Vec<u32>,
}

impl Entry {
    pub fn leaf(value: Value) -> Entry {
        Entry::new(value, 0)
    }

    pub fn new(value: Value, depth: usize) -> Entry {
        Entry {
            value,
            depth,
            memo: Vec::new(),
        }
    }

    pub fn tuple(items: Vec<Entry>) -> Entry {
        let depth = items.iter().map(|e| e.depth).max().unwrap_or(0) + 1;
        Entry::new(
            Value::Tuple(items.into_iter().map(|e| e.value).collect()),
            depth,
        )
    }
}

/// Python memoizes objects, not values: a container PUT when empty and
/// filled afterwards must come back filled from a later GET. So a memo slot
/// points at its stack entry until that entry leaves the stack (into a
/// container, or popped), and only then holds a snapshot.
enum Slot {
    OnStack(usize),
    Done { value: Value, depth: usize },
}

pub(super) struct Stack {
    entries: Vec<Entry>,
    /// Stack lengths at each MARK; the last one is the fence below which
    /// ordinary pops may not reach (as in CPython's unpickler).
    marks: Vec<usize>,
    memo: HashMap<u32, Slot>,
    copied: usize,
    limits: Limits,
    /// The opcode being run and its offset, for error reports.
    pub at: (u8, usize),
    pub used_memo: bool,
}

impl Stack {
    pub fn new(limits: Limits) -> Stack {
        Stack {
            entries: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            copied: 0,
            limits,
            at: (0, 0),
            used_memo: false,
        }
    }

    fn underflow(&self) -> Error {
        let (opcode, offset) = self.at;
        Error::StackUnderflow { opcode, offset }
    }

    pub fn wrong_type(&self) -> Error {
        let (opcode, offset) = self.at;
        Error::WrongType { opcode, offset }
    }

    fn too_deep(&self) -> Error {
        Error::TooDeep {
            limit: self.limits.max_depth,
        }
    }

    /// The single value STOP leaves behind.
    pub fn finish(mut self) -> Result<Value> {
        match (
            self.entries.pop(),
            self.entries.is_empty(),
            self.marks.is_empty(),
        ) {
            (Some(top), true, true) => Ok(top.value),
            (top, _, _) => Err(Error::UnbalancedStop {
                depth: self.entries.len() + usize::from(top.is_some()),
            }),
        }
    }

    pub fn mark(&mut self) {
        self.marks.push(self.entries.len());
    }

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    pub fn push(&mut self, value: Value) {
        self.entries.push(Entry::leaf(value));
    }

    pub fn push_entry(&mut self, entry: Entry) -> Result<()> {
        if entry.depth > self.limits.max_depth {
            return Err(self.too_deep());
        }
        self.entries.push(entry);
        Ok(())
    }

    pub fn push_empty(&mut self, value: Value) -> Result<()> {
        self.push_entry(Entry::new(value, 1))
    }

    pub fn push_items(&mut self, items: Vec<Entry>, make: fn(Vec<Value>) -> Value) -> Result<()> {
        let Entry { value, depth, .. } = Entry::tuple(items);
        let Value::Tuple(values) = value else {
            return Err(self.wrong_type());
        };
        self.push_entry(Entry::new(make(values), depth))
    }

    pub fn top_mut(&mut self) -> Result<&mut Entry> {
        if self.entries.len() <= self.fence() {
            return Err(self.underflow());
        }
        let underflow = self.underflow();
        self.entries.last_mut().ok_or(underflow)
    }

    pub fn pop(&mut self) -> Result<Entry> {
        let mut items = self.pop_n(1)?;
        items.pop().ok_or_else(|| self.underflow())
    }

    /// POP: drops the top value, or the innermost MARK if nothing is above it.
    pub fn pop_or_unmark(&mut self) -> Result<()> {
        if self.marks.last() == Some(&self.entries.len()) {
            self.marks.pop();
        } else {
            self.pop()?;
        }
        Ok(())
    }

    pub fn pop_n(&mut self, n: usize) -> Result<Vec<Entry>> {
        let start = self
            .entries
            .len()
            .checked_sub(n)
            .filter(|&start| start >= self.fence())
            .ok_or_else(|| self.underflow())?;
        self.split_off(start)
    }

    /// Everything above the innermost MARK, which is removed.
    pub fn take_mark(&mut self) -> Result<Vec<Entry>> {
        let (opcode, offset) = self.at;
        let start = self
            .marks
            .pop()
            .ok_or(Error::MissingMark { opcode, offset })?;
        self.split_off(start)
    }

    /// Removes entries from `start` up; memo slots pointing at them become
    /// snapshots now that the values are final.
    fn split_off(&mut self, start: usize) -> Result<Vec<Entry>> {
        let items = self.entries.split_off(start.min(self.entries.len()));
        for (i, entry) in items.iter().enumerate() {
            for &key in &entry.memo {
                if let Some(Slot::OnStack(at)) = self.memo.get(&key) {
                    if *at == start + i {
                        self.charge(&entry.value)?;
                        let snapshot = Slot::Done {
                            value: entry.value.clone(),
                            depth: entry.depth,
                        };
                        self.memo.insert(key, snapshot);
                    }
                }
            }
        }
        Ok(items)
    }

    pub fn extend_list(&mut self, items: Vec<Entry>) -> Result<()> {
        let wrong_type = self.wrong_type();
        let list = self.top_mut()?;
        let Value::List(values) = &mut list.value else {
            return Err(wrong_type);
        };
        for item in items {
            list.depth = list.depth.max(item.depth + 1);
            values.push(item.value);
        }
        self.check_top_depth()
    }

    /// Keys stay in pickle order; a repeated key is kept twice (Python's
    /// pickler never writes one, and a linear dedup would be quadratic).
    pub fn extend_dict(&mut self, items: Vec<Entry>) -> Result<()> {
        if items.len() % 2 != 0 {
            return Err(Error::BadArgument { offset: self.at.1 });
        }
        let wrong_type = self.wrong_type();
        let dict = self.top_mut()?;
        let Value::Dict(pairs) = &mut dict.value else {
            return Err(wrong_type);
        };
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            dict.depth = dict.depth.max(k.depth + 1).max(v.depth + 1);
            pairs.push((k.value, v.value));
        }
        self.check_top_depth()
    }

    /// BUILD: sets the state of the object below.
    pub fn build(&mut self) -> Result<()> {
        let state = self.pop()?;
        let wrong_type = self.wrong_type();
        let obj = self.top_mut()?;
        let Value::Object { state: slot, .. } = &mut obj.value else {
            return Err(wrong_type);
        };
        *slot = Some(Box::new(state.value));
        obj.depth = obj.depth.max(state.depth + 1);
        self.check_top_depth()
    }

    fn check_top_depth(&self) -> Result<()> {
        match self.entries.last() {
            Some(top) if top.depth > self.limits.max_depth => Err(self.too_deep()),
            _ => Ok(()),
        }
    }

    pub fn dup(&mut self) -> Result<()> {
        let top = self.top_mut()?;
        let copy = Entry::new(top.value.clone(), top.depth);
        self.charge(&copy.value)?;
        self.push_entry(copy)
    }

    pub fn put(&mut self, key: u32) -> Result<()> {
        self.used_memo = true;
        let at = self.entries.len().wrapping_sub(1);
        self.top_mut()?.memo.push(key);
        self.memo.insert(key, Slot::OnStack(at));
        Ok(())
    }

    pub fn get(&mut self, key: u32) -> Result<()> {
        self.used_memo = true;
        let copy = match self.memo.get(&key) {
            Some(Slot::Done { value, depth }) => Entry::new(value.clone(), *depth),
            Some(Slot::OnStack(at)) => {
                let entry = self.entries.get(*at).ok_or(Error::MissingMemo { key })?;
                Entry::new(entry.value.clone(), entry.depth)
            }
            None => return Err(Error::MissingMemo { key }),
        };
        self.charge(&copy.value)?;
        self.push_entry(copy)
    }

    fn charge(&mut self, value: &Value) -> Result<()> {
        let limit = self.limits.max_memo_copy;
        let budget = limit.saturating_sub(self.copied);
        let cost = weight(value, budget).ok_or(Error::TooLarge { limit })?;
        self.copied += cost;
        Ok(())
    }
}

/// Size of a value in bytes of payload plus one per node; `None` once it
/// exceeds `budget`.
fn weight(value: &Value, budget: usize) -> Option<usize> {
    let mut total = 1usize;
    let add = |v: &Value, total: &mut usize| -> Option<()> {
        let remaining = budget.checked_sub(*total)?;
        *total += weight(v, remaining)?;
        Some(())
    };
    match value {
        Value::Bytes(b) => total += b.len(),
        Value::Str(s) => total += s.len(),
        Value::Global { module, name } => total += module.len() + name.len(),
        Value::Tuple(items) | Value::List(items) => {
            for v in items {
                add(v, &mut total)?;
            }
        }
        Value::Dict(pairs) => {
            for (k, v) in pairs {
                add(k, &mut total)?;
                add(v, &mut total)?;
            }
        }
        Value::Object { class, args, state } => {
            add(class, &mut total)?;
            add(args, &mut total)?;
            if let Some(state) = state {
                add(state, &mut total)?;
            }
        }
        Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
    }
    (total <= budget).then_some(total)
}
