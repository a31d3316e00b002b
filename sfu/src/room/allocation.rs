//! Which publisher flows into which of a receiver's slots. A plain function of the room's state,
//! recomputed when something changes (a join, a departure, a mute, a new speaker) and every few
//! hundred milliseconds; sans-IO, tested with simulated time.
//!
//! - Audio slots carry the speakers that [`super::speakers::Speakers`] chose, but never the
//!   receiver's own voice.
//! - The stage carries the participant the receiver pinned (their screen share if they share,
//!   else their camera), else the latest screen share, else a teacher's or admin's camera, else
//!   the latest speaker's camera, held for [`STAGE_HOLD`] after they last spoke.
//! - Thumbnails carry cameras ranked teachers and admins first, then by most recent speech, then
//!   by arrival; the stage's camera is not repeated there.
//!
//! Slots are sticky: a publisher that stays wanted stays in the slot it has, and newcomers take
//! the slots that were freed, so a change of one speaker moves one slot, not all of them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use models::visio::SlotKind;
use str0m::media::Mid;

use super::participant::PeerKey;

/// A speaker on the stage (when no pin, screen share or teacher takes it) keeps it while they
/// spoke within this time, so that two people talking in turn do not make it swap every second.
pub(crate) const STAGE_HOLD: Duration = Duration::from_secs(3);

/// A publisher's track: participant and mid.
pub(crate) type TrackKey = (PeerKey, Mid);

/// A participant whose camera or screen share may be shown: admitted, and the track forwarded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VideoPublisher {
    pub key: PeerKey,
    pub moderator: bool,
    pub joined_at: Instant,
    pub last_spoke: Option<Instant>,
    pub camera: Option<Mid>,
    pub screen: Option<Mid>,
}

/// What every receiver's allocation reads.
#[derive(Debug)]
pub(crate) struct RoomView {
    /// From [`super::speakers::Speakers::audible`]: speakers first.
    pub speakers: Vec<PeerKey>,
    /// The forwarded microphone of each participant that has one.
    pub microphones: HashMap<PeerKey, Mid>,
    /// Ranked: teachers and admins, then by latest speech, then by arrival.
    pub video: Vec<VideoPublisher>,
    /// The screen share that started last.
    pub latest_screen: Option<TrackKey>,
    /// When the allocation runs: how long ago publishers spoke.
    pub now: Instant,
}

impl RoomView {
    pub fn new(
        speakers: Vec<PeerKey>,
        microphones: HashMap<PeerKey, Mid>,
        mut video: Vec<VideoPublisher>,
        latest_screen: Option<TrackKey>,
        now: Instant,
    ) -> RoomView {
        video.sort_by(|a, b| {
            b.moderator
                .cmp(&a.moderator)
                .then_with(|| b.last_spoke.cmp(&a.last_spoke))
                .then_with(|| a.joined_at.cmp(&b.joined_at))
                .then_with(|| a.key.cmp(&b.key))
        });
        RoomView { speakers, microphones, video, latest_screen, now }
    }

    fn publisher(&self, key: PeerKey) -> Option<&VideoPublisher> {
        self.video.iter().find(|p| p.key == key)
    }
}

/// How many slots of each kind the server fills.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotLimits {
    pub audio: usize,
    pub thumbnails: usize,
}

/// One receiver's slots: their kinds in declaration order, what each carries now (or is about
/// to), and whom the receiver pinned.
pub(crate) struct Receiver<'a> {
    pub key: PeerKey,
    pub pin: Option<PeerKey>,
    pub kinds: &'a [SlotKind],
    pub current: &'a [Option<TrackKey>],
}

/// What each of the receiver's slots should carry.
pub(crate) fn allocate(
    view: &RoomView,
    receiver: &Receiver<'_>,
    limits: SlotLimits,
) -> Vec<Option<TrackKey>> {
    let mut result: Vec<Option<TrackKey>> = vec![None; receiver.kinds.len()];
    let not_mine = |key: &PeerKey| *key != receiver.key;

    // Audio.
    let audio: Vec<TrackKey> = view
        .speakers
        .iter()
        .filter(|k| not_mine(k))
        .filter_map(|key| view.microphones.get(key).map(|mid| (*key, *mid)))
        .collect();
    place(&mut result, receiver, SlotKind::Audio, limits.audio, &audio);

    // Stage.
    let has_stage = receiver.kinds.contains(&SlotKind::Stage);
    let pinned = receiver
        .pin
        .filter(not_mine)
        .and_then(|key| view.publisher(key))
        .and_then(|p| p.screen.or(p.camera).map(|mid| (p.key, mid)));
    let screen = view.latest_screen.filter(|(key, _)| not_mine(key));
    let others = || view.video.iter().filter(|p| not_mine(&p.key));
    let moderator = others().filter(|p| p.moderator).find_map(|p| p.camera.map(|mid| (p.key, mid)));
    // The latest speaker, unless the one on the stage now spoke recently enough to stay.
    let stage_now = receiver
        .kinds
        .iter()
        .position(|k| *k == SlotKind::Stage)
        .and_then(|i| receiver.current.get(i).copied().flatten());
    let held = stage_now.filter(|(key, mid)| {
        others().any(|p| {
            p.key == *key
                && p.camera == Some(*mid)
                && p.last_spoke.is_some_and(|at| view.now.saturating_duration_since(at) < STAGE_HOLD)
        })
    });
    let speaker = held.or_else(|| others().find_map(|p| p.camera.map(|mid| (p.key, mid))));
    let stage = if has_stage { pinned.or(screen).or(moderator).or(speaker) } else { None };
    place(&mut result, receiver, SlotKind::Stage, 1, &stage.into_iter().collect::<Vec<_>>());

    // Thumbnails.
    let thumbnails: Vec<TrackKey> = view
        .video
        .iter()
        .filter(|p| not_mine(&p.key))
        .filter_map(|p| p.camera.map(|mid| (p.key, mid)))
        .filter(|track| Some(*track) != stage)
        .take(limits.thumbnails)
        .collect();
    place(&mut result, receiver, SlotKind::Thumbnail, limits.thumbnails, &thumbnails);
    result
}

/// Fills the receiver's first `limit` slots of `kind` with the first of `wanted` (in priority
/// order) that fit: a track already in one of the slots stays there; the others go to the free
/// ones in order.
fn place(
    result: &mut [Option<TrackKey>],
    receiver: &Receiver<'_>,
    kind: SlotKind,
    limit: usize,
    wanted: &[TrackKey],
) {
    let slots: Vec<usize> =
        (0..receiver.kinds.len()).filter(|i| receiver.kinds[*i] == kind).take(limit).collect();
    let wanted = &wanted[..wanted.len().min(slots.len())];
    let mut placed = Vec::new();
    for &i in &slots {
        if let Some(track) = receiver.current.get(i).copied().flatten() {
            if wanted.contains(&track) && !placed.contains(&track) {
                result[i] = Some(track);
                placed.push(track);
            }
        }
    }
    let mut rest = wanted.iter().filter(|t| !placed.contains(t));
    for &i in &slots {
        if result[i].is_none() {
            result[i] = rest.next().copied();
        }
    }
}

#[cfg(test)]
mod tests;
