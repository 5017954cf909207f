//! Signals: which ones we take over, how they reach the supervisor loop,
//! and how they are passed on to the child.
//!
//! The signals are blocked in every thread (the mask is set before any
//! thread exists, and threads inherit it) and one thread collects them with
//! sigwait(2). Blocked signals are queued even for PID 1, which the kernel
//! otherwise spares from every signal it has no handler for. The child gets
//! a clean mask: std's Command resets it before exec.

use std::sync::mpsc::SyncSender;
use std::thread;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use super::supervisor::Event;

/// Signals passed on to the child as they come.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGQUIT,
    Signal::SIGWINCH,
];

/// Blocks the forwarded signals and SIGCHLD in the calling thread. Call it
/// first thing, before any thread is started.
pub fn block() -> nix::Result<SigSet> {
    let mut set = SigSet::empty();
    for signal in FORWARDED.iter().chain([&Signal::SIGCHLD]) {
        set.add(*signal);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(set)
}

/// Starts the thread that turns blocked signals into supervisor events. It
/// ends when the supervisor drops its receiver.
pub fn listen(set: SigSet, events: SyncSender<Event>) -> std::io::Result<()> {
    thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || loop {
            match set.wait() {
                Ok(signal) => {
                    if events.send(Event::Signal(signal)).is_err() {
                        return;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    tracing::error!(%errno, "sigwait failed; signals are no longer handled");
                    return;
                }
            }
        })
        .map(drop)
}

/// Sends `signal` to the child, or to its whole process group.
pub fn send(child: Pid, group: bool, signal: Signal) {
    let result = if group {
        killpg(child, signal)
    } else {
        kill(child, signal)
    };
    match result {
        // The child is already gone; its exit is waiting to be reaped.
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => {
            tracing::warn!(%errno, ?signal, pid = child.as_raw(), "could not signal child")
        }
    }
}
