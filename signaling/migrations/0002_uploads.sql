-- Posts and their photos and videos, and the chunks of uploads in progress.
CREATE TABLE posts (
    post_id    TEXT PRIMARY KEY,
    class_id   TEXT NOT NULL REFERENCES classes (class_id) ON DELETE CASCADE,
    author_id  TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX posts_by_class ON posts (class_id);

-- size_bytes of every medium not `failed` counts against the class's storage quota, from the moment
-- the upload is announced: a quota is reserved before any byte is stored.
CREATE TABLE media (
    media_id         TEXT PRIMARY KEY,
    post_id          TEXT NOT NULL REFERENCES posts (post_id) ON DELETE CASCADE,
    class_id         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    state            TEXT NOT NULL,
    size_bytes       BIGINT NOT NULL,
    received_bytes   BIGINT NOT NULL DEFAULT 0,
    blur_faces       BIGINT NOT NULL,
    progress_percent BIGINT NOT NULL DEFAULT 0,
    error_code       TEXT,
    original_key     TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX media_by_post ON media (post_id);
CREATE INDEX media_by_class ON media (class_id, state);

-- One row per accepted chunk. Object keys carry a nonce: a chunk that loses a race for its offset
-- never overwrites the winner's bytes.
CREATE TABLE upload_chunks (
    media_id     TEXT NOT NULL REFERENCES media (media_id) ON DELETE CASCADE,
    chunk_offset BIGINT NOT NULL,
    n_bytes      BIGINT NOT NULL,
    object_key   TEXT NOT NULL,
    PRIMARY KEY (media_id, chunk_offset)
);
