//! Succession: how soon a new leader may move the addresses of a predecessor it
//! cannot see (issue #12, power-loss failover of the leader).
//!
//! Pure rules, no `Node` state: the leader's *backing* (how long it may keep its own
//! addresses) and the successor's *bound* on a silent predecessor's hold. Not yet
//! wired into `takeover`/`cluster` (see "Wiring" at the end); until it is, a new
//! leader waits a lease + margin after its election for every node, as
//! `takeover::guard_after_election` says.
//!
//! # Why
//! A new leader cannot vouch for what a predecessor it cannot see keeps: today it
//! waits `IPLeaseTimeMs` + `LEASE_MARGIN_MS` after its election before moving
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
//! again while M leads (X could claim leadership only with the lock); a grant or a
//! report is not in flight longer than the margin; a leader's lock check notices a
//! lost lock within `lock_check` (a stalled process keeps its addresses in the
//! kernel whatever it decides, as today); all nodes count the same `nodes`.
//!
//! Applies to unseen nodes only, and only to what they keep as leaders: an unseen
//! follower of X may hold a lease from X until `elected` + lease (+ margin), so M
//! still guards every other unseen node as today, and holds (`holds`) are gated as
//! before. In the 3-node power loss of the leader the only unseen node is X.
//!
//! # What it buys, what it costs
//! After a power loss of the leader, its addresses move at max(detection, last
//! grant receipt + lease + margin) + the run, instead of detection + lease +
//! margin + the run: at the fast tunables about 0.4 s + the run (today 0.74 s
//! measured), the same as for a follower's power loss (0.399 s), and the margin
//! then dominates. Costs: a leader whose followers' acknowledgements stop for a
//! lease (a stalled machine) drops its own addresses, as its followers already do;
//! a node that leads alone (started alone, or the survivor of item 1) keeps
//! addresses only `unbacked_wait` after its start or last backing — cold start of
//! nodes started together is unaffected (backing arrives within a request interval,
//! long before the first run's guards end).
//!
//! # Wiring (not done yet)
//! - Leader: track echoed stamps per follower (`lease_requested`), keep
//!   `backing_until` and the last backing; keeping and taking its own addresses
//!   (`may_keep_addresses`, the take in `takeover`) needs lock && [`may_keep_own`]
//!   (with `NotConfigured`: unchanged). `lease_valid` itself must stay "leads with
//!   the lock": granting leases and the hold promises rest on it, and an unbacked
//!   leader that granted nothing could never become backed. A leader that regains
//!   backing after a lapse asks for a takeover run (as a follower's lapse does).
//! - `LeaseGrant` gains a `backed` byte; `LeaseRequest` gains the receipt report
//!   (a list of `(pnn, any_age_ms, backed_age_ms)`), both trailing and optional in
//!   decoding.
//! - Successor: keep reports per node after `become_leader`; in
//!   `guard_after_election` and on each report, lower the unseen predecessor's guard
//!   to `predecessor_bound`. Connected nodes' guards may end at the same bound:
//!   they are kept today (unless the predecessor is dead by its guardian's word)
//!   because a predecessor that lost the lock unaware may still run a takeover.
//!   Under the backing rule its run can give an address to itself only while
//!   backed (covered by the bound) or unbacked (ruled out by condition 2); to a
//!   connected node only before that node follows M, which M's gather then sees
//!   (a take in progress counts as held, and M's gather reaches it after M's
//!   LEADER message), never after (`may_move_addresses`); to an unseen node, whose
//!   own guard stays. A connected node lost before it releases: its lease from X
//!   ends by its own reported receipt + lease (a grant is asked for before it
//!   arrives), which replaces `note_lease_granted(pnn, elected + lease)`.
//! - Simulation stories (leader cut off then dead; leader powered off) and the
//!   random schedules with many cases, then the vm failover/partition tests.

// Used only by its tests until the wiring above is done.
#![cfg_attr(not(test), allow(dead_code))]

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
