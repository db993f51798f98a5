//! NFS-Ganesha as a CTDB-managed service (`events.d/60.nfs.script`), and
//! round-robin DNS over the public addresses. No `ctdbd` runs: the tests play
//! the daemon's part by hand (add the public address with `ip`, run the
//! script's events with the event runner's environment).
//!
//! ```text
//!            fabric netns: bridge pub (10.0.20.0/24)
//!              |                    |                    |
//!   node 0 pub0 10.0.20.101   node 1 pub0 (later .101)  client eth0 10.0.20.200
//!   ganesha.nfsd (60.nfs)     ganesha.nfsd (60.nfs)     nfs-cp, nfs-cat, nfs-ls,
//!        \                        /                      dnsmasq on 127.0.0.1
//!         +-- /srv/shared: export/, ganesha/pnn0, ganesha/pnn1, ganesha/public_ips
//! ```
//!
//! Given nodes whose ganesha configuration puts the export and each node's
//! recovery records on the shared volume,
//! When the script starts, monitors, stops and fails over the server,
//! Then clients read back through a public address what they wrote, a dead
//!   server fails `monitor` with one line, and after a takeover the clients of
//!   the moved address get a grace period (or, when disabled, none) on the new
//!   node.
//!
//! Waits poll a condition up to a deadline.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vm::dns::Dnsmasq;
use vm::nfs::{
    nfs_cat, nfs_cp, nfs_ls, recovery_root, write_ganesha_conf, GaneshaConf, NfsNode, NfsSettings,
    EXPORT_DIR, GANESHA_CONF, STATE_DIR,
};
use vm::public::default_public;
use vm::sandbox::{unique_name, NetNs, TempDir};
use vm::{wait_until, Cluster, Node, Output};

/// One libnfs command: connect, one operation, disconnect.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// A killed process turning into a zombie or vanishing.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The grace period of [`GaneshaConf::default`] (ganesha's own default is 90 s).
const GRACE: Duration = Duration::from_secs(5);

/// A cluster of `nodes` with the shared volume and the client, every node's
/// ganesha configuration written.
fn nfs_cluster(nodes: u32, conf: &GaneshaConf) -> anyhow::Result<Cluster> {
    let cluster = Cluster::builder()
        .nodes(nodes)
        .shared_volume(true)
        .client(true)
        .build()?;
    for pnn in 0..nodes {
        write_ganesha_conf(&cluster, pnn, conf)?;
    }
    Ok(cluster)
}

fn client(cluster: &Cluster) -> &NetNs {
    cluster.client().expect("built with a client")
}

/// Adds (`add`) or deletes (`del`) `addr`/24 on `node`'s `pub0`, as the daemon
/// would around takeip and releaseip.
fn address(node: &Node, verb: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
    node.netns()
        .ip(&["addr", verb, &format!("{addr}/24"), "dev", "pub0"])
        .with_context(|| format!("ip addr {verb} {addr} on node {}", node.pnn()))
}

/// `takeip pub0 <addr> 24`.
fn takeip(nfs: &NfsNode, addr: Ipv4Addr) -> anyhow::Result<Output> {
    nfs.event_ok(&["takeip", "pub0", &addr.to_string(), "24"])
}

/// The one line of a failed event's output (stdout and stderr together).
fn one_line(out: &Output) -> anyhow::Result<String> {
    ensure!(!out.success(), "expected a failure:\n{out}");
    let text = format!("{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    ensure!(
        lines.len() == 1,
        "expected exactly one line of output:\n{out}"
    );
    Ok(lines[0].to_owned())
}

/// Whether `pid` has exited: gone, or a zombie not yet reaped.
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|s| matches!(s.trim().chars().next(), Some('Z' | 'X'))),
    }
}

/// SIGKILL to the server by its pid (it runs in a node this test created), then
/// waits until it has exited.
fn kill_server(nfs: &NfsNode) -> anyhow::Result<i32> {
    let pid = nfs.pid().context("the server has no pid file")?;
    kill(Pid::from_raw(pid), Signal::SIGKILL).with_context(|| format!("killing {pid}"))?;
    wait_until(EXIT_TIMEOUT, || if exited(pid) { Ok(()) } else { Err(pid) })
        .map_err(|t| anyhow!("ganesha.nfsd survived SIGKILL: {t}"))?;
    Ok(pid)
}

/// Writes `bytes` to `name` in the export through `addr`, and reads them back.
fn write_through(
    cluster: &Cluster,
    addr: Ipv4Addr,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let dir = TempDir::new("nfs-src")?;
    let local = dir.path().join(name);
    std::fs::write(&local, bytes)?;
    let out = nfs_cp(client(cluster), &local, addr, name, CLIENT_TIMEOUT)?;
    ensure!(out.success(), "nfs-cp through {addr} failed:\n{out}");
    let out = nfs_cat(client(cluster), addr, name, CLIENT_TIMEOUT)?;
    ensure!(out.success(), "nfs-cat through {addr} failed:\n{out}");
    ensure!(
        out.stdout.as_bytes() == bytes,
        "read back through {addr} something else than was written:\n{out}"
    );
    Ok(())
}

/// Reads `name` through `addr` until it succeeds: a server in its grace period
/// refuses new opens (NFS4ERR_GRACE) until the period ends.
fn read_after_grace(cluster: &Cluster, addr: Ipv4Addr, name: &str) -> anyhow::Result<Output> {
    wait_until(GRACE + Duration::from_secs(15), || {
        match nfs_cat(client(cluster), addr, name, CLIENT_TIMEOUT) {
            Ok(out) if out.success() => Ok(out),
            Ok(out) => Err(out.to_string()),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .map_err(|t| anyhow!("never read {name} back through {addr}: {t}"))
}

/// Distinct content per call, so that reading back proves this run's write.
fn payload(label: &str) -> Vec<u8> {
    format!(
        "{label}: written by {} at {:?}\n",
        unique_name(),
        Instant::now()
    )
    .into_bytes()
}

/// The client records (names) in a recovery directory (`v4recov` or `v4old`) of
/// node `pnn`'s recovery root, seen from the host.
fn records(cluster: &Cluster, pnn: u32, dir: &str) -> anyhow::Result<BTreeSet<String>> {
    let path = cluster.shared_path(&format!("{STATE_DIR}/pnn{pnn}/{dir}"))?;
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))? {
        names.insert(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Given one node with ganesha configured and a public address on `pub0`,
/// When `60.nfs startup` runs, Then `monitor` passes and a client writes a file
/// through the address and reads the same bytes back;
/// When the server is killed, Then `monitor` fails with one line naming it;
/// When it is started again and `shutdown` runs, Then it is gone and `monitor`
/// fails again.
#[test]
fn ganesha_serves_through_a_public_address_and_monitor_follows_it() -> anyhow::Result<()> {
    let cluster = nfs_cluster(1, &GaneshaConf::default())?;
    let node = cluster.node(0);
    let addr = default_public(0);
    address(node, "add", addr)?;
    let nfs = NfsNode::new(node, NfsSettings::default())?;

    let out = nfs.event(&["monitor"])?;
    let line = one_line(&out)?;
    ensure!(
        line.contains("ganesha.nfsd is not running"),
        "monitor before startup: {line:?}"
    );

    let out = nfs.event_ok(&["startup"])?;
    ensure!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "startup said:\n{out}"
    );
    let pid = nfs.pid().context("startup wrote no pid file")?;
    // Its own session: the event runner's timeout kills the script's process
    // group, which must not take the server with it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = &stat[stat.rfind(')').context("odd /proc/PID/stat")? + 2..];
    let session: i32 = after_comm
        .split(' ')
        .nth(3)
        .context("no session")?
        .parse()?;
    ensure!(
        session == pid,
        "ganesha.nfsd {pid} is in session {session}, not its own"
    );
    let out = nfs.event(&["monitor"])?;
    ensure!(
        out.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "monitor of a running server:\n{out}"
    );

    let bytes = payload("through node 0");
    write_through(&cluster, addr, "hello.txt", &bytes)?;
    let on_volume = std::fs::read(cluster.shared_path(&format!("{EXPORT_DIR}/hello.txt"))?)?;
    ensure!(on_volume == bytes, "the shared volume holds other bytes");
    let out = nfs_ls(client(&cluster), addr, CLIENT_TIMEOUT)?;
    ensure!(
        out.success() && out.stdout.contains("hello.txt"),
        "nfs-ls:\n{out}"
    );

    // Killed: the process is a zombie or gone when monitor runs, never "alive".
    let killed = kill_server(&nfs)?;
    let line = one_line(&nfs.event(&["monitor"])?)?;
    ensure!(
        line.starts_with(&format!("ganesha.nfsd (pid {killed}) ")),
        "monitor of a killed server: {line:?}"
    );
    eprintln!("monitor of a killed server: {line}");

    nfs.event_ok(&["startup"])?;
    let pid = nfs.pid().context("no pid after the second startup")?;
    ensure!(pid != killed, "the pid file still names the killed server");
    nfs.event_ok(&["monitor"])?;
    // The killed server's client records make the new one start in its grace
    // period: new opens wait until it ends.
    let out = read_after_grace(&cluster, addr, "hello.txt")?;
    ensure!(out.stdout.as_bytes() == bytes, "after the restart:\n{out}");

    nfs.event_ok(&["shutdown"])?;
    ensure!(exited(pid), "ganesha.nfsd {pid} still runs after shutdown");
    ensure!(nfs.pid().is_none(), "shutdown left the pid file");
    let line = one_line(&nfs.event(&["monitor"])?)?;
    ensure!(
        line.contains("is not running"),
        "monitor after shutdown: {line:?}"
    );
    let out = nfs_cat(client(&cluster), addr, "hello.txt", CLIENT_TIMEOUT)?;
    ensure!(!out.success(), "a stopped server still answered:\n{out}");
    // Idempotent: a second shutdown has nothing to do.
    nfs.event_ok(&["shutdown"])?;
    Ok(())
}

/// Given a configuration ganesha rejects, When `startup` runs, Then it fails at
/// once with one line quoting ganesha's complaint; and given one that lacks what
/// the script needs, the line says what to set.
#[test]
fn startup_reports_a_bad_configuration_in_one_line() -> anyhow::Result<()> {
    let cluster = nfs_cluster(1, &GaneshaConf::default())?;
    let node = cluster.node(0);
    let nfs = NfsNode::new(node, NfsSettings::default())?;
    let good = GaneshaConf::default().render(0);
    let conf_name = GANESHA_CONF.trim_start_matches("/etc/ctdb/");

    node.write_config(
        conf_name,
        &good.replace("Grace_Period = 5;", "Grace_Period = $;"),
    )?;
    let started = Instant::now();
    let line = one_line(&nfs.event(&["startup"])?)?;
    ensure!(
        line.starts_with("ganesha.nfsd exited during start-up: ")
            && line.contains(&format!("{GANESHA_CONF}:")),
        "startup with a syntax error: {line:?}"
    );
    eprintln!("startup with a syntax error: {line}");
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "the failure took {:?}: the script waited for its timeout",
        started.elapsed()
    );

    node.write_config(conf_name, &good.replace("Clustered = false;", ""))?;
    let line = one_line(&nfs.event(&["startup"])?)?;
    ensure!(
        line.contains("must set Clustered = false"),
        "startup without Clustered = false: {line:?}"
    );
    ensure!(nfs.pid().is_none(), "a server was started anyway");

    node.write_config(conf_name, &good.replace("RecoveryRoot", "# RecoveryRoot"))?;
    let line = one_line(&nfs.event(&["startup"])?)?;
    ensure!(
        line.contains("sets no absolute RecoveryRoot"),
        "startup without RecoveryRoot: {line:?}"
    );
    Ok(())
}

/// Given two nodes running ganesha and node 0 holding the address, a client that
/// wrote a file through it (so node 0's recovery root holds its record),
/// When node 0's server is killed, the address moves to node 1 (the client's
/// neighbour entry flushed, standing in for the gratuitous ARP the daemon
/// sends) and node 1 runs `takeip`,
/// Then the client reads the same bytes through the address from node 1, and:
/// - with `CTDB_NFS_GRACE_ON_TAKEOVER=yes`, node 1 has copied node 0's client
///   records and restarted into its grace period: a new open is refused with
///   NFS4ERR_GRACE at first (reclaims come first), and succeeds once it ends;
/// - with `no`, node 1's server is untouched and serves at once.
fn failover(grace_on_takeover: bool) -> anyhow::Result<()> {
    let cluster = nfs_cluster(2, &GaneshaConf::default())?;
    let settings = NfsSettings { grace_on_takeover };
    let a = NfsNode::new(cluster.node(0), settings)?;
    let b = NfsNode::new(cluster.node(1), settings)?;
    a.event_ok(&["startup"])?;
    b.event_ok(&["startup"])?;
    let addr = default_public(0);
    address(cluster.node(0), "add", addr)?;
    let out = takeip(&a, addr)?;
    ensure!(
        out.stdout.is_empty(),
        "a first takeip has nothing to import:\n{out}"
    );

    let bytes = payload("through node 0 before the failover");
    write_through(&cluster, addr, "failover.txt", &bytes)?;
    let client_records: BTreeSet<String> = records(&cluster, 0, "v4recov")?
        .into_iter()
        .filter(|r| r.contains(&vm::cluster::CLIENT_ADDR.to_string()))
        .collect();
    ensure!(
        !client_records.is_empty(),
        "node 0 recorded no client of {}: {:?}",
        vm::cluster::CLIENT_ADDR,
        records(&cluster, 0, "v4recov")?
    );

    kill_server(&a)?;
    address(cluster.node(0), "del", addr)?;
    address(cluster.node(1), "add", addr)?;
    let b_before = b.pid().context("node 1 runs no server")?;
    let taking = Instant::now();
    let took = takeip(&b, addr)?;
    let moved_at = Instant::now();
    eprintln!(
        "takeip on node 1 (grace on takeover: {grace_on_takeover}) took {:?}",
        moved_at - taking
    );
    client(&cluster).ip(&["neigh", "flush", "to", &addr.to_string()])?;
    let b_after = b.pid().context("node 1 runs no server after takeip")?;

    if grace_on_takeover {
        let line = took.stdout.trim();
        ensure!(
            line.starts_with(&format!("took {addr} from {}: ", recovery_root(0)))
                && line.ends_with("restarted into its grace period"),
            "takeip said: {line:?}"
        );
        ensure!(b_after != b_before, "node 1's server was not restarted");
        let held: BTreeSet<String> = records(&cluster, 1, "v4recov")?
            .union(&records(&cluster, 1, "v4old")?)
            .cloned()
            .collect();
        ensure!(
            client_records.is_subset(&held),
            "node 1 holds {held:?}, not all of node 0's {client_records:?}"
        );
        let first = nfs_cat(client(&cluster), addr, "failover.txt", CLIENT_TIMEOUT)?;
        ensure!(
            !first.success() && first.stderr.contains("NFS4ERR_GRACE"),
            "a new open right after the takeover should meet the grace period:\n{first}"
        );
        let read = read_after_grace(&cluster, addr, "failover.txt")?;
        ensure!(
            read.stdout.as_bytes() == bytes,
            "read back other bytes:\n{read}"
        );
        eprintln!(
            "failover with grace: read back {:?} after takeip",
            moved_at.elapsed()
        );
        // Records nobody reclaimed are dropped when the period ends: the copy
        // leaves no garbage behind.
        wait_until(Duration::from_secs(10), || {
            let old = records(&cluster, 1, "v4old").map_err(|e| format!("{e:#}"))?;
            if old.is_disjoint(&client_records) {
                Ok(())
            } else {
                Err(format!("{old:?}"))
            }
        })
        .map_err(|t| anyhow!("node 1 kept node 0's unreclaimed records: {t}"))?;
    } else {
        ensure!(took.stdout.is_empty(), "takeip said:\n{took}");
        ensure!(b_after == b_before, "node 1's server was restarted");
        let out = nfs_cat(client(&cluster), addr, "failover.txt", CLIENT_TIMEOUT)?;
        ensure!(
            out.success() && out.stdout.as_bytes() == bytes,
            "the first read after the takeover:\n{out}"
        );
    }

    let holder = cluster.shared_path(&format!("{STATE_DIR}/public_ips/{addr}"))?;
    let holder = std::fs::read_to_string(&holder)
        .with_context(|| format!("reading {}", holder.display()))?;
    ensure!(
        holder.trim() == recovery_root(1),
        "{addr} is recorded as held by {holder:?}"
    );
    b.event_ok(&["monitor"])?;
    Ok(())
}

#[test]
fn failover_with_grace_lets_the_moved_clients_reclaim_first() -> anyhow::Result<()> {
    failover(true)
}

#[test]
fn failover_without_grace_serves_at_once() -> anyhow::Result<()> {
    failover(false)
}

/// Given dnsmasq answering `nas.test` with three addresses,
/// When a client asks repeatedly, Then every answer holds the three addresses
/// and the first of them changes from one answer to the next, so clients that
/// take the first address spread over all three.
#[test]
fn dns_rotates_the_first_address() -> anyhow::Result<()> {
    let netns = NetNs::create(&unique_name())?;
    let addrs: Vec<Ipv4Addr> = (0..3).map(default_public).collect();
    let dns = Dnsmasq::start(&netns, "nas.test", &addrs)?;
    let want: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
    let mut firsts = Vec::new();
    for _ in 0..6 {
        let answer = dns.resolve()?;
        let got: BTreeSet<Ipv4Addr> = answer.iter().copied().collect();
        ensure!(
            got == want && answer.len() == addrs.len(),
            "answer {answer:?}, expected each of {addrs:?} once\n{}",
            dns.log()
        );
        firsts.push(answer[0]);
    }
    for pair in firsts.windows(2) {
        ensure!(
            pair[0] != pair[1],
            "the first address did not rotate: {firsts:?}"
        );
    }
    let first_three: BTreeSet<Ipv4Addr> = firsts[..3].iter().copied().collect();
    ensure!(
        first_three == want,
        "three answers in a row should lead with three different addresses: {firsts:?}"
    );
    Ok(())
}

/// Given two nodes serving the export, each holding one public address, and
/// dnsmasq in the client namespace answering `nas.test` with both,
/// When a client resolves the name and reads through the first address of each
/// answer, several times,
/// Then both addresses are used and both nodes' servers see the client (each
/// recovery root holds a record of it).
#[test]
fn round_robin_dns_spreads_clients_over_the_nodes() -> anyhow::Result<()> {
    let cluster = nfs_cluster(2, &GaneshaConf::default())?;
    let addrs = [default_public(0), default_public(1)];
    let nodes = [
        NfsNode::new(cluster.node(0), NfsSettings::default())?,
        NfsNode::new(cluster.node(1), NfsSettings::default())?,
    ];
    for (nfs, addr) in nodes.iter().zip(addrs) {
        nfs.event_ok(&["startup"])?;
        address(nfs.node(), "add", addr)?;
        takeip(nfs, addr)?;
    }
    let dns = Dnsmasq::start(client(&cluster), "nas.test", &addrs)?;
    let bytes = payload("spread");
    write_through(&cluster, addrs[0], "spread.txt", &bytes)?;

    let mut used = BTreeSet::new();
    for _ in 0..4 {
        let first = *dns.resolve()?.first().context("an empty answer")?;
        let out = nfs_cat(client(&cluster), first, "spread.txt", CLIENT_TIMEOUT)?;
        ensure!(
            out.success() && out.stdout.as_bytes() == bytes,
            "reading through {first}:\n{out}"
        );
        used.insert(first);
    }
    ensure!(used.len() == 2, "the client only used {used:?}");
    for pnn in [0, 1] {
        let seen = records(&cluster, pnn, "v4recov")?;
        if !seen
            .iter()
            .any(|r| r.contains(&vm::cluster::CLIENT_ADDR.to_string()))
        {
            bail!("node {pnn}'s server never saw the client: {seen:?}");
        }
    }
    Ok(())
}
