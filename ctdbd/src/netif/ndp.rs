//! Unsolicited neighbour advertisement (RFC 4861 §4.4, §7.2.6) for an IPv6 public
//! address that has just moved to this node: the IPv6 twin of gratuitous ARP.
//!
//! Pure: builds the whole Ethernet frame; [`super::send`] puts it on a packet socket.
//! We build the IPv6 header ourselves rather than hand the ICMPv6 body to a raw
//! ICMPv6 socket because the source address must be the public IP itself, and a
//! freshly added IPv6 address is still tentative (duplicate address detection), so
//! the kernel will not bind to it or choose it as a source; on a packet socket nothing
//! stands between us and the wire.
//!
//! ```text
//! Ethernet (0..14):  dst 33:33:00:00:00:01 | src our MAC | EtherType 0x86dd
//! IPv6 (14..54):     version 6, class 0, flow 0 | payload length 32 |
//!                    next header 58 (ICMPv6) | hop limit 255 |
//!                    source = public IP (16) | destination ff02::1 (16)
//! ICMPv6 NA (54..86):
//!  54 type 136 | 55 code 0 | 56 checksum (2)
//!  58 flags R=0 S=0 O=1, 29 reserved bits (4)
//!  62 target address = public IP (16)
//!  78 option type 2 (target link-layer address) | 79 length 1 (x 8 bytes) |
//!  80 our MAC (6)
//! ```
//! Hop limit 255 is mandatory: receivers drop neighbour discovery with any other
//! value, which proves it was not forwarded by a router (RFC 4861 §7.1.2). S is clear
//! because nobody solicited it, O is set so that neighbours replace the MAC they hold
//! for the address rather than keep the old node's (RFC 4861 §7.2.5).

use std::net::Ipv6Addr;

use super::checksum::Checksum;
use super::MacAddr;

/// Length of the whole frame: Ethernet, IPv6 and ICMPv6 with one option.
pub const NA_FRAME_LEN: usize = 86;

/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Next-header value of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// ICMPv6 type of a neighbour advertisement.
pub const ICMPV6_NEIGHBOUR_ADVERTISEMENT: u8 = 136;

/// The all-nodes link-local multicast group: every neighbour listens on it.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The Ethernet address ff02::1 maps to (RFC 2464 §7: 33:33 and the group's last
/// four bytes).
pub const ALL_NODES_MAC: MacAddr = [0x33, 0x33, 0, 0, 0, 1];

/// Length of the ICMPv6 part: 24-byte advertisement plus the 8-byte option.
const ICMPV6_LEN: u16 = 32;

/// The override flag, the third-highest bit of the flags word.
const FLAG_OVERRIDE: u32 = 0x2000_0000;

/// The frame announcing that `ip` is now at `mac`, to all nodes on the link.
pub fn unsolicited_na(mac: MacAddr, ip: Ipv6Addr) -> [u8; NA_FRAME_LEN] {
    let mut frame = [0u8; NA_FRAME_LEN];
    frame[0..6].copy_from_slice(&ALL_NODES_MAC);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());

    let ip6 = &mut frame[14..54];
    ip6[0] = 0x60;
    ip6[4..6].copy_from_slice(&ICMPV6_LEN.to_be_bytes());
    ip6[6] = IPPROTO_ICMPV6;
    ip6[7] = 255;
    ip6[8..24].copy_from_slice(&ip.octets());
    ip6[24..40].copy_from_slice(&ALL_NODES.octets());

    let icmp = &mut frame[54..86];
    icmp[0] = ICMPV6_NEIGHBOUR_ADVERTISEMENT;
    icmp[4..8].copy_from_slice(&FLAG_OVERRIDE.to_be_bytes());
    icmp[8..24].copy_from_slice(&ip.octets());
    icmp[24] = 2;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&mac);
    let sum = Checksum::new()
        .add_ipv6_pseudo_header(ip, ALL_NODES, IPPROTO_ICMPV6, ICMPV6_LEN.into())
        .add(icmp)
        .finish();
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netif::tests::hex;

    const MAC: MacAddr = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
    const IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

    /// Expected bytes made with scapy 2.8.0:
    /// `Ether(dst="33:33:00:00:00:01", src=MAC)/IPv6(src=IP, dst="ff02::1",
    /// hlim=255)/ICMPv6ND_NA(R=0, S=0, O=1, tgt=IP)/ICMPv6NDOptDstLLAddr(lladdr=MAC)`.
    #[test]
    fn matches_scapy() {
        assert_eq!(
            hex(&unsolicited_na(MAC, IP)),
            "33330000000102005e10203086dd6000000000203aff\
             20010db8000000000000000000000010ff020000000000000000000000000001\
             88007acd2000000020010db8000000000000000000000010020102005e102030"
        );
    }

    #[test]
    fn fields_sit_at_rfc_offsets_and_checksum_verifies() {
        let frame = unsolicited_na(MAC, IP);
        assert_eq!(frame[14] >> 4, 6, "IPv6 version");
        assert_eq!(frame[21], 255, "hop limit");
        assert_eq!(frame[54], 136, "ICMPv6 type");
        assert_eq!(frame[58] & 0xe0, 0x20, "R=0 S=0 O=1");
        assert_eq!(frame[62..78], IP.octets(), "target");
        assert_eq!(frame[80..86], MAC, "target link-layer address");
        // Over pseudo-header, message and checksum the sum is 0xffff.
        let verify = Checksum::new()
            .add_ipv6_pseudo_header(IP, ALL_NODES, IPPROTO_ICMPV6, 32)
            .add(&frame[54..])
            .finish();
        assert_eq!(verify, 0);
    }
}
