//! The lock helper: a child process (`ctdb-rs-lock-helper`) that waits for a chain
//! lock or the all-record lock of a TDB file and holds it for the daemon.
//!
//! # Why a process
//! smbd holds a record's chain lock for as long as it works on the record, and a
//! freeze holds every chain until recovery ends (reference/ctdb-protocol-samba.md
//! §2.8), so a lock wait can last. The daemon must not spend a thread on each wait,
//! and it could not anyway: an fcntl chain lock belongs to the whole process (a
//! second thread of ctdbd would be granted a lock the first holds, and closing any
//! descriptor of the file drops them all), and a robust-mutex chain lock belongs to
//! the thread that took it. A separate process gets its own, real lock, queued
//! behind smbd's like any other locker.
//!
//! Once the helper reports that it holds the lock, the daemon's database thread
//! marks the chain (or the whole file) as locked in its own handle
//! ([`Tdb::chainlock_mark`](super::tdb::Tdb::chainlock_mark),
//! [`Tdb::lockall_mark`](super::tdb::Tdb::lockall_mark)), does its reads and writes
//! without taking the lock again, unmarks, and releases the helper. Nobody else
//! can touch the chain in between, because the helper's lock excludes them.
//!
//! # Protocol
//! `ctdb-rs-lock-helper <tdb path> <tdb flags> chain <key hex> | all`
//! - The helper opens the file with the given flags minus `CLEAR_IF_FIRST` (so it
//!   can never wipe the database), without `O_CREAT`.
//! - It blocks in `tdb_chainlock` / `tdb_lockall`, then writes the one byte
//!   [`HELD`] to its stdout.
//! - It holds the lock until its stdin reaches end of file (the daemon closed the
//!   pipe, or died), or it gets SIGTERM; then it exits and the lock goes with it.
//!   End of file also ends a wait that has not succeeded yet.
//! - If its parent dies it is killed (`PR_SET_PDEATHSIG`). Linux counts the
//!   *thread* that started it as the parent: start helpers from a thread that
//!   outlives them (the database's own thread), or they die with the thread.
//! - Errors: one line on stderr and exit status 1 (2 for a bad command line).
//!
//! [`LockHelper`] is the daemon's side, with blocking std::process calls: it runs
//! on a database thread, never on the async runtime.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use thiserror::Error;

/// The helper's executable name.
pub const HELPER_NAME: &str = "ctdb-rs-lock-helper";

/// Environment variable that names the helper's path (tests, unusual installs).
pub const HELPER_ENV: &str = "CTDB_RS_LOCK_HELPER";

/// The byte the helper writes once it holds the lock.
pub const HELD: u8 = b'H';

/// What the helper locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockTarget {
    /// The hash chain of this key (`tdb_chainlock`).
    Chain(Vec<u8>),
    /// Every chain: the all-record lock of a freeze (`tdb_lockall`).
    All,
}

/// One request, as the helper's command line carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperRequest {
    /// The TDB file (it must exist).
    pub path: PathBuf,
    /// The TDB flags the daemon's own handle has; the helper drops
    /// `CLEAR_IF_FIRST` itself.
    pub tdb_flags: u32,
    /// What to lock.
    pub target: LockTarget,
}

/// A helper command line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UsageError {
    /// Wrong number of arguments, or an unknown lock kind.
    #[error("usage: {HELPER_NAME} <tdb path> <tdb flags> chain <key hex> | all")]
    Usage,
    /// The flags are not a decimal or 0x-prefixed hexadecimal u32.
    #[error("tdb flags {given:?} are not a number")]
    Flags {
        /// The argument as given.
        given: String,
    },
    /// The key is not an even number of hex digits.
    #[error("key {given:?} is not hexadecimal bytes")]
    Key {
        /// The argument as given.
        given: String,
    },
}

impl HelperRequest {
    /// The helper's arguments for this request (without the program name).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args = vec![
            self.path.clone().into_os_string(),
            OsString::from(format!("{:#x}", self.tdb_flags)),
        ];
        match &self.target {
            LockTarget::Chain(key) => {
                args.push("chain".into());
                args.push(hex_encode(key).into());
            }
            LockTarget::All => args.push("all".into()),
        }
        args
    }

    /// Parses the helper's arguments (without the program name).
    pub fn from_args(args: &[OsString]) -> Result<Self, UsageError> {
        let (path, tdb_flags, kind, rest) = match args {
            [path, tdb_flags, kind, rest @ ..] => (path, tdb_flags, kind, rest),
            _ => return Err(UsageError::Usage),
        };
        let tdb_flags = parse_flags(tdb_flags)?;
        let target = match (kind.as_bytes(), rest) {
            (b"chain", [key]) => LockTarget::Chain(hex_decode(key)?),
            (b"all", []) => LockTarget::All,
            _ => return Err(UsageError::Usage),
        };
        Ok(HelperRequest {
            path: PathBuf::from(path),
            tdb_flags,
            target,
        })
    }
}

fn parse_flags(given: &OsStr) -> Result<u32, UsageError> {
    let text = given.to_string_lossy();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse::<u32>(),
    };
    parsed.map_err(|_| UsageError::Flags {
        given: text.into_owned(),
    })
}

/// Lower-case hex of `bytes`; the empty key is the empty string.
pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(given: &OsStr) -> Result<Vec<u8>, UsageError> {
    let bad = || UsageError::Key {
        given: given.to_string_lossy().into_owned(),
    };
    let digits = given.as_bytes();
    // from_str_radix alone would take a sign ("+1").
    if digits.len() % 2 != 0 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            u8::from_str_radix(text, 16).map_err(|_| bad())
        })
        .collect()
}

/// Why a lock helper did not give us the lock.
#[derive(Debug, Error)]
pub enum LockHelperError {
    /// The helper could not be started; nothing is locked.
    #[error("cannot start lock helper {program}: {source}")]
    Spawn {
        /// The program we tried.
        program: PathBuf,
        /// Why exec failed.
        #[source]
        source: io::Error,
    },
    /// The helper exited without holding the lock (it could not open the file,
    /// or the lock call failed); nothing is locked. `message` is its stderr.
    #[error("lock helper {pid} for {path} exited ({status}) without the lock: {message}")]
    Died {
        /// The helper's pid.
        pid: u32,
        /// The TDB file.
        path: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote on stderr (one line), or empty.
        message: String,
    },
    /// The lock is not held yet; the helper is still waiting for it.
    #[error("lock helper {pid} for {path} does not hold the lock after {waited:?}")]
    TimedOut {
        /// The helper's pid.
        pid: u32,
        /// The TDB file.
        path: PathBuf,
        /// How long this wait lasted.
        waited: Duration,
    },
    /// The helper wrote something other than [`HELD`]: a bug; treat the lock as
    /// not held and release the helper.
    #[error("lock helper {pid} for {path} wrote {byte:#04x} instead of the held byte")]
    Unexpected {
        /// The helper's pid.
        pid: u32,
        /// The TDB file.
        path: PathBuf,
        /// What it wrote.
        byte: u8,
    },
    /// Reading from or reaping the helper failed.
    #[error("lock helper {pid} for {path}: {source}")]
    Io {
        /// The helper's pid.
        pid: u32,
        /// The TDB file.
        path: PathBuf,
        /// The failing call's error.
        #[source]
        source: io::Error,
    },
}

/// A running lock helper. Dropping it releases the lock (or abandons the wait)
/// and reaps the process.
#[derive(Debug)]
pub struct LockHelper {
    child: Child,
    /// Closing it tells the helper to let go; `None` once released.
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    stderr: ChildStderr,
    path: PathBuf,
    held: bool,
}

impl LockHelper {
    /// Where to find the helper: `$CTDB_RS_LOCK_HELPER`, else next to the running
    /// executable (installed side by side with `ctdbd`), else looked up on `PATH`.
    pub fn default_path() -> PathBuf {
        if let Some(path) = std::env::var_os(HELPER_ENV).filter(|path| !path.is_empty()) {
            return PathBuf::from(path);
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(HELPER_NAME)))
            .filter(|path| path.is_file());
        beside.unwrap_or_else(|| PathBuf::from(HELPER_NAME))
    }

    /// Starts `program` to lock `target` in the TDB file `path`, whose handles use
    /// `tdb_flags`. Returns at once; [`LockHelper::wait_held`] says when the lock
    /// is held. Call it from a thread that outlives the helper (see the module
    /// documentation on `PR_SET_PDEATHSIG`).
    pub fn spawn(
        program: &Path,
        path: &Path,
        tdb_flags: u32,
        target: LockTarget,
    ) -> Result<LockHelper, LockHelperError> {
        let request = HelperRequest {
            path: path.to_path_buf(),
            tdb_flags,
            target,
        };
        let mut child = Command::new(program)
            .args(request.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LockHelperError::Spawn {
                program: program.to_path_buf(),
                source,
            })?;
        // All three were asked for as pipes just above, so they are there.
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("spawn with piped stdio returns the pipes");
        };
        Ok(LockHelper {
            child,
            stdin: Some(stdin),
            stdout,
            stderr,
            path: path.to_path_buf(),
            held: false,
        })
    }

    /// The helper's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the helper has reported that it holds the lock.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Waits until the helper holds the lock: `Ok` once its byte has arrived (at
    /// once if it already had), [`LockHelperError::TimedOut`] if `timeout` passes
    /// first (the helper keeps waiting; call again or release it),
    /// [`LockHelperError::Died`] if it exited without the lock. `None` waits as
    /// long as it takes.
    pub fn wait_held(&mut self, timeout: Option<Duration>) -> Result<(), LockHelperError> {
        if self.held {
            return Ok(());
        }
        let start = Instant::now();
        loop {
            let remaining = match timeout {
                None => PollTimeout::NONE,
                Some(timeout) => {
                    let left = timeout.saturating_sub(start.elapsed());
                    // Whole milliseconds, rounded up so that a wait never spins at
                    // zero before its time is really up.
                    let millis = left.as_nanos().div_ceil(1_000_000);
                    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [PollFd::new(self.stdout.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, remaining) {
                Ok(0) => {
                    if timeout.is_some_and(|timeout| start.elapsed() >= timeout) {
                        return Err(LockHelperError::TimedOut {
                            pid: self.id(),
                            path: self.path.clone(),
                            waited: start.elapsed(),
                        });
                    }
                }
                Ok(_) => return self.read_held(),
                Err(nix::errno::Errno::EINTR) => {}
                Err(errno) => return Err(self.io_error(io::Error::from(errno))),
            }
        }
    }

    /// Reads the byte poll said is there (or the end of file).
    fn read_held(&mut self) -> Result<(), LockHelperError> {
        let mut byte = [0u8; 1];
        let read = loop {
            match self.stdout.read(&mut byte) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        match read {
            Ok(1) if byte[0] == HELD => {
                self.held = true;
                Ok(())
            }
            Ok(1) => Err(LockHelperError::Unexpected {
                pid: self.id(),
                path: self.path.clone(),
                byte: byte[0],
            }),
            // End of file: the helper exited (its stdout closed) without the lock.
            Ok(_) => {
                let mut message = String::new();
                // It has exited or is exiting, so its stderr ends too.
                let _ = self.stderr.read_to_string(&mut message);
                let status = self.child.wait().map_err(|error| self.io_error(error))?;
                Err(LockHelperError::Died {
                    pid: self.id(),
                    path: self.path.clone(),
                    status,
                    message: message.trim_end().to_string(),
                })
            }
            Err(error) => Err(self.io_error(error)),
        }
    }

    fn io_error(&self, source: io::Error) -> LockHelperError {
        LockHelperError::Io {
            pid: self.id(),
            path: self.path.clone(),
            source,
        }
    }

    /// Lets go of the lock (or abandons the wait): closes the helper's stdin and
    /// reaps it. When this returns the helper is gone and so is its lock.
    pub fn release(mut self) -> Result<ExitStatus, LockHelperError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<ExitStatus, LockHelperError> {
        // End of file on its stdin: the helper exits, whether it holds or waits.
        drop(self.stdin.take());
        self.held = false;
        self.child.wait().map_err(|error| self.io_error(error))
    }
}

impl Drop for LockHelper {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            // Nothing to report to: the helper is reaped either way, or wait()
            // failed because it already was.
            let _ = self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn requests_round_trip_through_the_command_line() {
        for request in [
            HelperRequest {
                path: PathBuf::from("/var/lib/ctdb/volatile/locking.tdb.0"),
                tdb_flags: 0x1c41,
                target: LockTarget::Chain(vec![0x00, 0xab, 0xff, 0x10]),
            },
            HelperRequest {
                path: PathBuf::from("/x/brlock.tdb.1"),
                tdb_flags: 0,
                target: LockTarget::Chain(Vec::new()),
            },
            HelperRequest {
                path: PathBuf::from("/x/secrets.tdb.2"),
                tdb_flags: 0x400,
                target: LockTarget::All,
            },
        ] {
            let line = request.to_args();
            assert_eq!(HelperRequest::from_args(&line), Ok(request), "{line:?}");
        }
        assert_eq!(
            HelperRequest::from_args(&args(&["/f", "0x1C41", "chain", "00AbfF"])).unwrap(),
            HelperRequest {
                path: PathBuf::from("/f"),
                tdb_flags: 0x1c41,
                target: LockTarget::Chain(vec![0x00, 0xab, 0xff]),
            }
        );
        assert_eq!(
            HelperRequest::from_args(&args(&["/f", "7233", "all"]))
                .unwrap()
                .tdb_flags,
            7233
        );
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for (line, expected) in [
            (vec![], UsageError::Usage),
            (vec!["/f", "1"], UsageError::Usage),
            (vec!["/f", "1", "chain"], UsageError::Usage),
            (vec!["/f", "1", "all", "extra"], UsageError::Usage),
            (vec!["/f", "1", "record", "00"], UsageError::Usage),
            (
                vec!["/f", "flags", "all"],
                UsageError::Flags {
                    given: "flags".into(),
                },
            ),
            (
                vec!["/f", "0x", "all"],
                UsageError::Flags { given: "0x".into() },
            ),
            (
                vec!["/f", "1", "chain", "abc"],
                UsageError::Key {
                    given: "abc".into(),
                },
            ),
            (
                vec!["/f", "1", "chain", "zz"],
                UsageError::Key { given: "zz".into() },
            ),
            (
                vec!["/f", "1", "chain", "+1"],
                UsageError::Key { given: "+1".into() },
            ),
        ] {
            assert_eq!(
                HelperRequest::from_args(&args(&line)),
                Err(expected),
                "{line:?}"
            );
        }
    }
}
