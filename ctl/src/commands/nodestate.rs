//! Commands that change a node's administrative state — `disable`, `enable`,
//! `stop`, `continue`, `ban`, `unban` — and `reloadnodes` (reference §5.2.1,
//! §5.2.2, §9.11).
//!
//! The state changes share one shape: look at the node map, stop early (exit 0,
//! note on stderr) if the node is already as wanted, send the control, poll the
//! local node map every second until the flag shows the change, then ask the
//! leader for a takeover run ([`crate::client::Client::ipreallocate`]). `reloadnodes` compares
//! the nodes file with what the daemons hold and, if anything changed, has every
//! connected node reload it while recoveries are held off
//! ([`crate::client::Client::disable_op`]).

use std::time::Duration;

use ctdbd::protocol::control::{node_flags, srvid, BanState, NodeMap};
use ctdbd::protocol::Opcode;
use serde::Serialize;

use super::listnodes::{nodes_file_path_for, read_nodes, NodeEntry};
use super::{json_via_serde, CommandError, Ctx, Report, Style};
use crate::client::{status_exit_code, ClientError, MessageOpError};

/// How long to sleep between two looks at the node map while waiting for a flag.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// EINVAL and ERANGE, the statuses of a bad ban time.
const EINVAL: i32 = 22;
const ERANGE: i32 = 34;

/// The result of a state-changing command: nothing on stdout; when the node was
/// already in the wanted state, a note on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateChange {
    /// The node acted on.
    pub pnn: u32,
    /// Whether a control was sent (false: the node was already in that state).
    pub changed: bool,
    /// The node's flags in the last node map seen (after the change, if any).
    pub flags: u32,
    /// The note printed on stderr when nothing had to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Report for StateChange {
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

/// One state-changing command: its flag, the word used in the notes, and the
/// control that changes it.
struct Change {
    flag: u32,
    set: bool,
    word: &'static str,
    verb: &'static str,
}

/// The flags of `pnn` in `map`; the tool indexes the map by PNN.
fn flags_of(map: &NodeMap, pnn: u32) -> Option<u32> {
    map.nodes.get(pnn as usize).map(|n| n.flags)
}

/// The node map as 4.17's tool obtains it: the cached one unless `force`d, else
/// from the local daemon, moving on to the next connected node while the node
/// asked is banned. Failures are reported on stderr at once (this also runs in
/// loops that only `-T` ends) and give `None`.
pub fn get_nodemap(ctx: &mut Ctx<'_>, force: bool) -> Option<NodeMap> {
    if force {
        *ctx.nodemap = None;
    }
    if let Some(map) = ctx.nodemap.as_ref() {
        return Some(map.clone());
    }
    let own = ctx.own();
    let mut current = own;
    loop {
        let map = match ctx.client.nodemap_from(current) {
            Ok(map) => map,
            Err(e) => {
                if !matches!(e, ClientError::Closed) {
                    eprintln!("{e}");
                }
                eprintln!("Failed to get nodemap from node {current}");
                return None;
            }
        };
        let num = map.nodes.len() as u32;
        let banned = flags_of(&map, current).is_some_and(|f| f & node_flags::BANNED != 0);
        if !banned || num == 0 {
            *ctx.nodemap = Some(map.clone());
            return Some(map);
        }
        loop {
            current = (current + 1) % num;
            let usable = flags_of(&map, current)
                .is_some_and(|f| f & (node_flags::DELETED | node_flags::DISCONNECTED) == 0);
            if usable || current == own {
                break;
            }
        }
        if current == own {
            eprintln!("Warning: All nodes are banned.");
            return None;
        }
    }
}

/// `Some(note)` when the target node already is as wanted. A node map that cannot
/// be had lets the command go ahead, as in 4.17.
fn already(ctx: &mut Ctx<'_>, change: &Change) -> Option<(String, u32)> {
    let map = get_nodemap(ctx, false)?;
    let flags = flags_of(&map, ctx.cmd)?;
    if (flags & change.flag != 0) != change.set {
        return None;
    }
    let note = if change.set {
        format!("Node {} is already {}", ctx.cmd, change.word)
    } else {
        format!("Node {} is not {}", ctx.cmd, change.word)
    };
    Some((note, flags))
}

/// Polls the node map (forced refresh, every second, without a limit of its own)
/// until the target node's `flag` is set or clear as wanted; returns its flags.
fn wait_for_flag(ctx: &mut Ctx<'_>, flag: u32, set: bool) -> u32 {
    loop {
        match get_nodemap(ctx, true) {
            None => eprintln!("Failed to get nodemap, trying again"),
            Some(map) => {
                let flags = flags_of(&map, ctx.cmd).unwrap_or(0);
                if (flags & flag != 0) == set {
                    return flags;
                }
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A failed control, followed by the command's own line about it.
pub(crate) fn control_failed(e: ClientError, what: String) -> CommandError {
    let code = e.exit_code();
    let mut stderr = match e {
        ClientError::Closed => String::new(),
        e => format!("{e}\n"),
    };
    stderr.push_str(&what);
    stderr.push('\n');
    CommandError::Failed {
        stdout: String::new(),
        stderr,
        code,
    }
}

/// A failed [`crate::client::Client::ipreallocate`] or [`crate::client::Client::disable_op`]; `what`, if given,
/// is the command's line about it. A refusal exits with the refused value.
pub(crate) fn message_op_failed(
    e: MessageOpError,
    what: Option<String>,
    refused_code: Option<i32>,
) -> CommandError {
    let (mut stderr, code) = match e {
        MessageOpError::Client(ClientError::Closed) => (String::new(), 1),
        MessageOpError::Client(e) => (format!("{e}\n"), e.exit_code()),
        MessageOpError::Refused(status) => (
            String::new(),
            refused_code.unwrap_or(status_exit_code(status)),
        ),
    };
    if let Some(what) = what {
        stderr.push_str(&what);
        stderr.push('\n');
    }
    CommandError::Failed {
        stdout: String::new(),
        stderr,
        code,
    }
}

/// The common course of the six state changes; `send` issues the control.
fn change_state(
    ctx: &mut Ctx<'_>,
    change: &Change,
    send: impl FnOnce(&mut Ctx<'_>) -> Result<(), CommandError>,
) -> Result<StateChange, CommandError> {
    if let Some((note, flags)) = already(ctx, change) {
        return Ok(StateChange {
            pnn: ctx.cmd,
            changed: false,
            flags,
            note: Some(note),
        });
    }
    send(ctx)?;
    let flags = wait_for_flag(ctx, change.flag, change.set);
    ctx.client
        .ipreallocate()
        .map_err(|e| message_op_failed(e, None, None))?;
    Ok(StateChange {
        pnn: ctx.cmd,
        changed: true,
        flags,
        note: None,
    })
}

/// Sends a data-less state control to the target node.
fn simple_control(ctx: &mut Ctx<'_>, opcode: Opcode, verb: &str) -> Result<(), CommandError> {
    ctx.client
        .control_ok(ctx.cmd, opcode, 0, &[])
        .map(drop)
        .map_err(|e| control_failed(e, format!("Failed to {verb} node {}", ctx.cmd)))
}

fn no_args(args: &[String], name: &'static str) -> Result<(), CommandError> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(CommandError::Usage(name))
    }
}

/// `disable`, `enable`, `stop` and `continue`: one control, then wait for the flag,
/// then a takeover run. They differ only in these.
struct FlagCommand {
    name: &'static str,
    opcode: Opcode,
    change: Change,
}

const DISABLE: FlagCommand = FlagCommand {
    name: "disable",
    opcode: Opcode::DISABLE_NODE,
    change: Change {
        flag: node_flags::PERMANENTLY_DISABLED,
        set: true,
        word: "disabled",
        verb: "disable",
    },
};

const ENABLE: FlagCommand = FlagCommand {
    name: "enable",
    opcode: Opcode::ENABLE_NODE,
    change: Change {
        flag: node_flags::PERMANENTLY_DISABLED,
        set: false,
        word: "disabled",
        verb: "enable",
    },
};

const STOP: FlagCommand = FlagCommand {
    name: "stop",
    opcode: Opcode::STOP_NODE,
    change: Change {
        flag: node_flags::STOPPED,
        set: true,
        word: "stopped",
        verb: "stop",
    },
};

const CONTINUE: FlagCommand = FlagCommand {
    name: "continue",
    opcode: Opcode::CONTINUE_NODE,
    change: Change {
        flag: node_flags::STOPPED,
        set: false,
        word: "stopped",
        verb: "continue stopped",
    },
};

fn flag_command(
    ctx: &mut Ctx<'_>,
    args: &[String],
    cmd: &FlagCommand,
) -> Result<StateChange, CommandError> {
    no_args(args, cmd.name)?;
    change_state(ctx, &cmd.change, |ctx| {
        simple_control(ctx, cmd.opcode, cmd.change.verb)
    })
}

/// `ctdb disable`: DISABLE_NODE, wait for DISABLED, takeover run.
pub fn disable(ctx: &mut Ctx<'_>, args: &[String]) -> Result<StateChange, CommandError> {
    flag_command(ctx, args, &DISABLE)
}

/// `ctdb enable`: ENABLE_NODE, wait for DISABLED to clear, takeover run.
pub fn enable(ctx: &mut Ctx<'_>, args: &[String]) -> Result<StateChange, CommandError> {
    flag_command(ctx, args, &ENABLE)
}

/// `ctdb stop`: STOP_NODE, wait for STOPPED, takeover run.
pub fn stop(ctx: &mut Ctx<'_>, args: &[String]) -> Result<StateChange, CommandError> {
    flag_command(ctx, args, &STOP)
}

/// `ctdb continue`: CONTINUE_NODE, wait for STOPPED to clear, takeover run.
pub fn continue_node(ctx: &mut Ctx<'_>, args: &[String]) -> Result<StateChange, CommandError> {
    flag_command(ctx, args, &CONTINUE)
}

/// Parses a ban time as the tool does (`strtoul`, base 0): leading blanks, digits
/// in the detected base, anything after them ignored. No digits or a minus sign
/// is EINVAL, a value beyond 64 bits ERANGE; the result is cut to 32 bits.
pub fn parse_ban_time(text: &str) -> Result<u32, i32> {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, rest) = match t.as_bytes().first() {
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
        return Err(EINVAL);
    }
    let value = u64::from_str_radix(&digits, radix).map_err(|_| ERANGE)?;
    if negative {
        return Err(EINVAL);
    }
    Ok(value as u32)
}

/// `ctdb ban SECONDS`: SET_BAN_STATE {cmd, SECONDS}, wait for BANNED, takeover run.
pub fn ban(ctx: &mut Ctx<'_>, args: &[String]) -> Result<StateChange, CommandError> {
    let [time] = args else {
        return Err(CommandError::Usage("ban"));
    };
    let change = Change {
        flag: node_flags::BANNED,
        set: true,
        word: "banned",
        verb: "ban",
    };
    let time = time.clone();
    change_state(ctx, &change, |ctx| {
        // Checked only once the node is known not to be banned already.
        let seconds = parse_ban_time(&time).map_err(CommandError::silent)?;
        if seconds == 0 {
            return Err(CommandError::Failed {
                stdout: String::new(),
                stderr: "Ban time cannot be zero\n".to_owned(),
                code: EINVAL,
            });
        }
        set_ban_state(ctx, seconds, change.verb)
    })
}

/// `ctdb unban`: SET_BAN_STATE {cmd, 0}, wait for BANNED to clear, takeover run.
pub fn unban(ctx: &mut Ctx<'_>, args: &[String]) -> Result<StateChange, CommandError> {
    no_args(args, "unban")?;
    let change = Change {
        flag: node_flags::BANNED,
        set: false,
        word: "banned",
        verb: "unban",
    };
    change_state(ctx, &change, |ctx| set_ban_state(ctx, 0, change.verb))
}

fn set_ban_state(ctx: &mut Ctx<'_>, time: u32, verb: &str) -> Result<(), CommandError> {
    let state = BanState { pnn: ctx.cmd, time };
    ctx.client
        .control_ok(ctx.cmd, Opcode::SET_BAN_STATE, 0, &state.encode())
        .map(drop)
        .map_err(|e| control_failed(e, format!("Failed to {verb} node {}", ctx.cmd)))
}

/// What happens to one node when the nodes file is reloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeChangeKind {
    /// A line beyond the current nodes.
    New,
    /// A node whose line is now commented out.
    Deleted,
    /// A deleted node whose line has an address again.
    Undeleted,
}

impl NodeChangeKind {
    fn word(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Deleted => "DELETED",
            Self::Undeleted => "UNDELETED",
        }
    }
}

/// One changed node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NodeChange {
    /// The node.
    pub pnn: u32,
    /// What changes.
    pub change: NodeChangeKind,
}

/// The outcome of comparing the running node map with the nodes file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileComparison {
    /// Changes, for stdout.
    pub changes: Vec<NodeChange>,
    /// Warnings and errors, for stderr, in order.
    pub messages: Vec<String>,
    /// A change that forbids reloading was found (the messages say which).
    pub failed: bool,
}

/// Compares the daemon's node map (`current`) with the nodes file, as 4.17 does
/// before reloading: nodes may only be added at the end, deleted (if
/// disconnected) or undeleted; a changed address or a missing line is an error.
pub fn compare_nodes_file(current: &NodeMap, file: &[NodeEntry]) -> FileComparison {
    let mut cmp = FileComparison::default();
    for (i, node) in current.nodes.iter().enumerate() {
        let Some(entry) = file.get(i) else {
            cmp.messages.push(format!(
                "Node {} ({}) missing from nodes file",
                node.pnn,
                node.addr.ip()
            ));
            cmp.failed = true;
            continue;
        };
        let was_deleted = node.flags & node_flags::DELETED != 0;
        match (was_deleted, entry.deleted) {
            (true, true) => {}
            (false, false) => {
                if node.addr.ip() != entry.address {
                    cmp.messages.push(format!(
                        "Node {} has changed IP address (was {}, now {})",
                        node.pnn,
                        node.addr.ip(),
                        entry.address
                    ));
                    cmp.failed = true;
                } else if node.flags & node_flags::DISCONNECTED != 0 {
                    cmp.messages.push(format!(
                        "WARNING: Node {} is disconnected. You MUST fix this node manually!",
                        node.pnn
                    ));
                }
            }
            (false, true) => {
                cmp.changes.push(NodeChange {
                    pnn: node.pnn,
                    change: NodeChangeKind::Deleted,
                });
                if node.flags & node_flags::DISCONNECTED == 0 {
                    cmp.messages
                        .push(format!("ERROR: Node {} is still connected", node.pnn));
                    cmp.failed = true;
                }
            }
            (true, false) => cmp.changes.push(NodeChange {
                pnn: node.pnn,
                change: NodeChangeKind::Undeleted,
            }),
        }
    }
    if cmp.failed {
        cmp.messages
            .push("ERROR: Nodes will not be reloaded due to previous error".to_owned());
        return cmp;
    }
    for entry in file.iter().skip(current.nodes.len()) {
        cmp.changes.push(NodeChange {
            pnn: entry.pnn,
            change: NodeChangeKind::New,
        });
    }
    cmp
}

/// Whether a daemon's copy of the nodes file (GET_NODES_FILE) is the local one:
/// same nodes, numbers, deleted marks and addresses.
pub fn same_nodes_file(file: &[NodeEntry], remote: &NodeMap) -> bool {
    file.len() == remote.nodes.len()
        && file.iter().zip(&remote.nodes).all(|(f, r)| {
            let flags = if f.deleted { node_flags::DELETED } else { 0 };
            f.pnn == r.pnn && flags == r.flags && f.address == r.addr.ip()
        })
}

/// `ctdb reloadnodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadNodes {
    /// The changes found (printed on stdout).
    pub changes: Vec<NodeChange>,
    /// Whether the nodes were asked to reload (false: nothing had changed).
    pub reloaded: bool,
    /// Nodes that failed to reload.
    pub failed_nodes: Vec<u32>,
    /// Warnings printed on stderr.
    pub warnings: Vec<String>,
}

impl Report for ReloadNodes {
    fn text(&self, _style: &Style) -> String {
        changes_text(&self.changes)
    }
    json_via_serde!();
    fn stderr(&self) -> String {
        self.warnings.iter().map(|w| format!("{w}\n")).collect()
    }
}

fn changes_text(changes: &[NodeChange]) -> String {
    changes
        .iter()
        .map(|c| format!("Node {} is {}\n", c.pnn, c.change.word()))
        .collect()
}

/// `ctdb reloadnodes`: check every connected daemon holds the local nodes file,
/// report the changes, and have those daemons reload it with recoveries held off.
pub fn reloadnodes(ctx: &mut Ctx<'_>, _args: &[String]) -> Result<ReloadNodes, CommandError> {
    let Some(current) = get_nodemap(ctx, false) else {
        return Err(CommandError::silent(1));
    };
    let own = ctx.own();
    let file = read_nodes(&nodes_file_path_for(Some(own)))?;
    let connected: Vec<u32> = current
        .nodes
        .iter()
        .filter(|n| n.flags & node_flags::DISCONNECTED == 0)
        .map(|n| n.pnn)
        .collect();
    for &pnn in &connected {
        let remote = ctx
            .client
            .control_ok(pnn, Opcode::GET_NODES_FILE, 0, &[])
            .and_then(|data| {
                NodeMap::decode(&data)
                    .map_err(|_| crate::client::bad_reply(Opcode::GET_NODES_FILE, pnn))
            })
            .map_err(|e| {
                control_failed(
                    e,
                    format!("ERROR: Failed to get nodes file from node {pnn}"),
                )
            })?;
        if !same_nodes_file(&file, &remote) {
            return Err(CommandError::stderr(format!(
                "ERROR: Nodes file on node {pnn} differs from current node ({own})"
            )));
        }
    }
    let cmp = compare_nodes_file(&current, &file);
    let mut warnings = cmp.messages;
    if cmp.failed {
        return Err(CommandError::Failed {
            stdout: changes_text(&cmp.changes),
            stderr: warnings.iter().map(|w| format!("{w}\n")).collect(),
            code: 1,
        });
    }
    if cmp.changes.is_empty() {
        warnings.push("No change in nodes file, skipping unnecessary reload".to_owned());
        return Ok(ReloadNodes {
            changes: cmp.changes,
            reloaded: false,
            failed_nodes: Vec::new(),
            warnings,
        });
    }
    // From here on a failure still prints the changes found.
    let fail = |e: CommandError, warnings: &[String], changes: &[NodeChange]| {
        let (_, stderr, code) = e.output();
        let mut all: String = warnings.iter().map(|w| format!("{w}\n")).collect();
        all.push_str(&stderr);
        CommandError::Failed {
            stdout: changes_text(changes),
            stderr: all,
            code,
        }
    };
    if connected.is_empty() {
        return Err(fail(
            CommandError::stderr("Memory allocation error"),
            &warnings,
            &cmp.changes,
        ));
    }
    let hold = 2 * ctx.client.timelimit_secs();
    if let Err(e) = ctx
        .client
        .disable_op(srvid::DISABLE_RECOVERIES, hold, &connected)
    {
        let e = message_op_failed(e, Some("Failed to disable recoveries".to_owned()), Some(1));
        return Err(fail(e, &warnings, &cmp.changes));
    }
    let results = ctx
        .client
        .control_multi(&connected, Opcode::RELOAD_NODES_FILE);
    let failed_nodes: Vec<u32> = connected
        .iter()
        .zip(&results)
        .filter(|(_, r)| !matches!(r, Ok(0)))
        .map(|(&pnn, _)| pnn)
        .collect();
    for pnn in &failed_nodes {
        warnings.push(format!("Node {pnn} failed to reload nodes"));
    }
    if !failed_nodes.is_empty() {
        warnings.push("You MUST fix failed nodes manually!".to_owned());
    }
    if let Err(e) = ctx
        .client
        .disable_op(srvid::DISABLE_RECOVERIES, 0, &connected)
    {
        let e = message_op_failed(e, Some("Failed to enable recoveries".to_owned()), Some(1));
        return Err(fail(e, &warnings, &cmp.changes));
    }
    Ok(ReloadNodes {
        changes: cmp.changes,
        reloaded: true,
        failed_nodes,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctdbd::protocol::control::NodeAndFlags;
    use std::net::SocketAddr;

    use super::super::listnodes::parse_nodes_file;

    fn map(nodes: &[(&str, u32)]) -> NodeMap {
        NodeMap {
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, (ip, flags))| NodeAndFlags {
                    pnn: i as u32,
                    flags: *flags,
                    addr: SocketAddr::new(ip.parse().unwrap(), 4379),
                })
                .collect(),
        }
    }

    #[test]
    fn state_change_prints_only_its_note() {
        let done = StateChange {
            pnn: 0,
            changed: true,
            flags: 4,
            note: None,
        };
        assert_eq!(done.text(&Style::default()), "");
        assert_eq!(done.stderr(), "");
        assert_eq!(done.exit_code(), 0);
        assert_eq!(
            done.json(),
            "{\n  \"pnn\": 0,\n  \"changed\": true,\n  \"flags\": 4\n}\n"
        );
        let noop = StateChange {
            pnn: 1,
            changed: false,
            flags: 4,
            note: Some("Node 1 is already disabled".into()),
        };
        assert_eq!(noop.text(&Style::default()), "");
        assert_eq!(noop.stderr(), "Node 1 is already disabled\n");
        assert_eq!(noop.exit_code(), 0);
    }

    #[test]
    fn ban_times_parse_like_strtoul() {
        assert_eq!(parse_ban_time("5"), Ok(5));
        assert_eq!(parse_ban_time("0x10"), Ok(16));
        assert_eq!(parse_ban_time("010"), Ok(8));
        assert_eq!(parse_ban_time("5x"), Ok(5));
        assert_eq!(parse_ban_time(" 7"), Ok(7));
        assert_eq!(parse_ban_time("0"), Ok(0));
        assert_eq!(parse_ban_time("4294967296"), Ok(0));
        assert_eq!(parse_ban_time("4294967301"), Ok(5));
        assert_eq!(parse_ban_time("abc"), Err(EINVAL));
        assert_eq!(parse_ban_time(""), Err(EINVAL));
        assert_eq!(parse_ban_time("-5"), Err(EINVAL));
        assert_eq!(parse_ban_time("99999999999999999999999"), Err(ERANGE));
    }

    #[test]
    fn unchanged_file_with_a_disconnected_node_warns() {
        let current = map(&[("127.0.0.1", 0), ("127.0.0.2", 0x1)]);
        let file = parse_nodes_file("127.0.0.1\n127.0.0.2\n").unwrap();
        let cmp = compare_nodes_file(&current, &file);
        assert!(!cmp.failed);
        assert!(cmp.changes.is_empty());
        assert_eq!(
            cmp.messages,
            ["WARNING: Node 1 is disconnected. You MUST fix this node manually!"]
        );
    }

    #[test]
    fn new_deleted_and_undeleted_nodes() {
        let current = map(&[("10.0.0.1", 0), ("10.0.0.2", 0x1), ("0.0.0.0", 0x11)]);
        let file = parse_nodes_file("10.0.0.1\n#10.0.0.2\n10.0.0.3\n10.0.0.4\n").unwrap();
        let cmp = compare_nodes_file(&current, &file);
        assert!(!cmp.failed);
        assert!(cmp.messages.is_empty());
        assert_eq!(
            changes_text(&cmp.changes),
            "Node 1 is DELETED\nNode 2 is UNDELETED\nNode 3 is NEW\n"
        );
        let report = ReloadNodes {
            changes: cmp.changes,
            reloaded: true,
            failed_nodes: vec![],
            warnings: vec![],
        };
        assert!(report.json().contains("\"change\": \"UNDELETED\""));
    }

    #[test]
    fn forbidden_changes_stop_the_reload() {
        let current = map(&[("10.0.0.1", 0), ("10.0.0.2", 0), ("10.0.0.3", 0)]);
        let file = parse_nodes_file("10.0.0.9\n#\n").unwrap();
        let cmp = compare_nodes_file(&current, &file);
        assert!(cmp.failed);
        assert_eq!(changes_text(&cmp.changes), "Node 1 is DELETED\n");
        assert_eq!(
            cmp.messages,
            [
                "Node 0 has changed IP address (was 10.0.0.1, now 10.0.0.9)",
                "ERROR: Node 1 is still connected",
                "Node 2 (10.0.0.3) missing from nodes file",
                "ERROR: Nodes will not be reloaded due to previous error",
            ]
        );
    }

    #[test]
    fn nodes_files_compare_by_number_mark_and_address() {
        let file = parse_nodes_file("10.0.0.1\n#\n").unwrap();
        let remote = map(&[("10.0.0.1", 0), ("0.0.0.0", node_flags::DELETED)]);
        assert!(same_nodes_file(&file, &remote));
        let other = map(&[("10.0.0.1", 0), ("10.0.0.2", 0)]);
        assert!(!same_nodes_file(&file, &other));
        assert!(!same_nodes_file(&file[..1], &remote));
    }
}
