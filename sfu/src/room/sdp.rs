//! What a client's session description may be, and the `Rtc` that answers it: the checks every
//! offer passes, the declarations of tracks and slots, and the codecs we negotiate.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::media::{Mid, Rid};
use str0m::Rtc;

use crate::config::RoomConfig;
use crate::error::SfuError;
use crate::proto::{SlotDeclaration, SlotKind, TrackDeclaration, TrackSource};

/// A session description fits in one client message; anything larger is a mistake or an attack.
const MAX_SDP_LEN: usize = models::visio::MAX_CLIENT_MESSAGE_BYTES;
/// m-lines in a client's first offer: its microphone, camera and screen share, and its slots
/// (a few audio, the thumbnails and the stage).
pub const MAX_JOIN_MEDIA_LINES: usize = 48;
/// m-lines in any later offer of a client. Offers only change the client's own publishing, so
/// this is the join's bound with room for m-lines stopped and added again over a long call.
/// str0m parses 1024 bare m-lines in 22 ms (release build), holding the room's task.
pub const MAX_MEDIA_LINES: usize = 1024;
/// Slots one client may declare. The room fills at most `RoomConfig::audio_slots` +
/// `thumbnail_slots` + 1 of them; the others stay empty.
pub const MAX_SLOTS: usize = 32;
/// Receivers' reports of loss, which drive the estimate of their downlink (`bandwidth`), come
/// this often at least.
const RTC_STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The checks every client offer passes before it reaches str0m; `pub` for the fuzz target
/// `sdp_offer`, which feeds it what the room would.
#[doc(hidden)]
pub fn parse_offer(sdp: &str, max_media_lines: usize) -> Result<SdpOffer, SfuError> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(SfuError::InvalidSdp(format!("longer than {MAX_SDP_LEN} bytes")));
    }
    let offer = SdpOffer::from_sdp_string(sdp).map_err(|err| SfuError::InvalidSdp(err.to_string()))?;
    if offer.media_lines.len() > max_media_lines {
        return Err(SfuError::InvalidSdp(format!(
            "{} m-lines (at most {max_media_lines})",
            offer.media_lines.len()
        )));
    }
    Ok(offer)
}

/// One DTLS certificate for every participant of every room: making one per participant cost a
/// key generation per join. Its fingerprint is in every answer, so peers still authenticate us.
fn dtls_cert() -> DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            // The aws-lc-rs provider this crate is built with always generates certificates.
            .expect("aws-lc-rs generates DTLS certificates")
    })
    .clone()
}

/// A participant's `Rtc`: RTP mode, ICE-lite, and only the codecs the room forwards: Opus (with
/// in-band FEC and RED, RFC 2198, where the browser offers it; DTX so that silent microphones
/// send a few packets a second is asked for in the answer, `answer`) and VP8, which every
/// browser sends and receives, so that any publisher can flow into any receiver's slot.
pub(super) fn new_rtc(config: &RoomConfig, now: Instant) -> Rtc {
    let mut builder = Rtc::builder()
        .set_rtp_mode(true)
        // Browsers are full ICE agents; as ICE-lite we only answer their checks, so every flow
        // starts with a STUN request carrying our ufrag, which is how the shell routes.
        .set_ice_lite(true)
        .set_stats_interval(Some(config.stats_interval.min(RTC_STATS_INTERVAL)))
        .set_dtls_cert(dtls_cert())
        .clear_codecs()
        .enable_vp8(true);
    // Opus on PT 111 with minptime=10 and useinbandfec=1, and its RED when offered.
    builder.codec_config().enable_opus(true, true);
    builder.build(now)
}

pub(super) fn declared_sources(tracks: &[TrackDeclaration]) -> Result<HashMap<Mid, TrackSource>, SfuError> {
    if tracks.len() > MAX_MEDIA_LINES {
        return Err(SfuError::InvalidTrack(format!(
            "{} tracks declared (at most {MAX_MEDIA_LINES})",
            tracks.len()
        )));
    }
    let mut sources = HashMap::new();
    for track in tracks {
        sources.insert(valid_mid(&track.mid)?, track.source);
    }
    Ok(sources)
}

/// The slots of a join, checked against the answered session: each names a distinct m-line on
/// which we send, of the slot's kind, that no track declaration claims.
pub(super) fn declared_slots(
    slots: &[SlotDeclaration],
    sources: &HashMap<Mid, TrackSource>,
    rtc: &mut Rtc,
) -> Result<Vec<(Mid, SlotKind)>, SfuError> {
    if slots.len() > MAX_SLOTS {
        return Err(SfuError::InvalidTrack(format!("{} slots declared (at most {MAX_SLOTS})", slots.len())));
    }
    let mut checked: Vec<(Mid, SlotKind)> = Vec::with_capacity(slots.len());
    for slot in slots {
        let mid = valid_mid(&slot.mid)?;
        if checked.iter().any(|(m, _)| *m == mid) || sources.contains_key(&mid) {
            return Err(SfuError::InvalidTrack(format!("m-line {} declared twice", slot.mid)));
        }
        let Some(media) = rtc.media(mid) else {
            return Err(SfuError::InvalidTrack(format!("slot {}: no such m-line in the offer", slot.mid)));
        };
        let video = slot.kind != SlotKind::Audio;
        if media.kind().is_video() != video {
            return Err(SfuError::InvalidTrack(format!(
                "slot {}: the m-line's kind does not match",
                slot.mid
            )));
        }
        if !media.direction().is_sending() {
            return Err(SfuError::InvalidTrack(format!(
                "slot {}: the m-line must be recvonly or sendrecv",
                slot.mid
            )));
        }
        if rtc.direct_api().stream_tx_by_mid(mid, None).is_none() {
            return Err(SfuError::InvalidTrack(format!("slot {}: no codec we forward", slot.mid)));
        }
        checked.push((mid, slot.kind));
    }
    Ok(checked)
}

/// Simulcast encodings one track may declare.
pub const MAX_LAYERS: usize = 4;

/// The simulcast layers of each declared track, lowest quality first (none: one layer).
pub(super) fn declared_layers(tracks: &[TrackDeclaration]) -> Result<HashMap<Mid, Vec<Rid>>, SfuError> {
    let mut layers = HashMap::new();
    for track in tracks.iter().filter(|t| !t.layers.is_empty()) {
        if track.source == TrackSource::Microphone || track.layers.len() > MAX_LAYERS {
            return Err(SfuError::InvalidTrack(format!(
                "track {}: simulcast is for video, with at most {MAX_LAYERS} layers",
                track.mid
            )));
        }
        let mut rids: Vec<Rid> = Vec::with_capacity(track.layers.len());
        for rid in &track.layers {
            let valid = !rid.is_empty()
                && rid.len() <= 16
                && rid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let rid_value = Rid::from(rid.as_str());
            if !valid || rids.contains(&rid_value) {
                return Err(SfuError::InvalidTrack(format!(
                    "track {}: bad or repeated layer {rid:?}",
                    track.mid
                )));
            }
            rids.push(rid_value);
        }
        layers.insert(valid_mid(&track.mid)?, rids);
    }
    Ok(layers)
}

fn valid_mid(mid: &str) -> Result<Mid, SfuError> {
    if mid.is_empty() || mid.len() > 16 {
        return Err(SfuError::InvalidTrack(format!("bad mid {mid:?}")));
    }
    Ok(Mid::from(mid))
}
