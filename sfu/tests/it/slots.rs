//! Fixed receive slots over real sockets: each client negotiates once; with room for two
//! thumbnails and two audio slots, a parent who starts speaking takes a thumbnail (from a
//! keyframe) and an audio slot, nobody is renegotiated, and every packet names its publisher in
//! its CSRC.

use std::time::Duration;

use models::Role;
use sfu::{ParticipantEvent, RoomConfig, SfuConfig, SlotKind};

use crate::client::{room, wait_until, Client};
use crate::start_sfu_with;

const LIMIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_speaker_takes_a_thumbnail_and_an_audio_slot_without_renegotiation() {
    let config = SfuConfig {
        room: RoomConfig { audio_slots: 2, thumbnail_slots: 2, ..RoomConfig::default() },
        ..SfuConfig::loopback()
    };
    let sfu = start_sfu_with(config).await;
    let handle = sfu.handle.clone();
    let room_id = room("class-slots");
    let teacher = Client::connect(&handle, &room_id, "teacher", Role::Teacher).await;
    let alice = Client::connect(&handle, &room_id, "alice", Role::Parent).await;
    let bob = Client::connect(&handle, &room_id, "bob", Role::Parent).await;
    let carol = Client::connect(&handle, &room_id, "carol", Role::Parent).await;
    let dave = Client::connect(&handle, &room_id, "dave", Role::Parent).await;
    let video_from =
        |client: &Client, publisher: &Client| client.counts_from(&publisher.participant_id).video;
    let audio_from =
        |client: &Client, publisher: &Client| client.counts_from(&publisher.participant_id).audio;

    // Nobody speaks: carol has the teacher on her stage and the first two to arrive in her
    // thumbnails; her two audio slots carry the teacher and, as nobody speaks, alice.
    wait_until("carol sees the teacher, alice and bob", LIMIT, || {
        video_from(&carol, &teacher) > 30 && video_from(&carol, &alice) > 30 && video_from(&carol, &bob) > 30
    })
    .await;
    assert_eq!(video_from(&carol, &dave), 0, "no room for dave");
    assert!(audio_from(&carol, &teacher) > 30, "the teacher is always heard");
    assert_eq!(audio_from(&carol, &bob) + audio_from(&carol, &dave), 0);

    // Dave speaks: he takes bob's thumbnail (the least recent), alice keeps hers, and his voice
    // takes alice's audio slot, which a silent participant only held while nobody needed it.
    dave.set_speaking(true);
    wait_until("carol sees and hears dave", LIMIT, || {
        video_from(&carol, &dave) > 30 && audio_from(&carol, &dave) > 30
    })
    .await;
    let bob_at = video_from(&carol, &bob);
    let alice_at = video_from(&carol, &alice);
    let alice_audio_at = audio_from(&carol, &alice);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(audio_from(&carol, &alice) <= alice_audio_at + 2, "alice's audio slot went to dave");
    assert!(video_from(&carol, &bob) <= bob_at + 2, "bob's thumbnail went to dave");
    assert!(video_from(&carol, &alice) > alice_at + 20, "alice keeps her thumbnail");

    // Dave does not receive himself; the teacher hears dave.
    assert_eq!(dave.counts_from(&dave.participant_id), Default::default());
    wait_until("the teacher hears dave", LIMIT, || audio_from(&teacher, &dave) > 30).await;

    let state = carol.state.lock().unwrap();
    assert!(state.first_video_was_keyframe.values().all(|keyframe| *keyframe), "{state:?}");
    assert_eq!(state.without_csrc, 0, "every packet names its publisher");
    assert!(state.received.keys().all(|csrc| state.publishers.contains_key(csrc)), "{state:?}");
    // The map carol was given names dave in a thumbnail now.
    let last_map = state.events.iter().rev().find_map(|e| match e {
        ParticipantEvent::Slots(slots) => Some(slots.clone()),
        _ => None,
    });
    let last_map = last_map.expect("carol got a slot map");
    assert!(last_map
        .iter()
        .any(|s| s.kind == SlotKind::Thumbnail && s.publisher.as_ref() == Some(&dave.participant_id)));
    assert!(last_map
        .iter()
        .any(|s| s.kind == SlotKind::Stage && s.publisher.as_ref() == Some(&teacher.participant_id)));
}

/// The SSRC `client` sends its camera's `rid` layer with.
fn layer_ssrc(client: &Client, rid: &str) -> u32 {
    client.layer_ssrcs().into_iter().find(|(r, _)| r == rid).map(|(_, ssrc)| ssrc).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_gets_the_high_simulcast_layer_and_a_thumbnail_the_low_one() {
    let sfu = start_sfu_with(SfuConfig::loopback()).await;
    let handle = sfu.handle.clone();
    let room_id = room("class-simulcast");
    let teacher = Client::connect_simulcast(&handle, &room_id, "teacher", Role::Teacher, &["l", "h"]).await;
    let alice = Client::connect(&handle, &room_id, "alice", Role::Parent).await;
    let bob = Client::connect(&handle, &room_id, "bob", Role::Parent).await;
    // Bob pins alice: the teacher moves to one of his thumbnails.
    handle
        .command(
            &room_id,
            &bob.participant_id,
            sfu::Command::Pin { participant: Some(alice.participant_id.clone()) },
        )
        .await
        .unwrap();
    let (low, high) = (layer_ssrc(&teacher, "l"), layer_ssrc(&teacher, "h"));
    let video =
        |client: &Client, ssrc: u32| client.state.lock().unwrap().received.get(&ssrc).map_or(0, |c| c.video);
    wait_until("alice's stage shows the teacher's high layer", LIMIT, || video(&alice, high) > 30).await;
    wait_until("bob's thumbnail shows the teacher's low layer", LIMIT, || video(&bob, low) > 30).await;
    let (alice_low, bob_high) = (video(&alice, low), video(&bob, high));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(video(&alice, low) <= alice_low + 2, "the stage does not get the low layer too");
    assert!(video(&bob, high) <= bob_high + 2, "a thumbnail does not get the high layer");
    // Both names came with the SSRC of the layer each slot shows.
    assert_eq!(alice.counts_from(&teacher.participant_id).video, video(&alice, high) + video(&alice, low));
}
