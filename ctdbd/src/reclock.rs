//! The recovery lock's holder process: the edge that carries out the core's
//! `TakeReclock` / `ReleaseReclock` and reports what became of the lock as
//! [`Input::Reclock`].
//!
//! fcntl locks belong to a process and vanish when any descriptor of the file closes in
//! it, so the daemon never holds the lock itself: a child holds it for as long as it
//! lives (DESIGN.md "What runs where"). The child speaks CTDB's cluster mutex helper
//! protocol (ctdb(7) CLUSTER LOCK): one status character on stdout, `0` taken (and it
//! keeps running), `1` contention, `2` took too long, `3` error; stderr is for our log.
//! A `cluster lock` file is held by our own `ctdb-rs-reclock-helper` (crate `lockvol`);
//! `!command args` runs any CTDB helper directly, without a shell.
//!
//! ```text
//!   core ── TakeReclock ──> Reclock::take ── spawns ──> holder task (one per take)
//!                                                        │ owns the helper child
//!                                                        │ reads status byte, stderr
//!   core <── Input::Reclock(Taken | Contended | Failed | Lost) ──┘
//!   core ── ReleaseReclock ─> Reclock::release ── stop ──> holder task: SIGTERM, reap
//! ```
//!
//! This module owns no cluster state: whether we are leader is the core's business. It
//! only guarantees that a report belongs to the current take — every take and release
//! starts a new generation, and a task reports only while its generation is current —
//! and that the helper dies with the daemon (`PR_SET_PDEATHSIG`, `kill_on_drop`).

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};
use tracing::{debug, warn};

use crate::config::conf::ClusterLock;
use crate::core::Input;
use crate::transport::{CoreEvent, ReclockStatus};

/// The file name of our helper binary (built by the `lockvol` crate).
const HELPER_NAME: &str = "ctdb-rs-reclock-helper";

/// Environment variable naming our helper, ahead of every other place.
const HELPER_ENV: &str = "CTDB_RS_RECLOCK_HELPER";

/// How long a helper may take to write its status before the take has failed.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a helper has to exit after SIGTERM before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);

/// How long we wait for a SIGKILLed helper to be reaped. A process stuck in the
/// kernel (a hung cluster filesystem) can outlive SIGKILL; we stop waiting rather than
/// stall every later take, and that later take then reports whatever the lock says.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How long to keep reading a finished helper's stderr for the reason it gives. Its
/// write end closes when it exits, so this only matters if it left children behind.
const STDERR_DRAIN: Duration = Duration::from_millis(200);

/// How many of a helper's last stderr lines go into a Failed/Lost reason.
const STDERR_KEEP: usize = 8;

/// What holds the lock: `[cluster] cluster lock` in `ctdb.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReclockSpec {
    /// A lock file on the cluster filesystem, held by our helper.
    File(PathBuf),
    /// `!command args`: a cluster mutex helper, split on whitespace and run directly
    /// (no shell, so no quoting).
    Helper {
        /// The command line after `!`.
        command: String,
    },
}

impl From<ClusterLock> for ReclockSpec {
    fn from(lock: ClusterLock) -> Self {
        match lock {
            ClusterLock::File(path) => Self::File(path),
            ClusterLock::Helper { command } => Self::Helper { command },
        }
    }
}

impl fmt::Display for ReclockSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Helper { command } => write!(f, "!{command}"),
        }
    }
}

/// Runs the recovery-lock holder for the core and reports on it.
///
/// Must be used inside a tokio runtime whose threads live as long as the daemon:
/// `PR_SET_PDEATHSIG` fires when the *thread* that spawned the helper exits, so a
/// take driven from a short-lived thread (`spawn_blocking`, `block_in_place`) would
/// lose the lock when that thread ends. Dropping a `Reclock` releases the lock.
#[derive(Debug)]
pub struct Reclock {
    spec: ReclockSpec,
    helper: PathBuf,
    events: mpsc::Sender<CoreEvent>,
    shared: Arc<Mutex<Shared>>,
    /// Tells the current take's task to release; dropping it does too.
    stop: Option<oneshot::Sender<()>>,
    /// The latest take's task. A new take waits for it to end, so that our own old
    /// helper is gone before the new one tries the lock (or it would contend with us).
    task: Option<JoinHandle<()>>,
    /// For a lock file: the mount point of the file system that held it when the
    /// daemon started (none if that was `/`). Every take asks our helper to check that
    /// the file is still there (`--mount`): a volume unmounted since would leave a
    /// bare directory in which the helper would create a lock file nobody else sees.
    lock_mount: Option<PathBuf>,
}

/// What the daemon side and the holder task both see.
#[derive(Debug)]
struct Shared {
    /// Bumped by every take and release; a task reports only under its own.
    generation: u64,
    phase: Phase,
    /// The helper's pid while one runs for the current generation.
    pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No take under way and nothing held.
    Idle,
    /// A helper was started and has not answered yet.
    Taking,
    /// The last report was Taken.
    Held,
}

impl Reclock {
    /// A holder for `spec` that reports to `events`. `helper` is the path of
    /// `ctdb-rs-reclock-helper`, used for [`ReclockSpec::File`]. Nothing is started
    /// until [`Reclock::take`].
    pub fn new(spec: ReclockSpec, helper: PathBuf, events: mpsc::Sender<CoreEvent>) -> Self {
        let lock_mount = match &spec {
            ReclockSpec::File(path) => lockvol::mounts::mount_holding(path)
                .ok()
                .flatten()
                .map(|mount| mount.mount_point)
                .filter(|mount_point| mount_point != Path::new("/")),
            ReclockSpec::Helper { .. } => None,
        };
        Self {
            lock_mount,
            spec,
            helper,
            events,
            shared: Arc::new(Mutex::new(Shared {
                generation: 0,
                phase: Phase::Idle,
                pid: None,
            })),
            stop: None,
            task: None,
        }
    }

    /// Where to find our helper: `$CTDB_RS_RECLOCK_HELPER`, else next to the running
    /// executable (installed side by side with `ctdbd`), else `ctdb-rs-reclock-helper`
    /// looked up on `PATH` when it is run.
    pub fn default_helper_path() -> PathBuf {
        if let Some(path) = std::env::var_os(HELPER_ENV).filter(|path| !path.is_empty()) {
            return PathBuf::from(path);
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(HELPER_NAME)))
            .filter(|path| path.is_file());
        beside.unwrap_or_else(|| PathBuf::from(HELPER_NAME))
    }

    /// Starts taking the lock; the outcome arrives as one [`Input::Reclock`]
    /// (Taken, Contended or Failed), and after Taken, a later Lost if the lock goes.
    /// A no-op while a take is under way or the lock is held. Never blocks: the helper
    /// is started by a task (so this must run inside the tokio runtime).
    pub fn take(&mut self) {
        let generation = {
            let mut shared = self.lock_shared();
            if shared.phase != Phase::Idle {
                return;
            }
            shared.generation += 1;
            shared.phase = Phase::Taking;
            shared.pid = None;
            shared.generation
        };
        let (program, args) = match &self.spec {
            ReclockSpec::File(path) => {
                let mut args = vec![path.as_os_str().to_owned()];
                if let Some(mount_point) = &self.lock_mount {
                    args.push("--mount".into());
                    args.push(mount_point.as_os_str().to_owned());
                }
                (self.helper.clone(), args)
            }
            ReclockSpec::Helper { command } => {
                let mut words = command.split_whitespace();
                let program = PathBuf::from(words.next().unwrap_or_default());
                (program, words.map(Into::into).collect())
            }
        };
        let (stop, stopped) = oneshot::channel();
        let holder = Holder {
            generation,
            shared: Arc::clone(&self.shared),
            events: self.events.clone(),
            program,
            args,
            stderr_tail: VecDeque::new(),
        };
        // Replacing the old stop sender drops it: an old task still reaping its helper
        // takes that as a release, which it already is.
        self.stop = Some(stop);
        let previous = self.task.take();
        debug!(reclock = %self.spec, generation, "taking the recovery lock");
        self.task = Some(tokio::spawn(holder.run(previous, stopped)));
    }

    /// Releases the lock (or abandons a take under way): the helper gets SIGTERM and is
    /// reaped, SIGKILLed if it has not exited after 1 s. No event is sent for it, and
    /// nothing an earlier take's task still has to say is reported.
    pub fn release(&mut self) {
        {
            let mut shared = self.lock_shared();
            shared.generation += 1;
            shared.phase = Phase::Idle;
            shared.pid = None;
        }
        if let Some(stop) = self.stop.take() {
            debug!(reclock = %self.spec, "releasing the recovery lock");
            // Err: the task already ended (its helper is gone), nothing to stop.
            let _ = stop.send(());
        }
    }

    /// Whether the last report was Taken, with no Lost and no release since.
    pub fn is_held(&self) -> bool {
        self.lock_shared().phase == Phase::Held
    }

    /// The helper's pid while one runs for the current take (for logs and tests).
    pub fn holder_pid(&self) -> Option<u32> {
        self.lock_shared().pid
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        // Poisoning needs a panic while locked, and no critical section here can
        // panic; if one ever did, the state is still a plain value worth reading.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a take did not end in Taken, or why a held lock was lost; its message becomes
/// the reason in [`ReclockStatus::Failed`] / [`ReclockStatus::Lost`].
#[derive(Debug, thiserror::Error)]
enum HolderError {
    /// `!` with nothing after it; the config parser never produces this.
    #[error("empty cluster lock helper command")]
    EmptyCommand,
    /// The helper could not be started: a wrong path, or no permission.
    #[error("cannot start cluster lock helper {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No status within [`STATUS_TIMEOUT`]; the helper was killed.
    #[error(
        "timed out: no status from cluster lock helper {program} within {STATUS_TIMEOUT:?}{stderr}"
    )]
    TimedOut {
        /// The program.
        program: PathBuf,
        /// Its stderr, formatted by [`StderrTail`].
        stderr: StderrTail,
    },
    /// Status `2`: the helper itself gave up waiting for the lock.
    #[error("cluster lock helper {program} took too long to take the lock{stderr}")]
    TookTooLong {
        /// The program.
        program: PathBuf,
        /// Its stderr.
        stderr: StderrTail,
    },
    /// Status `3`: the helper hit an error (an unreadable path, a missing volume).
    #[error("cluster lock helper {program} failed{stderr}")]
    HelperError {
        /// The program.
        program: PathBuf,
        /// Its stderr, which says what went wrong.
        stderr: StderrTail,
    },
    /// A status byte outside the protocol.
    #[error("cluster lock helper {program} sent unexpected status {byte:?}{stderr}")]
    BadStatus {
        /// The program.
        program: PathBuf,
        /// What it sent.
        byte: char,
        /// Its stderr.
        stderr: StderrTail,
    },
    /// stdout closed before any status.
    #[error("cluster lock helper {program} ended without a status ({exit}){stderr}")]
    NoStatus {
        /// The program.
        program: PathBuf,
        /// How it ended.
        exit: ExitDescription,
        /// Its stderr.
        stderr: StderrTail,
    },
    /// The holder ended (exited, was killed, or closed stdout) while holding the lock.
    #[error("cluster lock helper {program} ({pid}) ended while holding the lock ({exit}){stderr}")]
    HolderEnded {
        /// The program.
        program: PathBuf,
        /// Its pid.
        pid: u32,
        /// How it ended.
        exit: ExitDescription,
        /// Its stderr, which usually says why (lock file removed or replaced).
        stderr: StderrTail,
    },
}

/// The last stderr lines of a helper, shown as `: line; line` (or nothing).
#[derive(Debug, Default)]
struct StderrTail(Vec<String>);

impl fmt::Display for StderrTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_empty() {
            write!(f, ": {}", self.0.join("; "))?;
        }
        Ok(())
    }
}

/// How a helper ended, as far as we know.
#[derive(Debug)]
enum ExitDescription {
    Exited(ExitStatus),
    /// stdout closed but the process did not exit (by itself) in time.
    ClosedStdout,
    /// Not reaped even after SIGKILL (stuck in the kernel).
    Stuck,
}

impl fmt::Display for ExitDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(status) => write!(f, "{status}"),
            Self::ClosedStdout => f.write_str("closed its stdout"),
            Self::Stuck => f.write_str("not reaped after SIGKILL"),
        }
    }
}

/// One take: owns the helper child from spawn to reaping.
struct Holder {
    generation: u64,
    shared: Arc<Mutex<Shared>>,
    events: mpsc::Sender<CoreEvent>,
    program: PathBuf,
    args: Vec<std::ffi::OsString>,
    stderr_tail: VecDeque<String>,
}

/// What ended the wait for the status byte.
enum Answer {
    Status(u8),
    Eof,
    TimedOut,
    Released,
}

/// What ended the watch over a held lock.
enum Ending {
    Released,
    ClosedStdout,
    Exited(ExitStatus),
}

impl Holder {
    async fn run(mut self, previous: Option<JoinHandle<()>>, mut stop: oneshot::Receiver<()>) {
        if let Some(previous) = previous {
            tokio::select! {
                // The previous helper is reaped (or given up on): the lock is free of us.
                _ = previous => {}
                _ = &mut stop => return,
            }
        }
        if self.program.as_os_str().is_empty() {
            self.report(ReclockStatus::Failed(HolderError::EmptyCommand.to_string()))
                .await;
            return;
        }
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // The helper must die with the daemon at once (DESIGN.md "Safety"), and CTDB's
        // own helpers only notice a dead parent at their next check (seconds later).
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // prctl system call, which is async-signal-safe; it allocates nothing and
        // touches no lock the parent might have held at fork time.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(source) => {
                let error = HolderError::Spawn {
                    program: self.program.clone(),
                    source,
                };
                self.report(ReclockStatus::Failed(error.to_string())).await;
                return;
            }
        };
        let pid = child.id().unwrap_or_default();
        {
            let mut shared = self.lock_shared();
            if shared.generation == self.generation {
                shared.pid = Some(pid);
            }
        }
        debug!(program = %self.program.display(), pid, "cluster lock helper started");
        // Both were asked for as pipes just above, so both are there.
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr =
            Some(BufReader::new(child.stderr.take().expect("stderr is piped")).lines());

        let mut byte = [0u8; 1];
        let deadline = sleep(STATUS_TIMEOUT);
        tokio::pin!(deadline);
        let answer = loop {
            tokio::select! {
                _ = &mut stop => break Answer::Released,
                line = next_line(&mut stderr) => self.stderr_line(line, &mut stderr, pid),
                read = stdout.read(&mut byte) => break match read {
                    Ok(1) => Answer::Status(byte[0]),
                    _ => Answer::Eof,
                },
                _ = &mut deadline => break Answer::TimedOut,
            }
        };

        let error = match answer {
            Answer::Released => {
                terminate(&mut child, pid).await;
                return;
            }
            Answer::Status(b'0') => {
                if self.report_as(ReclockStatus::Taken, Phase::Held).await {
                    self.watch(child, pid, stdout, stderr, stop).await;
                } else {
                    terminate(&mut child, pid).await;
                }
                return;
            }
            Answer::Status(b'1') => {
                self.finish(&mut child, pid, &mut stderr).await;
                self.report(ReclockStatus::Contended).await;
                return;
            }
            Answer::Status(b'2') => {
                let stderr = self.finish(&mut child, pid, &mut stderr).await;
                HolderError::TookTooLong {
                    program: self.program.clone(),
                    stderr,
                }
            }
            Answer::Status(b'3') => {
                let stderr = self.finish(&mut child, pid, &mut stderr).await;
                HolderError::HelperError {
                    program: self.program.clone(),
                    stderr,
                }
            }
            Answer::Status(other) => {
                let stderr = self.finish(&mut child, pid, &mut stderr).await;
                HolderError::BadStatus {
                    program: self.program.clone(),
                    byte: char::from(other),
                    stderr,
                }
            }
            Answer::Eof => {
                let exit = reap(&mut child, pid).await;
                let stderr = self.drain(&mut stderr, pid).await;
                HolderError::NoStatus {
                    program: self.program.clone(),
                    exit,
                    stderr,
                }
            }
            Answer::TimedOut => {
                // Killed, not asked: a helper that cannot answer in 10 s is stuck.
                let _ = child.start_kill();
                reap(&mut child, pid).await;
                let stderr = self.drain(&mut stderr, pid).await;
                HolderError::TimedOut {
                    program: self.program.clone(),
                    stderr,
                }
            }
        };
        self.report(ReclockStatus::Failed(error.to_string())).await;
    }

    /// Watches a helper that holds the lock until we release it or it ends; the latter
    /// is reported as Lost once the helper is surely gone (so the lock is free).
    async fn watch(
        mut self,
        mut child: Child,
        pid: u32,
        mut stdout: tokio::process::ChildStdout,
        mut stderr: Option<Lines<BufReader<ChildStderr>>>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut byte = [0u8; 1];
        let ending = loop {
            tokio::select! {
                _ = &mut stop => break Ending::Released,
                line = next_line(&mut stderr) => self.stderr_line(line, &mut stderr, pid),
                read = stdout.read(&mut byte) => match read {
                    Ok(1) => warn!(
                        program = %self.program.display(),
                        pid,
                        byte = ?char::from(byte[0]),
                        "cluster lock helper wrote after its status, ignored"
                    ),
                    _ => break Ending::ClosedStdout,
                },
                status = child.wait() => break match status {
                    Ok(status) => Ending::Exited(status),
                    // Cannot wait on our own child: treat it as gone, after a kill below.
                    Err(_) => Ending::ClosedStdout,
                },
            }
        };
        let exit = match ending {
            Ending::Released => {
                terminate(&mut child, pid).await;
                return;
            }
            // A helper that closed stdout but lives on may still hold the lock: kill it
            // before saying Lost, or our next take would contend with it.
            Ending::ClosedStdout => match timeout(STDERR_DRAIN, child.wait()).await {
                Ok(Ok(status)) => ExitDescription::Exited(status),
                _ => {
                    let _ = child.start_kill();
                    reap(&mut child, pid).await;
                    ExitDescription::ClosedStdout
                }
            },
            Ending::Exited(status) => ExitDescription::Exited(status),
        };
        let stderr = self.drain(&mut stderr, pid).await;
        let error = HolderError::HolderEnded {
            program: self.program.clone(),
            pid,
            exit,
            stderr,
        };
        warn!(reason = %error, "recovery lock lost");
        self.report(ReclockStatus::Lost(error.to_string())).await;
    }

    /// After a status that ends the helper: collect its last words and reap it
    /// (killing it if it lingers), so that it surely holds nothing when we report.
    async fn finish(
        &mut self,
        child: &mut Child,
        pid: u32,
        stderr: &mut Option<Lines<BufReader<ChildStderr>>>,
    ) -> StderrTail {
        let tail = self.drain(stderr, pid).await;
        if !matches!(timeout(STDERR_DRAIN, child.wait()).await, Ok(Ok(_))) {
            let _ = child.start_kill();
            reap(child, pid).await;
        }
        tail
    }

    /// Reads stderr to EOF (bounded by [`STDERR_DRAIN`]) and returns the kept tail.
    async fn drain(
        &mut self,
        stderr: &mut Option<Lines<BufReader<ChildStderr>>>,
        pid: u32,
    ) -> StderrTail {
        let _ = timeout(STDERR_DRAIN, async {
            while stderr.is_some() {
                let line = next_line(stderr).await;
                self.stderr_line(line, stderr, pid);
            }
        })
        .await;
        StderrTail(self.stderr_tail.drain(..).collect())
    }

    /// Logs one stderr line and keeps it for a later reason; closes on EOF or error.
    fn stderr_line(
        &mut self,
        line: std::io::Result<Option<String>>,
        stderr: &mut Option<Lines<BufReader<ChildStderr>>>,
        pid: u32,
    ) {
        match line {
            Ok(Some(line)) => {
                warn!(program = %self.program.display(), pid, %line, "cluster lock helper says");
                if self.stderr_tail.len() == STDERR_KEEP {
                    self.stderr_tail.pop_front();
                }
                self.stderr_tail.push_back(line);
            }
            Ok(None) | Err(_) => *stderr = None,
        }
    }

    /// Reports a status that ends this take (phase back to Idle).
    async fn report(&self, status: ReclockStatus) -> bool {
        self.report_as(status, Phase::Idle).await
    }

    /// Sends `status` and moves to `phase`, only if this take is still the current
    /// one; returns whether it was. The channel slot is reserved first and the check,
    /// the phase change and the send happen under the lock, so a release can never
    /// slip in between "still current" and the send.
    async fn report_as(&self, status: ReclockStatus, phase: Phase) -> bool {
        let Ok(permit) = self.events.reserve().await else {
            // The core is gone; the daemon is shutting down.
            return false;
        };
        let mut shared = self.lock_shared();
        if shared.generation != self.generation {
            debug!(?status, "stale recovery lock report dropped");
            return false;
        }
        shared.phase = phase;
        if phase == Phase::Idle {
            shared.pid = None;
        }
        permit.send(CoreEvent::Input(Input::Reclock(status)));
        true
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        // As in Reclock::lock_shared: no critical section can panic.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The next stderr line, or never once stderr is closed (so a `select!` branch on it
/// simply stops firing).
async fn next_line(
    stderr: &mut Option<Lines<BufReader<ChildStderr>>>,
) -> std::io::Result<Option<String>> {
    match stderr {
        Some(lines) => lines.next_line().await,
        None => std::future::pending().await,
    }
}

/// Asks a helper to release (SIGTERM), then kills it if it has not exited in time.
async fn terminate(child: &mut Child, pid: u32) {
    if child.id().is_some() {
        if let Ok(raw) = i32::try_from(pid) {
            // ESRCH: it exited already; the wait below reaps it.
            let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
        }
    }
    if !matches!(timeout(TERM_GRACE, child.wait()).await, Ok(Ok(_))) {
        warn!(pid, "cluster lock helper ignored SIGTERM, killing it");
        let _ = child.start_kill();
        reap(child, pid).await;
    }
}

/// Waits (bounded by [`KILL_WAIT`]) for a helper to be gone.
async fn reap(child: &mut Child, pid: u32) -> ExitDescription {
    match timeout(KILL_WAIT, child.wait()).await {
        Ok(Ok(status)) => ExitDescription::Exited(status),
        _ => {
            warn!(pid, "cluster lock helper not reaped, giving up on it");
            ExitDescription::Stuck
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real helpers on real files: our `ctdb-rs-reclock-helper` (built by
    //! `cargo build -p lockvol`) and CTDB's `ctdb_mutex_fcntl_helper` (Debian's `ctdb`
    //! package). Every expectation waits for an event with a deadline.

    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// CTDB's own fcntl helper.
    const CTDB_FCNTL_HELPER: &str = "/usr/libexec/ctdb/ctdb_mutex_fcntl_helper";

    /// Longer than [`STATUS_TIMEOUT`], so a timeout shows up as Failed, not as a hang.
    const DEADLINE: Duration = Duration::from_secs(15);

    /// A directory of its own per test, removed when the test ends.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ctdbd-reclock-{}-{}-{name}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn path(&self, file: &str) -> PathBuf {
            self.0.join(file)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `<target>/debug/ctdb-rs-reclock-helper`: this test binary runs from
    /// `<target>/debug/deps/`. Missing is a failure, not a skip.
    fn helper() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let path = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in <target>/debug/deps")
            .join(HELPER_NAME);
        assert!(
            path.is_file(),
            "{} is missing: run `cargo build -p lockvol` first",
            path.display()
        );
        path
    }

    fn reclock(spec: ReclockSpec) -> (Reclock, mpsc::Receiver<CoreEvent>) {
        let (tx, rx) = mpsc::channel(8);
        (Reclock::new(spec, helper(), tx), rx)
    }

    /// Waits until `pid` has exited (gone, or a zombie nobody reaped yet).
    async fn wait_gone(pid: u32) {
        let stat = format!("/proc/{pid}/stat");
        let gone = || match std::fs::read_to_string(&stat) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        };
        timeout(DEADLINE, async {
            while !gone() {
                sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("helper {pid} still runs after {DEADLINE:?}"));
    }

    async fn next_status(events: &mut mpsc::Receiver<CoreEvent>) -> ReclockStatus {
        match timeout(DEADLINE, events.recv()).await {
            Ok(Some(CoreEvent::Input(Input::Reclock(status)))) => status,
            Ok(Some(other)) => panic!("unexpected event {other:?}"),
            Ok(None) => panic!("event channel closed"),
            Err(_) => panic!("no recovery lock event within {DEADLINE:?}"),
        }
    }

    #[tokio::test]
    async fn taken_then_contended_for_a_second_reclock_on_the_same_file() {
        let dir = TempDir::new("contended");
        let file = dir.path("reclock");
        let (mut first, mut first_events) = reclock(ReclockSpec::File(file.clone()));
        let (mut second, mut second_events) = reclock(ReclockSpec::File(file));
        first.take();
        assert_eq!(next_status(&mut first_events).await, ReclockStatus::Taken);
        assert!(first.is_held());
        // A take while held changes nothing and says nothing.
        first.take();
        second.take();
        assert_eq!(
            next_status(&mut second_events).await,
            ReclockStatus::Contended
        );
        assert!(!second.is_held());
        assert!(first.is_held());
        assert!(first_events.try_recv().is_err());
    }

    #[tokio::test]
    async fn after_release_another_can_take_and_no_event_is_sent() {
        let dir = TempDir::new("release");
        let file = dir.path("reclock");
        let (mut first, mut first_events) = reclock(ReclockSpec::File(file.clone()));
        let (mut second, mut second_events) = reclock(ReclockSpec::File(file));
        first.take();
        assert_eq!(next_status(&mut first_events).await, ReclockStatus::Taken);
        let pid = first.holder_pid().expect("a holder runs");
        first.release();
        assert!(!first.is_held());
        // The released helper goes away; wait for that, not for a time.
        wait_gone(pid).await;
        assert!(
            first_events.try_recv().is_err(),
            "a release is not reported"
        );
        second.take();
        assert_eq!(next_status(&mut second_events).await, ReclockStatus::Taken);
        // Taking again after a release works too: it waits for nothing of ours.
        first.take();
        assert_eq!(
            next_status(&mut first_events).await,
            ReclockStatus::Contended
        );
    }

    #[tokio::test]
    async fn release_then_take_at_once_does_not_contend_with_our_own_old_helper() {
        let dir = TempDir::new("retake");
        let (mut reclock, mut events) = reclock(ReclockSpec::File(dir.path("reclock")));
        reclock.take();
        assert_eq!(next_status(&mut events).await, ReclockStatus::Taken);
        reclock.release();
        reclock.take();
        assert_eq!(next_status(&mut events).await, ReclockStatus::Taken);
    }

    #[tokio::test]
    async fn lock_file_removed_is_lost() {
        let dir = TempDir::new("removed");
        let file = dir.path("reclock");
        let (mut reclock, mut events) = reclock(ReclockSpec::File(file.clone()));
        reclock.take();
        assert_eq!(next_status(&mut events).await, ReclockStatus::Taken);
        std::fs::remove_file(&file).unwrap();
        // The helper rechecks every 250 ms; allow generously for a loaded machine.
        match timeout(Duration::from_secs(3), events.recv()).await {
            Ok(Some(CoreEvent::Input(Input::Reclock(ReclockStatus::Lost(reason))))) => {
                assert!(reason.contains("is gone"), "{reason}");
                assert!(reason.contains(&file.display().to_string()), "{reason}");
            }
            other => panic!("expected Lost within 3 s, got {other:?}"),
        }
        assert!(!reclock.is_held());
    }

    #[tokio::test]
    async fn helper_killed_is_lost() {
        let dir = TempDir::new("killed");
        let (mut reclock, mut events) = reclock(ReclockSpec::File(dir.path("reclock")));
        reclock.take();
        assert_eq!(next_status(&mut events).await, ReclockStatus::Taken);
        let pid = reclock.holder_pid().expect("a holder runs");
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        match next_status(&mut events).await {
            ReclockStatus::Lost(reason) => assert!(reason.contains("SIGKILL"), "{reason}"),
            other => panic!("expected Lost, got {other:?}"),
        }
        assert!(!reclock.is_held());
        // Lost ends the take: a new one may start.
        reclock.take();
        assert_eq!(next_status(&mut events).await, ReclockStatus::Taken);
    }

    #[tokio::test]
    async fn unreadable_path_fails_naming_the_path() {
        let dir = TempDir::new("unreadable");
        let file = dir.path("no-such-volume/reclock");
        let (mut reclock, mut events) = reclock(ReclockSpec::File(file.clone()));
        reclock.take();
        match next_status(&mut events).await {
            ReclockStatus::Failed(reason) => {
                assert!(reason.contains(&file.display().to_string()), "{reason}")
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        assert!(!reclock.is_held());
    }

    #[tokio::test]
    async fn missing_helper_fails_naming_it() {
        let (tx, mut events) = mpsc::channel(8);
        let missing = PathBuf::from("/nonexistent/ctdb-rs-reclock-helper");
        let mut reclock = Reclock::new(ReclockSpec::File("/tmp/x".into()), missing, tx);
        reclock.take();
        match next_status(&mut events).await {
            ReclockStatus::Failed(reason) => {
                assert!(
                    reason.contains("/nonexistent/ctdb-rs-reclock-helper"),
                    "{reason}"
                )
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn helper_without_or_with_a_bad_status_fails() {
        let (mut silent, mut events) = reclock(ReclockSpec::Helper {
            command: "true".into(),
        });
        silent.take();
        match next_status(&mut events).await {
            ReclockStatus::Failed(reason) => {
                assert!(reason.contains("without a status"), "{reason}")
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        let (mut garbage, mut events) = reclock(ReclockSpec::Helper {
            command: "printf 7".into(),
        });
        garbage.take();
        match next_status(&mut events).await {
            ReclockStatus::Failed(reason) => assert!(reason.contains("'7'"), "{reason}"),
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn ctdb_helper_form_takes_the_lock_and_agrees_with_ours() {
        assert!(
            Path::new(CTDB_FCNTL_HELPER).is_file(),
            "{CTDB_FCNTL_HELPER} is missing: install Debian's ctdb package"
        );
        let dir = TempDir::new("ctdb");
        let file = dir.path("reclock");
        let spec = ReclockSpec::from(
            ClusterLock::parse(&format!("!{CTDB_FCNTL_HELPER} {}", file.display())).unwrap(),
        );
        let (mut theirs, mut their_events) = reclock(spec);
        let (mut ours, mut our_events) = reclock(ReclockSpec::File(file));

        theirs.take();
        assert_eq!(next_status(&mut their_events).await, ReclockStatus::Taken);
        ours.take();
        assert_eq!(next_status(&mut our_events).await, ReclockStatus::Contended);

        // And the other way round, after a release (which must end CTDB's helper too).
        theirs.release();
        ours.take();
        // CTDB's helper may take a moment to exit after SIGTERM: retry on contention.
        let mut status = next_status(&mut our_events).await;
        let start = tokio::time::Instant::now();
        while status == ReclockStatus::Contended && start.elapsed() < DEADLINE {
            sleep(Duration::from_millis(20)).await;
            ours.take();
            status = next_status(&mut our_events).await;
        }
        assert_eq!(status, ReclockStatus::Taken);
        theirs.take();
        assert_eq!(
            next_status(&mut their_events).await,
            ReclockStatus::Contended
        );
    }
}
