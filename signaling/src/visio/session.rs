//! One participant's call, on the signaling side, from `joined` to its end: relays the client's
//! messages to the SFU and the SFU's events to the client, and outlives a broken WebSocket.
//!
//! When the socket breaks (a tunnel, a phone moving from Wi-Fi to 4G), the session *parks*: the
//! SFU is told (`signal_lost`: the others see "reconnecting", the participant keeps their place
//! for the grace period) and the events meanwhile are kept. A new WebSocket whose first message
//! is `resume` with the session's token takes over ([`Resumable`]): it gets `resumed`, then what
//! it missed. A `resume` may also replace a socket that still looks alive to us: after a network
//! change, the old TCP connection can take minutes to time out. Only `leave`, the SFU ending
//! the participant (the grace period passed, removal, end of session) or a stalled resume
//! end the session.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use models::visio::{ClientMessage, ServerMessage};
use models::{ClassId, ErrorCode, UserId};
use sfu::{Command, ParticipantEvent, ParticipantId, RoomId, SfuError};
use tokio::sync::mpsc;

use super::convert::{media_kind, server_message, track_declaration};
use super::{parse, send};

/// Events kept for a parked session. A page away for the whole grace period of a busy call
/// misses a few hundred (joins, mutes, tracks); `slots` and `speakers` are kept only last.
/// Past this, the session ends rather than grow.
const MAX_MISSED_EVENTS: usize = 2000;

/// Sessions that a `resume` may take over, by resume token.
#[derive(Default)]
pub struct Resumable {
    sessions: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    user_id: UserId,
    class_id: ClassId,
    handoff: mpsc::Sender<Attached>,
}

/// A socket that carries a session, with its place among the user's open call connections
/// (`limits`).
pub(super) struct Attached {
    pub socket: WebSocket,
    pub connection: crate::limits::ConnectionGuard,
}

impl Resumable {
    /// Where to send the new socket of the session `token` names, if it is this user's in this
    /// class. A token of someone else's is refused like an unknown one.
    pub(super) fn find(
        &self,
        token: &str,
        user_id: &UserId,
        class_id: &ClassId,
    ) -> Option<mpsc::Sender<Attached>> {
        let sessions = self.lock();
        let entry = sessions.get(token)?;
        (entry.user_id == *user_id && entry.class_id == *class_id).then(|| entry.handoff.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Held for one map operation; a poisoned map is still consistent.
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A session's place in [`Resumable`], removed when the session ends.
struct Registration {
    calls: Arc<Resumable>,
    token: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.token);
    }
}

/// A fresh resume token: 256 random bits, hex.
pub(super) fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

pub(super) struct CallSession {
    pub sfu: crate::cluster::MediaPlane,
    pub room_id: RoomId,
    pub participant_id: ParticipantId,
    pub events: mpsc::Receiver<ParticipantEvent>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How often this participant may send `e2ee_keys` (`None`: rate limits are off).
    pub e2ee_rate: Option<governor::DefaultDirectRateLimiter>,
    /// Pings every this long while a socket is attached (a third of the HTTP idle timeout).
    pub ping_interval: Duration,
    /// The join's place among those this node negotiates at once (`limits`), held from the
    /// `join` message until the participant's media connects (ICE and DTLS, which cost the node
    /// most) or its deadline passes: a node on a Monday morning refuses early rather than take
    /// joins it cannot connect in time.
    pub admission: Option<Admission>,
}

impl CallSession {
    /// The session of a participant the SFU just took (`admission`: the join's place among those
    /// in progress, from a `join`; `None` for a session taken over from another replica).
    pub(super) fn new(
        state: &crate::AppState,
        room_id: RoomId,
        participant_id: ParticipantId,
        events: mpsc::Receiver<ParticipantEvent>,
        admission: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> CallSession {
        let until = tokio::time::Instant::now()
            + Duration::from_secs(state.limits.config().join_connect_timeout_secs.max(1));
        CallSession {
            sfu: state.sfu.clone(),
            room_id,
            participant_id,
            events,
            metrics: state.metrics.clone(),
            e2ee_rate: super::e2ee::rate_limiter(state.limits.config()),
            // Every third of the HTTP idle timeout (`listener`), so that a live call is never idle.
            ping_interval: Duration::from_secs(state.config.http.idle_timeout_secs.max(3) / 3),
            admission: admission.map(|permit| Admission { _permit: permit, until }),
        }
    }
}

/// A held place among the joins in progress, and until when at most.
pub struct Admission {
    /// Held, never read: dropping it frees the place.
    pub _permit: tokio::sync::OwnedSemaphorePermit,
    pub until: tokio::time::Instant,
}

async fn admission_deadline(admission: &Option<Admission>) {
    match admission {
        Some(admission) => tokio::time::sleep_until(admission.until).await,
        None => std::future::pending().await,
    }
}

/// Why the attached socket stopped carrying the session.
enum Detached {
    /// The client said `leave`.
    Leave,
    /// The SFU ended the participant (`left` was sent) or the SFU is gone.
    Ended,
    /// The socket broke or closed without `leave`.
    Broken,
    /// A `resume` brought this socket.
    Replaced(Box<Attached>),
}

impl CallSession {
    /// Runs the session on `socket` (which got `joined` already) and its successors. The
    /// participant leaves the SFU when it ends.
    pub(super) async fn run(
        mut self,
        calls: Arc<Resumable>,
        token: String,
        user_id: UserId,
        class_id: ClassId,
        attached: Attached,
    ) {
        let (handoff, mut handoffs) = mpsc::channel(1);
        calls.lock().insert(token.clone(), Entry { user_id, class_id, handoff });
        let _registration = Registration { calls, token };
        let Attached { mut socket, connection } = attached;
        // The user's place among their open call connections (`limits`), held while a socket
        // carries the session: a parked one holds none, a resuming socket brings its own.
        let mut _connection = Some(connection);
        loop {
            let detached = self.attached(&mut socket, &mut handoffs).await;
            let (next, missed) = match detached {
                Detached::Leave | Detached::Ended => break,
                Detached::Replaced(next) => (*next, VecDeque::new()),
                Detached::Broken => {
                    self.sfu.signal_lost(&self.room_id, &self.participant_id).await;
                    _connection = None;
                    let Some((next, missed)) = self.parked(&mut handoffs).await else { break };
                    self.sfu.signal_restored(&self.room_id, &self.participant_id).await;
                    (next, missed)
                }
            };
            let _ = socket.send(Message::Close(None)).await;
            socket = next.socket;
            _connection = Some(next.connection);
            tracing::info!(missed = missed.len(), "call resumed on a new socket");
            let resumed = ServerMessage::Resumed { participant_id: self.participant_id.to_string() };
            if !send(&mut socket, &resumed).await {
                // That socket broke at once too: park again with nothing missed.
                continue;
            }
            for message in missed.into_iter().filter_map(server_message) {
                let _ = send(&mut socket, &message).await;
            }
        }
        self.sfu.leave(&self.room_id, &self.participant_id).await;
        let _ = socket.send(Message::Close(None)).await;
    }

    /// Relays between `socket` and the SFU until the socket stops carrying the session.
    async fn attached(
        &mut self,
        socket: &mut WebSocket,
        handoffs: &mut mpsc::Receiver<Attached>,
    ) -> Detached {
        let start = tokio::time::Instant::now() + self.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.ping_interval);
        loop {
            tokio::select! {
                incoming = socket.recv() => {
                    let text = match incoming {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Binary(_))) => {
                            let error = ServerMessage::Error { code: ErrorCode::InvalidRequest, message: "messages are JSON text".into() };
                            if !send(socket, &error).await { return Detached::Broken; }
                            continue;
                        }
                        // Closed, or broken (including a message over the size limit).
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Detached::Broken,
                    };
                    let reply = match parse(&text) {
                        Ok(ClientMessage::Leave) => return Detached::Leave,
                        Ok(message) => self.handle_client_message(message).await,
                        Err(message) => Some(ServerMessage::Error { code: ErrorCode::InvalidRequest, message }),
                    };
                    if let Some(reply) = reply {
                        if !send(socket, &reply).await { return Detached::Broken; }
                    }
                }
                _ = ping.tick() => {
                    // Browsers answer by themselves; the answer keeps the connection under the
                    // HTTP idle timeout (`listener`) and shows the client is still reading.
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        return Detached::Broken;
                    }
                }
                next = handoffs.recv() => {
                    // The sender lives in the registry as long as this session: never `None`.
                    if let Some(next) = next { return Detached::Replaced(Box::new(next)); }
                }
                () = admission_deadline(&self.admission), if self.admission.is_some() => {
                    tracing::debug!("media not connected in time: the join no longer counts as in progress");
                    self.admission = None;
                }
                event = self.events.recv() => {
                    let Some(event) = event else { return Detached::Ended };
                    let is_last = matches!(event, ParticipantEvent::Left { .. });
                    let Some(message) = server_message(event) else {
                        // `MediaConnected`: the join is done.
                        self.admission = None;
                        continue;
                    };
                    if !send(socket, &message).await {
                        return if is_last { Detached::Ended } else { Detached::Broken };
                    }
                    if is_last { return Detached::Ended; }
                }
            }
        }
    }

    /// Without a socket: keeps the SFU's events until a `resume` brings one. `None` when the SFU
    /// ends the participant first (its grace period passed) or too much was missed.
    async fn parked(
        &mut self,
        handoffs: &mut mpsc::Receiver<Attached>,
    ) -> Option<(Attached, VecDeque<ParticipantEvent>)> {
        let mut missed: VecDeque<ParticipantEvent> = VecDeque::new();
        // A join whose socket broke is not one the node is still negotiating.
        self.admission = None;
        loop {
            tokio::select! {
                next = handoffs.recv() => return next.map(|socket| (socket, missed)),
                event = self.events.recv() => {
                    let event = event?;
                    if matches!(event, ParticipantEvent::Left { .. }) {
                        return None;
                    }
                    if matches!(event, ParticipantEvent::MediaConnected) {
                        continue;
                    }
                    keep_missed(&mut missed, event);
                    if missed.len() > MAX_MISSED_EVENTS {
                        tracing::info!("too many events missed while reconnecting: the session ends");
                        return None;
                    }
                }
            }
        }
    }

    /// Carries out one client message; returns what to answer, if anything.
    async fn handle_client_message(&self, message: ClientMessage) -> Option<ServerMessage> {
        let (sfu, room_id, participant_id) = (&self.sfu, &self.room_id, &self.participant_id);
        let target = |raw: String| ParticipantId::new(raw).map_err(|_| SfuError::ParticipantNotFound);
        let result: Result<Option<ServerMessage>, SfuError> = async {
            let command = match message {
                ClientMessage::Join { .. } | ClientMessage::Resume { .. } => {
                    return Ok(Some(ServerMessage::Error {
                        code: ErrorCode::InvalidRequest,
                        message: "already joined".into(),
                    }))
                }
                ClientMessage::Leave => return Ok(None),
                ClientMessage::Ping => return Ok(Some(ServerMessage::Pong)),
                ClientMessage::Offer { sdp, tracks } => {
                    let tracks = tracks.into_iter().map(track_declaration).collect();
                    let answer = sfu.offer(room_id, participant_id, sdp, tracks).await?;
                    return Ok(Some(ServerMessage::Answer { sdp: answer }));
                }
                ClientMessage::Candidate { candidate } => {
                    sfu.add_ice_candidate(room_id, participant_id, candidate).await?;
                    return Ok(None);
                }
                ClientMessage::SetMuted { kind, muted } => {
                    Command::SetMuted { kind: media_kind(kind), muted }
                }
                ClientMessage::Mute { target: raw } => Command::Mute { target: target(raw)? },
                ClientMessage::MuteAll => Command::MuteAll,
                ClientMessage::RequestUnmute { target: raw, kind } => {
                    Command::RequestUnmute { target: target(raw)?, kind: media_kind(kind) }
                }
                ClientMessage::DisableCamera { target: raw } => {
                    Command::DisableCamera { target: target(raw)? }
                }
                ClientMessage::Remove { target: raw } => Command::Remove { target: target(raw)? },
                ClientMessage::RaiseHand => Command::RaiseHand,
                ClientMessage::LowerHand { target: raw } => {
                    Command::LowerHand { participant: raw.map(target).transpose()? }
                }
                ClientMessage::GiveFloor { target: raw } => Command::GiveFloor { participant: target(raw)? },
                ClientMessage::Lock { locked } => Command::Lock { locked },
                ClientMessage::EndSession => Command::EndSession,
                ClientMessage::Pin { participant_id } => {
                    Command::Pin { participant: participant_id.map(target).transpose()? }
                }
                ClientMessage::E2eeKeys { keys } => match self.e2ee_keys(keys) {
                    Ok(keys) => Command::E2eeKeys { keys },
                    Err((code, message)) => return Ok(Some(ServerMessage::Error { code, message })),
                },
            };
            sfu.command(room_id, participant_id, command).await?;
            Ok(None)
        }
        .await;
        result.unwrap_or_else(|err| Some(ServerMessage::Error { code: err.code(), message: err.to_string() }))
    }

    /// The sealed keys of an `e2ee_keys` message, within this participant's rate and well-formed,
    /// or the code and message of the `error` that refuses them (the call goes on).
    fn e2ee_keys(
        &self,
        keys: Vec<models::visio::SealedKey>,
    ) -> Result<Vec<sfu::SealedKey>, (ErrorCode, String)> {
        let n_keys = keys.len();
        let refusal = |code, message| {
            self.metrics.e2ee_keys_refused(n_keys);
            (code, message)
        };
        if self.e2ee_rate.as_ref().is_some_and(|rate| rate.check().is_err()) {
            let message = "too many e2ee_keys messages: wait a moment before sending more".to_owned();
            return Err(refusal(ErrorCode::RateLimited, message));
        }
        super::e2ee::sealed_keys(keys, &self.participant_id)
            .map_err(|message| refusal(ErrorCode::InvalidRequest, message))
    }
}

/// Adds an event missed while parked. `slots`, `speakers` and `hands` say the whole state each time:
/// only the latest of each is kept. Everything else is kept in order, sealed keys (`e2ee_key`)
/// above all: each one is the only way its recipient gets that sender's media key, and a later
/// one (a rotation) must not arrive before an earlier one.
fn keep_missed(missed: &mut VecDeque<ParticipantEvent>, event: ParticipantEvent) {
    match &event {
        ParticipantEvent::Slots(_) => missed.retain(|e| !matches!(e, ParticipantEvent::Slots(_))),
        ParticipantEvent::Speakers(_) => missed.retain(|e| !matches!(e, ParticipantEvent::Speakers(_))),
        ParticipantEvent::Hands(_) => missed.retain(|e| !matches!(e, ParticipantEvent::Hands(_))),
        _ => {}
    }
    missed.push_back(event);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_slots_speakers_and_hands_are_kept() {
        let mut missed = VecDeque::new();
        let a = ParticipantId::new("p1".to_owned()).unwrap();
        let b = ParticipantId::new("p2".to_owned()).unwrap();
        keep_missed(&mut missed, ParticipantEvent::Speakers(vec![a.clone()]));
        keep_missed(&mut missed, ParticipantEvent::Hands(vec![a.clone()]));
        keep_missed(&mut missed, ParticipantEvent::LockChanged { locked: true });
        keep_missed(&mut missed, ParticipantEvent::Slots(Vec::new()));
        keep_missed(&mut missed, ParticipantEvent::Speakers(vec![b.clone()]));
        keep_missed(&mut missed, ParticipantEvent::ParticipantLeft { participant_id: a });
        keep_missed(&mut missed, ParticipantEvent::Slots(Vec::new()));
        keep_missed(&mut missed, ParticipantEvent::Hands(vec![b.clone()]));
        let kinds: Vec<String> = missed.iter().map(|e| format!("{e:?}")).collect();
        assert_eq!(missed.len(), 5, "{kinds:?}");
        assert!(matches!(missed[0], ParticipantEvent::LockChanged { locked: true }));
        assert_eq!(missed[1], ParticipantEvent::Speakers(vec![b.clone()]));
        assert!(matches!(missed[2], ParticipantEvent::ParticipantLeft { .. }));
        assert!(matches!(missed[3], ParticipantEvent::Slots(_)));
        assert_eq!(missed[4], ParticipantEvent::Hands(vec![b]));
    }

    #[test]
    fn sealed_keys_are_all_kept_in_order() {
        let mut missed = VecDeque::new();
        let key = |from: &str, sealed: &str| ParticipantEvent::E2eeKey {
            from: ParticipantId::new(from.to_owned()).unwrap(),
            sealed: sealed.to_owned(),
        };
        keep_missed(&mut missed, key("p1", "first"));
        keep_missed(&mut missed, ParticipantEvent::Slots(Vec::new()));
        keep_missed(&mut missed, key("p1", "rotated"));
        keep_missed(&mut missed, key("p2", "other"));
        keep_missed(&mut missed, ParticipantEvent::Slots(Vec::new()));
        keep_missed(&mut missed, key("p1", "rotated again"));
        let kept: Vec<&ParticipantEvent> =
            missed.iter().filter(|e| matches!(e, ParticipantEvent::E2eeKey { .. })).collect();
        assert_eq!(
            kept,
            [&key("p1", "first"), &key("p1", "rotated"), &key("p2", "other"), &key("p1", "rotated again")]
        );
        assert_eq!(missed.len(), 5);
    }
}
