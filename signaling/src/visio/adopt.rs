//! A `resume` through a replica that does not carry the session (in a cluster: the page's
//! replica stopped, or its new socket reached another one). The room's node hands the
//! participant over with the events it missed (`cluster::MediaPlane::adopt`); from then on
//! the session runs here as if it had always been this replica's.

use models::visio::ServerMessage;
use models::{ClassId, ErrorCode, UserId};
use sfu::{ParticipantEvent, ParticipantId, RoomId, SfuError};
use tokio::sync::mpsc;

use super::session::{Attached, CallSession};
use super::{refuse, send, RESUME_GONE};
use crate::AppState;

pub(super) async fn resume_adopted(
    state: AppState,
    class_id: ClassId,
    user_id: UserId,
    resume_token: String,
    adopted: Result<(ParticipantId, mpsc::Receiver<ParticipantEvent>), SfuError>,
    mut attached: Attached,
) {
    let (participant_id, events) = match adopted {
        Ok(adopted) => adopted,
        Err(err) => {
            tracing::info!(cause = %err, "resume through another replica failed");
            state.metrics.resume(false);
            return refuse(attached.socket, ErrorCode::ResumeFailed, RESUME_GONE).await;
        }
    };
    state.metrics.resume(true);
    tracing::Span::current().record("participant_id", tracing::field::display(&participant_id));
    tracing::info!("call resumed through another replica");
    let room_id = RoomId::from(&class_id);
    // A session taken over from another replica joined long ago: no place among joins in progress.
    let session = CallSession::new(&state, room_id.clone(), participant_id.clone(), events, None);
    // A broken socket here parks the session like any other (`CallSession::run`).
    let _ =
        send(&mut attached.socket, &ServerMessage::Resumed { participant_id: participant_id.to_string() })
            .await;
    state.sfu.signal_restored(&room_id, &participant_id).await;
    session.run(state.calls.clone(), resume_token, user_id, class_id, attached).await;
}
