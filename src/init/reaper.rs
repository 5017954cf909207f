//! Reaping: collect every exited child — the supervised one and any orphan
//! re-parented to us — and turn the supervised child's wait status into an
//! exit code.

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How the supervised child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Signal),
}

impl Exit {
    /// The status a shell would report: the exit code, or 128 + signal.
    pub fn code(self) -> u8 {
        match self {
            Exit::Code(code) => u8::try_from(code & 0xff).unwrap_or(1),
            Exit::Signal(signal) => u8::try_from(128 + signal as i32).unwrap_or(255),
        }
    }
}

/// Reaps every child that has exited, without blocking. Returns how
/// `child` ended if it was among them.
///
/// One SIGCHLD can stand for many exits (pending signals coalesce), so this
/// loops until there is nothing left to collect rather than reaping once per
/// signal.
pub fn reap(child: Option<Pid>) -> Option<Exit> {
    let mut found = None;
    loop {
        let exit = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                tracing::warn!(%errno, "waitpid failed");
                break;
            }
            Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, Exit::Signal(signal)),
            // Stops and continues are not asked for (no WUNTRACED).
            Ok(_) => continue,
        };
        match exit {
            (pid, status) if Some(pid) == child => found = Some(status),
            (pid, status) => tracing::debug!(pid = pid.as_raw(), ?status, "reaped orphan"),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(Exit::Code(0).code(), 0);
        assert_eq!(Exit::Code(42).code(), 42);
        assert_eq!(Exit::Signal(Signal::SIGTERM).code(), 143);
        assert_eq!(Exit::Signal(Signal::SIGKILL).code(), 137);
    }
}
