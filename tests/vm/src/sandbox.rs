//! The pieces every sandbox is made of: unique names, temporary directories,
//! named network namespaces, and the prerequisites check.
//!
//! Every name a test run creates starts with `ctdbrs-<pid of the test process>-`,
//! so parallel tests and parallel runs never collide, and [`sweep_stale`] can
//! remove what a killed run left behind (its PID no longer exists). Each owner
//! removes what it created in `Drop`, which also runs when a test panics.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::process::{run, run_ok};
use crate::wait::wait_until;

/// Prefix of every namespace and directory the harness creates.
pub const PREFIX: &str = "ctdbrs-";

/// How long a plain setup command (`ip`, `mount`) may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A name no other sandbox of this or any concurrent run uses:
/// `ctdbrs-<pid>-<counter>-<random>`. Short enough for namespace names.
pub fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS for each instance: enough to tell runs that
    // reuse a PID apart, without a dependency.
    let random = RandomState::new().build_hasher().finish() as u16;
    format!("{PREFIX}{}-{n}-{random:04x}", std::process::id())
}

/// Fails, naming everything missing, unless the harness can run here: root, the
/// tools it drives, and the directories it mounts over. Never skips.
pub fn check_prerequisites() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root privileges (run the tests as root, e.g. tests/run-all.sh)".to_owned());
    }
    for tool in ["/usr/bin/nsenter", "/usr/bin/unshare", "/usr/bin/setpriv"] {
        if !Path::new(tool).exists() {
            missing.push(format!("{tool} (apt-get install util-linux)"));
        }
    }
    if which("ip").is_none() {
        missing.push("ip (apt-get install iproute2)".to_owned());
    }
    for dir in ["/etc/ctdb", "/var/lib/ctdb"] {
        if !Path::new(dir).is_dir() {
            missing.push(format!(
                "{dir}, the mount point for the sandbox's private copy (tests/install-deps.sh creates it)"
            ));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        bail!("tests/vm cannot run; missing: {}", missing.join("; "))
    }
}

/// What is missing of `programs` (each with the Debian package that has it) and of
/// the host directories `mount_points` that the nodes mount their private copies
/// over, one plain line each (with how to get it), for a `check_prerequisites`.
pub fn missing_from_host(programs: &[(&str, &str)], mount_points: &[&str]) -> Vec<String> {
    let programs = programs
        .iter()
        .filter(|(program, _)| which(program).is_none())
        .map(|(program, package)| format!("{program} (apt-get install {package})"));
    let dirs = mount_points
        .iter()
        .filter(|dir| !Path::new(dir).is_dir())
        .map(|dir| {
            format!(
                "{dir}, a mount point for the nodes' private copy (tests/install-deps.sh creates it)"
            )
        });
    programs.chain(dirs).collect()
}

/// Finds `program` in the usual system directories.
pub fn which(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.exists())
}

/// A directory under the system temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh directory named `<unique name>-<label>`, mode 0755.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("{}-{label}", unique_name()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("cleanup: removing {}: {e}", self.path.display());
        }
    }
}

/// A named network namespace (`ip netns add`), deleted on drop after every process
/// still inside it has been killed by PID. Everything inside it (veth ends,
/// bridges, addresses) goes with it.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates the namespace `name` with its loopback up.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        sweep_stale();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "add", name]);
        run_ok(cmd, SETUP_TIMEOUT)?;
        let netns = Self {
            name: name.to_owned(),
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bind mount, for `nsenter --net=`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `ip -n <name> <args>`, failing on a non-zero exit.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name]).args(args);
        run_ok(cmd, SETUP_TIMEOUT).map(drop)
    }

    /// A command that runs `program` inside this network namespace only.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// PIDs of the processes inside the namespace.
    pub fn pids(&self) -> anyhow::Result<Vec<i32>> {
        netns_pids(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = remove_netns(&self.name) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

fn netns_pids(name: &str) -> anyhow::Result<Vec<i32>> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "pids", name]);
    let out = run_ok(cmd, SETUP_TIMEOUT)?;
    Ok(out
        .stdout
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Kills (SIGKILL, by PID) whatever still runs in the namespace, waits until it
/// is gone, then deletes the namespace.
fn remove_netns(name: &str) -> anyhow::Result<()> {
    let left = wait_until(Duration::from_secs(10), || {
        let pids = netns_pids(name).unwrap_or_default();
        if pids.is_empty() {
            return Ok(());
        }
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        Err(pids)
    });
    if let Err(t) = left {
        eprintln!("cleanup: processes in netns {name} survived SIGKILL: {t}");
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "del", name]);
    let out = run(cmd, SETUP_TIMEOUT)?;
    if !out.success() {
        return Err(anyhow!("deleting netns {name}:\n{out}"));
    }
    Ok(())
}

/// Removes namespaces and temporary directories left by test runs whose process no
/// longer exists (a run killed by SIGKILL or Ctrl-C cannot run `Drop`). Runs once
/// per test process.
pub fn sweep_stale() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        let dead = |name: &str| -> bool {
            name.strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| {
                    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
                })
        };
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if dead(&name) {
                    eprintln!("removing stale netns {name}");
                    if let Err(e) = remove_netns(&name) {
                        eprintln!("cleanup: {e:#}");
                    }
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if dead(&name) {
                    eprintln!("removing stale directory {name}");
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    });
}
