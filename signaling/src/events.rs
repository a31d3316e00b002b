//! What happens when the SFU reports: metrics, attendance in the database, webhooks.
//!
//! Each lifecycle event is written in one transaction: its attendance row and its webhook in the
//! outbox ([`crate::webhooks`]). A database failure is retried, with backoff, until it succeeds:
//! the SFU keeps lifecycle events queued meanwhile (and the server admits no join while that
//! queue is long), so no attendance row and no webhook is dropped to keep up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use models::UserId;
use serde_json::json;
use sfu::{EventReceiver, RoomId, SfuEvent};

use crate::attendance::Attendance;
use crate::directory::Directory;
use crate::metrics::{close_reason, leave_reason, Metrics};
use crate::webhooks::Webhooks;

pub struct EventSinks {
    pub metrics: Arc<Metrics>,
    pub attendance: Attendance,
    pub directory: Directory,
    pub webhooks: Webhooks,
    /// The SFU node these events come from (`signaling sfu`); `None` in one process.
    pub node_id: Option<String>,
}

/// Tries at most this many times per event once the server is stopping.
const ATTEMPTS_WHEN_STOPPING: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The session of each room: started on SessionStarted, kept after it closes so that late
/// departures still find their session.
#[derive(Default)]
struct Calls {
    sessions: HashMap<RoomId, String>,
    participants_by_room: HashMap<RoomId, i64>,
}

/// Handles events until `stop` turns true, then those already queued (the departures a shutdown
/// causes), and returns.
pub async fn run(mut events: EventReceiver, sinks: EventSinks, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut calls = Calls::default();
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = stop.wait_for(|stop| *stop) => events.try_recv(),
        };
        let Some(event) = event else { return };
        sinks.metrics.sfu_event(&event);
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1;
        while let Err(err) = record(&event, &sinks, &mut calls).await {
            if *stop.borrow() && attempt >= ATTEMPTS_WHEN_STOPPING {
                tracing::error!(cause = %err, ?event, "cannot record a call event; the server is stopping");
                break;
            }
            tracing::warn!(cause = %err, attempt, "cannot record a call event; trying again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
        sinks.metrics.set_sfu_occupancy(
            calls.participants_by_room.len() as i64,
            calls.participants_by_room.values().sum(),
        );
    }
}

async fn record(event: &SfuEvent, sinks: &EventSinks, calls: &mut Calls) -> Result<(), sqlx::Error> {
    let pool = sinks.attendance.pool();
    let webhooks = &sinks.webhooks;
    match event {
        SfuEvent::SessionStarted { room_id } => {
            let session_id = crate::uploads::random_token();
            let mut tx = pool.begin().await?;
            Attendance::session_started(&mut tx, &session_id, room_id.as_str()).await?;
            if let Some(node_id) = &sinks.node_id {
                // So that a replica can end it if this node dies (`cluster::reaper`).
                sqlx::query("UPDATE visio_sessions SET node_id = $1 WHERE session_id = $2")
                    .bind(node_id)
                    .bind(&session_id)
                    .execute(&mut *tx)
                    .await?;
            }
            let fields = json!({ "class_id": room_id.as_str(), "session_id": session_id });
            webhooks.enqueue(&mut tx, "session_started", None, fields).await?;
            tx.commit().await?;
            webhooks.wake();
            calls.sessions.insert(room_id.clone(), session_id);
            calls.participants_by_room.entry(room_id.clone()).or_insert(0);
        }
        SfuEvent::SessionClosed { room_id, reason, duration, e2ee } => {
            let Some(session_id) = calls.sessions.get(room_id) else {
                calls.participants_by_room.remove(room_id);
                return Ok(());
            };
            let mut tx = pool.begin().await?;
            Attendance::session_ended(&mut tx, session_id, close_reason(*reason)).await?;
            let fields = json!({
                "class_id": room_id.as_str(), "session_id": session_id,
                "reason": close_reason(*reason), "duration_seconds": duration.as_secs(), "e2ee": e2ee,
            });
            webhooks.enqueue(&mut tx, "session_ended", None, fields).await?;
            tx.commit().await?;
            webhooks.wake();
            calls.participants_by_room.remove(room_id);
        }
        SfuEvent::ParticipantJoined { room_id, participant_id, user_id, role, e2ee } => {
            let Some(session_id) = calls.sessions.get(room_id) else { return Ok(()) };
            // The display name as the class knows it now; a member removed meanwhile keeps their id.
            let display_name = match models::ClassId::new(room_id.as_str()) {
                Ok(class_id) => sinks
                    .directory
                    .approved_member(&class_id, user_id)
                    .await
                    .ok()
                    .flatten()
                    .map(|(member, _, _)| member.display_name),
                Err(_) => None,
            };
            let display_name = display_name.unwrap_or_else(|| user_id.to_string());
            let mut tx = pool.begin().await?;
            Attendance::joined(
                &mut tx,
                session_id,
                participant_id.as_str(),
                user_id.as_str(),
                &display_name,
                role.as_str(),
                *e2ee,
            )
            .await?;
            let fields = json!({
                "class_id": room_id.as_str(), "session_id": session_id,
                "user_id": user_id.as_str(), "role": role.as_str(), "e2ee": e2ee,
            });
            webhooks.enqueue(&mut tx, "participant_joined", Some(user_id), fields).await?;
            tx.commit().await?;
            webhooks.wake();
            forget_if_erased(pool, user_id).await?;
            *calls.participants_by_room.entry(room_id.clone()).or_insert(0) += 1;
        }
        SfuEvent::ParticipantLeft { room_id, participant_id, user_id, reason } => {
            if let Some(session_id) = calls.sessions.get(room_id) {
                let mut tx = pool.begin().await?;
                Attendance::left(&mut tx, session_id, participant_id.as_str(), leave_reason(*reason)).await?;
                let fields = json!({
                    "class_id": room_id.as_str(), "session_id": session_id,
                    "user_id": user_id.as_str(), "reason": leave_reason(*reason),
                });
                webhooks.enqueue(&mut tx, "participant_left", Some(user_id), fields).await?;
                tx.commit().await?;
                webhooks.wake();
                forget_if_erased(pool, user_id).await?;
            }
            if let Some(n) = calls.participants_by_room.get_mut(room_id) {
                *n = (*n - 1).max(0);
            }
        }
        SfuEvent::JoinRefused { .. } | SfuEvent::Stats { .. } => {}
    }
    Ok(())
}

/// After writing rows that name a user: if the user was erased meanwhile, deletes them again.
/// Checked after the commit, and erasure deletes after recording the erasure, so whichever of the
/// two runs last removes the rows (see [`crate::privacy::erase_user`]).
async fn forget_if_erased(pool: &sqlx::AnyPool, user_id: &UserId) -> Result<(), sqlx::Error> {
    if crate::privacy::was_erased(pool, user_id).await? {
        crate::privacy::forget_call_rows(pool, user_id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::WebhookConfig;
    use models::Role;
    use sfu::ParticipantId;

    async fn sinks() -> EventSinks {
        let pool = crate::db::connect("sqlite::memory:", 1).await.expect("in-memory database");
        let config = crate::config::Config::default();
        let webhooks = Webhooks::new(&WebhookConfig {
            url: Some("http://127.0.0.1:9/hooks".into()),
            secret: Some("s".repeat(32)),
            ..WebhookConfig::default()
        });
        EventSinks {
            metrics: Arc::new(Metrics::new()),
            attendance: Attendance::new(pool.clone()),
            directory: Directory::new(pool, config.tier_table()),
            webhooks,
            node_id: None,
        }
    }

    async fn count(sinks: &EventSinks, query: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(query).fetch_one(sinks.attendance.pool()).await.unwrap().try_get(0).unwrap()
    }

    #[tokio::test]
    async fn a_join_recorded_after_the_users_erasure_names_them_nowhere() {
        let sinks = sinks().await;
        let mut calls = Calls::default();
        let room_id = RoomId::new("c1").unwrap();
        let user_id = UserId::new("pupil").unwrap();
        let joined = |n: &str| SfuEvent::ParticipantJoined {
            room_id: room_id.clone(),
            participant_id: ParticipantId::new(n).unwrap(),
            user_id: user_id.clone(),
            role: Role::Parent,
            e2ee: true,
        };
        record(&SfuEvent::SessionStarted { room_id: room_id.clone() }, &sinks, &mut calls).await.unwrap();
        // The erasure commits while the join is still on its way to this loop.
        crate::privacy::erase_user_rows(sinks.attendance.pool(), &user_id).await.unwrap();
        crate::privacy::forget_call_rows(sinks.attendance.pool(), &user_id).await.unwrap();
        record(&joined("p1"), &sinks, &mut calls).await.unwrap();
        assert_eq!(count(&sinks, "SELECT COUNT(*) FROM attendance WHERE user_id = 'pupil'").await, 0);
        assert_eq!(count(&sinks, "SELECT COUNT(*) FROM webhook_outbox WHERE body LIKE '%pupil%'").await, 0);
        // The session's own webhook is kept.
        assert_eq!(count(&sinks, "SELECT COUNT(*) FROM webhook_outbox").await, 1);
    }

    #[tokio::test]
    async fn a_session_is_end_to_end_encrypted_until_someone_without_a_key_joins() {
        let sinks = sinks().await;
        let mut calls = Calls::default();
        let room_id = RoomId::new("c1").unwrap();
        let joined = |n: &str, e2ee: bool| SfuEvent::ParticipantJoined {
            room_id: room_id.clone(),
            participant_id: ParticipantId::new(n).unwrap(),
            user_id: UserId::new(format!("user-{n}")).unwrap(),
            role: Role::Parent,
            e2ee,
        };
        let session_e2ee = "SELECT e2ee FROM visio_sessions";
        record(&SfuEvent::SessionStarted { room_id: room_id.clone() }, &sinks, &mut calls).await.unwrap();
        record(&joined("p1", true), &sinks, &mut calls).await.unwrap();
        record(&joined("p2", true), &sinks, &mut calls).await.unwrap();
        assert_eq!(count(&sinks, session_e2ee).await, 1);
        record(&joined("p3", false), &sinks, &mut calls).await.unwrap();
        record(&joined("p4", true), &sinks, &mut calls).await.unwrap();
        assert_eq!(count(&sinks, session_e2ee).await, 0);
        let encrypted = "SELECT COUNT(*) FROM attendance WHERE e2ee = 1";
        assert_eq!(count(&sinks, encrypted).await, 3);
        assert_eq!(count(&sinks, "SELECT COUNT(*) FROM attendance WHERE e2ee = 0").await, 1);
    }
}
