//! Database recovery (`ctdbd::db::recovery_run`) and persistent commits
//! (`ctdbd::db::commit`) in a deterministic simulation with node deaths and
//! restarts. Each node has a persistent database (smbd's secrets or registry)
//! and a volatile one; clients commit transactions through random nodes, one
//! at a time per database as smbd's g_lock makes them; nodes die and come back at
//! random (a restarted node keeps its persistent file, loses its volatile one
//! and its freezes); the lowest living node leads and recovers whenever the
//! membership changes or a commit failed. Messages between two nodes arrive in
//! order (one TCP stream each way), the rest of the interleaving is chosen by a
//! seeded generator.
//!
//! Checked at the end of every successful recovery and after the cluster
//! settles:
//! - every node of the recovery holds the same databases and an identical copy
//!   of the persistent one;
//! - an acknowledged write survives while one node that had it has stayed alive
//!   since: every node of the recovery then holds that write or a later one of
//!   the same key.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ctdbd::db::commit::{self, Commits, Outcome};
use ctdbd::db::hash::db_id;
use ctdbd::db::ltdb::{self, LtdbHeader};
use ctdbd::db::recovery::{self, SEQNUM_KEY};
use ctdbd::db::recovery_run::{Answer, Progress, RecoveryRun, Request};
use ctdbd::protocol::control::INVALID_GENERATION;
use proptest::prelude::*;

/// A database's records: key and stored value.
type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Records a node sends in one batch of a pull.
const PULL_BATCH: usize = 2;
/// The largest batch of a push, in marshall buffer bytes: a few records.
const BATCH_LIMIT: usize = 200;

const PERSISTENT: &str = "secrets.tdb";
const VOLATILE: &str = "locking.tdb";

/// One transaction a client committed: the write id it stored under its key.
#[derive(Debug, Clone)]
struct Txn {
    id: u64,
    key: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Msg {
    Recovery {
        reqid: u32,
        request: Request,
        generation: u32,
    },
    RecoveryReply {
        reqid: u32,
        answer: Result<Answer, i32>,
    },
    /// A batch of a recovery's pull, to the leader, before the pull's reply.
    Pulled {
        generation: u32,
        db_id: u32,
        records: Records,
    },
    Update {
        reqid: u32,
        db_id: u32,
        records: Records,
        txn: u64,
    },
    UpdateReply {
        reqid: u32,
        ok: bool,
    },
}

#[derive(Debug, Default, Clone)]
struct Db {
    persistent: bool,
    name: String,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Debug)]
struct Node {
    alive: bool,
    dbs: BTreeMap<u32, Db>,
    /// Frozen databases and the generation that thaws them.
    frozen: BTreeMap<u32, u32>,
    /// A recovery's push in progress into a frozen database: its generation
    /// and what it staged (nothing stored before the confirm).
    pushing: BTreeMap<u32, (u32, Records)>,
    generation: u32,
    recovering: bool,
    vnn_map: Vec<u32>,
    commits: Commits<Txn>,
}

/// What is promised about a key: its last acknowledged write and the nodes
/// known to hold it (alive since they got it).
#[derive(Debug)]
struct Promise {
    write: u64,
    holders: BTreeSet<u32>,
}

struct Sim {
    nodes: Vec<Node>,
    links: BTreeMap<(u32, u32), VecDeque<Msg>>,
    rng: u64,
    next_reqid: u32,
    next_generation: u32,
    next_write: u64,
    /// The leader's recovery in progress (the leader is the lowest living node).
    run: Option<(u32, RecoveryRun)>,
    recovery_wanted: bool,
    /// A commit is in flight (smbd's g_lock on the database: one at a time
    /// cluster-wide), and which nodes stored each write so far.
    g_lock: bool,
    stored_on: BTreeMap<u64, BTreeSet<u32>>,
    promises: BTreeMap<Vec<u8>, Promise>,
    recoveries: u32,
    acknowledged: u32,
}

/// Prints the story of a run when SIM_TRACE is set (to read a failing seed).
fn trace(what: std::fmt::Arguments) {
    if std::env::var_os("SIM_TRACE").is_some() {
        eprintln!("{what}");
    }
}

fn persistent_id() -> u32 {
    db_id(PERSISTENT)
}

fn write_of(stored: &[u8]) -> u64 {
    let (_, value) = ltdb::decode(stored).expect("valid record");
    u64::from_le_bytes(value.try_into().expect("a write id"))
}

impl Sim {
    fn new(nodes: u32, seed: u64) -> Self {
        let dbs = BTreeMap::from([
            (
                persistent_id(),
                Db {
                    persistent: true,
                    name: PERSISTENT.into(),
                    records: BTreeMap::new(),
                },
            ),
            (
                db_id(VOLATILE),
                Db {
                    persistent: false,
                    name: VOLATILE.into(),
                    records: BTreeMap::new(),
                },
            ),
        ]);
        let vnn_map: Vec<u32> = (0..nodes).collect();
        Sim {
            nodes: (0..nodes)
                .map(|_| Node {
                    alive: true,
                    dbs: dbs.clone(),
                    frozen: BTreeMap::new(),
                    pushing: BTreeMap::new(),
                    generation: 2,
                    recovering: false,
                    vnn_map: vnn_map.clone(),
                    commits: Commits::default(),
                })
                .collect(),
            links: BTreeMap::new(),
            rng: seed | 1,
            next_reqid: 1,
            next_generation: 3,
            next_write: 1,
            run: None,
            recovery_wanted: false,
            g_lock: false,
            stored_on: BTreeMap::new(),
            promises: BTreeMap::new(),
            recoveries: 0,
            acknowledged: 0,
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    fn alive(&self) -> Vec<u32> {
        (0..self.nodes.len() as u32)
            .filter(|p| self.nodes[*p as usize].alive)
            .collect()
    }

    fn leader(&self) -> Option<u32> {
        self.alive().first().copied()
    }

    fn node(&mut self, pnn: u32) -> &mut Node {
        &mut self.nodes[pnn as usize]
    }

    fn send(&mut self, from: u32, to: u32, msg: Msg) {
        self.links.entry((from, to)).or_default().push_back(msg);
    }

    fn reqids(next: &mut u32) -> impl FnMut() -> u32 + '_ {
        move || {
            *next += 1;
            *next
        }
    }

    // ---- the leader ---------------------------------------------------------------

    /// The leader starts a recovery when the membership changed or one was asked for.
    fn maybe_recover(&mut self) {
        let Some(leader) = self.leader() else { return };
        if self.run.as_ref().is_some_and(|(l, _)| *l == leader) {
            return;
        }
        let alive = self.alive();
        let settled = alive.iter().all(|p| {
            let n = &self.nodes[*p as usize];
            n.vnn_map == alive && !n.recovering
        });
        if settled && !self.recovery_wanted {
            return;
        }
        self.recovery_wanted = false;
        // SET_RECMODE active on every node, then the databases.
        for p in &alive {
            self.node(*p).recovering = true;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let (run, progress) = RecoveryRun::start(
            leader,
            generation,
            alive,
            BATCH_LIMIT,
            &mut Self::reqids(&mut self.next_reqid),
        );
        trace(format_args!("recovery by {leader}: {:?}", run.nodes()));
        self.run = Some((leader, run));
        self.progress(progress);
    }

    fn progress(&mut self, progress: Progress) {
        let Some((leader, run)) = &self.run else {
            return;
        };
        let (leader, generation) = (*leader, run.generation());
        match progress {
            Progress::Send(sends) => {
                for s in sends {
                    let msg = Msg::Recovery {
                        reqid: s.reqid,
                        request: s.request,
                        generation,
                    };
                    self.send(leader, s.to, msg);
                }
            }
            Progress::Finished(Ok(())) => {
                let (_, run) = self.run.take().expect("running");
                self.install(&run);
            }
            Progress::Finished(Err(_)) => {
                self.run = None;
                self.recovery_wanted = true;
            }
        }
    }

    /// The new generation goes to the nodes of the recovery; frozen databases
    /// thaw; recovery mode back to normal.
    fn install(&mut self, run: &RecoveryRun) {
        trace(format_args!(
            "installed {} {:?}",
            run.generation(),
            run.nodes()
        ));
        self.recoveries += 1;
        let nodes = run.nodes().to_vec();
        let generation = run.generation();
        for p in &nodes {
            let node = self.node(*p);
            node.generation = generation;
            node.vnn_map = nodes.clone();
            node.recovering = false;
            node.frozen.retain(|_, thaw_at| *thaw_at != generation);
            // A push never confirmed ends with the freeze.
            let frozen = node.frozen.clone();
            node.pushing.retain(|db, _| frozen.contains_key(db));
        }
        self.check_recovered(&nodes);
    }

    // ---- what every node answers ------------------------------------------------------

    /// A recovery's request to node `pnn` from the leader `from`: its answer,
    /// or `None` for a message (pushed records).
    fn handle_recovery(
        &mut self,
        pnn: u32,
        from: u32,
        request: Request,
        generation: u32,
    ) -> Option<Result<Answer, i32>> {
        if let Request::PushRecords { db_id, batch } = &request {
            let node = self.node(pnn);
            if let Some((g, staged)) = node.pushing.get_mut(db_id) {
                if *g == generation {
                    staged.extend(batch.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
                }
            }
            return None;
        }
        if let Request::Pull { db_id } = &request {
            let node = self.node(pnn);
            let Some(db) = node
                .dbs
                .get(db_id)
                .filter(|_| node.frozen.contains_key(db_id))
            else {
                return Some(Err(-1));
            };
            let records: Records = db.records.clone().into_iter().collect();
            for chunk in records.chunks(PULL_BATCH) {
                let msg = Msg::Pulled {
                    generation,
                    db_id: *db_id,
                    records: chunk.to_vec(),
                };
                self.send(pnn, from, msg);
            }
            return Some(Ok(Answer::Count(records.len() as u32)));
        }
        Some(self.answer_recovery(pnn, request, generation))
    }

    fn answer_recovery(
        &mut self,
        pnn: u32,
        request: Request,
        generation: u32,
    ) -> Result<Answer, i32> {
        let node = self.node(pnn);
        match request {
            Request::DbMap => Ok(Answer::DbMap(
                node.dbs
                    .iter()
                    .map(|(id, db)| (*id, db.persistent))
                    .collect(),
            )),
            Request::Generation => Ok(Answer::Generation(node.generation)),
            Request::DbName { db_id } => node
                .dbs
                .get(&db_id)
                .map(|db| Answer::Name(db.name.clone()))
                .ok_or(-1),
            Request::Attach { name, persistent } => {
                node.dbs.entry(db_id(&name)).or_insert(Db {
                    persistent,
                    name,
                    records: BTreeMap::new(),
                });
                Ok(Answer::Done)
            }
            Request::Freeze { db_id } => {
                if !node.dbs.contains_key(&db_id) {
                    return Err(-1);
                }
                node.frozen.insert(db_id, generation);
                // Commits in flight on it end unacknowledged.
                for _txn in node.commits.frozen(db_id) {
                    self.g_lock = false;
                }
                Ok(Answer::Done)
            }
            Request::SeqNum { db_id } => {
                let db = node.dbs.get(&db_id).ok_or(-1)?;
                Ok(Answer::SeqNum(
                    db.records
                        .get(SEQNUM_KEY)
                        .map_or(0, |r| recovery::stored_sequence_number(r)),
                ))
            }
            Request::PushStart { db_id } => {
                if !node.frozen.contains_key(&db_id) {
                    return Err(-1);
                }
                node.pushing.insert(db_id, (generation, Vec::new()));
                Ok(Answer::Done)
            }
            Request::PushConfirm { db_id, count } => {
                let (_, staged) = node.pushing.remove(&db_id).ok_or(-1)?;
                let persistent = node.dbs.get(&db_id).ok_or(-1)?.persistent;
                let got = staged.len() as u32;
                if got == count {
                    let mut replaced = BTreeMap::new();
                    for (key, stored) in staged {
                        let stored = recovery::as_stored_by(pnn, !persistent, &stored).ok_or(-1)?;
                        replaced.insert(key, stored);
                    }
                    node.dbs.get_mut(&db_id).ok_or(-1)?.records = replaced;
                }
                Ok(Answer::Count(got))
            }
            Request::Pull { .. } | Request::PushRecords { .. } => unreachable!("answered above"),
        }
    }

    /// UPDATE_RECORD: all records of the transaction or none.
    fn handle_update(&mut self, pnn: u32, db_id: u32, records: &Records, txn: u64) -> bool {
        let node = self.node(pnn);
        let frozen = node.frozen.contains_key(&db_id);
        let Some(db) = node.dbs.get_mut(&db_id) else {
            return false;
        };
        let offered = records.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
        let stores = match commit::records_to_store(frozen, db.persistent, offered, |key| {
            Ok(db.records.get(key).cloned())
        }) {
            Ok(stores) => stores,
            Err(_) => return false,
        };
        let stores: Vec<(Vec<u8>, Vec<u8>)> = stores
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        db.records.extend(stores);
        self.stored_on.entry(txn).or_default().insert(pnn);
        true
    }

    fn deliver(&mut self, from: u32, to: u32, msg: Msg) {
        match msg {
            Msg::Recovery {
                reqid,
                request,
                generation,
            } => {
                if let Some(answer) = self.handle_recovery(to, from, request, generation) {
                    self.send(to, from, Msg::RecoveryReply { reqid, answer });
                }
            }
            Msg::Pulled {
                generation,
                db_id,
                records,
            } => {
                let Some((leader, run)) = &mut self.run else {
                    return;
                };
                if *leader == to && run.generation() == generation {
                    run.pulled(
                        from,
                        db_id,
                        records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
                    );
                }
            }
            Msg::RecoveryReply { reqid, answer } => {
                let Some((leader, run)) = &mut self.run else {
                    return;
                };
                if *leader != to || !run.awaits(reqid) {
                    return;
                }
                let progress = run.answer(reqid, answer, &mut Self::reqids(&mut self.next_reqid));
                self.progress(progress);
            }
            Msg::Update {
                reqid,
                db_id,
                records,
                txn,
            } => {
                let ok = self.handle_update(to, db_id, &records, txn);
                self.send(to, from, Msg::UpdateReply { reqid, ok });
            }
            Msg::UpdateReply { reqid, ok } => {
                let outcome = self.node(to).commits.answer(reqid, from, ok);
                self.commit_outcome(outcome);
            }
        }
    }

    // ---- clients ----------------------------------------------------------------------

    /// A client commits a new value of `key` through node `pnn`.
    fn commit(&mut self, pnn: u32, key: Vec<u8>) {
        if self.g_lock {
            return;
        }
        let db = persistent_id();
        let node = &self.nodes[pnn as usize];
        // A node just restarted takes commits too: `may_begin` must refuse them
        // until its first recovery.
        if !node.alive {
            return;
        }
        if node
            .commits
            .may_begin(
                db,
                node.generation,
                node.recovering,
                node.frozen.contains_key(&db),
            )
            .is_err()
        {
            return;
        }
        let records = &node.dbs[&db].records;
        let rsn = records
            .get(&key)
            .map_or(0, |r| ltdb::decode(r).unwrap().0.rsn)
            + 1;
        let seqnum = records
            .get(SEQNUM_KEY)
            .map_or(0, |r| recovery::stored_sequence_number(r))
            + 1;
        let write = self.next_write;
        self.next_write += 1;
        let txn_records: Records = vec![
            (
                key.clone(),
                ltdb::encode(&LtdbHeader::new(rsn, pnn), &write.to_le_bytes()),
            ),
            (
                SEQNUM_KEY.to_vec(),
                ltdb::encode(&LtdbHeader::new(seqnum, pnn), &seqnum.to_le_bytes()),
            ),
        ];
        // Stored here first (the client's own transaction on the local file).
        assert!(
            self.handle_update(pnn, db, &txn_records, write),
            "a local commit was refused"
        );
        let alive = self.alive();
        let node = &self.nodes[pnn as usize];
        let others: BTreeSet<u32> = node
            .vnn_map
            .iter()
            .copied()
            .filter(|p| *p != pnn && alive.contains(p))
            .collect();
        self.next_reqid += 1;
        let reqid = self.next_reqid;
        self.g_lock = true;
        let txn = Txn {
            id: write,
            key: key.clone(),
        };
        let outcome = self.node(pnn).commits.begin(reqid, db, txn, others.clone());
        for to in others {
            let msg = Msg::Update {
                reqid,
                db_id: db,
                records: txn_records.clone(),
                txn: write,
            };
            self.send(pnn, to, msg);
        }
        self.commit_outcome(outcome);
    }

    fn commit_outcome(&mut self, outcome: Option<Outcome<Txn>>) {
        match outcome {
            None => {}
            Some(Outcome::Acknowledged(txn)) => {
                trace(format_args!(
                    "ack {} {:?} on {:?}",
                    txn.id, txn.key, self.stored_on[&txn.id]
                ));
                self.g_lock = false;
                self.acknowledged += 1;
                let alive = self.alive();
                let holders: BTreeSet<u32> = self.stored_on[&txn.id]
                    .iter()
                    .copied()
                    .filter(|p| alive.contains(p))
                    .collect();
                self.promises.insert(
                    txn.key,
                    Promise {
                        write: txn.id,
                        holders,
                    },
                );
            }
            Some(Outcome::Failed { .. }) => {
                self.g_lock = false;
                self.recovery_wanted = true;
            }
        }
    }

    // ---- faults -----------------------------------------------------------------------

    fn kill(&mut self, pnn: u32) {
        trace(format_args!("kill {pnn}"));
        let node = self.node(pnn);
        node.alive = false;
        node.frozen.clear();
        node.pushing.clear();
        for _txn in node.commits.take_where(|_, _| true) {
            self.g_lock = false;
        }
        self.links
            .retain(|(from, to), _| *from != pnn && *to != pnn);
        for promise in self.promises.values_mut() {
            promise.holders.remove(&pnn);
        }
        let alive: BTreeSet<u32> = self.alive().into_iter().collect();
        for p in alive.clone() {
            let outcomes = self.node(p).commits.nodes_left(&alive);
            for outcome in outcomes {
                self.commit_outcome(Some(outcome));
            }
        }
        if let Some((leader, run)) = &mut self.run {
            if *leader == pnn {
                self.run = None;
            } else if let Some(progress) = run.node_gone(pnn) {
                self.progress(progress);
            }
        }
    }

    fn restart(&mut self, pnn: u32) {
        trace(format_args!("restart {pnn}"));
        let node = self.node(pnn);
        node.alive = true;
        // As the daemon starts: in no generation, but not in recovery mode
        // either (the leader's first recovery sets it).
        node.recovering = false;
        node.generation = INVALID_GENERATION;
        node.vnn_map.clear();
        node.dbs.retain(|_, db| db.persistent);
    }

    // ---- checks -----------------------------------------------------------------------

    fn check_recovered(&mut self, nodes: &[u32]) {
        let first = &self.nodes[nodes[0] as usize];
        for p in nodes {
            let node = &self.nodes[*p as usize];
            assert_eq!(
                node.dbs.keys().collect::<Vec<_>>(),
                first.dbs.keys().collect::<Vec<_>>(),
                "node {p} and node {} hold different databases after a recovery",
                nodes[0]
            );
            assert_eq!(
                node.dbs[&persistent_id()].records,
                first.dbs[&persistent_id()].records,
                "node {p} and node {} hold different persistent copies after a recovery",
                nodes[0]
            );
        }
        for (key, promise) in &mut self.promises {
            if promise
                .holders
                .is_disjoint(&nodes.iter().copied().collect())
            {
                continue;
            }
            for p in nodes {
                let stored = self.nodes[*p as usize].dbs[&persistent_id()]
                    .records
                    .get(key);
                let write = stored.map_or(0, |s| write_of(s));
                assert!(
                    write >= promise.write,
                    "acknowledged write {} of key {key:?} lost on node {p} (holds {write}); holders {:?}",
                    promise.write,
                    promise.holders
                );
            }
            promise.holders.extend(nodes.iter().copied());
        }
    }

    // ---- the schedule -----------------------------------------------------------------

    fn step(&mut self, faults: bool) -> bool {
        self.maybe_recover();
        let busy: Vec<(u32, u32)> = self
            .links
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        let roll = self.below(100);
        let nodes = self.nodes.len() as u64;
        if faults && roll < 3 {
            let pnn = self.below(nodes) as u32;
            if self.nodes[pnn as usize].alive {
                if self.alive().len() > 1 {
                    self.kill(pnn);
                }
            } else {
                self.restart(pnn);
            }
            return true;
        }
        if faults && roll < 25 {
            let pnn = self.below(nodes) as u32;
            let key = format!("key{}", self.below(4)).into_bytes();
            self.commit(pnn, key);
            return true;
        }
        if faults && roll < 26 {
            self.recovery_wanted = true;
            return true;
        }
        if busy.is_empty() {
            return faults;
        }
        let (from, to) = busy[self.below(busy.len() as u64) as usize];
        let msg = self
            .links
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
            .expect("busy link");
        self.deliver(from, to, msg);
        true
    }

    fn settle(&mut self) {
        for _ in 0..100_000 {
            let moved = self.step(false);
            let alive = self.alive();
            let settled = !moved
                && self.run.is_none()
                && !self.recovery_wanted
                && alive.iter().all(|p| {
                    let n = &self.nodes[*p as usize];
                    n.vnn_map == alive && !n.recovering
                });
            if settled {
                return;
            }
        }
        panic!("the cluster did not settle");
    }
}

fn run(nodes: u32, steps: u32, seed: u64) -> (u32, u32) {
    let mut sim = Sim::new(nodes, seed);
    for _ in 0..steps {
        sim.step(true);
    }
    sim.settle();
    // A last recovery with everything settled checks the living nodes once more.
    sim.recovery_wanted = true;
    sim.settle();
    (sim.recoveries, sim.acknowledged)
}

/// The case to run: the generated one, or the one named by `SIM_SEED` and
/// `SIM_NODES`, to read a failure's story:
/// `SIM_SEED=n SIM_NODES=k SIM_CASES=4 SIM_TRACE=1 cargo test --test sim_persistent deaths`.
fn seed_and_nodes(seed: u64, nodes: u32) -> (u64, u32) {
    let named = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")))
    };
    (
        named("SIM_SEED").unwrap_or(seed),
        named("SIM_NODES").map_or(nodes, |n: u64| n as u32),
    )
}

#[test]
fn commits_and_recoveries_without_faults_agree() {
    let mut sim = Sim::new(3, 11);
    for i in 0..30u32 {
        sim.commit(i % 3, format!("key{}", i % 4).into_bytes());
        sim.settle();
    }
    assert_eq!(sim.acknowledged, 30, "every commit acknowledged");
    sim.recovery_wanted = true;
    sim.settle();
    assert_eq!(sim.recoveries, 1);
}

#[test]
fn a_node_that_returns_with_a_stale_copy_is_brought_up_to_date() {
    let mut sim = Sim::new(3, 5);
    sim.kill(2);
    sim.settle();
    for i in 0..5u32 {
        sim.commit(i % 2, b"key0".to_vec());
        sim.settle();
    }
    sim.restart(2);
    sim.settle();
    let copy = |p: usize| sim.nodes[p].dbs[&persistent_id()].records.clone();
    assert_eq!(copy(2), copy(0));
    assert!(
        sim.nodes[2].dbs.contains_key(&db_id(VOLATILE)),
        "volatile db re-attached"
    );
    assert_eq!(
        write_of(&copy(2)[&b"key0".to_vec()]),
        sim.promises[&b"key0".to_vec()].write
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("SIM_CASES").ok().and_then(|v| v.parse().ok()).map_or(200, |n: u32| n / 4)
    ))]

    /// Given 2–5 nodes, clients committing through random nodes, nodes dying and
    /// returning and recoveries at random moments, then after every recovery the
    /// nodes agree, and no acknowledged write is lost while a node that had it
    /// stayed alive.
    #[test]
    fn deaths_and_recoveries_lose_no_acknowledged_write(
        seed in any::<u64>(),
        nodes in 2u32..=5,
    ) {
        let (seed, nodes) = seed_and_nodes(seed, nodes);
        let (recoveries, acknowledged) = run(nodes, 3_000, seed);
        prop_assert!(recoveries > 0);
        prop_assert!(acknowledged > 0, "no commit ever acknowledged (seed {seed})");
    }
}
