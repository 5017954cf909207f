//! One benchmark client connection: the Z5/M5 handshake, `register`, and
//! raw frame I/O for the workloads. Requests are written in batches and
//! replies matched by msgid; one-way calls the server sends on its own
//! (`invalidateTransaction`, `info`) are skipped.

use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use crate::ids::Tid;
use crate::protocol::{decode_message, encode_message, Encoding, FrameCodec, Message, Value};
use crate::tls::ClientTls;

/// Plain TCP halves or TLS ones: the same code measures both.
type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// A server that has not answered for this long is considered hung.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("server closed the connection")]
    Closed,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from the server: {0}")]
    Protocol(#[from] crate::protocol::Error),
    #[error("unexpected greeting {0:?}")]
    Greeting(String),
    #[error("{method} failed on the server: {class} {state}")]
    Raised {
        method: String,
        class: String,
        state: String,
    },
    #[error("unexpected reply to {method}: {value}")]
    Unexpected { method: String, value: String },
}

/// A decoded reply.
pub struct Reply {
    pub msgid: Value,
    /// `Err((class, state))` for a ZEO 5 error reply.
    pub result: Result<Value, (String, Value)>,
}

impl Reply {
    /// The result of a call to `method`, errors turned into [`ConnError`].
    pub fn into_value(self, method: &str) -> Result<Value, ConnError> {
        self.result.map_err(|(class, state)| ConnError::Raised {
            method: method.to_owned(),
            class,
            state: format!("{state:?}"),
        })
    }
}

pub struct Conn {
    pub encoding: Encoding,
    frames: FramedRead<Reader, FrameCodec>,
    writer: Writer,
    /// Frames queued by [`Conn::queue`], written by [`Conn::flush`].
    pending: Vec<u8>,
    next_msgid: i64,
    /// What `register` returned.
    pub last_tid: Tid,
}

impl Conn {
    /// Connects, handshakes (answering `M5` for msgpack, `Z5` otherwise:
    /// servers pick the encoding from the client's answer) and registers
    /// on `storage` read-write; over TLS when `tls` is given.
    pub async fn open(
        address: &str,
        storage: &str,
        msgpack: bool,
        tls: Option<&ClientTls>,
    ) -> Result<Conn, ConnError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| ConnError::Timeout("connecting"))?
            .map_err(|source| ConnError::Connect {
                address: address.to_owned(),
                source,
            })?;
        // Requests are small and latency is what we measure.
        stream.set_nodelay(true)?;
        let (reader, writer): (Reader, Writer) = match tls {
            Some(tls) => {
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(address, stream))
                    .await
                    .map_err(|_| ConnError::Timeout("in the TLS handshake"))??;
                let (reader, writer) = tokio::io::split(stream);
                (Box::new(reader), Box::new(writer))
            }
            None => {
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
        };
        let mut conn = Conn {
            encoding: if msgpack {
                Encoding::Msgpack
            } else {
                Encoding::Pickle3
            },
            frames: FramedRead::with_capacity(reader, FrameCodec::new(), 64 * 1024),
            writer,
            pending: Vec::with_capacity(16 * 1024),
            next_msgid: 1,
            last_tid: Tid::ZERO,
        };
        let greeting = conn.read_frame("waiting for the greeting").await?;
        if !matches!(&greeting[..], b"Z5" | b"M5") {
            return Err(ConnError::Greeting(
                String::from_utf8_lossy(&greeting).into_owned(),
            ));
        }
        let answer: &[u8] = if msgpack { b"M5" } else { b"Z5" };
        conn.queue_payload(answer);
        let last = conn
            .call(
                "register",
                vec![Value::Str(storage.to_owned()), Value::Bool(false)],
            )
            .await?;
        conn.last_tid = last.as_tid().ok_or_else(|| ConnError::Unexpected {
            method: "register".into(),
            value: format!("{last:?}"),
        })?;
        Ok(conn)
    }

    /// A fresh integer msgid.
    pub fn msgid(&mut self) -> i64 {
        let id = self.next_msgid;
        self.next_msgid += 1;
        id
    }

    /// Encodes a call (sync unless `one_way`) into the write buffer.
    pub fn queue_call(
        &mut self,
        msgid: Value,
        one_way: bool,
        method: &str,
        args: Vec<Value>,
    ) -> Result<(), ConnError> {
        let message = Message {
            msgid,
            flags: Value::Bool(one_way),
            method: method.to_owned(),
            args: Value::Tuple(args),
        };
        let payload = encode_message(self.encoding, &message)?;
        self.queue_payload(&payload);
        Ok(())
    }

    /// Queues an already encoded payload as one frame.
    pub fn queue_payload(&mut self, payload: &[u8]) {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.pending.extend_from_slice(&len.to_be_bytes());
        self.pending.extend_from_slice(payload);
    }

    /// Queues a whole pre-built frame (header included).
    pub fn queue_frame(&mut self, frame: &[u8]) {
        self.pending.extend_from_slice(frame);
    }

    /// Writes everything queued in one go.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(REPLY_TIMEOUT, self.writer.write_all(&self.pending))
            .await
            .map_err(|_| ConnError::Timeout("writing requests"))??;
        self.pending.clear();
        Ok(())
    }

    async fn read_frame(&mut self, stage: &'static str) -> Result<bytes::BytesMut, ConnError> {
        match tokio::time::timeout(REPLY_TIMEOUT, self.frames.next()).await {
            Err(_) => Err(ConnError::Timeout(stage)),
            Ok(None) => Err(ConnError::Closed),
            Ok(Some(frame)) => Ok(frame?),
        }
    }

    /// The next reply, skipping the server's one-way calls.
    pub async fn next_reply(&mut self) -> Result<Reply, ConnError> {
        loop {
            let frame = self.read_frame("waiting for a reply").await?;
            let message = decode_message(self.encoding, &frame)?;
            if message.method != ".reply" {
                continue;
            }
            return Ok(Reply {
                msgid: message.msgid.clone(),
                result: message.into_result(),
            });
        }
    }

    /// One synchronous call, waited for. Anything queued before goes out
    /// with it.
    pub async fn call(&mut self, method: &str, args: Vec<Value>) -> Result<Value, ConnError> {
        let id = self.msgid();
        self.queue_call(Value::Int(id.into()), false, method, args)?;
        self.flush().await?;
        loop {
            let reply = self.next_reply().await?;
            if reply.msgid == Value::Int(id.into()) {
                return reply.into_value(method);
            }
        }
    }
}
