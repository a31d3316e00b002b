//! Configuration of the SFU. Every value has a default; tests shorten durations here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The one UDP socket every peer of every room shares.
    pub udp_bind: SocketAddr,
    /// ICE-TCP (RFC 4571) for networks that block UDP. `None` turns it off.
    pub tcp_bind: Option<SocketAddr>,
    /// The address clients reach us at, put in our ICE candidates. Behind a 1:1 NAT or in a pod
    /// this is the public address, not the bound one.
    pub advertised_ip: IpAddr,
    pub room: RoomConfig,
    pub tcp_limits: TcpLimits,
    /// Send a room's datagrams of one wake-up with one `sendmmsg(2)` (Linux) rather than one
    /// `send_to` each. docs/benchmarks.md has the figures.
    pub batch_sends: bool,
    /// Run the socket readers and the rooms on the SFU's own single-threaded runtime, on its
    /// own thread (`shell/media_thread.rs`), rather than on the caller's runtime.
    pub media_thread: bool,
}

/// What an ICE-TCP connection may hold: a connection that says nothing, or stops talking, is
/// closed, and past a number of connections new ones are closed at once.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Open ICE-TCP connections at most.
    pub max_connections: usize,
    /// Time for a new connection's first frame (a STUN request naming one of our participants).
    pub first_frame_timeout: Duration,
    /// Time without a frame after which a connection is closed. Browsers send ICE consent
    /// checks every few seconds on a live connection.
    pub idle_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 4096,
            first_frame_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            udp_bind: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 3478),
            tcp_bind: Some(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 3478)),
            advertised_ip: Ipv4Addr::LOCALHOST.into(),
            room: RoomConfig::default(),
            tcp_limits: TcpLimits::default(),
            batch_sends: true,
            media_thread: true,
        }
    }
}

impl SfuConfig {
    /// Loopback with ephemeral ports, for tests.
    pub fn loopback() -> SfuConfig {
        SfuConfig {
            udp_bind: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            tcp_bind: Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)),
            advertised_ip: Ipv4Addr::LOCALHOST.into(),
            room: RoomConfig::default(),
            tcp_limits: TcpLimits::default(),
            batch_sends: true,
            media_thread: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// Warnings sent this long before a time-limited session ends. The offers say 5 and 1 minute.
    pub warn_before_end: Vec<Duration>,
    /// A started session with nobody left closes after this long, so that a teacher whose tab
    /// reloads finds the session still running.
    pub empty_timeout: Duration,
    /// At most one keyframe request per publisher track in this interval.
    pub keyframe_request_interval: Duration,
    /// How often str0m reports stats and the room emits [`crate::SfuEvent::Stats`].
    pub stats_interval: Duration,
    /// A participant whose media is not connected this long after joining is dropped.
    pub connect_timeout: Duration,
    /// How long a participant whose media or signaling link broke keeps their place (and
    /// attendance) before they count as gone.
    pub reconnect_grace: Duration,
    /// Audio slots filled per participant: the loudest speakers (teachers always) but oneself.
    /// Four: the teacher and three others speaking at once.
    pub audio_slots: usize,
    /// Camera thumbnails filled per participant, teachers and the latest speakers first. A
    /// client may declare fewer; the stage (one slot) comes on top.
    pub thumbnail_slots: usize,
    /// How often the room recomputes speakers and slots, besides at every join, departure,
    /// mute or publication.
    pub allocation_interval: Duration,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            warn_before_end: vec![Duration::from_secs(5 * 60), Duration::from_secs(60)],
            empty_timeout: Duration::from_secs(30),
            keyframe_request_interval: Duration::from_secs(1),
            stats_interval: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(30),
            reconnect_grace: Duration::from_secs(30),
            audio_slots: 4,
            thumbnail_slots: 9,
            allocation_interval: Duration::from_millis(200),
        }
    }
}
