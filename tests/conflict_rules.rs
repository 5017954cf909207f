//! The merge rules of `_p_resolveConflict` on hand-built states: each
//! BTreesConflictError reason, the successful merges, Length, inline
//! single-bucket trees, and what must stay a conflict.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::rc::Rc;

use zeod::conflict::{try_resolve, Unresolved};
use zeod::ids::Oid;
use zeod::record::{self, Global, PersistentRef, Value};

fn global(module: &str, name: &str) -> Value {
    Value::Global(Rc::new(Global {
        module: module.into(),
        name: name.into(),
    }))
}

fn record(module: &str, class: &str, state: Value) -> Vec<u8> {
    record::write(&global(module, class), &state).unwrap()
}

fn ints(v: &[i128]) -> Value {
    Value::tuple(v.iter().map(|&i| Value::Int(i)).collect())
}

fn ii_bucket(items: &[i128]) -> Vec<u8> {
    record(
        "BTrees.IIBTree",
        "IIBucket",
        Value::tuple(vec![ints(items)]),
    )
}

fn state_of(data: &[u8]) -> String {
    format!("{:?}", record::parse(data).unwrap().state)
}

fn resolve(old: &[u8], committed: &[u8], new: &[u8]) -> Result<Vec<u8>, Unresolved> {
    try_resolve(Oid::from_u64(7), old, committed, new)
}

fn ii(old: &[i128], committed: &[i128], new: &[i128]) -> Result<String, Unresolved> {
    resolve(&ii_bucket(old), &ii_bucket(committed), &ii_bucket(new)).map(|r| state_of(&r))
}

fn expect_ii(items: &[i128]) -> Result<String, Unresolved> {
    Ok(state_of(&ii_bucket(items)))
}

#[test]
fn disjoint_changes_merge() {
    let old = [1, 10, 2, 20, 3, 30];
    // committed inserts 4, new changes 2 and inserts 0... and deletes 3.
    assert_eq!(
        ii(&old, &[1, 10, 2, 20, 3, 30, 4, 40], &[1, 10, 2, 21, 3, 30]),
        expect_ii(&[1, 10, 2, 21, 3, 30, 4, 40])
    );
    assert_eq!(
        ii(&old, &[1, 10, 2, 20], &[1, 10, 2, 20, 3, 30, 5, 50]),
        expect_ii(&[1, 10, 2, 20, 5, 50])
    );
    // Both setting the same new value is still a conflict (the C merge
    // only accepts a change on one side), whatever its comment says.
    assert_eq!(
        ii(&old, &[1, 10, 2, 22, 3, 30], &[1, 10, 2, 22, 3, 30]),
        Err(Unresolved::BTrees(1))
    );
}

#[test]
fn each_reason_code() {
    let old = [1, 10, 2, 20, 3, 30];
    let r = |c: &[i128], n: &[i128]| ii(&old, c, n).unwrap_err();
    assert_eq!(
        r(&[1, 10, 2, 21, 3, 30], &[1, 10, 2, 22, 3, 30]),
        Unresolved::BTrees(1)
    );
    assert_eq!(
        r(&[1, 10, 2, 21, 3, 30], &[1, 10, 3, 30]),
        Unresolved::BTrees(2)
    );
    assert_eq!(
        r(&[1, 10, 3, 30], &[1, 10, 2, 21, 3, 30]),
        Unresolved::BTrees(3)
    );
    assert_eq!(
        r(&[1, 10, 2, 20, 3, 30, 4, 40], &[1, 10, 2, 20, 3, 30, 4, 41]),
        Unresolved::BTrees(6)
    );
    assert_eq!(
        r(&[0, 1, 1, 10, 2, 20, 3, 30], &[0, 2, 1, 10, 2, 20, 3, 30]),
        Unresolved::BTrees(4)
    );
    // Both deleting the same key meets the same next key: "inserts or deletes".
    assert_eq!(r(&[1, 10, 3, 30], &[1, 10, 3, 30]), Unresolved::BTrees(4));
    assert_eq!(r(&[3, 30], &[2, 20, 3, 30]), Unresolved::BTrees(5));
    assert_eq!(
        r(&[2, 20, 3, 30], &[1, 10, 2, 20, 3, 30, 4, 40]),
        Unresolved::BTrees(13)
    );
    assert_eq!(
        r(&[1, 10, 2, 20, 3, 30, 4, 40], &[2, 20, 3, 30]),
        Unresolved::BTrees(13)
    );
    assert_eq!(
        r(&[1, 10, 2, 20], &[1, 10, 2, 20, 3, 31]),
        Unresolved::BTrees(8)
    );
    assert_eq!(
        r(&[1, 10, 2, 20, 3, 31], &[1, 10, 2, 20]),
        Unresolved::BTrees(7)
    );
    assert_eq!(r(&[1, 10, 2, 20], &[1, 10, 2, 20]), Unresolved::BTrees(9));
    assert_eq!(r(&[], &[1, 10]), Unresolved::BTrees(12));
    assert_eq!(
        ii(&[1, 10, 2, 20], &[1, 10, 5, 50], &[5, 51, 2, 20]).unwrap_err(),
        Unresolved::BTrees(13)
    );
    let one = [1, 10];
    assert_eq!(
        ii(&[1, 10, 2, 20], &one, &[2, 20]).unwrap_err(),
        Unresolved::BTrees(13)
    );
}

#[test]
fn sets_merge_without_values() {
    // Each writer deletes a different key, neither the first.
    let set = |keys: &[i128]| record("BTrees.IIBTree", "IISet", Value::tuple(vec![ints(keys)]));
    let e = resolve(&set(&[1, 2, 3]), &set(&[1, 3]), &set(&[1, 2])).map(|r| state_of(&r));
    assert_eq!(e, Ok(state_of(&set(&[1]))));
    let e = resolve(&set(&[1, 2]), &set(&[5]), &set(&[1])).unwrap_err();
    assert_eq!(e, Unresolved::BTrees(13));
}

fn bucket_ref(oid: u64) -> Value {
    Value::Ref(Rc::new(PersistentRef {
        pid: Value::tuple(vec![
            Value::Bytes(Oid::from_u64(oid).0.to_vec().into()),
            global("BTrees.OOBTree", "OOBucket"),
        ]),
    }))
}

fn oo_bucket(items: &[(&str, i128)], next: Option<u64>) -> Vec<u8> {
    let mut flat = Vec::new();
    for (k, v) in items {
        flat.push(Value::Str((*k).into()));
        flat.push(Value::Int(*v));
    }
    let mut state = vec![Value::tuple(flat)];
    if let Some(n) = next {
        state.push(bucket_ref(n));
    }
    record("BTrees.OOBTree", "OOBucket", Value::tuple(state))
}

#[test]
fn object_keys_merge_in_python_order_and_keep_next() {
    let old = oo_bucket(&[("b", 1), ("d", 2)], Some(9));
    let com = oo_bucket(&[("b", 1), ("c", 3), ("d", 2)], Some(9));
    let new = oo_bucket(&[("b", 1), ("d", 2), ("é", 4)], Some(9));
    let out = resolve(&old, &com, &new).unwrap();
    assert_eq!(
        state_of(&out),
        state_of(&oo_bucket(
            &[("b", 1), ("c", 3), ("d", 2), ("é", 4)],
            Some(9)
        ))
    );
    // The next pointer survives as a persistent reference.
    assert_eq!(record::references(&out).unwrap(), vec![Oid::from_u64(9)]);
    // A relinked bucket is reason 0.
    let moved = oo_bucket(&[("b", 1), ("c", 3), ("d", 2)], Some(8));
    assert_eq!(
        resolve(&old, &moved, &new).unwrap_err(),
        Unresolved::BTrees(0)
    );
}

#[test]
fn mixed_key_types_are_not_comparable() {
    let old = oo_bucket(&[("b", 1)], None);
    let com = oo_bucket(&[("b", 1), ("c", 2)], None);
    let mixed = record(
        "BTrees.OOBTree",
        "OOBucket",
        Value::tuple(vec![Value::tuple(vec![
            Value::Str("b".into()),
            Value::Int(1),
            Value::Int(5),
            Value::Int(1),
        ])]),
    );
    assert_eq!(
        resolve(&old, &com, &mixed).unwrap_err(),
        Unresolved::Incomparable
    );
}

#[test]
fn length_adds_both_deltas() {
    let len = |n: i128| record("BTrees.Length", "Length", Value::Int(n));
    let out = resolve(&len(5), &len(8), &len(6)).unwrap();
    assert_eq!(out, len(9));
}

#[test]
fn single_bucket_trees_resolve_and_bigger_ones_do_not() {
    let tree = |items: &[i128]| {
        record(
            "BTrees.IOBTree",
            "IOBTree",
            Value::tuple(vec![Value::tuple(vec![Value::tuple(vec![Value::tuple(
                items
                    .chunks(2)
                    .flat_map(|c| [Value::Int(c[0]), Value::Str(c[1].to_string().into())])
                    .collect(),
            )])])]),
        )
    };
    let out = resolve(
        &tree(&[1, 1, 2, 2]),
        &tree(&[1, 1, 2, 2, 3, 3]),
        &tree(&[1, 1, 2, 2, 4, 4]),
    );
    assert_eq!(
        state_of(&out.unwrap()),
        state_of(&tree(&[1, 1, 2, 2, 3, 3, 4, 4]))
    );
    let out = resolve(
        &tree(&[1, 1, 2, 2]),
        &tree(&[1, 1, 2, 2, 3, 3]),
        &tree(&[1, 1, 2, 2, 3, 4]),
    );
    assert_eq!(out.unwrap_err(), Unresolved::BTrees(6));
    let out = resolve(
        &tree(&[1, 1, 2, 2]),
        &tree(&[1, 1, 2, 2, 3, 3]),
        &tree(&[1, 1, 2, 7]),
    );
    assert_eq!(
        state_of(&out.unwrap()),
        state_of(&tree(&[1, 1, 2, 7, 3, 3]))
    );
    let empty = record("BTrees.IOBTree", "IOBTree", Value::None);
    assert_eq!(
        state_of(&resolve(&empty, &tree(&[1, 1]), &tree(&[2, 2])).unwrap()),
        state_of(&tree(&[1, 1, 2, 2]))
    );
    let big = record(
        "BTrees.IOBTree",
        "IOBTree",
        Value::tuple(vec![
            Value::tuple(vec![bucket_ref(3), Value::Int(10), bucket_ref(4)]),
            bucket_ref(3),
        ]),
    );
    assert_eq!(
        resolve(&big, &big, &big).unwrap_err(),
        Unresolved::BTrees(11)
    );
}

#[test]
fn other_classes_and_bad_states_stay_conflicts() {
    let pm = record("persistent.mapping", "PersistentMapping", Value::None);
    assert!(matches!(
        resolve(&pm, &pm, &pm),
        Err(Unresolved::NotResolvable(_))
    ));
    let wrong = record(
        "BTrees.IIBTree",
        "IIBucket",
        Value::tuple(vec![Value::tuple(vec![
            Value::Str("x".into()),
            Value::Int(1),
        ])]),
    );
    let good = ii_bucket(&[1, 1]);
    assert!(matches!(
        resolve(&good, &good, &wrong),
        Err(Unresolved::BadState(_))
    ));
    let too_big = ii_bucket(&[1, 1 << 40]);
    assert!(matches!(
        resolve(&good, &good, &too_big),
        Err(Unresolved::BadState(_))
    ));
    assert!(matches!(
        resolve(&good, &good, b"garbage"),
        Err(Unresolved::Record(_))
    ));
}
