//! The `zeod` command: parses arguments, sets up logging, dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zeod",
    version,
    about = "ZEO storage server and Zope appliance init"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve FileStorages over the ZEO protocol (a drop-in for runzeo).
    Serve(zeod::config::ServeArgs),
    /// Run as a container's PID 1: render config templates, supervise COMMAND.
    Init(zeod::init::InitArgs),
    /// Exit 0 if a ZEO server answers the handshake and `ruok` at ADDRESS.
    Health(zeod::health::HealthArgs),
    /// Print a one-screen summary of a running ZEO server (or JSON with --json).
    Status(zeod::status::StatusArgs),
    /// Check a Data.fs for consistency, like Python's fstest.
    Check(zeod::check::CheckArgs),
    /// Load-test a ZEO server (runzeo or zeod): loads, commits, latency.
    Bench(zeod::bench::BenchArgs),
    /// Back up a Data.fs and its blobs, repozo-compatible (-B, -R, -V modes).
    Backup(zeod::backup::BackupArgs),
    /// Pack a storage (like zeopack): through a running server, or a file.
    Pack(zeod::pack_cli::PackArgs),
    /// Recover a Data.fs and its blobs from a backup repository (`backup -R`).
    Restore(zeod::backup::BackupArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(interval) = zeod::config::progress_interval() {
        zeod::progress::set_log_interval(interval);
    }
    match cli.command {
        // init sets up its own logging: it must stay small and never fail
        // before the child could start.
        Command::Init(args) => zeod::init::main(args),
        Command::Serve(args) => report(zeod::server::main(args)),
        Command::Health(args) => report(zeod::health::main(args)),
        Command::Status(args) => report(zeod::status::main(args)),
        Command::Check(args) => report(zeod::check::main(args)),
        Command::Bench(args) => report(zeod::bench::main(args)),
        Command::Pack(args) => report(zeod::pack_cli::main(args)),
        Command::Backup(args) => report(zeod::backup::main(args)),
        Command::Restore(args) => report(zeod::backup::main(zeod::backup::BackupArgs {
            recover: true,
            ..args
        })),
    }
}

/// Turns a subcommand's outcome into the process exit code.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("zeod: error: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: many library
/// errors already quote their source in their own message.
fn describe(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}
