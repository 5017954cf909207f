//! `zeod status [ADDRESS]`: a one-screen summary of a running ZEO server
//! (zeod or runzeo). It asks `ruok` for every storage's `server_status`
//! figures, then, per storage, registers read-only over the ZEO 5
//! protocol and calls `get_info` for the file's size and object count.
//! The summary is printed for people ([`render`]) or as JSON (`--json`).
//! Exit 0 when the server answered, 1 otherwise. `--ssl-ca` (and
//! `--ssl-certificate`) reach a server with `<ssl>` over TLS.

mod client;
mod render;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

pub use client::StatusError;
pub use render::render;

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// HOST:PORT, PORT (on this host) or a Unix socket path.
    #[arg(default_value = "127.0.0.1:8100")]
    pub address: String,
    /// Print JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    #[command(flatten)]
    pub tls: crate::tls::ClientTlsArgs,
}

/// What a server reported.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub address: String,
    /// The server's greeting: `Z5` (pickle) or `M5` (msgpack).
    pub protocol: String,
    /// In the server's order (storage names sort).
    pub storages: Vec<StorageSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageSummary {
    pub name: String,
    /// The `ruok` / `server_status` figures, as the server sent them.
    pub status: serde_json::Map<String, serde_json::Value>,
    /// From `get_info`; `None` if that call failed (the reason is in `info_error`).
    pub size: Option<u64>,
    pub objects: Option<u64>,
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info_error: Option<String>,
    /// The pack running now (zeod's `get_info` says), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<PackSummary>,
}

/// A running pack: its phase and the work done of the total (bytes).
#[derive(Debug, Clone, Serialize)]
pub struct PackSummary {
    pub phase: String,
    pub done: u64,
    pub total: u64,
    pub elapsed_seconds: f64,
}

impl PackSummary {
    /// Done / total in `[0, 1]` (0 for an empty total).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        (self.done as f64 / self.total as f64).clamp(0.0, 1.0)
    }
}

pub fn main(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs_f64(args.timeout.clamp(0.1, 3600.0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tls = crate::tls::ClientTls::from_args(&args.tls)?;
    let summary = match runtime.block_on(client::fetch(&args.address, timeout, tls.as_ref())) {
        Ok(summary) => summary,
        Err(err) => {
            eprintln!("zeod status: {}: {err}", args.address);
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let width = if std::io::stdout().is_terminal() {
            terminal_width()
        } else {
            100
        };
        print!("{}", render(&summary, now, width));
    }
    Ok(ExitCode::SUCCESS)
}

/// `COLUMNS` if set (shells export it), else 100.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}
