//! Originals without metadata. The uploaded file is kept so that a teacher can ask for more blur
//! later, but phones write the place and time of a shot into it (EXIF GPS, QuickTime `©xyz`,
//! timed location tracks). Before anything else, a job rewrites the original without them:
//! videos are remuxed (stream copy, lossless) keeping only their video and audio streams and the
//! rotation; JPEG, PNG and WebP photos lose every metadata segment but the orientation, byte for
//! byte otherwise; HEIC photos, whose metadata cannot be cut out of the item boxes safely, become
//! a high-quality upright JPEG. The job then processes this clean original, so a clean original
//! that no longer decodes cannot be stored unnoticed.

mod photo;
mod video;

use std::path::Path;

use crate::error::{MediaError, Result};
use crate::probe::{MediaInfo, MediaKind, ProbeLimits};

pub use photo::strip_photo_metadata;

/// JPEG quality of a HEIF original turned into JPEG: visually lossless.
const HEIF_ORIGINAL_QUALITY: u8 = 95;

/// Writes `input` (probed as `info`) to `output` without metadata.
pub fn sanitize(input: &Path, output: &Path, info: &MediaInfo, limits: &ProbeLimits) -> Result<()> {
    let written = match info.kind {
        MediaKind::Video => video::remux_without_metadata(input, output),
        MediaKind::Photo if info.format == "heif" => heif_to_jpeg(input, output, limits),
        MediaKind::Photo => {
            let bytes =
                std::fs::read(input).map_err(|source| MediaError::Io { path: input.to_owned(), source })?;
            let clean = strip_photo_metadata(&bytes, &info.format)?;
            std::fs::write(output, clean).map_err(|source| MediaError::Io { path: output.to_owned(), source })
        }
    };
    if written.is_err() {
        let _ = std::fs::remove_file(output);
    }
    written
}

fn heif_to_jpeg(input: &Path, output: &Path, limits: &ProbeLimits) -> Result<()> {
    let bytes = std::fs::read(input).map_err(|source| MediaError::Io { path: input.to_owned(), source })?;
    let picture = crate::photo::heif::decode(&bytes, limits)?.to_rgb8();
    let jpeg = crate::photo::encode_jpeg(&picture, HEIF_ORIGINAL_QUALITY)?;
    std::fs::write(output, jpeg).map_err(|source| MediaError::Io { path: output.to_owned(), source })
}
