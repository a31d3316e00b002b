//! VP8 frames rebuilt from the RTP packets of one video slot (RFC 7741), for a receiver to
//! decrypt them whole as a page does after depacketization. Packets may come out of order or
//! twice (retransmissions); a frame whose packets do not all come is given up.

use std::collections::{BTreeMap, VecDeque};

/// Frames waiting for packets; beyond, the oldest is given up.
const PENDING_FRAMES: usize = 8;
/// Timestamps of frames already rebuilt, whose late duplicates are ignored.
const DONE_KEPT: usize = 32;

/// Length of the VP8 payload descriptor at the start of `payload`, and whether the packet starts
/// a frame (S set and partition 0). `None` when it runs past the payload.
pub fn vp8_descriptor(payload: &[u8]) -> Option<(usize, bool)> {
    let first = *payload.first()?;
    let starts_frame = first & 0x10 != 0 && first & 0x07 == 0;
    let mut len = 1;
    if first & 0x80 != 0 {
        let extension = *payload.get(1)?;
        len += 1;
        if extension & 0x80 != 0 {
            // Picture id: 15 bits when its first bit (M) is set, else 7.
            len += if *payload.get(len)? & 0x80 != 0 { 2 } else { 1 };
        }
        if extension & 0x40 != 0 {
            len += 1; // TL0PICIDX
        }
        if extension & 0x30 != 0 {
            len += 1; // TID, Y, KEYIDX
        }
    }
    (len <= payload.len()).then_some((len, starts_frame))
}

struct Part {
    starts_frame: bool,
    marker: bool,
    data: Vec<u8>,
}

struct PendingFrame {
    timestamp: u32,
    csrc: u32,
    parts: BTreeMap<u64, Part>,
}

impl PendingFrame {
    /// The whole frame once its first packet, its last and every one between have come.
    fn complete(&self) -> Option<Vec<u8>> {
        let (first_seq, _) = self.parts.iter().find(|(_, part)| part.starts_frame)?;
        let (last_seq, _) = self.parts.iter().find(|(_, part)| part.marker)?;
        let needed = last_seq.checked_sub(*first_seq)? + 1;
        let parts: Vec<&Part> = self.parts.range(first_seq..=last_seq).map(|(_, part)| part).collect();
        if parts.len() as u64 != needed {
            return None;
        }
        Some(parts.iter().flat_map(|part| part.data.iter().copied()).collect())
    }
}

/// A rebuilt frame and the publisher (CSRC) its packets named.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub csrc: u32,
    pub data: Vec<u8>,
}

/// The frames of one slot.
pub struct FrameAssembler {
    /// Bytes at the end of each payload that are not the frame's (the load test's packet
    /// counter on synthetic video).
    trailer_len: usize,
    pending: Vec<PendingFrame>,
    done: VecDeque<u32>,
    /// Frames given up for lost packets.
    pub n_incomplete: u64,
}

impl FrameAssembler {
    pub fn new(trailer_len: usize) -> FrameAssembler {
        FrameAssembler { trailer_len, pending: Vec::new(), done: VecDeque::new(), n_incomplete: 0 }
    }

    /// One packet (extended sequence number, RTP timestamp, marker, first CSRC, payload); the
    /// frame it completes, if it does.
    pub fn push(
        &mut self,
        seq_no: u64,
        timestamp: u32,
        marker: bool,
        csrc: u32,
        payload: &[u8],
    ) -> Option<Frame> {
        if self.done.contains(&timestamp) {
            return None;
        }
        let (descriptor_len, starts_frame) = vp8_descriptor(payload)?;
        let data = payload.get(descriptor_len..payload.len().checked_sub(self.trailer_len)?)?.to_vec();
        let idx = match self.pending.iter().position(|frame| frame.timestamp == timestamp) {
            Some(idx) => idx,
            None => {
                if self.pending.len() == PENDING_FRAMES {
                    self.pending.remove(0);
                    self.n_incomplete += 1;
                }
                self.pending.push(PendingFrame { timestamp, csrc, parts: BTreeMap::new() });
                self.pending.len() - 1
            }
        };
        let frame = &mut self.pending[idx];
        frame.parts.insert(seq_no, Part { starts_frame, marker, data });
        let data = frame.complete()?;
        let frame = self.pending.remove(idx);
        if self.done.len() == DONE_KEPT {
            self.done.pop_front();
        }
        self.done.push_back(timestamp);
        Some(Frame { csrc: frame.csrc, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_of_every_shape() {
        assert_eq!(vp8_descriptor(&[0x10, 0xaa]), Some((1, true)), "no extension");
        assert_eq!(vp8_descriptor(&[0x90, 0x80, 0x81, 0x02, 0xaa]), Some((4, true)), "15-bit picture id");
        assert_eq!(vp8_descriptor(&[0x90, 0x80, 0x11, 0xaa]), Some((3, true)), "7-bit picture id");
        assert_eq!(vp8_descriptor(&[0x80, 0xe0, 0x81, 0x02, 7, 0x40, 0xaa]), Some((6, false)), "I, L, T");
        assert_eq!(vp8_descriptor(&[0x91, 0x10, 0x05]), Some((3, false)), "K, partition 1");
        assert_eq!(vp8_descriptor(&[0x90, 0x80, 0x81]), None, "cut short");
        assert_eq!(vp8_descriptor(&[]), None);
    }

    fn packets(frame: &[u8], trailer: bool) -> Vec<Vec<u8>> {
        crate::media::packetize(9, frame, trailer.then_some(100))
    }

    #[test]
    fn frames_are_rebuilt_in_any_order_and_once() {
        let frame: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        for trailer in [false, true] {
            let payloads = packets(&frame, trailer);
            assert_eq!(payloads.len(), 3);
            let mut assembler = FrameAssembler::new(if trailer { 4 } else { 0 });
            let last = payloads.len() - 1;
            let order = [2, 0, 1];
            let mut rebuilt = None;
            for (n, idx) in order.iter().enumerate() {
                let out = assembler.push(10 + *idx as u64, 4500, *idx == last, 77, &payloads[*idx]);
                assert_eq!(out.is_some(), n == order.len() - 1);
                rebuilt = rebuilt.or(out);
            }
            assert_eq!(rebuilt, Some(Frame { csrc: 77, data: frame.clone() }));
            // A retransmission of it later is not a new frame.
            assert_eq!(assembler.push(11, 4500, false, 77, &payloads[1]), None);
        }
    }

    #[test]
    fn frames_with_a_lost_packet_are_given_up() {
        let frame = vec![0x31u8; 2500];
        let payloads = packets(&frame, false);
        let mut assembler = FrameAssembler::new(0);
        let mut seq_no = 0;
        for round in 0..(PENDING_FRAMES as u32 + 2) {
            for (idx, payload) in payloads.iter().enumerate() {
                seq_no += 1;
                if idx != 1 {
                    assert_eq!(
                        assembler.push(seq_no, round * 4500, idx == payloads.len() - 1, 1, payload),
                        None
                    );
                }
            }
        }
        assert_eq!(assembler.n_incomplete, 2);
        let mut fine = None;
        for (idx, payload) in payloads.iter().enumerate() {
            fine = assembler.push(1000 + idx as u64, 99_000, idx == payloads.len() - 1, 1, payload);
        }
        assert_eq!(fine.map(|f| f.data), Some(frame));
    }
}
