//! Tells photos from videos by their bytes, and reads what the pipelines and the upload checks
//! need (size, duration, rotation, codecs) from headers only. Photos are JPEG, PNG, WebP or
//! HEIC/HEIF; videos are the containers of [`crate::container::VIDEO_FORMATS`]. Everything else
//! is refused here, before any decoder runs. Headers can lie: the pipelines check the same
//! [`ProbeLimits`] again on every decoded frame.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Duration;

use ffmpeg_next as ffmpeg;
use serde::Serialize;

use crate::error::{MediaError, Result};

/// Limits checked from headers before anything is decoded, then again on decoded data.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeLimits {
    /// Longest accepted video. The product allows 10 minutes; each job carries its tier's limit,
    /// so this is not configured.
    #[serde(skip)]
    pub max_duration: Duration,
    /// Longest accepted side of a photo or a video frame, in pixels.
    pub max_side: u32,
    /// Largest accepted photo, in pixels. A 200 MP phone photo decodes to 800 MB of RGBA.
    pub max_photo_pixels: u64,
    /// Largest accepted video frame, in pixels (8K is 7680x4320).
    pub max_video_pixels: u64,
    /// Most video frames in any second (phones film slow motion at 240 frames/s).
    pub max_frame_rate: u32,
    /// Most audio channels (7.1 is 8).
    pub max_audio_channels: u32,
    /// Highest audio sample rate, in samples per second.
    pub max_audio_rate: u32,
}

impl Default for ProbeLimits {
    fn default() -> Self {
        Self {
            max_duration: Duration::from_secs(10 * 60),
            max_side: 16_384,
            max_photo_pixels: 100_000_000,
            max_video_pixels: 8192 * 4352,
            max_frame_rate: 240,
            max_audio_channels: 8,
            max_audio_rate: 192_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Photo,
    Video,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaInfo {
    pub kind: MediaKind,
    /// Container or image format as detected from the bytes ("png", "jpeg", "mov,mp4,m4a,3gp,3g2,mj2").
    pub format: String,
    /// Stored size, before rotation.
    pub width: u32,
    pub height: u32,
    /// Clockwise rotation, in degrees (0, 90, 180, 270), that a player applies before display.
    /// Photos report 0 here: their EXIF orientation is applied by the photo pipeline.
    pub rotation: u32,
    #[serde(rename = "duration_s", serialize_with = "serialize_seconds")]
    pub duration: Option<Duration>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub frame_rate: Option<f64>,
}

/// Durations as seconds in JSON, the way the API and people read them.
pub(crate) fn serialize_seconds<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serializer.serialize_some(&duration.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}

impl MediaInfo {
    /// A photo: no duration, codecs or rotation (its orientation is applied when decoding).
    fn photo(format: &str, width: u32, height: u32) -> MediaInfo {
        MediaInfo {
            kind: MediaKind::Photo,
            format: format.to_owned(),
            width,
            height,
            rotation: 0,
            duration: None,
            video_codec: None,
            audio_codec: None,
            frame_rate: None,
        }
    }

    /// Size as shown to the viewer, after rotation.
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// Reads the headers of `path` and refuses what the pipelines would not accept.
pub fn probe(path: &Path, limits: &ProbeLimits) -> Result<MediaInfo> {
    let magic = read_magic(path)?;
    if magic.is_empty() {
        return Err(MediaError::corrupt("the file is empty"));
    }
    if crate::photo::heif::is_heif(&magic) {
        return probe_heif(path, limits);
    }
    if let Some(format) = image::guess_format(&magic).ok().filter(|f| is_photo_format(*f)) {
        return probe_photo(path, format, limits);
    }
    probe_video(path, &magic, limits)
}

/// The photo formats we accept besides HEIF: what phones and browsers make. BMP, TIFF, GIF and
/// the rest are refused rather than handed to more decoders.
pub(crate) fn is_photo_format(format: image::ImageFormat) -> bool {
    matches!(format, image::ImageFormat::Jpeg | image::ImageFormat::Png | image::ImageFormat::WebP)
}

fn probe_heif(path: &Path, limits: &ProbeLimits) -> Result<MediaInfo> {
    let bytes = std::fs::read(path).map_err(|source| MediaError::Io { path: path.to_owned(), source })?;
    let (width, height) = crate::photo::heif::dimensions(&bytes)?;
    check_size(width, height, limits.max_side, limits.max_photo_pixels)?;
    Ok(MediaInfo::photo("heif", width, height))
}

/// Enough of a file's start to tell formats apart: two MPEG-TS packets of 188 bytes.
const MAGIC_BYTES: usize = 376;

fn read_magic(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|source| MediaError::Io { path: path.to_owned(), source })?;
    let mut magic = Vec::with_capacity(MAGIC_BYTES);
    file.take(MAGIC_BYTES as u64)
        .read_to_end(&mut magic)
        .map_err(|source| MediaError::Io { path: path.to_owned(), source })?;
    Ok(magic)
}

fn probe_photo(path: &Path, format: image::ImageFormat, limits: &ProbeLimits) -> Result<MediaInfo> {
    let file = File::open(path).map_err(|source| MediaError::Io { path: path.to_owned(), source })?;
    let reader = image::ImageReader::with_format(BufReader::new(file), format);
    // Only the header is parsed here: a 30000x30000 PNG is refused without allocating its pixels.
    let (width, height) = reader
        .into_dimensions()
        .map_err(|err| MediaError::corrupt(format!("cannot read the {format:?} header: {err}")))?;
    check_size(width, height, limits.max_side, limits.max_photo_pixels)?;
    Ok(MediaInfo::photo(&format!("{format:?}").to_lowercase(), width, height))
}

pub(crate) fn check_size(width: u32, height: u32, max_side: u32, max_pixels: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(MediaError::corrupt(format!("picture size {width}x{height}")));
    }
    if width > max_side || height > max_side || u64::from(width) * u64::from(height) > max_pixels {
        return Err(MediaError::TooLarge { width, height, max_side, max_pixels });
    }
    Ok(())
}

/// Containers whose signature we know: when FFmpeg cannot open such a file, it is damaged rather
/// than of an unknown kind.
pub(crate) fn looks_like_video_container(magic: &[u8]) -> bool {
    let ftyp = magic.len() >= 8 && &magic[4..8] == b"ftyp";
    let riff_avi = magic.len() >= 12 && &magic[0..4] == b"RIFF" && &magic[8..12] == b"AVI ";
    let matroska = magic.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]);
    let mpeg_ps = magic.starts_with(&[0x00, 0x00, 0x01, 0xba]);
    // Two sync bytes one packet apart: one alone would take "GIF89a" for a transport stream.
    let mpeg_ts = magic.first() == Some(&0x47) && magic.get(188) == Some(&0x47);
    let moov_or_mdat = magic.len() >= 8 && matches!(&magic[4..8], b"moov" | b"mdat" | b"wide" | b"free");
    ftyp || riff_avi || matroska || mpeg_ps || mpeg_ts || moov_or_mdat
}

fn probe_video(path: &Path, magic: &[u8], limits: &ProbeLimits) -> Result<MediaInfo> {
    let input = crate::container::open(path, looks_like_video_container(magic))?;
    let format = input.format().name().to_owned();
    // The same stream the video pipeline picks; a cover picture in a music file is no video.
    let video_stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .filter(|s| !s.disposition().contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC))
        .ok_or_else(|| MediaError::Unsupported { reason: "no video stream".into() })?;
    let codec_id = video_stream.parameters().id();
    if ffmpeg::decoder::find(codec_id).is_none() {
        return Err(MediaError::Unsupported { reason: format!("no decoder for video codec {codec_id:?}") });
    }
    let decoder = ffmpeg::codec::context::Context::from_parameters(video_stream.parameters())
        .and_then(|ctx| ctx.decoder().video())
        .map_err(|err| MediaError::corrupt(format!("bad video stream parameters: {err}")))?;
    let (width, height) = (decoder.width(), decoder.height());
    check_size(width, height, limits.max_side, limits.max_video_pixels)?;

    let duration = container_duration(&input, &video_stream)
        .ok_or_else(|| MediaError::corrupt("the container does not say how long the video is"))?;
    if duration > limits.max_duration {
        return Err(MediaError::TooLong { actual: duration, limit: limits.max_duration });
    }
    let rotation = stream_rotation(&video_stream);
    let audio_stream = input.streams().best(ffmpeg::media::Type::Audio);
    if let Some(stream) = &audio_stream {
        // A track we cannot decode is dropped by the video pipeline; only a readable one is checked.
        if let Ok(audio) = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .and_then(|c| c.decoder().audio())
        {
            check_audio(i32::from(audio.channels()), audio.rate() as i32, limits)?;
        }
    }
    let audio_codec = audio_stream.map(|s| codec_name(s.parameters().id()));
    let rate = video_stream.avg_frame_rate();
    let frame_rate = (rate.denominator() != 0 && rate.numerator() > 0).then(|| f64::from(rate));
    if let Some(frame_rate) = frame_rate.filter(|rate| *rate > f64::from(limits.max_frame_rate) + 0.5) {
        return Err(MediaError::LimitExceeded {
            reason: format!("{frame_rate:.0} frames per second (at most {})", limits.max_frame_rate),
        });
    }
    Ok(MediaInfo {
        kind: MediaKind::Video,
        format,
        width,
        height,
        rotation,
        duration: Some(duration),
        video_codec: Some(codec_name(codec_id)),
        audio_codec,
        frame_rate,
    })
}

/// Audio that no phone records (hundreds of channels, megahertz sample rates) is refused; it
/// would only make the resampler allocate.
pub(crate) fn check_audio(channels: i32, rate: i32, limits: &ProbeLimits) -> Result<()> {
    if channels < 0 || channels as u32 > limits.max_audio_channels {
        return Err(MediaError::LimitExceeded {
            reason: format!("{channels} audio channels (at most {})", limits.max_audio_channels),
        });
    }
    if rate < 0 || rate as u32 > limits.max_audio_rate {
        return Err(MediaError::LimitExceeded {
            reason: format!("audio at {rate} samples per second (at most {})", limits.max_audio_rate),
        });
    }
    Ok(())
}

fn codec_name(id: ffmpeg::codec::Id) -> String {
    ffmpeg::decoder::find(id).map(|c| c.name().to_owned()).unwrap_or_else(|| format!("{id:?}").to_lowercase())
}

fn container_duration(input: &ffmpeg::format::context::Input, stream: &ffmpeg::Stream) -> Option<Duration> {
    let container = input.duration();
    if container > 0 {
        return Some(Duration::from_secs_f64(container as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)));
    }
    let stream_duration = stream.duration();
    let time_base = stream.time_base();
    (stream_duration > 0 && time_base.denominator() > 0)
        .then(|| Duration::from_secs_f64(stream_duration as f64 * f64::from(time_base)))
}

/// The clockwise rotation a player applies: from the display matrix when there is one (MP4, MOV),
/// else from the legacy `rotate` tag.
pub(crate) fn stream_rotation(stream: &ffmpeg::Stream) -> u32 {
    for side_data in stream.side_data() {
        if side_data.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix {
            if let Some(degrees) = display_matrix_rotation(side_data.data()) {
                return degrees;
            }
        }
    }
    stream
        .metadata()
        .get("rotate")
        .and_then(|value| value.trim().parse::<i64>().ok())
        .map(|degrees| normalize_rotation(degrees as f64))
        .unwrap_or(0)
}

/// Decodes a 3x3 display matrix (9 native-endian i32, as FFmpeg stores it) into a clockwise
/// rotation rounded to a quarter turn, following `get_rotation` in FFmpeg's `cmdutils.c`.
pub(crate) fn display_matrix_rotation(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < 36 {
        return None;
    }
    let matrix: Vec<f64> = bytes[..36]
        .chunks_exact(4)
        .map(|chunk| {
            // The chunks are exactly 4 bytes long, so the conversion cannot fail.
            f64::from(i32::from_ne_bytes(chunk.try_into().expect("4-byte chunk")))
        })
        .collect();
    let scale0 = matrix[0].hypot(matrix[3]);
    let scale1 = matrix[1].hypot(matrix[4]);
    if scale0 == 0.0 || scale1 == 0.0 {
        return None;
    }
    // av_display_rotation_get gives the counterclockwise angle; players rotate by its opposite.
    let counterclockwise = -(matrix[1] / scale1).atan2(matrix[0] / scale0).to_degrees();
    Some(normalize_rotation(-counterclockwise))
}

/// Rounds to the nearest quarter turn in 0..360.
pub(crate) fn normalize_rotation(degrees: f64) -> u32 {
    let quarter_turns = (degrees / 90.0).round() as i64;
    (quarter_turns.rem_euclid(4) * 90) as u32
}

#[cfg(test)]
mod tests;
