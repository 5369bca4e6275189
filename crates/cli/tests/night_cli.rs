//! `imagelab night` against a real `imagelab daemon` process: start with flags, status
//! (JSON and text), stop, a start from the settings file's `night:` section, `--until`,
//! an unknown theme refused with its name, and a clear message when no daemon runs.
#![allow(clippy::unwrap_used)]

mod common;

use common::daemon::{imagelab, start_daemon, stdout};
use common::Sandbox;
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

const THEME: &str = "\
templates: [\"a {red|white} lighthouse at {dawn|dusk}\"]
models: [tiny]
settings: {size: 512x512, steps: 2}
";

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::write(sb.path("models/checkpoints/tiny.safetensors"), b"x").unwrap();
    std::fs::create_dir_all(sb.path("themes")).unwrap();
    std::fs::write(sb.path("themes/lights.yaml"), THEME).unwrap();
    sb
}

fn ok(out: &Output) -> String {
    stdout(out)
}

fn status_json(sb: &Sandbox) -> serde_json::Value {
    serde_json::from_str(&ok(&imagelab(sb, &["night", "status", "--json"]))).unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn start_status_stop_and_the_settings_file_defaults() {
    let sb = sandbox();
    let _daemon = start_daemon(&sb, &[]);

    let out = imagelab(&sb, &["night", "--theme", "nope", "--for", "1h"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"nope\"") && stderr.contains("themes[0]"),
        "{stderr}"
    );
    // Mature from a request alone is refused (the settings file turns it on), naming the
    // field and the setting; a profile that does not exist is named too.
    let out = imagelab(
        &sb,
        &["night", "--theme", "lights", "--for", "1h", "--mature"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("mature")
            && stderr.contains("night: {mature: true}"),
        "{stderr}"
    );
    let out = imagelab(
        &sb,
        &[
            "night",
            "--theme",
            "lights",
            "--for",
            "1h",
            "--profile",
            "no-such-style",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no-such-style"),
        "{stderr}"
    );

    let started = ok(&imagelab(
        &sb,
        &[
            "night",
            "--theme",
            "lights",
            "--for",
            "1h",
            "--max-jobs",
            "3",
        ],
    ));
    assert!(
        started.contains("running") && started.contains("lights"),
        "{started}"
    );
    let status = status_json(&sb);
    let state = status["state"].as_str().unwrap();
    assert!(state == "running" || state == "finished", "{status}");
    let submitted = status["submitted"].as_u64().unwrap();
    assert!((1..=3).contains(&submitted), "{status}");
    assert_eq!(status["max_jobs"], 3);
    let window = status["ends_at_ms"].as_u64().unwrap() - status["started_at_ms"].as_u64().unwrap();
    assert_eq!(window, 3600 * 1000);
    let run = status["run_id"].as_str().unwrap().to_string();

    // The jobs carry their origin through `imagelab jobs --json`.
    let jobs: serde_json::Value =
        serde_json::from_str(&ok(&imagelab(&sb, &["jobs", "--json"]))).unwrap();
    let night_jobs: Vec<&serde_json::Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["night_run"] == run.as_str())
        .collect();
    assert_eq!(night_jobs.len() as u64, submitted);
    assert!(night_jobs
        .iter()
        .all(|j| j["source"] == "night-run" && j["theme"] == "lights"));

    let text = ok(&imagelab(&sb, &["night", "status"]));
    assert!(text.contains(&run) && text.contains("submitted"), "{text}");
    let out = imagelab(&sb, &["night", "--theme", "lights", "--for", "1h"]);
    assert!(!out.status.success(), "a second run while one runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"));

    let stopped = ok(&imagelab(&sb, &["night", "stop"]));
    assert!(stopped.contains("stopped"), "{stopped}");
    assert_eq!(status_json(&sb)["state"], "stopped");

    // Plain `night start` (what the systemd timer runs) takes the `night:` section.
    std::fs::write(
        sb.path("home/config.yaml"),
        "night:\n  themes: [lights]\n  until: \"07:00\"\n  max_jobs: 2\n",
    )
    .unwrap();
    let before = now_ms();
    ok(&imagelab(&sb, &["night", "start"]));
    let status = status_json(&sb);
    // Two jobs fill one worker's share at once, so the run is done submitting at start.
    assert_eq!(status["state"], "finished", "{status}");
    assert!(status["reason"].as_str().unwrap().contains("max_jobs"));
    assert_eq!(
        (status["max_jobs"].as_u64(), status["submitted"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(status["themes"][0], "lights");
    let ends = status["ends_at_ms"].as_u64().unwrap();
    assert!(
        ends > before && ends <= before + 24 * 3600 * 1000,
        "next 07:00: {ends}"
    );
    ok(&imagelab(&sb, &["night", "stop", "--json"]));
}

#[test]
fn without_a_daemon_night_commands_say_so() {
    let sb = sandbox();
    for args in [
        &["night", "status"][..],
        &["night", "stop"][..],
        &["night", "--theme", "lights", "--for", "8h"][..],
    ] {
        let out = imagelab(&sb, args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("daemon is not running"),
            "{args:?}: {stderr}"
        );
    }
    let out = imagelab(&sb, &["night", "start"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--theme"));
}
