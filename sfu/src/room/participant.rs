//! One participant's media state: its `Rtc`, the tracks it publishes and its subscriptions.

use std::collections::HashMap;
use std::time::Instant;

use str0m::change::SdpPendingOffer;
use str0m::format::PayloadParams;
use str0m::media::{Mid, Pt};
use str0m::rtp::Ssrc;
use str0m::Rtc;

use crate::forward::{Buffer, DownTrack};
use crate::proto::{MediaKind, ParticipantId, TrackId, TrackSource};

/// A small internal key, cheaper than comparing `ParticipantId` strings per packet.
pub(crate) type PeerKey = u64;

#[derive(Debug)]
pub(crate) struct PublishedTrack {
    pub track_id: TrackId,
    pub buffer: Buffer,
    /// Participants that have a `Subscription` to this track.
    pub subscribers: Vec<PeerKey>,
}

/// Where an outgoing m-line stands in the offer/answer dance the server starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubscriptionState {
    /// Waits for the next server offer.
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    /// The track is gone; the m-line must be stopped.
    ToStop(Mid),
    NegotiatingStop(Mid),
}

#[derive(Debug)]
pub(crate) struct Subscription {
    pub track_id: TrackId,
    pub publisher_id: ParticipantId,
    pub kind: MediaKind,
    pub state: SubscriptionState,
    pub downtrack: DownTrack,
    /// Incoming payload type to outgoing one; `None` when the subscriber lacks the codec.
    pub pt_map: Vec<(Pt, Option<Pt>)>,
}

impl Subscription {
    pub fn open_mid(&self) -> Option<Mid> {
        match self.state {
            SubscriptionState::Open(mid) => Some(mid),
            _ => None,
        }
    }

    pub fn mid(&self) -> Option<Mid> {
        match self.state {
            SubscriptionState::ToOpen => None,
            SubscriptionState::Negotiating(mid)
            | SubscriptionState::Open(mid)
            | SubscriptionState::ToStop(mid)
            | SubscriptionState::NegotiatingStop(mid) => Some(mid),
        }
    }
}

pub(crate) struct Participant {
    pub key: PeerKey,
    pub id: ParticipantId,
    pub user_id: models::UserId,
    pub rtc: Rtc,
    pub joined_at: Instant,
    /// Admitted by the session: only then are its tracks forwarded and does it receive others'.
    pub active: bool,
    pub connected: bool,
    /// What the client said each of its m-lines carries.
    pub declared_sources: HashMap<Mid, TrackSource>,
    pub tracks_in: HashMap<Mid, PublishedTrack>,
    /// Keyed by (publisher, publisher's mid).
    pub tracks_out: HashMap<(PeerKey, Mid), Subscription>,
    pub pending_offer: Option<SdpPendingOffer>,
    pub next_timeout: Instant,
    /// Caches str0m's SSRC to mid lookup and the codec of each incoming payload type.
    pub ssrc_mids: HashMap<Ssrc, Mid>,
    pub pt_params: HashMap<Pt, Option<PayloadParams>>,
    /// At the previous stats event, per mid: str0m's packets sent and NACKs received, and the
    /// packets we wrote.
    pub last_egress: HashMap<Mid, (u64, u64, u64)>,
    /// Remote ICE candidates given so far; past [`MAX_REMOTE_CANDIDATES`] more are refused.
    pub n_remote_candidates: usize,
}

/// Remote ICE candidates kept per participant. We are ICE-lite: peers reach us and we learn
/// their addresses from their checks, so candidates are only a hint, and a client that trickles
/// thousands must not grow the room's memory. A browser gathers a handful per network interface.
pub const MAX_REMOTE_CANDIDATES: usize = 32;

impl Participant {
    pub fn mid_of(&mut self, ssrc: Ssrc) -> Option<Mid> {
        if let Some(mid) = self.ssrc_mids.get(&ssrc) {
            return Some(*mid);
        }
        let mid = self.rtc.direct_api().stream_rx(&ssrc)?.mid();
        self.ssrc_mids.insert(ssrc, mid);
        Some(mid)
    }

    pub fn params_of(&mut self, pt: Pt) -> Option<PayloadParams> {
        if let Some(params) = self.pt_params.get(&pt) {
            return *params;
        }
        let params = self.rtc.codec_config().find(|p| p.pt() == pt).copied();
        self.pt_params.insert(pt, params);
        params
    }

    pub fn subscription_by_out_mid(&self, mid: Mid) -> Option<(&(PeerKey, Mid), &Subscription)> {
        self.tracks_out.iter().find(|(_, sub)| sub.mid() == Some(mid))
    }
}
