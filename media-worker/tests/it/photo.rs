//! Photo pipeline: orientation applied, metadata gone, large photos shrunk.

use std::io::Cursor;
use std::ops::ControlFlow;

use image::{ImageDecoder, RgbImage};
use media_worker::{process, ProcessConfig};

use crate::support::*;

/// A TIFF/EXIF block with Orientation = 6 (display turned 90° clockwise) and a GPS latitude.
fn exif_app1() -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes());
    // IFD0: orientation and a pointer to the GPS IFD.
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
    let gps_offset = 8 + 2 + 2 * 12 + 4;
    tiff.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0]);
    tiff.extend_from_slice(&(gps_offset as u32).to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD: GPSLatitudeRef = "N".
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&[0x01, 0x00, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    segment(0xe1, &payload)
}

fn xmp_app1() -> Vec<u8> {
    let mut payload = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    payload.extend_from_slice(
        b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>\
          <rdf:Description xmlns:exif='http://ns.adobe.com/exif/1.0/' exif:GPSLatitude='48,51.4N'/>\
          </rdf:RDF></x:xmpmeta>",
    );
    segment(0xe1, &payload)
}

fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0xff, marker];
    bytes.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn jpeg_of(picture: &RgbImage) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), 95)
        .encode_image(picture)
        .expect("encodes");
    jpeg
}

/// A phone photo: stored 64x32 with a white top-left corner, EXIF orientation 6, GPS in EXIF and XMP.
fn phone_photo() -> Vec<u8> {
    let picture =
        RgbImage::from_fn(64, 32, |x, y| if x < 16 && y < 16 { [255; 3].into() } else { [0; 3].into() });
    let jpeg = jpeg_of(&picture);
    let mut with_metadata = jpeg[..2].to_vec();
    with_metadata.extend(exif_app1());
    with_metadata.extend(xmp_app1());
    with_metadata.extend_from_slice(&jpeg[2..]);
    with_metadata
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn exif_orientation_is_applied_and_exif_xmp_gps_are_removed() {
    let dir = tempdir();
    let input = dir.path().join("phone.bin");
    std::fs::write(&input, phone_photo()).expect("write");
    let output = dir.path().join("out.jpg");
    let (info, result) =
        process(&input, &output, &ProcessConfig::default(), &mut |_| ControlFlow::Continue(()))
            .expect("processes");
    assert_eq!((info.width, info.height), (64, 32), "probe reports the stored size");
    assert_eq!((result.width, result.height), (32, 64), "turned upright");

    let bytes = std::fs::read(&output).expect("output");
    for needle in [&b"Exif"[..], b"http://ns.adobe.com/xap", b"GPS", b"48,51"] {
        assert!(!contains(&bytes, needle), "output still holds {:?}", String::from_utf8_lossy(needle));
    }
    let mut decoder = image::codecs::jpeg::JpegDecoder::new(Cursor::new(&bytes)).expect("a JPEG");
    assert_eq!(decoder.orientation().expect("orientation"), image::metadata::Orientation::NoTransforms);
    let upright = image::load_from_memory(&bytes).expect("decodes").to_rgb8();
    // Turned clockwise, the stored top-left corner is now top-right.
    assert!(upright.get_pixel(28, 4)[0] > 200, "{:?}", upright.get_pixel(28, 4));
    assert!(upright.get_pixel(4, 4)[0] < 50);
    assert!(!result.thumbnail_jpeg.is_empty());
}

#[test]
fn large_photos_are_shrunk_and_thumbnailed() {
    let dir = tempdir();
    let input = dir.path().join("large.jpg");
    let picture = RgbImage::from_fn(3000, 2000, |x, y| [(x % 256) as u8, (y % 256) as u8, 128].into());
    std::fs::write(&input, jpeg_of(&picture)).expect("write");
    let output = dir.path().join("out.jpg");
    let (_, result) = process(&input, &output, &ProcessConfig::default(), &mut |_| ControlFlow::Continue(()))
        .expect("processes");
    assert_eq!((result.width, result.height), (2560, 1707));
    let published = image::open(&output).expect("a JPEG");
    assert_eq!((published.width(), published.height()), (2560, 1707));
    let thumbnail = image::load_from_memory(&result.thumbnail_jpeg).expect("a JPEG");
    assert_eq!((thumbnail.width(), thumbnail.height()), (320, 213));
}
