//! The entry points: process one file, photo or video chosen by its bytes, or list its faces.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::error::{MediaError, Result};
use crate::face::FaceConfig;
use crate::photo::PhotoConfig;
use crate::probe::{self, MediaInfo, MediaKind, ProbeLimits};
use crate::region::ManualRegion;
use crate::track::TrackConfig;
use crate::video::{self, FaceFrame, VideoConfig};

/// Automatic face blur: which detector, and how detections become boxes over time.
#[derive(Debug, Clone, Default)]
pub struct FaceBlurConfig {
    pub face: FaceConfig,
    pub track: TrackConfig,
}

/// Everything one run of the pipeline needs. Each component owns its part and its defaults.
#[derive(Debug, Clone, Default)]
pub struct ProcessConfig {
    pub limits: ProbeLimits,
    pub video: VideoConfig,
    pub photo: PhotoConfig,
    /// `None`: no automatic face blur (manual regions are still applied).
    pub face_blur: Option<FaceBlurConfig>,
    pub manual_regions: Vec<ManualRegion>,
}

impl ProcessConfig {
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: &str| Err(MediaError::InvalidConfig(what.to_owned()));
        if self.video.max_height < 16 || self.photo.max_side < 16 {
            return invalid("output sizes must be at least 16 pixels");
        }
        if self.video.thumbnail_max_side == 0 || self.photo.thumbnail_max_side == 0 {
            return invalid("thumbnail sizes must be positive");
        }
        if let Some(face_blur) = &self.face_blur {
            if face_blur.track.detect_interval == 0 {
                return invalid("detect_interval must be at least 1");
            }
            if face_blur.track.enlarge < 1.0 {
                return invalid("boxes may only be enlarged (enlarge >= 1)");
            }
            if face_blur.face.detect_max_side < 32 || face_blur.face.blocks_across == 0 {
                return invalid("detect_max_side must be at least 32 and blocks_across positive");
            }
        }
        for region in &self.manual_regions {
            if !(region.width > 0.0 && region.height > 0.0 && region.start_s <= region.end_s) {
                return invalid("manual regions need a positive size and start <= end");
            }
        }
        Ok(())
    }
}

/// What a run produced besides the output file.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessOutput {
    pub kind: MediaKind,
    /// Size of the published picture or frames.
    pub width: u32,
    pub height: u32,
    #[serde(rename = "duration_s", serialize_with = "crate::probe::serialize_seconds")]
    pub duration: Option<Duration>,
    /// JPEG of a blurred frame about a second in; empty for photos (the photo is its own poster).
    #[serde(skip)]
    pub poster_jpeg: Vec<u8>,
    #[serde(skip)]
    pub thumbnail_jpeg: Vec<u8>,
    pub n_frames: u64,
    /// Faces the detector reported (counted on each detection frame).
    pub n_face_detections: u64,
    /// Frames in which at least one region was blurred.
    pub n_blurred_frames: u64,
    /// What the detector found on each detection frame, for the preview; empty without face blur.
    #[serde(skip)]
    pub faces: Vec<FaceFrame>,
}

/// Probes `input`, then writes the publishable version to `output`: an MP4 for a video, a JPEG for
/// a photo. `progress` gets fractions from 0 to 1, about every percent; returning
/// `ControlFlow::Break` stops the work with [`MediaError::Cancelled`] (a job whose lease was lost,
/// a worker shutting down). Blocks: call it from a blocking thread.
pub fn process(
    input: &Path,
    output: &Path,
    config: &ProcessConfig,
    progress: &mut dyn FnMut(f32) -> ControlFlow<()>,
) -> Result<(MediaInfo, ProcessOutput)> {
    config.validate()?;
    let info = probe::probe(input, &config.limits)?;
    let result = match info.kind {
        MediaKind::Photo => {
            let result = crate::photo::process(input, output, &info, config)?;
            // The photo is done: nothing is left to cancel.
            let _ = progress(1.0);
            result
        }
        MediaKind::Video => video::transcode(input, output, &info, config, progress).inspect_err(|_| {
            // A half-written MP4 must not be mistaken for a result.
            let _ = std::fs::remove_file(output);
        })?,
    };
    Ok((info, result))
}

/// Faces found in `input`, for the preview before publishing: one entry per detection frame of a
/// video (every `detect_interval` frames), a single entry at time 0 for a photo. Boxes are
/// fractions of the displayed picture, the same space as [`ManualRegion`].
pub fn detect_faces(input: &Path, config: &ProcessConfig) -> Result<Vec<FaceFrame>> {
    config.validate()?;
    let face_blur = config.face_blur.clone().unwrap_or_default();
    let info = probe::probe(input, &config.limits)?;
    match info.kind {
        MediaKind::Video => video::detect_faces(input, &info, config, &face_blur),
        MediaKind::Photo => {
            let picture = crate::photo::decode_upright(input, &info, config)?.to_rgb8();
            let detections = crate::photo::detect_rgb(&picture, config, &face_blur)?;
            Ok(vec![FaceFrame::from_detections(0.0, &detections, picture.width(), picture.height())])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(change: impl FnOnce(&mut ProcessConfig), valid: bool) {
        let mut config =
            ProcessConfig { face_blur: Some(FaceBlurConfig::default()), ..ProcessConfig::default() };
        change(&mut config);
        assert_eq!(config.validate().is_ok(), valid, "{config:?}");
    }

    #[test]
    fn configurations_are_checked_before_any_work() {
        check(|_| {}, true);
        check(|c| c.video.max_height = 0, false);
        check(|c| c.face_blur.as_mut().into_iter().for_each(|b| b.track.detect_interval = 0), false);
        check(|c| c.face_blur.as_mut().into_iter().for_each(|b| b.track.enlarge = 0.5), false);
        let region = ManualRegion { x: 0.1, y: 0.1, width: 0.2, height: 0.2, start_s: 2.0, end_s: 1.0 };
        check(|c| c.manual_regions.push(region), false);
    }
}
