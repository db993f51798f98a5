//! Scenario: a public interface goes down.
//!
//! ```text
//!   node 0: pub0 ── pub bridge ── pub0 :node 1      (private network untouched)
//! ```
//!
//! Given two nodes that share the public addresses `10.0.20.101` and `10.0.20.102`,
//! When node 0's public interface `pub0` goes down (link down inside node 0),
//! Then node 0 removes its addresses from `pub0` and the leader places them on node 1
//!   (node 0 can no longer host them);
//! When the link comes back,
//! Then the leader gives node 0 addresses again (LCP2 rebalances).

use std::time::Duration;

use anyhow::Context as _;
use vm::{wait_until, Cluster, Daemon, Tool};

const TIMEOUT: Duration = Duration::from_secs(30);

/// `ctdb ip` on node `on`, as (address, pnn) pairs.
fn ips(cluster: &Cluster, on: u32) -> Result<Vec<(String, i64)>, String> {
    let out = cluster
        .node(on)
        .ctdb(Tool::Ours, &["ip"])
        .map_err(|e| format!("{e:#}"))?;
    if !out.success() {
        return Err(out.to_string());
    }
    Ok(out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (ip, pnn) = l.split_once(' ')?;
            Some((ip.to_string(), pnn.trim().parse().ok()?))
        })
        .collect())
}

/// Addresses configured on node `pnn`'s `pub0`, as the kernel says.
fn configured(cluster: &Cluster, pnn: u32) -> Vec<String> {
    cluster
        .node(pnn)
        .run("ip", &["-o", "-4", "addr", "show", "dev", "pub0"])
        .map(|o| {
            o.stdout
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3))
                .filter(|a| a.starts_with("10.0.20.1"))
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn addresses_leave_a_downed_interface_and_come_back() -> anyhow::Result<()> {
    let mut cluster = Cluster::builder()
        .nodes(2)
        .shared_volume(true)
        .public_addresses(["10.0.20.101/24 pub0", "10.0.20.102/24 pub0"])
        .build()?;
    cluster.start(Daemon::Ours, TIMEOUT)?;
    let spread = |c: &Cluster| -> Result<(), String> {
        let list = ips(c, 0)?;
        let on = |p| list.iter().filter(|(_, n)| *n == p).count();
        if list.len() == 2 && on(0) == 1 && on(1) == 1 {
            Ok(())
        } else {
            Err(format!("{list:?}"))
        }
    };
    wait_until(TIMEOUT, || spread(&cluster)).context("addresses never spread over both nodes")?;

    cluster
        .node(0)
        .run("ip", &["link", "set", "pub0", "down"])?;
    wait_until(TIMEOUT, || {
        let list = ips(&cluster, 0)?;
        let node0 = configured(&cluster, 0);
        if list.iter().all(|(_, n)| *n == 1) && node0.is_empty() {
            Ok(())
        } else {
            Err(format!("ctdb ip {list:?}, node 0 pub0 {node0:?}"))
        }
    })
    .with_context(|| {
        format!(
            "addresses did not leave the downed interface for node 1\n{}",
            cluster.logs()
        )
    })?;
    assert_eq!(configured(&cluster, 1).len(), 2);

    cluster.node(0).run("ip", &["link", "set", "pub0", "up"])?;
    wait_until(TIMEOUT, || spread(&cluster))
        .context("node 0 got no address back after its link returned")?;
    Ok(())
}
