//! The address guardian: a tiny process that outlives `ctdbd` and removes the node's
//! public addresses the moment the daemon dies (DESIGN.md "Safety: public IPs are
//! held under leases", Guardian).
//!
//! ```text
//!   ctdbd ── address worker ── add/del/exit lines ──> pipe ──> ctdb-rs-guardian
//!     │  (stdin of the guardian; O_CLOEXEC, so only ctdbd holds the write end)  │
//!     └── dies (kill -9, panic, OOM): the kernel closes the pipe ─── EOF ──────>│
//!                                            guardian: remove every listed address
//!                                            through rtnetlink, log it, exit
//! ```
//!
//! Why a process: a dead daemon cannot clean up after itself, and until its lease
//! runs out a peer must not take its addresses; while the lease lasts, the address
//! would be configured on a node that no longer answers for it. The guardian reacts
//! within milliseconds because it blocks on the pipe read, and the kernel closes the
//! pipe as part of the daemon's death, whatever killed it.
//!
//! The protocol is one line per message, daemon to guardian ([`GuardianMessage`]):
//! `add IFACE ADDR/BITS`, `del IFACE ADDR/BITS`, `exit`. The guardian answers once,
//! on its stdout, with [`READY`] after it has opened its netlink socket, so that a
//! guardian that could not clean up anything is a start-up error of the daemon.
//! Bad lines are logged by the guardian and ignored.
//!
//! Lifetime rules (and their limits):
//! - No `PR_SET_PDEATHSIG`: unlike every other helper, the guardian must outlive the
//!   daemon.
//! - Its own process group: Ctrl-C on the daemon's terminal (SIGINT to the
//!   foreground group) does not reach it. It also blocks SIGTERM, SIGINT and SIGHUP:
//!   its life is tied to the pipe, not to signals. Under `systemd` with
//!   `KillMode=control-group` (our `etc/ctdb.service`) that matters twice: on
//!   `systemctl stop` the SIGTERM to the whole group leaves it waiting for the
//!   daemon, which releases its addresses and says `exit`; and when the daemon
//!   crashes, systemd SIGTERMs what is left of the group at the very moment the
//!   guardian starts cleaning up, which must not cut the cleanup short.
//! - SIGKILL of the whole group (`systemctl kill -s KILL`, the final SIGKILL after a
//!   stop timeout, the OOM killer taking the cgroup) kills the guardian too: then
//!   nothing removes the addresses on this node, and only the leases protect the
//!   cluster (a restarted daemon sweeps the leftovers at start-up).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tracing::{info, warn};

use super::logging::LogTarget;
use crate::config::public_addresses::is_valid_interface_name;

/// The file name of the guardian binary (built from this crate).
pub const GUARDIAN_NAME: &str = "ctdb-rs-guardian";

/// Environment variable naming the guardian binary, ahead of every other place.
pub const GUARDIAN_ENV: &str = "CTDB_RS_GUARDIAN";

/// The guardian's one line on stdout: its netlink socket is open and it reads.
pub const READY: &str = "ready";

/// The guardian's option to log to syslog instead of stderr (when the daemon logs to
/// syslog, the daemon's stderr is `/dev/null`).
pub const SYSLOG_OPTION: &str = "--syslog";

/// How long the daemon waits for [`READY`]; the guardian only opens a socket first.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the daemon waits for the guardian to exit after `exit`, so that it is
/// reaped before the daemon itself exits.
const EXIT_WAIT: Duration = Duration::from_secs(1);

/// One line from the daemon to the guardian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardianMessage {
    /// The daemon is about to configure (or has configured) `addr/prefix_len` on
    /// `iface`: remove it if the daemon dies.
    Add {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        prefix_len: u8,
    },
    /// The daemon removed the address (or failed to add it): forget it.
    Del {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        prefix_len: u8,
    },
    /// The daemon is stopping cleanly and has released its addresses: exit.
    Exit,
}

/// A line the guardian could not understand; it is logged and ignored, nothing
/// changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardianParseError {
    /// A blank line.
    #[error("empty line")]
    Empty,
    /// The first word is not `add`, `del` or `exit`.
    #[error("unknown message {verb:?}")]
    UnknownVerb {
        /// The first word.
        verb: String,
    },
    /// `add` or `del` without its interface or address.
    #[error("{verb}: missing {field}")]
    MissingField {
        /// `add` or `del`.
        verb: &'static str,
        /// `interface` or `address`.
        field: &'static str,
    },
    /// More words than the message has.
    #[error("unexpected {text:?} after the message")]
    Trailing {
        /// The first extra word.
        text: String,
    },
    /// Not an interface name Linux would accept.
    #[error("bad interface name {name:?}")]
    BadInterface {
        /// The name given.
        name: String,
    },
    /// Not `ADDR/BITS` with a valid address and prefix length.
    #[error("bad address {text:?} (expected ADDR/BITS)")]
    BadAddress {
        /// The text given.
        text: String,
    },
}

impl GuardianMessage {
    /// The line to send, newline included.
    pub fn encode(&self) -> String {
        format!("{self}\n")
    }

    /// Parses one line (with or without its newline).
    pub fn parse(line: &str) -> Result<Self, GuardianParseError> {
        let mut words = line.split_ascii_whitespace();
        let verb = words.next().ok_or(GuardianParseError::Empty)?;
        let message = match verb {
            "exit" => Self::Exit,
            "add" | "del" => {
                let verb = if verb == "add" { "add" } else { "del" };
                let iface = words.next().ok_or(GuardianParseError::MissingField {
                    verb,
                    field: "interface",
                })?;
                if !is_valid_interface_name(iface) {
                    return Err(GuardianParseError::BadInterface {
                        name: iface.to_owned(),
                    });
                }
                let cidr = words.next().ok_or(GuardianParseError::MissingField {
                    verb,
                    field: "address",
                })?;
                let bad = || GuardianParseError::BadAddress {
                    text: cidr.to_owned(),
                };
                let (addr, bits) = cidr.split_once('/').ok_or_else(bad)?;
                let addr: IpAddr = addr.parse().map_err(|_| bad())?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let prefix_len = bits
                    .parse::<u8>()
                    .ok()
                    .filter(|&b| b <= max && !bits.starts_with('+'))
                    .ok_or_else(bad)?;
                let iface = iface.to_owned();
                if verb == "add" {
                    Self::Add {
                        iface,
                        addr,
                        prefix_len,
                    }
                } else {
                    Self::Del {
                        iface,
                        addr,
                        prefix_len,
                    }
                }
            }
            other => {
                return Err(GuardianParseError::UnknownVerb {
                    verb: other.to_owned(),
                })
            }
        };
        match words.next() {
            Some(extra) => Err(GuardianParseError::Trailing {
                text: extra.to_owned(),
            }),
            None => Ok(message),
        }
    }
}

impl fmt::Display for GuardianMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Add {
                iface,
                addr,
                prefix_len,
            } => write!(f, "add {iface} {addr}/{prefix_len}"),
            Self::Del {
                iface,
                addr,
                prefix_len,
            } => write!(f, "del {iface} {addr}/{prefix_len}"),
            Self::Exit => f.write_str("exit"),
        }
    }
}

/// What the guardian was told the daemon holds: the addresses to remove if the
/// daemon dies. Keyed by interface and address, so a `del` forgets exactly what an
/// `add` recorded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GuardedAddresses(BTreeMap<(String, IpAddr), u8>);

impl GuardedAddresses {
    /// Applies `add` or `del`; `exit` changes nothing (the caller stops reading).
    pub fn apply(&mut self, message: &GuardianMessage) {
        match message {
            GuardianMessage::Add {
                iface,
                addr,
                prefix_len,
            } => {
                self.0.insert((iface.clone(), *addr), *prefix_len);
            }
            GuardianMessage::Del { iface, addr, .. } => {
                self.0.remove(&(iface.clone(), *addr));
            }
            GuardianMessage::Exit => {}
        }
    }

    /// The addresses held, as `(iface, addr, prefix_len)`, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, IpAddr, u8)> {
        self.0
            .iter()
            .map(|((iface, addr), prefix_len)| (iface.as_str(), *addr, *prefix_len))
    }

    /// How many addresses are held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Starting or talking to the guardian failed.
#[derive(Debug, thiserror::Error)]
pub enum GuardianError {
    /// The binary could not be started (a wrong path, no permission): nothing runs,
    /// and the daemon must not start, or a crash could leave addresses behind.
    #[error("cannot start address guardian {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The daemon's log file could not be opened for the guardian's stderr.
    #[error("opening log file {path} for the address guardian: {source}")]
    LogFile {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The guardian said something other than [`READY`] (an empty `received` means
    /// it exited first; its reason is in the log): it was killed and cannot help.
    #[error("address guardian {program}: expected {expected:?}, received {received:?}")]
    UnexpectedMessage {
        /// The program.
        program: PathBuf,
        /// What the daemon waited for.
        expected: &'static str,
        /// What came instead.
        received: String,
    },
    /// No [`READY`] within the deadline: the guardian was killed.
    #[error("address guardian {program} did not report ready within {READY_TIMEOUT:?}")]
    ReadyTimeout {
        /// The program.
        program: PathBuf,
    },
    /// Writing to the guardian failed: it is gone, and nothing will remove this
    /// node's addresses if the daemon dies.
    #[error("the address guardian is gone: {0}")]
    Gone(#[source] std::io::Error),
}

/// The daemon's end of the guardian: its stdin pipe and the child.
///
/// Dropping it closes the pipe without `exit`, which the guardian takes as the
/// daemon's death: it removes what it was told about. That is the right thing for a
/// daemon that stops without [`Guardian::exit`] (a start-up failure after the guardian
/// started), since addresses it added are then still configured.
#[derive(Debug)]
pub struct Guardian {
    stdin: ChildStdin,
    child: Child,
}

impl Guardian {
    /// Where to find the guardian: `$CTDB_RS_GUARDIAN`, else next to the running
    /// executable (installed side by side with `ctdbd`), else `ctdb-rs-guardian`
    /// looked up on `PATH` when it is run.
    pub fn default_path() -> PathBuf {
        if let Some(path) = std::env::var_os(GUARDIAN_ENV).filter(|path| !path.is_empty()) {
            return PathBuf::from(path);
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(GUARDIAN_NAME)))
            .filter(|path| path.is_file());
        beside.unwrap_or_else(|| PathBuf::from(GUARDIAN_NAME))
    }

    /// Starts `program` logging where the daemon logs (`log`), and waits until it
    /// reports [`READY`]. Must run inside the tokio runtime.
    pub async fn start(program: &Path, log: &LogTarget) -> Result<Self, GuardianError> {
        let mut command = Command::new(program);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C must not reach it (see the
            // module documentation). No PR_SET_PDEATHSIG, and no kill_on_drop: it
            // must outlive the daemon, that is its whole point.
            .process_group(0);
        match log {
            LogTarget::Stderr => {
                command.stderr(Stdio::inherit());
            }
            LogTarget::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| GuardianError::LogFile {
                        path: path.clone(),
                        source,
                    })?;
                command.stderr(Stdio::from(file));
            }
            LogTarget::Syslog => {
                command.arg(SYSLOG_OPTION).stderr(Stdio::null());
            }
        }
        let mut child = command.spawn().map_err(|source| GuardianError::Spawn {
            program: program.to_owned(),
            source,
        })?;
        // Both were asked for as pipes just above, so both are there.
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut guardian = Self { stdin, child };
        match guardian.wait_for_ready(program, stdout).await {
            Ok(()) => {
                info!(pid = guardian.child.id(), "address guardian started");
                Ok(guardian)
            }
            Err(e) => {
                // It cannot help; do not leave it running.
                let _ = guardian.child.start_kill();
                let _ = guardian.child.wait().await;
                Err(e)
            }
        }
    }

    async fn wait_for_ready(
        &mut self,
        program: &Path,
        stdout: tokio::process::ChildStdout,
    ) -> Result<(), GuardianError> {
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        match tokio::time::timeout(READY_TIMEOUT, stdout.read_line(&mut line)).await {
            Err(_) => Err(GuardianError::ReadyTimeout {
                program: program.to_owned(),
            }),
            Ok(_) if line.trim_end() == READY => Ok(()),
            Ok(_) => Err(GuardianError::UnexpectedMessage {
                program: program.to_owned(),
                expected: READY,
                received: line.trim_end().to_owned(),
            }),
        }
        // stdout is dropped here: the guardian never writes again.
    }

    /// The guardian's pid (for logs and tests).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resolves when the guardian exits, which while the daemon runs is a fault
    /// (someone killed it). Cancel-safe, for use in `select!`.
    pub async fn exited(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// Sends one message. A failure means the guardian is gone.
    pub async fn send(&mut self, message: &GuardianMessage) -> Result<(), GuardianError> {
        // One write of a line shorter than PIPE_BUF: the guardian never sees half a
        // line, even if the daemon dies right after.
        self.stdin
            .write_all(message.encode().as_bytes())
            .await
            .map_err(GuardianError::Gone)
    }

    /// Clean shutdown, after the daemon released its addresses: sends `exit` and
    /// waits briefly for the guardian to go.
    pub async fn exit(mut self) {
        if let Err(e) = self.send(&GuardianMessage::Exit).await {
            warn!(error = %e, "cannot tell the address guardian to exit");
        }
        drop(self.stdin);
        match tokio::time::timeout(EXIT_WAIT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => warn!(%status, "address guardian exited with an error"),
            Ok(Err(e)) => warn!(error = %e, "waiting for the address guardian"),
            Err(_) => warn!("address guardian still runs after exit"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(iface: &str, addr: &str, prefix_len: u8) -> GuardianMessage {
        GuardianMessage::Add {
            iface: iface.into(),
            addr: addr.parse().unwrap(),
            prefix_len,
        }
    }

    fn del(iface: &str, addr: &str, prefix_len: u8) -> GuardianMessage {
        GuardianMessage::Del {
            iface: iface.into(),
            addr: addr.parse().unwrap(),
            prefix_len,
        }
    }

    #[test]
    fn messages_encode_as_lines_and_parse_back() {
        for (message, line) in [
            (add("pub0", "10.0.20.101", 24), "add pub0 10.0.20.101/24\n"),
            (del("eth1", "fd00::5", 64), "del eth1 fd00::5/64\n"),
            (
                add("bond0.12", "192.0.2.1", 32),
                "add bond0.12 192.0.2.1/32\n",
            ),
            (GuardianMessage::Exit, "exit\n"),
        ] {
            assert_eq!(message.encode(), line);
            assert_eq!(GuardianMessage::parse(line), Ok(message.clone()));
            assert_eq!(
                GuardianMessage::parse(line.trim_end()),
                Ok(message),
                "the newline is optional"
            );
        }
    }

    #[test]
    fn extra_blanks_are_accepted() {
        assert_eq!(
            GuardianMessage::parse("  add\tpub0   10.0.20.101/24 \r\n"),
            Ok(add("pub0", "10.0.20.101", 24))
        );
    }

    #[test]
    fn bad_lines_are_errors_naming_what_is_wrong() {
        use GuardianParseError as E;
        for (line, error) in [
            ("", E::Empty),
            ("   \n", E::Empty),
            (
                "remove pub0 10.0.0.1/24",
                E::UnknownVerb {
                    verb: "remove".into(),
                },
            ),
            (
                "ADD pub0 10.0.0.1/24",
                E::UnknownVerb { verb: "ADD".into() },
            ),
            (
                "add",
                E::MissingField {
                    verb: "add",
                    field: "interface",
                },
            ),
            (
                "del pub0",
                E::MissingField {
                    verb: "del",
                    field: "address",
                },
            ),
            (
                "add pub0 10.0.0.1",
                E::BadAddress {
                    text: "10.0.0.1".into(),
                },
            ),
            (
                "add pub0 10.0.0.1/33",
                E::BadAddress {
                    text: "10.0.0.1/33".into(),
                },
            ),
            (
                "add pub0 fd00::1/129",
                E::BadAddress {
                    text: "fd00::1/129".into(),
                },
            ),
            (
                "add pub0 10.0.0.1/+8",
                E::BadAddress {
                    text: "10.0.0.1/+8".into(),
                },
            ),
            (
                "add pub0 10.0.0.256/24",
                E::BadAddress {
                    text: "10.0.0.256/24".into(),
                },
            ),
            (
                "add averyveryverylongname 10.0.0.1/24",
                E::BadInterface {
                    name: "averyveryverylongname".into(),
                },
            ),
            (
                "add pub0,pub1 10.0.0.1/24",
                E::BadInterface {
                    name: "pub0,pub1".into(),
                },
            ),
            (
                "add pub0 10.0.0.1/24 now",
                E::Trailing { text: "now".into() },
            ),
            ("exit now", E::Trailing { text: "now".into() }),
        ] {
            assert_eq!(GuardianMessage::parse(line), Err(error), "{line:?}");
        }
    }

    #[test]
    fn guarded_addresses_follow_add_and_del() {
        let mut held = GuardedAddresses::default();
        held.apply(&add("pub0", "10.0.20.101", 24));
        held.apply(&add("pub0", "10.0.20.102", 24));
        held.apply(&add("pub1", "10.0.20.101", 24));
        // A repeated add (a retried takeover) is one address.
        held.apply(&add("pub0", "10.0.20.102", 24));
        assert_eq!(held.len(), 3);
        held.apply(&del("pub0", "10.0.20.101", 24));
        // A del of something never added changes nothing.
        held.apply(&del("pub9", "10.0.20.102", 24));
        held.apply(&GuardianMessage::Exit);
        let left: Vec<_> = held.iter().collect();
        assert_eq!(
            left,
            vec![
                ("pub0", "10.0.20.102".parse().unwrap(), 24),
                ("pub1", "10.0.20.101".parse().unwrap(), 24),
            ]
        );
        held.apply(&del("pub0", "10.0.20.102", 24));
        held.apply(&del("pub1", "10.0.20.101", 24));
        assert!(held.is_empty());
    }

    // The rest fork a real guardian, `<target>/debug/ctdb-rs-guardian` (built by
    // `cargo build --workspace`), on an interface no host has, so they need no root
    // and change nothing. The vm tests (`tests/vm/tests/guardian.rs`) remove real
    // addresses.

    /// Interface name that exists nowhere: removing from it fails, harmlessly.
    const NO_IFACE: &str = "ctdbrsnone0";

    /// `<target>/debug/ctdb-rs-guardian`: this test binary runs from
    /// `<target>/debug/deps/`. Missing is a failure, not a skip.
    fn guardian_binary() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let path = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in <target>/debug/deps")
            .join(GUARDIAN_NAME);
        assert!(
            path.is_file(),
            "{} is missing: run `cargo build --workspace` first",
            path.display()
        );
        path
    }

    /// A log file of its own per test.
    fn log_file(name: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("ctdbd-guardian-{}-{name}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    /// Waits until `pid` has exited (gone, or a zombie), at most 5 s.
    async fn wait_gone(pid: u32) {
        let stat = format!("/proc/{pid}/stat");
        let gone = || match std::fs::read_to_string(&stat) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        };
        tokio::time::timeout(Duration::from_secs(5), async {
            while !gone() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("guardian {pid} still runs after 5 s"));
    }

    #[tokio::test]
    async fn pipe_closed_without_exit_removes_what_was_listed() {
        let log = log_file("eof");
        let mut guardian = Guardian::start(&guardian_binary(), &LogTarget::File(log.clone()))
            .await
            .unwrap();
        let pid = guardian.pid().unwrap();
        guardian
            .send(&add(NO_IFACE, "192.0.2.1", 32))
            .await
            .unwrap();
        guardian
            .send(&add(NO_IFACE, "192.0.2.2", 32))
            .await
            .unwrap();
        guardian
            .send(&del(NO_IFACE, "192.0.2.2", 32))
            .await
            .unwrap();
        // A bad line is logged and changes nothing.
        guardian.stdin.write_all(b"bogus\n").await.unwrap();
        // The daemon "dies": its end of the pipe closes without `exit`.
        drop(guardian);
        wait_gone(pid).await;
        let text = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        assert!(text.contains("ignoring a bad line from ctdbd"), "{text}");
        assert!(text.contains("ctdbd died"), "{text}");
        assert!(text.contains("count=1"), "{text}");
        assert!(
            text.contains("cannot remove public address") && text.contains("192.0.2.1"),
            "the listed address was tried: {text}"
        );
        assert!(
            !text.contains("192.0.2.2"),
            "a deleted address was tried: {text}"
        );
    }

    #[tokio::test]
    async fn exit_leaves_quietly() {
        let log = log_file("exit");
        let guardian = Guardian::start(&guardian_binary(), &LogTarget::File(log.clone()))
            .await
            .unwrap();
        let pid = guardian.pid().unwrap();
        guardian.exit().await;
        wait_gone(pid).await;
        let text = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        assert!(text.contains("ctdbd stopped cleanly"), "{text}");
        assert!(!text.contains("removing"), "{text}");
    }

    #[tokio::test]
    async fn a_program_that_does_not_say_ready_is_a_start_up_error() {
        let error = Guardian::start(Path::new("/bin/true"), &LogTarget::Stderr)
            .await
            .unwrap_err();
        assert!(
            matches!(
                &error,
                GuardianError::UnexpectedMessage { expected: READY, received, .. }
                    if received.is_empty()
            ),
            "{error:?}"
        );
        let missing = Path::new("/nonexistent/ctdb-rs-guardian");
        let error = Guardian::start(missing, &LogTarget::Stderr)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/ctdb-rs-guardian"),
            "{error}"
        );
    }
}
