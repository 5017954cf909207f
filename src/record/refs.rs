//! `referencesf`: the oids a data record strongly refers to, in order of
//! appearance (duplicates kept), as pack GC follows them. Weak references
//! (`['w', ...]`, legacy `[oid]`) and cross-database ones (`['n', ...]`,
//! `['m', ...]`) are skipped (spec §9.1).

use super::read::{parse_pickles, Reader};
use super::{RecordError, Value};
use crate::ids::Oid;

pub fn references(data: &[u8]) -> Result<Vec<Oid>, RecordError> {
    let mut reader = Reader::new();
    parse_pickles(&mut reader, data)?;
    let mut oids = Vec::new();
    for r in &reader.pids {
        let oid = match &r.pid {
            Value::List(_) => continue,
            Value::Tuple(t) => t.first(),
            other => Some(other),
        };
        let oid = match oid {
            Some(Value::Bytes(b)) => Oid::from_slice(b),
            // py2 pickles: text, ASCII by construction (the reader
            // rejected anything else).
            Some(Value::Str(s)) => Oid::from_slice(s.as_bytes()),
            _ => None,
        };
        oids.push(oid.ok_or(RecordError::BadReference)?);
    }
    Ok(oids)
}
