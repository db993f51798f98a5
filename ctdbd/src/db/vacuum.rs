//! Vacuuming: removing the empty records that deleted opens, locks and sessions
//! leave in volatile databases (reference ctdb-protocol-samba.md §6.7, §7.4).
//!
//! smbd never deletes a clustered record itself: it stores it empty (a bare ltdb
//! header) and tells its daemon (SCHEDULE_FOR_DELETION). Several nodes may hold a
//! copy of the record, and only the newest copy, the dmaster's, says what the
//! record is. So an empty record may go only when its dmaster copy is empty, and
//! then every node's copy must go, or an old copy could come back in a recovery.
//! The key's lmaster decides, because every hand-over of the record passes
//! through it:
//!
//! ```text
//!   node A (dmaster, not lmaster)      L (lmaster)                 other nodes
//!   delete queue ─ run: empty, ours ─VACUUM_FETCH─> migrate it here (a call)
//!                                     queue ─ run: empty, ours ─TRY_DELETE_RECORDS─>
//!                                                                 delete own copy if
//!                                                                 not dmaster, rsn ≤,
//!                                     <──────── refused records ── no RO flags, unlocked
//!                                     everyone agreed, still empty,
//!                                     still ours, same rsn: delete
//! ```
//!
//! Every step takes the record's chain lock only if it is free
//! ([`RecordStore::try_lock`]): vacuuming never waits for smbd, a busy record is
//! simply tried again in a later run. The last step looks at the record again
//! under its lock: if it changed hands or got a value meanwhile (smbd writes
//! without changing the rsn), it stays. A run started in one generation does not
//! delete anything in another.
//!
//! Pure: the edge traverses the file for full runs, sends the controls, collects
//! the answers and keeps the clock ([`Vacuum::plan`], [`DeleteRun`],
//! [`try_delete`]).

use std::collections::{BTreeMap, BTreeSet};

use super::ltdb::{flags, LtdbHeader};
use super::migrate::{RecordStore, StoreError, View};

/// A record as vacuuming passes it around: its key and the header of the copy
/// that was found empty (VACUUM_FETCH and TRY_DELETE_RECORDS carry exactly this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The record's key.
    pub key: Vec<u8>,
    /// The header of the empty copy.
    pub header: LtdbHeader,
}

/// What one run found to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Empty records this node is dmaster of but another node is lmaster of: to
    /// hand to that lmaster (VACUUM_FETCH), by lmaster.
    pub fetch: BTreeMap<u32, Vec<Candidate>>,
    /// Empty records this node is lmaster and dmaster of: to delete everywhere.
    pub delete: Vec<Candidate>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.fetch.is_empty() && self.delete.is_empty()
    }
}

/// One database's vacuuming state on one node: the delete queue and the count of
/// runs (every `full_every`-th run also looks at every record, to catch empty
/// records nobody scheduled).
#[derive(Debug, Default)]
pub struct Vacuum {
    queue: BTreeSet<Vec<u8>>,
    runs: u64,
}

impl Vacuum {
    /// Nothing queued.
    pub fn new() -> Self {
        Self::default()
    }

    /// A record was left empty (SCHEDULE_FOR_DELETION, the daemon's own store of
    /// an empty record, or a VACUUM_FETCH that brings it here).
    pub fn schedule(&mut self, key: &[u8]) {
        self.queue.insert(key.to_vec());
    }

    /// Keys waiting for the next run.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether the next run should also traverse the whole file: the first run,
    /// then every `full_every`-th (`VacuumFastPathCount`; 0 = only the first).
    pub fn next_run_is_full(&self, full_every: u32) -> bool {
        self.runs == 0 || (full_every > 0 && self.runs % u64::from(full_every) == 0)
    }

    /// Starts a run: looks at every queued key, and at `traversed` (every key of
    /// the file, for a full run), and sorts the empty records this node is
    /// dmaster of into hand-overs and deletions. Busy records go back in the
    /// queue; others that are not (or no longer) candidates leave it. Nothing is
    /// planned while recovery is active or before there is a vnn map.
    pub fn plan(
        &mut self,
        view: &View,
        store: &mut dyn RecordStore,
        traversed: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Plan, StoreError> {
        let mut plan = Plan::default();
        if view.recovering || view.vnn_map.is_empty() {
            return Ok(plan);
        }
        self.runs += 1;
        let mut keys = std::mem::take(&mut self.queue);
        keys.extend(traversed);
        for key in keys {
            if !store.try_lock(&key)? {
                self.queue.insert(key);
                continue;
            }
            let fetched = store.fetch(&key);
            store.unlock(&key);
            let Some(record) = fetched? else { continue };
            if !record.value.is_empty()
                || record.header.dmaster != view.pnn
                || record.header.flags & flags::RO_FLAGS != 0
            {
                continue;
            }
            let candidate = Candidate {
                key,
                header: record.header,
            };
            match view.lmaster(&candidate.key) {
                Some(lmaster) if lmaster == view.pnn => plan.delete.push(candidate),
                Some(lmaster) => plan.fetch.entry(lmaster).or_default().push(candidate),
                None => {}
            }
        }
        Ok(plan)
    }

    /// The records another node handed here (VACUUM_FETCH): the keys this node
    /// should bring to itself with a migration call and then vacuum. Records it
    /// is not lmaster of are refused (the sender's map is out of date).
    pub fn fetched(&mut self, view: &View, records: Vec<Candidate>) -> Vec<Vec<u8>> {
        let mut to_migrate = Vec::new();
        for record in records {
            if view.lmaster(&record.key) == Some(view.pnn) {
                self.schedule(&record.key);
                to_migrate.push(record.key);
            }
        }
        to_migrate
    }
}

/// The deletion phase of one run on the lmaster: TRY_DELETE_RECORDS sent to
/// every other active node, answers collected, then the local deletion of what
/// nobody refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRun {
    generation: u32,
    candidates: BTreeMap<Vec<u8>, LtdbHeader>,
    waiting: BTreeSet<u32>,
    refused: BTreeSet<Vec<u8>>,
}

/// What a finished deletion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Keys removed on this node (and, before, on every other node).
    pub deleted: Vec<Vec<u8>>,
    /// Candidates that stayed: refused somewhere, changed meanwhile, or busy.
    pub kept: usize,
}

impl DeleteRun {
    /// Starts deleting `candidates` in the view's generation; `others` are the
    /// nodes to ask (every active node but this one).
    pub fn start(view: &View, candidates: Vec<Candidate>, others: &[u32]) -> Self {
        Self {
            generation: view.generation,
            candidates: candidates.into_iter().map(|c| (c.key, c.header)).collect(),
            waiting: others.iter().copied().filter(|n| *n != view.pnn).collect(),
            refused: BTreeSet::new(),
        }
    }

    /// The records to send in TRY_DELETE_RECORDS.
    pub fn request(&self) -> Vec<Candidate> {
        self.candidates
            .iter()
            .map(|(key, header)| Candidate {
                key: key.clone(),
                header: *header,
            })
            .collect()
    }

    /// The nodes that have not answered yet.
    pub fn waiting_for(&self) -> impl Iterator<Item = u32> + '_ {
        self.waiting.iter().copied()
    }

    /// Node `node` answered with the records it could not delete.
    pub fn answered(&mut self, node: u32, refused: impl IntoIterator<Item = Vec<u8>>) {
        if self.waiting.remove(&node) {
            self.refused.extend(refused);
        }
    }

    /// Node `node` failed to answer (error status, gone, timed out): none of its
    /// copies is known to be gone, so nothing may be deleted here.
    pub fn failed(&mut self, node: u32) {
        if self.waiting.remove(&node) {
            self.refused.extend(self.candidates.keys().cloned());
        }
    }

    /// Every node answered.
    pub fn is_complete(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Deletes here the candidates nobody refused, each only if it is still
    /// empty, still this node's, with the same rsn, and its lock is free. Nothing
    /// is deleted if the generation moved on or recovery is active, or if some
    /// node has not answered.
    pub fn finish(self, view: &View, store: &mut dyn RecordStore) -> Result<Deleted, StoreError> {
        let mut done = Deleted::default();
        if view.recovering || view.generation != self.generation || !self.waiting.is_empty() {
            done.kept = self.candidates.len();
            return Ok(done);
        }
        for (key, header) in self.candidates {
            if self.refused.contains(&key) || view.lmaster(&key) != Some(view.pnn) {
                done.kept += 1;
                continue;
            }
            if !store.try_lock(&key)? {
                done.kept += 1;
                continue;
            }
            let result = delete_if_unchanged(view, store, &key, &header);
            store.unlock(&key);
            if result? {
                done.deleted.push(key);
            } else {
                done.kept += 1;
            }
        }
        Ok(done)
    }
}

/// Under the chain lock: deletes the record if it is still the empty copy this
/// node was dmaster of when the run began.
fn delete_if_unchanged(
    view: &View,
    store: &mut dyn RecordStore,
    key: &[u8],
    planned: &LtdbHeader,
) -> Result<bool, StoreError> {
    let Some(record) = store.fetch(key)? else {
        return Ok(false);
    };
    let unchanged = record.value.is_empty()
        && record.header.dmaster == view.pnn
        && record.header.rsn == planned.rsn
        && record.header.flags & flags::RO_FLAGS == 0;
    if unchanged {
        store.delete(key)?;
    }
    Ok(unchanged)
}

/// TRY_DELETE_RECORDS on a node other than the lmaster: deletes the local copy
/// of each record unless this node is the key's lmaster or the copy's dmaster,
/// the copy is newer than the lmaster's (higher rsn), either copy has read-only
/// flags, or its chain lock is busy. Returns the records it did not delete (the
/// reply); a record this node does not have counts as deleted.
pub fn try_delete(
    view: &View,
    store: &mut dyn RecordStore,
    records: Vec<Candidate>,
) -> Result<Vec<Candidate>, StoreError> {
    let mut refused = Vec::new();
    for record in records {
        if view.recovering
            || view.lmaster(&record.key) == Some(view.pnn)
            || record.header.flags & flags::RO_FLAGS != 0
            || !store.try_lock(&record.key)?
        {
            refused.push(record);
            continue;
        }
        let result = delete_stale_copy(view, store, &record);
        store.unlock(&record.key);
        if !result? {
            refused.push(record);
        }
    }
    Ok(refused)
}

/// Under the chain lock: deletes this node's copy if it is an older copy of the
/// record the lmaster holds empty.
fn delete_stale_copy(
    view: &View,
    store: &mut dyn RecordStore,
    record: &Candidate,
) -> Result<bool, StoreError> {
    let Some(local) = store.fetch(&record.key)? else {
        return Ok(true);
    };
    if local.header.rsn > record.header.rsn
        || local.header.dmaster == view.pnn
        || local.header.flags & flags::RO_FLAGS != 0
    {
        return Ok(false);
    }
    store.delete(&record.key)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::db::migrate::Record;

    #[derive(Default)]
    struct MapStore {
        records: BTreeMap<Vec<u8>, Record>,
        busy: BTreeSet<Vec<u8>>,
        locked: BTreeSet<Vec<u8>>,
    }

    impl RecordStore for MapStore {
        fn try_lock(&mut self, key: &[u8]) -> Result<bool, StoreError> {
            if self.busy.contains(key) || self.locked.contains(key) {
                return Ok(false);
            }
            self.locked.insert(key.to_vec());
            Ok(true)
        }
        fn unlock(&mut self, key: &[u8]) {
            assert!(self.locked.remove(key));
        }
        fn fetch(&mut self, key: &[u8]) -> Result<Option<Record>, StoreError> {
            assert!(self.locked.contains(key));
            Ok(self.records.get(key).cloned())
        }
        fn store(&mut self, key: &[u8], record: &Record) -> Result<(), StoreError> {
            assert!(self.locked.contains(key));
            self.records.insert(key.to_vec(), record.clone());
            Ok(())
        }
        fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
            assert!(self.locked.contains(key));
            self.records.remove(key);
            Ok(())
        }
        fn tracking_fetch(&mut self, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            unreachable!("vacuuming never looks at delegations' tracking")
        }
        fn tracking_store(&mut self, _: &[u8], _: &[u8]) -> Result<(), StoreError> {
            unreachable!("vacuuming never looks at delegations' tracking")
        }
        fn tracking_delete(&mut self, _: &[u8]) -> Result<(), StoreError> {
            unreachable!("vacuuming never looks at delegations' tracking")
        }
    }

    impl MapStore {
        fn put(&mut self, key: &[u8], rsn: u64, dmaster: u32, value: &[u8]) {
            self.records.insert(
                key.to_vec(),
                Record {
                    header: LtdbHeader::new(rsn, dmaster),
                    value: value.to_vec(),
                },
            );
        }
    }

    fn view(pnn: u32) -> View {
        View {
            pnn,
            generation: 5,
            vnn_map: vec![0, 1, 2],
            recovering: false,
        }
    }

    /// Keys whose lmaster (in a map of three) is `lmaster`.
    fn keys_of(lmaster: u32) -> impl Iterator<Item = Vec<u8>> {
        (0u32..)
            .map(|i| format!("key{i}").into_bytes())
            .filter(move |k| view(0).lmaster(k) == Some(lmaster))
    }

    fn key_of(lmaster: u32) -> Vec<u8> {
        keys_of(lmaster).next().unwrap()
    }

    fn candidate(key: &[u8], rsn: u64, dmaster: u32) -> Candidate {
        Candidate {
            key: key.to_vec(),
            header: LtdbHeader::new(rsn, dmaster),
        }
    }

    #[test]
    fn a_run_sorts_empty_records_into_hand_overs_and_deletions() {
        let (mine, theirs, full, elsewhere) = (key_of(0), key_of(1), key_of(2), b"z".to_vec());
        let mut store = MapStore::default();
        store.put(&mine, 4, 0, b"");
        store.put(&theirs, 3, 0, b"");
        store.put(&full, 3, 0, b"data");
        store.put(&elsewhere, 3, 2, b"");
        let mut vacuum = Vacuum::new();
        for k in [&mine, &theirs, &full, &elsewhere] {
            vacuum.schedule(k);
        }
        let plan = vacuum.plan(&view(0), &mut store, []).unwrap();
        assert_eq!(plan.delete, vec![candidate(&mine, 4, 0)]);
        assert_eq!(
            plan.fetch,
            BTreeMap::from([(1, vec![candidate(&theirs, 3, 0)])])
        );
        assert_eq!(vacuum.queued(), 0, "looked-at keys leave the queue");
    }

    #[test]
    fn a_busy_record_waits_for_the_next_run() {
        let key = key_of(0);
        let mut store = MapStore::default();
        store.put(&key, 4, 0, b"");
        store.busy.insert(key.clone());
        let mut vacuum = Vacuum::new();
        vacuum.schedule(&key);
        assert!(vacuum.plan(&view(0), &mut store, []).unwrap().is_empty());
        assert_eq!(vacuum.queued(), 1);
        store.busy.clear();
        let plan = vacuum.plan(&view(0), &mut store, []).unwrap();
        assert_eq!(plan.delete.len(), 1);
    }

    #[test]
    fn nothing_is_planned_during_recovery() {
        let key = key_of(0);
        let mut store = MapStore::default();
        store.put(&key, 4, 0, b"");
        let mut vacuum = Vacuum::new();
        let recovering = View {
            recovering: true,
            ..view(0)
        };
        assert!(vacuum
            .plan(&recovering, &mut store, [key.clone()])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn full_runs_come_first_and_then_every_nth() {
        let mut vacuum = Vacuum::new();
        let mut store = MapStore::default();
        let mut full = Vec::new();
        for _ in 0..7 {
            full.push(vacuum.next_run_is_full(3));
            vacuum.plan(&view(0), &mut store, []).unwrap();
        }
        assert_eq!(full, [true, false, false, true, false, false, true]);
    }

    #[test]
    fn the_lmaster_deletes_when_every_node_agreed_and_the_record_is_unchanged() {
        let key = key_of(0);
        let mut lmaster = MapStore::default();
        lmaster.put(&key, 6, 0, b"");
        let mut other = MapStore::default();
        other.put(&key, 5, 0, b"old value");
        let mut run = DeleteRun::start(&view(0), vec![candidate(&key, 6, 0)], &[0, 1, 2]);
        assert_eq!(run.waiting_for().collect::<Vec<_>>(), [1, 2]);
        let refused = try_delete(&view(1), &mut other, run.request()).unwrap();
        assert!(refused.is_empty());
        assert!(other.records.is_empty(), "the older copy went");
        run.answered(1, refused.into_iter().map(|c| c.key));
        assert!(!run.is_complete());
        run.answered(2, []);
        let done = run.finish(&view(0), &mut lmaster).unwrap();
        assert_eq!(done.deleted, vec![key]);
        assert!(lmaster.records.is_empty());
    }

    #[test]
    fn a_refusal_anywhere_keeps_the_record() {
        let key = key_of(0);
        let mut lmaster = MapStore::default();
        lmaster.put(&key, 6, 0, b"");
        let mut run = DeleteRun::start(&view(0), vec![candidate(&key, 6, 0)], &[1, 2]);
        run.answered(1, []);
        run.answered(2, [key.clone()]);
        let done = run.finish(&view(0), &mut lmaster).unwrap();
        assert_eq!(done.kept, 1);
        assert!(lmaster.records.contains_key(&key));
    }

    #[test]
    fn a_node_that_does_not_answer_keeps_every_record() {
        let key = key_of(0);
        let mut lmaster = MapStore::default();
        lmaster.put(&key, 6, 0, b"");
        let mut run = DeleteRun::start(&view(0), vec![candidate(&key, 6, 0)], &[1, 2]);
        run.answered(1, []);
        // Not complete: finishing now deletes nothing.
        let done = run.clone().finish(&view(0), &mut lmaster).unwrap();
        assert!(done.deleted.is_empty());
        run.failed(2);
        assert!(run.is_complete());
        let done = run.finish(&view(0), &mut lmaster).unwrap();
        assert!(done.deleted.is_empty());
        assert!(lmaster.records.contains_key(&key));
    }

    #[test]
    fn a_record_written_or_handed_over_meanwhile_stays() {
        let mut keys = keys_of(0);
        let (written, moved, renumbered) = (
            keys.next().unwrap(),
            keys.next().unwrap(),
            keys.next().unwrap(),
        );
        let keys = [&written, &moved, &renumbered];
        let mut lmaster = MapStore::default();
        let candidates: Vec<Candidate> = keys.iter().map(|k| candidate(k, 6, 0)).collect();
        let mut run = DeleteRun::start(&view(0), candidates, &[1]);
        run.answered(1, []);
        // smbd wrote a value (rsn unchanged); the record went to node 1; and it
        // came back (a new rsn).
        lmaster.put(&written, 6, 0, b"v");
        lmaster.put(&moved, 7, 1, b"");
        lmaster.put(&renumbered, 8, 0, b"");
        let done = run.finish(&view(0), &mut lmaster).unwrap();
        assert!(done.deleted.is_empty());
        assert_eq!(lmaster.records.len(), 3);
    }

    #[test]
    fn a_new_generation_or_a_recovery_stops_the_deletion() {
        let key = key_of(0);
        for later in [
            View {
                generation: 6,
                ..view(0)
            },
            View {
                recovering: true,
                ..view(0)
            },
        ] {
            let mut lmaster = MapStore::default();
            lmaster.put(&key, 6, 0, b"");
            let mut run = DeleteRun::start(&view(0), vec![candidate(&key, 6, 0)], &[1]);
            run.answered(1, []);
            let done = run.finish(&later, &mut lmaster).unwrap();
            assert!(done.deleted.is_empty());
            assert!(lmaster.records.contains_key(&key));
        }
    }

    #[test]
    fn other_nodes_refuse_newer_copies_their_own_records_and_busy_ones() {
        let mut lm = keys_of(0);
        let mut next = || lm.next().unwrap();
        let (newer, dmaster_here, busy, readonly, absent) =
            (next(), next(), next(), next(), next());
        let mine_as_lmaster = key_of(1);
        let keys = [&newer, &dmaster_here, &busy, &readonly, &absent];
        let mut store = MapStore::default();
        store.put(&newer, 9, 0, b"");
        store.put(&dmaster_here, 3, 1, b"");
        store.put(&busy, 3, 0, b"");
        store.busy.insert(busy.clone());
        store.records.insert(
            readonly.clone(),
            Record {
                header: LtdbHeader {
                    flags: flags::RO_HAVE_READONLY,
                    ..LtdbHeader::new(3, 0)
                },
                value: Vec::new(),
            },
        );
        store.put(&mine_as_lmaster, 3, 0, b"");
        let mut asked: Vec<Candidate> = keys.iter().map(|k| candidate(k, 6, 0)).collect();
        asked.push(candidate(&mine_as_lmaster, 6, 0));
        let refused: BTreeSet<Vec<u8>> = try_delete(&view(1), &mut store, asked)
            .unwrap()
            .into_iter()
            .map(|c| c.key)
            .collect();
        let expected: BTreeSet<Vec<u8>> = [&newer, &dmaster_here, &busy, &readonly]
            .into_iter()
            .cloned()
            .chain([mine_as_lmaster.clone()])
            .collect();
        assert_eq!(refused, expected);
        assert_eq!(store.records.len(), 5, "nothing refused was deleted");
    }

    #[test]
    fn fetched_records_are_queued_only_on_their_lmaster() {
        let (here, there) = (key_of(1), key_of(2));
        let mut vacuum = Vacuum::new();
        let keys = vacuum.fetched(
            &view(1),
            vec![candidate(&here, 3, 0), candidate(&there, 3, 0)],
        );
        assert_eq!(keys, vec![here]);
        assert_eq!(vacuum.queued(), 1);
    }
}
