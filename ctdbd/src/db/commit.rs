//! Persistent transactions (TRANS3_COMMIT, reference ctdb-protocol-samba.md §6.3):
//! the rules that decide when a client's commit may start, when it is
//! acknowledged and which node stores which replicated record. Pure: the
//! database thread stores, sends and keeps the clock.
//!
//! The node a client commits through stores the transaction, sends it to every
//! other active node of the vnn map (UPDATE_RECORD) and answers the client once
//! all of them stored it. Why an acknowledged commit survives a recovery: it
//! starts only while its database is not frozen, and is stored on its own node
//! first, so that node's copy, which a recovery pulls only once frozen, holds it
//! and the highest sequence number (smbd commits to one database at a time
//! cluster-wide, under its g_lock). Besides, a frozen copy takes no update and
//! freezing ends the commits in flight on the database ("ended by recovery",
//! answered after it; the client retries), so no copy changes between its pull
//! and the push that replaces it. Nor does a commit start on a node that is in
//! no generation yet (a daemon just started, before its first recovery): its
//! view holds only itself, so the commit would reach no other node, and the
//! recovery that makes it a member takes the continuing members' copies, which
//! never had it. `tests/sim_persistent.rs` checks this under node deaths and
//! restarts.

use std::collections::{BTreeMap, BTreeSet};

use super::ltdb;
use crate::protocol::control::INVALID_GENERATION;

/// Why a commit cannot start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No recovery has made this node a member of a generation yet.
    #[error("this node is in no generation yet")]
    NoGeneration,
    /// Recovery mode is active.
    #[error("the cluster is recovering")]
    Recovering,
    /// The database is frozen (its recovery may already have pulled it).
    #[error("the database is frozen")]
    Frozen,
    /// This node has a commit to it in flight.
    #[error("another commit to the database is in flight")]
    Busy,
}

/// How a commit ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<C> {
    /// Every node stored it: answer the client 0.
    Acknowledged(C),
    /// A node refused it: the copies may differ, so a recovery must make them
    /// the same before the client hears ("ended by recovery").
    Failed {
        /// Who to answer after the recovery.
        client: C,
        /// The database.
        db_id: u32,
    },
}

#[derive(Debug)]
struct Commit<C> {
    db_id: u32,
    client: C,
    /// Nodes that have not answered.
    waiting: BTreeSet<u32>,
    refused: bool,
}

/// The commits this node has in flight, by the reqid of their UPDATE_RECORDs.
/// `C` is whatever the caller needs to answer the client.
#[derive(Debug)]
pub struct Commits<C> {
    in_flight: BTreeMap<u32, Commit<C>>,
}

impl<C> Default for Commits<C> {
    fn default() -> Self {
        Self {
            in_flight: BTreeMap::new(),
        }
    }
}

impl<C> Commits<C> {
    /// Whether a commit to `db_id` may start on a node in `generation` (one at
    /// a time per database, as smbd's g_lock already ensures for well-behaved
    /// clients).
    pub fn may_begin(
        &self,
        db_id: u32,
        generation: u32,
        recovering: bool,
        frozen: bool,
    ) -> Result<(), Refusal> {
        if generation == INVALID_GENERATION {
            Err(Refusal::NoGeneration)
        } else if recovering {
            Err(Refusal::Recovering)
        } else if frozen {
            Err(Refusal::Frozen)
        } else if self.in_flight.values().any(|c| c.db_id == db_id) {
            Err(Refusal::Busy)
        } else {
            Ok(())
        }
    }

    /// A commit stored here and sent as `reqid` to `others`; with no others
    /// it is acknowledged at once.
    pub fn begin(
        &mut self,
        reqid: u32,
        db_id: u32,
        client: C,
        others: BTreeSet<u32>,
    ) -> Option<Outcome<C>> {
        if others.is_empty() {
            return Some(Outcome::Acknowledged(client));
        }
        self.in_flight.insert(
            reqid,
            Commit {
                db_id,
                client,
                waiting: others,
                refused: false,
            },
        );
        None
    }

    /// Whether `reqid` is a commit's.
    pub fn is_commit(&self, reqid: u32) -> bool {
        self.in_flight.contains_key(&reqid)
    }

    /// Node `from` answered `reqid`: stored (`ok`) or refused.
    pub fn answer(&mut self, reqid: u32, from: u32, ok: bool) -> Option<Outcome<C>> {
        let commit = self.in_flight.get_mut(&reqid)?;
        if !commit.waiting.remove(&from) {
            return None;
        }
        commit.refused |= !ok;
        self.finish_if_answered(reqid)
    }

    /// Nodes not in `active` will never answer: their copies are set right by
    /// the recovery their departure brings, so the others' answers decide.
    pub fn nodes_left(&mut self, active: &BTreeSet<u32>) -> Vec<Outcome<C>> {
        let mut answered = Vec::new();
        for (reqid, commit) in &mut self.in_flight {
            commit.waiting.retain(|n| active.contains(n));
            if commit.waiting.is_empty() {
                answered.push(*reqid);
            }
        }
        answered
            .into_iter()
            .filter_map(|reqid| self.finish_if_answered(reqid))
            .collect()
    }

    /// `db_id` is being frozen for a recovery: its commits in flight end
    /// without an acknowledgement (their clients hear after the recovery).
    pub fn frozen(&mut self, db_id: u32) -> Vec<C> {
        self.take_where(|id, _| id == db_id)
    }

    /// Removes and returns the commits `pred` picks (for example overdue ones).
    pub fn take_where(&mut self, mut pred: impl FnMut(u32, &C) -> bool) -> Vec<C> {
        let (taken, kept) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|(_, c)| pred(c.db_id, &c.client));
        self.in_flight = kept;
        taken.into_values().map(|c| c.client).collect()
    }

    fn finish_if_answered(&mut self, reqid: u32) -> Option<Outcome<C>> {
        if !self.in_flight.get(&reqid)?.waiting.is_empty() {
            return None;
        }
        let commit = self.in_flight.remove(&reqid)?;
        Some(if commit.refused {
            Outcome::Failed {
                client: commit.client,
                db_id: commit.db_id,
            }
        } else {
            Outcome::Acknowledged(commit.client)
        })
    }
}

/// Why a replicated transaction is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateRefused {
    /// Frozen for a recovery: the copy must stay as it was pulled.
    #[error("the database is frozen for a recovery")]
    Frozen,
    /// Not a clustered record.
    #[error("record {index} has no valid header")]
    NoHeader {
        /// Its place in the transaction.
        index: usize,
    },
    /// An older copy than ours with another value: the nodes disagree.
    #[error("record rsn {offered} is not newer than ours ({ours}) and the value differs")]
    NotNewer {
        /// The offered copy's rsn.
        offered: u64,
        /// Ours.
        ours: u64,
    },
    /// Our copy could not be read.
    #[error("reading our copy failed: {0}")]
    Unreadable(String),
}

/// One record of a transaction: key and stored value (ltdb header + value).
pub type RecordRef<'a> = (&'a [u8], &'a [u8]);

/// The records of one UPDATE_RECORD that a node stores, all in one
/// transaction, or why it stores none. A copy whose rsn is not newer than
/// ours is refused unless it holds the same value (a retried commit); a
/// volatile database keeps only records it has. `local` reads our copy.
pub fn records_to_store<'a>(
    frozen: bool,
    persistent: bool,
    offered: impl IntoIterator<Item = RecordRef<'a>>,
    mut local: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, String>,
) -> Result<Vec<RecordRef<'a>>, UpdateRefused> {
    if frozen {
        return Err(UpdateRefused::Frozen);
    }
    let mut stores = Vec::new();
    for (index, (key, stored)) in offered.into_iter().enumerate() {
        let (header, value) =
            ltdb::decode(stored).map_err(|_| UpdateRefused::NoHeader { index })?;
        let ours = local(key).map_err(UpdateRefused::Unreadable)?;
        match ours.as_deref().map(ltdb::decode) {
            Some(Ok((mine, my_value))) if mine.rsn >= header.rsn && my_value != value => {
                return Err(UpdateRefused::NotNewer {
                    offered: header.rsn,
                    ours: mine.rsn,
                })
            }
            None if !persistent => {}
            _ => stores.push((key, stored)),
        }
    }
    Ok(stores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::ltdb::LtdbHeader;

    #[test]
    fn a_commit_is_acknowledged_when_every_other_node_stored_it() {
        let mut commits = Commits::default();
        assert_eq!(commits.begin(1, 9, "client", BTreeSet::from([1, 2])), None);
        assert_eq!(commits.may_begin(9, 7, false, false), Err(Refusal::Busy));
        assert_eq!(commits.answer(1, 1, true), None);
        assert_eq!(
            commits.answer(1, 1, true),
            None,
            "a second answer counts once"
        );
        assert_eq!(
            commits.answer(1, 2, true),
            Some(Outcome::Acknowledged("client"))
        );
        assert_eq!(commits.may_begin(9, 7, false, false), Ok(()));
    }

    #[test]
    fn a_refusal_anywhere_fails_the_commit_once_all_answered() {
        let mut commits = Commits::default();
        commits.begin(1, 9, "client", BTreeSet::from([1, 2]));
        assert_eq!(commits.answer(1, 1, false), None);
        assert_eq!(
            commits.answer(1, 2, true),
            Some(Outcome::Failed {
                client: "client",
                db_id: 9
            })
        );
    }

    #[test]
    fn a_node_that_leaves_is_not_waited_for() {
        let mut commits = Commits::default();
        commits.begin(1, 9, "client", BTreeSet::from([1, 2]));
        commits.answer(1, 1, true);
        assert_eq!(
            commits.nodes_left(&BTreeSet::from([0, 1])),
            vec![Outcome::Acknowledged("client")]
        );
    }

    #[test]
    fn freezing_a_database_ends_its_commits_unacknowledged() {
        let mut commits = Commits::default();
        commits.begin(1, 9, "a", BTreeSet::from([1]));
        commits.begin(2, 8, "b", BTreeSet::from([1]));
        assert_eq!(commits.frozen(9), vec!["a"]);
        assert_eq!(commits.answer(1, 1, true), None, "gone");
        assert_eq!(commits.may_begin(9, 7, false, true), Err(Refusal::Frozen));
        assert_eq!(
            commits.may_begin(9, 7, true, false),
            Err(Refusal::Recovering)
        );
        assert_eq!(commits.answer(2, 1, true), Some(Outcome::Acknowledged("b")));
    }

    #[test]
    fn a_replicated_record_must_be_newer_unless_it_is_the_same() {
        let rec = |rsn, v: &str| ltdb::encode(&LtdbHeader::new(rsn, 0), v.as_bytes());
        let ours = |stored: Option<Vec<u8>>| move |_: &[u8]| Ok(stored.clone());
        fn one(stored: &[u8]) -> Vec<(&[u8], &[u8])> {
            vec![(&b"k"[..], stored)]
        }
        let (a1, b2, a2) = (rec(1, "a"), rec(2, "b"), rec(2, "a"));
        assert_eq!(
            records_to_store(false, true, one(&a1), ours(None))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            records_to_store(false, false, one(&a1), ours(None))
                .unwrap()
                .len(),
            0,
            "volatile: only records we have"
        );
        assert_eq!(
            records_to_store(false, true, one(&b2), ours(Some(a1.clone())))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            records_to_store(false, true, one(&a2), ours(Some(a2.clone())))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            records_to_store(false, true, one(&b2), ours(Some(a2.clone()))),
            Err(UpdateRefused::NotNewer {
                offered: 2,
                ours: 2
            })
        );
        assert_eq!(
            records_to_store(false, true, vec![(&b"k"[..], &b"short"[..])], ours(None)),
            Err(UpdateRefused::NoHeader { index: 0 })
        );
        assert_eq!(
            records_to_store(true, true, one(&b2), ours(None)),
            Err(UpdateRefused::Frozen)
        );
        assert_eq!(
            records_to_store(false, true, one(&b2), |_: &[u8]| Err("io".to_string())),
            Err(UpdateRefused::Unreadable("io".into()))
        );
    }

    #[test]
    fn no_commit_starts_before_the_node_is_in_a_generation() {
        let commits: Commits<&str> = Commits::default();
        assert_eq!(
            commits.may_begin(9, INVALID_GENERATION, false, false),
            Err(Refusal::NoGeneration),
            "a daemon just started, before its first recovery"
        );
        assert_eq!(commits.may_begin(9, 7, false, false), Ok(()));
    }
}
