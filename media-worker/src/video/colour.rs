//! Colour: every output is SDR BT.709, limited range, 8-bit 4:2:0, and tagged so.
//!
//! Phones film HDR by default (iPhones: HEVC 10-bit HLG, Dolby Vision profile 8.4 whose base
//! layer is HLG; Android: HLG or PQ/HDR10). Squeezing those code values into 8 bits without
//! converting them gives the grey, washed-out picture of a signal meant for a 1000-nit screen.
//! So HDR frames are linearised with zscale, with the HDR reference white of ITU-R BT.2408
//! (203 cd/m²) as SDR white, converted to BT.709 primaries, and what lies above reference white
//! (highlights) is compressed by the `mobius` curve, which leaves the range below its knee
//! untouched: a scene's diffuse colours keep their brightness and saturation.

use ffmpeg_next::color::{Primaries, TransferCharacteristic};
use ffmpeg_next::frame;

/// HDR reference white (ITU-R BT.2408), mapped to SDR white.
const REFERENCE_WHITE_NITS: f64 = 203.0;
/// Peak of an HLG signal on its reference display, and the usual mastering peak of PQ phone
/// videos when the file says nothing.
const DEFAULT_PEAK_NITS: f64 = 1000.0;
/// Linear light (1.0 = reference white) below which the tone curve changes nothing. Measured on
/// clips made from SDR sources (docs/benchmarks.md): 0.8 keeps saturation at 0.98–1.01 and
/// brightness at 0.97–1.00 of the source, where `hable` gives 0.69–0.72 brightness.
const KNEE: f64 = 0.8;

/// How the decoded frames encode light.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dynamic {
    /// BT.709, BT.601 or untagged: SDR.
    Sdr,
    /// SDR in BT.2020 primaries: no tone mapping, only a change of primaries.
    SdrWide,
    /// ARIB STD-B67 (HLG).
    Hlg,
    /// SMPTE ST 2084 (PQ, HDR10, Dolby Vision).
    Pq,
}

pub(crate) fn dynamic_of(trc: TransferCharacteristic, primaries: Primaries) -> Dynamic {
    match trc {
        TransferCharacteristic::ARIB_STD_B67 => Dynamic::Hlg,
        TransferCharacteristic::SMPTE2084 => Dynamic::Pq,
        _ if matches!(primaries, Primaries::BT2020) => Dynamic::SdrWide,
        _ => Dynamic::Sdr,
    }
}

/// The filters after rotation: scale to `out_size`, convert to BT.709 SDR, then yuv420p.
pub(crate) fn to_bt709_filters(first: &frame::Video, out_size: (u32, u32)) -> String {
    let dynamic = dynamic_of(first.color_transfer_characteristic(), first.color_primaries());
    let full_range = matches!(first.color_range(), ffmpeg_next::color::Range::JPEG);
    filters_for(dynamic, full_range, out_size)
}

/// Every zscale step names its input and output explicitly: zscale reads missing ones from the
/// frame's tags, and fails on a frame that has none.
pub(crate) fn filters_for(dynamic: Dynamic, full_range: bool, (width, height): (u32, u32)) -> String {
    let range_in = if full_range { "full" } else { "limited" };
    // Scaling first keeps the floating-point work below at the output size.
    let scale = format!("scale={width}:{height}:flags=bicubic");
    match dynamic {
        // swscale converts the YCbCr matrix (BT.601 for SD and untagged input) to BT.709.
        Dynamic::Sdr => format!("{scale}:out_color_matrix=bt709:out_range=tv,setsar=1,format=yuv420p"),
        Dynamic::SdrWide => format!(
            "{scale},setsar=1,zscale=tin=bt709:pin=bt2020:min=bt2020nc:rin={range_in}:t=bt709:p=bt709:m=bt709:r=limited,\
             format=yuv420p"
        ),
        Dynamic::Hlg | Dynamic::Pq => {
            let transfer = if dynamic == Dynamic::Hlg { "arib-std-b67" } else { "smpte2084" };
            let peak = DEFAULT_PEAK_NITS / REFERENCE_WHITE_NITS;
            let npl = REFERENCE_WHITE_NITS;
            format!(
                "{scale},setsar=1,\
                 zscale=tin={transfer}:pin=bt2020:min=bt2020nc:rin={range_in}:t=linear:p=bt2020:npl={npl},\
                 format=gbrpf32le,zscale=tin=linear:pin=bt2020:t=linear:p=bt709:npl={npl},\
                 tonemap=tonemap=mobius:param={KNEE}:desat=0:peak={peak:.3},\
                 zscale=tin=linear:pin=bt709:t=bt709:p=bt709:m=bt709:r=limited:npl={npl},format=yuv420p"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hdr_transfers_are_tone_mapped_and_sdr_is_not() {
        assert_eq!(dynamic_of(TransferCharacteristic::ARIB_STD_B67, Primaries::BT2020), Dynamic::Hlg);
        assert_eq!(dynamic_of(TransferCharacteristic::SMPTE2084, Primaries::BT2020), Dynamic::Pq);
        assert_eq!(dynamic_of(TransferCharacteristic::BT709, Primaries::BT2020), Dynamic::SdrWide);
        assert_eq!(dynamic_of(TransferCharacteristic::Unspecified, Primaries::Unspecified), Dynamic::Sdr);
        assert!(filters_for(Dynamic::Hlg, false, (1280, 720)).contains("tonemap"));
        assert!(!filters_for(Dynamic::Sdr, false, (1280, 720)).contains("tonemap"));
        assert!(filters_for(Dynamic::Sdr, false, (1280, 720)).ends_with("format=yuv420p"));
        assert!(filters_for(Dynamic::Pq, true, (1280, 720)).contains("rin=full"));
    }
}
