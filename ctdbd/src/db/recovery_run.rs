//! The leader's side of a database recovery, as a state machine (DESIGN.md,
//! "Databases"; reference ctdb-protocol-samba.md §7.3). Pure: it says which
//! request goes to which node and what the answers mean; the database thread
//! sends them (to itself too, through the same handlers the other nodes use),
//! keeps the deadline and reports the outcome to the core.
//!
//! ```text
//!   DbMaps ─> Names ─> Attach ─> Freeze ─> Pull ─> Push ─> done
//!   every     one      each node  every     every   merged records
//!   node's    holder   the dbs it node,     node,   replace each
//!   map and   per db   lacks      every db  every db copy, every node
//!   generation
//! ```
//!
//! A step starts when every answer of the one before is in. Any refusal, a
//! malformed answer or the loss of a node ends the run as failed; the core then
//! starts another with a new generation. Nothing is changed on any node before
//! Push, and Push only replaces a frozen copy with the merge of all copies, so a
//! run that fails half-way loses nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::recovery::{self, Pulled};
use crate::fanout::FanOut;
use crate::protocol::control::INVALID_GENERATION;

/// A database's records: key and stored value (ltdb header + value).
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// What the leader asks one node for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Its databases and their flags (GET_DBMAP).
    DbMap,
    /// The generation it was last part of (GETVNNMAP): INVALID_GENERATION for
    /// a node that started since.
    Generation,
    /// The name of one of its databases (GET_DBNAME).
    DbName {
        /// The database.
        db_id: u32,
    },
    /// Attach a database another node has (DB_ATTACH / DB_ATTACH_PERSISTENT).
    Attach {
        /// Its name.
        name: String,
        /// Persistent or volatile.
        persistent: bool,
    },
    /// Take the database's all-record lock until the run's generation is
    /// installed (DB_FREEZE).
    Freeze {
        /// The database.
        db_id: u32,
    },
    /// Every record of the frozen database.
    Pull {
        /// The database.
        db_id: u32,
    },
    /// Replace the frozen database's records with these, all at once: a node
    /// keeps its old copy whole if the run dies before this arrives, never a
    /// wiped or half-written one.
    Push {
        /// The database.
        db_id: u32,
        /// Its records after the merge (shared by every node's request).
        records: Arc<Records>,
    },
}

/// One request of the run, sent under `reqid` (the caller's id space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    /// The id its answer comes back under.
    pub reqid: u32,
    /// The node asked.
    pub to: u32,
    /// What it is asked.
    pub request: Request,
}

/// A node's successful answer; what it carries depends on the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Attach, Freeze, Push.
    Done,
    /// DbMap: (db_id, persistent) of each database.
    DbMap(Vec<(u32, bool)>),
    /// Generation.
    Generation(u32),
    /// DbName.
    Name(String),
    /// Pull.
    Records(Records),
}

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Every node's databases and generation.
    DbMaps,
    /// The name of every database, from one node that has it.
    Names,
    /// Every node attaches the databases it lacks.
    Attach,
    /// Every node freezes every database.
    Freeze,
    /// Every node's records of every database.
    Pull,
    /// The merge replaces every node's copy of every database.
    Push,
}

/// Why a run ended without making the databases the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A node answered with an error status (or an answer that did not decode).
    #[error("node {node} refused the recovery's {step:?} step (status {status})")]
    Refused {
        /// The node.
        node: u32,
        /// The step.
        step: Step,
        /// Its status.
        status: i32,
    },
    /// A node's answer does not fit the request.
    #[error("node {node} answered the recovery's {step:?} step with something else")]
    UnexpectedAnswer {
        /// The node.
        node: u32,
        /// The step.
        step: Step,
    },
    /// One node has the database as persistent, another as volatile.
    #[error("nodes disagree whether database {db_id:#010x} is persistent")]
    KindConflict {
        /// The database.
        db_id: u32,
    },
    /// A node of the run disconnected.
    #[error("node {node} left during the recovery's {step:?} step")]
    NodeGone {
        /// The node.
        node: u32,
        /// The step.
        step: Step,
    },
    /// The caller's deadline passed.
    #[error("the recovery's {step:?} step timed out")]
    TimedOut {
        /// The step.
        step: Step,
    },
}

impl Failure {
    /// The node whose answer ended the run, if one did: it refused a step or
    /// answered something else. A node that left, a timeout or a disagreement
    /// between nodes names no one.
    pub fn culprit(&self) -> Option<u32> {
        match self {
            Self::Refused { node, .. } | Self::UnexpectedAnswer { node, .. } => Some(*node),
            Self::KindConflict { .. } | Self::NodeGone { .. } | Self::TimedOut { .. } => None,
        }
    }
}

/// What the caller does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Send these (maybe none: answers are still awaited).
    Send(Vec<Send>),
    /// The run is over.
    Finished(Result<(), Failure>),
}

/// A database as the run knows it.
#[derive(Debug, Clone, Default)]
struct DbInfo {
    persistent: bool,
    name: Option<String>,
    /// Nodes that have it.
    holders: BTreeSet<u32>,
}

/// One recovery the leader runs for one new generation.
#[derive(Debug)]
pub struct RecoveryRun {
    leader: u32,
    generation: u32,
    nodes: Vec<u32>,
    step: Step,
    /// The current step's requests, each to one node.
    round: FanOut<Request>,
    dbs: BTreeMap<u32, DbInfo>,
    /// The generation each node was last part of.
    generations: BTreeMap<u32, u32>,
    /// What each node sent for each database in the Pull step.
    pulled: BTreeMap<u32, Vec<Pulled>>,
    finished: bool,
}

impl RecoveryRun {
    /// Starts the recovery of `nodes` (the leader among them) for `generation`;
    /// `reqids` numbers the requests.
    pub fn start(
        leader: u32,
        generation: u32,
        nodes: Vec<u32>,
        reqids: &mut impl FnMut() -> u32,
    ) -> (Self, Progress) {
        let mut run = Self {
            leader,
            generation,
            nodes,
            step: Step::DbMaps,
            round: FanOut::new(),
            dbs: BTreeMap::new(),
            generations: BTreeMap::new(),
            pulled: BTreeMap::new(),
            finished: false,
        };
        let mut sends = Vec::new();
        for to in run.nodes.clone() {
            sends.push(run.request(reqids, to, Request::DbMap));
            sends.push(run.request(reqids, to, Request::Generation));
        }
        run.round.all_sent();
        (run, Progress::Send(sends))
    }

    /// The generation this run recovers for.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The nodes it recovers.
    pub fn nodes(&self) -> &[u32] {
        &self.nodes
    }

    /// The step it is in.
    pub fn step(&self) -> Step {
        self.step
    }

    /// Whether `reqid` is one of this run's unanswered requests.
    pub fn awaits(&self, reqid: u32) -> bool {
        self.round.awaits(reqid)
    }

    /// The unanswered request sent as `reqid`.
    pub fn request_of(&self, reqid: u32) -> Option<&Request> {
        self.round.tag(reqid)
    }

    /// A node answered `reqid` with `status` 0 and `answer`, or refused it
    /// (`Err(status)`). Answers to requests not awaited are ignored.
    pub fn answer(
        &mut self,
        reqid: u32,
        answer: Result<Answer, i32>,
        reqids: &mut impl FnMut() -> u32,
    ) -> Progress {
        let Some((node, request)) = self.round.answer(reqid) else {
            return Progress::Send(Vec::new());
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(status) => {
                return self.fail(Failure::Refused {
                    node,
                    step: self.step,
                    status,
                })
            }
        };
        if let Err(failure) = self.take_answer(node, request, answer) {
            return self.fail(failure);
        }
        if !self.round.is_complete() {
            return Progress::Send(Vec::new());
        }
        self.next_step(reqids)
    }

    /// `node` is no longer connected: a run that needs it cannot finish. Every
    /// step after this one asks every node, so the run fails even when the
    /// current round owes nothing from it.
    pub fn node_gone(&mut self, node: u32) -> Option<Progress> {
        (self.nodes.contains(&node) && !self.finished).then(|| {
            self.fail(Failure::NodeGone {
                node,
                step: self.step,
            })
        })
    }

    /// The caller's deadline passed.
    pub fn timed_out(&mut self) -> Progress {
        self.fail(Failure::TimedOut { step: self.step })
    }

    fn fail(&mut self, failure: Failure) -> Progress {
        self.finished = true;
        self.round.abandon();
        Progress::Finished(Err(failure))
    }

    fn request(&mut self, reqids: &mut impl FnMut() -> u32, to: u32, request: Request) -> Send {
        let reqid = reqids();
        self.round.sent(reqid, to, request.clone());
        Send { reqid, to, request }
    }

    fn take_answer(&mut self, node: u32, request: Request, answer: Answer) -> Result<(), Failure> {
        let unexpected = Failure::UnexpectedAnswer {
            node,
            step: self.step,
        };
        match (request, answer) {
            (Request::DbMap, Answer::DbMap(map)) => {
                for (db_id, persistent) in map {
                    let info = self.dbs.entry(db_id).or_insert_with(|| DbInfo {
                        persistent,
                        ..DbInfo::default()
                    });
                    if info.persistent != persistent {
                        return Err(Failure::KindConflict { db_id });
                    }
                    info.holders.insert(node);
                }
            }
            (Request::Generation, Answer::Generation(generation)) => {
                self.generations.insert(node, generation);
            }
            (Request::DbName { db_id }, Answer::Name(name)) => {
                if let Some(info) = self.dbs.get_mut(&db_id) {
                    info.name = Some(name);
                }
            }
            (Request::Pull { db_id }, Answer::Records(records)) => {
                self.pulled
                    .entry(db_id)
                    .or_default()
                    .push(Pulled { node, records });
            }
            (
                Request::Attach { .. } | Request::Freeze { .. } | Request::Push { .. },
                Answer::Done,
            ) => {}
            _ => return Err(unexpected),
        }
        Ok(())
    }

    /// Every answer of the current step is in: the requests of the next step
    /// that has any (a step with nothing to ask is passed over).
    fn next_step(&mut self, reqids: &mut impl FnMut() -> u32) -> Progress {
        loop {
            let next = match self.step {
                Step::DbMaps => Step::Names,
                Step::Names => Step::Attach,
                Step::Attach => Step::Freeze,
                Step::Freeze => Step::Pull,
                Step::Pull => Step::Push,
                Step::Push => {
                    self.finished = true;
                    return Progress::Finished(Ok(()));
                }
            };
            self.step = next;
            let wanted = self.requests_of(next);
            if !wanted.is_empty() {
                self.round.next_round();
                let sends = wanted
                    .into_iter()
                    .map(|(to, request)| self.request(reqids, to, request))
                    .collect();
                self.round.all_sent();
                return Progress::Send(sends);
            }
        }
    }

    fn requests_of(&mut self, step: Step) -> Vec<(u32, Request)> {
        let mut wanted = Vec::new();
        match step {
            Step::DbMaps => {}
            Step::Names => {
                for (db_id, info) in &self.dbs {
                    // The leader's own first, where it has the database: no packet.
                    let holder = if info.holders.contains(&self.leader) {
                        Some(self.leader)
                    } else {
                        info.holders.first().copied()
                    };
                    if let Some(holder) = holder {
                        wanted.push((holder, Request::DbName { db_id: *db_id }));
                    }
                }
            }
            Step::Attach => {
                for info in self.dbs.values() {
                    let Some(name) = &info.name else { continue };
                    for node in self.nodes.iter().filter(|n| !info.holders.contains(n)) {
                        wanted.push((
                            *node,
                            Request::Attach {
                                name: name.clone(),
                                persistent: info.persistent,
                            },
                        ));
                    }
                }
            }
            Step::Freeze | Step::Pull => {
                for node in &self.nodes {
                    for db_id in self.dbs.keys() {
                        let db_id = *db_id;
                        wanted.push((
                            *node,
                            if step == Step::Freeze {
                                Request::Freeze { db_id }
                            } else {
                                Request::Pull { db_id }
                            },
                        ));
                    }
                }
            }
            Step::Push => {
                let merged: Vec<(u32, Arc<Records>)> = self
                    .dbs
                    .iter()
                    .map(|(db_id, info)| (*db_id, Arc::new(self.merge(*db_id, info.persistent))))
                    .collect();
                self.pulled.clear();
                for node in &self.nodes {
                    for (db_id, records) in &merged {
                        wanted.push((
                            *node,
                            Request::Push {
                                db_id: *db_id,
                                records: records.clone(),
                            },
                        ));
                    }
                }
            }
        }
        wanted
    }

    /// The records every node gets for `db_id` (`db::recovery` says how).
    fn merge(&self, db_id: u32, persistent: bool) -> Records {
        let pulled = self.pulled.get(&db_id).map_or(&[][..], Vec::as_slice);
        if persistent {
            recovery::choose_persistent(pulled, &self.continuing_members())
        } else {
            recovery::merge_volatile(self.leader, pulled)
        }
    }
}

impl RecoveryRun {
    /// The nodes that were members of the generation this run replaces.
    ///
    /// Their persistent copies are the ones to choose from: every write
    /// acknowledged since they were last made the same is on each of them (it
    /// went to every member). A node that started since, or was left out, may
    /// have committed in a history of its own while they were gone (a lone
    /// survivor commits alone), and its sequence number says nothing about
    /// theirs: comparing across the two histories could drop a write that a
    /// node still here had acknowledged. Empty when no node was in a
    /// generation (the whole cluster started): then all copies compete.
    fn continuing_members(&self) -> BTreeSet<u32> {
        let valid = |g: &u32| *g != INVALID_GENERATION;
        // Without partitions there is one such generation; should there be
        // more, the leader's own, else the one most nodes report.
        let chosen = self
            .generations
            .get(&self.leader)
            .copied()
            .filter(valid)
            .or_else(|| {
                let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
                for g in self.generations.values().filter(|g| valid(g)) {
                    *counts.entry(*g).or_default() += 1;
                }
                counts.into_iter().max_by_key(|(_, n)| *n).map(|(g, _)| g)
            });
        self.generations
            .iter()
            .filter(|(_, g)| Some(**g) == chosen)
            .map(|(node, _)| *node)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::ltdb::{self, LtdbHeader};

    /// Request ids 1, 2, 3, ...
    fn counter() -> impl FnMut() -> u32 {
        let mut next = 0;
        move || {
            next += 1;
            next
        }
    }

    /// Answers every request the way a node with `dbs` would, until the run ends.
    struct Cluster {
        /// node → db_id → (name, persistent, records)
        dbs: BTreeMap<u32, BTreeMap<u32, (String, bool, Records)>>,
        /// node → the generation it was last in
        generations: BTreeMap<u32, u32>,
        sent: Vec<Send>,
    }

    impl Cluster {
        fn answer(&mut self, send: &Send) -> Result<Answer, i32> {
            let node = self.dbs.get_mut(&send.to).expect("known node");
            Ok(match &send.request {
                Request::DbMap => {
                    Answer::DbMap(node.iter().map(|(id, (_, p, _))| (*id, *p)).collect())
                }
                Request::Generation => Answer::Generation(self.generations[&send.to]),
                Request::DbName { db_id } => Answer::Name(node[db_id].0.clone()),
                Request::Attach { name, persistent } => {
                    let id = crate::db::hash::db_id(name);
                    node.entry(id)
                        .or_insert_with(|| (name.clone(), *persistent, Vec::new()));
                    Answer::Done
                }
                Request::Freeze { .. } => Answer::Done,
                Request::Pull { db_id } => Answer::Records(node[db_id].2.clone()),
                Request::Push { db_id, records } => {
                    node.get_mut(db_id).expect("attached").2 = records.to_vec();
                    Answer::Done
                }
            })
        }

        fn run(&mut self, leader: u32, nodes: Vec<u32>) -> Result<(), Failure> {
            let mut reqids = counter();
            let (mut run, mut progress) = RecoveryRun::start(leader, 7, nodes, &mut reqids);
            loop {
                match progress {
                    Progress::Finished(result) => return result,
                    Progress::Send(sends) => {
                        assert!(!sends.is_empty(), "a step with nothing to wait for");
                        let mut last = Progress::Send(Vec::new());
                        for send in sends {
                            self.sent.push(send.clone());
                            let answer = self.answer(&send);
                            last = run.answer(send.reqid, answer, &mut reqids);
                        }
                        progress = last;
                    }
                }
            }
        }
    }

    fn record(rsn: u64, dmaster: u32, value: &str) -> Vec<u8> {
        ltdb::encode(&LtdbHeader::new(rsn, dmaster), value.as_bytes())
    }

    #[test]
    fn a_database_one_node_lacks_is_named_attached_and_pushed_to_it() {
        let name = "locking.tdb".to_string();
        let id = crate::db::hash::db_id(&name);
        let records = vec![(b"k".to_vec(), record(3, 1, "v"))];
        let mut cluster = Cluster {
            dbs: BTreeMap::from([
                (0, BTreeMap::new()),
                (1, BTreeMap::from([(id, (name.clone(), false, records))])),
            ]),
            generations: BTreeMap::from([(0, 5), (1, 5), (2, 5)]),
            sent: Vec::new(),
        };
        cluster.run(0, vec![0, 1]).expect("recovered");
        assert!(cluster
            .sent
            .iter()
            .any(|s| s.to == 1 && s.request == Request::DbName { db_id: id }));
        assert!(cluster.sent.iter().any(|s| s.to == 0
            && s.request
                == Request::Attach {
                    name: name.clone(),
                    persistent: false
                }));
        for node in [0, 1] {
            let (_, _, records) = &cluster.dbs[&node][&id];
            assert_eq!(records.len(), 1);
            let (header, value) = ltdb::decode(&records[0].1).unwrap();
            assert_eq!((header.dmaster, value), (0, &b"v"[..]), "node {node}");
        }
    }

    #[test]
    fn persistent_databases_take_the_copy_with_the_highest_sequence_number() {
        let name = "secrets.tdb".to_string();
        let id = crate::db::hash::db_id(&name);
        let copy = |seqnum: u64, value: &str| {
            let mut seq = LtdbHeader::new(1, 0);
            seq.flags = 0;
            vec![
                (
                    recovery::SEQNUM_KEY.to_vec(),
                    ltdb::encode(&seq, &seqnum.to_le_bytes()),
                ),
                (b"k".to_vec(), record(1, 0, value)),
            ]
        };
        let mut cluster = Cluster {
            dbs: BTreeMap::from([
                (
                    0,
                    BTreeMap::from([(id, (name.clone(), true, copy(4, "old")))]),
                ),
                (
                    1,
                    BTreeMap::from([(id, (name.clone(), true, copy(5, "new")))]),
                ),
                (
                    2,
                    BTreeMap::from([(id, (name.clone(), true, copy(3, "older")))]),
                ),
            ]),
            generations: BTreeMap::from([(0, 5), (1, 5), (2, 5)]),
            sent: Vec::new(),
        };
        cluster.run(2, vec![0, 1, 2]).expect("recovered");
        for node in [0, 1, 2] {
            assert_eq!(cluster.dbs[&node][&id].2, copy(5, "new"), "node {node}");
        }
    }

    /// The DbMap request to `node` among `sends`.
    fn db_map_to(sends: &[Send], node: u32) -> u32 {
        sends
            .iter()
            .find(|s| s.to == node && s.request == Request::DbMap)
            .expect("a DbMap request")
            .reqid
    }

    #[test]
    fn a_refusal_ends_the_run_before_anything_is_changed() {
        let mut reqids = counter();
        let (mut run, progress) = RecoveryRun::start(0, 3, vec![0, 1], &mut reqids);
        let Progress::Send(sends) = progress else {
            panic!("no requests")
        };
        let (to_0, to_1) = (db_map_to(&sends, 0), db_map_to(&sends, 1));
        let first = run.answer(to_0, Ok(Answer::DbMap(vec![(9, false)])), &mut reqids);
        assert_eq!(first, Progress::Send(Vec::new()), "waits for the others");
        let refused = run.answer(to_1, Err(-1), &mut reqids);
        assert_eq!(
            refused,
            Progress::Finished(Err(Failure::Refused {
                node: 1,
                step: Step::DbMaps,
                status: -1
            }))
        );
        assert!(
            sends.iter().all(|s| !run.awaits(s.reqid)),
            "nothing awaited after the end"
        );
    }

    #[test]
    fn a_duplicated_answer_is_ignored_and_the_step_waits_for_the_others() {
        let mut reqids = counter();
        let (mut run, progress) = RecoveryRun::start(0, 3, vec![0, 1], &mut reqids);
        let Progress::Send(sends) = progress else {
            panic!("no requests")
        };
        let to_0 = db_map_to(&sends, 0);
        let map = || Ok(Answer::DbMap(vec![(9, false)]));
        assert_eq!(
            run.answer(to_0, map(), &mut reqids),
            Progress::Send(Vec::new())
        );
        assert_eq!(
            run.answer(to_0, map(), &mut reqids),
            Progress::Send(Vec::new()),
            "the duplicate is dropped"
        );
        assert_eq!(run.step(), Step::DbMaps);
        assert!(sends
            .iter()
            .filter(|s| s.reqid != to_0)
            .all(|s| run.awaits(s.reqid)));
    }

    #[test]
    fn a_node_lost_or_a_kind_conflict_fails_the_run() {
        let mut reqids = counter();
        let (mut run, _) = RecoveryRun::start(0, 3, vec![0, 1], &mut reqids);
        assert_eq!(run.node_gone(5), None, "not in the run");
        assert!(matches!(
            run.node_gone(1),
            Some(Progress::Finished(Err(Failure::NodeGone { node: 1, .. })))
        ));

        let (mut run, progress) = RecoveryRun::start(0, 4, vec![0, 1], &mut reqids);
        let Progress::Send(sends) = progress else {
            panic!("no requests")
        };
        let (to_0, to_1) = (db_map_to(&sends, 0), db_map_to(&sends, 1));
        run.answer(to_0, Ok(Answer::DbMap(vec![(9, false)])), &mut reqids);
        let end = run.answer(to_1, Ok(Answer::DbMap(vec![(9, true)])), &mut reqids);
        assert_eq!(
            end,
            Progress::Finished(Err(Failure::KindConflict { db_id: 9 }))
        );
    }

    #[test]
    fn an_answer_that_does_not_fit_the_request_fails_the_run() {
        let mut reqids = counter();
        let (mut run, progress) = RecoveryRun::start(0, 3, vec![0], &mut reqids);
        let Progress::Send(sends) = progress else {
            panic!("no requests")
        };
        let end = run.answer(db_map_to(&sends, 0), Ok(Answer::Done), &mut reqids);
        assert_eq!(
            end,
            Progress::Finished(Err(Failure::UnexpectedAnswer {
                node: 0,
                step: Step::DbMaps
            }))
        );
    }

    /// Node 1 started since the last generation with a copy from a history of
    /// its own and a higher sequence number: the copy of the node that stayed
    /// (0, in generation 5) is the one pushed.
    #[test]
    fn a_returning_node_does_not_override_the_members_that_stayed() {
        let name = "secrets.tdb".to_string();
        let id = crate::db::hash::db_id(&name);
        let copy = |seqnum: u64, value: &str| {
            vec![
                (
                    recovery::SEQNUM_KEY.to_vec(),
                    ltdb::encode(&LtdbHeader::new(1, 0), &seqnum.to_le_bytes()),
                ),
                (b"k".to_vec(), record(1, 0, value)),
            ]
        };
        let mut cluster = Cluster {
            dbs: BTreeMap::from([
                (
                    0,
                    BTreeMap::from([(id, (name.clone(), true, copy(4, "stayed")))]),
                ),
                (
                    1,
                    BTreeMap::from([(id, (name.clone(), true, copy(9, "returned")))]),
                ),
            ]),
            generations: BTreeMap::from([(0, 5), (1, INVALID_GENERATION)]),
            sent: Vec::new(),
        };
        cluster.run(1, vec![0, 1]).expect("recovered");
        for node in [0, 1] {
            assert_eq!(cluster.dbs[&node][&id].2, copy(4, "stayed"), "node {node}");
        }
    }
}
