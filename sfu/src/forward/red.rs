//! RFC 2198 redundant audio (RED): browsers send Opus with the previous frame repeated in each
//! packet, which hides a lost packet without a retransmission. A receiver that negotiated RED
//! gets the packets as they are; one that did not (a non-browser client) gets the primary
//! encoding alone, found by reading the block headers only.

/// The primary (latest) encoding of a RED payload: after the headers of the redundant blocks
/// (4 bytes each, F bit set), the one-byte header of the primary, and the redundant blocks'
/// data. `None` for a payload whose headers run past its end.
pub fn primary(payload: &[u8]) -> Option<&[u8]> {
    let mut offset = 0;
    let mut redundant_len = 0usize;
    loop {
        let header = *payload.get(offset)?;
        if header & 0x80 == 0 {
            offset += 1;
            break;
        }
        // F(1) PT(7) timestamp offset(14) block length(10).
        let block = payload.get(offset..offset + 4)?;
        redundant_len += (usize::from(block[2] & 0x03) << 8) | usize::from(block[3]);
        offset += 4;
    }
    payload.get(offset + redundant_len..)
}

#[cfg(test)]
mod tests {
    use super::primary;

    #[test]
    fn the_primary_follows_the_redundant_blocks() {
        // One redundant block of 3 bytes (PT 111, offset 960), then the primary (PT 111).
        let payload = [0x80 | 111, 0x0f, 0x00, 3, 111, 0xa1, 0xa2, 0xa3, 0xb1, 0xb2];
        assert_eq!(primary(&payload), Some(&[0xb1, 0xb2][..]));
        // No redundancy (the first packet of a stream): just the primary's header.
        assert_eq!(primary(&[111, 0xb1]), Some(&[0xb1][..]));
        // Two redundant blocks.
        let payload = [0xef, 0, 0, 1, 0xef, 0, 0, 2, 111, 0xa1, 0xc1, 0xc2, 0xb1];
        assert_eq!(primary(&payload), Some(&[0xb1][..]));
    }

    #[test]
    fn truncated_or_lying_headers_are_refused() {
        assert_eq!(primary(&[]), None);
        assert_eq!(primary(&[0x80 | 111, 0x0f, 0x00]), None);
        // A block length past the end.
        assert_eq!(primary(&[0x80 | 111, 0x0f, 0x03, 0xff, 111, 1, 2]), None);
        // Only F bits: never ends.
        assert_eq!(primary(&[0xff; 64]), None);
    }
}
