//! One cluster node's sandbox: its own network namespace and mount namespace, with
//! private `/etc/ctdb`, `/var/lib/ctdb` and `/run`, and the `ctdbd` running in it.
//!
//! ```text
//!   test process (host namespaces)
//!      |  nsenter -t <holder> -n -m
//!      v
//!   +-------------------- node sandbox --------------------+
//!   | netns ctdbrs-<pid>-<n>-<rnd>-n<pnn>                   |
//!   |   lo, priv0 192.168.20.4x/24, pub0 (public IPs)      |
//!   | mount ns held by `sleep infinity` (the holder):       |
//!   |   /etc/ctdb     <- bind <tmp>/etc                     |
//!   |   /var/lib/ctdb <- bind <tmp>/var                     |
//!   |   /run          <- tmpfs (ctdbd.socket, ctdbd.pid)    |
//!   |   /sys          <- sysfs of this netns                |
//!   |   /srv/shared   <- bind <shared tmp> (optional; the   |
//!   |                    same host dir in every node)       |
//!   +-------------------------------------------------------+
//! ```
//!
//! Because the paths inside are CTDB's defaults, the stock `ctdb` tool finds the
//! daemon with no options. The host's own files are never touched. The holder
//! keeps the mount namespace alive between commands; every command enters both
//! namespaces with `nsenter`. [`crate::Cluster`] creates nodes and wires their
//! interfaces; this module owns one node's processes and files.

use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

use crate::daemon::{Daemon, Tool};
use crate::process::{run, Background, Output};
use crate::sandbox::{NetNs, TempDir};
use crate::wait::wait_until;

/// How long one `ctdb` command may take (the stock `ctdb status` alone waits up to
/// a second for the leader's broadcast).
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment every command in a sandbox starts from: nothing from the test
/// process leaks in (no `CTDB_SOCKET`, no `CTDB_BASE`), so defaults apply.
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Script run by the holder inside its new mount namespace. `$1` and `$2` are the
/// host directories to bind over `/etc/ctdb` and `/var/lib/ctdb`; `$3`, if not
/// empty, is the host directory standing in for the cluster volume, bound on
/// [`SHARED_MOUNT`] (over a private tmpfs on `/srv`, so no mount point is created
/// on the host).
const HOLDER_SCRIPT: &str = r#"set -e
mount --bind "$1" /etc/ctdb
mount --bind "$2" /var/lib/ctdb
mount -t tmpfs -o mode=0755 ctdbrs-run /run
mkdir -m 0755 /run/ctdb
umount -l /sys
mount -t sysfs ctdbrs-sys /sys
if [ -n "$3" ]; then
    mount -t tmpfs -o mode=0755 ctdbrs-srv /srv
    mkdir -m 0755 /srv/shared
    mount --bind "$3" /srv/shared
fi
echo ready
exec sleep infinity
"#;

/// Where a node sees the shared directory standing in for the cluster volume
/// (see [`crate::ClusterBuilder::shared_volume`]).
pub const SHARED_MOUNT: &str = "/srv/shared";

/// A node sandbox. Dropping it stops its daemon, kills every process left in its
/// namespaces, deletes the namespace and removes its files.
#[derive(Debug)]
pub struct Node {
    pnn: u32,
    private_addr: Ipv4Addr,
    // Field order is drop order: the daemon first, then the holder (the mount
    // namespace dies with it), then the network namespace, then the files.
    daemon: Option<RunningDaemon>,
    /// Logs of daemons started before the current one (restarts), with separators.
    past_logs: String,
    holder: Background,
    netns: NetNs,
    dir: TempDir,
}

/// The way into a node's namespaces ([`Node::entry`]): `Send` and `Clone`, for
/// client threads that run commands in the node while the test holds the
/// cluster. Valid while the node lives: join such threads before it drops.
#[derive(Debug, Clone)]
pub struct Entry {
    pnn: u32,
    holder_pid: u32,
}

impl Entry {
    /// The node's pnn.
    pub fn pnn(&self) -> u32 {
        self.pnn
    }

    /// As [`Node::command`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.holder_pid.to_string(), "-n", "-m", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", PATH);
        for pass in ["RUST_BACKTRACE", "RUST_LOG"] {
            if let Some(v) = std::env::var_os(pass) {
                cmd.env(pass, v);
            }
        }
        cmd
    }

    /// As [`Node::ctdb`].
    pub fn ctdb(&self, tool: Tool, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = self.command(tool.path()?);
        cmd.args(args);
        run(cmd, TOOL_TIMEOUT)
    }
}

/// A `ctdbd` started in a node.
#[derive(Debug)]
pub struct RunningDaemon {
    /// Which implementation it is.
    pub kind: Daemon,
    /// The process (`nsenter` execs `ctdbd`, so this is `ctdbd`'s PID).
    pub process: Background,
}

impl Node {
    /// Creates the sandbox for `pnn` in the already created network namespace
    /// `netns` (whose interfaces the caller configures), with `private_addr` as the
    /// node's address in the `nodes` file.
    pub fn create(pnn: u32, netns: NetNs, private_addr: Ipv4Addr) -> anyhow::Result<Self> {
        Self::create_with_shared(pnn, netns, private_addr, None)
    }

    /// Like [`Node::create`], and if `shared` is given, binds that host directory on
    /// [`SHARED_MOUNT`] in the node's mount namespace: every node given the same
    /// directory sees the same files there, as on a cluster filesystem.
    pub fn create_with_shared(
        pnn: u32,
        netns: NetNs,
        private_addr: Ipv4Addr,
        shared: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let dir = TempDir::new(&format!("n{pnn}"))?;
        for sub in [
            "etc/events/legacy",
            "var/volatile",
            "var/persistent",
            "var/state",
        ] {
            std::fs::create_dir_all(dir.path().join(sub))
                .with_context(|| format!("creating {sub} in {}", dir.path().display()))?;
        }
        let mut cmd = netns.command("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(HOLDER_SCRIPT)
            .arg("ctdbrs-holder")
            .arg(dir.path().join("etc"))
            .arg(dir.path().join("var"))
            .arg(shared.map(Path::as_os_str).unwrap_or_default())
            .env_clear()
            .env("PATH", PATH);
        // Read the readiness line directly rather than through `Background`, whose
        // reader threads would consume it.
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the namespace holder (nsenter + unshare)")?;
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        stdout
            .read_line(&mut line)
            .context("reading the holder's readiness line")?;
        if line != "ready\n" {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("setting up node {pnn}'s mount namespace failed:\n{err}{line}");
        }
        let holder = Background::adopt(&format!("node {pnn} namespace holder"), child);
        Ok(Self {
            pnn,
            private_addr,
            daemon: None,
            past_logs: String::new(),
            holder,
            netns,
            dir,
        })
    }

    /// The node's pnn (its line in the `nodes` file, from 0).
    pub fn pnn(&self) -> u32 {
        self.pnn
    }

    /// The node's private address, as in the `nodes` file.
    pub fn private_addr(&self) -> Ipv4Addr {
        self.private_addr
    }

    /// Its network namespace.
    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// The node's host temporary directory, holding [`Node::etc_dir`],
    /// [`Node::var_dir`] and whatever else the harness keeps per node; removed with
    /// the node.
    pub fn sandbox_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The host directory mounted on the node's `/etc/ctdb` (CTDB's `CTDB_BASE`).
    pub fn etc_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// The host directory mounted on the node's `/var/lib/ctdb`.
    pub fn var_dir(&self) -> PathBuf {
        self.dir.path().join("var")
    }

    /// Writes `/etc/ctdb/<name>` of this node.
    pub fn write_config(&self, name: &str, contents: &str) -> anyhow::Result<()> {
        let path = self.etc_dir().join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))
    }

    /// The host path that reaches `inside` (an absolute path as the node sees it)
    /// through the holder's root: `/proc/<holder>/root/<inside>`. Usable for files
    /// and for connecting to Unix sockets.
    pub fn path(&self, inside: &str) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.holder.pid())).join(inside.trim_start_matches('/'))
    }

    /// A command that runs `program` inside both of the node's namespaces, with a
    /// clean environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.entry().command(program)
    }

    /// A handle that runs commands in the node from another thread, while the
    /// test keeps the [`crate::Cluster`] (to kill and restart daemons).
    pub fn entry(&self) -> Entry {
        Entry {
            pnn: self.pnn,
            holder_pid: self.holder.pid(),
        }
    }

    /// Runs `program args` in the node and returns its output, whatever its status.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = self.command(program);
        cmd.args(args);
        run(cmd, TOOL_TIMEOUT)
    }

    /// Runs a `ctdb` tool in the node with the default socket path.
    pub fn ctdb(&self, tool: Tool, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = self.command(tool.path()?);
        cmd.args(args);
        run(cmd, TOOL_TIMEOUT)
    }

    /// Starts `ctdbd --interactive` of the given kind. Fails if one is running.
    pub fn start_daemon(&mut self, kind: Daemon) -> anyhow::Result<()> {
        if let Some(d) = &mut self.daemon {
            if d.process.try_wait()?.is_none() {
                bail!("node {}: a daemon is already running", self.pnn);
            }
        }
        if let Some(old) = self.daemon.take() {
            self.past_logs.push_str(&old.process.log());
            self.past_logs.push_str("---- ctdbd restarted ----\n");
        }
        // A killed stock ctdbd leaves its event daemon running until it notices
        // (it polls its parent), and a new ctdbd cannot start its own while the
        // old one holds the event daemon's PID file.
        wait_until(Duration::from_secs(10), || {
            let left = self.processes_named("ctdb-eventd");
            if left.is_empty() {
                Ok(())
            } else {
                Err(left)
            }
        })
        .map_err(|t| {
            anyhow!(
                "node {}: an old ctdb-eventd is still running: {t}",
                self.pnn
            )
        })?;
        let mut cmd = self.command(kind.ctdbd_path()?);
        cmd.arg("--interactive").current_dir("/");
        let process = Background::spawn(&format!("node {} {kind:?} ctdbd", self.pnn), cmd)?;
        self.daemon = Some(RunningDaemon { kind, process });
        Ok(())
    }

    /// PIDs of the processes of this node's network namespace called `comm`.
    fn processes_named(&self, comm: &str) -> Vec<i32> {
        self.netns()
            .pids()
            .unwrap_or_default()
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim_end() == comm)
            })
            .collect()
    }

    /// The daemon last started, if any.
    pub fn daemon(&mut self) -> anyhow::Result<&mut RunningDaemon> {
        self.daemon
            .as_mut()
            .ok_or_else(|| anyhow!("node {}: no daemon was started", self.pnn))
    }

    /// Kills the daemon with SIGKILL (by PID) and reaps it: a crash, as `kill -9`.
    /// Its recovery-lock helper dies with it (it is the daemon's child, with
    /// `PR_SET_PDEATHSIG`).
    pub fn kill_daemon(&mut self) -> anyhow::Result<()> {
        let pnn = self.pnn;
        let daemon = self.daemon()?;
        daemon.process.signal(nix::sys::signal::Signal::SIGKILL)?;
        daemon
            .process
            .wait_exit(Duration::from_secs(10))
            .with_context(|| format!("node {pnn}: ctdbd survived SIGKILL"))?;
        Ok(())
    }

    /// Stops the daemon, if one runs: SIGTERM (its shutdown runs), SIGKILL after 10 s.
    pub fn stop_daemon(&mut self) -> anyhow::Result<()> {
        match &mut self.daemon {
            Some(d) => d.process.stop(Duration::from_secs(10)).map(drop),
            None => Ok(()),
        }
    }

    /// Starts a daemon of the kind last started again (after [`Node::kill_daemon`]).
    pub fn restart_daemon(&mut self) -> anyhow::Result<()> {
        let kind = self.daemon()?.kind;
        self.start_daemon(kind)
    }

    /// Whether a daemon was started and is still running.
    pub fn daemon_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|d| matches!(d.process.try_wait(), Ok(None)))
    }

    /// Everything the node's daemons have logged, earlier runs first; empty if none
    /// was started.
    pub fn daemon_log(&self) -> String {
        let current = self
            .daemon
            .as_ref()
            .map(|d| d.process.log())
            .unwrap_or_default();
        format!("{}{current}", self.past_logs)
    }

    /// How the current daemon ended, if it has (the test may have killed it).
    pub fn daemon_exit(&self) -> Option<String> {
        self.daemon.as_ref()?.process.exit_description()
    }

    /// Waits until `ctdb runstate` (the stock tool) prints `want`.
    pub fn wait_runstate(&mut self, want: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_ctdb(&["runstate"], timeout, |out| {
            out.success() && out.stdout.trim() == want
        })
        .map(drop)
    }

    /// Runs the stock `ctdb <args>` until its output satisfies `good`, and returns
    /// that output. Fails at once if the daemon exits; on timeout the error shows
    /// the last output and the daemon's log.
    pub fn wait_ctdb(
        &mut self,
        args: &[&str],
        timeout: Duration,
        good: impl Fn(&Output) -> bool,
    ) -> anyhow::Result<Output> {
        let result = wait_until(timeout, || {
            if let Some(d) = &mut self.daemon {
                if let Ok(Some(status)) = d.process.try_wait() {
                    // Exited: waiting longer cannot help.
                    return Ok(Err(format!("ctdbd exited with {status}")));
                }
            }
            match self.ctdb(Tool::observer(), args) {
                Ok(out) if good(&out) => Ok(Ok(out)),
                Ok(out) => Err(out.to_string()),
                Err(e) => Err(format!("{e:#}")),
            }
        });
        let failure = match result {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(why)) => why,
            Err(t) => t.to_string(),
        };
        let log = self
            .daemon
            .as_ref()
            .map(|d| d.process.log())
            .unwrap_or_default();
        bail!(
            "node {}: `ctdb {}` never gave the awaited output: {failure}\n---- ctdbd log ----\n{log}",
            self.pnn,
            args.join(" ")
        )
    }
}
