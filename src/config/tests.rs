//! Tests of the layered configuration: defaults, zeo.conf, environment and
//! command line, and the errors each layer can raise.

use super::*;
use std::io::Write;

fn args(list: &[&str]) -> ServeArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }
    let mut argv = vec!["zeod"];
    argv.extend_from_slice(list);
    Cli::parse_from(argv).serve
}

fn load(a: &ServeArgs, env: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
    ServerConfig::load_with_env(a, env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[test]
fn runzeo_command_line() {
    let c = load(
        &args(&[
            "-a", "9100", "-f", "a.fs", "-f", "b.fs", "-b", "blobs", "-t", "30", "-r",
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(c.address, Address::Tcp("0.0.0.0:9100".parse().unwrap()));
    assert_eq!(c.storages.len(), 2);
    assert_eq!(c.storages[0].name, "1");
    assert_eq!(
        c.storages[0].options.blob_dir.as_deref(),
        Some(Path::new("blobs"))
    );
    assert!(c.read_only);
    assert!(
        !c.storages[1].options.read_only,
        "storages open as configured"
    );
    assert_eq!(c.transaction_timeout, Some(Duration::from_secs(30)));
}

#[test]
fn layers_file_env_and_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("zeo.conf");
    let mut f = std::fs::File::create(&conf).unwrap();
    writeln!(
        f,
        "<zeo>\n address 127.0.0.1:7000\n invalidation-queue-size 5\n msgpack true\n</zeo>\n<filestorage>\n path Data.fs\n</filestorage>"
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let c = load(
        &args(&["-C", conf]),
        &[
            ("ZEOD_ADDRESS", "127.0.0.1:7001"),
            ("ZEOD_STORAGE_1_BLOB_DIR", "b"),
        ],
    )
    .unwrap();
    assert_eq!(c.address.to_string(), "127.0.0.1:7001");
    assert_eq!(c.invalidation_queue_size, 5);
    assert!(c.msgpack);
    assert_eq!(c.storages[0].path, Path::new("Data.fs"));
    assert_eq!(
        c.storages[0].options.blob_dir.as_deref(),
        Some(Path::new("b"))
    );
    let c = load(
        &args(&["-C", conf, "-a", "/tmp/zeo.sock"]),
        &[("ZEOD_ADDRESS", "7002")],
    )
    .unwrap();
    assert_eq!(c.address, Address::Unix("/tmp/zeo.sock".into()));
    let c = load(
        &args(&["-C", conf]),
        &[("ZEOD_ADDRESS", "7002"), ("ZEOD_READ_ONLY", "true")],
    )
    .unwrap();
    assert_eq!(c.address.to_string(), "0.0.0.0:7002");
    assert!(c.read_only);
}

#[test]
fn invalidation_scan_is_on_by_default_and_age_zero_turns_it_off() {
    let c = load(&args(&["-f", "Data.fs"]), &[]).unwrap();
    assert_eq!(c.invalidation_age, Some(DEFAULT_INVALIDATION_AGE));
    assert_eq!(c.invalidation_max_oids, 100_000);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("zeo.conf");
    std::fs::write(
        &conf,
        "<zeo>\n invalidation-age 3600\n invalidation-max-oids 50\n</zeo>\n<filestorage>\n path Data.fs\n</filestorage>\n",
    )
    .unwrap();
    let c = load(&args(&["-C", conf.to_str().unwrap()]), &[]).unwrap();
    assert_eq!(c.invalidation_age, Some(Duration::from_secs(3600)));
    assert_eq!(c.invalidation_max_oids, 50);
    let c = load(
        &args(&["-C", conf.to_str().unwrap()]),
        &[("ZEOD_INVALIDATION_AGE", "0")],
    )
    .unwrap();
    assert_eq!(c.invalidation_age, None);
}

#[test]
fn backup_schedule_from_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("zeo.conf");
    std::fs::write(
        &conf,
        "<zeo>\n address 127.0.0.1:7000\n</zeo>\n<filestorage main>\n path Data.fs\n backup-schedule daily 02:00\n backup-repository /backups\n backup-keep 3\n</filestorage>\n",
    )
    .unwrap();
    let c = load(&args(&["-C", conf.to_str().unwrap()]), &[]).unwrap();
    let (name, plan) = &c.backup_schedules[0];
    assert_eq!(name, "main");
    assert_eq!(plan.repository, Path::new("/backups"));
    assert_eq!(plan.keep, Some(3));
    assert_eq!(plan.full_every, DEFAULT_FULL_EVERY);
    assert!(!plan.gzip);
    let c = load(
        &args(&["-f", "Data.fs"]),
        &[
            ("ZEOD_STORAGE_1_BACKUP_SCHEDULE", "6h"),
            ("ZEOD_STORAGE_1_BACKUP_REPOSITORY", "/b"),
            ("ZEOD_STORAGE_1_BACKUP_FULL_EVERY", "4"),
            ("ZEOD_STORAGE_1_BACKUP_GZIP", "true"),
        ],
    )
    .unwrap();
    let (_, plan) = &c.backup_schedules[0];
    assert_eq!(
        plan.schedule,
        PackSchedule::Every(Duration::from_secs(6 * 3600))
    );
    assert_eq!((plan.keep, plan.full_every, plan.gzip), (None, 4, true));
    let missing = load(
        &args(&["-f", "Data.fs"]),
        &[("ZEOD_STORAGE_1_BACKUP_SCHEDULE", "6h")],
    );
    assert!(matches!(missing, Err(ConfigError::BackupRepository { .. })));
}

#[test]
fn pack_schedule_from_file_and_environment() {
    use crate::schedule::PackSchedule;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("zeo.conf");
    std::fs::write(
        &conf,
        "<zeo>\n address 127.0.0.1:7000\n</zeo>\n<filestorage main>\n path Data.fs\n pack-schedule daily 03:30\n pack-days 7\n</filestorage>\n<filestorage other>\n path Other.fs\n</filestorage>\n",
    )
    .unwrap();
    let c = load(&args(&["-C", conf.to_str().unwrap()]), &[]).unwrap();
    assert_eq!(c.pack_schedules.len(), 1);
    let (name, plan) = &c.pack_schedules[0];
    assert_eq!(name, "main");
    assert_eq!(
        plan.schedule,
        PackSchedule::Daily {
            seconds_after_midnight: 3 * 3600 + 30 * 60
        }
    );
    assert_eq!(plan.days, 7.0);

    let c = load(
        &args(&["-C", conf.to_str().unwrap()]),
        &[("ZEOD_STORAGE_other_PACK_SCHEDULE", "12h")],
    )
    .unwrap();
    assert_eq!(c.pack_schedules.len(), 2);

    let bad = load(
        &args(&["-C", conf.to_str().unwrap()]),
        &[("ZEOD_STORAGE_main_PACK_SCHEDULE", "weekly")],
    );
    assert!(matches!(bad, Err(ConfigError::PackSchedule { .. })));
}

#[test]
fn tls_from_every_layer() {
    let c = load(
        &args(&["-f", "x", "--ssl-certificate", "s.pem"]),
        &[("ZEOD_SSL_AUTHENTICATE", "clients.pem")],
    )
    .unwrap();
    assert_eq!(
        c.tls,
        Some(TlsFiles {
            certificate: "s.pem".into(),
            key: None,
            authenticate: Some("clients.pem".into()),
        })
    );
    assert!(matches!(
        load(&args(&["-f", "x"]), &[("ZEOD_SSL_KEY", "k.pem")]),
        Err(ConfigError::SslWithoutCertificate { key: "ssl-key" })
    ));
    let c = load(&args(&["-f", "x", "--ssl-certificate", "s.pem"]), &[]).unwrap();
    assert!(
        c.notes.iter().any(|n| n.contains("client certificates")),
        "{:?}",
        c.notes
    );
    assert!(load(&args(&["-f", "x"]), &[]).unwrap().tls.is_none());
}

#[test]
fn limits_from_file_environment_and_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("zeo.conf");
    std::fs::write(
        &conf,
        "<zeo>\n address 127.0.0.1:7000\n max-frame-size 64MB\n max-connections 50\n max-output-buffer 2MB\n handshake-timeout 5\n</zeo>\n<filestorage>\n path Data.fs\n</filestorage>\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let c = load(&args(&["-C", conf]), &[]).unwrap();
    assert_eq!(c.max_frame_size, 64 << 20);
    assert_eq!(c.max_connections, 50);
    assert_eq!(c.max_output_buffer, 2 << 20);
    assert_eq!(c.handshake_timeout, Duration::from_secs(5));
    let c = load(
        &args(&["-C", conf, "--handshake-timeout", "0.5"]),
        &[
            ("ZEOD_MAX_OUTPUT_BUFFER", "65536"),
            ("ZEOD_HANDSHAKE_TIMEOUT", "9"),
        ],
    )
    .unwrap();
    assert_eq!(c.max_output_buffer, 65536);
    assert_eq!(c.handshake_timeout, Duration::from_millis(500));
    let c = load(&args(&["-f", "x.fs"]), &[]).unwrap();
    assert_eq!(c.max_output_buffer, DEFAULT_MAX_OUTPUT_BUFFER as usize);
    assert_eq!(c.handshake_timeout, Duration::from_secs(60));
    for bad in [
        &["-f", "x.fs", "--handshake-timeout", "0"][..],
        &["-f", "x.fs", "--max-output-buffer", "0"][..],
    ] {
        assert!(matches!(
            load(&args(bad), &[]),
            Err(ConfigError::OutOfRange { .. })
        ));
    }
}

#[test]
fn environment_alone_configures_a_storage() {
    let c = load(
        &args(&[]),
        &[
            ("ZEOD_STORAGE_main_PATH", "/data/Data.fs"),
            ("ZEOD_TEST_STAGES", "rust"),
        ],
    )
    .unwrap();
    assert_eq!(c.storages[0].name, "main");
    assert_eq!(c.address.to_string(), DEFAULT_ADDRESS);
}

#[test]
fn reports_missing_storage_and_bad_address() {
    assert!(load(&args(&[]), &[])
        .unwrap_err()
        .to_string()
        .contains("no storage"));
    assert!(load(&args(&["-a", "host:port", "-f", "x"]), &[])
        .unwrap_err()
        .to_string()
        .contains("bad address"));
}

#[test]
fn address_forms() {
    assert_eq!(Address::parse(":8100").unwrap().to_string(), "0.0.0.0:8100");
    assert_eq!(
        Address::parse("localhost:1").unwrap().to_string(),
        "127.0.0.1:1"
    );
    assert_eq!(Address::parse("[::1]:5").unwrap().to_string(), "[::1]:5");
    assert!(Address::parse("no such host.invalid:80").is_err());
}
