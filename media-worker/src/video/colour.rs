//! Colour: every output is SDR BT.709, limited range, 8-bit 4:2:0, and tagged so.
//!
//! Phones film HDR by default (iPhones: HEVC 10-bit HLG, Dolby Vision profile 8.4 whose base
//! layer is HLG; Android: HLG or PQ/HDR10). Squeezing those code values into 8 bits without
//! converting them gives the grey, washed-out picture of a signal meant for a 1000-nit screen.
//! So HDR frames are linearised with zscale, with the HDR reference white of ITU-R BT.2408
//! (203 cd/m²) as SDR white, converted to BT.709 primaries, and what lies above reference white
//! (highlights) is compressed by the `mobius` curve, which leaves the range below its knee
//! untouched: a scene's diffuse colours keep their brightness and saturation.

use ffmpeg_next::color::{Primaries, Space, TransferCharacteristic};
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
    /// BT.709, BT.601 or untagged: SDR, with the YCbCr matrix to convert from when it is not
    /// BT.709 ([`matrix_to_convert`]).
    Sdr(Option<&'static str>),
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
        _ => Dynamic::Sdr(None),
    }
}

/// The filters after rotation: scale to `out_size`, convert to BT.709 SDR, then yuv420p.
pub(crate) fn to_bt709_filters(first: &frame::Video, out_size: (u32, u32)) -> String {
    let dynamic = dynamic_of(first.color_transfer_characteristic(), first.color_primaries());
    let dynamic = match dynamic {
        Dynamic::Sdr(_) => Dynamic::Sdr(matrix_to_convert(first.color_space(), first.height())),
        other => other,
    };
    let full_range = matches!(first.color_range(), ffmpeg_next::color::Range::JPEG);
    filters_for(dynamic, full_range, out_size)
}

/// The YCbCr matrix of an SDR frame when it is not BT.709 already, as swscale names it. Untagged
/// frames follow what players assume: BT.709 from 720 lines up, BT.601 below. Converting costs
/// swscale's slow path (three times the CPU of a plain scale at 1080p), so it is done only when
/// the colours would otherwise be wrong.
pub(crate) fn matrix_to_convert(space: Space, height: u32) -> Option<&'static str> {
    match space {
        Space::BT709 => None,
        Space::BT470BG | Space::SMPTE170M => Some("bt601"),
        Space::FCC => Some("fcc"),
        Space::SMPTE240M => Some("smpte240m"),
        Space::BT2020NCL | Space::BT2020CL => Some("bt2020"),
        _ if height >= 720 => None,
        _ => Some("bt601"),
    }
}

/// Every zscale step names its input and output explicitly: zscale reads missing ones from the
/// frame's tags, and fails on a frame that has none.
pub(crate) fn filters_for(dynamic: Dynamic, full_range: bool, (width, height): (u32, u32)) -> String {
    let range_in = if full_range { "full" } else { "limited" };
    // Scaling first keeps the floating-point work below at the output size.
    let scale = format!("scale={width}:{height}:flags=bicubic");
    match dynamic {
        Dynamic::Sdr(None) => format!("{scale},setsar=1,format=yuv420p"),
        Dynamic::Sdr(Some(matrix)) => {
            format!("{scale}:in_color_matrix={matrix}:out_color_matrix=bt709,setsar=1,format=yuv420p")
        }
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
    fn only_frames_that_are_not_bt709_have_their_matrix_converted() {
        assert_eq!(matrix_to_convert(Space::BT709, 480), None);
        assert_eq!(matrix_to_convert(Space::Unspecified, 1080), None);
        assert_eq!(matrix_to_convert(Space::Unspecified, 576), Some("bt601"));
        assert_eq!(matrix_to_convert(Space::SMPTE170M, 1080), Some("bt601"));
    }

    #[test]
    fn hdr_transfers_are_tone_mapped_and_sdr_is_not() {
        assert_eq!(dynamic_of(TransferCharacteristic::ARIB_STD_B67, Primaries::BT2020), Dynamic::Hlg);
        assert_eq!(dynamic_of(TransferCharacteristic::SMPTE2084, Primaries::BT2020), Dynamic::Pq);
        assert_eq!(dynamic_of(TransferCharacteristic::BT709, Primaries::BT2020), Dynamic::SdrWide);
        assert_eq!(
            dynamic_of(TransferCharacteristic::Unspecified, Primaries::Unspecified),
            Dynamic::Sdr(None)
        );
        assert!(filters_for(Dynamic::Hlg, false, (1280, 720)).contains("tonemap"));
        assert!(!filters_for(Dynamic::Sdr(None), false, (1280, 720)).contains("tonemap"));
        assert!(!filters_for(Dynamic::Sdr(None), false, (1280, 720)).contains("color_matrix"));
        assert!(filters_for(Dynamic::Sdr(Some("bt601")), false, (720, 480)).contains("in_color_matrix=bt601"));
        assert!(filters_for(Dynamic::Sdr(None), false, (1280, 720)).ends_with("format=yuv420p"));
        assert!(filters_for(Dynamic::Pq, true, (1280, 720)).contains("rin=full"));
    }
}
