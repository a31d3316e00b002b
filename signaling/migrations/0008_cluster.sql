-- Scale-out (signaling/src/cluster): SFU nodes as separate processes, several API replicas.
-- Each SFU node registers here and heartbeats every couple of seconds; a node whose heartbeat is
-- older than `cluster.dead_after_ms` is dead. Times are Unix milliseconds.
CREATE TABLE sfu_nodes (
    node_id         TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    media_addr      TEXT NOT NULL,
    n_rooms         BIGINT NOT NULL DEFAULT 0,
    n_participants  BIGINT NOT NULL DEFAULT 0,
    cpu_permille    BIGINT NOT NULL DEFAULT 0,
    draining        BIGINT NOT NULL DEFAULT 0,
    started_ms      BIGINT NOT NULL,
    heartbeat_ms    BIGINT NOT NULL
);

-- Which node hosts each room (a class's call). The primary key is what makes placement race-free:
-- whichever replica inserts first wins, every other one reads the winner.
CREATE TABLE room_placements (
    room_id     TEXT PRIMARY KEY,
    node_id     TEXT NOT NULL,
    placed_ms   BIGINT NOT NULL
);
CREATE INDEX room_placements_by_node ON room_placements (node_id);

-- Periodic work that one replica at a time must do (the retention sweep): held until expires_ms.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_ms  BIGINT NOT NULL
);

-- The node that hosts each session, so that a replica can end the sessions of a node that died
-- (cluster::reaper). NULL in one process.
ALTER TABLE visio_sessions ADD COLUMN node_id TEXT;
CREATE INDEX visio_sessions_by_node ON visio_sessions (node_id, ended_at);
