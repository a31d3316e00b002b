//! Whether each participant is still reachable, and the grace period that keeps their place
//! while they come back.
//!
//! Two links can break: the media (no datagram from the participant for [`LINK_SILENCE`], or
//! str0m's ICE agent gives up) and the signaling WebSocket (the server's connection task says
//! so: [`Room::signal_lost`]). Either makes the participant *reconnecting*: the others are told
//! (`ParticipantEvent::Connection`), their tiles stay, their place, holds and attendance too. A
//! datagram from them again (after the page's ICE restart, perhaps from a new address) or a
//! resumed WebSocket mends that link. Only a link broken for the whole grace period
//! (`RoomConfig::reconnect_grace`) makes them leave, with `LeaveReason::ConnectionLost`.

use std::time::{Duration, Instant};

use crate::proto::{LeaveReason, ParticipantEvent, ParticipantId};

use super::participant::{LayerKey, PeerKey};
use super::session::SessionInput;
use super::Room;

/// Without a datagram from a connected participant for this long, its media link counts as
/// lost. Browsers send RTCP every second while media flows and an ICE consent check every
/// 4 to 6 s when nothing else goes: seven seconds never flaps on a live but idle peer.
pub const LINK_SILENCE: Duration = Duration::from_secs(7);

/// How often the room looks for silent links.
pub const LINK_CHECK_INTERVAL: Duration = Duration::from_millis(500);

impl Room {
    /// The participant's signaling WebSocket broke: they are reconnecting until
    /// [`Room::signal_restored`], or leave once the grace period has passed.
    pub fn signal_lost(&mut self, now: Instant, participant_id: &ParticipantId) {
        self.last_now = now.max(self.last_now);
        let Some(idx) = self.index_of_id(participant_id) else { return };
        let was = self.participants[idx].reconnecting();
        self.participants[idx].signal_lost_at.get_or_insert(now);
        self.link_changed(idx, was);
        self.process(now);
    }

    /// A new WebSocket resumed the participant's session.
    pub fn signal_restored(&mut self, now: Instant, participant_id: &ParticipantId) {
        self.last_now = now.max(self.last_now);
        let Some(idx) = self.index_of_id(participant_id) else { return };
        let was = self.participants[idx].reconnecting();
        self.participants[idx].signal_lost_at = None;
        self.link_changed(idx, was);
        self.process(now);
    }

    /// Our ICE username fragment for the participant: it changes when their offer restarts ICE,
    /// and the shell routes STUN by it.
    pub fn ice_ufrag(&mut self, participant_id: &ParticipantId) -> Option<String> {
        let idx = self.index_of_id(participant_id)?;
        Some(self.participants[idx].rtc.direct_api().local_ice_credentials().ufrag)
    }

    /// str0m's ICE agent saw no check for its own timeout: the media link is lost (if silence
    /// had not said so already).
    pub(super) fn media_lost(&mut self, key: PeerKey, now: Instant) {
        let Some(idx) = self.index_of(key) else { return };
        let was = self.participants[idx].reconnecting();
        self.participants[idx].media_lost_at.get_or_insert(now);
        self.link_changed(idx, was);
    }

    /// A datagram came from participant `idx`: called for every one, so it only stores the time
    /// unless the link was lost.
    pub(super) fn heard_from(&mut self, idx: usize, now: Instant) {
        let participant = &mut self.participants[idx];
        participant.last_heard = now;
        if participant.media_lost_at.is_some() {
            let was = participant.reconnecting();
            participant.media_lost_at = None;
            self.link_changed(idx, was);
            self.restart_video(idx, now);
        }
    }

    /// A media link is back: every video it carries restarts from a keyframe at once, rather
    /// than when a decoder on either side gives up waiting for what was lost. The publishers of
    /// what it receives are asked, and so is it, for what others receive from it (each request
    /// goes through the layer's throttle).
    pub(super) fn restart_video(&mut self, idx: usize, now: Instant) {
        let participant = &self.participants[idx];
        let key = participant.key;
        let mut layers: Vec<LayerKey> = participant
            .slots
            .iter()
            .filter(|slot| slot.kind != models::visio::SlotKind::Audio)
            .filter_map(|slot| slot.forwarder.current())
            .collect();
        for (mid, track) in &participant.tracks_in {
            if track.buffer.kind == crate::proto::MediaKind::Video {
                let receiving =
                    track.layers.iter().enumerate().filter(|(_, layer)| !layer.subscribers.is_empty());
                layers.extend(receiving.map(|(layer, _)| (key, *mid, layer)));
            }
        }
        for layer in layers {
            self.request_keyframe(layer, now);
        }
    }

    /// Marks silent links lost and lets those lost for the whole grace period leave.
    pub(super) fn check_links(&mut self, now: Instant) {
        if now < self.next_link_check_at {
            return;
        }
        self.next_link_check_at = now + LINK_CHECK_INTERVAL;
        let mut expired: Vec<ParticipantId> = Vec::new();
        for idx in 0..self.participants.len() {
            let participant = &mut self.participants[idx];
            if participant.connected
                && participant.media_lost_at.is_none()
                && now.saturating_duration_since(participant.last_heard) >= LINK_SILENCE
            {
                let was = participant.reconnecting();
                participant.media_lost_at = Some(participant.last_heard + LINK_SILENCE);
                self.link_changed(idx, was);
            }
            let participant = &self.participants[idx];
            if let Some(since) = participant.lost_since() {
                if now.saturating_duration_since(since) >= self.config.reconnect_grace {
                    expired.push(participant.id.clone());
                }
            }
        }
        for participant_id in expired {
            tracing::info!(%participant_id, "connection lost for the whole grace period");
            let _ = self.session.handle_input(SessionInput::Leave {
                now,
                participant_id,
                reason: LeaveReason::ConnectionLost,
            });
        }
    }

    /// Tells the others when participant `idx` starts or stops reconnecting.
    fn link_changed(&mut self, idx: usize, was_reconnecting: bool) {
        let participant = &self.participants[idx];
        let reconnecting = participant.reconnecting();
        if reconnecting == was_reconnecting || !participant.active {
            return;
        }
        tracing::info!(participant_id = %participant.id, reconnecting, "participant link");
        if reconnecting {
            self.stats.links_lost += 1;
        } else {
            self.stats.links_restored += 1;
        }
        let event = ParticipantEvent::Connection { participant_id: participant.id.clone(), reconnecting };
        let key = participant.key;
        self.broadcast_active(event, Some(key));
    }
}
