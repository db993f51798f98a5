//! DB_DETACH (core §6.4, control 139): a volatile database is closed and
//! forgotten on every node, as 4.17 does it. Refused while local clients may
//! attach databases (`AllowClientDBAttach` = 1), for a persistent or replicated
//! database, and during a recovery. The control from a local client (the tool)
//! is checked here and then sent to every connected node; this node detaches at
//! once, the others when their copy comes.

use tracing::{info, warn};

use super::{decode_db_id, fail, ok, thaw, Worker};
use crate::daemon::snapshot::latest;
use crate::db::registry::DbKind;
use crate::protocol::control::Opcode;
use crate::protocol::packet::ReplyControl;

impl Worker {
    /// DB_DETACH from a local client (`from_client`) or from another node.
    pub(super) fn detach(&mut self, from_client: bool, data: &[u8]) -> ReplyControl {
        let Some(db_id) = decode_db_id(data) else {
            warn!("DB_DETACH refused: not one database id");
            return fail(-1);
        };
        let Some(db) = self.dbs.get(&db_id) else {
            warn!(
                db_id = format_args!("{db_id:#010x}"),
                "DB_DETACH of a database not attached here"
            );
            return fail(-1);
        };
        let name = db.info.name.clone();
        // The newest tunables: a `ctdb setvar` just before the detach counts.
        let snapshot = latest(&self.snapshots);
        if snapshot.allow_client_db_attach == 1 {
            warn!(db = %name, "DB_DETACH refused: clients may attach databases (AllowClientDBAttach = 1)");
            return fail(-1);
        }
        if db.info.kind != DbKind::Volatile {
            warn!(db = %name, "DB_DETACH refused: only volatile databases are detached");
            return fail(-1);
        }
        if snapshot.recovery_mode != 0 || self.view.recovering {
            warn!(db = %name, "DB_DETACH refused during a recovery");
            return fail(-1);
        }
        if from_client {
            self.broadcast_control(Opcode::DB_DETACH.0, data.to_vec());
        }
        self.forget_db(db_id);
        info!(db = %name, "detached database");
        ok(Vec::new())
    }

    /// Closes the database and drops everything this thread keeps for it: its
    /// freeze, the chain locks helpers hold, its vacuuming, the traverses of it
    /// (their clients get the end marker). It leaves GET_DBMAP; its file stays.
    fn forget_db(&mut self, db_id: u32) {
        let traverses: Vec<u32> = self
            .traverses
            .iter()
            .filter(|(_, t)| t.db_id == db_id)
            .map(|(id, _)| *id)
            .collect();
        for id in traverses {
            self.end_traverse(id);
        }
        if let Some(mut db) = self.dbs.remove(&db_id) {
            thaw(&mut db);
            // The helpers' locks go with their processes, then the handle.
            db.helper_locks.clear();
        }
        self.registry.remove(db_id);
    }
}
