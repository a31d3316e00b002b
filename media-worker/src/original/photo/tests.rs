use super::*;

/// A photo with every kind of metadata a phone writes, in the segments where it writes them.
const SECRET: &[u8] = b"GPSLatitude 48.8566 N, GPSLongitude 2.3522 E, iPhone 15";

fn exif_with_secret(orientation: u16) -> Vec<u8> {
    let mut tiff = minimal_exif(orientation);
    tiff.extend_from_slice(SECRET);
    tiff
}

fn picture() -> image::RgbImage {
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8]))
}

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(picture())
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("encodes");
    bytes
}

fn decoded(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory(bytes).expect("still decodes")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn check_clean(original: &[u8], format: &str, orientation: u16) {
    assert!(contains(original, SECRET), "the test photo carries the secret");
    let clean = strip_photo_metadata(original, format).expect("strips");
    assert!(!contains(&clean, SECRET), "{format}: the metadata is gone");
    assert!(!contains(&clean, b"Location"), "{format}: text chunks are gone");
    assert_eq!(orientation_of(&clean), orientation, "{format}: the orientation survives");
    assert_eq!(decoded(&clean).to_rgb8(), decoded(original).to_rgb8(), "{format}: pixels are unchanged");
}

#[test]
fn jpeg_loses_exif_xmp_comments_and_trailers_but_keeps_pixels_and_orientation() {
    let jpeg = encoded(image::ImageFormat::Jpeg);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&exif_with_secret(6));
    let mut with_metadata = jpeg[..2].to_vec();
    with_metadata.extend_from_slice(&[0xff, 0xe1]);
    with_metadata.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    with_metadata.extend_from_slice(&app1);
    let comment = b"Location: Paris";
    with_metadata.extend_from_slice(&[0xff, 0xfe]);
    with_metadata.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
    with_metadata.extend_from_slice(comment);
    with_metadata.extend_from_slice(&jpeg[2..]);
    // A second picture after the end of the first, as Multi-Picture files have.
    with_metadata.extend_from_slice(&[0xff, 0xd8, 0xff, 0xe1, 0, 10]);
    with_metadata.extend_from_slice(SECRET);
    check_clean(&with_metadata, "jpeg", 6);
}

#[test]
fn png_loses_text_and_exif_chunks() {
    let png = encoded(image::ImageFormat::Png);
    // After the signature and IHDR (8 + 25 bytes).
    let mut with_metadata = png[..33].to_vec();
    with_metadata.extend_from_slice(&png_chunk(b"eXIf", &exif_with_secret(3)));
    with_metadata.extend_from_slice(&png_chunk(b"tEXt", b"Location\0Paris"));
    with_metadata.extend_from_slice(&png[33..]);
    check_clean(&with_metadata, "png", 3);
}

#[test]
fn webp_loses_exif_and_xmp_chunks() {
    let webp = encoded(image::ImageFormat::WebP);
    let mut chunks = Vec::new();
    // An extended WebP: VP8X with the EXIF and XMP flags, the image, then the metadata.
    let mut vp8x = vec![0x0c, 0, 0, 0];
    vp8x.extend_from_slice(&(63u32.to_le_bytes()[..3]));
    vp8x.extend_from_slice(&(47u32.to_le_bytes()[..3]));
    for (kind, data) in
        [(&b"VP8X"[..], vp8x), (b"EXIF", exif_with_secret(1)), (b"XMP ", b"Location Paris".to_vec())]
    {
        chunks.extend_from_slice(kind);
        chunks.extend_from_slice(&(data.len() as u32).to_le_bytes());
        chunks.extend_from_slice(&data);
        if data.len() % 2 == 1 {
            chunks.push(0);
        }
    }
    chunks.extend_from_slice(&webp[12..]);
    let mut with_metadata = b"RIFF".to_vec();
    with_metadata.extend_from_slice(&((chunks.len() + 4) as u32).to_le_bytes());
    with_metadata.extend_from_slice(b"WEBP");
    with_metadata.extend_from_slice(&chunks);
    check_clean(&with_metadata, "webp", 1);
}

#[test]
fn damaged_structures_are_refused_not_copied() {
    let jpeg = encoded(image::ImageFormat::Jpeg);
    assert!(strip_photo_metadata(&jpeg[..jpeg.len() / 2], "jpeg").is_err());
    assert!(strip_photo_metadata(b"\xff\xd8\xff\xe1\xff\xff", "jpeg").is_err());
    let png = encoded(image::ImageFormat::Png);
    assert!(strip_photo_metadata(&png[..40], "png").is_err());
    assert!(strip_photo_metadata(b"RIFF\xff\xff\xff\xffWEBPVP8 \xff\xff\xff\x7f", "webp").is_err());
}
