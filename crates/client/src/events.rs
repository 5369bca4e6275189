//! The daemon's event stream (`GET /v1/events`, server-sent events) as a blocking
//! iterator: one [`DaemonEvent`] per `data:` frame, comments (keepalives) skipped, and an
//! `event: lagged` frame turned into [`ClientError::Lagged`], after which the stream goes
//! on. The iterator ends when the daemon closes the stream (it stopped or went away).

use crate::{api_error, Client, ClientError, Result};
use imagelab_core::events::DaemonEvent;
use std::io::{BufRead, BufReader, Read};

/// A frame line longer than this is refused: a preview is tens of kilobytes, so only a
/// broken or hostile server sends more.
const MAX_LINE_BYTES: u64 = 16 << 20;

impl Client {
    /// Subscribes to the daemon's events. The body has no read timeout: the daemon sends
    /// a keepalive comment every 15 s, and a stopped daemon closes the connection.
    pub fn events(&self) -> Result<EventStream> {
        let url = format!("{}/v1/events", self.base);
        let mut response = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Accept", "text/event-stream")
            .config()
            .timeout_global(None)
            .build()
            .call()
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let bytes = response
                .body_mut()
                .read_to_vec()
                .map_err(|e| self.transport_error(e))?;
            return Err(api_error(status, &bytes));
        }
        let body: Box<dyn Read + Send> = Box::new(response.into_body().into_reader());
        Ok(EventStream::new(body, self.base.clone()))
    }
}

/// The events of one subscription, in the order the daemon published them.
pub struct EventStream {
    reader: BufReader<Box<dyn Read + Send>>,
    address: String,
    ended: bool,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("address", &self.address)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// `name: value` (one optional space after the colon, as SSE defines it).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(name)?.strip_prefix(':')?;
    Some(rest.strip_prefix(' ').unwrap_or(rest))
}

impl EventStream {
    /// Reads SSE frames from any byte stream (the response body, or a test's bytes).
    pub fn new(body: Box<dyn Read + Send>, address: String) -> EventStream {
        EventStream {
            reader: BufReader::new(body),
            address,
            ended: false,
        }
    }

    /// One line without its line ending; `None` at the end of the stream.
    fn line(&mut self) -> Result<Option<String>> {
        let mut bytes = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| ClientError::Transport {
                address: self.address.clone(),
                message: format!("the event stream broke: {e}"),
            })?;
        if read == 0 {
            return Ok(None);
        }
        if read as u64 == MAX_LINE_BYTES && bytes.last() != Some(&b'\n') {
            return Err(ClientError::Decode(format!(
                "an event stream line over {MAX_LINE_BYTES} bytes"
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| ClientError::Decode("the event stream is not UTF-8".into()))?;
        Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
    }

    /// The next dispatched frame: its `event:` name (if any) and its data.
    fn frame(&mut self) -> Result<Option<(Option<String>, String)>> {
        let mut kind = None;
        let mut data: Option<String> = None;
        while let Some(line) = self.line()? {
            if line.is_empty() {
                match data.take() {
                    Some(data) => return Ok(Some((kind, data))),
                    // A blank line after comments only, or a frame without data.
                    None => kind = None,
                }
            } else if line.starts_with(':') {
                continue;
            } else if let Some(value) = field(&line, "event") {
                kind = Some(value.to_string());
            } else if let Some(value) = field(&line, "data") {
                match &mut data {
                    Some(text) => {
                        text.push('\n');
                        text.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                }
            }
            // `id:`, `retry:` and unknown fields mean nothing here.
        }
        Ok(None)
    }
}

impl Iterator for EventStream {
    type Item = Result<DaemonEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.ended {
            let (kind, data) = match self.frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            };
            let decode = |e: serde_json::Error| ClientError::Decode(format!("{e}: {data}"));
            return match kind.as_deref() {
                None | Some("message") => Some(serde_json::from_str(&data).map_err(decode)),
                Some("lagged") => {
                    let skipped = serde_json::from_str::<serde_json::Value>(&data)
                        .ok()
                        .and_then(|v| v["skipped"].as_u64())
                        .unwrap_or(0);
                    Some(Err(ClientError::Lagged { skipped }))
                }
                // Kinds a newer daemon may add are skipped, not fatal.
                Some(_) => continue,
            };
        }
        self.ended = true;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(text: &'static str) -> EventStream {
        EventStream::new(Box::new(text.as_bytes()), "test".into())
    }

    #[test]
    fn frames_comments_and_lag_are_read_in_order() {
        let mut events = stream(concat!(
            ": subscribed\n\n",
            "data: {\"event\":\"queue\",\"paused\":true}\n\n",
            ": keepalive\n\n",
            "event: lagged\ndata: {\"skipped\":7}\n\n",
            "event: future\ndata: {}\n\n",
            "data: {\"event\":\"job\",\"id\":4,\"state\":\"queued\",",
            "\"worker\":null,\"error\":null}\r\n\r\n",
        ));
        assert_eq!(
            events.next().unwrap().unwrap(),
            DaemonEvent::Queue { paused: true }
        );
        assert!(matches!(
            events.next().unwrap(),
            Err(ClientError::Lagged { skipped: 7 })
        ));
        assert!(matches!(
            events.next().unwrap().unwrap(),
            DaemonEvent::Job { id: 4, .. }
        ));
        assert!(events.next().is_none(), "the stream ended");
        assert!(events.next().is_none());
    }

    #[test]
    fn a_bad_frame_is_an_error_item_and_the_stream_goes_on() {
        let mut events = stream("data: {nope\n\ndata: {\"event\":\"queue\",\"paused\":false}\n\n");
        assert!(matches!(
            events.next().unwrap(),
            Err(ClientError::Decode(_))
        ));
        assert_eq!(
            events.next().unwrap().unwrap(),
            DaemonEvent::Queue { paused: false }
        );
        assert!(events.next().is_none());
    }
}
