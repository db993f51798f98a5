//! The tickle task: one per daemon. It tickles the clients of every address this
//! node takes and, where this node's kernel's reset does not reach a client, resets
//! the client itself (the "tickle reset fallback", tunable `TickleResetFallback`).
//!
//! ```text
//!  core task ── Output::Tickle ──> Tickler::tickle ── queue ──> tickle task
//!                                                               │ TickleTable (pure):
//!                                                               │ when to tickle,
//!                                                               │ which answer to reset
//!    raw AF_INET / AF_INET6 IPPROTO_TCP receive sockets ───────>│ (open only while
//!    (every TCP segment arriving at this node, copied)          │  a pair is watched)
//!                                                               v
//!                        tickles and resets ── Announcer (IPPROTO_RAW sockets)
//! ```
//!
//! Why one task with one receive socket per family: a raw TCP socket gets a copy of
//! every TCP segment arriving at this node, whatever its destination. One socket
//! for every watched connection would copy each segment once per connection; one
//! socket, demultiplexed through the table's map of (server, client) pairs, copies it
//! once. And the socket exists only for the seconds after a takeover while some pair
//! is watched, and its filter ([`super::filter`]) lets in only segments without
//! payload to a watched public address, cut to their headers.
//!
//! Before sending a reset of its own, the task asks the kernel whether this node
//! still holds the connection ([`super::sockdiag`]): then the client's ACKs are
//! answered by that connection, not by a reset, and it must be left alone.
//!
//! The decisions are the table's ([`super::tickle`], pure and unit-tested); this
//! module reads the clock and the sockets and carries them out. Needs `CAP_NET_RAW`.

use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use nix::sys::socket::{
    self, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrIn6,
};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, trace, warn, Instrument};

use super::filter;
use super::send::Announcer;
use super::sockdiag;
use super::tcp::{self, Segment};
use super::tickle::{Answer, TickleTable};
use crate::tunables::{keys, Tunables};

/// Bytes read of each received packet: an IPv4 header with the longest options (60)
/// and the TCP header's fixed part (20) fit; the filter cuts the rest off in the
/// kernel.
pub(super) const RECEIVE_LEN: usize = 128;

/// Packets read per wake-up before the task looks at its queue and timers again.
const RECEIVE_BATCH: usize = 64;

/// Requests taken from the queue per wake-up.
const REQUEST_BATCH: usize = 1024;

/// The handle of the tickle task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tickler {
    /// Unbounded, so the core task never waits here: it sends one request per
    /// registered connection of an address it has just taken, which is bounded by
    /// the connection lists the core already holds, and the task takes requests in
    /// batches of [`REQUEST_BATCH`] whenever it wakes.
    requests: mpsc::UnboundedSender<(SocketAddr, SocketAddr)>,
}

impl Tickler {
    /// Starts the tickle task on `tracker`; it stops when `cancel` fires. With
    /// `TickleResetFallback` off it only tickles (the three first tickles) and never
    /// opens a receive socket. `tunables` are the current values: the switch is read
    /// whenever tickles are asked for, so `ctdb setvar` applies to the next ones.
    pub fn start(
        announcer: Announcer,
        tunables: watch::Receiver<Tunables>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Self {
        let (requests, queue) = mpsc::unbounded_channel();
        tracker.spawn(run(announcer, tunables, queue, cancel).in_current_span());
        Self { requests }
    }

    /// Tickles `client` from `server` (our public address and port), and with the
    /// fallback on watches its answers. Returns at once.
    pub fn tickle(&self, server: SocketAddr, client: SocketAddr) {
        if self.requests.send((server, client)).is_err() {
            debug!(%server, %client, "tickle task stopped; not tickled");
        }
    }
}

/// A receive socket, the addresses its filter lets in, and whether its last open
/// failed (logged once, tried again once nothing is watched and a pair comes).
#[derive(Default)]
struct Receiver {
    socket: Option<AsyncFd<OwnedFd>>,
    filtered: Option<Vec<IpAddr>>,
    failed: bool,
}

impl Receiver {
    /// Opens or closes the socket as `wanted` says, and keeps its filter letting in
    /// segments to the table's public addresses of this family.
    fn follow(&mut self, wanted: bool, table: &TickleTable, family: Family) {
        match (&self.socket, wanted) {
            (None, true) if !self.failed => match open_receiver(family) {
                Ok(socket) => {
                    debug!(?family, "tickle watch: receive socket opened");
                    self.socket = Some(socket);
                    self.filtered = None;
                }
                Err(e) => {
                    error!(?family, error = %e, "tickle watch: cannot open a receive socket; tickling without the reset fallback");
                    self.failed = true;
                }
            },
            (Some(_), false) => {
                self.socket = None;
                debug!(?family, "tickle watch: receive socket closed");
            }
            (None, false) => self.failed = false,
            _ => {}
        }
        let Some(socket) = &self.socket else { return };
        let servers: Vec<IpAddr> = table
            .servers()
            .filter(|ip| ip.is_ipv4() == matches!(family, Family::Ipv4))
            .collect();
        if self.filtered.as_ref() == Some(&servers) {
            return;
        }
        let program = match family {
            Family::Ipv4 => {
                let v4: Vec<Ipv4Addr> = servers
                    .iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V4(v4) => Some(*v4),
                        IpAddr::V6(_) => None,
                    })
                    .collect();
                filter::ipv4(&v4, RECEIVE_LEN as u32)
            }
            Family::Ipv6 => {
                let v6: Vec<Ipv6Addr> = servers
                    .iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V6(v6) => Some(*v6),
                        IpAddr::V4(_) => None,
                    })
                    .collect();
                filter::ipv6(&v6, RECEIVE_LEN as u32)
            }
        };
        // Still correct without the filter (the table ignores what it does not
        // watch), only costlier: warn, and do not try again for the same set.
        if let Err(e) = attach_filter(socket.get_ref(), &program) {
            warn!(?family, error = %e, "tickle watch: cannot filter the receive socket; it gets every TCP segment");
        }
        self.filtered = Some(servers);
    }
}

/// The address family of a receive socket.
#[derive(Debug, Clone, Copy)]
pub(super) enum Family {
    /// `AF_INET`.
    Ipv4,
    /// `AF_INET6`.
    Ipv6,
}

async fn run(
    announcer: Announcer,
    tunables: watch::Receiver<Tunables>,
    mut queue: mpsc::UnboundedReceiver<(SocketAddr, SocketAddr)>,
    cancel: CancellationToken,
) {
    let fallback = || tunables.borrow().enabled(keys::TICKLE_RESET_FALLBACK);
    let mut table = TickleTable::new(fallback());
    let mut ipv4 = Receiver::default();
    let mut ipv6 = Receiver::default();
    loop {
        let due = table.handle_timeout(Instant::now());
        // Open before the first tickle of a pair goes out: its answer can be back
        // within a millisecond, and a Linux client answers only once per 500 ms.
        // Close once nothing is watched.
        ipv4.follow(table.watching_ipv4(), &table, Family::Ipv4);
        ipv6.follow(table.watching_ipv6(), &table, Family::Ipv6);
        for (server, client) in due {
            if let Err(e) = announcer.tickle(server, client) {
                warn!(%server, %client, error = %e, "tickle failed");
            }
        }
        let deadline = table.poll_timeout();
        tokio::select! {
            _ = cancel.cancelled() => break,
            request = queue.recv() => {
                let Some((server, client)) = request else { break };
                let now = Instant::now();
                table.set_fallback(fallback());
                table.tickle(server, client, now);
                for _ in 1..REQUEST_BATCH {
                    let Ok((server, client)) = queue.try_recv() else { break };
                    table.tickle(server, client, now);
                }
            }
            _ = sleep_until(deadline) => {}
            guard = readable(&ipv4.socket) => {
                receive_batch(guard, Family::Ipv4, &mut table, &announcer);
            }
            guard = readable(&ipv6.socket) => {
                receive_batch(guard, Family::Ipv6, &mut table, &announcer);
            }
        }
    }
    debug!(pairs = table.len(), "tickle task stopped");
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn readable(socket: &Option<AsyncFd<OwnedFd>>) -> io::Result<AsyncFdReadyGuard<'_, OwnedFd>> {
    match socket {
        Some(socket) => socket.readable().await,
        None => std::future::pending().await,
    }
}

/// Reads up to [`RECEIVE_BATCH`] packets and acts on what the table makes of each.
fn receive_batch(
    guard: io::Result<AsyncFdReadyGuard<'_, OwnedFd>>,
    family: Family,
    table: &mut TickleTable,
    announcer: &Announcer,
) {
    let mut guard = match guard {
        Ok(guard) => guard,
        Err(e) => {
            error!(?family, error = %e, "tickle watch: waiting on the receive socket failed");
            return;
        }
    };
    let mut buf = [0u8; RECEIVE_LEN];
    for _ in 0..RECEIVE_BATCH {
        let segment = match guard.try_io(|socket| receive(socket.get_ref(), family, &mut buf)) {
            // Nothing more queued; readiness is cleared.
            Err(_would_block) => return,
            Ok(Err(e)) => {
                warn!(?family, error = %e, "tickle watch: receiving failed");
                guard.clear_ready();
                return;
            }
            Ok(Ok(Err(e))) => {
                trace!(?family, error = %e, "tickle watch: unreadable packet");
                continue;
            }
            Ok(Ok(Ok(segment))) => segment,
        };
        match table.handle_segment(&segment, Instant::now()) {
            None => {}
            Some(Answer::First { server, client }) => {
                debug!(%server, %client, "client answered the tickle; the kernel resets it")
            }
            Some(Answer::Gone { server, client }) => {
                debug!(%server, %client, "client reset: its connection is gone")
            }
            Some(Answer::Reset {
                server,
                client,
                seq,
                ack,
            }) => fallback_reset(table, announcer, server, client, seq, ack),
        }
    }
}

/// The client answered a tickle again: this node's reset did not reach it. Reset
/// it ourselves, unless this node holds the connection after all.
fn fallback_reset(
    table: &mut TickleTable,
    announcer: &Announcer,
    server: SocketAddr,
    client: SocketAddr,
    seq: u32,
    ack: u32,
) {
    match sockdiag::lookup(server, client) {
        Ok(found) if found.holds_connection() => {
            info!(%server, %client, ?found, "client answered a tickle, but this node holds the connection: not reset");
            table.remove((server, client));
            return;
        }
        Ok(_) => {}
        // Not knowing is no reason to leave the client hanging: a node that took
        // the address a moment ago is very unlikely to hold its old connections.
        Err(e) => {
            warn!(%server, %client, error = %e, "cannot ask the kernel for the connection; resetting anyway")
        }
    }
    match announcer.reset(server, client, seq, ack) {
        Ok(()) => info!(
            %server,
            %client,
            seq,
            "tickle reset fallback: the client still answers, so this node's own reset \
             did not reach it; sent a reset"
        ),
        Err(e) => warn!(%server, %client, error = %e, "tickle reset fallback failed"),
    }
}

/// A raw TCP receive socket of `family`: non-blocking, and for IPv6 with the
/// destination of each segment (`IPV6_PKTINFO`), which the IPv6 socket does not
/// otherwise give (it hands over the TCP header without the IPv6 header). It takes
/// in every TCP segment until a filter is attached.
#[allow(unsafe_code)]
pub(super) fn open_receiver(family: Family) -> io::Result<AsyncFd<OwnedFd>> {
    let domain = match family {
        Family::Ipv4 => AddressFamily::Inet,
        Family::Ipv6 => AddressFamily::Inet6,
    };
    let fd = socket::socket(
        domain,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )?;
    if let Family::Ipv6 = family {
        socket::setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)?;
    }
    // SAFETY: `fd` is an open socket that the AsyncFd takes by value and owns from
    // here on; nothing else holds it, so it stays open, and the same descriptor,
    // until the AsyncFd is dropped (which deregisters it before closing it).
    Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
}

/// Replaces the socket filter of `fd` with `program` (`SO_ATTACH_FILTER`).
#[allow(unsafe_code)]
pub(super) fn attach_filter(fd: &OwnedFd, program: &[filter::Insn]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let prog = libc::sock_fprog {
        len: u16::try_from(insns.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter too long"))?,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: `prog` is a live, fully initialised sock_fprog whose `filter` points
    // at `insns`, `len` instructions long and alive for the call; we pass its exact
    // size. The kernel copies the program during the call and keeps no pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::from_ref(&prog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one packet. The outer error is the socket's (`WouldBlock` when nothing
/// is queued); the inner one says the packet was not a readable TCP segment.
pub(super) fn receive(
    fd: &OwnedFd,
    family: Family,
    buf: &mut [u8],
) -> io::Result<Result<Segment, tcp::TcpDecodeError>> {
    match family {
        Family::Ipv4 => {
            // A datagram longer than `buf` is cut to it, which is all we read.
            let n = socket::recv(fd.as_raw_fd(), buf, MsgFlags::empty())?;
            Ok(tcp::parse_ipv4(&buf[..n]))
        }
        Family::Ipv6 => {
            let mut control = nix::cmsg_space!(libc::in6_pktinfo);
            let (n, src, dst) = {
                let mut iov = [IoSliceMut::new(buf)];
                let msg = socket::recvmsg::<SockaddrIn6>(
                    fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut control),
                    MsgFlags::empty(),
                )?;
                let dst = msg.cmsgs()?.find_map(|c| match c {
                    ControlMessageOwned::Ipv6PacketInfo(info) => {
                        Some(Ipv6Addr::from(info.ipi6_addr.s6_addr))
                    }
                    _ => None,
                });
                (msg.bytes, msg.address.map(|a| a.ip()), dst)
            };
            let (Some(src), Some(dst)) = (src, dst) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "IPv6 segment without its addresses",
                ));
            };
            Ok(tcp::parse_tcp(
                IpAddr::V6(src),
                IpAddr::V6(dst),
                &buf[..n.min(buf.len())],
            ))
        }
    }
}
