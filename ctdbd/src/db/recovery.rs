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
//!   sequence number (each committed transaction raised it by one), as CTDB does,
//!   but chosen among the nodes that were members of the generation being
//!   replaced when there are any: unlike CTDB, a node that comes back with a
//!   higher number from a history of its own does not erase what the nodes that
//!   stayed up acknowledged meanwhile.
//!
//! Empty records (a header and nothing else) are dropped either way.

use std::collections::{BTreeSet, HashMap};

use super::ltdb::{self, flags};
pub use crate::protocol::dbctl::DB_SEQUENCE_NUMBER_KEY as SEQNUM_KEY;

/// One node's records of a database: key and stored value (header + value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The node they came from.
    pub node: u32,
    /// Its records.
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The records to push for a volatile database recovered by `leader`.
pub fn merge_volatile(leader: u32, pulled: &[Pulled]) -> Vec<(Vec<u8>, Vec<u8>)> {
    // A hash map: a recovery of a million records spends its time here, and the
    // order of the push does not matter.
    let records = pulled.iter().map(|p| p.records.len()).max().unwrap_or(0);
    let mut chosen: HashMap<&[u8], (u64, u32, &[u8])> = HashMap::with_capacity(records);
    for node in pulled {
        for (key, stored) in &node.records {
            let Ok((header, _)) = ltdb::decode(stored) else {
                continue;
            };
            let replace = match chosen.get(key.as_slice()) {
                None => true,
                Some((rsn, dmaster, _)) => {
                    header.rsn > *rsn || (header.rsn == *rsn && *dmaster == leader)
                }
            };
            if replace {
                chosen.insert(key, (header.rsn, header.dmaster, stored));
            }
        }
    }
    chosen
        .into_iter()
        .filter_map(|(key, (_, _, stored))| {
            let (mut header, value) = ltdb::decode(stored).ok()?;
            if value.is_empty() {
                return None;
            }
            header.dmaster = leader;
            header.flags |= flags::MIGRATED_WITH_DATA;
            header.flags &= !(flags::RO_FLAGS | flags::TRANSIENT);
            Some((key.to_vec(), ltdb::encode(&header, value)))
        })
        .collect()
}

/// The records to push for a persistent database: those of the node with the
/// highest sequence number (the first such node on a tie), among the nodes in
/// `candidates` when any of them sent its copy (see
/// `recovery_run::RecoveryRun`'s continuing members for why).
pub fn choose_persistent(pulled: &[Pulled], candidates: &BTreeSet<u32>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let any_candidate = pulled.iter().any(|p| candidates.contains(&p.node));
    let mut best: Option<(&Pulled, u64)> = None;
    for node in pulled {
        if any_candidate && !candidates.contains(&node.node) {
            continue;
        }
        let seqnum = sequence_number(&node.records);
        if best.is_none_or(|(_, s)| seqnum > s) {
            best = Some((node, seqnum));
        }
    }
    best.map(|(node, _)| {
        node.records
            .iter()
            .filter(|(_, stored)| stored.len() > ltdb::HEADER_LEN)
            .cloned()
            .collect()
    })
    .unwrap_or_default()
}

/// A persistent database's sequence number among its records: the u64 after
/// the header of [`SEQNUM_KEY`]; 0 when missing or malformed.
pub fn sequence_number(records: &[(Vec<u8>, Vec<u8>)]) -> u64 {
    records
        .iter()
        .find(|(key, _)| key == SEQNUM_KEY)
        .map_or(0, |(_, stored)| stored_sequence_number(stored))
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
    use crate::db::ltdb::LtdbHeader;

    fn rec(key: &str, rsn: u64, dmaster: u32, value: &str) -> (Vec<u8>, Vec<u8>) {
        (
            key.as_bytes().to_vec(),
            ltdb::encode(&LtdbHeader::new(rsn, dmaster), value.as_bytes()),
        )
    }

    fn value_of(records: &[(Vec<u8>, Vec<u8>)], key: &str) -> Option<(u64, u32, String)> {
        records
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, s)| {
                let (h, v) = ltdb::decode(s).unwrap();
                (h.rsn, h.dmaster, String::from_utf8(v.to_vec()).unwrap())
            })
    }

    #[test]
    fn the_highest_rsn_wins_and_the_leader_becomes_dmaster() {
        let pulled = vec![
            Pulled {
                node: 0,
                records: vec![rec("a", 3, 1, "old"), rec("b", 9, 0, "b0")],
            },
            Pulled {
                node: 1,
                records: vec![rec("a", 7, 1, "new"), rec("b", 2, 1, "stale")],
            },
        ];
        let merged = merge_volatile(2, &pulled);
        assert_eq!(value_of(&merged, "a"), Some((7, 2, "new".into())));
        assert_eq!(value_of(&merged, "b"), Some((9, 2, "b0".into())));
        let (h, _) = ltdb::decode(&merged[0].1).unwrap();
        assert!(h.has(flags::MIGRATED_WITH_DATA));
    }

    #[test]
    fn on_a_tie_a_copy_naming_the_leader_gives_way_and_empty_records_go() {
        let pulled = vec![
            Pulled {
                node: 0,
                records: vec![rec("k", 5, 0, "leaders"), rec("gone", 4, 0, "")],
            },
            Pulled {
                node: 1,
                records: vec![rec("k", 5, 1, "ones")],
            },
        ];
        let merged = merge_volatile(0, &pulled);
        assert_eq!(value_of(&merged, "k"), Some((5, 0, "ones".into())));
        assert_eq!(value_of(&merged, "gone"), None);
    }

    #[test]
    fn the_persistent_copy_with_the_highest_sequence_number_wins_whole() {
        let seq = |n: u64| {
            (
                SEQNUM_KEY.to_vec(),
                ltdb::encode(&LtdbHeader::new(1, 0), &n.to_le_bytes()),
            )
        };
        let pulled = vec![
            Pulled {
                node: 0,
                records: vec![seq(4), rec("x", 1, 0, "behind")],
            },
            Pulled {
                node: 1,
                records: vec![seq(5), rec("x", 1, 1, "ahead"), rec("y", 1, 1, "only here")],
            },
            Pulled {
                node: 2,
                records: vec![seq(5), rec("x", 1, 2, "tie, later node")],
            },
        ];
        let chosen = choose_persistent(&pulled, &BTreeSet::new());
        assert_eq!(value_of(&chosen, "x").unwrap().2, "ahead");
        assert!(value_of(&chosen, "y").is_some());
        assert_eq!(sequence_number(&chosen), 5);

        // Node 1 came back from a history of its own; 0 and 2 stayed members.
        let chosen = choose_persistent(&pulled, &BTreeSet::from([0, 2]));
        assert_eq!(value_of(&chosen, "x").unwrap().2, "tie, later node");
        assert!(value_of(&chosen, "y").is_none());
        // Candidates that sent nothing do not count.
        let chosen = choose_persistent(&pulled, &BTreeSet::from([7]));
        assert_eq!(value_of(&chosen, "x").unwrap().2, "ahead");
    }

    #[test]
    fn the_leader_stores_a_pushed_volatile_record_one_rsn_higher() {
        let (_, pushed) = rec("k", 5, 0, "v");
        let (h, _) = ltdb::decode(&as_stored_by(0, true, &pushed).unwrap())
            .map(|(h, v)| (h, v.to_vec()))
            .unwrap();
        assert_eq!(h.rsn, 6);
        let (h, _) = ltdb::decode(&as_stored_by(1, true, &pushed).unwrap())
            .map(|(h, v)| (h, v.to_vec()))
            .unwrap();
        assert_eq!(h.rsn, 5);
        let (h, _) = ltdb::decode(&as_stored_by(0, false, &pushed).unwrap())
            .map(|(h, v)| (h, v.to_vec()))
            .unwrap();
        assert_eq!(h.rsn, 5, "persistent records are stored as they are");
    }
}
