//! Record benchmarks for `BENCHMARKS.md` (issue #9, item 8), on our daemon and on
//! CTDB 4.17 in the same harness:
//! - **fetch-lock rate on one node**: one client increments a record it holds,
//!   the way smbd changes a record (chain lock, check the header names this node,
//!   store, unlock);
//! - **one hot record between 2 and 3 nodes**: one client per node increments the
//!   same record; each round migrates it (what CTDB's `fetch_ring` measures); the
//!   final count is checked against the increments made, so a lost update fails
//!   the run;
//! - **recovery time against database size**: node 0's volatile database filled
//!   with N records, then a recovery asked for as `ctdb recover` asks (SET_RECMODE
//!   active), timed until node 0 reports a new generation in normal mode (polled
//!   every 5 ms; the stock tool polls once a second, too coarse here);
//! - **memory with many records** (`records.sh memory [RECORDS]`, 1 000 000 by
//!   default): node 0's daemon and its child processes (VmRSS, RssAnon,
//!   RssFile + RssShmem, VmHWM from /proc/PID/status) when started, once its copy
//!   of a volatile database holds RECORDS records, and after a recovery of it;
//! - **recovery at scale** (`recovery.sh [SIZE...]`, issue #10 item 4): for each
//!   size a volatile database spread over the three nodes and a persistent one
//!   every node holds whole, a recovery timed until all three nodes are back in
//!   normal mode with a new generation, ctdbd's VmHWM during it and the peak
//!   VmRSS of each node's processes, then `ctdb recover` timed as a command
//!   (`CTDB_RS_DAEMON=ours|stock` for one daemon only, `CTDB_RS_BENCH_PERF=FILE`
//!   to record the recoveries with `perf record -g`).
//!
//! The clients are this process: they talk CTDB's protocol on each node's socket
//! and use libtdb on the node's database file (through `/proc/<pid>/root`), as
//! smbd does. `sudo tests/vm/bench/records.sh [SECONDS]` builds release binaries
//! and runs this; SECONDS (default 3) is the length of each rate measurement.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use ctdbd::db::ltdb::{self, LtdbHeader};
use ctdbd::db::tdb::{StoreMode, Tdb};
use ctdbd::protocol::Opcode;
use vm::records::Connection;
use vm::{Cluster, Daemon};

const ALL: [u32; 3] = [0, 1, 2];
const TIMEOUT: Duration = Duration::from_secs(60);
const SOCKET: &str = "/run/ctdb/ctdbd.socket";

/// A client of one node, as smbd is: a connection and the database file.
struct Client {
    conn: Connection,
    pnn: u32,
    db_id: u32,
    tdb: Tdb,
    /// The database file, seen from the host.
    file: std::path::PathBuf,
}

impl Client {
    /// Attaches `db` on node `pnn` and opens its file as smbd does (the path and
    /// flags the daemon gives).
    fn connect(cluster: &Cluster, pnn: u32, db: &str) -> anyhow::Result<Self> {
        Self::connect_to(cluster, pnn, db, false)
    }

    /// [`Client::connect`] to a volatile or a persistent database.
    fn connect_to(cluster: &Cluster, pnn: u32, db: &str, persistent: bool) -> anyhow::Result<Self> {
        let node = cluster.node(pnn);
        let stream = UnixStream::connect(node.path(SOCKET))
            .with_context(|| format!("connecting to node {pnn}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut conn = Connection {
            stream,
            pnn,
            reqid: 1,
        };
        let mut name = db.as_bytes().to_vec();
        name.push(0);
        let attach = if persistent {
            Opcode::DB_ATTACH_PERSISTENT
        } else {
            Opcode::DB_ATTACH
        };
        let id = conn.control(attach, name)?;
        let db_id = u32::from_le_bytes(id[..4].try_into()?);
        let path = conn.control(Opcode::GETDBPATH, db_id.to_le_bytes().to_vec())?;
        let path = String::from_utf8(path.split(|b| *b == 0).next().unwrap_or(&[]).to_vec())?;
        let flags = conn.control(Opcode::DB_OPEN_FLAGS, db_id.to_le_bytes().to_vec())?;
        let flags = u32::from_le_bytes(flags[..4].try_into()?);
        let file = node.path(&path);
        let tdb = Tdb::open(&file, 0, flags, libc::O_RDWR, 0)
            .with_context(|| format!("opening {path} of node {pnn}"))?;
        Ok(Client {
            conn,
            pnn,
            db_id,
            tdb,
            file,
        })
    }

    /// smbd's fetch lock and a store: increments the u64 in `key`'s record.
    /// Returns how many migrations it took.
    fn increment(&mut self, key: &[u8]) -> anyhow::Result<u32> {
        let mut migrations = 0;
        loop {
            self.tdb.chainlock(key)?;
            let stored = self.tdb.fetch(key)?;
            if let Some(stored) = stored {
                if let Ok((header, value)) = ltdb::decode(&stored) {
                    if header.dmaster == self.pnn {
                        let count = counter(value) + 1;
                        let result = self.tdb.store(
                            key,
                            &ltdb::encode(&header, &count.to_le_bytes()),
                            StoreMode::Replace,
                        );
                        self.tdb.chainunlock(key)?;
                        result?;
                        return Ok(migrations);
                    }
                }
            }
            self.tdb.chainunlock(key)?;
            self.conn.migrate(self.db_id, key)?;
            migrations += 1;
        }
    }

    /// The counter in `key`'s record if this node holds it.
    fn count(&self, key: &[u8]) -> anyhow::Result<Option<u64>> {
        let Some(stored) = self.tdb.fetch(key)? else {
            return Ok(None);
        };
        let (header, value) = ltdb::decode(&stored).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((header.dmaster == self.pnn).then(|| counter(value)))
    }
}

fn counter(value: &[u8]) -> u64 {
    value.try_into().map(u64::from_le_bytes).unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("recovery") {
        if std::env::var("CTDB_RS_PROFILE").as_deref() != Ok("release") {
            bail!("run through tests/vm/bench/recovery.sh (it sets CTDB_RS_PROFILE=release)");
        }
        let sizes = std::env::args()
            .skip(2)
            .map(|a| a.parse().context("each SIZE must be a number"))
            .collect::<anyhow::Result<Vec<usize>>>()?;
        let sizes = if sizes.is_empty() {
            vec![1_000, 10_000, 100_000]
        } else {
            sizes
        };
        return recovery_table(&sizes);
    }
    if std::env::args().nth(1).as_deref() == Some("memory") {
        if std::env::var("CTDB_RS_PROFILE").as_deref() != Ok("release") {
            bail!("run through tests/vm/bench/records.sh (it sets CTDB_RS_PROFILE=release)");
        }
        let records = std::env::args()
            .nth(2)
            .map(|a| a.parse().context("RECORDS must be a number"))
            .transpose()?
            .unwrap_or(1_000_000);
        return memory_table(records);
    }
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().context("SECONDS must be a number"))
        .transpose()?
        .unwrap_or(3);
    if std::env::var("CTDB_RS_PROFILE").as_deref() != Ok("release") {
        bail!("run through tests/vm/bench/records.sh (it sets CTDB_RS_PROFILE=release)");
    }
    let window = Duration::from_secs(seconds);
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for daemon in [Daemon::Ours, Daemon::Stock] {
        let label = match daemon {
            Daemon::Ours => "ctdb-rs",
            Daemon::Stock => "CTDB 4.17",
        };
        let mut cluster = Cluster::builder().nodes(3).shared_volume(true).build()?;
        cluster.start(daemon, TIMEOUT)?;
        cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;

        // Fetch-lock rate on one node.
        let mut client = Client::connect(&cluster, 0, "bench_local.tdb")?;
        client.increment(b"local")?;
        let start = Instant::now();
        let mut ops = 0u64;
        while start.elapsed() < window {
            client.increment(b"local")?;
            ops += 1;
        }
        let rate = ops as f64 / start.elapsed().as_secs_f64();
        eprintln!("{label}: local fetch-lock {rate:.0}/s");
        let ours = rows
            .iter()
            .position(|r| r.0 == "fetch-lock + store, record held locally (ops/s)");
        push(
            &mut rows,
            ours,
            "fetch-lock + store, record held locally (ops/s)",
            daemon,
            format!("{rate:.0}"),
        );

        // Calls the daemon answers at once: the record is already here (what smbd's
        // reads of records it does not hold cost when they are local after all).
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < window {
            client.conn.migrate(client.db_id, b"local")?;
            calls += 1;
        }
        let rate = calls as f64 / start.elapsed().as_secs_f64();
        eprintln!("{label}: local calls {rate:.0}/s");
        let name = "call answered by the local daemon, record held locally (calls/s)";
        let at = rows.iter().position(|r| r.0 == name);
        push(&mut rows, at, name, daemon, format!("{rate:.0}"));

        // One hot record between 2 and 3 nodes.
        for nodes in [2u32, 3] {
            let name = format!("one hot record, a client on each of {nodes} nodes (migrations/s)");
            let (migrations, rate) = ring(&cluster, nodes, window)?;
            eprintln!("{label}: ring of {nodes}: {rate:.0} migrations/s ({migrations} in all)");
            let at = rows.iter().position(|r| r.0 == name);
            push(&mut rows, at, &name, daemon, format!("{rate:.0}"));
        }

        // Recovery time against database size.
        for size in [1_000usize, 10_000, 100_000] {
            let secs = recovery_with(&cluster, size)?;
            let name = format!("recovery with {size} records on one node (s)");
            eprintln!("{label}: {name}: {secs:.3}");
            let at = rows.iter().position(|r| r.0 == name);
            push(&mut rows, at, &name, daemon, format!("{secs:.3}"));
        }
        drop(cluster);
    }
    println!("| measurement | ctdb-rs | CTDB 4.17 |");
    println!("|---|---|---|");
    for (name, ours, stock) in rows {
        println!("| {name} | {ours} | {stock} |");
    }
    Ok(())
}

fn push(
    rows: &mut Vec<(String, String, String)>,
    at: Option<usize>,
    name: &str,
    daemon: Daemon,
    value: String,
) {
    let i = at.unwrap_or_else(|| {
        rows.push((name.to_owned(), "-".into(), "-".into()));
        rows.len() - 1
    });
    match daemon {
        Daemon::Ours => rows[i].1 = value,
        Daemon::Stock => rows[i].2 = value,
    }
}

/// One client per node on the first `nodes` nodes, all incrementing one key for
/// `window`; checks the count and returns (migrations, migrations per second).
fn ring(cluster: &Cluster, nodes: u32, window: Duration) -> anyhow::Result<(u64, f64)> {
    let db = format!("bench_ring{nodes}.tdb");
    let clients: Vec<Client> = (0..nodes)
        .map(|pnn| Client::connect(cluster, pnn, &db))
        .collect::<anyhow::Result<_>>()?;
    let key = b"hot".to_vec();
    let start = Instant::now();
    let results: Vec<anyhow::Result<(Client, u64, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                let key = key.clone();
                scope.spawn(move || {
                    let (mut increments, mut migrations) = (0u64, 0u64);
                    while start.elapsed() < window {
                        migrations += u64::from(client.increment(&key)?);
                        increments += 1;
                    }
                    Ok((client, increments, migrations))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut total_increments = 0;
    let mut total_migrations = 0;
    let mut counts = Vec::new();
    for result in results {
        let (client, increments, migrations) = result?;
        total_increments += increments;
        total_migrations += migrations;
        counts.push(client.count(&key)?);
    }
    let held: Vec<u64> = counts.into_iter().flatten().collect();
    if held.len() != 1 || held[0] != total_increments {
        bail!("ring of {nodes}: {total_increments} increments made, dmaster copies hold {held:?}");
    }
    Ok((total_migrations, total_migrations as f64 / elapsed))
}

/// Fills node 0's copy of a fresh volatile database with `size` records it holds,
/// then times `ctdb recover` (which returns when the recovery has ended).
fn recovery_with(cluster: &Cluster, size: usize) -> anyhow::Result<f64> {
    let client = Client::connect(cluster, 0, &format!("bench_recovery{size}.tdb"))?;
    fill(&client, size)?;
    recover(client.conn, size)
}

/// Stores `size` records held by node 0 in `client`'s database file, in one
/// transaction, as smbd would have created them one by one.
fn fill(client: &Client, size: usize) -> anyhow::Result<()> {
    client.tdb.transaction_start()?;
    for i in 0..size {
        let key = format!("record-{i:08}");
        let header = LtdbHeader::new(1, 0);
        client.tdb.store(
            key.as_bytes(),
            &ltdb::encode(&header, b"share mode entry, about this long"),
            StoreMode::Replace,
        )?;
    }
    client.tdb.transaction_commit()?;
    Ok(())
}

/// Asks for a recovery through `conn` as `ctdb recover` does (SET_RECMODE
/// active) and returns the seconds until its node reports a new generation in
/// normal mode.
fn recover(conn: Connection, size: usize) -> anyhow::Result<f64> {
    recover_within(conn, size, TIMEOUT)
}

/// [`recover`] with a deadline of `timeout`.
fn recover_within(mut conn: Connection, size: usize, timeout: Duration) -> anyhow::Result<f64> {
    let generation = |conn: &mut Connection| -> anyhow::Result<u32> {
        let map = conn.control(Opcode::GETVNNMAP, Vec::new())?;
        Ok(u32::from_le_bytes(map[..4].try_into()?))
    };
    let before = generation(&mut conn)?;
    let start = Instant::now();
    conn.control(Opcode::SET_RECMODE, 1u32.to_le_bytes().to_vec())?;
    loop {
        let now = generation(&mut conn)?;
        if now != before && conn.status(Opcode::GET_RECMODE)? == 0 {
            break;
        }
        if start.elapsed() > timeout {
            bail!("no recovery with {size} records within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(secs)
}

// ---- memory with many records --------------------------------------------------

/// How long a recovery of the memory measurement may take.
const MEMORY_RECOVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// Memory of one process, from /proc/PID/status, in KiB.
struct Memory {
    name: String,
    rss: u64,
    anon: u64,
    file: u64,
    hwm: u64,
}

/// `pid` and every process descended from it (CTDB forks its recovery daemon,
/// event daemon and lock helpers), with their memory.
fn memory_tree(pid: u32) -> anyhow::Result<Vec<Memory>> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(p) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|f| f.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((p, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    let mut out = Vec::new();
    for p in tree {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("?")
            .trim()
            .to_owned();
        out.push(Memory {
            name: format!("{name} ({p})"),
            rss: field("VmRSS:"),
            anon: field("RssAnon:"),
            file: field("RssFile:") + field("RssShmem:"),
            hwm: field("VmHWM:"),
        });
    }
    Ok(out)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// Node 0's daemon (and its children) before and after its copy of a volatile
/// database is filled with `records` records, and after a recovery of the
/// cluster, for both daemons.
fn memory_table(records: usize) -> anyhow::Result<()> {
    println!(
        "| daemon | when | process | VmRSS MiB | RssAnon MiB | RssFile+RssShmem MiB | VmHWM MiB |"
    );
    println!("|---|---|---|---|---|---|---|");
    for daemon in [Daemon::Ours, Daemon::Stock] {
        let label = match daemon {
            Daemon::Ours => "ctdb-rs",
            Daemon::Stock => "CTDB 4.17",
        };
        let mut cluster = Cluster::builder().nodes(3).shared_volume(true).build()?;
        cluster.start(daemon, TIMEOUT)?;
        cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
        let pid = cluster.node_mut(0).daemon()?.process.pid();
        let report = |when: &str| -> anyhow::Result<()> {
            for m in memory_tree(pid)? {
                println!(
                    "| {label} | {when} | {} | {} | {} | {} | {} |",
                    m.name,
                    mib(m.rss),
                    mib(m.anon),
                    mib(m.file),
                    mib(m.hwm)
                );
            }
            Ok(())
        };
        report("started, no database")?;
        let client = Client::connect(&cluster, 0, "bench_memory.tdb")?;
        let start = Instant::now();
        fill(&client, records)?;
        let size = std::fs::metadata(&client.file).map(|m| m.len()).ok();
        eprintln!(
            "{label}: {records} records stored in {:.1} s (file {})",
            start.elapsed().as_secs_f64(),
            size.map_or("?".into(), |s| format!("{:.0} MiB", s as f64 / 1048576.0))
        );
        report(&format!("{records} records stored by a client (libtdb)"))?;
        let Client { conn, tdb, .. } = client;
        drop(tdb);
        let recovery = recover_within(conn, records, MEMORY_RECOVERY_TIMEOUT);
        match recovery {
            Ok(secs) => {
                eprintln!("{label}: recovery with {records} records: {secs:.1} s");
                report(&format!("after a recovery ({secs:.1} s)"))?;
            }
            Err(e) => {
                eprintln!("{label}: recovery with {records} records failed: {e:#}");
                report("after a recovery that failed")?;
            }
        }
        drop(cluster);
    }
    Ok(())
}

// ---- recovery at scale (issue #10 item 4) ---------------------------------------

/// Stores the records `index % 3 == pnn` of `size` (volatile: held by `pnn`), or
/// all of them (persistent: every node has the whole database, as after the
/// transactions that wrote it), in `client`'s copy, in one transaction.
fn fill_share(client: &Client, size: usize, persistent: bool) -> anyhow::Result<()> {
    client.tdb.transaction_start()?;
    for i in (0..size).filter(|i| persistent || *i as u32 % 3 == client.pnn) {
        let key = format!("record-{i:08}");
        let header = LtdbHeader::new(1, client.pnn);
        client.tdb.store(
            key.as_bytes(),
            &ltdb::encode(&header, b"share mode entry, about this long"),
            StoreMode::Replace,
        )?;
    }
    client.tdb.transaction_commit()?;
    Ok(())
}

/// Every process of the node: the daemon and what it forked (CTDB's recovery
/// daemon and its recovery helper, lock helpers).
fn tree_rss_kib(pid: u32) -> u64 {
    memory_tree(pid)
        .map(|t| t.iter().map(|m| m.rss).sum())
        .unwrap_or(0)
}

/// Resets the daemon's VmHWM (`clear_refs` 5), so that its next reading is the
/// peak since now.
fn reset_hwm(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting VmHWM of {pid}"))
}

fn hwm_kib(pid: u32) -> u64 {
    memory_tree(pid)
        .ok()
        .and_then(|t| t.first().map(|m| m.hwm))
        .unwrap_or(0)
}

/// One recovery's figures.
struct RecoveryRun {
    /// SET_RECMODE on node 0 until every node reports a new generation in normal
    /// mode (each polled every 5 ms).
    secs: f64,
    /// The largest ctdbd VmHWM of the three during the recovery, MiB.
    hwm_mib: f64,
    /// The largest sum of VmRSS over one node's daemon and its child processes,
    /// sampled every 10 ms during the recovery, MiB.
    tree_mib: f64,
}

/// Asks node 0 for a recovery (SET_RECMODE active, what `ctdb recover` sends) and
/// times it until all three nodes are back in normal mode with a new generation,
/// sampling the daemons' memory meanwhile.
fn timed_recovery(cluster: &mut Cluster, conns: &mut [Connection]) -> anyhow::Result<RecoveryRun> {
    let pids: Vec<u32> = (0..3)
        .map(|pnn| Ok(cluster.node_mut(pnn).daemon()?.process.pid()))
        .collect::<anyhow::Result<_>>()?;
    for pid in &pids {
        reset_hwm(*pid)?;
    }
    let generation = |conn: &mut Connection| -> anyhow::Result<u32> {
        let map = conn.control(Opcode::GETVNNMAP, Vec::new())?;
        Ok(u32::from_le_bytes(map[..4].try_into()?))
    };
    let before = generation(&mut conns[0])?;
    // CTDB_RS_BENCH_PERF=FILE: the recovery under `perf record` (all three
    // daemons), to see where its time goes. DWARF call graphs: the release build
    // keeps no frame pointers, so `-g` would show no callers.
    let perf = match std::env::var_os("CTDB_RS_BENCH_PERF") {
        Some(file) => {
            let pids = pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let child = std::process::Command::new("perf")
                .args([
                    "record",
                    "-q",
                    "-F",
                    "499",
                    "--call-graph",
                    "dwarf,16384",
                    "-o",
                ])
                .arg(file)
                .args(["-p", &pids])
                .spawn()
                .context("starting perf")?;
            std::thread::sleep(Duration::from_millis(500));
            Some(child)
        }
        None => None,
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let (secs, tree_kib) = std::thread::scope(|scope| -> anyhow::Result<(f64, u64)> {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            loop {
                for pid in &pids {
                    peak = peak.max(tree_rss_kib(*pid));
                }
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let start = Instant::now();
        let result = (|| -> anyhow::Result<f64> {
            conns[0].control(Opcode::SET_RECMODE, 1u32.to_le_bytes().to_vec())?;
            let mut finished = [false; 3];
            loop {
                for (i, conn) in conns.iter_mut().enumerate() {
                    if !finished[i] {
                        finished[i] =
                            generation(conn)? != before && conn.status(Opcode::GET_RECMODE)? == 0;
                    }
                }
                if finished.iter().all(|f| *f) {
                    return Ok(start.elapsed().as_secs_f64());
                }
                if start.elapsed() > MEMORY_RECOVERY_TIMEOUT {
                    bail!("no recovery within {MEMORY_RECOVERY_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.join().expect("memory sampler");
        Ok((result?, peak))
    })?;
    if let Some(mut child) = perf {
        // SIGINT, by its PID: perf writes its file and exits.
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()?;
        child.wait()?;
    }
    let hwm = pids.iter().map(|p| hwm_kib(*p)).max().unwrap_or(0);
    Ok(RecoveryRun {
        secs,
        hwm_mib: hwm as f64 / 1024.0,
        tree_mib: tree_kib as f64 / 1024.0,
    })
}

/// For each size: a volatile database whose records are spread over the three
/// nodes and a persistent one that every node holds whole, then a recovery timed
/// (see [`timed_recovery`]) and `ctdb recover` (our tool on node 0) timed as a
/// command. The databases of the smaller sizes stay attached, as they would.
fn recovery_table(sizes: &[usize]) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    // CTDB_RS_DAEMON=ours|stock measures only that one.
    let daemons = if std::env::var_os("CTDB_RS_DAEMON").is_some() {
        vec![Daemon::from_env()?]
    } else {
        vec![Daemon::Ours, Daemon::Stock]
    };
    for daemon in daemons {
        let label = match daemon {
            Daemon::Ours => "ctdb-rs",
            Daemon::Stock => "CTDB 4.17",
        };
        let mut cluster = Cluster::builder().nodes(3).shared_volume(true).build()?;
        cluster.start(daemon, TIMEOUT)?;
        cluster.wait_agreement(&ALL, &ALL, TIMEOUT)?;
        let mut conns: Vec<Connection> = ALL
            .iter()
            .map(|pnn| {
                let node = cluster.node(*pnn);
                let stream = UnixStream::connect(node.path(SOCKET))?;
                stream.set_read_timeout(Some(Duration::from_millis(100)))?;
                Ok(Connection {
                    stream,
                    pnn: *pnn,
                    reqid: 1,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        // A first recovery with nothing in the databases: what a recovery costs
        // whatever the size.
        let empty = timed_recovery(&mut cluster, &mut conns)?;
        eprintln!("{label}: recovery, no records: {:.3} s", empty.secs);
        lines.push(format!(
            "| {label} | 0 | {:.3} | - | {:.1} | {:.1} |",
            empty.secs, empty.hwm_mib, empty.tree_mib
        ));
        for &size in sizes {
            let start = Instant::now();
            for pnn in ALL {
                for persistent in [false, true] {
                    let kind = if persistent { "persistent" } else { "volatile" };
                    let client = Client::connect_to(
                        &cluster,
                        pnn,
                        &format!("bench_rec_{kind}{size}.tdb"),
                        persistent,
                    )?;
                    fill_share(&client, size, persistent)?;
                }
            }
            eprintln!(
                "{label}: {size} records stored in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            let run = timed_recovery(&mut cluster, &mut conns)?;
            let start = Instant::now();
            let out = cluster.node(0).ctdb(vm::Tool::Ours, &["recover"])?;
            let tool_secs = start.elapsed().as_secs_f64();
            if out.code != Some(0) {
                bail!(
                    "{label}: ctdb recover with {size} records failed: {}",
                    out.stderr
                );
            }
            eprintln!(
                "{label}: recovery with {size} + {size} records: {:.3} s (ctdb recover {tool_secs:.2} s), \
                 ctdbd VmHWM {:.1} MiB, node processes {:.1} MiB",
                run.secs, run.hwm_mib, run.tree_mib
            );
            lines.push(format!(
                "| {label} | {size} | {:.3} | {tool_secs:.2} | {:.1} | {:.1} |",
                run.secs, run.hwm_mib, run.tree_mib
            ));
        }
        drop(conns);
        drop(cluster);
    }
    println!(
        "| daemon | records per database | recovery (s) | `ctdb recover` (s) | ctdbd VmHWM (MiB) | node's processes, VmRSS sum (MiB) |"
    );
    println!("|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
