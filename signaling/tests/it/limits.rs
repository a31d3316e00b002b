//! Member and admin limits of every tier, under concurrent requests, and downgrades.

use futures_util::future::join_all;
use models::{Tier, TierPolicy};
use reqwest::StatusCode;

use crate::support::{both_backends, expect_error, status_json, Db, TestServer};

/// Sends `n` member PUTs at once and returns how many were accepted and how many refused with `code`.
async fn put_members_concurrently(
    server: &TestServer,
    class_id: &str,
    id_prefix: &str,
    role: &str,
    n: usize,
    refused_code: &str,
) -> (usize, usize) {
    let mut n_accepted = 0;
    let mut n_refused = 0;
    // Batches of 16 in flight: enough to race each other on the limit check.
    for batch_start in (0..n).step_by(16) {
        let user_ids: Vec<String> =
            (batch_start..n.min(batch_start + 16)).map(|idx| format!("{id_prefix}{idx}")).collect();
        let batch = user_ids.iter().map(|user_id| server.put_member(class_id, user_id, role, true));
        for response in join_all(batch).await {
            let (status, body) = status_json(response).await;
            match status {
                StatusCode::CREATED => n_accepted += 1,
                StatusCode::CONFLICT => {
                    assert_eq!(body["code"], refused_code, "{body}");
                    n_refused += 1;
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }
    (n_accepted, n_refused)
}

async fn member_limit_of_every_tier(db: Db) {
    let server = TestServer::start(db).await;
    for tier in Tier::ALL {
        let class_id = format!("members-{tier}");
        assert_eq!(server.put_class(&class_id, tier.as_str(), false).await.status(), StatusCode::CREATED);
        let max_members = TierPolicy::offer(tier).max_members as usize;
        let (n_accepted, n_refused) = put_members_concurrently(
            &server,
            &class_id,
            "p",
            "parent",
            max_members + 5,
            "member_limit_reached",
        )
        .await;
        assert_eq!((n_accepted, n_refused), (max_members, 5), "{tier}");

        // Pending members do not count and are not refused.
        let pending = server.put_member(&class_id, "pending-1", "parent", false).await;
        assert_eq!(pending.status(), StatusCode::CREATED, "{tier}");
        // Approving them is refused while the class is full.
        let approve = server.put_member(&class_id, "pending-1", "parent", true).await;
        expect_error(approve, 409, "member_limit_reached").await;
        // An existing member can still be updated.
        let update = server.put_member(&class_id, "p0", "parent", true).await;
        assert_eq!(update.status(), StatusCode::OK, "{tier}");
        // Removing one makes room for one.
        let removed = server
            .backend(reqwest::Method::DELETE, &format!("/v1/classes/{class_id}/members/p1"))
            .send()
            .await
            .unwrap();
        assert_eq!(removed.status(), StatusCode::NO_CONTENT);
        assert_eq!(server.put_member(&class_id, "pending-1", "parent", true).await.status(), StatusCode::OK);
        expect_error(server.put_member(&class_id, "late", "parent", true).await, 409, "member_limit_reached")
            .await;
    }
}
both_backends!(member_limit_of_every_tier);

async fn admin_limit_of_every_tier(db: Db) {
    let server = TestServer::start(db).await;
    for tier in Tier::ALL {
        let class_id = format!("admins-{tier}");
        server.put_class(&class_id, tier.as_str(), false).await;
        // The teacher counts as an administrator of the class.
        assert_eq!(
            server.put_member(&class_id, "teacher", "teacher", true).await.status(),
            StatusCode::CREATED
        );
        match TierPolicy::offer(tier).max_admins {
            Some(max_admins) => {
                let n_more = max_admins as usize - 1;
                let (n_accepted, n_refused) = put_members_concurrently(
                    &server,
                    &class_id,
                    "a",
                    "admin",
                    n_more + 3,
                    "admin_limit_reached",
                )
                .await;
                assert_eq!((n_accepted, n_refused), (n_more, 3), "{tier}");
                // A parent cannot be promoted past the limit, but can still join as a parent.
                assert_eq!(
                    server.put_member(&class_id, "parent", "parent", true).await.status(),
                    StatusCode::CREATED
                );
                expect_error(
                    server.put_member(&class_id, "parent", "admin", true).await,
                    409,
                    "admin_limit_reached",
                )
                .await;
                // Demoting one of them makes room. (Which admins won the race above is arbitrary.)
                assert_eq!(
                    server.put_member(&class_id, "teacher", "parent", true).await.status(),
                    StatusCode::OK
                );
                assert_eq!(
                    server.put_member(&class_id, "parent", "admin", true).await.status(),
                    StatusCode::OK
                );
            }
            None => {
                let (n_accepted, n_refused) =
                    put_members_concurrently(&server, &class_id, "a", "admin", 30, "admin_limit_reached")
                        .await;
                assert_eq!((n_accepted, n_refused), (30, 0), "{tier} has no admin limit");
            }
        }
    }
}
both_backends!(admin_limit_of_every_tier);

async fn downgrade_is_accepted_but_blocks_new_members(db: Db) {
    let server = TestServer::start(db).await;
    server.put_class("c", "standard", false).await;
    let (n_accepted, _) =
        put_members_concurrently(&server, "c", "p", "parent", 110, "member_limit_reached").await;
    assert_eq!(n_accepted, 110);
    for idx in 0..3 {
        server.put_member("c", &format!("a{idx}"), "admin", true).await;
    }

    // Standard -> Initial: 113 members > 100, 3 admins > 2.
    let (status, body) = status_json(server.put_class("c", "initial", false).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["tier"], "initial");
    assert_eq!(body["n_members"], 113);
    assert_eq!(body["over_limits"], serde_json::json!(["members", "admins"]));

    expect_error(server.put_member("c", "newcomer", "parent", true).await, 409, "member_limit_reached").await;
    // Everyone already there stays and can be updated.
    assert_eq!(server.put_member("c", "p5", "parent", true).await.status(), StatusCode::OK);
    assert_eq!(server.put_member("c", "a1", "admin", true).await.status(), StatusCode::OK);

    // Back under the limit (remove 14 members: 113 -> 99), newcomers are accepted again.
    for idx in 0..14 {
        server
            .backend(reqwest::Method::DELETE, &format!("/v1/classes/c/members/p{idx}"))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(server.put_member("c", "newcomer", "parent", true).await.status(), StatusCode::CREATED);
    let (_, body) =
        status_json(server.backend(reqwest::Method::GET, "/v1/classes/c").send().await.unwrap()).await;
    assert_eq!(body["over_limits"], serde_json::json!(["admins"]));
}
both_backends!(downgrade_is_accepted_but_blocks_new_members);

async fn sync_api_is_idempotent(db: Db) {
    let server = TestServer::start(db).await;
    assert_eq!(server.put_class("c", "plus", true).await.status(), StatusCode::CREATED);
    assert_eq!(server.put_class("c", "plus", true).await.status(), StatusCode::OK);
    assert_eq!(server.put_member("c", "u", "parent", true).await.status(), StatusCode::CREATED);
    assert_eq!(server.put_member("c", "u", "parent", true).await.status(), StatusCode::OK);
    for _ in 0..2 {
        let response =
            server.backend(reqwest::Method::DELETE, "/v1/classes/c/members/u").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    // A member of a deleted class is gone with it: re-creating the class starts empty.
    server.put_member("c", "u", "parent", true).await;
    for _ in 0..2 {
        let response = server.backend(reqwest::Method::DELETE, "/v1/classes/c").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    expect_error(
        server.backend(reqwest::Method::GET, "/v1/classes/c").send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    server.put_class("c", "plus", true).await;
    let (_, body) =
        status_json(server.backend(reqwest::Method::GET, "/v1/classes/c").send().await.unwrap()).await;
    assert_eq!(body["n_members"], 0);
    // A member of a class that does not exist cannot be added.
    expect_error(server.put_member("nope", "u", "parent", true).await, 404, "not_found").await;
}
both_backends!(sync_api_is_idempotent);
