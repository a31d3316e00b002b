//! The worker: claims jobs from the [`queue`](crate::queue), runs each in a child process
//! ([`crate::sandbox`], [`crate::child`]) with resource limits, keeps its lease alive while it
//! runs, and stores the outputs and the original rewritten without metadata. A crash, a hang or a
//! limit hit in the child fails that job with a code; the worker and the server go on.
//!
//! Crash safety: outputs go to keys fixed by the medium and its version, and the job is marked done
//! only after they are all stored. A worker killed at any point leaves a job whose lease expires;
//! the next worker runs it again and writes the same keys. A worker that lost its lease (it stalled
//! past the lease) stops at the next heartbeat and cannot mark the job.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument;

use crate::child::{self, ChildRequest, ChildResult};
use crate::metrics::WorkerMetrics;
use crate::pipeline::{FaceBlurConfig, ProcessConfig};
use crate::probe::ProbeLimits;
use crate::queue::{self, ClaimedJob, JobFiles, JobResult, JobState, Queue, Retry};
use crate::sandbox::{self, ChildCommand, ChildFailure, JobLimits};
use crate::store::{self, StoreError};
use crate::{FaceConfig, FaceFrame, TrackConfig};

/// How a worker process runs jobs. The same section configures `media-worker work` and the
/// workers `signaling serve` runs in-process.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Jobs at once in this process. FFmpeg already uses every core for one video.
    pub concurrency: usize,
    /// A job whose worker has not renewed its lease for this long is given to another worker.
    pub lease_secs: u64,
    /// How often an idle worker looks for a job.
    pub poll_interval_ms: u64,
    /// CenterFace model; default `$KLASS_FACE_MODEL` or `~/.cache/klass/models/centerface.onnx`.
    pub face_model: Option<PathBuf>,
    /// Output videos fit in this many lines (720 for 720p).
    pub max_height: u32,
    /// Run the face detector on one frame out of this many (tracked in between).
    pub detect_interval: u32,
    /// Where inputs and outputs are kept while a job runs; default the system's temporary directory.
    pub scratch_dir: Option<PathBuf>,
    /// Limits of each job's child process.
    pub job_limits: JobLimits,
    /// Limits on the media themselves, checked on headers and on decoded data.
    pub media_limits: ProbeLimits,
    /// The executable started for each job with `media-job` (the `signaling` or `media-worker`
    /// binary); default the running executable.
    pub job_program: Option<PathBuf>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 1,
            lease_secs: 60,
            poll_interval_ms: 1000,
            face_model: None,
            max_height: 720,
            detect_interval: TrackConfig::default().detect_interval,
            scratch_dir: None,
            job_limits: JobLimits::default(),
            media_limits: ProbeLimits::default(),
            job_program: None,
        }
    }
}

impl WorkerConfig {
    pub fn model_path(&self) -> PathBuf {
        self.face_model.clone().unwrap_or_else(FaceConfig::default_model_path)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    /// The command that runs one job: `job_program media-job`.
    pub fn child_command(&self) -> std::io::Result<ChildCommand> {
        match &self.job_program {
            Some(program) => {
                Ok(ChildCommand { program: program.clone(), args: vec![JOB_SUBCOMMAND.to_owned()] })
            }
            None => ChildCommand::current_exe(&[JOB_SUBCOMMAND]),
        }
    }

    /// The pipeline's configuration for one job.
    pub fn process_config(&self, spec: &queue::JobSpec) -> ProcessConfig {
        let mut config = ProcessConfig { limits: self.media_limits.clone(), ..ProcessConfig::default() };
        config.video.max_height = self.max_height;
        config.limits.max_duration = Duration::from_secs(spec.max_duration_s);
        if spec.blur_faces {
            config.face_blur = Some(FaceBlurConfig {
                face: FaceConfig { model_path: self.model_path(), ..FaceConfig::default() },
                track: TrackConfig { detect_interval: self.detect_interval, ..TrackConfig::default() },
            });
        }
        config.manual_regions = spec.manual_regions.clone();
        config
    }
}

/// The subcommand of the `signaling` and `media-worker` binaries that runs one job as a child
/// ([`crate::child::main`]).
pub const JOB_SUBCOMMAND: &str = "media-job";

/// A fresh random token: 128 bits in hex.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a job did not produce its outputs.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Child(#[from] ChildFailure),
    #[error("the uploaded original is missing from storage")]
    OriginalMissing,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("local file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the lease was lost to another worker")]
    LeaseLost,
    #[error("the worker is shutting down")]
    ShuttingDown,
}

impl JobError {
    /// The code stored on the job, and whether trying again may help.
    fn code_and_retry(&self) -> (&str, Retry) {
        match self {
            JobError::Child(failure) => match failure.code_and_blame() {
                (code, true) => (code, Retry::Never),
                (code, false) => (code, Retry::Later),
            },
            JobError::OriginalMissing => ("original_missing", Retry::Never),
            JobError::Store(_) | JobError::Io(_) => ("storage_failed", Retry::Later),
            JobError::LeaseLost | JobError::ShuttingDown => ("cancelled", Retry::Later),
        }
    }
}

/// The faces a job found, stored beside its outputs for the preview.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FacesFile {
    pub frames: Vec<FaceFrame>,
}

pub struct Worker {
    queue: Queue,
    store: Arc<dyn ObjectStore>,
    config: WorkerConfig,
    metrics: WorkerMetrics,
    id: String,
    bars: Option<indicatif::MultiProgress>,
}

impl Worker {
    pub fn new(
        queue: Queue,
        store: Arc<dyn ObjectStore>,
        config: WorkerConfig,
        metrics: WorkerMetrics,
    ) -> Worker {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
        let id = format!("{host}-{}-{}", std::process::id(), &random_token()[..8]);
        Worker { queue, store, config, metrics, id, bars: None }
    }

    /// Shows a progress bar per running job on the terminal (the `media-worker work` command).
    pub fn with_progress_bars(mut self) -> Worker {
        self.bars = Some(indicatif::MultiProgress::new());
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs `concurrency` job slots and a queue-depth counter until `shutdown` turns true. A job
    /// in progress at shutdown is handed back to the queue.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let worker = Arc::new(self);
        let model = worker.config.model_path();
        if !model.is_file() {
            tracing::error!(
                path = %model.display(),
                "face model missing: jobs that ask for face blur will fail with face_model_missing \
                 (run scripts/install-deps.sh or set KLASS_FACE_MODEL)"
            );
        }
        tracing::info!(worker = %worker.id, concurrency = worker.config.concurrency, "media worker started");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..worker.config.concurrency.max(1) {
            tasks.spawn(worker.clone().slot(shutdown.clone()));
        }
        tasks.spawn(worker.clone().count_queue(shutdown));
        while tasks.join_next().await.is_some() {}
        tracing::info!(worker = %worker.id, "media worker stopped");
    }

    async fn count_queue(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.queue.counts().await {
                Ok(counts) => self.metrics.set_queue(&counts),
                Err(err) => tracing::warn!(cause = %err, "cannot count media jobs"),
            }
            if wait_or_shutdown(&mut shutdown, Duration::from_secs(5)).await {
                return;
            }
        }
    }

    async fn slot(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let idle = Duration::from_millis(self.config.poll_interval_ms.max(10));
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.queue.claim(&self.id, self.config.lease()).await {
                Ok(Some(job)) => {
                    let span = tracing::info_span!(
                        "job",
                        media = %job.media_id,
                        version = job.version,
                        attempt = job.attempts
                    );
                    self.run_job(job, &mut shutdown).instrument(span).await
                }
                Ok(None) => {
                    if wait_or_shutdown(&mut shutdown, idle).await {
                        return;
                    }
                }
                Err(err) => {
                    tracing::warn!(cause = %err, "cannot claim a media job");
                    if wait_or_shutdown(&mut shutdown, idle).await {
                        return;
                    }
                }
            }
        }
    }

    async fn run_job(&self, job: ClaimedJob, shutdown: &mut watch::Receiver<bool>) {
        tracing::info!(kind = job.kind.as_str(), "job claimed");
        let kind = job.kind.as_str();
        let started = Instant::now();
        self.metrics.running.inc();
        let outcome = self.execute(&job, shutdown).await;
        self.metrics.running.dec();
        let result_label = match outcome {
            Ok((result, output)) => match self.queue.complete(&job, &result).await {
                Ok(true) => {
                    self.record_done(&job, &result, &output, started.elapsed());
                    self.forget_older_versions(&job).await;
                    "done"
                }
                Ok(false) => {
                    self.after_lost_lease(&job).await;
                    "lease_lost"
                }
                Err(err) => {
                    tracing::error!(cause = %err, "cannot mark the job done; it will run again");
                    "failed"
                }
            },
            Err(JobError::LeaseLost) => {
                tracing::warn!("lease lost while working: another worker has the job");
                "lease_lost"
            }
            Err(JobError::ShuttingDown) => {
                if let Err(err) = self.queue.release(&job).await {
                    tracing::warn!(cause = %err, "cannot hand the job back; it runs again when its lease expires");
                }
                "released"
            }
            Err(err) => {
                let (code, retry) = err.code_and_retry();
                let message = err.to_string();
                match self.queue.fail(&job, code, &message, retry).await {
                    Ok(Some(JobState::Queued)) => {
                        tracing::warn!(code, cause = %message, "job failed; it will be retried");
                        "retried"
                    }
                    Ok(Some(_)) if retry == Retry::Never => {
                        tracing::info!(code, cause = %message, "file refused");
                        "refused"
                    }
                    Ok(_) => {
                        tracing::error!(code, cause = %message, "job failed");
                        "failed"
                    }
                    Err(db) => {
                        tracing::error!(code, cause = %message, db = %db, "job failed and cannot be recorded");
                        "failed"
                    }
                }
            }
        };
        self.metrics.jobs.with_label_values(&[kind, result_label]).inc();
    }

    fn record_done(&self, job: &ClaimedJob, result: &JobResult, output: &ChildResult, elapsed: Duration) {
        let metrics = &self.metrics;
        metrics.job_duration.with_label_values(&[job.kind.as_str()]).observe(elapsed.as_secs_f64());
        metrics.frames.inc_by(output.stats.n_frames);
        metrics.faces_blurred.inc_by(output.stats.n_face_detections);
        if let Some(duration) = result.stats.duration_s {
            if result.elapsed_s > 0.0 {
                metrics.realtime_factor.observe(duration / result.elapsed_s);
            }
        }
        tracing::info!(
            elapsed_s = elapsed.as_secs_f64(),
            frames = output.stats.n_frames,
            faces = output.stats.n_face_detections,
            "job done"
        );
    }

    /// Runs the job in a child process and stores the outputs; heartbeats renew the lease
    /// meanwhile. A file refused for its own fault has its original deleted: it will never be
    /// published, and it may hold what the metadata rewrite would have removed.
    async fn execute(
        &self,
        job: &ClaimedJob,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(JobResult, ChildResult), JobError> {
        let outcome = self.run_in_child(job, shutdown).await;
        if let Err(JobError::Child(failure)) = &outcome {
            if failure.code_and_blame().1 {
                if let Err(err) = store::delete(self.store.as_ref(), &job.spec.input_key).await {
                    tracing::warn!(cause = %err, "cannot delete the original of a refused file");
                }
            }
        }
        outcome
    }

    async fn run_in_child(
        &self,
        job: &ClaimedJob,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(JobResult, ChildResult), JobError> {
        let scratch_root = self.config.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
        tokio::fs::create_dir_all(&scratch_root).await?;
        let scratch = tempfile::Builder::new().prefix("klass-job-").tempdir_in(&scratch_root)?;
        let input = scratch.path().join("input");
        store::download(self.store.as_ref(), &job.spec.input_key, &input).await.map_err(|err| {
            if err.is_not_found() {
                JobError::OriginalMissing
            } else {
                JobError::Store(err)
            }
        })?;
        let command = self.config.child_command()?;
        // Resolved here: the child has no environment to find the model's default path in.
        let worker = WorkerConfig { face_model: Some(self.config.model_path()), ..self.config.clone() };
        let request = ChildRequest { input, spec: job.spec.clone(), worker };

        let progress = AtomicU32::new(0);
        let started = Instant::now();
        let child_run = sandbox::run_child(&command, &self.config.job_limits, &request, |percent| {
            progress.store(u32::from(percent), Ordering::Relaxed)
        });
        tokio::pin!(child_run);

        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(indicatif::ProgressBar::new(100));
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos:>3}%")
            {
                bar.set_style(style);
            }
            bar.set_message(format!("{} {}", job.kind.as_str(), job.media_id));
            bar
        });
        let lease = self.config.lease();
        let mut beat = tokio::time::interval((lease / 3).min(Duration::from_secs(1)));
        // Leaving this loop early drops `child_run`, which kills the child.
        let outcome = loop {
            tokio::select! {
                ended = &mut child_run => break ended.map_err(JobError::Child),
                _ = beat.tick() => {
                    let percent = progress.load(Ordering::Relaxed).min(99) as u8;
                    if let Some(bar) = &bar {
                        bar.set_position(u64::from(percent));
                    }
                    match self.queue.heartbeat(job, lease, percent).await {
                        Ok(true) => {}
                        Ok(false) => break Err(JobError::LeaseLost),
                        // The database may come back before the lease runs out; keep working.
                        Err(err) => tracing::warn!(cause = %err, "cannot renew the lease"),
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break Err(JobError::ShuttingDown);
                    }
                }
            }
        };
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let output_meta = outcome?;
        let elapsed_s = started.elapsed().as_secs_f64();

        let file_name = child::media_file_name(job.kind);
        let key = |file: &str| queue::output_key(&job.class_id, &job.media_id, job.version, file);
        let media_key = key(file_name);
        let media_path = scratch.path().join(file_name);
        let media_bytes = store::upload(self.store.as_ref(), &media_path, &media_key).await?;
        // The original loses its metadata for good: the clean copy replaces it under the same key
        // (or, when it could not be rewritten losslessly, the published version does).
        let clean_original = if output_meta.has_clean_original {
            scratch.path().join(child::CLEAN_ORIGINAL)
        } else {
            media_path.clone()
        };
        store::upload(self.store.as_ref(), &clean_original, &job.spec.input_key).await?;
        let poster = if output_meta.has_poster {
            let poster_key = key(child::POSTER);
            store::upload(self.store.as_ref(), &scratch.path().join(child::POSTER), &poster_key).await?;
            Some(poster_key)
        } else {
            None
        };
        let thumbnail = key(child::THUMBNAIL);
        store::upload(self.store.as_ref(), &scratch.path().join(child::THUMBNAIL), &thumbnail).await?;
        let faces = key(child::FACES);
        store::upload(self.store.as_ref(), &scratch.path().join(child::FACES), &faces).await?;
        let result = JobResult {
            kind: job.kind,
            stats: output_meta.stats.clone(),
            files: JobFiles { media: media_key, media_bytes, poster, thumbnail, faces },
            elapsed_s,
        };
        Ok((result, output_meta))
    }

    /// The job could not be marked done. If another worker took it over, that worker writes the
    /// same keys and finishes. If the job is gone (its class was deleted meanwhile), what this run
    /// wrote must not outlive it.
    async fn after_lost_lease(&self, job: &ClaimedJob) {
        match self.queue.status(&job.media_id).await {
            Ok(Some(_)) => {
                tracing::warn!("lease lost before the job was marked done; the other worker finishes it")
            }
            Ok(None) => {
                tracing::info!("the job was deleted while running; deleting its outputs");
                let prefix = queue::media_prefix(&job.class_id, &job.media_id);
                if let Err(err) = store::delete_prefix(self.store.as_ref(), &prefix).await {
                    tracing::warn!(cause = %err, "cannot delete the outputs of a deleted job");
                }
            }
            Err(err) => tracing::warn!(cause = %err, "cannot tell why the lease was lost"),
        }
    }

    /// Deletes the outputs of earlier versions of the medium, now replaced.
    async fn forget_older_versions(&self, job: &ClaimedJob) {
        let prefix = queue::media_prefix(&job.class_id, &job.media_id);
        let keys = match store::list(self.store.as_ref(), &prefix).await {
            Ok(keys) => keys,
            Err(err) => {
                tracing::warn!(cause = %err, "cannot list earlier outputs");
                return;
            }
        };
        for key in keys {
            let version = key
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_prefix('v'))
                .and_then(|rest| rest.split('/').next())
                .and_then(|v| v.parse::<u32>().ok());
            if version.is_some_and(|v| v < job.version) {
                if let Err(err) = store::delete(self.store.as_ref(), &key).await {
                    tracing::warn!(key, cause = %err, "cannot delete an earlier output");
                }
            }
        }
    }
}

/// Sleeps for `period`; `true` when shutdown was asked for (or its sender is gone) meanwhile.
async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, period: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => *shutdown.borrow(),
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
    }
}
