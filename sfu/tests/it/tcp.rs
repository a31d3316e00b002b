use std::time::Duration;

use models::Role;

use crate::client::{room, wait_until, Client};
use crate::start_sfu;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_tcp_client_sends_and_receives_media() {
    let sfu = start_sfu().await;
    let handle = sfu.handle.clone();
    let room_id = room("class-tcp");
    let teacher = Client::connect(&handle, &room_id, "teacher", Role::Teacher).await;
    let parent = Client::connect_tcp(&handle, &room_id, "parent", Role::Parent).await;
    wait_until("media over ICE-TCP, both ways", Duration::from_secs(15), || {
        let down = parent.counts_from(&teacher.participant_id);
        let up = teacher.counts_from(&parent.participant_id);
        down.audio > 10 && down.video > 10 && up.audio > 10 && up.video > 10
    })
    .await;
    teacher.stop().await;
    parent.stop().await;
    handle.shutdown().await;
}
