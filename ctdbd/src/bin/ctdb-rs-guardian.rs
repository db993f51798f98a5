//! `ctdb-rs-guardian [--syslog SOCKET]`: removes this node's public addresses when `ctdbd`
//! dies. Started by `ctdbd` with a pipe on its stdin; see
//! [`ctdbd::daemon::guardian`] for the protocol and the lifetime rules.
//!
//! Reads `identity`/`nodes`/`add`/`del`/`exit` lines from stdin (blocking, so it
//! wakes the moment the pipe closes). At end of file without `exit` the daemon has
//! died: every address it was told about is removed through rtnetlink, each removal
//! is logged; if all of them are gone, every peer of the nodes list is told so
//! (`DAEMON_GONE`, all at once, each within `NOTICE_TIMEOUT`), and it exits. Logs go
//! to stderr (which `ctdbd` points at its own log file, or its terminal), or to
//! the syslog socket SOCKET with `--syslog SOCKET`.
//!
//! After `exit` with no address left (a clean stop), it waits for the daemon to
//! exit and tells the peers the same, so that a clean stop hands the addresses over
//! without the lease wait.
//!
//! Exit status: 0 after `exit` or after cleaning up (whether or not every peer could
//! be told); 1 if an address could not be removed (no peer is told then), or if it
//! could not start (no netlink socket), in which case it never said `ready` and
//! `ctdbd` does not start.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use ctdbd::daemon::guardian::{
    GuardedAddresses, GuardianMessage, NoticeFacts, READY, SYSLOG_OPTION,
};
use ctdbd::daemon::logging::{self, LogTarget};
use ctdbd::netif::netlink::Netlink;
use nix::sys::signal::{SigSet, Signal};
use tracing::{error, info, info_span, warn};

/// CTDB's NOTICE: `info!` lines (what was removed) are shown.
const LOG_LEVEL: u32 = 3;

/// How long one removal may take. The kernel answers in microseconds; the bound
/// only keeps a wedged netlink socket from keeping the guardian forever, and the
/// other addresses still get their turn.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the guardian waits for a cleanly stopping daemon to exit before it tells
/// the peers; a daemon that takes longer still hands over, after its lease.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// How often the guardian looks whether the stopping daemon has exited.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// Waits up to `wait` for the daemon, our parent `daemon`, to exit (and with it its
/// connections to the peers): we are then reparented. The pipe's end of file comes
/// earlier, when the daemon closes it after `exit`, so it cannot tell.
fn daemon_exited(daemon: nix::unistd::Pid, wait: Duration) -> bool {
    let start = std::time::Instant::now();
    while nix::unistd::getppid() == daemon {
        if start.elapsed() >= wait {
            return false;
        }
        std::thread::sleep(EXIT_POLL);
    }
    true
}

/// Why the reading stopped.
enum End {
    /// The daemon said `exit`: it released its addresses itself.
    Exit,
    /// End of file (or a read error) without `exit`: the daemon is gone.
    DaemonGone(Option<std::io::Error>),
}

fn run() -> anyhow::Result<()> {
    // Its life is tied to the pipe, not to signals (module docs of
    // ctdbd::daemon::guardian): SIGTERM to the daemon's whole control group or a
    // hangup must not end it before the daemon has released its addresses. Blocked
    // before any thread exists, so every thread inherits the mask.
    let mut blocked = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        blocked.add(signal);
    }
    blocked
        .thread_block()
        .context("blocking SIGTERM/SIGINT/SIGHUP")?;

    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let target = match args.as_slice() {
        [] => LogTarget::Stderr,
        [option, socket] if option == SYSLOG_OPTION => LogTarget::Syslog(socket.into()),
        other => bail!("usage: ctdb-rs-guardian [{SYSLOG_OPTION} SOCKET] (not {other:?})"),
    };
    // Kept to the end of `run`: writes out the last lines before the exit.
    let (_log, _log_guard) = logging::init(&target, LOG_LEVEL).context("setting up logging")?;
    let daemon = nix::unistd::getppid();
    let span = info_span!("guardian", daemon_pid = daemon.as_raw());
    let _entered = span.enter();

    // The runtime and the netlink socket exist before `ready`: at the daemon's death
    // there is nothing left to set up that could fail or take time.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let netlink = {
        let _runtime = runtime.enter();
        Netlink::start().context("opening rtnetlink")?
    };
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{READY}")
            .and_then(|()| stdout.flush())
            .context("telling ctdbd that the guardian is ready")?;
    }

    let mut held = GuardedAddresses::default();
    let mut facts = NoticeFacts::default();
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    let end = loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => break End::DaemonGone(None),
            Ok(_) if line.last() != Some(&b'\n') => {
                // The daemon died in the middle of a write: a `nodes` line cut short
                // would still parse, naming fewer peers.
                warn!(line = %String::from_utf8_lossy(&line), "ignoring an unfinished last line from ctdbd");
                break End::DaemonGone(None);
            }
            Ok(_) => {}
            Err(e) => break End::DaemonGone(Some(e)),
        }
        let text = String::from_utf8_lossy(&line);
        match GuardianMessage::parse(&text) {
            Ok(GuardianMessage::Exit) => break End::Exit,
            Ok(message) => {
                held.apply(&message);
                facts.apply(&message);
            }
            // The daemon is ours, so this is a bug on its side; whatever it meant,
            // the addresses already listed stay listed.
            Err(e) => warn!(line = %text.trim_end(), error = %e, "ignoring a bad line from ctdbd"),
        }
    };
    let died = matches!(end, End::DaemonGone(_));
    match end {
        End::Exit if held.is_empty() => {
            // A clean stop hands the addresses over at once too: once the daemon
            // has exited (its links to the peers closed), tell them its addresses
            // are gone, so that the leader need not wait for its lease.
            info!("ctdbd stopped cleanly and released every public address");
            if daemon_exited(daemon, EXIT_WAIT) {
                tell_peers(&runtime, &facts);
            } else {
                warn!(
                    wait = ?EXIT_WAIT,
                    "ctdbd did not exit after stopping; the peers are not told"
                );
            }
            return Ok(());
        }
        End::Exit => warn!(
            count = held.len(),
            "ctdbd stopped but still listed public addresses; removing them"
        ),
        End::DaemonGone(None) => error!(
            count = held.len(),
            "ctdbd died; removing its public addresses"
        ),
        End::DaemonGone(Some(e)) => error!(
            count = held.len(),
            error = %e,
            "reading from ctdbd failed; removing its public addresses"
        ),
    }
    let mut failed = 0;
    runtime.block_on(async {
        for (iface, addr, prefix_len) in held.iter() {
            let removal = netlink.remove_address(iface, addr, prefix_len);
            match tokio::time::timeout(REMOVE_TIMEOUT, removal).await {
                Ok(Ok(())) => info!(%addr, prefix_len, %iface, "removed public address"),
                Ok(Err(e)) => {
                    failed += 1;
                    error!(%addr, %iface, error = %e, "cannot remove public address");
                }
                Err(_) => {
                    failed += 1;
                    error!(%addr, %iface, "removing public address timed out");
                }
            }
        }
    });
    if failed > 0 {
        // An address may still be configured: the peers must wait for the lease.
        bail!("{failed} public address(es) could not be removed; not telling the peers");
    }
    if died {
        tell_peers(&runtime, &facts);
    }
    Ok(())
}

/// Tells every peer that the daemon is dead and its addresses are gone, so that the
/// leader need not wait for the lease. Best effort: a peer not told waits instead.
fn tell_peers(runtime: &tokio::runtime::Runtime, facts: &NoticeFacts) {
    let notice = match facts.notice() {
        Ok(notice) => notice,
        Err(e) => {
            warn!(error = %e, "cannot tell the peers that ctdbd is dead");
            return;
        }
    };
    let incarnation = format!("{:016x}", notice.incarnation);
    for (peer, addr, outcome) in runtime.block_on(notice.tell_peers()) {
        match outcome {
            Ok(()) => info!(
                peer,
                %addr,
                %incarnation,
                "told the peer that ctdbd is dead and its public addresses are gone"
            ),
            Err(e) => warn!(peer, %addr, error = %e, "could not tell the peer that ctdbd is dead"),
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logging may not be up (or may be what failed); stderr is all there is.
            let _ = writeln!(std::io::stderr(), "ctdb-rs-guardian: {e:#}");
            ExitCode::FAILURE
        }
    }
}
