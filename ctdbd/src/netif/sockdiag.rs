//! Does this node hold a TCP connection? One exact `sock_diag` lookup
//! (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY` without `NLM_F_DUMP`), asked before
//! the tickle watch sends a reset of its own: where this node still has the
//! connection (its address left and came back while the client kept talking), its
//! kernel handles the client's ACKs itself, and a forged reset would kill a
//! connection that works.
//!
//! [`request`] and [`parse_answer`] are pure and byte-tested; [`lookup`] is the one
//! round trip. Layouts from the kernel's UAPI headers `linux/netlink.h`,
//! `linux/sock_diag.h` and `linux/inet_diag.h`:
//!
//! ```text
//! nlmsghdr, 16 bytes (host byte order):     inet_diag_req_v2, 56 bytes:
//!  0 length | 4 type 20 | 6 flags REQUEST     0 family | 1 protocol 6 | 2 ext 0 | 3 pad
//!  8 sequence | 12 port id 0                  4 states (host order, all)
//!                                             8 inet_diag_sockid, 48 bytes:
//! inet_diag_msg (answer), after nlmsghdr:       0 local port | 2 remote port (big endian)
//!  0 family | 1 state | 2 timer | 3 retrans     4 local address (16) | 20 remote (16)
//!  4 inet_diag_sockid ...                       36 interface | 40 cookie (2 × u32, ~0: any)
//! nlmsgerr (answer, type 2): 0 error (negative errno) | 4 the request's header
//! ```
//! The exact lookup finds an established (or closing) socket of the four-tuple,
//! else a listener of the local port: a listener is no connection.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol};

/// `SOCK_DIAG_BY_FAMILY`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HEADER_LEN: usize = 16;
/// Header plus `inet_diag_req_v2`.
pub const REQUEST_LEN: usize = NLMSG_HEADER_LEN + 56;

/// `TCP_TIME_WAIT`, `TCP_CLOSE` and `TCP_LISTEN` (`include/net/tcp_states.h`).
const TCP_TIME_WAIT: u8 = 6;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;

/// What the kernel said about a four-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No socket of that four-tuple (nor a listener on the port).
    NoSocket,
    /// A socket in this TCP state (`include/net/tcp_states.h`).
    Socket {
        /// The state: 1 established, 6 time-wait, 10 listen, ...
        state: u8,
    },
}

impl Lookup {
    /// Whether this node holds a connection that handles the client's segments
    /// itself: a socket of the four-tuple that is neither a listener nor closed
    /// (time-wait and close have nothing to lose).
    pub fn holds_connection(self) -> bool {
        matches!(self, Lookup::Socket { state } if ![TCP_LISTEN, TCP_TIME_WAIT, TCP_CLOSE].contains(&state))
    }
}

/// The lookup failed: the caller knows nothing of the socket.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// Server and client are of different families; a bug in the caller.
    #[error("server {server} and client {client} are of different address families")]
    MixedFamilies {
        /// Our end.
        server: SocketAddr,
        /// The client.
        client: SocketAddr,
    },
    /// The answer was not a diag message or an error: a kernel we do not understand.
    #[error("unreadable sock_diag answer: {0}")]
    Answer(&'static str),
    /// The kernel refused the request (not ENOENT).
    #[error("sock_diag lookup refused: {0}")]
    Refused(io::Error),
    /// The socket could not be opened, written or read.
    #[error("sock_diag socket: {0}")]
    Io(#[from] io::Error),
}

/// The lookup request for the TCP socket whose local end is `server` and remote end
/// `client`, with netlink sequence number `seq`.
pub fn request(
    server: SocketAddr,
    client: SocketAddr,
    seq: u32,
) -> Result<[u8; REQUEST_LEN], DiagError> {
    let (family, local, remote) = match (server.ip(), client.ip()) {
        (IpAddr::V4(s), IpAddr::V4(c)) => {
            let mut local = [0u8; 16];
            let mut remote = [0u8; 16];
            local[..4].copy_from_slice(&s.octets());
            remote[..4].copy_from_slice(&c.octets());
            (libc::AF_INET as u8, local, remote)
        }
        (IpAddr::V6(s), IpAddr::V6(c)) => (libc::AF_INET6 as u8, s.octets(), c.octets()),
        _ => return Err(DiagError::MixedFamilies { server, client }),
    };
    let mut m = [0u8; REQUEST_LEN];
    m[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    let r = &mut m[NLMSG_HEADER_LEN..];
    r[0] = family;
    r[1] = libc::IPPROTO_TCP as u8;
    r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    let id = &mut r[8..];
    id[0..2].copy_from_slice(&server.port().to_be_bytes());
    id[2..4].copy_from_slice(&client.port().to_be_bytes());
    id[4..20].copy_from_slice(&local);
    id[20..36].copy_from_slice(&remote);
    id[40..48].fill(0xff);
    Ok(m)
}

/// Reads the kernel's answer to [`request`].
pub fn parse_answer(answer: &[u8]) -> Result<Lookup, DiagError> {
    let header = answer
        .get(..NLMSG_HEADER_LEN)
        .ok_or(DiagError::Answer("shorter than a netlink header"))?;
    let kind = u16::from_ne_bytes([header[4], header[5]]);
    let body = &answer[NLMSG_HEADER_LEN..];
    match kind {
        SOCK_DIAG_BY_FAMILY => body
            .get(1)
            .map(|&state| Lookup::Socket { state })
            .ok_or(DiagError::Answer("diag message without a state")),
        NLMSG_ERROR => {
            let errno = body
                .get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(DiagError::Answer("error message without an error"))?;
            match -errno {
                libc::ENOENT => Ok(Lookup::NoSocket),
                0 => Err(DiagError::Answer("an acknowledgment instead of an answer")),
                e => Err(DiagError::Refused(io::Error::from_raw_os_error(e))),
            }
        }
        _ => Err(DiagError::Answer("neither a diag message nor an error")),
    }
}

/// Asks this node's kernel about the TCP socket from `server` to `client`. A few
/// microseconds: the kernel answers while handling the send, so the answer is
/// queued when `send` returns.
pub fn lookup(server: SocketAddr, client: SocketAddr) -> Result<Lookup, DiagError> {
    let message = request(server, client, 1)?;
    let fd = socket::socket(
        AddressFamily::Netlink,
        socket::SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(io::Error::from)?;
    socket::sendto(
        fd.as_raw_fd(),
        &message,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    // inet_diag_msg is 72 bytes and nlmsgerr 36: a page holds either with room.
    let mut buf = [0u8; 4096];
    let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(io::Error::from)?;
    parse_answer(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netif::tests::hex;

    /// Byte layout from `linux/inet_diag.h` (the header fields are host order; the
    /// test machines are little-endian, as the expected bytes say).
    #[test]
    #[cfg(target_endian = "little")]
    fn ipv4_request_bytes() {
        let server: SocketAddr = "192.0.2.10:445".parse().unwrap();
        let client: SocketAddr = "198.51.100.7:50123".parse().unwrap();
        assert_eq!(
            hex(&request(server, client, 7).unwrap()),
            "48000000140001000700000000000000\
             02060000ffffffff\
             01bdc3cb\
             c000020a000000000000000000000000\
             c6336407000000000000000000000000\
             00000000ffffffffffffffff"
        );
    }

    #[test]
    fn ipv6_request_carries_both_addresses() {
        let server: SocketAddr = "[2001:db8::10]:2049".parse().unwrap();
        let client: SocketAddr = "[2001:db8::77]:901".parse().unwrap();
        let m = request(server, client, 1).unwrap();
        assert_eq!(m[16], libc::AF_INET6 as u8);
        assert_eq!(hex(&m[24..28]), "08010385");
        assert_eq!(hex(&m[28..44]), "20010db8000000000000000000000010");
        assert_eq!(hex(&m[44..60]), "20010db8000000000000000000000077");
        assert!(matches!(
            request(server, "192.0.2.1:1".parse().unwrap(), 1),
            Err(DiagError::MixedFamilies { .. })
        ));
    }

    fn answer(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HEADER_LEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn answers_are_read() {
        let enoent = answer(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse_answer(&enoent).unwrap(), Lookup::NoSocket);
        let established = answer(SOCK_DIAG_BY_FAMILY, &[2, 1, 0, 0]);
        assert_eq!(
            parse_answer(&established).unwrap(),
            Lookup::Socket { state: 1 }
        );
        assert!(parse_answer(&established).unwrap().holds_connection());
        for state in [TCP_LISTEN, TCP_TIME_WAIT, TCP_CLOSE] {
            assert!(!Lookup::Socket { state }.holds_connection(), "{state}");
        }
        assert!(!Lookup::NoSocket.holds_connection());
        let eperm = answer(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        assert!(matches!(parse_answer(&eperm), Err(DiagError::Refused(_))));
    }

    #[test]
    fn short_or_odd_answers_are_errors() {
        let full = answer(SOCK_DIAG_BY_FAMILY, &[2, 1]);
        for len in 0..full.len() {
            assert!(parse_answer(&full[..len]).is_err(), "{len} bytes");
        }
        assert!(parse_answer(&answer(NLMSG_ERROR, &[0, 0])).is_err());
        assert!(parse_answer(&answer(NLMSG_ERROR, &0i32.to_ne_bytes())).is_err());
        assert!(parse_answer(&answer(3, &[0; 8])).is_err());
    }
}
