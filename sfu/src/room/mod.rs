//! Rooms, participants and sessions: who is in the room and who gets what.
//!
//! [`Room`] is sans-IO like str0m, whose `Rtc` instances it owns: the shell hands it datagrams,
//! commands and the time, and drains [`Room::poll_output`] for datagrams to send, events for
//! participants and the server, and the instant it wants to be woken at. [`session::Session`]
//! holds the rules (tier limits, roles, moderation) and knows nothing of media.
//!
//! Each participant negotiates once, at its join: its own tracks, and a fixed set of receive
//! slots. Nobody is renegotiated when someone joins or leaves: the room decides which publisher
//! flows into which slot (`allocation`, `speakers`) and switches them (`slots`).
//!
//! The files of this folder, by job: `sdp` (offer checks, declarations, the `Rtc` we build),
//! `membership` (session events: admission, removal, broadcasts), `e2ee` (relaying sealed media
//! keys between admitted participants), `media` (str0m's events,
//! publishing, forwarding a packet), `slots` (applying the allocation to the slots),
//! `allocation` and `speakers` (sans-IO choices), `participant` (per-participant state).

mod allocation;
mod answer;
mod bandwidth;
mod e2ee;
mod hands;
mod link;
mod media;
mod membership;
mod participant;
mod sdp;
pub mod session;
mod slots;
mod speakers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Event, Input, Output};
use tracing::{debug, info};

use crate::config::RoomConfig;
use crate::error::SfuError;
use crate::proto::{
    CloseReason, Command, LeaveReason, ParticipantEvent, ParticipantId, ParticipantParams, RoomId, RoomStats,
    SfuEvent, SlotDeclaration, TrackDeclaration,
};
use participant::{Participant, PeerKey, Slot};
pub use sdp::{parse_offer, MAX_JOIN_MEDIA_LINES, MAX_MEDIA_LINES, MAX_SLOTS};
use session::{Session, SessionConfig, SessionInput, SessionOutput};

/// Far enough to mean "nothing scheduled" while staying a valid `Instant`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

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
    /// Key to index in `participants`, rebuilt when one leaves.
    index: HashMap<PeerKey, usize>,
    /// The peer address a participant's datagrams came from: a datagram is routed by one
    /// lookup, not by asking every `Rtc` whether it accepts it.
    by_address: HashMap<SocketAddr, PeerKey>,
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
    /// Every participant admitted so far joined with an end-to-end encryption key: what the
    /// session's close reports.
    session_e2ee: bool,
    speakers: speakers::Speakers,
    /// The speakers the participants were last told of.
    announced_speakers: Vec<PeerKey>,
    /// The screen share that started last: it takes the stage.
    latest_screen: Option<allocation::TrackKey>,
    /// Set by whatever changes who may fill a slot; the allocation runs before the next output.
    allocation_dirty: bool,
    next_allocation_at: Instant,
    /// Participants whose `Rtc` got packets to send since it was last drained: drained together
    /// before the room outputs anything, so that each is drained once per wake-up.
    dirty: Vec<PeerKey>,
    /// Set when an `Rtc` may have died: `process` then looks for the dead, instead of asking
    /// every participant after every packet.
    maybe_dead: bool,
    /// When `link` next looks for silent links.
    next_link_check_at: Instant,
    /// When the layers' rates were last sampled.
    rates_sampled_at: Instant,
}

impl Room {
    pub fn new(params: RoomParams, now: Instant) -> Room {
        let session_config = SessionConfig {
            policy: params.policy,
            warn_before_end: params.config.warn_before_end.clone(),
            empty_timeout: params.config.empty_timeout,
        };
        Room {
            room_id: params.room_id,
            next_stats_at: now + params.config.stats_interval,
            next_allocation_at: now + params.config.allocation_interval,
            config: params.config,
            local_candidates: params.local_candidates,
            session: Session::new(session_config, now),
            participants: Vec::new(),
            index: HashMap::new(),
            by_address: HashMap::new(),
            next_key: 1,
            rtc_events: VecDeque::new(),
            outputs: VecDeque::new(),
            stats: RoomStats::default(),
            loss_reports: (0.0, 0),
            last_now: now,
            started_at: None,
            closed: false,
            session_e2ee: true,
            speakers: speakers::Speakers::default(),
            announced_speakers: Vec::new(),
            latest_screen: None,
            allocation_dirty: false,
            maybe_dead: false,
            dirty: Vec::new(),
            next_link_check_at: now,
            rates_sampled_at: now,
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

    /// Accepts a participant's first offer: its own tracks and its receive slots. Nothing
    /// changes in the room when this fails: a bad SDP or a refusal by the session leaves everyone
    /// else as they were.
    pub fn join(
        &mut self,
        now: Instant,
        participant_id: ParticipantId,
        params: ParticipantParams,
        offer_sdp: &str,
        tracks: &[TrackDeclaration],
        slots: &[SlotDeclaration],
    ) -> Result<JoinAccepted, SfuError> {
        let offer = parse_offer(offer_sdp, MAX_JOIN_MEDIA_LINES)?;
        self.join_parsed(now, participant_id, params, offer, tracks, slots)
    }

    /// [`Room::join`] with an offer already through [`parse_offer`] (with
    /// [`MAX_JOIN_MEDIA_LINES`]): the shell parses on the caller's task, not on the room's,
    /// which answers every STUN and DTLS packet of the room.
    pub fn join_parsed(
        &mut self,
        now: Instant,
        participant_id: ParticipantId,
        params: ParticipantParams,
        offer: SdpOffer,
        tracks: &[TrackDeclaration],
        slots: &[SlotDeclaration],
    ) -> Result<JoinAccepted, SfuError> {
        self.last_now = now;
        self.drain_dirty();
        if self.closed {
            return Err(SfuError::RoomClosed);
        }
        let declared_sources = sdp::declared_sources(tracks)?;
        let declared_layers = sdp::declared_layers(tracks)?;
        let mut rtc = sdp::new_rtc(&self.config, now);
        for candidate in &self.local_candidates {
            rtc.add_local_candidate(candidate.clone());
        }
        let answer =
            rtc.sdp_api().accept_offer(offer).map_err(|err| SfuError::InvalidSdp(err.to_string()))?;
        let slots = sdp::declared_slots(slots, &declared_sources, &mut rtc)?;
        let ice_ufrag = rtc.direct_api().local_ice_credentials().ufrag;

        let user_id = params.user_id.clone();
        let e2ee_public_key = params.e2ee_public_key.clone();
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
            e2ee_public_key,
            rtc,
            joined_at: now,
            active: false,
            connected: false,
            declared_sources,
            declared_layers,
            tracks_in: HashMap::new(),
            slots: slots.into_iter().map(|(mid, kind)| Slot::new(mid, kind)).collect(),
            pin: None,
            next_timeout: now,
            dirty: false,
            ssrc_mids: HashMap::new(),
            pt_params: HashMap::new(),
            last_egress: HashMap::new(),
            n_remote_candidates: 0,
            last_heard: now,
            media_lost_at: None,
            signal_lost_at: None,
            downlink: Default::default(),
        });
        self.index.insert(key, self.participants.len() - 1);
        self.drain_participant(key);
        self.process(now);
        Ok(JoinAccepted { answer_sdp: answer::finish_answer(answer.to_sdp_string()), ice_ufrag })
    }

    /// A client's new offer: it adds or removes its own tracks. Returns the answer. Its slots
    /// stay as negotiated at the join.
    pub fn handle_offer(
        &mut self,
        now: Instant,
        participant_id: &ParticipantId,
        offer_sdp: &str,
        tracks: &[TrackDeclaration],
    ) -> Result<String, SfuError> {
        let offer = parse_offer(offer_sdp, MAX_MEDIA_LINES)?;
        self.handle_parsed_offer(now, participant_id, offer, tracks)
    }

    /// [`Room::handle_offer`] with an offer already through [`parse_offer`] (with
    /// [`MAX_MEDIA_LINES`]).
    pub fn handle_parsed_offer(
        &mut self,
        now: Instant,
        participant_id: &ParticipantId,
        offer: SdpOffer,
        tracks: &[TrackDeclaration],
    ) -> Result<String, SfuError> {
        self.last_now = now;
        self.drain_dirty();
        let declared = sdp::declared_sources(tracks)?;
        let layers = sdp::declared_layers(tracks)?;
        let idx = self.index_of_id(participant_id).ok_or(SfuError::ParticipantNotFound)?;
        let participant = &mut self.participants[idx];
        if let Some(slot) = participant.slots.iter().find(|slot| declared.contains_key(&slot.mid)) {
            return Err(SfuError::InvalidTrack(format!("m-line {} is a receive slot", slot.mid)));
        }
        // Declarations add up over offers (a screen share declares one more mid): bounded like
        // the m-lines they name, or a client could grow the map by an offer's worth each time.
        let n_new = declared.keys().filter(|mid| !participant.declared_sources.contains_key(*mid)).count();
        if participant.declared_sources.len() + n_new > MAX_MEDIA_LINES {
            return Err(SfuError::InvalidTrack(format!("more than {MAX_MEDIA_LINES} tracks declared")));
        }
        participant.declared_sources.extend(declared);
        participant.declared_layers.extend(layers);
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
        self.stats.client_offers += 1;
        self.process(now);
        Ok(answer::finish_answer(answer.to_sdp_string()))
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
        let command = match command {
            Command::E2eeKeys { keys } => return self.relay_e2ee_keys(from, keys),
            command => command,
        };
        let pin = match &command {
            Command::Pin { participant } => Some(participant.clone()),
            _ => None,
        };
        let result = self.session.handle_input(SessionInput::Command { now, from: from.clone(), command });
        if let (Ok(()), Some(target)) = (&result, pin) {
            let target = target.and_then(|id| self.index_of_id(&id)).map(|idx| self.participants[idx].key);
            if let Some(idx) = self.index_of_id(from) {
                self.participants[idx].pin = target;
                self.allocation_dirty = true;
            }
        }
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
                let Some(idx) = self.route(source, &input) else {
                    debug!(%source, "no participant accepts datagram");
                    return;
                };
                self.heard_from(idx, now);
                let key = self.participants[idx].key;
                if self.participants[idx].dirty {
                    // What was written to it goes out before it takes new input.
                    self.drain_participant(key);
                }
                let participant = &mut self.participants[idx];
                if let Err(err) = participant.rtc.handle_input(input) {
                    debug!(cause = %err, participant_id = %participant.id, "rtc input failed");
                    participant.rtc.disconnect();
                }
                self.drain_participant(key);
                self.process(now);
            }
        }
    }

    /// The participant a datagram is for: the one its source address last reached, if that one
    /// accepts it; else the one that accepts it (a new address: a first STUN check, a network
    /// change), remembered.
    fn route(&mut self, source: SocketAddr, input: &Input<'_>) -> Option<usize> {
        if let Some(idx) = self.by_address.get(&source).and_then(|key| self.index.get(key)).copied() {
            if self.participants[idx].rtc.accepts(input) {
                return Some(idx);
            }
        }
        let idx = self.participants.iter().position(|p| p.rtc.accepts(input))?;
        self.by_address.insert(source, self.participants[idx].key);
        Some(idx)
    }

    pub fn poll_output(&mut self) -> RoomOutput {
        if self.allocation_dirty && !self.closed {
            self.refresh_allocation(self.last_now);
        }
        if !self.dirty.is_empty() {
            self.drain_dirty();
        }
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        let mut timeout = self.last_now + IDLE_TIMEOUT;
        if !self.closed {
            timeout = timeout.min(self.next_stats_at).min(self.next_allocation_at);
            if !self.participants.is_empty() {
                timeout = timeout.min(self.next_link_check_at);
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
        self.drain_dirty();
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
            let Some(idx) = self.index_of(key) else { continue };
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
        self.poll_keyframe_requests(now);
        self.check_links(now);
        if now >= self.next_stats_at && !self.closed {
            self.next_stats_at = now + self.config.stats_interval;
            self.emit_stats();
        }
        if now >= self.next_allocation_at {
            self.allocation_dirty = true;
        }
        self.process(now);
    }

    fn emit_stats(&mut self) {
        let mut stats = std::mem::take(&mut self.stats);
        let (loss_sum, n_loss) = std::mem::take(&mut self.loss_reports);
        stats.receiver_loss_fraction = (n_loss > 0).then(|| loss_sum / n_loss as f32);
        stats.n_participants = self.participants.iter().filter(|p| p.active).count() as u32;
        stats.downlink_estimates_kbps = self
            .participants
            .iter()
            .filter_map(|p| p.downlink.usable())
            .map(|bps| (bps / 1000) as u32)
            .collect();
        self.outputs.push_back(RoomOutput::Server(SfuEvent::Stats { room_id: self.room_id.clone(), stats }));
    }

    fn index_of(&self, key: PeerKey) -> Option<usize> {
        self.index.get(&key).copied()
    }

    /// A participant's published track.
    fn published(&self, key: PeerKey, mid: str0m::media::Mid) -> Option<&participant::PublishedTrack> {
        self.participants[self.index_of(key)?].tracks_in.get(&mid)
    }

    fn published_mut(
        &mut self,
        key: PeerKey,
        mid: str0m::media::Mid,
    ) -> Option<&mut participant::PublishedTrack> {
        let idx = self.index_of(key)?;
        self.participants[idx].tracks_in.get_mut(&mid)
    }

    fn index_of_id(&self, participant_id: &ParticipantId) -> Option<usize> {
        self.participants.iter().position(|p| &p.id == participant_id)
    }

    /// Drains every participant that got packets to send since its last drain.
    fn drain_dirty(&mut self) {
        while !self.dirty.is_empty() {
            for key in std::mem::take(&mut self.dirty) {
                self.drain_participant(key);
            }
            // Draining hands str0m's events over; handling them may write more packets.
            self.process(self.last_now);
        }
    }

    /// Drains one `Rtc` until its timeout. str0m wants a full drain after every mutation; events
    /// are queued rather than handled here, since handling them mutates other `Rtc`s.
    fn drain_participant(&mut self, key: PeerKey) {
        let Some(idx) = self.index_of(key) else { return };
        let participant = &mut self.participants[idx];
        participant.dirty = false;
        loop {
            if !participant.rtc.is_alive() {
                participant.next_timeout = self.last_now;
                self.maybe_dead = true;
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
            let dead: Vec<ParticipantId> = if std::mem::take(&mut self.maybe_dead) {
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
}

#[cfg(test)]
mod tests;
