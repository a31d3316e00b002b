//! Class calls: the WebSocket of each participant, between the browser and the in-process SFU.
//!
//! The connection task authenticates the first message (`join`: token and SDP offer), checks class
//! membership and the tier, then relays: client messages become `SfuHandle` calls, and the SFU's
//! per-participant events become `ServerMessage`s. Session rules (capacity, duration, waiting
//! room, moderation) are the SFU's; this module only decides *who* is asking.

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use models::visio::{
    ClientMessage, Kind, LeftReason, Participant, ServerMessage, SlotState, Source, Track,
    MAX_CLIENT_MESSAGE_BYTES, PROTOCOL_VERSION,
};
use models::{ApiError, ClassId, ErrorCode};
use sfu::{
    CloseReason, Command, JoinRequest, LeaveReason, MediaKind, ParticipantEvent, ParticipantId,
    ParticipantInfo, ParticipantParams, RoomId, SfuError, SfuHandle, TrackDeclaration, TrackInfo,
    TrackSource,
};
use tokio::sync::mpsc;

use crate::error::AppError;
use crate::extract::ClassPath;
use crate::AppState;

/// A client that connects but never says who it is is dropped after this long.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

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
    let (token, offer_sdp, tracks, slots) = match first {
        Ok(ClientMessage::Join { token, sdp, tracks, slots }) => (token, sdp, tracks, slots),
        Ok(_) => return refuse(socket, ErrorCode::InvalidRequest, "the first message must be `join`").await,
        Err(message) => return refuse(socket, ErrorCode::InvalidRequest, message).await,
    };
    let user_id = match state.jwt.verify(&token) {
        Ok(user_id) => user_id,
        Err(err) => return refuse(socket, ErrorCode::Unauthorized, err.to_string()).await,
    };
    if let Err(limited) = state.limits.check_user(crate::limits::Kind::Join, &user_id) {
        let message = format!("too many joins; try again in {} s", limited.retry_after_secs());
        return refuse(socket, ErrorCode::RateLimited, message).await;
    }
    // Held for as long as this socket is open.
    let Some(_connection) = state.limits.open_connection(&user_id) else {
        let limit = state.limits.config().max_call_connections_per_user;
        let message = format!("you already have {limit} call connections open; close one first");
        return refuse(socket, ErrorCode::TooManyConnections, message).await;
    };
    // Held until the join is answered.
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
    let (member, tier, _) = member;
    let Some(visio) = state.directory.tiers().policy(tier).visio else {
        return refuse(socket, ErrorCode::TierForbidsVisio, "this class's offer has no video calls").await;
    };
    let room_id = RoomId::from(&class_id);
    let request = JoinRequest {
        room_id: room_id.clone(),
        policy: Some(visio),
        participant: ParticipantParams {
            user_id: member.user_id.clone(),
            display_name: member.display_name.clone(),
            role: member.role,
        },
        offer_sdp,
        tracks: tracks.into_iter().map(track_declaration).collect(),
        slots: slots.into_iter().map(|s| sfu::SlotDeclaration { mid: s.mid, kind: s.kind }).collect(),
    };
    let joined = match state.sfu.join(request).await {
        Ok(joined) => joined,
        Err(err) => return refuse(socket, err.code(), join_refusal_message(&err)).await,
    };
    drop(admission);
    let participant_id = joined.participant_id.clone();
    tracing::Span::current().record("participant_id", tracing::field::display(&participant_id));
    let welcome = ServerMessage::Joined {
        protocol_version: PROTOCOL_VERSION,
        participant_id: participant_id.to_string(),
        role: member.role,
        sdp: joined.answer_sdp,
        max_duration_seconds: visio.max_duration.map(|d| d.as_secs()),
        max_participants: visio.max_participants,
        max_audio_slots: state.sfu.room_config().audio_slots as u32,
        max_thumbnail_slots: state.sfu.room_config().thumbnail_slots as u32,
    };
    // The answer goes out before any event.
    if send(&mut socket, &welcome).await {
        let idle_timeout_secs = state.config.http.idle_timeout_secs;
        relay(&state.sfu, &room_id, &participant_id, &mut socket, joined.events, idle_timeout_secs).await;
    }
    state.sfu.leave(&room_id, &participant_id).await;
    let _ = socket.send(Message::Close(None)).await;
}

/// Relays until the participant leaves, the socket closes, or the SFU ends the participant.
async fn relay(
    sfu: &SfuHandle,
    room_id: &RoomId,
    participant_id: &ParticipantId,
    socket: &mut WebSocket,
    mut events: mpsc::Receiver<ParticipantEvent>,
    idle_timeout_secs: u64,
) {
    // Every third of the HTTP idle timeout (`listener`), so that a live call is never idle.
    let ping_interval = Duration::from_secs(idle_timeout_secs.max(3) / 3);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => {
                        let error = ServerMessage::Error { code: ErrorCode::InvalidRequest, message: "messages are JSON text".into() };
                        if !send(socket, &error).await { return; }
                        continue;
                    }
                    // Closed, or broken (including a message over the size limit).
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                };
                let reply = match parse(&text) {
                    Ok(ClientMessage::Leave) => return,
                    Ok(message) => handle_client_message(sfu, room_id, participant_id, message).await,
                    Err(message) => Some(ServerMessage::Error { code: ErrorCode::InvalidRequest, message }),
                };
                if let Some(reply) = reply {
                    if !send(socket, &reply).await { return; }
                }
            }
            _ = ping.tick() => {
                // Browsers answer by themselves; the answer keeps the connection under the HTTP
                // idle timeout (`listener`) and shows the client is still reading.
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            event = events.recv() => {
                let Some(event) = event else { return };
                let is_last = matches!(event, ParticipantEvent::Left { .. });
                if !send(socket, &server_message(event)).await || is_last {
                    return;
                }
            }
        }
    }
}

/// Carries out one client message; returns what to answer, if anything.
async fn handle_client_message(
    sfu: &SfuHandle,
    room_id: &RoomId,
    participant_id: &ParticipantId,
    message: ClientMessage,
) -> Option<ServerMessage> {
    let target = |raw: String| ParticipantId::new(raw).map_err(|_| SfuError::ParticipantNotFound);
    let result: Result<Option<ServerMessage>, SfuError> = async {
        let command = match message {
            ClientMessage::Join { .. } => {
                return Ok(Some(ServerMessage::Error {
                    code: ErrorCode::InvalidRequest,
                    message: "already joined".into(),
                }))
            }
            ClientMessage::Leave => return Ok(None),
            ClientMessage::Offer { sdp, tracks } => {
                let tracks = tracks.into_iter().map(track_declaration).collect();
                let answer = sfu.offer(room_id, participant_id, sdp, tracks).await?;
                return Ok(Some(ServerMessage::Answer { sdp: answer }));
            }
            ClientMessage::Candidate { candidate } => {
                sfu.add_ice_candidate(room_id, participant_id, candidate).await?;
                return Ok(None);
            }
            ClientMessage::SetMuted { kind, muted } => Command::SetMuted { kind: media_kind(kind), muted },
            ClientMessage::Mute { target: raw } => Command::Mute { target: target(raw)? },
            ClientMessage::MuteAll => Command::MuteAll,
            ClientMessage::RequestUnmute { target: raw, kind } => {
                Command::RequestUnmute { target: target(raw)?, kind: media_kind(kind) }
            }
            ClientMessage::DisableCamera { target: raw } => Command::DisableCamera { target: target(raw)? },
            ClientMessage::Remove { target: raw } => Command::Remove { target: target(raw)? },
            ClientMessage::Lock { locked } => Command::Lock { locked },
            ClientMessage::EndSession => Command::EndSession,
            ClientMessage::Pin { participant_id } => {
                Command::Pin { participant: participant_id.map(target).transpose()? }
            }
        };
        sfu.command(room_id, participant_id, command).await?;
        Ok(None)
    }
    .await;
    result.unwrap_or_else(|err| Some(ServerMessage::Error { code: err.code(), message: err.to_string() }))
}

fn join_refusal_message(err: &SfuError) -> String {
    match err.code() {
        ErrorCode::RoomFull => "the call is full: the class's offer allows no more people at once".into(),
        ErrorCode::SessionLocked => "the teacher locked the call: nobody new may join".into(),
        ErrorCode::TierForbidsVisio => "this class's offer has no video calls".into(),
        _ => err.to_string(),
    }
}

fn track_declaration(track: models::visio::TrackDeclaration) -> TrackDeclaration {
    let source = match track.source {
        Source::Microphone => TrackSource::Microphone,
        Source::Camera => TrackSource::Camera,
        Source::ScreenShare => TrackSource::ScreenShare,
    };
    TrackDeclaration { mid: track.mid, source, layers: track.layers }
}

fn media_kind(kind: Kind) -> MediaKind {
    match kind {
        Kind::Audio => MediaKind::Audio,
        Kind::Video => MediaKind::Video,
    }
}

fn kind(kind: MediaKind) -> Kind {
    match kind {
        MediaKind::Audio => Kind::Audio,
        MediaKind::Video => Kind::Video,
    }
}

fn participant(info: ParticipantInfo) -> Participant {
    Participant {
        participant_id: info.participant_id.to_string(),
        display_name: info.display_name,
        role: info.role,
        audio_muted: info.audio_muted,
        video_off: info.video_off,
    }
}

fn source(source: TrackSource) -> Source {
    match source {
        TrackSource::Microphone => Source::Microphone,
        TrackSource::Camera => Source::Camera,
        TrackSource::ScreenShare => Source::ScreenShare,
    }
}

fn track(info: TrackInfo) -> Track {
    Track {
        track_id: info.track_id.to_string(),
        participant_id: info.publisher.to_string(),
        kind: kind(info.kind),
        source: source(info.source),
    }
}

fn left_reason(reason: LeaveReason) -> LeftReason {
    match reason {
        LeaveReason::Left => LeftReason::Left,
        LeaveReason::RemovedByModerator => LeftReason::RemovedByModerator,
        LeaveReason::RemovedFromClass => LeftReason::RemovedFromClass,
        LeaveReason::DuplicateIdentity => LeftReason::DuplicateIdentity,
        LeaveReason::RoomFull => LeftReason::RoomFull,
        LeaveReason::ConnectionLost | LeaveReason::TooSlow => LeftReason::ConnectionLost,
        LeaveReason::SessionClosed(CloseReason::MaxDuration) => LeftReason::SessionMaxDuration,
        LeaveReason::SessionClosed(CloseReason::EndedByModerator) => LeftReason::SessionEndedByModerator,
        LeaveReason::SessionClosed(CloseReason::Empty) => LeftReason::SessionEmpty,
        LeaveReason::SessionClosed(CloseReason::ServerShutdown) => LeftReason::ServerShutdown,
        LeaveReason::SessionClosed(CloseReason::ClassDeleted) => LeftReason::RemovedFromClass,
    }
}

fn server_message(event: ParticipantEvent) -> ServerMessage {
    match event {
        ParticipantEvent::Waiting => ServerMessage::Waiting {
            message: "The teacher has not started the call yet. You will join as soon as it starts.".into(),
        },
        ParticipantEvent::Admitted { participants, tracks, remaining } => ServerMessage::Admitted {
            participants: participants.into_iter().map(participant).collect(),
            tracks: tracks.into_iter().map(track).collect(),
            remaining_seconds: remaining.map(|d| d.as_secs()),
        },
        ParticipantEvent::Slots(slots) => ServerMessage::Slots {
            slots: slots
                .into_iter()
                .map(|slot| SlotState {
                    mid: slot.mid,
                    kind: slot.kind,
                    participant_id: slot.publisher.map(|id| id.to_string()),
                    source: slot.source.map(source),
                    csrc: slot.csrc,
                })
                .collect(),
        },
        ParticipantEvent::Speakers(ids) => {
            ServerMessage::Speakers { participant_ids: ids.into_iter().map(|id| id.to_string()).collect() }
        }
        ParticipantEvent::ParticipantJoined(info) => {
            ServerMessage::ParticipantJoined { participant: participant(info) }
        }
        ParticipantEvent::ParticipantLeft { participant_id } => {
            ServerMessage::ParticipantLeft { participant_id: participant_id.to_string() }
        }
        ParticipantEvent::TrackPublished(info) => ServerMessage::TrackPublished { track: track(info) },
        ParticipantEvent::TrackUnpublished { track_id } => {
            ServerMessage::TrackUnpublished { track_id: track_id.to_string() }
        }
        ParticipantEvent::MuteChanged { participant_id, kind: media, muted, by_moderator } => {
            ServerMessage::MuteChanged {
                participant_id: participant_id.to_string(),
                kind: kind(media),
                muted,
                by_moderator,
            }
        }
        ParticipantEvent::UnmuteRequested { kind: media } => {
            ServerMessage::UnmuteRequested { kind: kind(media) }
        }
        ParticipantEvent::LockChanged { locked } => ServerMessage::LockChanged { locked },
        ParticipantEvent::RoleChanged { participant_id, role } => {
            ServerMessage::RoleChanged { participant_id: participant_id.to_string(), role }
        }
        ParticipantEvent::TimeWarning { remaining } => {
            ServerMessage::TimeWarning { remaining_seconds: remaining.as_secs() }
        }
        ParticipantEvent::Left { reason } => ServerMessage::Left { reason: left_reason(reason) },
    }
}
