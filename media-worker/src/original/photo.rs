//! Lossless metadata removal from JPEG, PNG and WebP: the file is walked segment by segment (JPEG
//! markers, PNG chunks, RIFF chunks) and only what describes the pixels is kept. The orientation
//! survives as a minimal EXIF block holding that one tag, since the pixels are stored sideways.

use std::io::Cursor;

use image::ImageDecoder;

use crate::error::{MediaError, Result};

/// `bytes` without metadata, for a photo of `format` as [`crate::probe`] names it.
pub fn strip_photo_metadata(bytes: &[u8], format: &str) -> Result<Vec<u8>> {
    let orientation = orientation_of(bytes);
    match format {
        "jpeg" => strip_jpeg(bytes, orientation),
        "png" => strip_png(bytes, orientation),
        "webp" => strip_webp(bytes, orientation),
        other => Err(MediaError::Unsupported { reason: format!("no metadata stripping for {other}") }),
    }
}

/// The EXIF orientation (1 to 8) as `image` reads it; 1 when there is none.
fn orientation_of(bytes: &[u8]) -> u16 {
    use image::metadata::Orientation;
    let orientation = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|reader| reader.into_decoder().ok())
        .and_then(|mut decoder| decoder.orientation().ok())
        .unwrap_or(Orientation::NoTransforms);
    match orientation {
        Orientation::NoTransforms => 1,
        Orientation::FlipHorizontal => 2,
        Orientation::Rotate180 => 3,
        Orientation::FlipVertical => 4,
        Orientation::Rotate90FlipH => 5,
        Orientation::Rotate90 => 6,
        Orientation::Rotate270FlipH => 7,
        Orientation::Rotate270 => 8,
    }
}

/// A TIFF structure (big-endian) with one IFD entry: Orientation (0x0112), SHORT, `value`.
fn minimal_exif(orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::with_capacity(26);
    tiff.extend_from_slice(b"MM\0\x2a");
    tiff.extend_from_slice(&8u32.to_be_bytes()); // offset of IFD0
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // one value
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // the value field is four bytes
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff
}

fn corrupt(what: &str) -> MediaError {
    MediaError::corrupt(format!("cannot walk the photo's structure: {what}"))
}

fn strip_jpeg(bytes: &[u8], orientation: u16) -> Result<Vec<u8>> {
    if !bytes.starts_with(&[0xff, 0xd8]) {
        return Err(corrupt("no JPEG start marker"));
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&[0xff, 0xd8]);
    if orientation != 1 {
        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(&minimal_exif(orientation));
        out.extend_from_slice(&[0xff, 0xe1]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&payload);
    }
    let mut pos = 2;
    loop {
        // Fill bytes (0xff) may pad before a marker.
        while bytes.get(pos) == Some(&0xff) && bytes.get(pos + 1) == Some(&0xff) {
            pos += 1;
        }
        if bytes.get(pos) != Some(&0xff) {
            return Err(corrupt("a segment does not start with a marker"));
        }
        let marker = *bytes.get(pos + 1).ok_or_else(|| corrupt("cut short"))?;
        if marker == 0xd9 {
            // End of image. Anything after it (the secondary pictures of MPF, a trailer with
            // its own EXIF) is left out.
            out.extend_from_slice(&[0xff, 0xd9]);
            return Ok(out);
        }
        if (0xd0..=0xd7).contains(&marker) || marker == 0x01 {
            out.extend_from_slice(&bytes[pos..pos + 2]);
            pos += 2;
            continue;
        }
        let length = bytes
            .get(pos + 2..pos + 4)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            .ok_or_else(|| corrupt("cut short"))?;
        if length < 2 || pos + 2 + length > bytes.len() {
            return Err(corrupt("a segment runs past the end"));
        }
        let segment_end = pos + 2 + length;
        let keep = match marker {
            // Frame headers, Huffman, arithmetic and quantisation tables, restart interval,
            // number of lines, and the start of scan.
            0xc0..=0xcf | 0xdb | 0xdd | 0xdc | 0xda => true,
            // JFIF, ICC colour profile and Adobe's colour transform describe the pixels.
            0xe0 => bytes[pos + 4..segment_end].starts_with(b"JFIF\0"),
            0xe2 => bytes[pos + 4..segment_end].starts_with(b"ICC_PROFILE\0"),
            0xee => bytes[pos + 4..segment_end].starts_with(b"Adobe"),
            // EXIF, XMP, IPTC, MPF, comments and every other application segment.
            _ => false,
        };
        if keep {
            out.extend_from_slice(&bytes[pos..segment_end]);
        }
        pos = segment_end;
        if marker == 0xda {
            // Entropy-coded data runs until a marker that is neither a stuffed zero nor a restart.
            let data_start = pos;
            while pos + 1 < bytes.len() {
                if bytes[pos] == 0xff && bytes[pos + 1] != 0 && !(0xd0..=0xd7).contains(&bytes[pos + 1]) {
                    break;
                }
                pos += 1;
            }
            if pos + 1 >= bytes.len() {
                return Err(corrupt("the scan has no end"));
            }
            out.extend_from_slice(&bytes[data_start..pos]);
        }
    }
}

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = Vec::with_capacity(data.len() + 12);
    chunk.extend_from_slice(&(data.len() as u32).to_be_bytes());
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    chunk.extend_from_slice(&crc.finalize().to_be_bytes());
    chunk
}

fn strip_png(bytes: &[u8], orientation: u16) -> Result<Vec<u8>> {
    if !bytes.starts_with(PNG_SIGNATURE) {
        return Err(corrupt("no PNG signature"));
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(PNG_SIGNATURE);
    let mut pos = PNG_SIGNATURE.len();
    while pos + 12 <= bytes.len() {
        let length =
            u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        let kind: [u8; 4] = [bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]];
        let end = pos
            .checked_add(12 + length)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| corrupt("a chunk runs past the end"))?;
        let keep = matches!(
            &kind,
            b"IHDR"
                | b"PLTE"
                | b"IDAT"
                | b"IEND"
                | b"tRNS"
                | b"cHRM"
                | b"gAMA"
                | b"iCCP"
                | b"sBIT"
                | b"sRGB"
                | b"pHYs"
                | b"bKGD"
                | b"acTL"
                | b"fcTL"
                | b"fdAT"
        );
        if keep {
            out.extend_from_slice(&bytes[pos..end]);
        }
        if &kind == b"IHDR" && orientation != 1 {
            out.extend_from_slice(&png_chunk(b"eXIf", &minimal_exif(orientation)));
        }
        pos = end;
        if &kind == b"IEND" {
            return Ok(out);
        }
    }
    Err(corrupt("no IEND chunk"))
}

fn strip_webp(bytes: &[u8], orientation: u16) -> Result<Vec<u8>> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return Err(corrupt("no RIFF WEBP header"));
    }
    let riff_end = (u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize)
        .saturating_add(8)
        .min(bytes.len());
    let mut chunks = Vec::with_capacity(bytes.len());
    let mut vp8x_at = None;
    let mut pos = 12;
    while pos + 8 <= riff_end {
        let kind: [u8; 4] = [bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]];
        let size =
            u32::from_le_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]) as usize;
        let data_end = (pos + 8)
            .checked_add(size)
            .filter(|end| *end <= riff_end)
            .ok_or_else(|| corrupt("a chunk runs past the end"))?;
        // Chunks are padded to an even size; the last pad byte may be missing.
        let end = (data_end + (size & 1)).min(riff_end);
        if &kind == b"VP8X" {
            vp8x_at = Some(chunks.len());
        }
        let describes_pixels =
            [b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"].contains(&&kind);
        if describes_pixels {
            chunks.extend_from_slice(&bytes[pos..data_end]);
            if size & 1 == 1 {
                chunks.push(0);
            }
        }
        pos = end;
    }
    if let Some(at) = vp8x_at {
        // VP8X flags: bit 3 is "has EXIF", bit 2 "has XMP".
        let flags = chunks.get_mut(at + 8).ok_or_else(|| corrupt("VP8X chunk too short"))?;
        *flags &= !0x0c;
        if orientation != 1 {
            *flags |= 0x08;
            let exif = minimal_exif(orientation);
            chunks.extend_from_slice(b"EXIF");
            chunks.extend_from_slice(&(exif.len() as u32).to_le_bytes());
            chunks.extend_from_slice(&exif);
        }
    }
    let mut out = Vec::with_capacity(chunks.len() + 12);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&((chunks.len() + 4) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&chunks);
    Ok(out)
}

#[cfg(test)]
mod tests;
