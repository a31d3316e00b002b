use std::time::{Duration, Instant};

use models::{Role, Tier};

use super::super::tests::{command, config, drain, join, params, pid, standard_session};
use super::super::*;

fn hands_of(events: &[SessionEvent]) -> Vec<Vec<&str>> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::HandsChanged { raised } => Some(raised.iter().map(|p| p.as_str()).collect()),
            _ => None,
        })
        .collect()
}

#[test]
fn raised_hands_queue_in_order_and_leave_with_their_participant() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    for parent in ["p1", "p2", "p3"] {
        join(&mut session, t0, parent, Role::Parent).unwrap();
    }
    drain(&mut session);
    let s = Duration::from_secs(1);
    command(&mut session, t0 + s, "p2", Command::RaiseHand).unwrap();
    command(&mut session, t0 + 2 * s, "p1", Command::RaiseHand).unwrap();
    // Raising again: no change, nothing sent.
    command(&mut session, t0 + 3 * s, "p2", Command::RaiseHand).unwrap();
    command(&mut session, t0 + 3 * s, "p3", Command::RaiseHand).unwrap();
    assert_eq!(hands_of(&drain(&mut session)), [vec!["p2"], vec!["p2", "p1"], vec!["p2", "p1", "p3"]]);
    // One's own hand, with or without naming oneself.
    command(&mut session, t0 + 4 * s, "p1", Command::LowerHand { participant: Some(pid("p1")) }).unwrap();
    assert_eq!(hands_of(&drain(&mut session)), [vec!["p2", "p3"]]);
    // A participant who leaves takes their hand along.
    session
        .handle_input(SessionInput::Leave {
            now: t0 + 5 * s,
            participant_id: pid("p2"),
            reason: LeaveReason::Left,
        })
        .unwrap();
    assert_eq!(hands_of(&drain(&mut session)), [vec!["p3"]]);
    assert_eq!(session.raised_hands(), [pid("p3")]);
    // So does a user whose new tab replaces the old one.
    let mut replacement = params("p3", Role::Parent);
    replacement.display_name = "p3 again".into();
    session
        .handle_input(SessionInput::Join { now: t0 + 6 * s, participant_id: pid("p3b"), params: replacement })
        .unwrap();
    assert_eq!(hands_of(&drain(&mut session)), [Vec::<&str>::new()]);
}

#[test]
fn only_moderators_lower_others_hands_and_give_the_floor() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    join(&mut session, t0, "p1", Role::Parent).unwrap();
    join(&mut session, t0, "p2", Role::Parent).unwrap();
    command(&mut session, t0, "p1", Command::RaiseHand).unwrap();
    drain(&mut session);
    let lower_p1 = || Command::LowerHand { participant: Some(pid("p1")) };
    assert_eq!(command(&mut session, t0, "p2", lower_p1()), Err(SfuError::ForbiddenRole));
    assert_eq!(
        command(&mut session, t0, "p2", Command::GiveFloor { participant: pid("p1") }),
        Err(SfuError::ForbiddenRole)
    );
    assert_eq!(
        command(&mut session, t0, "p2", Command::GiveFloor { participant: pid("p2") }),
        Err(SfuError::ForbiddenRole)
    );
    assert!(drain(&mut session).is_empty());
    assert_eq!(session.raised_hands(), [pid("p1")]);
    assert_eq!(
        command(&mut session, t0, "teacher", Command::GiveFloor { participant: pid("nobody") }),
        Err(SfuError::ParticipantNotFound)
    );
    command(&mut session, t0, "teacher", lower_p1()).unwrap();
    assert_eq!(hands_of(&drain(&mut session)), [Vec::<&str>::new()]);
}

#[test]
fn giving_the_floor_lowers_the_hand_and_lifts_the_mute() {
    let t0 = Instant::now();
    let mut session = standard_session(t0);
    join(&mut session, t0, "p1", Role::Parent).unwrap();
    join(&mut session, t0, "p2", Role::Parent).unwrap();
    command(&mut session, t0, "teacher", Command::MuteAll).unwrap();
    command(&mut session, t0, "p1", Command::RaiseHand).unwrap();
    drain(&mut session);
    let unmute = Command::SetMuted { kind: MediaKind::Audio, muted: false };
    assert_eq!(command(&mut session, t0, "p1", unmute.clone()), Err(SfuError::MutedByModerator));

    command(&mut session, t0, "teacher", Command::GiveFloor { participant: pid("p1") }).unwrap();
    let events = drain(&mut session);
    assert_eq!(hands_of(&events), [Vec::<&str>::new()]);
    assert!(events.contains(&SessionEvent::FloorGiven { participant_id: pid("p1") }));
    command(&mut session, t0, "p1", unmute.clone()).unwrap();
    assert!(drain(&mut session).contains(&SessionEvent::MuteChanged {
        participant_id: pid("p1"),
        kind: MediaKind::Audio,
        muted: false,
        by_moderator: false,
    }));
    // The others stay muted; p1's user, back in a new tab, is not.
    assert_eq!(command(&mut session, t0, "p2", unmute), Err(SfuError::MutedByModerator));
    session
        .handle_input(SessionInput::Join {
            now: t0,
            participant_id: pid("p1b"),
            params: params("p1", Role::Parent),
        })
        .unwrap();
    assert_eq!(session.member(&pid("p1b")).map(|m| m.audio), Some(MuteState::default()));
}

#[test]
fn waiting_parents_cannot_raise_a_hand_and_spam_is_refused() {
    let t0 = Instant::now();
    let mut session = Session::new(config(Tier::Standard), t0);
    join(&mut session, t0, "waiting", Role::Parent).unwrap();
    assert_eq!(command(&mut session, t0, "waiting", Command::RaiseHand), Err(SfuError::NotAdmitted));
    join(&mut session, t0, "teacher", Role::Teacher).unwrap();
    drain(&mut session);
    let mut n_refused = 0;
    for n in 0..40u64 {
        let at = t0 + Duration::from_millis(50 * n);
        let change = if n % 2 == 0 { Command::RaiseHand } else { Command::LowerHand { participant: None } };
        if command(&mut session, at, "waiting", change) == Err(SfuError::TooManyHandChanges) {
            n_refused += 1;
        }
    }
    // 40 clicks in 2 s: the first raises (and their lowerings) go through; after them each
    // raise is refused and each lowering of the lowered hand changes nothing, without an event.
    let max_raises = crate::room::hands::MAX_RAISES;
    assert_eq!(hands_of(&drain(&mut session)).len(), 2 * max_raises);
    assert_eq!(n_refused, 20 - max_raises);
}
