//! `zeod bench` against a real `zeod serve` (both the built binary) on a
//! free loopback port: every phase must complete operations without a
//! single error, in pickle and in msgpack. A smoke test, not a timing one.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ZEOD: &str = env!("CARGO_BIN_EXE_zeod");

/// A `zeod serve` child, killed when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Server {
    let address_file = dir.join("address");
    let child = Command::new(ZEOD)
        .args(["serve", "-a", "127.0.0.1:0", "--address-file"])
        .arg(&address_file)
        .arg("-f")
        .arg(dir.join("Data.fs"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        address: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.address.is_empty() {
        assert!(Instant::now() < deadline, "zeod serve did not start");
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "zeod serve exited"
        );
        std::thread::sleep(Duration::from_millis(50));
        server.address = std::fs::read_to_string(&address_file)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
    }
    server
}

fn bench(address: &str, extra: &[&str]) -> serde_json::Value {
    let output = Command::new(ZEOD)
        .args([
            "bench", address, "--json", "-c", "3", "-P", "4", "-d", "0.5",
        ])
        .args(["--phases", "load,commit,mixed", "--writers", "1"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "zeod bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

fn check(report: &serde_json::Value, encoding: &str) {
    assert_eq!(report["encoding"], encoding);
    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["load", "commit", "mixed/load", "mixed/commit"]);
    for phase in phases {
        assert!(phase["ops"].as_u64().unwrap() > 0, "{phase}");
        assert_eq!(phase["errors"].as_u64(), Some(0), "{phase}");
        assert!(phase["latency_us"]["p99"].as_u64().unwrap() > 0, "{phase}");
    }
}

#[test]
fn bench_runs_every_phase_against_zeod_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let report = bench(&server.address, &["--setup", "300"]);
    check(&report, "pickle");
    assert_eq!(report["setup"]["objects"], 300);
    // A second run finds the objects of the first as oids 1..=300.
    let report = bench(&server.address, &["--msgpack", "--keys", "300"]);
    check(&report, "msgpack");
}

#[test]
fn while_pid_ends_the_phase_when_that_process_exits() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let mut other = Command::new("sleep").arg("1").spawn().unwrap();
    let pid = other.id().to_string();
    let output = Command::new(ZEOD)
        .args(["bench", &server.address, "--json", "--setup", "50"])
        .args(["--keys", "50", "-d", "600", "--while-pid", &pid])
        .output()
        .unwrap();
    other.wait().unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let load = &report["phases"][0];
    assert!(load["ops"].as_u64().unwrap() > 0, "{load}");
    // The 600 s duration is only the cap: the phase ended with `sleep 1`
    // (after it became a zombie, before this test reaped it).
    assert!(load["seconds"].as_f64().unwrap() < 60.0, "{load}");
}
