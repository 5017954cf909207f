//! `zeod init [OPTIONS] -- COMMAND [ARGS]`: a container's ENTRYPOINT, run
//! as PID 1. It assembles the settings (defaults < config file <
//! environment < command line), renders the config templates, waits for
//! the servers the child needs, then starts COMMAND and supervises it:
//! signals are passed on, every zombie is reaped, a stop gets a grace
//! period before SIGKILL, watched files are re-rendered and the child
//! reloaded, logs are rotated. It exits with the child's status.
//!
//! Exit codes besides the child's own (128 + n when the child was killed by
//! signal n):
//!
//! | code | meaning                                                  |
//! |------|----------------------------------------------------------|
//! | 78   | invalid settings or a template that does not render      |
//! | 69   | a `--wait-for` address did not come up in time            |
//! | 126  | COMMAND is not executable                                 |
//! | 127  | COMMAND was not found                                     |
//! | 71   | could not set up signals or file watches                 |
//!
//! Nothing here imports the storage, server or protocol: PID 1 stays small.

mod preflight;
mod reaper;
mod rotate;
mod settings;
mod signals;
mod supervisor;
mod template;
mod values;
mod wait;
mod watch;

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;

use nix::unistd::getpid;
use parking_lot::Mutex;

use crate::telemetry::{self, LogFormat};

pub use settings::{Settings, PLONE_ENV};

const EX_UNAVAILABLE: u8 = 69;
const EX_OSERR: u8 = 71;
const EX_CONFIG: u8 = 78;

#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Config file, TOML (or YAML for .yaml/.yml). Watched for changes.
    #[arg(long, env = "ZEOD_INIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Template directory [settings: templates; default /etc/zeod/templates].
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// Where templates are written when no `render` map is configured
    /// [settings: output_dir; default /app/etc].
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Time from the stop signal to SIGKILL, like 8s [settings: grace].
    #[arg(long)]
    pub grace: Option<String>,
    /// Run COMMAND as this numeric uid:gid [settings: user].
    #[arg(long)]
    pub user: Option<String>,
    /// Wait until HOST:PORT accepts TCP before starting COMMAND (repeatable)
    /// [settings: wait_for].
    #[arg(long = "wait-for", value_name = "HOST:PORT")]
    pub wait_for: Vec<String>,
    /// Overall limit of --wait-for, like 60s [settings: wait_timeout].
    #[arg(long)]
    pub wait_timeout: Option<String>,
    /// Start COMMAND in its own process group and signal the whole group
    /// (not for interactive use: the group is not given the terminal).
    #[arg(long)]
    pub process_group: bool,
    /// Do not watch the config file and templates.
    #[arg(long)]
    pub no_watch: bool,
    /// Render the templates, then exit 0 without running COMMAND.
    #[arg(long)]
    pub render_only: bool,
    /// Log format.
    #[arg(long, env = "ZEOD_INIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The command to supervise.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Why `zeod init` stopped before (or instead of) supervising the child.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Settings(#[from] settings::Error),
    #[error("{0}")]
    Template(#[from] template::Error),
    #[error("{0}")]
    Preflight(#[from] preflight::Error),
    #[error("{0}")]
    Wait(#[from] wait::Error),
    #[error("{0}")]
    Spawn(#[from] supervisor::SpawnError),
    #[error("no COMMAND given (usage: zeod init [OPTIONS] -- COMMAND [ARGS])")]
    NoCommand,
    #[error("setting up signal handling: {0}")]
    Signals(io::Error),
    #[error("{0}")]
    Watch(#[from] watch::Error),
}

impl Error {
    fn exit_code(&self) -> u8 {
        match self {
            Error::Settings(_) | Error::Template(_) | Error::Preflight(_) | Error::NoCommand => {
                EX_CONFIG
            }
            Error::Wait(wait::Error::Timeout { .. }) => EX_UNAVAILABLE,
            Error::Wait(wait::Error::Interrupted(signal, _)) => {
                u8::try_from(128 + *signal as i32).unwrap_or(255)
            }
            Error::Spawn(e) if e.source.kind() == io::ErrorKind::NotFound => 127,
            Error::Spawn(_) => 126,
            Error::Signals(_) | Error::Watch(_) => EX_OSERR,
        }
    }
}

/// Entry point of `zeod init`.
pub fn main(args: InitArgs) -> ExitCode {
    // Before anything else, and above all before any thread exists, so
    // every thread inherits the mask and no signal is lost or mishandled.
    let blocked = signals::block();
    let args_format = args.log_format;
    telemetry::init(args_format);
    let result = blocked
        .map_err(|errno| Error::Signals(io::Error::from(errno)))
        .and_then(|set| run(args, set));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            // One line, readable as it is: it is often all an operator
            // sees of a container that will not start.
            match args_format {
                LogFormat::Json => tracing::error!(%error, "zeod init failed"),
                LogFormat::Text => eprintln!("zeod init: {error}"),
            }
            ExitCode::from(error.exit_code())
        }
    }
}

fn run(args: InitArgs, blocked: nix::sys::signal::SigSet) -> Result<u8, Error> {
    let env: settings::Environment = std::env::vars().collect();
    let cli = cli_layer(&args);
    let config = args.config.clone();
    let load = {
        let env = env.clone();
        move || settings::load(config.as_deref(), &env, &cli)
    };
    let settings = load()?;
    if !args.render_only && args.command.is_empty() {
        return Err(Error::NoCommand);
    }
    preflight::check(&settings)?;
    let rendered = template::render_all(&settings)?;
    for r in &rendered {
        tracing::info!(template = %r.template, output = %r.output.display(), changed = r.changed, "rendered");
    }
    if args.render_only {
        return Ok(0);
    }

    if getpid().as_raw() != 1 && settings.subreaper {
        // Orphans of the child then come to us instead of the real PID 1,
        // so they are reaped here as they would be in a container.
        if let Err(errno) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!(%errno, "could not become a child subreaper");
        }
    }
    let (tx, rx) = mpsc::sync_channel(supervisor::EVENT_QUEUE);
    signals::listen(blocked, tx.clone()).map_err(Error::Signals)?;
    wait::wait_for(&settings.wait_for.0, settings.wait_timeout.0, &rx)?;

    let outputs: watch::Outputs = Arc::new(Mutex::new(
        rendered.iter().map(|r| r.output.clone()).collect(),
    ));
    let _watcher = if settings.watch && !args.no_watch {
        Some(watch::start(
            args.config.as_deref(),
            &settings.templates,
            outputs.clone(),
            tx,
        )?)
    } else {
        None
    };
    let reload: supervisor::Reload = Box::new(move || load().map_err(|e| e.to_string()));
    let supervisor = supervisor::Supervisor::start(args.command, settings, rx, reload, outputs)?;
    let exit = supervisor.run()?;
    tracing::info!(?exit, code = exit.code(), "child exited");
    Ok(exit.code())
}

/// The command-line options as the top settings layer.
fn cli_layer(args: &InitArgs) -> settings::Layer {
    let mut entries: Vec<(&str, &str, String)> = Vec::new();
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    if let Some(v) = path(&args.templates) {
        entries.push(("--templates", "templates", v));
    }
    if let Some(v) = path(&args.output_dir) {
        entries.push(("--output-dir", "output_dir", v));
    }
    if let Some(v) = &args.grace {
        entries.push(("--grace", "grace", v.clone()));
    }
    if let Some(v) = &args.user {
        entries.push(("--user", "user", v.clone()));
    }
    if !args.wait_for.is_empty() {
        entries.push(("--wait-for", "wait_for", args.wait_for.join(" ")));
    }
    if let Some(v) = &args.wait_timeout {
        entries.push(("--wait-timeout", "wait_timeout", v.clone()));
    }
    if args.process_group {
        entries.push(("--process-group", "process_group", "true".to_owned()));
    }
    settings::Layer::command_line(entries)
}
