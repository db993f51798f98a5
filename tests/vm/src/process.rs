//! Running programs: one-shot commands with a deadline, and long-lived background
//! processes whose output is captured for the test to read.
//!
//! Nothing here knows about namespaces; [`crate::Node`] builds the `Command`s that
//! enter them. Processes are ended by their PID only (never by name), and a
//! background process is ended when its handle is dropped, panics included.

use std::fmt;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::wait::wait_until;

/// What a finished command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The command line, for messages.
    pub argv: Vec<String>,
    /// Exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}", self.argv.join(" "))?;
        writeln!(f, "exit code: {:?}", self.code)?;
        writeln!(f, "stdout:\n{}", indent(&self.stdout))?;
        write!(f, "stderr:\n{}", indent(&self.stderr))
    }
}

/// Indents every line by four spaces and marks the end, so that trailing
/// whitespace and a missing final newline are visible in failure messages.
pub fn indent(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        out.push_str("    ");
        out.push_str(line);
    }
    if !text.ends_with('\n') {
        out.push_str("<no newline at end>\n");
    }
    out.push_str("    <end>");
    out
}

fn argv_of(cmd: &Command) -> Vec<String> {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect()
}

/// Shared buffer a reader thread appends a pipe's bytes to.
type Captured = Arc<Mutex<Vec<u8>>>;

fn capture(mut pipe: impl Read + Send + 'static, into: Captured) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into
                    .lock()
                    .expect("no reader thread panics while holding the lock")
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}

fn text(captured: &Captured) -> String {
    String::from_utf8_lossy(
        &captured
            .lock()
            .expect("no reader thread panics while holding the lock"),
    )
    .into_owned()
}

/// Runs `cmd` to completion with stdin closed, failing if it takes longer than
/// `timeout` (the process is then killed and its partial output shown).
pub fn run(mut cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
    let argv = argv_of(&cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {argv:?}"))?;
    let stdout = Captured::default();
    let stderr = Captured::default();
    let readers = [
        capture(
            child.stdout.take().expect("stdout is piped"),
            stdout.clone(),
        ),
        capture(
            child.stderr.take().expect("stderr is piped"),
            stderr.clone(),
        ),
    ];
    let status = wait_until(timeout, || match child.try_wait() {
        Ok(Some(status)) => Ok(Ok(status)),
        Ok(None) => Err(()),
        Err(e) => Ok(Err(e)),
    });
    let status = match status {
        Ok(status) => status.with_context(|| format!("waiting for {argv:?}"))?,
        Err(timed_out) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(anyhow!(
                "{argv:?} did not finish within {timeout:?} (waited {:?})\nstdout so far:\n{}\nstderr so far:\n{}",
                timed_out.waited,
                indent(&text(&stdout)),
                indent(&text(&stderr)),
            ));
        }
    };
    for reader in readers {
        // The pipes close when the process and any children holding them exit.
        let _ = reader.join();
    }
    Ok(Output {
        argv,
        code: status.code(),
        stdout: text(&stdout),
        stderr: text(&stderr),
    })
}

/// Like [`run`], but fails unless the command exits with status 0.
pub fn run_ok(cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
    let output = run(cmd, timeout)?;
    if !output.success() {
        return Err(anyhow!("command failed:\n{output}"));
    }
    Ok(output)
}

/// A long-running process whose stdout and stderr are captured into one log.
///
/// Its stdin is a pipe held open for its whole life (some daemons stop when stdin
/// reaches end of file). Dropping the handle sends SIGTERM, waits a while, then
/// sends SIGKILL; if the thread is panicking, the log is printed so a failing test
/// shows what the process said.
#[derive(Debug)]
pub struct Background {
    name: String,
    child: Child,
    log: Captured,
    status: Option<ExitStatus>,
    _stdin: Option<std::process::ChildStdin>,
}

impl Background {
    /// Starts `cmd`; `name` labels it in messages.
    pub fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<Self> {
        let argv = argv_of(&cmd);
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}: {argv:?}"))?;
        Ok(Self::adopt(name, child))
    }

    /// Takes charge of an already started child: captures whichever of its stdout
    /// and stderr are still piped, and holds its stdin.
    pub fn adopt(name: &str, mut child: Child) -> Self {
        let log = Captured::default();
        if let Some(out) = child.stdout.take() {
            capture(out, log.clone());
        }
        if let Some(err) = child.stderr.take() {
            capture(err, log.clone());
        }
        Self {
            name: name.to_owned(),
            _stdin: child.stdin.take(),
            child,
            log,
            status: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process has printed so far (stdout and stderr interleaved).
    pub fn log(&self) -> String {
        text(&self.log)
    }

    /// The exit status if the process has ended (reaping it), else `None`.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .with_context(|| format!("checking whether {} exited", self.name))?;
        }
        Ok(self.status)
    }

    /// How the process ended, if it has, without reaping it (so that `&self`
    /// suffices, as in failure reports): `None` while it runs.
    pub fn exit_description(&self) -> Option<String> {
        if let Some(status) = self.status {
            return Some(status.to_string());
        }
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("Linux PIDs fit in i32"));
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::Exited(_, code)) => Some(format!("exit status: {code}")),
            Ok(WaitStatus::Signaled(_, signal, core)) => Some(format!(
                "killed by {signal}{}",
                if core { " (core dumped)" } else { "" }
            )),
            _ => None,
        }
    }

    /// Waits until the process has exited, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        wait_until(timeout, || match self.try_wait() {
            Ok(Some(status)) => Ok(Ok(status)),
            Ok(None) => Err("still running"),
            Err(e) => Ok(Err(e)),
        })
        .map_err(|t| anyhow!("{} did not exit: {t}", self.name))?
    }

    /// Sends `signal` to the process, by PID, unless it has already been reaped.
    pub fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("Linux PIDs fit in i32"));
        kill(pid, signal).with_context(|| format!("sending {signal} to {}", self.name))
    }

    /// Ends the process: SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        match self.wait_exit(grace) {
            Ok(status) => Ok(status),
            Err(_) => {
                self.signal(Signal::SIGKILL)?;
                self.wait_exit(Duration::from_secs(10))
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Err(e) = self.stop(Duration::from_secs(10)) {
            eprintln!("cleanup: {e:#}");
        }
        if std::thread::panicking() && !self.log().is_empty() {
            eprintln!(
                "---- log of {} (pid {}) ----\n{}",
                self.name,
                self.pid(),
                indent(&self.log())
            );
        }
    }
}
