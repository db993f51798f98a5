//! How a recovery makes every node's copy of a database the same (reference
//! ctdb-protocol-samba.md §7.3). Pure: the database thread pulls and pushes, this
//! decides what is pushed.
//!
//! - **Volatile**: per key, the copy with the highest rsn wins (the dmaster's
//!   copy has the highest: only a dmaster raises it, and copies left behind keep
//!   the rsn they were handed over with, so a record caught between two nodes is
//!   not lost). On a tie a copy that names the leader as dmaster gives way. Every
//!   node then holds every record with the leader as dmaster; the others migrate
//!   records back on first use.
//! - **Persistent**: the whole database of the node with the highest database
//!   sequence number (each committed transaction raised it by one; the leader
//!   asks each node's with GET_DB_SEQNUM and pulls that copy alone), as CTDB does,
//!   but chosen among the nodes that were members of the generation being
//!   replaced when there are any: unlike CTDB, a node that comes back with a
//!   higher number from a history of its own does not erase what the nodes that
//!   stayed up acknowledged meanwhile.
//!
//! Empty records (a header and nothing else) are dropped either way.
//!
//! Records arrive a batch at a time and are kept in a [`RecordArena`]: one
//! buffer for the bytes of all of them, not two allocations per record (a
//! recovery of 100 000 records spent a tenth of its time allocating them).

use std::collections::BTreeSet;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::ltdb::{self, flags, LtdbHeader, HEADER_LEN};
pub use crate::protocol::dbctl::DB_SEQUENCE_NUMBER_KEY as SEQNUM_KEY;
use crate::protocol::marshall::REC_DATA_FIXED_SIZE;

/// Where one record's key and stored value lie in a [`RecordArena`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    at: usize,
    key_len: u32,
    data_len: u32,
}

impl Span {
    /// Where the key's bytes are in the arena.
    fn key(&self) -> std::ops::Range<usize> {
        self.at..self.at + self.key_len as usize
    }

    /// Where the stored value's bytes are in the arena.
    fn data(&self) -> std::ops::Range<usize> {
        let start = self.at + self.key_len as usize;
        start..start + self.data_len as usize
    }
}

/// Records (key, stored value) in one buffer. A record replaced in a merge
/// leaves its old bytes behind until the arena is dropped: a recovery's
/// arena lives for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordArena {
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

impl RecordArena {
    /// Appends a record; its index.
    pub fn push(&mut self, key: &[u8], data: &[u8]) -> usize {
        let span = self.append(key, data);
        self.spans.push(span);
        self.spans.len() - 1
    }

    fn append(&mut self, key: &[u8], data: &[u8]) -> Span {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(data);
        Span {
            at,
            key_len: len_u32(key),
            data_len: len_u32(data),
        }
    }

    /// Puts `data` in place of record `index`'s value.
    fn replace(&mut self, index: usize, data: &[u8]) {
        let old = self.spans[index];
        if old.data_len as usize == data.len() {
            self.bytes[old.data()].copy_from_slice(data);
            return;
        }
        let at = self.bytes.len();
        self.bytes.extend_from_within(old.key());
        self.bytes.extend_from_slice(data);
        self.spans[index] = Span {
            at,
            key_len: old.key_len,
            data_len: len_u32(data),
        };
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Record `index`: key and stored value.
    pub fn get(&self, index: usize) -> (&[u8], &[u8]) {
        let span = self.spans[index];
        (&self.bytes[span.key()], &self.bytes[span.data()])
    }

    fn data_mut(&mut self, index: usize) -> &mut [u8] {
        let span = self.spans[index];
        &mut self.bytes[span.data()]
    }

    /// Every record, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The records `range`.
    pub fn range(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        range.map(|i| self.get(i))
    }

    /// The records as consecutive ranges whose marshall buffers (samba §7.3)
    /// take at most `limit` bytes each (a record bigger than that goes alone).
    pub fn batches(&self, limit: usize) -> Vec<std::ops::Range<usize>> {
        let mut batches = Vec::new();
        let (mut start, mut size) = (0, MARSHALL_HEADER_LEN);
        for (i, span) in self.spans.iter().enumerate() {
            let record = REC_DATA_FIXED_SIZE + span.key_len as usize + span.data_len as usize;
            if i > start && size + record > limit {
                batches.push(start..i);
                (start, size) = (i, MARSHALL_HEADER_LEN);
            }
            size += record;
        }
        if start < self.len() {
            batches.push(start..self.len());
        }
        batches
    }

    /// Keeps only the records `keep` says yes to (their bytes stay until the
    /// arena is dropped).
    fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        let bytes = &self.bytes;
        self.spans
            .retain(|span| keep(&bytes[span.key()], &bytes[span.data()]));
    }
}

/// A marshall buffer's own bytes before its records: db_id and count.
const MARSHALL_HEADER_LEN: usize = 8;

fn len_u32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).expect("a record shorter than 4 GiB")
}

/// The merge of a volatile database's copies as they are pulled.
#[derive(Debug)]
pub struct VolatileMerge {
    leader: u32,
    records: RecordArena,
    /// Per record: the rsn and dmaster of the copy kept so far.
    kept: Vec<(u64, u32)>,
    /// Record indexes by their key's hash.
    index: HashTable<usize>,
    hasher: std::collections::hash_map::RandomState,
}

impl VolatileMerge {
    /// An empty merge for a recovery led by `leader`.
    pub fn new(leader: u32) -> Self {
        Self {
            leader,
            records: RecordArena::default(),
            kept: Vec::new(),
            index: HashTable::new(),
            hasher: Default::default(),
        }
    }

    /// One node's copy of one record (records without a header are ignored).
    /// The copies of one key are taken in node order.
    pub fn add(&mut self, key: &[u8], stored: &[u8]) {
        let Ok(header) = LtdbHeader::from_bytes(stored) else {
            return;
        };
        let hash = self.hasher.hash_one(key);
        let records = &self.records;
        let found = self.index.find(hash, |&i| records.get(i).0 == key).copied();
        match found {
            None => {
                let index = self.records.push(key, stored);
                self.kept.push((header.rsn, header.dmaster));
                let records = &self.records;
                let hasher = &self.hasher;
                self.index
                    .insert_unique(hash, index, |&i| hasher.hash_one(records.get(i).0));
            }
            Some(index) => {
                let (rsn, dmaster) = self.kept[index];
                if header.rsn > rsn || (header.rsn == rsn && dmaster == self.leader) {
                    self.records.replace(index, stored);
                    self.kept[index] = (header.rsn, header.dmaster);
                }
            }
        }
    }

    /// The records every node gets: the leader as dmaster of each, empty ones
    /// dropped.
    pub fn finish(self) -> RecordArena {
        let Self {
            leader,
            mut records,
            ..
        } = self;
        for i in 0..records.len() {
            let data = records.data_mut(i);
            if let Ok(mut header) = LtdbHeader::from_bytes(data) {
                header.dmaster = leader;
                header.flags |= flags::MIGRATED_WITH_DATA;
                header.flags &= !(flags::RO_FLAGS | flags::TRANSIENT);
                data[..HEADER_LEN].copy_from_slice(&header.to_bytes());
            }
        }
        records.retain(|_, stored| stored.len() > HEADER_LEN);
        records
    }
}

/// The copy of a persistent database chosen by sequence number, as it is
/// pulled: taken whole, without its empty records.
#[derive(Debug, Default)]
pub struct PersistentCopy {
    records: RecordArena,
    /// Empty records the chosen node has (its own copy differs from what
    /// every node gets when there are any).
    dropped: usize,
}

impl PersistentCopy {
    /// One record of the chosen copy.
    pub fn add(&mut self, key: &[u8], stored: &[u8]) {
        if stored.len() > HEADER_LEN {
            self.records.push(key, stored);
        } else {
            self.dropped += 1;
        }
    }

    /// The records every node gets, and whether they are exactly the chosen
    /// node's copy (it had no empty record).
    pub fn finish(self) -> (RecordArena, bool) {
        (self.records, self.dropped == 0)
    }
}

/// The node whose persistent copy every node gets: the highest sequence number
/// (the first in `seqnums`' order on a tie), among `candidates` when any of
/// them answered (see `recovery_run::RecoveryRun`'s continuing members for
/// why).
pub fn choose_persistent(seqnums: &[(u32, u64)], candidates: &BTreeSet<u32>) -> Option<u32> {
    let any_candidate = seqnums.iter().any(|(node, _)| candidates.contains(node));
    let mut best: Option<(u32, u64)> = None;
    for &(node, seqnum) in seqnums {
        if any_candidate && !candidates.contains(&node) {
            continue;
        }
        if best.is_none_or(|(_, s)| seqnum > s) {
            best = Some((node, seqnum));
        }
    }
    best.map(|(node, _)| node)
}

/// The sequence number in the stored value of [`SEQNUM_KEY`] (header + u64);
/// 0 when it is malformed.
pub fn stored_sequence_number(stored: &[u8]) -> u64 {
    ltdb::decode(stored)
        .ok()
        .and_then(|(_, value)| value.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// How node `pnn` stores a pushed record: as its dmaster (the leader, for a
/// volatile database) it raises the rsn, as every store of a dmaster does.
pub fn as_stored_by(pnn: u32, volatile: bool, pushed: &[u8]) -> Option<Vec<u8>> {
    let (mut header, value) = ltdb::decode(pushed).ok()?;
    if volatile && header.dmaster == pnn {
        header.rsn += 1;
    }
    Some(ltdb::encode(&header, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, rsn: u64, dmaster: u32, value: &str) -> (Vec<u8>, Vec<u8>) {
        (
            key.as_bytes().to_vec(),
            ltdb::encode(&LtdbHeader::new(rsn, dmaster), value.as_bytes()),
        )
    }

    fn merge(leader: u32, nodes: &[Vec<(Vec<u8>, Vec<u8>)>]) -> RecordArena {
        let mut merge = VolatileMerge::new(leader);
        for node in nodes {
            for (key, stored) in node {
                merge.add(key, stored);
            }
        }
        merge.finish()
    }

    fn value_of(records: &RecordArena, key: &str) -> Option<(u64, u32, String)> {
        records
            .iter()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, s)| {
                let (h, v) = ltdb::decode(s).unwrap();
                (h.rsn, h.dmaster, String::from_utf8(v.to_vec()).unwrap())
            })
    }

    #[test]
    fn the_highest_rsn_wins_and_the_leader_becomes_dmaster() {
        let merged = merge(
            2,
            &[
                vec![rec("a", 3, 1, "old"), rec("b", 9, 0, "b0")],
                vec![
                    rec("a", 7, 1, "a longer new value"),
                    rec("b", 2, 1, "stale"),
                ],
            ],
        );
        assert_eq!(
            value_of(&merged, "a"),
            Some((7, 2, "a longer new value".into()))
        );
        assert_eq!(value_of(&merged, "b"), Some((9, 2, "b0".into())));
        assert_eq!(merged.len(), 2);
        let (h, _) = ltdb::decode(merged.get(0).1).unwrap();
        assert!(h.has(flags::MIGRATED_WITH_DATA));
    }

    #[test]
    fn on_a_tie_a_copy_naming_the_leader_gives_way_and_empty_records_go() {
        let merged = merge(
            0,
            &[
                vec![rec("k", 5, 0, "leaders"), rec("gone", 4, 0, "")],
                vec![rec("k", 5, 1, "ones")],
            ],
        );
        assert_eq!(value_of(&merged, "k"), Some((5, 0, "ones".into())));
        assert_eq!(value_of(&merged, "gone"), None);
        assert_eq!(merged.len(), 1);
    }

    #[test]
    fn many_records_merge_by_key_whatever_their_order() {
        let keys = 5000;
        let node = |rsn_of: &dyn Fn(usize) -> u64, who: u32| -> Vec<_> {
            (0..keys)
                .map(|i| rec(&format!("key-{i}"), rsn_of(i), who, &format!("{who}:{i}")))
                .collect()
        };
        let mut second = node(&|i| (i % 3) as u64, 1);
        second.reverse();
        let merged = merge(0, &[node(&|_| 1, 2), second]);
        assert_eq!(merged.len(), keys);
        for i in [0, 1, 2, 4998, 4999] {
            let winner = if i % 3 == 2 { 1 } else { 2 };
            assert_eq!(
                value_of(&merged, &format!("key-{i}")).unwrap().2,
                format!("{winner}:{i}"),
                "key-{i}"
            );
        }
    }

    #[test]
    fn batches_stay_within_the_limit_and_cover_every_record_once() {
        let mut arena = RecordArena::default();
        for i in 0..100u8 {
            arena.push(&[i; 10], &[i; 40]);
        }
        // 16 + 10 + 40 = 66 bytes a record, 8 a buffer.
        let batches = arena.batches(8 + 66 * 7);
        assert_eq!(batches.len(), 15);
        assert!(batches.iter().all(|b| b.len() <= 7));
        let covered: Vec<usize> = batches.into_iter().flatten().collect();
        assert_eq!(covered, (0..100).collect::<Vec<_>>());
        // A record over the limit goes alone.
        assert_eq!(arena.batches(10).len(), 100);
        assert!(RecordArena::default().batches(100).is_empty());
    }

    #[test]
    fn the_persistent_copy_drops_empty_records_and_says_so() {
        let mut copy = PersistentCopy::default();
        let (k, v) = rec("x", 1, 0, "kept");
        copy.add(&k, &v);
        let (records, whole) = copy.finish();
        assert!(whole);
        assert_eq!(records.len(), 1);

        let mut copy = PersistentCopy::default();
        copy.add(&k, &v);
        let (k, v) = rec("deleted", 1, 0, "");
        copy.add(&k, &v);
        let (records, whole) = copy.finish();
        assert!(!whole, "the node's own copy still has the empty record");
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn the_persistent_copy_with_the_highest_sequence_number_is_chosen() {
        let seqnums = [(0, 4), (1, 5), (2, 5)];
        assert_eq!(choose_persistent(&seqnums, &BTreeSet::new()), Some(1));
        // Node 1 came back from a history of its own; 0 and 2 stayed members.
        assert_eq!(
            choose_persistent(&seqnums, &BTreeSet::from([0, 2])),
            Some(2)
        );
        // Candidates that did not answer do not count.
        assert_eq!(choose_persistent(&seqnums, &BTreeSet::from([7])), Some(1));
        assert_eq!(choose_persistent(&[], &BTreeSet::new()), None);
    }

    #[test]
    fn the_leader_stores_a_pushed_volatile_record_one_rsn_higher() {
        let (_, pushed) = rec("k", 5, 0, "v");
        let rsn = |pnn, volatile| {
            ltdb::decode(&as_stored_by(pnn, volatile, &pushed).unwrap())
                .unwrap()
                .0
                .rsn
        };
        assert_eq!(rsn(0, true), 6);
        assert_eq!(rsn(1, true), 5);
        assert_eq!(
            rsn(0, false),
            5,
            "persistent records are stored as they are"
        );
    }
}
