//! Photo pipeline: decode with `image` (JPEG, PNG, WebP) or libheif ([`heif`]: HEIC/HEIF), apply
//! the orientation, shrink, blur faces and re-encode as JPEG. Re-encoding from pixels is what
//! removes EXIF, XMP and GPS: the encoder writes none of the input's metadata.

pub(crate) mod heif;

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, RgbImage};

use crate::blur::{self, Plane};
use crate::error::{MediaError, Result};
use crate::face::FaceDetector;
use crate::pipeline::{ProcessConfig, ProcessOutput};
use crate::probe::{MediaInfo, MediaKind};
use crate::region::Rect;

#[derive(Debug, Clone)]
pub struct PhotoConfig {
    /// Longer side of the published photo, in pixels; larger photos are shrunk.
    pub max_side: u32,
    /// Longer side of the thumbnail, in pixels.
    pub thumbnail_max_side: u32,
    pub jpeg_quality: u8,
    /// Longer side the detector sees. Larger than for video: one inference per photo is cheap,
    /// and a class photo holds many small faces.
    pub detect_max_side: u32,
}

impl Default for PhotoConfig {
    fn default() -> Self {
        Self { max_side: 2560, thumbnail_max_side: 320, jpeg_quality: 85, detect_max_side: 1280 }
    }
}

/// Decodes the photo at `path` (probed as `info`), already turned upright.
pub(crate) fn decode_upright(path: &Path, info: &MediaInfo, config: &ProcessConfig) -> Result<DynamicImage> {
    if info.format == "heif" {
        let bytes = std::fs::read(path).map_err(|source| MediaError::Io { path: path.to_owned(), source })?;
        return heif::decode(&bytes, &config.limits);
    }
    let file = File::open(path).map_err(|source| MediaError::Io { path: path.to_owned(), source })?;
    let mut reader = image::ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|source| MediaError::Io { path: path.to_owned(), source })?;
    if !reader.format().is_some_and(crate::probe::is_photo_format) {
        return Err(MediaError::Unsupported { reason: "not a JPEG, PNG, WebP or HEIF photo".into() });
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(config.limits.max_side);
    limits.max_image_height = Some(config.limits.max_side);
    // Decoded RGBA at 16 bits per channel at most, plus room for the decoder's own buffers.
    limits.max_alloc = Some(config.limits.max_photo_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|err| image_error(err, info, &config.limits))?;
    // A missing or unreadable orientation tag means the pixels are stored upright.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut picture =
        DynamicImage::from_decoder(decoder).map_err(|err| image_error(err, info, &config.limits))?;
    picture.apply_orientation(orientation);
    Ok(picture)
}

fn image_error(err: image::ImageError, info: &MediaInfo, limits: &crate::probe::ProbeLimits) -> MediaError {
    match err {
        image::ImageError::Limits(limit)
            if matches!(limit.kind(), image::error::LimitErrorKind::InsufficientMemory) =>
        {
            MediaError::OutOfMemory { reason: limit.to_string() }
        }
        image::ImageError::Limits(_) => MediaError::TooLarge {
            width: info.width,
            height: info.height,
            max_side: limits.max_side,
            max_pixels: limits.max_photo_pixels,
        },
        image::ImageError::Unsupported(err) => MediaError::Unsupported { reason: err.to_string() },
        image::ImageError::IoError(err) => MediaError::corrupt(format!("the photo is cut short: {err}")),
        other => MediaError::corrupt(other.to_string()),
    }
}

pub(crate) fn process(
    input_path: &Path,
    output_path: &Path,
    info: &MediaInfo,
    config: &ProcessConfig,
) -> Result<ProcessOutput> {
    let picture = decode_upright(input_path, info, config)?;
    let photo_config = &config.photo;
    let picture = if picture.width().max(picture.height()) > photo_config.max_side {
        picture.resize(photo_config.max_side, photo_config.max_side, image::imageops::FilterType::CatmullRom)
    } else {
        picture
    };
    // Transparent pixels keep whatever color they hide; JPEG has no alpha.
    let mut rgb = picture.to_rgb8();
    let (width, height) = rgb.dimensions();

    let mut boxes: Vec<Rect> = config.manual_regions.iter().map(|r| r.to_rect(width, height)).collect();
    let mut n_face_detections = 0u64;
    let mut found = Vec::new();
    let blocks_across =
        config.face_blur.as_ref().map_or(blur::DEFAULT_BLOCKS_ACROSS, |c| c.face.blocks_across);
    if let Some(face_blur) = &config.face_blur {
        let faces = detect_rgb(&rgb, config, face_blur)?;
        n_face_detections = faces.len() as u64;
        found.push(crate::video::FaceFrame::from_detections(0.0, &faces, width, height));
        boxes.extend(faces.iter().map(|d| d.rect.enlarged(face_blur.track.enlarge)));
    }
    if !boxes.is_empty() {
        let stride = width as usize * 3;
        let mut plane = Plane { data: &mut rgb, stride, width, height, channels: 3 };
        blur::blur_rgb(&mut plane, &boxes, blocks_across);
    }

    let jpeg = encode_jpeg(&rgb, photo_config.jpeg_quality)?;
    std::fs::write(output_path, &jpeg)
        .map_err(|source| MediaError::Io { path: output_path.to_owned(), source })?;
    let thumbnail_jpeg = thumbnail_jpeg(&rgb, photo_config.thumbnail_max_side, photo_config.jpeg_quality)?;
    Ok(ProcessOutput {
        kind: MediaKind::Photo,
        width,
        height,
        duration: None,
        poster_jpeg: Vec::new(),
        thumbnail_jpeg,
        n_frames: 1,
        n_face_detections,
        n_blurred_frames: u64::from(!boxes.is_empty()),
        faces: found,
    })
}

/// Faces in an RGB photo, in its pixels.
pub(crate) fn detect_rgb(
    rgb: &RgbImage,
    config: &ProcessConfig,
    face_blur: &crate::pipeline::FaceBlurConfig,
) -> Result<Vec<crate::face::Detection>> {
    let mut face_config = face_blur.face.clone();
    face_config.detect_max_side = config.photo.detect_max_side;
    let mut detector = FaceDetector::new(face_config)?;
    detector.detect_rgb(rgb.as_raw(), rgb.width(), rgb.height())
}

pub(crate) fn encode_jpeg(rgb: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), quality.clamp(1, 100))
        .encode_image(rgb)
        .map_err(MediaError::ImageEncode)?;
    Ok(jpeg)
}

pub(crate) fn thumbnail_jpeg(rgb: &RgbImage, max_side: u32, quality: u8) -> Result<Vec<u8>> {
    let thumbnail = if rgb.width().max(rgb.height()) > max_side {
        DynamicImage::ImageRgb8(rgb.clone()).thumbnail(max_side, max_side).to_rgb8()
    } else {
        rgb.clone()
    };
    encode_jpeg(&thumbnail, quality)
}
