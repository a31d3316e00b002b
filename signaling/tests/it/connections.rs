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

/// Sends `bytes` one at a time, `every` apart, until the server closes or answers; returns what
/// it answered (empty when it just closed) and how long that took.
async fn trickle(address: &str, bytes: &[u8], every: Duration) -> (String, Duration) {
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    for byte in bytes {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(every, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::new(), started.elapsed()),
            Ok(Ok(n)) => return (String::from_utf8_lossy(&buf[..n]).into_owned(), started.elapsed()),
            Err(_) => continue,
        }
    }
    (String::from("(everything sent)"), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_bodies_that_trickle_in_are_cut_off() {
    let server = TestServer::start_with(Db::Sqlite, |config| {
        config.http.header_timeout_secs = 2;
        config.http.body_timeout_secs = 2;
    })
    .await;
    let address = server.base.trim_start_matches("http://").to_owned();
    // One header byte every 300 ms: never idle, but the headers never end in time.
    let head =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let (answer, took) = trickle(&address, head, Duration::from_millis(300)).await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "the slow headers were served: {answer}");
    assert_ne!(answer, "(everything sent)");
    assert!(took < Duration::from_secs(5), "cut off after {took:?}");

    // Headers in at once, then a body of 100 bytes, one every 300 ms.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"PUT /v1/classes/c HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = String::new();
    for _ in 0..100 {
        if stream.write_all(b" ").await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
            Ok(Ok(n)) => {
                answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                break;
            }
            Ok(Err(_)) => break,
            Err(_) => continue,
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the trickling body held the request {:?}",
        started.elapsed()
    );
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
}
