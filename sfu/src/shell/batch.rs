//! The datagrams a room produces in one wake-up, sent in one system call. A packet that fans out
//! to 69 receivers is 69 datagrams to 69 addresses, so segmentation offload (GSO, one address)
//! does not apply; Linux's `sendmmsg(2)` sends them all at once. Elsewhere, or when turned off
//! (`SfuConfig::batch_sends`), one `send_to` each. Either way a datagram the socket cannot take
//! (its send buffer full) is dropped, like the network would, and counted.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use tokio::net::UdpSocket;
use tracing::debug;

use super::Drops;

/// At most this many datagrams per system call (Linux's `UIO_MAXIOV` is 1024).
const MAX_BATCH: usize = 256;

#[derive(Default)]
pub struct UdpBatch {
    datagrams: Vec<(SocketAddr, Vec<u8>)>,
}

impl UdpBatch {
    pub fn push(&mut self, destination: SocketAddr, contents: Vec<u8>) {
        self.datagrams.push((destination, contents));
    }

    pub fn is_full(&self) -> bool {
        self.datagrams.len() >= MAX_BATCH
    }

    /// Sends everything queued, batched or not.
    pub fn flush(&mut self, udp: &UdpSocket, batched: bool, drops: &Drops) {
        if self.datagrams.is_empty() {
            return;
        }
        let sent = if batched { send_batch(udp, &self.datagrams) } else { send_each(udp, &self.datagrams) };
        let lost = self.datagrams.len() - sent;
        if lost > 0 {
            drops.udp_sends.fetch_add(lost as u64, Ordering::Relaxed);
        }
        self.datagrams.clear();
    }
}

/// Returns how many were sent.
fn send_each(udp: &UdpSocket, datagrams: &[(SocketAddr, Vec<u8>)]) -> usize {
    let mut sent = 0;
    for (destination, contents) in datagrams {
        match udp.try_send_to(contents, *destination) {
            Ok(_) => sent += 1,
            Err(err) => debug!(cause = %err, "udp send failed"),
        }
    }
    sent
}

#[cfg(target_os = "linux")]
fn send_batch(udp: &UdpSocket, datagrams: &[(SocketAddr, Vec<u8>)]) -> usize {
    use std::os::fd::AsRawFd;

    let addresses: Vec<socket2::SockAddr> =
        datagrams.iter().map(|(a, _)| socket2::SockAddr::from(*a)).collect();
    let mut iovecs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|(_, contents)| libc::iovec {
            iov_base: contents.as_ptr() as *mut libc::c_void,
            iov_len: contents.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = Vec::with_capacity(datagrams.len());
    for (address, iovec) in addresses.iter().zip(iovecs.iter_mut()) {
        // SAFETY: an all-zero `msghdr` is valid (no control data, no flags); the pointers set
        // below point into `addresses` and `iovecs`, which outlive the system call.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_name = address.as_ptr() as *mut libc::c_void;
        header.msg_namelen = address.len();
        header.msg_iov = iovec as *mut libc::iovec;
        header.msg_iovlen = 1;
        headers.push(libc::mmsghdr { msg_hdr: header, msg_len: 0 });
    }
    let fd = udp.as_raw_fd();
    let (mut next, mut sent) = (0, 0);
    while next < headers.len() {
        let rest = &mut headers[next..];
        let result = udp.try_io(tokio::io::Interest::WRITABLE, || {
            // SAFETY: `rest` is a valid array of `rest.len()` headers whose buffers are alive;
            // the kernel writes only `msg_len` in each.
            let n = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match result {
            Ok(0) => break,
            Ok(n) => {
                next += n;
                sent += n;
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(err) => {
                // One bad destination (unreachable, refused) fails the call at its datagram:
                // that one is lost; the rest go on.
                debug!(cause = %err, "udp batch send failed");
                next += 1;
            }
        }
    }
    sent
}

#[cfg(not(target_os = "linux"))]
fn send_batch(udp: &UdpSocket, datagrams: &[(SocketAddr, Vec<u8>)]) -> usize {
    send_each(udp, datagrams)
}
