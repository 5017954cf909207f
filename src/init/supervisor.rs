//! The supervisor loop: one thread that owns the child. It starts COMMAND,
//! passes signals on, reaps every child (the supervised one and orphans),
//! stops the child with a grace period before SIGKILL, re-renders on file
//! changes and applies the reload action, rotates logs, and returns how the
//! child ended.
//!
//! Everything arrives as an `Event` on one bounded channel; timers (the
//! grace deadline, the debounce, rotation checks) are the channel's receive
//! timeout. The child is spawned with std's `Command` and never waited on
//! through its `Child` handle: `reaper::reap` collects every status with
//! `waitpid(-1)`.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use super::reaper::{self, Exit};
use super::rotate::Rotator;
use super::settings::{ReloadAction, Settings};
use super::signals;
use super::watch::Outputs;

/// What the supervisor reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A signal sent to us (SIGCHLD included).
    Signal(Signal),
    /// A watched file changed; re-render after the debounce.
    Changed,
}

/// Bound of the event channel. Senders of signals block when it is full
/// (briefly: the loop drains it continuously); file events are dropped
/// when it is full, since one queued `Changed` is as good as many.
pub const EVENT_QUEUE: usize = 64;

/// Longest sleep of the loop, so orphans are reaped even if a SIGCHLD were
/// lost, and rotation is checked on time.
const TICK: Duration = Duration::from_secs(1);
/// Lower bound of the rotation check interval, so a zero cannot spin.
const MIN_ROTATE_INTERVAL: Duration = Duration::from_millis(100);

/// Re-reads the settings (config file and environment) for a re-render.
pub type Reload = Box<dyn FnMut() -> Result<Settings, String>>;

/// Why the supervised child could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {command}: {source}")]
pub struct SpawnError {
    pub command: String,
    pub source: io::Error,
}

/// A stop in progress: the stop signal was sent at some point; SIGKILL
/// follows at `deadline`.
struct Stopping {
    deadline: Instant,
    killed: bool,
    /// Start the child again once it is gone (a reload), or not (shutdown).
    restart: bool,
}

pub struct Supervisor {
    command: Vec<OsString>,
    settings: Settings,
    events: Receiver<Event>,
    reload: Reload,
    outputs: Outputs,
    child: Pid,
    stopping: Option<Stopping>,
    render_at: Option<Instant>,
    rotators: Vec<Rotator>,
    next_rotate_check: Instant,
}

impl Supervisor {
    /// Starts COMMAND and returns the supervisor that owns it.
    pub fn start(
        command: Vec<OsString>,
        settings: Settings,
        events: Receiver<Event>,
        reload: Reload,
        outputs: Outputs,
    ) -> Result<Supervisor, SpawnError> {
        let child = spawn(&command, &settings)?;
        let now = Instant::now();
        let rotators = settings
            .rotate
            .iter()
            .map(|rule| Rotator::new(rule.clone(), now))
            .collect();
        let next_rotate_check = now + rotate_interval(&settings);
        Ok(Supervisor {
            command,
            settings,
            events,
            reload,
            outputs,
            child,
            stopping: None,
            render_at: None,
            rotators,
            next_rotate_check,
        })
    }

    /// Runs until the child has ended for good; returns how it ended.
    pub fn run(mut self) -> Result<Exit, SpawnError> {
        loop {
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            match self.events.recv_timeout(timeout) {
                Ok(Event::Signal(Signal::SIGCHLD)) => {}
                Ok(Event::Signal(signal @ (Signal::SIGTERM | Signal::SIGINT))) => {
                    // `docker stop` and the kubelet send SIGTERM: the child
                    // gets its own stop signal (haproxy -W stops softly on
                    // SIGUSR1). A Ctrl-C stays a SIGINT.
                    let sent = match signal {
                        Signal::SIGTERM => self.settings.reload.stop_signal.0,
                        other => other,
                    };
                    tracing::info!(received = ?signal, ?sent, "stopping child");
                    self.forward(sent);
                    self.begin_stop(false, false);
                }
                Ok(Event::Signal(signal)) => self.forward(signal),
                Ok(Event::Changed) => {
                    self.render_at = Some(Instant::now() + self.settings.reload.debounce.0);
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The signal thread died (it logged why); keep reaping on
                // the tick rather than spinning.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
            }
            if let Some(exit) = reaper::reap(Some(self.child)) {
                match self.stopping.take() {
                    Some(Stopping { restart: true, .. }) => {
                        tracing::info!(?exit, "child stopped; starting it again");
                        self.child = spawn(&self.command, &self.settings)?;
                    }
                    _ => {
                        // Collect whatever else exited meanwhile before we go.
                        reaper::reap(None);
                        return Ok(exit);
                    }
                }
            }
            let now = Instant::now();
            if let Some(stopping) = &mut self.stopping {
                if !stopping.killed && now >= stopping.deadline {
                    tracing::warn!(
                        grace_ms = self.settings.grace.0.as_millis() as u64,
                        "child outlived the grace period; sending SIGKILL"
                    );
                    signals::send(self.child, self.settings.process_group, Signal::SIGKILL);
                    stopping.killed = true;
                }
            }
            if self.render_at.is_some_and(|at| now >= at) {
                self.render_at = None;
                self.rerender();
            }
            if now >= self.next_rotate_check {
                self.next_rotate_check = now + rotate_interval(&self.settings);
                self.rotate(now);
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut deadline = Instant::now() + TICK;
        if let Some(stopping) = self.stopping.as_ref().filter(|s| !s.killed) {
            deadline = deadline.min(stopping.deadline);
        }
        if let Some(at) = self.render_at {
            deadline = deadline.min(at);
        }
        deadline.min(self.next_rotate_check)
    }

    fn forward(&self, signal: Signal) {
        signals::send(self.child, self.settings.process_group, signal);
    }

    /// Starts the grace period, sending the stop signal first if asked. A
    /// shutdown overrides a pending restart; a restart does not override a
    /// shutdown.
    fn begin_stop(&mut self, restart: bool, send_stop_signal: bool) {
        if let Some(stopping) = &mut self.stopping {
            stopping.restart &= restart;
            return;
        }
        if send_stop_signal {
            self.forward(self.settings.reload.stop_signal.0);
        }
        self.stopping = Some(Stopping {
            deadline: Instant::now() + self.settings.grace.0,
            killed: false,
            restart,
        });
    }

    fn rerender(&mut self) {
        if self.stopping.as_ref().is_some_and(|s| !s.restart) {
            // Shutting down: nothing left to reload.
            return;
        }
        let settings = match (self.reload)() {
            Ok(settings) => settings,
            Err(error) => {
                tracing::error!(%error, "new configuration rejected; keeping the running one");
                return;
            }
        };
        let rendered = match super::template::render_all(&settings) {
            Ok(rendered) => rendered,
            Err(error) => {
                tracing::error!(%error, "re-render failed; outputs left as they were");
                return;
            }
        };
        *self.outputs.lock() = rendered.iter().map(|r| r.output.clone()).collect();
        let changed: Vec<_> = rendered
            .iter()
            .filter(|r| r.changed)
            .map(|r| r.output.display().to_string())
            .collect();
        self.settings = settings;
        if changed.is_empty() {
            tracing::debug!("re-render changed nothing");
            return;
        }
        let action = self.settings.reload.action;
        tracing::info!(?changed, ?action, "configuration changed");
        match action {
            ReloadAction::Signal => self.forward(self.settings.reload.signal.0),
            ReloadAction::Restart => self.begin_stop(true, true),
            ReloadAction::None => {}
        }
    }

    fn rotate(&mut self, now: Instant) {
        let mut reopen: Vec<Signal> = Vec::new();
        for rotator in &mut self.rotators {
            if let Some(signal) = rotator.check(now) {
                if !reopen.contains(&signal) {
                    reopen.push(signal);
                }
            }
        }
        for signal in reopen {
            self.forward(signal);
        }
    }
}

fn rotate_interval(settings: &Settings) -> Duration {
    settings.rotate_interval.0.max(MIN_ROTATE_INTERVAL)
}

/// Starts COMMAND with our stdio, as `settings.user` if given, in its own
/// process group if asked.
fn spawn(command: &[OsString], settings: &Settings) -> Result<Pid, SpawnError> {
    let error = |source| SpawnError {
        command: command
            .first()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source,
    };
    let Some((program, args)) = command.split_first() else {
        return Err(error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no COMMAND given",
        )));
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(user) = settings.user {
        // std drops supplementary groups too when we are root.
        cmd.uid(user.uid).gid(user.gid);
    }
    if settings.process_group {
        cmd.process_group(0);
    }
    // The child inherits our signal mask through fork and exec, and std
    // does not reset it: without this it would start with SIGTERM & co.
    // blocked and never see what we forward.
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and only
    // calls sigprocmask(2), which is async-signal-safe; it allocates nothing
    // and touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(io::Error::from)
        });
    }
    // The handle is dropped without waiting: reaper::reap collects it.
    let child = cmd.spawn().map_err(error)?;
    let pid = i32::try_from(child.id()).map_err(|_| error(io::Error::other("pid out of range")))?;
    tracing::info!(pid, command = ?command, "started child");
    Ok(Pid::from_raw(pid))
}
