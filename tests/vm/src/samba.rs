//! Samba in the node sandboxes, in the classic clustered-NAS layout: one `smb.conf`
//! on the shared volume (`clustering = yes`), each node's own state private to it,
//! the state smbd shares between nodes in the daemons' clustered databases; and
//! `smbclient` in the client namespace.
//!
//! ```text
//!   shared volume (host tmp dir, /srv/shared in every node)
//!     smb.conf            [share] path = /srv/shared/share
//!     share/              owned by the test user
//!   node i (mount namespace; host dirs under <node tmp>/samba)
//!     /etc/samba          <- bind samba/etc  (smb.conf -> /srv/shared/smb.conf)
//!     /var/lib/samba      <- bind samba/lib  (what smbd keeps per node)
//!     /var/lib/ctdb       (the node's daemon: the clustered databases, among
//!                          them the persistent passdb.tdb holding the test user)
//!     /var/cache/samba    <- bind samba/cache
//!     /var/log/samba      <- bind samba/log
//!     /run/samba          (in the node's private /run tmpfs)
//!     /etc/passwd, /etc/group, /etc/shadow
//!                         <- bind copies of the host's, plus the test user
//!   client namespace: smbclient in a throw-away mount namespace with tmpfs over
//!     Samba's state directories, so it leaves nothing on the host
//! ```
//!
//! The test user exists only in the nodes' copies of the account files; the
//! host's are never written. Built by [`crate::ClusterBuilder::samba`]; the user is
//! registered with Samba (`smbpasswd -a`, on one node) by [`Cluster::start`] once
//! the daemons run; smbd itself is started by the `50.samba` event script (see
//! [`crate::scripts`]).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::cluster::Cluster;
use crate::gluster::Volume;
use crate::node::{Node, SHARED_MOUNT, TOOL_TIMEOUT};
use crate::process::{run, run_ok, Output};

/// The user the tests log in to Samba as. It exists only inside the nodes.
pub const SAMBA_USER: &str = "nasuser";

/// [`SAMBA_USER`]'s Samba password.
pub const SAMBA_PASSWORD: &str = "ctdbrs-Nas-1";

/// The share every node exports.
pub const SHARE: &str = "share";

/// The share's directory as the nodes see it (on the shared volume).
pub const SHARE_PATH: &str = "/srv/shared/share";

/// How long one `smbclient` run may take.
pub const SMBCLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// First user and group id tried for [`SAMBA_USER`]; the first id from here that
/// the host's account files do not use is taken.
const FIRST_TEST_ID: u32 = 4242;

/// The `smb.conf` [`crate::ClusterBuilder::samba`] writes to the shared volume,
/// the settings of the example `etc/smb.conf` (keep the two alike): smbd with
/// `clustering = yes`, one `netbios name` for every node, SMB over port 445 only,
/// `passdb backend = tdbsam`, one writable share on the shared volume with
/// `posix locking = no`. Every path left at its default is private to the node.
///
/// smbd keeps its sessions, share modes, locks and users in the daemons'
/// clustered databases, so every node sees every node's opens and locks, and a
/// user added on one node (the clustered persistent `passdb.tdb`) exists on all.
/// It finds the daemon at its built-in socket path, `/run/ctdb/ctdbd.socket`,
/// where both our daemon and the stock one listen inside a node (each node has its
/// own `/run`), so no `ctdbd socket` line is needed.
pub fn smb_conf() -> String {
    // The shared volume here is one local directory, so the kernel's fcntl locks
    // that smbd would take for byte-range locks would conflict across the nodes by
    // themselves: with `posix locking = no` the clustered brlock.tdb is the only
    // judge of a conflict between nodes.
    format!(
        "\
[global]
\tserver role = standalone server
\tclustering = yes
\tnetbios name = NAS
\tsmb ports = 445
\tdisable netbios = yes
\tpassdb backend = tdbsam
\tmap to guest = never
\tload printers = no
\tprinting = bsd
\tprintcap name = /dev/null
\tdisable spoolss = yes
\tlogging = file
\tlog file = /var/log/samba/log.%m
\tmax log size = 1000

[{SHARE}]
\tpath = {SHARE_PATH}
\tread only = no
\tvalid users = {SAMBA_USER}
\tposix locking = no
"
    )
}

/// [`smb_conf`] for a cluster on `volume`. On GlusterFS the share also gets
/// `vfs_fileid` with `fileid:algorithm = fsid`: smbd keys share modes, leases and
/// byte-range locks by (device, inode), and while GlusterFS's FUSE inode numbers
/// agree on every node (they come from the file's GFID), each node's mount has a
/// device number of its own, so without it two nodes would never see each other's
/// opens. A FUSE mount's file-system id is the same (zero) on every node.
pub fn smb_conf_for(volume: Volume) -> String {
    let mut text = smb_conf();
    if let Volume::Gluster(_) = volume {
        text.push_str("\tvfs objects = fileid\n\tfileid:algorithm = fsid\n");
    }
    text
}

/// Fails, naming everything missing, unless Samba can run in the sandboxes: its
/// programs, and the host directories the nodes mount over.
pub fn check_prerequisites() -> anyhow::Result<()> {
    let missing = crate::sandbox::missing_from_host(
        &[
            ("smbd", "samba"),
            ("testparm", "samba-common-bin"),
            ("smbpasswd", "samba-common-bin"),
            ("smbclient", "smbclient"),
            ("mountpoint", "util-linux"),
        ],
        &[
            "/etc/samba",
            "/var/lib/samba",
            "/var/cache/samba",
            "/var/log/samba",
            crate::scripts::INSTALL_DIR,
        ],
    );
    if missing.is_empty() {
        Ok(())
    } else {
        bail!(
            "Samba cannot run in the sandboxes; missing: {}",
            missing.join("; ")
        )
    }
}

/// The test user's ids: the host's, if it happens to have the user, else the
/// first id from 4242 up free as both a user and a group id.
pub fn test_user_ids() -> anyhow::Result<(u32, u32)> {
    let passwd = read("/etc/passwd")?;
    let group = read("/etc/group")?;
    if let Some(line) = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(SAMBA_USER))
    {
        let fields: Vec<&str> = line.split(':').collect();
        if let (Some(Ok(uid)), Some(Ok(gid))) = (
            fields.get(2).map(|f| f.parse()),
            fields.get(3).map(|f| f.parse()),
        ) {
            return Ok((uid, gid));
        }
        bail!("cannot read the ids of {SAMBA_USER} in the host's /etc/passwd: {line}");
    }
    let used = |text: &str, id: u32| {
        text.lines()
            .any(|l| l.split(':').nth(2) == Some(id.to_string().as_str()))
    };
    let id = (FIRST_TEST_ID..u32::MAX)
        .find(|&id| !used(&passwd, id) && !used(&group, id))
        .expect("some id above 4242 is free");
    Ok((id, id))
}

/// Writes [`smb_conf_for`] `volume` and creates the share's directory (owned by
/// the test user) in the shared volume `shared` (a host path).
pub fn prepare_shared(shared: &Path, volume: Volume) -> anyhow::Result<()> {
    std::fs::write(shared.join("smb.conf"), smb_conf_for(volume))
        .with_context(|| format!("writing smb.conf in {}", shared.display()))?;
    let share = shared.join(
        SHARE_PATH
            .trim_start_matches(SHARED_MOUNT)
            .trim_start_matches('/'),
    );
    std::fs::create_dir_all(&share).with_context(|| format!("creating {}", share.display()))?;
    let (uid, gid) = test_user_ids()?;
    std::os::unix::fs::chown(&share, Some(uid), Some(gid))
        .with_context(|| format!("giving {} to the test user", share.display()))?;
    Ok(())
}

/// Host directory per node: `etc`, `lib`, `cache`, `log` (mounted over Samba's
/// directories) and the account files.
const NODE_SAMBA_DIR: &str = "samba";

/// Run in the node (both namespaces) with `$1` = the node's [`NODE_SAMBA_DIR`]:
/// gives it private Samba directories and account files.
const MOUNT_SCRIPT: &str = r#"set -e
mount --bind "$1/etc" /etc/samba
mount --bind "$1/lib" /var/lib/samba
mount --bind "$1/cache" /var/cache/samba
mount --bind "$1/log" /var/log/samba
mkdir -p -m 0755 /run/samba
for file in passwd group shadow; do
    mount --bind "$1/$file" "/etc/$file"
done
"#;

/// Gives `node` its private Samba directories and account files (with the test
/// user as a Unix account). Registering the user with Samba waits for the
/// daemons: `smbpasswd` writes the clustered `passdb.tdb`, which needs a running
/// daemon to attach it ([`Cluster::start`] does it once, through the node that
/// [`Cluster::samba_user_node`] names). The shared volume must already hold
/// `smb.conf` ([`prepare_shared`]).
pub fn prepare_node(node: &Node) -> anyhow::Result<()> {
    let dir = node.sandbox_dir().join(NODE_SAMBA_DIR);
    for sub in ["etc", "lib/private", "cache", "log"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {sub} in {}", dir.display()))?;
    }
    std::fs::set_permissions(
        dir.join("lib/private"),
        std::fs::Permissions::from_mode(0o700),
    )
    .context("restricting Samba's private directory")?;
    let conf_link = dir.join("etc/smb.conf");
    std::os::unix::fs::symlink(format!("{SHARED_MOUNT}/smb.conf"), &conf_link)
        .with_context(|| format!("linking {}", conf_link.display()))?;

    let (uid, gid) = test_user_ids()?;
    let has_user = |text: &str| {
        text.lines()
            .any(|l| l.split(':').next() == Some(SAMBA_USER))
    };
    let mut passwd = read("/etc/passwd")?;
    let mut group = read("/etc/group")?;
    let mut shadow = read("/etc/shadow")?;
    if !has_user(&passwd) {
        end_line(&mut passwd);
        writeln!(
            passwd,
            "{SAMBA_USER}:x:{uid}:{gid}:ctdb-rs test user:/nonexistent:/usr/sbin/nologin"
        )?;
    }
    if !has_user(&group) {
        end_line(&mut group);
        writeln!(group, "{SAMBA_USER}:x:{gid}:")?;
    }
    if !has_user(&shadow) {
        // A locked Unix password: the user logs in to Samba only.
        end_line(&mut shadow);
        writeln!(shadow, "{SAMBA_USER}:!:20000:0:99999:7:::")?;
    }
    for (name, text, mode) in [
        ("passwd", &passwd, 0o644),
        ("group", &group, 0o644),
        ("shadow", &shadow, 0o640),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }

    let mut cmd = node.command("/bin/sh");
    cmd.args(["-c", MOUNT_SCRIPT, "ctdbrs-samba-mounts"])
        .arg(&dir);
    run_ok(cmd, TOOL_TIMEOUT)
        .with_context(|| format!("node {}: mounting Samba's private directories", node.pnn()))?;
    Ok(())
}

/// Registers [`SAMBA_USER`] with [`SAMBA_PASSWORD`] in `node`'s Samba
/// (`smbpasswd -a`). With `clustering = yes` this writes the clustered
/// `passdb.tdb`, so the node's daemon must be running, and once is enough for
/// every node. [`Cluster::start`] calls it.
pub fn add_samba_user(node: &Node) -> anyhow::Result<()> {
    let mut cmd = node.command("/bin/sh");
    cmd.args([
        "-c",
        r#"printf '%s\n%s\n' "$1" "$1" | smbpasswd -a -s "$2""#,
        "ctdbrs-smbpasswd",
        SAMBA_PASSWORD,
        SAMBA_USER,
    ]);
    run_ok(cmd, TOOL_TIMEOUT)
        .with_context(|| format!("node {}: adding {SAMBA_USER} to Samba", node.pnn()))?;
    Ok(())
}

/// Run in the client namespace as `sh -c SCRIPT ctdbrs-client PROGRAM ARGS...`:
/// a throw-away mount namespace with tmpfs over Samba's state directories (and a
/// fresh `/run`, since `/run/samba` exists on the host only once something has
/// created it: a fresh machine has none), so that a client neither reads nor writes
/// the host's Samba files.
const PRIVATE_STATE_SCRIPT: &str = r#"set -e
mount -t tmpfs ctdbrs-client /run
mkdir -m 0755 /run/samba
for dir in /var/cache/samba /var/lib/samba; do
    mount -t tmpfs ctdbrs-client "$dir"
done
exec "$@"
"#;

/// `program` to run in the client namespace `client` with Samba state of its own
/// (see `PRIVATE_STATE_SCRIPT`) and a clean environment; add its arguments.
pub fn client_command(client: &crate::sandbox::NetNs, program: &str) -> std::process::Command {
    let mut cmd = client.command("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(PRIVATE_STATE_SCRIPT)
        .arg("ctdbrs-client")
        .arg(program)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd
}

impl Cluster {
    /// Writes `text` as the cluster's `smb.conf` (on the shared volume: every node
    /// sees it at once). [`smb_conf`] is the good one.
    pub fn write_smb_conf(&self, text: &str) -> anyhow::Result<()> {
        self.write_shared("smb.conf", text)
    }

    /// Runs `smbclient //<addr>/share -U nasuser%<password> -c <commands>` in the
    /// client namespace (for example `put /tmp/x x` or `get x /tmp/y`; local paths
    /// are the host's). Returns the output whatever the exit status; fails if the
    /// cluster has no client or `smbclient` takes longer than [`SMBCLIENT_TIMEOUT`].
    pub fn smbclient(&self, addr: Ipv4Addr, commands: &str) -> anyhow::Result<Output> {
        let Some(client) = self.client() else {
            bail!("this cluster was built without a client namespace");
        };
        let mut cmd = client_command(client, "smbclient");
        // No smb.conf: nothing of the host's Samba configuration is read.
        cmd.args(["-s", "/dev/null"])
            .arg(format!("//{addr}/{SHARE}"))
            .arg("-U")
            .arg(format!("{SAMBA_USER}%{SAMBA_PASSWORD}"))
            .arg("-c")
            .arg(commands);
        run(cmd, SMBCLIENT_TIMEOUT)
    }
}

fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the host's {path}"))
}

/// Makes sure `text` ends with a newline before a line is appended.
fn end_line(text: &mut String) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// `section -> name -> value` of an smb.conf text, without comments.
    fn parameters(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut sections = BTreeMap::new();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let (name, value) = line.split_once('=').expect("name = value");
            sections
                .entry(section.clone())
                .or_insert_with(BTreeMap::new)
                .insert(name.trim().to_owned(), value.trim().to_owned());
        }
        sections
    }

    /// The example `etc/smb.conf` and the clustered smb.conf the tests and the
    /// demo run agree: the same global parameters, and the same share settings
    /// apart from the share's path and the tests' `valid users`.
    #[test]
    fn the_example_smb_conf_is_the_one_the_tests_run() {
        let path = crate::daemon::workspace_root().join("etc/smb.conf");
        let example = parameters(&std::fs::read_to_string(&path).expect("etc/smb.conf"));
        let ours = parameters(&smb_conf());
        assert_eq!(example["global"], ours["global"]);
        let share = |sections: &BTreeMap<String, BTreeMap<String, String>>| {
            let mut share = sections[SHARE].clone();
            share.remove("path");
            share.remove("valid users");
            share
        };
        assert_eq!(share(&example), share(&ours));
    }
}
