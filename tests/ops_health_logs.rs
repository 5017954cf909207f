//! `zeod health` exit codes against a live, a read-only and a stopped
//! server (the contract of Docker's HEALTHCHECK and Kubernetes probes), and
//! `--log-format json` logs that parse line by line.

#[path = "ops_support/process.rs"]
mod process;

#[allow(clippy::unwrap_used)]
mod tests {
    use std::process::{Command, Output};

    use super::process::Zeod;

    fn health(addr: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_zeod"))
            .args(["health", addr, "--timeout", "3"])
            .output()
            .unwrap()
    }

    #[test]
    fn health_exit_codes_live_read_only_and_stopped() {
        let mut live = Zeod::start(false);
        let addr = live.addr.to_string();
        let out = health(&addr);
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("ok: Z5 server"));

        // Read-only serving is healthy: it answers ruok, refuses writers.
        let read_only = Zeod::start_with(false, &["--read-only"]);
        let out = health(&read_only.addr.to_string());
        assert!(out.status.success(), "{out:?}");

        live.stop();
        let out = health(&addr);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("unhealthy: cannot connect"));
    }

    #[test]
    fn json_logs_parse_line_by_line() {
        let mut zeod = Zeod::start_with(false, &["--log-format", "json"]);
        // A health probe and a stop add connection and shutdown events.
        assert!(health(&zeod.addr.to_string()).status.success());
        zeod.stop();
        let log = zeod.log();
        let lines: Vec<&str> = log.lines().collect();
        assert!(lines.len() >= 3, "{log}");
        let mut messages = Vec::new();
        for line in lines {
            let event: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            assert!(event["timestamp"].is_string(), "{line}");
            assert!(event["level"].is_string(), "{line}");
            messages.push(
                event["fields"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
        assert!(messages.iter().any(|m| m == "serving"), "{messages:?}");
        assert!(
            messages.iter().any(|m| m.starts_with("serving metrics")),
            "{messages:?}"
        );
        assert!(messages.iter().any(|m| m == "stopped"), "{messages:?}");
    }

    #[test]
    fn log_file_is_reopened_on_sigusr2_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("zeo.log");
        let mut zeod = Zeod::start_with(false, &["--log-file", log.to_str().unwrap()]);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains(" INFO ZEO.StorageServer serving"), "{text}");
        // logrotate's move, then its postrotate signal.
        let rotated = dir.path().join("zeo.log.1");
        std::fs::rename(&log, &rotated).unwrap();
        let pid = nix::unistd::Pid::from_raw(zeod.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2).unwrap();
        let deadline = std::time::Instant::now() + super::process::WAIT;
        while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("reopened")) {
            assert!(std::time::Instant::now() < deadline, "log not reopened");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        zeod.stop();
        let after = std::fs::read_to_string(&log).unwrap();
        assert!(after.contains("stopped"), "{after}");
        assert!(!std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("stopped"));
    }
}
