//! Read-only delegations on a real three-node cluster (reference §4.7): a read
//! with `WANT_READONLY` is answered with a copy instead of the record, and a
//! later write revokes every copy before it proceeds.
//!
//! ```text
//!   node 2: dmaster of KEY (written there)    ── RO_HAVE_DELEGATIONS, <file>.RO names node 0
//!   node 0: client: REQ_CALL FETCH + WANT_READONLY ── copy stored RO_HAVE_READONLY
//!   node 1: `ctdb writekey` (fetch lock)      ── revokes node 0's copy, then takes the record
//! ```
//!
//! The client is this process talking CTDB's protocol on node 0's socket
//! (`vm::records`); the copies are read with libtdb from each node's file and
//! with `ctdb cattdb` (both tools). `CTDB_RS_DAEMON=stock` runs the same test
//! against CTDB 4.17, which is where the expectations come from.
//!
//! ```text
//! cargo test -p vm --test readonly
//! CTDB_RS_DAEMON=stock cargo test -p vm --test readonly
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use ctdbd::db::ltdb::{self, flags as rec_flags, LtdbHeader};
use ctdbd::db::tdb::{flags as tdb_flags, Tdb};
use ctdbd::protocol::call::{call_flags, call_id};
use ctdbd::protocol::Opcode;
use vm::records::Connection;
use vm::{Cluster, Daemon, Tool};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const DB: &str = "readonly_test.tdb";
const KEY: &str = "netlogon-creds";

/// Node `pnn`'s file of [`DB`], seen from the host.
fn db_file(cluster: &Cluster, pnn: u32) -> PathBuf {
    cluster
        .node(pnn)
        .path(&format!("/var/lib/ctdb/volatile/{DB}.{pnn}"))
}

/// Node `pnn`'s copy of [`KEY`]: header and value, read with libtdb.
fn copy_on(cluster: &Cluster, pnn: u32) -> anyhow::Result<Option<(LtdbHeader, Vec<u8>)>> {
    let file = db_file(cluster, pnn);
    // Opened as smbd opens it: with the flags the daemon gives (mutexes or
    // not); the daemon holds it open, so CLEAR_IF_FIRST wipes nothing.
    let mut conn = Connection::open(cluster.node(pnn), pnn)?;
    let db_id = attach(&mut conn)?;
    let flags = conn.control(Opcode::DB_OPEN_FLAGS, db_id.to_le_bytes().to_vec())?;
    let flags = u32::from_le_bytes(flags[..4].try_into()?);
    let tdb = Tdb::open(&file, 0, flags, libc::O_RDWR, 0)
        .with_context(|| format!("opening {}", file.display()))?;
    let Some(stored) = tdb.fetch(KEY.as_bytes())? else {
        return Ok(None);
    };
    let (header, value) = ltdb::decode(&stored).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some((header, value.to_vec())))
}

/// Attaches [`DB`] on the connection's node (it is attached already): its id.
fn attach(conn: &mut Connection) -> anyhow::Result<u32> {
    let mut name = DB.as_bytes().to_vec();
    name.push(0);
    let id = conn.control(Opcode::DB_ATTACH, name)?;
    Ok(u32::from_le_bytes(id[..4].try_into()?))
}

/// The tracking entry of [`KEY`] in node `pnn`'s `<file>.RO`.
fn tracking_on(cluster: &Cluster, pnn: u32) -> anyhow::Result<Option<Vec<u8>>> {
    let mut file = db_file(cluster, pnn).into_os_string();
    file.push(".RO");
    let file = PathBuf::from(file);
    let tdb = Tdb::open(&file, 0, tdb_flags::NOLOCK, libc::O_RDONLY, 0)
        .with_context(|| format!("opening {}", file.display()))?;
    Ok(tdb.fetch(KEY.as_bytes())?)
}

/// `ctdb cattdb DB` on node `pnn` with `tool`: its output.
fn cattdb(cluster: &Cluster, pnn: u32, tool: Tool) -> anyhow::Result<String> {
    let out = cluster.node(pnn).ctdb(tool, &["cattdb", DB])?;
    ensure!(out.success(), "ctdb cattdb on node {pnn}:\n{out}");
    Ok(out.stdout)
}

fn ctdb_ok(cluster: &Cluster, pnn: u32, tool: Tool, args: &[&str]) -> anyhow::Result<String> {
    let out = cluster.node(pnn).ctdb(tool, args)?;
    ensure!(
        out.success(),
        "`ctdb {}` ({tool:?}) on node {pnn} failed:\n{out}",
        args.join(" ")
    );
    Ok(out.stdout)
}

/// Scenario: a read-only delegation granted and revoked.
///
/// Given three healthy nodes and a volatile database marked read-only on every
///   node (`ctdb setdbreadonly`: our tool on node 0, the stock one on 1 and 2),
///   with KEY written through node 2 (so node 2 is its dmaster),
/// When a client of node 0 reads KEY with FETCH and `WANT_READONLY`,
/// Then it gets the value; node 0's file holds a copy flagged
///   RO_HAVE_READONLY that still names node 2 as dmaster; node 2's copy is
///   flagged RO_HAVE_DELEGATIONS with a higher rsn, and its `.RO` tracking file
///   names node 0 (bit 0); `ctdb cattdb` shows both flags (both tools);
/// When node 1 then writes KEY (`ctdb writekey`, a fetch lock),
/// Then once the write has returned no node's copy carries a read-only flag,
///   node 0's old copy was overwritten (higher rsn, not a delegation), node 1
///   holds the new value as dmaster, and a read on node 0 sees the new value.
#[test]
fn a_readonly_read_is_delegated_and_a_write_revokes_it() -> anyhow::Result<()> {
    let daemon = Daemon::from_env()?;
    let mut cluster = Cluster::builder().nodes(3).build()?;
    cluster.start(daemon, START_TIMEOUT)?;
    cluster.wait_agreement(&[0, 1, 2], &[0, 1, 2], START_TIMEOUT)?;
    ctdb_ok(&cluster, 0, Tool::Stock, &["attach", DB])?;
    ctdb_ok(&cluster, 0, Tool::Ours, &["setdbreadonly", DB])?;
    for pnn in [1, 2] {
        ctdb_ok(&cluster, pnn, Tool::Stock, &["setdbreadonly", DB])?;
    }
    for pnn in 0..3 {
        let map = ctdb_ok(&cluster, pnn, Tool::Stock, &["getdbmap"])?;
        ensure!(
            map.lines()
                .any(|l| l.contains(DB) && l.contains("READONLY")),
            "node {pnn} does not show {DB} read-only:\n{map}"
        );
    }
    ctdb_ok(
        &cluster,
        2,
        Tool::Stock,
        &["writekey", DB, KEY, "first value"],
    )?;
    let (before, _) = copy_on(&cluster, 2)?.context("node 2 has no copy after writekey")?;
    ensure!(before.dmaster == 2, "node 2 is not dmaster: {before:?}");

    // The read, as smbd asks for a record it would like a copy of.
    let mut client = Connection::open(cluster.node(0), 0)?;
    let db_id = attach(&mut client)?;
    let (status, data) = client.call(
        db_id,
        call_id::FETCH_FUNC,
        call_flags::WANT_READONLY,
        KEY.as_bytes(),
    )?;
    ensure!(status == 0, "read answered with status {status}");
    ensure!(
        data == b"first value",
        "read answered {:?}",
        String::from_utf8_lossy(&data)
    );

    let (copy, value) = copy_on(&cluster, 0)?.context("node 0 stored no copy")?;
    ensure!(
        copy.has(rec_flags::RO_HAVE_READONLY) && copy.dmaster == 2 && value == b"first value",
        "node 0's copy is not a delegation from node 2: {copy:?} {value:?}"
    );
    let (granted, _) = copy_on(&cluster, 2)?.context("node 2 lost the record")?;
    ensure!(
        granted.dmaster == 2
            && granted.has(rec_flags::RO_HAVE_DELEGATIONS)
            && granted.rsn > copy.rsn
            && granted.rsn > before.rsn,
        "node 2's record does not show the delegation: before {before:?}, now {granted:?}, copy {copy:?}"
    );
    let tracking = tracking_on(&cluster, 2)?.context("no tracking entry on node 2")?;
    ensure!(
        tracking.first().is_some_and(|b| b & 1 == 1),
        "node 2's tracking entry does not name node 0: {tracking:?}"
    );
    for tool in [Tool::Ours, Tool::Stock] {
        let on_0 = cattdb(&cluster, 0, tool)?;
        ensure!(
            on_0.contains("RO_HAVE_READONLY"),
            "cattdb ({tool:?}) on node 0:\n{on_0}"
        );
        let on_2 = cattdb(&cluster, 2, tool)?;
        ensure!(
            on_2.contains("RO_HAVE_DELEGATIONS"),
            "cattdb ({tool:?}) on node 2:\n{on_2}"
        );
    }

    // A write through node 1: the delegation must be revoked before it proceeds.
    ctdb_ok(
        &cluster,
        1,
        Tool::Ours,
        &["writekey", DB, KEY, "second value"],
    )?;
    for pnn in 0..3 {
        if let Some((header, _)) = copy_on(&cluster, pnn)? {
            ensure!(
                header.flags & rec_flags::RO_FLAGS == 0,
                "node {pnn} still carries read-only flags after the write: {header:?}"
            );
        }
    }
    let (revoked, _) = copy_on(&cluster, 0)?.context("node 0's copy vanished")?;
    ensure!(
        revoked.rsn > copy.rsn,
        "node 0's copy was not overwritten by the revocation: {copy:?} then {revoked:?}"
    );
    let (written, value) = copy_on(&cluster, 1)?.context("node 1 has no copy")?;
    ensure!(
        written.dmaster == 1 && value == b"second value",
        "node 1 does not hold the write: {written:?} {value:?}"
    );
    let read = ctdb_ok(&cluster, 0, Tool::Stock, &["readkey", DB, KEY])?;
    ensure!(read.contains("second value"), "readkey on node 0: {read}");
    Ok(())
}
