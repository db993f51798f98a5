//! Succession: how soon a new leader may move the addresses of a predecessor it
//! cannot see (issue #12, power-loss failover of the leader).
//!
//! The leader's *backing* (how long it may keep its own addresses) and the
//! successor's *bound* on a silent predecessor's hold: the rules as pure functions
//! ([`backing_until`], [`may_keep_own`], [`predecessor_bound`]), then the `Node`
//! state they read and write (see "Where it is wired" at the end). A new leader
//! still sets the election guards of `takeover::guard_after_election`; this module
//! lowers some of them once the survivors' reports allow it.
//!
//! # Why
//! A new leader cannot vouch for what a predecessor it cannot see keeps: without
//! this rule it waits `IPLeaseTimeMs` + `LEASE_MARGIN_MS` after its election before moving
//! anything, which after a power loss of the leader comes on top of detection (at
//! the fast tunables 0.3 s + 0.4 s). The survivors, together, know more: when each
//! last heard a grant from the predecessor.
//!
//! # The rule, leader side: backing
//! Each follower's lease request echoes the stamp (leader's clock, at *sending*) of
//! the last grant it received from this leader. With `nodes` the nodes in `nodes`,
//! the leader is *backed* until [`backing_until`]: the latest stamp `s` such that at
//! least `nodes / 2` followers (with the leader, more than half of `nodes`) echoed a
//! stamp ≥ `s`, plus one lease. A leader keeps (and takes) its own addresses only
//! while it holds the lock and either
//! - it is backed (`now < backing`), or
//! - it is *unbacked on purpose*: it has not been backed, nor started, for the
//!   [`unbacked_wait_ms`] (the minority's race delay of `cluster` + a lock check +
//!   3 margins, so that condition 2 below holds whenever the successor is elected
//!   within a minority's race delay of the last backed grant) —
//!   [`may_keep_own`]. This is the lone survivor of item 1, which serves every
//!   address after that wait; a majority leader that loses its backing drops its own
//!   addresses at once and may keep them unbacked only that long after.
//!
//! Every grant says whether its sender was backed when it left.
//!
//! What exists today is not equivalent: a leader gives up the lock and its
//! addresses when it is no longer connected to a majority (`cluster`, item 1), i.e.
//! one keepalive timeout after the *arrival* of the last packets of its peers, so a
//! delayed or one-way link lengthens it, and nothing ties it to what the survivors
//! saw; and a leader whose lock is taken away keeps everything until its lock check
//! notices (up to 250 ms).
//!
//! # The rule, successor side: the predecessor's bound
//! Every node remembers, per leader X, when it last received any grant from X and
//! when it last received a *backed* one (its own monotonic clock; lost at restart),
//! and reports both as ages in each lease request to the leader it follows. A new
//! leader M, elected (lock taken) at `elected`, converts each report to its clock
//! (arrival − age; the age only shrinks by the flight, so the receipt is placed
//! *later* than it was: the safe side). For a node X it cannot see, M may replace
//! its election guard by [`predecessor_bound`] = the latest such receipt of any
//! grant from X + lease + margin, when
//! 1. reports about X come from at least `nodes − nodes / 2` distinct nodes other
//!    than X (M's own memory counts as one; a node with no receipt of X — it never
//!    heard X, or restarted since — does not count), and
//! 2. the latest receipt `r` of a *backed* grant from X among them satisfies
//!    `elected + lock_check + 3 × margin < r + unbacked_wait`.
//!
//! Otherwise the full wait stays.
//!
//! # Why it is safe
//! Clocks of different nodes are only compared as durations (ages, leases), and the
//! margin covers their rate differences and a message in flight (as elsewhere).
//! - *X backed.* X's backing ends at `s + lease` (X's clock) where `s` is the stamp
//!   of a grant that a set S of `nodes / 2` followers acknowledged. S with X is more
//!   than half of `nodes`; the reporters are at least `nodes − nodes / 2` nodes other
//!   than X: among the `nodes − 1` nodes other than X they must share one, W. W
//!   received the grant stamped `s` (or a later one) after X sent it, and reported a
//!   receipt at least that late: X's backing ends by W's receipt + lease, which M's
//!   bound covers (+ margin). A message delay only delays W's receipt: the bound
//!   grows, never shrinks. A follower whose report arrives late just counts later
//!   (M recomputes with each report and keeps the full wait until it has enough).
//! - *X unbacked.* X keeps addresses unbacked only `unbacked_wait` after its last
//!   backing and after its start. M places a backed grant's receipt at `r`, later
//!   than it was by at most the report's flight (M's own receipts: by nothing); the
//!   grant left X at ≥ `r − 2 × margin` (the grant's and the report's flights), when
//!   X was backed: X's unbacked holds begin at ≥ `r − 2 × margin + unbacked_wait`,
//!   also after a restart of X (it starts after it sent that grant). Any tenure of
//!   X began before M took the lock, so X lost the lock by `elected` and knows it by
//!   `elected + lock_check`: condition 2 (one more margin for clock rates) leaves no
//!   room for an unbacked hold of X after M's election. Note the direction: here a
//!   receipt placed too late would be unsafe, hence the margins; in the bound of
//!   the backed case it is only conservative.
//! - *X cut off but alive, keeping the lock*: M is not elected at all. *X cut off,
//!   lock lost*: as above; X stops at its backing end without being told.
//! - *A reporter that restarts* forgets its receipts and no longer counts.
//!
//! Assumed, as elsewhere: a node that follows M does not acknowledge X's grants
//! again while M leads (`cluster`: a follower ignores another claimant while the
//! leader it follows is connected and has not let go; X, having lost the lock, may
//! claim until its lock check notices); a grant or a
//! report is not in flight longer than the margin; a leader's lock check notices a
//! lost lock within `lock_check` (a stalled process keeps its addresses in the
//! kernel whatever it decides, as today); all nodes count the same `nodes` and
//! run with the same `IPLeaseTimeMs` and keepalive tunables (X's lease and X's
//! unbacked wait are what M computes with its own).
//!
//! Applies to unseen nodes only, and only to what they keep as leaders: an unseen
//! follower of X may hold a lease from X until `elected` + lease (+ margin), so M
//! still guards every other unseen node as today, and holds (`holds`) are gated as
//! before. In the 3-node power loss of the leader the only unseen node is X.
//!
//! # What it buys, what it costs
//! After a power loss of the leader, its addresses move at max(detection, last
//! grant receipt + lease + margin) + the run, instead of detection + lease +
//! margin + the run: at the fast tunables about 0.4 s + the run (0.74 s measured
//! without it), the same as for a follower's power loss (0.399 s), and the margin
//! then dominates. The run also waits for the hold gate (`holds`), i.e. for each
//! connected follower's second lease request (its echo of the new leader's
//! grant): a request interval after the election. (The holds a follower granted
//! to the new leader itself, while both were leaderless, do not count: they cover
//! only it.) In the simulation at default tunables the addresses are back about
//! 1.1 s after the power loss, 1.75 s before.
//!
//! Costs: a leader whose followers' acknowledgements stop for a
//! lease (a stalled machine) drops its own addresses, as its followers already do;
//! a node that leads alone (started alone, or the survivor of item 1) keeps
//! addresses only `unbacked_wait` after its start or last backing — cold start of
//! nodes started together is unaffected (backing arrives within a request interval,
//! long before the first run's guards end), but a node that started less than the
//! unbacked wait ago (3.85 s at default tunables, 2.15 s at the fast ones) and
//! comes to lead drops its own addresses until its first backing.
//!
//! Not covered: a leader Y between X and M that M never heard of (M still
//! followed X), which gave X a lease and was connected to M at M's election
//! (so that its guard, too, is lowered): X's lease from Y may outlast the bound by
//! what Y granted after X's last grant. An unseen Y keeps its own election guard,
//! and no run starts before every guard has ended, which covers such a lease as
//! before. Y must take the lock after X and lose it again out of M's sight, within
//! a minority's race delay of X's last backed grant.
//!
//! # Where it is wired
//! - Leader (`takeover::lease_requested`): each request's echo updates the
//!   follower's latest echoed stamp and the backing ([`Node::note_echo`]); the
//!   grant says whether we are backed. `holds::may_keep_addresses` and
//!   `takeover_ip` need, besides a valid lease (`lease_valid`: leading with the
//!   lock, unchanged — granting leases and the hold promises rest on it),
//!   [`Node::own_addresses_allowed`]; without a configured lock nothing changes. A
//!   leader that drops its own addresses so marks its lease lapsed, and asks for a
//!   takeover run when it may keep them again (backed, or unbacked long enough);
//!   no run starts while it may not take its own ([`Node::own_addresses_gate`]),
//!   since our own takes would fail it. The end of the last backing lives as long
//!   as the daemon (a later tenure's unbacked wait counts from it).
//! - Every node (`takeover::lease_granted`): an accepted grant is a receipt of its
//!   leader (any, and backed if it says so), and each lease request carries our
//!   receipts of the other leaders as ages ([`Node::receipt_report`]).
//! - New leader (`cluster::become_leader`, after `guard_after_election`):
//!   [`Node::start_succession`] when the leader it followed is unseen and guarded.
//!   The guards that may be lowered are the predecessor's and those of the nodes
//!   connected at the election: they are kept (unless the predecessor is dead by
//!   its guardian's word) because a predecessor that lost the lock unaware may
//!   still run a takeover. Under the backing rule its run can give an address to
//!   itself only while backed (covered by the bound) or unbacked (ruled out by
//!   condition 2); to a connected node only before that node follows us, which our
//!   gather then sees (a take in progress counts as held, and our gather reaches
//!   it after our LEADER message), never after (`may_move_addresses`); to an unseen
//!   node, whose own guard stays. A lowered connected node is noted as leased until
//!   the election + a lease (the predecessor's last grant to it), so that its guard
//!   counts from that should it be lost before it releases. Each report (the
//!   follower's latest replaces its earlier one) recomputes the bound
//!   ([`Node::note_receipt_report`]); a link change of a node since the election
//!   takes its guard out of the rule, and the predecessor connecting ends it.
//! - Tests: the rules' unit tests below, `core::tests` (a leader whose followers'
//!   echoes stop; a successor lowering its guards), and the stories and random
//!   schedules of `tests/sim_cluster.rs`.

use std::collections::{BTreeMap, BTreeSet};

use tracing::info;

use super::takeover::LEASE_MARGIN_MS;
use super::{LockState, Node};
use crate::protocol::control::{GrantReceipt, LeaseRequest};

/// How soon a leader notices that its lock was taken away: the lock helper checks
/// every 250 ms (`reclock`).
pub(super) const LOCK_CHECK_MS: u64 = 250;

/// The end of a leader's backing (its clock, ms), from the latest stamp each
/// follower echoed (0 = none). `nodes` counts the leader. `u64::MAX` for a cluster
/// of one (the leader alone is a majority); 0 = not backed.
pub(crate) fn backing_until(echoed: &[u64], nodes: usize, lease_ms: u64) -> u64 {
    let needed = nodes / 2;
    if needed == 0 {
        return u64::MAX;
    }
    let mut stamps: Vec<u64> = echoed.iter().copied().filter(|&s| s != 0).collect();
    if stamps.len() < needed {
        return 0;
    }
    stamps.sort_unstable_by(|a, b| b.cmp(a));
    stamps[needed - 1].saturating_add(lease_ms)
}

/// How long after its last backing (or its start) a leader may keep its own
/// addresses unbacked: the minority's race delay of `cluster` (`minority_race_ms`)
/// + a lock check + 3 lease margins (condition 2 of the module docs).
pub(crate) fn unbacked_wait_ms(minority_race_ms: u64, lock_check_ms: u64, margin_ms: u64) -> u64 {
    minority_race_ms + lock_check_ms + 3 * margin_ms
}

/// Whether a leader holding the lock may keep its own addresses at `now`: backed,
/// or unbacked since `max(started, last backing) + unbacked_wait`.
pub(crate) fn may_keep_own(
    now: u64,
    backing_until: u64,
    started_ms: u64,
    unbacked_wait_ms: u64,
) -> bool {
    now < backing_until
        || now
            >= started_ms
                .max(backing_until)
                .saturating_add(unbacked_wait_ms)
}

/// One node's report about a leader X, on the successor's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Receipts {
    /// The reporting node.
    pub(crate) pnn: u32,
    /// When it last received any grant from X.
    pub(crate) any_ms: u64,
    /// When it last received a grant X sent while backed.
    pub(crate) backed_ms: Option<u64>,
}

/// What the successor needs besides the reports (all ms, its clock for instants).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Succession {
    pub(crate) nodes: usize,
    pub(crate) elected_ms: u64,
    pub(crate) lease_ms: u64,
    pub(crate) margin_ms: u64,
    pub(crate) lock_check_ms: u64,
    pub(crate) unbacked_wait_ms: u64,
}

/// The successor's bound on what an unseen leader `x` may still keep (module
/// docs): `None` = the reports do not allow one, keep the full wait.
pub(crate) fn predecessor_bound(x: u32, reports: &[Receipts], s: &Succession) -> Option<u64> {
    let mut reporters = std::collections::BTreeMap::new();
    for r in reports.iter().filter(|r| r.pnn != x) {
        let e = reporters.entry(r.pnn).or_insert(*r);
        e.any_ms = e.any_ms.max(r.any_ms);
        e.backed_ms = e.backed_ms.max(r.backed_ms);
    }
    if reporters.len() < s.nodes - s.nodes / 2 {
        return None;
    }
    let latest_any = reporters.values().map(|r| r.any_ms).max()?;
    let latest_backed = reporters.values().filter_map(|r| r.backed_ms).max()?;
    let unbacked_start = latest_backed.saturating_add(s.unbacked_wait_ms);
    if s.elected_ms + s.lock_check_ms + 3 * s.margin_ms >= unbacked_start {
        return None;
    }
    Some(latest_any + s.lease_ms + s.margin_ms)
}

/// What a node remembers of one leader's grants (its own clock, ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Receipt {
    /// When it last received any grant from that leader.
    any_ms: u64,
    /// When it last received one the leader sent while backed.
    backed_ms: Option<u64>,
}

/// A new leader's view of its unseen predecessor (module docs: the successor side).
#[derive(Debug)]
pub(super) struct Successor {
    /// The leader this node followed before it led, unseen at the election.
    predecessor: u32,
    elected_ms: u64,
    /// The latest report of each follower about the predecessor (our clock).
    reports: BTreeMap<u32, Receipts>,
    /// Nodes whose guard is still the election's: the predecessor and the nodes
    /// connected then. A node whose link changes since is no longer one.
    lowerable: BTreeSet<u32>,
}

impl Node {
    fn unbacked_wait(&self) -> u64 {
        unbacked_wait_ms(
            self.minority_race_delay_ms(),
            LOCK_CHECK_MS,
            LEASE_MARGIN_MS,
        )
    }

    /// Whether our grants go out backed now.
    pub(super) fn backed(&self) -> bool {
        self.now.mono_ms < self.backing_until_ms || self.cluster_size() / 2 == 0
    }

    /// Whether this node, if it leads, may keep and take its own addresses besides
    /// holding the lock: backed, or unbacked on purpose ([`may_keep_own`]). Always
    /// for a node that does not lead (its lease decides), and without a configured
    /// lock (unchanged: no succession there).
    pub(super) fn own_addresses_allowed(&self) -> bool {
        if !self.is_leader() {
            return true;
        }
        match self.lock {
            LockState::NotConfigured => true,
            // A cluster of one: the leader alone is a majority, backed for good.
            LockState::Held if self.cluster_size() / 2 == 0 => true,
            LockState::Held => may_keep_own(
                self.now.mono_ms,
                self.backing_until_ms,
                self.started_ms,
                self.unbacked_wait(),
            ),
            _ => false,
        }
    }

    /// Leader: until when it may not take its own addresses (0 = it may, or it
    /// is backed now): no takeover run starts before (it would fail on our own
    /// takes).
    pub(super) fn own_addresses_gate(&self) -> u64 {
        if !self.is_leader() || self.lock != LockState::Held || self.own_addresses_allowed() {
            return 0;
        }
        self.started_ms
            .max(self.backing_until_ms)
            .saturating_add(self.unbacked_wait())
    }

    /// Leader: when its backing ends, if that is still ahead (a tick is due then:
    /// its own addresses go).
    pub(super) fn backing_timeout(&self) -> Option<u64> {
        (self.is_leader()
            && self.lock == LockState::Held
            && self.now.mono_ms < self.backing_until_ms)
            .then_some(self.backing_until_ms)
    }

    /// Leader: a follower echoed `echo_ms`, the stamp of a grant of ours it
    /// received; our backing is recomputed.
    pub(super) fn note_echo(&mut self, from: u32, echo_ms: u64) {
        if echo_ms == 0 {
            return;
        }
        let echoed = self.echoed_stamps.entry(from).or_default();
        *echoed = (*echoed).max(echo_ms);
        let followers: Vec<u64> = self
            .nodes
            .iter()
            .filter(|n| n.addr.is_some() && n.pnn != self.pnn)
            .map(|n| self.echoed_stamps.get(&n.pnn).copied().unwrap_or(0))
            .collect();
        let until = backing_until(&followers, self.cluster_size(), self.lease_ms());
        if until > self.backing_until_ms {
            if !self.backed() {
                info!("backed by our followers' echoes again: our own addresses may stay");
            }
            self.backing_until_ms = until;
        }
    }

    /// Follower: a grant of `leader` arrived and was accepted.
    pub(super) fn note_grant_receipt(&mut self, leader: u32, backed: bool) {
        let now = self.now.mono_ms;
        let receipt = self.grant_receipts.entry(leader).or_insert(Receipt {
            any_ms: now,
            backed_ms: None,
        });
        receipt.any_ms = now;
        if backed {
            receipt.backed_ms = Some(now);
        }
    }

    /// Follower: our receipts as ages, for a lease request to `leader` (which
    /// needs none of its own).
    pub(super) fn receipt_report(&self, leader: u32) -> Vec<GrantReceipt> {
        let now = self.now.mono_ms;
        let age = |t: u64| u32::try_from(now.saturating_sub(t)).unwrap_or(u32::MAX);
        self.grant_receipts
            .iter()
            .filter(|(&pnn, _)| pnn != leader)
            .map(|(&pnn, r)| GrantReceipt {
                pnn,
                any_age_ms: age(r.any_ms),
                backed_age_ms: r.backed_ms.map(age),
            })
            .collect()
    }

    /// New leader, after its election guards: whether the succession rule may lower
    /// them (the predecessor we followed is unseen, and a lock is configured).
    pub(super) fn start_succession(&mut self) {
        self.successor = None;
        if self.lock != LockState::Held {
            return;
        }
        let Some(x) = self.last_leader.filter(|&x| {
            x != self.pnn && !self.is_connected(x) && self.lease_guards.contains_key(&x)
        }) else {
            return;
        };
        let lowerable = self
            .lease_guards
            .keys()
            .copied()
            .filter(|&p| p == x || self.is_connected(p))
            .collect();
        self.successor = Some(Successor {
            predecessor: x,
            elected_ms: self.now.mono_ms,
            reports: BTreeMap::new(),
            lowerable,
        });
        self.apply_succession();
    }

    /// Leader: a follower's lease request carried its receipt report.
    pub(super) fn note_receipt_report(&mut self, from: u32, request: &LeaseRequest) {
        let now = self.now.mono_ms;
        let Some(s) = self.successor.as_mut() else {
            return;
        };
        let about = request
            .receipts
            .iter()
            .filter(|r| r.pnn == s.predecessor)
            .map(|r| Receipts {
                pnn: from,
                any_ms: now.saturating_sub(u64::from(r.any_age_ms)),
                backed_ms: r.backed_age_ms.map(|a| now.saturating_sub(u64::from(a))),
            })
            .next_back();
        match about {
            Some(report) => s.reports.insert(from, report),
            // It has none (any more): it restarted, or never heard the predecessor.
            None => s.reports.remove(&from),
        };
        self.apply_succession();
    }

    /// Leader: a node's link changed since our election; its guard, if any, is no
    /// longer the election's. The predecessor connecting ends the succession.
    pub(super) fn succession_link_changed(&mut self, pnn: u32) {
        let Some(s) = self.successor.as_mut() else {
            return;
        };
        if pnn == s.predecessor {
            self.successor = None;
        } else {
            s.lowerable.remove(&pnn);
        }
    }

    /// Lowers the election guards of the predecessor and of the nodes connected at
    /// the election to [`predecessor_bound`], when the reports allow one.
    fn apply_succession(&mut self) {
        if !self.is_leader() || self.lock != LockState::Held {
            return;
        }
        let Some(s) = &self.successor else { return };
        let x = s.predecessor;
        let mut reports: Vec<Receipts> = s.reports.values().copied().collect();
        if let Some(own) = self.grant_receipts.get(&x) {
            reports.push(Receipts {
                pnn: self.pnn,
                any_ms: own.any_ms,
                backed_ms: own.backed_ms,
            });
        }
        let params = Succession {
            nodes: self.cluster_size(),
            elected_ms: s.elected_ms,
            lease_ms: self.lease_ms(),
            margin_ms: LEASE_MARGIN_MS,
            lock_check_ms: LOCK_CHECK_MS,
            unbacked_wait_ms: self.unbacked_wait(),
        };
        let Some(bound) = predecessor_bound(x, &reports, &params) else {
            return;
        };
        let lowerable: Vec<u32> = s.lowerable.iter().copied().collect();
        let lease_end = s.elected_ms + self.lease_ms();
        let mut lowered = Vec::new();
        for p in lowerable {
            let Some(guard) = self.lease_guards.get_mut(&p) else {
                continue;
            };
            if bound < *guard {
                *guard = bound;
                lowered.push(p);
                if p != x {
                    // Should we lose it before it has released, its guard counts
                    // from the predecessor's last possible grant to it.
                    self.note_lease_granted(p, lease_end);
                }
            }
        }
        if !lowered.is_empty() {
            info!(
                predecessor = x,
                nodes = ?lowered,
                in_ms = bound.saturating_sub(self.now.mono_ms),
                "succession: the survivors' receipts bound what the unseen predecessor keeps; election guards lowered"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: u64 = 200;
    const MARGIN: u64 = 200;
    const LOCK_CHECK: u64 = 250;
    /// 2 keepalive timeouts (60 ms × 5) + a lease + 500 ms.
    const MINORITY_RACE: u64 = 2 * 300 + LEASE + 500;

    fn fast() -> Succession {
        // Fast tunables: keepalive 60 ms × 5, lease 200 ms.
        Succession {
            nodes: 3,
            elected_ms: 10_300,
            lease_ms: LEASE,
            margin_ms: MARGIN,
            lock_check_ms: LOCK_CHECK,
            unbacked_wait_ms: unbacked_wait_ms(MINORITY_RACE, LOCK_CHECK, MARGIN),
        }
    }

    fn report(pnn: u32, any_ms: u64, backed_ms: Option<u64>) -> Receipts {
        Receipts {
            pnn,
            any_ms,
            backed_ms,
        }
    }

    #[test]
    fn backing_needs_half_the_nodes_besides_the_leader() {
        // 3 nodes: one follower is enough, the latest echo counts.
        assert_eq!(backing_until(&[100, 0], 3, LEASE), 100 + LEASE);
        assert_eq!(backing_until(&[100, 150], 3, LEASE), 150 + LEASE);
        assert_eq!(backing_until(&[0, 0], 3, LEASE), 0);
        // 5 nodes: two followers; the second latest echo decides.
        assert_eq!(backing_until(&[100, 0, 0, 0], 5, LEASE), 0);
        assert_eq!(backing_until(&[100, 300, 50, 0], 5, LEASE), 100 + LEASE);
        // 4 nodes: two followers (the leader and one are only half).
        assert_eq!(backing_until(&[100, 0, 0], 4, LEASE), 0);
        assert_eq!(backing_until(&[100, 120, 0], 4, LEASE), 100 + LEASE);
        // 2 nodes: the one follower; 1 node: always backed.
        assert_eq!(backing_until(&[70], 2, LEASE), 70 + LEASE);
        assert_eq!(backing_until(&[], 1, LEASE), u64::MAX);
    }

    #[test]
    fn a_leader_keeps_its_own_addresses_backed_or_after_the_unbacked_wait() {
        let wait = unbacked_wait_ms(MINORITY_RACE, LOCK_CHECK, MARGIN);
        assert_eq!(wait, 1300 + 250 + 600);
        // Backed.
        assert!(may_keep_own(1000, 1100, 0, wait));
        // Backing lapsed: not before the wait has passed since it lapsed.
        assert!(!may_keep_own(1100, 1100, 0, wait));
        assert!(!may_keep_own(1100 + wait - 1, 1100, 0, wait));
        assert!(may_keep_own(1100 + wait, 1100, 0, wait));
        // Never backed (a lone node): the wait counts from its start.
        assert!(!may_keep_own(5000, 0, 4000, wait));
        assert!(may_keep_own(4000 + wait, 0, 4000, wait));
    }

    #[test]
    fn power_loss_of_the_leader_moves_its_addresses_soon_after_the_election() {
        // Node 0 led backed and lost power at 10_000; nodes 1 and 2 last heard a
        // grant at 9_990 and 9_980, were elected at 10_300.
        let reports = [report(1, 9_990, Some(9_990)), report(2, 9_980, Some(9_980))];
        let bound = predecessor_bound(0, &reports, &fast()).unwrap();
        assert_eq!(bound, 9_990 + LEASE + MARGIN);
        // Before today's wait: election + lease + margin.
        assert!(bound < fast().elected_ms + LEASE + MARGIN);
    }

    #[test]
    fn too_few_reports_keep_the_full_wait() {
        // Of 3 nodes, both survivors must report: the leader's one follower that
        // acknowledged may be the silent one.
        assert_eq!(
            predecessor_bound(0, &[report(1, 9_990, Some(9_990))], &fast()),
            None
        );
        // A report about X from X itself does not count, nor a node counted twice.
        let reports = [
            report(1, 9_990, Some(9_990)),
            report(1, 9_995, Some(9_995)),
            report(0, 9_999, Some(9_999)),
        ];
        assert_eq!(predecessor_bound(0, &reports, &fast()), None);
        // 5 nodes: three reporters besides X.
        let five = Succession { nodes: 5, ..fast() };
        let two = [report(1, 9_990, Some(9_990)), report(2, 9_980, Some(9_980))];
        assert_eq!(predecessor_bound(0, &two, &five), None);
        let three = [two[0], two[1], report(3, 9_900, Some(9_900))];
        assert_eq!(
            predecessor_bound(0, &three, &five),
            Some(9_990 + LEASE + MARGIN)
        );
    }

    #[test]
    fn the_latest_receipt_of_any_reporter_decides() {
        // An old receipt from one, a recent one (a delayed grant) from the other:
        // the recent one is the bound.
        let reports = [
            report(1, 9_000, Some(9_000)),
            report(2, 10_100, Some(9_980)),
        ];
        assert_eq!(
            predecessor_bound(0, &reports, &fast()),
            Some(10_100 + LEASE + MARGIN)
        );
    }

    #[test]
    fn no_recent_backed_grant_keeps_the_full_wait() {
        // The last backed grant is so old that the predecessor may have led
        // unbacked since (a lone leader after the minority's wait): with the wait
        // above, that takes an election a minority's race delay after it.
        let s = fast();
        let old = s.elected_ms + LOCK_CHECK + 3 * MARGIN - s.unbacked_wait_ms;
        let reports = [report(1, 9_990, Some(old)), report(2, 9_980, None)];
        assert_eq!(predecessor_bound(0, &reports, &s), None);
        let reports = [report(1, 9_990, Some(old + 1)), report(2, 9_980, None)];
        assert_eq!(
            predecessor_bound(0, &reports, &s),
            Some(9_990 + LEASE + MARGIN)
        );
        // Only unbacked grants heard: nothing bounds an unbacked leader.
        let reports = [report(1, 9_990, None), report(2, 9_980, None)];
        assert_eq!(predecessor_bound(0, &reports, &s), None);
    }

    /// The safety argument, checked by brute force on small clusters: whatever set
    /// of followers backed the leader, some reporter belongs to it.
    #[test]
    fn every_backing_set_meets_every_sufficient_set_of_reporters() {
        for nodes in 1..=7usize {
            let others = nodes - 1;
            let backing = nodes / 2;
            let reporters = nodes - nodes / 2;
            for b in 0u32..(1 << others) {
                for r in 0u32..(1 << others) {
                    if b.count_ones() as usize >= backing
                        && r.count_ones() as usize >= reporters
                        && backing > 0
                    {
                        assert_ne!(b & r, 0, "nodes {nodes}: backing {b:b}, reporters {r:b}");
                    }
                }
            }
        }
    }
}
