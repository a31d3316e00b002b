//! The incoming side of one published track.

use std::time::{Duration, Instant};

use crate::proto::{MediaKind, TrackSource};

use super::keyframe::{KeyframeThrottle, VideoCodec};

/// What the forwarding code needs to know of one incoming RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketView {
    /// Extended sequence number, as str0m unrolls it.
    pub seq_no: u64,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub keyframe_start: bool,
    pub arrival: Instant,
}

/// One published track: whether it is forwarded at all, and the keyframe requests of each of
/// its layers (simulcast: one per encoding the publisher sends, lowest quality first; one
/// otherwise).
#[derive(Debug)]
pub struct Buffer {
    pub kind: MediaKind,
    pub source: TrackSource,
    /// Known once the first packet names its payload type.
    pub codec: Option<VideoCodec>,
    forwarding: bool,
    /// Bumped each time forwarding resumes, so that every `DownTrack` re-bases its sequence
    /// numbers instead of showing subscribers the gap we made on purpose.
    generation: u32,
    keyframe_interval: Duration,
    keyframes: Vec<KeyframeThrottle>,
}

impl Buffer {
    pub fn new(kind: MediaKind, source: TrackSource, keyframe_interval: Duration, n_layers: usize) -> Buffer {
        Buffer {
            kind,
            source,
            codec: None,
            forwarding: true,
            generation: 0,
            keyframe_interval,
            keyframes: (0..n_layers.max(1)).map(|_| KeyframeThrottle::new(keyframe_interval)).collect(),
        }
    }

    /// A layer the publisher sends that was not declared; returns its index.
    pub fn add_layer(&mut self) -> usize {
        self.keyframes.push(KeyframeThrottle::new(self.keyframe_interval));
        self.keyframes.len() - 1
    }

    pub fn n_layers(&self) -> usize {
        self.keyframes.len()
    }

    pub fn is_forwarding(&self) -> bool {
        self.forwarding
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Turns forwarding off (mute, camera off, publisher not admitted) or back on. Resuming video
    /// asks the publisher for a keyframe, since subscribers cannot decode until one arrives.
    pub fn set_forwarding(&mut self, forwarding: bool) {
        if forwarding && !self.forwarding {
            self.generation = self.generation.wrapping_add(1);
            if self.kind == MediaKind::Video {
                self.keyframes.iter_mut().for_each(KeyframeThrottle::request);
            }
        }
        self.forwarding = forwarding;
    }

    /// A subscriber needs a keyframe of `layer` (new subscription, switch, PLI or FIR).
    pub fn request_keyframe(&mut self, layer: usize) {
        if self.kind == MediaKind::Video {
            if let Some(throttle) = self.keyframes.get_mut(layer) {
                throttle.request();
            }
        }
    }

    /// Whether to send a keyframe request for `layer` to the publisher now.
    pub fn poll_keyframe_request(&mut self, layer: usize, now: Instant) -> bool {
        self.keyframes.get_mut(layer).is_some_and(|throttle| throttle.poll(now))
    }

    /// The layers whose keyframe request is due at `now`.
    pub fn due_keyframe_requests(&self, now: Instant) -> impl Iterator<Item = usize> + '_ {
        (0..self.keyframes.len()).filter(move |i| self.keyframes[*i].is_due(now))
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.keyframes.iter().filter_map(KeyframeThrottle::next_timeout).min()
    }
}

#[cfg(test)]
mod tests;
