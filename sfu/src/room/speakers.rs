//! Who speaks: from the RFC 6464 audio level that browsers put on every audio packet, the room
//! keeps an ordered list of speakers that the audio slots carry. Teachers and admins who publish
//! audio are always in it; the others enter when they speak and take the place of whoever has
//! been silent longest, but only once that one has been silent for [`HOLD`] or the newcomer is
//! much louder (hysteresis: two people talking in turn do not make the slots flap). Places no
//! speaker needs go to silent participants (after the speakers), so a small call forwards every
//! microphone.
//!
//! Sans-IO like the rest of `room`: levels and time come in, the list comes out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::participant::PeerKey;

/// Louder than this (in dBov) is speech. Silence is -127; a voice in a quiet room about -30.
pub(crate) const SPEECH_DBOV: i8 = -50;
/// A participant whose last voiced packet is older than this is not speaking now.
pub(crate) const SPEAKING_WINDOW: Duration = Duration::from_millis(400);
/// A speaker keeps its place this long after it stops, unless someone much louder comes.
pub(crate) const HOLD: Duration = Duration::from_millis(500);
/// How much louder (in dB of smoothed level) a newcomer must be to take the place of someone
/// who still speaks.
const LOUDER_BY: f32 = 12.0;

#[derive(Debug, Clone, Copy, Default)]
struct Level {
    /// Smoothed loudness of voiced packets, 0 (silence) to 127 (full scale).
    smoothed: f32,
    last_voice: Option<Instant>,
}

/// A participant who may take an audio slot: publishing, admitted, not muted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AudioCandidate {
    pub key: PeerKey,
    pub moderator: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Speakers {
    levels: HashMap<PeerKey, Level>,
    chosen: Vec<PeerKey>,
    /// Silent candidates for the places the speakers leave free, after them.
    fillers: Vec<PeerKey>,
    /// The teachers and admins among the last ranking's candidates.
    moderators: Vec<PeerKey>,
    /// Every voiced packet, in order: the video ranking uses it ("latest speakers first").
    last_spoke: HashMap<PeerKey, Instant>,
}

impl Speakers {
    /// An audio packet from `key`, with its level (-127..0 dBov) and voice activity flag.
    /// Returns true when someone who has no place starts speaking: the room then ranks again
    /// soon rather than at its next period, so that less of their first words is lost.
    pub fn heard(&mut self, key: PeerKey, level: Option<i8>, voice: Option<bool>, now: Instant) -> bool {
        let voiced = voice == Some(true) || level.is_some_and(|dbov| dbov > SPEECH_DBOV);
        if !voiced {
            return false;
        }
        let loudness = 127.0 + f32::from(level.unwrap_or(SPEECH_DBOV).max(-127));
        let entry = self.levels.entry(key).or_default();
        entry.smoothed = 0.8 * entry.smoothed + 0.2 * loudness;
        entry.last_voice = Some(now);
        self.last_spoke.insert(key, now);
        !self.chosen.contains(&key)
    }

    pub fn forget(&mut self, key: PeerKey) {
        self.levels.remove(&key);
        self.last_spoke.remove(&key);
        self.chosen.retain(|k| *k != key);
        self.fillers.retain(|k| *k != key);
    }

    pub fn last_spoke(&self, key: PeerKey) -> Option<Instant> {
        self.last_spoke.get(&key).copied()
    }

    /// Whether `key` spoke within [`SPEAKING_WINDOW`].
    pub fn is_speaking(&self, key: PeerKey, now: Instant) -> bool {
        self.levels
            .get(&key)
            .and_then(|l| l.last_voice)
            .is_some_and(|at| now.saturating_duration_since(at) < SPEAKING_WINDOW)
    }

    /// Everyone among `keys` who speaks now (voiced within [`SPEAKING_WINDOW`]), loudest first,
    /// whether or not an audio slot carries them yet: for the speaker highlight.
    pub fn speaking_now(&self, keys: impl Iterator<Item = PeerKey>, now: Instant) -> Vec<PeerKey> {
        let mut speaking: Vec<PeerKey> = keys.filter(|key| self.is_speaking(*key, now)).collect();
        speaking.sort_by(|a, b| self.smoothed(*b).total_cmp(&self.smoothed(*a)).then(a.cmp(b)));
        speaking
    }

    /// The speakers the audio slots carry, in slot priority order, at most `n`.
    #[cfg(test)]
    pub fn chosen(&self) -> &[PeerKey] {
        &self.chosen
    }

    /// What the audio slots carry, in priority: teachers and admins, then the chosen who spoke
    /// within [`HOLD`], then the other chosen, then silent participants where places are free.
    /// A receiver takes the first of these that are not itself, so a chosen speaker who fell
    /// silent makes way for one who speaks; among those who speak the order stays that of
    /// their places, so that two people talking at once do not swap.
    pub fn audible(&self, now: Instant) -> Vec<PeerKey> {
        let recent = |key: &PeerKey| {
            self.moderators.contains(key)
                || self
                    .levels
                    .get(key)
                    .and_then(|l| l.last_voice)
                    .is_some_and(|at| now.saturating_duration_since(at) < HOLD)
        };
        let (front, back): (Vec<PeerKey>, Vec<PeerKey>) = self.chosen.iter().partition(|key| recent(key));
        front.into_iter().chain(back).chain(self.fillers.iter().copied()).collect()
    }

    /// Recomputes the list among `candidates`; returns whether it changed.
    pub fn rank(&mut self, candidates: &[AudioCandidate], n: usize, now: Instant) -> bool {
        let before = self.chosen.clone();
        self.moderators = candidates.iter().filter(|c| c.moderator).map(|c| c.key).collect();
        // Gone, muted or no longer publishing: out at once.
        self.chosen.retain(|key| candidates.iter().any(|c| c.key == *key));
        // Teachers and admins first, always.
        for key in &self.moderators {
            if !self.chosen.contains(key) {
                self.chosen.insert(0, *key);
            }
        }
        let n_moderators = self.chosen.iter().filter(|key| self.moderators.contains(key)).count();
        self.chosen.truncate(n.max(n_moderators));

        let mut newcomers: Vec<PeerKey> = candidates
            .iter()
            .map(|c| c.key)
            .filter(|key| !self.chosen.contains(key) && self.is_speaking(*key, now))
            .collect();
        newcomers.sort_by(|a, b| self.smoothed(*b).total_cmp(&self.smoothed(*a)).then(a.cmp(b)));
        for newcomer in newcomers {
            if self.chosen.len() < n {
                self.chosen.push(newcomer);
                continue;
            }
            // The place of whoever has been silent longest, if long enough; else of the quietest
            // if the newcomer is much louder.
            let silence = |key: PeerKey| match self.levels.get(&key).and_then(|l| l.last_voice) {
                Some(at) => now.saturating_duration_since(at),
                None => Duration::MAX,
            };
            let replaceable: Vec<usize> =
                (0..self.chosen.len()).filter(|i| !self.moderators.contains(&self.chosen[*i])).collect();
            let longest_silent = replaceable.iter().copied().max_by_key(|i| (silence(self.chosen[*i]), *i));
            let quietest = replaceable
                .iter()
                .copied()
                .min_by(|a, b| self.smoothed(self.chosen[*a]).total_cmp(&self.smoothed(self.chosen[*b])));
            let victim = match (longest_silent, quietest) {
                (Some(i), _) if silence(self.chosen[i]) >= HOLD => Some(i),
                (_, Some(i)) if self.smoothed(newcomer) >= self.smoothed(self.chosen[i]) + LOUDER_BY => {
                    Some(i)
                }
                _ => None,
            };
            if let Some(i) = victim {
                self.chosen[i] = newcomer;
            }
        }
        // Room to spare (a small call): the silent ones too, after the speakers, so that nobody's
        // first words are cut while the next ranking comes.
        let mut silent: Vec<PeerKey> =
            candidates.iter().map(|c| c.key).filter(|key| !self.chosen.contains(key)).collect();
        silent.sort_by_key(|key| (std::cmp::Reverse(self.last_spoke.get(key).copied()), *key));
        silent.truncate(n.saturating_sub(self.chosen.len()));
        let changed = self.chosen != before || silent != self.fillers;
        self.fillers = silent;
        changed
    }

    fn smoothed(&self, key: PeerKey) -> f32 {
        self.levels.get(&key).map(|l| l.smoothed).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests;
