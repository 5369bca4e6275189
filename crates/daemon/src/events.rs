//! The event bus: every job transition, step (with its preview) and worker change is
//! published here, and each `GET /v1/events` stream subscribes. A broadcast channel keeps
//! publishers from ever waiting on a slow watcher: one that falls behind skips events
//! (and is told how many), it never slows a worker down.

use imagelab_core::events::DaemonEvent;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// How many events a watcher may fall behind before it skips some.
const BACKLOG: usize = 1024;

/// A cheap-to-clone handle on the bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<DaemonEvent>,
    /// Set once the daemon stops: open streams end instead of holding the server up.
    closed: Arc<watch::Sender<bool>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        let (sender, _) = broadcast::channel(BACKLOG);
        let (closed, _) = watch::channel(false);
        EventBus {
            sender,
            closed: Arc::new(closed),
        }
    }

    /// Sends to every current subscriber; with none, the event is dropped.
    pub fn publish(&self, event: DaemonEvent) {
        let _ = self.sender.send(event);
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DaemonEvent> {
        self.sender.subscribe()
    }

    /// Tells every event stream to end (the daemon is stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Becomes `true` when [`EventBus::close`] is called.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_get_events_published_after_they_subscribe() {
        let bus = EventBus::new();
        bus.publish(DaemonEvent::Queue { paused: true });
        let mut rx = bus.subscribe();
        bus.publish(DaemonEvent::Queue { paused: false });
        assert_eq!(rx.try_recv().unwrap(), DaemonEvent::Queue { paused: false });
        assert!(rx.try_recv().is_err());
    }
}
