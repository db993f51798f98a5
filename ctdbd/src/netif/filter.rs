//! The socket filter of the tickle watch's raw receive sockets: a classic BPF
//! program that keeps, of every TCP segment arriving at this node, only those the
//! watch can use — segments without payload (a client's answer to a tickle is a
//! bare ACK, its goodbye a bare RST) to a public address being watched — and
//! only their first bytes. Everything else is dropped in the kernel, before it is
//! queued or copied: while the watch runs (a few seconds after a takeover), a busy
//! node's data traffic never reaches the daemon.
//!
//! Pure: builds the program; [`super::tickler`] attaches it (`SO_ATTACH_FILTER`)
//! and attaches a new one when the set of watched addresses changes.
//!
//! What the program sees differs by family: an `AF_INET` raw socket's packet starts
//! at the IPv4 header, an `AF_INET6` one's at the TCP header, with the IPv6 header
//! reachable at the kernel's `SKF_NET_OFF` offsets (`linux/filter.h`).
//!
//! ```text
//! IPv4:                                     IPv6:
//!  X = 4 * IHL              (ldxb msh)       A = TCP data offset * 4   ([12])
//!  A = X + TCP data offset * 4 ([X+12])      X = A
//!  total length [2] == A?  else drop         payload length [NET+4] == X?  else drop
//!  destination [16] == a watched address?    destination [NET+24..40] == one?
//!    accept RECEIVE_LEN bytes, else drop       accept RECEIVE_LEN bytes, else drop
//! ```
//! With more watched addresses than a program compares ([`MAX_IPV4`], [`MAX_IPV6`];
//! jump offsets are one byte), the address test is left out.
//! Opcodes: `linux/bpf_common.h` and `linux/filter.h`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One classic BPF instruction, as `struct sock_filter` lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Operation.
    pub code: u16,
    /// Forward jump when true.
    pub jt: u8,
    /// Forward jump when false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

// Instruction classes, sizes, modes, operations and sources.
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MSH: u16 = 0xa0;
const ADD: u16 = 0x00;
const AND: u16 = 0x50;
const RSH: u16 = 0x70;
const JEQ: u16 = 0x10;
const X: u16 = 0x08;
const TAX: u16 = 0x00;

/// `SKF_NET_OFF`: loads at this offset and above read from the network header.
const NET: u32 = (-0x10_0000i32) as u32;

/// Most watched IPv4 addresses one program compares.
pub const MAX_IPV4: usize = 64;

/// Most watched IPv6 addresses one program compares (eight instructions each).
pub const MAX_IPV6: usize = 16;

fn op(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: usize, jf: usize) -> Insn {
    // The callers' offsets are bounded by MAX_IPV4 / MAX_IPV6; a larger one would
    // be a bug here, not bad input.
    let byte = |n: usize| u8::try_from(n).expect("jump offsets stay within a byte");
    Insn {
        code,
        jt: byte(jt),
        jf: byte(jf),
        k,
    }
}

/// Appends the two returns: drop, then accept the first `keep` bytes.
fn finish(mut program: Vec<Insn>, keep: u32) -> Vec<Insn> {
    program.push(op(RET, 0));
    program.push(op(RET, keep));
    program
}

/// The program for the `AF_INET` socket: bare segments to one of `servers`, cut to
/// `keep` bytes.
pub fn ipv4(servers: &[Ipv4Addr], keep: u32) -> Vec<Insn> {
    let compared = if servers.len() <= MAX_IPV4 {
        servers
    } else {
        &[]
    };
    let mut p = vec![
        op(LDX | B | MSH, 0),
        op(LD | B | IND, 12),
        op(ALU | RSH, 2),
        op(ALU | AND, 0x3c),
        op(ALU | ADD | X, 0),
        op(MISC | TAX, 0),
        op(LD | H | ABS, 2),
    ];
    if compared.is_empty() {
        // Bare: over the drop to accept.
        p.push(jump(JMP | JEQ | X, 0, 1, 0));
        return finish(p, keep);
    }
    // Not bare: over the address test to the drop.
    p.push(jump(JMP | JEQ | X, 0, 0, 1 + compared.len()));
    p.push(op(LD | W | ABS, 16));
    for (i, addr) in compared.iter().enumerate() {
        // To accept: over the remaining comparisons and the drop.
        let to_accept = compared.len() - i;
        p.push(jump(JMP | JEQ, u32::from(*addr), to_accept, 0));
    }
    finish(p, keep)
}

/// The program for the `AF_INET6` socket: bare segments to one of `servers`, cut
/// to `keep` bytes.
pub fn ipv6(servers: &[Ipv6Addr], keep: u32) -> Vec<Insn> {
    let compared = if servers.len() <= MAX_IPV6 {
        servers
    } else {
        &[]
    };
    let mut p = vec![
        op(LD | B | ABS, 12),
        op(ALU | RSH, 2),
        op(ALU | AND, 0x3c),
        op(MISC | TAX, 0),
        op(LD | H | ABS, NET + 4),
    ];
    if compared.is_empty() {
        p.push(jump(JMP | JEQ | X, 0, 1, 0));
        return finish(p, keep);
    }
    p.push(jump(JMP | JEQ | X, 0, 0, compared.len() * 8));
    for (i, addr) in compared.iter().enumerate() {
        let octets = addr.octets();
        let later = (compared.len() - 1 - i) * 8;
        for word in 0..4 {
            let value = u32::from_be_bytes([
                octets[word * 4],
                octets[word * 4 + 1],
                octets[word * 4 + 2],
                octets[word * 4 + 3],
            ]);
            p.push(op(LD | W | ABS, NET + 24 + 4 * word as u32));
            // A mismatch skips this address's remaining pairs; the last word's
            // match skips the later addresses and the drop.
            let rest = (3 - word) * 2;
            if word < 3 {
                p.push(jump(JMP | JEQ, value, 0, rest));
            } else {
                p.push(jump(JMP | JEQ, value, later + 1, 0));
            }
        }
    }
    finish(p, keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel's checker insists on: every jump lands inside the program,
    /// and the program ends in a return. Also the two returns are drop and accept.
    fn check(p: &[Insn], keep: u32) {
        assert!(p.len() <= 4096);
        for (i, insn) in p.iter().enumerate() {
            if insn.code & 0x07 == JMP {
                assert!(i + 1 + usize::from(insn.jt) < p.len(), "jt of {i}: {p:?}");
                assert!(i + 1 + usize::from(insn.jf) < p.len(), "jf of {i}: {p:?}");
            }
        }
        assert_eq!(p[p.len() - 2], op(RET, 0));
        assert_eq!(p[p.len() - 1], op(RET, keep));
    }

    /// Where a jump from instruction `i` goes.
    fn target(p: &[Insn], i: usize, taken: bool) -> usize {
        i + 1 + usize::from(if taken { p[i].jt } else { p[i].jf })
    }

    #[test]
    fn ipv4_compares_each_watched_address_then_drops() {
        let a = Ipv4Addr::new(10, 0, 20, 101);
        let b = Ipv4Addr::new(10, 0, 20, 102);
        let p = ipv4(&[a, b], 128);
        check(&p, 128);
        let (drop, accept) = (p.len() - 2, p.len() - 1);
        assert_eq!(target(&p, 7, false), drop, "payload: dropped");
        assert_eq!(p[8], op(LD | W | ABS, 16), "destination address");
        assert_eq!((p[9].k, target(&p, 9, true)), (0x0a00_1465, accept));
        assert_eq!((p[10].k, target(&p, 10, true)), (0x0a00_1466, accept));
        assert_eq!(target(&p, 10, false), drop);
    }

    #[test]
    fn ipv6_compares_four_words_per_address() {
        let a: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::11".parse().unwrap();
        let p = ipv6(&[a, b], 128);
        check(&p, 128);
        let (drop, accept) = (p.len() - 2, p.len() - 1);
        assert_eq!(target(&p, 5, false), drop, "payload: dropped");
        // a: words at 6..14; a mismatch in any word goes to b at 14.
        assert_eq!(p[6], op(LD | W | ABS, NET + 24));
        assert_eq!(p[7].k, 0x2001_0db8);
        for jeq in [7, 9, 11] {
            assert_eq!(target(&p, jeq, false), 14, "{jeq}");
            assert_eq!(target(&p, jeq, true), jeq + 1);
        }
        assert_eq!((p[13].k, target(&p, 13, true)), (0x10, accept));
        assert_eq!(target(&p, 13, false), 14);
        assert_eq!(p[14], op(LD | W | ABS, NET + 24));
        assert_eq!((p[21].k, target(&p, 21, true)), (0x11, accept));
        assert_eq!(target(&p, 21, false), drop);
        for jeq in [15, 17, 19] {
            assert_eq!(target(&p, jeq, false), drop, "{jeq}");
        }
    }

    #[test]
    fn too_many_addresses_keeps_only_the_payload_test() {
        let many: Vec<Ipv4Addr> = (0..=MAX_IPV4 as u32).map(Ipv4Addr::from).collect();
        let p = ipv4(&many, 100);
        check(&p, 100);
        assert_eq!(p.len(), 10);
        assert_eq!(target(&p, 7, true), p.len() - 1, "bare: accepted");
        assert_eq!(target(&p, 7, false), p.len() - 2, "payload: dropped");
        let many: Vec<Ipv6Addr> = (0..=MAX_IPV6 as u128).map(Ipv6Addr::from).collect();
        let p = ipv6(&many, 100);
        check(&p, 100);
        assert_eq!(p.len(), 8);
        assert_eq!(target(&p, 5, true), p.len() - 1, "bare: accepted");
        assert_eq!(target(&p, 5, false), p.len() - 2, "payload: dropped");
        // The largest programs still jump within a byte.
        let most: Vec<Ipv4Addr> = (0..MAX_IPV4 as u32).map(Ipv4Addr::from).collect();
        check(&ipv4(&most, 1), 1);
        let most: Vec<Ipv6Addr> = (0..MAX_IPV6 as u128).map(Ipv6Addr::from).collect();
        check(&ipv6(&most, 1), 1);
    }
}
