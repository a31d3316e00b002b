//! Raised hands over a real WebSocket: the queue in the order hands went up, broadcast to
//! everyone; a parent may lower only their own hand and never give the floor (refused with
//! `forbidden_role`, the socket stays open); the teacher gives the floor, which lowers the hand
//! and lifts a `mute_all`; a participant who leaves takes their hand along; a pupil playing with
//! the button is slowed down (`rate_limited`) and the others hear nothing of it.

use serde_json::{json, Value};

use crate::support::{both_backends, Db, TestServer};
use crate::visio::{join, next_of, send, Socket};

fn ids(hands: &Value) -> Vec<&str> {
    hands["participant_ids"]
        .as_array()
        .expect("participant_ids")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

async fn expect_error(socket: &mut Socket, code: &str) {
    let refused = next_of(socket, "error").await;
    assert_eq!(refused["code"], code, "{refused}");
    // The socket stays open: the next message is answered.
    send(socket, json!({ "type": "ping" })).await;
    next_of(socket, "pong").await;
}

async fn hands_queue_and_floor(db: Db) {
    let server = TestServer::start(db).await;
    server.class_with_people("c", "standard", false).await;
    server.put_member("c", "parent2", "parent", true).await;
    let (mut teacher, _teacher_rtc, _) = join(&server, "c", "teacher").await;
    next_of(&mut teacher, "admitted").await;
    let (mut parent, _parent_rtc, joined) = join(&server, "c", "parent").await;
    let parent_id = joined["participant_id"].as_str().unwrap().to_owned();
    next_of(&mut parent, "admitted").await;
    let (mut parent2, _parent2_rtc, joined) = join(&server, "c", "parent2").await;
    let parent2_id = joined["participant_id"].as_str().unwrap().to_owned();
    next_of(&mut parent2, "admitted").await;

    send(&mut teacher, json!({ "type": "mute_all" })).await;
    send(&mut parent2, json!({ "type": "raise_hand" })).await;
    for socket in [&mut teacher, &mut parent, &mut parent2] {
        assert_eq!(ids(&next_of(socket, "hands").await), [parent2_id.as_str()]);
    }
    send(&mut parent, json!({ "type": "raise_hand" })).await;
    for socket in [&mut teacher, &mut parent, &mut parent2] {
        assert_eq!(ids(&next_of(socket, "hands").await), [parent2_id.as_str(), parent_id.as_str()]);
    }

    // A parent may not lower another's hand, nor give the floor, even to themselves.
    send(&mut parent, json!({ "type": "lower_hand", "target": parent2_id })).await;
    expect_error(&mut parent, "forbidden_role").await;
    send(&mut parent, json!({ "type": "give_floor", "target": parent_id })).await;
    expect_error(&mut parent, "forbidden_role").await;
    send(&mut teacher, json!({ "type": "give_floor", "target": "nobody-here" })).await;
    expect_error(&mut teacher, "not_found").await;

    // The teacher gives the floor to the first hand: it goes down everywhere, everyone is told,
    // and the mute of `mute_all` no longer holds that parent.
    send(&mut teacher, json!({ "type": "give_floor", "target": parent2_id })).await;
    for socket in [&mut teacher, &mut parent, &mut parent2] {
        assert_eq!(ids(&next_of(socket, "hands").await), [parent_id.as_str()]);
        assert_eq!(next_of(socket, "floor_given").await["participant_id"], parent2_id.as_str());
    }
    send(&mut parent2, json!({ "type": "set_muted", "kind": "audio", "muted": false })).await;
    let unmuted = next_of(&mut teacher, "mute_changed").await;
    assert_eq!(
        (unmuted["participant_id"].as_str(), unmuted["muted"].as_bool()),
        (Some(parent2_id.as_str()), Some(false))
    );
    // The other parent is still held by the teacher's mute.
    send(&mut parent, json!({ "type": "set_muted", "kind": "audio", "muted": false })).await;
    expect_error(&mut parent, "muted_by_moderator").await;

    // A participant who leaves takes their hand along.
    send(&mut parent, json!({ "type": "leave" })).await;
    for socket in [&mut teacher, &mut parent2] {
        assert!(ids(&next_of(socket, "hands").await).is_empty());
    }

    // Playing with the button: the first raises go through (parent2 raised once already), then
    // raising is refused for a while; lowering a lowered hand changes nothing. The teacher sees
    // every change that went through and no more.
    let mut n_refused = 0;
    for n in 0..20 {
        let kind = if n % 2 == 0 { "raise_hand" } else { "lower_hand" };
        send(&mut parent2, json!({ "type": kind })).await;
        send(&mut parent2, json!({ "type": "ping" })).await;
        loop {
            let message = crate::visio::next(&mut parent2).await.expect("a message");
            match message["type"].as_str() {
                Some("pong") => break,
                Some("error") => {
                    assert_eq!(message["code"], "rate_limited", "{message}");
                    n_refused += 1;
                }
                _ => {}
            }
        }
    }
    assert_eq!(n_refused, 7, "raises refused");
    send(&mut teacher, json!({ "type": "ping" })).await;
    let mut n_hands = 0;
    loop {
        let message = crate::visio::next(&mut teacher).await.expect("a message");
        match message["type"].as_str() {
            Some("pong") => break,
            Some("hands") => n_hands += 1,
            _ => {}
        }
    }
    assert_eq!(
        n_hands, 6,
        "the teacher got one `hands` per change that went through (3 raises, 3 lowerings)"
    );
}
both_backends!(hands_queue_and_floor);
