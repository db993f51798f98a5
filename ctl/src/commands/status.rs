//! `status` and `nodestatus`: the node map with flags, and for `status` the VNN map,
//! recovery mode and leader (reference §5.2.2, §9.2, §9.3).

use ctdbd::protocol::control::{
    decode_u32, node_flags, IfaceList, NodeMap, VnnMap, INVALID_GENERATION,
};
use ctdbd::protocol::{Opcode, Runstate};
use serde::Serialize;

use super::{json_via_serde, CommandError, Ctx, Report, Style};
use crate::client::bad_reply;

/// Flag names in the order 4.17 prints them, with their bits.
const FLAG_NAMES: [(u32, &str); 7] = [
    (node_flags::DISCONNECTED, "DISCONNECTED"),
    (node_flags::UNKNOWN, "UNKNOWN"),
    (node_flags::PERMANENTLY_DISABLED, "DISABLED"),
    (node_flags::BANNED, "BANNED"),
    (node_flags::UNHEALTHY, "UNHEALTHY"),
    (node_flags::DELETED, "DELETED"),
    (node_flags::STOPPED, "STOPPED"),
];

/// The flags as `status` prints them: names joined by `|`, `INACTIVE` appended when
/// any inactive bit is set, `OK` for none.
pub fn flags_text(flags: u32) -> String {
    let mut names: Vec<&str> = FLAG_NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    if flags & node_flags::INACTIVE != 0 {
        names.push("INACTIVE");
    }
    if names.is_empty() {
        "OK".to_owned()
    } else {
        names.join("|")
    }
}

/// One node as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// Node number.
    pub pnn: u32,
    /// Its private address.
    pub address: String,
    /// Flags as displayed: UNKNOWN (0x40) replaces them for other nodes while the
    /// target node has not finished its first recovery.
    pub flags: u32,
    /// The flag names (`["OK"]` when none, `["PARTIALLYONLINE"]` when partially online).
    pub flag_names: Vec<String>,
    /// Healthy but with at least one interface whose link is down.
    pub partially_online: bool,
    /// The node the command was about.
    pub this_node: bool,
    /// Deleted nodes are never printed; kept for the count.
    #[serde(skip)]
    pub deleted: bool,
}

/// The node-map part of `status`/`nodestatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeList {
    /// Every node in the map, deleted ones included.
    pub num_nodes: usize,
    /// How many of them are deleted.
    pub num_deleted: usize,
    /// The non-deleted nodes listed.
    pub nodes: Vec<NodeStatus>,
    /// Whether the "Number of nodes" header is printed.
    #[serde(skip)]
    pub header: bool,
}

impl NodeList {
    fn text(&self, style: &Style) -> String {
        let mut out = String::new();
        if let Some(sep) = &style.machine {
            out.push_str(&Style::row(
                sep,
                [
                    "Node",
                    "IP",
                    "Disconnected",
                    "Unknown",
                    "Banned",
                    "Disabled",
                    "Unhealthy",
                    "Stopped",
                    "Inactive",
                    "PartiallyOnline",
                    "ThisNode",
                ],
            ));
            for n in self.nodes.iter().filter(|n| !n.deleted) {
                let bit = |mask: u32| if n.flags & mask != 0 { "1" } else { "0" };
                out.push_str(&Style::row(
                    sep,
                    [
                        n.pnn.to_string().as_str(),
                        &n.address,
                        bit(node_flags::DISCONNECTED),
                        bit(node_flags::UNKNOWN),
                        bit(node_flags::BANNED),
                        bit(node_flags::PERMANENTLY_DISABLED),
                        bit(node_flags::UNHEALTHY),
                        bit(node_flags::STOPPED),
                        bit(node_flags::INACTIVE),
                        if n.partially_online { "1" } else { "0" },
                        if n.this_node { "Y" } else { "N" },
                    ],
                ));
            }
            return out;
        }
        if self.header {
            if self.num_deleted > 0 {
                out.push_str(&format!(
                    "Number of nodes:{} (including {} deleted nodes)\n",
                    self.num_nodes, self.num_deleted
                ));
            } else {
                out.push_str(&format!("Number of nodes:{}\n", self.num_nodes));
            }
        }
        for n in self.nodes.iter().filter(|n| !n.deleted) {
            out.push_str(&format!(
                "pnn:{} {:<16} {}{}\n",
                n.pnn,
                n.address,
                n.flag_names.join("|"),
                if n.this_node { " (THIS NODE)" } else { "" }
            ));
        }
        out
    }

    /// nodestatus's exit status: the OR of the displayed flags.
    fn flags_or(&self) -> u32 {
        self.nodes
            .iter()
            .filter(|n| !n.deleted)
            .fold(0, |acc, n| acc | n.flags)
    }
}

/// Builds the displayed node list for `selected` pnns (every node when `None`).
fn node_list(
    ctx: &mut Ctx<'_>,
    map: &NodeMap,
    runstate: Runstate,
    selected: Option<&[u32]>,
    header: bool,
) -> Result<NodeList, CommandError> {
    let unknown_others = runstate <= Runstate::FirstRecovery;
    let mut nodes = Vec::new();
    let wanted: Vec<u32> = match selected {
        Some(list) => list.to_vec(),
        None => map.nodes.iter().map(|n| n.pnn).collect(),
    };
    for pnn in wanted {
        let Some(node) = map.nodes.get(pnn as usize) else {
            continue;
        };
        let deleted = node.flags & node_flags::DELETED != 0;
        let mut flags = node.flags;
        if unknown_others
            && node.pnn != ctx.cmd
            && flags & (node_flags::DELETED | node_flags::DISCONNECTED) == 0
        {
            flags = node_flags::UNKNOWN;
        }
        let mut partially_online = false;
        if flags == 0 && !deleted {
            // A failed GET_IFACES just means we cannot tell: 4.17 shows OK then.
            if let Ok(data) = ctx.client.control_ok(node.pnn, Opcode::GET_IFACES, 0, &[]) {
                if let Ok(list) = IfaceList::decode(&data) {
                    partially_online = list.ifaces.iter().any(|i| !i.link_up);
                }
            }
        }
        let flag_names = if partially_online {
            vec!["PARTIALLYONLINE".to_owned()]
        } else {
            flags_text(flags).split('|').map(str::to_owned).collect()
        };
        nodes.push(NodeStatus {
            pnn: node.pnn,
            address: node.addr.ip().to_string(),
            flags,
            flag_names,
            partially_online,
            this_node: node.pnn == ctx.cmd,
            deleted,
        });
    }
    let num_deleted = map
        .nodes
        .iter()
        .filter(|n| n.flags & node_flags::DELETED != 0)
        .count();
    Ok(NodeList {
        num_nodes: map.nodes.len(),
        num_deleted,
        nodes,
        header,
    })
}

fn runstate_of(ctx: &mut Ctx<'_>) -> Result<Runstate, CommandError> {
    let data = ctx
        .client
        .control_ok(ctx.cmd, Opcode::GET_RUNSTATE, 0, &[])?;
    let value =
        decode_u32(&data, "runstate").map_err(|_| bad_reply(Opcode::GET_RUNSTATE, ctx.cmd))?;
    Ok(Runstate::from_u32(value))
}

/// The VNN map as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VnnMapView {
    /// Generation; `null` when invalid.
    pub generation: Option<u32>,
    /// Location master of each hash bucket.
    pub lmasters: Vec<u32>,
}

/// `ctdb status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The node map.
    #[serde(flatten)]
    pub nodes: NodeList,
    /// The VNN map (absent in machine-readable mode, which does not query it).
    pub vnn_map: Option<VnnMapView>,
    /// Recovery mode: 0 NORMAL, 1 RECOVERY.
    pub recovery_mode: Option<i32>,
    /// Leader PNN; `null` when no leader broadcast arrived in time.
    pub leader: Option<u32>,
}

impl Report for Status {
    fn text(&self, style: &Style) -> String {
        let mut out = self.nodes.text(style);
        if style.machine.is_some() {
            return out;
        }
        if let Some(vnn) = &self.vnn_map {
            match vnn.generation {
                Some(g) => out.push_str(&format!("Generation:{g}\n")),
                None => out.push_str("Generation:INVALID\n"),
            }
            out.push_str(&format!("Size:{}\n", vnn.lmasters.len()));
            for (hash, lmaster) in vnn.lmasters.iter().enumerate() {
                out.push_str(&format!("hash:{hash} lmaster:{lmaster}\n"));
            }
        }
        if let Some(mode) = self.recovery_mode {
            let name = if mode == 0 { "NORMAL" } else { "RECOVERY" };
            out.push_str(&format!("Recovery mode:{name} ({mode})\n"));
        }
        match self.leader {
            Some(l) => out.push_str(&format!("Leader:{l}\n")),
            None => out.push_str("Leader:UNKNOWN\n"),
        }
        out
    }
    json_via_serde!();
}

/// `ctdb status`: node map, runstate; then (plain only) VNN map, recovery mode and
/// leader.
pub fn status(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Status, CommandError> {
    if !args.is_empty() {
        return Err(CommandError::Usage("status"));
    }
    let map = ctx.nodemap()?;
    let runstate = runstate_of(ctx)?;
    if ctx.style.machine.is_some() {
        let nodes = node_list(ctx, &map, runstate, None, true)?;
        return Ok(Status {
            nodes,
            vnn_map: None,
            recovery_mode: None,
            leader: None,
        });
    }
    let data = ctx.client.control_ok(ctx.cmd, Opcode::GETVNNMAP, 0, &[])?;
    let vnn = VnnMap::decode(&data).map_err(|_| bad_reply(Opcode::GETVNNMAP, ctx.cmd))?;
    let mode = ctx
        .client
        .control_status(ctx.cmd, Opcode::GET_RECMODE, 0, &[])?;
    let leader = ctx.client.wait_leader()?;
    let nodes = node_list(ctx, &map, runstate, None, true)?;
    Ok(Status {
        nodes,
        vnn_map: Some(VnnMapView {
            generation: (vnn.generation != INVALID_GENERATION).then_some(vnn.generation),
            lmasters: vnn.map,
        }),
        recovery_mode: Some(mode),
        leader,
    })
}

/// `ctdb nodestatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatusReport {
    /// The listed nodes.
    #[serde(flatten)]
    pub nodes: NodeList,
}

impl Report for NodeStatusReport {
    fn text(&self, style: &Style) -> String {
        self.nodes.text(style)
    }
    json_via_serde!();
    fn exit_code(&self) -> i32 {
        self.nodes.flags_or() as i32
    }
}

/// `ctdb nodestatus [all|PNN,...]`: exit status = OR of the listed nodes' flags.
pub fn nodestatus(ctx: &mut Ctx<'_>, args: &[String]) -> Result<NodeStatusReport, CommandError> {
    if args.len() > 1 {
        return Err(CommandError::Usage("nodestatus"));
    }
    let map = ctx.nodemap()?;
    let (selected, header): (Option<Vec<u32>>, bool) = match args.first().map(String::as_str) {
        None => (Some(vec![ctx.cmd]), false),
        Some("all") => (None, true),
        Some(list) => {
            let mut pnns = Vec::new();
            for item in list.split(',') {
                let pnn: u32 = item
                    .parse()
                    .map_err(|_| CommandError::stderr(format!("Invalid node {item}")))?;
                if map.nodes.get(pnn as usize).is_none() {
                    return Err(CommandError::stderr(format!("Node {pnn} does not exist")));
                }
                pnns.push(pnn);
            }
            (Some(pnns), false)
        }
    };
    let runstate = runstate_of(ctx)?;
    let nodes = node_list(ctx, &map, runstate, selected.as_deref(), header)?;
    Ok(NodeStatusReport { nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(pnn: u32, address: &str, flags: u32, this_node: bool) -> NodeStatus {
        NodeStatus {
            pnn,
            address: address.to_owned(),
            flags,
            flag_names: flags_text(flags).split('|').map(str::to_owned).collect(),
            partially_online: false,
            this_node,
            deleted: flags & node_flags::DELETED != 0,
        }
    }

    fn three_ok() -> NodeList {
        NodeList {
            num_nodes: 3,
            num_deleted: 0,
            nodes: vec![
                node(0, "192.168.20.41", 0, true),
                node(1, "192.168.20.42", 0, false),
                node(2, "192.168.20.43", 0, false),
            ],
            header: true,
        }
    }

    #[test]
    fn status_plain_matches_ctdb_status_001() {
        let s = Status {
            nodes: three_ok(),
            vnn_map: Some(VnnMapView {
                generation: Some(654321),
                lmasters: vec![0, 1, 2],
            }),
            recovery_mode: Some(0),
            leader: Some(0),
        };
        let expected = "\
Number of nodes:3
pnn:0 192.168.20.41    OK (THIS NODE)
pnn:1 192.168.20.42    OK
pnn:2 192.168.20.43    OK
Generation:654321
Size:3
hash:0 lmaster:0
hash:1 lmaster:1
hash:2 lmaster:2
Recovery mode:NORMAL (0)
Leader:0
";
        assert_eq!(s.text(&Style::default()), expected);
    }

    #[test]
    fn status_machine_matches_reference() {
        let mut nodes = three_ok();
        nodes.nodes[0].this_node = false;
        nodes.nodes[1] = node(1, "192.168.20.42", 0, true);
        nodes.nodes[0] = node(0, "192.168.20.41", node_flags::UNKNOWN, false);
        nodes.nodes[2] = node(2, "192.168.20.43", node_flags::UNKNOWN, false);
        let s = Status {
            nodes,
            vnn_map: None,
            recovery_mode: None,
            leader: None,
        };
        let style = Style {
            machine: Some("|".to_owned()),
            verbose: false,
        };
        let expected = "\
|Node|IP|Disconnected|Unknown|Banned|Disabled|Unhealthy|Stopped|Inactive|PartiallyOnline|ThisNode|
|0|192.168.20.41|0|1|0|0|0|0|0|0|N|
|1|192.168.20.42|0|0|0|0|0|0|0|0|Y|
|2|192.168.20.43|0|1|0|0|0|0|0|0|N|
";
        assert_eq!(s.text(&style), expected);
    }

    #[test]
    fn status_with_deleted_and_invalid_generation() {
        let s = Status {
            nodes: NodeList {
                num_nodes: 5,
                num_deleted: 1,
                nodes: vec![
                    node(0, "192.168.20.41", 0, true),
                    node(1, "192.168.20.42", node_flags::DISCONNECTED, false),
                    node(3, "0.0.0.0", node_flags::DELETED, false),
                    node(4, "fd00::1", node_flags::UNKNOWN, false),
                ],
                header: true,
            },
            vnn_map: Some(VnnMapView {
                generation: None,
                lmasters: vec![0],
            }),
            recovery_mode: Some(1),
            leader: None,
        };
        let expected = "\
Number of nodes:5 (including 1 deleted nodes)
pnn:0 192.168.20.41    OK (THIS NODE)
pnn:1 192.168.20.42    DISCONNECTED|INACTIVE
pnn:4 fd00::1          UNKNOWN
Generation:INVALID
Size:1
hash:0 lmaster:0
Recovery mode:RECOVERY (1)
Leader:UNKNOWN
";
        assert_eq!(s.text(&Style::default()), expected);
    }

    #[test]
    fn nodestatus_exit_codes_are_the_flags() {
        let r = NodeStatusReport {
            nodes: NodeList {
                num_nodes: 3,
                num_deleted: 0,
                nodes: vec![
                    node(0, "192.168.20.41", 0, false),
                    node(1, "192.168.20.42", 0x01, false),
                    node(2, "192.168.20.43", 0, true),
                ],
                header: true,
            },
        };
        let expected = "\
Number of nodes:3
pnn:0 192.168.20.41    OK
pnn:1 192.168.20.42    DISCONNECTED|INACTIVE
pnn:2 192.168.20.43    OK (THIS NODE)
";
        assert_eq!(r.text(&Style::default()), expected);
        assert_eq!(r.exit_code(), 1);

        let r = NodeStatusReport {
            nodes: NodeList {
                num_nodes: 3,
                num_deleted: 0,
                nodes: vec![node(0, "192.168.20.41", 0x24, false)],
                header: false,
            },
        };
        assert_eq!(
            r.text(&Style::default()),
            "pnn:0 192.168.20.41    DISABLED|STOPPED|INACTIVE\n"
        );
        assert_eq!(r.exit_code(), 36);
    }

    #[test]
    fn flag_texts() {
        assert_eq!(flags_text(0), "OK");
        assert_eq!(flags_text(0x03), "DISCONNECTED|UNHEALTHY|INACTIVE");
        assert_eq!(flags_text(0x08), "BANNED|INACTIVE");
        assert_eq!(flags_text(0x20), "STOPPED|INACTIVE");
        assert_eq!(flags_text(0x04), "DISABLED");
    }

    #[test]
    fn partially_online_text() {
        let mut n = node(0, "192.168.20.41", 0, true);
        n.partially_online = true;
        n.flag_names = vec!["PARTIALLYONLINE".to_owned()];
        let list = NodeList {
            num_nodes: 1,
            num_deleted: 0,
            nodes: vec![n],
            header: true,
        };
        assert_eq!(
            list.text(&Style::default()),
            "Number of nodes:1\npnn:0 192.168.20.41    PARTIALLYONLINE (THIS NODE)\n"
        );
    }
}
