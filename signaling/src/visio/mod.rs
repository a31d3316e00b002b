//! Class calls: the WebSocket of each participant, between the browser and the in-process SFU.
//!
//! The connection task authenticates the first message (`join`: token and SDP offer), checks class
//! membership and the tier, then runs the participant's [`session`]: client messages become
//! `SfuHandle` calls, and the SFU's per-participant events become `ServerMessage`s ([`convert`]).
//! A first message `resume` instead hands the socket to the session it names, whose previous
//! socket broke. Session rules (capacity, duration, waiting room, moderation, the grace period of
//! a lost connection) are the SFU's; this module only decides *who* is asking. End-to-end
//! encryption ([`e2ee`]): a `join` brings the page's public key, required unless the class allows
//! browsers that cannot encrypt ([`settings`]), and sealed keys go through the SFU's room.

mod adopt;
mod convert;
mod e2ee;
mod session;
pub mod settings;

pub use session::Resumable;

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use models::visio::{ClientMessage, ServerMessage, MAX_CLIENT_MESSAGE_BYTES, PROTOCOL_VERSION};
use models::{ApiError, ClassId, ErrorCode, UserId};
use sfu::{JoinRequest, ParticipantParams, RoomId, SfuError};
use tokio::sync::mpsc;

use convert::track_declaration;
use session::{Attached, CallSession};

use crate::error::AppError;
use crate::extract::ClassPath;
use crate::AppState;

/// A client that connects but never says who it is is dropped after this long.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a `join` without `e2ee` is refused where the class does not allow unencrypted calls.
const E2EE_REQUIRED: &str = "this class's calls are end-to-end encrypted and this browser cannot \
     encrypt them: join with an up-to-date browser (Firefox, Chrome, Edge or Safari), or ask a \
     teacher to allow unencrypted calls in the class settings";

/// The call WebSocket of one participant (see `docs/protocol.md`). The user's token travels in the
/// first message (`join`), never in the URL, so refusals after the upgrade (`unauthorized`,
/// `not_a_member`, `room_full`...) are `error` messages on the socket. Admission comes first: a
/// node that is busy answers `503 server_busy` with `Retry-After` at once, before the upgrade (see
/// `limits`).
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/visio/ws", tag = "user",
    params(("class_id" = ClassId, Path)),
    responses(
        (status = 101, description = "Switching Protocols: the call's WebSocket"),
        (status = 400, description = "malformed_request: not a WebSocket upgrade", body = ApiError),
    )
)]
pub async fn visio_ws(
    State(state): State<AppState>,
    ClassPath(class_id): ClassPath,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    if let Err(limited) = state.limits.admits_joins(state.sfu.event_backlog()) {
        return Ok(crate::limits::refusal(ErrorCode::ServerBusy, limited));
    }
    Ok(ws?.max_message_size(MAX_CLIENT_MESSAGE_BYTES).max_frame_size(MAX_CLIENT_MESSAGE_BYTES).on_upgrade(
        move |socket| async move {
            let span = tracing::info_span!("visio", %class_id, participant_id = tracing::field::Empty);
            tracing::Instrument::instrument(connection(state, class_id, socket), span).await
        },
    ))
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> bool {
    // Serializing our own enum of strings and numbers cannot fail.
    let text = serde_json::to_string(message).expect("server messages serialize");
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn refuse(mut socket: WebSocket, code: ErrorCode, message: impl Into<String>) {
    let _ = send(&mut socket, &ServerMessage::Error { code, message: message.into() }).await;
    let _ = socket.send(Message::Close(None)).await;
}

fn parse(text: &str) -> Result<ClientMessage, String> {
    serde_json::from_str(text).map_err(|err| format!("unreadable message: {err}"))
}

async fn connection(state: AppState, class_id: ClassId, mut socket: WebSocket) {
    let first = match tokio::time::timeout(JOIN_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => parse(&text),
        Ok(Some(Ok(_))) => Err("the first message must be a JSON `join`".to_owned()),
        Ok(_) => return,
        Err(_) => Err("no `join` message in time".to_owned()),
    };
    let (token, offer_sdp, tracks, slots, e2ee) = match first {
        Ok(ClientMessage::Join { token, sdp, tracks, slots, e2ee }) => (token, sdp, tracks, slots, e2ee),
        Ok(ClientMessage::Resume { token, resume_token }) => {
            return resume(state, class_id, socket, token, resume_token).await
        }
        Ok(_) => {
            return refuse(socket, ErrorCode::InvalidRequest, "the first message must be `join` or `resume`")
                .await
        }
        Err(message) => return refuse(socket, ErrorCode::InvalidRequest, message).await,
    };
    let (user_id, connection) = match authenticate(&state, &token) {
        Ok(authenticated) => authenticated,
        Err((code, message)) => return refuse(socket, code, message).await,
    };
    let e2ee_public_key = match e2ee.map(e2ee::public_key).transpose() {
        Ok(key) => key,
        Err(message) => return refuse(socket, ErrorCode::InvalidRequest, message).await,
    };
    // Held until the participant's media connects (`CallSession::admission`).
    let admission = match state.limits.start_join() {
        Ok(permit) => permit,
        Err(limited) => {
            let message = format!("the server is busy; try again in {} s", limited.retry_after_secs());
            return refuse(socket, ErrorCode::ServerBusy, message).await;
        }
    };
    let member = match state.directory.approved_member(&class_id, &user_id).await {
        Ok(Some(member)) => member,
        Ok(None) => {
            return refuse(socket, ErrorCode::NotAMember, "you are not an approved member of this class")
                .await
        }
        Err(err) => {
            tracing::error!(cause = %err, "directory lookup failed");
            return refuse(socket, ErrorCode::Unavailable, "Service temporarily unavailable").await;
        }
    };
    let (member, tier, options) = member;
    let Some(visio) = state.directory.tiers().policy(tier).visio else {
        return refuse(socket, ErrorCode::TierForbidsVisio, "this class's offer has no video calls").await;
    };
    if e2ee_public_key.is_none() && !options.visio_allow_unencrypted {
        state.metrics.join_refused(ErrorCode::E2eeRequired);
        return refuse(socket, ErrorCode::E2eeRequired, E2EE_REQUIRED).await;
    }
    let room_id = RoomId::from(&class_id);
    let request = JoinRequest {
        room_id: room_id.clone(),
        policy: Some(visio),
        participant: ParticipantParams {
            user_id: member.user_id.clone(),
            display_name: member.display_name.clone(),
            role: member.role,
            e2ee_public_key,
        },
        offer_sdp,
        tracks: tracks.into_iter().map(track_declaration).collect(),
        slots: slots.into_iter().map(|s| sfu::SlotDeclaration { mid: s.mid, kind: s.kind }).collect(),
    };
    let joined = match state.sfu.join(request).await {
        Ok(joined) => joined,
        Err(err) => return refuse(socket, err.code(), join_refusal_message(&err)).await,
    };
    let participant_id = joined.participant_id.clone();
    tracing::Span::current().record("participant_id", tracing::field::display(&participant_id));
    let resume_token = session::new_token();
    state.sfu.resumable(&room_id, &participant_id, &resume_token).await;
    let welcome = ServerMessage::Joined {
        protocol_version: PROTOCOL_VERSION,
        participant_id: participant_id.to_string(),
        role: member.role,
        sdp: joined.answer_sdp,
        max_duration_seconds: visio.max_duration.map(|d| d.as_secs()),
        max_participants: visio.max_participants,
        max_audio_slots: state.sfu.room_config().audio_slots as u32,
        max_thumbnail_slots: state.sfu.room_config().thumbnail_slots as u32,
        ice_servers: crate::turn::issue(&state, &participant_id.to_string(), crate::turn::Via::Join),
        resume_token: resume_token.clone(),
        reconnect_grace_seconds: state.sfu.room_config().reconnect_grace.as_secs(),
    };
    let session =
        CallSession::new(&state, room_id.clone(), participant_id.clone(), joined.events, Some(admission));
    // The answer goes out before any event.
    if send(&mut socket, &welcome).await {
        let attached = Attached { socket, connection };
        session.run(state.calls.clone(), resume_token, member.user_id, class_id, attached).await;
    } else {
        state.sfu.leave(&room_id, &participant_id).await;
    }
}

/// Why a `resume` is refused: the session is not running any more (anywhere).
const RESUME_GONE: &str = "this call session has ended (the connection was lost for too long): join again";

/// A `resume`: the socket goes to the session the token names, if it is this user's in this
/// class and still running (its grace period has not passed).
async fn resume(state: AppState, class_id: ClassId, socket: WebSocket, token: String, resume_token: String) {
    let (user_id, connection) = match authenticate(&state, &token) {
        Ok(authenticated) => authenticated,
        Err((code, message)) => return refuse(socket, code, message).await,
    };
    let gone = RESUME_GONE;
    let Some(handoff) = state.calls.find(&resume_token, &user_id, &class_id) else {
        let room_id = RoomId::from(&class_id);
        if let Some(adopted) = state.sfu.adopt(&room_id, &user_id, &resume_token).await {
            let attached = Attached { socket, connection };
            return adopt::resume_adopted(state, class_id, user_id, resume_token, adopted, attached).await;
        }
        state.metrics.resume(false);
        return refuse(socket, ErrorCode::ResumeFailed, gone).await;
    };
    match handoff.send(Attached { socket, connection }).await {
        Ok(()) => state.metrics.resume(true),
        Err(mpsc::error::SendError(attached)) => {
            state.metrics.resume(false);
            refuse(attached.socket, ErrorCode::ResumeFailed, gone).await;
        }
    }
}

/// Who a `join` or `resume` is from (the user's token), within the user's join rate, and their
/// place among their open call connections, held while this socket carries the session.
fn authenticate(
    state: &AppState,
    token: &str,
) -> Result<(UserId, crate::limits::ConnectionGuard), (ErrorCode, String)> {
    let user_id = state.jwt.verify(token).map_err(|err| (ErrorCode::Unauthorized, err.to_string()))?;
    if let Err(limited) = state.limits.check_user(crate::limits::Kind::Join, &user_id) {
        let message = format!("too many joins; try again in {} s", limited.retry_after_secs());
        return Err((ErrorCode::RateLimited, message));
    }
    let Some(connection) = state.limits.open_connection(&user_id) else {
        let limit = state.limits.config().max_call_connections_per_user;
        let message = format!("you already have {limit} call connections open; close one first");
        return Err((ErrorCode::TooManyConnections, message));
    };
    Ok((user_id, connection))
}

fn join_refusal_message(err: &SfuError) -> String {
    match err.code() {
        ErrorCode::RoomFull => "the call is full: the class's offer allows no more people at once".into(),
        ErrorCode::SessionLocked => "the teacher locked the call: nobody new may join".into(),
        ErrorCode::TierForbidsVisio => "this class's offer has no video calls".into(),
        _ => err.to_string(),
    }
}
