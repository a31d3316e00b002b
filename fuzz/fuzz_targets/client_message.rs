//! The call WebSocket's client messages, as `signaling::visio` reads them: a text frame of at most
//! `MAX_CLIENT_MESSAGE_BYTES` (the WebSocket refuses larger ones), parsed by serde into
//! `ClientMessage`, then moderation targets checked as `ParticipantId`s. Never a panic; and what
//! parses serializes back to JSON that parses to the same message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use models::visio::{ClientMessage, MAX_CLIENT_MESSAGE_BYTES};
use models::ParticipantId;

fuzz_target!(|data: &[u8]| {
    // A WebSocket text message is UTF-8 by the time axum hands it over.
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text.len() > MAX_CLIENT_MESSAGE_BYTES {
        return;
    }
    let Ok(message) = serde_json::from_str::<ClientMessage>(text) else { return };
    match &message {
        ClientMessage::Mute { target }
        | ClientMessage::RequestUnmute { target, .. }
        | ClientMessage::DisableCamera { target }
        | ClientMessage::Remove { target }
        | ClientMessage::GiveFloor { target }
        | ClientMessage::LowerHand { target: Some(target) } => {
            let _ = ParticipantId::new(target.as_str());
        }
        ClientMessage::Pin { participant_id: Some(target) } => {
            let _ = ParticipantId::new(target.as_str());
        }
        _ => {}
    }
    // Serializing a message that was just parsed cannot fail: it is strings, numbers and enums.
    let json = serde_json::to_string(&message).expect("a parsed message serializes");
    let again: ClientMessage = serde_json::from_str(&json)
        .unwrap_or_else(|err| panic!("re-serialized message does not parse ({err}): {json}"));
    assert_eq!(again, message, "round trip changed the message: {json}");
});
