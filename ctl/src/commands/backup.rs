//! `backupdb`, `restoredb` and `wipedb`: a database to a file and back, and
//! emptied, on every active node at once (samba §7.2–7.3 for the controls).
//!
//! `backupdb` reads the local TDB file directly, as 4.17 does, into the file
//! layout `dumpdbbackup` reads ([`super::db::BackupHeader`], then record buffers).
//! `restoredb` and `wipedb` drive the same steps a recovery does, from the tool:
//! freeze the database on every active node, start a transaction tagged with the
//! generation, wipe, (push the file's records), mark healthy, commit, thaw. Any
//! failure after the freeze sets the local node's recovery mode to active, as
//! 4.17 does: the recovery that follows thaws the database, and since nothing was
//! committed every node keeps what it had.

use std::io::{Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::OpenOptionsExt;

use ctdbd::protocol::control::{decode_u32, encode_u32, node_flags};
use ctdbd::protocol::dbctl::{PullDb, TransDb};
use ctdbd::protocol::marshall::RecData;
use ctdbd::protocol::Opcode;
use serde::Serialize;

use super::admin::settled_generation;
use super::db::{
    find_db, open_backup, open_for_dump, read_backup_buffer, read_errno, BackupHeader,
};
use super::{json_via_serde, CommandError, Ctx, Report, Style};
use crate::client::status_exit_code;

/// 4.17 writes a record buffer out once it holds this many bytes.
const BUFFER_FLUSH_SIZE: usize = 100 * 1000;
/// The srvid 4.17's tool pushes restored records on: its tool range with 2 in
/// the next 16 bits.
const PUSH_SRVID: u64 = 0xCE02_0000_0000_0000;
const EIO: i32 = 5;
const ENOMEM: i32 = 12;

/// A command whose success is one line on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finished {
    /// The database.
    pub db: String,
    /// The file written or read, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Records restored (`restoredb`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// What is printed.
    #[serde(skip)]
    pub text: String,
}

impl Report for Finished {
    fn text(&self, _style: &Style) -> String {
        self.text.clone()
    }
    json_via_serde!();
}

/// A record buffer of a backup being written.
struct BufferWriter {
    db_id: u32,
    count: u32,
    bytes: Vec<u8>,
    buffers: u64,
    records: u64,
}

impl BufferWriter {
    /// Adds a record (ltdb header included in `stored`); writes the buffer out once
    /// it is big enough.
    fn add(&mut self, out: &mut std::fs::File, key: &[u8], stored: &[u8]) -> Result<(), i32> {
        let rec = RecData {
            reqid: 0,
            key: key.to_vec(),
            data: stored.to_vec(),
        };
        self.bytes.extend_from_slice(&rec.encode());
        self.count += 1;
        if 8 + self.bytes.len() >= BUFFER_FLUSH_SIZE {
            self.flush(out)?;
        }
        Ok(())
    }

    /// Writes what is held, if anything: `db_id | count | length u64 | records`.
    fn flush(&mut self, out: &mut std::fs::File) -> Result<(), i32> {
        if self.count == 0 {
            return Ok(());
        }
        let mut chunk = Vec::with_capacity(16 + self.bytes.len());
        chunk.extend_from_slice(&self.db_id.to_le_bytes());
        chunk.extend_from_slice(&self.count.to_le_bytes());
        chunk.extend_from_slice(&(self.bytes.len() as u64).to_le_bytes());
        chunk.extend_from_slice(&self.bytes);
        out.write_all(&chunk).map_err(|e| read_errno(&e))?;
        self.buffers += 1;
        self.records += u64::from(self.count);
        self.count = 0;
        self.bytes.clear();
        Ok(())
    }
}

fn failed(stdout: String, stderr: String, code: i32) -> CommandError {
    CommandError::Failed {
        stdout,
        stderr,
        code,
    }
}

/// `ctdb backupdb DB FILE`: attach, then copy the local file's records (ltdb
/// headers included, empty records too) into FILE. Like 4.17, FILE is not
/// truncated first: a longer old file keeps its tail.
pub fn backupdb(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Finished, CommandError> {
    let [arg, file] = args else {
        return Err(CommandError::Usage("backupdb"));
    };
    let db = find_db(ctx, arg)?;
    let (id, tdb) = open_for_dump(ctx, &db)?;
    let mut out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)
        .map_err(|e| {
            failed(
                String::new(),
                format!("Failed to open file {file} for writing\n"),
                read_errno(&e),
            )
        })?;
    let header_failed = |code: i32| {
        failed(
            String::new(),
            format!("Failed to write header to file {file}\n"),
            code,
        )
    };
    // A zeroed header first; the real one once the counts are known.
    out.write_all(&[0u8; super::db::BACKUP_HEADER_SIZE])
        .map_err(|e| header_failed(read_errno(&e)))?;
    let mut writer = BufferWriter {
        db_id: id,
        count: 0,
        bytes: Vec::new(),
        buffers: 0,
        records: 0,
    };
    let mut write_error = None;
    let walked = tdb.traverse_read(|key, stored| match writer.add(&mut out, key, stored) {
        Ok(()) => ControlFlow::Continue(()),
        Err(code) => {
            write_error = Some(code);
            ControlFlow::Break(())
        }
    });
    if let Some(code) = write_error {
        return Err(failed(
            String::new(),
            format!(
                "Failed to write records to backup file\nFailed to collect records from DB {}\n",
                db.name
            ),
            code,
        ));
    }
    if walked.is_err() {
        return Err(failed(
            String::new(),
            format!("Failed to collect records from DB {}\n", db.name),
            EIO,
        ));
    }
    writer.flush(&mut out).map_err(|code| {
        failed(
            String::new(),
            "Failed to write records to backup file\n".into(),
            code,
        )
    })?;
    let header = BackupHeader {
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        flags: u64::from(db.flags),
        nbuf: writer.buffers,
        nrec: writer.records,
        name: db.name.clone(),
    };
    out.seek(SeekFrom::Start(0))
        .and_then(|_| out.write_all(&header.encode()))
        .map_err(|e| header_failed(read_errno(&e)))?;
    Ok(Finished {
        db: db.name,
        file: Some(file.clone()),
        records: None,
        text: format!("Database backed up to {file}\n"),
    })
}

/// The active nodes of the local daemon's map (4.17's `list_of_active_nodes`),
/// or the exit code: ENOMEM when the map cannot be had (after "Failed to get
/// nodemap") or lists none.
fn active_nodes(ctx: &mut Ctx<'_>) -> Result<Vec<u32>, CommandError> {
    let map = ctx
        .nodemap()
        .map_err(|_| failed(String::new(), "Failed to get nodemap\n".into(), ENOMEM))?;
    let nodes: Vec<u32> = map
        .nodes
        .iter()
        .filter(|n| n.flags & node_flags::INACTIVE == 0)
        .map(|n| n.pnn)
        .collect();
    if nodes.is_empty() {
        return Err(CommandError::silent(ENOMEM));
    }
    Ok(nodes)
}

/// One control to every node at once: the replies' data in node order, or the
/// first failure's code (4.17's multi-control prints nothing of its own).
fn on_all(
    ctx: &mut Ctx<'_>,
    nodes: &[u32],
    opcode: Opcode,
    data: &[u8],
) -> Result<Vec<Vec<u8>>, i32> {
    let mut replies = Vec::with_capacity(nodes.len());
    for result in ctx.client.control_multi_replies(nodes, opcode, data) {
        match result {
            Ok((0, data)) => replies.push(data),
            Ok((status, _)) => return Err(status_exit_code(status)),
            Err(e) => return Err(e.exit_code()),
        }
    }
    Ok(replies)
}

/// After a failed step: the local node's recovery mode to active (what answers
/// is not waited for beyond the control), then exit with `code`.
fn abandon(ctx: &mut Ctx<'_>, stdout: String, stderr: String, code: i32) -> CommandError {
    let own = ctx.own();
    let _ = ctx
        .client
        .control(own, Opcode::SET_RECMODE, 0, &encode_u32(1));
    failed(stdout, stderr, code)
}

/// The generation, as 4.17's `get_generation` reads it, with the line the wipe
/// and restore add on failure.
fn generation_for(ctx: &mut Ctx<'_>, stdout: &str) -> Result<u32, CommandError> {
    settled_generation(ctx).map_err(|e| {
        let (_, stderr, code) = e.output();
        failed(
            stdout.to_owned(),
            format!("{stderr}Failed to get current generation\n"),
            code,
        )
    })
}

/// `ctdb restoredb FILE [DB]`: the file's records replace the database's on
/// every active node (under DB if given, else the name in the file).
pub fn restoredb(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Finished, CommandError> {
    let (file, name) = match args {
        [file] => (file, None),
        [file, name] => (file, Some(name.clone())),
        _ => return Err(CommandError::Usage("restoredb")),
    };
    let (mut f, header) = open_backup(file)?;
    let name = name.unwrap_or_else(|| header.name.clone());
    let stdout = format!(
        "Restoring database {name} from backup @ {}\n",
        crate::timefmt::local_stamp(header.timestamp)
    );
    let flags = (header.flags & 0xff) as u8;
    let (db_id, tdb) = super::db::open_db(ctx, &name, flags).map_err(|e| {
        let (_, stderr, code) = e.output();
        failed(
            stdout.clone(),
            format!("{stderr}Failed to attach to DB {name}\n"),
            code,
        )
    })?;
    drop(tdb);
    let nodes = active_nodes(ctx).map_err(|e| {
        let (_, stderr, code) = e.output();
        failed(stdout.clone(), stderr, code)
    })?;
    let generation = generation_for(ctx, &stdout)?;
    let trans = TransDb {
        db_id,
        tid: generation,
    }
    .encode();
    let push = PullDb {
        db_id,
        lmaster: 0,
        srvid: PUSH_SRVID,
    }
    .encode();
    let steps = [
        (Opcode::DB_FREEZE, encode_u32(db_id)),
        (Opcode::DB_TRANSACTION_START, trans.clone()),
        (Opcode::WIPE_DATABASE, trans.clone()),
        (Opcode::DB_PUSH_START, push),
    ];
    for (opcode, data) in &steps {
        if let Err(code) = on_all(ctx, &nodes, *opcode, data) {
            return Err(abandon(ctx, stdout, String::new(), code));
        }
    }
    for _ in 0..header.nbuf {
        let (buffer_db, count, records) = match read_backup_buffer(&mut f) {
            Ok(buffer) => buffer,
            // A file that ends inside a buffer: 4.17 exits with whatever errno
            // its talk with the daemon left (2 and 10 seen from run to run); we
            // use the code `dumpdbbackup` has for it.
            Err(code) => return Err(abandon(ctx, stdout, String::new(), code)),
        };
        let mut message = Vec::with_capacity(8 + records.len());
        message.extend_from_slice(&buffer_db.to_le_bytes());
        message.extend_from_slice(&count.to_le_bytes());
        message.extend_from_slice(&records);
        for &pnn in &nodes {
            if let Err(e) = ctx.client.send_message(pnn, PUSH_SRVID, &message) {
                let code = e.exit_code();
                return Err(abandon(ctx, stdout, String::new(), code));
            }
        }
    }
    let confirmed = match on_all(ctx, &nodes, Opcode::DB_PUSH_CONFIRM, &encode_u32(db_id)) {
        Ok(replies) => replies,
        Err(code) => return Err(abandon(ctx, stdout, String::new(), code)),
    };
    for (&pnn, reply) in nodes.iter().zip(&confirmed) {
        match decode_u32(reply, "num_records") {
            Ok(n) if u64::from(n) == header.nrec => {}
            Ok(n) => {
                let stderr = format!("Node {pnn} received {n} of {} records\n", header.nrec);
                return Err(abandon(ctx, stdout, stderr, 0));
            }
            Err(_) => {
                let stderr = format!("Invalid response from node {pnn}\n");
                return Err(abandon(ctx, stdout, stderr, 90));
            }
        }
    }
    let steps = [
        (Opcode::DB_SET_HEALTHY, encode_u32(db_id)),
        (Opcode::DB_TRANSACTION_COMMIT, trans),
        (Opcode::DB_THAW, encode_u32(db_id)),
    ];
    for (opcode, data) in &steps {
        if let Err(code) = on_all(ctx, &nodes, *opcode, data) {
            return Err(abandon(ctx, stdout, String::new(), code));
        }
    }
    Ok(Finished {
        text: format!("{stdout}Database {name} restored\n"),
        db: name,
        file: Some(file.clone()),
        records: Some(header.nrec),
    })
}

/// `ctdb wipedb DB`: every record of the database goes, on every active node.
pub fn wipedb(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Finished, CommandError> {
    let [arg] = args else {
        return Err(CommandError::Usage("wipedb"));
    };
    let db = find_db(ctx, arg)?;
    let (db_id, tdb) = open_for_dump(ctx, &db)?;
    drop(tdb);
    let nodes = active_nodes(ctx)?;
    let generation = generation_for(ctx, "")?;
    let trans = TransDb {
        db_id,
        tid: generation,
    }
    .encode();
    let steps = [
        (Opcode::DB_FREEZE, encode_u32(db_id)),
        (Opcode::DB_TRANSACTION_START, trans.clone()),
        (Opcode::WIPE_DATABASE, trans.clone()),
        (Opcode::DB_SET_HEALTHY, encode_u32(db_id)),
        (Opcode::DB_TRANSACTION_COMMIT, trans),
        (Opcode::DB_THAW, encode_u32(db_id)),
    ];
    for (opcode, data) in &steps {
        if let Err(code) = on_all(ctx, &nodes, *opcode, data) {
            return Err(abandon(ctx, String::new(), String::new(), code));
        }
    }
    Ok(Finished {
        text: format!("Database {} wiped\n", db.name),
        db: db.name,
        file: None,
        records: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_cuts_long_names() {
        let header = BackupHeader {
            timestamp: 1_700_000_000,
            flags: 1,
            nbuf: 2,
            nrec: 3,
            name: "x".repeat(80),
        };
        let bytes = header.encode();
        assert_eq!(&bytes[..8], &3u64.to_le_bytes());
        assert_eq!(bytes[40 + 62], b'x');
        assert_eq!(bytes[40 + 63], 0);
        let path = std::env::temp_dir().join(format!("ctl-backup-{}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let (_, read) = open_backup(path.to_str().unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            read,
            BackupHeader {
                name: "x".repeat(63),
                ..header
            }
        );
    }
}
