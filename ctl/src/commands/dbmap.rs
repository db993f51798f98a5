//! `getdbmap`: the attached databases with name, path, flags and health
//! (reference §5.2.2, §6.4, §9.11).

use ctdbd::protocol::dbctl::db_flags::{PERSISTENT, READONLY, REPLICATED, STICKY};
use ctdbd::protocol::dbctl::DbMap as DbIdMap;
use ctdbd::protocol::wire::c_string;
use ctdbd::protocol::Opcode;
use serde::Serialize;

use super::{json_via_serde, CommandError, Ctx, Report, Style};
use crate::client::bad_reply;

/// One attached database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Database {
    /// Database id.
    pub id: u32,
    /// Name, e.g. `locking.tdb`.
    pub name: String,
    /// Local file path.
    pub path: String,
    /// Persistent database.
    pub persistent: bool,
    /// Sticky records enabled.
    pub sticky: bool,
    /// Read-only records enabled.
    pub readonly: bool,
    /// Replicated database.
    pub replicated: bool,
    /// DB_GET_HEALTH returned a reason.
    pub unhealthy: bool,
}

/// `ctdb getdbmap`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbMap {
    /// The databases, in the daemon's order.
    pub databases: Vec<Database>,
}

impl Report for DbMap {
    fn text(&self, style: &Style) -> String {
        let bit = |b: bool| if b { "1" } else { "0" };
        if let Some(sep) = &style.machine {
            let mut out = Style::row(
                sep,
                [
                    "ID",
                    "Name",
                    "Path",
                    "Persistent",
                    "Sticky",
                    "Unhealthy",
                    "Readonly",
                    "Replicated",
                ],
            );
            for db in &self.databases {
                out.push_str(&Style::row(
                    sep,
                    [
                        format!("0x{:08X}", db.id).as_str(),
                        &db.name,
                        &db.path,
                        bit(db.persistent),
                        bit(db.sticky),
                        bit(db.unhealthy),
                        bit(db.readonly),
                        bit(db.replicated),
                    ],
                ));
            }
            return out;
        }
        let mut out = format!("Number of databases:{}\n", self.databases.len());
        for db in &self.databases {
            let flag = |b: bool, name: &str| if b { format!(" {name}") } else { String::new() };
            out.push_str(&format!(
                "dbid:0x{:08x} name:{} path:{}{}{}{}{}{}\n",
                db.id,
                db.name,
                db.path,
                flag(db.persistent, "PERSISTENT"),
                flag(db.sticky, "STICKY"),
                flag(db.readonly, "READONLY"),
                flag(db.replicated, "REPLICATED"),
                flag(db.unhealthy, "UNHEALTHY"),
            ));
        }
        out
    }
    json_via_serde!();
}

/// `ctdb getdbmap`: GET_DBMAP, then GET_DBNAME, GETDBPATH and DB_GET_HEALTH per
/// database.
pub fn getdbmap(ctx: &mut Ctx<'_>, args: &[String]) -> Result<DbMap, CommandError> {
    if !args.is_empty() {
        return Err(CommandError::Usage("getdbmap"));
    }
    let data = ctx.client.control_ok(ctx.cmd, Opcode::GET_DBMAP, 0, &[])?;
    let entries = DbIdMap::decode(&data).map_err(|_| bad_reply(Opcode::GET_DBMAP, ctx.cmd))?;
    let mut databases = Vec::with_capacity(entries.dbs.len());
    for entry in entries.dbs {
        let (id, flags) = (entry.db_id, entry.flags);
        let key = id.to_le_bytes();
        let name = c_string(
            &ctx.client
                .control_ok(ctx.cmd, Opcode::GET_DBNAME, 0, &key)?,
        );
        let path = c_string(&ctx.client.control_ok(ctx.cmd, Opcode::GETDBPATH, 0, &key)?);
        // Any reply bytes at all (even a lone NUL) mean unhealthy (§6.4).
        let health = ctx
            .client
            .control_ok(ctx.cmd, Opcode::DB_GET_HEALTH, 0, &key)?;
        databases.push(Database {
            id,
            name,
            path,
            persistent: flags & PERSISTENT != 0,
            sticky: flags & STICKY != 0,
            readonly: flags & READONLY != 0,
            replicated: flags & REPLICATED != 0,
            unhealthy: !health.is_empty(),
        });
    }
    Ok(DbMap { databases })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DbMap {
        let db = |id, name: &str, p, ro, rep, unh| Database {
            id,
            name: name.into(),
            path: format!("/var/lib/ctdb/volatile/{name}.0"),
            persistent: p,
            sticky: false,
            readonly: ro,
            replicated: rep,
            unhealthy: unh,
        };
        DbMap {
            databases: vec![
                db(0x7a19d84d, "locking.tdb", false, true, false, false),
                db(0x7132c184, "secrets.tdb", true, false, false, true),
                db(0xbc57b384, "ctdb-ip.tdb", false, false, true, false),
            ],
        }
    }

    #[test]
    fn plain_matches_observed() {
        let expected = "\
Number of databases:3
dbid:0x7a19d84d name:locking.tdb path:/var/lib/ctdb/volatile/locking.tdb.0 READONLY
dbid:0x7132c184 name:secrets.tdb path:/var/lib/ctdb/volatile/secrets.tdb.0 PERSISTENT UNHEALTHY
dbid:0xbc57b384 name:ctdb-ip.tdb path:/var/lib/ctdb/volatile/ctdb-ip.tdb.0 REPLICATED
";
        assert_eq!(sample().text(&Style::default()), expected);
    }

    #[test]
    fn machine_matches_observed() {
        let expected = "\
|ID|Name|Path|Persistent|Sticky|Unhealthy|Readonly|Replicated|
|0x7A19D84D|locking.tdb|/var/lib/ctdb/volatile/locking.tdb.0|0|0|0|1|0|
|0x7132C184|secrets.tdb|/var/lib/ctdb/volatile/secrets.tdb.0|1|0|1|0|0|
|0xBC57B384|ctdb-ip.tdb|/var/lib/ctdb/volatile/ctdb-ip.tdb.0|0|0|0|0|1|
";
        let style = Style {
            machine: Some("|".into()),
            verbose: false,
        };
        assert_eq!(sample().text(&style), expected);
    }
}
