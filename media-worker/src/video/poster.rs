//! The poster frame of a video and the conversion of a frame to RGB.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::{format, frame};

use crate::error::{MediaError, Result};

pub(super) struct PosterPicker {
    pub(super) target_s: f64,
    pub(super) rgb: Option<image::RgbImage>,
    pub(super) at_target: bool,
}

impl PosterPicker {
    pub(super) fn new(duration_s: f64) -> Self {
        Self { target_s: (duration_s / 3.0).min(1.0), rgb: None, at_target: false }
    }

    pub(super) fn offer(&mut self, frame: &frame::Video, time_s: f64) -> Result<()> {
        if self.at_target || (self.rgb.is_some() && time_s < self.target_s) {
            return Ok(());
        }
        self.rgb = Some(frame_to_rgb(frame)?);
        self.at_target = time_s >= self.target_s;
        Ok(())
    }

    pub(super) fn take(&mut self) -> Result<image::RgbImage> {
        self.rgb.take().ok_or_else(|| MediaError::corrupt("no frame for the poster"))
    }
}

pub(super) fn frame_to_rgb(frame: &frame::Video) -> Result<image::RgbImage> {
    let (width, height) = (frame.width(), frame.height());
    let mut scaler = ffmpeg::software::scaling::Context::get(
        frame.format(),
        width,
        height,
        format::Pixel::RGB24,
        width,
        height,
        ffmpeg::software::scaling::Flags::BILINEAR,
    )
    .map_err(MediaError::ffmpeg("create a scaler for the poster"))?;
    let mut rgb = frame::Video::empty();
    scaler.run(frame, &mut rgb).map_err(MediaError::ffmpeg("convert the poster to RGB"))?;
    let stride = rgb.stride(0);
    let row_bytes = width as usize * 3;
    let mut packed = Vec::with_capacity(row_bytes * height as usize);
    for row in 0..height as usize {
        packed.extend_from_slice(&rgb.data(0)[row * stride..row * stride + row_bytes]);
    }
    // `packed` holds exactly width * height * 3 bytes.
    Ok(image::RgbImage::from_raw(width, height, packed).expect("buffer of the right size"))
}
