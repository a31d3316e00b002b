//! The SFU's events to the server: call lifecycle (sessions, joins, departures) is never dropped,
//! statistics are.
//!
//! Attendance and webhooks are built from the lifecycle events, so losing one loses a row. They
//! are few (a handful per join) and joins are rate-limited and admitted by the server, which
//! reads [`EventSender::backlog`] to stop admitting while its consumer lags; statistics and
//! refusal counts are dropped once the backlog passes [`LOSSY_LIMIT`], so a stalled consumer
//! never costs more than that for them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::proto::SfuEvent;

/// Events queued past which statistics and refusal counts are dropped.
pub const LOSSY_LIMIT: usize = 4096;

/// Where rooms send events. Cheap to clone.
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::UnboundedSender<SfuEvent>,
    backlog: Arc<AtomicUsize>,
}

/// The server's end: each event once, in the order each room sent them.
pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<SfuEvent>,
    backlog: Arc<AtomicUsize>,
}

pub fn event_queue() -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backlog = Arc::new(AtomicUsize::new(0));
    (EventSender { tx, backlog: backlog.clone() }, EventReceiver { rx, backlog })
}

impl EventSender {
    /// Queues the event; statistics and refusals only while the backlog is under [`LOSSY_LIMIT`].
    /// Returns whether it was queued.
    pub fn send(&self, event: SfuEvent) -> bool {
        let lossy = matches!(event, SfuEvent::Stats { .. } | SfuEvent::JoinRefused { .. });
        if lossy && self.backlog() >= LOSSY_LIMIT {
            return false;
        }
        self.backlog.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(event).is_err() {
            // Nobody listens any more (the server is shutting down).
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Events sent and not yet received.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }
}

impl EventReceiver {
    pub async fn recv(&mut self) -> Option<SfuEvent> {
        let event = self.rx.recv().await;
        self.received(event)
    }

    pub fn try_recv(&mut self) -> Option<SfuEvent> {
        let event = self.rx.try_recv().ok();
        self.received(event)
    }

    fn received(&self, event: Option<SfuEvent>) -> Option<SfuEvent> {
        if event.is_some() {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{RoomId, SfuEvent};

    fn started() -> SfuEvent {
        SfuEvent::SessionStarted { room_id: RoomId::new("c").unwrap() }
    }

    #[tokio::test]
    async fn lifecycle_events_are_kept_past_the_limit_and_statistics_are_not() {
        let (tx, mut rx) = event_queue();
        for _ in 0..LOSSY_LIMIT + 10 {
            assert!(tx.send(started()));
        }
        let refused =
            SfuEvent::JoinRefused { room_id: RoomId::new("c").unwrap(), code: models::ErrorCode::RoomFull };
        assert!(!tx.send(refused), "a refusal count is dropped past the limit");
        assert_eq!(tx.backlog(), LOSSY_LIMIT + 10);
        let mut n = 0;
        while rx.try_recv().is_some() {
            n += 1;
        }
        assert_eq!(n, LOSSY_LIMIT + 10);
        assert_eq!(tx.backlog(), 0);
    }
}
