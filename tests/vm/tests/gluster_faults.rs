//! Faults of the GlusterFS volume itself (issue #11, item 4), on a replica-3
//! volume across the three nodes ([`vm::gluster`], recommended options):
//!
//! ```text
//!   node n: ctdbd ── 00.ctdb monitor: /srv/shared answers (bounded) and is a mount point
//!                 ── 01.reclock monitor: the lock's directory answers (bounded)
//!                 ── ctdb-rs-reclock-helper (leader): lock file checked with a deadline
//!   /srv/shared = FUSE client (glusterfs) of node n ──> bricks on nodes 0, 1, 2
//! ```
//!
//! - one brick's node powered off: the volume stays writable from the other two,
//!   which serve every address;
//! - the volume hung on a node (its FUSE client SIGSTOPped): the node goes
//!   UNHEALTHY and drops its addresses, the others serve every address; SIGCONT:
//!   the node is OK again and hosts addresses;
//! - the same on the leader: its lock helper fences the hung client at its
//!   deadline, so that the bricks free the lock and another node leads, while the
//!   followers keep their addresses; after a remount the node returns;
//! - the volume unmounted on a node (`umount -l` in its mount namespace): the same,
//!   and back after a remount; on the leader, another node leads.
//!
//! A duplicate-address watcher runs throughout; no address may ever be on two live
//! nodes. The daemon is chosen by `CTDB_RS_DAEMON`:
//!
//! ```text
//! sudo cargo test -p vm --test gluster_faults
//! sudo CTDB_RS_DAEMON=stock cargo test -p vm --test gluster_faults
//! ```

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vm::gluster::{fuse_client_pid, GlusterOptions, Volume};
use vm::public::{address_held_by, default_public, power_off_machine, wait_placed};
use vm::wait::wait_until;
use vm::watch::Watcher;
use vm::{Cluster, Daemon};

const ALL: [u32; 3] = [0, 1, 2];
/// Cold start until every node is RUNNING, volume built before.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Health changes, failover and return: the monitor's bounded probes (3 s) and the
/// volume's own delays included, generously.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
/// A hung volume on the leader until another node leads: the lock helper's check
/// deadline on GlusterFS (120 s, longer than the volume's own stalls at its
/// defaults), then the fence, an election and a run.
const FENCE_TIMEOUT: Duration = Duration::from_secs(180);

/// What every node's scripts check: the volume must answer within 3 s and be a
/// mount point, and so must the lock's directory.
const SCRIPT_OPTIONS: &str = "CTDB_SHARED_VOLUME=/srv/shared\n\
                              CTDB_SHARED_VOLUME_MOUNTPOINT=yes\n\
                              CTDB_SHARED_VOLUME_TIMEOUT=3\n\
                              CTDB_RECLOCK_CHECK_TIMEOUT=3\n";

fn addrs() -> Vec<Ipv4Addr> {
    (0..3).map(default_public).collect()
}

/// Three nodes on a GlusterFS volume running `00.ctdb`, `01.reclock` and
/// `10.interface` with [`SCRIPT_OPTIONS`], under the daemon of `CTDB_RS_DAEMON`,
/// every node OK and every address placed; a watcher expecting every address.
fn cluster_on_gluster() -> anyhow::Result<(Cluster, Watcher)> {
    let daemon = Daemon::from_env()?;
    let mut cluster = Cluster::builder()
        .nodes(3)
        .volume(Volume::Gluster(GlusterOptions::Recommended))
        .tunables("MonitorInterval=1\n")
        .build()?;
    for pnn in ALL {
        let node = cluster.node(pnn);
        node.install_event_scripts(&["00.ctdb", "01.reclock", "10.interface"])?;
        node.write_config("script.options", SCRIPT_OPTIONS)?;
        if daemon == Daemon::Stock {
            // Stock CTDB leaves the addresses to its 10.interface; ours never adds one.
            let path = node
                .etc_dir()
                .join("events/legacy/11.stock-addresses.script");
            std::fs::write(&path, vm::nas::STOCK_ADDRESS_SCRIPT)?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
    }
    cluster
        .start(daemon, START_TIMEOUT)
        .with_context(|| format!("starting the {daemon:?} daemons on the GlusterFS volume"))?;
    cluster.wait_agreement(&ALL, &ALL, START_TIMEOUT)?;
    wait_placed(&cluster, &ALL, &addrs(), &ALL, CONVERGE_TIMEOUT)?;
    let watcher = Watcher::start(&cluster, addrs())?;
    Ok((cluster, watcher))
}

/// Writes `text` to `name` on the volume through node `pnn`'s mount, then reads
/// it back through node `reader`'s, retrying until both answer (a survivor's first
/// operations wait for its client to notice a dead brick).
fn write_and_read(cluster: &Cluster, pnn: u32, reader: u32, name: &str) -> anyhow::Result<()> {
    let path = format!("/srv/shared/{name}");
    let text = format!("written through node {pnn}");
    wait_until(CONVERGE_TIMEOUT, || {
        let write = cluster
            .node(pnn)
            .run("/bin/sh", &["-c", &format!("echo '{text}' > {path}")])
            .map_err(|e| format!("{e:#}"))?;
        if !write.success() {
            return Err(format!("write through node {pnn}: {write}"));
        }
        let read = cluster
            .node(reader)
            .run("cat", &[&path])
            .map_err(|e| format!("{e:#}"))?;
        if read.success() && read.stdout.trim() == text {
            Ok(())
        } else {
            Err(format!("read through node {reader}: {read}"))
        }
    })
    .map_err(|t| anyhow::anyhow!("{name} through nodes {pnn} and {reader}: {t}"))
}

/// Waits until every node of `observers` shows `pnn` UNHEALTHY (and nothing worse:
/// connected, not banned).
fn wait_unhealthy(cluster: &Cluster, observers: &[u32], pnn: u32) -> anyhow::Result<()> {
    cluster
        .wait_nodestatus(
            observers,
            CONVERGE_TIMEOUT,
            &format!("node {pnn} UNHEALTHY"),
            |rows| {
                rows.iter()
                    .any(|r| r.pnn == pnn && r.unhealthy && !r.disconnected && !r.banned)
            },
        )
        .map(drop)
}

/// Fails if the watcher saw an address on two live nodes at once.
fn check_watch(watcher: Watcher) -> anyhow::Result<()> {
    let report = watcher.stop();
    report
        .check_no_duplicates()
        .map_err(|e| anyhow::anyhow!("{e}\n{report}"))
}

/// Given the cluster on GlusterFS with every address placed, when a node that
/// does not lead loses power (links cut, daemon and every gluster process of it
/// killed: one of the three bricks gone), then the other two nodes can still write
/// the volume and read each other's writes, they agree under the same leader, and
/// they serve every address between them.
#[test]
fn a_brick_node_powered_off_leaves_the_volume_writable_and_the_others_serve_every_address(
) -> anyhow::Result<()> {
    let (mut cluster, watcher) = cluster_on_gluster()?;
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let off = ALL.into_iter().find(|p| *p != leader).expect("three nodes");
    let survivors: Vec<u32> = ALL.into_iter().filter(|p| *p != off).collect();

    watcher.note(format!("powering off node {off}"));
    power_off_machine(&mut cluster, off)?;
    watcher.set_live(off, false);

    write_and_read(&cluster, survivors[0], survivors[1], "after-power-off-a")?;
    write_and_read(&cluster, survivors[1], survivors[0], "after-power-off-b")?;
    let after = cluster.wait_agreement(&survivors, &survivors, CONVERGE_TIMEOUT)?;
    ensure!(
        after.leader == leader,
        "node {leader} should still lead after a follower's power loss, not node {}",
        after.leader
    );
    wait_placed(&cluster, &survivors, &addrs(), &survivors, CONVERGE_TIMEOUT)?;
    check_watch(watcher)
}

/// Keeps a process SIGSTOPped; SIGCONT when dropped (also when the test fails).
struct Stopped {
    pid: i32,
}

impl Stopped {
    fn stop(pid: i32) -> anyhow::Result<Self> {
        kill(Pid::from_raw(pid), Signal::SIGSTOP).with_context(|| format!("SIGSTOP {pid}"))?;
        Ok(Self { pid })
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        match kill(Pid::from_raw(self.pid), Signal::SIGCONT) {
            // Killed meanwhile (the fence): nothing to resume.
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => eprintln!("cleanup: SIGCONT {}: {e}", self.pid),
        }
    }
}

/// Whether `pid` has ended: no such process, or a zombie.
fn has_ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// After a volume fault on `faulty`: it goes UNHEALTHY in the others' eyes, the
/// others agree on a leader among themselves (another node if `faulty` led) and
/// serve every address.
fn others_carry_on(cluster: &Cluster, faulty: u32, leader: u32) -> anyhow::Result<()> {
    let others: Vec<u32> = ALL.into_iter().filter(|p| *p != faulty).collect();
    wait_unhealthy(cluster, &others, faulty)?;
    // A hung leader leads until its lock helper's deadline on GlusterFS (120 s).
    let new_leader_timeout = if leader == faulty {
        FENCE_TIMEOUT
    } else {
        CONVERGE_TIMEOUT
    };
    cluster.wait_leader(
        &others,
        new_leader_timeout,
        "a leader other than the node with the faulty volume",
        |l| l.is_some_and(|l| l != faulty),
    )?;
    if leader != faulty {
        cluster.wait_leader(&others, CONVERGE_TIMEOUT, "the same leader", |l| {
            l == Some(leader)
        })?;
    }
    wait_placed(cluster, &others, &addrs(), &others, CONVERGE_TIMEOUT)?;
    Ok(())
}

/// After the volume is back on `faulty`: every node OK under one leader, and
/// `faulty` hosts an address again.
fn node_returns(cluster: &Cluster, faulty: u32) -> anyhow::Result<()> {
    cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    wait_placed(cluster, &ALL, &addrs(), &ALL, CONVERGE_TIMEOUT)?;
    address_held_by(cluster, faulty, CONVERGE_TIMEOUT)?;
    Ok(())
}

/// Given the cluster on GlusterFS, when the FUSE client of a node that does not
/// lead is SIGSTOPped (every file operation on the volume in that node blocks, as
/// on a hung volume), then the node's monitor fails its bounded probe, so it goes
/// UNHEALTHY and drops its addresses, the leader stays and the other two serve
/// every address; when the client gets SIGCONT, the node is OK again and hosts an
/// address.
#[test]
fn the_volume_hung_on_a_node_makes_it_unhealthy_until_it_answers_again() -> anyhow::Result<()> {
    let (cluster, watcher) = cluster_on_gluster()?;
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let target = ALL.into_iter().find(|p| *p != leader).expect("three nodes");
    let client = fuse_client_pid(cluster.node(target))?;

    watcher.note(format!("SIGSTOP of node {target}'s FUSE client {client}"));
    let stopped = Stopped::stop(client)?;
    others_carry_on(&cluster, target, leader)?;

    watcher.note(format!("SIGCONT of node {target}'s FUSE client {client}"));
    drop(stopped);
    node_returns(&cluster, target)?;
    check_watch(watcher)
}

/// Given the cluster on GlusterFS, when the leader's FUSE client is SIGSTOPped,
/// then the leader goes UNHEALTHY and its addresses move to the others; its lock
/// helper's check of the lock file overruns its deadline, and since the stopped
/// client, whose TCP connections stay up, keeps the lock on the bricks for as long
/// as it lives, the helper kills it (the fence, `lockvol::fence`); another node
/// takes the lock and leads, and the addresses the followers held stay served
/// throughout. Once the volume is mounted again on the old leader, it is OK and
/// hosts an address.
///
/// Stock CTDB has no fence: its helper gives the lock up, but no node can take it
/// until the client resumes, so this test is ours only.
#[test]
fn the_volume_hung_on_the_leader_is_fenced_so_that_another_node_leads() -> anyhow::Result<()> {
    let (cluster, watcher) = cluster_on_gluster()?;
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let held_by_followers: Vec<Ipv4Addr> = watcher
        .snapshot()
        .into_iter()
        .filter(|(_, on)| on.len() == 1 && !on.contains(&leader))
        .map(|(addr, _)| addr)
        .collect();
    ensure!(
        !held_by_followers.is_empty(),
        "the followers should hold addresses before the fault: {:?}",
        watcher.snapshot()
    );
    let client = fuse_client_pid(cluster.node(leader))?;

    watcher.note(format!(
        "SIGSTOP of the leader's (node {leader}) FUSE client {client}"
    ));
    let stopped = Stopped::stop(client)?;
    others_carry_on(&cluster, leader, leader)?;
    wait_until(CONVERGE_TIMEOUT, || {
        if has_ended(client) {
            Ok(())
        } else {
            Err(format!("the hung FUSE client {client} still lives"))
        }
    })
    .map_err(|t| anyhow::anyhow!("the old leader's lock helper should fence its client: {t}"))?;
    drop(stopped);

    // From here the old leader comes back, and the run that gives it an address
    // may move one of the followers' (planned, not a drop).
    let remounted_at = watcher.note(format!("mounting the volume again on node {leader}"));
    let node = cluster.node(leader);
    // The fenced client's mount is still there, answering ENOTCONN: off with it.
    vm::gluster::unmount(node)?;
    let all: Vec<Ipv4Addr> = ALL
        .iter()
        .map(|p| cluster.node(*p).private_addr())
        .collect();
    vm::gluster::remount(node, &all)?;
    node_returns(&cluster, leader)?;

    let report = watcher.stop();
    report
        .check_no_duplicates()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let dropped: Vec<_> = report
        .absences
        .iter()
        .filter(|a| held_by_followers.contains(&a.addr) && a.from < remounted_at)
        .collect();
    ensure!(
        dropped.is_empty(),
        "the followers' addresses {held_by_followers:?} should stay served while the \
         leader's volume hangs: {dropped:?}\n{report}"
    );
    Ok(())
}

/// Given the cluster on GlusterFS, when the volume is lazily unmounted on a node
/// that does not lead (its `/srv/shared` is then the empty mount-point directory),
/// then that node goes UNHEALTHY and drops its addresses, the leader stays and the
/// other two serve every address; once the volume is mounted again, the node is OK
/// again and hosts an address.
#[test]
fn the_volume_unmounted_on_a_node_makes_it_unhealthy_until_it_is_mounted_again(
) -> anyhow::Result<()> {
    unmounted(|leader| ALL.into_iter().find(|p| *p != leader).expect("three nodes"))
}

/// The same on the leader: its lock helper sees the lock file gone and gives the
/// lock up, and another node leads. (Should the old leader try the lock again
/// while unmounted, its helper refuses: the lock file is no longer on the mount it
/// was on when the daemon started, `--mount`; `lockvol`'s tests show the refusal.)
#[test]
fn the_volume_unmounted_on_the_leader_hands_the_lead_to_another_node() -> anyhow::Result<()> {
    unmounted(|leader| leader)
}

/// Unmounts the volume on the node `pick(leader)`, checks that the others carry
/// on, mounts it again and checks that the node returns.
fn unmounted(pick: impl Fn(u32) -> u32) -> anyhow::Result<()> {
    let (cluster, watcher) = cluster_on_gluster()?;
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let target = pick(leader);
    let node = cluster.node(target);

    watcher.note(format!("umount -l of the volume on node {target}"));
    vm::gluster::unmount(node)?;
    others_carry_on(&cluster, target, leader)?;

    watcher.note(format!("mounting the volume again on node {target}"));
    let all: Vec<Ipv4Addr> = ALL
        .iter()
        .map(|p| cluster.node(*p).private_addr())
        .collect();
    vm::gluster::remount(node, &all)?;
    node_returns(&cluster, target)?;
    check_watch(watcher)
}
