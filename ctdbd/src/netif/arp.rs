//! Gratuitous ARP (RFC 826 packet, RFC 5227 §3 announcement) for an IPv4 public
//! address that has just moved to this node.
//!
//! Pure: builds whole Ethernet frames; [`super::send`] puts them on a packet socket.
//!
//! We build two frames per announcement, a request and a reply, because neighbours
//! disagree about which one updates their cache: RFC 5227 peers and most hosts take
//! the request; some switches, routers and older stacks only refresh an entry from a
//! reply (RFC 5944 §4.6 describes the reply form). Sending both costs one frame and
//! moves every kind of neighbour to our MAC; sending one leaves some of them sending
//! to the node that lost the address until their entry times out.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------------------------------------------------------------+ Ethernet
//! | 0   destination MAC ff:ff:ff:ff:ff:ff (6)                     |
//! | 6   source MAC = our interface (6)                            |
//! | 12  EtherType 0x0806 (2)                                      |
//! +-------------------------------------------------------------+ ARP (14..42)
//! | 14  htype 1 (Ethernet)          | 16  ptype 0x0800 (IPv4)     |
//! | 18  hlen 6      | 19  plen 4    | 20  oper 1 request/2 reply  |
//! | 22  sender MAC (6)  28  sender IP = public IP (4)             |
//! | 32  target MAC (6)  38  target IP = public IP (4)             |
//! +-------------------------------------------------------------+
//! ```
//! The target MAC is zero in the request (RFC 5227 §2.1.1: ignored, should be zero)
//! and our own MAC in the reply. The frame is 42 bytes; the driver pads it to
//! Ethernet's 60-byte minimum.

use std::net::Ipv4Addr;

use super::MacAddr;

/// Length of a gratuitous ARP frame, Ethernet header included, before padding.
pub const ARP_FRAME_LEN: usize = 42;

/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// The Ethernet broadcast address: every host on the segment must see the update.
pub const BROADCAST_MAC: MacAddr = [0xff; 6];

/// Which ARP operation a gratuitous frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    /// `oper` 1: an announcement in RFC 5227's form.
    Request = 1,
    /// `oper` 2: an unsolicited reply, for neighbours that only learn from replies.
    Reply = 2,
}

/// One gratuitous ARP frame announcing that `ip` is at `mac`.
pub fn gratuitous_arp(mac: MacAddr, ip: Ipv4Addr, op: ArpOp) -> [u8; ARP_FRAME_LEN] {
    let mut frame = [0u8; ARP_FRAME_LEN];
    frame[0..6].copy_from_slice(&BROADCAST_MAC);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    frame[14..16].copy_from_slice(&1u16.to_be_bytes());
    frame[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
    frame[18] = 6;
    frame[19] = 4;
    frame[20..22].copy_from_slice(&(op as u16).to_be_bytes());
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip.octets());
    if op == ArpOp::Reply {
        frame[32..38].copy_from_slice(&mac);
    }
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

/// The frames of one announcement round: the request, then the reply (see the
/// module docs for why both).
pub fn gratuitous_arps(mac: MacAddr, ip: Ipv4Addr) -> [[u8; ARP_FRAME_LEN]; 2] {
    [
        gratuitous_arp(mac, ip, ArpOp::Request),
        gratuitous_arp(mac, ip, ArpOp::Reply),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netif::tests::hex;

    const MAC: MacAddr = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
    const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

    /// Expected bytes made with scapy 2.8.0:
    /// `Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC)/ARP(op=1, hwsrc=MAC, psrc=IP,
    /// hwdst="00:00:00:00:00:00", pdst=IP)`.
    #[test]
    fn request_matches_scapy() {
        assert_eq!(
            hex(&gratuitous_arp(MAC, IP, ArpOp::Request)),
            "ffffffffffff02005e102030080600010800060400010200\
             5e102030c000020a000000000000c000020a"
        );
    }

    /// Expected bytes made with scapy 2.8.0: as above with `op=2, hwdst=MAC`.
    #[test]
    fn reply_matches_scapy() {
        assert_eq!(
            hex(&gratuitous_arp(MAC, IP, ArpOp::Reply)),
            "ffffffffffff02005e102030080600010800060400020200\
             5e102030c000020a02005e102030c000020a"
        );
    }

    #[test]
    fn round_is_request_then_reply() {
        let [request, reply] = gratuitous_arps(MAC, IP);
        assert_eq!(request[20..22], [0, 1]);
        assert_eq!(reply[20..22], [0, 2]);
        // Sender and target protocol address are both the public IP.
        for frame in [request, reply] {
            assert_eq!(frame[28..32], IP.octets());
            assert_eq!(frame[38..42], IP.octets());
        }
    }
}
