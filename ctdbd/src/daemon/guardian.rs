//! The address guardian: a tiny process that outlives `ctdbd`, removes the node's
//! public addresses the moment the daemon dies, and then tells the peers so
//! (DESIGN.md "Safety: public IPs are held under leases", Guardian).
//!
//! ```text
//!   ctdbd ── address worker ── identity/nodes/add/del/exit lines ──> pipe ──> guardian
//!     │  (stdin of the guardian; O_CLOEXEC, so only ctdbd holds the write end)   │
//!     └── dies (kill -9, panic, OOM): the kernel closes the pipe ─── EOF ───────>│
//!            guardian: remove every listed address through rtnetlink, log it;    │
//!            if every one is gone: DAEMON_GONE to every peer, in parallel  <─────┘
//!            (TCP 4379 from the node's own address, NOTICE_TIMEOUT each); exit
//! ```
//!
//! Why a process: a dead daemon cannot clean up after itself, and until its lease
//! runs out a peer must not take its addresses; while the lease lasts, the address
//! would be configured on a node that no longer answers for it. The guardian reacts
//! within milliseconds because it blocks on the pipe read, and the kernel closes the
//! pipe as part of the daemon's death, whatever killed it.
//!
//! Why it tells the peers: the leader cannot tell a dead daemon from one behind a
//! partition, so without word it waits out the lost node's lease (up to 0.7 s)
//! before moving its addresses. The guardian knows: its notice ([`Notice`], one CTDB
//! `REQ_MESSAGE` with srvid `DAEMON_GONE`, see `protocol::control::srvid`) names the
//! node and the daemon's incarnation, and the leader moves the addresses at once
//! (the rules for believing it are in `core::takeover`). It is sent only when every
//! listed address was removed or was already gone; after a failed removal the
//! peers wait for the lease as before. Peers know nodes by the source address of a
//! connection, so the guardian binds its connections to the node's own address (the
//! `nodes` line at index `pnn`). An unreachable peer costs at most [`NOTICE_TIMEOUT`],
//! all peers at once, so the guardian exits promptly either way.
//!
//! A clean stop (`ctdb shutdown`, SIGTERM) hands over without the lease wait too:
//! the daemon removes its addresses itself and says `exit`; the guardian, with
//! nothing left to remove, waits for the daemon to exit (it is reparented), so that
//! the daemon's links to the peers are closed, and sends them the same notice.
//!
//! The protocol is one line per message, daemon to guardian ([`GuardianMessage`]):
//! `identity PNN INCARNATION` and `nodes PORT ADDR|- ...` (who the daemon is and whom
//! to tell; sent at start, `nodes` again after reloadnodes), `add IFACE ADDR/BITS`,
//! `del IFACE ADDR/BITS`, `exit`. The guardian answers once, on its stdout, with
//! [`READY`] after it has opened its netlink socket, so that a guardian that could not
//! clean up anything is a start-up error of the daemon. Bad lines are logged by the
//! guardian and ignored, and so is an unfinished last line (the daemon died while
//! writing it; every line is one write, and lines shorter than `PIPE_BUF` are written
//! whole: a `nodes` line stays under it up to about a hundred nodes).
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
use std::net::{IpAddr, SocketAddr};
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

/// How long the guardian gives each peer to take its notice (connect and send), all
/// peers at once. A live peer on the private network answers in a millisecond; one
/// that does not answer (powered off, cut off) costs this much, then the guardian
/// exits and that peer waits for the lease instead.
pub const NOTICE_TIMEOUT: Duration = Duration::from_millis(500);

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
    /// Who the daemon is: sent once, before any `add`.
    Identity {
        /// This node.
        pnn: u32,
        /// This run of the daemon (`core::NodeConfig::incarnation`).
        incarnation: u64,
    },
    /// Whom to tell when the daemon dies: the nodes file (index = pnn, `None` = a
    /// deleted line) and the port the peers listen on. Sent at start and after every
    /// reloadnodes; the last one counts.
    Nodes {
        /// The peers' port (CTDB's 4379).
        port: u16,
        /// Node addresses by pnn.
        nodes: Vec<Option<IpAddr>>,
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
    /// The first word is not `identity`, `nodes`, `add`, `del` or `exit`.
    #[error("unknown message {verb:?}")]
    UnknownVerb {
        /// The first word.
        verb: String,
    },
    /// A message without one of its fields.
    #[error("{verb}: missing {field}")]
    MissingField {
        /// `identity`, `nodes`, `add` or `del`.
        verb: &'static str,
        /// `interface`, `address`, `pnn`, `incarnation` or `port`.
        field: &'static str,
    },
    /// A number that does not parse (pnn and port in decimal, incarnation in hex).
    #[error("bad {field} {text:?}")]
    BadNumber {
        /// `pnn`, `incarnation` or `port`.
        field: &'static str,
        /// The text given.
        text: String,
    },
    /// A `nodes` entry that is neither an address nor `-`.
    #[error("bad node address {text:?} (expected an address or -)")]
    BadNodeAddress {
        /// The text given.
        text: String,
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
            "identity" => {
                let missing = |field| GuardianParseError::MissingField {
                    verb: "identity",
                    field,
                };
                let pnn = words.next().ok_or_else(|| missing("pnn"))?;
                let incarnation = words.next().ok_or_else(|| missing("incarnation"))?;
                Self::Identity {
                    pnn: parse_number(pnn, "pnn", |t| t.parse().ok())?,
                    incarnation: parse_number(incarnation, "incarnation", |t| {
                        (t.len() == 16)
                            .then(|| u64::from_str_radix(t, 16).ok())
                            .flatten()
                    })?,
                }
            }
            "nodes" => {
                let port = words.next().ok_or(GuardianParseError::MissingField {
                    verb: "nodes",
                    field: "port",
                })?;
                let port = parse_number(port, "port", |t| t.parse().ok())?;
                let nodes =
                    words
                        .by_ref()
                        .map(|word| match word {
                            "-" => Ok(None),
                            _ => word.parse().map(Some).map_err(|_| {
                                GuardianParseError::BadNodeAddress {
                                    text: word.to_owned(),
                                }
                            }),
                        })
                        .collect::<Result<_, _>>()?;
                Self::Nodes { port, nodes }
            }
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
            Self::Identity { pnn, incarnation } => {
                write!(f, "identity {pnn} {incarnation:016x}")
            }
            Self::Nodes { port, nodes } => {
                write!(f, "nodes {port}")?;
                for node in nodes {
                    match node {
                        Some(addr) => write!(f, " {addr}")?,
                        None => f.write_str(" -")?,
                    }
                }
                Ok(())
            }
            Self::Exit => f.write_str("exit"),
        }
    }
}

/// Parses a decimal (or, for the incarnation, 16-digit hex) field; no signs.
fn parse_number<T>(
    text: &str,
    field: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, GuardianParseError> {
    let bad = || GuardianParseError::BadNumber {
        field,
        text: text.to_owned(),
    };
    if text.starts_with(['+', '-']) {
        return Err(bad());
    }
    parse(text).ok_or_else(bad)
}

/// What the guardian was told the daemon holds: the addresses to remove if the
/// daemon dies. Keyed by interface and address, so a `del` forgets exactly what an
/// `add` recorded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GuardedAddresses(BTreeMap<(String, IpAddr), u8>);

impl GuardedAddresses {
    /// Applies `add` or `del`; the other messages change nothing here.
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
            GuardianMessage::Identity { .. }
            | GuardianMessage::Nodes { .. }
            | GuardianMessage::Exit => {}
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

/// What the guardian learns from `identity` and `nodes`: enough to build its
/// [`Notice`] when the daemon dies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NoticeFacts {
    identity: Option<(u32, u64)>,
    nodes: Option<(u16, Vec<Option<IpAddr>>)>,
}

/// Why the guardian cannot tell the peers anything: the daemon died before saying
/// who it is (or said something that does not fit). The peers wait for the lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeFactsError {
    /// No `identity` line came.
    #[error("the daemon never said who it is")]
    NoIdentity,
    /// No `nodes` line came.
    #[error("the daemon never sent the nodes list")]
    NoNodes,
    /// The nodes list has no address at our pnn, so we have none to speak from.
    #[error("the nodes list has no address for this node (pnn {pnn})")]
    NoOwnAddress {
        /// Our pnn.
        pnn: u32,
    },
}

impl NoticeFacts {
    /// Keeps what `identity` and `nodes` say; the other messages change nothing here.
    pub fn apply(&mut self, message: &GuardianMessage) {
        match message {
            GuardianMessage::Identity { pnn, incarnation } => {
                self.identity = Some((*pnn, *incarnation));
            }
            GuardianMessage::Nodes { port, nodes } => self.nodes = Some((*port, nodes.clone())),
            _ => {}
        }
    }

    /// The notice to send now that the daemon is dead.
    pub fn notice(&self) -> Result<Notice, NoticeFactsError> {
        let (pnn, incarnation) = self.identity.ok_or(NoticeFactsError::NoIdentity)?;
        let (port, nodes) = self.nodes.as_ref().ok_or(NoticeFactsError::NoNodes)?;
        let own_addr = nodes
            .get(pnn as usize)
            .copied()
            .flatten()
            .ok_or(NoticeFactsError::NoOwnAddress { pnn })?;
        let peers = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, addr)| Some((u32::try_from(i).ok()?, (*addr)?)))
            .filter(|(peer, _)| *peer != pnn)
            .map(|(peer, addr)| (peer, SocketAddr::new(addr, *port)))
            .collect();
        Ok(Notice {
            pnn,
            incarnation,
            own_addr,
            peers,
        })
    }
}

/// The guardian's word to the peers after the daemon died and every public address
/// it held is gone: one `REQ_MESSAGE` with srvid `DAEMON_GONE` to each peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// This node.
    pub pnn: u32,
    /// The run of the daemon that died.
    pub incarnation: u64,
    /// This node's private address: every connection comes from it, since peers know
    /// nodes by the source address.
    pub own_addr: IpAddr,
    /// Every other node of the nodes file (deleted lines left out), where it listens.
    pub peers: Vec<(u32, SocketAddr)>,
}

/// Telling one peer failed: it waits for the lease instead.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    /// No socket could be made from our address (it is gone from the node?).
    #[error("cannot connect from {from}: {source}")]
    Socket {
        /// Our address.
        from: IpAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The peer refused the connection or the network failed.
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
    /// The connection broke while sending.
    #[error("sending: {0}")]
    Send(#[source] std::io::Error),
    /// No answer within [`NOTICE_TIMEOUT`] (a powered-off or cut-off peer).
    #[error("no connection within {NOTICE_TIMEOUT:?}")]
    TimedOut,
}

impl Notice {
    /// The packet for peer `to`: from our pnn, no generation known (the guardian
    /// never hears one).
    pub fn packet(&self, to: u32) -> crate::protocol::Packet {
        use crate::protocol::control::{srvid, DaemonGone, INVALID_GENERATION};
        use crate::protocol::{Body, Header, Packet, ReqMessage};
        Packet {
            header: Header {
                generation: INVALID_GENERATION,
                destnode: to,
                srcnode: self.pnn,
                reqid: 0,
            },
            body: Body::ReqMessage(ReqMessage {
                srvid: srvid::DAEMON_GONE,
                data: DaemonGone {
                    pnn: self.pnn,
                    incarnation: self.incarnation,
                }
                .encode(),
            }),
        }
    }

    /// Tells every peer at once, each within [`NOTICE_TIMEOUT`]; returns each
    /// peer's outcome, in pnn order. Must run inside a tokio runtime.
    pub async fn tell_peers(&self) -> Vec<(u32, SocketAddr, Result<(), NoticeError>)> {
        let mut sends = tokio::task::JoinSet::new();
        for &(pnn, addr) in &self.peers {
            let bytes = self.packet(pnn).encode();
            let from = self.own_addr;
            sends.spawn(async move {
                let sent = tokio::time::timeout(NOTICE_TIMEOUT, send_notice(from, addr, &bytes))
                    .await
                    .unwrap_or(Err(NoticeError::TimedOut));
                (pnn, addr, sent)
            });
        }
        let mut outcomes = Vec::with_capacity(self.peers.len());
        while let Some(joined) = sends.join_next().await {
            // The tasks never panic; a cancelled one cannot happen (nothing aborts).
            if let Ok(outcome) = joined {
                outcomes.push(outcome);
            }
        }
        outcomes.sort_by_key(|(pnn, _, _)| *pnn);
        outcomes
    }
}

/// One notice: a connection from our address (peers know nodes by it), the packet,
/// then a clean close so the peer reads it before the end of the stream.
async fn send_notice(from: IpAddr, to: SocketAddr, bytes: &[u8]) -> Result<(), NoticeError> {
    let socket = match to {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .and_then(|socket| socket.bind(SocketAddr::new(from, 0)).map(|()| socket))
    .map_err(|source| NoticeError::Socket { from, source })?;
    let mut stream = socket.connect(to).await.map_err(NoticeError::Connect)?;
    stream.set_nodelay(true).map_err(NoticeError::Send)?;
    stream.write_all(bytes).await.map_err(NoticeError::Send)?;
    stream.shutdown().await.map_err(NoticeError::Send)
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
            LogTarget::Syslog(path) => {
                command.arg(SYSLOG_OPTION).arg(path).stderr(Stdio::null());
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

    /// Clean shutdown, after the daemon released its addresses: sends `exit`. The
    /// guardian outlives us on purpose: once we have exited (our links to the peers
    /// closed) it tells them our addresses are gone, then exits itself.
    pub async fn exit(mut self) {
        if let Err(e) = self.send(&GuardianMessage::Exit).await {
            warn!(error = %e, "cannot tell the address guardian to exit");
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
            (
                GuardianMessage::Identity {
                    pnn: 2,
                    incarnation: 0x00ab_cdef_0123_4567,
                },
                "identity 2 00abcdef01234567\n",
            ),
            (
                GuardianMessage::Nodes {
                    port: 4379,
                    nodes: vec![
                        Some("192.168.20.41".parse().unwrap()),
                        None,
                        Some("fd00::3".parse().unwrap()),
                    ],
                },
                "nodes 4379 192.168.20.41 - fd00::3\n",
            ),
            (
                GuardianMessage::Nodes {
                    port: 1,
                    nodes: vec![],
                },
                "nodes 1\n",
            ),
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
            (
                "identity",
                E::MissingField {
                    verb: "identity",
                    field: "pnn",
                },
            ),
            (
                "identity 0",
                E::MissingField {
                    verb: "identity",
                    field: "incarnation",
                },
            ),
            (
                "identity -1 0000000000000001",
                E::BadNumber {
                    field: "pnn",
                    text: "-1".into(),
                },
            ),
            (
                "identity 0 1",
                E::BadNumber {
                    field: "incarnation",
                    text: "1".into(),
                },
            ),
            (
                "identity 0 +000000000000001",
                E::BadNumber {
                    field: "incarnation",
                    text: "+000000000000001".into(),
                },
            ),
            (
                "identity 0 000000000000000g",
                E::BadNumber {
                    field: "incarnation",
                    text: "000000000000000g".into(),
                },
            ),
            (
                "identity 0 0000000000000001 2",
                E::Trailing { text: "2".into() },
            ),
            (
                "nodes",
                E::MissingField {
                    verb: "nodes",
                    field: "port",
                },
            ),
            (
                "nodes 65536 10.0.0.1",
                E::BadNumber {
                    field: "port",
                    text: "65536".into(),
                },
            ),
            (
                "nodes 4379 10.0.0.1 10.0.0.x",
                E::BadNodeAddress {
                    text: "10.0.0.x".into(),
                },
            ),
            (
                "nodes 4379 10.0.0.1/24",
                E::BadNodeAddress {
                    text: "10.0.0.1/24".into(),
                },
            ),
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

    #[test]
    fn the_notice_needs_identity_and_nodes_and_names_every_other_node() {
        let mut facts = NoticeFacts::default();
        assert_eq!(facts.notice(), Err(NoticeFactsError::NoIdentity));
        facts.apply(&GuardianMessage::Identity {
            pnn: 1,
            incarnation: 7,
        });
        assert_eq!(facts.notice(), Err(NoticeFactsError::NoNodes));
        facts.apply(&GuardianMessage::Nodes {
            port: 4379,
            nodes: vec![Some("10.0.0.1".parse().unwrap()), None],
        });
        assert_eq!(
            facts.notice(),
            Err(NoticeFactsError::NoOwnAddress { pnn: 1 })
        );
        // reloadnodes: the last list counts.
        facts.apply(&GuardianMessage::Nodes {
            port: 4379,
            nodes: vec![
                Some("10.0.0.1".parse().unwrap()),
                Some("10.0.0.2".parse().unwrap()),
                None,
                Some("10.0.0.4".parse().unwrap()),
            ],
        });
        facts.apply(&add("pub0", "10.0.20.101", 24));
        let notice = facts.notice().unwrap();
        assert_eq!(notice.own_addr, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            notice.peers,
            vec![
                (0, "10.0.0.1:4379".parse().unwrap()),
                (3, "10.0.0.4:4379".parse().unwrap())
            ]
        );
        let packet = notice.packet(3);
        assert_eq!((packet.header.srcnode, packet.header.destnode), (1, 3));
        let crate::protocol::Body::ReqMessage(message) = packet.body else {
            panic!("{packet:?}")
        };
        assert_eq!(message.srvid, crate::protocol::control::srvid::DAEMON_GONE);
        assert_eq!(
            crate::protocol::control::DaemonGone::decode(&message.data),
            Ok(crate::protocol::control::DaemonGone {
                pnn: 1,
                incarnation: 7
            })
        );
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
        wait_gone_within(pid, Duration::from_secs(5)).await;
    }

    async fn wait_gone_within(pid: u32, timeout: Duration) {
        let stat = format!("/proc/{pid}/stat");
        let gone = || match std::fs::read_to_string(&stat) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        };
        tokio::time::timeout(timeout, async {
            while !gone() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("guardian {pid} still runs after {timeout:?}"));
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

    /// After `exit` with nothing listed the guardian removes nothing and waits for
    /// its parent to exit before telling the peers; this parent (the test) stays,
    /// so after its wait (5 s) it says it did not tell them, and exits.
    #[tokio::test]
    async fn exit_removes_nothing_and_tells_only_once_the_daemon_is_gone() {
        let log = log_file("exit");
        let guardian = Guardian::start(&guardian_binary(), &LogTarget::File(log.clone()))
            .await
            .unwrap();
        let pid = guardian.pid().unwrap();
        guardian.exit().await;
        wait_gone_within(pid, Duration::from_secs(10)).await;
        let text = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        assert!(text.contains("ctdbd stopped cleanly"), "{text}");
        assert!(text.contains("the peers are not told"), "{text}");
        assert!(!text.contains("removing"), "{text}");
    }

    /// Peers of the notice tests: listeners on 127.0.0.2 and 127.0.0.3 (pnn 1 and 2),
    /// on one port free on both. Node 0 is 127.0.0.1.
    fn peer_listeners() -> (u16, Vec<std::net::TcpListener>) {
        for _ in 0..50 {
            let port = std::net::TcpListener::bind("127.0.0.2:0")
                .and_then(|l| l.local_addr())
                .expect("bind a probe socket on loopback")
                .port();
            let bound: std::io::Result<Vec<_>> = ["127.0.0.2", "127.0.0.3"]
                .iter()
                .map(|ip| std::net::TcpListener::bind((*ip, port)))
                .collect();
            if let Ok(listeners) = bound {
                return (port, listeners);
            }
        }
        panic!("no port free on 127.0.0.2 and 127.0.0.3");
    }

    /// A guardian for node 0 told its identity and the nodes: 127.0.0.1 (itself), the
    /// two listeners, 127.0.0.4 (nothing listens there) and a deleted line.
    async fn guardian_with_peers(log: &Path, port: u16, incarnation: u64) -> Guardian {
        let mut guardian = Guardian::start(&guardian_binary(), &LogTarget::File(log.to_owned()))
            .await
            .unwrap();
        for message in [
            GuardianMessage::Identity {
                pnn: 0,
                incarnation,
            },
            GuardianMessage::Nodes {
                port,
                nodes: ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
                    .iter()
                    .map(|ip| Some(ip.parse().unwrap()))
                    .chain([None])
                    .collect(),
            },
        ] {
            guardian.send(&message).await.unwrap();
        }
        guardian
    }

    /// The connection the guardian made to `listener` (it has exited, so any
    /// connection is already queued), and what it sent.
    fn accepted(listener: &std::net::TcpListener) -> Option<(SocketAddr, Vec<u8>)> {
        use std::io::Read;
        listener.set_nonblocking(true).unwrap();
        let (mut stream, from) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) => panic!("accept: {e}"),
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("the guardian closes");
        Some((from, bytes))
    }

    #[tokio::test]
    async fn a_dead_daemon_is_announced_to_every_peer_from_the_nodes_address() {
        let log = log_file("notice");
        let (port, listeners) = peer_listeners();
        let incarnation = 0x5eed_0000_0000_0001;
        let guardian = guardian_with_peers(&log, port, incarnation).await;
        let pid = guardian.pid().unwrap();
        // Nothing held: every (none) address is gone. The daemon "dies".
        drop(guardian);
        wait_gone(pid).await;
        let text = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        for (pnn, listener) in [1u32, 2].into_iter().zip(&listeners) {
            let (from, bytes) =
                accepted(listener).unwrap_or_else(|| panic!("peer {pnn} not told: {text}"));
            assert_eq!(from.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
            let packet = crate::protocol::Packet::decode(&bytes).expect("one whole packet");
            let expected = Notice {
                pnn: 0,
                incarnation,
                own_addr: from.ip(),
                peers: vec![],
            }
            .packet(pnn);
            assert_eq!(packet, expected);
        }
        assert_eq!(
            text.matches("told the peer that ctdbd is dead").count(),
            2,
            "{text}"
        );
        assert!(
            text.contains("could not tell the peer") && text.contains("127.0.0.4"),
            "the peer that does not listen: {text}"
        );
    }

    #[tokio::test]
    async fn no_notice_when_an_address_could_not_be_removed() {
        let log = log_file("no-notice");
        let (port, listeners) = peer_listeners();
        let mut guardian = guardian_with_peers(&log, port, 1).await;
        guardian
            .send(&add(NO_IFACE, "192.0.2.9", 32))
            .await
            .unwrap();
        let pid = guardian.pid().unwrap();
        drop(guardian);
        wait_gone(pid).await;
        let text = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        assert!(text.contains("not telling the peers"), "{text}");
        for listener in &listeners {
            assert!(accepted(listener).is_none(), "a peer was told: {text}");
        }
    }

    #[tokio::test]
    async fn an_unfinished_last_line_is_ignored() {
        let log = log_file("unfinished");
        let (port, listeners) = peer_listeners();
        let mut guardian = Guardian::start(&guardian_binary(), &LogTarget::File(log.clone()))
            .await
            .unwrap();
        guardian
            .send(&GuardianMessage::Identity {
                pnn: 0,
                incarnation: 1,
            })
            .await
            .unwrap();
        // The daemon dies halfway through the nodes line: it must not count, even
        // though what arrived would parse (naming fewer peers).
        guardian
            .stdin
            .write_all(format!("nodes {port} 127.0.0.1 127.0.0.2").as_bytes())
            .await
            .unwrap();
        let pid = guardian.pid().unwrap();
        drop(guardian);
        wait_gone(pid).await;
        let text = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        assert!(text.contains("ignoring an unfinished last line"), "{text}");
        assert!(text.contains("never sent the nodes list"), "{text}");
        for listener in &listeners {
            assert!(accepted(listener).is_none(), "a peer was told: {text}");
        }
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
