//! What happens when the SFU reports: metrics, attendance in the database, webhooks.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use sfu::{RoomId, SfuEvent};
use tokio::sync::mpsc;

use crate::attendance::Attendance;
use crate::directory::Directory;
use crate::metrics::{close_reason, leave_reason, Metrics};
use crate::webhooks::Webhooks;

pub struct EventSinks {
    pub metrics: Arc<Metrics>,
    pub attendance: Attendance,
    pub directory: Directory,
    pub webhooks: Webhooks,
}

/// Runs until the SFU stops. Database failures are logged and skipped: the SFU drops events when
/// this loop falls behind, so nothing here may block for long.
/// Handles events until `stop` turns true, then those already queued (the departures a shutdown
/// causes), and returns.
pub async fn run(
    mut events: mpsc::Receiver<SfuEvent>,
    sinks: EventSinks,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // The session of each room: started on SessionStarted, kept after it closes so that late
    // departures still find their session.
    let mut sessions: HashMap<RoomId, String> = HashMap::new();
    let mut participants_by_room: HashMap<RoomId, i64> = HashMap::new();
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = stop.wait_for(|stop| *stop) => events.try_recv().ok(),
        };
        let Some(event) = event else { return };
        sinks.metrics.sfu_event(&event);
        if let Err(err) = record(&event, &sinks, &mut sessions, &mut participants_by_room).await {
            tracing::error!(cause = %err, "cannot record a call event");
        }
        sinks
            .metrics
            .set_sfu_occupancy(participants_by_room.len() as i64, participants_by_room.values().sum());
    }
}

async fn record(
    event: &SfuEvent,
    sinks: &EventSinks,
    sessions: &mut HashMap<RoomId, String>,
    participants_by_room: &mut HashMap<RoomId, i64>,
) -> Result<(), sqlx::Error> {
    match event {
        SfuEvent::SessionStarted { room_id } => {
            let session_id = crate::uploads::random_token();
            sinks.attendance.session_started(&session_id, room_id.as_str()).await?;
            sinks
                .webhooks
                .send("session_started", json!({ "class_id": room_id.as_str(), "session_id": session_id }));
            sessions.insert(room_id.clone(), session_id);
            participants_by_room.entry(room_id.clone()).or_insert(0);
        }
        SfuEvent::SessionClosed { room_id, reason, duration } => {
            participants_by_room.remove(room_id);
            let Some(session_id) = sessions.get(room_id) else { return Ok(()) };
            sinks.attendance.session_ended(session_id, close_reason(*reason)).await?;
            sinks.webhooks.send(
                "session_ended",
                json!({
                    "class_id": room_id.as_str(), "session_id": session_id,
                    "reason": close_reason(*reason), "duration_seconds": duration.as_secs(),
                }),
            );
        }
        SfuEvent::ParticipantJoined { room_id, participant_id, user_id, role } => {
            *participants_by_room.entry(room_id.clone()).or_insert(0) += 1;
            let Some(session_id) = sessions.get(room_id) else { return Ok(()) };
            // The display name as the class knows it now; a member removed meanwhile keeps their id.
            let class_id = models::ClassId::new(room_id.as_str()).ok();
            let display_name = match class_id {
                Some(class_id) => sinks
                    .directory
                    .approved_member(&class_id, user_id)
                    .await
                    .ok()
                    .flatten()
                    .map(|(member, _, _)| member.display_name),
                None => None,
            };
            let display_name = display_name.unwrap_or_else(|| user_id.to_string());
            sinks
                .attendance
                .joined(session_id, participant_id.as_str(), user_id.as_str(), &display_name, role.as_str())
                .await?;
            sinks.webhooks.send(
                "participant_joined",
                json!({
                    "class_id": room_id.as_str(), "session_id": session_id,
                    "user_id": user_id.as_str(), "role": role.as_str(),
                }),
            );
        }
        SfuEvent::ParticipantLeft { room_id, participant_id, user_id, reason } => {
            if let Some(n) = participants_by_room.get_mut(room_id) {
                *n = (*n - 1).max(0);
            }
            let Some(session_id) = sessions.get(room_id) else { return Ok(()) };
            sinks.attendance.left(session_id, participant_id.as_str(), leave_reason(*reason)).await?;
            sinks.webhooks.send(
                "participant_left",
                json!({
                    "class_id": room_id.as_str(), "session_id": session_id,
                    "user_id": user_id.as_str(), "reason": leave_reason(*reason),
                }),
            );
        }
        SfuEvent::JoinRefused { .. } | SfuEvent::Stats { .. } => {}
    }
    Ok(())
}
