//! Read-only delegations and sticky records: the header arithmetic and the
//! tracking bitmap (reference/ctdb-protocol-samba.md §4.5, §4.7, §4.8). The flow
//! itself (when a delegation is granted, when it is revoked, which calls wait)
//! lives in `migrate`, beside the migration it changes.
//!
//! A database marked read-only (`SET_DB_READONLY`) lets its dmaster answer a
//! read (`FETCH_WITH_HEADER` with `WANT_READONLY`) without giving the record
//! away: it hands out a copy flagged [`flags::RO_HAVE_READONLY`], which smbd on
//! that node may read by itself, and notes the node in a tracking entry (the
//! `<path>.RO` file, one bitmap per key). Before the record may change again,
//! every such copy is overwritten with one that is no longer a delegation
//! (UPDATE_RECORD to each tracked node): the revocation.
//!
//! ```text
//!  dmaster's copy        rsn       flags
//!  before the grant      R0        -
//!  first grant           R0+3      HAVE_DELEGATIONS        copy handed out: R0+1, HAVE_READONLY
//!  a write arrives       R0+3      + REVOKING_READONLY     sent to delegates: R0+2, no RO flag
//!  all delegates stored  R0+4      + REVOKE_COMPLETE
//!  next call             R0+5      -                       (the store as dmaster adds one)
//! ```

use std::time::Duration;

use super::ltdb::{flags, LtdbHeader};

/// Adds node `pnn` to a tracking bitmap: bit `pnn % 8` of byte `pnn / 8`, the
/// bitmap growing as needed.
pub fn track(bitmap: &mut Vec<u8>, pnn: u32) {
    let byte = (pnn / 8) as usize;
    if bitmap.len() <= byte {
        bitmap.resize(byte + 1, 0);
    }
    bitmap[byte] |= 1 << (pnn % 8);
}

/// The nodes a tracking bitmap names, lowest first.
pub fn tracked(bitmap: &[u8]) -> Vec<u32> {
    let mut nodes = Vec::new();
    for (i, byte) in bitmap.iter().enumerate() {
        for bit in 0..8u32 {
            if byte & (1 << bit) != 0 {
                nodes.push(i as u32 * 8 + bit);
            }
        }
    }
    nodes
}

/// The dmaster's header once it has handed out delegations: on the first grant
/// the rsn goes up by 3 (so that the copies, the revocation and its end each
/// have an rsn of their own below the next write's), later grants leave it.
pub fn granting(header: &LtdbHeader) -> LtdbHeader {
    let mut granted = *header;
    if !header.has(flags::RO_HAVE_DELEGATIONS) {
        granted.rsn += 3;
        granted.flags |= flags::RO_HAVE_DELEGATIONS;
    }
    granted
}

/// The header of the copy handed to a delegate, from the dmaster's header after
/// [`granting`]: two below it, flagged as a delegation.
pub fn delegated_copy(granted: &LtdbHeader) -> LtdbHeader {
    let mut copy = *granted;
    copy.rsn = granted.rsn.saturating_sub(2);
    copy.flags = (copy.flags | flags::RO_HAVE_READONLY) & !flags::RO_HAVE_DELEGATIONS;
    copy
}

/// The header every delegate stores when its delegation is revoked: one below
/// the dmaster's (above the delegated copy's), no read-only flag, and marked as
/// migrated with data so that the copy is kept.
pub fn revoked_copy(dmaster: &LtdbHeader) -> LtdbHeader {
    let mut copy = *dmaster;
    copy.rsn = dmaster.rsn.saturating_sub(1);
    copy.flags = (copy.flags & !flags::RO_FLAGS) | flags::MIGRATED_WITH_DATA;
    copy
}

/// Whether a header is of a record whose delegations are being revoked, and not
/// past what the revocation started from (`started_at`, the dmaster's rsn then):
/// the state in which a finished revocation may be recorded.
pub fn still_revoking(header: &LtdbHeader, started_at: u64) -> bool {
    header.has(flags::RO_REVOKING_READONLY | flags::RO_HAVE_DELEGATIONS) && header.rsn <= started_at
}

/// How long calls wait after a revocation: read-only ones after a successful one
/// (the writes that waited go first), all of them after a failed one.
pub const RETRY_AFTER_REVOCATION: Duration = Duration::from_secs(1);

/// The tunables of sticky records (§4.8, Appendix B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickyTunables {
    /// `HopcountMakeSticky`: a call that took this many hops makes its record
    /// sticky.
    pub make_sticky_hops: u32,
    /// `StickyDuration`: how long a record stays sticky.
    pub duration: Duration,
    /// `StickyPindown`: how long a sticky record stays with a node that just
    /// became its dmaster (other nodes' calls wait meanwhile).
    pub pindown: Duration,
}

impl Default for StickyTunables {
    /// CTDB 4.17's defaults.
    fn default() -> Self {
        Self {
            make_sticky_hops: 50,
            duration: Duration::from_secs(600),
            pindown: Duration::from_millis(200),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bitmap_is_ctdbs_bit_per_node() {
        let mut bitmap = Vec::new();
        track(&mut bitmap, 2);
        assert_eq!(bitmap, vec![0b100]);
        track(&mut bitmap, 9);
        track(&mut bitmap, 2);
        assert_eq!(bitmap, vec![0b100, 0b10]);
        assert_eq!(tracked(&bitmap), vec![2, 9]);
        assert!(tracked(&[]).is_empty());
    }

    /// The rsn steps of §4.5/§4.7: the copy below the dmaster, the revocation's
    /// copy between the two, and a second grant leaving the rsn alone.
    #[test]
    fn grant_and_revoke_headers_follow_ctdbs_rsn_steps() {
        let mut before = LtdbHeader::new(10, 1);
        before.flags = flags::MIGRATED_WITH_DATA;
        let granted = granting(&before);
        assert_eq!(granted.rsn, 13);
        assert!(granted.has(flags::RO_HAVE_DELEGATIONS));
        assert_eq!(
            granting(&granted),
            granted,
            "a second grant changes nothing"
        );
        let copy = delegated_copy(&granted);
        assert_eq!((copy.rsn, copy.dmaster), (11, 1));
        assert!(copy.has(flags::RO_HAVE_READONLY | flags::MIGRATED_WITH_DATA));
        assert!(!copy.has(flags::RO_HAVE_DELEGATIONS));
        let mut revoking = granted;
        revoking.flags |= flags::RO_REVOKING_READONLY;
        let revoked = revoked_copy(&revoking);
        assert_eq!(revoked.rsn, 12);
        assert_eq!(revoked.flags & flags::RO_FLAGS, 0);
        assert!(revoked.has(flags::MIGRATED_WITH_DATA));
        assert!(copy.rsn < revoked.rsn && revoked.rsn < revoking.rsn);
        assert!(still_revoking(&revoking, 13));
        assert!(!still_revoking(&granted, 13), "not revoking");
        let mut moved_on = revoking;
        moved_on.rsn = 14;
        assert!(!still_revoking(&moved_on, 13));
    }
}
