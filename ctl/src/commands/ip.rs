//! `ip [all]`, `ipinfo IP` and `ifaces`: public addresses and interfaces
//! (reference §5.2.2, §6.5–§6.7, §9.4–§9.6).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ctdbd::protocol::control::{node_flags, IfaceList, PublicIpInfo, PublicIpList};
use ctdbd::protocol::packet::UNKNOWN_PNN;
use ctdbd::protocol::wire::{ip_order, parse_ip, Writer};
use ctdbd::protocol::Opcode;
use serde::Serialize;

use super::{json_via_serde, CommandError, Ctx, Report, Style};
use crate::client::{bad_reply, ClientError};

/// One public address as `ip` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicIpView {
    /// The address.
    pub address: String,
    /// Hosting node, −1 when unassigned.
    pub node: i64,
    /// The interface it is on (empty if none or unknown).
    pub active_interface: String,
    /// Its configured interfaces whose link is up.
    pub available_interfaces: Vec<String>,
    /// All its configured interfaces.
    pub configured_interfaces: Vec<String>,
}

/// `ctdb ip [all]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpReport {
    /// `None` for `ip all`, else the node asked.
    pub pnn: Option<u32>,
    /// The addresses, in CTDB's sort order.
    pub ips: Vec<PublicIpView>,
}

impl Report for IpReport {
    fn text(&self, style: &Style) -> String {
        let mut out = String::new();
        if let Some(sep) = &style.machine {
            if style.verbose {
                out.push_str(&Style::row(
                    sep,
                    [
                        "Public IP",
                        "Node",
                        "ActiveInterfaces",
                        "AvailableInterfaces",
                        "ConfiguredInterfaces",
                    ],
                ));
            } else {
                out.push_str(&Style::row(sep, ["Public IP", "Node"]));
            }
            for ip in &self.ips {
                let node = ip.node.to_string();
                if style.verbose {
                    out.push_str(&Style::row(
                        sep,
                        [
                            ip.address.as_str(),
                            &node,
                            &ip.active_interface,
                            &ip.available_interfaces.join(","),
                            &ip.configured_interfaces.join(","),
                        ],
                    ));
                } else {
                    out.push_str(&Style::row(sep, [ip.address.as_str(), &node]));
                }
            }
            return out;
        }
        match self.pnn {
            Some(pnn) => out.push_str(&format!("Public IPs on node {pnn}\n")),
            None => out.push_str("Public IPs on ALL nodes\n"),
        }
        for ip in &self.ips {
            if style.verbose {
                out.push_str(&format!(
                    "{} node[{}] active[{}] available[{}] configured[{}]\n",
                    ip.address,
                    ip.node,
                    ip.active_interface,
                    ip.available_interfaces.join(","),
                    ip.configured_interfaces.join(",")
                ));
            } else {
                out.push_str(&format!("{} {}\n", ip.address, ip.node));
            }
        }
        out
    }
    json_via_serde!();
}

fn public_ips(ctx: &mut Ctx<'_>, pnn: u32) -> Result<PublicIpList, ClientError> {
    let data = ctx.client.control_ok(pnn, Opcode::GET_PUBLIC_IPS, 0, &[])?;
    PublicIpList::decode(&data).map_err(|_| bad_reply(Opcode::GET_PUBLIC_IPS, pnn))
}

fn ip_info(ctx: &mut Ctx<'_>, pnn: u32, addr: IpAddr) -> Result<PublicIpInfo, ClientError> {
    let mut w = Writer::new();
    w.sock_addr(&SocketAddr::new(addr, 0));
    let data = ctx
        .client
        .control_ok(pnn, Opcode::GET_PUBLIC_IP_INFO, 0, &w.into_bytes())?;
    PublicIpInfo::decode(&data).map_err(|_| bad_reply(Opcode::GET_PUBLIC_IP_INFO, pnn))
}

/// The signed view of a PNN that 4.17 prints with `%d`.
fn signed(pnn: u32) -> i64 {
    i64::from(pnn as i32)
}

fn view(addr: IpAddr, pnn: u32, info: Option<&PublicIpInfo>) -> PublicIpView {
    let mut v = PublicIpView {
        address: addr.to_string(),
        node: signed(pnn),
        active_interface: String::new(),
        available_interfaces: Vec::new(),
        configured_interfaces: Vec::new(),
    };
    if let Some(info) = info {
        if let Some(active) = info.active_idx.and_then(|i| info.ifaces.get(i as usize)) {
            v.active_interface = active.name.clone();
        }
        v.available_interfaces = info
            .ifaces
            .iter()
            .filter(|i| i.link_up)
            .map(|i| i.name.clone())
            .collect();
        v.configured_interfaces = info.ifaces.iter().map(|i| i.name.clone()).collect();
    }
    v
}

/// `ctdb ip [all]`: the public addresses of the node, or of every active node merged.
pub fn ip(ctx: &mut Ctx<'_>, args: &[String]) -> Result<IpReport, CommandError> {
    let all = match args {
        [] => false,
        [a] if a == "all" => true,
        _ => return Err(CommandError::Usage("ip")),
    };
    if !all {
        let mut list = public_ips(ctx, ctx.cmd)?.ips;
        list.sort_by(|a, b| ip_order(&a.addr, &b.addr));
        let mut ips = Vec::with_capacity(list.len());
        for entry in list {
            // 4.17 asks for the details of every address, even without -v.
            let info = ip_info(ctx, ctx.cmd, entry.addr)?;
            ips.push(view(entry.addr, entry.pnn, Some(&info)));
        }
        return Ok(IpReport {
            pnn: Some(ctx.cmd),
            ips,
        });
    }
    let map = ctx.nodemap()?;
    // Merge rule (§5.2.2): a node's claim on an address it hosts wins; otherwise the
    // address is recorded as unassigned if nobody claimed it yet.
    let mut merged: BTreeMap<IpKey, u32> = BTreeMap::new();
    for node in map
        .nodes
        .iter()
        .filter(|n| n.flags & node_flags::INACTIVE == 0)
    {
        for entry in public_ips(ctx, node.pnn)?.ips {
            if entry.pnn == node.pnn {
                merged.insert(IpKey(entry.addr), node.pnn);
            } else {
                merged.entry(IpKey(entry.addr)).or_insert(UNKNOWN_PNN);
            }
        }
    }
    let mut ips = Vec::with_capacity(merged.len());
    for (IpKey(addr), pnn) in merged {
        let info = if pnn != UNKNOWN_PNN {
            Some(ip_info(ctx, pnn, addr)?)
        } else {
            None
        };
        ips.push(view(addr, pnn, info.as_ref()));
    }
    Ok(IpReport { pnn: None, ips })
}

/// An address ordered as CTDB sorts them (IPv4 first, then numerically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IpKey(IpAddr);

impl PartialOrd for IpKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IpKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        ip_order(&self.0, &other.0)
    }
}

/// One interface of an address, as `ipinfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IfaceView {
    /// Interface name.
    pub name: String,
    /// Link up.
    pub link_up: bool,
    /// Public addresses using it.
    pub references: u32,
}

/// `ctdb ipinfo IP`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpInfoReport {
    /// The node asked.
    pub pnn: u32,
    /// The address.
    pub address: String,
    /// Its hosting node, −1 when unassigned.
    pub current_node: i64,
    /// Index into `interfaces` of the one the address is on.
    pub active_index: Option<u32>,
    /// Its configured interfaces.
    pub interfaces: Vec<IfaceView>,
}

impl Report for IpInfoReport {
    fn text(&self, _style: &Style) -> String {
        let mut out = format!(
            "Public IP[{addr}] info on node {}\nIP:{addr}\nCurrentNode:{}\nNumInterfaces:{}\n",
            self.pnn,
            self.current_node,
            self.interfaces.len(),
            addr = self.address
        );
        for (i, iface) in self.interfaces.iter().enumerate() {
            out.push_str(&format!(
                "Interface[{}]: Name:{} Link:{} References:{}{}\n",
                i + 1,
                iface.name,
                if iface.link_up { "up" } else { "down" },
                iface.references,
                if self.active_index == Some(i as u32) {
                    " (active)"
                } else {
                    ""
                }
            ));
        }
        out
    }
    json_via_serde!();
}

/// `ctdb ipinfo IP`: GET_PUBLIC_IP_INFO.
pub fn ipinfo(ctx: &mut Ctx<'_>, args: &[String]) -> Result<IpInfoReport, CommandError> {
    let [text] = args else {
        return Err(CommandError::Usage("ipinfo"));
    };
    let Some(addr) = parse_ip(text) else {
        return Err(CommandError::stderr(format!("Invalid IP address {text}")));
    };
    let info = match ip_info(ctx, ctx.cmd, addr) {
        Ok(info) => info,
        Err(e @ ClientError::ControlStatus { .. }) => {
            let code = e.exit_code();
            return Err(CommandError::Failed {
                stdout: format!("Node {} does not know about IP {text}\n", ctx.cmd),
                stderr: format!("{e}\n"),
                code,
            });
        }
        Err(e) => return Err(e.into()),
    };
    Ok(IpInfoReport {
        pnn: ctx.cmd,
        address: addr.to_string(),
        current_node: signed(info.ip.pnn),
        active_index: info.active_idx,
        interfaces: info
            .ifaces
            .iter()
            .map(|i| IfaceView {
                name: i.name.clone(),
                link_up: i.link_up,
                references: i.references,
            })
            .collect(),
    })
}

/// `ctdb ifaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IfacesReport {
    /// The node asked.
    pub pnn: u32,
    /// Its interfaces, in the daemon's order.
    pub interfaces: Vec<IfaceView>,
}

impl Report for IfacesReport {
    fn text(&self, style: &Style) -> String {
        if self.interfaces.is_empty() {
            return format!("No interfaces configured on node {}\n", self.pnn);
        }
        if let Some(sep) = &style.machine {
            let mut out = Style::row(sep, ["Name", "LinkStatus", "References"]);
            for i in &self.interfaces {
                out.push_str(&Style::row(
                    sep,
                    [
                        i.name.as_str(),
                        if i.link_up { "1" } else { "0" },
                        &i.references.to_string(),
                    ],
                ));
            }
            return out;
        }
        let mut out = format!("Interfaces on node {}\n", self.pnn);
        for i in &self.interfaces {
            out.push_str(&format!(
                "name:{} link:{} references:{}\n",
                i.name,
                if i.link_up { "up" } else { "down" },
                i.references
            ));
        }
        out
    }
    json_via_serde!();
}

/// `ctdb ifaces`: GET_IFACES.
pub fn ifaces(ctx: &mut Ctx<'_>, args: &[String]) -> Result<IfacesReport, CommandError> {
    if !args.is_empty() {
        return Err(CommandError::Usage("ifaces"));
    }
    let data = ctx.client.control_ok(ctx.cmd, Opcode::GET_IFACES, 0, &[])?;
    let list = IfaceList::decode(&data).map_err(|_| bad_reply(Opcode::GET_IFACES, ctx.cmd))?;
    Ok(IfacesReport {
        pnn: ctx.cmd,
        interfaces: list
            .ifaces
            .into_iter()
            .map(|i| IfaceView {
                name: i.name,
                link_up: i.link_up,
                references: i.references,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(sep: &str, verbose: bool) -> Style {
        Style {
            machine: Some(sep.to_owned()),
            verbose,
        }
    }

    fn ip3() -> IpReport {
        let plain = |a: &str, n| PublicIpView {
            address: a.to_owned(),
            node: n,
            active_interface: "eth2".into(),
            available_interfaces: vec!["eth2".into(), "eth1".into()],
            configured_interfaces: vec!["eth2".into(), "eth1".into()],
        };
        IpReport {
            pnn: Some(0),
            ips: vec![
                plain("10.0.0.31", 0),
                plain("10.0.0.32", 1),
                plain("10.0.0.33", 2),
            ],
        }
    }

    #[test]
    fn ip_plain_matches_ctdb_ip_003() {
        assert_eq!(
            ip3().text(&Style::default()),
            "Public IPs on node 0\n10.0.0.31 0\n10.0.0.32 1\n10.0.0.33 2\n"
        );
        let empty_all = IpReport {
            pnn: None,
            ips: vec![],
        };
        assert_eq!(
            empty_all.text(&Style::default()),
            "Public IPs on ALL nodes\n"
        );
    }

    #[test]
    fn ip_machine_forms() {
        assert_eq!(
            ip3().text(&machine("|", false)),
            "|Public IP|Node|\n|10.0.0.31|0|\n|10.0.0.32|1|\n|10.0.0.33|2|\n"
        );
        assert_eq!(
            ip3().text(&machine(",", false)),
            ",Public IP,Node,\n,10.0.0.31,0,\n,10.0.0.32,1,\n,10.0.0.33,2,\n"
        );
        assert_eq!(
            ip3().text(&machine("|", true)),
            "|Public IP|Node|ActiveInterfaces|AvailableInterfaces|ConfiguredInterfaces|\n\
             |10.0.0.31|0|eth2|eth2,eth1|eth2,eth1|\n\
             |10.0.0.32|1|eth2|eth2,eth1|eth2,eth1|\n\
             |10.0.0.33|2|eth2|eth2,eth1|eth2,eth1|\n"
        );
    }

    #[test]
    fn ip_verbose_all_matches_ctdb_ip_007() {
        let full = |a: &str, n| PublicIpView {
            address: a.to_owned(),
            node: n,
            active_interface: "eth2".into(),
            available_interfaces: vec!["eth2".into(), "eth1".into()],
            configured_interfaces: vec!["eth2".into(), "eth1".into()],
        };
        let report = IpReport {
            pnn: None,
            ips: vec![
                full("10.0.0.31", 0),
                view("10.0.0.32".parse().unwrap(), UNKNOWN_PNN, None),
                full("10.0.0.33", 2),
                full("fd00::5357:5f01", 2),
                full("fd00::5357:5f02", 1),
                full("fd00::5357:5f03", 0),
            ],
        };
        let style = Style {
            machine: None,
            verbose: true,
        };
        let expected = "\
Public IPs on ALL nodes
10.0.0.31 node[0] active[eth2] available[eth2,eth1] configured[eth2,eth1]
10.0.0.32 node[-1] active[] available[] configured[]
10.0.0.33 node[2] active[eth2] available[eth2,eth1] configured[eth2,eth1]
fd00::5357:5f01 node[2] active[eth2] available[eth2,eth1] configured[eth2,eth1]
fd00::5357:5f02 node[1] active[eth2] available[eth2,eth1] configured[eth2,eth1]
fd00::5357:5f03 node[0] active[eth2] available[eth2,eth1] configured[eth2,eth1]
";
        assert_eq!(report.text(&style), expected);
    }

    #[test]
    fn ipinfo_matches_ctdb_ipinfo_002() {
        let r = IpInfoReport {
            pnn: 0,
            address: "10.0.0.32".into(),
            current_node: 1,
            active_index: Some(0),
            interfaces: vec![
                IfaceView {
                    name: "eth2".into(),
                    link_up: true,
                    references: 2,
                },
                IfaceView {
                    name: "eth1".into(),
                    link_up: true,
                    references: 4,
                },
            ],
        };
        let expected = "\
Public IP[10.0.0.32] info on node 0
IP:10.0.0.32
CurrentNode:1
NumInterfaces:2
Interface[1]: Name:eth2 Link:up References:2 (active)
Interface[2]: Name:eth1 Link:up References:4
";
        assert_eq!(r.text(&Style::default()), expected);
        assert_eq!(r.text(&machine("|", false)), expected);
    }

    #[test]
    fn ifaces_forms() {
        let r = IfacesReport {
            pnn: 0,
            interfaces: vec![
                IfaceView {
                    name: "eth2".into(),
                    link_up: true,
                    references: 2,
                },
                IfaceView {
                    name: "eth1".into(),
                    link_up: true,
                    references: 4,
                },
            ],
        };
        assert_eq!(
            r.text(&Style::default()),
            "Interfaces on node 0\nname:eth2 link:up references:2\nname:eth1 link:up references:4\n"
        );
        assert_eq!(
            r.text(&machine("|", false)),
            "|Name|LinkStatus|References|\n|eth2|1|2|\n|eth1|1|4|\n"
        );
        let empty = IfacesReport {
            pnn: 1,
            interfaces: vec![],
        };
        assert_eq!(
            empty.text(&machine("|", false)),
            "No interfaces configured on node 1\n"
        );
    }
}
