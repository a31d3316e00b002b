use super::*;

#[test]
fn one_peak_decodes_to_one_box() {
    // A 2x2 output grid (an 8x8 input): one cell above the threshold, with a 8x4 (h x w) face.
    let heatmap = [0.05, 0.9, 0.1, 0.0];
    let scale = [2f32.ln(), 2f32.ln(), 2f32.ln(), 2f32.ln(), 1f32.ln(), 1f32.ln(), 1f32.ln(), 1f32.ln()];
    let offset = [0.0; 8];
    let maps = OutputMaps { heatmap: &heatmap, scale: &scale, offset: &offset, out_w: 2, out_h: 2 };
    let detections = decode(&maps, (8.0, 8.0), 0.2);
    assert_eq!(detections.len(), 1);
    let rect = detections[0].rect;
    // Center of cell (row 0, col 1) is (6, 2): the top is clipped to 0, then the height is kept.
    assert_eq!((rect.x, rect.y, rect.w), (4.0, 0.0, 4.0));
    assert!((rect.h - 8.0).abs() < 1e-5, "{rect:?}");
}

#[test]
fn overlapping_boxes_keep_the_best() {
    let detection = |x: f32, score: f32| Detection { rect: Rect::new(x, 0.0, 10.0, 10.0), score };
    let kept =
        non_maximum_suppression(vec![detection(0.0, 0.5), detection(1.0, 0.9), detection(50.0, 0.3)], 0.3);
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].score, 0.9);
    assert_eq!(kept[1].rect.x, 50.0);
}

#[test]
fn missing_model_is_an_error_not_an_empty_blur() {
    let config = FaceConfig { model_path: "/nonexistent/centerface.onnx".into(), ..FaceConfig::default() };
    let err = FaceDetector::new(config).err().expect("no model, no detector");
    assert_eq!(err.code(), "face_model_missing");
}
