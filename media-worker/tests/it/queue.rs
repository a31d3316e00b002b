//! The job queue on a real SQLite database: claims, leases, fencing, retries. (The same SQL runs on
//! PostgreSQL in signaling's tests, which start a real server.)

use std::time::Duration;

use media_worker::queue::{self, JobFiles, JobResult, JobSpec, JobState, OutputStats, Queue, Retry};
use models::media::MediaKind;
use models::{ClassId, MediaId};

use crate::support::tempdir;

pub async fn sqlite_queue(dir: &std::path::Path) -> Queue {
    let url = format!("sqlite://{}?mode=rwc", dir.join("jobs.db").display());
    let pool = queue::open_pool(&url, 4).await.expect("sqlite opens");
    queue::migrate(&pool).await.expect("migrations run");
    Queue::new(pool)
}

pub fn spec(input_key: &str, kind: MediaKind, blur: bool) -> JobSpec {
    JobSpec {
        input_key: input_key.to_owned(),
        declared_kind: kind,
        blur_faces: blur,
        manual_regions: Vec::new(),
        max_duration_s: 600,
    }
}

pub async fn enqueue(queue: &Queue, media: &str, spec: &JobSpec, max_attempts: u32) -> Option<u32> {
    let mut conn = queue.pool().acquire().await.expect("connection");
    let class = ClassId::new("class-1").expect("id");
    queue::enqueue(&mut conn, &MediaId::new(media).expect("id"), &class, spec, max_attempts)
        .await
        .expect("enqueue")
}

fn result() -> JobResult {
    JobResult {
        kind: MediaKind::Photo,
        stats: OutputStats {
            width: 10,
            height: 10,
            duration_s: None,
            n_frames: 1,
            n_face_detections: 0,
            n_blurred_frames: 0,
        },
        files: JobFiles {
            media: "k".into(),
            media_bytes: 1,
            poster: None,
            thumbnail: "t".into(),
            faces: "f".into(),
        },
        elapsed_s: 0.1,
    }
}

async fn status(queue: &Queue, media: &str) -> queue::JobStatus {
    queue.status(&MediaId::new(media).expect("id")).await.expect("status").expect("the job exists")
}

#[tokio::test]
async fn a_job_is_claimed_once_and_its_lease_fences_the_old_worker() {
    let dir = tempdir();
    let queue = sqlite_queue(dir.path()).await;
    assert_eq!(enqueue(&queue, "m1", &spec("in", MediaKind::Photo, false), 3).await, Some(1));
    // Still queued: a second enqueue is refused rather than starting a second run.
    assert_eq!(enqueue(&queue, "m1", &spec("in", MediaKind::Photo, false), 3).await, None);

    let lease = Duration::from_millis(300);
    let first = queue.claim("w1", lease).await.expect("claim").expect("a job");
    assert_eq!((first.attempts, first.version), (1, 1));
    assert!(queue.claim("w2", lease).await.expect("claim").is_none(), "leased jobs are not claimable");
    assert!(queue.heartbeat(&first, lease, 40).await.expect("heartbeat"));
    assert_eq!(status(&queue, "m1").await.progress_percent, 40);

    // w1 stalls past its lease: w2 takes the job over, and w1 can no longer move it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = queue.claim("w2", lease).await.expect("claim").expect("the expired job");
    assert_eq!(second.attempts, 2);
    assert!(!queue.heartbeat(&first, lease, 50).await.expect("heartbeat"));
    assert!(!queue.complete(&first, &result()).await.expect("complete"));
    assert_eq!(queue.fail(&first, "x", "x", Retry::Never).await.expect("fail"), None);
    assert!(queue.complete(&second, &result()).await.expect("complete"));

    let done = status(&queue, "m1").await;
    assert_eq!((done.state, done.progress_percent, done.attempts), (JobState::Done, 100, 2));
    assert_eq!(done.result, Some(result()));

    // Processing again (new manual regions) makes version 2, with fresh attempts.
    assert_eq!(enqueue(&queue, "m1", &spec("in", MediaKind::Photo, true), 3).await, Some(2));
    let again = status(&queue, "m1").await;
    assert_eq!(
        (again.state, again.version, again.attempts, again.result.is_some()),
        (JobState::Queued, 2, 0, true)
    );
}

#[tokio::test]
async fn refused_inputs_fail_at_once_and_our_failures_are_retried_later() {
    let dir = tempdir();
    let queue = sqlite_queue(dir.path()).await;
    let lease = Duration::from_secs(30);
    enqueue(&queue, "bad", &spec("in", MediaKind::Video, false), 3).await;
    enqueue(&queue, "flaky", &spec("in", MediaKind::Video, false), 2).await;

    let bad = queue.claim("w", lease).await.unwrap().unwrap();
    let flaky = queue.claim("w", lease).await.unwrap().unwrap();
    assert_eq!((bad.media_id.as_str(), flaky.media_id.as_str()), ("bad", "flaky"), "oldest first");
    assert_eq!(
        queue.fail(&bad, "corrupt_media", "cut short", Retry::Never).await.unwrap(),
        Some(JobState::Failed)
    );
    let failed = status(&queue, "bad").await;
    assert_eq!(failed.error_code.as_deref(), Some("corrupt_media"));

    assert_eq!(
        queue.fail(&flaky, "storage_failed", "s3 down", Retry::Later).await.unwrap(),
        Some(JobState::Queued)
    );
    // Not due yet: retries wait (5 s after a first failure).
    assert!(queue.claim("w", lease).await.unwrap().is_none());
    sqlx::query("UPDATE media_jobs SET run_after_ms = 0").execute(queue.pool()).await.unwrap();
    let retry = queue.claim("w", lease).await.unwrap().unwrap();
    assert_eq!(retry.attempts, 2);
    // The last allowed attempt fails for good, even for a retryable cause.
    assert_eq!(
        queue.fail(&retry, "storage_failed", "s3 down", Retry::Later).await.unwrap(),
        Some(JobState::Failed)
    );

    let counts = queue.counts().await.unwrap();
    assert_eq!(counts, vec![(JobState::Failed, 2)]);
}

#[tokio::test]
async fn a_job_whose_worker_dies_on_every_attempt_ends_failed_not_stuck() {
    let dir = tempdir();
    let queue = sqlite_queue(dir.path()).await;
    enqueue(&queue, "poison", &spec("in", MediaKind::Video, false), 2).await;
    let lease = Duration::from_millis(100);
    for attempt in 1..=2 {
        let job = queue.claim("w", lease).await.unwrap().expect("claimable again");
        assert_eq!(job.attempts, attempt);
        // The worker dies: no heartbeat, no result.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(queue.claim("w", lease).await.unwrap().is_none());
    let job = status(&queue, "poison").await;
    assert_eq!((job.state, job.error_code.as_deref()), (JobState::Failed, Some("worker_lost")));
}

#[tokio::test]
async fn a_released_job_is_claimable_at_once_and_the_attempt_does_not_count() {
    let dir = tempdir();
    let queue = sqlite_queue(dir.path()).await;
    enqueue(&queue, "m", &spec("in", MediaKind::Photo, false), 1).await;
    let job = queue.claim("w1", Duration::from_secs(30)).await.unwrap().unwrap();
    assert!(queue.release(&job).await.unwrap());
    let again = queue.claim("w2", Duration::from_secs(30)).await.unwrap().expect("released job");
    assert_eq!(again.attempts, 1);
}

#[tokio::test]
async fn concurrent_claimers_never_share_a_job() {
    let dir = tempdir();
    let queue = sqlite_queue(dir.path()).await;
    for i in 0..20 {
        enqueue(&queue, &format!("m{i}"), &spec("in", MediaKind::Photo, false), 3).await;
    }
    let mut claimers = tokio::task::JoinSet::new();
    for w in 0..6 {
        let queue = queue.clone();
        claimers.spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = queue.claim(&format!("w{w}"), Duration::from_secs(30)).await.expect("claim")
            {
                mine.push(job.media_id.as_str().to_owned());
            }
            mine
        });
    }
    let mut all: Vec<String> = Vec::new();
    while let Some(mine) = claimers.join_next().await {
        all.extend(mine.expect("claimer"));
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (20, 20), "every job claimed exactly once");
}
