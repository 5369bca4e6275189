//! `imagelab daemon` as a real process and the client commands against it: submit (flags,
//! a job file, --count), jobs, job, cancel, queue pause/resume, daemon status; and a clear
//! message when no daemon runs.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn imagelab(sb: &Sandbox, args: &[&str]) -> Output {
    sb.imagelab().args(args).output().unwrap()
}

fn start(sb: &Sandbox) -> Daemon {
    std::fs::create_dir_all(sb.path("jobs")).unwrap();
    let mut cmd = sb.imagelab();
    cmd.arg("daemon").stderr(std::process::Stdio::null());
    let daemon = Daemon {
        child: cmd.spawn().unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sb.path("home/daemon.json").exists() {
        assert!(Instant::now() < deadline, "daemon.json never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn client_commands_drive_a_running_daemon() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("models/checkpoints/tiny.safetensors"), b"x").unwrap();
    let _daemon = start(&sb);

    let ids = stdout(&imagelab(
        &sb,
        &[
            "submit", "--model", "tiny", "--prompt", "a fox", "--seed", "7", "--count", "3",
            "--json",
        ],
    ));
    let ids: serde_json::Value = serde_json::from_str(ids.trim()).unwrap();
    let ids: Vec<u64> = ids["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);

    let job = stdout(&imagelab(&sb, &["job", &ids[2].to_string(), "--json"]));
    let job: serde_json::Value = serde_json::from_str(&job).unwrap();
    assert_eq!(job["spec"]["seed"], 9, "seeds 7, 8, 9");
    assert_eq!(job["state"], "queued");

    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../jobs/example.yaml");
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("sd_xl_base_1.0", "tiny");
    std::fs::write(sb.path("job.yaml"), text).unwrap();
    let from_file = stdout(&imagelab(&sb, &["submit", "--file", "job.yaml"]));
    assert_eq!(from_file.lines().count(), 4, "{from_file}");

    let listed = stdout(&imagelab(&sb, &["jobs", "--state", "queued", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 7);

    stdout(&imagelab(&sb, &["cancel", &ids[0].to_string()]));
    let job: serde_json::Value = serde_json::from_str(&stdout(&imagelab(
        &sb,
        &["job", &ids[0].to_string(), "--json"],
    )))
    .unwrap();
    assert_eq!(job["state"], "cancelled");

    assert!(stdout(&imagelab(&sb, &["queue", "pause"])).starts_with("queue paused"));
    let status = stdout(&imagelab(&sb, &["daemon", "status"]));
    assert!(
        status.contains("queue: paused") && status.contains("queued"),
        "{status}"
    );
    assert!(stdout(&imagelab(&sb, &["queue", "resume"])).starts_with("queue running"));

    // Bad input is refused by the daemon with the field named, and nothing is queued.
    let out = imagelab(&sb, &["submit", "--model", "../secret", "--prompt", "x"]);
    assert!(!out.status.success());
    let out = imagelab(&sb, &["job", "999999"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("999999"));
}

#[test]
fn without_a_daemon_the_client_says_so() {
    let sb = Sandbox::new();
    let out = imagelab(&sb, &["jobs"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("daemon is not running"),
        "{err}"
    );
}
