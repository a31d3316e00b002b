//! The call WebSocket over a real socket: refusals with codes, bad input that leaves the server
//! running, capacity and removal. Offers are real SDP from str0m; the browser test covers media.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    both_backends, expect_error, status_json, webhook_receiver, Db, TestServer, WEBHOOK_SECRET,
};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A browser-like offer: one audio and one video m-line, kept alive with its `Rtc`.
pub(crate) fn offer() -> (Rtc, String) {
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    let mut changes = rtc.sdp_api();
    changes.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    changes.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    // A fresh Rtc always has changes to apply.
    let (offer, _pending) = changes.apply().expect("changes to apply");
    (rtc, offer.to_sdp_string())
}

pub(crate) async fn connect(server: &TestServer, class_id: &str) -> Socket {
    let url = format!("{}/v1/classes/{class_id}/visio/ws", server.base.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(url).await.expect("websocket connects").0
}

pub(crate) async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::Text(message.to_string().into())).await.expect("send");
}

/// The next JSON message, or `None` when the server closed the socket.
pub(crate) async fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("a message in time")?;
        match message {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).expect("JSON message")),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// The next message of `type`, skipping others.
pub(crate) async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let message = next(socket).await.unwrap_or_else(|| panic!("socket closed before a {kind}"));
        if message["type"] == kind {
            return message;
        }
    }
}

pub(crate) fn token(user: &str) -> String {
    let user_id = models::UserId::new(user).unwrap();
    signaling::auth::mint_hs256(crate::support::JWT_SECRET, &user_id, 600)
}

/// A page's end-to-end encryption public key, as the call page sends it: base64url of 65 bytes
/// starting with 0x04 (an uncompressed P-256 point; the server checks only its form), one per user.
pub(crate) fn public_key(user: &str) -> String {
    use base64::Engine;
    let mut point = [0x04u8; 65];
    for (byte, seed) in point[1..].iter_mut().zip(user.bytes().cycle()) {
        *byte = seed;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(point)
}

/// `user` joins with a public key, as every up-to-date browser does.
pub(crate) async fn join(server: &TestServer, class_id: &str, user: &str) -> (Socket, Rtc, Value) {
    join_with(server, class_id, user, Some(json!({ "public_key": public_key(user) }))).await
}

/// `user` joins with `e2ee` as given: `None` leaves the field out, as a browser that cannot
/// encrypt does (or sends `null`).
pub(crate) async fn join_with(
    server: &TestServer,
    class_id: &str,
    user: &str,
    e2ee: Option<Value>,
) -> (Socket, Rtc, Value) {
    let mut socket = connect(server, class_id).await;
    let (rtc, sdp) = offer();
    let mut message = json!({ "type": "join", "token": token(user), "sdp": sdp, "tracks": [] });
    if let Some(e2ee) = e2ee {
        message["e2ee"] = e2ee;
    }
    send(&mut socket, message).await;
    let first = next(&mut socket).await.expect("an answer to join");
    (socket, rtc, first)
}

async fn expect_refusal(server: &TestServer, class_id: &str, user: &str, code: &str) {
    let (mut socket, _rtc, first) = join(server, class_id, user).await;
    assert_eq!(first["type"], "error", "{first}");
    assert_eq!(first["code"], code, "{first}");
    assert!(next(&mut socket).await.is_none(), "the server closes the socket after a refused join");
}

async fn setup(server: &TestServer) {
    server.put_class("std", "standard", false).await;
    server.put_class("free", "free", false).await;
    server.put_class("other", "standard", false).await;
    server.put_member("std", "teacher", "teacher", true).await;
    for idx in 0..9 {
        server.put_member("std", &format!("parent{idx}"), "parent", true).await;
    }
    server.put_member("free", "teacher", "teacher", true).await;
    server.put_member("other", "outsider", "parent", true).await;
}

async fn refusals_have_codes_and_leave_the_server_running(db: Db) {
    let server = TestServer::start(db).await;
    setup(&server).await;
    expect_refusal(&server, "free", "teacher", "tier_forbids_visio").await;
    expect_refusal(&server, "std", "outsider", "not_a_member").await;
    expect_refusal(&server, "nope", "outsider", "not_a_member").await;

    let (_rtc, sdp) = offer();
    for (first, code) in [
        (json!({ "type": "join", "token": "forged.token.value", "sdp": sdp, "tracks": [] }), "unauthorized"),
        (
            json!({ "type": "join", "token": token("teacher"), "sdp": "v=0 garbage", "tracks": [],
                    "e2ee": { "public_key": public_key("teacher") } }),
            "invalid_request",
        ),
        (json!({ "type": "fly" }), "invalid_request"),
        (json!({ "type": "mute_all" }), "invalid_request"),
    ] {
        let mut socket = connect(&server, "std").await;
        send(&mut socket, first).await;
        let reply = next(&mut socket).await.expect("a refusal");
        assert_eq!(reply["code"], code, "{reply}");
        assert!(next(&mut socket).await.is_none());
    }

    // A teacher joins and starts the session; junk on their socket gets errors, not a disconnect.
    let (mut teacher, _teacher_rtc, joined) = join(&server, "std", "teacher").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["max_duration_seconds"], 1800);
    assert_eq!(joined["max_participants"], 8);
    assert!(joined["sdp"].as_str().unwrap().starts_with("v=0"));
    next_of(&mut teacher, "admitted").await;
    for junk in [
        "not json",
        r#"{"type":"teleport"}"#,
        r#"{"type":"mute","target":"../x"}"#,
        r#"{"type":"offer","sdp":"nope","tracks":[]}"#,
    ] {
        teacher.send(Message::Text(junk.into())).await.unwrap();
        let reply = next_of(&mut teacher, "error").await;
        assert!(reply["code"].is_string(), "{reply}");
    }
    teacher.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next_of(&mut teacher, "error").await["code"], "invalid_request");
    send(&mut teacher, json!({ "type": "set_muted", "kind": "audio", "muted": true })).await;
    let muted = next_of(&mut teacher, "mute_changed").await;
    assert_eq!(muted["muted"], true, "{muted}");

    // An oversized message ends only that connection.
    let mut greedy = connect(&server, "std").await;
    let _ = greedy.send(Message::Text("x".repeat(models::visio::MAX_CLIENT_MESSAGE_BYTES + 1).into())).await;
    assert!(next(&mut greedy).await.is_none());
    let health = server.request(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(health.status(), 200);

    // The session still runs: a parent joins and is admitted beside the teacher.
    let (mut parent, _parent_rtc, joined) = join(&server, "std", "parent0").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let admitted = next_of(&mut parent, "admitted").await;
    let names: Vec<&str> = admitted["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["display_name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Person teacher"), "{admitted}");
    // Participants see names and roles only.
    for participant in admitted["participants"].as_array().unwrap() {
        let mut keys: Vec<&str> = participant.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "audio_muted",
                "display_name",
                "e2ee_public_key",
                "participant_id",
                "reconnecting",
                "role",
                "video_off"
            ]
        );
        assert_eq!(participant["e2ee_public_key"], public_key("teacher"), "{participant}");
    }
}
both_backends!(refusals_have_codes_and_leave_the_server_running);

async fn ninth_person_is_refused_and_removed_members_are_disconnected(db: Db) {
    let server = TestServer::start(db).await;
    setup(&server).await;
    let mut people = Vec::new();
    let (mut teacher, teacher_rtc, joined) = join(&server, "std", "teacher").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    next_of(&mut teacher, "admitted").await;
    for idx in 0..7 {
        let (mut socket, rtc, joined) = join(&server, "std", &format!("parent{idx}")).await;
        assert_eq!(joined["type"], "joined", "parent{idx}: {joined}");
        next_of(&mut socket, "admitted").await;
        people.push((socket, rtc));
    }
    // Eight people at once on Standard: the ninth is refused.
    expect_refusal(&server, "std", "parent8", "room_full").await;

    // The class backend removes parent0 from the class: out of the call within seconds.
    let started = Instant::now();
    let response = server.backend(Method::DELETE, "/v1/classes/std/members/parent0").send().await.unwrap();
    assert_eq!(response.status(), 204);
    let left = next_of(&mut people[0].0, "left").await;
    assert_eq!(left["reason"], "removed_from_class");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Room for one more now.
    let (_socket, _rtc, joined) = join(&server, "std", "parent8").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    drop(teacher_rtc);
}
both_backends!(ninth_person_is_refused_and_removed_members_are_disconnected);

/// A call in `class_id`: its teacher starts it, `parent0` joins and leaves, the teacher ends it.
pub(crate) async fn short_call(server: &TestServer, class_id: &str) {
    let (mut teacher, _teacher_rtc, _) = join(server, class_id, "teacher").await;
    next_of(&mut teacher, "admitted").await;
    let (mut parent, _parent_rtc, _) = join(server, class_id, "parent0").await;
    next_of(&mut parent, "admitted").await;
    send(&mut parent, json!({ "type": "leave" })).await;
    next_of(&mut teacher, "participant_left").await;
    send(&mut teacher, json!({ "type": "end_session" })).await;
    assert_eq!(next_of(&mut teacher, "left").await["reason"], "session_ended_by_moderator");
}

async fn attendance_and_signed_webhooks(db: Db) {
    let (hook_url, received) = webhook_receiver().await;
    let server = TestServer::start_with(db, |config| {
        config.webhooks.url = Some(hook_url.clone());
        config.webhooks.secret = Some(WEBHOOK_SECRET.into());
        config.webhooks.first_retry_ms = 50;
    })
    .await;
    setup(&server).await;
    short_call(&server, "std").await;

    // Webhooks arrive in order, signed, the refused first one retried with the same event id.
    let deadline = Instant::now() + Duration::from_secs(15);
    let deliveries = loop {
        let deliveries = received.lock().unwrap().clone();
        if deliveries.iter().any(|(_, body)| body.contains("\"session_ended\"")) {
            break deliveries;
        }
        assert!(Instant::now() < deadline, "no session_ended webhook; got {deliveries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut seen_ids = std::collections::HashSet::new();
    let mut events = Vec::new();
    for (headers, body) in &deliveries {
        let signature = headers["klass-signature"].to_str().unwrap();
        let (t, v1) = signature.split_once(",v1=").unwrap();
        let timestamp: i64 = t.trim_start_matches("t=").parse().unwrap();
        assert_eq!(v1, signaling::webhooks::signature(WEBHOOK_SECRET, timestamp, body), "bad signature");
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["event_id"], headers["klass-event-id"].to_str().unwrap());
        assert_eq!(event["class_id"], "std");
        if seen_ids.insert(event["event_id"].as_str().unwrap().to_owned()) {
            events.push(event);
        }
    }
    assert_eq!(deliveries[0].0["klass-event-id"], deliveries[1].0["klass-event-id"], "a retry keeps its id");
    let summary: Vec<String> = events
        .iter()
        .map(|e| format!("{} {}", e["event"].as_str().unwrap(), e["user_id"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        summary[..4],
        [
            "session_started ",
            "participant_joined teacher",
            "participant_joined parent0",
            "participant_left parent0"
        ]
    );
    assert!(summary.iter().any(|s| s == "session_ended "), "{summary:?}");
    // Webhooks carry ids and roles, never names; joins and the session's end say whether they
    // were end-to-end encrypted, as attendance does.
    assert!(deliveries.iter().all(|(_, body)| !body.contains("Person ")));
    for event in events.iter().filter(|e| e["event"] == "participant_joined" || e["event"] == "session_ended")
    {
        assert!(event["e2ee"].is_boolean(), "{event}");
    }

    // Attendance: teachers and admins read it as JSON or CSV.
    let (status, sessions) =
        status_json(server.user(Method::GET, "/v1/classes/std/sessions", "teacher").send().await.unwrap())
            .await;
    assert_eq!(status, 200, "{sessions}");
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    assert_eq!(sessions[0]["close_reason"], "ended_by_moderator");
    let ended = events.iter().find(|e| e["event"] == "session_ended").unwrap();
    assert_eq!(ended["e2ee"], sessions[0]["e2ee"], "the webhook and attendance agree");
    assert_eq!(sessions[0]["e2ee"], true, "everyone joined with a key");
    let session_id = sessions[0]["session_id"].as_str().unwrap();
    let path = format!("/v1/classes/std/sessions/{session_id}/attendance");
    let (status, records) =
        status_json(server.user(Method::GET, &path, "teacher").send().await.unwrap()).await;
    assert_eq!(status, 200, "{records}");
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["display_name"], "Person teacher");
    assert_eq!(records[1]["user_id"], "parent0");
    assert_eq!(records[1]["leave_reason"], "left");
    assert!(records.iter().all(|record| record["e2ee"] == true), "{records:?}");
    for record in records {
        assert!(record["left_at"].as_i64().unwrap() >= record["joined_at"].as_i64().unwrap());
    }
    let csv = server.user(Method::GET, &format!("{path}?format=csv"), "teacher").send().await.unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "user_id,display_name,role,joined_at,left_at,leave_reason,e2ee");
    assert!(lines[2].starts_with("parent0,Person parent0,parent,"), "{csv}");
    assert!(lines[1..].iter().all(|line| line.ends_with(",true")), "{csv}");

    // Parents do not see attendance; nobody sees another class's sessions.
    expect_error(server.user(Method::GET, &path, "parent1").send().await.unwrap(), 403, "forbidden_role")
        .await;
    server.put_member("other", "other-teacher", "teacher", true).await;
    let other = format!("/v1/classes/other/sessions/{session_id}/attendance");
    expect_error(server.user(Method::GET, &other, "other-teacher").send().await.unwrap(), 404, "not_found")
        .await;
    let theirs = server.user(Method::GET, "/v1/classes/other/sessions", "teacher").send().await.unwrap();
    expect_error(theirs, 403, "not_a_member").await;
}
both_backends!(attendance_and_signed_webhooks);
