//! `zeod init` settings, black-box: layering (defaults < file < env <
//! command line), the plone environment names, errors that name the
//! variable and stop init before the child runs, rendered file modes and
//! owners, and `--wait-for`.

#![allow(clippy::unwrap_used)] // tests may unwrap (common brief)

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

/// A tempdir with a template dir `t/`, an output dir `out/`, and the
/// template `probe.txt` echoing the given body.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(template: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("t")).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        fs::write(dir.path().join("t/probe.txt"), template).unwrap();
        Setup { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `zeod init` with a clean environment plus `env`.
    fn init(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zeod"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("init")
            .arg("--templates")
            .arg(self.path("t"))
            .arg("--output-dir")
            .arg(self.path("out"))
            .arg("--no-watch");
        cmd.envs(env.iter().copied()).args(args);
        cmd.output().unwrap()
    }

    fn rendered(&self) -> String {
        fs::read_to_string(self.path("out/probe.txt")).unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn plone_env_names_reach_the_templates() {
    let s = Setup::new(
        "{% for s in zeo.address %}server {{ s }}\n{% endfor %}\
         storage {{ zeo.storage }}\ncache {{ zeo.cache_size }}\nblobcache {{ zeo.blob_cache_size }}\n\
         shared {{ zeo.shared_blob_dir }}\nro {{ zeo.read_only }}\nfallback {{ zeo.read_only_fallback }}\n\
         drop {{ zeo.drop_cache_rather_verify }}\nclient {{ zeo.client_name }}\nport {{ zope.listen_port }}\n\
         threads {{ zope.threads }}\nzodb {{ zope.zodb_cache_size }}\ndebug {{ zope.debug_mode }}\n\
         form {{ zope.form_memory_limit }}\nsite {{ vars.site_id }} {{ site_id }}\n",
    );
    let out = s.init(
        &[
            ("ZEO_ADDRESS", "zeo1:8100, zeo2:8100"),
            ("ZEO_STORAGE", "main"),
            ("ZEO_CLIENT_CACHE_SIZE", "256mb"),
            ("ZEO_CLIENT_BLOB_CACHE_SIZE", "500000000"),
            ("ZEO_SHARED_BLOB_DIR", "on"),
            ("ZEO_READ_ONLY", "true"),
            ("ZEO_CLIENT_READ_ONLY_FALLBACK", "yes"),
            ("ZEO_DROP_CACHE_RATHER_VERIFY", "1"),
            ("ZEO_CLIENT_NAME", "renderer1"),
            ("LISTEN_PORT", "9080"),
            ("ZOPE_THREADS", "4"),
            ("ZODB_CACHE_SIZE", "30000"),
            ("DEBUG_MODE", "off"),
            ("ZOPE_FORM_MEMORY_LIMIT", "8MB"),
            ("ZEOD_VAR_SITE_ID", "Plone"),
        ],
        &["--render-only"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.rendered(),
        "server zeo1:8100\nserver zeo2:8100\nstorage main\ncache 256MB\nblobcache 500000000\n\
         shared True\nro True\nfallback True\ndrop True\nclient renderer1\nport 9080\nthreads 4\n\
         zodb 30000\ndebug False\nform 8MB\nsite Plone Plone\n"
    );
}

#[test]
fn layers_override_in_order_defaults_file_env_command_line() {
    let s = Setup::new(
        "cache {{ zeo.cache_size }}\nstorage {{ zeo.storage }}\nport {{ zope.listen_port }}\n\
         threads {{ zope.threads }}\ngrace {{ grace }}\n",
    );
    let config = s.path("init.toml");
    fs::write(
        &config,
        "grace = \"3s\"\n[zeo]\naddress = \"zeo:8100\"\ncache_size = \"64MB\"\nstorage = 2\n\
         [zope]\nlisten_port = 9000\nthreads = 3\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();

    // The file over the defaults (threads, cache), the plone name over the
    // file (storage), our prefixed name over the plone one (port), the
    // command line over everything (grace).
    let out = s.init(
        &[
            ("ZEOD_INIT_CONFIG", config),
            ("ZEO_STORAGE", "from-env"),
            ("LISTEN_PORT", "7000"),
            ("ZEOD_INIT_ZOPE__LISTEN_PORT", "7001"),
            ("ZEOD_INIT_GRACE", "5s"),
        ],
        &["--render-only", "--grace", "1500ms"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.rendered(),
        "cache 64MB\nstorage from-env\nport 7001\nthreads 3\ngrace 1500\n"
    );

    // Nothing but defaults (and the one required value).
    let out = s.init(&[("ZEO_ADDRESS", "zeo:8100")], &["--render-only"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.rendered(),
        "cache 128MB\nstorage 1\nport 8080\nthreads 2\ngrace 8000\n"
    );
}

#[test]
fn yaml_config_files_are_read_by_extension() {
    let s = Setup::new("{{ zeo.address | join(',') }} {{ zeo.read_only }} {{ vars.color }}\n");
    let config = s.path("init.yaml");
    fs::write(
        &config,
        "zeo:\n  address: [\"a:1\", \"b:2\"]\n  read_only: on\nvars:\n  color: blue\n",
    )
    .unwrap();
    let out = s.init(
        &[],
        &["--render-only", "--config", config.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.rendered(), "a:1,b:2 True blue\n");
}

#[test]
fn a_bad_value_names_its_variable_and_no_child_runs() {
    let s = Setup::new("x\n");
    let marker = s.path("child-ran");
    let marker = marker.to_str().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("ZEO_ADDRESS", "zeo:8100"),
                ("ZEO_CLIENT_CACHE_SIZE", "lots"),
            ],
            "ZEO_CLIENT_CACHE_SIZE: expected a size like 128MB, got 'lots'",
        ),
        (
            &[("ZEO_ADDRESS", "zeo")],
            "ZEO_ADDRESS: expected HOST:PORT (or a unix socket path), got 'zeo'",
        ),
        (
            &[("ZEO_ADDRESS", "zeo:8100"), ("LISTEN_PORT", "99999")],
            "LISTEN_PORT: expected a whole number, got '99999'",
        ),
        (
            &[
                ("ZEO_ADDRESS", "zeo:8100"),
                ("ZEOD_INIT_ZEO__READ_ONLY", "maybe"),
            ],
            "ZEOD_INIT_ZEO__READ_ONLY: expected a boolean",
        ),
        (
            &[
                ("ZEO_ADDRESS", "zeo:8100"),
                ("ZEOD_INIT_ZEO__CACHE_SIZ", "1MB"),
            ],
            "ZEOD_INIT_ZEO__CACHE_SIZ: unknown setting",
        ),
        (
            &[],
            "ZEO_ADDRESS or ZEOD_INIT_ZEO__ADDRESS: required but not set",
        ),
    ];
    for (env, message) in cases {
        let out = s.init(env, &["--", "touch", marker]);
        assert_eq!(out.status.code(), Some(78), "{env:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{env:?}: {}", stderr(&out));
        assert!(!Path::new(marker).exists(), "{env:?}: the child ran");
    }
    // The control: with good values the same command does run.
    let out = s.init(&[("ZEO_ADDRESS", "zeo:8100")], &["--", "touch", marker]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(Path::new(marker).exists());
}

#[test]
fn a_bad_value_in_the_file_names_the_key_and_the_file() {
    let s = Setup::new("x\n");
    let config = s.path("init.toml");
    fs::write(
        &config,
        "[zeo]\naddress = \"zeo:8100\"\ncache_size = \"huge\"\n",
    )
    .unwrap();
    let out = s.init(
        &[],
        &["--render-only", "--config", config.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(78));
    let expected = format!(
        "zeo.cache_size in {}: expected a size like 128MB, got 'huge'",
        config.display()
    );
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));

    let out = s.init(
        &[],
        &["--render-only", "--config", "/nonexistent/init.toml"],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("config file /nonexistent/init.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_undefined_template_variable_fails_the_render_before_any_output() {
    let s = Setup::new("{{ zeo.adress }}\n");
    fs::write(s.path("t/good.txt"), "good\n").unwrap();
    let out = s.init(&[("ZEO_ADDRESS", "zeo:8100")], &["--render-only"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("template probe.txt"),
        "{}",
        stderr(&out)
    );
    // All templates render in memory first: none was written.
    assert!(!s.path("out/good.txt").exists());
}

#[test]
fn render_targets_get_the_asked_path_mode_and_owner() {
    let s = Setup::new("secret {{ zeo.storage }}\n");
    let out_path = s.path("deep/er/probe.conf");
    let config = s.path("init.toml");
    fs::write(
        &config,
        format!(
            "required = []\n[render.\"probe.txt\"]\noutput = \"{}\"\nmode = \"0640\"\nowner = \"1234:5678\"\n",
            out_path.display()
        ),
    )
    .unwrap();
    let out = s.init(
        &[],
        &["--render-only", "--config", config.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&out_path).unwrap(), "secret 1\n");
    let meta = fs::metadata(&out_path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    // Only the mapped template is rendered, and no temp file is left over.
    assert!(!s.path("out/probe.txt").exists());
    let leftovers: Vec<_> = fs::read_dir(out_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("probe.conf")]);

    // A decimal mode is ambiguous and refused.
    fs::write(
        &config,
        "required = []\n[render.\"probe.txt\"]\noutput = \"/tmp/x\"\nmode = 640\n",
    )
    .unwrap();
    let out = s.init(
        &[],
        &["--render-only", "--config", config.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("render.probe.txt.mode in"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn wait_for_gives_up_with_a_clear_message_and_no_child() {
    let s = Setup::new("x\n");
    let marker = s.path("child-ran");
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let out = s.init(
        &[("ZEOD_INIT_REQUIRED", "")],
        &[
            "--wait-for",
            &address,
            "--wait-timeout",
            "1s",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "--wait-for {address}: not accepting connections after"
        )),
        "{}",
        stderr(&out)
    );
    assert!(!marker.exists());

    // With a listener there, the child starts.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let out = s.init(
        &[("ZEOD_INIT_REQUIRED", "")],
        &[
            "--wait-for",
            &address,
            "--wait-timeout",
            "10s",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(marker.exists());
}

#[test]
fn a_missing_command_exits_127() {
    let s = Setup::new("x\n");
    let out = s.init(&[("ZEOD_INIT_REQUIRED", "")], &["--", "/nonexistent/zope"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/zope"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn user_drops_root_before_exec_of_the_child() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("not root: --user is not exercised");
        return;
    }
    let s = Setup::new("x\n");
    let out = s.init(
        &[("ZEOD_INIT_REQUIRED", "")],
        &[
            "--user",
            "1234:5678",
            "--",
            "sh",
            "-c",
            "id -u; id -g; id -G",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // No supplementary group of root's survives.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1234\n5678\n5678\n");

    let out = s.init(
        &[("ZEOD_INIT_REQUIRED", "")],
        &["--user", "plone", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("--user: expected a numeric uid:gid like 500:500, got 'plone'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_blob_dir_layout_contradicting_shared_blob_dir_stops_init() {
    let s = Setup::new("x\n");
    let blobs = s.path("blobs");
    fs::create_dir(&blobs).unwrap();
    let blob_dir = blobs.to_str().unwrap();
    let run = |shared: &str| {
        s.init(
            &[
                ("ZEO_ADDRESS", "zeo:8100"),
                ("ZEO_SHARED_BLOB_DIR", shared),
                ("ZEOD_INIT_ZEO__BLOB_DIR", blob_dir),
            ],
            &["--render-only"],
        )
    };
    // The server's directory used as a private cache, and the reverse.
    fs::write(blobs.join(".layout"), "bushy\n").unwrap();
    let out = run("off");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("ZEO_SHARED_BLOB_DIR is off, but"),
        "{}",
        stderr(&out)
    );
    assert!(run("on").status.success());
    fs::write(blobs.join(".layout"), "zeocache\n").unwrap();
    let out = run("on");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("ZEO_SHARED_BLOB_DIR is on, but"),
        "{}",
        stderr(&out)
    );
    assert!(run("off").status.success());
}
