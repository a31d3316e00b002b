use std::time::Duration;

use models::Role;
use sfu::{Command, MediaKind, ParticipantEvent};

use crate::client::{room, wait_until, Client};
use crate::start_sfu;

const LIMIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_receive_each_other_and_mute_stops_audio() {
    let sfu = start_sfu().await;
    let handle = sfu.handle.clone();
    let room_id = room("class-media");
    let teacher = Client::connect(&handle, &room_id, "teacher", Role::Teacher).await;
    let alice = Client::connect(&handle, &room_id, "alice", Role::Parent).await;
    let bob = Client::connect(&handle, &room_id, "bob", Role::Parent).await;
    let clients = [&teacher, &alice, &bob];

    for subscriber in clients {
        for publisher in clients {
            if std::ptr::eq(subscriber, publisher) {
                continue;
            }
            wait_until("audio and video from every other client", LIMIT, || {
                let counts = subscriber.counts_from(&publisher.participant_id);
                counts.audio > 10 && counts.video > 10
            })
            .await;
        }
    }
    // In every slot, each publisher's first video packet started a keyframe: nothing
    // undecodable was sent, whichever slot a publisher moved to.
    for client in clients {
        let state = client.state.lock().unwrap();
        assert!(state.first_video_was_keyframe.len() >= 2, "{state:?}");
        assert!(state.first_video_was_keyframe.values().all(|keyframe| *keyframe), "{state:?}");
    }

    // The teacher mutes Alice: the SFU stops forwarding her audio, not her video.
    handle
        .command(&room_id, &teacher.participant_id, Command::Mute { target: alice.participant_id.clone() })
        .await
        .unwrap();
    wait_until("mute event at bob", LIMIT, || {
        bob.has_event(|e| matches!(e, ParticipantEvent::MuteChanged { muted: true, by_moderator: true, .. }))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let muted_at = bob.counts_from(&alice.participant_id);
    let teacher_at = bob.counts_from(&teacher.participant_id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let muted_after = bob.counts_from(&alice.participant_id);
    assert_eq!(muted_after.audio, muted_at.audio, "muted audio still reaches others");
    assert!(muted_after.video > muted_at.video + 10, "video stops with audio");
    assert!(bob.counts_from(&teacher.participant_id).audio > teacher_at.audio + 20);
    assert_eq!(
        teacher.counts_from(&alice.participant_id).audio,
        teacher.counts_from(&alice.participant_id).audio
    );

    // Alice cannot lift the mute herself until asked; then she decides to.
    let unmute = Command::SetMuted { kind: MediaKind::Audio, muted: false };
    let refused = handle.command(&room_id, &alice.participant_id, unmute.clone()).await;
    assert_eq!(refused, Err(sfu::SfuError::MutedByModerator));
    let ask = Command::RequestUnmute { target: alice.participant_id.clone(), kind: MediaKind::Audio };
    handle.command(&room_id, &teacher.participant_id, ask).await.unwrap();
    wait_until("unmute request at alice", LIMIT, || {
        alice.has_event(|e| matches!(e, ParticipantEvent::UnmuteRequested { kind: MediaKind::Audio }))
    })
    .await;
    handle.command(&room_id, &alice.participant_id, unmute).await.unwrap();
    wait_until("alice's audio back at bob", LIMIT, || {
        bob.counts_from(&alice.participant_id).audio > muted_after.audio + 10
    })
    .await;

    // Camera off stops her video.
    handle
        .command(
            &room_id,
            &teacher.participant_id,
            Command::DisableCamera { target: alice.participant_id.clone() },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let camera_off_at = bob.counts_from(&alice.participant_id);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(bob.counts_from(&alice.participant_id).video, camera_off_at.video);

    // Removing Bob tells him and the others.
    handle
        .command(&room_id, &teacher.participant_id, Command::Remove { target: bob.participant_id.clone() })
        .await
        .unwrap();
    wait_until("bob removed", LIMIT, || {
        bob.has_event(|e| {
            matches!(e, ParticipantEvent::Left { reason: sfu::LeaveReason::RemovedByModerator })
        })
    })
    .await;
    wait_until("alice told bob left", LIMIT, || {
        alice.has_event(|e| matches!(e, ParticipantEvent::ParticipantLeft { participant_id } if *participant_id == bob.participant_id))
    })
    .await;
    for client in clients {
        client.stop().await;
    }
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_renegotiation_unpublishes_a_stopped_track() {
    let sfu = start_sfu().await;
    let handle = sfu.handle.clone();
    let room_id = room("class-renegotiate");
    let teacher = Client::connect(&handle, &room_id, "teacher", Role::Teacher).await;
    let parent = Client::connect(&handle, &room_id, "parent", Role::Parent).await;
    wait_until("parent's video at the teacher", Duration::from_secs(15), || {
        teacher.counts_from(&parent.participant_id).video > 10
    })
    .await;
    parent.stop_sending_video().await;
    wait_until("track unpublished", Duration::from_secs(15), || {
        teacher.has_event(|e| matches!(e, sfu::ParticipantEvent::TrackUnpublished { .. }))
    })
    .await;
    // Audio keeps flowing both ways after the renegotiation.
    let before = teacher.counts_from(&parent.participant_id).audio;
    wait_until("audio after renegotiation", Duration::from_secs(15), || {
        teacher.counts_from(&parent.participant_id).audio > before + 10
    })
    .await;
    teacher.stop().await;
    parent.stop().await;
}
