//! Cluster scenarios: real daemons in three (or four) node sandboxes sharing a
//! directory that stands in for the cluster volume, faults injected from outside
//! (kill -9, power off, link cut, partition, lock file removal), and what every
//! node's `ctdb status` says afterwards.
//!
//! Topology (every scenario; `reloadnodes` adds node 3 on the same bridges):
//!
//! ```text
//!          fabric netns: bridge priv (192.168.20.0/24)   bridge pub
//!             |               |               |             (unused:
//!   node 0 .41 priv0    node 1 .42 priv0   node 2 .43 priv0  IPs come later)
//!   ctdbd               ctdbd              ctdbd
//!      \                    |                  /
//!       +---- /srv/shared (one host temp dir) -+
//!             nodes, public_addresses, .ctdb.reclock (the recovery lock)
//! ```
//!
//! The rules under test are ctdbd's (`ctdbd/src/core/mod.rs`, "Cluster rules"): a
//! peer is lost on a closed connection at once, or after `KeepaliveLimit` (5) x
//! `KeepaliveIntervalMs` (200 ms) of silence; the node holding the recovery lock
//! leads; there is no quorum, but a leader cut off from the majority gives the lock
//! up so that the majority leads. Public addresses are not hosted yet and play no part here.
//!
//! The daemon is ours by default (`CTDB_RS_DAEMON=stock` selects the stock one;
//! the log checks are ours). Waits poll `ctdb` on the nodes until a condition or a
//! deadline; "X does not happen" is checked by polling over an observation window.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use vm::cluster::DEFAULT_CTDB_CONF;
use vm::process::Background;
use vm::{wait_until, Agreement, Cluster, Daemon, Tool};

/// Cold start to RUNNING.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Elections and recoveries after a fault (a few seconds expected; loaded machine).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// `KeepaliveLimit` x `KeepaliveIntervalMs` at their defaults.
const KEEPALIVE_WINDOW: Duration = Duration::from_millis(1000);
/// What a silent peer's detection may take beyond the keepalive window: one more
/// keepalive period plus the time to run the polling `ctdb` commands.
const DETECTION_SLACK: Duration = Duration::from_millis(2500);
/// How long "nothing happens" is watched: many election retries (500 ms each).
const OBSERVATION_WINDOW: Duration = Duration::from_secs(6);

const ALL: [u32; 3] = [0, 1, 2];

/// The stress scenario needs the CPUs to itself; every other scenario holds this
/// shared, the stress scenario exclusively.
static CPUS: RwLock<()> = RwLock::new(());

fn shared_cpus() -> RwLockReadGuard<'static, ()> {
    CPUS.read().unwrap_or_else(PoisonError::into_inner)
}

fn exclusive_cpus() -> RwLockWriteGuard<'static, ()> {
    CPUS.write().unwrap_or_else(PoisonError::into_inner)
}

fn three_nodes() -> anyhow::Result<Cluster> {
    Cluster::builder().nodes(3).shared_volume(true).build()
}

/// Three nodes started and agreed: all OK everywhere, one leader, one generation.
fn started_three() -> anyhow::Result<(Cluster, Agreement)> {
    let mut cluster = three_nodes()?;
    cluster.start(Daemon::from_env()?, START_TIMEOUT)?;
    let agreed = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    Ok((cluster, agreed))
}

fn others(but: u32) -> Vec<u32> {
    ALL.iter().copied().filter(|&p| p != but).collect()
}

fn shows_disconnected(flags: Option<&str>) -> bool {
    flags.is_some_and(|f| f.split('|').any(|f| f == "DISCONNECTED"))
}

/// Polls `probe` on every node of `on` for [`OBSERVATION_WINDOW`]; fails at the
/// first node where it does not hold, with what that node said.
fn holds_throughout(
    cluster: &Cluster,
    on: &[u32],
    what: &str,
    probe: impl Fn(&Cluster, u32) -> Result<(), String>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < OBSERVATION_WINDOW {
        for &pnn in on {
            if let Err(seen) = probe(cluster, pnn) {
                anyhow::bail!(
                    "after {:.1?}, on node {pnn}, it no longer holds that {what}:\n{seen}\n{}",
                    start.elapsed(),
                    cluster.logs()
                );
            }
        }
    }
    Ok(())
}

/// Scenario: cold start.
///
/// Given three sandboxes sharing the volume (nodes file, recovery lock),
/// When all three daemons start,
/// Then every node's `ctdb status` shows all three OK, recovery mode NORMAL, the
///   same leader and the same generation; `ctdb leader` names that leader on
///   every node; and every node shows the vnn map the leader's recovery pushed,
///   `Size:3` with lmasters 0, 1, 2 (as CTDB shows it for three active nodes).
#[test]
fn cold_start_three_nodes_agree() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let (cluster, agreed) = started_three()?;
    cluster.wait_leader(&ALL, CONVERGE_TIMEOUT, "the agreed leader", |l| {
        l == Some(agreed.leader)
    })?;
    cluster.wait_status(
        &ALL,
        CONVERGE_TIMEOUT,
        "the vnn map of all three active nodes",
        |s| s.vnn_map == ALL,
    )?;
    Ok(())
}

/// Scenario: a follower crashes.
///
/// Given three agreed nodes, leader L,
/// When a follower's daemon is killed with SIGKILL,
/// Then the two others show it DISCONNECTED and still agree on leader L.
#[test]
fn killed_follower_is_disconnected_and_leader_stays() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let (mut cluster, agreed) = started_three()?;
    let follower = (agreed.leader + 1) % 3;
    let survivors = others(follower);
    cluster.kill_daemon(follower)?;
    cluster.wait_status(
        &survivors,
        CONVERGE_TIMEOUT,
        "the killed follower DISCONNECTED",
        |s| shows_disconnected(s.flags(follower)),
    )?;
    let after = cluster.wait_agreement(&survivors, &survivors, CONVERGE_TIMEOUT)?;
    assert_eq!(
        after.leader, agreed.leader,
        "the leader changed when a follower died: {after:#?}"
    );
    Ok(())
}

/// Scenario: the leader crashes.
///
/// Given three agreed nodes, leader L,
/// When L's daemon is killed with SIGKILL (its lock helper dies with it),
/// Then the two survivors show L DISCONNECTED and agree on a new leader among
///   themselves, with a new generation.
#[test]
fn killed_leader_is_replaced() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let (mut cluster, agreed) = started_three()?;
    let old = agreed.leader;
    let survivors = others(old);
    cluster.kill_daemon(old)?;
    let after = cluster.wait_agreement(&survivors, &survivors, CONVERGE_TIMEOUT)?;
    for (pnn, status) in &after.statuses {
        assert!(
            shows_disconnected(status.flags(old)),
            "node {pnn} does not show the killed leader {old} DISCONNECTED: {status:#?}"
        );
    }
    assert_ne!(after.generation, agreed.generation, "no recovery ran");
    Ok(())
}

/// Scenario: a follower loses power.
///
/// Given three agreed nodes, leader L,
/// When a follower's links are cut and its daemon killed (nothing is closed on
///   the wire),
/// Then the others show it DISCONNECTED within the keepalive window (plus one
///   keepalive period and polling time), and L still leads.
#[test]
fn powered_off_follower_is_disconnected_within_the_keepalive_window() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let (mut cluster, agreed) = started_three()?;
    let follower = (agreed.leader + 2) % 3;
    let survivors = others(follower);
    let cut = Instant::now();
    cluster.power_off(follower)?;
    cluster.wait_nodestatus(
        &survivors,
        CONVERGE_TIMEOUT,
        "the powered-off follower DISCONNECTED",
        |rows| rows.iter().any(|r| r.pnn == follower && r.disconnected),
    )?;
    let took = cut.elapsed();
    assert!(
        took <= KEEPALIVE_WINDOW + DETECTION_SLACK,
        "detecting the powered-off node {follower} took {took:.1?}, more than the keepalive \
         window {KEEPALIVE_WINDOW:?} + {DETECTION_SLACK:?}\n{}",
        cluster.logs()
    );
    let after = cluster.wait_agreement(&survivors, &survivors, CONVERGE_TIMEOUT)?;
    assert_eq!(
        after.leader, agreed.leader,
        "the leader changed: {after:#?}"
    );
    Ok(())
}

/// Scenario: the leader loses power.
///
/// Given three agreed nodes, leader L,
/// When L's links are cut and its daemon killed,
/// Then once the survivors' keepalives run out they agree on a new leader.
#[test]
fn powered_off_leader_is_replaced() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let (mut cluster, agreed) = started_three()?;
    let old = agreed.leader;
    let survivors = others(old);
    cluster.power_off(old)?;
    let after = cluster.wait_agreement(&survivors, &survivors, CONVERGE_TIMEOUT)?;
    assert_ne!(after.leader, old);
    Ok(())
}

/// Scenario: a partition isolates the leader, then heals.
///
/// Given three agreed nodes, leader L (holding the recovery lock),
/// When the private network splits into {L} | {the two others},
/// Then L, connected to no majority, gives up the lock and stops leading; the two
///   others show L DISCONNECTED and elect one of them, which takes the lock; over
///   an observation window L never leads again (its attempts, after a minority's
///   wait, find the lock held);
/// When the partition heals,
/// Then all three are OK everywhere under one leader.
#[test]
fn partition_isolating_the_leader_hands_the_lock_to_the_majority() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let (mut cluster, agreed) = started_three()?;
    let leader = agreed.leader;
    let rest = others(leader);
    cluster.partition(&[&[leader], &rest])?;

    cluster.wait_status(
        &rest,
        CONVERGE_TIMEOUT,
        "the isolated leader DISCONNECTED and one of the majority leading",
        |s| shows_disconnected(s.flags(leader)) && s.leader.is_some_and(|l| l != leader),
    )?;
    cluster.wait_status(
        &[leader],
        CONVERGE_TIMEOUT,
        "the others DISCONNECTED, not leading",
        |s| rest.iter().all(|&p| shows_disconnected(s.flags(p))) && s.leader != Some(leader),
    )?;
    let new_leader = cluster.leader(rest[0]).map_err(|e| anyhow::anyhow!(e))?;
    eprintln!("partition: the majority is led by {new_leader:?}");
    holds_throughout(
        &cluster,
        &ALL,
        "the majority's leader leads and the isolated node does not",
        |c, pnn| {
            let got = c.leader(pnn)?;
            let ok = if pnn == leader {
                got != Some(leader)
            } else {
                got == new_leader
            };
            if ok {
                Ok(())
            } else {
                Err(format!("`ctdb leader` says {got:?}"))
            }
        },
    )?;

    cluster.heal()?;
    cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    Ok(())
}

/// Scenario: a partition isolates a follower.
///
/// Given three agreed nodes, leader L,
/// When the private network splits into {F} | {L, the third node},
/// Then L and the third node show F DISCONNECTED and still agree on L; F shows
///   both others DISCONNECTED and does not lead (the lock is L's);
/// When the partition heals, all three agree again, under L.
#[test]
fn partition_isolating_a_follower_keeps_the_leader() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let (mut cluster, agreed) = started_three()?;
    let leader = agreed.leader;
    let follower = (leader + 1) % 3;
    let majority = others(follower);
    cluster.partition(&[&[follower], &majority])?;

    cluster.wait_status(
        &majority,
        CONVERGE_TIMEOUT,
        "the isolated follower DISCONNECTED",
        |s| shows_disconnected(s.flags(follower)),
    )?;
    let after = cluster.wait_agreement(&majority, &majority, CONVERGE_TIMEOUT)?;
    assert_eq!(after.leader, leader, "the leader changed: {after:#?}");
    cluster.wait_status(
        &[follower],
        CONVERGE_TIMEOUT,
        "both others DISCONNECTED and no leader",
        |s| majority.iter().all(|&p| shows_disconnected(s.flags(p))) && s.leader.is_none(),
    )?;

    cluster.heal()?;
    let healed = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    assert_eq!(healed.leader, leader, "the leader changed: {healed:#?}");
    Ok(())
}

/// Scenario: the recovery lock file is removed.
///
/// Given three agreed nodes, leader L holding `/srv/shared/.ctdb.reclock`,
/// When the lock file is removed from the shared volume,
/// Then L logs that it lost the lock and steps down; within seconds a leader
///   (possibly L again) holds a new lock file (a new inode) and all agree on it.
#[test]
fn removed_lock_file_makes_the_leader_step_down_and_a_new_lock_is_taken() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let (cluster, agreed) = started_three()?;
    let lock = cluster.shared_path(".ctdb.reclock")?;
    // The inode number alone may be reused at once by the new file.
    let identity = |m: &std::fs::Metadata| (m.ino(), m.ctime(), m.ctime_nsec());
    let before = identity(&std::fs::metadata(&lock)?);
    cluster.remove_lock_file()?;

    cluster.wait_log(agreed.leader, CONVERGE_TIMEOUT, "lost the recovery lock")?;
    wait_until(CONVERGE_TIMEOUT, || match std::fs::metadata(&lock) {
        Ok(m) if identity(&m) != before => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .map_err(|t| {
        anyhow::anyhow!(
            "no new lock file {}: {t}\n{}",
            lock.display(),
            cluster.logs()
        )
    })?;
    let after = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    let leader_log = cluster.node(after.leader).daemon_log();
    assert!(
        leader_log.matches("this node is now the leader").count() >= 1,
        "node {} is agreed leader but never logged taking the lead:\n{leader_log}",
        after.leader
    );
    Ok(())
}

/// Scenario: a crashed node restarts.
///
/// Given three agreed nodes,
/// When a follower's daemon is killed, seen DISCONNECTED, and started again,
/// Then it rejoins: all three OK on every node, one leader, one generation.
#[test]
fn restarted_node_rejoins() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let (mut cluster, agreed) = started_three()?;
    let follower = (agreed.leader + 1) % 3;
    cluster.kill_daemon(follower)?;
    cluster.wait_status(
        &others(follower),
        CONVERGE_TIMEOUT,
        "the killed node DISCONNECTED",
        |s| shows_disconnected(s.flags(follower)),
    )?;
    cluster.restart_daemon(follower)?;
    cluster
        .node_mut(follower)
        .wait_runstate("RUNNING", START_TIMEOUT)?;
    cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    Ok(())
}

/// Scenario: admin states set and cleared with the stock 4.17 tool.
///
/// Given three agreed nodes,
/// When node 0 runs the stock `ctdb -n 1 disable`, then `ctdb -n 1 enable`;
///   `ctdb -n 2 stop`, then `ctdb -n 2 continue`; `ctdb -n 1 ban 30`, then
///   `ctdb -n 1 unban`,
/// Then after each first command every node's `ctdb status` shows the target as
///   CTDB does (`DISABLED`, `STOPPED|INACTIVE`, `BANNED|INACTIVE`), and after each
///   second command all three are OK again under one leader.
#[test]
fn admin_states_with_the_stock_tool() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let (cluster, _) = started_three()?;
    let steps: [(&[&str], u32, &str, &[&str]); 3] = [
        (
            &["-n", "1", "disable"],
            1,
            "DISABLED",
            &["-n", "1", "enable"],
        ),
        (
            &["-n", "2", "stop"],
            2,
            "STOPPED|INACTIVE",
            &["-n", "2", "continue"],
        ),
        (
            &["-n", "1", "ban", "30"],
            1,
            "BANNED|INACTIVE",
            &["-n", "1", "unban"],
        ),
    ];
    for (set, target, shown, clear) in steps {
        cluster
            .ctdb_ok(0, Tool::Stock, set)
            .map_err(|e| anyhow::anyhow!("stock `ctdb {}` failed:\n{e}", set.join(" ")))?;
        cluster.wait_status(
            &ALL,
            CONVERGE_TIMEOUT,
            &format!(
                "node {target} shown as {shown} after `ctdb {}`",
                set.join(" ")
            ),
            |s| {
                s.flags(target) == Some(shown)
                    && others(target).iter().all(|&p| s.flags(p) == Some("OK"))
            },
        )?;
        cluster
            .ctdb_ok(0, Tool::Stock, clear)
            .map_err(|e| anyhow::anyhow!("stock `ctdb {}` failed:\n{e}", clear.join(" ")))?;
        cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    }
    Ok(())
}

/// Scenario: controls routed to other nodes.
///
/// Given three agreed nodes,
/// When node 0 runs our `ctdb ping -n all`, the stock `ctdb -n 2 ping` and the
///   stock `ctdb status`,
/// Then our ping prints one `response from N` line per node, in order; the stock
///   one answers `response from 2`; and the stock status shows all three OK.
///
/// (Not `ctdb -n 2 pnn`: the stock 4.17 tool refuses it before contacting any
/// daemon, "Node cannot be specified for command pnn".)
#[test]
fn controls_reach_every_node() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let (cluster, _) = started_three()?;
    let ping = cluster
        .ctdb_ok(0, Tool::Ours, &["ping", "-n", "all"])
        .map_err(anyhow::Error::msg)?;
    let from: Vec<&str> = ping
        .stdout
        .lines()
        .map(|l| l.split(" time=").next().unwrap_or(l))
        .collect();
    assert_eq!(
        from,
        ["response from 0", "response from 1", "response from 2"],
        "{ping}"
    );
    let routed = cluster
        .ctdb_ok(0, Tool::Stock, &["-n", "2", "ping"])
        .map_err(anyhow::Error::msg)?;
    assert!(
        routed.stdout.starts_with("response from 2 time=") && routed.stdout.lines().count() == 1,
        "{routed}"
    );
    let status = cluster
        .ctdb_ok(0, Tool::Stock, &["status"])
        .map_err(anyhow::Error::msg)?;
    let parsed = vm::observe::parse_status(&status.stdout).map_err(anyhow::Error::msg)?;
    assert!(parsed.all_ok(&ALL), "{status}");
    Ok(())
}

/// Scenario: a deleted node is brought back with `reloadnodes`.
///
/// Given a shared nodes file of four lines whose fourth is `#192.168.20.44`
///   (deleted), nodes 0-2 running and agreed, node 3's sandbox present but idle,
/// When the fourth line is uncommented in the shared file, node 3's daemon starts
///   and node 0 runs the stock `ctdb reloadnodes`,
/// Then all four nodes are connected and OK on every node, under one leader.
#[test]
fn reloadnodes_adds_a_fourth_node() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let mut cluster = Cluster::builder()
        .nodes(4)
        .deleted([3])
        .shared_volume(true)
        .build()?;
    let daemon = Daemon::from_env()?;
    cluster.start_nodes(&ALL, daemon, START_TIMEOUT)?;
    cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;

    let nodes: String = (0..4)
        .map(|p| format!("{}\n", vm::cluster::private_addr(p)))
        .collect();
    cluster.write_shared("nodes", &nodes)?;
    // Alone (the others still have it deleted) node 3 cannot finish a first
    // recovery, so it stays in FIRST_RECOVERY: wait only until it answers.
    let node3 = cluster.node_mut(3);
    node3.start_daemon(daemon)?;
    node3.wait_ctdb(&["runstate"], START_TIMEOUT, |o| o.success())?;
    let reload = cluster
        .ctdb_ok(0, Tool::Stock, &["reloadnodes"])
        .map_err(|e| {
            anyhow::anyhow!("stock `ctdb reloadnodes` failed:\n{e}\n{}", cluster.logs())
        })?;
    eprintln!("{reload}");
    let four = [0, 1, 2, 3];
    cluster.wait_agreement(&four, &four, CONVERGE_TIMEOUT)?;
    Ok(())
}

/// Scenario: one node cannot reach the recovery lock.
///
/// Given three nodes where node 2's `ctdb.conf` says `cluster lock =
///   /nonexistent/dir/lock` (the others the shared lock),
/// When node 2 starts alone,
/// Then it logs an error naming `/nonexistent/dir/lock` and has no leader;
/// When nodes 0 and 1 start,
/// Then they agree on a leader among themselves, and node 2 follows it;
/// When that leader is killed,
/// Then the other good node leads, never node 2, and node 2 never logged taking
///   the lead.
#[test]
fn unreadable_lock_path_on_one_node_keeps_it_from_leading() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    const BAD: &str = "/nonexistent/dir/lock";
    let mut cluster = three_nodes()?;
    cluster.node(2).write_config(
        "ctdb.conf",
        &format!("{DEFAULT_CTDB_CONF}[cluster]\n\tcluster lock = {BAD}\n"),
    )?;
    let daemon = Daemon::from_env()?;
    // Without a leader it stays in FIRST_RECOVERY: no wait for RUNNING here.
    cluster.node_mut(2).start_daemon(daemon)?;
    let line = cluster.wait_log(2, CONVERGE_TIMEOUT, BAD)?;
    assert!(
        line.contains("ERROR") || line.to_lowercase().contains("error"),
        "the line naming {BAD} is not an error: {line}"
    );
    cluster.wait_leader(&[2], CONVERGE_TIMEOUT, "no leader", |l| l.is_none())?;

    cluster.start_nodes(&[0, 1], daemon, START_TIMEOUT)?;
    let good = [0, 1];
    let agreed = cluster.wait_agreement(&good, &good, CONVERGE_TIMEOUT)?;
    cluster.wait_leader(&[2], CONVERGE_TIMEOUT, "the good nodes' leader", |l| {
        l == Some(agreed.leader)
    })?;

    let survivor = 1 - agreed.leader;
    cluster.kill_daemon(agreed.leader)?;
    cluster.wait_leader(
        &[survivor, 2],
        CONVERGE_TIMEOUT,
        "the other good node",
        |l| l == Some(survivor),
    )?;
    let log = cluster.node(2).daemon_log();
    assert!(
        !log.contains("this node is now the leader"),
        "node 2 led without a usable lock:\n{log}"
    );
    Ok(())
}

/// Scenario: the nodes file differs on one node.
///
/// Given three nodes where node 2's `/etc/ctdb/nodes` is a private file with an
///   extra fourth line (`192.168.20.44`) instead of the link to the shared one,
/// When all three start,
/// Then nodes 0 and 1 log an error naming node 2's nodes file as different, and
///   node 2 logs one naming theirs.
#[test]
fn differing_nodes_file_is_reported() -> anyhow::Result<()> {
    let _cpus = shared_cpus();
    let mut cluster = three_nodes()?;
    let link = cluster.node(2).etc_dir().join("nodes");
    std::fs::remove_file(&link)?;
    let nodes: String = (0..4)
        .map(|p| format!("{}\n", vm::cluster::private_addr(p)))
        .collect();
    cluster.node(2).write_config("nodes", &nodes)?;
    cluster.start(Daemon::from_env()?, START_TIMEOUT)?;
    for pnn in [0, 1] {
        let line = cluster.wait_log(pnn, CONVERGE_TIMEOUT, "the nodes file on node 2 differs")?;
        assert!(line.contains("ERROR"), "not logged as an error: {line}");
    }
    let line = cluster.wait_log(2, CONVERGE_TIMEOUT, "differs from ours")?;
    assert!(line.contains("ERROR"), "not logged as an error: {line}");
    Ok(())
}

/// Scenario: both CPUs saturated.
///
/// Given three agreed nodes,
/// When two busy loops (`sh -c 'while :; do :; done'`) saturate both cores for
///   20 s, while every node's `ctdb -X nodestatus all` is polled every 200 ms,
/// Then no node is ever shown DISCONNECTED by any node, and no daemon logs a
///   peer's death.
#[test]
fn saturated_cpus_do_not_disconnect_nodes() -> anyhow::Result<()> {
    let _cpus = exclusive_cpus();
    let (cluster, _) = started_three()?;
    let mut loops = Vec::new();
    for i in 0..2 {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "while :; do :; done"]);
        loops.push(Background::spawn(&format!("busy loop {i}"), cmd)?);
    }
    let start = Instant::now();
    let mut history = Vec::new();
    let mut failure = None;
    let mut tick = start;
    while start.elapsed() < Duration::from_secs(20) && failure.is_none() {
        for pnn in ALL {
            let at = start.elapsed();
            let out = cluster
                .node(pnn)
                .ctdb(Tool::Ours, &["-X", "nodestatus", "all"])?;
            let line = format!("{at:>8.3?} node {pnn}:\n{}", out.stdout);
            match vm::observe::parse_nodestatus(&out.stdout) {
                Ok(rows) if rows.iter().any(|r| r.disconnected) => {
                    failure = Some(line.clone());
                }
                Ok(_) => {}
                Err(e) => failure = Some(format!("{line}unparsable: {e}\n{out}")),
            }
            history.push(line);
        }
        // A sampling period, not a wait for a condition.
        tick += Duration::from_millis(200);
        if let Some(rest) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
    for mut busy in loops {
        busy.stop(Duration::from_secs(5))?;
    }
    if let Some(first) = failure {
        let recent = history[history.len().saturating_sub(30)..].join("");
        panic!(
            "a node was shown DISCONNECTED under CPU load:\n{first}\n---- last samples ----\n{recent}\n{}",
            cluster.logs()
        );
    }
    // Sampling can miss a disconnect that healed between two samples; the daemons'
    // logs cannot.
    for pnn in ALL {
        let log = cluster.node(pnn).daemon_log();
        for needle in ["declaring it dead", "node disconnected"] {
            assert!(
                !log.contains(needle),
                "node {pnn} logged `{needle}` under CPU load:\n{log}"
            );
        }
    }
    eprintln!(
        "{} samples over {:.1?}, none DISCONNECTED",
        history.len(),
        start.elapsed()
    );
    Ok(())
}
