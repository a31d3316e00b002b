//! Posts and uploads in the database: tier checks before any byte is stored, resumable chunks.
//!
//! Checks that depend on other rows (photos or videos per post, storage quota) run in the write
//! transaction after touching the class row, like the directory's member limits: two uploads
//! announced at once cannot both take the last place or the last bytes of the quota.

use media_worker::queue::{self, JobSpec, JobState, JobStatus, Queue, QueueError};
use media_worker::ManualRegion;
use models::media::{MediaKind, MediaState, MediaUpload, MediaView, PostView};
use models::{ClassId, ErrorCode, MediaId, PostId, TierTable, UserId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::{self, now_secs, parse_column, RowError};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("no such post in this class")]
    PostNotFound,
    #[error("no such upload in this class")]
    MediaNotFound,
    #[error("the class already has {limit} files uploading; finish or wait for one")]
    TooManyUploads { limit: u32 },
    #[error("the post already has the tier's {limit} photos")]
    TooManyPhotos { limit: u32 },
    #[error("the post already has the tier's {limit} videos")]
    TooManyVideos { limit: u32 },
    #[error("the class would use {needed} bytes of its {quota} byte storage quota")]
    StorageQuotaExceeded { needed: u64, quota: u64 },
    #[error("the video lasts {seconds:.0} s; the tier allows {limit} s")]
    VideoTooLong { seconds: f64, limit: u64 },
    #[error("the chunk starts at byte {got}, but the upload stands at byte {expected}")]
    OffsetMismatch { expected: u64, got: u64 },
    #[error("the chunk would end at byte {end}, past the announced size {size}")]
    PastEnd { end: u64, size: u64 },
    #[error("the upload is {0} and takes no more bytes")]
    Closed(&'static str),
    #[error("{0}")]
    NotReady(String),
    #[error("job queue: {0}")]
    Queue(#[from] QueueError),
    #[error("corrupt row: {0}")]
    CorruptRow(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<RowError> for UploadError {
    fn from(err: RowError) -> Self {
        match err {
            RowError::Corrupt(message) => UploadError::CorruptRow(message),
            RowError::Database(err) => UploadError::Database(err),
        }
    }
}

impl UploadError {
    /// The API code of a refusal; `None` for our own failures.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            UploadError::PostNotFound | UploadError::MediaNotFound => ErrorCode::NotFound,
            UploadError::TooManyUploads { .. } => ErrorCode::TooManyUploads,
            UploadError::TooManyPhotos { .. } => ErrorCode::TooManyPhotos,
            UploadError::TooManyVideos { .. } => ErrorCode::TooManyVideos,
            UploadError::StorageQuotaExceeded { .. } => ErrorCode::StorageQuotaExceeded,
            UploadError::VideoTooLong { .. } => ErrorCode::VideoTooLong,
            UploadError::OffsetMismatch { .. } => ErrorCode::UploadOffsetMismatch,
            UploadError::PastEnd { .. } => ErrorCode::InvalidRequest,
            UploadError::Closed(_) => ErrorCode::UploadClosed,
            UploadError::NotReady(_) => ErrorCode::MediaNotReady,
            UploadError::CorruptRow(_) | UploadError::Database(_) | UploadError::Queue(_) => return None,
        })
    }
}

/// A medium as stored, with its processing job once the upload is complete.
#[derive(Debug, Clone)]
pub struct MediaRecord {
    pub media_id: MediaId,
    pub post_id: PostId,
    pub class_id: ClassId,
    pub kind: MediaKind,
    /// `uploading` or `uploaded` (the job tells the rest).
    pub upload_state: MediaState,
    pub size_bytes: u64,
    pub received_bytes: u64,
    pub blur_faces: bool,
    pub job: Option<JobStatus>,
}

/// The API code of a job's failure: the file's fault keeps its own code, ours is `processing_failed`.
/// A file whose processing needs more memory or CPU time than a job may use is too large for us;
/// one that crashes the decoder is damaged. The job keeps the precise code for operators.
fn job_error_code(code: Option<&str>) -> ErrorCode {
    match code {
        Some("unsupported_media") => ErrorCode::UnsupportedMedia,
        Some("corrupt_media" | "media_crashed") => ErrorCode::CorruptMedia,
        Some("video_too_long") => ErrorCode::VideoTooLong,
        Some("media_too_large" | "media_memory_limit" | "media_cpu_limit") => ErrorCode::MediaTooLarge,
        _ => ErrorCode::ProcessingFailed,
    }
}

impl MediaRecord {
    /// Where the medium stands for the API: upload, then its job.
    pub fn state(&self) -> MediaState {
        match (&self.job, self.upload_state) {
            (_, MediaState::Uploading) | (None, _) => self.upload_state,
            (Some(job), _) => match job.state {
                JobState::Queued if job.attempts == 0 => MediaState::Uploaded,
                JobState::Queued | JobState::Running => MediaState::Processing,
                JobState::Done => MediaState::Ready,
                JobState::Failed => MediaState::Failed,
            },
        }
    }

    pub fn view(&self, upload_url: Option<String>, max_chunk_bytes: u64) -> MediaView {
        let state = self.state();
        let job = self.job.as_ref();
        MediaView {
            media_id: self.media_id.clone(),
            post_id: self.post_id.clone(),
            class_id: self.class_id.clone(),
            kind: self.kind,
            state,
            size_bytes: self.size_bytes,
            received_bytes: self.received_bytes,
            progress_percent: job.map_or(0, |job| job.progress_percent),
            blur_faces: self.blur_faces,
            error: (state == MediaState::Failed)
                .then(|| job_error_code(job.and_then(|j| j.error_code.as_deref()))),
            upload_url: (state == MediaState::Uploading).then_some(upload_url).flatten(),
            max_chunk_bytes,
            links: None,
        }
    }

    /// The job, if it finished: its version and outputs.
    pub fn ready_job(&self) -> Option<(&JobStatus, &queue::JobResult)> {
        let job = self.job.as_ref()?;
        match (job.state, &job.result) {
            (JobState::Done, Some(result)) => Some((job, result)),
            _ => None,
        }
    }
}

/// Media not counted against limits: refused or failed uploads. SQL over `media m` left-joined
/// with `media_jobs j`.
const COUNTED: &str = "m.state <> 'failed' AND (j.state IS NULL OR j.state <> 'failed')";

const SELECT_MEDIA: &str =
    "SELECT media_id, post_id, class_id, kind, state, size_bytes, received_bytes, blur_faces
     FROM media";

#[derive(Clone)]
pub struct Uploads {
    pool: AnyPool,
    tiers: TierTable,
    queue: Queue,
    max_attempts: u32,
    /// Files of one class uploading at once (see `limits.max_uploads_in_progress_per_class`).
    max_uploading_per_class: u32,
}

/// A fresh random id: 128 bits in hex, inside the id alphabet (the job queue's lease tokens).
pub use media_worker::worker::random_token;

impl Uploads {
    pub fn new(pool: AnyPool, tiers: TierTable, max_attempts: u32, max_uploading_per_class: u32) -> Uploads {
        Uploads { queue: Queue::new(pool.clone()), pool, tiers, max_attempts, max_uploading_per_class }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    pub async fn create_post(&self, class_id: &ClassId, author: &UserId) -> Result<PostView, UploadError> {
        // A fresh random token is always a valid id.
        let post_id = PostId::new(random_token()).expect("hex token is a valid id");
        sqlx::query("INSERT INTO posts (post_id, class_id, author_id, created_at) VALUES ($1, $2, $3, $4)")
            .bind(post_id.as_str())
            .bind(class_id.as_str())
            .bind(author.as_str())
            .bind(now_secs())
            .execute(&self.pool)
            .await?;
        Ok(PostView { post_id, class_id: class_id.clone(), n_photos: 0, n_videos: 0 })
    }

    /// Announces a file: checks the per-post limit, the duration the client declares and the quota,
    /// and reserves the bytes. Nothing is stored when a check fails.
    pub async fn announce(
        &self,
        class_id: &ClassId,
        post_id: &PostId,
        upload: &MediaUpload,
    ) -> Result<MediaRecord, UploadError> {
        let now = now_secs();
        let mut tx = self.pool.begin().await?;
        if !db::lock_class(&mut tx, class_id).await? {
            return Err(UploadError::PostNotFound);
        }
        let policy = self.tiers.policy(db::class_tier(&mut tx, class_id).await?);
        let post = sqlx::query("SELECT 1 AS one FROM posts WHERE post_id = $1 AND class_id = $2")
            .bind(post_id.as_str())
            .bind(class_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if post.is_none() {
            return Err(UploadError::PostNotFound);
        }

        // Uploads left unfinished for a day no longer count: a phone that gave up frees its place.
        let n_uploading: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM media WHERE class_id = $1 AND state = 'uploading' AND updated_at > $2",
        )
        .bind(class_id.as_str())
        .bind(now - 86_400)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if n_uploading >= i64::from(self.max_uploading_per_class) {
            return Err(UploadError::TooManyUploads { limit: self.max_uploading_per_class });
        }

        let n_same_kind: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM media m LEFT JOIN media_jobs j ON j.media_id = m.media_id
             WHERE m.post_id = $1 AND m.kind = $2 AND {COUNTED}"
        ))
        .bind(post_id.as_str())
        .bind(upload.kind.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        match upload.kind {
            MediaKind::Photo if n_same_kind >= i64::from(policy.max_photos_per_post) => {
                return Err(UploadError::TooManyPhotos { limit: policy.max_photos_per_post })
            }
            MediaKind::Video if n_same_kind >= i64::from(policy.max_videos_per_post) => {
                return Err(UploadError::TooManyVideos { limit: policy.max_videos_per_post })
            }
            _ => {}
        }
        if let (MediaKind::Video, Some(seconds)) = (upload.kind, upload.duration_seconds) {
            let limit = policy.max_video_duration.as_secs();
            if !seconds.is_finite() || seconds > limit as f64 {
                return Err(UploadError::VideoTooLong { seconds, limit });
            }
        }
        let used = used_bytes(&mut tx, class_id).await?;
        let needed = used.saturating_add(upload.size_bytes);
        if needed > policy.storage_quota_bytes {
            return Err(UploadError::StorageQuotaExceeded { needed, quota: policy.storage_quota_bytes });
        }

        // A fresh random token is always a valid id.
        let media_id = MediaId::new(random_token()).expect("hex token is a valid id");
        sqlx::query(
            "INSERT INTO media (media_id, post_id, class_id, kind, state, size_bytes, blur_faces, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'uploading', $5, $6, $7, $7)",
        )
        .bind(media_id.as_str())
        .bind(post_id.as_str())
        .bind(class_id.as_str())
        .bind(upload.kind.as_str())
        .bind(upload.size_bytes as i64)
        .bind(upload.blur_faces as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(MediaRecord {
            media_id,
            post_id: post_id.clone(),
            class_id: class_id.clone(),
            kind: upload.kind,
            upload_state: MediaState::Uploading,
            size_bytes: upload.size_bytes,
            received_bytes: 0,
            blur_faces: upload.blur_faces,
            job: None,
        })
    }

    pub async fn media(&self, class_id: &ClassId, media_id: &MediaId) -> Result<MediaRecord, UploadError> {
        let row = sqlx::query(&format!("{SELECT_MEDIA} WHERE media_id = $1 AND class_id = $2"))
            .bind(media_id.as_str())
            .bind(class_id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(UploadError::MediaNotFound)?;
        self.with_job(media_record(&row)?).await
    }

    async fn with_job(&self, mut record: MediaRecord) -> Result<MediaRecord, UploadError> {
        if record.upload_state != MediaState::Uploading {
            record.job = self.queue.status(&record.media_id).await?;
        }
        Ok(record)
    }

    /// A post of the class: when it was published, and its media in upload order.
    pub async fn post(
        &self,
        class_id: &ClassId,
        post_id: &PostId,
    ) -> Result<(Option<i64>, Vec<MediaRecord>), UploadError> {
        let post = sqlx::query("SELECT published_at FROM posts WHERE post_id = $1 AND class_id = $2")
            .bind(post_id.as_str())
            .bind(class_id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(UploadError::PostNotFound)?;
        let published_at: Option<i64> = post.try_get("published_at")?;
        let rows = sqlx::query(&format!("{SELECT_MEDIA} WHERE post_id = $1 ORDER BY created_at, media_id"))
            .bind(post_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        let mut media = Vec::with_capacity(rows.len());
        for row in &rows {
            media.push(self.with_job(media_record(row)?).await?);
        }
        Ok((published_at, media))
    }

    /// The class's posts, newest first, at most `limit`: every post, or the published ones only.
    pub async fn post_ids(
        &self,
        class_id: &ClassId,
        published_only: bool,
        limit: u32,
    ) -> Result<Vec<PostId>, UploadError> {
        let filter = if published_only { "AND published_at IS NOT NULL" } else { "" };
        let rows = sqlx::query(&format!(
            "SELECT post_id FROM posts WHERE class_id = $1 {filter}
             ORDER BY COALESCE(published_at, created_at) DESC, created_at DESC, post_id LIMIT $2"
        ))
        .bind(class_id.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let raw: String = row.try_get("post_id")?;
                PostId::new(raw.clone()).map_err(|_| UploadError::CorruptRow(format!("post_id = {raw:?}")))
            })
            .collect()
    }

    /// Makes the post visible to parents, once every photo and video in it is ready. Publishing
    /// twice keeps the first time.
    pub async fn publish(&self, class_id: &ClassId, post_id: &PostId) -> Result<i64, UploadError> {
        let (_, media) = self.post(class_id, post_id).await?;
        if media.is_empty() {
            return Err(UploadError::NotReady("the post has no photo or video yet".into()));
        }
        if let Some(busy) = media.iter().find(|m| m.state() != MediaState::Ready) {
            return Err(UploadError::NotReady(format!(
                "{} {} is {}",
                busy.kind.as_str(),
                busy.media_id,
                busy.state().as_str()
            )));
        }
        let row = sqlx::query(
            "UPDATE posts SET published_at = COALESCE(published_at, $1) WHERE post_id = $2 AND class_id = $3
             RETURNING published_at",
        )
        .bind(now_secs())
        .bind(post_id.as_str())
        .bind(class_id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(UploadError::PostNotFound)?;
        Ok(row.try_get("published_at")?)
    }

    /// Processes a ready (or failed) medium again with the teacher's regions; it is `processing`
    /// until the new version is done. Returns the new version.
    pub async fn reprocess(
        &self,
        record: &MediaRecord,
        regions: Vec<ManualRegion>,
    ) -> Result<u32, UploadError> {
        let not_ready = || {
            UploadError::NotReady(format!("the {} is still uploading or processing", record.kind.as_str()))
        };
        let job = record.job.as_ref().ok_or_else(not_ready)?;
        let spec = JobSpec { manual_regions: regions, ..job.spec.clone() };
        let mut conn = self.pool.acquire().await?;
        queue::enqueue(&mut conn, &record.media_id, &record.class_id, &spec, self.max_attempts)
            .await?
            .ok_or_else(not_ready)
    }

    /// Checks that a chunk may be stored at `offset` before its bytes are written anywhere.
    pub fn check_chunk(record: &MediaRecord, offset: u64, n_bytes: u64) -> Result<(), UploadError> {
        if record.upload_state != MediaState::Uploading {
            return Err(UploadError::Closed(record.state().as_str()));
        }
        if offset != record.received_bytes {
            return Err(UploadError::OffsetMismatch { expected: record.received_bytes, got: offset });
        }
        let end = offset.saturating_add(n_bytes);
        if end > record.size_bytes {
            return Err(UploadError::PastEnd { end, size: record.size_bytes });
        }
        Ok(())
    }

    /// Records a stored chunk, if the upload still stands at `offset` (another request for the same
    /// offset may have won). Returns the new offset.
    pub async fn accept_chunk(
        &self,
        record: &MediaRecord,
        offset: u64,
        n_bytes: u64,
        object_key: &str,
    ) -> Result<u64, UploadError> {
        let new_offset = offset + n_bytes;
        let mut tx = self.pool.begin().await?;
        let advanced = sqlx::query(
            "UPDATE media SET received_bytes = $1, updated_at = $2
             WHERE media_id = $3 AND received_bytes = $4 AND state = 'uploading'",
        )
        .bind(new_offset as i64)
        .bind(now_secs())
        .bind(record.media_id.as_str())
        .bind(offset as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if advanced == 0 {
            let current = self.media(&record.class_id, &record.media_id).await?;
            Self::check_chunk(&current, offset, n_bytes)?;
            return Err(UploadError::OffsetMismatch { expected: current.received_bytes, got: offset });
        }
        sqlx::query(
            "INSERT INTO upload_chunks (media_id, chunk_offset, n_bytes, object_key) VALUES ($1, $2, $3, $4)",
        )
        .bind(record.media_id.as_str())
        .bind(offset as i64)
        .bind(n_bytes as i64)
        .bind(object_key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new_offset)
    }

    /// Forgets an upload in progress (tus termination): its row and its chunks' rows go, so it no
    /// longer counts against the post, the quota or the uploads in progress, and its id answers
    /// `not_found` from now on. Returns the object keys of its chunks, for the caller to delete.
    /// A complete upload is not an upload any more: `Closed`.
    pub async fn terminate(&self, record: &MediaRecord) -> Result<Vec<String>, UploadError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT object_key FROM upload_chunks WHERE media_id = $1")
            .bind(record.media_id.as_str())
            .fetch_all(&mut *tx)
            .await?;
        let keys = rows
            .iter()
            .map(|row| row.try_get("object_key").map_err(UploadError::from))
            .collect::<Result<Vec<String>, _>>()?;
        sqlx::query("DELETE FROM upload_chunks WHERE media_id = $1")
            .bind(record.media_id.as_str())
            .execute(&mut *tx)
            .await?;
        let n_deleted =
            sqlx::query("DELETE FROM media WHERE media_id = $1 AND class_id = $2 AND state = 'uploading'")
                .bind(record.media_id.as_str())
                .bind(record.class_id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if n_deleted == 0 {
            // Completed (or gone) meanwhile: its chunks are the completion's to forget.
            return Err(UploadError::Closed(record.state().as_str()));
        }
        tx.commit().await?;
        Ok(keys)
    }

    /// Object keys of the chunks of an upload, in order.
    pub async fn chunk_keys(&self, media_id: &MediaId) -> Result<Vec<String>, UploadError> {
        let rows =
            sqlx::query("SELECT object_key FROM upload_chunks WHERE media_id = $1 ORDER BY chunk_offset")
                .bind(media_id.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|row| row.try_get("object_key").map_err(UploadError::from)).collect()
    }

    /// The upload is whole and stored at `original_key`: its chunks are forgotten and its job is
    /// queued, in one transaction, so that no complete upload is ever left without a job.
    pub async fn mark_uploaded(&self, record: &MediaRecord, original_key: &str) -> Result<(), UploadError> {
        let mut tx = self.pool.begin().await?;
        let n_updated = sqlx::query(
            "UPDATE media SET state = 'uploaded', original_key = $1, updated_at = $2
             WHERE media_id = $3 AND state = 'uploading'",
        )
        .bind(original_key)
        .bind(now_secs())
        .bind(record.media_id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n_updated == 1 {
            let policy = self.tiers.policy(db::class_tier(&mut tx, &record.class_id).await?);
            let spec = JobSpec {
                input_key: original_key.to_owned(),
                declared_kind: record.kind,
                blur_faces: record.blur_faces,
                manual_regions: Vec::new(),
                max_duration_s: policy.max_video_duration.as_secs(),
            };
            queue::enqueue(&mut tx, &record.media_id, &record.class_id, &spec, self.max_attempts).await?;
        }
        sqlx::query("DELETE FROM upload_chunks WHERE media_id = $1")
            .bind(record.media_id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every medium of the class, whatever its state.
    pub async fn class_media_ids(&self, class_id: &ClassId) -> Result<Vec<MediaId>, UploadError> {
        let rows = sqlx::query("SELECT media_id FROM media WHERE class_id = $1")
            .bind(class_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let raw: String = row.try_get("media_id")?;
                MediaId::new(raw.clone()).map_err(|_| UploadError::CorruptRow(format!("media_id = {raw:?}")))
            })
            .collect()
    }

    /// Forgets the jobs of a deleted class (its posts and media go with the class row). A worker
    /// still running one of them finds its job gone and deletes what it wrote.
    pub async fn forget_class_jobs(&self, class_id: &ClassId) -> Result<(), UploadError> {
        sqlx::query("DELETE FROM media_jobs WHERE class_id = $1")
            .bind(class_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Bytes counted against the class's quota: every medium not failed, uploads in progress included.
    pub async fn used_bytes(&self, class_id: &ClassId) -> Result<u64, UploadError> {
        let mut conn = self.pool.acquire().await?;
        used_bytes(&mut conn, class_id).await
    }
}

async fn used_bytes(conn: &mut AnyConnection, class_id: &ClassId) -> Result<u64, UploadError> {
    // CAST: PostgreSQL's SUM of BIGINT is NUMERIC, which the Any driver cannot read.
    let row = sqlx::query(&format!(
        "SELECT CAST(COALESCE(SUM(m.size_bytes), 0) AS BIGINT) AS used
         FROM media m LEFT JOIN media_jobs j ON j.media_id = m.media_id
         WHERE m.class_id = $1 AND {COUNTED}"
    ))
    .bind(class_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get::<i64, _>("used")?.max(0) as u64)
}

fn media_record(row: &AnyRow) -> Result<MediaRecord, UploadError> {
    let id = |column: &str| -> Result<String, UploadError> { Ok(row.try_get::<String, _>(column)?) };
    let corrupt = |column: &str| UploadError::CorruptRow(column.to_owned());
    Ok(MediaRecord {
        media_id: MediaId::new(id("media_id")?).map_err(|_| corrupt("media_id"))?,
        post_id: PostId::new(id("post_id")?).map_err(|_| corrupt("post_id"))?,
        class_id: ClassId::new(id("class_id")?).map_err(|_| corrupt("class_id"))?,
        kind: parse_column(row, "kind").map_err(UploadError::from)?,
        upload_state: parse_column(row, "state").map_err(UploadError::from)?,
        size_bytes: row.try_get::<i64, _>("size_bytes")?.max(0) as u64,
        received_bytes: row.try_get::<i64, _>("received_bytes")?.max(0) as u64,
        blur_faces: row.try_get::<i64, _>("blur_faces")? != 0,
        job: None,
    })
}
