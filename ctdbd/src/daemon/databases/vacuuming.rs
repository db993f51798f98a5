//! The database thread's side of vacuuming (`db::vacuum` decides): the delete
//! queue filled by SCHEDULE_FOR_DELETION, a run per volatile database every
//! `VacuumInterval`, VACUUM_FETCH and TRY_DELETE_RECORDS between nodes, and the
//! clock (`VacuumMaxRunTime`).
//!
//! A run happens on this thread, as every libtdb call does, and never waits for
//! a chain lock (busy records wait for the next run), so it holds up calls only
//! for the few microseconds each record takes; a full run also walks the file
//! (every `VacuumFastPathCount` runs), like a traverse.

use std::collections::BTreeSet;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::{fail, ok, view_for, TdbStore, Worker};
use crate::core::ClientId;
use crate::db::ltdb::{self, LtdbHeader};
use crate::db::migrate::{Call, CALL_NULL};
use crate::db::registry::DbKind;
use crate::db::vacuum::{self, Candidate, DeleteRun};
use crate::protocol::call::call_flags;
use crate::protocol::control::Opcode;
use crate::protocol::dbctl::ScheduleForDeletion;
use crate::protocol::marshall::{MarshallBuffer, RecData};
use crate::protocol::packet::{ReplyControl, ReqControl};

/// The client id of the thread's own migration calls (a record handed here by
/// VACUUM_FETCH): 0, which no connection ever has.
pub(super) const VACUUM_CLIENT: ClientId = ClientId(0);

/// One database's deletion in progress: TRY_DELETE_RECORDS sent, answers awaited.
pub(super) struct Deleting {
    run: DeleteRun,
    /// The reqid of the TRY_DELETE_RECORDS controls (one for all nodes).
    reqid: u32,
    /// `VacuumMaxRunTime` after the start: then the run ends deleting nothing.
    deadline: Instant,
}

impl Worker {
    /// SCHEDULE_FOR_DELETION from a local client: the key goes in its database's
    /// delete queue.
    pub(super) fn schedule_for_deletion(&mut self, data: &[u8]) -> ReplyControl {
        let request = match ScheduleForDeletion::decode(data) {
            Ok(request) => request,
            Err(e) => {
                warn!(error = %e, "SCHEDULE_FOR_DELETION refused");
                return fail(-1);
            }
        };
        match self.dbs.get_mut(&request.db_id) {
            Some(db) if db.info.kind == DbKind::Volatile => {
                db.vacuum.schedule(&request.key);
                ok(Vec::new())
            }
            _ => fail(-1),
        }
    }

    /// Once a tick: ends deletions that waited longer than `VacuumMaxRunTime`
    /// and starts the runs that are due.
    pub(super) fn vacuum_tick(&mut self, now: Instant) {
        for db in self.dbs.values_mut() {
            if db.deleting.as_ref().is_some_and(|d| d.deadline <= now) {
                let deleting = db.deleting.take().expect("checked");
                let waiting: Vec<u32> = deleting.run.waiting_for().collect();
                warn!(db = %db.info.name, ?waiting, "vacuum run timed out; nothing deleted");
            }
        }
        let tunables = self.snapshot.vacuum;
        if tunables.interval.is_zero() {
            return;
        }
        let due: Vec<u32> = self
            .dbs
            .iter()
            .filter(|(_, db)| {
                db.info.kind == DbKind::Volatile
                    && db.frozen.is_none()
                    && db.deleting.is_none()
                    && db.next_vacuum <= now
            })
            .map(|(id, _)| *id)
            .collect();
        for db_id in due {
            if let Some(db) = self.dbs.get_mut(&db_id) {
                db.next_vacuum = now + tunables.interval;
            }
            self.vacuum_run(db_id, now);
        }
    }

    /// One run on one database: plan, hand records to their lmasters, and ask
    /// the other active nodes to delete what this node is lmaster of.
    fn vacuum_run(&mut self, db_id: u32, now: Instant) {
        let tunables = self.snapshot.vacuum;
        let others: Vec<u32> = self
            .active_nodes()
            .into_iter()
            .filter(|n| *n != self.pnn)
            .collect();
        let pnn = self.pnn;
        let Some(db) = self.dbs.get_mut(&db_id) else {
            return;
        };
        let view = view_for(&self.view, db.frozen.is_some());
        let full = db.vacuum.next_run_is_full(tunables.full_every);
        let mut traversed = Vec::new();
        if full {
            // Only what could be a candidate: empty copies this node is dmaster of.
            let walked = db.tdb.traverse_read(|key, stored| {
                if ltdb::is_empty_record(stored)
                    && ltdb::decode(stored).is_ok_and(|(h, _)| h.dmaster == pnn)
                {
                    traversed.push(key.to_vec());
                }
                std::ops::ControlFlow::Continue(())
            });
            if let Err(e) = walked {
                warn!(db = %db.info.name, error = %e, "vacuum traverse failed");
            }
        }
        let mut store = TdbStore {
            tdb: &db.tdb,
            helper_locks: &mut db.helper_locks,
            emptied: None,
            tracking: db.tracking.as_ref(),
        };
        let plan = match db.vacuum.plan(&view, &mut store, traversed) {
            Ok(plan) => plan,
            Err(e) => {
                warn!(db = %db.info.name, error = %e, "vacuum run failed");
                return;
            }
        };
        debug!(
            db = %db.info.name,
            full,
            to_delete = plan.delete.len(),
            to_hand_over = plan.fetch.values().map(Vec::len).sum::<usize>(),
            "vacuum run"
        );
        // Answers to the previous run's handovers that never came are not
        // awaited any more.
        db.fetching.clear();
        let mut fetching = Vec::new();
        for (lmaster, records) in plan.fetch {
            let reqid = self.allocate_control_reqid();
            let control = vacuum_fetch_control(db_id, &records);
            self.send_control(lmaster, reqid, control.opcode, control.data, control.flags);
            fetching.push((reqid, lmaster));
        }
        if let Some(db) = self.dbs.get_mut(&db_id) {
            db.fetching = fetching;
        }
        if plan.delete.is_empty() {
            self.maybe_repack(db_id);
            return;
        }
        let run = DeleteRun::start(&view, plan.delete, &others);
        let reqid = self.allocate_control_reqid();
        let data = marshall(db_id, &run.request());
        for node in run.waiting_for().collect::<Vec<_>>() {
            self.send_control(node, reqid, Opcode::TRY_DELETE_RECORDS.0, data.clone(), 0);
        }
        let Some(db) = self.dbs.get_mut(&db_id) else {
            return;
        };
        db.deleting = Some(Deleting {
            run,
            reqid,
            deadline: now + tunables.max_run_time,
        });
        self.maybe_finish_deletion(db_id);
    }

    /// A control reply that may answer a TRY_DELETE_RECORDS of ours; `false` if
    /// it does not.
    pub(super) fn vacuum_reply(&mut self, pnn: u32, reqid: u32, reply: &ReplyControl) -> bool {
        if self.vacuum_fetch_reply(pnn, reqid, reply) {
            return true;
        }
        let Some((db_id, db)) = self
            .dbs
            .iter_mut()
            .find(|(_, db)| db.deleting.as_ref().is_some_and(|d| d.reqid == reqid))
        else {
            return false;
        };
        let db_id = *db_id;
        let deleting = db.deleting.as_mut().expect("found by it");
        let refused = (reply.status == 0)
            .then(|| MarshallBuffer::decode(&reply.data).ok())
            .flatten();
        match refused {
            Some(buffer) => deleting
                .run
                .answered(pnn, buffer.records.into_iter().map(|r| r.key)),
            None => {
                debug!(
                    peer = pnn,
                    status = reply.status,
                    "TRY_DELETE_RECORDS failed"
                );
                deleting.run.failed(pnn);
            }
        }
        self.maybe_finish_deletion(db_id);
        true
    }

    /// The answer to one of our VACUUM_FETCH handovers (4.17 waits for it and
    /// only logs a failure: the records stay here for a later run).
    fn vacuum_fetch_reply(&mut self, pnn: u32, reqid: u32, reply: &ReplyControl) -> bool {
        for db in self.dbs.values_mut() {
            if let Some(at) = db
                .fetching
                .iter()
                .position(|(id, node)| *id == reqid && *node == pnn)
            {
                db.fetching.swap_remove(at);
                if reply.status != 0 {
                    warn!(
                        db = %db.info.name,
                        peer = pnn,
                        status = reply.status,
                        "VACUUM_FETCH refused by the lmaster"
                    );
                }
                return true;
            }
        }
        false
    }

    /// After a run (and its deletion, if any): a file whose free list has at
    /// least `RepackLimit` entries is repacked, as 4.17's vacuuming does; 0
    /// never repacks. Not while anything of ours holds a lock in the file (a
    /// freeze, a helper's chain lock), as libtdb's commit would wait for it.
    fn maybe_repack(&mut self, db_id: u32) {
        let limit = self.snapshot.vacuum.repack_limit;
        let Some(db) = self.dbs.get(&db_id) else {
            return;
        };
        if limit == 0 || db.frozen.is_some() || !db.helper_locks.is_empty() {
            return;
        }
        let free = match db.tdb.freelist_size() {
            Ok(free) => free,
            Err(e) => {
                warn!(db = %db.info.name, error = %e, "cannot read the free list size");
                return;
            }
        };
        if free < limit {
            return;
        }
        info!(db = %db.info.name, free_entries = free, "repacking");
        if let Err(e) = db.tdb.repack() {
            warn!(db = %db.info.name, error = %e, "repack failed");
        }
    }

    /// Nodes that are no longer active will not answer: their copies are set
    /// right by the recovery their departure brings, and nothing is deleted here
    /// in the meantime ([`DeleteRun::failed`]).
    pub(super) fn vacuum_nodes_left(&mut self, active: &BTreeSet<u32>) {
        let mut finished = Vec::new();
        for (id, db) in &mut self.dbs {
            if let Some(deleting) = &mut db.deleting {
                let gone: Vec<u32> = deleting
                    .run
                    .waiting_for()
                    .filter(|n| !active.contains(n))
                    .collect();
                for node in gone {
                    deleting.run.failed(node);
                }
                if deleting.run.is_complete() {
                    finished.push(*id);
                }
            }
        }
        for db_id in finished {
            self.maybe_finish_deletion(db_id);
        }
    }

    /// Deletes what nobody refused, once every node answered.
    fn maybe_finish_deletion(&mut self, db_id: u32) {
        let Some(db) = self.dbs.get_mut(&db_id) else {
            return;
        };
        if !db.deleting.as_ref().is_some_and(|d| d.run.is_complete()) {
            return;
        }
        let deleting = db.deleting.take().expect("checked");
        let view = view_for(&self.view, db.frozen.is_some());
        let mut store = TdbStore {
            tdb: &db.tdb,
            helper_locks: &mut db.helper_locks,
            emptied: None,
            tracking: db.tracking.as_ref(),
        };
        match deleting.run.finish(&view, &mut store) {
            Ok(done) => debug!(
                db = %db.info.name,
                deleted = done.deleted.len(),
                kept = done.kept,
                "vacuum deleted records"
            ),
            Err(e) => warn!(db = %db.info.name, error = %e, "vacuum delete failed"),
        }
        self.maybe_repack(db_id);
    }

    /// TRY_DELETE_RECORDS from a key's lmaster: delete the copies here that are
    /// older than its empty one; answer with those that stay.
    pub(super) fn try_delete_records(&mut self, pnn: u32, data: &[u8]) -> ReplyControl {
        let Some((db_id, records)) = self.decode_vacuum_records(pnn, data, "TRY_DELETE_RECORDS")
        else {
            return fail(-1);
        };
        let Some(db) = self.dbs.get_mut(&db_id) else {
            return fail(-1);
        };
        let view = view_for(&self.view, db.frozen.is_some());
        let mut store = TdbStore {
            tdb: &db.tdb,
            helper_locks: &mut db.helper_locks,
            emptied: None,
            tracking: db.tracking.as_ref(),
        };
        match vacuum::try_delete(&view, &mut store, records) {
            Ok(refused) => ok(marshall(db_id, &refused)),
            Err(e) => {
                warn!(db = %db.info.name, error = %e, "TRY_DELETE_RECORDS failed");
                fail(-1)
            }
        }
    }

    /// VACUUM_FETCH from a node that holds empty records this node is lmaster of:
    /// bring each here with a migration call, and vacuum it in a later run.
    pub(super) fn vacuum_fetch(&mut self, pnn: u32, data: &[u8]) -> ReplyControl {
        let Some((db_id, records)) = self.decode_vacuum_records(pnn, data, "VACUUM_FETCH") else {
            return fail(-1);
        };
        let Some(db) = self.dbs.get_mut(&db_id) else {
            return fail(-1);
        };
        let view = view_for(&self.view, db.frozen.is_some());
        let keys = db.vacuum.fetched(&view, records);
        for key in keys {
            let reqid = self.next_vacuum_call;
            self.next_vacuum_call = self.next_vacuum_call.wrapping_add(1);
            self.migrate(db_id, |migration, view, store| {
                migration.client_call(
                    view,
                    store,
                    VACUUM_CLIENT,
                    reqid,
                    Call {
                        callid: CALL_NULL,
                        flags: call_flags::IMMEDIATE_MIGRATION | call_flags::VACUUM_MIGRATION,
                        key,
                        calldata: Vec::new(),
                    },
                )
            });
        }
        ok(Vec::new())
    }

    /// The records of a VACUUM_FETCH or TRY_DELETE_RECORDS: for an attached
    /// volatile database, each with the header of its empty copy.
    fn decode_vacuum_records(
        &self,
        pnn: u32,
        data: &[u8],
        what: &str,
    ) -> Option<(u32, Vec<Candidate>)> {
        let buffer = match MarshallBuffer::decode(data) {
            Ok(buffer) => buffer,
            Err(e) => {
                warn!(peer = pnn, error = %e, "{what} refused");
                return None;
            }
        };
        if !self
            .dbs
            .get(&buffer.db_id)
            .is_some_and(|db| db.info.kind == DbKind::Volatile)
        {
            warn!(
                peer = pnn,
                db_id = format_args!("{:#010x}", buffer.db_id),
                "{what} for a database that is not an attached volatile one"
            );
            return None;
        }
        let mut records = Vec::with_capacity(buffer.records.len());
        for record in buffer.records {
            match LtdbHeader::from_bytes(&record.data) {
                Ok(header) => records.push(Candidate {
                    key: record.key,
                    header,
                }),
                Err(e) => {
                    warn!(peer = pnn, error = %e, "{what} refused: a record without a header");
                    return None;
                }
            }
        }
        Some((buffer.db_id, records))
    }
}

/// The VACUUM_FETCH that hands `records` to their lmaster: without NOREPLY,
/// since 4.17 sends it as a control whose answer it waits for.
fn vacuum_fetch_control(db_id: u32, records: &[Candidate]) -> ReqControl {
    ReqControl {
        opcode: Opcode::VACUUM_FETCH.0,
        srvid: 0,
        client_id: 0,
        flags: 0,
        data: marshall(db_id, records),
    }
}

/// A marshall buffer of key + header records, as VACUUM_FETCH and
/// TRY_DELETE_RECORDS (and its reply) carry them.
fn marshall(db_id: u32, records: &[Candidate]) -> Vec<u8> {
    MarshallBuffer {
        db_id,
        records: records
            .iter()
            .map(|c| RecData {
                reqid: 0,
                key: c.key.clone(),
                data: ltdb::empty_record(&c.header),
            })
            .collect(),
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::super::peer_bad_input::control;
    use super::super::tests::one_node_worker;
    use super::*;
    use crate::db::migrate::View;
    use crate::db::tdb::StoreMode;

    /// Node 0 of a map of two, node 1 not connected (so no one to ask).
    fn two_node_view() -> View {
        View {
            pnn: 0,
            generation: 9,
            vnn_map: vec![0, 1],
            recovering: false,
        }
    }

    fn key_with_lmaster(lmaster: u32, tag: &str) -> Vec<u8> {
        (0u32..)
            .map(|i| format!("{tag}{i}").into_bytes())
            .find(|k| two_node_view().lmaster(k) == Some(lmaster))
            .unwrap()
    }

    fn put(worker: &Worker, db_id: u32, key: &[u8], rsn: u64, dmaster: u32, value: &[u8]) {
        let header = LtdbHeader::new(rsn, dmaster);
        worker.dbs[&db_id]
            .tdb
            .store(key, &ltdb::encode(&header, value), StoreMode::Replace)
            .unwrap();
    }

    fn has(worker: &Worker, db_id: u32, key: &[u8]) -> bool {
        worker.dbs[&db_id].tdb.fetch(key).unwrap().is_some()
    }

    fn setup() -> (tempfile::TempDir, Worker, u32) {
        let dir = tempfile::tempdir().unwrap();
        for kind in ["volatile", "persistent"] {
            std::fs::create_dir_all(dir.path().join(kind)).unwrap();
        }
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        worker.view = two_node_view();
        let db_id = worker.attach("locking.tdb", DbKind::Volatile).unwrap();
        (dir, worker, db_id)
    }

    /// Given empty and non-empty records scheduled by smbd, when the database's
    /// vacuum run comes, then the empty record this node is lmaster of goes, and
    /// the one with a value, and the one another node is lmaster of, stay.
    #[tokio::test]
    async fn scheduled_empty_records_are_deleted_at_the_next_run() {
        let (_dir, mut worker, db_id) = setup();
        // The first run walks the whole file; the queue is what the later ones
        // (all but every VacuumFastPathCount-th) look at.
        let interval = worker.snapshot.vacuum.interval;
        worker.vacuum_tick(Instant::now() + interval);
        let empty = key_with_lmaster(0, "empty");
        let written = key_with_lmaster(0, "written");
        let elsewhere = key_with_lmaster(1, "elsewhere");
        put(&worker, db_id, &empty, 3, 0, b"");
        put(&worker, db_id, &written, 3, 0, b"share mode");
        put(&worker, db_id, &elsewhere, 3, 0, b"");
        for key in [&empty, &written, &elsewhere] {
            let request = ScheduleForDeletion {
                db_id,
                header: LtdbHeader::new(3, 0).to_bytes(),
                key: key.clone(),
            };
            let reply = worker
                .local_db_control(&control(Opcode::SCHEDULE_FOR_DELETION, request.encode()))
                .unwrap();
            assert_eq!(reply.status, 0);
        }
        let unscheduled = key_with_lmaster(0, "unscheduled");
        put(&worker, db_id, &unscheduled, 3, 0, b"");
        worker.vacuum_tick(Instant::now() + 3 * interval);
        assert!(!has(&worker, db_id, &empty), "the empty record is gone");
        assert!(has(&worker, db_id, &written));
        assert!(
            has(&worker, db_id, &unscheduled),
            "not scheduled: waits for a full run"
        );
        assert!(
            has(&worker, db_id, &elsewhere),
            "handed to its lmaster, not deleted"
        );
    }

    /// Given a record nobody has, when a local client's call creates it empty
    /// (smbd reading a missing share-mode record), then it is queued for the
    /// next run, as CTDB queues its own stores of empty records.
    #[tokio::test]
    async fn an_empty_record_created_by_a_call_is_queued() {
        let (_dir, mut worker, db_id) = setup();
        worker.view.vnn_map = vec![0];
        let (replies, mut answers) = tokio::sync::mpsc::unbounded_channel();
        worker.clients.insert(ClientId(3), replies.clone());
        let from = super::super::ClientRequest {
            client: ClientId(3),
            reqid: 1,
            replies,
        };
        worker.client_call(
            from,
            crate::protocol::call::ReqCall {
                flags: 0,
                db_id,
                callid: CALL_NULL,
                hopcount: 0,
                key: b"missing".to_vec(),
                calldata: Vec::new(),
            },
        );
        assert!(answers.try_recv().is_ok(), "the call was answered");
        assert!(has(&worker, db_id, b"missing"));
        assert_eq!(worker.dbs[&db_id].vacuum.queued(), 1);
    }

    /// Given copies of records on this node, when their lmaster asks to delete
    /// them, then the older copy goes and the one this node is dmaster of, and
    /// the newer one, stay and come back in the reply.
    #[tokio::test]
    async fn try_delete_records_deletes_only_older_copies() {
        let (_dir, mut worker, db_id) = setup();
        let older = key_with_lmaster(1, "older");
        let mine = key_with_lmaster(1, "mine");
        let newer = key_with_lmaster(1, "newer");
        put(&worker, db_id, &older, 4, 1, b"old value");
        put(&worker, db_id, &mine, 4, 0, b"");
        put(&worker, db_id, &newer, 9, 1, b"");
        let asked: Vec<Candidate> = [&older, &mine, &newer]
            .into_iter()
            .map(|k| Candidate {
                key: k.clone(),
                header: LtdbHeader::new(5, 1),
            })
            .collect();
        let reply = worker
            .peer_control(
                1,
                7,
                worker.view.generation,
                control(Opcode::TRY_DELETE_RECORDS, marshall(db_id, &asked)),
            )
            .unwrap();
        assert_eq!(reply.status, 0);
        let refused: Vec<Vec<u8>> = MarshallBuffer::decode(&reply.data)
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(refused, vec![mine.clone(), newer.clone()]);
        assert!(!has(&worker, db_id, &older));
        assert!(has(&worker, db_id, &mine) && has(&worker, db_id, &newer));

        let garbage = worker
            .peer_control(
                1,
                8,
                worker.view.generation,
                control(Opcode::TRY_DELETE_RECORDS, vec![1, 2, 3]),
            )
            .unwrap();
        assert_eq!(garbage.status, -1);
    }

    /// Given a run waiting for another node's answer, when the answer refuses
    /// nothing, then the record goes; when the node refuses or leaves, it stays.
    #[tokio::test]
    async fn the_lmaster_deletes_only_after_every_node_agreed() {
        for answer in ["agrees", "refuses", "fails"] {
            let (_dir, mut worker, db_id) = setup();
            let key = key_with_lmaster(0, "k");
            put(&worker, db_id, &key, 3, 0, b"");
            let run = DeleteRun::start(
                &worker.view,
                vec![Candidate {
                    key: key.clone(),
                    header: LtdbHeader::new(3, 0),
                }],
                &[1],
            );
            worker.dbs.get_mut(&db_id).unwrap().deleting = Some(Deleting {
                run,
                reqid: 42,
                deadline: Instant::now() + std::time::Duration::from_secs(60),
            });
            let reply = match answer {
                "agrees" => ok(marshall(db_id, &[])),
                "refuses" => ok(marshall(
                    db_id,
                    &[Candidate {
                        key: key.clone(),
                        header: LtdbHeader::new(3, 0),
                    }],
                )),
                _ => fail(-1),
            };
            assert!(worker.vacuum_reply(1, 42, &reply));
            assert!(worker.dbs[&db_id].deleting.is_none(), "{answer}: finished");
            assert_eq!(has(&worker, db_id, &key), answer != "agrees", "{answer}");
        }
    }

    /// A worker whose snapshot says `RepackLimit` = `limit`, on a one-node map.
    fn with_repack_limit(worker: &mut Worker, limit: u32) {
        let mut snapshot = (*worker.snapshot).clone();
        snapshot.vacuum.repack_limit = limit;
        worker.snapshot = std::sync::Arc::new(snapshot);
        worker.view.vnn_map = vec![0];
    }

    /// Given a file of 400 records written in turn empty and with a value, when a
    /// full vacuum run deletes the 200 empty ones (leaving 200 holes in the free
    /// list), then with `RepackLimit` 0 or above the count the free list stays
    /// as it is, and with a small `RepackLimit` the file is repacked: its free
    /// space is one block again, and every record with a value is still there.
    #[tokio::test]
    async fn a_fragmented_file_is_repacked_after_a_run_past_repack_limit() {
        for (limit, repacked) in [(0, false), (100_000, false), (10, true)] {
            let (_dir, mut worker, db_id) = setup();
            with_repack_limit(&mut worker, limit);
            for i in 0..400u32 {
                let key = format!("record{i}").into_bytes();
                let value: &[u8] = if i % 2 == 0 { b"" } else { b"a value kept" };
                put(&worker, db_id, &key, 3, 0, value);
            }
            let free_before = worker.dbs[&db_id].tdb.freelist_size().unwrap();
            // The first run walks the whole file.
            let interval = worker.snapshot.vacuum.interval;
            worker.vacuum_tick(Instant::now() + interval);
            for i in 0..400u32 {
                let key = format!("record{i}").into_bytes();
                assert_eq!(
                    has(&worker, db_id, &key),
                    i % 2 == 1,
                    "limit {limit}: record{i}"
                );
            }
            let free_after = worker.dbs[&db_id].tdb.freelist_size().unwrap();
            assert!(
                free_before < 10,
                "limit {limit}: a freshly written file has {free_before} free blocks"
            );
            if repacked {
                assert!(
                    free_after < 10,
                    "limit {limit}: {free_after} free blocks after the run"
                );
            } else {
                assert!(
                    free_after >= 150,
                    "limit {limit}: the holes stay unrepacked, yet {free_after} free blocks"
                );
            }
        }
    }

    /// Given an empty record another node is lmaster of, when a run hands it
    /// over, then the VACUUM_FETCH goes without NOREPLY (4.17 waits for the
    /// answer), carrying the database id and the record's key and header; and the
    /// lmaster's answer, success or refusal, is taken as that control's.
    #[tokio::test]
    async fn vacuum_fetch_is_sent_awaiting_its_reply() {
        let candidate = Candidate {
            key: b"k".to_vec(),
            header: LtdbHeader::new(3, 0),
        };
        let control = vacuum_fetch_control(0x1234_5678, std::slice::from_ref(&candidate));
        assert_eq!(control.opcode, Opcode::VACUUM_FETCH.0);
        assert_eq!(
            control.flags & crate::protocol::packet::CTRL_FLAG_NOREPLY,
            0
        );
        assert_eq!(control.flags, 0);
        let buffer = MarshallBuffer::decode(&control.data).unwrap();
        assert_eq!(buffer.db_id, 0x1234_5678);
        assert_eq!(buffer.records.len(), 1);
        assert_eq!(buffer.records[0].key, b"k");
        assert_eq!(
            LtdbHeader::from_bytes(&buffer.records[0].data).unwrap(),
            candidate.header
        );

        for status in [0, -1] {
            let (_dir, mut worker, db_id) = setup();
            let elsewhere = key_with_lmaster(1, "elsewhere");
            put(&worker, db_id, &elsewhere, 3, 0, b"");
            let interval = worker.snapshot.vacuum.interval;
            worker.vacuum_tick(Instant::now() + interval);
            let fetching = worker.dbs[&db_id].fetching.clone();
            assert_eq!(fetching.len(), 1, "one VACUUM_FETCH, to node 1");
            let (reqid, lmaster) = fetching[0];
            assert_eq!(lmaster, 1);
            assert!(
                !worker.vacuum_reply(0, reqid, &ok(Vec::new())),
                "not node 0's"
            );
            let reply = if status == 0 {
                ok(Vec::new())
            } else {
                fail(status)
            };
            assert!(worker.vacuum_reply(1, reqid, &reply), "status {status}");
            assert!(worker.dbs[&db_id].fetching.is_empty());
            assert!(has(&worker, db_id, &elsewhere), "kept for its lmaster");
        }
    }
}
