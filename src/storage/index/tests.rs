#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

#[test]
fn insert_get_overwrite_remove() {
    let mut ix = Index::new();
    for (oid, pos) in [(5u64, 100u64), (1, 50), (0x1_0000, 7), (3, 9)] {
        ix.insert(Oid::from_u64(oid), pos);
    }
    assert_eq!(ix.len(), 4);
    assert_eq!(ix.get(Oid::from_u64(1)), Some(50));
    assert_eq!(ix.get(Oid::from_u64(2)), None);
    ix.insert(Oid::from_u64(1), 60);
    assert_eq!((ix.len(), ix.get(Oid::from_u64(1))), (4, Some(60)));
    assert_eq!(ix.max_oid(), Some(Oid::from_u64(0x1_0000)));
    let all: Vec<_> = ix.iter().map(|(o, p)| (o.as_u64(), p)).collect();
    assert_eq!(all, vec![(1, 60), (3, 9), (5, 100), (0x1_0000, 7)]);
    assert_eq!(
        ix.first_from(Oid::from_u64(4)).map(|e| e.0.as_u64()),
        Some(5)
    );
    assert_eq!(
        ix.first_after(Oid::from_u64(5)).map(|e| e.0.as_u64()),
        Some(0x1_0000)
    );
    assert_eq!(ix.first_after(Oid::from_u64(0x1_0000)), None);
    assert_eq!(ix.remove(Oid::from_u64(0x1_0000)), Some(7));
    assert_eq!(ix.max_oid(), Some(Oid::from_u64(5)));
}

#[test]
fn large_positions_survive() {
    let mut ix = Index::new();
    ix.insert(Oid::from_u64(u64::MAX), POS_MAX);
    assert_eq!(ix.get(Oid::from_u64(u64::MAX)), Some(POS_MAX));
}

#[test]
fn footprint_is_about_four_bytes_per_object() {
    let mut ix = Index::new();
    for i in 0..1_000_000u64 {
        ix.insert(Oid::from_u64(i), i * 100);
    }
    ix.shrink();
    let bpo = ix.bytes_per_object();
    assert!(bpo < 4.5, "{bpo} bytes per object");
    assert_eq!(ix.get(Oid::from_u64(999_999)), Some(99_999_900));
}

#[test]
fn scattered_oids_cost_at_most_eight_bytes_with_wide_positions() {
    let mut ix = Index::new();
    // Every 40th oid: too sparse for a bitmap; each bucket spans ~6 GiB.
    for i in 0..100_000u64 {
        ix.insert(Oid::from_u64(i * 40), i << 22);
    }
    ix.shrink();
    let bpo = ix.bytes_per_object();
    assert!(bpo <= 8.5, "{bpo} bytes per object");
    assert!(bpo > 7.0, "{bpo}: the positions should not fit in 4 bytes");
    assert_eq!(ix.get(Oid::from_u64(40 * 99_999)), Some(99_999 << 22));
}

#[test]
fn a_bucket_goes_wide_past_4_gib_and_narrow_again_after_rewrites() {
    let mut ix = Index::new();
    for i in 0..1000u64 {
        ix.insert(Oid::from_u64(i), 4 + i * 50);
    }
    ix.insert(Oid::from_u64(7), 5 << 32);
    assert_eq!(ix.get(Oid::from_u64(7)), Some(5 << 32));
    assert_eq!(ix.get(Oid::from_u64(8)), Some(404));
    let wide = ix.heap_bytes();
    for i in 0..1000u64 {
        ix.insert(Oid::from_u64(i), (5 << 32) + i);
    }
    ix.shrink();
    assert!(ix.heap_bytes() < wide, "{} >= {wide}", ix.heap_bytes());
    assert_eq!(ix.get(Oid::from_u64(999)), Some((5 << 32) + 999));
}

#[test]
fn decreasing_positions_rebase_the_bucket() {
    let mut ix = Index::new();
    for i in 0..60_000u64 {
        ix.insert(Oid::from_u64(i), (1 << 40) - i * 1000);
    }
    ix.shrink();
    assert!(ix.bytes_per_object() < 4.5, "{}", ix.bytes_per_object());
    let all: Vec<_> = ix.iter().map(|(_, p)| p).collect();
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, p)| *p == (1 << 40) - i as u64 * 1000));
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u64),
    Remove(u64),
}

/// Oids as they occur: dense runs from a counter, bucket edges, scattered
/// and huge values; positions small, near 4 GiB steps and up to 48 bits.
fn oid() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0..3000u64,
        2 => (0..4u64, 0xff00..=0xffffu64).prop_map(|(p, s)| (p << 16) | s),
        1 => any::<u64>(),
        1 => (0..200_000u64).prop_map(|x| x * 37),
    ]
}

fn pos() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 4..1_000_000u64,
        1 => (0..20u64, 0..1000u64).prop_map(|(g, x)| (g << 32) + x),
        1 => 0..=POS_MAX,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (oid(), pos()).prop_map(|(o, p)| Op::Insert(o, p)),
        1 => oid().prop_map(Op::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn behaves_like_a_btreemap(ops in prop::collection::vec(op(), 1..3000), probes in prop::collection::vec(oid(), 20)) {
        let mut ix = Index::new();
        let mut model = BTreeMap::new();
        for op in &ops {
            match *op {
                Op::Insert(o, p) => {
                    ix.insert(Oid::from_u64(o), p);
                    model.insert(o, p);
                }
                Op::Remove(o) => {
                    prop_assert_eq!(ix.remove(Oid::from_u64(o)), model.remove(&o));
                }
            }
        }
        ix.shrink();
        prop_assert_eq!(ix.len(), model.len());
        let all: Vec<_> = ix.iter().map(|(o, p)| (o.as_u64(), p)).collect();
        let expected: Vec<_> = model.iter().map(|(o, p)| (*o, *p)).collect();
        prop_assert_eq!(&all, &expected);
        prop_assert_eq!(ix.max_oid().map(Oid::as_u64), model.keys().next_back().copied());
        for probe in probes.iter().chain(model.keys().take(50)) {
            prop_assert_eq!(ix.get(Oid::from_u64(*probe)), model.get(probe).copied());
            let from = model.range(*probe..).next().map(|(o, p)| (*o, *p));
            prop_assert_eq!(ix.first_from(Oid::from_u64(*probe)).map(|(o, p)| (o.as_u64(), p)), from);
        }
        // The .index file's view: buckets round-trip through insert_bucket.
        let mut copy = Index::new();
        for (prefix, pairs) in ix.buckets() {
            let n = pairs.len();
            let pairs: Vec<_> = pairs.collect();
            prop_assert_eq!(n, pairs.len());
            prop_assert!(copy.insert_bucket(prefix, pairs.into_iter()));
        }
        let again: Vec<_> = copy.iter().map(|(o, p)| (o.as_u64(), p)).collect();
        prop_assert_eq!(again, expected);
    }
}
