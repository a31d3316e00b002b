//! Remuxing a video without its metadata: stream copy of the best video and audio streams into
//! the same container family, with no container, stream or chapter metadata, no data, subtitle or
//! attachment streams (where iPhones keep their timed location), and the display matrix kept so
//! the rotation survives.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::packet::Mut as _;
use ffmpeg_next::{codec, format, media, Packet};

use crate::error::{MediaError, Result};

pub(super) fn remux_without_metadata(input_path: &Path, output_path: &Path) -> Result<()> {
    let mut input = crate::container::open(input_path, true)?;
    let muxer = match input.format().name().split(',').next().unwrap_or_default() {
        "matroska" => "matroska",
        "avi" => "avi",
        "mpegts" => "mpegts",
        _ => "mov",
    };
    let same_family = muxer == "mov" || muxer == "matroska";
    let mut output = format::output_as(output_path, muxer).map_err(|source| MediaError::Io {
        path: output_path.to_owned(),
        source: std::io::Error::other(source),
    })?;

    let video_idx = input
        .streams()
        .best(media::Type::Video)
        .filter(|s| !s.disposition().contains(format::stream::Disposition::ATTACHED_PIC))
        .map(|s| s.index())
        .ok_or_else(|| MediaError::Unsupported { reason: "no video stream".into() })?;
    let audio_idx = input.streams().best(media::Type::Audio).map(|s| s.index());
    // Input stream index -> (output stream index, input time base).
    let mut mapping = vec![None; input.nb_streams() as usize];
    for in_idx in [Some(video_idx), audio_idx].into_iter().flatten() {
        // Both indexes come from `input.streams()` just above.
        let in_stream = input.stream(in_idx).expect("stream found above");
        let mut out_stream = output
            .add_stream(ffmpeg::encoder::find(codec::Id::None))
            .map_err(MediaError::ffmpeg("add a stream to the clean original"))?;
        out_stream.set_parameters(in_stream.parameters());
        // SAFETY: both streams and their codec parameters are valid; the muxer has not started.
        unsafe {
            let out_parameters = (*out_stream.as_mut_ptr()).codecpar;
            if !same_family {
                (*out_parameters).codec_tag = 0;
            }
            copy_display_matrix(in_stream.as_ptr(), out_stream.as_mut_ptr());
        }
        mapping[in_idx] = Some((out_stream.index(), in_stream.time_base()));
    }
    // No metadata is copied: the output context starts with none, and the muxer's own `encoder`
    // tag names only FFmpeg.
    output.write_header().map_err(|err| MediaError::corrupt(format!("cannot remux the original: {err}")))?;
    let mut n_errors = 0u64;
    loop {
        let mut packet = Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) if n_errors < 50 => {
                n_errors += 1;
                continue;
            }
            Err(_) => break,
        }
        let Some(Some((out_idx, in_time_base))) = mapping.get(packet.stream()).copied() else { continue };
        // Packet side data can carry metadata too (e.g. ID3 in MPEG-TS): drop all of it.
        // SAFETY: the packet is valid and owned here.
        unsafe { ffmpeg::ffi::av_packet_free_side_data(packet.as_mut_ptr()) };
        let out_time_base = output.stream(out_idx).map(|s| s.time_base()).unwrap_or(in_time_base);
        packet.rescale_ts(in_time_base, out_time_base);
        packet.set_position(-1);
        packet.set_stream(out_idx);
        packet
            .write_interleaved(&mut output)
            .map_err(|err| MediaError::corrupt(format!("cannot remux the original: {err}")))?;
    }
    output.write_trailer().map_err(|err| MediaError::corrupt(format!("cannot remux the original: {err}")))?;
    Ok(())
}

/// Copies the display matrix (rotation), and only it, from one stream's side data to another's.
///
/// # Safety
/// Both pointers must be valid streams; `to` must belong to a muxer whose header is not written.
unsafe fn copy_display_matrix(from: *const ffmpeg::ffi::AVStream, to: *mut ffmpeg::ffi::AVStream) {
    let kind = ffmpeg::ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX;
    let mut size = 0;
    let data = ffmpeg::ffi::av_stream_get_side_data(from, kind, &mut size);
    if data.is_null() || size == 0 {
        return;
    }
    let copy = ffmpeg::ffi::av_stream_new_side_data(to, kind, size);
    if !copy.is_null() {
        std::ptr::copy_nonoverlapping(data, copy, size);
    }
}
