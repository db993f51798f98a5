//! Wire types and text forms for TCP connection tracking ("tickles"): the
//! `connection` a client registers (TCP_ADD_DELAYED_UPDATE, TCP_REMOVE) and the
//! `tickle_list` GET_TCP_TICKLE_LIST returns (reference §6.12, layouts confirmed
//! against 4.17). //!
//! connection (56 bytes): sock_addr src (the client), sock_addr dst (the public
//! address, with the service port).
//! tickle_list: sock_addr addr (the address asked about, port as asked), u32 num,
//! num × connection. The wire types live in `ctdbd::protocol::control`; this module
//! holds the tool's text forms.

use std::net::{IpAddr, SocketAddr};

pub use ctdbd::protocol::control::{Connection, TickleList};
use ctdbd::protocol::wire::canonical_ip;

/// Parses an address as the 4.17 tool does for tickles and public addresses: text
/// with a `:` is IPv6 (optionally in brackets, an IPv4-mapped one becomes IPv4),
/// anything else must be a dotted IPv4 address; no surrounding blanks.
pub fn parse_addr(text: &str) -> Option<IpAddr> {
    if text.contains(':') {
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        let ip: std::net::Ipv6Addr = inner.parse().ok()?;
        Some(canonical_ip(IpAddr::V6(ip)))
    } else {
        text.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// Parses `IP:PORT` as the tool does: split at the last `:`, the port a decimal
/// number (the whole rest, no sign, truncated to 16 bits), the address as
/// [`parse_addr`]; so `fd00::1:445` is `[fd00::1]:445`.
pub fn parse_addr_port(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u64 = port.parse().ok()?;
    let ip = parse_addr(addr)?;
    Some(SocketAddr::new(ip, port as u16))
}

/// An endpoint as the tool prints it with its port: `IP:PORT`, `[IPv6]:PORT`.
pub fn addr_port_text(addr: &SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
    }
}

/// Reads connections the way `addtickle`/`deltickle` without arguments do: only
/// complete (newline-terminated) lines count; blank lines and lines starting with
/// `#` (after leading blanks) are skipped; the first two blank-separated words are
/// source and destination `IP:PORT`, more words are ignored. Any bad line fails
/// the whole list (EINVAL).
pub fn parse_connection_lines(input: &str) -> Result<Vec<Connection>, i32> {
    const EINVAL: i32 = 22;
    let complete = match input.rfind('\n') {
        Some(end) => &input[..end],
        None => return Ok(Vec::new()),
    };
    let mut conns = Vec::new();
    for line in complete.split('\n') {
        let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
        let Some(first) = words.next() else {
            continue;
        };
        if first.starts_with('#') {
            continue;
        }
        let second = words.next().ok_or(EINVAL)?;
        let src = parse_addr_port(first).ok_or(EINVAL)?;
        let dst = parse_addr_port(second).ok_or(EINVAL)?;
        conns.push(Connection { src, dst });
    }
    Ok(conns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(text: &str) -> SocketAddr {
        parse_addr_port(text).unwrap()
    }

    #[test]
    fn connection_matches_observed_bytes() {
        // addtickle 10.99.2.5:40000 10.99.1.10:445, as 4.17 sent it.
        let c = Connection {
            src: sa("10.99.2.5:40000"),
            dst: sa("10.99.1.10:445"),
        };
        let hex: String = c.encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "02009c400a6302050000000000000000000000000000000000000000\
             020001bd0a63010a0000000000000000000000000000000000000000"
        );
        assert_eq!(c.encode().len(), 56);
        assert_eq!(Connection::decode(&c.encode()).unwrap(), c);
        assert!(Connection::decode(&c.encode()[..55]).is_err());
    }

    #[test]
    fn tickle_list_round_trips() {
        let list = TickleList {
            addr: sa("10.99.1.10:445"),
            conns: vec![
                Connection {
                    src: sa("10.99.2.5:40000"),
                    dst: sa("10.99.1.10:445"),
                },
                Connection {
                    src: sa("[fd00::7]:1"),
                    dst: sa("[fd00::1]:2049"),
                },
            ],
        };
        let bytes = list.encode();
        assert_eq!(bytes.len(), 28 + 4 + 2 * 56);
        assert_eq!(&bytes[28..32], &[2, 0, 0, 0]);
        assert_eq!(TickleList::decode(&bytes).unwrap(), list);
        let empty = TickleList {
            addr: sa("10.99.1.10:0"),
            conns: vec![],
        };
        assert_eq!(empty.encode().len(), 32);
        assert_eq!(TickleList::decode(&empty.encode()).unwrap(), empty);
        let mut bad = empty.encode();
        bad[28] = 1;
        assert!(TickleList::decode(&bad).is_err());
    }

    #[test]
    fn endpoints_parse_like_4_17() {
        assert_eq!(sa("10.99.2.5:70000").port(), 4464);
        assert_eq!(sa("10.99.2.5:010").port(), 10);
        assert_eq!(sa("fd00::1:5"), sa("[fd00::1]:5"));
        assert_eq!(sa("::ffff:10.99.2.5:7"), sa("10.99.2.5:7"));
        for bad in [
            "10.99.2.6",
            "10.99.2.5:",
            "10.99.2.5:abc",
            "10.99.2.5:0x10",
            "[10.99.2.5]:5",
            " 10.99.2.5:5",
            "10.99.2.5:5 ",
            "[fd00::1]",
            "10.99.2.5:-1",
        ] {
            assert_eq!(parse_addr_port(bad), None, "{bad}");
        }
        assert_eq!(addr_port_text(&sa("[fd00::1]:5")), "[fd00::1]:5");
        assert_eq!(addr_port_text(&sa("10.0.0.1:445")), "10.0.0.1:445");
    }

    #[test]
    fn connection_lines() {
        let conns = parse_connection_lines(
            "\n# note\n  10.0.0.9:1\t10.0.0.1:2 extra\n10.0.0.3:1 10.0.0.1:2",
        )
        .unwrap();
        assert_eq!(
            conns,
            [Connection {
                src: sa("10.0.0.9:1"),
                dst: sa("10.0.0.1:2")
            }]
        );
        assert_eq!(parse_connection_lines("garbage\n"), Err(22));
        assert_eq!(parse_connection_lines("10.0.0.9:1\n"), Err(22));
        assert_eq!(parse_connection_lines("10.0.0.9:1 10.0.0.1:2"), Ok(vec![]));
    }
}
