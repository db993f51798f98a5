//! What the node counts for its operators: recoveries, takeover runs and their
//! length, controls by opcode, peer links coming and going and the silences
//! between a peer's packets. Plain numbers: the daemon publishes them in its
//! snapshot (`daemon::snapshot`) and the metrics endpoint renders them; the core
//! knows nothing of either.

use std::collections::BTreeMap;

use crate::histogram::Histogram;

/// Bounds of [`Counters::takeover_duration`], ms: a run takes milliseconds when
/// every node answers at once, up to `TakeoverTimeout` (9 s) when one does not.
pub const TAKEOVER_BOUNDS_MS: &[u64] = &[5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
/// Bounds of [`PeerCounters::gaps`], ms: a healthy link hears a keepalive every
/// `KeepaliveIntervalMs` (500 ms by default); a peer is declared dead after
/// `KeepaliveLimit` periods of silence (2.5 s by default).
pub const GAP_BOUNDS_MS: &[u64] = &[50, 100, 250, 500, 750, 1000, 1500, 2500, 5000, 10000];

/// The node's counters, from its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Recoveries this node went through (vnn maps installed).
    pub recoveries: u64,
    /// Takeover runs this node led that completed.
    pub takeover_runs_ok: u64,
    /// Takeover runs this node led that failed (a step failed, timed out, or a node
    /// was lost) or were dropped when it stopped leading.
    pub takeover_runs_failed: u64,
    /// How long each takeover run that ended (completed or failed) took.
    pub takeover_duration: Histogram,
    /// Controls this node answered, by opcode, from clients and peers (not its own
    /// takeover run's calls to itself).
    pub controls: BTreeMap<u32, u64>,
    /// Per peer pnn.
    pub peers: BTreeMap<u32, PeerCounters>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            recoveries: 0,
            takeover_runs_ok: 0,
            takeover_runs_failed: 0,
            takeover_duration: Histogram::new(TAKEOVER_BOUNDS_MS),
            controls: BTreeMap::new(),
            peers: BTreeMap::new(),
        }
    }
}

/// One peer link's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCounters {
    /// Times the link came up (both connections established).
    pub link_up: u64,
    /// Times the link went down (a connection closed, or keepalives missed).
    pub link_down: u64,
    /// Time between consecutive packets from the peer while the link is up: the
    /// silence the keepalive check measures.
    pub gaps: Histogram,
}

impl Default for PeerCounters {
    fn default() -> Self {
        Self {
            link_up: 0,
            link_down: 0,
            gaps: Histogram::new(GAP_BOUNDS_MS),
        }
    }
}
