//! The administrative commands that are not about databases: `statisticsreset`,
//! `stats`, `recover`, `ipreallocate` (and its old name `sync`), `gratarp`,
//! `tickle`, `checktcpport`, `getreclock`, `setlmasterrole`, `setleaderrole`,
//! `dumpmemory`, `rddumpmemory`. Each does what 4.17's does, in the same order,
//! with the same messages and exit statuses; `tickle` and `checktcpport` need no
//! daemon (see [`tickle()`]).

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use ctdbd::events::strerror;
use ctdbd::protocol::control::{
    encode_u32, srvid, AddrInfo, Opcode, SrvidMessage, VnnMap, INVALID_GENERATION,
};
use ctdbd::protocol::statistics::decode_statistics_list;

use super::node::{atoi, Done};
use super::nodestate::{control_failed, message_op_failed};
use super::statistics::StatisticsReport;
use super::{json_via_serde, CommandError, Ctx, Report, Style};
use crate::client::{bad_reply, status_exit_code, ClientError};
use crate::tickle;

/// How long `recover` waits between two looks at the leader's state, as 4.17 does.
const RECOVER_POLL: Duration = Duration::from_secs(1);

fn no_args(args: &[String], name: &'static str) -> Result<(), CommandError> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(CommandError::Usage(name))
    }
}

/// `ctdb statisticsreset`: STATISTICS_RESET.
pub fn statisticsreset(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Done, CommandError> {
    no_args(args, "statisticsreset")?;
    ctx.client
        .control_ok(ctx.cmd, Opcode::STATISTICS_RESET, 0, &[])?;
    Ok(Done::default())
}

/// `ctdb stats`: the statistics history, newest first, one block per interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsReport {
    /// The entries printed.
    pub entries: Vec<StatisticsReport>,
}

impl Report for StatsReport {
    fn text(&self, style: &Style) -> String {
        let mut out = String::new();
        for (i, entry) in self.entries.iter().enumerate() {
            let text = entry.text(style);
            if style.machine.is_some() && i > 0 {
                // The column names come once, before the first entry.
                out.extend(text.split_inclusive('\n').skip(1));
            } else {
                out.push_str(&text);
            }
        }
        out
    }
    json_via_serde!();
}

/// `ctdb stats [COUNT]`: GET_STAT_HISTORY. Entries never filled (start time 0) are
/// skipped; with COUNT > 0, 4.17 stops after the entry at index COUNT of the
/// history, so at most COUNT + 1 entries are printed.
pub fn stats(ctx: &mut Ctx<'_>, args: &[String]) -> Result<StatsReport, CommandError> {
    if args.len() > 1 {
        return Err(CommandError::Usage("stats"));
    }
    let count = args.first().map_or(0, |a| atoi(a));
    let data = ctx
        .client
        .control_ok(ctx.cmd, Opcode::GET_STAT_HISTORY, 0, &[])?;
    let list =
        decode_statistics_list(&data).map_err(|_| bad_reply(Opcode::GET_STAT_HISTORY, ctx.cmd))?;
    let mut entries = Vec::new();
    for (i, s) in list.iter().enumerate() {
        if s.statistics_start_time.sec == 0 {
            continue;
        }
        entries.push(StatisticsReport::new(s));
        if count > 0 && i == count as usize {
            break;
        }
    }
    Ok(StatsReport { entries })
}

/// The generation once the leader is out of recovery and has a valid one: 4.17's
/// `get_generation`, which asks again every second until then.
pub(super) fn settled_generation(ctx: &mut Ctx<'_>) -> Result<u32, CommandError> {
    loop {
        let Some(leader) = ctx.client.wait_leader()? else {
            return Err(CommandError::Failed {
                stdout: String::new(),
                stderr: "Failed to find leader\n".into(),
                code: status_exit_code(libc::ETIMEDOUT),
            });
        };
        let (mode, _) = ctx
            .client
            .control(leader, Opcode::GET_RECMODE, 0, &[])
            .map_err(|e| {
                control_failed(e, format!("Failed to get recovery mode from node {leader}"))
            })?;
        if mode == 1 {
            std::thread::sleep(RECOVER_POLL);
            continue;
        }
        let data = ctx
            .client
            .control_ok(leader, Opcode::GETVNNMAP, 0, &[])
            .map_err(|e| {
                control_failed(e, format!("Failed to get generation from node {leader}"))
            })?;
        let map = VnnMap::decode(&data).map_err(|_| bad_reply(Opcode::GETVNNMAP, leader))?;
        if map.generation == INVALID_GENERATION {
            std::thread::sleep(RECOVER_POLL);
            continue;
        }
        return Ok(map.generation);
    }
}

/// `ctdb recover`: sets the node's recovery mode to active, which makes the leader
/// recover the cluster, then waits until the generation has changed.
pub fn recover(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Done, CommandError> {
    no_args(args, "recover")?;
    let before = settled_generation(ctx)?;
    ctx.client
        .control_ok(ctx.cmd, Opcode::SET_RECMODE, 0, &encode_u32(1))
        .map_err(|e| control_failed(e, "Failed to set recovery mode active".into()))?;
    loop {
        let now = settled_generation(ctx).map_err(|e| match e {
            CommandError::Failed {
                stdout,
                mut stderr,
                code,
            } => {
                stderr.push_str("Failed to confirm end of recovery\n");
                CommandError::Failed {
                    stdout,
                    stderr,
                    code,
                }
            }
            other => other,
        })?;
        if now != before {
            return Ok(Done::default());
        }
        std::thread::sleep(RECOVER_POLL);
    }
}

/// `ctdb ipreallocate` and `ctdb sync`: ask the leader for a takeover run and wait
/// for it.
pub fn ipreallocate(
    ctx: &mut Ctx<'_>,
    args: &[String],
    name: &'static str,
) -> Result<Done, CommandError> {
    no_args(args, name)?;
    ctx.client
        .ipreallocate()
        .map_err(|e| message_op_failed(e, None, None))?;
    Ok(Done::default())
}

/// `ctdb gratarp IP IFACE`: SEND_GRATUITOUS_ARP.
pub fn gratarp(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Done, CommandError> {
    let [ip, iface] = args else {
        return Err(CommandError::Usage("gratarp"));
    };
    let addr = tickle::parse_addr(ip)
        .ok_or_else(|| CommandError::stderr(format!("Invalid IP address {ip}")))?;
    let info = AddrInfo {
        addr,
        mask: 0,
        iface: Some(iface.clone()),
    };
    ctx.client
        .control_ok(ctx.cmd, Opcode::SEND_GRATUITOUS_ARP, 0, &info.encode())
        .map_err(|e| {
            control_failed(
                e,
                format!("Unable to send gratuitous arp from node {}", ctx.cmd),
            )
        })?;
    Ok(Done::default())
}

/// `ctdb getreclock`: the cluster lock as configured, nothing if there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reclock {
    /// The `[cluster] cluster lock` text.
    pub cluster_lock: Option<String>,
}

impl Report for Reclock {
    fn text(&self, _style: &Style) -> String {
        self.cluster_lock
            .as_ref()
            .map(|l| format!("{l}\n"))
            .unwrap_or_default()
    }
    json_via_serde!();
}

/// `ctdb getreclock`: GET_RECLOCK_FILE.
pub fn getreclock(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Reclock, CommandError> {
    no_args(args, "getreclock")?;
    let data = ctx
        .client
        .control_ok(ctx.cmd, Opcode::GET_RECLOCK_FILE, 0, &[])?;
    let cluster_lock = (!data.is_empty()).then(|| c_string(&data));
    Ok(Reclock { cluster_lock })
}

/// Text up to the first NUL, as C's string functions read it.
fn c_string(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// `ctdb setlmasterrole on|off` and `ctdb setleaderrole on|off`.
pub fn setrole(
    ctx: &mut Ctx<'_>,
    args: &[String],
    name: &'static str,
    opcode: Opcode,
) -> Result<Done, CommandError> {
    let on = match args {
        [arg] if arg == "on" => 1,
        [arg] if arg == "off" => 0,
        _ => return Err(CommandError::Usage(name)),
    };
    ctx.client.control_ok(ctx.cmd, opcode, 0, &encode_u32(on))?;
    Ok(Done::default())
}

/// `ctdb dumpmemory` and `rddumpmemory`: the daemon's report, printed as it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryReport {
    /// The report.
    pub report: String,
}

impl Report for MemoryReport {
    fn text(&self, _style: &Style) -> String {
        self.report.clone()
    }
    json_via_serde!();
}

/// `ctdb dumpmemory`: DUMP_MEMORY.
pub fn dumpmemory(ctx: &mut Ctx<'_>, _args: &[String]) -> Result<MemoryReport, CommandError> {
    let data = ctx
        .client
        .control_ok(ctx.cmd, Opcode::DUMP_MEMORY, 0, &[])?;
    Ok(MemoryReport {
        report: c_string(&data),
    })
}

/// `ctdb rddumpmemory`: the MEM_DUMP message to the node, whose answer comes back
/// as a message on a private srvid; 4.17 waits for it without a time limit.
pub fn rddumpmemory(ctx: &mut Ctx<'_>, _args: &[String]) -> Result<MemoryReport, CommandError> {
    let reply = ctx.client.next_reply_srvid();
    ctx.client.register_srvid(reply)?;
    let request = SrvidMessage {
        pnn: ctx.own(),
        srvid: reply,
    };
    ctx.client
        .send_message(ctx.cmd, srvid::MEM_DUMP, &request.encode())?;
    let data = ctx
        .client
        .wait_message(reply, None)?
        .ok_or(ClientError::Closed)?;
    Ok(MemoryReport {
        report: c_string(&data),
    })
}

/// Sends one tickle ACK; on failure, the line 4.17's sender logs about it (observed
/// with 4.17.12: `Failed sendto (Network is unreachable)` for an unroutable client).
fn send_tickle(server: SocketAddr, client: SocketAddr) -> Result<(), String> {
    ctdbd::netif::send::send_tickle_ack(server, client).map_err(|e| match e {
        ctdbd::netif::SendError::Segment { source, .. } => format!(
            "Failed sendto ({})\n",
            strerror(source.raw_os_error().unwrap_or(libc::EIO))
        ),
        other => format!("{other}\n"),
    })
}

/// `ctdb tickle`: what it sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tickled {
    /// Tickle ACKs sent.
    pub sent: usize,
}

impl Report for Tickled {
    fn text(&self, _style: &Style) -> String {
        String::new()
    }
    json_via_serde!();
}

/// `ctdb checktcpport`: the port was free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortFree {
    /// The port checked.
    pub port: u16,
}

impl Report for PortFree {
    fn text(&self, _style: &Style) -> String {
        String::new()
    }
    json_via_serde!();
}

/// `ctdb checktcpport PORT` (no daemon): whether a TCP socket of this machine
/// can bind PORT on every IPv4 address, without SO_REUSEADDR, as 4.17 tries it.
/// The port is read with `atoi` and kept to 16 bits for the bind, but the
/// message shows the number read, as an unsigned int.
pub fn checktcpport(args: &[String]) -> Result<PortFree, CommandError> {
    use nix::sys::socket::{
        bind, socket, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn,
    };
    use std::os::fd::AsRawFd;
    let [port_arg] = args else {
        // 4.17 asks for the usage of "chktcpport", a name it does not know, which
        // prints the whole command list.
        return Err(CommandError::Failed {
            stdout: crate::cli::full_usage(),
            stderr: String::new(),
            code: 1,
        });
    };
    let read = atoi(port_arg) as u32;
    let port = read as u16;
    let socket = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK,
        SockProtocol::Tcp,
    )
    .map_err(|e| CommandError::Failed {
        stdout: String::new(),
        stderr: "Failed to open local socket\n".into(),
        code: e as i32,
    })?;
    bind(socket.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, port)).map_err(|e| {
        CommandError::Failed {
            stdout: String::new(),
            stderr: format!("Failed to bind to TCP port {read}\n"),
            code: e as i32,
        }
    })?;
    Ok(PortFree { port })
}

/// `ctdb tickle [DST-IP:PORT SRC-IP:PORT]` (no daemon): sends a TCP tickle ACK to
/// the first address from the second, itself, through a raw socket; without
/// arguments, one for each connection read from stdin (`SRC DST` lines, sent to
/// SRC from DST, as 4.17 does).
pub fn tickle(args: &[String]) -> Result<Tickled, CommandError> {
    match args {
        [] => {
            let mut input = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut input);
            let conns = tickle::parse_connection_lines(&String::from_utf8_lossy(&input))
                .map_err(CommandError::silent)?;
            let mut stderr = String::new();
            let mut failed = 0;
            for c in &conns {
                if let Err(why) = send_tickle(c.dst, c.src) {
                    stderr.push_str(&why);
                    failed += 1;
                }
            }
            if failed > 0 {
                stderr.push_str(&format!("Failed to send {failed} tickles\n"));
                return Err(CommandError::Failed {
                    stdout: String::new(),
                    stderr,
                    code: 1,
                });
            }
            Ok(Tickled { sent: conns.len() })
        }
        [to, from] => {
            let parse = |t: &String| {
                tickle::parse_addr_port(t)
                    .ok_or_else(|| CommandError::stderr(format!("Invalid IP address {t}")))
            };
            let (client, server) = (parse(to)?, parse(from)?);
            if let Err(why) = send_tickle(server, client) {
                return Err(CommandError::Failed {
                    stdout: String::new(),
                    stderr: why + "Failed to send tickle ack\n",
                    code: 1,
                });
            }
            Ok(Tickled { sent: 1 })
        }
        _ => Err(CommandError::Usage("tickle")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctdbd::protocol::control::Timeval;
    use ctdbd::protocol::statistics::Statistics;

    fn entry(start: i64) -> StatisticsReport {
        StatisticsReport::new(&Statistics {
            statistics_start_time: Timeval {
                sec: start,
                usec: 0,
            },
            statistics_current_time: Timeval {
                sec: start + 1,
                usec: 0,
            },
            ..Default::default()
        })
    }

    #[test]
    fn machine_readable_stats_print_the_column_names_once() {
        let report = StatsReport {
            entries: vec![entry(1_700_000_002), entry(1_700_000_001)],
        };
        let style = Style {
            machine: Some("|".into()),
            verbose: false,
        };
        let text = report.text(&style);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("CTDB version|"));
        assert!(lines[1].starts_with("1|1700000003|1700000002|"));
        assert!(lines[2].starts_with("1|1700000002|1700000001|"));
        let plain = report.text(&Style::default());
        assert_eq!(plain.matches("CTDB version 1\n").count(), 2);
    }

    #[test]
    fn c_strings_end_at_the_first_nul() {
        assert_eq!(c_string(b"/shared/.reclock\0"), "/shared/.reclock");
        assert_eq!(c_string(b"no nul"), "no nul");
    }
}
