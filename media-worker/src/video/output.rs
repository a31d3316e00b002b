//! The H.264 encoder and the faststart MP4 it writes into.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::{codec, encoder, format, frame, Packet, Rational};

use super::VideoConfig;
use crate::error::{MediaError, Result};

pub(super) struct VideoOutput {
    pub(super) encoder: encoder::Video,
    pub(super) stream_idx: usize,
    pub(super) time_base: Rational,
    pub(super) last_pts: Option<i64>,
}

impl VideoOutput {
    pub(super) fn new(
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
        // The filter graph made every frame BT.709 SDR, limited range (`colour`); say so in the
        // stream, so that players do not guess.
        video.set_color_primaries(ffmpeg::color::Primaries::BT709);
        video.set_color_transfer_characteristic(ffmpeg::color::TransferCharacteristic::BT709);
        video.set_colorspace(ffmpeg::color::Space::BT709);
        video.set_color_range(ffmpeg::color::Range::MPEG);
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

    pub(super) fn send(
        &mut self,
        frame: &mut frame::Video,
        output: &mut format::context::Output,
    ) -> Result<()> {
        frame.set_kind(ffmpeg::picture::Type::None);
        frame.set_color_primaries(ffmpeg::color::Primaries::BT709);
        frame.set_color_transfer_characteristic(ffmpeg::color::TransferCharacteristic::BT709);
        frame.set_color_space(ffmpeg::color::Space::BT709);
        frame.set_color_range(ffmpeg::color::Range::MPEG);
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

    pub(super) fn finish(&mut self, output: &mut format::context::Output) -> Result<()> {
        self.encoder.send_eof().map_err(MediaError::ffmpeg("flush the video encoder"))?;
        self.write_packets(output)
    }

    pub(super) fn write_packets(&mut self, output: &mut format::context::Output) -> Result<()> {
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

pub(super) fn write_header(output: &mut format::context::Output) -> Result<()> {
    // faststart moves the index (moov) before the media data, so that browsers start playing before
    // the whole file has arrived.
    let mut options = ffmpeg::Dictionary::new();
    options.set("movflags", "+faststart");
    output.write_header_with(options).map_err(MediaError::ffmpeg("write the MP4 header"))?;
    Ok(())
}
