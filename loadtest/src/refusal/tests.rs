use super::*;

fn check_retry_after(value: &str, expected: Option<u64>) {
    assert_eq!(parse_retry_after(value), expected.map(Duration::from_secs), "{value:?}");
}

#[test]
fn retry_after_is_delta_seconds() {
    check_retry_after("2", Some(2));
    check_retry_after(" 17 ", Some(17));
    check_retry_after("0", Some(0));
    check_retry_after("99999999999999999999999", Some(24 * 3600));
    check_retry_after("", None);
    check_retry_after("-1", None);
    check_retry_after("1.5", None);
    check_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", None);
}

#[test]
fn the_message_of_an_error_gives_the_wait() {
    assert_eq!(retry_hint("the server is busy; try again in 2 s"), Some(Duration::from_secs(2)));
    assert_eq!(retry_hint("too many joins; try again in 13 s"), Some(Duration::from_secs(13)));
    assert_eq!(retry_hint("try again in a few seconds"), None);
    assert_eq!(retry_hint("try again in 5 minutes"), None);
    assert_eq!(retry_hint("the call is full"), None);
}

#[test]
fn refusals_are_told_apart() {
    let busy = Refusal::of_http(503, Some("2"), br#"{"code":"server_busy","message":"busy"}"#);
    assert_eq!(busy.kind(), "503 server_busy");
    assert_eq!(busy.retry_after, Some(Duration::from_secs(2)));
    assert!(busy.is_retryable());
    let limited = Refusal::of_http(429, Some("7"), b"not json");
    assert_eq!(limited.kind(), "429 (no code)");
    assert!(limited.is_retryable());
    let full = Refusal::of_message("room_full", "the call is full");
    assert_eq!((full.kind().as_str(), full.is_retryable(), full.retry_after), ("room_full", false, None));
    let busy = Refusal::of_message("server_busy", "the server is busy; try again in 2 s");
    assert!(busy.is_retryable());
    assert_eq!(busy.retry_after, Some(Duration::from_secs(2)));
}
