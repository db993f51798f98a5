//! Recovery lock on GlusterFS, for `BENCHMARKS.md`: how long until another node
//! can take the lock after its holder dies, and what a survivor's file access does
//! meanwhile, at GlusterFS's defaults and with [`RECOMMENDED_OPTIONS`].
//!
//! `sudo tests/vm/bench/gluster_lock.sh [RUNS]` (builds, then runs this; default 3
//! runs per row). Two parts, each on a fresh replica-3 volume per option set:
//!
//! - **lock**: the bare lock. Node 0 holds an fcntl lock on a file of the volume
//!   with `lockvol` (the primitive of our `ctdb-rs-reclock-helper`); node 1 tries
//!   it every 10 ms. Faults: `kill -9` of the holder (its node stays up), power
//!   loss of node 0 (its private link down, then the holder and every gluster
//!   process of node 0 killed). At once after the fault, node 1 creates a file,
//!   writes 4 KiB, fsyncs and closes it: the write stall. Times are
//!   CLOCK_MONOTONIC, read inside the nodes (one clock for all namespaces).
//! - **daemon**: three of our `ctdbd` on the volume, a TCP service per node, a
//!   client asking the leader's address; `kill -9` of the leader's ctdbd, power
//!   loss of the leader's node. Measured: when the survivors name a new leader
//!   (`ctdb leader` on one survivor, every ~0.1 s), when the leader's address
//!   answers from a survivor; the watcher reports the survivors' own addresses'
//!   longest absence (do they drop them while the lock is held?) and duplicates.
//!
//! `VOLUME_OPTIONS=defaults` or `recommended` runs one option set only.
//!
//! The same binary is the probe in the nodes: `hold FILE`, `poll FILE`,
//! `write FILE` (see [`probe`]).

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use lockvol::FcntlLock;
use vm::gluster::{GlusterOptions, Volume, RECOMMENDED_OPTIONS};
use vm::node::SHARED_MOUNT;
use vm::process::{run, Background};
use vm::public::{ask, default_public, power_off_machine, power_on_machine, start_services};
use vm::watch::Watcher;
use vm::{wait_until, Cluster, Daemon};

const ALL: [u32; 3] = [0, 1, 2];
/// Longer than any delay the volume can impose at its defaults (about 80 s).
const FAULT_TIMEOUT: Duration = Duration::from_secs(240);
const START_TIMEOUT: Duration = Duration::from_secs(90);

fn monotonic() -> f64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there");
    t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9
}

/// The probes this binary runs inside a node; each prints one line per event
/// with the CLOCK_MONOTONIC time.
fn probe(mode: &str, file: &str) -> anyhow::Result<()> {
    let path = std::path::Path::new(file);
    let mut out = std::io::stdout();
    match mode {
        // Takes the lock and keeps it until killed.
        "hold" => {
            let Some(lock) = FcntlLock::try_acquire(path)? else {
                bail!("{file} is locked by someone else");
            };
            writeln!(out, "held {}", monotonic())?;
            out.flush()?;
            loop {
                std::thread::sleep(Duration::from_secs(3600));
                let _ = &lock;
            }
        }
        // Tries every 10 ms until it gets the lock, says when, and exits.
        "poll" => {
            let mut said = false;
            loop {
                if FcntlLock::try_acquire(path)?.is_some() {
                    writeln!(out, "got {}", monotonic())?;
                    return Ok(());
                }
                if !said {
                    writeln!(out, "contended {}", monotonic())?;
                    out.flush()?;
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // open(O_CREAT) + 4 KiB write + fsync + close of a new file.
        "write" => {
            let start = monotonic();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(path)?;
            f.write_all(&[0x5a; 4096])?;
            f.sync_all()?;
            drop(f);
            writeln!(out, "write {start} {}", monotonic())?;
            Ok(())
        }
        other => bail!("unknown probe {other}"),
    }
}

/// The first value after `word` in `log` (`held 123.4` -> 123.4).
fn stamp(log: &str, word: &str) -> Option<f64> {
    log.lines()
        .find_map(|l| l.strip_prefix(&format!("{word} ")))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn wait_stamp(process: &Background, word: &str, timeout: Duration) -> anyhow::Result<f64> {
    wait_until(timeout, || {
        stamp(&process.log(), word).ok_or_else(|| process.log())
    })
    .map_err(|t| anyhow::anyhow!("no `{word}` line: {t}"))
}

fn probe_command(
    cluster: &Cluster,
    pnn: u32,
    mode: &str,
    file: &str,
) -> anyhow::Result<std::process::Command> {
    let me = std::env::current_exe().context("locating this benchmark's binary")?;
    let mut cmd = cluster.node(pnn).command(me);
    cmd.args(["probe", mode, file]);
    Ok(cmd)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    PowerOff,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9 of the holder",
            Fault::PowerOff => "power loss of the holder's node",
        }
    }
}

fn summary(mut values: Vec<f64>) -> String {
    if values.is_empty() {
        return "–".to_owned();
    }
    values.sort_by(f64::total_cmp);
    format!(
        "{:.3} / {:.3} / {:.3}",
        values[0],
        values[values.len() / 2],
        values[values.len() - 1]
    )
}

fn options_name(options: GlusterOptions) -> &'static str {
    match options {
        GlusterOptions::Defaults => "defaults",
        GlusterOptions::Recommended => "recommended",
    }
}

/// Part one: the bare lock. Returns table rows.
fn bare_lock(options: GlusterOptions, runs: usize) -> anyhow::Result<Vec<String>> {
    let cluster = Cluster::builder()
        .nodes(3)
        .volume(Volume::Gluster(options))
        .build()?;
    let all: Vec<Ipv4Addr> = ALL
        .iter()
        .map(|&p| cluster.node(p).private_addr())
        .collect();
    let file = format!("{SHARED_MOUNT}/bench.lock");
    let mut rows = Vec::new();
    for fault in [Fault::Kill, Fault::PowerOff] {
        let (mut lock_times, mut stalls, mut baselines) = (Vec::new(), Vec::new(), Vec::new());
        for run_no in 0..runs {
            eprintln!(
                "== lock, {}: {}, run {}/{runs}",
                options_name(options),
                fault.describe(),
                run_no + 1
            );
            let baseline = write_probe(&cluster, &format!("{SHARED_MOUNT}/base-{run_no}"))?;
            baselines.push(baseline.1 - baseline.0);
            let mut holder =
                Background::spawn("holder", probe_command(&cluster, 0, "hold", &file)?)?;
            wait_stamp(&holder, "held", Duration::from_secs(30))?;
            let poller = Background::spawn("poller", probe_command(&cluster, 1, "poll", &file)?)?;
            wait_stamp(&poller, "contended", Duration::from_secs(30))?;
            let t0 = monotonic();
            match fault {
                Fault::Kill => holder.signal(nix::sys::signal::Signal::SIGKILL)?,
                Fault::PowerOff => {
                    cluster.cut_links(0)?;
                    holder.signal(nix::sys::signal::Signal::SIGKILL)?;
                    vm::gluster::kill_node(cluster.node(0))?;
                }
            }
            let (start, end) = write_probe(&cluster, &format!("{SHARED_MOUNT}/probe-{run_no}"))?;
            let got = wait_stamp(&poller, "got", FAULT_TIMEOUT)?;
            eprintln!(
                "   lock after {:.3} s; write started at +{:.3} s, took {:.3} s",
                got - t0,
                start - t0,
                end - start
            );
            lock_times.push(got - t0);
            stalls.push(end - start);
            if fault == Fault::PowerOff {
                cluster.restore_links(0)?;
                vm::gluster::revive_node(cluster.node(0), &all)?;
                for pnn in ALL {
                    vm::gluster::wait_connected(cluster.node(pnn), 3)?;
                }
            }
            drop(holder);
            drop(poller);
        }
        rows.push(format!(
            "| {} | {} ({runs}) | {} | {} | {} |",
            options_name(options),
            fault.describe(),
            summary(lock_times),
            summary(stalls),
            summary(baselines),
        ));
        eprintln!("{}", rows.last().expect("pushed"));
    }
    Ok(rows)
}

/// Runs the write probe in node 1 and returns its start and end.
fn write_probe(cluster: &Cluster, file: &str) -> anyhow::Result<(f64, f64)> {
    let out = run(probe_command(cluster, 1, "write", file)?, FAULT_TIMEOUT)?;
    if !out.success() {
        bail!("write probe failed:\n{out}");
    }
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("write "))
        .context("no write line")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    match v[..] {
        [a, b] => Ok((a, b)),
        _ => bail!("bad write line {line:?}"),
    }
}

/// Part two: our daemons on the volume. Returns table rows.
fn daemons(options: GlusterOptions, runs: usize) -> anyhow::Result<Vec<String>> {
    let addrs: Vec<Ipv4Addr> = (0..3).map(default_public).collect();
    let mut cluster = Cluster::builder()
        .nodes(3)
        .volume(Volume::Gluster(options))
        .client(true)
        .build()?;
    let _services = start_services(&cluster)?;
    cluster.start(Daemon::Ours, START_TIMEOUT)?;
    let mut rows = Vec::new();
    for fault in [Fault::Kill, Fault::PowerOff] {
        let (mut leads, mut answers, mut absences, mut duplicates) =
            (Vec::new(), Vec::new(), Vec::new(), 0);
        for run_no in 0..runs {
            eprintln!(
                "== daemons, {}: {} (the leader), run {}/{runs}",
                options_name(options),
                fault.describe(),
                run_no + 1
            );
            let leader = cluster.wait_agreement(&ALL, &ALL, START_TIMEOUT)?.leader;
            let placement = vm::public::wait_placed(&cluster, &ALL, &addrs, &ALL, START_TIMEOUT)?;
            let survivors: Vec<u32> = ALL.into_iter().filter(|p| *p != leader).collect();
            let addr = *placement
                .iter()
                .find(|(_, p)| **p == leader)
                .context("the leader hosts an address")?
                .0;
            let survivor_addrs: Vec<Ipv4Addr> = placement
                .iter()
                .filter(|(_, p)| **p != leader)
                .map(|(a, _)| *a)
                .collect();
            let watcher = Watcher::start(&cluster, addrs.clone())?;
            let t0 = Instant::now();
            match fault {
                Fault::Kill => cluster.kill_daemon(leader)?,
                Fault::PowerOff => {
                    watcher.set_live(leader, false);
                    power_off_machine(&mut cluster, leader)?;
                }
            }
            let client = cluster.client().context("built with a client")?;
            let (mut new_leader, mut answered) = (None, None);
            while t0.elapsed() < FAULT_TIMEOUT && (new_leader.is_none() || answered.is_none()) {
                if answered.is_none() {
                    if let Ok(p) = ask(client, addr, Duration::from_millis(50)) {
                        if p != leader {
                            answered = Some(t0.elapsed());
                        }
                    }
                }
                if new_leader.is_none() {
                    if let Ok(Some(p)) = cluster.leader(survivors[0]) {
                        if p != leader {
                            new_leader = Some(t0.elapsed());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let report = watcher.stop();
            let absence = survivor_addrs
                .iter()
                .filter_map(|a| report.longest_absence(*a))
                .max()
                .unwrap_or_default();
            eprintln!(
                "   new leader after {new_leader:?}, address answers after {answered:?}, \
                 survivors' addresses absent at most {absence:?}, duplicate moments {}",
                report.duplicate_moments()
            );
            if report.duplicate_moments() > 0 || absence > Duration::from_secs(1) {
                eprintln!("{report}\n{}", cluster.logs());
            }
            leads.push(new_leader.map_or(f64::NAN, |d| d.as_secs_f64()));
            answers.push(answered.map_or(f64::NAN, |d| d.as_secs_f64()));
            absences.push(absence.as_secs_f64());
            duplicates += report.duplicate_moments();
            match fault {
                Fault::Kill => cluster.restart_daemon(leader)?,
                Fault::PowerOff => power_on_machine(&mut cluster, leader)?,
            }
            cluster
                .node_mut(leader)
                .wait_runstate("RUNNING", START_TIMEOUT)?;
        }
        rows.push(format!(
            "| {} | {} ({runs}) | {} | {} | {} | {duplicates} |",
            options_name(options),
            match fault {
                Fault::Kill => "kill -9 of the leader's ctdbd",
                Fault::PowerOff => "power loss of the leader's node",
            },
            summary(leads),
            summary(answers),
            summary(absences),
        ));
        eprintln!("{}", rows.last().expect("pushed"));
    }
    Ok(rows)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("probe") {
        let (Some(mode), Some(file)) = (args.get(2), args.get(3)) else {
            bail!("usage: ctdbrs-bench-gluster-lock probe hold|poll|write FILE");
        };
        return probe(mode, file);
    }
    let runs: usize = args
        .get(1)
        .map(|a| a.parse().context("RUNS must be a number"))
        .transpose()?
        .unwrap_or(3);
    let parts = std::env::var("PARTS").unwrap_or_else(|_| "lock,daemon".into());
    if std::env::var("CTDB_RS_PROFILE").as_deref() != Ok("release") {
        bail!("run through tests/vm/bench/gluster_lock.sh (it sets CTDB_RS_PROFILE=release)");
    }
    eprintln!("recommended options: {RECOMMENDED_OPTIONS:?}");
    let mut lock_rows = Vec::new();
    let mut daemon_rows = Vec::new();
    let only = std::env::var("VOLUME_OPTIONS").unwrap_or_default();
    for options in [GlusterOptions::Defaults, GlusterOptions::Recommended] {
        if !only.is_empty() && only != options_name(options) {
            continue;
        }
        if parts.contains("lock") {
            lock_rows.extend(bare_lock(options, runs)?);
        }
        if parts.contains("daemon") {
            daemon_rows.extend(daemons(options, runs)?);
        }
    }
    if !lock_rows.is_empty() {
        println!("| volume options | fault (runs) | lock taken on node 1 after, s: min / median / max | node 1's write+fsync during the window, s | write+fsync before the fault, s |");
        println!("|---|---|---|---|---|");
        for row in lock_rows {
            println!("{row}");
        }
    }
    if !daemon_rows.is_empty() {
        println!();
        println!("| volume options | fault (runs) | survivors name a new leader after, s | leader's address answers from a survivor after, s | survivors' own addresses: longest absence, s | duplicate moments |");
        println!("|---|---|---|---|---|---|");
        for row in daemon_rows {
            println!("{row}");
        }
    }
    Ok(())
}
