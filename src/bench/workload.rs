//! What a benchmark connection does: hot `loadBefore`s with many requests
//! in flight, or small commits (`tpc_begin`, `storea`×k, `vote`,
//! `tpc_finish`) one after the other as a ZEO client does, and the setup
//! that creates the objects the loads read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::conn::{Conn, ConnError};
use crate::ids::{Oid, Tid};
use crate::protocol::{encode_message, Message, Value};

/// `new_oids` hands out at most this many per call.
const OIDS_PER_CALL: usize = 100;
/// Latencies are recorded in microseconds up to this bound (1 minute).
const MAX_LATENCY_US: u64 = 60_000_000;

/// When a worker stops issuing requests.
#[derive(Debug, Clone)]
pub enum Until {
    Deadline(Instant),
    /// This many operations for this worker.
    Count(u64),
    /// The deadline, or earlier when the flag is raised (`--while-pid`).
    Flag(Instant, Arc<AtomicBool>),
}

impl Until {
    fn more(&self, issued: u64) -> bool {
        match self {
            Until::Deadline(deadline) => Instant::now() < *deadline,
            Until::Count(n) => issued < *n,
            Until::Flag(deadline, stop) => {
                !stop.load(Ordering::Relaxed) && Instant::now() < *deadline
            }
        }
    }
}

/// What one worker measured.
pub struct Tally {
    /// Latency of each successful operation, microseconds.
    pub latency: Histogram<u64>,
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            // 3 significant digits: fine for p99 of microsecond latencies.
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            ops: 0,
            errors: 0,
            first_error: None,
        }
    }

    fn ok(&mut self, since: Instant) {
        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(MAX_LATENCY_US);
        self.latency.saturating_record(us.clamp(1, MAX_LATENCY_US));
        self.ops += 1;
    }

    pub fn error(&mut self, what: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what.to_string());
        }
    }

    pub fn merge(&mut self, other: Tally) {
        let _ = self.latency.add(&other.latency);
        self.ops += other.ops;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new()
    }
}

/// A small fast PRNG (xorshift64*): the key choice must not cost more
/// than the request.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (((x >> 32) * n as u64) >> 32) as usize
    }
}

/// A `loadBefore` frame encoded once, with the oid patched in per request.
/// Like ZEO 5/6 clients, the msgid is the `(oid, tid)` pair itself.
pub struct LoadTemplate {
    frame: Vec<u8>,
    oid_offsets: Vec<usize>,
}

/// Unlikely to occur in an encoded frame by chance.
const MARKER: [u8; 8] = [0xa5, 0x5a, 0xc3, 0x3c, 0x96, 0x69, 0x0f, 0xf0];

impl LoadTemplate {
    pub fn new(conn: &Conn, before: Tid) -> Result<LoadTemplate, ConnError> {
        let pair = Value::Tuple(vec![Value::Bytes(MARKER.to_vec()), Value::tid(before)]);
        let payload = encode_message(
            conn.encoding,
            &Message {
                msgid: pair.clone(),
                flags: Value::Bool(false),
                method: "loadBefore".into(),
                args: pair,
            },
        )?;
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        let oid_offsets = frame
            .windows(MARKER.len())
            .enumerate()
            .filter(|(_, w)| *w == MARKER)
            .map(|(i, _)| i)
            .collect();
        Ok(LoadTemplate { frame, oid_offsets })
    }

    fn queue(&self, conn: &mut Conn, oid: Oid, scratch: &mut Vec<u8>) {
        scratch.clear();
        scratch.extend_from_slice(&self.frame);
        for &at in &self.oid_offsets {
            if let Some(slot) = scratch.get_mut(at..at + 8) {
                slot.copy_from_slice(&oid.0);
            }
        }
        conn.queue_frame(scratch);
    }
}

/// Hot loads of random `keys`, `pipeline` requests in flight.
pub async fn load(mut conn: Conn, keys: &[Oid], pipeline: usize, until: Until, seed: u64) -> Tally {
    let mut tally = Tally::new();
    if keys.is_empty() {
        tally.error("no keys to load");
        return tally;
    }
    // What a ZODB client asks for right after connecting: the state as of
    // the last transaction it saw.
    let before = Tid::from_u64(conn.last_tid.as_u64().saturating_add(1));
    let template = match LoadTemplate::new(&conn, before) {
        Ok(t) => t,
        Err(err) => {
            tally.error(err);
            return tally;
        }
    };
    let mut rng = Rng::new(seed);
    let mut scratch = Vec::with_capacity(template.frame.len());
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(pipeline);
    let mut issued = 0u64;
    loop {
        while in_flight.len() < pipeline.max(1) && until.more(issued) {
            let oid = keys[rng.below(keys.len())];
            template.queue(&mut conn, oid, &mut scratch);
            in_flight.push_back((oid.as_u64(), Instant::now()));
            issued += 1;
        }
        if let Err(err) = conn.flush().await {
            tally.error(err);
            return tally;
        }
        if in_flight.is_empty() {
            return tally;
        }
        let reply = match conn.next_reply().await {
            Ok(reply) => reply,
            Err(err) => {
                tally.error(err);
                return tally;
            }
        };
        let key = match &reply.msgid {
            Value::Tuple(pair) => pair.first().and_then(Value::as_oid).map(Oid::as_u64),
            _ => None,
        };
        // Servers answer loads in order; search only in case one does not.
        let Some(at) = key.and_then(|k| in_flight.iter().position(|(o, _)| *o == k)) else {
            tally.error(format!("reply to a request never sent: {:?}", reply.msgid));
            continue;
        };
        let Some((_, sent)) = in_flight.remove(at) else {
            continue;
        };
        match reply.result {
            Ok(Value::Tuple(_)) => tally.ok(sent),
            Ok(other) => tally.error(format!("loadBefore returned {other:?}")),
            Err((class, state)) => tally.error(format!("loadBefore raised {class} {state:?}")),
        }
    }
}

/// The state pickle of a `persistent.mapping.PersistentMapping` holding
/// one bytes value of `size` bytes, as ZODB writes it (class pickle, then
/// state pickle): valid for Python peers that load it.
pub fn object_record(size: usize, fill: u8) -> Vec<u8> {
    let mut out = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.".to_vec();
    out.extend_from_slice(b"\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03X\x01\x00\x00\x00vq\x04");
    match u8::try_from(size) {
        Ok(n) => out.extend_from_slice(&[b'C', n]),
        Err(_) => {
            out.push(b'B');
            out.extend_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_le_bytes());
        }
    }
    out.extend(std::iter::repeat_n(fill, size));
    out.extend_from_slice(b"q\x05ss.");
    out
}

/// `n` fresh oids, `new_oids` calls pipelined.
pub async fn new_oids(conn: &mut Conn, n: usize) -> Result<Vec<Oid>, ConnError> {
    let mut oids = Vec::with_capacity(n);
    while oids.len() < n {
        let calls = (n - oids.len()).div_ceil(OIDS_PER_CALL).min(64);
        let mut ids = Vec::with_capacity(calls);
        for _ in 0..calls {
            let id = conn.msgid();
            conn.queue_call(
                Value::Int(id.into()),
                false,
                "new_oids",
                vec![Value::Int(OIDS_PER_CALL as i128)],
            )?;
            ids.push(id);
        }
        conn.flush().await?;
        let mut replies = Vec::with_capacity(calls);
        while replies.len() < calls {
            let reply = conn.next_reply().await?;
            if let Value::Int(id) = reply.msgid {
                replies.push((id, reply.into_value("new_oids")?));
            }
        }
        replies.sort_by_key(|(id, _)| *id);
        for (_, value) in replies {
            let (Value::List(items) | Value::Tuple(items)) = &value else {
                return Err(ConnError::Unexpected {
                    method: "new_oids".into(),
                    value: format!("{value:?}"),
                });
            };
            oids.extend(items.iter().filter_map(Value::as_oid));
        }
    }
    oids.truncate(n);
    Ok(oids)
}

/// A connection's transaction ids: Python sends `id(txn)`; anything
/// unique per connection does.
fn txn_id(worker: u64, n: u64) -> Value {
    Value::Int(i128::from(worker) << 32 | i128::from(n))
}

/// Stores `data` for every oid (all last committed together at
/// `serial`) in one transaction. Returns the new tid.
pub async fn commit(
    conn: &mut Conn,
    txn: Value,
    oids: &[Oid],
    serial: Tid,
    data: &[u8],
) -> Result<Tid, ConnError> {
    conn.queue_call(
        Value::Int(0),
        true,
        "tpc_begin",
        vec![
            txn.clone(),
            Value::Bytes(Vec::new()),
            Value::Bytes(b"zeod bench".to_vec()),
            Value::Dict(Vec::new()),
            Value::None,
            Value::Str(" ".into()),
        ],
    )?;
    for &oid in oids {
        conn.queue_call(
            Value::Int(0),
            true,
            "storea",
            vec![
                Value::oid(oid),
                Value::tid(serial),
                Value::Bytes(data.to_vec()),
                txn.clone(),
            ],
        )?;
    }
    let voted = match conn.call("vote", vec![txn.clone()]).await {
        Ok(voted) => voted,
        Err(err @ ConnError::Raised { .. }) => {
            let _ = conn.call("tpc_abort", vec![txn]).await;
            return Err(err);
        }
        Err(err) => return Err(err),
    };
    // Resolved oids (bytes) are fine; a dict is a conflict handed back.
    let handed_back = match &voted {
        Value::List(items) | Value::Tuple(items) => {
            items.iter().any(|item| matches!(item, Value::Dict(_)))
        }
        _ => false,
    };
    if handed_back {
        let _ = conn.call("tpc_abort", vec![txn]).await;
        return Err(ConnError::Unexpected {
            method: "vote".into(),
            value: format!("{voted:?}"),
        });
    }
    let tid = conn.call("tpc_finish", vec![txn]).await?;
    tid.as_tid().ok_or_else(|| ConnError::Unexpected {
        method: "tpc_finish".into(),
        value: format!("{tid:?}"),
    })
}

/// Commits of `objects` private objects of `size` bytes, one transaction
/// at a time (a ZEO client never overlaps its own commits).
pub async fn commits(
    mut conn: Conn,
    worker: u64,
    objects: usize,
    size: usize,
    until: Until,
) -> Tally {
    let mut tally = Tally::new();
    let oids = match new_oids(&mut conn, objects.max(1)).await {
        Ok(oids) => oids,
        Err(err) => {
            tally.error(err);
            return tally;
        }
    };
    let mut serial = Tid::ZERO;
    let mut n = 0u64;
    while until.more(n) {
        n += 1;
        let data = object_record(size, b'a' + (n % 26) as u8);
        let started = Instant::now();
        match commit(&mut conn, txn_id(worker, n), &oids, serial, &data).await {
            Ok(tid) => {
                serial = tid;
                tally.ok(started);
            }
            Err(err @ ConnError::Raised { .. }) | Err(err @ ConnError::Unexpected { .. }) => {
                tally.error(err);
                match current_serial(&mut conn, oids[0]).await {
                    Ok(current) => serial = current,
                    Err(err) => {
                        tally.error(err);
                        return tally;
                    }
                }
            }
            Err(err) => {
                tally.error(err);
                return tally;
            }
        }
    }
    tally
}

/// The tid of `oid`'s current revision, z64 if it does not exist yet.
async fn current_serial(conn: &mut Conn, oid: Oid) -> Result<Tid, ConnError> {
    match conn
        .call("loadBefore", vec![Value::oid(oid), Value::tid(Tid::MAX)])
        .await
    {
        Ok(Value::Tuple(t)) => Ok(t.get(1).and_then(Value::as_tid).unwrap_or(Tid::ZERO)),
        Ok(_) => Ok(Tid::ZERO),
        Err(ConnError::Raised { class, .. }) if class.ends_with("POSKeyError") => Ok(Tid::ZERO),
        Err(err) => Err(err),
    }
}

/// Creates `count` objects in transactions of `batch`, reporting progress.
pub async fn setup(
    conn: &mut Conn,
    count: usize,
    batch: usize,
    size: usize,
) -> Result<Vec<Oid>, ConnError> {
    let oids = new_oids(conn, count).await?;
    let data = object_record(size, b's');
    let mut last_report = Instant::now();
    for (i, chunk) in oids.chunks(batch.max(1)).enumerate() {
        commit(conn, txn_id(0, i as u64 + 1), chunk, Tid::ZERO, &data).await?;
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            tracing::info!(
                created = (i + 1) * batch.max(1),
                of = count,
                "setting up objects"
            );
        }
    }
    Ok(oids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_stays_in_range_and_spreads() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn record_has_class_and_state_pickles() {
        let small = object_record(200, b'x');
        assert!(small.starts_with(b"\x80\x03cpersistent.mapping\nPersistentMapping\n"));
        assert!(small.ends_with(b"q\x05ss."));
        assert_eq!(object_record(300, b'x').len(), small.len() + 100 + 3);
    }
}
