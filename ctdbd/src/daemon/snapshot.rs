//! The node's state as readers outside the core task see it: a copy the core task
//! publishes after every input, which the metrics endpoint and the DNS responder
//! (and later the database owners) read whenever they like.
//!
//! ```text
//!   core task ── handle(input) ── Snapshot::of(&node) ──> watch channel
//!                                                            │ borrow + Arc clone
//!                           metrics endpoint, DNS responder <┘ (never the core)
//! ```
//!
//! The core never waits for a reader: the channel keeps only the newest snapshot,
//! and a reader holds the channel's lock only to clone an [`Arc`]. Nothing is built
//! while nobody subscribes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::core::{Counters, Node, NodeInfo, PublicAddressState};
use crate::db::readonly::StickyTunables;
use crate::protocol::control::Runstate;
use crate::protocol::packet::UNKNOWN_PNN;
use crate::tunables::{keys, Tunables};

/// How long before this node's lease runs out it stops counting on any node's
/// addresses: the followers of one leader renew their leases on the same broadcast,
/// which reaches them up to this much apart (core::takeover's lease margin).
pub const LEASE_MARGIN: Duration = Duration::from_millis(200);

/// A copy of the node's state after one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// This node's pnn.
    pub pnn: u32,
    /// The leader this node follows, if any.
    pub leader: Option<u32>,
    /// The vnn-map generation.
    pub generation: u32,
    /// The lmaster-capable active nodes (GETVNNMAP), where records' lmasters are.
    pub vnn_map: Vec<u32>,
    /// 0 normal, 1 recovery.
    pub recovery_mode: u32,
    /// This node's run state.
    pub runstate: Runstate,
    /// Every node with its flags as this node sees them.
    pub nodes: Vec<NodeInfo>,
    /// Every public address with its hosting node as this node knows it.
    pub public_addresses: Vec<PublicAddressState>,
    /// Connected clients on the Unix socket.
    pub clients: usize,
    /// The core's counters.
    pub counters: Counters,
    /// Until when this node may hold public addresses (its lease); `None`: no
    /// limit (the leader, holding the recovery lock).
    pub lease_until: Option<Instant>,
    /// When each connected peer was last heard from.
    pub peers_heard: BTreeMap<u32, Instant>,
    /// Longest silence of a peer after which its addresses are in doubt: it may
    /// have been cut off from the leader too, and its lease run out.
    pub peer_silence_limit: Duration,
    /// How the database thread vacuums.
    pub vacuum: VacuumTunables,
    /// How the database thread treats records of sticky databases.
    pub sticky: StickyTunables,
    /// `ControlTimeout`: how long the database thread waits for another node's
    /// answer to a control of its own (a revocation's UPDATE_RECORD).
    pub control_timeout: Duration,
    /// `AllowClientDBAttach`: 0, local clients may not attach databases; 1,
    /// they may, and no database may be detached (as 4.17 compares it).
    pub allow_client_db_attach: u32,
    /// `RecBufferSizeLimit`: the largest batch of records a recovery sends
    /// as one message, in bytes.
    pub rec_buffer_size_limit: u32,
}

/// The vacuuming tunables, for the database thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VacuumTunables {
    /// Between two runs of one database (`VacuumInterval`; zero: never).
    pub interval: Duration,
    /// How long a run may wait for the other nodes (`VacuumMaxRunTime`).
    pub max_run_time: Duration,
    /// Every this many runs, one also looks at every record
    /// (`VacuumFastPathCount`).
    pub full_every: u32,
    /// A run's file is repacked when its free list has at least this many
    /// entries (`RepackLimit`; zero: never).
    pub repack_limit: u32,
}

impl VacuumTunables {
    /// The values of `tunables`.
    pub fn of(tunables: &Tunables) -> Self {
        Self {
            interval: Duration::from_secs(tunables.value(keys::VACUUM_INTERVAL).into()),
            max_run_time: Duration::from_secs(tunables.value(keys::VACUUM_MAX_RUN_TIME).into()),
            full_every: tunables.value(keys::VACUUM_FAST_PATH_COUNT),
            repack_limit: tunables.value(keys::REPACK_LIMIT),
        }
    }
}

/// The sticky-record tunables in `tunables`.
pub fn sticky_tunables(tunables: &Tunables) -> StickyTunables {
    StickyTunables {
        make_sticky_hops: tunables.value(keys::HOPCOUNT_MAKE_STICKY),
        duration: Duration::from_secs(tunables.value(keys::STICKY_DURATION).into()),
        pindown: Duration::from_millis(tunables.value(keys::STICKY_PINDOWN).into()),
    }
}

impl Default for VacuumTunables {
    /// CTDB 4.17's defaults.
    fn default() -> Self {
        Self::of(&Tunables::default())
    }
}

impl Snapshot {
    /// Copies what readers need out of `node`; `instant` turns the core's
    /// monotonic milliseconds into [`Instant`]s.
    pub fn of(node: &Node, instant: &dyn Fn(u64) -> Instant) -> Self {
        let lease_ms = node.ip_lease_ms();
        let keepalive_ms = node.keepalive_interval_ms();
        let margin_ms = LEASE_MARGIN.as_millis() as u64;
        // A peer heard within its lease (less the margin) cannot have lost it
        // unheard, as long as its keepalives come more often than that; with
        // longer keepalive periods, two periods of silence is the best sign there
        // is.
        let silence_ms = if keepalive_ms * 3 / 2 <= lease_ms.saturating_sub(margin_ms) {
            lease_ms - margin_ms
        } else {
            2 * keepalive_ms
        };
        Self {
            lease_until: node.lease_until_ms().map(instant),
            peers_heard: node
                .peers_last_heard_ms()
                .map(|(pnn, ms)| (pnn, instant(ms)))
                .collect(),
            peer_silence_limit: Duration::from_millis(silence_ms),
            pnn: node.pnn(),
            leader: node.leader(),
            generation: node.generation(),
            vnn_map: node.vnn_map().to_vec(),
            recovery_mode: node.recovery_mode(),
            runstate: node.runstate(),
            nodes: node.node_infos().to_vec(),
            public_addresses: node.public_addresses().to_vec(),
            clients: node.client_count(),
            counters: node.counters().clone(),
            vacuum: VacuumTunables::of(node.tunables()),
            sticky: sticky_tunables(node.tunables()),
            control_timeout: Duration::from_secs(
                node.tunables().value(keys::CONTROL_TIMEOUT).into(),
            ),
            allow_client_db_attach: node.tunables().value(keys::ALLOW_CLIENT_DB_ATTACH),
            rec_buffer_size_limit: node.tunables().value(keys::REC_BUFFER_SIZE_LIMIT),
        }
    }

    /// The addresses configured on this node's interfaces.
    pub fn held_here(&self) -> impl Iterator<Item = &PublicAddressState> {
        self.public_addresses
            .iter()
            .filter(|ip| ip.active_iface.is_some())
    }

    /// Whether node `pnn` is healthy as this node sees it: no flag at all (not
    /// disconnected, unhealthy, disabled, banned, stopped or deleted).
    pub fn node_ok(&self, pnn: u32) -> bool {
        self.nodes.get(pnn as usize).is_some_and(|n| n.flags == 0)
    }

    /// The public addresses a client may be sent to at `now`: hosted by a node
    /// that is healthy in this node's view, not on their way to another node (a
    /// leader's run has named the new owner, which may not hold it yet), and not in
    /// doubt: none at all once this node's lease is about to run out (every
    /// follower of the same leader drops its addresses then), and none of a peer
    /// silent for longer than [`Snapshot::peer_silence_limit`]. In the order of
    /// `public_addresses`.
    pub fn addresses_on_healthy_nodes(&self, now: Instant) -> Vec<IpAddr> {
        if self
            .lease_until
            .is_some_and(|until| now + LEASE_MARGIN >= until)
        {
            return Vec::new();
        }
        let heard_lately = |pnn: u32| {
            self.peers_heard.get(&pnn).is_some_and(|heard| {
                now.saturating_duration_since(*heard) < self.peer_silence_limit
            })
        };
        self.public_addresses
            .iter()
            .filter(|ip| ip.pnn != UNKNOWN_PNN && !ip.unsettled && !ip.deleting)
            .filter(|ip| self.node_ok(ip.pnn))
            // What this node holds it knows for sure; for the others it goes by
            // the last takeover run, which it followed, while they keep talking.
            .filter(|ip| {
                if ip.pnn == self.pnn {
                    ip.active_iface.is_some()
                } else {
                    heard_lately(ip.pnn)
                }
            })
            .map(|ip| ip.addr)
            .collect()
    }
}

/// The core task's end: publishes a snapshot after each input, if anyone reads.
#[derive(Debug)]
pub struct Publisher {
    sender: watch::Sender<Arc<Snapshot>>,
    /// The instant the core's monotonic clock counts from.
    origin: Instant,
}

/// A reader's end.
pub type Snapshots = watch::Receiver<Arc<Snapshot>>;

impl Publisher {
    /// A publisher starting from `node`'s state; the core's monotonic clock
    /// counts milliseconds from `origin`.
    pub fn new(node: &Node, origin: Instant) -> Self {
        let instant = move |ms| origin + Duration::from_millis(ms);
        Self {
            sender: watch::Sender::new(Arc::new(Snapshot::of(node, &instant))),
            origin,
        }
    }

    /// A new reader.
    pub fn subscribe(&self) -> Snapshots {
        self.sender.subscribe()
    }

    /// Publishes `node`'s state, unless nobody reads it.
    pub fn publish(&self, node: &Node) {
        if self.sender.receiver_count() > 0 {
            let origin = self.origin;
            let instant = move |ms| origin + Duration::from_millis(ms);
            self.sender
                .send_replace(Arc::new(Snapshot::of(node, &instant)));
        }
    }
}

/// The newest snapshot (the channel's lock is held only for the clone).
pub fn latest(snapshots: &Snapshots) -> Arc<Snapshot> {
    snapshots.borrow().clone()
}
