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
//! How long the volume keeps a dead holder's lock is measured, not asserted, by
//! `tests/vm/bench/gluster_lock.sh` (BENCHMARKS.md, "GlusterFS").

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use vm::cluster::RECLOCK_PATH;
use vm::gluster::{probe_lock, GlusterOptions, LockProbe, Volume};
use vm::public::{default_public, wait_placed};
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
    smb.expect(
        "open w before failover.txt access=rw share=rw oplock=none",
        "ok",
        "create the file through the leader",
    )?;
    smb.expect(&format!("write w 0 {text}"), "ok", "write it")?;
    smb.expect("close w", "ok", "close it")?;

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
    smb.expect(
        "open r after failover.txt access=r share=rw oplock=none",
        "ok",
        "open the file through the address the leader held, now a survivor's",
    )?;
    smb.expect(
        &format!("read r 0 {}", text.len()),
        &format!("ok data={text}"),
        "the survivor serves the bytes written before the fault",
    )?;
    smb.expect("close r", "ok", "close it")?;
    Ok(())
}
