//! Which room a datagram belongs to, before any `Rtc` sees it.
//!
//! Every flow starts with a STUN binding request from the client (we are ICE-lite), whose
//! USERNAME is `<our ufrag>:<their ufrag>`. Rooms register the ufrag of each participant; the
//! socket readers learn the client's address from the first request and route the rest of the
//! flow (DTLS, SRTP) by address. Inside the room, `Rtc::accepts` picks the participant.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::room_task::NetMsg;

const STUN_HEADER_LEN: usize = 20;
const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const STUN_ATTR_USERNAME: u16 = 0x0006;

/// Whether the datagram looks like STUN (RFC 5389: top two bits zero, magic cookie).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= STUN_HEADER_LEN && datagram[0] & 0xc0 == 0 && datagram[4..8] == STUN_MAGIC_COOKIE
}

/// Our ufrag from a STUN request's USERNAME, or `None` for anything malformed.
pub fn server_ufrag(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
        return None;
    }
    let body_len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let body = datagram.get(STUN_HEADER_LEN..STUN_HEADER_LEN + body_len)?;
    let mut offset = 0;
    while offset + 4 <= body.len() {
        let attr_type = u16::from_be_bytes([body[offset], body[offset + 1]]);
        let attr_len = u16::from_be_bytes([body[offset + 2], body[offset + 3]]) as usize;
        let value = body.get(offset + 4..offset + 4 + attr_len)?;
        if attr_type == STUN_ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            let (ours, _theirs) = username.split_once(':')?;
            return Some(ours);
        }
        // Attributes are padded to 4 bytes.
        offset += 4 + attr_len.div_ceil(4) * 4;
    }
    None
}

/// Our ufrag to the network channel of the room that owns it. Shared by the socket readers and
/// the room tasks; held only for a map operation, never across an await.
#[derive(Debug, Default)]
pub struct Router {
    by_ufrag: Mutex<HashMap<String, mpsc::Sender<NetMsg>>>,
}

impl Router {
    pub fn register(&self, ufrag: String, room: mpsc::Sender<NetMsg>) {
        self.lock().insert(ufrag, room);
    }

    pub fn unregister(&self, ufrag: &str) {
        self.lock().remove(ufrag);
    }

    pub fn lookup(&self, ufrag: &str) -> Option<mpsc::Sender<NetMsg>> {
        self.lock().get(ufrag).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<NetMsg>>> {
        // A panic while holding this lock would be a bug in a one-line map operation; the map
        // stays consistent either way, so keep serving rather than poisoning every reader.
        self.by_ufrag.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests;
