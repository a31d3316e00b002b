//! Media worker: turns the photos and videos teachers upload into files every browser plays, with
//! the children's faces blurred when asked.
//!
//! # Layout
//!
//! - [`probe`]: photo or video by content, size, duration, rotation, codecs; refuses too long, too
//!   large, corrupt and unknown inputs from their headers.
//! - [`video`]: FFmpeg (`ffmpeg-next`) decode, rotate, scale to 720p, blur, H.264/AAC faststart MP4
//!   without metadata, poster and thumbnail.
//! - [`photo`]: `image` decode, EXIF orientation, shrink, blur, JPEG without metadata, thumbnail.
//! - [`face`]: CenterFace through OpenCV DNN. [`track`]: detections every few frames become boxes
//!   on every frame (hold, look-ahead, interpolation, smoothing). [`blur`]: irreversible pixelation
//!   on raw planes. [`region`]: rectangles and manual regions.
//! - [`pipeline`]: [`process`] and [`detect_faces`], the two entry points, and [`ProcessConfig`].
//! - The `media-worker` binary (`main.rs`, `cli.rs`): `process`, `probe` and `faces` on one file,
//!   with a progress bar.
//!
//! # Design
//!
//! The library is synchronous and blocking: FFmpeg and OpenCV calls block. The server runs it on
//! `spawn_blocking` or its own threads, behind a semaphore. Errors are one [`MediaError`] enum
//! whose [`MediaError::code`] is stable.
//!
//! # Not here
//!
//! No job queue, storage, HTTP or database: those belong to `signaling`. No HEIC/HEIF photos
//! (neither `image` nor FFmpeg 5.1 reads them). No ICC profiles kept: photos are re-encoded as plain sRGB-assumed
//! JPEG. No hardware encoders. No horizontal flips from display matrices (only rotations).

pub mod blur;
pub mod child;
pub mod container;
pub mod error;
pub mod face;
pub mod metrics;
pub mod original;
pub mod photo;
pub mod pipeline;
pub mod probe;
pub mod queue;
pub mod region;
pub mod sandbox;
pub mod store;
pub mod track;
pub mod video;
pub mod worker;

use std::path::PathBuf;

pub use error::{MediaError, Result};
pub use face::{FaceConfig, FaceDetector};
pub use photo::PhotoConfig;
pub use pipeline::{detect_faces, process, FaceBlurConfig, ProcessConfig, ProcessOutput};
pub use probe::{probe, MediaInfo, MediaKind, ProbeLimits};
pub use region::{ManualRegion, Rect};
pub use track::TrackConfig;
pub use video::{FaceFrame, VideoConfig};

/// `$KLASS_CACHE`, else `$HOME/.cache/klass`: where `scripts/install-deps.sh` puts the face model
/// and test media.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KLASS_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("klass")
}

/// Registers FFmpeg's formats and codecs once, and keeps its log quiet: errors in user files are
/// reported through [`MediaError`], not printed.
pub(crate) fn init_ffmpeg() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // ffmpeg::init only fails on FFmpeg builds older than the ones this crate links against.
        if let Err(err) = ffmpeg_next::init() {
            tracing::error!(cause = %err, "ffmpeg init failed");
        }
        ffmpeg_next::log::set_level(ffmpeg_next::log::Level::Fatal);
    });
}
