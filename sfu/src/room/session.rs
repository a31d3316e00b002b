//! The session: who is in the room and what the tier and the moderators allow. No media here.
//!
//! `Session` is a plain state machine. Time comes in with every input; the caller drains
//! [`Session::poll_output`] until it returns [`SessionOutput::Timeout`], then calls
//! `handle_input(SessionInput::Timeout(..))` at that instant or when another input arrives.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use models::{Role, UserId, VisioPolicy};

use super::hands::HandQueue;
use crate::error::SfuError;
use crate::proto::{
    CloseReason, Command, LeaveReason, MediaKind, ParticipantId, ParticipantParams, TrackSource,
};

/// Far enough to mean "nothing scheduled" while staying a valid `Instant`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub policy: VisioPolicy,
    /// Warnings before the end of a time-limited session, in any order.
    pub warn_before_end: Vec<Duration>,
    pub empty_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionInput {
    Join {
        now: Instant,
        participant_id: ParticipantId,
        params: ParticipantParams,
    },
    Leave {
        now: Instant,
        participant_id: ParticipantId,
        reason: LeaveReason,
    },
    Command {
        now: Instant,
        from: ParticipantId,
        command: Command,
    },
    /// The class backend removed this user from the class.
    MemberRemoved {
        now: Instant,
        user_id: UserId,
    },
    /// The class backend changed this user's role in the class.
    RoleChanged {
        now: Instant,
        user_id: UserId,
        role: Role,
    },
    Close {
        now: Instant,
        reason: CloseReason,
    },
    Timeout(Instant),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    Started,
    Waiting {
        participant_id: ParticipantId,
    },
    Admitted {
        participant_id: ParticipantId,
    },
    /// Every departure, whatever its cause, including those of a closing session.
    Removed {
        participant_id: ParticipantId,
        reason: LeaveReason,
    },
    TimeWarning {
        remaining: Duration,
    },
    MuteChanged {
        participant_id: ParticipantId,
        kind: MediaKind,
        muted: bool,
        by_moderator: bool,
    },
    UnmuteRequested {
        participant_id: ParticipantId,
        kind: MediaKind,
    },
    LockChanged {
        locked: bool,
    },
    RoleChanged {
        participant_id: ParticipantId,
        role: Role,
    },
    /// The raised hands changed; here they are, oldest first.
    HandsChanged {
        raised: Vec<ParticipantId>,
    },
    /// A moderator gave the floor to this participant.
    FloorGiven {
        participant_id: ParticipantId,
    },
    /// Emitted once, after the `Removed` of every member.
    Closed {
        reason: CloseReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutput {
    Event(SessionEvent),
    Timeout(Instant),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    /// Arrived before a teacher or admin started the session.
    Waiting,
    Active,
}

/// Whether a participant's microphone or camera is off, and whether a moderator holds it off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MuteState {
    pub muted: bool,
    /// Set by a moderator's mute; cleared by their request to unmute. Moderators ignore it.
    pub held_by_moderator: bool,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub participant_id: ParticipantId,
    pub user_id: UserId,
    pub display_name: String,
    pub role: Role,
    pub status: MemberStatus,
    pub audio: MuteState,
    pub video: MuteState,
}

impl Member {
    fn mute_state_mut(&mut self, kind: MediaKind) -> &mut MuteState {
        match kind {
            MediaKind::Audio => &mut self.audio,
            MediaKind::Video => &mut self.video,
        }
    }

    pub fn mute_state(&self, kind: MediaKind) -> MuteState {
        match kind {
            MediaKind::Audio => self.audio,
            MediaKind::Video => self.video,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nobody has started the session: parents wait.
    Idle,
    Running {
        started_at: Instant,
    },
    Closed(CloseReason),
}

/// What moderators hold against a user for the rest of the session. Kept by user, not by
/// connection: a pupil who reloads the page, opens another tab or reconnects comes back muted,
/// camera off or not at all, as the moderator left them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Holds {
    audio: bool,
    video: bool,
    removed: bool,
}

impl Holds {
    fn kind_mut(&mut self, kind: MediaKind) -> &mut bool {
        match kind {
            MediaKind::Audio => &mut self.audio,
            MediaKind::Video => &mut self.video,
        }
    }
}

#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    /// In order of arrival, which is the order waiting parents are admitted in.
    members: Vec<Member>,
    holds: std::collections::HashMap<UserId, Holds>,
    hands: HandQueue,
    locked: bool,
    /// Warnings still to send, largest first.
    pending_warnings: Vec<Duration>,
    empty_since: Option<Instant>,
    last_now: Instant,
    outputs: VecDeque<SessionEvent>,
}

impl Session {
    pub fn new(config: SessionConfig, now: Instant) -> Session {
        Session {
            config,
            state: State::Idle,
            members: Vec::new(),
            holds: std::collections::HashMap::new(),
            hands: HandQueue::default(),
            locked: false,
            pending_warnings: Vec::new(),
            empty_since: None,
            last_now: now,
            outputs: VecDeque::new(),
        }
    }

    pub fn is_alive(&self) -> bool {
        !matches!(self.state, State::Closed(_))
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.state {
            State::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    pub fn started_at(&self) -> Option<Instant> {
        match self.state {
            State::Running { started_at } => Some(started_at),
            _ => None,
        }
    }

    /// The raised hands, oldest first.
    pub fn raised_hands(&self) -> &[ParticipantId] {
        self.hands.raised()
    }

    pub fn is_locked(&self) -> bool {
        self.locked
    }

    pub fn policy(&self) -> &VisioPolicy {
        &self.config.policy
    }

    /// Time left before the session closes, if it runs and has a limit.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        Some(self.ends_at()?.saturating_duration_since(now))
    }

    pub fn member(&self, participant_id: &ParticipantId) -> Option<&Member> {
        self.members.iter().find(|m| &m.participant_id == participant_id)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    pub fn n_active(&self) -> usize {
        self.members.iter().filter(|m| m.status == MemberStatus::Active).count()
    }

    /// Whether `participant_id` may publish a track of `source`. Screen sharing is for teachers
    /// and admins only; the server enforces it, whatever the client shows.
    pub fn may_publish(&self, participant_id: &ParticipantId, source: TrackSource) -> Result<(), SfuError> {
        let member = self.member(participant_id).ok_or(SfuError::ParticipantNotFound)?;
        if source == TrackSource::ScreenShare && !member.role.administers() {
            return Err(SfuError::ForbiddenRole);
        }
        Ok(())
    }

    pub fn handle_input(&mut self, input: SessionInput) -> Result<(), SfuError> {
        match input {
            SessionInput::Join { now, participant_id, params } => {
                self.advance(now);
                self.join(now, participant_id, params)
            }
            SessionInput::Leave { now, participant_id, reason } => {
                self.advance(now);
                self.remove(now, &participant_id, reason).ok_or(SfuError::ParticipantNotFound)
            }
            SessionInput::Command { now, from, command } => {
                self.advance(now);
                self.command(now, &from, command)
            }
            SessionInput::RoleChanged { now, user_id, role } => {
                self.advance(now);
                for member in self.members.iter_mut().filter(|m| m.user_id == user_id && m.role != role) {
                    member.role = role;
                    self.outputs.push_back(SessionEvent::RoleChanged {
                        participant_id: member.participant_id.clone(),
                        role,
                    });
                }
                Ok(())
            }
            SessionInput::MemberRemoved { now, user_id } => {
                self.advance(now);
                let ids: Vec<ParticipantId> = self
                    .members
                    .iter()
                    .filter(|m| m.user_id == user_id)
                    .map(|m| m.participant_id.clone())
                    .collect();
                for participant_id in ids {
                    self.remove(now, &participant_id, LeaveReason::RemovedFromClass);
                }
                Ok(())
            }
            SessionInput::Close { now, reason } => {
                self.advance(now);
                self.close(reason);
                Ok(())
            }
            SessionInput::Timeout(now) => {
                self.advance(now);
                Ok(())
            }
        }
    }

    pub fn poll_output(&mut self) -> SessionOutput {
        if let Some(event) = self.outputs.pop_front() {
            return SessionOutput::Event(event);
        }
        SessionOutput::Timeout(self.next_deadline().unwrap_or(self.last_now + IDLE_TIMEOUT))
    }

    fn ends_at(&self) -> Option<Instant> {
        match self.state {
            State::Running { started_at } => Some(started_at + self.config.policy.max_duration?),
            _ => None,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if !self.is_alive() {
            return None;
        }
        let ends_at = self.ends_at();
        let next_warning = ends_at.zip(self.pending_warnings.first()).map(|(end, warn)| end - *warn);
        let empty_deadline = self.empty_since.map(|since| since + self.config.empty_timeout);
        [ends_at, next_warning, empty_deadline].into_iter().flatten().min()
    }

    /// Fires whatever is due at `now`: warnings, the end of the session, the empty-room close.
    fn advance(&mut self, now: Instant) {
        // Inputs may arrive slightly out of order from the shell; time never goes back here.
        let now = now.max(self.last_now);
        self.last_now = now;
        if let Some(ends_at) = self.ends_at() {
            while let Some(&warn) = self.pending_warnings.first() {
                if now < ends_at - warn {
                    break;
                }
                self.pending_warnings.remove(0);
                if now < ends_at {
                    self.outputs.push_back(SessionEvent::TimeWarning { remaining: ends_at - now });
                }
            }
            if now >= ends_at {
                self.close(CloseReason::MaxDuration);
                return;
            }
        }
        if let Some(since) = self.empty_since {
            if now >= since + self.config.empty_timeout {
                self.close(CloseReason::Empty);
            }
        }
    }

    fn join(
        &mut self,
        now: Instant,
        participant_id: ParticipantId,
        params: ParticipantParams,
    ) -> Result<(), SfuError> {
        if !self.is_alive() {
            return Err(SfuError::RoomClosed);
        }
        if self.member(&participant_id).is_some() {
            return Err(SfuError::InvalidTrack("participant id already in the room".into()));
        }
        let is_moderator = params.role.administers();
        let holds = self.holds.get(&params.user_id).copied().unwrap_or_default();
        if holds.removed {
            return Err(SfuError::RemovedFromSession);
        }
        if self.locked && !is_moderator {
            return Err(SfuError::SessionLocked);
        }
        let max_participants = self.config.policy.max_participants;
        // A user who joins again replaces their previous connection (a reloaded tab), so they
        // do not count against the limit twice. Checked before the limit for that reason.
        let n_others = self.members.iter().filter(|m| m.user_id != params.user_id).count() as u32;
        let starts_session = self.state == State::Idle && is_moderator;
        // The moderator who starts the session always gets in; waiting parents beyond the limit
        // are the ones turned away, see `start`.
        if !starts_session && n_others >= max_participants {
            return Err(SfuError::RoomFull { max_participants });
        }
        let duplicates: Vec<ParticipantId> = self
            .members
            .iter()
            .filter(|m| m.user_id == params.user_id)
            .map(|m| m.participant_id.clone())
            .collect();
        for duplicate in duplicates {
            // Not `remove`: the room must not count as empty, and close, in between.
            self.members.retain(|m| m.participant_id != duplicate);
            self.forget_hand(&duplicate);
            self.outputs.push_back(SessionEvent::Removed {
                participant_id: duplicate,
                reason: LeaveReason::DuplicateIdentity,
            });
        }

        let member = Member {
            participant_id: participant_id.clone(),
            user_id: params.user_id,
            display_name: params.display_name,
            role: params.role,
            status: MemberStatus::Waiting,
            // What a moderator held off stays off on the new connection.
            audio: MuteState { muted: holds.audio, held_by_moderator: holds.audio },
            video: MuteState { muted: holds.video, held_by_moderator: holds.video },
        };
        let joined_id = participant_id.clone();
        match self.state {
            State::Idle if starts_session => {
                // The moderator goes first so that the waiting parents fill the remaining places.
                self.members.insert(0, member);
                self.start(now);
            }
            State::Idle => {
                self.members.push(member);
                self.outputs.push_back(SessionEvent::Waiting { participant_id });
            }
            State::Running { .. } => {
                self.members.push(member);
                self.activate(&participant_id);
                self.empty_since = None;
            }
            State::Closed(_) => unreachable!("checked by is_alive above"),
        }
        // Everyone, the returning user's page included, learns that the hold is still on.
        for (kind, held) in [(MediaKind::Audio, holds.audio), (MediaKind::Video, holds.video)] {
            if held {
                self.outputs.push_back(SessionEvent::MuteChanged {
                    participant_id: joined_id.clone(),
                    kind,
                    muted: true,
                    by_moderator: true,
                });
            }
        }
        Ok(())
    }

    fn start(&mut self, now: Instant) {
        self.state = State::Running { started_at: now };
        let max_duration = self.config.policy.max_duration;
        let mut warnings: Vec<Duration> = self
            .config
            .warn_before_end
            .iter()
            .copied()
            .filter(|warn| max_duration.is_some_and(|max| *warn < max))
            .collect();
        warnings.sort_by(|a, b| b.cmp(a));
        warnings.dedup();
        self.pending_warnings = warnings;
        self.outputs.push_back(SessionEvent::Started);

        let max_participants = self.config.policy.max_participants as usize;
        let waiting: Vec<ParticipantId> = self.members.iter().map(|m| m.participant_id.clone()).collect();
        for (idx, participant_id) in waiting.iter().enumerate() {
            if idx < max_participants {
                self.activate(participant_id);
            }
        }
        for participant_id in waiting.iter().skip(max_participants) {
            self.remove(now, participant_id, LeaveReason::RoomFull);
        }
    }

    fn activate(&mut self, participant_id: &ParticipantId) {
        if let Some(member) = self.members.iter_mut().find(|m| &m.participant_id == participant_id) {
            member.status = MemberStatus::Active;
            self.outputs.push_back(SessionEvent::Admitted { participant_id: participant_id.clone() });
        }
    }

    fn remove(&mut self, now: Instant, participant_id: &ParticipantId, reason: LeaveReason) -> Option<()> {
        let idx = self.members.iter().position(|m| &m.participant_id == participant_id)?;
        self.members.remove(idx);
        self.outputs.push_back(SessionEvent::Removed { participant_id: participant_id.clone(), reason });
        if self.is_alive() {
            self.forget_hand(participant_id);
        }
        if !self.is_alive() {
            return Some(());
        }
        match self.state {
            State::Idle if self.members.is_empty() => self.close(CloseReason::Empty),
            State::Running { .. } if self.n_active() == 0 && self.empty_since.is_none() => {
                self.empty_since = Some(now);
            }
            _ => {}
        }
        Some(())
    }

    fn close(&mut self, reason: CloseReason) {
        if !self.is_alive() {
            return;
        }
        self.state = State::Closed(reason);
        for member in std::mem::take(&mut self.members) {
            self.outputs.push_back(SessionEvent::Removed {
                participant_id: member.participant_id,
                reason: LeaveReason::SessionClosed(reason),
            });
        }
        self.outputs.push_back(SessionEvent::Closed { reason });
    }

    fn command(&mut self, now: Instant, from: &ParticipantId, command: Command) -> Result<(), SfuError> {
        if !self.is_alive() {
            return Err(SfuError::RoomClosed);
        }
        let issuer = self.member(from).ok_or(SfuError::ParticipantNotFound)?;
        let issuer_role = issuer.role;
        let issuer_active = issuer.status == MemberStatus::Active;
        // Lowering someone else's hand is checked below, with the target known.
        let needs_moderator = !matches!(
            command,
            Command::SetMuted { .. }
                | Command::Pin { .. }
                | Command::E2eeKeys { .. }
                | Command::RaiseHand
                | Command::LowerHand { .. }
        );
        if needs_moderator && !issuer_role.administers() {
            return Err(SfuError::ForbiddenRole);
        }
        match command {
            Command::Mute { target } => {
                self.require_member(&target)?;
                self.moderator_turn_off(&target, MediaKind::Audio);
            }
            Command::MuteAll => {
                let targets: Vec<ParticipantId> = self
                    .members
                    .iter()
                    .filter(|m| &m.participant_id != from)
                    .map(|m| m.participant_id.clone())
                    .collect();
                for target in targets {
                    self.moderator_turn_off(&target, MediaKind::Audio);
                }
            }
            Command::DisableCamera { target } => {
                self.require_member(&target)?;
                self.moderator_turn_off(&target, MediaKind::Video);
            }
            Command::RequestUnmute { target, kind } => {
                let member = self.member_mut(&target)?;
                member.mute_state_mut(kind).held_by_moderator = false;
                let user_id = member.user_id.clone();
                if let Some(holds) = self.holds.get_mut(&user_id) {
                    *holds.kind_mut(kind) = false;
                }
                self.outputs.push_back(SessionEvent::UnmuteRequested { participant_id: target, kind });
            }
            Command::Remove { target } => {
                let user_id = self.member(&target).ok_or(SfuError::ParticipantNotFound)?.user_id.clone();
                self.holds.entry(user_id).or_default().removed = true;
                self.remove(now, &target, LeaveReason::RemovedByModerator);
            }
            Command::Lock { locked } => {
                if self.locked != locked {
                    self.locked = locked;
                    self.outputs.push_back(SessionEvent::LockChanged { locked });
                }
            }
            Command::EndSession => self.close(CloseReason::EndedByModerator),
            // What one sees on one's own stage is the room's business, not the session's.
            Command::Pin { participant } => {
                if let Some(target) = participant {
                    self.require_member(&target)?;
                }
            }
            Command::SetMuted { kind, muted } => {
                let member = self.member_mut(from)?;
                let state = member.mute_state_mut(kind);
                if !muted && state.held_by_moderator && !issuer_role.administers() {
                    return Err(SfuError::MutedByModerator);
                }
                if state.muted != muted {
                    state.muted = muted;
                    self.outputs.push_back(SessionEvent::MuteChanged {
                        participant_id: from.clone(),
                        kind,
                        muted,
                        by_moderator: false,
                    });
                }
            }
            command @ (Command::RaiseHand | Command::LowerHand { .. } | Command::GiveFloor { .. }) => {
                self.floor_command(now, from, issuer_role, issuer_active, command)?;
            }
            // Sealed keys are the room's (`room::e2ee`), which relays them before the session
            // sees any command: nothing of the session's state changes with them.
            Command::E2eeKeys { .. } => {}
        }
        Ok(())
    }

    fn require_member(&self, participant_id: &ParticipantId) -> Result<(), SfuError> {
        self.member(participant_id).map(|_| ()).ok_or(SfuError::ParticipantNotFound)
    }

    fn member_mut(&mut self, participant_id: &ParticipantId) -> Result<&mut Member, SfuError> {
        self.members
            .iter_mut()
            .find(|m| &m.participant_id == participant_id)
            .ok_or(SfuError::ParticipantNotFound)
    }

    fn moderator_turn_off(&mut self, target: &ParticipantId, kind: MediaKind) {
        let Some(member) = self.members.iter_mut().find(|m| &m.participant_id == target) else {
            return;
        };
        *self.holds.entry(member.user_id.clone()).or_default().kind_mut(kind) = true;
        let state = member.mute_state_mut(kind);
        state.held_by_moderator = true;
        let changed = !state.muted;
        state.muted = true;
        if changed {
            self.outputs.push_back(SessionEvent::MuteChanged {
                participant_id: target.clone(),
                kind,
                muted: true,
                by_moderator: true,
            });
        }
    }
}

mod floor;
#[cfg(test)]
mod tests;
