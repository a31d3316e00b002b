//! The node registry and room placements, in the database every replica already shares.
//!
//! `sfu_nodes`: one row per SFU node, rewritten by its heartbeat. `room_placements`: which node
//! hosts each room. A placement is made by whichever replica inserts it first (the room id is the
//! primary key), so two replicas placing the same room at once both end up with the winner's
//! node. The node itself claims the placement again on every join ([`Registry::claim`]), so a room
//! never runs on a node that does not hold its placement.

use std::time::{SystemTime, UNIX_EPOCH};

use sfu::RoomId;
use sqlx::{AnyPool, Row};

/// What a node says about itself at each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLoad {
    pub n_rooms: u64,
    pub n_participants: u64,
    /// CPU used by the node's process since the previous heartbeat, in thousandths of one core.
    pub cpu_permille: u64,
}

/// A node as a replica sees it: where to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    pub node_id: String,
    pub url: String,
}

/// Why a room has no node.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("no healthy SFU node")]
    NoNode,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct Registry {
    pool: AnyPool,
    /// A node whose last heartbeat is older than this is dead.
    dead_after_ms: i64,
}

pub fn now_ms() -> i64 {
    // A clock before 1970 is a broken host; 0 keeps ordering sane rather than failing.
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Registry {
    pub fn new(pool: AnyPool, dead_after_ms: u64) -> Registry {
        Registry { pool, dead_after_ms: dead_after_ms as i64 }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Registers the node or refreshes its row (also clears a stale draining flag of a previous
    /// process with the same id when `draining` is false).
    pub async fn heartbeat(
        &self,
        node: &NodeAddress,
        media_addr: &str,
        load: &NodeLoad,
        draining: bool,
    ) -> Result<(), sqlx::Error> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO sfu_nodes (node_id, url, media_addr, n_rooms, n_participants, cpu_permille,
                                    draining, started_ms, heartbeat_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT (node_id) DO UPDATE SET url = excluded.url, media_addr = excluded.media_addr,
                 n_rooms = excluded.n_rooms, n_participants = excluded.n_participants,
                 cpu_permille = excluded.cpu_permille, draining = excluded.draining,
                 heartbeat_ms = excluded.heartbeat_ms",
        )
        .bind(&node.node_id)
        .bind(&node.url)
        .bind(media_addr)
        .bind(load.n_rooms as i64)
        .bind(load.n_participants as i64)
        .bind(load.cpu_permille as i64)
        .bind(i64::from(draining))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The node leaves the cluster (its process exits): its row and placements go.
    pub async fn deregister(&self, node_id: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM room_placements WHERE node_id = $1").bind(node_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM sfu_nodes WHERE node_id = $1").bind(node_id).execute(&mut *tx).await?;
        tx.commit().await
    }

    /// The node that hosts `room_id`, placing the room first if it has none (or its node is
    /// dead): on the healthy, non-draining node with the fewest placed rooms, then participants,
    /// then CPU. A draining node keeps the rooms it has.
    pub async fn place(&self, room_id: &RoomId) -> Result<NodeAddress, PlacementError> {
        if let Some(node) = self.placed(room_id).await? {
            return Ok(node);
        }
        let healthy_since = now_ms() - self.dead_after_ms;
        let candidate = sqlx::query(
            "SELECT n.node_id, n.url FROM sfu_nodes n
             WHERE n.draining = 0 AND n.heartbeat_ms >= $1
             ORDER BY (SELECT COUNT(*) FROM room_placements p WHERE p.node_id = n.node_id),
                      n.n_participants, n.cpu_permille, n.node_id
             LIMIT 1",
        )
        .bind(healthy_since)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(PlacementError::NoNode)?;
        let node_id: String = candidate.try_get("node_id")?;
        sqlx::query(
            "INSERT INTO room_placements (room_id, node_id, placed_ms) VALUES ($1, $2, $3)
             ON CONFLICT (room_id) DO NOTHING",
        )
        .bind(room_id.as_str())
        .bind(&node_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        // Another replica may have won the insert: its choice stands.
        self.placed(room_id).await?.ok_or(PlacementError::NoNode)
    }

    /// The live node that hosts `room_id`, if any. A placement on a dead node is dropped.
    pub async fn placed(&self, room_id: &RoomId) -> Result<Option<NodeAddress>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT p.node_id, n.url, n.heartbeat_ms FROM room_placements p
             LEFT JOIN sfu_nodes n ON n.node_id = p.node_id WHERE p.room_id = $1",
        )
        .bind(room_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let node_id: String = row.try_get("node_id")?;
        let url: Option<String> = row.try_get("url")?;
        let heartbeat_ms: Option<i64> = row.try_get("heartbeat_ms")?;
        match (url, heartbeat_ms) {
            (Some(url), Some(heartbeat_ms)) if heartbeat_ms >= now_ms() - self.dead_after_ms => {
                Ok(Some(NodeAddress { node_id, url }))
            }
            _ => {
                tracing::warn!(room = %room_id, node = %node_id, "room's node is dead: placement dropped");
                self.drop_placement(room_id, &node_id).await?;
                Ok(None)
            }
        }
    }

    /// Forgets that `node_id` hosts `room_id` (only that placement: another one stays).
    pub async fn drop_placement(&self, room_id: &RoomId, node_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM room_placements WHERE room_id = $1 AND node_id = $2")
            .bind(room_id.as_str())
            .bind(node_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The node's side of a join: holds the placement of `room_id` for `node_id` (refreshing
    /// its time) unless another node holds it. Returns whether this node holds it now.
    pub async fn claim(&self, room_id: &RoomId, node_id: &str) -> Result<bool, sqlx::Error> {
        sqlx::query(
            "INSERT INTO room_placements (room_id, node_id, placed_ms) VALUES ($1, $2, $3)
             ON CONFLICT (room_id) DO UPDATE SET placed_ms = excluded.placed_ms
             WHERE room_placements.node_id = excluded.node_id",
        )
        .bind(room_id.as_str())
        .bind(node_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        let holder: Option<String> = sqlx::query("SELECT node_id FROM room_placements WHERE room_id = $1")
            .bind(room_id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get("node_id"))
            .transpose()?;
        Ok(holder.as_deref() == Some(node_id))
    }

    /// The node's placements claimed before `before_ms`: the node drops those of rooms it no
    /// longer runs (their sessions ended).
    pub async fn placements_of(&self, node_id: &str, before_ms: i64) -> Result<Vec<RoomId>, sqlx::Error> {
        let rows = sqlx::query("SELECT room_id FROM room_placements WHERE node_id = $1 AND placed_ms < $2")
            .bind(node_id)
            .bind(before_ms)
            .fetch_all(&self.pool)
            .await?;
        let mut rooms = Vec::with_capacity(rows.len());
        for row in rows {
            if let Ok(room_id) = RoomId::new(row.try_get::<String, _>("room_id")?) {
                rooms.push(room_id);
            }
        }
        Ok(rooms)
    }

    /// Drops `room_id`'s placement on `node_id` if it was claimed before `before_ms` (a join
    /// that claimed it since keeps it).
    pub async fn drop_stale_placement(
        &self,
        room_id: &RoomId,
        node_id: &str,
        before_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM room_placements WHERE room_id = $1 AND node_id = $2 AND placed_ms < $3")
            .bind(room_id.as_str())
            .bind(node_id)
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
