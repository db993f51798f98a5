//! Vacuuming with real smbd: the records that open files leave in the volatile
//! databases (`locking.tdb` share modes, `smbXsrv_open_global.tdb` open handles)
//! go away on every node once the files are closed.
//!
//! ```text
//!   client 10.0.20.200: smb_client.py
//!      │ connections a, b, c ── addresses of nodes 0, 1, 2 ──> smbd (clustering = yes)
//!      │ open FILES files round-robin, keep them open, close them all
//!   node n: ctdbd (VacuumInterval=1, no full runs) ─ /var/lib/ctdb/volatile/locking.tdb.n
//! ```
//!
//! The records are counted with `tdbdump` on each node's file (every record,
//! empty ones included, on every node: the dmaster's copy and the others').
//! While the files are open the databases hold at least one record per file;
//! after the closes smbd leaves empty records, and the test waits, with a
//! deadline, until vacuuming has taken the databases back to what they held
//! before the first open. With `VacuumInterval=0` (no vacuuming) the wait times
//! out.
//!
//! ```text
//! cargo test -p vm --test vacuum
//! ```

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use vm::public::{address_held_by, default_public, wait_placed};
use vm::smb_client::SmbClient;
use vm::wait::wait_until;
use vm::{Cluster, Daemon};

const ALL: [u32; 3] = [0, 1, 2];
const START_TIMEOUT: Duration = Duration::from_secs(60);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Vacuuming runs every second here; a deleted record needs two runs (hand-over
/// to its lmaster, then the deletion everywhere).
const SHRINK_TIMEOUT: Duration = Duration::from_secs(60);
/// Files opened through the three nodes.
const FILES: usize = 30;
/// The databases watched.
const DATABASES: [&str; 2] = ["locking.tdb", "smbXsrv_open_global.tdb"];

/// Records in database `name` on node `pnn`, empty ones included.
fn records(cluster: &Cluster, pnn: u32, name: &str) -> anyhow::Result<usize> {
    let path = cluster
        .node(pnn)
        .path(&format!("/var/lib/ctdb/volatile/{name}.{pnn}"));
    if !path.exists() {
        return Ok(0);
    }
    let out = Command::new("tdbdump")
        .arg(&path)
        .output()
        .with_context(|| format!("running tdbdump on {}", path.display()))?;
    ensure!(
        out.status.success(),
        "tdbdump {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "{")
        .count())
}

/// Records of every watched database on every node, by (database, node).
fn census(cluster: &Cluster) -> anyhow::Result<Vec<(String, u32, usize)>> {
    let mut counts = Vec::new();
    for name in DATABASES {
        for pnn in ALL {
            counts.push((name.to_owned(), pnn, records(cluster, pnn, name)?));
        }
    }
    Ok(counts)
}

fn total(counts: &[(String, u32, usize)], name: &str) -> usize {
    counts
        .iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, _, c)| c)
        .sum()
}

/// Given three nodes with clustered Samba and vacuuming every second, when a
/// client opens many files through all three nodes and closes them, then the
/// share-mode and open-handle databases, which held a record per open file,
/// shrink back on every node to what they held before.
#[test]
fn closed_files_leave_no_records_behind() -> anyhow::Result<()> {
    let daemon = Daemon::from_env()?;
    vm::smb_client::check_prerequisites()?;
    let mut cluster = Cluster::builder()
        .nodes(3)
        .samba(true)
        .client(true)
        // No full run (a walk of the whole file) after the first: what goes,
        // goes through the delete queue.
        .tunables("MonitorInterval=1\nVacuumInterval=1\nVacuumFastPathCount=1000\n")
        .build()?;
    vm::nas::prepare_for(&cluster, None, daemon)?;
    cluster.start(daemon, START_TIMEOUT)?;
    cluster.wait_agreement(&ALL, &ALL, START_TIMEOUT)?;
    let addrs: Vec<Ipv4Addr> = ALL.iter().map(|p| default_public(*p)).collect();
    wait_placed(&cluster, &ALL, &addrs, &ALL, CONVERGE_TIMEOUT)?;

    let mut smb = SmbClient::start(&cluster)?;
    let conns = ["a", "b", "c"];
    for (pnn, conn) in ALL.iter().zip(conns) {
        smb.connect(conn, address_held_by(&cluster, *pnn, CONVERGE_TIMEOUT)?)?;
    }
    // What the databases hold with sessions up and no file open (the
    // connections' own records, and whatever the tree connects left).
    let before = census(&cluster)?;

    for i in 0..FILES {
        let conn = conns[i % conns.len()];
        smb.expect(
            &format!("open h{i} {conn} vacuum-{i}.txt access=rw share=rw oplock=none"),
            "ok",
            &format!("open file {i} through connection {conn}"),
        )?;
    }
    let open = census(&cluster)?;
    for name in DATABASES {
        ensure!(
            total(&open, name) >= total(&before, name) + FILES,
            "with {FILES} files open, {name} should hold a record per file more than \
             before; before: {before:?}, with the files open: {open:?}"
        );
    }
    for i in 0..FILES {
        smb.expect(&format!("close h{i}"), "ok", &format!("close file {i}"))?;
    }

    let shrunk = wait_until(SHRINK_TIMEOUT, || {
        let now = census(&cluster).map_err(|e| format!("{e:#}"))?;
        let back = DATABASES
            .iter()
            .all(|name| total(&now, name) <= total(&before, name));
        if back {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    });
    let shrunk = shrunk.map_err(|e| {
        anyhow::anyhow!(
            "after closing every file the databases should shrink back to what they held \
             before the opens ({before:?}); with the files open they held {open:?}; {e}"
        )
    })?;
    // Only records went: the files are still there and open again.
    let last = FILES - 1;
    smb.expect(
        &format!("open last a vacuum-{last}.txt access=r share=rw oplock=none"),
        "ok",
        "a file opened and closed before vacuuming still opens",
    )?;
    smb.expect("close last", "ok", "close it again")?;
    eprintln!("records before {before:?}, open {open:?}, after vacuuming {shrunk:?}");
    Ok(())
}
