//! The daemon as a systemd `Type=notify` service: a datagram socket in a temporary folder
//! stands in for systemd's NOTIFY_SOCKET and records READY, STATUS, WATCHDOG and STOPPING.
#![allow(clippy::unwrap_used)]

mod common;

use common::{spec, Lab};
use imagelab_core::api::SubmitRequest;
use imagelab_daemon::{Daemon, NotifyConfig};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Every datagram that arrives until `enough` says so or `within` runs out.
fn receive_until(
    socket: &UnixDatagram,
    seen: &mut Vec<String>,
    within: Duration,
    enough: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 4096];
    while !enough(seen) && Instant::now() < deadline {
        // The read timeout keeps a silent daemon from hanging the test.
        match socket.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("receiving notifications: {e}"),
        }
    }
}

fn has(seen: &[String], line: &str) -> bool {
    seen.iter().any(|d| d.lines().any(|l| l == line))
}

fn statuses(seen: &[String]) -> Vec<&str> {
    seen.iter()
        .flat_map(|d| d.lines())
        .filter_map(|l| l.strip_prefix("STATUS="))
        .collect()
}

#[test]
fn ready_status_watchdog_and_stopping_reach_the_notify_socket() {
    let lab = Lab::new();
    let socket_path = lab.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut config = lab.config();
    config.notify = Some(NotifyConfig {
        socket: socket_path.clone(),
        watchdog: Some(Duration::from_millis(200)),
        status_every: Duration::from_millis(100),
    });
    let daemon = Daemon::start(config).unwrap();

    let mut seen = Vec::new();
    receive_until(&socket, &mut seen, Duration::from_secs(5), |s| {
        has(s, "READY=1")
    });
    assert!(has(&seen, "READY=1"), "no READY=1 in {seen:?}");
    let ready = seen.iter().find(|d| d.lines().any(|l| l == "READY=1"));
    assert!(
        ready
            .unwrap()
            .contains("STATUS=0 queued, 0 running on 0/0 workers; queue active"),
        "READY=1 carries the first status: {ready:?}"
    );

    let mut request = SubmitRequest::new(spec(5));
    request.count = 2;
    let ids = lab.client().submit(&request).unwrap().ids;
    assert_eq!(ids.len(), 2);
    receive_until(&socket, &mut seen, Duration::from_secs(10), |s| {
        has(s, "WATCHDOG=1") && statuses(s).iter().any(|l| l.starts_with("2 queued"))
    });
    assert!(has(&seen, "WATCHDOG=1"), "no WATCHDOG=1 in {seen:?}");
    assert!(
        statuses(&seen).contains(&"2 queued, 0 running on 0/0 workers; queue active"),
        "no STATUS with the 2 queued jobs in {seen:?}"
    );
    lab.client().pause().unwrap();
    receive_until(&socket, &mut seen, Duration::from_secs(10), |s| {
        statuses(s).iter().any(|l| l.ends_with("queue paused"))
    });
    assert!(
        statuses(&seen).contains(&"2 queued, 0 running on 0/0 workers; queue paused"),
        "the STATUS line follows a pause: {seen:?}"
    );
    assert!(
        !has(&seen, "STOPPING=1"),
        "STOPPING=1 before stop: {seen:?}"
    );

    daemon.stop().unwrap();
    let before_stop = seen.len();
    receive_until(&socket, &mut seen, Duration::from_secs(5), |s| {
        has(s, "STOPPING=1")
    });
    assert!(
        has(&seen[before_stop..], "STOPPING=1"),
        "no STOPPING=1 after stop: {seen:?}"
    );
    // Once stopped the pings end: systemd must not hear "alive" from a stopped daemon.
    let mut after = Vec::new();
    receive_until(&socket, &mut after, Duration::from_millis(600), |_| false);
    assert!(after.is_empty(), "notifications after the stop: {after:?}");
}

#[test]
fn a_missing_notify_socket_does_not_stop_the_daemon() {
    let lab = Lab::new();
    let mut config = lab.config();
    config.notify = Some(NotifyConfig {
        socket: lab.path().join("nobody-listens.sock"),
        watchdog: Some(Duration::from_millis(50)),
        status_every: Duration::from_millis(50),
    });
    let daemon = Daemon::start(config).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let ids = lab
        .client()
        .submit(&SubmitRequest::new(spec(1)))
        .unwrap()
        .ids;
    assert_eq!(lab.client().get(ids[0]).unwrap().state, "queued");
    daemon.stop().unwrap();
}
