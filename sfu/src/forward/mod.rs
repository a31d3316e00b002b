//! Packets and layers: per published track a [`Buffer`], per subscriber a [`DownTrack`].
//!
//! Nothing here decodes media. The only payload bytes read are the few header bytes that say
//! whether a video packet starts a keyframe, and the RED (RFC 2198) block headers of redundant
//! audio unwrapped for a receiver without RED ([`red`]). Retransmissions are not cached here: str0m's
//! `StreamTx` keeps each sent packet (a shared `Arc` of the payload, so subscribers share one
//! copy) and answers NACKs with RTX itself, in RTP mode too.
//!
//! A receiver's fixed slots are [`SlotForwarder`]s: one outgoing stream each, into which the
//! room switches publishers (at keyframes for video), a [`DownTrack`] re-basing sequence numbers
//! and timestamps across switches.

mod buffer;
mod downtrack;
mod keyframe;
pub mod red;
mod slot;
/// Test-only (debug builds): a copy of forwarded packets to files, for the browser tests.
#[cfg(debug_assertions)]
pub mod tap;

pub use buffer::{Buffer, PacketView};
pub use downtrack::{Decision, DownTrack, DropReason};
pub use keyframe::{is_keyframe_start, KeyframeThrottle, VideoCodec};
pub use slot::{SlotDecision, SlotForwarder};
