//! The cluster on a real cluster file system: a replica-3 GlusterFS volume across
//! the three nodes (one glusterd and one brick per node, FUSE-mounted at
//! `/srv/shared` in each), holding the recovery lock, the `nodes` and
//! `public_addresses` files, `smb.conf` and the share; clustered Samba on top.
//!
//! ```text
//!   client ── SMB ──> public address ──> smbd (node n) ──> /srv/shared/share
//!   node n: ctdbd ── ctdb-rs-reclock-helper ── fcntl lock on /srv/shared/.ctdb.reclock
//!   /srv/shared = mount -t glusterfs <node n>:/ctdbrs (bricks on nodes 0, 1, 2)
//! ```
//!
//! The volume has the recommended options ([`vm::gluster::RECOMMENDED_OPTIONS`]).
//! The daemon is chosen by `CTDB_RS_DAEMON`:
//!
//! ```text
//! CTDB_RS_DAEMON=stock cargo test -p vm --test gluster
//! ```
//!
//! One scenario has smbd reach the volume through `vfs_glusterfs` (libgfapi,
//! Debian's `samba-vfs-modules`) instead of the FUSE mount:
//!
//! ```text
//!   client ── SMB ──> public address ──> smbd [gluster] ── libgfapi ──> bricks
//!                                        smbd [share]   ── FUSE /srv/shared ──> bricks
//! ```
//!
//! How long the volume keeps a dead holder's lock is measured, not asserted, by
//! `tests/vm/bench/gluster_lock.sh` (BENCHMARKS.md, "GlusterFS").

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use vm::cluster::RECLOCK_PATH;
use vm::gluster::{probe_lock, GlusterOptions, LockProbe, Volume};
use vm::public::{default_public, power_off_machine, wait_placed};
use vm::samba::smb_conf_for;
use vm::smb_client::SmbClient;
use vm::{Cluster, Daemon};

const ALL: [u32; 3] = [0, 1, 2];
/// Cold start until every node is RUNNING (startup starts smbd).
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Failover and placement: generous, the volume's own delays included.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a lock probe may take on a healthy volume.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

fn addrs() -> Vec<Ipv4Addr> {
    (0..3).map(default_public).collect()
}

/// Three nodes with clustered Samba on a GlusterFS volume, under the daemon of
/// `CTDB_RS_DAEMON`, every address placed. Returns the cluster and the daemon.
fn samba_on_gluster() -> anyhow::Result<(Cluster, Daemon)> {
    samba_on_gluster_with(|_| Ok(()))
}

/// [`samba_on_gluster`], with `configure` run on the built cluster before the
/// daemons (and so smbd) start.
fn samba_on_gluster_with(
    configure: impl FnOnce(&Cluster) -> anyhow::Result<()>,
) -> anyhow::Result<(Cluster, Daemon)> {
    let daemon = Daemon::from_env()?;
    vm::smb_client::check_prerequisites()?;
    let mut cluster = Cluster::builder()
        .nodes(3)
        .volume(Volume::Gluster(GlusterOptions::Recommended))
        .samba(true)
        .client(true)
        .tunables("MonitorInterval=1\n")
        .build()?;
    vm::nas::prepare_for(&cluster, None, daemon)?;
    configure(&cluster)?;
    cluster
        .start(daemon, START_TIMEOUT)
        .with_context(|| format!("starting the {daemon:?} daemons on the GlusterFS volume"))?;
    cluster.wait_agreement(&ALL, &ALL, START_TIMEOUT)?;
    wait_placed(&cluster, &ALL, &addrs(), &ALL, CONVERGE_TIMEOUT)?;
    Ok((cluster, daemon))
}

/// Fails unless our lock helper finds the recovery lock held by another process
/// on each of `pnns`.
fn ensure_lock_held(cluster: &Cluster, pnns: &[u32], when: &str) -> anyhow::Result<()> {
    for &pnn in pnns {
        let answer = probe_lock(cluster.node(pnn), RECLOCK_PATH, PROBE_TIMEOUT)?;
        ensure!(
            answer == LockProbe::Contended,
            "{when}: the recovery lock should be held by the leader's helper alone, so a \
             try from node {pnn} should meet contention; the helper answered {answer:?}"
        );
    }
    Ok(())
}

/// Given three nodes whose `/srv/shared` is a GlusterFS mount, when the daemons
/// start with clustered Samba, then every node is OK under one leader, every
/// address is served, the recovery lock is held by exactly one process of the
/// cluster (a try from any node, the leader's included, meets contention), and a
/// file put through node 0 is listed through node 2.
#[test]
fn clustered_samba_runs_on_a_glusterfs_volume_with_one_lock_holder() -> anyhow::Result<()> {
    let (cluster, _) = samba_on_gluster()?;
    for pnn in ALL {
        let mounts = cluster.node(pnn).run("cat", &["/proc/self/mounts"])?;
        ensure!(
            mounts
                .stdout
                .lines()
                .any(|l| l.contains(" /srv/shared fuse.glusterfs ")),
            "node {pnn} should see the GlusterFS volume at /srv/shared:\n{mounts}"
        );
    }
    ensure_lock_held(&cluster, &ALL, "with every node running")?;

    let dir = vm::sandbox::TempDir::new("glusterput")?;
    let local = dir.path().join("hello.txt");
    std::fs::write(&local, "written through node 0\n")?;
    let first = vm::public::address_held_by(&cluster, 0, CONVERGE_TIMEOUT)?;
    let out = cluster.smbclient(first, &format!("put {} hello.txt", local.display()))?;
    ensure!(out.success(), "put through node 0 ({first}):\n{out}");
    let last = vm::public::address_held_by(&cluster, 2, CONVERGE_TIMEOUT)?;
    let out = cluster.smbclient(last, "ls")?;
    ensure!(
        out.success() && out.stdout.contains("hello.txt"),
        "the file put through node 0 should be listed through node 2 ({last}):\n{out}"
    );
    Ok(())
}

/// Given the cluster on GlusterFS and a file written over SMB through the
/// leader's address, when the leader's ctdbd is killed with SIGKILL (its node and
/// its brick stay up, so the volume sees the lock's holder exit), then the
/// survivors agree on a new leader, which takes the recovery lock (a try from the
/// old leader's node meets contention again), every address moves onto the
/// survivors, and a new SMB session through the old leader's address, now served
/// by a survivor, reads the file.
#[test]
fn kill_9_of_the_leader_frees_the_lock_and_another_node_leads() -> anyhow::Result<()> {
    let (mut cluster, _) = samba_on_gluster()?;
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let survivors: Vec<u32> = ALL.into_iter().filter(|p| *p != leader).collect();
    let leader_addr = vm::public::address_held_by(&cluster, leader, CONVERGE_TIMEOUT)?;

    let text = "written-through-the-leader-before-its-daemon-died";
    let mut smb = SmbClient::start(&cluster)?;
    smb.connect("before", leader_addr)?;
    smb.write_file("before", "failover.txt", text, "through the leader")?;

    cluster.kill_daemon(leader)?;
    let after = cluster.wait_agreement(&survivors, &survivors, CONVERGE_TIMEOUT)?;
    ensure!(
        after.leader != leader,
        "the survivors should follow a new leader, not the dead node {leader}"
    );
    wait_placed(&cluster, &survivors, &addrs(), &survivors, CONVERGE_TIMEOUT)?;
    ensure_lock_held(
        &cluster,
        &ALL,
        &format!(
            "after node {leader}'s daemon was killed and node {} leads",
            after.leader
        ),
    )?;

    let mut smb = SmbClient::start(&cluster)?;
    smb.connect("after", leader_addr)?;
    smb.expect_file(
        "after",
        "failover.txt",
        text,
        "through the address the leader held, now a survivor's, the bytes written before the fault",
    )?;
    Ok(())
}

/// The share that smbd serves through `vfs_glusterfs`: the share's directory of
/// the volume, reached with libgfapi. Its `path` is relative to the volume's root
/// and exists in no node's own file system, so the share opens only through the
/// module. No kernel share modes or oplocks: they would need a local file. The
/// volfile server is each node's own (an `include` of a file private to the node).
const VFS_GLUSTERFS_SHARE: &str = "
[gluster]
\tpath = /share
\tvfs objects = glusterfs
\tglusterfs:volume = ctdbrs
\tinclude = /etc/samba/volfile_server.conf
\tglusterfs:logfile = /var/log/samba/vfs_glusterfs.log
\tkernel share modes = no
\tkernel oplocks = no
\tposix locking = no
\tread only = no
\tvalid users = nasuser
";

/// Fails, naming the package, unless smbd has the `vfs_glusterfs` module.
fn check_vfs_glusterfs(cluster: &Cluster) -> anyhow::Result<()> {
    let out = cluster.node(0).run("smbd", &["-b"])?;
    let modules = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("MODULESDIR:"))
        .map(str::trim)
        .with_context(|| format!("smbd -b names no MODULESDIR:\n{out}"))?;
    let module = std::path::Path::new(modules).join("vfs/glusterfs.so");
    ensure!(
        module.is_file(),
        "{} is missing: smbd's vfs_glusterfs comes with Debian's samba-vfs-modules \
         (apt-get install samba-vfs-modules libgfapi0, or source tests/install-deps.sh test)",
        module.display()
    );
    Ok(())
}

/// Given clustered Samba on GlusterFS with a second share that smbd reaches
/// through `vfs_glusterfs` (libgfapi, each node's own glusterd as volfile server)
/// instead of the FUSE mount, when a file is written through a follower's address
/// into that share, then it is read through another node's FUSE-backed share and
/// from another node's FUSE mount; and when the writer's node loses power, a new
/// SMB session through the writer's address, now a survivor's, reads it through
/// `vfs_glusterfs` again.
#[test]
fn smbd_through_vfs_glusterfs_serves_the_volume_and_survives_a_failover() -> anyhow::Result<()> {
    let (mut cluster, _) = samba_on_gluster_with(|cluster| {
        check_vfs_glusterfs(cluster)?;
        let volume = cluster.volume().context("built on a volume")?;
        cluster.write_smb_conf(&format!("{}{VFS_GLUSTERFS_SHARE}", smb_conf_for(volume)))?;
        for pnn in ALL {
            let node = cluster.node(pnn);
            // 50.samba's monitor checks each share's path as a local directory,
            // which a vfs_glusterfs share's is not: as an administrator of such
            // a share would, switch the check off (CTDB 4.17's script alike).
            let options = node.etc_dir().join("script.options");
            let mut text = std::fs::read_to_string(&options)
                .with_context(|| format!("reading {}", options.display()))?;
            text.push_str("CTDB_SAMBA_SKIP_SHARE_CHECK=yes\n");
            node.write_config("script.options", &text)?;
            let include = node.path("/etc/samba/volfile_server.conf");
            std::fs::write(
                &include,
                format!("\tglusterfs:volfile_server = {}\n", node.private_addr()),
            )
            .with_context(|| format!("writing {}", include.display()))?;
        }
        Ok(())
    })?;
    // A follower writes: the point is the module, not the leader's failover.
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let writer = (leader + 1) % 3;
    let reader = (leader + 2) % 3;
    ensure!(
        !cluster.node(writer).path("/share").exists(),
        "node {writer} has a /share of its own, so the [gluster] share could be \
         served without vfs_glusterfs"
    );
    let writer_addr = vm::public::address_held_by(&cluster, writer, CONVERGE_TIMEOUT)?;
    let reader_addr = vm::public::address_held_by(&cluster, reader, CONVERGE_TIMEOUT)?;

    let text = "written-through-vfs_glusterfs";
    let mut smb = SmbClient::start(&cluster)?;
    smb.connect_share("w", writer_addr, "gluster")?;
    smb.write_file(
        "w",
        "gfapi.txt",
        text,
        "through the writer's vfs_glusterfs share",
    )?;
    drop(smb);
    let gfapi_log = cluster
        .node(writer)
        .path("/var/log/samba/vfs_glusterfs.log");
    ensure!(
        gfapi_log.is_file(),
        "node {writer}'s smbd should have started libgfapi, which logs to {}",
        gfapi_log.display()
    );

    let mut smb = SmbClient::start(&cluster)?;
    smb.connect("r", reader_addr)?;
    smb.expect_file(
        "r",
        "gfapi.txt",
        text,
        &format!("node {reader}'s FUSE-backed share serves what vfs_glusterfs wrote"),
    )?;
    drop(smb);
    let fuse = cluster
        .node(reader)
        .run("cat", &["/srv/shared/share/gfapi.txt"])?;
    ensure!(
        fuse.success() && fuse.stdout == text,
        "node {reader}'s FUSE mount should hold what vfs_glusterfs wrote:\n{fuse}"
    );

    power_off_machine(&mut cluster, writer)?;
    let survivors: Vec<u32> = ALL.into_iter().filter(|p| *p != writer).collect();
    cluster.wait_agreement(&survivors, &survivors, CONVERGE_TIMEOUT)?;
    wait_placed(&cluster, &survivors, &addrs(), &survivors, CONVERGE_TIMEOUT)?;
    let mut smb = SmbClient::start(&cluster)?;
    smb.connect_share("after", writer_addr, "gluster")?;
    smb.expect_file(
        "after",
        "gfapi.txt",
        text,
        "through the writer's address, now a survivor's vfs_glusterfs share, the bytes written before the fault",
    )?;
    Ok(())
}
