use std::time::Duration;

use models::{ErrorCode, Role};
use sfu::{JoinRequest, ParticipantEvent, SfuError, SfuEvent};

use crate::client::{join_only, participant, room, standard_policy, wait_until, Client};
use crate::start_sfu;

#[tokio::test]
async fn ninth_participant_in_standard_room_is_refused() {
    let sfu = start_sfu().await;
    let handle = sfu.handle.clone();
    let room_id = room("class-full");
    let mut joined =
        vec![join_only(&handle, &room_id, standard_policy(), "teacher", Role::Teacher).await.unwrap()];
    for idx in 1..8 {
        joined.push(
            join_only(&handle, &room_id, standard_policy(), &format!("parent{idx}"), Role::Parent)
                .await
                .unwrap(),
        );
    }
    let refused = join_only(&handle, &room_id, standard_policy(), "parent8", Role::Parent).await.unwrap_err();
    assert_eq!(refused, SfuError::RoomFull { max_participants: 8 });
    assert_eq!(refused.code(), ErrorCode::RoomFull);
    assert_eq!(refused.code().as_str(), "room_full");
    handle.shutdown().await;
}

#[tokio::test]
async fn tier_without_visio_is_refused() {
    let sfu = start_sfu().await;
    let refused =
        join_only(&sfu.handle, &room("class-free"), None, "teacher", Role::Teacher).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::TierForbidsVisio);
}

#[tokio::test]
async fn malformed_sdp_is_an_error_and_the_room_keeps_running() {
    let sfu = start_sfu().await;
    let handle = sfu.handle.clone();
    let room_id = room("class-bad-sdp");
    let teacher = Client::connect(&handle, &room_id, "teacher", Role::Teacher).await;
    for garbage in ["", "hello", "v=0\r\nm=audio\r\n", &"a".repeat(100_000)] {
        let refused = handle
            .join(JoinRequest {
                room_id: room_id.clone(),
                policy: standard_policy(),
                participant: participant("mallory", Role::Parent),
                offer_sdp: garbage.to_owned(),
                tracks: vec![],
                slots: vec![],
            })
            .await
            .unwrap_err();
        assert!(matches!(refused, SfuError::InvalidSdp(_)), "{refused:?}");
        assert_eq!(refused.code(), ErrorCode::InvalidRequest);
        // A bad renegotiation offer from a member is an error too, not a crash.
        let bad_offer = handle.offer(&room_id, &teacher.participant_id, garbage.to_owned(), vec![]).await;
        assert!(bad_offer.is_err());
    }
    // The room still runs: a real client joins and gets the teacher's media.
    let parent = Client::connect(&handle, &room_id, "parent", Role::Parent).await;
    wait_until("media after the bad joins", Duration::from_secs(15), || {
        parent.counts_from(&teacher.participant_id).video > 5
    })
    .await;
    teacher.stop().await;
    parent.stop().await;
}

#[tokio::test]
async fn parent_waits_then_is_admitted_and_session_ends_for_everyone() {
    let mut sfu = start_sfu().await;
    let handle = sfu.handle.clone();
    let room_id = room("class-wait");
    let mut parent = join_only(&handle, &room_id, standard_policy(), "parent", Role::Parent).await.unwrap();
    assert_eq!(parent.events.recv().await, Some(ParticipantEvent::Waiting));
    let teacher = join_only(&handle, &room_id, standard_policy(), "teacher", Role::Teacher).await.unwrap();
    match parent.events.recv().await {
        Some(ParticipantEvent::Admitted { participants, remaining, .. }) => {
            assert_eq!(participants.len(), 1);
            assert_eq!(participants[0].display_name, "teacher");
            assert_eq!(remaining, Some(Duration::from_secs(30 * 60)));
        }
        other => panic!("expected admission, got {other:?}"),
    }
    // A parent may not end the session.
    let refused = handle.command(&room_id, &parent.participant_id, sfu::Command::EndSession).await;
    assert_eq!(refused.map_err(|e| e.code()), Err(ErrorCode::ForbiddenRole));
    handle.command(&room_id, &teacher.participant_id, sfu::Command::EndSession).await.unwrap();
    loop {
        match parent.events.recv().await {
            Some(ParticipantEvent::Left { reason }) => {
                assert_eq!(reason, sfu::LeaveReason::SessionClosed(sfu::CloseReason::EndedByModerator));
                break;
            }
            Some(_) => continue,
            None => panic!("event stream ended without Left"),
        }
    }
    let mut saw_close = false;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(2), sfu.events.recv()).await {
        if let SfuEvent::SessionClosed { reason, .. } = event {
            assert_eq!(reason, sfu::CloseReason::EndedByModerator);
            saw_close = true;
            break;
        }
    }
    assert!(saw_close);

    // The next session can start right away, in a fresh room.
    let mut teacher_again =
        join_only(&handle, &room_id, standard_policy(), "teacher", Role::Teacher).await.unwrap();
    assert!(matches!(teacher_again.events.recv().await, Some(ParticipantEvent::Admitted { .. })));
}

#[tokio::test]
async fn member_removed_from_class_is_disconnected() {
    let sfu = start_sfu().await;
    let handle = sfu.handle.clone();
    let room_id = room("class-removed");
    let _teacher = join_only(&handle, &room_id, standard_policy(), "teacher", Role::Teacher).await.unwrap();
    let mut parent = join_only(&handle, &room_id, standard_policy(), "parent", Role::Parent).await.unwrap();
    handle.member_removed(&room_id, models::UserId::new("parent").unwrap()).await;
    let left = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match parent.events.recv().await {
                Some(ParticipantEvent::Left { reason }) => return reason,
                Some(_) => continue,
                None => panic!("stream ended"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(left, sfu::LeaveReason::RemovedFromClass);
}

#[tokio::test]
async fn a_flood_of_ice_candidates_is_refused_after_a_few() {
    let sfu = start_sfu().await;
    let handle = sfu.handle.clone();
    let room_id = room("class-candidates");
    let joined = join_only(&handle, &room_id, standard_policy(), "teacher", Role::Teacher).await.unwrap();
    let mut accepted = 0;
    let mut refused = None;
    for port in 0..1000u32 {
        let candidate = format!("candidate:{port} 1 udp 2122260223 192.0.2.1 {} typ host", 10_000 + port);
        match handle.add_ice_candidate(&room_id, &joined.participant_id, candidate).await {
            Ok(()) => accepted += 1,
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    assert_eq!(accepted, 32, "a browser's few candidates are taken, then no more");
    let refused = refused.expect("the flood is refused");
    assert_eq!(refused.code(), ErrorCode::InvalidRequest, "{refused}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_stops_reading_its_events_is_dropped() {
    let sfu = start_sfu().await;
    let handle = sfu.handle.clone();
    let room_id = room("class-slow");
    let teacher = join_only(&handle, &room_id, standard_policy(), "teacher", Role::Teacher).await.unwrap();
    // The parent's events are never read, like a page that froze with its socket open.
    let parent = join_only(&handle, &room_id, standard_policy(), "parent", Role::Parent).await.unwrap();
    let parent_id = parent.participant_id.clone();
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel();
    let mut teacher_events = teacher.events;
    let watched = parent_id.clone();
    tokio::spawn(async move {
        let mut dropped_tx = Some(dropped_tx);
        while let Some(event) = teacher_events.recv().await {
            if event == (ParticipantEvent::ParticipantLeft { participant_id: watched.clone() }) {
                if let Some(tx) = dropped_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    // Every change of the teacher's microphone is an event for everyone in the call.
    for idx in 0..2 * sfu::PARTICIPANT_EVENT_QUEUE {
        let command = sfu::Command::SetMuted { kind: sfu::MediaKind::Audio, muted: idx % 2 == 0 };
        handle.command(&room_id, &teacher.participant_id, command).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), dropped_rx)
        .await
        .expect("the slow participant is dropped")
        .unwrap();
    // Its queue never held more than its bound, and it is closed: what was queued, then the end.
    let mut parent_events = parent.events;
    let mut n_queued = 0;
    while parent_events.recv().await.is_some() {
        n_queued += 1;
    }
    assert!(n_queued <= sfu::PARTICIPANT_EVENT_QUEUE, "{n_queued} events queued");
    handle.shutdown().await;
}
