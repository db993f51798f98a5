//! Commands that change public addresses — `moveip`, `addip`, `delip`,
//! `reloadips` — and the TCP connection ("tickle") commands `addtickle`,
//! `deltickle`, `gettickles` (reference §5.2.2, §6.5, §6.12, §8).

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ctdbd::protocol::control::{node_flags, srvid, AddrInfo, PublicIp, PublicIpList};
use ctdbd::protocol::Opcode;
use serde::Serialize;

use super::{json_via_serde, CommandError, Ctx, Report, Style};
use crate::client::{bad_reply, ClientError, MessageOpError};
use crate::tickle::{self, Connection, TickleList};

/// How often the tool tries `moveip` and ADD_PUBLIC_IP, and the pause after each
/// failed try.
const TRIES: usize = 5;
const RETRY_PAUSE: Duration = Duration::from_secs(3);
const EINVAL: i32 = 22;
const ERANGE: i32 = 34;

/// `strtoul` in base 10 as the tool uses it: leading blanks, an optional `+`,
/// digits; returns the value (wrapped to 64 bits is not allowed: ERANGE) and what
/// follows the digits. No digits or a `-` sign is EINVAL.
pub fn strtoul10(text: &str) -> Result<(u64, &str), i32> {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let t = match t.as_bytes().first() {
        Some(b'+') => &t[1..],
        Some(b'-') => return Err(EINVAL),
        _ => t,
    };
    let end = t.bytes().take_while(u8::is_ascii_digit).count();
    if end == 0 {
        return Err(EINVAL);
    }
    let value = t[..end].parse::<u64>().map_err(|_| ERANGE)?;
    Ok((value, &t[end..]))
}

/// A failed control followed by the command's own line about it.
fn failed_with(e: ClientError, line: &str, code: Option<i32>) -> CommandError {
    let exit = code.unwrap_or_else(|| e.exit_code());
    let mut stderr = match e {
        ClientError::Closed | ClientError::Reported => String::new(),
        e => format!("{e}\n"),
    };
    stderr.push_str(line);
    stderr.push('\n');
    CommandError::Failed {
        stdout: String::new(),
        stderr,
        code: exit,
    }
}

/// Gives a control failure the name 4.17 prints for controls ctdbd's table lacks.
fn named(e: ClientError, op: Opcode) -> ClientError {
    match e {
        ClientError::Transport { pnn, errno, .. } => ClientError::Transport {
            name: op.name(),
            pnn,
            errno,
        },
        ClientError::ControlStatus { status, .. } => ClientError::ControlStatus {
            name: op.name(),
            status,
        },
        other => other,
    }
}

fn public_ips(ctx: &mut Ctx<'_>, pnn: u32) -> Result<PublicIpList, ClientError> {
    let data = ctx.client.control_ok(pnn, Opcode::GET_PUBLIC_IPS, 0, &[])?;
    PublicIpList::decode(&data).map_err(|_| bad_reply(Opcode::GET_PUBLIC_IPS, pnn))
}

/// What a command that prints nothing on success reports in `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpChange {
    /// The node acted on (for `moveip`, the node the address moves to).
    pub pnn: u32,
    /// The address.
    pub address: String,
    /// Whether the command changed something (false: nothing to do).
    pub changed: bool,
    /// The note printed on stderr when nothing had to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Report for IpChange {
    fn text(&self, _style: &Style) -> String {
        String::new()
    }
    json_via_serde!();
    fn stderr(&self) -> String {
        self.note
            .as_ref()
            .map(|n| format!("{n}\n"))
            .unwrap_or_default()
    }
}

/// One try of `moveip`: Ok, or the lines to print and the status.
fn moveip_once(ctx: &mut Ctx<'_>, addr: IpAddr, pnn: u32) -> Result<(), (String, i32)> {
    let fail = |e: ClientError, line: String| {
        let code = e.exit_code();
        let mut text = match e {
            ClientError::Closed | ClientError::Reported => String::new(),
            e => format!("{e}\n"),
        };
        text.push_str(&line);
        text.push('\n');
        (text, code)
    };
    let hold = 2 * ctx.client.timelimit_secs();
    ctx.client
        .send_message(
            ctdbd::protocol::packet::BROADCAST_CONNECTED,
            srvid::DISABLE_IP_CHECK,
            &hold.to_le_bytes(),
        )
        .map_err(|e| fail(e, "Failed to disable IP check".to_owned()))?;
    let list = public_ips(ctx, pnn)
        .map_err(|e| fail(e, format!("Failed to get Public IPs from node {pnn}")))?;
    if !list.ips.iter().any(|ip| ip.addr == addr) {
        return Err((format!("Node {pnn} CANNOT host IP address {addr}\n"), 1));
    }
    let map = ctx.nodemap().map_err(|_| (String::new(), 1))?;
    let others: Vec<u32> = map
        .nodes
        .iter()
        .filter(|n| n.flags & node_flags::INACTIVE == 0 && n.pnn != pnn)
        .map(|n| n.pnn)
        .collect();
    if others.is_empty() {
        return Err(("Memory allocation error\n".to_owned(), 1));
    }
    let request = PublicIp { pnn, addr }.encode();
    let results = ctx
        .client
        .control_multi_data(&others, Opcode::RELEASE_IP, &request);
    if let Some(e) = results.into_iter().find_map(|r| match r {
        Ok(0) => None,
        Ok(status) => Some(ClientError::ControlStatus {
            name: Opcode::RELEASE_IP.name(),
            status,
        }),
        Err(e) => Some(e),
    }) {
        return Err(fail(e, "Failed to release IP on nodes".to_owned()));
    }
    ctx.client
        .control_ok(pnn, Opcode::TAKEOVER_IP, 0, &request)
        .map_err(|e| fail(e, format!("Failed to takeover IP on node {pnn}")))?;
    Ok(())
}

/// `ctdb moveip IP PNN`: up to five tries, three seconds apart.
pub fn moveip(ctx: &mut Ctx<'_>, args: &[String]) -> Result<IpChange, CommandError> {
    let [ip_text, pnn_text] = args else {
        return Err(CommandError::Usage("moveip"));
    };
    let Some(addr) = tickle::parse_addr(ip_text) else {
        return Err(CommandError::stderr(format!(
            "Invalid IP address {ip_text}"
        )));
    };
    let pnn = match strtoul10(pnn_text) {
        Ok((v, _)) if v as u32 != u32::MAX => v as u32,
        _ => return Err(CommandError::stderr(format!("Invalid PNN {pnn_text}"))),
    };
    let mut stderr = String::new();
    let mut code = 0;
    for _ in 0..TRIES {
        match moveip_once(ctx, addr, pnn) {
            Ok(()) => {
                code = 0;
                break;
            }
            Err((text, status)) => {
                stderr.push_str(&text);
                code = status;
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
    if code != 0 {
        stderr.push_str(&format!("Failed to move IP {ip_text} to node {pnn}\n"));
        return Err(CommandError::Failed {
            stdout: String::new(),
            stderr,
            code,
        });
    }
    // Failed tries before a successful one still printed their lines.
    Ok(IpChange {
        pnn,
        address: addr.to_string(),
        changed: true,
        note: (!stderr.is_empty()).then(|| stderr.trim_end().to_owned()),
    })
}

/// `IP/MASK` as `addip` takes it: split at the last `/`; the mask a whole decimal
/// number, cut to 32 bits (not checked against the address family).
pub fn parse_ip_mask(text: &str) -> Option<(IpAddr, u32)> {
    let (ip, mask) = text.rsplit_once('/')?;
    let (mask, rest) = strtoul10(mask).ok()?;
    if !rest.is_empty() {
        return None;
    }
    Some((tickle::parse_addr(ip)?, mask as u32))
}

/// `ctdb addip IP/MASK IFACE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddIp {
    /// The node asked.
    pub pnn: u32,
    /// The address.
    pub address: String,
    /// The prefix length sent.
    pub mask: u32,
    /// The interface(s) as given.
    pub interface: String,
    /// False when the node already had the address (nothing was sent).
    pub added: bool,
    /// The note printed on stderr when the node already had it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Report for AddIp {
    fn text(&self, _style: &Style) -> String {
        String::new()
    }
    json_via_serde!();
    fn stderr(&self) -> String {
        self.note
            .as_ref()
            .map(|n| format!("{n}\n"))
            .unwrap_or_default()
    }
}

/// `ctdb addip IP/MASK IFACE`: ADD_PUBLIC_IP (up to five tries), then ask the
/// leader to rebalance the node.
pub fn addip(ctx: &mut Ctx<'_>, args: &[String]) -> Result<AddIp, CommandError> {
    let [spec, iface] = args else {
        return Err(CommandError::Usage("addip"));
    };
    let Some((addr, mask)) = parse_ip_mask(spec) else {
        return Err(CommandError::stderr(format!("Invalid IP/Mask {spec}")));
    };
    let cmd = ctx.cmd;
    let list = public_ips(ctx, cmd).map_err(|e| {
        failed_with(
            e,
            &format!("Failed to get Public IPs from node {cmd}"),
            Some(1),
        )
    })?;
    let mut result = AddIp {
        pnn: cmd,
        address: addr.to_string(),
        mask,
        interface: iface.clone(),
        added: false,
        note: None,
    };
    if list.ips.iter().any(|ip| ip.addr == addr) {
        result.note = Some(format!("Node already knows about IP {addr}"));
        return Ok(result);
    }
    let request = AddrInfo {
        addr,
        mask,
        iface: Some(iface.clone()),
    }
    .encode();
    let mut stderr = String::new();
    let mut last = None;
    for _ in 0..TRIES {
        match ctx
            .client
            .control_ok(cmd, Opcode::ADD_PUBLIC_IP, 0, &request)
        {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => {
                if !matches!(e, ClientError::Closed) {
                    stderr.push_str(&format!("{e}\n"));
                }
                last = Some(e.exit_code());
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
    if let Some(code) = last {
        stderr.push_str(&format!(
            "Failed to add public IP to node {cmd}. Giving up\n"
        ));
        return Err(CommandError::Failed {
            stdout: String::new(),
            stderr,
            code,
        });
    }
    ctx.client
        .send_message(
            ctdbd::protocol::packet::BROADCAST_CONNECTED,
            srvid::REBALANCE_NODE,
            &cmd.to_le_bytes(),
        )
        .map_err(|e| {
            failed_with(
                e,
                &format!("Failed to send message to rebalance node {cmd}"),
                None,
            )
        })?;
    result.added = true;
    Ok(result)
}

/// `ctdb delip IP`: DEL_PUBLIC_IP if the node has the address.
pub fn delip(ctx: &mut Ctx<'_>, args: &[String]) -> Result<IpChange, CommandError> {
    let [ip_text] = args else {
        return Err(CommandError::Usage("delip"));
    };
    let Some(addr) = tickle::parse_addr(ip_text) else {
        return Err(CommandError::stderr(format!(
            "Invalid IP address {ip_text}"
        )));
    };
    let cmd = ctx.cmd;
    let list = public_ips(ctx, cmd).map_err(|e| {
        failed_with(
            e,
            &format!("Failed to get Public IPs from node {cmd}"),
            Some(1),
        )
    })?;
    if !list.ips.iter().any(|ip| ip.addr == addr) {
        return Ok(IpChange {
            pnn: cmd,
            address: addr.to_string(),
            changed: false,
            note: Some(format!("Node does not know about IP address {addr}")),
        });
    }
    let request = AddrInfo {
        addr,
        mask: 0,
        iface: None,
    }
    .encode();
    ctx.client
        .control_ok(cmd, Opcode::DEL_PUBLIC_IP, 0, &request)
        .map_err(|e| {
            failed_with(
                e,
                &format!("Failed to delete public IP from node {cmd}"),
                None,
            )
        })?;
    Ok(IpChange {
        pnn: cmd,
        address: addr.to_string(),
        changed: true,
        note: None,
    })
}

/// `ctdb reloadips [all|PNN,...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadIps {
    /// The nodes asked to reload (the selection without inactive nodes).
    pub nodes: Vec<u32>,
}

impl Report for ReloadIps {
    fn text(&self, _style: &Style) -> String {
        String::new()
    }
    json_via_serde!();
}

fn message_failed(e: MessageOpError, line: &str) -> CommandError {
    let (mut stderr, code) = match e {
        MessageOpError::Client(ClientError::Closed) => (String::new(), 1),
        MessageOpError::Client(e) => (format!("{e}\n"), e.exit_code()),
        MessageOpError::Refused(_) => (String::new(), 1),
    };
    stderr.push_str(line);
    stderr.push('\n');
    CommandError::Failed {
        stdout: String::new(),
        stderr,
        code,
    }
}

/// `ctdb reloadips [all|PNN,...]`: with takeover runs held off on every connected
/// node, have the selected active nodes re-read their public addresses; then a
/// takeover run.
pub fn reloadips(ctx: &mut Ctx<'_>, args: &[String]) -> Result<ReloadIps, CommandError> {
    if args.len() > 1 {
        return Err(CommandError::Usage("reloadips"));
    }
    let map = ctx.nodemap()?;
    let selected: Vec<u32> = match args.first().map(String::as_str) {
        None => vec![ctx.cmd],
        Some("all") => map
            .nodes
            .iter()
            .filter(|n| n.flags & node_flags::DELETED == 0)
            .map(|n| n.pnn)
            .collect(),
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
            pnns
        }
    };
    let active: Vec<u32> = selected
        .into_iter()
        .filter(|&p| {
            map.nodes
                .get(p as usize)
                .is_some_and(|n| n.flags & node_flags::INACTIVE == 0)
        })
        .collect();
    if active.is_empty() {
        return Err(CommandError::stderr("Memory allocation error"));
    }
    let connected: Vec<u32> = map
        .nodes
        .iter()
        .filter(|n| n.flags & node_flags::DISCONNECTED == 0)
        .map(|n| n.pnn)
        .collect();
    let hold = 2 * ctx.client.timelimit_secs();
    ctx.client
        .disable_op(srvid::DISABLE_TAKEOVER_RUNS, hold, &connected)
        .map_err(|e| message_failed(e, "Failed to disable takeover runs"))?;
    let results = ctx.client.control_multi(&active, Opcode::RELOAD_PUBLIC_IPS);
    let reload_failed = results.iter().any(|r| !matches!(r, Ok(0)));
    let mut stderr = String::new();
    if reload_failed {
        stderr.push_str("Failed to reload IPs on some nodes.\n");
    }
    if let Err(e) = ctx
        .client
        .disable_op(srvid::DISABLE_TAKEOVER_RUNS, 0, &connected)
    {
        let (_, more, code) = message_failed(e, "Failed to enable takeover runs").output();
        stderr.push_str(&more);
        return Err(CommandError::Failed {
            stdout: String::new(),
            stderr,
            code,
        });
    }
    if reload_failed {
        return Err(CommandError::Failed {
            stdout: String::new(),
            stderr,
            code: 1,
        });
    }
    ctx.client.ipreallocate().map_err(|e| {
        let (stderr, code) = match e {
            MessageOpError::Client(ClientError::Closed) => (String::new(), 1),
            MessageOpError::Client(e) => (format!("{e}\n"), e.exit_code()),
            MessageOpError::Refused(status) => {
                (String::new(), crate::client::status_exit_code(status))
            }
        };
        CommandError::Failed {
            stdout: String::new(),
            stderr,
            code,
        }
    })?;
    Ok(ReloadIps { nodes: active })
}

/// One connection in `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionView {
    /// Client address.
    pub src_address: String,
    /// Client port.
    pub src_port: u16,
    /// Server (public) address.
    pub dst_address: String,
    /// Server port.
    pub dst_port: u16,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            src_address: c.src.ip().to_string(),
            src_port: c.src.port(),
            dst_address: c.dst.ip().to_string(),
            dst_port: c.dst.port(),
        }
    }
}

/// `ctdb addtickle` / `ctdb deltickle`: nothing on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TickleChange {
    /// The node asked.
    pub pnn: u32,
    /// The connections sent.
    pub connections: Vec<ConnectionView>,
}

impl Report for TickleChange {
    fn text(&self, _style: &Style) -> String {
        String::new()
    }
    json_via_serde!();
}

struct TickleOp {
    name: &'static str,
    op: Opcode,
    failed_one: &'static str,
    failed_many: &'static str,
}

const ADD_TICKLE: TickleOp = TickleOp {
    name: "addtickle",
    op: Opcode::TCP_ADD_DELAYED_UPDATE,
    failed_one: "Failed to register connection",
    failed_many: "add",
};

const DEL_TICKLE: TickleOp = TickleOp {
    name: "deltickle",
    op: Opcode::TCP_REMOVE,
    failed_one: "Failed to unregister connection",
    failed_many: "remove",
};

fn tickle_change(
    ctx: &mut Ctx<'_>,
    args: &[String],
    how: &TickleOp,
) -> Result<TickleChange, CommandError> {
    let cmd = ctx.cmd;
    match args {
        [] => {
            // Without arguments the connections come from stdin, one per line.
            let mut input = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut input);
            let conns = tickle::parse_connection_lines(&String::from_utf8_lossy(&input))
                .map_err(CommandError::silent)?;
            let mut failed = 0u32;
            for c in &conns {
                if ctx.client.control_ok(cmd, how.op, 0, &c.encode()).is_err() {
                    failed += 1;
                }
            }
            if failed > 0 {
                return Err(CommandError::stderr(format!(
                    "Failed to {} {failed} tickles",
                    how.failed_many
                )));
            }
            Ok(TickleChange {
                pnn: cmd,
                connections: conns.iter().map(ConnectionView::from).collect(),
            })
        }
        [src, dst] => {
            let parse = |t: &String| {
                tickle::parse_addr_port(t)
                    .ok_or_else(|| CommandError::stderr(format!("Invalid IP address {t}")))
            };
            let conn = Connection {
                src: parse(src)?,
                dst: parse(dst)?,
            };
            ctx.client
                .control_ok(cmd, how.op, 0, &conn.encode())
                .map_err(|e| failed_with(named(e, how.op), how.failed_one, None))?;
            Ok(TickleChange {
                pnn: cmd,
                connections: vec![ConnectionView::from(&conn)],
            })
        }
        _ => Err(CommandError::Usage(how.name)),
    }
}

/// `ctdb addtickle [SRC-IP:PORT DST-IP:PORT]`: TCP_ADD_DELAYED_UPDATE.
pub fn addtickle(ctx: &mut Ctx<'_>, args: &[String]) -> Result<TickleChange, CommandError> {
    tickle_change(ctx, args, &ADD_TICKLE)
}

/// `ctdb deltickle [SRC-IP:PORT DST-IP:PORT]`: TCP_REMOVE.
pub fn deltickle(ctx: &mut Ctx<'_>, args: &[String]) -> Result<TickleChange, CommandError> {
    tickle_change(ctx, args, &DEL_TICKLE)
}

/// `ctdb gettickles IP [PORT]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tickles {
    /// The node asked.
    pub pnn: u32,
    /// The address, as the node reported it.
    pub address: String,
    /// The port asked for (0: all).
    pub port: u16,
    /// The connections.
    pub connections: Vec<ConnectionView>,
}

impl Report for Tickles {
    fn text(&self, style: &Style) -> String {
        if let Some(sep) = &style.machine {
            // 4.17 spells the third heading this way.
            let mut out = Style::row(sep, ["Source IP", "Port", "Destiation IP", "Port"]);
            for c in &self.connections {
                out.push_str(&Style::row(
                    sep,
                    [
                        c.src_address.clone(),
                        c.src_port.to_string(),
                        c.dst_address.clone(),
                        c.dst_port.to_string(),
                    ],
                ));
            }
            return out;
        }
        let mut out = format!(
            "Connections for IP: {}\nNum connections: {}\n",
            self.address,
            self.connections.len()
        );
        for c in &self.connections {
            let src = SocketAddr::new(
                c.src_address.parse().unwrap_or(IpAddr::from([0; 4])),
                c.src_port,
            );
            let dst = SocketAddr::new(
                c.dst_address.parse().unwrap_or(IpAddr::from([0; 4])),
                c.dst_port,
            );
            out.push_str(&format!(
                "SRC: {}   DST: {}\n",
                tickle::addr_port_text(&src),
                tickle::addr_port_text(&dst)
            ));
        }
        out
    }
    json_via_serde!();
}

/// `ctdb gettickles IP [PORT]`: GET_TCP_TICKLE_LIST for the address with the port
/// (0 = every port).
pub fn gettickles(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Tickles, CommandError> {
    let (ip_text, port) = match args {
        [ip] => (ip, 0u16),
        [ip, port] => {
            let (value, _) = strtoul10(port).map_err(CommandError::silent)?;
            (ip, value as u16)
        }
        _ => return Err(CommandError::Usage("gettickles")),
    };
    let Some(addr) = tickle::parse_addr(ip_text) else {
        return Err(CommandError::stderr(format!(
            "Invalid IP address {ip_text}"
        )));
    };
    let cmd = ctx.cmd;
    let mut w = ctdbd::protocol::wire::Writer::new();
    w.sock_addr(&SocketAddr::new(addr, port));
    let op = Opcode::GET_TCP_TICKLE_LIST;
    let list = ctx
        .client
        .control_ok(cmd, op, 0, &w.into_bytes())
        .and_then(|data| TickleList::decode(&data).map_err(|_| bad_reply(op, cmd)))
        .map_err(|e| failed_with(named(e, op), "Failed to get list of connections", None))?;
    Ok(Tickles {
        pnn: cmd,
        address: list.addr.ip().to_string(),
        port,
        connections: list.conns.iter().map(ConnectionView::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(src: &str, dst: &str) -> ConnectionView {
        ConnectionView::from(&Connection {
            src: tickle::parse_addr_port(src).unwrap(),
            dst: tickle::parse_addr_port(dst).unwrap(),
        })
    }

    fn two() -> Tickles {
        Tickles {
            pnn: 0,
            address: "10.99.1.10".into(),
            port: 0,
            connections: vec![
                conn("10.99.2.5:40000", "10.99.1.10:445"),
                conn("10.99.2.6:40001", "10.99.1.10:2049"),
            ],
        }
    }

    #[test]
    fn gettickles_plain_as_observed() {
        assert_eq!(
            two().text(&Style::default()),
            "Connections for IP: 10.99.1.10\nNum connections: 2\n\
             SRC: 10.99.2.5:40000   DST: 10.99.1.10:445\n\
             SRC: 10.99.2.6:40001   DST: 10.99.1.10:2049\n"
        );
        let none = Tickles {
            connections: vec![],
            ..two()
        };
        assert_eq!(
            none.text(&Style::default()),
            "Connections for IP: 10.99.1.10\nNum connections: 0\n"
        );
        let v6 = Tickles {
            address: "fd00::1".into(),
            connections: vec![conn("[fd00::7]:5", "[fd00::1]:445")],
            ..two()
        };
        assert!(v6
            .text(&Style::default())
            .ends_with("SRC: [fd00::7]:5   DST: [fd00::1]:445\n"));
    }

    #[test]
    fn gettickles_machine_as_observed() {
        let style = Style {
            machine: Some("|".into()),
            verbose: false,
        };
        assert_eq!(
            two().text(&style),
            "|Source IP|Port|Destiation IP|Port|\n\
             |10.99.2.5|40000|10.99.1.10|445|\n\
             |10.99.2.6|40001|10.99.1.10|2049|\n"
        );
    }

    #[test]
    fn numbers_parse_like_strtoul() {
        assert_eq!(strtoul10("445x"), Ok((445, "x")));
        assert_eq!(strtoul10(" +8"), Ok((8, "")));
        assert_eq!(strtoul10("010"), Ok((10, "")));
        assert_eq!(strtoul10("0x1bd"), Ok((0, "x1bd")));
        assert_eq!(strtoul10(""), Err(EINVAL));
        assert_eq!(strtoul10("abc"), Err(EINVAL));
        assert_eq!(strtoul10("-1"), Err(EINVAL));
        assert_eq!(strtoul10("99999999999999999999"), Err(ERANGE));
    }

    #[test]
    fn ip_masks_parse_like_4_17() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(parse_ip_mask("10.99.1.12/24"), Some((v4("10.99.1.12"), 24)));
        assert_eq!(parse_ip_mask("10.99.1.13/33"), Some((v4("10.99.1.13"), 33)));
        assert_eq!(
            parse_ip_mask("10.99.1.14/010"),
            Some((v4("10.99.1.14"), 10))
        );
        assert_eq!(
            parse_ip_mask("10.99.1.15/4294967296"),
            Some((v4("10.99.1.15"), 0))
        );
        assert_eq!(parse_ip_mask("10.99.1.16/ 8"), Some((v4("10.99.1.16"), 8)));
        assert_eq!(parse_ip_mask("fd00::5/64"), Some((v4("fd00::5"), 64)));
        for bad in [
            "10.99.1.13",
            "10.99.1.13/",
            "10.99.1.13/abc",
            "10.99.1.13/24x",
            "x/24",
        ] {
            assert_eq!(parse_ip_mask(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_shapes() {
        let r = IpChange {
            pnn: 0,
            address: "10.99.1.99".into(),
            changed: false,
            note: Some("Node does not know about IP address 10.99.1.99".into()),
        };
        assert_eq!(
            r.stderr(),
            "Node does not know about IP address 10.99.1.99\n"
        );
        assert_eq!(r.text(&Style::default()), "");
        assert!(r.json().contains("\"changed\": false"));
        assert!(two().json().contains("\"dst_port\": 2049"));
        let t = TickleChange {
            pnn: 0,
            connections: vec![conn("10.99.2.5:40000", "10.99.1.10:445")],
        };
        assert_eq!(t.text(&Style::default()), "");
        assert!(t.json().contains("\"src_port\": 40000"));
    }
}
