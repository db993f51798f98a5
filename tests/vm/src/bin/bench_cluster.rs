//! Cluster benchmarks for `BENCHMARKS.md`: cold start to all OK, and the time until
//! a failure is seen (DISCONNECTED on a survivor) and until a new leader is agreed,
//! after `kill -9` of a daemon and after a power loss (links cut, daemon killed), at
//! the default tunables and at the fastest we call safe. Release builds.
//!
//! The cold start is measured first as a NAS cluster runs: event scripts `00.ctdb
//! 01.reclock 10.interface 50.samba` enabled (as in the demo, [`vm::nas`]), so each
//! start includes `startup` starting smbd (`clustering = yes`; the killed daemons
//! took their smbd with them) and the first monitors, until all are OK and
//! every public address accepts SMB connections (TCP 445) from the client; then again
//! without event scripts, with the failure rows.
//!
//! `sudo tests/vm/bench/cluster.sh [RUNS] [cold-start]` (builds, then runs this;
//! `cold-start` measures only the cold-start rows). Every sample is
//! wall time from the fault to the first observation through `ctdb` on a survivor,
//! so it includes one tool round trip (a few ms). "Safe" for the fast tunables is
//! checked here too: 20 s with both cores saturated must show no peer declared dead.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use vm::process::Background;
use vm::public::default_public;
use vm::watch::in_netns;
use vm::{Cluster, Daemon};

const ALL: [u32; 3] = [0, 1, 2];
const TIMEOUT: Duration = Duration::from_secs(60);

/// KeepaliveIntervalMs 100 × KeepaliveLimit 5: a silent node is dead after 0.5 s.
const FAST: &str = "KeepaliveIntervalMs=100\nKeepaliveLimit=5\n";

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().context("RUNS must be a number"))
        .transpose()?
        .unwrap_or(10);
    let only_cold_start = match std::env::args().nth(2).as_deref() {
        None => false,
        Some("cold-start") => true,
        Some(other) => bail!("usage: cluster.sh [RUNS] [cold-start] (not {other:?})"),
    };
    if std::env::var("CTDB_RS_PROFILE").as_deref() != Ok("release") {
        bail!("run through tests/vm/bench/cluster.sh (it sets CTDB_RS_PROFILE=release)");
    }
    let mut rows = nas_cold_start(runs)?;
    for (name, tunables) in [("defaults", ""), ("fast (100 ms x 5)", FAST)] {
        let mut cluster = Cluster::builder()
            .nodes(3)
            .shared_volume(true)
            .tunables(tunables)
            .build()?;
        cluster.start(Daemon::Ours, TIMEOUT)?;
        cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
        let mut samples: Vec<(&str, Vec<f64>)> = vec![
            (
                "no event scripts: cold start of 3 to all OK, one leader",
                Vec::new(),
            ),
            ("kill -9 follower: DISCONNECTED on leader", Vec::new()),
            ("kill -9 leader: DISCONNECTED on survivor", Vec::new()),
            ("kill -9 leader: new leader agreed", Vec::new()),
            ("power loss follower: DISCONNECTED on leader", Vec::new()),
            ("power loss leader: DISCONNECTED on survivor", Vec::new()),
            ("power loss leader: new leader agreed", Vec::new()),
        ];
        for run in 0..runs {
            eprintln!("== {name}: run {}/{runs}", run + 1);
            samples[0].1.push(cold_start(&mut cluster)?);
            if only_cold_start {
                continue;
            }
            let leader = cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?.leader;
            let follower = (leader + 1) % 3;
            samples[1]
                .1
                .push(kill_follower(&mut cluster, leader, follower)?);
            let (seen, elected) = lose_leader(&mut cluster, leader, Fault::Kill)?;
            samples[2].1.push(seen);
            samples[3].1.push(elected);
            let leader = cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?.leader;
            let follower = (leader + 1) % 3;
            samples[4]
                .1
                .push(power_off_follower(&mut cluster, leader, follower)?);
            let leader = cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?.leader;
            let (seen, elected) = lose_leader(&mut cluster, leader, Fault::PowerOff)?;
            samples[5].1.push(seen);
            samples[6].1.push(elected);
        }
        for (what, values) in samples {
            if !values.is_empty() {
                rows.push(format!("| {name} | {what} | {} |", summary(values)));
            }
        }
        if !only_cold_start {
            let false_deaths = cpu_hog_check(&cluster)?;
            rows.push(format!(
                "| {name} | 20 s with both cores saturated: peers declared dead | {false_deaths} |"
            ));
        }
    }
    println!("| tunables | what | median (min–max) over {runs} runs, seconds |");
    println!("|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

fn summary(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    format!(
        "{median:.3} ({:.3}–{:.3})",
        values[0],
        values[values.len() - 1]
    )
}

/// Cold starts of a NAS cluster (scripts and Samba, defaults): rows for "all OK"
/// and for "every address answers SMB".
fn nas_cold_start(runs: usize) -> anyhow::Result<Vec<String>> {
    let mut cluster = Cluster::builder()
        .nodes(3)
        .samba(true)
        .client(true)
        .build()?;
    vm::nas::prepare(&cluster, None)?;
    cluster.start(Daemon::Ours, TIMEOUT)?;
    cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
    let (mut ok, mut serving) = (Vec::new(), Vec::new());
    for run in 0..runs {
        eprintln!(
            "== defaults, scripts and Samba: cold start {}/{runs}",
            run + 1
        );
        for pnn in ALL {
            cluster.kill_daemon(pnn)?;
        }
        let t0 = Instant::now();
        for pnn in ALL {
            cluster.restart_daemon(pnn)?;
        }
        cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
        ok.push(t0.elapsed().as_secs_f64());
        let client = cluster.client().context("the cluster has a client")?.path();
        for i in ALL {
            let addr = SocketAddr::from((default_public(i), 445));
            time_until(t0, "every address answers SMB", || {
                in_netns(&client, || {
                    TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                })
                .is_ok()
            })?;
        }
        serving.push(t0.elapsed().as_secs_f64());
    }
    let name = "defaults";
    let scripts = "scripts 00.ctdb 01.reclock 10.interface 50.samba";
    Ok(vec![
        format!(
            "| {name} | {scripts}: cold start of 3 to all OK, one leader | {} |",
            summary(ok)
        ),
        format!(
            "| {name} | {scripts}: cold start of 3 until every address answers SMB (TCP 445) | {} |",
            summary(serving)
        ),
    ])
}

#[derive(Clone, Copy)]
enum Fault {
    Kill,
    PowerOff,
}

/// Stops every daemon, starts all three at once, and times until they agree.
fn cold_start(cluster: &mut Cluster) -> anyhow::Result<f64> {
    for pnn in ALL {
        cluster.kill_daemon(pnn)?;
    }
    let t0 = Instant::now();
    for pnn in ALL {
        cluster.restart_daemon(pnn)?;
    }
    cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
    Ok(t0.elapsed().as_secs_f64())
}

fn disconnected(cluster: &Cluster, on: u32, of: u32) -> bool {
    cluster
        .nodestatus(on)
        .is_ok_and(|rows| rows.iter().any(|r| r.pnn == of && r.disconnected))
}

/// Polls `cond` as fast as the tool answers; returns seconds since `t0`.
fn time_until(t0: Instant, what: &str, cond: impl Fn() -> bool) -> anyhow::Result<f64> {
    while t0.elapsed() < TIMEOUT {
        if cond() {
            return Ok(t0.elapsed().as_secs_f64());
        }
    }
    bail!("{what}: not within {TIMEOUT:?}")
}

fn kill_follower(cluster: &mut Cluster, leader: u32, follower: u32) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    cluster.kill_daemon(follower)?;
    let t = time_until(t0, "follower DISCONNECTED", || {
        disconnected(cluster, leader, follower)
    })?;
    cluster.restart_daemon(follower)?;
    cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
    Ok(t)
}

fn power_off_follower(cluster: &mut Cluster, leader: u32, follower: u32) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    cluster.power_off(follower)?;
    let t = time_until(t0, "follower DISCONNECTED", || {
        disconnected(cluster, leader, follower)
    })?;
    cluster.power_on(follower)?;
    cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
    Ok(t)
}

/// The leader goes; returns (DISCONNECTED seen on a survivor, new leader known there).
fn lose_leader(cluster: &mut Cluster, leader: u32, fault: Fault) -> anyhow::Result<(f64, f64)> {
    let survivor = (leader + 1) % 3;
    let t0 = Instant::now();
    match fault {
        Fault::Kill => cluster.kill_daemon(leader)?,
        Fault::PowerOff => cluster.power_off(leader)?,
    }
    let seen = time_until(t0, "leader DISCONNECTED", || {
        disconnected(cluster, survivor, leader)
    })?;
    // `ctdb leader` returns as soon as the survivor hears the new leader's broadcast.
    let elected = time_until(
        t0,
        "new leader",
        || matches!(cluster.leader(survivor), Ok(Some(l)) if l != leader),
    )?;
    match fault {
        Fault::Kill => cluster.restart_daemon(leader)?,
        Fault::PowerOff => cluster.power_on(leader)?,
    }
    cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
    Ok((seen, elected))
}

/// 20 s of two busy loops; counts peers declared dead in the daemons' logs.
fn cpu_hog_check(cluster: &Cluster) -> anyhow::Result<usize> {
    let before: Vec<usize> = ALL.iter().map(|&p| deaths(cluster, p)).collect();
    let mut loops = Vec::new();
    for i in 0..2 {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "while :; do :; done"]);
        loops.push(Background::spawn(&format!("busy loop {i}"), cmd)?);
    }
    let t0 = Instant::now();
    // A fixed measuring period, not a wait for a condition.
    while t0.elapsed() < Duration::from_secs(20) {
        for pnn in ALL {
            let _ = cluster.nodestatus(pnn);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for mut busy in loops {
        busy.stop(Duration::from_secs(5))?;
    }
    Ok(ALL
        .iter()
        .zip(before)
        .map(|(&p, b)| deaths(cluster, p) - b)
        .sum())
}

fn deaths(cluster: &Cluster, pnn: u32) -> usize {
    cluster
        .node(pnn)
        .daemon_log()
        .matches("declaring it dead")
        .count()
}
