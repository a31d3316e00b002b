//! Irreversible blur: pixelation with coarse blocks. Each block is replaced by its mean, so the
//! detail inside a block is gone from the output, unlike a Gaussian blur that a deconvolution can
//! partly undo.
//!
//! Works on raw planes, so the video pipeline blurs its YUV 4:2:0 frames in place (no conversion to
//! RGB and back) and the photo pipeline its RGB buffer.

use crate::region::{PixelRect, Rect};

/// How coarse the blur is: the longer side of a box is cut into this many blocks. With 6, CenterFace
/// still found (weakly) the mosaic of a face in Megamind.avi; with 4 it no longer does.
pub const DEFAULT_BLOCKS_ACROSS: u32 = 4;

/// A mutable view of one plane of pixels.
pub struct Plane<'a> {
    pub data: &'a mut [u8],
    /// Bytes from one row to the next.
    pub stride: usize,
    pub width: u32,
    pub height: u32,
    /// Interleaved channels: 1 for a Y, U or V plane, 3 for RGB.
    pub channels: usize,
}

/// Replaces each `block` x `block` square of `rect` by its mean color.
pub fn pixelate(plane: &mut Plane<'_>, rect: PixelRect, block: u32) {
    let block = block.max(1);
    let channels = plane.channels;
    let x1 = rect.x1.min(plane.width);
    let y1 = rect.y1.min(plane.height);
    let mut block_y = rect.y0;
    while block_y < y1 {
        let block_y1 = (block_y + block).min(y1);
        let mut block_x = rect.x0;
        while block_x < x1 {
            let block_x1 = (block_x + block).min(x1);
            let mut sums = [0u64; 4];
            for y in block_y..block_y1 {
                let row = y as usize * plane.stride;
                for x in block_x..block_x1 {
                    let pixel = row + x as usize * channels;
                    for (channel_idx, sum) in sums.iter_mut().enumerate().take(channels) {
                        *sum += u64::from(plane.data[pixel + channel_idx]);
                    }
                }
            }
            let n_pixels = u64::from((block_x1 - block_x) * (block_y1 - block_y));
            for y in block_y..block_y1 {
                let row = y as usize * plane.stride;
                for x in block_x..block_x1 {
                    let pixel = row + x as usize * channels;
                    for (channel_idx, sum) in sums.iter().enumerate().take(channels) {
                        plane.data[pixel + channel_idx] = (sum / n_pixels) as u8;
                    }
                }
            }
            block_x = block_x1;
        }
        block_y = block_y1;
    }
}

/// Block size for a box: `blocks_across` blocks on its longer side, at least 4 pixels, even so that
/// luma blocks line up with 4:2:0 chroma blocks.
pub fn block_size(rect: PixelRect, blocks_across: u32) -> u32 {
    let longer = (rect.x1 - rect.x0).max(rect.y1 - rect.y0);
    let block = longer.div_ceil(blocks_across.max(1)).max(4);
    block + block % 2
}

/// Blurs `rects` in a YUV 4:2:0 picture given as three planes (Y full size, U and V half size).
pub fn blur_yuv420(planes: [Plane<'_>; 3], rects: &[Rect], blocks_across: u32) {
    let [mut luma, mut chroma_u, mut chroma_v] = planes;
    for rect in rects {
        let Some(pixels) = rect.to_pixels(luma.width, luma.height) else { continue };
        // Luma boxes start on even pixels so that each chroma sample is wholly inside or outside.
        let pixels = PixelRect {
            x0: pixels.x0 & !1,
            y0: pixels.y0 & !1,
            x1: (pixels.x1 + 1).min(luma.width),
            y1: (pixels.y1 + 1).min(luma.height),
        };
        let block = block_size(pixels, blocks_across);
        pixelate(&mut luma, pixels, block);
        let chroma_rect = PixelRect {
            x0: pixels.x0 / 2,
            y0: pixels.y0 / 2,
            x1: pixels.x1.div_ceil(2),
            y1: pixels.y1.div_ceil(2),
        };
        pixelate(&mut chroma_u, chroma_rect, block / 2);
        pixelate(&mut chroma_v, chroma_rect, block / 2);
    }
}

/// Blurs `rects` in an RGB picture.
pub fn blur_rgb(plane: &mut Plane<'_>, rects: &[Rect], blocks_across: u32) {
    for rect in rects {
        if let Some(pixels) = rect.to_pixels(plane.width, plane.height) {
            pixelate(plane, pixels, block_size(pixels, blocks_across));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> Vec<u8> {
        (0..width * height).map(|i| ((i % width) * 255 / width) as u8).collect()
    }

    #[test]
    fn pixelation_flattens_each_block_and_leaves_the_rest() {
        let mut data = gradient(16, 8);
        let original = data.clone();
        let mut plane = Plane { data: &mut data, stride: 16, width: 16, height: 8, channels: 1 };
        pixelate(&mut plane, PixelRect { x0: 4, y0: 0, x1: 12, y1: 4 }, 4);
        for y in 0..4 {
            assert!(data[y * 16 + 4..y * 16 + 8].iter().all(|v| *v == data[4]));
            assert!(data[y * 16 + 8..y * 16 + 12].iter().all(|v| *v == data[8]));
        }
        assert_ne!(data[4], data[8]);
        assert_eq!(&data[0..4], &original[0..4]);
        assert_eq!(&data[64..], &original[64..]);
    }

    #[test]
    fn rgb_channels_are_averaged_separately() {
        let mut data = vec![10, 20, 30, 30, 40, 50];
        let mut plane = Plane { data: &mut data, stride: 6, width: 2, height: 1, channels: 3 };
        blur_rgb(&mut plane, &[Rect::new(0.0, 0.0, 2.0, 1.0)], 1);
        assert_eq!(data, vec![20, 30, 40, 20, 30, 40]);
    }

    #[test]
    fn block_sizes_are_even_and_coarse() {
        assert_eq!(block_size(PixelRect { x0: 0, y0: 0, x1: 120, y1: 60 }, 6), 20);
        assert_eq!(block_size(PixelRect { x0: 0, y0: 0, x1: 10, y1: 10 }, 6), 4);
        assert_eq!(block_size(PixelRect { x0: 0, y0: 0, x1: 35, y1: 10 }, 5), 8);
    }

    #[test]
    fn yuv_boxes_outside_the_picture_are_ignored() {
        let (mut y, mut u, mut v) = (vec![7u8; 16], vec![1u8; 4], vec![2u8; 4]);
        let planes = [
            Plane { data: &mut y, stride: 4, width: 4, height: 4, channels: 1 },
            Plane { data: &mut u, stride: 2, width: 2, height: 2, channels: 1 },
            Plane { data: &mut v, stride: 2, width: 2, height: 2, channels: 1 },
        ];
        blur_yuv420(planes, &[Rect::new(50.0, 50.0, 4.0, 4.0)], 6);
        assert!(y.iter().all(|p| *p == 7));
    }
}
