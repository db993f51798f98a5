//! `sudo tests/vm/demo.sh`: a local 3-node ctdb-rs cluster in network namespaces
//! serving SMB with Samba clustered (`clustering = yes`: smbd keeps its share
//! modes, locks and users in the daemons' clustered databases); a user added on
//! one node; a file held open deny-write through one node refusing a write open
//! through another; a file written through a public address, the node holding
//! that address powered off, and the file read back through the same address
//! from a survivor; `ctdb status` and `ctdb ip` before and after.
//!
//! The shared volume is one host directory, or with `--gluster` (`sudo
//! tests/vm/demo.sh --gluster`) a replica-3 GlusterFS volume across the three
//! nodes with the recommended options ([`vm::gluster`]); powering a node off then
//! takes its brick down too.
//!
//! Uses the test harness (`vm::Cluster`): every namespace, process and temporary
//! directory is removed when the cluster is dropped, on error too.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use vm::gluster::{GlusterOptions, Volume};
use vm::public::{default_public, power_off_machine};
use vm::samba::{SAMBA_PASSWORD, SAMBA_USER, SMBCLIENT_TIMEOUT};
use vm::sandbox::TempDir;
use vm::{wait_until, Cluster, Daemon, Tool};

const ALL: [u32; 3] = [0, 1, 2];
const TIMEOUT: Duration = Duration::from_secs(60);

/// The share-mode client (Samba's Python bindings); its header says what it does.
const SHARE_MODES_CLIENT: &str = include_str!("demo_share_modes.py");

fn main() {
    // One plain line on failure (a missing prerequisite, a step that did not
    // happen), never a backtrace: the demo is the first thing a new user runs.
    if let Err(e) = run() {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

/// The volume `args` (the demo's arguments) ask for: `--gluster` or nothing.
fn volume_from(args: &[String]) -> anyhow::Result<Volume> {
    match args {
        [] => Ok(Volume::Dir),
        [flag] if flag == "--gluster" => Ok(Volume::Gluster(GlusterOptions::Recommended)),
        _ => bail!("usage: sudo tests/vm/demo.sh [--gluster], not {args:?}"),
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let volume = volume_from(&args)?;
    println!("== building a 3-node cluster: one network + mount namespace per node,");
    println!("   private bridge 192.168.20.0/24, public bridge 10.0.20.0/24 with a client,");
    println!(
        "   shared volume /srv/shared (nodes, public_addresses, recovery lock, smb.conf, share)"
    );
    match volume {
        Volume::Dir => println!("   on one host directory bind-mounted in every node"),
        Volume::Gluster(_) => println!(
            "   on a replica-3 GlusterFS volume: a glusterd and a brick per node, FUSE-mounted \
             in each (recommended options)"
        ),
    }
    let mut cluster = Cluster::builder()
        .nodes(3)
        .volume(volume)
        .samba(true)
        .client(true)
        .tunables("MonitorInterval=5\n")
        .build()
        .context("building the cluster (run as root: sudo tests/vm/demo.sh)")?;
    vm::nas::prepare(&cluster, None)?;
    println!("== starting ctdbd on nodes 0, 1, 2 (event scripts 00.ctdb 01.reclock 10.interface 50.samba)");
    cluster.start(Daemon::Ours, TIMEOUT)?;
    let agreed = cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
    println!(
        "== all three OK (smbd with clustering = yes started and monitored on each); node {} leads",
        agreed.leader
    );
    println!("== ctdb status on node 0:");
    print_status(&cluster)?;
    println!("== public addresses (ctdb ip on node 0), once all are hosted:");
    print_ips(&cluster, &ALL)?;

    let registered = cluster
        .samba_user_node()
        .context("the harness registers the test user once ctdbd runs")?;
    println!(
        "== {SAMBA_USER} was added with smbpasswd -a on node {registered} only, once ctdbd ran \
         (passdb.tdb is replicated to every node)"
    );
    show_share_modes(&cluster)?;

    let p = default_public(0);
    let holder = host_of(&cluster, 0, p)?;
    let dir = TempDir::new("demo")?;
    let local = dir.path().join("hello.txt");
    std::fs::write(&local, "hello from the ctdb-rs demo\n")?;
    println!("== smbclient //{p}/share: put hello.txt (served by node {holder})");
    let out = cluster.smbclient(p, &format!("put {} hello.txt", local.display()))?;
    ensure!(out.success(), "smbclient put:\n{out}");

    if volume == Volume::Dir {
        println!("== powering off node {holder} (links cut, daemon killed)");
    } else {
        println!(
            "== powering off node {holder} (links cut, daemon and its GlusterFS brick killed)"
        );
    }
    power_off_machine(&mut cluster, holder)?;
    let survivors: Vec<u32> = ALL.into_iter().filter(|n| *n != holder).collect();
    let after = cluster.wait_agreement(&survivors, &survivors, TIMEOUT)?;
    println!(
        "== node {holder} is DISCONNECTED; node {} leads",
        after.leader
    );
    let back = dir.path().join("back.txt");
    wait_until(TIMEOUT, || {
        let out = cluster
            .smbclient(p, &format!("get hello.txt {}", back.display()))
            .map_err(|e| format!("{e:#}"))?;
        if out.success() {
            Ok(())
        } else {
            Err(out.to_string())
        }
    })
    .context("reading hello.txt back through the moved address")?;
    println!(
        "== smbclient //{p}/share: get hello.txt from node {}: {}",
        host_of(&cluster, survivors[0], p)?,
        std::fs::read_to_string(&back)?.trim_end()
    );
    println!("== ctdb status on node {}:", survivors[0]);
    print!(
        "{}",
        cluster
            .node(survivors[0])
            .ctdb(Tool::Ours, &["status"])?
            .stdout
    );
    println!("== public addresses after the failover:");
    print!(
        "{}",
        cluster.node(survivors[0]).ctdb(Tool::Ours, &["ip"])?.stdout
    );

    println!("== tearing everything down");
    drop(cluster);
    println!("== done");
    Ok(())
}

/// Client A holds a file open deny-write through an address of one node; client
/// B's write open through another node's address is refused, and granted once A
/// has closed. Prints each step; fails unless each went so.
fn show_share_modes(cluster: &Cluster) -> anyhow::Result<()> {
    // Two addresses that two different nodes hold (once the takeover runs have
    // spread them).
    let ((addr_a, node_a), (addr_b, node_b)) = wait_until(TIMEOUT, || {
        let ips = vm::public::ctdb_ip(cluster, 0)?;
        let held: Vec<(Ipv4Addr, u32)> = ips
            .iter()
            .filter_map(|(addr, host)| host.map(|pnn| (*addr, pnn)))
            .collect();
        let first = *held.first().ok_or("no address is hosted")?;
        let second = held
            .iter()
            .find(|(_, pnn)| *pnn != first.1)
            .copied()
            .ok_or_else(|| format!("every address is on node {}: {ips:?}", first.1))?;
        Ok::<_, String>((first, second))
    })
    .context("two public addresses on two different nodes")?;
    println!(
        "== share modes across nodes: client A through {addr_a} (node {node_a}), \
         client B through {addr_b} (node {node_b})"
    );
    let Some(client) = cluster.client() else {
        bail!("the cluster has no client namespace");
    };
    let mut cmd = vm::samba::client_command(client, "/usr/bin/python3");
    cmd.arg("-c")
        .arg(SHARE_MODES_CLIENT)
        .args([SAMBA_USER, SAMBA_PASSWORD])
        .arg(addr_a.to_string())
        .arg(addr_b.to_string())
        .arg("sharemode.txt");
    let out = vm::process::run(cmd, SMBCLIENT_TIMEOUT)?;
    let result = |step: &str| {
        out.stdout.lines().find_map(|line| {
            line.strip_prefix(step)
                .and_then(|rest| rest.strip_prefix(' '))
        })
    };
    let steps: [(&str, Ipv4Addr, u32, &str, &str); 4] = [
        (
            "a-open",
            addr_a,
            node_a,
            "A opens sharemode.txt to read and write, others may only read",
            "granted",
        ),
        (
            "b-open",
            addr_b,
            node_b,
            "B opens sharemode.txt to write",
            "NT_STATUS_SHARING_VIOLATION",
        ),
        ("a-close", addr_a, node_a, "A closes it", "granted"),
        (
            "b-open-again",
            addr_b,
            node_b,
            "B opens sharemode.txt to write again",
            "granted",
        ),
    ];
    for (step, addr, node, what, expected) in steps {
        let Some(got) = result(step) else {
            bail!("the share-mode client stopped before {step}:\n{out}");
        };
        let said = match got {
            "granted" if step == "a-close" => "closed".to_owned(),
            "granted" => "granted".to_owned(),
            refused => format!("refused: {refused}"),
        };
        println!("   {what} (via {addr}, node {node}): {said}");
        ensure!(
            got == expected,
            "{step}: expected {expected}, got {got}:\n{out}"
        );
    }
    Ok(())
}

/// The node hosting `addr` according to `ctdb ip` on `on`.
fn host_of(cluster: &Cluster, on: u32, addr: std::net::Ipv4Addr) -> anyhow::Result<u32> {
    let ips = vm::public::ctdb_ip(cluster, on).map_err(anyhow::Error::msg)?;
    ips.get(&addr)
        .copied()
        .flatten()
        .with_context(|| format!("{addr} is not hosted: {ips:?}"))
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
