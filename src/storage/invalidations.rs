//! `getInvalidations` answered from the file itself: the oids changed since
//! a client's last tid, found by walking transactions backwards from the
//! published end through their redundant trailing lengths (spec §4), so the
//! cost is that of the transactions since the client left, never a scan
//! from the start of a file that may hold years. Bounds keep a client that
//! was away too long from costing more than dropping its cache would.
//!
//! ```text
//!   4 ........ tpos          tpos+tlen  8       end (published)
//!   | older txns | header | records... | tlen | <- walk starts here
//!                  ^ tid <= after: stop, the answer is complete
//! ```

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tracing::info;

use super::read::walk_back;
use super::{FileStorage, Result};
use crate::ids::{Oid, Tid};

/// How far back a scan may go before the client is told to drop its cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinceBound {
    /// Transactions older than this are not scanned (`invalidation-age`).
    pub not_before: Tid,
    /// More distinct changed oids than this is no answer
    /// (`invalidation-max-oids`): invalidating that much of a cache saves
    /// little over dropping it, and the reply would be a huge frame.
    pub max_oids: usize,
}

impl SinceBound {
    pub const NONE: SinceBound = SinceBound {
        not_before: Tid::ZERO,
        max_oids: usize::MAX,
    };
}

/// The outcome of a backwards scan for the changes after a tid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// Every oid changed after the client's tid up to `tid`, the newest
    /// transaction published when the scan began, in ascending order.
    Changed {
        tid: Tid,
        oids: Vec<Oid>,
        transactions: u64,
    },
    /// The changes reach back past `not_before`.
    TooOld { transactions: u64 },
    /// More than `max_oids` distinct oids changed.
    TooMany { transactions: u64 },
    /// The file has no transaction at or before the client's tid: the
    /// client's cache is of a history this file does not hold.
    Unknown { transactions: u64 },
}

/// Long scans say how far they got this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub(super) fn changed_since(s: &FileStorage, after: Tid, bound: SinceBound) -> Result<Since> {
    let started = Instant::now();
    let mut reported = started;
    let mut newest = None;
    let mut transactions = 0u64;
    let mut oids: HashSet<Oid> = HashSet::new();
    let mut stopped: Option<Since> = None;
    walk_back(s, |r, tpos, h| {
        let newest = *newest.get_or_insert(h.tid);
        if h.tid <= after {
            stopped = Some(Since::Changed {
                tid: newest,
                oids: Vec::new(),
                transactions,
            });
            return Ok(false);
        }
        if h.tid < bound.not_before {
            stopped = Some(Since::TooOld { transactions });
            return Ok(false);
        }
        transactions += 1;
        let tend = tpos + h.tlen;
        let mut pos = tpos + h.header_len();
        while pos < tend {
            let d = r.data_header(pos)?;
            oids.insert(d.oid);
            pos += d.record_len();
        }
        if oids.len() > bound.max_oids {
            stopped = Some(Since::TooMany { transactions });
            return Ok(false);
        }
        if transactions % 1024 == 0 && reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            info!(
                path = %s.path().display(),
                transactions,
                oids = oids.len(),
                at = %h.tid.timestamp_string(),
                "scanning back for invalidations"
            );
        }
        Ok(true)
    })?;
    Ok(match stopped {
        Some(Since::Changed { tid, .. }) => {
            let mut oids: Vec<Oid> = oids.into_iter().collect();
            oids.sort_unstable();
            Since::Changed {
                tid,
                oids,
                transactions,
            }
        }
        Some(other) => other,
        None => Since::Unknown { transactions },
    })
}
