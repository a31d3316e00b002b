//! Last-N over real sockets: with room for 2 cameras, a silent parent's video stops reaching the
//! others while the teacher and the speaker's go on, and comes back, from a keyframe, when the
//! parent speaks. Audio from everyone is forwarded throughout.

use std::time::Duration;

use models::Role;
use sfu::{RoomConfig, SfuConfig};

use crate::client::{room, wait_until, Client};
use crate::start_sfu_with;

const LIMIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_teacher_and_the_latest_speaker_are_seen_with_room_for_two_cameras() {
    let config =
        SfuConfig { room: RoomConfig { last_n: Some(2), ..RoomConfig::default() }, ..SfuConfig::loopback() };
    let sfu = start_sfu_with(config).await;
    let handle = sfu.handle.clone();
    let room_id = room("class-last-n");
    let teacher = Client::connect(&handle, &room_id, "teacher", Role::Teacher).await;
    let alice = Client::connect(&handle, &room_id, "alice", Role::Parent).await;
    let bob = Client::connect(&handle, &room_id, "bob", Role::Parent).await;
    let carol = Client::connect(&handle, &room_id, "carol", Role::Parent).await;
    bob.set_speaking(true);

    // Carol sees the teacher (always) and Bob (speaking); Alice, silent, is not forwarded to her.
    wait_until("carol gets the teacher's and bob's video", LIMIT, || {
        carol.counts_from(&teacher.participant_id).video > 30
            && carol.counts_from(&bob.participant_id).video > 30
    })
    .await;
    let video_from =
        |client: &Client, publisher: &Client| client.counts_from(&publisher.participant_id).video;
    let (alice_at, bob_at) = (video_from(&carol, &alice), video_from(&carol, &bob));
    let alice_audio_at = carol.counts_from(&alice.participant_id).audio;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(video_from(&carol, &alice) <= alice_at + 2, "alice's camera is paused for carol");
    assert!(video_from(&carol, &bob) > bob_at + 20, "bob's camera goes on");
    assert!(carol.counts_from(&alice.participant_id).audio > alice_audio_at + 30, "everyone is heard");

    // Bob falls silent and Alice speaks: within a refresh, Alice is seen again and Bob is not.
    bob.set_speaking(false);
    alice.set_speaking(true);
    wait_until("carol gets alice's video again", LIMIT, || video_from(&carol, &alice) > alice_at + 30).await;
    let bob_paused_at = video_from(&carol, &bob);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(video_from(&carol, &bob) <= bob_paused_at + 2, "bob's camera is paused now");
    // Every video carol got began at a keyframe (resuming at one is checked in DownTrack's tests).
    let state = carol.state.lock().unwrap();
    assert!(state.first_video_was_keyframe.values().all(|keyframe| *keyframe), "{state:?}");
}
