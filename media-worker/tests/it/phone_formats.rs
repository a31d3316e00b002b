//! What phones make: HDR video (HLG as iPhones record, PQ/HDR10), HEIC photos, and originals
//! that carry a location. HDR clips and the HEIC photo are made in the test from an SDR source,
//! and must come out with the source's colours; originals must lose their metadata losslessly.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use media_worker::{process, ProcessConfig};

use crate::support::{all_tags, ffmpeg, ffprobe, path_str, stream, tempdir, test_media};
use crate::video::{ffprobe_clockwise_rotation, phone_clip};

/// Mean HSV saturation and value (0..1) of RGB pixels.
fn saturation_and_value(rgb: &[u8]) -> (f64, f64) {
    let (mut saturation, mut value) = (0.0, 0.0);
    for pixel in rgb.chunks_exact(3) {
        let max = f64::from(*pixel.iter().max().unwrap()) / 255.0;
        let min = f64::from(*pixel.iter().min().unwrap()) / 255.0;
        value += max;
        saturation += if max > 1e-6 { (max - min) / max } else { 0.0 };
    }
    let n = (rgb.len() / 3) as f64;
    (saturation / n, value / n)
}

/// Frames of a published (BT.709, limited range) video as RGB, every 10th, at 320x180.
fn published_rgb(path: &Path) -> Vec<u8> {
    let output = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(path)
        .args([
            "-vf",
            "select='not(mod(n\\,10))',scale=320:180:in_color_matrix=bt709:in_range=tv:out_range=pc,format=rgb24",
            "-vsync",
            "0",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn transcode(input: &Path, dir: &Path, name: &str) -> PathBuf {
    let output = dir.join(name);
    process(input, &output, &ProcessConfig::default(), &mut |_| ControlFlow::Continue(()))
        .expect("transcodes");
    output
}

/// An HDR version of `sdr`: SDR white becomes the HDR reference white of ITU-R BT.2408 (203 nits),
/// BT.2020 primaries, 10-bit HEVC tagged like an iPhone's (HLG) or an HDR10 camera's (PQ).
fn hdr_clip(sdr: &Path, dir: &Path, transfer: &str) -> PathBuf {
    let output = dir.join(format!("{transfer}.mp4"));
    let filters = format!(
        "zscale=tin=bt709:min=bt709:pin=bt709:rin=limited:t=linear:p=bt709:npl=203,format=gbrpf32le,\
         zscale=p=bt2020:t={transfer}:m=bt2020nc:r=limited:npl=203,format=yuv420p10le"
    );
    let mut x265 =
        format!("log-level=error:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc:range=limited");
    if transfer == "smpte2084" {
        x265.push_str(
            ":hdr10=1:repeat-headers=1:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400",
        );
    }
    ffmpeg(&[
        "-i",
        path_str(sdr),
        "-vf",
        &filters,
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-crf",
        "14",
        "-x265-params",
        &x265,
        "-color_primaries",
        "bt2020",
        "-color_trc",
        transfer,
        "-colorspace",
        "bt2020nc",
        "-color_range",
        "tv",
        "-tag:v",
        "hvc1",
        path_str(&output),
    ]);
    output
}

#[test]
fn hdr_hlg_and_pq_clips_keep_the_colours_of_their_sdr_source() {
    let dir = tempdir();
    let sdr = dir.path().join("sdr.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=640x360:r=25:d=2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "12",
        "-pix_fmt",
        "yuv420p",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-colorspace",
        "bt709",
        path_str(&sdr),
    ]);
    let reference = saturation_and_value(&published_rgb(&transcode(&sdr, dir.path(), "sdr-out.mp4")));
    for transfer in ["arib-std-b67", "smpte2084"] {
        let hdr = hdr_clip(&sdr, dir.path(), transfer);
        let probe = ffprobe(&hdr);
        assert_eq!(stream(&probe, "video").unwrap()["pix_fmt"], "yuv420p10le");
        let output = transcode(&hdr, dir.path(), &format!("{transfer}-out.mp4"));
        let video = ffprobe(&output);
        let video = stream(&video, "video").unwrap().clone();
        for (key, value) in [
            ("pix_fmt", "yuv420p"),
            ("color_transfer", "bt709"),
            ("color_primaries", "bt709"),
            ("color_space", "bt709"),
        ] {
            assert_eq!(video[key], value, "{transfer}: {key} of {video}");
        }
        let (saturation, value) = saturation_and_value(&published_rgb(&output));
        let (saturation_ratio, value_ratio) = (saturation / reference.0, value / reference.1);
        eprintln!(
            "{transfer}: saturation {saturation_ratio:.3}, brightness {value_ratio:.3} of the SDR source"
        );
        // Without tone mapping these were 0.60/0.74 (HLG) and 0.45/0.58 (PQ).
        assert!((0.93..1.07).contains(&saturation_ratio), "{transfer}: saturation {saturation_ratio:.3}");
        assert!((0.93..1.07).contains(&value_ratio), "{transfer}: brightness {value_ratio:.3}");
    }
}

#[test]
fn heic_photo_is_decoded_upright_with_its_colours_and_its_original_becomes_a_clean_jpeg() {
    let dir = tempdir();
    let png = test_media("astronaut.png");
    let heic = dir.path().join("astronaut.heic");
    let result = std::process::Command::new("heif-enc")
        .args(["-q", "90"])
        .arg(&png)
        .arg("-o")
        .arg(&heic)
        .output()
        .expect("heif-enc (libheif-examples)");
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));

    let info = media_worker::probe(&heic, &Default::default()).expect("a HEIC photo is accepted");
    assert_eq!(
        (info.kind, info.format.as_str(), info.width, info.height),
        (media_worker::MediaKind::Photo, "heif", 512, 512)
    );
    let from_heic = transcode(&heic, dir.path(), "heic.jpg");
    let from_png = transcode(&png, dir.path(), "png.jpg");
    let decode = |path: &Path| image::open(path).expect("a JPEG").to_rgb8();
    let (heic_rgb, png_rgb) = (decode(&from_heic), decode(&from_png));
    assert_eq!(heic_rgb.dimensions(), png_rgb.dimensions());
    let (heic_s, heic_v) = saturation_and_value(heic_rgb.as_raw());
    let (png_s, png_v) = saturation_and_value(png_rgb.as_raw());
    assert!(
        (heic_s / png_s - 1.0).abs() < 0.05 && (heic_v / png_v - 1.0).abs() < 0.05,
        "HEIC {heic_s:.3}/{heic_v:.3} against PNG {png_s:.3}/{png_v:.3}"
    );

    let clean = dir.path().join("original.clean");
    media_worker::original::sanitize(&heic, &clean, &info, &Default::default()).expect("sanitizes");
    let clean_info = media_worker::probe(&clean, &Default::default()).expect("the clean original is a photo");
    assert_eq!((clean_info.format.as_str(), clean_info.width, clean_info.height), ("jpeg", 512, 512));
}

#[test]
fn a_phone_video_original_is_remuxed_without_location_keeping_its_rotation_and_streams() {
    let dir = tempdir();
    let clip = phone_clip(dir.path(), "phone.mov", 90);
    let before = ffprobe(&clip);
    assert!(all_tags(&before).iter().any(|t| t.contains("+48.8566")));
    let info = media_worker::probe(&clip, &Default::default()).unwrap();
    let clean = dir.path().join("clean.mov");
    media_worker::original::sanitize(&clip, &clean, &info, &Default::default()).expect("remuxes");
    let after = ffprobe(&clean);
    let tags = all_tags(&after);
    assert!(
        !tags.iter().any(|t| t.contains("48.8566") || t.contains("iPhone") || t.contains("Apple")),
        "{tags:?}"
    );
    assert_eq!(ffprobe_clockwise_rotation(&after), ffprobe_clockwise_rotation(&before), "rotation kept");
    // Stream copy: the same packets, so the same codecs and sizes, and nothing re-encoded.
    for kind in ["video", "audio"] {
        let (old, new) = (stream(&before, kind).unwrap(), stream(&after, kind).unwrap());
        for key in ["codec_name", "width", "height", "sample_rate", "nb_frames"] {
            assert_eq!(old[key], new[key], "{kind} {key}");
        }
    }
    assert_eq!(after["streams"].as_array().unwrap().len(), 2, "only video and audio");
}

#[test]
fn playlists_lists_and_unknown_containers_are_refused_before_any_decoder_runs() {
    let dir = tempdir();
    let target = test_media("vtest.avi");
    let cases: [(&str, String); 5] = [
        ("hls.m3u8", format!("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{}\n#EXT-X-ENDLIST\n", target.display())),
        ("list.ffconcat", format!("ffconcat version 1.0\nfile '{}'\n", target.display())),
        ("self.ffconcat", "ffconcat version 1.0\nfile self.ffconcat\n".to_owned()),
        ("manifest.mpd", format!("<?xml version=\"1.0\"?><MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"><Period><AdaptationSet><Representation id=\"1\" bandwidth=\"1\"><BaseURL>file://{}</BaseURL></Representation></AdaptationSet></Period></MPD>", target.display())),
        ("sub.txt", format!("subfile,,start,0,end,0,,:{}", target.display())),
    ];
    for (name, text) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let err = media_worker::probe(&path, &Default::default()).expect_err(name);
        assert_eq!(err.code(), "unsupported_media", "{name}: {err}");
    }
}
