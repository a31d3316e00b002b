//! Test-only, compiled into debug builds alone: a copy of every packet the SFU forwards from a
//! publisher, written to files, so that the browser tests can check what the SFU sees in the
//! payloads (`signaling/tests/browser/tap.mjs`: clear calls decode as VP8 and Opus, end-to-end
//! encrypted calls must not). Release builds, the ones shipped, contain none of it.
//!
//! On when `KLASS_SFU_TEST_TAP=<directory>` is set (read once, at the first forwarded packet).
//! One JSON line per incoming packet that was written to at least one receiver, in one file per
//! published track and layer (`<track>_<rid or "x">.jsonl`):
//!
//! ```text
//! {"t_ms":1764541234567,"room":"class-1","participant":"p1","track":"p1-0","kind":"video",
//!  "rid":"f","ssrc":1234,"pt":96,"seq":70001,"ts":90000,"marker":true,"red":false,
//!  "receivers":2,"payload":"kJA..."}
//! ```
//!
//! `t_ms`: arrival, Unix milliseconds. `seq`: the extended sequence number (no wrap). `payload`:
//! base64 of the payload as the publisher sent it, RED (`"red":true`) included, even when some
//! receiver got only its primary. `receivers`: how many receive slots it was written to.
//!
//! The media thread never waits on it: records go to a writer thread through a bounded channel,
//! and a record that does not fit is dropped, counted in `tap-dropped.json` and logged.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use str0m::media::Rid;
use tracing::{info, warn};

use crate::proto::MediaKind;

pub const ENV_VAR: &str = "KLASS_SFU_TEST_TAP";
/// About 10 s of a small call's packets: the writer only falls behind if the disk stalls.
const CHANNEL_CAPACITY: usize = 16_384;

/// One forwarded packet, as the room's packet path has it.
pub struct Forwarded<'a> {
    pub room: &'a str,
    pub participant: &'a str,
    pub track: &'a str,
    pub kind: MediaKind,
    pub rid: Option<Rid>,
    pub ssrc: u32,
    pub pt: u8,
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    pub red: bool,
    pub receivers: u64,
    pub arrival: Instant,
    pub payload: &'a Arc<[u8]>,
}

/// What goes to the writer thread: owned, the payload shared (no copy on the media thread).
struct Record {
    room: String,
    participant: String,
    track: String,
    kind: MediaKind,
    rid: Option<String>,
    ssrc: u32,
    pt: u8,
    seq: u64,
    ts: u32,
    marker: bool,
    red: bool,
    receivers: u64,
    arrival: Instant,
    payload: Arc<[u8]>,
}

struct Tap {
    sender: SyncSender<Record>,
    dropped: Arc<AtomicU64>,
}

static TAP: OnceLock<Option<Tap>> = OnceLock::new();

/// Hands one forwarded packet to the tap, if it is on. Never blocks.
pub fn record(packet: Forwarded<'_>) {
    let Some(tap) = TAP.get_or_init(start).as_ref() else { return };
    let record = Record {
        room: packet.room.to_owned(),
        participant: packet.participant.to_owned(),
        track: packet.track.to_owned(),
        kind: packet.kind,
        rid: packet.rid.map(|rid| rid.to_string()),
        ssrc: packet.ssrc,
        pt: packet.pt,
        seq: packet.seq,
        ts: packet.ts,
        marker: packet.marker,
        red: packet.red,
        receivers: packet.receivers,
        arrival: packet.arrival,
        payload: packet.payload.clone(),
    };
    match tap.sender.try_send(record) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            let n_dropped = tap.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged at 1, 2, 4, 8...: a stalled writer must not flood the log either.
            if n_dropped.is_power_of_two() {
                warn!(n_dropped, "test tap: writer behind, records dropped");
            }
        }
    }
}

fn start() -> Option<Tap> {
    let dir = PathBuf::from(std::env::var_os(ENV_VAR)?);
    if let Err(err) = std::fs::create_dir_all(&dir) {
        warn!(cause = %err, dir = %dir.display(), "test tap: cannot create its directory, off");
        return None;
    }
    let (sender, receiver) = sync_channel(CHANNEL_CAPACITY);
    let dropped = Arc::new(AtomicU64::new(0));
    let writer_dropped = dropped.clone();
    let spawned = std::thread::Builder::new()
        .name("sfu-test-tap".into())
        .spawn(move || write_loop(&dir, receiver, &writer_dropped));
    if let Err(err) = spawned {
        warn!(cause = %err, "test tap: no writer thread, off");
        return None;
    }
    info!(var = ENV_VAR, "test tap on: forwarded packets are written to files (debug build only)");
    Some(Tap { sender, dropped })
}

fn write_loop(dir: &Path, receiver: Receiver<Record>, dropped: &AtomicU64) {
    // Arrivals are the media thread's `Instant`s; this converts them to wall-clock time, which
    // the tests compare with their own.
    let anchor = (Instant::now(), unix_ms_now());
    let mut files: HashMap<String, BufWriter<File>> = HashMap::new();
    let mut dropped_written = 0;
    // Ends when the sender goes, with the process.
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        while let Some(record) = next {
            let name = file_name(&record.track, record.rid.as_deref());
            let file = match files.entry(name) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => match File::create(dir.join(entry.key())) {
                    Ok(file) => entry.insert(BufWriter::new(file)),
                    Err(err) => {
                        warn!(cause = %err, file = %entry.key(), "test tap: cannot create a file");
                        next = receiver.try_recv().ok();
                        continue;
                    }
                },
            };
            let line = json_line(&record, unix_ms(record.arrival, anchor));
            if let Err(err) = file.write_all(line.as_bytes()) {
                warn!(cause = %err, "test tap: write failed");
            }
            next = receiver.try_recv().ok();
        }
        // Flushed after each burst, so that a test reads complete lines while the call goes on.
        for file in files.values_mut() {
            let _ = file.flush();
        }
        let n_dropped = dropped.load(Ordering::Relaxed);
        if n_dropped != dropped_written {
            let _ = std::fs::write(dir.join("tap-dropped.json"), format!("{{\"dropped\":{n_dropped}}}\n"));
            dropped_written = n_dropped;
        }
    }
}

fn unix_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Wall-clock milliseconds of `at`, given one instant whose wall-clock time is known.
fn unix_ms(at: Instant, (anchor, anchor_unix_ms): (Instant, u64)) -> u64 {
    match at.checked_duration_since(anchor) {
        Some(after) => anchor_unix_ms + after.as_millis() as u64,
        None => anchor_unix_ms.saturating_sub(anchor.duration_since(at).as_millis() as u64),
    }
}

fn file_name(track: &str, rid: Option<&str>) -> String {
    let safe = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
    };
    format!("{}_{}.jsonl", safe(track), rid.map_or_else(|| "x".to_owned(), safe))
}

fn json_line(record: &Record, t_ms: u64) -> String {
    let kind = match record.kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    };
    let rid = record.rid.as_deref().map_or_else(|| "null".to_owned(), json_string);
    format!(
        "{{\"t_ms\":{t_ms},\"room\":{},\"participant\":{},\"track\":{},\"kind\":\"{kind}\",\"rid\":{rid},\"ssrc\":{},\
         \"pt\":{},\"seq\":{},\"ts\":{},\"marker\":{},\"red\":{},\"receivers\":{},\"payload\":\"{}\"}}\n",
        json_string(&record.room),
        json_string(&record.participant),
        json_string(&record.track),
        record.ssrc,
        record.pt,
        record.seq,
        record.ts,
        record.marker,
        record.red,
        record.receivers,
        base64(&record.payload),
    )
}

/// Ids keep to a safe alphabet; this escapes whatever else anyway.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Standard base64 with padding (RFC 4648 §4); the crate has no base64 dependency for this.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 0x3f] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
