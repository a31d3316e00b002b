//! Judging a call from what its participants recorded ([`crate::timeline`]): pure functions of
//! the reports, with no clock and no I/O.
//!
//! **Delivery.** Each `slots` message starts, for each slot it changes, an interval during which
//! the slot should carry the announced publisher (the one whose SSRC the message gives as `csrc`).
//! Expected: the packets that publisher sent during the interval, from its own send log (so DTX
//! silence counts as the few packets it really is). Arrived: those of them that reached the slot
//! with that CSRC, recognised by the counter each payload ends with. Two edges are left out of
//! both counts: the last [`DeliveryRules::switch_guard`] before the slot changes again (packets the
//! SFU rightly stopped forwarding while the `slots` message travelled), and, for a video slot that
//! was empty, the time until the publisher's next keyframe (the SFU starts a slot at a keyframe).
//!
//! **Switch latency.** When a participant starts speaking in its turn, how long until each other
//! participant gets a `slots` message putting it in an audio slot, and a `speakers` message
//! listing it.

use std::collections::HashMap;

use models::visio::SlotKind;

use crate::timeline::{ClientReport, Ms, SendLog};

pub mod e2ee;

#[derive(Debug, Clone, Copy)]
pub struct DeliveryRules {
    /// Only packets sent in `window.0..window.1` count.
    pub window: (Ms, Ms),
    pub switch_guard: Ms,
    /// A keyframe sent this long before a video slot was announced may still be the one the slot
    /// started with.
    pub keyframe_lookback: Ms,
    /// Whether video payloads carry the publishers' packet counters (not with a real clip).
    pub count_video: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub audio_expected: u64,
    pub audio_arrived: u64,
    pub video_expected: u64,
    pub video_arrived: u64,
    /// Slot announcements whose `csrc` is nobody's SSRC, or whose `participant_id` is not the
    /// owner of that SSRC.
    pub bad_announcements: u64,
}

impl Delivery {
    pub fn expected(&self) -> u64 {
        self.audio_expected + self.video_expected
    }

    pub fn arrived(&self) -> u64 {
        self.audio_arrived + self.video_arrived
    }

    /// `None` when nothing was expected.
    pub fn ratio(&self) -> Option<f64> {
        (self.expected() > 0).then(|| self.arrived() as f64 / self.expected() as f64)
    }

    pub fn add(&mut self, other: &Delivery) {
        self.audio_expected += other.audio_expected;
        self.audio_arrived += other.audio_arrived;
        self.video_expected += other.video_expected;
        self.video_arrived += other.video_arrived;
        self.bad_announcements += other.bad_announcements;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackKind {
    Audio,
    Video,
}

/// Who owns each SSRC, for reading CSRCs and announcements.
pub struct Publishers<'a> {
    reports: &'a [ClientReport],
    by_ssrc: HashMap<u32, (usize, TrackKind)>,
}

impl<'a> Publishers<'a> {
    pub fn new(reports: &'a [ClientReport]) -> Publishers<'a> {
        let mut by_ssrc = HashMap::new();
        for (idx, report) in reports.iter().enumerate() {
            by_ssrc.extend(report.audio_ssrc.map(|ssrc| (ssrc, (idx, TrackKind::Audio))));
            by_ssrc.extend(report.video_ssrc.map(|ssrc| (ssrc, (idx, TrackKind::Video))));
        }
        Publishers { reports, by_ssrc }
    }

    /// The participant (by position) whose track has this SSRC.
    pub fn owner(&self, ssrc: u32) -> Option<usize> {
        self.by_ssrc.get(&ssrc).map(|(idx, _)| *idx)
    }

    fn sent(&self, idx: usize) -> &SendLog {
        &self.reports[idx].sent
    }
}

/// What one participant's slots carried against what they should have, over the window. Appends
/// to `missing` the send time of each expected packet that did not arrive.
pub fn delivery(
    receiver: &ClientReport,
    publishers: &Publishers<'_>,
    rules: DeliveryRules,
    missing: &mut Vec<Ms>,
) -> Delivery {
    let mut arrived: HashMap<(usize, u32), Vec<u32>> = HashMap::new();
    for arrival in &receiver.arrivals {
        arrived.entry((usize::from(arrival.slot_idx), arrival.csrc)).or_default().push(arrival.counter);
    }
    for counters in arrived.values_mut() {
        // Resends of a packet count once.
        counters.sort_unstable();
        counters.dedup();
    }
    let mut result = Delivery::default();
    for (slot_idx, kind) in receiver.slot_kinds.iter().enumerate() {
        let changes: Vec<_> = receiver.slot_changes.iter().filter(|c| c.slot_idx == slot_idx).collect();
        for (change_idx, change) in changes.iter().enumerate() {
            let Some(csrc) = change.csrc else { continue };
            let Some(&(publisher_idx, track_kind)) = publishers.by_ssrc.get(&csrc) else {
                // Someone else's (a browser in the same call) is not ours to count; one of ours
                // under an SSRC it does not send is wrong.
                if publishers.reports.iter().any(|r| r.participant_id == change.participant_id) {
                    result.bad_announcements += 1;
                }
                continue;
            };
            if track_kind == TrackKind::Video && !rules.count_video {
                continue;
            }
            if change.participant_id != publishers.reports[publisher_idx].participant_id {
                result.bad_announcements += 1;
            }
            let sent = publishers.sent(publisher_idx);
            let mut from = change.at;
            let was_empty = change_idx == 0 || changes[change_idx - 1].csrc.is_none();
            if *kind != SlotKind::Audio && was_empty {
                let lookback = from.saturating_sub(rules.keyframe_lookback);
                match sent.keyframes.iter().find(|at| **at >= lookback) {
                    Some(keyframe) => from = from.max(*keyframe),
                    None => continue,
                }
            }
            let to = match changes.get(change_idx + 1) {
                Some(next) => next.at.saturating_sub(rules.switch_guard),
                None => Ms::MAX,
            };
            let (from, to) = (from.max(rules.window.0), to.min(rules.window.1));
            if from >= to {
                continue;
            }
            let times = match track_kind {
                TrackKind::Audio => &sent.audio,
                TrackKind::Video => &sent.video,
            };
            // Send times grow with the counter, so the interval is a range of counters.
            let first = times.partition_point(|at| *at < from) as u32;
            let end = times.partition_point(|at| *at < to) as u32;
            let counters = arrived.get(&(slot_idx, csrc)).map_or(&[][..], |c| c.as_slice());
            let got =
                &counters[counters.partition_point(|c| *c < first)..counters.partition_point(|c| *c < end)];
            let mut got_iter = got.iter().peekable();
            for counter in first..end {
                if got_iter.next_if_eq(&&counter).is_none() {
                    missing.push(times[counter as usize]);
                }
            }
            let got = got.len() as u64;
            let expected = u64::from(end - first);
            match track_kind {
                TrackKind::Audio => {
                    result.audio_expected += expected;
                    result.audio_arrived += got;
                }
                TrackKind::Video => {
                    result.video_expected += expected;
                    result.video_arrived += got;
                }
            }
        }
    }
    result
}

/// One turn of speakers: when it starts and ends, and who starts speaking in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub start: Ms,
    pub end: Ms,
    pub new_speakers: Vec<usize>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct SwitchLatencies {
    /// Milliseconds from a new speaker's first voiced packet to a `slots` message putting it in
    /// an audio slot, one per (speaker, receiver) that was not in a slot already.
    pub slots: Vec<f64>,
    /// (speaker, receiver) pairs where that did not happen before the turn ended.
    pub slots_missed: Vec<(usize, usize)>,
    /// The same for `speakers` messages listing it.
    pub speakers: Vec<f64>,
    pub speakers_missed: Vec<(usize, usize)>,
}

pub fn switch_latencies(reports: &[ClientReport], turns: &[Turn]) -> SwitchLatencies {
    let mut result = SwitchLatencies::default();
    for turn in turns {
        for &speaker_idx in &turn.new_speakers {
            let speaker = &reports[speaker_idx];
            let (Some(ssrc), Some(id)) = (speaker.audio_ssrc, speaker.participant_id.as_ref()) else {
                continue;
            };
            // Its first voiced packet of the turn; a participant that did not speak is skipped.
            let Some(&spoke) = speaker.sent.talkspurts.iter().find(|at| (turn.start..turn.end).contains(*at))
            else {
                continue;
            };
            for (receiver_idx, receiver) in reports.iter().enumerate() {
                if receiver_idx == speaker_idx || receiver.admitted.is_none_or(|at| at > spoke) {
                    continue;
                }
                match slot_latency(receiver, ssrc, spoke, turn.end) {
                    Some(Some(latency)) => result.slots.push(f64::from(latency)),
                    Some(None) => result.slots_missed.push((speaker_idx, receiver_idx)),
                    None => {}
                }
                match speakers_latency(receiver, id, spoke, turn.end) {
                    Some(Some(latency)) => result.speakers.push(f64::from(latency)),
                    Some(None) => result.speakers_missed.push((speaker_idx, receiver_idx)),
                    None => {}
                }
            }
        }
    }
    result
}

/// `None`: the speaker was in an audio slot already; `Some(None)`: it never got one before `end`.
fn slot_latency(receiver: &ClientReport, ssrc: u32, spoke: Ms, end: Ms) -> Option<Option<Ms>> {
    let is_audio = |slot_idx: usize| receiver.slot_kinds.get(slot_idx) == Some(&SlotKind::Audio);
    let audio_slots = (0..receiver.slot_kinds.len()).filter(|i| is_audio(*i));
    let already = audio_slots.into_iter().any(|slot_idx| {
        let state = receiver.slot_changes.iter().rev().find(|c| c.slot_idx == slot_idx && c.at <= spoke);
        state.is_some_and(|c| c.csrc == Some(ssrc))
    });
    if already {
        return None;
    }
    let shown = receiver
        .slot_changes
        .iter()
        .find(|c| c.at >= spoke && c.at < end && is_audio(c.slot_idx) && c.csrc == Some(ssrc));
    Some(shown.map(|c| c.at - spoke))
}

fn speakers_latency(receiver: &ClientReport, id: &str, spoke: Ms, end: Ms) -> Option<Option<Ms>> {
    let listed = |ids: &Vec<String>| ids.iter().any(|i| i == id);
    let before = receiver.speakers.iter().rev().find(|(at, _)| *at <= spoke);
    if before.is_some_and(|(_, ids)| listed(ids)) {
        return None;
    }
    let shown = receiver.speakers.iter().find(|(at, ids)| *at >= spoke && *at < end && listed(ids));
    Some(shown.map(|(at, _)| at - spoke))
}

/// The value below which a share `p` (0 to 1) of `values` lies; NaN when there are none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[cfg(test)]
mod tests;
