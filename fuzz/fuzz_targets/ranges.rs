//! The media API's byte ranges (`models::http_range`): an upload chunk's `Content-Range` and a
//! download's `Range`. Never a panic, and what is accepted is a range the handlers can use as is.

#![no_main]

use libfuzzer_sys::fuzz_target;
use models::http_range::{parse_content_range, parse_range};

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes are the file's size for `Range`; the rest is the header value.
    let (size, header) = match data.split_first_chunk::<8>() {
        Some((size, rest)) => (u64::from_le_bytes(*size), rest),
        None => (0, data),
    };
    // Header values reach the parsers through `HeaderValue::to_str`, so visible ASCII only, but
    // the functions take any `&str`: fuzz them with any.
    let Ok(header) = std::str::from_utf8(header) else { return };

    if let Ok((start, end, total)) = parse_content_range(header) {
        assert!(start <= end && end < total, "{header:?} gave {start}-{end}/{total}");
        // The chunk's length, as the upload handler computes it.
        let _n_bytes = end - start + 1;
    }
    // A real file's size too, besides the fuzzed one, so that small sizes are common.
    for size in [size, size % 4096] {
        if let Ok(Some(range)) = parse_range(header, size) {
            assert!(
                range.start < range.end && range.end <= size,
                "{header:?} in {size} bytes gave {range:?}"
            );
        }
    }
});
