//! `sudo tests/vm/demo.sh`: a local 3-node ctdb-rs cluster in network namespaces,
//! one node powered off, and what `ctdb status` says before and after.
//!
//! Uses the test harness (`vm::Cluster`): every namespace, process and temporary
//! directory is removed when the cluster is dropped, on error too.

use std::time::Duration;

use anyhow::Context as _;
use vm::{Cluster, Daemon, Tool};

const ALL: [u32; 3] = [0, 1, 2];
const TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> anyhow::Result<()> {
    println!("== building a 3-node cluster: one network + mount namespace per node,");
    println!(
        "   private bridge 192.168.20.0/24, shared volume /srv/shared (nodes file, recovery lock)"
    );
    let mut cluster = Cluster::builder()
        .nodes(3)
        .shared_volume(true)
        .build()
        .context("building the cluster (run as root: sudo tests/vm/demo.sh)")?;
    println!("== starting ctdbd on nodes 0, 1, 2");
    cluster.start(Daemon::Ours, TIMEOUT)?;
    let agreed = cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
    println!(
        "== all three OK on every node; node {} leads",
        agreed.leader
    );
    println!("== ctdb status on node 0:");
    print_status(&cluster)?;
    println!("== public addresses (ctdb ip on node 0), once all are hosted:");
    print_ips(&cluster, &ALL)?;

    println!("== powering off node 2 (links cut, daemon killed)");
    cluster.power_off(2)?;
    cluster.wait_status(&[0, 1], TIMEOUT, "node 2 DISCONNECTED", |s| {
        s.flags(2)
            .is_some_and(|f| f.split('|').any(|f| f == "DISCONNECTED"))
    })?;
    let after = cluster.wait_agreement(&[0, 1], &[0, 1], TIMEOUT)?;
    println!(
        "== node 2 is DISCONNECTED on nodes 0 and 1; node {} leads",
        after.leader
    );
    println!("== ctdb status on node 0:");
    print_status(&cluster)?;
    println!("== public addresses after the failover (node 2's moved to the survivors):");
    print_ips(&cluster, &[0, 1])?;

    println!("== Samba (smbd) comes with a later issue: not part of this demo");
    println!("== tearing everything down");
    drop(cluster);
    println!("== done");
    Ok(())
}

/// Waits until every public address is hosted by one of `hosts`, then prints
/// `ctdb ip` from node 0.
fn print_ips(cluster: &Cluster, hosts: &[u32]) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let out = cluster.node(0).ctdb(Tool::Ours, &["ip"])?;
        let placed = out.stdout.lines().skip(1).all(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| hosts.contains(&p))
        });
        if placed || std::time::Instant::now() > deadline {
            print!("{}", out.stdout);
            if !placed {
                anyhow::bail!("public addresses not all hosted within {TIMEOUT:?}");
            }
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn print_status(cluster: &Cluster) -> anyhow::Result<()> {
    let out = cluster.node(0).ctdb(Tool::Ours, &["status"])?;
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    Ok(())
}
