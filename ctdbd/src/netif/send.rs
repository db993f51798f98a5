//! Raw sockets that put the encoders' packets on the wire: gratuitous ARP and
//! unsolicited neighbour advertisements after taking a public address, tickle ACKs
//! and resets for the clients that were connected to it on the node that lost it.
//!
//! Frames (ARP, NA) go out on an `AF_PACKET` socket addressed to the interface's
//! index, so they leave exactly there, with the Ethernet header we built. TCP
//! segments go out on `IPPROTO_RAW` sockets, which take our IP header as given
//! (source = the public IP) and route by destination. Each call opens its sockets
//! and closes them: calls come a few per takeover, and a fresh socket with a few
//! hundred bytes queued never blocks on its send buffer, so these calls are safe to
//! make from a task. All need `CAP_NET_RAW`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6,
};
use tracing::{debug, trace};

use super::netlink::{Netlink, NetlinkError};
use super::tcp::{self, TcpEncodeError};
use super::{arp, ndp};

/// Announcement rounds after taking an address. One frame can be lost (a switch
/// port still learning after the link came up, a busy segment), and a neighbour
/// that misses every round keeps sending to the old node until its cache entry
/// ages out, which is minutes; three rounds make that unlikely at little cost.
pub const ANNOUNCE_ROUNDS: u32 = 3;

/// Time between announcement rounds: long enough that a brief outage (a bonded
/// interface failing over, spanning tree settling) does not swallow every round.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);

/// Sending failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The interface's index or MAC could not be read: nothing was sent.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// A segment could not be built (mixed address families): nothing was sent; a
    /// bug in the caller.
    #[error(transparent)]
    Encode(#[from] TcpEncodeError),
    /// The announcement could not be sent; neighbours may still point at the old
    /// node until their caches age out.
    #[error("announcing {ip} on {iface}: {source}")]
    Announce {
        /// The interface.
        iface: String,
        /// The public address.
        ip: IpAddr,
        /// The system's error.
        source: io::Error,
    },
    /// A tickle or reset could not be sent; that client stays connected to nothing
    /// until its own timeouts fire.
    #[error("sending {what} from {server} to {client}: {source}")]
    Segment {
        /// "tickle ACK" or "reset".
        what: &'static str,
        /// The public address and port.
        server: SocketAddr,
        /// The client.
        client: SocketAddr,
        /// The system's error.
        source: io::Error,
    },
}

/// Sends announcements, tickles and resets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Announcer {
    netlink: Netlink,
}

impl Announcer {
    /// An announcer that looks interfaces up through `netlink`.
    pub fn new(netlink: Netlink) -> Self {
        Self { netlink }
    }

    /// One round of announcing that `ip` is now on `iface`: a gratuitous ARP request
    /// and reply for IPv4, an unsolicited neighbour advertisement for IPv6.
    pub async fn announce(&self, iface: &str, ip: IpAddr) -> Result<(), SendError> {
        let index = self.netlink.link_index(iface).await?;
        let mac = self.netlink.mac(iface).await?;
        let frames: Vec<Vec<u8>> = match ip {
            IpAddr::V4(v4) => arp::gratuitous_arps(mac, v4)
                .iter()
                .map(|f| f.to_vec())
                .collect(),
            IpAddr::V6(v6) => vec![ndp::unsolicited_na(mac, v6).to_vec()],
        };
        let err = |source| SendError::Announce {
            iface: iface.to_owned(),
            ip,
            source,
        };
        // Protocol 0: a packet socket that sends but never receives, so nothing
        // queues up on it.
        let fd = socket::socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| err(e.into()))?;
        for frame in &frames {
            trace!(iface, %ip, len = frame.len(), "sending announcement frame");
            send_frame(&fd, index, frame).map_err(err)?;
        }
        debug!(iface, %ip, frames = frames.len(), "announced");
        Ok(())
    }

    /// [`ANNOUNCE_ROUNDS`] rounds of [`Announcer::announce`], [`ANNOUNCE_INTERVAL`]
    /// apart. Stops at the first failure: a round that fails for want of an
    /// interface will not succeed a second later. Spawn it to avoid waiting.
    pub async fn announce_burst(&self, iface: &str, ip: IpAddr) -> Result<(), SendError> {
        for round in 0..ANNOUNCE_ROUNDS {
            if round > 0 {
                tokio::time::sleep(ANNOUNCE_INTERVAL).await;
            }
            self.announce(iface, ip).await?;
        }
        Ok(())
    }

    /// Sends a tickle ACK from `server` (the public IP and port) to `client`, which
    /// makes the client's kernel discover that the connection is gone here and
    /// reset it (see [`super::tcp`]).
    pub fn tickle(&self, server: SocketAddr, client: SocketAddr) -> Result<(), SendError> {
        send_tickle_ack(server, client)
    }

    /// Sends a reset from `server` to `client` with the given sequence and
    /// acknowledgment numbers, for when they are known.
    pub fn reset(
        &self,
        server: SocketAddr,
        client: SocketAddr,
        seq: u32,
        ack: u32,
    ) -> Result<(), SendError> {
        let packet = tcp::reset(server, client, seq, ack)?;
        send_segment(server, client, &packet, "reset")
    }
}

/// Sends one tickle ACK from `server` to `client` (no interface lookup is needed:
/// the kernel routes it). Also used by `ctdb tickle`.
pub fn send_tickle_ack(server: SocketAddr, client: SocketAddr) -> Result<(), SendError> {
    let packet = tcp::tickle_ack(server, client)?;
    send_segment(server, client, &packet, "tickle ACK")
}

/// Writes one whole IP packet on a header-included raw socket of its family.
fn send_segment(
    server: SocketAddr,
    client: SocketAddr,
    packet: &[u8],
    what: &'static str,
) -> Result<(), SendError> {
    let err = |source: io::Error| SendError::Segment {
        what,
        server,
        client,
        source,
    };
    // IPPROTO_RAW implies IP_HDRINCL for IPv4 and IPV6_HDRINCL for IPv6 on Linux.
    // The destination's port must be zero: for these sockets the kernel reads a
    // port as a protocol number. The kernel may fill in the IPv4 id and header
    // checksum; ours are already right.
    let family = match client {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket::socket(
        family,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Raw,
    )
    .map_err(|e| err(e.into()))?;
    let sent = match client {
        SocketAddr::V4(c) => socket::sendto(
            fd.as_raw_fd(),
            packet,
            &SockaddrIn::from(std::net::SocketAddrV4::new(*c.ip(), 0)),
            MsgFlags::empty(),
        ),
        SocketAddr::V6(c) => socket::sendto(
            fd.as_raw_fd(),
            packet,
            &SockaddrIn6::from(std::net::SocketAddrV6::new(*c.ip(), 0, 0, c.scope_id())),
            MsgFlags::empty(),
        ),
    }
    .map_err(|e| err(e.into()))?;
    if sent != packet.len() {
        return Err(err(io::Error::new(io::ErrorKind::WriteZero, "short send")));
    }
    trace!(what, %server, %client, "sent");
    Ok(())
}

/// Sends one whole Ethernet frame out of interface `ifindex`.
#[allow(unsafe_code)]
fn send_frame(fd: &OwnedFd, ifindex: u32, frame: &[u8]) -> io::Result<()> {
    // The frame carries its own Ethernet header; sll_protocol and sll_addr are not
    // used for sending on a SOCK_RAW packet socket, only the interface index is.
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: 0,
        sll_ifindex: i32::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index"))?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: `frame` is a live slice and we pass its own pointer and length; `addr`
    // is a live, fully initialised sockaddr_ll and we pass its exact size; `fd` is
    // open for the duration of the call. sendto does not keep either pointer.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            std::ptr::from_ref(&addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    if sent as usize != frame.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}
