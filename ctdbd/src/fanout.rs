//! One round of a leader's requests to many nodes: which request went to which
//! node and why, whether every answer is in, and whether the round failed.
//!
//! Both runs the leader drives are made of such rounds (DESIGN.md, "Databases":
//! recovery uses the fan-out of the takeover runs): the takeover run
//! (`core::takeover`: gather, release, take) and the database recovery
//! (`db::recovery_run`: maps, names, attach, freeze, pull, push). Each keeps one
//! [`FanOut`] and starts its next round when this one is complete.
//!
//! Pure: no clock and no sending. Deadlines and the transport stay with the
//! caller, which reports what came back: an answer ([`FanOut::answer`]) or a
//! refusal ([`FanOut::refuse`]). A request to a node that left, or whose
//! deadline passed, is refused: the core's deferred replies say so for each
//! request (`core::deferred`); the recovery gives the whole run up, since each
//! of its later rounds asks every node.
//! Answers the round does not await (late, duplicated, or from an earlier
//! round) are ignored: they return `None`.

use std::collections::BTreeMap;

/// The requests of the current round still unanswered, by request id, with the
/// node asked and the caller's tag for each (what was asked, which step).
#[derive(Debug, Clone)]
pub struct FanOut<T> {
    /// reqid → (node, tag).
    waiting: BTreeMap<u32, (u32, T)>,
    /// The round's requests are still being sent: it cannot be complete yet,
    /// even with nothing awaited (an answer that comes back at once, from the
    /// leader itself, must not end a round that is half sent).
    sending: bool,
    failed: bool,
}

impl<T> Default for FanOut<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> FanOut<T> {
    /// The first round, about to be sent.
    pub fn new() -> Self {
        Self {
            waiting: BTreeMap::new(),
            sending: true,
            failed: false,
        }
    }

    /// Starts the next round once this one is complete. What the last round
    /// still awaited (nothing, when it completed) is forgotten.
    pub fn next_round(&mut self) {
        self.waiting.clear();
        self.sending = true;
        self.failed = false;
    }

    /// Request `reqid` went to `node`.
    pub fn sent(&mut self, reqid: u32, node: u32, tag: T) {
        self.waiting.insert(reqid, (node, tag));
    }

    /// Every request of the round has been sent: it completes when the last
    /// answer is in (at once, if none is awaited).
    pub fn all_sent(&mut self) {
        self.sending = false;
    }

    /// The answer to `reqid` came: the node asked and the tag, or `None` when the
    /// round does not await it (a late or duplicated answer: ignore it).
    pub fn answer(&mut self, reqid: u32) -> Option<(u32, T)> {
        self.waiting.remove(&reqid)
    }

    /// The node asked `reqid` refused (or its answer is unusable): as
    /// [`Self::answer`], and the round has failed.
    pub fn refuse(&mut self, reqid: u32) -> Option<(u32, T)> {
        let asked = self.waiting.remove(&reqid)?;
        self.failed = true;
        Some(asked)
    }

    /// The round has failed for a reason of the caller's (an answer that does
    /// not fit): the answers still awaited are still taken.
    pub fn fail(&mut self) {
        self.failed = true;
    }

    /// Gives the round up now, failed: nothing is awaited any more.
    pub fn abandon(&mut self) {
        self.waiting.clear();
        self.failed = true;
    }

    /// Whether `reqid` is awaited.
    pub fn awaits(&self, reqid: u32) -> bool {
        self.waiting.contains_key(&reqid)
    }

    /// The tag of the awaited request `reqid`.
    pub fn tag(&self, reqid: u32) -> Option<&T> {
        self.waiting.get(&reqid).map(|(_, tag)| tag)
    }

    /// Every request is sent and answered (or dropped with a node that left).
    pub fn is_complete(&self) -> bool {
        !self.sending && self.waiting.is_empty()
    }

    /// A node refused, left owing answers, or the caller failed the round.
    pub fn has_failed(&self) -> bool {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_completes_when_every_answer_is_in_and_not_before_all_are_sent() {
        let mut round = FanOut::new();
        round.sent(1, 0, "a");
        assert_eq!(round.answer(1), Some((0, "a")), "the leader's own, at once");
        assert!(!round.is_complete(), "still sending");
        round.sent(2, 1, "b");
        round.sent(3, 2, "c");
        round.all_sent();
        assert!(!round.is_complete());
        assert_eq!(round.tag(3), Some(&"c"));
        assert_eq!(round.answer(3), Some((2, "c")));
        assert!(!round.is_complete());
        assert_eq!(round.answer(2), Some((1, "b")));
        assert!(round.is_complete() && !round.has_failed());
    }

    #[test]
    fn a_round_with_nothing_to_ask_completes_once_sent() {
        let mut round = FanOut::<()>::new();
        assert!(!round.is_complete());
        round.all_sent();
        assert!(round.is_complete());
    }

    #[test]
    fn late_and_duplicated_answers_are_ignored() {
        let mut round = FanOut::new();
        round.sent(7, 1, "first");
        round.all_sent();
        assert_eq!(round.answer(7), Some((1, "first")));
        assert_eq!(round.answer(7), None, "duplicate");
        assert_eq!(round.refuse(7), None, "a duplicate refusal");
        assert!(!round.has_failed(), "an ignored refusal fails nothing");
        assert_eq!(round.answer(99), None, "never sent");

        round.next_round();
        round.sent(8, 1, "second");
        round.all_sent();
        assert_eq!(round.answer(7), None, "from the round before");
        assert!(!round.is_complete());
        assert_eq!(round.answer(8), Some((1, "second")));
        assert!(round.is_complete());
    }

    #[test]
    fn a_refusal_fails_the_round_which_still_gathers_the_other_answers() {
        let mut round = FanOut::new();
        round.sent(1, 0, ());
        round.sent(2, 1, ());
        round.all_sent();
        assert_eq!(round.refuse(1), Some((0, ())));
        assert!(round.has_failed() && !round.is_complete());
        assert!(round.awaits(2));
        round.answer(2);
        assert!(round.is_complete() && round.has_failed());

        round.next_round();
        assert!(!round.has_failed(), "a new round starts clean");
    }

    #[test]
    fn an_abandoned_round_awaits_nothing() {
        let mut round = FanOut::new();
        round.sent(1, 0, ());
        round.fail();
        assert!(round.awaits(1), "a failed round still takes its answers");
        round.abandon();
        assert!(!round.awaits(1) && round.has_failed());
        assert_eq!(round.answer(1), None);
    }
}
