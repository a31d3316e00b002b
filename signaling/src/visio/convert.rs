//! The SFU's types to the wire's (`models::visio`), and back.

use models::visio::{Kind, LeftReason, Participant, ServerMessage, SlotState, Source, Track};
use sfu::{
    CloseReason, LeaveReason, MediaKind, ParticipantEvent, ParticipantInfo, TrackDeclaration, TrackInfo,
    TrackSource,
};

pub(super) fn track_declaration(track: models::visio::TrackDeclaration) -> TrackDeclaration {
    let source = match track.source {
        Source::Microphone => TrackSource::Microphone,
        Source::Camera => TrackSource::Camera,
        Source::ScreenShare => TrackSource::ScreenShare,
    };
    TrackDeclaration { mid: track.mid, source, layers: track.layers }
}

pub(super) fn media_kind(kind: Kind) -> MediaKind {
    match kind {
        Kind::Audio => MediaKind::Audio,
        Kind::Video => MediaKind::Video,
    }
}

fn kind(kind: MediaKind) -> Kind {
    match kind {
        MediaKind::Audio => Kind::Audio,
        MediaKind::Video => Kind::Video,
    }
}

fn participant(info: ParticipantInfo) -> Participant {
    Participant {
        participant_id: info.participant_id.to_string(),
        display_name: info.display_name,
        role: info.role,
        audio_muted: info.audio_muted,
        video_off: info.video_off,
        reconnecting: info.reconnecting,
        e2ee_public_key: info.e2ee_public_key,
    }
}

fn source(source: TrackSource) -> Source {
    match source {
        TrackSource::Microphone => Source::Microphone,
        TrackSource::Camera => Source::Camera,
        TrackSource::ScreenShare => Source::ScreenShare,
    }
}

fn track(info: TrackInfo) -> Track {
    Track {
        track_id: info.track_id.to_string(),
        participant_id: info.publisher.to_string(),
        kind: kind(info.kind),
        source: source(info.source),
    }
}

fn left_reason(reason: LeaveReason) -> LeftReason {
    match reason {
        LeaveReason::Left => LeftReason::Left,
        LeaveReason::RemovedByModerator => LeftReason::RemovedByModerator,
        LeaveReason::RemovedFromClass => LeftReason::RemovedFromClass,
        LeaveReason::DuplicateIdentity => LeftReason::DuplicateIdentity,
        LeaveReason::RoomFull => LeftReason::RoomFull,
        LeaveReason::ConnectionLost | LeaveReason::TooSlow => LeftReason::ConnectionLost,
        LeaveReason::SessionClosed(CloseReason::MaxDuration) => LeftReason::SessionMaxDuration,
        LeaveReason::SessionClosed(CloseReason::EndedByModerator) => LeftReason::SessionEndedByModerator,
        LeaveReason::SessionClosed(CloseReason::Empty) => LeftReason::SessionEmpty,
        LeaveReason::SessionClosed(CloseReason::ServerShutdown) => LeftReason::ServerShutdown,
        LeaveReason::SessionClosed(CloseReason::ClassDeleted) => LeftReason::RemovedFromClass,
    }
}

/// What the client is sent for an SFU event; `None` for the events that are the server's own.
pub(super) fn server_message(event: ParticipantEvent) -> Option<ServerMessage> {
    Some(match event {
        ParticipantEvent::MediaConnected => return None,
        ParticipantEvent::Waiting => ServerMessage::Waiting {
            message: "The teacher has not started the call yet. You will join as soon as it starts.".into(),
        },
        ParticipantEvent::Admitted { participants, tracks, remaining } => ServerMessage::Admitted {
            participants: participants.into_iter().map(participant).collect(),
            tracks: tracks.into_iter().map(track).collect(),
            remaining_seconds: remaining.map(|d| d.as_secs()),
        },
        ParticipantEvent::Slots(slots) => ServerMessage::Slots {
            slots: slots
                .into_iter()
                .map(|slot| SlotState {
                    mid: slot.mid,
                    kind: slot.kind,
                    participant_id: slot.publisher.map(|id| id.to_string()),
                    source: slot.source.map(source),
                    csrc: slot.csrc,
                    quality: slot.quality,
                })
                .collect(),
        },
        ParticipantEvent::Speakers(ids) => {
            ServerMessage::Speakers { participant_ids: ids.into_iter().map(|id| id.to_string()).collect() }
        }
        ParticipantEvent::ParticipantJoined(info) => {
            ServerMessage::ParticipantJoined { participant: participant(info) }
        }
        ParticipantEvent::Connection { participant_id, reconnecting } => {
            ServerMessage::Connection { participant_id: participant_id.to_string(), reconnecting }
        }
        ParticipantEvent::ParticipantLeft { participant_id } => {
            ServerMessage::ParticipantLeft { participant_id: participant_id.to_string() }
        }
        ParticipantEvent::TrackPublished(info) => ServerMessage::TrackPublished { track: track(info) },
        ParticipantEvent::TrackUnpublished { track_id } => {
            ServerMessage::TrackUnpublished { track_id: track_id.to_string() }
        }
        ParticipantEvent::MuteChanged { participant_id, kind: media, muted, by_moderator } => {
            ServerMessage::MuteChanged {
                participant_id: participant_id.to_string(),
                kind: kind(media),
                muted,
                by_moderator,
            }
        }
        ParticipantEvent::UnmuteRequested { kind: media } => {
            ServerMessage::UnmuteRequested { kind: kind(media) }
        }
        ParticipantEvent::LockChanged { locked } => ServerMessage::LockChanged { locked },
        ParticipantEvent::RoleChanged { participant_id, role } => {
            ServerMessage::RoleChanged { participant_id: participant_id.to_string(), role }
        }
        ParticipantEvent::Hands(ids) => {
            ServerMessage::Hands { participant_ids: ids.into_iter().map(|id| id.to_string()).collect() }
        }
        ParticipantEvent::FloorGiven { participant_id } => {
            ServerMessage::FloorGiven { participant_id: participant_id.to_string() }
        }
        ParticipantEvent::TimeWarning { remaining } => {
            ServerMessage::TimeWarning { remaining_seconds: remaining.as_secs() }
        }
        ParticipantEvent::E2eeKey { from, sealed } => {
            ServerMessage::E2eeKey { from: from.to_string(), sealed }
        }
        ParticipantEvent::Left { reason } => ServerMessage::Left { reason: left_reason(reason) },
    })
}
