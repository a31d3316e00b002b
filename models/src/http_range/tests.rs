use super::*;

fn check_range(raw: &str, size: u64, expected: Result<Option<Range<u64>>, RangeNotSatisfiable>) {
    assert_eq!(parse_range(raw, size), expected, "{raw:?} in {size} bytes");
}

fn check_content_range(raw: &str, expected: Result<(u64, u64, u64), ContentRangeError>) {
    assert_eq!(parse_content_range(raw), expected, "{raw:?}");
}

#[test]
fn byte_ranges() {
    check_range("bytes=0-99", 1000, Ok(Some(0..100)));
    check_range("bytes=900-", 1000, Ok(Some(900..1000)));
    check_range("bytes=-100", 1000, Ok(Some(900..1000)));
    check_range("bytes=-2000", 1000, Ok(Some(0..1000)));
    check_range("bytes=990-2000", 1000, Ok(Some(990..1000)));
    check_range(" bytes= 5 - 6 ", 1000, Ok(Some(5..7)));
    check_range("bytes=0-1,5-6", 1000, Ok(None));
    check_range("items=0-1", 1000, Ok(None));
    check_range("bytes=1000-", 1000, Err(RangeNotSatisfiable));
    check_range("bytes=5-1", 1000, Err(RangeNotSatisfiable));
    check_range("bytes=-0", 1000, Err(RangeNotSatisfiable));
    check_range("bytes=x-1", 1000, Err(RangeNotSatisfiable));
    check_range("bytes=5", 1000, Err(RangeNotSatisfiable));
    check_range("bytes=-", 1000, Err(RangeNotSatisfiable));
    check_range("bytes=0-0", 0, Err(RangeNotSatisfiable));
    check_range("bytes=-5", 0, Err(RangeNotSatisfiable));
}

#[test]
fn a_last_byte_of_u64_max_means_to_the_end() {
    // Found by the `ranges` fuzz target: `end + 1` overflowed.
    check_range("bytes=0-18446744073709551615", 1000, Ok(Some(0..1000)));
    check_range("bytes=999-18446744073709551615", 1000, Ok(Some(999..1000)));
    check_range("bytes=0-18446744073709551616", 1000, Err(RangeNotSatisfiable));
}

#[test]
fn content_ranges() {
    check_content_range("bytes 0-99/1000", Ok((0, 99, 1000)));
    check_content_range("bytes 999-999/1000", Ok((999, 999, 1000)));
    check_content_range("bytes 0-0/1", Ok((0, 0, 1)));
    check_content_range("bytes 5-4/1000", Err(ContentRangeError::OutOfOrder));
    check_content_range("bytes 0-1000/1000", Err(ContentRangeError::OutOfOrder));
    check_content_range("bytes 0-18446744073709551615/100", Err(ContentRangeError::OutOfOrder));
    check_content_range("bytes 0-0/0", Err(ContentRangeError::OutOfOrder));
    check_content_range("bytes */1000", Err(ContentRangeError::Malformed));
    check_content_range("bytes 0-99/*", Err(ContentRangeError::Malformed));
    check_content_range("bytes=0-99/1000", Err(ContentRangeError::Malformed));
    check_content_range("bytes 0-99", Err(ContentRangeError::Malformed));
    check_content_range("bytes 0 - 99/1000", Err(ContentRangeError::Malformed));
    check_content_range("", Err(ContentRangeError::Malformed));
}

#[test]
fn errors_say_what_the_api_answers() {
    assert_eq!(ContentRangeError::Malformed.to_string(), "Content-Range must be 'bytes START-END/TOTAL'");
    assert_eq!(ContentRangeError::OutOfOrder.to_string(), "Content-Range must have START <= END < TOTAL");
}
