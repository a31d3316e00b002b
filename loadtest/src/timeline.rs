//! What each simulated participant records while it runs, for [`crate::report`] to read once
//! the call is over. Times are milliseconds since the run's epoch, shared by every participant
//! (they all run in this process, on one clock).

use std::time::Instant;

use models::visio::SlotKind;

pub use crate::refusal::Refusal;

/// Milliseconds since the run's epoch.
pub type Ms = u32;

pub fn ms_since(epoch: Instant, at: Instant) -> Ms {
    at.saturating_duration_since(epoch).as_millis() as Ms
}

/// What a participant sent: the send time of each packet, indexed by the counter the packet
/// carries, for each kind.
#[derive(Debug, Default, Clone)]
pub struct SendLog {
    pub audio: Vec<Ms>,
    pub video: Vec<Ms>,
    /// When each keyframe's first packet went out.
    pub keyframes: Vec<Ms>,
    /// When each talkspurt's first packet went out.
    pub talkspurts: Vec<Ms>,
}

/// A `slots` message changed what one slot shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotChange {
    pub at: Ms,
    pub slot_idx: usize,
    pub participant_id: Option<String>,
    pub csrc: Option<u32>,
}

/// One RTP packet received on a slot. Kept in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub slot_idx: u16,
    /// The publisher's SSRC as the SFU wrote it in the packet's CSRC list (0: none).
    pub csrc: u32,
    /// The publisher's counter at the end of the payload.
    pub counter: u32,
}

/// Everything one participant recorded.
#[derive(Debug, Default)]
pub struct ClientReport {
    pub participant_id: Option<String>,
    pub audio_ssrc: Option<u32>,
    pub video_ssrc: Option<u32>,
    pub ws_opened: Option<Ms>,
    pub join_sent: Option<Ms>,
    pub joined: Option<Ms>,
    pub admitted: Option<Ms>,
    pub connected: Option<Ms>,
    pub first_media: Option<Ms>,
    /// The kinds of the declared slots, in declaration order (`slot_idx`).
    pub slot_kinds: Vec<SlotKind>,
    pub slot_changes: Vec<SlotChange>,
    /// Each `speakers` message.
    pub speakers: Vec<(Ms, Vec<String>)>,
    pub arrivals: Vec<Arrival>,
    pub sent: SendLog,
    /// When each keyframe request (PLI or FIR) from the SFU arrived.
    pub keyframe_requests: Vec<Ms>,
    /// Received packets on no declared slot, or without a CSRC.
    pub n_unattributed: u64,
    /// Server messages this client did not expect (`offer` from v1, for one).
    pub unexpected: Vec<String>,
    pub e2ee: E2eeLog,
    /// Participants it was told of in its call (`admitted`, `participant_joined`).
    pub peers_seen: Vec<String>,
    /// The server refused the join before answering it (a `429`/`503` upgrade or an `error`).
    pub refused: Option<Refusal>,
    pub error: Option<String>,
}

/// Someone with a public key came into the call (`public_key`) or left it (`None`), as one
/// participant saw it: what its safety code is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterChange {
    pub at: Ms,
    pub participant_id: String,
    pub public_key: Option<String>,
}

/// What one participant's end-to-end encryption did (docs/e2ee.md).
#[derive(Debug, Default)]
pub struct E2eeLog {
    /// It joined with a public key.
    pub enabled: bool,
    pub frames_encrypted: u64,
    /// Frames it sent in clear: without `--no-e2ee`, while someone in the call could not decrypt.
    pub frames_sent_clear: u64,
    /// Received frames (audio packets, reassembled video frames) it decrypted.
    pub frames_decrypted: u64,
    /// Received frames it passed through in clear, the call not being end-to-end encrypted.
    pub frames_received_clear: u64,
    /// When a received frame was dropped for want of its key (not arrived yet, or forgotten).
    pub no_key: Vec<Ms>,
    /// When a received frame was dropped because it did not verify or had no SFrame header.
    pub failed: Vec<Ms>,
    /// Video frames never decrypted because packets of them were lost.
    pub incomplete_frames: u64,
    /// `e2ee_keys` messages it sent, and the sealed keys in them.
    pub key_messages_sent: u64,
    pub keys_sealed: u64,
    /// `e2ee_key` messages that opened, and those that did not.
    pub keys_received: u64,
    pub keys_rejected: u64,
    /// Fresh keys it made after leaves.
    pub rotations: u64,
    pub roster: Vec<RosterChange>,
}
