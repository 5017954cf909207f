//! `zeod`: a ZEO storage server that Python ZEO clients accept as a drop-in
//! for `runzeo`, storing data in a FileStorage `Data.fs` that Python ZODB
//! can open, plus the container init that runs Zope renderers.
//!
//! # Layout (in reading order)
//!
//! - [`ids`]: `Oid` and `Tid` newtypes; TimeStamp arithmetic.
//! - [`storage`]: FileStorage — the `Data.fs` format, its index, commits,
//!   undo, recovery. Knows nothing about the network.
//! - [`record`]: data-record pickles (class meta + state, one memo) as a
//!   value tree that never executes anything; re-pickling; `referencesf`.
//! - [`conflict`]: server-side `_p_resolveConflict` for BTrees buckets,
//!   sets, single-bucket trees and `BTrees.Length`, on [`record`] values.
//! - [`check`]: `zeod check`, an fstest-like consistency report of a file.
//! - [`protocol`]: the ZEO wire protocol — frames, pickle and msgpack
//!   dialects, the message envelope. Pure: no I/O.
//! - [`config`]: `zeod serve` configuration — runzeo's command line, the
//!   ZConfig `zeo.conf`, `ZEOD_*` environment, layered with figment.
//! - [`server`]: the tokio server — accept loop, one task per connection,
//!   dispatch of requests to the storage, commit lock, invalidations.
//! - [`backup`]: `zeod backup` / `zeod restore`, repozo-compatible full and
//!   incremental backups of a Data.fs and its blobs at one committed tid.
//! - [`pack_cli`]: `zeod pack`, zeopack against a server or a file.
//! - [`schedule`]: the server's built-in pack schedule (`pack-schedule`).
//! - [`progress`]: progress of long work (index rebuild, pack, check,
//!   backup): counted by the work, shown as a bar or log lines by its caller.
//! - [`health`]: `zeod health`, a ZEO handshake + `ruok` probe.
//! - [`connect`]: how the blocking tools (`health`, `pack`) reach a server.
//! - [`bench`]: `zeod bench`, a native ZEO load generator for any server.
//! - [`metrics`]: Prometheus metrics of the server and their HTTP listener.
//! - [`status`]: `zeod status`, a one-screen summary of a running server.
//! - [`telemetry`]: tracing-subscriber setup.
//! - [`fuzzing`]: fuzz targets for every parser of outside input, and the
//!   stable-Rust mutation loop `zeod-fuzz` drives them with.
//! - [`tls`]: TLS on the ZEO port (zeo.conf's `<ssl>`) with rustls, for
//!   the server and for zeod's own client tools.
//! - [`init`]: `zeod init`, the renderer containers' PID 1 — config
//!   templating, child supervision, reaping, reload on change. It imports
//!   nothing from the server side.

pub mod backup;
pub mod bench;
pub mod check;
pub mod config;
pub mod conflict;
pub mod connect;
pub mod fuzzing;
pub mod health;
pub mod ids;
pub mod init;
pub mod metrics;
pub mod pack_cli;
pub mod progress;
pub mod protocol;
pub mod record;
pub mod schedule;
pub mod server;
pub mod status;
pub mod storage;
pub mod telemetry;
pub mod tls;
