//! Call authority over a real WebSocket. Moderation holds belong to the user for the whole
//! session: a pupil muted (or whose camera was turned off) by the teacher who reconnects with the
//! same token comes back muted and cannot unmute; a removed pupil cannot join again. The class
//! backend's changes reach a running call: a demoted teacher loses moderation at once, and a
//! deleted class ends its call for everyone.

use reqwest::Method;
use serde_json::json;

use crate::support::{both_backends, Db, TestServer};
use crate::visio::{join, next_of, send};

async fn holds_survive_reconnection_and_removal_is_final(db: Db) {
    let server = TestServer::start(db).await;
    server.class_with_people("c", "standard", false).await;
    let (mut teacher, _teacher_rtc, joined) = join(&server, "c", "teacher").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    next_of(&mut teacher, "admitted").await;

    let (mut pupil, _pupil_rtc, joined) = join(&server, "c", "parent").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    next_of(&mut pupil, "admitted").await;
    let first_id = joined["participant_id"].as_str().unwrap().to_owned();
    send(&mut teacher, json!({ "type": "mute", "target": first_id })).await;
    send(&mut teacher, json!({ "type": "disable_camera", "target": first_id })).await;
    // Both holds are in place before the pupil goes: commands and joins travel on different
    // sockets, so nothing else orders them.
    for _ in 0..2 {
        let muted = next_of(&mut pupil, "mute_changed").await;
        assert_eq!((muted["muted"].as_bool(), muted["by_moderator"].as_bool()), (Some(true), Some(true)));
    }

    // The pupil closes the page and joins again with the same token.
    let _ = pupil.close(None).await;
    drop(pupil);
    let (mut pupil, _pupil_rtc, joined) = join(&server, "c", "parent").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let second_id = joined["participant_id"].as_str().unwrap().to_owned();
    assert_ne!(second_id, first_id, "a new connection");
    let mut held = Vec::new();
    while held.len() < 2 {
        let change = next_of(&mut pupil, "mute_changed").await;
        if change["participant_id"] == second_id.as_str() {
            assert_eq!(
                (change["muted"].as_bool(), change["by_moderator"].as_bool()),
                (Some(true), Some(true))
            );
            held.push(change["kind"].as_str().unwrap().to_owned());
        }
    }
    held.sort();
    assert_eq!(held, ["audio", "video"], "both holds come back with the user");
    send(&mut pupil, json!({ "type": "set_muted", "kind": "audio", "muted": false })).await;
    let refused = next_of(&mut pupil, "error").await;
    assert_eq!(refused["code"], "muted_by_moderator", "{refused}");

    // Removed, the pupil cannot come back to this session.
    send(&mut teacher, json!({ "type": "remove", "target": second_id })).await;
    let left = next_of(&mut pupil, "left").await;
    assert_eq!(left["reason"], "removed_by_moderator", "{left}");
    let (_socket, _rtc, refused) = join(&server, "c", "parent").await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("removed_from_session"))
    );
}
both_backends!(holds_survive_reconnection_and_removal_is_final);

async fn class_backend_changes_reach_a_running_call(db: Db) {
    let server = TestServer::start(db).await;
    server.class_with_people("c", "standard", false).await;
    let (mut teacher, _teacher_rtc, joined) = join(&server, "c", "teacher").await;
    let teacher_id = joined["participant_id"].as_str().unwrap().to_owned();
    next_of(&mut teacher, "admitted").await;
    let (mut parent, _parent_rtc, joined) = join(&server, "c", "parent").await;
    let parent_id = joined["participant_id"].as_str().unwrap().to_owned();
    next_of(&mut parent, "admitted").await;

    // The class backend makes the teacher a parent: both pages are told, and the server refuses
    // the former teacher's moderation from then on.
    let demoted = server.put_member("c", "teacher", "parent", true).await;
    assert!(demoted.status().is_success(), "{}", demoted.status());
    for socket in [&mut teacher, &mut parent] {
        let change = next_of(socket, "role_changed").await;
        assert_eq!(
            (change["participant_id"].as_str(), change["role"].as_str()),
            (Some(teacher_id.as_str()), Some("parent"))
        );
    }
    send(&mut teacher, json!({ "type": "remove", "target": parent_id })).await;
    let refused = next_of(&mut teacher, "error").await;
    assert_eq!(refused["code"], "forbidden_role", "{refused}");
    send(&mut teacher, json!({ "type": "end_session" })).await;
    let refused = next_of(&mut teacher, "error").await;
    assert_eq!(refused["code"], "forbidden_role", "{refused}");

    // The class is deleted: its call ends for everyone, who are told why.
    let deleted = server.backend(Method::DELETE, "/v1/classes/c").send().await.unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    for socket in [&mut teacher, &mut parent] {
        let left = next_of(socket, "left").await;
        assert_eq!(left["reason"], "removed_from_class", "{left}");
    }
}
both_backends!(class_backend_changes_reach_a_running_call);
