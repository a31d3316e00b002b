//! Last-N: in a large call, each participant receives camera video from the N most relevant
//! publishers only, and audio from everyone. Relevant: teachers and admins first, then whoever
//! spoke most recently (from the RFC 6464 audio level the browsers put on every audio packet),
//! then whoever joined first. Screen shares are always forwarded.
//!
//! Sans-IO like the rest of `room`: time comes in, the visible set comes out.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::participant::PeerKey;

/// Louder than this (in dBov) is speech. Silence is -127; a voice in a quiet room about -30.
const SPEECH_DBOV: i8 = -50;
/// How often the ranking is recomputed: a new speaker appears within this delay.
const REFRESH: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub key: PeerKey,
    pub moderator: bool,
    pub joined_at: Instant,
}

#[derive(Debug)]
pub(crate) struct LastN {
    n: Option<usize>,
    last_spoke: HashMap<PeerKey, Instant>,
    visible: HashSet<PeerKey>,
    next_refresh: Instant,
}

impl LastN {
    /// `n`: `None` forwards every camera.
    pub fn new(n: Option<usize>, now: Instant) -> LastN {
        LastN { n, last_spoke: HashMap::new(), visible: HashSet::new(), next_refresh: now }
    }

    /// An audio packet from `key`, with its level (-127..0 dBov) and voice activity flag.
    pub fn heard(&mut self, key: PeerKey, level: Option<i8>, voice: Option<bool>, now: Instant) {
        let speaking = voice == Some(true) || level.is_some_and(|dbov| dbov > SPEECH_DBOV);
        if speaking && self.n.is_some() {
            self.last_spoke.insert(key, now);
        }
    }

    pub fn forget(&mut self, key: PeerKey) {
        self.last_spoke.remove(&key);
        self.visible.remove(&key);
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.next_refresh().is_some_and(|at| now >= at)
    }

    /// When the ranking is next due; `None` without a limit.
    pub fn next_refresh(&self) -> Option<Instant> {
        self.n.map(|_| self.next_refresh)
    }

    /// Whether `key`'s camera is forwarded.
    pub fn is_visible(&self, key: PeerKey) -> bool {
        self.n.is_none() || self.visible.contains(&key)
    }

    /// Ranks the camera publishers; returns the new visible set when it changed.
    pub fn rank(&mut self, candidates: &[Candidate], now: Instant) -> Option<&HashSet<PeerKey>> {
        let n = self.n?;
        self.next_refresh = now + REFRESH;
        let mut ranked = candidates.to_vec();
        ranked.sort_by(|a, b| {
            b.moderator
                .cmp(&a.moderator)
                .then_with(|| self.last_spoke.get(&b.key).cmp(&self.last_spoke.get(&a.key)))
                .then_with(|| a.joined_at.cmp(&b.joined_at))
                .then_with(|| a.key.cmp(&b.key))
        });
        let visible: HashSet<PeerKey> = ranked.iter().take(n).map(|c| c.key).collect();
        if visible == self.visible {
            return None;
        }
        self.visible = visible;
        Some(&self.visible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(key: PeerKey, moderator: bool, t0: Instant, joined_s: u64) -> Candidate {
        Candidate { key, moderator, joined_at: t0 + Duration::from_secs(joined_s) }
    }

    #[test]
    fn teachers_then_recent_speakers_then_the_first_arrived() {
        let t0 = Instant::now();
        let mut last_n = LastN::new(Some(3), t0);
        let people = [
            candidate(1, false, t0, 0),
            candidate(2, true, t0, 5),
            candidate(3, false, t0, 1),
            candidate(4, false, t0, 2),
            candidate(5, false, t0, 3),
        ];
        // Nobody spoke: the teacher, then the first to arrive.
        let visible = last_n.rank(&people, t0).cloned().unwrap();
        assert_eq!(visible, HashSet::from([2, 1, 3]));
        // 5 speaks, then 4, quietly enough for the voice flag only; 1 is silent (-127).
        last_n.heard(5, Some(-30), None, t0 + Duration::from_secs(10));
        last_n.heard(4, Some(-90), Some(true), t0 + Duration::from_secs(11));
        last_n.heard(1, Some(-127), Some(false), t0 + Duration::from_secs(12));
        assert!(!last_n.is_due(t0 + Duration::from_millis(100)), "not before the refresh period");
        let visible = last_n.rank(&people, t0 + Duration::from_secs(12)).cloned().unwrap();
        assert_eq!(visible, HashSet::from([2, 4, 5]));
        assert!(!last_n.is_visible(1) && last_n.is_visible(4));
        // Same ranking: nothing to change.
        assert!(last_n.rank(&people, t0 + Duration::from_secs(13)).is_none());
        // A speaker who leaves makes room.
        last_n.forget(4);
        let without_4: Vec<Candidate> = people.iter().copied().filter(|c| c.key != 4).collect();
        let visible = last_n.rank(&without_4, t0 + Duration::from_secs(14)).cloned().unwrap();
        assert_eq!(visible, HashSet::from([2, 5, 1]));
    }

    #[test]
    fn without_a_limit_every_camera_is_visible() {
        let t0 = Instant::now();
        let mut last_n = LastN::new(None, t0);
        assert!(last_n.rank(&[candidate(1, false, t0, 0)], t0).is_none());
        assert!(last_n.is_visible(1) && last_n.is_visible(99));
        assert!(!last_n.is_due(t0 + Duration::from_secs(10)));
    }
}
