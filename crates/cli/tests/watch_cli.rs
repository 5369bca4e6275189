//! The client commands that read a running daemon live: `imagelab watch` (JSON lines and
//! the plain listing) following a real daemon until it is killed, and `imagelab models`
//! naming each checkpoint's family.
#![allow(clippy::unwrap_used)]

mod common;

use common::daemon::{imagelab, start_daemon, stdout, Running};
use common::{fixtures, Sandbox};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// `imagelab watch ARGS` with its stdout lines on a channel.
fn watch(sb: &Sandbox, args: &[&str]) -> (Running, Receiver<String>) {
    let mut child = sb
        .imagelab()
        .arg("watch")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Running(child), rx)
}

/// Waits for a line that `wanted` accepts, passing over others; panics after 30 s.
fn expect(lines: &Receiver<String>, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if wanted(&line) => return line,
            Ok(_) => continue,
            Err(e) => panic!("no line {what}: {e}"),
        }
    }
}

fn event(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
}

#[test]
fn watch_follows_the_daemon_and_exits_when_it_dies() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("models/checkpoints/tiny.safetensors"), b"x").unwrap();
    let mut daemon = start_daemon(&sb, &[]);
    let (mut json_watch, json_lines) = watch(&sb, &["--json"]);
    let (mut plain_watch, plain_lines) = watch(&sb, &[]);

    // Pause until both watchers have shown it: from then on both are subscribed.
    let paused = json!({"event": "queue", "paused": true});
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = (false, false);
    while seen != (true, true) {
        assert!(
            Instant::now() < deadline,
            "the watchers never showed a pause"
        );
        stdout(&imagelab(&sb, &["queue", "pause"]));
        std::thread::sleep(Duration::from_millis(200));
        seen.0 |= json_lines.try_iter().any(|l| event(&l) == paused);
        seen.1 |= plain_lines.try_iter().any(|l| l == "queue paused");
    }

    let id: u64 = stdout(&imagelab(
        &sb,
        &[
            "submit", "--model", "tiny", "--prompt", "a fox", "--seed", "1",
        ],
    ))
    .trim()
    .parse()
    .unwrap();
    stdout(&imagelab(&sb, &["queue", "resume"]));
    let queued = event(&expect(&json_lines, "for the queued job", |l| {
        event(l)["event"] == "job"
    }));
    assert_eq!(
        queued,
        json!({"event": "job", "id": id, "state": "queued", "worker": null, "error": null})
    );
    let resumed = event(&expect(&json_lines, "for the resume", |l| {
        event(l)["event"] == "queue"
    }));
    assert_eq!(resumed, json!({"event": "queue", "paused": false}));
    let line = format!("job {id} queued");
    expect(&plain_lines, "for the queued job", |l| l == line);
    expect(&plain_lines, "for the resume", |l| l == "queue running");

    // The daemon dies: both watchers say so and fail.
    daemon.0.kill().unwrap();
    for watcher in [&mut json_watch, &mut plain_watch] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = watcher.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "watch kept running");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "{status}");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut watcher.0.stderr.take().unwrap(), &mut err).unwrap();
        assert!(err.contains("the daemon went away"), "{err}");
    }
}

#[test]
fn without_a_daemon_watch_says_so() {
    let sb = Sandbox::new();
    let out = imagelab(&sb, &["watch", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("daemon is not running"),
        "{err}"
    );
}

#[test]
fn models_names_each_checkpoints_family() {
    let sb = Sandbox::new();
    for family in ["sd1", "sd2", "sdxl"] {
        std::fs::copy(
            fixtures().join(format!("{family}.safetensors")),
            sb.path(&format!("models/checkpoints/{family}.safetensors")),
        )
        .unwrap();
    }
    std::fs::write(sb.path("models/checkpoints/junk.safetensors"), b"junk").unwrap();
    std::fs::copy(
        fixtures().join("sd1_vae.safetensors"),
        sb.path("models/vae/sd1_vae.safetensors"),
    )
    .unwrap();
    let _daemon = start_daemon(&sb, &[]);

    let list: Value = serde_json::from_str(&stdout(&imagelab(&sb, &["models", "--json"]))).unwrap();
    let families: Vec<(&str, &Value)> = list["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), &m["family"]))
        .collect();
    // The SD 2.x fixture is a v-prediction model, as the engine loads it.
    assert_eq!(
        families,
        [
            ("junk.safetensors", &Value::Null),
            ("sd1.safetensors", &json!("sd1")),
            ("sd2.safetensors", &json!("sd2-v")),
            ("sdxl.safetensors", &json!("sdxl")),
        ]
    );
    assert!(list["checkpoints"][0]["error"]
        .as_str()
        .unwrap()
        .contains("junk.safetensors"));
    assert_eq!(list["vae"], json!(["sd1_vae.safetensors"]));

    let table = stdout(&imagelab(&sb, &["models"]));
    assert!(table.contains("sd2.safetensors   sd2-v"), "{table}");
    assert!(table.contains("junk.safetensors  ? ("), "{table}");
}
