//! `zeod health [ADDRESS]`: a self-contained liveness probe for container
//! health checks (the image has no shell or Python). It connects, reads the
//! server's protocol greeting, sends `ruok`, and expects the JSON status of
//! every storage. Exit 0 if the server answered, 1 with a one-line reason
//! otherwise. A server with `<ssl>` is probed over TLS with `--ssl-ca`
//! (and `--ssl-certificate` if it requires client certificates), or the
//! same from `ZEOD_CLIENT_SSL_*`, which the image's HEALTHCHECK can use.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::connect::{connect, ConnectError, Stream};
use crate::tls::{ClientTls, ClientTlsArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// HOST:PORT, PORT, or a Unix socket path.
    #[arg(default_value = "127.0.0.1:8100")]
    pub address: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{stage}: {source}")]
    Io {
        stage: &'static str,
        source: std::io::Error,
    },
    #[error("unexpected greeting {0:?} (not a ZEO 5 server?)")]
    Greeting(String),
    #[error("status frame of {0} bytes is implausibly large")]
    TooLarge(usize),
    #[error("status is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("status is not a JSON object of storages")]
    Shape,
}

/// What a healthy server reported.
#[derive(Debug)]
pub struct Health {
    pub greeting: String,
    /// Storage name → last transaction (hex).
    pub storages: Vec<(String, String)>,
}

pub fn main(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs_f64(args.timeout.clamp(0.1, 3600.0));
    let tls = ClientTls::from_args(&args.tls)?;
    match probe_with(&args.address, timeout, tls.as_ref()) {
        Ok(health) => {
            let storages: Vec<String> = health
                .storages
                .iter()
                .map(|(name, last)| format!("{name} (last transaction {last})"))
                .collect();
            println!(
                "ok: {} server at {}; storages: {}",
                health.greeting,
                args.address,
                storages.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("unhealthy: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Connects, handshakes with `ruok`, and parses the status.
pub fn probe(address: &str, timeout: Duration) -> Result<Health, ProbeError> {
    probe_with(address, timeout, None)
}

/// [`probe`], over TLS when `tls` is given.
pub fn probe_with(
    address: &str,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<Health, ProbeError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(address, timeout, timeout, tls)?;
    // ZEO's own nagios probe does not wait for the greeting either.
    write_frame(&mut *stream, b"ruok").map_err(|source| ProbeError::Io {
        stage: "sending ruok",
        source,
    })?;
    let greeting = read_frame(&mut *stream, deadline, 16)?;
    let greeting = String::from_utf8_lossy(&greeting).into_owned();
    if !matches!(greeting.as_str(), "Z5" | "M5" | "Z4") {
        return Err(ProbeError::Greeting(greeting));
    }
    let status = read_frame(&mut *stream, deadline, 16 << 20)?;
    let json: serde_json::Value = serde_json::from_slice(&status)?;
    let storages = json
        .as_object()
        .ok_or(ProbeError::Shape)?
        .iter()
        .map(|(name, s)| {
            let last = s
                .get("last-transaction")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string();
            (name.clone(), last)
        })
        .collect();
    Ok(Health { greeting, storages })
}

fn write_frame(stream: &mut dyn Stream, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    stream.write_all(&frame)?;
    stream.flush()
}

fn read_frame(
    stream: &mut dyn Stream,
    deadline: Instant,
    limit: usize,
) -> Result<Vec<u8>, ProbeError> {
    let mut header = [0u8; 4];
    read_exact(stream, &mut header, deadline, "reading a frame header")?;
    let size = u32::from_be_bytes(header) as usize;
    if size > limit {
        return Err(ProbeError::TooLarge(size));
    }
    let mut payload = vec![0u8; size];
    read_exact(stream, &mut payload, deadline, "reading a frame")?;
    Ok(payload)
}

fn read_exact(
    stream: &mut dyn Stream,
    buf: &mut [u8],
    deadline: Instant,
    stage: &'static str,
) -> Result<(), ProbeError> {
    if Instant::now() > deadline {
        return Err(ProbeError::Io {
            stage,
            source: std::io::ErrorKind::TimedOut.into(),
        });
    }
    stream
        .read_exact(buf)
        .map_err(|source| ProbeError::Io { stage, source })
}
