use super::*;

fn matrix_bytes(matrix: [i32; 9]) -> Vec<u8> {
    matrix.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

fn check_rotation(matrix: [i32; 9], expected: Option<u32>) {
    assert_eq!(display_matrix_rotation(&matrix_bytes(matrix)), expected, "{matrix:?}");
}

const ONE: i32 = 1 << 16;
const W: i32 = 1 << 30;

#[test]
fn display_matrix_rotations() {
    check_rotation([ONE, 0, 0, 0, ONE, 0, 0, 0, W], Some(0));
    // ffprobe shows this one as rotation=-90: players turn it 90° clockwise (`transpose=clock`).
    check_rotation([0, ONE, 0, -ONE, 0, 0, 0, 0, W], Some(90));
    check_rotation([-ONE, 0, 0, 0, -ONE, 0, 0, 0, W], Some(180));
    check_rotation([0, -ONE, 0, ONE, 0, 0, 0, 0, W], Some(270));
    check_rotation([0; 9], None);
    assert_eq!(display_matrix_rotation(&[0; 10]), None);
}

#[test]
fn rotations_round_to_quarter_turns() {
    for (degrees, expected) in [(0.0, 0), (89.6, 90), (-90.0, 270), (180.0, 180), (450.0, 90), (-1.0, 0)] {
        assert_eq!(normalize_rotation(degrees), expected, "{degrees}");
    }
}

#[test]
fn sizes_are_checked_before_decoding() {
    assert!(check_size(4000, 3000, 16_384, 100_000_000).is_ok());
    assert!(matches!(check_size(30_000, 30_000, 16_384, 100_000_000), Err(MediaError::TooLarge { .. })));
    assert!(matches!(check_size(16_000, 16_000, 16_384, 100_000_000), Err(MediaError::TooLarge { .. })));
    assert!(matches!(check_size(0, 10, 16_384, 100_000_000), Err(MediaError::Corrupt { .. })));
}

#[test]
fn container_signatures() {
    assert!(looks_like_video_container(b"\0\0\0\x20ftypisom\0\0\x02\0"));
    assert!(looks_like_video_container(b"RIFF\0\0\0\0AVI LIST"));
    assert!(!looks_like_video_container(b"%PDF-1.7\n"));
    assert!(!looks_like_video_container(b"hello world, this is text"));
}
