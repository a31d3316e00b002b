use std::time::{Duration, Instant};

use models::{Role, Tier, TierPolicy, UserId};

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

pub(super) fn config(tier: Tier) -> SessionConfig {
    SessionConfig {
        // Unwrap: the test only builds sessions for tiers that have visio.
        policy: TierPolicy::offer(tier).visio.unwrap(),
        warn_before_end: vec![5 * MINUTE, MINUTE],
        empty_timeout: Duration::from_secs(30),
    }
}

pub(super) fn pid(raw: &str) -> ParticipantId {
    ParticipantId::new(raw).unwrap()
}

pub(super) fn params(user: &str, role: Role) -> ParticipantParams {
    ParticipantParams {
        user_id: UserId::new(user).unwrap(),
        display_name: user.to_owned(),
        role,
        e2ee_public_key: None,
    }
}

pub(super) fn join(session: &mut Session, now: Instant, id: &str, role: Role) -> Result<(), SfuError> {
    session.handle_input(SessionInput::Join { now, participant_id: pid(id), params: params(id, role) })
}

pub(super) fn command(
    session: &mut Session,
    now: Instant,
    from: &str,
    command: Command,
) -> Result<(), SfuError> {
    session.handle_input(SessionInput::Command { now, from: pid(from), command })
}

pub(super) fn drain(session: &mut Session) -> Vec<SessionEvent> {
    let mut events = Vec::new();
    while let SessionOutput::Event(event) = session.poll_output() {
        events.push(event);
    }
    events
}

pub(super) fn next_timeout(session: &mut Session) -> Instant {
    loop {
        if let SessionOutput::Timeout(at) = session.poll_output() {
            return at;
        }
    }
}

/// A Standard session started by a teacher at `t0`.
pub(super) fn standard_session(t0: Instant) -> Session {
    let mut session = Session::new(config(Tier::Standard), t0);
    join(&mut session, t0, "teacher", Role::Teacher).unwrap();
    drain(&mut session);
    session
}

#[test]
fn session_closes_after_30_minutes() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    session.handle_input(SessionInput::Timeout(t0 + 30 * MINUTE - Duration::from_secs(1))).unwrap();
    assert!(session.is_alive());
    session.handle_input(SessionInput::Timeout(t0 + 30 * MINUTE)).unwrap();
    assert_eq!(session.close_reason(), Some(CloseReason::MaxDuration));
    let events = drain(&mut session);
    assert!(events.contains(&SessionEvent::Removed {
        participant_id: pid("teacher"),
        reason: LeaveReason::SessionClosed(CloseReason::MaxDuration)
    }));
    assert_eq!(events.last(), Some(&SessionEvent::Closed { reason: CloseReason::MaxDuration }));
}

#[test]
fn standard_session_warns_at_25_and_29_minutes() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    // The core asks to be woken exactly when each warning is due.
    assert_eq!(next_timeout(&mut session), t0 + 25 * MINUTE);
    session.handle_input(SessionInput::Timeout(t0 + 25 * MINUTE - Duration::from_millis(1))).unwrap();
    assert_eq!(drain(&mut session), vec![]);
    session.handle_input(SessionInput::Timeout(t0 + 25 * MINUTE)).unwrap();
    assert_eq!(drain(&mut session), vec![SessionEvent::TimeWarning { remaining: 5 * MINUTE }]);
    assert_eq!(next_timeout(&mut session), t0 + 29 * MINUTE);
    session.handle_input(SessionInput::Timeout(t0 + 29 * MINUTE)).unwrap();
    assert_eq!(drain(&mut session), vec![SessionEvent::TimeWarning { remaining: MINUTE }]);
    assert_eq!(next_timeout(&mut session), t0 + 30 * MINUTE);
}

#[test]
fn late_timeout_sends_each_warning_once_and_still_closes() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    session.handle_input(SessionInput::Timeout(t0 + 29 * MINUTE + Duration::from_secs(30))).unwrap();
    let events = drain(&mut session);
    assert_eq!(events.len(), 2, "{events:?}");
    session.handle_input(SessionInput::Timeout(t0 + 31 * MINUTE)).unwrap();
    assert_eq!(session.close_reason(), Some(CloseReason::MaxDuration));
}

#[test]
fn plus_session_has_no_timer() {
    let t0 = Instant::now();
    let mut session = Session::new(config(Tier::Plus), t0);
    join(&mut session, t0, "teacher", Role::Teacher).unwrap();
    drain(&mut session);
    for hours in [1, 5, 24] {
        session.handle_input(SessionInput::Timeout(t0 + Duration::from_secs(hours * 3600))).unwrap();
        assert_eq!(drain(&mut session), vec![]);
    }
    assert!(session.is_alive());
    assert_eq!(session.remaining(t0), None);
}

#[test]
fn shortened_duration_from_configuration() {
    let t0 = Instant::now();
    let mut config = config(Tier::Standard);
    config.policy.max_duration = Some(Duration::from_secs(90));
    let mut session = Session::new(config, t0);
    join(&mut session, t0, "teacher", Role::Teacher).unwrap();
    drain(&mut session);
    // Only the 1-minute warning fits in a 90-second session.
    session.handle_input(SessionInput::Timeout(t0 + Duration::from_secs(30))).unwrap();
    assert_eq!(drain(&mut session), vec![SessionEvent::TimeWarning { remaining: MINUTE }]);
    session.handle_input(SessionInput::Timeout(t0 + Duration::from_secs(90))).unwrap();
    assert_eq!(session.close_reason(), Some(CloseReason::MaxDuration));
}

#[test]
fn ninth_participant_in_standard_is_refused() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    for idx in 1..8 {
        join(&mut session, t0, &format!("parent{idx}"), Role::Parent).unwrap();
    }
    assert_eq!(session.n_active(), 8);
    assert_eq!(
        join(&mut session, t0, "parent8", Role::Parent),
        Err(SfuError::RoomFull { max_participants: 8 })
    );
    assert_eq!(
        join(&mut session, t0, "admin", Role::Admin).map_err(|e| e.code()),
        Err(models::ErrorCode::RoomFull)
    );
    // Somebody leaves: there is room again.
    session
        .handle_input(SessionInput::Leave {
            now: t0,
            participant_id: pid("parent3"),
            reason: LeaveReason::Left,
        })
        .unwrap();
    join(&mut session, t0, "parent8", Role::Parent).unwrap();
}

#[test]
fn seventy_first_participant_in_plus_is_refused() {
    let t0 = Instant::now();
    let mut session = Session::new(config(Tier::Plus), t0);
    join(&mut session, t0, "teacher", Role::Teacher).unwrap();
    for idx in 1..70 {
        join(&mut session, t0, &format!("p{idx}"), Role::Parent).unwrap();
    }
    assert_eq!(join(&mut session, t0, "p70", Role::Parent), Err(SfuError::RoomFull { max_participants: 70 }));
}

#[test]
fn parent_waits_until_a_teacher_starts() {
    let t0 = Instant::now();
    let mut session = Session::new(config(Tier::Standard), t0);
    join(&mut session, t0, "parent", Role::Parent).unwrap();
    assert_eq!(drain(&mut session), vec![SessionEvent::Waiting { participant_id: pid("parent") }]);
    assert!(!session.is_running());
    // Waiting does not run the clock.
    session.handle_input(SessionInput::Timeout(t0 + 40 * MINUTE)).unwrap();
    assert!(session.is_alive());

    let t1 = t0 + 40 * MINUTE;
    join(&mut session, t1, "teacher", Role::Teacher).unwrap();
    assert_eq!(
        drain(&mut session),
        vec![
            SessionEvent::Started,
            SessionEvent::Admitted { participant_id: pid("teacher") },
            SessionEvent::Admitted { participant_id: pid("parent") },
        ]
    );
    assert_eq!(session.remaining(t1), Some(30 * MINUTE));
}

#[test]
fn waiting_parents_beyond_the_limit_are_turned_away_at_start() {
    let t0 = Instant::now();
    let mut session = Session::new(config(Tier::Standard), t0);
    for idx in 0..8 {
        join(&mut session, t0, &format!("parent{idx}"), Role::Parent).unwrap();
    }
    assert_eq!(
        join(&mut session, t0, "parent8", Role::Parent),
        Err(SfuError::RoomFull { max_participants: 8 })
    );
    drain(&mut session);
    join(&mut session, t0, "teacher", Role::Teacher).unwrap();
    let events = drain(&mut session);
    assert_eq!(session.n_active(), 8);
    assert!(events
        .contains(&SessionEvent::Removed { participant_id: pid("parent7"), reason: LeaveReason::RoomFull }));
}

#[test]
fn only_moderators_end_or_moderate() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    join(&mut session, t0, "parent", Role::Parent).unwrap();
    for cmd in [
        Command::EndSession,
        Command::MuteAll,
        Command::Mute { target: pid("teacher") },
        Command::Remove { target: pid("teacher") },
        Command::Lock { locked: true },
        Command::DisableCamera { target: pid("teacher") },
    ] {
        assert_eq!(command(&mut session, t0, "parent", cmd), Err(SfuError::ForbiddenRole));
    }
    assert!(session.is_alive());
    command(&mut session, t0, "teacher", Command::EndSession).unwrap();
    assert_eq!(session.close_reason(), Some(CloseReason::EndedByModerator));
}

#[test]
fn moderator_mute_holds_until_unmute_is_requested() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    join(&mut session, t0, "parent", Role::Parent).unwrap();
    drain(&mut session);
    command(&mut session, t0, "teacher", Command::Mute { target: pid("parent") }).unwrap();
    assert_eq!(
        drain(&mut session),
        vec![SessionEvent::MuteChanged {
            participant_id: pid("parent"),
            kind: MediaKind::Audio,
            muted: true,
            by_moderator: true
        }]
    );
    let unmute = Command::SetMuted { kind: MediaKind::Audio, muted: false };
    assert_eq!(command(&mut session, t0, "parent", unmute.clone()), Err(SfuError::MutedByModerator));
    assert!(session.member(&pid("parent")).unwrap().audio.muted);

    command(
        &mut session,
        t0,
        "teacher",
        Command::RequestUnmute { target: pid("parent"), kind: MediaKind::Audio },
    )
    .unwrap();
    assert_eq!(
        drain(&mut session),
        vec![SessionEvent::UnmuteRequested { participant_id: pid("parent"), kind: MediaKind::Audio }]
    );
    // Asking does not unmute: the participant decides.
    assert!(session.member(&pid("parent")).unwrap().audio.muted);
    command(&mut session, t0, "parent", unmute).unwrap();
    assert!(!session.member(&pid("parent")).unwrap().audio.muted);
}

#[test]
fn mute_all_spares_the_issuer_and_camera_off_holds_video() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    join(&mut session, t0, "a", Role::Parent).unwrap();
    join(&mut session, t0, "b", Role::Admin).unwrap();
    command(&mut session, t0, "teacher", Command::MuteAll).unwrap();
    assert!(!session.member(&pid("teacher")).unwrap().audio.muted);
    assert!(session.member(&pid("a")).unwrap().audio.muted);
    assert!(session.member(&pid("b")).unwrap().audio.muted);
    // A moderator may lift a mute on themselves.
    command(&mut session, t0, "b", Command::SetMuted { kind: MediaKind::Audio, muted: false }).unwrap();

    command(&mut session, t0, "teacher", Command::DisableCamera { target: pid("a") }).unwrap();
    assert!(session.member(&pid("a")).unwrap().video.muted);
    assert_eq!(
        command(&mut session, t0, "a", Command::SetMuted { kind: MediaKind::Video, muted: false }),
        Err(SfuError::MutedByModerator)
    );
}

#[test]
fn member_removed_from_class_is_disconnected() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    join(&mut session, t0, "parent", Role::Parent).unwrap();
    drain(&mut session);
    session
        .handle_input(SessionInput::MemberRemoved { now: t0, user_id: UserId::new("parent").unwrap() })
        .unwrap();
    assert_eq!(
        drain(&mut session),
        vec![SessionEvent::Removed { participant_id: pid("parent"), reason: LeaveReason::RemovedFromClass }]
    );
    assert!(session.member(&pid("parent")).is_none());
}

#[test]
fn moderator_removes_participant() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    join(&mut session, t0, "parent", Role::Parent).unwrap();
    drain(&mut session);
    command(&mut session, t0, "teacher", Command::Remove { target: pid("parent") }).unwrap();
    assert_eq!(
        drain(&mut session),
        vec![SessionEvent::Removed {
            participant_id: pid("parent"),
            reason: LeaveReason::RemovedByModerator
        }]
    );
}

#[test]
fn locked_session_refuses_new_parents_but_not_moderators() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    command(&mut session, t0, "teacher", Command::Lock { locked: true }).unwrap();
    assert_eq!(join(&mut session, t0, "parent", Role::Parent), Err(SfuError::SessionLocked));
    join(&mut session, t0, "admin", Role::Admin).unwrap();
    command(&mut session, t0, "teacher", Command::Lock { locked: false }).unwrap();
    join(&mut session, t0, "parent", Role::Parent).unwrap();
}

#[test]
fn rejoin_replaces_previous_connection() {
    let t0 = Instant::now();
    let mut session = Session::new(config(Tier::Standard), t0);
    join(&mut session, t0, "parent", Role::Parent).unwrap();
    drain(&mut session);
    let params = params("parent", Role::Parent);
    session.handle_input(SessionInput::Join { now: t0, participant_id: pid("parent-2"), params }).unwrap();
    assert_eq!(
        drain(&mut session),
        vec![
            SessionEvent::Removed { participant_id: pid("parent"), reason: LeaveReason::DuplicateIdentity },
            SessionEvent::Waiting { participant_id: pid("parent-2") },
        ]
    );
    assert!(session.is_alive());
}

#[test]
fn empty_session_closes_after_grace_period() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    let t1 = t0 + MINUTE;
    session
        .handle_input(SessionInput::Leave {
            now: t1,
            participant_id: pid("teacher"),
            reason: LeaveReason::Left,
        })
        .unwrap();
    assert_eq!(next_timeout(&mut session), t1 + Duration::from_secs(30));
    session.handle_input(SessionInput::Timeout(t1 + Duration::from_secs(29))).unwrap();
    assert!(session.is_alive());
    session.handle_input(SessionInput::Timeout(t1 + Duration::from_secs(30))).unwrap();
    assert_eq!(session.close_reason(), Some(CloseReason::Empty));
}

#[test]
fn screen_share_is_for_moderators() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    join(&mut session, t0, "parent", Role::Parent).unwrap();
    assert_eq!(session.may_publish(&pid("parent"), TrackSource::ScreenShare), Err(SfuError::ForbiddenRole));
    assert_eq!(session.may_publish(&pid("parent"), TrackSource::Camera), Ok(()));
    assert_eq!(session.may_publish(&pid("teacher"), TrackSource::ScreenShare), Ok(()));
}

fn join_as(session: &mut Session, now: Instant, id: &str, user: &str, role: Role) -> Result<(), SfuError> {
    session.handle_input(SessionInput::Join { now, participant_id: pid(id), params: params(user, role) })
}

fn leave(session: &mut Session, now: Instant, id: &str) {
    session
        .handle_input(SessionInput::Leave { now, participant_id: pid(id), reason: LeaveReason::Left })
        .unwrap();
}

#[test]
fn moderator_holds_follow_the_user_across_reconnections() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    join_as(&mut session, t0, "pupil-tab1", "pupil", Role::Parent).unwrap();
    command(&mut session, t0, "teacher", Command::Mute { target: pid("pupil-tab1") }).unwrap();
    command(&mut session, t0, "teacher", Command::DisableCamera { target: pid("pupil-tab1") }).unwrap();
    drain(&mut session);

    // The pupil reconnects: the new connection starts muted, camera off, both held.
    leave(&mut session, t0, "pupil-tab1");
    join_as(&mut session, t0, "pupil-tab2", "pupil", Role::Parent).unwrap();
    let member = session.member(&pid("pupil-tab2")).unwrap();
    let held = MuteState { muted: true, held_by_moderator: true };
    assert_eq!((member.audio, member.video), (held, held));
    let events = drain(&mut session);
    for kind in [MediaKind::Audio, MediaKind::Video] {
        let told = SessionEvent::MuteChanged {
            participant_id: pid("pupil-tab2"),
            kind,
            muted: true,
            by_moderator: true,
        };
        assert!(events.contains(&told), "{kind:?}: {events:?}");
    }
    let unmute = Command::SetMuted { kind: MediaKind::Audio, muted: false };
    assert!(matches!(
        command(&mut session, t0, "pupil-tab2", unmute.clone()),
        Err(SfuError::MutedByModerator)
    ));

    // A second tab replacing the first keeps the holds too.
    join_as(&mut session, t0, "pupil-tab3", "pupil", Role::Parent).unwrap();
    assert!(session.member(&pid("pupil-tab3")).unwrap().audio.held_by_moderator);

    // Once asked to unmute, the pupil may, and a later connection is no longer held.
    let request = Command::RequestUnmute { target: pid("pupil-tab3"), kind: MediaKind::Audio };
    command(&mut session, t0, "teacher", request).unwrap();
    command(&mut session, t0, "pupil-tab3", unmute).unwrap();
    leave(&mut session, t0, "pupil-tab3");
    join_as(&mut session, t0, "pupil-tab4", "pupil", Role::Parent).unwrap();
    let member = session.member(&pid("pupil-tab4")).unwrap();
    assert_eq!(member.audio, MuteState::default(), "audio released");
    assert!(member.video.held_by_moderator, "the camera is still held");
}

#[test]
fn a_removed_user_cannot_come_back_to_the_session() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    join_as(&mut session, t0, "pupil-tab1", "pupil", Role::Parent).unwrap();
    join(&mut session, t0, "parent", Role::Parent).unwrap();
    command(&mut session, t0, "teacher", Command::Remove { target: pid("pupil-tab1") }).unwrap();
    assert!(matches!(
        join_as(&mut session, t0 + MINUTE, "pupil-tab2", "pupil", Role::Parent),
        Err(SfuError::RemovedFromSession)
    ));
    assert_eq!(SfuError::RemovedFromSession.code(), models::ErrorCode::RemovedFromSession);
    // Others are not affected, and a new session starts with a clean slate.
    leave(&mut session, t0, "parent");
    join(&mut session, t0, "parent", Role::Parent).unwrap();
    let mut next = standard_session(t0 + 60 * MINUTE);
    join_as(&mut next, t0 + 60 * MINUTE, "pupil-tab3", "pupil", Role::Parent).unwrap();
}

#[test]
fn a_demoted_teacher_loses_moderation_at_once() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    join(&mut session, t0, "parent", Role::Parent).unwrap();
    drain(&mut session);
    let input =
        SessionInput::RoleChanged { now: t0, user_id: UserId::new("teacher").unwrap(), role: Role::Parent };
    session.handle_input(input).unwrap();
    assert_eq!(
        drain(&mut session),
        vec![SessionEvent::RoleChanged { participant_id: pid("teacher"), role: Role::Parent }]
    );
    assert!(matches!(
        command(&mut session, t0, "teacher", Command::Mute { target: pid("parent") }),
        Err(SfuError::ForbiddenRole)
    ));
    assert!(matches!(
        command(&mut session, t0, "teacher", Command::EndSession),
        Err(SfuError::ForbiddenRole)
    ));
    // Promoted, a parent moderates; the same role again changes nothing.
    let promote =
        SessionInput::RoleChanged { now: t0, user_id: UserId::new("parent").unwrap(), role: Role::Teacher };
    session.handle_input(promote.clone()).unwrap();
    session.handle_input(promote).unwrap();
    assert_eq!(drain(&mut session).len(), 1);
    command(&mut session, t0, "parent", Command::Mute { target: pid("teacher") }).unwrap();
}
