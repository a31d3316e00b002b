//! A replica's connection to one SFU node: requests with ids and their replies, and the pushed
//! events of the participants that joined through this replica, each to its session's channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sfu::{ParticipantEvent, ParticipantId, SfuError, PARTICIPANT_EVENT_QUEUE};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::registry::NodeAddress;
use super::wire::{FromNode, Reply, ToNode, WireError, MAX_FRAME_BYTES, NODE_PATH};

/// How long a replica waits to open a node's connection, and for any reply.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// The node answers pings by itself; they keep the connection alive through idle hours and tell
/// a vanished node from a quiet one.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// Messages waiting for the node's socket.
const OUTBOUND_QUEUE: usize = 4096;

/// What a request came back with: the node's answer, its refusal, or no answer at all.
#[derive(Debug)]
pub enum RequestError {
    /// The node refused; `retry_elsewhere` says whether another node may take it.
    Refused(WireError),
    /// The connection failed or the node did not answer in time.
    Lost,
}

impl From<RequestError> for SfuError {
    fn from(err: RequestError) -> SfuError {
        match err {
            RequestError::Refused(err) => err.into(),
            RequestError::Lost => SfuError::Shutdown,
        }
    }
}

struct Pending {
    reply: oneshot::Sender<Result<Reply, WireError>>,
    /// For a join: where the participant's events go once the node admits it.
    events: Option<mpsc::Sender<ParticipantEvent>>,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<u64, Pending>>,
    participants: Mutex<HashMap<ParticipantId, mpsc::Sender<ParticipantEvent>>>,
    closed: AtomicBool,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        // Held for one map operation; a poisoned map is still consistent.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn participants(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ParticipantId, mpsc::Sender<ParticipantEvent>>> {
        self.participants.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct NodeClient {
    pub node: NodeAddress,
    outbound: mpsc::Sender<String>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

impl NodeClient {
    /// Opens the node's internal WebSocket with the cluster secret.
    pub async fn connect(node: NodeAddress, secret: &str) -> Result<Arc<NodeClient>, SfuError> {
        let mut request = format!("{}{NODE_PATH}", node.url)
            .into_client_request()
            .map_err(|err| SfuError::Io(format!("node url {}: {err}", node.url)))?;
        let bearer = format!("Bearer {secret}")
            .parse()
            .map_err(|_| SfuError::Io("the cluster secret is not a valid header value".into()))?;
        request.headers_mut().insert(axum::http::header::AUTHORIZATION, bearer);
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| SfuError::Io(format!("node {} did not answer", node.node_id)))?
            .map_err(|err| SfuError::Io(format!("node {}: {err}", node.node_id)))?;
        let (mut sink, mut stream) = socket.split();
        let (outbound, mut to_send) = mpsc::channel::<String>(OUTBOUND_QUEUE);
        let shared = Arc::new(Shared::default());
        let client =
            Arc::new(NodeClient { node, outbound, shared: shared.clone(), next_id: AtomicU64::new(1) });
        let node_id = client.node.node_id.clone();
        tokio::spawn(async move {
            let mut ping = tokio::time::interval(PING_INTERVAL);
            let mut last_heard = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    text = to_send.recv() => {
                        let Some(text) = text else { break };
                        if sink.send(Message::Text(text.into())).await.is_err() { break; }
                    }
                    message = stream.next() => {
                        last_heard = tokio::time::Instant::now();
                        match message {
                            Some(Ok(Message::Text(text))) => deliver(&shared, &text),
                            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                            Some(Ok(_)) => {}
                        }
                    }
                    _ = ping.tick() => {
                        // A node whose host vanished sends no reset: silence past a few pings
                        // closes the connection, as a reset would.
                        if last_heard.elapsed() > 3 * PING_INTERVAL { break; }
                        if sink.send(Message::Ping(Default::default())).await.is_err() { break; }
                    }
                }
            }
            tracing::warn!(node = %node_id, "connection to the SFU node closed");
            shared.closed.store(true, Ordering::SeqCst);
            // Dropping the senders fails every request in flight and ends every session whose
            // participant is on that node.
            shared.pending().clear();
            shared.participants().clear();
        });
        Ok(client)
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst) || self.outbound.is_closed()
    }

    /// Sends a request and waits for its reply.
    pub async fn request(
        &self,
        make: impl FnOnce(u64) -> ToNode,
        events: Option<mpsc::Sender<ParticipantEvent>>,
    ) -> Result<Reply, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.shared.pending().insert(id, Pending { reply, events });
        // Our own enums of strings and numbers always serialize.
        let text = serde_json::to_string(&make(id)).expect("node requests serialize");
        if self.shared.closed.load(Ordering::SeqCst) || self.outbound.send(text).await.is_err() {
            self.shared.pending().remove(&id);
            return Err(RequestError::Lost);
        }
        let result = tokio::time::timeout(REPLY_TIMEOUT, answer).await;
        self.shared.pending().remove(&id);
        match result {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(refusal))) => Err(RequestError::Refused(refusal)),
            Ok(Err(_)) | Err(_) => Err(RequestError::Lost),
        }
    }

    /// Sends a message that has no reply.
    pub async fn notify(&self, message: ToNode) {
        // Our own enums of strings and numbers always serialize.
        let text = serde_json::to_string(&message).expect("node requests serialize");
        let _ = self.outbound.send(text).await;
    }

    /// A participant of this replica that the session no longer follows.
    pub fn forget(&self, participant_id: &ParticipantId) {
        self.shared.participants().remove(participant_id);
    }
}

/// A new participant's event channel, as deep as the SFU's own per-participant queue.
pub fn event_channel() -> (mpsc::Sender<ParticipantEvent>, mpsc::Receiver<ParticipantEvent>) {
    mpsc::channel(PARTICIPANT_EVENT_QUEUE)
}

/// One message from the node: a reply to its request, or an event to its participant's session.
fn deliver(shared: &Shared, text: &str) {
    let message: FromNode = match serde_json::from_str(text) {
        Ok(message) => message,
        Err(err) => {
            tracing::warn!(cause = %err, "unreadable message from an SFU node");
            return;
        }
    };
    match message {
        FromNode::Reply { id, result } => {
            let Some(pending) = shared.pending().remove(&id) else { return };
            let participant_id = match &result {
                Ok(Reply::Joined { participant_id, .. } | Reply::Adopted { participant_id }) => {
                    Some(participant_id)
                }
                _ => None,
            };
            if let (Some(participant_id), Some(events)) = (participant_id, pending.events) {
                // Registered before the caller hears of it: the node sends the reply before any
                // event of the participant.
                shared.participants().insert(participant_id.clone(), events);
            }
            let _ = pending.reply.send(result);
        }
        FromNode::Moved { participant_id } => {
            // Its page resumed through another replica: dropping the channel ends the session
            // here, and the node ignores what this replica says about it from now on.
            shared.participants().remove(&participant_id);
        }
        FromNode::Event { participant_id, event } => {
            let last = matches!(event, ParticipantEvent::Left { .. });
            let mut participants = shared.participants();
            let Some(events) = participants.get(&participant_id) else { return };
            match events.try_send(event) {
                Ok(()) if !last => {}
                Ok(()) => {
                    participants.remove(&participant_id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    participants.remove(&participant_id);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The session stopped reading: dropping its channel ends it (and it leaves
                    // the room), as the SFU does with a client that stops reading.
                    participants.remove(&participant_id);
                    tracing::info!(participant = %participant_id, "session too slow for its events: dropped");
                }
            }
        }
    }
}
