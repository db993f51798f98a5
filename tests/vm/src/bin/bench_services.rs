//! File-service failover benchmark for `BENCHMARKS.md`: from the loss of the node
//! serving public address P until a client's read through P succeeds again —
//! `smbclient get` for SMB, `nfs-cat` for NFS (NFS-Ganesha under `60.nfs`). Losses:
//! `kill -9` of the node's ctdbd (its guardian removes the address; ganesha keeps
//! running there, smbd, clustered, exits as it loses its ctdbd) and power loss
//! (both links cut, daemon killed). NFS is measured with the grace period on
//! takeover (5 s in this configuration) and without. Release builds, default tunables but `EnableBans=0` (the same node is
//! lost and brought back again and again, which the flapping-node ban would stop).
//!
//! `sudo tests/vm/bench/services.sh [RUNS]` (builds, then runs this). Before each
//! sample the lost node is brought back and the cluster waits until every address
//! is placed and P serves the file. Then, in a loop, a 100 ms TCP probe of the
//! service's port through P and, once it answers, the real client (a new process
//! each time); the time is when the real client has read the file.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use vm::nfs::{nfs_cat, nfs_cp, NfsSettings};
use vm::public::{default_public, power_off_machine, power_on_machine, wait_placed};
use vm::sandbox::TempDir;
use vm::{wait_until, Cluster, Daemon};

const ALL: [u32; 3] = [0, 1, 2];
const TIMEOUT: Duration = Duration::from_secs(60);
const FILE: &str = "bench.txt";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Kill,
    PowerOff,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Client {
    Smb,
    Nfs,
}

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().context("RUNS must be a number"))
        .transpose()?
        .unwrap_or(10);
    if std::env::var("CTDB_RS_PROFILE").as_deref() != Ok("release") {
        bail!("run through tests/vm/bench/services.sh (it sets CTDB_RS_PROFILE=release)");
    }
    let mut rows = Vec::new();
    for grace in [false, true] {
        // The benchmark power-cycles nodes over and over, which is what the leader's
        // ban of a node that keeps rejoining is for: bans off, the rest default.
        let mut cluster = Cluster::builder()
            .nodes(3)
            .samba(true)
            .client(true)
            .tunables("EnableBans=0\n")
            .build()?;
        vm::nas::prepare(
            &cluster,
            Some(NfsSettings {
                grace_on_takeover: grace,
            }),
        )?;
        cluster.start(Daemon::Ours, TIMEOUT)?;
        let dir = TempDir::new("bench-services")?;
        let local = dir.path().join(FILE);
        std::fs::write(&local, "ctdb-rs services benchmark\n")?;
        let clients: &[Client] = if grace {
            &[Client::Nfs]
        } else {
            &[Client::Smb, Client::Nfs]
        };
        for &client in clients {
            for fault in [Fault::Kill, Fault::PowerOff] {
                let mut samples = Vec::new();
                for run in 0..runs {
                    eprintln!(
                        "== {client:?} grace={grace} {fault:?}: run {}/{runs}",
                        run + 1
                    );
                    let p = default_public(0);
                    // A new name each time: nfs-cp refuses to overwrite (NFS4ERR_EXIST).
                    let name = format!("bench-{client:?}-{grace}-{fault:?}-{run}.txt");
                    let holder = settle(&cluster, p, client, &local, &name)?;
                    let start = Instant::now();
                    match fault {
                        Fault::Kill => cluster.kill_daemon(holder)?,
                        Fault::PowerOff => power_off_machine(&mut cluster, holder)?,
                    }
                    // A client attempt while the address is nowhere blocks in SYN
                    // retransmission for seconds; a 100 ms TCP probe of the
                    // service's port first keeps the resolution at the probe's.
                    wait_until(TIMEOUT, || {
                        port_answers(&cluster, p, client)?;
                        read(&cluster, p, client, &dir, &name)
                    })
                    .with_context(|| format!("{client:?} through {p} after {fault:?}"))?;
                    samples.push(start.elapsed());
                    match fault {
                        Fault::Kill => cluster.restart_daemon(holder)?,
                        Fault::PowerOff => power_on_machine(&mut cluster, holder)?,
                    }
                }
                rows.push((client, grace, fault, samples));
            }
        }
        drop(cluster);
    }
    println!("| client | loss | runs | median s | min s | max s |");
    println!("|---|---|---|---|---|---|");
    for (client, grace, fault, mut samples) in rows {
        samples.sort();
        let what = match (client, grace) {
            (Client::Smb, _) => "smbclient get".to_owned(),
            (Client::Nfs, false) => "nfs-cat (no grace on takeover)".to_owned(),
            (Client::Nfs, true) => "nfs-cat (grace on takeover, 5 s)".to_owned(),
        };
        let loss = match fault {
            Fault::Kill => "kill -9 ctdbd",
            Fault::PowerOff => "power loss",
        };
        println!(
            "| {what} | {loss} | {} | {:.2} | {:.2} | {:.2} |",
            samples.len(),
            samples[samples.len() / 2].as_secs_f64(),
            samples[0].as_secs_f64(),
            samples[samples.len() - 1].as_secs_f64(),
        );
    }
    Ok(())
}

/// Waits until all three nodes agree, every address is placed and the file can be
/// written and read through `p`; returns the node hosting `p`.
fn settle(
    cluster: &Cluster,
    p: Ipv4Addr,
    client: Client,
    local: &std::path::Path,
    name: &str,
) -> anyhow::Result<u32> {
    cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
    let addrs: Vec<Ipv4Addr> = (0..3).map(default_public).collect();
    let placement = wait_placed(cluster, &ALL, &addrs, &ALL, TIMEOUT)?;
    let holder = placement[&p];
    wait_until(TIMEOUT, || {
        let out = match client {
            Client::Smb => cluster.smbclient(p, &format!("put {} {name}", local.display())),
            Client::Nfs => nfs_cp(client_ns(cluster)?, local, p, name, TIMEOUT),
        }
        .map_err(|e| format!("{e:#}"))?;
        if out.success() {
            Ok(())
        } else {
            Err(out.to_string())
        }
    })
    .context("writing the file before the fault")?;
    Ok(holder)
}

/// Whether the service's TCP port at `p` accepts a connection within 100 ms.
fn port_answers(cluster: &Cluster, p: Ipv4Addr, client: Client) -> Result<(), String> {
    let port = match client {
        Client::Smb => 445,
        Client::Nfs => 2049,
    };
    let ns = client_ns(cluster)?.path();
    vm::watch::in_netns(&ns, || {
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from((p, port)),
            Duration::from_millis(100),
        )
    })
    .map(drop)
    .map_err(|e| format!("{p}:{port}: {e}"))
}

fn client_ns(cluster: &Cluster) -> Result<&vm::sandbox::NetNs, String> {
    cluster.client().ok_or_else(|| "no client".to_owned())
}

/// One read of the file through `p`.
fn read(
    cluster: &Cluster,
    p: Ipv4Addr,
    client: Client,
    dir: &TempDir,
    name: &str,
) -> Result<(), String> {
    let out = match client {
        Client::Smb => {
            let back = dir.path().join("back");
            cluster.smbclient(p, &format!("get {name} {}", back.display()))
        }
        Client::Nfs => nfs_cat(client_ns(cluster)?, p, name, Duration::from_secs(5)),
    }
    .map_err(|e| format!("{e:#}"))?;
    if out.success() {
        Ok(())
    } else {
        Err(out.to_string())
    }
}
