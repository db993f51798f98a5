//! `readkey`, `writekey` and `deletekey`: one record of a volatile database,
//! reached as a client does it (samba §3): take the record's chain lock in the
//! local file; if this node is not its dmaster, let go and ask the daemon to
//! migrate it here (REQ_CALL with IMMEDIATE_MIGRATION), then try again.

use ctdbd::db::ltdb::{flags as rec_flags, LtdbHeader};
use ctdbd::db::tdb::{StoreMode, Tdb};
use ctdbd::protocol::call::{call_flags, call_id, ReqCall};
use ctdbd::protocol::dbctl::db_flags::{PERSISTENT, REPLICATED};
use ctdbd::protocol::dbctl::ScheduleForDeletion;
use ctdbd::protocol::Opcode;
use serde::Serialize;

use super::db::{find_db, hex, open_db, str_to_data, DbRef};
use super::node::Done;
use super::{json_via_serde, CommandError, Ctx, Report, Style};

const EIO: i32 = 5;
const EINVAL: i32 = 22;
const EMSGSIZE: i32 = 90;

/// A record held under its chain lock; the lock goes with the value.
pub(super) struct Locked<'a> {
    tdb: &'a Tdb,
    key: Vec<u8>,
    header: LtdbHeader,
    /// The value after the ltdb header.
    pub(super) value: Vec<u8>,
    /// Held as a read-only copy (delegation): may not be changed.
    readonly: bool,
}

impl Locked<'_> {
    /// Stores `value` behind the record's header, as the client library's
    /// store does for a record it holds.
    pub(super) fn store(&self, db_name: &str, value: &[u8]) -> Result<(), Failure> {
        let mut stored = self.header.to_bytes().to_vec();
        stored.extend_from_slice(value);
        self.tdb
            .store(&self.key, &stored, StoreMode::Replace)
            .map_err(|e| Failure {
                message: format!("store_record: {db_name} tdb_storev failed, {e}\n"),
                code: EIO,
            })
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Nothing more can be done if unlocking fails: the handle closes next.
        let _ = self.tdb.chainunlock(&self.key);
    }
}

/// A failure with the library's message (may be empty) and the exit code.
pub(super) struct Failure {
    /// What the client library logs, newline-terminated (may be empty).
    pub(super) message: String,
    /// The exit code.
    pub(super) code: i32,
}

impl Failure {
    pub(super) fn code(code: i32) -> Self {
        Self {
            message: String::new(),
            code,
        }
    }
}

/// The client library's fetch-lock: the record, locked, with this node as its
/// dmaster (or, for `readonly`, any node with a read-only copy here).
pub(super) fn fetch_lock<'a>(
    ctx: &mut Ctx<'_>,
    db: &DbRef,
    tdb: &'a Tdb,
    key: &[u8],
    readonly: bool,
) -> Result<Locked<'a>, Failure> {
    let own = ctx.own();
    loop {
        tdb.chainlock(key).map_err(|e| Failure {
            message: format!("fetch_lock: {} tdb_chainlock failed, {e}\n", db.name),
            code: EIO,
        })?;
        let stored = match tdb.fetch(key) {
            Ok(stored) => stored,
            Err(_) => {
                let _ = tdb.chainunlock(key);
                return Err(Failure::code(EIO));
            }
        };
        if let Some(stored) = stored {
            let Ok(header) = LtdbHeader::from_bytes(&stored) else {
                let _ = tdb.chainunlock(key);
                return Err(Failure::code(EMSGSIZE));
            };
            let delegated =
                header.flags & (rec_flags::RO_HAVE_READONLY | rec_flags::RO_HAVE_DELEGATIONS) != 0;
            let usable = if readonly {
                header.dmaster == own || delegated
            } else {
                header.dmaster == own && !header.has(rec_flags::RO_HAVE_DELEGATIONS)
            };
            if usable {
                return Ok(Locked {
                    tdb,
                    key: key.to_vec(),
                    value: stored[ctdbd::db::ltdb::HEADER_LEN..].to_vec(),
                    header,
                    readonly: delegated,
                });
            }
        }
        let _ = tdb.chainunlock(key);
        let mut flags = call_flags::IMMEDIATE_MIGRATION;
        if readonly {
            flags |= call_flags::WANT_READONLY;
        }
        let status = ctx
            .client
            .call(ReqCall {
                flags,
                db_id: db.id,
                callid: call_id::NULL_FUNC,
                hopcount: 0,
                key: key.to_vec(),
                calldata: Vec::new(),
            })
            .map_err(|e| Failure {
                message: format!(
                    "fetch_lock: {} CALL failed, ret={}\n",
                    db.name,
                    e.exit_code()
                ),
                code: e.exit_code(),
            })?;
        if status != 0 {
            return Err(Failure::code(EIO));
        }
    }
}

/// The steps every record command starts with: the database (volatile only),
/// attached, and the key parsed.
fn prepare(
    ctx: &mut Ctx<'_>,
    db_arg: &str,
    key: &str,
) -> Result<(DbRef, Tdb, Vec<u8>), CommandError> {
    let db = find_db(ctx, db_arg)?;
    if db.flags & (PERSISTENT | REPLICATED) != 0 {
        return Err(CommandError::stderr(format!(
            "DB {} is not a volatile database",
            db.name
        )));
    }
    let (_, tdb) = open_db(ctx, &db.name, db.flags).map_err(|e| match e {
        CommandError::Failed { stderr, code, .. } => CommandError::Failed {
            stdout: String::new(),
            stderr: format!("{stderr}Failed to attach to DB {}\n", db.name),
            code,
        },
        other => other,
    })?;
    let key = parse(key, "key")?;
    Ok((db, tdb, key))
}

pub(super) fn parse(text: &str, what: &str) -> Result<Vec<u8>, CommandError> {
    str_to_data(text).map_err(|reason| CommandError::Failed {
        stdout: String::new(),
        stderr: format!("{reason}\nFailed to parse {what} {text}\n"),
        code: EINVAL,
    })
}

/// A failure of the record step: the library's line, then the command's.
fn failed(f: Failure, line: String) -> CommandError {
    CommandError::Failed {
        stdout: String::new(),
        stderr: format!("{}{line}\n", f.message),
        code: f.code,
    }
}

/// `ctdb readkey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key, hex.
    pub key: String,
    /// The value's length.
    pub size: usize,
    /// The value, hex.
    pub data: String,
    #[serde(skip)]
    raw: Vec<u8>,
}

impl Report for KeyValue {
    fn text(&self, _style: &Style) -> String {
        // 4.17 prints the value with `%.*s`: it stops at the first NUL.
        let shown = self.raw.split(|&b| b == 0).next().unwrap_or_default();
        format!(
            "Data: size:{} ptr:[{}]\n",
            self.size,
            String::from_utf8_lossy(shown)
        )
    }
    json_via_serde!();
}

/// `ctdb readkey DB KEY [readonly]`: the record's value, migrated here first.
pub fn readkey(ctx: &mut Ctx<'_>, args: &[String]) -> Result<KeyValue, CommandError> {
    let (db_arg, key_arg, readonly) = match args {
        [d, k] => (d, k, false),
        [d, k, r] if r == "readonly" => (d, k, true),
        _ => return Err(CommandError::Usage("readkey")),
    };
    let (db, tdb, key) = prepare(ctx, db_arg, key_arg)?;
    let locked = fetch_lock(ctx, &db, &tdb, &key, readonly)
        .map_err(|f| failed(f, format!("Failed to read record for key {key_arg}")))?;
    Ok(KeyValue {
        key: hex(&key),
        size: locked.value.len(),
        data: hex(&locked.value),
        raw: locked.value.clone(),
    })
}

/// `ctdb writekey DB KEY VALUE`: stores VALUE behind the record's header, as its
/// dmaster.
pub fn writekey(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Done, CommandError> {
    let [db_arg, key_arg, value_arg] = args else {
        return Err(CommandError::Usage("writekey"));
    };
    let (db, tdb, key) = prepare(ctx, db_arg, key_arg)?;
    let value = parse(value_arg, "value")?;
    // 4.17 names the database, not the key, in this one message.
    let locked = fetch_lock(ctx, &db, &tdb, &key, false)
        .map_err(|f| failed(f, format!("Failed to lock record for key {db_arg}")))?;
    if locked.readonly {
        return Err(failed(
            Failure::code(EINVAL),
            format!("Failed to store record for key {key_arg}"),
        ));
    }
    if locked.value == value {
        return Ok(Done::default());
    }
    locked
        .store(&db.name, &value)
        .map_err(|f| failed(f, format!("Failed to store record for key {key_arg}")))?;
    Ok(Done::default())
}

/// `ctdb deletekey DB KEY`: leaves an empty record (header only) and asks the
/// daemon to schedule it for deletion.
pub fn deletekey(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Done, CommandError> {
    let [db_arg, key_arg] = args else {
        return Err(CommandError::Usage("deletekey"));
    };
    let (db, tdb, key) = prepare(ctx, db_arg, key_arg)?;
    let locked = fetch_lock(ctx, &db, &tdb, &key, false)
        .map_err(|f| failed(f, format!("Failed to fetch record for key {key_arg}")))?;
    delete_record(ctx, &db, &locked)
        .map_err(|f| failed(f, format!("Failed to delete record for key {key_arg}")))?;
    Ok(Done::default())
}

/// The client library's delete of a record it holds: an empty record (header
/// only) in the local file, then SCHEDULE_FOR_DELETION to the local daemon.
pub(super) fn delete_record(
    ctx: &mut Ctx<'_>,
    db: &DbRef,
    locked: &Locked<'_>,
) -> Result<(), Failure> {
    if locked.readonly {
        return Err(Failure {
            message: format!("fetch_lock delete: {} readonly record\n", db.name),
            code: EINVAL,
        });
    }
    let header = locked.header.to_bytes();
    locked
        .tdb
        .store(&locked.key, &header, StoreMode::Replace)
        .map_err(|e| Failure {
            message: format!("fetch_lock delete: {} tdb_store failed, {e}\n", db.name),
            code: EIO,
        })?;
    let request = ScheduleForDeletion {
        db_id: db.id,
        header,
        key: locked.key.clone(),
    }
    .encode();
    let own = ctx.own();
    match ctx
        .client
        .control(own, Opcode::SCHEDULE_FOR_DELETION, 0, &request)
    {
        Ok(_) => Ok(()),
        Err(e) => Err(Failure {
            message: format!(
                "delete_record: {} SCHEDULE_FOR_DELETION failed, ret={}\n",
                db.name,
                e.exit_code()
            ),
            code: e.exit_code(),
        }),
    }
}
