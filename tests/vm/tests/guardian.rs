//! The address guardian: when `ctdbd` dies, its public addresses leave the node's
//! interface at once; on a clean shutdown the daemon releases them itself and the
//! guardian leaves quietly. And public interfaces are checked at start-up: a line
//! naming an interface this node lacks is reported with file and line, and the other
//! addresses are still served.
//!
//! Topology (one sandbox, a one-node cluster that hosts every address itself):
//!
//! ```text
//!   node 0 sandbox: priv0 192.168.20.41, pub0 (public addresses go here)
//!     ctdbd ──stdin pipe──> ctdb-rs-guardian (own process group, no pdeathsig)
//!   public_addresses: 10.0.20.101/24 pub0  (+ lines naming missing interfaces in
//!                     the start-up check scenario)
//! ```
//!
//! Faults come from outside: SIGKILL of `ctdbd` by PID (the guardian is not touched),
//! and `ctdb shutdown`. The guardian is ours alone, so these scenarios always run our
//! daemon (`CTDB_RS_DAEMON` is not consulted). Addresses are read with `ip -o addr`
//! in the node's namespaces; every wait polls a condition up to a deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use vm::{wait_until, Cluster, Daemon, Node, Tool};

/// Cold start to RUNNING.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// From RUNNING until the takeover run has put the address on `pub0`.
const HOST_TIMEOUT: Duration = Duration::from_secs(30);
/// What the guardian is allowed from the daemon's death to the address being gone.
const GUARDIAN_DEADLINE: Duration = Duration::from_millis(200);
/// How long the measurement keeps polling after the deadline, so that a miss
/// reports the time it really took.
const MEASURE_LIMIT: Duration = Duration::from_secs(5);
/// How long `ctdb shutdown` may take to make the daemon exit, and processes to go.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

const PUBLIC_IFACE: &str = "pub0";
const ADDR: &str = "10.0.20.101/24";
const GUARDIAN: &str = "ctdb-rs-guardian";

/// `ip -o addr show dev <iface>` in the node.
fn addresses(node: &Node, iface: &str) -> anyhow::Result<String> {
    let out = node.run("ip", &["-o", "addr", "show", "dev", iface])?;
    anyhow::ensure!(out.success(), "listing addresses failed:\n{out}");
    Ok(out.stdout)
}

/// Whether `ip -o addr` output shows `cidr` (as `10.0.20.101/24`).
fn shows(listing: &str, cidr: &str) -> bool {
    listing.split_whitespace().any(|word| word == cidr)
}

/// PIDs of the guardians running in the node's network namespace (zombies not
/// counted: a dead guardian waiting to be reaped has done its work).
fn guardians(node: &Node) -> anyhow::Result<Vec<i32>> {
    let mut found = Vec::new();
    for pid in node.netns().pids()? {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        let is_guardian = Path::new(std::str::from_utf8(argv0).unwrap_or_default())
            .file_name()
            .is_some_and(|name| name == GUARDIAN);
        if is_guardian && !is_zombie(pid) {
            found.push(pid);
        }
    }
    Ok(found)
}

fn is_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Starts our daemon in node 0 and waits until `ctdb ip` shows `ADDR` hosted by
/// node 0 and the kernel has it on `pub0`. Returns the guardian's pid.
fn start_hosting(cluster: &mut Cluster) -> anyhow::Result<i32> {
    let node = cluster.node_mut(0);
    node.start_daemon(Daemon::Ours)?;
    node.wait_runstate("RUNNING", START_TIMEOUT)?;
    let ip = ADDR.split('/').next().expect("ADDR has a prefix length");
    node.wait_ctdb(&["ip"], HOST_TIMEOUT, |out| {
        out.success() && out.stdout.lines().any(|l| l == format!("{ip} 0"))
    })?;
    let node = cluster.node(0);
    wait_until(HOST_TIMEOUT, || match addresses(node, PUBLIC_IFACE) {
        Ok(listing) if shows(&listing, ADDR) => Ok(()),
        Ok(listing) => Err(listing),
        Err(e) => Err(format!("{e:#}")),
    })
    .map_err(|t| {
        anyhow::anyhow!(
            "{ADDR} never appeared on {PUBLIC_IFACE}: {t}\n{}",
            cluster.logs()
        )
    })?;
    let pids = guardians(node)?;
    anyhow::ensure!(
        pids.len() == 1,
        "expected one guardian in node 0, found {pids:?}\n{}",
        cluster.logs()
    );
    Ok(pids[0])
}

/// Waits until process `pid` has exited.
fn wait_exited(cluster: &Cluster, pid: i32, what: &str) -> anyhow::Result<()> {
    wait_until(
        EXIT_TIMEOUT,
        || if is_zombie(pid) { Ok(()) } else { Err(pid) },
    )
    .map_err(|t| anyhow::anyhow!("{what} ({pid}) still runs: {t}\n{}", cluster.logs()))
}

fn one_address() -> anyhow::Result<Cluster> {
    Cluster::builder()
        .nodes(1)
        .public_addresses([format!("{ADDR} {PUBLIC_IFACE}")])
        .build()
}

/// Given a node hosting its public address, when `ctdbd` is killed with SIGKILL,
/// then the address leaves `pub0` within 200 ms (the guardian removed it) and the
/// guardian has exited, saying what it did.
#[test]
fn kill_9_of_ctdbd_removes_its_address_within_200_ms() -> anyhow::Result<()> {
    let mut cluster = one_address()?;
    let guardian = start_hosting(&mut cluster)?;

    let killed = Instant::now();
    cluster
        .node_mut(0)
        .daemon()?
        .process
        .signal(nix::sys::signal::Signal::SIGKILL)?;
    // Polled back to back, each poll one `nsenter ip` run waited for directly (a
    // few ms; the harness's `run` checks for the exit every 50 ms, which would be
    // the resolution of the measurement). `ip` lists addresses and exits.
    let mut polls = 0;
    let removed_after = loop {
        polls += 1;
        let out = cluster
            .node(0)
            .command("ip")
            .args(["-o", "addr", "show", "dev", PUBLIC_IFACE])
            .output()?;
        anyhow::ensure!(out.status.success(), "listing addresses failed: {out:?}");
        let listing = String::from_utf8_lossy(&out.stdout);
        let elapsed = killed.elapsed();
        if !shows(&listing, ADDR) {
            break elapsed;
        }
        anyhow::ensure!(
            elapsed < MEASURE_LIMIT,
            "{ADDR} still on {PUBLIC_IFACE} {elapsed:?} after SIGKILL:\n{listing}\n{}",
            cluster.logs()
        );
    };
    eprintln!("guardian: {ADDR} gone {removed_after:?} after SIGKILL of ctdbd ({polls} polls)");
    cluster
        .node_mut(0)
        .daemon()?
        .process
        .wait_exit(EXIT_TIMEOUT)?;
    assert!(
        removed_after <= GUARDIAN_DEADLINE,
        "{ADDR} was removed {removed_after:?} after SIGKILL (allowed {GUARDIAN_DEADLINE:?})"
    );
    wait_exited(&cluster, guardian, "the guardian")?;
    let log = cluster.node(0).daemon_log();
    assert!(
        log.contains("ctdbd died; removing its public addresses"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("removed public address") && l.contains("10.0.20.101")),
        "{log}"
    );
    Ok(())
}

/// Given a node hosting its public address, when `ctdb shutdown` stops it, then
/// the daemon releases the address itself, tells the guardian `exit`, and both are
/// gone; the guardian removed nothing.
#[test]
fn clean_shutdown_releases_the_address_and_ends_the_guardian() -> anyhow::Result<()> {
    let mut cluster = one_address()?;
    let guardian = start_hosting(&mut cluster)?;

    let out = cluster.node(0).ctdb(Tool::Ours, &["shutdown"])?;
    assert!(out.success(), "{out}");
    cluster
        .node_mut(0)
        .daemon()?
        .process
        .wait_exit(EXIT_TIMEOUT)?;
    let listing = addresses(cluster.node(0), PUBLIC_IFACE)?;
    assert!(
        !shows(&listing, ADDR),
        "{ADDR} left on {PUBLIC_IFACE}:\n{listing}"
    );
    wait_exited(&cluster, guardian, "the guardian")?;
    let log = cluster.node(0).daemon_log();
    assert!(log.contains("released public address at shutdown"), "{log}");
    assert!(
        log.contains("ctdbd stopped cleanly and released every public address"),
        "{log}"
    );
    assert!(!log.contains("ctdbd died"), "{log}");
    Ok(())
}

/// Given a `public_addresses` file whose line 2 names only an interface the node
/// lacks and whose line 3 names one besides `pub0`, when the daemon starts, then it
/// logs line 2 as an error and line 3 as a warning, each with file and line, does
/// not serve line 2's address, and hosts the others on `pub0`.
#[test]
fn missing_public_interface_is_reported_with_file_and_line() -> anyhow::Result<()> {
    let mut cluster = Cluster::builder()
        .nodes(1)
        .public_addresses([
            format!("{ADDR} {PUBLIC_IFACE}"),
            "10.0.20.102/24 eth9".to_owned(),
            format!("10.0.20.103/24 eth8,{PUBLIC_IFACE}"),
        ])
        .build()?;
    start_hosting(&mut cluster)?;

    let log = cluster.node(0).daemon_log();
    let error = log
        .lines()
        .find(|l| l.contains("public_addresses:2: interface eth9 does not exist on this node"))
        .unwrap_or_else(|| panic!("no error for line 2:\n{log}"));
    assert!(error.contains("ERROR"), "{error}");
    let warning = log
        .lines()
        .find(|l| l.contains("public_addresses:3: interface eth8 does not exist on this node"))
        .unwrap_or_else(|| panic!("no warning for line 3:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");

    let node = cluster.node_mut(0);
    let hosted = node.wait_ctdb(&["ip"], HOST_TIMEOUT, |out| {
        out.success() && out.stdout.lines().any(|l| l == "10.0.20.103 0")
    })?;
    assert!(
        !hosted.stdout.contains("10.0.20.102"),
        "an address whose interface is missing is served:\n{}",
        hosted.stdout
    );
    let node = cluster.node(0);
    wait_until(HOST_TIMEOUT, || match addresses(node, PUBLIC_IFACE) {
        Ok(l) if shows(&l, "10.0.20.103/24") => Ok(()),
        Ok(l) => Err(l),
        Err(e) => Err(format!("{e:#}")),
    })
    .map_err(|t| anyhow::anyhow!("10.0.20.103 never reached {PUBLIC_IFACE}: {t}"))?;
    Ok(())
}
