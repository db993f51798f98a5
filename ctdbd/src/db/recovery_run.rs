//! The leader's side of a database recovery, as a state machine (DESIGN.md,
//! "Databases"; reference ctdb-protocol-samba.md §7.3). Pure: it says which
//! request goes to which node and what the answers mean; the database thread
//! sends them (to itself too, through the same handlers the other nodes use),
//! keeps the deadline and reports the outcome to the core.
//!
//! ```text
//!   DbMaps ─> Names ─> Attach ─> Freeze ─> SeqNums ─> Pull ─> Push ─> done
//!   every     one      each node  every     each       every   start, record
//!   node's    holder   the dbs it node,     candidate  node's  batches and
//!   map and   per db   lacks      every db  per        volatile confirm, every
//!   generation                              persistent copy;    node, every db
//!                                           db         the chosen
//!                                                      persistent one
//! ```
//!
//! A step starts when every answer of the one before is in. Any refusal, a
//! malformed answer or the loss of a node ends the run as failed; the core then
//! starts another with a new generation. Nothing is changed on any node before
//! Push, and Push only replaces a frozen copy with the merge of all copies, so a
//! run that fails half-way loses nothing.
//!
//! Records travel in batches, as CTDB 4.17's recovery moves them (samba §7.3):
//! a node answers a Pull with the number of records it sent as batches
//! ([`RecoveryRun::pulled`] takes each as it comes, into the merge), and a
//! Push is a start, batches of at most the run's batch size, and a confirm
//! that says how many records were sent. A node keeps its old copy whole
//! unless it got exactly that many: it stages what comes and replaces its
//! copy only at the confirm. Of a persistent database only one copy is
//! pulled, the one with the highest sequence number among the continuing
//! members ([`RecoveryRun`]'s `continuing_members` says why those), and the
//! node it came from gets no push when its copy is what every node gets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::recovery::{self, PersistentCopy, RecordArena, VolatileMerge};
use crate::fanout::FanOut;
use crate::protocol::control::INVALID_GENERATION;

/// Consecutive records of a merge, sent as one message.
#[derive(Debug, Clone)]
pub struct Batch {
    records: Arc<RecordArena>,
    range: std::ops::Range<usize>,
}

impl Batch {
    /// Its records: key and stored value (ltdb header + value).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.records.range(self.range.clone())
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

impl PartialEq for Batch {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Batch {}

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
    /// Its sequence number of a persistent database (GET_DB_SEQNUM).
    SeqNum {
        /// The database.
        db_id: u32,
    },
    /// Every record of the frozen database (DB_PULL): the node sends them as
    /// batches ([`RecoveryRun::pulled`]) before it answers with their count.
    Pull {
        /// The database.
        db_id: u32,
    },
    /// Open a push into the frozen database (DB_PUSH_START): record batches
    /// follow; the node stages them and changes nothing yet.
    PushStart {
        /// The database.
        db_id: u32,
    },
    /// Records of an open push: a message, sent under reqid 0 and never
    /// answered.
    PushRecords {
        /// The database.
        db_id: u32,
        /// The records (part of the merge every node of the run gets).
        batch: Batch,
    },
    /// The push is over and `count` records were sent (DB_PUSH_CONFIRM). The
    /// node replaces its copy with what it staged only if it got that many,
    /// and answers how many it got: a node keeps its old copy whole if the
    /// run dies before this, or records were lost on the way.
    PushConfirm {
        /// The database.
        db_id: u32,
        /// Records sent.
        count: u32,
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
    /// Attach, Freeze, PushStart.
    Done,
    /// DbMap: (db_id, persistent) of each database.
    DbMap(Vec<(u32, bool)>),
    /// Generation.
    Generation(u32),
    /// DbName.
    Name(String),
    /// SeqNum.
    SeqNum(u64),
    /// Pull (records sent), PushConfirm (records received).
    Count(u32),
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
    /// The sequence number of each persistent database on each node whose
    /// copy may be chosen.
    SeqNums,
    /// Every node's records of every volatile database, the chosen node's
    /// of every persistent one.
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
    /// A node counted other than the run: the records it said it sent in a
    /// Pull are not the ones that came, or it got other than what was pushed
    /// (it then kept its old copy).
    #[error(
        "node {node} counted {got} records in the recovery's {step:?} step, {expected} expected"
    )]
    CountMismatch {
        /// The node.
        node: u32,
        /// The step.
        step: Step,
        /// Records the other end counted.
        expected: u32,
        /// Records this end counted.
        got: u32,
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
            // Records lost on a link say nothing of either end.
            Self::KindConflict { .. }
            | Self::NodeGone { .. }
            | Self::TimedOut { .. }
            | Self::CountMismatch { .. } => None,
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

/// A database's merge as its copies are pulled.
#[derive(Debug)]
enum Merge {
    Volatile(VolatileMerge),
    /// The copy of `from`, the node chosen by sequence number.
    Persistent {
        from: u32,
        copy: PersistentCopy,
    },
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
    /// Each persistent database's sequence number on each node asked.
    seqnums: BTreeMap<u32, BTreeMap<u32, u64>>,
    /// Each database's merge, from the Pull step until the Push.
    merges: BTreeMap<u32, Merge>,
    /// Records received so far from each (node, database) pulled.
    received: BTreeMap<(u32, u32), u32>,
    /// The largest a pushed batch may be, in marshall buffer bytes
    /// (`RecBufferSizeLimit`).
    batch_limit: usize,
    finished: bool,
}

impl RecoveryRun {
    /// Starts the recovery of `nodes` (the leader among them) for `generation`,
    /// pushing batches of at most `batch_limit` bytes; `reqids` numbers the
    /// requests.
    pub fn start(
        leader: u32,
        generation: u32,
        nodes: Vec<u32>,
        batch_limit: usize,
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
            seqnums: BTreeMap::new(),
            merges: BTreeMap::new(),
            received: BTreeMap::new(),
            batch_limit,
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

    /// A batch of records `node` sent for `db_id` in the Pull step, in the
    /// order it sent them; `false` (and nothing taken) when the run is not
    /// pulling that database from that node (a late batch of an earlier step).
    pub fn pulled<'a>(
        &mut self,
        node: u32,
        db_id: u32,
        records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> bool {
        if self.finished || self.step != Step::Pull {
            return false;
        }
        let Some(received) = self.received.get_mut(&(node, db_id)) else {
            return false;
        };
        let Some(merge) = self.merges.get_mut(&db_id) else {
            return false;
        };
        for (key, stored) in records {
            *received = received.wrapping_add(1);
            match merge {
                Merge::Volatile(merge) => merge.add(key, stored),
                Merge::Persistent { copy, .. } => copy.add(key, stored),
            }
        }
        true
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
        if matches!(request, Request::PushRecords { .. }) {
            // A message: nothing comes back for it.
            return Send {
                reqid: 0,
                to,
                request,
            };
        }
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
            (Request::SeqNum { db_id }, Answer::SeqNum(seqnum)) => {
                self.seqnums.entry(db_id).or_default().insert(node, seqnum);
            }
            (Request::Pull { db_id }, Answer::Count(sent)) => {
                let got = self.received.get(&(node, db_id)).copied().unwrap_or(0);
                if got != sent {
                    return Err(Failure::CountMismatch {
                        node,
                        step: self.step,
                        expected: sent,
                        got,
                    });
                }
            }
            (Request::PushConfirm { count, .. }, Answer::Count(got)) => {
                if got != count {
                    return Err(Failure::CountMismatch {
                        node,
                        step: self.step,
                        expected: count,
                        got,
                    });
                }
            }
            (
                Request::Attach { .. } | Request::Freeze { .. } | Request::PushStart { .. },
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
                Step::Freeze => Step::SeqNums,
                Step::SeqNums => Step::Pull,
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
            Step::Freeze => {
                for node in &self.nodes {
                    for db_id in self.dbs.keys() {
                        wanted.push((*node, Request::Freeze { db_id: *db_id }));
                    }
                }
            }
            Step::SeqNums => {
                let candidates = self.candidates();
                for (db_id, info) in &self.dbs {
                    if info.persistent {
                        for node in &candidates {
                            wanted.push((*node, Request::SeqNum { db_id: *db_id }));
                        }
                    }
                }
            }
            Step::Pull => {
                let candidates: BTreeSet<u32> = self.candidates().into_iter().collect();
                for (db_id, info) in &self.dbs {
                    let from: Vec<u32> = if info.persistent {
                        // Node order breaks a tie: the first node asked wins.
                        let seqnums: Vec<(u32, u64)> = self
                            .nodes
                            .iter()
                            .filter_map(|n| Some((*n, *self.seqnums.get(db_id)?.get(n)?)))
                            .collect();
                        let chosen = recovery::choose_persistent(&seqnums, &candidates)
                            .unwrap_or(self.leader);
                        self.merges.insert(
                            *db_id,
                            Merge::Persistent {
                                from: chosen,
                                copy: PersistentCopy::default(),
                            },
                        );
                        vec![chosen]
                    } else {
                        self.merges
                            .insert(*db_id, Merge::Volatile(VolatileMerge::new(self.leader)));
                        self.nodes.clone()
                    };
                    for node in from {
                        self.received.insert((node, *db_id), 0);
                        wanted.push((node, Request::Pull { db_id: *db_id }));
                    }
                }
            }
            Step::Push => {
                let merges = std::mem::take(&mut self.merges);
                self.received.clear();
                for (db_id, merge) in merges {
                    let (records, has_it) = match merge {
                        Merge::Volatile(merge) => (merge.finish(), None),
                        Merge::Persistent { from, copy } => {
                            let (records, whole) = copy.finish();
                            (records, whole.then_some(from))
                        }
                    };
                    let records = Arc::new(records);
                    let batches = records.batches(self.batch_limit);
                    let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
                    // A persistent copy is pushed to every node but the one
                    // it came from, when that one holds exactly it already.
                    for node in self.nodes.iter().filter(|n| Some(**n) != has_it) {
                        wanted.push((*node, Request::PushStart { db_id }));
                        for range in &batches {
                            let batch = Batch {
                                records: records.clone(),
                                range: range.clone(),
                            };
                            wanted.push((*node, Request::PushRecords { db_id, batch }));
                        }
                        wanted.push((*node, Request::PushConfirm { db_id, count }));
                    }
                }
            }
        }
        wanted
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
    /// The nodes whose persistent copies may be chosen: the continuing
    /// members, or every node when there are none.
    fn candidates(&self) -> Vec<u32> {
        let members = self.continuing_members();
        self.nodes
            .iter()
            .copied()
            .filter(|n| members.is_empty() || members.contains(n))
            .collect()
    }

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

    /// A batch limit for runs whose batches do not matter.
    const LIMIT: usize = 1_000_000;

    /// Request ids 1, 2, 3, ...
    fn counter() -> impl FnMut() -> u32 {
        let mut next = 0;
        move || {
            next += 1;
            next
        }
    }

    type Records = Vec<(Vec<u8>, Vec<u8>)>;

    /// What a simulated node does with one of the run's sends.
    enum Outcome {
        Reply(Result<Answer, i32>),
        /// A message: nothing comes back.
        Taken,
        /// The node left instead of answering.
        Gone,
    }

    /// Answers every request the way a node with `dbs` would, until the run ends.
    struct Cluster {
        /// node → db_id → (name, persistent, records)
        dbs: BTreeMap<u32, BTreeMap<u32, (String, bool, Records)>>,
        /// node → the generation it was last in
        generations: BTreeMap<u32, u32>,
        sent: Vec<Send>,
        /// (node, db) → what an open push has staged there.
        staged: BTreeMap<(u32, u32), Records>,
        /// Records per pulled batch.
        pull_batch: usize,
        /// Push batches of the run's: at most this many bytes.
        batch_limit: usize,
        /// The first push batch to this node is lost on the way.
        lose_push_batch_to: Option<u32>,
        /// This node leaves after sending this many pulled batches.
        gone_after_batches: Option<(u32, usize)>,
    }

    impl Cluster {
        fn new(
            dbs: BTreeMap<u32, BTreeMap<u32, (String, bool, Records)>>,
            generations: BTreeMap<u32, u32>,
        ) -> Self {
            Self {
                dbs,
                generations,
                sent: Vec::new(),
                staged: BTreeMap::new(),
                pull_batch: 1000,
                batch_limit: 1_000_000,
                lose_push_batch_to: None,
                gone_after_batches: None,
            }
        }

        fn answer(&mut self, run: &mut RecoveryRun, send: &Send) -> Outcome {
            let to = send.to;
            let node = self.dbs.get_mut(&to).expect("known node");
            Outcome::Reply(Ok(match &send.request {
                Request::DbMap => {
                    Answer::DbMap(node.iter().map(|(id, (_, p, _))| (*id, *p)).collect())
                }
                Request::Generation => Answer::Generation(self.generations[&to]),
                Request::DbName { db_id } => Answer::Name(node[db_id].0.clone()),
                Request::Attach { name, persistent } => {
                    let id = crate::db::hash::db_id(name);
                    node.entry(id)
                        .or_insert_with(|| (name.clone(), *persistent, Vec::new()));
                    Answer::Done
                }
                Request::Freeze { .. } => Answer::Done,
                Request::SeqNum { db_id } => Answer::SeqNum(
                    node[db_id]
                        .2
                        .iter()
                        .find(|(k, _)| k == recovery::SEQNUM_KEY)
                        .map_or(0, |(_, v)| recovery::stored_sequence_number(v)),
                ),
                Request::Pull { db_id } => {
                    let records = &node[db_id].2;
                    for (n, chunk) in records.chunks(self.pull_batch).enumerate() {
                        if self.gone_after_batches == Some((to, n)) {
                            return Outcome::Gone;
                        }
                        let chunk = chunk.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
                        assert!(run.pulled(to, *db_id, chunk), "a batch the run wants");
                    }
                    Answer::Count(records.len() as u32)
                }
                Request::PushStart { db_id } => {
                    self.staged.insert((to, *db_id), Vec::new());
                    Answer::Done
                }
                Request::PushRecords { db_id, batch } => {
                    if self.lose_push_batch_to == Some(to) {
                        self.lose_push_batch_to = None;
                        return Outcome::Taken;
                    }
                    let staged = self.staged.get_mut(&(to, *db_id)).expect("push started");
                    staged.extend(batch.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
                    return Outcome::Taken;
                }
                Request::PushConfirm { db_id, count } => {
                    let staged = self.staged.remove(&(to, *db_id)).expect("push started");
                    let got = staged.len() as u32;
                    if got == *count {
                        node.get_mut(db_id).expect("attached").2 = staged;
                    }
                    Answer::Count(got)
                }
            }))
        }

        fn run(&mut self, leader: u32, nodes: Vec<u32>) -> Result<(), Failure> {
            let mut reqids = counter();
            let (mut run, mut progress) =
                RecoveryRun::start(leader, 7, nodes, self.batch_limit, &mut reqids);
            loop {
                match progress {
                    Progress::Finished(result) => return result,
                    Progress::Send(sends) => {
                        assert!(!sends.is_empty(), "a step with nothing to wait for");
                        let mut next = None;
                        for send in sends {
                            self.sent.push(send.clone());
                            let step = match self.answer(&mut run, &send) {
                                Outcome::Reply(answer) => {
                                    run.answer(send.reqid, answer, &mut reqids)
                                }
                                Outcome::Taken => continue,
                                Outcome::Gone => run.node_gone(send.to).expect("in the run"),
                            };
                            if step != Progress::Send(Vec::new()) {
                                next = Some(step);
                                break;
                            }
                        }
                        progress = next.expect("the round ended");
                    }
                }
            }
        }
    }

    fn record(rsn: u64, dmaster: u32, value: &str) -> Vec<u8> {
        ltdb::encode(&LtdbHeader::new(rsn, dmaster), value.as_bytes())
    }

    /// A persistent copy at `seqnum` whose one record "k" holds `value`.
    fn persistent_copy(seqnum: u64, value: &str) -> Records {
        vec![
            (
                recovery::SEQNUM_KEY.to_vec(),
                ltdb::encode(&LtdbHeader::new(1, 0), &seqnum.to_le_bytes()),
            ),
            (b"k".to_vec(), record(1, 0, value)),
        ]
    }

    #[test]
    fn a_database_one_node_lacks_is_named_attached_and_pushed_to_it() {
        let name = "locking.tdb".to_string();
        let id = crate::db::hash::db_id(&name);
        let records = vec![(b"k".to_vec(), record(3, 1, "v"))];
        let mut cluster = Cluster::new(
            BTreeMap::from([
                (0, BTreeMap::new()),
                (1, BTreeMap::from([(id, (name.clone(), false, records))])),
            ]),
            BTreeMap::from([(0, 5), (1, 5), (2, 5)]),
        );
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
        let copy = persistent_copy;
        let mut cluster = Cluster::new(
            BTreeMap::from([
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
            BTreeMap::from([(0, 5), (1, 5), (2, 5)]),
        );
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
        let (mut run, progress) = RecoveryRun::start(0, 3, vec![0, 1], LIMIT, &mut reqids);
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
        let (mut run, progress) = RecoveryRun::start(0, 3, vec![0, 1], LIMIT, &mut reqids);
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
        let (mut run, _) = RecoveryRun::start(0, 3, vec![0, 1], LIMIT, &mut reqids);
        assert_eq!(run.node_gone(5), None, "not in the run");
        assert!(matches!(
            run.node_gone(1),
            Some(Progress::Finished(Err(Failure::NodeGone { node: 1, .. })))
        ));

        let (mut run, progress) = RecoveryRun::start(0, 4, vec![0, 1], LIMIT, &mut reqids);
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
        let (mut run, progress) = RecoveryRun::start(0, 3, vec![0], LIMIT, &mut reqids);
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
        let copy = persistent_copy;
        let mut cluster = Cluster::new(
            BTreeMap::from([
                (
                    0,
                    BTreeMap::from([(id, (name.clone(), true, copy(4, "stayed")))]),
                ),
                (
                    1,
                    BTreeMap::from([(id, (name.clone(), true, copy(9, "returned")))]),
                ),
            ]),
            BTreeMap::from([(0, 5), (1, INVALID_GENERATION)]),
        );
        cluster.run(1, vec![0, 1]).expect("recovered");
        for node in [0, 1] {
            assert_eq!(cluster.dbs[&node][&id].2, copy(4, "stayed"), "node {node}");
        }
    }

    /// Three nodes, each dmaster of a third of a volatile database's 60 keys.
    fn spread_volatile(name: &str) -> (u32, Cluster) {
        let id = crate::db::hash::db_id(name);
        let dbs = (0..3)
            .map(|node: u32| {
                let records = (0..60)
                    .filter(|i| i % 3 == node)
                    .map(|i| (format!("key-{i}").into_bytes(), record(2, node, "value")))
                    .collect();
                (
                    node,
                    BTreeMap::from([(id, (name.to_string(), false, records))]),
                )
            })
            .collect();
        let cluster = Cluster::new(dbs, BTreeMap::from([(0, 5), (1, 5), (2, 5)]));
        (id, cluster)
    }

    fn pushes_to(cluster: &Cluster, node: u32) -> usize {
        cluster
            .sent
            .iter()
            .filter(|s| s.to == node && matches!(s.request, Request::PushRecords { .. }))
            .count()
    }

    #[test]
    fn records_are_pulled_and_pushed_in_several_batches() {
        let (id, mut cluster) = spread_volatile("locking.tdb");
        cluster.pull_batch = 3;
        // 16 + 6 + 29 bytes a record: at most 7 in a buffer of 400.
        cluster.batch_limit = 400;
        cluster.run(1, vec![0, 1, 2]).expect("recovered");
        for node in [0, 1, 2] {
            assert_eq!(pushes_to(&cluster, node), 9, "60 records in 9 batches");
            let records = &cluster.dbs[&node][&id].2;
            assert_eq!(records.len(), 60, "node {node}");
            assert!(records
                .iter()
                .all(|(_, v)| ltdb::decode(v).unwrap().0.dmaster == 1));
        }
        let confirm = cluster
            .sent
            .iter()
            .find(|s| s.to == 2 && matches!(s.request, Request::PushConfirm { .. }))
            .expect("a confirm");
        assert_eq!(
            confirm.request,
            Request::PushConfirm {
                db_id: id,
                count: 60
            }
        );
    }

    #[test]
    fn a_node_lost_mid_stream_fails_the_run_and_changes_nothing() {
        let (id, mut cluster) = spread_volatile("locking.tdb");
        cluster.pull_batch = 4;
        cluster.gone_after_batches = Some((2, 2));
        let before = cluster.dbs.clone();
        let failure = cluster.run(0, vec![0, 1, 2]).unwrap_err();
        assert_eq!(
            failure,
            Failure::NodeGone {
                node: 2,
                step: Step::Pull
            }
        );
        assert_eq!(cluster.dbs, before, "no copy changed");
        assert!(!cluster
            .sent
            .iter()
            .any(|s| matches!(s.request, Request::PushStart { db_id } if db_id == id)));
    }

    #[test]
    fn a_pulled_count_other_than_the_batches_fails_the_run() {
        let mut reqids = counter();
        let (mut run, _) = RecoveryRun::start(0, 3, vec![0], LIMIT, &mut reqids);
        // DbMaps: one database; Names, Attach skipped; Freeze; Pull.
        let sends = |p: Progress| match p {
            Progress::Send(sends) => sends,
            other => panic!("{other:?}"),
        };
        let maps = run.request_of(1).cloned();
        assert_eq!(maps, Some(Request::DbMap));
        run.answer(1, Ok(Answer::DbMap(vec![(9, false)])), &mut reqids);
        let names = sends(run.answer(2, Ok(Answer::Generation(5)), &mut reqids));
        let freeze = sends(run.answer(names[0].reqid, Ok(Answer::Name("a".into())), &mut reqids));
        assert_eq!(freeze[0].request, Request::Freeze { db_id: 9 });
        let pull = sends(run.answer(freeze[0].reqid, Ok(Answer::Done), &mut reqids));
        assert_eq!(pull[0].request, Request::Pull { db_id: 9 });
        let stored = record(1, 0, "v");
        assert!(run.pulled(0, 9, [(&b"k"[..], stored.as_slice())]));
        assert!(
            !run.pulled(1, 9, [(&b"k"[..], stored.as_slice())]),
            "not pulled from 1"
        );
        assert_eq!(
            run.answer(pull[0].reqid, Ok(Answer::Count(2)), &mut reqids),
            Progress::Finished(Err(Failure::CountMismatch {
                node: 0,
                step: Step::Pull,
                expected: 2,
                got: 1
            }))
        );
    }

    #[test]
    fn a_confirm_with_the_wrong_count_fails_the_run_and_the_node_keeps_its_copy() {
        let (id, mut cluster) = spread_volatile("locking.tdb");
        cluster.batch_limit = 400;
        cluster.lose_push_batch_to = Some(2);
        let before = cluster.dbs[&2].clone();
        let failure = cluster.run(0, vec![0, 1, 2]).unwrap_err();
        assert_eq!(
            failure,
            Failure::CountMismatch {
                node: 2,
                step: Step::Push,
                expected: 60,
                got: 53
            }
        );
        assert_eq!(failure.culprit(), None);
        assert_eq!(cluster.dbs[&2], before, "node 2 kept its old copy whole");
        assert_eq!(cluster.dbs[&1][&id].2.len(), 60, "node 1 confirmed");
    }

    /// Node 2 started since the last generation with the highest sequence
    /// number; of the members that stayed (0 and 1), 1 is ahead: only 0 and 1
    /// are asked, only 1's copy is pulled, and 1, which holds it, gets no push.
    #[test]
    fn the_persistent_copy_is_chosen_by_sequence_number_among_continuing_members() {
        let name = "registry.tdb".to_string();
        let id = crate::db::hash::db_id(&name);
        let copy = persistent_copy;
        let mut cluster = Cluster::new(
            BTreeMap::from([
                (
                    0,
                    BTreeMap::from([(id, (name.clone(), true, copy(4, "behind")))]),
                ),
                (
                    1,
                    BTreeMap::from([(id, (name.clone(), true, copy(6, "ahead")))]),
                ),
                (
                    2,
                    BTreeMap::from([(id, (name.clone(), true, copy(9, "own history")))]),
                ),
            ]),
            BTreeMap::from([(0, 5), (1, 5), (2, INVALID_GENERATION)]),
        );
        cluster.run(0, vec![0, 1, 2]).expect("recovered");
        let asked = |what: &dyn Fn(&Request) -> bool| -> Vec<u32> {
            cluster
                .sent
                .iter()
                .filter(|s| what(&s.request))
                .map(|s| s.to)
                .collect()
        };
        assert_eq!(asked(&|r| matches!(r, Request::SeqNum { .. })), [0, 1]);
        assert_eq!(asked(&|r| matches!(r, Request::Pull { .. })), [1]);
        assert_eq!(asked(&|r| matches!(r, Request::PushStart { .. })), [0, 2]);
        for node in [0, 1, 2] {
            assert_eq!(cluster.dbs[&node][&id].2, copy(6, "ahead"), "node {node}");
        }
    }
}
