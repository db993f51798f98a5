//! Public addresses, seen from a client: every address answers from exactly the node
//! `ctdb ip` names, moves on a node's loss, admin commands and partitions, comes
//! back on fail-back, and is never configured on two live nodes at once (DESIGN.md
//! "Safety: public IPs are held under leases").
//!
//! Topology (every scenario):
//!
//! ```text
//!            fabric netns: bridge priv (192.168.20.0/24)      bridge pub (10.0.20.0/24)
//!              |              |              |              |      |      |        |
//!   node 0 .41 priv0  node 1 .42 priv0  node 2 .43 priv0   pub0   pub0   pub0   client
//!   ctdbd, service    ctdbd, service    ctdbd, service     (n0)   (n1)   (n2)  .200 eth0
//!      \                    |                   /
//!       +---- /srv/shared: nodes, public_addresses, .ctdb.reclock ----+
//!   public_addresses: 10.0.20.101/24 pub0, 10.0.20.102/24 pub0, 10.0.20.103/24 pub0
//!   service: `ctdbrs-serve-name node<pnn> 4445` in each node, answers "node<pnn>"
//! ```
//!
//! Throughout every scenario the watcher ([`vm::watch`]) dumps every live node's
//! `pub0` every few milliseconds and records each moment an address is on two live
//! nodes (must never happen) and each stretch an expected address is on none (must
//! end within [`TAKEOVER_WINDOW`], except where a scenario says otherwise). Its
//! report is printed at the end of each scenario (`--nocapture` shows it).
//!
//! These are our daemon's expectations (the guardian and the leases are ours), so
//! the daemon is always ours; admin commands use the stock 4.17 tool. Waits poll a
//! condition up to a deadline; the tickle scenario's "nothing arrives for 3 s" is a
//! measurement window.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure};
use ctdbd::protocol::control::Connection;
use vm::cluster::CLIENT_ADDR;
use vm::process::Background;
use vm::public::register_connection;
use vm::public::{
    ask, ask_until_answered, default_public, open, power_off_machine, power_on_machine,
    start_services, wait_placed, SERVICE_PORT,
};
use vm::watch::{WatchReport, Watcher};
use vm::{wait_until, Cluster, Daemon, Tool};

/// Cold start to RUNNING.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Elections, recoveries and takeover runs after a fault or a command.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest an expected address may be on no live node (generous: a power loss of
/// the leader takes detection 1 s + the new leader's guard 0.7 s + the run).
const TAKEOVER_WINDOW: Duration = Duration::from_secs(5);
/// How long a partition's outcome is watched to stay as it is.
const PARTITION_WATCH: Duration = Duration::from_secs(6);
/// From `ctdb ip` naming a node to that node answering (gratuitous ARP sent with
/// the take; this is generous).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// One client attempt: connect and read the answer.
const ATTEMPT: Duration = Duration::from_millis(300);
/// The lease (`IPLeaseTimeMs` default).
const LEASE: Duration = Duration::from_millis(500);
/// How soon a tickled client must see its reset once the address is back.
const TICKLE_DEADLINE: Duration = Duration::from_secs(3);

const ALL: [u32; 3] = [0, 1, 2];

fn addrs() -> Vec<Ipv4Addr> {
    (0..3).map(default_public).collect()
}

/// A started cluster with a service per node and the watcher running.
/// Field order is drop order: the watcher, the services, then the cluster.
struct Scene {
    watcher: Option<Watcher>,
    _services: Vec<Background>,
    cluster: Cluster,
    leader: u32,
    placement: BTreeMap<Ipv4Addr, u32>,
}

impl Scene {
    /// Given three nodes with the default addresses, started, agreed, every address
    /// placed; the watcher runs from before the daemons start.
    fn start() -> anyhow::Result<Self> {
        Self::start_with_tunables("")
    }

    /// [`Scene::start`] with `ctdb.tunables` lines.
    fn start_with_tunables(tunables: &str) -> anyhow::Result<Self> {
        let mut cluster = Cluster::builder()
            .nodes(3)
            .shared_volume(true)
            .client(true)
            .tunables(tunables)
            .build()?;
        let services = start_services(&cluster)?;
        let watcher = Watcher::start(&cluster, [])?;
        watcher.note("daemons starting");
        cluster.start(Daemon::Ours, START_TIMEOUT)?;
        let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
        let placement = wait_placed(&cluster, &ALL, &addrs(), &ALL, CONVERGE_TIMEOUT)?;
        watcher.note(format!(
            "leader {leader}; every address placed: {placement:?}"
        ));
        watcher.expect(addrs());
        Ok(Self {
            watcher: Some(watcher),
            _services: services,
            cluster,
            leader,
            placement,
        })
    }

    fn watcher(&self) -> &Watcher {
        self.watcher
            .as_ref()
            .expect("the watcher runs until finish")
    }

    fn client(&self) -> &vm::sandbox::NetNs {
        self.cluster.client().expect("built with a client")
    }

    /// The address `pnn` hosts (each node hosts one of three).
    fn address_of(&self, pnn: u32) -> Ipv4Addr {
        *self
            .placement
            .iter()
            .find(|(_, p)| **p == pnn)
            .unwrap_or_else(|| panic!("node {pnn} hosts nothing: {:?}", self.placement))
            .0
    }

    /// Every address of `placement` answers from the node it names, the watcher sees
    /// it on that node alone, and `ctdb ip` agrees.
    fn check_answers(&self, placement: &BTreeMap<Ipv4Addr, u32>) -> anyhow::Result<()> {
        for (&addr, &pnn) in placement {
            wait_until(ANSWER_TIMEOUT, || match ask(self.client(), addr, ATTEMPT) {
                Ok(p) if p == pnn && self.watcher().hosts(addr) == BTreeSet::from([pnn]) => Ok(()),
                Ok(p) => Err(format!(
                    "answered by node {p}; watcher sees it on {:?}",
                    self.watcher().hosts(addr)
                )),
                Err(e) => Err(e.to_string()),
            })
            .map_err(|t| {
                anyhow!(
                    "{addr}:{SERVICE_PORT} never answered from node {pnn}, which `ctdb ip` \
                     names: {t}\n{}\n{}",
                    self.neighbours(),
                    self.cluster.logs()
                )
            })?;
        }
        Ok(())
    }

    /// The client's neighbour table and every node's `pub0` (its MAC), for failure
    /// messages about unreachable addresses.
    fn neighbours(&self) -> String {
        let mut text = String::new();
        let mut cmd = self.client().command("ip");
        cmd.args(["neigh", "show"]);
        match vm::process::run(cmd, Duration::from_secs(5)) {
            Ok(out) => text.push_str(&format!("client's neighbours:\n{}\n", out.stdout)),
            Err(e) => text.push_str(&format!("client's neighbours: {e:#}\n")),
        }
        for pnn in ALL {
            if let Ok(out) = self
                .cluster
                .node(pnn)
                .run("ip", &["-o", "link", "show", "pub0"])
            {
                text.push_str(&format!("node {pnn}: {}", out.stdout));
            }
            if let Ok(out) = self
                .cluster
                .node(pnn)
                .run("ip", &["-o", "addr", "show", "pub0"])
            {
                text.push_str(&out.stdout);
            }
        }
        text
    }

    /// Everything back: all three agree, every address answers from the node
    /// `ctdb ip` names; then the watcher stops and its report is returned.
    fn converge_and_finish(&mut self, scenario: &str) -> anyhow::Result<WatchReport> {
        self.cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
        let placement = wait_placed(&self.cluster, &ALL, &addrs(), &ALL, CONVERGE_TIMEOUT)?;
        self.check_answers(&placement)?;
        Ok(self.finish(scenario))
    }

    /// Stops the watcher, prints its report, and returns it.
    fn finish(&mut self, scenario: &str) -> WatchReport {
        let report = self.watcher.take().expect("finish is called once").stop();
        eprintln!("==== {scenario} ====\n{report}");
        report
    }
}

impl Drop for Scene {
    /// A scenario that failed before [`Scene::finish`] still shows what the watcher
    /// saw.
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            eprintln!("==== unfinished scenario ====\n{}", watcher.stop());
        }
    }
}

/// When did the watcher first see `addr` on a node of `on` at or after `after`
/// (since the watcher started)?
fn first_seen_on(
    report: &WatchReport,
    addr: Ipv4Addr,
    on: &[u32],
    after: Duration,
) -> Option<Duration> {
    report
        .changes
        .iter()
        .find(|c| c.addr == addr && c.at >= after && c.on.iter().any(|p| on.contains(p)))
        .map(|c| c.at)
}

/// Scenario: cold start.
///
/// Given three nodes with three public addresses and a service in each node,
/// When the daemons start,
/// Then every address is placed (one per node, `ctdb ip` agreeing on every node),
///   answers the client from exactly the node `ctdb ip` names, and no address was
///   ever on two nodes.
#[test]
fn cold_start_every_address_answers_from_the_node_ctdb_ip_names() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let hosts: BTreeSet<u32> = scene.placement.values().copied().collect();
    assert_eq!(
        hosts.len(),
        3,
        "one address per node: {:?}",
        scene.placement
    );
    scene.check_answers(&scene.placement.clone())?;
    let report = scene.finish("cold start");
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))
}

/// Scenario: kill -9 of the leader, then its restart (fail-back).
///
/// Given a started cluster, every address answering,
/// When the leader's daemon is killed with SIGKILL (its namespace, service and
///   public link stay up: the guardian must remove its address),
/// Then its address answers the client from a survivor (time measured), the
///   survivors agree on a new leader, and every address answers from the node
///   `ctdb ip` names;
/// When the daemon is started again,
/// Then it hosts an address again (LCP2 gives every node one), all answering
///   correctly; at no moment was an address on two nodes, and no address was
///   missing longer than the takeover window.
#[test]
fn kill_9_moves_the_addresses_and_a_restart_gets_them_back() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let victim = scene.leader;
    let addr = scene.address_of(victim);
    let survivors: Vec<u32> = ALL.into_iter().filter(|&p| p != victim).collect();

    scene
        .watcher()
        .note(format!("kill -9 of node {victim} (leader)"));
    let t0 = Instant::now();
    scene.cluster.kill_daemon(victim)?;
    let (by, took) = ask_until_answered(
        scene.client(),
        addr,
        Some(victim),
        t0,
        ATTEMPT,
        CONVERGE_TIMEOUT,
    )?;
    scene
        .watcher()
        .note(format!("{addr} answers from node {by}"));
    eprintln!("kill -9: {addr} answered from node {by} after {took:.3?}");
    ensure!(survivors.contains(&by), "answered by {by}");
    scene
        .cluster
        .wait_agreement(&survivors, &survivors, CONVERGE_TIMEOUT)?;
    let placement = wait_placed(
        &scene.cluster,
        &survivors,
        &addrs(),
        &survivors,
        CONVERGE_TIMEOUT,
    )?;
    scene.check_answers(&placement)?;

    scene.watcher().note(format!("node {victim} restarted"));
    scene.cluster.restart_daemon(victim)?;
    scene
        .cluster
        .node_mut(victim)
        .wait_runstate("RUNNING", START_TIMEOUT)?;
    scene.cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    let placement = wait_failback(&scene, victim)?;
    scene.check_answers(&placement)?;
    let report = scene.finish("kill -9 of the leader, then restart");
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))
}

/// Scenario: kill -9 of a follower: its guardian's word, not the lease.
///
/// Given a started cluster, every address answering,
/// When a follower's daemon is killed with SIGKILL,
/// Then its guardian removes its address and tells the other nodes so (its log
///   says whom), the leader logs the notice and lifts the follower's lease guard,
///   and the address answers from a survivor sooner than the lease alone would
///   allow (the lease is 1 s; with the wait, 1.2 s at least); at no moment is it on
///   two nodes, and no address is missing beyond the takeover window.
#[test]
fn kill_9_of_a_follower_moves_its_address_on_its_guardians_word() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let leader = scene.leader;
    let victim = (leader + 1) % 3;
    let addr = scene.address_of(victim);

    scene
        .watcher()
        .note(format!("kill -9 of node {victim} (follower)"));
    let t0 = Instant::now();
    scene.cluster.kill_daemon(victim)?;
    let (by, took) = ask_until_answered(
        scene.client(),
        addr,
        Some(victim),
        t0,
        ATTEMPT,
        CONVERGE_TIMEOUT,
    )?;
    scene
        .watcher()
        .note(format!("{addr} answers from node {by}"));
    eprintln!("kill -9 of a follower: {addr} answered from node {by} after {took:.3?}");

    let guardian_log = scene.cluster.node(victim).daemon_log();
    let told: Vec<&str> = guardian_log
        .lines()
        .filter(|l| l.contains("told the peer that ctdbd is dead"))
        .collect();
    ensure!(
        told.len() == 2,
        "the guardian did not tell both peers:\n{guardian_log}"
    );
    let leader_log = scene.cluster.node(leader).daemon_log();
    let heard = leader_log
        .lines()
        .find(|l| l.contains("guardian notice: the node's daemon is dead"))
        .ok_or_else(|| anyhow!("the leader never acted on the notice:\n{leader_log}"))?;
    ensure!(
        heard.contains(&format!("peer={victim}")) && heard.contains("lifted=true"),
        "{heard}"
    );
    ensure!(by != victim, "answered by the killed node");
    ensure!(
        took < LEASE,
        "{addr} took {took:?} to move: no quicker than the lease wait\n{}",
        scene.cluster.logs()
    );
    let survivors: Vec<u32> = ALL.into_iter().filter(|&p| p != victim).collect();
    let placement = wait_placed(
        &scene.cluster,
        &survivors,
        &addrs(),
        &survivors,
        CONVERGE_TIMEOUT,
    )?;
    scene.check_answers(&placement)?;
    let report = scene.finish("kill -9 of a follower, on its guardian's word");
    ensure!(
        report.duplicate_moments() == 0,
        "an address was on two nodes:\n{report}"
    );
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))
}

/// Scenario: `ctdb shutdown` of a follower: a clean stop hands over without the
/// lease wait.
///
/// Given a started cluster with a long lease (5 s, so that the daemon's exit and the
///   guardian's word surely come while the leader still guards the follower),
///   every address answering,
/// When a follower is stopped with `ctdb shutdown`,
/// Then it removes its address itself, its guardian waits for it to exit and tells
///   both other nodes (its log says whom), the leader lifts the follower's lease
///   guard on that word, and the address answers from a survivor; at no moment is
///   it on two nodes.
#[test]
fn clean_shutdown_of_a_follower_hands_its_address_over_on_its_guardians_word() -> anyhow::Result<()>
{
    let mut scene = Scene::start_with_tunables("IPLeaseTimeMs=5000\n")?;
    let leader = scene.leader;
    let victim = (leader + 1) % 3;
    let addr = scene.address_of(victim);

    scene
        .watcher()
        .note(format!("ctdb shutdown of node {victim} (follower)"));
    let t0 = Instant::now();
    let out = scene.cluster.node(victim).ctdb(Tool::Ours, &["shutdown"])?;
    ensure!(out.success(), "{out}");
    let (by, took) = ask_until_answered(
        scene.client(),
        addr,
        Some(victim),
        t0,
        ATTEMPT,
        CONVERGE_TIMEOUT,
    )?;
    scene
        .watcher()
        .note(format!("{addr} answers from node {by}"));
    eprintln!("ctdb shutdown of a follower: {addr} answered from node {by} after {took:.3?}");
    let told = wait_until(CONVERGE_TIMEOUT, || {
        let log = scene.cluster.node(victim).daemon_log();
        let told = log
            .lines()
            .filter(|l| l.contains("told the peer that ctdbd is dead"))
            .count();
        if told == 2 {
            Ok(())
        } else {
            Err(log)
        }
    });
    if let Err(t) = told {
        bail!("the guardian did not tell both peers: {t}");
    }
    let leader_log = scene.cluster.node(leader).daemon_log();
    let heard = leader_log
        .lines()
        .find(|l| l.contains("guardian notice: the node's daemon is dead"))
        .ok_or_else(|| anyhow!("the leader never acted on the notice:\n{leader_log}"))?;
    ensure!(
        heard.contains(&format!("peer={victim}")) && heard.contains("lifted=true"),
        "{heard}"
    );
    let report = scene.finish("clean shutdown of a follower");
    report.check_no_duplicates().map_err(|e| anyhow!(e))
}

/// Scenario: power loss of a follower, then power back (fail-back).
///
/// Given a started cluster, every address answering,
/// When a follower loses power (both links cut, daemon killed: the others only see
///   silence),
/// Then its address answers from a survivor (time measured) within the takeover
///   window, and every address answers from the node `ctdb ip` names;
/// When power comes back,
/// Then the node hosts an address again; never a duplicate.
#[test]
fn power_off_of_a_follower_moves_its_address_and_power_on_gets_one_back() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let victim = (scene.leader + 1) % 3;
    let addr = scene.address_of(victim);
    let survivors: Vec<u32> = ALL.into_iter().filter(|&p| p != victim).collect();

    scene.watcher().set_live(victim, false);
    let t0 = Instant::now();
    power_off_machine(&mut scene.cluster, victim)?;
    let (by, took) = ask_until_answered(
        scene.client(),
        addr,
        Some(victim),
        t0,
        ATTEMPT,
        CONVERGE_TIMEOUT,
    )?;
    scene
        .watcher()
        .note(format!("{addr} answers from node {by}"));
    eprintln!("power off: {addr} answered from node {by} after {took:.3?}");
    ensure!(took <= TAKEOVER_WINDOW, "failover took {took:?}");
    let placement = wait_placed(
        &scene.cluster,
        &survivors,
        &addrs(),
        &survivors,
        CONVERGE_TIMEOUT,
    )?;
    scene.check_answers(&placement)?;

    vm::public::power_on_machine(&mut scene.cluster, victim)?;
    scene.watcher().set_live(victim, true);
    scene
        .cluster
        .node_mut(victim)
        .wait_runstate("RUNNING", START_TIMEOUT)?;
    scene.cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    let placement = wait_failback(&scene, victim)?;
    scene.check_answers(&placement)?;
    let report = scene.finish("power off of a follower, then power on");
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))
}

/// Waits until every node agrees on a placement in which `pnn` hosts an address.
fn wait_failback(scene: &Scene, pnn: u32) -> anyhow::Result<BTreeMap<Ipv4Addr, u32>> {
    let found = wait_until(CONVERGE_TIMEOUT, || {
        match wait_placed(&scene.cluster, &ALL, &addrs(), &ALL, Duration::ZERO) {
            Ok(p) if p.values().any(|&v| v == pnn) => Ok(p),
            Ok(p) => Err(format!("{p:?}")),
            Err(e) => Err(format!("{e:#}")),
        }
    });
    found.map_err(|t| {
        anyhow!(
            "node {pnn} never hosted an address again: {t}\n{}",
            scene.cluster.logs()
        )
    })
}

/// Scenario: `ctdb disable`, then `ctdb enable`.
///
/// Given a started cluster,
/// When a follower is disabled (stock tool, on that node),
/// Then its address moves to the two others and answers from there;
/// When it is enabled again,
/// Then LCP2 gives it an address back (one per node), answering from it; never a
///   duplicate, no address missing beyond the window.
#[test]
fn disable_moves_the_address_and_enable_brings_one_back() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let victim = (scene.leader + 1) % 3;
    let others: Vec<u32> = ALL.into_iter().filter(|&p| p != victim).collect();

    scene
        .watcher()
        .note(format!("ctdb disable on node {victim}"));
    scene
        .cluster
        .ctdb_ok(victim, Tool::Stock, &["disable"])
        .map_err(|e| anyhow!(e))?;
    let placement = wait_placed(&scene.cluster, &ALL, &addrs(), &others, CONVERGE_TIMEOUT)?;
    scene.check_answers(&placement)?;

    scene
        .watcher()
        .note(format!("ctdb enable on node {victim}"));
    scene
        .cluster
        .ctdb_ok(victim, Tool::Stock, &["enable"])
        .map_err(|e| anyhow!(e))?;
    let placement = wait_failback(&scene, victim)?;
    let per_node: BTreeSet<u32> = placement.values().copied().collect();
    ensure!(
        per_node.len() == 3,
        "not one address per node: {placement:?}"
    );
    scene.check_answers(&placement)?;
    let report = scene.finish("disable, then enable");
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))
}

/// Scenario: `ctdb moveip` with the stock tool.
///
/// Given a started cluster,
/// When `/usr/bin/ctdb moveip 10.0.20.101 <target>` runs (target 2, or 1 if 2
///   already hosts it),
/// Then 10.0.20.101 answers from the target and `ctdb ip` says so on every node;
///   never a duplicate.
#[test]
fn stock_moveip_moves_the_address_to_the_named_node() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let addr = default_public(0);
    let target = if scene.placement[&addr] == 2 { 1 } else { 2 };

    let line = format!("moveip {addr} {target}");
    scene.watcher().note(format!("stock ctdb {line}"));
    let out = scene
        .cluster
        .ctdb_ok(
            0,
            Tool::Stock,
            &["moveip", &addr.to_string(), &target.to_string()],
        )
        .map_err(|e| anyhow!("{e}\n{}", scene.cluster.logs()))?;
    eprintln!("{out}");
    let placement = wait_placed(&scene.cluster, &ALL, &addrs(), &ALL, CONVERGE_TIMEOUT)?;
    ensure!(
        placement[&addr] == target,
        "after `ctdb {line}`, `ctdb ip` says {placement:?}\n{}",
        scene.cluster.logs()
    );
    scene.check_answers(&placement)?;
    let report = scene.finish("stock moveip");
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))
}

/// Scenario: a node's first address moves away while it keeps a second one.
///
/// On `pub0` the first address of a /24 is the kernel's *primary*, later ones its
/// *secondaries*; unless `promote_secondaries` is set on the interface, deleting the
/// primary silently deletes the secondaries too (CTDB sets it for every public
/// interface for this reason).
///
/// Given a started cluster, node 0 hosting A (its primary on `pub0`),
/// When `ctdb moveip B 0` (stock) gives node 0 node 1's address B as well (a
///   secondary), and then `ctdb moveip A 1` moves A away,
/// Then B still answers from the node `ctdb ip` names (node 0), and no address was
///   missing beyond the window.
#[test]
fn moving_a_nodes_first_address_away_keeps_its_second() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let a = scene.address_of(0);
    let b = scene.address_of(1);
    for (addr, to) in [(b, 0u32), (a, 1u32)] {
        scene
            .watcher()
            .note(format!("stock ctdb moveip {addr} {to}"));
        scene
            .cluster
            .ctdb_ok(
                0,
                Tool::Stock,
                &["moveip", &addr.to_string(), &to.to_string()],
            )
            .map_err(|e| anyhow!("{e}\n{}", scene.cluster.logs()))?;
        let placement = wait_placed(&scene.cluster, &ALL, &addrs(), &ALL, CONVERGE_TIMEOUT)?;
        ensure!(
            placement[&addr] == to,
            "after moveip {addr} {to}: {placement:?}"
        );
        scene.check_answers(&placement)?;
    }
    let report = scene.finish("primary address moved away, secondary kept");
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))
}

/// Scenario: `ctdb reloadips all` after adding, then after removing, a line of the
/// shared `public_addresses`.
///
/// Given a started cluster,
/// When 10.0.20.104 is added to the file and `ctdb reloadips all` (stock) runs,
/// Then 10.0.20.104 is hosted by one node, `ctdb ip` lists it everywhere, and it
///   answers from that node;
/// When 10.0.20.101 is removed from the file and `ctdb reloadips all` runs,
/// Then 10.0.20.101 leaves every node (the watcher sees it nowhere, `ctdb ip` no
///   longer lists it, the client cannot connect) and the others still answer.
#[test]
fn reloadips_adds_and_removes_addresses() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let new = default_public(3);
    let mut list = addrs();
    list.push(new);
    let file =
        |list: &[Ipv4Addr]| -> String { list.iter().map(|a| format!("{a}/24 pub0\n")).collect() };

    scene
        .cluster
        .write_shared("public_addresses", &file(&list))?;
    scene
        .watcher()
        .note(format!("{new} added; stock ctdb reloadips all"));
    scene.watcher().expect([new]);
    scene
        .cluster
        .ctdb_ok(0, Tool::Stock, &["reloadips", "all"])
        .map_err(|e| anyhow!("{e}\n{}", scene.cluster.logs()))?;
    let placement = wait_placed(&scene.cluster, &ALL, &list, &ALL, CONVERGE_TIMEOUT)?;
    scene.check_answers(&placement)?;

    let gone = default_public(0);
    list.retain(|&a| a != gone);
    scene.watcher().unexpect(gone);
    scene
        .cluster
        .write_shared("public_addresses", &file(&list))?;
    scene
        .watcher()
        .note(format!("{gone} removed; stock ctdb reloadips all"));
    scene
        .cluster
        .ctdb_ok(0, Tool::Stock, &["reloadips", "all"])
        .map_err(|e| anyhow!("{e}\n{}", scene.cluster.logs()))?;
    let placement = wait_placed(&scene.cluster, &ALL, &list, &ALL, CONVERGE_TIMEOUT)?;
    wait_until(CONVERGE_TIMEOUT, || {
        let on = scene.watcher().hosts(gone);
        if on.is_empty() {
            Ok(())
        } else {
            Err(on)
        }
    })
    .map_err(|t| anyhow!("{gone} still configured: {t}\n{}", scene.cluster.logs()))?;
    match ask(scene.client(), gone, ATTEMPT) {
        Err(_) => {}
        Ok(p) => bail!("{gone} still answers, from node {p}"),
    }
    scene.check_answers(&placement)?;
    let report = scene.finish("reloadips: add, then remove");
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))
}

/// Scenario: a partition isolates a follower (DESIGN.md: the case CTDB gets wrong
/// the other way round; here the isolated node must let go first).
///
/// ```text
///   priv: [leader, other]   priv1: [follower]     (pub: everyone, as before)
/// ```
///
/// Given a started cluster,
/// When the follower is cut off on the private network (it still runs, its public
///   link is up),
/// Then it releases its address within about a lease (1 s + slack), the leader
///   reassigns it after the lease margin, it answers from the leader's side, and
///   at no moment is it on two nodes;
/// When the partition heals,
/// Then every address is hosted exactly once and answers from the node `ctdb ip`
///   names.
#[test]
fn partition_isolating_a_follower_never_duplicates_its_address() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let leader = scene.leader;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let addr = scene.address_of(follower);

    scene
        .watcher()
        .note(format!("partition: [{leader}, {other}] | [{follower}]"));
    let t0 = Instant::now();
    scene.cluster.partition(&[&[leader, other], &[follower]])?;
    let (by, took) = ask_until_answered(
        scene.client(),
        addr,
        Some(follower),
        t0,
        ATTEMPT,
        CONVERGE_TIMEOUT,
    )?;
    eprintln!("partition: {addr} answered from node {by} after {took:.3?}");
    ensure!(by == leader || by == other, "answered by {by}");
    scene
        .watcher()
        .note(format!("{addr} answers from node {by}"));
    let released_at = scene.watcher().hosts(addr);
    ensure!(
        !released_at.contains(&follower),
        "the isolated follower still holds {addr}"
    );

    scene.watcher().note("heal");
    scene.cluster.heal()?;
    let report = scene.converge_and_finish("partition isolating a follower")?;
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))?;
    // The follower let go of its address within about a lease of the cut.
    let cut = report
        .notes
        .iter()
        .find(|n| n.text.starts_with("partition"))
        .map(|n| n.at)
        .expect("noted");
    let released = report
        .changes
        .iter()
        .find(|c| c.addr == addr && c.at >= cut && !c.on.contains(&follower))
        .map(|c| c.at)
        .ok_or_else(|| anyhow!("{addr} never left node {follower}"))?;
    let retaken = first_seen_on(&report, addr, &[leader, other], cut)
        .ok_or_else(|| anyhow!("{addr} never reached the leader's side"))?;
    eprintln!(
        "partition: node {follower} released {addr} {:.3?} after the cut; retaken {:.3?} after",
        released - cut,
        retaken - cut
    );
    ensure!(
        released - cut <= LEASE + Duration::from_millis(700),
        "the isolated follower kept {addr} {:?} after the cut (lease {LEASE:?})",
        released - cut
    );
    Ok(())
}

/// Until every address answers from a node of `serving` and the watcher sees each
/// on one of them alone (none on any other node); returns when that held.
fn wait_served_by(scene: &Scene, serving: &[u32], since: Instant) -> anyhow::Result<Duration> {
    for addr in addrs() {
        wait_until(CONVERGE_TIMEOUT, || {
            let on = scene.watcher().hosts(addr);
            match ask(scene.client(), addr, ATTEMPT) {
                Ok(p)
                    if serving.contains(&p)
                        && on.len() == 1
                        && on.is_subset(&serving.iter().copied().collect()) =>
                {
                    Ok(())
                }
                Ok(p) => Err(format!("answered by node {p}; configured on {on:?}")),
                Err(e) => Err(format!("{e}; configured on {on:?}")),
            }
        })
        .map_err(|t| {
            anyhow!(
                "{addr} not served by {serving:?} alone: {t}\n{}",
                scene.cluster.logs()
            )
        })?;
    }
    Ok(since.elapsed())
}

/// Watches for [`PARTITION_WATCH`] that `serving` keep serving every address and
/// that `idle` host none.
fn holds_served_by(scene: &Scene, serving: &[u32], idle: &[u32]) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < PARTITION_WATCH {
        for addr in addrs() {
            let on = scene.watcher().hosts(addr);
            ensure!(
                on.len() == 1 && on.iter().all(|p| serving.contains(p) && !idle.contains(p)),
                "{addr} configured on {on:?} {:.1?} into the watch (serving {serving:?}, idle {idle:?})\n{}",
                start.elapsed(),
                scene.cluster.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Scenario: a partition isolates the leader on the private network only, and it
/// can still reach the recovery lock (the case where CTDB 4.17 showed 22–33 s of
/// duplicate addresses).
///
/// ```text
///   priv: [a, b]   priv1: [leader]     (pub: everyone)
/// ```
///
/// Given a started cluster,
/// When the leader is cut off on the private network,
/// Then, connected to no majority, it gives up the lock and its address; the two
///   others elect one of them, which takes the lock; every address answers from
///   one of the two, the old leader hosts none, and it stays so while the
///   partition lasts; at no moment is an address on two nodes;
/// When the partition heals,
/// Then every address is hosted exactly once, answering from the node `ctdb ip`
///   names.
#[test]
fn partition_isolating_the_leader_hands_everything_to_the_majority() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let leader = scene.leader;
    let others: Vec<u32> = ALL.into_iter().filter(|&p| p != leader).collect();

    scene.watcher().note(format!(
        "partition: [{}, {}] | [{leader}]",
        others[0], others[1]
    ));
    let t0 = Instant::now();
    scene.cluster.partition(&[&others, &[leader]])?;
    let took = wait_served_by(&scene, &others, t0)?;
    scene.watcher().note(format!(
        "the majority serves everything ({took:.3?} after the cut)"
    ));
    let led = scene.cluster.wait_leader(
        &others,
        CONVERGE_TIMEOUT,
        "one of the majority leading",
        |l| l.is_some_and(|l| l != leader),
    )?;
    eprintln!("partition: majority ({led:?}) serves every address {took:.3?} after the cut");
    holds_served_by(&scene, &others, &[leader])?;

    scene.watcher().note("heal");
    scene.cluster.heal()?;
    let report = scene.converge_and_finish("partition isolating the leader")?;
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))
}

/// Scenario: the leader's cables are pulled (private and public link down); it runs
/// on and can still reach the recovery lock (the volume is reachable from every
/// namespace). The issue's total outage: before, the two others could not take the
/// lock, their leases ran out, and nothing was served.
///
/// Given a started cluster,
/// When both of the leader's links go down,
/// Then the two others, a majority, take the lock and serve every address (the old
///   leader's too), the cut-off leader hosts none, and it stays so; never an
///   address on two nodes;
/// When the cables are back,
/// Then all three agree and every address is hosted exactly once.
#[test]
fn cables_pulled_from_the_leader_leave_the_majority_serving_everything() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let leader = scene.leader;
    let others: Vec<u32> = ALL.into_iter().filter(|&p| p != leader).collect();

    scene
        .watcher()
        .note(format!("cables pulled from the leader, node {leader}"));
    let t0 = Instant::now();
    scene.cluster.cut_links(leader)?;
    scene
        .cluster
        .fabric()
        .ip(&["link", "set", &format!("n{leader}pub"), "down"])?;
    let took = wait_served_by(&scene, &others, t0)?;
    scene.watcher().note(format!(
        "the majority serves everything ({took:.3?} after the cut)"
    ));
    eprintln!("cables pulled: the majority serves every address {took:.3?} after the cut");
    holds_served_by(&scene, &others, &[leader])?;

    scene.watcher().note("cables back");
    scene
        .cluster
        .fabric()
        .ip(&["link", "set", &format!("n{leader}pub"), "up"])?;
    scene.cluster.restore_links(leader)?;
    let report = scene.converge_and_finish("cables pulled from the leader")?;
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))
}

/// Scenario: both followers lose power; the leader is the last survivor.
///
/// Given a started cluster,
/// When both followers lose power,
/// Then the leader, connected to no majority, gives up the lock, waits a
///   minority's time for a majority that never comes, takes the lock again and
///   serves every address; never an address on two nodes;
/// When both come back,
/// Then all three agree and every address is hosted exactly once.
#[test]
fn a_lone_survivor_serves_every_address() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let leader = scene.leader;
    let others: Vec<u32> = ALL.into_iter().filter(|&p| p != leader).collect();

    scene.watcher().note(format!("power off nodes {others:?}"));
    let t0 = Instant::now();
    for &pnn in &others {
        power_off_machine(&mut scene.cluster, pnn)?;
    }
    let took = wait_served_by(&scene, &[leader], t0)?;
    scene.watcher().note(format!(
        "node {leader} serves everything ({took:.3?} after the power loss)"
    ));
    eprintln!("lone survivor: node {leader} serves every address {took:.3?} after the power loss");

    scene.watcher().note("power back");
    for &pnn in &others {
        power_on_machine(&mut scene.cluster, pnn)?;
    }
    let report = scene.converge_and_finish("lone survivor")?;
    report.check_no_duplicates().map_err(|e| anyhow!(e))
}

// ---- tickle ---------------------------------------------------------------------

/// Scenario: tickle ACK after a power loss.
///
/// ```text
///   client 10.0.20.200:p1 ──registered──> A:4445 on node h ──(power off)──> survivor
///   client 10.0.20.200:p2 ──not registered──> A:4445
/// ```
///
/// Given two idle connections from the client to address A's service on its host
///   h (a follower), the first registered with h's daemon by TCP_CLIENT (as smbd
///   does) and copied to every node (`ctdb gettickles` on a survivor lists it),
/// When h loses power (links cut, daemon killed: the client gets no FIN),
/// Then once A is back on a survivor, the registered connection's blocked read
///   fails with ECONNRESET within 3 s (the survivor's tickle ACK drew the client's
///   ACK, answered by a RST), long before TCP's own timeouts; the unregistered
///   connection receives nothing in the same 3 s window; never a duplicate.
#[test]
fn tickle_resets_a_registered_connection_after_power_loss() -> anyhow::Result<()> {
    let mut scene = Scene::start()?;
    let h = (scene.leader + 1) % 3;
    let addr = scene.address_of(h);

    let (tickled, answer) = open(scene.client(), addr, ATTEMPT * 10)?;
    ensure!(
        answer == format!("node{h}"),
        "first connection answered by {answer}"
    );
    let (idle, answer) = open(scene.client(), addr, ATTEMPT * 10)?;
    ensure!(
        answer == format!("node{h}"),
        "second connection answered by {answer}"
    );
    let conn = Connection {
        src: tickled.local_addr()?,
        dst: SocketAddr::from((addr, SERVICE_PORT)),
    };
    ensure!(
        conn.src.ip() == IpAddr::V4(CLIENT_ADDR),
        "client address {}",
        conn.src
    );
    let _registration = register_connection(&scene.cluster, h, conn)?;
    let survivor = scene.leader;
    let src = conn.src.to_string();
    scene.cluster.node_mut(survivor).wait_ctdb(
        &["gettickles", &addr.to_string()],
        CONVERGE_TIMEOUT,
        |out| out.success() && out.stdout.contains(&src),
    )?;
    scene.watcher().note(format!(
        "{src} -> {addr}:{SERVICE_PORT} registered on node {h}, known to node {survivor}; \
         {} -> {addr}:{SERVICE_PORT} not registered",
        idle.local_addr()?
    ));

    // The registered connection's blocked read, on its own thread.
    tickled.set_read_timeout(Some(CONVERGE_TIMEOUT))?;
    let reader = std::thread::spawn(move || {
        let mut tickled = tickled;
        let mut buf = [0u8; 64];
        let result = tickled.read(&mut buf);
        (Instant::now(), result)
    });

    scene.watcher().set_live(h, false);
    let off = Instant::now();
    power_off_machine(&mut scene.cluster, h)?;
    // Measured, not awaited: the moment A is back, to a few ms.
    let back = loop {
        if !scene.watcher().hosts(addr).is_empty() {
            break Instant::now();
        }
        ensure!(
            off.elapsed() < CONVERGE_TIMEOUT,
            "{addr} never came back\n{}",
            scene.cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    scene
        .watcher()
        .note(format!("{addr} back on {:?}", scene.watcher().hosts(addr)));

    // Measurement window: the unregistered connection must see nothing for as long
    // as the registered one is given to be reset.
    let window_end = back + TICKLE_DEADLINE;
    idle.set_read_timeout(Some(window_end.saturating_duration_since(Instant::now())))?;
    let mut buf = [0u8; 64];
    let idle_result = (&idle).read(&mut buf);
    let (reset_at, tickled_result) = reader.join().expect("the reader does not panic");
    scene.watcher().note("tickle window over");
    let report = scene.finish("tickle after power loss");

    // Timed from the watcher's record (to a round), not from the polling above.
    let off_at = off - report.started;
    let back_at = first_seen_on(&report, addr, &ALL, off_at).unwrap_or(back - report.started);
    let after_back = (reset_at - report.started).saturating_sub(back_at);
    eprintln!(
        "tickle: {addr} back {:.3?} after power off; registered connection: {tickled_result:?} \
         {after_back:.3?} after that; unregistered: {idle_result:?}",
        back_at.saturating_sub(off_at)
    );
    match &tickled_result {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => bail!(
            "the registered connection's read gave {other:?} {:.3?} after power off, not a reset\n{}",
            reset_at - off,
            scene.cluster.logs()
        ),
    }
    ensure!(
        after_back <= TICKLE_DEADLINE,
        "reset came {after_back:?} after {addr} was back (allowed {TICKLE_DEADLINE:?})"
    );
    match idle_result {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => bail!("the unregistered connection saw {other:?} within the window"),
    }
    report.check(TAKEOVER_WINDOW).map_err(|e| anyhow!(e))
}
