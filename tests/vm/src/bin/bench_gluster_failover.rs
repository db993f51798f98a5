//! Failover of clustered Samba on GlusterFS beside the plain directory, for
//! `BENCHMARKS.md` (issue #11, item 5): three nodes, smbd with `clustering = yes`,
//! the recovery lock, `nodes`, `public_addresses`, `smb.conf` and the share on the
//! volume; ctdb-rs and CTDB 4.17 (`Daemon::Stock`) on the same kind of volume in
//! the same run.
//!
//! `sudo tests/vm/bench/gluster_failover.sh [RUNS] [ours|stock|both] [dir|gluster|both]`
//! (builds, then runs this; default 3 runs per case, both daemons, both volumes).
//! One cluster per volume and daemon (the GlusterFS one with the recommended
//! options, [`vm::gluster::RECOMMENDED_OPTIONS`]); per run:
//!
//! - **cold start**: every daemon killed, then all three started at once; until
//!   every node is OK under one leader and every address answers (the TCP service
//!   of [`start_services`], from the node `ctdb ip` names), and until a new SMB
//!   session through each address reads a file;
//! - **kill -9** and **power loss** (private and public links cut, the daemon and,
//!   on GlusterFS, every gluster process of the node killed: its brick too) of the
//!   leader and of a follower. Before the fault a file is written over SMB through
//!   the victim's address. Measured from the fault: until that address answers
//!   from a survivor, and until a new SMB session (`smbclient`, one per try)
//!   through it reads the file back, byte for byte. The victim is then brought
//!   back and the cluster awaited whole before the next case.
//!
//! A case that has not recovered within [`FAULT_TIMEOUT`] is counted as such
//! (`>90` in the table) and the run goes on; the total time is printed at the end.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use vm::gluster::{GlusterOptions, Volume};
use vm::public::{
    ask, default_public, power_off_machine, power_on_machine, start_services, wait_placed,
};
use vm::sandbox::TempDir;
use vm::{wait_until, Cluster, Daemon};

const ALL: [u32; 3] = [0, 1, 2];
/// Building and starting a cluster, and bringing a victim back.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one measurement may take before it counts as not recovered.
const FAULT_TIMEOUT: Duration = Duration::from_secs(90);
/// One try of the address's TCP service: the measurement's resolution there.
const ATTEMPT: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    PowerOff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    Leader,
    Follower,
}

/// One case's samples, in seconds (`None`: not within [`FAULT_TIMEOUT`]).
#[derive(Default)]
struct Samples {
    answers: Vec<Option<f64>>,
    reads: Vec<Option<f64>>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .get(1)
        .map(|a| a.parse().context("RUNS must be a number"))
        .transpose()?
        .unwrap_or(3);
    let daemons: &[Daemon] = match args.get(2).map(String::as_str) {
        None | Some("both") => &[Daemon::Ours, Daemon::Stock],
        Some("ours") => &[Daemon::Ours],
        Some("stock") => &[Daemon::Stock],
        Some(other) => bail!("the daemons are ours, stock or both, not {other:?}"),
    };
    let volumes: &[Volume] = match args.get(3).map(String::as_str) {
        None | Some("both") => &[Volume::Dir, Volume::Gluster(GlusterOptions::Recommended)],
        Some("dir") => &[Volume::Dir],
        Some("gluster") => &[Volume::Gluster(GlusterOptions::Recommended)],
        Some(other) => bail!("the volumes are dir, gluster or both, not {other:?}"),
    };
    if std::env::var("CTDB_RS_PROFILE").as_deref() != Ok("release") {
        bail!("run through tests/vm/bench/gluster_failover.sh (it sets CTDB_RS_PROFILE=release)");
    }
    // Every wait is bounded: a cluster's build and start, then per run a cold
    // start and four faults, each measured and restored within its timeout.
    let per_cluster = START_TIMEOUT
        + (START_TIMEOUT + FAULT_TIMEOUT + 4 * (FAULT_TIMEOUT + START_TIMEOUT)) * runs as u32;
    eprintln!(
        "== {runs} run(s) per case, {} cluster(s); at most {} min",
        daemons.len() * volumes.len(),
        (per_cluster * (daemons.len() * volumes.len()) as u32).as_secs() / 60
    );
    let began = Instant::now();
    let mut rows = Vec::new();
    for &volume in volumes {
        for &daemon in daemons {
            let mut cases = Cases::new();
            let outcome = bench(volume, daemon, runs, &mut cases);
            for (case, samples) in &cases {
                let r = row(volume, daemon, case, samples);
                eprintln!("{r}");
                rows.push(r);
            }
            if let Err(e) = outcome {
                eprintln!("{volume}, {}: stopped: {e:#}", label(daemon));
                rows.push(format!(
                    "| {volume} | {} | stopped: {} | | |",
                    label(daemon),
                    format!("{e:#}").lines().next().unwrap_or_default()
                ));
            }
        }
    }
    println!(
        "| volume | daemon | case (runs) | address answers from a survivor, s: median \
         (min–max) | new SMB session reads the file, s: median (min–max) |"
    );
    println!("|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!(
        "total time: {:.0} s (timeout per measurement {} s)",
        began.elapsed().as_secs_f64(),
        FAULT_TIMEOUT.as_secs()
    );
    Ok(())
}

fn label(daemon: Daemon) -> &'static str {
    match daemon {
        Daemon::Ours => "ctdb-rs",
        Daemon::Stock => "CTDB 4.17",
    }
}

fn addrs() -> Vec<Ipv4Addr> {
    (0..3).map(default_public).collect()
}

/// Each case's name and samples so far, in the table's order.
type Cases = Vec<(String, Samples)>;

/// Every case on one cluster of `volume` under `daemon`, its samples put in
/// `cases` as they come (so that a failure keeps those taken before).
fn bench(volume: Volume, daemon: Daemon, runs: usize, cases: &mut Cases) -> anyhow::Result<()> {
    eprintln!("== {volume}, {}: building", label(daemon));
    vm::smb_client::check_prerequisites()?;
    let mut cluster = Cluster::builder()
        .nodes(3)
        .volume(volume)
        .samba(true)
        .client(true)
        .tunables("MonitorInterval=1\n")
        .build()?;
    vm::nas::prepare_for(&cluster, None, daemon)?;
    let _services = start_services(&cluster)?;
    cluster.start(daemon, START_TIMEOUT)?;
    wait_whole(&mut cluster)?;
    let dir = TempDir::new("benchgf")?;

    let faults: Vec<(Fault, Victim)> = [Fault::Kill, Fault::PowerOff]
        .into_iter()
        .flat_map(|f| [Victim::Leader, Victim::Follower].map(|v| (f, v)))
        .collect();
    cases.push(("cold start".to_owned(), Samples::default()));
    for (fault, victim) in &faults {
        let case = format!(
            "{} of the {}",
            fault_name(*fault),
            match victim {
                Victim::Leader => "leader",
                Victim::Follower => "follower",
            }
        );
        cases.push((case, Samples::default()));
    }
    for run in 1..=runs {
        eprintln!(
            "== {volume}, {}: cold start, run {run}/{runs}",
            label(daemon)
        );
        let (answer, read) = cold_start(&mut cluster, &dir, run)?;
        cases[0].1.answers.push(answer);
        cases[0].1.reads.push(read);
        for (i, (fault, victim)) in faults.iter().enumerate() {
            eprintln!(
                "== {volume}, {}: {} of the {victim:?}, run {run}/{runs}",
                label(daemon),
                fault_name(*fault)
            );
            let (answer, read) = fault_case(&mut cluster, &dir, *fault, *victim, run)?;
            cases[i + 1].1.answers.push(answer);
            cases[i + 1].1.reads.push(read);
        }
    }
    Ok(())
}

fn fault_name(fault: Fault) -> &'static str {
    match fault {
        Fault::Kill => "kill -9",
        Fault::PowerOff => "power loss",
    }
}

fn row(volume: Volume, daemon: Daemon, case: &str, samples: &Samples) -> String {
    format!(
        "| {volume} | {} | {case} ({}) | {} | {} |",
        label(daemon),
        samples.answers.len(),
        summary(&samples.answers),
        summary(&samples.reads)
    )
}

/// `median (min–max)`; a sample past the timeout counts as the largest, shown
/// as `>90`.
fn summary(values: &[Option<f64>]) -> String {
    let mut sorted: Vec<f64> = values.iter().map(|v| v.unwrap_or(f64::INFINITY)).collect();
    sorted.sort_by(f64::total_cmp);
    let show = |v: f64| {
        if v.is_finite() {
            format!("{v:.2}")
        } else {
            format!(">{}", FAULT_TIMEOUT.as_secs())
        }
    };
    match sorted.as_slice() {
        [] => "-".to_owned(),
        [only] => show(*only),
        _ => format!(
            "{} ({}–{})",
            // An even count's median is the mean of the middle two.
            show((sorted[(sorted.len() - 1) / 2] + sorted[sorted.len() / 2]) / 2.0),
            show(sorted[0]),
            show(sorted[sorted.len() - 1])
        ),
    }
}

/// Waits until every node is OK under one leader and every address is placed.
fn wait_whole(cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster.wait_agreement(&ALL, &ALL, START_TIMEOUT)?;
    wait_placed(cluster, &ALL, &addrs(), &ALL, START_TIMEOUT)?;
    Ok(())
}

/// Writes `name` with `text` into the share through `addr` (one `smbclient put`).
fn put(
    cluster: &Cluster,
    dir: &TempDir,
    addr: Ipv4Addr,
    name: &str,
    text: &str,
) -> anyhow::Result<()> {
    let local = dir.path().join(name);
    std::fs::write(&local, text)?;
    // The cluster is whole, but a just-started smbd may still be attaching.
    wait_until(START_TIMEOUT, || {
        match cluster.smbclient(addr, &format!("put {} {name}", local.display())) {
            Ok(out) if out.success() => Ok(()),
            Ok(out) => Err(out.to_string()),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .map_err(|t| anyhow::anyhow!("writing {name} through {addr}: {t}"))
}

/// Whether a new SMB session through `addr` reads `name` back as `text`.
fn reads_back(cluster: &Cluster, dir: &TempDir, addr: Ipv4Addr, name: &str, text: &str) -> bool {
    let local = dir.path().join(format!("{name}.back"));
    let _ = std::fs::remove_file(&local);
    matches!(
        cluster.smbclient(addr, &format!("get {name} {}", local.display())),
        Ok(out) if out.success()
    ) && std::fs::read_to_string(&local).is_ok_and(|t| t == text)
}

/// Kills every daemon, starts all three, and measures until every address
/// answers from its placed node, and until a new SMB session through each reads
/// a file written before.
fn cold_start(
    cluster: &mut Cluster,
    dir: &TempDir,
    run: usize,
) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let name = format!("cold-{run}.txt");
    let text = format!("written before cold start {run}");
    put(cluster, dir, default_public(0), &name, &text)?;
    for pnn in ALL {
        if cluster.node_mut(pnn).daemon_running() {
            cluster.kill_daemon(pnn)?;
        }
    }
    let t0 = Instant::now();
    for pnn in ALL {
        cluster.restart_daemon(pnn)?;
    }
    let client = cluster.client().context("built with a client")?;
    let mut answered = None;
    let mut read = None;
    let mut pending_reads = addrs();
    while t0.elapsed() < FAULT_TIMEOUT && read.is_none() {
        if answered.is_none() {
            let placed = vm::public::ctdb_ip(cluster, 0).unwrap_or_default();
            let all_answer = addrs().iter().all(|a| {
                matches!(placed.get(a), Some(Some(p)) if ask(client, *a, ATTEMPT).ok() == Some(*p))
            });
            if all_answer {
                answered = Some(t0.elapsed().as_secs_f64());
            }
        }
        if answered.is_some() {
            pending_reads.retain(|a| !reads_back(cluster, dir, *a, &name, &text));
            if pending_reads.is_empty() {
                read = Some(t0.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_whole(cluster)?;
    Ok((answered, read))
}

/// One fault of `victim`; see the module documentation.
fn fault_case(
    cluster: &mut Cluster,
    dir: &TempDir,
    fault: Fault,
    victim: Victim,
    run: usize,
) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let leader = cluster.wait_agreement(&ALL, &ALL, START_TIMEOUT)?.leader;
    let pnn = match victim {
        Victim::Leader => leader,
        Victim::Follower => (leader + 1) % 3,
    };
    let addr = vm::public::address_held_by(cluster, pnn, START_TIMEOUT)?;
    let name = format!(
        "{}-{victim:?}-{run}.txt",
        fault_name(fault).replace([' ', '-'], "")
    );
    let text = format!(
        "written through node {pnn} before its {}",
        fault_name(fault)
    );
    put(cluster, dir, addr, &name, &text)?;

    let t0 = Instant::now();
    match fault {
        Fault::Kill => cluster.kill_daemon(pnn)?,
        Fault::PowerOff => power_off_machine(cluster, pnn)?,
    }
    let client = cluster.client().context("built with a client")?;
    let (mut answered, mut read) = (None, None);
    while t0.elapsed() < FAULT_TIMEOUT && read.is_none() {
        if answered.is_none() {
            if let Ok(p) = ask(client, addr, ATTEMPT) {
                if p != pnn {
                    answered = Some(t0.elapsed().as_secs_f64());
                }
            }
        }
        // Only once a survivor answers: before, a session would go to the
        // victim (or nowhere) and wait out smbclient's own timeouts.
        if answered.is_some() && reads_back(cluster, dir, addr, &name, &text) {
            read = Some(t0.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("   address answers after {answered:?} s, file read after {read:?} s");

    match fault {
        Fault::Kill => cluster.restart_daemon(pnn)?,
        Fault::PowerOff => power_on_machine(cluster, pnn)?,
    }
    cluster
        .node_mut(pnn)
        .wait_runstate("RUNNING", START_TIMEOUT)?;
    wait_whole(cluster)?;
    Ok((answered, read))
}
