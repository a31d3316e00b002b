//! A call that survives a broken WebSocket: the participant keeps their place (and their one
//! attendance row) for the grace period, the others see them "reconnecting", and a new socket
//! with `resume` carries on, with what it missed. Tokens are checked: another user's fails.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{both_backends, status_json, Db, TestServer};
use crate::visio::{connect, join, next, next_of, send, token, Socket};

async fn resume(server: &TestServer, user: &str, resume_token: &str) -> (Socket, Value) {
    let mut socket = connect(server, "std").await;
    send(&mut socket, json!({ "type": "resume", "token": token(user), "resume_token": resume_token })).await;
    let first = next(&mut socket).await.expect("an answer to resume");
    (socket, first)
}

/// The next `connection` message about `participant_id`.
async fn connection_of(socket: &mut Socket, participant_id: &str) -> bool {
    loop {
        let message = next_of(socket, "connection").await;
        if message["participant_id"] == participant_id {
            return message["reconnecting"].as_bool().unwrap();
        }
    }
}

async fn a_broken_socket_resumes_within_the_grace_period(db: Db) {
    let server = TestServer::start_with(db, |config| config.sfu.reconnect_grace_secs = 3).await;
    server.put_class("std", "standard", false).await;
    for (user, role) in [("teacher", "teacher"), ("parent0", "parent"), ("parent1", "parent")] {
        server.put_member("std", user, role, true).await;
    }
    let (mut teacher, _teacher_rtc, joined) = join(&server, "std", "teacher").await;
    let teacher_id = joined["participant_id"].as_str().unwrap().to_owned();
    next_of(&mut teacher, "admitted").await;
    let (mut parent, _parent_rtc, joined) = join(&server, "std", "parent0").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["reconnect_grace_seconds"], 3);
    let resume_token = joined["resume_token"].as_str().unwrap().to_owned();
    assert_eq!(resume_token.len(), 64, "256 random bits");
    let parent_id = joined["participant_id"].as_str().unwrap().to_owned();
    next_of(&mut parent, "admitted").await;
    next_of(&mut teacher, "participant_joined").await;

    // The parent's network drops the connection: no close frame, no `leave`.
    drop(parent);
    assert!(connection_of(&mut teacher, &parent_id).await, "the teacher sees the parent reconnecting");

    // Someone else's token, a made-up one, or the right one for another class: refused, and
    // the session is still there for its owner.
    let (_socket, refused) = resume(&server, "parent1", &resume_token).await;
    assert_eq!(refused["code"], "resume_failed", "{refused}");
    let (_socket, refused) = resume(&server, "parent0", &"0".repeat(64)).await;
    assert_eq!(refused["code"], "resume_failed", "{refused}");

    let (mut parent, resumed) = resume(&server, "parent0", &resume_token).await;
    assert_eq!(resumed, json!({ "type": "resumed", "participant_id": parent_id }));
    assert!(!connection_of(&mut teacher, &parent_id).await, "the teacher sees the parent back");
    // The new socket carries the session both ways.
    send(&mut teacher, json!({ "type": "lock", "locked": true })).await;
    assert_eq!(next_of(&mut parent, "lock_changed").await["locked"], true);

    // Events during a cut arrive after `resumed`.
    drop(parent);
    assert!(connection_of(&mut teacher, &parent_id).await);
    send(&mut teacher, json!({ "type": "lock", "locked": false })).await;
    next_of(&mut teacher, "lock_changed").await;
    // Sealed keys sent meanwhile are all kept, in order: a rotation must not overtake its
    // predecessor, and none may be lost.
    for sealed in ["Zmlyc3Q", "c2Vjb25k", "dGhpcmQ"] {
        let keys = json!([{ "to": parent_id, "sealed": sealed }]);
        send(&mut teacher, json!({ "type": "e2ee_keys", "keys": keys })).await;
    }
    let (mut parent, resumed) = resume(&server, "parent0", &resume_token).await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(next_of(&mut parent, "lock_changed").await["locked"], false, "the missed event follows");
    for sealed in ["Zmlyc3Q", "c2Vjb25k", "dGhpcmQ"] {
        let key = next_of(&mut parent, "e2ee_key").await;
        assert_eq!(key, json!({ "type": "e2ee_key", "from": teacher_id, "sealed": sealed }));
    }

    // A resume while the old socket still looks alive (a network change leaves it hanging)
    // takes the session over; the old socket is closed.
    let (mut newer, resumed) = resume(&server, "parent0", &resume_token).await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert!(next(&mut parent).await.is_none(), "the replaced socket is closed");
    send(&mut newer, json!({ "type": "set_muted", "kind": "audio", "muted": true })).await;
    assert_eq!(next_of(&mut teacher, "mute_changed").await["participant_id"], parent_id);

    // Away for longer than the grace period: out, and the token no longer works.
    drop(newer);
    assert!(connection_of(&mut teacher, &parent_id).await);
    let left = next_of(&mut teacher, "participant_left").await;
    assert_eq!(left["participant_id"], parent_id);
    let (_socket, refused) = resume(&server, "parent0", &resume_token).await;
    assert_eq!(refused["code"], "resume_failed", "{refused}");

    // One attendance row for the parent across the three sockets, ended by the lost connection.
    send(&mut teacher, json!({ "type": "end_session" })).await;
    next_of(&mut teacher, "left").await;
    let records = loop {
        let (status, sessions) = status_json(
            server.user(Method::GET, "/v1/classes/std/sessions", "teacher").send().await.unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{sessions}");
        let session_id = sessions[0]["session_id"].as_str().unwrap().to_owned();
        let path = format!("/v1/classes/std/sessions/{session_id}/attendance");
        let (_, records) =
            status_json(server.user(Method::GET, &path, "teacher").send().await.unwrap()).await;
        let records = records.as_array().unwrap().clone();
        if records.iter().all(|r| !r["left_at"].is_null()) {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rows: Vec<&Value> = records.iter().filter(|r| r["user_id"] == "parent0").collect();
    assert_eq!(rows.len(), 1, "{records:?}");
    assert_eq!(rows[0]["leave_reason"], "connection_lost");

    let metrics = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    for line in ["visio_resumes_total{outcome=\"resumed\"} 3", "visio_resumes_total{outcome=\"failed\"} 3"] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in /metrics");
    }
}

both_backends!(a_broken_socket_resumes_within_the_grace_period);
