//! `zeod status` against a real `zeod serve` process: the summary after a
//! commit, the JSON form, and a non-zero exit for a server that is gone.

#[path = "server_support/harness.rs"]
mod harness;
#[path = "ops_support/process.rs"]
mod process;

#[allow(clippy::unwrap_used)]
mod tests {
    use std::process::{Command, Output};

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

    #[test]
    fn rejects_an_address_that_is_not_one() {
        let out = status(&["not an address"]);
        assert!(!out.status.success());
        assert!(String::from_utf8(out.stderr)
            .unwrap()
            .contains("bad address"));
    }
}
