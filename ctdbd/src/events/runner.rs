//! Runs one event: every script of the configuration directory in name order, each in
//! its own process group, with output captured and one deadline for the whole event.
//!
//! Behaviour follows CTDB 4.17's event daemon, checked against the stock `ctdb-eventd`
//! with a scratch `CTDB_BASE`:
//! - Scripts get `$1` = event name and the event's arguments; stdout and stderr go to
//!   one pipe, so their lines keep their order.
//! - The first script that fails (non-zero exit, killed by a signal, cannot be
//!   started) or times out ends the event; later scripts do not run and are not
//!   listed in the result. Scripts that are not executable are listed as disabled and
//!   skipped without failing the event.
//! - `EventScriptTimeout` is the time allowed for the whole event, not per script
//!   (`ctdb-tunables(7)`). When it runs out, the `[event] debug script` (if
//!   configured) runs as `SCRIPT PID EVENT` while the hung script still exists, so it
//!   can look at its process tree; then the script's whole process group is killed.
//!
//! Where we differ on purpose: CTDB reads exit codes 64–254 as errno values of its
//! own fork/exec helper (exit 77 shows as `DISABLED`); we record any exit code as the
//! script's failure. CTDB runs the debug script with no time limit; ours has one.
//!
//! Environment: the daemon's own, plus `CTDB_BASE`, `CTDB_SCRIPT_VARDIR`,
//! `CTDB_SOCKET` (when set) and the caller's extra variables, then the assignments of
//! `script.options` and the script's `NN.name.options`, in that order, as the stock
//! `functions` file's `load_script_options` would source them. Scripts may still
//! source the files themselves; the values agree.
//!
//! Edge module: tokio, processes, pipes, the clock. The caller (an events task owned
//! by the daemon) runs one event at a time and turns the [`EventResult`] into a core
//! input; dropping the future returned by [`EventRunner::run`] kills the running
//! script's process group, which is how a `monitor` is cancelled.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use nix::fcntl::OFlag;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::event::Event;
use super::scripts::{planned_scripts, PlannedScript, Readiness};
use crate::config::script_options::{parse_script_options, ScriptOption};

/// Output kept per script; the rest is read and counted, never stored.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 * 1024;
/// Time allowed for the debug script.
pub const DEFAULT_DEBUG_TIMEOUT: Duration = Duration::from_secs(10);
/// After a process group is killed, how long to wait for its leader to be reaped
/// before giving up on it (a process stuck in the kernel ignores SIGKILL until it
/// leaves; tokio reaps it later).
const REAP_GRACE: Duration = Duration::from_secs(5);
/// Most bytes read from a pipe after its script exited. A background process that
/// kept the pipe open could otherwise keep the reader busy forever.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
const ETIMEDOUT: i32 = libc::ETIMEDOUT;

/// How the runner runs scripts. Paths are as the daemon resolved them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    /// `CTDB_BASE`: the configuration directory; `script.options` is read from here.
    pub ctdb_base: PathBuf,
    /// Where enabled scripts are (`CTDB_BASE/events/legacy`); events run from here.
    pub scripts_dir: PathBuf,
    /// `CTDB_SCRIPT_VARDIR`: the scripts' state directory (`/var/lib/ctdb/scripts`).
    pub script_vardir: PathBuf,
    /// `CTDB_SOCKET`, so that `ctdb` run by a script talks to this daemon.
    pub socket: Option<PathBuf>,
    /// More variables for every script, set before the options files' values.
    pub env: Vec<(String, String)>,
    /// `[event] debug script`, resolved to a path; run when an event times out.
    pub debug_script: Option<PathBuf>,
    /// Time allowed for the debug script.
    pub debug_timeout: Duration,
    /// Bytes of output kept per script.
    pub output_limit: usize,
}

impl RunnerConfig {
    /// Defaults for a configuration directory: scripts in `CTDB_BASE/events/legacy`,
    /// no socket, no debug script, 64 KiB of output per script.
    pub fn new(ctdb_base: impl Into<PathBuf>, script_vardir: impl Into<PathBuf>) -> Self {
        let ctdb_base = ctdb_base.into();
        Self {
            scripts_dir: ctdb_base.join("events").join("legacy"),
            ctdb_base,
            script_vardir: script_vardir.into(),
            socket: None,
            env: Vec::new(),
            debug_script: None,
            debug_timeout: DEFAULT_DEBUG_TIMEOUT,
            output_limit: DEFAULT_OUTPUT_LIMIT,
        }
    }
}

/// How one script ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ScriptStatus {
    /// Exit status 0.
    Ok,
    /// Non-zero exit status; the event stopped here.
    Failed(i32),
    /// Still running when the event's time ran out; its process group was killed and
    /// the event stopped here.
    TimedOut,
    /// Not run: a local script without execute bits, or a link to nothing.
    Disabled,
    /// Not run: enabled, but the file is not executable.
    NotExecutable,
    /// Could not be run, or was killed by a signal not sent by the runner; the text
    /// is what CTDB shows in parentheses after `CANNOT RUN`. The event stopped here.
    Error(String),
}

impl ScriptStatus {
    /// Whether this status ends the event.
    pub fn stops_event(&self) -> bool {
        matches!(
            self,
            ScriptStatus::Failed(_) | ScriptStatus::TimedOut | ScriptStatus::Error(_)
        )
    }
}

/// One script's part in an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptResult {
    /// `NN.name`.
    pub name: String,
    /// How it ended.
    pub status: ScriptStatus,
    /// Its stdout and stderr, interleaved, up to the output limit (invalid UTF-8
    /// replaced).
    pub output: String,
    /// Bytes of output beyond the limit, read and dropped.
    pub output_dropped: u64,
    /// When it started (for scripts not run: when they were skipped).
    pub started: SystemTime,
    /// How long it ran.
    pub duration: Duration,
}

/// The outcome of a whole event, as CTDB sums it up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Overall {
    /// Every script that ran succeeded.
    Ok,
    /// A script exited non-zero.
    Failed {
        /// The script.
        script: String,
        /// Its exit status.
        code: i32,
    },
    /// A script was still running at the deadline.
    TimedOut {
        /// The script.
        script: String,
    },
    /// A script could not be run, or the script directory could not be read.
    Error {
        /// The script, if the problem was one script.
        script: Option<String>,
        /// What went wrong.
        message: String,
        /// The errno CTDB would report (`ctdb event status` exits with it).
        errno: i32,
    },
}

impl Overall {
    /// The exit status of `ctdb event status` for this outcome: 0, the script's exit
    /// status, `ETIMEDOUT`, or the errno.
    pub fn exit_code(&self) -> i32 {
        match self {
            Overall::Ok => 0,
            Overall::Failed { code, .. } => *code,
            Overall::TimedOut { .. } => ETIMEDOUT,
            Overall::Error { errno, .. } => *errno,
        }
    }
}

/// What the debug script did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebugHookResult {
    /// The debug script.
    pub script: PathBuf,
    /// The hung script's pid it was given.
    pub pid: u32,
    /// How it ended (`TimedOut` if it outlived its own time limit).
    pub status: ScriptStatus,
    /// Its output, up to the output limit.
    pub output: String,
}

/// The result of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventResult {
    /// The event, with its arguments.
    pub event: Event,
    /// The scripts visited, in order, up to and including the one that stopped the
    /// event.
    pub scripts: Vec<ScriptResult>,
    /// The summary.
    pub overall: Overall,
    /// The debug script's run, if the event timed out and one is configured.
    pub debug: Option<DebugHookResult>,
}

/// Runs events. Holds only configuration, so one runner can be shared; the caller
/// decides how events are queued.
#[derive(Debug, Clone)]
pub struct EventRunner {
    config: RunnerConfig,
}

impl EventRunner {
    /// A runner with `config`.
    pub fn new(config: RunnerConfig) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// Runs `event`. `timeout` is the time allowed for the whole event
    /// (`EventScriptTimeout`); `None` means no limit (`ctdb event run 0 ...`).
    /// Never fails: every problem is recorded in the result.
    pub async fn run(&self, event: &Event, timeout: Option<Duration>) -> EventResult {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut result = EventResult {
            event: event.clone(),
            scripts: Vec::new(),
            overall: Overall::Ok,
            debug: None,
        };
        let plan = match planned_scripts(&self.config.scripts_dir) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(event = %event, error = %e, "cannot list event scripts");
                result.overall = Overall::Error {
                    script: None,
                    message: e.to_string(),
                    errno: libc::ENOENT,
                };
                return result;
            }
        };
        let global_options = read_options(&self.config.ctdb_base.join("script.options"));
        let argv = event.argv();

        for planned in plan {
            let started = SystemTime::now();
            let skipped = match planned.readiness {
                Readiness::Executable => None,
                Readiness::NotExecutable => Some(ScriptStatus::NotExecutable),
                Readiness::Disabled => Some(ScriptStatus::Disabled),
            };
            let (script, errno) = match skipped {
                Some(status) => (skipped_result(&planned, status, started), 0),
                None => {
                    let options = global_options.clone().and_then(|mut global| {
                        let own = self
                            .config
                            .scripts_dir
                            .join(planned.name.options_file_name());
                        global.extend(read_options(&own)?);
                        Ok(global)
                    });
                    match options {
                        Ok(options) => {
                            let (script, errno, debug) =
                                self.run_script(&planned, &argv, &options, deadline).await;
                            if debug.is_some() {
                                result.debug = debug;
                            }
                            (script, errno)
                        }
                        Err(message) => {
                            let status = ScriptStatus::Error(message);
                            (skipped_result(&planned, status, started), libc::EINVAL)
                        }
                    }
                }
            };
            let stop = script.status.stops_event();
            if stop {
                result.overall = match &script.status {
                    ScriptStatus::Failed(code) => Overall::Failed {
                        script: script.name.clone(),
                        code: *code,
                    },
                    ScriptStatus::TimedOut => Overall::TimedOut {
                        script: script.name.clone(),
                    },
                    ScriptStatus::Error(message) => Overall::Error {
                        script: Some(script.name.clone()),
                        message: message.clone(),
                        errno,
                    },
                    _ => Overall::Ok,
                };
                tracing::warn!(event = %event, script = %script.name, status = ?script.status,
                    "event script failed, event stopped");
            }
            result.scripts.push(script);
            if stop {
                break;
            }
        }
        result
    }

    /// Runs one executable script. Returns its result, the errno for a
    /// `ScriptStatus::Error`, and the debug script's run if it timed out.
    async fn run_script(
        &self,
        planned: &PlannedScript,
        argv: &[String],
        options: &[ScriptOption],
        deadline: Option<Instant>,
    ) -> (ScriptResult, i32, Option<DebugHookResult>) {
        let started = SystemTime::now();
        let clock = Instant::now();
        let name = planned.name.as_str();
        let mut command = Command::new(&planned.path);
        command.arg0(name).args(argv);
        self.set_env(&mut command, options);

        let finish = |status, output: &mut Capture, errno| {
            let (output, output_dropped) = output.take();
            let result = ScriptResult {
                name: name.to_owned(),
                status,
                output,
                output_dropped,
                started,
                duration: clock.elapsed(),
            };
            (result, errno)
        };

        let mut process = match Process::spawn(command, self.config.output_limit) {
            Ok(process) => process,
            Err(e) => {
                let (status, errno) = spawn_error_status(&e);
                tracing::warn!(script = name, error = %e, "cannot start event script");
                let (result, errno) = finish(status, &mut Capture::new(0), errno);
                return (result, errno, None);
            }
        };
        match process.wait(deadline).await {
            Some(exit) => {
                let (status, errno) = exit_status(exit);
                let (result, errno) = finish(status, &mut process.output, errno);
                (result, errno, None)
            }
            None => {
                let debug = match &self.config.debug_script {
                    Some(debug_script) => Some(
                        self.run_debug(debug_script, process.pid, argv[0].as_str())
                            .await,
                    ),
                    None => None,
                };
                process.kill_group().await;
                let (result, errno) =
                    finish(ScriptStatus::TimedOut, &mut process.output, ETIMEDOUT);
                (result, errno, debug)
            }
        }
    }

    /// Runs the debug script as `SCRIPT PID EVENT` with its own time limit.
    async fn run_debug(&self, debug_script: &Path, pid: u32, event: &str) -> DebugHookResult {
        let mut command = Command::new(debug_script);
        command.arg(pid.to_string()).arg(event);
        self.set_env(&mut command, &[]);
        let deadline = Instant::now() + self.config.debug_timeout;
        let (status, output) = match Process::spawn(command, self.config.output_limit) {
            Err(e) => (spawn_error_status(&e).0, String::new()),
            Ok(mut process) => {
                let status = match process.wait(Some(deadline)).await {
                    Some(exit) => exit_status(exit).0,
                    None => {
                        process.kill_group().await;
                        ScriptStatus::TimedOut
                    }
                };
                (status, process.output.take().0)
            }
        };
        for line in output.lines() {
            tracing::error!(pid, event, "event_debug: {line}");
        }
        DebugHookResult {
            script: debug_script.to_path_buf(),
            pid,
            status,
            output,
        }
    }

    fn set_env(&self, command: &mut Command, options: &[ScriptOption]) {
        let config = &self.config;
        command.env("CTDB_BASE", &config.ctdb_base);
        command.env("CTDB_SCRIPT_VARDIR", &config.script_vardir);
        if let Some(socket) = &config.socket {
            command.env("CTDB_SOCKET", socket);
        }
        command.envs(config.env.iter().map(|(k, v)| (k, v)));
        command.envs(options.iter().map(|o| (&o.name, &o.value)));
    }
}

fn skipped_result(
    planned: &PlannedScript,
    status: ScriptStatus,
    started: SystemTime,
) -> ScriptResult {
    ScriptResult {
        name: planned.name.to_string(),
        status,
        output: String::new(),
        output_dropped: 0,
        started,
        duration: Duration::ZERO,
    }
}

/// An options file's assignments; a missing or unreadable file has none (the stock
/// `functions` sources only readable files). A file that does not parse is an error
/// message naming file and line.
fn read_options(path: &Path) -> Result<Vec<ScriptOption>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_script_options(&text, path).map_err(|e| e.to_string()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Status and errno for a script that exited.
fn exit_status(exit: ExitStatus) -> (ScriptStatus, i32) {
    match (exit.code(), exit.signal()) {
        (Some(0), _) => (ScriptStatus::Ok, 0),
        (Some(code), _) => (ScriptStatus::Failed(code), 0),
        // CTDB reports a script killed by a signal as EINTR: "CANNOT RUN
        // (Interrupted system call)".
        (None, signal) => {
            tracing::warn!(?signal, "event script killed by a signal");
            (ScriptStatus::Error(strerror(libc::EINTR)), libc::EINTR)
        }
    }
}

/// Status and errno for a script that could not be started. A script that vanished
/// or lost its execute bit between listing and starting counts as disabled, as in
/// CTDB (its symlink was removed while the event was running).
fn spawn_error_status(e: &io::Error) -> (ScriptStatus, i32) {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::EACCES) => (ScriptStatus::Disabled, 0),
        Some(errno) => (ScriptStatus::Error(strerror(errno)), errno),
        None => (ScriptStatus::Error(e.to_string()), libc::EIO),
    }
}

/// The C library's text for `errno`, as `strerror` gives it.
fn strerror(errno: i32) -> String {
    nix::errno::Errno::from_raw(errno).desc().to_owned()
}

/// A running script: its process (leader of its own group) and the read end of its
/// output pipe. Dropping it before [`Process::wait`] saw an exit kills the group.
struct Process {
    child: Child,
    pid: u32,
    pipe: pipe::Receiver,
    output: Capture,
    /// Whether the group may still hold processes we started and must kill on drop.
    /// Cleared once the leader is reaped: from then on its pid (and so the group
    /// id) may be reused by an unrelated process.
    armed: bool,
}

impl Process {
    fn spawn(mut command: Command, output_limit: usize) -> io::Result<Self> {
        // One pipe for stdout and stderr, close-on-exec so that other children
        // spawned meanwhile do not inherit it (the child's dup2 onto 1 and 2 clears
        // the flag there). Without this, EOF would wait for unrelated processes.
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let write2: OwnedFd = write.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::from(write2))
            .process_group(0)
            .kill_on_drop(false);
        let child = command.spawn()?;
        // `command` still holds our copies of the write end; close them now.
        drop(command);
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("child exited before its pid was read"))?;
        Ok(Self {
            child,
            pid,
            // Also makes it non-blocking, which `drain` relies on.
            pipe: pipe::Receiver::from_owned_fd(read)?,
            output: Capture::new(output_limit),
            armed: true,
        })
    }

    /// Reads output until the process exits (returning its status) or the deadline
    /// passes (returning `None`, the group still running).
    async fn wait(&mut self, deadline: Option<Instant>) -> Option<ExitStatus> {
        let mut buf = vec![0u8; 16 * 1024];
        let mut pipe_open = true;
        loop {
            tokio::select! {
                exit = self.child.wait() => {
                    self.armed = false;
                    self.drain(&mut buf);
                    return match exit {
                        Ok(exit) => Some(exit),
                        Err(e) => {
                            // The child is ours and unreaped, so this is a bug.
                            tracing::error!(error = %e, "waiting for event script failed");
                            Some(ExitStatus::from_raw(255 << 8))
                        }
                    };
                }
                () = sleep_until(deadline) => return None,
                read = self.pipe.read(&mut buf), if pipe_open => match read {
                    Ok(0) => pipe_open = false,
                    Ok(n) => self.output.push(&buf[..n]),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading event script output failed");
                        pipe_open = false;
                    }
                },
            }
        }
    }

    /// SIGKILLs the whole process group, reaps the leader, and keeps what output
    /// was already written.
    async fn kill_group(&mut self) {
        if self.armed {
            signal_group(self.pid, Signal::SIGKILL);
        }
        match tokio::time::timeout(REAP_GRACE, self.child.wait()).await {
            Ok(_) => self.armed = false,
            Err(_) => tracing::error!(pid = self.pid, "event script survived SIGKILL"),
        }
        let mut buf = vec![0u8; 16 * 1024];
        self.drain(&mut buf);
    }

    /// Reads what is already in the pipe without waiting: after the script exits, a
    /// background process it left may hold the pipe open, so EOF may never come.
    /// Reads the (non-blocking) descriptor directly: tokio's readiness for it may
    /// not have caught up yet, and only the syscall knows what is buffered.
    fn drain(&mut self, buf: &mut [u8]) {
        let mut total = 0;
        while total < DRAIN_LIMIT {
            match nix::unistd::read(self.pipe.as_raw_fd(), buf) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    self.output.push(&buf[..n]);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Cancelled mid-run: the group must not outlive the event. The leader is not
        // reaped yet (armed), so the group id still belongs to our processes.
        if self.armed {
            signal_group(self.pid, Signal::SIGKILL);
        }
    }
}

fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if let Err(e) = killpg(Pid::from_raw(raw), signal) {
        tracing::warn!(pid, error = %e, "cannot signal event script process group");
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Output kept up to a limit; the rest is counted.
struct Capture {
    kept: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl Capture {
    fn new(limit: usize) -> Self {
        Self {
            kept: Vec::new(),
            limit,
            dropped: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.kept.len());
        let take = room.min(bytes.len());
        self.kept.extend_from_slice(&bytes[..take]);
        self.dropped += (bytes.len() - take) as u64;
    }

    /// The text kept (invalid UTF-8 replaced) and the count dropped; leaves the
    /// capture empty.
    fn take(&mut self) -> (String, u64) {
        let kept = std::mem::take(&mut self.kept);
        let dropped = std::mem::take(&mut self.dropped);
        (String::from_utf8_lossy(&kept).into_owned(), dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::scripts::tests::{write_script, TempDir};
    use crate::events::scripts::ScriptDirs;
    use std::fs;

    /// A configuration directory with `events/legacy` and a state directory.
    fn setup(tag: &str) -> (TempDir, EventRunner) {
        let tmp = TempDir::new(tag);
        let base = tmp.0.join("etc");
        fs::create_dir_all(base.join("events/legacy")).unwrap();
        fs::create_dir_all(tmp.0.join("var")).unwrap();
        let runner = EventRunner::new(RunnerConfig::new(&base, tmp.0.join("var")));
        (tmp, runner)
    }

    fn script(runner: &EventRunner, name: &str, body: &str) {
        let path = runner.config().scripts_dir.join(format!("{name}.script"));
        write_script(&path, &format!("#!/bin/sh\n{body}\n"), 0o755);
    }

    fn statuses(result: &EventResult) -> Vec<(&str, &ScriptStatus)> {
        result
            .scripts
            .iter()
            .map(|s| (s.name.as_str(), &s.status))
            .collect()
    }

    /// Whether `pid` is gone (or a zombie nobody reaps: as dead as it gets).
    fn process_gone(pid: u32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }

    /// Polls until `pid` is gone, failing after a deadline.
    async fn assert_process_gone(pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !process_gone(pid) {
            assert!(Instant::now() < deadline, "process {pid} still alive");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads a pid a script wrote to `path`.
    fn read_pid(path: &Path) -> u32 {
        fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn scripts_run_in_name_order_with_event_arguments() {
        let (tmp, runner) = setup("order");
        let log = tmp.0.join("log");
        for name in ["20.second", "01.first", "99.last"] {
            script(
                &runner,
                name,
                &format!("echo \"{name} $*\" >> {}", log.display()),
            );
        }
        let event = Event::TakeIp {
            iface: "eth1".into(),
            ip: "10.0.0.31".parse().unwrap(),
            maskbits: 24,
        };
        let result = runner.run(&event, Some(Duration::from_secs(30))).await;
        assert_eq!(result.overall, Overall::Ok);
        assert_eq!(
            statuses(&result),
            [
                ("01.first", &ScriptStatus::Ok),
                ("20.second", &ScriptStatus::Ok),
                ("99.last", &ScriptStatus::Ok)
            ]
        );
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            "01.first takeip eth1 10.0.0.31 24\n\
             20.second takeip eth1 10.0.0.31 24\n\
             99.last takeip eth1 10.0.0.31 24\n"
        );
    }

    #[tokio::test]
    async fn enable_and_disable_by_symlink_decide_what_runs() {
        let (tmp, runner) = setup("enable");
        let share = tmp.0.join("share");
        fs::create_dir_all(&share).unwrap();
        let dirs = ScriptDirs::new(&share, &runner.config().scripts_dir);
        write_script(&share.join("10.one.script"), "#!/bin/sh\necho one\n", 0o755);
        write_script(&share.join("20.two.script"), "#!/bin/sh\necho two\n", 0o755);

        let result = runner.run(&Event::Monitor, None).await;
        assert!(result.scripts.is_empty());

        dirs.enable("20.two").unwrap();
        let result = runner.run(&Event::Monitor, None).await;
        assert_eq!(statuses(&result), [("20.two", &ScriptStatus::Ok)]);
        assert_eq!(result.scripts[0].output, "two\n");

        dirs.enable("10.one").unwrap();
        dirs.disable("20.two").unwrap();
        let result = runner.run(&Event::Monitor, None).await;
        assert_eq!(statuses(&result), [("10.one", &ScriptStatus::Ok)]);
    }

    #[tokio::test]
    async fn failing_script_stops_the_event() {
        let (tmp, runner) = setup("fail");
        let marker = tmp.0.join("ran");
        script(&runner, "01.ok", "echo fine");
        script(
            &runner,
            "02.bad",
            "echo 'bad thing' >&2; echo 'second line'; exit 3",
        );
        script(&runner, "03.after", &format!("touch {}", marker.display()));
        let result = runner
            .run(&Event::Monitor, Some(Duration::from_secs(30)))
            .await;
        assert_eq!(
            statuses(&result),
            [
                ("01.ok", &ScriptStatus::Ok),
                ("02.bad", &ScriptStatus::Failed(3))
            ]
        );
        assert_eq!(result.scripts[1].output, "bad thing\nsecond line\n");
        assert_eq!(
            result.overall,
            Overall::Failed {
                script: "02.bad".into(),
                code: 3
            }
        );
        assert_eq!(result.overall.exit_code(), 3);
        assert!(!marker.exists(), "a script after the failure ran");
    }

    #[tokio::test]
    async fn hung_script_and_its_child_are_killed_at_the_deadline() {
        let (tmp, runner) = setup("hung");
        let child_pid = tmp.0.join("child.pid");
        let leader_pid = tmp.0.join("leader.pid");
        let marker = tmp.0.join("ran");
        script(&runner, "01.ok", "exit 0");
        script(
            &runner,
            "02.hang",
            &format!(
                "echo $$ > {}\necho partial\nsh -c 'sleep 1000 & echo $! > {}; wait'",
                leader_pid.display(),
                child_pid.display()
            ),
        );
        script(&runner, "03.after", &format!("touch {}", marker.display()));
        let begin = Instant::now();
        let result = runner
            .run(&Event::Monitor, Some(Duration::from_secs(1)))
            .await;
        assert!(begin.elapsed() < Duration::from_secs(10), "runner wedged");
        assert_eq!(
            statuses(&result),
            [
                ("01.ok", &ScriptStatus::Ok),
                ("02.hang", &ScriptStatus::TimedOut)
            ]
        );
        assert_eq!(result.scripts[1].output, "partial\n");
        assert_eq!(
            result.overall,
            Overall::TimedOut {
                script: "02.hang".into()
            }
        );
        assert_eq!(result.overall.exit_code(), libc::ETIMEDOUT);
        assert!(result.debug.is_none());
        assert!(!marker.exists());
        assert_process_gone(read_pid(&leader_pid)).await;
        assert_process_gone(read_pid(&child_pid)).await;
    }

    #[tokio::test]
    async fn debug_script_runs_with_pid_and_event_while_the_script_still_exists() {
        let (tmp, mut runner) = setup("debug");
        let seen = tmp.0.join("seen");
        let debug = tmp.0.join("debug-hung-script.sh");
        write_script(
            &debug,
            &format!(
                "#!/bin/sh\n\
                 if [ -d /proc/$1 ]; then alive=yes; else alive=no; fi\n\
                 echo \"$1 $2 $alive\" > {}\necho 'debug output'\n",
                seen.display()
            ),
            0o755,
        );
        runner.config.debug_script = Some(debug.clone());
        script(&runner, "10.hang", "sleep 1000");
        let result = runner
            .run(&Event::Monitor, Some(Duration::from_secs(1)))
            .await;
        let hook = result.debug.expect("debug script ran");
        assert_eq!(hook.script, debug);
        assert_eq!(hook.status, ScriptStatus::Ok);
        assert_eq!(hook.output, "debug output\n");
        assert_eq!(
            fs::read_to_string(&seen).unwrap(),
            format!("{} monitor yes\n", hook.pid)
        );
        assert_process_gone(hook.pid).await;
    }

    #[tokio::test]
    async fn hung_debug_script_is_killed_too() {
        let (tmp, mut runner) = setup("debughang");
        let debug = tmp.0.join("debug.sh");
        let debug_pid = tmp.0.join("debug.pid");
        write_script(
            &debug,
            &format!("#!/bin/sh\necho $$ > {}\nsleep 1000\n", debug_pid.display()),
            0o755,
        );
        runner.config.debug_script = Some(debug);
        runner.config.debug_timeout = Duration::from_millis(500);
        script(&runner, "10.hang", "sleep 1000");
        let result = runner
            .run(&Event::Monitor, Some(Duration::from_secs(1)))
            .await;
        let hook = result.debug.expect("debug script ran");
        assert_eq!(hook.status, ScriptStatus::TimedOut);
        assert_process_gone(read_pid(&debug_pid)).await;
        assert_process_gone(hook.pid).await;
    }

    #[tokio::test]
    async fn deadline_covers_the_whole_event() {
        let (_tmp, runner) = setup("whole");
        // Each script alone fits the limit; together they do not.
        script(&runner, "01.slow", "sleep 1.2");
        script(&runner, "02.slow", "sleep 1.2");
        let result = runner
            .run(&Event::Monitor, Some(Duration::from_secs(2)))
            .await;
        assert_eq!(
            statuses(&result),
            [
                ("01.slow", &ScriptStatus::Ok),
                ("02.slow", &ScriptStatus::TimedOut)
            ]
        );
    }

    #[tokio::test]
    async fn non_executable_scripts_are_recorded_not_run() {
        let (tmp, runner) = setup("noexec");
        let marker = tmp.0.join("ran");
        let body = format!("#!/bin/sh\ntouch {}\n", marker.display());
        let dir = &runner.config().scripts_dir;
        write_script(&dir.join("01.local.script"), &body, 0o644);
        let share = tmp.0.join("share");
        fs::create_dir_all(&share).unwrap();
        write_script(&share.join("02.linked.script"), &body, 0o644);
        std::os::unix::fs::symlink(share.join("02.linked.script"), dir.join("02.linked.script"))
            .unwrap();
        script(&runner, "03.ok", "exit 0");
        let result = runner.run(&Event::Startup, None).await;
        assert_eq!(
            statuses(&result),
            [
                ("01.local", &ScriptStatus::Disabled),
                ("02.linked", &ScriptStatus::NotExecutable),
                ("03.ok", &ScriptStatus::Ok)
            ]
        );
        assert_eq!(result.overall, Overall::Ok);
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn huge_garbage_output_is_truncated_and_does_not_hang() {
        let (_tmp, runner) = setup("garbage");
        script(
            &runner,
            "01.noise",
            "head -c 10485760 /dev/urandom; head -c 1000 /dev/urandom >&2; exit 1",
        );
        let begin = Instant::now();
        let result = runner
            .run(&Event::Monitor, Some(Duration::from_secs(30)))
            .await;
        assert!(begin.elapsed() < Duration::from_secs(20));
        let noise = &result.scripts[0];
        assert_eq!(noise.status, ScriptStatus::Failed(1));
        assert!(noise.output.len() >= DEFAULT_OUTPUT_LIMIT / 2);
        // Invalid UTF-8 becomes U+FFFD (3 bytes), so the text may exceed the byte limit
        // by that much, but never holds more than the limit's worth of input.
        assert!(noise.output.chars().count() <= DEFAULT_OUTPUT_LIMIT);
        assert_eq!(
            noise.output_dropped,
            10_485_760 + 1000 - DEFAULT_OUTPUT_LIMIT as u64
        );
    }

    #[tokio::test]
    async fn background_process_holding_the_pipe_does_not_wedge_the_runner() {
        let (tmp, runner) = setup("background");
        let child_pid = tmp.0.join("child.pid");
        script(
            &runner,
            "01.daemonish",
            &format!(
                "sleep 1000 & echo $! > {}\necho started",
                child_pid.display()
            ),
        );
        let result = runner
            .run(&Event::Startup, Some(Duration::from_secs(10)))
            .await;
        assert_eq!(statuses(&result), [("01.daemonish", &ScriptStatus::Ok)]);
        assert_eq!(result.scripts[0].output, "started\n");
        // Not ours to kill after a clean exit (CTDB leaves it too); tidy up.
        let pid = read_pid(&child_pid);
        signal_group(pid, Signal::SIGKILL);
        let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        assert_process_gone(pid).await;
    }

    #[tokio::test]
    async fn environment_and_options_reach_the_script() {
        let (tmp, mut runner) = setup("env");
        let base = runner.config().ctdb_base.clone();
        runner.config.socket = Some(tmp.0.join("ctdbd.socket"));
        runner.config.env = vec![("CTDB_TEST_EXTRA".into(), "extra".into())];
        fs::write(
            base.join("script.options"),
            "CTDB_PARTIALLY_ONLINE_INTERFACES=yes\nCTDB_SHARED=global\n",
        )
        .unwrap();
        fs::write(
            runner.config().scripts_dir.join("10.env.options"),
            "# own options win\nCTDB_SHARED='per script'\n",
        )
        .unwrap();
        script(
            &runner,
            "10.env",
            "echo \"base=$CTDB_BASE\"\necho \"vardir=$CTDB_SCRIPT_VARDIR\"\n\
             echo \"socket=$CTDB_SOCKET\"\necho \"extra=$CTDB_TEST_EXTRA\"\n\
             echo \"poi=$CTDB_PARTIALLY_ONLINE_INTERFACES\"\necho \"shared=$CTDB_SHARED\"",
        );
        script(&runner, "20.other", "echo \"shared=$CTDB_SHARED\"");
        let result = runner.run(&Event::Monitor, None).await;
        assert_eq!(
            result.scripts[0].output,
            format!(
                "base={}\nvardir={}\nsocket={}\nextra=extra\npoi=yes\nshared=per script\n",
                base.display(),
                tmp.0.join("var").display(),
                tmp.0.join("ctdbd.socket").display()
            )
        );
        assert_eq!(result.scripts[1].output, "shared=global\n");
    }

    #[tokio::test]
    async fn bad_options_file_stops_the_event() {
        let (_tmp, runner) = setup("badopts");
        fs::write(
            runner.config().ctdb_base.join("script.options"),
            "rm -rf /\n",
        )
        .unwrap();
        script(&runner, "10.any", "exit 0");
        let result = runner.run(&Event::Monitor, None).await;
        let ScriptStatus::Error(message) = &result.scripts[0].status else {
            panic!("expected an error, got {:?}", result.scripts[0].status);
        };
        assert!(message.contains("script.options:1"), "{message}");
        assert_eq!(result.overall.exit_code(), libc::EINVAL);
    }

    #[tokio::test]
    async fn script_killed_by_a_signal_cannot_run() {
        let (_tmp, runner) = setup("signal");
        script(&runner, "10.selfkill", "printf 'no newline'; kill -TERM $$");
        let result = runner.run(&Event::Startup, None).await;
        assert_eq!(
            statuses(&result),
            [(
                "10.selfkill",
                &ScriptStatus::Error("Interrupted system call".into())
            )]
        );
        assert_eq!(result.scripts[0].output, "no newline");
        assert_eq!(result.overall.exit_code(), libc::EINTR);
    }

    #[tokio::test]
    async fn missing_script_directory_is_an_error_result() {
        let (tmp, mut runner) = setup("nodir");
        runner.config.scripts_dir = tmp.0.join("absent");
        let result = runner.run(&Event::Monitor, None).await;
        assert!(result.scripts.is_empty());
        assert!(matches!(
            result.overall,
            Overall::Error { script: None, .. }
        ));
    }

    #[tokio::test]
    async fn cancelling_the_run_kills_the_script_group() {
        let (tmp, runner) = setup("cancel");
        let child_pid = tmp.0.join("child.pid");
        script(
            &runner,
            "10.hang",
            &format!(
                "sh -c 'sleep 1000 & echo $! > {}; wait'",
                child_pid.display()
            ),
        );
        let mut run = Box::pin(runner.run(&Event::Monitor, None));
        // Drive the run until the grandchild exists, then drop it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::select! {
                _ = &mut run => panic!("hung script finished"),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if fs::read_to_string(&child_pid).is_ok_and(|s| s.ends_with('\n')) {
                break;
            }
            assert!(Instant::now() < deadline, "script never started its child");
        }
        drop(run);
        assert_process_gone(read_pid(&child_pid)).await;
    }

    #[test]
    fn capture_keeps_the_head() {
        let mut capture = Capture::new(4);
        capture.push(b"ab");
        capture.push(b"cdef");
        capture.push(b"g");
        assert_eq!(capture.take(), ("abcd".to_owned(), 3));
    }
}
