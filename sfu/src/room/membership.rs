//! The session's events carried out on the media side: admission (the newcomer learns who is
//! there; nobody else is renegotiated), removal, and what everyone is told.

use std::time::{Duration, Instant};

use str0m::Output;

use crate::proto::{LeaveReason, ParticipantEvent, ParticipantId, ParticipantInfo, SfuEvent, TrackInfo};

use super::participant::PeerKey;
use super::session::SessionEvent;
use super::{Room, RoomOutput};

impl Room {
    pub(super) fn handle_session_event(&mut self, event: SessionEvent, now: Instant) {
        match event {
            SessionEvent::Started => {
                self.started_at = Some(now);
                self.outputs.push_back(RoomOutput::Server(SfuEvent::SessionStarted {
                    room_id: self.room_id.clone(),
                }));
            }
            SessionEvent::Waiting { participant_id } => {
                self.outputs.push_back(RoomOutput::ToParticipant(participant_id, ParticipantEvent::Waiting));
            }
            SessionEvent::Admitted { participant_id } => self.admit(participant_id, now),
            SessionEvent::Removed { participant_id, reason } => self.remove(participant_id, reason, now),
            SessionEvent::TimeWarning { remaining } => {
                self.broadcast_active(ParticipantEvent::TimeWarning { remaining }, None);
            }
            SessionEvent::MuteChanged { participant_id, kind, muted, by_moderator } => {
                if let Some(idx) = self.index_of_id(&participant_id) {
                    let key = self.participants[idx].key;
                    self.refresh_forwarding(key);
                }
                self.allocation_dirty = true;
                self.broadcast_active(
                    ParticipantEvent::MuteChanged { participant_id, kind, muted, by_moderator },
                    None,
                );
            }
            SessionEvent::UnmuteRequested { participant_id, kind } => {
                self.outputs.push_back(RoomOutput::ToParticipant(
                    participant_id,
                    ParticipantEvent::UnmuteRequested { kind },
                ));
            }
            SessionEvent::LockChanged { locked } => {
                self.broadcast_active(ParticipantEvent::LockChanged { locked }, None);
            }
            SessionEvent::RoleChanged { participant_id, role } => {
                self.allocation_dirty = true;
                self.broadcast_active(ParticipantEvent::RoleChanged { participant_id, role }, None);
            }
            SessionEvent::HandsChanged { raised } => {
                self.broadcast_active(ParticipantEvent::Hands(raised), None);
            }
            SessionEvent::FloorGiven { participant_id } => {
                self.broadcast_active(ParticipantEvent::FloorGiven { participant_id }, None);
            }
            SessionEvent::Closed { reason } => {
                let duration = self.session_duration(now);
                self.closed = true;
                self.outputs.push_back(RoomOutput::Server(SfuEvent::SessionClosed {
                    room_id: self.room_id.clone(),
                    reason,
                    duration,
                    e2ee: self.session_e2ee,
                }));
            }
        }
    }

    fn session_duration(&self, now: Instant) -> Duration {
        self.started_at.map(|at| now.saturating_duration_since(at)).unwrap_or_default()
    }

    fn participant_info(&self, participant_id: &ParticipantId) -> Option<ParticipantInfo> {
        let member = self.session.member(participant_id)?;
        let participant = self.index_of_id(participant_id).map(|idx| &self.participants[idx]);
        Some(ParticipantInfo {
            participant_id: participant_id.clone(),
            display_name: member.display_name.clone(),
            role: member.role,
            audio_muted: member.audio.muted,
            video_off: member.video.muted,
            reconnecting: participant.is_some_and(|p| p.reconnecting()),
            e2ee_public_key: participant.and_then(|p| p.e2ee_public_key.clone()),
        })
    }

    /// In the session: the newcomer learns who is there and what they publish, the others
    /// learn of the newcomer, and the next allocation fills slots. No SDP for anyone.
    fn admit(&mut self, participant_id: ParticipantId, now: Instant) {
        let Some(idx) = self.index_of_id(&participant_id) else { return };
        let key = self.participants[idx].key;
        self.participants[idx].active = true;
        let e2ee = self.participants[idx].e2ee_public_key.is_some();
        // One participant who cannot encrypt makes the whole session not end-to-end encrypted,
        // even after it leaves: the others sent in clear for it meanwhile (docs/e2ee.md).
        self.session_e2ee &= e2ee;
        self.refresh_forwarding(key);

        let mut participants = Vec::new();
        let mut tracks = Vec::new();
        for other in self.participants.iter().filter(|p| p.active && p.key != key) {
            participants.extend(self.participant_info(&other.id));
            tracks.extend(other.tracks_in.values().map(|track| TrackInfo {
                track_id: track.track_id.clone(),
                publisher: other.id.clone(),
                kind: track.buffer.kind,
                source: track.buffer.source,
            }));
        }
        let remaining = self.session.remaining(now);
        self.outputs.push_back(RoomOutput::ToParticipant(
            participant_id.clone(),
            ParticipantEvent::Admitted { participants, tracks, remaining },
        ));
        if let Some(info) = self.participant_info(&participant_id) {
            self.broadcast_active(ParticipantEvent::ParticipantJoined(info), Some(key));
        }
        if let Some(member) = self.session.member(&participant_id) {
            self.outputs.push_back(RoomOutput::Server(SfuEvent::ParticipantJoined {
                room_id: self.room_id.clone(),
                participant_id: participant_id.clone(),
                user_id: member.user_id.clone(),
                role: member.role,
                e2ee,
            }));
        }
        let own: Vec<TrackInfo> = self.participants[idx]
            .tracks_in
            .values()
            .map(|t| TrackInfo {
                track_id: t.track_id.clone(),
                publisher: participant_id.clone(),
                kind: t.buffer.kind,
                source: t.buffer.source,
            })
            .collect();
        for info in own {
            self.broadcast_active(ParticipantEvent::TrackPublished(info), Some(key));
        }
        // The newcomer's slots are announced (empty) at once, then filled.
        self.announce_slots(key, true);
        let speakers = self.speaker_ids();
        self.outputs.push_back(RoomOutput::ToParticipant(
            participant_id.clone(),
            ParticipantEvent::Speakers(speakers),
        ));
        let raised = self.session.raised_hands();
        if !raised.is_empty() {
            let hands = ParticipantEvent::Hands(raised.to_vec());
            self.outputs.push_back(RoomOutput::ToParticipant(participant_id, hands));
        }
        self.allocation_dirty = true;
    }

    pub(super) fn remove(&mut self, participant_id: ParticipantId, reason: LeaveReason, now: Instant) {
        let Some(idx) = self.index_of_id(&participant_id) else { return };
        let key = self.participants[idx].key;
        // Its slots stop listening to others' tracks.
        for slot_idx in 0..self.participants[idx].slots.len() {
            self.set_listening(key, slot_idx, Vec::new());
        }
        let mut participant = self.participants.remove(idx);
        self.index = self.participants.iter().enumerate().map(|(i, p)| (p.key, i)).collect();
        self.by_address.retain(|_, k| *k != key);
        self.speakers.forget(key);
        let was_active = participant.active;
        // Close politely (DTLS close_notify, RTCP BYE) so the browser notices at once.
        let _ = participant.rtc.close();
        while let Ok(output) = participant.rtc.poll_output() {
            match output {
                Output::Transmit(transmit) => self.outputs.push_back(RoomOutput::Transmit(transmit)),
                Output::Timeout(_) => break,
                Output::Event(_) => {}
            }
        }
        self.rtc_events.retain(|(k, _)| *k != key);
        self.outputs
            .push_back(RoomOutput::ToParticipant(participant_id.clone(), ParticipantEvent::Left { reason }));
        for other in &mut self.participants {
            if other.pin == Some(key) {
                other.pin = None;
            }
        }
        if was_active {
            for track in participant.tracks_in.values() {
                self.broadcast_active(
                    ParticipantEvent::TrackUnpublished { track_id: track.track_id.clone() },
                    None,
                );
            }
            self.broadcast_active(
                ParticipantEvent::ParticipantLeft { participant_id: participant_id.clone() },
                None,
            );
        }
        // Slots that showed it are refilled by the next allocation, before any other output.
        self.allocation_dirty = true;
        self.outputs.push_back(RoomOutput::Server(SfuEvent::ParticipantLeft {
            room_id: self.room_id.clone(),
            participant_id,
            user_id: participant.user_id,
            reason,
        }));
        let _ = now;
    }

    pub(super) fn broadcast_active(&mut self, event: ParticipantEvent, except: Option<PeerKey>) {
        for participant in &self.participants {
            if participant.active && Some(participant.key) != except {
                self.outputs.push_back(RoomOutput::ToParticipant(participant.id.clone(), event.clone()));
            }
        }
    }
}
