//! What the job queue and the object store add to the pipeline: the same photos and videos run
//! once through `media_worker::process` directly, and once as jobs (SQLite queue, local store,
//! workers that run each job in a child process, lease heartbeats, the original rewritten without
//! metadata, upload of the outputs). Prints figures; see docs/benchmarks.md.
//!
//! Run: `cargo bench -p media-worker --bench queue` (needs `bash scripts/install-deps.sh --test-media`).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use media_worker::metrics::WorkerMetrics;
use media_worker::queue::{self, JobSpec, JobState, Queue};
use media_worker::worker::{Worker, WorkerConfig};
use models::media::MediaKind;
use models::{ClassId, MediaId};

fn video(dir: &Path, i: usize) -> anyhow::Result<PathBuf> {
    let output = dir.join(format!("clip-{i}.mp4"));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "fatal", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=s=1280x720:r=30:d=5,hue=h={}", i * 40))
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=d=5",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&output)
        .status()?;
    anyhow::ensure!(status.success(), "ffmpeg failed");
    Ok(output)
}

async fn run_as_jobs(
    inputs: &[(PathBuf, MediaKind)],
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<f64>)> {
    let dir = tempfile::tempdir()?;
    let pool =
        queue::open_pool(&format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display()), 4).await?;
    queue::migrate(&pool).await?;
    let jobs = Queue::new(pool);
    let store = media_worker::store::open(None, &dir.path().join("media"), &BTreeMap::new())?;
    let class = ClassId::new("bench")?;
    for (i, (path, kind)) in inputs.iter().enumerate() {
        let key = format!("originals/bench/m{i}");
        media_worker::store::upload(store.as_ref(), path, &key).await?;
        let spec = JobSpec {
            input_key: key,
            declared_kind: *kind,
            blur_faces: false,
            manual_regions: vec![],
            max_duration_s: 600,
        };
        let mut conn = jobs.pool().acquire().await?;
        queue::enqueue(&mut conn, &MediaId::new(format!("m{i}"))?, &class, &spec, 3).await?;
    }
    let config = WorkerConfig {
        concurrency,
        poll_interval_ms: 20,
        job_program: Some(env!("CARGO_BIN_EXE_media-worker").into()),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(jobs.clone(), store, config, WorkerMetrics::new(&prometheus::Registry::new()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let running = tokio::spawn(worker.run(stopped));
    let mut elapsed = Vec::new();
    loop {
        let counts = jobs.counts().await?;
        let done = counts.iter().find(|(s, _)| *s == JobState::Done).map_or(0, |(_, n)| *n);
        anyhow::ensure!(
            !counts.iter().any(|(s, n)| *s == JobState::Failed && *n > 0),
            "a job failed: {counts:?}"
        );
        if done as usize == inputs.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = started.elapsed();
    for i in 0..inputs.len() {
        let status = jobs.status(&MediaId::new(format!("m{i}"))?).await?.expect("job");
        elapsed.push(status.result.expect("result").elapsed_s);
    }
    stop.send(true)?;
    running.await?;
    Ok((total, elapsed))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let media = media_worker::cache_dir().join("test-media");
    let photo = media.join("astronaut.png");
    anyhow::ensure!(
        photo.is_file(),
        "{} missing: run `bash scripts/install-deps.sh --test-media`",
        photo.display()
    );
    let dir = tempfile::tempdir()?;
    let mut inputs: Vec<(PathBuf, MediaKind)> = (0..20).map(|_| (photo.clone(), MediaKind::Photo)).collect();
    for i in 0..4 {
        inputs.push((video(dir.path(), i)?, MediaKind::Video));
    }

    // The pipeline alone, one file after the other.
    let started = Instant::now();
    let mut direct = Vec::new();
    for (i, (path, _)) in inputs.iter().enumerate() {
        let out = dir.path().join(format!("direct-{i}.out"));
        let one = Instant::now();
        media_worker::process(path, &out, &media_worker::ProcessConfig::default(), &mut |_| {
            ControlFlow::Continue(())
        })?;
        direct.push(one.elapsed().as_secs_f64());
    }
    let direct_total = started.elapsed();
    println!(
        "20 photos (astronaut.png 512x512) + 4 videos (5 s 720p, H.264 + AAC), no blur, cores: {}",
        std::thread::available_parallelism()?
    );
    println!("| run | wall | per job | overhead per job vs direct |");
    println!("|---|---|---|---|");
    let n = inputs.len() as f64;
    println!(
        "| pipeline directly, sequential | {:.2} s | {:.0} ms | - |",
        direct_total.as_secs_f64(),
        direct_total.as_secs_f64() / n * 1e3
    );
    // The bare cost of a job's child process: start the binary, read a request, answer. The
    // input does not exist, so the child stops at the probe.
    let command = media_worker::sandbox::ChildCommand {
        program: env!("CARGO_BIN_EXE_media-worker").into(),
        args: vec![media_worker::worker::JOB_SUBCOMMAND.to_owned()],
    };
    let request = media_worker::child::ChildRequest {
        input: dir.path().join("missing"),
        spec: JobSpec {
            input_key: "missing".into(),
            declared_kind: MediaKind::Photo,
            blur_faces: false,
            manual_regions: Vec::new(),
            max_duration_s: 600,
        },
        worker: WorkerConfig::default(),
    };
    let n_starts = 20;
    let started = Instant::now();
    for _ in 0..n_starts {
        let ended = media_worker::sandbox::run_child(&command, &Default::default(), &request, |_| {}).await;
        anyhow::ensure!(ended.is_err(), "a missing input fails");
    }
    println!(
        "| a job's child process alone (start, request, answer) | - | {:.1} ms | - |",
        started.elapsed().as_secs_f64() / f64::from(n_starts) * 1e3
    );
    for concurrency in [1, 2] {
        let (total, pipeline) = run_as_jobs(&inputs, concurrency).await?;
        let overhead = if concurrency == 1 {
            format!("{:.0} ms", (total.as_secs_f64() - pipeline.iter().sum::<f64>()) / n * 1e3)
        } else {
            "-".into()
        };
        println!(
            "| jobs, {concurrency} worker slot(s) | {:.2} s | {:.0} ms | {overhead} |",
            total.as_secs_f64(),
            total.as_secs_f64() / n * 1e3
        );
    }
    Ok(())
}
