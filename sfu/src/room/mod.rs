//! Rooms, participants and sessions: who is in the room and who gets what.
//!
//! [`Room`] is sans-IO like str0m, whose `Rtc` instances it owns: the shell hands it datagrams,
//! commands and the time, and drains [`Room::poll_output`] for datagrams to send, events for
//! participants and the server, and the instant it wants to be woken at. [`session::Session`]
//! holds the rules (tier limits, roles, moderation) and knows nothing of media.

mod last_n;
mod participant;
pub mod session;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tracing::{debug, info};

use crate::config::RoomConfig;
use crate::error::SfuError;
use crate::forward::{is_keyframe_start, Buffer, Decision, DownTrack, DropReason, PacketView, VideoCodec};
use crate::proto::{
    CloseReason, Command, LeaveReason, MediaKind, ParticipantEvent, ParticipantId, ParticipantInfo,
    ParticipantParams, RoomId, RoomStats, SfuEvent, TrackDeclaration, TrackId, TrackInfo, TrackSource,
};
use participant::{Participant, PeerKey, PublishedTrack, Subscription, SubscriptionState};
use session::{MemberStatus, Session, SessionConfig, SessionEvent, SessionInput, SessionOutput};

/// Far enough to mean "nothing scheduled" while staying a valid `Instant`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// A session description fits in one client message (hundreds of kilobytes in a 70-person call);
/// anything larger is a mistake or an attack.
const MAX_SDP_LEN: usize = models::visio::MAX_CLIENT_MESSAGE_BYTES;
/// m-lines in a client's first offer. The call page offers two (microphone and camera, or a data
/// channel when it has neither) and the load test one or two; a screen share adds one later.
pub const MAX_JOIN_MEDIA_LINES: usize = 16;
/// m-lines in any offer of a client: its own, and one per track it receives or received (the
/// server stops them but never reuses their slot). A browser writes 1 to 3 KB per m-line, so a
/// real offer reaches `MAX_SDP_LEN` at a few hundred. Bare m-lines fit 11 000 in 1 MB, which
/// str0m took 0.5 s to parse and accept (release build), holding the room's task; 1024, 22 ms.
pub const MAX_MEDIA_LINES: usize = 1024;

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

fn parse_answer(sdp: &str) -> Result<SdpAnswer, SfuError> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(SfuError::InvalidSdp(format!("longer than {MAX_SDP_LEN} bytes")));
    }
    SdpAnswer::from_sdp_string(sdp).map_err(|err| SfuError::InvalidSdp(err.to_string()))
}

/// Everything a room needs to be created.
#[derive(Debug, Clone)]
pub struct RoomParams {
    pub room_id: RoomId,
    pub policy: models::VisioPolicy,
    pub config: RoomConfig,
    /// Our ICE candidates, the same for every participant: the shared UDP socket and TCP port.
    pub local_candidates: Vec<Candidate>,
}

pub enum RoomInput<'a> {
    Timeout(Instant),
    Receive { now: Instant, proto: Protocol, source: SocketAddr, destination: SocketAddr, contents: &'a [u8] },
}

#[derive(Debug)]
pub enum RoomOutput {
    Transmit(Transmit),
    ToParticipant(ParticipantId, ParticipantEvent),
    Server(SfuEvent),
    Timeout(Instant),
}

/// What a successful join hands back to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAccepted {
    pub answer_sdp: String,
    /// Our ICE username fragment for this participant: the shell routes STUN by it.
    pub ice_ufrag: String,
}

pub struct Room {
    room_id: RoomId,
    config: RoomConfig,
    local_candidates: Vec<Candidate>,
    session: Session,
    participants: Vec<Participant>,
    next_key: PeerKey,
    rtc_events: VecDeque<(PeerKey, Event)>,
    outputs: VecDeque<RoomOutput>,
    stats: RoomStats,
    loss_reports: (f32, u32),
    next_stats_at: Instant,
    last_now: Instant,
    /// Kept here: the session forgets its start once closed, and the close event reports it.
    started_at: Option<Instant>,
    closed: bool,
    last_n: last_n::LastN,
}

impl Room {
    pub fn new(params: RoomParams, now: Instant) -> Room {
        let session_config = SessionConfig {
            policy: params.policy,
            warn_before_end: params.config.warn_before_end.clone(),
            empty_timeout: params.config.empty_timeout,
        };
        let last_n = last_n::LastN::new(params.config.last_n, now);
        Room {
            room_id: params.room_id,
            next_stats_at: now + params.config.stats_interval,
            config: params.config,
            local_candidates: params.local_candidates,
            session: Session::new(session_config, now),
            participants: Vec::new(),
            next_key: 1,
            rtc_events: VecDeque::new(),
            outputs: VecDeque::new(),
            stats: RoomStats::default(),
            loss_reports: (0.0, 0),
            last_now: now,
            started_at: None,
            closed: false,
            last_n,
        }
    }

    pub fn room_id(&self) -> &RoomId {
        &self.room_id
    }

    /// False once the session closed and every output was drained.
    pub fn is_alive(&self) -> bool {
        !self.closed || !self.outputs.is_empty()
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Accepts a participant's first offer. Nothing changes in the room when this fails: a bad
    /// SDP or a refusal by the session leaves everyone else as they were.
    pub fn join(
        &mut self,
        now: Instant,
        participant_id: ParticipantId,
        params: ParticipantParams,
        offer_sdp: &str,
        tracks: &[TrackDeclaration],
    ) -> Result<JoinAccepted, SfuError> {
        self.last_now = now;
        if self.closed {
            return Err(SfuError::RoomClosed);
        }
        let offer = parse_offer(offer_sdp, MAX_JOIN_MEDIA_LINES)?;
        let declared_sources = declared_sources(tracks)?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            // Browsers are full ICE agents; as ICE-lite we only answer their checks, so every
            // flow starts with a STUN request carrying our ufrag, which is how the shell routes.
            .set_ice_lite(true)
            .set_stats_interval(Some(self.config.stats_interval))
            .build(now);
        for candidate in &self.local_candidates {
            rtc.add_local_candidate(candidate.clone());
        }
        let answer =
            rtc.sdp_api().accept_offer(offer).map_err(|err| SfuError::InvalidSdp(err.to_string()))?;
        let ice_ufrag = rtc.direct_api().local_ice_credentials().ufrag;

        let user_id = params.user_id.clone();
        self.session.handle_input(SessionInput::Join {
            now,
            participant_id: participant_id.clone(),
            params,
        })?;

        let key = self.next_key;
        self.next_key += 1;
        self.participants.push(Participant {
            key,
            id: participant_id,
            user_id,
            rtc,
            joined_at: now,
            active: false,
            connected: false,
            declared_sources,
            tracks_in: HashMap::new(),
            tracks_out: HashMap::new(),
            pending_offer: None,
            next_timeout: now,
            ssrc_mids: HashMap::new(),
            pt_params: HashMap::new(),
            last_egress: HashMap::new(),
            n_remote_candidates: 0,
        });
        self.drain_participant(key);
        self.process(now);
        Ok(JoinAccepted { answer_sdp: answer.to_sdp_string(), ice_ufrag })
    }

    /// A client's new offer (it adds or removes its own tracks). Returns the answer.
    pub fn handle_offer(
        &mut self,
        now: Instant,
        participant_id: &ParticipantId,
        offer_sdp: &str,
        tracks: &[TrackDeclaration],
    ) -> Result<String, SfuError> {
        self.last_now = now;
        let offer = parse_offer(offer_sdp, MAX_MEDIA_LINES)?;
        let declared = declared_sources(tracks)?;
        let idx = self.index_of_id(participant_id).ok_or(SfuError::ParticipantNotFound)?;
        let participant = &mut self.participants[idx];
        // Declarations add up over offers (a screen share declares one more mid): bounded like
        // the m-lines they name, or a client could grow the map by an offer's worth each time.
        let n_new = declared.keys().filter(|mid| !participant.declared_sources.contains_key(*mid)).count();
        if participant.declared_sources.len() + n_new > MAX_MEDIA_LINES {
            return Err(SfuError::InvalidTrack(format!("more than {MAX_MEDIA_LINES} tracks declared")));
        }
        // The client's offer wins over one of ours in flight (str0m rolls ours back): what we
        // were adding or stopping goes into our next offer.
        participant.pending_offer = None;
        for sub in participant.tracks_out.values_mut() {
            sub.state = match sub.state {
                SubscriptionState::Negotiating(_) => SubscriptionState::ToOpen,
                SubscriptionState::NegotiatingStop(mid) => SubscriptionState::ToStop(mid),
                other => other,
            };
        }
        participant.declared_sources.extend(declared);
        let result = participant.rtc.sdp_api().accept_offer(offer);
        let key = participant.key;
        self.drain_participant(key);
        let answer = match result {
            Ok(answer) => answer,
            Err(err) => {
                // str0m may have given up on this connection; the participant reconnects.
                if !self.participants[idx].rtc.is_alive() {
                    self.leave(now, participant_id, LeaveReason::ConnectionLost);
                }
                return Err(SfuError::InvalidSdp(err.to_string()));
            }
        };
        self.process(now);
        self.negotiate(key);
        self.process(now);
        Ok(answer.to_sdp_string())
    }

    /// The client's answer to our latest offer.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        participant_id: &ParticipantId,
        answer_sdp: &str,
    ) -> Result<(), SfuError> {
        self.last_now = now;
        let answer = parse_answer(answer_sdp)?;
        let idx = self.index_of_id(participant_id).ok_or(SfuError::ParticipantNotFound)?;
        let participant = &mut self.participants[idx];
        let pending = participant.pending_offer.take().ok_or(SfuError::NoPendingOffer)?;
        let result = participant.rtc.sdp_api().accept_answer(pending, answer);
        let key = participant.key;
        if let Err(err) = result {
            // Renegotiate from scratch: the m-lines we offered go into the next offer.
            for sub in participant.tracks_out.values_mut() {
                if let SubscriptionState::Negotiating(_) = sub.state {
                    sub.state = SubscriptionState::ToOpen;
                }
            }
            self.drain_participant(key);
            self.process(now);
            return Err(SfuError::InvalidSdp(err.to_string()));
        }
        let mut opened: Vec<PeerKey> = Vec::new();
        let mut opened_video: Vec<(PeerKey, Mid)> = Vec::new();
        participant.tracks_out.retain(|(publisher, publisher_mid), sub| match sub.state {
            SubscriptionState::Negotiating(mid) => {
                sub.state = SubscriptionState::Open(mid);
                opened.push(*publisher);
                if sub.kind == MediaKind::Video {
                    opened_video.push((*publisher, *publisher_mid));
                }
                true
            }
            SubscriptionState::NegotiatingStop(_) => false,
            _ => true,
        });
        self.drain_participant(key);
        // A new subscriber needs a keyframe before it can show anything.
        for (publisher, mid) in opened_video {
            self.request_keyframe(publisher, mid, now);
        }
        self.negotiate(key);
        self.process(now);
        Ok(())
    }

    /// Trickle ICE from the client. Our side needs none: ICE-lite with fixed candidates.
    pub fn add_remote_candidate(
        &mut self,
        participant_id: &ParticipantId,
        candidate: &str,
    ) -> Result<(), SfuError> {
        let candidate = candidate.trim();
        let candidate = candidate.strip_prefix("a=").unwrap_or(candidate);
        let candidate =
            Candidate::from_sdp_string(candidate).map_err(|err| SfuError::InvalidSdp(err.to_string()))?;
        let idx = self.index_of_id(participant_id).ok_or(SfuError::ParticipantNotFound)?;
        let key = self.participants[idx].key;
        if self.participants[idx].n_remote_candidates >= participant::MAX_REMOTE_CANDIDATES {
            return Err(SfuError::InvalidSdp(format!(
                "more than {} ICE candidates",
                participant::MAX_REMOTE_CANDIDATES
            )));
        }
        self.participants[idx].n_remote_candidates += 1;
        self.participants[idx].rtc.add_remote_candidate(candidate);
        self.drain_participant(key);
        self.process(self.last_now);
        Ok(())
    }

    pub fn command(&mut self, now: Instant, from: &ParticipantId, command: Command) -> Result<(), SfuError> {
        self.last_now = now;
        let result = self.session.handle_input(SessionInput::Command { now, from: from.clone(), command });
        self.process(now);
        result
    }

    pub fn leave(&mut self, now: Instant, participant_id: &ParticipantId, reason: LeaveReason) {
        // Unknown ids are fine: the participant may already be gone.
        let _ = self.session.handle_input(SessionInput::Leave {
            now,
            participant_id: participant_id.clone(),
            reason,
        });
        self.process(now);
    }

    pub fn role_changed(&mut self, now: Instant, user_id: models::UserId, role: models::Role) {
        let _ = self.session.handle_input(SessionInput::RoleChanged { now, user_id, role });
        self.process(now);
    }

    pub fn member_removed(&mut self, now: Instant, user_id: models::UserId) {
        let _ = self.session.handle_input(SessionInput::MemberRemoved { now, user_id });
        self.process(now);
    }

    pub fn close(&mut self, now: Instant, reason: CloseReason) {
        let _ = self.session.handle_input(SessionInput::Close { now, reason });
        self.process(now);
    }

    pub fn handle_input(&mut self, input: RoomInput<'_>) {
        match input {
            RoomInput::Timeout(now) => self.handle_timeout(now),
            RoomInput::Receive { now, proto, source, destination, contents } => {
                self.last_now = now.max(self.last_now);
                let Ok(contents) = contents.try_into() else {
                    // Not STUN, DTLS, RTP or RTCP: noise on the port.
                    return;
                };
                let input = Input::Receive(now, Receive { proto, source, destination, contents });
                let Some(idx) = self.participants.iter().position(|p| p.rtc.accepts(&input)) else {
                    debug!(%source, "no participant accepts datagram");
                    return;
                };
                let participant = &mut self.participants[idx];
                let key = participant.key;
                if let Err(err) = participant.rtc.handle_input(input) {
                    debug!(cause = %err, participant_id = %participant.id, "rtc input failed");
                    participant.rtc.disconnect();
                }
                self.drain_participant(key);
                self.process(now);
            }
        }
    }

    pub fn poll_output(&mut self) -> RoomOutput {
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        let mut timeout = self.last_now + IDLE_TIMEOUT;
        if !self.closed {
            timeout = timeout.min(self.next_stats_at);
            if let Some(at) = self.last_n.next_refresh() {
                timeout = timeout.min(at);
            }
            if let SessionOutput::Timeout(at) = self.session.poll_output() {
                timeout = timeout.min(at);
            }
        }
        for participant in &self.participants {
            timeout = timeout.min(participant.next_timeout);
            if !participant.connected {
                timeout = timeout.min(participant.joined_at + self.config.connect_timeout);
            }
            for track in participant.tracks_in.values() {
                if let Some(at) = track.buffer.next_timeout() {
                    timeout = timeout.min(at);
                }
            }
        }
        RoomOutput::Timeout(timeout)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now.max(self.last_now);
        let _ = self.session.handle_input(SessionInput::Timeout(now));
        let keys: Vec<PeerKey> = self.participants.iter().map(|p| p.key).collect();
        for key in keys {
            let Some(idx) = self.index_of(key) else { continue };
            let participant = &mut self.participants[idx];
            if now >= participant.next_timeout {
                if let Err(err) = participant.rtc.handle_input(Input::Timeout(now)) {
                    debug!(cause = %err, participant_id = %participant.id, "rtc timeout failed");
                    participant.rtc.disconnect();
                }
                self.drain_participant(key);
            }
            let participant = &self.participants[idx];
            if !participant.connected && now >= participant.joined_at + self.config.connect_timeout {
                let participant_id = participant.id.clone();
                info!(%participant_id, "media never connected");
                let _ = self.session.handle_input(SessionInput::Leave {
                    now,
                    participant_id,
                    reason: LeaveReason::ConnectionLost,
                });
            }
        }
        let keys: Vec<(PeerKey, Mid)> =
            self.participants.iter().flat_map(|p| p.tracks_in.keys().map(move |mid| (p.key, *mid))).collect();
        for (publisher, mid) in keys {
            self.poll_keyframe_request(publisher, mid, now);
        }
        if now >= self.next_stats_at && !self.closed {
            self.next_stats_at = now + self.config.stats_interval;
            self.emit_stats();
        }
        if self.last_n.is_due(now) {
            self.refresh_last_n(now);
        }
        self.process(now);
    }

    fn emit_stats(&mut self) {
        let mut stats = std::mem::take(&mut self.stats);
        let (loss_sum, n_loss) = std::mem::take(&mut self.loss_reports);
        stats.receiver_loss_fraction = (n_loss > 0).then(|| loss_sum / n_loss as f32);
        stats.n_participants = self.participants.iter().filter(|p| p.active).count() as u32;
        self.outputs.push_back(RoomOutput::Server(SfuEvent::Stats { room_id: self.room_id.clone(), stats }));
    }

    fn index_of(&self, key: PeerKey) -> Option<usize> {
        self.participants.iter().position(|p| p.key == key)
    }

    fn index_of_id(&self, participant_id: &ParticipantId) -> Option<usize> {
        self.participants.iter().position(|p| &p.id == participant_id)
    }

    /// Drains one `Rtc` until its timeout. str0m wants a full drain after every mutation; events
    /// are queued rather than handled here, since handling them mutates other `Rtc`s.
    fn drain_participant(&mut self, key: PeerKey) {
        let Some(idx) = self.index_of(key) else { return };
        let participant = &mut self.participants[idx];
        loop {
            if !participant.rtc.is_alive() {
                participant.next_timeout = self.last_now;
                break;
            }
            match participant.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    participant.next_timeout = at;
                    break;
                }
                Ok(Output::Transmit(transmit)) => self.outputs.push_back(RoomOutput::Transmit(transmit)),
                Ok(Output::Event(event)) => self.rtc_events.push_back((key, event)),
                Err(err) => {
                    debug!(cause = %err, participant_id = %participant.id, "rtc poll failed");
                    participant.rtc.disconnect();
                }
            }
        }
    }

    /// Handles queued `Rtc` events and session events until both queues are empty, then lets
    /// connections str0m gave up on leave the room.
    fn process(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some((key, event)) = self.rtc_events.pop_front() {
                self.handle_rtc_event(key, event, now);
                progressed = true;
            }
            while let SessionOutput::Event(event) = self.session.poll_output() {
                self.handle_session_event(event, now);
                progressed = true;
            }
            // Checked first: this runs once per packet, and a dead connection is rare.
            let any_dead = self.participants.iter().any(|p| !p.rtc.is_alive());
            let dead: Vec<ParticipantId> = if any_dead {
                self.participants.iter().filter(|p| !p.rtc.is_alive()).map(|p| p.id.clone()).collect()
            } else {
                Vec::new()
            };
            for participant_id in dead {
                progressed = true;
                let reason = LeaveReason::ConnectionLost;
                let left = self.session.handle_input(SessionInput::Leave {
                    now,
                    participant_id: participant_id.clone(),
                    reason,
                });
                if left.is_err() {
                    // Not in the session (it was refused or already removed): drop the media side.
                    self.remove(participant_id, reason, now);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn handle_rtc_event(&mut self, key: PeerKey, event: Event, now: Instant) {
        match event {
            Event::RtpPacket(packet) => self.forward_packet(key, packet, now),
            Event::Connected => {
                if let Some(idx) = self.index_of(key) {
                    self.participants[idx].connected = true;
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                if let Some(idx) = self.index_of(key) {
                    let participant_id = self.participants[idx].id.clone();
                    let _ = self.session.handle_input(SessionInput::Leave {
                        now,
                        participant_id,
                        reason: LeaveReason::ConnectionLost,
                    });
                }
            }
            Event::MediaAdded(added) => {
                let receiving = matches!(added.direction, Direction::RecvOnly | Direction::SendRecv);
                if receiving {
                    self.publish(key, added.mid, added.kind, now);
                }
            }
            Event::MediaChanged(changed) => {
                // A client that stops sending on an m-line (screen share ended) unpublishes it;
                // one that starts again publishes it anew.
                let receiving = matches!(changed.direction, Direction::RecvOnly | Direction::SendRecv);
                let Some(idx) = self.index_of(key) else { return };
                let published = self.participants[idx].tracks_in.contains_key(&changed.mid);
                if receiving && !published {
                    let kind = self.participants[idx].rtc.media(changed.mid).map(|media| media.kind());
                    if let Some(kind) = kind {
                        self.publish(key, changed.mid, kind, now);
                    }
                } else if !receiving && published {
                    self.unpublish(key, changed.mid);
                }
            }
            Event::KeyframeRequest(request) => {
                self.stats.keyframe_requests_received += 1;
                let Some(idx) = self.index_of(key) else { return };
                let Some((&(publisher, publisher_mid), _)) =
                    self.participants[idx].subscription_by_out_mid(request.mid)
                else {
                    return;
                };
                self.request_keyframe(publisher, publisher_mid, now);
            }
            Event::MediaEgressStats(egress) => {
                let Some(idx) = self.index_of(key) else { return };
                let participant = &mut self.participants[idx];
                // str0m counts retransmissions in `packets`; what we wrote ourselves is in the
                // DownTrack. The difference over an interval is what str0m resent.
                let written: u64 = participant
                    .tracks_out
                    .values()
                    .filter(|sub| sub.mid() == Some(egress.mid))
                    .map(|sub| sub.downtrack.packets_out)
                    .sum();
                let last =
                    participant.last_egress.insert(egress.mid, (egress.packets, egress.nacks, written));
                let (last_packets, last_nacks, last_written) = last.unwrap_or_default();
                self.stats.nacks_received += egress.nacks.saturating_sub(last_nacks);
                let sent = egress.packets.saturating_sub(last_packets);
                self.stats.retransmissions += sent.saturating_sub(written.saturating_sub(last_written));
                if let Some(loss) = egress.loss {
                    self.loss_reports.0 += loss;
                    self.loss_reports.1 += 1;
                }
            }
            _ => {}
        }
    }

    fn publish(&mut self, key: PeerKey, mid: Mid, str0m_kind: str0m::media::MediaKind, now: Instant) {
        let Some(idx) = self.index_of(key) else { return };
        let kind = match str0m_kind {
            str0m::media::MediaKind::Audio => MediaKind::Audio,
            str0m::media::MediaKind::Video => MediaKind::Video,
        };
        let participant = &self.participants[idx];
        if participant.tracks_in.contains_key(&mid) {
            return;
        }
        let default_source = match kind {
            MediaKind::Audio => TrackSource::Microphone,
            MediaKind::Video => TrackSource::Camera,
        };
        let source = participant.declared_sources.get(&mid).copied().unwrap_or(default_source);
        let source_matches_kind = (source == TrackSource::Microphone) == (kind == MediaKind::Audio);
        let already_has_source = participant.tracks_in.values().any(|t| t.buffer.source == source);
        let allowed = self.session.may_publish(&participant.id, source);
        if !source_matches_kind || already_has_source || allowed.is_err() {
            // A modified client cannot get around the rules: the track is never forwarded.
            info!(participant_id = %participant.id, ?source, "track refused");
            return;
        }
        let track_id = TrackId::for_track(&participant.id, &mid.to_string());
        let mut buffer = Buffer::new(kind, source, self.config.keyframe_request_interval);
        buffer.set_forwarding(self.may_forward(idx, kind, source));
        let participant = &mut self.participants[idx];
        participant
            .tracks_in
            .insert(mid, PublishedTrack { track_id: track_id.clone(), buffer, subscribers: Vec::new() });
        if participant.active {
            let info = TrackInfo { track_id, publisher: participant.id.clone(), kind, source };
            self.broadcast_active(ParticipantEvent::TrackPublished(info), None);
            let subscribers: Vec<PeerKey> =
                self.participants.iter().filter(|p| p.active && p.key != key).map(|p| p.key).collect();
            for subscriber in subscribers {
                self.subscribe(subscriber, key, mid);
                self.negotiate(subscriber);
            }
        }
        let _ = now;
    }

    fn unpublish(&mut self, key: PeerKey, mid: Mid) {
        let Some(idx) = self.index_of(key) else { return };
        let Some(track) = self.participants[idx].tracks_in.remove(&mid) else { return };
        let was_active = self.participants[idx].active;
        for subscriber in &track.subscribers {
            let Some(sub_idx) = self.index_of(*subscriber) else { continue };
            let tracks_out = &mut self.participants[sub_idx].tracks_out;
            if let Some(sub) = tracks_out.get_mut(&(key, mid)) {
                match sub.state {
                    SubscriptionState::ToOpen => {
                        tracks_out.remove(&(key, mid));
                    }
                    SubscriptionState::Open(out_mid) | SubscriptionState::Negotiating(out_mid) => {
                        sub.state = SubscriptionState::ToStop(out_mid);
                    }
                    _ => {}
                }
            }
        }
        for subscriber in track.subscribers {
            self.negotiate(subscriber);
        }
        if was_active {
            self.broadcast_active(ParticipantEvent::TrackUnpublished { track_id: track.track_id }, None);
        }
    }

    /// Whether a publisher's track of this kind may be forwarded now.
    fn may_forward(&self, idx: usize, kind: MediaKind, source: TrackSource) -> bool {
        let participant = &self.participants[idx];
        let Some(member) = self.session.member(&participant.id) else { return false };
        if member.status != MemberStatus::Active {
            return false;
        }
        match source {
            TrackSource::Microphone => !member.audio.muted,
            TrackSource::Camera => !member.video.muted,
            // Screen sharing stays on when the camera is turned off.
            TrackSource::ScreenShare => kind == MediaKind::Video,
        }
    }

    fn refresh_forwarding(&mut self, key: PeerKey) {
        let Some(idx) = self.index_of(key) else { return };
        let mids: Vec<(Mid, MediaKind, TrackSource)> = self.participants[idx]
            .tracks_in
            .iter()
            .map(|(mid, t)| (*mid, t.buffer.kind, t.buffer.source))
            .collect();
        for (mid, kind, source) in mids {
            let forwarding = self.may_forward(idx, kind, source);
            if let Some(track) = self.participants[idx].tracks_in.get_mut(&mid) {
                track.buffer.set_forwarding(forwarding);
            }
            self.poll_keyframe_request(key, mid, self.last_now);
        }
    }

    /// Ranks the camera publishers and pauses or resumes camera subscriptions to match.
    fn refresh_last_n(&mut self, now: Instant) {
        let mut candidates = Vec::new();
        let mut cameras = std::collections::HashSet::new();
        for participant in &self.participants {
            let Some(member) = self.session.member(&participant.id) else { continue };
            for (mid, track) in &participant.tracks_in {
                if track.buffer.kind == MediaKind::Video && track.buffer.source == TrackSource::Camera {
                    cameras.insert((participant.key, *mid));
                    if member.status == MemberStatus::Active && !member.video.muted {
                        candidates.push(last_n::Candidate {
                            key: participant.key,
                            moderator: member.role.administers(),
                            joined_at: participant.joined_at,
                        });
                    }
                }
            }
        }
        candidates.dedup_by_key(|c| c.key);
        let Some(visible) = self.last_n.rank(&candidates, now).cloned() else { return };
        for participant in &mut self.participants {
            for (key, subscription) in participant.tracks_out.iter_mut() {
                if cameras.contains(key) {
                    subscription.downtrack.set_paused(!visible.contains(&key.0));
                }
            }
        }
    }

    fn subscribe(&mut self, subscriber: PeerKey, publisher: PeerKey, mid: Mid) {
        let Some(publisher_idx) = self.index_of(publisher) else { return };
        let Some(track) = self.participants[publisher_idx].tracks_in.get_mut(&mid) else { return };
        if !track.subscribers.contains(&subscriber) {
            track.subscribers.push(subscriber);
        }
        let kind = track.buffer.kind;
        let paused = track.buffer.source == TrackSource::Camera && !self.last_n.is_visible(publisher);
        let generation = track.buffer.generation();
        let track_id = track.track_id.clone();
        let publisher_id = self.participants[publisher_idx].id.clone();
        let Some(subscriber_idx) = self.index_of(subscriber) else { return };
        self.participants[subscriber_idx].tracks_out.entry((publisher, mid)).or_insert_with(|| {
            let mut downtrack = DownTrack::new(kind, generation);
            downtrack.set_paused(paused);
            Subscription {
                track_id,
                publisher_id,
                kind,
                state: SubscriptionState::ToOpen,
                downtrack,
                pt_map: Vec::new(),
            }
        });
    }

    /// Sends the participant an offer for the m-lines to add or stop, unless one is in flight:
    /// then the changes wait for its answer.
    fn negotiate(&mut self, key: PeerKey) {
        let Some(idx) = self.index_of(key) else { return };
        let participant = &mut self.participants[idx];
        if participant.pending_offer.is_some() || !participant.rtc.is_alive() {
            return;
        }
        let mut changes = participant.rtc.sdp_api();
        for sub in participant.tracks_out.values_mut() {
            match sub.state {
                SubscriptionState::ToOpen => {
                    let kind = match sub.kind {
                        MediaKind::Audio => str0m::media::MediaKind::Audio,
                        MediaKind::Video => str0m::media::MediaKind::Video,
                    };
                    // The msid stream id is the publisher, so that the browser groups a
                    // participant's audio and video in one MediaStream.
                    let mid = changes.add_media(
                        kind,
                        Direction::SendOnly,
                        Some(sub.publisher_id.to_string()),
                        Some(sub.track_id.to_string()),
                        None,
                    );
                    sub.state = SubscriptionState::Negotiating(mid);
                }
                SubscriptionState::ToStop(mid) => {
                    changes.stop_media(mid);
                    sub.state = SubscriptionState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        if !changes.has_changes() {
            return;
        }
        let Some((offer, pending)) = changes.apply() else { return };
        participant.pending_offer = Some(pending);
        let participant_id = participant.id.clone();
        self.outputs.push_back(RoomOutput::ToParticipant(
            participant_id,
            ParticipantEvent::Offer { sdp: offer.to_sdp_string() },
        ));
        self.drain_participant(key);
    }

    fn request_keyframe(&mut self, publisher: PeerKey, mid: Mid, now: Instant) {
        let Some(idx) = self.index_of(publisher) else { return };
        if let Some(track) = self.participants[idx].tracks_in.get_mut(&mid) {
            track.buffer.request_keyframe();
        }
        self.poll_keyframe_request(publisher, mid, now);
    }

    fn poll_keyframe_request(&mut self, publisher: PeerKey, mid: Mid, now: Instant) {
        let Some(idx) = self.index_of(publisher) else { return };
        let participant = &mut self.participants[idx];
        let Some(track) = participant.tracks_in.get_mut(&mid) else { return };
        if !track.buffer.poll_keyframe_request(now) {
            return;
        }
        let mut direct = participant.rtc.direct_api();
        let Some(stream) = direct.stream_rx_by_mid(mid, None) else {
            // No RTP from this track yet: nothing to request a keyframe of.
            return;
        };
        stream.request_keyframe(KeyframeRequestKind::Pli);
        self.stats.keyframe_requests_sent += 1;
        self.drain_participant(publisher);
    }

    fn forward_packet(&mut self, publisher: PeerKey, packet: RtpPacket, now: Instant) {
        let Some(idx) = self.index_of(publisher) else { return };
        let participant = &mut self.participants[idx];
        let Some(mid) = participant.mid_of(packet.header.ssrc) else { return };
        let pt = packet.header.payload_type;
        let params = participant.params_of(pt);
        let Some(track) = participant.tracks_in.get_mut(&mid) else { return };
        let kind = track.buffer.kind;
        let payload_len = packet.payload.len() as u64;
        if kind == MediaKind::Audio && track.buffer.is_forwarding() {
            let ext = &packet.header.ext_vals;
            self.last_n.heard(publisher, ext.audio_level, ext.voice_activity, now);
        }
        let counters = match kind {
            MediaKind::Audio => &mut self.stats.audio,
            MediaKind::Video => &mut self.stats.video,
        };
        counters.packets_in += 1;
        counters.bytes_in += payload_len;
        if !track.buffer.is_forwarding() {
            counters.packets_dropped += track.subscribers.len() as u64;
            return;
        }
        let Some(params) = params else { return };
        if kind == MediaKind::Video && track.buffer.codec.is_none() {
            track.buffer.codec = match params.spec().codec {
                Codec::Vp8 => Some(VideoCodec::Vp8),
                Codec::Vp9 => Some(VideoCodec::Vp9),
                Codec::H264 => Some(VideoCodec::H264),
                Codec::Av1 => Some(VideoCodec::Av1),
                _ => None,
            };
        }
        let keyframe_start =
            track.buffer.codec.is_some_and(|codec| is_keyframe_start(codec, &packet.payload));
        let view = PacketView {
            seq_no: *packet.seq_no,
            timestamp: packet.header.timestamp,
            ssrc: *packet.header.ssrc,
            marker: packet.header.marker,
            keyframe_start,
            arrival: packet.timestamp,
        };
        let generation = track.buffer.generation();
        let subscribers = track.subscribers.clone();
        let clock_rate = params.spec().clock_rate.get();
        let mut ext_vals = ExtensionValues::default();
        ext_vals.audio_level = packet.header.ext_vals.audio_level;
        ext_vals.voice_activity = packet.header.ext_vals.voice_activity;
        ext_vals.video_orientation = packet.header.ext_vals.video_orientation;

        let mut wants_keyframe = false;
        for subscriber in subscribers {
            let Some(sub_idx) = self.index_of(subscriber) else { continue };
            let sub_participant = &mut self.participants[sub_idx];
            if !sub_participant.active || !sub_participant.connected {
                continue;
            }
            let Some(sub) = sub_participant.tracks_out.get_mut(&(publisher, mid)) else { continue };
            let Some(out_mid) = sub.open_mid() else { continue };
            sub.downtrack.set_clock_rate(clock_rate);
            let (seq_no, timestamp) = match sub.downtrack.forward(&view, generation) {
                Decision::Forward { seq_no, timestamp } => (seq_no, timestamp),
                Decision::Drop(reason) => {
                    wants_keyframe |= reason == DropReason::WaitingForKeyframe;
                    let counters = match kind {
                        MediaKind::Audio => &mut self.stats.audio,
                        MediaKind::Video => &mut self.stats.video,
                    };
                    counters.packets_dropped += 1;
                    continue;
                }
            };
            let pt_out = match sub.pt_map.iter().find(|(pt_in, _)| *pt_in == pt) {
                Some((_, pt_out)) => *pt_out,
                None => {
                    let pt_out = sub_participant.rtc.codec_config().match_params(params).map(|p| p.pt());
                    sub.pt_map.push((pt, pt_out));
                    pt_out
                }
            };
            let Some(pt_out) = pt_out else { continue };
            let mut direct = sub_participant.rtc.direct_api();
            let Some(stream) = direct.stream_tx_by_mid(out_mid, None) else { continue };
            let write =
                RtpWrite::new(pt_out, seq_no.into(), timestamp, packet.timestamp, packet.payload.clone())
                    .marker(packet.header.marker)
                    .ext_vals(ext_vals.clone())
                    // Video is resent from str0m's cache on NACK; audio is not worth it.
                    .nackable(kind == MediaKind::Video);
            stream.write_rtp(write);
            if let Some(sub) = sub_participant.tracks_out.get_mut(&(publisher, mid)) {
                sub.downtrack.packets_out += 1;
                sub.downtrack.bytes_out += payload_len;
            }
            let counters = match kind {
                MediaKind::Audio => &mut self.stats.audio,
                MediaKind::Video => &mut self.stats.video,
            };
            counters.packets_out += 1;
            counters.bytes_out += payload_len;
            self.drain_participant(subscriber);
        }
        if wants_keyframe {
            self.request_keyframe(publisher, mid, now);
        }
    }

    fn handle_session_event(&mut self, event: SessionEvent, now: Instant) {
        match event {
            SessionEvent::Started => {
                self.started_at = Some(now);
                self.outputs.push_back(RoomOutput::Server(SfuEvent::SessionStarted {
                    room_id: self.room_id.clone(),
                }));
            }
            SessionEvent::Waiting { participant_id } => {
                self.outputs.push_back(RoomOutput::ToParticipant(participant_id, ParticipantEvent::Waiting));
            }
            SessionEvent::Admitted { participant_id } => self.admit(participant_id, now),
            SessionEvent::Removed { participant_id, reason } => self.remove(participant_id, reason, now),
            SessionEvent::TimeWarning { remaining } => {
                self.broadcast_active(ParticipantEvent::TimeWarning { remaining }, None);
            }
            SessionEvent::MuteChanged { participant_id, kind, muted, by_moderator } => {
                if let Some(idx) = self.index_of_id(&participant_id) {
                    let key = self.participants[idx].key;
                    self.refresh_forwarding(key);
                }
                self.broadcast_active(
                    ParticipantEvent::MuteChanged { participant_id, kind, muted, by_moderator },
                    None,
                );
            }
            SessionEvent::UnmuteRequested { participant_id, kind } => {
                self.outputs.push_back(RoomOutput::ToParticipant(
                    participant_id,
                    ParticipantEvent::UnmuteRequested { kind },
                ));
            }
            SessionEvent::LockChanged { locked } => {
                self.broadcast_active(ParticipantEvent::LockChanged { locked }, None);
            }
            SessionEvent::RoleChanged { participant_id, role } => {
                self.broadcast_active(ParticipantEvent::RoleChanged { participant_id, role }, None);
            }
            SessionEvent::Closed { reason } => {
                let duration = self.session_duration(now);
                self.closed = true;
                self.outputs.push_back(RoomOutput::Server(SfuEvent::SessionClosed {
                    room_id: self.room_id.clone(),
                    reason,
                    duration,
                }));
            }
        }
    }

    fn session_duration(&self, now: Instant) -> Duration {
        self.started_at.map(|at| now.saturating_duration_since(at)).unwrap_or_default()
    }

    fn participant_info(&self, participant_id: &ParticipantId) -> Option<ParticipantInfo> {
        let member = self.session.member(participant_id)?;
        Some(ParticipantInfo {
            participant_id: participant_id.clone(),
            display_name: member.display_name.clone(),
            role: member.role,
            audio_muted: member.audio.muted,
            video_off: member.video.muted,
        })
    }

    fn admit(&mut self, participant_id: ParticipantId, now: Instant) {
        let Some(idx) = self.index_of_id(&participant_id) else { return };
        let key = self.participants[idx].key;
        self.participants[idx].active = true;
        self.refresh_forwarding(key);

        let others: Vec<PeerKey> =
            self.participants.iter().filter(|p| p.active && p.key != key).map(|p| p.key).collect();
        let mut participants = Vec::new();
        let mut tracks = Vec::new();
        for other in &others {
            let Some(other_idx) = self.index_of(*other) else { continue };
            let other_participant = &self.participants[other_idx];
            participants.extend(self.participant_info(&other_participant.id));
            for track in other_participant.tracks_in.values() {
                tracks.push(TrackInfo {
                    track_id: track.track_id.clone(),
                    publisher: other_participant.id.clone(),
                    kind: track.buffer.kind,
                    source: track.buffer.source,
                });
            }
        }
        let remaining = self.session.remaining(now);
        self.outputs.push_back(RoomOutput::ToParticipant(
            participant_id.clone(),
            ParticipantEvent::Admitted { participants, tracks, remaining },
        ));
        if let Some(info) = self.participant_info(&participant_id) {
            self.broadcast_active(ParticipantEvent::ParticipantJoined(info), Some(key));
        }
        if let Some(member) = self.session.member(&participant_id) {
            self.outputs.push_back(RoomOutput::Server(SfuEvent::ParticipantJoined {
                room_id: self.room_id.clone(),
                participant_id: participant_id.clone(),
                user_id: member.user_id.clone(),
                role: member.role,
            }));
        }

        // Others' tracks to the newcomer, the newcomer's tracks to others.
        for other in &others {
            let Some(other_idx) = self.index_of(*other) else { continue };
            let mids: Vec<Mid> = self.participants[other_idx].tracks_in.keys().copied().collect();
            for mid in mids {
                self.subscribe(key, *other, mid);
            }
        }
        self.negotiate(key);
        let own_mids: Vec<Mid> = self.participants[idx].tracks_in.keys().copied().collect();
        for other in others {
            for mid in &own_mids {
                self.subscribe(other, key, *mid);
            }
            self.negotiate(other);
        }
        if let Some(idx) = self.index_of(key) {
            let infos: Vec<TrackInfo> = self.participants[idx]
                .tracks_in
                .values()
                .map(|t| TrackInfo {
                    track_id: t.track_id.clone(),
                    publisher: participant_id.clone(),
                    kind: t.buffer.kind,
                    source: t.buffer.source,
                })
                .collect();
            for info in infos {
                self.broadcast_active(ParticipantEvent::TrackPublished(info), Some(key));
            }
        }
    }

    fn remove(&mut self, participant_id: ParticipantId, reason: LeaveReason, now: Instant) {
        let Some(idx) = self.index_of_id(&participant_id) else { return };
        let mut participant = self.participants.remove(idx);
        self.last_n.forget(participant.key);
        let was_active = participant.active;
        // Close politely (DTLS close_notify, RTCP BYE) so the browser notices at once.
        let _ = participant.rtc.close();
        while let Ok(output) = participant.rtc.poll_output() {
            match output {
                Output::Transmit(transmit) => self.outputs.push_back(RoomOutput::Transmit(transmit)),
                Output::Timeout(_) => break,
                Output::Event(_) => {}
            }
        }
        self.rtc_events.retain(|(key, _)| *key != participant.key);
        self.outputs
            .push_back(RoomOutput::ToParticipant(participant_id.clone(), ParticipantEvent::Left { reason }));

        // Its tracks disappear from every subscriber.
        let key = participant.key;
        let mut touched = Vec::new();
        for other in &mut self.participants {
            for ((publisher, _), sub) in other.tracks_out.iter_mut() {
                if *publisher != key {
                    continue;
                }
                sub.state = match sub.state {
                    SubscriptionState::Open(mid) | SubscriptionState::Negotiating(mid) => {
                        SubscriptionState::ToStop(mid)
                    }
                    other_state => other_state,
                };
            }
            other
                .tracks_out
                .retain(|(publisher, _), sub| !(*publisher == key && sub.state == SubscriptionState::ToOpen));
            for track in other.tracks_in.values_mut() {
                track.subscribers.retain(|subscriber| *subscriber != key);
            }
            touched.push(other.key);
        }
        if was_active {
            for track in participant.tracks_in.values() {
                self.broadcast_active(
                    ParticipantEvent::TrackUnpublished { track_id: track.track_id.clone() },
                    None,
                );
            }
            self.broadcast_active(
                ParticipantEvent::ParticipantLeft { participant_id: participant_id.clone() },
                None,
            );
        }
        if !self.closed {
            for other in touched {
                self.negotiate(other);
            }
        }
        self.outputs.push_back(RoomOutput::Server(SfuEvent::ParticipantLeft {
            room_id: self.room_id.clone(),
            participant_id,
            user_id: participant.user_id,
            reason,
        }));
        let _ = now;
    }

    fn broadcast_active(&mut self, event: ParticipantEvent, except: Option<PeerKey>) {
        for participant in &self.participants {
            if participant.active && Some(participant.key) != except {
                self.outputs.push_back(RoomOutput::ToParticipant(participant.id.clone(), event.clone()));
            }
        }
    }
}

fn declared_sources(tracks: &[TrackDeclaration]) -> Result<HashMap<Mid, TrackSource>, SfuError> {
    if tracks.len() > MAX_MEDIA_LINES {
        return Err(SfuError::InvalidTrack(format!(
            "{} tracks declared (at most {MAX_MEDIA_LINES})",
            tracks.len()
        )));
    }
    let mut sources = HashMap::new();
    for track in tracks {
        if track.mid.is_empty() || track.mid.len() > 16 {
            return Err(SfuError::InvalidTrack(format!("bad mid {:?}", track.mid)));
        }
        sources.insert(Mid::from(track.mid.as_str()), track.source);
    }
    Ok(sources)
}

#[cfg(test)]
mod tests;
