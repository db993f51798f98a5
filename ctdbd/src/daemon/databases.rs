//! The data path: one thread that owns every attached database (DESIGN.md,
//! "Databases").
//!
//! ```text
//!   client connections ─┐ DataEvent (bounded: smbd waits, never dropped)
//!   peer links ─────────┼──────────────> database thread ──> replies to clients
//!   core snapshots ─────┘                  │  registry, libtdb   └─> packets to peers
//!                                          │  handles, migration
//!              lock helper processes <─────┘  state per database
//! ```
//!
//! libtdb calls block (file I/O, fsync in persistent transactions), so they run on a
//! thread of their own, never on the core task or the tokio workers. The thread runs
//! a small current-thread runtime only to wait on its channels. A chain lock that
//! smbd holds is never waited for here: a lock helper process waits for it
//! (`db::lock_helper`), and the thread marks the chain as its own once the helper
//! holds it.
//!
//! The core stays the one authority on membership; this thread reads the core's
//! snapshots (generation, vnn map, recovery mode, node flags) and acts on them.
//!
//! # One thread for all databases (a deviation from DESIGN.md)
//! DESIGN.md asks for an owner per database. One thread owns them all instead:
//! a recovery and a REPLY_ERROR need one reqid space and one view of every
//! database; libtdb work per record takes microseconds; and the waits that take
//! long (smbd's chain locks, freezes) never happen on the thread but in lock
//! helper processes. The cost: a persistent commit's fsync, or a traverse of a big
//! database, delays calls to the other databases meanwhile. `OpenDb` is
//! self-contained, so splitting per database is mechanical if measurements ask for
//! it (BENCHMARKS.md, "Clustered records").
//!
//! # What is pure and what is here
//! Decisions live in `db::`: record migration (`migrate`), the leader's recovery
//! (`recovery_run`, merge rules in `recovery`), persistent commits (`commit`),
//! limits (`limits`), vacuuming (`vacuum`, carried out in `vacuuming`). This
//! thread feeds them what arrives, carries out what they say with libtdb and
//! packets, and keeps the clock (deadlines, the 1 s tick).

mod detach;
mod vacuuming;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn};

use super::snapshot::{Snapshot, Snapshots};
use crate::core::Input;
use crate::core::{ClientId, DATA_PATH_REQIDS};
use crate::db::commit::{self, Commits, Outcome};
use crate::db::limits;
use crate::db::lock_helper::{LockHelper, LockTarget};
use crate::db::ltdb::{self, flags as ltdb_flags, LtdbHeader, HEADER_LEN};
use crate::db::migrate::{self, Action, Call, Database, NodeMessage, Record, RecordStore};
use crate::db::recovery;
use crate::db::recovery_run::{self, Answer, Progress, RecoveryRun, Request};
use crate::db::registry::{Attached, DbDirs, DbInfo, DbKind, Registry};
use crate::db::tdb::{flags as tdb_flags, FrozenTransaction, StoreMode, Tdb, TdbError, TryLock};
use crate::db::vacuum::Vacuum;
use crate::protocol::call::{ReplyCall, ReplyDmaster, ReplyError, ReqCall, ReqDmaster};
use crate::protocol::control::{decode_u32, encode_u32, node_flags, srvid, Opcode, VnnMap};
use crate::protocol::dbctl::{
    db_flags, decode_nul_string, encode_nul_string, DbMap, DbMapEntry, PullDb, TransDb,
    TraverseAll, TraverseAllExt, TraverseStart, TraverseStartExt, DB_SEQUENCE_NUMBER_KEY,
    LMASTER_ANY,
};
use crate::protocol::dbstats::DbStatistics;
use crate::protocol::marshall::{self, MarshallBuffer, MarshallWriter, RecData};
use crate::protocol::packet::{Body, Header, Packet, ReplyControl, ReqControl, CTRL_FLAG_NOREPLY};
use crate::transport::{CoreEvent, DataEvent};

/// How many data-path events may wait for the thread before senders wait too.
const QUEUE_LEN: usize = 4096;

/// Default `DatabaseHashSize`: hash chains of a new database file.
const HASH_SIZE: u32 = 100_001;

/// How often the thread looks for changed sequence numbers to tell the other
/// nodes about (`SeqnumInterval`, 1 s in CTDB), and for overdue commits.
const TICK: Duration = Duration::from_millis(1000);

/// How long a persistent commit may wait for the other nodes (`ControlTimeout`).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the database thread needs from the daemon.
pub struct Config {
    /// This node.
    pub pnn: u32,
    /// Where database files go.
    pub dirs: DbDirs,
    /// Sends packets to other nodes.
    pub peers: Arc<crate::transport::peer::PeerLinks>,
    /// The core's published state.
    pub snapshots: Snapshots,
    /// Where to report a finished database recovery.
    pub core: mpsc::Sender<CoreEvent>,
}

/// The queue between the edges and the database thread: the edges keep the
/// sender (in a [`crate::transport::DataPath`]), [`start`] takes the receiver.
pub fn queue() -> (Senders, Receivers) {
    let (clients, from_clients) = mpsc::channel(QUEUE_LEN);
    let (peers, from_peers) = mpsc::unbounded_channel();
    (
        Senders { clients, peers },
        Receivers {
            from_clients,
            from_peers,
        },
    )
}

/// The edges' ends of the database thread's queues ([`crate::transport::DataPath`]
/// says why there are two).
pub struct Senders {
    /// For local clients' packets (bounded).
    pub clients: mpsc::Sender<DataEvent>,
    /// For other nodes' packets (never waited on).
    pub peers: mpsc::UnboundedSender<DataEvent>,
}

/// The database thread's ends of its queues.
pub struct Receivers {
    from_clients: mpsc::Receiver<DataEvent>,
    from_peers: mpsc::UnboundedReceiver<DataEvent>,
}

/// Starts the database thread on the receiving end of [`queue`]. The thread ends
/// when `cancel` fires or every sender is gone.
pub fn start(
    config: Config,
    rx: Receivers,
    cancel: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    for dir in [&config.dirs.volatile, &config.dirs.persistent] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let span = tracing::Span::current();
    let handle = std::thread::Builder::new()
        .name("databases".into())
        .spawn(move || {
            let _entered = info_span!(parent: &span, "databases").entered();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    error!(error = %e, "cannot start the database thread's runtime");
                    return;
                }
            };
            runtime.block_on(Worker::new(config).run(rx, cancel));
        })
        .context("starting the database thread")?;
    Ok(handle)
}

/// A chain lock a helper process got for the thread.
#[derive(Debug)]
struct LockHeld {
    db_id: u32,
    /// The chain's key; `None` for the all-record lock (a freeze).
    key: Option<Vec<u8>>,
    helper: Result<LockHelper, String>,
}

/// One attached database.
struct OpenDb {
    info: DbInfo,
    /// Frozen for a recovery: nothing changes its records until the generation
    /// moves on. Before `tdb`: a recovery's open push is dropped before the
    /// handle closes.
    frozen: Option<Freeze>,
    tdb: Tdb,
    migration: Database,
    /// Chain locks that helper processes hold for us, marked in `tdb`.
    helper_locks: HashMap<Vec<u8>, LockHelper>,
    /// The header sequence number last told to the other nodes.
    seqnum_seen: u32,
    seqnum_enabled: bool,
    /// The delete queue and run count (volatile databases only).
    vacuum: Vacuum,
    /// When the next vacuum run may start.
    next_vacuum: Instant,
    /// A vacuum run waiting for the other nodes' TRY_DELETE_RECORDS answers.
    deleting: Option<vacuuming::Deleting>,
    /// The last run's VACUUM_FETCH controls not answered yet: reqid, lmaster.
    fetching: Vec<(u32, u32)>,
    /// The read-only tracking file (`<path>.RO`), once `SET_DB_READONLY` came.
    tracking: Option<Tdb>,
}

/// A database frozen for a recovery: the all-record lock, so that no smbd can
/// touch a record while the leader pulls and pushes them.
struct Freeze {
    /// The generation of the recovery that froze it (the leader sends it in the
    /// control's srvid field): the database thaws when the node installs it. The
    /// core and this thread learn of a recovery's steps on different paths, so
    /// "any new generation" would thaw a database that a recovery right behind
    /// the last one had just frozen.
    thaw_at: u32,
    lock: FreezeLock,
    /// A transaction a client runs on the frozen database (`ctdb restoredb`,
    /// `ctdb wipedb`); it ends with the freeze.
    transaction: Option<ClientTransaction>,
    /// A recovery's push in progress; it ends with the freeze too.
    push: Option<RecoveryPush>,
}

/// A recovery's push into a frozen database, DB_PUSH_START to
/// DB_PUSH_CONFIRM: the copy is emptied and the records stored as their
/// batches come, all in one libtdb transaction that only a confirm counting
/// as many records commits. A run that dies before leaves the old copy whole.
struct RecoveryPush {
    /// The srvid its batches come on (it names the run's generation).
    srvid: u64,
    transaction: FrozenTransaction,
    /// Records stored so far.
    stored: u32,
    /// A batch could not be stored whole: the confirm cancels.
    failed: bool,
}

/// DB_TRANSACTION_START to DB_TRANSACTION_COMMIT from a client: the wipe and the
/// pushed records are kept aside and applied at the commit, in one TDB
/// transaction, so that a tool that fails or dies half-way (a truncated backup
/// file) leaves the database as it was on every node.
#[derive(Debug, Default)]
struct ClientTransaction {
    /// The generation the client tagged it with; wipe and commit must match.
    tid: u32,
    /// WIPE_DATABASE came: the commit empties the file first.
    wipe: bool,
    /// Pushed records, key and stored bytes (ltdb header included), in order.
    records: Vec<(Vec<u8>, Vec<u8>)>,
    /// DB_PUSH_START came and DB_PUSH_CONFIRM not yet.
    pushing: bool,
    /// Records pushed since DB_PUSH_START, in buffers that were whole.
    pushed: u32,
}

/// Who waits for a freeze to hold: a node's control, or a local client's.
enum FreezeWaiter {
    Node { pnn: u32, reqid: u32 },
    Client(ClientRequest),
}

enum FreezeLock {
    /// We hold the all-record lock ourselves.
    Own,
    /// A helper process holds it; our handle has it marked.
    Helper(LockHelper),
    /// A helper waits for it; these asked to be told when it is held.
    Waiting(Vec<FreezeWaiter>),
}

/// libtdb under the migration logic.
struct TdbStore<'a> {
    tdb: &'a Tdb,
    helper_locks: &'a mut HashMap<Vec<u8>, LockHelper>,
    /// Where empty records that migration stores are queued for vacuuming (a
    /// read of a missing record creates one on the reader and on the lmaster),
    /// as CTDB queues its own stores of empty records; `None` where vacuuming
    /// itself stores or for databases it does not vacuum.
    emptied: Option<&'a mut Vacuum>,
    /// The read-only tracking file, for a read-only database.
    tracking: Option<&'a Tdb>,
}

impl RecordStore for TdbStore<'_> {
    fn try_lock(&mut self, key: &[u8]) -> Result<bool, migrate::StoreError> {
        match self.tdb.chainlock_nonblock(key) {
            Ok(TryLock::Held) => Ok(true),
            Ok(TryLock::Busy) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    fn unlock(&mut self, key: &[u8]) {
        let result = match self.helper_locks.remove(key) {
            Some(helper) => {
                let unmarked = self.tdb.chainlock_unmark(key);
                drop(helper); // the helper process lets go
                unmarked
            }
            None => self.tdb.chainunlock(key),
        };
        if let Err(e) = result {
            error!(error = %e, "releasing a chain lock failed");
        }
    }

    fn fetch(&mut self, key: &[u8]) -> Result<Option<Record>, migrate::StoreError> {
        let Some(stored) = self.tdb.fetch(key).map_err(store_error)? else {
            return Ok(None);
        };
        // A record too short for a header is treated as missing, as CTDB does.
        Ok(ltdb::decode(&stored).ok().map(|(header, value)| Record {
            header,
            value: value.to_vec(),
        }))
    }

    fn store(&mut self, key: &[u8], record: &Record) -> Result<(), migrate::StoreError> {
        if record.value.is_empty() {
            if let Some(vacuum) = self.emptied.as_deref_mut() {
                vacuum.schedule(key);
            }
        }
        self.tdb
            .store(
                key,
                &ltdb::encode(&record.header, &record.value),
                StoreMode::Replace,
            )
            .map_err(store_error)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), migrate::StoreError> {
        self.tdb.delete(key).map(|_| ()).map_err(store_error)
    }

    fn tracking_fetch(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, migrate::StoreError> {
        match self.tracking {
            Some(tracking) => tracking.fetch(key).map_err(store_error),
            None => Ok(None),
        }
    }

    fn tracking_store(&mut self, key: &[u8], bitmap: &[u8]) -> Result<(), migrate::StoreError> {
        match self.tracking {
            Some(tracking) => tracking
                .store(key, bitmap, StoreMode::Replace)
                .map_err(store_error),
            None => Err(migrate::StoreError(
                "no read-only tracking file: the database is not read-only".into(),
            )),
        }
    }

    fn tracking_delete(&mut self, key: &[u8]) -> Result<(), migrate::StoreError> {
        match self.tracking {
            Some(tracking) => tracking.delete(key).map(|_| ()).map_err(store_error),
            None => Ok(()),
        }
    }
}

fn store_error(e: TdbError) -> migrate::StoreError {
    migrate::StoreError(e.to_string())
}

/// Who asked for something the thread answers later.
#[derive(Debug, Clone)]
struct ClientRequest {
    client: ClientId,
    reqid: u32,
    replies: mpsc::UnboundedSender<Vec<u8>>,
}

/// A persistent transaction waiting for the other nodes to store it
/// (`db::commit::Commits` tracks the answers).
#[derive(Debug)]
struct PendingCommit {
    from: ClientRequest,
    deadline: Instant,
}

/// An attach that must wait for recovery to end.
#[derive(Debug)]
struct DeferredAttach {
    from: ClientRequest,
    request: ReqControl,
    until: Instant,
}

struct Worker {
    pnn: u32,
    registry: Registry,
    dbs: BTreeMap<u32, OpenDb>,
    peers: Arc<crate::transport::peer::PeerLinks>,
    snapshots: Snapshots,
    snapshot: Arc<Snapshot>,
    view: migrate::View,
    /// Node-to-node call ids, shared by every database so that they never collide.
    next_call_reqid: u32,
    /// Ids of the thread's own controls to other nodes (from DATA_PATH_REQIDS up).
    next_control_reqid: u32,
    /// Where to answer each connected client.
    clients: HashMap<ClientId, mpsc::UnboundedSender<Vec<u8>>>,
    /// Commits in flight, by the reqid of their UPDATE_RECORD controls.
    commits: Commits<PendingCommit>,
    /// Commits that failed on some node: a recovery makes every node's copy the
    /// same, and then they are answered 2 ("ended by recovery", as CTDB), with
    /// the generation they failed in.
    commits_ended_by_recovery: Vec<(ClientRequest, u32)>,
    deferred_attaches: Vec<DeferredAttach>,
    /// Cluster-wide traverses started by local clients, by traverse id.
    traverses: BTreeMap<u32, Traverse>,
    /// The recovery this node leads, if any.
    recovery: Option<Leading>,
    core: mpsc::Sender<CoreEvent>,
    /// The lock helper program.
    lock_helper: std::path::PathBuf,
    locks_tx: mpsc::UnboundedSender<LockHeld>,
    locks_rx: Option<mpsc::UnboundedReceiver<LockHeld>>,
    /// Request ids of the migration calls vacuuming makes for itself.
    next_vacuum_call: u32,
    /// UPDATE_RECORD controls revoking read-only delegations, by reqid.
    revokes: HashMap<u32, PendingRevoke>,
    /// The migration logic's timers: when, which database, which timer.
    timers: BTreeSet<(Instant, u32, u64)>,
}

/// One delegate's UPDATE_RECORD of a revocation, waiting for its answer.
#[derive(Debug)]
struct PendingRevoke {
    db_id: u32,
    key: Vec<u8>,
    /// The generation the revocation was started (and sent) in.
    generation: u32,
    node: u32,
    deadline: Instant,
}

impl Worker {
    fn new(config: Config) -> Self {
        let snapshot = config.snapshots.borrow().clone();
        let (locks_tx, locks_rx) = mpsc::unbounded_channel();
        let mut worker = Self {
            pnn: config.pnn,
            registry: Registry::new(config.pnn, config.dirs),
            dbs: BTreeMap::new(),
            peers: config.peers,
            snapshots: config.snapshots,
            view: view_of(&snapshot),
            snapshot,
            next_call_reqid: 1,
            next_control_reqid: DATA_PATH_REQIDS,
            clients: HashMap::new(),
            commits: Commits::default(),
            commits_ended_by_recovery: Vec::new(),
            deferred_attaches: Vec::new(),
            traverses: BTreeMap::new(),
            recovery: None,
            core: config.core,
            lock_helper: LockHelper::default_path(),
            locks_tx,
            locks_rx: Some(locks_rx),
            next_vacuum_call: 1,
            revokes: HashMap::new(),
            timers: BTreeSet::new(),
        };
        worker.attach_leftover_persistent();
        worker
    }

    async fn run(mut self, queues: Receivers, cancel: CancellationToken) {
        let Receivers {
            from_clients: mut events,
            from_peers: mut peer_events,
        } = queues;
        let mut locks = self.locks_rx.take().expect("taken once");
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.first().map(|(at, _, _)| *at);
            let timer = tokio::time::sleep_until(tokio::time::Instant::from_std(
                next_timer.unwrap_or_else(|| Instant::now() + TICK),
            ));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = timer, if next_timer.is_some() => self.fire_timers(),
                Some(event) = peer_events.recv() => self.handle(event),
                event = events.recv() => match event {
                    Some(event) => self.handle(event),
                    None => break,
                },
                Some(held) = locks.recv() => self.lock_held(held),
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let snapshot = self.snapshots.borrow_and_update().clone();
                    self.snapshot_changed(snapshot);
                }
                _ = tick.tick() => self.tick(),
            }
        }
        // Helper processes end with their handles (stdin closes).
        self.dbs.clear();
        debug!("database thread stopped");
    }

    fn handle(&mut self, event: DataEvent) {
        match event {
            DataEvent::Client {
                client,
                replies,
                packet,
            } => {
                self.clients.insert(client, replies.clone());
                let from = ClientRequest {
                    client,
                    reqid: packet.header.reqid,
                    replies,
                };
                match packet.body {
                    Body::ReqCall(call) => self.client_call(from, call),
                    Body::ReqControl(req) => {
                        if let Some(reply) = self.client_control(&from, req) {
                            self.reply_to_client(&from, reply);
                        }
                    }
                    Body::ReqMessage(msg) if msg.srvid == srvid::TOOL_PUSHDB => {
                        self.pushed_records(&msg.data)
                    }
                    other => debug!(?other, "not a data-path packet from a client"),
                }
            }
            DataEvent::ClientGone { client } => {
                self.clients.remove(&client);
                if !self
                    .commits
                    .take_where(|_, c| c.from.client == client)
                    .is_empty()
                {
                    // Its transaction may be on some nodes and not others.
                    self.ask_for_recovery("a client left during its persistent update".into());
                }
                self.traverses.retain(|_, t| t.from.client != client);
                self.deferred_attaches.retain(|d| d.from.client != client);
            }
            DataEvent::Peer { pnn, packet } => self.peer_packet(pnn, packet),
            DataEvent::Recover { generation, nodes } => self.start_recovery(generation, nodes),
        }
    }

    // ---- calls and migration -------------------------------------------------

    fn client_call(&mut self, from: ClientRequest, call: ReqCall) {
        if !self.dbs.contains_key(&call.db_id) {
            // As CTDB: no answer for an unknown database (the client hangs; it
            // attached first, so only a broken client gets here).
            warn!(
                db_id = format_args!("{:#010x}", call.db_id),
                client = from.client.0,
                "call for a database that is not attached"
            );
            return;
        }
        self.migrate(call.db_id, |migration, view, store| {
            migration.client_call(
                view,
                store,
                from.client,
                from.reqid,
                Call {
                    callid: call.callid,
                    flags: call.flags,
                    key: call.key,
                    calldata: call.calldata,
                },
            )
        });
    }

    fn node_call(&mut self, from: u32, header: Header, db_id: u32, message: NodeMessage) {
        if !self.dbs.contains_key(&db_id) {
            warn!(
                peer = from,
                db_id = format_args!("{db_id:#010x}"),
                reqid = header.reqid,
                "record message for a database that is not attached; REPLY_ERROR sent"
            );
            self.send_to_peer(
                from,
                header.reqid,
                Body::ReplyError(ReplyError {
                    status: -1,
                    msg: format!(
                        "database {db_id:#010x} is not attached on node {}\0",
                        self.pnn
                    )
                    .into_bytes(),
                }),
            );
            return;
        }
        self.migrate(db_id, |migration, view, store| {
            migration.node_message(view, store, from, header.generation, message)
        });
    }

    /// Runs one step of a database's migration logic with its store and the view
    /// it works in, then carries out what it asks. Call ids come from one counter
    /// for every database, so that a REPLY_ERROR (which names no database) finds
    /// the one call it is about.
    fn migrate(
        &mut self,
        db_id: u32,
        step: impl FnOnce(&mut Database, &migrate::View, &mut TdbStore<'_>) -> Vec<Action>,
    ) {
        let Some(db) = self.dbs.get_mut(&db_id) else {
            return;
        };
        let OpenDb {
            info,
            tdb,
            migration,
            helper_locks,
            frozen,
            vacuum,
            tracking,
            ..
        } = db;
        let view = view_for(&self.view, frozen.is_some());
        migration.next_reqid = self.next_call_reqid;
        let mut store = TdbStore {
            tdb,
            helper_locks,
            emptied: (info.kind == DbKind::Volatile).then_some(vacuum),
            tracking: tracking.as_ref(),
        };
        let actions = step(migration, &view, &mut store);
        self.next_call_reqid = migration.next_reqid;
        self.carry_out(db_id, actions);
    }

    fn lock_held(&mut self, held: LockHeld) {
        let Some(key) = held.key else {
            self.freeze_held(held.db_id, held.helper);
            return;
        };
        let Some(db) = self.dbs.get_mut(&held.db_id) else {
            return;
        };
        let helper = match held.helper {
            Ok(helper) => helper,
            Err(e) => {
                // The helper died: try the lock ourselves again; the work stays
                // queued, and another helper is started if it is still busy.
                warn!(db = %db.info.name, error = %e, "lock helper failed; retrying");
                match db.tdb.chainlock_nonblock(&key) {
                    Ok(TryLock::Held) => self.run_lock_acquired(held.db_id, &key),
                    _ => self.wait_for_lock(held.db_id, Some(key)),
                }
                return;
            }
        };
        if let Err(e) = db.tdb.chainlock_mark(&key) {
            error!(db = %db.info.name, error = %e, "marking a helper's chain lock failed");
            return;
        }
        db.helper_locks.insert(key.clone(), helper);
        self.run_lock_acquired(held.db_id, &key);
    }

    fn run_lock_acquired(&mut self, db_id: u32, key: &[u8]) {
        self.migrate(db_id, |migration, view, store| {
            migration.lock_acquired(view, store, key)
        });
    }

    /// Starts a helper process that waits for the chain lock of `key` (or, with
    /// `None`, the all-record lock) and reports back on the lock channel.
    fn wait_for_lock(&mut self, db_id: u32, key: Option<Vec<u8>>) {
        let Some(db) = self.dbs.get(&db_id) else {
            return;
        };
        let target = match &key {
            Some(key) => LockTarget::Chain(key.clone()),
            None => LockTarget::All,
        };
        // Spawned from this thread, which outlives it: the helper's parent-death
        // signal follows the thread that started it.
        let helper = LockHelper::spawn(
            &self.lock_helper,
            &db.info.path,
            db.tdb.client_open_flags(),
            target,
        );
        let tx = self.locks_tx.clone();
        let mut helper = match helper {
            Ok(helper) => helper,
            Err(e) => {
                let _ = tx.send(LockHeld {
                    db_id,
                    key,
                    helper: Err(e.to_string()),
                });
                return;
            }
        };
        // Waiting for its word blocks: a short-lived thread does that.
        let spawned = std::thread::Builder::new()
            .name("lock-wait".into())
            .spawn(move || {
                let helper = helper
                    .wait_held(None)
                    .map(|()| helper)
                    .map_err(|e| e.to_string());
                let _ = tx.send(LockHeld { db_id, key, helper });
            });
        if let Err(e) = spawned {
            error!(error = %e, "cannot start a lock-wait thread");
        }
    }

    fn carry_out(&mut self, db_id: u32, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::ReplyToClient {
                    client,
                    reqid,
                    status,
                    data,
                } => {
                    if client == vacuuming::VACUUM_CLIENT {
                        // A record vacuuming brought here: nobody waits for it.
                        continue;
                    }
                    let packet = Packet {
                        header: self.header(0, reqid),
                        body: Body::ReplyCall(ReplyCall { status, data }),
                    };
                    match self.clients.get(&client) {
                        Some(replies) => {
                            let _ = replies.send(packet.encode());
                        }
                        None => debug!(client = client.0, "call answered after its client left"),
                    }
                }
                Action::Send {
                    to,
                    generation,
                    message,
                } => self.send_node_message(db_id, to, generation, message),
                Action::WaitForLock { key } => self.wait_for_lock(db_id, Some(key)),
                Action::RecoveryNeeded { reason } => {
                    error!(%reason, "records disagree between nodes");
                    self.ask_for_recovery(reason);
                }
                Action::Revoke {
                    key,
                    generation,
                    nodes,
                    record,
                } => self.send_revocation(db_id, key, generation, nodes, record),
                Action::CopyUpdated {
                    to,
                    token,
                    ok: stored,
                } => {
                    let reply = if stored { ok(Vec::new()) } else { fail(-1) };
                    self.send_to_peer(to, token, Body::ReplyControl(reply));
                }
                Action::StartTimer { id, after } => {
                    self.timers.insert((Instant::now() + after, db_id, id));
                }
            }
        }
    }

    /// Sends a revocation's UPDATE_RECORD to every delegate; one that is not
    /// connected fails it at once (as a control to it would in CTDB).
    fn send_revocation(
        &mut self,
        db_id: u32,
        key: Vec<u8>,
        generation: u32,
        nodes: Vec<u32>,
        record: Record,
    ) {
        let stored = ltdb::encode(&record.header, &record.value);
        let data = MarshallBuffer::encode_records(
            db_id,
            std::iter::once((0, key.as_slice(), stored.as_slice())),
        );
        let deadline = Instant::now() + self.snapshot.control_timeout;
        let connected = self.connected_peers();
        let mut unreachable = Vec::new();
        for node in nodes {
            if !connected.contains(&node) {
                unreachable.push(node);
                continue;
            }
            let reqid = self.allocate_control_reqid();
            self.send_control(node, reqid, Opcode::UPDATE_RECORD.0, data.clone(), 0);
            self.revokes.insert(
                reqid,
                PendingRevoke {
                    db_id,
                    key: key.clone(),
                    generation,
                    node,
                    deadline,
                },
            );
        }
        for node in unreachable {
            warn!(node, "a node holding a read-only copy is not connected");
            self.revoke_answered(db_id, &key, generation, node, false);
        }
    }

    fn revoke_answered(
        &mut self,
        db_id: u32,
        key: &[u8],
        generation: u32,
        node: u32,
        stored: bool,
    ) {
        self.migrate(db_id, |migration, view, store| {
            migration.revoke_answered(view, store, key, generation, node, stored)
        });
    }

    /// Runs the migration logic's timers that are due.
    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&(at, db_id, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.migrate(db_id, |migration, view, store| {
                migration.timer_fired(view, store, id)
            });
        }
    }

    fn send_node_message(&mut self, db_id: u32, to: u32, generation: u32, message: NodeMessage) {
        let (srcnode, reqid, body) = match message {
            NodeMessage::Call {
                origin,
                reqid,
                hopcount,
                call,
            } => (
                origin,
                reqid,
                Body::ReqCall(ReqCall {
                    flags: call.flags,
                    db_id,
                    callid: call.callid,
                    hopcount,
                    key: call.key,
                    calldata: call.calldata,
                }),
            ),
            NodeMessage::Dmaster {
                reqid,
                new_dmaster,
                key,
                rsn,
                flags,
                value,
            } => (
                self.pnn,
                reqid,
                Body::ReqDmaster(ReqDmaster {
                    db_id,
                    rsn,
                    dmaster: new_dmaster,
                    key,
                    data: value,
                    record_flags: flags,
                }),
            ),
            NodeMessage::DmasterReply {
                reqid,
                key,
                rsn,
                flags,
                value,
            } => (
                self.pnn,
                reqid,
                Body::ReplyDmaster(ReplyDmaster {
                    db_id,
                    rsn,
                    key,
                    data: value,
                    record_flags: flags,
                }),
            ),
            NodeMessage::CallReply {
                reqid,
                status,
                data,
            } => (self.pnn, reqid, Body::ReplyCall(ReplyCall { status, data })),
            NodeMessage::Error {
                reqid,
                status,
                message,
            } => (
                self.pnn,
                reqid,
                Body::ReplyError(ReplyError {
                    status,
                    msg: format!("{message}\0").into_bytes(),
                }),
            ),
        };
        let packet = Packet {
            header: Header {
                generation,
                destnode: to,
                srcnode,
                reqid,
            },
            body,
        };
        self.peers.send(to, packet.encode());
    }

    // ---- packets from other nodes ----------------------------------------------

    fn peer_packet(&mut self, pnn: u32, packet: Packet) {
        let header = packet.header;
        if self.is_banned() && !matches!(packet.body, Body::ReqControl(_) | Body::ReplyControl(_)) {
            // A banned node serves no records. Controls are still answered, as a
            // banned CTDB node answers them: the leader that lifts our ban asks for
            // our database map at once, and its request comes to this thread past
            // the core, so it can arrive before our snapshot of the flags says we
            // are no longer banned; dropped, it left the leader's recovery waiting
            // for its 30 s timeout. The leader includes in a recovery only nodes
            // it does not see banned.
            return;
        }
        match packet.body {
            Body::ReqCall(call) => {
                let db_id = call.db_id;
                self.node_call(
                    pnn,
                    header,
                    db_id,
                    NodeMessage::Call {
                        origin: header.srcnode,
                        reqid: header.reqid,
                        hopcount: call.hopcount,
                        call: Call {
                            callid: call.callid,
                            flags: call.flags,
                            key: call.key,
                            calldata: call.calldata,
                        },
                    },
                );
            }
            Body::ReqDmaster(d) => self.node_call(
                pnn,
                header,
                d.db_id,
                NodeMessage::Dmaster {
                    reqid: header.reqid,
                    new_dmaster: d.dmaster,
                    key: d.key,
                    rsn: d.rsn,
                    flags: d.record_flags,
                    value: d.data,
                },
            ),
            Body::ReplyDmaster(d) => self.node_call(
                pnn,
                header,
                d.db_id,
                NodeMessage::DmasterReply {
                    reqid: header.reqid,
                    key: d.key,
                    rsn: d.rsn,
                    flags: d.record_flags,
                    value: d.data,
                },
            ),
            Body::ReplyCall(reply) => {
                // A dmaster's answer without the record (a read-only
                // delegation). No database id on the wire: the call's reqid
                // names it.
                let db_id = self
                    .dbs
                    .iter()
                    .find(|(_, db)| db.migration.waits_for(header.reqid))
                    .map(|(id, _)| *id);
                match db_id {
                    Some(db_id) => self.node_call(
                        pnn,
                        header,
                        db_id,
                        NodeMessage::CallReply {
                            reqid: header.reqid,
                            status: reply.status,
                            data: reply.data,
                        },
                    ),
                    None => debug!(
                        peer = pnn,
                        reqid = header.reqid,
                        "call answer for no call waiting here"
                    ),
                }
            }
            Body::ReplyError(e) => {
                // No database id on the wire: the call's reqid is unique across
                // databases here, so offer it to each.
                let db_ids: Vec<u32> = self.dbs.keys().copied().collect();
                for db_id in db_ids {
                    self.node_call(
                        pnn,
                        header,
                        db_id,
                        NodeMessage::Error {
                            reqid: header.reqid,
                            status: e.status,
                            message: String::from_utf8_lossy(&e.msg)
                                .trim_end_matches('\0')
                                .to_owned(),
                        },
                    );
                }
            }
            Body::ReqControl(req) => {
                let noreply = req.flags & CTRL_FLAG_NOREPLY != 0;
                let opcode = req.opcode;
                let reply = self.peer_control(pnn, header.reqid, header.generation, req);
                if let Some(refused) = reply.as_ref().filter(|r| r.status != 0) {
                    // The specific reason, where there is one, was logged above.
                    warn!(
                        peer = pnn,
                        opcode,
                        reqid = header.reqid,
                        status = refused.status,
                        "control from another node refused"
                    );
                }
                if let (Some(reply), false) = (reply, noreply) {
                    self.send_to_peer(pnn, header.reqid, Body::ReplyControl(reply));
                }
            }
            Body::ReplyControl(reply) => self.control_reply(pnn, header.reqid, reply),
            Body::ReqMessage(msg) if msg.srvid == srvid::TOOL_PUSHDB => {
                self.pushed_records(&msg.data)
            }
            Body::ReqMessage(msg)
                if msg.srvid & srvid::RECOVERY_KIND_MASK == srvid::RECOVERY_PULL =>
            {
                self.recovery_pulled(pnn, msg.srvid, &msg.data)
            }
            Body::ReqMessage(msg)
                if msg.srvid & srvid::RECOVERY_KIND_MASK == srvid::RECOVERY_PUSH =>
            {
                match MarshallBuffer::decode_borrowed(&msg.data) {
                    Ok((db_id, records)) => self.recovery_push_records(
                        msg.srvid,
                        db_id,
                        records.iter().map(|(_, key, data)| (*key, *data)),
                    ),
                    // The confirm's count shows it.
                    Err(e) => warn!(peer = pnn, error = %e, "malformed pushed batch dropped"),
                }
            }
            other => debug!(peer = pnn, ?other, "not a data-path packet from a peer"),
        }
    }

    /// A control from node `pnn`, whose header carries `reqid` and the
    /// sender's `generation`.
    fn peer_control(
        &mut self,
        pnn: u32,
        reqid: u32,
        generation: u32,
        req: ReqControl,
    ) -> Option<ReplyControl> {
        match Opcode(req.opcode) {
            Opcode::DB_ATTACH | Opcode::DB_ATTACH_PERSISTENT => {
                // Another node's client attached: attach here too, without the
                // client checks.
                let kind = attach_kind(req.opcode);
                Some(match attach_name(&req.data) {
                    Some(name) => match self.attach(&name, kind) {
                        Ok(id) => ok(encode_u32(id)),
                        Err(e) => {
                            warn!(peer = pnn, %e, "attach asked by another node failed");
                            fail(-1)
                        }
                    },
                    None => fail(-1),
                })
            }
            Opcode::UPDATE_RECORD => self.peer_update_record(pnn, reqid, generation, &req.data),
            Opcode::DB_DETACH => Some(self.detach(false, &req.data)),
            Opcode::DB_FREEZE => self.freeze(
                FreezeWaiter::Node { pnn, reqid },
                req.srvid as u32,
                &req.data,
            ),
            Opcode::DB_PULL => Some(self.db_pull(pnn, &req.data)),
            Opcode::DB_PUSH_START if is_recovery_push(&req.data) => {
                Some(self.recovery_push_start(&req.data))
            }
            // A recovery's confirm carries the count sent; the tool's is 4 bytes.
            Opcode::DB_PUSH_CONFIRM if req.data.len() == 8 => {
                Some(self.recovery_push_confirm(&req.data))
            }
            Opcode::TRAVERSE_ALL | Opcode::TRAVERSE_ALL_EXT => {
                self.traverse_for_peer(pnn, req.opcode, &req.data);
                None
            }
            Opcode::TRAVERSE_DATA => {
                self.traverse_data(pnn, &req.data);
                None
            }
            // Our traverses run to the end at once: nothing to stop.
            Opcode::TRAVERSE_KILL => None,
            Opcode::UPDATE_SEQNUM => {
                if let Some(db) = decode_db_id(&req.data).and_then(|id| self.dbs.get_mut(&id)) {
                    db.tdb.increment_seqnum_nonblock();
                    db.seqnum_seen = db.tdb.get_seqnum();
                }
                None
            }
            _ => Some(self.local_db_control(&req).unwrap_or_else(|| fail(-1))),
        }
    }

    // ---- controls --------------------------------------------------------------

    /// A control from a local client; `None` when the answer comes later (or never:
    /// NOREPLY).
    fn client_control(&mut self, from: &ClientRequest, req: ReqControl) -> Option<ReplyControl> {
        let noreply = req.flags & CTRL_FLAG_NOREPLY != 0;
        let reply = match Opcode(req.opcode) {
            Opcode::DB_ATTACH | Opcode::DB_ATTACH_PERSISTENT => {
                if self.own_flags() & node_flags::INACTIVE != 0 {
                    Some(fail(-1))
                } else if self.view.recovering {
                    self.deferred_attaches.push(DeferredAttach {
                        from: from.clone(),
                        request: req,
                        until: Instant::now() + Duration::from_secs(120),
                    });
                    None
                } else {
                    Some(self.client_attach(&req))
                }
            }
            Opcode::TRANS3_COMMIT => self.trans3_commit(from, &req.data),
            Opcode::DB_DETACH => Some(self.detach(true, &req.data)),
            // A tool's freeze (`ctdb restoredb`, `ctdb wipedb`): srvid 0, so no
            // generation thaws it; DB_THAW, or a recovery's own freeze, does.
            Opcode::DB_FREEZE => self.freeze(
                FreezeWaiter::Client(from.clone()),
                req.srvid as u32,
                &req.data,
            ),
            Opcode::TRAVERSE_START | Opcode::TRAVERSE_START_EXT => {
                // The reply goes first: smbd drops records that come before it.
                let reply = self.start_traverse(from, &req);
                if !noreply {
                    self.reply_to_client(from, reply);
                }
                self.traverse_here_for(from.client);
                return None;
            }
            _ => self.local_db_control(&req),
        };
        if noreply {
            return None;
        }
        reply
    }

    /// DB_ATTACH / DB_ATTACH_PERSISTENT from a local client.
    fn client_attach(&mut self, req: &ReqControl) -> ReplyControl {
        let Some(name) = attach_name(&req.data) else {
            return fail(-1);
        };
        // As 4.17: with AllowClientDBAttach = 0 no local client attaches (the
        // state in which databases may be detached).
        if crate::daemon::snapshot::latest(&self.snapshots).allow_client_db_attach == 0 {
            warn!(db = %name, "attach refused: AllowClientDBAttach = 0");
            return fail(-1);
        }
        let kind = attach_kind(req.opcode);
        let known = self.dbs.keys().copied().collect::<BTreeSet<_>>();
        match self.attach(&name, kind) {
            Ok(id) => {
                if !known.contains(&id) {
                    // Every other node attaches it too (NOREPLY, as CTDB).
                    self.broadcast_control(req.opcode, req.data.clone());
                }
                ok(encode_u32(id))
            }
            Err(e) => {
                warn!(%e, "attach refused");
                fail(-1)
            }
        }
    }

    /// Attaches `name` here (opening or creating its file); its id.
    fn attach(&mut self, name: &str, kind: DbKind) -> anyhow::Result<u32> {
        let info = match self.registry.attach(name, kind)? {
            Attached::Existing(id) => return Ok(id),
            Attached::New(info) => info,
        };
        // libtdb, asked to create, silently makes a new database over a file
        // that is not one: for a persistent database (possibly the only copy of
        // this node's secrets) that would be losing it. An existing persistent
        // file is opened as it is, and a broken one refused.
        let existing = std::fs::metadata(&info.path).is_ok_and(|m| m.len() > 0);
        let create = if kind == DbKind::Persistent && existing {
            0
        } else {
            libc::O_CREAT
        };
        let unusable = || {
            format!(
                "database {name}: {} is not a usable TDB file; move it aside to start it empty",
                info.path.display()
            )
        };
        let tdb = Tdb::open(
            &info.path,
            HASH_SIZE,
            info.open_flags,
            create | libc::O_RDWR,
            0o600,
        )
        .with_context(unusable)?;
        // A persistent file whose header is sound may still be damaged inside (a
        // torn write, a bad disk block): walk all of it once before serving it,
        // as CTDB does at attach. A volatile file needs no check: this node is its
        // first opener, so CLEAR_IF_FIRST has just wiped it.
        if kind == DbKind::Persistent && existing {
            let started = Instant::now();
            tdb.check_consistency().with_context(unusable)?;
            debug!(db = %name, took = ?started.elapsed(), "persistent database checked");
        }
        info!(db = %info.name, id = format_args!("{:#010x}", info.id), path = %info.path.display(), ?kind, "attached database");
        let id = info.id;
        self.registry.insert(info.clone());
        self.dbs.insert(
            id,
            OpenDb {
                seqnum_seen: tdb.get_seqnum(),
                info,
                tdb,
                migration: Database::new(id),
                helper_locks: HashMap::new(),
                seqnum_enabled: false,
                frozen: None,
                vacuum: Vacuum::new(),
                next_vacuum: Instant::now() + self.snapshot.vacuum.interval,
                deleting: None,
                fetching: Vec::new(),
                tracking: None,
            },
        );
        Ok(id)
    }

    /// CTDB attaches at start every persistent database this node has a file of.
    fn attach_leftover_persistent(&mut self) {
        let dir = self.registry.dirs().persistent.clone();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot list persistent databases");
                return;
            }
        };
        let files: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        for name in self
            .registry
            .persistent_leftovers(files.iter().map(String::as_str))
        {
            if let Err(e) = self.attach(&name, DbKind::Persistent) {
                warn!(db = %name, error = %e, "cannot attach a persistent database found at start");
            }
        }
    }

    /// The per-database controls that need no one else (from a client or a peer);
    /// `None` for an opcode that is not one of them.
    fn local_db_control(&mut self, req: &ReqControl) -> Option<ReplyControl> {
        let op = Opcode(req.opcode);
        Some(match op {
            Opcode::GET_DBMAP => ok(DbMap {
                dbs: self
                    .registry
                    .iter()
                    .map(|info| DbMapEntry {
                        db_id: info.id,
                        flags: info.map_flags(),
                    })
                    .collect(),
            }
            .encode()),
            Opcode::GETDBPATH => match self.db_of(&req.data) {
                Some(db) => ok(encode_nul_string(&db.info.path.to_string_lossy())),
                None => fail(-1),
            },
            Opcode::GET_DBNAME => match self.db_of(&req.data) {
                Some(db) => ok(encode_nul_string(&db.info.name)),
                None => fail(-1),
            },
            // Our databases are checked whole at attach and refused if damaged, so
            // an attached one is healthy: no reason, zero bytes (core §6.4).
            Opcode::DB_GET_HEALTH => match self.db_of(&req.data) {
                Some(_) => ok(Vec::new()),
                None => fail(-1),
            },
            // No per-database lock, vacuum or hot-key counters are kept yet: all
            // zero, in the shape CTDB sends.
            Opcode::GET_DB_STATISTICS => match self.db_of(&req.data) {
                Some(_) => ok(DbStatistics::empty().encode()),
                None => fail(-1),
            },
            Opcode::DB_OPEN_FLAGS => match self.db_of(&req.data) {
                Some(db) => ok(encode_u32(db.tdb.client_open_flags())),
                None => fail(-1),
            },
            Opcode::ENABLE_SEQNUM => match self.db_of_mut(&req.data) {
                Some(db) => {
                    db.tdb.add_flags(tdb_flags::SEQNUM);
                    db.seqnum_enabled = true;
                    db.seqnum_seen = db.tdb.get_seqnum();
                    ok(Vec::new())
                }
                None => fail(-1),
            },
            Opcode::SET_DB_READONLY | Opcode::SET_DB_STICKY => {
                let readonly = op == Opcode::SET_DB_READONLY;
                let sticky_tunables = self.snapshot.sticky;
                let Some(db) = decode_db_id(&req.data).and_then(|id| self.dbs.get_mut(&id)) else {
                    return Some(fail(-1));
                };
                if db.info.kind != DbKind::Volatile {
                    warn!(db = %db.info.name, "only volatile databases can be read-only or sticky");
                    return Some(fail(-1));
                }
                if readonly {
                    if let Err(e) = open_tracking(db) {
                        error!(db = %db.info.name, error = %e, "cannot open the read-only tracking file");
                        return Some(fail(-1));
                    }
                    db.info.readonly = true;
                    db.migration.set_readonly();
                } else {
                    db.info.sticky = true;
                    db.migration.set_sticky(sticky_tunables);
                }
                let info = db.info.clone();
                if let Some(registered) = self.registry.get_mut(info.id) {
                    *registered = info;
                }
                ok(Vec::new())
            }
            Opcode::GET_DB_SEQNUM => {
                // 8 bytes: db id and padding.
                if req.data.len() != 8 {
                    return Some(fail(-1));
                }
                match self.db_of(&req.data[..4]) {
                    Some(db) => ok(read_db_seqnum(&db.tdb).to_le_bytes().to_vec()),
                    None => fail(-1),
                }
            }
            Opcode::SCHEDULE_FOR_DELETION => self.schedule_for_deletion(&req.data),
            // From another node's vacuuming (peer_control), or a local tool.
            Opcode::TRY_DELETE_RECORDS => self.try_delete_records(self.pnn, &req.data),
            Opcode::VACUUM_FETCH => self.vacuum_fetch(self.pnn, &req.data),
            Opcode::DB_TRANSACTION_START
            | Opcode::WIPE_DATABASE
            | Opcode::DB_TRANSACTION_COMMIT
            | Opcode::DB_TRANSACTION_CANCEL
            | Opcode::DB_PUSH_START
            | Opcode::DB_PUSH_CONFIRM => match self.client_transaction_step(op, &req.data) {
                Ok(reply) => ok(reply),
                Err(refusal) => {
                    warn!(control = op.name(), %refusal, "database transaction step refused");
                    fail(-1)
                }
            },
            // Health is not tracked beyond the check at attach (DB_GET_HEALTH).
            Opcode::DB_SET_HEALTHY => match self.db_of(&req.data) {
                Some(_) => ok(Vec::new()),
                None => fail(-1),
            },
            Opcode::DB_THAW => match decode_db_id(&req.data) {
                Some(db_id) if self.dbs.contains_key(&db_id) => {
                    if let Some(db) = self.dbs.get_mut(&db_id) {
                        thaw(db);
                    }
                    // Calls held while it was frozen go on.
                    self.migrate(db_id, |migration, view, store| {
                        migration.view_changed(view, store)
                    });
                    ok(Vec::new())
                }
                _ => fail(-1),
            },
            _ => return None,
        })
    }

    // ---- persistent transactions ---------------------------------------------------

    /// TRANS3_COMMIT: store the transaction on every active node in the vnn map,
    /// this one included, and answer when all have (§6.3).
    fn trans3_commit(&mut self, from: &ClientRequest, data: &[u8]) -> Option<ReplyControl> {
        let buffer = match MarshallBuffer::decode(data) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "malformed TRANS3_COMMIT");
                return Some(fail(-1));
            }
        };
        let db_id = buffer.db_id;
        let frozen = match self.dbs.get(&db_id) {
            Some(db) if db.info.kind == DbKind::Persistent => db.frozen.is_some(),
            other => {
                warn!(
                    db_id = format_args!("{db_id:#010x}"),
                    db = other.map(|db| db.info.name.as_str()),
                    "TRANS3_COMMIT refused: not an attached persistent database"
                );
                return Some(fail(-1));
            }
        };
        // Refused before this node's first recovery, too (found by the soak test:
        // records stored through a node just back from a power loss were lost;
        // `db::commit` says why).
        if let Err(refusal) =
            self.commits
                .may_begin(db_id, self.view.generation, self.view.recovering, frozen)
        {
            warn!(
                db_id = format_args!("{db_id:#010x}"),
                %refusal,
                "TRANS3_COMMIT refused"
            );
            return Some(fail(-1));
        }
        let local = self.update_record(data);
        if local.status != 0 {
            return Some(fail(-1));
        }
        let targets: BTreeSet<u32> = self
            .active_nodes()
            .into_iter()
            .filter(|pnn| *pnn != self.pnn && self.view.vnn_map.contains(pnn))
            .collect();
        let reqid = self.allocate_control_reqid();
        for pnn in &targets {
            self.send_control(*pnn, reqid, Opcode::UPDATE_RECORD.0, data.to_vec(), 0);
        }
        let pending = PendingCommit {
            from: from.clone(),
            deadline: Instant::now() + COMMIT_TIMEOUT,
        };
        if let Some(outcome) = self.commits.begin(reqid, db_id, pending, targets) {
            self.commit_done(outcome);
        }
        None
    }

    /// UPDATE_RECORD: stores a marshall buffer's records in one transaction; a
    /// record whose rsn is not newer than ours fails it unless the value is the
    /// same (§6.3).
    fn update_record(&mut self, data: &[u8]) -> ReplyControl {
        let buffer = match MarshallBuffer::decode(data) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "malformed UPDATE_RECORD");
                return fail(-1);
            }
        };
        let Some(db) = self.dbs.get(&buffer.db_id) else {
            warn!(
                db_id = format_args!("{:#010x}", buffer.db_id),
                "update of a database that is not attached refused"
            );
            return fail(-1);
        };
        if let Err((index, e)) = limits::check_records(&buffer.records) {
            warn!(db = %db.info.name, record = index, field = e.field, error = %e, "update refused");
            return fail(-1);
        }
        let persistent = db.info.kind != DbKind::Volatile;
        match apply_records(&db.tdb, &buffer.records, persistent, db.frozen.is_some()) {
            Ok(()) => ok(Vec::new()),
            Err(e) => {
                warn!(db = %db.info.name, error = %e, "update refused");
                fail(-1)
            }
        }
    }

    /// UPDATE_RECORD from another node, sent in `generation`. On a volatile
    /// database it is a revocation of this node's read-only copy (the only use
    /// CTDB makes of it there): one record, stored under its chain lock by the
    /// migration logic, which answers (`None` here) and refuses one sent in
    /// another generation. Persistent ones go to [`Self::update_record`].
    fn peer_update_record(
        &mut self,
        pnn: u32,
        reqid: u32,
        generation: u32,
        data: &[u8],
    ) -> Option<ReplyControl> {
        let Ok(buffer) = MarshallBuffer::decode(data) else {
            return Some(self.update_record(data));
        };
        let db_id = buffer.db_id;
        if !self
            .dbs
            .get(&db_id)
            .is_some_and(|db| db.info.kind == DbKind::Volatile)
        {
            return Some(self.update_record(data));
        }
        let [one] = &buffer.records[..] else {
            warn!(
                peer = pnn,
                records = buffer.records.len(),
                "UPDATE_RECORD on a volatile database with other than one record refused"
            );
            return Some(fail(-1));
        };
        if let Err((_, e)) = limits::check_records(&buffer.records) {
            warn!(peer = pnn, field = e.field, error = %e, "UPDATE_RECORD refused");
            return Some(fail(-1));
        }
        let Ok((header, value)) = ltdb::decode(&one.data) else {
            warn!(
                peer = pnn,
                "UPDATE_RECORD record without an ltdb header refused"
            );
            return Some(fail(-1));
        };
        let record = Record {
            header,
            value: value.to_vec(),
        };
        let key = one.key.clone();
        self.migrate(db_id, |migration, view, store| {
            migration.update_copy(view, store, pnn, generation, reqid, key, record)
        });
        None
    }

    /// A reply to one of this thread's controls: a recovery step or a commit.
    fn control_reply(&mut self, pnn: u32, reqid: u32, reply: ReplyControl) {
        if let Some(revoke) = self.revokes.remove(&reqid) {
            if revoke.node == pnn {
                let stored = reply.status == 0;
                self.revoke_answered(
                    revoke.db_id,
                    &revoke.key,
                    revoke.generation,
                    revoke.node,
                    stored,
                );
            } else {
                self.revokes.insert(reqid, revoke);
            }
            return;
        }
        if self.vacuum_reply(pnn, reqid, &reply) {
            return;
        }
        if self
            .recovery
            .as_ref()
            .is_some_and(|l| l.run.request_of(reqid).is_some())
        {
            self.recovery_reply(pnn, reqid, reply);
            return;
        }
        if reply.status != 0 && self.commits.is_commit(reqid) {
            warn!(
                peer = pnn,
                status = reply.status,
                "a node refused a persistent update"
            );
        }
        if let Some(outcome) = self.commits.answer(reqid, pnn, reply.status == 0) {
            self.commit_done(outcome);
        }
    }

    /// Every node answered (or left): success, or a recovery to set the nodes'
    /// copies right before the client hears.
    fn commit_done(&mut self, outcome: Outcome<PendingCommit>) {
        match outcome {
            Outcome::Acknowledged(commit) => self.reply_to_client(&commit.from, ok(Vec::new())),
            Outcome::Failed { client, db_id } => {
                self.commits_ended_by_recovery
                    .push((client.from, self.view.generation));
                self.ask_for_recovery(format!(
                    "a persistent update of db {db_id:#010x} failed on a node"
                ));
            }
        }
    }

    fn ask_for_recovery(&self, reason: String) {
        if let Err(e) = self
            .core
            .try_send(CoreEvent::Input(Input::RecoveryNeeded { reason }))
        {
            warn!(error = %e, "cannot ask the core for a recovery");
        }
    }

    // ---- the cluster changes ---------------------------------------------------------

    fn snapshot_changed(&mut self, snapshot: Arc<Snapshot>) {
        if snapshot.sticky != self.snapshot.sticky {
            for db in self.dbs.values_mut().filter(|db| db.info.sticky) {
                db.migration.set_sticky(snapshot.sticky);
            }
        }
        let view = view_of(&snapshot);
        self.snapshot = snapshot;
        let changed = view != self.view;
        self.view = view.clone();
        // Commits waiting for a node that is gone: it will never answer.
        let active: BTreeSet<u32> = self.active_nodes().into_iter().collect();
        for outcome in self.commits.nodes_left(&active) {
            self.commit_done(outcome);
        }
        self.vacuum_nodes_left(&active);
        // A recovery that needs a node that left cannot finish.
        let connected: BTreeSet<u32> = self
            .connected_peers()
            .into_iter()
            .chain([self.pnn])
            .collect();
        if let Some(leading) = &mut self.recovery {
            let gone = leading
                .run
                .nodes()
                .iter()
                .copied()
                .find(|n| !connected.contains(n));
            if let Some(progress) = gone.and_then(|n| leading.run.node_gone(n)) {
                self.recovery_progress(progress);
            }
        }
        let generation = self.view.generation;
        let (ended, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.commits_ended_by_recovery)
                .into_iter()
                .partition(|(_, g)| *g != generation && !self.view.recovering);
        self.commits_ended_by_recovery = waiting;
        for (from, _) in ended {
            self.reply_to_client(&from, fail(2));
        }
        if !changed {
            return;
        }
        let generation = self.view.generation;
        let mut thawed = false;
        for db in self.dbs.values_mut() {
            if db.frozen.as_ref().is_some_and(|f| f.thaw_at == generation) {
                thaw(db);
                thawed = true;
            }
        }
        if thawed {
            // The recovery's pull and push buffers are gone by now.
            release_freed_memory();
        }
        if !self.view.recovering {
            for deferred in std::mem::take(&mut self.deferred_attaches) {
                let reply = self.client_attach(&deferred.request);
                self.reply_to_client(&deferred.from, reply);
            }
        }
        let db_ids: Vec<u32> = self.dbs.keys().copied().collect();
        // A database still frozen stays held: its view says so (`migrate`).
        for db_id in db_ids {
            self.migrate(db_id, |migration, view, store| {
                migration.view_changed(view, store)
            });
        }
    }

    /// Once a second: tell the other nodes about databases whose sequence number
    /// moved (smbd's caches key on it), fail what waited too long, and vacuum.
    fn tick(&mut self) {
        let now = Instant::now();
        if let Some(leading) = self.recovery.as_mut().filter(|l| l.deadline <= now) {
            let progress = leading.run.timed_out();
            self.recovery_progress(progress);
        }
        let mut changed = Vec::new();
        for (id, db) in &mut self.dbs {
            if !db.seqnum_enabled {
                continue;
            }
            let seqnum = db.tdb.get_seqnum();
            if seqnum != db.seqnum_seen {
                db.seqnum_seen = seqnum;
                changed.push(*id);
            }
        }
        for id in changed {
            self.broadcast_control(Opcode::UPDATE_SEQNUM.0, encode_u32(id));
        }
        let overdue: Vec<u32> = self
            .revokes
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(reqid, _)| *reqid)
            .collect();
        for reqid in overdue {
            if let Some(revoke) = self.revokes.remove(&reqid) {
                warn!(
                    node = revoke.node,
                    "revocation of a read-only copy timed out"
                );
                self.revoke_answered(
                    revoke.db_id,
                    &revoke.key,
                    revoke.generation,
                    revoke.node,
                    false,
                );
            }
        }
        let overdue = self.commits.take_where(|_, c| c.deadline <= now);
        if !overdue.is_empty() {
            // Some node never answered: the copies may differ.
            self.ask_for_recovery("a persistent update timed out".into());
        }
        for commit in overdue {
            warn!("persistent update timed out");
            self.reply_to_client(&commit.from, fail(1));
        }
        let overdue: Vec<u32> = self
            .traverses
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            warn!(
                traverse = id,
                "traverse timed out; ending it with what arrived"
            );
            self.end_traverse(id);
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred_attaches)
            .into_iter()
            .partition(|d| d.until <= now);
        self.deferred_attaches = waiting;
        for deferred in expired {
            self.reply_to_client(&deferred.from, fail(-1));
        }
        self.vacuum_tick(now);
    }

    // ---- helpers ----------------------------------------------------------------------

    fn header(&self, destnode: u32, reqid: u32) -> Header {
        Header {
            generation: self.view.generation,
            destnode,
            srcnode: self.pnn,
            reqid,
        }
    }

    fn reply_to_client(&self, to: &ClientRequest, reply: ReplyControl) {
        let packet = Packet {
            header: self.header(0, to.reqid),
            body: Body::ReplyControl(reply),
        };
        let _ = to.replies.send(packet.encode());
    }

    fn send_to_peer(&self, pnn: u32, reqid: u32, body: Body) {
        let packet = Packet {
            header: self.header(pnn, reqid),
            body,
        };
        self.peers.send(pnn, packet.encode());
    }

    fn send_control(&self, pnn: u32, reqid: u32, opcode: u32, data: Vec<u8>, flags: u32) {
        self.send_to_peer(
            pnn,
            reqid,
            Body::ReqControl(ReqControl {
                opcode,
                srvid: 0,
                client_id: 0,
                flags,
                data,
            }),
        );
    }

    /// Sends a NOREPLY control to every other connected node.
    fn broadcast_control(&mut self, opcode: u32, data: Vec<u8>) {
        let reqid = self.allocate_control_reqid();
        for pnn in self.connected_peers() {
            self.send_control(pnn, reqid, opcode, data.clone(), CTRL_FLAG_NOREPLY);
        }
    }

    fn allocate_control_reqid(&mut self) -> u32 {
        next_control_reqid(&mut self.next_control_reqid)
    }

    fn connected_peers(&self) -> Vec<u32> {
        self.snapshot
            .nodes
            .iter()
            .filter(|n| n.pnn != self.pnn && n.flags & node_flags::DISCONNECTED == 0)
            .map(|n| n.pnn)
            .collect()
    }

    /// Nodes that are connected and not inactive (banned, stopped, deleted).
    fn active_nodes(&self) -> Vec<u32> {
        self.snapshot
            .nodes
            .iter()
            .filter(|n| n.flags & node_flags::INACTIVE == 0)
            .map(|n| n.pnn)
            .collect()
    }

    fn own_flags(&self) -> u32 {
        self.snapshot
            .nodes
            .iter()
            .find(|n| n.pnn == self.pnn)
            .map_or(0, |n| n.flags)
    }

    fn is_banned(&self) -> bool {
        self.own_flags() & node_flags::BANNED != 0
    }

    fn db_of(&self, data: &[u8]) -> Option<&OpenDb> {
        decode_db_id(data).and_then(|id| self.dbs.get(&id))
    }

    fn db_of_mut(&mut self, data: &[u8]) -> Option<&mut OpenDb> {
        decode_db_id(data).and_then(|id| self.dbs.get_mut(&id))
    }
}

/// The migration logic's view of a core snapshot.
fn view_of(snapshot: &Snapshot) -> migrate::View {
    migrate::View {
        pnn: snapshot.pnn,
        generation: snapshot.generation,
        vnn_map: snapshot.vnn_map.clone(),
        recovering: snapshot.recovery_mode != 0,
    }
}

fn attach_kind(opcode: u32) -> DbKind {
    if Opcode(opcode) == Opcode::DB_ATTACH_PERSISTENT {
        DbKind::Persistent
    } else {
        DbKind::Volatile
    }
}

/// The database name of an attach: NUL-terminated text.
fn attach_name(data: &[u8]) -> Option<String> {
    decode_nul_string(data, "db_name").ok()
}

/// A request that is exactly one u32 database id.
fn decode_db_id(data: &[u8]) -> Option<u32> {
    decode_u32(data, "db_id").ok()
}

fn ok(data: Vec<u8>) -> ReplyControl {
    ReplyControl {
        status: 0,
        data,
        error: Vec::new(),
    }
}

fn fail(status: i32) -> ReplyControl {
    ReplyControl {
        status,
        data: Vec::new(),
        error: Vec::new(),
    }
}

/// The persistent database's sequence number as stored in its file.
fn read_db_seqnum(tdb: &Tdb) -> u64 {
    tdb.fetch(DB_SEQUENCE_NUMBER_KEY)
        .ok()
        .flatten()
        .map_or(0, |stored| recovery::stored_sequence_number(&stored))
}

/// Stores a replicated transaction's records, all or none (UPDATE_RECORD,
/// §6.3; `db::commit` decides which).
fn apply_records(
    tdb: &Tdb,
    records: &[RecData],
    persistent: bool,
    frozen: bool,
) -> anyhow::Result<()> {
    in_transaction(tdb, |tdb| {
        let offered = records
            .iter()
            .map(|r| (r.key.as_slice(), r.data.as_slice()));
        let stores = commit::records_to_store(frozen, persistent, offered, |key| {
            tdb.fetch(key).map_err(|e| e.to_string())
        })?;
        for (key, stored) in stores {
            tdb.store(key, stored, StoreMode::Replace)?;
        }
        Ok(())
    })
}

/// Opens (creating, and wiping what an earlier run left) a read-only
/// database's tracking file `<path>.RO`, as CTDB does at `SET_DB_READONLY`.
fn open_tracking(db: &mut OpenDb) -> Result<(), TdbError> {
    if db.tracking.is_some() {
        return Ok(());
    }
    let mut path = db.info.path.clone().into_os_string();
    path.push(".RO");
    let tracking = Tdb::open(
        std::path::Path::new(&path),
        HASH_SIZE,
        tdb_flags::NOLOCK | tdb_flags::CLEAR_IF_FIRST | tdb_flags::NOSYNC,
        libc::O_CREAT | libc::O_RDWR,
        0o600,
    )?;
    info!(db = %db.info.name, path = %tracking.path().display(), "opened the read-only tracking file");
    db.tracking = Some(tracking);
    Ok(())
}

/// The migration logic's view for one database: a frozen database counts as
/// recovering even before the core's snapshot says so.
fn view_for(view: &migrate::View, frozen: bool) -> migrate::View {
    migrate::View {
        recovering: view.recovering || frozen,
        ..view.clone()
    }
}

/// Ends a database's freeze: the all-record lock goes, and smbd can lock records
/// again.
fn thaw(db: &mut OpenDb) {
    let Some(mut freeze) = db.frozen.take() else {
        return;
    };
    if let Some(push) = freeze.push.take() {
        // Never confirmed: the run that sent it is over.
        if let Err(e) = db.tdb.finish_frozen_transaction(push.transaction, false) {
            error!(db = %db.info.name, error = %e, "cancelling an unconfirmed push failed");
        }
    }
    let result = match freeze.lock {
        FreezeLock::Own => db.tdb.unlockall(),
        FreezeLock::Helper(helper) => {
            let unmarked = db.tdb.lockall_unmark();
            drop(helper);
            unmarked
        }
        // The helper's word, when it comes, finds nothing frozen and lets go.
        FreezeLock::Waiting(_) => Ok(()),
    };
    match result {
        Ok(()) => debug!(db = %db.info.name, "thawed"),
        Err(e) => error!(db = %db.info.name, error = %e, "thawing failed"),
    }
}

/// The control that carries one of a recovery's requests: opcode, srvid, data.
fn recovery_request(request: &Request, generation: u32) -> (Opcode, u64, Vec<u8>) {
    match request {
        Request::DbMap => (Opcode::GET_DBMAP, 0, Vec::new()),
        Request::Generation => (Opcode::GETVNNMAP, 0, Vec::new()),
        Request::DbName { db_id } => (Opcode::GET_DBNAME, 0, encode_u32(*db_id)),
        Request::Attach { name, persistent } => (
            if *persistent {
                Opcode::DB_ATTACH_PERSISTENT
            } else {
                Opcode::DB_ATTACH
            },
            0,
            encode_nul_string(name),
        ),
        // The srvid says which generation thaws it.
        Request::Freeze { db_id } => (Opcode::DB_FREEZE, u64::from(generation), encode_u32(*db_id)),
        Request::SeqNum { db_id } => {
            let mut data = encode_u32(*db_id);
            data.extend_from_slice(&[0; 4]);
            (Opcode::GET_DB_SEQNUM, 0, data)
        }
        Request::Pull { db_id } => (
            Opcode::DB_PULL,
            0,
            PullDb {
                db_id: *db_id,
                lmaster: LMASTER_ANY,
                srvid: srvid::RECOVERY_PULL | u64::from(generation),
            }
            .encode(),
        ),
        Request::PushStart { db_id } => (
            Opcode::DB_PUSH_START,
            0,
            PullDb {
                db_id: *db_id,
                lmaster: LMASTER_ANY,
                srvid: srvid::RECOVERY_PUSH | u64::from(generation),
            }
            .encode(),
        ),
        // A message, not a control: the srvid and data of its REQ_MESSAGE.
        Request::PushRecords { db_id, batch } => {
            (Opcode(0), srvid::RECOVERY_PUSH | u64::from(generation), {
                let mut buffer = MarshallBuffer::writer(*db_id);
                for (key, data) in batch.iter() {
                    buffer.push(0, key, data);
                }
                buffer.finish()
            })
        }
        Request::PushConfirm { db_id, count } => {
            let mut data = encode_u32(*db_id);
            data.extend_from_slice(&count.to_le_bytes());
            (Opcode::DB_PUSH_CONFIRM, 0, data)
        }
    }
}

/// Whether a DB_PUSH_START opens a recovery's push (its srvid is the
/// leader's), not a tool's.
fn is_recovery_push(data: &[u8]) -> bool {
    PullDb::decode(data).is_ok_and(|p| p.srvid & srvid::RECOVERY_KIND_MASK == srvid::RECOVERY_PUSH)
}

/// What a node's reply to `request` says; a malformed reply counts as a refusal.
fn recovery_answer_of(request: &Request, reply: &ReplyControl) -> Result<Answer, i32> {
    if reply.status != 0 {
        return Err(reply.status);
    }
    let malformed = |what: &str| {
        warn!(what, "malformed answer in a recovery");
        -1
    };
    Ok(match request {
        Request::DbMap => Answer::DbMap(
            DbMap::decode(&reply.data)
                .map_err(|_| malformed("database map"))?
                .dbs
                .into_iter()
                .map(|DbMapEntry { db_id, flags }| (db_id, flags & db_flags::PERSISTENT != 0))
                .collect(),
        ),
        Request::Generation => Answer::Generation(
            VnnMap::decode(&reply.data)
                .map_err(|_| malformed("vnn map"))?
                .generation,
        ),
        Request::DbName { .. } => {
            Answer::Name(attach_name(&reply.data).ok_or_else(|| malformed("database name"))?)
        }
        Request::SeqNum { .. } => Answer::SeqNum(u64::from_le_bytes(
            reply
                .data
                .as_slice()
                .try_into()
                .map_err(|_| malformed("sequence number"))?,
        )),
        Request::Pull { .. } | Request::PushConfirm { .. } => Answer::Count(
            decode_u32(&reply.data, "record count").map_err(|_| malformed("record count"))?,
        ),
        Request::Attach { .. }
        | Request::Freeze { .. }
        | Request::PushStart { .. }
        | Request::PushRecords { .. } => Answer::Done,
    })
}

/// Hands the heap's free memory back to the kernel. A recovery of a large
/// database allocates its records several times over (pulled copies, merge,
/// packets) and frees them all at the end; without this, glibc keeps the freed
/// pages and ctdbd's resident memory stays at the recovery's peak (measured:
/// 110 MiB of anonymous memory kept after recovering 1 M records).
#[allow(unsafe_code)]
fn release_freed_memory() {
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The next id for one of the thread's own controls (from DATA_PATH_REQIDS up).
fn next_control_reqid(counter: &mut u32) -> u32 {
    let reqid = *counter;
    *counter = counter.wrapping_add(1).max(DATA_PATH_REQIDS);
    reqid
}

/// The recovery this node leads (`db::recovery_run` decides what is asked of
/// whom; this thread sends, answers its own part and keeps the deadline).
struct Leading {
    run: RecoveryRun,
    /// Until when it may wait for the next answer.
    deadline: Instant,
}

/// How long a recovery may wait without any answer before it is given up (a
/// freeze may wait this long for smbd to let go of a record; a node that dies
/// ends it at once). The core has its own, longer, deadline for the whole
/// recovery and then starts over.
const RECOVERY_STEP_TIMEOUT: Duration = Duration::from_secs(30);

impl Worker {
    /// The core asks for the databases of `nodes` to be made the same.
    fn start_recovery(&mut self, generation: u32, nodes: Vec<u32>) {
        if let Some(old) = self.recovery.take() {
            info!(
                generation = old.run.generation(),
                "database recovery superseded"
            );
        }
        info!(generation, ?nodes, "recovering databases");
        let counter = &mut self.next_control_reqid;
        let batch_limit = self.snapshot.rec_buffer_size_limit as usize;
        let (run, progress) =
            RecoveryRun::start(self.pnn, generation, nodes, batch_limit, &mut || {
                next_control_reqid(counter)
            });
        self.recovery = Some(Leading {
            run,
            deadline: Instant::now() + RECOVERY_STEP_TIMEOUT,
        });
        self.recovery_progress(progress);
    }

    /// Sends what the run asks for; this node's own part is answered at once by
    /// the handlers that answer the other nodes (except a freeze that waits for
    /// smbd: its answer comes through [`Self::recovery_reply`]).
    fn recovery_progress(&mut self, progress: Progress) {
        let mut queue: VecDeque<recovery_run::Send> = VecDeque::new();
        let mut next = Some(progress);
        loop {
            match next.take() {
                Some(Progress::Finished(result)) => {
                    self.finish_recovery(result);
                    return;
                }
                Some(Progress::Send(sends)) => queue.extend(sends),
                None => {}
            }
            // The other nodes' requests go out before this node does its own
            // part (a pull or push of its copy takes as long as theirs): they
            // work meanwhile instead of after.
            let remote = queue.iter().position(|s| s.to != self.pnn);
            let Some(send) = remote
                .and_then(|i| queue.remove(i))
                .or_else(|| queue.pop_front())
            else {
                return;
            };
            let generation = self.recovery.as_ref().map_or(0, |l| l.run.generation());
            if let Request::PushRecords { db_id, batch } = &send.request {
                if send.to == self.pnn {
                    // Stored from the merge itself: no buffer to encode.
                    let push = srvid::RECOVERY_PUSH | u64::from(generation);
                    self.recovery_push_records(push, *db_id, batch.iter());
                    continue;
                }
                let (_, srvid, data) = recovery_request(&send.request, generation);
                let message = crate::protocol::packet::ReqMessage { srvid, data };
                self.send_to_peer(send.to, 0, Body::ReqMessage(message));
                continue;
            }
            let (opcode, srvid, data) = recovery_request(&send.request, generation);
            if send.to != self.pnn {
                let req = ReqControl {
                    opcode: opcode.0,
                    srvid,
                    client_id: 0,
                    flags: 0,
                    data,
                };
                self.send_to_peer(send.to, send.reqid, Body::ReqControl(req));
                continue;
            }
            let reply = if send.request == Request::Generation {
                // The core answers GETVNNMAP; its generation is in our view.
                Some(ok(VnnMap {
                    generation: self.view.generation,
                    map: self.view.vnn_map.clone(),
                }
                .encode()))
            } else {
                let req = ReqControl {
                    opcode: opcode.0,
                    srvid,
                    client_id: 0,
                    flags: 0,
                    data,
                };
                self.peer_control(self.pnn, send.reqid, self.view.generation, req)
            };
            if let Some(reply) = reply {
                next = self.recovery_answer(self.pnn, send.reqid, reply);
            }
        }
    }

    /// A node's reply to one of the run's requests.
    fn recovery_reply(&mut self, pnn: u32, reqid: u32, reply: ReplyControl) {
        if let Some(progress) = self.recovery_answer(pnn, reqid, reply) {
            self.recovery_progress(progress);
        }
    }

    fn recovery_answer(&mut self, pnn: u32, reqid: u32, reply: ReplyControl) -> Option<Progress> {
        let leading = self.recovery.as_mut()?;
        let request = leading.run.request_of(reqid)?;
        let answer = recovery_answer_of(request, &reply);
        if let Err(status) = &answer {
            warn!(peer = pnn, step = ?leading.run.step(), status, "a node failed a recovery step");
        }
        let counter = &mut self.next_control_reqid;
        let step = leading.run.step();
        let progress = leading
            .run
            .answer(reqid, answer, &mut || next_control_reqid(counter));
        if leading.run.step() != step {
            debug!(step = ?leading.run.step(), "recovery step");
        }
        // Any answer is progress: the deadline bounds a silence, not the work
        // (a push of a million records takes seconds on each node).
        leading.deadline = Instant::now() + RECOVERY_STEP_TIMEOUT;
        Some(progress)
    }

    fn finish_recovery(&mut self, result: Result<(), recovery_run::Failure>) {
        let Some(leading) = self.recovery.take() else {
            return;
        };
        let generation = leading.run.generation();
        drop(leading);
        release_freed_memory();
        match &result {
            Ok(()) => info!(generation, "databases recovered"),
            Err(failure) => warn!(generation, %failure, "database recovery failed"),
        }
        let event = CoreEvent::Input(Input::DatabasesRecovered {
            generation,
            ok: result.is_ok(),
            culprit: result
                .as_ref()
                .err()
                .and_then(recovery_run::Failure::culprit),
        });
        if let Err(e) = self.core.try_send(event) {
            // The core is busy or gone; its own deadline starts the recovery over.
            warn!(error = %e, "cannot report the database recovery to the core");
        }
    }

    // ---- the recovery controls each node answers ----------------------------------

    /// DB_FREEZE: take the all-record lock of a database; answered when held.
    fn freeze(&mut self, waiter: FreezeWaiter, thaw_at: u32, data: &[u8]) -> Option<ReplyControl> {
        let generation = thaw_at;
        let Some(db_id) = decode_db_id(data) else {
            return Some(fail(-1));
        };
        if !self.dbs.contains_key(&db_id) {
            return Some(fail(-1));
        }
        // Commits in flight on it end unacknowledged: answered after the
        // recovery, so that no copy changes once pulled (`db::commit`).
        let generation_now = self.view.generation;
        for commit in self.commits.frozen(db_id) {
            self.commits_ended_by_recovery
                .push((commit.from, generation_now));
        }
        let db = self.dbs.get_mut(&db_id).expect("checked");
        match &mut db.frozen {
            Some(Freeze {
                lock: FreezeLock::Waiting(waiters),
                ..
            }) => {
                waiters.push(waiter);
                return None;
            }
            Some(freeze) => {
                freeze.thaw_at = generation;
                return Some(ok(Vec::new()));
            }
            None => {}
        }
        match db.tdb.lockall_nonblock() {
            Ok(TryLock::Held) => {
                db.frozen = Some(Freeze {
                    thaw_at: generation,
                    lock: FreezeLock::Own,
                    transaction: None,
                    push: None,
                });
                debug!(db = %db.info.name, "frozen");
                Some(ok(Vec::new()))
            }
            Ok(TryLock::Busy) => {
                db.frozen = Some(Freeze {
                    thaw_at: generation,
                    lock: FreezeLock::Waiting(vec![waiter]),
                    transaction: None,
                    push: None,
                });
                self.wait_for_lock(db_id, None);
                None
            }
            Err(e) => {
                error!(db = %db.info.name, error = %e, "cannot freeze");
                Some(fail(-1))
            }
        }
    }

    /// A helper holds the all-record lock a freeze waited for.
    fn freeze_held(&mut self, db_id: u32, helper: Result<LockHelper, String>) {
        let Some(db) = self.dbs.get_mut(&db_id) else {
            return;
        };
        let waiters = match db.frozen.take() {
            Some(Freeze {
                thaw_at,
                lock: FreezeLock::Waiting(waiters),
                transaction,
                ..
            }) => match helper {
                Ok(helper) => match db.tdb.lockall_mark() {
                    Ok(()) => {
                        db.frozen = Some(Freeze {
                            thaw_at,
                            lock: FreezeLock::Helper(helper),
                            transaction,
                            push: None,
                        });
                        debug!(db = %db.info.name, "frozen (after waiting)");
                        waiters.into_iter().map(|w| (w, ok(Vec::new()))).collect()
                    }
                    Err(e) => {
                        error!(db = %db.info.name, error = %e, "marking the freeze failed");
                        waiters.into_iter().map(|w| (w, fail(-1))).collect()
                    }
                },
                Err(e) => {
                    error!(db = %db.info.name, error = %e, "freeze helper failed");
                    waiters
                        .into_iter()
                        .map(|w| (w, fail(-1)))
                        .collect::<Vec<_>>()
                }
            },
            other => {
                // Thawed (or frozen otherwise) meanwhile: the helper lets go.
                db.frozen = other;
                Vec::new()
            }
        };
        for (waiter, reply) in waiters {
            match waiter {
                FreezeWaiter::Node { pnn, reqid } if pnn == self.pnn => {
                    self.recovery_reply(pnn, reqid, reply)
                }
                FreezeWaiter::Node { pnn, reqid } => {
                    self.send_to_peer(pnn, reqid, Body::ReplyControl(reply))
                }
                FreezeWaiter::Client(from) => self.reply_to_client(&from, reply),
            }
        }
    }

    /// DB_PULL from a recovery's leader: every record of a frozen database,
    /// sent to it on the request's srvid in marshall buffers of at most
    /// `RecBufferSizeLimit` bytes, before the answer, which counts them (the
    /// leader checks the count against what came). The leader's own records
    /// go straight into its run, unencoded.
    fn db_pull(&mut self, pnn: u32, data: &[u8]) -> ReplyControl {
        let Ok(pull) = PullDb::decode(data) else {
            return fail(-1);
        };
        if pull.srvid & srvid::RECOVERY_KIND_MASK != srvid::RECOVERY_PULL {
            warn!(
                srvid = format_args!("{:#x}", pull.srvid),
                "DB_PULL on a srvid not a recovery's refused"
            );
            return fail(-1);
        }
        let Some(db) = self.dbs.get(&pull.db_id) else {
            return fail(-1);
        };
        if db
            .frozen
            .as_ref()
            .is_none_or(|f| matches!(f.lock, FreezeLock::Waiting(_)))
        {
            return fail(-1);
        }
        let mut count: u32 = 0;
        let walked = if pnn == self.pnn {
            let Some(leading) = self
                .recovery
                .as_mut()
                .filter(|l| u64::from(l.run.generation()) == pull.srvid & 0xFFFF_FFFF)
            else {
                return fail(-1);
            };
            db.tdb.traverse_read(|key, value| {
                leading.run.pulled(pnn, pull.db_id, [(key, value)]);
                count += 1;
                std::ops::ControlFlow::Continue(())
            })
        } else {
            let limit = self.snapshot.rec_buffer_size_limit as usize;
            let send = |batch: MarshallWriter| {
                let packet = Packet {
                    header: self.header(pnn, 0),
                    body: Body::ReqMessage(crate::protocol::packet::ReqMessage {
                        srvid: pull.srvid,
                        data: batch.finish(),
                    }),
                };
                self.peers.send(pnn, packet.encode());
            };
            let mut batch = MarshallBuffer::writer(pull.db_id);
            let walked = db.tdb.traverse_read(|key, value| {
                let size = marshall::REC_DATA_FIXED_SIZE + key.len() + value.len();
                if !batch.is_empty() && batch.len() + size > limit {
                    send(std::mem::replace(
                        &mut batch,
                        MarshallBuffer::writer(pull.db_id),
                    ));
                }
                batch.push(0, key, value);
                count += 1;
                std::ops::ControlFlow::Continue(())
            });
            if !batch.is_empty() {
                send(batch);
            }
            walked
        };
        match walked {
            Ok(_) => ok(encode_u32(count)),
            Err(e) => {
                error!(db = %db.info.name, error = %e, "reading records for a recovery failed");
                fail(-1)
            }
        }
    }

    /// A batch of records another node pulled for the recovery this node leads.
    fn recovery_pulled(&mut self, pnn: u32, srvid: u64, data: &[u8]) {
        let Some(leading) = self
            .recovery
            .as_mut()
            .filter(|l| u64::from(l.run.generation()) == srvid & 0xFFFF_FFFF)
        else {
            debug!(
                peer = pnn,
                "pulled records of a recovery not running: dropped"
            );
            return;
        };
        match MarshallBuffer::decode_borrowed(data) {
            Ok((db_id, records)) => {
                if !leading.run.pulled(
                    pnn,
                    db_id,
                    records.iter().map(|(_, key, data)| (*key, *data)),
                ) {
                    debug!(
                        peer = pnn,
                        "pulled records the recovery did not ask for: dropped"
                    );
                }
                leading.deadline = Instant::now() + RECOVERY_STEP_TIMEOUT;
            }
            // The node's count will not match what came: the run fails then.
            Err(e) => warn!(peer = pnn, error = %e, "malformed pulled records dropped"),
        }
    }

    /// DB_PUSH_START from a recovery's leader: empties the frozen database in
    /// a transaction that stays open for the batches.
    fn recovery_push_start(&mut self, data: &[u8]) -> ReplyControl {
        let Ok(start) = PullDb::decode(data) else {
            return fail(-1);
        };
        let Some(db) = self.dbs.get_mut(&start.db_id) else {
            warn!(
                db_id = format_args!("{:#010x}", start.db_id),
                "push to a database that is not attached refused"
            );
            return fail(-1);
        };
        let Some(freeze) = db
            .frozen
            .as_mut()
            .filter(|f| !matches!(f.lock, FreezeLock::Waiting(_)))
        else {
            warn!(db = %db.info.name, "push to a database that is not frozen refused");
            return fail(-1);
        };
        if let Some(old) = freeze.push.take() {
            // An earlier run's, never confirmed.
            if let Err(e) = db.tdb.finish_frozen_transaction(old.transaction, false) {
                error!(db = %db.info.name, error = %e, "cancelling an unconfirmed push failed");
                return fail(-1);
            }
        }
        let transaction = match db.tdb.start_frozen_transaction() {
            Ok(transaction) => transaction,
            Err(e) => {
                error!(db = %db.info.name, error = %e, "cannot start a recovery's push");
                return fail(-1);
            }
        };
        if let Err(e) = db.tdb.wipe_all() {
            error!(db = %db.info.name, error = %e, "cannot empty the database for a push");
            let _ = db.tdb.finish_frozen_transaction(transaction, false);
            return fail(-1);
        }
        freeze.push = Some(RecoveryPush {
            srvid: start.srvid,
            transaction,
            stored: 0,
            failed: false,
        });
        ok(Vec::new())
    }

    /// A batch of an open recovery push: stored in its transaction. As
    /// dmaster (the leader, for a volatile database) a record's rsn goes one
    /// up, as any store of ours does.
    fn recovery_push_records<'a>(
        &mut self,
        srvid: u64,
        db_id: u32,
        records: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) {
        let pnn = self.pnn;
        let Some(db) = self.dbs.get_mut(&db_id) else {
            return;
        };
        let volatile = db.info.kind == DbKind::Volatile;
        let Some(push) = db
            .frozen
            .as_mut()
            .and_then(|f| f.push.as_mut())
            .filter(|p| p.srvid == srvid && !p.failed)
        else {
            debug!(db = %db.info.name, "pushed records without an open push: dropped");
            return;
        };
        let mut raised = Vec::new();
        for (key, data) in records {
            let stored = match LtdbHeader::from_bytes(data) {
                Ok(mut header) if volatile && header.dmaster == pnn => {
                    header.rsn += 1;
                    raised.clear();
                    raised.extend_from_slice(&header.to_bytes());
                    raised.extend_from_slice(&data[HEADER_LEN..]);
                    raised.as_slice()
                }
                Ok(_) => data,
                Err(_) => {
                    warn!(db = %db.info.name, "pushed record without an ltdb header: push failed");
                    push.failed = true;
                    return;
                }
            };
            if let Err(e) = limits::check_record(key, &stored[HEADER_LEN..]) {
                warn!(db = %db.info.name, field = e.field, error = %e, "pushed record refused: push failed");
                push.failed = true;
                return;
            }
            if let Err(e) = db.tdb.store(key, stored, StoreMode::Replace) {
                error!(db = %db.info.name, error = %e, "storing pushed records failed");
                push.failed = true;
                return;
            }
            push.stored += 1;
        }
    }

    /// DB_PUSH_CONFIRM from a recovery's leader (db_id, records sent): the
    /// push's transaction is committed if every record came and was stored,
    /// cancelled otherwise; the answer is the count stored.
    fn recovery_push_confirm(&mut self, data: &[u8]) -> ReplyControl {
        let (Some(db_id), Ok(sent)) = (
            decode_db_id(&data[..4]),
            decode_u32(&data[4..], "records sent"),
        ) else {
            return fail(-1);
        };
        let Some(db) = self.dbs.get_mut(&db_id) else {
            return fail(-1);
        };
        let Some(push) = db.frozen.as_mut().and_then(|f| f.push.take()) else {
            warn!(db = %db.info.name, "confirm of a push not open refused");
            return fail(-1);
        };
        let commit = !push.failed && push.stored == sent;
        let (stored, failed) = (push.stored, push.failed);
        let finished = db.tdb.finish_frozen_transaction(push.transaction, commit);
        if failed {
            return fail(-1);
        }
        if !commit {
            warn!(db = %db.info.name, stored, sent, "pushed records lost on the way: old copy kept");
        }
        match finished {
            Ok(()) => {
                debug!(db = %db.info.name, records = stored, committed = commit, "recovery push confirmed");
                ok(encode_u32(stored))
            }
            Err(e) => {
                error!(db = %db.info.name, error = %e, "committing pushed records failed");
                fail(-1)
            }
        }
    }

    /// The steps of a client's transaction on a frozen database (samba §7.2–7.3):
    /// the reply data, or why the step is refused.
    fn client_transaction_step(&mut self, op: Opcode, data: &[u8]) -> Result<Vec<u8>, String> {
        let (db_id, tid) = match op {
            Opcode::DB_TRANSACTION_START
            | Opcode::WIPE_DATABASE
            | Opcode::DB_TRANSACTION_COMMIT => {
                let t = TransDb::decode(data).map_err(|e| e.to_string())?;
                (t.db_id, Some(t.tid))
            }
            Opcode::DB_PUSH_START => {
                let p = PullDb::decode(data).map_err(|e| e.to_string())?;
                if p.srvid != srvid::TOOL_PUSHDB {
                    return Err(format!(
                        "records pushed on srvid {:#x}: only the tool's {:#x} is taken",
                        p.srvid,
                        srvid::TOOL_PUSHDB
                    ));
                }
                (p.db_id, None)
            }
            _ => (decode_db_id(data).ok_or("malformed request")?, None),
        };
        let pnn = self.pnn;
        let db = self
            .dbs
            .get_mut(&db_id)
            .ok_or_else(|| format!("database {db_id:#010x} is not attached"))?;
        let name = db.info.name.clone();
        let freeze = db
            .frozen
            .as_mut()
            .filter(|f| !matches!(f.lock, FreezeLock::Waiting(_)))
            .ok_or_else(|| format!("{name} is not frozen"))?;
        if op == Opcode::DB_TRANSACTION_START {
            // A new start replaces any earlier one, as CTDB's does.
            freeze.transaction = Some(ClientTransaction {
                tid: tid.unwrap_or_default(),
                ..ClientTransaction::default()
            });
            return Ok(Vec::new());
        }
        if op == Opcode::DB_TRANSACTION_CANCEL {
            freeze.transaction = None;
            return Ok(Vec::new());
        }
        let transaction = freeze
            .transaction
            .as_mut()
            .ok_or_else(|| format!("no transaction started on {name}"))?;
        if let Some(tid) = tid.filter(|t| *t != transaction.tid) {
            return Err(format!(
                "transaction id {tid:#x} on {name}, started as {:#x}",
                transaction.tid
            ));
        }
        match op {
            Opcode::WIPE_DATABASE => {
                transaction.wipe = true;
                transaction.records.clear();
                Ok(Vec::new())
            }
            Opcode::DB_PUSH_START => {
                transaction.pushing = true;
                transaction.pushed = 0;
                Ok(Vec::new())
            }
            Opcode::DB_PUSH_CONFIRM => {
                if !transaction.pushing {
                    return Err(format!("no push started on {name}"));
                }
                transaction.pushing = false;
                Ok(encode_u32(transaction.pushed))
            }
            _ => {
                let transaction = freeze.transaction.take().expect("checked above");
                if transaction.pushing {
                    return Err(format!("{name}: committed with its push unconfirmed"));
                }
                let volatile = db.info.kind == DbKind::Volatile;
                let count = transaction.records.len();
                db.tdb
                    .with_locking_off(|tdb| {
                        in_transaction(tdb, |tdb| {
                            if transaction.wipe {
                                tdb.wipe_all()?;
                            }
                            for (key, stored) in &transaction.records {
                                tdb.store(key, stored, StoreMode::Replace)?;
                            }
                            Ok(())
                        })
                    })
                    .map_err(anyhow::Error::from)
                    .and_then(|r| r)
                    .map_err(|e| format!("committing to {name} failed: {e:#}"))?;
                info!(db = %name, records = count, wiped = transaction.wipe, volatile, pnn, "client transaction committed");
                Ok(Vec::new())
            }
        }
    }

    /// Records pushed on [`srvid::TOOL_PUSHDB`] (a marshall buffer; its db_id is
    /// whatever the backup file held, so it is not looked at): kept in the
    /// transaction of every database whose push is open, as CTDB hands the
    /// message to every handler registered for the srvid. A buffer that cannot
    /// be taken whole is dropped, which the count at DB_PUSH_CONFIRM shows.
    fn pushed_records(&mut self, data: &[u8]) {
        let buffer = match MarshallBuffer::decode(data) {
            Ok(buffer) => buffer,
            Err(e) => {
                warn!(error = %e, "malformed pushed records dropped");
                return;
            }
        };
        if let Err((index, e)) = limits::check_records(&buffer.records) {
            warn!(record = index, field = e.field, error = %e, "pushed records dropped");
            return;
        }
        if let Some(index) = buffer
            .records
            .iter()
            .position(|r| r.data.len() < HEADER_LEN)
        {
            warn!(
                record = index,
                "pushed record without an ltdb header: buffer dropped"
            );
            return;
        }
        let mut taken = false;
        let pnn = self.pnn;
        for db in self.dbs.values_mut() {
            let volatile = db.info.kind == DbKind::Volatile;
            let Some(transaction) = db
                .frozen
                .as_mut()
                .and_then(|f| f.transaction.as_mut())
                .filter(|t| t.pushing)
            else {
                continue;
            };
            for record in &buffer.records {
                let mut stored = record.data.clone();
                // Read-only delegations do not survive: CTDB strips their flags.
                if let Ok(mut header) = LtdbHeader::from_bytes(&stored) {
                    header.flags &= !ltdb_flags::RO_FLAGS;
                    stored[..HEADER_LEN].copy_from_slice(&header.to_bytes());
                }
                // Stored as CTDB's server-side store does: as the record's
                // dmaster, a volatile record's rsn goes one up.
                let stored = recovery::as_stored_by(pnn, volatile, &stored).unwrap_or(stored);
                transaction.records.push((record.key.clone(), stored));
            }
            transaction.pushed = transaction.pushed.wrapping_add(buffer.records.len() as u32);
            taken = true;
        }
        if !taken {
            debug!("pushed records with no push open: dropped");
        }
    }
}

/// Runs `body` in a libtdb transaction: committed if it succeeds, cancelled
/// otherwise.
fn in_transaction(tdb: &Tdb, body: impl FnOnce(&Tdb) -> anyhow::Result<()>) -> anyhow::Result<()> {
    tdb.transaction_start()?;
    match body(tdb) {
        Ok(()) => {
            tdb.transaction_commit()?;
            Ok(())
        }
        Err(e) => {
            let _ = tdb.transaction_cancel();
            Err(e)
        }
    }
}

/// A cluster-wide traverse a local client started (samba §6.6).
struct Traverse {
    from: ClientRequest,
    db_id: u32,
    /// The client's id for it, put in every record it gets.
    client_reqid: u32,
    /// Where the client wants the records (its connection's random srvid).
    srvid: u64,
    with_empty_records: bool,
    /// Nodes whose end marker has not come yet.
    waiting: BTreeSet<u32>,
    /// This node's records still to be sent (after the reply to the client).
    local_pending: bool,
    deadline: Instant,
}

/// `TraverseTimeout`: a traverse ends by then with whatever came.
const TRAVERSE_TIMEOUT: Duration = Duration::from_secs(20);

impl Worker {
    /// TRAVERSE_START(_EXT) from a local client: asks every active node (one node
    /// for a persistent database) for its records; they are sent after the reply.
    fn start_traverse(&mut self, from: &ClientRequest, req: &ReqControl) -> ReplyControl {
        let start = if Opcode(req.opcode) == Opcode::TRAVERSE_START {
            TraverseStart::decode(&req.data).map(|t| TraverseStartExt {
                db_id: t.db_id,
                reqid: t.reqid,
                srvid: t.srvid,
                with_empty_records: false,
            })
        } else {
            TraverseStartExt::decode(&req.data)
        };
        let Ok(start) = start else {
            return fail(-1);
        };
        let Some(db) = self.dbs.get(&start.db_id) else {
            return fail(-1);
        };
        let volatile = db.info.kind == DbKind::Volatile;
        let id = self.allocate_control_reqid();
        let others: Vec<u32> = if volatile {
            self.active_nodes()
                .into_iter()
                .filter(|p| *p != self.pnn)
                .collect()
        } else {
            Vec::new()
        };
        for pnn in &others {
            let data = if start.with_empty_records {
                TraverseAllExt {
                    db_id: start.db_id,
                    reqid: id,
                    pnn: self.pnn,
                    client_reqid: start.reqid,
                    srvid: start.srvid,
                    with_empty_records: true,
                }
                .encode()
            } else {
                TraverseAll {
                    db_id: start.db_id,
                    reqid: id,
                    pnn: self.pnn,
                    client_reqid: start.reqid,
                    srvid: start.srvid,
                }
                .encode()
            };
            let opcode = if start.with_empty_records {
                Opcode::TRAVERSE_ALL_EXT
            } else {
                Opcode::TRAVERSE_ALL
            };
            self.send_control(*pnn, id, opcode.0, data, CTRL_FLAG_NOREPLY);
        }
        self.traverses.insert(
            id,
            Traverse {
                from: from.clone(),
                db_id: start.db_id,
                client_reqid: start.reqid,
                srvid: start.srvid,
                with_empty_records: start.with_empty_records,
                waiting: others.into_iter().collect(),
                local_pending: true,
                deadline: Instant::now() + TRAVERSE_TIMEOUT,
            },
        );
        ok(Vec::new())
    }

    /// Sends this node's records of the traverses `client` just started.
    fn traverse_here_for(&mut self, client: ClientId) {
        let ids: Vec<u32> = self
            .traverses
            .iter()
            .filter(|(_, t)| t.from.client == client && t.local_pending)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(t) = self.traverses.get_mut(&id) else {
                continue;
            };
            t.local_pending = false;
            let (db_id, empty) = (t.db_id, t.with_empty_records);
            let records = self.local_records(db_id, empty);
            for record in records {
                self.deliver_traverse_record(id, record);
            }
            self.maybe_end_traverse(id);
        }
    }

    /// This node's share of a traverse: for a volatile database the records it is
    /// dmaster of (non-empty unless asked), for a persistent one all of them.
    fn local_records(&self, db_id: u32, with_empty: bool) -> Vec<RecData> {
        let Some(db) = self.dbs.get(&db_id) else {
            return Vec::new();
        };
        let volatile = db.info.kind == DbKind::Volatile;
        let pnn = self.pnn;
        let mut records = Vec::new();
        // libtdb takes each chain's read lock in turn: a chain an smbd holds
        // delays the walk until it lets go (CTDB walks in a child process; here it
        // is this thread, so a held chain delays the data path for that long).
        let walked = db.tdb.traverse_read(|key, stored| {
            let keep = match ltdb::decode(stored) {
                Ok((header, value)) => {
                    !volatile || (header.dmaster == pnn && (with_empty || !value.is_empty()))
                }
                Err(_) => false,
            };
            if keep {
                records.push(RecData {
                    reqid: 0,
                    key: key.to_vec(),
                    data: stored.to_vec(),
                });
            }
            std::ops::ControlFlow::Continue(())
        });
        if let Err(e) = walked {
            warn!(db = %db.info.name, error = %e, "traverse of the local file failed");
        }
        records
    }

    /// TRAVERSE_ALL(_EXT) from another node: send it our records, then an end.
    fn traverse_for_peer(&mut self, pnn: u32, opcode: u32, data: &[u8]) {
        let request = if Opcode(opcode) == Opcode::TRAVERSE_ALL {
            TraverseAll::decode(data).map(|t| (t.db_id, t.reqid, false))
        } else {
            TraverseAllExt::decode(data).map(|t| (t.db_id, t.reqid, t.with_empty_records))
        };
        let Ok((db_id, id, with_empty)) = request else {
            warn!(peer = pnn, "malformed TRAVERSE_ALL");
            return;
        };
        let mut records = self.local_records(db_id, with_empty);
        records.push(RecData::end_marker(id));
        for mut record in records {
            record.reqid = id;
            let data = record.encode();
            self.send_control(pnn, id, Opcode::TRAVERSE_DATA.0, data, CTRL_FLAG_NOREPLY);
        }
    }

    /// TRAVERSE_DATA: a record (or the end) from another node for one of ours.
    fn traverse_data(&mut self, pnn: u32, data: &[u8]) {
        let Ok(record) = RecData::decode(data) else {
            warn!(peer = pnn, "malformed TRAVERSE_DATA");
            return;
        };
        let id = record.reqid;
        if !self.traverses.contains_key(&id) {
            return;
        }
        if record.is_end_marker() {
            if let Some(t) = self.traverses.get_mut(&id) {
                t.waiting.remove(&pnn);
            }
            self.maybe_end_traverse(id);
        } else {
            self.deliver_traverse_record(id, record);
        }
    }

    fn deliver_traverse_record(&self, id: u32, mut record: RecData) {
        let Some(t) = self.traverses.get(&id) else {
            return;
        };
        record.reqid = t.client_reqid;
        let packet = Packet {
            header: self.header(0, 0),
            body: Body::ReqMessage(crate::protocol::packet::ReqMessage {
                srvid: t.srvid,
                data: record.encode(),
            }),
        };
        let _ = t.from.replies.send(packet.encode());
    }

    fn maybe_end_traverse(&mut self, id: u32) {
        if self
            .traverses
            .get(&id)
            .is_some_and(|t| t.waiting.is_empty() && !t.local_pending)
        {
            self.end_traverse(id);
        }
    }

    /// The end record goes to the client, and the traverse is over.
    fn end_traverse(&mut self, id: u32) {
        let Some(t) = self.traverses.get(&id) else {
            return;
        };
        let end = RecData::end_marker(t.client_reqid);
        let packet = Packet {
            header: self.header(0, 0),
            body: Body::ReqMessage(crate::protocol::packet::ReqMessage {
                srvid: t.srvid,
                data: end.encode(),
            }),
        };
        let _ = t.from.replies.send(packet.encode());
        self.traverses.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::core::{Node, NodeConfig, Now};
    use crate::daemon::snapshot::Publisher;
    use crate::protocol::control::Timeval;
    use crate::transport::peer::{Inbound, PeerLinks};

    /// A database thread's worker for node 0 of a one-node cluster, with its
    /// files in `dir`, and where it reports finished recoveries.
    pub(super) fn one_node_worker(
        dir: &std::path::Path,
    ) -> (Worker, mpsc::Receiver<CoreEvent>, Publisher) {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let now = Now {
            mono_ms: 0,
            wall: Timeval {
                sec: 1_700_000_000,
                usec: 0,
            },
        };
        let node = Node::new(NodeConfig {
            pnn: 0,
            nodes: vec![Some(localhost)],
            public_addresses: Vec::new(),
            tunables: crate::tunables::Tunables::default(),
            debug_level: 3,
            leader_capability: true,
            lmaster_capability: true,
            cluster_lock: None,
            leader_timeout_s: 5,
            start_disabled: false,
            start_stopped: false,
            daemon_pid: 4242,
            incarnation: 1,
            seed: 7,
            start: now,
        });
        let publisher = Publisher::new(&node, Instant::now());
        let (core_tx, core_rx) = mpsc::channel(16);
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let peers = PeerLinks::start(
            0,
            vec![Some(localhost)],
            port,
            listener,
            Inbound {
                core: core_tx.clone(),
                data: None,
            },
            CancellationToken::new(),
            &TaskTracker::new(),
        );
        let worker = Worker::new(Config {
            pnn: 0,
            dirs: DbDirs {
                volatile: dir.join("volatile"),
                persistent: dir.join("persistent"),
                mutexes: false,
            },
            peers: Arc::new(peers),
            snapshots: publisher.subscribe(),
            core: core_tx,
        });
        (worker, core_rx, publisher)
    }

    /// Given a volatile record held by the leader alone, when the leader recovers
    /// the databases, then the record is still there: the leader's own records
    /// take part in the merge like every other node's. (Its own DB_PULL is
    /// answered inside the call that sends it, before the reply used to be
    /// expected, and the merge pushed an empty database over its own.)
    #[tokio::test]
    async fn a_recovery_keeps_the_records_only_the_leader_has() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("volatile")).unwrap();
        std::fs::create_dir_all(dir.path().join("persistent")).unwrap();
        let (mut worker, mut core_rx, _publisher) = one_node_worker(dir.path());
        let db_id = worker.attach("locking.tdb", DbKind::Volatile).unwrap();
        let header = ltdb::LtdbHeader {
            rsn: 5,
            dmaster: 0,
            ..Default::default()
        };
        worker.dbs[&db_id]
            .tdb
            .store(
                b"open file",
                &ltdb::encode(&header, b"share modes"),
                StoreMode::Replace,
            )
            .unwrap();

        worker.start_recovery(77, vec![0]);

        match core_rx.try_recv() {
            Ok(CoreEvent::Input(Input::DatabasesRecovered { generation, ok, .. })) => {
                assert_eq!((generation, ok), (77, true));
            }
            other => panic!("expected the recovery's report, got {other:?}"),
        }
        let stored = worker.dbs[&db_id]
            .tdb
            .fetch(b"open file")
            .unwrap()
            .expect("the leader's record survives its own recovery");
        let (header, value) = ltdb::decode(&stored).unwrap();
        assert_eq!(value, b"share modes");
        assert_eq!(header.dmaster, 0);
        assert!(
            header.rsn > 5,
            "pushed as dmaster: rsn {} goes up",
            header.rsn
        );
    }
}

#[cfg(test)]
mod corrupt_files {
    use super::tests::one_node_worker;
    use super::*;

    /// Given a volatile database file full of garbage (a crash mid-write, a disk
    /// error), when it is attached, then it is wiped and works (CLEAR_IF_FIRST:
    /// this daemon is its first opener, as CTDB relies on).
    #[tokio::test]
    async fn a_corrupt_volatile_file_is_wiped_at_attach() {
        let dir = tempfile::tempdir().unwrap();
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        std::fs::create_dir_all(dir.path().join("volatile")).unwrap();
        std::fs::write(
            dir.path().join("volatile/locking.tdb.0"),
            b"not a tdb file at all, just bytes".repeat(100),
        )
        .unwrap();
        let db_id = worker.attach("locking.tdb", DbKind::Volatile).unwrap();
        let db = &worker.dbs[&db_id];
        db.tdb
            .store(
                b"k",
                &ltdb::encode(&ltdb::LtdbHeader::new(1, 0), b"v"),
                StoreMode::Replace,
            )
            .unwrap();
        assert!(db.tdb.fetch(b"k").unwrap().is_some());
    }

    /// Writes `records` records with libtdb into `path` (opened with `tdb_flags`),
    /// then overwrites the header of record 100 in the middle of the file.
    fn damaged_tdb(path: &std::path::Path, tdb_flags: u32, records: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        {
            let tdb = Tdb::open(path, 0, tdb_flags, libc::O_CREAT | libc::O_RDWR, 0o600).unwrap();
            for i in 0..records {
                tdb.store(
                    format!("record-{i:05}").as_bytes(),
                    &ltdb::encode(&ltdb::LtdbHeader::new(1, 0), &[i as u8; 64]),
                    StoreMode::Insert,
                )
                .unwrap();
            }
        }
        crate::db::tdb::tests::damage_record_header(path, b"record-00100");
    }

    /// Given a real persistent TDB whose file header is sound but one record in
    /// the middle is overwritten (libtdb opens such a file without complaint),
    /// when the daemon attaches it, then `tdb_check` refuses it with an error
    /// naming the file, the file is left as it was, and the database is not
    /// registered.
    #[tokio::test]
    async fn a_persistent_file_damaged_inside_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        let path = dir.path().join("persistent/passdb.tdb.0");
        damaged_tdb(&path, tdb_flags::PERSISTENT_DB, 300);
        let before = std::fs::read(&path).unwrap();
        let error = worker
            .attach("passdb.tdb", DbKind::Persistent)
            .expect_err("a damaged persistent database must not be attached");
        let text = format!("{error:#}");
        assert!(
            text.contains(&path.display().to_string()),
            "the error should name the file: {text}"
        );
        assert!(
            text.contains("check"),
            "the error should say the check failed: {text}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was changed"
        );
        assert!(worker
            .registry
            .get(crate::db::hash::db_id("passdb.tdb"))
            .is_none());
        assert!(worker.dbs.is_empty());
    }

    /// Given a volatile TDB damaged the same way, when it is attached, then it is
    /// wiped (CLEAR_IF_FIRST) and serves: the damaged record and its neighbours are
    /// gone, a new record can be stored, and the file passes `tdb_check`.
    #[tokio::test]
    async fn a_volatile_file_damaged_inside_is_wiped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        let path = dir.path().join("volatile/locking.tdb.0");
        damaged_tdb(&path, tdb_flags::VOLATILE_DB, 300);
        let db_id = worker.attach("locking.tdb", DbKind::Volatile).unwrap();
        let db = &worker.dbs[&db_id];
        assert_eq!(
            db.tdb
                .traverse_read(|_, _| std::ops::ControlFlow::Continue(()))
                .unwrap(),
            0,
            "the volatile file was not wiped"
        );
        db.tdb
            .store(
                b"k",
                &ltdb::encode(&ltdb::LtdbHeader::new(1, 0), b"v"),
                StoreMode::Replace,
            )
            .unwrap();
        db.tdb.check_consistency().unwrap();
    }

    /// Given a persistent database file that is not a TDB, when the daemon
    /// attaches it, then the attach is refused with an error naming the file,
    /// rather than served half-read or wiped (it may hold the only copy of a
    /// node's secrets).
    #[tokio::test]
    async fn a_corrupt_persistent_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        std::fs::create_dir_all(dir.path().join("persistent")).unwrap();
        let path = dir.path().join("persistent/secrets.tdb.0");
        let garbage = b"TDB file? no.".repeat(64);
        std::fs::write(&path, &garbage).unwrap();
        let error = worker
            .attach("secrets.tdb", DbKind::Persistent)
            .expect_err("a corrupt persistent database must not be attached");
        assert!(
            format!("{error:#}").contains(&path.display().to_string()),
            "the error should name the file: {error:#}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            garbage,
            "the file was changed"
        );
        assert!(worker
            .registry
            .get(crate::db::hash::db_id("secrets.tdb"))
            .is_none());
    }
}

/// Bad input from other nodes (and a local TRANS3_COMMIT over the limits): each
/// is refused with an error reply, and no record already stored changes.
#[cfg(test)]
mod peer_bad_input {
    use super::tests::one_node_worker;
    use super::*;
    use crate::db::limits::{MAX_KEY_LEN, MAX_VALUE_LEN};

    fn record(key: &[u8], rsn: u64, value: &[u8]) -> RecData {
        RecData {
            reqid: 0,
            key: key.to_vec(),
            data: ltdb::encode(&ltdb::LtdbHeader::new(rsn, 0), value),
        }
    }

    fn buffer(db_id: u32, records: Vec<RecData>) -> Vec<u8> {
        MarshallBuffer { db_id, records }.encode()
    }

    /// A local client's control `opcode` with `data` (also for `vacuuming`'s tests).
    pub(super) fn control(opcode: Opcode, data: Vec<u8>) -> ReqControl {
        ReqControl {
            opcode: opcode.0,
            srvid: 0,
            client_id: 0,
            flags: 0,
            data,
        }
    }

    fn value_of(worker: &Worker, db_id: u32, key: &[u8]) -> Option<Vec<u8>> {
        let stored = worker.dbs[&db_id].tdb.fetch(key).unwrap()?;
        Some(ltdb::decode(&stored).unwrap().1.to_vec())
    }

    /// Given a persistent database with one record, when another node sends
    /// UPDATE_RECORD with a garbage buffer, for an unknown database, with a key
    /// over the limit, or with a value over the limit beside a good record, then
    /// each gets status -1 and the database is as it was (the good record of the
    /// refused buffer is not stored either: all or nothing).
    #[tokio::test]
    async fn bad_update_records_from_a_peer_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        for kind in ["volatile", "persistent"] {
            std::fs::create_dir_all(dir.path().join(kind)).unwrap();
        }
        let db_id = worker.attach("secrets.tdb", DbKind::Persistent).unwrap();
        let reply = worker
            .peer_control(
                1,
                1,
                worker.view.generation,
                control(
                    Opcode::UPDATE_RECORD,
                    buffer(db_id, vec![record(b"kept", 1, b"v1")]),
                ),
            )
            .unwrap();
        assert_eq!(reply.status, 0);

        let cases = [
            ("garbage", b"\x01\x02\x03 not a marshall buffer".to_vec()),
            (
                "unknown database",
                buffer(0xdead_beef, vec![record(b"x", 9, b"x")]),
            ),
            (
                "key over the limit",
                buffer(db_id, vec![record(&vec![b'k'; MAX_KEY_LEN + 1], 9, b"x")]),
            ),
            (
                "value over the limit",
                buffer(
                    db_id,
                    vec![
                        record(b"new", 9, b"fine"),
                        record(b"kept", 9, &vec![0; MAX_VALUE_LEN + 1]),
                    ],
                ),
            ),
        ];
        for (what, data) in cases {
            let reply = worker
                .peer_control(
                    1,
                    2,
                    worker.view.generation,
                    control(Opcode::UPDATE_RECORD, data),
                )
                .unwrap_or_else(|| panic!("{what}: no reply"));
            assert_eq!(reply.status, -1, "{what}");
        }
        assert_eq!(
            value_of(&worker, db_id, b"kept").as_deref(),
            Some(&b"v1"[..])
        );
        assert_eq!(value_of(&worker, db_id, b"new"), None);

        // A local client's TRANS3_COMMIT over the limits: refused before any node
        // is asked.
        let (replies, _rx) = mpsc::unbounded_channel();
        let from = ClientRequest {
            client: ClientId(5),
            reqid: 3,
            replies,
        };
        let data = buffer(db_id, vec![record(b"kept", 9, &vec![0; MAX_VALUE_LEN + 1])]);
        let reply = worker
            .trans3_commit(&from, &data)
            .expect("answered at once");
        assert_eq!(reply.status, -1);
        assert!(
            worker.commits.may_begin(db_id, 7, false, false).is_ok(),
            "no commit in flight"
        );
        assert_eq!(
            value_of(&worker, db_id, b"kept").as_deref(),
            Some(&b"v1"[..])
        );
    }

    /// Freezes `db_id` as a recovery does (generation 9): the all-record lock held
    /// by the worker itself.
    fn freeze_as_a_recovery_does(worker: &mut Worker, db_id: u32) {
        assert_eq!(
            worker.dbs[&db_id].tdb.lockall_nonblock().unwrap(),
            TryLock::Held
        );
        worker.dbs.get_mut(&db_id).unwrap().frozen = Some(Freeze {
            thaw_at: 9,
            lock: FreezeLock::Own,
            transaction: None,
            push: None,
        });
    }

    /// A recovery's push from node 1 to `worker`: DB_PUSH_START, `batches` as
    /// messages, DB_PUSH_CONFIRM counting `sent`; the start's and the
    /// confirm's replies.
    fn recovery_push(
        worker: &mut Worker,
        db_id: u32,
        batches: Vec<Vec<u8>>,
        sent: u32,
    ) -> (ReplyControl, ReplyControl) {
        let push_srvid = srvid::RECOVERY_PUSH | 9;
        let start = PullDb {
            db_id,
            lmaster: LMASTER_ANY,
            srvid: push_srvid,
        };
        let started = worker
            .peer_control(
                1,
                1,
                worker.view.generation,
                control(Opcode::DB_PUSH_START, start.encode()),
            )
            .unwrap();
        for data in batches {
            worker.peer_packet(
                1,
                Packet {
                    header: Header {
                        generation: 9,
                        destnode: 0,
                        srcnode: 1,
                        reqid: 0,
                    },
                    body: Body::ReqMessage(crate::protocol::packet::ReqMessage {
                        srvid: push_srvid,
                        data,
                    }),
                },
            );
        }
        let mut confirm = encode_u32(db_id);
        confirm.extend_from_slice(&sent.to_le_bytes());
        let confirmed = worker
            .peer_control(
                1,
                2,
                worker.view.generation,
                control(Opcode::DB_PUSH_CONFIRM, confirm),
            )
            .unwrap();
        (started, confirmed)
    }

    /// Given a frozen volatile database with one record, when the leader of a
    /// recovery pushes a garbage batch, a batch for an unknown database, a
    /// record over the limits or a record without an ltdb header (each time
    /// after a good batch), or confirms more records than it sent, then the
    /// database keeps its old copy whole; a push whose every record came
    /// replaces it at the confirm; a push to a database that is not frozen is
    /// refused.
    #[tokio::test]
    async fn a_recovery_push_replaces_the_copy_only_when_confirmed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        for kind in ["volatile", "persistent"] {
            std::fs::create_dir_all(dir.path().join(kind)).unwrap();
        }
        let db_id = worker.attach("locking.tdb", DbKind::Volatile).unwrap();
        let old = record(b"old", 1, b"before");
        worker.dbs[&db_id]
            .tdb
            .store(&old.key, &old.data, StoreMode::Replace)
            .unwrap();
        let good = || buffer(db_id, vec![record(b"pushed", 3, b"good")]);
        let (started, _) = recovery_push(&mut worker, db_id, vec![good()], 1);
        assert_eq!(started.status, -1, "not frozen");

        freeze_as_a_recovery_does(&mut worker, db_id);
        let headerless = RecData {
            reqid: 0,
            key: b"short".to_vec(),
            data: b"no header".to_vec(),
        };
        let cases = [
            ("garbage", vec![0xff; 5], 2),
            (
                "unknown database",
                buffer(0xdead_beef, vec![record(b"x", 1, b"y")]),
                2,
            ),
            (
                "key over the limit",
                buffer(db_id, vec![record(&vec![1; MAX_KEY_LEN + 1], 3, b"x")]),
                2,
            ),
            (
                "value over the limit",
                buffer(db_id, vec![record(b"big", 3, &vec![1; MAX_VALUE_LEN + 1])]),
                2,
            ),
            (
                "record without a header",
                buffer(db_id, vec![headerless]),
                2,
            ),
            ("more confirmed than sent", buffer(db_id, Vec::new()), 3),
        ];
        for (what, bad, sent) in cases {
            let (started, confirmed) = recovery_push(&mut worker, db_id, vec![good(), bad], sent);
            assert_eq!(started.status, 0, "{what}");
            assert!(
                confirmed.status != 0 || confirmed.data != encode_u32(sent),
                "{what}: confirmed"
            );
            assert_eq!(value_of(&worker, db_id, b"pushed"), None, "{what}: stored");
            assert_eq!(
                value_of(&worker, db_id, b"old").as_deref(),
                Some(&b"before"[..]),
                "{what}: the old copy is gone"
            );
        }
        let (_, confirmed) = recovery_push(&mut worker, db_id, vec![good(), good()], 2);
        assert_eq!((confirmed.status, confirmed.data), (0, encode_u32(2)));
        assert_eq!(
            value_of(&worker, db_id, b"pushed").as_deref(),
            Some(&b"good"[..])
        );
        assert_eq!(value_of(&worker, db_id, b"old"), None, "replaced whole");
    }

    /// Given a frozen volatile database, when a client asks DB_OPEN_FLAGS while a
    /// recovery's push is open (the handle's locking is off meanwhile) and after
    /// it, then the answer is the flags the database was opened with, never
    /// NOLOCK: a client that opened with NOLOCK and CLEAR_IF_FIRST would believe
    /// itself the file's first opener and wipe it under the daemon's map.
    #[tokio::test]
    async fn open_flags_never_carry_the_push_s_nolock() {
        let dir = tempfile::tempdir().unwrap();
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        for kind in ["volatile", "persistent"] {
            std::fs::create_dir_all(dir.path().join(kind)).unwrap();
        }
        let db_id = worker.attach("locking.tdb", DbKind::Volatile).unwrap();
        let open_flags = |worker: &mut Worker| {
            let reply = worker
                .peer_control(
                    1,
                    5,
                    worker.view.generation,
                    control(Opcode::DB_OPEN_FLAGS, encode_u32(db_id)),
                )
                .unwrap();
            assert_eq!(reply.status, 0);
            u32::from_le_bytes(reply.data.try_into().unwrap())
        };
        let before = open_flags(&mut worker);
        assert_eq!(
            before & tdb_flags::CLEAR_IF_FIRST,
            tdb_flags::CLEAR_IF_FIRST
        );

        freeze_as_a_recovery_does(&mut worker, db_id);
        let start = PullDb {
            db_id,
            lmaster: LMASTER_ANY,
            srvid: srvid::RECOVERY_PUSH | 9,
        };
        let started = worker
            .peer_control(
                1,
                1,
                worker.view.generation,
                control(Opcode::DB_PUSH_START, start.encode()),
            )
            .unwrap();
        assert_eq!(started.status, 0);
        assert_ne!(
            worker.dbs[&db_id].tdb.get_flags() & tdb_flags::NOLOCK,
            0,
            "the push runs with the handle's locking off"
        );
        assert_eq!(open_flags(&mut worker), before, "during the push");

        let mut confirm = encode_u32(db_id);
        confirm.extend_from_slice(&0u32.to_le_bytes());
        let confirmed = worker
            .peer_control(
                1,
                2,
                worker.view.generation,
                control(Opcode::DB_PUSH_CONFIRM, confirm),
            )
            .unwrap();
        assert_eq!(confirmed.status, 0);
        assert_eq!(open_flags(&mut worker), before, "after the push");
    }

    /// Given an attached database, when DB_GET_HEALTH and GET_DB_STATISTICS ask
    /// about it and about an unknown id, then it is healthy (an empty reply) with
    /// all-zero counters in CTDB's shape (ten hot-key slots announced), and the
    /// unknown id gets status -1 for both.
    #[tokio::test]
    async fn health_and_statistics_of_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        for kind in ["volatile", "persistent"] {
            std::fs::create_dir_all(dir.path().join(kind)).unwrap();
        }
        let db_id = worker.attach("locking.tdb", DbKind::Volatile).unwrap();
        let ask = |worker: &mut Worker, opcode, id: u32| {
            worker
                .peer_control(
                    1,
                    5,
                    worker.view.generation,
                    control(opcode, encode_u32(id)),
                )
                .unwrap()
        };
        let health = ask(&mut worker, Opcode::DB_GET_HEALTH, db_id);
        assert_eq!((health.status, health.data.len()), (0, 0));
        let stats = ask(&mut worker, Opcode::GET_DB_STATISTICS, db_id);
        assert_eq!(stats.status, 0);
        let decoded = DbStatistics::decode(&stats.data).unwrap();
        assert_eq!(decoded, DbStatistics::empty());
        assert_eq!(decoded.num_hot_keys, 10);
        for opcode in [Opcode::DB_GET_HEALTH, Opcode::GET_DB_STATISTICS] {
            assert_eq!(ask(&mut worker, opcode, 0xdead_beef).status, -1);
        }
    }

    /// Given a volatile database with a record, when another node sends calls
    /// and hand-overs for an unknown database, with a key over the limit, of
    /// another generation, a REPLY_ERROR nobody waits for, and controls with
    /// truncated data, then the thread goes on (no panic), every control gets
    /// status -1, and the record is unchanged.
    #[tokio::test]
    async fn malformed_node_messages_change_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        for kind in ["volatile", "persistent"] {
            std::fs::create_dir_all(dir.path().join(kind)).unwrap();
        }
        let db_id = worker.attach("locking.tdb", DbKind::Volatile).unwrap();
        let stored = ltdb::encode(&ltdb::LtdbHeader::new(4, 0), b"share modes");
        worker.dbs[&db_id]
            .tdb
            .store(b"open file", &stored, StoreMode::Replace)
            .unwrap();
        let generation = worker.view.generation;
        let header = |generation| Header {
            generation,
            destnode: 0,
            srcnode: 1,
            reqid: 77,
        };
        let bodies = [
            (
                generation,
                Body::ReqCall(ReqCall {
                    flags: 0,
                    db_id: 0xdead_beef,
                    callid: migrate::CALL_NULL,
                    hopcount: 0,
                    key: b"open file".to_vec(),
                    calldata: vec![],
                }),
            ),
            (
                generation,
                Body::ReqCall(ReqCall {
                    flags: 0,
                    db_id,
                    callid: 0x1234,
                    hopcount: 0,
                    key: vec![0; MAX_KEY_LEN + 1],
                    calldata: vec![],
                }),
            ),
            (
                generation.wrapping_add(1),
                Body::ReqDmaster(ReqDmaster {
                    db_id,
                    rsn: 99,
                    dmaster: 1,
                    key: b"open file".to_vec(),
                    data: b"stale".to_vec(),
                    record_flags: 0,
                }),
            ),
            (
                generation,
                Body::ReplyDmaster(ReplyDmaster {
                    db_id,
                    rsn: 99,
                    key: b"open file".to_vec(),
                    data: b"forged".to_vec(),
                    record_flags: 0,
                }),
            ),
            (
                generation,
                Body::ReplyError(ReplyError {
                    status: -1,
                    msg: b"nobody waits for this".to_vec(),
                }),
            ),
        ];
        for (generation, body) in bodies {
            worker.peer_packet(
                1,
                Packet {
                    header: header(generation),
                    body,
                },
            );
        }
        for opcode in [
            Opcode::GET_DB_SEQNUM,
            Opcode::DB_FREEZE,
            Opcode::WIPE_DATABASE,
            Opcode::DB_PULL,
            Opcode::GETDBPATH,
        ] {
            let reply =
                worker.peer_control(1, 5, worker.view.generation, control(opcode, vec![1, 2]));
            assert_eq!(reply.map(|r| r.status), Some(-1), "opcode {}", opcode.0);
        }
        assert_eq!(
            worker.dbs[&db_id].tdb.fetch(b"open file").unwrap(),
            Some(stored)
        );
    }

    /// A tool's restore: freeze, transaction, wipe, push, confirm, commit, thaw
    /// (the steps of `ctdb restoredb` as a peer forwards them).
    #[tokio::test]
    async fn a_client_transaction_replaces_the_records_at_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        std::fs::create_dir_all(dir.path().join("volatile")).unwrap();
        let db_id = worker.attach("restore.tdb", DbKind::Volatile).unwrap();
        let old = record(b"old", 1, b"before");
        worker.dbs[&db_id]
            .tdb
            .store(&old.key, &old.data, StoreMode::Replace)
            .unwrap();
        let step = |worker: &mut Worker, opcode: Opcode, data: Vec<u8>| {
            worker
                .peer_control(1, 7, worker.view.generation, control(opcode, data))
                .expect("answered at once")
        };
        let trans = |tid| TransDb { db_id, tid }.encode();
        let push = |srvid| {
            PullDb {
                db_id,
                lmaster: 0,
                srvid,
            }
            .encode()
        };
        // Nothing before the freeze.
        assert_eq!(
            step(&mut worker, Opcode::DB_TRANSACTION_START, trans(5)).status,
            -1
        );
        assert_eq!(
            step(&mut worker, Opcode::DB_FREEZE, encode_u32(db_id)).status,
            0
        );
        assert_eq!(
            step(&mut worker, Opcode::WIPE_DATABASE, trans(5)).status,
            -1,
            "no transaction"
        );
        assert_eq!(
            step(&mut worker, Opcode::DB_TRANSACTION_START, trans(5)).status,
            0
        );
        assert_eq!(
            step(&mut worker, Opcode::WIPE_DATABASE, trans(6)).status,
            -1,
            "wrong tid"
        );
        assert_eq!(step(&mut worker, Opcode::WIPE_DATABASE, trans(5)).status, 0);
        assert_eq!(
            step(&mut worker, Opcode::DB_PUSH_START, push(0xF001)).status,
            -1
        );
        assert_eq!(
            step(&mut worker, Opcode::DB_PUSH_START, push(srvid::TOOL_PUSHDB)).status,
            0
        );
        // A record with a read-only delegation flag (the header's flags word).
        let mut delegated = record(b"a", 4, b"alpha");
        delegated.data[16..20].copy_from_slice(
            &(ltdb_flags::RO_HAVE_READONLY | ltdb_flags::MIGRATED_WITH_DATA).to_le_bytes(),
        );
        // The buffer's db_id is the backup's, not looked at.
        worker.pushed_records(&buffer(0x1234, vec![delegated, record(b"b", 2, b"beta")]));
        // A buffer that cannot be taken whole is dropped and not counted.
        let headerless = RecData {
            reqid: 0,
            key: b"c".to_vec(),
            data: b"short".to_vec(),
        };
        worker.pushed_records(&buffer(db_id, vec![record(b"d", 1, b"x"), headerless]));
        worker.pushed_records(&[0xff; 3]);
        // Nothing is in the file yet.
        assert_eq!(value_of(&worker, db_id, b"old"), Some(b"before".to_vec()));
        assert_eq!(value_of(&worker, db_id, b"a"), None);
        let confirm = step(&mut worker, Opcode::DB_PUSH_CONFIRM, encode_u32(db_id));
        assert_eq!((confirm.status, confirm.data), (0, encode_u32(2)));
        assert_eq!(
            step(&mut worker, Opcode::DB_SET_HEALTHY, encode_u32(db_id)).status,
            0
        );
        assert_eq!(
            step(&mut worker, Opcode::DB_TRANSACTION_COMMIT, trans(4)).status,
            -1
        );
        assert_eq!(
            step(&mut worker, Opcode::DB_TRANSACTION_COMMIT, trans(5)).status,
            0
        );
        assert_eq!(
            step(&mut worker, Opcode::DB_THAW, encode_u32(db_id)).status,
            0
        );
        assert!(worker.dbs[&db_id].frozen.is_none());
        assert_eq!(value_of(&worker, db_id, b"old"), None);
        assert_eq!(value_of(&worker, db_id, b"b"), Some(b"beta".to_vec()));
        let stored = worker.dbs[&db_id].tdb.fetch(b"a").unwrap().unwrap();
        let (header, value) = ltdb::decode(&stored).unwrap();
        // This node is the record's dmaster: the rsn went one up.
        assert_eq!(
            (header.rsn, header.flags, value),
            (5, ltdb_flags::MIGRATED_WITH_DATA, &b"alpha"[..])
        );
        assert_eq!(value_of(&worker, db_id, b"d"), None);
    }

    /// A restore that stops half-way (a truncated backup) changes nothing: the
    /// thaw, or the recovery that follows, drops what was kept aside.
    #[tokio::test]
    async fn a_client_transaction_that_is_not_committed_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut worker, _core, _publisher) = one_node_worker(dir.path());
        std::fs::create_dir_all(dir.path().join("persistent")).unwrap();
        let db_id = worker.attach("secrets.tdb", DbKind::Persistent).unwrap();
        let old = record(b"keep", 3, b"me");
        worker.dbs[&db_id]
            .tdb
            .store(&old.key, &old.data, StoreMode::Replace)
            .unwrap();
        let trans = TransDb { db_id, tid: 9 }.encode();
        let push = PullDb {
            db_id,
            lmaster: 0,
            srvid: srvid::TOOL_PUSHDB,
        }
        .encode();
        for (opcode, data) in [
            (Opcode::DB_FREEZE, encode_u32(db_id)),
            (Opcode::DB_TRANSACTION_START, trans.clone()),
            (Opcode::WIPE_DATABASE, trans.clone()),
            (Opcode::DB_PUSH_START, push),
        ] {
            let reply = worker
                .peer_control(1, 7, worker.view.generation, control(opcode, data))
                .unwrap();
            assert_eq!(reply.status, 0, "opcode {}", opcode.0);
        }
        worker.pushed_records(&buffer(db_id, vec![record(b"new", 1, b"x")]));
        // A commit with the push unconfirmed is refused and ends the transaction.
        let reply = worker
            .peer_control(
                1,
                7,
                worker.view.generation,
                control(Opcode::DB_TRANSACTION_COMMIT, trans.clone()),
            )
            .unwrap();
        assert_eq!(reply.status, -1);
        let reply = worker
            .peer_control(
                1,
                7,
                worker.view.generation,
                control(Opcode::DB_THAW, encode_u32(db_id)),
            )
            .unwrap();
        assert_eq!(reply.status, 0);
        assert_eq!(value_of(&worker, db_id, b"keep"), Some(b"me".to_vec()));
        assert_eq!(value_of(&worker, db_id, b"new"), None);
        // After the thaw nothing of it is left to commit.
        let reply = worker
            .peer_control(
                1,
                7,
                worker.view.generation,
                control(Opcode::DB_TRANSACTION_COMMIT, trans),
            )
            .unwrap();
        assert_eq!(reply.status, -1);
        assert_eq!(value_of(&worker, db_id, b"keep"), Some(b"me".to_vec()));
    }
}
