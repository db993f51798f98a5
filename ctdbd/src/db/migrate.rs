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
//! # Read-only delegations and sticky records
//! On a database marked read-only, a read with `WANT_READONLY` that reaches the
//! dmaster is answered with a copy instead of the record (REPLY_CALL with
//! [`NodeMessage::CallReply`]); the asking node stores the copy, flagged
//! `RO_HAVE_READONLY`, for its smbds to read by themselves. Any other call on a
//! record with delegations first revokes them: the record is flagged
//! `RO_REVOKING_READONLY`, calls for it wait, the edge overwrites every
//! delegate's copy ([`Action::Revoke`], UPDATE_RECORD) and reports the answers
//! ([`Database::revoke_answered`]); once all stored it, the record is flagged
//! `RO_REVOKE_COMPLETE`, the writes that waited run at once and the reads a
//! second later ([`Action::StartTimer`]). The header arithmetic is in
//! [`super::readonly`]. On a sticky database, a call that bounced
//! `HopcountMakeSticky` times makes its record sticky; a node that becomes
//! dmaster of a sticky record keeps it for `StickyPindown`, other nodes' calls
//! waiting meanwhile.
//!
//! Node-to-node messages carry the vnn-map generation; any from another generation
//! are dropped, and the calls this node started are started again after a recovery
//! (the records may have moved). While recovery is active nothing is done: the work
//! waits and is replayed once the cluster is back to normal.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use thiserror::Error;
use tracing::{debug, warn};

use super::hash::lookup3;
use super::limits;
use super::ltdb::{self, flags, LtdbHeader, HEADER_LEN};
use super::readonly::{self, StickyTunables, RETRY_AFTER_REVOCATION};
use crate::core::ClientId;
use crate::protocol::call::call_flags::WANT_READONLY;

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
    /// The call's flags as sent. Immediate migration is not acted upon: every
    /// call reaching a remote dmaster migrates the record, as in CTDB 4.17,
    /// unless it asks `WANT_READONLY` on a read-only database.
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
    /// The dmaster answers a call without handing the record over (REPLY_CALL):
    /// a read-only delegation, `data` being the delegated copy's header and value.
    CallReply {
        /// The origin's id of the call.
        reqid: u32,
        /// The call function's status.
        status: i32,
        /// The call's result.
        data: Vec<u8>,
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
    /// Revoke the read-only delegations of `key`: store `record` on each of
    /// `nodes` (UPDATE_RECORD, stamped with `generation`), and report each
    /// answer, or its failure or timeout, with [`Database::revoke_answered`]
    /// and this same `generation`.
    Revoke {
        /// The record's key.
        key: Vec<u8>,
        /// The vnn-map generation the revocation belongs to.
        generation: u32,
        /// The nodes holding a delegated copy.
        nodes: Vec<u32>,
        /// What replaces their copies: no longer a delegation.
        record: Record,
    },
    /// Answer node `to`'s UPDATE_RECORD (reqid `token`) that
    /// [`Database::update_copy`] was given: stored or refused.
    CopyUpdated {
        /// The node that asked.
        to: u32,
        /// Its control's reqid.
        token: u32,
        /// Whether the copy was stored.
        ok: bool,
    },
    /// Call [`Database::timer_fired`] with `id` once `after` has passed.
    StartTimer {
        /// The timer's id.
        id: u64,
        /// How long from now.
        after: Duration,
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
    /// The read-only tracking entry of `key` (the `<path>.RO` file of a
    /// read-only database): a bitmap of the nodes holding a delegated copy.
    /// Called only with the record's chain lock held.
    fn tracking_fetch(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes the tracking entry of `key`.
    fn tracking_store(&mut self, key: &[u8], bitmap: &[u8]) -> Result<(), StoreError>;
    /// Removes the tracking entry of `key`.
    fn tracking_delete(&mut self, key: &[u8]) -> Result<(), StoreError>;
}

/// Who waits for a call's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientCall {
    client: ClientId,
    reqid: u32,
    call: Call,
    /// The call function the client asked for when a `WANT_READONLY` call was
    /// turned into FETCH_WITH_HEADER: a FETCH gets its answer without header.
    readonly_fetch: Option<u32>,
}

impl ClientCall {
    /// The answer the client gets for a call that returned `data`.
    fn answer(self, status: i32, mut data: Vec<u8>) -> Action {
        if self.readonly_fetch == Some(CALL_FETCH) {
            data.drain(..HEADER_LEN.min(data.len()));
        }
        Action::ReplyToClient {
            client: self.client,
            reqid: self.reqid,
            status,
            data,
        }
    }

    fn wants_readonly(&self) -> bool {
        self.call.flags & WANT_READONLY != 0
    }
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
    /// The dmaster's answer to one of our calls without the record (a
    /// delegation), for the call's key.
    Reply {
        generation: u32,
        reqid: u32,
        key: Vec<u8>,
        status: i32,
        data: Vec<u8>,
    },
    /// A dmaster revoking its delegations overwrites our copy (UPDATE_RECORD
    /// from node `from`, reqid `token`).
    UpdateCopy {
        from: u32,
        token: u32,
        generation: u32,
        key: Vec<u8>,
        record: Record,
    },
    /// Every delegate of `key` answered the revocation of `generation`: record
    /// how it went.
    RevokeDone { key: Vec<u8>, generation: u32 },
}

impl Work {
    fn key(&self) -> &[u8] {
        match self {
            Work::Client(c) => &c.call.key,
            Work::Node { message, .. } => match message {
                NodeMessage::Call { call, .. } => &call.key,
                NodeMessage::Dmaster { key, .. } | NodeMessage::DmasterReply { key, .. } => key,
                NodeMessage::CallReply { .. } | NodeMessage::Error { .. } => &[],
            },
            Work::Reply { key, .. }
            | Work::UpdateCopy { key, .. }
            | Work::RevokeDone { key, .. } => key,
        }
    }

    /// A call that only wants to read, and that a delegation can answer: after a
    /// revocation it waits a little, so that the writes go first.
    fn wants_readonly(&self) -> bool {
        match self {
            Work::Client(c) => c.wants_readonly(),
            Work::Node {
                message: NodeMessage::Call { call, .. },
                ..
            } => call.flags & WANT_READONLY != 0,
            _ => false,
        }
    }
}

/// A revocation in progress on this node (the dmaster).
#[derive(Debug)]
struct Revocation {
    /// The dmaster's rsn when it started.
    rsn: u64,
    /// The generation it started in: a recovery ends it (see
    /// [`Database::view_changed`]).
    generation: u32,
    /// Delegates that have not answered yet.
    waiting: BTreeSet<u32>,
    /// Some delegate refused, failed or timed out.
    failed: bool,
    /// The calls for the record, waiting for it to end.
    deferred: Vec<Work>,
}

/// A sticky record on this node.
#[derive(Debug)]
struct Sticky {
    /// Pinned down here since this node became its dmaster: the timer that ends
    /// it, and the other nodes' calls waiting for that.
    pinned: Option<(u64, Vec<Work>)>,
}

/// What a timer does when it fires.
#[derive(Debug)]
enum TimerJob {
    /// Runs calls that waited for a revocation.
    Retry(Vec<Work>),
    /// Ends the pin-down of a sticky record.
    PindownOver(Vec<u8>),
    /// Ends a record's stickiness.
    StickyOver(Vec<u8>),
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
    /// `SET_DB_READONLY` was asked for: delegations are granted.
    readonly: bool,
    /// `SET_DB_STICKY` was asked for, with the tunables in force.
    sticky: Option<StickyTunables>,
    /// Revocations of delegations in progress, by key.
    revocations: HashMap<Vec<u8>, Revocation>,
    /// Sticky records, by key.
    sticky_records: HashMap<Vec<u8>, Sticky>,
    /// Timers started and not fired yet.
    timers: HashMap<u64, TimerJob>,
    next_timer: u64,
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
            readonly: false,
            sticky: None,
            revocations: HashMap::new(),
            sticky_records: HashMap::new(),
            timers: HashMap::new(),
            next_timer: 1,
            next_reqid: 1,
        }
    }

    /// `SET_DB_READONLY`: from now on a read with `WANT_READONLY` reaching this
    /// node as dmaster gets a delegation. (The edge opens the tracking file.)
    pub fn set_readonly(&mut self) {
        self.readonly = true;
    }

    /// `SET_DB_STICKY`, or new tunables for a sticky database.
    pub fn set_sticky(&mut self, tunables: StickyTunables) {
        self.sticky = Some(tunables);
    }

    /// Revocations not finished yet (nothing should be left at rest).
    pub fn revocations_in_progress(&self) -> usize {
        self.revocations.len()
    }

    /// Timers started and not fired (calls waiting for a retry or a pin-down).
    pub fn timers_pending(&self) -> usize {
        self.timers.len()
    }

    /// Whether `key` is a sticky record here.
    pub fn is_sticky(&self, key: &[u8]) -> bool {
        self.sticky_records.contains_key(key)
    }

    /// Whether `key` is pinned down here (other nodes' calls wait).
    pub fn is_pinned(&self, key: &[u8]) -> bool {
        self.sticky_records
            .get(key)
            .is_some_and(|s| s.pinned.is_some())
    }

    /// The database's id.
    pub fn db_id(&self) -> u32 {
        self.db_id
    }

    /// Calls sent out and not yet answered.
    pub fn calls_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether call `reqid` sent out from here waits for its answer.
    pub fn waits_for(&self, reqid: u32) -> bool {
        self.in_flight.contains_key(&reqid)
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
                readonly_fetch: None,
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
        if let NodeMessage::CallReply {
            reqid,
            status,
            data,
        } = message
        {
            let Some(waiting) = self.in_flight.get(&reqid) else {
                debug!(
                    db_id = self.db_id,
                    from, reqid, "answer for a call that no longer waits"
                );
                return out;
            };
            let key = waiting.call.key.clone();
            self.submit(
                view,
                store,
                Work::Reply {
                    generation,
                    reqid,
                    key,
                    status,
                    data,
                },
                &mut out,
            );
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
            NodeMessage::CallReply { reqid, data, .. } => (
                limits::check_record(&[], data.get(HEADER_LEN..).unwrap_or_default()),
                view.pnn,
                *reqid,
                "call answer",
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
        if matches!(
            message,
            NodeMessage::Dmaster { .. } | NodeMessage::DmasterReply { .. }
        ) {
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

    /// A delegate answered the UPDATE_RECORD of [`Action::Revoke`] for `key`
    /// sent in `generation` (`ok`), or failed to, or did not in time (`!ok`).
    /// Once every delegate has answered, the revocation ends, complete only if
    /// all of them stored it. The answer to a revocation a recovery ended counts
    /// for nothing (not for a later revocation of the same record either).
    pub fn revoke_answered(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        key: &[u8],
        generation: u32,
        node: u32,
        ok: bool,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(revocation) = self.revocations.get_mut(key) else {
            return out;
        };
        if revocation.generation != generation || !revocation.waiting.remove(&node) {
            return out;
        }
        if !ok {
            warn!(
                db_id = self.db_id,
                node, "a node did not give up its read-only copy; the revocation will be retried"
            );
            revocation.failed = true;
        }
        if revocation.waiting.is_empty() {
            self.submit(
                view,
                store,
                Work::RevokeDone {
                    key: key.to_vec(),
                    generation,
                },
                &mut out,
            );
        }
        out
    }

    /// UPDATE_RECORD from node `from` (reqid `token`, sent in `generation`) on
    /// this volatile database: the dmaster of `key` revokes the delegated copy
    /// here. It is stored under the chain lock if it is newer than ours and of
    /// this generation; [`Action::CopyUpdated`] answers.
    #[allow(clippy::too_many_arguments)]
    pub fn update_copy(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        from: u32,
        generation: u32,
        token: u32,
        key: Vec<u8>,
        record: Record,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if view.recovering || view.vnn_map.is_empty() || generation != view.generation {
            // As CTDB: refused during recovery, which strips every delegation
            // anyway; the dmaster retries. Unlike CTDB, also one sent before
            // the last recovery: its rsn belongs to records the recovery
            // replaced (dropped when empty, so that the rsn starts again from
            // 0), and stored over a newer copy it would beat the dmaster's copy
            // in the next recovery's highest-rsn merge.
            out.push(Action::CopyUpdated {
                to: from,
                token,
                ok: false,
            });
            return out;
        }
        self.submit(
            view,
            store,
            Work::UpdateCopy {
                from,
                token,
                generation,
                key,
                record,
            },
            &mut out,
        );
        out
    }

    /// The timer `id` of an [`Action::StartTimer`] has run out.
    pub fn timer_fired(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        id: u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(job) = self.timers.remove(&id) else {
            return out;
        };
        let rerun = match job {
            TimerJob::Retry(works) => works,
            TimerJob::PindownOver(key) => match self.sticky_records.get_mut(&key) {
                Some(sticky) if sticky.pinned.as_ref().is_some_and(|(t, _)| *t == id) => {
                    sticky.pinned.take().map(|(_, w)| w).unwrap_or_default()
                }
                _ => Vec::new(),
            },
            TimerJob::StickyOver(key) => {
                let Some(sticky) = self.sticky_records.remove(&key) else {
                    return out;
                };
                debug!(db_id = self.db_id, "record no longer sticky");
                match sticky.pinned {
                    Some((pin_timer, works)) => {
                        self.timers.remove(&pin_timer);
                        works
                    }
                    None => Vec::new(),
                }
            }
        };
        for work in rerun {
            self.submit(view, store, work, &mut out);
        }
        out
    }

    fn start_timer(&mut self, after: Duration, job: TimerJob, out: &mut Vec<Action>) -> u64 {
        let id = self.next_timer;
        self.next_timer += 1;
        self.timers.insert(id, job);
        out.push(Action::StartTimer { id, after });
        id
    }

    /// The cluster changed (a new generation, recovery started or ended). After a
    /// recovery, the calls in flight start again from here (their records may have
    /// moved, and messages of the old generation are gone) and the work held during
    /// recovery is done. Revocations in progress end there too: the recovery
    /// stripped every delegation, so the calls that waited for them run again,
    /// and their late answers count for nothing.
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
            let ended = self.revocations.len();
            for (_, revocation) in self.revocations.drain() {
                redo.extend(revocation.deferred);
            }
            if ended > 0 {
                debug!(
                    db_id = self.db_id,
                    ended,
                    generation = view.generation,
                    "revocations ended by a recovery"
                );
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
                    } => self.node_call_locked(
                        view, store, from, generation, origin, reqid, hopcount, call, out,
                    ),
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
                    NodeMessage::CallReply { .. } | NodeMessage::Error { .. } => Ok(()),
                }
            }
            Work::Reply {
                generation,
                reqid,
                key,
                status,
                data,
            } => {
                if generation != view.generation {
                    // The call started again in the new generation.
                    return;
                }
                self.reply_locked(view, store, reqid, key, status, data, out)
            }
            Work::UpdateCopy {
                from,
                token,
                generation,
                key,
                record,
            } => {
                // One sent before a recovery is refused (also when the
                // recovery came while it waited for the lock): the records
                // may have moved since, and this copy is no longer a
                // delegation anyway.
                let stored = if generation == view.generation {
                    self.update_copy_locked(view, store, from, &key, record)
                } else {
                    Ok(false)
                };
                out.push(Action::CopyUpdated {
                    to: from,
                    token,
                    ok: matches!(stored, Ok(true)),
                });
                stored.map(|_| ())
            }
            Work::RevokeDone { key, generation } => {
                self.revoke_done_locked(view, store, key, generation, out)
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
        mut call: ClientCall,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        let key = call.call.key.clone();
        if let Some(parked) = self.collapsed.get_mut(&key) {
            // A call for this record is already on its way: this one waits for it
            // and then (most likely) finds the record here.
            parked.push_back(call);
            return Ok(());
        }
        let mut record = self.fetch_or_initial(view, store, &key)?;
        if !self.readonly {
            call.call.flags &= !WANT_READONLY;
        }
        if self.settle_revocation(view, store, &key, &mut record)? {
            self.defer_for_revocation(&key, Work::Client(call));
            return Ok(());
        }
        if record.header.dmaster == view.pnn
            && !call.wants_readonly()
            && record.header.flags & (flags::RO_HAVE_DELEGATIONS | flags::RO_HAVE_READONLY) != 0
        {
            // smbd here wants to change a record others hold copies of.
            return self.start_revocation(view, store, &key, record, Work::Client(call), out);
        }
        if call.wants_readonly() && call.readonly_fetch.is_none() {
            // Asked with the header, so that a delegation can be stored here.
            call.readonly_fetch = Some(call.call.callid);
            call.call.callid = CALL_FETCH_WITH_HEADER;
        }
        if record.header.dmaster == view.pnn {
            let (status, data) = self.run_call(view, store, &call.call, record)?;
            out.push(call.answer(status, data));
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
        from: u32,
        generation: u32,
        origin: u32,
        reqid: u32,
        hopcount: u32,
        mut call: Call,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        let as_work = |call: Call| Work::Node {
            from,
            generation,
            message: NodeMessage::Call {
                origin,
                reqid,
                hopcount,
                call,
            },
        };
        if self.sticky.is_some() {
            if let Some((_, pinned)) = self
                .sticky_records
                .get_mut(&call.key)
                .and_then(|s| s.pinned.as_mut())
            {
                // Pinned down here: other nodes wait until the pin-down is over.
                pinned.push(as_work(call));
                return Ok(());
            }
        }
        let mut record = self.fetch_or_initial(view, store, &call.key)?;
        if !self.readonly {
            call.flags &= !WANT_READONLY;
        }
        let key = call.key.clone();
        if self.settle_revocation(view, store, &key, &mut record)? {
            self.defer_for_revocation(&key, as_work(call));
            return Ok(());
        }
        let lmaster = view.lmaster(&call.key).unwrap_or(view.pnn);
        if record.header.dmaster != view.pnn && !record.header.has(flags::RO_HAVE_DELEGATIONS) {
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
        let want_readonly = call.flags & WANT_READONLY != 0;
        if !want_readonly
            && record.header.flags & (flags::RO_HAVE_DELEGATIONS | flags::RO_HAVE_READONLY) != 0
        {
            return self.start_revocation(view, store, &key, record, as_work(call), out);
        }
        if origin == view.pnn {
            // Our own call came back to us, and the record is here now. (CTDB
            // would grant itself a delegation here; running the call is the same
            // answer without a copy to revoke later.)
            let (status, data) = self.run_call(view, store, &call, record)?;
            if let Some(waiting) = self.in_flight.remove(&reqid) {
                out.push(waiting.answer(status, data));
                self.release_collapsed(&call.key);
            }
            return Ok(());
        }
        if want_readonly && call.callid == CALL_FETCH_WITH_HEADER {
            return self.grant_delegation(view, store, origin, reqid, &key, record, out);
        }
        if let Some(tunables) = self.sticky {
            if hopcount >= tunables.make_sticky_hops && !self.sticky_records.contains_key(&key) {
                debug!(
                    db_id = self.db_id,
                    hopcount,
                    seconds = tunables.duration.as_secs(),
                    "record made sticky"
                );
                let timer = TimerJob::StickyOver(key.clone());
                self.start_timer(tunables.duration, timer, out);
                self.sticky_records
                    .insert(key.clone(), Sticky { pinned: None });
            }
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
        self.pin_down(&key, out);
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
        out.push(waiting.answer(status, data));
        self.release_collapsed(&key);
        Ok(())
    }

    /// This node just became dmaster of `key`: if the record is sticky, it stays
    /// here for the pin-down time.
    fn pin_down(&mut self, key: &[u8], out: &mut Vec<Action>) {
        let Some(tunables) = self.sticky else {
            return;
        };
        if self
            .sticky_records
            .get(key)
            .is_none_or(|s| s.pinned.is_some())
        {
            return;
        }
        let timer = self.start_timer(tunables.pindown, TimerJob::PindownOver(key.to_vec()), out);
        if let Some(sticky) = self.sticky_records.get_mut(key) {
            sticky.pinned = Some((timer, Vec::new()));
        }
        debug!(
            db_id = self.db_id,
            ms = tunables.pindown.as_millis() as u64,
            "sticky record pinned down"
        );
    }

    /// Before a call on `record`: a finished revocation's flags go (with the
    /// tracking entry), and whether the call must wait for one in progress.
    fn settle_revocation(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        key: &[u8],
        record: &mut Record,
    ) -> Result<bool, StoreError> {
        if record.header.has(flags::RO_REVOKE_COMPLETE) {
            record.header.flags &= !flags::RO_FLAGS;
            self.store_record(view, store, key, record)?;
            store.tracking_delete(key)?;
            debug!(db_id = self.db_id, "read-only delegations revoked");
            return Ok(false);
        }
        if !record.header.has(flags::RO_REVOKING_READONLY) {
            return Ok(false);
        }
        if self.revocations.contains_key(key) {
            return Ok(true);
        }
        // Flagged, but no revocation of ours runs (one that ended without
        // recording its end): start over; the delegations are still there.
        record.header.flags &= !flags::RO_REVOKING_READONLY;
        self.store_record(view, store, key, record)?;
        Ok(false)
    }

    fn defer_for_revocation(&mut self, key: &[u8], work: Work) {
        if let Some(revocation) = self.revocations.get_mut(key) {
            revocation.deferred.push(work);
        }
    }

    /// A call that changes `record` (or any call without `WANT_READONLY`) found
    /// delegations: flag it as revoking, ask the edge to overwrite every
    /// delegate's copy, and make `work` wait for the end.
    fn start_revocation(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        key: &[u8],
        mut record: Record,
        work: Work,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        record.header.flags |= flags::RO_REVOKING_READONLY;
        self.store_record(view, store, key, &mut record)?;
        let nodes: BTreeSet<u32> = store
            .tracking_fetch(key)?
            .map(|bitmap| readonly::tracked(&bitmap))
            .unwrap_or_default()
            .into_iter()
            .filter(|pnn| *pnn != view.pnn)
            .collect();
        debug!(
            db_id = self.db_id,
            delegates = nodes.len(),
            "revoking read-only delegations"
        );
        let mut deferred = Vec::new();
        if let Some(earlier) = self.revocations.remove(key) {
            // Never expected (a recovery ends every revocation, and calls wait
            // for the one in progress); its calls must not be lost.
            warn!(
                db_id = self.db_id,
                "a revocation replaced another of the same record"
            );
            deferred = earlier.deferred;
        }
        deferred.push(work);
        self.revocations.insert(
            key.to_vec(),
            Revocation {
                rsn: record.header.rsn,
                generation: view.generation,
                waiting: nodes.clone(),
                failed: false,
                deferred,
            },
        );
        if nodes.is_empty() {
            // Nobody to tell (the copies went in a recovery): done at once.
            let generation = view.generation;
            return self.revoke_done_locked(view, store, key.to_vec(), generation, out);
        }
        out.push(Action::Revoke {
            key: key.to_vec(),
            generation: view.generation,
            nodes: nodes.into_iter().collect(),
            record: Record {
                header: readonly::revoked_copy(&record.header),
                value: record.value,
            },
        });
        Ok(())
    }

    /// Every delegate answered: the record is flagged complete if all stored
    /// the revocation (and the record is still as it was), else the flag goes
    /// and the next call tries again. The calls that waited run: writes now,
    /// reads a second later; all of them a second later after a failure.
    fn revoke_done_locked(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        key: Vec<u8>,
        generation: u32,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        // Only the revocation that every delegate answered (one a recovery
        // ended is gone, and a later one of the same record is not it).
        if self
            .revocations
            .get(&key)
            .is_none_or(|r| r.generation != generation || !r.waiting.is_empty())
        {
            return Ok(());
        }
        let Some(revocation) = self.revocations.remove(&key) else {
            return Ok(());
        };
        let record = store.fetch(&key)?;
        let mut complete = false;
        if let Some(mut record) =
            record.filter(|r| readonly::still_revoking(&r.header, revocation.rsn))
        {
            if revocation.failed {
                record.header.flags &= !flags::RO_REVOKING_READONLY;
            } else {
                record.header.rsn = revocation.rsn + 1;
                record.header.flags |= flags::RO_REVOKE_COMPLETE;
                complete = true;
            }
            self.store_record(view, store, &key, &mut record)?;
        } else {
            // A recovery took the flags (and every copy) meanwhile.
            debug!(db_id = self.db_id, "record changed during its revocation");
        }
        let (now, later): (Vec<Work>, Vec<Work>) = revocation
            .deferred
            .into_iter()
            .partition(|work| complete && !work.wants_readonly());
        if !later.is_empty() {
            self.start_timer(RETRY_AFTER_REVOCATION, TimerJob::Retry(later), out);
        }
        if !now.is_empty() {
            // Under this same lock, before anything that came after them.
            let queue = self.lock_queues.entry(key).or_default();
            for work in now.into_iter().rev() {
                queue.push_front(work);
            }
        }
        Ok(())
    }

    /// The dmaster answers a read with `WANT_READONLY` from `origin` with a
    /// delegated copy, keeping the record (§4.7).
    #[allow(clippy::too_many_arguments)]
    fn grant_delegation(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        origin: u32,
        reqid: u32,
        key: &[u8],
        mut record: Record,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        if !record.header.has(flags::RO_HAVE_DELEGATIONS) {
            record.header = readonly::granting(&record.header);
            self.store_record(view, store, key, &mut record)?;
        }
        let mut bitmap = store.tracking_fetch(key)?.unwrap_or_default();
        readonly::track(&mut bitmap, origin);
        store.tracking_store(key, &bitmap)?;
        let data = ltdb::encode(&readonly::delegated_copy(&record.header), &record.value);
        out.push(Action::Send {
            to: origin,
            generation: view.generation,
            message: NodeMessage::CallReply {
                reqid,
                status: 0,
                data,
            },
        });
        Ok(())
    }

    /// The dmaster answered our call `reqid` without the record: a delegated
    /// copy newer than ours is stored, and the client answered.
    #[allow(clippy::too_many_arguments)]
    fn reply_locked(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        reqid: u32,
        key: Vec<u8>,
        status: i32,
        data: Vec<u8>,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        let Some(waiting) = self.in_flight.remove(&reqid) else {
            return Ok(());
        };
        if waiting.call.callid == CALL_FETCH_WITH_HEADER {
            if let Ok((header, value)) = ltdb::decode(&data) {
                let ours = store.fetch(&key)?.map_or(0, |r| r.header.rsn);
                if header.has(flags::RO_HAVE_READONLY)
                    && header.dmaster != view.pnn
                    && header.rsn > ours
                {
                    let mut copy = Record {
                        header,
                        value: value.to_vec(),
                    };
                    self.store_record(view, store, &key, &mut copy)?;
                }
            }
        }
        out.push(waiting.answer(status, data));
        self.release_collapsed(&key);
        Ok(())
    }

    /// Stores a revoking dmaster's copy of `key` over ours, if ours is older and
    /// not the record itself. Whether it was stored.
    fn update_copy_locked(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        from: u32,
        key: &[u8],
        mut record: Record,
    ) -> Result<bool, StoreError> {
        if record.header.dmaster != from || from == view.pnn {
            warn!(
                db_id = self.db_id,
                from,
                dmaster = record.header.dmaster,
                "a revocation from a node that does not name itself dmaster; refused"
            );
            return Ok(false);
        }
        let Some(ours) = store.fetch(key)? else {
            // No copy here, so no delegation to revoke: done, and nothing
            // stored (CTDB would store one; a revocation that arrives after a
            // recovery or a vacuum run must not bring a stale value back).
            return Ok(true);
        };
        // Strictly newer, whatever the value (CTDB also takes an equal rsn with
        // an equal value; that never happens for a real revocation, and a late
        // one after a recovery must not rename the dmaster).
        if ours.header.dmaster == view.pnn || ours.header.rsn >= record.header.rsn {
            debug!(
                db_id = self.db_id,
                from,
                ours = ours.header.rsn,
                offered = record.header.rsn,
                "revocation older than our copy; refused"
            );
            return Ok(false);
        }
        record.header.flags &= !flags::RO_FLAGS;
        self.store_record(view, store, key, &mut record)?;
        Ok(true)
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
        tracking: BTreeMap<Vec<u8>, Vec<u8>>,
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
        fn tracking_fetch(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            assert!(self.held.contains(key), "tracking read without the lock");
            Ok(self.tracking.get(key).cloned())
        }
        fn tracking_store(&mut self, key: &[u8], bitmap: &[u8]) -> Result<(), StoreError> {
            assert!(self.held.contains(key), "tracking write without the lock");
            self.tracking.insert(key.to_vec(), bitmap.to_vec());
            Ok(())
        }
        fn tracking_delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
            self.tracking.remove(key);
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

    // ---- read-only delegations and sticky records ---------------------------

    /// Two nodes of a read-only database; node 1 is lmaster and dmaster of
    /// `key`, holding `value` at rsn 10.
    struct Pair {
        dbs: [Database; 2],
        stores: [MapStore; 2],
        key: Vec<u8>,
    }

    impl Pair {
        fn new(readonly: bool) -> Self {
            let key = key_on(1);
            let mut dbs = [Database::new(0x42), Database::new(0x42)];
            if readonly {
                dbs.iter_mut().for_each(Database::set_readonly);
            }
            let mut stores = [MapStore::default(), MapStore::default()];
            let mut header = make_header(10, 1, flags::MIGRATED_WITH_DATA);
            header.reserved1 = 0;
            stores[1].records.insert(
                key.clone(),
                Record {
                    header,
                    value: b"value".to_vec(),
                },
            );
            Pair { dbs, stores, key }
        }

        fn client(&mut self, node: usize, reqid: u32, callid: u32, flags: u32) -> Vec<Action> {
            let call = Call {
                callid,
                flags,
                key: self.key.clone(),
                calldata: Vec::new(),
            };
            self.dbs[node].client_call(
                &view(node as u32),
                &mut self.stores[node],
                ClientId(reqid),
                reqid,
                call,
            )
        }

        /// Delivers a node message sent by `from` to the other node.
        fn deliver(&mut self, from: usize, action: &Action) -> Vec<Action> {
            let Action::Send {
                to,
                generation,
                message,
            } = action
            else {
                panic!("not a message: {action:?}")
            };
            assert_eq!(*to as usize, 1 - from);
            let to = *to as usize;
            self.dbs[to].node_message(
                &view(to as u32),
                &mut self.stores[to],
                from as u32,
                *generation,
                message.clone(),
            )
        }

        fn header(&self, node: usize) -> LtdbHeader {
            self.stores[node].records[&self.key].header
        }

        /// Node 0 reads with WANT_READONLY and gets a delegation; the client's
        /// answer.
        fn delegate_to_0(&mut self) -> Vec<Action> {
            let asked = self.client(0, 1, CALL_FETCH, WANT_READONLY);
            let [call @ Action::Send {
                message: NodeMessage::Call { call: c, .. },
                ..
            }] = &asked[..]
            else {
                panic!("{asked:?}")
            };
            assert_eq!(c.callid, CALL_FETCH_WITH_HEADER, "asked with the header");
            let granted = self.deliver(0, call);
            assert!(
                matches!(
                    &granted[..],
                    [Action::Send {
                        to: 0,
                        message: NodeMessage::CallReply { status: 0, .. },
                        ..
                    }]
                ),
                "{granted:?}"
            );
            self.deliver(1, &granted[0])
        }
    }

    #[test]
    fn a_readonly_read_at_the_dmaster_hands_out_a_copy_and_keeps_the_record() {
        let mut pair = Pair::new(true);
        let answered = pair.delegate_to_0();
        assert_eq!(
            answered,
            vec![Action::ReplyToClient {
                client: ClientId(1),
                reqid: 1,
                status: 0,
                data: b"value".to_vec(),
            }],
            "a FETCH gets the value without header"
        );
        let dmaster = pair.header(1);
        assert_eq!((dmaster.rsn, dmaster.dmaster), (13, 1));
        assert!(dmaster.has(flags::RO_HAVE_DELEGATIONS));
        let copy = pair.header(0);
        assert_eq!((copy.rsn, copy.dmaster), (11, 1));
        assert!(copy.has(flags::RO_HAVE_READONLY));
        assert!(!copy.has(flags::RO_HAVE_DELEGATIONS));
        assert_eq!(pair.stores[0].records[&pair.key].value, b"value");
        assert_eq!(pair.stores[1].tracking[&pair.key], vec![0b01]);
        assert_eq!(pair.dbs[0].calls_in_flight(), 0);
        // A second grant leaves the dmaster's rsn alone.
        pair.delegate_to_0();
        assert_eq!(pair.header(1).rsn, 13);
    }

    #[test]
    fn without_set_db_readonly_a_readonly_read_migrates_the_record() {
        let mut pair = Pair::new(false);
        let asked = pair.client(0, 1, CALL_FETCH, WANT_READONLY);
        let Action::Send {
            message: NodeMessage::Call { call, .. },
            ..
        } = &asked[0]
        else {
            panic!("{asked:?}")
        };
        assert_eq!(call.callid, CALL_FETCH, "no header asked");
        assert_eq!(call.flags & WANT_READONLY, 0, "the flag is dropped");
        let handed = pair.deliver(0, &asked[0]);
        assert!(
            matches!(
                &handed[..],
                [Action::Send {
                    message: NodeMessage::DmasterReply { .. },
                    ..
                }]
            ),
            "{handed:?}"
        );
        assert!(pair.stores[1].tracking.is_empty());
    }

    /// The whole revocation: a write from node 0 reaches the dmaster, which
    /// flags the record, makes every call wait, has node 0's copy overwritten,
    /// and only then hands the record over; node 1's own read waits too and runs
    /// a second later.
    #[test]
    fn a_write_revokes_every_delegation_before_the_record_moves() {
        let mut pair = Pair::new(true);
        pair.delegate_to_0();
        // smbd on node 0 wants to write: a migration call.
        let asked = pair.client(0, 2, CALL_NULL, call_flags_migrate());
        let revoke = pair.deliver(0, &asked[0]);
        let [Action::Revoke {
            key, nodes, record, ..
        }] = &revoke[..]
        else {
            panic!("{revoke:?}")
        };
        assert_eq!((key, nodes), (&pair.key, &vec![0]));
        assert_eq!(record.header.rsn, 12);
        assert_eq!(record.header.flags & flags::RO_FLAGS, 0);
        assert!(record.header.has(flags::MIGRATED_WITH_DATA));
        assert!(pair.header(1).has(flags::RO_REVOKING_READONLY));
        assert_eq!(pair.dbs[1].revocations_in_progress(), 1);
        // Meanwhile a read on the dmaster waits as well.
        assert!(pair.client(1, 3, CALL_FETCH, WANT_READONLY).is_empty());
        // Node 0 stores the revocation: its copy is no longer a delegation.
        let updated = pair.dbs[0].update_copy(
            &view(0),
            &mut pair.stores[0],
            1,
            7,
            77,
            key.clone(),
            record.clone(),
        );
        assert_eq!(
            updated,
            vec![Action::CopyUpdated {
                to: 1,
                token: 77,
                ok: true
            }]
        );
        let copy = pair.header(0);
        assert_eq!((copy.rsn, copy.flags & flags::RO_FLAGS), (12, 0));
        // Every delegate answered: the write runs (the record goes to node 0),
        // the read waits a second.
        let done =
            pair.dbs[1].revoke_answered(&view(1), &mut pair.stores[1], &pair.key, 7, 0, true);
        let timer = match &done[..] {
            [Action::StartTimer { id, after }, Action::Send {
                to: 0,
                message: NodeMessage::DmasterReply { rsn, flags: f, .. },
                ..
            }] => {
                assert_eq!(*after, RETRY_AFTER_REVOCATION);
                assert_eq!(*rsn, 15, "complete (+1), then cleared as dmaster (+1)");
                assert_eq!(f & flags::RO_FLAGS, 0);
                *id
            }
            other => panic!("{other:?}"),
        };
        assert!(pair.stores[1].tracking.is_empty(), "tracking entry gone");
        assert_eq!(pair.header(1).dmaster, 0);
        assert_eq!(pair.header(1).flags & flags::RO_FLAGS, 0);
        assert_eq!(pair.dbs[1].revocations_in_progress(), 0);
        let migrated = pair.deliver(1, &done[1]);
        assert!(
            matches!(&migrated[..], [Action::ReplyToClient { reqid: 2, .. }]),
            "{migrated:?}"
        );
        assert_eq!(pair.header(0).dmaster, 0);
        // The read runs after its second: the record is elsewhere now, so it
        // asks node 0 for a copy.
        let read = pair.dbs[1].timer_fired(&view(1), &mut pair.stores[1], timer);
        assert!(
            matches!(
                &read[..],
                [Action::Send {
                    to: 0,
                    message: NodeMessage::Call { .. },
                    ..
                }]
            ),
            "{read:?}"
        );
    }

    #[test]
    fn a_failed_revocation_is_retried_a_second_later() {
        let mut pair = Pair::new(true);
        pair.delegate_to_0();
        let revoke = pair.client(1, 5, CALL_NULL, call_flags_migrate());
        assert!(matches!(&revoke[..], [Action::Revoke { .. }]), "{revoke:?}");
        let done =
            pair.dbs[1].revoke_answered(&view(1), &mut pair.stores[1], &pair.key, 7, 0, false);
        let [Action::StartTimer { id, .. }] = &done[..] else {
            panic!("{done:?}")
        };
        let header = pair.header(1);
        assert!(header.has(flags::RO_HAVE_DELEGATIONS));
        assert!(!header.has(flags::RO_REVOKING_READONLY));
        // The retry starts a new revocation, to the same node.
        let again = pair.dbs[1].timer_fired(&view(1), &mut pair.stores[1], *id);
        assert!(
            matches!(&again[..], [Action::Revoke { nodes, .. }] if nodes == &vec![0]),
            "{again:?}"
        );
    }

    #[test]
    fn a_revocation_older_than_the_copy_or_of_the_record_itself_is_refused() {
        let mut pair = Pair::new(true);
        pair.delegate_to_0();
        let stale = Record {
            header: make_header(11, 1, flags::MIGRATED_WITH_DATA),
            value: b"old".to_vec(),
        };
        let refused = pair.dbs[0].update_copy(
            &view(0),
            &mut pair.stores[0],
            1,
            7,
            1,
            pair.key.clone(),
            stale,
        );
        assert_eq!(
            refused,
            vec![Action::CopyUpdated {
                to: 1,
                token: 1,
                ok: false
            }]
        );
        assert!(pair.header(0).has(flags::RO_HAVE_READONLY));
        // Node 1 holds the record: nobody may overwrite it that way.
        let over_the_record = Record {
            header: make_header(99, 0, 0),
            value: Vec::new(),
        };
        let refused = pair.dbs[1].update_copy(
            &view(1),
            &mut pair.stores[1],
            0,
            7,
            2,
            pair.key.clone(),
            over_the_record,
        );
        assert!(matches!(
            &refused[..],
            [Action::CopyUpdated { ok: false, .. }]
        ));
        assert_eq!(pair.header(1).rsn, 13);
        // During recovery: refused at once.
        let recovering = View {
            recovering: true,
            ..view(0)
        };
        let fresh = Record {
            header: make_header(12, 1, flags::MIGRATED_WITH_DATA),
            value: b"value".to_vec(),
        };
        let refused = pair.dbs[0].update_copy(
            &recovering,
            &mut pair.stores[0],
            1,
            7,
            3,
            pair.key.clone(),
            fresh,
        );
        assert!(matches!(
            &refused[..],
            [Action::CopyUpdated { ok: false, .. }]
        ));
    }

    /// A revocation sent before a recovery and delivered after it is refused,
    /// whatever its rsn: the recovery dropped the record (empty), its rsn
    /// started again from 0, and the stale copy stored here would have beaten
    /// the dmaster's newer value in the next recovery's highest-rsn merge
    /// (sim_records' delegations_never_serve_a_stale_value, seed
    /// 7391451781727746998). The same revocation in its own generation is
    /// stored.
    #[test]
    fn a_revocation_sent_before_a_recovery_is_refused_whatever_its_rsn() {
        let after = View {
            generation: 8,
            ..view(0)
        };
        let mut db = Database::new(0x42);
        db.set_readonly();
        let mut store = MapStore::default();
        let key = key_on(0);
        // Since the recovery node 1 became dmaster, and node 0 (the lmaster)
        // keeps a copy naming it, at the new low rsn.
        store.records.insert(
            key.clone(),
            Record {
                header: make_header(2, 1, 0),
                value: Vec::new(),
            },
        );
        assert!(db.view_changed(&after, &mut store).is_empty());
        let late = Record {
            header: make_header(25, 1, flags::MIGRATED_WITH_DATA),
            value: b"before the recovery".to_vec(),
        };
        let refused = db.update_copy(&after, &mut store, 1, 7, 4, key.clone(), late.clone());
        assert_eq!(
            refused,
            vec![Action::CopyUpdated {
                to: 1,
                token: 4,
                ok: false
            }]
        );
        assert_eq!(store.records[&key].header.rsn, 2, "nothing stored");
        assert!(store.records[&key].value.is_empty());
        let stored = db.update_copy(&after, &mut store, 1, 8, 5, key.clone(), late);
        assert_eq!(
            stored,
            vec![Action::CopyUpdated {
                to: 1,
                token: 5,
                ok: true
            }]
        );
        assert_eq!(store.records[&key].header.rsn, 25);
    }

    /// A recovery ends the revocations in progress (it stripped every
    /// delegation): the calls that waited run in the new generation, and the
    /// late answers of the old revocation do not count for a later one of the
    /// same record (seed 11988853517603682032: a write that waited for a
    /// revocation was lost when a new one replaced it).
    #[test]
    fn a_recovery_ends_revocations_and_their_late_answers_count_for_nothing() {
        let mut pair = Pair::new(true);
        pair.delegate_to_0();
        // smbd on node 1, the dmaster, wants to write: it waits.
        let revoke = pair.client(1, 5, CALL_NULL, call_flags_migrate());
        assert!(
            matches!(&revoke[..], [Action::Revoke { generation: 7, .. }]),
            "{revoke:?}"
        );
        // The recovery (led by node 1) leaves no RO flag on any copy.
        for store in &mut pair.stores {
            for record in store.records.values_mut() {
                record.header.flags &= !flags::RO_FLAGS;
            }
        }
        let recovering = View {
            recovering: true,
            ..view(1)
        };
        assert!(pair.dbs[1]
            .view_changed(&recovering, &mut pair.stores[1])
            .is_empty());
        assert_eq!(pair.dbs[1].revocations_in_progress(), 1);
        let after = View {
            generation: 8,
            ..view(1)
        };
        let redone = pair.dbs[1].view_changed(&after, &mut pair.stores[1]);
        assert!(
            matches!(
                &redone[..],
                [Action::ReplyToClient {
                    reqid: 5,
                    status: 0,
                    ..
                }]
            ),
            "{redone:?}"
        );
        assert_eq!(pair.dbs[1].revocations_in_progress(), 0);
        // Node 0 got a new delegation in generation 8, and smbd on node 1
        // writes again: a new revocation.
        pair.stores[1]
            .records
            .get_mut(&pair.key)
            .unwrap()
            .header
            .flags |= flags::RO_HAVE_DELEGATIONS;
        let write = Call {
            callid: CALL_NULL,
            flags: call_flags_migrate(),
            key: pair.key.clone(),
            calldata: Vec::new(),
        };
        let revoke = pair.dbs[1].client_call(&after, &mut pair.stores[1], ClientId(6), 6, write);
        assert!(
            matches!(&revoke[..], [Action::Revoke { generation: 8, nodes, .. }] if nodes == &vec![0]),
            "{revoke:?}"
        );
        // The old revocation's answer arrives: it is not this one's.
        let late = pair.dbs[1].revoke_answered(&after, &mut pair.stores[1], &pair.key, 7, 0, true);
        assert!(late.is_empty(), "{late:?}");
        assert_eq!(pair.dbs[1].revocations_in_progress(), 1);
        assert!(pair.header(1).has(flags::RO_REVOKING_READONLY));
        // This one's answer ends it, and the write runs.
        let done = pair.dbs[1].revoke_answered(&after, &mut pair.stores[1], &pair.key, 8, 0, true);
        assert!(
            matches!(
                &done[..],
                [Action::ReplyToClient {
                    reqid: 6,
                    status: 0,
                    ..
                }]
            ),
            "{done:?}"
        );
        assert_eq!(pair.dbs[1].revocations_in_progress(), 0);
        assert_eq!(pair.header(1).flags & flags::RO_FLAGS, 0);
    }

    /// A call that bounced HopcountMakeSticky times makes the record sticky
    /// where it is answered; the node it goes to then keeps it for the
    /// pin-down, other nodes' calls waiting until the timer fires.
    #[test]
    fn a_hot_record_becomes_sticky_and_is_pinned_where_it_arrives() {
        let tunables = StickyTunables {
            make_sticky_hops: 3,
            ..StickyTunables::default()
        };
        let mut pair = Pair::new(false);
        pair.dbs.iter_mut().for_each(|db| db.set_sticky(tunables));
        let key = pair.key.clone();
        let hot = NodeMessage::Call {
            origin: 0,
            reqid: 4,
            hopcount: 3,
            call: call(key.clone(), vec![]),
        };
        let out = pair.dbs[1].node_message(&view(1), &mut pair.stores[1], 0, 7, hot);
        let [Action::StartTimer { after, .. }, handover] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(*after, tunables.duration);
        assert!(pair.dbs[1].is_sticky(&key));
        // Node 0 gets it: only sticky where the hops were counted, so not
        // pinned there.
        pair.dbs[0].in_flight.insert(
            4,
            ClientCall {
                client: ClientId(1),
                reqid: 1,
                call: call(key.clone(), vec![]),
                readonly_fetch: None,
            },
        );
        pair.deliver(1, handover);
        assert!(!pair.dbs[0].is_pinned(&key));
        // Back to node 1 (sticky there): pinned on arrival.
        let back = NodeMessage::Call {
            origin: 1,
            reqid: 9,
            hopcount: 0,
            call: call(key.clone(), vec![]),
        };
        pair.dbs[1].in_flight.insert(
            9,
            ClientCall {
                client: ClientId(2),
                reqid: 2,
                call: call(key.clone(), vec![]),
                readonly_fetch: None,
            },
        );
        let out = pair.dbs[0].node_message(&view(0), &mut pair.stores[0], 1, 7, back);
        let arrived = pair.deliver(0, &out[0]);
        let pin_timer = match &arrived[..] {
            [Action::StartTimer { id, after }, Action::ReplyToClient { reqid: 2, .. }] => {
                assert_eq!(*after, tunables.pindown);
                *id
            }
            other => panic!("{other:?}"),
        };
        assert!(pair.dbs[1].is_pinned(&key));
        // Node 0 asks for it: it waits for the pin-down.
        let wanted = NodeMessage::Call {
            origin: 0,
            reqid: 11,
            hopcount: 0,
            call: call(key.clone(), vec![]),
        };
        let out = pair.dbs[1].node_message(&view(1), &mut pair.stores[1], 0, 7, wanted);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(pair.header(1).dmaster, 1);
        let out = pair.dbs[1].timer_fired(&view(1), &mut pair.stores[1], pin_timer);
        assert!(
            matches!(
                &out[..],
                [Action::Send {
                    to: 0,
                    message: NodeMessage::DmasterReply { reqid: 11, .. },
                    ..
                }]
            ),
            "{out:?}"
        );
    }

    fn call_flags_migrate() -> u32 {
        crate::protocol::call::call_flags::IMMEDIATE_MIGRATION
    }
}
