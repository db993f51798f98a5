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
use vm::{Cluster, Daemon};

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
/// address placed on a distinct node, the test user added through node 0 (by
/// [`Cluster::start`], once the daemons run).
fn clustered_samba() -> anyhow::Result<Cluster> {
    let daemon = Daemon::from_env()?;
    vm::smb_client::check_prerequisites()?;
    let mut cluster = Cluster::builder()
        .nodes(3)
        .samba(true)
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
    vm::public::address_held_by(cluster, pnn, CONVERGE_TIMEOUT)
}

/// Given clustered Samba with the test user added through node 0 only, then the
/// user logs in through an address of every node and sees one share: a file
/// written through node 0 is listed through nodes 1 and 2.
#[test]
fn a_user_added_on_one_node_logs_in_through_every_node() -> anyhow::Result<()> {
    let cluster = clustered_samba()?;
    ensure!(
        cluster.samba_user_node() == Some(0),
        "the harness should have run smbpasswd -a on node 0 only, not {:?}",
        cluster.samba_user_node()
    );
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

// ---- faults: a node dies while clients of the others hold opens and locks ------

/// Longest the survivors may take to agree again and host every address after a
/// node dies (generous: a silent death is noticed only through missed
/// keepalives, then a recovery of every database follows).
const RECOVER_TIMEOUT: Duration = Duration::from_secs(120);

/// How a node dies.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `kill -9` of its ctdbd (the peers see the connections close; its smbd
    /// exits when its ctdbd connection goes).
    Kill9,
    /// Power loss: private and public links cut, then the daemon killed (the
    /// peers only see silence).
    PowerLoss,
}

/// Given clients A (through survivor s1) holding a deny-write open of
/// `kept.txt`, B (through survivor s2) holding bytes 0..100 of `locked.txt`,
/// and D (through the victim v) holding a deny-write open of `orphan.txt` and
/// bytes 200..300 of `locked.txt`, all having written, when v dies by `fault`,
/// then the survivors agree and host every address; A and B keep their handles
/// and write; a new client still meets A's deny-write and B's lock through the
/// other survivor, and gets what D held; what A and B wrote reads back through
/// the other survivor; a deny-write open through s1 refuses a write open through
/// s2. When v comes back, every node is OK and every address hosted; deny-write
/// opens held through the addresses that stayed put refuse write opens through
/// v, and v and s1 see each other's deny-write opens and locks.
fn survivors_keep_serving(fault: Fault) -> anyhow::Result<()> {
    let mut cluster = clustered_samba()?;
    let result = fault_scenario(&mut cluster, fault);
    // An SMB step's failure says what the client saw; the daemons say why.
    result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", cluster.logs()))
}

/// The steps of [`survivors_keep_serving`] on a started cluster.
fn fault_scenario(cluster: &mut Cluster, fault: Fault) -> anyhow::Result<()> {
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    // kill -9 takes the leader (an election, then the new leader recovers);
    // power loss a follower (the leader notices silence, then recovers).
    let victim = match fault {
        Fault::Kill9 => leader,
        Fault::PowerLoss => (leader + 1) % 3,
    };
    let survivors: Vec<u32> = ALL.into_iter().filter(|p| *p != victim).collect();
    let (s1, s2) = (survivors[0], survivors[1]);
    let (addr_s1, addr_s2) = (address_of(cluster, s1)?, address_of(cluster, s2)?);
    let addr_v = address_of(cluster, victim)?;

    let mut smb = SmbClient::start(cluster)?;
    smb.connect("a", addr_s1)?;
    smb.connect("b", addr_s2)?;
    smb.connect("d", addr_v)?;
    smb.connect("p", addr_s1)?;
    smb.expect(
        "open ha a kept.txt access=rw share=r oplock=none",
        "ok",
        &format!("A opens kept.txt through survivor {s1}, denying writers"),
    )?;
    smb.expect("write ha 0 a-before.", "ok", "A writes through its handle")?;
    smb.expect(
        "open hb b locked.txt access=rw share=rwd oplock=none",
        "ok",
        &format!("B opens locked.txt through survivor {s2}"),
    )?;
    smb.expect("lock hb 0 100", "ok", "B locks bytes 0..100")?;
    smb.expect("write hb 0 b-before.", "ok", "B writes in its range")?;
    smb.expect(
        "open hd d orphan.txt access=rw share=r oplock=none",
        "ok",
        &format!("D opens orphan.txt through the victim {victim}, denying writers"),
    )?;
    smb.expect(
        "open hd2 d locked.txt access=rw share=rwd oplock=none",
        "ok",
        &format!("D opens locked.txt through the victim {victim}"),
    )?;
    smb.expect("lock hd2 200 100", "ok", "D locks bytes 200..300")?;
    // Before the fault, D's holdings are seen cluster-wide: what the survivors
    // get afterwards is D's, freed.
    smb.expect(
        "open hp p orphan.txt access=w share=rwd oplock=none",
        "status STATUS_SHARING_VIOLATION",
        &format!("before the fault, a write open through {s1} meets D's deny-write"),
    )?;
    smb.expect(
        "open hp2 p locked.txt access=rw share=rwd oplock=none",
        "ok",
        &format!("P opens locked.txt through {s1}"),
    )?;
    smb.expect(
        "lock hp2 200 100",
        "status STATUS_LOCK_NOT_GRANTED",
        &format!("before the fault, a lock through {s1} meets D's lock"),
    )?;
    smb.expect("close hp2", "ok", "P closes locked.txt")?;

    match fault {
        Fault::Kill9 => cluster.kill_daemon(victim)?,
        Fault::PowerLoss => vm::public::power_off_machine(cluster, victim)?,
    }
    cluster
        .wait_agreement(&survivors, &survivors, RECOVER_TIMEOUT)
        .with_context(|| {
            format!("the survivors {survivors:?} agree after {fault:?} of {victim}")
        })?;
    wait_placed(cluster, &survivors, &addrs(), &survivors, RECOVER_TIMEOUT)
        .with_context(|| format!("the survivors host every address after {fault:?}"))?;

    // The survivors' clients keep their handles.
    smb.expect(
        "write ha 9 a-after.",
        "ok",
        "A writes through its handle after the fault",
    )?;
    smb.expect(
        "write hb 9 b-after.",
        "ok",
        "B writes in its range after the fault",
    )?;
    // Their opens and locks still hold, across the survivors.
    smb.connect("c", addr_s2)?;
    smb.expect(
        "open hc c kept.txt access=w share=rwd oplock=none",
        "status STATUS_SHARING_VIOLATION",
        &format!("after the fault, A's deny-write open through {s1} still refuses a write open through {s2}"),
    )?;
    smb.connect("e", addr_s1)?;
    smb.expect(
        "open he e locked.txt access=rw share=rwd oplock=none",
        "ok",
        &format!("E opens locked.txt through {s1}"),
    )?;
    smb.expect(
        "lock he 50 100",
        "status STATUS_LOCK_NOT_GRANTED",
        &format!("after the fault, B's lock through {s2} still conflicts through {s1}"),
    )?;
    // What the dead node's client held is free.
    smb.expect(
        "lock he 200 100",
        "ok",
        &format!("the lock D held through the dead node {victim} is granted through {s1}"),
    )?;
    smb.expect(
        "open hc2 c orphan.txt access=w share=rwd oplock=none",
        "ok",
        &format!("the deny-write open D held through the dead node {victim} no longer refuses a write open through {s2}"),
    )?;
    smb.expect("close hc2", "ok", "C closes orphan.txt")?;
    // Nothing the survivors wrote is lost: read back through the other survivor.
    smb.expect(
        "open hc3 c kept.txt access=r share=rwd oplock=none",
        "ok",
        &format!("C opens kept.txt for reading through {s2} (A's share mode allows readers)"),
    )?;
    smb.expect(
        "read hc3 0 18",
        "ok data=a-before.a-after.",
        &format!("what A wrote through {s1}, before and after the fault, reads back through {s2}"),
    )?;
    smb.expect("unlock hb 0 100", "ok", "B unlocks 0..100")?;
    smb.expect(
        "read he 0 18",
        "ok data=b-before.b-after.",
        &format!("what B wrote through {s2}, before and after the fault, reads back through {s1}"),
    )?;
    // Cross-node conflicts between the survivors, on a record made after the
    // recovery.
    smb.expect(
        "open hf a fresh.txt access=rw share=r oplock=none",
        "ok",
        &format!("A opens fresh.txt through {s1}, denying writers"),
    )?;
    smb.expect(
        "open hg b fresh.txt access=w share=rwd oplock=none",
        "status STATUS_SHARING_VIOLATION",
        &format!(
            "after the fault, a deny-write open through {s1} refuses a write open through {s2}"
        ),
    )?;

    // The survivors' handles still close.
    for handle in ["ha", "hb", "hc3", "he", "hf"] {
        smb.expect(
            &format!("close {handle}"),
            "ok",
            "closing a survivor's handle",
        )?;
    }

    // The dead node comes back. Its return may move addresses (and reset the
    // connections through them): deny-write opens are held through every
    // address, and those whose address stays where it was must hold through the
    // returned node too.
    let before = wait_placed(cluster, &survivors, &addrs(), &survivors, RECOVER_TIMEOUT)?;
    for (i, addr) in addrs().into_iter().enumerate() {
        smb.connect(&format!("k{i}"), addr)?;
        smb.expect(
            &format!("open hk{i} k{i} held-{i}.txt access=rw share=r oplock=none"),
            "ok",
            &format!("a deny-write open through {addr} (node {})", before[&addr]),
        )?;
    }
    match fault {
        Fault::Kill9 => cluster.restart_daemon(victim)?,
        Fault::PowerLoss => vm::public::power_on_machine(cluster, victim)?,
    }
    cluster
        .node_mut(victim)
        .wait_runstate("RUNNING", START_TIMEOUT)
        .with_context(|| format!("node {victim} back after {fault:?}"))?;
    cluster
        .wait_agreement(&ALL, &ALL, RECOVER_TIMEOUT)
        .with_context(|| format!("every node OK once {victim} is back"))?;
    let back = address_of(cluster, victim)?;
    let after = wait_placed(cluster, &ALL, &addrs(), &ALL, RECOVER_TIMEOUT)
        .with_context(|| format!("every address hosted once {victim} is back"))?;
    let stayed: Vec<(usize, Ipv4Addr)> = addrs()
        .into_iter()
        .enumerate()
        .filter(|(_, a)| before.get(a) == after.get(a))
        .collect();
    ensure!(
        !stayed.is_empty(),
        "node {victim}'s return moved every address: before {before:?}, after {after:?}"
    );
    smb.connect("v", back)?;
    for (i, addr) in &stayed {
        smb.expect(
            &format!("write hk{i} 0 still-here"),
            "ok",
            &format!(
                "the handle through {addr}, which stayed on node {}, still writes",
                after[addr]
            ),
        )?;
        smb.expect(
            &format!("open hv{i} v held-{i}.txt access=w share=rwd oplock=none"),
            "status STATUS_SHARING_VIOLATION",
            &format!(
                "the deny-write open through {addr} (node {}) refuses a write open through \
                 the returned node {victim}",
                after[addr]
            ),
        )?;
    }
    // And between the returned node and a survivor, on new records.
    smb.connect("w", address_of(cluster, s1)?)?;
    smb.expect(
        "open hx v back.txt access=rw share=r oplock=none",
        "ok",
        &format!("a deny-write open through the returned node {victim}"),
    )?;
    smb.expect(
        "open hy w back.txt access=w share=rwd oplock=none",
        "status STATUS_SHARING_VIOLATION",
        &format!("the returned node {victim}'s deny-write open refuses a write open through {s1}"),
    )?;
    smb.expect(
        "open hy2 w back-lock.txt access=rw share=rwd oplock=none",
        "ok",
        &format!("W opens back-lock.txt through {s1}"),
    )?;
    smb.expect(
        "lock hy2 0 10",
        "ok",
        &format!("W locks 0..10 through {s1}"),
    )?;
    smb.expect(
        "open hx2 v back-lock.txt access=rw share=rwd oplock=none",
        "ok",
        &format!("V opens back-lock.txt through the returned node {victim}"),
    )?;
    smb.expect(
        "lock hx2 5 10",
        "status STATUS_LOCK_NOT_GRANTED",
        &format!("W's lock through {s1} conflicts through the returned node {victim}"),
    )?;
    Ok(())
}

/// kill -9 of the leader's ctdbd; see [`survivors_keep_serving`].
#[test]
fn kill_9_of_a_node_leaves_the_survivors_opens_and_locks_working() -> anyhow::Result<()> {
    survivors_keep_serving(Fault::Kill9)
}

/// Power loss of a follower; see [`survivors_keep_serving`].
#[test]
fn power_loss_of_a_node_leaves_the_survivors_opens_and_locks_working() -> anyhow::Result<()> {
    survivors_keep_serving(Fault::PowerLoss)
}
