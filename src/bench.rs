//! `zeod bench ADDRESS`: a load generator that speaks the real ZEO 5
//! protocol (pickle, or msgpack with `--msgpack`) to any ZEO 5/6 server —
//! Python's `runzeo` and `zeod serve` alike — in the manner of
//! redis-benchmark or memtier: many connections, pipelined requests, a
//! latency histogram per phase.
//!
//! Phases, in the order given:
//! - `load`: hot `loadBefore` of random existing objects, `-P` in flight
//!   per connection (ZEO clients pipeline loads the same way);
//! - `commit`: each connection commits `--objects-per-txn` small objects
//!   of its own per transaction, one transaction at a time;
//! - `mixed`: `--writers` connections commit while the others load.
//!
//! `--setup N` first creates N objects to load (on a fresh database these
//! are oids 1..=N, which is what `--keys N` assumes in later runs).
//!
//! [`conn`] is the client connection, [`workload`] what each connection
//! does, [`report`] the figures.

mod conn;
mod report;
mod workload;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::ids::Oid;
use conn::Conn;
use report::PhaseReport;
use workload::{Tally, Until};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// HOST:PORT of the ZEO server.
    #[arg(default_value = "127.0.0.1:8100")]
    pub address: String,
    #[command(flatten)]
    pub tls: crate::tls::ClientTlsArgs,
    /// Storage name to register on.
    #[arg(long, default_value = "1")]
    pub storage: String,
    /// Speak msgpack (answer the handshake with `M5`).
    #[arg(long)]
    pub msgpack: bool,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight per load connection.
    #[arg(short = 'P', long, default_value_t = 1)]
    pub pipeline: usize,
    /// Seconds per phase.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    pub duration: f64,
    /// Operations per phase (over all connections) instead of a duration.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Phases to run, comma-separated: load, commit, mixed (or none, to
    /// only run the setup).
    #[arg(long, value_delimiter = ',', default_value = "load")]
    pub phases: Vec<Phase>,
    /// First create this many objects (for the load phases).
    #[arg(long, value_name = "N")]
    pub setup: Option<usize>,
    /// Objects per setup transaction.
    #[arg(long, default_value_t = 1000)]
    pub setup_batch: usize,
    /// Without --setup: load oids 1..=N (created by an earlier --setup N on
    /// a fresh database).
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Objects stored per commit.
    #[arg(long, default_value_t = 1)]
    pub objects_per_txn: usize,
    /// Size of each stored object's value, bytes.
    #[arg(long, default_value_t = 200)]
    pub object_size: usize,
    /// Connections that commit during the mixed phase.
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
    /// Runtime threads of the load generator (it shares the machine with
    /// the server: leave it room).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The server's pid (same machine): report its CPU per operation.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// End each phase when this process exits (or after --duration,
    /// whichever is first): load latency while another program, e.g. a
    /// pack, runs.
    #[arg(long, value_name = "PID")]
    pub while_pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Load,
    Commit,
    Mixed,
    None,
}

/// `zeod bench`. Exit status 1 if any operation failed or none succeeded.
pub fn main(args: BenchArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(crate::telemetry::LogFormat::Text);
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("starting tokio")?;
    let outcome = runtime.block_on(run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.to_json(&args))?);
    } else {
        if let Some(setup) = &outcome.setup {
            println!(
                "setup: {} objects in {:.2}s ({:.0} objects/s)",
                setup.0,
                setup.1.as_secs_f64(),
                setup.0 as f64 / setup.1.as_secs_f64().max(1e-9)
            );
        }
        print!("{}", report::table(&outcome.phases));
    }
    let failed = outcome
        .phases
        .iter()
        .any(|p| p.tally.errors > 0 || p.tally.ops == 0);
    let failed = failed || (outcome.phases.is_empty() && outcome.setup.is_none());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Everything one invocation measured.
pub struct Outcome {
    /// Objects created and the time it took.
    pub setup: Option<(usize, Duration)>,
    pub phases: Vec<PhaseReport>,
}

impl Outcome {
    fn to_json(&self, args: &BenchArgs) -> serde_json::Value {
        serde_json::json!({
            "server": args.address,
            "encoding": if args.msgpack { "msgpack" } else { "pickle" },
            "setup": self.setup.map(|(n, t)| serde_json::json!({
                "objects": n, "seconds": t.as_secs_f64(),
            })),
            "phases": self.phases.iter().map(PhaseReport::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Runs the setup and the phases.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let tls = crate::tls::ClientTls::from_args(&args.tls)?;
    let tls = tls.as_ref();
    let mut keys: Vec<Oid> = (1..=args.keys).map(Oid::from_u64).collect();
    let mut setup = None;
    if let Some(count) = args.setup {
        let mut conn = Conn::open(&args.address, &args.storage, args.msgpack, tls)
            .await
            .context("connecting for the setup")?;
        let started = Instant::now();
        keys = workload::setup(&mut conn, count, args.setup_batch, args.object_size)
            .await
            .context("creating objects")?;
        setup = Some((count, started.elapsed()));
    }
    let mut phases = Vec::new();
    for &phase in args.phases.iter().filter(|p| **p != Phase::None) {
        phases.extend(run_phase(args, tls, phase, &keys).await?);
    }
    Ok(Outcome { setup, phases })
}

/// Raises `stop` once process `pid` has exited (gone, or a zombie not yet
/// reaped by its parent), checking every 10 ms until `deadline`.
async fn raise_when_gone(pid: u32, stop: Arc<AtomicBool>, deadline: Instant) {
    let path = format!("/proc/{pid}/stat");
    while Instant::now() < deadline {
        let alive = std::fs::read_to_string(&path).is_ok_and(|stat| {
            // The state follows the parenthesized command name.
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        });
        if !alive {
            stop.store(true, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What one connection of a phase does.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Load,
    Commit,
}

async fn run_phase(
    args: &BenchArgs,
    tls: Option<&crate::tls::ClientTls>,
    phase: Phase,
    keys: &[Oid],
) -> anyhow::Result<Vec<PhaseReport>> {
    let connections = args.connections.max(1);
    let roles: Vec<Role> = (0..connections)
        .map(|i| match phase {
            Phase::Load | Phase::None => Role::Load,
            Phase::Commit => Role::Commit,
            Phase::Mixed if i < args.writers.min(connections) => Role::Commit,
            Phase::Mixed => Role::Load,
        })
        .collect();
    // Connect everyone before the clock starts.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(
            Conn::open(&args.address, &args.storage, args.msgpack, tls)
                .await
                .with_context(|| format!("connecting to {}", args.address))?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration.clamp(0.1, 86_400.0));
    let stop = args.while_pid.map(|pid| {
        let stop = Arc::new(AtomicBool::new(false));
        tokio::spawn(raise_when_gone(pid, stop.clone(), deadline));
        stop
    });
    let share = |role: Role| {
        let n = roles.iter().filter(|r| **r == role).count().max(1) as u64;
        match (args.requests, &stop) {
            (Some(total), _) => Until::Count(total.div_ceil(n)),
            (None, Some(stop)) => Until::Flag(deadline, stop.clone()),
            (None, None) => Until::Deadline(deadline),
        }
    };
    let (load_until, commit_until) = (share(Role::Load), share(Role::Commit));
    let cpu_before = report::own_cpu();
    let server_before = args.server_pid.and_then(report::process_cpu);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (conn, role)) in conns.into_iter().zip(roles.iter().copied()).enumerate() {
        let keys = keys.to_vec();
        let (load_until, commit_until) = (load_until.clone(), commit_until.clone());
        let (pipeline, objects, size) = (args.pipeline, args.objects_per_txn, args.object_size);
        let worker = i as u64 + 1;
        tasks.spawn(async move {
            let tally = match role {
                Role::Load => workload::load(conn, &keys, pipeline, load_until, worker).await,
                Role::Commit => workload::commits(conn, worker, objects, size, commit_until).await,
            };
            (role, tally)
        });
    }
    let (mut loads, mut commits) = (Tally::new(), Tally::new());
    while let Some(joined) = tasks.join_next().await {
        let (role, tally) = joined.context("benchmark worker panicked")?;
        match role {
            Role::Load => loads.merge(tally),
            Role::Commit => commits.merge(tally),
        }
    }
    let elapsed = started.elapsed();
    let client_cpu = report::own_cpu() - cpu_before;
    let server_cpu = match (server_before, args.server_pid.and_then(report::process_cpu)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let count = |role: Role| roles.iter().filter(|r| **r == role).count();
    // A mixed phase's CPU is shared by its loads and commits: both rows
    // divide it by all operations.
    let cpu_ops = loads.ops + commits.ops;
    let row = |name: &str, role: Role, tally: Tally| PhaseReport {
        name: name.to_owned(),
        connections: count(role),
        pipeline: if role == Role::Load { args.pipeline } else { 1 },
        objects_per_txn: (role == Role::Commit).then_some(args.objects_per_txn),
        tally,
        elapsed,
        client_cpu,
        server_cpu,
        cpu_ops,
    };
    Ok(match phase {
        Phase::Load | Phase::None => vec![row("load", Role::Load, loads)],
        Phase::Commit => vec![row("commit", Role::Commit, commits)],
        Phase::Mixed => vec![
            row("mixed/load", Role::Load, loads),
            row("mixed/commit", Role::Commit, commits),
        ],
    })
}
