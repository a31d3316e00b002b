//! Scale-out: SFU nodes as their own processes, and API replicas that find a room's node.
//!
//! - [`MediaPlane`]: what `visio`, `api` and `privacy` call. `InProcess` is the all-in-one
//!   server's `SfuHandle` (the default, unchanged); `Cluster` sends the same calls to the node
//!   that hosts the room.
//! - [`registry`]: `sfu_nodes` (heartbeats, load, draining) and `room_placements` in the shared
//!   database; a room's first join places it on the least-loaded healthy node, race-free.
//! - [`wire`]: the internal protocol; [`remote`]: a replica's connection to one node;
//!   [`node`]: the node role (`signaling sfu`).
//! - [`lease`]: one replica at a time for periodic work (the retention sweep).
//!
//! The room's node enforces the tier's limits, as the in-process SFU does: every join of a class
//! goes to its one node, so the room core there sees them all.

pub mod lease;
pub mod metrics;
pub mod node;
pub mod reaper;
pub mod registry;
pub mod remote;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use sfu::{
    CloseReason, Command, DropCounts, JoinRequest, Joined, ParticipantEvent, ParticipantId, RoomConfig,
    RoomId, SfuError, SfuHandle, TrackDeclaration,
};
use tokio::sync::mpsc;

use metrics::Outcome;
use registry::{NodeAddress, PlacementError, Registry};
use remote::{NodeClient, RequestError};
use wire::{Reply, ToNode};

/// The scale-out settings: of an API replica (`enabled`) and of an SFU node (`signaling sfu`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This API replica sends calls to SFU nodes found in the database instead of running the
    /// SFU in-process (`KLASS_CLUSTER=true`).
    pub enabled: bool,
    /// The secret replicas present to nodes (`KLASS_CLUSTER_SECRET`), at least 32 characters.
    pub secret: Option<String>,
    /// A node's id in `sfu_nodes` (`KLASS_NODE_ID`); random when unset. A restarted node may keep
    /// its id (a StatefulSet's pod name).
    pub node_id: Option<String>,
    /// Where a node listens for replicas (`KLASS_NODE_ADDR`).
    pub node_addr: SocketAddr,
    /// How replicas reach the node (`KLASS_NODE_URL`, `ws://host:port`); by default its
    /// listening address.
    pub node_url: Option<String>,
    /// How often a node writes its heartbeat and load.
    pub heartbeat_ms: u64,
    /// A node silent for this long is dead: its rooms are placed again at their next join.
    pub dead_after_ms: u64,
    /// A node silent for this long is reaped by a replica: its row goes, and its sessions end
    /// (`session_ended`, `participant_left`). Well past `dead_after_ms`, so that a node that
    /// was only slow keeps its sessions. At least `dead_after_ms`.
    pub reap_after_ms: u64,
    /// On SIGTERM a node waits this long at most for its rooms' sessions to end (a session
    /// lasts 30 minutes at most on the tiers that limit it).
    pub drain_timeout_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            secret: None,
            node_id: None,
            node_addr: SocketAddr::from(([127, 0, 0, 1], 7880)),
            node_url: None,
            heartbeat_ms: 2000,
            dead_after_ms: 6000,
            reap_after_ms: 30_000,
            drain_timeout_secs: 31 * 60,
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("enabled", &self.enabled)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("node_id", &self.node_id)
            .field("node_addr", &self.node_addr)
            .field("node_url", &self.node_url)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("dead_after_ms", &self.dead_after_ms)
            .field("reap_after_ms", &self.reap_after_ms)
            .field("drain_timeout_secs", &self.drain_timeout_secs)
            .finish()
    }
}

/// On a replica of a cluster: ends, every few seconds, what dead nodes left open (`reaper`).
pub fn start_reaper(state: &crate::AppState) {
    if !state.config.cluster.enabled {
        return;
    }
    let pool = state.uploads.pool().clone();
    let webhooks = state.webhooks.clone();
    let reap_after_ms = state.config.cluster.reap_after_ms;
    let period = std::time::Duration::from_millis((state.config.cluster.dead_after_ms / 2).max(500));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            if let Err(err) = reaper::reap_dead_nodes(&pool, &webhooks, reap_after_ms).await {
                tracing::warn!(cause = %err, "cannot reap dead SFU nodes; trying again later");
            }
        }
    });
}

/// Shortest cluster secret accepted: it guards every call's media plane.
pub const MIN_SECRET_LEN: usize = 32;

/// The media plane as the rest of `signaling` sees it: the same calls whether the SFU runs in
/// this process or on nodes.
#[derive(Clone)]
pub enum MediaPlane {
    InProcess(SfuHandle),
    Cluster(Arc<Cluster>),
}

impl MediaPlane {
    pub async fn join(&self, request: JoinRequest) -> Result<Joined, SfuError> {
        match self {
            MediaPlane::InProcess(sfu) => sfu.join(request).await,
            MediaPlane::Cluster(cluster) => cluster.join(request).await,
        }
    }

    pub async fn offer(
        &self,
        room_id: &RoomId,
        participant_id: &ParticipantId,
        sdp: String,
        tracks: Vec<TrackDeclaration>,
    ) -> Result<String, SfuError> {
        match self {
            MediaPlane::InProcess(sfu) => sfu.offer(room_id, participant_id, sdp, tracks).await,
            MediaPlane::Cluster(cluster) => {
                let (room_id, participant_id) = (room_id.clone(), participant_id.clone());
                let reply = cluster
                    .participant_request(&room_id, &participant_id.clone(), |id| ToNode::Offer {
                        id,
                        room_id: room_id.clone(),
                        participant_id,
                        sdp,
                        tracks,
                    })
                    .await?;
                match reply {
                    Reply::Answer { sdp } => Ok(sdp),
                    _ => Err(SfuError::Io("unexpected reply to an offer".into())),
                }
            }
        }
    }

    pub async fn add_ice_candidate(
        &self,
        room_id: &RoomId,
        participant_id: &ParticipantId,
        candidate: String,
    ) -> Result<(), SfuError> {
        match self {
            MediaPlane::InProcess(sfu) => sfu.add_ice_candidate(room_id, participant_id, candidate).await,
            MediaPlane::Cluster(cluster) => {
                let (room_id, participant_id) = (room_id.clone(), participant_id.clone());
                cluster
                    .participant_request(&room_id, &participant_id.clone(), |id| ToNode::Candidate {
                        id,
                        room_id: room_id.clone(),
                        participant_id,
                        candidate,
                    })
                    .await
                    .map(drop)
            }
        }
    }

    pub async fn command(
        &self,
        room_id: &RoomId,
        from: &ParticipantId,
        command: Command,
    ) -> Result<(), SfuError> {
        match self {
            MediaPlane::InProcess(sfu) => sfu.command(room_id, from, command).await,
            MediaPlane::Cluster(cluster) => {
                let (room_id, from) = (room_id.clone(), from.clone());
                cluster
                    .participant_request(&room_id, &from.clone(), |id| ToNode::Command {
                        id,
                        room_id: room_id.clone(),
                        from,
                        command,
                    })
                    .await
                    .map(drop)
            }
        }
    }

    pub async fn leave(&self, room_id: &RoomId, participant_id: &ParticipantId) {
        match self {
            MediaPlane::InProcess(sfu) => sfu.leave(room_id, participant_id).await,
            MediaPlane::Cluster(cluster) => cluster.leave(room_id, participant_id).await,
        }
    }

    pub async fn signal_lost(&self, room_id: &RoomId, participant_id: &ParticipantId) {
        match self {
            MediaPlane::InProcess(sfu) => sfu.signal_lost(room_id, participant_id).await,
            MediaPlane::Cluster(cluster) => cluster.signal(room_id, participant_id, true).await,
        }
    }

    pub async fn signal_restored(&self, room_id: &RoomId, participant_id: &ParticipantId) {
        match self {
            MediaPlane::InProcess(sfu) => sfu.signal_restored(room_id, participant_id).await,
            MediaPlane::Cluster(cluster) => cluster.signal(room_id, participant_id, false).await,
        }
    }

    /// The class backend removed `user_id`: the room's node disconnects them, whichever replica
    /// heard of it.
    pub async fn member_removed(&self, room_id: &RoomId, user_id: models::UserId) {
        match self {
            MediaPlane::InProcess(sfu) => sfu.member_removed(room_id, user_id).await,
            MediaPlane::Cluster(cluster) => {
                cluster
                    .to_room_node(room_id, ToNode::MemberRemoved { room_id: room_id.clone(), user_id })
                    .await
            }
        }
    }

    pub async fn member_role_changed(&self, room_id: &RoomId, user_id: models::UserId, role: models::Role) {
        match self {
            MediaPlane::InProcess(sfu) => sfu.member_role_changed(room_id, user_id, role).await,
            MediaPlane::Cluster(cluster) => {
                cluster
                    .to_room_node(room_id, ToNode::RoleChanged { room_id: room_id.clone(), user_id, role })
                    .await
            }
        }
    }

    pub async fn close_room(&self, room_id: &RoomId, reason: CloseReason) {
        match self {
            MediaPlane::InProcess(sfu) => sfu.close_room(room_id, reason).await,
            MediaPlane::Cluster(cluster) => {
                cluster.to_room_node(room_id, ToNode::CloseRoom { room_id: room_id.clone(), reason }).await
            }
        }
    }

    /// The session's resume token, so that a `resume` through another replica finds it on the
    /// room's node ([`MediaPlane::adopt`]). Nothing to do in-process.
    pub async fn resumable(&self, room_id: &RoomId, participant_id: &ParticipantId, token: &str) {
        if let MediaPlane::Cluster(cluster) = self {
            cluster.resumable(room_id, participant_id, token).await;
        }
    }

    /// A `resume` of a session that this replica does not carry (its replica stopped, or the
    /// page's new socket reached another one): the room's node hands it over, with the events
    /// missed meanwhile. `None` in-process, where only this process's sessions exist.
    pub async fn adopt(
        &self,
        room_id: &RoomId,
        user_id: &models::UserId,
        token: &str,
    ) -> Option<Result<(ParticipantId, mpsc::Receiver<ParticipantEvent>), SfuError>> {
        match self {
            MediaPlane::InProcess(_) => None,
            MediaPlane::Cluster(cluster) => Some(cluster.adopt(room_id, user_id, token).await),
        }
    }

    /// In-process: closes every room. A replica's participants live on the nodes, which let
    /// them go when this replica's connections close.
    pub async fn shutdown(&self) {
        if let MediaPlane::InProcess(sfu) = self {
            sfu.shutdown().await;
        }
    }

    /// Call events not yet recorded (see `limits`): a node records its own.
    pub fn event_backlog(&self) -> usize {
        match self {
            MediaPlane::InProcess(sfu) => sfu.event_backlog(),
            MediaPlane::Cluster(_) => 0,
        }
    }

    /// What the in-process SFU dropped; a node exports its own on its `/metrics`.
    pub fn drops(&self) -> DropCounts {
        match self {
            MediaPlane::InProcess(sfu) => sfu.drops(),
            MediaPlane::Cluster(_) => DropCounts::default(),
        }
    }

    /// The rooms' configuration. Nodes are configured like the replicas (one ConfigMap).
    pub fn room_config(&self) -> &RoomConfig {
        match self {
            MediaPlane::InProcess(sfu) => sfu.room_config(),
            MediaPlane::Cluster(cluster) => &cluster.room_config,
        }
    }
}

/// An API replica's view of the SFU nodes.
pub struct Cluster {
    registry: Registry,
    secret: String,
    room_config: RoomConfig,
    /// One connection per node, opened at first use and again after it breaks.
    metrics: metrics::ReplicaMetrics,
    /// Each under its own lock: connecting to a node that does not answer holds up only the
    /// joins of that node's rooms.
    clients: Mutex<HashMap<String, ClientSlot>>,
    /// The node of each participant this replica carries, from its join (or adoption) to its
    /// leave.
    participants: Mutex<HashMap<(RoomId, ParticipantId), Arc<NodeClient>>>,
}

/// The connection to one node, once opened; locked while it is being opened.
type ClientSlot = Arc<tokio::sync::Mutex<Option<Arc<NodeClient>>>>;

/// Tries of a join on other nodes when one is draining, dead or not the room's.
const JOIN_ATTEMPTS: usize = 3;

impl Cluster {
    pub fn new(
        registry: Registry,
        secret: String,
        room_config: RoomConfig,
        metrics: metrics::ReplicaMetrics,
    ) -> Cluster {
        Cluster {
            registry,
            secret,
            room_config,
            metrics,
            clients: Default::default(),
            participants: Default::default(),
        }
    }

    fn lock_participants(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(RoomId, ParticipantId), Arc<NodeClient>>> {
        // Held for one map operation; a poisoned map is still consistent.
        self.participants.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn client(&self, node: &NodeAddress) -> Result<Arc<NodeClient>, SfuError> {
        let slot = {
            // Held for one map operation; a poisoned map is still consistent.
            let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            clients.entry(node.node_id.clone()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(client) = slot.as_ref() {
            if !client.is_closed() && client.node.url == node.url {
                return Ok(client.clone());
            }
        }
        let client = NodeClient::connect(node.clone(), &self.secret).await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    async fn join(&self, request: JoinRequest) -> Result<Joined, SfuError> {
        let room_id = request.room_id.clone();
        let mut last_error = SfuError::Shutdown;
        for _attempt in 0..JOIN_ATTEMPTS {
            let node = match self.registry.place(&room_id).await {
                Ok(node) => node,
                Err(PlacementError::NoNode) => {
                    self.metrics.join(Outcome::NoNode);
                    return Err(SfuError::Shutdown);
                }
                Err(PlacementError::Database(err)) => {
                    tracing::error!(cause = %err, "cannot place the room");
                    self.metrics.join(Outcome::NoNode);
                    return Err(SfuError::Shutdown);
                }
            };
            let client = match self.client(&node).await {
                Ok(client) => client,
                Err(err) => {
                    // Registered but unreachable: the room is placed elsewhere once its node's
                    // heartbeat is too old; until then its joins fail at once (`unavailable`).
                    tracing::warn!(node = %node.node_id, cause = %err, "cannot reach the room's node");
                    self.metrics.join(Outcome::Lost);
                    return Err(SfuError::Shutdown);
                }
            };
            let (events_tx, events) = remote::event_channel();
            let request = request.clone();
            match client.request(|id| ToNode::Join { id, request }, Some(events_tx)).await {
                Ok(Reply::Joined { participant_id, answer_sdp }) => {
                    self.metrics.join(Outcome::Ok);
                    self.lock_participants().insert((room_id, participant_id.clone()), client);
                    return Ok(Joined { participant_id, answer_sdp, events });
                }
                Ok(_) => return Err(SfuError::Io("unexpected reply to a join".into())),
                Err(RequestError::Refused(refusal)) if refusal.retry_elsewhere => {
                    tracing::info!(node = %node.node_id, reason = %refusal.message, "join goes elsewhere");
                    self.metrics.join(Outcome::Elsewhere);
                    if let Err(err) = self.registry.drop_placement(&room_id, &node.node_id).await {
                        tracing::warn!(cause = %err, "cannot drop a placement");
                    }
                    last_error = SfuError::Shutdown;
                }
                Err(err) => {
                    self.metrics.join(match err {
                        RequestError::Refused(_) => Outcome::Refused,
                        RequestError::Lost => Outcome::Lost,
                    });
                    return Err(err.into());
                }
            }
        }
        Err(last_error)
    }

    fn carrier(&self, room_id: &RoomId, participant_id: &ParticipantId) -> Option<Arc<NodeClient>> {
        self.lock_participants().get(&(room_id.clone(), participant_id.clone())).cloned()
    }

    async fn participant_request(
        &self,
        room_id: &RoomId,
        participant_id: &ParticipantId,
        make: impl FnOnce(u64) -> ToNode,
    ) -> Result<Reply, SfuError> {
        let client = self.carrier(room_id, participant_id).ok_or(SfuError::ParticipantNotFound)?;
        client.request(make, None).await.map_err(SfuError::from)
    }

    async fn signal(&self, room_id: &RoomId, participant_id: &ParticipantId, lost: bool) {
        if let Some(client) = self.carrier(room_id, participant_id) {
            client
                .notify(ToNode::Signal {
                    room_id: room_id.clone(),
                    participant_id: participant_id.clone(),
                    lost,
                })
                .await;
        }
    }

    async fn leave(&self, room_id: &RoomId, participant_id: &ParticipantId) {
        let client = self.lock_participants().remove(&(room_id.clone(), participant_id.clone()));
        if let Some(client) = client {
            client.forget(participant_id);
            client
                .notify(ToNode::Leave { room_id: room_id.clone(), participant_id: participant_id.clone() })
                .await;
        }
    }

    async fn resumable(&self, room_id: &RoomId, participant_id: &ParticipantId, token: &str) {
        if let Some(client) = self.carrier(room_id, participant_id) {
            let token_hash = wire::token_hash(token);
            let message = ToNode::Resumable {
                room_id: room_id.clone(),
                participant_id: participant_id.clone(),
                token_hash,
            };
            client.notify(message).await;
        }
    }

    /// Takes over, from the room's node, the session that `token` resumes.
    async fn adopt(
        &self,
        room_id: &RoomId,
        user_id: &models::UserId,
        token: &str,
    ) -> Result<(ParticipantId, mpsc::Receiver<ParticipantEvent>), SfuError> {
        let node = match self.registry.placed(room_id).await {
            Ok(Some(node)) => node,
            Ok(None) => {
                self.metrics.adopt(Outcome::NoNode);
                return Err(SfuError::RoomNotFound);
            }
            Err(err) => {
                tracing::error!(room = %room_id, cause = %err, "cannot find the room's node");
                self.metrics.adopt(Outcome::NoNode);
                return Err(SfuError::Shutdown);
            }
        };
        let client = self.client(&node).await.inspect_err(|_| self.metrics.adopt(Outcome::Lost))?;
        let (events_tx, events) = remote::event_channel();
        let (room, user, token_hash) = (room_id.clone(), user_id.clone(), wire::token_hash(token));
        let reply = client
            .request(|id| ToNode::Adopt { id, room_id: room, user_id: user, token_hash }, Some(events_tx))
            .await
            .map_err(|err| {
                self.metrics.adopt(match err {
                    RequestError::Refused(_) => Outcome::Refused,
                    RequestError::Lost => Outcome::Lost,
                });
                SfuError::from(err)
            })?;
        match reply {
            Reply::Adopted { participant_id } => {
                self.metrics.adopt(Outcome::Ok);
                self.lock_participants().insert((room_id.clone(), participant_id.clone()), client);
                Ok((participant_id, events))
            }
            _ => Err(SfuError::Io("unexpected reply to an adoption".into())),
        }
    }

    /// Sends a class-backend change to the node that hosts the room, if it runs anywhere.
    async fn to_room_node(&self, room_id: &RoomId, message: ToNode) {
        let node = match self.registry.placed(room_id).await {
            Ok(Some(node)) => node,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(room = %room_id, cause = %err, "cannot find the room's node");
                return;
            }
        };
        match self.client(&node).await {
            Ok(client) => client.notify(message).await,
            Err(err) => tracing::warn!(node = %node.node_id, cause = %err, "cannot reach the room's node"),
        }
    }
}
