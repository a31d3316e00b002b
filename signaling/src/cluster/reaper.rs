//! The bookkeeping of SFU nodes that died: their sessions would otherwise stay open forever,
//! with no `session_ended` nor `participant_left` for the class backend.
//!
//! Every replica of a cluster looks for nodes silent for `cluster.reap_after_ms` (well past
//! `dead_after_ms`, so that a node that was only slow is not reaped while its rooms run) and, in
//! one transaction per node, deletes its row (only while it is still silent: whichever replica
//! does it first is the only one), its placements, and ends its open sessions and stays as its
//! events loop would have (`server_shutdown`, `connection_lost`), webhooks included.

use models::UserId;
use serde_json::json;
use sfu::{CloseReason, LeaveReason};
use sqlx::{AnyPool, Row};

use super::registry::now_ms;
use crate::attendance::Attendance;
use crate::metrics::{close_reason, leave_reason};
use crate::webhooks::Webhooks;

/// Ends what the nodes silent since before `now - reap_after_ms` left open. Returns the nodes
/// reaped.
pub async fn reap_dead_nodes(
    pool: &AnyPool,
    webhooks: &Webhooks,
    reap_after_ms: u64,
) -> Result<Vec<String>, sqlx::Error> {
    let silent_since = now_ms() - reap_after_ms as i64;
    let dead: Vec<(String, i64)> =
        sqlx::query("SELECT node_id, heartbeat_ms FROM sfu_nodes WHERE heartbeat_ms < $1")
            .bind(silent_since)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("node_id")?, row.try_get("heartbeat_ms")?)))
            .collect::<Result<_, sqlx::Error>>()?;
    let mut reaped = Vec::new();
    for (node_id, last_heartbeat_ms) in dead {
        let mut tx = pool.begin().await?;
        let claimed = sqlx::query("DELETE FROM sfu_nodes WHERE node_id = $1 AND heartbeat_ms < $2")
            .bind(&node_id)
            .bind(silent_since)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            // Another replica reaped it, or it came back.
            continue;
        }
        let n_sessions = end_sessions_of(&mut tx, webhooks, &node_id, last_heartbeat_ms).await?;
        tx.commit().await?;
        webhooks.wake();
        tracing::warn!(node = %node_id, n_sessions, "dead SFU node reaped: its sessions ended");
        reaped.push(node_id);
    }
    Ok(reaped)
}

/// A node starting with the id of a previous process (a restarted pod keeps its name) ends
/// what that process left open, before it takes rooms: no replica would, since the row lives on.
pub async fn previous_run_of(
    pool: &AnyPool,
    webhooks: &Webhooks,
    node_id: &str,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let last_heartbeat_ms: Option<i64> = sqlx::query("SELECT heartbeat_ms FROM sfu_nodes WHERE node_id = $1")
        .bind(node_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get("heartbeat_ms"))
        .transpose()?;
    let n_sessions =
        end_sessions_of(&mut tx, webhooks, node_id, last_heartbeat_ms.unwrap_or_else(now_ms)).await?;
    tx.commit().await?;
    if n_sessions > 0 {
        webhooks.wake();
        tracing::warn!(node = %node_id, n_sessions, "sessions of this node's previous run ended");
    }
    Ok(n_sessions)
}

/// Drops the node's placements, and ends its open sessions and the stays in them as its events
/// loop would have; returns how many sessions it ended.
async fn end_sessions_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    webhooks: &Webhooks,
    node_id: &str,
    last_heartbeat_ms: i64,
) -> Result<usize, sqlx::Error> {
    sqlx::query("DELETE FROM room_placements WHERE node_id = $1").bind(node_id).execute(&mut **tx).await?;
    let sessions = sqlx::query(
        "SELECT session_id, class_id, started_at FROM visio_sessions WHERE node_id = $1 AND ended_at IS NULL",
    )
    .bind(node_id)
    .fetch_all(&mut **tx)
    .await?;
    for session in &sessions {
        let session_id: String = session.try_get("session_id")?;
        let class_id: String = session.try_get("class_id")?;
        let started_at: i64 = session.try_get("started_at")?;
        let stays = sqlx::query(
            "SELECT participant_id, user_id FROM attendance WHERE session_id = $1 AND left_at IS NULL",
        )
        .bind(&session_id)
        .fetch_all(&mut **tx)
        .await?;
        let left = leave_reason(LeaveReason::ConnectionLost);
        for stay in &stays {
            let participant_id: String = stay.try_get("participant_id")?;
            let user_id: String = stay.try_get("user_id")?;
            Attendance::left(tx, &session_id, &participant_id, left).await?;
            let fields = json!({
                "class_id": class_id, "session_id": session_id, "user_id": user_id, "reason": left,
            });
            let about = UserId::new(user_id).ok();
            webhooks.enqueue(tx, "participant_left", about.as_ref(), fields).await?;
        }
        let closed = close_reason(CloseReason::ServerShutdown);
        Attendance::session_ended(tx, &session_id, closed).await?;
        // Until the node's last sign of life.
        let duration_seconds = (last_heartbeat_ms / 1000 - started_at).max(0);
        let fields = json!({
            "class_id": class_id, "session_id": session_id, "reason": closed, "duration_seconds": duration_seconds,
        });
        webhooks.enqueue(tx, "session_ended", None, fields).await?;
    }
    Ok(sessions.len())
}
