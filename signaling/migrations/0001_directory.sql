-- The class directory, synced from the class backend.
-- Portable SQL: the same file runs on SQLite and PostgreSQL. Booleans are BIGINT 0/1 and times are
-- Unix seconds in BIGINT, because the sqlx Any driver maps those identically on both.
CREATE TABLE classes (
    class_id        TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    tier            TEXT NOT NULL,
    confort_famille BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Members carry no email address or phone number: an opaque user id and a display name only.
CREATE TABLE members (
    class_id     TEXT NOT NULL REFERENCES classes (class_id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL,
    approved     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (class_id, user_id)
);

CREATE INDEX members_by_user ON members (user_id);
