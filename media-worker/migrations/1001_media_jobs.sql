-- The media job queue: one row per photo or video, whose version grows each time it is processed
-- again (new manual regions). Owned by media-worker; versions 1000+ keep clear of signaling's
-- migrations, which share the database and the migration table.
--
-- A job is claimable when `queued` and due (`run_after_ms`), or `running` with an expired lease
-- (its worker died). `lease_token` fences every write of the worker holding the lease: a worker
-- that lost its lease can no longer move the job.
CREATE TABLE media_jobs (
    media_id         TEXT PRIMARY KEY,
    class_id         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    version          BIGINT NOT NULL,
    spec             TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    run_after_ms     BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_until_ms   BIGINT,
    progress_percent BIGINT NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    result           TEXT,
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL,
    started_ms       BIGINT,
    finished_ms      BIGINT
);
CREATE INDEX media_jobs_claimable ON media_jobs (state, run_after_ms);
CREATE INDEX media_jobs_by_class ON media_jobs (class_id);
