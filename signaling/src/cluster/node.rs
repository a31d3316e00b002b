//! The SFU node role (`signaling sfu`): the media plane as its own process.
//!
//! It runs the in-process `sfu` as the all-in-one server does, and serves it to API replicas over
//! the internal protocol ([`super::wire`]) on `cluster.node_addr`. It registers in `sfu_nodes`
//! and heartbeats its load; the call events of its rooms (attendance, webhooks, metrics) are
//! written by its own events loop into the shared database, as the all-in-one server does.
//!
//! On SIGTERM it drains: it marks itself draining (replicas place no new room on it), keeps
//! its rooms until their sessions end or `cluster.drain_timeout_secs` passes, then closes
//! what is left, leaves the registry and exits.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use models::UserId;
use sfu::{ParticipantEvent, ParticipantId, RoomId, SfuError, SfuHandle};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::registry::{now_ms, NodeAddress, NodeLoad, Registry};
use super::wire::{FromNode, Reply, ToNode, WireError, MAX_FRAME_BYTES, NODE_PATH};
use crate::auth::ApiKey;
use crate::config::Config;

/// Messages waiting for one replica's connection. Each participant's own queue (512 events in
/// the SFU) is behind it, so a stuck replica makes the room drop its participants, not grow this.
const OUTBOUND_QUEUE: usize = 4096;

/// A placement not claimed by a join for this long, of a room this node no longer runs, is
/// dropped by the heartbeat.
const STALE_PLACEMENT_MS: i64 = 10_000;

struct NodeState {
    sfu: SfuHandle,
    registry: Registry,
    address: NodeAddress,
    secret: ApiKey,
    draining: AtomicBool,
    /// Call events waiting for the database past which this node admits no join.
    max_event_backlog: usize,
    n_participants: AtomicU64,
    /// Every participant this node serves, by id (unique on this node).
    links: std::sync::Mutex<HashMap<ParticipantId, Arc<Link>>>,
    next_connection: AtomicU64,
    metrics: super::metrics::NodeMetrics,
}

/// Runs the node on `listener` until `shutdown` resolves, then drains and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let cluster = config.cluster.clone();
    let secret = cluster.secret.clone().context("KLASS_CLUSTER_SECRET is not set")?;
    let pool = crate::db::connect(&config.database_url(), config.database.max_connections)
        .await
        .context("cannot open the database")?;
    let sfu = sfu::Sfu::start(config.sfu.sfu_config()).await.context("cannot start the SFU")?;
    let local = listener.local_addr()?;
    let address = NodeAddress {
        node_id: cluster
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{}", hex::encode(rand::random::<[u8; 6]>()))),
        url: cluster.node_url.clone().unwrap_or_else(|| format!("ws://{local}")),
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let sinks = crate::events::EventSinks {
        metrics: metrics.clone(),
        attendance: crate::attendance::Attendance::new(pool.clone()),
        directory: crate::directory::Directory::new(pool.clone(), config.tier_table()),
        webhooks: crate::webhooks::Webhooks::new(&config.webhooks),
        node_id: Some(address.node_id.clone()),
    };
    super::reaper::previous_run_of(&pool, &sinks.webhooks, &address.node_id)
        .await
        .context("cannot end the sessions of this node's previous run")?;
    let sfu_events = sfu.events;
    let events =
        crate::Background::spawn("call events", Some(|stop| crate::events::run(sfu_events, sinks, stop)));

    let state = Arc::new(NodeState {
        sfu: sfu.handle.clone(),
        registry: Registry::new(pool, cluster.dead_after_ms),
        address,
        secret: ApiKey::new(secret),
        draining: AtomicBool::new(false),
        max_event_backlog: config.limits.max_call_event_backlog,
        n_participants: AtomicU64::new(0),
        links: Default::default(),
        next_connection: AtomicU64::new(1),
        metrics: super::metrics::NodeMetrics::new(metrics.registry()),
    });
    heartbeat(&state, &mut CpuMeter::default()).await.context("cannot register in sfu_nodes")?;
    tracing::info!(node = %state.address.node_id, url = %state.address.url, media = %state.sfu.udp_addr(), "sfu node up");

    let app = Router::new()
        .route(NODE_PATH, get(internal_ws))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state((state.clone(), metrics));
    // Replicas' connections stay open for as long as the node runs: the server is stopped by
    // aborting it once the rooms are gone, not by waiting for connections to close.
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let beats = tokio::spawn(heartbeats(state.clone(), Duration::from_millis(cluster.heartbeat_ms.max(100))));

    shutdown.await;
    state.draining.store(true, Ordering::SeqCst);
    state.metrics.draining.set(1);
    let _ = heartbeat(&state, &mut CpuMeter::default()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(cluster.drain_timeout_secs);
    tracing::info!(rooms = state.sfu.n_rooms(), timeout_secs = cluster.drain_timeout_secs, "draining");
    while state.sfu.n_rooms() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::info!(rooms_left = state.sfu.n_rooms(), "drained: closing");
    beats.abort();
    state.sfu.shutdown().await;
    // The rooms' goodbyes (`left`) are in the connections' queues: let them reach the replicas.
    tokio::time::sleep(Duration::from_millis(300)).await;
    events.stop().await;
    if let Err(err) = state.registry.deregister(&state.address.node_id).await {
        tracing::warn!(cause = %err, "cannot leave the registry; replicas will find this node dead");
    }
    server.abort();
    Ok(())
}

async fn heartbeats(state: Arc<NodeState>, period: Duration) {
    let mut cpu = CpuMeter::default();
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(err) = heartbeat(&state, &mut cpu).await {
            tracing::warn!(cause = %err, "heartbeat failed");
        }
        if let Err(err) = drop_ended_placements(&state).await {
            tracing::warn!(cause = %err, "cannot drop the placements of ended rooms");
        }
    }
}

async fn heartbeat(state: &NodeState, cpu: &mut CpuMeter) -> Result<(), sqlx::Error> {
    let links: Vec<Arc<Link>> = state.links().values().cloned().collect();
    let mut n_without_replica = 0;
    for link in links {
        n_without_replica += i64::from(link.carrier.lock().await.connection.is_none());
    }
    state.metrics.participants_without_replica.set(n_without_replica);
    let load = NodeLoad {
        n_rooms: state.sfu.n_rooms() as u64,
        n_participants: state.n_participants.load(Ordering::Relaxed),
        cpu_permille: cpu.sample(),
    };
    let media = state.sfu.udp_addr().to_string();
    state.registry.heartbeat(&state.address, &media, &load, state.draining.load(Ordering::SeqCst)).await
}

/// Rooms whose session ended keep their placement until here: the next session of the class
/// is placed afresh, by load.
async fn drop_ended_placements(state: &NodeState) -> Result<(), sqlx::Error> {
    let before = now_ms() - STALE_PLACEMENT_MS;
    for room_id in state.registry.placements_of(&state.address.node_id, before).await? {
        if !state.sfu.has_room(&room_id) {
            state.registry.drop_stale_placement(&room_id, &state.address.node_id, before).await?;
        }
    }
    Ok(())
}

/// CPU time of this process between samples, from `/proc/self/stat`, in thousandths of a core.
#[derive(Default)]
struct CpuMeter {
    last: Option<(std::time::Instant, u64)>,
}

impl CpuMeter {
    fn sample(&mut self) -> u64 {
        let Some(ticks) = process_cpu_ticks() else { return 0 };
        let now = std::time::Instant::now();
        let permille = match self.last {
            Some((then, before)) => {
                let wall = now.duration_since(then).as_secs_f64();
                // Linux reports in USER_HZ, 100 on every architecture we run on.
                let cpu = ticks.saturating_sub(before) as f64 / 100.0;
                if wall > 0.0 {
                    (cpu / wall * 1000.0) as u64
                } else {
                    0
                }
            }
            None => 0,
        };
        self.last = Some((now, ticks));
        permille
    }
}

fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

type NodeAppState = (Arc<NodeState>, Arc<crate::metrics::Metrics>);

/// Ready while the node takes new rooms and reaches the database: a draining node is live
/// (its rooms go on) but not ready.
async fn readyz(State((state, _)): State<NodeAppState>) -> (StatusCode, &'static str) {
    if state.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match sqlx::query("SELECT 1").execute(state.registry.pool()).await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
    }
}

async fn metrics_text(State((state, metrics)): State<NodeAppState>) -> impl IntoResponse {
    metrics.set_sfu_queues(state.sfu.drops(), state.sfu.event_backlog());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.encode())
}

/// The internal WebSocket: only for holders of the cluster secret.
async fn internal_ws(
    State((state, _)): State<NodeAppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let presented = headers.get(axum::http::header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    let authorized = crate::auth::bearer(presented).is_ok_and(|token| state.secret.matches(token));
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "the cluster secret is required").into_response();
    }
    ws.max_message_size(MAX_FRAME_BYTES).max_frame_size(MAX_FRAME_BYTES).on_upgrade(
        move |socket| async move {
            let span = tracing::info_span!("replica");
            tracing::Instrument::instrument(connection(state, socket), span).await
        },
    )
}

/// Events kept for a participant whose replica is gone, until another replica adopts it (the
/// page resumes) or the room's grace period ends it; as `visio::session` keeps them while parked.
const MAX_MISSED_EVENTS: usize = 2000;

/// One participant served by this node, and the replica connection that carries it now.
struct Link {
    room_id: RoomId,
    user_id: UserId,
    /// SHA-256 of the session's resume token, once the replica said it (`ToNode::Resumable`).
    token_hash: std::sync::Mutex<Option<String>>,
    carrier: tokio::sync::Mutex<Carrier>,
}

/// Who carries a participant's events: a connection, or nobody (its replica's connection
/// closed) while the events are kept for the next one.
struct Carrier {
    connection: Option<(u64, mpsc::Sender<FromNode>)>,
    missed: VecDeque<ParticipantEvent>,
}

impl NodeState {
    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<ParticipantId, Arc<Link>>> {
        // Held for one map operation; a poisoned map is still consistent.
        self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The participant, if connection `connection_id` carries it: a replica acts only on its own.
    async fn carried(&self, connection_id: u64, participant_id: &ParticipantId) -> Option<Arc<Link>> {
        let link = self.links().get(participant_id).cloned()?;
        let carried =
            link.carrier.lock().await.connection.as_ref().is_some_and(|(id, _)| *id == connection_id);
        carried.then_some(link)
    }
}

/// One replica's connection. When it closes, its participants stay in their rooms as
/// "reconnecting" (the room's grace period runs) with their events kept, until a replica
/// adopts them (the page resumed through it) or the grace period ends them.
async fn connection(state: Arc<NodeState>, socket: WebSocket) {
    let connection_id = state.next_connection.fetch_add(1, Ordering::Relaxed);
    state.metrics.replica_connections.inc();
    let (mut sink, mut stream) = socket.split();
    let (outbound, mut to_send) = mpsc::channel::<FromNode>(OUTBOUND_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(message) = to_send.recv().await {
            // Our own enums of strings and numbers always serialize.
            let text = serde_json::to_string(&message).expect("node messages serialize");
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(message)) = stream.next().await {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        let request: ToNode = match serde_json::from_str(&text) {
            Ok(request) => request,
            Err(err) => {
                tracing::warn!(cause = %err, "unreadable message from a replica");
                continue;
            }
        };
        handle(&state, connection_id, request, &outbound).await;
    }
    writer.abort();
    state.metrics.replica_connections.dec();
    let links: Vec<(ParticipantId, Arc<Link>)> =
        state.links().iter().map(|(id, link)| (id.clone(), link.clone())).collect();
    for (participant_id, link) in links {
        let mut carrier = link.carrier.lock().await;
        if carrier.connection.as_ref().is_some_and(|(id, _)| *id == connection_id) {
            carrier.connection = None;
            drop(carrier);
            state.sfu.signal_lost(&link.room_id, &participant_id).await;
        }
    }
}

async fn handle(
    state: &Arc<NodeState>,
    connection_id: u64,
    request: ToNode,
    outbound: &mpsc::Sender<FromNode>,
) {
    let sfu = &state.sfu;
    let reply = |id: u64, result: Result<Reply, SfuError>| FromNode::Reply {
        id,
        result: result.map_err(|err| WireError::from(&err)),
    };
    let not_carried =
        |id: u64| FromNode::Reply { id, result: Err(WireError::from(&SfuError::ParticipantNotFound)) };
    let answer = match request {
        ToNode::Join { id, request } => {
            // Joins wait for the database and the room: they run beside the other requests. The
            // participant's task outlives this connection (see `connection`).
            tokio::spawn(participant(state.clone(), connection_id, id, request, outbound.clone()));
            return;
        }
        ToNode::Adopt { id, room_id, user_id, token_hash } => {
            let result = adopt(state, connection_id, id, &room_id, &user_id, &token_hash, outbound).await;
            match result {
                Ok(()) => return,
                Err(error) => FromNode::Reply { id, result: Err(error) },
            }
        }
        ToNode::Offer { id, room_id, participant_id, sdp, tracks } => {
            if state.carried(connection_id, &participant_id).await.is_none() {
                not_carried(id)
            } else {
                let result = sfu.offer(&room_id, &participant_id, sdp, tracks).await;
                reply(id, result.map(|sdp| Reply::Answer { sdp }))
            }
        }
        ToNode::Candidate { id, room_id, participant_id, candidate } => {
            if state.carried(connection_id, &participant_id).await.is_none() {
                not_carried(id)
            } else {
                let result = sfu.add_ice_candidate(&room_id, &participant_id, candidate).await;
                reply(id, result.map(|()| Reply::Done))
            }
        }
        ToNode::Command { id, room_id, from, command } => {
            if state.carried(connection_id, &from).await.is_none() {
                not_carried(id)
            } else {
                let result = sfu.command(&room_id, &from, command).await;
                reply(id, result.map(|()| Reply::Done))
            }
        }
        ToNode::Leave { room_id, participant_id } => {
            // A replica whose participant moved to another one lets it go: not a departure.
            if state.carried(connection_id, &participant_id).await.is_some() {
                sfu.leave(&room_id, &participant_id).await;
            }
            return;
        }
        ToNode::Signal { room_id, participant_id, lost } => {
            if state.carried(connection_id, &participant_id).await.is_some() {
                if lost {
                    sfu.signal_lost(&room_id, &participant_id).await;
                } else {
                    sfu.signal_restored(&room_id, &participant_id).await;
                }
            }
            return;
        }
        ToNode::Resumable { room_id, participant_id, token_hash } => {
            if let Some(link) = state.carried(connection_id, &participant_id).await {
                if link.room_id == room_id {
                    *link.token_hash.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                        Some(token_hash);
                }
            }
            return;
        }
        ToNode::MemberRemoved { room_id, user_id } => return sfu.member_removed(&room_id, user_id).await,
        ToNode::RoleChanged { room_id, user_id, role } => {
            return sfu.member_role_changed(&room_id, user_id, role).await
        }
        ToNode::CloseRoom { room_id, reason } => return sfu.close_room(&room_id, reason).await,
    };
    let _ = outbound.send(answer).await;
}

/// Hands the participant whose resume token hashes to `token_hash` (in `room_id`, of
/// `user_id`) to connection `connection_id`: the reply, then the events it missed, in order.
async fn adopt(
    state: &Arc<NodeState>,
    connection_id: u64,
    id: u64,
    room_id: &RoomId,
    user_id: &UserId,
    token_hash: &str,
    outbound: &mpsc::Sender<FromNode>,
) -> Result<(), WireError> {
    let found = state
        .links()
        .iter()
        .find(|(_, link)| {
            let hash = link.token_hash.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            link.room_id == *room_id && link.user_id == *user_id && hash.as_deref() == Some(token_hash)
        })
        .map(|(participant_id, link)| (participant_id.clone(), link.clone()));
    let (participant_id, link) = found.ok_or_else(WireError::resume_failed)?;
    let mut carrier = link.carrier.lock().await;
    if let Some((_, previous)) = carrier.connection.take() {
        let _ = previous.send(FromNode::Moved { participant_id: participant_id.clone() }).await;
    }
    let adopted =
        FromNode::Reply { id, result: Ok(Reply::Adopted { participant_id: participant_id.clone() }) };
    if outbound.send(adopted).await.is_err() {
        return Ok(());
    }
    for event in carrier.missed.drain(..) {
        let _ = outbound.send(FromNode::Event { participant_id: participant_id.clone(), event }).await;
    }
    carrier.connection = Some((connection_id, outbound.clone()));
    tracing::info!(participant = %participant_id, "session adopted by another replica connection");
    Ok(())
}

/// Keeps the count of participants this node serves, for its heartbeat, and its place in
/// the links.
struct Counted(Arc<NodeState>, ParticipantId);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.n_participants.fetch_sub(1, Ordering::Relaxed);
        self.0.links().remove(&self.1);
    }
}

/// One join, then the participant's events to whichever replica carries it, until it leaves.
async fn participant(
    state: Arc<NodeState>,
    connection_id: u64,
    id: u64,
    request: sfu::JoinRequest,
    outbound: mpsc::Sender<FromNode>,
) {
    let room_id = request.room_id.clone();
    let user_id = request.participant.user_id.clone();
    if state.draining.load(Ordering::SeqCst) && !state.sfu.has_room(&room_id) {
        let error = WireError::elsewhere("this node is draining: it takes no new room");
        let _ = outbound.send(FromNode::Reply { id, result: Err(error) }).await;
        return;
    }
    if state.sfu.event_backlog() > state.max_event_backlog {
        // Attendance and webhooks are never dropped to keep up: joins wait instead.
        let _ = outbound.send(FromNode::Reply { id, result: Err(WireError::from(&SfuError::Busy)) }).await;
        return;
    }
    match state.registry.claim(&room_id, &state.address.node_id).await {
        Ok(true) => {}
        Ok(false) => {
            let error = WireError::elsewhere("another node hosts this room");
            let _ = outbound.send(FromNode::Reply { id, result: Err(error) }).await;
            return;
        }
        Err(err) => {
            tracing::error!(cause = %err, "cannot claim the room's placement");
            let error = WireError::from(&SfuError::Shutdown);
            let _ = outbound.send(FromNode::Reply { id, result: Err(error) }).await;
            return;
        }
    }
    let mut joined = match state.sfu.join(request).await {
        Ok(joined) => joined,
        Err(err) => {
            let _ = outbound.send(FromNode::Reply { id, result: Err(WireError::from(&err)) }).await;
            return;
        }
    };
    let participant_id = joined.participant_id.clone();
    let link = Arc::new(Link {
        room_id,
        user_id,
        token_hash: std::sync::Mutex::new(None),
        carrier: tokio::sync::Mutex::new(Carrier {
            connection: Some((connection_id, outbound.clone())),
            missed: VecDeque::new(),
        }),
    });
    state.n_participants.fetch_add(1, Ordering::Relaxed);
    state.links().insert(participant_id.clone(), link.clone());
    let _counted = Counted(state.clone(), participant_id.clone());
    let reply = Reply::Joined { participant_id: participant_id.clone(), answer_sdp: joined.answer_sdp };
    if outbound.send(FromNode::Reply { id, result: Ok(reply) }).await.is_err() {
        // The replica is gone before it heard of the join: nobody has this participant.
        return;
    }
    drop(outbound);
    while let Some(event) = joined.events.recv().await {
        let last = matches!(event, ParticipantEvent::Left { .. });
        let mut carrier = link.carrier.lock().await;
        let unsent = match &carrier.connection {
            Some((_, outbound)) => {
                match outbound.send(FromNode::Event { participant_id: participant_id.clone(), event }).await {
                    Ok(()) => None,
                    Err(mpsc::error::SendError(FromNode::Event { event, .. })) => Some(event),
                    Err(_) => None,
                }
            }
            None => Some(event),
        };
        if let Some(event) = unsent {
            carrier.connection = None;
            keep_missed(&mut carrier.missed, event);
            if carrier.missed.len() > MAX_MISSED_EVENTS {
                tracing::info!(participant = %participant_id, "too many events missed without a replica: dropped");
                return;
            }
        }
        if last {
            return;
        }
    }
}

/// As `visio::session` keeps events while parked: `slots` and `speakers` only last.
fn keep_missed(missed: &mut VecDeque<ParticipantEvent>, event: ParticipantEvent) {
    match &event {
        ParticipantEvent::Slots(_) => missed.retain(|e| !matches!(e, ParticipantEvent::Slots(_))),
        ParticipantEvent::Speakers(_) => missed.retain(|e| !matches!(e, ParticipantEvent::Speakers(_))),
        _ => {}
    }
    missed.push_back(event);
}
