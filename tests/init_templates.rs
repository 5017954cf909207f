//! The templates shipped in docker/renderer/templates, rendered with
//! plone-style environment and checked by their real consumers: the
//! `<zodb_db>` section of zope.conf is loaded by ZConfig with ZODB's own
//! schema, custom_zodb.py's arguments are bound against ZEO's real
//! `ClientStorage` signature (both in the pinned Python venv), and
//! haproxy.cfg is checked by `haproxy -c` when haproxy is installed.

#![allow(clippy::unwrap_used)] // tests may unwrap (common brief)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/renderer/templates")
}

fn render(out: &Path, env: &[(&str, &str)]) {
    let result = Command::new(env!("CARGO_BIN_EXE_zeod"))
        .env_clear()
        .envs(env.iter().copied())
        .arg("init")
        .arg("--render-only")
        .arg("--templates")
        .arg(templates())
        .arg("--output-dir")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// The pinned venv's python (tests/python/venv.sh creates it once).
fn python() -> String {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/venv.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Loads the `<zodb_db main>` section with ZConfig and ZODB's schema and
/// prints what ZODB would open, one `key value` per line. `zodb_db` is
/// Zope's extension of ZODB's `zodb` section type (it adds `mount-point`
/// and friends), so the section is checked as `zodb` without those keys.
const ZCONFIG_CHECK: &str = r#"
import io, re, sys
import ZConfig
schema = ZConfig.loadSchemaFile(io.StringIO("""
<schema>
  <import package="ZODB"/>
  <multisection type="ZODB.database" name="*" attribute="databases"/>
</schema>"""))
text = open(sys.argv[1]).read()
section = re.search(r"<zodb_db main>(.*?)</zodb_db>", text, re.S).group(1)
assert "\n    mount-point /\n" in section, section
section = section.replace("\n    mount-point /\n", "\n")
section = "<zodb main>" + section + "</zodb>"
conf, _ = ZConfig.loadConfigFile(schema, io.StringIO(section))
db = conf.databases[0].config
zeo = db.storage.config
print("db.cache_size", db.cache_size)
print("zeo.type", type(db.storage).__name__)
for server in zeo.server:
    print("zeo.server", server.address)
for key in ("storage", "name", "client", "var", "cache_size", "blob_dir",
            "shared_blob_dir", "blob_cache_size", "read_only",
            "read_only_fallback", "drop_cache_rather_verify", "client_label"):
    print("zeo." + key, getattr(zeo, key.replace("-", "_")))
"#;

/// Runs custom_zodb.py with ClientStorage replaced by a recorder, then
/// binds the recorded arguments to the real ClientStorage's signature.
const CUSTOM_ZODB_CHECK: &str = r#"
import inspect, sys, types
import ZEO.ClientStorage
real = ZEO.ClientStorage.ClientStorage
calls = []
fake = types.ModuleType("ZEO.ClientStorage")
fake.ClientStorage = lambda *a, **kw: calls.append((a, kw)) or "storage"
sys.modules["ZEO.ClientStorage"] = fake
scope = {}
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), scope)
assert scope["Storage"] == "storage"
(args, kwargs), = calls
inspect.signature(real).bind(*args, **kwargs)
print("address", args[0])
for key in sorted(kwargs):
    print(key, kwargs[key])
"#;

fn run_python(script: &str, file: &Path) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} on {}:\n{}",
        String::from_utf8_lossy(&out.stderr),
        file.display(),
        fs::read_to_string(file).unwrap()
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn zope_conf_zeoclient_parses_with_zodb_schema() {
    let dir = tempfile::tempdir().unwrap();
    render(
        dir.path(),
        &[
            ("ZEO_ADDRESS", "zeo:8100"),
            ("ZEO_STORAGE", "main"),
            ("ZEO_CLIENT_CACHE_SIZE", "256MB"),
            ("ZEO_SHARED_BLOB_DIR", "off"),
            ("ZEO_CLIENT_BLOB_CACHE_SIZE", "500000000"),
            ("ZEO_READ_ONLY", "false"),
            ("ZEO_CLIENT_READ_ONLY_FALLBACK", "true"),
            ("ZEO_DROP_CACHE_RATHER_VERIFY", "true"),
            ("ZEO_CLIENT_NAME", "renderer-1"),
            ("ZODB_CACHE_SIZE", "30000"),
            ("ZEOD_INIT_ZEO__CLIENT_LABEL", "renderer-1"),
        ],
    );
    let parsed = run_python(ZCONFIG_CHECK, &dir.path().join("zope.conf"));
    let expected = "db.cache_size 30000\n\
        zeo.type ZEOClient\n\
        zeo.server ('zeo', 8100)\n\
        zeo.storage main\n\
        zeo.name zeostorage\n\
        zeo.client renderer-1\n\
        zeo.var /data/cache\n\
        zeo.cache_size 268435456\n\
        zeo.blob_dir /data/blobstorage\n\
        zeo.shared_blob_dir False\n\
        zeo.blob_cache_size 500000000\n\
        zeo.read_only False\n\
        zeo.read_only_fallback True\n\
        zeo.drop_cache_rather_verify True\n\
        zeo.client_label renderer-1\n";
    assert_eq!(parsed, expected);

    // Shared blobs, several servers, nothing optional.
    render(
        dir.path(),
        &[
            ("ZEO_ADDRESS", "zeo1:8100 zeo2:8101"),
            ("ZEO_SHARED_BLOB_DIR", "on"),
            ("ZEO_CLIENT_BLOB_CACHE_SIZE", "1GB"),
            ("ZEO_READ_ONLY", "on"),
        ],
    );
    let parsed = run_python(ZCONFIG_CHECK, &dir.path().join("zope.conf"));
    for line in [
        "zeo.server ('zeo1', 8100)\nzeo.server ('zeo2', 8101)\n",
        "zeo.storage 1\n",
        "zeo.client None\n",
        "zeo.cache_size 134217728\n",
        "zeo.shared_blob_dir True\n",
        // A blob cache makes no sense with a shared blob dir.
        "zeo.blob_cache_size None\n",
        "zeo.read_only True\n",
    ] {
        assert!(parsed.contains(line), "{line:?} not in\n{parsed}");
    }
}

#[test]
fn custom_zodb_py_calls_the_real_client_storage_signature() {
    let dir = tempfile::tempdir().unwrap();
    render(
        dir.path(),
        &[
            ("ZEO_ADDRESS", "zeo:8100"),
            ("ZEO_CLIENT_CACHE_SIZE", "64MB"),
            ("ZEO_CLIENT_NAME", "legacy"),
            ("ZEO_CLIENT_BLOB_CACHE_SIZE", "100MB"),
        ],
    );
    let called = run_python(CUSTOM_ZODB_CHECK, &dir.path().join("custom_zodb.py"));
    let expected = "address ('zeo', 8100)\n\
        blob_cache_size 104857600\n\
        blob_dir /data/blobstorage\n\
        cache_size 67108864\n\
        client legacy\n\
        drop_cache_rather_verify False\n\
        name zeostorage\n\
        read_only False\n\
        read_only_fallback False\n\
        shared_blob_dir False\n\
        storage 1\n\
        var /data/cache\n";
    assert_eq!(called, expected);
}

#[test]
fn zope_ini_takes_the_listen_port_and_log_files() {
    let dir = tempfile::tempdir().unwrap();
    render(
        dir.path(),
        &[
            ("ZEO_ADDRESS", "zeo:8100"),
            ("LISTEN_PORT", "9081"),
            ("ZOPE_THREADS", "4"),
            ("ZEOD_INIT_ZOPE__EVENT_LOG", "/data/log/event.log"),
        ],
    );
    let ini = fs::read_to_string(dir.path().join("zope.ini")).unwrap();
    // Python's own ini parser must accept it, with the values in place.
    let check = r#"
import configparser, sys
c = configparser.ConfigParser(interpolation=None)
c.read(sys.argv[1])
s = c["server:main"]
print(s["port"], s["threads"], s["max_request_body_size"])
print(c["handler_eventlog"]["class"], c["handler_eventlog"]["args"])
print(c["handler_accesslog"]["class"], c["handler_accesslog"]["args"])
"#;
    let parsed = run_python(check, &dir.path().join("zope.ini"));
    assert_eq!(
        parsed,
        "9081 4 1073741824\n\
         logging.handlers.WatchedFileHandler ('/data/log/event.log', 'a')\n\
         StreamHandler (sys.stdout,)\n",
        "{ini}"
    );
}

#[test]
fn haproxy_cfg_is_valid_for_every_affinity() {
    let Ok(version) = Command::new("haproxy").arg("-v").output() else {
        eprintln!("haproxy is not installed; haproxy.cfg is not checked here (the LB image build checks it)");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    for (affinity, expect) in [
        ("none", "balance leastconn"),
        ("source", "balance source"),
        ("header", "balance hdr(Host)"),
        ("cookie", "cookie ZEODLB insert indirect nocache dynamic"),
    ] {
        render(
            dir.path(),
            &[
                ("ZEO_ADDRESS", "zeo:8100"),
                ("ZEOD_INIT_LB__AFFINITY", affinity),
                // `haproxy -c` resolves nothing, but wants a parsable address.
                ("ZEOD_INIT_LB__RESOLVER", "127.0.0.1:53"),
            ],
        );
        let cfg = dir.path().join("haproxy.cfg");
        let text = fs::read_to_string(&cfg).unwrap();
        assert!(text.contains(expect), "{affinity}: {text}");
        assert!(text.contains("server-template renderer 10 renderer:8080 resolvers dns"));
        let out = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{affinity}: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
