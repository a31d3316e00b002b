//! The video side of the input: the decoder, the limits checked on every decoded frame, and the
//! filter graph that turns stored pixels into displayed ones (rotation, scale to the output box,
//! HDR tone mapping, BT.709 yuv420p).

use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::{codec, decoder, filter, format, frame, media, Packet, Rational};

use super::size_watch::SizeWatch;
use super::{colour, displayed_output_size, rotation_filter, time_s};
use crate::error::{MediaError, Result};
use crate::probe::{MediaInfo, ProbeLimits};

pub(super) struct VideoInput {
    pub(super) stream_idx: usize,
    pub(super) time_base: Rational,
    pub(super) start_pts: i64,
    pub(super) decoder: decoder::Video,
    pub(super) graph: Option<filter::Graph>,
    pub(super) rotation: u32,
    /// Fixed before decoding so that the encoder and the MP4 header can be set up first; frames of
    /// another size (a stream that changes resolution) are scaled to it.
    pub(super) out_size: (u32, u32),
    pub(super) last_pts: Option<i64>,
    pub(super) n_errors: u64,
    limits: ProbeLimits,
    n_decoded: u64,
    size_watch: Option<SizeWatch>,
}

impl VideoInput {
    pub(super) fn new(
        input: &format::context::Input,
        info: &MediaInfo,
        limits: &ProbeLimits,
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
        // The decoder itself refuses to allocate a frame larger than this, whatever a later
        // keyframe's header says; `check_frame` turns that into a clear refusal.
        // SAFETY: `context` owns a valid AVCodecContext that is not opened yet.
        unsafe {
            (*context.as_mut_ptr()).max_pixels = i64::try_from(limits.max_video_pixels).unwrap_or(i64::MAX);
        }
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
            limits: limits.clone(),
            n_decoded: 0,
            size_watch: SizeWatch::new(stream.parameters()),
        })
    }

    /// Builds the graph from the first decoded frame, whose format and size are certain.
    pub(super) fn build_graph(&mut self, first: &frame::Video) -> Result<()> {
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
        spec.push_str(&colour::to_bt709_filters(first, self.out_size));
        graph
            .output("in", 0)
            .and_then(|parser| parser.input("out", 0))
            .and_then(|parser| parser.parse(&spec))
            .map_err(MediaError::ffmpeg("parse the video filters"))?;
        graph.validate().map_err(MediaError::ffmpeg("configure the video filters"))?;
        self.graph = Some(graph);
        Ok(())
    }

    pub(super) fn send_packet(&mut self, packet: &Packet) -> Result<()> {
        if let Some((width, height)) = self.size_watch.as_mut().and_then(|watch| watch.size_of(packet)) {
            self.check_size(width, height)?;
        }
        if self.decoder.send_packet(packet).is_err() {
            // A frame over the size limit fails in the decoder (`max_pixels`): say so rather than
            // counting it as damage.
            self.check_size(self.decoder.width(), self.decoder.height())?;
            // A damaged packet: the decoder conceals it and goes on; too many and the job fails.
            self.n_errors += 1;
        }
        self.drain_decoder()
    }

    fn check_size(&self, width: u32, height: u32) -> Result<()> {
        let limits = &self.limits;
        crate::probe::check_size(width.max(1), height.max(1), limits.max_side, limits.max_video_pixels)
    }

    /// The limit that headers cannot promise beside each frame's size (checked as it leaves the
    /// decoder): how many frames come per second of timestamps (a file whose timestamps are one
    /// tick apart would otherwise make millions of frames out of a few seconds).
    fn check_frame_rate(&mut self, pts: i64) -> Result<()> {
        self.n_decoded += 1;
        let elapsed_s = self.relative_time_s(pts).max(0.0);
        let max_frame_rate = f64::from(self.limits.max_frame_rate);
        // One second of slack: the first frames of a clip all sit near time zero.
        if self.n_decoded as f64 > max_frame_rate * (elapsed_s + 1.0) {
            return Err(MediaError::LimitExceeded {
                reason: format!(
                    "{} frames in the first {elapsed_s:.2} s (at most {} frames per second)",
                    self.n_decoded, self.limits.max_frame_rate
                ),
            });
        }
        Ok(())
    }

    pub(super) fn send_eof(&mut self) -> Result<()> {
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

    pub(super) fn drain_decoder(&mut self) -> Result<()> {
        let mut decoded = frame::Video::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            self.check_size(decoded.width(), decoded.height())?;
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
            self.check_frame_rate(pts)?;
            decoded.set_pts(Some(pts));
            // Created just above when missing; its source is named "in".
            let graph = self.graph.as_mut().expect("video graph");
            let mut source = graph.get("in").expect("video source");
            source.source().add(&decoded).map_err(MediaError::ffmpeg("filter a video frame"))?;
        }
        Ok(())
    }

    pub(super) fn receive(&mut self, filtered: &mut frame::Video) -> bool {
        let Some(graph) = self.graph.as_mut() else { return false };
        // Created in `build_graph` under this name.
        let mut sink = graph.get("out").expect("video sink");
        sink.sink().frame(filtered).is_ok()
    }

    pub(super) fn relative_time_s(&self, pts: i64) -> f64 {
        time_s(pts - self.start_pts, self.time_base)
    }
}

/// Too many damaged packets and the file is refused rather than published with glitches.
pub(super) const MAX_DECODE_ERRORS: u64 = 50;

/// Opens a file that [`crate::probe`] already accepted, with the same allowlists.
pub(super) fn open_input(path: &Path) -> Result<format::context::Input> {
    crate::container::open(path, true)
}

/// Reads the next packet, skipping damaged ones. `None` at the end of the file.
pub(super) fn read_packet(input: &mut format::context::Input, n_errors: &mut u64) -> Result<Option<Packet>> {
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
