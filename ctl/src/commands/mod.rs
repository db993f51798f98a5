//! The commands of the `ctdb` tool: what each asks the daemon (reference §5.2.2) and
//! the typed result it returns. Rendering lives beside each result (the [`Report`]
//! trait): plain text byte-identical to 4.17, the machine-readable `-X`/`-Y` form
//! (§9.1) and `--json`. This module holds what they share: the command table,
//! the per-run [`Ctx`], errors, and [`run`], which does 4.17's prologue (§5.2.1) and
//! runs a command once per selected node.

pub mod admin;
pub mod backup;
pub mod db;
pub mod dbmap;
pub mod event;
pub mod ip;
pub mod listnodes;
pub mod node;
pub mod nodestate;
pub mod persistent;
pub mod pubip;
pub mod record;
pub mod statistics;
pub mod status;
pub mod tdbfile;
pub mod tunables;

use std::time::Duration;

use ctdbd::protocol::control::{node_flags, NodeMap, Opcode};

use crate::cli::{command_usage, Cli, NodeSpec};
use crate::client::{socket_path, Client, ClientError};

/// Every command we implement: name, argument synopsis (as 4.17 spells it, since
/// scripts pass those arguments) and a summary in our own words.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("version", "", "print the version of this tool"),
    (
        "status",
        "",
        "print the node map, generation, recovery mode and leader",
    ),
    (
        "uptime",
        "",
        "print when the daemon started and last recovered",
    ),
    ("ping", "", "measure the round trip to a daemon"),
    (
        "runstate",
        "[setup|first_recovery|startup|running]",
        "print the daemon's run state, or check it is one of those given",
    ),
    ("getvar", "<name>", "print one tunable"),
    ("setvar", "<name> <value>", "change one tunable"),
    ("listvars", "", "print every tunable with its value"),
    ("statistics", "", "print the daemon's counters"),
    (
        "statisticsreset",
        "",
        "set the daemon's counters back to zero",
    ),
    (
        "stats",
        "[count]",
        "print the counters of each recent interval, newest first",
    ),
    (
        "ip",
        "[all]",
        "print the public addresses and their hosting nodes",
    ),
    (
        "ipinfo",
        "<ip>",
        "print one public address and its interfaces",
    ),
    (
        "ifaces",
        "",
        "print the public interfaces and their link state",
    ),
    (
        "process-exists",
        "<pid> [<srvid>]",
        "tell whether a client process (with that srvid) is known",
    ),
    ("getdbmap", "", "print the attached databases"),
    (
        "getdbstatus",
        "<dbname|dbid>",
        "print a database's id, path, kind and health",
    ),
    (
        "catdb",
        "<dbname|dbid>",
        "print every record of a database, from all nodes",
    ),
    (
        "cattdb",
        "<dbname|dbid>",
        "print the records of a database's local file",
    ),
    (
        "backupdb",
        "<dbname|dbid> <file>",
        "copy a database's records on this node into a file",
    ),
    (
        "restoredb",
        "<file> [dbname]",
        "replace a database's records on every node with a file's",
    ),
    (
        "wipedb",
        "<dbname|dbid>",
        "delete every record of a database on every node",
    ),
    (
        "setdbreadonly",
        "<dbname|dbid>",
        "let a volatile database hand out read-only copies of records",
    ),
    (
        "setdbsticky",
        "<dbname|dbid>",
        "let a volatile database keep hot records where they are used",
    ),
    ("getcapabilities", "", "print what roles the node may take"),
    ("pnn", "", "print the number of the local node"),
    (
        "setdebug",
        "ERROR|WARNING|NOTICE|INFO|DEBUG",
        "change the daemon's log level",
    ),
    ("getdebug", "", "print the daemon's log level"),
    ("getpid", "", "print the daemon's process id"),
    ("shutdown", "", "stop the daemon"),
    (
        "recover",
        "",
        "make the leader recover the cluster and wait until it has",
    ),
    ("sync", "", "old name of ipreallocate, kept for old scripts"),
    (
        "ipreallocate",
        "",
        "make the leader place the public addresses again and wait",
    ),
    (
        "gratarp",
        "<ip> <interface>",
        "make a node announce an address on an interface",
    ),
    (
        "tickle",
        "<srcip:port> <dstip:port>",
        "send one TCP tickle ACK from this machine (no daemon needed)",
    ),
    ("dumpmemory", "", "print what the daemon holds"),
    (
        "rddumpmemory",
        "",
        "print what the daemon holds, asked by message",
    ),
    (
        "attach",
        "<dbname> [persistent|replicated]",
        "attach a database, creating it if new",
    ),
    (
        "detach",
        "<dbname|dbid> ...",
        "detach volatile databases from every node",
    ),
    ("getreclock", "", "print the cluster lock setting"),
    (
        "setlmasterrole",
        "on|off",
        "let a node be a location master of records, or not",
    ),
    (
        "setleaderrole",
        "on|off",
        "let a node lead the cluster, or not",
    ),
    ("listnodes", "", "print the addresses of the nodes file"),
    ("leader", "", "print the number of the leading node"),
    (
        "nodestatus",
        "[all|<pnn-list>]",
        "print node states; the exit code is their flags",
    ),
    ("disable", "", "mark a node administratively disabled"),
    ("enable", "", "lift an administrative disable"),
    ("stop", "", "make a node inactive until it is continued"),
    ("continue", "", "make a stopped node active again"),
    (
        "ban",
        "<bantime>",
        "keep a node inactive for that many seconds",
    ),
    ("unban", "", "end a node's ban early"),
    (
        "reloadnodes",
        "",
        "make the daemons take up changes to the nodes file",
    ),
    (
        "moveip",
        "<ip> <node>",
        "make a node take over a public address",
    ),
    (
        "addip",
        "<ip/mask> <iface>",
        "give a node a new public address",
    ),
    ("delip", "<ip>", "take a public address away from a node"),
    (
        "reloadips",
        "[all|<pnn-list>]",
        "make nodes re-read their public addresses file",
    ),
    (
        "addtickle",
        "<ip>:<port> <ip>:<port>",
        "record a client connection to a public address",
    ),
    (
        "deltickle",
        "<ip>:<port> <ip>:<port>",
        "forget a recorded client connection",
    ),
    (
        "gettickles",
        "<ip> [<port>]",
        "print the client connections recorded for an address",
    ),
    (
        "dumpdbbackup",
        "<file>",
        "print the records of a backupdb file",
    ),
    (
        "tfetch",
        "<tdb-file> <key> [<file>]",
        "print one record of a TDB file",
    ),
    (
        "tstore",
        "<tdb-file> <key> <data> [<rsn> <dmaster> <flags>]",
        "write one record of a TDB file",
    ),
    (
        "readkey",
        "<dbname|dbid> <key> [readonly]",
        "print the value of a record, moving it here first",
    ),
    (
        "writekey",
        "<dbname|dbid> <key> <value>",
        "write the value of a record, moving it here first",
    ),
    (
        "deletekey",
        "<dbname|dbid> <key>",
        "delete a record, moving it here first",
    ),
    (
        "pfetch",
        "<dbname|dbid> <key>",
        "print the value of a record of a persistent database",
    ),
    (
        "pstore",
        "<dbname|dbid> <key> <value>",
        "write a record of a persistent database on every node",
    ),
    (
        "pdelete",
        "<dbname|dbid> <key>",
        "delete a record of a persistent database on every node",
    ),
    (
        "ptrans",
        "<dbname|dbid> [<file>]",
        "write \"key\" \"value\" lines (file or stdin) to a persistent database at once",
    ),
    (
        "checktcpport",
        "<port>",
        "tell whether a TCP port of this machine is free to bind",
    ),
    (
        "getdbseqnum",
        "<dbname|dbid>",
        "print a database's sequence number",
    ),
    (
        "dbstatistics",
        "<dbname|dbid>",
        "print a database's counters",
    ),
    (
        "event",
        "run|status|script <args>",
        "run an event or show its scripts' results; list, enable or disable scripts",
    ),
    (
        "scriptstatus",
        "[init|setup|startup|monitor|takeip|releaseip|ipreallocated]",
        "print how the scripts did in the last run of an event (monitor by default)",
    ),
];

/// How the user asked for output (`-X`/`-Y`/`-x`, `-v`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Style {
    /// The separator of machine-readable output, when `-X` or `-Y` is given.
    pub machine: Option<String>,
    /// `-v`.
    pub verbose: bool,
}

impl Style {
    /// One machine-readable line: `|a|b|` with the separator around every field.
    pub fn row<I, S>(sep: &str, fields: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut line = String::from(sep);
        for f in fields {
            line.push_str(f.as_ref());
            line.push_str(sep);
        }
        line.push('\n');
        line
    }
}

/// A command's result: what it prints, and its exit status.
pub trait Report {
    /// The text for stdout, plain or machine-readable per `style`.
    fn text(&self, style: &Style) -> String;
    /// The `--json` form, pretty-printed, fields in declaration order.
    fn json(&self) -> String;
    /// One element of the `-n all --json` array: `{pnn, result, exit_code}`.
    fn json_item(&self, pnn: u32) -> String;
    /// Text for stderr printed before stdout (warnings that do not fail the command).
    fn stderr(&self) -> String {
        String::new()
    }
    /// The process exit status.
    fn exit_code(&self) -> i32 {
        0
    }
}

/// Implements [`Report::json`] through serde for a result type.
macro_rules! json_via_serde {
    () => {
        fn json(&self) -> String {
            $crate::commands::json_text(self)
        }
        fn json_item(&self, pnn: u32) -> String {
            $crate::commands::json_text(&$crate::commands::JsonItem {
                pnn,
                result: Some(self),
                error: None,
                exit_code: $crate::commands::Report::exit_code(self),
            })
        }
    };
}
pub(crate) use json_via_serde;

/// One node's entry in the multi-node `--json` array.
#[derive(Debug, serde::Serialize)]
pub struct JsonItem<'a, T: serde::Serialize> {
    /// The node.
    pub pnn: u32,
    /// Its result, when the command succeeded there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'a T>,
    /// What went to stderr, when it failed there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The exit status for that node.
    pub exit_code: i32,
}

/// Pretty JSON text of `value`, newline-terminated.
pub fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
    text.push('\n');
    text
}

/// Joins pretty JSON documents into a pretty JSON array.
fn json_array(items: &[String]) -> String {
    if items.is_empty() {
        return "[]\n".to_owned();
    }
    let indented: Vec<String> = items
        .iter()
        .map(|item| {
            item.trim_end()
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    format!("[\n{}\n]\n", indented.join(",\n"))
}

/// Why a command failed. Each variant knows what 4.17 prints and its exit status.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Talking to the daemon failed, or a control returned an error status.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Wrong arguments: the command's usage goes to stdout, exit 1.
    #[error("usage of {0}")]
    Usage(&'static str),
    /// A failure with fixed texts (either may be empty) and exit status.
    #[error("{stderr}")]
    Failed {
        /// Text for stdout.
        stdout: String,
        /// Text for stderr.
        stderr: String,
        /// Exit status.
        code: i32,
    },
}

impl CommandError {
    /// A message on stderr (a newline is added) with exit status 1.
    pub fn stderr(text: impl Into<String>) -> Self {
        Self::Failed {
            stdout: String::new(),
            stderr: text.into() + "\n",
            code: 1,
        }
    }

    /// A message on stdout (a newline is added) with exit status 1.
    pub fn stdout(text: impl Into<String>) -> Self {
        Self::Failed {
            stdout: text.into() + "\n",
            stderr: String::new(),
            code: 1,
        }
    }

    /// Nothing printed, just an exit status (4.17's silent EINVAL cases).
    pub fn silent(code: i32) -> Self {
        Self::Failed {
            stdout: String::new(),
            stderr: String::new(),
            code,
        }
    }

    /// What to print on (stdout, stderr), and the exit status.
    pub fn output(&self) -> (String, String, i32) {
        match self {
            Self::Client(ClientError::Closed | ClientError::Reported) => {
                (String::new(), String::new(), 1)
            }
            Self::Client(e) => (String::new(), format!("{e}\n"), e.exit_code()),
            Self::Usage(name) => (command_usage(name), String::new(), 1),
            Self::Failed {
                stdout,
                stderr,
                code,
            } => (stdout.clone(), stderr.clone(), *code),
        }
    }
}

/// Per-node command state: the connection, the node the command is about (`cmd`,
/// §5.2.1) and the node map, fetched at most once per run.
pub struct Ctx<'a> {
    /// The connection to the local daemon.
    pub client: &'a mut Client,
    /// The node the command targets.
    pub cmd: u32,
    /// Output style.
    pub style: Style,
    nodemap: &'a mut Option<NodeMap>,
}

impl Ctx<'_> {
    /// The daemon's own PNN.
    pub fn own(&self) -> u32 {
        self.client.pnn()
    }

    /// The node map (GET_NODEMAP from the local daemon, cached). If the local node is
    /// banned its map may be stale, so, as 4.17 does, ask the next node that is
    /// neither deleted nor disconnected, until one is not banned; if every usable
    /// node is banned there is no map. Failures are reported on stderr as they
    /// happen ([`nodestate::get_nodemap`]) and the command then exits 1.
    pub fn nodemap(&mut self) -> Result<NodeMap, ClientError> {
        nodestate::get_nodemap(self, false).ok_or(ClientError::Reported)
    }
}

/// A finished run: everything to print, in order, and the exit status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Text for stdout.
    pub stdout: String,
    /// Text for stderr.
    pub stderr: String,
    /// Text for stderr after stdout: the event commands' report of how their work
    /// ended, which 4.17 prints once the helper's output is out.
    pub stderr_after: String,
    /// Exit status.
    pub code: i32,
}

impl Outcome {
    fn error(err: CommandError) -> Self {
        let (stdout, stderr, code) = err.output();
        Self {
            stdout,
            stderr,
            code,
            ..Self::default()
        }
    }
}

/// Runs the command line: usage handling, daemon-less commands, then the prologue
/// and the command once per selected node.
pub fn run(cli: &Cli) -> Outcome {
    let opts = &cli.global;
    if opts.help {
        return Outcome {
            stdout: crate::cli::OPTION_HELP.to_owned(),
            ..Outcome::default()
        };
    }
    if opts.usage {
        return Outcome {
            stdout: crate::cli::BRIEF_USAGE.to_owned(),
            ..Outcome::default()
        };
    }
    let Some((name, args)) = cli.words.split_first() else {
        return Outcome {
            stdout: crate::cli::full_usage(),
            code: 1,
            ..Outcome::default()
        };
    };
    let Some(&(name, _, _)) = COMMANDS.iter().find(|(n, _, _)| n == name) else {
        return Outcome::error(CommandError::stderr(format!("Unknown command '{name}'")));
    };
    let style = Style {
        machine: opts.machine_separator(),
        verbose: opts.verbose,
    };
    let json = opts.json;

    // Commands that never contact the daemon. `-n -1` is 4.17's "no node given".
    if matches!(
        name,
        "version"
            | "listnodes"
            | "event"
            | "scriptstatus"
            | "tickle"
            | "dumpdbbackup"
            | "checktcpport"
    ) {
        if opts
            .node
            .as_ref()
            .is_some_and(|n| *n != NodeSpec::Single(u32::MAX))
        {
            return Outcome::error(CommandError::stderr(format!(
                "Cannot specify node for command {name}"
            )));
        }
        let env = event::EventEnv::from_process();
        let result: Result<Box<dyn Report>, CommandError> = match name {
            "event" => return event::event(&env, args, json),
            "scriptstatus" => {
                return event::scriptstatus(&env, args, json).unwrap_or_else(Outcome::error)
            }
            "version" => Ok(Box::new(node::Version)),
            "tickle" => admin::tickle(args).map(|r| Box::new(r) as _),
            "dumpdbbackup" => db::dumpdbbackup(args).map(|r| Box::new(r) as _),
            "checktcpport" => admin::checktcpport(args).map(|r| Box::new(r) as _),
            _ => listnodes::run(&listnodes::nodes_file_path()).map(|r| Box::new(r) as _),
        };
        return match result {
            Ok(report) => render(report.as_ref(), &style, json),
            Err(e) => Outcome::error(e),
        };
    }

    let timeout = Duration::from_secs(u64::try_from(opts.timelimit.unwrap_or(10)).unwrap_or(0));
    let path = socket_path();
    let mut client = match Client::connect(&path, timeout) {
        Ok(c) => c,
        Err(e) => {
            let connect_failed = matches!(e, ClientError::Connect { .. });
            let (_, mut stderr, code) = CommandError::from(e).output();
            if connect_failed {
                stderr.push_str(&listnodes::connect_diagnosis());
            }
            return Outcome {
                stderr,
                code,
                ..Outcome::default()
            };
        }
    };
    let mut nodemap = None;
    let targets = match select_nodes(&mut client, &mut nodemap, opts.node.as_ref(), name) {
        Ok(t) => t,
        Err(e) => return Outcome::error(e),
    };
    if let Err(e) = client.register_leader() {
        return Outcome::error(e.into());
    }

    let multi = matches!(opts.node, Some(NodeSpec::All | NodeSpec::List(_)));
    let mut outcome = Outcome::default();
    let mut json_items = Vec::new();
    for cmd in targets {
        let mut ctx = Ctx {
            client: &mut client,
            cmd,
            style: style.clone(),
            nodemap: &mut nodemap,
        };
        let result = dispatch(&mut ctx, name, args);
        let one = match &result {
            Ok(report) => render(report.as_ref(), &style, json && !multi),
            Err(_) => Outcome::default(),
        };
        let one = match result {
            Ok(report) => {
                if multi && json {
                    json_items.push(report.json_item(cmd));
                }
                one
            }
            Err(e) => {
                let failed = Outcome::error(e);
                if multi && json {
                    json_items.push(json_text(&JsonItem::<()> {
                        pnn: cmd,
                        result: None,
                        error: Some(
                            if failed.stderr.is_empty() {
                                failed.stdout.trim_end()
                            } else {
                                failed.stderr.trim_end()
                            }
                            .to_owned(),
                        ),
                        exit_code: failed.code,
                    }));
                }
                failed
            }
        };
        if !(multi && json) {
            outcome.stdout.push_str(&one.stdout);
        }
        outcome.stderr.push_str(&one.stderr);
        if outcome.code == 0 {
            outcome.code = one.code;
        }
        if matches!(one.code, c if c != 0) && !multi {
            break;
        }
    }
    if multi && json {
        outcome.stdout = json_array(&json_items);
    }
    outcome
}

/// Prologue steps 3–4 (§5.2.1) plus our multi-node extension: the list of `cmd`
/// nodes to run the command on.
fn select_nodes(
    client: &mut Client,
    cache: &mut Option<NodeMap>,
    spec: Option<&NodeSpec>,
    name: &str,
) -> Result<Vec<u32>, CommandError> {
    let own = client.pnn();
    let Some(spec) = spec else {
        return Ok(vec![own]);
    };
    // The same fetch as the commands' (banned-node fallback included), cached.
    let map = Ctx {
        client,
        cmd: own,
        style: Style::default(),
        nodemap: cache,
    }
    .nodemap()?;
    let unusable = node_flags::DISCONNECTED | node_flags::DELETED;
    let targets: Vec<u32> = match spec {
        NodeSpec::All => map
            .nodes
            .iter()
            .filter(|n| n.flags & unusable == 0)
            .map(|n| n.pnn)
            .collect(),
        NodeSpec::Single(pnn) => vec![*pnn],
        NodeSpec::List(list) => list.clone(),
    };
    for &pnn in &targets {
        let Some(node) = map.nodes.get(pnn as usize) else {
            return Err(CommandError::stderr(format!("Node {pnn} does not exist")));
        };
        if node.flags & unusable != 0 {
            return Err(CommandError::stderr(format!(
                "Node {pnn} has status {}",
                status::flags_text(node.flags)
            )));
        }
    }
    *cache = Some(map);
    // Commands that only make sense on the local node (4.17's non-"remote" ones).
    if matches!(
        name,
        "pnn"
            | "reloadnodes"
            | "moveip"
            | "reloadips"
            | "catdb"
            | "cattdb"
            | "attach"
            | "detach"
            | "getdbseqnum"
            | "backupdb"
            | "restoredb"
            | "wipedb"
            | "readkey"
            | "writekey"
            | "deletekey"
            | "pfetch"
            | "pstore"
            | "pdelete"
            | "ptrans"
    ) && targets.iter().any(|&p| p != own)
    {
        return Err(CommandError::stderr(format!(
            "Node cannot be specified for command {name}"
        )));
    }
    Ok(targets)
}

fn dispatch(
    ctx: &mut Ctx<'_>,
    name: &str,
    args: &[String],
) -> Result<Box<dyn Report>, CommandError> {
    fn boxed<R: Report + 'static>(
        r: Result<R, CommandError>,
    ) -> Result<Box<dyn Report>, CommandError> {
        r.map(|r| Box::new(r) as Box<dyn Report>)
    }
    match name {
        "status" => boxed(status::status(ctx, args)),
        "nodestatus" => boxed(status::nodestatus(ctx, args)),
        "pnn" => boxed(node::pnn(ctx, args)),
        "ping" => boxed(node::ping(ctx, args)),
        "uptime" => boxed(node::uptime(ctx, args)),
        "getpid" => boxed(node::getpid(ctx, args)),
        "runstate" => boxed(node::runstate(ctx, args)),
        "getcapabilities" => boxed(node::getcapabilities(ctx, args)),
        "leader" => boxed(node::leader(ctx, args)),
        "getdebug" => boxed(node::getdebug(ctx, args)),
        "setdebug" => boxed(node::setdebug(ctx, args)),
        "process-exists" => boxed(node::process_exists(ctx, args)),
        "shutdown" => boxed(node::shutdown(ctx, args)),
        "listvars" => boxed(tunables::listvars(ctx, args)),
        "getvar" => boxed(tunables::getvar(ctx, args)),
        "setvar" => boxed(tunables::setvar(ctx, args)),
        "ip" => boxed(ip::ip(ctx, args)),
        "ipinfo" => boxed(ip::ipinfo(ctx, args)),
        "ifaces" => boxed(ip::ifaces(ctx, args)),
        "statistics" => boxed(statistics::statistics(ctx, args)),
        "getdbmap" => boxed(dbmap::getdbmap(ctx, args)),
        "getdbstatus" => boxed(db::getdbstatus(ctx, args)),
        "getdbseqnum" => boxed(db::getdbseqnum(ctx, args)),
        "catdb" => boxed(db::catdb(ctx, args)),
        "cattdb" => boxed(db::cattdb(ctx, args)),
        "attach" => boxed(db::attach(ctx, args)),
        "detach" => boxed(db::detach(ctx, args)),
        "dbstatistics" => boxed(db::dbstatistics(ctx, args)),
        "backupdb" => boxed(backup::backupdb(ctx, args)),
        "restoredb" => boxed(backup::restoredb(ctx, args)),
        "wipedb" => boxed(backup::wipedb(ctx, args)),
        "setdbreadonly" => boxed(db::setdbflag(ctx, args, "setdbreadonly")),
        "setdbsticky" => boxed(db::setdbflag(ctx, args, "setdbsticky")),
        "tfetch" => boxed(tdbfile::tfetch(args)),
        "tstore" => boxed(tdbfile::tstore(args)),
        "readkey" => boxed(record::readkey(ctx, args)),
        "writekey" => boxed(record::writekey(ctx, args)),
        "deletekey" => boxed(record::deletekey(ctx, args)),
        "pfetch" => boxed(persistent::pfetch(ctx, args)),
        "pstore" => boxed(persistent::pstore(ctx, args)),
        "pdelete" => boxed(persistent::pdelete(ctx, args)),
        "ptrans" => boxed(persistent::ptrans(ctx, args)),
        "disable" => boxed(nodestate::disable(ctx, args)),
        "enable" => boxed(nodestate::enable(ctx, args)),
        "stop" => boxed(nodestate::stop(ctx, args)),
        "continue" => boxed(nodestate::continue_node(ctx, args)),
        "ban" => boxed(nodestate::ban(ctx, args)),
        "unban" => boxed(nodestate::unban(ctx, args)),
        "reloadnodes" => boxed(nodestate::reloadnodes(ctx, args)),
        "moveip" => boxed(pubip::moveip(ctx, args)),
        "addip" => boxed(pubip::addip(ctx, args)),
        "delip" => boxed(pubip::delip(ctx, args)),
        "reloadips" => boxed(pubip::reloadips(ctx, args)),
        "addtickle" => boxed(pubip::addtickle(ctx, args)),
        "deltickle" => boxed(pubip::deltickle(ctx, args)),
        "gettickles" => boxed(pubip::gettickles(ctx, args)),
        "statisticsreset" => boxed(admin::statisticsreset(ctx, args)),
        "stats" => boxed(admin::stats(ctx, args)),
        "recover" => boxed(admin::recover(ctx, args)),
        "ipreallocate" => boxed(admin::ipreallocate(ctx, args, "ipreallocate")),
        "sync" => boxed(admin::ipreallocate(ctx, args, "sync")),
        "gratarp" => boxed(admin::gratarp(ctx, args)),
        "getreclock" => boxed(admin::getreclock(ctx, args)),
        "setlmasterrole" => boxed(admin::setrole(
            ctx,
            args,
            "setlmasterrole",
            Opcode::SET_LMASTERROLE,
        )),
        "setleaderrole" => boxed(admin::setrole(
            ctx,
            args,
            "setleaderrole",
            Opcode::SET_RECMASTERROLE,
        )),
        "dumpmemory" => boxed(admin::dumpmemory(ctx, args)),
        "rddumpmemory" => boxed(admin::rddumpmemory(ctx, args)),
        // Every name in COMMANDS is matched above or handled before the daemon.
        other => Err(CommandError::stderr(format!("Unknown command '{other}'"))),
    }
}

/// Turns a result into output: JSON or text, warnings, exit status.
pub fn render(report: &dyn Report, style: &Style, json: bool) -> Outcome {
    Outcome {
        stdout: if json {
            report.json()
        } else {
            report.text(style)
        },
        stderr: report.stderr(),
        code: report.exit_code(),
        ..Outcome::default()
    }
}
