//! One receive slot of one participant: a fixed outgoing stream into which the room switches
//! publishers. The receiver sees one continuous stream (sequence numbers and timestamps go on
//! across switches); a video slot changes publisher only at a keyframe of the new one, and keeps
//! showing the old one until then.

use crate::proto::MediaKind;

use super::buffer::PacketView;
use super::downtrack::{Decision, DownTrack, DropReason};

/// What to do with a packet offered to a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotDecision {
    /// Send it with these numbers. `switched`: the slot's publisher changed with this packet.
    Forward {
        seq_no: u64,
        timestamp: u32,
        switched: bool,
    },
    Drop(DropReason),
    /// The packet's track is neither the slot's publisher nor the one it switches to.
    NotHere,
}

/// `K` names a publisher's track (the room uses its participant key and mid).
#[derive(Debug)]
pub struct SlotForwarder<K> {
    kind: MediaKind,
    current: Option<K>,
    /// Video: the track the slot switches to at its next keyframe.
    pending: Option<K>,
    downtrack: DownTrack,
    /// Packets written to the slot (str0m's egress statistics add its retransmissions).
    pub packets_out: u64,
}

impl<K: Copy + Eq> SlotForwarder<K> {
    pub fn new(kind: MediaKind) -> SlotForwarder<K> {
        SlotForwarder {
            kind,
            current: None,
            pending: None,
            downtrack: DownTrack::new(kind, 0),
            packets_out: 0,
        }
    }

    /// The track the receiver sees now.
    pub fn current(&self) -> Option<K> {
        self.current
    }

    /// The track the slot waits to switch to (video, until its keyframe).
    pub fn pending(&self) -> Option<K> {
        self.pending
    }

    /// The track the slot carries or is about to: what the allocation last asked for.
    pub fn target(&self) -> Option<K> {
        self.pending.or(self.current)
    }

    /// The tracks whose packets the slot must see: the current one and the pending one.
    pub fn listening(&self) -> Vec<K> {
        self.current.into_iter().chain(self.pending).collect()
    }

    /// Whether the slot waits for a keyframe of `track` (a switch, or a start).
    pub fn waits_for_keyframe_of(&self, track: K) -> bool {
        self.pending == Some(track) || (self.current == Some(track) && self.downtrack.needs_keyframe())
    }

    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        self.downtrack.set_clock_rate(clock_rate);
    }

    /// Points the slot at `track`. Returns whether what the receiver sees changed now (a video
    /// slot changes to a publisher later, at its keyframe).
    pub fn assign(&mut self, track: Option<K>, generation: u32) -> bool {
        if track == self.current {
            self.pending = None;
            return false;
        }
        match (self.kind, track) {
            // Video to a publisher: keep what the slot shows (a picture, or nothing) until the
            // new one's keyframe, when the switch happens and is announced.
            (MediaKind::Video, Some(_)) => {
                self.pending = track;
                false
            }
            _ => {
                self.pending = None;
                self.current = track;
                if track.is_some() {
                    self.downtrack.switch_source(generation);
                }
                true
            }
        }
    }

    /// Decides what to do with `packet` of `track`, whose buffer is at `generation`.
    pub fn forward(&mut self, track: K, packet: &PacketView, generation: u32) -> SlotDecision {
        let mut switched = false;
        if self.pending == Some(track) {
            if !packet.keyframe_start {
                return SlotDecision::Drop(DropReason::WaitingForKeyframe);
            }
            self.current = self.pending.take();
            self.downtrack.switch_source(generation);
            switched = true;
        }
        if self.current != Some(track) {
            return SlotDecision::NotHere;
        }
        match self.downtrack.forward(packet, generation) {
            Decision::Forward { seq_no, timestamp } => SlotDecision::Forward { seq_no, timestamp, switched },
            Decision::Drop(reason) => SlotDecision::Drop(reason),
        }
    }
}

#[cfg(test)]
mod tests;
