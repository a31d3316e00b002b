//! Packets and layers: per published track a [`Buffer`], per subscriber a [`DownTrack`].
//!
//! Nothing here decodes media. The only payload bytes read are the few header bytes that say
//! whether a video packet starts a keyframe. Retransmissions are not cached here: str0m's
//! `StreamTx` keeps each sent packet (a shared `Arc` of the payload, so subscribers share one
//! copy) and answers NACKs with RTX itself, in RTP mode too.
//!
//! Simulcast and last-N fit here later: a `Buffer` per (mid, rid) layer and a `DownTrack` that
//! picks its layer and switches on keyframes, re-basing sequence numbers and timestamps the way
//! it already does after a pause.

mod buffer;
mod downtrack;
mod keyframe;

pub use buffer::{Buffer, PacketView};
pub use downtrack::{Decision, DownTrack, DropReason};
pub use keyframe::{is_keyframe_start, KeyframeThrottle, VideoCodec};
