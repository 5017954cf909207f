//! `zeod serve` starting on a file big enough that start-up takes a while.
//! Honest readiness: nothing may answer before every storage is exported
//! (seeding the invalidation queue from the file). A scraper polls the
//! metrics port from the moment the process starts; every page it gets must
//! already show the storage, and so must the first health probe and
//! metrics page once the address file is there. And a SIGTERM during the
//! index rebuild ends the process cleanly, before it binds.

#[path = "ops_support/bigfile.rs"]
mod bigfile;
#[path = "ops_support/process.rs"]
mod process;

#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::TcpStream;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::bigfile;
    use super::process::{free_port, http_get, parse_exposition};

    const STORAGE: (&str, &str) = ("storage", "1");

    fn shows_the_storage(page: &str) -> bool {
        parse_exposition(page, false).keys().any(|(name, labels)| {
            name == "zeod_storage_objects" && labels.contains(&(STORAGE.0.into(), STORAGE.1.into()))
        })
    }

    /// A 64 MiB Data.fs and the `zeod serve` command for it, logging to
    /// `server.log` and writing its address to `address` once it listens.
    struct BigStorage {
        dir: tempfile::TempDir,
        path: PathBuf,
        address_file: PathBuf,
        log_path: PathBuf,
    }

    impl BigStorage {
        fn new() -> BigStorage {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("Data.fs");
            bigfile::write(&path, 64, 100);
            BigStorage {
                address_file: dir.path().join("address"),
                log_path: dir.path().join("server.log"),
                path,
                dir,
            }
        }

        fn serve(&self) -> Command {
            let mut command = Command::new(env!("CARGO_BIN_EXE_zeod"));
            command
                .arg("serve")
                .arg("-f")
                .arg(&self.path)
                .args(["-a", "127.0.0.1:0", "--address-file"])
                .arg(&self.address_file)
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(&self.log_path).unwrap()));
            command
        }
    }

    #[test]
    fn nothing_answers_before_the_storages_are_exported() {
        let storage = BigStorage::new();
        let address_file = storage.address_file.clone();
        let metrics = free_port();
        let mut child = storage
            .serve()
            .arg("--metrics")
            .arg(metrics.to_string())
            // Seed the queue with every transaction in the file: the
            // export reads the whole history back.
            .env("ZEOD_INVALIDATION_QUEUE_SIZE", "1000000")
            .spawn()
            .unwrap();

        // Scrape as fast as we can from the start until the address file
        // appears: a listener that is up must already serve the storage.
        let stop = Arc::new(AtomicBool::new(false));
        let scraper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut pages = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if TcpStream::connect(metrics).is_ok() {
                        pages.push(http_get(metrics, "/metrics", "text/plain").2);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                pages
            })
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let addr = loop {
            if let Ok(text) = std::fs::read_to_string(&address_file) {
                if !text.trim().is_empty() {
                    break text.trim().to_string();
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("zeod serve exited with {status}");
            }
            assert!(Instant::now() < deadline, "zeod did not start");
            std::thread::sleep(Duration::from_millis(2));
        };
        // The first page and probe after the address is published.
        let first = http_get(metrics, "/metrics", "text/plain").2;
        let health = Command::new(env!("CARGO_BIN_EXE_zeod"))
            .args(["health", &addr])
            .output()
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        let early = scraper.join().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(&storage.log_path).unwrap();

        assert!(shows_the_storage(&first), "{first}\n{log}");
        assert!(
            health.status.success(),
            "{}",
            String::from_utf8_lossy(&health.stderr)
        );
        for page in &early {
            assert!(shows_the_storage(page), "answered too early: {page}\n{log}");
        }
    }

    #[test]
    fn sigterm_during_the_index_rebuild_stops_cleanly() {
        let storage = BigStorage::new();
        let (path, index) = (
            storage.path.clone(),
            storage.dir.path().join("Data.fs.index"),
        );
        let (address_file, log_path) = (storage.address_file.clone(), storage.log_path.clone());
        std::fs::remove_file(&index).unwrap();
        let before = std::fs::read(&path).unwrap();
        let mut child = storage
            .serve()
            .env("ZEOD_PROGRESS_INTERVAL", "0.01")
            .spawn()
            .unwrap();

        // The storage is being opened: its index rebuild has started, or
        // starts at once (and then sees the stop request first thing).
        let deadline = Instant::now() + Duration::from_secs(120);
        while !std::fs::read_to_string(&log_path)
            .unwrap()
            .contains("opening storage")
        {
            assert!(child.try_wait().unwrap().is_none(), "zeod serve exited");
            assert!(Instant::now() < deadline, "zeod did not start opening");
            std::thread::sleep(Duration::from_millis(2));
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        let log = std::fs::read_to_string(&log_path).unwrap();

        // Not killed by the signal: it stopped on its own, said so, and
        // never bound.
        assert_eq!(status.code(), Some(0), "{status}\n{log}");
        assert!(
            log.contains("SIGTERM during start-up: stopping before serving"),
            "{log}"
        );
        assert!(!address_file.exists(), "{log}");
        if log.contains("index rebuild abandoned") {
            assert!(!index.exists(), "an abandoned rebuild wrote {index:?}");
        }
        // The data file is as it was, and no lock is left held: it opens.
        assert!(std::fs::read(&path).unwrap() == before, "Data.fs changed");
        let reopened = zeod::storage::FileStorage::open(&path, Default::default()).unwrap();
        assert_eq!(reopened.len(), 1002);
        reopened.close().unwrap();
    }
}
