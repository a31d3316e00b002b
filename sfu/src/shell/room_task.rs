//! One tokio task per room: it owns the [`Room`] and drives it with datagrams, commands and time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::net::Protocol;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info_span, Instrument};

use crate::error::SfuError;
use crate::proto::{
    CloseReason, Command, LeaveReason, ParticipantEvent, ParticipantId, ParticipantParams, RoomId,
    SlotDeclaration, TrackDeclaration,
};
use crate::room::{JoinAccepted, Room, RoomInput, RoomOutput};

use super::router::Router;

/// From the socket readers to a room.
#[derive(Debug)]
pub enum NetMsg {
    Datagram {
        at: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: Vec<u8>,
    },
    /// An ICE-TCP connection routed to this room: frames for `addr` go to `writer`.
    TcpOpened {
        addr: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
    },
    TcpClosed {
        addr: SocketAddr,
    },
}

/// How often the room task looks for participants whose signaling side went away.
const GONE_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

type Reply<T> = oneshot::Sender<Result<T, SfuError>>;

/// From the handle to a room.
pub enum RoomMsg {
    Join {
        participant_id: ParticipantId,
        params: ParticipantParams,
        offer: SdpOffer,
        tracks: Vec<TrackDeclaration>,
        slots: Vec<SlotDeclaration>,
        events: mpsc::Sender<ParticipantEvent>,
        reply: Reply<JoinAccepted>,
    },
    Offer {
        participant_id: ParticipantId,
        offer: SdpOffer,
        tracks: Vec<TrackDeclaration>,
        reply: Reply<String>,
    },
    Candidate {
        participant_id: ParticipantId,
        candidate: String,
        reply: Reply<()>,
    },
    Command {
        from: ParticipantId,
        command: Command,
        reply: Reply<()>,
    },
    Leave {
        participant_id: ParticipantId,
    },
    /// The participant's signaling WebSocket broke (`lost: true`) or a new one resumed it.
    Signal {
        participant_id: ParticipantId,
        lost: bool,
    },
    MemberRemoved {
        user_id: models::UserId,
    },
    RoleChanged {
        user_id: models::UserId,
        role: models::Role,
    },
    Close {
        reason: CloseReason,
    },
}

pub struct RoomTask {
    pub room: Room,
    pub commands: mpsc::Receiver<RoomMsg>,
    pub net_rx: mpsc::Receiver<NetMsg>,
    pub net_tx: mpsc::Sender<NetMsg>,
    pub udp: Arc<UdpSocket>,
    pub router: Arc<Router>,
    pub server_events: super::EventSender,
    pub drops: Arc<super::Drops>,
    /// Whether UDP datagrams go out with `sendmmsg(2)` ([`super::batch`]).
    pub batch_sends: bool,
    /// Called with the room id when the task ends, so the registry forgets it.
    pub on_exit: Box<dyn FnOnce() + Send>,
}

struct Peer {
    events: mpsc::Sender<ParticipantEvent>,
    ice_ufrag: String,
}

impl RoomTask {
    pub async fn run(self) {
        let room_id = self.room.room_id().clone();
        self.run_inner().instrument(info_span!("room", room_id = %room_id)).await;
    }

    async fn run_inner(self) {
        let RoomTask {
            mut room,
            mut commands,
            mut net_rx,
            net_tx,
            udp,
            router,
            server_events,
            drops,
            batch_sends,
            on_exit,
        } = self;
        let mut peers: HashMap<ParticipantId, Peer> = HashMap::new();
        let mut too_slow: Vec<ParticipantId> = Vec::new();
        let mut tcp_writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
        let room_id: RoomId = room.room_id().clone();
        let mut next_gone_check = Instant::now();
        let mut batch = super::batch::UdpBatch::default();
        loop {
            let timeout = loop {
                match room.poll_output() {
                    RoomOutput::Timeout(at) => break at,
                    RoomOutput::Transmit(transmit) => match transmit.proto {
                        Protocol::Udp => {
                            // UDP semantics: a full socket buffer loses the datagram, like the network.
                            batch.push(transmit.destination, transmit.contents.into());
                            if batch.is_full() {
                                batch.flush(&udp, batch_sends, &drops);
                            }
                        }
                        _ => {
                            if let Some(writer) = tcp_writers.get(&transmit.destination) {
                                if writer.try_send(transmit.contents.to_vec()).is_err() {
                                    drops.tcp_frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                        }
                    },
                    RoomOutput::ToParticipant(participant_id, event) => {
                        let left = matches!(event, ParticipantEvent::Left { .. });
                        if let Some(peer) = peers.get(&participant_id) {
                            if let Err(mpsc::error::TrySendError::Full(_)) = peer.events.try_send(event) {
                                too_slow.push(participant_id.clone());
                            }
                        }
                        if left {
                            if let Some(peer) = peers.remove(&participant_id) {
                                router.unregister(&peer.ice_ufrag);
                            }
                        }
                    }
                    RoomOutput::Server(event) => {
                        // Never waits: lifecycle events are kept, statistics dropped when the server lags.
                        if !server_events.send(event) {
                            debug!("server statistics dropped");
                        }
                    }
                }
            };
            batch.flush(&udp, batch_sends, &drops);
            if !room.is_alive() {
                break;
            }
            // A participant that stopped reading its events is dropped: its queue is not grown.
            if !too_slow.is_empty() {
                for participant_id in std::mem::take(&mut too_slow) {
                    debug!(participant = %participant_id, "participant too slow to read its events: dropped");
                    room.leave(Instant::now(), &participant_id, LeaveReason::TooSlow);
                    // Dropping its sender ends the signaling side's relay, which closes the socket.
                    if let Some(peer) = peers.remove(&participant_id) {
                        router.unregister(&peer.ice_ufrag);
                    }
                }
                continue;
            }
            // A participant whose signaling side went away leaves. Looked for a few times a
            // second, not after every datagram: that would be a walk over everyone per packet.
            if Instant::now() >= next_gone_check {
                next_gone_check = Instant::now() + GONE_CHECK;
                let gone: Vec<ParticipantId> = peers
                    .iter()
                    .filter(|(_, peer)| peer.events.is_closed())
                    .map(|(id, _)| id.clone())
                    .collect();
                if !gone.is_empty() {
                    for participant_id in gone {
                        room.leave(Instant::now(), &participant_id, LeaveReason::Left);
                    }
                    continue;
                }
            }
            let timeout = timeout.min(next_gone_check);

            tokio::select! {
                Some(msg) = net_rx.recv() => {
                    handle_net(&mut room, msg, &mut tcp_writers);
                    // What else already waits goes in the same wake-up: each receiver is then
                    // drained, and the datagrams sent, once for all of it.
                    for _ in 1..NET_BATCH {
                        let Ok(msg) = net_rx.try_recv() else { break };
                        handle_net(&mut room, msg, &mut tcp_writers);
                    }
                }
                msg = commands.recv() => match msg {
                    Some(msg) => handle_command(&mut room, msg, &mut peers, &router, &net_tx),
                    // Every handle is gone: the SFU is dropped.
                    None => room.close(Instant::now(), CloseReason::ServerShutdown),
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout)) => {
                    room.handle_input(RoomInput::Timeout(Instant::now()));
                }
            }
        }
        for peer in peers.values() {
            router.unregister(&peer.ice_ufrag);
        }
        debug!(%room_id, "room task ends");
        on_exit();
    }
}

/// Datagrams (and ICE-TCP changes) handled per wake-up of the room task at most.
const NET_BATCH: usize = 64;

fn handle_net(room: &mut Room, msg: NetMsg, tcp_writers: &mut HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>) {
    match msg {
        NetMsg::Datagram { at, proto, source, destination, data } => {
            room.handle_input(RoomInput::Receive { now: at, proto, source, destination, contents: &data });
        }
        NetMsg::TcpOpened { addr, writer } => {
            tcp_writers.insert(addr, writer);
        }
        NetMsg::TcpClosed { addr } => {
            tcp_writers.remove(&addr);
        }
    }
}

fn handle_command(
    room: &mut Room,
    msg: RoomMsg,
    peers: &mut HashMap<ParticipantId, Peer>,
    router: &Router,
    net_tx: &mpsc::Sender<NetMsg>,
) {
    let now = Instant::now();
    match msg {
        RoomMsg::Join { participant_id, params, offer, tracks, slots, events, reply } => {
            // Registered first: the join itself emits events (waiting, admitted, offers).
            peers.insert(participant_id.clone(), Peer { events, ice_ufrag: String::new() });
            let result = room.join_parsed(now, participant_id.clone(), params, offer, &tracks, &slots);
            match &result {
                Ok(accepted) => {
                    router.register(accepted.ice_ufrag.clone(), net_tx.clone());
                    if let Some(peer) = peers.get_mut(&participant_id) {
                        peer.ice_ufrag = accepted.ice_ufrag.clone();
                    }
                }
                Err(err) => {
                    debug!(cause = %err, "join refused");
                    peers.remove(&participant_id);
                }
            }
            let _ = reply.send(result);
        }
        RoomMsg::Offer { participant_id, offer, tracks, reply } => {
            let result = room.handle_parsed_offer(now, &participant_id, offer, &tracks);
            // An offer that restarts ICE gives the participant a new ufrag of ours: STUN from
            // the page (perhaps from a new address) is routed by it.
            if let (Some(peer), Some(ufrag)) =
                (peers.get_mut(&participant_id), room.ice_ufrag(&participant_id))
            {
                if peer.ice_ufrag != ufrag {
                    router.unregister(&peer.ice_ufrag);
                    router.register(ufrag.clone(), net_tx.clone());
                    peer.ice_ufrag = ufrag;
                }
            }
            let _ = reply.send(result);
        }
        RoomMsg::Candidate { participant_id, candidate, reply } => {
            let _ = reply.send(room.add_remote_candidate(&participant_id, &candidate));
        }
        RoomMsg::Command { from, command, reply } => {
            let _ = reply.send(room.command(now, &from, command));
        }
        RoomMsg::Leave { participant_id } => room.leave(now, &participant_id, LeaveReason::Left),
        RoomMsg::Signal { participant_id, lost: true } => room.signal_lost(now, &participant_id),
        RoomMsg::Signal { participant_id, lost: false } => room.signal_restored(now, &participant_id),
        RoomMsg::MemberRemoved { user_id } => room.member_removed(now, user_id),
        RoomMsg::RoleChanged { user_id, role } => room.role_changed(now, user_id, role),
        RoomMsg::Close { reason } => room.close(now, reason),
    }
}
