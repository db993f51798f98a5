//! `ctdb-rs-lock-helper <tdb path> <tdb flags> chain <key hex> | all`: waits for a
//! chain lock or the all-record lock of a TDB file, says so with one byte on
//! stdout, and holds the lock until stdin reaches end of file or SIGTERM arrives.
//! Started by `ctdbd`'s database threads; see [`ctdbd::db::lock_helper`] for the
//! protocol and why the wait happens in a process of its own.
//!
//! Exit status: 0 when told to let go (end of file on stdin), 1 if the file cannot
//! be opened or locked, 2 for a bad command line; errors are one line on stderr.
//! Killed by SIGTERM, or by SIGKILL when its parent dies.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use ctdbd::db::lock_helper::{HelperRequest, LockTarget, HELD, HELPER_NAME};
use ctdbd::db::tdb::{flags, Tdb};
use nix::sys::signal::{SigHandler, SigSet, Signal};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let request = match HelperRequest::from_args(&args) {
        Ok(request) => request,
        Err(error) => {
            eprintln!("{HELPER_NAME}: {error}");
            return ExitCode::from(2);
        }
    };
    match run(&request) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: the context chain joined by ": ".
            eprintln!("{HELPER_NAME}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Locks, reports, and holds until told to stop; returns only on failure (the
/// stdin watcher ends the process on end of file).
fn run(request: &HelperRequest) -> anyhow::Result<()> {
    // A lock nobody will ever release must not outlive the daemon.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("setting PR_SET_PDEATHSIG")?;
    // SIGTERM must end us, even if the daemon had it blocked or ignored (both are
    // inherited across exec): unblock it and give it its default action, which
    // terminates the process and with it every lock it holds.
    let mut term = SigSet::empty();
    term.add(Signal::SIGTERM);
    term.thread_unblock().context("unblocking SIGTERM")?;
    #[allow(unsafe_code)]
    // SAFETY: installing SIG_DFL runs no code of ours in signal context, and no
    // other thread exists yet that could be changing signal dispositions.
    unsafe { nix::sys::signal::signal(Signal::SIGTERM, SigHandler::SigDfl) }
        .context("resetting SIGTERM")?;

    // End of file on stdin (the daemon let go, or died) ends the process whether
    // the lock is held or still awaited; a thread of its own watches for it so that
    // the main thread can block in libtdb.
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(|| {
            let mut stdin = std::io::stdin().lock();
            let mut buffer = [0u8; 64];
            loop {
                match stdin.read(&mut buffer) {
                    Ok(0) => std::process::exit(0),
                    Ok(_) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    // A broken stdin is as good as a closed one.
                    Err(_) => std::process::exit(0),
                }
            }
        })
        .context("starting the stdin watcher")?;

    // Never CLEAR_IF_FIRST: if the daemon had closed the file meanwhile, we would
    // be the first opener and wipe it. No O_CREAT: the daemon made the file.
    // (libtdb 1.4.8 accepts MUTEX_LOCKING without CLEAR_IF_FIRST; newer libtdb
    // insists on the pair, and tests/tdb_locks.rs would fail on mutex files.)
    let tdb_flags = request.tdb_flags & !flags::CLEAR_IF_FIRST;
    let tdb = Tdb::open(&request.path, 0, tdb_flags, libc::O_RDWR, 0)?;
    match &request.target {
        LockTarget::Chain(key) => tdb.chainlock(key)?,
        LockTarget::All => tdb.lockall()?,
    }

    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&[HELD])
        .and_then(|()| stdout.flush())
        .context("reporting the lock held")?;

    // Hold until the watcher ends the process. park() may wake spuriously.
    loop {
        std::thread::park();
    }
}
