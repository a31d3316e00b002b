//! Command line: `process`, `probe` and `faces` on one file, with the library's defaults, and
//! `work`, the queue worker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use media_worker::{FaceBlurConfig, FaceConfig, ManualRegion, ProcessConfig, TrackConfig};

#[derive(Parser, Debug)]
#[command(name = "media-worker", version, about = "Transcodes photos and videos and blurs faces")]
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
    /// Claims jobs from the queue in the database and processes them until SIGTERM or Ctrl-C,
    /// with a progress bar per job on a terminal. The database and storage defaults are those of
    /// `signaling serve`, so both find the same files on one machine.
    Work(WorkArgs),
    /// Runs one job as a worker starts it: a request on standard input, progress and the result
    /// on standard output (not for people).
    #[command(name = "media-job", hide = true)]
    MediaJob,
}

#[derive(clap::Args, Debug)]
struct WorkArgs {
    /// Directory of the embedded defaults: the SQLite database and the `media` folder.
    #[arg(long, env = "KLASS_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: `<data-dir>/klass.db`.
    #[arg(long, env = "KLASS_DATABASE_URL")]
    database_url: Option<String>,
    /// `s3://bucket` (with `AWS_*` variables or --storage-option); default: `<data-dir>/media`.
    #[arg(long, env = "KLASS_STORAGE_URL")]
    storage_url: Option<String>,
    /// object_store option as KEY=VALUE (aws_endpoint, aws_allow_http, ...). Repeatable.
    #[arg(long = "storage-option", value_parser = parse_key_value)]
    storage_options: Vec<(String, String)>,
    /// Serves Prometheus metrics on http://ADDR/metrics; `off` to disable.
    #[arg(long, env = "KLASS_WORKER_METRICS_ADDR", default_value = "127.0.0.1:9184")]
    metrics_addr: String,
    /// Jobs at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds without a heartbeat before another worker takes a job over.
    #[arg(long, default_value_t = 60)]
    lease_secs: u64,
    /// Milliseconds between looks at the queue when idle.
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
    /// CenterFace model (default: $KLASS_FACE_MODEL or $HOME/.cache/klass/models/centerface.onnx).
    #[arg(long, env = "KLASS_FACE_MODEL")]
    model: Option<PathBuf>,
    /// Output fits in this many lines (720 for 720p).
    #[arg(long, default_value_t = 720)]
    max_height: u32,
    /// Where jobs keep their files while running (default: the system's temporary directory).
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
}

fn parse_key_value(value: &str) -> Result<(String, String), String> {
    let (key, value) = value.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((key.to_owned(), value.to_owned()))
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
    #[arg(long, default_value_t = media_worker::TrackConfig::default().detect_interval)]
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
        Command::MediaJob => std::process::exit(media_worker::child::main()),
        Command::Work(args) => {
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(work(args))
        }
    }
}

async fn work(args: WorkArgs) -> anyhow::Result<()> {
    use media_worker::{metrics::WorkerMetrics, queue, store, worker};

    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", args.data_dir.join("klass.db").display()));
    if args.database_url.is_none() {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    }
    let pool = queue::open_pool(&database_url, 4).await.context("cannot open the database")?;
    queue::migrate(&pool).await.context("cannot migrate the job queue")?;
    let options = args.storage_options.iter().cloned().collect();
    let store = store::open(args.storage_url.as_deref(), &args.data_dir.join("media"), &options)
        .context("cannot open media storage")?;
    let registry = prometheus::Registry::new();
    let metrics = WorkerMetrics::new(&registry);
    let config = worker::WorkerConfig {
        concurrency: args.concurrency,
        lease_secs: args.lease_secs,
        poll_interval_ms: args.poll_interval_ms,
        face_model: args.model.clone(),
        max_height: args.max_height,
        scratch_dir: args.scratch_dir.clone(),
        ..worker::WorkerConfig::default()
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if args.metrics_addr != "off" {
        let listener = tokio::net::TcpListener::bind(&args.metrics_addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
        tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
        tokio::spawn(serve_metrics(listener, registry));
    }
    let worker = worker::Worker::new(queue::Queue::new(pool), store, config, metrics).with_progress_bars();
    let running = tokio::spawn(worker.run(stopped));
    shutdown_signal().await;
    tracing::info!("stopping: the job in progress goes back to the queue");
    let _ = stop.send(true);
    running.await.context("worker task failed")?;
    Ok(())
}

async fn serve_metrics(listener: tokio::net::TcpListener, registry: prometheus::Registry) {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = String::new();
                    let encoded = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut body);
                    match encoded {
                        Ok(()) => (axum::http::StatusCode::OK, body),
                        Err(err) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    if let Err(err) = axum::serve(listener, app).await {
        tracing::error!(cause = %err, "metrics server stopped");
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminate = async {
        match sigterm.as_mut() {
            Some(sigterm) => {
                sigterm.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
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
