//! What operators watch: the Prometheus endpoint (`[metrics]`), scraped with curl
//! and read with a Prometheus exposition parser (`prometheus-parse`), across a
//! failover; and the example Grafana dashboard, whose every query must name a
//! metric the daemon exports.
//!
//! Topology:
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
//! Waits poll a condition up to a deadline; values are compared with what
//! `ctdb status` and `ctdb ip` say.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context as _};
use prometheus_parse::{Scrape, Value};
use vm::cluster::private_addr;
use vm::public::{default_public, power_off_machine, wait_placed};
use vm::{wait_until, Cluster, Daemon};

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
