//! Raised hands (« lever la main »): who asked to speak, in the order they raised their hand.
//!
//! Sans-IO: time comes in with each raise. Raising a raised hand or lowering a lowered one
//! changes nothing and costs nothing. Each participant may raise their hand at most
//! [`MAX_RAISES`] times in [`RAISE_WINDOW`], so that a pupil who plays with the button cannot
//! flood everyone's page with `hands` messages (each raise allows one lowering: at most twice
//! that many changes). Lowering is never refused: a hand can always go down. The rules of who
//! may do what are the session's (`session::Session::command`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::error::SfuError;
use crate::proto::ParticipantId;

pub const MAX_RAISES: usize = 4;
pub const RAISE_WINDOW: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
pub struct HandQueue {
    /// Oldest first: the order the teacher answers them in.
    raised: Vec<ParticipantId>,
    /// Each participant's recent raises, within [`RAISE_WINDOW`].
    raises: HashMap<ParticipantId, VecDeque<Instant>>,
}

impl HandQueue {
    /// The raised hands, oldest first.
    pub fn raised(&self) -> &[ParticipantId] {
        &self.raised
    }

    pub fn is_raised(&self, participant_id: &ParticipantId) -> bool {
        self.raised.contains(participant_id)
    }

    /// `who` raises their own hand. `Ok(true)`: the queue changed.
    pub fn raise(&mut self, who: &ParticipantId, now: Instant) -> Result<bool, SfuError> {
        if self.is_raised(who) {
            return Ok(false);
        }
        self.count_raise(who, now)?;
        self.raised.push(who.clone());
        Ok(true)
    }

    /// Lowers `participant_id`'s hand (their own doing, a moderator's, or the floor given).
    /// Returns whether it was raised.
    pub fn lower(&mut self, participant_id: &ParticipantId) -> bool {
        let before = self.raised.len();
        self.raised.retain(|id| id != participant_id);
        self.raised.len() != before
    }

    /// `participant_id` left the session: their hand goes and so does their count of changes.
    /// Returns whether their hand was raised.
    pub fn forget(&mut self, participant_id: &ParticipantId) -> bool {
        self.raises.remove(participant_id);
        self.lower(participant_id)
    }

    fn count_raise(&mut self, who: &ParticipantId, now: Instant) -> Result<(), SfuError> {
        let raises = self.raises.entry(who.clone()).or_default();
        while raises.front().is_some_and(|at| now.saturating_duration_since(*at) >= RAISE_WINDOW) {
            raises.pop_front();
        }
        if raises.len() >= MAX_RAISES {
            return Err(SfuError::TooManyHandChanges);
        }
        raises.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: &str) -> ParticipantId {
        ParticipantId::new(raw.to_owned()).unwrap()
    }

    fn check(queue: &HandQueue, expected: &[&str]) {
        let got: Vec<&str> = queue.raised().iter().map(|p| p.as_str()).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn hands_are_kept_in_the_order_they_were_raised() {
        let t0 = Instant::now();
        let mut queue = HandQueue::default();
        assert_eq!(queue.raise(&id("b"), t0), Ok(true));
        assert_eq!(queue.raise(&id("a"), t0 + Duration::from_secs(1)), Ok(true));
        assert_eq!(queue.raise(&id("c"), t0 + Duration::from_secs(2)), Ok(true));
        check(&queue, &["b", "a", "c"]);
        // Raising again keeps one's place; lowering and raising again goes to the end.
        assert_eq!(queue.raise(&id("b"), t0 + Duration::from_secs(3)), Ok(false));
        check(&queue, &["b", "a", "c"]);
        assert!(queue.lower(&id("b")));
        assert_eq!(queue.raise(&id("b"), t0 + Duration::from_secs(5)), Ok(true));
        check(&queue, &["a", "c", "b"]);
        assert!(queue.lower(&id("c")));
        assert!(!queue.lower(&id("c")));
        assert!(queue.forget(&id("a")));
        check(&queue, &["b"]);
    }

    #[test]
    fn a_participant_playing_with_the_button_is_slowed_down() {
        let t0 = Instant::now();
        let mut queue = HandQueue::default();
        let pupil = id("pupil");
        for n in 0..MAX_RAISES {
            let at = t0 + Duration::from_millis(100 * n as u64);
            assert_eq!(queue.raise(&pupil, at), Ok(true), "raise {n}");
            assert!(queue.lower(&pupil));
        }
        let soon = t0 + Duration::from_secs(1);
        assert_eq!(queue.raise(&pupil, soon), Err(SfuError::TooManyHandChanges));
        check(&queue, &[]);
        // Others are not slowed down by the pupil.
        assert_eq!(queue.raise(&id("other"), soon), Ok(true));
        // Once the window has passed, the pupil may raise their hand again.
        assert_eq!(queue.raise(&pupil, t0 + RAISE_WINDOW), Ok(true));
        check(&queue, &["other", "pupil"]);
    }
}
