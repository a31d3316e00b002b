//! The kernel side: NFQUEUE through libnetfilter_queue (FFI, linked with `-lnetfilter_queue`).
//!
//! Packets are read without blocking from the one netlink socket (`Nfq::fd`, for `poll`), and
//! each verdict is a separate message sent later, whenever the link lets the packet go: the kernel
//! keeps every packet that has no verdict yet in its queue, so that queue must be long enough
//! (`set_queue_maxlen`) for all the packets the links hold.
//!
//! Only the first bytes of each packet are copied to us (`COPY_RANGE`): the IP header says the
//! packet's length, which is all the links need; the payload is never modified.

use std::io;
use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::ptr;

#[repr(C)]
struct NfqHandle {
    _opaque: [u8; 0],
}
#[repr(C)]
struct NfqQHandle {
    _opaque: [u8; 0],
}
#[repr(C)]
struct NfqData {
    _opaque: [u8; 0],
}
#[repr(C)]
struct NfGenMsg {
    _opaque: [u8; 0],
}
/// `struct nfqnl_msg_packet_hdr` (packed; `packet_id` in network order).
#[repr(C, packed)]
struct NfqnlMsgPacketHdr {
    packet_id: u32,
    hw_protocol: u16,
    hook: u8,
}

type NfqCallback = unsafe extern "C" fn(*mut NfqQHandle, *mut NfGenMsg, *mut NfqData, *mut c_void) -> c_int;

#[link(name = "netfilter_queue")]
extern "C" {
    fn nfq_open() -> *mut NfqHandle;
    fn nfq_close(h: *mut NfqHandle) -> c_int;
    fn nfq_fd(h: *mut NfqHandle) -> c_int;
    fn nfq_create_queue(h: *mut NfqHandle, num: u16, cb: NfqCallback, data: *mut c_void) -> *mut NfqQHandle;
    fn nfq_destroy_queue(qh: *mut NfqQHandle) -> c_int;
    fn nfq_set_mode(qh: *mut NfqQHandle, mode: u8, range: c_uint) -> c_int;
    fn nfq_set_queue_maxlen(qh: *mut NfqQHandle, queuelen: u32) -> c_int;
    fn nfq_handle_packet(h: *mut NfqHandle, buf: *mut c_char, len: c_int) -> c_int;
    fn nfq_set_verdict(qh: *mut NfqQHandle, id: u32, verdict: u32, data_len: u32, buf: *const u8) -> c_int;
    fn nfq_get_msg_packet_hdr(nfad: *mut NfqData) -> *mut NfqnlMsgPacketHdr;
    fn nfq_get_payload(nfad: *mut NfqData, data: *mut *mut u8) -> c_int;
}

const NFQNL_COPY_PACKET: u8 = 2;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
/// Enough for an IPv6 header and a transport header; the length fields are in the first 8 bytes.
const COPY_RANGE: c_uint = 64;
/// The socket's receive buffer: packets arrive in bursts (a video keyframe is tens of packets).
const RCVBUF_BYTES: c_int = 8 << 20;

/// A packet the kernel handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Index of the queue in the order of `Nfq::bind`.
    pub queue_idx: usize,
    pub packet_id: u32,
    /// The IP packet's length in bytes.
    pub len: u32,
}

/// What the callback fills: one per queue, at a stable address (boxed) for the C side.
struct Inbox {
    queue_idx: usize,
    arrivals: Vec<Arrival>,
}

struct BoundQueue {
    handle: *mut NfqQHandle,
    inbox: Box<Inbox>,
}

/// The NFQUEUE connection and the queues bound to it.
pub struct Nfq {
    handle: *mut NfqHandle,
    queues: Vec<BoundQueue>,
    buf: Vec<u8>,
    /// Times the kernel said it dropped notifications for lack of room in our socket (ENOBUFS).
    pub n_enobufs: u64,
}

/// The packet's length from its IP header, or what was copied if that is not IP.
fn ip_length(payload: &[u8], copied: u32) -> u32 {
    match payload.first().map(|b| b >> 4) {
        Some(4) if payload.len() >= 4 => u32::from(u16::from_be_bytes([payload[2], payload[3]])),
        Some(6) if payload.len() >= 6 => 40 + u32::from(u16::from_be_bytes([payload[4], payload[5]])),
        _ => copied,
    }
}

unsafe extern "C" fn on_packet(
    _qh: *mut NfqQHandle,
    _nfmsg: *mut NfGenMsg,
    nfad: *mut NfqData,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the `Inbox` registered with this queue in `bind`, boxed and alive as long
    // as the queue; libnetfilter_queue calls this only from `nfq_handle_packet`, inside `receive`,
    // which holds `&mut Nfq`, so nothing else touches the inbox meanwhile.
    let inbox = unsafe { &mut *(data as *mut Inbox) };
    let header = unsafe { nfq_get_msg_packet_hdr(nfad) };
    if header.is_null() {
        return 0;
    }
    // SAFETY: a non-null header points into the message being handled; packed, so read unaligned.
    let packet_id = u32::from_be(unsafe { ptr::addr_of!((*header).packet_id).read_unaligned() });
    let mut payload: *mut u8 = ptr::null_mut();
    let copied = unsafe { nfq_get_payload(nfad, &mut payload) };
    let len = if copied > 0 && !payload.is_null() {
        let copied = copied as usize;
        // SAFETY: libnetfilter_queue returned `copied` bytes at `payload`, inside the message.
        let bytes = unsafe { std::slice::from_raw_parts(payload, copied) };
        ip_length(bytes, copied as u32)
    } else {
        0
    };
    inbox.arrivals.push(Arrival { queue_idx: inbox.queue_idx, packet_id, len });
    0
}

impl Nfq {
    pub fn open() -> io::Result<Nfq> {
        // SAFETY: plain constructor; null means failure.
        let handle = unsafe { nfq_open() };
        if handle.is_null() {
            return Err(io::Error::other(format!(
                "nfq_open failed ({}): needs root (CAP_NET_ADMIN) and NFQUEUE support in the kernel",
                io::Error::last_os_error()
            )));
        }
        let nfq = Nfq { handle, queues: Vec::new(), buf: vec![0; 65536 + 4096], n_enobufs: 0 };
        let fd = nfq.fd();
        // SAFETY: setsockopt on our own socket with a valid pointer and length. SO_RCVBUFFORCE
        // needs CAP_NET_ADMIN, which NFQUEUE needs anyway; fall back to SO_RCVBUF.
        unsafe {
            let size = RCVBUF_BYTES;
            let size_ptr = &size as *const c_int as *const c_void;
            let size_len = std::mem::size_of::<c_int>() as libc::socklen_t;
            if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size_ptr, size_len) != 0 {
                libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size_ptr, size_len);
            }
        }
        Ok(nfq)
    }

    /// The netlink socket, to `poll` for readability.
    pub fn fd(&self) -> c_int {
        // SAFETY: `handle` is open until drop.
        unsafe { nfq_fd(self.handle) }
    }

    /// Binds queue `num`, with a kernel queue of `max_len` packets. Returns its index.
    pub fn bind(&mut self, num: u16, max_len: u32) -> io::Result<usize> {
        let queue_idx = self.queues.len();
        let mut inbox = Box::new(Inbox { queue_idx, arrivals: Vec::new() });
        let inbox_ptr = &mut *inbox as *mut Inbox as *mut c_void;
        // SAFETY: the inbox outlives the queue: both are dropped together, queue first.
        let handle = unsafe { nfq_create_queue(self.handle, num, on_packet, inbox_ptr) };
        if handle.is_null() {
            return Err(io::Error::other(format!(
                "cannot bind NFQUEUE {num} ({}): is another program bound to it?",
                io::Error::last_os_error()
            )));
        }
        self.queues.push(BoundQueue { handle, inbox });
        // SAFETY: `handle` was just created and is valid.
        if unsafe { nfq_set_mode(handle, NFQNL_COPY_PACKET, COPY_RANGE) } < 0 {
            return Err(io::Error::other(format!(
                "nfq_set_mode on queue {num}: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: as above.
        if unsafe { nfq_set_queue_maxlen(handle, max_len) } < 0 {
            return Err(io::Error::other(format!(
                "nfq_set_queue_maxlen on queue {num}: {}",
                io::Error::last_os_error()
            )));
        }
        Ok(queue_idx)
    }

    /// Reads what the socket has, without blocking, at most `max_messages` messages, into
    /// `out`. Returns the number of messages read.
    pub fn receive(&mut self, out: &mut Vec<Arrival>, max_messages: usize) -> io::Result<usize> {
        let fd = self.fd();
        let mut n_read = 0;
        while n_read < max_messages {
            // SAFETY: recv into our own buffer, within its length.
            let n = unsafe {
                libc::recv(fd, self.buf.as_mut_ptr() as *mut c_void, self.buf.len(), libc::MSG_DONTWAIT)
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    // The kernel could not queue a notification to us: those packets are lost
                    // to it (dropped), and reading goes on.
                    Some(libc::ENOBUFS) => {
                        self.n_enobufs += 1;
                        continue;
                    }
                    _ => return Err(err),
                }
            }
            n_read += 1;
            // SAFETY: the buffer holds `n` bytes the kernel wrote; the callback only reads them.
            unsafe { nfq_handle_packet(self.handle, self.buf.as_mut_ptr() as *mut c_char, n as c_int) };
        }
        for queue in &mut self.queues {
            out.append(&mut queue.inbox.arrivals);
        }
        Ok(n_read)
    }

    /// Tells the kernel what to do with a packet of queue `queue_idx`.
    pub fn verdict(&mut self, queue_idx: usize, packet_id: u32, accept: bool) -> io::Result<()> {
        let Some(queue) = self.queues.get(queue_idx) else {
            return Err(io::Error::other(format!("no queue at index {queue_idx}")));
        };
        let verdict = if accept { NF_ACCEPT } else { NF_DROP };
        // SAFETY: a bound queue handle; no payload is passed.
        if unsafe { nfq_set_verdict(queue.handle, packet_id, verdict, 0, ptr::null()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Nfq {
    fn drop(&mut self) {
        for queue in self.queues.drain(..) {
            // SAFETY: each handle was created by `nfq_create_queue` and is destroyed once; the
            // inbox is dropped after it.
            unsafe { nfq_destroy_queue(queue.handle) };
            drop(queue.inbox);
        }
        // SAFETY: opened in `open`, closed once.
        unsafe { nfq_close(self.handle) };
    }
}

#[cfg(test)]
mod tests {
    use super::ip_length;

    #[test]
    fn length_from_the_ip_header() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[2..4].copy_from_slice(&1200u16.to_be_bytes());
        assert_eq!(ip_length(&v4, 20), 1200);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(ip_length(&v6, 40), 1040);
        assert_eq!(ip_length(&[0x10, 0, 0], 3), 3);
    }
}
