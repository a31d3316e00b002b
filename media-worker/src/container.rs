//! The one place where FFmpeg opens a user's file.
//!
//! FFmpeg's defaults would let a 32-byte upload open other files: an HLS or DASH playlist, an
//! `ffconcat` list (which may name itself and recurse until the stack overflows), an image-sequence
//! pattern, `tee:`, `subfile:` or a URL. So every input is opened with two allowlists: the
//! container formats that phones and cameras write, and the one protocol `file`. Both are passed
//! to `avformat_open_input` (so that FFmpeg refuses other demuxers and every nested open of another
//! protocol), and the demuxer that FFmpeg picked is checked again here.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format;

use crate::error::{MediaError, Result};

/// Demuxers we open, by their first FFmpeg name: MP4/MOV/3GP (`mov,mp4,m4a,3gp,3g2,mj2`),
/// Matroska/WebM (`matroska,webm`), AVI, MPEG-TS. None of them opens another file by default
/// (`mov`'s external data references stay off: `enable_drefs` is 0).
pub const VIDEO_FORMATS: &[&str] = &["mov", "matroska", "avi", "mpegts"];

/// The only protocol an input may use: the local file the worker was given.
const PROTOCOLS: &str = "file";

/// At most this many streams in a container: a phone video has two to five (video, audio,
/// timed metadata). Thousands of streams are only there to exhaust memory.
pub const MAX_STREAMS: usize = 32;

/// Opens `path` for reading with the allowlists. A format outside them is
/// [`MediaError::Unsupported`]; a known container that FFmpeg cannot read is
/// [`MediaError::Corrupt`] when `looks_like_video` says its signature is one we know.
pub fn open(path: &Path, looks_like_video: bool) -> Result<format::context::Input> {
    crate::init_ffmpeg();
    let mut options = ffmpeg::Dictionary::new();
    options.set("format_whitelist", &VIDEO_FORMATS.join(","));
    options.set("protocol_whitelist", PROTOCOLS);
    // The `file:` prefix keeps a path that contains a colon from being read as a protocol name.
    let url = format!("file:{}", path.display());
    let input = format::input_with_dictionary(&url, options).map_err(|err| {
        if looks_like_video {
            MediaError::corrupt(format!("FFmpeg cannot open the container: {err}"))
        } else {
            MediaError::Unsupported {
                reason: format!("not a photo or video format we accept ({err}); accepted videos are MP4, MOV, 3GP, Matroska, WebM, AVI and MPEG-TS"),
            }
        }
    })?;
    check_demuxer(input.format().name())?;
    if input.nb_streams() as usize > MAX_STREAMS {
        return Err(MediaError::LimitExceeded {
            reason: format!("{} streams in the container (at most {MAX_STREAMS})", input.nb_streams()),
        });
    }
    Ok(input)
}

/// Refuses a demuxer outside [`VIDEO_FORMATS`], whatever FFmpeg's own check let through.
pub fn check_demuxer(name: &str) -> Result<()> {
    let first = name.split(',').next().unwrap_or_default();
    if VIDEO_FORMATS.contains(&first) {
        Ok(())
    } else {
        Err(MediaError::Unsupported { reason: format!("the {name} format is not accepted") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_phone_containers_pass() {
        for name in ["mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts"] {
            assert!(check_demuxer(name).is_ok(), "{name}");
        }
        for name in ["hls", "dash", "concat", "image2", "tee", "mpjpeg", "gif", "lavfi", "", "movx"] {
            assert!(matches!(check_demuxer(name), Err(MediaError::Unsupported { .. })), "{name}");
        }
    }
}
