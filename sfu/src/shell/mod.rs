//! The IO shell: sockets, one tokio task per room, and the handle the signaling server calls.

mod batch;
mod event_queue;
mod media_thread;
mod net;
mod room_task;

/// Events waiting for one participant's signaling connection. A live page reads them within
/// milliseconds; a full queue means the client stopped reading, and the room drops it
/// (`LeaveReason::TooSlow`) instead of growing the queue.
pub const PARTICIPANT_EVENT_QUEUE: usize = 512;
mod router;

pub use event_queue::{EventReceiver, EventSender, LOSSY_LIMIT};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::net::TcpType;
use str0m::Candidate;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::SfuConfig;
use crate::error::SfuError;
use crate::proto::{
    CloseReason, Command, ParticipantEvent, ParticipantId, ParticipantParams, RoomId, SfuEvent,
    SlotDeclaration, TrackDeclaration,
};
use crate::room::{parse_offer, MAX_JOIN_MEDIA_LINES, MAX_MEDIA_LINES};
use crate::room::{Room, RoomParams};
use room_task::{RoomMsg, RoomTask};
use router::Router;

/// Commands waiting for a room task. Joins and offers are rare; a full queue means a stuck room.
const ROOM_COMMAND_QUEUE: usize = 64;
/// Datagrams waiting for a room task before the reader drops them, as a full NIC queue would.
const ROOM_NET_QUEUE: usize = 4096;

/// What the shell dropped rather than queue without bound, since the start.
#[derive(Debug, Default)]
pub struct Drops {
    /// Datagrams dropped because their room's queue was full (as a full NIC queue would).
    pub datagrams: AtomicU64,
    /// Frames to an ICE-TCP peer dropped because its write queue was full.
    pub tcp_frames: AtomicU64,
    /// ICE-TCP connections closed at once because `TcpLimits::max_connections` were open.
    pub tcp_connections: AtomicU64,
    /// Datagrams we could not send because the socket's send buffer was full.
    pub udp_sends: AtomicU64,
}

/// A snapshot of [`Drops`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DropCounts {
    pub datagrams: u64,
    pub tcp_frames: u64,
    pub tcp_connections: u64,
    pub udp_sends: u64,
}

/// A running SFU: its handle and the stream of server events (sessions, attendance, stats).
pub struct Sfu {
    pub handle: SfuHandle,
    pub events: EventReceiver,
}

/// One participant's join.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JoinRequest {
    pub room_id: RoomId,
    /// The class's visio policy from the tier table; `None` when its tier has no visio.
    pub policy: Option<models::VisioPolicy>,
    pub participant: ParticipantParams,
    pub offer_sdp: String,
    pub tracks: Vec<TrackDeclaration>,
    /// The receive slots among the offer's m-lines.
    pub slots: Vec<SlotDeclaration>,
}

#[derive(Debug)]
pub struct Joined {
    pub participant_id: ParticipantId,
    pub answer_sdp: String,
    /// Everything for this participant's client, starting with `Waiting` or `Admitted`. Ends after
    /// `Left`. Dropping it makes the participant leave.
    pub events: mpsc::Receiver<ParticipantEvent>,
}

/// Cheap to clone; every clone talks to the same SFU.
#[derive(Clone)]
pub struct SfuHandle {
    inner: Arc<Inner>,
}

struct RoomEntry {
    /// Tells this room apart from a later one with the same id, when the old one removes itself.
    generation: u64,
    commands: mpsc::Sender<RoomMsg>,
}

struct Inner {
    config: SfuConfig,
    udp: Arc<UdpSocket>,
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    local_candidates: Vec<Candidate>,
    router: Arc<Router>,
    rooms: Mutex<HashMap<RoomId, RoomEntry>>,
    server_events: EventSender,
    drops: Arc<Drops>,
    next_id: AtomicU64,
    io_tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The runtime `start` ran on. Room tasks go there, not onto whichever runtime the caller of
    /// `join` happens to run on, so the SFU's work stays where it was put.
    runtime: tokio::runtime::Handle,
    /// The media plane's own thread, when configured; it stops when this is dropped.
    _media_thread: Option<media_thread::MediaThread>,
}

/// The socket's kernel buffers, each way. The default (about 200 KB) holds a few milliseconds
/// of a 70-person call: a burst of keyframes overflowed it and lost packets before the SFU ever
/// saw them (measured: 3 500 drops in 10 s). Linux caps the request at `net.core.rmem_max` and
/// `wmem_max`; what the kernel granted is logged.
const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

fn bind_udp(address: SocketAddr) -> Result<UdpSocket, SfuError> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_nonblocking(true)?;
    // Not fatal: a smaller buffer still works, with more loss under bursts.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    tracing::info!(
        receive = socket.recv_buffer_size().unwrap_or(0),
        send = socket.send_buffer_size().unwrap_or(0),
        "media socket buffers"
    );
    socket.bind(&address.into())?;
    Ok(UdpSocket::from_std(socket.into())?)
}

impl Sfu {
    /// Binds the sockets and starts the readers. Rooms start with their first join.
    pub async fn start(config: SfuConfig) -> Result<Sfu, SfuError> {
        let media_thread = if config.media_thread { Some(media_thread::MediaThread::start()?) } else { None };
        let runtime =
            media_thread.as_ref().map(|m| m.handle.clone()).unwrap_or_else(tokio::runtime::Handle::current);
        // Sockets register with the reactor of the runtime that polls them.
        let entered = runtime.enter();
        let udp = Arc::new(bind_udp(config.udp_bind)?);
        let udp_addr = SocketAddr::new(config.advertised_ip, udp.local_addr()?.port());
        let mut local_candidates =
            vec![Candidate::host(udp_addr, "udp")
                .map_err(|err| SfuError::Io(format!("udp candidate: {err}")))?];
        let router = Arc::new(Router::default());
        let drops = Arc::new(Drops::default());
        let mut io_tasks =
            vec![runtime.spawn(net::udp_reader(udp.clone(), udp_addr, router.clone(), drops.clone()))];

        let mut tcp_addr = None;
        if let Some(tcp_bind) = config.tcp_bind {
            let listener = std::net::TcpListener::bind(tcp_bind)?;
            listener.set_nonblocking(true)?;
            let listener = TcpListener::from_std(listener)?;
            let advertised = SocketAddr::new(config.advertised_ip, listener.local_addr()?.port());
            let candidate = Candidate::builder()
                .tcp()
                .host(advertised)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|err| SfuError::Io(format!("tcp candidate: {err}")))?;
            local_candidates.push(candidate);
            io_tasks.push(runtime.spawn(net::tcp_acceptor(
                listener,
                advertised,
                router.clone(),
                config.tcp_limits,
                drops.clone(),
            )));
            tcp_addr = Some(advertised);
        }
        drop(entered);
        info!(%udp_addr, ?tcp_addr, media_thread = media_thread.is_some(), "sfu started");

        let (server_events, events) = event_queue::event_queue();
        let inner = Inner {
            config,
            udp,
            udp_addr,
            tcp_addr,
            local_candidates,
            router,
            rooms: Mutex::new(HashMap::new()),
            server_events,
            drops,
            next_id: AtomicU64::new(1),
            io_tasks: Mutex::new(io_tasks),
            runtime,
            _media_thread: media_thread,
        };
        Ok(Sfu { handle: SfuHandle { inner: Arc::new(inner) }, events })
    }
}

impl SfuHandle {
    /// The advertised UDP address every peer sends to.
    pub fn udp_addr(&self) -> SocketAddr {
        self.inner.udp_addr
    }

    /// The advertised ICE-TCP address, if enabled.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_addr
    }

    /// Joins a room with the client's first offer. Teachers and admins start the session; parents
    /// who come before the start get `ParticipantEvent::Waiting` first.
    pub async fn join(&self, request: JoinRequest) -> Result<Joined, SfuError> {
        let Some(policy) = request.policy else {
            self.refused(&request.room_id, &SfuError::TierForbidsVisio);
            return Err(SfuError::TierForbidsVisio);
        };
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        // Unwrap: "p" and digits are inside the id alphabet and far below its length limit.
        let participant_id = ParticipantId::new(format!("p{n}")).expect("valid generated id");
        let (events_tx, events) = mpsc::channel(PARTICIPANT_EVENT_QUEUE);
        // Parsed here, on the caller's task: the room's task answers STUN and DTLS meanwhile.
        let parse = || parse_offer(&request.offer_sdp, MAX_JOIN_MEDIA_LINES);
        let join = |offer: SdpOffer| {
            |reply| RoomMsg::Join {
                participant_id: participant_id.clone(),
                params: request.participant.clone(),
                offer,
                tracks: request.tracks.clone(),
                slots: request.slots.clone(),
                events: events_tx.clone(),
                reply,
            }
        };
        let mut result = match parse() {
            Ok(offer) => self.room_call(&request.room_id, Some(policy), join(offer)).await,
            Err(err) => Err(err),
        };
        if result == Err(SfuError::RoomClosed) {
            // The room's session just ended and its task is winding down: this join starts (or
            // waits for) the next session, in a fresh room. The offer went with the refused
            // message: parsed again.
            self.inner.lock_rooms().remove(&request.room_id);
            result = match parse() {
                Ok(offer) => self.room_call(&request.room_id, Some(policy), join(offer)).await,
                Err(err) => Err(err),
            };
        }
        match result {
            Ok(accepted) => Ok(Joined { participant_id, answer_sdp: accepted.answer_sdp, events }),
            Err(err) => {
                self.refused(&request.room_id, &err);
                Err(err)
            }
        }
    }

    /// A renegotiation offer from the client (it adds a screen share, for instance).
    pub async fn offer(
        &self,
        room_id: &RoomId,
        participant_id: &ParticipantId,
        offer_sdp: String,
        tracks: Vec<TrackDeclaration>,
    ) -> Result<String, SfuError> {
        let offer = parse_offer(&offer_sdp, MAX_MEDIA_LINES)?;
        let participant_id = participant_id.clone();
        self.room_call(room_id, None, |reply| RoomMsg::Offer { participant_id, offer, tracks, reply }).await
    }

    /// What every room of this SFU is configured with (slot counts, timeouts).
    pub fn room_config(&self) -> &crate::config::RoomConfig {
        &self.inner.config.room
    }

    /// A trickled ICE candidate from the client (`candidate:...`).
    pub async fn add_ice_candidate(
        &self,
        room_id: &RoomId,
        participant_id: &ParticipantId,
        candidate: String,
    ) -> Result<(), SfuError> {
        let participant_id = participant_id.clone();
        self.room_call(room_id, None, |reply| RoomMsg::Candidate { participant_id, candidate, reply }).await
    }

    /// A moderation or self-service command issued by `from`.
    pub async fn command(
        &self,
        room_id: &RoomId,
        from: &ParticipantId,
        command: Command,
    ) -> Result<(), SfuError> {
        let from = from.clone();
        self.room_call(room_id, None, |reply| RoomMsg::Command { from, command, reply }).await
    }

    pub async fn leave(&self, room_id: &RoomId, participant_id: &ParticipantId) {
        self.room_send(room_id, RoomMsg::Leave { participant_id: participant_id.clone() }).await;
    }

    /// The participant's signaling connection broke: the room shows them as reconnecting and
    /// holds their place for the grace period (`RoomConfig::reconnect_grace`).
    pub async fn signal_lost(&self, room_id: &RoomId, participant_id: &ParticipantId) {
        let participant_id = participant_id.clone();
        self.room_send(room_id, RoomMsg::Signal { participant_id, lost: true }).await;
    }

    /// A new signaling connection resumed the participant's session.
    pub async fn signal_restored(&self, room_id: &RoomId, participant_id: &ParticipantId) {
        let participant_id = participant_id.clone();
        self.room_send(room_id, RoomMsg::Signal { participant_id, lost: false }).await;
    }

    /// The class backend removed `user_id` from the class: disconnect them within the second.
    pub async fn member_removed(&self, room_id: &RoomId, user_id: models::UserId) {
        self.room_send(room_id, RoomMsg::MemberRemoved { user_id }).await;
    }

    /// The class backend changed `user_id`'s role: their rights in the call change at once.
    pub async fn member_role_changed(&self, room_id: &RoomId, user_id: models::UserId, role: models::Role) {
        self.room_send(room_id, RoomMsg::RoleChanged { user_id, role }).await;
    }

    /// Ends the room's session for everyone, e.g. because its class was deleted.
    pub async fn close_room(&self, room_id: &RoomId, reason: CloseReason) {
        self.room_send(room_id, RoomMsg::Close { reason }).await;
    }

    /// Closes every room, then stops the sockets.
    pub async fn shutdown(&self) {
        let rooms: Vec<mpsc::Sender<RoomMsg>> =
            self.inner.lock_rooms().values().map(|entry| entry.commands.clone()).collect();
        for room in rooms {
            let _ = room.send(RoomMsg::Close { reason: CloseReason::ServerShutdown }).await;
            // The room task ends once it has drained; wait for that so goodbyes reach the wire.
            room.closed().await;
        }
        let tasks = std::mem::take(&mut *self.inner.io_tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
    }

    /// Call events sent to the server and not yet handled by it: the server admits no join while
    /// this is high, so that attendance and webhooks are never dropped to keep up.
    pub fn event_backlog(&self) -> usize {
        self.inner.server_events.backlog()
    }

    /// What the shell dropped so far rather than queue it.
    pub fn drops(&self) -> DropCounts {
        let drops = &self.inner.drops;
        DropCounts {
            datagrams: drops.datagrams.load(Ordering::Relaxed),
            tcp_frames: drops.tcp_frames.load(Ordering::Relaxed),
            tcp_connections: drops.tcp_connections.load(Ordering::Relaxed),
            udp_sends: drops.udp_sends.load(Ordering::Relaxed),
        }
    }

    pub fn n_rooms(&self) -> usize {
        self.inner.lock_rooms().len()
    }

    /// Whether a room with this id runs here (a node that drains takes joins only for these).
    pub fn has_room(&self, room_id: &RoomId) -> bool {
        self.inner.lock_rooms().get(room_id).is_some_and(|entry| !entry.commands.is_closed())
    }

    fn refused(&self, room_id: &RoomId, err: &SfuError) {
        self.inner.server_events.send(SfuEvent::JoinRefused { room_id: room_id.clone(), code: err.code() });
    }

    async fn room_call<T>(
        &self,
        room_id: &RoomId,
        create_with: Option<models::VisioPolicy>,
        make: impl FnOnce(oneshot::Sender<Result<T, SfuError>>) -> RoomMsg,
    ) -> Result<T, SfuError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let msg = make(reply_tx);
        let mut msg = Some(msg);
        // A room that just closed may still be in the map: retry once with a fresh room.
        for _attempt in 0..2 {
            let commands = match create_with {
                Some(policy) => self.room_or_create(room_id, policy),
                None => self.room(room_id).ok_or(SfuError::RoomNotFound)?,
            };
            // Unwrap-free: `msg` is only taken on a successful send, which returns below.
            let Some(pending) = msg.take() else { break };
            match commands.send(pending).await {
                Ok(()) => return reply_rx.await.map_err(|_| SfuError::RoomClosed)?,
                Err(mpsc::error::SendError(returned)) => {
                    self.forget_room(room_id, &commands);
                    msg = Some(returned);
                }
            }
        }
        Err(SfuError::RoomClosed)
    }

    async fn room_send(&self, room_id: &RoomId, msg: RoomMsg) {
        if let Some(commands) = self.room(room_id) {
            let _ = commands.send(msg).await;
        }
    }

    fn room(&self, room_id: &RoomId) -> Option<mpsc::Sender<RoomMsg>> {
        self.inner.lock_rooms().get(room_id).map(|entry| entry.commands.clone())
    }

    fn forget_room(&self, room_id: &RoomId, commands: &mpsc::Sender<RoomMsg>) {
        let mut rooms = self.inner.lock_rooms();
        if rooms.get(room_id).is_some_and(|entry| entry.commands.same_channel(commands)) {
            rooms.remove(room_id);
        }
    }

    fn room_or_create(&self, room_id: &RoomId, policy: models::VisioPolicy) -> mpsc::Sender<RoomMsg> {
        let mut rooms = self.inner.lock_rooms();
        if let Some(entry) = rooms.get(room_id) {
            if !entry.commands.is_closed() {
                return entry.commands.clone();
            }
        }
        let generation = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (commands_tx, commands_rx) = mpsc::channel(ROOM_COMMAND_QUEUE);
        let (net_tx, net_rx) = mpsc::channel(ROOM_NET_QUEUE);
        let params = RoomParams {
            room_id: room_id.clone(),
            policy,
            config: self.inner.config.room.clone(),
            local_candidates: self.inner.local_candidates.clone(),
        };
        let weak = Arc::downgrade(&self.inner);
        let exiting_room = room_id.clone();
        let task = RoomTask {
            room: Room::new(params, Instant::now()),
            commands: commands_rx,
            net_rx,
            net_tx,
            udp: self.inner.udp.clone(),
            router: self.inner.router.clone(),
            server_events: self.inner.server_events.clone(),
            drops: self.inner.drops.clone(),
            batch_sends: self.inner.config.batch_sends,
            on_exit: Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    let mut rooms = inner.lock_rooms();
                    if rooms.get(&exiting_room).is_some_and(|entry| entry.generation == generation) {
                        rooms.remove(&exiting_room);
                    }
                }
            }),
        };
        self.inner.runtime.spawn(task.run());
        rooms.insert(room_id.clone(), RoomEntry { generation, commands: commands_tx.clone() });
        commands_tx
    }
}

impl Inner {
    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, RoomEntry>> {
        // Held for map operations only; a poisoned map is still a consistent map.
        self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: nobody can join or command any more. Rooms close themselves
        // when their command channel closes; the socket readers would run forever.
        let tasks = std::mem::take(&mut *self.io_tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
    }
}
