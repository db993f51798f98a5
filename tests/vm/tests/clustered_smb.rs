//! Samba clustered for real: smbd runs with `clustering = yes` on every node and
//! keeps its sessions, share modes, byte-range locks, oplocks and users in the
//! daemons' clustered databases, so that clients connected through public
//! addresses held by *different* nodes see one file server.
//!
//! ```text
//!   client 10.0.20.200: smb_client.py (smbprotocol), smbclient
//!      │ connection A ── address held by node a ──> smbd a ─┐
//!      │ connection B ── address held by node b ──> smbd b ─┤ locking.tdb, brlock.tdb,
//!                                                           │ smbXsrv_*, passdb.tdb
//!   node n: ctdbd ─ /run/ctdb/ctdbd.socket ─ smbd (clustering = yes)
//!   /srv/shared (every node): smb.conf, share/
//! ```
//!
//! The test user is added with `smbpasswd -a` on node 0 only. The daemon is
//! chosen by `CTDB_RS_DAEMON` (`stock` proves the expectations on CTDB 4.17):
//!
//! ```text
//! CTDB_RS_DAEMON=stock cargo test -p vm --test clustered_smb
//! ```
//!
//! Waits poll a condition up to a deadline; an SMB step that goes wrong fails with
//! the step, the expected reply and the client's, and the client's conversation.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use vm::public::{default_public, wait_placed};
use vm::smb_client::SmbClient;
use vm::{wait_until, Cluster, Daemon};

const ALL: [u32; 3] = [0, 1, 2];
/// Cold start until every node is RUNNING: startup starts smbd.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an oplock break may take to reach the holder, and the waiting open
/// to finish once the break is acknowledged (Samba's own break timeout is 35 s).
const BREAK_TIMEOUT: &str = "20";

fn addrs() -> Vec<Ipv4Addr> {
    (0..3).map(default_public).collect()
}

/// Three nodes with clustered Samba under the daemon of `CTDB_RS_DAEMON`, every
/// address placed on a distinct node, the test user added through node 0.
fn clustered_samba() -> anyhow::Result<Cluster> {
    let daemon = Daemon::from_env()?;
    vm::smb_client::check_prerequisites()?;
    let mut cluster = Cluster::builder()
        .nodes(3)
        .samba_clustered()
        .client(true)
        .tunables("MonitorInterval=1\n")
        .build()?;
    vm::nas::prepare_for(&cluster, None, daemon)?;
    if let Err(e) = cluster.start(daemon, START_TIMEOUT) {
        let smbd = (0..3)
            .map(|pnn| smbd_story(&cluster, pnn))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(e.context(format!(
            "expected every node RUNNING with smbd (clustering = yes) started by 50.samba \
             under the {daemon:?} daemon; smbd says:\n{smbd}"
        )));
    }
    cluster.wait_agreement(&ALL, &ALL, START_TIMEOUT)?;
    wait_placed(&cluster, &ALL, &addrs(), &ALL, CONVERGE_TIMEOUT)?;
    cluster
        .add_samba_user(0)
        .context("smbpasswd -a on node 0 with clustering = yes (passdb.tdb is clustered)")?;
    Ok(cluster)
}

/// What node `pnn`'s smbd left: whether its PID file names a live process, and
/// the end of its log, where smbd says why it could not start.
fn smbd_story(cluster: &Cluster, pnn: u32) -> String {
    let node = cluster.node(pnn);
    let running = std::fs::read_to_string(node.path("/run/samba/smbd.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
    let log = std::fs::read_to_string(node.path("/var/log/samba/log.smbd")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(16)..].join("\n    ");
    format!(
        "  node {pnn}: smbd {}; end of log.smbd:\n    {tail}",
        if running { "running" } else { "not running" }
    )
}

/// The public address `pnn` holds, by `ctdb ip` on `pnn`.
fn address_of(cluster: &Cluster, pnn: u32) -> anyhow::Result<Ipv4Addr> {
    let held = wait_until(CONVERGE_TIMEOUT, || {
        let ips = vm::public::ctdb_ip(cluster, pnn)?;
        ips.iter()
            .find(|(_, host)| **host == Some(pnn))
            .map(|(addr, _)| *addr)
            .ok_or_else(|| format!("node {pnn} holds no address: {ips:?}"))
    })
    .with_context(|| format!("an address held by node {pnn}"))?;
    Ok(held)
}

/// Given clustered Samba with the test user added through node 0 only, then the
/// user logs in through an address of every node and sees one share: a file
/// written through node 0 is listed through nodes 1 and 2.
#[test]
fn a_user_added_on_one_node_logs_in_through_every_node() -> anyhow::Result<()> {
    let cluster = clustered_samba()?;
    let dir = vm::sandbox::TempDir::new("smbuser")?;
    let local = dir.path().join("hello.txt");
    std::fs::write(&local, "hello from node 0\n")?;
    let first = address_of(&cluster, 0)?;
    let out = cluster.smbclient(first, &format!("put {} hello.txt", local.display()))?;
    ensure!(out.success(), "put through node 0 ({first}):\n{out}");
    for pnn in ALL {
        let addr = address_of(&cluster, pnn)?;
        let out = cluster.smbclient(addr, "ls")?;
        ensure!(
            out.success() && out.stdout.contains("hello.txt"),
            "the user added on node 0 should log in through node {pnn} ({addr}) and see \
             hello.txt:\n{out}"
        );
    }
    Ok(())
}

/// Given a client A holding a file open through node 0 with share access read
/// only (deny write), when client B opens it for writing through node 1, then B
/// gets STATUS_SHARING_VIOLATION; once A closes, B's write open succeeds.
#[test]
fn a_deny_write_open_on_one_node_refuses_a_write_open_on_another() -> anyhow::Result<()> {
    let cluster = clustered_samba()?;
    let mut smb = SmbClient::start(&cluster)?;
    smb.connect("a", address_of(&cluster, 0)?)?;
    smb.connect("b", address_of(&cluster, 1)?)?;
    smb.expect(
        "open ha a denywrite.txt access=rw share=r oplock=none",
        "ok",
        "A opens through node 0, denying writers",
    )?;
    smb.expect(
        "open hb b denywrite.txt access=w share=rw oplock=none",
        "status STATUS_SHARING_VIOLATION",
        "B's write open through node 1 must see A's deny-write open on node 0",
    )?;
    smb.expect("close ha", "ok", "A closes")?;
    smb.expect(
        "open hb b denywrite.txt access=w share=rw oplock=none",
        "ok",
        "with A's open closed, B's write open through node 1 succeeds",
    )?;
    smb.expect("close hb", "ok", "B closes")?;
    Ok(())
}

/// Given client A holding an exclusive byte-range lock on bytes 0..100 of a file
/// through node 0, when client B asks for bytes 50..150 through node 1, then B
/// gets STATUS_LOCK_NOT_GRANTED, while bytes 100..200 are granted to B; once A
/// unlocks, B gets 50..150 too.
#[test]
fn a_byte_range_lock_on_one_node_conflicts_on_another() -> anyhow::Result<()> {
    let cluster = clustered_samba()?;
    let mut smb = SmbClient::start(&cluster)?;
    smb.connect("a", address_of(&cluster, 0)?)?;
    smb.connect("b", address_of(&cluster, 1)?)?;
    smb.expect(
        "open ha a brlock.txt access=rw share=rwd oplock=none",
        "ok",
        "A opens through node 0",
    )?;
    smb.expect(
        "open hb b brlock.txt access=rw share=rwd oplock=none",
        "ok",
        "B opens through node 1 (the share modes allow both)",
    )?;
    smb.expect("lock ha 0 100", "ok", "A locks bytes 0..100 through node 0")?;
    smb.expect(
        "lock hb 50 100",
        "status STATUS_LOCK_NOT_GRANTED",
        "B's lock of 50..150 through node 1 overlaps A's lock on node 0",
    )?;
    smb.expect(
        "lock hb 100 100",
        "ok",
        "B's lock of 100..200 through node 1 overlaps nothing",
    )?;
    smb.expect("unlock ha 0 100", "ok", "A unlocks 0..100")?;
    smb.expect(
        "lock hb 0 100",
        "ok",
        "with A's lock gone, B locks 0..100 through node 1",
    )?;
    smb.expect("close ha", "ok", "A closes")?;
    smb.expect("close hb", "ok", "B closes")?;
    Ok(())
}

/// Given client A holding a batch oplock on a file through node 0, when client B
/// opens the file through node 1, then A receives an oplock break while B's open
/// waits; once A acknowledges the break, B's open completes.
#[test]
fn a_batch_oplock_on_one_node_is_broken_by_an_open_on_another() -> anyhow::Result<()> {
    let cluster = clustered_samba()?;
    let mut smb = SmbClient::start(&cluster)?;
    smb.connect("a", address_of(&cluster, 0)?)?;
    smb.connect("b", address_of(&cluster, 1)?)?;
    smb.expect(
        "open ha a oplock.txt access=rw share=rwd oplock=batch",
        "ok oplock=batch",
        "A opens through node 0 and is granted a batch oplock",
    )?;
    smb.expect(
        "open hb b oplock.txt access=rw share=rwd oplock=none async",
        "ok",
        "B's open through node 1 is sent",
    )?;
    let reply = smb.expect(
        &format!("waitbreak a {BREAK_TIMEOUT}"),
        "ok handle=ha",
        "A, holding the batch oplock through node 0, must be sent a break when B opens \
         through node 1",
    )?;
    smb.expect(
        "await hb 0",
        "timeout",
        "B's open must wait for A's answer to the break",
    )?;
    let level = if reply.ends_with("level=ii") {
        "ii"
    } else {
        "none"
    };
    smb.expect(&format!("ack ha {level}"), "ok", "A acknowledges the break")?;
    smb.expect(
        &format!("await hb {BREAK_TIMEOUT}"),
        "ok",
        "B's open through node 1 completes once A has given up its oplock",
    )?;
    smb.expect("close ha", "ok", "A closes")?;
    smb.expect("close hb", "ok", "B closes")?;
    Ok(())
}

/// Given three clients, each connected through an address of a different node,
/// each holding its own file open with a byte-range lock, then `smbstatus` on
/// every node lists all three sessions (smbd processes on nodes 0, 1 and 2), all
/// three open files and all three byte-range locks.
#[test]
fn smbstatus_on_every_node_shows_every_nodes_sessions_and_locks() -> anyhow::Result<()> {
    let cluster = clustered_samba()?;
    let mut smb = SmbClient::start(&cluster)?;
    for pnn in ALL {
        let addr = address_of(&cluster, pnn)?;
        smb.connect(&format!("c{pnn}"), addr)?;
        smb.expect(
            &format!("open h{pnn} c{pnn} status-{pnn}.txt access=rw share=rwd oplock=none"),
            "ok",
            &format!("a file opened through node {pnn}"),
        )?;
        smb.expect(
            &format!("lock h{pnn} {} 10", 100 * pnn),
            "ok",
            &format!("a byte-range lock taken through node {pnn}"),
        )?;
    }
    for on in ALL {
        let node = cluster.node(on);
        let status = node.run("smbstatus", &[])?;
        ensure!(status.success(), "smbstatus on node {on}:\n{status}");
        let brl = node.run("smbstatus", &["-B"])?;
        ensure!(brl.success(), "smbstatus -B on node {on}:\n{brl}");
        for pnn in ALL {
            let file = format!("status-{pnn}.txt");
            ensure!(
                status.stdout.contains(&file),
                "smbstatus on node {on} should list {file}, opened through node {pnn}:\n{status}"
            );
            ensure!(
                brl.stdout.lines().any(|l| l.contains(&file)),
                "smbstatus -B on node {on} should list the byte-range lock on {file}, taken \
                 through node {pnn}:\n{brl}"
            );
            ensure!(
                session_on(&status.stdout, pnn),
                "smbstatus on node {on} should list a session served by node {pnn}'s smbd \
                 (a PID written {pnn}:<pid>):\n{status}"
            );
        }
    }
    Ok(())
}

/// Whether the sessions table of `smbstatus` has a row whose PID is
/// `<pnn>:<pid>` (clustered Samba names a process by node and PID).
fn session_on(smbstatus: &str, pnn: u32) -> bool {
    let prefix = format!("{pnn}:");
    smbstatus
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("PID"))
        .take_while(|l| !l.trim().is_empty() || l.contains("PID"))
        .filter_map(|l| l.split_whitespace().next())
        .any(|pid| {
            pid.strip_prefix(&prefix)
                .is_some_and(|rest| rest.parse::<u32>().is_ok())
        })
}
