use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{base64, file_name, json_line, unix_ms, Record};
use crate::proto::MediaKind;

fn record(kind: MediaKind, rid: Option<&str>, payload: &[u8]) -> Record {
    Record {
        room: "class-1".into(),
        participant: "p-1".into(),
        track: "p-1-0".into(),
        kind,
        rid: rid.map(str::to_owned),
        ssrc: 1234,
        pt: 96,
        seq: 70_001,
        ts: 90_000,
        marker: true,
        red: false,
        receivers: 2,
        arrival: Instant::now(),
        payload: Arc::from(payload),
    }
}

#[test]
fn a_record_is_one_json_line() {
    let video = record(MediaKind::Video, Some("f"), &[0x90, 0x90, 0x80, 0x01, 0x02]);
    assert_eq!(
        json_line(&video, 1_764_541_234_567),
        "{\"t_ms\":1764541234567,\"room\":\"class-1\",\"participant\":\"p-1\",\"track\":\"p-1-0\",\"kind\":\"video\",\"rid\":\"f\",\
         \"ssrc\":1234,\"pt\":96,\"seq\":70001,\"ts\":90000,\"marker\":true,\"red\":false,\"receivers\":2,\
         \"payload\":\"kJCAAQI=\"}\n"
    );
    let mut audio = record(MediaKind::Audio, None, &[]);
    audio.red = true;
    audio.marker = false;
    audio.participant = "a\"b\\c\n".into();
    let line = json_line(&audio, 5);
    assert!(line.contains("\"participant\":\"a\\\"b\\\\c\\u000a\""), "{line}");
    assert!(line.contains("\"kind\":\"audio\",\"rid\":null,"), "{line}");
    assert!(line.contains("\"marker\":false,\"red\":true,"), "{line}");
    assert!(line.ends_with("\"payload\":\"\"}\n"), "{line}");
}

#[test]
fn payloads_are_standard_base64() {
    // RFC 4648 §10.
    for (input, expected) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), expected);
    }
    assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
}

#[test]
fn one_file_per_track_and_layer() {
    assert_eq!(file_name("p-1-0", Some("q")), "p-1-0_q.jsonl");
    assert_eq!(file_name("p-1-1", None), "p-1-1_x.jsonl");
    assert_eq!(file_name("../x", Some("a/b")), "___x_a_b.jsonl");
}

#[test]
fn arrivals_become_wall_clock_time() {
    let anchor = Instant::now();
    let at = |ms: i64| {
        if ms >= 0 {
            anchor + Duration::from_millis(ms as u64)
        } else {
            anchor - Duration::from_millis(ms.unsigned_abs())
        }
    };
    assert_eq!(unix_ms(at(250), (anchor, 1_000_000)), 1_000_250);
    assert_eq!(unix_ms(at(-40), (anchor, 1_000_000)), 999_960);
    assert_eq!(unix_ms(anchor, (anchor, 1_000_000)), 1_000_000);
}
