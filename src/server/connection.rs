//! One client connection: the handshake, then a loop that reads frames and
//! runs calls strictly in arrival order, while a separate writer task
//! drains the bounded outbound queue. The loop also watches for the commit
//! lock a deferred `vote` waits for, the transaction timeout, and shutdown.
//! Leaving the loop for any reason aborts the connection's transaction.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::blobs::Upload;
use super::commit::LockState;
use super::dispatch::{self, Args, CallError};
use super::exported::{ConnId, Exported, Peer};
use super::iterators::Iterators;
use super::legacy::{self, Z4Protocol};
use super::outbound::{self, Outbound, Slot};
use super::txnlog::PendingTxn;
use super::wire;
use super::Shared;
use crate::protocol::FrameCodec;
use crate::protocol::{Encoding, Message, Value};

/// On shutdown, a connection holding the commit lock gets this long to
/// finish (or abort) its transaction.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub(super) struct Connection {
    pub id: ConnId,
    pub address: String,
    pub shared: Arc<Shared>,
    pub encoding: Encoding,
    /// The protocol of a ZEO 4-era client; `None` for ZEO 5/6 (`Z5`/`M5`).
    pub z4: Option<Z4Protocol>,
    /// Set by the first RPC frame (pickle protocol 3 or older).
    pub encoding_settled: bool,
    pub out: Outbound,
    /// Cancelled when the connection must go: writer failure, queue
    /// overflow, transaction timeout.
    pub kill: CancellationToken,
    /// The storage this connection registered on.
    pub exported: Option<Arc<Exported>>,
    pub read_only: bool,
    pub label: Option<String>,
    pub txn: Option<PendingTxn>,
    pub lock: LockState,
    pub upload: Option<Upload>,
    pub iterators: Iterators,
}

type Frames<R> = FramedRead<R, FrameCodec>;

/// Serves one accepted stream until it closes.
pub(super) async fn serve<S>(stream: S, address: String, id: ConnId, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let (reader, writer) = shared.metrics.count_io(reader, writer);
    let mut frames = FramedRead::new(reader, wire::frame_codec(shared.config.max_frame_size));
    let (out, drain) = Outbound::new(shared.config.max_output_buffer, writer);
    let kill = CancellationToken::new();
    let writer = tokio::spawn(outbound::write_frames(drain, kill.clone(), id));

    let greeting: &[u8] = if shared.config.msgpack { b"M5" } else { b"Z5" };
    let _ = out.try_push(greeting.to_vec());
    let handshake_timeout = shared.config.handshake_timeout;
    let handshake = tokio::select! {
        frame = tokio::time::timeout(handshake_timeout, frames.next()) => frame,
        _ = shared.shutdown.cancelled() => Ok(None),
    };
    let first_frame = match &handshake {
        Ok(Some(Ok(frame))) => Some(&frame[..]),
        _ => None,
    };
    let _open = shared
        .metrics
        .connection(crate::metrics::Protocol::classify(first_frame));
    let encoding = match handshake {
        Ok(Some(Ok(frame))) => match &frame[..] {
            b"Z5" => Some((Encoding::Pickle3, None)),
            b"M5" => Some((Encoding::Msgpack, None)),
            b"ruok" => {
                let status = super::ruok_json(&shared);
                tracing::debug!(conn = id, peer = %address, "ruok");
                let _ = out.try_push(status.into_bytes());
                None
            }
            chosen if Z4Protocol::parse(chosen).is_some() => {
                let z4 = Z4Protocol::parse(chosen);
                tracing::debug!(conn = id, peer = %address, protocol = z4.map(Z4Protocol::id).unwrap_or_default(), "ZEO 4-era client");
                // The pickle protocol follows from the first RPC frame.
                Some((Encoding::Pickle3, z4))
            }
            chosen if legacy::is_pre_z309(chosen) => {
                tracing::warn!(
                    conn = id,
                    peer = %address,
                    protocol = %String::from_utf8_lossy(chosen),
                    "refusing a ZEO 2 / ZODB <= 3.8 client: its versioned protocol is not served \
                     (zeod serves Z309 and newer: ZODB 3.9/3.10, ZEO 4, 5, 6; see docs/LEGACY.md)"
                );
                None
            }
            other => {
                tracing::warn!(conn = id, peer = %address, handshake = ?String::from_utf8_lossy(other), "bad handshake");
                None
            }
        },
        Ok(Some(Err(crate::protocol::Error::Io(err)))) => {
            // Port probes (`can_connect`) connect and reset.
            tracing::debug!(conn = id, peer = %address, %err, "connection lost before the handshake");
            None
        }
        Ok(Some(Err(err))) => {
            tracing::warn!(conn = id, peer = %address, %err, "bad handshake frame");
            None
        }
        Ok(None) => None,
        Err(_) => {
            tracing::info!(conn = id, peer = %address, "no handshake within {handshake_timeout:?}");
            None
        }
    };
    if let Some((encoding, z4)) = encoding {
        let mut conn = Connection {
            id,
            address,
            shared,
            encoding,
            z4,
            encoding_settled: encoding == Encoding::Msgpack,
            out,
            kill,
            exported: None,
            read_only: false,
            label: None,
            txn: None,
            lock: LockState::Free,
            upload: None,
            iterators: Iterators::default(),
        };
        conn.run(&mut frames).await;
        conn.close().await;
    } else {
        drop(out);
    }
    let _ = writer.await;
}

impl Connection {
    async fn run<R: AsyncRead + Unpin>(&mut self, frames: &mut Frames<R>) {
        let mut shutdown_deadline: Option<Instant> = None;
        let shutdown = self.shared.shutdown.clone();
        let kill = self.kill.clone();
        loop {
            let lock_deadline = match (
                self.lock.held_since(),
                self.shared.config.transaction_timeout,
            ) {
                (Some(since), Some(timeout)) => Some(since + timeout),
                _ => None,
            };
            tokio::select! {
                biased;
                _ = kill.cancelled() => return,
                _ = shutdown.cancelled(), if shutdown_deadline.is_none() => {
                    if !self.lock.is_held() {
                        return;
                    }
                    tracing::info!(conn = self.id, "shutting down: waiting for the voted transaction to finish");
                    shutdown_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                }
                _ = sleep_until(shutdown_deadline) => {
                    tracing::warn!(conn = self.id, "voted transaction did not finish in {SHUTDOWN_GRACE:?}; aborting it");
                    return;
                }
                _ = sleep_until(lock_deadline) => {
                    tracing::error!(
                        critical = true,
                        conn = self.id,
                        peer = %self.address,
                        label = self.label.as_deref().unwrap_or(""),
                        storage = %self.storage_name(),
                        "Transaction timeout after {} seconds: commit lock held too long; closing the connection",
                        self.shared.config.transaction_timeout.unwrap_or_default().as_secs_f64()
                    );
                    return;
                }
                guard = LockState::granted(&mut self.lock) => {
                    if let Err(reason) = self.lock_granted(guard).await {
                        self.log_close(&reason);
                        return;
                    }
                }
                frame = frames.next() => {
                    let frame = match frame {
                        None => {
                            tracing::debug!(conn = self.id, "client closed the connection");
                            return;
                        }
                        Some(Err(err)) => {
                            tracing::warn!(conn = self.id, peer = %self.address, %err, "bad frame; closing the connection");
                            return;
                        }
                        Some(Ok(frame)) => frame,
                    };
                    self.out.set_batch(!frames.read_buffer().is_empty());
                    if let Err(reason) = self.handle_frame(&frame).await {
                        self.log_close(&reason);
                        return;
                    }
                }
            }
            if shutdown_deadline.is_some() && !self.lock.is_held() {
                return;
            }
        }
    }

    fn log_close(&self, reason: &str) {
        tracing::warn!(conn = self.id, peer = %self.address, reason, "closing the connection");
    }

    pub fn storage_name(&self) -> &str {
        self.exported
            .as_ref()
            .map(|e| e.name.as_str())
            .unwrap_or("-")
    }

    /// Decodes and runs one frame. `Err` closes the connection.
    async fn handle_frame(&mut self, frame: &[u8]) -> Result<(), String> {
        if !self.encoding_settled {
            // Python 3 clients pickle with protocol 3; anything else is a
            // Python 2 client that must be answered in kind.
            self.encoding = if frame.starts_with(&[0x80, 0x03]) {
                Encoding::Pickle3
            } else {
                Encoding::Pickle1
            };
            self.encoding_settled = true;
        }
        let message =
            wire::decode(self.encoding, frame).map_err(|e| format!("undecodable message: {e}"))?;
        if message.method == ".reply" || message.msgid == Value::Int(-1) {
            // Heartbeats (and stray replies) need no answer.
            return Ok(());
        }
        if self.z4.is_some() {
            return self.handle_z4(message).await;
        }
        let one_way = dispatch::truthy(&message.flags);
        let started = std::time::Instant::now();
        let result = if self.exported.is_none() {
            if message.method != "register" {
                return Err(format!(
                    "invalid method {:?} before register",
                    message.method
                ));
            }
            self.register(&message.args).await.map(Some)
        } else if dispatch::is_method(&message.method) {
            self.dispatch(&message.method, &message.args, &message.msgid)
                .await
        } else {
            return Err(format!("invalid method {:?}", message.method));
        };
        self.shared.metrics.rpc(&message.method, started.elapsed());
        match (result, one_way) {
            (Ok(None), _) | (Ok(Some(_)), true) => Ok(()),
            (Ok(Some(value)), false) => self.reply(&message.msgid, Ok(value)).await,
            (Err(CallError::Close(reason)), _) => Err(reason),
            (Err(CallError::Raise { class, state }), true) => Err(format!(
                "{class}: {} in one-way call {}",
                short(&state),
                message.method
            )),
            (Err(err), false) => self.reply(&message.msgid, Err(err)).await,
        }
    }

    /// Encodes a reply (or error reply) for `msgid`.
    pub fn encode_reply(
        &self,
        msgid: &Value,
        result: Result<Value, CallError>,
    ) -> Result<Vec<u8>, String> {
        let (flags, args) = match result {
            Ok(value) if self.z4.is_some() && self.encoding == Encoding::Pickle1 => {
                (0, legacy::native_keys(value))
            }
            Ok(value) => (0, value),
            Err(CallError::Raise { class, state }) => {
                self.shared.metrics.rpc_error(class);
                // Like Python, every failed call is logged except the
                // everyday ones (missing objects, conflicts).
                if matches!(
                    class,
                    "ZODB.POSException.POSKeyError"
                        | "ZODB.POSException.ConflictError"
                        | "ZODB.POSException.ReadConflictError"
                ) {
                    tracing::debug!(conn = self.id, peer = %self.address, class, state = %short(&state), "error reply");
                } else {
                    tracing::warn!(conn = self.id, peer = %self.address, class, state = %short(&state), "error reply");
                }
                if self.z4.is_some() {
                    (0, legacy::error_value(self.encoding, class, state))
                } else {
                    (2, Value::Tuple(vec![Value::Str(class.to_string()), state]))
                }
            }
            Err(CallError::Close(reason)) => return Err(reason),
        };
        let message = Message {
            msgid: msgid.clone(),
            flags: Value::Int(flags),
            method: ".reply".into(),
            args,
        };
        match wire::encode(self.encoding, &message) {
            Ok(bytes) => Ok(bytes),
            Err(err) => {
                tracing::error!(conn = self.id, %err, "cannot encode a reply");
                let fallback = Message {
                    msgid: msgid.clone(),
                    flags: Value::Int(2),
                    method: ".reply".into(),
                    args: Value::Tuple(vec![
                        Value::Str("builtins.ValueError".into()),
                        Value::Tuple(vec![Value::Str("Couldn't pickle response".into())]),
                    ]),
                };
                wire::encode(self.encoding, &fallback).map_err(|e| e.to_string())
            }
        }
    }

    /// Waits for room in the outbound queue (or the connection's end).
    pub async fn reserve(&mut self) -> Result<Slot, String> {
        tokio::select! {
            slot = self.out.reserve() => slot.map_err(|_| "connection closed".to_string()),
            _ = self.kill.cancelled() => Err("connection closed".to_string()),
        }
    }

    pub async fn reply(
        &mut self,
        msgid: &Value,
        result: Result<Value, CallError>,
    ) -> Result<(), String> {
        let bytes = self.encode_reply(msgid, result)?;
        self.reserve().await?.send(bytes);
        Ok(())
    }

    /// A one-way call to this client (`info`, `receiveBlob*`).
    pub fn encode_call(&self, method: &str, args: Vec<Value>) -> Result<Vec<u8>, String> {
        let message = Message {
            msgid: Value::Int(0),
            flags: Value::Bool(true),
            method: method.into(),
            args: Value::Tuple(args),
        };
        wire::encode(self.encoding, &message).map_err(|e| e.to_string())
    }

    /// `register(storage, read_only[, credentials])`.
    pub(super) async fn register(&mut self, args: &Value) -> Result<Value, CallError> {
        let a = Args::new("register", args)?;
        a.arity(2, 3)?;
        let name = a.text(0)?;
        let read_only = a.truthy(1);
        let Some(exported) = self.shared.storages.get(&name).cloned() else {
            return Err(CallError::value_error(format!("unknown storage: {name}")));
        };
        if !read_only && (self.shared.config.read_only || exported.storage.is_read_only()) {
            return Err(CallError::read_only());
        }
        self.read_only = read_only || exported.storage.is_read_only();
        // Joining the storage and reading its last tid must not straddle a
        // commit: the client would miss that commit's invalidation, or take
        // its getInvalidations answer as covering a commit not yet in the
        // queue. (The reply may follow later invalidations: clients queue
        // those until they are connected.)
        let visible = exported.visibility.read().await;
        exported.peers.lock().insert(
            self.id,
            Peer {
                encoding: self.encoding,
                out: self.out.clone(),
                kill: self.kill.clone(),
                address: self.address.clone(),
            },
        );
        let last = exported.storage.last_transaction();
        drop(visible);
        tracing::info!(
            conn = self.id,
            peer = %self.address,
            storage = %name,
            read_only = self.read_only,
            "registered"
        );
        self.exported = Some(exported);
        Ok(Value::tid(last))
    }

    /// Leaves the storage: aborts what the connection had in progress and
    /// releases (or stops waiting for) the commit lock.
    async fn close(&mut self) {
        self.abort_transaction().await;
        if let Some(exported) = &self.exported {
            exported.peers.lock().remove(&self.id);
        }
        self.iterators.clear();
        tracing::debug!(conn = self.id, "connection closed");
    }
}

/// `Debug` of a value, cut short for log lines.
pub fn short(value: &Value) -> String {
    let mut text = format!("{value:?}");
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
