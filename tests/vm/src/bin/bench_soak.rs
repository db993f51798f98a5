//! Soak test (issue #10, "long-running load"; results in `BENCHMARKS.md`, "Soak"):
//! a 3-node NAS cluster (release build, default tunables, the usual event scripts,
//! clustered smbd) under SMB and persistent-database writes for MINUTES minutes
//! while nodes are killed (`kill -9` of ctdbd) and powered off at random and brought
//! back. Bounded in time and not part of CI: `sudo tests/vm/bench/soak.sh MINUTES
//! [SEED]`.
//!
//! Each round writes one new file through every public address (`smbclient put`,
//! from the client namespace) and stores one record in a persistent database
//! (`ctdb pstore`, through a random live node); a write counts as acknowledged when
//! the client exited 0. Every 20–40 s one node is lost (kill or power loss, at
//! random) for 5–15 s. At the end, with every node back, it checks:
//! - every acknowledged file is on the shared volume with its contents;
//! - every acknowledged record reads back (`ctdb pfetch`) on every node, and each
//!   persistent database's local copy (`ctdb cattdb`) is the same on all nodes;
//! - each ctdbd that lived at least [`FLAT_AFTER`] kept its resident memory flat:
//!   its last sample no more than 20 % (or 4 MiB) above its sample at one minute.
//!
//! It prints what it did and a table for BENCHMARKS.md, and exits 1 if a check
//! failed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use vm::public::{default_public, power_off_machine, power_on_machine, wait_placed};
use vm::sandbox::TempDir;
use vm::{Cluster, Daemon, Tool};

const ALL: [u32; 3] = [0, 1, 2];
const TIMEOUT: Duration = Duration::from_secs(120);
const DB: &str = "soak.tdb";
/// A daemon's memory is judged from its sample at one minute of life on.
const BASELINE_AT: Duration = Duration::from_secs(60);
/// Only daemons that lived this long are judged (a short life shows no trend).
const FLAT_AFTER: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Loss {
    Kill,
    PowerOff,
}

/// Resident memory of one daemon process over its life (kB).
#[derive(Debug)]
struct MemoryTrace {
    pnn: u32,
    started: Instant,
    baseline_kb: Option<u64>,
    last_kb: u64,
    max_kb: u64,
    lived: Duration,
}

/// A small deterministic generator, so that a seed replays the same faults.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let minutes: u64 = args
        .next()
        .map(|a| a.parse().context("MINUTES must be a number"))
        .transpose()?
        .unwrap_or(10);
    let seed: u64 = match args.next() {
        Some(a) => a.parse().context("SEED must be a number")?,
        None => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64
                | 1
        }
    };
    // soak.sh runs the release build; a correctness and memory soak means as much
    // on the debug one (`CTDB_RS_PROFILE` unset), which the output names.
    let profile = std::env::var("CTDB_RS_PROFILE").unwrap_or_else(|_| "debug".into());
    // `CTDB_RS_DAEMON=stock`: the same soak on CTDB 4.17's ctdbd (our tool stays
    // the client: it speaks the same protocol to either daemon).
    let daemon = Daemon::from_env()?;
    eprintln!("soak: {minutes} min, seed {seed}, {profile} build, {daemon:?} ctdbd");
    let mut rng = Rng(seed);

    let mut cluster = Cluster::builder()
        .nodes(3)
        .samba(true)
        .client(true)
        .build()?;
    // For the stock daemon this also enables the harness's address script: CTDB
    // 4.17 leaves putting addresses on interfaces to its event scripts.
    vm::nas::prepare_for(&cluster, None, daemon)?;
    cluster.start(daemon, TIMEOUT)?;
    settle(&cluster)?;
    let attach = cluster
        .node(0)
        .ctdb(Tool::Ours, &["attach", DB, "persistent"])?;
    if !attach.success() {
        bail!("attaching {DB}: {attach}");
    }

    let dir = TempDir::new("soak")?;
    let mut files: Vec<(String, String)> = Vec::new();
    // key -> (value, the node it went through, when)
    let mut records: BTreeMap<String, (String, u32, Duration)> = BTreeMap::new();
    let (mut smb_failed, mut pstore_failed) = (0u64, 0u64);
    let mut memory: BTreeMap<u32, MemoryTrace> = BTreeMap::new();
    let mut losses: Vec<(Duration, u32, Loss)> = Vec::new();
    let mut down: Option<(u32, Loss, Instant, Duration)> = None;
    let start = Instant::now();
    let mut next_loss = start + Duration::from_secs(20 + rng.below(21));
    let end = start + Duration::from_secs(minutes * 60);
    let mut round = 0u64;

    while Instant::now() < end {
        round += 1;
        for i in 0..3 {
            let p = default_public(i);
            let name = format!("soak-{round}-{i}.txt");
            let contents = format!("round {round} through {p}\n");
            let local = dir.path().join(&name);
            std::fs::write(&local, &contents)?;
            match cluster.smbclient(p, &format!("put {} {name}", local.display())) {
                Ok(out) if out.success() => files.push((name, contents)),
                _ => smb_failed += 1,
            }
        }
        let live: Vec<u32> = ALL
            .into_iter()
            .filter(|p| down.map(|d| d.0) != Some(*p))
            .collect();
        let via = live[rng.below(live.len() as u64) as usize];
        let (key, value) = (format!("key-{round}"), format!("value-{round}"));
        match cluster
            .node(via)
            .ctdb(Tool::Ours, &["pstore", DB, &key, &value])
        {
            Ok(out) if out.success() => {
                records.insert(key, (value, via, start.elapsed()));
            }
            _ => pstore_failed += 1,
        }
        sample_memory(&mut cluster, &down, &mut memory);

        let now = Instant::now();
        match down {
            Some((pnn, loss, since, length)) if since.elapsed() >= length => {
                eprintln!("{:>7.1} s: node {pnn} back", start.elapsed().as_secs_f64());
                bring_back(&mut cluster, pnn, loss)?;
                down = None;
                next_loss = now + Duration::from_secs(20 + rng.below(21));
            }
            None if now >= next_loss => {
                let pnn = rng.below(3) as u32;
                let loss = if rng.below(2) == 0 {
                    Loss::Kill
                } else {
                    Loss::PowerOff
                };
                let length = Duration::from_secs(5 + rng.below(11));
                eprintln!(
                    "{:>7.1} s: {loss:?} of node {pnn} for {length:?}",
                    start.elapsed().as_secs_f64()
                );
                match loss {
                    Loss::Kill => cluster.kill_daemon(pnn)?,
                    Loss::PowerOff => power_off_machine(&mut cluster, pnn)?,
                }
                losses.push((start.elapsed(), pnn, loss));
                down = Some((pnn, loss, now, length));
            }
            _ => {}
        }
    }
    if let Some((pnn, loss, _, _)) = down {
        bring_back(&mut cluster, pnn, loss)?;
    }
    settle(&cluster)?;
    let ran = start.elapsed();

    let mut problems = Vec::new();
    let mut files_lost = 0;
    for (name, contents) in &files {
        let path = cluster.shared_path(&format!("share/{name}"))?;
        if std::fs::read_to_string(&path).ok().as_deref() != Some(contents.as_str()) {
            files_lost += 1;
            problems.push(format!("acknowledged file {name} is missing or differs"));
        }
    }
    let mut records_lost = 0;
    for pnn in ALL {
        for (key, (value, via, at)) in &records {
            let out = cluster.node(pnn).ctdb(Tool::Ours, &["pfetch", DB, key])?;
            if !out.success() || out.stdout.trim_end() != value {
                records_lost += 1;
                problems.push(format!(
                    "node {pnn}: record {key}, acknowledged through node {via} at {:.1} s, \
                     reads {out}",
                    at.as_secs_f64()
                ));
            }
        }
    }
    let persistent = persistent_databases(&cluster)?;
    for db in &persistent {
        let copies: Vec<String> = ALL
            .into_iter()
            .map(|pnn| {
                cluster
                    .node(pnn)
                    .ctdb(Tool::Ours, &["cattdb", db])
                    .map(|out| out.stdout)
            })
            .collect::<anyhow::Result<_>>()?;
        if copies.iter().any(|c| *c != copies[0]) {
            problems.push(format!("persistent database {db} differs between nodes"));
        }
    }
    for (pid, trace) in &memory {
        if trace.lived < FLAT_AFTER {
            continue;
        }
        let Some(baseline) = trace.baseline_kb else {
            continue;
        };
        if trace.last_kb > (baseline * 12 / 10).max(baseline + 4096) {
            problems.push(format!(
                "ctdbd {pid} (node {}) grew from {baseline} kB to {} kB",
                trace.pnn, trace.last_kb
            ));
        }
    }

    println!(
        "soak: {:.1} min, seed {seed}, {profile} build, {round} rounds",
        ran.as_secs_f64() / 60.0
    );
    println!(
        "losses: {} ({} kill -9, {} power off)",
        losses.len(),
        losses.iter().filter(|l| l.2 == Loss::Kill).count(),
        losses.iter().filter(|l| l.2 == Loss::PowerOff).count()
    );
    println!(
        "SMB writes acknowledged: {} (not acknowledged: {smb_failed}); lost: {files_lost}",
        files.len()
    );
    println!(
        "persistent records acknowledged: {} (not acknowledged: {pstore_failed}); \
         lost or wrong on some node: {records_lost}",
        records.len()
    );
    println!(
        "persistent databases compared on all nodes: {} ({})",
        persistent.len(),
        persistent.join(", ")
    );
    println!("| ctdbd (node, pid) | lived, s | RSS at 1 min, kB | last RSS, kB | max RSS, kB |");
    println!("|---|---|---|---|---|");
    for (pid, t) in &memory {
        println!(
            "| node {}, {pid} | {:.0} | {} | {} | {} |",
            t.pnn,
            t.lived.as_secs_f64(),
            t.baseline_kb.map_or("-".to_owned(), |k| k.to_string()),
            t.last_kb,
            t.max_kb
        );
    }
    // Namespaces, mounts and daemons go now: `exit` below would skip the drops.
    drop(cluster);
    drop(dir);
    if problems.is_empty() {
        println!("all checks passed");
        Ok(())
    } else {
        for p in &problems {
            println!("FAILED: {p}");
        }
        std::process::exit(1);
    }
}

/// Waits until all three nodes agree and every public address is placed.
fn settle(cluster: &Cluster) -> anyhow::Result<()> {
    cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
    let addrs: Vec<Ipv4Addr> = (0..3).map(default_public).collect();
    wait_placed(cluster, &ALL, &addrs, &ALL, TIMEOUT)?;
    Ok(())
}

fn bring_back(cluster: &mut Cluster, pnn: u32, loss: Loss) -> anyhow::Result<()> {
    match loss {
        Loss::Kill => cluster.restart_daemon(pnn),
        Loss::PowerOff => power_on_machine(cluster, pnn),
    }
}

/// One resident-memory sample of every running daemon.
fn sample_memory(
    cluster: &mut Cluster,
    down: &Option<(u32, Loss, Instant, Duration)>,
    memory: &mut BTreeMap<u32, MemoryTrace>,
) {
    for pnn in ALL {
        if down.map(|d| d.0) == Some(pnn) {
            continue;
        }
        let Ok(daemon) = cluster.node_mut(pnn).daemon() else {
            continue;
        };
        let pid = daemon.process.pid();
        let Some(kb) = resident_kb(pid) else {
            continue;
        };
        let trace = memory.entry(pid).or_insert_with(|| MemoryTrace {
            pnn,
            started: Instant::now(),
            baseline_kb: None,
            last_kb: kb,
            max_kb: kb,
            lived: Duration::ZERO,
        });
        trace.lived = trace.started.elapsed();
        if trace.baseline_kb.is_none() && trace.lived >= BASELINE_AT {
            trace.baseline_kb = Some(kb);
        }
        trace.last_kb = kb;
        trace.max_kb = trace.max_kb.max(kb);
    }
}

/// `VmRSS` of a process, in kB.
fn resident_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The persistent databases in node 0's `ctdb getdbmap`.
fn persistent_databases(cluster: &Cluster) -> anyhow::Result<Vec<String>> {
    let out = cluster.node(0).ctdb(Tool::Ours, &["getdbmap"])?;
    if !out.success() {
        bail!("ctdb getdbmap: {out}");
    }
    Ok(out
        .stdout
        .lines()
        .filter(|l| l.contains("PERSISTENT"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("name:"))
                .map(str::to_owned)
        })
        .collect())
}
