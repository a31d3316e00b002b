//! Each receiver's video within its downlink (sans-IO): which layer every video slot gets, or
//! whether it pauses, given str0m's TWCC estimate of what reaches that receiver.
//!
//! The class's priorities: audio first (its share is set aside before any video), then the
//! teacher and the stage, then the speakers, then the other thumbnails. A slot of the first rank
//! is never paused (it drops to its lowest layer at worst); thumbnails pause, lowest rank first,
//! before the teacher's video degrades. A layer goes up only with room to spare (hysteresis),
//! so a receiver near its limit does not flap between layers; str0m probes for more bandwidth
//! (`desired`) and paused thumbnails resume when the estimate allows.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use models::visio::SlotKind;

/// What one audio slot in use is counted for: Opus at 32 kbit/s with RED (one redundant frame),
/// headers and SRTP.
pub const AUDIO_SLOT_BPS: u64 = 64_000;
/// The share of the estimate media may use: the rest absorbs the estimate's error, RTCP and
/// retransmissions.
const USABLE: f64 = 0.85;
/// Going up a layer (or resuming) needs this much more room than the layer's rate.
const UPGRADE_MARGIN: f64 = 1.25;
/// Before a layer's rate is measured: what browsers send for a low, middle and top layer.
const NOMINAL_BPS: [u64; 3] = [150_000, 350_000, 700_000];

/// Decisions use the best estimate of this window: the delay-based estimate dips for a moment
/// whenever the sender's machine is busy, and a thumbnail should not pause for that. A link
/// that is really slow stays low for the whole window.
const ESTIMATE_WINDOW: Duration = Duration::from_secs(3);
/// The estimate limits a receiver only while it shows congestion: this much loss reported on
/// what we send it, or a round trip this much longer than its shortest (a queue building up).
/// A delay-based estimate alone also falls on a clean link whose ends are busy machines (seen
/// at 150 kbit/s on loopback with three browsers on two cores), and would pause videos that
/// flow fine.
const CONGESTION_LOSS: f32 = 0.02;
/// A receiver that loses this much of what we send it gets the lowest layer of every video, for
/// `LOSSY_HOLD` after: a frame of a few packets survives such loss far more often than one of
/// many, and one NACK round trip brings it back (measured at 8 % loss and 300 ms round trip).
const LOSSY: f32 = 0.05;
const LOSSY_HOLD: Duration = Duration::from_secs(10);
/// Streams' loss reports are compared over this window (they come every two seconds).
const LOSS_WINDOW: Duration = Duration::from_secs(5);
const CONGESTION_DELAY: Duration = Duration::from_millis(40);
/// How long one sign of congestion keeps the estimate in force: longer than the swing from a
/// cut back to full rate, so that a slow link settles on what fits rather than oscillating.
const CONGESTION_HOLD: Duration = Duration::from_secs(60);
/// While a receiver gets less than it would take (a paused slot, a lower layer), str0m is asked
/// to probe for more this often: its estimate otherwise stays near what we send.
const PROBE_EVERY: Duration = Duration::from_secs(4);

/// One receiver's downlink as the allocation sees it: str0m's estimates of the last seconds.
#[derive(Debug, Default)]
pub struct Downlink {
    estimates: VecDeque<(Instant, u64)>,
    last_probe: Option<Instant>,
    min_rtt: Option<Duration>,
    congested_at: Option<Instant>,
    lossy_at: Option<Instant>,
    /// The latest loss each stream reported, within `LOSS_WINDOW`: (stream, when, fraction).
    losses: Vec<(u64, Instant, f32)>,
}

impl Downlink {
    pub fn record(&mut self, now: Instant, bps: u64) {
        while self
            .estimates
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > ESTIMATE_WINDOW)
        {
            self.estimates.pop_front();
        }
        // At most a few per second arrive; the bound is for safety.
        if self.estimates.len() >= 64 {
            self.estimates.pop_front();
        }
        self.estimates.push_back((now, bps));
    }

    /// What the receiver reported of its stream `stream` (a slot): the fraction lost and the
    /// round trip. A receiver reports as lost what its publisher's uplink lost too, so the loss
    /// of its downlink is the least any of its streams reports (two at least): a publisher on a
    /// bad network makes one stream lossy, a bad downlink every one.
    pub fn report(&mut self, now: Instant, stream: u64, loss: Option<f32>, rtt: Option<Duration>) {
        if let Some(rtt) = rtt {
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |min| min.min(rtt)));
        }
        self.losses.retain(|(_, at, _)| now.saturating_duration_since(*at) <= LOSS_WINDOW);
        self.losses.retain(|(s, _, _)| *s != stream);
        if let Some(loss) = loss {
            if self.losses.len() < 64 {
                self.losses.push((stream, now, loss));
            }
        }
        // One stream alone cannot tell the downlink from its publisher's uplink.
        let downlink_loss = if self.losses.len() < 2 {
            None
        } else {
            self.losses.iter().map(|(_, _, loss)| *loss).reduce(f32::min)
        };
        let queued = rtt.zip(self.min_rtt).is_some_and(|(rtt, min)| rtt > min + CONGESTION_DELAY);
        if queued || downlink_loss.is_some_and(|loss| loss >= CONGESTION_LOSS) {
            self.congested_at = Some(now);
        }
        if downlink_loss.is_some_and(|loss| loss >= LOSSY) {
            self.lossy_at = Some(now);
        }
    }

    /// Whether the receiver lost much of what we sent it lately: its video goes at the lowest
    /// layers.
    pub fn lossy(&self, now: Instant) -> bool {
        self.lossy_at.is_some_and(|at| now.saturating_duration_since(at) < LOSSY_HOLD)
    }

    /// The bitrate to fit the receiver's video in: the best estimate of the window (the latest
    /// one if all are older) while it shows congestion; `None` (no limit) otherwise.
    pub fn usable(&self, now: Instant) -> Option<u64> {
        if self.congested_at.is_none_or(|at| now.saturating_duration_since(at) >= CONGESTION_HOLD) {
            return None;
        }
        let recent =
            self.estimates.iter().filter(|(at, _)| now.saturating_duration_since(*at) <= ESTIMATE_WINDOW);
        recent.map(|(_, bps)| *bps).max().or_else(|| self.estimates.back().map(|(_, bps)| *bps))
    }

    /// Whether to ask str0m for a probe now, for a receiver that gets less than it would take.
    pub fn probe_due(&mut self, now: Instant) -> bool {
        if self.last_probe.is_some_and(|at| now.saturating_duration_since(at) < PROBE_EVERY) {
            return false;
        }
        self.last_probe = Some(now);
        true
    }
}

/// A video slot's rank among the receiver's slots; lower goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// The stage, or a teacher's or admin's camera: never paused.
    First,
    /// Someone who spoke lately.
    Speaker,
    Other,
}

/// One layer a slot may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOption {
    /// Its index in the publisher's track, lowest quality first.
    pub index: usize,
    /// Measured incoming rate, 0 while unknown.
    pub rate_bps: u64,
    /// Packets came lately: a layer the publisher stopped is not chosen while another flows.
    pub flowing: bool,
}

/// A video slot that has a publisher to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoWant {
    pub kind: SlotKind,
    pub rank: Rank,
    /// The publisher's layers, lowest first (one without simulcast).
    pub layers: Vec<LayerOption>,
    /// The layer the slot gets now, if it shows this publisher; `None` if paused or new.
    pub current: Option<usize>,
}

/// What a video slot gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Layer(usize),
    /// Not sent: the receiver's downlink has no room for it now.
    Paused,
}

/// The layers of a receiver's video slots, index for index with `wants`, and the bitrate it
/// would like (for str0m's probing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    pub choices: Vec<Choice>,
    pub desired_bps: u64,
    /// What the choices are expected to use, audio included.
    pub used_bps: u64,
    /// Some slot gets less than it would without limit.
    pub limited: bool,
}

fn rate(option: &LayerOption, n_layers: usize) -> u64 {
    if option.rate_bps > 0 {
        return option.rate_bps;
    }
    let position = if n_layers <= 1 {
        NOMINAL_BPS.len() - 1
    } else {
        option.index * (NOMINAL_BPS.len() - 1) / (n_layers - 1)
    };
    NOMINAL_BPS[position.min(NOMINAL_BPS.len() - 1)]
}

/// The layers to choose from: those that flow, or all of them when none does (a publisher
/// just starting).
fn candidates(want: &VideoWant) -> Vec<LayerOption> {
    let flowing: Vec<LayerOption> = want.layers.iter().copied().filter(|l| l.flowing).collect();
    if flowing.is_empty() {
        want.layers.clone()
    } else {
        flowing
    }
}

/// Keeps only the lowest layer that flows (a receiver on a lossy link).
pub fn lowest_only(want: &mut VideoWant) {
    let lowest = candidates(want).first().map(|l| l.index);
    want.layers.retain(|l| Some(l.index) == lowest);
}

/// What the slot gets with unlimited bandwidth: the stage its best layer, a thumbnail its least.
fn unlimited(want: &VideoWant) -> Option<LayerOption> {
    let options = candidates(want);
    match want.kind {
        SlotKind::Stage => options.last().copied(),
        SlotKind::Thumbnail | SlotKind::Audio => options.first().copied(),
    }
}

/// Chooses every video slot's layer within `estimate_bps` (`None`: no estimate yet, or the
/// receiver gives no feedback: every slot gets what it would unlimited).
pub fn fit(estimate_bps: Option<u64>, audio_slots_in_use: usize, wants: &[VideoWant]) -> Fit {
    let audio_bps = AUDIO_SLOT_BPS * audio_slots_in_use as u64;
    let desired_bps =
        audio_bps + wants.iter().filter_map(|w| unlimited(w).map(|l| rate(&l, w.layers.len()))).sum::<u64>();
    let Some(estimate) = estimate_bps else {
        let choices: Vec<Choice> =
            wants.iter().map(|w| unlimited(w).map_or(Choice::Paused, |l| Choice::Layer(l.index))).collect();
        return Fit { choices, desired_bps, used_bps: desired_bps, limited: false };
    };
    let mut remaining = (estimate as f64 * USABLE) as i64 - audio_bps as i64;
    let mut order: Vec<usize> = (0..wants.len()).collect();
    // First rank first, the stage before thumbnails, then in slot order.
    order.sort_by_key(|&i| (wants[i].rank, wants[i].kind != SlotKind::Stage, i));
    let mut choices = vec![Choice::Paused; wants.len()];
    let mut used = audio_bps;
    for i in order {
        let want = &wants[i];
        let options = candidates(want);
        let n = want.layers.len();
        let fits = |option: &LayerOption, remaining: i64| {
            let needed = rate(option, n) as f64;
            // Keeping what it has needs room for it; anything more needs a margin.
            let margin = match want.current {
                Some(current) if option.index <= current => 1.0,
                _ => UPGRADE_MARGIN,
            };
            needed * margin <= remaining as f64
        };
        let best = match want.kind {
            SlotKind::Stage => options.iter().rev().find(|o| fits(o, remaining)).copied(),
            SlotKind::Thumbnail | SlotKind::Audio => options.first().filter(|o| fits(o, remaining)).copied(),
        };
        let chosen = match (best, want.rank) {
            (Some(option), _) => Some(option),
            // The teacher and the stage degrade to their lowest layer, never to nothing.
            (None, Rank::First) => options.first().copied(),
            (None, _) => None,
        };
        if let Some(option) = chosen {
            let bps = rate(&option, n);
            remaining -= bps as i64;
            used += bps;
            choices[i] = Choice::Layer(option.index);
        }
    }
    let limited = wants.iter().zip(&choices).any(|(want, choice)| match (unlimited(want), choice) {
        (Some(best), Choice::Layer(index)) => *index != best.index,
        (Some(_), Choice::Paused) => true,
        (None, _) => false,
    });
    Fit { choices, desired_bps, used_bps: used, limited }
}

#[cfg(test)]
mod tests;
