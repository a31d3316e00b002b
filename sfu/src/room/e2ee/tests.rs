//! Sealed keys reach the one participant they name, from admitted participants with a key only;
//! the session's close says whether everyone admitted had a key.

use std::time::Instant;

use models::{Role, UserId};

use super::super::tests::{drain, offer, room};
use crate::error::SfuError;
use crate::proto::{
    CloseReason, Command, ParticipantEvent, ParticipantId, ParticipantParams, SealedKey, SfuEvent,
};
use crate::room::Room;

fn pid(id: &str) -> ParticipantId {
    ParticipantId::new(id).unwrap()
}

/// Joins `id`, with a public key if `e2ee` (the room does not read it: any text will do).
fn join(room: &mut Room, t0: Instant, id: &str, role: Role, e2ee: bool) {
    let params = ParticipantParams {
        user_id: UserId::new(id).unwrap(),
        display_name: id.to_owned(),
        role,
        e2ee_public_key: e2ee.then(|| format!("key-of-{id}")),
    };
    room.join(t0, pid(id), params, &offer(t0), &[], &[]).unwrap();
}

fn keys_for(recipients: &[&str]) -> Command {
    let keys = recipients.iter().map(|to| SealedKey { to: pid(to), sealed: format!("sealed-for-{to}") });
    Command::E2eeKeys { keys: keys.collect() }
}

/// The sealed keys in `events`, as (recipient, sender, sealed), in order.
fn sealed_keys(events: &[(ParticipantId, ParticipantEvent)]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter_map(|(to, event)| match event {
            ParticipantEvent::E2eeKey { from, sealed } => {
                Some((to.to_string(), from.to_string(), sealed.clone()))
            }
            _ => None,
        })
        .collect()
}

fn check_relayed(events: &[(ParticipantId, ParticipantEvent)], expected: &[(&str, &str)]) {
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(to, from)| (to.to_string(), from.to_string(), format!("sealed-for-{to}")))
        .collect();
    assert_eq!(sealed_keys(events), expected);
}

#[test]
fn a_sealed_key_reaches_its_recipient_and_nobody_else() {
    let t0 = Instant::now();
    let mut room = room(t0);
    join(&mut room, t0, "teacher", Role::Teacher, true);
    join(&mut room, t0, "a", Role::Parent, true);
    join(&mut room, t0, "b", Role::Parent, true);
    join(&mut room, t0, "clear", Role::Parent, false);
    let (events, _, _) = drain(&mut room);
    // The others learn each one's public key with its arrival, and whether it has none.
    let joined_key = |to: &str, who: &str| {
        events.iter().find_map(|(id, event)| match event {
            ParticipantEvent::ParticipantJoined(info)
                if id.as_str() == to && info.participant_id.as_str() == who =>
            {
                Some(info.e2ee_public_key.clone())
            }
            _ => None,
        })
    };
    assert_eq!(joined_key("teacher", "a"), Some(Some("key-of-a".to_owned())));
    assert_eq!(joined_key("a", "clear"), Some(None));
    let admitted_keys: Vec<Option<String>> = events
        .iter()
        .find_map(|(id, event)| match event {
            ParticipantEvent::Admitted { participants, .. } if id.as_str() == "b" => {
                Some(participants.iter().map(|p| p.e2ee_public_key.clone()).collect())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(admitted_keys, [Some("key-of-teacher".to_owned()), Some("key-of-a".to_owned())]);

    // To each the key sealed for it; none to the sender itself, to a participant without a key
    // (it could not open it), or to an id that is not in the room.
    room.command(t0, &pid("teacher"), keys_for(&["b", "a", "clear", "teacher", "elsewhere"])).unwrap();
    let (events, _, _) = drain(&mut room);
    check_relayed(&events, &[("b", "teacher"), ("a", "teacher")]);
    assert_eq!((room.stats.e2ee_keys_relayed, room.stats.e2ee_keys_skipped), (2, 3));

    // A participant who left meanwhile is skipped; the call goes on.
    room.leave(t0, &pid("b"), crate::proto::LeaveReason::Left);
    drain(&mut room);
    room.command(t0, &pid("a"), keys_for(&["b", "teacher"])).unwrap();
    let (events, _, _) = drain(&mut room);
    check_relayed(&events, &[("teacher", "a")]);
}

#[test]
fn only_admitted_participants_with_a_key_send_keys() {
    let t0 = Instant::now();
    let mut room = room(t0);
    // Before a teacher starts the session, a parent waits.
    join(&mut room, t0, "early", Role::Parent, true);
    let refused = room.command(t0, &pid("early"), keys_for(&["teacher"]));
    assert!(matches!(refused, Err(SfuError::E2eeKeysRefused(_))), "{refused:?}");
    join(&mut room, t0, "teacher", Role::Teacher, true);
    join(&mut room, t0, "clear", Role::Parent, false);
    drain(&mut room);
    let refused = room.command(t0, &pid("clear"), keys_for(&["teacher"]));
    assert!(matches!(refused, Err(SfuError::E2eeKeysRefused(_))), "{refused:?}");
    assert_eq!(room.command(t0, &pid("nobody"), keys_for(&["teacher"])), Err(SfuError::ParticipantNotFound));
    let (events, _, _) = drain(&mut room);
    assert!(sealed_keys(&events).is_empty(), "{events:?}");
    // Admitted now, the early one sends.
    room.command(t0, &pid("early"), keys_for(&["teacher"])).unwrap();
    let (events, _, _) = drain(&mut room);
    check_relayed(&events, &[("teacher", "early")]);
}

/// Who joined with which `e2ee`, and the `e2ee` of the session's close.
fn e2ee_events(server: &[SfuEvent]) -> (Vec<(String, bool)>, Option<bool>) {
    let joins = server
        .iter()
        .filter_map(|event| match event {
            SfuEvent::ParticipantJoined { participant_id, e2ee, .. } => {
                Some((participant_id.to_string(), *e2ee))
            }
            _ => None,
        })
        .collect();
    let closed = server.iter().find_map(|event| match event {
        SfuEvent::SessionClosed { e2ee, .. } => Some(*e2ee),
        _ => None,
    });
    (joins, closed)
}

#[test]
fn a_session_is_end_to_end_encrypted_while_everyone_admitted_had_a_key() {
    let t0 = Instant::now();
    let mut room = room(t0);
    join(&mut room, t0, "teacher", Role::Teacher, true);
    join(&mut room, t0, "a", Role::Parent, true);
    room.close(t0, CloseReason::EndedByModerator);
    let (_, server, _) = drain(&mut room);
    assert_eq!(e2ee_events(&server), (vec![("teacher".into(), true), ("a".into(), true)], Some(true)));

    // One participant without a key makes the session not encrypted for good, even once gone.
    let mut room = super::super::tests::room(t0);
    join(&mut room, t0, "teacher", Role::Teacher, true);
    join(&mut room, t0, "clear", Role::Parent, false);
    room.leave(t0, &pid("clear"), crate::proto::LeaveReason::Left);
    join(&mut room, t0, "a", Role::Parent, true);
    room.close(t0, CloseReason::EndedByModerator);
    let (_, server, _) = drain(&mut room);
    let joins = vec![("teacher".into(), true), ("clear".into(), false), ("a".into(), true)];
    assert_eq!(e2ee_events(&server), (joins, Some(false)));
}
