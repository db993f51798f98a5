//! Small per-node queries and actions: `version`, `pnn`, `ping`, `uptime`, `getpid`,
//! `runstate`, `getcapabilities`, `leader`, `getdebug`, `setdebug`,
//! `process-exists` and `shutdown` (reference §5.2.2, §6.13, §9.7–§9.9, §9.11).

use std::time::Instant;

use ctdbd::protocol::control::{capabilities, decode_u32, encode_u32, PidSrvid, Uptime};
use ctdbd::protocol::{Opcode, Runstate};
use serde::Serialize;

use super::{json_via_serde, CommandError, Ctx, Report, Style};
use crate::client::{bad_reply, status_exit_code};
use crate::timefmt::{ctime, duration};

/// `ctdb version`: our own version, not Samba's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Version;

/// The `--json` form of `version`.
#[derive(Debug, Serialize)]
struct VersionJson {
    name: &'static str,
    version: &'static str,
    compatible_with: &'static str,
}

impl Report for Version {
    fn text(&self, _style: &Style) -> String {
        format!(
            "ctdb-rs {} (CTDB 4.17 compatible)\n",
            env!("CARGO_PKG_VERSION")
        )
    }
    fn json(&self) -> String {
        super::json_text(&VersionJson {
            name: "ctdb-rs",
            version: env!("CARGO_PKG_VERSION"),
            compatible_with: "4.17",
        })
    }
    fn json_item(&self, pnn: u32) -> String {
        super::json_text(&super::JsonItem {
            pnn,
            result: Some(&VersionJson {
                name: "ctdb-rs",
                version: env!("CARGO_PKG_VERSION"),
                compatible_with: "4.17",
            }),
            error: None,
            exit_code: 0,
        })
    }
}

/// `ctdb pnn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pnn {
    /// The local daemon's node number.
    pub pnn: u32,
}

impl Report for Pnn {
    fn text(&self, _style: &Style) -> String {
        format!("{}\n", self.pnn)
    }
    json_via_serde!();
}

/// `ctdb pnn`: the PNN the prologue learnt; no further packets.
pub fn pnn(ctx: &mut Ctx<'_>, _args: &[String]) -> Result<Pnn, CommandError> {
    Ok(Pnn { pnn: ctx.own() })
}

/// `ctdb ping`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ping {
    /// The node that answered.
    pub pnn: u32,
    /// Round trip, seconds.
    pub time: f64,
    /// Clients connected to that daemon.
    pub clients: i32,
}

impl Report for Ping {
    fn text(&self, _style: &Style) -> String {
        format!(
            "response from {} time={:.6} sec  ({} clients)\n",
            self.pnn, self.time, self.clients
        )
    }
    json_via_serde!();
}

/// `ctdb ping`: one PING, timed.
pub fn ping(ctx: &mut Ctx<'_>, _args: &[String]) -> Result<Ping, CommandError> {
    let start = Instant::now();
    let clients = ctx.client.control_status(ctx.cmd, Opcode::PING, 0, &[])?;
    Ok(Ping {
        pnn: ctx.cmd,
        time: start.elapsed().as_secs_f64(),
        clients,
    })
}

/// A moment as `uptime` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Moment {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Microseconds.
    pub usec: i64,
}

/// `ctdb uptime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UptimeReport {
    /// The node asked.
    pub pnn: u32,
    /// Its clock now.
    pub current_time: Moment,
    /// When its daemon started.
    pub ctdbd_start_time: Moment,
    /// When its last recovery started.
    pub last_recovery_started: Moment,
    /// When its last recovery finished.
    pub last_recovery_finished: Moment,
}

impl Report for UptimeReport {
    fn text(&self, _style: &Style) -> String {
        let now = self.current_time.sec;
        let start = self.ctdbd_start_time.sec;
        let finished = self.last_recovery_finished.sec;
        let took = (self.last_recovery_finished.sec - self.last_recovery_started.sec) as f64
            + (self.last_recovery_finished.usec - self.last_recovery_started.usec) as f64 / 1e6;
        format!(
            "Current time of node {:<4}     :                {}\
             Ctdbd start time              : ({}) {}\
             Time of last recovery/failover: ({}) {}\
             Duration of last recovery/failover: {:.6} seconds\n",
            self.pnn,
            ctime(now),
            duration(now - start),
            ctime(start),
            duration(now - finished),
            ctime(finished),
            took
        )
    }
    json_via_serde!();
}

/// `ctdb uptime`: UPTIME.
pub fn uptime(ctx: &mut Ctx<'_>, _args: &[String]) -> Result<UptimeReport, CommandError> {
    let data = ctx.client.control_ok(ctx.cmd, Opcode::UPTIME, 0, &[])?;
    let u = Uptime::decode(&data).map_err(|_| bad_reply(Opcode::UPTIME, ctx.cmd))?;
    let m = |t: ctdbd::protocol::control::Timeval| Moment {
        sec: t.sec,
        usec: t.usec,
    };
    Ok(UptimeReport {
        pnn: ctx.cmd,
        current_time: m(u.current_time),
        ctdbd_start_time: m(u.ctdbd_start_time),
        last_recovery_started: m(u.last_recovery_started),
        last_recovery_finished: m(u.last_recovery_finished),
    })
}

/// `ctdb getpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pid {
    /// The daemon's process id.
    pub pid: u32,
}

impl Report for Pid {
    fn text(&self, _style: &Style) -> String {
        format!("{}\n", self.pid)
    }
    json_via_serde!();
}

/// `ctdb getpid`: GET_PID (result in the status, taken verbatim).
pub fn getpid(ctx: &mut Ctx<'_>, _args: &[String]) -> Result<Pid, CommandError> {
    let pid = ctx
        .client
        .control_status(ctx.cmd, Opcode::GET_PID, 0, &[])?;
    Ok(Pid { pid: pid as u32 })
}

/// `ctdb runstate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunstateReport {
    /// The state's name.
    pub runstate: &'static str,
    /// Its number.
    pub value: u32,
}

impl Report for RunstateReport {
    fn text(&self, _style: &Style) -> String {
        format!("{}\n", self.runstate)
    }
    json_via_serde!();
}

/// `ctdb runstate [STATE...]`: with states, fails unless the node is in one of them.
pub fn runstate(ctx: &mut Ctx<'_>, args: &[String]) -> Result<RunstateReport, CommandError> {
    let mut wanted = Vec::new();
    for arg in args {
        match Runstate::parse(arg) {
            Some(state) => wanted.push(state),
            None => return Err(CommandError::stdout(format!("Invalid run state ({arg})"))),
        }
    }
    let data = ctx
        .client
        .control_ok(ctx.cmd, Opcode::GET_RUNSTATE, 0, &[])?;
    let value =
        decode_u32(&data, "runstate").map_err(|_| bad_reply(Opcode::GET_RUNSTATE, ctx.cmd))?;
    let state = Runstate::from_u32(value);
    if !wanted.is_empty() && !wanted.contains(&state) {
        return Err(CommandError::stdout(format!(
            "CTDB not in required run state (got {})",
            state.name()
        )));
    }
    Ok(RunstateReport {
        runstate: state.name(),
        value,
    })
}

/// `ctdb getcapabilities`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// May become leader (CTDB_CAP_RECMASTER).
    pub leader: bool,
    /// May be a location master.
    pub lmaster: bool,
    /// The raw capability bits.
    pub raw: u32,
}

impl Report for Capabilities {
    fn text(&self, style: &Style) -> String {
        if let Some(sep) = &style.machine {
            let bit = |b: bool| if b { "1" } else { "0" };
            return Style::row(sep, ["LEADER", "LMASTER"])
                + &Style::row(sep, [bit(self.leader), bit(self.lmaster)]);
        }
        let yes = |b: bool| if b { "YES" } else { "NO" };
        format!(
            "LEADER: {}\nLMASTER: {}\n",
            yes(self.leader),
            yes(self.lmaster)
        )
    }
    json_via_serde!();
}

/// `ctdb getcapabilities`: GET_CAPABILITIES.
pub fn getcapabilities(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Capabilities, CommandError> {
    if !args.is_empty() {
        return Err(CommandError::Usage("getcapabilities"));
    }
    let data = ctx
        .client
        .control_ok(ctx.cmd, Opcode::GET_CAPABILITIES, 0, &[])?;
    let raw = decode_u32(&data, "capabilities")
        .map_err(|_| bad_reply(Opcode::GET_CAPABILITIES, ctx.cmd))?;
    Ok(Capabilities {
        leader: raw & capabilities::RECMASTER != 0,
        lmaster: raw & capabilities::LMASTER != 0,
        raw,
    })
}

/// `ctdb leader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Leader {
    /// The leader's PNN; `null` when no broadcast arrived within `-t`.
    pub leader: Option<u32>,
}

impl Report for Leader {
    fn text(&self, _style: &Style) -> String {
        match self.leader {
            Some(pnn) => format!("{pnn}\n"),
            None => "UNKNOWN\n".to_owned(),
        }
    }
    json_via_serde!();
}

/// `ctdb leader`: waits for the leader broadcast; no control.
pub fn leader(ctx: &mut Ctx<'_>, _args: &[String]) -> Result<Leader, CommandError> {
    Ok(Leader {
        leader: ctx.client.wait_leader()?,
    })
}

/// Debug level names with the numbers `setdebug` sends for them.
const DEBUG_LEVELS: [(&str, u32); 5] = [
    ("ERROR", 0),
    ("WARNING", 1),
    ("NOTICE", 3),
    ("INFO", 5),
    ("DEBUG", 10),
];

/// The name 4.17 prints for a debug level.
pub fn debug_level_name(level: u32) -> &'static str {
    match level {
        0 => "ERROR",
        1 | 2 => "WARNING",
        3 | 4 => "NOTICE",
        5..=9 => "INFO",
        10 => "DEBUG",
        _ => "UNKNOWN",
    }
}

/// Parses a `setdebug` argument: 0–10, or a case-insensitive prefix of a level name.
pub fn parse_debug_level(text: &str) -> Option<u32> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u32>().ok().filter(|&l| l <= 10);
    }
    DEBUG_LEVELS
        .iter()
        .find(|(name, _)| name.len() >= text.len() && name[..text.len()].eq_ignore_ascii_case(text))
        .map(|&(_, level)| level)
}

/// `ctdb getdebug`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebugLevel {
    /// The level's name.
    pub name: &'static str,
    /// Its number.
    pub level: u32,
}

impl Report for DebugLevel {
    fn text(&self, _style: &Style) -> String {
        format!("{}\n", self.name)
    }
    json_via_serde!();
}

/// `ctdb getdebug`: GET_DEBUG.
pub fn getdebug(ctx: &mut Ctx<'_>, args: &[String]) -> Result<DebugLevel, CommandError> {
    if !args.is_empty() {
        return Err(CommandError::Usage("getdebug"));
    }
    let data = ctx.client.control_ok(ctx.cmd, Opcode::GET_DEBUG, 0, &[])?;
    let level =
        decode_u32(&data, "debug level").map_err(|_| bad_reply(Opcode::GET_DEBUG, ctx.cmd))?;
    Ok(DebugLevel {
        name: debug_level_name(level),
        level,
    })
}

/// The result of a command that prints nothing on success (`setdebug`, `setvar`,
/// `shutdown`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Done {
    /// Warning printed on stderr, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl Report for Done {
    fn text(&self, _style: &Style) -> String {
        String::new()
    }
    json_via_serde!();
    fn stderr(&self) -> String {
        self.warning
            .as_ref()
            .map(|w| format!("{w}\n"))
            .unwrap_or_default()
    }
}

/// `ctdb setdebug LEVEL`: SET_DEBUG with the numeric level.
pub fn setdebug(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Done, CommandError> {
    let [arg] = args else {
        return Err(CommandError::Usage("setdebug"));
    };
    let Some(level) = parse_debug_level(arg) else {
        return Err(CommandError::stderr(format!(
            "Invalid debug level '{arg}'. Valid levels are:\n\tERROR | WARNING | NOTICE | INFO | DEBUG"
        )));
    };
    ctx.client
        .control_ok(ctx.cmd, Opcode::SET_DEBUG, 0, &encode_u32(level))?;
    Ok(Done::default())
}

/// C's `atoi`: optional blanks and sign, then digits; anything else stops (0 if none).
pub fn atoi(text: &str) -> i32 {
    let t = text.trim_start_matches([' ', '\t', '\n']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut value: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        value = (value * 10 + i64::from(b - b'0')).min(i64::from(u32::MAX) + 1);
    }
    let value = if neg { -value } else { value };
    value as i32
}

/// C's `strtoull` with base 0, leading number only; `None` when no digit was read.
pub fn strtoull(text: &str) -> Option<u64> {
    let t = text.trim_start_matches([' ', '\t', '\n']);
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, body) = match rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
        Some(hex) if hex.starts_with(|c: char| c.is_ascii_hexdigit()) => (16, hex),
        _ if rest.starts_with('0') => (8, rest),
        _ => (10, rest),
    };
    let digits: String = body.chars().take_while(|c| c.is_digit(radix)).collect();
    if digits.is_empty() {
        return None;
    }
    let value = u64::from_str_radix(&digits, radix).unwrap_or(u64::MAX);
    Some(if neg { value.wrapping_neg() } else { value })
}

/// `ctdb process-exists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessExists {
    /// The process id asked about.
    pub pid: i32,
    /// The message id it should have registered, if one was given (non-zero).
    pub srvid: Option<u64>,
    /// Whether it exists (and has registered `srvid`).
    pub exists: bool,
    /// The daemon's status (0 = exists).
    pub status: i32,
}

impl Report for ProcessExists {
    fn text(&self, _style: &Style) -> String {
        let verdict = if self.exists {
            "exists"
        } else {
            "does not exist"
        };
        match self.srvid {
            Some(srvid) => format!("PID {} with SRVID 0x{srvid:x} {verdict}\n", self.pid),
            None => format!("PID {} {verdict}\n", self.pid),
        }
    }
    json_via_serde!();
    fn exit_code(&self) -> i32 {
        if self.exists {
            0
        } else {
            status_exit_code(self.status)
        }
    }
}

/// `ctdb process-exists PID [SRVID]`: PROCESS_EXISTS, or CHECK_PID_SRVID with a
/// non-zero SRVID. Exit status = the daemon's status (−1 → 1).
pub fn process_exists(ctx: &mut Ctx<'_>, args: &[String]) -> Result<ProcessExists, CommandError> {
    if args.is_empty() || args.len() > 2 {
        return Err(CommandError::Usage("process-exists"));
    }
    let pid = atoi(&args[0]);
    let srvid = match args.get(1) {
        // A SRVID without any digit is EINVAL, silently, in 4.17.
        Some(text) => strtoull(text).ok_or_else(|| CommandError::silent(22))?,
        None => 0,
    };
    let (status, _) = if srvid == 0 {
        ctx.client
            .control(ctx.cmd, Opcode::PROCESS_EXISTS, 0, &pid.to_le_bytes())?
    } else {
        let req = PidSrvid { pid, srvid };
        ctx.client
            .control(ctx.cmd, Opcode::CHECK_PID_SRVID, 0, &req.encode())?
    };
    Ok(ProcessExists {
        pid,
        srvid: (srvid != 0).then_some(srvid),
        exists: status == 0,
        status,
    })
}

/// `ctdb shutdown`: SHUTDOWN with NOREPLY; for our own node, wait until the daemon
/// closes the connection.
pub fn shutdown(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Done, CommandError> {
    if !args.is_empty() {
        return Err(CommandError::Usage("shutdown"));
    }
    ctx.client.control_noreply(ctx.cmd, Opcode::SHUTDOWN)?;
    if ctx.cmd == ctx.own() {
        ctx.client.wait_closed();
    }
    Ok(Done::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_format() {
        let p = Ping {
            pnn: 0,
            time: 0.000024,
            clients: 2,
        };
        assert_eq!(
            p.text(&Style::default()),
            "response from 0 time=0.000024 sec  (2 clients)\n"
        );
    }

    #[test]
    fn uptime_format() {
        let t = |sec| Moment { sec, usec: 0 };
        let u = UptimeReport {
            pnn: 0,
            current_time: t(1_795_240_819),
            ctdbd_start_time: t(1_795_240_807),
            last_recovery_started: Moment {
                sec: 1_795_240_813,
                usec: 0,
            },
            last_recovery_finished: Moment {
                sec: 1_795_240_813,
                usec: 349,
            },
        };
        let text = u.text(&Style::default());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            format!(
                "Current time of node 0        :                {}",
                ctime(1_795_240_819).trim_end()
            )
        );
        assert_eq!(
            lines[1],
            format!(
                "Ctdbd start time              : (000 00:00:12) {}",
                ctime(1_795_240_807).trim_end()
            )
        );
        assert_eq!(
            lines[2],
            format!(
                "Time of last recovery/failover: (000 00:00:06) {}",
                ctime(1_795_240_813).trim_end()
            )
        );
        assert_eq!(
            lines[3],
            "Duration of last recovery/failover: 0.000349 seconds"
        );
    }

    #[test]
    fn capabilities_plain_and_machine() {
        let c = Capabilities {
            leader: true,
            lmaster: true,
            raw: 0x30003,
        };
        assert_eq!(c.text(&Style::default()), "LEADER: YES\nLMASTER: YES\n");
        let style = Style {
            machine: Some("|".to_owned()),
            verbose: false,
        };
        assert_eq!(c.text(&style), "|LEADER|LMASTER|\n|1|1|\n");
    }

    #[test]
    fn process_exists_messages() {
        let p = ProcessExists {
            pid: 1,
            srvid: None,
            exists: false,
            status: -1,
        };
        assert_eq!(p.text(&Style::default()), "PID 1 does not exist\n");
        assert_eq!(p.exit_code(), 1);
        let p = ProcessExists {
            pid: 42,
            srvid: Some(0x1234),
            exists: true,
            status: 0,
        };
        assert_eq!(
            p.text(&Style::default()),
            "PID 42 with SRVID 0x1234 exists\n"
        );
        assert_eq!(p.exit_code(), 0);
    }

    #[test]
    fn c_number_parsing() {
        assert_eq!(atoi("12abc"), 12);
        assert_eq!(atoi("abc"), 0);
        assert_eq!(atoi("-5"), -5);
        assert_eq!(strtoull("12abc"), Some(12));
        assert_eq!(strtoull("0x1234"), Some(0x1234));
        assert_eq!(strtoull("010"), Some(8));
        assert_eq!(strtoull("zz"), None);
        assert_eq!(strtoull(""), None);
    }

    #[test]
    fn debug_levels() {
        assert_eq!(parse_debug_level("w"), Some(1));
        assert_eq!(parse_debug_level("NOTICE"), Some(3));
        assert_eq!(parse_debug_level("3"), Some(3));
        assert_eq!(parse_debug_level("11"), None);
        assert_eq!(parse_debug_level("foo"), None);
        assert_eq!(debug_level_name(4), "NOTICE");
        assert_eq!(debug_level_name(11), "UNKNOWN");
    }

    #[test]
    fn runstate_errors_are_stdout_exit_1() {
        let (out, err, code) = CommandError::stdout("Invalid run state (foobar)").output();
        assert_eq!(
            (out.as_str(), err.as_str(), code),
            ("Invalid run state (foobar)\n", "", 1)
        );
        let (out, _, code) =
            CommandError::stdout("CTDB not in required run state (got RUNNING)").output();
        assert_eq!(
            (out.as_str(), code),
            ("CTDB not in required run state (got RUNNING)\n", 1)
        );
    }
}
