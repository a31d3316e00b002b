//! Transcoding time against the `ffmpeg` CLI with the same settings on the same input, and face
//! blur frames per second at 720p. Prints figures; see docs/benchmarks.md.
//!
//! Run: `cargo bench -p media-worker --bench transcode` (needs the test media and the face model
//! from `bash scripts/install-deps.sh --test-media`). `BENCH_RUNS` sets the repetitions (default 3).

use std::ops::ControlFlow;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use media_worker::{FaceBlurConfig, FaceConfig, FaceDetector, ProcessConfig};

fn ffmpeg(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "fatal", "-nostdin", "-y"])
        .args(args)
        .status()?;
    anyhow::ensure!(status.success(), "ffmpeg {args:?} failed");
    Ok(())
}

/// CPU seconds (user + system) used so far by this process, all threads, and by its waited-for
/// children, from /proc (Linux). Less sensitive than wall time to other work on the machine.
/// Megamind scaled to `width`x`height`, with faces and audio, as a phone-like H.264 input.
fn scaled_megamind(
    megamind: &Path,
    dir: &Path,
    width: u32,
    height: u32,
) -> anyhow::Result<std::path::PathBuf> {
    let output = dir.join(format!("megamind-{height}p.mp4"));
    let scale = format!("scale={width}:{height}");
    ffmpeg(&[
        "-i",
        megamind.to_str().unwrap_or_default(),
        "-vf",
        &scale,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "18",
        "-c:a",
        "aac",
        "-b:a",
        "192k",
        output.to_str().unwrap_or_default(),
    ])?;
    Ok(output)
}

fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect())
        .unwrap_or_default();
    // utime, stime, cutime, cstime are fields 14 to 17, in clock ticks of 1/100 s on Linux.
    let field = |n: usize| fields.get(n - 3).copied().unwrap_or(0.0) / 100.0;
    (field(14) + field(15), field(16) + field(17))
}

fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time_runs(n_runs: usize, mut run: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut runs = Vec::new();
    for _ in 0..n_runs {
        let started = Instant::now();
        run()?;
        runs.push(started.elapsed());
    }
    Ok(median(runs))
}

/// The ffmpeg CLI doing what `media_worker::process` does with `config`: same filters, encoder
/// settings, audio and muxer options, metadata dropped.
fn ffmpeg_cli_equivalent(
    input: &Path,
    output: &Path,
    size: (u32, u32),
    config: &ProcessConfig,
) -> anyhow::Result<()> {
    let filters = format!("scale={}:{}:flags=bicubic,setsar=1,format=yuv420p", size.0, size.1);
    let crf = config.video.crf.to_string();
    let bitrate = config.video.audio_bitrate.to_string();
    ffmpeg(&[
        "-i",
        input.to_str().unwrap_or_default(),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-vf",
        &filters,
        "-c:v",
        "libx264",
        "-preset",
        &config.video.preset,
        "-crf",
        &crf,
        "-c:a",
        "aac",
        "-b:a",
        &bitrate,
        "-ac",
        "2",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        output.to_str().unwrap_or_default(),
    ])
}

/// The faces on every frame of a video, decoded by the ffmpeg CLI.
fn faces_per_frame(
    detector: &mut FaceDetector,
    video: &Path,
) -> anyhow::Result<Vec<Vec<media_worker::face::Detection>>> {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(video)
        .output()?;
    let size = String::from_utf8_lossy(&probe.stdout);
    let (width, height) =
        size.trim().split_once(',').ok_or_else(|| anyhow::anyhow!("no size for {}", video.display()))?;
    let (width, height): (u32, u32) = (width.parse()?, height.parse()?);
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(video)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()?;
    anyhow::ensure!(output.status.success(), "cannot decode {}", video.display());
    let frame_len = (width * height * 3) as usize;
    output.stdout.chunks_exact(frame_len).map(|rgb| Ok(detector.detect_rgb(rgb, width, height)?)).collect()
}

fn main() -> anyhow::Result<()> {
    let n_runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let media = media_worker::cache_dir().join("test-media");
    let megamind = media.join("Megamind.avi");
    anyhow::ensure!(
        megamind.is_file(),
        "{} missing: run `bash scripts/install-deps.sh --test-media`",
        megamind.display()
    );
    let dir = tempfile::tempdir()?;
    // A 1080p input with faces and audio: Megamind scaled up, so that the pipeline scales it down
    // to 720p like a phone video.
    let full_hd = scaled_megamind(&megamind, dir.path(), 1920, 1080)?;
    let hd = scaled_megamind(&megamind, dir.path(), 1280, 720)?;

    println!("runs per figure: {n_runs} (median), cores: {}", std::thread::available_parallelism()?);
    println!("| input | media-worker | ffmpeg CLI | ratio | CPU ours / CLI | CPU ratio | output sizes (ours / CLI) |");
    println!("|---|---|---|---|---|---|---|");
    let config = ProcessConfig::default();
    for (name, input) in [
        ("Megamind.avi 720x528 (11 s, AC3)", megamind.as_path()),
        ("Megamind 1080p -> 720p (11 s, AAC)", full_hd.as_path()),
    ] {
        let ours_out = dir.path().join("ours.mp4");
        let cli_out = dir.path().join("cli.mp4");
        let (_, first) =
            media_worker::process(input, &ours_out, &config, &mut |_| ControlFlow::Continue(()))?;
        let size = (first.width, first.height);
        // Interleaved runs, so that a burst of load on the machine hits both sides alike.
        let (mut ours_runs, mut cli_runs) = (Vec::new(), Vec::new());
        let (mut ours_cpu, mut cli_cpu) = (Vec::new(), Vec::new());
        for _ in 0..n_runs {
            let (self_before, _) = cpu_seconds();
            ours_runs.push(time_runs(1, || {
                media_worker::process(input, &ours_out, &config, &mut |_| ControlFlow::Continue(()))?;
                Ok(())
            })?);
            let (self_after, children_before) = cpu_seconds();
            ours_cpu.push(self_after - self_before);
            cli_runs.push(time_runs(1, || ffmpeg_cli_equivalent(input, &cli_out, size, &config))?);
            cli_cpu.push(cpu_seconds().1 - children_before);
        }
        let (ours, cli) = (median(ours_runs), median(cli_runs));
        let (ours_cpu, cli_cpu) = (median_f64(ours_cpu), median_f64(cli_cpu));
        // Same settings give files of about the same size: a check that the comparison is fair.
        let megabytes = |path: &Path| std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1e6);
        println!(
            "| {name} | {:.2} s | {:.2} s | {:.3} | {ours_cpu:.2} s / {cli_cpu:.2} s | {:.3} | {:.2} MB / {:.2} MB |",
            ours.as_secs_f64(),
            cli.as_secs_f64(),
            ours.as_secs_f64() / cli.as_secs_f64(),
            ours_cpu / cli_cpu,
            megabytes(&ours_out),
            megabytes(&cli_out)
        );
    }

    let model = FaceConfig::default_model_path();
    anyhow::ensure!(model.is_file(), "{} missing: run `bash scripts/install-deps.sh`", model.display());
    let plain_out = dir.path().join("plain.mp4");
    let mut n_frames = 0;
    let without_blur = time_runs(n_runs, || {
        let (_, result) =
            media_worker::process(&hd, &plain_out, &config, &mut |_| ControlFlow::Continue(()))?;
        n_frames = result.n_frames;
        Ok(())
    })?;
    println!();
    println!("720p face blur, {n_frames} frames (Megamind, 982x720 displayed, 2 to 3 faces per frame):");
    println!(
        "  transcode without blur: {:.2} s = {:.1} frames/s",
        without_blur.as_secs_f64(),
        n_frames as f64 / without_blur.as_secs_f64()
    );
    // Recall: faces the detector finds on every frame of the unblurred output (at 1280 px, more
    // than the pipeline uses), against those it still finds, at the same place, in the blurred one.
    let mut truth_detector = FaceDetector::new(FaceConfig {
        model_path: model.clone(),
        detect_max_side: 1280,
        ..FaceConfig::default()
    })?;
    let truth = faces_per_frame(&mut truth_detector, &plain_out)?;
    let n_truth: usize = truth.iter().map(Vec::len).sum();
    println!("  reference: {n_truth} faces on {} frames", truth.len());
    println!("| detection every | detector input | with blur | frames/s | faces still found | recall |");
    println!("|---|---|---|---|---|---|");
    let variants: Vec<(u32, u32)> = std::env::var("BLUR_VARIANTS")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|pair| pair.split_once('x'))
                .filter_map(|(i, s)| Some((i.parse().ok()?, s.parse().ok()?)))
                .collect()
        })
        .unwrap_or_else(|| vec![(4, 640), (5, 640)]);
    for (detect_interval, detect_max_side) in variants {
        let blur = ProcessConfig {
            face_blur: Some(FaceBlurConfig {
                face: FaceConfig { model_path: model.clone(), detect_max_side, ..FaceConfig::default() },
                track: media_worker::TrackConfig { detect_interval, ..Default::default() },
            }),
            ..ProcessConfig::default()
        };
        let blurred_out = dir.path().join("blurred.mp4");
        let with_blur = time_runs(n_runs, || {
            media_worker::process(&hd, &blurred_out, &blur, &mut |_| ControlFlow::Continue(()))?;
            Ok(())
        })?;
        let residual = faces_per_frame(&mut truth_detector, &blurred_out)?;
        let n_missed: usize = truth
            .iter()
            .zip(&residual)
            .map(|(expected, left)| {
                left.iter().filter(|l| expected.iter().any(|e| e.rect.iou(&l.rect) > 0.3)).count()
            })
            .sum();
        println!(
            "| {detect_interval} frames | {detect_max_side} px | {:.2} s | {:.1} | {n_missed} | {:.4} |",
            with_blur.as_secs_f64(),
            n_frames as f64 / with_blur.as_secs_f64(),
            1.0 - n_missed as f64 / n_truth.max(1) as f64
        );
    }

    // The detector alone on 720p frames, as if it ran on every frame.
    let mut detector = FaceDetector::new(FaceConfig { model_path: model, ..FaceConfig::default() })?;
    let frame = image::RgbImage::from_fn(1280, 720, |x, y| {
        [(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8].into()
    });
    detector.detect_rgb(frame.as_raw(), 1280, 720)?;
    let n_detections = 20;
    let started = Instant::now();
    for _ in 0..n_detections {
        detector.detect_rgb(frame.as_raw(), 1280, 720)?;
    }
    let per_detection = started.elapsed() / n_detections;
    println!(
        "  detector alone (640 px input): {:.1} ms per frame = {:.1} frames/s",
        per_detection.as_secs_f64() * 1000.0,
        1.0 / per_detection.as_secs_f64()
    );
    Ok(())
}
