//! `zeod pack`: what `zeopack` does, against a running server (`pack(t,
//! wait=True)` over ZEO 5, the server packs while it keeps serving) or
//! directly against a `Data.fs` no server has open. The pack time is
//! "now" (or today's HH:MM:SS, `-t`) minus `-d` days, as zeopack computes
//! it, except that `-t` is UTC (zeod has no time zone database).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use tracing::info;

use crate::connect::{connect, ConnectError, Stream};
use crate::ids::Tid;
use crate::progress::Reporter;
use crate::protocol::{decode_message, encode_message, Encoding, Message, Value};
use crate::storage::{self, FileStorage, OpenOptions};
use crate::telemetry::{self, LogFormat};
use crate::tls::{ClientTls, ClientTlsArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct PackArgs {
    /// Server to pack: HOST:PORT, PORT, or a Unix socket path.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub address: Option<String>,
    /// Pack this Data.fs directly instead; no server may have it open.
    #[arg(long, value_name = "DATA_FS")]
    pub file: Option<PathBuf>,
    /// Keep this many days of history (zeopack -d).
    #[arg(short, long, default_value_t = 0)]
    pub days: u32,
    /// Pack to this time of day, HH[:MM[:SS]] UTC (zeopack -t, which uses local time).
    #[arg(short, long)]
    pub time: Option<String>,
    /// Storage name on the server (zeopack -S).
    #[arg(short = 'S', long, default_value = "1")]
    pub storage: String,
    /// With --file: pack without garbage collection (keep unreachable objects).
    #[arg(long, requires = "file")]
    pub no_gc: bool,
    /// With --file: the storage's blob directory, so dropped blobs go too.
    #[arg(long, requires = "file")]
    pub blob_dir: Option<PathBuf>,
    /// With --file: remove Data.fs.old after the pack (Python keeps it).
    #[arg(long, requires = "file")]
    pub no_keep_old: bool,
    /// Give up waiting for the server's pack after this many seconds.
    #[arg(long, default_value_t = 6.0 * 3600.0)]
    pub timeout: f64,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

pub fn main(args: PackArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(args.log_format);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs_f64();
    let pack_time = pack_time(now, args.time.as_deref(), args.days)?;
    let tid = Tid::from_unix(pack_time);
    match (&args.file, &args.address) {
        (Some(path), _) => pack_file(path, tid, &args)?,
        (None, Some(address)) => {
            let timeout = Duration::from_secs_f64(args.timeout.clamp(1.0, 30.0 * 86_400.0));
            let tls = ClientTls::from_args(&args.tls)?;
            pack_server(
                address,
                tls.as_ref(),
                &args.storage,
                pack_time,
                tid,
                timeout,
            )?
        }
        (None, None) => bail!("give a server ADDRESS or --file DATA_FS"),
    }
    Ok(ExitCode::SUCCESS)
}

/// zeopack's pack time: `now`, or today's `HH[:MM[:SS]]` (UTC),
/// minus `days`.
pub fn pack_time(now: f64, time_of_day: Option<&str>, days: u32) -> anyhow::Result<f64> {
    let mut t = now;
    if let Some(text) = time_of_day {
        let parts = text
            .split(':')
            .map(|p| p.trim().parse::<i32>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("invalid time value {text:?} (HH[:MM[:SS]])"))?;
        if parts.is_empty() || parts.len() > 3 {
            bail!("invalid time value {text:?} (HH[:MM[:SS]])");
        }
        let get = |i: usize| parts.get(i).copied().unwrap_or(0);
        t = utc_time_of_day(now, get(0), get(1), get(2))
            .with_context(|| format!("invalid time value {text:?} (HH[:MM[:SS]])"))?;
    }
    Ok(t - f64::from(days) * 86_400.0)
}

/// Today's `h:m:s` UTC. zeopack uses local time; zeod works in UTC (as
/// its containers do, and as tids are), which is the same there.
fn utc_time_of_day(now: f64, hour: i32, minute: i32, second: i32) -> Option<f64> {
    let in_range =
        (0..24).contains(&hour) && (0..60).contains(&minute) && (0..60).contains(&second);
    in_range.then(|| {
        let midnight = (now / 86_400.0).floor() * 86_400.0;
        midnight + f64::from(hour * 3600 + minute * 60 + second)
    })
}

fn pack_file(path: &Path, tid: Tid, args: &PackArgs) -> anyhow::Result<()> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    let options = OpenOptions {
        create: false,
        blob_dir: args.blob_dir.clone(),
        pack_gc: !args.no_gc,
        pack_keep_old: !args.no_keep_old,
        ..OpenOptions::default()
    };
    let opened = {
        let _shown = Reporter::auto(&options.progress);
        FileStorage::open(path, options.clone())
    };
    let storage = match opened {
        Ok(s) => s,
        Err(storage::Error::Locked { path: lock }) => {
            let holder = std::fs::read_to_string(&lock).unwrap_or_default();
            bail!(
                "{} is locked by a running process{} ({}): pack it through that server \
                 instead (zeod pack HOST:PORT -S NAME), or stop it first",
                path.display(),
                match holder.split_whitespace().next() {
                    Some(pid) => format!(" (pid {pid})"),
                    None => String::new(),
                },
                lock.display()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let before = storage.size();
    info!(path = %path.display(), pack_time = %tid.timestamp_string(), gc = !args.no_gc, size = before, "packing");
    let started = Instant::now();
    let result = {
        let _shown = Reporter::auto(storage.pack_progress());
        storage.pack(tid, !args.no_gc)
    };
    let after = storage.size();
    storage.close().context("closing the storage")?;
    result.with_context(|| format!("packing {}", path.display()))?;
    info!(
        path = %path.display(),
        before,
        after,
        seconds = started.elapsed().as_secs_f64(),
        "pack done"
    );
    Ok(())
}

/// Why talking to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    // The cause is the error's source: `{:#}` prints it after this.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{stage}")]
    Io {
        stage: &'static str,
        source: std::io::Error,
    },
    #[error("server closed the connection while {0}")]
    Closed(&'static str),
    #[error("timed out while {0}")]
    Timeout(&'static str),
    #[error("unexpected greeting {0:?} (not a ZEO 5 server?)")]
    Greeting(String),
    #[error("frame of {0} bytes is implausibly large")]
    TooLarge(usize),
    #[error("bad message from the server: {0}")]
    Protocol(#[from] crate::protocol::Error),
    #[error("{method} failed on the server: {class}: {state}")]
    Raised {
        method: &'static str,
        class: String,
        state: String,
    },
}

/// A blocking ZEO 5 client connection for one-off calls.
struct Client {
    stream: Box<dyn Stream>,
    encoding: Encoding,
    /// Bytes read but not yet consumed as whole frames.
    buffer: Vec<u8>,
    next_msgid: i128,
}

/// How often a waiting client says it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_FRAME: usize = 64 << 20;

impl Client {
    fn connect(address: &str, tls: Option<&ClientTls>) -> Result<Client, ClientError> {
        let stream = connect(address, HANDSHAKE_TIMEOUT, PROGRESS_EVERY, tls)?;
        let mut client = Client {
            stream,
            encoding: Encoding::Pickle3,
            buffer: Vec::new(),
            next_msgid: 1,
        };
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let greeting = client.read_frame(deadline, "waiting for the greeting")?;
        client.encoding = match &greeting[..] {
            b"Z5" => Encoding::Pickle3,
            b"M5" => Encoding::Msgpack,
            other => {
                return Err(ClientError::Greeting(
                    String::from_utf8_lossy(other).into_owned(),
                ))
            }
        };
        // The client answers with the protocol it speaks.
        client.write_frame(&greeting)?;
        Ok(client)
    }

    fn write_frame(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let len = u32::try_from(payload.len()).map_err(|_| ClientError::TooLarge(payload.len()))?;
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        let io = |source| ClientError::Io {
            stage: "sending a request",
            source,
        };
        self.stream.write_all(&frame).map_err(io)?;
        self.stream.flush().map_err(io)
    }

    /// The next whole frame; logs every [`PROGRESS_EVERY`] while waiting.
    fn read_frame(
        &mut self,
        deadline: Instant,
        stage: &'static str,
    ) -> Result<Vec<u8>, ClientError> {
        let started = Instant::now();
        loop {
            if self.buffer.len() >= 4 {
                let mut header = [0u8; 4];
                header.copy_from_slice(&self.buffer[..4]);
                let size = u32::from_be_bytes(header) as usize;
                if size > MAX_FRAME {
                    return Err(ClientError::TooLarge(size));
                }
                if self.buffer.len() >= 4 + size {
                    let frame = self.buffer[4..4 + size].to_vec();
                    self.buffer.drain(..4 + size);
                    return Ok(frame);
                }
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(stage));
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ClientError::Closed(stage)),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    info!(
                        waited_seconds = started.elapsed().as_secs(),
                        "still {stage}"
                    );
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => return Err(ClientError::Io { stage, source }),
            }
        }
    }

    /// One synchronous call; the server's one-way messages (`info`,
    /// invalidations) that arrive meanwhile are skipped.
    fn call(
        &mut self,
        method: &'static str,
        args: Vec<Value>,
        timeout: Duration,
        stage: &'static str,
    ) -> Result<Value, ClientError> {
        let msgid = Value::Int(self.next_msgid);
        self.next_msgid += 1;
        let message = Message {
            msgid: msgid.clone(),
            flags: Value::Bool(false),
            method: method.to_owned(),
            args: Value::Tuple(args),
        };
        let payload = encode_message(self.encoding, &message)?;
        self.write_frame(&payload)?;
        let deadline = Instant::now() + timeout;
        loop {
            let frame = self.read_frame(deadline, stage)?;
            let reply = decode_message(self.encoding, &frame)?;
            if reply.method != ".reply" || reply.msgid != msgid {
                continue;
            }
            return reply
                .into_result()
                .map_err(|(class, state)| ClientError::Raised {
                    method,
                    class,
                    state: format!("{state:?}"),
                });
        }
    }
}

fn pack_server(
    address: &str,
    tls: Option<&ClientTls>,
    storage: &str,
    pack_time: f64,
    tid: Tid,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut client = Client::connect(address, tls)?;
    // zeopack registers read-only: packing is allowed on such connections.
    let last = client.call(
        "register",
        vec![Value::Str(storage.to_owned()), Value::Bool(true)],
        HANDSHAKE_TIMEOUT,
        "registering",
    )?;
    info!(
        address,
        storage,
        last_transaction = ?last.as_tid(),
        pack_time = %tid.timestamp_string(),
        "packing on the server"
    );
    let started = Instant::now();
    client.call(
        "pack",
        vec![Value::Float(pack_time), Value::Bool(true)],
        timeout,
        "waiting for the server's pack",
    )?;
    info!(
        address,
        storage,
        seconds = started.elapsed().as_secs_f64(),
        "pack done"
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn days_go_back_from_now() {
        assert_eq!(pack_time(1_000_000.0, None, 0).unwrap(), 1_000_000.0);
        assert_eq!(
            pack_time(1_000_000.0, None, 2).unwrap(),
            1_000_000.0 - 172_800.0
        );
    }

    #[test]
    fn time_of_day_is_today_and_validated() {
        let now = 1_700_000_000.0;
        let at = pack_time(now, Some("3"), 0).unwrap();
        let at_full = pack_time(now, Some("03:00:00"), 0).unwrap();
        assert_eq!(at, at_full);
        // 2023-11-14 03:00 UTC.
        assert_eq!(at, 1_699_930_800.0);
        assert_eq!(pack_time(now, Some("03:00:00"), 1).unwrap(), at - 86_400.0);
        assert!(pack_time(now, Some("1:2:3:4"), 0).is_err());
        assert!(pack_time(now, Some("noon"), 0).is_err());
        assert!(pack_time(now, Some("24"), 0).is_err());
    }
}
