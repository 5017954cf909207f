//! `zeod init` as a real PID 1, in a fresh PID namespace made by
//! `unshare --pid --fork --mount-proc`: signals reach the child, orphans
//! re-parented to init are reaped, the child's status (128 + signal when
//! killed) is init's status, and SIGKILL follows the grace period. The
//! same reaping is checked outside a namespace, as a child subreaper.

#![allow(clippy::unwrap_used)] // tests may unwrap (common brief)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Generous bound of every wait here; a healthy run takes well under it.
const PATIENCE: Duration = Duration::from_secs(20);

/// `zeod init` running `script` under `sh -c`, either as PID 1 of a new PID
/// namespace or as a plain process. Killed (with everything inside) on drop.
struct Init {
    /// `unshare` in namespace mode, else zeod itself.
    outer: Child,
    /// zeod's pid as seen from here.
    zeod: Pid,
    dir: tempfile::TempDir,
}

fn unshare_available() -> bool {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("unshare --pid does not work here (not root?); the PID 1 case is not exercised");
    }
    ok
}

impl Init {
    fn start(as_pid1: bool, extra: &[&str], script: &str) -> Init {
        Init::start_with_env(as_pid1, &[], extra, script)
    }

    fn start_with_env(as_pid1: bool, env: &[(&str, &str)], extra: &[&str], script: &str) -> Init {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("t")).unwrap();
        let zeod = env!("CARGO_BIN_EXE_zeod");
        let mut args: Vec<String> = Vec::new();
        if as_pid1 {
            args.extend(["--pid", "--fork", "--mount-proc", zeod].map(String::from));
        }
        args.extend(["init", "--no-watch", "--templates"].map(String::from));
        args.push(dir.path().join("t").display().to_string());
        if !as_pid1 {
            // So a stop reaches the grandchildren too (no namespace to end).
            args.push("--process-group".to_owned());
        }
        args.push("--output-dir".to_owned());
        args.push(dir.path().join("out").display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--", "sh", "-c", script].map(String::from));
        let program = if as_pid1 { "unshare" } else { zeod };
        let mut outer = Command::new(program)
            .args(&args)
            .env("ZEOD_INIT_REQUIRED", "")
            .env("DIR", dir.path())
            .envs(env.iter().copied())
            .spawn()
            .unwrap();
        let zeod = if as_pid1 {
            let unshare = Pid::from_raw(outer.id() as i32);
            // A child that exits at once may take zeod with it before we look.
            wait_until("zeod to start under unshare", || {
                let exited = outer.try_wait().unwrap().is_some();
                children(unshare)
                    .first()
                    .copied()
                    .or(exited.then_some(unshare))
            })
        } else {
            Pid::from_raw(outer.id() as i32)
        };
        Init { outer, zeod, dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn signal(&self, signal: Signal) {
        kill(self.zeod, signal).unwrap();
    }

    fn wait(&mut self) -> ExitStatus {
        let outer = &mut self.outer;
        wait_until("zeod to exit", || outer.try_wait().unwrap())
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        if self.outer.try_wait().unwrap_or(None).is_some() {
            return;
        }
        // TERM first: outside a namespace a SIGKILLed zeod would leave its
        // children running (holding the test's output open). As PID 1 its
        // end takes the whole namespace with it.
        let _ = kill(self.zeod, Signal::SIGTERM);
        let start = Instant::now();
        while self.outer.try_wait().unwrap_or(None).is_none() {
            if start.elapsed() > PATIENCE {
                let _ = kill(self.zeod, Signal::SIGKILL);
                let _ = self.outer.kill();
                let _ = self.outer.wait();
                return;
            }
            sleep(Duration::from_millis(20));
        }
    }
}

/// Polls `f` until it gives a value; panics after PATIENCE.
fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        sleep(Duration::from_millis(20));
    }
}

fn wait_for_file(path: &Path, contains: &str) {
    wait_until(&format!("{contains:?} in {}", path.display()), || {
        fs::read_to_string(path)
            .ok()
            .filter(|s| s.contains(contains))
    });
}

/// (pid, state, ppid) of every process, from /proc/<pid>/stat.
fn processes() -> Vec<(Pid, char, Pid)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …"; comm may hold spaces and parens.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = tail.split_whitespace();
        let (Some(state), Some(ppid)) = (fields.next(), fields.next()) else {
            continue;
        };
        let pid = head.split_whitespace().next().and_then(|p| p.parse().ok());
        if let (Some(pid), Some(state), Ok(ppid)) = (pid, state.chars().next(), ppid.parse()) {
            found.push((Pid::from_raw(pid), state, Pid::from_raw(ppid)));
        }
    }
    found
}

fn children(parent: Pid) -> Vec<Pid> {
    processes()
        .into_iter()
        .filter(|(_, _, ppid)| *ppid == parent)
        .map(|(pid, _, _)| pid)
        .collect()
}

#[test]
fn exit_status_of_the_child_is_propagated() {
    if !unshare_available() {
        return;
    }
    let mut init = Init::start(true, &[], "exit 42");
    assert_eq!(init.wait().code(), Some(42));
    // Killed by a signal: 128 + signo, as a shell reports it.
    let mut init = Init::start(true, &[], "kill -USR1 $$");
    assert_eq!(init.wait().code(), Some(128 + Signal::SIGUSR1 as i32));
    let mut init = Init::start(true, &[], "kill -KILL $$");
    assert_eq!(init.wait().code(), Some(137));
}

#[test]
fn signals_sent_to_pid1_reach_the_child() {
    if !unshare_available() {
        return;
    }
    let script = r#"
        for s in HUP USR1 USR2 QUIT INT; do trap "echo $s >> $DIR/got" $s; done
        trap 'echo TERM >> $DIR/got; exit 7' TERM
        echo ready > $DIR/ready
        while :; do sleep 0.05; done
    "#;
    let mut init = Init::start(true, &[], script);
    wait_for_file(&init.file("ready"), "ready");
    for signal in [
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGQUIT,
        Signal::SIGINT,
    ] {
        init.signal(signal);
        // sh names them without the SIG prefix.
        wait_for_file(&init.file("got"), &signal.as_str()[3..]);
    }
    // INT started a stop; the child ignores it, so TERM (forwarded as well)
    // is what ends it, with the status the child chose.
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait().code(), Some(7));
    assert_eq!(
        fs::read_to_string(init.file("got")).unwrap(),
        "HUP\nUSR1\nUSR2\nQUIT\nINT\nTERM\n"
    );
}

#[test]
fn sigkill_follows_the_grace_period() {
    if !unshare_available() {
        return;
    }
    let script = r#"
        trap 'echo TERM >> $DIR/got' TERM
        echo ready > $DIR/ready
        while :; do sleep 0.05; done
    "#;
    let mut init = Init::start(true, &["--grace", "1s"], script);
    wait_for_file(&init.file("ready"), "ready");
    let sent = Instant::now();
    init.signal(Signal::SIGTERM);
    wait_for_file(&init.file("got"), "TERM");
    assert_eq!(init.wait().code(), Some(137), "the child is SIGKILLed");
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "not before the grace period"
    );
}

/// The child leaves an orphan (`sleep` whose parent exits at once) that is
/// re-parented to init; once it exits it must not linger as a zombie.
fn orphans_are_reaped(as_pid1: bool) {
    let script = r#"
        (sleep 0.5 &)
        echo ready > $DIR/ready
        sleep 30
    "#;
    let init = Init::start(as_pid1, &[], script);
    wait_for_file(&init.file("ready"), "ready");
    // Started first, so it has the lowest pid of zeod's children.
    let main_child = wait_until("the main child", || children(init.zeod).into_iter().min());
    // The orphan is re-parented to zeod: seen as a second child of it.
    let orphan = wait_until("the orphan to be re-parented to zeod", || {
        children(init.zeod)
            .into_iter()
            .find(|pid| *pid != main_child)
    });
    // It exits after 0.5 s; zeod must reap it while the main child runs.
    wait_until("the orphan to be reaped", || {
        let gone = !processes().iter().any(|(pid, _, _)| *pid == orphan);
        gone.then_some(())
    });
    assert!(
        children(init.zeod).contains(&main_child),
        "the main child is still running"
    );
    let zombies: Vec<_> = processes()
        .into_iter()
        .filter(|(_, state, ppid)| *ppid == init.zeod && *state == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");
}

#[test]
fn orphans_are_reaped_as_pid1() {
    if !unshare_available() {
        return;
    }
    orphans_are_reaped(true);
}

#[test]
fn orphans_are_reaped_as_a_subreaper() {
    orphans_are_reaped(false);
}

#[test]
fn process_group_mode_signals_the_whole_group() {
    if !unshare_available() {
        return;
    }
    // The child starts a grandchild; both record SIGUSR1.
    let script = r#"
        trap 'echo child >> $DIR/got' USR1
        sh -c 'trap "echo grandchild >> $DIR/got" USR1; echo ready > $DIR/ready2; while :; do sleep 0.05; done' &
        echo ready > $DIR/ready
        while :; do sleep 0.05; done
    "#;
    for (group, expected) in [(false, "child\n"), (true, "child\ngrandchild\n")] {
        let extra: &[&str] = if group { &["--process-group"] } else { &[] };
        let init = Init::start(true, extra, script);
        wait_for_file(&init.file("ready"), "ready");
        wait_for_file(&init.file("ready2"), "ready");
        init.signal(Signal::SIGUSR1);
        wait_for_file(&init.file("got"), "child");
        sleep(Duration::from_millis(500));
        let mut got: Vec<_> = fs::read_to_string(init.file("got"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        got.sort();
        assert_eq!(got.join("\n") + "\n", expected, "--process-group {group}");
    }
}

#[test]
fn sigterm_is_translated_to_the_configured_stop_signal() {
    if !unshare_available() {
        return;
    }
    let script = r#"
        trap 'echo TERM >> $DIR/got; exit 1' TERM
        trap 'echo USR1 >> $DIR/got; exit 0' USR1
        echo ready > $DIR/ready
        while :; do sleep 0.05; done
    "#;
    let mut init = Init::start_with_env(
        true,
        &[("ZEOD_INIT_RELOAD__STOP_SIGNAL", "SIGUSR1")],
        &[],
        script,
    );
    wait_for_file(&init.file("ready"), "ready");
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait().code(), Some(0));
    assert_eq!(fs::read_to_string(init.file("got")).unwrap(), "USR1\n");
}
