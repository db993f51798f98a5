//! Scenario: `ctdbd` as a service runs it — without `--interactive`.
//!
//! Given one node whose `ctdb.conf` says `[logging] location = file:...`,
//! When `ctdbd` is started without `--interactive`,
//! Then the command returns at once (the daemon forked into the background), the
//!   daemon writes its pid file `/run/ctdb/ctdbd.pid`, answers the tool, and logs to
//!   the configured file (nothing to standard error);
//! When it receives SIGTERM,
//! Then it logs why it stops, removes its pid file and socket, and exits.
//!
//! Scenario: a syslog that never reads does not stall the daemon.
//!
//! Given two nodes whose `ctdb.conf` says `[logging] location = syslog`, and node
//!   0's syslog socket (a datagram socket the test binds, standing in for
//!   `/dev/log`) already full and never read,
//! When node 0's `ctdbd` starts as a service, is set to log at DEBUG, and is sent
//!   thousands of pings (each logged),
//! Then it answers every ping, both nodes see each other OK, and the socket is
//!   still full; once the test reads the socket, the daemon's lines arrive and it
//!   says how many lines it had to drop.

use std::io::{ErrorKind, Write as _};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use ctdbd::protocol::packet::CURRENT_NODE;
use ctdbd::protocol::{Body, Header, Opcode, Packet, ReqControl};
use vm::observe::parse_status;
use vm::public::{read_packet, SOCKET};
use vm::{wait_until, Cluster, Daemon, Node, Tool};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The forked daemon is not the harness's child: end it by pid if the test stops
/// early, so that no process outlives the test.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

#[test]
fn background_daemon_logs_to_its_file_and_stops_on_sigterm() -> anyhow::Result<()> {
    let conf = "\
[logging]
\tlocation = file:/var/lib/ctdb/log.ctdb
\tlog level = NOTICE
[legacy]
\trealtime scheduling = false
";
    let cluster = Cluster::builder().nodes(1).ctdb_conf(conf).build()?;
    let node = cluster.node(0);
    let log_file = node.var_dir().join("log.ctdb");

    let started = node.run(
        Daemon::Ours.ctdbd_path()?.to_str().context("binary path")?,
        &[],
    )?;
    if !started.success() {
        bail!("ctdbd without --interactive failed:\n{started}");
    }
    assert!(
        started.stderr.is_empty(),
        "the daemon wrote to standard error instead of its log file:\n{started}"
    );

    let pid_file = node.path("/run/ctdb/ctdbd.pid");
    let pid: i32 = wait_until(TIMEOUT, || {
        std::fs::read_to_string(&pid_file)
            .map_err(|e| e.to_string())
            .and_then(|t| t.trim().parse::<i32>().map_err(|e| e.to_string()))
    })
    .context("the pid file never appeared")?;
    let mut guard = KillOnDrop(Some(pid));
    wait_until(TIMEOUT, || match node.ctdb(Tool::Ours, &["runstate"]) {
        Ok(out) if out.stdout.trim() == "RUNNING" => Ok(()),
        Ok(out) => Err(out.to_string()),
        Err(e) => Err(format!("{e:#}")),
    })
    .context("the background daemon never answered RUNNING")?;
    let log = std::fs::read_to_string(&log_file).context("reading the log file")?;
    assert!(
        log.contains("ctdbd ready"),
        "log file lacks the start-up line:\n{log}"
    );

    // The daemon is ours (we started it in the test's own namespace): end it by pid.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    wait_until(TIMEOUT, || {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            Err("still running")
        } else {
            Ok(())
        }
    })
    .context("ctdbd did not exit after SIGTERM")?;
    guard.0 = None;
    assert!(!pid_file.exists(), "pid file left behind");
    assert!(
        !node.path("/run/ctdb/ctdbd.socket").exists(),
        "socket left behind"
    );
    let log = std::fs::read_to_string(&log_file)?;
    assert!(log.contains("SIGTERM received, shutting down"), "{log}");
    assert!(log.contains("ctdbd stopped"), "{log}");
    Ok(())
}

/// Starts `ctdbd` without `--interactive` in `node` with `env` added, and returns
/// its pid (from the pid file) once it answers RUNNING.
fn start_service(node: &Node, env: &[(&str, &str)]) -> anyhow::Result<KillOnDrop> {
    let mut cmd = node.command(Daemon::Ours.ctdbd_path()?);
    cmd.current_dir("/").envs(env.iter().copied());
    let started = vm::process::run(cmd, TIMEOUT)?;
    if !started.success() {
        bail!("ctdbd without --interactive failed:\n{started}");
    }
    let pid_file = node.path("/run/ctdb/ctdbd.pid");
    let pid: i32 = wait_until(TIMEOUT, || {
        std::fs::read_to_string(&pid_file)
            .map_err(|e| e.to_string())
            .and_then(|t| t.trim().parse::<i32>().map_err(|e| e.to_string()))
    })
    .context("the pid file never appeared")?;
    let guard = KillOnDrop(Some(pid));
    wait_until(TIMEOUT, || match node.ctdb(Tool::Ours, &["runstate"]) {
        Ok(out) if out.stdout.trim() == "RUNNING" => Ok(()),
        Ok(out) => Err(out.to_string()),
        Err(e) => Err(format!("{e:#}")),
    })
    .context("the daemon never answered RUNNING (is it stuck writing a log line?)")?;
    Ok(guard)
}

/// Sends datagrams until the socket's queue is full; fails if it never fills.
fn fill(socket: &std::path::Path) -> anyhow::Result<usize> {
    let filler = UnixDatagram::unbound()?;
    filler.connect(socket)?;
    filler.set_nonblocking(true)?;
    let mut sent = 0;
    loop {
        match filler.send(b"<30>filler: fills the queue") {
            Ok(_) => sent += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(sent),
            Err(e) => return Err(e).context("filling the syslog socket"),
        }
        ensure!(sent < 1_000_000, "the syslog socket never filled");
    }
}

#[test]
fn a_syslog_socket_that_never_reads_does_not_stall_the_daemon() -> anyhow::Result<()> {
    const PINGS: u32 = 5000;
    let conf = "\
[logging]
\tlocation = syslog
\tlog level = NOTICE
[legacy]
\trealtime scheduling = false
";
    let mut cluster = Cluster::builder().nodes(2).ctdb_conf(conf).build()?;
    // Bound on the host in node 0's /var/lib/ctdb, where the daemon finds it.
    let socket = cluster.node(0).var_dir().join("syslog.sock");
    let reader = UnixDatagram::bind(&socket).context("binding the syslog stand-in")?;
    let filled = fill(&socket)?;

    let mut daemon = start_service(
        cluster.node(0),
        &[("CTDB_RS_SYSLOG_SOCKET", "/var/lib/ctdb/syslog.sock")],
    )?;
    cluster.start_nodes(&[1], Daemon::Ours, TIMEOUT)?;
    let set = cluster.node(0).ctdb(Tool::Ours, &["setdebug", "DEBUG"])?;
    ensure!(set.success(), "setdebug DEBUG failed:\n{set}");

    // Each ping is logged (the core's input at DEBUG): far more lines than the
    // logging queue holds, all while the socket stays full.
    let mut client = UnixStream::connect(cluster.node(0).path(SOCKET))?;
    client.set_read_timeout(Some(Duration::from_millis(100)))?;
    for reqid in 1..=PINGS {
        let ping = Packet {
            header: Header {
                generation: 0,
                destnode: CURRENT_NODE,
                srcnode: 0,
                reqid,
            },
            body: Body::ReqControl(ReqControl {
                opcode: Opcode::PING.0,
                srvid: 0,
                client_id: 0,
                flags: 0,
                data: Vec::new(),
            }),
        };
        client.write_all(&ping.encode())?;
        match read_packet(&mut client, Duration::from_secs(10))
            .with_context(|| format!("ping {reqid} of {PINGS}"))?
            .body
        {
            Body::ReplyControl(r) if r.status >= 0 => {}
            other => bail!("ping {reqid} answered {other:?}"),
        }
    }
    drop(client);

    for on in [0, 1] {
        wait_until(TIMEOUT, || {
            let out = cluster
                .node(on)
                .ctdb(Tool::Ours, &["status"])
                .map_err(|e| format!("{e:#}"))?;
            let status = parse_status(&out.stdout)?;
            if status.all_ok(&[0, 1]) {
                Ok(())
            } else {
                Err(out.to_string())
            }
        })
        .with_context(|| format!("node {on} does not see both nodes OK"))?;
    }
    ensure!(
        fill(&socket)? == 0,
        "the syslog socket was read or emptied during the test"
    );

    // Now read: the filler first, then the daemon's lines and its report of the loss.
    reader.set_read_timeout(Some(TIMEOUT))?;
    let mut buf = vec![0u8; 65536];
    let mut datagrams = 0;
    let report = loop {
        let n = reader
            .recv(&mut buf)
            .with_context(|| format!("no report of lost lines after {datagrams} datagrams"))?;
        datagrams += 1;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.contains("ctdbd[") && text.contains("log lines lost") {
            break text;
        }
    };
    ensure!(
        datagrams > filled,
        "the report came before the filler: {report}"
    );

    let pid = daemon.0.context("daemon pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    wait_until(TIMEOUT, || {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            Err("still running")
        } else {
            Ok(())
        }
    })
    .context("ctdbd did not exit after SIGTERM")?;
    daemon.0 = None;
    Ok(())
}
