//! Samba's own protocol tests against clustered Samba: `smbtorture` (Debian's
//! `samba-testsuite`) runs a selection of its `smb2.deny`, `smb2.sharemode`,
//! `smb2.lock` and `smb2.oplock` subtests from the client namespace, with an
//! unclist that sends each new connection of a subtest to the next node.
//!
//! ```text
//!   client 10.0.20.200: smbtorture //<addr of node 0>/share --unclist=FILE
//!      │ FILE:  //<addr held by node 0>/share
//!      │        //<addr held by node 1>/share
//!      │        //<addr held by node 2>/share
//!      │ connection 1 ──> smbd on node 0 ─┐
//!      │ connection 2 ──> smbd on node 1 ─┤ locking.tdb, brlock.tdb, smbXsrv_*
//!      │ (connection 3 ──> smbd on node 2)┘ through each node's daemon
//! ```
//!
//! smbtorture 4.17 opens every SMB2 connection of a subtest through one helper
//! that, given an unclist, takes entry `n mod lines` for the subtest's `n`-th
//! connection (counting from 0 in each smbtorture process). Each subtest runs in
//! a process of its own, so its first connection lands on node 0 and its second
//! on node 1. The test does not take that on trust: smbd runs at log level 2,
//! where it logs every tree connect, and each subtest must have added tree
//! connects to the logs of every node it was meant to reach.
//!
//! The selection is every subtest of those four suites that opens two
//! connections or more (a one-connection subtest proves nothing about
//! clustering), but two that fail on stock CTDB 4.17 in this harness:
//! `smb2.oplock.stream1` needs named streams (`vfs_streams_xattr`, in a package
//! the harness does not install), and `smb2.oplock.batch20` expects a sharing
//! violation where smbd allows the rename of a file another client holds open.
//! `smb2.oplock.batch22b` needs `smbd:FSCTL_SMBTORTURE = yes`: its first client
//! stops reading, and that setting lets smbtorture ask the server to give up on
//! unacknowledged sends, so the break sent to that client times out at once
//! instead of after 35 s. The daemon is chosen by
//! `CTDB_RS_DAEMON` (`stock` proves the expectations):
//!
//! ```text
//! CTDB_RS_DAEMON=stock cargo test -p vm --test smbtorture -- --nocapture
//! ```
//!
//! (`--nocapture` shows each subtest's result, time and tree connects per node.)
//! Every subtest runs, whatever the others did; the test then fails naming each
//! failing subtest with smbtorture's output and what each node's smbd logged.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use vm::process::{indent, run, Output};
use vm::public::{default_public, wait_placed};
use vm::samba::{smb_conf, SAMBA_PASSWORD, SAMBA_USER, SHARE};
use vm::sandbox::{which, TempDir};
use vm::{Cluster, Daemon};

const ALL: [u32; 3] = [0, 1, 2];
/// Cold start until every node is RUNNING: startup starts smbd.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one smbtorture subtest may take: the slowest selected ones take
/// seconds; a hung one must fail the test, not block it.
const SUBTEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A selected subtest and the nodes its connections reach: connection `n` goes
/// to the unclist's line `n`, the address held by node `n`.
struct Subtest {
    /// smbtorture's name for it.
    name: &'static str,
    /// How many connections it opens through the unclist: it must reach nodes
    /// `0..connections`.
    connections: u32,
}

const fn two(name: &'static str) -> Subtest {
    Subtest {
        name,
        connections: 2,
    }
}

/// The selection (see the module documentation). Each opens its connections
/// through smbtorture's connection helper, so through the unclist; `batch23` and
/// `batch24` open a third one straight to the first address (node 0), which the
/// check of nodes `0..connections` allows.
const SUBTESTS: &[Subtest] = &[
    two("smb2.deny.deny2"),
    two("smb2.sharemode.sharemode-access"),
    two("smb2.sharemode.access-sharemode"),
    two("smb2.lock.overlap"),
    two("smb2.oplock.exclusive1"),
    two("smb2.oplock.exclusive2"),
    two("smb2.oplock.exclusive3"),
    two("smb2.oplock.exclusive4"),
    two("smb2.oplock.exclusive5"),
    two("smb2.oplock.exclusive6"),
    two("smb2.oplock.exclusive9"),
    two("smb2.oplock.batch1"),
    two("smb2.oplock.batch2"),
    two("smb2.oplock.batch3"),
    two("smb2.oplock.batch4"),
    two("smb2.oplock.batch5"),
    two("smb2.oplock.batch6"),
    two("smb2.oplock.batch7"),
    two("smb2.oplock.batch8"),
    two("smb2.oplock.batch9"),
    two("smb2.oplock.batch9a"),
    two("smb2.oplock.batch10"),
    two("smb2.oplock.batch11"),
    two("smb2.oplock.batch12"),
    two("smb2.oplock.batch13"),
    two("smb2.oplock.batch14"),
    two("smb2.oplock.batch15"),
    two("smb2.oplock.batch16"),
    two("smb2.oplock.batch22b"),
    two("smb2.oplock.batch23"),
    two("smb2.oplock.batch24"),
    two("smb2.oplock.doc"),
    two("smb2.oplock.brl1"),
    Subtest {
        name: "smb2.oplock.levelii501",
        connections: 3,
    },
    two("smb2.oplock.levelii502"),
];

/// What smbd logs (at level 2) for each tree connect, in the share's name.
fn tree_connect_marker() -> String {
    format!("connect to service {SHARE} initially as user {SAMBA_USER}")
}

/// Three nodes with clustered Samba under the daemon of `CTDB_RS_DAEMON`, smbd
/// logging at level 2 without rotation, every address placed on a distinct
/// node, the test user added through node 0 (by [`Cluster::start`]).
fn clustered_samba() -> anyhow::Result<Cluster> {
    let daemon = Daemon::from_env()?;
    vm::samba::check_prerequisites()?;
    if which("smbtorture").is_none() {
        bail!("smbtorture is missing (apt-get install samba-testsuite, or source tests/install-deps.sh test)");
    }
    let mut cluster = Cluster::builder()
        .nodes(3)
        .samba(true)
        .client(true)
        .tunables("MonitorInterval=1\n")
        .build()?;
    // Level 2 logs each tree connect (the proof of where a connection went);
    // without rotation no count is lost to a renamed file.
    let conf = smb_conf()
        .replacen(
            "[global]\n",
            "[global]\n\tlog level = 2\n\tsmbd:FSCTL_SMBTORTURE = yes\n",
            1,
        )
        .replacen("\tmax log size = 1000\n", "\tmax log size = 0\n", 1);
    cluster.write_smb_conf(&conf)?;
    vm::nas::prepare_for(&cluster, None, daemon)?;
    cluster
        .start(daemon, START_TIMEOUT)
        .with_context(|| format!("every node RUNNING with clustered smbd under {daemon:?}"))?;
    cluster.wait_agreement(&ALL, &ALL, START_TIMEOUT)?;
    let addrs: Vec<Ipv4Addr> = ALL.iter().map(|&i| default_public(i)).collect();
    wait_placed(&cluster, &ALL, &addrs, &ALL, CONVERGE_TIMEOUT)?;
    Ok(cluster)
}

/// The public address `pnn` holds, by `ctdb ip` on `pnn`.
fn address_of(cluster: &Cluster, pnn: u32) -> anyhow::Result<Ipv4Addr> {
    vm::public::address_held_by(cluster, pnn, CONVERGE_TIMEOUT)
}

/// Every line of node `pnn`'s smbd logs (all files in its `/var/log/samba`).
fn smbd_log_lines(cluster: &Cluster, pnn: u32) -> anyhow::Result<Vec<String>> {
    let dir = cluster.node(pnn).path("/var/log/samba");
    let mut lines = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if !entry.file_type()?.is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        lines.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_owned));
    }
    Ok(lines)
}

/// How many tree connects to the share node `pnn`'s smbd has logged.
fn tree_connects(cluster: &Cluster, pnn: u32) -> anyhow::Result<usize> {
    let marker = tree_connect_marker();
    Ok(smbd_log_lines(cluster, pnn)?
        .iter()
        .filter(|l| l.contains(&marker))
        .count())
}

/// Runs smbtorture's `subtest` against `//<first>/share` with `unclist`.
fn smbtorture(
    cluster: &Cluster,
    first: Ipv4Addr,
    unclist: &Path,
    subtest: &str,
) -> anyhow::Result<Output> {
    let client = cluster.client().context("the cluster has a client")?;
    let mut cmd = vm::samba::client_command(client, "smbtorture");
    // No smb.conf: nothing of the host's Samba configuration is read.
    cmd.args(["-s", "/dev/null"])
        .arg(format!("//{first}/{SHARE}"))
        .arg(format!("--unclist={}", unclist.display()))
        .arg("--target=samba3")
        .arg("-U")
        .arg(format!("{SAMBA_USER}%{SAMBA_PASSWORD}"))
        .arg(subtest);
    run(cmd, SUBTEST_TIMEOUT)
}

/// Whether smbtorture reported `subtest` as passed: exit status 0, a `success:`
/// line, and no `failure:`, `error:` or `skip:` line (a skipped subtest proves
/// nothing).
fn passed(out: &Output) -> bool {
    let lines = || out.stdout.lines().map(str::trim_start);
    out.success()
        && lines().any(|l| l.starts_with("success: "))
        && !lines().any(|l| {
            l.starts_with("failure: ") || l.starts_with("error: ") || l.starts_with("skip: ")
        })
}

/// Given clustered Samba on three nodes and an unclist of an address held by
/// each node, when smbtorture runs each selected subtest, then every subtest's
/// connections reach the nodes they were meant for (their tree connects are in
/// those nodes' smbd logs) and every subtest passes.
#[test]
fn smbtorture_subtests_pass_with_connections_on_different_nodes() -> anyhow::Result<()> {
    let cluster = clustered_samba()?;
    let dir = TempDir::new("smbtorture")?;
    let unclist = dir.path().join("unclist");
    let mut text = String::new();
    for pnn in ALL {
        writeln!(text, "//{}/{SHARE}", address_of(&cluster, pnn)?)?;
    }
    std::fs::write(&unclist, &text)?;
    let first = address_of(&cluster, 0)?;

    let mut failures = Vec::new();
    for subtest in SUBTESTS {
        let before = ALL
            .iter()
            .map(|&pnn| tree_connects(&cluster, pnn))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let started = Instant::now();
        let out = match smbtorture(&cluster, first, &unclist, subtest.name) {
            Ok(out) => out,
            Err(e) => {
                failures.push(format!("{}: {e:#}", subtest.name));
                continue;
            }
        };
        let took = started.elapsed();
        let after = ALL
            .iter()
            .map(|&pnn| tree_connects(&cluster, pnn))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let unreached: Vec<u32> = (0..subtest.connections)
            .filter(|&pnn| after[pnn as usize] <= before[pnn as usize])
            .collect();
        eprintln!(
            "{}: {} in {took:.1?}, tree connects per node {:?}",
            subtest.name,
            if passed(&out) { "passed" } else { "FAILED" },
            ALL.map(|pnn| after[pnn as usize] - before[pnn as usize]),
        );
        if !passed(&out) {
            failures.push(format!(
                "{} failed (took {took:.1?}):\n{}",
                subtest.name,
                indent(&out.to_string())
            ));
        } else if !unreached.is_empty() {
            failures.push(format!(
                "{} passed, but its connections should have reached nodes 0..{} and nodes \
                 {unreached:?} logged no new tree connect (before {before:?}, after \
                 {after:?}):\n{}",
                subtest.name,
                subtest.connections,
                indent(&out.to_string())
            ));
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    let mut report = format!(
        "{} of {} smbtorture subtests failed under {:?}:\n\n{}",
        failures.len(),
        SUBTESTS.len(),
        Daemon::from_env()?,
        failures.join("\n\n")
    );
    for pnn in ALL {
        let lines = smbd_log_lines(&cluster, pnn)?;
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        write!(
            report,
            "\n\nnode {pnn}: end of smbd's logs:\n{}",
            indent(&tail)
        )?;
    }
    bail!(report)
}
