//! Types the signaling server exchanges with the SFU.
//!
//! These belong in `models` (typed ids and wire messages shared by every service); they live here
//! until the lead moves them, so that the SFU could be built without editing `models`.

use std::fmt;
use std::time::Duration;

use models::{ClassId, IdError, Role, UserId};

/// Longest id we accept, as in `models::ids`.
const MAX_ID_LEN: usize = 64;

fn validate_id(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                validate_id(&raw)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// One call room. A class has one room; its id is the class id.
    RoomId
);
id_type!(
    /// One participant in one room: one browser tab, one connection. A user who joins twice gets
    /// two ids (and the second join replaces the first).
    ParticipantId
);
id_type!(
    /// One published track: `<participant>-<mid>`. It is the `msid` track id subscribers see.
    TrackId
);

impl From<&ClassId> for RoomId {
    fn from(class_id: &ClassId) -> Self {
        // A ClassId is already validated with the same alphabet and length.
        RoomId(class_id.as_str().to_owned())
    }
}

impl TrackId {
    pub(crate) fn for_track(participant_id: &ParticipantId, mid: &str) -> TrackId {
        // Mids are short tokens chosen by the client; keep the id inside our alphabet whatever
        // they contain, so that it stays safe in logs and in the SDP msid attribute.
        let mid: String = mid.chars().filter(|c| c.is_ascii_alphanumeric()).take(16).collect();
        TrackId(format!("{participant_id}-{mid}"))
    }
}

/// Audio or video. Our own copy, so that the public API does not expose str0m's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

/// What a published track carries, as declared by the client with its offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackSource {
    Microphone,
    Camera,
    ScreenShare,
}

/// Why a session ended. One enum for every cause, in the style of LiveKit's close reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The tier's maximum duration was reached.
    MaxDuration,
    /// A teacher or admin ended the session.
    EndedByModerator,
    /// Nobody was left in the room for the configured grace period.
    Empty,
    /// The server is shutting down.
    ServerShutdown,
}

/// Why one participant left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// The participant (or its signaling connection) left.
    Left,
    /// A moderator removed the participant.
    RemovedByModerator,
    /// The class backend removed the member from the class.
    RemovedFromClass,
    /// The same user joined again from another connection.
    DuplicateIdentity,
    /// The session started while more people waited than the tier allows.
    RoomFull,
    /// The media connection failed or timed out.
    ConnectionLost,
    /// The session closed.
    SessionClosed(CloseReason),
}

/// Who joins, as the signaling server authenticated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantParams {
    pub user_id: UserId,
    /// Already validated with `models::api::validate_display_name`.
    pub display_name: String,
    pub role: Role,
}

/// A track the client announces with an offer: which m-line carries what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackDeclaration {
    pub mid: String,
    pub source: TrackSource,
}

/// What a participant may see of another one: display name and role, never contact details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    pub participant_id: ParticipantId,
    pub display_name: String,
    pub role: Role,
    pub audio_muted: bool,
    pub video_off: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub track_id: TrackId,
    pub publisher: ParticipantId,
    pub kind: MediaKind,
    pub source: TrackSource,
}

/// A moderation or self-service action, issued by one participant of the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Moderators: stop forwarding the target's audio. The target cannot unmute until asked.
    Mute { target: ParticipantId },
    /// Moderators: mute everyone but the issuer.
    MuteAll,
    /// Moderators: allow the target to turn `kind` back on and ask them to; they decide.
    RequestUnmute { target: ParticipantId, kind: MediaKind },
    /// Moderators: stop forwarding the target's camera.
    DisableCamera { target: ParticipantId },
    /// Moderators: disconnect the target.
    Remove { target: ParticipantId },
    /// Moderators: refuse (or accept again) new joins of non-moderators.
    Lock { locked: bool },
    /// Moderators: close the session for everyone.
    EndSession,
    /// Anyone: turn one's own microphone (`Audio`) or camera (`Video`) off or on.
    SetMuted { kind: MediaKind, muted: bool },
}

/// What the signaling server sends to one participant's client.
#[derive(Debug, Clone, PartialEq)]
pub enum ParticipantEvent {
    /// The session has not started: the participant waits until a teacher or admin starts it.
    Waiting,
    /// The participant is in the session. `remaining` is `None` without a time limit.
    Admitted {
        participants: Vec<ParticipantInfo>,
        tracks: Vec<TrackInfo>,
        remaining: Option<Duration>,
    },
    /// A server-initiated offer (new tracks to receive). Answer with `SfuHandle::answer`.
    Offer {
        sdp: String,
    },
    ParticipantJoined(ParticipantInfo),
    ParticipantLeft {
        participant_id: ParticipantId,
    },
    TrackPublished(TrackInfo),
    TrackUnpublished {
        track_id: TrackId,
    },
    MuteChanged {
        participant_id: ParticipantId,
        kind: MediaKind,
        muted: bool,
        by_moderator: bool,
    },
    /// A moderator asks this participant to turn `kind` back on.
    UnmuteRequested {
        kind: MediaKind,
    },
    LockChanged {
        locked: bool,
    },
    /// The session ends in `remaining`.
    TimeWarning {
        remaining: Duration,
    },
    /// This participant is out of the room; the event stream ends after it.
    Left {
        reason: LeaveReason,
    },
}

/// Counters for one stats interval, as deltas since the previous report of the same room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaCounters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Packets not forwarded because the publisher is muted, its camera is off, or the
    /// subscriber still waits for a keyframe.
    pub packets_dropped: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RoomStats {
    pub audio: MediaCounters,
    pub video: MediaCounters,
    /// NACKs received from subscribers (answered from str0m's send cache).
    pub nacks_received: u64,
    /// Keyframe requests (PLI or FIR) received from subscribers.
    pub keyframe_requests_received: u64,
    /// Keyframe requests sent to publishers, after throttling.
    pub keyframe_requests_sent: u64,
    /// Packets str0m resent from its cache (RTX) in answer to NACKs: what it sent minus what we
    /// wrote, over the interval.
    pub retransmissions: u64,
    /// Mean fraction of packets lost reported by receivers in this interval, if any reported.
    pub receiver_loss_fraction: Option<f32>,
    pub n_participants: u32,
}

/// What the SFU tells the signaling server about rooms: webhooks, attendance, metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum SfuEvent {
    SessionStarted { room_id: RoomId },
    SessionClosed { room_id: RoomId, reason: CloseReason, duration: Duration },
    ParticipantJoined { room_id: RoomId, participant_id: ParticipantId, user_id: UserId, role: Role },
    ParticipantLeft { room_id: RoomId, participant_id: ParticipantId, user_id: UserId, reason: LeaveReason },
    JoinRefused { room_id: RoomId, code: models::ErrorCode },
    Stats { room_id: RoomId, stats: RoomStats },
}
