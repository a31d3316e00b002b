//! Moderation holds belong to the user for the whole session, over a real WebSocket: a pupil
//! muted (or whose camera was turned off) by the teacher who reconnects with the same token comes
//! back muted and cannot unmute; a removed pupil cannot join again.

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
    let muted = next_of(&mut pupil, "mute_changed").await;
    assert_eq!((muted["muted"].as_bool(), muted["by_moderator"].as_bool()), (Some(true), Some(true)));

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
