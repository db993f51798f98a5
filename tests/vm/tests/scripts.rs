//! The event scripts of `events.d`, run by hand inside node sandboxes with the
//! environment the daemon's event runner gives them. No script is enabled, so where
//! a `ctdbd` runs, it runs none of them: the Samba tests start ours, because smbd
//! and winbindd with `clustering = yes` (the harness's `smb.conf`, as every Samba
//! in the project) need a daemon to answer; the others run without one.
//!
//! ```text
//!   client 10.0.20.200 ── pub bridge ── pub0 10.0.20.101 :node 0 (ctdbd puts it there)
//!                                       /srv/shared = shared volume (smb.conf, share/)
//! ```
//!
//! Given a node whose sandbox can run Samba (private state, `smb.conf` and the
//! share on the shared volume) with the scripts installed as CTDB lays them out,
//! When a test runs an event of a script (`50.samba startup`, `monitor`, ...),
//! Then the script does its job and its exit status and first output line say
//!   whether the service is healthy and, if not, what is wrong.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vm::public::{ctdb_ip, wait_placed};
use vm::samba::{smb_conf, SHARE_PATH};
use vm::sandbox::TempDir;
use vm::scripts::{script_names, EVENTS};
use vm::{wait_until, Cluster, Daemon, Node, Output};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Node 0's public address (the harness's default), which its daemon puts on
/// `pub0`.
const PUBLIC_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 20, 101);

/// A one-node cluster with Samba prepared (`clustering = yes`), a client, and the
/// scripts installed but none enabled; no daemon runs.
fn samba_node() -> anyhow::Result<Cluster> {
    let cluster = Cluster::builder().samba(true).client(true).build()?;
    cluster.node(0).install_event_scripts(&[])?;
    Ok(cluster)
}

/// [`samba_node`] with our ctdbd RUNNING on it, the one a clustered smbd talks
/// to (the harness has registered the test user through it), and holding
/// [`PUBLIC_IP`] on `pub0`. It runs no script: the test does, by hand.
fn samba_cluster() -> anyhow::Result<Cluster> {
    let mut cluster = samba_node()?;
    cluster.start(Daemon::Ours, TIMEOUT)?;
    wait_placed(&cluster, &[0], &[PUBLIC_IP], &[0], TIMEOUT)?;
    Ok(cluster)
}

/// Runs `script event args` in `node` and requires exit status 0.
fn event_ok(
    node: &Node,
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Output> {
    let out = node.run_event_script(script, args, env)?;
    ensure!(
        out.success(),
        "{script} {} should succeed:\n{out}",
        args.join(" ")
    );
    Ok(out)
}

/// Runs `script event args` in `node`, requires a failure whose first line of
/// output contains `first_line`, and returns the output.
fn event_fails(
    node: &Node,
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    first_line: &str,
) -> anyhow::Result<Output> {
    let out = node.run_event_script(script, args, env)?;
    check_failure(&out, first_line).map_err(anyhow::Error::msg)?;
    Ok(out)
}

/// Whether `out` is a failure whose first output line contains `first_line`.
fn check_failure(out: &Output, first_line: &str) -> Result<(), String> {
    let line = out.stdout.lines().next().unwrap_or_default();
    if !out.success() && out.code.is_some() && line.contains(first_line) {
        Ok(())
    } else {
        Err(format!(
            "expected a failure saying {first_line:?} first:\n{out}"
        ))
    }
}

/// Reads the PID in a node's pid file.
fn pid_in(node: &Node, pidfile: &str) -> anyhow::Result<i32> {
    let path = node.path(pidfile);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{pidfile} holds no pid: {text:?}"))
}

/// Whether `pid` is gone (no process, or only a zombie waiting for its reaper).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|s| s.trim_start().starts_with('Z')),
    }
}

/// Kills `pid` with SIGKILL and waits until it is gone.
fn kill_and_wait(pid: i32) -> anyhow::Result<()> {
    kill(Pid::from_raw(pid), Signal::SIGKILL).with_context(|| format!("killing pid {pid}"))?;
    wait_until(TIMEOUT, || if gone(pid) { Ok(()) } else { Err(pid) })
        .map_err(|t| anyhow::anyhow!("pid {pid} survived SIGKILL: {t}"))
}

/// Polls `script monitor` until it fails saying `first_line`.
fn wait_monitor_fails(
    node: &Node,
    script: &str,
    env: &[(&str, &str)],
    first_line: &str,
) -> anyhow::Result<Output> {
    wait_until(TIMEOUT, || {
        let out = node
            .run_event_script(script, &["monitor"], env)
            .map_err(|e| format!("{e:#}"))?;
        check_failure(&out, first_line).map(|()| out)
    })
    .map_err(|t| anyhow::anyhow!("{script} monitor never failed as expected: {t}"))
}

/// Given smbd started by `50.samba startup`,
/// Then `monitor` passes and a client can store and fetch a file over SMB;
/// When smbd is killed, `monitor` fails saying smbd is not running;
/// When `startup` runs again (over the stale pid file), smbd serves again;
/// When `shutdown` runs, smbd is gone and `monitor` fails.
#[test]
fn samba_startup_serves_files_and_monitor_follows_smbd() -> anyhow::Result<()> {
    let cluster = samba_cluster()?;
    let node = cluster.node(0);
    event_ok(node, "50.samba", &["startup"], &[])?;
    event_ok(node, "50.samba", &["monitor"], &[])?;

    let local = TempDir::new("smbclient")?;
    let sent = local.path().join("sent.txt");
    std::fs::write(&sent, "stored through smbd on node 0\n")?;
    let put = cluster.smbclient(PUBLIC_IP, &format!("put {} hello.txt", sent.display()))?;
    ensure!(put.success(), "smbclient put:\n{put}");
    let stored = cluster.shared_path(&format!("{}/hello.txt", share_dir()))?;
    assert_eq!(
        std::fs::read_to_string(&stored)?,
        "stored through smbd on node 0\n"
    );
    let fetched = local.path().join("fetched.txt");
    let get = cluster.smbclient(PUBLIC_IP, &format!("get hello.txt {}", fetched.display()))?;
    ensure!(get.success(), "smbclient get:\n{get}");
    assert_eq!(
        std::fs::read_to_string(&fetched)?,
        "stored through smbd on node 0\n"
    );

    let pid = pid_in(node, "/run/samba/smbd.pid")?;
    kill_and_wait(pid)?;
    let out = wait_monitor_fails(node, "50.samba", &[], "smbd is not running")?;
    assert!(
        out.stdout.contains("/run/samba/smbd.pid"),
        "the failure names the pid file:\n{out}"
    );

    event_ok(node, "50.samba", &["startup"], &[])?;
    event_ok(node, "50.samba", &["monitor"], &[])?;
    let pid = pid_in(node, "/run/samba/smbd.pid")?;
    let list = cluster.smbclient(PUBLIC_IP, "ls")?;
    ensure!(
        list.success() && list.stdout.contains("hello.txt"),
        "smbclient ls after the restart:\n{list}"
    );

    event_ok(node, "50.samba", &["shutdown"], &[])?;
    assert!(gone(pid), "smbd (pid {pid}) still runs after shutdown");
    event_fails(node, "50.samba", &["monitor"], &[], "smbd is not running")?;
    // A second shutdown finds nothing to stop, which is fine.
    event_ok(node, "50.samba", &["shutdown"], &[])?;
    Ok(())
}

/// Given two nodes, each with its own daemon and its own smbd (clustered, one
/// `smb.conf` on the shared volume) started by `50.samba startup`, each holding a
/// public address, and the test user registered through node 0 only,
/// When a client stores a file through node 1's address,
/// Then it reads the same file back through node 0's: one share, one user
/// database, two servers.
#[test]
fn samba_on_two_nodes_serves_one_share() -> anyhow::Result<()> {
    let mut cluster = Cluster::builder()
        .nodes(2)
        .samba(true)
        .client(true)
        .build()?;
    for pnn in 0..2 {
        cluster.node(pnn).install_event_scripts(&[])?;
    }
    cluster.start(Daemon::Ours, TIMEOUT)?;
    ensure!(
        cluster.samba_user_node() == Some(0),
        "the test user should be registered through node 0, not {:?}",
        cluster.samba_user_node()
    );
    // An address of each node, from one view (addresses may still move while
    // the second node joins).
    let addrs = wait_until(TIMEOUT, || {
        let ips = ctdb_ip(&cluster, 0)?;
        let held_by = |pnn| ips.iter().find(|(_, h)| **h == Some(pnn)).map(|(a, _)| *a);
        match (held_by(0), held_by(1)) {
            (Some(a), Some(b)) => Ok([a, b]),
            _ => Err(format!("ctdb ip: {ips:?}")),
        }
    })
    .map_err(|t| anyhow::anyhow!("each node should hold a public address: {t}"))?;
    for pnn in 0..2 {
        event_ok(cluster.node(pnn), "50.samba", &["startup"], &[])?;
    }
    let pids = [
        pid_in(cluster.node(0), "/run/samba/smbd.pid")?,
        pid_in(cluster.node(1), "/run/samba/smbd.pid")?,
    ];
    assert_ne!(pids[0], pids[1], "each node runs its own smbd");

    let local = TempDir::new("smbclient")?;
    let sent = local.path().join("sent.txt");
    std::fs::write(&sent, "one share, two servers\n")?;
    let put = cluster.smbclient(addrs[1], &format!("put {} both.txt", sent.display()))?;
    ensure!(
        put.success(),
        "smbclient put through node 1 ({}):\n{put}",
        addrs[1]
    );
    let fetched = local.path().join("fetched.txt");
    let get = cluster.smbclient(addrs[0], &format!("get both.txt {}", fetched.display()))?;
    ensure!(
        get.success(),
        "smbclient get through node 0 ({}):\n{get}",
        addrs[0]
    );
    assert_eq!(
        std::fs::read_to_string(&fetched)?,
        "one share, two servers\n"
    );

    for pnn in 0..2 {
        event_ok(cluster.node(pnn), "50.samba", &["shutdown"], &[])?;
    }
    Ok(())
}

/// Whether `out` holds a shell's complaint about a file it could not open (the
/// flood of one line per poll that a redirection error used to print).
fn has_open_complaint(out: &Output) -> bool {
    out.stdout.contains("cannot open") || out.stderr.contains("cannot open")
}

/// Given a start command that writes its PID file and exits (an smbd that dies
/// while starting),
/// When `50.samba startup` runs,
/// Then it fails saying smbd exited and naming the PID file, in one line with
/// no line per poll about the dead process's `/proc` entry.
#[test]
fn samba_startup_reports_an_smbd_that_died_quietly() -> anyhow::Result<()> {
    let cluster = samba_cluster()?;
    let node = cluster.node(0);
    let dying = r#"sh -c 'echo $$ >/run/samba/smbd.pid'"#;
    let out = event_fails(
        node,
        "50.samba",
        &["startup"],
        &[("CTDB_SAMBA_SMBD", dying)],
        "smbd exited while starting",
    )?;
    ensure!(
        out.stdout.contains("/run/samba/smbd.pid") && out.stdout.lines().count() == 1,
        "one line naming the PID file expected:\n{out}"
    );
    ensure!(
        !has_open_complaint(&out),
        "startup printed shell noise:\n{out}"
    );
    let out = event_fails(node, "50.samba", &["monitor"], &[], "smbd is not running")?;
    ensure!(
        !has_open_complaint(&out),
        "monitor printed shell noise:\n{out}"
    );
    Ok(())
}

/// Given `clustering = yes` in smb.conf and no ctdbd on the node,
/// When `50.samba startup` (or `49.winbind startup`) runs,
/// Then it fails naming the ctdbd socket Samba would use, and starts nothing
/// (smbd would exit at once, saying why only in its log).
#[test]
fn clustered_samba_startup_needs_a_ctdbd_that_answers() -> anyhow::Result<()> {
    let cluster = samba_node()?;
    ensure!(
        smb_conf().contains("\tclustering = yes\n"),
        "the harness's smb.conf should be clustered:\n{}",
        smb_conf()
    );
    let node = cluster.node(0);
    let quick = [("CTDB_SAMBA_START_TIMEOUT", "1")];
    let out = event_fails(
        node,
        "50.samba",
        &["startup"],
        &quick,
        "clustering = yes, but no ctdbd answers on /run/ctdb/ctdbd.socket",
    )?;
    ensure!(
        !node.path("/run/samba/smbd.pid").exists(),
        "smbd was started without a ctdbd:\n{out}"
    );
    ensure!(
        vm::sandbox::which("winbindd").is_some(),
        "winbindd is missing (apt-get install winbind)"
    );
    event_fails(
        node,
        "49.winbind",
        &["startup"],
        &quick,
        "clustering = yes, but no ctdbd answers on /run/ctdb/ctdbd.socket",
    )?;
    ensure!(
        !node.path("/run/samba/winbindd.pid").exists(),
        "winbindd was started without a ctdbd"
    );
    Ok(())
}

/// The share's directory relative to the shared volume.
fn share_dir() -> &'static str {
    Path::new(SHARE_PATH)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("SHARE_PATH ends in a name")
}

/// Given smbd running,
/// When `smb.conf` (on the shared volume) gets an invalid value, `monitor` fails
///   saying so, with testparm's complaint in the output; restored, it passes;
/// When the share's directory disappears, `monitor` fails naming the share,
///   unless `CTDB_SAMBA_SKIP_SHARE_CHECK=yes` (read from `50.samba.options`);
/// When a port smbd does not serve is to be checked, `monitor` fails naming it.
#[test]
fn samba_monitor_reports_a_broken_smb_conf_and_a_missing_share() -> anyhow::Result<()> {
    let cluster = samba_cluster()?;
    let node = cluster.node(0);
    event_ok(node, "50.samba", &["startup"], &[])?;

    let good = smb_conf();
    let broken = good.replace("server role = standalone server", "server role = nonsense");
    assert_ne!(good, broken);
    cluster.write_smb_conf(&broken)?;
    let out = event_fails(node, "50.samba", &["monitor"], &[], "smb.conf is invalid")?;
    assert!(
        out.stdout
            .contains("Ignoring invalid value 'nonsense' for parameter 'server role'"),
        "testparm's complaint is shown:\n{out}"
    );
    cluster.write_smb_conf(&good)?;
    event_ok(node, "50.samba", &["monitor"], &[])?;

    let share = cluster.shared_path(share_dir())?;
    let moved = cluster.shared_path("share.moved")?;
    std::fs::rename(&share, &moved)?;
    event_fails(
        node,
        "50.samba",
        &["monitor"],
        &[],
        &format!("share [share]: its path {SHARE_PATH} is not a directory"),
    )?;
    node.write_config(
        "events/legacy/50.samba.options",
        "CTDB_SAMBA_SKIP_SHARE_CHECK=yes\n",
    )?;
    event_ok(node, "50.samba", &["monitor"], &[])?;
    std::fs::rename(&moved, &share)?;

    // Ports to check can be given instead of smb.conf's `smb ports`.
    event_fails(
        node,
        "50.samba",
        &["monitor"],
        &[("CTDB_SAMBA_CHECK_PORTS", "445 4455")],
        "smbd is not listening on TCP port 4455",
    )?;

    event_ok(node, "50.samba", &["shutdown"], &[])?;
    Ok(())
}

/// Given winbindd started by `49.winbind startup`, `monitor` passes (`wbinfo -p`);
/// When winbindd is killed, `monitor` fails saying it is not running;
/// `shutdown` stops a restarted winbindd.
#[test]
fn winbind_startup_monitor_and_shutdown() -> anyhow::Result<()> {
    for program in ["winbindd", "wbinfo"] {
        ensure!(
            vm::sandbox::which(program).is_some(),
            "{program} is missing (apt-get install winbind)"
        );
    }
    let cluster = samba_cluster()?;
    let node = cluster.node(0);
    event_ok(node, "49.winbind", &["startup"], &[])?;
    event_ok(node, "49.winbind", &["monitor"], &[])?;

    let pid = pid_in(node, "/run/samba/winbindd.pid")?;
    kill_and_wait(pid)?;
    wait_monitor_fails(node, "49.winbind", &[], "winbindd is not running")?;

    event_ok(node, "49.winbind", &["startup"], &[])?;
    let pid = pid_in(node, "/run/samba/winbindd.pid")?;
    event_ok(node, "49.winbind", &["shutdown"], &[])?;
    assert!(gone(pid), "winbindd (pid {pid}) still runs after shutdown");
    event_fails(
        node,
        "49.winbind",
        &["monitor"],
        &[],
        "winbindd is not running",
    )?;
    Ok(())
}

/// `00.ctdb` with `CTDB_SHARED_VOLUME`: `monitor` passes while the volume is there
/// (and, with `CTDB_SHARED_VOLUME_MOUNTPOINT=yes`, mounted), fails naming it when
/// it is missing or only a plain directory; `init` never fails because of it.
#[test]
fn ctdb_monitor_checks_the_shared_volume() -> anyhow::Result<()> {
    let cluster = Cluster::builder().shared_volume(true).build()?;
    let node = cluster.node(0);
    node.install_event_scripts(&["00.ctdb"])?;

    event_ok(node, "00.ctdb", &["init"], &[])?;
    event_ok(node, "00.ctdb", &["monitor"], &[])?;
    node.write_config(
        "script.options",
        "CTDB_SHARED_VOLUME=/srv/shared\nCTDB_SHARED_VOLUME_MOUNTPOINT=yes\n",
    )?;
    event_ok(node, "00.ctdb", &["monitor"], &[])?;

    // Options come from script.options, as the daemon passes them; the file's
    // values win over the environment's, so each case rewrites it.
    let options = |volume: &str, mountpoint: &str| {
        node.write_config(
            "script.options",
            &format!("CTDB_SHARED_VOLUME={volume}\nCTDB_SHARED_VOLUME_MOUNTPOINT={mountpoint}\n"),
        )
    };
    let host_volume = cluster.shared_path("volume")?;
    std::fs::create_dir(&host_volume)?;
    options("/srv/shared/volume", "yes")?;
    event_fails(
        node,
        "00.ctdb",
        &["monitor"],
        &[],
        "shared volume /srv/shared/volume is not mounted",
    )?;
    options("/srv/shared/volume", "no")?;
    event_ok(node, "00.ctdb", &["monitor"], &[])?;

    std::fs::remove_dir(&host_volume)?;
    event_fails(
        node,
        "00.ctdb",
        &["monitor"],
        &[],
        "shared volume /srv/shared/volume is not available: No such file or directory",
    )?;
    let out = event_ok(node, "00.ctdb", &["init"], &[])?;
    assert!(
        out.stdout
            .contains("WARNING: shared volume /srv/shared/volume"),
        "init warns about the missing volume:\n{out}"
    );
    Ok(())
}

/// `01.reclock`: `monitor` passes while the cluster lock's directory is reachable
/// (and for a `!helper` lock), and fails naming it when it is not.
#[test]
fn reclock_monitor_checks_the_lock_directory() -> anyhow::Result<()> {
    let cluster = Cluster::builder().shared_volume(true).build()?;
    let node = cluster.node(0);
    node.install_event_scripts(&["01.reclock"])?;
    event_ok(node, "01.reclock", &["monitor"], &[])?;

    node.write_config("ctdb.conf", "[cluster]\n\tcluster lock = /srv/gone/lock\n")?;
    event_fails(
        node,
        "01.reclock",
        &["monitor"],
        &[],
        "cluster lock directory /srv/gone (of /srv/gone/lock) is not reachable",
    )?;
    node.write_config("ctdb.conf", "[Cluster]\n  Recovery   Lock=/srv/gone/lock\n")?;
    event_fails(
        node,
        "01.reclock",
        &["monitor"],
        &[],
        "cluster lock directory /srv/gone",
    )?;
    node.write_config(
        "ctdb.conf",
        "[cluster]\n\trecovery lock = /srv/gone/lock\n\tcluster lock = !/usr/bin/true /srv/gone/lock\n",
    )?;
    event_ok(node, "01.reclock", &["monitor"], &[])?;
    node.write_config("ctdb.conf", "[logging]\n\tlog level = NOTICE\n")?;
    event_ok(node, "01.reclock", &["monitor"], &[])?;
    Ok(())
}

/// `10.interface`: `monitor` passes while every public interface is up with a
/// link, and fails naming the interface when it is down, has no carrier or does
/// not exist; `CTDB_PARTIALLY_ONLINE_INTERFACES=yes` tolerates some down.
/// `takeip` only reports: the address is the daemon's to add.
#[test]
fn interface_monitor_checks_public_interfaces() -> anyhow::Result<()> {
    let cluster = Cluster::builder().build()?;
    let node = cluster.node(0);
    node.install_event_scripts(&["10.interface"])?;
    event_ok(node, "10.interface", &["monitor"], &[])?;

    node.run("ip", &["link", "set", "pub0", "down"])?;
    event_fails(
        node,
        "10.interface",
        &["monitor"],
        &[],
        "public interface pub0 is down",
    )?;
    node.run("ip", &["link", "set", "pub0", "up"])?;
    // The veth's carrier comes back asynchronously.
    wait_until(TIMEOUT, || {
        let out = node
            .run_event_script("10.interface", &["monitor"], &[])
            .map_err(|e| format!("{e:#}"))?;
        if out.success() {
            Ok(())
        } else {
            Err(out.to_string())
        }
    })
    .map_err(|t| anyhow::anyhow!("monitor did not pass with pub0 up again: {t}"))?;

    // The switch side of the cable goes down: the node's pub0 loses carrier.
    cluster.fabric().ip(&["link", "set", "n0pub", "down"])?;
    wait_monitor_fails(
        node,
        "10.interface",
        &[],
        "public interface pub0 has no link",
    )?;

    node.write_config(
        "public_addresses",
        "10.0.20.101/24 pub0\n# a comment\n192.168.30.1/24 priv0,pub0\n",
    )?;
    event_fails(
        node,
        "10.interface",
        &["monitor"],
        &[],
        "public interface pub0 has no link",
    )?;
    let partial = [("CTDB_PARTIALLY_ONLINE_INTERFACES", "yes")];
    let out = event_ok(node, "10.interface", &["monitor"], &partial)?;
    assert!(
        out.stdout.contains("pub0 has no link"),
        "the down interface is still reported:\n{out}"
    );
    cluster.fabric().ip(&["link", "set", "n0pub", "up"])?;

    node.write_config("public_addresses", "10.0.20.101/24 nosuch0\n")?;
    event_fails(
        node,
        "10.interface",
        &["monitor"],
        &[],
        "public interface nosuch0 does not exist",
    )?;

    event_ok(
        node,
        "10.interface",
        &["takeip", "pub0", "10.0.20.101", "24"],
        &[],
    )?;
    let addrs = node.run("ip", &["-o", "addr", "show", "dev", "pub0"])?;
    ensure!(
        !addrs.stdout.contains("10.0.20.101"),
        "takeip must not add the address itself:\n{addrs}"
    );
    event_fails(
        node,
        "10.interface",
        &["takeip", "pub0"],
        &[],
        "needs the arguments",
    )?;
    Ok(())
}

/// `41.httpd` with a configured server command: `startup` waits until it listens,
/// `monitor` passes, and after `shutdown` fails naming the port.
#[test]
fn httpd_runs_the_configured_server() -> anyhow::Result<()> {
    let cluster = Cluster::builder().build()?;
    let node = cluster.node(0);
    node.install_event_scripts(&["41.httpd"])?;
    let server = env!("CARGO_BIN_EXE_ctdbrs-serve-name");
    node.write_config(
        "events/legacy/41.httpd.options",
        &format!(
            "CTDB_HTTPD_START='{server} web 8080 >/dev/null 2>&1 & echo $! >/run/ctdbrs-web.pid'\n\
             CTDB_HTTPD_STOP='kill $(cat /run/ctdbrs-web.pid)'\n\
             CTDB_HTTPD_PORTS=8080\n"
        ),
    )?;
    event_ok(node, "41.httpd", &["startup"], &[])?;
    event_ok(node, "41.httpd", &["monitor"], &[])?;
    event_ok(node, "41.httpd", &["shutdown"], &[])?;
    wait_monitor_fails(
        node,
        "41.httpd",
        &[],
        "httpd is not listening on TCP port 8080",
    )?;
    Ok(())
}

/// Every script exits 0, printing nothing alarming, for an event it does not know
/// and for each daemon event it does not handle.
#[test]
fn every_script_ignores_unknown_and_unhandled_events() -> anyhow::Result<()> {
    // The events each script acts on; the others must be no-ops. Scripts not
    // listed (written elsewhere) are held to the unknown event only.
    let handled: &[(&str, &[&str])] = &[
        ("00.ctdb", &["init", "monitor"]),
        ("01.reclock", &["monitor"]),
        (
            "10.interface",
            &["monitor", "takeip", "releaseip", "updateip"],
        ),
        ("41.httpd", &["startup", "shutdown", "monitor"]),
        ("49.winbind", &["startup", "shutdown", "monitor"]),
        ("50.samba", &["startup", "shutdown", "monitor"]),
    ];
    let cluster = samba_node()?;
    let node = cluster.node(0);
    let names = script_names()?;
    for (name, _) in handled {
        ensure!(
            names.iter().any(|n| n == name),
            "events.d has no {name}.script"
        );
    }
    let mut failures = Vec::new();
    for name in &names {
        let acts_on = handled
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, events)| *events);
        let mut events: Vec<&str> = vec!["frobnicate"];
        if let Some(acts_on) = acts_on {
            events.extend(EVENTS.iter().filter(|e| !acts_on.contains(e)));
        }
        for event in events {
            let mut args = vec![event];
            args.extend(event_arguments(event));
            let out = node.run_event_script(name, &args, &[])?;
            if !out.success() {
                failures.push(out.to_string());
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "scripts failed events they should ignore:\n{}",
            failures.join("\n")
        );
    }
    Ok(())
}

/// The arguments the daemon passes with `event`.
fn event_arguments(event: &str) -> &'static [&'static str] {
    match event {
        "takeip" | "releaseip" => &["pub0", "10.0.20.101", "24"],
        "updateip" => &["pub0", "pub0", "10.0.20.101", "24"],
        _ => &[],
    }
}

/// The example `etc/smb.conf` of the README's layout is one Samba accepts without
/// a complaint.
#[test]
fn the_example_smb_conf_passes_testparm() -> anyhow::Result<()> {
    let path = vm::daemon::workspace_root().join("etc/smb.conf");
    let out = std::process::Command::new("testparm")
        .args(["-s", "--suppress-prompt"])
        .arg(&path)
        .output()
        .context("running testparm")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && !stderr.contains("Ignoring") && !stderr.contains("Unknown"),
        "testparm {}:\n{stderr}",
        path.display()
    );
    Ok(())
}
