//! Command line: `process`, `probe` and `faces` on one file, with the library's defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use media_worker::{FaceBlurConfig, FaceConfig, ManualRegion, ProcessConfig, TrackConfig};

#[derive(Parser, Debug)]
#[command(name = "media-worker", about = "Transcodes photos and videos and blurs faces")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes the publishable version of INPUT (photo or video, chosen by content) to OUTPUT,
    /// plus OUTPUT's stem + `.poster.jpg` (videos) and `.thumb.jpg`.
    Process {
        input: PathBuf,
        output: PathBuf,
        #[command(flatten)]
        options: Options,
        /// Blur faces found by the detector.
        #[arg(long)]
        blur: bool,
        /// Region to blur whatever the detector finds: x,y,width,height as fractions of the
        /// picture, then start,end in seconds. Repeat for more regions.
        #[arg(long = "region", value_parser = parse_region)]
        regions: Vec<ManualRegion>,
    },
    /// Prints what the pipeline reads from INPUT's headers, as JSON.
    Probe {
        input: PathBuf,
        #[command(flatten)]
        options: Options,
    },
    /// Prints the faces found in INPUT, per detection frame, as JSON (the preview).
    Faces {
        input: PathBuf,
        #[command(flatten)]
        options: Options,
    },
}

#[derive(clap::Args, Debug)]
struct Options {
    /// Output fits in this many lines (720 for 720p), whichever way the video is held.
    #[arg(long, default_value_t = 720)]
    max_height: u32,
    /// Longest accepted video, in seconds.
    #[arg(long, default_value_t = 600)]
    max_duration_secs: u64,
    /// CenterFace model (default: $KLASS_FACE_MODEL or $HOME/.cache/klass/models/centerface.onnx).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Run the face detector on one frame out of this many.
    #[arg(long, default_value_t = 5)]
    detect_interval: u32,
    /// Coarseness of the blur: blocks across the longer side of a face box.
    #[arg(long, default_value_t = media_worker::blur::DEFAULT_BLOCKS_ACROSS)]
    blur_blocks: u32,
    /// libx264 preset.
    #[arg(long, default_value = "veryfast")]
    preset: String,
}

impl Options {
    fn config(&self, blur: bool) -> ProcessConfig {
        let mut config = ProcessConfig::default();
        config.video.max_height = self.max_height;
        config.video.preset = self.preset.clone();
        config.limits.max_duration = Duration::from_secs(self.max_duration_secs);
        if blur {
            let face = FaceConfig {
                model_path: self.model.clone().unwrap_or_else(FaceConfig::default_model_path),
                blocks_across: self.blur_blocks,
                ..FaceConfig::default()
            };
            let track = TrackConfig { detect_interval: self.detect_interval, ..TrackConfig::default() };
            config.face_blur = Some(FaceBlurConfig { face, track });
        }
        config
    }
}

fn parse_region(value: &str) -> Result<ManualRegion, String> {
    let numbers: Vec<f64> = value
        .split(',')
        .map(|part| part.trim().parse::<f64>().map_err(|err| format!("{part:?}: {err}")))
        .collect::<Result<_, _>>()?;
    let [x, y, width, height, start_s, end_s] = numbers[..] else {
        return Err("expected x,y,width,height,start,end".into());
    };
    Ok(ManualRegion { x: x as f32, y: y as f32, width: width as f32, height: height as f32, start_s, end_s })
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Process { input, output, options, blur, regions } => {
            let mut config = options.config(blur);
            config.manual_regions = regions;
            process(&input, &output, &config)
        }
        Command::Probe { input, options } => {
            let info = media_worker::probe(&input, &options.config(false).limits)
                .with_context(|| format!("probing {}", input.display()))?;
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(())
        }
        Command::Faces { input, options } => {
            let frames = media_worker::detect_faces(&input, &options.config(true))
                .with_context(|| format!("finding faces in {}", input.display()))?;
            println!("{}", serde_json::to_string_pretty(&frames)?);
            Ok(())
        }
    }
}

fn process(input: &Path, output: &Path, config: &ProcessConfig) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% (eta {eta})",
        )
        .context("progress bar template")?,
    );
    let started = std::time::Instant::now();
    let result = media_worker::process(input, output, config, &mut |fraction| {
        bar.set_position((fraction * 1000.0) as u64);
        std::ops::ControlFlow::Continue(())
    });
    bar.finish_and_clear();
    let (info, result) = result.map_err(|err| {
        let code = err.code();
        anyhow::Error::new(err).context(format!("processing {} failed [{code}]", input.display()))
    })?;
    if !result.poster_jpeg.is_empty() {
        write_beside(output, "poster.jpg", &result.poster_jpeg)?;
    }
    write_beside(output, "thumb.jpg", &result.thumbnail_jpeg)?;
    eprintln!(
        "{:?} {}x{} -> {}x{}, {} frames, {} face detections, {} frames blurred, in {:.1} s",
        info.kind,
        info.width,
        info.height,
        result.width,
        result.height,
        result.n_frames,
        result.n_face_detections,
        result.n_blurred_frames,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn write_beside(output: &Path, suffix: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let stem = output.file_stem().and_then(|s| s.to_str()).unwrap_or("output");
    let path = output.with_file_name(format!("{stem}.{suffix}"));
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}
