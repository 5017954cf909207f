//! A real `zeod serve` process (the built binary) on free ports, an HTTP
//! GET for its metrics listener, and a strict reader of the Prometheus
//! text exposition so tests check what a scraper would see.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test
#![allow(dead_code)] // each test crate uses a subset

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(15);

pub struct Zeod {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    child: Option<Child>,
}

/// A port nobody listens on right now.
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Zeod {
    /// `zeod serve` on storage `Data.fs` in a fresh directory, with the
    /// metrics listener given by `--metrics` (`via_env`: by `ZEOD_METRICS`).
    pub fn start(via_env: bool) -> Zeod {
        Zeod::start_with(via_env, &[])
    }

    /// [`Zeod::start`] with more `zeod serve` arguments.
    pub fn start_with(via_env: bool, extra: &[&str]) -> Zeod {
        Zeod::start_in(tempfile::tempdir().unwrap(), via_env, extra, &[])
    }

    /// [`Zeod::start_with`] on `dir/Data.fs` (which may exist already),
    /// with more environment variables.
    pub fn start_in(
        dir: tempfile::TempDir,
        via_env: bool,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Zeod {
        let metrics = free_port();
        let address_file = dir.path().join("address");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zeod"));
        cmd.arg("serve")
            .arg("-f")
            .arg(dir.path().join("Data.fs"))
            .args(["-a", "127.0.0.1:0", "--address-file"])
            .arg(&address_file)
            .args(extra)
            .envs(envs.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("server.log")).unwrap(),
            ));
        if via_env {
            cmd.env("ZEOD_METRICS", metrics.to_string());
        } else {
            cmd.arg("--metrics").arg(metrics.to_string());
        }
        let child = cmd.spawn().unwrap();
        let mut zeod = Zeod {
            dir,
            addr: free_port(),
            metrics,
            child: Some(child),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&address_file) {
                if let Ok(addr) = text.trim().parse() {
                    zeod.addr = addr;
                    break;
                }
            }
            if let Some(status) = zeod.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("zeod serve exited with {status}: {}", zeod.log());
            }
            assert!(
                Instant::now() < deadline,
                "zeod did not start: {}",
                zeod.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The metrics listener is bound before the ZEO one: it is up.
        zeod
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn data_fs(&self) -> PathBuf {
        self.dir.path().join("Data.fs")
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + WAIT * 2;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }
}

impl Drop for Zeod {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET path` with an `Accept` header: (status line, headers, body).
pub fn http_get(addr: SocketAddr, path: &str, accept: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nUser-Agent: ops-test\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

/// One sample: metric name and labels (sorted) → value.
pub type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

/// Parses a text exposition strictly: every sample line must be
/// `name{label="value",…} number`, belong to a family announced by
/// `# TYPE`, and (OpenMetrics) the page must end with `# EOF`.
pub fn parse_exposition(text: &str, openmetrics: bool) -> Samples {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Samples::new();
    let lines: Vec<&str> = text.lines().collect();
    if openmetrics {
        assert_eq!(lines.last(), Some(&"# EOF"), "no # EOF at the end");
    }
    for line in lines {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram", "info", "unknown"].contains(&kind),
                "type {kind}"
            );
            families.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line:?}");
        assert!(!line.is_empty(), "empty line in exposition");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
            None => (series, Vec::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?}"
        );
        let family = ["_total", "_bucket", "_sum", "_count", "_info"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| families.contains_key(*base))
            })
            .unwrap_or(name);
        assert!(
            families.contains_key(family),
            "sample {name} has no # TYPE line"
        );
        let key = (name.to_string(), labels);
        assert!(!samples.contains_key(&key), "duplicate sample {line:?}");
        samples.insert(key, value);
    }
    samples
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap();
        // Label values here never contain escaped quotes.
        let (value, after) = after.split_once('"').unwrap();
        labels.push((name.to_string(), value.to_string()));
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    labels.sort();
    labels
}

/// The value of `name{labels}`, panicking with the page if it is absent.
pub fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    *samples
        .get(&(name.to_string(), labels.clone()))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {samples:#?}"))
}

/// Like [`value`], 0 when the series does not exist yet.
pub fn value_or_zero(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    samples
        .get(&(name.to_string(), labels))
        .copied()
        .unwrap_or(0.0)
}

/// Scrapes `/metrics` as Prometheus does (OpenMetrics) and parses it.
pub fn scrape(zeod: &Zeod) -> Samples {
    let (status, headers, body) = http_get(
        zeod.metrics,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: application/openmetrics-text"),
        "{headers}"
    );
    parse_exposition(&body, true)
}
