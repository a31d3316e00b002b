//! The media plane of the class visio: a WebRTC SFU built on str0m in RTP mode.
//!
//! # Layout
//! - [`room`]: who is in a room and who gets what. [`room::session::Session`] holds the rules
//!   (tier limits, session timer, roles, moderation) as a plain state machine; [`room::Room`]
//!   adds the participants' str0m `Rtc` instances and their receive slots. Both are sans-IO: time and
//!   datagrams come in as inputs, datagrams and events go out through `poll_output`.
//! - [`forward`]: packets. [`forward::Buffer`] per published track, [`forward::SlotForwarder`]
//!   per receive slot over a [`forward::DownTrack`]: keyframe gating, switches between
//!   publishers, sequence number and timestamp rewriting, throttled keyframe requests.
//! - `shell`: the IO. One UDP socket shared by every peer, ICE-TCP on one TCP port, one tokio
//!   task per room, and [`SfuHandle`], the API the signaling server calls in-process.
//! - [`proto`]: ids, commands and events exchanged with the signaling server (to move to
//!   `models`); serde, so that `signaling` can carry them to an SFU node in another process.
//!   [`error`]: [`SfuError`] with its stable `ErrorCode`.
//!
//! # Design
//! Media is forwarded as RTP, never decoded: str0m runs in RTP mode, answers NACKs from its own
//! send cache and NACKs publishers itself. The core never reads the clock, spawns or locks;
//! the shell does, and is the only code that touches a socket.
//!
//! # Not here (yet)
//! Bandwidth-driven layer choice and pausing, TURN, recording.

pub mod config;
pub mod error;
pub mod forward;
pub mod proto;
pub mod room;
mod shell;

pub use config::{RoomConfig, SfuConfig, TcpLimits};
pub use error::SfuError;
pub use proto::*;
pub use shell::{
    DropCounts, EventReceiver, JoinRequest, Joined, Sfu, SfuHandle, LOSSY_LIMIT, PARTICIPANT_EVENT_QUEUE,
};
