//! Video pipeline: decode, rotate, scale, blur, encode H.264 + AAC into a faststart MP4.
//!
//! Frames go decoder -> filter graph (rotation, scale to the output box, yuv420p) -> blur stage
//! (holds a few frames back so that detections also cover the frames before them) -> libx264.
//! Audio goes decoder -> filter graph (resample to stereo float planar, 1024-sample frames) -> AAC.
//! Nothing from the input's metadata is copied: no location, device or software tags reach the
//! output, and the rotation is applied to the pixels instead of being carried as a tag.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::{codec, decoder, encoder, filter, format, frame, media, Packet, Rational};

use crate::blur::{self, Plane};
use crate::error::{MediaError, Result};
use crate::face::{Detection, FaceDetector};
use crate::pipeline::{FaceBlurConfig, ProcessConfig, ProcessOutput};
use crate::probe::{self, MediaInfo};
use crate::region::{ManualRegion, Rect};
use crate::track::FaceTracker;

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
struct VideoInput {
    stream_idx: usize,
    time_base: Rational,
    start_pts: i64,
    decoder: decoder::Video,
    graph: Option<filter::Graph>,
    rotation: u32,
    /// Fixed before decoding so that the encoder and the MP4 header can be set up first; frames of
    /// another size (a stream that changes resolution) are scaled to it.
    out_size: (u32, u32),
    last_pts: Option<i64>,
    n_errors: u64,
}

impl VideoInput {
    fn new(
        input: &format::context::Input,
        info: &MediaInfo,
        max_height: u32,
        threads: usize,
    ) -> Result<Self> {
        let stream = input
            .streams()
            .best(media::Type::Video)
            .ok_or_else(|| MediaError::Unsupported { reason: "no video stream".into() })?;
        let mut context = codec::context::Context::from_parameters(stream.parameters())
            .map_err(|err| MediaError::corrupt(format!("bad video stream parameters: {err}")))?;
        context.set_threading(codec::threading::Config {
            kind: codec::threading::Type::Frame,
            count: threads,
            ..Default::default()
        });
        let decoder = context
            .decoder()
            .video()
            .map_err(|err| MediaError::Unsupported { reason: format!("cannot decode the video: {err}") })?;
        let start_pts =
            if stream.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE { 0 } else { stream.start_time() };
        let out_size = displayed_output_size(
            decoder.width(),
            decoder.height(),
            decoder.aspect_ratio(),
            info.rotation,
            max_height,
        );
        Ok(Self {
            stream_idx: stream.index(),
            time_base: stream.time_base(),
            start_pts,
            decoder,
            graph: None,
            rotation: info.rotation,
            out_size,
            last_pts: None,
            n_errors: 0,
        })
    }

    /// Builds the graph from the first decoded frame, whose format and size are certain.
    fn build_graph(&mut self, first: &frame::Video) -> Result<()> {
        let sar = first.aspect_ratio();
        let (sar_num, sar_den) = if sar.numerator() > 0 && sar.denominator() > 0 {
            (sar.numerator(), sar.denominator())
        } else {
            (1, 1)
        };
        let pixel_format: ffmpeg::ffi::AVPixelFormat = first.format().into();
        let args = format!(
            "video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
            first.width(),
            first.height(),
            pixel_format as i32,
            self.time_base.numerator(),
            self.time_base.denominator(),
            sar_num,
            sar_den
        );
        let mut graph = filter::Graph::new();
        let buffer =
            filter::find("buffer").ok_or(MediaError::FfmpegComponentMissing { name: "buffer filter" })?;
        let buffersink = filter::find("buffersink")
            .ok_or(MediaError::FfmpegComponentMissing { name: "buffersink filter" })?;
        graph.add(&buffer, "in", &args).map_err(MediaError::ffmpeg("create the video source"))?;
        graph.add(&buffersink, "out", "").map_err(MediaError::ffmpeg("create the video sink"))?;
        let mut spec = String::new();
        if let Some(rotate) = rotation_filter(self.rotation) {
            spec.push_str(rotate);
            spec.push(',');
        }
        spec.push_str(&format!(
            "scale={}:{}:flags=bicubic,setsar=1,format=yuv420p",
            self.out_size.0, self.out_size.1
        ));
        graph
            .output("in", 0)
            .and_then(|parser| parser.input("out", 0))
            .and_then(|parser| parser.parse(&spec))
            .map_err(MediaError::ffmpeg("parse the video filters"))?;
        graph.validate().map_err(MediaError::ffmpeg("configure the video filters"))?;
        self.graph = Some(graph);
        Ok(())
    }

    fn send_packet(&mut self, packet: &Packet) -> Result<()> {
        if self.decoder.send_packet(packet).is_err() {
            // A damaged packet: the decoder conceals it and goes on; too many and the job fails.
            self.n_errors += 1;
        }
        self.drain_decoder()
    }

    fn send_eof(&mut self) -> Result<()> {
        // The decoder may already be flushed when the input ended early; nothing is lost then.
        let _ = self.decoder.send_eof();
        self.drain_decoder()?;
        if let Some(graph) = self.graph.as_mut() {
            // The source was created in `build_graph` under this name.
            let mut source = graph.get("in").expect("video source");
            source.source().flush().map_err(MediaError::ffmpeg("flush the video filters"))?;
        }
        Ok(())
    }

    fn drain_decoder(&mut self) -> Result<()> {
        let mut decoded = frame::Video::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            if self.graph.is_none() {
                self.build_graph(&decoded)?;
            }
            // Variable frame rate: keep the timestamps the phone wrote, only forcing them to
            // increase, which the encoder and the MP4 muxer require.
            let pts = match (decoded.timestamp(), self.last_pts) {
                (Some(pts), Some(last)) if pts <= last => last + 1,
                (Some(pts), _) => pts,
                (None, Some(last)) => last + 1,
                (None, None) => self.start_pts,
            };
            self.last_pts = Some(pts);
            decoded.set_pts(Some(pts));
            // Created just above when missing; its source is named "in".
            let graph = self.graph.as_mut().expect("video graph");
            let mut source = graph.get("in").expect("video source");
            source.source().add(&decoded).map_err(MediaError::ffmpeg("filter a video frame"))?;
        }
        Ok(())
    }

    fn receive(&mut self, filtered: &mut frame::Video) -> bool {
        let Some(graph) = self.graph.as_mut() else { return false };
        // Created in `build_graph` under this name.
        let mut sink = graph.get("out").expect("video sink");
        sink.sink().frame(filtered).is_ok()
    }

    fn relative_time_s(&self, pts: i64) -> f64 {
        time_s(pts - self.start_pts, self.time_base)
    }
}

/// Decodes the audio stream and resamples it to what the AAC encoder takes.
struct AudioPath {
    stream_idx: usize,
    in_time_base: Rational,
    decoder: decoder::Audio,
    encoder: encoder::Audio,
    graph: Option<filter::Graph>,
    out_stream_idx: usize,
    /// Timestamp of the next audio frame, in samples.
    next_pts: Option<i64>,
    n_errors: u64,
}

impl AudioPath {
    fn new(
        input: &format::context::Input,
        output: &mut format::context::Output,
        bitrate: usize,
    ) -> Result<Option<Self>> {
        let Some(stream) = input.streams().best(media::Type::Audio) else { return Ok(None) };
        let decoder = match codec::context::Context::from_parameters(stream.parameters())
            .and_then(|context| context.decoder().audio())
        {
            Ok(decoder) => decoder,
            // A track we cannot decode is dropped rather than failing the whole video.
            Err(err) => {
                tracing::warn!(cause = %err, "dropping an audio track that cannot be decoded");
                return Ok(None);
            }
        };
        let aac = encoder::find(codec::Id::AAC).ok_or(MediaError::FfmpegComponentMissing { name: "aac" })?;
        let global_header = output.format().flags().contains(format::Flags::GLOBAL_HEADER);
        let mut out_stream = output.add_stream(aac).map_err(MediaError::ffmpeg("add the audio stream"))?;
        let out_stream_idx = out_stream.index();
        let mut context = codec::context::Context::new_with_codec(aac)
            .encoder()
            .audio()
            .map_err(MediaError::ffmpeg("create the AAC encoder"))?;
        let rate = match decoder.rate() {
            rate @ (8000 | 11025 | 12000 | 16000 | 22050 | 24000 | 32000 | 44100 | 48000) => rate,
            _ => 48000,
        };
        let layout =
            if decoder.channels() == 1 { ffmpeg::ChannelLayout::MONO } else { ffmpeg::ChannelLayout::STEREO };
        context.set_rate(rate as i32);
        context.set_channel_layout(layout);
        context.set_channels(layout.channels());
        context.set_format(format::Sample::F32(format::sample::Type::Planar));
        context.set_bit_rate(bitrate);
        context.set_time_base(Rational(1, rate as i32));
        if global_header {
            context.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let encoder = context.open_as(aac).map_err(MediaError::ffmpeg("open the AAC encoder"))?;
        out_stream.set_parameters(&encoder);
        out_stream.set_time_base(Rational(1, rate as i32));
        Ok(Some(Self {
            stream_idx: stream.index(),
            in_time_base: stream.time_base(),
            decoder,
            encoder,
            graph: None,
            out_stream_idx,
            next_pts: None,
            n_errors: 0,
        }))
    }

    fn build_graph(&mut self, first: &frame::Audio) -> Result<()> {
        let layout = if first.channel_layout().bits() != 0 {
            first.channel_layout()
        } else {
            ffmpeg::ChannelLayout::default(first.channels() as i32)
        };
        let args = format!(
            "time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
            self.in_time_base.numerator(),
            self.in_time_base.denominator(),
            first.rate(),
            first.format().name(),
            layout.bits()
        );
        let mut graph = filter::Graph::new();
        let abuffer =
            filter::find("abuffer").ok_or(MediaError::FfmpegComponentMissing { name: "abuffer filter" })?;
        let abuffersink = filter::find("abuffersink")
            .ok_or(MediaError::FfmpegComponentMissing { name: "abuffersink filter" })?;
        graph.add(&abuffer, "in", &args).map_err(MediaError::ffmpeg("create the audio source"))?;
        graph.add(&abuffersink, "out", "").map_err(MediaError::ffmpeg("create the audio sink"))?;
        {
            // Added just above.
            let mut out = graph.get("out").expect("audio sink");
            out.set_sample_format(self.encoder.format());
            out.set_channel_layout(self.encoder.channel_layout());
            out.set_sample_rate(self.encoder.rate());
        }
        graph
            .output("in", 0)
            .and_then(|parser| parser.input("out", 0))
            .and_then(|parser| parser.parse("anull"))
            .map_err(MediaError::ffmpeg("parse the audio filters"))?;
        graph.validate().map_err(MediaError::ffmpeg("configure the audio filters"))?;
        // AAC takes exactly 1024 samples per frame.
        graph.get("out").expect("audio sink").sink().set_frame_size(self.encoder.frame_size());
        self.graph = Some(graph);
        Ok(())
    }

    fn send_packet(&mut self, packet: &Packet, output: &mut format::context::Output) -> Result<()> {
        if self.decoder.send_packet(packet).is_err() {
            self.n_errors += 1;
        }
        self.drain(output)
    }

    fn finish(&mut self, output: &mut format::context::Output) -> Result<()> {
        // As for video: a decoder that already met the end of a cut file refuses a second end.
        let _ = self.decoder.send_eof();
        self.drain(output)?;
        if let Some(graph) = self.graph.as_mut() {
            // `build_graph` names the source "in".
            graph
                .get("in")
                .expect("audio source")
                .source()
                .flush()
                .map_err(MediaError::ffmpeg("flush the audio filters"))?;
        }
        self.drain_graph(output)?;
        self.encoder.send_eof().map_err(MediaError::ffmpeg("flush the AAC encoder"))?;
        self.write_packets(output)
    }

    fn drain(&mut self, output: &mut format::context::Output) -> Result<()> {
        let mut decoded = frame::Audio::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            if self.graph.is_none() {
                self.build_graph(&decoded)?;
            }
            let pts = decoded.timestamp();
            decoded.set_pts(pts);
            // Built just above when missing, with its source named "in".
            let graph = self.graph.as_mut().expect("audio graph");
            if graph.get("in").expect("audio source").source().add(&decoded).is_err() {
                // A frame whose layout changed mid-stream: skip it rather than fail the video.
                self.n_errors += 1;
            }
        }
        self.drain_graph(output)
    }

    fn drain_graph(&mut self, output: &mut format::context::Output) -> Result<()> {
        let Some(graph) = self.graph.as_mut() else { return Ok(()) };
        // `build_graph` names the sink "out".
        let mut sink = graph.get("out").expect("audio sink");
        let sink_time_base = sink.sink().time_base();
        let mut filtered = frame::Audio::empty();
        while sink.sink().frame(&mut filtered).is_ok() {
            // Containers like AVI give audio packets loose or missing timestamps. Start where the
            // first frame says, then count samples: AAC and the MP4 muxer need a steady clock.
            let pts = *self.next_pts.get_or_insert_with(|| {
                filtered
                    .pts()
                    .map_or(0, |pts| pts.rescale_to(sink_time_base, self.encoder.time_base()).max(0))
            });
            self.next_pts = Some(pts + filtered.samples() as i64);
            filtered.set_pts(Some(pts));
            self.encoder.send_frame(&filtered).map_err(MediaError::ffmpeg("encode audio"))?;
            self.write_packets(output)?;
        }
        Ok(())
    }

    fn write_packets(&mut self, output: &mut format::context::Output) -> Result<()> {
        let out_time_base =
            output.stream(self.out_stream_idx).map(|s| s.time_base()).unwrap_or(self.encoder.time_base());
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(self.out_stream_idx);
            packet.rescale_ts(self.encoder.time_base(), out_time_base);
            packet.write_interleaved(output).map_err(MediaError::ffmpeg("write audio"))?;
        }
        Ok(())
    }
}

trait RescaleTo {
    fn rescale_to(self, from: Rational, to: Rational) -> i64;
}

impl RescaleTo for i64 {
    fn rescale_to(self, from: Rational, to: Rational) -> i64 {
        use ffmpeg::Rescale;
        self.rescale(from, to)
    }
}

/// Holds frames back until the tracker knows their boxes, then blurs them.
struct BlurStage {
    faces: Option<(FaceDetector, FaceTracker)>,
    manual_regions: Vec<ManualRegion>,
    blocks_across: u32,
    pending: VecDeque<(u64, f64, frame::Video)>,
    n_frames_in: u64,
    last_detected_idx: Option<u64>,
    n_detections: u64,
    n_blurred_frames: u64,
    /// Every detection, for the preview.
    found: Vec<FaceFrame>,
}

impl BlurStage {
    fn new(face_blur: Option<&FaceBlurConfig>, manual_regions: &[ManualRegion]) -> Result<Self> {
        let faces = match face_blur {
            Some(config) => {
                Some((FaceDetector::new(config.face.clone())?, FaceTracker::new(config.track.clone())))
            }
            None => None,
        };
        let blocks_across = face_blur.map(|c| c.face.blocks_across).unwrap_or(blur::DEFAULT_BLOCKS_ACROSS);
        Ok(Self {
            faces,
            manual_regions: manual_regions.to_vec(),
            blocks_across,
            pending: VecDeque::new(),
            n_frames_in: 0,
            last_detected_idx: None,
            n_detections: 0,
            n_blurred_frames: 0,
            found: Vec::new(),
        })
    }

    fn push(&mut self, frame: frame::Video, time_s: f64) -> Result<()> {
        let frame_idx = self.n_frames_in;
        self.n_frames_in += 1;
        if let Some((detector, tracker)) = self.faces.as_mut() {
            if tracker.wants_detection(frame_idx) {
                let detections = detect_in_frame(detector, &frame)?;
                self.record(frame_idx, time_s, &frame, &detections);
            }
        }
        self.pending.push_back((frame_idx, time_s, frame));
        Ok(())
    }

    /// Detects on the last frame too, so that a face entering after the last regular detection is
    /// still found, then releases every frame.
    fn finish(&mut self) -> Result<()> {
        let Some((detector, _)) = self.faces.as_mut() else { return Ok(()) };
        if let Some((last_idx, time_s, last_frame)) = self.pending.pop_back() {
            if self.last_detected_idx != Some(last_idx) {
                let detections = detect_in_frame(detector, &last_frame)?;
                self.record(last_idx, time_s, &last_frame, &detections);
            }
            self.pending.push_back((last_idx, time_s, last_frame));
        }
        if let Some((_, tracker)) = self.faces.as_mut() {
            tracker.finish();
        }
        Ok(())
    }

    fn record(&mut self, frame_idx: u64, time_s: f64, frame: &frame::Video, detections: &[Detection]) {
        let boxes: Vec<Rect> = detections.iter().map(|d| d.rect).collect();
        self.n_detections += boxes.len() as u64;
        if let Some((_, tracker)) = self.faces.as_mut() {
            tracker.push_detections(frame_idx, &boxes);
        }
        self.last_detected_idx = Some(frame_idx);
        self.found.push(FaceFrame::from_detections(time_s, detections, frame.width(), frame.height()));
    }

    fn pop_ready(&mut self) -> Option<(f64, frame::Video)> {
        let (frame_idx, _, _) = self.pending.front()?;
        let frame_idx = *frame_idx;
        let mut boxes = Vec::new();
        if let Some((_, tracker)) = self.faces.as_mut() {
            if !tracker.is_ready(frame_idx) {
                return None;
            }
            boxes = tracker.boxes_at(frame_idx);
            tracker.prune(frame_idx);
        }
        // Checked just above that the queue has a front.
        let (_, time_s, mut frame) = self.pending.pop_front().expect("front frame");
        let (width, height) = (frame.width(), frame.height());
        boxes.extend(
            self.manual_regions.iter().filter(|r| r.is_active_at(time_s)).map(|r| r.to_rect(width, height)),
        );
        if !boxes.is_empty() {
            self.n_blurred_frames += 1;
            blur_frame(&mut frame, &boxes, self.blocks_across);
        }
        Some((time_s, frame))
    }
}

fn detect_in_frame(detector: &mut FaceDetector, frame: &frame::Video) -> Result<Vec<Detection>> {
    let planes = [
        (frame.data(0), frame.stride(0)),
        (frame.data(1), frame.stride(1)),
        (frame.data(2), frame.stride(2)),
    ];
    detector.detect_yuv420(planes, frame.width(), frame.height())
}

fn blur_frame(frame: &mut frame::Video, boxes: &[Rect], blocks_across: u32) {
    // The filter graph may hand out a buffer the decoder still uses as a reference picture:
    // writing into it would smear the blur into later frames. Copy it first when shared.
    // SAFETY: the frame is a valid, allocated AVFrame owned by `frame`.
    let made_writable = unsafe { ffmpeg::ffi::av_frame_make_writable(frame.as_mut_ptr()) };
    if made_writable < 0 {
        tracing::error!(code = made_writable, "cannot make a frame writable; dropping its pixels");
    }
    let (width, height) = (frame.width(), frame.height());
    let strides = [frame.stride(0), frame.stride(1), frame.stride(2)];
    // SAFETY: the three planes of a yuv420p frame are distinct allocations (or disjoint parts of
    // one), so handing out one mutable slice per plane does not alias.
    let (y, u, v) = unsafe {
        let ptr = frame.as_mut_ptr();
        let plane = |idx: usize, rows: u32| {
            std::slice::from_raw_parts_mut((*ptr).data[idx], strides[idx] * rows as usize)
        };
        (plane(0, height), plane(1, height.div_ceil(2)), plane(2, height.div_ceil(2)))
    };
    let (chroma_w, chroma_h) = (width.div_ceil(2), height.div_ceil(2));
    blur::blur_yuv420(
        [
            Plane { data: y, stride: strides[0], width, height, channels: 1 },
            Plane { data: u, stride: strides[1], width: chroma_w, height: chroma_h, channels: 1 },
            Plane { data: v, stride: strides[2], width: chroma_w, height: chroma_h, channels: 1 },
        ],
        boxes,
        blocks_across,
    );
}

struct VideoOutput {
    encoder: encoder::Video,
    stream_idx: usize,
    time_base: Rational,
    last_pts: Option<i64>,
}

impl VideoOutput {
    fn new(
        output: &mut format::context::Output,
        size: (u32, u32),
        time_base: Rational,
        frame_rate: Rational,
        config: &VideoConfig,
    ) -> Result<Self> {
        let x264 =
            encoder::find_by_name("libx264").ok_or(MediaError::FfmpegComponentMissing { name: "libx264" })?;
        let global_header = output.format().flags().contains(format::Flags::GLOBAL_HEADER);
        let mut stream = output.add_stream(x264).map_err(MediaError::ffmpeg("add the video stream"))?;
        let stream_idx = stream.index();
        let mut context = codec::context::Context::new_with_codec(x264);
        context.set_threading(codec::threading::Config {
            kind: codec::threading::Type::Frame,
            count: config.threads,
            ..Default::default()
        });
        let mut video = context.encoder().video().map_err(MediaError::ffmpeg("create the H.264 encoder"))?;
        video.set_width(size.0);
        video.set_height(size.1);
        video.set_format(format::Pixel::YUV420P);
        video.set_time_base(time_base);
        if frame_rate.numerator() > 0 && frame_rate.denominator() > 0 {
            video.set_frame_rate(Some(frame_rate));
        }
        if global_header {
            video.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut options = ffmpeg::Dictionary::new();
        options.set("preset", &config.preset);
        options.set("crf", &config.crf.to_string());
        let encoder = video.open_with(options).map_err(MediaError::ffmpeg("open libx264"))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        Ok(Self { encoder, stream_idx, time_base, last_pts: None })
    }

    fn send(&mut self, frame: &mut frame::Video, output: &mut format::context::Output) -> Result<()> {
        frame.set_kind(ffmpeg::picture::Type::None);
        let pts = match (frame.pts(), self.last_pts) {
            (Some(pts), Some(last)) if pts <= last => last + 1,
            (Some(pts), _) => pts,
            (None, last) => last.map_or(0, |l| l + 1),
        };
        self.last_pts = Some(pts);
        frame.set_pts(Some(pts));
        self.encoder.send_frame(frame).map_err(MediaError::ffmpeg("encode video"))?;
        self.write_packets(output)
    }

    fn finish(&mut self, output: &mut format::context::Output) -> Result<()> {
        self.encoder.send_eof().map_err(MediaError::ffmpeg("flush the video encoder"))?;
        self.write_packets(output)
    }

    fn write_packets(&mut self, output: &mut format::context::Output) -> Result<()> {
        let out_time_base = output.stream(self.stream_idx).map(|s| s.time_base()).unwrap_or(self.time_base);
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(self.stream_idx);
            packet.rescale_ts(self.time_base, out_time_base);
            packet.write_interleaved(output).map_err(MediaError::ffmpeg("write video"))?;
        }
        Ok(())
    }
}

/// Too many damaged packets and the file is refused rather than published with glitches.
const MAX_DECODE_ERRORS: u64 = 50;

fn open_input(path: &Path) -> Result<format::context::Input> {
    crate::init_ffmpeg();
    format::input(path).map_err(|err| MediaError::corrupt(format!("FFmpeg cannot open the file: {err}")))
}

/// Reads the next packet, skipping damaged ones. `None` at the end of the file.
fn read_packet(input: &mut format::context::Input, n_errors: &mut u64) -> Result<Option<Packet>> {
    loop {
        let mut packet = Packet::empty();
        match packet.read(input) {
            Ok(()) => return Ok(Some(packet)),
            Err(ffmpeg::Error::Eof) => return Ok(None),
            Err(ffmpeg::Error::InvalidData) => {
                *n_errors += 1;
                if *n_errors > MAX_DECODE_ERRORS {
                    return Err(MediaError::corrupt("too many damaged packets"));
                }
            }
            // A file cut short reads as an I/O error at its end: treat it as the end, the
            // truncation check after decoding decides whether enough was there.
            Err(err) => {
                tracing::debug!(cause = %err, "input ended with an error");
                return Ok(None);
            }
        }
    }
}

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
    let mut video_in = VideoInput::new(&input, info, video_config.max_height, video_config.threads)?;
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
    let mut audio = AudioPath::new(&input, &mut output, video_config.audio_bitrate)?;
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
            while let Some((frame_time_s, mut ready)) = blur_stage.pop_ready() {
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
    while let Some((frame_time_s, mut ready)) = blur_stage.pop_ready() {
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

fn write_header(output: &mut format::context::Output) -> Result<()> {
    // faststart moves the index (moov) before the media data, so that browsers start playing before
    // the whole file has arrived.
    let mut options = ffmpeg::Dictionary::new();
    options.set("movflags", "+faststart");
    output.write_header_with(options).map_err(MediaError::ffmpeg("write the MP4 header"))?;
    Ok(())
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
struct PosterPicker {
    target_s: f64,
    rgb: Option<image::RgbImage>,
    at_target: bool,
}

impl PosterPicker {
    fn new(duration_s: f64) -> Self {
        Self { target_s: (duration_s / 3.0).min(1.0), rgb: None, at_target: false }
    }

    fn offer(&mut self, frame: &frame::Video, time_s: f64) -> Result<()> {
        if self.at_target || (self.rgb.is_some() && time_s < self.target_s) {
            return Ok(());
        }
        self.rgb = Some(frame_to_rgb(frame)?);
        self.at_target = time_s >= self.target_s;
        Ok(())
    }

    fn take(&mut self) -> Result<image::RgbImage> {
        self.rgb.take().ok_or_else(|| MediaError::corrupt("no frame for the poster"))
    }
}

fn frame_to_rgb(frame: &frame::Video) -> Result<image::RgbImage> {
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

/// Runs the detector on every `detect_interval`-th frame of the displayed (rotated, scaled) video,
/// for the preview. Boxes are fractions of the picture.
pub(crate) fn detect_faces(
    path: &Path,
    info: &MediaInfo,
    config: &ProcessConfig,
    face_blur: &FaceBlurConfig,
) -> Result<Vec<FaceFrame>> {
    let mut input = open_input(path)?;
    let mut video_in = VideoInput::new(&input, info, config.video.max_height, config.video.threads)?;
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
