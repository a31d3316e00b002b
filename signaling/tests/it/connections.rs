//! HTTP connections over real sockets: a client that sends one byte, or nothing, is closed after
//! the idle time; past the connection limit new connections are closed at once; a call's
//! WebSocket, answered pings and all, outlives the idle time.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Db, TestServer};
use crate::visio::{join, next_of};

/// Whether the server closed `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(within, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_calls_are_not() {
    let server = TestServer::start_with(Db::Sqlite, |config| config.http.idle_timeout_secs = 3).await;
    server.class_with_people("c", "standard", false).await;
    let address = server.base.trim_start_matches("http://").to_owned();

    let mut one_byte = TcpStream::connect(&address).await.unwrap();
    one_byte.write_all(b"G").await.unwrap();
    let mut silent = TcpStream::connect(&address).await.unwrap();
    assert!(!closed_within(&mut silent, Duration::from_millis(500)).await, "not before the idle time");
    assert!(closed_within(&mut one_byte, Duration::from_secs(6)).await, "one byte, then nothing: closed");
    assert!(closed_within(&mut silent, Duration::from_secs(6)).await, "nothing at all: closed");

    // A call's WebSocket is pinged; a client that reads answers, and stays past the idle time.
    let (mut teacher, _rtc, joined) = join(&server, "c", "teacher").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokio::time::Instant::now() < quiet_until {
        // Reading is what makes the client answer the server's pings.
        let _ = tokio::time::timeout(Duration::from_millis(200), teacher.next()).await;
    }
    let (_parent, _parent_rtc, joined) = join(&server, "c", "parent").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let seen = next_of(&mut teacher, "participant_joined").await;
    assert_eq!(seen["participant"]["display_name"], "Person parent", "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_at_once() {
    let server = TestServer::start_with(Db::Sqlite, |config| config.http.max_connections = 3).await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&address).await.unwrap());
    }
    let mut surplus = TcpStream::connect(&address).await.unwrap();
    assert!(closed_within(&mut surplus, Duration::from_secs(2)).await, "over the limit: closed");
    drop(held);
    // The slots are free again: a request is answered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}
