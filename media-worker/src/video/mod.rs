//! Video pipeline: decode, rotate, scale, blur, encode H.264 + AAC into a faststart MP4.
//!
//! Frames go decoder -> filter graph (rotation, scale to the output box, yuv420p) -> blur stage
//! (holds a few frames back so that detections also cover the frames before them) -> libx264.
//! Audio goes decoder -> filter graph (resample to stereo float planar, 1024-sample frames) -> AAC.
//! Nothing from the input's metadata is copied: no location, device or software tags reach the
//! output, and the rotation is applied to the pixels instead of being carried as a tag.

use std::ops::ControlFlow;
use std::path::Path;

use ffmpeg_next::{format, frame, Rational};

use self::audio::AudioPath;
use self::blur_stage::{detect_in_frame, BlurStage};
use self::input::{open_input, read_packet, VideoInput, MAX_DECODE_ERRORS};
use self::output::{write_header, VideoOutput};
use self::poster::PosterPicker;
use crate::error::{MediaError, Result};
use crate::face::{Detection, FaceDetector};
use crate::pipeline::{FaceBlurConfig, ProcessConfig, ProcessOutput};
use crate::probe::{self, MediaInfo};
use crate::region::Rect;
mod audio;
mod blur_stage;
mod colour;
mod detect_thread;
mod input;
mod output;
mod poster;
mod size_watch;

#[derive(Debug, Clone)]
pub struct VideoConfig {
    /// Output fits in a `max_height`p box: at most `max_height` on the shorter side and
    /// `max_height * 16 / 9` on the longer one, whichever way the video is held.
    pub max_height: u32,
    /// libx264 constant rate factor (lower is better and larger).
    pub crf: u32,
    /// libx264 preset: speed against size.
    pub preset: String,
    /// AAC bit rate, in bits per second.
    pub audio_bitrate: usize,
    /// Decoder and encoder threads; 0 lets FFmpeg use every core.
    pub threads: usize,
    /// Longer side of the thumbnail, in pixels.
    pub thumbnail_max_side: u32,
    /// JPEG quality (1..100) of the poster and the thumbnail.
    pub jpeg_quality: u8,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            max_height: 720,
            crf: 23,
            preset: "veryfast".into(),
            audio_bitrate: 128_000,
            threads: 0,
            thumbnail_max_side: 320,
            jpeg_quality: 85,
        }
    }
}

/// Faces found in one frame, for the preview a teacher checks before publishing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaceFrame {
    pub time_s: f64,
    /// Boxes as fractions (0..1) of the displayed picture, like [`ManualRegion`].
    pub boxes: Vec<Rect>,
    pub scores: Vec<f32>,
}

impl FaceFrame {
    /// Detections in pixels of a `width` x `height` picture, as fractions of it.
    pub fn from_detections(time_s: f64, detections: &[Detection], width: u32, height: u32) -> FaceFrame {
        let (width, height) = (width as f32, height as f32);
        FaceFrame {
            time_s,
            boxes: detections
                .iter()
                .map(|d| Rect::new(d.rect.x / width, d.rect.y / height, d.rect.w / width, d.rect.h / height))
                .collect(),
            scores: detections.iter().map(|d| d.score).collect(),
        }
    }
}

/// Output size for a `width` x `height` displayed picture with sample aspect ratio `sar`: fits in
/// the `max_height`p box, keeps the aspect ratio, even sides as yuv420p and most players need.
pub(crate) fn output_size(width: u32, height: u32, sar: f64, max_height: u32) -> (u32, u32) {
    let display_w = width as f64 * if sar > 0.0 { sar } else { 1.0 };
    let display_h = height as f64;
    let short_max = max_height as f64;
    let long_max = (max_height as f64 * 16.0 / 9.0).round();
    let (box_w, box_h) = if display_w >= display_h { (long_max, short_max) } else { (short_max, long_max) };
    let shrink = (box_w / display_w).min(box_h / display_h).min(1.0);
    let even = |side: f64| (((side * shrink).round() as u32) & !1).max(2);
    (even(display_w), even(display_h))
}

/// Output size for a stored `width` x `height` picture with sample aspect ratio `sar`, shown
/// after a clockwise `rotation`.
fn displayed_output_size(
    width: u32,
    height: u32,
    sar: Rational,
    rotation: u32,
    max_height: u32,
) -> (u32, u32) {
    let sar = if sar.numerator() > 0 && sar.denominator() > 0 { f64::from(sar) } else { 1.0 };
    if rotation % 180 == 90 {
        // After a quarter turn the stored width becomes the height: the sample aspect ratio now
        // stretches the vertical axis, which is the same as shrinking the horizontal one.
        output_size(height, width, 1.0 / sar, max_height)
    } else {
        output_size(width, height, sar, max_height)
    }
}

/// The filters that turn stored pixels into displayed ones, as FFmpeg's CLI inserts them.
pub(crate) fn rotation_filter(rotation: u32) -> Option<&'static str> {
    match rotation {
        90 => Some("transpose=clock"),
        180 => Some("hflip,vflip"),
        270 => Some("transpose=cclock"),
        _ => None,
    }
}

fn time_s(pts: i64, time_base: Rational) -> f64 {
    pts as f64 * f64::from(time_base)
}

/// Decodes the video stream and runs it through the rotate/scale/format graph.
/// Transcodes the video at `input` (already probed as `info`) to an MP4 at `output`.
pub(crate) fn transcode(
    input_path: &Path,
    output_path: &Path,
    info: &MediaInfo,
    config: &ProcessConfig,
    progress: &mut dyn FnMut(f32) -> ControlFlow<()>,
) -> Result<ProcessOutput> {
    let video_config = &config.video;
    let mut input = open_input(input_path)?;
    let mut video_in =
        VideoInput::new(&input, info, &config.limits, video_config.max_height, video_config.threads)?;
    let (time_base, frame_rate) = {
        // VideoInput::new found this stream.
        let stream = input.stream(video_in.stream_idx).expect("video stream");
        (stream.time_base(), stream.avg_frame_rate())
    };
    let mut output = format::output_as(output_path, "mp4").map_err(|source| MediaError::Io {
        path: output_path.to_owned(),
        source: std::io::Error::other(source),
    })?;
    let mut blur_stage = BlurStage::new(config.face_blur.as_ref(), &config.manual_regions)?;
    // Video first: players and tools expect the video as the first track.
    let mut encoder = VideoOutput::new(&mut output, video_in.out_size, time_base, frame_rate, video_config)?;
    let mut audio = AudioPath::new(&input, &mut output, video_config.audio_bitrate, &config.limits)?;
    write_header(&mut output)?;
    let duration_s = info.duration.map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let max_duration_s = config.limits.max_duration.as_secs_f64();

    let mut n_frames_in = 0u64;
    let mut poster = PosterPicker::new(duration_s);
    let mut n_frames_out = 0u64;
    let mut n_read_errors = 0u64;
    let mut last_time_s = 0.0f64;
    let mut last_reported = -1.0f32;
    let mut filtered = frame::Video::empty();

    loop {
        let packet = read_packet(&mut input, &mut n_read_errors)?;
        match &packet {
            Some(packet) if packet.stream() == video_in.stream_idx => video_in.send_packet(packet)?,
            Some(packet) => {
                if let Some(audio) = audio.as_mut().filter(|a| a.stream_idx == packet.stream()) {
                    let time_s = packet.pts().map_or(0.0, |pts| time_s(pts, audio.in_time_base));
                    if time_s > max_duration_s + 1.0 {
                        // A short video with hours of sound would pass the video checks.
                        return Err(MediaError::TooLong {
                            actual: std::time::Duration::from_secs_f64(time_s),
                            limit: config.limits.max_duration,
                        });
                    }
                    audio.send_packet(packet, &mut output)?;
                }
                continue;
            }
            None => video_in.send_eof()?,
        }
        if video_in.n_errors > MAX_DECODE_ERRORS {
            return Err(MediaError::corrupt("too many damaged video packets"));
        }
        while video_in.receive(&mut filtered) {
            let pts = filtered.pts().unwrap_or(0);
            let time_s = video_in.relative_time_s(pts);
            if time_s > max_duration_s + 1.0 {
                // The header lied about the length: still refuse what plays too long.
                return Err(MediaError::TooLong {
                    actual: std::time::Duration::from_secs_f64(time_s),
                    limit: config.limits.max_duration,
                });
            }
            last_time_s = last_time_s.max(time_s);
            n_frames_in += 1;
            blur_stage.push(std::mem::replace(&mut filtered, frame::Video::empty()), time_s)?;
            while let Some((frame_time_s, mut ready)) = blur_stage.pop_ready()? {
                poster.offer(&ready, frame_time_s)?;
                encoder.send(&mut ready, &mut output)?;
                n_frames_out += 1;
            }
            if duration_s > 0.0 {
                let fraction = (time_s / duration_s).clamp(0.0, 0.99) as f32;
                if fraction - last_reported >= 0.01 {
                    last_reported = fraction;
                    if progress(fraction).is_break() {
                        return Err(MediaError::Cancelled);
                    }
                }
            }
        }
        if packet.is_none() {
            break;
        }
    }

    if n_frames_in == 0 {
        return Err(MediaError::corrupt("no video frame could be decoded"));
    }
    blur_stage.finish()?;
    while let Some((frame_time_s, mut ready)) = blur_stage.pop_ready()? {
        poster.offer(&ready, frame_time_s)?;
        encoder.send(&mut ready, &mut output)?;
        n_frames_out += 1;
    }
    encoder.finish(&mut output)?;
    if let Some(audio) = audio.as_mut() {
        audio.finish(&mut output)?;
    }
    output.write_trailer().map_err(MediaError::ffmpeg("finish the MP4"))?;
    tracing::debug!(
        n_frames_out,
        n_read_errors,
        n_video_errors = video_in.n_errors,
        n_audio_errors = audio.as_ref().map_or(0, |a| a.n_errors),
        "video transcoded"
    );

    check_not_truncated(info, last_time_s)?;
    let (width, height) = video_in.out_size;
    let poster_rgb = poster.take()?;
    let poster_jpeg = crate::photo::encode_jpeg(&poster_rgb, video_config.jpeg_quality)?;
    let thumbnail_jpeg = crate::photo::thumbnail_jpeg(
        &poster_rgb,
        video_config.thumbnail_max_side,
        video_config.jpeg_quality,
    )?;
    // The output is complete: a late request to stop changes nothing.
    let _ = progress(1.0);
    Ok(ProcessOutput {
        kind: probe::MediaKind::Video,
        width,
        height,
        duration: info.duration,
        poster_jpeg,
        thumbnail_jpeg,
        n_frames: n_frames_out,
        n_face_detections: blur_stage.n_detections,
        n_blurred_frames: blur_stage.n_blurred_frames,
        faces: std::mem::take(&mut blur_stage.found),
    })
}

/// A file whose frames stop well before its declared end was cut short (an interrupted upload).
fn check_not_truncated(info: &MediaInfo, last_time_s: f64) -> Result<()> {
    let Some(duration) = info.duration else { return Ok(()) };
    let declared_s = duration.as_secs_f64();
    if last_time_s < declared_s * 0.8 - 1.0 {
        return Err(MediaError::corrupt(format!(
            "truncated: frames stop at {last_time_s:.1} s of {declared_s:.1} s"
        )));
    }
    Ok(())
}

/// Keeps the first blurred frame at or after about a second in (the first frames are often black
/// or blurry), falling back to the first frame for very short clips.
/// Runs the detector on every `detect_interval`-th frame of the displayed (rotated, scaled) video,
/// for the preview. Boxes are fractions of the picture.
pub(crate) fn detect_faces(
    path: &Path,
    info: &MediaInfo,
    config: &ProcessConfig,
    face_blur: &FaceBlurConfig,
) -> Result<Vec<FaceFrame>> {
    let mut input = open_input(path)?;
    let mut video_in =
        VideoInput::new(&input, info, &config.limits, config.video.max_height, config.video.threads)?;
    let mut detector = FaceDetector::new(face_blur.face.clone())?;
    let interval = u64::from(face_blur.track.detect_interval.max(1));
    let mut frames = Vec::new();
    let mut frame_idx = 0u64;
    let mut n_errors = 0u64;
    let mut filtered = frame::Video::empty();
    loop {
        let packet = read_packet(&mut input, &mut n_errors)?;
        match &packet {
            Some(packet) if packet.stream() == video_in.stream_idx => video_in.send_packet(packet)?,
            Some(_) => continue,
            None => video_in.send_eof()?,
        }
        while video_in.receive(&mut filtered) {
            if frame_idx.is_multiple_of(interval) {
                let detections = detect_in_frame(&mut detector, &filtered)?;
                let time_s = video_in.relative_time_s(filtered.pts().unwrap_or(0));
                frames.push(FaceFrame::from_detections(
                    time_s,
                    &detections,
                    filtered.width(),
                    filtered.height(),
                ));
            }
            frame_idx += 1;
        }
        if packet.is_none() {
            break;
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests;
