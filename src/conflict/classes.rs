//! THE table of classes the server resolves conflicts for. To support a
//! new BTrees family add a row to [`FAMILIES`]; a new kind of class needs
//! a [`Kind`] and its resolver in `conflict.rs`.

use crate::record::Global;

/// The C type a BTrees family stores keys or values as; `__setstate__`
/// converts the pickled Python objects to it (and rejects what it can't).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Object,
    Int32,
    UInt32,
    Int64,
    UInt64,
    Float32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub prefix: &'static str,
    pub key: Slot,
    pub value: Slot,
}

/// `BTrees.<prefix>BTree` modules, as BTrees 6 ships them.
pub const FAMILIES: &[Family] = &[
    fam("OO", Slot::Object, Slot::Object),
    fam("OI", Slot::Object, Slot::Int32),
    fam("OU", Slot::Object, Slot::UInt32),
    fam("OL", Slot::Object, Slot::Int64),
    fam("OQ", Slot::Object, Slot::UInt64),
    fam("IO", Slot::Int32, Slot::Object),
    fam("II", Slot::Int32, Slot::Int32),
    fam("IU", Slot::Int32, Slot::UInt32),
    fam("IF", Slot::Int32, Slot::Float32),
    fam("UO", Slot::UInt32, Slot::Object),
    fam("UI", Slot::UInt32, Slot::Int32),
    fam("UU", Slot::UInt32, Slot::UInt32),
    fam("UF", Slot::UInt32, Slot::Float32),
    fam("LO", Slot::Int64, Slot::Object),
    fam("LL", Slot::Int64, Slot::Int64),
    fam("LQ", Slot::Int64, Slot::UInt64),
    fam("LF", Slot::Int64, Slot::Float32),
    fam("QO", Slot::UInt64, Slot::Object),
    fam("QL", Slot::UInt64, Slot::Int64),
    fam("QQ", Slot::UInt64, Slot::UInt64),
    fam("QF", Slot::UInt64, Slot::Float32),
];

const fn fam(prefix: &'static str, key: Slot, value: Slot) -> Family {
    Family { prefix, key, value }
}

/// What a resolvable class is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<P>Bucket`: `((k, v, ...), next?)`.
    Bucket(Family),
    /// `<P>Set`: `((k, ...), next?)`.
    Set(Family),
    /// `<P>BTree`: resolvable only as `None` or one inline bucket.
    BTree(Family),
    /// `<P>TreeSet`: likewise, with a set.
    TreeSet(Family),
    /// `BTrees.Length.Length`: an int; `committed + new - old`.
    Length,
}

/// The resolver for a class named by a record's meta pickle, if any.
pub fn lookup(class: &Global) -> Option<Kind> {
    if class.module == "BTrees.Length" && class.name == "Length" {
        return Some(Kind::Length);
    }
    let prefix = class
        .module
        .strip_prefix("BTrees.")?
        .strip_suffix("BTree")?;
    let family = *FAMILIES.iter().find(|f| f.prefix == prefix)?;
    let suffix = class.name.strip_prefix(prefix)?;
    Some(match suffix {
        "Bucket" => Kind::Bucket(family),
        "Set" => Kind::Set(family),
        "BTree" => Kind::BTree(family),
        "TreeSet" => Kind::TreeSet(family),
        _ => return None,
    })
}
