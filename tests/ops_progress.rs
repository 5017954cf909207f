//! Progress of long work as an operator without a terminal sees it (stderr
//! is a pipe here): `zeod check`, and `zeod pack --file` on a Data.fs
//! whose index is gone (an index rebuild, then the pack), log `progress`
//! lines with percent, rate and ETA. The lines are parsed from both log
//! formats, as a log shipper would.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

#[path = "ops_support/bigfile.rs"]
mod bigfile;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// One `progress` line, whatever the log format.
#[derive(Debug)]
struct Line {
    task: String,
    phase: String,
    percent: f64,
    done: u64,
    total: u64,
    per_second: u64,
    eta_seconds: Option<f64>,
}

fn zeod(args: &[&str], path: &Path, json: bool) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_zeod"))
        .args(args)
        .arg(path)
        .args(["--log-format", if json { "json" } else { "text" }])
        // A line every 10 ms, so a file of a few dozen MiB logs several.
        .env("ZEOD_PROGRESS_INTERVAL", "0.01")
        .env_remove("RUST_LOG")
        .env_remove("ZEOD_LOG_FORMAT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "zeod {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn parse_json(stderr: &str) -> (Vec<Line>, Vec<Value>) {
    let mut lines = Vec::new();
    let mut finished = Vec::new();
    for text in stderr.lines() {
        let event: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {text}"));
        let fields = &event["fields"];
        match fields["message"].as_str() {
            Some("progress") => {}
            Some("progress: finished") => {
                finished.push(fields.clone());
                continue;
            }
            _ => continue,
        }
        // Numbers are JSON numbers, not strings.
        lines.push(Line {
            task: fields["task"].as_str().unwrap().to_string(),
            phase: fields["phase"].as_str().unwrap_or_default().to_string(),
            percent: fields["percent"].as_f64().unwrap(),
            done: fields["done"].as_u64().unwrap(),
            total: fields["total"].as_u64().unwrap(),
            per_second: fields["per_second"].as_u64().unwrap(),
            eta_seconds: fields.get("eta_seconds").map(|v| v.as_f64().unwrap()),
        });
        assert_eq!(fields["unit"], "bytes");
    }
    (lines, finished)
}

/// `key=value` pairs after the message; values may be quoted.
fn text_fields(rest: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut rest = rest.trim_start();
    while let Some((key, after)) = rest.split_once('=') {
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap(),
            None => after.split_once(' ').unwrap_or((after, "")),
        };
        fields.insert(key.trim().to_string(), value.to_string());
        rest = after.trim_start();
    }
    fields
}

fn parse_text(stderr: &str) -> (Vec<Line>, usize) {
    let mut lines = Vec::new();
    let mut finished = 0;
    for text in stderr.lines() {
        if text.contains(" progress: finished ") {
            finished += 1;
            continue;
        }
        let Some((_, rest)) = text.split_once(": progress ") else {
            continue;
        };
        assert!(text.contains(" INFO "), "{text}");
        let f = text_fields(rest);
        let num = |k: &str| -> u64 { f[k].parse().unwrap_or_else(|_| panic!("{k} in {text}")) };
        lines.push(Line {
            task: f["task"].clone(),
            phase: f.get("phase").cloned().unwrap_or_default(),
            percent: f["percent"].parse().unwrap(),
            done: num("done"),
            total: num("total"),
            per_second: num("per_second"),
            eta_seconds: f.get("eta_seconds").map(|v| v.parse().unwrap()),
        });
    }
    (lines, finished)
}

/// The lines of `task` make sense: percent is done/total, grows, and
/// some line has a rate and an ETA.
fn check_task(lines: &[Line], task: &str, total: u64) {
    let of_task: Vec<&Line> = lines.iter().filter(|l| l.task == task).collect();
    assert!(
        !of_task.is_empty(),
        "no progress line for {task}: {lines:#?}"
    );
    let mut last = 0.0;
    for l in &of_task {
        assert!((0.0..=100.0).contains(&l.percent), "{l:?}");
        assert!(l.percent >= last, "percent went back: {of_task:#?}");
        last = l.percent;
        assert!(l.done <= l.total, "{l:?}");
        let exact = l.done as f64 * 100.0 / l.total as f64;
        assert!((l.percent - exact).abs() <= 0.05 + 1e-9, "{l:?}");
    }
    if total > 0 {
        assert_eq!(of_task[0].total, total, "{task}");
    }
    assert!(
        of_task
            .iter()
            .any(|l| l.eta_seconds.is_some() && l.per_second > 0),
        "no line with a rate and an ETA: {of_task:#?}"
    );
}

#[test]
fn check_logs_progress_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    bigfile::write(&path, 48, 200);
    let size = std::fs::metadata(&path).unwrap().len();

    let out = zeod(&["check"], &path, false);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no errors detected"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let (lines, finished) = parse_text(&stderr);
    check_task(&lines, "check", size);
    assert_eq!(finished, 1, "{stderr}");

    let out = zeod(&["check"], &path, true);
    let (lines, finished) = parse_json(&String::from_utf8(out.stderr).unwrap());
    check_task(&lines, "check", size);
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["task"], "check");
    assert!(finished[0]["elapsed_seconds"].is_number());
}

#[test]
fn index_rebuild_and_pack_log_progress_in_text_and_json() {
    for json in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        bigfile::write(&path, 48, 200);
        std::fs::remove_file(dir.path().join("Data.fs.index")).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();

        let out = zeod(&["pack", "--file"], &path, json);
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines = if json {
            parse_json(&stderr).0
        } else {
            parse_text(&stderr).0
        };
        // The rebuild reads the file after its 4-byte magic.
        check_task(&lines, "index rebuild", size - 4);
        // The pack reads the file twice: GC, then copy.
        check_task(&lines, "pack", 2 * size);
        for l in lines.iter().filter(|l| l.task == "pack") {
            assert!(
                ["gc", "copy", "swap", "cleanup"].contains(&l.phase.as_str()),
                "{l:?}"
            );
        }
        assert!(
            lines.iter().any(|l| l.task == "pack" && l.phase == "gc"),
            "{lines:#?}"
        );
        assert!(std::fs::metadata(&path).unwrap().len() < size / 10);
        assert!(dir.path().join("Data.fs.index").exists());
    }
}

#[test]
fn backup_and_restore_log_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    bigfile::write(&path, 48, 200);
    let size = std::fs::metadata(&path).unwrap().len();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let restored = dir.path().join("restored.fs");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_zeod"))
            .args(args)
            .env("ZEOD_PROGRESS_INTERVAL", "0.01")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "zeod {args:?}: {stderr}");
        parse_text(&stderr).0
    };
    let lines = run(&[
        "backup".as_ref(),
        "-r".as_ref(),
        repo.as_os_str(),
        "-f".as_ref(),
        path.as_os_str(),
    ]);
    let copy = lines
        .iter()
        .find(|l| l.task.starts_with("copy "))
        .unwrap_or_else(|| panic!("no copy progress: {lines:#?}"))
        .task
        .clone();
    check_task(&lines, &copy, size);

    let lines = run(&[
        "restore".as_ref(),
        "-r".as_ref(),
        repo.as_os_str(),
        "-o".as_ref(),
        restored.as_os_str(),
    ]);
    check_task(&lines, &format!("restore -> {}", restored.display()), size);
    assert_eq!(
        std::fs::read(&restored).unwrap(),
        std::fs::read(&path).unwrap()
    );
}

/// On a terminal the same work draws a bar instead of logging lines.
/// `script` (util-linux) gives the command a pseudo-terminal.
#[test]
fn a_terminal_gets_a_bar_instead_of_log_lines() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no `script` (util-linux) to run zeod on a pseudo-terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    bigfile::write(&path, 48, 200);
    let command = format!("{} check {}", env!("CARGO_BIN_EXE_zeod"), path.display());
    let out = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("ZEOD_PROGRESS_INTERVAL", "0.01")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("no errors detected"), "{screen}");
    // Redrawn in place: carriage returns, the task, a bar, a percentage.
    assert!(screen.contains('\r'), "{screen}");
    assert!(screen.contains("check ["), "{screen}");
    assert!(screen.contains("MiB"), "{screen}");
    assert!(
        !screen.contains(": progress "),
        "log lines on a terminal: {screen}"
    );
}
