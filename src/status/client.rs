//! The two conversations `zeod status` has with a server: `ruok` (every
//! storage's status as JSON, no registration) and, per storage, a read-only
//! `register` + `get_info` over the ZEO 5 protocol with our own codec.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::codec::Framed;

use super::{PackSummary, StorageSummary, Summary};
use crate::config::Address;
use crate::protocol::{decode_message, encode_message, Encoding, FrameCodec, Message, Value};
use crate::tls::ClientTls;

/// A status reply larger than this is not a status reply.
const MAX_FRAME: u32 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("bad address (expected HOST:PORT, PORT or a socket path)")]
    Address,
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the server closed the connection {0}")]
    Closed(&'static str),
    #[error("protocol: {0}")]
    Protocol(#[from] crate::protocol::Error),
    #[error("unexpected greeting {0:?} (not a ZEO 5 server?)")]
    Greeting(String),
    #[error("ruok answer is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("ruok answer is not a JSON object of storages")]
    Shape,
    #[error("{method} raised {class}")]
    Raised { method: String, class: String },
}

/// Asks the server at `address` for everything the summary shows, over
/// TLS when `tls` is given.
pub async fn fetch(
    address: &str,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<Summary, StatusError> {
    tokio::time::timeout(timeout, fetch_inner(address, tls))
        .await
        .map_err(|_| StatusError::Timeout(timeout))?
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn open(
    target: &Address,
    address: &str,
    tls: Option<&ClientTls>,
) -> Result<Box<dyn Io>, StatusError> {
    let stream: Box<dyn Io> = match target {
        Address::Tcp(addr) => Box::new(connect_tcp(*addr).await?),
        Address::Unix(path) => Box::new(
            UnixStream::connect(path)
                .await
                .map_err(StatusError::Connect)?,
        ),
    };
    match tls {
        Some(tls) => Ok(Box::new(
            tls.connect(address, stream)
                .await
                .map_err(StatusError::Tls)?,
        )),
        None => Ok(stream),
    }
}

async fn fetch_inner(address: &str, tls: Option<&ClientTls>) -> Result<Summary, StatusError> {
    let target = Address::parse(address).map_err(|_| StatusError::Address)?;
    let (protocol, status) = ruok(open(&target, address, tls).await?).await?;
    let mut storages = Vec::new();
    for (name, figures) in status {
        let status = match figures {
            serde_json::Value::Object(map) => map,
            _ => return Err(StatusError::Shape),
        };
        let info = match open(&target, address, tls).await {
            Ok(stream) => get_info(stream, &name).await,
            Err(err) => Err(err),
        };
        let (info, info_error) = match info {
            Ok(info) => (info, None),
            Err(err) => (Vec::new(), Some(err.to_string())),
        };
        let field = |key: &str| info.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let number = |key: &str| match field(key) {
            Some(Value::Int(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        storages.push(StorageSummary {
            size: number("size"),
            objects: number("length"),
            path: match field("name") {
                Some(Value::Str(s)) => Some(s.clone()),
                _ => None,
            },
            pack: field("zeod_pack").and_then(pack_summary),
            name,
            status,
            info_error,
        });
    }
    Ok(Summary {
        address: address.to_string(),
        protocol,
        storages,
    })
}

/// The `zeod_pack` dict of `get_info`; `None` if it is not one.
fn pack_summary(value: &Value) -> Option<PackSummary> {
    let Value::Dict(entries) = value else {
        return None;
    };
    let field = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(k) if k == key))
            .map(|(_, v)| v)
    };
    let number = |key: &str| match field(key) {
        Some(Value::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    };
    Some(PackSummary {
        phase: match field("phase") {
            Some(Value::Str(s)) => s.clone(),
            _ => return None,
        },
        done: number("done")?,
        total: number("total")?,
        elapsed_seconds: match field("elapsed") {
            Some(Value::Float(f)) => *f,
            _ => 0.0,
        },
    })
}

async fn connect_tcp(addr: std::net::SocketAddr) -> Result<TcpStream, StatusError> {
    // `0.0.0.0:8100` is how servers are configured; here it means this host.
    let addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    TcpStream::connect(addr).await.map_err(StatusError::Connect)
}

type Conn<S> = Framed<S, FrameCodec>;

async fn next_frame<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    stage: &'static str,
) -> Result<Vec<u8>, StatusError> {
    match conn.next().await {
        Some(frame) => Ok(frame?.to_vec()),
        None => Err(StatusError::Closed(stage)),
    }
}

/// The greeting and the `ruok` JSON (storage name → status figures).
async fn ruok<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
) -> Result<(String, serde_json::Map<String, serde_json::Value>), StatusError> {
    let mut conn = Framed::new(stream, FrameCodec::with_max_frame(MAX_FRAME));
    conn.send(&b"ruok"[..]).await?;
    let greeting = next_frame(&mut conn, "before its greeting").await?;
    let greeting = String::from_utf8_lossy(&greeting).into_owned();
    if !matches!(greeting.as_str(), "Z5" | "M5") {
        return Err(StatusError::Greeting(greeting));
    }
    let status = next_frame(&mut conn, "instead of answering ruok").await?;
    match serde_json::from_slice(&status)? {
        serde_json::Value::Object(map) => Ok((greeting, map)),
        _ => Err(StatusError::Shape),
    }
}

/// `register(name, read_only=True)` then `get_info()`: the info dict as
/// (key, value) pairs.
async fn get_info<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    name: &str,
) -> Result<Vec<(String, Value)>, StatusError> {
    let mut conn = Framed::new(stream, FrameCodec::with_max_frame(MAX_FRAME));
    let greeting = next_frame(&mut conn, "before its greeting").await?;
    let encoding = match &greeting[..] {
        b"Z5" => Encoding::Pickle3,
        b"M5" => Encoding::Msgpack,
        other => return Err(StatusError::Greeting(String::from_utf8_lossy(other).into())),
    };
    conn.send(&greeting[..]).await?;
    call(
        &mut conn,
        encoding,
        1,
        "register",
        vec![Value::Str(name.to_string()), Value::Bool(true)],
    )
    .await?;
    let info = call(&mut conn, encoding, 2, "get_info", vec![]).await?;
    let Value::Dict(entries) = info else {
        return Ok(Vec::new());
    };
    Ok(entries
        .into_iter()
        .filter_map(|(k, v)| match k {
            Value::Str(k) => Some((k, v)),
            Value::Bytes(k) => Some((String::from_utf8_lossy(&k).into_owned(), v)),
            _ => None,
        })
        .collect())
}

/// A synchronous call: skips the server's one-way calls (invalidations,
/// `info`) until the reply to `msgid` arrives.
async fn call<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    encoding: Encoding,
    msgid: i128,
    method: &str,
    args: Vec<Value>,
) -> Result<Value, StatusError> {
    let request = Message {
        msgid: Value::Int(msgid),
        flags: Value::Int(0),
        method: method.to_string(),
        args: Value::Tuple(args),
    };
    conn.send(&encode_message(encoding, &request)?[..]).await?;
    loop {
        let frame = next_frame(conn, "before replying").await?;
        let message = decode_message(encoding, &frame)?;
        if message.method != ".reply" || message.msgid != Value::Int(msgid) {
            continue;
        }
        if message.flags == Value::Int(2) {
            let class = match &message.args {
                Value::Tuple(items) => match items.first() {
                    Some(Value::Str(class)) => class.clone(),
                    _ => "an exception".to_string(),
                },
                _ => "an exception".to_string(),
            };
            return Err(StatusError::Raised {
                method: method.to_string(),
                class,
            });
        }
        return Ok(message.args);
    }
}
