//! Types the signaling server exchanges with the SFU.
//!
//! The ids come from `models`; the commands and events are the SFU's in-process API (the browser's
//! wire protocol is `models::visio`, mapped by `signaling`).

use std::time::Duration;

pub use models::visio::SlotKind;
pub use models::{ParticipantId, RoomId, TrackId};
use models::{Role, UserId};

/// Audio or video. Our own copy, so that the public API does not expose str0m's types.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackSource {
    Microphone,
    Camera,
    ScreenShare,
}

/// Why a session ended. One enum for every cause, in the style of LiveKit's close reasons.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The tier's maximum duration was reached.
    MaxDuration,
    /// A teacher or admin ended the session.
    EndedByModerator,
    /// Nobody was left in the room for the configured grace period.
    Empty,
    /// The server is shutting down.
    ServerShutdown,
    /// The class backend deleted the class (or the retention purge did).
    ClassDeleted,
}

/// Why one participant left a room.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Its signaling connection did not keep up with the room's events (a client that stopped
    /// reading its WebSocket): dropped rather than queueing without bound.
    TooSlow,
    /// The session closed.
    SessionClosed(CloseReason),
}

/// Who joins, as the signaling server authenticated them.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ParticipantParams {
    pub user_id: UserId,
    /// Already validated with `models::api::validate_display_name`.
    pub display_name: String,
    pub role: Role,
    /// End-to-end encryption: the page's public key for this call (base64url of a P-256 point,
    /// checked by the signaling server), shown to the others; `None` for a browser that cannot
    /// encrypt. The SFU only relays it and the sealed keys ([`Command::E2eeKeys`]).
    pub e2ee_public_key: Option<String>,
}

/// A track the client announces with an offer: which m-line carries what, and for a simulcast
/// camera the RIDs of its encodings, lowest quality first.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TrackDeclaration {
    pub mid: String,
    pub source: TrackSource,
    pub layers: Vec<String>,
}

/// A receive-only m-line of the client's first offer that the room fills with others' media.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SlotDeclaration {
    pub mid: String,
    pub kind: SlotKind,
}

/// Who one of a participant's slots carries now; `csrc` is the publisher's SSRC, which the slot's
/// packets carry as their CSRC.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub mid: String,
    pub kind: SlotKind,
    pub publisher: Option<ParticipantId>,
    pub source: Option<TrackSource>,
    pub csrc: Option<u32>,
    /// For a video slot with a publisher: its layer, or paused for the receiver's bandwidth.
    pub quality: Option<models::visio::SlotQuality>,
}

/// What a participant may see of another one: display name and role, never contact details.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    pub participant_id: ParticipantId,
    pub display_name: String,
    pub role: Role,
    pub audio_muted: bool,
    pub video_off: bool,
    /// Its connection is lost and the room holds its place for the grace period.
    pub reconnecting: bool,
    /// Its page's public key for end-to-end encryption ([`ParticipantParams::e2ee_public_key`]).
    pub e2ee_public_key: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub track_id: TrackId,
    pub publisher: ParticipantId,
    pub kind: MediaKind,
    pub source: TrackSource,
}

/// A moderation or self-service action, issued by one participant of the room.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
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
    /// Anyone: show this participant on one's own stage (`None`: the default choice).
    Pin { participant: Option<ParticipantId> },
    /// Anyone: turn one's own microphone (`Audio`) or camera (`Video`) off or on.
    SetMuted { kind: MediaKind, muted: bool },
    /// Admitted participants: raise one's hand; it joins the end of the queue
    /// (`room::hands`). Raising a raised hand changes nothing.
    RaiseHand,
    /// Lower a raised hand: one's own (`None` or oneself), or, for moderators, anyone's.
    LowerHand { participant: Option<ParticipantId> },
    /// Moderators: give the floor to a participant: their hand is lowered and a moderator's
    /// hold on their microphone is lifted, so that they may speak.
    GiveFloor { participant: ParticipantId },
    /// Participants that joined with an end-to-end encryption key: relay media keys, each sealed
    /// for one other participant, to that participant only (`ParticipantEvent::E2eeKey`). The room
    /// carries this out itself (`room::e2ee`); the session's rules do not apply.
    E2eeKeys { keys: Vec<SealedKey> },
}

/// A media key that one participant sealed for another (`to`): opaque bytes to the SFU, relayed
/// to `to` only. Its form (base64url, length) is checked by the signaling server.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    pub to: ParticipantId,
    pub sealed: String,
}

/// What the signaling server sends to one participant's client.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub enum ParticipantEvent {
    /// The session has not started: the participant waits until a teacher or admin starts it.
    Waiting,
    /// ICE and DTLS are up for the first time: the join is done. Not for the client: the
    /// signaling server counts a join among those in progress (its admission) until then.
    MediaConnected,
    /// The participant is in the session. `remaining` is `None` without a time limit.
    Admitted {
        participants: Vec<ParticipantInfo>,
        tracks: Vec<TrackInfo>,
        remaining: Option<Duration>,
    },
    /// Who is in each of this participant's slots, whole, whenever one changes.
    Slots(Vec<SlotInfo>),
    /// The current speakers, loudest first.
    Speakers(Vec<ParticipantId>),
    ParticipantJoined(ParticipantInfo),
    ParticipantLeft {
        participant_id: ParticipantId,
    },
    /// A participant's link is lost and the room holds their place (`reconnecting`), or it is
    /// back.
    Connection {
        participant_id: ParticipantId,
        reconnecting: bool,
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
    /// The class backend changed a participant's role: moderation rights follow at once.
    RoleChanged {
        participant_id: ParticipantId,
        role: models::Role,
    },
    /// The raised hands, in the order they were raised; sent whole whenever it changes.
    Hands(Vec<ParticipantId>),
    /// A moderator gave the floor to this participant (sent to everyone).
    FloorGiven {
        participant_id: ParticipantId,
    },
    /// The session ends in `remaining`.
    TimeWarning {
        remaining: Duration,
    },
    /// A media key that participant `from` sealed for this participant ([`Command::E2eeKeys`]).
    /// Never coalesced or dropped on the way: a receiver that misses one cannot decrypt `from`.
    E2eeKey {
        from: ParticipantId,
        sealed: String,
    },
    /// This participant is out of the room; the event stream ends after it.
    Left {
        reason: LeaveReason,
    },
}

/// Counters for one stats interval, as deltas since the previous report of the same room.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaCounters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Packets not forwarded because the publisher is muted, its camera is off, or the
    /// subscriber still waits for a keyframe.
    pub packets_dropped: u64,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Default, PartialEq)]
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
    /// Offers a participant made after its join (its own publishing changed) and we answered.
    /// The server never offers: nobody is renegotiated when someone joins or leaves.
    pub client_offers: u64,
    /// Times a receive slot changed publisher (a video one at the new publisher's keyframe).
    pub slot_switches: u64,
    /// Mean fraction of packets lost reported by receivers in this interval, if any reported.
    pub receiver_loss_fraction: Option<f32>,
    /// Participants whose media or signaling link broke (they became "reconnecting"), and
    /// those whose link came back within the grace period.
    pub links_lost: u64,
    pub links_restored: u64,
    /// Times a video slot was paused because its receiver's downlink had no room for it.
    pub bandwidth_pauses: u64,
    /// The downlink estimate of each participant whose video is limited by one (from the loss
    /// it reports, `room::bandwidth`) at the end of the interval, kbit/s.
    pub downlink_estimates_kbps: Vec<u32>,
    /// Sealed media keys relayed to their recipient, and those skipped because the recipient
    /// was not (or no longer) an admitted participant with a key of its own.
    pub e2ee_keys_relayed: u64,
    pub e2ee_keys_skipped: u64,
    pub n_participants: u32,
}

/// What the SFU tells the signaling server about rooms: webhooks, attendance, metrics.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub enum SfuEvent {
    SessionStarted {
        room_id: RoomId,
    },
    /// `e2ee`: every participant admitted to the session had an end-to-end encryption key.
    SessionClosed {
        room_id: RoomId,
        reason: CloseReason,
        duration: Duration,
        e2ee: bool,
    },
    /// An admission to the session; `e2ee`: the participant joined with an end-to-end key.
    ParticipantJoined {
        room_id: RoomId,
        participant_id: ParticipantId,
        user_id: UserId,
        role: Role,
        e2ee: bool,
    },
    ParticipantLeft {
        room_id: RoomId,
        participant_id: ParticipantId,
        user_id: UserId,
        reason: LeaveReason,
    },
    JoinRefused {
        room_id: RoomId,
        code: models::ErrorCode,
    },
    Stats {
        room_id: RoomId,
        stats: RoomStats,
    },
}
