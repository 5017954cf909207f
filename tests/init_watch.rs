//! `zeod init` watching its inputs, black-box: a change to the config file
//! re-renders and signals the child exactly once (debounced); rewriting a
//! file with the same outcome does not signal; a Kubernetes-style ConfigMap
//! update (the `..data` symlink swapped to a new directory) is seen; the
//! restart action starts the child again; logs are rotated and the child
//! told to reopen.

#![allow(clippy::unwrap_used)] // tests may unwrap (common brief)

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Generous bound of every wait here; a healthy run takes well under it.
const PATIENCE: Duration = Duration::from_secs(20);
/// The debounce the tests configure.
const DEBOUNCE: &str = "500ms";
/// Long enough after a re-render for a second, wrong signal to show up.
const SETTLE: Duration = Duration::from_millis(1500);

/// The child: records every SIGHUP and SIGUSR1 and each start in files
/// under $DIR, and says when its traps are set.
const CHILD: &str = r#"
    echo start >> $DIR/starts
    trap 'echo HUP >> $DIR/signals' HUP
    trap 'echo USR1 >> $DIR/signals' USR1
    trap 'exit 0' TERM
    echo ready > $DIR/ready
    while :; do sleep 0.05; done
"#;

struct Init {
    child: Child,
    dir: PathBuf,
}

impl Init {
    fn start(dir: &Path, args: &[&str]) -> Init {
        let child = Command::new(env!("CARGO_BIN_EXE_zeod"))
            .arg("init")
            .args(args)
            .args(["--", "sh", "-c", CHILD])
            .env("DIR", dir)
            .env("ZEOD_INIT_REQUIRED", "")
            .spawn()
            .unwrap();
        let init = Init {
            child,
            dir: dir.to_owned(),
        };
        wait_for(&dir.join("ready"), "ready");
        init
    }

    fn lines(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        // TERM, so zeod stops its child too; a SIGKILLed zeod would leave
        // the child running, holding the test's output open.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let start = Instant::now();
        while self.child.try_wait().unwrap_or(None).is_none() {
            if start.elapsed() > PATIENCE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            sleep(Duration::from_millis(20));
        }
    }
}

fn wait_for(path: &Path, contains: &str) {
    let start = Instant::now();
    while !fs::read_to_string(path).is_ok_and(|s| s.contains(contains)) {
        assert!(
            start.elapsed() < PATIENCE,
            "timed out waiting for {contains:?} in {} (it holds {:?})",
            path.display(),
            fs::read_to_string(path)
        );
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_config_change_rerenders_and_signals_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("t")).unwrap();
    fs::write(d.join("t/app.conf"), "greeting {{ vars.greeting }}\n").unwrap();
    let config = d.join("init.toml");
    let write_config = |greeting: &str| {
        let text = format!(
            "templates = \"{}\"\noutput_dir = \"{}\"\n[reload]\naction = \"signal\"\nsignal = \"SIGHUP\"\n\
             debounce = \"{DEBOUNCE}\"\n[vars]\ngreeting = \"{greeting}\"\n",
            d.join("t").display(),
            d.join("out").display()
        );
        fs::write(&config, text).unwrap();
    };
    write_config("hello");
    let init = Init::start(d, &["--config", config.to_str().unwrap()]);
    let output = d.join("out/app.conf");
    assert_eq!(fs::read_to_string(&output).unwrap(), "greeting hello\n");

    // A burst of writes is one change.
    write_config("there");
    sleep(Duration::from_millis(50));
    write_config("world");
    wait_for(&output, "greeting world");
    sleep(SETTLE);
    assert_eq!(init.lines("signals"), ["HUP"]);

    // Rewriting with the same outcome renders the same bytes: no signal.
    write_config("world");
    fs::write(d.join("t/app.conf"), "greeting {{ vars.greeting }}\n").unwrap();
    sleep(SETTLE);
    assert_eq!(init.lines("signals"), ["HUP"]);

    // A template change counts too; a broken one is rejected and the
    // running configuration kept.
    fs::write(d.join("t/app.conf"), "hello {{ vars.greeting }}\n").unwrap();
    wait_for(&output, "hello world");
    fs::write(d.join("t/app.conf"), "{{ vars.nope }}\n").unwrap();
    sleep(SETTLE);
    assert_eq!(fs::read_to_string(&output).unwrap(), "hello world\n");
    assert_eq!(init.lines("signals"), ["HUP", "HUP"]);
    assert_eq!(init.lines("starts"), ["start"]);
}

/// A ConfigMap volume: `<name> -> ..data/<name>`, `..data -> ..<timestamp>`.
fn configmap_version(mount: &Path, version: &str, files: &[(&str, &str)]) {
    let stamp = format!("..2026_11_25_{version}");
    fs::create_dir(mount.join(&stamp)).unwrap();
    for (name, text) in files {
        fs::write(mount.join(&stamp).join(name), text).unwrap();
        let link = mount.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    // The kubelet's atomic swap: a new link, renamed over the old one.
    let old = fs::read_link(mount.join("..data")).ok();
    symlink(&stamp, mount.join("..data_tmp")).unwrap();
    fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    if let Some(old) = old {
        fs::remove_dir_all(mount.join(old)).unwrap();
    }
}

#[test]
fn a_configmap_symlink_swap_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let templates = d.join("templates");
    let config = d.join("config");
    fs::create_dir(&templates).unwrap();
    fs::create_dir(&config).unwrap();
    configmap_version(
        &templates,
        "10_00",
        &[("app.conf", "port {{ zope.listen_port }}\n")],
    );
    configmap_version(
        &config,
        "10_00",
        &[("init.yaml", "zope:\n  listen_port: 8080\n")],
    );
    let init = Init::start(
        d,
        &[
            "--config",
            config.join("init.yaml").to_str().unwrap(),
            "--templates",
            templates.to_str().unwrap(),
            "--output-dir",
            d.join("out").to_str().unwrap(),
        ],
    );
    let output = d.join("out/app.conf");
    assert_eq!(fs::read_to_string(&output).unwrap(), "port 8080\n");

    // Default reload action: restart the child.
    configmap_version(
        &config,
        "10_05",
        &[("init.yaml", "zope:\n  listen_port: 9090\n")],
    );
    wait_for(&output, "port 9090");
    wait_for(&d.join("starts"), "start\nstart\n");

    configmap_version(
        &templates,
        "10_10",
        &[("app.conf", "listen {{ zope.listen_port }}\n")],
    );
    wait_for(&output, "listen 9090");
    wait_for(&d.join("starts"), "start\nstart\nstart\n");
    sleep(SETTLE);
    assert_eq!(init.lines("starts"), ["start", "start", "start"]);
    assert!(init.lines("signals").is_empty());
}

#[test]
fn logs_are_rotated_and_the_child_told_to_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("t")).unwrap();
    let log = d.join("child.log");
    let config = d.join("init.toml");
    fs::write(
        &config,
        format!(
            "templates = \"{}\"\nrotate_interval = \"100ms\"\n[[rotate]]\npath = \"{}\"\n\
             max_size = \"1KB\"\nkeep = 2\nsignal = \"SIGUSR1\"\n",
            d.join("t").display(),
            log.display()
        ),
    )
    .unwrap();
    let init = Init::start(d, &["--config", config.to_str().unwrap(), "--no-watch"]);
    fs::write(&log, "x".repeat(1000)).unwrap();
    sleep(Duration::from_millis(500));
    assert!(!d.join("child.log.1").exists(), "rotated below max_size");
    fs::write(&log, "y".repeat(1024)).unwrap();
    wait_for(&d.join("signals"), "USR1");
    assert_eq!(
        fs::read_to_string(d.join("child.log.1")).unwrap(),
        "y".repeat(1024)
    );
    assert!(!log.exists(), "the child reopens it, not zeod");
    assert_eq!(init.lines("signals"), ["USR1"]);
}
