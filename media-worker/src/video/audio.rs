//! The audio path: decoder, then a filter graph that resamples to what the AAC encoder takes.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::{codec, decoder, encoder, filter, format, frame, media, Packet, Rational};

use crate::error::{MediaError, Result};
use crate::probe::ProbeLimits;

pub(super) struct AudioPath {
    pub(super) stream_idx: usize,
    pub(super) in_time_base: Rational,
    pub(super) decoder: decoder::Audio,
    pub(super) encoder: encoder::Audio,
    pub(super) graph: Option<filter::Graph>,
    pub(super) out_stream_idx: usize,
    /// Timestamp of the next audio frame, in samples.
    pub(super) next_pts: Option<i64>,
    pub(super) n_errors: u64,
    limits: ProbeLimits,
}

impl AudioPath {
    pub(super) fn new(
        input: &format::context::Input,
        output: &mut format::context::Output,
        bitrate: usize,
        limits: &ProbeLimits,
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
            limits: limits.clone(),
        }))
    }

    pub(super) fn build_graph(&mut self, first: &frame::Audio) -> Result<()> {
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

    pub(super) fn send_packet(
        &mut self,
        packet: &Packet,
        output: &mut format::context::Output,
    ) -> Result<()> {
        if self.decoder.send_packet(packet).is_err() {
            self.n_errors += 1;
        }
        self.drain(output)
    }

    pub(super) fn finish(&mut self, output: &mut format::context::Output) -> Result<()> {
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

    pub(super) fn drain(&mut self, output: &mut format::context::Output) -> Result<()> {
        let mut decoded = frame::Audio::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            // The header's channel count and rate may differ from what the packets decode to.
            crate::probe::check_audio(i32::from(decoded.channels()), decoded.rate() as i32, &self.limits)?;
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

    pub(super) fn drain_graph(&mut self, output: &mut format::context::Output) -> Result<()> {
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

    pub(super) fn write_packets(&mut self, output: &mut format::context::Output) -> Result<()> {
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
