//! The Internet checksum (RFC 1071) and the pseudo-headers that TCP (RFC 9293 §3.1)
//! and ICMPv6 (RFC 8200 §8.1) fold into theirs.
//!
//! Pure: the encoders in [`super::arp`], [`super::ndp`] and [`super::tcp`] call it.
//! The kernel would fill some of these in for us on some sockets, but not on a
//! packet socket, and an encoder that is right on its own can be tested byte for byte.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A running one's-complement sum of 16-bit big-endian words.
///
/// Bytes are fed in any number of pieces; an odd piece is carried over so the words
/// line up as if everything had been one buffer.
#[derive(Debug, Default, Clone)]
pub struct Checksum {
    sum: u32,
    /// The first byte of a word whose second byte has not arrived yet.
    pending: Option<u8>,
}

impl Checksum {
    /// An empty sum.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes` to the sum.
    pub fn add(&mut self, bytes: &[u8]) -> &mut Self {
        let mut rest = bytes;
        if let Some(high) = self.pending.take() {
            match rest.split_first() {
                Some((&low, tail)) => {
                    self.add_word(u16::from_be_bytes([high, low]));
                    rest = tail;
                }
                None => {
                    self.pending = Some(high);
                    return self;
                }
            }
        }
        let mut words = rest.chunks_exact(2);
        for word in &mut words {
            self.add_word(u16::from_be_bytes([word[0], word[1]]));
        }
        self.pending = words.remainder().first().copied();
        self
    }

    fn add_word(&mut self, word: u16) {
        self.sum += u32::from(word);
        // Fold as we go so the u32 can never overflow, however long the input.
        self.sum = (self.sum & 0xffff) + (self.sum >> 16);
    }

    /// Adds the IPv4 pseudo-header that TCP and UDP checksums cover (RFC 9293 §3.1):
    /// source, destination, a zero byte, the protocol and the upper-layer length.
    pub fn add_ipv4_pseudo_header(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: u8,
        length: u16,
    ) -> &mut Self {
        self.add(&src.octets())
            .add(&dst.octets())
            .add(&[0, protocol])
            .add(&length.to_be_bytes())
    }

    /// Adds the IPv6 pseudo-header of RFC 8200 §8.1: source, destination, the
    /// 32-bit upper-layer length, three zero bytes and the next-header value.
    pub fn add_ipv6_pseudo_header(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        next_header: u8,
        length: u32,
    ) -> &mut Self {
        self.add(&src.octets())
            .add(&dst.octets())
            .add(&length.to_be_bytes())
            .add(&[0, 0, 0, next_header])
    }

    /// The checksum to put in the header: the complement of the folded sum, an odd
    /// trailing byte padded with zero as RFC 1071 says.
    pub fn finish(&self) -> u16 {
        let mut sum = self.sum;
        if let Some(high) = self.pending {
            sum += u32::from(high) << 8;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        // Truncation is exact: the loop above left at most 16 bits.
        !(sum as u16)
    }
}

/// The checksum of `bytes` alone (the IPv4 header checksum, for instance).
pub fn checksum(bytes: &[u8]) -> u16 {
    Checksum::new().add(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 §3's worked example: the words 0001 f203 f4f5 f6f7 sum to ddf2
    /// after the end-around carry, so the checksum is its complement.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn pieces_of_odd_length_sum_like_one_buffer() {
        let data: Vec<u8> = (0u8..=200).map(|b| b.wrapping_mul(37)).collect();
        let whole = checksum(&data);
        for split in [0, 1, 2, 3, 7, 100, 200, 201] {
            let (a, b) = data.split_at(split);
            let (b1, b2) = b.split_at(b.len() / 2);
            assert_eq!(
                Checksum::new().add(a).add(b1).add(b2).finish(),
                whole,
                "{split}"
            );
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(
            checksum(&[0x12, 0x34, 0x56]),
            checksum(&[0x12, 0x34, 0x56, 0])
        );
    }

    /// A correct checksum makes the whole covered data sum to 0xffff, so a
    /// receiver's recomputation over data and checksum yields zero.
    #[test]
    fn inserting_the_checksum_verifies() {
        let mut data = vec![
            0x45, 0, 0, 0x28, 0, 0, 0x40, 0, 0x40, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&data), 0);
    }
}
