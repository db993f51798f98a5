//! The node's state and its answers to clients: a sans-IO state machine.
//!
//! [`Node::handle`] takes the time and one [`Input`] (a client connected, sent a
//! packet, went away; a timer tick) and returns the [`Output`]s the caller must carry
//! out, in order, before the next input. No I/O, no clock, no tokio here: the daemon's
//! edges (`transport`, `daemon`) turn sockets into inputs and outputs into writes.
//!
//! What exists today is the single-node part of CTDB: the node map read from `nodes`,
//! every local control the stock `ctdb` tool uses, srvid registration and message
//! delivery between local clients, and the leader broadcast. Peer links, elections and
//! takeover runs come with the cluster issue; their hooks are the `leader`,
//! `generation` and `recovery_mode` fields.

mod controls;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::protocol::control::{
    capabilities, node_flags, srvid, DisableMessage, NodeAndFlags, NodeMap, Runstate, SrvidMessage,
    Timeval,
};
use crate::protocol::packet::{
    Body, Header, Packet, ReplyControl, ReqMessage, BROADCAST_ACTIVE, BROADCAST_ALL,
    BROADCAST_CONNECTED, CURRENT_NODE, UNKNOWN_PNN,
};
use crate::protocol::statistics::Statistics;
use crate::tunables::Tunables;

/// The TCP port of CTDB's node-to-node transport.
pub const CTDB_PORT: u16 = 4379;

/// Identifies one connection on the Unix socket. Never 0 (CTDB reserves 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ClientId(pub u32);

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
    /// The once-a-second timer.
    Tick,
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
    /// Apply a new log level (CTDB's numeric debug level).
    SetDebugLevel(u32),
    /// Stop the daemon (SHUTDOWN control).
    Shutdown,
}

/// One node of the cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node number: its index in the `nodes` file.
    pub pnn: u32,
    /// Private address; `None` for a deleted (`#`) line.
    pub addr: Option<IpAddr>,
    /// `node_flags` bits.
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
    /// `[cluster] cluster lock` text, if any.
    pub cluster_lock: Option<String>,
    /// The daemon's process id (GET_PID).
    pub daemon_pid: i32,
    /// First vnn-map generation; random, chosen by the caller.
    pub generation: u32,
    /// Start time (wall clock).
    pub start_time: Timeval,
}

#[derive(Debug, Clone, Default)]
struct ClientInfo {
    pid: i32,
    srvids: BTreeSet<u64>,
}

/// All of one node's state. See the module docs.
#[derive(Debug)]
pub struct Node {
    pnn: u32,
    nodes: Vec<NodeInfo>,
    generation: u32,
    recovery_mode: u32,
    runstate: Runstate,
    leader: Option<u32>,
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
    stats: Statistics,
}

impl Node {
    /// A node that has just started: every other node DISCONNECTED|UNHEALTHY, itself
    /// healthy and RUNNING (event scripts, which gate health in CTDB, come later).
    pub fn new(config: NodeConfig) -> Self {
        let nodes = config
            .nodes
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let pnn = i as u32;
                let flags = match addr {
                    None => node_flags::DELETED | node_flags::DISCONNECTED,
                    Some(_) if pnn == config.pnn => 0,
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
            })
            .collect();
        let mut caps = capabilities::DEFAULT;
        if !config.leader_capability {
            caps &= !capabilities::RECMASTER;
        }
        if !config.lmaster_capability {
            caps &= !capabilities::LMASTER;
        }
        Self {
            pnn: config.pnn,
            nodes,
            generation: config.generation,
            recovery_mode: 0,
            runstate: Runstate::Running,
            // Alone, a node with the leader capability leads itself; elections between
            // nodes arrive with the peer transport.
            leader: config.leader_capability.then_some(config.pnn),
            tunables: config.tunables,
            debug_level: config.debug_level,
            capabilities: caps,
            cluster_lock: config.cluster_lock,
            public_ips,
            ifaces,
            daemon_pid: config.daemon_pid,
            start_time: config.start_time,
            last_recovery_started: config.start_time,
            last_recovery_finished: config.start_time,
            clients: BTreeMap::new(),
            stats: Statistics {
                statistics_start_time: config.start_time,
                ..Default::default()
            },
        }
    }

    /// This node's pnn.
    pub fn pnn(&self) -> u32 {
        self.pnn
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Feeds one input; returns what to do, in order. See the module docs.
    pub fn handle(&mut self, now: Timeval, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
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
            }
            Input::ClientPacket { client, packet } => {
                if !self.clients.contains_key(&client) {
                    return out;
                }
                self.stats.client_packets_recv = self.stats.client_packets_recv.wrapping_add(1);
                self.client_packet(now, client, packet, &mut out);
            }
            Input::Tick => self.broadcast_leader(&mut out),
        }
        let sent = out
            .iter()
            .filter(|o| matches!(o, Output::SendToClient { .. }))
            .count() as u32;
        self.stats.client_packets_sent = self.stats.client_packets_sent.wrapping_add(sent);
        out
    }

    fn client_packet(
        &mut self,
        now: Timeval,
        client: ClientId,
        packet: Packet,
        out: &mut Vec<Output>,
    ) {
        let header = packet.header;
        match packet.body {
            Body::ReqControl(req) => {
                self.stats.client.req_control = self.stats.client.req_control.wrapping_add(1);
                let destnode = match header.destnode {
                    CURRENT_NODE => self.pnn,
                    d => d,
                };
                let wants_reply = req.flags & crate::protocol::packet::CTRL_FLAG_NOREPLY == 0;
                let is_broadcast = matches!(
                    destnode,
                    BROADCAST_ALL | BROADCAST_ACTIVE | BROADCAST_CONNECTED
                );
                let reply = if destnode == self.pnn || (is_broadcast && !wants_reply) {
                    // A NOREPLY broadcast reaches every node, this one included; the
                    // others will be reached once peer links exist.
                    Some(self.control(now, client, &req, out))
                } else if is_broadcast {
                    // CTDB silently drops a broadcast that wants a reply (§4.3 rule 3).
                    None
                } else {
                    Some(controls::error(-1, "ctdb_control to disconnected node"))
                };
                if let (Some(reply), true) = (reply, wants_reply) {
                    out.push(Output::SendToClient {
                        client,
                        packet: Packet {
                            header: Header {
                                generation: self.generation,
                                destnode: 0,
                                srcnode: self.pnn,
                                reqid: header.reqid,
                            },
                            body: Body::ReplyControl(reply),
                        },
                    });
                }
            }
            Body::ReqMessage(msg) => {
                self.stats.client.req_message = self.stats.client.req_message.wrapping_add(1);
                let local = matches!(
                    header.destnode,
                    CURRENT_NODE | BROADCAST_ALL | BROADCAST_ACTIVE | BROADCAST_CONNECTED
                ) || header.destnode == self.pnn;
                if local {
                    self.message(msg, out);
                }
            }
            // Database calls and tunnels arrive with the database layer; until then a
            // call gets nothing, like a message to an unknown srvid.
            _ => {}
        }
    }

    /// Delivers a message on this node: to our own handlers and to every client
    /// registered for its srvid (or for ALL) (§4.5).
    fn message(&mut self, msg: ReqMessage, out: &mut Vec<Output>) {
        match msg.srvid {
            // Only the leader answers; with no IPs to move yet, a takeover run is
            // complete at once. The answer is the leader's pnn (§8.1).
            srvid::TAKEOVER_RUN if self.leader == Some(self.pnn) => {
                if let Ok(req) = SrvidMessage::decode(&msg.data) {
                    self.answer(req.pnn, req.srvid, self.pnn as i32, out);
                }
            }
            srvid::DISABLE_TAKEOVER_RUNS | srvid::DISABLE_RECOVERIES => {
                if let Ok(req) = DisableMessage::decode(&msg.data) {
                    self.answer(req.pnn, req.srvid, self.pnn as i32, out);
                }
            }
            _ => {}
        }
        self.deliver(msg.srvid, &msg.data, out);
    }

    /// Sends an i32 answer to (pnn, srvid) as CTDB's message-based replies do (§8.2).
    fn answer(&mut self, pnn: u32, reply_srvid: u64, value: i32, out: &mut Vec<Output>) {
        if reply_srvid == 0 || pnn != self.pnn {
            return;
        }
        self.deliver(reply_srvid, &value.to_le_bytes(), out);
    }

    fn deliver(&self, msg_srvid: u64, data: &[u8], out: &mut Vec<Output>) {
        for (client, info) in &self.clients {
            if info.srvids.contains(&msg_srvid) || info.srvids.contains(&srvid::ALL) {
                out.push(Output::SendToClient {
                    client: *client,
                    packet: self.message_packet(msg_srvid, data.to_vec()),
                });
            }
        }
    }

    fn message_packet(&self, msg_srvid: u64, data: Vec<u8>) -> Packet {
        Packet {
            header: Header {
                generation: self.generation,
                destnode: 0,
                srcnode: self.pnn,
                reqid: 0,
            },
            body: Body::ReqMessage(ReqMessage {
                srvid: msg_srvid,
                data,
            }),
        }
    }

    /// The leader's once-a-second broadcast, delivered to the clients listening for it
    /// (the stock tool learns the leader only from this).
    fn broadcast_leader(&self, out: &mut Vec<Output>) {
        if self.leader == Some(self.pnn) {
            self.deliver(srvid::LEADER, &self.pnn.to_le_bytes(), out);
        }
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
