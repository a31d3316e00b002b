//! The visio signaling protocol between a browser and `signaling`, over one WebSocket per participant.
//! Version [`PROTOCOL_VERSION`]; documented with examples in `docs/protocol.md`.
//!
//! Every message is a JSON object with a `type`. The client speaks first, with [`ClientMessage::Join`]
//! carrying its token and its SDP offer; after that either side may send at any time.

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, Role};

pub const PROTOCOL_VERSION: u32 = 2;

/// Most sealed keys in one [`ClientMessage::E2eeKeys`]: one for each other participant of the
/// largest call, with room to spare.
pub const MAX_E2EE_KEYS_PER_MESSAGE: usize = 256;
/// Longest `sealed` of a [`SealedKey`] and longest `public_key` of [`E2eeHello`] (base64url).
pub const MAX_E2EE_FIELD_CHARS: usize = 256;

/// Largest message a client may send. A browser's answer in a 70-person call has two or three
/// m-sections per participant at 1 to 3 KB each: a few hundred kilobytes.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Audio,
    Video,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Microphone,
    Camera,
    ScreenShare,
}

/// Which m-line of the client's offer carries what. A simulcast camera (or screen share) lists
/// the RIDs of its encodings in `layers`, lowest quality first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackDeclaration {
    pub mid: String,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

/// What a receive slot shows: the loudest speakers (`audio`), a thumbnail camera (`thumbnail`),
/// or the large view (`stage`: a screen share, the pinned participant or the teacher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotKind {
    Audio,
    Thumbnail,
    Stage,
}

/// A receive-only m-line of the client's first offer and what it is for. The server sends other
/// participants' media into these m-lines, switching who flows into each one without
/// renegotiating; [`ServerMessage::Slots`] says who is in which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotDeclaration {
    pub mid: String,
    pub kind: SlotKind,
}

/// How a video slot is sent to this receiver, within its downlink: the publisher's best layer
/// (`high`, also for a publisher without simulcast), a lower one (`low`), or nothing for now
/// (`paused`: the receiver's connection has no room for it; it resumes by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotQuality {
    High,
    Low,
    Paused,
}

/// Who a slot carries now. `participant_id` is `null` while the slot is empty; `csrc` is the
/// publisher's original SSRC, which every packet of the slot carries as its CSRC. `quality` is
/// set for a video slot with a publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    pub mid: String,
    pub kind: SlotKind,
    pub participant_id: Option<String>,
    pub source: Option<Source>,
    pub csrc: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<SlotQuality>,
}

/// End-to-end encryption (docs/e2ee.md): the page's ephemeral ECDH public key for this call,
/// base64url without padding of the uncompressed P-256 point (65 bytes, `0x04 || X || Y`). The
/// server only relays it; the pages derive from it the keys that seal their media keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E2eeHello {
    pub public_key: String,
}

/// A media key sealed by its sender for one other participant (`to`), opaque to the server: it is
/// relayed as [`ServerMessage::E2eeKey`] to that participant only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedKey {
    pub to: String,
    pub sealed: String,
}

/// What a participant sees of another: never an email address or a phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub participant_id: String,
    pub display_name: String,
    pub role: Role,
    pub audio_muted: bool,
    pub video_off: bool,
    /// Their connection is lost and the server holds their place while they come back (see
    /// [`ServerMessage::Connection`]).
    #[serde(default)]
    pub reconnecting: bool,
    /// Their page's public key for end-to-end encryption ([`E2eeHello`]); `null`: their browser
    /// cannot encrypt, and the call is not end-to-end encrypted while they are in it.
    #[serde(default)]
    pub e2ee_public_key: Option<String>,
}

/// A STUN or TURN server for the page's `RTCPeerConnection` (`iceServers`), with the short-lived
/// credentials of the TURN REST API scheme: `username` is `<expiry unix time>:<participant>`,
/// `credential` the base64 HMAC-SHA1 of the username under the secret shared with the TURN server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A published track. Who a client receives in which slot is said by `slots`, not by the msid
/// of our answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    pub track_id: String,
    pub participant_id: String,
    pub kind: Kind,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message: who I am (the class backend's JWT), my offer, what my sending m-lines
    /// carry (`tracks`) and which receive-only m-lines are slots (`slots`).
    Join {
        token: String,
        sdp: String,
        tracks: Vec<TrackDeclaration>,
        #[serde(default)]
        slots: Vec<SlotDeclaration>,
        /// End-to-end encryption: absent or `null` for a browser without encoded transforms,
        /// which the server admits only where the class allows unencrypted calls.
        #[serde(default)]
        e2ee: Option<E2eeHello>,
    },
    /// First message of a new WebSocket after the previous one broke: the same user's token and
    /// the `resume_token` of `joined`. The server answers `resumed` and sends what happened
    /// meanwhile, or `error` `resume_failed` once the participant's grace period has passed.
    Resume {
        token: String,
        resume_token: String,
    },
    /// A keepalive: the server answers `pong`. A page sends one every few seconds and resumes on a
    /// new socket when nothing comes back (WebSocket pings are invisible to scripts).
    Ping,
    /// A new offer from the client when its own publishing changes (e.g. starting a screen
    /// share); the server answers. The slots of the join stay as they are.
    Offer {
        sdp: String,
        tracks: Vec<TrackDeclaration>,
    },
    /// Show this participant on my stage (`null`: back to the default: a screen share, else
    /// the teacher, else the current speaker).
    Pin {
        participant_id: Option<String>,
    },
    /// End-to-end encryption: this participant's media key, sealed for each recipient (at most
    /// [`MAX_E2EE_KEYS_PER_MESSAGE`]). Recipients must be in the session; the server relays each
    /// one as `e2ee_key` and never reads it.
    E2eeKeys {
        keys: Vec<SealedKey>,
    },
    /// A trickled ICE candidate (`candidate:...` line).
    Candidate {
        candidate: String,
    },
    /// My own microphone (`audio`) or camera (`video`) off or on.
    SetMuted {
        kind: Kind,
        muted: bool,
    },
    /// Moderators: stop forwarding the target's audio, until they are asked to unmute.
    Mute {
        target: String,
    },
    MuteAll,
    /// Moderators: ask the target to turn `kind` back on; they decide.
    RequestUnmute {
        target: String,
        kind: Kind,
    },
    /// Moderators: stop forwarding the target's camera.
    DisableCamera {
        target: String,
    },
    Remove {
        target: String,
    },
    /// Raise one's hand: it joins the end of the queue (`hands`). Raising a raised hand changes
    /// nothing. A participant changing their own hand too often gets `error` `rate_limited`.
    RaiseHand,
    /// Lower a raised hand: one's own (`target` absent, `null` or oneself), or, for moderators,
    /// anyone's. Lowering a lowered hand changes nothing.
    LowerHand {
        #[serde(default)]
        target: Option<String>,
    },
    /// Moderators: give the floor to the target: their hand is lowered, a moderator's mute no
    /// longer holds them, and everyone gets `floor_given`.
    GiveFloor {
        target: String,
    },
    Lock {
        locked: bool,
    },
    EndSession,
    Leave,
}

/// Why a participant left, or why the session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    Left,
    RemovedByModerator,
    RemovedFromClass,
    DuplicateIdentity,
    RoomFull,
    ConnectionLost,
    SessionMaxDuration,
    SessionEndedByModerator,
    SessionEmpty,
    ServerShutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The join is accepted at the media level: apply `sdp` as the remote answer. Session state
    /// follows (`waiting` or `admitted`).
    Joined {
        protocol_version: u32,
        participant_id: String,
        role: Role,
        sdp: String,
        /// `null`: no time limit.
        max_duration_seconds: Option<u64>,
        max_participants: u32,
        /// Slots the server fills at most, by kind; declared slots beyond these stay empty.
        max_audio_slots: u32,
        max_thumbnail_slots: u32,
        /// For the page's `RTCPeerConnection`: TURN (and STUN) servers with credentials valid
        /// for the call; empty when the deployment has none.
        #[serde(default)]
        ice_servers: Vec<IceServer>,
        /// Secret of this participant's session: a new WebSocket resumes it with `resume`.
        resume_token: String,
        /// How long the server holds the participant's place after their connection is lost.
        reconnect_grace_seconds: u64,
    },
    /// The answer to `ping`.
    Pong,
    /// A media key another participant (`from`) sealed for this one (`e2ee_keys`).
    E2eeKey {
        from: String,
        sealed: String,
    },
    /// The answer to `resume`: this socket carries the participant's session again. The events
    /// missed meanwhile follow.
    Resumed {
        participant_id: String,
    },
    /// A participant's connection is lost (`reconnecting: true`) and the server holds their
    /// place for the grace period, or it is back (`false`).
    Connection {
        participant_id: String,
        reconnecting: bool,
    },
    /// No session runs yet; a teacher or admin has to start it. Stay connected.
    Waiting {
        message: String,
    },
    /// In the session. `remaining_seconds` is `null` without a time limit.
    Admitted {
        participants: Vec<Participant>,
        tracks: Vec<Track>,
        remaining_seconds: Option<u64>,
    },
    /// Who is in each of this participant's slots; sent whole whenever one changes. A video slot
    /// changes publisher at a keyframe of the new one, and this message goes out then.
    Slots {
        slots: Vec<SlotState>,
    },
    /// The current speakers, loudest first (those the audio slots carry), for a highlight.
    Speakers {
        participant_ids: Vec<String>,
    },
    /// Answer to a client `offer`.
    Answer {
        sdp: String,
    },
    ParticipantJoined {
        participant: Participant,
    },
    ParticipantLeft {
        participant_id: String,
    },
    TrackPublished {
        track: Track,
    },
    TrackUnpublished {
        track_id: String,
    },
    MuteChanged {
        participant_id: String,
        kind: Kind,
        muted: bool,
        by_moderator: bool,
    },
    UnmuteRequested {
        kind: Kind,
    },
    LockChanged {
        locked: bool,
    },
    /// The class backend changed a participant's role; for one's own, moderation controls appear
    /// or go, and the server enforces the new rights at once.
    RoleChanged {
        participant_id: String,
        role: Role,
    },
    /// The raised hands, oldest first; sent whole whenever it changes, and to a newcomer when
    /// some are raised.
    Hands {
        participant_ids: Vec<String>,
    },
    /// A moderator gave the floor to this participant; that participant's page turns its
    /// microphone on.
    FloorGiven {
        participant_id: String,
    },
    /// The session ends in `remaining_seconds` (sent 5 minutes and 1 minute before the end).
    TimeWarning {
        remaining_seconds: u64,
    },
    /// This participant is out; the server closes the socket after it.
    Left {
        reason: LeftReason,
    },
    /// A refusal. After a refused `join` the server closes the socket; otherwise it goes on.
    Error {
        code: ErrorCode,
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_documented_shape() {
        let join: ClientMessage = serde_json::from_str(
            r#"{"type":"join","token":"t","sdp":"v=0","tracks":[{"mid":"0","source":"microphone"}]}"#,
        )
        .unwrap();
        assert_eq!(
            join,
            ClientMessage::Join {
                token: "t".into(),
                sdp: "v=0".into(),
                tracks: vec![TrackDeclaration {
                    mid: "0".into(),
                    source: Source::Microphone,
                    layers: vec![]
                }],
                slots: vec![],
                e2ee: None,
            }
        );
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"mute_all"}"#).unwrap(),
            ClientMessage::MuteAll
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"fly"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"lower_hand"}"#).unwrap(),
            ClientMessage::LowerHand { target: None }
        );
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"give_floor","target":"p2"}"#).unwrap(),
            ClientMessage::GiveFloor { target: "p2".into() }
        );
        let hands = ServerMessage::Hands { participant_ids: vec!["p2".into(), "p1".into()] };
        assert_eq!(
            serde_json::to_string(&hands).unwrap(),
            r#"{"type":"hands","participant_ids":["p2","p1"]}"#
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"mute","target":"p","extra":1}"#).is_err());

        let warning = ServerMessage::TimeWarning { remaining_seconds: 300 };
        assert_eq!(
            serde_json::to_string(&warning).unwrap(),
            r#"{"type":"time_warning","remaining_seconds":300}"#
        );
        let error = ServerMessage::Error { code: ErrorCode::RoomFull, message: "full".into() };
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"type":"error","code":"room_full","message":"full"}"#
        );
    }
}
