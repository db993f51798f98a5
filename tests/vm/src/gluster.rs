//! A real cluster file system for the nodes: a GlusterFS volume with one brick per
//! node, replicated on every node, FUSE-mounted at [`SHARED_MOUNT`] in each node.
//!
//! ```text
//!   node i (its netns and mount namespace; host dirs under <node tmp>/gluster)
//!     /var/lib/glusterd   <- bind gluster/lib   (glusterd's state, empty at first:
//!                                               a fresh UUID, no Debian hooks)
//!     /var/log/glusterfs  <- bind gluster/log   (glusterd, brick, shd, FUSE logs)
//!     /run                (the node's private tmpfs: glusterd.socket, brick pids)
//!     glusterd ── peers over priv0 (192.168.20.4x) ── glusterd of the others
//!     glusterfsd: brick <node tmp>/gluster/brick
//!     /srv/shared         <- mount -t glusterfs <own address>:/ctdbrs
//!                            (backup-volfile-servers = the other nodes)
//! ```
//!
//! Built by [`crate::ClusterBuilder::volume`] with [`Volume::Gluster`], or for any
//! scenario built with a shared volume by `CTDB_RS_VOLUME=gluster` (see
//! [`Volume::from_env`]). The nodes have no PID namespace of their own, so the
//! gluster daemons' PID files (in the node's private `/run`) hold host PIDs and
//! glusterd checks them against the host's `/proc`, which agree. Every gluster
//! process of a node lives in the node's network namespace: that is how they are
//! found to be stopped, by PID ([`gluster_pids`]).
//!
//! Tear-down ([`teardown_node`], run by [`crate::Cluster`]'s `Drop`, also after a
//! failed build): lazy unmount, SIGTERM then SIGKILL of the node's gluster
//! processes; the state goes with the node's temporary directory.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::node::{Node, SHARED_MOUNT};
use crate::process::{run, Background, Output};
use crate::wait::wait_until;

/// The volume's name (each cluster's glusterds are private to it, so one name
/// serves every cluster).
pub const VOLUME_NAME: &str = "ctdbrs";

/// How long one `gluster` CLI call, `glusterd` start or mount may take.
const GLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the peers, bricks and client connections may take to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The options ctdb-rs recommends for a volume holding the recovery lock, set
/// before the volume starts (`gluster volume set <vol> <name> <value>`).
///
/// A dead client's fcntl locks stay on the surviving bricks until the brick's
/// side of the TCP connection is dropped: at the defaults through keepalive after
/// about 40 s; every operation of a survivor that also goes to the dead brick
/// waits for the client's ping timer (42 s by default). The server keepalive and
/// TCP user timeout free the lock within about 2 s, the ping timeout ends the
/// survivors' stall; the client side is set alike so that a dead brick is noticed
/// as fast. (`network.ping-timeout 0` would switch the ping timer off: never 0.)
pub const RECOMMENDED_OPTIONS: &[(&str, &str)] = &[
    ("network.ping-timeout", "2"),
    ("server.keepalive-time", "1"),
    ("server.keepalive-interval", "1"),
    ("server.keepalive-count", "1"),
    ("server.tcp-user-timeout", "1"),
    ("client.keepalive-time", "1"),
    ("client.keepalive-interval", "1"),
    ("client.keepalive-count", "1"),
    ("client.tcp-user-timeout", "1"),
];

/// Which volume options a GlusterFS volume gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlusterOptions {
    /// GlusterFS's own defaults (nothing set).
    Defaults,
    /// [`RECOMMENDED_OPTIONS`].
    Recommended,
}

impl GlusterOptions {
    /// The `(name, value)` pairs set on the volume.
    pub fn pairs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Defaults => &[],
            Self::Recommended => RECOMMENDED_OPTIONS,
        }
    }
}

/// What stands in for the cluster volume at [`SHARED_MOUNT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volume {
    /// One host directory bind-mounted in every node: always up, always coherent.
    Dir,
    /// A GlusterFS volume replicated over every present node.
    Gluster(GlusterOptions),
}

impl Volume {
    /// The volume chosen by `CTDB_RS_VOLUME`: `dir` (the default), `gluster`
    /// (with [`RECOMMENDED_OPTIONS`]) or `gluster-defaults`.
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var("CTDB_RS_VOLUME").as_deref() {
            Err(std::env::VarError::NotPresent) | Ok("") | Ok("dir") => Ok(Self::Dir),
            Ok("gluster") => Ok(Self::Gluster(GlusterOptions::Recommended)),
            Ok("gluster-defaults") => Ok(Self::Gluster(GlusterOptions::Defaults)),
            other => bail!(
                "CTDB_RS_VOLUME must be `dir`, `gluster` or `gluster-defaults`, not {other:?}"
            ),
        }
    }
}

impl fmt::Display for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir => write!(f, "plain directory"),
            Self::Gluster(GlusterOptions::Defaults) => write!(f, "GlusterFS, default options"),
            Self::Gluster(GlusterOptions::Recommended) => {
                write!(f, "GlusterFS, recommended options")
            }
        }
    }
}

/// Fails, naming what is missing, unless GlusterFS can run in the nodes.
pub fn check_prerequisites() -> anyhow::Result<()> {
    let missing = crate::sandbox::missing_from_host(
        &[
            ("glusterd", "glusterfs-server"),
            ("gluster", "glusterfs-server"),
            ("mount.glusterfs", "glusterfs-client"),
        ],
        &["/var/lib/glusterd", "/var/log/glusterfs", "/srv"],
    );
    if missing.is_empty() {
        Ok(())
    } else {
        bail!(
            "GlusterFS cannot run in the sandboxes; missing: {}",
            missing.join("; ")
        )
    }
}

/// Host directory per node holding `lib`, `log` and `brick`.
const NODE_GLUSTER_DIR: &str = "gluster";

/// Run in the node with `$1` = the node's [`NODE_GLUSTER_DIR`]: private glusterd
/// state and logs, and an empty mount point for the volume (on a tmpfs over
/// `/srv`, so nothing is created on the host).
const MOUNT_SCRIPT: &str = r#"set -e
mount --bind "$1/lib" /var/lib/glusterd
mount --bind "$1/log" /var/log/glusterfs
mount -t tmpfs -o mode=0755 ctdbrs-srv /srv
mkdir -m 0755 /srv/shared
"#;

/// Run in the node: (re)starts glusterd with a clean runtime directory (stale PID
/// files in `/run/gluster` could name a reused PID, and glusterd would then skip
/// starting the brick). glusterd daemonizes; its output goes to its log directory
/// so that no pipe of ours stays open.
const GLUSTERD_SCRIPT: &str = r#"set -e
rm -rf /run/gluster /run/glusterd.pid /run/glusterd.socket
glusterd --log-level INFO </dev/null >/var/log/glusterfs/glusterd.out 2>&1
"#;

/// Run in the node with `$1` = volfile server, `$2` = backup servers: mounts the
/// volume (replacing a dead mount left by a killed client). mount.glusterfs leaves
/// the FUSE client running in the background, so its output goes to a file.
const MOUNT_VOLUME_SCRIPT: &str = r#"
# A dead FUSE mount fails every stat (so `mountpoint` too): detach whatever is
# there; on the first mount nothing is, and umount's complaint is ignored.
umount -l /srv/shared 2>/dev/null
mount -t glusterfs -o "backup-volfile-servers=$2" "$1:/ctdbrs" /srv/shared \
    </dev/null >/var/log/glusterfs/mount.out 2>&1
status=$?
cat /var/log/glusterfs/mount.out
exit $status
"#;

fn sh(node: &Node, script: &str, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = node.command("/bin/sh");
    cmd.args(["-c", script, "ctdbrs-gluster"]).args(args);
    run(cmd, GLUSTER_TIMEOUT)
}

fn sh_ok(node: &Node, script: &str, args: &[&str], what: &str) -> anyhow::Result<Output> {
    let out = sh(node, script, args)?;
    if !out.success() {
        bail!(
            "node {}: {what} failed:\n{out}\n---- end of glusterd.log ----\n{}",
            node.pnn(),
            log_tail(node, "glusterd.log")
        );
    }
    Ok(out)
}

/// The last lines of `/var/log/glusterfs/<name>` in `node`.
pub fn log_tail(node: &Node, name: &str) -> String {
    let text = std::fs::read_to_string(node.path(&format!("/var/log/glusterfs/{name}")))
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Runs `gluster --mode=script <args>` in `node`.
pub fn gluster(node: &Node, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = node.command("gluster");
    cmd.arg("--mode=script").args(args);
    run(cmd, GLUSTER_TIMEOUT)
}

fn gluster_ok(node: &Node, args: &[&str]) -> anyhow::Result<Output> {
    let out = gluster(node, args)?;
    if !out.success() {
        bail!(
            "node {}: gluster {} failed:\n{out}\n---- end of glusterd.log ----\n{}",
            node.pnn(),
            args.join(" "),
            log_tail(node, "glusterd.log")
        );
    }
    Ok(out)
}

/// The brick directory of `node`, a host path (the nodes see the host's `/tmp`).
fn brick_dir(node: &Node) -> std::path::PathBuf {
    node.sandbox_dir().join(NODE_GLUSTER_DIR).join("brick")
}

/// Builds the volume over `nodes` (all created, their private network up): each
/// node gets its private state and glusterd, node 0 probes the others, the volume
/// is created with one brick per node (replica = number of nodes), `options` set,
/// started, and mounted in every node; returns once every node's client is
/// connected to every brick. On failure the caller tears the nodes down
/// ([`teardown_node`]).
pub fn create_volume(nodes: &[&Node], options: GlusterOptions) -> anyhow::Result<()> {
    check_prerequisites()?;
    let Some((first, others)) = nodes.split_first() else {
        bail!("a GlusterFS volume needs at least one node");
    };
    for node in nodes {
        let dir = node.sandbox_dir().join(NODE_GLUSTER_DIR);
        for sub in ["lib", "log", "brick"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {sub} in {}", dir.display()))?;
        }
        let dir = dir.to_string_lossy().into_owned();
        sh_ok(
            node,
            MOUNT_SCRIPT,
            &[&dir],
            "mounting glusterd's private directories",
        )?;
        sh_ok(node, GLUSTERD_SCRIPT, &[], "starting glusterd")?;
    }
    for node in nodes {
        wait_glusterd(node)?;
    }
    for node in others {
        gluster_ok(first, &["peer", "probe", &node.private_addr().to_string()])?;
    }
    for node in nodes {
        wait_peers(node, nodes.len() - 1)?;
    }
    let mut create = vec![
        "volume".to_owned(),
        "create".to_owned(),
        VOLUME_NAME.to_owned(),
    ];
    if nodes.len() > 1 {
        create.extend(["replica".to_owned(), nodes.len().to_string()]);
    }
    for node in nodes {
        create.push(format!(
            "{}:{}",
            node.private_addr(),
            brick_dir(node).display()
        ));
    }
    // The bricks sit on the root file system, which gluster refuses without force.
    create.push("force".to_owned());
    let create: Vec<&str> = create.iter().map(String::as_str).collect();
    gluster_ok(first, &create)?;
    for (name, value) in options.pairs() {
        gluster_ok(first, &["volume", "set", VOLUME_NAME, name, value])?;
    }
    gluster_ok(first, &["volume", "start", VOLUME_NAME])?;
    wait_bricks_online(first, nodes)?;
    let addrs: Vec<Ipv4Addr> = nodes.iter().map(|n| n.private_addr()).collect();
    for node in nodes {
        mount_volume(node, &addrs)?;
    }
    for node in nodes {
        wait_connected(node, nodes.len())?;
    }
    Ok(())
}

fn wait_glusterd(node: &Node) -> anyhow::Result<()> {
    wait_until(READY_TIMEOUT, || match gluster(node, &["peer", "status"]) {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(out.to_string()),
        Err(e) => Err(format!("{e:#}")),
    })
    .map_err(|t| {
        anyhow::anyhow!(
            "node {}: glusterd never answered: {t}\n---- end of glusterd.log ----\n{}",
            node.pnn(),
            log_tail(node, "glusterd.log")
        )
    })
}

fn wait_peers(node: &Node, want: usize) -> anyhow::Result<()> {
    wait_until(READY_TIMEOUT, || match gluster(node, &["peer", "status"]) {
        Ok(out) if out.stdout.matches("Peer in Cluster (Connected)").count() == want => Ok(()),
        Ok(out) => Err(out.stdout),
        Err(e) => Err(format!("{e:#}")),
    })
    .map_err(|t| {
        anyhow::anyhow!(
            "node {}: not every peer joined: {t}\n---- end of glusterd.log ----\n{}",
            node.pnn(),
            log_tail(node, "glusterd.log")
        )
    })
}

/// The brick paths `gluster volume status --xml` reports online (status 1).
/// (The plain output wraps long brick names, so the XML is read.)
pub fn online_bricks(xml: &str) -> Vec<String> {
    xml.split("<node>")
        .skip(1)
        .filter(|chunk| chunk.contains("<status>1</status>"))
        .filter_map(|chunk| {
            let path = chunk.split("<path>").nth(1)?.split("</path>").next()?;
            Some(path.to_owned())
        })
        .filter(|path| path.starts_with('/'))
        .collect()
}

fn wait_bricks_online(asker: &Node, nodes: &[&Node]) -> anyhow::Result<()> {
    let want: Vec<String> = nodes
        .iter()
        .map(|n| brick_dir(n).to_string_lossy().into_owned())
        .collect();
    wait_until(READY_TIMEOUT, || {
        match gluster(asker, &["volume", "status", VOLUME_NAME, "--xml"]) {
            Ok(out) => {
                let online = online_bricks(&out.stdout);
                if want.iter().all(|b| online.contains(b)) {
                    Ok(())
                } else {
                    Err(format!("online: {online:?}\n{out}"))
                }
            }
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .map_err(|t| anyhow::anyhow!("not every brick came online: {t}"))
}

/// Mounts the volume at [`SHARED_MOUNT`] in `node`, from its own glusterd with the
/// other `addrs` as backup volfile servers.
fn mount_volume(node: &Node, addrs: &[Ipv4Addr]) -> anyhow::Result<()> {
    let backups: Vec<String> = addrs
        .iter()
        .filter(|a| **a != node.private_addr())
        .map(Ipv4Addr::to_string)
        .collect();
    sh_ok(
        node,
        MOUNT_VOLUME_SCRIPT,
        &[&node.private_addr().to_string(), &backups.join(":")],
        "mounting the GlusterFS volume",
    )
    .map(drop)
}

/// How many of the volume's `bricks` bricks `node`'s FUSE client is connected to,
/// read from the client's meta directory.
pub fn connected_bricks(node: &Node, bricks: usize) -> usize {
    (0..bricks)
        .filter(|i| {
            let private = node.path(&format!(
                "{SHARED_MOUNT}/.meta/graphs/active/{VOLUME_NAME}-client-{i}/private"
            ));
            std::fs::read_to_string(private).is_ok_and(|t| t.contains("connected = 1"))
        })
        .count()
}

/// Waits until `node`'s FUSE client is connected to all `bricks` bricks.
pub fn wait_connected(node: &Node, bricks: usize) -> anyhow::Result<()> {
    wait_until(READY_TIMEOUT, || {
        let n = connected_bricks(node, bricks);
        if n == bricks {
            Ok(())
        } else {
            Err(n)
        }
    })
    .map_err(|t| {
        anyhow::anyhow!(
            "node {}: the FUSE client is not connected to all {bricks} bricks: {t}\n\
             ---- end of the mount log ----\n{}",
            node.pnn(),
            log_tail(node, "srv-shared.log")
        )
    })
}

/// PIDs of the gluster processes of `node` (glusterd, the brick's glusterfsd, the
/// self-heal daemon and the FUSE client, `glusterfs`): every process of its
/// network namespace whose command name starts with `gluster`.
pub fn gluster_pids(node: &Node) -> Vec<i32> {
    node.netns()
        .pids()
        .unwrap_or_default()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.starts_with("gluster"))
        })
        .collect()
}

/// Sends `signal` to every gluster process of `node` and waits (up to 10 s) until
/// they are gone. Returns the PIDs that survived.
fn stop_gluster(node: &Node, signal: Signal) -> Vec<i32> {
    for pid in gluster_pids(node) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
    match wait_until(Duration::from_secs(10), || {
        let left = gluster_pids(node);
        if left.is_empty() {
            Ok(())
        } else {
            Err(left)
        }
    }) {
        Ok(()) => Vec::new(),
        Err(t) => t.last_seen,
    }
}

/// Power loss of `node`'s gluster side: SIGKILL of every gluster process (brick,
/// glusterd, self-heal daemon, FUSE client). Its mount is left dead.
pub fn kill_node(node: &Node) -> anyhow::Result<()> {
    let left = stop_gluster(node, Signal::SIGKILL);
    if !left.is_empty() {
        bail!(
            "node {}: gluster processes survived SIGKILL: {left:?}",
            node.pnn()
        );
    }
    Ok(())
}

/// Brings `node`'s gluster side back after [`kill_node`] (its links up): glusterd
/// (which starts the brick) and the mount, waiting until its client reaches all
/// `all.len()` bricks. `all` are the private addresses of the volume's nodes.
pub fn revive_node(node: &Node, all: &[Ipv4Addr]) -> anyhow::Result<()> {
    sh_ok(node, GLUSTERD_SCRIPT, &[], "restarting glusterd")?;
    wait_glusterd(node)?;
    mount_volume(node, all)?;
    wait_connected(node, all.len())
}

/// PID of `node`'s FUSE client for the volume: the `glusterfs` process of its
/// network namespace whose command line ends with the mount point (the self-heal
/// daemon is a `glusterfs` too, without it).
pub fn fuse_client_pid(node: &Node) -> anyhow::Result<i32> {
    let found: Vec<i32> = gluster_pids(node)
        .into_iter()
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            comm.trim() == "glusterfs"
                && cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == SHARED_MOUNT.as_bytes())
        })
        .collect();
    match found.as_slice() {
        [pid] => Ok(*pid),
        other => bail!(
            "node {}: expected one FUSE client of {SHARED_MOUNT}, found {other:?}",
            node.pnn()
        ),
    }
}

/// Lazily unmounts the volume in `node` (`umount -l` in its mount namespace): the
/// node sees the empty mount-point directory, processes with files open on the
/// volume keep them. The FUSE client goes with the last user.
pub fn unmount(node: &Node) -> anyhow::Result<()> {
    sh_ok(node, "umount -l /srv/shared", &[], "unmounting the volume").map(drop)
}

/// Mounts the volume again in `node` after [`unmount`] (`all`: the private
/// addresses of the volume's nodes) and waits until its client reaches every brick.
pub fn remount(node: &Node, all: &[Ipv4Addr]) -> anyhow::Result<()> {
    mount_volume(node, all)?;
    wait_connected(node, all.len())
}

/// Stops `node`'s gluster side for good: lazy unmount of the volume, SIGTERM to
/// every gluster process, SIGKILL to those left. Never fails: problems are printed.
pub fn teardown_node(node: &Node) {
    match sh(node, "umount -l /srv/shared 2>/dev/null; true", &[]) {
        Ok(out) if !out.success() => eprintln!("cleanup: node {}: unmounting:\n{out}", node.pnn()),
        Err(e) => eprintln!("cleanup: node {}: unmounting: {e:#}", node.pnn()),
        Ok(_) => {}
    }
    if !stop_gluster(node, Signal::SIGTERM).is_empty() {
        let left = stop_gluster(node, Signal::SIGKILL);
        if !left.is_empty() {
            eprintln!(
                "cleanup: node {}: gluster processes survived SIGKILL: {left:?}",
                node.pnn()
            );
        }
    }
}

/// What `ctdb-rs-reclock-helper FILE` (the lock owner of [`lockvol`], as our
/// `ctdbd` runs it) answered in a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockProbe {
    /// `0`: it took the lock (then released at once by SIGTERM).
    Taken,
    /// `1`: another process holds it.
    Contended,
    /// Anything else: what it printed.
    Other(String),
}

/// Runs our recovery-lock helper on `file` (a path as the node sees it) in `node`
/// and returns its answer; a taken lock is released at once. Fails if it says
/// nothing within `timeout` (a hung volume).
pub fn probe_lock(node: &Node, file: &str, timeout: Duration) -> anyhow::Result<LockProbe> {
    let helper = crate::daemon::built_binary("ctdb-rs-reclock-helper")?;
    let mut cmd = node.command(helper);
    cmd.arg(file);
    let mut process = Background::spawn(&format!("node {} lock probe", node.pnn()), cmd)?;
    let answer = wait_until(timeout, || {
        let log = process.log();
        match log.chars().next() {
            Some('0') => Ok(LockProbe::Taken),
            Some('1') => Ok(LockProbe::Contended),
            Some(_) if log.ends_with('\n') || process.try_wait().ok().flatten().is_some() => {
                Ok(LockProbe::Other(log))
            }
            _ => Err(log),
        }
    })
    .map_err(|t| anyhow::anyhow!("node {}: the lock helper said nothing: {t}", node.pnn()));
    process.stop(Duration::from_secs(5))?;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_bricks_reads_the_status_of_each_brick_and_skips_the_daemons() {
        let xml = "<volStatus><volumes><volume><volName>ctdbrs</volName>\
            <node><hostname>192.168.20.41</hostname><path>/tmp/a/brick</path>\
            <status>1</status></node>\
            <node><hostname>192.168.20.42</hostname><path>/tmp/b/brick</path>\
            <status>0</status></node>\
            <node><hostname>Self-heal Daemon</hostname><path>localhost</path>\
            <status>1</status></node></volume></volumes></volStatus>";
        assert_eq!(online_bricks(xml), vec!["/tmp/a/brick".to_owned()]);
    }
}
