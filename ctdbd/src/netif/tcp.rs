//! Tickle ACKs and resets: TCP segments forged from a public address that has just
//! moved to this node, to the clients that were connected to it on the old node.
//!
//! Pure: builds whole IP packets (header included); [`super::send`] writes them to a
//! raw `IPPROTO_RAW` socket, which takes the header as given.
//!
//! Why a tickle works: after a takeover, a client's connection to the public IP
//! still exists on the client, but not on this node. Left alone, the client sends
//! nothing until it has data, then retransmits for minutes. We send it an ACK with
//! seq 0 and ack 0. The client finds it out of window and answers with an ACK
//! carrying its real sequence numbers (RFC 9293 §3.10.7.4, RFC 5961 §4); that ACK
//! reaches this node, whose kernel has no such connection and answers with a RST
//! whose sequence number is the client's own ack number, so the client accepts it,
//! drops the connection, and its application reconnects at once. [`reset`] is for
//! when the caller knows the sequence numbers and can reset the client directly.
//!
//! ```text
//! IPv4 header (RFC 791), 20 bytes:            IPv6 header (RFC 8200), 40 bytes:
//!  0 0x45 | 1 tos 0 | 2 total length 40         0 0x60 class/flow 0 (4)
//!  4 id 0 | 6 flags DF, offset 0                4 payload length 20 | 6 next 6
//!  8 ttl 64 | 9 protocol 6 | 10 checksum        7 hop limit 64
//! 12 source (server) | 16 destination (client)  8 source (16) | 24 destination (16)
//! TCP header (RFC 9293 §3.1), 20 bytes, right after:
//!  0 source port (server) | 2 destination port (client)
//!  4 sequence number | 8 acknowledgment number
//! 12 data offset 5 | 13 flags | 14 window | 16 checksum | 18 urgent pointer 0
//! ```
//! The IPv4 id is zero with DF set, which RFC 6864 §4.1 allows for atomic datagrams.

use std::net::{IpAddr, SocketAddr};

use super::checksum::{checksum, Checksum};

/// The TCP protocol number.
pub const IPPROTO_TCP: u8 = 6;

/// The ACK flag.
pub const FLAG_ACK: u8 = 0x10;

/// The RST flag.
pub const FLAG_RST: u8 = 0x04;

/// The window a tickle advertises. Any value does: the client rejects the segment
/// as out of window before it looks at the window.
pub const TICKLE_WINDOW: u16 = 1234;

/// Hop limit / TTL of forged segments: the usual Linux default, enough to reach a
/// client behind routers.
const HOP_LIMIT: u8 = 64;

const TCP_HEADER_LEN: usize = 20;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// A segment could not be built: nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TcpEncodeError {
    /// Server and client are of different address families; a bug in the caller.
    #[error("server {server} and client {client} are of different address families")]
    MixedFamilies {
        /// The public address and port.
        server: SocketAddr,
        /// The client's address and port.
        client: SocketAddr,
    },
}

/// The tickle ACK from `server` (the public IP and port) to `client`: ACK set,
/// sequence and acknowledgment numbers zero. Returns the whole IP packet.
pub fn tickle_ack(server: SocketAddr, client: SocketAddr) -> Result<Vec<u8>, TcpEncodeError> {
    segment(server, client, 0, 0, FLAG_ACK, TICKLE_WINDOW)
}

/// A reset from `server` to `client` with the given sequence and acknowledgment
/// numbers; the client accepts it only if `seq` is exactly the next sequence number
/// it expects (RFC 5961 §3). RST and ACK are both set, the form a kernel uses for a
/// connection that had seen traffic. Returns the whole IP packet.
pub fn reset(
    server: SocketAddr,
    client: SocketAddr,
    seq: u32,
    ack: u32,
) -> Result<Vec<u8>, TcpEncodeError> {
    segment(server, client, seq, ack, FLAG_RST | FLAG_ACK, 0)
}

fn segment(
    server: SocketAddr,
    client: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
) -> Result<Vec<u8>, TcpEncodeError> {
    let mut tcp = [0u8; TCP_HEADER_LEN];
    tcp[0..2].copy_from_slice(&server.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&client.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = ((TCP_HEADER_LEN / 4) as u8) << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    let tcp_len = TCP_HEADER_LEN as u16;

    let mut packet = match (server.ip(), client.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let sum = Checksum::new()
                .add_ipv4_pseudo_header(src, dst, IPPROTO_TCP, tcp_len)
                .add(&tcp)
                .finish();
            tcp[16..18].copy_from_slice(&sum.to_be_bytes());
            let mut ip = [0u8; IPV4_HEADER_LEN];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((IPV4_HEADER_LEN + TCP_HEADER_LEN) as u16).to_be_bytes());
            ip[6] = 0x40;
            ip[8] = HOP_LIMIT;
            ip[9] = IPPROTO_TCP;
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            let sum = checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            ip.to_vec()
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let sum = Checksum::new()
                .add_ipv6_pseudo_header(src, dst, IPPROTO_TCP, tcp_len.into())
                .add(&tcp)
                .finish();
            tcp[16..18].copy_from_slice(&sum.to_be_bytes());
            let mut ip = [0u8; IPV6_HEADER_LEN];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&tcp_len.to_be_bytes());
            ip[6] = IPPROTO_TCP;
            ip[7] = HOP_LIMIT;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            ip.to_vec()
        }
        _ => return Err(TcpEncodeError::MixedFamilies { server, client }),
    };
    packet.extend_from_slice(&tcp);
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netif::tests::hex;

    fn v4() -> (SocketAddr, SocketAddr) {
        (
            "192.0.2.10:445".parse().unwrap(),
            "198.51.100.7:50123".parse().unwrap(),
        )
    }

    fn v6() -> (SocketAddr, SocketAddr) {
        (
            "[2001:db8::10]:2049".parse().unwrap(),
            "[2001:db8::77]:901".parse().unwrap(),
        )
    }

    /// Expected bytes made with scapy 2.8.0: `IP(src, dst, id=0, flags="DF",
    /// ttl=64)/TCP(sport=445, dport=50123, seq=0, ack=0, flags="A", window=1234)`.
    #[test]
    fn ipv4_tickle_matches_scapy() {
        let (server, client) = v4();
        assert_eq!(
            hex(&tickle_ack(server, client).unwrap()),
            "450000280000400040064e8bc000020ac6336407\
             01bdc3cb0000000000000000501004d2f9340000"
        );
    }

    /// Expected bytes made with scapy 2.8.0: as above with `seq=0x11223344,
    /// ack=0x55667788, flags="RA", window=0`.
    #[test]
    fn ipv4_reset_matches_scapy() {
        let (server, client) = v4();
        assert_eq!(
            hex(&reset(server, client, 0x1122_3344, 0x5566_7788).unwrap()),
            "450000280000400040064e8bc000020ac6336407\
             01bdc3cb112233445566778850140000ecad0000"
        );
    }

    /// Expected bytes made with scapy 2.8.0: `IPv6(src, dst, hlim=64)/TCP(sport=2049,
    /// dport=901, seq=0, ack=0, flags="A", window=1234)`.
    #[test]
    fn ipv6_tickle_matches_scapy() {
        let (server, client) = v6();
        assert_eq!(
            hex(&tickle_ack(server, client).unwrap()),
            "6000000000140640\
             20010db8000000000000000000000010\
             20010db8000000000000000000000077\
             080103850000000000000000501004d243840000"
        );
    }

    /// Expected bytes made with scapy 2.8.0: as above with `seq=0x11223344,
    /// ack=0x55667788, flags="RA", window=0`.
    #[test]
    fn ipv6_reset_matches_scapy() {
        let (server, client) = v6();
        assert_eq!(
            hex(&reset(server, client, 0x1122_3344, 0x5566_7788).unwrap()),
            "6000000000140640\
             20010db8000000000000000000000010\
             20010db8000000000000000000000077\
             0801038511223344556677885014000036fd0000"
        );
    }

    #[test]
    fn checksums_verify() {
        let (server, client) = v4();
        let packet = tickle_ack(server, client).unwrap();
        assert_eq!(checksum(&packet[..20]), 0, "IPv4 header");
        let (IpAddr::V4(s), IpAddr::V4(c)) = (server.ip(), client.ip()) else {
            unreachable!("v4() gives IPv4 addresses")
        };
        let tcp = Checksum::new()
            .add_ipv4_pseudo_header(s, c, IPPROTO_TCP, 20)
            .add(&packet[20..])
            .finish();
        assert_eq!(tcp, 0, "TCP over IPv4");

        let (server, client) = v6();
        let packet = reset(server, client, 7, 9).unwrap();
        let (IpAddr::V6(s), IpAddr::V6(c)) = (server.ip(), client.ip()) else {
            unreachable!("v6() gives IPv6 addresses")
        };
        let tcp = Checksum::new()
            .add_ipv6_pseudo_header(s, c, IPPROTO_TCP, 20)
            .add(&packet[40..])
            .finish();
        assert_eq!(tcp, 0, "TCP over IPv6");
        assert_eq!(packet[40 + 13], FLAG_RST | FLAG_ACK);
    }

    #[test]
    fn mixed_families_are_refused() {
        let (server, _) = v4();
        let (_, client) = v6();
        assert_eq!(
            tickle_ack(server, client),
            Err(TcpEncodeError::MixedFamilies { server, client })
        );
    }
}
