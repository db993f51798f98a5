//! Database recovery on real components (issue #10, "recovery at scale"): a node
//! that makes recoveries fail is banned, and recoveries forced while clients
//! hammer records finish and lose no acknowledged persistent write.
//!
//! Topology (both scenarios):
//!
//! ```text
//!          fabric netns: bridge priv (192.168.20.0/24)     bridge pub (10.0.20.0/24)
//!   node 0 .41 ctdbd    node 1 .42 ctdbd    node 2 .43 ctdbd     public 10.0.20.101-103
//!        \                   |                   /
//!         +---- /srv/shared (one host temp dir): nodes, public_addresses, reclock
//!   node 2 (ban scenario): /var/lib/ctdb/persistent on a 4 MiB tmpfs of its own
//! ```
//!
//! The fault of the ban scenario is a real one: node 2's persistent database
//! directory is a tmpfs filled to the last page, so that node cannot store the
//! copy of a persistent database that a recovery pushes to it once that copy
//! has grown (libtdb must extend the file and gets ENOSPC). The clients of the
//! load scenario are the `ctdb` tool (ours) run in each node: `pstore` and
//! `ptrans` for persistent transactions, `writekey` (fetch-lock, migrate, store)
//! on a few keys shared by every node for volatile record migrations.
//!
//! The daemon is ours by default; `CTDB_RS_DAEMON=stock` runs the same scenarios
//! on Debian's CTDB 4.17 (the log checks are ours). 4.17 passes the load
//! scenario and fails the ban scenario: it never bans the node whose commit of
//! the pushed copy fails (`DB_TRANSACTION_COMMIT failed ... on node 2`); its
//! leader starts one failing recovery after another (435 in 8 minutes here),
//! and the whole cluster stays in recovery mode until the disk is fixed. Ours
//! bans that node after three failed recoveries in a row, as 4.17 does for a
//! node whose failures it blames, and the others go on without it.
//!
//! ```text
//! cargo test -p vm --test recovery
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};
use vm::public::{address_held_by, default_public, wait_placed};
use vm::{wait_until, Cluster, Daemon, Entry, Node, Status, Tool};

const ALL: [u32; 3] = [0, 1, 2];
/// Cold start to RUNNING (the stock daemon takes about 22 s; a loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Elections, recoveries and takeover runs after a change.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

// ---- helpers ------------------------------------------------------------------

fn public_addrs() -> Vec<Ipv4Addr> {
    ALL.iter().map(|p| default_public(*p)).collect()
}

/// Whether `flags` (as `ctdb status` prints them, `A|B|C`) has `flag`.
fn has_flag(flags: Option<&str>, flag: &str) -> bool {
    flags.is_some_and(|f| f.split('|').any(|f| f == flag))
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One node's copy of a database as `ctdb --json cattdb` (ours) reads it from
/// the node's own file: key (hex) -> (rsn, value as hex).
fn local_copy(
    run: impl Fn(&[&str]) -> anyhow::Result<vm::Output>,
    db: &str,
) -> anyhow::Result<BTreeMap<String, (u64, String)>> {
    let out = run(&["--json", "cattdb", db])?;
    ensure!(out.success(), "`ctdb --json cattdb {db}` failed:\n{out}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("`ctdb --json cattdb {db}` is not JSON:\n{out}"))?;
    let records = doc["records"]
        .as_array()
        .ok_or_else(|| anyhow!("`ctdb --json cattdb {db}` has no records array:\n{out}"))?;
    records
        .iter()
        .map(|r| {
            let key = r["key"].as_str();
            let rsn = r["rsn"].as_u64();
            let data = r["data"].as_str();
            match (key, rsn, data) {
                (Some(k), Some(rsn), Some(d)) => Ok((k.to_owned(), (rsn, d.to_owned()))),
                _ => Err(anyhow!("odd record {r} in `ctdb --json cattdb {db}`")),
            }
        })
        .collect()
}

/// Every node's copy of persistent database `db`; fails unless all are the same
/// (same keys, sequence numbers and values).
fn copies_alike(cluster: &Cluster, db: &str) -> anyhow::Result<BTreeMap<String, (u64, String)>> {
    let mut copies = Vec::new();
    for pnn in ALL {
        let node = cluster.node(pnn);
        copies.push((pnn, local_copy(|a| node.ctdb(Tool::Ours, a), db)?));
    }
    let (first_pnn, first) = &copies[0];
    for (pnn, copy) in &copies[1..] {
        if copy != first {
            let only_first: Vec<_> = first.iter().filter(|r| !copy.contains_key(r.0)).collect();
            let differ: Vec<_> = copy
                .iter()
                .filter(|(k, v)| first.get(*k) != Some(v))
                .collect();
            bail!(
                "node {pnn}'s copy of {db} differs from node {first_pnn}'s: records only on \
                 node {first_pnn}: {only_first:?}; records of node {pnn} that node {first_pnn} \
                 lacks or has otherwise: {differ:?}"
            );
        }
    }
    Ok(copies.swap_remove(0).1)
}

/// Waits until every node of `on` agrees (all of `ok` OK, recovery mode NORMAL,
/// one leader, one valid generation) on a generation other than `old`; returns
/// the new one.
fn wait_new_generation(
    cluster: &Cluster,
    on: &[u32],
    ok: &[u32],
    old: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let agreed = cluster.wait_agreement(on, ok, left)?;
        if agreed.generation != old {
            return Ok(agreed.generation);
        }
        if start.elapsed() >= timeout {
            bail!(
                "the generation stayed {old} for {timeout:?}: no recovery finished\n{}",
                cluster.logs()
            );
        }
        std::thread::sleep(vm::wait::POLL_INTERVAL);
    }
}

// ---- the ban --------------------------------------------------------------------

/// The node whose disk is filled.
const FAULTY: u32 = 2;
const BAN_DB: &str = "recban.tdb";
const PERSISTENT_DIR: &str = "/var/lib/ctdb/persistent";
const FILLER: &str = "/var/lib/ctdb/persistent/filler";
/// `RecoveryBanPeriod` here (default 300 s).
const BAN_PERIOD: Duration = Duration::from_secs(20);
/// Size of each of the records node 2 cannot store.
const BIG_VALUE_LEN: usize = 64 * 1024;

/// Fills node `node`'s persistent directory to the last page.
fn fill_disk(node: &Node) -> anyhow::Result<()> {
    let dd = node.run("dd", &["if=/dev/zero", &format!("of={FILLER}"), "bs=4096"])?;
    ensure!(
        dd.stderr.contains("No space left on device"),
        "dd should have filled {PERSISTENT_DIR} on node {}:\n{dd}",
        node.pnn()
    );
    let avail = node.run("stat", &["-f", "-c", "%a", PERSISTENT_DIR])?;
    ensure!(
        avail.success() && avail.stdout.trim() == "0",
        "{PERSISTENT_DIR} on node {} should have no free block left:\n{avail}",
        node.pnn()
    );
    Ok(())
}

/// Scenario: a node that makes database recoveries fail is banned.
///
/// Given three nodes, `RecoveryBanPeriod` 20 s, node 2's persistent database
///   directory on a small tmpfs, a persistent database with one record on every
///   node, and node 2 hosting a public address;
/// When node 2's tmpfs is filled, a 64 KiB record is stored through node 0 (on
///   nodes 0 and 1 at least: node 2 cannot store it) and a recovery is forced
///   with `ctdb recover`;
/// Then the recoveries fail on node 2 (it cannot store the pushed copy), node 2
///   is BANNED (our `ctdb status` and the stock one, on nodes 0 and 1), nodes 0
///   and 1 finish a recovery without it and host every public address;
/// And once the disk has room again and the ban period has passed, node 2 is OK
///   again on every node, hosts an address again, and every node's copy of the
///   database is the same, with the records acknowledged before.
#[test]
fn a_node_that_fails_recoveries_is_banned_then_comes_back() -> anyhow::Result<()> {
    let daemon = Daemon::from_env()?;
    let mut cluster = Cluster::builder()
        .nodes(3)
        .shared_volume(true)
        .tunables(&format!("RecoveryBanPeriod={}\n", BAN_PERIOD.as_secs()))
        .build()?;
    // In node 2's own mount namespace: gone with it, invisible to the host.
    let mounted = cluster.node(FAULTY).run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=4m,mode=0755",
            "ctdbrs-small",
            PERSISTENT_DIR,
        ],
    )?;
    ensure!(
        mounted.success(),
        "mounting a tmpfs on node 2's persistent dir:\n{mounted}"
    );
    cluster.start(daemon, START_TIMEOUT)?;
    let agreed = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    wait_placed(&cluster, &ALL, &public_addrs(), &ALL, CONVERGE_TIMEOUT)?;
    let faulty_addr = address_held_by(&cluster, FAULTY, CONVERGE_TIMEOUT)?;

    let attach = cluster
        .node(0)
        .ctdb(Tool::Ours, &["attach", BAN_DB, "persistent"])?;
    ensure!(attach.success(), "attaching {BAN_DB}:\n{attach}");
    cluster.wait_on(
        &ALL,
        CONVERGE_TIMEOUT,
        &format!("{BAN_DB} attached"),
        |c, pnn| {
            let out = c.ctdb_ok(pnn, Tool::Ours, &["getdbmap"])?;
            if out.stdout.contains(&format!("name:{BAN_DB} ")) {
                Ok(())
            } else {
                Err(out.to_string())
            }
        },
    )?;
    let before = cluster
        .node(0)
        .ctdb(Tool::Ours, &["pstore", BAN_DB, "before", "fault"])?;
    ensure!(
        before.success(),
        "the first record should be stored:\n{before}"
    );

    fill_disk(cluster.node(FAULTY))?;
    // libtdb grows a file by a quarter at least, so node 2's copy has room
    // inside: records larger in all than the whole file cannot fit. Whether
    // they are acknowledged depends on the daemon (node 2 refuses its part:
    // ours answers once the others stored them, 4.17 holds the answer until a
    // recovery has run): they are on nodes 0 and 1 either way, so the copy a
    // recovery pushes is one node 2 cannot store.
    let file_len = std::fs::metadata(
        cluster
            .node(FAULTY)
            .path(&format!("{PERSISTENT_DIR}/{BAN_DB}.{FAULTY}")),
    )?
    .len();
    let count = usize::try_from(file_len)? / BIG_VALUE_LEN + 1;
    let big: Vec<(String, String)> = (0..count)
        .map(|i| {
            (
                format!("big-{i}"),
                format!("{i:04}").repeat(BIG_VALUE_LEN / 4),
            )
        })
        .collect();
    // One transaction each (`ptrans` takes lines of 1 KiB at most).
    let mut acknowledged_big = Vec::new();
    let mut refused_big = Vec::new();
    for (key, value) in big {
        match cluster
            .node(0)
            .ctdb(Tool::Ours, &["pstore", BAN_DB, &key, &value])
        {
            Ok(out) if out.success() => acknowledged_big.push((key, value)),
            // Refused: the fault is in effect; 4.17 refuses the next ones too,
            // each after its timeout.
            Ok(out) => {
                refused_big.push(format!("{key}: exit {:?} {:?}", out.code, out.stderr));
                break;
            }
            Err(e) => {
                refused_big.push(format!("{key}: {e:#}"));
                break;
            }
        }
    }
    eprintln!(
        "{count} records of {BIG_VALUE_LEN} bytes to write (node 2's file: {file_len} bytes) \
         with node 2's disk full: {} acknowledged, then not acknowledged: {refused_big:?}",
        acknowledged_big.len()
    );

    // A recovery, forced through a healthy node. `ctdb recover` returns once a
    // recovery finished, which it cannot while node 2 takes part; the ban
    // decides, so its result is not judged.
    let recover = cluster.node(0).ctdb(Tool::Ours, &["recover"]);
    eprintln!("ctdb recover: {recover:?}");
    let healthy = [0, 1];
    cluster.wait_status(&healthy, CONVERGE_TIMEOUT, "node 2 BANNED", |s| {
        has_flag(s.flags(FAULTY), "BANNED")
    })?;
    // The stock tool says the same.
    cluster.wait_on(
        &healthy,
        CONVERGE_TIMEOUT,
        "node 2 BANNED (stock ctdb)",
        |c, pnn| {
            let out = c.ctdb_ok(pnn, Tool::observer(), &["status"])?;
            let status = vm::observe::parse_status(&out.stdout)?;
            if has_flag(status.flags(FAULTY), "BANNED") {
                Ok(())
            } else {
                Err(out.to_string())
            }
        },
    )?;
    let without = wait_new_generation(
        &cluster,
        &healthy,
        &healthy,
        &agreed.generation,
        CONVERGE_TIMEOUT,
    )?;
    let placed = wait_placed(
        &cluster,
        &healthy,
        &public_addrs(),
        &healthy,
        CONVERGE_TIMEOUT,
    )?;
    ensure!(
        placed.get(&faulty_addr).is_some_and(|p| *p != FAULTY),
        "{faulty_addr}, node 2's address, should have moved: {placed:?}"
    );
    if daemon == Daemon::Ours {
        // Storing a batch or committing the push ("storing"/"committing pushed
        // records failed"), wherever libtdb meets the full disk.
        cluster.wait_log(FAULTY, CONVERGE_TIMEOUT, "pushed records failed")?;
        let leader = cluster
            .status(0)
            .map_err(|e| anyhow!(e))?
            .leader
            .context("a leader after the ban")?;
        cluster.wait_log(
            leader,
            CONVERGE_TIMEOUT,
            "node keeps failing database recoveries",
        )?;
    }

    // The fault goes: the filler is removed and the disk grown (libtdb's failed
    // growths left node 2's file as large as the space they found, so removing
    // the filler alone leaves too little room). The ban ends by itself after
    // its period.
    let removed = cluster.node(FAULTY).run("rm", &[FILLER])?;
    ensure!(removed.success(), "removing the filler:\n{removed}");
    let grown = cluster
        .node(FAULTY)
        .run("mount", &["-o", "remount,size=64m", PERSISTENT_DIR])?;
    ensure!(grown.success(), "growing node 2's tmpfs:\n{grown}");
    let back = wait_new_generation(
        &cluster,
        &ALL,
        &ALL,
        &without,
        BAN_PERIOD + CONVERGE_TIMEOUT,
    )?;
    wait_placed(&cluster, &ALL, &public_addrs(), &ALL, CONVERGE_TIMEOUT)?;
    address_held_by(&cluster, FAULTY, CONVERGE_TIMEOUT)?;
    eprintln!(
        "generations: start {}, without node 2 {without}, node 2 back {back}",
        agreed.generation
    );

    let copy = copies_alike(&cluster, BAN_DB)?;
    let mut want = vec![("before".to_owned(), "fault".to_owned())];
    want.extend(acknowledged_big);
    for (key, value) in want {
        let got = copy.get(&lower_hex(key.as_bytes())).map(|(_, d)| d);
        ensure!(
            got == Some(&lower_hex(value.as_bytes())),
            "acknowledged record {key:?} is missing or wrong in {BAN_DB} (every node's copy \
             is the same)"
        );
    }
    for pnn in ALL {
        let got = cluster
            .node(pnn)
            .ctdb(Tool::Ours, &["pfetch", BAN_DB, "before"])?;
        ensure!(
            got.success() && got.stdout.trim_end() == "fault",
            "node {pnn}: pfetch before:\n{got}"
        );
    }
    Ok(())
}

// ---- recoveries under load --------------------------------------------------------

const LOAD_DB: &str = "hammer.tdb";
const HOT_DB: &str = "hammer_hot.tdb";
/// Keys of the volatile database written by every node in turn (each write
/// migrates the record to the writer).
const HOT_KEYS: u64 = 4;
/// Longest a client may go without an acknowledged write while its node is up.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);

/// What the clients did, shared with the test thread.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    /// Acknowledged persistent writes: (key, value, through pnn).
    acknowledged: Mutex<Vec<(String, String, u32)>>,
    /// Persistent transactions that failed (not acknowledged).
    refused: AtomicU64,
    /// Acknowledged persistent writes by node.
    by_node: [AtomicU64; 3],
    /// Acknowledged volatile writes by node.
    hot_by_node: [AtomicU64; 3],
}

impl Load {
    fn acknowledged_through(&self, pnn: u32) -> u64 {
        self.by_node[pnn as usize].load(Ordering::SeqCst)
    }

    fn hot_through(&self, pnn: u32) -> u64 {
        self.hot_by_node[pnn as usize].load(Ordering::SeqCst)
    }
}

/// Stops the clients when the test thread leaves the scope, failing or not.
struct StopOnDrop<'a>(&'a Load);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

/// A persistent client on one node: `pstore` of a fresh key, and every fourth
/// round a `ptrans` of two fresh keys, counting only those that exit 0.
fn persistent_client(node: Entry, load: &Load, ptrans_file_host: std::path::PathBuf) {
    let pnn = node.pnn();
    let inside = format!(
        "/var/lib/ctdb/{}",
        ptrans_file_host.file_name().unwrap().to_string_lossy()
    );
    let mut round = 0u64;
    while !load.stop.load(Ordering::SeqCst) {
        round += 1;
        let writes: Vec<(String, String)> = if round % 4 == 0 {
            (0..2)
                .map(|k| {
                    (
                        format!("n{pnn}-t{round}-{k}"),
                        format!("ptrans {round}.{k} via {pnn}"),
                    )
                })
                .collect()
        } else {
            vec![(
                format!("n{pnn}-s{round}"),
                format!("pstore {round} via {pnn}"),
            )]
        };
        let out = if writes.len() == 1 {
            node.ctdb(Tool::Ours, &["pstore", LOAD_DB, &writes[0].0, &writes[0].1])
        } else {
            let lines: String = writes
                .iter()
                .map(|(k, v)| format!("\"{k}\" \"{v}\"\n"))
                .collect();
            match std::fs::write(&ptrans_file_host, lines) {
                Ok(()) => node.ctdb(Tool::Ours, &["ptrans", LOAD_DB, &inside]),
                Err(e) => Err(e.into()),
            }
        };
        if matches!(&out, Ok(o) if o.success()) {
            let mut acked = load.acknowledged.lock().unwrap();
            acked.extend(writes.into_iter().map(|(k, v)| (k, v, pnn)));
            load.by_node[pnn as usize].fetch_add(1, Ordering::SeqCst);
        } else {
            load.refused.fetch_add(1, Ordering::SeqCst);
            // A node whose daemon is down fails at once: do not spin.
            std::thread::sleep(vm::wait::POLL_INTERVAL);
        }
    }
}

/// A volatile client on one node: `writekey` of the shared hot keys in turn.
fn hot_client(node: Entry, load: &Load) {
    let pnn = node.pnn();
    let mut round = 0u64;
    while !load.stop.load(Ordering::SeqCst) {
        round += 1;
        let key = format!("hot-{}", round % HOT_KEYS);
        let value = format!("w{pnn}-{round}");
        let out = node.ctdb(Tool::Ours, &["writekey", HOT_DB, &key, &value]);
        if matches!(&out, Ok(o) if o.success()) {
            load.hot_by_node[pnn as usize].fetch_add(1, Ordering::SeqCst);
        } else {
            std::thread::sleep(vm::wait::POLL_INTERVAL);
        }
    }
}

/// Waits until the clients of every node of `on` have had `more` further
/// persistent and volatile writes acknowledged.
fn wait_progress(load: &Load, on: &[u32], what: &str) -> anyhow::Result<()> {
    let start: Vec<(u64, u64)> = on
        .iter()
        .map(|p| (load.acknowledged_through(*p), load.hot_through(*p)))
        .collect();
    wait_until(PROGRESS_TIMEOUT, || {
        let now: Vec<(u32, u64, u64)> = on
            .iter()
            .map(|p| (*p, load.acknowledged_through(*p), load.hot_through(*p)))
            .collect();
        let moved = now
            .iter()
            .zip(&start)
            .all(|((_, p, h), (p0, h0))| p > p0 && h > h0);
        if moved {
            Ok(())
        } else {
            Err(format!(
                "(pnn, persistent, volatile) acknowledged: {now:?}, from {start:?}"
            ))
        }
    })
    .map_err(|e| anyhow!("clients made no progress {what}: {e}"))
}

/// `ctdb recover` (ours) through node `via`, then every node agreeing on a new
/// generation in recovery mode NORMAL.
fn forced_recovery(cluster: &Cluster, via: u32, old: &str) -> anyhow::Result<String> {
    let out = cluster.node(via).ctdb(Tool::Ours, &["recover"])?;
    ensure!(out.success(), "`ctdb recover` through node {via}:\n{out}");
    wait_new_generation(cluster, &ALL, &ALL, old, CONVERGE_TIMEOUT)
}

fn recmode_normal(s: &Status) -> bool {
    s.recovery_mode == "NORMAL (0)"
}

/// Scenario: recoveries while clients hammer records finish and lose nothing.
///
/// Given three nodes with a persistent and a volatile database, and on each node
///   one client doing persistent transactions (`ctdb pstore`, and `ctdb ptrans`
///   of two records every fourth time) and one writing four volatile keys that
///   every node writes (`ctdb writekey`: each write migrates the record);
/// When, with the clients running, recoveries are forced with `ctdb recover`
///   through each node in turn, node 1's daemon is killed and started again, and
///   one more recovery is forced;
/// Then every recovery finishes (a new generation on every node, recovery mode
///   NORMAL), the clients keep getting writes acknowledged after each;
/// And at the end every acknowledged persistent write is in every node's copy
///   (`ctdb cattdb`) and reads back through every node (`ctdb pfetch`, a sample),
///   the copies of the persistent database are the same on all nodes, and the
///   volatile keys read back through every node.
#[test]
fn recoveries_under_load_lose_no_acknowledged_write() -> anyhow::Result<()> {
    let daemon = Daemon::from_env()?;
    let mut cluster = Cluster::builder().nodes(3).shared_volume(true).build()?;
    cluster.start(daemon, START_TIMEOUT)?;
    let mut generation = cluster
        .wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?
        .generation;
    for (db, kind) in [(LOAD_DB, Some("persistent")), (HOT_DB, None)] {
        let mut args = vec!["attach", db];
        args.extend(kind);
        let out = cluster.node(0).ctdb(Tool::Ours, &args)?;
        ensure!(out.success(), "attaching {db}:\n{out}");
    }
    cluster.wait_on(
        &ALL,
        CONVERGE_TIMEOUT,
        "both databases attached",
        |c, pnn| {
            let out = c.ctdb_ok(pnn, Tool::Ours, &["getdbmap"])?;
            if [LOAD_DB, HOT_DB]
                .iter()
                .all(|db| out.stdout.contains(&format!("name:{db} ")))
            {
                Ok(())
            } else {
                Err(out.to_string())
            }
        },
    )?;

    let load = Load::default();
    let entries: Vec<Entry> = ALL.iter().map(|p| cluster.node(*p).entry()).collect();
    let ptrans_files: Vec<_> = ALL
        .iter()
        .map(|p| cluster.node(*p).var_dir().join(format!("ptrans-input-{p}")))
        .collect();
    let mut generations = vec![generation.clone()];
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let _stop = StopOnDrop(&load);
        for (entry, file) in entries.iter().zip(&ptrans_files) {
            let (e1, e2, load) = (entry.clone(), entry.clone(), &load);
            scope.spawn(move || persistent_client(e1, load, file.clone()));
            scope.spawn(move || hot_client(e2, load));
        }
        wait_progress(&load, &ALL, "before the first recovery")?;
        for via in ALL {
            generation = forced_recovery(&cluster, via, &generation)?;
            generations.push(generation.clone());
            wait_progress(
                &load,
                &ALL,
                &format!("after the recovery forced through node {via}"),
            )?;
        }

        cluster.kill_daemon(1)?;
        generation =
            wait_new_generation(&cluster, &[0, 2], &[0, 2], &generation, CONVERGE_TIMEOUT)?;
        generations.push(generation.clone());
        wait_progress(&load, &[0, 2], "with node 1 down")?;
        cluster.restart_daemon(1)?;
        cluster
            .node_mut(1)
            .wait_runstate("RUNNING", START_TIMEOUT)?;
        generation = wait_new_generation(&cluster, &ALL, &ALL, &generation, CONVERGE_TIMEOUT)?;
        generations.push(generation.clone());
        wait_progress(&load, &ALL, "after node 1 came back")?;

        generation = forced_recovery(&cluster, 2, &generation)?;
        generations.push(generation.clone());
        wait_progress(&load, &ALL, "after the last recovery")?;
        Ok(())
    })?;
    let loaded_for = started.elapsed();

    // Clients stopped: every recovery is over.
    let statuses = cluster.wait_status(
        &ALL,
        CONVERGE_TIMEOUT,
        "recovery mode NORMAL",
        recmode_normal,
    )?;
    ensure!(
        statuses.iter().all(|(_, s)| s.generation == generation),
        "no recovery should run once the clients stopped: {statuses:#?}"
    );
    let mut distinct = generations.clone();
    distinct.sort();
    distinct.dedup();
    ensure!(
        distinct.len() == generations.len(),
        "every recovery should have a generation of its own: {generations:?}"
    );

    let acknowledged = load.acknowledged.lock().unwrap().clone();
    let copy = copies_alike(&cluster, LOAD_DB)?;
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|(k, v, _)| {
            copy.get(&lower_hex(k.as_bytes())).map(|(_, d)| d) != Some(&lower_hex(v.as_bytes()))
        })
        .collect();
    ensure!(
        missing.is_empty(),
        "{} of {} acknowledged persistent writes are missing or wrong (every node's copy \
         is the same): {missing:?}",
        missing.len(),
        acknowledged.len()
    );
    // Through the daemons too: the last write each node's client had acknowledged.
    for pnn in ALL {
        for via in ALL {
            let Some((key, value, _)) = acknowledged.iter().rev().find(|w| w.2 == via) else {
                bail!("node {via}'s client had no write acknowledged");
            };
            let got = cluster
                .node(pnn)
                .ctdb(Tool::Ours, &["pfetch", LOAD_DB, key])?;
            ensure!(
                got.success() && got.stdout.trim_end() == value,
                "node {pnn}: pfetch {key} (acknowledged through node {via}) should print \
                 {value:?}:\n{got}"
            );
        }
    }
    for pnn in ALL {
        for k in 0..HOT_KEYS {
            let key = format!("hot-{k}");
            let got = cluster
                .node(pnn)
                .ctdb(Tool::Ours, &["readkey", HOT_DB, &key])?;
            ensure!(
                got.success() && got.stdout.contains("ptr:[w"),
                "node {pnn}: readkey {HOT_DB} {key} should show a written value:\n{got}"
            );
        }
    }
    eprintln!(
        "{:.1} s of load, {} recoveries (generations {generations:?}); persistent writes \
         acknowledged {} (transactions by node {:?}), refused {}; volatile writes \
         acknowledged by node {:?}",
        loaded_for.as_secs_f64(),
        generations.len() - 1,
        acknowledged.len(),
        ALL.map(|p| load.acknowledged_through(p)),
        load.refused.load(Ordering::SeqCst),
        ALL.map(|p| load.hot_through(p)),
    );
    Ok(())
}
