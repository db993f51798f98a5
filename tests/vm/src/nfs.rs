//! NFS in the sandboxes: NFS-Ganesha in the nodes, run by our `60.nfs` event
//! script, and libnfs's userspace client in the client namespace (the kernel here
//! has neither an NFS client nor a server).
//!
//! ```text
//!   client netns 10.0.20.200                  node <pnn> (netns + mount ns)
//!     nfs-cp / nfs-cat / nfs-ls  ──TCP 2049──>  ganesha.nfsd, started by
//!     nfs://<public IP>/share/...?version=4       /etc/ctdb/events/legacy/60.nfs.script
//!                                                 conf    /etc/ctdb/ganesha.conf
//!                                                 pid/log /run/ganesha/
//!   /srv/shared (the cluster volume, the same in every node):
//!     export/               the exported directory (pseudo path /share)
//!     ganesha/pnn<N>/       node N's RecoveryRoot (v4recov, v4old)
//!     ganesha/public_ips/   which RecoveryRoot last took each public address
//! ```
//!
//! The harness writes the configuration and installs the script; the script
//! starts and stops the server. Every path a node uses is private to it (its
//! `/etc/ctdb` and `/run`) or on the shared volume, so nothing of the host is
//! touched, and the node's sandbox removes every process and file it leaves.
//! [`NfsNode`] runs the script's events in one node and, on drop, runs its
//! `shutdown` (panics included) and shows the server's log if the test failed.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::cluster::Cluster;
use crate::daemon::workspace_root;
use crate::node::{Node, SHARED_MOUNT};
use crate::process::{indent, run, Output};
use crate::sandbox::NetNs;

/// The script, in the source tree, relative to the workspace root.
pub const SCRIPT_SOURCE: &str = "events.d/60.nfs.script";

/// Where [`install_script`] puts the script in a node (CTDB 4.17's directory of
/// enabled legacy scripts, under the node's private `/etc/ctdb`).
pub const SCRIPT_PATH: &str = "/etc/ctdb/events/legacy/60.nfs.script";

/// A node's ganesha configuration, as the node sees it.
pub const GANESHA_CONF: &str = "/etc/ctdb/ganesha.conf";

/// The server's pid file in a node (its private `/run`).
pub const GANESHA_PIDFILE: &str = "/run/ganesha/ganesha.pid";

/// The server's log in a node.
pub const GANESHA_LOGFILE: &str = "/run/ganesha/ganesha.log";

/// The exported directory, relative to the shared volume.
pub const EXPORT_DIR: &str = "export";

/// The parent of every node's recovery root, relative to the shared volume.
pub const STATE_DIR: &str = "ganesha";

/// The export's pseudo path: the first component of every NFS URL path.
pub const PSEUDO: &str = "/share";

/// The `Plugins_Dir` of Debian's nfs-ganesha (the VFS FSAL lives there).
pub const GANESHA_PLUGINS: &str = "/usr/lib/x86_64-linux-gnu/ganesha";

/// How long one event of the script may take: CTDB's default
/// `EventScriptTimeout`.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The libnfs tools the client runs.
const CLIENT_TOOLS: [&str; 3] = ["nfs-cp", "nfs-cat", "nfs-ls"];

/// Fails, naming every missing piece, unless ganesha and the libnfs tools are
/// installed. Never skips.
pub fn check_prerequisites() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/ganesha.nfsd").is_file() {
        missing.push("/usr/bin/ganesha.nfsd (apt-get install nfs-ganesha)".to_owned());
    }
    let vfs = Path::new(GANESHA_PLUGINS).join("libfsalvfs.so");
    if !vfs.is_file() {
        missing.push(format!(
            "{} (apt-get install nfs-ganesha-vfs)",
            vfs.display()
        ));
    }
    for tool in CLIENT_TOOLS {
        if crate::sandbox::which(tool).is_none() {
            missing.push(format!("{tool} (apt-get install libnfs-utils)"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        bail!("the NFS tests cannot run; missing: {}", missing.join("; "))
    }
}

/// The ganesha settings a test chooses; the rest of the configuration is fixed
/// (NFSv4 over TCP only, VFS export of the shared volume, recovery records on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaneshaConf {
    /// `Lease_Lifetime`, seconds: how long a silent client keeps its state (and
    /// its recovery record).
    pub lease_lifetime: u32,
    /// `Grace_Period`, seconds: how long a server that starts with recovery
    /// records refuses new opens (NFS4ERR_GRACE) so that those clients can
    /// reclaim first. Short in tests; production keeps ganesha's 90.
    pub grace_period: u32,
}

impl Default for GaneshaConf {
    fn default() -> Self {
        Self {
            lease_lifetime: 5,
            grace_period: 5,
        }
    }
}

impl GaneshaConf {
    /// The configuration file of node `pnn`.
    pub fn render(&self, pnn: u32) -> String {
        let Self {
            lease_lifetime,
            grace_period,
        } = self;
        format!(
            r#"# ganesha.nfsd of node {pnn} in a ctdb-rs test cluster (written by tests/vm).
# NFSv4 over TCP only: no rpcbind, NLM, rquota or UDP; no Kerberos.
NFS_Core_Param {{
	Protocols = 4;
	Enable_NLM = false;
	Enable_RQUOTA = false;
	Enable_UDP = false;
	Bind_addr = 0.0.0.0;
	Clustered = false;
	Plugins_Dir = "{GANESHA_PLUGINS}";
}}
NFS_KRB5 {{
	Active_krb5 = false;
	CCacheDir = "/run/ganesha/ccache";
}}
NFSv4 {{
	Lease_Lifetime = {lease_lifetime};
	Grace_Period = {grace_period};
	RecoveryBackend = fs;
	RecoveryRoot = "{root}";
	Only_Numeric_Owners = true;
}}
EXPORT {{
	Export_Id = 1;
	Path = "{SHARED_MOUNT}/{EXPORT_DIR}";
	Pseudo = "{PSEUDO}";
	Protocols = 4;
	Transports = TCP;
	Access_Type = RW;
	Squash = No_Root_Squash;
	SecType = sys;
	FSAL {{
		Name = VFS;
	}}
}}
"#,
            root = recovery_root(pnn),
        )
    }
}

/// Node `pnn`'s `RecoveryRoot`, as the nodes see it.
pub fn recovery_root(pnn: u32) -> String {
    format!("{SHARED_MOUNT}/{STATE_DIR}/pnn{pnn}")
}

/// Writes node `pnn`'s [`GANESHA_CONF`] and creates the export and state
/// directories on the shared volume. The cluster must have a shared volume.
pub fn write_ganesha_conf(cluster: &Cluster, pnn: u32, conf: &GaneshaConf) -> anyhow::Result<()> {
    check_prerequisites()?;
    for dir in [EXPORT_DIR, STATE_DIR] {
        let path = cluster.shared_path(dir)?;
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    let name = GANESHA_CONF
        .strip_prefix("/etc/ctdb/")
        .expect("the configuration lives in /etc/ctdb");
    cluster.node(pnn).write_config(name, &conf.render(pnn))
}

/// Copies `events.d/60.nfs.script` of the source tree to [`SCRIPT_PATH`] in
/// `node`, executable, and `events.d/functions` (which the script sources when
/// it exists) to `/etc/ctdb/functions`.
pub fn install_script(node: &Node) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let functions = workspace_root().join("events.d/functions");
    if functions.is_file() {
        let target = node.etc_dir().join("functions");
        std::fs::copy(&functions, &target)
            .with_context(|| format!("copying {} to {}", functions.display(), target.display()))?;
    }
    let source = workspace_root().join(SCRIPT_SOURCE);
    let target = node.etc_dir().join(
        SCRIPT_PATH
            .strip_prefix("/etc/ctdb/")
            .expect("the script lives in /etc/ctdb"),
    );
    std::fs::copy(&source, &target)
        .with_context(|| format!("copying {} to {}", source.display(), target.display()))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", target.display()))
}

/// The script's settings a test chooses (its `CTDB_NFS_*` variables); the paths
/// are the harness's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NfsSettings {
    /// `CTDB_NFS_GRACE_ON_TAKEOVER`.
    pub grace_on_takeover: bool,
}

impl Default for NfsSettings {
    fn default() -> Self {
        Self {
            grace_on_takeover: true,
        }
    }
}

impl NfsSettings {
    /// The variables, as the event runner exports them from `script.options`.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let yes_no = if self.grace_on_takeover { "yes" } else { "no" };
        vec![
            ("CTDB_NFS_GANESHA_CONF", GANESHA_CONF.to_owned()),
            ("CTDB_NFS_GANESHA_PIDFILE", GANESHA_PIDFILE.to_owned()),
            ("CTDB_NFS_GANESHA_LOGFILE", GANESHA_LOGFILE.to_owned()),
            ("CTDB_NFS_GRACE_ON_TAKEOVER", yes_no.to_owned()),
        ]
    }

    /// The same as lines of `script.options`, for a daemon to pass on.
    pub fn script_options(&self) -> String {
        self.vars()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }
}

/// One node's NFS service, driven through the event script. Dropping it runs
/// `shutdown` (stopping the server by its pid) and, if the thread is panicking,
/// prints the server's log.
#[derive(Debug)]
pub struct NfsNode<'a> {
    node: &'a Node,
    settings: NfsSettings,
}

impl<'a> NfsNode<'a> {
    /// Installs the script in `node` (whose configuration the caller has written
    /// with [`write_ganesha_conf`]); starts nothing.
    pub fn new(node: &'a Node, settings: NfsSettings) -> anyhow::Result<Self> {
        check_prerequisites()?;
        install_script(node)?;
        Ok(Self { node, settings })
    }

    /// The node.
    pub fn node(&self) -> &Node {
        self.node
    }

    /// Runs `60.nfs.script <args>` in the node as the event runner would:
    /// `CTDB_BASE=/etc/ctdb`, `CTDB_SCRIPT_VARDIR`, the settings exported, and
    /// nothing else from the test's environment.
    pub fn event(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = self.node.command(SCRIPT_PATH);
        cmd.args(args)
            .current_dir("/")
            .env("CTDB_BASE", "/etc/ctdb")
            .env("CTDB_SCRIPT_VARDIR", "/var/lib/ctdb/scripts")
            .envs(self.settings.vars());
        run(cmd, EVENT_TIMEOUT)
    }

    /// Runs an event and fails unless it exits 0.
    pub fn event_ok(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = self.event(args)?;
        if !out.success() {
            bail!(
                "node {}: 60.nfs {} failed:\n{out}\n{}",
                self.node.pnn(),
                args.join(" "),
                self.log_tail()
            );
        }
        Ok(out)
    }

    /// The pid in the server's pid file, if there is one.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.host_path(GANESHA_PIDFILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The server's log so far (empty if it never started).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.host_path(GANESHA_LOGFILE)).unwrap_or_default()
    }

    /// The host path of `inside` (a path as the node sees it).
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.node.path(inside)
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "---- last lines of node {}'s {GANESHA_LOGFILE} ----\n{}",
            self.node.pnn(),
            indent(&tail)
        )
    }
}

impl Drop for NfsNode<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        match self.event(&["shutdown"]) {
            Ok(out) if out.success() => {}
            Ok(out) => eprintln!("cleanup: node {}: 60.nfs shutdown:\n{out}", self.node.pnn()),
            Err(e) => eprintln!("cleanup: node {}: 60.nfs shutdown: {e:#}", self.node.pnn()),
        }
    }
}

/// The NFSv4 URL of `path` (relative to the export) at `addr`.
pub fn url(addr: Ipv4Addr, path: &str) -> String {
    let path = path.trim_start_matches('/');
    let sep = if path.is_empty() { "" } else { "/" };
    format!("nfs://{addr}{PSEUDO}{sep}{path}?version=4")
}

/// Runs a libnfs tool (`nfs-cp`, `nfs-cat`, `nfs-ls`) in the client namespace,
/// killed after `timeout`; returns its output whatever its status.
pub fn client_run(
    client: &NetNs,
    tool: &str,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<Output> {
    let mut cmd = client.command(tool);
    cmd.args(args);
    run(cmd, timeout)
}

/// `nfs-cp <local> nfs://<addr>/share/<name>?version=4`: writes a host file to
/// the export through `addr`.
pub fn nfs_cp(
    client: &NetNs,
    local: &Path,
    addr: Ipv4Addr,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Output> {
    let local = local
        .to_str()
        .context("nfs-cp takes the local file's path as UTF-8")?;
    client_run(client, "nfs-cp", &[local, &url(addr, name)], timeout)
}

/// `nfs-cat nfs://<addr>/share/<name>?version=4`: the file's bytes on stdout.
pub fn nfs_cat(
    client: &NetNs,
    addr: Ipv4Addr,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Output> {
    client_run(client, "nfs-cat", &[&url(addr, name)], timeout)
}

/// `nfs-ls nfs://<addr>/share?version=4`: the export's listing.
pub fn nfs_ls(client: &NetNs, addr: Ipv4Addr, timeout: Duration) -> anyhow::Result<Output> {
    client_run(client, "nfs-ls", &[&url(addr, "")], timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_use_the_pseudo_path_and_nfsv4() {
        let addr = Ipv4Addr::new(10, 0, 20, 101);
        assert_eq!(
            url(addr, "a.txt"),
            "nfs://10.0.20.101/share/a.txt?version=4"
        );
        assert_eq!(url(addr, "/d/a"), "nfs://10.0.20.101/share/d/a?version=4");
        assert_eq!(url(addr, ""), "nfs://10.0.20.101/share?version=4");
    }

    #[test]
    fn each_node_has_its_own_recovery_root_on_the_shared_volume() {
        let conf = GaneshaConf::default().render(2);
        assert!(conf.contains("RecoveryRoot = \"/srv/shared/ganesha/pnn2\";"));
        assert!(conf.contains("Path = \"/srv/shared/export\";"));
        assert!(conf.contains("Clustered = false;"));
    }

    #[test]
    fn settings_become_script_options() {
        let text = NfsSettings {
            grace_on_takeover: false,
        }
        .script_options();
        assert!(text.contains("CTDB_NFS_GRACE_ON_TAKEOVER=no\n"));
        assert!(text.contains("CTDB_NFS_GANESHA_CONF=/etc/ctdb/ganesha.conf\n"));
    }
}
