//! SMB benchmarks for `BENCHMARKS.md` (issue #9, items 7 and 8), on our daemon and
//! on CTDB 4.17 in the same harness, smbd with `clustering = yes` on 3 nodes:
//!
//! - **`stall`: the survivors' stall.** Clients in the client namespace work
//!   through the public addresses of the two nodes that will survive, each
//!   repeating open, exclusive byte-range lock, write, close (one client per
//!   survivor on a file of its own, one per survivor on a shared file), and note
//!   when each operation completed. Then the third node loses its power (links
//!   cut, daemon killed: the peers see silence) and the longest time without a
//!   completed operation, over all those clients, is the stall. A follower dies,
//!   then (separately) the leader. A fresh cluster per run.
//! - **`rate`: open + lock + unlock + close per second** from clients spread over
//!   the 3 nodes' addresses, all on one file (the file's share-mode and
//!   byte-range-lock records move between nodes) or a file each; and, for
//!   comparison, the same through one node's address.
//!
//! The clients are `smb_load.py` (beside the library; smbprotocol in the test
//! virtual environment), one process per client. The rate rows say how much CPU the
//! clients themselves used, and how busy the machine was, so that a client-bound
//! rate is seen as one.
//!
//! `sudo tests/vm/bench/smb.sh stall [RUNS] [ours|stock|both]` and
//! `sudo tests/vm/bench/smb.sh rate [SECONDS] [ours|stock|both]` build release
//! binaries and run this. The daemons' logs of every stall run are written to
//! `target/bench-smb/`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use vm::public::{default_public, power_off_machine, wait_placed};
use vm::samba::{SAMBA_PASSWORD, SAMBA_USER, SHARE};
use vm::smb_client::VENV_PYTHON;
use vm::{Cluster, Daemon};

const ALL: [u32; 3] = [0, 1, 2];
const START_TIMEOUT: Duration = Duration::from_secs(120);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the survivors may take to agree and host every address (CTDB 4.17
/// needs about 30 s at its defaults to notice a silent node).
const RECOVER_TIMEOUT: Duration = Duration::from_secs(180);
/// How long after the survivors host every address the clients may take to
/// complete operations again before the run ends (the stall then counts until
/// the end).
const RESUME_TIMEOUT: Duration = Duration::from_secs(60);
/// Operations before the fault, and after the survivors host every address.
const SETTLE: f64 = 3.0;

const LOAD_SOURCE: &str = include_str!("../smb_load.py");

#[derive(Clone, Copy, Debug, PartialEq)]
enum Victim {
    Follower,
    Leader,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var("CTDB_RS_PROFILE").as_deref() != Ok("release") {
        bail!("run through tests/vm/bench/smb.sh (it sets CTDB_RS_PROFILE=release)");
    }
    vm::smb_client::check_prerequisites()?;
    let number = |i: usize, default: u64| -> anyhow::Result<u64> {
        args.get(i)
            .map(|a| a.parse().with_context(|| format!("{a:?} is not a number")))
            .transpose()
            .map(|n| n.unwrap_or(default))
    };
    let daemons = match args.get(2).map(String::as_str) {
        None | Some("both") => vec![Daemon::Ours, Daemon::Stock],
        Some("ours") => vec![Daemon::Ours],
        Some("stock") => vec![Daemon::Stock],
        Some(other) => bail!("the daemons are ours, stock or both, not {other:?}"),
    };
    let victims = match args.get(3).map(String::as_str) {
        None | Some("both") => vec![Victim::Follower, Victim::Leader],
        Some("follower") => vec![Victim::Follower],
        Some("leader") => vec![Victim::Leader],
        Some(other) => bail!("the victims are follower, leader or both, not {other:?}"),
    };
    match args.first().map(String::as_str) {
        Some("stall") => stall_table(number(1, 3)?, &daemons, &victims),
        Some("rate") => rate_table(number(1, 10)?, &daemons),
        _ => bail!(
            "usage: bench_smb stall [RUNS] [ours|stock|both] [follower|leader|both] \
             | rate [SECONDS] [ours|stock|both]"
        ),
    }
}

fn label(daemon: Daemon) -> &'static str {
    match daemon {
        Daemon::Ours => "ctdb-rs",
        Daemon::Stock => "CTDB 4.17",
    }
}

/// CLOCK_MONOTONIC in seconds: the clock `smb_load.py` reports in.
fn monotonic() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|ts| ts.tv_sec() as f64 + ts.tv_nsec() as f64 / 1e9)
        .expect("CLOCK_MONOTONIC is always readable")
}

/// Three nodes with clustered Samba under `daemon`, every address on a distinct
/// node, the test user added by the harness at start (as `tests/clustered_smb.rs`
/// sets it up).
fn clustered_samba(daemon: Daemon) -> anyhow::Result<Cluster> {
    let mut cluster = Cluster::builder()
        .nodes(3)
        .samba(true)
        .client(true)
        .tunables("MonitorInterval=1\n")
        .build()?;
    vm::nas::prepare_for(&cluster, None, daemon)?;
    cluster.start(daemon, START_TIMEOUT)?;
    cluster.wait_agreement(&ALL, &ALL, START_TIMEOUT)?;
    wait_placed(&cluster, &ALL, &addrs(), &ALL, CONVERGE_TIMEOUT)?;
    Ok(cluster)
}

fn addrs() -> Vec<Ipv4Addr> {
    (0..3).map(default_public).collect()
}

/// The public address node `pnn` holds.
fn address_of(cluster: &Cluster, pnn: u32) -> anyhow::Result<Ipv4Addr> {
    vm::public::address_held_by(cluster, pnn, CONVERGE_TIMEOUT)
}

// ---- the load ---------------------------------------------------------------

/// One client of the load: `address:file:offset`.
struct Worker {
    address: Ipv4Addr,
    file: String,
    offset: u32,
}

/// What one client did.
#[derive(Debug, Default)]
struct WorkerResult {
    ops: u64,
    errors: u64,
    gap: f64,
    gap_at: f64,
    cpu: f64,
}

/// What the whole load did.
#[derive(Debug)]
struct LoadResult {
    started: f64,
    ended: f64,
    cpu: f64,
    workers: Vec<WorkerResult>,
    /// What the clients wrote on standard error (refusals, reconnections).
    stderr: String,
}

/// `smb_load.py` running in the client namespace; killed by PID when dropped.
struct Load {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    started: f64,
}

impl Load {
    /// Starts the clients and waits until all are connected. `seconds` 0: until
    /// [`Load::finish`] stops them.
    fn start(
        cluster: &Cluster,
        op: &str,
        seconds: u64,
        workers: &[Worker],
    ) -> anyhow::Result<Self> {
        let netns = cluster
            .client()
            .context("a cluster without a client namespace")?;
        let mut cmd = netns.command(VENV_PYTHON);
        cmd.args([
            "-u",
            "-c",
            LOAD_SOURCE,
            SAMBA_USER,
            SAMBA_PASSWORD,
            SHARE,
            op,
        ])
        .arg(seconds.to_string())
        .args(
            workers
                .iter()
                .map(|w| format!("{}:{}:{}", w.address, w.file, w.offset)),
        )
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting smb_load.py")?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr_pipe = child.stderr.take().expect("piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().expect("stderr buffer");
                // Keep the beginning: the first errors say what went wrong.
                if text.len() < 16_000 {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        let mut load = Self {
            child,
            stdin,
            lines,
            stderr,
            started: 0.0,
        };
        let line = load.next_line(Duration::from_secs(90))?;
        match line.strip_prefix("ready ") {
            Some(t) => load.started = t.parse()?,
            None => bail!("smb_load.py: {line}\n{}", load.stderr()),
        }
        Ok(load)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    fn next_line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                bail!(
                    "smb_load.py said nothing for {timeout:?}\n{}",
                    self.stderr()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                bail!("smb_load.py exited\n{}", self.stderr())
            }
        }
    }

    /// The next progress line: (time, each client's completed operations).
    fn progress(&mut self) -> anyhow::Result<(f64, Vec<u64>)> {
        let line = self.next_line(Duration::from_secs(10))?;
        let Some(rest) = line.strip_prefix("progress ") else {
            bail!("smb_load.py: unexpected {line:?}\n{}", self.stderr());
        };
        let mut words = rest.split_whitespace();
        let t: f64 = words.next().context("progress time")?.parse()?;
        let counts = words.map(str::parse).collect::<Result<Vec<u64>, _>>()?;
        Ok((t, counts))
    }

    /// Stops a load started with 0 seconds, or waits for a timed one; returns its
    /// results.
    fn finish(mut self, stop: bool) -> anyhow::Result<LoadResult> {
        if stop {
            writeln!(self.stdin, "stop")?;
            self.stdin.flush()?;
        }
        let mut workers = Vec::new();
        loop {
            let line = self.next_line(Duration::from_secs(600))?;
            if line.starts_with("progress ") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("worker ") {
                let mut w = WorkerResult::default();
                for (key, value) in rest
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|kv| kv.split_once('='))
                {
                    match key {
                        "ops" => w.ops = value.parse()?,
                        "errors" => w.errors = value.parse()?,
                        "gap" => w.gap = value.parse()?,
                        "gap_at" => w.gap_at = value.parse()?,
                        "cpu" => w.cpu = value.parse()?,
                        _ => {}
                    }
                }
                workers.push(w);
            } else if let Some(rest) = line.strip_prefix("done ") {
                let (ended, cpu) = rest.split_once(" cpu=").context("done line")?;
                return Ok(LoadResult {
                    started: self.started,
                    ended: ended.parse()?,
                    cpu: cpu.parse()?,
                    workers,
                    stderr: self.stderr(),
                });
            } else {
                bail!("smb_load.py: unexpected {line:?}\n{}", self.stderr());
            }
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the survivors' stall -------------------------------------------------------

/// One stall run's observations, seconds after the power loss.
struct StallRun {
    /// The longest time without a completed operation on any survivor's client.
    stall: f64,
    /// When that gap began.
    stall_from: f64,
    /// When the survivors agreed (OK, one leader, one generation).
    agreed: f64,
    /// When they hosted every address.
    placed: f64,
    errors: u64,
    /// Each client's longest gap and the clients' standard error, for the log.
    details: String,
}

fn stall_table(runs: u64, daemons: &[Daemon], victims: &[Victim]) -> anyhow::Result<()> {
    let logs = vm::daemon::workspace_root().join("target/bench-smb");
    std::fs::create_dir_all(&logs)?;
    let mut rows = Vec::new();
    for &daemon in daemons {
        for &victim in victims {
            let mut samples = Vec::new();
            for run in 0..runs {
                let mut cluster = clustered_samba(daemon)?;
                let result = stall_run(&mut cluster, victim);
                let name = format!(
                    "{}-{victim:?}-{run}.log",
                    if daemon == Daemon::Ours {
                        "ours"
                    } else {
                        "stock"
                    }
                );
                let mut text = match &result {
                    Ok(sample) => sample.details.clone(),
                    Err(e) => format!("{e:#}\n"),
                };
                for pnn in ALL {
                    text.push_str(&format!(
                        "---- node {pnn} ----\n{}\n",
                        cluster.node(pnn).daemon_log()
                    ));
                }
                std::fs::write(logs.join(&name), text)?;
                let sample =
                    result.with_context(|| format!("{} {victim:?} run {run}", label(daemon)))?;
                eprintln!(
                    "{}: power loss of the {victim:?}, run {run}: stall {:.2} s (from +{:.2} s), \
                     survivors agreed +{:.2} s, every address hosted +{:.2} s, {} errors; logs in {}",
                    label(daemon),
                    sample.stall,
                    sample.stall_from,
                    sample.agreed,
                    sample.placed,
                    sample.errors,
                    logs.join(&name).display()
                );
                samples.push(sample);
            }
            rows.push((daemon, victim, samples));
        }
    }
    println!(
        "| daemon | node losing power | runs | stall: median (max), s | gap began after the fault: median, s | survivors agreed: median, s | every address hosted: median, s | failed operations |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (daemon, victim, samples) in rows {
        let pick = |f: fn(&StallRun) -> f64| -> Vec<f64> { samples.iter().map(f).collect() };
        let stalls = pick(|s| s.stall);
        println!(
            "| {} | {} | {} | {:.2} ({:.2}) | {:.2} | {:.2} | {:.2} | {} |",
            label(daemon),
            match victim {
                Victim::Follower => "a follower",
                Victim::Leader => "the leader",
            },
            samples.len(),
            median(&stalls),
            stalls.iter().copied().fold(0.0, f64::max),
            median(&pick(|s| s.stall_from)),
            median(&pick(|s| s.agreed)),
            median(&pick(|s| s.placed)),
            samples.iter().map(|s| s.errors).sum::<u64>(),
        );
    }
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn stall_run(cluster: &mut Cluster, victim: Victim) -> anyhow::Result<StallRun> {
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let dead = match victim {
        Victim::Follower => (leader + 1) % 3,
        Victim::Leader => leader,
    };
    let survivors: Vec<u32> = ALL.into_iter().filter(|p| *p != dead).collect();
    let (s1, s2) = (survivors[0], survivors[1]);
    let (a1, a2) = (address_of(cluster, s1)?, address_of(cluster, s2)?);
    let workers = [
        Worker {
            address: a1,
            file: format!("own-{s1}.dat"),
            offset: 0,
        },
        Worker {
            address: a2,
            file: format!("own-{s2}.dat"),
            offset: 0,
        },
        Worker {
            address: a1,
            file: "shared.dat".into(),
            offset: 0,
        },
        Worker {
            address: a2,
            file: "shared.dat".into(),
            offset: 100,
        },
    ];
    let mut load = Load::start(cluster, "lock-write", 0, &workers)?;
    // Every client busy for a while before the fault.
    loop {
        let (t, counts) = load.progress()?;
        if t >= load.started + SETTLE && counts.iter().all(|&n| n > 0) {
            break;
        }
    }
    let fault = monotonic();
    let fault_wall = std::time::SystemTime::now();
    power_off_machine(cluster, dead)?;
    cluster
        .wait_agreement(&survivors, &survivors, RECOVER_TIMEOUT)
        .with_context(|| {
            format!("the survivors {survivors:?} agree after node {dead} lost power")
        })?;
    let agreed = monotonic();
    wait_placed(cluster, &survivors, &addrs(), &survivors, RECOVER_TIMEOUT)?;
    let placed = monotonic();
    // Every client completes operations again, for a while.
    let mut at_placed: Option<Vec<u64>> = None;
    loop {
        let (t, counts) = load.progress()?;
        if t < placed {
            continue;
        }
        let base = at_placed.get_or_insert_with(|| counts.clone());
        if t >= placed + SETTLE && counts.iter().zip(base.iter()).all(|(n, b)| n > b) {
            break;
        }
        if t >= placed + RESUME_TIMEOUT.as_secs_f64() {
            // Reported as a stall that lasts until the stop.
            break;
        }
    }
    let result = load.finish(true)?;
    let worst = result
        .workers
        .iter()
        .max_by(|a, b| a.gap.total_cmp(&b.gap))
        .ok_or_else(|| anyhow!("no clients"))?;
    let mut details = format!(
        "power loss of node {dead} ({victim:?}) at {} (UTC, Unix seconds); survivors {s1} \
         ({a1}) and {s2} ({a2}) agreed +{:.3} s, every address hosted +{:.3} s\n",
        fault_wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        agreed - fault,
        placed - fault
    );
    for (w, r) in workers.iter().zip(&result.workers) {
        details.push_str(&format!(
            "client {}:{}:{}: {} operations, {} failed, longest gap {:.3} s from +{:.3} s\n",
            w.address,
            w.file,
            w.offset,
            r.ops,
            r.errors,
            r.gap,
            r.gap_at - fault
        ));
    }
    details.push_str(&format!("---- clients' stderr ----\n{}\n", result.stderr));
    Ok(StallRun {
        stall: worst.gap,
        stall_from: worst.gap_at - fault,
        agreed: agreed - fault,
        placed: placed - fault,
        errors: result.workers.iter().map(|w| w.errors).sum(),
        details,
    })
}

// ---- the rate -----------------------------------------------------------------

/// Jiffies the machine spent busy and in all, from /proc/stat.
fn cpu_jiffies() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("/proc/stat is empty")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

fn rate_table(seconds: u64, daemons: &[Daemon]) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for &daemon in daemons {
        let cluster = clustered_samba(daemon)?;
        let by_node: Vec<Ipv4Addr> = ALL
            .into_iter()
            .map(|pnn| address_of(&cluster, pnn))
            .collect::<anyhow::Result<_>>()?;
        let cases: [(&str, usize, bool, bool); 5] = [
            ("3 clients, one per node, one file", 3, true, false),
            ("3 clients, one per node, a file each", 3, false, false),
            ("6 clients, two per node, one file", 6, true, false),
            ("6 clients, two per node, a file each", 6, false, false),
            ("3 clients through node 0 only, one file", 3, true, true),
        ];
        for (name, clients, shared, one_node) in cases {
            let workers: Vec<Worker> = (0..clients)
                .map(|i| Worker {
                    address: by_node[if one_node { 0 } else { i % 3 }],
                    file: if shared {
                        "bench.dat".into()
                    } else {
                        format!("bench-{i}.dat")
                    },
                    offset: 100 * i as u32,
                })
                .collect();
            let load = Load::start(&cluster, "lock-unlock", seconds, &workers)?;
            let before = cpu_jiffies()?;
            let result = load.finish(false)?;
            let after = cpu_jiffies()?;
            let wall = result.ended - result.started;
            let ops: u64 = result.workers.iter().map(|w| w.ops).sum();
            let errors: u64 = result.workers.iter().map(|w| w.errors).sum();
            let busy = (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64;
            let cell = format!(
                "{:.0} ops/s (clients {:.2} cores, machine {:.0} % busy{})",
                ops as f64 / wall,
                result.cpu / wall,
                busy * 100.0,
                if errors > 0 {
                    format!(", {errors} refused")
                } else {
                    String::new()
                }
            );
            eprintln!("{}: {name}: {cell}", label(daemon));
            match rows.iter_mut().find(|r| r.0 == name) {
                Some(row) => row.1.push(cell),
                None => rows.push((name.to_owned(), vec![cell])),
            }
        }
        drop(cluster);
    }
    println!(
        "| open + lock + unlock + close, {seconds} s | {} |",
        daemons
            .iter()
            .map(|d| label(*d))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(daemons.len()));
    for (name, cells) in rows {
        println!("| {name} | {} |", cells.join(" | "));
    }
    eprintln!("({cores} cores)");
    Ok(())
}
