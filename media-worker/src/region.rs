//! Rectangles: detected faces in pixels, and the manual regions a teacher draws in fractions of the
//! displayed picture (so that they do not depend on the output size).

use serde::{Deserialize, Serialize};

/// A rectangle in pixels of the displayed (rotated, scaled) picture.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Rect {
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        Self { x, y, w, h }
    }

    pub fn from_corners(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self { x: x0, y: y0, w: (x1 - x0).max(0.0), h: (y1 - y0).max(0.0) }
    }

    pub fn center(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }

    pub fn area(&self) -> f32 {
        self.w * self.h
    }

    pub fn iou(&self, other: &Rect) -> f32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.w).min(other.x + other.w);
        let y1 = (self.y + self.h).min(other.y + other.h);
        let intersection = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.area() + other.area() - intersection;
        if union <= 0.0 {
            0.0
        } else {
            intersection / union
        }
    }

    /// Grows the rectangle around its center by `factor` on each axis.
    pub fn enlarged(&self, factor: f32) -> Rect {
        let (cx, cy) = self.center();
        let (w, h) = (self.w * factor, self.h * factor);
        Rect { x: cx - w / 2.0, y: cy - h / 2.0, w, h }
    }

    /// Linear interpolation between `self` (t = 0) and `other` (t = 1).
    pub fn lerp(&self, other: &Rect, t: f32) -> Rect {
        let mix = |a: f32, b: f32| a + (b - a) * t;
        Rect {
            x: mix(self.x, other.x),
            y: mix(self.y, other.y),
            w: mix(self.w, other.w),
            h: mix(self.h, other.h),
        }
    }

    /// Whole pixels covered, clipped to a `width` x `height` picture; `None` when nothing is left.
    /// Rounds outwards so that a partly covered pixel is covered.
    pub fn to_pixels(&self, width: u32, height: u32) -> Option<PixelRect> {
        let x0 = self.x.floor().max(0.0) as u32;
        let y0 = self.y.floor().max(0.0) as u32;
        let x1 = ((self.x + self.w).ceil().max(0.0) as u32).min(width);
        let y1 = ((self.y + self.h).ceil().max(0.0) as u32).min(height);
        (x1 > x0 && y1 > y0).then_some(PixelRect { x0, y0, x1, y1 })
    }
}

/// A clipped rectangle in whole pixels, `x1` and `y1` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelRect {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

/// A region the teacher asks to blur, whatever the detector finds: fractions (0..1) of the
/// displayed picture, over a time range in seconds. Photos ignore the time range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ManualRegion {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub start_s: f64,
    pub end_s: f64,
}

impl ManualRegion {
    pub fn is_active_at(&self, time_s: f64) -> bool {
        self.start_s <= time_s && time_s <= self.end_s
    }

    /// The region in pixels of a `width` x `height` picture.
    pub fn to_rect(&self, width: u32, height: u32) -> Rect {
        let (fw, fh) = (width as f32, height as f32);
        Rect { x: self.x * fw, y: self.y * fh, w: self.width * fw, h: self.height * fh }
    }
}

/// The API's region (`models`, checked in `f64`) is the same rectangle over the same time range. A
/// positive width or height stays positive in `f32`, so that the region shown back to the teacher
/// is still one the API accepts.
impl From<models::media::BlurRegion> for ManualRegion {
    fn from(r: models::media::BlurRegion) -> Self {
        let positive = |v: f64| (v as f32).max(f32::MIN_POSITIVE);
        ManualRegion {
            x: r.x as f32,
            y: r.y as f32,
            width: positive(r.width),
            height: positive(r.height),
            start_s: r.start_s,
            end_s: r.end_s,
        }
    }
}

impl From<ManualRegion> for models::media::BlurRegion {
    fn from(r: ManualRegion) -> Self {
        models::media::BlurRegion {
            x: f64::from(r.x),
            y: f64::from(r.y),
            width: f64::from(r.width),
            height: f64::from(r.height),
            start_s: r.start_s,
            end_s: r.end_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping() {
        let a = Rect::new(0.0, 0.0, 10.0, 10.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&Rect::new(20.0, 20.0, 5.0, 5.0)), 0.0);
        assert!((a.iou(&Rect::new(5.0, 0.0, 10.0, 10.0)) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn pixels_round_outwards_and_clip() {
        let r = Rect::new(-3.5, 2.2, 10.0, 5.0);
        assert_eq!(r.to_pixels(100, 100), Some(PixelRect { x0: 0, y0: 2, x1: 7, y1: 8 }));
        assert_eq!(Rect::new(200.0, 0.0, 5.0, 5.0).to_pixels(100, 100), None);
        let e = Rect::new(10.0, 10.0, 10.0, 20.0).enlarged(2.0);
        assert_eq!(e, Rect::new(5.0, 0.0, 20.0, 40.0));
    }

    #[test]
    fn manual_regions_scale_with_the_picture() {
        let region = ManualRegion { x: 0.5, y: 0.25, width: 0.25, height: 0.5, start_s: 1.0, end_s: 2.0 };
        assert_eq!(region.to_rect(200, 100), Rect::new(100.0, 25.0, 50.0, 50.0));
        assert!(!region.is_active_at(0.9));
        assert!(region.is_active_at(1.5));
        assert!(!region.is_active_at(2.1));
    }
}
