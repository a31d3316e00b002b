//! Applying the allocation: each receiver's slots are pointed at the tracks `allocation` chose,
//! the publishers' lists of listening slots follow, keyframes are asked for where a slot waits
//! for one, and receivers are told who is in their slots and who speaks.

use std::collections::HashMap;
use std::time::Instant;

use models::visio::{SlotKind, SlotQuality};

use crate::proto::{ParticipantEvent, ParticipantId, SlotInfo, TrackSource};

use super::allocation::{self, Receiver, RoomView, SlotLimits, TrackKey, VideoPublisher};
use super::bandwidth::{self, Choice, LayerOption, Rank, VideoWant};
use super::participant::{Layer, LayerKey, PeerKey};
use super::session::MemberStatus;
use super::speakers::AudioCandidate;
use super::{Room, RoomOutput};

/// A simulcast layer with no packet for this long is taken as stopped (the browser drops its
/// top layers when its CPU or uplink cannot keep up).
const LAYER_SILENCE: std::time::Duration = std::time::Duration::from_secs(1);
/// A publisher who spoke this recently ranks above other thumbnails for bandwidth.
const SPOKE_LATELY: std::time::Duration = std::time::Duration::from_secs(10);
/// Layers' rates are sampled at most this often.
const RATE_SAMPLE: std::time::Duration = std::time::Duration::from_millis(150);

impl Room {
    /// Ranks speakers, computes every receiver's slots and applies them.
    pub(super) fn refresh_allocation(&mut self, now: Instant) {
        self.allocation_dirty = false;
        self.next_allocation_at = now + self.config.allocation_interval;
        self.sample_rates(now);
        let view = self.room_view(now);
        let limits = SlotLimits { audio: self.config.audio_slots, thumbnails: self.config.thumbnail_slots };
        let mut keyframes: Vec<LayerKey> = Vec::new();
        for rx_idx in 0..self.participants.len() {
            let rx = &self.participants[rx_idx];
            if !rx.active || rx.slots.is_empty() {
                continue;
            }
            let rx_key = rx.key;
            let kinds: Vec<SlotKind> = rx.slots.iter().map(|s| s.kind).collect();
            let current: Vec<Option<TrackKey>> =
                rx.slots.iter().map(|s| s.forwarder.target().map(|(key, mid, _)| (key, mid))).collect();
            let wanted = allocation::allocate(
                &view,
                &Receiver { key: rx_key, pin: rx.pin, kinds: &kinds, current: &current },
                limits,
            );
            let fitted = self.fit_to_downlink(rx_idx, &view, &kinds, &wanted, now);
            for (slot_idx, (target, paused)) in fitted.into_iter().enumerate() {
                let slot = &mut self.participants[rx_idx].slots[slot_idx];
                if paused.is_some() && slot.paused.is_none() {
                    self.stats.bandwidth_pauses += 1;
                }
                slot.paused = paused;
                let generation = target
                    .and_then(|(key, mid, _)| self.published(key, mid))
                    .map_or(0, |t| t.buffer.generation());
                // A publisher that is gone cannot send the keyframe a switch waits for: the slot
                // lets go of it at once.
                let current = self.participants[rx_idx].slots[slot_idx].forwarder.current();
                let mut changed = false;
                if current.is_some_and(|track| self.layer(track).is_none()) {
                    changed = self.participants[rx_idx].slots[slot_idx].forwarder.assign(None, 0);
                }
                let slot = &mut self.participants[rx_idx].slots[slot_idx];
                if slot.forwarder.target() != target {
                    changed |= slot.forwarder.assign(target, generation);
                }
                if changed {
                    self.stats.slot_switches += 1;
                }
                let slot = &self.participants[rx_idx].slots[slot_idx];
                if let Some(track) = target.filter(|t| slot.forwarder.waits_for_keyframe_of(*t)) {
                    keyframes.push(track);
                }
                self.set_listening(rx_key, slot_idx, slot.forwarder.listening());
            }
            self.announce_slots(rx_key, false);
        }
        keyframes.sort();
        keyframes.dedup();
        for layer in keyframes {
            self.request_keyframe(layer, now);
        }
        let speaking = self.speakers.speaking_now(view.microphones.keys().copied(), now);
        if speaking != self.announced_speakers {
            self.announced_speakers = speaking;
            let ids = self.speaker_ids();
            self.broadcast_active(ParticipantEvent::Speakers(ids), None);
        }
    }

    /// The room as the allocation sees it: speakers ranked, forwarded microphones, cameras and
    /// screens of admitted participants.
    fn room_view(&mut self, now: Instant) -> RoomView {
        let mut audio = Vec::new();
        let mut microphones = HashMap::new();
        let mut video = Vec::new();
        for p in &self.participants {
            let Some(member) = self.session.member(&p.id) else { continue };
            if !p.active || member.status != MemberStatus::Active {
                continue;
            }
            let moderator = member.role.administers();
            let forwarded = |source: TrackSource| {
                p.tracks_in
                    .iter()
                    .find(|(_, t)| t.buffer.source == source && t.buffer.is_forwarding())
                    .map(|(mid, _)| *mid)
            };
            if let Some(mid) = forwarded(TrackSource::Microphone) {
                audio.push(AudioCandidate { key: p.key, moderator });
                microphones.insert(p.key, mid);
            }
            let camera = forwarded(TrackSource::Camera);
            let screen = forwarded(TrackSource::ScreenShare);
            if camera.is_some() || screen.is_some() {
                video.push(VideoPublisher {
                    key: p.key,
                    moderator,
                    joined_at: p.joined_at,
                    last_spoke: self.speakers.last_spoke(p.key),
                    camera,
                    screen,
                });
            }
        }
        // One more than the audio slots: a speaker among them still hears as many others.
        self.speakers.rank(&audio, self.config.audio_slots + 1, now);
        let latest_screen = self
            .latest_screen
            .filter(|track| video.iter().any(|p| p.key == track.0 && p.screen == Some(track.1)));
        RoomView::new(self.speakers.audible(now), microphones, video, latest_screen, now)
    }

    /// The layer each of receiver `rx_idx`'s slots gets for the tracks `wanted` there, within its
    /// downlink (`bandwidth`), or the track it pauses.
    fn fit_to_downlink(
        &mut self,
        rx_idx: usize,
        view: &RoomView,
        kinds: &[SlotKind],
        wanted: &[Option<TrackKey>],
        now: Instant,
    ) -> Vec<(Option<LayerKey>, Option<TrackKey>)> {
        let mut fitted = vec![(None, None); kinds.len()];
        let mut wants = Vec::new();
        let mut video_slots = Vec::new();
        let mut n_audio = 0;
        for (slot_idx, (&kind, &track)) in kinds.iter().zip(wanted).enumerate() {
            let Some(track) = track else { continue };
            if kind == SlotKind::Audio {
                n_audio += 1;
                fitted[slot_idx] = (self.pick_layer(track, kind, now), None);
                continue;
            }
            let Some(published) = self.published(track.0, track.1) else { continue };
            let flowing = |layer: &Layer| {
                layer.last_packet.is_some_and(|at| now.saturating_duration_since(at) < LAYER_SILENCE)
            };
            let layers = published
                .layers
                .iter()
                .enumerate()
                .map(|(index, layer)| LayerOption {
                    index,
                    rate_bps: layer.rate_bps,
                    flowing: flowing(layer),
                })
                .collect();
            let publisher = view.video.iter().find(|p| p.key == track.0);
            let rank = if kind == SlotKind::Stage || publisher.is_some_and(|p| p.moderator) {
                Rank::First
            } else if publisher
                .and_then(|p| p.last_spoke)
                .is_some_and(|at| now.saturating_duration_since(at) < SPOKE_LATELY)
            {
                Rank::Speaker
            } else {
                Rank::Other
            };
            let current = self.participants[rx_idx].slots[slot_idx]
                .forwarder
                .target()
                .filter(|(key, mid, _)| (*key, *mid) == track)
                .map(|(_, _, layer)| layer);
            wants.push(VideoWant { kind, rank, layers, current });
            video_slots.push((slot_idx, track));
        }
        let rx = &mut self.participants[rx_idx];
        if rx.downlink.lossy(now) {
            for want in &mut wants {
                bandwidth::lowest_only(want);
            }
        }
        let fit = bandwidth::fit(rx.downlink.usable(), n_audio, &wants);
        for ((slot_idx, (key, mid)), choice) in video_slots.into_iter().zip(fit.choices) {
            fitted[slot_idx] = match choice {
                Choice::Layer(layer) => (Some((key, mid, layer)), None),
                Choice::Paused => (None, Some((key, mid))),
            };
        }
        rx.downlink.usage(fit.used_bps, fit.desired_bps);
        fitted
    }

    /// Updates every layer's smoothed incoming rate from the bytes it received since the last
    /// sample.
    fn sample_rates(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.rates_sampled_at);
        if elapsed < RATE_SAMPLE {
            return;
        }
        self.rates_sampled_at = now;
        let secs = elapsed.as_secs_f64();
        for participant in &mut self.participants {
            for track in participant.tracks_in.values_mut() {
                for layer in &mut track.layers {
                    let bps = ((layer.bytes - layer.sampled_bytes) as f64 * 8.0 / secs) as u64;
                    layer.sampled_bytes = layer.bytes;
                    layer.rate_bps = if layer.rate_bps == 0 { bps } else { (layer.rate_bps * 3 + bps) / 4 };
                }
            }
        }
    }

    /// Which layer of `track` a slot of `kind` gets: the stage the best one the publisher sends
    /// now, a thumbnail the least (simulcast); the one layer otherwise. A layer that sent nothing
    /// for a second is not chosen while another one flows.
    fn pick_layer(&self, (key, mid): TrackKey, kind: SlotKind, now: Instant) -> Option<LayerKey> {
        let track = self.published(key, mid)?;
        let flowing = |i: &usize| {
            track.layers[*i].last_packet.is_some_and(|at| now.saturating_duration_since(at) < LAYER_SILENCE)
        };
        let mut candidates: Vec<usize> = (0..track.layers.len()).filter(flowing).collect();
        if candidates.is_empty() {
            candidates = (0..track.layers.len()).collect();
        }
        let layer = match kind {
            SlotKind::Stage => candidates.last(),
            SlotKind::Thumbnail | SlotKind::Audio => candidates.first(),
        };
        layer.map(|layer| (key, mid, *layer))
    }

    /// A layer of a published track; `None` once the publisher or its track is gone.
    fn layer(&self, (key, mid, layer): LayerKey) -> Option<&Layer> {
        self.published(key, mid)?.layers.get(layer)
    }

    fn layer_mut(&mut self, (key, mid, layer): LayerKey) -> Option<&mut Layer> {
        self.published_mut(key, mid)?.layers.get_mut(layer)
    }

    /// Makes the publishers' lists of listening slots match what the slot listens to now.
    pub(super) fn set_listening(&mut self, rx_key: PeerKey, slot_idx: usize, listening: Vec<LayerKey>) {
        let Some(rx_idx) = self.index_of(rx_key) else { return };
        let old =
            std::mem::replace(&mut self.participants[rx_idx].slots[slot_idx].listening, listening.clone());
        if old == listening {
            return;
        }
        for gone in old.iter().filter(|t| !listening.contains(t)) {
            if let Some(layer) = self.layer_mut(*gone) {
                layer.subscribers.retain(|s| *s != (rx_key, slot_idx));
            }
        }
        for new in listening.iter().filter(|t| !old.contains(t)) {
            if let Some(layer) = self.layer_mut(*new) {
                layer.subscribers.push((rx_key, slot_idx));
            }
        }
    }

    /// A video slot switched publisher at a keyframe: the old one's list lets go of it and the
    /// receiver is told.
    pub(super) fn slot_switched(&mut self, rx_key: PeerKey, slot_idx: usize) {
        let Some(rx_idx) = self.index_of(rx_key) else { return };
        let listening = self.participants[rx_idx].slots[slot_idx].forwarder.listening();
        self.set_listening(rx_key, slot_idx, listening);
        self.stats.slot_switches += 1;
        self.announce_slots(rx_key, false);
    }

    /// Sends the receiver its slot map if what it sees changed since the last one (or always).
    pub(super) fn announce_slots(&mut self, rx_key: PeerKey, always: bool) {
        let Some(rx_idx) = self.index_of(rx_key) else { return };
        let now_showing: Vec<Option<(LayerKey, Option<u32>)>> = self.participants[rx_idx]
            .slots
            .iter()
            .map(|slot| slot.forwarder.current().map(|track| (track, self.layer(track).and_then(|l| l.ssrc))))
            .collect();
        let rx = &self.participants[rx_idx];
        // A paused slot counts as showing nothing; it is announced with the one it pauses.
        let paused_of = |slot: &super::participant::Slot, showing: &Option<(LayerKey, Option<u32>)>| {
            if showing.is_some() {
                None
            } else {
                slot.paused
            }
        };
        let changed = rx.slots.iter().zip(&now_showing).any(|(slot, showing)| {
            slot.announced != *showing || slot.announced_paused != paused_of(slot, showing)
        });
        if !changed && !always {
            return;
        }
        let mut infos = Vec::with_capacity(rx.slots.len());
        for (slot, showing) in rx.slots.iter().zip(&now_showing) {
            let paused = paused_of(slot, showing);
            let track = showing.map(|((key, mid, _), _)| (key, mid)).or(paused);
            let publisher = track.and_then(|(key, mid)| {
                let p = &self.participants[self.index_of(key)?];
                let published = p.tracks_in.get(&mid)?;
                Some((p.id.clone(), published.buffer.source, published.layers.len()))
            });
            let quality = match (showing, paused, &publisher) {
                (_, Some(_), Some(_)) => Some(SlotQuality::Paused),
                (Some(((_, _, layer), _)), _, Some((_, _, n_layers))) if slot.kind != SlotKind::Audio => {
                    Some(if layer + 1 >= *n_layers { SlotQuality::High } else { SlotQuality::Low })
                }
                _ => None,
            };
            infos.push(SlotInfo {
                mid: slot.mid.to_string(),
                kind: slot.kind,
                publisher: publisher.as_ref().map(|(id, _, _)| id.clone()),
                source: publisher.as_ref().map(|(_, source, _)| *source),
                csrc: showing.and_then(|(_, ssrc)| ssrc),
                quality,
            });
        }
        let rx = &mut self.participants[rx_idx];
        for (slot, showing) in rx.slots.iter_mut().zip(now_showing) {
            slot.announced_paused = if showing.is_some() { None } else { slot.paused };
            slot.announced = showing;
        }
        if rx.active {
            let id = rx.id.clone();
            self.outputs.push_back(RoomOutput::ToParticipant(id, ParticipantEvent::Slots(infos)));
        }
    }

    pub(super) fn speaker_ids(&self) -> Vec<ParticipantId> {
        self.announced_speakers
            .iter()
            .filter_map(|key| self.index_of(*key).map(|idx| self.participants[idx].id.clone()))
            .collect()
    }
}
