//! Capabilities for every role and tier, and what non-members learn (nothing).

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{both_backends, expect_error, status_json, Db, TestServer};

/// What the offers promise, written out by hand so that a change of the table shows up here.
fn expected(tier: &str, role: &str, confort_famille: bool) -> Value {
    let moderator = role != "parent";
    let (visio_allowed, max_duration, max_participants) = match tier {
        "standard" => (true, json!(1800), 8),
        "plus" => (true, Value::Null, 70),
        _ => (false, Value::Null, 0),
    };
    let (photos, videos, storage) = match tier {
        "free" => (10, 1, 1_000_000_000u64),
        "initial" => (20, 1, 5_000_000_000),
        "standard" => (36, 2, 10_000_000_000),
        _ => (36, 3, 20_000_000_000),
    };
    json!({
        "class_id": format!("c-{tier}-{confort_famille}-{role}"),
        "user_id": format!("{role}-1"),
        "display_name": format!("Person {role}-1"),
        "role": role,
        "tier": tier,
        "visio": {
            "allowed": visio_allowed,
            "max_duration_seconds": max_duration,
            "max_participants": max_participants,
            "can_start": visio_allowed && moderator,
            "can_moderate": visio_allowed && moderator,
        },
        "media": {
            "can_view": true,
            "can_upload": moderator,
            "can_download": moderator || confort_famille,
            "max_photos_per_post": photos,
            "max_videos_per_post": videos,
            "max_video_duration_seconds": 600,
            "storage_quota_bytes": storage,
        },
    })
}

async fn capabilities_for_every_role_and_tier(db: Db) {
    let server = TestServer::start(db).await;
    let mut n_checked = 0;
    for tier in ["free", "initial", "standard", "plus"] {
        for confort_famille in [false, true] {
            for role in ["teacher", "admin", "parent"] {
                // One class per role: a Free class has room for one administrator only.
                let class_id = format!("c-{tier}-{confort_famille}-{role}");
                server.put_class(&class_id, tier, confort_famille).await;
                let user = format!("{role}-1");
                server.put_member(&class_id, &user, role, true).await;
                let response = server
                    .user(Method::GET, &format!("/v1/classes/{class_id}/capabilities"), &user)
                    .send()
                    .await
                    .unwrap();
                let (status, body) = status_json(response).await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body, expected(tier, role, confort_famille), "{tier} {role} {confort_famille}");
                n_checked += 1;
            }
        }
    }
    assert_eq!(n_checked, 24);
}
both_backends!(capabilities_for_every_role_and_tier);

async fn outsiders_learn_nothing(db: Db) {
    let server = TestServer::start(db).await;
    server.put_class("mine", "plus", false).await;
    server.put_class("theirs", "plus", false).await;
    server.put_member("mine", "me", "parent", true).await;
    server.put_member("theirs", "them", "teacher", true).await;
    server.put_member("theirs", "waiting", "parent", false).await;

    let ask = |class_id: &str, user: &str| {
        server.user(Method::GET, &format!("/v1/classes/{class_id}/capabilities"), user).send()
    };
    // Another class that exists, a class that does not exist, a class where I am only pending: the
    // same status and the same body.
    let existing = expect_error(ask("theirs", "me").await.unwrap(), 403, "not_a_member").await;
    let missing = expect_error(ask("no-such-class", "me").await.unwrap(), 403, "not_a_member").await;
    let pending = expect_error(ask("theirs", "waiting").await.unwrap(), 403, "not_a_member").await;
    assert_eq!(existing, missing);
    assert_eq!(existing, pending);
    // A member removed by the class backend loses access at once.
    server.backend(Method::DELETE, "/v1/classes/mine/members/me").send().await.unwrap();
    let removed = expect_error(ask("mine", "me").await.unwrap(), 403, "not_a_member").await;
    assert_eq!(existing, removed);
}
both_backends!(outsiders_learn_nothing);

async fn no_contact_details_are_stored_or_returned(db: Db) {
    let server = TestServer::start(db).await;
    server.put_class("c", "plus", false).await;
    for display_name in ["lea@example.org", "06 12 34 56 78", "+33 6 12 34 56 78"] {
        let response = server
            .backend(Method::PUT, "/v1/classes/c/members/u")
            .json(&json!({ "display_name": display_name, "role": "parent", "approved": true }))
            .send()
            .await
            .unwrap();
        expect_error(response, 422, "invalid_request").await;
    }
    // Extra fields such as an email are refused, not silently stored.
    let response = server
        .backend(Method::PUT, "/v1/classes/c/members/u")
        .json(
            &json!({ "display_name": "Léa", "role": "parent", "approved": true, "email": "lea@example.org" }),
        )
        .send()
        .await
        .unwrap();
    expect_error(response, 422, "invalid_request").await;
}
both_backends!(no_contact_details_are_stored_or_returned);
