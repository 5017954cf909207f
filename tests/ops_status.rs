//! `zeod status` against a real `zeod serve` process: the summary after a
//! commit, the JSON form, a running pack's phase and progress, and a
//! non-zero exit for a server that is gone.

#[path = "ops_support/bigfile.rs"]
mod bigfile;
#[path = "server_support/harness.rs"]
mod harness;
#[path = "ops_support/process.rs"]
mod process;

#[allow(clippy::unwrap_used)]
mod tests {
    use std::process::{Command, Output};
    use std::time::{Duration, Instant};

    use super::bigfile;
    use super::harness::{items, record, Client};
    use super::process::Zeod;
    use zeod::ids::Tid;
    use zeod::protocol::{Encoding, Value};

    fn status(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_zeod"))
            .arg("status")
            .args(args)
            .output()
            .unwrap()
    }

    #[tokio::test]
    async fn summarizes_a_running_server_then_fails_once_it_is_gone() {
        let mut zeod = Zeod::start(false);
        let mut c = Client::connect(zeod.addr, Encoding::Pickle3).await;
        c.call("register", vec![Value::Str("1".into()), Value::Bool(false)])
            .await
            .unwrap();
        let oid = items(&c.call("new_oids", vec![Value::Int(1)]).await.unwrap())[0]
            .as_oid()
            .unwrap();
        let tid = c.commit(1, &[(oid, Tid::ZERO, &record(1))]).await.unwrap();
        let addr = zeod.addr.to_string();

        let out = status(&[&addr]);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{text}");
        let path = zeod.data_fs().display().to_string();
        assert!(text.contains(&format!("storage \"1\"  {path}")), "{text}");
        assert!(text.contains(", 1 object\n"), "{text}");
        // Our client is registered; the status probe's own connections are not.
        assert!(
            text.contains("clients      1 connected, 0 in a transaction"),
            "{text}"
        );
        assert!(text.contains("1 commit, 0 aborts"), "{text}");
        let stamp = tid.timestamp_string();
        assert!(text.contains(&stamp[..19]), "{text}");

        let out = status(&[&addr, "--json"]);
        assert!(out.status.success());
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let storage = &json["storages"][0];
        assert_eq!(storage["name"], "1");
        assert_eq!(storage["objects"], 1);
        let size = std::fs::metadata(zeod.data_fs()).unwrap().len();
        assert_eq!(storage["size"], size);
        assert_eq!(storage["status"]["commits"], 1);
        assert_eq!(storage["status"]["last-transaction"], tid.to_string());

        drop(c);
        zeod.stop();
        let out = status(&[&addr, "--timeout", "2"]);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("cannot connect"), "{err}");
    }

    const PACK_PHASES: &[&str] = &["prepare", "gc", "copy", "swap", "cleanup"];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shows_a_running_pack_with_its_phase_and_progress() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        bigfile::write(&path, 96, 200);
        let size = std::fs::metadata(&path).unwrap().len();
        let zeod = Zeod::start_in(dir, false, &[], &[]);
        let addr = zeod.addr.to_string();
        let json = |out: Output| -> serde_json::Value {
            assert!(out.status.success(), "{out:?}");
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let idle = json(status(&[&addr, "--json"]));
        assert!(idle["storages"][0].get("pack").is_none(), "{idle}");

        // wait=False: the reply comes at once and the pack runs on.
        let mut c = Client::connect(zeod.addr, Encoding::Pickle3).await;
        c.call("register", vec![Value::Str("1".into()), Value::Bool(false)])
            .await
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        c.call("pack", vec![Value::Float(now), Value::Bool(false)])
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut text_seen = false;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let summary = json(status(&[&addr, "--json"]));
            match summary["storages"][0].get("pack") {
                Some(pack) => {
                    let phase = pack["phase"].as_str().unwrap().to_string();
                    assert!(PACK_PHASES.contains(&phase.as_str()), "{pack}");
                    let (done, total) = (
                        pack["done"].as_u64().unwrap(),
                        pack["total"].as_u64().unwrap(),
                    );
                    assert!(total > 0 && done <= total, "{pack}");
                    seen.push((done, phase));
                    if !text_seen {
                        let out = status(&[&addr]);
                        let text = String::from_utf8(out.stdout).unwrap();
                        // The pack may end between the two calls.
                        if text.contains("\n  pack ") {
                            assert!(text.contains("  pack         running: "), "{text}");
                            assert!(text.contains("% ("), "{text}");
                            text_seen = true;
                        }
                    }
                }
                None => {
                    if std::fs::metadata(zeod.data_fs()).unwrap().len() < size {
                        break;
                    }
                }
            }
            assert!(Instant::now() < deadline, "the pack did not end");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!seen.is_empty(), "no status call saw the pack running");
        assert!(text_seen, "the summary never showed the pack: {seen:?}");
        // Progress and phases only move forward.
        for pair in seen.windows(2) {
            let rank = |p: &str| PACK_PHASES.iter().position(|x| *x == p).unwrap();
            assert!(pair[1].0 >= pair[0].0, "progress went back: {seen:?}");
            assert!(
                rank(&pair[1].1) >= rank(&pair[0].1),
                "phase went back: {seen:?}"
            );
        }
        let after = json(status(&[&addr, "--json"]));
        assert!(after["storages"][0].get("pack").is_none(), "{after}");
    }

    #[test]
    fn rejects_an_address_that_is_not_one() {
        let out = status(&["not an address"]);
        assert!(!out.status.success());
        assert!(String::from_utf8(out.stderr)
            .unwrap()
            .contains("bad address"));
    }
}
