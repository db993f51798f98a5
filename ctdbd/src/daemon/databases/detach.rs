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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::peer_bad_input::control;
    use super::super::tests::one_node_worker;
    use super::*;
    use crate::daemon::snapshot::Snapshot;
    use crate::protocol::control::encode_u32;

    /// The worker reads the tunables from `snapshot` from now on.
    fn set_snapshot(worker: &mut Worker, change: impl FnOnce(&mut Snapshot)) {
        let mut snapshot = (*latest(&worker.snapshots)).clone();
        change(&mut snapshot);
        // The receiver keeps the value after the sender is gone.
        let (_sender, receiver) = tokio::sync::watch::channel(Arc::new(snapshot));
        worker.snapshots = receiver;
    }

    fn in_dbmap(worker: &mut Worker, db_id: u32) -> bool {
        let reply = worker
            .local_db_control(&control(Opcode::GET_DBMAP, Vec::new()))
            .unwrap();
        crate::protocol::dbctl::DbMap::decode(&reply.data)
            .unwrap()
            .dbs
            .iter()
            .any(|e| e.db_id == db_id)
    }

    /// Given a volatile and a persistent database, when another node's DB_DETACH
    /// comes while AllowClientDBAttach is 1, for the persistent one, during a
    /// recovery, for an unknown id or with a short id, then each is refused (-1)
    /// and both stay; when it comes for the volatile one with the tunable at 0,
    /// then the database is closed and leaves GET_DBMAP, and a client's attach
    /// is refused until the tunable is 1 again, after which it attaches anew.
    #[tokio::test]
    async fn db_detach_as_4_17() {
        let dir = tempfile::tempdir().unwrap();
        for kind in ["volatile", "persistent"] {
            std::fs::create_dir_all(dir.path().join(kind)).unwrap();
        }
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        let volatile = worker.attach("locking.tdb", DbKind::Volatile).unwrap();
        let persistent = worker.attach("secrets.tdb", DbKind::Persistent).unwrap();
        let detach = |worker: &mut Worker, data: Vec<u8>| {
            worker
                .peer_control(
                    1,
                    9,
                    worker.view.generation,
                    control(Opcode::DB_DETACH, data),
                )
                .unwrap()
                .status
        };
        assert_eq!(detach(&mut worker, encode_u32(volatile)), -1, "tunable 1");
        set_snapshot(&mut worker, |s| s.allow_client_db_attach = 0);
        assert_eq!(detach(&mut worker, encode_u32(persistent)), -1);
        assert_eq!(detach(&mut worker, encode_u32(0x1234_5678)), -1);
        assert_eq!(detach(&mut worker, vec![1, 2]), -1);
        set_snapshot(&mut worker, |s| {
            s.allow_client_db_attach = 0;
            s.recovery_mode = 1;
        });
        assert_eq!(detach(&mut worker, encode_u32(volatile)), -1, "recovery");
        assert!(in_dbmap(&mut worker, volatile) && in_dbmap(&mut worker, persistent));

        set_snapshot(&mut worker, |s| s.recovery_mode = 0);
        assert_eq!(detach(&mut worker, encode_u32(volatile)), 0);
        assert!(!in_dbmap(&mut worker, volatile));
        assert!(!worker.dbs.contains_key(&volatile));
        assert!(in_dbmap(&mut worker, persistent));

        let attach = control(Opcode::DB_ATTACH, b"locking.tdb\0".to_vec());
        assert_eq!(worker.client_attach(&attach).status, -1, "tunable 0");
        set_snapshot(&mut worker, |s| s.allow_client_db_attach = 1);
        assert_eq!(worker.client_attach(&attach).status, 0);
        assert!(in_dbmap(&mut worker, volatile));
    }
}
