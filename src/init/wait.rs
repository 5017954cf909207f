//! `--wait-for`: before starting the child, wait until each address accepts
//! a connection (TCP `HOST:PORT`, or a unix socket path), within one overall
//! timeout. Names are resolved on every attempt: in compose and Kubernetes
//! the name of a service that is not up yet does not resolve either.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::supervisor::Event;

/// Pause between attempts.
const RETRY: Duration = Duration::from_millis(250);
/// Upper bound of one connect attempt.
const CONNECT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--wait-for {address}: not accepting connections after {}s (last error: {last})", .waited.as_secs())]
    Timeout {
        address: String,
        waited: Duration,
        last: String,
    },
    #[error("stopped by {0} while waiting for {1}")]
    Interrupted(Signal, String),
}

/// Waits for every address in turn. A SIGTERM or SIGINT meanwhile ends the
/// wait (there is no child yet to pass it to).
pub fn wait_for(
    addresses: &[String],
    timeout: Duration,
    events: &Receiver<Event>,
) -> Result<(), Error> {
    let start = Instant::now();
    let deadline = start + timeout;
    for address in addresses {
        let mut logged = false;
        loop {
            let last = match attempt(address, deadline) {
                Ok(()) => break,
                Err(last) => last,
            };
            if !logged {
                tracing::info!(%address, error = %last, "waiting for address");
                logged = true;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    address: address.clone(),
                    waited: now - start,
                    last,
                });
            }
            match events.recv_timeout(RETRY.min(deadline - now)) {
                Ok(Event::Signal(signal @ (Signal::SIGTERM | Signal::SIGINT))) => {
                    return Err(Error::Interrupted(signal, address.clone()))
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(RETRY),
            }
        }
        tracing::info!(%address, waited_ms = start.elapsed().as_millis() as u64, "address is up");
    }
    Ok(())
}

fn attempt(address: &str, deadline: Instant) -> Result<(), String> {
    if address.starts_with('/') {
        return UnixStream::connect(address)
            .map(drop)
            .map_err(|e| e.to_string());
    }
    let resolved = address.to_socket_addrs().map_err(|e| e.to_string())?;
    let mut last = format!("{address} resolved to no address");
    for addr in resolved {
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(10), CONNECT);
        match TcpStream::connect_timeout(&addr, budget) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}
