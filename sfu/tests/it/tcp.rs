use std::time::Duration;

use models::Role;
use sfu::{SfuConfig, TcpLimits};

use crate::client::{room, wait_until, Client};
use crate::{start_sfu, start_sfu_with};

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

/// Whether the server closed `stream` within `within`: a read returns the end of the stream (or
/// an error) rather than timing out.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(within, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_trickling_and_surplus_ice_tcp_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let limits = TcpLimits {
        max_connections: 2,
        first_frame_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(1),
    };
    let sfu = start_sfu_with(SfuConfig { tcp_limits: limits, ..SfuConfig::loopback() }).await;
    let addr = sfu.handle.tcp_addr().expect("ICE-TCP is on");

    // A connection that never says anything, and one that sends half a frame header.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut trickling = tokio::net::TcpStream::connect(addr).await.unwrap();
    trickling.write_all(&[0x00]).await.unwrap();
    // Both slots are taken: a third connection is closed at once, long before any timeout.
    let mut surplus = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut surplus, Duration::from_millis(300)).await, "over the limit: closed at once");
    assert_eq!(sfu.handle.drops().tcp_connections, 1, "the refusal is counted");
    assert!(
        closed_within(&mut silent, Duration::from_secs(3)).await,
        "silent: closed after its first-frame time"
    );
    assert!(closed_within(&mut trickling, Duration::from_secs(3)).await, "half a frame: closed too");
    // The slots are free again: a new connection is kept until its own timeout.
    let mut next = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(!closed_within(&mut next, Duration::from_millis(200)).await, "a free slot takes it");
    sfu.handle.shutdown().await;
}
