//! One database's record migration: the pure logic behind "fetch lock" (reference
//! ctdb-protocol-samba.md §4).
//!
//! smbd may write a record only on the node that is its *dmaster*. When it wants a
//! record it does not hold, it asks its daemon with a call; the call travels to the
//! dmaster (through the key's *lmaster*, the node that always knows the dmaster),
//! and the record comes back by way of the lmaster:
//!
//! ```text
//!   A (wants it)          L (lmaster of key)         C (dmaster)
//!   client call ──Call──> not dmaster: redirect ──Call──> waits for its chain lock,
//!                                                          keeps a copy naming A
//!                         <──────────────Dmaster───────────┘
//!                         notes A as dmaster
//!   <────DmasterReply─────┘
//!   stores as dmaster, runs the call, answers smbd
//! ```
//!
//! Everything this machine does to a record happens under the record's chain lock,
//! the same lock smbd holds while it works on a record; so a record never leaves a
//! node while an smbd there holds it. Locks are tried without blocking through
//! [`RecordStore::try_lock`]; when one is busy the work waits in a per-key queue and
//! the edge is asked to wait for the lock elsewhere ([`Action::WaitForLock`]), then
//! reports [`Database::lock_acquired`]. Work for a key is done strictly in arrival
//! order, which is also what keeps a call from overtaking a hand-over of the same
//! record that arrived before it.
//!
//! Node-to-node messages carry the vnn-map generation; any from another generation
//! are dropped, and the calls this node started are started again after a recovery
//! (the records may have moved). While recovery is active nothing is done: the work
//! waits and is replayed once the cluster is back to normal.

use std::collections::{BTreeMap, HashMap, VecDeque};

use thiserror::Error;
use tracing::{debug, warn};

use super::hash::lookup3;
use super::limits;
use super::ltdb::{flags, LtdbHeader};
use crate::core::ClientId;

/// The built-in call functions: NULL brings the record here (smbd's fetch lock),
/// FETCH returns its value, FETCH_WITH_HEADER its header and value.
pub use crate::protocol::call::call_id::{
    FETCH_FUNC as CALL_FETCH, FETCH_WITH_HEADER_FUNC as CALL_FETCH_WITH_HEADER,
    NULL_FUNC as CALL_NULL,
};

/// Messages of an unknown generation kept until the view changes (see
/// [`Database::node_message`]).
const MAX_UNMATCHED: usize = 10_000;

/// A header with `rsn`, `dmaster` and record `flags`.
fn make_header(rsn: u64, dmaster: u32, flags: u32) -> LtdbHeader {
    LtdbHeader {
        flags,
        ..LtdbHeader::new(rsn, dmaster)
    }
}

/// The cluster as this database sees it: from the core's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// This node.
    pub pnn: u32,
    /// The vnn-map generation; node messages of any other are dropped.
    pub generation: u32,
    /// The lmaster-capable active nodes, in the leader's order.
    pub vnn_map: Vec<u32>,
    /// Recovery is active: records must not change.
    pub recovering: bool,
}

impl View {
    /// The node that always knows where `key` is: the vnn map's entry at the key's
    /// hash. `None` while the map is empty (no recovery has finished yet).
    pub fn lmaster(&self, key: &[u8]) -> Option<u32> {
        if self.vnn_map.is_empty() {
            return None;
        }
        let slot = lookup3(key) as usize % self.vnn_map.len();
        Some(self.vnn_map[slot])
    }
}

/// A call as a client or a node asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// [`CALL_NULL`], [`CALL_FETCH`] or [`CALL_FETCH_WITH_HEADER`].
    pub callid: u32,
    /// The call's flags as sent (immediate migration, want read-only); kept and
    /// passed on, not acted upon: every call reaching a remote dmaster migrates
    /// the record, as in CTDB 4.17.
    pub flags: u32,
    /// The record's key.
    pub key: Vec<u8>,
    /// Arguments of the call function (none of the built-in ones reads them).
    pub calldata: Vec<u8>,
}

/// A node-to-node message of the migration protocol, with the header fields it
/// needs; the edge turns it into REQ_CALL, REQ_DMASTER, REPLY_DMASTER or
/// REPLY_ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMessage {
    /// A call on its way to the dmaster (REQ_CALL). `origin` and `reqid` stay the
    /// same on every hop: they name the waiting call on the origin node.
    Call {
        /// The node whose client asked.
        origin: u32,
        /// The origin's id of the call.
        reqid: u32,
        /// Hops so far (statistics only).
        hopcount: u32,
        /// The call.
        call: Call,
    },
    /// The old dmaster hands the record to the lmaster for `new_dmaster`
    /// (REQ_DMASTER).
    Dmaster {
        /// The origin's id of the call that wants the record.
        reqid: u32,
        /// The node that gets the record.
        new_dmaster: u32,
        /// The record's key.
        key: Vec<u8>,
        /// rsn and flags as the old dmaster had them.
        rsn: u64,
        /// Record flags.
        flags: u32,
        /// The value, without header.
        value: Vec<u8>,
    },
    /// The lmaster gives the record to its new dmaster (REPLY_DMASTER).
    DmasterReply {
        /// The new dmaster's id of its call.
        reqid: u32,
        /// The record's key.
        key: Vec<u8>,
        /// rsn as the old dmaster had it.
        rsn: u64,
        /// Record flags.
        flags: u32,
        /// The value, without header.
        value: Vec<u8>,
    },
    /// A call could not be served (REPLY_ERROR).
    Error {
        /// The origin's id of the failed call.
        reqid: u32,
        /// The status to report.
        status: i32,
        /// Why, for the log.
        message: String,
    },
}

/// What the edge must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer a client's call (REPLY_CALL with the client's reqid).
    ReplyToClient {
        /// The client.
        client: ClientId,
        /// The client's reqid.
        reqid: u32,
        /// The call function's status.
        status: i32,
        /// The call's result.
        data: Vec<u8>,
    },
    /// Send a message to node `to`, stamped with `generation`.
    Send {
        /// The destination node.
        to: u32,
        /// The vnn-map generation the message belongs to.
        generation: u32,
        /// The message.
        message: NodeMessage,
    },
    /// The chain lock of `key` is busy: wait for it outside this thread, then
    /// call [`Database::lock_acquired`] with the lock held.
    WaitForLock {
        /// The record's key.
        key: Vec<u8>,
    },
    /// Two nodes disagree about who holds a record: the leader must recover.
    RecoveryNeeded {
        /// What was seen, for the log.
        reason: String,
    },
}

/// A record as stored: header and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The ltdb header.
    pub header: LtdbHeader,
    /// The application's bytes after it.
    pub value: Vec<u8>,
}

/// A failure of the record store (libtdb's error text, or the test store's).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The database file as the machine uses it. The daemon's implementation is libtdb
/// on the file smbd shares; tests use a map.
pub trait RecordStore {
    /// Takes the chain lock of `key` if it is free; `false` if someone (smbd, a
    /// freeze) holds it.
    fn try_lock(&mut self, key: &[u8]) -> Result<bool, StoreError>;
    /// Gives up the chain lock of `key` (taken by `try_lock`, or by the edge
    /// before [`Database::lock_acquired`]).
    fn unlock(&mut self, key: &[u8]);
    /// The record of `key`, if there is one with a whole header. Called only with
    /// the chain lock held.
    fn fetch(&mut self, key: &[u8]) -> Result<Option<Record>, StoreError>;
    /// Writes a record. Called only with the chain lock held.
    fn store(&mut self, key: &[u8], record: &Record) -> Result<(), StoreError>;
    /// Removes a record. Called only with the chain lock held.
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError>;
}

/// Who waits for a call's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientCall {
    client: ClientId,
    reqid: u32,
    call: Call,
}

/// One piece of work on one record, done under its chain lock.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Work {
    /// A local client's call.
    Client(ClientCall),
    /// A message from node `from` (generation already checked on arrival, and
    /// again before it is done).
    Node {
        from: u32,
        generation: u32,
        message: NodeMessage,
    },
}

impl Work {
    fn key(&self) -> &[u8] {
        match self {
            Work::Client(c) => &c.call.key,
            Work::Node { message, .. } => match message {
                NodeMessage::Call { call, .. } => &call.key,
                NodeMessage::Dmaster { key, .. } | NodeMessage::DmasterReply { key, .. } => key,
                NodeMessage::Error { .. } => &[],
            },
        }
    }
}

/// Migration state of one attached database on one node.
#[derive(Debug)]
pub struct Database {
    db_id: u32,
    /// Calls this node sent out for its clients, by the reqid on the wire.
    in_flight: BTreeMap<u32, ClientCall>,
    /// Keys with a call in flight from here, and the client calls parked behind it
    /// (fetch collapse: many smbds wanting one record cost one migration).
    collapsed: HashMap<Vec<u8>, VecDeque<ClientCall>>,
    /// Keys whose chain lock is being waited for, with the work queued on each.
    lock_queues: HashMap<Vec<u8>, VecDeque<Work>>,
    /// Work that arrived while recovery was active.
    held: Vec<Work>,
    /// Node messages of a generation other than the view's, until the view
    /// changes.
    unmatched: Vec<(u32, u32, NodeMessage)>,
    /// The generation the in-flight calls were sent in.
    generation: u32,
    /// The next id for a call sent to another node; the owner of several
    /// databases shares one counter between them, so that ids never collide.
    pub next_reqid: u32,
}

impl Database {
    /// A database with nothing in flight.
    pub fn new(db_id: u32) -> Self {
        Self {
            db_id,
            in_flight: BTreeMap::new(),
            collapsed: HashMap::new(),
            lock_queues: HashMap::new(),
            held: Vec::new(),
            unmatched: Vec::new(),
            generation: 0,
            next_reqid: 1,
        }
    }

    /// The database's id.
    pub fn db_id(&self) -> u32 {
        self.db_id
    }

    /// Calls sent out and not yet answered.
    pub fn calls_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A local client asks for a call on a record.
    pub fn client_call(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        client: ClientId,
        reqid: u32,
        call: Call,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if let Err(e) = limits::check_call(&call.key, &call.calldata) {
            // Refused here, before anything is locked or sent: the client hears
            // at once (status -1) instead of waiting for nothing.
            warn!(
                db_id = self.db_id,
                client = client.0,
                field = e.field,
                error = %e,
                "client call refused"
            );
            out.push(Action::ReplyToClient {
                client,
                reqid,
                status: -1,
                data: Vec::new(),
            });
            return out;
        }
        self.submit(
            view,
            store,
            Work::Client(ClientCall {
                client,
                reqid,
                call,
            }),
            &mut out,
        );
        out
    }

    /// A migration message from node `from`, stamped with `generation`.
    pub fn node_message(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        from: u32,
        generation: u32,
        message: NodeMessage,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(refused) = self.over_limit(view, store, from, generation, &message) {
            return refused;
        }
        if generation != view.generation {
            // Either left over from before a recovery (dropped at the next change
            // of view), or from a node that saw the new generation before we did:
            // this thread learns of a recovery a little after the peer links
            // deliver, so it keeps such messages until its view catches up.
            if self.unmatched.len() < MAX_UNMATCHED {
                self.unmatched.push((from, generation, message));
            } else {
                debug!(
                    db_id = self.db_id,
                    from, generation, "dropping a message of another generation"
                );
            }
            return out;
        }
        if let NodeMessage::DmasterReply { key, reqid, .. } = &message {
            // Only the key's lmaster hands a record to its new dmaster; a copy
            // from anyone else (a confused or forged peer) would overwrite the
            // record here, so it is not taken. The call it names keeps waiting for
            // the real one.
            let lmaster = view.lmaster(key);
            if lmaster != Some(from) {
                warn!(
                    db_id = self.db_id,
                    from,
                    reqid,
                    ?lmaster,
                    "record hand-over from a node that is not the key's lmaster; ignored"
                );
                return out;
            }
        }
        if let NodeMessage::Error {
            reqid,
            status,
            message,
        } = message
        {
            self.call_failed(view, store, from, reqid, status, &message, &mut out);
            return out;
        }
        self.submit(
            view,
            store,
            Work::Node {
                from,
                generation,
                message,
            },
            &mut out,
        );
        out
    }

    /// A node message whose key, call data or value is over the limits
    /// ([`limits`]): what to do instead of taking it, or `None` if it is within
    /// them. The one waiting for it is told with an error (REPLY_ERROR), so no
    /// call waits for ever; a record in a refused hand-over has already left its
    /// old dmaster, whose copy keeps the value, so a recovery is asked for to make
    /// that copy the record again rather than lose it.
    fn over_limit(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        from: u32,
        generation: u32,
        message: &NodeMessage,
    ) -> Option<Vec<Action>> {
        let (checked, waiting_node, reqid, kind) = match message {
            NodeMessage::Call {
                origin,
                reqid,
                call,
                ..
            } => (
                limits::check_call(&call.key, &call.calldata),
                *origin,
                *reqid,
                "call",
            ),
            NodeMessage::Dmaster {
                reqid,
                new_dmaster,
                key,
                value,
                ..
            } => (
                limits::check_record(key, value),
                *new_dmaster,
                *reqid,
                "record hand-over",
            ),
            NodeMessage::DmasterReply {
                reqid, key, value, ..
            } => (
                limits::check_record(key, value),
                view.pnn,
                *reqid,
                "record hand-over",
            ),
            NodeMessage::Error { .. } => return None,
        };
        let e = checked.err()?;
        warn!(
            db_id = self.db_id,
            from,
            field = e.field,
            error = %e,
            "{kind} from another node refused"
        );
        let mut out = Vec::new();
        let text = format!("db {:#010x}: {kind} refused: {e}", self.db_id);
        if waiting_node == view.pnn {
            self.call_failed(view, store, from, reqid, -1, &text, &mut out);
        } else {
            out.push(Action::Send {
                to: waiting_node,
                generation,
                message: NodeMessage::Error {
                    reqid,
                    status: -1,
                    message: text.clone(),
                },
            });
        }
        if !matches!(message, NodeMessage::Call { .. }) {
            out.push(Action::RecoveryNeeded { reason: text });
        }
        Some(out)
    }

    /// The edge holds the chain lock of `key` that an [`Action::WaitForLock`]
    /// asked for: the first queued piece of work runs now.
    pub fn lock_acquired(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        key: &[u8],
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(queue) = self.lock_queues.get_mut(key) else {
            // Nothing waits any more (a recovery dropped it): just let go.
            store.unlock(key);
            return out;
        };
        let work = queue.pop_front();
        if let Some(work) = work {
            self.run_locked(view, store, work, &mut out);
        }
        store.unlock(key);
        self.drain_queue(view, store, key, &mut out);
        out
    }

    /// The cluster changed (a new generation, recovery started or ended). After a
    /// recovery, the calls in flight start again from here (their records may have
    /// moved, and messages of the old generation are gone) and the work held during
    /// recovery is done.
    pub fn view_changed(&mut self, view: &View, store: &mut dyn RecordStore) -> Vec<Action> {
        let mut out = Vec::new();
        if view.recovering {
            return out;
        }
        let mut redo: Vec<Work> = Vec::new();
        if view.generation != self.generation {
            self.generation = view.generation;
            // Calls in flight and those parked behind them, in the order they came.
            for (_, call) in std::mem::take(&mut self.in_flight) {
                let parked = self.collapsed.remove(&call.call.key).unwrap_or_default();
                redo.push(Work::Client(call));
                redo.extend(parked.into_iter().map(Work::Client));
            }
            for (_, parked) in self.collapsed.drain() {
                redo.extend(parked.into_iter().map(Work::Client));
            }
        }
        redo.append(&mut self.held);
        for work in redo {
            self.submit(view, store, work, &mut out);
        }
        let mut dropped = 0usize;
        for (from, generation, message) in std::mem::take(&mut self.unmatched) {
            if generation == view.generation {
                out.extend(self.node_message(view, store, from, generation, message));
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            // Their senders start over in the new generation (§4.4).
            debug!(
                db_id = self.db_id,
                dropped,
                generation = view.generation,
                "dropped node messages of another generation"
            );
        }
        out
    }

    /// Queues `work` behind its key's lock, or does it now if the lock is free.
    fn submit(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        work: Work,
        out: &mut Vec<Action>,
    ) {
        if view.recovering || view.vnn_map.is_empty() {
            self.held.push(work);
            return;
        }
        let key = work.key().to_vec();
        if let Some(queue) = self.lock_queues.get_mut(&key) {
            queue.push_back(work);
            return;
        }
        match store.try_lock(&key) {
            Ok(true) => {
                self.run_locked(view, store, work, out);
                store.unlock(&key);
                // Calls parked behind a migration that just ended wait in the
                // key's queue now.
                self.drain_queue(view, store, &key, out);
            }
            Ok(false) => {
                self.lock_queues.insert(key.clone(), VecDeque::from([work]));
                out.push(Action::WaitForLock { key });
            }
            Err(e) => {
                warn!(db_id = self.db_id, error = %e, "cannot lock a record; dropping the request")
            }
        }
    }

    /// After a lock-waited piece of work: the rest of the key's queue runs while
    /// the lock can be had without waiting.
    fn drain_queue(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        key: &[u8],
        out: &mut Vec<Action>,
    ) {
        loop {
            let Some(queue) = self.lock_queues.get_mut(key) else {
                return;
            };
            if queue.is_empty() {
                self.lock_queues.remove(key);
                return;
            }
            match store.try_lock(key) {
                Ok(true) => {
                    let work = queue.pop_front().expect("queue is not empty");
                    self.run_locked(view, store, work, out);
                    store.unlock(key);
                }
                Ok(false) => {
                    out.push(Action::WaitForLock { key: key.to_vec() });
                    return;
                }
                Err(e) => {
                    warn!(db_id = self.db_id, error = %e, "cannot lock a record; dropping its queued requests");
                    self.lock_queues.remove(key);
                    return;
                }
            }
        }
    }

    /// Does one piece of work with the chain lock of its key held.
    fn run_locked(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        work: Work,
        out: &mut Vec<Action>,
    ) {
        if view.recovering {
            // It waited for the lock into a recovery: it runs after it.
            self.held.push(work);
            return;
        }
        let result = match work {
            Work::Client(call) => self.client_call_locked(view, store, call, out),
            Work::Node {
                from,
                generation,
                message,
            } => {
                if generation != view.generation {
                    // It waited for the lock across a recovery: its sender starts
                    // over in the new generation.
                    return;
                }
                match message {
                    NodeMessage::Call {
                        origin,
                        reqid,
                        hopcount,
                        call,
                    } => self.node_call_locked(view, store, origin, reqid, hopcount, call, out),
                    NodeMessage::Dmaster {
                        reqid,
                        new_dmaster,
                        key,
                        rsn,
                        flags,
                        value,
                    } => self.dmaster_request_locked(
                        view,
                        store,
                        from,
                        reqid,
                        new_dmaster,
                        key,
                        rsn,
                        flags,
                        value,
                        out,
                    ),
                    NodeMessage::DmasterReply {
                        reqid,
                        key,
                        rsn,
                        flags,
                        value,
                    } => self.become_dmaster(view, store, reqid, key, rsn, flags, value, out),
                    NodeMessage::Error { .. } => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            warn!(db_id = self.db_id, error = %e, "record store failed; the request is dropped");
        }
    }

    /// The local record of `key`, or the header CTDB makes up for a missing one
    /// (rsn 0, dmaster = lmaster), stored at once if this node is the lmaster.
    fn fetch_or_initial(
        &self,
        view: &View,
        store: &mut dyn RecordStore,
        key: &[u8],
    ) -> Result<Record, StoreError> {
        if let Some(record) = store.fetch(key)? {
            return Ok(record);
        }
        let lmaster = view.lmaster(key).unwrap_or(view.pnn);
        let mut record = Record {
            header: make_header(0, lmaster, flags::AUTOMATIC),
            value: Vec::new(),
        };
        if lmaster == view.pnn {
            self.store_record(view, store, key, &mut record)?;
        }
        Ok(record)
    }

    /// Stores a record the way ctdbd does (§4.5, §4.6): as dmaster the rsn goes up
    /// by one; an empty copy that nobody needs (not dmaster, not lmaster, never
    /// migrated with data) is deleted rather than kept. `record` is left as
    /// stored.
    fn store_record(
        &self,
        view: &View,
        store: &mut dyn RecordStore,
        key: &[u8],
        record: &mut Record,
    ) -> Result<(), StoreError> {
        let header = &mut record.header;
        if header.dmaster == view.pnn && header.flags & flags::RO_FLAGS == 0 {
            header.rsn += 1;
        }
        let keep = !record.value.is_empty()
            || header.flags & (flags::RO_FLAGS | flags::AUTOMATIC | flags::MIGRATED_WITH_DATA) != 0
            || view.lmaster(key) == Some(view.pnn)
            || header.dmaster == view.pnn;
        header.flags &= !(flags::AUTOMATIC | flags::VACUUM_MIGRATED);
        if keep {
            store.store(key, record)
        } else {
            store.delete(key)
        }
    }

    /// Runs a built-in call function on a record this node is dmaster of: the
    /// record is stored back (its rsn goes up, as in CTDB) and the result returned.
    fn run_call(
        &self,
        view: &View,
        store: &mut dyn RecordStore,
        call: &Call,
        mut record: Record,
    ) -> Result<(i32, Vec<u8>), StoreError> {
        self.store_record(view, store, &call.key, &mut record)?;
        Ok(match call.callid {
            CALL_NULL => (0, Vec::new()),
            CALL_FETCH => (0, record.value),
            CALL_FETCH_WITH_HEADER => {
                let mut data = record.header.to_bytes().to_vec();
                data.extend_from_slice(&record.value);
                (0, data)
            }
            other => {
                warn!(
                    db_id = self.db_id,
                    callid = format_args!("{other:#x}"),
                    "unknown call function"
                );
                (-1, Vec::new())
            }
        })
    }

    fn client_call_locked(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        call: ClientCall,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        let key = call.call.key.clone();
        if let Some(parked) = self.collapsed.get_mut(&key) {
            // A call for this record is already on its way: this one waits for it
            // and then (most likely) finds the record here.
            parked.push_back(call);
            return Ok(());
        }
        let record = self.fetch_or_initial(view, store, &key)?;
        if record.header.dmaster == view.pnn {
            let (status, data) = self.run_call(view, store, &call.call, record)?;
            out.push(Action::ReplyToClient {
                client: call.client,
                reqid: call.reqid,
                status,
                data,
            });
            return Ok(());
        }
        let reqid = self.allocate_reqid();
        out.push(Action::Send {
            to: record.header.dmaster,
            generation: view.generation,
            message: NodeMessage::Call {
                origin: view.pnn,
                reqid,
                hopcount: 0,
                call: call.call.clone(),
            },
        });
        self.generation = view.generation;
        self.collapsed.insert(key, VecDeque::new());
        self.in_flight.insert(reqid, call);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn node_call_locked(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        origin: u32,
        reqid: u32,
        hopcount: u32,
        call: Call,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        let record = self.fetch_or_initial(view, store, &call.key)?;
        let lmaster = view.lmaster(&call.key).unwrap_or(view.pnn);
        if record.header.dmaster != view.pnn {
            // Not ours: the lmaster knows where it is; anyone else sends it there.
            let to = if lmaster == view.pnn {
                record.header.dmaster
            } else {
                lmaster
            };
            if hopcount % 100 > 95 {
                warn!(
                    db_id = self.db_id,
                    hopcount, origin, "a call keeps bouncing between nodes"
                );
            }
            out.push(Action::Send {
                to,
                generation: view.generation,
                message: NodeMessage::Call {
                    origin,
                    reqid,
                    hopcount: hopcount + 1,
                    call,
                },
            });
            return Ok(());
        }
        if origin == view.pnn {
            // Our own call came back to us, and the record is here now.
            let (status, data) = self.run_call(view, store, &call, record)?;
            if let Some(waiting) = self.in_flight.remove(&reqid) {
                out.push(Action::ReplyToClient {
                    client: waiting.client,
                    reqid: waiting.reqid,
                    status,
                    data,
                });
                self.release_collapsed(&call.key);
            }
            return Ok(());
        }
        // We are the dmaster and another node wants it: hand it over, unless it
        // has grown (smbd writes the file itself) beyond what another node takes.
        // Then it stays here and the asking node's call fails.
        if let Err(e) = limits::check_record(&call.key, &record.value) {
            warn!(
                db_id = self.db_id,
                origin,
                field = e.field,
                error = %e,
                "record too big to hand over; it stays here"
            );
            out.push(Action::Send {
                to: origin,
                generation: view.generation,
                message: NodeMessage::Error {
                    reqid,
                    status: -1,
                    message: format!("db {:#010x}: record not handed over: {e}", self.db_id),
                },
            });
            return Ok(());
        }
        let mut header = record.header;
        if !record.value.is_empty() {
            header.flags |= flags::MIGRATED_WITH_DATA;
        }
        let mut kept = Record {
            header: make_header(header.rsn, origin, header.flags),
            value: record.value.clone(),
        };
        kept.header.reserved1 = header.reserved1;
        self.store_record(view, store, &call.key, &mut kept)?;
        let message = if lmaster == view.pnn {
            NodeMessage::DmasterReply {
                reqid,
                key: call.key,
                rsn: header.rsn,
                flags: header.flags,
                value: record.value,
            }
        } else {
            NodeMessage::Dmaster {
                reqid,
                new_dmaster: origin,
                key: call.key,
                rsn: header.rsn,
                flags: header.flags,
                value: record.value,
            }
        };
        let to = if lmaster == view.pnn { origin } else { lmaster };
        out.push(Action::Send {
            to,
            generation: view.generation,
            message,
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn dmaster_request_locked(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        from: u32,
        reqid: u32,
        new_dmaster: u32,
        key: Vec<u8>,
        rsn: u64,
        flags: u32,
        value: Vec<u8>,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        if view.lmaster(&key) != Some(view.pnn) {
            warn!(
                db_id = self.db_id,
                from, "a record hand-over reached a node that is not its lmaster"
            );
            out.push(Action::RecoveryNeeded {
                reason: format!("db {:#010x}: hand-over from node {from} sent to a node that is not the lmaster", self.db_id),
            });
            return Ok(());
        }
        if let Some(local) = store.fetch(&key)? {
            let fresh = local.header.rsn == 0 && local.header.dmaster == view.pnn;
            if local.header.dmaster != from && !fresh {
                out.push(Action::RecoveryNeeded {
                    reason: format!(
                        "db {:#010x}: node {from} handed over a record whose dmaster is node {} here",
                        self.db_id, local.header.dmaster
                    ),
                });
                return Ok(());
            }
        }
        if new_dmaster == view.pnn {
            return self.become_dmaster(view, store, reqid, key, rsn, flags, value, out);
        }
        let mut copy = Record {
            header: make_header(rsn, new_dmaster, flags),
            value: value.clone(),
        };
        self.store_record(view, store, &key, &mut copy)?;
        out.push(Action::Send {
            to: new_dmaster,
            generation: view.generation,
            message: NodeMessage::DmasterReply {
                reqid,
                key,
                rsn,
                flags,
                value,
            },
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn become_dmaster(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        reqid: u32,
        key: Vec<u8>,
        rsn: u64,
        flags: u32,
        value: Vec<u8>,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        let mut record = Record {
            header: make_header(rsn, view.pnn, flags),
            value,
        };
        self.store_record(view, store, &key, &mut record)?;
        let Some(waiting) = self.in_flight.remove(&reqid) else {
            debug!(
                db_id = self.db_id,
                reqid, "record arrived for a call that no longer waits"
            );
            self.release_collapsed(&key);
            return Ok(());
        };
        if waiting.call.key != key {
            warn!(
                db_id = self.db_id,
                reqid, "record arrived with another key than its call asked for"
            );
            self.in_flight.insert(reqid, waiting);
            return Ok(());
        }
        let (status, data) = self.run_call(view, store, &waiting.call, record)?;
        out.push(Action::ReplyToClient {
            client: waiting.client,
            reqid: waiting.reqid,
            status,
            data,
        });
        self.release_collapsed(&key);
        Ok(())
    }

    /// A REPLY_ERROR for one of our calls: CTDB sends the client nothing (it
    /// would hang), so neither do we; the calls parked behind it try again.
    #[allow(clippy::too_many_arguments)]
    fn call_failed(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        from: u32,
        reqid: u32,
        status: i32,
        message: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(call) = self.in_flight.remove(&reqid) else {
            return;
        };
        warn!(
            db_id = self.db_id,
            from,
            status,
            message,
            client = call.client.0,
            "a node refused a call; the client gets no answer, as with CTDB"
        );
        let parked = self.collapsed.remove(&call.call.key).unwrap_or_default();
        for next in parked {
            self.submit(view, store, Work::Client(next), out);
        }
    }

    /// The record of `key` is here (or the call for it is over): the calls parked
    /// behind the one in flight run again, in order, and now find it local.
    fn release_collapsed(&mut self, key: &[u8]) {
        let Some(parked) = self.collapsed.remove(key) else {
            return;
        };
        if parked.is_empty() {
            return;
        }
        // They run under the same lock, after this piece of work: put them at
        // the front of the key's queue, so nothing that came later overtakes them.
        let queue = self.lock_queues.entry(key.to_vec()).or_default();
        for call in parked.into_iter().rev() {
            queue.push_front(Work::Client(call));
        }
    }

    fn allocate_reqid(&mut self) -> u32 {
        let id = self.next_reqid;
        self.next_reqid = self.next_reqid.wrapping_add(1).max(1);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Records in a map; a lock is free unless this test holds it.
    #[derive(Default)]
    struct MapStore {
        records: BTreeMap<Vec<u8>, Record>,
        held: BTreeSet<Vec<u8>>,
    }

    impl RecordStore for MapStore {
        fn try_lock(&mut self, key: &[u8]) -> Result<bool, StoreError> {
            Ok(self.held.insert(key.to_vec()))
        }
        fn unlock(&mut self, key: &[u8]) {
            assert!(self.held.remove(key), "unlock of a lock not held");
        }
        fn fetch(&mut self, key: &[u8]) -> Result<Option<Record>, StoreError> {
            Ok(self.records.get(key).cloned())
        }
        fn store(&mut self, key: &[u8], record: &Record) -> Result<(), StoreError> {
            self.records.insert(key.to_vec(), record.clone());
            Ok(())
        }
        fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
            self.records.remove(key);
            Ok(())
        }
    }

    /// Node `pnn` of a 2-node cluster in generation 7.
    fn view(pnn: u32) -> View {
        View {
            pnn,
            generation: 7,
            vnn_map: vec![0, 1],
            recovering: false,
        }
    }

    /// A key whose lmaster is `node` in [`view`].
    fn key_on(node: u32) -> Vec<u8> {
        (0u32..)
            .map(|i| format!("key-{i}").into_bytes())
            .find(|k| view(0).lmaster(k) == Some(node))
            .unwrap()
    }

    fn call(key: Vec<u8>, calldata: Vec<u8>) -> Call {
        Call {
            callid: CALL_NULL,
            flags: 0,
            key,
            calldata,
        }
    }

    #[test]
    fn a_client_call_over_the_limits_is_answered_with_an_error_and_touches_nothing() {
        let mut db = Database::new(0x42);
        let mut store = MapStore::default();
        let long_key = vec![b'k'; limits::MAX_KEY_LEN + 1];
        let out = db.client_call(&view(0), &mut store, ClientId(3), 9, call(long_key, vec![]));
        assert_eq!(
            out,
            vec![Action::ReplyToClient {
                client: ClientId(3),
                reqid: 9,
                status: -1,
                data: vec![]
            }]
        );
        let big_calldata = vec![0; limits::MAX_VALUE_LEN + 1];
        let out = db.client_call(
            &view(0),
            &mut store,
            ClientId(3),
            10,
            call(b"k".to_vec(), big_calldata),
        );
        assert!(
            matches!(
                &out[..],
                [Action::ReplyToClient {
                    status: -1,
                    reqid: 10,
                    ..
                }]
            ),
            "{out:?}"
        );
        assert!(store.records.is_empty() && store.held.is_empty());
        assert_eq!(db.calls_in_flight(), 0);
        // A call within the limits still works.
        let out = db.client_call(
            &view(0),
            &mut store,
            ClientId(3),
            11,
            call(key_on(0), vec![]),
        );
        assert!(
            matches!(
                &out[..],
                [Action::ReplyToClient {
                    status: 0,
                    reqid: 11,
                    ..
                }]
            ),
            "{out:?}"
        );
    }

    #[test]
    fn a_node_call_over_the_limits_gets_a_reply_error_to_its_origin() {
        let mut db = Database::new(0x42);
        let mut store = MapStore::default();
        let out = db.node_message(
            &view(0),
            &mut store,
            1,
            7,
            NodeMessage::Call {
                origin: 1,
                reqid: 55,
                hopcount: 0,
                call: call(vec![0; limits::MAX_KEY_LEN + 1], vec![]),
            },
        );
        match &out[..] {
            [Action::Send {
                to: 1,
                generation: 7,
                message:
                    NodeMessage::Error {
                        reqid: 55,
                        status: -1,
                        message,
                    },
            }] => assert!(message.contains("key of 65537 bytes"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert!(store.records.is_empty());
    }

    /// A hand-over (REQ_DMASTER at the lmaster) with a value over the limit is
    /// not stored; the new dmaster's call fails, and a recovery is asked for so
    /// that the old dmaster's copy becomes the record again.
    #[test]
    fn a_hand_over_over_the_limit_is_refused_and_a_recovery_asked_for() {
        let mut db = Database::new(0x42);
        let mut store = MapStore::default();
        let key = key_on(0);
        let out = db.node_message(
            &view(0),
            &mut store,
            1,
            7,
            NodeMessage::Dmaster {
                reqid: 8,
                new_dmaster: 1,
                key: key.clone(),
                rsn: 4,
                flags: 0,
                value: vec![0; limits::MAX_VALUE_LEN + 1],
            },
        );
        assert!(
            matches!(
                &out[..],
                [
                    Action::Send {
                        to: 1,
                        message: NodeMessage::Error { reqid: 8, .. },
                        ..
                    },
                    Action::RecoveryNeeded { .. }
                ]
            ),
            "{out:?}"
        );
        assert!(store.records.is_empty());
    }

    /// The dmaster of a record that smbd has grown over the limit keeps it rather
    /// than send what the other node would refuse: the asking node's call fails.
    #[test]
    fn a_record_over_the_limit_stays_with_its_dmaster() {
        let mut db = Database::new(0x42);
        let mut store = MapStore::default();
        let key = key_on(0);
        let big = Record {
            header: make_header(5, 0, 0),
            value: vec![1; limits::MAX_VALUE_LEN + 1],
        };
        store.records.insert(key.clone(), big.clone());
        let out = db.node_message(
            &view(0),
            &mut store,
            1,
            7,
            NodeMessage::Call {
                origin: 1,
                reqid: 12,
                hopcount: 0,
                call: call(key.clone(), vec![]),
            },
        );
        assert!(
            matches!(
                &out[..],
                [Action::Send {
                    to: 1,
                    message: NodeMessage::Error {
                        reqid: 12,
                        status: -1,
                        ..
                    },
                    ..
                }]
            ),
            "{out:?}"
        );
        assert_eq!(
            store.records.get(&key),
            Some(&big),
            "the record must stay as it was"
        );
    }

    /// A REPLY_DMASTER from a node that is not the key's lmaster does not
    /// overwrite the record, and the call waiting for it keeps waiting.
    #[test]
    fn a_hand_over_from_a_node_that_is_not_the_lmaster_is_ignored() {
        let mut db = Database::new(0x42);
        let mut store = MapStore::default();
        // A key whose lmaster is node 1, currently held by node 1.
        let key = key_on(1);
        let out = db.client_call(
            &view(0),
            &mut store,
            ClientId(1),
            5,
            call(key.clone(), vec![]),
        );
        let reqid = match &out[..] {
            [Action::Send {
                to: 1,
                message: NodeMessage::Call { reqid, .. },
                ..
            }] => *reqid,
            other => panic!("{other:?}"),
        };
        // Node 2 (not in the map, not the lmaster) claims to hand it over.
        let forged = NodeMessage::DmasterReply {
            reqid,
            key: key.clone(),
            rsn: 1000,
            flags: 0,
            value: b"forged".to_vec(),
        };
        let out = db.node_message(&view(0), &mut store, 2, 7, forged);
        assert!(out.is_empty(), "{out:?}");
        assert!(!store.records.contains_key(&key));
        assert_eq!(db.calls_in_flight(), 1);
        // The real one from the lmaster is taken and answers the client.
        let real = NodeMessage::DmasterReply {
            reqid,
            key: key.clone(),
            rsn: 3,
            flags: 0,
            value: b"real".to_vec(),
        };
        let out = db.node_message(&view(0), &mut store, 1, 7, real);
        assert!(
            matches!(
                &out[..],
                [Action::ReplyToClient {
                    reqid: 5,
                    status: 0,
                    ..
                }]
            ),
            "{out:?}"
        );
        assert_eq!(store.records[&key].value, b"real");
    }

    /// A message of another generation is neither answered nor done; it is kept
    /// until the view changes and dropped then if it still does not match.
    #[test]
    fn a_message_of_another_generation_is_not_done_and_then_dropped() {
        let mut db = Database::new(0x42);
        let mut store = MapStore::default();
        let key = key_on(0);
        let out = db.node_message(
            &view(0),
            &mut store,
            1,
            6,
            NodeMessage::Dmaster {
                reqid: 8,
                new_dmaster: 1,
                key: key.clone(),
                rsn: 4,
                flags: 0,
                value: b"old".to_vec(),
            },
        );
        assert!(out.is_empty(), "{out:?}");
        assert!(store.records.is_empty());
        let next = View {
            generation: 8,
            ..view(0)
        };
        assert!(db.view_changed(&next, &mut store).is_empty());
        assert!(store.records.is_empty());
        assert!(db.unmatched.is_empty());
    }
}
