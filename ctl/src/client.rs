//! A synchronous connection to the local daemon's Unix socket, speaking the client
//! side of CTDB's protocol the way the 4.17 `ctdb` tool does
//! (reference/ctdb-protocol-core.md §2.2, §4.1, §4.2, §4.5, §5.2.1).
//!
//! It owns the socket, the request-id counter, the per-control read timeout (`-t`)
//! and what the daemon has told us unasked (leader broadcasts). It knows nothing of
//! commands or output; `commands/` builds on [`Client::control`] and
//! [`Client::wait_leader`]. Errors carry the facts the tool prints (control name,
//! node, errno) so that `main` can reproduce 4.17's messages and exit codes.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ctdbd::protocol::call::ReqCall;
use ctdbd::protocol::control::{
    decode_i32, decode_u32, srvid, DisableMessage, NodeMap, SrvidMessage,
};
use ctdbd::protocol::packet::{BROADCAST_CONNECTED, CURRENT_NODE, UNKNOWN_PNN};
use ctdbd::protocol::{Body, Framer, Header, Opcode, Packet, ReqControl, ReqMessage};

/// The first request id the stock client library hands out (INT_MAX − 199, §3.3).
const FIRST_REQID: u32 = 2_147_483_448;
/// Request flag: the daemon sends no reply (§4.1).
const FLAG_NOREPLY: u32 = 0x1;
/// errno values the stock tool reports for transport failures (§5.2).
const ETIMEDOUT: i32 = 110;
const EMSGSIZE: i32 = 90;
const EPROTO: i32 = 71;
/// The tool's own reply srvids: TOOL_RANGE with 0x0001 in the next 16 bits (§5.2.1).
const TOOL_REPLY_SRVIDS: u64 = srvid::TOOL_RANGE | 0x0001_0000_0000_0000;

/// Why talking to the daemon failed. After any of these the connection is unusable
/// except for [`ClientError::ControlStatus`], which is the daemon's answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected; nothing was sent.
    #[error("connect() failed, errno={errno}\nFailed to connect to CTDB daemon ({})", .path.display())]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// The OS error number.
        errno: i32,
    },
    /// A control got no usable reply: timeout (110), bad size (90) or I/O errno.
    #[error("Control {name} failed to node {pnn}, ret={errno}")]
    Transport {
        /// CTDB's name of the control.
        name: &'static str,
        /// The node it was addressed to.
        pnn: u32,
        /// errno-style code, also the exit status.
        errno: i32,
    },
    /// The daemon answered a control with a non-zero status.
    #[error("Control {name} failed, ret={status}")]
    ControlStatus {
        /// CTDB's name of the control.
        name: &'static str,
        /// The reply's status.
        status: i32,
    },
    /// The daemon closed the socket, or did not answer the first GET_PNN. 4.17 logs
    /// these only at hidden levels and exits 1.
    #[error("")]
    Closed,
    /// The failure was already reported on stderr as it happened (the node map
    /// fetch of `commands`); exit 1.
    #[error("")]
    Reported,
}

impl ClientError {
    /// The process exit status 4.17 uses for this failure: the code truncated to
    /// 8 bits, with −1 (and any other value whose low byte is 0) mapped to 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Connect { .. } | Self::Closed | Self::Reported => 1,
            Self::Transport { errno, .. } => status_exit_code(*errno),
            Self::ControlStatus { status, .. } => status_exit_code(*status),
        }
    }
}

/// The exit code the tool derives from a failed status: −1 → 1, else the low 8 bits
/// (a status whose low byte is 0 would read as success, so it also becomes 1).
pub fn status_exit_code(status: i32) -> i32 {
    if status == -1 {
        return 1;
    }
    match status & 0xff {
        0 => 1,
        code => code,
    }
}

/// Where the daemon's socket is (§7): `CTDB_SOCKET`, else under the run directory,
/// which test mode moves to `$CTDB_BASE/run`.
pub fn socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os("CTDB_SOCKET") {
        return PathBuf::from(path);
    }
    if std::env::var_os("CTDB_TEST_MODE").is_some() {
        if let Some(base) = std::env::var_os("CTDB_BASE") {
            return Path::new(&base).join("run/ctdbd.socket");
        }
    }
    PathBuf::from("/run/ctdb/ctdbd.socket")
}

/// A connected client after the prologue's GET_PNN: `pnn` is the daemon's node.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    framer: Framer,
    buf: Vec<u8>,
    pnn: u32,
    next_reqid: u32,
    timeout: Duration,
    leader: Option<u32>,
    messages: VecDeque<ReqMessage>,
    last_srvid: u64,
    /// A srvid whose messages are all kept, however many: a traverse's records.
    stream_srvid: Option<u64>,
}

/// A control's reply: its status and data.
pub type StatusAndData = (i32, Vec<u8>);

/// How a request answered over messages ([`Client::ipreallocate`],
/// [`Client::disable_op`]) went wrong.
#[derive(Debug, thiserror::Error)]
pub enum MessageOpError {
    /// Registering, sending or deregistering failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A node answered with this negative value.
    #[error("refused with {0}")]
    Refused(i32),
}

impl Client {
    /// Connects to `path` and asks the daemon for its PNN (GET_PNN to CURRENT_NODE
    /// with srcnode unknown, §2.2). `timeout` bounds each control's wait for a reply.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|e| ClientError::Connect {
            path: path.to_path_buf(),
            errno: e.raw_os_error().unwrap_or(0),
        })?;
        let mut client = Self {
            stream,
            framer: Framer::for_clients(),
            buf: Vec::new(),
            pnn: UNKNOWN_PNN,
            next_reqid: FIRST_REQID,
            timeout,
            leader: None,
            messages: VecDeque::new(),
            last_srvid: tool_srvid_base(std::process::id()),
            stream_srvid: None,
        };
        // 4.17 reports a failed GET_PNN only at debug level: silent exit 1.
        let status = client
            .control_status(CURRENT_NODE, Opcode::GET_PNN, 0, &[])
            .map_err(|_| ClientError::Closed)?;
        client.pnn = status as u32;
        Ok(client)
    }

    /// The daemon's PNN, as GET_PNN reported it.
    pub fn pnn(&self) -> u32 {
        self.pnn
    }

    /// The `-t` timeout in whole seconds.
    pub fn timelimit_secs(&self) -> u32 {
        u32::try_from(self.timeout.as_secs()).unwrap_or(u32::MAX)
    }

    /// Registers for the leader broadcast (prologue step 5).
    pub fn register_leader(&mut self) -> Result<(), ClientError> {
        self.control_ok(self.pnn, Opcode::REGISTER_SRVID, srvid::LEADER, &[])
            .map(drop)
    }

    /// Fetches the node map from `pnn`.
    pub fn nodemap_from(&mut self, pnn: u32) -> Result<NodeMap, ClientError> {
        let data = self.control_ok(pnn, Opcode::GET_NODEMAP, 0, &[])?;
        NodeMap::decode(&data).map_err(|_| bad_reply(Opcode::GET_NODEMAP, pnn))
    }

    /// Sends a control and returns its reply data, failing on a non-zero status.
    pub fn control_ok(
        &mut self,
        dest: u32,
        opcode: Opcode,
        srvid: u64,
        data: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let (status, data) = self.control(dest, opcode, srvid, data)?;
        if status != 0 {
            return Err(ClientError::ControlStatus {
                name: opcode.name(),
                status,
            });
        }
        Ok(data)
    }

    /// Sends a control whose result is the status (PING, GET_PID, ...), failing on a
    /// negative status.
    pub fn control_status(
        &mut self,
        dest: u32,
        opcode: Opcode,
        srvid: u64,
        data: &[u8],
    ) -> Result<i32, ClientError> {
        let (status, _) = self.control(dest, opcode, srvid, data)?;
        if status < 0 && opcode != Opcode::GET_PID {
            return Err(ClientError::ControlStatus {
                name: opcode.name(),
                status,
            });
        }
        Ok(status)
    }

    /// Sends a control to `dest` and waits (at most the `-t` timeout; `-t 0` means no
    /// limit, as in 4.17) for its reply; returns the status and the reply data.
    /// Messages arriving meanwhile are kept.
    pub fn control(
        &mut self,
        dest: u32,
        opcode: Opcode,
        srvid: u64,
        data: &[u8],
    ) -> Result<(i32, Vec<u8>), ClientError> {
        let reqid = self.send_control(dest, opcode, srvid, 0, data)?;
        let deadline = if self.timeout.is_zero() {
            None
        } else {
            Some(Instant::now() + self.timeout)
        };
        let pnn = if dest == CURRENT_NODE { self.pnn } else { dest };
        loop {
            let packet = self
                .read_packet(deadline)
                .map_err(|e| e.into_client_error(opcode, pnn))?;
            match packet {
                Packet {
                    header,
                    body: Body::ReplyControl(reply),
                } if header.reqid == reqid => return Ok((reply.status, reply.data)),
                Packet {
                    body: Body::ReqMessage(msg),
                    ..
                } => self.note_message(msg),
                _ => {} // stray replies and other operations are ignored, as 4.17 does
            }
        }
    }

    /// Sends a record call (REQ_CALL) to the local daemon and waits, without a
    /// deadline (the client library sets none), for its answer: the REPLY_CALL's
    /// status, or a REPLY_ERROR's status as the error.
    pub fn call(&mut self, request: ReqCall) -> Result<i32, ClientError> {
        let reqid = self.next_reqid;
        self.next_reqid = self.next_reqid.wrapping_add(1);
        let packet = Packet {
            header: Header {
                generation: 0,
                destnode: CURRENT_NODE,
                srcnode: self.pnn,
                reqid,
            },
            body: Body::ReqCall(request),
        };
        self.stream
            .write_all(&packet.encode())
            .map_err(|_| ClientError::Closed)?;
        loop {
            match self.read_packet(None) {
                Ok(Packet {
                    header,
                    body: Body::ReplyCall(reply),
                }) if header.reqid == reqid => return Ok(reply.status),
                Ok(Packet {
                    header,
                    body: Body::ReplyError(e),
                }) if header.reqid == reqid => {
                    return Err(ClientError::ControlStatus {
                        name: "CALL",
                        status: e.status,
                    })
                }
                Ok(Packet {
                    body: Body::ReqMessage(msg),
                    ..
                }) => self.note_message(msg),
                Ok(_) => {}
                Err(_) => return Err(ClientError::Closed),
            }
        }
    }

    /// Sends a control with NOREPLY: no answer is awaited (§4.1).
    pub fn control_noreply(&mut self, dest: u32, opcode: Opcode) -> Result<(), ClientError> {
        self.send_control(dest, opcode, 0, FLAG_NOREPLY, &[])
            .map(drop)
    }

    fn send_control(
        &mut self,
        dest: u32,
        opcode: Opcode,
        srvid: u64,
        flags: u32,
        data: &[u8],
    ) -> Result<u32, ClientError> {
        let reqid = self.next_reqid;
        self.next_reqid = self.next_reqid.wrapping_add(1);
        let packet = Packet {
            header: Header {
                generation: 0,
                destnode: dest,
                srcnode: self.pnn,
                reqid,
            },
            body: Body::ReqControl(ReqControl {
                opcode: opcode.0,
                srvid,
                client_id: 0,
                flags,
                data: data.to_vec(),
            }),
        };
        let pnn = if dest == CURRENT_NODE { self.pnn } else { dest };
        self.stream
            .write_all(&packet.encode())
            .map_err(|e| match e.kind() {
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => ClientError::Closed,
                _ => ClientError::Transport {
                    name: opcode.name(),
                    pnn,
                    errno: e.raw_os_error().unwrap_or(EPROTO),
                },
            })?;
        Ok(reqid)
    }

    /// The leader PNN: the last broadcast seen, else wait up to `-t` for one that
    /// names a node (0xFFFFFFFF means "election under way" and is ignored). `None`
    /// when none came in time, which 4.17 prints as UNKNOWN.
    pub fn wait_leader(&mut self) -> Result<Option<u32>, ClientError> {
        if self.leader.is_some() {
            return Ok(self.leader);
        }
        let deadline = Some(Instant::now() + self.timeout);
        while self.leader.is_none() {
            match self.read_packet(deadline) {
                Ok(Packet {
                    body: Body::ReqMessage(msg),
                    ..
                }) => self.note_message(msg),
                Ok(_) => {}
                Err(ReadError::Timeout) => break,
                Err(ReadError::Closed) => return Err(ClientError::Closed),
                Err(_) => break,
            }
        }
        Ok(self.leader)
    }

    /// A fresh private reply srvid: the per-process base plus 1, 2, 3… (§5.2.1).
    pub fn next_reply_srvid(&mut self) -> u64 {
        self.last_srvid = self.last_srvid.wrapping_add(1);
        self.last_srvid
    }

    /// Asks the local daemon to pass us messages sent to `id` (REGISTER_SRVID).
    pub fn register_srvid(&mut self, id: u64) -> Result<(), ClientError> {
        self.control_ok(self.pnn, Opcode::REGISTER_SRVID, id, &[])
            .map(drop)
    }

    /// Keeps every message for `id` (none is dropped when many wait), until called
    /// again with `None`: for streams such as a traverse's records.
    pub fn set_stream_srvid(&mut self, id: Option<u64>) {
        self.stream_srvid = id;
    }

    /// Undoes [`Client::register_srvid`] and drops anything queued for `id`.
    pub fn deregister_srvid(&mut self, id: u64) -> Result<(), ClientError> {
        self.messages.retain(|m| m.srvid != id);
        self.control_ok(self.pnn, Opcode::DEREGISTER_SRVID, id, &[])
            .map(drop)
    }

    /// Sends a message (REQ_MESSAGE) for `id` to `dest`, which may be a broadcast
    /// address. Messages have no reply of their own, but, as with 4.17's client
    /// library, each one takes the next request id and carries it in its header.
    pub fn send_message(&mut self, dest: u32, id: u64, data: &[u8]) -> Result<(), ClientError> {
        let reqid = self.next_reqid;
        self.next_reqid = self.next_reqid.wrapping_add(1);
        let packet = Packet {
            header: Header {
                generation: 0,
                destnode: dest,
                srcnode: self.pnn,
                reqid,
            },
            body: Body::ReqMessage(ReqMessage {
                srvid: id,
                data: data.to_vec(),
            }),
        };
        self.stream
            .write_all(&packet.encode())
            .map_err(|e| match e.kind() {
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => ClientError::Closed,
                _ => ClientError::Transport {
                    name: "REQ_MESSAGE",
                    pnn: dest,
                    errno: e.raw_os_error().unwrap_or(EPROTO),
                },
            })
    }

    /// The next message for `id` whose data is a 4-byte i32 (the only replies the
    /// tool accepts, §8.2), waiting until `deadline` (`None`: for ever). `Ok(None)`
    /// when the deadline passed first.
    pub fn wait_i32_reply(
        &mut self,
        id: u64,
        deadline: Option<Instant>,
    ) -> Result<Option<i32>, ClientError> {
        loop {
            if let Some(pos) = self.messages.iter().position(|m| m.srvid == id) {
                let msg = self.messages.remove(pos).unwrap_or_else(|| unreachable!());
                match decode_i32(&msg.data, "reply") {
                    Ok(value) => return Ok(Some(value)),
                    Err(_) => continue, // other sizes are ignored, as 4.17 does
                }
            }
            match self.read_packet(deadline) {
                Ok(Packet {
                    body: Body::ReqMessage(msg),
                    ..
                }) => self.note_message(msg),
                Ok(_) => {}
                Err(ReadError::Timeout) => return Ok(None),
                Err(e) => return Err(e.into_client_error(Opcode::REGISTER_SRVID, self.pnn)),
            }
        }
    }

    /// The data of the next message for `id`, whatever its size, waiting until
    /// `deadline` (`None`: for ever). `Ok(None)` when the deadline passed first.
    pub fn wait_message(
        &mut self,
        id: u64,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        loop {
            if let Some(pos) = self.messages.iter().position(|m| m.srvid == id) {
                let msg = self.messages.remove(pos).unwrap_or_else(|| unreachable!());
                return Ok(Some(msg.data));
            }
            match self.read_packet(deadline) {
                Ok(Packet {
                    body: Body::ReqMessage(msg),
                    ..
                }) => self.note_message(msg),
                Ok(_) => {}
                Err(ReadError::Timeout) => return Ok(None),
                Err(e) => return Err(e.into_client_error(Opcode::REGISTER_SRVID, self.pnn)),
            }
        }
    }

    /// The deadline one `-t` from now (`None` for `-t 0`: no limit).
    fn deadline(&self) -> Option<Instant> {
        (!self.timeout.is_zero()).then(|| Instant::now() + self.timeout)
    }

    /// 4.17's "ipreallocate" (§5.2.1): ask the leader for a takeover run and wait
    /// for its answer, asking again after every `-t` without one (for ever: `-T`
    /// ends it). A negative answer is [`MessageOpError::Refused`].
    pub fn ipreallocate(&mut self) -> Result<(), MessageOpError> {
        let reply = self.next_reply_srvid();
        self.register_srvid(reply)?;
        let request = SrvidMessage {
            pnn: self.pnn,
            srvid: reply,
        }
        .encode();
        let result = loop {
            if let Err(e) = self.send_message(BROADCAST_CONNECTED, srvid::TAKEOVER_RUN, &request) {
                break Err(e.into());
            }
            let deadline = self.deadline();
            match self.wait_i32_reply(reply, deadline) {
                Ok(Some(status)) if status >= 0 => break Ok(()),
                Ok(Some(status)) => break Err(MessageOpError::Refused(status)),
                Ok(None) => continue,
                Err(e) => break Err(e.into()),
            }
        };
        // 4.17 drops its handler without waiting for the daemon's answer.
        let _ = self.deregister_srvid(reply);
        result
    }

    /// 4.17's "disable_op" (§5.2.1): send `kind` (DISABLE_TAKEOVER_RUNS or
    /// DISABLE_RECOVERIES) with `timeout` seconds (0 re-enables) to each of `nodes`
    /// and wait up to `-t` until each has answered with its PNN. A negative answer
    /// fails; running out of time counts as success, as it does in 4.17.
    pub fn disable_op(
        &mut self,
        kind: u64,
        timeout: u32,
        nodes: &[u32],
    ) -> Result<(), MessageOpError> {
        let reply = self.next_reply_srvid();
        self.register_srvid(reply)?;
        let request = DisableMessage {
            pnn: self.pnn,
            srvid: reply,
            timeout,
        }
        .encode();
        let result = (|| {
            for &node in nodes {
                self.send_message(node, kind, &request)?;
            }
            let deadline = self.deadline();
            let mut pending: Vec<u32> = nodes.to_vec();
            while !pending.is_empty() {
                match self.wait_i32_reply(reply, deadline)? {
                    None => break,
                    Some(value) if value < 0 => return Err(MessageOpError::Refused(value)),
                    Some(value) => pending.retain(|&p| p != value as u32),
                }
            }
            Ok(())
        })();
        let _ = self.deregister_srvid(reply);
        result
    }

    /// Sends the same data-less control to every node of `nodes` at once, then
    /// collects the replies (one `-t` for all): per node, the status or the failure.
    pub fn control_multi(
        &mut self,
        nodes: &[u32],
        opcode: Opcode,
    ) -> Vec<Result<i32, ClientError>> {
        self.control_multi_data(nodes, opcode, &[])
    }

    /// [`Client::control_multi`] with the same request data for every node.
    pub fn control_multi_data(
        &mut self,
        nodes: &[u32],
        opcode: Opcode,
        data: &[u8],
    ) -> Vec<Result<i32, ClientError>> {
        self.control_multi_replies(nodes, opcode, data)
            .into_iter()
            .map(|r| r.map(|(status, _)| status))
            .collect()
    }

    /// [`Client::control_multi_data`] keeping each reply's data beside its status.
    pub fn control_multi_replies(
        &mut self,
        nodes: &[u32],
        opcode: Opcode,
        data: &[u8],
    ) -> Vec<Result<StatusAndData, ClientError>> {
        let mut results: Vec<Option<Result<StatusAndData, ClientError>>> = Vec::new();
        let mut waiting = Vec::new();
        for (i, &node) in nodes.iter().enumerate() {
            match self.send_control(node, opcode, 0, 0, data) {
                Ok(reqid) => {
                    results.push(None);
                    waiting.push((reqid, i));
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let deadline = self.deadline();
        while !waiting.is_empty() {
            match self.read_packet(deadline) {
                Ok(Packet {
                    header,
                    body: Body::ReplyControl(reply),
                }) => {
                    if let Some(pos) = waiting.iter().position(|&(r, _)| r == header.reqid) {
                        let (_, i) = waiting.swap_remove(pos);
                        results[i] = Some(Ok((reply.status, reply.data)));
                    }
                }
                Ok(Packet {
                    body: Body::ReqMessage(msg),
                    ..
                }) => self.note_message(msg),
                Ok(_) => {}
                Err(e) => {
                    let closed = matches!(e, ReadError::Closed);
                    let errno = match e {
                        ReadError::Timeout => ETIMEDOUT,
                        ReadError::Io(errno) => errno,
                        _ => EPROTO,
                    };
                    for (_, i) in waiting.drain(..) {
                        results[i] = Some(Err(if closed {
                            ClientError::Closed
                        } else {
                            ClientError::Transport {
                                name: opcode.name(),
                                pnn: nodes[i],
                                errno,
                            }
                        }));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
            .collect()
    }

    /// Waits until the daemon closes the socket (after SHUTDOWN to our own node),
    /// without a time limit of its own: `-T` ends the wait.
    pub fn wait_closed(&mut self) {
        let _ = self.stream.set_read_timeout(None);
        let mut scratch = [0u8; 4096];
        loop {
            match self.stream.read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn note_message(&mut self, msg: ReqMessage) {
        if msg.srvid == srvid::LEADER {
            if let Ok(pnn) = decode_u32(&msg.data, "leader.pnn") {
                if pnn != UNKNOWN_PNN {
                    self.leader = Some(pnn);
                }
            }
            return;
        }
        // Replies on our private srvids wait here until asked for; keep the backlog
        // bounded so that a chatty daemon cannot grow us without limit.
        if self.messages.len() < 64 || self.stream_srvid == Some(msg.srvid) {
            self.messages.push_back(msg);
        }
    }

    /// Reads one whole packet, waiting until `deadline` (for ever if `None`).
    fn read_packet(&mut self, deadline: Option<Instant>) -> Result<Packet, ReadError> {
        loop {
            match self.framer.frame_len(&self.buf) {
                Ok(Some(len)) => {
                    let bytes: Vec<u8> = self.buf.drain(..len).collect();
                    return Packet::decode(&bytes).map_err(|_| ReadError::Malformed);
                }
                Ok(None) => {}
                Err(_) => return Err(ReadError::Malformed),
            }
            let wait = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(ReadError::Timeout);
                    }
                    Some(deadline - now)
                }
                None => None,
            };
            self.stream
                .set_read_timeout(wait)
                .map_err(|e| ReadError::Io(e.raw_os_error().unwrap_or(EPROTO)))?;
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(ReadError::Timeout)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(ReadError::Closed),
                Err(e) => return Err(ReadError::Io(e.raw_os_error().unwrap_or(EPROTO))),
            }
        }
    }
}

/// The base of this process's reply srvids, before the first increment (§5.2.1).
pub fn tool_srvid_base(pid: u32) -> u64 {
    TOOL_REPLY_SRVIDS | (u64::from(pid & 0xFFFF) << 16)
}

/// A reply whose data does not have the control's layout: 4.17 reports EMSGSIZE.
pub fn bad_reply(opcode: Opcode, pnn: u32) -> ClientError {
    ClientError::Transport {
        name: opcode.name(),
        pnn,
        errno: EMSGSIZE,
    }
}

/// Why reading a packet failed.
#[derive(Debug)]
enum ReadError {
    Timeout,
    Closed,
    Malformed,
    Io(i32),
}

impl ReadError {
    fn into_client_error(self, opcode: Opcode, pnn: u32) -> ClientError {
        let errno = match self {
            Self::Closed => return ClientError::Closed,
            Self::Timeout => ETIMEDOUT,
            Self::Malformed => EPROTO,
            Self::Io(errno) => errno,
        };
        ClientError::Transport {
            name: opcode.name(),
            pnn,
            errno,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_status() {
        assert_eq!(status_exit_code(-1), 1);
        assert_eq!(status_exit_code(-22), 234);
        assert_eq!(status_exit_code(90), 90);
        assert_eq!(status_exit_code(256), 1);
    }

    #[test]
    fn errors_print_like_4_17() {
        let e = ClientError::Transport {
            name: "GET_DBMAP",
            pnn: 0,
            errno: 90,
        };
        assert_eq!(e.to_string(), "Control GET_DBMAP failed to node 0, ret=90");
        let e = ClientError::ControlStatus {
            name: "GET_PUBLIC_IP_INFO",
            status: -1,
        };
        assert_eq!(e.to_string(), "Control GET_PUBLIC_IP_INFO failed, ret=-1");
        assert_eq!(e.exit_code(), 1);
        let e = ClientError::Connect {
            path: "/nonexistent".into(),
            errno: 2,
        };
        assert_eq!(
            e.to_string(),
            "connect() failed, errno=2\nFailed to connect to CTDB daemon (/nonexistent)"
        );
    }

    #[test]
    fn daemon_conversation_over_a_socket_pair() {
        // A fake daemon: answers GET_PNN with 3, sends a leader broadcast, then
        // answers PING with 2 clients.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let fake = std::thread::spawn(move || {
            let mut framer_buf = Vec::new();
            let framer = Framer::for_clients();
            let mut answered = 0;
            while answered < 2 {
                let mut chunk = [0u8; 1024];
                let n = theirs.read(&mut chunk).unwrap();
                framer_buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some(len)) = framer.frame_len(&framer_buf) {
                    let bytes: Vec<u8> = framer_buf.drain(..len).collect();
                    let req = Packet::decode(&bytes).unwrap();
                    let Body::ReqControl(c) = req.body else {
                        continue;
                    };
                    let status = if c.opcode == Opcode::GET_PNN.0 { 3 } else { 2 };
                    if c.opcode == Opcode::PING.0 {
                        let msg = Packet {
                            header: Header {
                                generation: 1,
                                destnode: 0,
                                srcnode: 3,
                                reqid: 0,
                            },
                            body: Body::ReqMessage(ReqMessage {
                                srvid: srvid::LEADER,
                                data: 1u32.to_le_bytes().to_vec(),
                            }),
                        };
                        theirs.write_all(&msg.encode()).unwrap();
                    }
                    let reply = Packet {
                        header: Header {
                            generation: 1,
                            destnode: 0,
                            srcnode: 3,
                            reqid: req.header.reqid,
                        },
                        body: Body::ReplyControl(ctdbd::protocol::ReplyControl {
                            status,
                            data: vec![],
                            error: vec![],
                        }),
                    };
                    theirs.write_all(&reply.encode()).unwrap();
                    answered += 1;
                }
            }
        });
        let mut client = Client {
            stream: ours,
            framer: Framer::for_clients(),
            buf: Vec::new(),
            pnn: UNKNOWN_PNN,
            next_reqid: FIRST_REQID,
            timeout: Duration::from_secs(5),
            leader: None,
            messages: VecDeque::new(),
            last_srvid: tool_srvid_base(0x36a6),
            stream_srvid: None,
        };
        let pnn = client
            .control_status(CURRENT_NODE, Opcode::GET_PNN, 0, &[])
            .unwrap();
        assert_eq!(pnn, 3);
        client.pnn = 3;
        assert_eq!(client.control_status(3, Opcode::PING, 0, &[]).unwrap(), 2);
        assert_eq!(client.wait_leader().unwrap(), Some(1));
        fake.join().unwrap();
    }

    #[test]
    fn reply_srvids_carry_the_pid() {
        assert_eq!(tool_srvid_base(0x1_36a6), 0xce01_0000_36a6_0000);
    }

    #[test]
    fn message_requests_wait_for_their_answers() {
        // A fake daemon: every control succeeds; a TAKEOVER_RUN is answered first
        // with a reply of the wrong size (ignored), then with 0; a
        // DISABLE_RECOVERIES with the node number 0 and then 1.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let fake = std::thread::spawn(move || {
            let framer = Framer::for_clients();
            let mut buf = Vec::new();
            let mut seen = Vec::new();
            let send = |theirs: &mut UnixStream, body: Body, reqid: u32| {
                let p = Packet {
                    header: Header {
                        generation: 1,
                        destnode: 0,
                        srcnode: 0,
                        reqid,
                    },
                    body,
                };
                theirs.write_all(&p.encode()).unwrap();
            };
            loop {
                let mut chunk = [0u8; 1024];
                let n = theirs.read(&mut chunk).unwrap();
                if n == 0 {
                    return seen;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some(len)) = framer.frame_len(&buf) {
                    let bytes: Vec<u8> = buf.drain(..len).collect();
                    let req = Packet::decode(&bytes).unwrap();
                    match req.body {
                        Body::ReqControl(c) => {
                            seen.push(format!("control {} {:#x}", c.opcode, c.srvid));
                            let reply = ctdbd::protocol::ReplyControl {
                                status: 0,
                                data: vec![],
                                error: vec![],
                            };
                            send(&mut theirs, Body::ReplyControl(reply), req.header.reqid);
                        }
                        Body::ReqMessage(m) => {
                            seen.push(format!(
                                "message {:#x} to {:#x}",
                                m.srvid, req.header.destnode
                            ));
                            let (to, answers): (u64, Vec<Vec<u8>>) = if m.srvid
                                == srvid::TAKEOVER_RUN
                            {
                                let r = SrvidMessage::decode(&m.data).unwrap();
                                (r.srvid, vec![vec![1, 2], 0i32.to_le_bytes().to_vec()])
                            } else {
                                let r = DisableMessage::decode(&m.data).unwrap();
                                seen.push(format!("timeout {}", r.timeout));
                                (
                                    r.srvid,
                                    vec![0i32.to_le_bytes().to_vec(), 1i32.to_le_bytes().to_vec()],
                                )
                            };
                            for data in answers {
                                let msg = ReqMessage { srvid: to, data };
                                send(&mut theirs, Body::ReqMessage(msg), 0);
                            }
                        }
                        _ => {}
                    }
                }
            }
        });
        let mut client = Client {
            stream: ours,
            framer: Framer::for_clients(),
            buf: Vec::new(),
            pnn: 0,
            next_reqid: FIRST_REQID,
            timeout: Duration::from_secs(5),
            leader: None,
            messages: VecDeque::new(),
            last_srvid: tool_srvid_base(0x36a6),
            stream_srvid: None,
        };
        client.ipreallocate().unwrap();
        client
            .disable_op(srvid::DISABLE_RECOVERIES, 20, &[0, 1])
            .unwrap();
        drop(client);
        let seen = fake.join().unwrap();
        assert_eq!(
            seen,
            [
                "control 23 0xce01000036a60001",
                "message 0xfb00000000000000 to 0xf0000004",
                "control 24 0xce01000036a60001",
                "control 23 0xce01000036a60002",
                "message 0xfb04000000000000 to 0x0",
                "timeout 20",
                "message 0xfb04000000000000 to 0x1",
                "timeout 20",
                "control 24 0xce01000036a60002",
            ]
        );
    }
}
