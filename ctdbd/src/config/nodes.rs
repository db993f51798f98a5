//! The nodes file (`/etc/ctdb/nodes`): every node's private address, in pnn order
//! (`reference/ctdb-protocol-core.md` §7, `ctdb(7)` PRIVATE ADDRESS).
//!
//! Called by the daemon at start-up and on `reloadnodes`, and by the `ctdb` tool
//! (`listnodes`, the connect-failure diagnostic). The rules are CTDB 4.17's, which has
//! no comments in this file: each line is stripped of leading and trailing spaces and
//! tabs; an empty line is skipped and takes no pnn; a line starting with `#` is a
//! deleted node, which keeps its pnn so later nodes keep theirs; every other line must
//! be a bare IPv4 or IPv6 address, nothing else on the line.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::{parse_bare_ip, ConfigError, ConfigErrorKind};

/// One node slot of the nodes file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node's pnn: its position among the non-empty lines, from 0.
    pub pnn: u32,
    /// Its private address; `None` for a deleted node (a `#` line).
    pub addr: Option<IpAddr>,
}

/// Parses the text of a nodes file read from `path` (`path` only labels errors).
/// Fails on the first line that is not an address, on a repeated address, and on a
/// file without any node.
pub fn parse_nodes(text: &str, path: &Path) -> Result<Vec<NodeEntry>, ConfigError> {
    let mut nodes = Vec::new();
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let error = |kind| ConfigError::new(path, line, kind);
        let stripped = raw.trim_matches([' ', '\t']);
        if stripped.is_empty() {
            continue;
        }
        let pnn = u32::try_from(nodes.len()).map_err(|_| error(ConfigErrorKind::TooManyNodes))?;
        if stripped.starts_with('#') {
            nodes.push(NodeEntry { pnn, addr: None });
            continue;
        }
        let addr = parse_bare_ip(stripped).ok_or_else(|| {
            error(ConfigErrorKind::BadAddress {
                text: stripped.to_owned(),
            })
        })?;
        if let Some(&first_line) = seen.get(&addr) {
            return Err(error(ConfigErrorKind::DuplicateAddress {
                addr,
                first_line,
            }));
        }
        seen.insert(addr, line);
        nodes.push(NodeEntry {
            pnn,
            addr: Some(addr),
        });
    }
    if nodes.is_empty() {
        return Err(ConfigError::new(path, 0, ConfigErrorKind::NoNodes));
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATH: &str = "/etc/ctdb/nodes";

    fn parse(text: &str) -> Result<Vec<NodeEntry>, ConfigError> {
        parse_nodes(text, Path::new(PATH))
    }

    fn node(pnn: u32, addr: &str) -> NodeEntry {
        NodeEntry {
            pnn,
            addr: Some(addr.parse().unwrap()),
        }
    }

    #[test]
    fn four_node_example_from_ctdb7() {
        let nodes = parse("192.168.1.1\n192.168.1.2\n192.168.1.3\n192.168.1.4\n").unwrap();
        assert_eq!(
            nodes,
            vec![
                node(0, "192.168.1.1"),
                node(1, "192.168.1.2"),
                node(2, "192.168.1.3"),
                node(3, "192.168.1.4"),
            ]
        );
    }

    #[test]
    fn blank_lines_take_no_pnn_and_deleted_nodes_keep_theirs() {
        let text = "\n  10.0.0.1\t\n\n#10.0.0.2\n\t# anything at all\nfd00::3\n\n\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                node(0, "10.0.0.1"),
                NodeEntry { pnn: 1, addr: None },
                NodeEntry { pnn: 2, addr: None },
                node(3, "fd00::3"),
            ]
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_becomes_ipv4() {
        assert_eq!(parse("::ffff:10.1.2.3").unwrap(), vec![node(0, "10.1.2.3")]);
    }

    #[test]
    fn only_deleted_nodes_is_still_a_node_list() {
        assert_eq!(
            parse("#\n").unwrap(),
            vec![NodeEntry { pnn: 0, addr: None }]
        );
    }

    #[test]
    fn anything_but_a_bare_address_is_an_error_with_its_line() {
        for (text, bad) in [
            ("10.0.0.1\n10.0.0.2 # node 1\n", "10.0.0.2 # node 1"),
            ("10.0.0.1\n10.0.0.2:4379\n", "10.0.0.2:4379"),
            ("10.0.0.1\n[fd00::1]\n", "[fd00::1]"),
            ("10.0.0.1\nnode2.example.com\n", "node2.example.com"),
            ("10.0.0.1\n10.0.0.2\r\n", "10.0.0.2\r"),
            ("10.0.0.1\n010.0.0.2\n", "010.0.0.2"),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, 2, "{text:?}");
            assert_eq!(e.kind, ConfigErrorKind::BadAddress { text: bad.into() });
        }
        assert_eq!(
            parse("10.0.0.1\n\nbogus\n").unwrap_err().to_string(),
            "/etc/ctdb/nodes:3: invalid address \"bogus\", expected a bare IPv4 or IPv6 address"
        );
    }

    #[test]
    fn duplicate_address_names_both_lines() {
        let e = parse("10.0.0.1\n10.0.0.2\n::ffff:10.0.0.1\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(
            e.kind,
            ConfigErrorKind::DuplicateAddress {
                addr: "10.0.0.1".parse().unwrap(),
                first_line: 1
            }
        );
        assert_eq!(
            e.to_string(),
            "/etc/ctdb/nodes:3: duplicate address 10.0.0.1, first listed on line 1"
        );
        // Deleted nodes do not count as addresses.
        assert!(parse("#10.0.0.1\n10.0.0.1\n").is_ok());
    }

    #[test]
    fn empty_file_is_an_error_for_the_whole_file() {
        for text in ["", "\n\n", " \t \n"] {
            let e = parse(text).unwrap_err();
            assert_eq!((e.line, e.kind.clone()), (0, ConfigErrorKind::NoNodes));
            assert_eq!(
                e.to_string(),
                "/etc/ctdb/nodes:0: no nodes listed, expected at least one address"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        /// Against a model of the rules written out independently: blank lines
        /// (spaces and tabs only) take no pnn, `#` lines are deleted nodes that keep
        /// theirs, addresses are kept in order, a repeated address or a file with no
        /// node is refused.
        #[test]
        fn pnns_follow_the_non_blank_lines(
            lines in proptest::collection::vec(
                "[ \t]*(#.*|10\\.0\\.(0|[1-9][0-9]?)\\.(0|[1-9][0-9]?))?[ \t]*",
                0..30,
            )
        ) {
            let mut expected = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut duplicate = false;
            for line in &lines {
                let text = line.trim_matches([' ', '\t']);
                if text.is_empty() {
                    continue;
                }
                let addr = if text.starts_with('#') {
                    None
                } else {
                    let addr: IpAddr = text.parse().expect("the generator makes addresses");
                    duplicate |= !seen.insert(addr);
                    Some(addr)
                };
                let pnn = u32::try_from(expected.len()).unwrap();
                expected.push(NodeEntry { pnn, addr });
            }
            match parse(&lines.join("\n")) {
                Ok(nodes) => {
                    prop_assert!(!duplicate && !expected.is_empty());
                    prop_assert_eq!(nodes, expected);
                }
                Err(e) if duplicate => {
                    let is_duplicate = matches!(e.kind, ConfigErrorKind::DuplicateAddress { .. });
                    prop_assert!(is_duplicate, "{}", e);
                }
                Err(e) => {
                    prop_assert!(expected.is_empty(), "{}", e);
                    prop_assert_eq!(e.kind, ConfigErrorKind::NoNodes);
                }
            }
        }
    }
}
