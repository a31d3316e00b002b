//! HEIC/HEIF photos (what iPhones take by default), decoded with Debian's libheif through
//! `libheif-rs`. libheif applies the file's own transformations (rotation `irot`, mirror `imir`,
//! crop `clap`) while decoding, so the picture comes out upright; the EXIF orientation inside a
//! HEIF file repeats them and is ignored, as the HEIF standard asks.

use image::{DynamicImage, RgbImage, RgbaImage};
use libheif_rs::{ColorSpace, DecodingOptions, HeifContext, LibHeif, RgbChroma};

use crate::error::{MediaError, Result};
use crate::probe::ProbeLimits;

/// The major brands of HEIF still images (ISO/IEC 23008-12): HEVC-coded (`heic`, `heix`,
/// `heim`, `heis`) and the generic ones (`mif1`, `msf1`) that phones also write.
const HEIF_BRANDS: &[&[u8; 4]] = &[b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"];

/// Whether the first bytes of a file are those of a HEIF image: an `ftyp` box with a HEIF brand.
pub(crate) fn is_heif(magic: &[u8]) -> bool {
    magic.len() >= 12 && &magic[4..8] == b"ftyp" && HEIF_BRANDS.iter().any(|brand| &magic[8..12] == *brand)
}

/// The size of the primary image (after its transformations), read from the file's boxes only.
pub(crate) fn dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    let context =
        HeifContext::read_from_bytes(bytes).map_err(|err| heif_error("read the HEIF boxes", err))?;
    let handle = context.primary_image_handle().map_err(|err| heif_error("find the primary image", err))?;
    Ok((handle.width(), handle.height()))
}

/// Decodes the primary image, upright, as 8-bit RGB (or RGBA when it has alpha). The size is
/// checked against `limits` before any pixel is decoded.
pub(crate) fn decode(bytes: &[u8], limits: &ProbeLimits) -> Result<DynamicImage> {
    let lib_heif = LibHeif::new();
    let context =
        HeifContext::read_from_bytes(bytes).map_err(|err| heif_error("read the HEIF boxes", err))?;
    let handle = context.primary_image_handle().map_err(|err| heif_error("find the primary image", err))?;
    crate::probe::check_size(handle.width(), handle.height(), limits.max_side, limits.max_photo_pixels)?;
    let has_alpha = handle.has_alpha_channel();
    let chroma = if has_alpha { RgbChroma::Rgba } else { RgbChroma::Rgb };
    let mut options = DecodingOptions::new().ok_or_else(|| MediaError::corrupt("libheif: out of memory"))?;
    // 10-bit HEIF photos become 8-bit, like every other photo we publish.
    options.set_convert_hdr_to_8bit(true);
    let image = lib_heif
        .decode(&handle, ColorSpace::Rgb(chroma), Some(options))
        .map_err(|err| heif_error("decode the image", err))?;
    let (width, height) = (image.width(), image.height());
    crate::probe::check_size(width, height, limits.max_side, limits.max_photo_pixels)?;
    let planes = image.planes();
    let plane = planes.interleaved.ok_or_else(|| MediaError::corrupt("libheif returned no RGB plane"))?;
    let channels = if has_alpha { 4 } else { 3 };
    let row_bytes = width as usize * channels;
    if plane.stride < row_bytes || plane.data.len() < plane.stride * (height as usize - 1) + row_bytes {
        return Err(MediaError::corrupt("libheif returned a plane smaller than the picture"));
    }
    let mut packed = Vec::with_capacity(row_bytes * height as usize);
    for row in plane.data.chunks(plane.stride).take(height as usize) {
        packed.extend_from_slice(&row[..row_bytes]);
    }
    let picture = if has_alpha {
        RgbaImage::from_raw(width, height, packed).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(width, height, packed).map(DynamicImage::ImageRgb8)
    };
    // `packed` holds exactly `row_bytes * height` bytes, checked above.
    picture.ok_or_else(|| MediaError::corrupt("libheif returned a picture of the wrong size"))
}

/// libheif's errors on a user's file: a file cut short or damaged is corrupt; a feature libheif
/// lacks (a codec without a plugin) is unsupported.
fn heif_error(action: &str, err: libheif_rs::HeifError) -> MediaError {
    use libheif_rs::HeifErrorCode;
    match err.code {
        HeifErrorCode::UnsupportedFileType | HeifErrorCode::UnsupportedFeature => {
            MediaError::Unsupported { reason: format!("cannot {action}: {err}") }
        }
        HeifErrorCode::MemoryAllocationError => {
            MediaError::OutOfMemory { reason: format!("cannot {action}: {err}") }
        }
        _ => MediaError::corrupt(format!("cannot {action}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heif_brands_are_recognised_and_mp4_is_not() {
        let ftyp = |brand: &[u8; 4]| [&[0, 0, 0, 24][..], b"ftyp", brand, &[0, 0, 0, 0]].concat();
        assert!(is_heif(&ftyp(b"heic")));
        assert!(is_heif(&ftyp(b"mif1")));
        assert!(!is_heif(&ftyp(b"isom")));
        assert!(!is_heif(&ftyp(b"qt  ")));
        assert!(!is_heif(b"ftyp"));
    }
}
