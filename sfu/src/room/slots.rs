//! Applying the allocation: each receiver's slots are pointed at the tracks `allocation` chose,
//! the publishers' lists of listening slots follow, keyframes are asked for where a slot waits
//! for one, and receivers are told who is in their slots and who speaks.

use std::collections::HashMap;
use std::time::Instant;

use models::visio::SlotKind;

use crate::proto::{ParticipantEvent, ParticipantId, SlotInfo, TrackSource};

use super::allocation::{self, Receiver, RoomView, SlotLimits, TrackKey, VideoPublisher};
use super::participant::{Layer, LayerKey, PeerKey};
use super::session::MemberStatus;
use super::speakers::AudioCandidate;
use super::{Room, RoomOutput};

/// A simulcast layer with no packet for this long is taken as stopped (the browser drops its
/// top layers when its CPU or uplink cannot keep up).
const LAYER_SILENCE: std::time::Duration = std::time::Duration::from_secs(1);

impl Room {
    /// Ranks speakers, computes every receiver's slots and applies them.
    pub(super) fn refresh_allocation(&mut self, now: Instant) {
        self.allocation_dirty = false;
        self.next_allocation_at = now + self.config.allocation_interval;
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
            for (slot_idx, wanted_track) in wanted.into_iter().enumerate() {
                let kind = kinds[slot_idx];
                let target = wanted_track.and_then(|track| self.pick_layer(track, kind, now));
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
        let changed = rx.slots.iter().zip(&now_showing).any(|(slot, showing)| slot.announced != *showing);
        if !changed && !always {
            return;
        }
        let mut infos = Vec::with_capacity(rx.slots.len());
        for (slot, showing) in rx.slots.iter().zip(&now_showing) {
            let publisher = showing.and_then(|((key, mid, _), ssrc)| {
                let p = &self.participants[self.index_of(key)?];
                Some((p.id.clone(), p.tracks_in.get(&mid)?.buffer.source, ssrc))
            });
            infos.push(SlotInfo {
                mid: slot.mid.to_string(),
                kind: slot.kind,
                publisher: publisher.as_ref().map(|(id, _, _)| id.clone()),
                source: publisher.as_ref().map(|(_, source, _)| *source),
                csrc: publisher.and_then(|(_, _, ssrc)| ssrc),
            });
        }
        let rx = &mut self.participants[rx_idx];
        for (slot, showing) in rx.slots.iter_mut().zip(now_showing) {
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
