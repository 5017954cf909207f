//! How zeod's own blocking tools (`health`, `pack`) reach a ZEO server:
//! the address as they take it on the command line, a bounded connect,
//! and TLS over it when asked.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::tls::{ClientTls, TlsError};

/// A connected stream, plain or TLS, TCP or Unix.
pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad address {0:?}")]
    Address(String),
    // The cause is in the message (not a `source`): `health` prints one
    // line, `pack` the whole chain, and neither should repeat it.
    #[error("cannot connect to {address}: {error}")]
    Connect {
        address: String,
        error: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Connects to `address` — `HOST:PORT`, a bare `PORT` on this host, or a
/// Unix socket path (anything with a `/`) — within `connect_timeout`; each
/// later read or write gives up after `io_timeout`. Over TLS (handshake
/// done) when `tls` is given.
pub fn connect(
    address: &str,
    connect_timeout: Duration,
    io_timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<Box<dyn Stream>, ConnectError> {
    let connect_error = |error| ConnectError::Connect {
        address: address.to_string(),
        error,
    };
    let stream: Box<dyn Stream> = if address.contains('/') {
        let stream = UnixStream::connect(address).map_err(connect_error)?;
        stream
            .set_read_timeout(Some(io_timeout))
            .map_err(connect_error)?;
        stream
            .set_write_timeout(Some(io_timeout))
            .map_err(connect_error)?;
        Box::new(stream)
    } else {
        let with_host = if address.contains(':') {
            address.to_string()
        } else {
            format!("127.0.0.1:{address}")
        };
        let target = with_host
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| ConnectError::Address(address.to_string()))?;
        let stream = TcpStream::connect_timeout(&target, connect_timeout).map_err(connect_error)?;
        stream
            .set_read_timeout(Some(io_timeout))
            .map_err(connect_error)?;
        stream
            .set_write_timeout(Some(io_timeout))
            .map_err(connect_error)?;
        // Small request/reply frames.
        stream.set_nodelay(true).map_err(connect_error)?;
        Box::new(stream)
    };
    match tls {
        Some(tls) => Ok(Box::new(tls.connect_blocking(address, stream)?)),
        None => Ok(stream),
    }
}
