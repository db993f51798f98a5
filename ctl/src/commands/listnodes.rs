//! `listnodes` and the nodes file as the 4.17 tool reads it (reference §7, §9.10);
//! also the diagnosis printed when the daemon cannot be reached (§5.2.1), which
//! consults the same file.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};

use ctdbd::protocol::wire::parse_ip;
use serde::Serialize;

use super::{json_via_serde, CommandError, Report, Style};

/// One line of the nodes file that names a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeEntry {
    /// Node number: the running count of accepted lines.
    pub pnn: u32,
    /// Its address (0.0.0.0 for a deleted node).
    pub address: IpAddr,
    /// A `#` line: the node is deleted but keeps its number.
    pub deleted: bool,
}

/// Why the nodes file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodesFileError {
    /// A line that is neither blank, `#…`, nor a bare address.
    #[error("Invalid IP address {0}")]
    InvalidAddress(String),
}

/// Parses the nodes file like the 4.17 tool: trailing blank lines dropped, each line
/// trimmed of spaces and tabs, blank lines skipped without taking a number, `#` lines
/// are deleted nodes, anything else must be a bare address.
pub fn parse_nodes_file(text: &str) -> Result<Vec<NodeEntry>, NodesFileError> {
    let mut nodes = Vec::new();
    for line in text.lines() {
        let line = line.trim_matches([' ', '\t', '\r']);
        if line.is_empty() {
            continue;
        }
        let pnn = nodes.len() as u32;
        if line.starts_with('#') {
            nodes.push(NodeEntry {
                pnn,
                address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                deleted: true,
            });
            continue;
        }
        let address =
            parse_ip(line).ok_or_else(|| NodesFileError::InvalidAddress(line.to_owned()))?;
        nodes.push(NodeEntry {
            pnn,
            address,
            deleted: false,
        });
    }
    Ok(nodes)
}

/// The nodes file when no node is known: `$CTDB_NODES`, else `$CTDB_BASE/nodes`,
/// else `/etc/ctdb/nodes`.
pub fn nodes_file_path() -> PathBuf {
    nodes_file_path_for(None)
}

/// The nodes file as the tool picks it for node `pnn`: `$CTDB_NODES_<pnn>` first
/// (test setups give each node its own file), then as [`nodes_file_path`].
pub fn nodes_file_path_for(pnn: Option<u32>) -> PathBuf {
    let per_node = pnn.and_then(|p| std::env::var_os(format!("CTDB_NODES_{p}")));
    if let Some(path) = per_node.or_else(|| std::env::var_os("CTDB_NODES")) {
        return PathBuf::from(path);
    }
    match std::env::var_os("CTDB_BASE") {
        Some(base) => Path::new(&base).join("nodes"),
        None => PathBuf::from("/etc/ctdb/nodes"),
    }
}

/// Reads and parses the nodes file at `path`, failing with the tool's messages.
pub fn read_nodes(path: &Path) -> Result<Vec<NodeEntry>, CommandError> {
    let failed = || format!("Failed to read nodes file \"{}\"", path.display());
    let text = std::fs::read_to_string(path).map_err(|_| CommandError::stderr(failed()))?;
    parse_nodes_file(&text).map_err(|e| CommandError::stderr(format!("{e}\n{}", failed())))
}

/// `ctdb listnodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeListing {
    /// The non-deleted nodes.
    pub nodes: Vec<NodeEntry>,
}

impl Report for NodeListing {
    fn text(&self, style: &Style) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            match &style.machine {
                Some(sep) => {
                    out.push_str(&Style::row(sep, [n.pnn.to_string(), n.address.to_string()]))
                }
                None => out.push_str(&format!("{}\n", n.address)),
            }
        }
        out
    }
    json_via_serde!();
}

/// `ctdb listnodes`: reads the nodes file; no daemon contact.
pub fn run(path: &Path) -> Result<NodeListing, CommandError> {
    let nodes = read_nodes(path)?
        .into_iter()
        .filter(|n| !n.deleted)
        .collect();
    Ok(NodeListing { nodes })
}

/// The lines 4.17 adds after a failed connect: nothing if this host holds one of the
/// nodes-file addresses, else why it seems not to be a cluster node.
pub fn connect_diagnosis() -> String {
    let path = nodes_file_path();
    let tail = "Is this node part of CTDB cluster?\n";
    let nodes = match std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| parse_nodes_file(&t).ok())
    {
        Some(nodes) => nodes,
        None => return format!("Failed to read nodes file \"{}\"\n{tail}", path.display()),
    };
    // An address is local exactly when a socket can be bound to it.
    let local = nodes
        .iter()
        .filter(|n| !n.deleted)
        .any(|n| UdpSocket::bind((n.address, 0)).is_ok());
    if local {
        String::new()
    } else {
        format!("Failed to detect PNN of the current node.\n{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_deleted_blank_and_padded_lines() {
        let nodes = parse_nodes_file("10.0.0.1\n#x\n\n  10.0.0.3\t\n\n\n").unwrap();
        assert_eq!(
            nodes,
            vec![
                NodeEntry {
                    pnn: 0,
                    address: "10.0.0.1".parse().unwrap(),
                    deleted: false
                },
                NodeEntry {
                    pnn: 1,
                    address: "0.0.0.0".parse().unwrap(),
                    deleted: true
                },
                NodeEntry {
                    pnn: 2,
                    address: "10.0.0.3".parse().unwrap(),
                    deleted: false
                },
            ]
        );
    }

    #[test]
    fn rejects_ports_and_junk() {
        assert_eq!(
            parse_nodes_file("10.0.0.1:4379\n"),
            Err(NodesFileError::InvalidAddress("10.0.0.1:4379".into()))
        );
        assert_eq!(
            parse_nodes_file("foo\n").unwrap_err().to_string(),
            "Invalid IP address foo"
        );
        assert_eq!(parse_nodes_file(""), Ok(vec![]));
        assert_eq!(
            parse_nodes_file("fd00::1\n").unwrap()[0]
                .address
                .to_string(),
            "fd00::1"
        );
    }

    #[test]
    fn listing_matches_reference() {
        let listing = NodeListing {
            nodes: parse_nodes_file("192.168.20.41\n192.168.20.42\n192.168.20.43\n").unwrap(),
        };
        assert_eq!(
            listing.text(&Style::default()),
            "192.168.20.41\n192.168.20.42\n192.168.20.43\n"
        );
        let style = Style {
            machine: Some("|".into()),
            verbose: false,
        };
        assert_eq!(
            listing.text(&style),
            "|0|192.168.20.41|\n|1|192.168.20.42|\n|2|192.168.20.43|\n"
        );
    }

    #[test]
    fn deleted_nodes_are_not_listed_but_keep_numbers() {
        let dir = std::env::temp_dir().join(format!("ctl-listnodes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nodes");
        std::fs::write(&path, "10.0.0.1\n#\n10.0.0.3\n").unwrap();
        let listing = run(&path).unwrap();
        let style = Style {
            machine: Some("|".into()),
            verbose: false,
        };
        assert_eq!(listing.text(&style), "|0|10.0.0.1|\n|2|10.0.0.3|\n");
        std::fs::remove_dir_all(&dir).unwrap();
        let (_, err, code) = run(&path).unwrap_err().output();
        assert_eq!(
            (err, code),
            (
                format!("Failed to read nodes file \"{}\"\n", path.display()),
                1
            )
        );
    }
}
