//! `ctdb-rs-reclock-helper FILE [RECHECK_MS] [--no-fence] [--mount DIR]`: ctdb-rs's
//! cluster mutex helper for a `cluster lock` file.
//!
//! It speaks CTDB's cluster mutex helper protocol (ctdb(7) CLUSTER LOCK and CTDB's
//! `doc/cluster_mutex_helper.txt`), so `ctdbd` runs it exactly as it would run any
//! `!helper`: it tries once to take an fcntl lock on FILE and writes one status
//! character to stdout:
//!
//! - `0`: the lock is taken and held for as long as this process lives;
//! - `1`: another process holds it (contention), then exit;
//! - `3`: an unexpected error (explained on stderr), then exit.
//!
//! (`2`, "took too long", is never sent: the lock is only tried, never waited for.)
//!
//! With `--mount DIR` it first checks that FILE is on the file system mounted at DIR
//! (`/proc/self/mountinfo`) and answers `3` otherwise: the daemon passes the mount
//! that held the lock file when it started, so that a node whose volume is not
//! mounted cannot create, and lock, a lock file of its own in the bare mount point.
//!
//! After `0` it waits, and every RECHECK_MS (default 250 ms) checks that:
//! - FILE still names the file it locked (same device and inode); a removed or
//!   replaced lock file means another node can take "the" lock, so ours is worthless;
//! - its original parent (the daemon) still exists.
//!
//! On either failure it says why on stderr and exits, and the fcntl lock goes with the
//! process.
//!
//! A hung volume does not make the check fail: it makes it block, forever. So the
//! check of the lock file runs on a thread of its own and must answer within
//! a deadline (45 s; 120 s on GlusterFS: [`check_deadline`]); if it does not, the helper says that the volume did not
//! answer, points its stdout and stderr at `/dev/null` (a thread blocked in the
//! kernel can keep the process, and so its descriptors, alive after exit; the
//! daemon must see EOF all the same) and exits. The daemon then reports the lock
//! Lost and the leader steps down. The lock file itself is left open: closing it
//! would be one more request to the hung volume. On GlusterFS the lock would still be
//! held on the bricks by this node's hung FUSE client, so that no node could take it;
//! the helper therefore first kills that client (the fence, `lockvol::fence`), unless
//! started with `--no-fence`. SIGTERM (or SIGINT) is a release: exit 0. The exit code
//! means nothing to the daemon; stdout EOF is what tells it the lock is gone.
//!
//! CTDB's own `ctdb_mutex_fcntl_helper` rechecks every 5 s; we default to 250 ms
//! because a leader must step down as soon as its lock is lost (DESIGN.md "Safety").
//! It also sets `PR_SET_PDEATHSIG` so that it dies with the daemon at once rather than
//! at the next parent check.
//!
//! Plain blocking code: one process, one lock, nothing to multiplex beyond a signalfd
//! and a timeout.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use lockvol::deadline::{DeadlineCheck, DeadlineError};
use lockvol::fence;
use lockvol::mounts::Mount;
use lockvol::FcntlLock;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{getppid, Pid};

/// The program name used on stderr, so the daemon's log says who is talking.
const NAME: &str = "ctdb-rs-reclock-helper";

/// How often the lock file and the parent are checked unless RECHECK_MS says otherwise.
const DEFAULT_RECHECK: Duration = Duration::from_millis(250);

/// How long one check of the lock file may take before the volume counts as hung and
/// the lock is given up, on a volume of which we know no longer stall. Longer than
/// the stall of a healthy volume while it notices that a server died (for
/// GlusterFS's own `network.ping-timeout`, 42 s by default), so that a follower's
/// power loss never makes the leader give up the lock (which no node could take
/// while the volume waits, so the cluster would be leaderless for nothing). A lock
/// file removed or replaced, or a volume unmounted, is seen by the check itself at
/// once, not by this deadline.
const CHECK_DEADLINE: Duration = Duration::from_secs(45);

/// How much longer than the longest stall of a healthy volume of its type
/// ([`lockvol::mounts::dead_holder_lock_bound`]) a check may take before the volume
/// counts as hung there.
const STALL_MARGIN: Duration = Duration::from_secs(30);

/// The deadline of a check of a lock file on `mount`: [`CHECK_DEADLINE`], or longer
/// on a volume known to stall longer while healthy. On GlusterFS at its defaults
/// every node's requests can wait about 80 s after a node's power loss (measured:
/// README "Running on GlusterFS"), so only a check that outlasts that (120 s) means
/// a hung client, and only then may the fence kill it.
fn check_deadline(mount: Option<&Mount>) -> Duration {
    mount
        .and_then(|m| lockvol::mounts::dead_holder_lock_bound(&m.fstype))
        .map_or(CHECK_DEADLINE, |stall| {
            (stall + STALL_MARGIN).max(CHECK_DEADLINE)
        })
}

/// The status characters of CTDB's cluster mutex helper protocol.
const STATUS_TAKEN: u8 = b'0';
const STATUS_CONTENDED: u8 = b'1';
const STATUS_ERROR: u8 = b'3';

fn main() -> ExitCode {
    // Parent first, pdeathsig second: if the parent dies between the two, the signal is
    // never sent, but getppid() has changed and the check just below sees it.
    let parent = getppid();
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        return error(format_args!("cannot set the parent-death signal: {e}"));
    }
    if getppid() != parent {
        return error(format_args!(
            "parent {parent} exited before the lock was tried"
        ));
    }

    let Args {
        path,
        recheck,
        fence,
        mount_point,
    } = match parse_args(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(message) => return error(format_args!("{message}")),
    };

    // Block SIGTERM/SIGINT before taking the lock and read them from a signalfd later:
    // a release asked for while we were locking is then seen, not lost, and no signal
    // handler (or unsafe code) is needed.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    if let Err(e) = signals.thread_block() {
        return error(format_args!("cannot block SIGTERM: {e}"));
    }
    let signal_fd = match SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => return error(format_args!("cannot create a signalfd: {e}")),
    };

    // Found before the lock is tried (finding it never asks the volume).
    let mount = lockvol::mounts::mount_holding(&path).ok().flatten();
    if let Some(reason) = wrong_mount(&path, mount_point.as_deref(), mount.as_ref()) {
        return error(format_args!("{reason}"));
    }
    let lock = match FcntlLock::try_acquire(&path) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            // Exit status is meaningless to the daemon; a failed write just ends us.
            let _ = status(STATUS_CONTENDED);
            return ExitCode::SUCCESS;
        }
        Err(e) => return error(format_args!("{e}")),
    };
    let locked = match lock.file().metadata() {
        Ok(meta) => FileId::of(&meta),
        Err(e) => return error(format_args!("cannot fstat {}: {e}", path.display())),
    };
    let deadline = check_deadline(mount.as_ref());
    let fence_target = mount.filter(|m| fence && m.fstype == fence::FENCED_FSTYPE);
    let mut checker = {
        let path = path.clone();
        match DeadlineCheck::spawn("check-lock-file", move || check_file(&path, locked)) {
            Ok(checker) => checker,
            Err(e) => return error(format_args!("cannot start the checking thread: {e}")),
        }
    };
    // The path may have been renamed over between open() and fcntl(); then we locked a
    // file nobody else will look at, and saying '0' would be a lie.
    match checker.run(deadline) {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => return error(format_args!("{reason}")),
        Err(e) => {
            let message = hung(&path, &e, deadline);
            fence_hung_client(fence_target.as_ref());
            let code = error(format_args!("{message}"));
            abandon_output();
            return code;
        }
    }
    if status(STATUS_TAKEN).is_err() {
        // The daemon stopped listening before it learnt that we hold the lock.
        return ExitCode::FAILURE;
    }

    let timeout = PollTimeout::try_from(recheck).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&signal_fd),
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, timeout) {
            Ok(0) => {}
            Ok(_) => {
                // SIGTERM or SIGINT: the daemon releases the lock. Exiting drops it.
                drop(lock);
                return ExitCode::SUCCESS;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("{NAME}: poll failed while holding {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        // The daemon is gone: nobody would be told that we hold the lock, or be able to
        // release it. (Never "watch" pid 1: when started by init there is no daemon to
        // outlive, and getppid() would never change.)
        if parent != Pid::from_raw(1) && getppid() != parent {
            eprintln!(
                "{NAME}: parent {parent} is gone, releasing {}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
        match checker.run(deadline) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                eprintln!("{NAME}: {reason}, releasing the lock");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("{NAME}: {}, releasing the lock", hung(&path, &e, deadline));
                fence_hung_client(fence_target.as_ref());
                abandon_output();
                return ExitCode::FAILURE;
            }
        }
    }
}

/// The command line.
struct Args {
    /// The lock file.
    path: PathBuf,
    /// How often the lock file and the parent are checked.
    recheck: Duration,
    /// Whether a hung GlusterFS client is killed when the lock is given up.
    fence: bool,
    /// `--mount DIR`: the lock file must be on the file system mounted at DIR.
    mount_point: Option<PathBuf>,
}

/// Parses `FILE [RECHECK_MS] [--no-fence] [--mount DIR]` (options anywhere).
fn parse_args(args: impl Iterator<Item = std::ffi::OsString>) -> Result<Args, String> {
    const USAGE: &str =
        "usage: ctdb-rs-reclock-helper FILE [RECHECK_MS] [--no-fence] [--mount DIR]";
    let mut fence = true;
    let mut mount_point = None;
    let mut positional = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--no-fence" {
            fence = false;
        } else if arg == "--mount" {
            let dir = args
                .next()
                .ok_or(format!("--mount needs a directory; {USAGE}"))?;
            mount_point = Some(PathBuf::from(dir));
        } else {
            positional.push(arg);
        }
    }
    let mut positional = positional.into_iter();
    let path = PathBuf::from(positional.next().ok_or(USAGE)?);
    let recheck = match positional.next() {
        None => DEFAULT_RECHECK,
        Some(ms) => match ms.to_str().and_then(|ms| ms.parse::<u64>().ok()) {
            Some(ms) if ms > 0 => Duration::from_millis(ms),
            _ => return Err(format!("invalid RECHECK_MS {ms:?}; {USAGE}")),
        },
    };
    if positional.next().is_some() {
        return Err(USAGE.to_owned());
    }
    Ok(Args {
        path,
        recheck,
        fence,
        mount_point,
    })
}

/// With `--mount DIR`: why the lock must not be tried, if `mount` (the mount that
/// holds the lock file now) is not the file system mounted at DIR. A volume that is
/// not mounted leaves its mount point an ordinary directory, where a lock file
/// created by us would be ours alone: a second leader.
fn wrong_mount(path: &Path, expected: Option<&Path>, mount: Option<&Mount>) -> Option<String> {
    let expected = expected?;
    let found = mount.map(|m| m.mount_point.as_path());
    (found != Some(expected)).then(|| {
        format!(
            "lock file {} is not on the volume mounted at {} (it is on {}): is the volume \
             mounted? The lock was not tried",
            path.display(),
            expected.display(),
            found.map_or_else(
                || "an unknown mount".to_owned(),
                |f| f.display().to_string()
            )
        )
    })
}

/// Kills the FUSE client of `target` (if any) so that the bricks free the lock it
/// holds for us: called once the volume is hung and the lock is being given up.
///
/// Killing first, then closing our output, means the lock can be free a moment
/// before the daemon reports it lost. No other node tries the lock while this node
/// leads and heartbeats, and the other order would not fence at all: the daemon
/// kills a helper that lingers after closing its output.
fn fence_hung_client(target: Option<&Mount>) {
    let Some(mount) = target else {
        return;
    };
    let mount_point = mount.mount_point.display();
    match fence::fuse_clients(mount).as_slice() {
        [pid] => match nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL) {
            Ok(()) => eprintln!(
                "{NAME}: killed the GlusterFS client (pid {pid}) of the hung volume at \
                 {mount_point} so that the bricks free the lock; remount it to bring \
                 this node back"
            ),
            Err(e) => eprintln!("{NAME}: cannot kill the GlusterFS client pid {pid}: {e}"),
        },
        [] => eprintln!("{NAME}: no GlusterFS client of {mount_point} found to fence"),
        several => {
            eprintln!("{NAME}: several processes serve {mount_point} ({several:?}); fencing none")
        }
    }
}

/// Device and inode: what makes "the same file" across a rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Whether `path` still names the file we locked; otherwise why not.
fn check_file(path: &Path, locked: FileId) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if FileId::of(&meta) == locked => Ok(()),
        Ok(meta) => Err(format!(
            "lock file {} was replaced (device {} inode {} is now device {} inode {})",
            path.display(),
            locked.dev,
            locked.ino,
            meta.dev(),
            meta.ino()
        )),
        Err(e) => Err(format!("lock file {} is gone: {e}", path.display())),
    }
}

/// Why a check of `path` gave no answer, for stderr.
fn hung(path: &Path, e: &DeadlineError, deadline: Duration) -> String {
    format!(
        "lock file {} did not answer ({e}; deadline {deadline:?}): the volume is hung",
        path.display()
    )
}

/// Points stdout and stderr at `/dev/null`, so that the daemon sees both pipes close
/// even if a thread blocked on the hung volume keeps this process from ending.
fn abandon_output() {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // Nothing more can be said if this fails; exiting closes them anyway.
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
    }
}

/// Writes a status character. A daemon that stopped reading cannot be told anything
/// more, so callers treat a failed write as a reason to exit.
fn status(code: u8) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&[code])?;
    stdout.flush()
}

/// Reports an unexpected error: the reason on stderr first (so that it is already in
/// the pipe when the daemon reads the status), then `3`.
fn error(message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("{NAME}: {message}");
    let _ = status(STATUS_ERROR);
    ExitCode::FAILURE
}
