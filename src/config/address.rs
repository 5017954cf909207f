//! The listening address in runzeo's forms.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::ConfigError;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Address {
    /// runzeo's forms: `PORT`, `:PORT`, `HOST:PORT`, `[V6]:PORT`, or a path
    /// (anything containing `/`).
    pub fn parse(text: &str) -> Result<Address, ConfigError> {
        let text = text.trim();
        let bad = || ConfigError::Address {
            address: text.to_string(),
        };
        if text.contains('/') {
            return Ok(Address::Unix(PathBuf::from(text)));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => ("", text),
        };
        // ZConfig accepts `HOST: PORT` (ZEO's SSLConnectionTests write it).
        let port: u16 = port.trim().parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = match host {
            "" => "0.0.0.0",
            "localhost" => "127.0.0.1",
            host => host,
        };
        if let Ok(ip) = host.parse() {
            return Ok(Address::Tcp(SocketAddr::new(ip, port)));
        }
        use std::net::ToSocketAddrs;
        (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(Address::Tcp)
            .ok_or_else(bad)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            Address::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}
