//! Picture sizes read from the bitstream before decoding. A stream can change its resolution at
//! any keyframe (a new H.264 or HEVC sequence header) while the container's header still says
//! 320x240; the decoder would allocate the new size before anyone sees a frame, or, when its own
//! `max_pixels` refuses, count the packet as damaged and go on quietly. FFmpeg's parser for the
//! codec reads each packet's headers first, so such a stream is refused for its size.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::{codec, Packet};

pub(super) struct SizeWatch {
    parser: *mut ffmpeg::ffi::AVCodecParserContext,
    /// The codec context the parser reads extradata from (`avcC`/`hvcC` NAL length sizes).
    context: codec::Context,
}

impl SizeWatch {
    /// A watch for the stream's codec, or `None` when FFmpeg has no parser for it (the decoded
    /// frames are still checked).
    pub(super) fn new(parameters: codec::Parameters) -> Option<Self> {
        let context = codec::Context::from_parameters(parameters).ok()?;
        // SAFETY: av_parser_init takes a codec id and returns a new parser or null.
        let codec_id: ffmpeg::ffi::AVCodecID = context.id().into();
        let parser = unsafe { ffmpeg::ffi::av_parser_init(codec_id as i32) };
        if parser.is_null() {
            return None;
        }
        // SAFETY: `parser` was just created and is valid; demuxed packets hold whole frames.
        unsafe { (*parser).flags |= ffmpeg::ffi::PARSER_FLAG_COMPLETE_FRAMES };
        Some(Self { parser, context })
    }

    /// The coded picture size the packet's headers announce, if they announce one.
    pub(super) fn size_of(&mut self, packet: &Packet) -> Option<(u32, u32)> {
        let data = packet.data()?;
        let size = i32::try_from(data.len()).ok()?;
        let mut out: *mut u8 = std::ptr::null_mut();
        let mut out_size = 0;
        // SAFETY: parser and context are valid and owned here; the packet's buffer is padded by
        // FFmpeg (AV_INPUT_BUFFER_PADDING_SIZE) as av_parser_parse2 requires; `out` points into
        // the parser's own buffer and is not used.
        unsafe {
            ffmpeg::ffi::av_parser_parse2(
                self.parser,
                self.context.as_mut_ptr(),
                &mut out,
                &mut out_size,
                data.as_ptr(),
                size,
                ffmpeg::ffi::AV_NOPTS_VALUE,
                ffmpeg::ffi::AV_NOPTS_VALUE,
                -1,
            );
            let (width, height) = ((*self.parser).width, (*self.parser).height);
            (width > 0 && height > 0).then_some((width as u32, height as u32))
        }
    }
}

impl Drop for SizeWatch {
    fn drop(&mut self) {
        // SAFETY: created by av_parser_init in `new` and closed only here.
        unsafe { ffmpeg::ffi::av_parser_close(self.parser) };
    }
}
