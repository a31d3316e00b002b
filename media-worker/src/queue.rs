//! The durable job queue: the `media_jobs` table in SQLite or PostgreSQL, through sqlx's `Any`
//! driver like the rest of the database.
//!
//! One row per photo or video (`media_id` is the key). Each time the medium is (re)processed its
//! `version` grows, and its outputs go under a prefix named after that version, so a job run twice
//! (a worker died after writing its files) writes the same keys again instead of new ones.
//!
//! Life of a job: `queued` -> `running` (claimed with a lease) -> `done` or `failed`; a running job
//! whose lease expires is claimable again, a retryable failure goes back to `queued` with a delay.
//! Every write of a worker is fenced by the `lease_token` of its claim.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use models::media::MediaKind;
use models::{ClassId, MediaId};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Row};

use crate::region::ManualRegion;

/// Opens a pool on `sqlite://...` or `postgres://...`, without running any migration. SQLite
/// connections get WAL (readers beside the writer), a busy timeout (a second writer waits instead
/// of failing) and foreign keys.
pub async fn open_pool(url: &str, max_connections: u32) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let is_sqlite = url.starts_with("sqlite:");
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if is_sqlite {
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
}

/// Runs this crate's migrations. Other services' migrations share the database (and the migration
/// table), so migrations this crate does not know are expected.
pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("corrupt job row: {0}")]
    Corrupt(String),
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// What to do with one medium: the part of a job that does not change while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Object key of the uploaded original.
    pub input_key: String,
    /// The kind the uploader declared; a file of the other kind is refused.
    pub declared_kind: MediaKind,
    pub blur_faces: bool,
    #[serde(default)]
    pub manual_regions: Vec<ManualRegion>,
    /// Longest accepted video, from the class's tier.
    pub max_duration_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> Option<JobState> {
        [JobState::Queued, JobState::Running, JobState::Done, JobState::Failed]
            .into_iter()
            .find(|state| state.as_str() == raw)
    }
}

/// The files a finished job wrote, by object key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFiles {
    /// The MP4 of a video or the JPEG of a photo.
    pub media: String,
    pub media_bytes: u64,
    /// JPEG of a frame of a video; `None` for photos.
    pub poster: Option<String>,
    pub thumbnail: String,
    /// The faces found, as JSON: the preview a teacher checks before publishing.
    pub faces: String,
}

/// What the pipeline made of a file: the published picture's size and what was blurred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputStats {
    pub width: u32,
    pub height: u32,
    pub duration_s: Option<f64>,
    pub n_frames: u64,
    pub n_face_detections: u64,
    pub n_blurred_frames: u64,
}

/// What a finished job reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    pub kind: MediaKind,
    /// Flattened: stored rows keep the shape they had before the stats had a type.
    #[serde(flatten)]
    pub stats: OutputStats,
    pub files: JobFiles,
    /// Wall time of the pipeline.
    pub elapsed_s: f64,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    pub media_id: MediaId,
    pub class_id: ClassId,
    pub kind: MediaKind,
    pub version: u32,
    pub spec: JobSpec,
    pub state: JobState,
    pub attempts: u32,
    pub progress_percent: u8,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub result: Option<JobResult>,
}

/// A job this worker holds. Its `lease_token` fences every later write.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub media_id: MediaId,
    pub class_id: ClassId,
    pub kind: MediaKind,
    pub version: u32,
    pub spec: JobSpec,
    pub attempts: u32,
    pub lease_token: String,
}

/// How a failure is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The input is at fault: retrying gives the same answer.
    Never,
    /// Our side failed (storage, a crash): try again later, up to `max_attempts`.
    Later,
}

/// Where outputs of one version of a medium go: `published/{class}/{media}/v{version}/{file}`.
pub fn output_key(class_id: &ClassId, media_id: &MediaId, version: u32, file: &str) -> String {
    format!("{}v{version}/{file}", media_prefix(class_id, media_id))
}

/// The prefix under which every version of a medium's outputs lives.
pub fn media_prefix(class_id: &ClassId, media_id: &MediaId) -> String {
    format!("published/{class_id}/{media_id}/")
}

pub fn now_ms() -> i64 {
    // A clock before 1970 is a broken host; 0 keeps ordering sane rather than failing jobs.
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Delay before retry `attempts + 1` of a job that failed on our side: 5 s, 20 s, 80 s, ... capped
/// at 10 minutes.
pub fn retry_delay(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(6);
    Duration::from_secs(5 * 4u64.pow(exponent)).min(Duration::from_secs(600))
}

/// Puts a medium in the queue, or queues it again as a new version when its last job is over.
/// Takes a connection so that the caller enqueues in the transaction that records the upload: a
/// committed upload always has its job. Returns the new version, or `None` when a job for the
/// medium is still queued or running.
pub async fn enqueue(
    conn: &mut AnyConnection,
    media_id: &MediaId,
    class_id: &ClassId,
    spec: &JobSpec,
    max_attempts: u32,
) -> Result<Option<u32>> {
    let now = now_ms();
    let spec_json = serde_json::to_string(spec).map_err(|err| QueueError::Corrupt(err.to_string()))?;
    let row = sqlx::query(
        "INSERT INTO media_jobs (media_id, class_id, kind, version, spec, state, max_attempts, run_after_ms,
                                 created_ms, updated_ms)
         VALUES ($1, $2, $3, 1, $4, 'queued', $5, $6, $6, $6)
         ON CONFLICT (media_id) DO UPDATE SET
             version = media_jobs.version + 1, spec = excluded.spec, state = 'queued', attempts = 0,
             max_attempts = excluded.max_attempts, run_after_ms = excluded.run_after_ms,
             lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL, progress_percent = 0,
             error_code = NULL, error_message = NULL, updated_ms = excluded.updated_ms,
             started_ms = NULL, finished_ms = NULL
         WHERE media_jobs.state IN ('done', 'failed')
         RETURNING version",
    )
    .bind(media_id.as_str())
    .bind(class_id.as_str())
    .bind(spec.declared_kind.as_str())
    .bind(spec_json)
    .bind(i64::from(max_attempts.max(1)))
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok(Some(row.try_get::<i64, _>("version")? as u32)),
        None => Ok(None),
    }
}

/// Condition, in SQL, under which a job may be claimed at time `$1`.
const CLAIMABLE: &str =
    "((state = 'queued' AND run_after_ms <= $1) OR (state = 'running' AND lease_until_ms < $1))
     AND attempts < max_attempts";

#[derive(Clone)]
pub struct Queue {
    pool: AnyPool,
}

impl Queue {
    pub fn new(pool: AnyPool) -> Queue {
        Queue { pool }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Takes the oldest due job, or one whose worker stopped renewing its lease. Safe with many
    /// workers: the claim is a conditional update of one row, and a worker that loses the race
    /// tries the next candidate.
    pub async fn claim(&self, worker_id: &str, lease: Duration) -> Result<Option<ClaimedJob>> {
        self.fail_abandoned().await?;
        for _ in 0..8 {
            let now = now_ms();
            let candidate = sqlx::query(&format!(
                "SELECT media_id FROM media_jobs WHERE {CLAIMABLE} ORDER BY run_after_ms, created_ms LIMIT 1"
            ))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
            let Some(candidate) = candidate else { return Ok(None) };
            let media_id: String = candidate.try_get("media_id")?;
            let token = crate::worker::random_token();
            let claimed = sqlx::query(&format!(
                "UPDATE media_jobs SET state = 'running', attempts = attempts + 1, lease_owner = $2,
                     lease_token = $3, lease_until_ms = $4, progress_percent = 0, started_ms = $1,
                     updated_ms = $1
                 WHERE media_id = $5 AND {CLAIMABLE}
                 RETURNING media_id, class_id, kind, version, spec, attempts"
            ))
            .bind(now)
            .bind(worker_id)
            .bind(&token)
            .bind(now + lease.as_millis() as i64)
            .bind(&media_id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = claimed {
                return Ok(Some(ClaimedJob {
                    media_id: id(&row, "media_id", MediaId::new)?,
                    class_id: id(&row, "class_id", ClassId::new)?,
                    kind: parse_kind(&row)?,
                    version: row.try_get::<i64, _>("version")? as u32,
                    spec: parse_spec(&row)?,
                    attempts: row.try_get::<i64, _>("attempts")? as u32,
                    lease_token: token,
                }));
            }
            // Another worker took it between our read and our write: look again.
        }
        Ok(None)
    }

    /// Jobs whose worker died on their last allowed attempt end as failed, so that no job stays
    /// `running` forever.
    async fn fail_abandoned(&self) -> Result<u64> {
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE media_jobs SET state = 'failed', error_code = 'worker_lost',
                 error_message = 'the worker processing this file stopped on every attempt',
                 lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL, updated_ms = $1,
                 finished_ms = $1
             WHERE state = 'running' AND lease_until_ms < $1 AND attempts >= max_attempts",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n > 0 {
            tracing::warn!(n, "jobs failed after their worker stopped on every attempt");
        }
        Ok(n)
    }

    /// Renews the lease and records progress. `false`: the lease was lost (it expired and another
    /// worker claimed the job, or the job was queued again); stop working on it.
    pub async fn heartbeat(&self, job: &ClaimedJob, lease: Duration, progress_percent: u8) -> Result<bool> {
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE media_jobs SET lease_until_ms = $1, progress_percent = $2, updated_ms = $3
             WHERE media_id = $4 AND lease_token = $5 AND state = 'running'",
        )
        .bind(now + lease.as_millis() as i64)
        .bind(i64::from(progress_percent.min(100)))
        .bind(now)
        .bind(job.media_id.as_str())
        .bind(&job.lease_token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records the result. `false`: the lease was lost first, and the job belongs to another worker.
    pub async fn complete(&self, job: &ClaimedJob, result: &JobResult) -> Result<bool> {
        let now = now_ms();
        let result_json =
            serde_json::to_string(result).map_err(|err| QueueError::Corrupt(err.to_string()))?;
        let n = sqlx::query(
            "UPDATE media_jobs SET state = 'done', progress_percent = 100, result = $1, lease_owner = NULL,
                 lease_token = NULL, lease_until_ms = NULL, updated_ms = $2, finished_ms = $2
             WHERE media_id = $3 AND lease_token = $4 AND state = 'running'",
        )
        .bind(result_json)
        .bind(now)
        .bind(job.media_id.as_str())
        .bind(&job.lease_token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records a failure: the job ends as `failed`, or goes back to the queue with a delay when
    /// `retry` allows and attempts remain. Returns the state it ended in, `None` if the lease was lost.
    pub async fn fail(
        &self,
        job: &ClaimedJob,
        code: &str,
        message: &str,
        retry: Retry,
    ) -> Result<Option<JobState>> {
        let now = now_ms();
        let delay = retry_delay(job.attempts).as_millis() as i64;
        let row = sqlx::query(
            "UPDATE media_jobs SET
                 state = CASE WHEN $1 = 1 AND attempts < max_attempts THEN 'queued' ELSE 'failed' END,
                 run_after_ms = $2, error_code = $3, error_message = $4, lease_owner = NULL,
                 lease_token = NULL, lease_until_ms = NULL, updated_ms = $5,
                 finished_ms = CASE WHEN $1 = 1 AND attempts < max_attempts THEN NULL ELSE $5 END
             WHERE media_id = $6 AND lease_token = $7 AND state = 'running'
             RETURNING state",
        )
        .bind(i64::from(retry == Retry::Later))
        .bind(now + delay)
        .bind(code)
        .bind(message)
        .bind(now)
        .bind(job.media_id.as_str())
        .bind(&job.lease_token)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| parse_state(&row)).transpose()
    }

    /// Hands a job back untouched (the worker is shutting down): another worker may claim it at
    /// once, and the attempt does not count.
    pub async fn release(&self, job: &ClaimedJob) -> Result<bool> {
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE media_jobs SET state = 'queued', attempts = attempts - 1, run_after_ms = $1,
                 lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL, progress_percent = 0,
                 updated_ms = $1
             WHERE media_id = $2 AND lease_token = $3 AND state = 'running'",
        )
        .bind(now)
        .bind(job.media_id.as_str())
        .bind(&job.lease_token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn status(&self, media_id: &MediaId) -> Result<Option<JobStatus>> {
        let row = sqlx::query(
            "SELECT media_id, class_id, kind, version, spec, state, attempts, progress_percent, error_code,
                    error_message, result
             FROM media_jobs WHERE media_id = $1",
        )
        .bind(media_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| job_status(&row)).transpose()
    }

    /// Number of jobs in each state: the queue depth the metrics export.
    pub async fn counts(&self) -> Result<Vec<(JobState, u64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM media_jobs GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok((parse_state(row)?, row.try_get::<i64, _>("n")?.max(0) as u64))).collect()
    }
}

fn id<T>(row: &AnyRow, column: &str, parse: impl FnOnce(String) -> Result<T, models::IdError>) -> Result<T> {
    let raw: String = row.try_get(column)?;
    parse(raw.clone()).map_err(|_| QueueError::Corrupt(format!("{column} = {raw:?}")))
}

fn parse_kind(row: &AnyRow) -> Result<MediaKind> {
    let raw: String = row.try_get("kind")?;
    raw.parse().map_err(|_| QueueError::Corrupt(format!("kind = {raw:?}")))
}

fn parse_state(row: &AnyRow) -> Result<JobState> {
    let raw: String = row.try_get("state")?;
    JobState::parse(&raw).ok_or_else(|| QueueError::Corrupt(format!("state = {raw:?}")))
}

fn parse_spec(row: &AnyRow) -> Result<JobSpec> {
    let raw: String = row.try_get("spec")?;
    serde_json::from_str(&raw).map_err(|err| QueueError::Corrupt(format!("spec: {err}")))
}

fn job_status(row: &AnyRow) -> Result<JobStatus> {
    let result: Option<String> = row.try_get("result")?;
    let result = result
        .map(|raw| serde_json::from_str(&raw).map_err(|err| QueueError::Corrupt(format!("result: {err}"))))
        .transpose()?;
    Ok(JobStatus {
        media_id: id(row, "media_id", MediaId::new)?,
        class_id: id(row, "class_id", ClassId::new)?,
        kind: parse_kind(row)?,
        version: row.try_get::<i64, _>("version")? as u32,
        spec: parse_spec(row)?,
        state: parse_state(row)?,
        attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
        progress_percent: row.try_get::<i64, _>("progress_percent")?.clamp(0, 100) as u8,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_stop_growing() {
        assert_eq!(retry_delay(1), Duration::from_secs(5));
        assert_eq!(retry_delay(2), Duration::from_secs(20));
        assert_eq!(retry_delay(3), Duration::from_secs(80));
        assert_eq!(retry_delay(30), Duration::from_secs(600));
    }

    #[test]
    fn output_keys_name_the_version() {
        let class = ClassId::new("c1".to_owned()).unwrap();
        let media = MediaId::new("m1".to_owned()).unwrap();
        assert_eq!(output_key(&class, &media, 3, "media.mp4"), "published/c1/m1/v3/media.mp4");
        assert!(output_key(&class, &media, 3, "x").starts_with(&media_prefix(&class, &media)));
    }
}
