//! `pfetch`, `pstore`, `pdelete` and `ptrans`: records of a persistent (or
//! replicated) database, read and changed in a transaction as 4.17's client
//! library runs one (samba §6.3):
//!
//! 1. a g_lock in the volatile `g_lock.tdb`, key `transaction_db_0x<id>\0`: the
//!    record is migrated here and locked like any volatile record, and the lock
//!    list in it (32-byte entries: type, padding, server id) gets our entry once
//!    no conflicting holder is alive (PROCESS_EXISTS on the holder's node);
//! 2. reads from the local file, writes collected in a marshall buffer, each
//!    with its header's rsn one up and this node as dmaster;
//! 3. commit: the `__db_sequence_number__` record one up, TRANS3_COMMIT to the
//!    local daemon (retried while the sequence number shows it has not landed);
//! 4. our entry taken out of the lock list; an empty list deletes the record.
//!
//! The lock list is the ctdb client library's own layout, which the stock tool
//! and ours share, so the two tools exclude each other.

use std::io::Read;

use ctdbd::db::ltdb::{LtdbHeader, HEADER_LEN};
use ctdbd::db::tdb::Tdb;
use ctdbd::protocol::dbctl::db_flags::{PERSISTENT, REPLICATED};
use ctdbd::protocol::marshall::{MarshallBuffer, RecData};
use ctdbd::protocol::packet::UNKNOWN_PNN;
use ctdbd::protocol::Opcode;
use serde::Serialize;

use super::db::{bytes_to_data, find_db, hex, open_db, DbRef};
use super::node::Done;
use super::record::{delete_record, fetch_lock, parse, Failure, Locked};
use super::{json_via_serde, CommandError, Ctx, Report, Style};

const EIO: i32 = 5;
const EINVAL: i32 = 22;
const EDEADLK: i32 = 35;
const EPROTO: i32 = 71;

/// The record holding a persistent database's sequence number.
const SEQNUM_KEY: &[u8] = b"__db_sequence_number__\0";
/// The volatile database holding the transaction locks.
const G_LOCK_DB: &str = "g_lock.tdb";
/// One entry of a lock list: type u32, 4 bytes padding, then the server id
/// (pid u64, task_id u32, vnn u32, unique_id u64).
const G_LOCK_ENTRY_LEN: usize = 32;
/// A lock list entry's type.
const G_LOCK_READ: u32 = 0;
const G_LOCK_WRITE: u32 = 1;
/// 4.17 reads input lines with `fgets` into a buffer of this size: a longer line
/// arrives in pieces of one byte less.
const PTRANS_LINE_MAX: usize = 1024;

/// Who holds a g_lock: the client library's server id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServerId {
    pid: u64,
    task_id: u32,
    vnn: u32,
    unique_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GLock {
    kind: u32,
    sid: ServerId,
}

/// Reads a lock list as the client library does: as many whole entries as fit,
/// a type other than read or write spoils it.
fn parse_locks(data: &[u8]) -> Option<Vec<GLock>> {
    data.chunks_exact(G_LOCK_ENTRY_LEN)
        .map(|e| {
            let u32_at = |at: usize| u32::from_le_bytes(e[at..at + 4].try_into().unwrap_or([0; 4]));
            let u64_at = |at: usize| u64::from_le_bytes(e[at..at + 8].try_into().unwrap_or([0; 8]));
            let kind = u32_at(0);
            (kind == G_LOCK_READ || kind == G_LOCK_WRITE).then(|| GLock {
                kind,
                sid: ServerId {
                    pid: u64_at(8),
                    task_id: u32_at(16),
                    vnn: u32_at(20),
                    unique_id: u64_at(24),
                },
            })
        })
        .collect()
}

fn encode_locks(locks: &[GLock]) -> Vec<u8> {
    let mut out = Vec::with_capacity(locks.len() * G_LOCK_ENTRY_LEN);
    for l in locks {
        out.extend_from_slice(&l.kind.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&l.sid.pid.to_le_bytes());
        out.extend_from_slice(&l.sid.task_id.to_le_bytes());
        out.extend_from_slice(&l.sid.vnn.to_le_bytes());
        out.extend_from_slice(&l.sid.unique_id.to_le_bytes());
    }
    out
}

/// A failure with a line added to the library's message.
fn with_line(f: Failure, line: String) -> Failure {
    Failure {
        message: format!("{}{line}\n", f.message),
        code: f.code,
    }
}

/// The header and value of a record in a local file, as the client library's
/// `ltdb_fetch` reads them: a missing record has an empty value and a header
/// with no dmaster.
fn ltdb_fetch(tdb: &Tdb, key: &[u8]) -> Result<(LtdbHeader, Vec<u8>), i32> {
    match tdb.fetch(key) {
        Ok(None) => Ok((LtdbHeader::new(0, UNKNOWN_PNN), Vec::new())),
        Ok(Some(stored)) => {
            let header = LtdbHeader::from_bytes(&stored).map_err(|_| EIO)?;
            Ok((header, stored[HEADER_LEN..].to_vec()))
        }
        Err(_) => Err(EIO),
    }
}

/// An open transaction on one persistent database, holding its g_lock.
struct Transaction<'a> {
    db: &'a DbRef,
    tdb: &'a Tdb,
    g_lock: DbRef,
    g_lock_tdb: Tdb,
    lock_key: Vec<u8>,
    me: ServerId,
    readonly: bool,
    /// Writes so far: key, header, value (a later one for a key wins).
    writes: Vec<(Vec<u8>, LtdbHeader, Vec<u8>)>,
}

impl<'a> Transaction<'a> {
    /// Attaches `g_lock.tdb` and takes the database's g_lock (shared for a
    /// read-only transaction).
    fn start(
        ctx: &mut Ctx<'_>,
        db: &'a DbRef,
        tdb: &'a Tdb,
        readonly: bool,
    ) -> Result<Self, Failure> {
        let (g_lock_id, g_lock_tdb) = open_db(ctx, G_LOCK_DB, 0).map_err(|e| {
            let (_, message, code) = e.output();
            with_line(
                Failure { message, code },
                format!("transaction_start: {} attach g_lock.tdb failed", db.name),
            )
        })?;
        let pid = u64::from(std::process::id());
        let txn = Self {
            db,
            tdb,
            g_lock: DbRef {
                id: g_lock_id,
                name: G_LOCK_DB.to_owned(),
                flags: 0,
            },
            g_lock_tdb,
            lock_key: format!("transaction_db_0x{:08x}\0", db.id).into_bytes(),
            me: ServerId {
                pid,
                task_id: db.id,
                vnn: ctx.own(),
                unique_id: (u64::from(db.id) << 32) | pid,
            },
            readonly,
            writes: Vec::new(),
        };
        txn.lock(ctx).map_err(|f| {
            let code = f.code;
            with_line(
                f,
                format!(
                    "transaction_start: {} g_lock lock failed, ret={code}",
                    db.name
                ),
            )
        })?;
        Ok(txn)
    }

    /// The lock key as the library prints it (without its NUL).
    fn lock_name(&self) -> String {
        String::from_utf8_lossy(&self.lock_key[..self.lock_key.len() - 1]).into_owned()
    }

    fn fetch_lock_record(&self, ctx: &mut Ctx<'_>, what: &str) -> Result<Locked<'_>, Failure> {
        fetch_lock(ctx, &self.g_lock, &self.g_lock_tdb, &self.lock_key, false)
            .map_err(|f| with_line(f, format!("{what}: {} fetch lock failed", self.lock_name())))
    }

    fn locks_of(&self, locked: &Locked<'_>, what: &str) -> Result<Vec<GLock>, Failure> {
        parse_locks(&locked.value).ok_or_else(|| Failure {
            message: format!("{what}: {} invalid lock data\n", self.lock_name()),
            code: EPROTO,
        })
    }

    /// Adds us to the lock list once no live holder conflicts; holders whose
    /// process is gone are dropped from it.
    fn lock(&self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        let mine = if self.readonly {
            G_LOCK_READ
        } else {
            G_LOCK_WRITE
        };
        loop {
            let locked = self.fetch_lock_record(ctx, "g_lock_lock")?;
            let mut locks = self.locks_of(&locked, "g_lock_lock")?;
            let mut holder_alive = false;
            let mut i = 0;
            while i < locks.len() {
                let other = locks[i];
                if other.sid == self.me {
                    return Err(Failure {
                        message: format!("g_lock_lock: {} deadlock\n", self.lock_name()),
                        code: EDEADLK,
                    });
                }
                if other.kind == G_LOCK_READ && mine == G_LOCK_READ {
                    i += 1;
                    continue;
                }
                let pid = other.sid.pid as i32;
                let (status, _) = ctx
                    .client
                    .control(other.sid.vnn, Opcode::PROCESS_EXISTS, 0, &pid.to_le_bytes())
                    .map_err(|e| Failure {
                        message: format!(
                            "g_lock_lock: {} PROCESS_EXISTS failed, ret={}\n",
                            self.lock_name(),
                            e.exit_code()
                        ),
                        code: e.exit_code(),
                    })?;
                if status == 0 {
                    holder_alive = true;
                    break;
                }
                locks.swap_remove(i);
                locked.store(&self.g_lock.name, &encode_locks(&locks))?;
            }
            if holder_alive {
                // Let go of the record so the holder can release it, then look
                // again shortly, as the library does.
                drop(locked);
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            locks.push(GLock {
                kind: mine,
                sid: self.me,
            });
            return locked.store(&self.g_lock.name, &encode_locks(&locks));
        }
    }

    /// Takes us out of the lock list; the last holder deletes the record.
    fn unlock(&self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        let locked = self.fetch_lock_record(ctx, "g_lock_unlock")?;
        let mut locks = self.locks_of(&locked, "g_lock_unlock")?;
        if let Some(i) = locks.iter().position(|l| l.sid == self.me) {
            locks.swap_remove(i);
        }
        if !locks.is_empty() {
            return locked.store(&self.g_lock.name, &encode_locks(&locks));
        }
        delete_record(ctx, &self.g_lock, &locked).map_err(|f| {
            let code = f.code;
            with_line(
                f,
                format!(
                    "g_lock_unlock {} delete record failed, ret={code}",
                    self.lock_name()
                ),
            )
        })
    }

    /// Drops our transaction lock; a failure gets `step`'s line, as the library's.
    fn unlock_as(&self, ctx: &mut Ctx<'_>, step: &str) -> Result<(), Failure> {
        self.unlock(ctx).map_err(|f| {
            let code = f.code;
            let line = format!("{step}: {} g_lock unlock failed, ret={code}", self.db.name);
            with_line(f, line)
        })
    }

    /// Ends the transaction without writing.
    fn cancel(&self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        self.unlock_as(ctx, "transaction_cancel")
    }

    fn pending(&self, key: &[u8]) -> Option<(LtdbHeader, Vec<u8>)> {
        self.writes
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, h, v)| (*h, v.clone()))
    }

    /// The value of `key`: the transaction's own write, else the local file's.
    fn fetch(&self, key: &[u8]) -> Result<Vec<u8>, i32> {
        match self.pending(key) {
            Some((_, value)) => Ok(value),
            None => ltdb_fetch(self.tdb, key).map(|(_, value)| value),
        }
    }

    /// Adds a write of `value` (empty: a delete) unless the value is already so.
    fn store(&mut self, own: u32, key: &[u8], value: &[u8]) -> Result<(), i32> {
        if self.readonly {
            return Err(EINVAL);
        }
        let (mut header, old) = match self.pending(key) {
            Some(found) => found,
            None => ltdb_fetch(self.tdb, key)?,
        };
        if old == value {
            return Ok(());
        }
        header.dmaster = own;
        header.rsn += 1;
        self.writes.push((key.to_vec(), header, value.to_vec()));
        Ok(())
    }

    /// The database's sequence number in the local file (missing: 0).
    fn seqnum(&self) -> Result<u64, Failure> {
        let (_, value) = ltdb_fetch(self.tdb, SEQNUM_KEY).map_err(|code| Failure {
            message: format!(
                "transaction_commit: {} seqnum fetch failed, ret={code}\n",
                self.db.name
            ),
            code,
        })?;
        match value.len() {
            0 => Ok(0),
            8 => Ok(u64::from_le_bytes(value.try_into().unwrap_or([0; 8]))),
            _ => Err(Failure::code(EINVAL)),
        }
    }

    /// Whether the local file holds every value this transaction wrote (the
    /// sequence number aside).
    fn writes_are_stored(&self) -> Result<bool, Failure> {
        for (key, _, value) in &self.writes {
            if key.as_slice() == SEQNUM_KEY {
                continue;
            }
            let (_, stored) = ltdb_fetch(self.tdb, key).map_err(Failure::code)?;
            if stored != *value {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Commits the writes on every node (nothing written: just unlocks).
    fn commit(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        if self.readonly || self.writes.is_empty() {
            return self.cancel(ctx);
        }
        let before = self.seqnum()?;
        let own = ctx.own();
        self.store(own, SEQNUM_KEY, &(before + 1).to_le_bytes())
            .map_err(Failure::code)?;
        let buffer = MarshallBuffer {
            db_id: self.db.id,
            records: self
                .writes
                .iter()
                .map(|(key, header, value)| {
                    let mut data = header.to_bytes().to_vec();
                    data.extend_from_slice(value);
                    RecData {
                        reqid: 0,
                        key: key.clone(),
                        data,
                    }
                })
                .collect(),
        }
        .encode();
        loop {
            let (status, _) = ctx
                .client
                .control(own, Opcode::TRANS3_COMMIT, 0, &buffer)
                .map_err(|e| Failure {
                    message: format!(
                        "transaction_commit: {} TRANS3_COMMIT failed, ret={}\n",
                        self.db.name,
                        e.exit_code()
                    ),
                    code: e.exit_code(),
                })?;
            if status == 0 {
                break;
            }
            // Refused (a recovery, most likely): done if a recovery carried it
            // everywhere, else again while nothing else committed meanwhile.
            // "Carried" needs our own writes in the file, not just the next
            // sequence number: a node that had just come back read `before` from
            // a copy one commit behind, and the recovery that refused us then
            // brought in that other commit (the soak test lost a write so, where
            // 4.17's client library would report success too).
            let now = self.seqnum()?;
            if now == before + 1 && self.writes_are_stored()? {
                break;
            }
            if now == before + 1 {
                return Err(Failure {
                    message: format!(
                        "transaction_commit: {} another transaction committed 0x{now:x} meanwhile; \
                         nothing of this one was stored\n",
                        self.db.name
                    ),
                    code: EIO,
                });
            }
            if now != before {
                return Err(Failure {
                    message: format!(
                        "transaction_commit: {} seqnum mismatch 0x{now:x} != 0x{before:x} + 1\n",
                        self.db.name
                    ),
                    code: EIO,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.unlock_as(ctx, "transaction_commit")
    }
}

/// A failure printed as the library's lines, then the command's.
fn failed(f: Failure, line: String) -> CommandError {
    CommandError::Failed {
        stdout: String::new(),
        stderr: format!("{}{line}\n", f.message),
        code: f.code,
    }
}

/// After a failed step inside a transaction: the command's line, then the
/// transaction is cancelled (what that logs follows).
fn failed_then_cancel(
    ctx: &mut Ctx<'_>,
    txn: &Transaction<'_>,
    before: String,
    f: Failure,
    line: String,
) -> CommandError {
    let mut stderr = format!("{before}{}{line}\n", f.message);
    if let Err(c) = txn.cancel(ctx) {
        stderr.push_str(&c.message);
    }
    CommandError::Failed {
        stdout: String::new(),
        stderr,
        code: f.code,
    }
}

/// The database `arg` names, which must be persistent or replicated.
fn transactional_db(ctx: &mut Ctx<'_>, arg: &str) -> Result<DbRef, CommandError> {
    let db = find_db(ctx, arg)?;
    if db.flags & (PERSISTENT | REPLICATED) == 0 {
        return Err(CommandError::stderr(format!(
            "Transactions not supported on DB {}",
            db.name
        )));
    }
    Ok(db)
}

/// Attaches the database as the client library does; a failure adds the
/// command's line.
fn attach(ctx: &mut Ctx<'_>, db: &DbRef) -> Result<Tdb, CommandError> {
    open_db(ctx, &db.name, db.flags)
        .map(|(_, tdb)| tdb)
        .map_err(|e| {
            let (_, stderr, code) = e.output();
            CommandError::Failed {
                stdout: String::new(),
                stderr: format!("{stderr}Failed to attach to DB {}\n", db.name),
                code,
            }
        })
}

/// Starts a transaction, with the command's line on failure.
fn start<'a>(
    ctx: &mut Ctx<'_>,
    db: &'a DbRef,
    tdb: &'a Tdb,
    readonly: bool,
) -> Result<Transaction<'a>, CommandError> {
    Transaction::start(ctx, db, tdb, readonly)
        .map_err(|f| failed(f, format!("Failed to start transaction on db {}", db.name)))
}

/// Commits, with the command's line on failure (and the cancel after it).
fn commit(
    ctx: &mut Ctx<'_>,
    txn: &mut Transaction<'_>,
    before: String,
) -> Result<(), CommandError> {
    match txn.commit(ctx) {
        Ok(()) => Ok(()),
        Err(f) => {
            let line = format!("Failed to commit transaction on db {}", txn.db.name);
            Err(failed_then_cancel(ctx, txn, before, f, line))
        }
    }
}

/// `ctdb pfetch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersistentValue {
    /// The database.
    pub db: String,
    /// The key, hex.
    pub key: String,
    /// The value's length (0 for a missing record).
    pub size: usize,
    /// The value, hex.
    pub data: String,
    #[serde(skip)]
    raw: Vec<u8>,
}

impl Report for PersistentValue {
    fn text(&self, _style: &Style) -> String {
        // 4.17 prints the value with `%.*s`: it stops at the first NUL.
        let shown = self.raw.split(|&b| b == 0).next().unwrap_or_default();
        format!("{}\n", String::from_utf8_lossy(shown))
    }
    json_via_serde!();
}

/// `ctdb pfetch DB KEY`: the value in this node's copy, read under a shared
/// g_lock (a missing record prints an empty line).
pub fn pfetch(ctx: &mut Ctx<'_>, args: &[String]) -> Result<PersistentValue, CommandError> {
    let [db_arg, key_arg] = args else {
        return Err(CommandError::Usage("pfetch"));
    };
    let db = transactional_db(ctx, db_arg)?;
    let tdb = attach(ctx, &db)?;
    let key = parse(key_arg, "key")?;
    let txn = start(ctx, &db, &tdb, true)?;
    let value = match txn.fetch(&key) {
        Ok(value) => value,
        Err(code) => {
            let line = format!("Failed to read record for key {key_arg}");
            return Err(failed_then_cancel(
                ctx,
                &txn,
                String::new(),
                Failure::code(code),
                line,
            ));
        }
    };
    // Only a read: a failed unlock changes nothing the command reports.
    let _ = txn.cancel(ctx);
    Ok(PersistentValue {
        db: db.name.clone(),
        key: hex(&key),
        size: value.len(),
        data: hex(&value),
        raw: value,
    })
}

/// `ctdb pstore DB KEY VALUE`: one write, committed on every node.
pub fn pstore(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Done, CommandError> {
    let [db_arg, key_arg, value_arg] = args else {
        return Err(CommandError::Usage("pstore"));
    };
    write_one(ctx, db_arg, key_arg, Some(value_arg))
}

/// `ctdb pdelete DB KEY`: one delete (an empty value), committed on every node.
pub fn pdelete(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Done, CommandError> {
    let [db_arg, key_arg] = args else {
        return Err(CommandError::Usage("pdelete"));
    };
    write_one(ctx, db_arg, key_arg, None)
}

fn write_one(
    ctx: &mut Ctx<'_>,
    db_arg: &str,
    key_arg: &str,
    value_arg: Option<&String>,
) -> Result<Done, CommandError> {
    let db = transactional_db(ctx, db_arg)?;
    let tdb = attach(ctx, &db)?;
    let key = parse(key_arg, "key")?;
    let value = match value_arg {
        Some(text) => parse(text, "value")?,
        None => Vec::new(),
    };
    let mut txn = start(ctx, &db, &tdb, false)?;
    let own = ctx.own();
    if let Err(code) = txn.store(own, &key, &value) {
        let line = if value_arg.is_some() {
            format!("Failed to store record for key {key_arg}")
        } else {
            format!("Failed to delete record for key {key_arg}")
        };
        return Err(failed_then_cancel(
            ctx,
            &txn,
            String::new(),
            Failure::code(code),
            line,
        ));
    }
    commit(ctx, &mut txn, String::new())?;
    Ok(Done::default())
}

/// `ctdb ptrans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ptrans {
    /// The database.
    pub db: String,
    /// Lines that gave a key and a value.
    pub records: usize,
    /// What was said about lines that were skipped.
    #[serde(skip)]
    pub warnings: String,
}

impl Report for Ptrans {
    fn text(&self, _style: &Style) -> String {
        String::new()
    }
    json_via_serde!();
    fn stderr(&self) -> String {
        self.warnings.clone()
    }
}

/// The input as 4.17 reads it: pieces up to and including a newline, at most
/// [`PTRANS_LINE_MAX`] − 1 bytes each, each seen as a C string (to its first NUL).
fn input_lines(input: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let limit = rest.len().min(PTRANS_LINE_MAX - 1);
        let end = rest[..limit]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(limit, |i| i + 1);
        let piece = &rest[..end];
        let c_string = piece.split(|&b| b == 0).next().unwrap_or_default();
        lines.push(c_string);
        rest = &rest[end..];
    }
    lines
}

/// One quoted string of a `ptrans` line: `None` for `""`, then what follows it.
/// The error is the message for stderr.
fn quoted(rest: &[u8]) -> Result<(Option<Vec<u8>>, &[u8]), String> {
    let shown = || String::from_utf8_lossy(rest).into_owned();
    let blanks = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let Some(inner) = rest[blanks..].strip_prefix(b"\"") else {
        return Err(format!("Unsupported input format in {}\n", shown()));
    };
    let Some(len) = inner.iter().position(|&b| b == b'"') else {
        return Err(format!("Unmatched \" in input {}\n", shown()));
    };
    let data = if len > 0 {
        Some(bytes_to_data(inner, len).map_err(|reason| format!("{reason}\n"))?)
    } else {
        None
    };
    Ok((data, &inner[len + 1..]))
}

/// A line's key and value; `None` when the line is skipped (after saying why,
/// into `warnings`, where 4.17 says something).
fn key_value(line: &[u8], warnings: &mut String) -> Option<(Vec<u8>, Vec<u8>)> {
    let (key, rest) = match quoted(line) {
        Ok((Some(key), rest)) => (key, rest),
        Ok((None, _)) => return None,
        Err(message) => {
            warnings.push_str(&message);
            return None;
        }
    };
    match quoted(rest) {
        Ok((value, _)) => Some((key, value.unwrap_or_default())),
        Err(message) => {
            warnings.push_str(&message);
            None
        }
    }
}

/// `ctdb ptrans DB [FILE]`: lines of `"key" "value"` (text, or `0x` and hex,
/// inside the quotes; an empty value deletes) from FILE or stdin, all committed
/// in one transaction. Lines that do not parse are skipped.
pub fn ptrans(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Ptrans, CommandError> {
    let (db_arg, file) = match args {
        [db] => (db, None),
        [db, file] => (db, Some(file)),
        _ => return Err(CommandError::Usage("ptrans")),
    };
    let db = transactional_db(ctx, db_arg)?;
    let mut source: Box<dyn Read> = match file {
        Some(path) => Box::new(
            std::fs::File::open(path)
                .map_err(|_| CommandError::stderr(format!("Failed to open file {path}")))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let tdb = attach(ctx, &db)?;
    let mut txn = start(ctx, &db, &tdb, false)?;
    let mut input = Vec::new();
    // An unreadable input ends it, as end of file does for `fgets`.
    let _ = source.read_to_end(&mut input);
    let own = ctx.own();
    let mut warnings = String::new();
    let mut records = 0;
    for line in input_lines(&input) {
        let Some((key, value)) = key_value(line, &mut warnings) else {
            continue;
        };
        // "0x" alone is an empty key, skipped.
        if key.is_empty() {
            continue;
        }
        if let Err(code) = txn.store(own, &key, &value) {
            return Err(failed_then_cancel(
                ctx,
                &txn,
                warnings,
                Failure::code(code),
                "Failed to store record".to_owned(),
            ));
        }
        records += 1;
    }
    commit(ctx, &mut txn, warnings.clone())?;
    Ok(Ptrans {
        db: db.name,
        records,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lists_round_trip_and_refuse_unknown_types() {
        let lock = GLock {
            kind: G_LOCK_WRITE,
            sid: ServerId {
                pid: 4242,
                task_id: 0x7132_c184,
                vnn: 2,
                unique_id: (0x7132_c184 << 32) | 4242,
            },
        };
        let bytes = encode_locks(&[lock, lock]);
        assert_eq!(bytes.len(), 64);
        assert_eq!(parse_locks(&bytes), Some(vec![lock, lock]));
        // A trailing partial entry is ignored; an empty record is no lock.
        assert_eq!(parse_locks(&bytes[..40]), Some(vec![lock]));
        assert_eq!(parse_locks(&[]), Some(vec![]));
        let mut bad = bytes.clone();
        bad[0] = 2;
        assert_eq!(parse_locks(&bad), None);
    }

    #[test]
    fn ptrans_lines_parse_like_4_17() {
        let mut warnings = String::new();
        assert_eq!(
            key_value(b" \"k1\"\t\"v 1\"\n", &mut warnings),
            Some((b"k1".to_vec(), b"v 1".to_vec()))
        );
        assert_eq!(
            key_value(b"\"0x0102\" \"0xff\"\n", &mut warnings),
            Some((vec![1, 2], vec![0xff]))
        );
        // An empty value is a delete.
        assert_eq!(
            key_value(b"\"k\" \"\"\n", &mut warnings),
            Some((b"k".to_vec(), Vec::new()))
        );
        assert!(warnings.is_empty());
        // An empty key skips the line without a word.
        assert_eq!(key_value(b"\"\" \"v\"\n", &mut warnings), None);
        assert!(warnings.is_empty());
        assert_eq!(key_value(b"k v\n", &mut warnings), None);
        assert_eq!(key_value(b"\"k\n", &mut warnings), None);
        assert_eq!(key_value(b"\"k\"\n", &mut warnings), None);
        assert_eq!(key_value(b"\"0x123\" \"v\"\n", &mut warnings), None);
        assert_eq!(
            warnings,
            "Unsupported input format in k v\n\n\
             Unmatched \" in input \"k\n\n\
             Unsupported input format in \n\n\
             Key (123\" \"v\"\n) contains odd number of hex digits\n"
        );
    }

    #[test]
    fn long_lines_come_in_fgets_pieces() {
        let mut input = vec![b'a'; 1030];
        input.push(b'\n');
        input.extend_from_slice(b"x\0y\nlast");
        let lines = input_lines(&input);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].len(), 1023);
        assert_eq!(lines[1].len(), 8);
        assert_eq!(lines[2], b"x");
        assert_eq!(lines[3], b"last");
    }
}
