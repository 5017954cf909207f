//! The shipped templates with a real Zope: zope.conf is loaded with Zope's
//! own WSGI schema, and a renderer started by `zeod init` (`--wait-for` the
//! ZEO server, then `runwsgi` with the rendered zope.ini) serves pages out
//! of a real ZEO server and stops on SIGTERM. Zope[wsgi] and ZEO are
//! installed once into a venv cached under ~/.cache/zeod.

#![allow(clippy::unwrap_used)] // tests may unwrap (common brief)

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The versions checked; the venv is keyed by this string.
const ZOPE_SPEC: &[&str] = &["Zope[wsgi]==6.3", "ZEO==6.2"];
/// Zope's first start (ZODB setup, product registration) is slow on a
/// busy machine; this only bounds a hang.
const PATIENCE: Duration = Duration::from_secs(180);

static VENV: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The bin directory of a venv with Zope and ZEO, created on first use.
fn zope_bin() -> PathBuf {
    let mut venv = VENV.lock().unwrap();
    if let Some(bin) = venv.as_ref() {
        return bin.clone();
    }
    let key: u32 = ZOPE_SPEC
        .join(" ")
        .bytes()
        .fold(17, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    let home = std::env::var("HOME").unwrap();
    let dir = Path::new(&home).join(format!(".cache/zeod/zope-venv-{key:08x}"));
    if !dir.join(".complete").exists() {
        let _ = fs::remove_dir_all(&dir);
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "python3 -m venv failed");
        let ok = Command::new(dir.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .args(ZOPE_SPEC)
            .status()
            .unwrap();
        assert!(ok.success(), "pip install {ZOPE_SPEC:?} failed");
        fs::write(dir.join(".complete"), "").unwrap();
    }
    *venv = Some(dir.join("bin"));
    dir.join("bin")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Renders the shipped templates into `dir/etc` for an instance in `dir`.
fn zeod_init(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zeod"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ZEOD_INIT_ZOPE__INSTANCE_HOME", dir)
        .env("ZEOD_INIT_ZOPE__CLIENT_HOME", dir)
        .env("ZEOD_INIT_ZEO__BLOB_DIR", dir.join("blobs"))
        .env("ZEOD_INIT_ZEO__VAR_DIR", dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("init")
        .arg("--templates")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/renderer/templates"))
        .arg("--output-dir")
        .arg(dir.join("etc"))
        .args(args);
    cmd
}

/// Kills (TERM, then KILL) and reaps a process on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let start = Instant::now();
        while self.0.try_wait().unwrap_or(None).is_none() {
            if start.elapsed() > Duration::from_secs(20) {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return;
            }
            sleep(Duration::from_millis(50));
        }
    }
}

/// The status line of `GET path`, or None if nothing answers yet.
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().next().map(str::to_owned)
}

#[test]
fn zope_conf_loads_with_zopes_own_schema() {
    let bin = zope_bin();
    let dir = tempfile::tempdir().unwrap();
    let out = zeod_init(
        dir.path(),
        &[
            ("ZEO_ADDRESS", "zeo:8100".to_owned()),
            ("ZEO_CLIENT_CACHE_SIZE", "256MB".to_owned()),
            ("ZEO_SHARED_BLOB_DIR", "on".to_owned()),
            ("DEBUG_MODE", "on".to_owned()),
            ("ZODB_CACHE_SIZE", "30000".to_owned()),
            ("ZOPE_FORM_MEMORY_LIMIT", "8MB".to_owned()),
        ],
        &["--render-only"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = r#"
import sys
from Zope2.Startup.options import ZopeWSGIOptions
root = ZopeWSGIOptions(configfile=sys.argv[1])().configroot
db = root.databases[0]
zeo = db.config.storage.config
print(db.name, db.config.mount_points, db.config.cache_size)
print(root.debug_mode, root.dos_protection.form_memory_limit)
print([s.address for s in zeo.server], zeo.cache_size, zeo.shared_blob_dir)
"#;
    let conf = dir.path().join("etc/zope.conf");
    let out = Command::new(bin.join("python"))
        .arg("-c")
        .arg(script)
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(&conf).unwrap()
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "main ['/'] 30000\nTrue 8388608\n[('zeo', 8100)] 268435456 True\n"
    );
}

#[test]
fn a_renderer_serves_from_a_real_zeo_server_and_stops_on_sigterm() {
    let bin = zope_bin();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let zeo_port = free_port();
    let http_port = free_port();
    fs::write(
        d.join("zeo.conf"),
        format!(
            "<zeo>\n  address 127.0.0.1:{zeo_port}\n</zeo>\n<filestorage 1>\n  path {}\n  blob-dir {}\n</filestorage>\n",
            d.join("Data.fs").display(),
            d.join("blobs").display()
        ),
    )
    .unwrap();

    // zeod init first: it must wait for the ZEO server.
    let init = zeod_init(
        d,
        &[
            ("ZEO_ADDRESS", format!("127.0.0.1:{zeo_port}")),
            ("ZEO_SHARED_BLOB_DIR", "on".to_owned()),
            ("ZEO_CLIENT_NAME", "renderer1".to_owned()),
            ("LISTEN_PORT", http_port.to_string()),
        ],
        &[
            "--wait-for",
            &format!("127.0.0.1:{zeo_port}"),
            "--wait-timeout",
            "120s",
            "--",
        ],
    )
    .arg(bin.join("runwsgi"))
    .arg("-v")
    .arg(d.join("etc/zope.ini"))
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut init = Guard(init);
    sleep(Duration::from_millis(500));
    assert!(
        init.0.try_wait().unwrap().is_none(),
        "zeod init gave up waiting"
    );
    assert!(
        get(http_port, "/").is_none(),
        "Zope started before ZEO was up"
    );

    let _zeo = Guard(
        Command::new(bin.join("runzeo"))
            .arg("-C")
            .arg(d.join("zeo.conf"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = get(http_port, "/") {
            break status;
        }
        assert!(init.0.try_wait().unwrap().is_none(), "the renderer exited");
        assert!(start.elapsed() < PATIENCE, "Zope did not answer");
        sleep(Duration::from_millis(250));
    };
    assert!(status.contains(" 200 "), "{status}");
    // The persistent client cache named by ZEO_CLIENT_NAME is in use.
    assert!(d.join("renderer1-1.zec").exists());

    kill(Pid::from_raw(init.0.id() as i32), Signal::SIGTERM).unwrap();
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = init.0.try_wait().unwrap() {
            break exit;
        }
        assert!(start.elapsed() < PATIENCE, "the renderer did not stop");
        sleep(Duration::from_millis(50));
    };
    // runwsgi installs no SIGTERM handler: Zope dies of the signal, and
    // zeod reports it the way a shell would.
    assert_eq!(exit.code(), Some(128 + Signal::SIGTERM as i32));
}
