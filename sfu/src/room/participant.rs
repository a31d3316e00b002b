//! One participant's media state: its `Rtc`, the tracks it publishes and its receive slots.

use std::collections::HashMap;
use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::{Mid, Pt, Rid};
use str0m::rtp::Ssrc;
use str0m::Rtc;

use crate::forward::{Buffer, SlotForwarder};
use crate::proto::{MediaKind, ParticipantId, SlotKind, TrackId, TrackSource};

/// A layer of a publisher's track: participant, mid and layer index. What a slot forwards.
pub(crate) type LayerKey = (PeerKey, Mid, usize);

/// What a payload type becomes towards one receiver: its own payload type, and whether RED is
/// unwrapped to its primary (Opus) on the way.
pub(crate) type PtOut = (Pt, bool);

/// A small internal key, cheaper than comparing `ParticipantId` strings per packet.
pub(crate) type PeerKey = u64;

#[derive(Debug)]
pub(crate) struct PublishedTrack {
    pub track_id: TrackId,
    pub buffer: Buffer,
    /// One per simulcast encoding, lowest quality first (the declared ones, then any other the
    /// publisher sends); a single one without simulcast. Index for index with the buffer's.
    pub layers: Vec<Layer>,
}

/// One encoding of a published track.
#[derive(Debug)]
pub(crate) struct Layer {
    pub rid: Option<Rid>,
    /// The receivers' slots that carry this layer or wait to: (receiver, slot index). The only
    /// list a packet walks; a layer nobody receives has none, and its packets stop here.
    pub subscribers: Vec<(PeerKey, usize)>,
    /// The publisher's SSRC of the latest packet: the CSRC of what the slots send.
    pub ssrc: Option<u32>,
    /// When its latest packet came: a layer the publisher stopped sending is not chosen.
    pub last_packet: Option<Instant>,
    /// Bytes received, and their count at the last rate sample (`Room::sample_rates`).
    pub bytes: u64,
    pub sampled_bytes: u64,
    /// Its incoming bitrate, smoothed; 0 until measured.
    pub rate_bps: u64,
}

impl Layer {
    pub fn new(rid: Option<Rid>) -> Layer {
        Layer {
            rid,
            subscribers: Vec::new(),
            ssrc: None,
            last_packet: None,
            bytes: 0,
            sampled_bytes: 0,
            rate_bps: 0,
        }
    }
}

impl PublishedTrack {
    /// The index of the layer with `rid`, added if the publisher sends one it did not declare.
    pub fn layer_index(&mut self, rid: Option<Rid>) -> usize {
        if let Some(index) = self.layers.iter().position(|l| l.rid == rid) {
            return index;
        }
        let index = self.buffer.add_layer();
        self.layers.push(Layer::new(rid));
        index
    }
}

/// One receive slot: an m-line of the participant's first offer that the room fills.
#[derive(Debug)]
pub(crate) struct Slot {
    pub mid: Mid,
    pub kind: SlotKind,
    pub forwarder: SlotForwarder<LayerKey>,
    /// The layers whose `subscribers` list this slot (its current and pending ones).
    pub listening: Vec<LayerKey>,
    /// What the latest `Slots` event told the client this slot carries, with the publisher's
    /// SSRC when it was known.
    pub announced: Option<(LayerKey, Option<u32>)>,
    /// Incoming payload type to outgoing one, and whether RED is unwrapped to its primary on the
    /// way (a receiver without RED); `None` when the receiver lacks the codec.
    pub pt_map: Vec<(PeerKey, Pt, Option<PtOut>)>,
    /// The SSRC we send the slot with (str0m finds a stream by SSRC in a map, by mid in a
    /// walk over the streams); learned at the first packet.
    pub tx_ssrc: Option<Ssrc>,
    /// The track the slot would show, not sent for the receiver's bandwidth (`bandwidth`).
    pub paused: Option<(PeerKey, Mid)>,
    /// What the latest `Slots` event said of it being paused.
    pub announced_paused: Option<(PeerKey, Mid)>,
}

impl Slot {
    pub fn new(mid: Mid, kind: SlotKind) -> Slot {
        let media_kind = match kind {
            SlotKind::Audio => MediaKind::Audio,
            SlotKind::Thumbnail | SlotKind::Stage => MediaKind::Video,
        };
        Slot {
            mid,
            kind,
            forwarder: SlotForwarder::new(media_kind),
            listening: Vec::new(),
            announced: None,
            pt_map: Vec::new(),
            tx_ssrc: None,
            paused: None,
            announced_paused: None,
        }
    }
}

pub(crate) struct Participant {
    pub key: PeerKey,
    pub id: ParticipantId,
    pub user_id: models::UserId,
    /// Its page's end-to-end encryption public key, shown to the others; `None`: its browser
    /// cannot encrypt, and it may neither send nor receive sealed keys (`e2ee`).
    pub e2ee_public_key: Option<String>,
    pub rtc: Rtc,
    pub joined_at: Instant,
    /// Admitted by the session: only then are its tracks forwarded and does it receive others'.
    pub active: bool,
    pub connected: bool,
    /// What the client said each of its m-lines carries, and the simulcast layers of some.
    pub declared_sources: HashMap<Mid, TrackSource>,
    pub declared_layers: HashMap<Mid, Vec<Rid>>,
    pub tracks_in: HashMap<Mid, PublishedTrack>,
    pub slots: Vec<Slot>,
    /// Whom this participant wants on its stage.
    pub pin: Option<PeerKey>,
    pub next_timeout: Instant,
    /// Packets were written to its `Rtc` and it was not drained since (`Room::dirty`).
    pub dirty: bool,
    /// Caches str0m's SSRC to mid and RID lookup and the codec of each incoming payload type.
    pub ssrc_mids: HashMap<Ssrc, (Mid, Option<Rid>)>,
    pub pt_params: HashMap<Pt, Option<(PayloadParams, bool)>>,
    /// At the previous stats event, per mid: str0m's packets sent and NACKs received, and the
    /// packets we wrote.
    pub last_egress: HashMap<Mid, (u64, u64, u64)>,
    /// Remote ICE candidates given so far; past [`MAX_REMOTE_CANDIDATES`] more are refused.
    pub n_remote_candidates: usize,
    /// When the latest datagram from it arrived (`link`).
    pub last_heard: Instant,
    /// Since when its media link, or its signaling WebSocket, is lost (`link`).
    pub media_lost_at: Option<Instant>,
    pub signal_lost_at: Option<Instant>,
    /// What reaches it, from the loss it reports (`bandwidth::Downlink`).
    pub downlink: super::bandwidth::Downlink,
}

/// Remote ICE candidates kept per participant. We are ICE-lite: peers reach us and we learn
/// their addresses from their checks, so candidates are only a hint, and a client that trickles
/// thousands must not grow the room's memory. A browser gathers a handful per network interface.
pub const MAX_REMOTE_CANDIDATES: usize = 32;

impl Participant {
    /// Its media or signaling link is lost, and the room holds its place (`link`).
    pub fn reconnecting(&self) -> bool {
        self.lost_since().is_some()
    }

    /// Since when one of its links is lost, if one is.
    pub fn lost_since(&self) -> Option<Instant> {
        match (self.media_lost_at, self.signal_lost_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn mid_of(&mut self, ssrc: Ssrc) -> Option<(Mid, Option<Rid>)> {
        if let Some(found) = self.ssrc_mids.get(&ssrc) {
            return Some(*found);
        }
        let stream = self.rtc.direct_api().stream_rx(&ssrc).map(|s| (s.mid(), s.rid()))?;
        self.ssrc_mids.insert(ssrc, stream);
        Some(stream)
    }

    /// The codec of an incoming payload type, and whether the type is its RED (RFC 2198)
    /// encapsulation (Opus with redundancy).
    pub fn params_of(&mut self, pt: Pt) -> Option<(PayloadParams, bool)> {
        if let Some(params) = self.pt_params.get(&pt) {
            return *params;
        }
        let config = self.rtc.codec_config();
        let params = config
            .find(|p| p.pt() == pt)
            .map(|p| (*p, false))
            .or_else(|| config.find(|p| p.red() == Some(pt)).map(|p| (*p, true)));
        self.pt_params.insert(pt, params);
        params
    }

    pub fn slot_by_mid(&self, mid: Mid) -> Option<usize> {
        self.slots.iter().position(|slot| slot.mid == mid)
    }
}
