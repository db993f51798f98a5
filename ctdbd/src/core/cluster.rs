//! Membership, keepalives, election, recovery, admin states and the routing of
//! controls and messages between clients and nodes. See the rules in `core`'s docs.

use tracing::{debug, error, info, warn};

use super::deferred::{Awaiting, NotAwaited, ReplyTo};
use super::events::AfterEvent;
use super::{ClientId, LockState, Node, Output, PeerLink, Purpose, ReclockStatus, Requester};
use crate::events::Event;
use crate::protocol::control::{
    node_flags, srvid, DisableMessage, NodeFlagChange, NodeMap, Opcode, Runstate, SrvidMessage,
    VnnMap,
};
use crate::protocol::packet::{
    Body, Header, Packet, ReplyControl, ReqControl, ReqMessage, BROADCAST_ACTIVE, BROADCAST_ALL,
    BROADCAST_CONNECTED, CTRL_FLAG_NOREPLY, CURRENT_NODE, UNKNOWN_PNN,
};
use crate::tunables::keys;

/// `(major << 16) | minor` of the Samba release whose protocol we speak (§2.4).
const KEEPALIVE_VERSION: u32 = 0x0004_0011;
/// How often the leader repeats its broadcast (CTDB: every second). Leases are not
/// renewed by it but asked for by each follower (`takeover`).
const LEADER_BROADCAST_MS: u64 = 250;
/// Wait before racing for the lock again after contention or a lost lock.
const ELECTION_RETRY_MS: u64 = 500;
/// Wait after a failed attempt (unreadable lock path, helper failure).
const ELECTION_FAILURE_RETRY_MS: u64 = 1000;
/// Consecutive failed lock attempts after which a node bans itself.
const LOCK_FAILURES_BEFORE_BAN: u32 = 3;
/// Database recoveries in a row that one node makes fail (by refusing a step or
/// answering nonsense) after which the leader bans it for `RecoveryBanPeriod`,
/// as CTDB's recovery bans the node that failed three attempts.
const RECOVERY_FAILURES_BEFORE_BAN: u32 = 3;
/// How long the followers of a leader whose connection closed wait for its
/// guardian's notice before they race for the lock (they race as soon as it comes).
/// The guardian speaks within milliseconds of the daemon's death.
pub(super) const GUARDIAN_NOTICE_WAIT_MS: u64 = 100;
/// Added to a minority's wait before it races for the lock (see
/// `Node::minority_race_delay_ms`).
const MINORITY_MARGIN_MS: u64 = 500;

impl Node {
    // ---- clients -------------------------------------------------------------

    pub(super) fn client_packet(
        &mut self,
        client: ClientId,
        packet: Packet,
        out: &mut Vec<Output>,
    ) {
        let header = packet.header;
        match packet.body {
            Body::ReqControl(req) => {
                self.stats.client.req_control = self.stats.client.req_control.wrapping_add(1);
                let dest = if header.destnode == CURRENT_NODE {
                    self.pnn
                } else {
                    header.destnode
                };
                self.route_control(client, header.reqid, dest, req, out);
            }
            Body::ReqMessage(msg) => {
                self.stats.client.req_message = self.stats.client.req_message.wrapping_add(1);
                if msg.srvid & srvid::CTDB_RS_MASK == srvid::CTDB_RS_RANGE {
                    // Daemon-to-daemon facts (incarnations, guardian notices): a
                    // client relaying one could make a peer believe a lie.
                    warn!(
                        client = client.0,
                        srvid = msg.srvid,
                        "client sent a ctdb-rs daemon message: dropped"
                    );
                    return;
                }
                let dest = if header.destnode == CURRENT_NODE {
                    self.pnn
                } else {
                    header.destnode
                };
                self.route_message(dest, msg, out);
            }
            Body::ReqTunnel(tunnel) => self.client_tunnel(client, header.destnode, tunnel, out),
            // Database calls go to the database thread (transport::DataPath).
            _ => {}
        }
    }

    /// Routes a control from a local client (§4.3): here, to one peer, or to a
    /// broadcast set (only without a reply, as CTDB allows).
    fn route_control(
        &mut self,
        client: ClientId,
        reqid: u32,
        dest: u32,
        req: ReqControl,
        out: &mut Vec<Output>,
    ) {
        let wants_reply = req.flags & CTRL_FLAG_NOREPLY == 0;
        let from = Requester::Client(client);
        if let Some(targets) = self.broadcast_targets(dest) {
            if wants_reply {
                // CTDB silently drops a broadcast that wants a reply (§4.3 rule 3).
                return;
            }
            for pnn in targets {
                if pnn == self.pnn {
                    self.control(from, 0, &req, out);
                } else {
                    self.forward_control(pnn, None, &req, out);
                }
            }
            return;
        }
        if dest == self.pnn {
            if let Some(reply) = self.control(from, reqid, &req, out) {
                if wants_reply {
                    self.reply_to(from, reqid, reply, out);
                }
            }
        } else if self.is_connected(dest) && self.nodes.get(dest as usize).is_some() {
            if wants_reply {
                let reply_to = ReplyTo { who: from, reqid };
                self.send_control(dest, Some((Purpose::Forwarded, Some(reply_to))), &req, out);
            } else {
                self.forward_control(dest, None, &req, out);
            }
        } else if wants_reply {
            self.reply_to(
                from,
                reqid,
                error_reply("ctdb_control to disconnected node"),
                out,
            );
        }
    }

    /// The pnns a broadcast destination reaches (self included), or `None` if `dest`
    /// is not a broadcast.
    fn broadcast_targets(&self, dest: u32) -> Option<Vec<u32>> {
        let mask = match dest {
            BROADCAST_ALL => node_flags::DELETED,
            BROADCAST_ACTIVE => node_flags::INACTIVE,
            BROADCAST_CONNECTED => node_flags::DELETED | node_flags::DISCONNECTED,
            _ => return None,
        };
        Some(
            self.nodes
                .iter()
                .filter(|n| n.flags & mask == 0 && (n.pnn == self.pnn || self.is_connected(n.pnn)))
                .map(|n| n.pnn)
                .collect(),
        )
    }

    /// Sends a control of this node's own to a peer; with a `purpose`, its reply
    /// is awaited (deferred) for that purpose.
    pub(super) fn forward_control(
        &mut self,
        to: u32,
        purpose: Option<Purpose>,
        req: &ReqControl,
        out: &mut Vec<Output>,
    ) {
        self.send_control(to, purpose.map(|p| (p, None)), req, out);
    }

    /// Files a reply that this node's own edges make possible later (a file
    /// read, an address change): the id to find it by when they answer.
    pub(super) fn defer_reply(&mut self, purpose: Purpose, reply_to: Option<ReplyTo>) -> u32 {
        let id = self.allocate_reqid();
        self.deferred.insert(
            id,
            Awaiting {
                purpose,
                reply_to,
                peer: None,
                deadline_ms: None,
            },
        );
        id
    }

    /// The reply filed under the token an edge echoed, if it is one for `wanted`.
    pub(super) fn take_deferred(
        &mut self,
        token: u64,
        wanted: impl FnOnce(&Purpose) -> bool,
    ) -> Option<Awaiting<Purpose>> {
        let id = u32::try_from(token).ok()?;
        self.deferred.take_if(id, wanted)
    }

    /// Sends a control to a peer. With `awaited`, its reply is deferred for that
    /// purpose, to be passed on to whoever is named (a client's control carries
    /// the client's id then); without, no reply is asked for.
    fn send_control(
        &mut self,
        to: u32,
        awaited: Option<(Purpose, Option<ReplyTo>)>,
        req: &ReqControl,
        out: &mut Vec<Output>,
    ) {
        let reqid = self.allocate_reqid();
        let mut req = req.clone();
        if let Some((purpose, reply_to)) = awaited {
            if let Some(ReplyTo {
                who: Requester::Client(client),
                ..
            }) = reply_to
            {
                req.client_id = client.0;
            }
            let timeout_ms = self.tunables.secs_as_ms(keys::CONTROL_TIMEOUT);
            self.deferred.insert(
                reqid,
                Awaiting {
                    purpose,
                    reply_to,
                    peer: Some(to),
                    deadline_ms: Some(self.now.mono_ms + timeout_ms),
                },
            );
        } else {
            req.flags |= CTRL_FLAG_NOREPLY;
        }
        self.stats.node.req_control = self.stats.node.req_control.wrapping_add(1);
        out.push(Output::SendToPeer {
            pnn: to,
            packet: Packet {
                header: self.header(to, reqid),
                body: Body::ReqControl(req),
            },
        });
    }

    pub(super) fn reply_to(
        &mut self,
        to: Requester,
        reqid: u32,
        reply: ReplyControl,
        out: &mut Vec<Output>,
    ) {
        self.reply_from(self.pnn, to, reqid, reply, out);
    }

    /// As [`Self::reply_to`], with `srcnode` in the header: a peer's reply passed
    /// on to a client names the peer.
    fn reply_from(
        &mut self,
        srcnode: u32,
        to: Requester,
        reqid: u32,
        reply: ReplyControl,
        out: &mut Vec<Output>,
    ) {
        match to {
            Requester::Local => {
                let run = self
                    .deferred
                    .take_if(reqid, |p| matches!(p, Purpose::Takeover { .. }));
                if let Some(Awaiting {
                    purpose: Purpose::Takeover { run },
                    ..
                }) = run
                {
                    self.takeover_reply(run, reqid, reply, out);
                }
            }
            Requester::Client(client) => out.push(Output::SendToClient {
                client,
                packet: Packet {
                    header: Header {
                        srcnode,
                        ..self.header(0, reqid)
                    },
                    body: Body::ReplyControl(reply),
                },
            }),
            Requester::Peer(pnn) => out.push(Output::SendToPeer {
                pnn,
                packet: Packet {
                    header: self.header(pnn, reqid),
                    body: Body::ReplyControl(reply),
                },
            }),
        }
    }

    /// Routes a message from a local client or delivers one to this node (§4.5).
    fn route_message(&mut self, dest: u32, msg: ReqMessage, out: &mut Vec<Output>) {
        if let Some(targets) = self.broadcast_targets(dest) {
            for pnn in targets {
                if pnn == self.pnn {
                    self.deliver_here(self.pnn, msg.clone(), out);
                } else {
                    out.push(Output::SendToPeer {
                        pnn,
                        packet: self.message_packet(pnn, msg.srvid, msg.data.clone()),
                    });
                }
            }
        } else if dest == self.pnn {
            self.deliver_here(self.pnn, msg, out);
        } else if self.is_connected(dest) {
            out.push(Output::SendToPeer {
                pnn: dest,
                packet: self.message_packet(dest, msg.srvid, msg.data),
            });
        }
    }

    /// A message arrived at this node (from `sender`): our own handlers first, then
    /// every local client registered for it.
    fn deliver_here(&mut self, sender: u32, msg: ReqMessage, out: &mut Vec<Output>) {
        match msg.srvid {
            srvid::LEADER => self.leader_broadcast_received(sender, &msg.data, out),
            srvid::LEASE_REQUEST => self.lease_requested(sender, &msg.data, out),
            srvid::LEASE_GRANT => self.lease_granted(sender, &msg.data, out),
            srvid::HOLD_REQUEST => self.hold_requested(sender, &msg.data, out),
            srvid::HOLD_GRANT => self.hold_granted(sender, &msg.data),
            srvid::INCARNATION if sender != self.pnn => {
                match crate::protocol::control::decode_u64(&msg.data, "incarnation") {
                    Ok(incarnation) => {
                        if let Some(link) = self.peers.get_mut(&sender) {
                            link.incarnation = Some(incarnation);
                            // A daemon speaks on this connection: a notice that
                            // came meanwhile was about an earlier one.
                            link.pending_notice = None;
                        }
                    }
                    Err(e) => warn!(peer = sender, error = %e, "bad incarnation message"),
                }
            }
            // Only the leader runs takeovers; it answers (pnn, srvid) with its pnn when
            // the run that follows the request is over (§8.1).
            srvid::TAKEOVER_RUN if self.is_leader() => {
                if let Ok(req) = SrvidMessage::decode(&msg.data) {
                    if req.srvid != 0 {
                        self.takeover_requesters.push(req);
                    }
                    self.want_takeover();
                }
            }
            // 4.17's recovery daemon answers these; ours is the core (`ctdb
            // rddumpmemory`).
            srvid::MEM_DUMP => {
                if let Ok(req) = SrvidMessage::decode(&msg.data) {
                    let report = ReqMessage {
                        srvid: req.srvid,
                        data: self.memory_report().into_bytes(),
                    };
                    self.route_message(req.pnn, report, out);
                }
            }
            srvid::REBALANCE_NODE if self.is_leader() => {
                if let Ok(pnn) = crate::protocol::control::decode_u32(&msg.data, "rebalance pnn") {
                    self.rebalance_nodes.insert(pnn);
                }
            }
            srvid::DISABLE_TAKEOVER_RUNS | srvid::DISABLE_RECOVERIES => {
                if let Ok(req) = DisableMessage::decode(&msg.data) {
                    if msg.srvid == srvid::DISABLE_TAKEOVER_RUNS {
                        self.disable_takeover_runs(req.timeout);
                    }
                    self.answer(req.pnn, req.srvid, self.pnn as i32, out);
                }
            }
            srvid::DISABLE_IP_CHECK => {
                if let Ok(secs) = crate::protocol::control::decode_u32(&msg.data, "timeout") {
                    self.disable_takeover_runs(secs);
                }
            }
            _ => {}
        }
        self.deliver_to_clients(msg.srvid, &msg.data, out);
    }

    /// Sends an i32 answer to (pnn, srvid) as CTDB's message-based replies do (§8.2).
    pub(super) fn answer(&mut self, pnn: u32, reply_srvid: u64, value: i32, out: &mut Vec<Output>) {
        if reply_srvid == 0 {
            return;
        }
        let msg = ReqMessage {
            srvid: reply_srvid,
            data: value.to_le_bytes().to_vec(),
        };
        self.route_message(pnn, msg, out);
    }

    // ---- peers ---------------------------------------------------------------

    pub(super) fn peer_packet(&mut self, pnn: u32, packet: Packet, out: &mut Vec<Output>) {
        let Some(link) = self.peers.get_mut(&pnn) else {
            warn!(peer = pnn, "packet from a node that is not a peer");
            return;
        };
        if !link.connected {
            // Late packet from a link that is already down: ignore.
            return;
        }
        let gap = self.now.mono_ms.saturating_sub(link.last_heard_ms);
        link.last_heard_ms = self.now.mono_ms;
        self.counters
            .peers
            .entry(pnn)
            .or_default()
            .gaps
            .observe(gap);
        self.stats.node_packets_recv = self.stats.node_packets_recv.wrapping_add(1);
        let header = packet.header;
        match packet.body {
            Body::ReqKeepalive { .. } => {
                self.stats.keepalive_packets_recv =
                    self.stats.keepalive_packets_recv.wrapping_add(1);
                // Every header carries its sender's generation. A follower that missed
                // a recovery (it followed a stale leader when the vnn map came) is
                // brought up to date here, within one keepalive period.
                if self.is_leader() && header.generation != self.generation {
                    info!(
                        peer = pnn,
                        theirs = header.generation,
                        ours = self.generation,
                        "node has an old generation: resending the vnn map"
                    );
                    out.push(Output::SendToPeer {
                        pnn,
                        packet: self.message_packet(
                            pnn,
                            srvid::LEADER,
                            self.pnn.to_le_bytes().to_vec(),
                        ),
                    });
                    self.send_vnn_map(pnn, out);
                }
            }
            Body::ReqControl(req) => {
                self.stats.node.req_control = self.stats.node.req_control.wrapping_add(1);
                let wants_reply = req.flags & CTRL_FLAG_NOREPLY == 0;
                if let Some(reply) = self.control(Requester::Peer(pnn), header.reqid, &req, out) {
                    if wants_reply {
                        self.reply_to(Requester::Peer(pnn), header.reqid, reply, out);
                    }
                }
            }
            Body::ReplyControl(reply) => {
                self.stats.node.reply_control = self.stats.node.reply_control.wrapping_add(1);
                self.control_reply(pnn, header.reqid, reply, out);
            }
            Body::ReqMessage(msg) => {
                self.stats.node.req_message = self.stats.node.req_message.wrapping_add(1);
                self.deliver_here(pnn, msg, out);
            }
            Body::ReqTunnel(tunnel) => self.peer_tunnel(pnn, tunnel, out),
            // Database traffic goes to the database thread (transport::DataPath).
            _ => {}
        }
    }

    fn control_reply(&mut self, from: u32, reqid: u32, reply: ReplyControl, out: &mut Vec<Output>) {
        match self.deferred.take_reply(reqid, from) {
            Ok(awaiting) => self.settle(reqid, awaiting, Settled::Replied { from, reply }, out),
            // Unknown or timed out: CTDB drops it too (§3.3).
            Err(NotAwaited::Unknown) => {}
            Err(NotAwaited::WrongPeer { asked }) => {
                warn!(
                    peer = from,
                    asked, reqid, "control reply from the wrong node"
                );
            }
        }
    }

    /// Ends the wait for a peer's reply to `reqid`: the one place that says what a
    /// reply, a deadline passed or the peer's loss means for each purpose.
    fn settle(
        &mut self,
        reqid: u32,
        awaiting: Awaiting<Purpose>,
        settled: Settled,
        out: &mut Vec<Output>,
    ) {
        if matches!(settled, Settled::TimedOut) && awaiting.purpose == Purpose::Forwarded {
            self.stats.timeouts_control = self.stats.timeouts_control.wrapping_add(1);
        }
        let (from, reply) = match settled {
            Settled::Replied { from, reply } => (Some(from), reply),
            Settled::TimedOut => (None, error_reply("ctdb_control timed out")),
            Settled::PeerGone => (None, error_reply("node is disconnected")),
        };
        match awaiting.purpose {
            Purpose::Forwarded => {
                if let Some(ReplyTo { who, reqid }) = awaiting.reply_to {
                    // The peer's own reply names it; a failure is ours.
                    self.reply_from(from.unwrap_or(self.pnn), who, reqid, reply, out);
                }
            }
            Purpose::NodesCheck => {
                if let Some(from) = from {
                    self.check_peer_nodes(from, &reply);
                }
            }
            Purpose::Takeover { run } => self.takeover_reply(run, reqid, reply, out),
            // Answered by this node's edges, never by a peer.
            Purpose::NodesFile { .. } | Purpose::PublicAddresses | Purpose::AddressChange => {
                if let Some(ReplyTo { who, reqid }) = awaiting.reply_to {
                    self.reply_to(who, reqid, reply, out);
                }
            }
        }
    }

    /// Compares a peer's node map with ours: a `nodes` file that differs between nodes
    /// is an administrator's error that CTDB only reports on reloadnodes.
    fn check_peer_nodes(&mut self, from: u32, reply: &ReplyControl) {
        let Ok(theirs) = NodeMap::decode(&reply.data) else {
            warn!(peer = from, "bad node map from peer");
            return;
        };
        let ours = self.node_map();
        // The first entry that differs, as (pnn, ours, theirs); a missing line shows
        // as "none".
        let show = |m: &NodeMap, i: usize| {
            m.nodes
                .get(i)
                .map_or("none".to_string(), |n| n.addr.ip().to_string())
        };
        let first_difference = (0..ours.nodes.len().max(theirs.nodes.len()))
            .find(|&i| show(&ours, i) != show(&theirs, i))
            .map(|i| (i, show(&ours, i), show(&theirs, i)));
        if let Some(link) = self.peers.get_mut(&from) {
            link.nodes_differ = first_difference.is_some();
        }
        if let Some((pnn, ours, theirs)) = first_difference {
            error!(
                peer = from,
                "the nodes file on node {from} differs from ours at pnn {pnn}: ours has {ours}, \
                 theirs has {theirs} (0.0.0.0 = deleted); fix it on every node, then run \
                 `ctdb reloadnodes`"
            );
        }
    }

    pub(super) fn peer_connected(&mut self, pnn: u32, out: &mut Vec<Output>) {
        let Some(link) = self.peers.get_mut(&pnn) else {
            warn!(peer = pnn, "connection from a node that is not a peer");
            return;
        };
        if link.connected {
            return;
        }
        self.succession_link_changed(pnn);
        let Some(link) = self.peers.get_mut(&pnn) else {
            return;
        };
        *link = PeerLink {
            connected: true,
            last_heard_ms: self.now.mono_ms,
            previous_incarnation: link.incarnation.or(link.previous_incarnation),
            ..PeerLink::default()
        };
        self.counters.peers.entry(pnn).or_default().link_up += 1;
        let node = &mut self.nodes[pnn as usize];
        node.flags &= !node_flags::DISCONNECTED;
        info!(peer = pnn, "node connected");
        // Whatever its guardian said is about an earlier run of it.
        self.gone_during_election.remove(&pnn);
        // Who we are, first: its guardian notice names it, should we die.
        out.push(Output::SendToPeer {
            pnn,
            packet: self.message_packet(
                pnn,
                srvid::INCARNATION,
                self.incarnation.to_le_bytes().to_vec(),
            ),
        });
        // Tell the newcomer our own flags, and check its nodes file matches ours.
        let own = self.own_flags();
        self.send_flags(pnn, own, own, out);
        self.forward_control(
            pnn,
            Some(Purpose::NodesCheck),
            &ReqControl {
                opcode: Opcode::GET_NODEMAP.0,
                srvid: 0,
                client_id: 0,
                flags: 0,
                data: Vec::new(),
            },
            out,
        );
        if self.is_leader() {
            out.push(Output::SendToPeer {
                pnn,
                packet: self.message_packet(pnn, srvid::LEADER, self.pnn.to_le_bytes().to_vec()),
            });
            self.recover(out);
            self.count_recovery_cause(pnn, out);
        }
    }

    /// A node that keeps rejoining makes the whole cluster recover again and again.
    /// Like CTDB, the leader bans a node that causes more than two recoveries per node
    /// of the cluster within `RecoveryBanPeriod`, for that period.
    fn count_recovery_cause(&mut self, pnn: u32, out: &mut Vec<Output>) {
        if !self.tunables.enabled(keys::ENABLE_BANS) {
            return;
        }
        let period_s = self.tunables.value(keys::RECOVERY_BAN_PERIOD);
        let window = u64::from(period_s) * 1000;
        let now = self.now.mono_ms;
        let limit = 2 * self.cluster_size();
        let causes = self.recovery_causes.entry(pnn).or_default();
        causes.retain(|t| now.saturating_sub(*t) < window);
        causes.push(now);
        if causes.len() > limit {
            causes.clear();
            warn!(
                peer = pnn,
                recoveries = limit + 1,
                period_s,
                "node keeps causing recoveries: banning it"
            );
            self.ban_peer(pnn, period_s, out);
        }
    }

    /// Asks `pnn` to ban itself for `secs` (SET_BAN_STATE, as CTDB's leader does).
    fn ban_peer(&mut self, pnn: u32, secs: u32, out: &mut Vec<Output>) {
        let ban = crate::protocol::control::BanState { pnn, time: secs };
        self.forward_control(
            pnn,
            None,
            &ReqControl {
                opcode: Opcode::SET_BAN_STATE.0,
                srvid: 0,
                client_id: 0,
                flags: CTRL_FLAG_NOREPLY,
                data: ban.encode(),
            },
            out,
        );
    }

    /// A database recovery failed because of `culprit`: after
    /// [`RECOVERY_FAILURES_BEFORE_BAN`] such failures in a row, ban it (itself if
    /// the leader is the culprit), so that the others recover without it.
    fn count_recovery_failure(&mut self, culprit: u32, out: &mut Vec<Output>) {
        let failures = self.recovery_failures.entry(culprit).or_default();
        *failures += 1;
        let failures = *failures;
        if failures < RECOVERY_FAILURES_BEFORE_BAN || !self.tunables.enabled(keys::ENABLE_BANS) {
            return;
        }
        self.recovery_failures.remove(&culprit);
        let secs = self.tunables.value(keys::RECOVERY_BAN_PERIOD);
        warn!(
            node = culprit,
            failures, secs, "node keeps failing database recoveries: banning it"
        );
        if culprit == self.pnn {
            self.ban_self(secs, out);
        } else {
            self.ban_peer(culprit, secs, out);
        }
    }

    /// The link with `pnn` is down: its connection closed (`silent` false) or we
    /// declared it dead after missed keepalives (`silent` true).
    pub(super) fn peer_disconnected(&mut self, pnn: u32, silent: bool, out: &mut Vec<Output>) {
        if !self.is_connected(pnn) {
            return;
        }
        let had_majority = self.has_majority();
        self.succession_link_changed(pnn);
        let mut pending_notice = None;
        if let Some(link) = self.peers.get_mut(&pnn) {
            link.connected = false;
            pending_notice = link.pending_notice.take();
        }
        self.counters.peers.entry(pnn).or_default().link_down += 1;
        let node = &mut self.nodes[pnn as usize];
        node.flags |= node_flags::DISCONNECTED | node_flags::UNHEALTHY;
        warn!(peer = pnn, "node disconnected");
        // Controls waiting on that node fail now, as in CTDB.
        for (reqid, awaiting) in self.deferred.take_from_gone_peer(pnn) {
            self.settle(reqid, awaiting, Settled::PeerGone, out);
        }
        if self.leader == Some(pnn) {
            info!(leader = pnn, "the leader is gone");
            self.leader = None;
            // Whatever pause an earlier contended attempt left, the holder then was
            // most likely the leader just lost: race now if it fell silent, or, if
            // its connection closed, once its guardian says it is dead (see
            // `takeover`) or after a short wait without word. Racing before its
            // lock holder has died too would only be contended. After failed
            // attempts the pause stays (each failure counts towards a ban).
            if self.lock_failures == 0 && !self.take_unanswered {
                let wait = if silent { 0 } else { GUARDIAN_NOTICE_WAIT_MS };
                self.next_election_ms = self.now.mono_ms + wait;
            }
        }

        if self.is_leader()
            && self.lock != LockState::NotConfigured
            && had_majority
            && !self.has_majority()
        {
            // Cut off from most of the cluster: let the others elect a leader among
            // themselves rather than leave them all without one (`takeover`:
            // partitions).
            self.step_down("connected to no majority of the nodes any more", out);
        } else if self.is_leader() {
            // Its addresses may move only once the last lease we granted it has
            // surely run out, or its guardian says they are gone.
            self.guard_lost_node(pnn);
            self.recover(out);
        }
        if let Some(packet) = pending_notice {
            self.guardian_notice(pnn, packet);
        }
    }

    // ---- timers --------------------------------------------------------------

    pub(super) fn timers(&mut self, out: &mut Vec<Output>) {
        let now = self.now.mono_ms;
        self.database_recovery_timer(out);
        if now >= self.next_keepalive_ms {
            self.next_keepalive_ms = now + self.tunables.keepalive_interval_ms();
            self.keepalives(out);
        }
        if now >= self.next_liveness_ms {
            self.next_liveness_ms = now + (self.tunables.keepalive_interval_ms() / 5).max(1);
            self.declare_silent_peers_dead(out);
        }
        if now >= self.next_leader_broadcast_ms {
            self.next_leader_broadcast_ms =
                now + LEADER_BROADCAST_MS.min(self.leader_timeout_ms / 2).max(100);
            if self.is_leader() {
                self.broadcast_leader(self.pnn, out);
            }
        }
        if self.banned_until_ms.is_some_and(|t| now >= t) {
            self.banned_until_ms = None;
            info!("ban expired");
            let flags = self.own_flags() & !node_flags::BANNED;
            self.set_own_flags(flags, out);
        }
        for (reqid, awaiting) in self.deferred.take_expired(now) {
            self.settle(reqid, awaiting, Settled::TimedOut, out);
        }
        if self.leader.is_some_and(|l| l != self.pnn)
            && now > self.leader_heard_ms + self.leader_timeout_ms
        {
            warn!(leader = ?self.leader, "no broadcast from the leader within the leader timeout");
            self.leader = None;
        }
    }

    /// Sends a keepalive to every connected peer (§2.4).
    fn keepalives(&mut self, out: &mut Vec<Output>) {
        let uptime = (self.now.wall.sec - self.start_time.sec).max(0) as u32;
        for pnn in self.connected_peers() {
            self.stats.keepalive_packets_sent = self.stats.keepalive_packets_sent.wrapping_add(1);
            out.push(Output::SendToPeer {
                pnn,
                packet: Packet {
                    header: self.header(pnn, 0),
                    body: Body::ReqKeepalive {
                        version: Some(KEEPALIVE_VERSION),
                        uptime: Some(uptime),
                    },
                },
            });
        }
    }

    /// Declares dead every peer silent for `KeepaliveLimit` keepalive periods: CTDB's
    /// meaning of the tunables, measured from the last packet rather than counted in
    /// whole periods, so detection is bounded by the limit plus a fifth of a period.
    fn declare_silent_peers_dead(&mut self, out: &mut Vec<Output>) {
        let silence = self.tunables.keepalive_timeout_ms();
        let now = self.now.mono_ms;
        let dead: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, l)| l.connected && now.saturating_sub(l.last_heard_ms) >= silence)
            .map(|(p, _)| *p)
            .collect();
        for pnn in dead {
            warn!(
                peer = pnn,
                silence_ms = silence,
                "node missed its keepalives: declaring it dead"
            );
            out.push(Output::DropPeer { pnn });
            self.peer_disconnected(pnn, true, out);
        }
    }

    // ---- election ------------------------------------------------------------

    /// Whether this node may lead now. There is no quorum: a node cannot tell peers
    /// that died from peers it is cut off from, and the last survivor of a cluster
    /// must keep serving. The recovery lock alone decides between partitions.
    pub(super) fn eligible(&self) -> bool {
        self.leader_capability && self.own_flags() & (node_flags::BANNED | node_flags::STOPPED) == 0
    }

    /// Runs after every input: steps down when no longer entitled to lead, and starts
    /// an election when there is no live leader.
    pub(super) fn election_check(&mut self, out: &mut Vec<Output>) {
        let eligible = self.eligible();
        if self.is_leader() && !eligible {
            self.step_down("this node is banned or stopped", out);
        }
        if self.lock == LockState::NotConfigured {
            let candidate = self
                .nodes
                .iter()
                .filter(|n| n.addr.is_some())
                .find(|n| {
                    if n.pnn == self.pnn {
                        eligible
                    } else {
                        self.is_connected(n.pnn)
                            && n.flags & (node_flags::BANNED | node_flags::STOPPED) == 0
                    }
                })
                .map(|n| n.pnn);
            if candidate == Some(self.pnn) && !self.is_leader() {
                self.become_leader(out);
            }
            return;
        }
        if self.has_majority() {
            self.minority_since_ms = None;
            self.seen_majority = true;
        } else if self.minority_since_ms.is_none() && self.seen_majority {
            // Only a node that has been part of a majority waits: one that has
            // not, since it started, races at once as CTDB's nodes do (the first
            // daemons of a cluster starting together must not wait for the
            // others), and finds the lock held if a majority already leads.
            self.minority_since_ms = Some(self.now.mono_ms);
        }
        if self.leader.is_none()
            && eligible
            && self.lock == LockState::Idle
            && self.now.mono_ms >= self.race_allowed_at()
        {
            info!("no leader: racing for the recovery lock");
            self.lock = LockState::Taking;
            self.take_unanswered = true;
            out.push(Output::TakeReclock);
        }
    }

    /// The nodes in `nodes` (a deleted line does not count), as every node counts
    /// them.
    pub(super) fn cluster_size(&self) -> usize {
        self.nodes.iter().filter(|n| n.addr.is_some()).count()
    }

    /// Whether this node and the peers connected to it are more than half of the
    /// nodes in `nodes`, not counting nodes whose guardian said they are dead (a
    /// dead daemon leads nowhere: a 2-node cluster's survivor of a crash need not
    /// wait).
    pub(super) fn has_majority(&self) -> bool {
        let mut total = 0;
        let mut connected = 0;
        for n in self.nodes.iter().filter(|n| n.addr.is_some()) {
            let link = self.peers.get(&n.pnn);
            if link.is_some_and(|l| l.daemon_gone && !l.connected) {
                continue;
            }
            total += 1;
            if n.pnn == self.pnn || link.is_some_and(|l| l.connected) {
                connected += 1;
            }
        }
        2 * connected > total
    }

    /// How long a node connected to no majority waits before racing for the lock:
    /// long enough for the others, if they are alive and together, to notice the
    /// same partition (one keepalive timeout, plus as much again for skew) and take
    /// the lock first, and for the leases of a leader that just gave it up to end.
    pub(super) fn minority_race_delay_ms(&self) -> u64 {
        2 * self.tunables.keepalive_timeout_ms() + self.lease_ms() + MINORITY_MARGIN_MS
    }

    /// When this node may next race for the lock: after the pause of its last
    /// attempt, and, connected to no majority, after the minority delay.
    pub(super) fn race_allowed_at(&self) -> u64 {
        let minority_gate = match (self.lock, self.minority_since_ms) {
            (LockState::NotConfigured, _) | (_, None) => 0,
            (_, Some(since)) => since + self.minority_race_delay_ms(),
        };
        self.next_election_ms.max(minority_gate)
    }

    pub(super) fn reclock_status(&mut self, status: ReclockStatus, out: &mut Vec<Output>) {
        let now = self.now.mono_ms;
        // Notices confirmed during the attempt count for the election it decides, and
        // no longer (see `takeover`).
        let gone = std::mem::take(&mut self.gone_during_election);
        if !matches!(status, ReclockStatus::Lost(_)) {
            self.take_unanswered = false;
        }
        match status {
            ReclockStatus::Taken => {
                if self.lock != LockState::Taking {
                    // An answer to a take we no longer want.
                    out.push(Output::ReleaseReclock);
                    return;
                }
                self.lock = LockState::Held;
                self.lock_failures = 0;
                if self.leader.is_none() && self.eligible() {
                    self.gone_during_election = gone;
                    self.become_leader(out);
                    self.gone_during_election.clear();
                } else {
                    info!(leader = ?self.leader, "took the recovery lock but a leader exists: releasing");
                    self.lock = LockState::Idle;
                    out.push(Output::ReleaseReclock);
                }
            }
            ReclockStatus::Contended => {
                if self.lock == LockState::Taking {
                    self.lock = LockState::Idle;
                }
                self.next_election_ms = now + ELECTION_RETRY_MS;
            }
            ReclockStatus::Failed(reason) => {
                if self.lock == LockState::Taking {
                    self.lock = LockState::Idle;
                }
                // A failure counts towards a ban only on a node alone: peers that
                // are connected and leaderless are failing too, so the volume is
                // at fault, not this node (banning all of them would be a total
                // outage; a node whose own volume is broken goes UNHEALTHY).
                if self.connected_peers().is_empty() {
                    self.lock_failures += 1;
                }
                error!(%reason, failures = self.lock_failures, "cannot take the recovery lock");
                self.next_election_ms = now + ELECTION_FAILURE_RETRY_MS;
                if self.lock_failures >= LOCK_FAILURES_BEFORE_BAN
                    && self.tunables.enabled(keys::ENABLE_BANS)
                {
                    self.lock_failures = 0;
                    let secs = self.tunables.value(keys::RECOVERY_BAN_PERIOD);
                    error!(
                        secs,
                        "banning this node: it keeps failing to take the recovery lock"
                    );
                    self.ban_self(secs, out);
                }
            }
            ReclockStatus::Lost(reason) => {
                let was_held = self.lock == LockState::Held;
                self.lock = LockState::Idle;
                self.next_election_ms = now + ELECTION_RETRY_MS;
                if was_held {
                    // Whatever took our lock away (a volume unmounted under it, a
                    // lock file replaced) may let us take a lock at once that is not
                    // the others' (a fresh file in the empty mount point): let the
                    // other nodes race first, as a minority would.
                    self.next_election_ms = now + self.minority_race_delay_ms();
                }
                if self.is_leader() {
                    error!(%reason, "lost the recovery lock: stepping down");
                    self.leader = None;
                    self.end_lease();
                    // A run of ours must not go on handing out addresses: the next
                    // leader runs its own (found by the simulation: both gave one
                    // address to two nodes once the next leader no longer waited).
                    self.drop_takeover_run();
                    self.takeover_wanted = false;
                    self.broadcast_leader(UNKNOWN_PNN, out);
                } else if was_held {
                    warn!(%reason, "recovery lock lost");
                }
            }
        }
    }

    fn become_leader(&mut self, out: &mut Vec<Output>) {
        info!(generation = self.generation, "this node is now the leader");
        self.leader = Some(self.pnn);
        self.holds.led_since_ms = self.now.mono_ms;
        self.holds.promises.clear();
        // A new leader cannot know what other nodes hold, or are being given by a
        // predecessor that may not know it lost the lock, until leases run out.
        self.guard_after_election();
        // ... unless the survivors' receipts bound what an unseen predecessor keeps.
        self.start_succession();
        self.broadcast_leader(self.pnn, out);
        self.recover(out);
    }

    pub(super) fn step_down(&mut self, why: &str, out: &mut Vec<Output>) {
        warn!(why, "stepping down as leader");
        self.leader = None;
        self.drop_takeover_run();
        self.takeover_wanted = false;
        // Our lease was the lock: the addresses go now, before anyone may take them.
        self.end_lease();
        if matches!(self.lock, LockState::Held | LockState::Taking) {
            self.lock = LockState::Idle;
            out.push(Output::ReleaseReclock);
        }
        self.next_election_ms = self.now.mono_ms + ELECTION_RETRY_MS;
        // "Election under way" (§8.1): followers stop trusting us at once.
        self.broadcast_leader(UNKNOWN_PNN, out);
    }

    /// Sends the LEADER message with `leader` to every connected peer and local client.
    fn broadcast_leader(&mut self, leader: u32, out: &mut Vec<Output>) {
        let data = leader.to_le_bytes().to_vec();
        for pnn in self.connected_peers() {
            out.push(Output::SendToPeer {
                pnn,
                packet: self.message_packet(pnn, srvid::LEADER, data.clone()),
            });
        }
        if leader != UNKNOWN_PNN {
            self.deliver_to_clients(srvid::LEADER, &data, out);
        }
    }

    fn leader_broadcast_received(&mut self, sender: u32, data: &[u8], out: &mut Vec<Output>) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            warn!(
                peer = sender,
                len = data.len(),
                "leader message of the wrong size"
            );
            return;
        };
        let claimed = u32::from_le_bytes(bytes);
        if sender == self.pnn {
            return;
        }
        if claimed == UNKNOWN_PNN {
            if self.leader == Some(sender) {
                info!(peer = sender, "the leader stepped down");
                self.leader = None;
            }
            return;
        }
        if claimed != sender {
            return; // only a node itself may claim leadership
        }
        if self.is_leader() {
            if self.lock == LockState::NotConfigured && sender < self.pnn {
                // Without a lock the lowest pnn wins a double claim.
                self.step_down("a lower-numbered node leads", out);
            } else {
                error!(
                    peer = sender,
                    "another node claims to lead while this one does"
                );
                return;
            }
        }
        if self
            .leader
            .is_some_and(|l| l != sender && l != self.pnn && self.is_connected(l))
        {
            // Two claims at once: one of the two lost the lock and says so (UNKNOWN)
            // when its lock check notices, or its link goes. Until then we stay with
            // the leader we follow: in particular we never go back to acknowledging a
            // predecessor's grants after reporting to its successor (`succession`).
            info!(
                leader = ?self.leader,
                claimant = sender,
                "another node claims to lead while ours does: ignored until ours lets go"
            );
            return;
        }
        if self.leader != Some(sender) {
            info!(leader = sender, "new leader");
            // Ask the new leader for a lease at once (`takeover`: leases).
            self.next_lease_request_ms = self.now.mono_ms;
        }
        self.leader = Some(sender);
        self.last_leader = Some(sender);
        self.leader_heard_ms = self.now.mono_ms;
    }

    // ---- recovery ------------------------------------------------------------

    /// The leader's recovery: a new generation and vnn map for every connected node.
    /// This is where database recovery will run; today there is nothing to merge.
    pub(super) fn recover(&mut self, out: &mut Vec<Output>) {
        // A recovery under way is superseded: its answer will be ignored.
        self.database_recovery = None;
        let mut generation = self.random_u32();
        while generation <= crate::protocol::control::INVALID_GENERATION {
            generation = self.random_u32();
        }
        let vnn_map: Vec<u32> = self
            .nodes
            .iter()
            .filter(|n| n.addr.is_some() && n.flags & node_flags::INACTIVE == 0)
            .filter(|n| {
                n.pnn != self.pnn
                    || self.capabilities & crate::protocol::control::capabilities::LMASTER != 0
            })
            .map(|n| n.pnn)
            .collect();
        let map = VnnMap {
            generation,
            map: vnn_map,
        };
        // The databases first: every active node must hold the same records
        // before the new map says where each record's lmaster is.
        let nodes: Vec<u32> = self
            .nodes
            .iter()
            .filter(|n| n.addr.is_some() && n.flags & node_flags::INACTIVE == 0)
            .map(|n| n.pnn)
            .collect();
        info!(generation, nodes = ?nodes, "recovering databases");
        self.recovery_mode = 1;
        self.last_recovery_started = self.now.wall;
        out.push(Output::RecoverDatabases { generation, nodes });
        self.database_recovery = Some(DatabaseRecovery {
            map,
            deadline_ms: self.now.mono_ms + DATABASE_RECOVERY_TIMEOUT_MS,
        });
    }

    /// The database thread answered: install the recovery's map everywhere, or
    /// try again with a new generation.
    pub(super) fn databases_recovered(
        &mut self,
        generation: u32,
        ok: bool,
        culprit: Option<u32>,
        out: &mut Vec<Output>,
    ) {
        let Some(recovery) = self
            .database_recovery
            .take_if(|r| r.map.generation == generation)
        else {
            debug!(
                generation,
                "answer for a database recovery that was superseded"
            );
            return;
        };
        if !self.is_leader() {
            return;
        }
        if !ok {
            warn!(
                generation,
                ?culprit,
                "database recovery failed; recovering again"
            );
            if let Some(culprit) = culprit {
                self.count_recovery_failure(culprit, out);
            }
            self.recover(out);
            return;
        }
        self.recovery_failures.clear();
        let map = recovery.map;
        self.apply_vnn_map(&map);
        info!(generation, nodes = ?map.map, "recovery complete");
        self.want_takeover();
        for pnn in self.connected_peers() {
            self.send_vnn_map(pnn, out);
        }
        // The leader tells every connected node's clients that a recovery ended
        // (samba §5.5, §7.2), after the new map on each connection.
        self.route_message(
            BROADCAST_CONNECTED,
            ReqMessage {
                srvid: srvid::RECONFIGURE,
                data: Vec::new(),
            },
            out,
        );
    }

    /// A database recovery that outlived its deadline starts over.
    fn database_recovery_timer(&mut self, out: &mut Vec<Output>) {
        if self
            .database_recovery
            .as_ref()
            .is_some_and(|r| self.now.mono_ms >= r.deadline_ms)
        {
            self.database_recovery = None;
            if self.is_leader() {
                warn!("database recovery timed out; recovering again");
                self.recover(out);
            }
        }
    }

    fn send_vnn_map(&mut self, to: u32, out: &mut Vec<Output>) {
        let data = VnnMap {
            generation: self.generation,
            map: self.vnn_map.clone(),
        }
        .encode();
        self.forward_control(
            to,
            None,
            &ReqControl {
                opcode: Opcode::SETVNNMAP.0,
                srvid: 0,
                client_id: 0,
                flags: CTRL_FLAG_NOREPLY,
                data,
            },
            out,
        );
    }

    /// Installs a generation and vnn map from the leader (or ourselves as leader).
    pub(super) fn apply_vnn_map(&mut self, map: &VnnMap) {
        self.generation = map.generation;
        self.vnn_map = map.map.clone();
        self.recovery_mode = 0;
        self.last_recovery_started = self.now.wall;
        self.last_recovery_finished = self.now.wall;
        self.stats.num_recoveries = self.stats.num_recoveries.wrapping_add(1);
        self.counters.recoveries += 1;
        self.queue_event(Event::StartRecovery, AfterEvent::Nothing);
        self.queue_event(Event::Recovered, AfterEvent::Nothing);
        if self.runstate == Runstate::FirstRecovery {
            self.begin_startup();
        }
    }

    // ---- flags ---------------------------------------------------------------

    /// Changes this node's own flags, tells every connected peer, and re-runs
    /// recovery if we lead.
    pub(super) fn set_own_flags(&mut self, flags: u32, out: &mut Vec<Output>) {
        let old = self.own_flags();
        if old == flags {
            return;
        }
        self.nodes[self.pnn as usize].flags = flags;
        info!(old, new = flags, "own flags changed");
        for pnn in self.connected_peers() {
            self.send_flags(pnn, flags, old, out);
        }
        self.node_flags_changed(old, flags, out);
    }

    fn send_flags(&mut self, to: u32, new: u32, old: u32, out: &mut Vec<Output>) {
        let change = NodeFlagChange {
            pnn: self.pnn,
            new_flags: new,
            old_flags: old,
        };
        self.forward_control(
            to,
            None,
            &ReqControl {
                opcode: Opcode::MODIFY_FLAGS.0,
                srvid: 0,
                client_id: 0,
                flags: CTRL_FLAG_NOREPLY,
                data: change.encode(),
            },
            out,
        );
    }

    /// A peer told us its flags (MODIFY_FLAGS). Our own flags and our view of its
    /// DISCONNECTED bit are never changed this way (`ctdb_monitor.c` behaviour, §6.2).
    pub(super) fn peer_flags(&mut self, change: NodeFlagChange, out: &mut Vec<Output>) {
        if change.pnn == self.pnn {
            return;
        }
        let Some(node) = self.nodes.get_mut(change.pnn as usize) else {
            return;
        };
        if node.addr.is_none() {
            return;
        }
        let flags = (change.new_flags & !(node_flags::DISCONNECTED | node_flags::DELETED))
            | (node.flags & node_flags::DISCONNECTED);
        if node.flags != flags {
            let old = std::mem::replace(&mut node.flags, flags);
            self.node_flags_changed(old, flags, out);
        }
    }

    /// The leader's answer to a node's flags changing from `old` to `new`: a recovery
    /// when the change moves the node in or out of the vnn map (an INACTIVE bit),
    /// else only a takeover run. As in 4.17, health and DISABLED alone do not
    /// recover the cluster (which would run the recovery events everywhere and
    /// change the generation): 4.17 counts one recovery where a node's first good
    /// monitor made ours count two (tests/replay.rs, STATISTICS).
    fn node_flags_changed(&mut self, old: u32, new: u32, out: &mut Vec<Output>) {
        if !self.is_leader() {
            return;
        }
        if (old ^ new) & node_flags::INACTIVE != 0 {
            self.recover(out);
        } else {
            self.want_takeover();
        }
    }

    pub(super) fn ban_self(&mut self, secs: u32, out: &mut Vec<Output>) {
        if secs == 0 {
            self.banned_until_ms = None;
            let flags = self.own_flags() & !node_flags::BANNED;
            self.set_own_flags(flags, out);
        } else {
            self.banned_until_ms = Some(self.now.mono_ms + u64::from(secs) * 1000);
            let flags = self.own_flags() | node_flags::BANNED;
            self.set_own_flags(flags, out);
        }
    }

    pub(super) fn connected_peers(&self) -> Vec<u32> {
        self.peers
            .iter()
            .filter(|(_, l)| l.connected)
            .map(|(p, _)| *p)
            .collect()
    }

    // ---- nodes file ----------------------------------------------------------

    /// Asks the edge to read the nodes file for GET_NODES_FILE or RELOAD_NODES_FILE;
    /// the control is answered when [`super::Input::NodesFile`] comes back.
    pub(super) fn request_nodes_file(
        &mut self,
        requester: Requester,
        reqid: u32,
        reload: bool,
        out: &mut Vec<Output>,
    ) {
        // A control sent with NOREPLY (reqid 0) is carried out, not answered.
        let reply_to = (reqid != 0).then_some(ReplyTo {
            who: requester,
            reqid,
        });
        let id = self.defer_reply(Purpose::NodesFile { reload }, reply_to);
        out.push(Output::ReadNodesFile {
            request: u64::from(id),
        });
    }

    pub(super) fn nodes_file_read(
        &mut self,
        request: u64,
        result: Result<Vec<Option<std::net::IpAddr>>, String>,
        out: &mut Vec<Output>,
    ) {
        let Some(awaiting) =
            self.take_deferred(request, |p| matches!(p, Purpose::NodesFile { .. }))
        else {
            return;
        };
        let Purpose::NodesFile { reload } = awaiting.purpose else {
            return;
        };
        let entries = match result {
            Ok(e) => e,
            Err(reason) => {
                error!(%reason, "cannot read the nodes file");
                if let Some(ReplyTo { who, reqid }) = awaiting.reply_to {
                    self.reply_to(who, reqid, error_reply("cannot read the nodes file"), out);
                }
                return;
            }
        };
        let reply = if reload {
            self.reload_nodes(entries, out)
        } else {
            let map = NodeMap {
                nodes: entries
                    .iter()
                    .enumerate()
                    .map(|(i, a)| crate::protocol::control::NodeAndFlags {
                        pnn: i as u32,
                        flags: if a.is_some() { 0 } else { node_flags::DELETED },
                        addr: std::net::SocketAddr::new(
                            a.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                            super::CTDB_PORT,
                        ),
                    })
                    .collect(),
            };
            Node::reply_ok(map.encode())
        };
        if let Some(ReplyTo { who, reqid }) = awaiting.reply_to {
            self.reply_to(who, reqid, reply, out);
        }
    }

    /// Applies a re-read nodes file: new nodes appear disconnected, removed ones become
    /// DELETED; our own line must not change.
    fn reload_nodes(
        &mut self,
        entries: Vec<Option<std::net::IpAddr>>,
        out: &mut Vec<Output>,
    ) -> ReplyControl {
        if entries.len() < self.nodes.len() {
            error!("reloadnodes: lines were removed from the nodes file; delete a node by commenting its line with #");
            return error_reply("nodes may only be deleted by commenting out their line");
        }
        let own_addr = self.nodes[self.pnn as usize].addr;
        if entries.get(self.pnn as usize).copied().flatten() != own_addr {
            error!("reloadnodes: this node's own line changed; restart it instead");
            return error_reply("this node's own entry in the nodes file changed");
        }
        for (i, addr) in entries.iter().enumerate() {
            let pnn = i as u32;
            match self.nodes.get_mut(i) {
                Some(node) if node.addr == *addr => {}
                Some(node) => {
                    info!(pnn, ?addr, "nodes file entry changed");
                    node.addr = *addr;
                    node.flags = match addr {
                        None => node_flags::DELETED | node_flags::DISCONNECTED,
                        Some(_) => node_flags::DISCONNECTED | node_flags::UNHEALTHY,
                    };
                    if addr.is_none() {
                        self.peers.remove(&pnn);
                    } else {
                        self.peers.insert(pnn, PeerLink::default());
                    }
                }
                None => {
                    info!(pnn, ?addr, "node added");
                    self.nodes.push(super::NodeInfo {
                        pnn,
                        addr: *addr,
                        flags: match addr {
                            None => node_flags::DELETED | node_flags::DISCONNECTED,
                            Some(_) => node_flags::DISCONNECTED | node_flags::UNHEALTHY,
                        },
                    });
                    if addr.is_some() {
                        self.peers.insert(pnn, PeerLink::default());
                    }
                }
            }
        }
        out.push(Output::SetPeers(entries));
        if self.is_leader() {
            self.recover(out);
        }
        Node::reply_ok(Vec::new())
    }
}

/// How the wait for a peer's reply ended.
#[derive(Debug)]
enum Settled {
    /// The peer asked replied.
    Replied { from: u32, reply: ReplyControl },
    /// Its deadline passed first.
    TimedOut,
    /// The peer left first.
    PeerGone,
}

/// A failed control with CTDB's status −1 and `text`.
pub(super) fn error_reply(text: &str) -> ReplyControl {
    super::controls::error(-1, text)
}

/// How long the leader waits for its database thread's report on a recovery
/// before it starts over: a safety net, since the thread gives up by itself after
/// 30 s without an answer from any node. As CTDB's `RecoverTimeout` (120 s): a
/// recovery of a million records takes seconds per step, longer on a loaded
/// machine, and starting it over would only start the same work again.
const DATABASE_RECOVERY_TIMEOUT_MS: u64 = 120_000;

/// A recovery waiting for the databases.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DatabaseRecovery {
    /// The generation and map to install once they are done.
    pub(super) map: VnnMap,
    /// When to give up and start over.
    pub(super) deadline_ms: u64,
}
