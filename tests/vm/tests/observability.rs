//! What operators watch and what clients resolve: the Prometheus endpoint
//! (`[metrics]`), scraped with curl and read with a Prometheus exposition parser
//! (`prometheus-parse`), across a failover; the example Grafana dashboard, whose
//! every query must name a metric the daemon exports; and the DNS responder
//! (`[dns]`), asked with `dig` from the client namespace while a node is disabled
//! and while another loses power.
//!
//! Metrics topology:
//!
//! ```text
//!            fabric netns: bridge priv (192.168.20.0/24)      bridge pub (10.0.20.0/24)
//!              |              |              |              |      |      |
//!   node 0 .41 priv0  node 1 .42 priv0  node 2 .43 priv0   pub0   pub0   pub0
//!   ctdbd: [metrics] listen = <its private address>:9479
//!   events/legacy/01.probe.script (exits 0) in every node
//!      \                    |                   /
//!       +---- /srv/shared: nodes, public_addresses, .ctdb.reclock ----+
//!   public_addresses: 10.0.20.101/24 pub0, 10.0.20.102/24 pub0, 10.0.20.103/24 pub0
//!
//!   scraper: `curl http://192.168.20.4x:9479/metrics` run in *another* node's
//!   namespace, over the private network, as a Prometheus server would.
//! ```
//!
//! DNS topology: the same three nodes, each with a fixed address on its public
//! interface for its responder, and a client on the public bridge:
//!
//! ```text
//!   node i pub0: 10.0.20.(11+i)/24 (fixed)  + the public addresses it holds
//!   ctdbd: [dns] listen = 10.0.20.(11+i):53, name = nas.example., ttl = 1
//!   client 10.0.20.200: dig @10.0.20.11 nas.example. A +short
//! ```
//!
//! Waits poll a condition up to a deadline; values are compared with what
//! `ctdb status` and `ctdb ip` say, and DNS answers with the addresses really on
//! the nodes' interfaces (`ip addr`), read right after each answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use std::net::Ipv4Addr;

use anyhow::{anyhow, bail, ensure, Context as _};
use prometheus_parse::{Scrape, Value};
use vm::cluster::private_addr;
use vm::public::{default_public, power_off_machine, wait_placed};
use vm::{wait_until, Cluster, Daemon, Tool};

/// Cold start to RUNNING.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Elections, recoveries and takeover runs after a fault.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The port every node's endpoint listens on (its private address).
const METRICS_PORT: u16 = 9479;

const ALL: [u32; 3] = [0, 1, 2];

/// One parsed scrape.
struct Metrics {
    scrape: Scrape,
    text: String,
}

impl Metrics {
    /// The value of the sample `name` whose labels include `labels`: exactly one
    /// must match.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64, String> {
        let found: Vec<f64> = self
            .scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .filter_map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                _ => None,
            })
            .collect();
        match found[..] {
            [v] => Ok(v),
            _ => Err(format!(
                "{} samples of {name}{labels:?} (want 1) in\n{}",
                found.len(),
                self.text
            )),
        }
    }

    /// Every metric name of the scrape, a histogram's by its base name and by its
    /// `_bucket`, `_sum` and `_count` series.
    fn names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for s in &self.scrape.samples {
            names.insert(s.metric.clone());
            if let Value::Histogram(_) = s.value {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{}{suffix}", s.metric));
                }
            }
        }
        names
    }
}

/// Scrapes node `target`'s endpoint with curl from node `from`'s namespace, and
/// parses the answer.
fn scrape(cluster: &Cluster, from: u32, target: u32) -> Result<Metrics, String> {
    let url = format!("http://{}:{METRICS_PORT}/metrics", private_addr(target));
    let out = cluster
        .node(from)
        .run("curl", &["-sS", "--fail", "--max-time", "5", &url])
        .map_err(|e| format!("{e:#}"))?;
    if !out.success() {
        return Err(format!("curl {url} from node {from}: {out}"));
    }
    let lines = out.stdout.lines().map(|l| Ok(l.to_owned()));
    let scrape = Scrape::parse(lines).map_err(|e| format!("unparsable scrape of {url}: {e}"))?;
    Ok(Metrics {
        scrape,
        text: out.stdout,
    })
}

/// Scrapes `target` from the next node of `alive`.
fn scrape_from_peer(cluster: &Cluster, alive: &[u32], target: u32) -> Result<Metrics, String> {
    let from = alive
        .iter()
        .copied()
        .find(|&p| p != target)
        .unwrap_or(target);
    scrape(cluster, from, target)
}

/// Given three nodes with `[metrics]` on their private addresses and a probe
/// event script, started, agreed, every address placed.
fn start_cluster() -> anyhow::Result<(Cluster, u32)> {
    let mut cluster = Cluster::builder().nodes(3).shared_volume(true).build()?;
    for pnn in ALL {
        let node = cluster.node(pnn);
        let conf_path = node.etc_dir().join("ctdb.conf");
        let mut conf = std::fs::read_to_string(&conf_path)
            .with_context(|| format!("reading {}", conf_path.display()))?;
        conf.push_str(&format!(
            "[metrics]\n\tlisten = {}:{METRICS_PORT}\n",
            private_addr(pnn)
        ));
        node.write_config("ctdb.conf", &conf)?;
        // A local script in the enabled directory: it runs at every event.
        let dir = node.etc_dir().join("events/legacy");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        node.write_config("events/legacy/01.probe.script", "#!/bin/sh\nexit 0\n")?;
        std::fs::set_permissions(
            dir.join("01.probe.script"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
    }
    cluster.start(Daemon::Ours, START_TIMEOUT)?;
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let addrs: Vec<_> = ALL.iter().map(|&i| default_public(i)).collect();
    wait_placed(&cluster, &ALL, &addrs, &ALL, CONVERGE_TIMEOUT)?;
    Ok((cluster, leader))
}

/// Polls until `check` accepts the scrapes of every node of `alive`.
fn wait_metrics(
    cluster: &Cluster,
    alive: &[u32],
    what: &str,
    check: impl Fn(&BTreeMap<u32, Metrics>) -> Result<(), String>,
) -> anyhow::Result<BTreeMap<u32, Metrics>> {
    wait_until(CONVERGE_TIMEOUT, || -> Result<_, String> {
        let mut all = BTreeMap::new();
        for &pnn in alive {
            all.insert(pnn, scrape_from_peer(cluster, alive, pnn)?);
        }
        check(&all)?;
        Ok(all)
    })
    .map_err(|t| anyhow!("{what}: {t}\n{}", cluster.logs()))
}

/// Given a healthy three-node cluster, each node's scrape agrees with `ctdb status`
/// and `ctdb ip`, and shows its peers' links, its event script runs and the
/// controls it answered. When a node loses power, the survivors' scrapes show it
/// disconnected and no longer OK, their link to it down, the three addresses held
/// by the two of them, and the leader's takeover runs counted one more.
#[test]
fn metrics_follow_the_cluster_through_a_failover() -> anyhow::Result<()> {
    let (mut cluster, leader) = start_cluster()?;
    let status = cluster.status(leader).map_err(|e| anyhow!(e))?;

    let before = wait_metrics(&cluster, &ALL, "every node's first scrape", |all| {
        let mut held = 0.0;
        for (&pnn, m) in all {
            let ok = |name, labels: &[(&str, &str)], want: f64| match m.value(name, labels) {
                Ok(v) if v == want => Ok(()),
                Ok(v) => Err(format!("node {pnn}: {name}{labels:?} = {v}, want {want}")),
                Err(e) => Err(e),
            };
            ok("ctdb_pnn", &[], f64::from(pnn))?;
            ok("ctdb_leader", &[], f64::from(leader))?;
            ok("ctdb_recovery_mode", &[], 0.0)?;
            ok("ctdb_runstate", &[("state", "RUNNING")], 1.0)?;
            ok("ctdb_public_addresses", &[], 3.0)?;
            for other in ALL {
                let p = other.to_string();
                ok("ctdb_node_ok", &[("pnn", &p)], 1.0)?;
                ok("ctdb_node_flags", &[("pnn", &p)], 0.0)?;
                if other != pnn {
                    ok("ctdb_peer_link_up_total", &[("pnn", &p)], 1.0)?;
                    ok("ctdb_peer_link_down_total", &[("pnn", &p)], 0.0)?;
                    let gaps = m.value("ctdb_peer_keepalive_gap_seconds_count", &[("pnn", &p)])?;
                    if gaps < 1.0 {
                        return Err(format!("node {pnn}: no packet gap from {other} counted"));
                    }
                }
            }
            if m.value("ctdb_recoveries_total", &[])? < 1.0 {
                return Err(format!("node {pnn}: no recovery counted"));
            }
            let probe = [
                ("event", "monitor"),
                ("script", "01.probe"),
                ("result", "ok"),
            ];
            if m.value("ctdb_event_script_runs_total", &probe)? < 1.0 {
                return Err(format!("node {pnn}: no monitor run of 01.probe counted"));
            }
            ok("ctdb_event_last_status", &[("event", "monitor")], 0.0)?;
            held += m.value("ctdb_public_addresses_held", &[])?;
        }
        if held != 3.0 {
            return Err(format!("{held} addresses held in all, want 3"));
        }
        Ok(())
    })?;
    // One generation, the one `ctdb status` shows.
    for (pnn, m) in &before {
        ensure!(
            m.value("ctdb_generation", &[])
                .map_err(|e| anyhow!(e))?
                .to_string()
                == status.generation,
            "node {pnn}'s ctdb_generation differs from `ctdb status`'s {}",
            status.generation
        );
    }
    let runs_before = before[&leader]
        .value("ctdb_takeover_runs_total", &[("result", "ok")])
        .map_err(|e| anyhow!(e))?;
    ensure!(runs_before >= 1.0, "the leader counted no takeover run");

    // Controls by opcode: `ctdb status` asks for the node map.
    let nodemaps = |m: &Metrics| m.value("ctdb_controls_total", &[("opcode", "GET_NODEMAP")]);
    let asked = nodemaps(&before[&leader]).map_err(|e| anyhow!(e))?;
    cluster.status(leader).map_err(|e| anyhow!(e))?;
    let now = scrape_from_peer(&cluster, &ALL, leader).map_err(|e| anyhow!(e))?;
    ensure!(
        nodemaps(&now).map_err(|e| anyhow!(e))? > asked,
        "`ctdb status` did not count a GET_NODEMAP control on node {leader}"
    );

    // The dashboard asks only for what the daemon exports.
    let dashboard = dashboard_metric_names()?;
    let exported = before[&leader].names();
    let missing: Vec<&String> = dashboard
        .iter()
        .filter(|n| !exported.contains(*n))
        .collect();
    ensure!(
        missing.is_empty(),
        "etc/grafana-dashboard.json queries metrics no scrape has: {missing:?}"
    );

    // A follower loses power.
    let lost = ALL.into_iter().find(|&p| p != leader).expect("three nodes");
    let survivors: Vec<u32> = ALL.into_iter().filter(|&p| p != lost).collect();
    power_off_machine(&mut cluster, lost)?;
    let addrs: Vec<_> = ALL.iter().map(|&i| default_public(i)).collect();
    wait_placed(&cluster, &survivors, &addrs, &survivors, CONVERGE_TIMEOUT)?;
    let lost_pnn = lost.to_string();
    let after = wait_metrics(
        &cluster,
        &survivors,
        "the survivors' scrapes after the power loss",
        |all| {
            let mut held = 0.0;
            for (&pnn, m) in all {
                let flag = m.value(
                    "ctdb_node_flag",
                    &[("pnn", &lost_pnn), ("flag", "disconnected")],
                )?;
                let node_ok = m.value("ctdb_node_ok", &[("pnn", &lost_pnn)])?;
                let down = m.value("ctdb_peer_link_down_total", &[("pnn", &lost_pnn)])?;
                if (flag, node_ok) != (1.0, 0.0) || down < 1.0 {
                    return Err(format!(
                        "node {pnn} sees node {lost}: disconnected {flag}, ok {node_ok}, \
                     link down {down} times"
                    ));
                }
                held += m.value("ctdb_public_addresses_held", &[])?;
            }
            let runs = all[&leader].value("ctdb_takeover_runs_total", &[("result", "ok")])?;
            if runs <= runs_before {
                return Err(format!("leader's takeover runs still {runs}"));
            }
            let timed = all[&leader].value("ctdb_takeover_run_duration_seconds_count", &[])?;
            if timed < runs {
                return Err(format!("{timed} takeover runs timed, {runs} counted"));
            }
            if held != 3.0 {
                return Err(format!("{held} addresses held by the survivors, want 3"));
            }
            Ok(())
        },
    )?;
    // What the leader's endpoint said (`--nocapture` shows it; README quotes it).
    eprintln!(
        "==== node {leader}'s scrape after the failover ====\n{}",
        after[&leader].text
    );
    Ok(())
}

/// The metric names `etc/grafana-dashboard.json` queries: every `ctdb_…` word of
/// every target's `expr`.
fn dashboard_metric_names() -> anyhow::Result<BTreeSet<String>> {
    let path = vm::daemon::workspace_root().join("etc/grafana-dashboard.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let mut exprs = Vec::new();
    collect_exprs(&json, &mut exprs);
    ensure!(!exprs.is_empty(), "{} has no query", path.display());
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("ctdb_") {
            let word: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + word.len()..];
            names.insert(word);
        }
    }
    Ok(names)
}

fn collect_exprs(json: &serde_json::Value, exprs: &mut Vec<String>) {
    match json {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(e)) => exprs.push(e.clone()),
                    _ => collect_exprs(value, exprs),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, exprs)),
        _ => {}
    }
}

/// The name every node's responder answers.
const DNS_NAME: &str = "nas.example.";

/// Node `pnn`'s fixed address on its public interface, where its responder listens.
fn responder_addr(pnn: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 20, 11 + pnn as u8)
}

/// `dig @server nas.example. A +short` from the client namespace: the addresses in
/// the answer's order (none for an answer without addresses).
fn dig(cluster: &Cluster, server: Ipv4Addr) -> Result<Vec<Ipv4Addr>, String> {
    let client = cluster.client().ok_or("built without a client")?;
    let mut cmd = client.command("dig");
    cmd.args([
        &format!("@{server}"),
        DNS_NAME,
        "A",
        "+short",
        "+tries=1",
        "+time=2",
    ]);
    let out = vm::process::run(cmd, Duration::from_secs(10)).map_err(|e| format!("{e:#}"))?;
    if !out.success() {
        return Err(format!("dig @{server}: {out}"));
    }
    out.stdout
        .lines()
        .map(|l| {
            l.parse()
                .map_err(|_| format!("dig @{server}: not an address: {l:?}"))
        })
        .collect()
}

/// The public addresses on the `pub0` of each node of `nodes` now (the fixed
/// responder addresses left out).
fn hosted(cluster: &Cluster, nodes: &[u32]) -> Result<BTreeMap<Ipv4Addr, u32>, String> {
    let mut on = BTreeMap::new();
    for &pnn in nodes {
        let out = cluster
            .node(pnn)
            .run("ip", &["-o", "-4", "addr", "show", "dev", "pub0"])
            .map_err(|e| format!("{e:#}"))?;
        for word in out.stdout.split_whitespace() {
            if let Some(Ok(addr)) = word.split_once('/').map(|(a, _)| a.parse::<Ipv4Addr>()) {
                if addr != responder_addr(pnn) {
                    on.insert(addr, pnn);
                }
            }
        }
    }
    Ok(on)
}

/// Asks node `asked`'s responder until it answers every address of `all`, and
/// checks every answer on the way: each address in it must be on the interface of
/// a node of `healthy` right after the answer (so never one still on the node
/// that left, nor one on no node). Returns the answers.
fn watch_answers(
    cluster: &Cluster,
    asked: u32,
    healthy: &[u32],
    all: &BTreeSet<Ipv4Addr>,
) -> anyhow::Result<Vec<Vec<Ipv4Addr>>> {
    let mut answers = Vec::new();
    // Ok(Err(..)) ends the wait at once: a stray answer is a failure, not a state
    // to wait out.
    let outcome = wait_until(
        CONVERGE_TIMEOUT,
        || -> Result<Result<(), String>, String> {
            let answer = dig(cluster, responder_addr(asked))?;
            let on = hosted(cluster, healthy)?;
            answers.push(answer.clone());
            if let Some(stray) = answer.iter().find(|a| !on.contains_key(a)) {
                return Ok(Err(format!(
                    "answered {stray}, which no healthy node of {healthy:?} holds \
                 (answer {answer:?}, held {on:?})"
                )));
            }
            if answer.iter().copied().collect::<BTreeSet<_>>() != *all {
                return Err(format!("answer {answer:?}, held {on:?}"));
            }
            Ok(Ok(()))
        },
    );
    match outcome {
        Ok(Ok(())) => Ok(answers),
        Ok(Err(stray)) => bail!("{stray}\nanswers so far: {answers:?}\n{}", cluster.logs()),
        Err(t) => bail!("the answers never settled: {t}\n{}", cluster.logs()),
    }
}

/// Given three nodes each answering `nas.example.` on its fixed public address,
/// and a follower A asked by the client:
/// - every responder answers the three public addresses, the first one rotating;
/// - when the other follower D is disabled (`ctdb disable`), A's responder leaves
///   D's address out from the moment A sees the flag until a healthy node holds
///   it, and never answers an address held by D or by no node;
/// - when the leader L loses power, the same from the moment A sees it
///   disconnected (before that nobody knows it is gone: keepalives take 2.5 s);
///   meanwhile every follower's lease runs out and drops its addresses, and A
///   must not answer those either until the new leader has placed them again.
#[test]
fn dns_answers_only_addresses_on_healthy_nodes() -> anyhow::Result<()> {
    let mut cluster = Cluster::builder()
        .nodes(3)
        .shared_volume(true)
        .client(true)
        .build()?;
    for pnn in ALL {
        let node = cluster.node(pnn);
        let addr = responder_addr(pnn);
        node.netns()
            .ip(&["addr", "add", &format!("{addr}/24"), "dev", "pub0"])?;
        let conf_path = node.etc_dir().join("ctdb.conf");
        let mut conf = std::fs::read_to_string(&conf_path)
            .with_context(|| format!("reading {}", conf_path.display()))?;
        conf.push_str(&format!(
            "[dns]\n\tlisten = {addr}:53\n\tname = {DNS_NAME}\n\tttl = 1\n"
        ));
        node.write_config("ctdb.conf", &conf)?;
    }
    cluster.start(Daemon::Ours, START_TIMEOUT)?;
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let followers: Vec<u32> = ALL.into_iter().filter(|&p| p != leader).collect();
    let (asked, disabled) = (followers[0], followers[1]);
    let addrs: Vec<_> = ALL.iter().map(|&i| default_public(i)).collect();
    let all: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
    let placement = wait_placed(&cluster, &ALL, &addrs, &ALL, CONVERGE_TIMEOUT)?;
    let held_by = |placement: &BTreeMap<Ipv4Addr, u32>, pnn: u32| {
        placement
            .iter()
            .find(|(_, p)| **p == pnn)
            .map(|(a, _)| *a)
            .ok_or_else(|| anyhow!("node {pnn} holds nothing: {placement:?}"))
    };

    // Every responder answers every address.
    for pnn in ALL {
        watch_answers(&cluster, pnn, &ALL, &all)?;
    }
    // Round robin: consecutive answers start with each address in turn.
    let firsts: BTreeSet<Ipv4Addr> = (0..3)
        .map(|_| dig(&cluster, responder_addr(asked)).map(|a| a[0]))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!(e))?;
    ensure!(firsts == all, "three answers began with only {firsts:?}");
    // The whole answer, as an administrator sees it (README quotes it).
    let client = cluster.client().expect("built with a client");
    let mut cmd = client.command("dig");
    cmd.args([&format!("@{}", responder_addr(asked)), DNS_NAME, "A"]);
    let full = vm::process::run(cmd, Duration::from_secs(10))?;
    eprintln!(
        "==== dig @{} {DNS_NAME} A ====\n{}",
        responder_addr(asked),
        full.stdout
    );

    // The other follower is disabled.
    let disabled_addr = held_by(&placement, disabled)?;
    cluster
        .ctdb_ok(disabled, Tool::Ours, &["disable"])
        .map_err(|e| anyhow!(e))?;
    cluster.wait_status(&[asked], CONVERGE_TIMEOUT, "the follower DISABLED", |s| {
        s.nodes
            .iter()
            .any(|(p, f)| *p == disabled && f.contains("DISABLED"))
    })?;
    let answers = watch_answers(&cluster, asked, &[asked, leader], &all)?;
    let without = answers
        .iter()
        .filter(|a| !a.contains(&disabled_addr))
        .count();
    eprintln!(
        "==== node {disabled} disabled: {} answers until {disabled_addr} was back, \
         {without} without it",
        answers.len()
    );

    // It comes back; the leader loses power.
    cluster
        .ctdb_ok(disabled, Tool::Ours, &["enable"])
        .map_err(|e| anyhow!(e))?;
    cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    let placement = wait_placed(&cluster, &ALL, &addrs, &ALL, CONVERGE_TIMEOUT)?;
    watch_answers(&cluster, asked, &ALL, &all)?;
    let lost_addr = held_by(&placement, leader)?;
    power_off_machine(&mut cluster, leader)?;
    cluster.wait_status(&[asked], CONVERGE_TIMEOUT, "the leader DISCONNECTED", |s| {
        s.nodes
            .iter()
            .any(|(p, f)| *p == leader && f.contains("DISCONNECTED"))
    })?;
    let answers = watch_answers(&cluster, asked, &followers, &all)?;
    let without = answers.iter().filter(|a| !a.contains(&lost_addr)).count();
    eprintln!(
        "==== leader {leader} powered off: {} answers until {lost_addr} was back, \
         {without} without it: {answers:?}",
        answers.len()
    );
    Ok(())
}
