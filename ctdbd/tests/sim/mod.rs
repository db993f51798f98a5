//! A deterministic cluster: N cores (`ctdbd::core::Node`) on one simulated clock,
//! wired through a simulated network and a simulated recovery lock.
//!
//! ```text
//!   Node 0 ──┐                     ┌── Lock arbiter: one holder; a crashed holder
//!   Node 1 ──┼── Network: latency, │   releases at once (the holder process dies
//!   ...      │   partitions, per-  │   with its daemon); "lock file removed" makes
//!   Node N ──┘   side link views   └── the holder see Lost.
//! ```
//!
//! Time jumps to the next thing that happens: a packet delivery, a node's timer
//! (`poll_timeout`), a lock answer, a reconnect attempt. Everything random comes from
//! the seed, so a failing run replays exactly. After every event the safety
//! invariants are checked ([`Sim::check_safety`]): at most one node believes it
//! leads, with a lock configured the leader is the lock's holder, and no public
//! address is on two live nodes; without a lock only once the cluster is healed.
//!
//! A crashed daemon's guardian is modelled too: the crash removes the node's
//! addresses at once, and the guardian's DAEMON_GONE notice reaches every peer that
//! can talk to the crashed node's machine, one network latency later (a partition in
//! between loses it). A power loss removes the addresses with the machine and tells
//! nobody.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ctdbd::core::{
    ClientId, EventOutcome, Input, LockState, Node, NodeConfig, Now, Output, ReclockStatus,
};
use ctdbd::events::EventKind;
use ctdbd::protocol::control::{
    node_flags, srvid, BanState, DaemonGone, Opcode, Timeval, INVALID_GENERATION,
};
use ctdbd::protocol::packet::{Body, Header, Packet, ReqControl, ReqMessage, CURRENT_NODE};
use ctdbd::tunables::Tunables;

/// One-way network latency.
const LATENCY_MS: u64 = 2;
/// How long the lock helper takes to answer.
const LOCK_LATENCY_MS: u64 = 5;
/// The transport's reconnect period.
const RECONNECT_MS: u64 = 100;
/// How long an event's scripts take (plus up to 4 ms).
const SCRIPT_MS: u64 = 3;

/// How the cluster volume treats a node that lost power (the recovery lock's
/// side of it; `BENCHMARKS.md`, "GlusterFS", has the measurements these follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Volume {
    /// After a node's power loss, every lock attempt hangs until this much later
    /// (the client's ping timer on the dead brick).
    pub hang_ms: u64,
    /// A lock the powered-off node held stays held this long.
    pub stale_lock_ms: u64,
}

impl Volume {
    /// A directory every node sees, as the other tests use: a dead holder's lock is
    /// freed at once and nothing hangs.
    pub const SHARED_DIR: Volume = Volume {
        hang_ms: 0,
        stale_lock_ms: 0,
    };
    /// GlusterFS replica 3 with the options README recommends.
    pub const GLUSTER_RECOMMENDED: Volume = Volume {
        hang_ms: 1_200,
        stale_lock_ms: 2_000,
    };
    /// GlusterFS replica 3 at its defaults (`network.ping-timeout` 42 s).
    pub const GLUSTER_DEFAULTS: Volume = Volume {
        hang_ms: 42_000,
        stale_lock_ms: 83_000,
    };
}

/// The lock helper's status timeout in the daemon (`reclock::STATUS_TIMEOUT`): a
/// hung attempt is reported as failed after this long.
const LOCK_STATUS_TIMEOUT_MS: u64 = 10_000;

/// Faults and administrator actions a schedule is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of a daemon: its peers see its connections close at once.
    Crash(usize),
    /// Power loss: the node stops, nobody is told; peers must notice by keepalives.
    PowerOff(usize),
    /// The node's daemon starts again (after a crash or power loss).
    Restart(usize),
    /// Nodes in `group` can talk among themselves only.
    Partition(BTreeSet<usize>),
    /// The link between two nodes is cut (the others still reach both): a
    /// partition that is not transitive.
    Cut(usize, usize),
    /// Every node can talk to every other.
    Heal,
    /// The lock file is removed under the holder.
    LockFileRemoved,
    /// The lock cannot be taken from this node (volume gone) until `LockFixed`.
    LockBroken(usize),
    /// All nodes can take the lock again.
    LockFixed,
    /// `ctdb -n N <command>` on the node's own socket.
    Admin(usize, AdminOp),
    /// The node's file service breaks: its monitor event fails until `ServiceUp`.
    ServiceDown(usize),
    /// The node's file service works again.
    ServiceUp(usize),
}

/// Administrative controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOp {
    /// `ctdb ban SECS`
    Ban(u32),
    /// `ctdb unban`
    Unban,
    /// `ctdb disable`
    Disable,
    /// `ctdb enable`
    Enable,
    /// `ctdb stop`
    Stop,
    /// `ctdb continue`
    Continue,
}

enum Event {
    /// The kernel finished adding or removing an address.
    Address {
        node: usize,
        incarnation: u64,
        addr: IpAddr,
        added: bool,
    },
    Deliver {
        from: usize,
        to: usize,
        incarnation: u64,
        packet: Packet,
    },
    Disconnected {
        at: usize,
        peer: usize,
    },
    Lock {
        node: usize,
        incarnation: u64,
        status: ReclockStatus,
    },
    /// A lock attempt reaches the volume (after a hang, maybe).
    LockTry {
        node: usize,
        incarnation: u64,
    },
    /// A crashed daemon's guardian tells a peer the daemon and its addresses are
    /// gone.
    Notice {
        from: usize,
        to: usize,
        packet: Packet,
    },
    /// An event's scripts finished.
    Script {
        node: usize,
        incarnation: u64,
        id: u64,
        outcome: EventOutcome,
    },
}

struct SimNode {
    node: Option<Node>,
    /// Public addresses configured on this node's interfaces (the kernel's view).
    configured: BTreeSet<IpAddr>,
    incarnation: u64,
    /// What the running daemon announces to its peers (`NodeConfig::incarnation`).
    daemon_incarnation: u64,
    client_connected: bool,
    /// Its monitor event fails (the machine's service is broken; survives restarts).
    service_down: bool,
}

/// The simulated cluster.
pub struct Sim {
    pub now: u64,
    nodes: Vec<SimNode>,
    addrs: Vec<Option<IpAddr>>,
    with_lock: bool,
    /// Set by [`Sim::healed`].
    healed: bool,
    /// view[a][b]: node a believes its link to b is up.
    view: Vec<Vec<bool>>,
    /// Partition group of each node (same group = can talk).
    group: Vec<u32>,
    /// Links cut between two nodes of one group (lower index first).
    cut: BTreeSet<(usize, usize)>,
    /// Pending events by time, then insertion order.
    events: BTreeMap<(u64, u64), Event>,
    seq: u64,
    lock_holder: Option<(usize, u64)>,
    /// The cluster volume's behaviour after a power loss.
    volume: Volume,
    /// Lock attempts hang until then (a power loss's ping timer).
    volume_hangs_until: u64,
    /// A powered-off holder's lock is held until then.
    stale_lock_until: u64,
    /// Tunables every daemon starts with, on top of the simulation's own.
    tunables: Vec<(&'static str, u32)>,
    /// Latest delivery time per link: TCP delivers in order, so jitter may delay a
    /// packet but never let a later one overtake it.
    link_clock: Vec<Vec<u64>>,
    /// Packets of a connection that is up on both ends but cut by a partition: TCP
    /// keeps retransmitting them and delivers them, in order, once the partition
    /// heals — unless the connection is torn down first, which loses them.
    held: Vec<Vec<std::collections::VecDeque<(u64, Packet)>>>,
    lock_broken: BTreeSet<usize>,
    next_reconnect: u64,
    rng: u64,
    /// The last events, printed when an invariant fails.
    pub log: Vec<String>,
    pub seed: u64,
    /// The public addresses every node serves.
    pub public: Vec<IpAddr>,
}

impl Sim {
    /// `n` nodes, all started at time 0, with or without a recovery lock.
    pub fn new(n: usize, with_lock: bool, seed: u64) -> Self {
        let addrs = (0..n)
            .map(|i| Some(IpAddr::V4(Ipv4Addr::new(192, 168, 20, 41 + i as u8))))
            .collect();
        let mut sim = Self {
            now: 0,
            nodes: Vec::new(),
            addrs,
            with_lock,
            healed: false,
            view: vec![vec![false; n]; n],
            group: vec![0; n],
            cut: BTreeSet::new(),
            events: BTreeMap::new(),
            seq: 0,
            lock_holder: None,
            volume: Volume::SHARED_DIR,
            volume_hangs_until: 0,
            stale_lock_until: 0,
            tunables: Vec::new(),
            link_clock: vec![vec![0; n]; n],
            held: vec![vec![std::collections::VecDeque::new(); n]; n],
            lock_broken: BTreeSet::new(),
            next_reconnect: 0,
            rng: seed | 1,
            log: Vec::new(),
            seed,
            public: (0..2 * n)
                .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, 31 + i as u8)))
                .collect(),
        };
        for i in 0..n {
            sim.nodes.push(SimNode {
                node: None,
                configured: BTreeSet::new(),
                incarnation: 0,
                daemon_incarnation: 0,
                client_connected: false,
                service_down: false,
            });
            sim.start(i);
        }
        sim
    }

    /// Like [`Sim::new`], on a volume that behaves as `volume` after a power loss,
    /// with `tunables` set on every daemon (now and at every restart).
    pub fn with(n: usize, seed: u64, volume: Volume, tunables: &[(&'static str, u32)]) -> Self {
        // Started by `new` and started again with the volume and tunables: the
        // restarts draw from the random stream, and the stories kept from failing
        // schedules (`a_leader_waits_out_the_hold_that_follows_its_own_lease`)
        // replay that stream; a constructor that starts each node once would make
        // them pass with the bug they were kept for.
        let mut sim = Self::new(n, true, seed);
        sim.volume = volume;
        sim.tunables = tunables.to_vec();
        for i in 0..n {
            sim.stop_node(i);
            sim.start(i);
        }
        sim
    }

    fn clock(&self) -> Now {
        Now {
            mono_ms: self.now,
            wall: Timeval {
                sec: 1_700_000_000 + (self.now / 1000) as i64,
                usec: ((self.now % 1000) * 1000) as i64,
            },
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn start(&mut self, i: usize) {
        let mut tunables = Tunables::default();
        // Short bans and monitor intervals keep schedules short; the logic is the
        // same.
        tunables.set("RecoveryBanPeriod", 10).unwrap();
        tunables.set("MonitorInterval", 1).unwrap();
        for &(name, value) in &self.tunables {
            tunables.set(name, value).unwrap();
        }
        let seed = self.random();
        // Derived from the seed rather than drawn, so that every schedule's random
        // stream stays what it was before incarnations existed.
        let incarnation = seed ^ 0xD1B5_4A32_D192_ED03;
        let node = Node::new(NodeConfig {
            pnn: i as u32,
            nodes: self.addrs.clone(),
            public_addresses: self
                .public
                .iter()
                .map(|a| (*a, 24, vec!["eth1".to_string()]))
                .collect(),
            tunables,
            debug_level: 3,
            leader_capability: true,
            lmaster_capability: true,
            cluster_lock: self.with_lock.then(|| "/shared/.reclock".to_string()),
            leader_timeout_s: 5,
            start_disabled: false,
            start_stopped: false,
            daemon_pid: 1000 + i as i32,
            incarnation,
            seed,
            start: self.clock(),
        });
        let s = &mut self.nodes[i];
        s.node = Some(node);
        s.incarnation += 1;
        s.daemon_incarnation = incarnation;
        s.client_connected = false;
        self.note(format!("start node {i}"));
    }

    fn note(&mut self, line: String) {
        self.log.push(format!("{:>7} ms  {line}", self.now));
        if self.log.len() > 400 {
            self.log.drain(..100);
        }
    }

    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), event);
    }

    fn alive(&self, i: usize) -> bool {
        self.nodes[i].node.is_some()
    }

    fn can_talk(&self, a: usize, b: usize) -> bool {
        self.alive(a) && self.alive(b) && self.linked(a, b)
    }

    /// Whether the network carries packets between `a` and `b`.
    fn linked(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b] && !self.cut.contains(&(a.min(b), a.max(b)))
    }

    /// Feeds one input to node `i` and carries out its outputs.
    fn input(&mut self, i: usize, input: Input) {
        let now = self.clock();
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        let outputs = {
            let _span = tracing::info_span!("sim", t = now.mono_ms, pnn = i).entered();
            node.handle(now, input)
        };
        for output in outputs {
            self.output(i, output);
        }
        self.check_safety();
    }

    fn output(&mut self, i: usize, output: Output) {
        let incarnation = self.nodes[i].incarnation;
        match output {
            Output::SendToPeer { pnn, packet } => {
                let to = pnn as usize;
                if self.view[i][to] && self.alive(to) {
                    let jitter = self.random() % 3;
                    let at = (self.now + LATENCY_MS + jitter).max(self.link_clock[i][to]);
                    self.link_clock[i][to] = at;
                    self.push(
                        at,
                        Event::Deliver {
                            from: i,
                            to,
                            incarnation,
                            packet,
                        },
                    );
                }
            }
            Output::DropPeer { pnn } => {
                let to = pnn as usize;
                self.view[i][to] = false;
                self.held[i][to].clear();
                self.held[to][i].clear();
                self.note(format!("node {i} drops its link to {to}"));
                // Closing the sockets reaches the other side if the network lets it.
                if self.can_talk(i, to) {
                    self.push(
                        self.now + LATENCY_MS,
                        Event::Disconnected { at: to, peer: i },
                    );
                }
            }
            Output::TakeReclock => {
                // The attempt reaches the volume once it no longer hangs; the
                // daemon gives up on a helper that has not answered in 10 s.
                let reaches = self.now.max(self.volume_hangs_until);
                if reaches - self.now >= LOCK_STATUS_TIMEOUT_MS {
                    self.note(format!("node {i} takes the lock: hangs"));
                    self.push(
                        self.now + LOCK_STATUS_TIMEOUT_MS,
                        Event::Lock {
                            node: i,
                            incarnation,
                            status: ReclockStatus::Failed("timed out".into()),
                        },
                    );
                } else {
                    self.push(
                        reaches.max(self.now + LOCK_LATENCY_MS),
                        Event::LockTry {
                            node: i,
                            incarnation,
                        },
                    );
                }
            }
            Output::ReleaseReclock => {
                if self.lock_holder == Some((i, incarnation)) {
                    self.note(format!("node {i} releases the lock"));
                    self.lock_holder = None;
                }
            }
            Output::AddAddress { addr, .. } => self.push(
                self.now + 1,
                Event::Address {
                    node: i,
                    incarnation,
                    addr,
                    added: true,
                },
            ),
            Output::RemoveAddress { addr, .. } => self.push(
                self.now + 1,
                Event::Address {
                    node: i,
                    incarnation,
                    addr,
                    added: false,
                },
            ),
            Output::Announce { .. } | Output::Tickle { .. } => {}
            Output::RunEvent { id, event, .. } => {
                let fails = event.kind() == EventKind::Monitor && self.nodes[i].service_down;
                let outcome = if fails {
                    EventOutcome::Failed
                } else {
                    EventOutcome::Ok
                };
                let at = self.now + SCRIPT_MS + self.random() % 5;
                self.push(
                    at,
                    Event::Script {
                        node: i,
                        incarnation,
                        id,
                        outcome,
                    },
                );
            }
            Output::ReadPublicAddresses { request } => {
                let result = Ok(self
                    .public
                    .iter()
                    .map(|a| (*a, 24, vec!["eth1".to_string()]))
                    .collect());
                self.input(i, Input::PublicAddresses { request, result });
            }
            Output::ReadNodesFile { request } => {
                let result = Ok(self.addrs.clone());
                self.input(i, Input::NodesFile { request, result });
            }
            // The simulated nodes have no databases: their recovery is done at
            // once (record migration has its own simulation, sim_records.rs).
            Output::RecoverDatabases { generation, .. } => {
                self.input(
                    i,
                    Input::DatabasesRecovered {
                        generation,
                        ok: true,
                        culprit: None,
                    },
                );
            }
            Output::SendToClient { .. }
            | Output::SetPeers(_)
            | Output::SetDebugLevel(_)
            | Output::TunablesChanged(_) => {}
            // A clean stop: the daemon releases its addresses and exits; its
            // guardian then tells the peers, as after a crash.
            Output::Shutdown => self.crash(i, true),
        }
    }

    /// With a lock, always: no public address is configured on two live nodes, at
    /// most one node believes it leads, and that node holds the lock. Without one
    /// there is no split-brain protection (as in CTDB, which warns): the sides of a
    /// partition each lead and take the same addresses, and after a heal both keep
    /// them until the recovery's takeover run, so the first two hold only once the
    /// cluster is whole and quiet ([`Sim::healed`]), and are checked from then on.
    pub fn check_safety(&self) {
        if !self.with_lock && !self.healed {
            return;
        }
        for addr in &self.public {
            let holders: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.alive(*i) && self.nodes[*i].configured.contains(addr))
                .collect();
            if holders.len() > 1 {
                self.fail(&format!(
                    "{addr} is configured on nodes {holders:?} at once"
                ));
            }
        }
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].node.as_ref().is_some_and(Node::is_leader))
            .collect();
        if leaders.len() > 1 {
            self.fail(&format!("two leaders: {leaders:?}"));
        }
        if !self.with_lock {
            return;
        }
        if let Some(&l) = leaders.first() {
            let inc = self.nodes[l].incarnation;
            if self.lock_holder != Some((l, inc)) {
                self.fail(&format!(
                    "leader {l} does not hold the lock (holder {:?})",
                    self.lock_holder
                ));
            }
        }
    }

    /// Declares the cluster whole and converged with no fault to come: from now on
    /// [`Sim::check_safety`] holds a lock-less cluster to the same rules about
    /// leaders and addresses as a locked one.
    pub fn healed(&mut self) {
        self.healed = true;
        self.check_safety();
    }

    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "invariant violated at {} ms (seed {:#x}): {what}\n--- last events ---\n{}",
            self.now,
            self.seed,
            self.log.join("\n")
        );
    }

    /// Runs until simulated time `until`.
    pub fn run_until(&mut self, until: u64) {
        let mut steps = 0u64;
        loop {
            steps += 1;
            if steps > 5_000_000 {
                self.fail("simulation does not make progress");
            }
            let next_event = self.events.keys().next().map(|k| k.0).unwrap_or(u64::MAX);
            let next_timer = (0..self.nodes.len())
                .filter_map(|i| self.nodes[i].node.as_ref().map(|n| (n.poll_timeout(), i)))
                .min();
            let next_reconnect = self.next_reconnect;
            let next = next_event
                .min(next_timer.map(|t| t.0).unwrap_or(u64::MAX))
                .min(next_reconnect);
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            if next_reconnect <= self.now {
                self.next_reconnect = self.now + RECONNECT_MS;
                self.reconnect();
            } else if next_event <= self.now {
                let (_, event) = self.events.pop_first().expect("an event is due");
                self.event(event);
            } else if let Some((_, i)) = next_timer {
                self.input(i, Input::Tick);
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Script {
                node,
                incarnation,
                id,
                outcome,
            } => {
                if self.nodes[node].incarnation == incarnation && self.alive(node) {
                    self.input(node, Input::EventDone { id, outcome });
                }
            }
            Event::Deliver {
                from,
                to,
                incarnation,
                packet,
            } => {
                // A crashed sender's packets die with it, and so do those of a
                // connection the receiver has closed.
                if self.nodes[from].incarnation != incarnation
                    || !self.view[to][from]
                    || !self.alive(to)
                {
                    return;
                }
                if !self.linked(from, to) || !self.held[from][to].is_empty() {
                    self.held[from][to].push_back((incarnation, packet));
                } else {
                    self.input(
                        to,
                        Input::PeerPacket {
                            pnn: from as u32,
                            packet,
                        },
                    );
                }
            }
            Event::Notice { from, to, packet } => {
                // The guardian's own connection: it needs the machines to reach each
                // other, not the link between the daemons.
                if self.alive(to) && self.linked(from, to) {
                    self.note(format!("guardian of node {from} tells node {to}"));
                    self.input(
                        to,
                        Input::GuardianNotice {
                            pnn: from as u32,
                            packet,
                        },
                    );
                }
            }
            Event::Disconnected { at, peer } => {
                if self.view[at][peer] {
                    self.view[at][peer] = false;
                    self.input(at, Input::PeerDisconnected { pnn: peer as u32 });
                }
            }
            Event::Address {
                node,
                incarnation,
                addr,
                added,
            } => {
                if self.nodes[node].incarnation != incarnation || !self.alive(node) {
                    return;
                }
                if added {
                    self.nodes[node].configured.insert(addr);
                    self.note(format!("node {node} adds {addr}"));
                    self.check_safety();
                    self.input(
                        node,
                        Input::AddressAdded {
                            addr,
                            result: Ok(()),
                        },
                    );
                } else {
                    self.nodes[node].configured.remove(&addr);
                    self.note(format!("node {node} removes {addr}"));
                    self.input(
                        node,
                        Input::AddressRemoved {
                            addr,
                            result: Ok(()),
                        },
                    );
                }
            }
            Event::Lock {
                node,
                incarnation,
                status,
            } => {
                if self.nodes[node].incarnation == incarnation {
                    self.input(node, Input::Reclock(status));
                }
            }
            Event::LockTry { node, incarnation } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                // A powered-off holder's lock is freed when the volume lets go.
                if let Some((h, inc)) = self.lock_holder {
                    if (!self.alive(h) || self.nodes[h].incarnation != inc)
                        && self.now >= self.stale_lock_until
                    {
                        self.note(format!("the volume frees node {h}'s stale lock"));
                        self.lock_holder = None;
                    }
                }
                let status = if self.lock_broken.contains(&node) {
                    ReclockStatus::Failed("cluster volume unavailable".into())
                } else {
                    match self.lock_holder {
                        None => {
                            self.lock_holder = Some((node, incarnation));
                            ReclockStatus::Taken
                        }
                        Some((h, inc)) if h == node && inc == incarnation => ReclockStatus::Taken,
                        Some(_) => ReclockStatus::Contended,
                    }
                };
                self.note(format!("node {node} takes the lock: {status:?}"));
                self.input(node, Input::Reclock(status));
            }
        }
    }

    /// The transport's reconnect loop: a pair that can talk but is not up on both
    /// sides gets fresh connections (an old half is replaced: disconnect, connect).
    fn reconnect(&mut self) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in 0..n {
                if a == b || self.held[a][b].is_empty() {
                    continue;
                }
                let up = self.view[a][b] && self.view[b][a] && self.alive(a) && self.alive(b);
                if !up {
                    self.held[a][b].clear();
                } else if self.linked(a, b) {
                    // Healed: the retransmitted data arrives in order.
                    let queued: Vec<_> = self.held[a][b].drain(..).collect();
                    for (incarnation, packet) in queued {
                        let at = (self.now + LATENCY_MS).max(self.link_clock[a][b]);
                        self.link_clock[a][b] = at;
                        self.push(
                            at,
                            Event::Deliver {
                                from: a,
                                to: b,
                                incarnation,
                                packet,
                            },
                        );
                    }
                }
            }
        }
        for a in 0..n {
            for b in (a + 1)..n {
                if !self.can_talk(a, b) || (self.view[a][b] && self.view[b][a]) {
                    continue;
                }
                self.note(format!("link {a} <-> {b} (re)established"));
                // New connections: whatever the old ones still held is lost.
                self.held[a][b].clear();
                self.held[b][a].clear();
                for (x, y) in [(a, b), (b, a)] {
                    if self.view[x][y] {
                        self.view[x][y] = false;
                        self.input(x, Input::PeerDisconnected { pnn: y as u32 });
                    }
                }
                for (x, y) in [(a, b), (b, a)] {
                    self.view[x][y] = true;
                    self.input(x, Input::PeerConnected { pnn: y as u32 });
                }
            }
        }
    }

    /// Applies a fault now.
    pub fn fault(&mut self, fault: Fault) {
        self.note(format!("FAULT {fault:?}"));
        match fault {
            Fault::Crash(i) => self.crash(i, true),
            Fault::PowerOff(i) => self.power_off(i),
            Fault::Restart(i) => {
                if !self.alive(i) {
                    self.start(i);
                }
            }
            Fault::Partition(group) => {
                for i in 0..self.nodes.len() {
                    self.group[i] = u32::from(group.contains(&i));
                }
            }
            Fault::Cut(a, b) => {
                if a != b {
                    self.cut.insert((a.min(b), a.max(b)));
                }
            }
            Fault::Heal => {
                self.group.iter_mut().for_each(|g| *g = 0);
                self.cut.clear();
            }
            Fault::LockFileRemoved => {
                // Modelled as seen at once by the holder. In reality our holder
                // rechecks the file every 250 ms; during that window followers still
                // hear the old leader's broadcasts and do not race for the new file.
                if let Some((h, inc)) = self.lock_holder.take() {
                    if self.nodes[h].incarnation == inc {
                        self.input(
                            h,
                            Input::Reclock(ReclockStatus::Lost("lock file removed".into())),
                        );
                    }
                }
            }
            Fault::LockBroken(i) => {
                self.lock_broken.insert(i);
            }
            Fault::LockFixed => self.lock_broken.clear(),
            Fault::Admin(i, op) => self.admin(i, op),
            Fault::ServiceDown(i) => self.nodes[i].service_down = true,
            Fault::ServiceUp(i) => self.nodes[i].service_down = false,
        }
    }

    /// The daemon of node `i` dies; with `guardian_notice`, its guardian (which has
    /// just removed its addresses) tells every peer it can reach.
    fn crash(&mut self, i: usize, guardian_notice: bool) {
        if !self.alive(i) {
            return;
        }
        let incarnation = self.nodes[i].daemon_incarnation;
        self.stop_node(i);
        // Its connections close: peers that can hear it are told at once.
        for p in 0..self.nodes.len() {
            if self.view[p][i] && self.alive(p) && self.linked(p, i) {
                self.push(
                    self.now + LATENCY_MS,
                    Event::Disconnected { at: p, peer: i },
                );
            }
        }
        if !guardian_notice {
            return;
        }
        // After the close (same time, queued later): on each peer's link the
        // transport reports the disconnection before the guardian's connection.
        for p in 0..self.nodes.len() {
            if p != i && self.alive(p) && self.linked(p, i) {
                let packet = Packet {
                    header: Header {
                        generation: INVALID_GENERATION,
                        destnode: p as u32,
                        srcnode: i as u32,
                        reqid: 0,
                    },
                    body: Body::ReqMessage(ReqMessage {
                        srvid: srvid::DAEMON_GONE,
                        data: DaemonGone {
                            pnn: i as u32,
                            incarnation,
                        }
                        .encode(),
                    }),
                };
                self.push(
                    self.now + LATENCY_MS,
                    Event::Notice {
                        from: i,
                        to: p,
                        packet,
                    },
                );
            }
        }
    }

    fn power_off(&mut self, i: usize) {
        if !self.alive(i) {
            return;
        }
        let held = self.lock_holder;
        self.stop_node(i);
        // Nobody tells the volume: its lock outlives the node for a while, and
        // every lock attempt waits for the dead brick meanwhile.
        if self.volume.stale_lock_ms > 0 && held.is_some_and(|(h, _)| h == i) {
            self.lock_holder = held;
            self.stale_lock_until = self.now + self.volume.stale_lock_ms;
        }
        self.volume_hangs_until = self.volume_hangs_until.max(self.now + self.volume.hang_ms);
    }

    fn stop_node(&mut self, i: usize) {
        self.nodes[i].node = None;
        // The guardian removes a dead daemon's addresses at once; a machine that lost
        // power has none.
        self.nodes[i].configured.clear();
        // The lock holder process dies with the daemon (PDEATHSIG), so the lock frees.
        if self.lock_holder.is_some_and(|(h, _)| h == i) {
            self.lock_holder = None;
        }
        for p in 0..self.nodes.len() {
            self.view[i][p] = false;
        }
    }

    fn admin(&mut self, i: usize, op: AdminOp) {
        if !self.alive(i) {
            return;
        }
        let client = ClientId(1);
        if !self.nodes[i].client_connected {
            self.nodes[i].client_connected = true;
            self.input(i, Input::ClientConnected { client, pid: 4000 });
        }
        let (opcode, data) = match op {
            AdminOp::Ban(secs) => (
                Opcode::SET_BAN_STATE,
                BanState {
                    pnn: i as u32,
                    time: secs,
                }
                .encode(),
            ),
            AdminOp::Unban => (
                Opcode::SET_BAN_STATE,
                BanState {
                    pnn: i as u32,
                    time: 0,
                }
                .encode(),
            ),
            AdminOp::Disable => (Opcode::DISABLE_NODE, Vec::new()),
            AdminOp::Enable => (Opcode::ENABLE_NODE, Vec::new()),
            AdminOp::Stop => (Opcode::STOP_NODE, Vec::new()),
            AdminOp::Continue => (Opcode::CONTINUE_NODE, Vec::new()),
        };
        let packet = Packet {
            header: Header {
                generation: 0,
                destnode: CURRENT_NODE,
                srcnode: i as u32,
                reqid: 1,
            },
            body: Body::ReqControl(ReqControl {
                opcode: opcode.0,
                srvid: 0,
                client_id: 0,
                flags: 0,
                data,
            }),
        };
        self.input(i, Input::ClientPacket { client, packet });
    }

    // ---- observations ------------------------------------------------------

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i]
            .node
            .as_ref()
            .unwrap_or_else(|| self.fail(&format!("node {i} is down")))
    }

    pub fn is_alive(&self, i: usize) -> bool {
        self.alive(i)
    }

    /// How many nodes the cluster has (alive or not).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn leaders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].node.as_ref().is_some_and(Node::is_leader))
            .collect()
    }

    pub fn lock_holder(&self) -> Option<usize> {
        self.lock_holder.map(|(h, _)| h)
    }

    /// Runs until `pred` holds or `deadline`; returns the time it first held.
    pub fn run_until_true(&mut self, deadline: u64, pred: impl Fn(&Sim) -> bool) -> Option<u64> {
        while self.now < deadline {
            if pred(self) {
                return Some(self.now);
            }
            let step = (self.now + 10).min(deadline);
            self.run_until(step);
        }
        pred(self).then_some(self.now)
    }

    /// All live nodes agree on one leader and one generation, and see each other
    /// connected.
    pub fn converged(&self) -> bool {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|i| self.alive(*i)).collect();
        let leaders = self.leaders();
        if leaders.len() != 1 {
            return false;
        }
        let leader = leaders[0] as u32;
        let generation = self.node(leaders[0]).generation();
        let agreed = live.iter().all(|&i| {
            let n = self.node(i);
            n.leader() == Some(leader)
                && n.generation() == generation
                && live.iter().all(|&j| j == i || n.is_connected(j as u32))
        });
        // Every address on exactly one live node that may host (none are flagged once
        // a schedule has healed everything), and no takeover run outstanding. A node
        // whose service works is only UNHEALTHY until its first monitor: it will host
        // (without this, a cluster whose nodes have not run their first monitor yet
        // would count as converged with no address placed).
        let hosts = |i: usize| {
            let flags = self.node(i).flags_of(i as u32).unwrap_or(0);
            let unhealthy_for_good = self.nodes[i].service_down;
            flags & !node_flags::UNHEALTHY == 0
                && (flags & node_flags::UNHEALTHY == 0 || !unhealthy_for_good)
        };
        let placed = self.public.iter().all(|addr| {
            let holders: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| self.nodes[i].configured.contains(addr))
                .collect();
            holders.len() == 1 || (holders.is_empty() && !live.iter().any(|&i| hosts(i)))
        });
        agreed && placed && !self.node(leaders[0]).takeover_pending()
    }

    /// Explains what `converged` sees, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!("t={} ms lock={:?}\n", self.now, self.lock_holder);
        for i in 0..self.nodes.len() {
            match &self.nodes[i].node {
                None => s.push_str(&format!("  node {i}: down\n")),
                Some(n) => s.push_str(&format!(
                    "  node {i}: leader={:?} gen={} lock={:?} flags={:#x} connected={:?} ips={:?}\n",
                    n.leader(),
                    n.generation(),
                    n.lock_state(),
                    n.flags_of(i as u32).unwrap_or(0),
                    (0..self.nodes.len()).filter(|j| n.is_connected(*j as u32)).collect::<Vec<_>>(),
                    self.nodes[i].configured,
                )),
            }
        }
        s
    }

    /// Flags of `of` as node `at` sees them.
    pub fn flags(&self, at: usize, of: usize) -> u32 {
        self.node(at)
            .flags_of(of as u32)
            .unwrap_or(node_flags::DELETED)
    }

    /// The public addresses configured on node `i`'s interfaces.
    pub fn hosted_by(&self, i: usize) -> BTreeSet<IpAddr> {
        self.nodes[i].configured.clone()
    }

    pub fn lock_state(&self, i: usize) -> LockState {
        self.node(i).lock_state()
    }
}
