-- A post is visible to parents once a teacher or admin publishes it, after checking the blurred
-- photos and videos. Processing state lives in media_jobs (owned by media-worker).
ALTER TABLE posts ADD COLUMN published_at BIGINT;
