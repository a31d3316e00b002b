//! Media: str0m's events for one participant, its published tracks, and the path of one RTP
//! packet from a publisher to the slots that carry it. A packet walks only the list of slots
//! that listen to its track: no scan over participants or streams.

use std::time::Instant;

use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, Mid, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use str0m::{Event, IceConnectionState};
use tracing::{debug, info};

use crate::forward::{is_keyframe_start, Buffer, DropReason, PacketView, SlotDecision, VideoCodec};
use crate::proto::{MediaCounters, MediaKind, ParticipantEvent, TrackId, TrackInfo, TrackSource};

use super::participant::{Layer, LayerKey, PeerKey, PublishedTrack};
use super::session::MemberStatus;
use super::Room;
use super::RoomOutput;

/// A receiver's report of a stream that carried fewer packets since the previous one is not
/// counted in its downlink's loss (`bandwidth::Downlink`).
const MIN_PACKETS_FOR_LOSS: u64 = 40;

/// How soon the room ranks speakers again when someone without an audio slot starts speaking.
const SPEECH_ONSET_RANKING: std::time::Duration = std::time::Duration::from_millis(40);

impl Room {
    pub(super) fn handle_rtc_event(&mut self, key: PeerKey, event: Event, now: Instant) {
        match event {
            Event::RtpPacket(packet) => self.forward_packet(key, packet, now),
            Event::Connected => {
                if let Some(idx) = self.index_of(key) {
                    if !self.participants[idx].connected {
                        let id = self.participants[idx].id.clone();
                        self.outputs
                            .push_back(RoomOutput::ToParticipant(id, ParticipantEvent::MediaConnected));
                    }
                    self.participants[idx].connected = true;
                    // Its slots can now be filled.
                    self.allocation_dirty = true;
                }
            }
            // An ICE restart (a new network) completed: video restarts from keyframes.
            Event::IceConnectionStateChange(
                IceConnectionState::Completed | IceConnectionState::Connected,
            ) => {
                if let Some(idx) = self.index_of(key).filter(|&idx| self.participants[idx].connected) {
                    self.restart_video(idx, now);
                }
            }
            // Not a departure: the grace period of `link` starts.
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => self.media_lost(key, now),
            Event::MediaAdded(added) => {
                let receiving = matches!(added.direction, Direction::RecvOnly | Direction::SendRecv);
                let is_slot = self
                    .index_of(key)
                    .is_some_and(|idx| self.participants[idx].slot_by_mid(added.mid).is_some());
                if receiving && !is_slot {
                    self.publish(key, added.mid, added.kind);
                }
            }
            Event::MediaChanged(changed) => {
                // A client that stops sending on an m-line (screen share ended) unpublishes it;
                // one that starts again publishes it anew.
                let receiving = matches!(changed.direction, Direction::RecvOnly | Direction::SendRecv);
                let Some(idx) = self.index_of(key) else { return };
                if self.participants[idx].slot_by_mid(changed.mid).is_some() {
                    return;
                }
                let published = self.participants[idx].tracks_in.contains_key(&changed.mid);
                if receiving && !published {
                    let kind = self.participants[idx].rtc.media(changed.mid).map(|media| media.kind());
                    if let Some(kind) = kind {
                        self.publish(key, changed.mid, kind);
                    }
                } else if !receiving && published {
                    self.unpublish(key, changed.mid);
                }
            }
            Event::KeyframeRequest(request) => {
                self.stats.keyframe_requests_received += 1;
                let Some(idx) = self.index_of(key) else { return };
                let participant = &self.participants[idx];
                let Some(slot) = participant.slot_by_mid(request.mid).map(|i| &participant.slots[i]) else {
                    return;
                };
                if let Some((publisher, mid, layer)) = slot.forwarder.target() {
                    self.request_keyframe((publisher, mid, layer), now);
                }
            }
            Event::MediaEgressStats(egress) => {
                let Some(idx) = self.index_of(key) else { return };
                let participant = &mut self.participants[idx];
                // str0m counts retransmissions in `packets`; what we wrote ourselves is in the
                // slot. The difference over an interval is what str0m resent.
                let Some(slot_idx) = participant.slot_by_mid(egress.mid) else { return };
                let written = participant.slots[slot_idx].forwarder.packets_out;
                let last =
                    participant.last_egress.insert(egress.mid, (egress.packets, egress.nacks, written));
                let (last_packets, last_nacks, last_written) = last.unwrap_or_default();
                self.stats.nacks_received += egress.nacks.saturating_sub(last_nacks);
                let sent = egress.packets.saturating_sub(last_packets);
                self.stats.retransmissions += sent.saturating_sub(written.saturating_sub(last_written));
                let before = participant.downlink.usable();
                // A stream that sent little (a silent microphone's DTX) says nothing of loss.
                let loss = egress.loss.filter(|_| sent >= MIN_PACKETS_FOR_LOSS);
                participant.downlink.report(now, slot_idx as u64, loss);
                if participant.downlink.usable() != before {
                    debug!(participant_id = %participant.id, estimate = ?participant.downlink.usable(), loss = ?egress.loss, "downlink estimate");
                }
                if let Some(loss) = egress.loss {
                    self.loss_reports.0 += loss;
                    self.loss_reports.1 += 1;
                }
            }
            _ => {}
        }
    }

    fn publish(&mut self, key: PeerKey, mid: Mid, str0m_kind: str0m::media::MediaKind) {
        let Some(idx) = self.index_of(key) else { return };
        let kind = match str0m_kind {
            str0m::media::MediaKind::Audio => MediaKind::Audio,
            str0m::media::MediaKind::Video => MediaKind::Video,
        };
        let participant = &self.participants[idx];
        if participant.tracks_in.contains_key(&mid) {
            return;
        }
        let default_source = match kind {
            MediaKind::Audio => TrackSource::Microphone,
            MediaKind::Video => TrackSource::Camera,
        };
        let source = participant.declared_sources.get(&mid).copied().unwrap_or(default_source);
        let source_matches_kind = (source == TrackSource::Microphone) == (kind == MediaKind::Audio);
        let already_has_source = participant.tracks_in.values().any(|t| t.buffer.source == source);
        let allowed = self.session.may_publish(&participant.id, source);
        if !source_matches_kind || already_has_source || allowed.is_err() {
            // A modified client cannot get around the rules: the track is never forwarded.
            info!(participant_id = %participant.id, ?source, "track refused");
            return;
        }
        let track_id = TrackId::for_track(&participant.id, &mid.to_string());
        let rids: Vec<Option<Rid>> = match participant.declared_layers.get(&mid) {
            Some(rids) if kind == MediaKind::Video => rids.iter().copied().map(Some).collect(),
            _ => vec![None],
        };
        let mut buffer = Buffer::new(kind, source, self.config.keyframe_request_interval, rids.len());
        buffer.set_forwarding(self.may_forward(idx, kind, source));
        let layers = rids.into_iter().map(Layer::new).collect();
        let participant = &mut self.participants[idx];
        participant.tracks_in.insert(mid, PublishedTrack { track_id: track_id.clone(), buffer, layers });
        if source == TrackSource::ScreenShare {
            self.latest_screen = Some((key, mid));
        }
        if participant.active {
            let info = TrackInfo { track_id, publisher: participant.id.clone(), kind, source };
            self.broadcast_active(ParticipantEvent::TrackPublished(info), None);
            self.allocation_dirty = true;
        }
    }

    fn unpublish(&mut self, key: PeerKey, mid: Mid) {
        let Some(idx) = self.index_of(key) else { return };
        let Some(track) = self.participants[idx].tracks_in.remove(&mid) else { return };
        if self.latest_screen == Some((key, mid)) {
            self.latest_screen = None;
        }
        self.allocation_dirty = true;
        if self.participants[idx].active {
            self.broadcast_active(ParticipantEvent::TrackUnpublished { track_id: track.track_id }, None);
        }
    }

    /// Whether a publisher's track of this kind may be forwarded now.
    fn may_forward(&self, idx: usize, kind: MediaKind, source: TrackSource) -> bool {
        let participant = &self.participants[idx];
        let Some(member) = self.session.member(&participant.id) else { return false };
        if member.status != MemberStatus::Active {
            return false;
        }
        match source {
            TrackSource::Microphone => !member.audio.muted,
            TrackSource::Camera => !member.video.muted,
            // Screen sharing stays on when the camera is turned off.
            TrackSource::ScreenShare => kind == MediaKind::Video,
        }
    }

    pub(super) fn refresh_forwarding(&mut self, key: PeerKey) {
        let Some(idx) = self.index_of(key) else { return };
        let mids: Vec<(Mid, MediaKind, TrackSource)> = self.participants[idx]
            .tracks_in
            .iter()
            .map(|(mid, t)| (*mid, t.buffer.kind, t.buffer.source))
            .collect();
        for (mid, kind, source) in mids {
            let forwarding = self.may_forward(idx, kind, source);
            let Some(track) = self.participants[idx].tracks_in.get_mut(&mid) else { continue };
            track.buffer.set_forwarding(forwarding);
            for layer in 0..track.layers.len() {
                self.poll_keyframe_request((key, mid, layer), self.last_now);
            }
        }
    }

    pub(super) fn request_keyframe(&mut self, (publisher, mid, layer): LayerKey, now: Instant) {
        if let Some(track) = self.published_mut(publisher, mid) {
            track.buffer.request_keyframe(layer);
        }
        self.poll_keyframe_request((publisher, mid, layer), now);
    }

    /// Sends the keyframe requests whose throttle allows them now.
    pub(super) fn poll_keyframe_requests(&mut self, now: Instant) {
        let due: Vec<LayerKey> = self
            .participants
            .iter()
            .flat_map(|p| {
                p.tracks_in.iter().flat_map(move |(mid, t)| {
                    t.buffer.due_keyframe_requests(now).map(move |layer| (p.key, *mid, layer))
                })
            })
            .collect();
        for layer in due {
            self.poll_keyframe_request(layer, now);
        }
    }

    fn poll_keyframe_request(&mut self, (publisher, mid, layer): LayerKey, now: Instant) {
        let Some(idx) = self.index_of(publisher) else { return };
        let participant = &mut self.participants[idx];
        let Some(track) = participant.tracks_in.get_mut(&mid) else { return };
        if !track.buffer.poll_keyframe_request(layer, now) {
            return;
        }
        let rid = track.layers.get(layer).and_then(|l| l.rid);
        let mut direct = participant.rtc.direct_api();
        let Some(stream) = direct.stream_rx_by_mid(mid, rid) else {
            // No RTP from this layer yet: nothing to request a keyframe of.
            return;
        };
        stream.request_keyframe(KeyframeRequestKind::Pli);
        self.stats.keyframe_requests_sent += 1;
        self.drain_participant(publisher);
    }

    fn forward_packet(&mut self, publisher: PeerKey, packet: RtpPacket, now: Instant) {
        let Some(idx) = self.index_of(publisher) else { return };
        let participant = &mut self.participants[idx];
        let Some((mid, rid)) = participant.mid_of(packet.header.ssrc) else { return };
        let pt = packet.header.payload_type;
        let params = participant.params_of(pt);
        let Some(track) = participant.tracks_in.get_mut(&mid) else { return };
        let kind = track.buffer.kind;
        let payload_len = packet.payload.len() as u64;
        let layer = track.layer_index(rid);
        let layer_key = (publisher, mid, layer);
        track.layers[layer].last_packet = Some(now);
        // With the RTP header: what the layer costs a receiver's downlink.
        track.layers[layer].bytes += payload_len + 12;
        // A publisher's first packet, or a new SSRC: the slots showing it name it anew.
        let ssrc = *packet.header.ssrc;
        let ssrc_changed = track.layers[layer].ssrc.replace(ssrc) != Some(ssrc);
        if kind == MediaKind::Audio && track.buffer.is_forwarding() {
            let ext = &packet.header.ext_vals;
            if self.speakers.heard(publisher, ext.audio_level, ext.voice_activity, now) {
                self.next_allocation_at = self.next_allocation_at.min(now + SPEECH_ONSET_RANKING);
            }
        }
        let incoming = counters(&mut self.stats, kind);
        incoming.packets_in += 1;
        incoming.bytes_in += payload_len;
        if !track.buffer.is_forwarding() {
            incoming.packets_dropped += track.layers[layer].subscribers.len() as u64;
            return;
        }
        let Some((params, is_red)) = params else { return };
        if kind == MediaKind::Video && track.buffer.codec.is_none() {
            track.buffer.codec = match params.spec().codec {
                Codec::Vp8 => Some(VideoCodec::Vp8),
                Codec::Vp9 => Some(VideoCodec::Vp9),
                Codec::H264 => Some(VideoCodec::H264),
                Codec::Av1 => Some(VideoCodec::Av1),
                _ => None,
            };
        }
        let keyframe_start =
            track.buffer.codec.is_some_and(|codec| is_keyframe_start(codec, &packet.payload));
        let view = PacketView {
            seq_no: *packet.seq_no,
            timestamp: packet.header.timestamp,
            ssrc: *packet.header.ssrc,
            marker: packet.header.marker,
            keyframe_start,
            arrival: packet.timestamp,
        };
        let generation = track.buffer.generation();
        // Taken out for the walk (the receivers are borrowed mutably) and put back after.
        let subscribers = std::mem::take(&mut track.layers[layer].subscribers);
        let clock_rate = params.spec().clock_rate.get();
        let mut ext_vals = ExtensionValues::default();
        ext_vals.audio_level = packet.header.ext_vals.audio_level;
        ext_vals.voice_activity = packet.header.ext_vals.voice_activity;
        ext_vals.video_orientation = packet.header.ext_vals.video_orientation;
        let csrc = [*packet.header.ssrc];
        // One copy of the payload (str0m's `Arc`), shared by every receiver's send queue.
        let payload = packet.payload;

        #[cfg(debug_assertions)]
        let tap_out_before = counters(&mut self.stats, kind).packets_out;
        let mut wants_keyframe = false;
        let mut switched = Vec::new();
        for &(receiver, slot_idx) in &subscribers {
            let Some(rx_idx) = self.index_of(receiver) else { continue };
            let rx = &mut self.participants[rx_idx];
            if !rx.active || !rx.connected {
                continue;
            }
            let Some(slot) = rx.slots.get_mut(slot_idx) else { continue };
            slot.forwarder.set_clock_rate(clock_rate);
            let (seq_no, timestamp) = match slot.forwarder.forward(layer_key, &view, generation) {
                SlotDecision::Forward { seq_no, timestamp, switched: true } => {
                    switched.push((receiver, slot_idx));
                    (seq_no, timestamp)
                }
                SlotDecision::Forward { seq_no, timestamp, switched: false } => (seq_no, timestamp),
                SlotDecision::Drop(reason) => {
                    wants_keyframe |= reason == DropReason::WaitingForKeyframe;
                    counters(&mut self.stats, kind).packets_dropped += 1;
                    continue;
                }
                SlotDecision::NotHere => continue,
            };
            let pt_out = match slot.pt_map.iter().find(|(p, pt_in, _)| *p == publisher && *pt_in == pt) {
                Some((_, _, pt_out)) => *pt_out,
                None => {
                    // RED goes out as RED to a receiver that has it, as its primary (plain Opus)
                    // to one that does not.
                    let matched = rx.rtc.codec_config().match_params(params);
                    let pt_out = matched.map(|p| match (is_red, p.red()) {
                        (true, Some(red)) => (red, false),
                        (true, None) => (p.pt(), true),
                        (false, _) => (p.pt(), false),
                    });
                    slot.pt_map.push((publisher, pt, pt_out));
                    pt_out
                }
            };
            let Some((pt_out, unwrap_red)) = pt_out else {
                debug!(%receiver, "receiver lacks the publisher's codec");
                continue;
            };
            let out_payload = if unwrap_red {
                // Only the RED header is read, never the Opus frames it carries.
                let Some(primary) = crate::forward::red::primary(&payload) else { continue };
                std::sync::Arc::<[u8]>::from(primary)
            } else {
                payload.clone()
            };
            let out_mid = slot.mid;
            slot.forwarder.packets_out += 1;
            let cached = slot.tx_ssrc;
            let mut direct = rx.rtc.direct_api();
            let stream = match cached {
                Some(ssrc) => direct.stream_tx(&ssrc),
                None => None,
            };
            let stream = match stream {
                Some(stream) => stream,
                None => {
                    let Some(stream) = direct.stream_tx_by_mid(out_mid, None) else { continue };
                    slot.tx_ssrc = Some(stream.ssrc());
                    stream
                }
            };
            let write = RtpWrite::new(pt_out, seq_no.into(), timestamp, packet.timestamp, out_payload)
                .marker(packet.header.marker)
                .ext_vals(ext_vals.clone())
                .csrc(&csrc)
                // Video is resent from str0m's cache on NACK; audio is not worth it.
                .nackable(kind == MediaKind::Video);
            stream.write_rtp(write);
            let outgoing = counters(&mut self.stats, kind);
            outgoing.packets_out += 1;
            outgoing.bytes_out += payload_len;
            // Drained once for everything written to it in this wake-up, not once per packet.
            if !rx.dirty {
                rx.dirty = true;
                self.dirty.push(receiver);
            }
        }
        if let Some(track) = self.published_mut(publisher, mid) {
            // Nothing touches the list during the walk but `switched`, handled below.
            track.layers[layer].subscribers = subscribers;
        }
        // Test-only (debug builds, KLASS_SFU_TEST_TAP): a copy of what was forwarded, to files.
        #[cfg(debug_assertions)]
        {
            let receivers = counters(&mut self.stats, kind).packets_out - tap_out_before;
            if let Some(track) = self.published(publisher, mid).filter(|_| receivers > 0) {
                crate::forward::tap::record(crate::forward::tap::Forwarded {
                    room: self.room_id.as_str(),
                    participant: self.participants[idx].id.as_str(),
                    track: track.track_id.as_str(),
                    kind,
                    rid,
                    ssrc: *packet.header.ssrc,
                    pt: *pt,
                    seq: *packet.seq_no,
                    ts: packet.header.timestamp,
                    marker: packet.header.marker,
                    red: is_red,
                    receivers,
                    arrival: packet.timestamp,
                    payload: &payload,
                });
            }
        }
        for (receiver, slot_idx) in switched {
            self.slot_switched(receiver, slot_idx);
        }
        if ssrc_changed {
            let receivers: Vec<PeerKey> = self
                .published(publisher, mid)
                .map(|track| track.layers[layer].subscribers.iter().map(|(rx, _)| *rx).collect())
                .unwrap_or_default();
            for receiver in receivers {
                self.announce_slots(receiver, false);
            }
        }
        if wants_keyframe {
            self.request_keyframe(layer_key, now);
        }
    }
}

fn counters(stats: &mut crate::proto::RoomStats, kind: MediaKind) -> &mut MediaCounters {
    match kind {
        MediaKind::Audio => &mut stats.audio,
        MediaKind::Video => &mut stats.video,
    }
}
