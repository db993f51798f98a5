//! Scenario: `ctdbd` as a service runs it — without `--interactive`.
//!
//! Given one node whose `ctdb.conf` says `[logging] location = file:...`,
//! When `ctdbd` is started without `--interactive`,
//! Then the command returns at once (the daemon forked into the background), the
//!   daemon writes its pid file `/run/ctdb/ctdbd.pid`, answers the tool, and logs to
//!   the configured file (nothing to standard error);
//! When it receives SIGTERM,
//! Then it logs why it stops, removes its pid file and socket, and exits.

use std::time::Duration;

use anyhow::{bail, Context as _};
use vm::{wait_until, Cluster, Daemon, Tool};

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
