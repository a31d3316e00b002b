//! The byte ranges of the media API, as pure functions over header values: `Content-Range` on
//! upload chunks and `Range` on downloads. The HTTP layer (`signaling::api_media`) reads the
//! headers and turns these errors into responses; here they are plain values, which the fuzz
//! target `ranges` checks for their invariants.

use std::ops::Range;

/// Why an upload's `Content-Range` is refused. The messages are the API's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContentRangeError {
    #[error("Content-Range must be 'bytes START-END/TOTAL'")]
    Malformed,
    #[error("Content-Range must have START <= END < TOTAL")]
    OutOfOrder,
}

/// `Content-Range: bytes START-END/TOTAL` (END inclusive) as `(START, END, TOTAL)`, with
/// `START <= END < TOTAL`, so that the chunk's length `END - START + 1` cannot overflow:
/// `bytes 0-18446744073709551615/100` would otherwise pass as a zero-length chunk.
pub fn parse_content_range(raw: &str) -> Result<(u64, u64, u64), ContentRangeError> {
    let malformed = |_| ContentRangeError::Malformed;
    let spec = raw.strip_prefix("bytes ").ok_or(ContentRangeError::Malformed)?;
    let (range, total) = spec.split_once('/').ok_or(ContentRangeError::Malformed)?;
    let (start, end) = range.split_once('-').ok_or(ContentRangeError::Malformed)?;
    let start: u64 = start.parse().map_err(malformed)?;
    let end: u64 = end.parse().map_err(malformed)?;
    let total: u64 = total.parse().map_err(malformed)?;
    if end < start || end >= total {
        return Err(ContentRangeError::OutOfOrder);
    }
    Ok((start, end, total))
}

/// A download's `Range` that cannot be served from a file of its size: answered with 416.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("range not satisfiable")]
pub struct RangeNotSatisfiable;

/// One range of `Range: bytes=...` in a file of `size` bytes, as `start..end` (end exclusive),
/// with `start < end <= size`. `Ok(None)`: serve it all (another unit, or a multi-range request,
/// which we answer whole as RFC 9110 allows).
pub fn parse_range(raw: &str, size: u64) -> Result<Option<Range<u64>>, RangeNotSatisfiable> {
    let Some(spec) = raw.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let unsatisfiable = |_| RangeNotSatisfiable;
    let (start, end) = spec.split_once('-').ok_or(RangeNotSatisfiable)?;
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(unsatisfiable)?;
            if n == 0 {
                return Err(RangeNotSatisfiable);
            }
            size.saturating_sub(n)..size
        }
        (start, "") => start.parse().map_err(unsatisfiable)?..size,
        (start, end) => {
            let start: u64 = start.parse().map_err(unsatisfiable)?;
            let end: u64 = end.parse().map_err(unsatisfiable)?;
            if end < start {
                return Err(RangeNotSatisfiable);
            }
            // Saturating: a last byte of u64::MAX (`bytes=0-18446744073709551615`) means "to the
            // end"; `end + 1` overflowed (found by the fuzz target `ranges`): a panic where
            // overflow checks are on, else the empty range `start..0`.
            start..end.saturating_add(1).min(size)
        }
    };
    if range.start >= size {
        return Err(RangeNotSatisfiable);
    }
    Ok(Some(range))
}

#[cfg(test)]
mod tests;
