//! The node's state machine: membership, leader election under the recovery lock,
//! recovery, admin states, and the answers to every control and message. Sans-IO.
//!
//! # Contract
//! [`Node::handle`] takes [`Now`] (monotonic ms for timers, wall clock for display)
//! and one [`Input`], and returns [`Output`]s that the caller must carry out **in
//! order** before feeding the next input. [`Node::poll_timeout`] says when the node
//! next needs an [`Input::Tick`]; feeding ticks earlier is harmless. No I/O, clock,
//! randomness source or tokio in here: the generation numbers come from a seeded
//! generator, so a simulation with the same seed replays exactly.
//!
//! # Cluster rules (our design; DESIGN.md, "How a failover flows")
//! - A peer is connected when the transport says both TCP connections are up; it is
//!   declared dead on a closed connection or after `KeepaliveLimit` silent keepalive
//!   periods (`KeepaliveIntervalMs`, default 200 ms).
//! - Election is a race for the recovery lock (ctdb(7) "CLUSTER LOCK"): every eligible
//!   node that has no live leader tries to take it; the holder leads and broadcasts
//!   `LEADER`. Eligible = leader capability, not banned, not stopped. There is no
//!   quorum (a survivor must serve); between partitions the lock decides, so only the
//!   side holding it leads. A leader that loses its majority gives the lock up, and
//!   a node without a majority races only after a minority's wait, so that a
//!   majority, when there is one, gets the lock (`takeover`: partitions). Without a configured lock, the lowest eligible connected
//!   pnn leads (split brain is then possible, as in CTDB; a warning is logged).
//!   When the leader's connection closes, its followers race once its guardian says
//!   it is dead, or after a short wait without word (`takeover`'s docs say why).
//! - The leader runs a recovery whenever membership or flags change: a new generation
//!   and vnn map pushed to every connected node (databases will hook in here).
//! - Each node owns its own flags (disabled, stopped, banned) and pushes them to its
//!   peers; `DISCONNECTED` is each node's local view.
//! - Public addresses move in the leader's takeover runs, release before take, and
//!   are held under leases; a dead daemon's guardian tells the peers when its
//!   addresses are gone, so that a crash need not wait for the lease (see
//!   `takeover`'s docs).

mod cluster;
mod controls;
mod counters;
mod deferred;
mod events;
mod holds;
mod succession;
mod takeover;
mod tunnels;

pub use counters::{Counters, PeerCounters, GAP_BOUNDS_MS, TAKEOVER_BOUNDS_MS};
pub use events::{EventOutcome, STARTUP_RETRY_MS};

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::protocol::control::{
    capabilities, node_flags, srvid, NodeAndFlags, NodeMap, Runstate, Timeval, INVALID_GENERATION,
};
use crate::protocol::packet::{Body, Header, Packet, ReplyControl, ReqMessage, UNKNOWN_PNN};
use crate::protocol::statistics::Statistics;
use crate::tunables::Tunables;

/// The TCP port of CTDB's node-to-node transport.
pub const CTDB_PORT: u16 = 4379;

/// Request ids from here up belong to the data path (the database worker's
/// controls to other nodes); the core's own stay below.
pub const DATA_PATH_REQIDS: u32 = 0x8000_0000;

/// Identifies one connection on the Unix socket. Never 0 (CTDB reserves 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ClientId(pub u32);

/// The daemon's two clocks, passed with every input: a monotonic one for timers and
/// the wall clock for what is shown to people (`ctdb uptime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds on a monotonic clock (any origin).
    pub mono_ms: u64,
    /// Wall-clock time.
    pub wall: Timeval,
}

/// Something that happened, fed to [`Node::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A client connected; `pid` from `SO_PEERCRED`.
    ClientConnected {
        /// The new connection.
        client: ClientId,
        /// The peer's process id.
        pid: i32,
    },
    /// A client sent a well-formed packet.
    ClientPacket {
        /// Who sent it.
        client: ClientId,
        /// The decoded packet.
        packet: Packet,
    },
    /// A client's connection closed (by it, or because we dropped it).
    ClientGone {
        /// The connection.
        client: ClientId,
    },
    /// Time passed: the deadline from [`Node::poll_timeout`] was reached.
    Tick,
    /// Both TCP connections with node `pnn` are up.
    PeerConnected {
        /// The peer.
        pnn: u32,
    },
    /// A connection with node `pnn` closed; the transport reconnects by itself.
    PeerDisconnected {
        /// The peer.
        pnn: u32,
    },
    /// A well-formed packet from node `pnn`.
    PeerPacket {
        /// The peer, identified by the connection's source address.
        pnn: u32,
        /// The packet.
        packet: Packet,
    },
    /// A [`srvid::DAEMON_GONE`] message arrived from node `pnn`'s address: its
    /// guardian says the daemon is dead and its public addresses are gone. The
    /// transport passes these on at once, whether or not the link with `pnn` is up
    /// (the guardian opens a connection of its own and never makes the link whole).
    GuardianNotice {
        /// The node, identified by the connection's source address.
        pnn: u32,
        /// The whole packet, checked by the core.
        packet: Packet,
    },
    /// What became of the recovery lock after [`Output::TakeReclock`].
    Reclock(ReclockStatus),
    /// Answer to [`Output::AddAddress`].
    AddressAdded {
        /// The address.
        addr: IpAddr,
        /// Success, or why the kernel refused.
        result: Result<(), String>,
    },
    /// Answer to [`Output::RemoveAddress`].
    AddressRemoved {
        /// The address.
        addr: IpAddr,
        /// Success, or why the kernel refused.
        result: Result<(), String>,
    },
    /// Answer to [`Output::ReadPublicAddresses`].
    PublicAddresses {
        /// The token of the request.
        request: u64,
        /// The good lines (address, prefix, interfaces), or why the file is unusable.
        result: Result<Vec<(IpAddr, u8, Vec<String>)>, String>,
    },
    /// A public interface's link went up or down.
    LinkChanged {
        /// Interface name.
        iface: String,
        /// Carrier and admin state up.
        up: bool,
    },
    /// Answer to [`Output::ReadNodesFile`].
    NodesFile {
        /// The token of the request.
        request: u64,
        /// Entries (`None` = deleted line), or why the file could not be read.
        result: Result<Vec<Option<IpAddr>>, String>,
    },
    /// The database thread finished (or gave up) the recovery of the databases
    /// that [`Output::RecoverDatabases`] asked for.
    DatabasesRecovered {
        /// The generation the recovery was for.
        generation: u32,
        /// Whether every database is now the same on every node.
        ok: bool,
        /// The node whose refusal (or answer that made no sense) ended a failed
        /// run: it earns a ban credit (see `RECOVERY_FAILURES_BEFORE_BAN`).
        culprit: Option<u32>,
    },
    /// The data path saw records or a transaction that only a recovery can set
    /// right (a hand-over from a node that is not the dmaster, a persistent update
    /// a node refused): recover, or ask the leader to.
    RecoveryNeeded {
        /// What was seen, for the log.
        reason: String,
    },
    /// Answer to [`Output::RunEvent`].
    EventDone {
        /// The id of the request.
        id: u64,
        /// How it ended.
        outcome: EventOutcome,
    },
}

/// The recovery lock's state as its holder reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ReclockStatus {
    /// The lock is ours.
    Taken,
    /// Another process holds it.
    Contended,
    /// Could not try: the path is unreadable, the helper failed to start, answered
    /// garbage or timed out. Carries the reason.
    Failed(String),
    /// We held it and lost it: the holder died, the lock file was removed or replaced.
    Lost(String),
}

/// Something the caller must do, in the order returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Queue a packet to a client.
    SendToClient {
        /// Recipient.
        client: ClientId,
        /// What to send.
        packet: Packet,
    },
    /// Queue a packet to node `pnn` (dropped by the transport if not connected).
    SendToPeer {
        /// Recipient.
        pnn: u32,
        /// What to send.
        packet: Packet,
    },
    /// Tear down both connections with `pnn` (keepalives missed); the transport
    /// reconnects and reports [`Input::PeerConnected`] again when both are up.
    DropPeer {
        /// The peer.
        pnn: u32,
    },
    /// Start taking the recovery lock; the result arrives as [`Input::Reclock`].
    TakeReclock,
    /// Release the recovery lock (kill its holder). No input answers it.
    ReleaseReclock,
    /// Configure a public address on an interface; answer with
    /// [`Input::AddressAdded`]. Announce it only after [`Output::Announce`].
    AddAddress {
        /// Interface.
        iface: String,
        /// Address.
        addr: IpAddr,
        /// Prefix length.
        prefix_len: u8,
    },
    /// Remove a public address; answer with [`Input::AddressRemoved`].
    RemoveAddress {
        /// Interface.
        iface: String,
        /// Address.
        addr: IpAddr,
        /// Prefix length.
        prefix_len: u8,
    },
    /// Tell the network the address moved here (gratuitous ARP / unsolicited NA).
    Announce {
        /// Interface.
        iface: String,
        /// Address.
        addr: IpAddr,
    },
    /// Send a tickle ACK to a client of a public address we just took, so that it
    /// learns at once that its old connection is gone.
    Tickle {
        /// Our end: the public address and port.
        server: SocketAddr,
        /// The client.
        client: SocketAddr,
    },
    /// Read `public_addresses` again; answer with [`Input::PublicAddresses`].
    ReadPublicAddresses {
        /// Token to echo.
        request: u64,
    },
    /// Read the nodes file again; answer with [`Input::NodesFile`].
    ReadNodesFile {
        /// Token to echo.
        request: u64,
    },
    /// The set of nodes changed (reloadnodes): the transport must connect to these.
    SetPeers(Vec<Option<IpAddr>>),
    /// Run an event's scripts; answer with [`Input::EventDone`]. At most one event
    /// besides a monitor is asked for at a time; a monitor in progress must be
    /// cancelled (and reported [`EventOutcome::Cancelled`]) when another is asked for.
    RunEvent {
        /// Echoed in the answer.
        id: u64,
        /// The event and its arguments.
        event: crate::events::Event,
        /// Time allowed for the whole event (`EventScriptTimeout`); `None` = no limit.
        timeout_ms: Option<u64>,
    },
    /// Apply a new log level (CTDB's numeric debug level).
    SetDebugLevel(u32),
    /// A tunable was set (SET_TUNABLE): these are the current values, for the edges
    /// that use some (the tickle task, the events task's `shutdown` timeout).
    TunablesChanged(Tunables),
    /// Stop the daemon (SHUTDOWN control).
    Shutdown,
    /// This node leads a recovery: make the databases of `nodes` (this one among
    /// them) the same, then answer with [`Input::DatabasesRecovered`]. The new
    /// generation and vnn map are installed only after that.
    RecoverDatabases {
        /// The generation the recovery will install.
        generation: u32,
        /// The active connected nodes, whose databases are recovered.
        nodes: Vec<u32>,
    },
}

/// One node of the cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node number: its index in the `nodes` file.
    pub pnn: u32,
    /// Private address; `None` for a deleted (`#`) line.
    pub addr: Option<IpAddr>,
    /// `node_flags` bits as this node sees them.
    pub flags: u32,
}

/// A public address from `public_addresses` and who hosts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicAddressState {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Interfaces it may live on, in file order.
    pub ifaces: Vec<String>,
    /// Hosting node, `UNKNOWN_PNN` if none.
    pub pnn: u32,
    /// Index into `ifaces` of the interface it is on, when hosted here.
    pub active_iface: Option<usize>,
    /// Deleted from the list (delip, reloadips) but still being released.
    pub deleting: bool,
    /// Whether `pnn` really holds it is not settled: a leader's RELEASE_IP named
    /// `pnn` as its next owner, which may not have added it yet; or this node's
    /// lease lapsed or its leader changed, and any node may have dropped what it
    /// held. Settled again when a takeover run ends (IPREALLOCATED) or when this
    /// node itself adds it. Whoever must never point at an address between nodes
    /// (the DNS responder) skips these.
    pub unsettled: bool,
}

/// A public interface's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceState {
    /// Interface name.
    pub name: String,
    /// Link up.
    pub link_up: bool,
}

/// What the node is built from: configuration and facts about the process.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's pnn.
    pub pnn: u32,
    /// Every line of `nodes`: address or `None` for deleted nodes.
    pub nodes: Vec<Option<IpAddr>>,
    /// Public addresses (address, prefix, interfaces) in file order.
    pub public_addresses: Vec<(IpAddr, u8, Vec<String>)>,
    /// Tunables after `ctdb.tunables` was applied.
    pub tunables: Tunables,
    /// Initial numeric debug level.
    pub debug_level: u32,
    /// `[cluster] leader capability`.
    pub leader_capability: bool,
    /// `[legacy] lmaster capability`.
    pub lmaster_capability: bool,
    /// `[cluster] cluster lock` text, if any. Without one there is no lock to race for.
    pub cluster_lock: Option<String>,
    /// `[cluster] leader timeout`, seconds without the leader's broadcast before
    /// electing anew.
    pub leader_timeout_s: u32,
    /// `[legacy] start as disabled`.
    pub start_disabled: bool,
    /// `[legacy] start as stopped`.
    pub start_stopped: bool,
    /// The daemon's process id (GET_PID).
    pub daemon_pid: i32,
    /// Identifies this run of the daemon among all runs on this node: announced to
    /// every peer ([`srvid::INCARNATION`]) and named by the guardian's notice when
    /// this run dies. Chosen at random at start.
    pub incarnation: u64,
    /// Seed of the generation-number generator.
    pub seed: u64,
    /// When the daemon started.
    pub start: Now,
}

#[derive(Debug, Clone, Default)]
struct ClientInfo {
    pid: i32,
    srvids: BTreeSet<u64>,
}

/// This node's view of one peer link.
#[derive(Debug, Clone, Default)]
struct PeerLink {
    connected: bool,
    /// When the last packet from it arrived (monotonic ms).
    last_heard_ms: u64,
    /// Its nodes file differs from ours (reported once per connection).
    nodes_differ: bool,
    /// The incarnation it announced on this connection. Kept after the link goes
    /// down: a guardian notice must name it (see `takeover`).
    incarnation: Option<u64>,
    /// Its guardian confirmed that this incarnation's daemon is dead: it competes
    /// for nothing until it connects again (counted out of the majority).
    daemon_gone: bool,
    /// The incarnation announced on the connection before this one: what a notice
    /// must name if this connection goes without announcing one (see `takeover`).
    previous_incarnation: Option<u64>,
    /// A notice that came while this connection was up but had announced nothing:
    /// judged again if the connection goes without an announcement.
    pending_notice: Option<Packet>,
}

/// Who asked for a control, so the reply can go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requester {
    Client(ClientId),
    Peer(u32),
    /// This node's own takeover run, calling its own controls.
    Local,
}

/// What a deferred reply is for (`deferred`): one variant per kind of answer
/// that comes later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A client's control forwarded to a peer: the peer's reply goes to the client.
    Forwarded,
    /// Our own check that a peer's nodes file matches ours.
    NodesCheck,
    /// A control of the leader's takeover run `run`, to a peer or to this node
    /// (whose own reply may come later: an address change).
    Takeover { run: u64 },
    /// GET_NODES_FILE or (`reload`) RELOAD_NODES_FILE, waiting for the edge to
    /// read the nodes file ([`Input::NodesFile`] echoes the id).
    NodesFile { reload: bool },
    /// RELOAD_PUBLIC_IPS, waiting for the edge to read `public_addresses`
    /// ([`Input::PublicAddresses`] echoes the id).
    PublicAddresses,
    /// RELEASE_IP or TAKEOVER_IP, waiting for the address change and its event
    /// (the address operation and then the event keep the id).
    AddressChange,
}

/// State of our attempt to hold the recovery lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LockState {
    /// No lock is configured.
    NotConfigured,
    /// Not held, not being taken.
    Idle,
    /// [`Output::TakeReclock`] sent, no answer yet.
    Taking,
    /// Held.
    Held,
}

/// All of one node's state. See the module docs.
#[derive(Debug)]
pub struct Node {
    pnn: u32,
    nodes: Vec<NodeInfo>,
    peers: BTreeMap<u32, PeerLink>,
    now: Now,
    generation: u32,
    vnn_map: Vec<u32>,
    /// A recovery waiting for the databases before its vnn map is installed.
    database_recovery: Option<cluster::DatabaseRecovery>,
    /// Tunnel ids registered on this node, and by whom (`tunnels`).
    tunnels: BTreeMap<u64, ClientId>,
    recovery_mode: u32,
    runstate: Runstate,
    leader: Option<u32>,
    /// The last leader other than ourselves that we followed (kept when it is lost):
    /// whether it is known dead decides a new leader's guards (see `takeover`).
    last_leader: Option<u32>,
    leader_heard_ms: u64,
    leader_timeout_ms: u64,
    leader_capability: bool,
    lock: LockState,
    lock_failures: u32,
    /// A TakeReclock whose answer has not come (a Lost may overtake it). The
    /// shortcuts that race before the pause after an attempt is over wait for it:
    /// a late answer would be taken for the new attempt's.
    take_unanswered: bool,
    next_election_ms: u64,
    next_keepalive_ms: u64,
    /// Next check for silent peers: five per keepalive period, so that a silent
    /// node is declared dead within a fifth of a period of its limit.
    next_liveness_ms: u64,
    next_leader_broadcast_ms: u64,
    banned_until_ms: Option<u64>,
    tunables: Tunables,
    debug_level: u32,
    capabilities: u32,
    cluster_lock: Option<String>,
    public_ips: Vec<PublicAddressState>,
    ifaces: Vec<IfaceState>,
    daemon_pid: i32,
    start_time: Timeval,
    last_recovery_started: Timeval,
    last_recovery_finished: Timeval,
    clients: BTreeMap<ClientId, ClientInfo>,
    /// Every reply given later, by request id.
    deferred: deferred::Deferred<Purpose>,
    next_reqid: u32,
    rng: u64,
    /// Leader only: when each node last caused a recovery by (re)joining, within
    /// `RecoveryBanPeriod`. A node that keeps doing it is banned.
    recovery_causes: BTreeMap<u32, Vec<u64>>,
    /// Leader only: how many database recoveries in a row each node made fail
    /// (refused or garbled a step) since the last one that succeeded.
    recovery_failures: BTreeMap<u32, u32>,
    /// Until when our lease lets us hold public addresses (followers).
    lease_until_ms: u64,
    /// Follower: lease requests not yet granted, seq → (leader asked, when sent).
    lease_requests: BTreeMap<u64, (u32, u64)>,
    next_lease_seq: u64,
    next_lease_request_ms: u64,
    /// Leader: until when the leases granted to each node may last: ours (request
    /// received + lease length) and, for a connected node that a dead predecessor's
    /// leases spared from our election guard, that predecessor's (our election + a
    /// lease). A lost node's guard counts from here.
    lease_granted_until: BTreeMap<u32, u64>,
    /// Since when this node has been connected to no majority of the nodes (with a
    /// lock configured): it may race for the lock only `minority_race_delay` later.
    minority_since_ms: Option<u64>,
    /// This node has been connected to a majority since it started.
    seen_majority: bool,
    /// Our lease ran out and we dropped addresses; the next leader we hear must
    /// place them again.
    lease_lapsed: bool,
    /// Holds: a leaderless majority keeps its addresses (`holds`).
    holds: holds::Holds,
    /// Follower: the leader we follow and the stamp of its last lease grant, echoed
    /// by our next request.
    last_grant_stamp: Option<(u32, u64)>,
    /// Leader: lease guards, pnn → until when that node may still hold addresses
    /// (monotonic ms). No takeover run while one is pending (see `takeover`).
    lease_guards: BTreeMap<u32, u64>,
    /// When this daemon started (monotonic ms): an unbacked leader's wait counts
    /// from here at the earliest (`succession`).
    started_ms: u64,
    /// Leader: the latest stamp of ours each follower echoed (`succession`).
    echoed_stamps: BTreeMap<u32, u64>,
    /// Until when this node, leading, is backed by its followers' echoes; the end
    /// of its last backing once that has passed (never lowered while it runs).
    backing_until_ms: u64,
    /// Every node: per leader heard, when we last received a grant from it, and a
    /// backed one (`succession`).
    grant_receipts: BTreeMap<u32, succession::Receipt>,
    /// Leader: the predecessor's succession, while it may lower election guards.
    successor: Option<succession::Successor>,
    /// Nodes whose guardian notice was confirmed during the lock attempt in progress:
    /// if it makes us leader, they get no election guard.
    gone_during_election: BTreeSet<u32>,
    /// This run of the daemon (see [`NodeConfig::incarnation`]).
    incarnation: u64,
    takeover: Option<takeover::TakeoverRun>,
    takeover_wanted: bool,
    takeover_ids: u64,
    takeover_not_before_ms: u64,
    takeover_requesters: Vec<crate::protocol::control::SrvidMessage>,
    rebalance_nodes: BTreeSet<u32>,
    /// Address adds and removes in progress, with the ids of the deferred replies
    /// waiting on them.
    address_ops: BTreeMap<IpAddr, takeover::AddressOp>,
    /// No takeover runs before this (DISABLE_TAKEOVER_RUNS, DISABLE_IP_CHECK).
    takeover_disabled_until_ms: u64,
    /// Client connections to public addresses, by address (tickle lists).
    tickles: BTreeMap<IpAddr, BTreeSet<crate::protocol::control::Connection>>,
    /// Connections each local client registered (TCP_CLIENT), forgotten when it goes.
    client_conns: BTreeMap<ClientId, Vec<crate::protocol::control::Connection>>,
    /// Event scripts: what runs, what is waiting, the monitor's rhythm.
    events: events::EventSchedule,
    stats: Statistics,
    counters: Counters,
    /// GET_STAT_HISTORY: one entry per `StatHistoryInterval`, newest first.
    stat_history: std::collections::VecDeque<Statistics>,
    /// `stats` when the last history entry was taken: the next entry is the
    /// difference.
    stat_base: Statistics,
    stat_interval_start: Timeval,
    next_stat_history_ms: u64,
}

impl Node {
    /// A node that has just started: every other node DISCONNECTED|UNHEALTHY, itself
    /// UNHEALTHY and in FIRST_RECOVERY until a leader has recovered the cluster (then
    /// the `startup` event and the first monitor; see `events`).
    pub fn new(config: NodeConfig) -> Self {
        // UNHEALTHY until the first monitor event succeeds, as in CTDB.
        let mut own_flags = node_flags::UNHEALTHY;
        if config.start_disabled {
            own_flags |= node_flags::PERMANENTLY_DISABLED;
        }
        if config.start_stopped {
            own_flags |= node_flags::STOPPED;
        }
        let nodes = config
            .nodes
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let pnn = i as u32;
                let flags = match addr {
                    None => node_flags::DELETED | node_flags::DISCONNECTED,
                    Some(_) if pnn == config.pnn => own_flags,
                    Some(_) => node_flags::DISCONNECTED | node_flags::UNHEALTHY,
                };
                NodeInfo {
                    pnn,
                    addr: *addr,
                    flags,
                }
            })
            .collect();
        // CTDB keeps interfaces in reverse order of first appearance (§6.6).
        let mut ifaces: Vec<IfaceState> = Vec::new();
        for (_, _, names) in &config.public_addresses {
            for name in names {
                if !ifaces.iter().any(|i| &i.name == name) {
                    ifaces.insert(
                        0,
                        IfaceState {
                            name: name.clone(),
                            link_up: true,
                        },
                    );
                }
            }
        }
        let public_ips = config
            .public_addresses
            .iter()
            .map(|(addr, prefix_len, ifaces)| PublicAddressState {
                addr: *addr,
                prefix_len: *prefix_len,
                ifaces: ifaces.clone(),
                pnn: UNKNOWN_PNN,
                active_iface: None,
                deleting: false,
                unsettled: false,
            })
            .collect();
        let mut caps = capabilities::DEFAULT;
        if !config.leader_capability {
            caps &= !capabilities::RECMASTER;
        }
        if !config.lmaster_capability {
            caps &= !capabilities::LMASTER;
        }
        let peers = config
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, a)| a.is_some() && *i as u32 != config.pnn)
            .map(|(i, _)| (i as u32, PeerLink::default()))
            .collect();
        let now = config.start;
        Self {
            pnn: config.pnn,
            nodes,
            peers,
            now,
            generation: INVALID_GENERATION,
            vnn_map: vec![config.pnn],
            database_recovery: None,
            tunnels: BTreeMap::new(),
            recovery_mode: 0,
            runstate: Runstate::FirstRecovery,
            leader: None,
            last_leader: None,
            leader_heard_ms: now.mono_ms,
            leader_timeout_ms: u64::from(config.leader_timeout_s.max(1)) * 1000,
            leader_capability: config.leader_capability,
            lock: if config.cluster_lock.is_some() {
                LockState::Idle
            } else {
                LockState::NotConfigured
            },
            lock_failures: 0,
            take_unanswered: false,
            next_election_ms: now.mono_ms,
            next_keepalive_ms: now.mono_ms + config.tunables.keepalive_interval_ms(),
            next_liveness_ms: now.mono_ms,
            next_leader_broadcast_ms: now.mono_ms,
            banned_until_ms: None,
            tunables: config.tunables,
            debug_level: config.debug_level,
            capabilities: caps,
            cluster_lock: config.cluster_lock,
            public_ips,
            ifaces,
            daemon_pid: config.daemon_pid,
            start_time: now.wall,
            last_recovery_started: now.wall,
            last_recovery_finished: now.wall,
            clients: BTreeMap::new(),
            deferred: deferred::Deferred::default(),
            next_reqid: 1,
            // xorshift must not start at 0.
            rng: config.seed | 1,
            recovery_causes: BTreeMap::new(),
            recovery_failures: BTreeMap::new(),
            lease_until_ms: 0,
            lease_requests: BTreeMap::new(),
            next_lease_seq: 1,
            next_lease_request_ms: 0,
            lease_granted_until: BTreeMap::new(),
            minority_since_ms: None,
            seen_majority: false,
            lease_lapsed: false,
            lease_guards: BTreeMap::new(),
            started_ms: now.mono_ms,
            echoed_stamps: BTreeMap::new(),
            backing_until_ms: 0,
            grant_receipts: BTreeMap::new(),
            successor: None,
            holds: holds::Holds::default(),
            last_grant_stamp: None,
            gone_during_election: BTreeSet::new(),
            incarnation: config.incarnation,
            takeover: None,
            takeover_wanted: false,
            takeover_ids: 0,
            takeover_not_before_ms: 0,
            takeover_requesters: Vec::new(),
            rebalance_nodes: BTreeSet::new(),
            address_ops: BTreeMap::new(),
            takeover_disabled_until_ms: 0,
            tickles: BTreeMap::new(),
            client_conns: BTreeMap::new(),
            events: events::EventSchedule::default(),
            stats: Statistics {
                statistics_start_time: now.wall,
                ..Default::default()
            },
            counters: Counters::default(),
            stat_history: std::collections::VecDeque::new(),
            stat_base: Statistics::default(),
            stat_interval_start: now.wall,
            next_stat_history_ms: now.mono_ms + 1000,
        }
    }

    /// This node's pnn.
    pub fn pnn(&self) -> u32 {
        self.pnn
    }

    /// The leader this node believes in.
    pub fn leader(&self) -> Option<u32> {
        self.leader
    }

    /// Whether this node believes it is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader == Some(self.pnn)
    }

    /// The vnn map: the lmaster-capable active nodes, in the leader's order.
    pub fn vnn_map(&self) -> &[u32] {
        &self.vnn_map
    }

    /// The vnn-map generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The recovery lock's state.
    pub fn lock_state(&self) -> LockState {
        self.lock
    }

    /// Flags of node `pnn` as this node sees them.
    pub fn flags_of(&self, pnn: u32) -> Option<u32> {
        self.nodes.get(pnn as usize).map(|n| n.flags)
    }

    /// The public addresses this node has configured on its interfaces.
    pub fn hosted_addresses(&self) -> Vec<IpAddr> {
        self.public_ips
            .iter()
            .filter(|ip| ip.active_iface.is_some())
            .map(|ip| ip.addr)
            .collect()
    }

    /// Whether a takeover run is under way or wanted (leader).
    pub fn takeover_pending(&self) -> bool {
        self.takeover.is_some() || self.takeover_wanted
    }

    /// Whether the transport link with `pnn` is up in this node's view.
    pub fn is_connected(&self, pnn: u32) -> bool {
        self.peers.get(&pnn).is_some_and(|p| p.connected)
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Every node of the node map with its flags as this node sees them.
    pub fn node_infos(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The public addresses and who hosts each, as this node knows it.
    pub fn public_addresses(&self) -> &[PublicAddressState] {
        &self.public_ips
    }

    /// The run state (`ctdb runstate`).
    pub fn runstate(&self) -> Runstate {
        self.runstate
    }

    /// 0 normal, 1 recovery (`ctdb status`'s recovery mode).
    pub fn recovery_mode(&self) -> u32 {
        self.recovery_mode
    }

    /// What the node has counted since it started.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Until when (monotonic ms) this node may hold public addresses: its lease,
    /// as its leader last granted it. `None`: no limit, this node is the leader
    /// and holds the recovery lock (or none is configured). Every follower of the
    /// same leader has about the same lease, so past it the addresses of the other
    /// nodes are in doubt too.
    pub fn lease_until_ms(&self) -> Option<u64> {
        if self.is_leader() {
            (!self.lease_valid()).then_some(0)
        } else {
            Some(self.lease_until_ms.max(self.holds.until_ms))
        }
    }

    /// `IPLeaseTimeMs`.
    pub fn ip_lease_ms(&self) -> u64 {
        self.lease_ms()
    }

    /// The tunables as they are now.
    pub fn tunables(&self) -> &Tunables {
        &self.tunables
    }

    /// The keepalive period in ms (`KeepaliveIntervalMs`, or `KeepaliveInterval`).
    pub fn keepalive_interval_ms(&self) -> u64 {
        self.tunables.keepalive_interval_ms()
    }

    /// When (monotonic ms) each connected peer was last heard from.
    pub fn peers_last_heard_ms(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.peers
            .iter()
            .filter(|(_, link)| link.connected)
            .map(|(pnn, link)| (*pnn, link.last_heard_ms))
    }

    /// When the node next needs [`Input::Tick`] (monotonic ms).
    pub fn poll_timeout(&self) -> u64 {
        let mut t = self
            .next_keepalive_ms
            .min(self.next_leader_broadcast_ms)
            .min(self.next_liveness_ms);
        if self.lock == LockState::Idle && self.race_allowed_at() > self.now.mono_ms {
            t = t.min(self.race_allowed_at());
        }
        if let Some(b) = self.banned_until_ms {
            t = t.min(b);
        }
        if let Some(d) = self.deferred.next_deadline() {
            t = t.min(d);
        }
        if let Some(r) = &self.database_recovery {
            t = t.min(r.deadline_ms);
        }
        // A silent leader must be noticed even when nothing else happens.
        if self.leader.is_some_and(|l| l != self.pnn) {
            t = t.min(self.leader_heard_ms + self.leader_timeout_ms + 1);
        }
        if let Some(a) = self.address_timeout() {
            t = t.min(a);
        }
        if let Some(e) = self.events.timeout(self.runstate) {
            t = t.min(e);
        }
        t.min(self.next_stat_history_ms)
    }

    /// Feeds one input; returns what to do, in order. See the module docs.
    pub fn handle(&mut self, now: Now, input: Input) -> Vec<Output> {
        // The monotonic clock never goes back, even if a caller's does.
        self.now = Now {
            mono_ms: now.mono_ms.max(self.now.mono_ms),
            wall: now.wall,
        };
        let mut out = Vec::new();
        let leader_before = self.leader;
        match input {
            Input::ClientConnected { client, pid } => {
                self.clients.insert(
                    client,
                    ClientInfo {
                        pid,
                        srvids: BTreeSet::new(),
                    },
                );
            }
            Input::ClientGone { client } => {
                self.clients.remove(&client);
                self.tunnels_of_gone_client(client);
                self.client_connections_gone(client, &mut out);
            }
            Input::ClientPacket { client, packet } => {
                if self.clients.contains_key(&client) {
                    self.stats.client_packets_recv = self.stats.client_packets_recv.wrapping_add(1);
                    self.client_packet(client, packet, &mut out);
                }
            }
            Input::Tick => self.timers(&mut out),
            Input::PeerConnected { pnn } => self.peer_connected(pnn, &mut out),
            Input::PeerDisconnected { pnn } => self.peer_disconnected(pnn, false, &mut out),
            Input::PeerPacket { pnn, packet } => self.peer_packet(pnn, packet, &mut out),
            Input::GuardianNotice { pnn, packet } => self.guardian_notice(pnn, packet),
            Input::Reclock(status) => self.reclock_status(status, &mut out),
            Input::NodesFile { request, result } => self.nodes_file_read(request, result, &mut out),
            Input::AddressAdded { addr, result } => self.address_done(addr, true, result, &mut out),
            Input::AddressRemoved { addr, result } => {
                self.address_done(addr, false, result, &mut out)
            }
            Input::LinkChanged { iface, up } => self.link_changed(&iface, up, &mut out),
            Input::PublicAddresses { request, result } => {
                self.public_addresses_read(request, result, &mut out)
            }
            Input::EventDone { id, outcome } => self.event_done(id, outcome, &mut out),
            Input::DatabasesRecovered {
                generation,
                ok,
                culprit,
            } => self.databases_recovered(generation, ok, culprit, &mut out),
            Input::RecoveryNeeded { reason } => {
                tracing::warn!(%reason, "the data path asks for a recovery");
                self.recovery_requested(&mut out);
            }
        }
        self.election_check(&mut out);
        if self.leader != leader_before {
            // What the other nodes hold was settled under the previous leader; the
            // next one's first run settles it again.
            for ip in &mut self.public_ips {
                ip.unsettled = true;
            }
        }
        self.address_timers(&mut out);
        self.drive_events(&mut out);
        self.stat_history_timer();
        let sent = out
            .iter()
            .filter(|o| matches!(o, Output::SendToClient { .. }))
            .count() as u32;
        self.stats.client_packets_sent = self.stats.client_packets_sent.wrapping_add(sent);
        out
    }

    /// The next pseudo-random u32 (xorshift64*): generations only need to differ.
    fn random_u32(&mut self) -> u32 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    fn node_map(&self) -> NodeMap {
        NodeMap {
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeAndFlags {
                    pnn: n.pnn,
                    flags: n.flags,
                    addr: SocketAddr::new(
                        n.addr
                            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                        CTDB_PORT,
                    ),
                })
                .collect(),
        }
    }

    fn own_flags(&self) -> u32 {
        self.nodes[self.pnn as usize].flags
    }

    /// The id of a control this node sends. The core's ids stay below
    /// [`DATA_PATH_REQIDS`], so that the edges can send every reply to the task that
    /// asked.
    fn allocate_reqid(&mut self) -> u32 {
        let reqid = self.next_reqid;
        self.next_reqid = (self.next_reqid + 1) % DATA_PATH_REQIDS;
        self.next_reqid = self.next_reqid.max(1);
        reqid
    }

    fn header(&self, destnode: u32, reqid: u32) -> Header {
        Header {
            generation: self.generation,
            destnode,
            srcnode: self.pnn,
            reqid,
        }
    }

    fn message_packet(&self, destnode: u32, msg_srvid: u64, data: Vec<u8>) -> Packet {
        Packet {
            header: self.header(destnode, 0),
            body: Body::ReqMessage(ReqMessage {
                srvid: msg_srvid,
                data,
            }),
        }
    }

    /// Delivers a message to the local clients registered for its srvid or for ALL.
    fn deliver_to_clients(&self, msg_srvid: u64, data: &[u8], out: &mut Vec<Output>) {
        for (client, info) in &self.clients {
            if info.srvids.contains(&msg_srvid) || info.srvids.contains(&srvid::ALL) {
                out.push(Output::SendToClient {
                    client: *client,
                    packet: self.message_packet(0, msg_srvid, data.to_vec()),
                });
            }
        }
    }

    fn reply_ok(data: Vec<u8>) -> ReplyControl {
        ReplyControl {
            status: 0,
            data,
            error: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
