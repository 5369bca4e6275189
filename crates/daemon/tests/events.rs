//! `GET /v1/events`: server-sent events behind the token, carrying what the HTTP handlers
//! publish (queued jobs, cancels, pause and resume) in order, and ending when the daemon
//! stops.
#![allow(clippy::unwrap_used)]

mod common;

use common::{auth, raw, spec, Lab};
use imagelab_core::api::{JobPriority, JobSource, SubmitRequest};
use imagelab_core::events::DaemonEvent;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn submit(lab: &Lab, seed: i64) -> u64 {
    let request = SubmitRequest {
        spec: spec(seed),
        style: None,
        priority: JobPriority::Normal,
        count: 1,
        gpu: None,
        source: JobSource::Api,
    };
    lab.client().submit(&request).unwrap().ids[0]
}

/// Opens the stream by hand and returns the response head and a reader on the body.
fn open(address: std::net::SocketAddr, token_header: &str) -> (String, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /v1/events HTTP/1.1\r\nHost: localhost\r\n{token_header}\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            return (head, reader);
        }
        head.push_str(&line);
    }
}

/// The next `data:` line of the (chunked) body, decoded; chunk sizes, comments and blank
/// lines are passed over.
fn next_event(reader: &mut BufReader<TcpStream>) -> DaemonEvent {
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(json) = line.trim_end().strip_prefix("data: ") {
            return serde_json::from_str(json).unwrap();
        }
    }
}

#[test]
fn queued_jobs_and_a_pause_arrive_in_order() {
    let lab = Lab::new();
    let daemon = lab.start();
    let (head, mut body) = open(daemon.address(), &auth(&daemon));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    // The response head came back, so the subscription exists before anything happens.
    let first = submit(&lab, 1);
    let second = submit(&lab, 2);
    lab.client().pause().unwrap();
    let job = |id| DaemonEvent::Job {
        id,
        state: "queued".into(),
        worker: None,
        error: None,
    };
    assert_eq!(next_event(&mut body), job(first));
    assert_eq!(next_event(&mut body), job(second));
    assert_eq!(next_event(&mut body), DaemonEvent::Queue { paused: true });

    // The client's iterator sees the same stream, and a cancel and a resume on it.
    let mut events = lab.client().events().unwrap();
    lab.client().cancel(first).unwrap();
    lab.client().resume().unwrap();
    let cancelled = events.next().unwrap().unwrap();
    assert_eq!(
        cancelled,
        DaemonEvent::Job {
            id: first,
            state: "cancelled".into(),
            worker: None,
            error: None
        }
    );
    assert_eq!(
        events.next().unwrap().unwrap(),
        DaemonEvent::Queue { paused: false }
    );

    // Stopping the daemon ends both streams at once, not after the shutdown timeout.
    let started = Instant::now();
    daemon.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    let end = events.next();
    assert!(end.is_none(), "the client's stream ended: {end:?}");
    // The raw stream still holds the cancel and resume, then the last chunk of a body
    // that ended properly (not a connection cut off).
    let mut rest = String::new();
    while body.read_line(&mut rest).unwrap() > 0 {}
    assert!(rest.contains("\"paused\":false"), "{rest}");
    assert!(rest.ends_with("\r\n0\r\n\r\n"), "{rest:?}");
}

#[test]
fn the_stream_needs_the_token() {
    let lab = Lab::new();
    let daemon = lab.start();
    let (status, _) = raw(&daemon, "GET", "/v1/events", &[], "");
    assert_eq!(status, 401);
    let (status, _) = raw(
        &daemon,
        "GET",
        "/v1/events",
        &["Authorization: Bearer wrong"],
        "",
    );
    assert_eq!(status, 401);
    let err = imagelab_client::Client::new(&daemon.address().to_string(), "wrong")
        .events()
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
}
