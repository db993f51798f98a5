//! Replies given later: the one table of everything the core has asked or been
//! asked and answers once something else has happened (DESIGN.md, "Databases":
//! deferred replies are one typed mechanism, not one table per control).
//!
//! Each entry is filed under a request id of the core's own id space
//! (`Node::allocate_reqid`) and says
//! - what the answer is for (the caller's typed purpose),
//! - who gets a reply once it is known, under which of *their* request ids
//!   ([`ReplyTo`]; none when the core asked for itself),
//! - which peer's reply it awaits, if any: only that peer's reply counts, and its
//!   loss ends the wait ([`Deferred::take_from_gone_peer`]),
//! - until when it waits ([`Deferred::take_expired`]).
//!
//! A control the core sends to a peer is filed under the id it goes out with, so
//! the reply finds it ([`Deferred::take_reply`]). What the edges answer (a file
//! read, an address change and its event) is filed under a fresh id that the edge
//! echoes or the core keeps. A new control that answers later adds a purpose, not
//! a table.
//!
//! Pure: the caller passes the time and decides what a reply, a deadline or a
//! lost peer means for each purpose.

use std::collections::BTreeMap;

use super::Requester;

/// Who is answered when a deferred reply is known, and under which request id
/// (theirs: the one their request came with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReplyTo {
    /// The asker.
    pub(super) who: Requester,
    /// Its request id.
    pub(super) reqid: u32,
}

/// One reply the core gives later. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Awaiting<P> {
    /// What the answer is for.
    pub(super) purpose: P,
    /// Who is answered; `None` when nobody outside waits (the core asked).
    pub(super) reply_to: Option<ReplyTo>,
    /// The peer whose reply is awaited; `None` when the answer comes from this
    /// node's own edges.
    pub(super) peer: Option<u32>,
    /// When the wait ends unanswered (monotonic ms); `None`: whoever answers
    /// always does (an edge with deadlines of its own).
    pub(super) deadline_ms: Option<u64>,
}

/// Why a reply from a peer found nothing to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotAwaited {
    /// Nothing waits under that id from a peer: answered already, timed out, or
    /// never asked. Dropped without a word, as CTDB does.
    Unknown,
    /// The id waits for another peer's reply (left waiting).
    WrongPeer {
        /// The peer asked.
        asked: u32,
    },
}

/// Every reply the core gives later, by request id. See the module docs.
#[derive(Debug, Clone)]
pub(super) struct Deferred<P> {
    entries: BTreeMap<u32, Awaiting<P>>,
}

impl<P> Default for Deferred<P> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }
}

impl<P> Deferred<P> {
    /// Files `awaiting` under `reqid` (an id of the core's, not in use).
    pub(super) fn insert(&mut self, reqid: u32, awaiting: Awaiting<P>) {
        let old = self.entries.insert(reqid, awaiting);
        debug_assert!(old.is_none(), "request id {reqid} deferred twice");
    }

    /// The entry `reqid` if its purpose is `wanted`, removed: its answer is here.
    /// An entry of another purpose stays (an edge echoed a wrong token).
    pub(super) fn take_if(
        &mut self,
        reqid: u32,
        wanted: impl FnOnce(&P) -> bool,
    ) -> Option<Awaiting<P>> {
        if !wanted(&self.entries.get(&reqid)?.purpose) {
            return None;
        }
        self.entries.remove(&reqid)
    }

    /// `from` replied to `reqid`: the entry, removed, if it awaited that peer.
    pub(super) fn take_reply(&mut self, reqid: u32, from: u32) -> Result<Awaiting<P>, NotAwaited> {
        match self.entries.get(&reqid).and_then(|a| a.peer) {
            None => Err(NotAwaited::Unknown),
            Some(asked) if asked != from => Err(NotAwaited::WrongPeer { asked }),
            Some(_) => Ok(self.entries.remove(&reqid).expect("present above")),
        }
    }

    /// The earliest deadline (monotonic ms).
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.entries.values().filter_map(|a| a.deadline_ms).min()
    }

    /// Removes and returns the entries whose deadline is `now_ms` or earlier, by
    /// request id.
    pub(super) fn take_expired(&mut self, now_ms: u64) -> Vec<(u32, Awaiting<P>)> {
        self.take_where(|a| a.deadline_ms.is_some_and(|d| now_ms >= d))
    }

    /// `peer` is gone: removes and returns the entries that awaited its reply, by
    /// request id.
    pub(super) fn take_from_gone_peer(&mut self, peer: u32) -> Vec<(u32, Awaiting<P>)> {
        self.take_where(|a| a.peer == Some(peer))
    }

    /// How many replies are deferred.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    fn take_where(&mut self, pick: impl Fn(&Awaiting<P>) -> bool) -> Vec<(u32, Awaiting<P>)> {
        let picked: Vec<u32> = self
            .entries
            .iter()
            .filter(|(_, a)| pick(a))
            .map(|(reqid, _)| *reqid)
            .collect();
        picked
            .into_iter()
            .filter_map(|reqid| self.entries.remove(&reqid).map(|a| (reqid, a)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::ClientId;
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Why {
        Forwarded,
        FileRead,
    }

    fn from_peer(peer: u32, deadline_ms: u64) -> Awaiting<Why> {
        Awaiting {
            purpose: Why::Forwarded,
            reply_to: Some(ReplyTo {
                who: Requester::Client(ClientId(4)),
                reqid: 77,
            }),
            peer: Some(peer),
            deadline_ms: Some(deadline_ms),
        }
    }

    fn from_edge() -> Awaiting<Why> {
        Awaiting {
            purpose: Why::FileRead,
            reply_to: None,
            peer: None,
            deadline_ms: None,
        }
    }

    #[test]
    fn a_reply_counts_once_and_only_from_the_peer_asked() {
        let mut deferred = Deferred::default();
        deferred.insert(5, from_peer(1, 100));
        assert_eq!(
            deferred.take_reply(5, 2),
            Err(NotAwaited::WrongPeer { asked: 1 })
        );
        assert_eq!(deferred.len(), 1, "still waits for node 1");
        let got = deferred.take_reply(5, 1).expect("awaited");
        assert_eq!(got.reply_to.map(|r| r.reqid), Some(77));
        assert_eq!(
            deferred.take_reply(5, 1),
            Err(NotAwaited::Unknown),
            "a duplicate"
        );
        assert_eq!(deferred.take_reply(6, 1), Err(NotAwaited::Unknown));
    }

    #[test]
    fn a_peer_cannot_answer_what_an_edge_answers() {
        let mut deferred = Deferred::default();
        deferred.insert(9, from_edge());
        assert_eq!(deferred.take_reply(9, 1), Err(NotAwaited::Unknown));
        assert!(deferred.take_if(9, |p| *p == Why::Forwarded).is_none());
        assert_eq!(deferred.len(), 1, "a token of the wrong kind leaves it");
        assert!(deferred.take_if(9, |p| *p == Why::FileRead).is_some());
        assert!(deferred.take_if(9, |_| true).is_none(), "answered once");
    }

    #[test]
    fn entries_expire_at_their_deadline_and_late_replies_find_nothing() {
        let mut deferred = Deferred::default();
        deferred.insert(1, from_peer(1, 300));
        deferred.insert(2, from_peer(2, 100));
        deferred.insert(3, from_edge());
        assert_eq!(deferred.next_deadline(), Some(100));
        assert!(deferred.take_expired(99).is_empty());
        let expired = deferred.take_expired(100);
        assert_eq!(expired.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [2]);
        assert_eq!(deferred.next_deadline(), Some(300));
        assert_eq!(deferred.take_reply(2, 2), Err(NotAwaited::Unknown), "late");
        let expired = deferred.take_expired(10_000);
        assert_eq!(expired.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1]);
        assert_eq!(deferred.next_deadline(), None, "the edge's never expires");
        assert_eq!(deferred.len(), 1);
    }

    #[test]
    fn a_gone_peer_ends_only_the_waits_for_its_replies() {
        let mut deferred = Deferred::default();
        deferred.insert(4, from_peer(1, 100));
        deferred.insert(2, from_peer(1, 200));
        deferred.insert(3, from_peer(2, 100));
        deferred.insert(1, from_edge());
        let gone = deferred.take_from_gone_peer(1);
        assert_eq!(gone.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [2, 4]);
        assert!(deferred.take_from_gone_peer(1).is_empty());
        assert_eq!(deferred.take_reply(4, 1), Err(NotAwaited::Unknown));
        assert_eq!(deferred.len(), 2);
        assert!(deferred.take_reply(3, 2).is_ok());
    }
}
