//! The sockets: one UDP socket for every peer, one TCP port for ICE-TCP (RFC 4571).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::net::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tracing::debug;

use super::room_task::NetMsg;
use super::router::{server_ufrag, Router};
use crate::config::TcpLimits;

/// Larger than any datagram a WebRTC peer sends (they keep under ~1200 bytes for the path MTU).
const RECV_BUF_LEN: usize = 2048;
/// ICE-TCP frames per connection waiting to be written before we drop, as UDP would.
const TCP_WRITE_QUEUE: usize = 256;

/// Reads the shared UDP socket and hands each datagram to its room.
pub async fn udp_reader(
    socket: Arc<UdpSocket>,
    advertised: SocketAddr,
    router: Arc<Router>,
    drops: Arc<super::Drops>,
) {
    let mut buf = vec![0u8; RECV_BUF_LEN];
    // Learned from STUN requests: the address a flow comes from names its room.
    let mut by_addr: HashMap<SocketAddr, mpsc::Sender<NetMsg>> = HashMap::new();
    loop {
        let (n, source) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(err) => {
                // ICMP port unreachable from a gone peer surfaces here on some systems.
                debug!(cause = %err, "udp recv failed");
                continue;
            }
        };
        let at = Instant::now();
        let data = &buf[..n];
        if let Some(ufrag) = server_ufrag(data) {
            match router.lookup(ufrag) {
                Some(room) => {
                    by_addr.insert(source, room);
                }
                None => {
                    debug!(%source, "stun for unknown ufrag");
                    continue;
                }
            }
        }
        let Some(room) = by_addr.get(&source) else { continue };
        let msg = NetMsg::Datagram {
            at,
            proto: Protocol::Udp,
            source,
            destination: advertised,
            data: data.to_vec(),
        };
        match room.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                drops.datagrams.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                debug!("room queue full, datagram dropped")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                by_addr.remove(&source);
            }
        }
    }
}

/// Accepts ICE-TCP connections (passive candidates only: browsers connect to us), at most
/// `limits.max_connections` at once: past that a new connection is closed as soon as accepted.
pub async fn tcp_acceptor(
    listener: TcpListener,
    advertised: SocketAddr,
    router: Arc<Router>,
    limits: TcpLimits,
    drops: Arc<super::Drops>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    drops.tcp_connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    debug!(%peer, "too many ice-tcp connections: closing a new one");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                tokio::spawn(async move {
                    tcp_connection(stream, peer, advertised, router, limits).await;
                    drop(slot);
                });
            }
            Err(err) => debug!(cause = %err, "tcp accept failed"),
        }
    }
}

/// Reads one RFC 4571 frame (a 16-bit big-endian length, then the packet) within `limit`; `None`
/// when the connection ends, breaks or stays silent (or trickles bytes) that long.
async fn read_frame(
    reader: &mut (impl AsyncReadExt + Unpin),
    buf: &mut [u8],
    limit: Duration,
) -> Option<usize> {
    let frame = async {
        let len = reader.read_u16().await.ok()? as usize;
        reader.read_exact(&mut buf[..len]).await.ok()?;
        Some(len)
    };
    tokio::time::timeout(limit, frame).await.ok().flatten()
}

async fn tcp_connection(
    stream: TcpStream,
    peer: SocketAddr,
    advertised: SocketAddr,
    router: Arc<Router>,
    limits: TcpLimits,
) {
    let (mut reader, writer) = stream.into_split();
    let mut writer = Some(writer);
    let mut room: Option<mpsc::Sender<NetMsg>> = None;
    let mut buf = vec![0u8; u16::MAX as usize];
    loop {
        let limit = if room.is_none() { limits.first_frame_timeout } else { limits.idle_timeout };
        let Some(len) = read_frame(&mut reader, &mut buf, limit).await else { break };
        let data = &buf[..len];
        let at = Instant::now();
        if room.is_none() {
            // The first frame must be a STUN request for one of our participants.
            let Some(found) = server_ufrag(data).and_then(|ufrag| router.lookup(ufrag)) else {
                debug!(%peer, "ice-tcp connection without a known ufrag");
                return;
            };
            let Some(mut writer) = writer.take() else { return };
            let (frame_tx, mut frame_rx) = mpsc::channel::<Vec<u8>>(TCP_WRITE_QUEUE);
            tokio::spawn(async move {
                while let Some(frame) = frame_rx.recv().await {
                    let Ok(len) = u16::try_from(frame.len()) else { continue };
                    if writer.write_u16(len).await.is_err() || writer.write_all(&frame).await.is_err() {
                        break;
                    }
                }
            });
            if found.send(NetMsg::TcpOpened { addr: peer, writer: frame_tx }).await.is_err() {
                return;
            }
            room = Some(found);
        }
        let Some(room) = &room else { return };
        let msg = NetMsg::Datagram {
            at,
            proto: Protocol::Tcp,
            source: peer,
            destination: advertised,
            data: data.to_vec(),
        };
        if room.send(msg).await.is_err() {
            return;
        }
    }
    if let Some(room) = room {
        let _ = room.send(NetMsg::TcpClosed { addr: peer }).await;
    }
}
