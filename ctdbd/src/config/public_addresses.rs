//! The public addresses file (`/etc/ctdb/public_addresses`): the addresses this node
//! may host, each with its prefix length and the interfaces it may go on (`ctdb(7)`
//! PUBLIC ADDRESSES).
//!
//! Called by the daemon at start-up and on `reloadips`. Lines are `ADDR/BITS
//! IFACE[,IFACE...]`, fields separated by spaces or tabs; blank lines and lines whose
//! first non-blank character is `#` are skipped; anything after the interface field is
//! ignored, as CTDB does. The interface field may be left out only when the caller has
//! a default interface (the legacy `CTDB_PUBLIC_INTERFACE`; CTDB 4.17 itself requires
//! it). Unlike CTDB, which refuses the whole file, a bad line is reported and skipped so
//! the node can still host the good addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::{parse_bare_ip, ConfigError, ConfigErrorKind};

/// One public address this node can host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicAddress {
    /// The address (an IPv4-mapped IPv6 address is stored as IPv4).
    pub addr: IpAddr,
    /// Prefix length: 0–32 for IPv4, 0–128 for IPv6.
    pub prefix_len: u8,
    /// Interfaces it may be placed on, in file order, without repeats; never empty.
    pub ifaces: Vec<String>,
    /// Line of the file it came from.
    pub line: usize,
}

/// Whether Linux would accept `name` as an interface name, and CTDB as one entry of an
/// interface list: 1 to 15 bytes, no `/`, `,`, whitespace or NUL.
pub fn is_valid_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && !name
            .chars()
            .any(|c| c == '/' || c == ',' || c == '\0' || c.is_whitespace())
}

/// Parses the text of a public addresses file read from `path` (`path` only labels
/// errors). Returns the good addresses in file order and one error per bad line.
/// `default_iface` is used for lines without an interface field.
pub fn parse_public_addresses(
    text: &str,
    path: &Path,
    default_iface: Option<&str>,
) -> (Vec<PublicAddress>, Vec<ConfigError>) {
    let mut addresses = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        match parse_line(raw, default_iface) {
            Ok(None) => {}
            Ok(Some((addr, prefix_len, ifaces))) => {
                if let Some(&first_line) = seen.get(&addr) {
                    errors.push(ConfigError::new(
                        path,
                        line,
                        ConfigErrorKind::DuplicateAddress { addr, first_line },
                    ));
                    continue;
                }
                seen.insert(addr, line);
                addresses.push(PublicAddress {
                    addr,
                    prefix_len,
                    ifaces,
                    line,
                });
            }
            Err(kind) => errors.push(ConfigError::new(path, line, kind)),
        }
    }
    (addresses, errors)
}

/// One line: `None` for a blank or comment line.
fn parse_line(
    raw: &str,
    default_iface: Option<&str>,
) -> Result<Option<(IpAddr, u8, Vec<String>)>, ConfigErrorKind> {
    let mut fields = raw.split([' ', '\t', '\r']).filter(|f| !f.is_empty());
    let Some(cidr) = fields.next() else {
        return Ok(None);
    };
    if cidr.starts_with('#') {
        return Ok(None);
    }
    let Some((addr_text, bits_text)) = cidr.rsplit_once('/') else {
        return Err(ConfigErrorKind::MissingPrefixLength {
            text: cidr.to_owned(),
        });
    };
    let addr = parse_bare_ip(addr_text).ok_or_else(|| ConfigErrorKind::BadAddress {
        text: addr_text.to_owned(),
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = Some(bits_text)
        .filter(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|b| b.parse::<u8>().ok())
        .filter(|&bits| bits <= max)
        .ok_or_else(|| ConfigErrorKind::BadPrefixLength {
            text: cidr.to_owned(),
            max,
        })?;
    let Some(iface_list) = fields.next().or(default_iface) else {
        return Err(ConfigErrorKind::MissingInterface { addr });
    };
    let mut ifaces: Vec<String> = Vec::new();
    for name in iface_list.split(',') {
        if !is_valid_interface_name(name) {
            return Err(ConfigErrorKind::BadInterface {
                name: name.to_owned(),
            });
        }
        if !ifaces.iter().any(|known| known == name) {
            ifaces.push(name.to_owned());
        }
    }
    Ok(Some((addr, prefix_len, ifaces)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATH: &str = "/etc/ctdb/public_addresses";

    fn parse(text: &str, default_iface: Option<&str>) -> (Vec<PublicAddress>, Vec<ConfigError>) {
        parse_public_addresses(text, Path::new(PATH), default_iface)
    }

    fn public(addr: &str, prefix_len: u8, ifaces: &[&str], line: usize) -> PublicAddress {
        PublicAddress {
            addr: addr.parse().unwrap(),
            prefix_len,
            ifaces: ifaces.iter().map(|s| s.to_string()).collect(),
            line,
        }
    }

    #[test]
    fn example_from_ctdb7_in_file_order() {
        let text = "10.1.1.1/24 eth1\n10.1.1.2/24 eth1\n10.1.2.1/24 eth2\n10.1.2.2/24 eth2\n";
        let (addrs, errors) = parse(text, None);
        assert!(errors.is_empty());
        assert_eq!(
            addrs,
            vec![
                public("10.1.1.1", 24, &["eth1"], 1),
                public("10.1.1.2", 24, &["eth1"], 2),
                public("10.1.2.1", 24, &["eth2"], 3),
                public("10.1.2.2", 24, &["eth2"], 4),
            ]
        );
    }

    #[test]
    fn comments_blanks_lists_ipv6_and_trailing_fields() {
        let text = "# public\n\n   \t\n\t10.0.0.9/16\teth0,eth1,eth0 # two links\r\n\
                    fd00::10/64 bond0.100\n::ffff:192.0.2.1/32 eth0:1\n";
        let (addrs, errors) = parse(text, None);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            addrs,
            vec![
                public("10.0.0.9", 16, &["eth0", "eth1"], 4),
                public("fd00::10", 64, &["bond0.100"], 5),
                public("192.0.2.1", 32, &["eth0:1"], 6),
            ]
        );
    }

    #[test]
    fn default_interface_fills_in_only_when_missing() {
        let (addrs, errors) = parse("10.0.0.1/24\n10.0.0.2/24 eth1\n", Some("eth0"));
        assert!(errors.is_empty());
        assert_eq!(
            addrs,
            vec![
                public("10.0.0.1", 24, &["eth0"], 1),
                public("10.0.0.2", 24, &["eth1"], 2),
            ]
        );
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let text = "\
10.0.0.1/24 eth0
10.0.0.2 eth0
10.0.0.3/33 eth0
fd00::4/129 eth0
10.0.0.5/ eth0
10.0.0.6/2x eth0
10.0.0.7/-1 eth0
bogus/24 eth0
[fd00::8]/64 eth0
10.0.0.9/24
10.0.0.10/24 averyveryverylongname
10.0.0.11/24 eth0,
10.0.0.12/24 eth/0
10.0.0.1/16 eth1
fd00::13/128 eth0
";
        let (addrs, errors) = parse(text, None);
        assert_eq!(
            addrs,
            vec![
                public("10.0.0.1", 24, &["eth0"], 1),
                public("fd00::13", 128, &["eth0"], 15)
            ]
        );
        let found: Vec<(usize, ConfigErrorKind)> =
            errors.iter().map(|e| (e.line, e.kind.clone())).collect();
        let addr = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            found,
            vec![
                (
                    2,
                    ConfigErrorKind::MissingPrefixLength {
                        text: "10.0.0.2".into()
                    }
                ),
                (
                    3,
                    ConfigErrorKind::BadPrefixLength {
                        text: "10.0.0.3/33".into(),
                        max: 32
                    }
                ),
                (
                    4,
                    ConfigErrorKind::BadPrefixLength {
                        text: "fd00::4/129".into(),
                        max: 128
                    }
                ),
                (
                    5,
                    ConfigErrorKind::BadPrefixLength {
                        text: "10.0.0.5/".into(),
                        max: 32
                    }
                ),
                (
                    6,
                    ConfigErrorKind::BadPrefixLength {
                        text: "10.0.0.6/2x".into(),
                        max: 32
                    }
                ),
                (
                    7,
                    ConfigErrorKind::BadPrefixLength {
                        text: "10.0.0.7/-1".into(),
                        max: 32
                    }
                ),
                (
                    8,
                    ConfigErrorKind::BadAddress {
                        text: "bogus".into()
                    }
                ),
                (
                    9,
                    ConfigErrorKind::BadAddress {
                        text: "[fd00::8]".into()
                    }
                ),
                (
                    10,
                    ConfigErrorKind::MissingInterface {
                        addr: addr("10.0.0.9")
                    }
                ),
                (
                    11,
                    ConfigErrorKind::BadInterface {
                        name: "averyveryverylongname".into()
                    }
                ),
                (12, ConfigErrorKind::BadInterface { name: "".into() }),
                (
                    13,
                    ConfigErrorKind::BadInterface {
                        name: "eth/0".into()
                    }
                ),
                (
                    14,
                    ConfigErrorKind::DuplicateAddress {
                        addr: addr("10.0.0.1"),
                        first_line: 1
                    }
                ),
            ]
        );
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown[0],
            "/etc/ctdb/public_addresses:2: missing prefix length in \"10.0.0.2\", expected ADDR/BITS"
        );
        assert_eq!(
            shown[1],
            "/etc/ctdb/public_addresses:3: invalid prefix length in \"10.0.0.3/33\", \
             expected /0 to /32"
        );
        assert_eq!(
            shown[8],
            "/etc/ctdb/public_addresses:10: no interface for 10.0.0.9, \
             expected ADDR/BITS IFACE[,IFACE...]"
        );
        assert_eq!(
            shown[9],
            "/etc/ctdb/public_addresses:11: invalid interface name \"averyveryverylongname\", \
             expected 1 to 15 bytes without '/', ',' or whitespace"
        );
        assert_eq!(
            shown[12],
            "/etc/ctdb/public_addresses:14: duplicate address 10.0.0.1, first listed on line 1"
        );
    }

    #[test]
    fn interface_names() {
        for good in ["eth0", "e", "bond0.100", "eth0:1", "enp0s31f6abcdef"] {
            assert!(is_valid_interface_name(good), "{good}");
        }
        for bad in ["", "enp0s31f6abcdefg", "a/b", "a,b", "a b", "a\tb", "a\0"] {
            assert!(!is_valid_interface_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn empty_file_has_no_addresses_and_no_errors() {
        assert_eq!(parse("", None), (vec![], vec![]));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>(), iface in proptest::option::of(".{0,20}")) {
            let (addrs, _) = parse(&text, iface.as_deref());
            for a in addrs {
                prop_assert!(!a.ifaces.is_empty());
            }
        }

        #[test]
        fn address_like_text_never_panics(
            lines in proptest::collection::vec("[0-9a-f:./# ,\t]{0,40}( [a-z0-9,]{0,20})?", 0..20)
        ) {
            let _ = parse(&lines.join("\n"), None);
        }
    }
}
