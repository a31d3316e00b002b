//! Each receiver's video within its downlink (sans-IO): which layer every video slot gets, or
//! whether it pauses, given an estimate of what reaches that receiver.
//!
//! The class's priorities: audio first (its share is set aside before any video), then the
//! teacher and the stage, then the speakers, then the other thumbnails. A slot of the first rank
//! is never paused (it drops to its lowest layer at worst); thumbnails pause, lowest rank first,
//! before the teacher's video degrades. A layer goes up only with room to spare (hysteresis),
//! so a receiver near its limit does not flap between layers.
//!
//! The estimate ([`Downlink`]) is driven by the loss the receiver reports on every stream it
//! gets, not by str0m's TWCC estimate: that one (delay-based) fell to 150 kbit/s on the clean
//! loopback of a busy two-core machine, and str0m's pacer, which comes with it, then paced
//! everything at 1.1 times that: eight pages on one machine decoded no video at all.

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

/// Loss on every stream of a receiver from which its downlink counts as congested: what we send
/// it is cut to what got through, a little less. Below `CLEAR_LOSS`, it may grow again; between
/// the two it holds (as GCC's loss-based control does, from 10 %): a link that loses 8 % at
/// random loses it at any rate, and cutting would only starve it (`LOSSY` lowers its layers
/// instead). 15 %, not 10: a two-second report of 8 % random loss reads 12 % now and then.
const CONGESTION_LOSS: f32 = 0.15;
const CLEAR_LOSS: f32 = 0.02;
/// At most one cut per round of reports (every stream reports every two seconds).
const CUT_EVERY: Duration = Duration::from_secs(2);
/// A clean downlink gets a quarter more this long after the last change, until everything fits
/// (no estimate): slow, so that a link at its limit is not pushed into loss every few seconds.
const GROW_AFTER: Duration = Duration::from_secs(30);
const GROWTH: f64 = 1.25;
/// The estimate never goes below this: the audio and the stage's lowest layer.
const FLOOR_BPS: u64 = 250_000;
/// A receiver that loses this much on every stream gets the lowest layer of every video, for
/// `LOSSY_HOLD` after: a frame of a few packets survives such loss far more often than one of
/// many, and one NACK round trip brings it back (measured at 8 % loss and 300 ms round trip).
/// Its estimate, if it had none, becomes what it was sent then: when the hold ends, its layers
/// go back up only as the estimate grows, not all at once into a link that may not carry them.
const LOSSY: f32 = 0.05;
const LOSSY_HOLD: Duration = Duration::from_secs(30);
/// Streams' loss reports are compared over this window (they come every two seconds).
const LOSS_WINDOW: Duration = Duration::from_secs(5);

/// One receiver's downlink as the allocation sees it, from the loss it reports.
#[derive(Debug, Default)]
pub struct Downlink {
    /// What its video must fit in; `None`: no limit seen.
    estimate: Option<u64>,
    changed_at: Option<Instant>,
    lossy_at: Option<Instant>,
    /// The latest loss each stream reported, within `LOSS_WINDOW`: (stream, when, fraction).
    losses: Vec<(u64, Instant, f32)>,
    /// What the latest allocation expects to send it, and what it would send without limit.
    used_bps: u64,
    desired_bps: u64,
}

impl Downlink {
    /// What the latest allocation sends the receiver, and would send without limit.
    pub fn usage(&mut self, used_bps: u64, desired_bps: u64) {
        self.used_bps = used_bps;
        self.desired_bps = desired_bps;
    }

    /// What the receiver reported of its stream `stream` (a slot): the fraction lost. A receiver
    /// reports as lost what its publisher's uplink lost too, so the loss of its downlink is the
    /// least any of its streams reports (two at least): a publisher on a bad network makes one
    /// stream lossy, a bad downlink every one.
    pub fn report(&mut self, now: Instant, stream: u64, loss: Option<f32>) {
        self.losses.retain(|(s, at, _)| *s != stream && now.saturating_duration_since(*at) <= LOSS_WINDOW);
        if let Some(loss) = loss {
            if self.losses.len() < 64 {
                self.losses.push((stream, now, loss));
            }
        }
        if self.losses.len() < 2 {
            return;
        }
        let Some(loss) = self.losses.iter().map(|(_, _, loss)| *loss).reduce(f32::min) else { return };
        let since_change = self.changed_at.map(|at| now.saturating_duration_since(at));
        if loss >= CONGESTION_LOSS && since_change.is_none_or(|d| d >= CUT_EVERY) {
            let sent = self.estimate.unwrap_or(self.used_bps).min(self.used_bps.max(FLOOR_BPS));
            let cut = (sent as f64 * f64::from(1.0 - loss) * 0.9) as u64;
            self.estimate = Some(cut.max(FLOOR_BPS));
            self.changed_at = Some(now);
        } else if loss < CLEAR_LOSS && since_change.is_some_and(|d| d >= GROW_AFTER) {
            if let Some(estimate) = self.estimate {
                let grown = (estimate as f64 * GROWTH) as u64;
                self.estimate = (grown < self.desired_bps).then_some(grown);
                self.changed_at = Some(now);
            }
        }
        if loss >= LOSSY {
            self.lossy_at = Some(now);
            if self.estimate.is_none() {
                // What it gets now still fits (`fit` uses USABLE of the estimate).
                self.estimate = Some(((self.used_bps as f64 / USABLE * 1.02) as u64).max(FLOOR_BPS));
                self.changed_at = Some(now);
            }
        }
    }

    /// Whether the receiver lost much of what we sent it lately: its video goes at the lowest
    /// layers.
    pub fn lossy(&self, now: Instant) -> bool {
        self.lossy_at.is_some_and(|at| now.saturating_duration_since(at) < LOSSY_HOLD)
    }

    /// The bitrate to fit the receiver's video in; `None`: no limit.
    pub fn usable(&self) -> Option<u64> {
        self.estimate
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
        return Fit { choices, desired_bps, used_bps: desired_bps };
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
    Fit { choices, desired_bps, used_bps: used }
}

#[cfg(test)]
mod tests;
