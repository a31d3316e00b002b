//! The sockets: one UDP socket for every peer, one TCP port for ICE-TCP (RFC 4571).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::net::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::debug;

use super::room_task::NetMsg;
use super::router::{server_ufrag, Router};

/// Larger than any datagram a WebRTC peer sends (they keep under ~1200 bytes for the path MTU).
const RECV_BUF_LEN: usize = 2048;
/// ICE-TCP frames per connection waiting to be written before we drop, as UDP would.
const TCP_WRITE_QUEUE: usize = 256;

/// Reads the shared UDP socket and hands each datagram to its room.
pub async fn udp_reader(socket: Arc<UdpSocket>, advertised: SocketAddr, router: Arc<Router>) {
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
            Err(mpsc::error::TrySendError::Full(_)) => debug!("room queue full, datagram dropped"),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                by_addr.remove(&source);
            }
        }
    }
}

/// Accepts ICE-TCP connections (passive candidates only: browsers connect to us).
pub async fn tcp_acceptor(listener: TcpListener, advertised: SocketAddr, router: Arc<Router>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(tcp_connection(stream, peer, advertised, router.clone()));
            }
            Err(err) => debug!(cause = %err, "tcp accept failed"),
        }
    }
}

async fn tcp_connection(stream: TcpStream, peer: SocketAddr, advertised: SocketAddr, router: Arc<Router>) {
    let (mut reader, writer) = stream.into_split();
    let mut writer = Some(writer);
    let mut room: Option<mpsc::Sender<NetMsg>> = None;
    let mut buf = vec![0u8; u16::MAX as usize];
    // RFC 4571: each packet is preceded by its length as a 16-bit big-endian integer.
    while let Ok(len) = reader.read_u16().await {
        let len = len as usize;
        if reader.read_exact(&mut buf[..len]).await.is_err() {
            break;
        }
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
