//! The internal protocol between API replicas and SFU nodes (docs/cluster.md): JSON text
//! frames on one WebSocket per (replica, node) pair, opened by the replica with the cluster's
//! shared secret as a bearer token. Requests carry an id their reply repeats; participants'
//! events are pushed, tagged with the participant (ids are unique per node).

use models::{ErrorCode, Role, UserId};
use serde::{Deserialize, Serialize};
use sfu::{
    CloseReason, Command, JoinRequest, ParticipantEvent, ParticipantId, RoomId, SfuError, TrackDeclaration,
};

/// The path of the node's internal WebSocket.
pub const NODE_PATH: &str = "/internal/v1/node";

/// How a resume token is known to nodes: its SHA-256, hex. The token itself stays with the
/// page and the replica that carries the session.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Largest frame either side accepts: a join's offer with 48 m-lines is far below.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Replica to node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToNode {
    Join {
        id: u64,
        request: JoinRequest,
    },
    Offer {
        id: u64,
        room_id: RoomId,
        participant_id: ParticipantId,
        sdp: String,
        tracks: Vec<TrackDeclaration>,
    },
    Candidate {
        id: u64,
        room_id: RoomId,
        participant_id: ParticipantId,
        candidate: String,
    },
    Command {
        id: u64,
        room_id: RoomId,
        from: ParticipantId,
        command: Command,
    },
    Leave {
        room_id: RoomId,
        participant_id: ParticipantId,
    },
    Signal {
        room_id: RoomId,
        participant_id: ParticipantId,
        lost: bool,
    },
    MemberRemoved {
        room_id: RoomId,
        user_id: UserId,
    },
    RoleChanged {
        room_id: RoomId,
        user_id: UserId,
        role: Role,
    },
    CloseRoom {
        room_id: RoomId,
        reason: CloseReason,
    },
    /// The participant's session may be resumed, through any replica, with the token whose
    /// SHA-256 (hex) this is.
    Resumable {
        room_id: RoomId,
        participant_id: ParticipantId,
        token_hash: String,
    },
    /// A page resumes, through this replica, the session whose token hashes to `token_hash`: its
    /// events come here from now on (those missed meanwhile first). Replied `adopted`.
    Adopt {
        id: u64,
        room_id: RoomId,
        user_id: UserId,
        token_hash: String,
    },
}

/// Node to replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromNode {
    Reply {
        id: u64,
        result: Result<Reply, WireError>,
    },
    Event {
        participant_id: ParticipantId,
        event: ParticipantEvent,
    },
    /// Another replica resumed this participant's session: this one lets it go, quietly.
    Moved {
        participant_id: ParticipantId,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    Joined { participant_id: ParticipantId, answer_sdp: String },
    Answer { sdp: String },
    Adopted { participant_id: ParticipantId },
    Done,
}

/// A refusal from the node: the `SfuError`'s code and message, or a reason to try another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_participants: Option<u32>,
    /// The node takes no new room (draining), or another node holds the room's placement: the
    /// replica places the room again and retries there.
    #[serde(default)]
    pub retry_elsewhere: bool,
}

impl WireError {
    pub fn resume_failed() -> WireError {
        WireError {
            code: ErrorCode::ResumeFailed,
            message: "no such session".into(),
            max_participants: None,
            retry_elsewhere: false,
        }
    }

    pub fn elsewhere(message: &str) -> WireError {
        WireError {
            code: ErrorCode::Unavailable,
            message: message.into(),
            max_participants: None,
            retry_elsewhere: true,
        }
    }
}

impl From<&SfuError> for WireError {
    fn from(err: &SfuError) -> WireError {
        let max_participants = match err {
            SfuError::RoomFull { max_participants } => Some(*max_participants),
            _ => None,
        };
        let message = match err {
            SfuError::InvalidSdp(detail) | SfuError::InvalidTrack(detail) | SfuError::Io(detail) => {
                detail.clone()
            }
            SfuError::E2eeKeysRefused(detail) => (*detail).to_owned(),
            other => other.to_string(),
        };
        WireError { code: err.code(), message, max_participants, retry_elsewhere: false }
    }
}

impl From<WireError> for SfuError {
    /// The replica's copy of the node's error: same code, same message where the variant
    /// carries one.
    fn from(err: WireError) -> SfuError {
        match err.code {
            ErrorCode::TierForbidsVisio => SfuError::TierForbidsVisio,
            ErrorCode::RoomFull => SfuError::RoomFull { max_participants: err.max_participants.unwrap_or(0) },
            ErrorCode::SessionLocked => SfuError::SessionLocked,
            ErrorCode::ForbiddenRole => SfuError::ForbiddenRole,
            ErrorCode::MutedByModerator => SfuError::MutedByModerator,
            ErrorCode::RemovedFromSession => SfuError::RemovedFromSession,
            ErrorCode::InvalidRequest => SfuError::InvalidTrack(err.message),
            ErrorCode::NotFound => SfuError::RoomNotFound,
            ErrorCode::Unavailable => SfuError::Shutdown,
            ErrorCode::ServerBusy => SfuError::Busy,
            _ => SfuError::Io(err.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_their_code_across_the_wire() {
        for err in [
            SfuError::RoomFull { max_participants: 8 },
            SfuError::SessionLocked,
            SfuError::TierForbidsVisio,
            SfuError::ForbiddenRole,
            SfuError::InvalidSdp("no m-line".into()),
            SfuError::RoomNotFound,
            SfuError::Busy,
        ] {
            let json = serde_json::to_string(&WireError::from(&err)).unwrap();
            let back: WireError = serde_json::from_str(&json).unwrap();
            let back = SfuError::from(back);
            assert_eq!(back.code(), err.code(), "{err:?}");
            if let SfuError::RoomFull { max_participants } = back {
                assert_eq!(max_participants, 8);
            }
        }
    }

    #[test]
    fn events_and_requests_round_trip() {
        let event = FromNode::Event {
            participant_id: ParticipantId::new("p7".to_owned()).unwrap(),
            event: ParticipantEvent::TimeWarning { remaining: std::time::Duration::from_secs(60) },
        };
        let json = serde_json::to_string(&event).unwrap();
        let FromNode::Event { event, .. } = serde_json::from_str(&json).unwrap() else { panic!("{json}") };
        assert_eq!(event, ParticipantEvent::TimeWarning { remaining: std::time::Duration::from_secs(60) });
        let request = ToNode::CloseRoom {
            room_id: RoomId::new("c1".to_owned()).unwrap(),
            reason: CloseReason::ClassDeleted,
        };
        let json = serde_json::to_string(&request).unwrap();
        assert!(matches!(
            serde_json::from_str(&json).unwrap(),
            ToNode::CloseRoom { reason: CloseReason::ClassDeleted, .. }
        ));
    }
}
