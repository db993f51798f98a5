//! Tickle ACKs and resets: TCP segments forged from a public address that has just
//! moved to this node, to the clients that were connected to it on the old node.
//!
//! Pure: builds whole IP packets (header included); [`super::send`] writes them to a
//! raw `IPPROTO_RAW` socket, which takes the header as given. Also reads the few
//! fields of a received segment that the tickle watch needs ([`parse_ipv4`],
//! [`parse_tcp`]); [`super::tickler`] feeds it what its raw receive sockets get.
//!
//! Why a tickle works: after a takeover, a client's connection to the public IP
//! still exists on the client, but not on this node. Left alone, the client sends
//! nothing until it has data, then retransmits for minutes. We send it an ACK with
//! seq 0 and ack 0. The client finds it out of window and answers with an ACK
//! carrying its real sequence numbers (RFC 9293 §3.10.7.4, RFC 5961 §4); that ACK
//! reaches this node, whose kernel has no such connection and answers with a RST
//! whose sequence number is the client's own ack number, so the client accepts it,
//! drops the connection, and its application reconnects at once. [`reset`] is for
//! when the caller knows the sequence numbers and can reset the client directly:
//! the client's answer to a tickle carries them (its acknowledgment number is the
//! sequence number it expects), which is what [`super::tickle`] uses where this
//! node's kernel's own RST does not reach the client.
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

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::checksum::{checksum, Checksum};

/// The TCP protocol number.
pub const IPPROTO_TCP: u8 = 6;

/// The ACK flag.
pub const FLAG_ACK: u8 = 0x10;

/// The RST flag.
pub const FLAG_RST: u8 = 0x04;

/// The SYN flag.
pub const FLAG_SYN: u8 = 0x02;

/// The FIN flag.
pub const FLAG_FIN: u8 = 0x01;

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

/// A received segment could not be read: it is ignored. Raw sockets hand us
/// whatever arrives, so none of these is a bug; none panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TcpDecodeError {
    /// Shorter than the header being read.
    #[error("{what} needs {need} bytes, got {got}")]
    Truncated {
        /// "IPv4 header" or "TCP header".
        what: &'static str,
        /// Bytes the header needs.
        need: usize,
        /// Bytes there were.
        got: usize,
    },
    /// The version field is not 4.
    #[error("IP version {0}, not 4")]
    NotIpv4(u8),
    /// The IPv4 header length is below 5 words (RFC 791 §3.1, IHL).
    #[error("IPv4 header length of {0} words, below 5")]
    BadIpHeaderLength(u8),
    /// The protocol is not TCP.
    #[error("IP protocol {0}, not TCP")]
    NotTcp(u8),
    /// A fragment other than the first: it carries no TCP header.
    #[error("a fragment at offset {0} (8-byte units) carries no TCP header")]
    Fragment(u16),
    /// The TCP data offset is below 5 words (RFC 9293 §3.1).
    #[error("TCP data offset of {0} words, below 5")]
    BadDataOffset(u8),
}

/// The fields of a received TCP segment that the tickle watch reads: its ends,
/// numbers and flags. Addresses are canonical (no IPv6 scope or flow label), so
/// they compare equal to the core's connection entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The sender's address and port.
    pub src: SocketAddr,
    /// The receiver's address and port.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful when [`FLAG_ACK`] is set).
    pub ack: u32,
    /// The flag bits (byte 13: CWR ECE URG ACK PSH RST SYN FIN).
    pub flags: u8,
}

impl Segment {
    /// Whether every flag of `mask` is set.
    pub fn has(&self, mask: u8) -> bool {
        self.flags & mask == mask
    }
}

/// Reads a whole IPv4 packet as an `AF_INET` raw socket receives it (header
/// included, in network byte order on Linux). Anything beyond the TCP header's
/// first 20 bytes may be missing: a receiver may truncate to save copying.
pub fn parse_ipv4(packet: &[u8]) -> Result<Segment, TcpDecodeError> {
    if packet.len() < IPV4_HEADER_LEN {
        return Err(TcpDecodeError::Truncated {
            what: "IPv4 header",
            need: IPV4_HEADER_LEN,
            got: packet.len(),
        });
    }
    let version = packet[0] >> 4;
    if version != 4 {
        return Err(TcpDecodeError::NotIpv4(version));
    }
    let ihl = packet[0] & 0x0f;
    if ihl < 5 {
        return Err(TcpDecodeError::BadIpHeaderLength(ihl));
    }
    if packet[9] != IPPROTO_TCP {
        return Err(TcpDecodeError::NotTcp(packet[9]));
    }
    let offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
    if offset != 0 {
        return Err(TcpDecodeError::Fragment(offset));
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let header_len = usize::from(ihl) * 4;
    // `get` rather than indexing: an IHL larger than what arrived is truncation.
    let tcp = packet.get(header_len..).ok_or(TcpDecodeError::Truncated {
        what: "IPv4 header",
        need: header_len,
        got: packet.len(),
    })?;
    parse_tcp(src.into(), dst.into(), tcp)
}

/// Reads a TCP header whose IP addresses came from elsewhere: an `AF_INET6` raw
/// socket hands over the segment without the IPv6 header, with the source in the
/// sender address and the destination in `IPV6_PKTINFO`.
pub fn parse_tcp(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> Result<Segment, TcpDecodeError> {
    if tcp.len() < TCP_HEADER_LEN {
        return Err(TcpDecodeError::Truncated {
            what: "TCP header",
            need: TCP_HEADER_LEN,
            got: tcp.len(),
        });
    }
    let data_offset = tcp[12] >> 4;
    if data_offset < 5 {
        return Err(TcpDecodeError::BadDataOffset(data_offset));
    }
    let word = |at: usize| u32::from_be_bytes([tcp[at], tcp[at + 1], tcp[at + 2], tcp[at + 3]]);
    Ok(Segment {
        src: SocketAddr::new(src.to_canonical(), u16::from_be_bytes([tcp[0], tcp[1]])),
        dst: SocketAddr::new(dst.to_canonical(), u16::from_be_bytes([tcp[2], tcp[3]])),
        seq: word(4),
        ack: word(8),
        flags: tcp[13],
    })
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
    fn our_own_segments_parse_back() {
        let (server, client) = v4();
        let seg = parse_ipv4(&reset(server, client, 7, 9).unwrap()).unwrap();
        assert_eq!(
            seg,
            Segment {
                src: server,
                dst: client,
                seq: 7,
                ack: 9,
                flags: FLAG_RST | FLAG_ACK,
            }
        );
        assert!(seg.has(FLAG_RST) && seg.has(FLAG_ACK) && !seg.has(FLAG_SYN));

        let (server, client) = v6();
        let packet = tickle_ack(server, client).unwrap();
        let seg = parse_tcp(server.ip(), client.ip(), &packet[40..]).unwrap();
        assert_eq!((seg.src, seg.dst, seg.seq, seg.ack), (server, client, 0, 0));
        assert_eq!(seg.flags, FLAG_ACK);
    }

    /// A client's answer as Linux sends it: IPv4 with an options word (IHL 6), TCP
    /// with the timestamp option (data offset 8), DF, ACK only. Built by hand from
    /// RFC 791 §3.1 and RFC 9293 §3.1.
    #[test]
    fn reads_past_ip_options_to_the_tcp_numbers() {
        let mut packet = vec![
            0x46, 0x00, 0x00, 0x38, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00,
            // ^ version 4 IHL 6, TOS, length 56, id, DF, TTL 64, TCP, checksum
            198, 51, 100, 7, // source: the client
            192, 0, 2, 10, // destination: the public address
            0x01, 0x01, 0x01, 0x00, // options: NOP NOP NOP EOL
            0xc3, 0xcb, 0x01, 0xbd, // ports 50123 -> 445
            0xde, 0xad, 0xbe, 0xef, // seq
            0x0b, 0xad, 0xf0, 0x0d, // ack
            0x80, 0x10, 0x01, 0xf5, // data offset 8, ACK, window
            0x00, 0x00, 0x00, 0x00, // checksum, urgent pointer
        ];
        packet.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        let seg = parse_ipv4(&packet).unwrap();
        assert_eq!(seg.src, "198.51.100.7:50123".parse().unwrap());
        assert_eq!(seg.dst, "192.0.2.10:445".parse().unwrap());
        assert_eq!(
            (seg.seq, seg.ack, seg.flags),
            (0xdead_beef, 0x0bad_f00d, FLAG_ACK)
        );
        // Options are not read: a receiver may cut the copy after the fixed header.
        assert_eq!(parse_ipv4(&packet[..44]), Ok(seg));
    }

    #[test]
    fn short_and_foreign_packets_are_errors() {
        let (server, client) = v4();
        let packet = tickle_ack(server, client).unwrap();
        for len in 0..packet.len() {
            assert!(parse_ipv4(&packet[..len]).is_err(), "prefix of {len} bytes");
        }
        let mut bad = packet.clone();
        bad[0] = 0x65;
        assert_eq!(parse_ipv4(&bad), Err(TcpDecodeError::NotIpv4(6)));
        bad[0] = 0x44;
        assert_eq!(parse_ipv4(&bad), Err(TcpDecodeError::BadIpHeaderLength(4)));
        bad[0] = 0x4f;
        assert_eq!(
            parse_ipv4(&bad),
            Err(TcpDecodeError::Truncated {
                what: "IPv4 header",
                need: 60,
                got: 40
            })
        );
        let mut udp = packet.clone();
        udp[9] = 17;
        assert_eq!(parse_ipv4(&udp), Err(TcpDecodeError::NotTcp(17)));
        let mut fragment = packet.clone();
        fragment[6] = 0x20;
        fragment[7] = 0x03;
        assert_eq!(parse_ipv4(&fragment), Err(TcpDecodeError::Fragment(3)));
        let mut offset = packet;
        offset[32] = 0x40;
        assert_eq!(parse_ipv4(&offset), Err(TcpDecodeError::BadDataOffset(4)));
        assert!(parse_tcp(server.ip(), client.ip(), &[0; 19]).is_err());
    }

    #[test]
    fn mapped_ipv4_addresses_come_out_canonical() {
        let mapped: IpAddr = "::ffff:192.0.2.10".parse().unwrap();
        let (server, client) = v4();
        let packet = tickle_ack(server, client).unwrap();
        let seg = parse_tcp(mapped, client.ip(), &packet[20..]).unwrap();
        assert_eq!(seg.src, server);
    }

    proptest::proptest! {
        /// Whatever a raw socket hands over, reading it returns, never panics.
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            let _ = parse_ipv4(&bytes);
            let _ = parse_tcp(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), &bytes);
        }
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
