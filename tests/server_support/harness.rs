//! A real `zeod` server on 127.0.0.1:0 over real FileStorages in a temp
//! directory, and a minimal ZEO 5 client built on our protocol codec, for
//! black-box tests of the server.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test
#![allow(dead_code)] // each test crate uses a subset

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use zeod::config::{ServerConfig, StorageConfig};
use zeod::ids::{Oid, Tid};
use zeod::protocol::{decode_message, encode_message, Encoding, FrameCodec, Message, Value};
use zeod::storage::{FileStorage, OpenOptions};

/// Generous bound on every wait, so a broken server fails a test instead of
/// hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub addr: std::net::SocketAddr,
    pub storages: Vec<(String, Arc<FileStorage>)>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Storage "1" (with blobs) unless the config names others.
pub fn config() -> ServerConfig {
    ServerConfig {
        storages: vec![storage_config("1", true)],
        ..ServerConfig::default()
    }
}

pub fn storage_config(name: &str, blobs: bool) -> StorageConfig {
    StorageConfig {
        name: name.to_string(),
        path: PathBuf::from(format!("{name}.fs")),
        options: OpenOptions {
            blob_dir: blobs.then(|| PathBuf::from(format!("{name}.blobs"))),
            fsync: false,
            ..OpenOptions::default()
        },
        truncate: false,
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(config()).await
    }

    /// Opens the configured storages (paths relative to a fresh temp dir)
    /// and serves them.
    pub async fn start_with(mut config: ServerConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut storages = Vec::new();
        for s in &mut config.storages {
            s.path = dir.path().join(&s.path);
            if let Some(blob_dir) = &s.options.blob_dir {
                s.options.blob_dir = Some(dir.path().join(blob_dir));
            }
            storages.push((
                s.name.clone(),
                FileStorage::open(&s.path, s.options.clone()).unwrap(),
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = storages.clone();
        let task = tokio::spawn(async move {
            zeod::server::run(listener.into(), served, config, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            dir,
            addr,
            storages,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn storage(&self, name: &str) -> &Arc<FileStorage> {
        &self.storages.iter().find(|(n, _)| n == name).unwrap().1
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Stops the server and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT * 4, task).await.unwrap().unwrap();
        }
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.addr, Encoding::Pickle3).await
    }

    /// Connects and registers on storage "1".
    pub async fn client(&self) -> Client {
        let mut c = self.connect().await;
        c.call("register", vec![s("1"), Value::Bool(false)])
            .await
            .unwrap();
        c
    }
}

/// An error reply: `(class name, state)`.
pub type Raised = (String, Value);

pub struct Client {
    framed: Framed<TcpStream, FrameCodec>,
    pub encoding: Encoding,
    pub greeting: Vec<u8>,
    next_msgid: i128,
    /// One-way calls from the server, in arrival order.
    pub callbacks: VecDeque<Message>,
}

impl Client {
    /// Connects, reads the greeting and answers it like a ZEO 5 client.
    pub async fn connect(addr: std::net::SocketAddr, encoding: Encoding) -> Client {
        let mut c = Client::connect_raw(addr).await;
        let answer: &[u8] = if encoding == Encoding::Msgpack {
            b"M5"
        } else {
            b"Z5"
        };
        c.send_frame(answer).await;
        c.encoding = encoding;
        c
    }

    /// Connects and reads the greeting only.
    pub async fn connect_raw(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut framed = Framed::new(stream, FrameCodec::new());
        let greeting = tokio::time::timeout(WAIT, framed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .to_vec();
        Client {
            framed,
            encoding: Encoding::Pickle3,
            greeting,
            next_msgid: 1,
            callbacks: VecDeque::new(),
        }
    }

    pub async fn send_frame(&mut self, payload: &[u8]) {
        self.framed.send(payload).await.unwrap();
    }

    pub async fn send(&mut self, message: &Message) {
        let bytes = encode_message(self.encoding, message).unwrap();
        self.send_frame(&bytes).await;
    }

    /// Sends a sync call and returns its msgid (the reply is read later).
    pub async fn start_call(&mut self, method: &str, args: Vec<Value>) -> Value {
        let msgid = Value::Int(self.next_msgid);
        self.next_msgid += 1;
        self.send(&Message {
            msgid: msgid.clone(),
            flags: Value::Bool(false),
            method: method.into(),
            args: Value::Tuple(args),
        })
        .await;
        msgid
    }

    /// A sync call: waits for its reply, keeping callbacks that come first.
    pub async fn call(&mut self, method: &str, args: Vec<Value>) -> Result<Value, Raised> {
        let msgid = self.start_call(method, args).await;
        self.reply_to(&msgid).await
    }

    /// A one-way call.
    pub async fn call_async(&mut self, method: &str, args: Vec<Value>) {
        self.send(&Message {
            msgid: Value::Int(0),
            flags: Value::Bool(true),
            method: method.into(),
            args: Value::Tuple(args),
        })
        .await;
    }

    /// Next message from the server, `None` when the server closed.
    pub async fn recv(&mut self) -> Option<Message> {
        let frame = tokio::time::timeout(WAIT, self.framed.next())
            .await
            .expect("server went silent")?;
        let frame = frame.ok()?;
        Some(decode_message(self.encoding, &frame).unwrap())
    }

    /// Next raw frame payload, `None` when the server closed.
    pub async fn recv_raw(&mut self) -> Option<Vec<u8>> {
        let frame = tokio::time::timeout(WAIT, self.framed.next())
            .await
            .expect("server went silent")?;
        frame.ok().map(|f| f.to_vec())
    }

    /// Waits for the reply to `msgid`.
    pub async fn reply_to(&mut self, msgid: &Value) -> Result<Value, Raised> {
        loop {
            let message = self
                .recv()
                .await
                .expect("connection closed while waiting for a reply");
            if message.method != ".reply" {
                self.callbacks.push_back(message);
                continue;
            }
            assert_eq!(&message.msgid, msgid, "reply to another call");
            return match message.flags {
                Value::Int(2) => match message.args {
                    Value::Tuple(mut pair) if pair.len() == 2 => {
                        let state = pair.pop().unwrap();
                        let Value::Str(class) = pair.pop().unwrap() else {
                            panic!("error class is not text")
                        };
                        Err((class, state))
                    }
                    other => panic!("malformed error reply {other:?}"),
                },
                _ => Ok(message.args),
            };
        }
    }

    /// Next one-way call from the server (queued or arriving).
    pub async fn callback(&mut self) -> Message {
        if let Some(message) = self.callbacks.pop_front() {
            return message;
        }
        let message = self
            .recv()
            .await
            .expect("connection closed while waiting for a callback");
        assert_ne!(
            message.method, ".reply",
            "expected a callback, got a reply: {message:?}"
        );
        message
    }

    /// True if nothing arrives within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.framed.next())
            .await
            .is_err()
    }

    /// Asserts the server closes the connection (EOF or reset).
    pub async fn expect_closed(&mut self) {
        loop {
            match tokio::time::timeout(WAIT, self.framed.next())
                .await
                .expect("server did not close the connection")
            {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Commits `(oid, serial, data)` stores in one transaction; returns the tid.
    pub async fn commit(&mut self, txn: i128, stores: &[(Oid, Tid, &[u8])]) -> Result<Tid, Raised> {
        self.begin(txn).await;
        for (oid, serial, data) in stores {
            self.store(txn, *oid, *serial, data).await;
        }
        let voted = self.call("vote", vec![Value::Int(txn)]).await?;
        assert!(items(&voted).is_empty(), "vote result {voted:?}");
        self.finish(txn).await
    }

    pub async fn begin(&mut self, txn: i128) {
        self.call_async(
            "tpc_begin",
            vec![
                Value::Int(txn),
                b(b""),
                b(b"test"),
                Value::Dict(vec![]),
                Value::None,
                s(" "),
            ],
        )
        .await;
    }

    pub async fn store(&mut self, txn: i128, oid: Oid, serial: Tid, data: &[u8]) {
        self.call_async(
            "storea",
            vec![
                Value::oid(oid),
                Value::tid(serial),
                b(data),
                Value::Int(txn),
            ],
        )
        .await;
    }

    /// `tpc_finish`: expects `info` first, returns the tid.
    pub async fn finish(&mut self, txn: i128) -> Result<Tid, Raised> {
        let tid = self.call("tpc_finish", vec![Value::Int(txn)]).await?;
        let info = self
            .callbacks
            .pop_back()
            .expect("no info callback before the tpc_finish reply");
        assert_eq!(info.method, "info");
        Ok(tid.as_tid().unwrap())
    }

    pub async fn new_oid(&mut self) -> Oid {
        items(&self.call("new_oids", vec![Value::Int(1)]).await.unwrap())[0]
            .as_oid()
            .unwrap()
    }
}

pub fn s(x: &str) -> Value {
    Value::Str(x.to_string())
}

pub fn b(x: &[u8]) -> Value {
    Value::Bytes(x.to_vec())
}

/// A tiny valid object pickle: `persistent.mapping.PersistentMapping` state.
pub fn record(tag: u8) -> Vec<u8> {
    let mut data = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x01\x00\x00\x00xq\x02K".to_vec();
    data.push(tag);
    data.extend_from_slice(b"s.");
    data
}

/// Bytes of a file, for "nothing changed on disk" checks.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The value of `key` in a dict value.
pub fn get<'a>(dict: &'a Value, key: &str) -> Option<&'a Value> {
    match dict {
        Value::Dict(items) => items.iter().find(|(k, _)| *k == s(key)).map(|(_, v)| v),
        _ => None,
    }
}

/// The items of a list (pickle) or tuple (msgpack arrays decode as tuples).
pub fn items(value: &Value) -> &[Value] {
    match value {
        Value::List(items) | Value::Tuple(items) => items,
        other => panic!("not a sequence: {other:?}"),
    }
}
