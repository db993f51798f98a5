//! The file services under ctdbd: Samba started, watched and failed over by our
//! daemon through the event scripts of `events.d`, served to a real `smbclient`
//! through the public addresses.
//!
//! ```text
//!   client 10.0.20.200 ── pub bridge ── pub0 of nodes 0, 1, 2 (10.0.20.101-103 float)
//!   node n: ctdbd ─ events ─ 00.ctdb 01.reclock 10.interface 50.samba ─ smbd -D
//!   /srv/shared (every node): nodes, public_addresses, .ctdb.reclock, smb.conf, share/
//!   /etc/samba/smb.conf -> /srv/shared/smb.conf (per node); Samba state per node
//!   smbd (clustering = yes) ─ /run/ctdb/ctdbd.socket ─ ctdbd: clustered databases
//! ```
//!
//! smbd runs with `clustering = yes`, as everywhere in the project: `50.samba`
//! starts it once ctdbd answers, and the test user, registered through node 0
//! once the daemons run (by the harness), logs in through every node. What
//! clustering itself guarantees (share modes, locks, oplocks across nodes) is
//! `clustered_smb.rs`'s subject; here it is the services' life under ctdbd.
//!
//! Tunables: `MonitorInterval=1` so that a failure shows within a second or two
//! (the logic is the same at the default 15 s). Waits poll a condition up to a
//! deadline.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use vm::dns::Dnsmasq;
use vm::nfs::{nfs_cat, nfs_cp, NfsSettings};
use vm::public::{default_public, power_off_machine, wait_placed};
use vm::sandbox::TempDir;
use vm::{wait_until, Cluster, Daemon, Tool};

const ALL: [u32; 3] = [0, 1, 2];
/// Cold start until every node is OK: startup starts smbd, the first monitor
/// passes.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// From a node's loss until smbclient succeeds through its address again.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);

fn addrs() -> Vec<Ipv4Addr> {
    (0..3).map(default_public).collect()
}

/// Three nodes with Samba, the scripts installed and enabled, started and agreed,
/// every address placed.
fn samba_cluster(tunables: &str) -> anyhow::Result<Cluster> {
    nas_cluster(tunables, false, vm::cluster::DEFAULT_CTDB_CONF)
}

/// Like [`samba_cluster`], and with `nfs` also NFS-Ganesha under `60.nfs` (grace
/// on takeover, 5 s grace period).
fn nas_cluster(tunables: &str, nfs: bool, ctdb_conf: &str) -> anyhow::Result<Cluster> {
    let mut cluster = Cluster::builder()
        .nodes(3)
        .samba(true)
        .client(true)
        .tunables(tunables)
        .ctdb_conf(ctdb_conf)
        .build()?;
    vm::nas::prepare(&cluster, nfs.then(NfsSettings::default))?;
    cluster.start(Daemon::Ours, START_TIMEOUT)?;
    cluster.wait_agreement(&ALL, &ALL, START_TIMEOUT)?;
    wait_placed(&cluster, &ALL, &addrs(), &ALL, CONVERGE_TIMEOUT)?;
    Ok(cluster)
}

/// `ctdb ip` on `on` (the stock tool): the node hosting `addr`.
fn host_of(cluster: &Cluster, on: u32, addr: Ipv4Addr) -> anyhow::Result<Option<u32>> {
    let ips = vm::public::ctdb_ip(cluster, on).map_err(anyhow::Error::msg)?;
    Ok(ips.get(&addr).copied().flatten())
}

/// A file of `len` bytes that are not all alike, in a temporary directory.
fn test_file(
    dir: &TempDir,
    name: &str,
    len: usize,
) -> anyhow::Result<(std::path::PathBuf, Vec<u8>)> {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let path = dir.path().join(name);
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok((path, bytes))
}

/// Reads `name` back through `addr` into `dir` and returns the bytes.
fn smb_get(
    cluster: &Cluster,
    addr: Ipv4Addr,
    name: &str,
    dir: &TempDir,
) -> Result<Vec<u8>, String> {
    let local = dir.path().join(format!("{name}.back"));
    let _ = std::fs::remove_file(&local);
    let out = cluster
        .smbclient(addr, &format!("get {name} {}", local.display()))
        .map_err(|e| format!("{e:#}"))?;
    if !out.success() {
        return Err(out.to_string());
    }
    std::fs::read(&local).map_err(|e| format!("{}: {e}", local.display()))
}

/// Given three nodes serving SMB, when a client writes a file through public
/// address P and then the machine hosting P loses power, then P moves to a
/// survivor, whose smbd serves the same bytes back through P.
#[test]
fn smb_file_written_through_an_address_reads_back_after_its_node_dies() -> anyhow::Result<()> {
    let mut cluster = samba_cluster("MonitorInterval=1\n")?;
    let p = default_public(1);
    let victim = host_of(&cluster, 0, p)?.context("P is hosted")?;
    let dir = TempDir::new("smbfile")?;
    let (local, bytes) = test_file(&dir, "payload.bin", 256 * 1024)?;
    let out = cluster.smbclient(p, &format!("put {} payload.bin", local.display()))?;
    ensure!(out.success(), "put through {p} (node {victim}):\n{out}");

    power_off_machine(&mut cluster, victim)?;
    let survivors: Vec<u32> = ALL.into_iter().filter(|n| *n != victim).collect();
    let back = wait_until(FAILOVER_TIMEOUT, || {
        smb_get(&cluster, p, "payload.bin", &dir)
    })
    .with_context(|| format!("reading back through {p} after node {victim} died"))?;
    ensure!(
        back == bytes,
        "the bytes read back differ ({} bytes)",
        back.len()
    );
    let now = host_of(&cluster, survivors[0], p)?;
    ensure!(
        now.is_some_and(|n| n != victim),
        "P should be on a survivor, ctdb ip says {now:?}"
    );
    Ok(())
}

/// The pid in a node's smbd pid file.
fn smbd_pid(cluster: &Cluster, pnn: u32) -> anyhow::Result<i32> {
    let path = cluster.node(pnn).path("/run/samba/smbd.pid");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("pid file says {text:?}"))
}

/// Whether `ctdb status` on `on` shows `pnn` with flags containing `flag`.
fn node_has_flag(cluster: &Cluster, on: u32, pnn: u32, flag: &str) -> Result<(), String> {
    let status = cluster.status(on)?;
    match status.flags(pnn) {
        Some(f) if f.split('|').any(|x| x == flag) => Ok(()),
        other => Err(format!("node {pnn} flags {other:?}")),
    }
}

/// Given a healthy cluster serving SMB, when smbd on one node is killed by hand,
/// then that node's next monitor fails, every node sees it UNHEALTHY, its addresses
/// move to the others (which still serve them), and `ctdb scriptstatus` on it names
/// the failing script and says why; when smbd runs again, the node is healthy again
/// and hosts an address again.
#[test]
fn smbd_killed_by_hand_makes_its_node_unhealthy_until_it_runs_again() -> anyhow::Result<()> {
    let cluster = samba_cluster("MonitorInterval=1\n")?;
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let sick = (leader + 1) % 3;
    let pid = smbd_pid(&cluster, sick)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .context("killing smbd")?;

    for on in ALL {
        wait_until(CONVERGE_TIMEOUT, || {
            node_has_flag(&cluster, on, sick, "UNHEALTHY")
        })
        .with_context(|| format!("node {on} should see node {sick} UNHEALTHY"))?;
    }
    let others: Vec<u32> = ALL.into_iter().filter(|n| *n != sick).collect();
    wait_placed(&cluster, &ALL, &addrs(), &others, CONVERGE_TIMEOUT)?;
    for addr in addrs() {
        let dir = TempDir::new("smbls")?;
        let (local, _) = test_file(&dir, "x", 10)?;
        let out = cluster.smbclient(addr, &format!("put {} x-{addr}", local.display()))?;
        ensure!(out.success(), "{addr} should still serve SMB:\n{out}");
    }
    for tool in [Tool::Stock, Tool::Ours] {
        let out = cluster.node(sick).ctdb(tool, &["scriptstatus"])?;
        ensure!(
            out.stdout.contains("50.samba") && out.stdout.contains("ERROR"),
            "{tool:?} ctdb scriptstatus should show 50.samba failing:\n{out}"
        );
        ensure!(
            out.stdout.contains("smbd is not running"),
            "{tool:?} ctdb scriptstatus should say why:\n{out}"
        );
    }

    let out = cluster.node(sick).run("smbd", &["-D"])?;
    ensure!(out.success(), "starting smbd again:\n{out}");
    for on in ALL {
        wait_until(CONVERGE_TIMEOUT, || match cluster.status(on)?.flags(sick) {
            Some("OK") => Ok(()),
            other => Err(format!("node {sick} flags {other:?}")),
        })
        .with_context(|| format!("node {on} should see node {sick} OK again"))?;
    }
    wait_until(CONVERGE_TIMEOUT, || {
        let ips = vm::public::ctdb_ip(&cluster, leader)?;
        if ips.values().any(|h| *h == Some(sick)) {
            Ok(())
        } else {
            Err(format!("node {sick} hosts nothing: {ips:?}"))
        }
    })
    .context("failback to the healed node")?;
    Ok(())
}

/// A local monitor script that hangs once the file `/run/hang` exists: it
/// records its own pid and its child's, then waits on a long sleep.
const HANGING_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
monitor)
    if [ -e /run/hang ]; then
        sleep 1000 &
        echo "$$ $!" > /run/hang.pids
        echo "about to hang"
        wait
    fi
    ;;
esac
exit 0
"#;

/// Given a node with a script that hangs in `monitor`, when it hangs, then the
/// event is stopped at `EventScriptTimeout` with the script's whole process group
/// killed, the daemon keeps answering, the status shows TIMEDOUT, and after
/// `MonitorTimeoutCount` such timeouts in a row the node is UNHEALTHY. The
/// `[event] debug script` runs first, given the hung script's pid and the event.
/// A script without execute permission is listed as disabled and changes nothing.
#[test]
fn a_hung_monitor_script_is_killed_at_the_timeout() -> anyhow::Result<()> {
    let conf = format!(
        "{}[event]\n\tdebug script = debug-hang.sh\n",
        vm::cluster::DEFAULT_CTDB_CONF
    );
    let cluster = nas_cluster("MonitorInterval=1\nMonitorTimeoutCount=2\n", false, &conf)?;
    let node = cluster.node(2);
    // The short timeout only once the node runs: Samba's startup (smbd attaching
    // its clustered databases) can take longer than 2 s on a loaded machine, and
    // a startup event that times out is retried, never ends, and the node stays
    // in STARTUP. `EventScriptTimeout` is read at each event, so setvar applies.
    let out = node.ctdb(Tool::Ours, &["setvar", "EventScriptTimeout", "2"])?;
    ensure!(out.success(), "setvar EventScriptTimeout:\n{out}");
    // The debug hook: gets the hung script's pid and the event, while it still runs.
    let debug = node.etc_dir().join("debug-hang.sh");
    std::fs::write(
        &debug,
        "#!/bin/sh\necho \"$1 $2 $(cat /proc/$1/comm)\" >> /run/debug-hook.log\n",
    )?;
    std::fs::set_permissions(&debug, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let legacy = node.etc_dir().join("events/legacy");
    let hang = legacy.join("99.hang.script");
    std::fs::write(&hang, HANGING_SCRIPT)?;
    std::fs::set_permissions(&hang, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let idle = legacy.join("98.idle.script");
    std::fs::write(&idle, "#!/bin/sh\nexit 1\n")?;
    std::fs::set_permissions(&idle, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    // Still healthy with both in place (the non-executable one is skipped).
    wait_until(CONVERGE_TIMEOUT, || {
        let out = node
            .ctdb(Tool::Ours, &["scriptstatus"])
            .map_err(|e| format!("{e:#}"))?;
        if out.success()
            && out.stdout.contains("99.hang")
            && out.stdout.contains("98.idle              DISABLED")
        {
            Ok(())
        } else {
            Err(out.to_string())
        }
    })
    .context("scriptstatus should list the new scripts")?;

    std::fs::write(node.path("/run/hang"), "")?;
    let pids = wait_until(CONVERGE_TIMEOUT, || {
        std::fs::read_to_string(node.path("/run/hang.pids")).map_err(|e| e.to_string())
    })?;
    let pids: Vec<i32> = pids
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    ensure!(pids.len() == 2, "script and sleep pids: {pids:?}");
    // The daemon answers while the script hangs.
    let out = node.ctdb(Tool::Stock, &["status"])?;
    ensure!(out.success(), "ctdb status while a script hangs:\n{out}");
    // Killed at the timeout: script and child gone.
    wait_until(Duration::from_secs(10), || {
        let alive: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .filter(|p| !is_zombie(*p))
            .collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {alive:?}"))
        }
    })
    .context("the hung script's process group should be killed")?;
    let out = wait_until(CONVERGE_TIMEOUT, || {
        let out = node
            .ctdb(Tool::Stock, &["scriptstatus"])
            .map_err(|e| format!("{e:#}"))?;
        if out.stdout.contains("TIMEDOUT") {
            Ok(out)
        } else {
            Err(out.to_string())
        }
    })?;
    ensure!(out.stdout.contains("99.hang"), "{out}");
    let hook = std::fs::read_to_string(node.path("/run/debug-hook.log"))
        .context("the debug script should have run")?;
    ensure!(
        hook.lines()
            .any(|l| l.starts_with(&format!("{} monitor", pids[0]))),
        "the debug script should get the hung script's pid and the event: {hook:?}"
    );
    for on in ALL {
        wait_until(CONVERGE_TIMEOUT, || {
            node_has_flag(&cluster, on, 2, "UNHEALTHY")
        })
        .with_context(|| format!("node {on} should see node 2 UNHEALTHY after two timeouts"))?;
    }
    std::fs::remove_file(node.path("/run/hang"))?;
    wait_until(CONVERGE_TIMEOUT, || match cluster.status(0)?.flags(2) {
        Some("OK") => Ok(()),
        other => Err(format!("node 2 flags {other:?}")),
    })
    .context("healthy again once the script stops hanging")?;
    Ok(())
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
        .unwrap_or(false)
}

/// Given a healthy cluster, when a node loses the shared volume (unmounted under
/// it), then its monitor fails and it becomes UNHEALTHY, not dead: its daemon
/// keeps answering and the others still see it connected; its addresses move.
#[test]
fn a_missing_shared_volume_makes_the_node_unhealthy_not_dead() -> anyhow::Result<()> {
    let cluster = samba_cluster("MonitorInterval=1\n")?;
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let victim = (leader + 2) % 3;
    let out = cluster.node(victim).run("umount", &["-l", "/srv/shared"])?;
    ensure!(
        out.success(),
        "unmounting the shared volume on node {victim}:\n{out}"
    );
    for on in ALL {
        wait_until(CONVERGE_TIMEOUT, || {
            node_has_flag(&cluster, on, victim, "UNHEALTHY")
        })
        .with_context(|| format!("node {on} should see node {victim} UNHEALTHY"))?;
    }
    let status = cluster.status(leader).map_err(anyhow::Error::msg)?;
    if status
        .flags(victim)
        .is_some_and(|f| f.contains("DISCONNECTED"))
    {
        bail!("node {victim} should stay connected: {status:?}");
    }
    let others: Vec<u32> = ALL.into_iter().filter(|n| *n != victim).collect();
    wait_placed(&cluster, &ALL, &addrs(), &others, CONVERGE_TIMEOUT)?;
    let out = cluster.node(victim).ctdb(Tool::Stock, &["scriptstatus"])?;
    ensure!(out.stdout.contains("00.ctdb"), "{out}");
    Ok(())
}

/// Given three nodes serving NFS (NFS-Ganesha under `60.nfs`), when a client writes
/// a file through public address P and the machine hosting P loses power, then P
/// moves to a survivor whose server (restarted into its grace period so the moved
/// clients may reclaim first) serves the same bytes back through P.
#[test]
fn nfs_file_written_through_an_address_reads_back_after_its_node_dies() -> anyhow::Result<()> {
    let mut cluster = nas_cluster("MonitorInterval=1\n", true, vm::cluster::DEFAULT_CTDB_CONF)?;
    let p = default_public(2);
    let victim = host_of(&cluster, 0, p)?.context("P is hosted")?;
    let dir = TempDir::new("nfsfile")?;
    // About 3 KB: Debian 12's nfs-cp (libnfs 4.0) fails "Failed to write to dest
    // file" on NFSv4 writes of some tens of KB against ganesha, with or without
    // ctdbd (checked by hand): the client, not the server path, is the limit.
    let text: String = (0..100)
        .map(|i| format!("line {i} of the nfs payload\n"))
        .collect();
    let local = dir.path().join("payload.txt");
    std::fs::write(&local, &text)?;
    let client = cluster.client().context("a client")?;
    let out = nfs_cp(client, &local, p, "payload.txt", FAILOVER_TIMEOUT)?;
    if !out.success() {
        let log = std::fs::read_to_string(cluster.node(victim).path("/run/ganesha/ganesha.log"))
            .unwrap_or_default();
        bail!("nfs-cp through {p} (node {victim}):\n{out}\nganesha log:\n{log}");
    }

    power_off_machine(&mut cluster, victim)?;
    let client = cluster.client().context("a client")?;
    let back = wait_until(Duration::from_secs(40), || {
        let out = nfs_cat(client, p, "payload.txt", Duration::from_secs(10))
            .map_err(|e| format!("{e:#}"))?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(out.to_string())
        }
    })
    .with_context(|| format!("reading back through {p} after node {victim} died"))?;
    ensure!(
        back == text,
        "the text read back differs ({} bytes)",
        back.len()
    );
    let survivor = ALL
        .into_iter()
        .find(|n| *n != victim)
        .expect("two survivors");
    let now = host_of(&cluster, survivor, p)?;
    ensure!(now.is_some_and(|n| n != victim), "ctdb ip says {now:?}");
    Ok(())
}

/// Given three nodes serving SMB and a DNS server answering one name with every
/// public address in rotation, when a client connects by that name several times
/// (taking the first address of each answer, as most clients do), then its
/// connections land on at least two nodes.
#[test]
fn round_robin_dns_spreads_smb_clients_over_the_nodes() -> anyhow::Result<()> {
    let cluster = samba_cluster("")?;
    let client = cluster.client().context("a client")?;
    let dns = Dnsmasq::start(client, "nas.test", &addrs())?;
    let mut nodes = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let first = *dns.resolve()?.first().context("an empty DNS answer")?;
        let out = cluster.smbclient(first, "ls")?;
        ensure!(out.success(), "smbclient to {first}:\n{out}");
        nodes.insert(host_of(&cluster, 0, first)?.context("hosted")?);
    }
    ensure!(nodes.len() >= 2, "every connection landed on {nodes:?}");
    Ok(())
}

/// Given a cluster serving SMB, when the shared `smb.conf` gets an invalid value,
/// then every node's monitor fails and `ctdb scriptstatus` (ours and the stock
/// tool) shows testparm's complaint; every node is UNHEALTHY. When the file is
/// mended, the nodes are healthy again and every address is served.
#[test]
fn a_broken_smb_conf_surfaces_in_scriptstatus() -> anyhow::Result<()> {
    let cluster = samba_cluster("MonitorInterval=1\n")?;
    let good = vm::samba::smb_conf();
    let broken = good.replace("server role = standalone server", "server role = nonsense");
    ensure!(
        good != broken,
        "the test's smb.conf has no server role line"
    );
    cluster.write_smb_conf(&broken)?;
    for pnn in ALL {
        wait_until(CONVERGE_TIMEOUT, || {
            node_has_flag(&cluster, 0, pnn, "UNHEALTHY")
        })
        .with_context(|| format!("node {pnn} should be UNHEALTHY"))?;
    }
    for tool in [Tool::Stock, Tool::Ours] {
        let out = cluster.node(1).ctdb(tool, &["scriptstatus"])?;
        ensure!(
            out.stdout.contains("50.samba")
                && out.stdout.contains("ERROR")
                && out.stdout.contains("Ignoring invalid value 'nonsense'"),
            "{tool:?} ctdb scriptstatus should show testparm's complaint:\n{out}"
        );
    }
    cluster.write_smb_conf(&good)?;
    cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?;
    wait_placed(&cluster, &ALL, &addrs(), &ALL, CONVERGE_TIMEOUT)?;
    Ok(())
}

/// A local monitor script that, once `/run/garbage` exists, prints a megabyte of
/// bytes that are not text (NULs, invalid UTF-8, no newlines) and fails.
const GARBAGE_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
monitor)
    if [ -e /run/garbage ]; then
        head -c 1048576 /dev/urandom
        printf '\000\377\376 end'
        exit 3
    fi
    ;;
esac
exit 0
"#;

/// Given a node with a script that prints a megabyte of binary garbage and exits 3,
/// then the daemon survives and keeps answering, records the failure (ERROR in
/// `ctdb scriptstatus`, the kept output bounded), and the node is UNHEALTHY; once
/// the script behaves, the node is healthy again.
#[test]
fn a_script_printing_garbage_is_recorded_and_the_daemon_survives() -> anyhow::Result<()> {
    let cluster = samba_cluster("MonitorInterval=1\n")?;
    let node = cluster.node(1);
    let script = node.etc_dir().join("events/legacy/97.garbage.script");
    std::fs::write(&script, GARBAGE_SCRIPT)?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    std::fs::write(node.path("/run/garbage"), "")?;
    wait_until(CONVERGE_TIMEOUT, || {
        node_has_flag(&cluster, 0, 1, "UNHEALTHY")
    })
    .context("node 1 should be UNHEALTHY")?;
    let out = node.ctdb(Tool::Ours, &["scriptstatus"])?;
    ensure!(
        out.stdout.contains("97.garbage") && out.stdout.contains("ERROR"),
        "{out}"
    );
    ensure!(
        out.stdout.len() < 200 * 1024,
        "the kept output should be bounded, got {} bytes",
        out.stdout.len()
    );
    let out = node.ctdb(Tool::Stock, &["status"])?;
    ensure!(out.success(), "the daemon should still answer:\n{out}");
    std::fs::remove_file(node.path("/run/garbage"))?;
    wait_until(CONVERGE_TIMEOUT, || match cluster.status(0)?.flags(1) {
        Some("OK") => Ok(()),
        other => Err(format!("node 1 flags {other:?}")),
    })
    .context("node 1 healthy again")?;
    Ok(())
}

/// Given our daemon, when an administrator uses `ctdb event` (run, status, script
/// list, disable, enable) and `scriptstatus`, then the stock 4.17 tool and ours
/// print the same and exit the same; a disabled script stops running.
#[test]
fn event_commands_agree_between_the_stock_tool_and_ours() -> anyhow::Result<()> {
    let cluster = samba_cluster("")?;
    let node = cluster.node(0);
    let same = |args: &[&str]| -> anyhow::Result<vm::Output> {
        let stock = node.ctdb(Tool::Stock, args)?;
        let ours = node.ctdb(Tool::Ours, args)?;
        ensure!(
            stock.stdout == ours.stdout && stock.code == ours.code,
            "ctdb {}: stock and ours differ:\n{stock}\n{ours}",
            args.join(" ")
        );
        Ok(ours)
    };
    let run = same(&["event", "run", "20", "legacy", "monitor"])?;
    ensure!(run.success(), "{run}");
    // Times differ between two runs of status; compare the names and states.
    let status = |tool| -> anyhow::Result<Vec<String>> {
        let out = node.ctdb(tool, &["event", "status", "legacy", "monitor"])?;
        ensure!(out.success(), "{out}");
        Ok(out
            .stdout
            .lines()
            .map(|l| l.chars().take(31).collect())
            .collect())
    };
    let stock = status(Tool::Stock)?;
    ensure!(
        stock == status(Tool::Ours)?,
        "event status differs: {stock:?}"
    );
    ensure!(
        stock
            .iter()
            .any(|l| l.starts_with("50.samba") && l.contains("OK")),
        "{stock:?}"
    );
    let list = same(&["event", "script", "list", "legacy"])?;
    ensure!(list.stdout.contains("* 50.samba"), "{list}");
    same(&["event", "script", "disable", "legacy", "50.samba"])?;
    let list = same(&["event", "script", "list", "legacy"])?;
    ensure!(!list.stdout.contains("* 50.samba"), "{list}");
    let run = same(&["event", "run", "20", "legacy", "monitor"])?;
    ensure!(run.success(), "{run}");
    let out = node.ctdb(Tool::Ours, &["event", "status", "legacy", "monitor"])?;
    ensure!(
        !out.stdout.contains("50.samba"),
        "disabled, so not run:\n{out}"
    );
    same(&["event", "script", "enable", "legacy", "50.samba"])?;
    same(&["event", "status", "legacy", "nosuchevent"])?;
    same(&["event", "run", "20", "nosuchcomponent", "monitor"])?;
    Ok(())
}

/// Given a node whose legacy configuration (`/etc/default/ctdb`) says
/// `CTDB_MANAGES_SAMBA=yes` and whose `50.samba` is installed but not enabled,
/// when ctdbd starts, then it enables `50.samba` (the link CTDB's layout uses),
/// which starts smbd, and the node becomes healthy serving SMB.
#[test]
fn ctdb_manages_samba_enables_the_samba_script() -> anyhow::Result<()> {
    let mut cluster = Cluster::builder()
        .nodes(1)
        .samba(true)
        .client(true)
        .build()?;
    let node = cluster.node(0);
    node.install_event_scripts(&["00.ctdb"])?;
    node.write_config("script.options", "CTDB_SHARED_VOLUME=/srv/shared\n")?;
    // A private /etc/default in the node (a copy of the host's plus ctdb), so the
    // host's files are untouched.
    let setup = "set -e; mkdir /run/etc-default; cp -a /etc/default/. /run/etc-default/; \
                 echo CTDB_MANAGES_SAMBA=yes > /run/etc-default/ctdb; \
                 mount --bind /run/etc-default /etc/default";
    let out = node.run("/bin/sh", &["-c", setup])?;
    ensure!(
        out.success(),
        "preparing /etc/default/ctdb in the node:\n{out}"
    );
    let link = node.etc_dir().join("events/legacy/50.samba.script");
    ensure!(
        link.symlink_metadata().is_err(),
        "50.samba must start disabled"
    );

    cluster.start(Daemon::Ours, START_TIMEOUT)?;
    cluster.wait_agreement(&[0], &[0], START_TIMEOUT)?;
    let target = std::fs::read_link(&link).context("50.samba should be enabled")?;
    ensure!(
        target == std::path::Path::new("/usr/share/ctdb/events/legacy/50.samba.script"),
        "{}",
        target.display()
    );
    let out = cluster.node(0).ctdb(Tool::Stock, &["scriptstatus"])?;
    ensure!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("50.samba") && l.contains("OK")),
        "{out}"
    );
    wait_placed(&cluster, &[0], &[default_public(0)], &[0], CONVERGE_TIMEOUT)?;
    let out = cluster.smbclient(default_public(0), "ls")?;
    ensure!(
        out.success(),
        "smbclient through the node's address:\n{out}"
    );
    Ok(())
}

/// A monitor script that notes each run (one line per monitor) in /run/monitors.
const COUNTING_SCRIPT: &str =
    "#!/bin/sh\n[ \"$1\" = monitor ] && echo run >> /run/monitors\nexit 0\n";

fn monitors_run(node: &vm::Node) -> usize {
    std::fs::read_to_string(node.path("/run/monitors")).map_or(0, |t| t.lines().count())
}

/// Given one daemon at the default `MonitorInterval` (15 s) with a script counting
/// its monitor runs, when `ctdb setvar MonitorInterval 1` is given after a monitor,
/// then three more monitors run within 5 s: the new interval applies without a
/// restart, and the monitor already scheduled 15 s ahead is brought forward (ours
/// only: 4.17 keeps the scheduled one, so this runs our daemon whatever
/// `CTDB_RS_DAEMON` says).
#[test]
fn setvar_monitor_interval_applies_without_a_restart() -> anyhow::Result<()> {
    let daemon = Daemon::Ours;
    let mut cluster = Cluster::builder().nodes(3).present([0]).build()?;
    let node = cluster.node_mut(0);
    let script = node.etc_dir().join("events/legacy/99.count.script");
    std::fs::write(&script, COUNTING_SCRIPT)?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    node.start_daemon(daemon)?;
    node.wait_runstate("RUNNING", START_TIMEOUT)?;
    wait_until(CONVERGE_TIMEOUT, || {
        (monitors_run(node) >= 1)
            .then_some(())
            .ok_or("no monitor ran")
    })
    .context("the first monitor should run")?;
    let before = monitors_run(node);
    let out = node.ctdb(Tool::Ours, &["setvar", "MonitorInterval", "1"])?;
    ensure!(out.success(), "setvar failed:\n{out}");
    wait_until(Duration::from_secs(5), || {
        let now = monitors_run(node);
        (now >= before + 3)
            .then_some(())
            .ok_or(format!("{} monitors since the setvar", now - before))
    })
    .context("MonitorInterval 1 should apply at once")?;
    Ok(())
}
