//! An uploaded file, as a media job's child first reads it: `media_worker::probe` with the
//! default `ProbeLimits`: the photo/video sniffing, the `image` and libheif header readers, and
//! FFmpeg's open through `container`'s demuxer and protocol allowlists. Never a panic, and what
//! is accepted is within the limits.
//!
//! FFmpeg, libheif and their codecs are system libraries, built without the fuzzer's
//! instrumentation: libFuzzer sees coverage of our code and of Rust dependencies (`image`) only,
//! and AddressSanitizer catches C memory errors only where its allocator interceptors do.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use media_worker::{probe, MediaKind, ProbeLimits};

/// One file, rewritten for every input: a fresh temporary file each time would cost more than
/// most probes. In `$TMPDIR`, which `scripts/fuzz.sh` points at a directory it removes: the
/// process ends inside libFuzzer, where no destructor runs.
fn input_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("klass-fuzz-upload-{}", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let path = input_path();
    std::fs::write(path, data).expect("the temporary file is writable");
    let limits = ProbeLimits::default();
    let Ok(info) = probe(path, &limits) else { return };
    assert!(info.width > 0 && info.height > 0, "{info:?}");
    assert!(info.width <= limits.max_side && info.height <= limits.max_side, "{info:?}");
    let n_pixels = u64::from(info.width) * u64::from(info.height);
    match info.kind {
        MediaKind::Photo => assert!(n_pixels <= limits.max_photo_pixels, "{info:?}"),
        MediaKind::Video => {
            assert!(n_pixels <= limits.max_video_pixels, "{info:?}");
            let duration = info.duration.expect("a video has a duration");
            assert!(duration <= limits.max_duration, "{info:?}");
            assert!(info.rotation % 90 == 0 && info.rotation < 360, "{info:?}");
            let max_frame_rate = f64::from(limits.max_frame_rate) + 0.5;
            assert!(info.frame_rate.is_none_or(|rate| rate > 0.0 && rate <= max_frame_rate), "{info:?}");
        }
    }
});
