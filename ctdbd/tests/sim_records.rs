//! Record migration (`ctdbd::db::migrate`) in a deterministic simulation: several
//! nodes, each with an in-memory record store and simulated smbds that increment
//! counters the way smbd changes a record (fetch lock: take the chain lock, use the
//! record only if this node is its dmaster, otherwise ask the daemon to bring it and
//! try again). Messages between two nodes arrive in order (one TCP stream each
//! way); everything else — which message, which smbd step, which lock wait ends —
//! is chosen by a seeded generator.
//!
//! Now and then the cluster recovers, as the leader does after a membership
//! change (`db::recovery`): every node frozen once no smbd holds a record, every
//! node's records pulled and merged, the result pushed to all, a new generation.
//! Messages of the old generation die on arrival; calls in flight start again.
//!
//! Checked after every step: no record has two dmasters. At the end: every smbd's
//! every increment is in the counter (no update lost in a hand-over or a
//! recovery), every call was answered, and nothing is left waiting.
//!
//! With vacuuming on (`db::vacuum`), smbds also delete records (store them empty
//! and schedule them for deletion) and nodes run vacuum at random moments; the
//! vacuum controls (VACUUM_FETCH, TRY_DELETE_RECORDS and its reply) travel on the
//! same ordered links. Then the model is the newest value of each key, as the
//! smbd that last wrote it left it, and it is checked that vacuuming never
//! removes a record whose newest value is not empty, that at the end every
//! non-empty record has its newest value on its one dmaster (none lost), and
//! that once the smbds are done a few quiet vacuum runs leave no copy of a
//! deleted record on any node (the database shrinks back).
//!
//! With read-only delegations on (`SET_DB_READONLY`), some smbds only read: as
//! smbd does (reference §3.1), locally when the node is the dmaster or holds a
//! delegated copy, else through the daemon, asking `WANT_READONLY` when a local
//! copy exists. Revocations (UPDATE_RECORD and its answer) travel on the same
//! ordered links as the migration messages, and the daemons' timers (a read
//! retried a second after a revocation) fire at random moments. Checked: every
//! read, local or answered by the daemon, sees the newest value written (a
//! delegated copy is never stale); and whenever an smbd writes a record on its
//! dmaster, no other node holds a copy of it flagged `RO_HAVE_READONLY` (every
//! delegation was revoked before the write could proceed).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ctdbd::core::ClientId;
use ctdbd::db::ltdb::{self, flags as rec_flags, LtdbHeader};
use ctdbd::db::migrate::{
    Action, Call, Database, NodeMessage, Record, RecordStore, StoreError, View, CALL_FETCH,
    CALL_NULL,
};
use ctdbd::db::recovery;
use ctdbd::db::vacuum::{self, Candidate, DeleteRun, Vacuum};
use ctdbd::protocol::call::call_flags;
use proptest::prelude::*;

/// One node's database file: records plus who holds which chain lock.
#[derive(Debug, Default)]
struct MemStore {
    records: BTreeMap<Vec<u8>, Record>,
    /// Chain locks held by the daemon (try_lock, or a finished lock wait).
    daemon_locks: BTreeSet<Vec<u8>>,
    /// Chain locks held by one of the node's smbds.
    smbd_locks: BTreeSet<Vec<u8>>,
    /// The read-only tracking file.
    tracking: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl RecordStore for MemStore {
    fn try_lock(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        if self.smbd_locks.contains(key) || self.daemon_locks.contains(key) {
            return Ok(false);
        }
        self.daemon_locks.insert(key.to_vec());
        Ok(true)
    }
    fn unlock(&mut self, key: &[u8]) {
        assert!(self.daemon_locks.remove(key), "unlock of a lock not held");
    }
    fn fetch(&mut self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        assert!(self.daemon_locks.contains(key), "fetch without the lock");
        Ok(self.records.get(key).cloned())
    }
    fn store(&mut self, key: &[u8], record: &Record) -> Result<(), StoreError> {
        assert!(self.daemon_locks.contains(key), "store without the lock");
        self.records.insert(key.to_vec(), record.clone());
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        assert!(self.daemon_locks.contains(key), "delete without the lock");
        self.records.remove(key);
        Ok(())
    }
    fn tracking_fetch(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        assert!(
            self.daemon_locks.contains(key),
            "tracking read without the lock"
        );
        Ok(self.tracking.get(key).cloned())
    }
    fn tracking_store(&mut self, key: &[u8], bitmap: &[u8]) -> Result<(), StoreError> {
        assert!(
            self.daemon_locks.contains(key),
            "tracking write without the lock"
        );
        self.tracking.insert(key.to_vec(), bitmap.to_vec());
        Ok(())
    }
    fn tracking_delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        assert!(
            self.daemon_locks.contains(key),
            "tracking delete without the lock"
        );
        self.tracking.remove(key);
        Ok(())
    }
}

/// What a simulated smbd is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Smbd {
    /// Has `left` increments to do.
    Idle { left: u32 },
    /// Waits for the daemon's answer to call `reqid`.
    Calling { reqid: u32, left: u32 },
    /// Holds the record's chain lock for `steps` more steps.
    Holding { steps: u32, left: u32 },
}

struct SimNode {
    db: Database,
    vacuum: Vacuum,
    /// This node's vacuum deletion in progress, with its id.
    delete_run: Option<(u64, DeleteRun)>,
    store: MemStore,
    /// Keys whose lock the daemon waits for (a lock helper would be running).
    lock_waits: Vec<Vec<u8>>,
    /// The node's smbds, each working on one key.
    smbds: Vec<(Vec<u8>, Smbd)>,
    /// Which of them only read (read-only delegation runs).
    readers: Vec<bool>,
    next_reqid: u32,
    /// The daemon's timers not fired yet.
    timers: Vec<u64>,
    /// This node's revocations' UPDATE_RECORDs: token → key, generation,
    /// delegate.
    revoking: BTreeMap<u32, (Vec<u8>, u32, u32)>,
    next_token: u32,
}

struct Sim {
    view: Vec<View>,
    nodes: Vec<SimNode>,
    /// In-order streams per (from, to).
    links: BTreeMap<(u32, u32), VecDeque<Msg>>,
    /// Answers for each node's smbds, by (client id, reqid).
    answers: BTreeSet<(u32, u32, u32)>,
    rng: u64,
    done: BTreeMap<Vec<u8>, u64>,
    /// The newest value of each key: what the smbd that last wrote it left.
    newest: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Whether smbds delete records and nodes vacuum.
    vacuum: bool,
    /// Records the lmasters' vacuum runs deleted.
    vacuumed: u64,
    next_vacuum_run: u64,
    steps: u64,
    /// Whether recoveries happen at random.
    recoveries: bool,
    recovered: u32,
    /// Whether the database is read-only (delegations) and some smbds read.
    readonly: bool,
    /// Reads waiting for the daemon: (node, client, reqid) → key.
    reads: BTreeMap<(u32, u32, u32), Vec<u8>>,
    /// Reads done from a local copy, from a delegated copy, and through the
    /// daemon.
    local_reads: u64,
    delegated_reads: u64,
    daemon_reads: u64,
    /// Delegated copies revoked (UPDATE_RECORDs stored).
    revocations: u64,
}

const GENERATION: u32 = 7;

/// The client id under which a node's vacuuming migrates records to itself.
const VACUUM_CLIENT: ClientId = ClientId(0xFFFF);

/// What travels on a link between two nodes.
#[derive(Debug, Clone)]
enum Msg {
    /// A migration message, stamped with its generation.
    Migration(u32, NodeMessage),
    /// Empty records for their lmaster (VACUUM_FETCH).
    VacuumFetch(Vec<Candidate>),
    /// The lmaster asks to delete copies (TRY_DELETE_RECORDS) for its run `run`.
    TryDelete { run: u64, records: Vec<Candidate> },
    /// The records a node did not delete.
    TryDeleteReply { run: u64, refused: Vec<Vec<u8>> },
    /// A dmaster revokes the delegated copy (UPDATE_RECORD, reqid `token`,
    /// stamped with the generation it was sent in, as every packet is).
    UpdateRecord {
        token: u32,
        generation: u32,
        key: Vec<u8>,
        record: Record,
    },
    /// The answer to it.
    UpdateReply { token: u32, ok: bool },
}

impl Sim {
    fn new(nodes: u32, keys: &[&[u8]], smbds_per_node: usize, increments: u32, seed: u64) -> Self {
        let vnn_map: Vec<u32> = (0..nodes).collect();
        let mut sim = Sim {
            view: (0..nodes)
                .map(|pnn| View {
                    pnn,
                    generation: GENERATION,
                    vnn_map: vnn_map.clone(),
                    recovering: false,
                })
                .collect(),
            nodes: Vec::new(),
            links: BTreeMap::new(),
            answers: BTreeSet::new(),
            rng: seed | 1,
            done: BTreeMap::new(),
            newest: BTreeMap::new(),
            vacuum: false,
            vacuumed: 0,
            next_vacuum_run: 1,
            steps: 0,
            recoveries: false,
            recovered: 0,
            readonly: false,
            reads: BTreeMap::new(),
            local_reads: 0,
            delegated_reads: 0,
            daemon_reads: 0,
            revocations: 0,
        };
        for _ in 0..nodes {
            let smbds = (0..smbds_per_node)
                .map(|_| {
                    let key = keys[sim.below(keys.len() as u64) as usize].to_vec();
                    (key, Smbd::Idle { left: increments })
                })
                .collect();
            sim.nodes.push(SimNode {
                db: Database::new(0x7a19_d84d),
                vacuum: Vacuum::new(),
                delete_run: None,
                store: MemStore::default(),
                lock_waits: Vec::new(),
                readers: vec![false; smbds_per_node],
                smbds,
                next_reqid: 1,
                timers: Vec::new(),
                revoking: BTreeMap::new(),
                next_token: 1,
            });
        }
        sim
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    fn apply(&mut self, pnn: u32, actions: Vec<Action>) {
        for action in actions {
            trace(format_args!("  node {pnn}: {action:?}"));
            match action {
                Action::ReplyToClient {
                    client,
                    reqid,
                    status,
                    data,
                } => {
                    assert_eq!(status, 0);
                    assert!(
                        self.answers.insert((pnn, client.0, reqid)),
                        "call answered twice"
                    );
                    if let Some(key) = self.reads.remove(&(pnn, client.0, reqid)) {
                        // The daemon's answer is the value as of now.
                        self.check_read(pnn, &key, &data, "answered by the daemon");
                        self.daemon_reads += 1;
                    }
                }
                Action::Revoke {
                    key,
                    generation,
                    nodes,
                    record,
                } => {
                    assert_eq!(generation, self.view[pnn as usize].generation);
                    assert!(self.readonly, "a revocation without delegations");
                    for node in nodes {
                        assert_ne!(node, pnn, "a dmaster revoking its own copy");
                        let n = &mut self.nodes[pnn as usize];
                        let token = n.next_token;
                        n.next_token += 1;
                        n.revoking.insert(token, (key.clone(), generation, node));
                        let msg = Msg::UpdateRecord {
                            token,
                            generation,
                            key: key.clone(),
                            record: record.clone(),
                        };
                        self.send(pnn, node, msg);
                    }
                }
                Action::CopyUpdated { to, token, ok } => {
                    if ok {
                        self.revocations += 1;
                    }
                    self.send(pnn, to, Msg::UpdateReply { token, ok });
                }
                Action::StartTimer { id, .. } => self.nodes[pnn as usize].timers.push(id),
                Action::Send {
                    to,
                    generation,
                    message,
                } => {
                    assert_eq!(generation, self.view[pnn as usize].generation);
                    assert_ne!(to, pnn, "a node sent a migration message to itself");
                    self.send(pnn, to, Msg::Migration(generation, message));
                }
                Action::WaitForLock { key } => {
                    let node = &mut self.nodes[pnn as usize];
                    assert!(
                        !node.lock_waits.contains(&key),
                        "two lock waits for one key"
                    );
                    node.lock_waits.push(key);
                }
                Action::RecoveryNeeded { reason } => panic!("recovery needed: {reason}"),
            }
        }
    }

    /// One random step; `false` when nothing is left to do.
    fn step(&mut self) -> bool {
        self.steps += 1;
        let mut choices: Vec<u32> = Vec::new();
        let links: Vec<(u32, u32)> = self
            .links
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        let waits: Vec<(u32, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(n, node)| (0..node.lock_waits.len()).map(move |i| (n as u32, i)))
            .collect();
        let smbds: Vec<(u32, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(n, node)| {
                node.smbds
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, s))| *s != Smbd::Idle { left: 0 })
                    .map(move |(i, _)| (n as u32, i))
            })
            .collect();
        if !links.is_empty() {
            choices.push(0);
        }
        if !waits.is_empty() {
            choices.push(1);
        }
        if !smbds.is_empty() {
            choices.push(2);
            if self.vacuum {
                choices.push(3);
            }
        }
        let timers: Vec<(u32, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(n, node)| (0..node.timers.len()).map(move |i| (n as u32, i)))
            .collect();
        if !timers.is_empty() {
            choices.push(4);
        }
        if choices.is_empty() {
            return false;
        }
        let nobody_holds = self.nodes.iter().all(|n| n.store.smbd_locks.is_empty());
        if self.recoveries && nobody_holds && self.below(50) == 0 {
            self.recover();
            self.check_one_dmaster();
            return true;
        }
        match choices[self.below(choices.len() as u64) as usize] {
            0 => {
                let (from, to) = links[self.below(links.len() as u64) as usize];
                let msg = self
                    .links
                    .get_mut(&(from, to))
                    .unwrap()
                    .pop_front()
                    .unwrap();
                self.deliver(from, to, msg);
            }
            1 => {
                let (pnn, i) = waits[self.below(waits.len() as u64) as usize];
                let node = &mut self.nodes[pnn as usize];
                let key = node.lock_waits[i].clone();
                // The helper gets the lock only once nobody holds it.
                if node.store.smbd_locks.contains(&key) || node.store.daemon_locks.contains(&key) {
                    return true;
                }
                node.lock_waits.remove(i);
                node.store.daemon_locks.insert(key.clone());
                let view = self.view[pnn as usize].clone();
                let actions = node.db.lock_acquired(&view, &mut node.store, &key);
                self.apply(pnn, actions);
            }
            2 => {
                let (pnn, i) = smbds[self.below(smbds.len() as u64) as usize];
                self.smbd_step(pnn, i);
            }
            4 => {
                let (pnn, i) = timers[self.below(timers.len() as u64) as usize];
                let view = self.view[pnn as usize].clone();
                let node = &mut self.nodes[pnn as usize];
                let id = node.timers.remove(i);
                trace(format_args!("step {}: node {pnn} timer {id}", self.steps));
                let actions = node.db.timer_fired(&view, &mut node.store, id);
                self.apply(pnn, actions);
            }
            _ => {
                let pnn = self.below(self.nodes.len() as u64) as u32;
                self.vacuum_run(pnn);
            }
        }
        self.check_one_dmaster();
        true
    }

    fn send(&mut self, from: u32, to: u32, msg: Msg) {
        self.links.entry((from, to)).or_default().push_back(msg);
    }

    /// Node `to` takes the next message from `from`.
    fn deliver(&mut self, from: u32, to: u32, msg: Msg) {
        trace(format_args!("step {}: {from} -> {to}: {msg:?}", self.steps));
        let view = self.view[to as usize].clone();
        let node = &mut self.nodes[to as usize];
        match msg {
            Msg::Migration(generation, message) => {
                let actions =
                    node.db
                        .node_message(&view, &mut node.store, from, generation, message);
                self.apply(to, actions);
            }
            Msg::VacuumFetch(records) => {
                // Bring each record here with a migration call, as the daemon does.
                for key in node.vacuum.fetched(&view, records) {
                    let node = &mut self.nodes[to as usize];
                    let reqid = node.next_reqid;
                    node.next_reqid += 1;
                    let call = Call {
                        callid: CALL_NULL,
                        flags: call_flags::IMMEDIATE_MIGRATION | call_flags::VACUUM_MIGRATION,
                        key,
                        calldata: Vec::new(),
                    };
                    let actions =
                        node.db
                            .client_call(&view, &mut node.store, VACUUM_CLIENT, reqid, call);
                    self.apply(to, actions);
                }
            }
            Msg::TryDelete { run, records } => {
                // A request from before a recovery may name a record this node
                // has become dmaster of since: that copy must stay.
                let own: Vec<Vec<u8>> = records
                    .iter()
                    .filter(|r| {
                        node.store
                            .records
                            .get(&r.key)
                            .is_some_and(|copy| copy.header.dmaster == to)
                    })
                    .map(|r| r.key.clone())
                    .collect();
                let refused = vacuum::try_delete(&view, &mut node.store, records).unwrap();
                for key in own {
                    assert!(
                        node.store.records.contains_key(&key),
                        "node {to} deleted {key:?}, which it is dmaster of"
                    );
                }
                let refused = refused.into_iter().map(|c| c.key).collect();
                self.send(to, from, Msg::TryDeleteReply { run, refused });
            }
            Msg::UpdateRecord {
                token,
                generation,
                key,
                record,
            } => {
                let actions = node.db.update_copy(
                    &view,
                    &mut node.store,
                    from,
                    generation,
                    token,
                    key,
                    record,
                );
                self.apply(to, actions);
            }
            Msg::UpdateReply { token, ok } => {
                let (key, generation, delegate) =
                    node.revoking.remove(&token).expect("a revocation's answer");
                assert_eq!(delegate, from);
                let actions =
                    node.db
                        .revoke_answered(&view, &mut node.store, &key, generation, from, ok);
                self.apply(to, actions);
            }
            Msg::TryDeleteReply { run, refused } => {
                if let Some((id, delete_run)) = &mut node.delete_run {
                    if *id == run {
                        delete_run.answered(from, refused);
                    }
                }
                self.maybe_finish_delete(to);
            }
        }
    }

    /// A vacuum run on node `pnn`: plan, hand records to their lmasters, and ask
    /// the others to delete what this node is lmaster of.
    fn vacuum_run(&mut self, pnn: u32) {
        let view = self.view[pnn as usize].clone();
        let node = &mut self.nodes[pnn as usize];
        if node.delete_run.is_some() {
            return;
        }
        let traversed: Vec<Vec<u8>> = if node.vacuum.next_run_is_full(3) {
            node.store.records.keys().cloned().collect()
        } else {
            Vec::new()
        };
        let plan = node.vacuum.plan(&view, &mut node.store, traversed).unwrap();
        for (lmaster, records) in plan.fetch {
            self.send(pnn, lmaster, Msg::VacuumFetch(records));
        }
        if plan.delete.is_empty() {
            return;
        }
        let others: Vec<u32> = (0..self.nodes.len() as u32).filter(|n| *n != pnn).collect();
        let run = DeleteRun::start(&view, plan.delete, &others);
        let id = self.next_vacuum_run;
        self.next_vacuum_run += 1;
        for other in run.waiting_for().collect::<Vec<_>>() {
            let records = run.request();
            self.send(pnn, other, Msg::TryDelete { run: id, records });
        }
        self.nodes[pnn as usize].delete_run = Some((id, run));
        self.maybe_finish_delete(pnn);
    }

    /// Node `pnn`'s deletion, once every node answered: delete, and check that
    /// nothing deleted had a newer value.
    fn maybe_finish_delete(&mut self, pnn: u32) {
        let view = self.view[pnn as usize].clone();
        let node = &mut self.nodes[pnn as usize];
        if !node
            .delete_run
            .as_ref()
            .is_some_and(|(_, run)| run.is_complete())
        {
            return;
        }
        let (_, run) = node.delete_run.take().unwrap();
        let done = run.finish(&view, &mut node.store).unwrap();
        for key in &done.deleted {
            let newest = self.newest.get(key).map_or(&[][..], |v| &v[..]);
            assert!(
                newest.is_empty(),
                "node {pnn} vacuumed {key:?} whose newest value is {newest:?} (step {})",
                self.steps
            );
        }
        self.vacuumed += done.deleted.len() as u64;
    }

    /// A recovery led by a random node: freeze, pull, merge, push, new generation.
    fn recover(&mut self) {
        let leader = self.below(self.nodes.len() as u64) as u32;
        let generation = self.view[0].generation + 1;
        for (pnn, node) in self.nodes.iter_mut().enumerate() {
            self.view[pnn].recovering = true;
            let actions = node.db.view_changed(&self.view[pnn], &mut node.store);
            assert!(actions.is_empty(), "a frozen node acted: {actions:?}");
        }
        trace(format_args!(
            "step {}: recovery led by {leader}, generation {generation}",
            self.steps
        ));
        let mut merge = recovery::VolatileMerge::new(leader);
        for (pnn, node) in self.nodes.iter().enumerate() {
            for (key, record) in &node.store.records {
                trace(format_args!(
                    "  node {pnn} has {key:?}: {:?} {:?}",
                    record.header, record.value
                ));
                merge.add(key, &ltdb::encode(&record.header, &record.value));
            }
        }
        let merged = merge.finish();
        for (key, pushed) in merged.iter() {
            trace(format_args!("  pushed {key:?}: {:?}", ltdb::decode(pushed)));
        }
        for (pnn, node) in self.nodes.iter_mut().enumerate() {
            node.store.records = merged
                .iter()
                .map(|(key, pushed)| {
                    let stored = recovery::as_stored_by(pnn as u32, true, pushed).unwrap();
                    let (header, value) = ltdb::decode(&stored).unwrap();
                    (
                        key.to_vec(),
                        Record {
                            header,
                            value: value.to_vec(),
                        },
                    )
                })
                .collect();
        }
        self.recovered += 1;
        for pnn in 0..self.nodes.len() {
            self.view[pnn].recovering = false;
            self.view[pnn].generation = generation;
            let node = &mut self.nodes[pnn];
            let actions = node.db.view_changed(&self.view[pnn], &mut node.store);
            self.apply(pnn as u32, actions);
        }
    }

    /// The simulated smbd `i` of node `pnn` does its next thing.
    fn smbd_step(&mut self, pnn: u32, i: usize) {
        let hold_for = 1 + self.below(4) as u32;
        let view = self.view[pnn as usize].clone();
        let node = &mut self.nodes[pnn as usize];
        let (key, state) = node.smbds[i].clone();
        let client = ClientId(i as u32 + 1);
        if node.readers[i] {
            self.reader_step(pnn, i);
            return;
        }
        match state {
            Smbd::Idle { left } => {
                // fetch_locked: lock the chain; use the record if it is ours and
                // nobody holds a read-only copy of it (§3.1).
                if node.store.smbd_locks.contains(&key) || node.store.daemon_locks.contains(&key) {
                    return;
                }
                let ours = node.store.records.get(&key).is_some_and(|r| {
                    r.header.dmaster == pnn && !r.header.has(rec_flags::RO_HAVE_DELEGATIONS)
                });
                if ours {
                    self.check_no_delegation_left(pnn, &key);
                    let node = &mut self.nodes[pnn as usize];
                    let record = node.store.records.get_mut(&key).unwrap();
                    let count = counter(&record.value) + 1;
                    // smbd writes the value and leaves the header as it read it.
                    record.value = count.to_le_bytes().to_vec();
                    if self.vacuum && count % 3 == 0 {
                        // Every third write deletes instead: smbd stores the
                        // record empty and schedules it for deletion.
                        record.value.clear();
                        node.vacuum.schedule(&key);
                    }
                    self.newest.insert(key.clone(), record.value.clone());
                    trace(format_args!(
                        "step {}: node {pnn} smbd {i} writes {key:?}: {:?} {:?}",
                        self.steps, record.header, record.value
                    ));
                    *self.done.entry(key.clone()).or_default() += 1;
                    node.store.smbd_locks.insert(key.clone());
                    node.smbds[i].1 = Smbd::Holding {
                        steps: hold_for,
                        left: left - 1,
                    };
                    return;
                }
                let reqid = node.next_reqid;
                node.next_reqid += 1;
                node.smbds[i].1 = Smbd::Calling { reqid, left };
                let callid = if self.rng % 3 == 0 {
                    CALL_FETCH
                } else {
                    CALL_NULL
                };
                trace(format_args!(
                    "step {}: node {pnn} smbd {i} calls {reqid} for {key:?}",
                    self.steps
                ));
                let actions = node.db.client_call(
                    &view,
                    &mut node.store,
                    client,
                    reqid,
                    Call {
                        callid,
                        flags: 1,
                        key,
                        calldata: Vec::new(),
                    },
                );
                self.apply(pnn, actions);
            }
            Smbd::Calling { reqid, left } => {
                if self.answers.contains(&(pnn, client.0, reqid)) {
                    node.smbds[i].1 = Smbd::Idle { left };
                }
            }
            Smbd::Holding { steps, left } => {
                if steps > 1 {
                    node.smbds[i].1 = Smbd::Holding {
                        steps: steps - 1,
                        left,
                    };
                } else {
                    node.store.smbd_locks.remove(&key);
                    node.smbds[i].1 = Smbd::Idle { left };
                }
            }
        }
    }

    /// A reading smbd's next step: a read from a usable local copy, or one
    /// through the daemon (answered in [`Sim::apply`]).
    fn reader_step(&mut self, pnn: u32, i: usize) {
        let view = self.view[pnn as usize].clone();
        let node = &mut self.nodes[pnn as usize];
        let (key, state) = node.smbds[i].clone();
        let client = ClientId(i as u32 + 1);
        match state {
            Smbd::Idle { left } => {
                // A read holds the chain lock for as long as it parses.
                if node.store.smbd_locks.contains(&key) || node.store.daemon_locks.contains(&key) {
                    return;
                }
                let local = node.store.records.get(&key).cloned();
                let usable = local.as_ref().map(|r| {
                    (
                        r.header.dmaster == pnn,
                        r.header.has(rec_flags::RO_HAVE_READONLY),
                    )
                });
                if let (Some(record), Some((own, delegated))) = (&local, usable) {
                    if own || delegated {
                        let what = if own { "own copy" } else { "delegated copy" };
                        trace(format_args!(
                            "step {}: node {pnn} smbd {i} reads {key:?} from its {what}: {:?} {:?}",
                            self.steps, record.header, record.value
                        ));
                        self.check_read(pnn, &key, &record.value, what);
                        if own {
                            self.local_reads += 1;
                        } else {
                            self.delegated_reads += 1;
                        }
                        self.nodes[pnn as usize].smbds[i].1 = Smbd::Idle { left: left - 1 };
                        return;
                    }
                }
                let reqid = node.next_reqid;
                node.next_reqid += 1;
                node.smbds[i].1 = Smbd::Calling { reqid, left };
                // "The record seems popular": ask for a copy when one is here.
                let flags = if local.is_some() {
                    call_flags::WANT_READONLY
                } else {
                    0
                };
                self.reads.insert((pnn, client.0, reqid), key.clone());
                trace(format_args!(
                    "step {}: node {pnn} smbd {i} reads {key:?} through the daemon ({reqid}, flags {flags:#x})",
                    self.steps
                ));
                let call = Call {
                    callid: CALL_FETCH,
                    flags,
                    key,
                    calldata: Vec::new(),
                };
                let node = &mut self.nodes[pnn as usize];
                let actions = node
                    .db
                    .client_call(&view, &mut node.store, client, reqid, call);
                self.apply(pnn, actions);
            }
            Smbd::Calling { reqid, left } => {
                if self.answers.contains(&(pnn, client.0, reqid)) {
                    node.smbds[i].1 = Smbd::Idle { left: left - 1 };
                }
            }
            Smbd::Holding { .. } => unreachable!("readers never hold a record"),
        }
    }

    /// A read on node `pnn` saw `value`: it must be the newest one written.
    fn check_read(&self, pnn: u32, key: &[u8], value: &[u8], how: &str) {
        let newest = self.newest.get(key).map_or(&[][..], |v| &v[..]);
        assert_eq!(
            value, newest,
            "node {pnn} read a stale value of {key:?} from its {how} (step {})",
            self.steps
        );
    }

    /// smbd on `pnn`, the dmaster of `key`, is about to write it: no other node
    /// may still hold a delegated copy.
    fn check_no_delegation_left(&self, pnn: u32, key: &[u8]) {
        for (other, node) in self.nodes.iter().enumerate() {
            if other as u32 == pnn {
                continue;
            }
            if let Some(copy) = node.store.records.get(key) {
                assert!(
                    !copy.header.has(rec_flags::RO_HAVE_READONLY),
                    "node {pnn} writes {key:?} while node {other} holds a read-only copy \
                     (rsn {}; step {})",
                    copy.header.rsn,
                    self.steps
                );
            }
        }
    }

    /// What every node waits for, for a run that makes no progress.
    fn state(&self) -> String {
        let mut out = String::new();
        for (pnn, node) in self.nodes.iter().enumerate() {
            out += &format!(
                "\nnode {pnn}: smbds {:?}, readers {:?}, lock waits {:?}, daemon locks {:?}, \
                 smbd locks {:?}, calls in flight {}, revocations {}, timers {:?}/{}, records {:?}",
                node.smbds,
                node.readers,
                node.lock_waits,
                node.store.daemon_locks,
                node.store.smbd_locks,
                node.db.calls_in_flight(),
                node.db.revocations_in_progress(),
                node.timers,
                node.db.timers_pending(),
                node.store.records,
            );
        }
        out + &format!("\nlinks {:?}", self.links)
    }

    fn check_one_dmaster(&self) {
        let mut holders: BTreeMap<&[u8], Vec<u32>> = BTreeMap::new();
        for (pnn, node) in self.nodes.iter().enumerate() {
            for (key, record) in &node.store.records {
                if record.header.dmaster == pnn as u32 {
                    holders.entry(key).or_default().push(pnn as u32);
                }
            }
        }
        for (key, nodes) in holders {
            assert!(
                nodes.len() <= 1,
                "key {key:?} has dmasters {nodes:?} after step {}",
                self.steps
            );
        }
    }

    /// The copies of `key` held by the node each names as its dmaster.
    fn dmaster_copies(&self, key: &[u8]) -> Vec<&Record> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(pnn, n)| {
                n.store
                    .records
                    .get(key)
                    .filter(|r| r.header.dmaster == pnn as u32)
            })
            .collect()
    }

    fn check_end(&self) {
        for (pnn, node) in self.nodes.iter().enumerate() {
            assert!(
                node.lock_waits.is_empty(),
                "node {pnn} still waits for a lock"
            );
            assert_eq!(
                node.db.calls_in_flight(),
                0,
                "node {pnn} has calls in flight"
            );
            for (key, state) in &node.smbds {
                assert_eq!(
                    *state,
                    Smbd::Idle { left: 0 },
                    "node {pnn}'s smbd on {key:?} is stuck"
                );
            }
            assert_eq!(
                node.db.revocations_in_progress(),
                0,
                "node {pnn} is still revoking"
            );
            assert!(node.timers.is_empty() && node.db.timers_pending() == 0);
            assert!(
                node.revoking.is_empty(),
                "node {pnn} waits for a revocation"
            );
        }
        assert!(
            self.reads.is_empty(),
            "reads not answered: {:?}",
            self.reads
        );
        for (key, newest) in &self.newest {
            let dmasters = self.dmaster_copies(key);
            assert!(dmasters.len() <= 1, "key {key:?} has two dmasters");
            match dmasters.first() {
                Some(record) => assert_eq!(
                    &record.value, newest,
                    "the newest value of {key:?} was lost"
                ),
                None => assert!(
                    newest.is_empty(),
                    "{key:?} with value {newest:?} is gone from every node"
                ),
            }
        }
        if self.vacuum {
            return;
        }
        for (key, increments) in &self.done {
            let dmasters = self.dmaster_copies(key);
            assert_eq!(dmasters.len(), 1, "key {key:?} has no dmaster at the end");
            assert_eq!(
                counter(&dmasters[0].value),
                *increments,
                "an increment of {key:?} was lost in a hand-over"
            );
        }
    }
}

fn counter(value: &[u8]) -> u64 {
    if value.is_empty() {
        0
    } else {
        u64::from_le_bytes(value.try_into().expect("an 8-byte counter"))
    }
}

fn run(nodes: u32, keys: &[&[u8]], smbds: usize, increments: u32, seed: u64) {
    run_with(nodes, keys, smbds, increments, seed, false);
}

/// Given three nodes contending for two records, when the cluster recovers
/// several times in the middle, then nothing is lost (and it did recover).
#[test]
fn recoveries_during_contention_lose_nothing() {
    let recovered = run_with(3, &[b"a", b"b"], 3, 8, 7, true);
    assert!(recovered >= 2, "only {recovered} recoveries happened");
}

/// Runs a simulation to its end and checks it; returns how many recoveries it had.
fn run_with(
    nodes: u32,
    keys: &[&[u8]],
    smbds: usize,
    increments: u32,
    seed: u64,
    recoveries: bool,
) -> u32 {
    let mut sim = Sim::new(nodes, keys, smbds, increments, seed);
    sim.recoveries = recoveries;
    let limit = 200_000;
    while sim.step() {
        assert!(
            sim.steps < limit,
            "no progress after {limit} steps: {}",
            sim.state()
        );
    }
    sim.check_end();
    sim.recovered
}

/// Runs a simulation with deletes and vacuum runs to its end, checks it, then
/// vacuums a few times with nothing else going on and checks that no copy of a
/// deleted record is left anywhere. Returns how many records vacuum runs
/// deleted while the smbds worked, and in all.
fn run_vacuuming(
    nodes: u32,
    keys: &[&[u8]],
    smbds: usize,
    increments: u32,
    seed: u64,
    recoveries: bool,
) -> (u64, u64) {
    let mut sim = Sim::new(nodes, keys, smbds, increments, seed);
    sim.recoveries = recoveries;
    sim.vacuum = true;
    let limit = 200_000;
    while sim.step() {
        assert!(
            sim.steps < limit,
            "no progress after {limit} steps: {}",
            sim.state()
        );
    }
    sim.check_end();
    let while_busy = sim.vacuumed;
    // Quiet runs: a hand-over to the lmaster, then its deletion everywhere.
    for _ in 0..3 {
        for pnn in 0..nodes {
            sim.vacuum_run(pnn);
            while sim.step() {
                assert!(
                    sim.steps < limit,
                    "no progress after {limit} steps: {}",
                    sim.state()
                );
            }
        }
    }
    sim.check_end();
    for (key, newest) in &sim.newest {
        for (pnn, node) in sim.nodes.iter().enumerate() {
            if newest.is_empty() {
                assert!(
                    !node.store.records.contains_key(key),
                    "node {pnn} still holds deleted {key:?} after quiet vacuum runs"
                );
            }
        }
    }
    (while_busy, sim.vacuumed)
}

/// Given three nodes whose smbds write and delete two records, when nodes
/// vacuum in between, then no record with a value is ever vacuumed, none is
/// lost, and the deleted ones are gone from every node at the end.
#[test]
fn vacuuming_during_contention_removes_only_deleted_records() {
    let (while_busy, total) = run_vacuuming(3, &[b"a", b"b"], 2, 9, 11, false);
    assert!(total > 0, "nothing was vacuumed (busy: {while_busy})");
}

/// The same with recoveries in the middle.
#[test]
fn vacuuming_with_recoveries_removes_only_deleted_records() {
    run_vacuuming(3, &[b"a", b"b", b"c"], 2, 9, 5, true);
}

/// How a read-only run went: reads from delegated copies, copies revoked.
struct ReadonlyRun {
    delegated_reads: u64,
    daemon_reads: u64,
    revocations: u64,
}

/// Runs a simulation of a read-only database to its end and checks it: every
/// node's smbds alternate between writers and readers (the first smbd of each
/// node writes, so records keep changing under the readers).
fn run_readonly(
    nodes: u32,
    keys: &[&[u8]],
    smbds: usize,
    increments: u32,
    seed: u64,
    recoveries: bool,
) -> ReadonlyRun {
    let mut sim = Sim::new(nodes, keys, smbds, increments, seed);
    sim.recoveries = recoveries;
    sim.readonly = true;
    for node in &mut sim.nodes {
        node.db.set_readonly();
        for (i, reader) in node.readers.iter_mut().enumerate() {
            *reader = i % 2 == 1;
        }
    }
    let limit = 400_000;
    while sim.step() {
        assert!(
            sim.steps < limit,
            "no progress after {limit} steps: {}",
            sim.state()
        );
    }
    sim.check_end();
    ReadonlyRun {
        delegated_reads: sim.delegated_reads,
        daemon_reads: sim.daemon_reads,
        revocations: sim.revocations,
    }
}

/// Given three nodes of a read-only database, writers and readers on each, on
/// one record: reads are served from delegated copies, writes revoke them, and
/// no read ever sees a value older than the newest write.
#[test]
fn readers_get_delegations_and_writers_revoke_them() {
    let run = run_readonly(3, &[b"netlogon creds"], 4, 12, 3, false);
    assert!(run.delegated_reads > 0, "no read used a delegation");
    assert!(run.revocations > 0, "no delegation was revoked");
    assert!(run.daemon_reads > 0);
}

/// The same with recoveries in the middle: a recovery drops every delegation
/// (and revocations in progress fail and start over), and still no read is
/// stale and no write lost.
#[test]
fn delegations_across_recoveries_stay_consistent() {
    run_readonly(3, &[b"a", b"b"], 4, 10, 19, true);
}

/// The cases of `delegations_never_serve_a_stale_value` that once failed: a
/// revocation sent before a recovery stored a stale copy over a newer one,
/// which then won the next recovery's merge (a stale read); and a write that
/// waited for a revocation across a recovery was lost when a new revocation
/// of the record replaced the old one (no progress).
#[test]
fn delegations_across_recoveries_known_failures() {
    let names: [&[u8]; 3] = [b"a", b"file 2", b"share-mode:xyz"];
    run_readonly(4, &names, 3, 6, 7391451781727746998, true);
    run_readonly(4, &names[..1], 4, 6, 11988853517603682032, true);
}

/// Given one smbd on the node that is not the key's lmaster, when it increments a
/// record that exists nowhere yet, then the record comes to it and keeps its count.
#[test]
fn a_lone_smbd_gets_a_new_record() {
    run(3, &[b"file-id-1"], 1, 3, 1);
}

/// Given smbds on every node wanting the same record, when they take turns, then
/// no increment is lost and the record never has two dmasters.
#[test]
fn smbds_on_every_node_share_one_record() {
    run(3, &[b"locking.tdb key"], 2, 5, 42);
}

/// Given an smbd that holds a record, when another node asks for it, then the
/// record leaves only after the smbd lets go (the daemon waits for the chain lock).
#[test]
fn a_held_record_does_not_leave_until_released() {
    let view = |pnn| View {
        pnn,
        generation: GENERATION,
        vnn_map: vec![0, 1],
        recovering: false,
    };
    let key = b"k".to_vec();
    let mut owner = Database::new(1);
    let mut store = MemStore::default();
    store.records.insert(
        key.clone(),
        Record {
            header: LtdbHeader::new(5, 0),
            value: b"v".to_vec(),
        },
    );
    store.smbd_locks.insert(key.clone());
    let call = NodeMessage::Call {
        origin: 1,
        reqid: 9,
        hopcount: 0,
        call: Call {
            callid: CALL_NULL,
            flags: 1,
            key: key.clone(),
            calldata: Vec::new(),
        },
    };
    let actions = owner.node_message(&view(0), &mut store, 1, GENERATION, call);
    assert_eq!(actions, vec![Action::WaitForLock { key: key.clone() }]);
    assert_eq!(store.records[&key].header.dmaster, 0, "moved while held");
    store.smbd_locks.remove(&key);
    store.daemon_locks.insert(key.clone());
    let actions = owner.lock_acquired(&view(0), &mut store, &key);
    assert!(
        matches!(
            &actions[..],
            [Action::Send {
                to: 1,
                message: NodeMessage::DmasterReply { .. } | NodeMessage::Dmaster { .. },
                ..
            }]
        ),
        "{actions:?}"
    );
    assert_eq!(store.records[&key].header.dmaster, 1);
}

/// Given two calls from smbds on one node for the same remote record, then only
/// one goes out on the network (fetch collapse), and both are answered.
#[test]
fn calls_for_one_record_collapse_into_one_migration() {
    let view = View {
        pnn: 0,
        generation: GENERATION,
        vnn_map: vec![1],
        recovering: false,
    };
    let mut db = Database::new(1);
    let mut store = MemStore::default();
    let call = |reqid| {
        Call {
            callid: CALL_NULL,
            flags: 1,
            key: b"k".to_vec(),
            calldata: Vec::new(),
        }
        .with_reqid(reqid)
    };
    let first = db.client_call(&view, &mut store, ClientId(1), 1, call(1));
    let second = db.client_call(&view, &mut store, ClientId(2), 2, call(2));
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(second.is_empty(), "second call went out too: {second:?}");
    let Action::Send {
        message: NodeMessage::Call { reqid, .. },
        ..
    } = &first[0]
    else {
        panic!("{first:?}")
    };
    let reply = NodeMessage::DmasterReply {
        reqid: *reqid,
        key: b"k".to_vec(),
        rsn: 3,
        flags: 0,
        value: Vec::new(),
    };
    let done = db.node_message(&view, &mut store, 1, GENERATION, reply);
    let answered: Vec<u32> = done
        .iter()
        .filter_map(|a| match a {
            Action::ReplyToClient { client, .. } => Some(client.0),
            _ => None,
        })
        .collect();
    assert_eq!(answered, vec![1, 2], "{done:?}");
}

/// Given a call in flight when a recovery ends with a new generation, then the call
/// starts again in the new generation and a late answer of the old one is dropped.
#[test]
fn calls_in_flight_start_again_after_a_recovery() {
    let mut view = View {
        pnn: 0,
        generation: GENERATION,
        vnn_map: vec![1],
        recovering: false,
    };
    let mut db = Database::new(1);
    let mut store = MemStore::default();
    let call = Call {
        callid: CALL_NULL,
        flags: 1,
        key: b"k".to_vec(),
        calldata: Vec::new(),
    };
    let sent = db.client_call(&view, &mut store, ClientId(1), 1, call);
    assert_eq!(sent.len(), 1);
    view.recovering = true;
    assert!(db.view_changed(&view, &mut store).is_empty());
    view.recovering = false;
    view.generation = GENERATION + 1;
    let again = db.view_changed(&view, &mut store);
    assert!(
        matches!(&again[..], [Action::Send { to: 1, generation, message: NodeMessage::Call { .. } }] if *generation == GENERATION + 1),
        "{again:?}"
    );
    let stale = NodeMessage::DmasterReply {
        reqid: 1,
        key: b"k".to_vec(),
        rsn: 3,
        flags: 0,
        value: Vec::new(),
    };
    assert!(db
        .node_message(&view, &mut store, 1, GENERATION, stale)
        .is_empty());
}

trait WithReqid {
    fn with_reqid(self, reqid: u32) -> Self;
}

impl WithReqid for Call {
    /// Tags a test call's data with its request id, to tell calls apart in
    /// failure messages.
    fn with_reqid(mut self, reqid: u32) -> Self {
        self.calldata = reqid.to_le_bytes().to_vec();
        self
    }
}

/// Prints the story of a run when SIM_TRACE is set (to read a failing seed).
fn trace(what: std::fmt::Arguments) {
    if std::env::var_os("SIM_TRACE").is_some() {
        eprintln!("{what}");
    }
}

/// A generated case's parameters.
#[derive(Debug, Clone, Copy)]
struct Case {
    seed: u64,
    nodes: u32,
    keys: usize,
    smbds: usize,
    recoveries: bool,
}

impl Case {
    /// The generated case, or the one named by `SIM_SEED`, `SIM_NODES`,
    /// `SIM_KEYS`, `SIM_SMBDS` and `SIM_RECOVERIES` (each overrides its own
    /// parameter), to read a failure's story:
    /// `SIM_SEED=n SIM_NODES=4 SIM_KEYS=3 SIM_SMBDS=3 SIM_RECOVERIES=true SIM_CASES=10
    /// SIM_TRACE=1 cargo test -p ctdbd --test sim_records delegations_never`.
    fn named_or(self) -> Self {
        fn named<T: std::str::FromStr>(name: &str) -> Option<T>
        where
            T::Err: std::fmt::Display,
        {
            std::env::var(name)
                .ok()
                .map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")))
        }
        Self {
            seed: named("SIM_SEED").unwrap_or(self.seed),
            nodes: named("SIM_NODES").unwrap_or(self.nodes),
            keys: named("SIM_KEYS").unwrap_or(self.keys),
            smbds: named("SIM_SMBDS").unwrap_or(self.smbds),
            recoveries: named("SIM_RECOVERIES").unwrap_or(self.recoveries),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("SIM_CASES").ok().and_then(|v| v.parse().ok()).map_or(200, |n: u32| n / 10)
    ))]

    /// Given 2–5 nodes, a few keys and smbds on every node incrementing them in a
    /// random interleaving, then no record ever has two dmasters and no increment
    /// is lost.
    #[test]
    fn random_contention_loses_no_update(
        seed in any::<u64>(),
        nodes in 2u32..=5,
        keys in 1usize..=4,
        smbds in 1usize..=3,
    ) {
        let names: [&[u8]; 4] = [b"a", b"file 2", b"\x00\x01\x02", b"share-mode:xyz"];
        let c = Case { seed, nodes, keys, smbds, recoveries: false }.named_or();
        run(c.nodes, &names[..c.keys], c.smbds, 4, c.seed);
    }

    /// The same with recoveries at random moments: a record caught between two
    /// nodes, or a call in flight, loses nothing, and after each recovery the
    /// leader is the one dmaster of every record.
    #[test]
    fn recoveries_in_the_middle_lose_no_update(
        seed in any::<u64>(),
        nodes in 2u32..=4,
        keys in 1usize..=3,
        smbds in 1usize..=3,
    ) {
        let names: [&[u8]; 3] = [b"a", b"file 2", b"share-mode:xyz"];
        let c = Case { seed, nodes, keys, smbds, recoveries: true }.named_or();
        run_with(c.nodes, &names[..c.keys], c.smbds, 6, c.seed, c.recoveries);
    }

    /// Given 2–4 nodes of a read-only database whose smbds write and read a
    /// few records in a random interleaving (and recoveries, half of the time),
    /// then no read sees a stale value, no write happens while a delegated copy
    /// is left anywhere, no write is lost, and nothing waits at the end.
    #[test]
    fn delegations_never_serve_a_stale_value(
        seed in any::<u64>(),
        nodes in 2u32..=4,
        keys in 1usize..=3,
        smbds in 2usize..=4,
        recoveries in any::<bool>(),
    ) {
        let names: [&[u8]; 3] = [b"a", b"file 2", b"share-mode:xyz"];
        let c = Case { seed, nodes, keys, smbds, recoveries }.named_or();
        run_readonly(c.nodes, &names[..c.keys], c.smbds, 6, c.seed, c.recoveries);
    }

    /// Given 1–4 nodes whose smbds write and delete records in a random
    /// interleaving with vacuum runs on every node (and recoveries, half of the
    /// time), then vacuuming never removes a record whose newest value is not
    /// empty, no record is lost, and quiet runs at the end remove every deleted
    /// record from every node.
    #[test]
    fn vacuuming_never_removes_a_record_with_a_value(
        seed in any::<u64>(),
        nodes in 1u32..=4,
        keys in 1usize..=3,
        smbds in 1usize..=3,
        recoveries in any::<bool>(),
    ) {
        let names: [&[u8]; 3] = [b"a", b"file 2", b"share-mode:xyz"];
        let c = Case { seed, nodes, keys, smbds, recoveries }.named_or();
        run_vacuuming(c.nodes, &names[..c.keys], c.smbds, 9, c.seed, c.recoveries);
    }
}
