//! Holds: a connected majority that lost its leader keeps the addresses it holds.
//!
//! # Why
//! A node keeps public addresses under a lease from a leader that holds the
//! recovery lock (`takeover`). When the leader loses power, the cluster volume may
//! keep its lock for a long time (GlusterFS: 2 s with the recommended options, 83 s
//! at its defaults), and no node can lead until the volume lets go. Under leases
//! alone every survivor would then drop its addresses after `IPLeaseTimeMs`: a
//! total outage, although the survivors are healthy and can reach each other. A
//! *hold* lets them keep — never take — what they hold while they form a connected
//! majority without a leader.
//!
//! # The rule
//! - A node that holds addresses and whose lease has half run out without renewal
//!   asks every peer it is connected to for a hold (`HOLD_REQUEST`, a sequence
//!   number), every eighth of a lease.
//! - A peer grants it (`HOLD_GRANT`) only once its own lease has half run out
//!   without renewal (it leads with the lock: never). A request that comes earlier
//!   is kept and granted at that moment, if the lease has not been renewed by
//!   then. This is the peer's *promise*: no grant before the middle of its lease.
//! - When the grants for one request, with the asker, are more than half of the
//!   nodes in `nodes`, the asker may keep its addresses until the request's send
//!   time + one lease, and never later than its last lease's end +
//!   `LeaderlessHoldMs`. A hold only keeps: taking an address needs a lease.
//!   A node that ends its own lease (a leader stepping down, or losing the lock)
//!   ends its hold too.
//!
//! # Why it is safe
//! The danger is a leader moving the addresses of a node it cannot see while that
//! node keeps them under a hold. Such a node Y is covered at time `c` only by
//! grants, sent within one lease before `c`, from a group G that with Y is more
//! than half of the nodes. A leader M therefore moves addresses only while it can
//! rule G out: it counts the set S of itself and every follower W whose last lease
//! request showed (all on M's clock)
//! - W will grant nothing before `c`: W's request echoes the stamp of M's last
//!   grant it had received, a moment of M's clock before the request left, and
//!   says how long W's promise runs from when it left; their sum lies before the
//!   promise really ends, whatever the flight times;
//! - every hold W granted before to a node other than M has ended by `c`: the
//!   request's arrival + what W said was left of them, a moment after they really
//!   end. (Holds W granted to M cover only M, which as leader keeps nothing under a
//!   hold, and ends its holds whenever it stops leading: `end_hold`.)
//!
//! If the nodes outside S (not counting nodes dead by their guardian's word) are at
//! most half of `nodes`, every possible G contains a member of S, which granted
//! nothing that covers `c`: no unseen node keeps an address past `c`, and once
//! uncovered a node never covers the same addresses again (holds only keep).
//! Otherwise — a leader connected to too few nodes, such as a lone survivor of
//! three — M cannot tell dead nodes from a partitioned majority that holds, and
//! waits until any such hold must have ended: `LeaderlessHoldMs` + the margin after
//! the last lease a node outside S may have had — one M granted it (M knows until
//! when), or one from a leader before M, which stopped leading before M took the
//! lock (give or take its lock check, inside the margin), so at most a lease after
//! M's election. (The simulation found the second half: a leader that had led all
//! along, counting only from its election, moved a partitioned node's address that
//! its own recent lease and then a hold still covered.)
//!
//! What the rule relies on, beyond the lease rules: clocks that run at about the
//! same rate (the margin), and a node's guardian-confirmed death meaning it grants
//! nothing (a daemon that restarted, was given a lease by a leader M never saw and
//! then cut off from M could; not covered).

use std::collections::{BTreeMap, BTreeSet};

use tracing::{info, warn};

use super::{LockState, Node, Output};
use crate::protocol::control::{decode_u64, srvid};

/// A holder asks for a hold this many times per lease length.
const HOLD_REQUESTS_PER_LEASE: u64 = 8;

/// What a follower's last lease request told the leader (leader's clock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Promise {
    /// The follower grants no hold before this.
    pub(super) no_grant_until_ms: u64,
    /// The holds it granted before end by this.
    pub(super) holds_end_ms: u64,
}

/// A hold request of ours: when it left, and who granted it.
#[derive(Debug, Default)]
pub(super) struct HoldRequest {
    sent_ms: u64,
    granted_by: BTreeSet<u32>,
}

/// Holds state of a node (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Holds {
    /// Until when a hold lets us keep our addresses (monotonic ms).
    pub(super) until_ms: u64,
    requests: BTreeMap<u64, HoldRequest>,
    next_seq: u64,
    next_request_ms: u64,
    /// Requests of peers waiting for our promise to end: (pnn, seq, received).
    waiting: Vec<(u32, u64, u64)>,
    /// Until when the holds we granted may last, per node we granted them to.
    pub(super) granted_until_ms: BTreeMap<u32, u64>,
    /// Leader: each follower's last promise.
    pub(super) promises: BTreeMap<u32, Promise>,
    /// Leader: when we took the lock and began to lead.
    pub(super) led_since_ms: u64,
}

impl Node {
    /// `LeaderlessHoldMs`, or 0 where holds do not apply (no recovery lock: the
    /// lowest-numbered node leads by itself and grants leases as the leader).
    fn hold_ms(&self) -> u64 {
        if self.lock == LockState::NotConfigured {
            0
        } else {
            self.tunables.leaderless_hold_ms()
        }
    }

    /// How far a hold may reach: our last lease's end + `LeaderlessHoldMs`.
    fn hold_limit_ms(&self) -> u64 {
        if self.lease_until_ms == 0 || self.hold_ms() == 0 {
            0
        } else {
            self.lease_until_ms + self.hold_ms()
        }
    }

    /// Whether a hold covers us now (never for the leader, whose lease is the lock).
    pub(super) fn hold_valid(&self) -> bool {
        !self.is_leader() && self.now.mono_ms < self.holds.until_ms
    }

    /// Whether we may keep the public addresses we hold: a lease (for a leader, the
    /// lock and its backing: `succession`), or a hold.
    pub(super) fn may_keep_addresses(&self) -> bool {
        (self.lease_valid() && self.own_addresses_allowed()) || self.hold_valid()
    }

    /// Until when we promise to grant no hold: the middle of our lease.
    fn promise_until_ms(&self) -> u64 {
        if self.is_leader() && self.lease_valid() {
            return u64::MAX;
        }
        self.lease_until_ms.saturating_sub(self.lease_ms() / 2)
    }

    /// What a lease request of ours to `leader` tells it (`LeaseRequest`'s fields):
    /// how long our promise and the holds we granted to nodes other than `leader`
    /// last from now (a hold granted to the leader covers only the leader, which
    /// keeps nothing under a hold).
    pub(super) fn promise_for_request(&self, leader: u32) -> (u32, u32) {
        let now = self.now.mono_ms;
        let clamp = |until: u64| u32::try_from(until.saturating_sub(now)).unwrap_or(u32::MAX);
        let granted = self
            .holds
            .granted_until_ms
            .iter()
            .filter(|(&to, _)| to != leader)
            .map(|(_, &until)| until)
            .max()
            .unwrap_or(0);
        (clamp(self.promise_until_ms()), clamp(granted))
    }

    /// Ends any hold of ours (our lease was ended: the addresses go now).
    pub(super) fn end_hold(&mut self) {
        self.holds.until_ms = 0;
        self.holds.requests.clear();
    }

    /// Timer work: ask for a hold when due; grant the requests that waited for our
    /// promise to end.
    pub(super) fn hold_timers(&mut self, out: &mut Vec<Output>) {
        let now = self.now.mono_ms;
        if !self.holds.waiting.is_empty() && now >= self.promise_until_ms() {
            for (pnn, seq, _) in std::mem::take(&mut self.holds.waiting) {
                if self.is_connected(pnn) {
                    self.grant_hold(pnn, seq, out);
                }
            }
        }
        let lease = self.lease_ms();
        self.holds
            .waiting
            .retain(|&(_, _, received)| now.saturating_sub(received) < lease);
        self.holds
            .requests
            .retain(|_, r| now.saturating_sub(r.sent_ms) < lease);
        self.holds.granted_until_ms.retain(|_, until| *until > now);
        if self.next_hold_request_ms().is_none_or(|due| now < due) {
            return;
        }
        self.holds.next_request_ms = now + (lease / HOLD_REQUESTS_PER_LEASE).max(1);
        self.holds.next_seq += 1;
        let seq = self.holds.next_seq;
        self.holds.requests.insert(
            seq,
            HoldRequest {
                sent_ms: now,
                granted_by: BTreeSet::new(),
            },
        );
        for pnn in self.connected_peers() {
            out.push(Output::SendToPeer {
                pnn,
                packet: self.message_packet(pnn, srvid::HOLD_REQUEST, seq.to_le_bytes().to_vec()),
            });
        }
    }

    /// When hold work is next due.
    pub(super) fn hold_timeout(&self) -> Option<u64> {
        let mut t = None::<u64>;
        let mut at = |v: u64| t = Some(t.map_or(v, |t: u64| t.min(v)));
        if !self.holds.waiting.is_empty() {
            at(self.promise_until_ms());
        }
        if let Some(due) = self.next_hold_request_ms() {
            at(due);
        }
        if !self.is_leader() && self.holds.until_ms > self.now.mono_ms {
            at(self.holds.until_ms);
        }
        t
    }

    /// When we should next ask for a hold, if we may: not leading, holding
    /// addresses, within the hold limit; once our cover (lease or hold) has half
    /// run out, every eighth of a lease.
    fn next_hold_request_ms(&self) -> Option<u64> {
        let limit = self.hold_limit_ms();
        if self.hold_ms() == 0
            || self.is_leader()
            || self.now.mono_ms >= limit
            || (self.hosted().next().is_none() && self.address_ops.is_empty())
        {
            return None;
        }
        let covered_until = self.lease_until_ms.max(self.holds.until_ms);
        let due = covered_until
            .saturating_sub(self.lease_ms() / 2)
            .max(self.holds.next_request_ms);
        (due < limit).then_some(due)
    }

    /// A peer asks for a hold: granted now if our promise has ended, else when it
    /// does (if our lease is not renewed meanwhile).
    pub(super) fn hold_requested(&mut self, sender: u32, data: &[u8], out: &mut Vec<Output>) {
        let seq = match decode_u64(data, "hold request") {
            Ok(seq) => seq,
            Err(e) => {
                warn!(peer = sender, error = %e, "bad hold request");
                return;
            }
        };
        if sender == self.pnn || self.hold_ms() == 0 {
            return;
        }
        if self.now.mono_ms >= self.promise_until_ms() {
            self.grant_hold(sender, seq, out);
        } else if !(self.is_leader() && self.lease_valid()) {
            self.holds.waiting.push((sender, seq, self.now.mono_ms));
        }
    }

    fn grant_hold(&mut self, to: u32, seq: u64, out: &mut Vec<Output>) {
        let until = self.now.mono_ms + self.lease_ms();
        let granted = self.holds.granted_until_ms.entry(to).or_default();
        *granted = (*granted).max(until);
        out.push(Output::SendToPeer {
            pnn: to,
            packet: self.message_packet(to, srvid::HOLD_GRANT, seq.to_le_bytes().to_vec()),
        });
    }

    /// A peer granted a hold request of ours: with enough grants, we may keep our
    /// addresses a lease from when the request left (never past the hold limit).
    pub(super) fn hold_granted(&mut self, sender: u32, data: &[u8]) {
        let seq = match decode_u64(data, "hold grant") {
            Ok(seq) => seq,
            Err(e) => {
                warn!(peer = sender, error = %e, "bad hold grant");
                return;
            }
        };
        let nodes = self.cluster_size();
        if sender == self.pnn || !self.nodes.iter().any(|n| n.pnn == sender) {
            return;
        }
        let limit = self.hold_limit_ms();
        let lease = self.lease_ms();
        let Some(request) = self.holds.requests.get_mut(&seq) else {
            return;
        };
        request.granted_by.insert(sender);
        if 2 * (request.granted_by.len() + 1) <= nodes {
            return;
        }
        let until = (request.sent_ms + lease).min(limit);
        let granted_by = request.granted_by.clone();
        if until > self.holds.until_ms {
            if self.holds.until_ms <= self.now.mono_ms {
                info!(
                    ?granted_by,
                    "our leader is silent or gone, but a connected majority without a leader lets us keep our public addresses (hold)"
                );
            }
            self.holds.until_ms = until;
        }
    }

    // ---- the leader's side ------------------------------------------------------

    /// Leader: note what a follower's lease request promised (module docs).
    pub(super) fn note_promise(
        &mut self,
        from: u32,
        echo_ms: u64,
        leased_for: u32,
        holds_for: u32,
    ) {
        let now = self.now.mono_ms;
        let promise = self.holds.promises.entry(from).or_default();
        if echo_ms != 0 {
            promise.no_grant_until_ms = echo_ms + u64::from(leased_for);
        } else {
            promise.no_grant_until_ms = 0;
        }
        promise.holds_end_ms = now + u64::from(holds_for);
    }

    /// Leader: until when no takeover run may start because a node we cannot see
    /// might keep addresses under a hold; 0 = none can.
    pub(super) fn hold_gate_until(&self) -> u64 {
        if self.hold_ms() == 0 {
            return 0;
        }
        let now = self.now.mono_ms;
        let mut nodes = 0;
        let mut outside = 0;
        // The end of the last lease a node outside may have had: from a leader
        // before us (our election + a lease), or from us.
        let mut last_lease_end = self.holds.led_since_ms + self.lease_ms();
        for n in self.nodes.iter().filter(|n| n.addr.is_some()) {
            nodes += 1;
            if n.pnn == self.pnn {
                continue;
            }
            let link = self.peers.get(&n.pnn);
            if link.is_some_and(|l| l.daemon_gone && !l.connected) {
                continue;
            }
            let ruled_out = self.is_connected(n.pnn)
                && self
                    .holds
                    .promises
                    .get(&n.pnn)
                    .is_some_and(|p| p.no_grant_until_ms > now && p.holds_end_ms <= now);
            if !ruled_out {
                outside += 1;
                if let Some(&granted) = self.lease_granted_until.get(&n.pnn) {
                    last_lease_end = last_lease_end.max(granted);
                }
            }
        }
        if 2 * outside <= nodes {
            0
        } else {
            last_lease_end + self.hold_ms() + super::takeover::LEASE_MARGIN_MS
        }
    }

    /// Leader: when the hold gate should be looked at again (a promise's granted
    /// holds end, or the gate's own deadline).
    pub(super) fn hold_gate_timeout(&self) -> Option<u64> {
        let now = self.now.mono_ms;
        let gate = self.hold_gate_until();
        if gate <= now {
            return None;
        }
        let next_holds_end = self
            .holds
            .promises
            .values()
            .map(|p| p.holds_end_ms)
            .filter(|&t| t > now)
            .min();
        Some(next_holds_end.map_or(gate, |t| t.min(gate)))
    }
}
