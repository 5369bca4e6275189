//! `GET /v1/events`: the event bus as server-sent events. Each [`DaemonEvent`] is one
//! `data: <json>` frame; a `: keepalive` comment goes out after 15 s without anything
//! else, so idle watchers (and proxies) keep the connection; a watcher that fell behind
//! the bus gets `event: lagged` with how many events it skipped, and carries on. The
//! stream ends when the daemon stops (the bus is closed first, so a graceful stop never
//! waits on open streams).

use crate::events::EventBus;
use crate::routes::AppState;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use futures_util::Stream;
use imagelab_core::events::DaemonEvent;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

/// How long a stream may stay silent before a keepalive comment.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/events` (behind the token, like the rest of `/v1`).
pub async fn events(state: web::Data<AppState>) -> HttpResponse {
    let stream = event_stream(state.events.subscribe(), state.events.closed(), KEEPALIVE);
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(stream)
}

/// One `data:` frame (serde_json writes no newlines, which a data line may not hold).
fn data_frame(event: &DaemonEvent) -> Bytes {
    match serde_json::to_string(event) {
        Ok(json) => Bytes::from(format!("data: {json}\n\n")),
        Err(e) => Bytes::from(format!(": an event could not be encoded: {e}\n\n")),
    }
}

fn lagged_frame(skipped: u64) -> Bytes {
    Bytes::from(format!(
        "event: lagged\ndata: {{\"skipped\":{skipped}}}\n\n"
    ))
}

struct Subscription {
    events: broadcast::Receiver<DaemonEvent>,
    closed: watch::Receiver<bool>,
    keepalive: Duration,
    greeted: bool,
}

/// The SSE bytes for one subscriber, ending when the bus closes.
pub fn event_stream(
    events: broadcast::Receiver<DaemonEvent>,
    closed: watch::Receiver<bool>,
    keepalive: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let start = Subscription {
        events,
        closed,
        keepalive,
        greeted: false,
    };
    futures_util::stream::unfold(start, |mut sub| async move {
        // A first comment at once: the client sees the stream open (and so knows it is
        // subscribed) before any event happens.
        if !sub.greeted {
            sub.greeted = true;
            return Some((Ok(Bytes::from_static(b": subscribed\n\n")), sub));
        }
        if *sub.closed.borrow() {
            return None;
        }
        let frame = tokio::select! {
            received = sub.events.recv() => match received {
                Ok(event) => data_frame(&event),
                Err(RecvError::Lagged(skipped)) => lagged_frame(skipped),
                Err(RecvError::Closed) => return None,
            },
            // A close, or the bus gone altogether.
            _ = sub.closed.changed() => return None,
            _ = tokio::time::sleep(sub.keepalive) => Bytes::from_static(b": keepalive\n\n"),
        };
        Some((Ok(frame), sub))
    })
}

/// Closes the bus when SIGINT or SIGTERM arrives. actix stops the server on the same
/// signals, but a graceful stop waits for open connections: without this, every watcher
/// would hold the daemon up for the whole shutdown timeout.
#[cfg(unix)]
pub async fn close_on_signals(bus: EventBus) {
    use actix_rt::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    bus.close();
}

#[cfg(not(unix))]
pub async fn close_on_signals(_bus: EventBus) {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn text(chunk: Option<Result<Bytes, Infallible>>) -> String {
        String::from_utf8(chunk.expect("a chunk").unwrap().to_vec()).unwrap()
    }

    #[test]
    fn events_lag_and_keepalives_are_framed_and_a_close_ends_the_stream() {
        actix_rt::System::new().block_on(async {
            let (tx, rx) = broadcast::channel(2);
            let (close, closed) = watch::channel(false);
            let stream = event_stream(rx, closed, Duration::from_millis(20));
            let mut stream = std::pin::pin!(stream);
            assert_eq!(text(stream.next().await), ": subscribed\n\n");
            for paused in [true, false, true, false, true] {
                tx.send(DaemonEvent::Queue { paused }).unwrap();
            }
            // Five sent into room for two: three skipped, then the last two in order.
            assert_eq!(
                text(stream.next().await),
                "event: lagged\ndata: {\"skipped\":3}\n\n"
            );
            assert_eq!(
                text(stream.next().await),
                "data: {\"event\":\"queue\",\"paused\":false}\n\n"
            );
            assert_eq!(
                text(stream.next().await),
                "data: {\"event\":\"queue\",\"paused\":true}\n\n"
            );
            assert_eq!(text(stream.next().await), ": keepalive\n\n");
            close.send_replace(true);
            assert!(stream.next().await.is_none(), "closed");
        });
    }

    #[test]
    fn a_dropped_bus_ends_the_stream() {
        actix_rt::System::new().block_on(async {
            let bus = EventBus::new();
            let stream = event_stream(bus.subscribe(), bus.closed(), KEEPALIVE);
            let mut stream = std::pin::pin!(stream);
            assert_eq!(text(stream.next().await), ": subscribed\n\n");
            drop(bus);
            assert!(stream.next().await.is_none());
        });
    }
}
