-- Webhooks waiting for delivery. Each is written in the transaction of what caused it (an outbox),
-- so a restart or a crash loses none; the row is deleted once the class backend took it.
-- user_id is the user the event is about, if any, so that erasing a user drops their events too.
CREATE TABLE webhook_outbox (
    event_id        TEXT PRIMARY KEY,
    seq             BIGINT NOT NULL,
    user_id         TEXT,
    body            TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    gave_up_at      BIGINT
);
CREATE INDEX webhook_outbox_by_seq ON webhook_outbox (seq);
CREATE INDEX webhook_outbox_by_user ON webhook_outbox (user_id);

-- Users erased on request, by a hash of their id, for one day: a call event that was already on
-- its way when the erasure ran must not write their id again (see privacy::erase_user).
CREATE TABLE erased_users (
    user_hash  TEXT PRIMARY KEY,
    erased_at  BIGINT NOT NULL
);
