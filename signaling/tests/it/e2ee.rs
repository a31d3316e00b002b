//! End-to-end encrypted calls over real sockets (docs/e2ee.md): a join needs a well-formed public
//! key unless the class allows browsers that cannot encrypt (the class backend's option, or a
//! teacher's setting); the others see each one's key; a sealed key reaches the one participant
//! it names, never another, another room's or a waiting one; bad or too many `e2ee_keys` get an
//! `error` and the call goes on; attendance and metrics say what was encrypted.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{both_backends, expect_error, status_json, Db, TestServer};
use crate::visio::{join, join_with, next, next_of, public_key, send, Socket};

/// A sealed key as pages make them: 51 bytes, 68 characters of base64url.
fn sealed(tag: char) -> String {
    tag.to_string().repeat(68)
}

/// The messages up to the `pong` that answers a `ping` sent now: the socket is still usable, and
/// whatever the server sent before is in the list.
async fn until_pong(socket: &mut Socket) -> Vec<Value> {
    send(socket, json!({ "type": "ping" })).await;
    let mut messages = Vec::new();
    loop {
        let message = next(socket).await.expect("the socket stays open");
        if message["type"] == "pong" {
            return messages;
        }
        messages.push(message);
    }
}

fn settings_path(class_id: &str) -> String {
    format!("/v1/classes/{class_id}/visio/settings")
}

async fn set_class_option(server: &TestServer, class_id: &str, allow_unencrypted: bool) {
    let body = json!({
        "name": format!("class {class_id}"), "tier": "standard",
        "options": { "confort_famille": false, "visio_allow_unencrypted": allow_unencrypted },
    });
    let response = server.backend(Method::PUT, &format!("/v1/classes/{class_id}")).json(&body).send().await;
    let (status, view) = status_json(response.unwrap()).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["options"]["visio_allow_unencrypted"], allow_unencrypted, "{view}");
}

/// The class's sessions, once the newest has ended (the SFU's events are recorded a moment later).
async fn ended_sessions(server: &TestServer, class_id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let path = format!("/v1/classes/{class_id}/sessions");
        let (status, sessions) = status_json(server.call(Method::GET, &path, "teacher").await).await;
        assert_eq!(status, 200, "{sessions}");
        let sessions = sessions.as_array().unwrap().clone();
        if sessions.first().is_some_and(|s| !s["ended_at"].is_null()) {
            return sessions;
        }
        assert!(Instant::now() < deadline, "the session never ended: {sessions:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one series on /metrics, once it reaches `at_least` (SFU statistics arrive every
/// few seconds).
async fn metric(server: &TestServer, series: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
        let value = text
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {series} on /metrics"));
        if value >= at_least || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn joins_without_a_key_need_the_class_to_allow_them(db: Db) {
    // The teacher tries many joins here; the join rate is tested in rate_limits.rs.
    let server = TestServer::start_with(db, |config| {
        config.limits.joins_per_user = signaling::limits::Rate { per_minute: 600, burst: 100 };
    })
    .await;
    server.class_with_people("std", "standard", false).await;
    server.put_member("std", "parent1", "parent", true).await;
    server.put_member("std", "parent2", "parent", true).await;
    server.put_class("other", "standard", false).await;
    server.put_member("other", "outsider", "teacher", true).await;

    // Absent or null: refused, with a message the page can show, and the socket closes.
    for e2ee in [None, Some(Value::Null)] {
        let (mut socket, _rtc, refused) = join_with(&server, "std", "teacher", e2ee).await;
        assert_eq!(refused["type"], "error", "{refused}");
        assert_eq!(refused["code"], "e2ee_required", "{refused}");
        let message = refused["message"].as_str().unwrap();
        assert!(message.contains("browser") && message.contains("teacher"), "{message}");
        assert!(next(&mut socket).await.is_none());
    }
    // A key of the wrong form: refused whatever the class allows.
    let mut compressed = vec![0x02u8; 33];
    compressed[0] = 0x03;
    for bad in [
        json!({ "public_key": "" }),
        json!({ "public_key": format!("{}=", public_key("teacher")) }),
        json!({ "public_key": &public_key("teacher")[1..] }),
        json!({ "public_key": format!("+{}", &public_key("teacher")[1..]) }),
        json!({ "public_key": base64_url(&compressed) }),
        json!({ "public_key": base64_url(&[0x05; 65]) }),
        json!({ "public_key": "A".repeat(300) }),
        json!({ "public_key": 42 }),
        json!({ "public_key": public_key("teacher"), "extra": 1 }),
    ] {
        let (mut socket, _rtc, refused) = join_with(&server, "std", "teacher", Some(bad.clone())).await;
        assert_eq!(refused["code"], "invalid_request", "{bad}: {refused}");
        assert!(next(&mut socket).await.is_none());
    }

    // The setting is the teachers' and admins': parents and strangers are refused.
    expect_error(server.call(Method::GET, &settings_path("std"), "parent").await, 403, "forbidden_role")
        .await;
    let put = |user: &'static str, body: Value| {
        let path = settings_path("std");
        let request = server.user(Method::PUT, &path, user).json(&body);
        async move { request.send().await.unwrap() }
    };
    expect_error(put("parent", json!({ "allow_unencrypted": true })).await, 403, "forbidden_role").await;
    expect_error(put("outsider", json!({ "allow_unencrypted": true })).await, 403, "not_a_member").await;
    expect_error(put("teacher", json!({ "allow_unencrypted": "yes" })).await, 422, "invalid_request").await;
    expect_error(put("teacher", json!({})).await, 422, "invalid_request").await;
    let (status, settings) =
        status_json(server.call(Method::GET, &settings_path("std"), "teacher").await).await;
    assert_eq!((status.as_u16(), settings), (200, json!({ "allow_unencrypted": false })));

    // A teacher allows browsers that cannot encrypt: the class backend sees the option too.
    let (status, settings) = status_json(put("teacher", json!({ "allow_unencrypted": true })).await).await;
    assert_eq!((status.as_u16(), settings), (200, json!({ "allow_unencrypted": true })));
    let (_, view) = status_json(server.backend(Method::GET, "/v1/classes/std").send().await.unwrap()).await;
    assert_eq!(view["options"], json!({ "confort_famille": false, "visio_allow_unencrypted": true }));
    // The class backend syncing the class without the option keeps the teacher's choice; with
    // it, the backend decides.
    for (options, kept) in [
        (json!({ "confort_famille": true }), true),
        (json!({ "confort_famille": false, "visio_allow_unencrypted": null }), true),
        (json!({ "confort_famille": false, "visio_allow_unencrypted": false }), false),
        (json!({ "confort_famille": false, "visio_allow_unencrypted": true }), true),
    ] {
        let body = json!({ "name": "Standard class", "tier": "standard", "options": options });
        let (status, view) =
            status_json(server.backend(Method::PUT, "/v1/classes/std").json(&body).send().await.unwrap())
                .await;
        assert_eq!(
            (status.as_u16(), &view["options"]["visio_allow_unencrypted"]),
            (200, &json!(kept)),
            "{body}"
        );
    }

    let (mut teacher, _teacher_rtc, teacher_id) = admitted(&server, "std", "teacher").await;
    let (mut clear, _clear_rtc, joined) = join_with(&server, "std", "parent", Some(Value::Null)).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let clear_id = joined["participant_id"].as_str().unwrap().to_owned();
    // Each sees the other's key, or that it has none.
    let admitted = next_of(&mut clear, "admitted").await;
    assert_eq!(admitted["participants"][0]["e2ee_public_key"], public_key("teacher"), "{admitted}");
    let arrived = next_of(&mut teacher, "participant_joined").await;
    assert_eq!(arrived["participant"]["participant_id"], clear_id);
    assert!(arrived["participant"]["e2ee_public_key"].is_null(), "{arrived}");
    // Without a key of its own, it cannot send sealed keys; its socket goes on.
    let keys = json!([{ "to": teacher_id, "sealed": sealed('a') }]);
    send(&mut clear, json!({ "type": "e2ee_keys", "keys": keys })).await;
    let refused = next_of(&mut clear, "error").await;
    assert_eq!(refused["code"], "invalid_request", "{refused}");
    assert!(until_pong(&mut clear).await.iter().all(|m| m["type"] != "left"));

    // The class backend turns the option off: the next join without a key is refused again, and
    // on again: admitted.
    set_class_option(&server, "std", false).await;
    let (_socket, _rtc, refused) = join_with(&server, "std", "parent1", None).await;
    assert_eq!(refused["code"], "e2ee_required", "{refused}");
    set_class_option(&server, "std", true).await;
    let (_settings_status, settings) =
        status_json(server.call(Method::GET, &settings_path("std"), "teacher").await).await;
    assert_eq!(settings, json!({ "allow_unencrypted": true }));
    let (mut late, _late_rtc, joined) = join_with(&server, "std", "parent1", None).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    next_of(&mut late, "admitted").await;
    let (mut keyed, _keyed_rtc, joined) = join(&server, "std", "parent2").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    next_of(&mut keyed, "admitted").await;

    // Attendance says who encrypted, and the session was not end-to-end encrypted.
    send(&mut teacher, json!({ "type": "end_session" })).await;
    next_of(&mut teacher, "left").await;
    let sessions = ended_sessions(&server, "std").await;
    assert_eq!(sessions[0]["e2ee"], false, "{sessions:?}");
    let session_id = sessions[0]["session_id"].as_str().unwrap();
    let path = format!("/v1/classes/std/sessions/{session_id}/attendance");
    let (_, records) = status_json(server.call(Method::GET, &path, "teacher").await).await;
    let by_user: Vec<(&str, bool)> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["user_id"].as_str().unwrap(), r["e2ee"].as_bool().unwrap()))
        .collect();
    assert_eq!(by_user, [("teacher", true), ("parent", false), ("parent1", false), ("parent2", true)]);
    let csv = server.call(Method::GET, &format!("{path}?format=csv"), "teacher").await.text().await.unwrap();
    let last_column: Vec<&str> = csv.lines().map(|line| line.rsplit(',').next().unwrap()).collect();
    assert_eq!(last_column, ["e2ee", "true", "false", "false", "true"], "{csv}");

    // Metrics: joins and the session by encryption, the refusals by code.
    assert_eq!(metric(&server, r#"sfu_participants_joined_total{e2ee="true"}"#, 2.0).await, 2.0);
    assert_eq!(metric(&server, r#"sfu_participants_joined_total{e2ee="false"}"#, 2.0).await, 2.0);
    assert_eq!(metric(&server, r#"sfu_sessions_ended_total{e2ee="false"}"#, 1.0).await, 1.0);
    assert_eq!(metric(&server, r#"sfu_sessions_ended_total{e2ee="true"}"#, 0.0).await, 0.0);
    assert_eq!(metric(&server, r#"sfu_joins_refused_total{code="e2ee_required"}"#, 3.0).await, 3.0);
}
both_backends!(joins_without_a_key_need_the_class_to_allow_them);

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Joins and waits for the admission; returns the socket, its `Rtc` and the participant id.
async fn admitted(server: &TestServer, class_id: &str, user: &str) -> (Socket, str0m::Rtc, String) {
    let (mut socket, rtc, joined) = join(server, class_id, user).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    next_of(&mut socket, "admitted").await;
    (socket, rtc, joined["participant_id"].as_str().unwrap().to_owned())
}

async fn sealed_keys_reach_their_recipient_only(db: Db) {
    let server = TestServer::start(db).await;
    server.class_with_people("std", "standard", false).await;
    server.put_member("std", "parent1", "parent", true).await;
    server.class_with_people("other", "standard", false).await;
    server.class_with_people("idle", "standard", false).await;

    // In a class whose call has not started, a parent waits: it may not send keys, and nobody
    // elsewhere can reach it.
    let (mut waiting, _waiting_rtc, joined) = join(&server, "idle", "parent").await;
    let waiting_id = joined["participant_id"].as_str().unwrap().to_owned();
    next_of(&mut waiting, "waiting").await;
    let keys = json!([{ "to": "p999999", "sealed": sealed('w') }]);
    send(&mut waiting, json!({ "type": "e2ee_keys", "keys": keys })).await;
    let refused = next_of(&mut waiting, "error").await;
    assert_eq!(refused["code"], "invalid_request", "{refused}");

    let (mut elsewhere, _elsewhere_rtc, elsewhere_id) = admitted(&server, "other", "teacher").await;
    let (mut teacher, _teacher_rtc, teacher_id) = admitted(&server, "std", "teacher").await;
    let (mut parent0, _parent0_rtc, parent0_id) = admitted(&server, "std", "parent").await;
    let (mut parent1, _parent1_rtc, parent1_id) = admitted(&server, "std", "parent1").await;
    let arrived = next_of(&mut teacher, "participant_joined").await;
    assert_eq!(arrived["participant"]["e2ee_public_key"], public_key("parent"), "{arrived}");

    // A key for parent0, and some for participants of other rooms (skipped without a word: the
    // sender cannot tell them from someone who just left).
    let keys = json!([
        { "to": parent0_id, "sealed": sealed('a') },
        { "to": elsewhere_id, "sealed": sealed('b') },
        { "to": waiting_id, "sealed": sealed('c') },
        { "to": "p999999", "sealed": sealed('d') },
    ]);
    send(&mut teacher, json!({ "type": "e2ee_keys", "keys": keys })).await;
    // Then one for parent1 alone: it is the first key parent1 gets, so nothing of the first
    // message reached it.
    send(&mut teacher, json!({ "type": "e2ee_keys", "keys": [{ "to": parent1_id, "sealed": sealed('e') }] }))
        .await;
    let key = next_of(&mut parent0, "e2ee_key").await;
    assert_eq!(key, json!({ "type": "e2ee_key", "from": teacher_id, "sealed": sealed('a') }));
    let key = next_of(&mut parent1, "e2ee_key").await;
    assert_eq!(key, json!({ "type": "e2ee_key", "from": teacher_id, "sealed": sealed('e') }));
    // parent1 answers with its own key for the teacher, and nobody else sees it.
    send(&mut parent1, json!({ "type": "e2ee_keys", "keys": [{ "to": teacher_id, "sealed": sealed('f') }] }))
        .await;
    let key = next_of(&mut teacher, "e2ee_key").await;
    assert_eq!(key, json!({ "type": "e2ee_key", "from": parent1_id, "sealed": sealed('f') }));
    for socket in [&mut parent0, &mut parent1, &mut elsewhere, &mut waiting, &mut teacher] {
        let messages = until_pong(socket).await;
        assert!(messages.iter().all(|m| m["type"] != "e2ee_key" && m["type"] != "error"), "{messages:?}");
    }

    // Malformed messages get an `error` each, and the socket goes on.
    let good = sealed('g');
    let too_many: Vec<Value> =
        (0..257).map(|idx| json!({ "to": format!("q{idx}"), "sealed": good })).collect();
    for bad in [
        json!({ "type": "e2ee_keys", "keys": too_many }),
        json!({ "type": "e2ee_keys", "keys": [{ "to": parent0_id, "sealed": "" }] }),
        json!({ "type": "e2ee_keys", "keys": [{ "to": parent0_id, "sealed": "a".repeat(257) }] }),
        json!({ "type": "e2ee_keys", "keys": [{ "to": parent0_id, "sealed": format!("{good}==") }] }),
        json!({ "type": "e2ee_keys", "keys": [{ "to": parent0_id, "sealed": "ab+/" }] }),
        json!({ "type": "e2ee_keys", "keys": [{ "to": teacher_id, "sealed": good }] }),
        json!({ "type": "e2ee_keys", "keys": [{ "to": "../p1", "sealed": good }] }),
        json!({ "type": "e2ee_keys", "keys": [{ "to": parent0_id, "sealed": good }, { "to": parent0_id, "sealed": good }] }),
        json!({ "type": "e2ee_keys", "keys": [{ "to": parent0_id }] }),
        json!({ "type": "e2ee_keys", "keys": [{ "to": parent0_id, "sealed": good, "from": parent1_id }] }),
        json!({ "type": "e2ee_keys" }),
    ] {
        send(&mut teacher, bad.clone()).await;
        let messages = until_pong(&mut teacher).await;
        let errors: Vec<&Value> = messages.iter().filter(|m| m["type"] == "error").collect();
        assert_eq!(errors.len(), 1, "{bad}: {messages:?}");
        assert_eq!(errors[0]["code"], "invalid_request", "{bad}: {messages:?}");
    }
    // None of them reached parent0.
    let messages = until_pong(&mut parent0).await;
    assert!(messages.iter().all(|m| m["type"] != "e2ee_key"), "{messages:?}");

    // Relayed and skipped keys on /metrics (from the SFU's statistics, every few seconds).
    assert_eq!(metric(&server, r#"sfu_e2ee_keys_total{outcome="relayed"}"#, 3.0).await, 3.0);
    assert_eq!(metric(&server, r#"sfu_e2ee_keys_total{outcome="skipped"}"#, 3.0).await, 3.0);
    let refused = metric(&server, r#"sfu_e2ee_keys_total{outcome="refused"}"#, 0.0).await;
    assert!(refused >= 257.0 + 8.0, "{refused}");
}
both_backends!(sealed_keys_reach_their_recipient_only);

async fn sealed_keys_are_rate_limited_per_participant(db: Db) {
    let server = TestServer::start(db).await;
    server.class_with_people("std", "standard", false).await;
    let (mut teacher, _teacher_rtc, _) = admitted(&server, "std", "teacher").await;
    let (mut parent, _parent_rtc, parent_id) = admitted(&server, "std", "parent").await;

    // A burst of 150 messages: about 100 go through, the rest get `rate_limited`; the call
    // goes on.
    let started = Instant::now();
    for idx in 0..150 {
        let keys = json!([{ "to": parent_id, "sealed": format!("{idx:0>68}") }]);
        send(&mut teacher, json!({ "type": "e2ee_keys", "keys": keys })).await;
    }
    let messages = until_pong(&mut teacher).await;
    let elapsed = started.elapsed().as_secs_f64();
    let n_limited = messages.iter().filter(|m| m["code"] == "rate_limited").count();
    let errors = messages.iter().filter(|m| m["type"] == "error");
    assert!(errors.clone().all(|m| m["code"] == "rate_limited"), "{messages:?}");
    let n_passed = 150 - n_limited;
    assert!(n_passed >= 100, "{n_passed} passed");
    assert!(n_passed as f64 <= 100.0 + 20.0 * elapsed + 1.0, "{n_passed} passed in {elapsed} s");
    let mut received = Vec::new();
    while received.len() < n_passed {
        received.push(next_of(&mut parent, "e2ee_key").await["sealed"].as_str().unwrap().to_owned());
    }
    // In the order sent.
    let numbers: Vec<u32> = received.iter().map(|sealed| sealed.parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]), "{numbers:?}");

    // A moment later, keys go through again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let keys = json!([{ "to": parent_id, "sealed": sealed('z') }]);
    send(&mut teacher, json!({ "type": "e2ee_keys", "keys": keys })).await;
    assert!(until_pong(&mut teacher).await.iter().all(|m| m["type"] != "error"));
    assert_eq!(next_of(&mut parent, "e2ee_key").await["sealed"], sealed('z'));
    let refused = metric(&server, r#"sfu_e2ee_keys_total{outcome="refused"}"#, 0.0).await;
    assert_eq!(refused, n_limited as f64);
}
both_backends!(sealed_keys_are_rate_limited_per_participant);
