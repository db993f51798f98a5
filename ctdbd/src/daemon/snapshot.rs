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

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::core::{Counters, Node, NodeInfo, PublicAddressState};
use crate::protocol::control::Runstate;
use crate::protocol::packet::UNKNOWN_PNN;

/// A copy of the node's state after one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// This node's pnn.
    pub pnn: u32,
    /// The leader this node follows, if any.
    pub leader: Option<u32>,
    /// The vnn-map generation.
    pub generation: u32,
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
}

impl Snapshot {
    /// Copies what readers need out of `node`.
    pub fn of(node: &Node) -> Self {
        Self {
            pnn: node.pnn(),
            leader: node.leader(),
            generation: node.generation(),
            recovery_mode: node.recovery_mode(),
            runstate: node.runstate(),
            nodes: node.node_infos().to_vec(),
            public_addresses: node.public_addresses().to_vec(),
            clients: node.client_count(),
            counters: node.counters().clone(),
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

    /// The public addresses a client may be sent to now: hosted by a node that is
    /// healthy in this node's view, and not on their way to another node (a
    /// leader's run has named the new owner, which may not hold it yet). In the
    /// order of `public_addresses`.
    pub fn addresses_on_healthy_nodes(&self) -> Vec<IpAddr> {
        self.public_addresses
            .iter()
            .filter(|ip| ip.pnn != UNKNOWN_PNN && !ip.moving && !ip.deleting)
            .filter(|ip| self.node_ok(ip.pnn))
            // What this node holds it knows for sure; for the others it goes by
            // the last takeover run, which it followed.
            .filter(|ip| ip.pnn != self.pnn || ip.active_iface.is_some())
            .map(|ip| ip.addr)
            .collect()
    }
}

/// The core task's end: publishes a snapshot after each input, if anyone reads.
#[derive(Debug)]
pub struct Publisher(watch::Sender<Arc<Snapshot>>);

/// A reader's end.
pub type Snapshots = watch::Receiver<Arc<Snapshot>>;

impl Publisher {
    /// A publisher starting from `node`'s state.
    pub fn new(node: &Node) -> Self {
        Self(watch::Sender::new(Arc::new(Snapshot::of(node))))
    }

    /// A new reader.
    pub fn subscribe(&self) -> Snapshots {
        self.0.subscribe()
    }

    /// Publishes `node`'s state, unless nobody reads it.
    pub fn publish(&self, node: &Node) {
        if self.0.receiver_count() > 0 {
            self.0.send_replace(Arc::new(Snapshot::of(node)));
        }
    }
}

/// The newest snapshot (the channel's lock is held only for the clone).
pub fn latest(snapshots: &Snapshots) -> Arc<Snapshot> {
    snapshots.borrow().clone()
}
