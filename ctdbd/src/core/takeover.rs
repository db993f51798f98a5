//! Public addresses: the leader's takeover runs, every node's release and take of
//! addresses, and the leases that keep one address off two nodes.
//!
//! # Takeover run (leader only; DESIGN.md "How a failover flows", step 4)
//! 1. *Gather*: ask every active node for the addresses it knows (with the owner it
//!    believes in) and those it can host now (`GET_PUBLIC_IPS`, plain and
//!    `ONLY_AVAILABLE`).
//! 2. *Allocate* with [`crate::ipalloc::allocate`].
//! 3. *Release*: every node that holds an address that moves gets `RELEASE_IP`; the
//!    run waits until all have answered, i.e. removed the address.
//! 4. *Take*: only then each new owner gets `TAKEOVER_IP` (adds the address,
//!    announces it).
//! 5. `IPREALLOCATED` to everyone; answer the `TAKEOVER_RUN` requesters.
//!
//! A failed step (an error status, a node lost, a timeout) fails the run; another run
//! follows a second later.
//!
//! # Leases (DESIGN.md "Safety: public IPs are held under leases")
//! A node may keep public addresses only while its lease is valid: the leader's
//! lease is holding the recovery lock (it ends the moment the node stops leading),
//! and for its own addresses also being *backed* by enough of its followers'
//! acknowledgements, or unbacked long enough on purpose (`succession`);
//! a follower asks the leader it follows for its lease every quarter lease
//! (`LEASE_REQUEST`, a sequence number), and the leader, only while it leads with
//! the lock, grants it (`LEASE_GRANT`, the sequence number and the lease length).
//! The follower's lease then lasts the granted length *from when it sent the
//! request*; the leader remembers the grant as lasting from when the request
//! *arrived*, which is later. So the leader knows a bound on every lease it granted
//! that needs no assumption about flight times: a node whose requests stopped
//! reaching it holds nothing later than its last request's arrival + lease (+ a
//! margin for clock rates), however long the leader's own packets keep reaching it.
//! A node whose lease runs out releases all its addresses.
//!
//! The leader keeps a *lease guard* per node (pnn → until), for nodes that may hold
//! addresses it cannot see:
//! - losing node X guards X until the last lease we granted X ends + the margin.
//!   With `IPLeaseTimeMs` shorter than the keepalive timeout, a node that fell
//!   silent (power loss, cut cables) is past it by the time it is declared dead: its
//!   addresses move at once;
//! - becoming leader at `t` guards every other node until `t + IPLeaseTimeMs +
//!   LEASE_MARGIN_MS`: we cannot know what a predecessor granted. One not connected
//!   may still hold addresses from the previous leader until that lease runs out.
//!   One that is connected hears the new leader at once and takes part in the
//!   takeover run, which has it release what it holds before anyone takes it — but
//!   the previous leader may still be giving it addresses: a leader whose lock was
//!   taken away goes on leading until its lock check notices (up to 250 ms), and
//!   nothing stops its run from handing out what the new one hands out too. So
//!   connected nodes are guarded as well, unless that previous leader is dead by its
//!   guardian's word (below): a dead leader runs nothing. A connected node spared so
//!   may still be lost before it releases (its link broken, not yet noticed): it is
//!   then guarded as if we had granted it a lease at our election, which is when the
//!   dead leader's last grant to it ends at the latest.
//! - `succession` lowers the guards of an unseen predecessor (the leader we
//!   followed) and of the nodes connected at the election once the survivors'
//!   reports of its grants bound what it may keep: after its power loss they end
//!   about a lease + margin after its last grant, not after our election.
//!
//! # Partitions: a leader cut off from the majority lets go (`cluster`)
//! The lock alone decides who may lead, so a leader cut off from every peer but
//! still able to reach the lock would keep it, and the others, unable to take it,
//! would lose their leases and serve nothing: a total outage for as long as the
//! partition lasts. So a leader that loses its majority (itself and its connected
//! peers no longer more than half of `nodes`, not counting nodes dead by their
//! guardian's word) gives up the lock and its own addresses at once; and a node
//! that has been part of a majority and is connected to none any more races for the
//! lock only after a minority's wait (two keepalive timeouts + a lease + 0.5 s),
//! which gives a majority that is alive and together the time to notice the same
//! partition and take the lock first. A node that has not been part of a majority
//! since it started races at once, as before: the first nodes of a cluster starting
//! together must not wait for the others (a majority that already leads holds the
//! lock). If no
//! majority takes it — the others are really dead — the minority takes it after the
//! wait and serves: the last survivor serves every address, a few seconds later.
//! Safety never rests on this rule: it is the lock and the leases that keep one
//! address off two nodes; the rule only decides which side gets the lock.
//!
//! A takeover run starts only when no guard is pending: a run may move any address,
//! so it waits for all of them (the simplest rule that is right).
//!
//! What keeps the run of a previous leader from mixing with the new one's when they
//! do not wait for each other: a leader that loses the lock drops its run at once;
//! a node takes or releases addresses only for the leader it follows (or an
//! administrator); its own take in progress counts as held in GET_PUBLIC_IPS, and a
//! release that comes during it is answered only when the address is gone again.
//!
//! # Guardian notices: a crash need not wait for the lease
//! When X's daemon dies, X's guardian removes every address the daemon held and, if
//! every removal worked, tells each peer `DAEMON_GONE { pnn: X, incarnation }`
//! (`protocol::control::srvid`) on a connection of its own from X's address. Every
//! daemon draws a random incarnation at start and announces it to each peer as soon
//! as their link is up (`INCARNATION`); the peer keeps the last one X announced. A
//! notice is *confirmed* when
//! - X is not connected here: a notice about a node that is connected again is stale
//!   (its new daemon may already hold addresses), and
//! - it names the incarnation X announced on its last connection here: a notice
//!   delayed past a restart of X cannot speak for the newer daemon, which announced
//!   another incarnation when it connected.
//!
//! A connection that came up and announced nothing is no daemon yet (a daemon
//! announces itself first thing): a notice that arrives while one is up is kept,
//! and judged as above when it goes — against the incarnation announced before it.
//! That connection is often the dead daemon's own doing: its listening socket can
//! complete our reconnect in the moment before it closes, and its guardian's
//! connection then makes the link look whole.
//!
//! A confirmed notice lifts X's guard at the leader (the run may start at once), and
//! if X is the leader this node followed before it led, the guards of the nodes it
//! is connected to as well: a dead predecessor runs nothing. A node that is not
//! leading keeps a confirmed notice only for the lock attempt it is making, or
//! starts one that very moment when X is the leader it followed and it was waiting
//! for that word: if the attempt makes it leader, X gets no election guard, nor, X
//! having led, do connected nodes. Any other outcome of the attempt forgets the
//! notice, and so does X connecting; a notice heard at any other time is not kept
//! (between it and a later election another leader could have held the lock, unseen
//! from here, and given addresses to a restarted X that never connected here).
//!
//! This is what makes a kill of the leader fast: when the leader's connection
//! closes, its followers wait for its guardian's notice (at most
//! `GUARDIAN_NOTICE_WAIT_MS`, in `cluster`) and race for the lock the moment it
//! comes, by which time the dead leader's lock holder has died too (racing earlier
//! would be contended, and a contended attempt forgets the notice). A notice that
//! comes during the race or just after it counts as well.
//!
//! What the rules rely on: a notice is not in flight longer than it takes X's daemon
//! to restart, join another leader, be given addresses, and that leader to be
//! replaced by this node (seconds; the lease margin already assumes a broadcast is
//! not in flight for 200 ms); and a dead predecessor's last packets reach the other
//! nodes before the new leader's first ones. Not covered: a predecessor that lost
//! the lock without noticing, cut off from this node but not from others, that
//! hands out an address in the moments before its lock check notices and then
//! crashes before this node's guards would have run out. Without a notice — power
//! loss, a partition, a guardian that could not remove everything — the lease wait
//! stays.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tracing::{error, info, warn};

use super::deferred::{Awaiting, ReplyTo};
use super::events::AfterEvent;
use super::{Node, Output, Purpose, Requester};
use crate::events::Event;
use crate::fanout::FanOut;
use crate::ipalloc;
use crate::protocol::control::{
    node_flags, srvid, AddrInfo, Connection, DaemonGone, LeaseGrant, LeaseRequest, Opcode,
    PublicIp, PublicIpList, Runstate, SrvidMessage, TickleList,
};
use crate::protocol::packet::{ReplyControl, ReqControl, CTRL_FLAG_NOREPLY, UNKNOWN_PNN};
use crate::tunables::keys;

/// GET_PUBLIC_IPS flag: only the addresses this node can host now (§4.1).
pub const PUBLIC_IP_FLAGS_ONLY_AVAILABLE: u32 = 0x0001_0000;
/// Added to a lost node's lease before its addresses go elsewhere: covers clock rate
/// differences between nodes, and, for a new leader's guards, a predecessor that has
/// not yet noticed it lost the lock.
pub(super) const LEASE_MARGIN_MS: u64 = 200;
/// A follower asks for its lease this many times per lease length: often enough
/// that each request's promise (`holds`: no hold granted before the middle of the
/// lease, bounded from the previous grant's stamp) outlasts the next request.
const LEASE_REQUESTS_PER_LEASE: u64 = 8;
/// Lease requests older than this are forgotten unanswered.
const LEASE_REQUEST_MAX_AGE_MS: u64 = 10_000;
/// Pause after a failed takeover run before the next.
const TAKEOVER_RETRY_MS: u64 = 1000;

/// What one control of a takeover run asked (the node is the fan-out's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// GET_PUBLIC_IPS: every address the node knows, and who holds it.
    Known,
    /// GET_PUBLIC_IPS, only those it can host.
    Available,
    Release,
    Take,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Gather,
    Release,
    Take,
}

/// The leader's takeover run in progress.
#[derive(Debug)]
pub(super) struct TakeoverRun {
    id: u64,
    /// When it started (monotonic ms), for its duration.
    started_ms: u64,
    phase: Phase,
    /// The phase's controls, and whether any failed.
    round: FanOut<Step>,
    participants: Vec<u32>,
    known: BTreeMap<u32, Vec<PublicIp>>,
    available: BTreeMap<u32, Vec<PublicIp>>,
    /// New owner of every address, from the allocation.
    plan: Vec<(IpAddr, Option<u32>)>,
    requesters: Vec<SrvidMessage>,
}

/// What a node's own address operation waits for.
#[derive(Debug, Default)]
pub(super) struct AddressOp {
    /// Controls to answer when the operation completes: ids of their deferred
    /// replies ([`Purpose::AddressChange`]).
    pub(super) waiters: Vec<u32>,
    /// Interface index being added on, for a take.
    pub(super) adding_on: Option<usize>,
    /// RELEASE_IPs that came while the address was being added: answered once the
    /// removal queued behind the add is done, not when the add is (the one who
    /// asked gives the address to another node as soon as it has the answer).
    pub(super) release_waiters: Vec<u32>,
    /// A removal because our lease ran out: we keep claiming the address in
    /// GET_PUBLIC_IPS, so that the next leader puts it back here rather than
    /// shuffling the survivors' addresses between them (its clients come back
    /// to the node that has their tickle entries and their smbd's state).
    pub(super) lapsed: bool,
}

impl Node {
    /// Lease length (`IPLeaseTimeMs`).
    pub(super) fn lease_ms(&self) -> u64 {
        self.tunables.ip_lease_time_ms()
    }

    /// Whether this node may hold public addresses now.
    pub(super) fn lease_valid(&self) -> bool {
        if self.is_leader() {
            matches!(
                self.lock,
                super::LockState::Held | super::LockState::NotConfigured
            )
        } else {
            self.now.mono_ms < self.lease_until_ms
        }
    }

    /// Our lease ends now: we stopped leading, and a leader's lease was the lock.
    /// The addresses go at the next [`Self::address_timers`], in this very step.
    pub(super) fn end_lease(&mut self) {
        self.lease_until_ms = 0;
        self.lease_requests.clear();
        self.successor = None;
        self.end_hold();
    }

    /// Follower: asks the leader we follow to renew our lease, every quarter lease.
    pub(super) fn lease_timers(&mut self, out: &mut Vec<Output>) {
        let now = self.now.mono_ms;
        let Some(leader) = self.followed_leader() else {
            return;
        };
        if now < self.next_lease_request_ms {
            return;
        }
        self.next_lease_request_ms = now + (self.lease_ms() / LEASE_REQUESTS_PER_LEASE).max(1);
        // A grant extends the lease from when its request left; one for a request
        // this old would extend nothing.
        self.lease_requests
            .retain(|_, (_, sent)| now.saturating_sub(*sent) < LEASE_REQUEST_MAX_AGE_MS);
        let seq = self.next_lease_seq;
        self.next_lease_seq += 1;
        self.lease_requests.insert(seq, (leader, now));
        let echo_ms = match self.last_grant_stamp {
            Some((from, stamp)) if from == leader => stamp,
            _ => 0,
        };
        let (leased_for_ms, holds_granted_for_ms) = self.promise_for_request(leader);
        let request = LeaseRequest {
            seq,
            echo_ms,
            leased_for_ms,
            holds_granted_for_ms,
            receipts: self.receipt_report(leader),
        };
        out.push(Output::SendToPeer {
            pnn: leader,
            packet: self.message_packet(leader, srvid::LEASE_REQUEST, request.encode()),
        });
    }

    /// The connected leader this node follows, if any.
    pub(super) fn followed_leader(&self) -> Option<u32> {
        self.leader
            .filter(|&l| l != self.pnn && self.is_connected(l))
    }

    /// When the next lease request is due (followers only).
    pub(super) fn lease_request_timeout(&self) -> Option<u64> {
        self.followed_leader().map(|_| self.next_lease_request_ms)
    }

    /// Leader: a follower asks for its lease. Granted only while we lead with the
    /// lock; we remember until when it may last, from when the request *arrived*
    /// (it left earlier, and the follower counts from then).
    pub(super) fn lease_requested(&mut self, sender: u32, data: &[u8], out: &mut Vec<Output>) {
        if sender == self.pnn || !self.is_leader() || !self.lease_valid() {
            return;
        }
        let request = match LeaseRequest::decode(data) {
            Ok(request) => request,
            Err(e) => {
                warn!(peer = sender, error = %e, "bad lease request");
                return;
            }
        };
        let seq = request.seq;
        self.note_promise(
            sender,
            request.echo_ms,
            request.leased_for_ms,
            request.holds_granted_for_ms,
        );
        self.note_echo(sender, request.echo_ms);
        self.note_receipt_report(sender, &request);
        let lease_ms = self.lease_ms();
        self.note_lease_granted(sender, self.now.mono_ms + lease_ms);
        let grant = LeaseGrant {
            seq,
            lease_ms: u32::try_from(lease_ms).unwrap_or(u32::MAX),
            stamp_ms: self.now.mono_ms,
            backed: self.backed(),
        };
        out.push(Output::SendToPeer {
            pnn: sender,
            packet: self.message_packet(sender, srvid::LEASE_GRANT, grant.encode()),
        });
    }

    /// Follower: our leader granted a request of ours. The lease runs from when the
    /// request left; if it had lapsed, the leader is asked to place the addresses we
    /// dropped.
    pub(super) fn lease_granted(&mut self, sender: u32, data: &[u8], out: &mut Vec<Output>) {
        let grant = match LeaseGrant::decode(data) {
            Ok(g) => g,
            Err(e) => {
                warn!(peer = sender, error = %e, "bad lease grant");
                return;
            }
        };
        let Some((asked, sent)) = self.lease_requests.remove(&grant.seq) else {
            return;
        };
        if asked != sender || self.leader != Some(sender) {
            return; // from a leader we no longer follow
        }
        let until = sent + u64::from(grant.lease_ms);
        self.lease_until_ms = self.lease_until_ms.max(until);
        self.last_grant_stamp = Some((sender, grant.stamp_ms));
        self.note_grant_receipt(sender, grant.backed);
        if self.lease_valid() && std::mem::take(&mut self.lease_lapsed) {
            self.request_takeover_run(out);
        }
    }

    /// Node `pnn` may hold addresses we cannot see until its lease surely ends: no
    /// takeover run before then (unless its guardian says otherwise). Used by a new
    /// leader, which cannot know what its predecessor granted.
    pub(super) fn guard_lease(&mut self, pnn: u32) {
        let until = self.now.mono_ms + self.lease_ms() + LEASE_MARGIN_MS;
        self.guard_until(pnn, until);
    }

    /// The leader lost node `pnn`: it may hold addresses until the last lease we
    /// granted it ends (it counts from when it asked, which was before we heard it).
    pub(super) fn guard_lost_node(&mut self, pnn: u32) {
        if let Some(&granted) = self.lease_granted_until.get(&pnn) {
            self.guard_until(pnn, granted + LEASE_MARGIN_MS);
        }
    }

    /// Node `pnn` may hold addresses under a lease until `until` (monotonic ms).
    pub(super) fn note_lease_granted(&mut self, pnn: u32, until: u64) {
        let granted = self.lease_granted_until.entry(pnn).or_insert(until);
        *granted = (*granted).max(until);
    }

    fn guard_until(&mut self, pnn: u32, until: u64) {
        if until <= self.now.mono_ms {
            return;
        }
        let guard = self.lease_guards.entry(pnn).or_insert(until);
        *guard = (*guard).max(until);
    }

    /// A new leader's guards (module docs): every other node, or only those it is
    /// not connected to when the leader it followed is dead by its guardian's word;
    /// never a node whose guardian confirmed during this election that its addresses
    /// are gone.
    pub(super) fn guard_after_election(&mut self) {
        self.lease_guards.clear();
        let predecessor_dead = self
            .last_leader
            .filter(|&p| p != self.pnn && self.gone_during_election.contains(&p));
        if let Some(dead) = predecessor_dead {
            info!(
                previous = dead,
                "the previous leader is dead by its guardian's word: connected nodes need no lease guard"
            );
        }
        let others: Vec<u32> = self
            .nodes
            .iter()
            .filter(|n| n.addr.is_some() && n.pnn != self.pnn)
            .map(|n| n.pnn)
            .collect();
        for pnn in others {
            if self.gone_during_election.contains(&pnn) {
                info!(
                    peer = pnn,
                    "no lease guard: its guardian said its addresses are gone"
                );
            } else if predecessor_dead.is_none() || !self.is_connected(pnn) {
                self.guard_lease(pnn);
            } else {
                // Spared because it is connected and will release in our run; but
                // the link may already be broken unnoticed, and the dead leader's
                // last grant to it may run until now + a lease. Should we lose it
                // before it has released, its guard must count from that.
                self.note_lease_granted(pnn, self.now.mono_ms + self.lease_ms());
            }
        }
    }

    /// When the last pending lease guard ends (monotonic ms; 0 = none).
    fn lease_guard_until(&self) -> u64 {
        self.lease_guards.values().copied().max().unwrap_or(0)
    }

    /// DAEMON_GONE from node `pnn`'s guardian (see the module docs for when it is
    /// believed).
    pub(super) fn guardian_notice(&mut self, pnn: u32, packet: crate::protocol::Packet) {
        let notice = match &packet.body {
            crate::protocol::Body::ReqMessage(msg) if msg.srvid == srvid::DAEMON_GONE => {
                DaemonGone::decode(&msg.data)
            }
            _ => {
                warn!(peer = pnn, "guardian notice is not a DAEMON_GONE message");
                return;
            }
        };
        let notice = match notice {
            Ok(n) if n.pnn == pnn && packet.header.srcnode == pnn => n,
            Ok(n) => {
                warn!(
                    peer = pnn,
                    about = n.pnn,
                    srcnode = packet.header.srcnode,
                    "guardian notice about another node than the one it came from"
                );
                return;
            }
            Err(e) => {
                warn!(peer = pnn, error = %e, "bad guardian notice");
                return;
            }
        };
        let Some(link) = self.peers.get(&pnn) else {
            warn!(peer = pnn, "guardian notice from a node that is not a peer");
            return;
        };
        let incarnation = format!("{:016x}", notice.incarnation);
        // The last incarnation the node announced: on this connection, or, if this
        // one announced none, on the one before.
        let last_announced = link.incarnation.or(link.previous_incarnation);
        if link.connected
            && link.incarnation.is_none()
            && last_announced == Some(notice.incarnation)
        {
            // Up, but silent: a daemon announces itself first thing on a new link,
            // so this may be no daemon at all — a dying daemon's listening socket can
            // complete a handshake after its connections closed, and its guardian's
            // connection then makes the link look whole. Judged when it goes.
            info!(peer = pnn, %incarnation, "guardian notice while a connection that announced nothing is up: kept until it announces or goes");
            if let Some(link) = self.peers.get_mut(&pnn) {
                link.pending_notice = Some(packet);
            }
            return;
        }
        if link.connected {
            info!(peer = pnn, %incarnation, "guardian notice about a connected node: stale, ignored");
            return;
        }
        if last_announced != Some(notice.incarnation) {
            info!(
                peer = pnn,
                %incarnation,
                last_seen = ?last_announced.map(|i| format!("{i:016x}")),
                "guardian notice for another incarnation than the node's last: ignored"
            );
            return;
        }
        if let Some(link) = self.peers.get_mut(&pnn) {
            link.daemon_gone = true;
        }
        if self.is_leader() {
            let lifted = self.lease_guards.remove(&pnn).is_some();
            info!(
                peer = pnn,
                %incarnation,
                lifted,
                "guardian notice: the node's daemon is dead and its public addresses are gone; no lease wait"
            );
            if self.last_leader == Some(pnn) {
                // Our predecessor, dead: the guards of connected nodes were for a run
                // of its that might still go on. (Its notice often comes just after
                // the election rather than during it.)
                let connected: Vec<u32> = self
                    .lease_guards
                    .keys()
                    .copied()
                    .filter(|&p| self.is_connected(p))
                    .collect();
                for p in &connected {
                    self.lease_guards.remove(p);
                }
                if !connected.is_empty() {
                    info!(previous = pnn, nodes = ?connected, "the previous leader is dead by its guardian's word: lease guards of connected nodes lifted");
                }
            }
        } else if self.lock == super::LockState::Taking {
            info!(
                peer = pnn,
                %incarnation,
                "guardian notice: the node's daemon is dead and its public addresses are gone (kept for this election)"
            );
            self.gone_during_election.insert(pnn);
        } else if self.leader.is_none()
            && self.last_leader == Some(pnn)
            && self.lock == super::LockState::Idle
            && self.lock_failures == 0
            && !self.take_unanswered
            && self.eligible()
        {
            // Our leader's connection closed and we wait for this word before racing
            // (`GUARDIAN_NOTICE_WAIT_MS`): the race starts now, in this very step.
            info!(
                peer = pnn,
                %incarnation,
                "guardian notice: the leader's daemon is dead and its public addresses are gone; racing for the lock"
            );
            self.next_election_ms = self.now.mono_ms;
            self.gone_during_election.insert(pnn);
        } else {
            info!(peer = pnn, %incarnation, "guardian notice: the node's daemon is dead (not leading or electing: nothing to do)");
        }
    }

    /// Asks for a takeover run (leader only; others ignore it).
    pub(super) fn want_takeover(&mut self) {
        if self.is_leader() {
            self.takeover_wanted = true;
        }
    }

    pub(super) fn hosted(&self) -> impl Iterator<Item = &super::PublicAddressState> {
        self.public_ips
            .iter()
            .filter(|ip| ip.active_iface.is_some())
    }

    /// Timer work for addresses: lease expiry, and starting a due takeover run.
    pub(super) fn address_timers(&mut self, out: &mut Vec<Output>) {
        self.lease_timers(out);
        self.hold_timers(out);
        if self.is_leader() && self.lease_lapsed && self.may_keep_addresses() {
            // Backed again, or unbacked long enough: our own addresses are ours to
            // place again.
            self.lease_lapsed = false;
            self.want_takeover();
        }
        if !self.may_keep_addresses() {
            // Every follower of our leader drops its addresses about now too.
            for ip in &mut self.public_ips {
                ip.unsettled = true;
            }
            // Addresses already being added or removed are left to finish first.
            let addrs: Vec<IpAddr> = self
                .hosted()
                .map(|ip| ip.addr)
                .filter(|a| !self.address_ops.contains_key(a))
                .collect();
            if !addrs.is_empty() {
                if self.is_leader() {
                    warn!("leading, but no longer backed by enough of our followers' echoes (succession): releasing our public addresses");
                } else {
                    warn!("lease expired: no word from a leader holding the lock, and no hold from a connected majority; releasing public addresses");
                }
                // Once we may keep addresses again (a leader heard, or our backing
                // back) they must be placed anew: nothing else may have changed
                // that would make a run start.
                self.lease_lapsed = true;
            }
            for addr in addrs {
                self.address_ops.entry(addr).or_default().lapsed = true;
                self.remove_address(addr, out);
            }
        }
        self.drive_takeover(out);
    }

    /// When the node next needs a tick for address work.
    pub(super) fn address_timeout(&self) -> Option<u64> {
        let mut t = None::<u64>;
        let mut at = |v: u64| t = Some(t.map_or(v, |t| t.min(v)));
        if !self.is_leader()
            && self.hosted().next().is_some()
            && self.lease_until_ms > self.now.mono_ms
        {
            at(self.lease_until_ms);
        }
        if let Some(due) = self.lease_request_timeout() {
            at(due);
        }
        if let Some(due) = self.hold_timeout() {
            at(due);
        }
        if let Some(due) = self.backing_timeout() {
            at(due);
        }
        let own_gate = self.own_addresses_gate();
        if self.is_leader() && self.lease_lapsed && own_gate > self.now.mono_ms {
            at(own_gate);
        }
        if self.is_leader() && self.takeover_wanted && self.takeover.is_none() {
            let due = self
                .lease_guard_until()
                .max(self.takeover_not_before_ms)
                .max(self.takeover_disabled_until_ms)
                .max(own_gate);
            at(self.hold_gate_timeout().map_or(due, |gate| due.max(gate)));
        }
        t
    }

    // ---- the leader's run ------------------------------------------------------

    /// Starts a takeover run when one is wanted and allowed.
    pub(super) fn drive_takeover(&mut self, out: &mut Vec<Output>) {
        let now = self.now.mono_ms;
        self.lease_guards.retain(|_, until| *until > now);
        if !self.is_leader()
            || !self.takeover_wanted
            || self.takeover.is_some()
            || now < self.lease_guard_until()
            || now < self.hold_gate_until()
            || now < self.own_addresses_gate()
            || now < self.takeover_not_before_ms
            || now < self.takeover_disabled_until_ms
        {
            return;
        }
        self.takeover_wanted = false;
        self.takeover_ids += 1;
        // Every connected node takes part, banned and stopped ones too: they may still
        // hold addresses that must be released before anyone else takes them (found
        // by the simulation: a banned node's addresses were handed out twice). Only
        // whether a node may *host* depends on its flags.
        let participants: Vec<u32> = self
            .nodes
            .iter()
            .filter(|n| n.addr.is_some())
            .filter(|n| n.pnn == self.pnn || self.is_connected(n.pnn))
            .map(|n| n.pnn)
            .collect();
        info!(run = self.takeover_ids, nodes = ?participants, "takeover run");
        self.takeover = Some(TakeoverRun {
            id: self.takeover_ids,
            started_ms: now,
            phase: Phase::Gather,
            round: FanOut::new(),
            participants: participants.clone(),
            known: BTreeMap::new(),
            available: BTreeMap::new(),
            plan: Vec::new(),
            requesters: std::mem::take(&mut self.takeover_requesters),
        });
        for pnn in participants {
            self.run_control(pnn, Step::Known, Opcode::GET_PUBLIC_IPS, 0, Vec::new(), out);
            self.run_control(
                pnn,
                Step::Available,
                Opcode::GET_PUBLIC_IPS,
                PUBLIC_IP_FLAGS_ONLY_AVAILABLE,
                Vec::new(),
                out,
            );
        }
        self.all_sent(out);
    }

    /// Sends one control of the run, to a peer or to ourselves.
    fn run_control(
        &mut self,
        to: u32,
        step: Step,
        opcode: Opcode,
        flags: u32,
        data: Vec<u8>,
        out: &mut Vec<Output>,
    ) {
        let Some(run) = &self.takeover else { return };
        let run_id = run.id;
        let reqid = self.allocate_reqid();
        if let Some(run) = &mut self.takeover {
            run.round.sent(reqid, to, step);
        }
        let req = ReqControl {
            opcode: opcode.0,
            srvid: 0,
            client_id: 0,
            flags,
            data,
        };
        let purpose = Purpose::Takeover { run: run_id };
        if to == self.pnn {
            // Answered now, or later through `reply_to` (an address change).
            self.deferred.insert(
                reqid,
                Awaiting {
                    purpose,
                    reply_to: None,
                    peer: None,
                    deadline_ms: None,
                },
            );
            if let Some(reply) = self.control(Requester::Local, reqid, &req, out) {
                if self.deferred.take_if(reqid, |p| *p == purpose).is_some() {
                    self.takeover_reply(run_id, reqid, reply, out);
                }
            }
            return;
        }
        let timeout_ms = self.tunables.secs_as_ms(keys::TAKEOVER_TIMEOUT);
        self.deferred.insert(
            reqid,
            Awaiting {
                purpose,
                reply_to: None,
                peer: Some(to),
                deadline_ms: Some(self.now.mono_ms + timeout_ms),
            },
        );
        out.push(Output::SendToPeer {
            pnn: to,
            packet: crate::protocol::Packet {
                header: self.header(to, reqid),
                body: crate::protocol::Body::ReqControl(req),
            },
        });
    }

    /// A reply to one of the run's controls (or its failure: status −1).
    pub(super) fn takeover_reply(
        &mut self,
        run_id: u64,
        reqid: u32,
        reply: ReplyControl,
        out: &mut Vec<Output>,
    ) {
        let Some(run) = self.takeover.as_mut().filter(|r| r.id == run_id) else {
            return; // a finished run's straggler
        };
        if reply.status != 0 {
            let Some((pnn, step)) = run.round.refuse(reqid) else {
                return;
            };
            warn!(peer = pnn, ?step, status = reply.status, error = %String::from_utf8_lossy(&reply.error), "takeover run step failed");
        } else {
            let Some((pnn, step)) = run.round.answer(reqid) else {
                return;
            };
            match step {
                Step::Known | Step::Available => match PublicIpList::decode(&reply.data) {
                    Ok(list) => {
                        let map = if step == Step::Known {
                            &mut run.known
                        } else {
                            &mut run.available
                        };
                        map.insert(pnn, list.ips);
                    }
                    Err(e) => {
                        warn!(peer = pnn, error = %e, "bad public address list");
                        run.round.fail();
                    }
                },
                Step::Release | Step::Take => {}
            }
        }
        self.advance_takeover(out);
    }

    /// Moves the run to its next phase once every reply of this one is in.
    fn advance_takeover(&mut self, out: &mut Vec<Output>) {
        let Some(run) = &self.takeover else { return };
        if !run.round.is_complete() {
            return;
        }
        if run.round.has_failed() {
            self.finish_takeover(false, out);
            return;
        }
        match run.phase {
            Phase::Gather => {
                let plan = self.allocate(run);
                // RELEASE_IP goes to every node (but the new owner) whose view of an
                // address is not already right: a holder removes it, the others just
                // learn who has it now, so that `ctdb ip` is right on every node.
                let mut releases = Vec::new();
                for (pnn, ips) in &run.known {
                    for ip in ips {
                        let new_owner = plan
                            .iter()
                            .find(|(a, _)| *a == ip.addr)
                            .and_then(|(_, o)| *o);
                        if new_owner != Some(*pnn) && ip.pnn != new_owner.unwrap_or(UNKNOWN_PNN) {
                            releases.push((*pnn, ip.addr, new_owner));
                        }
                    }
                }
                let run = self.takeover.as_mut().expect("present above");
                run.plan = plan;
                run.phase = Phase::Release;
                run.round.next_round();
                for (pnn, addr, new_owner) in releases {
                    let data = PublicIp {
                        pnn: new_owner.unwrap_or(UNKNOWN_PNN),
                        addr,
                    }
                    .encode();
                    self.run_control(pnn, Step::Release, Opcode::RELEASE_IP, 0, data, out);
                }
                self.all_sent(out);
            }
            Phase::Release => {
                // Every owner is asked, also for an address it claims already: a
                // claim may outlive the address (a lapsed lease keeps it), and a
                // TAKEOVER_IP for an address held is answered at once.
                let takes: Vec<(u32, IpAddr)> = run
                    .plan
                    .iter()
                    .filter_map(|(addr, owner)| owner.map(|o| (o, *addr)))
                    .collect();
                let run = self.takeover.as_mut().expect("present above");
                run.phase = Phase::Take;
                run.round.next_round();
                for (owner, addr) in takes {
                    let data = PublicIp { pnn: owner, addr }.encode();
                    self.run_control(owner, Step::Take, Opcode::TAKEOVER_IP, 0, data, out);
                }
                self.all_sent(out);
            }
            Phase::Take => self.finish_takeover(true, out),
        }
    }

    /// The current phase has sent all its controls: it may complete now.
    fn all_sent(&mut self, out: &mut Vec<Output>) {
        if let Some(run) = &mut self.takeover {
            run.round.all_sent();
        }
        self.advance_takeover(out);
    }

    fn allocate(&self, run: &TakeoverRun) -> Vec<(IpAddr, Option<u32>)> {
        let count = self.nodes.len();
        let mut views = Vec::with_capacity(count);
        for pnn in 0..count as u32 {
            let known: Vec<ipalloc::KnownIp> = run
                .known
                .get(&pnn)
                .map(|ips| {
                    ips.iter()
                        .map(|ip| ipalloc::KnownIp {
                            addr: ip.addr,
                            owner: (ip.pnn != UNKNOWN_PNN).then_some(ip.pnn),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let flags = self.nodes[pnn as usize].flags;
            let can_host = run.participants.contains(&pnn)
                && flags & (node_flags::INACTIVE | node_flags::DISABLED) == 0;
            let available = if can_host {
                run.available
                    .get(&pnn)
                    .map(|ips| ips.iter().map(|ip| ip.addr).collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            views.push(ipalloc::NodeView { known, available });
        }
        let input = ipalloc::Input {
            nodes: views,
            settings: ipalloc::Settings::from_tunables(
                &self.tunables,
                std::mem::take(&mut self.rebalance_nodes.clone())
                    .into_iter()
                    .collect(),
            ),
            log_level: ipalloc::LogLevel::Error,
        };
        let allocation = ipalloc::allocate(&input);
        for line in &allocation.log {
            warn!(text = %line.text, "ip allocation");
        }
        allocation.ips.iter().map(|a| (a.addr, a.owner)).collect()
    }

    fn finish_takeover(&mut self, ok: bool, out: &mut Vec<Output>) {
        let Some(run) = self.takeover.take() else {
            return;
        };
        self.count_takeover_run(&run, ok);
        if ok {
            // Every take of the run is done: no address is between nodes any more.
            for ip in &mut self.public_ips {
                ip.unsettled = false;
            }
            info!(run = run.id, "takeover run complete");
            self.rebalance_nodes.clear();
            self.queue_event(Event::IpReallocated, AfterEvent::Nothing);
            for pnn in run.participants.clone() {
                if pnn == self.pnn {
                    continue;
                }
                self.forward_control(
                    pnn,
                    None,
                    &ReqControl {
                        opcode: Opcode::IPREALLOCATED.0,
                        srvid: 0,
                        client_id: 0,
                        flags: CTRL_FLAG_NOREPLY,
                        data: Vec::new(),
                    },
                    out,
                );
            }
        } else {
            warn!(run = run.id, "takeover run failed; retrying");
            self.takeover_wanted = true;
            self.takeover_not_before_ms = self.now.mono_ms + TAKEOVER_RETRY_MS;
        }
        let answer = if ok { self.pnn as i32 } else { -1 };
        for r in run.requesters {
            self.answer(r.pnn, r.srvid, answer, out);
        }
    }

    /// Drops the run in progress, if any (this node stops leading), counting it as
    /// failed.
    pub(super) fn drop_takeover_run(&mut self) {
        if let Some(run) = self.takeover.take() {
            self.count_takeover_run(&run, false);
        }
    }

    fn count_takeover_run(&mut self, run: &TakeoverRun, ok: bool) {
        let counters = &mut self.counters;
        if ok {
            counters.takeover_runs_ok += 1;
        } else {
            counters.takeover_runs_failed += 1;
        }
        counters
            .takeover_duration
            .observe(self.now.mono_ms.saturating_sub(run.started_ms));
    }

    // ---- every node: release and take -----------------------------------------

    /// GET_PUBLIC_IPS: our addresses, with ourselves as owner of those we hold.
    pub(super) fn public_ip_list(&self, only_available: bool) -> PublicIpList {
        // 4.17 lists the newest-loaded address first (§6.5).
        let ips = self
            .public_ips
            .iter()
            .rev()
            .filter(|ip| !ip.deleting)
            // Only a RUNNING node can host: one still starting up has none available.
            .filter(|ip| {
                !only_available
                    || (self.runstate == Runstate::Running && self.usable_iface(ip).is_some())
            })
            .map(|ip| PublicIp {
                // An address being added counts as held: a leader that asks now (a
                // new leader, while the old one's take is under way) must release
                // it from here before it gives it to anyone else.
                pnn: if ip.active_iface.is_some()
                    || self
                        .address_ops
                        .get(&ip.addr)
                        .is_some_and(|op| op.adding_on.is_some())
                {
                    self.pnn
                } else {
                    ip.pnn
                },
                addr: ip.addr,
            })
            .collect();
        PublicIpList { ips }
    }

    /// The interface to put `ip` on: the one it is on if its link is up, else the
    /// first with link up.
    fn usable_iface(&self, ip: &super::PublicAddressState) -> Option<usize> {
        let up = |name: &String| self.ifaces.iter().any(|i| &i.name == name && i.link_up);
        if let Some(active) = ip
            .active_iface
            .filter(|&i| ip.ifaces.get(i).is_some_and(up))
        {
            return Some(active);
        }
        ip.ifaces.iter().position(up)
    }

    /// Whether `from` may tell this node to release or take an address: a local
    /// client or this node's own run, an administrator's control forwarded by a peer
    /// (it carries the client's id: `ctdb moveip`), or a takeover run of the leader
    /// this node follows. A run of a leader that has since lost the lock, or died,
    /// may still have controls in flight; taken here they would race the new
    /// leader's run, which no longer waits for connected nodes (module docs).
    pub(super) fn may_move_addresses(&self, from: Requester, req: &ReqControl) -> bool {
        match from {
            Requester::Local | Requester::Client(_) => true,
            Requester::Peer(pnn) => req.client_id != 0 || self.leader == Some(pnn),
        }
    }

    /// RELEASE_IP: note the new owner; remove the address if we hold it. `None` =
    /// answered when the removal completes.
    pub(super) fn release_ip(
        &mut self,
        from: Requester,
        reqid: u32,
        data: &[u8],
        out: &mut Vec<Output>,
    ) -> Option<ReplyControl> {
        let Ok(req) = PublicIp::decode(data) else {
            return Some(super::cluster::error_reply("bad public_ip"));
        };
        let Some(ip) = self.public_ips.iter_mut().find(|ip| ip.addr == req.addr) else {
            return Some(Node::reply_ok(Vec::new()));
        };
        ip.pnn = req.pnn;
        ip.unsettled |= req.pnn != UNKNOWN_PNN && req.pnn != self.pnn;
        if ip.active_iface.is_none() && !self.address_ops.contains_key(&req.addr) {
            return Some(Node::reply_ok(Vec::new()));
        }
        let waiter = self.defer_address_reply(from, reqid);
        let op = self.address_ops.entry(req.addr).or_default();
        if op.adding_on.is_some() {
            op.release_waiters.push(waiter);
        } else {
            op.waiters.push(waiter);
        }
        self.remove_address(req.addr, out);
        None
    }

    /// TAKEOVER_IP: add the address here (with a valid lease only).
    pub(super) fn takeover_ip(
        &mut self,
        from: Requester,
        reqid: u32,
        data: &[u8],
        out: &mut Vec<Output>,
    ) -> Option<ReplyControl> {
        let Ok(req) = PublicIp::decode(data) else {
            return Some(super::cluster::error_reply("bad public_ip"));
        };
        if req.pnn != self.pnn {
            return Some(super::cluster::error_reply("takeover for another node"));
        }
        if !self.lease_valid() {
            return Some(super::cluster::error_reply(
                "no valid lease: not taking addresses",
            ));
        }
        if !self.own_addresses_allowed() {
            return Some(super::cluster::error_reply(
                "leading unbacked by the followers: not taking addresses yet",
            ));
        }
        let Some(index) = self.public_ips.iter().position(|ip| ip.addr == req.addr) else {
            return Some(super::cluster::error_reply("unknown public address"));
        };
        let ip = &self.public_ips[index];
        if ip.active_iface.is_some() {
            return Some(Node::reply_ok(Vec::new()));
        }
        let Some(iface) = self.usable_iface(ip) else {
            return Some(super::cluster::error_reply(
                "no interface with link up for this address",
            ));
        };
        let (addr, prefix_len, name) = (ip.addr, ip.prefix_len, ip.ifaces[iface].clone());
        let waiter = self.defer_address_reply(from, reqid);
        let op = self.address_ops.entry(addr).or_default();
        op.waiters.push(waiter);
        op.adding_on = Some(iface);
        out.push(Output::AddAddress {
            iface: name,
            addr,
            prefix_len,
        });
        None
    }

    fn remove_address(&mut self, addr: IpAddr, out: &mut Vec<Output>) {
        let Some(ip) = self.public_ips.iter().find(|ip| ip.addr == addr) else {
            return;
        };
        let iface = ip
            .active_iface
            .or(self.address_ops.get(&addr).and_then(|op| op.adding_on))
            .and_then(|i| ip.ifaces.get(i))
            .cloned();
        match iface {
            Some(iface) => out.push(Output::RemoveAddress {
                iface,
                addr,
                prefix_len: ip.prefix_len,
            }),
            None => self.address_done(addr, false, Ok(()), out),
        }
    }

    /// The edge added (`added`) or removed an address. On success the `takeip` or
    /// `releaseip` event runs, and the controls waiting on the change are answered
    /// when it ends (see `events`).
    pub(super) fn address_done(
        &mut self,
        addr: IpAddr,
        added: bool,
        result: Result<(), String>,
        out: &mut Vec<Output>,
    ) {
        let mut op = self.address_ops.remove(&addr).unwrap_or_default();
        if added && !op.release_waiters.is_empty() {
            // The removal asked for during the add comes next: its waiters wait for it.
            self.address_ops.insert(
                addr,
                AddressOp {
                    waiters: std::mem::take(&mut op.release_waiters),
                    ..AddressOp::default()
                },
            );
        }
        // A release this node made on its own (its link went down, its lease ran
        // out, the address was deleted) leaves the address unplaced: the leader must
        // run again once it is really gone.
        let own_release = !added && op.waiters.is_empty();
        let pnn = self.pnn;
        let Some(ip) = self.public_ips.iter_mut().find(|ip| ip.addr == addr) else {
            return;
        };
        if let Err(e) = &result {
            error!(%addr, added, error = %e, "public address change failed");
            self.answer_address_waiters(op.waiters, result, out);
            return;
        }
        let maskbits = ip.prefix_len;
        if added {
            ip.active_iface = op.adding_on;
            ip.pnn = pnn;
            ip.unsettled = false;
            let iface = op
                .adding_on
                .and_then(|i| ip.ifaces.get(i))
                .cloned()
                .unwrap_or_default();
            info!(%addr, %iface, "public address added; running takeip");
            self.queue_event(
                Event::TakeIp {
                    iface: iface.clone(),
                    ip: addr,
                    maskbits,
                },
                AfterEvent::Taken {
                    iface,
                    addr,
                    waiters: op.waiters,
                },
            );
        } else {
            let iface = ip
                .active_iface
                .or(op.adding_on)
                .and_then(|i| ip.ifaces.get(i))
                .cloned()
                .unwrap_or_default();
            ip.active_iface = None;
            if ip.pnn == pnn && !op.lapsed {
                ip.pnn = UNKNOWN_PNN;
            }
            info!(%addr, "public address released; running releaseip");
            if ip.deleting {
                self.public_ips.retain(|ip| ip.addr != addr);
            }
            self.queue_event(
                Event::ReleaseIp {
                    iface,
                    ip: addr,
                    maskbits,
                },
                AfterEvent::Released {
                    addr,
                    waiters: op.waiters,
                },
            );
            // Clients (smbd) close their connections to it at once.
            self.tell_clients_address(addr, false, out);
            if own_release {
                self.request_takeover_run(out);
            }
        }
    }

    /// Files the reply to a RELEASE_IP or TAKEOVER_IP that waits for the address
    /// change: the id its address operation keeps.
    fn defer_address_reply(&mut self, from: Requester, reqid: u32) -> u32 {
        self.defer_reply(Purpose::AddressChange, Some(ReplyTo { who: from, reqid }))
    }

    /// Answers the controls that waited on an address change.
    pub(super) fn answer_address_waiters(
        &mut self,
        waiters: Vec<u32>,
        result: Result<(), String>,
        out: &mut Vec<Output>,
    ) {
        let reply = match result {
            Ok(()) => Node::reply_ok(Vec::new()),
            Err(_) => super::cluster::error_reply("address change failed"),
        };
        for waiter in waiters {
            let Some(awaiting) = self
                .deferred
                .take_if(waiter, |p| *p == Purpose::AddressChange)
            else {
                continue;
            };
            if let Some(ReplyTo { who, reqid }) = awaiting.reply_to {
                self.reply_to(who, reqid, reply.clone(), out);
            }
        }
    }

    /// Tells local clients registered for TAKE_IP or RELEASE_IP that `addr` came or
    /// went.
    pub(super) fn tell_clients_address(&self, addr: IpAddr, taken: bool, out: &mut Vec<Output>) {
        let msg = if taken {
            srvid::TAKE_IP
        } else {
            srvid::RELEASE_IP
        };
        let mut data = addr.to_string().into_bytes();
        data.push(0);
        self.deliver_to_clients(msg, &data, out);
    }

    /// An interface's link changed: record it; addresses on a downed interface go, and
    /// the leader is asked to place them again.
    pub(super) fn link_changed(&mut self, iface: &str, up: bool, out: &mut Vec<Output>) {
        let Some(state) = self.ifaces.iter_mut().find(|i| i.name == iface) else {
            return;
        };
        if state.link_up == up {
            return;
        }
        state.link_up = up;
        info!(%iface, up, "interface link changed");
        if !up {
            let on_it: Vec<IpAddr> = self
                .public_ips
                .iter()
                .filter(|ip| {
                    ip.active_iface
                        .and_then(|i| ip.ifaces.get(i))
                        .is_some_and(|n| n == iface)
                })
                .map(|ip| ip.addr)
                .collect();
            for addr in on_it {
                self.remove_address(addr, out);
            }
        }
        self.request_takeover_run(out);
    }

    /// Sends TAKEOVER_RUN (no answer wanted) to the leader.
    pub(super) fn request_takeover_run(&mut self, out: &mut Vec<Output>) {
        match self.leader {
            Some(l) if l == self.pnn => self.want_takeover(),
            Some(l) => {
                let data = SrvidMessage {
                    pnn: self.pnn,
                    srvid: 0,
                }
                .encode();
                out.push(Output::SendToPeer {
                    pnn: l,
                    packet: self.message_packet(l, srvid::TAKEOVER_RUN, data),
                });
            }
            None => {}
        }
    }
}

// ---- client connections (tickles) and changes to the address list ----------------

impl Node {
    /// TCP_CLIENT / TCP_ADD: remember a client connection to one of our public
    /// addresses, and copy it to every peer so that whichever node takes the address
    /// next can tickle the client (§5.1; DESIGN.md step 4).
    pub(super) fn tcp_add(
        &mut self,
        from: Requester,
        tied_to_client: bool,
        data: &[u8],
        out: &mut Vec<Output>,
    ) -> ReplyControl {
        let Ok(conn) = Connection::decode(data) else {
            return super::cluster::error_reply("bad connection");
        };
        if !self.public_ips.iter().any(|ip| ip.addr == conn.dst.ip()) {
            warn!(dst = %conn.dst, "client connection to an address that is not public here");
            return super::cluster::error_reply("not a public address of this node");
        }
        let new = self.tickles.entry(conn.dst.ip()).or_default().insert(conn);
        match from {
            Requester::Client(client) if tied_to_client => {
                self.client_conns.entry(client).or_default().push(conn);
            }
            _ => {}
        }
        if new && !matches!(from, Requester::Peer(_)) {
            self.replicate_connection(Opcode::TCP_ADD, conn, out);
        }
        Node::reply_ok(Vec::new())
    }

    /// TCP_REMOVE: forget a client connection (and tell the peers).
    pub(super) fn tcp_remove(
        &mut self,
        from: Requester,
        data: &[u8],
        out: &mut Vec<Output>,
    ) -> ReplyControl {
        let Ok(conn) = Connection::decode(data) else {
            return super::cluster::error_reply("bad connection");
        };
        self.forget_connection(conn, !matches!(from, Requester::Peer(_)), out);
        Node::reply_ok(Vec::new())
    }

    fn forget_connection(&mut self, conn: Connection, replicate: bool, out: &mut Vec<Output>) {
        let removed = self
            .tickles
            .get_mut(&conn.dst.ip())
            .is_some_and(|set| set.remove(&conn));
        if removed && replicate {
            self.replicate_connection(Opcode::TCP_REMOVE, conn, out);
        }
    }

    /// A client that registered connections went away: they are over, except
    /// those to an address this node no longer holds. Those clients did not
    /// hear the end (their server's address was gone before smbd closed), so
    /// whichever node takes the address next must tickle them: their entries
    /// stay, here and on every peer, until then.
    pub(super) fn client_connections_gone(
        &mut self,
        client: super::ClientId,
        out: &mut Vec<Output>,
    ) {
        for conn in self.client_conns.remove(&client).unwrap_or_default() {
            let held = self
                .public_ips
                .iter()
                .any(|ip| ip.addr == conn.dst.ip() && ip.active_iface.is_some());
            if held {
                self.forget_connection(conn, true, out);
            }
        }
    }

    fn replicate_connection(&mut self, opcode: Opcode, conn: Connection, out: &mut Vec<Output>) {
        for pnn in self.connected_peers() {
            self.forward_control(
                pnn,
                None,
                &ReqControl {
                    opcode: opcode.0,
                    srvid: 0,
                    client_id: 0,
                    flags: CTRL_FLAG_NOREPLY,
                    data: conn.encode(),
                },
                out,
            );
        }
    }

    /// GET_TCP_TICKLE_LIST: the connections known for one address, those to the
    /// asked port only when it is not 0; status 1 for an address that is not public
    /// here (4.17's answers, observed).
    pub(super) fn tickle_list(&self, data: &[u8]) -> ReplyControl {
        let Ok(asked) = crate::protocol::wire::Reader::new(data).sock_addr("tickle addr") else {
            return super::cluster::error_reply("bad address");
        };
        let addr = crate::protocol::wire::canonical_ip(asked.ip());
        if !self.public_ips.iter().any(|ip| ip.addr == addr) {
            return ReplyControl {
                status: 1,
                data: Vec::new(),
                error: Vec::new(),
            };
        }
        let conns = self
            .tickles
            .get(&addr)
            .into_iter()
            .flatten()
            .filter(|c| asked.port() == 0 || c.dst.port() == asked.port())
            .copied()
            .collect();
        Node::reply_ok(
            TickleList {
                addr: std::net::SocketAddr::new(addr, asked.port()),
                conns,
            }
            .encode(),
        )
    }

    /// SET_TCP_TICKLE_LIST: replace the list for one address.
    pub(super) fn set_tickle_list(&mut self, data: &[u8]) -> ReplyControl {
        match TickleList::decode(data) {
            Ok(list) => {
                self.tickles
                    .insert(list.addr.ip(), list.conns.into_iter().collect());
                Node::reply_ok(Vec::new())
            }
            Err(_) => super::cluster::error_reply("bad tickle list"),
        }
    }

    /// After taking `addr`: tickle every client known to be connected to it, so
    /// that each learns at once that its connection is gone. The entries are
    /// then done with (no local smbd serves them; a client that reconnects
    /// registers anew), here and on the peers.
    pub(super) fn tickle_clients(&mut self, addr: IpAddr, out: &mut Vec<Output>) {
        let conns: Vec<Connection> = self
            .tickles
            .get(&addr)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for conn in conns {
            out.push(Output::Tickle {
                server: conn.dst,
                client: conn.src,
            });
            let served_here = self.client_conns.values().flatten().any(|c| *c == conn);
            if !served_here {
                self.forget_connection(conn, true, out);
            }
        }
    }

    /// ADD_PUBLIC_IP (`ctdb addip`): a new public address for this node; the leader is
    /// asked to place it.
    pub(super) fn add_public_ip(&mut self, data: &[u8], out: &mut Vec<Output>) -> ReplyControl {
        let Ok(info) = AddrInfo::decode(data) else {
            return super::cluster::error_reply("bad addr_info");
        };
        let ifaces: Vec<String> = info
            .iface
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let max = if info.addr.is_ipv4() { 32 } else { 128 };
        if ifaces.is_empty() || info.mask > max {
            return super::cluster::error_reply(
                "an interface and a valid prefix length are required",
            );
        }
        if self.public_ips.iter().any(|ip| ip.addr == info.addr) {
            return Node::reply_ok(Vec::new());
        }
        self.add_public_entry(info.addr, info.mask as u8, ifaces);
        info!(addr = %info.addr, "public address added");
        self.request_takeover_run(out);
        Node::reply_ok(Vec::new())
    }

    fn add_public_entry(&mut self, addr: IpAddr, prefix_len: u8, ifaces: Vec<String>) {
        for name in &ifaces {
            if !self.ifaces.iter().any(|i| &i.name == name) {
                // Newest first, as CTDB lists them (§6.6).
                self.ifaces.insert(
                    0,
                    super::IfaceState {
                        name: name.clone(),
                        link_up: true,
                    },
                );
            }
        }
        self.public_ips.push(super::PublicAddressState {
            addr,
            prefix_len,
            ifaces,
            pnn: UNKNOWN_PNN,
            active_iface: None,
            deleting: false,
            unsettled: false,
        });
    }

    /// DEL_PUBLIC_IP (`ctdb delip`): drop an address from this node's list, releasing
    /// it first if we hold it.
    pub(super) fn del_public_ip(&mut self, data: &[u8], out: &mut Vec<Output>) -> ReplyControl {
        let Ok(info) = AddrInfo::decode(data) else {
            return super::cluster::error_reply("bad addr_info");
        };
        self.delete_public_entry(info.addr, out);
        self.request_takeover_run(out);
        Node::reply_ok(Vec::new())
    }

    fn delete_public_entry(&mut self, addr: IpAddr, out: &mut Vec<Output>) {
        let Some(index) = self.public_ips.iter().position(|ip| ip.addr == addr) else {
            return;
        };
        info!(%addr, "public address deleted");
        if self.public_ips[index].active_iface.is_some() || self.address_ops.contains_key(&addr) {
            // Removed from the list once the kernel has let go of it.
            self.public_ips[index].deleting = true;
            self.address_ops.entry(addr).or_default();
            self.remove_address(addr, out);
        } else {
            self.public_ips.remove(index);
        }
        self.tickles.remove(&addr);
    }

    /// RELOAD_PUBLIC_IPS (`ctdb reloadips`): the edge reads the file; answered by
    /// [`Self::public_addresses_read`].
    pub(super) fn request_public_addresses(
        &mut self,
        requester: Requester,
        reqid: u32,
        out: &mut Vec<Output>,
    ) {
        let reply_to = (reqid != 0 || matches!(requester, Requester::Local)).then_some(ReplyTo {
            who: requester,
            reqid,
        });
        let id = self.defer_reply(Purpose::PublicAddresses, reply_to);
        out.push(Output::ReadPublicAddresses {
            request: u64::from(id),
        });
    }

    /// The re-read `public_addresses`: add what is new, delete what is gone, keep the
    /// rest (with its interfaces updated).
    pub(super) fn public_addresses_read(
        &mut self,
        request: u64,
        result: Result<Vec<(IpAddr, u8, Vec<String>)>, String>,
        out: &mut Vec<Output>,
    ) {
        let Some(awaiting) = self.take_deferred(request, |p| *p == Purpose::PublicAddresses) else {
            return;
        };
        let reply = match result {
            Err(reason) => {
                error!(%reason, "cannot reload the public addresses");
                super::cluster::error_reply("cannot read public_addresses")
            }
            Ok(wanted) => {
                let gone: Vec<IpAddr> = self
                    .public_ips
                    .iter()
                    .filter(|ip| !wanted.iter().any(|(a, _, _)| *a == ip.addr))
                    .map(|ip| ip.addr)
                    .collect();
                for addr in gone {
                    self.delete_public_entry(addr, out);
                }
                for (addr, prefix_len, ifaces) in wanted {
                    match self.public_ips.iter_mut().find(|ip| ip.addr == addr) {
                        Some(ip) => {
                            ip.prefix_len = prefix_len;
                            if ip.active_iface.is_none() {
                                ip.ifaces = ifaces;
                            }
                        }
                        None => self.add_public_entry(addr, prefix_len, ifaces),
                    }
                }
                info!("public addresses reloaded");
                self.request_takeover_run(out);
                Node::reply_ok(Vec::new())
            }
        };
        if let Some(ReplyTo { who, reqid }) = awaiting.reply_to {
            self.reply_to(who, reqid, reply, out);
        }
    }

    /// DISABLE_TAKEOVER_RUNS / DISABLE_IP_CHECK: no takeover runs for `secs` (0 lifts
    /// it), so that an administrator's `reloadips` or `moveip` is not undone midway.
    pub(super) fn disable_takeover_runs(&mut self, secs: u32) {
        self.takeover_disabled_until_ms = if secs == 0 {
            0
        } else {
            self.now.mono_ms + u64::from(secs) * 1000
        };
    }
}
