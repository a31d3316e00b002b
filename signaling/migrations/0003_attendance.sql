-- Class call sessions and who attended them, from when to when. Written from the SFU's events.
CREATE TABLE visio_sessions (
    session_id   TEXT PRIMARY KEY,
    class_id     TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    close_reason TEXT
);
CREATE INDEX visio_sessions_by_class ON visio_sessions (class_id, started_at);

-- display_name is a snapshot at join time, so the record stays readable after a member leaves the
-- class; it is deleted with the user's other data on request.
CREATE TABLE attendance (
    session_id     TEXT NOT NULL REFERENCES visio_sessions (session_id) ON DELETE CASCADE,
    participant_id TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    role           TEXT NOT NULL,
    joined_at      BIGINT NOT NULL,
    left_at        BIGINT,
    leave_reason   TEXT,
    PRIMARY KEY (session_id, participant_id)
);
CREATE INDEX attendance_by_user ON attendance (user_id);
