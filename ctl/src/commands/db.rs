//! The commands about one database: `getdbstatus`, `getdbseqnum`, `catdb`,
//! `cattdb`, `attach`, `detach`, `dbstatistics` (reference core §5.2.2, §6.4;
//! samba §2, §6.6).
//!
//! They share 4.17's way of naming a database ([`find_db`]: a name, or `0x` and
//! its id, looked up on the local daemon) and of opening one as a client does
//! ([`open_db`]: attach, path, health, flags, then the TDB file itself), whose
//! failures the stock tool reports with fixed texts that scripts may match.

use std::ops::ControlFlow;
use std::path::Path;

use ctdbd::db::ltdb::{flags as rec_flags, LtdbHeader, HEADER_LEN};
use ctdbd::db::tdb::Tdb;
use ctdbd::protocol::control::{decode_u32, decode_u64, encode_u32, node_flags, NodeMap};
use ctdbd::protocol::dbctl::db_flags::{PERSISTENT, READONLY, REPLICATED, STICKY};
use ctdbd::protocol::dbctl::{encode_nul_string, DbMap as DbIdMap, GetDbSeqnum, TraverseStartExt};
use ctdbd::protocol::dbstats::DbStatistics;
use ctdbd::protocol::marshall::RecData;
use ctdbd::protocol::wire::c_string;
use ctdbd::protocol::Opcode;
use serde::Serialize;

use super::statistics::LatencyView;
use super::{json_via_serde, CommandError, Ctx, Report, Style};
use crate::client::{bad_reply, ClientError};

/// The client library's message range: a traverse's records come to
/// `CLIENT_RANGE | pid` (core §10).
const CLIENT_RANGE: u64 = 0xBE00_0000_0000_0000;
/// errno values 4.17 returns from the paths below.
const EIO: i32 = 5;
const ENOMEM: i32 = 12;
const EMSGSIZE: i32 = 90;

/// A database as [`find_db`] found it in the local daemon's map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbRef {
    /// Its id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its GET_DBMAP flags.
    pub flags: u8,
}

/// The text of a failed control as the client library logs it ("" when the
/// daemon went away, which 4.17 logs only at hidden levels).
pub(super) fn client_text(e: &ClientError) -> String {
    match e {
        ClientError::Closed | ClientError::Reported => String::new(),
        e => format!("{e}\n"),
    }
}

/// A failed control followed by the command's own message, exiting with the
/// control's code (4.17's "print, then return ret").
fn failed_with(e: &ClientError, message: &str) -> CommandError {
    CommandError::Failed {
        stdout: String::new(),
        stderr: format!("{}{message}\n", client_text(e)),
        code: e.exit_code(),
    }
}

/// A failed control inside a lookup that 4.17 reports as a plain failure: the
/// control's text, then exit 1.
fn lookup_failed(e: &ClientError) -> CommandError {
    CommandError::Failed {
        stdout: String::new(),
        stderr: client_text(e),
        code: 1,
    }
}

/// C's `strtoul(text, 0)` for text after `0x`: the leading hex digits (none reads
/// as the `0` before the `x`); `None` when the value overflows 64 bits.
fn hex_prefix_value(after_0x: &str) -> Option<u64> {
    let digits: String = after_0x
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(&digits, 16).ok()
}

/// Finds the database `arg` names, as 4.17 does: `0x…` is an id (read like
/// `strtoul`, kept to 32 bits), anything else a name compared exactly; both are
/// looked up in the local daemon's map, whatever `-n` says.
pub fn find_db(ctx: &mut Ctx<'_>, arg: &str) -> Result<DbRef, CommandError> {
    let own = ctx.own();
    let not_found = || CommandError::stderr(format!("No database matching '{arg}' found"));
    let data = ctx
        .client
        .control_ok(own, Opcode::GET_DBMAP, 0, &[])
        .map_err(|e| lookup_failed(&e))?;
    let map =
        DbIdMap::decode(&data).map_err(|_| lookup_failed(&bad_reply(Opcode::GET_DBMAP, own)))?;
    if let Some(hex) = arg.strip_prefix("0x") {
        // An overflowing id fails without a word, as strtoul's ERANGE does there.
        let id = hex_prefix_value(hex).ok_or_else(|| CommandError::silent(1))? as u32;
        let entry = map
            .dbs
            .iter()
            .find(|d| d.db_id == id)
            .ok_or_else(not_found)?;
        let name = ctx
            .client
            .control_ok(own, Opcode::GET_DBNAME, 0, &encode_u32(id))
            .map_err(|e| lookup_failed(&e))?;
        return Ok(DbRef {
            id,
            name: c_string(&name),
            flags: entry.flags,
        });
    }
    for entry in &map.dbs {
        // A failed name lookup ends the search as "not found" in 4.17.
        let name = match ctx
            .client
            .control_ok(own, Opcode::GET_DBNAME, 0, &encode_u32(entry.db_id))
        {
            Ok(name) => c_string(&name),
            Err(e) => {
                return Err(CommandError::stderr(format!(
                    "{}No database matching '{arg}' found",
                    client_text(&e)
                )))
            }
        };
        if name == arg {
            return Ok(DbRef {
                id: entry.db_id,
                name,
                flags: entry.flags,
            });
        }
    }
    Err(not_found())
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `ctdb getdbstatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbStatus {
    /// Database id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Path of the file on the node asked.
    pub path: String,
    /// Persistent.
    pub persistent: bool,
    /// Replicated.
    pub replicated: bool,
    /// Sticky records enabled.
    pub sticky: bool,
    /// Read-only delegations enabled.
    pub readonly: bool,
    /// Why the database is unhealthy; `None` when healthy.
    pub health: Option<String>,
}

impl Report for DbStatus {
    fn text(&self, _style: &Style) -> String {
        format!(
            "dbid: 0x{:08x}\nname: {}\npath: {}\nPERSISTENT: {}\nREPLICATED: {}\nSTICKY: {}\nREADONLY: {}\nHEALTH: {}\n",
            self.id,
            self.name,
            self.path,
            yes_no(self.persistent),
            yes_no(self.replicated),
            yes_no(self.sticky),
            yes_no(self.readonly),
            self.health.as_deref().unwrap_or("OK"),
        )
    }
    json_via_serde!();
}

/// A DB_GET_HEALTH reply: nothing means healthy, any bytes are the reason.
fn health_of(reply: &[u8]) -> Option<String> {
    (!reply.is_empty()).then(|| c_string(reply))
}

/// `ctdb getdbstatus DB`: the map entry, then GETDBPATH and DB_GET_HEALTH from
/// the node asked.
pub fn getdbstatus(ctx: &mut Ctx<'_>, args: &[String]) -> Result<DbStatus, CommandError> {
    let [arg] = args else {
        return Err(CommandError::Usage("getdbstatus"));
    };
    let db = find_db(ctx, arg)?;
    let key = encode_u32(db.id);
    let path = c_string(&ctx.client.control_ok(ctx.cmd, Opcode::GETDBPATH, 0, &key)?);
    let health = ctx
        .client
        .control_ok(ctx.cmd, Opcode::DB_GET_HEALTH, 0, &key)?;
    Ok(DbStatus {
        id: db.id,
        name: db.name,
        path,
        persistent: db.flags & PERSISTENT != 0,
        replicated: db.flags & REPLICATED != 0,
        sticky: db.flags & STICKY != 0,
        readonly: db.flags & READONLY != 0,
        health: health_of(&health),
    })
}

/// `ctdb getdbseqnum`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbSeqnum {
    /// Database id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// The sequence number.
    pub seqnum: u64,
}

impl Report for DbSeqnum {
    fn text(&self, _style: &Style) -> String {
        format!("0x{:x}\n", self.seqnum)
    }
    json_via_serde!();
}

/// `ctdb getdbseqnum DB`: GET_DB_SEQNUM from the node asked.
pub fn getdbseqnum(ctx: &mut Ctx<'_>, args: &[String]) -> Result<DbSeqnum, CommandError> {
    let [arg] = args else {
        return Err(CommandError::Usage("getdbseqnum"));
    };
    let db = find_db(ctx, arg)?;
    let note = format!("Failed to get sequence number for DB {}", db.name);
    let request = GetDbSeqnum { db_id: db.id }.encode();
    let seqnum = ctx
        .client
        .control_ok(ctx.cmd, Opcode::GET_DB_SEQNUM, 0, &request)
        .and_then(|data| {
            decode_u64(&data, "seqnum").map_err(|_| bad_reply(Opcode::GET_DB_SEQNUM, ctx.cmd))
        })
        .map_err(|e| failed_with(&e, &note))?;
    Ok(DbSeqnum {
        id: db.id,
        name: db.name,
        seqnum,
    })
}

/// A step of [`open_db`] failed: the client library's line and the exit code.
fn attach_failed(text: String, code: i32) -> CommandError {
    CommandError::Failed {
        stdout: String::new(),
        stderr: text,
        code,
    }
}

/// Attaches `name` as the client library does for a tool: DB_ATTACH (or its
/// persistent / replicated form) to the local daemon, GETDBPATH, DB_GET_HEALTH
/// (an unhealthy database is refused), SET_DB_READONLY / SET_DB_STICKY on every
/// connected node when `flags` asks, DB_OPEN_FLAGS, then the file is opened with
/// those flags. Failures carry the library's message and code.
pub fn open_db(ctx: &mut Ctx<'_>, name: &str, flags: u8) -> Result<(u32, Tdb), CommandError> {
    let own = ctx.own();
    let attach = if flags & PERSISTENT != 0 {
        Opcode::DB_ATTACH_PERSISTENT
    } else if flags & REPLICATED != 0 {
        Opcode::DB_ATTACH_REPLICATED
    } else {
        Opcode::DB_ATTACH
    };
    // The library tells a transport failure ("<step> failed") from a refusal
    // ("<step> parse failed"; for the attach itself "failed to get db_id").
    let step = |e: ClientError, what: &str, refused: &str| -> CommandError {
        match e {
            ClientError::ControlStatus { status, .. } => attach_failed(
                format!("attach: {name} {refused}, ret={status}\n"),
                ClientError::ControlStatus { name: "", status }.exit_code(),
            ),
            ClientError::Transport { errno, .. } => attach_failed(
                format!("attach: {name} {what} failed, ret={errno}\n"),
                e.exit_code(),
            ),
            other => attach_failed(client_text(&other), other.exit_code()),
        }
    };
    let reply = ctx
        .client
        .control_ok(own, attach, 0, &encode_nul_string(name))
        .map_err(|e| step(e, attach.name(), "failed to get db_id"))?;
    let id = decode_u32(&reply, "db_id").map_err(|_| {
        attach_failed(
            format!("attach: {name} failed to get db_id, ret={EMSGSIZE}\n"),
            EMSGSIZE,
        )
    })?;
    let key = encode_u32(id);
    let path = ctx
        .client
        .control_ok(own, Opcode::GETDBPATH, 0, &key)
        .map_err(|e| step(e, "GETDBPATH", "GETDBPATH parse failed"))?;
    let path = c_string(&path);
    let health = ctx
        .client
        .control_ok(own, Opcode::DB_GET_HEALTH, 0, &key)
        .map_err(|e| step(e, "DB_GET_HEALTH", "DB_GET_HEALTH parse failed"))?;
    if let Some(reason) = health_of(&health) {
        return Err(attach_failed(
            format!("attach: {name} database unhealthy ({reason})\n"),
            EIO,
        ));
    }
    set_db_flags(ctx, id, flags).map_err(|code| {
        attach_failed(
            format!("attach: {name} set db flags 0x{flags:08x} failed\n"),
            code,
        )
    })?;
    let open_flags = ctx
        .client
        .control_ok(own, Opcode::DB_OPEN_FLAGS, 0, &key)
        .map_err(|e| step(e, "DB_OPEN_FLAGS", "DB_OPEN_FLAGS parse failed"))?;
    let open_flags = decode_u32(&open_flags, "tdb_flags").map_err(|_| {
        attach_failed(
            format!("attach: {name} DB_OPEN_FLAGS parse failed, ret={EMSGSIZE}\n"),
            EMSGSIZE,
        )
    })?;
    let tdb = Tdb::open(Path::new(&path), 0, open_flags, libc::O_RDWR, 0)
        .map_err(|_| attach_failed(format!("attach: {name} tdb_wrap_open failed\n"), ENOMEM))?;
    Ok((id, tdb))
}

/// The library's "set db flags": for READONLY or STICKY, the node map from the
/// local daemon, then the control to every connected node at once. The error is
/// the exit code.
fn set_db_flags(ctx: &mut Ctx<'_>, id: u32, flags: u8) -> Result<(), i32> {
    if flags & (READONLY | STICKY) == 0 {
        return Ok(());
    }
    let own = ctx.own();
    let map: NodeMap = ctx.client.nodemap_from(own).map_err(|e| e.exit_code())?;
    let connected: Vec<u32> = map
        .nodes
        .iter()
        .filter(|n| n.flags & node_flags::DISCONNECTED == 0)
        .map(|n| n.pnn)
        .collect();
    if connected.is_empty() {
        return Err(ENOMEM);
    }
    for (bit, opcode) in [
        (READONLY, Opcode::SET_DB_READONLY),
        (STICKY, Opcode::SET_DB_STICKY),
    ] {
        if flags & bit == 0 {
            continue;
        }
        for result in ctx
            .client
            .control_multi_data(&connected, opcode, &encode_u32(id))
        {
            match result {
                Ok(0) => {}
                Ok(status) => {
                    return Err(ClientError::ControlStatus { name: "", status }.exit_code())
                }
                Err(e) => return Err(e.exit_code()),
            }
        }
    }
    Ok(())
}

/// One record as `catdb`, `cattdb` and `dumpdbbackup` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The key, as hex.
    #[serde(serialize_with = "as_hex")]
    pub key: Vec<u8>,
    /// The node holding the authoritative copy.
    pub dmaster: u32,
    /// Record sequence number.
    pub rsn: u64,
    /// Record flags.
    pub flags: u32,
    /// The value (after the ltdb header), as hex.
    #[serde(serialize_with = "as_hex")]
    pub data: Vec<u8>,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(bytes))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Record {
    /// The record stored under `key` (ltdb header, then value); `None` when too
    /// short for a header.
    pub fn from_stored(key: &[u8], stored: &[u8]) -> Option<Self> {
        let header = LtdbHeader::from_bytes(stored).ok()?;
        Some(Self {
            key: key.to_vec(),
            dmaster: header.dmaster,
            rsn: header.rsn,
            flags: header.flags,
            data: stored[HEADER_LEN..].to_vec(),
        })
    }
}

/// `name(len) = "…"`: printable bytes as they are except `"` and `\`, others as
/// `\XX` (upper-case hex).
fn quoted(name: &str, bytes: &[u8]) -> String {
    let mut out = format!("{name}({}) = \"", bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\{b:02X}"));
        }
    }
    out.push_str("\"\n");
    out
}

/// A record in 4.17's dump layout: key, header fields with flag names, data, and
/// an empty line.
fn record_text(r: &Record) -> String {
    format!("{}{}\n", quoted("key", &r.key), header_and_data(r))
}

/// The header fields (flag names after the flags word) and the quoted data, as
/// `tfetch` prints them and the dumps after the key.
pub fn header_and_data(r: &Record) -> String {
    const NAMES: [(u32, &str); 7] = [
        (rec_flags::MIGRATED_WITH_DATA, "MIGRATED_WITH_DATA"),
        (rec_flags::VACUUM_MIGRATED, "VACUUM_MIGRATED"),
        (rec_flags::AUTOMATIC, "AUTOMATIC"),
        (rec_flags::RO_HAVE_DELEGATIONS, "RO_HAVE_DELEGATIONS"),
        (rec_flags::RO_HAVE_READONLY, "RO_HAVE_READONLY"),
        (rec_flags::RO_REVOKING_READONLY, "RO_REVOKING_READONLY"),
        (rec_flags::RO_REVOKE_COMPLETE, "RO_REVOKE_COMPLETE"),
    ];
    let mut out = format!(
        "dmaster: {}\nrsn: {}\nflags: 0x{:08x}",
        r.dmaster, r.rsn, r.flags
    );
    for (bit, name) in NAMES {
        if r.flags & bit != 0 {
            out.push(' ');
            out.push_str(name);
        }
    }
    out.push('\n');
    out.push_str(&quoted("data", &r.data));
    out
}

/// The result of `catdb`, `cattdb` and `dumpdbbackup`: the records, the closing
/// count line, and how the dump ended (it may end early and still print).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dump {
    /// The database's name.
    pub name: String,
    /// The records, in the order they came.
    pub records: Vec<Record>,
    /// Words after the count (`records` or `record(s)`).
    #[serde(skip)]
    pub noun: &'static str,
    /// The first line (`dumpdbbackup`), if any.
    #[serde(skip)]
    pub heading: Option<String>,
    /// Messages for stderr.
    #[serde(skip)]
    pub warnings: String,
    /// Whether the closing count line is printed (a damaged backup ends without).
    #[serde(skip)]
    pub finished: bool,
    /// Exit status (non-zero when the walk stopped on an error).
    pub exit_code: i32,
}

impl Report for Dump {
    fn text(&self, _style: &Style) -> String {
        let mut out = self.heading.clone().unwrap_or_default();
        for r in &self.records {
            out.push_str(&record_text(r));
        }
        if self.finished {
            out.push_str(&format!("Dumped {} {}\n", self.records.len(), self.noun));
        }
        out
    }
    json_via_serde!();
    fn stderr(&self) -> String {
        self.warnings.clone()
    }
    fn exit_code(&self) -> i32 {
        self.exit_code
    }
}

/// `ctdb catdb DB`: attach, then a cluster-wide traverse (TRAVERSE_START_EXT, no
/// empty records) whose records come as messages to our client srvid until the
/// empty end marker.
pub fn catdb(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Dump, CommandError> {
    let [arg] = args else {
        return Err(CommandError::Usage("catdb"));
    };
    let db = find_db(ctx, arg)?;
    let (id, _tdb) = open_for_dump(ctx, &db)?;
    let srvid = CLIENT_RANGE | u64::from(std::process::id());
    let mut dump = Dump {
        name: db.name,
        records: Vec::new(),
        noun: "records",
        heading: None,
        warnings: String::new(),
        finished: true,
        exit_code: 0,
    };
    if let Err(e) = traverse(ctx, id, srvid, &mut dump.records) {
        dump.warnings = client_text(&e);
        dump.exit_code = e.exit_code();
    }
    Ok(dump)
}

/// [`open_db`] for the dump commands, which add their own line on failure.
pub(super) fn open_for_dump(ctx: &mut Ctx<'_>, db: &DbRef) -> Result<(u32, Tdb), CommandError> {
    open_db(ctx, &db.name, db.flags).map_err(|e| match e {
        CommandError::Failed { stderr, code, .. } => CommandError::Failed {
            stdout: String::new(),
            stderr: format!("{stderr}Failed to attach to DB {}\n", db.name),
            code,
        },
        other => other,
    })
}

/// Runs one traverse of `db_id` on the local daemon into `records`.
fn traverse(
    ctx: &mut Ctx<'_>,
    db_id: u32,
    srvid: u64,
    records: &mut Vec<Record>,
) -> Result<(), ClientError> {
    ctx.client.register_srvid(srvid)?;
    ctx.client.set_stream_srvid(Some(srvid));
    let result = (|| {
        let request = TraverseStartExt {
            db_id,
            reqid: 0,
            srvid,
            with_empty_records: false,
        };
        ctx.client
            .control_ok(ctx.cmd, Opcode::TRAVERSE_START_EXT, 0, &request.encode())?;
        // The records have no deadline of their own (only -T bounds the run).
        while let Some(message) = ctx.client.wait_message(srvid, None)? {
            let Ok(rec) = RecData::decode(&message) else {
                continue; // malformed records are skipped, as 4.17 does
            };
            if rec.is_end_marker() {
                break;
            }
            // Records too short for a header, or empty after it, are not shown.
            match Record::from_stored(&rec.key, &rec.data) {
                Some(r) if !r.data.is_empty() => records.push(r),
                _ => {}
            }
        }
        Ok(())
    })();
    ctx.client.set_stream_srvid(None);
    let deregistered = ctx.client.deregister_srvid(srvid);
    result.and(deregistered)
}

/// `ctdb cattdb DB`: attach, then read the local TDB file directly (empty records
/// included).
pub fn cattdb(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Dump, CommandError> {
    let [arg] = args else {
        return Err(CommandError::Usage("cattdb"));
    };
    let db = find_db(ctx, arg)?;
    let (_, tdb) = open_for_dump(ctx, &db)?;
    let mut dump = Dump {
        name: db.name,
        records: Vec::new(),
        noun: "record(s)",
        heading: None,
        warnings: String::new(),
        finished: true,
        exit_code: 0,
    };
    let walked = tdb.traverse_read(|key, stored| match Record::from_stored(key, stored) {
        Some(r) => {
            dump.records.push(r);
            ControlFlow::Continue(())
        }
        None => {
            dump.exit_code = EMSGSIZE;
            ControlFlow::Break(())
        }
    });
    if walked.is_err() {
        dump.exit_code = EIO;
    }
    Ok(dump)
}

/// `ctdb attach NAME [persistent|readonly|sticky|replicated]`: prints nothing.
pub fn attach(ctx: &mut Ctx<'_>, args: &[String]) -> Result<super::node::Done, CommandError> {
    let (name, flags) = match args {
        [name] => (name, 0),
        [name, kind] => (
            name,
            match kind.as_str() {
                "persistent" => PERSISTENT,
                "readonly" => READONLY,
                "sticky" => STICKY,
                "replicated" => REPLICATED,
                _ => return Err(CommandError::Usage("attach")),
            },
        ),
        _ => return Err(CommandError::Usage("attach")),
    };
    open_db(ctx, name, flags)?;
    Ok(super::node::Done::default())
}

/// `ctdb detach DB...`: refused during recovery, on a cluster with an inactive
/// node, or while any node lets clients attach (`AllowClientDBAttach` = 1); then
/// DB_DETACH for each volatile database named. An unknown name is reported and
/// skipped; a persistent or replicated one stops the command.
pub fn detach(ctx: &mut Ctx<'_>, args: &[String]) -> Result<super::node::Done, CommandError> {
    if args.is_empty() {
        return Err(CommandError::Usage("detach"));
    }
    let recmode = ctx
        .client
        .control_status(ctx.cmd, Opcode::GET_RECMODE, 0, &[])?;
    if recmode == 1 {
        return Err(CommandError::stderr(
            "Database cannot be detached when recovery is active",
        ));
    }
    let map = ctx.nodemap()?;
    for node in &map.nodes {
        if node.flags & (node_flags::DISCONNECTED | node_flags::DELETED) != 0 {
            continue;
        }
        if node.flags & node_flags::INACTIVE != 0 {
            return Err(CommandError::stderr(format!(
                "Database cannot be detached on inactive (stopped or banned) node {}",
                node.pnn
            )));
        }
        let value =
            super::tunables::get_tunable(ctx, node.pnn, "AllowClientDBAttach").map_err(|e| {
                failed_with(
                    &e,
                    &format!(
                        "Unable to get tunable AllowClientDBAttach from node {}",
                        node.pnn
                    ),
                )
            })?;
        if value == 1 {
            return Err(CommandError::stderr(format!(
                "Database access is still active on node {}. Set AllowclientDBAttach=0 on all nodes.",
                node.pnn
            )));
        }
    }
    let mut warnings = String::new();
    let mut code = 0;
    for arg in args {
        let db = match find_db(ctx, arg) {
            Ok(db) => db,
            Err(e) => {
                // Reported, then the next name.
                warnings.push_str(&e.output().1);
                continue;
            }
        };
        if db.flags & (PERSISTENT | REPLICATED) != 0 {
            return Err(CommandError::stderr(format!(
                "{warnings}Only volatile databases can be detached"
            )));
        }
        if let Err(e) = detach_one(ctx, db.id) {
            warnings.push_str(&client_text(&e));
            warnings.push_str(&format!("Database {} detach failed\n", db.name));
            code = e.exit_code();
        }
    }
    if code != 0 {
        return Err(CommandError::Failed {
            stdout: String::new(),
            stderr: warnings,
            code,
        });
    }
    Ok(super::node::Done {
        warning: (!warnings.is_empty()).then(|| warnings.trim_end_matches('\n').to_owned()),
    })
}

/// The library's detach: DB_DETACH to the local daemon (which tells the others).
fn detach_one(ctx: &mut Ctx<'_>, id: u32) -> Result<(), ClientError> {
    let own = ctx.own();
    ctx.client
        .control_ok(own, Opcode::DB_DETACH, 0, &encode_u32(id))
        .map(drop)
}

/// `ctdb dbstatistics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbStatisticsReport {
    /// Database name.
    pub name: String,
    /// Read-only delegations granted.
    pub db_ro_delegations: u32,
    /// Read-only delegations revoked.
    pub db_ro_revokes: u32,
    /// Lock requests made, being served, waiting, failed.
    pub locks: LockCounts,
    /// Calls by hop count.
    pub hop_count_buckets: Vec<u32>,
    /// Lock waits by duration.
    pub lock_buckets: Vec<u32>,
    /// Lock latency: `num`, `min`, `avg`, `max` (seconds).
    pub locks_latency: LatencyView,
    /// Vacuum run latency.
    pub vacuum_latency: LatencyView,
    /// The hot-key slots as the daemon sent them (`count`, `key` in hex).
    pub hot_keys: Vec<HotKeyReport>,
}

/// Lock counters of [`DbStatisticsReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockCounts {
    /// Requests made.
    pub num_calls: u32,
    /// Being served.
    pub num_current: u32,
    /// Waiting.
    pub num_pending: u32,
    /// Failed.
    pub num_failed: u32,
}

/// A hot-key slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HotKeyReport {
    /// Fetches.
    pub count: u32,
    /// The key, hex.
    pub key: String,
}

impl Report for DbStatisticsReport {
    fn text(&self, _style: &Style) -> String {
        let mut out = format!("DB Statistics {}\n", self.name);
        out.push_str(&format!(
            " {:<22}    {:>10}\n",
            "db_ro_delegations", self.db_ro_delegations
        ));
        out.push_str(&format!(
            " {:<22}    {:>10}\n",
            "db_ro_revokes", self.db_ro_revokes
        ));
        out.push_str(" locks\n");
        for (name, value) in [
            ("num_calls", self.locks.num_calls),
            ("num_current", self.locks.num_current),
            ("num_pending", self.locks.num_pending),
            ("num_failed", self.locks.num_failed),
        ] {
            out.push_str(&format!("     {name:<22}{value:>10}\n"));
        }
        let signed =
            |v: &[u32]| -> String { v.iter().map(|b| format!(" {}", *b as i32)).collect() };
        out.push_str(&format!(
            " hop_count_buckets:{}\n",
            signed(&self.hop_count_buckets)
        ));
        out.push_str(&format!(" lock_buckets:{}\n", signed(&self.lock_buckets)));
        for (label, l) in [
            ("locks_latency      MIN/AVG/MAX", &self.locks_latency),
            ("vacuum_latency     MIN/AVG/MAX", &self.vacuum_latency),
        ] {
            out.push_str(&format!(
                " {label:<30}     {:.6}/{:.6}/{:.6} sec out of {}\n",
                l.min, l.avg, l.max, l.num
            ));
        }
        out.push_str(&format!(" Num Hot Keys:     {}\n", self.hot_keys.len()));
        for k in &self.hot_keys {
            out.push_str(&format!("     Count:{} Key:{}\n", k.count as i32, k.key));
        }
        out
    }
    json_via_serde!();
}

/// `ctdb dbstatistics DB`: GET_DB_STATISTICS from the node asked.
pub fn dbstatistics(
    ctx: &mut Ctx<'_>,
    args: &[String],
) -> Result<DbStatisticsReport, CommandError> {
    let [arg] = args else {
        return Err(CommandError::Usage("dbstatistics"));
    };
    let db = find_db(ctx, arg)?;
    let note = format!("Failed to get statistics for DB {}", db.name);
    let s = ctx
        .client
        .control_ok(ctx.cmd, Opcode::GET_DB_STATISTICS, 0, &encode_u32(db.id))
        .and_then(|data| {
            DbStatistics::decode(&data).map_err(|_| bad_reply(Opcode::GET_DB_STATISTICS, ctx.cmd))
        })
        .map_err(|e| failed_with(&e, &note))?;
    // 4.17 prints as many slots as `num_hot_keys` says (it holds at most ten).
    let shown = (s.num_hot_keys as usize).min(s.hot_keys.len());
    Ok(DbStatisticsReport {
        name: db.name,
        db_ro_delegations: s.db_ro_delegations,
        db_ro_revokes: s.db_ro_revokes,
        locks: LockCounts {
            num_calls: s.locks_num_calls,
            num_current: s.locks_num_current,
            num_pending: s.locks_num_pending,
            num_failed: s.locks_num_failed,
        },
        hop_count_buckets: s.hop_count_bucket.to_vec(),
        lock_buckets: s.locks_buckets.to_vec(),
        locks_latency: LatencyView::from(s.locks_latency),
        vacuum_latency: LatencyView::from(s.vacuum_latency),
        hot_keys: s.hot_keys[..shown]
            .iter()
            .map(|k| HotKeyReport {
                count: k.count,
                key: hex(&k.key),
            })
            .collect(),
    })
}

/// `ctdb setdbreadonly DB` and `ctdb setdbsticky DB`: SET_DB_READONLY or
/// SET_DB_STICKY to the node asked; 4.17 refuses persistent and replicated
/// databases itself, before asking.
pub fn setdbflag(
    ctx: &mut Ctx<'_>,
    args: &[String],
    command: &'static str,
) -> Result<super::node::Done, CommandError> {
    let [arg] = args else {
        return Err(CommandError::Usage(command));
    };
    let (opcode, what) = if command == "setdbreadonly" {
        (Opcode::SET_DB_READONLY, "READONLY")
    } else {
        (Opcode::SET_DB_STICKY, "STICKY")
    };
    let db = find_db(ctx, arg)?;
    if db.flags & (PERSISTENT | REPLICATED) != 0 {
        return Err(CommandError::stderr(format!(
            "{what} can be set only on volatile DB"
        )));
    }
    ctx.client
        .control_ok(ctx.cmd, opcode, 0, &encode_u32(db.id))?;
    Ok(super::node::Done::default())
}

/// The version word of a backup file's header (`backupdb` of 4.17).
pub const BACKUP_VERSION: u64 = 3;
/// A backup header on LP64: version, timestamp, flags, buffer and record counts
/// (8 bytes each), then the name in 64 bytes.
pub const BACKUP_HEADER_SIZE: usize = 104;
/// The largest record buffer the stock tool can allocate (talloc's limit): a
/// bigger length fails as out of memory.
const BACKUP_MAX_BUFFER: u64 = 0x1000_0000;

/// The errno of a failed read.
pub fn read_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(EIO)
}

/// What 4.17's `dumpdbbackup` exits with when a backup ends early: a short read
/// sets no errno, so the tool returns the one left over from its start-up, which
/// is ENOENT (observed with Debian's 4.17.12).
const SHORT_READ_CODE: i32 = 2;

/// Reads exactly `buf.len()` bytes; running out of file is [`SHORT_READ_CODE`].
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> Result<(), i32> {
    use std::io::Read;
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => return Err(SHORT_READ_CODE),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_errno(&e)),
        }
    }
    Ok(())
}

/// A backup file's header as the tool reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupHeader {
    /// When the backup was taken (seconds since the epoch).
    pub timestamp: i64,
    /// The database's GET_DBMAP flags when it was taken.
    pub flags: u64,
    /// Record buffers that follow.
    pub nbuf: u64,
    /// Records in them.
    pub nrec: u64,
    /// The database's name.
    pub name: String,
}

impl BackupHeader {
    /// The header's bytes on LP64 (the name cut to 63 bytes, zero-padded).
    pub fn encode(&self) -> [u8; BACKUP_HEADER_SIZE] {
        let mut out = [0u8; BACKUP_HEADER_SIZE];
        for (i, word) in [
            BACKUP_VERSION,
            self.timestamp as u64,
            self.flags,
            self.nbuf,
            self.nrec,
        ]
        .into_iter()
        .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        let name = self.name.as_bytes();
        let len = name.len().min(63);
        out[40..40 + len].copy_from_slice(&name[..len]);
        out
    }
}

/// Opens a backup and reads its header as `dumpdbbackup` and `restoredb` do: one
/// read (a short file leaves the rest of the header zero here, undefined in
/// 4.17), then the version check. Failures carry 4.17's texts and codes.
pub fn open_backup(file: &str) -> Result<(std::fs::File, BackupHeader), CommandError> {
    use std::io::Read;
    let mut f = std::fs::File::open(file).map_err(|e| CommandError::Failed {
        stdout: String::new(),
        stderr: format!("Failed to open file {file} for reading\n"),
        code: read_errno(&e),
    })?;
    let mut header = [0u8; BACKUP_HEADER_SIZE];
    let mut got = 0;
    loop {
        match f.read(&mut header[got..]) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if got == header.len() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(CommandError::Failed {
                    stdout: String::new(),
                    stderr: format!("Failed to read db header from file {file}\n"),
                    code: read_errno(&e),
                })
            }
        }
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    let version = word(0);
    if version != BACKUP_VERSION {
        return Err(CommandError::Failed {
            stdout: String::new(),
            stderr: format!(
                "Wrong version of backup file, expected {BACKUP_VERSION}, got {version}\n"
            ),
            code: 22,
        });
    }
    let name_bytes = &header[40..40 + 63];
    let name_end = name_bytes.iter().position(|&b| b == 0).unwrap_or(63);
    Ok((
        f,
        BackupHeader {
            timestamp: word(1) as i64,
            flags: word(2),
            nbuf: word(3),
            nrec: word(4),
            name: String::from_utf8_lossy(&name_bytes[..name_end]).into_owned(),
        },
    ))
}

/// Reads the next record buffer of a backup: `db_id u32 | count u32 | length
/// u64`, then `length` bytes of records. The error is the exit code.
pub fn read_backup_buffer(f: &mut std::fs::File) -> Result<(u32, u32, Vec<u8>), i32> {
    let mut fixed = [0u8; 16];
    read_full(f, &mut fixed)?;
    let db_id = u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
    let count = u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&fixed[8..16]);
    let buflen = u64::from_le_bytes(len);
    if buflen > BACKUP_MAX_BUFFER {
        return Err(ENOMEM);
    }
    let mut buf = vec![0u8; buflen as usize];
    read_full(f, &mut buf)?;
    Ok((db_id, count, buf))
}

/// Walks one record buffer of a backup as 4.17 does: each record is
/// `length | reqid | keylen | datalen | key | data` with key and data inside
/// `length`, and the next starts right after the data. A record that does not
/// fit, or whose data is shorter than an ltdb header, is EMSGSIZE.
fn backup_records(buf: &[u8], count: u32, out: &mut Vec<Record>) -> Result<(), i32> {
    let u32_at = |at: usize| -> Option<u32> {
        buf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut offset = 0usize;
    for _ in 0..count {
        let rest = buf.len() - offset;
        let len = u32_at(offset).ok_or(EMSGSIZE)? as usize;
        if rest < len || len < 16 {
            return Err(EMSGSIZE);
        }
        let keylen = u32_at(offset + 8).ok_or(EMSGSIZE)? as usize;
        let datalen = u32_at(offset + 12).ok_or(EMSGSIZE)? as usize;
        if len - 16 < keylen || len - 16 - keylen < datalen {
            return Err(EMSGSIZE);
        }
        let key = &buf[offset + 16..offset + 16 + keylen];
        let data = &buf[offset + 16 + keylen..offset + 16 + keylen + datalen];
        out.push(Record::from_stored(key, data).ok_or(EMSGSIZE)?);
        offset += 16 + keylen + datalen;
    }
    Ok(())
}

/// `ctdb dumpdbbackup FILE`: prints a `backupdb` file's records without a
/// daemon. A damaged file stops the dump where it breaks, after what was read.
pub fn dumpdbbackup(args: &[String]) -> Result<Dump, CommandError> {
    let [file] = args else {
        // 4.17 asks for the usage of a command it does not have ("dumpbackup"),
        // which prints the whole command list.
        return Err(CommandError::Failed {
            stdout: crate::cli::full_usage(),
            stderr: String::new(),
            code: 1,
        });
    };
    let (mut f, header) = open_backup(file)?;
    let BackupHeader {
        timestamp,
        nbuf,
        name,
        ..
    } = header;
    let mut dump = Dump {
        heading: Some(format!(
            "Dumping database {name} from backup @ {}\n",
            crate::timefmt::local_stamp(timestamp)
        )),
        name,
        records: Vec::new(),
        noun: "record(s)",
        warnings: String::new(),
        finished: false,
        exit_code: 0,
    };
    for _ in 0..nbuf {
        let (count, buf) = match read_backup_buffer(&mut f).map(|(_, count, buf)| (count, buf)) {
            Ok(v) => v,
            Err(code) => {
                dump.warnings = "Failed to read records\n".into();
                dump.exit_code = code;
                return Ok(dump);
            }
        };
        if let Err(code) = backup_records(&buf, count, &mut dump.records) {
            dump.warnings = "Failed to dump records\n".into();
            dump.exit_code = code;
            return Ok(dump);
        }
    }
    dump.finished = true;
    Ok(dump)
}

/// 4.17's `str_to_data`: `0x` and an even number of hex digits is bytes, anything
/// else the text itself. Failures print their reason (the tool calls everything
/// a "Key") and are EINVAL.
pub fn str_to_data(text: &str) -> Result<Vec<u8>, String> {
    bytes_to_data(text.as_bytes(), text.len())
}

/// [`str_to_data`] of the first `len` bytes of `rest`, as 4.17 calls it on part
/// of a line (`ptrans`): its messages show `rest` to the end, as C's `%s` of an
/// unterminated piece does.
pub fn bytes_to_data(rest: &[u8], len: usize) -> Result<Vec<u8>, String> {
    let len = len.min(rest.len());
    if !rest.starts_with(b"0x") {
        return Ok(rest[..len].to_vec());
    }
    let shown = |from: usize| String::from_utf8_lossy(&rest[from..]).into_owned();
    let hex = &rest[2..len.max(2)];
    if hex.len() % 2 == 1 {
        return Err(format!(
            "Key ({}) contains odd number of hex digits",
            shown(2)
        ));
    }
    let mut out = Vec::with_capacity(hex.len() / 2);
    for (i, pair) in hex.chunks(2).enumerate() {
        let digit = |c: u8| char::from(c).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
            // The rest of the string from the bad pair on (bytes, as C sees it).
            _ => return Err(format!("Invalid hex: {}", shown(2 + i * 2))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_read_like_strtoul() {
        assert_eq!(hex_prefix_value("7a19d84d"), Some(0x7a19_d84d));
        assert_eq!(hex_prefix_value("zz"), Some(0));
        assert_eq!(hex_prefix_value(""), Some(0));
        assert_eq!(hex_prefix_value("12zz"), Some(0x12));
        assert_eq!(hex_prefix_value("1ffffffffffffffff"), None);
        // Kept to 32 bits by the caller.
        assert_eq!(
            hex_prefix_value("17a19d84d").map(|v| v as u32),
            Some(0x7a19_d84d)
        );
    }

    #[test]
    fn records_print_as_4_17_does() {
        let r = Record {
            key: b"k\"\\\x01".to_vec(),
            dmaster: 1,
            rsn: 7,
            flags: rec_flags::MIGRATED_WITH_DATA | rec_flags::AUTOMATIC,
            data: b"v a".to_vec(),
        };
        assert_eq!(
            record_text(&r),
            "key(4) = \"k\\22\\5C\\01\"\ndmaster: 1\nrsn: 7\nflags: 0x00050000 MIGRATED_WITH_DATA AUTOMATIC\ndata(3) = \"v a\"\n\n"
        );
    }

    #[test]
    fn str_to_data_reads_text_and_hex() {
        assert_eq!(str_to_data("abc").unwrap(), b"abc");
        assert_eq!(str_to_data("0x00ff7F").unwrap(), [0, 0xff, 0x7f]);
        assert_eq!(str_to_data("0x").unwrap(), b"");
        assert_eq!(
            str_to_data("0x123").unwrap_err(),
            "Key (123) contains odd number of hex digits"
        );
        assert_eq!(str_to_data("0x12zz34").unwrap_err(), "Invalid hex: zz34");
    }

    #[test]
    fn backup_records_stop_at_damage() {
        let rec = |key: &[u8], value: &[u8]| {
            let mut stored = LtdbHeader::new(5, 1).to_bytes().to_vec();
            stored.extend_from_slice(value);
            RecData {
                reqid: 0,
                key: key.to_vec(),
                data: stored,
            }
            .encode()
        };
        let mut buf = rec(b"a", b"one");
        buf.extend(rec(b"bb", b""));
        let mut out = Vec::new();
        backup_records(&buf, 2, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].rsn, out[0].dmaster, &out[0].data[..]),
            (5, 1, &b"one"[..])
        );
        assert_eq!(out[1].key, b"bb");
        // Truncated: the first record is kept, the second fails.
        let mut short = Vec::new();
        assert_eq!(
            backup_records(&buf[..buf.len() - 1], 2, &mut short),
            Err(EMSGSIZE)
        );
        assert_eq!(short.len(), 1);
        // A record too short for an ltdb header.
        let bad = RecData {
            reqid: 0,
            key: b"k".to_vec(),
            data: vec![0; 10],
        }
        .encode();
        assert_eq!(backup_records(&bad, 1, &mut Vec::new()), Err(EMSGSIZE));
    }

    #[test]
    fn getdbstatus_layout() {
        let s = DbStatus {
            id: 0x7a19d84d,
            name: "locking.tdb".into(),
            path: "/var/lib/ctdb/volatile/locking.tdb.0".into(),
            persistent: false,
            replicated: false,
            sticky: true,
            readonly: false,
            health: None,
        };
        assert_eq!(
            s.text(&Style::default()),
            "dbid: 0x7a19d84d\nname: locking.tdb\npath: /var/lib/ctdb/volatile/locking.tdb.0\nPERSISTENT: no\nREPLICATED: no\nSTICKY: yes\nREADONLY: no\nHEALTH: OK\n"
        );
    }
}
