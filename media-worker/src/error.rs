//! The one error type of the library. Each variant is a cause a caller can match on, and
//! [`MediaError::code`] gives it a stable string that the API turns into an error code.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The input file could not be opened or read, or an output could not be written.
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a photo or video format this worker reads (a PDF, HEIC, a text file...).
    #[error("unsupported media: {reason}")]
    Unsupported { reason: String },
    /// The file claims a known format but cannot be decoded: damaged, truncated or empty.
    #[error("corrupt media: {reason}")]
    Corrupt { reason: String },
    /// The video lasts longer than the limit the caller passed in.
    #[error("video lasts {actual_s:.1} s, more than the limit of {limit_s:.0} s", actual_s = actual.as_secs_f64(), limit_s = limit.as_secs_f64())]
    TooLong { actual: Duration, limit: Duration },
    /// The declared picture size is over the limit; it is refused from the header, before decoding.
    #[error("picture of {width}x{height} is larger than allowed ({max_pixels} pixels, {max_side} per side)")]
    TooLarge { width: u32, height: u32, max_side: u32, max_pixels: u64 },
    /// A limit checked on decoded data was exceeded: a frame larger than the header said, too many
    /// frames per second or in all, too many streams, audio channels or samples per second.
    #[error("over a limit: {reason}")]
    LimitExceeded { reason: String },
    /// An allocation was refused: the job's memory limit is smaller than what the file needs.
    #[error("out of memory: {reason}")]
    OutOfMemory { reason: String },
    /// Face blur was asked for but the CenterFace model file is not there. Blurring nothing quietly
    /// would publish children's faces, so the job fails instead.
    #[error("face model not found at {path}: run `bash scripts/install-deps.sh` or set KLASS_FACE_MODEL")]
    FaceModelMissing { path: PathBuf },
    /// The face model file exists but OpenCV cannot load or run it.
    #[error("face detection failed: {0}")]
    FaceDetection(#[from] opencv::Error),
    /// This FFmpeg build lacks an encoder or filter the pipeline needs (libx264, aac, buffersink):
    /// a deployment problem, not the input's.
    #[error("FFmpeg component {name} is not available in this build")]
    FfmpegComponentMissing { name: &'static str },
    /// FFmpeg failed while writing the output, for a reason that is not the input's fault.
    #[error("ffmpeg failed to {action}: {source}")]
    Ffmpeg {
        action: &'static str,
        #[source]
        source: ffmpeg_next::Error,
    },
    /// Encoding a JPEG (poster, thumbnail, photo) failed.
    #[error("image encoding failed: {0}")]
    ImageEncode(#[source] image::ImageError),
    /// The caller asked to stop through the progress callback; the partial output was removed.
    #[error("cancelled")]
    Cancelled,
    /// A configuration value is out of range (zero size, zero interval...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl MediaError {
    /// A stable, machine-readable code. Codes never change meaning once shipped. The codes of input
    /// errors are those of `models::ErrorCode` (`unsupported_media`, `corrupt_media`,
    /// `video_too_long`, `media_too_large`); the others are the server's problem and the API
    /// answers them as `internal`.
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::Io { .. } => "media_io",
            MediaError::Unsupported { .. } => "unsupported_media",
            MediaError::Corrupt { .. } => "corrupt_media",
            MediaError::TooLong { .. } => "video_too_long",
            MediaError::TooLarge { .. } | MediaError::LimitExceeded { .. } => "media_too_large",
            MediaError::OutOfMemory { .. } => "media_memory_limit",
            MediaError::FaceModelMissing { .. } => "face_model_missing",
            MediaError::FaceDetection(_) => "face_detection_failed",
            MediaError::FfmpegComponentMissing { .. } => "ffmpeg_component_missing",
            MediaError::Ffmpeg { .. } => "media_internal",
            MediaError::ImageEncode(_) => "media_internal",
            MediaError::Cancelled => "cancelled",
            MediaError::InvalidConfig(_) => "invalid_config",
        }
    }

    /// Whether the input (the user's file) is at fault, as opposed to the server. A job queue
    /// retries only the latter; the API answers the former with a 4xx.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            MediaError::Unsupported { .. }
                | MediaError::Corrupt { .. }
                | MediaError::TooLong { .. }
                | MediaError::TooLarge { .. }
                | MediaError::LimitExceeded { .. }
                | MediaError::OutOfMemory { .. }
        )
    }

    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        MediaError::Corrupt { reason: reason.into() }
    }

    pub(crate) fn ffmpeg(action: &'static str) -> impl FnOnce(ffmpeg_next::Error) -> MediaError {
        move |source| MediaError::Ffmpeg { action, source }
    }
}

pub type Result<T, E = MediaError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn check(err: MediaError, code: &str, input_error: bool) {
        assert_eq!((err.code(), err.is_input_error()), (code, input_error), "{err}");
    }

    #[test]
    fn codes_and_blame() {
        check(MediaError::Unsupported { reason: "pdf".into() }, "unsupported_media", true);
        check(MediaError::corrupt("cut"), "corrupt_media", true);
        let (actual, limit) = (Duration::from_secs(660), Duration::from_secs(600));
        check(MediaError::TooLong { actual, limit }, "video_too_long", true);
        let too_large =
            MediaError::TooLarge { width: 30_000, height: 30_000, max_side: 16_384, max_pixels: 1 };
        check(too_large, "media_too_large", true);
        check(MediaError::FaceModelMissing { path: "m.onnx".into() }, "face_model_missing", false);
        check(MediaError::Cancelled, "cancelled", false);
    }
}
