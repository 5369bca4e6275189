//! One trace per job: a real daemon with a CPU worker runs a job, and its id (and attempt)
//! is on every line either process wrote for it; `imagelab job N --log` merges both sides
//! in time order; `IMAGELAB_LOG` and `IMAGELAB_LOG_FORMAT` take effect (and a bad value is
//! refused by name); a worker that panics logs the panic in the job's span first.
#![allow(clippy::unwrap_used)]

mod common;

use common::daemon::{imagelab, stdout, submit_tiny, Running};
use common::{tiny_sandbox, Sandbox};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `imagelab daemon --worker cpu` with `env` set, once it has written `daemon.json`.
fn start(sb: &Sandbox, env: &[(&str, &str)]) -> Running {
    common::daemon::start_daemon_with(sb, &["--worker", "cpu"], env)
}

/// Waits until job `id` has finished, and returns its state.
fn finished(sb: &Sandbox, id: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let job: serde_json::Value =
            serde_json::from_str(&stdout(&imagelab(sb, &["job", &id.to_string(), "--json"])))
                .unwrap();
        let state = job["state"].as_str().unwrap().to_string();
        if state != "queued" && state != "leased" {
            return state;
        }
        assert!(Instant::now() < deadline, "job {id} never finished: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The log files whose names start with `prefix`, sorted.
fn logs(sb: &Sandbox, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(sb.path("home/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    files.sort();
    files
}

fn lines_of(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_jobs_lines_carry_its_span_on_both_sides_and_job_log_merges_them() {
    let sb = tiny_sandbox();
    let daemon = start(&sb, &[]);
    let id = submit_tiny(&sb, "3");
    assert_eq!(finished(&sb, id), "done");
    drop(daemon);

    let daemon_lines = lines_of(&logs(&sb, "daemon-"));
    let outside = format!("job{{id={id}}}");
    let attempt = format!("job{{id={id} attempt=1}}");
    let daemon_says = |span: &str, message: &str| {
        daemon_lines
            .iter()
            .any(|l| l.contains(&format!("{span}: imagelab_daemon")) && l.contains(message))
    };
    for (span, message) in [
        (&outside, "submitted"),
        (&attempt, "leased"),
        (&attempt, "sent to the worker process"),
        (&attempt, "done"),
    ] {
        assert!(
            daemon_says(span, message),
            "no {span} {message:?} in {daemon_lines:#?}"
        );
    }
    // The default filter (info) leaves the per-step progress lines (debug) out.
    assert!(
        !daemon_lines.iter().any(|l| l.contains("progress")),
        "{daemon_lines:#?}"
    );

    // Every line the worker wrote from the job's start to its end is in the job's span,
    // and the timed spans closed with their durations.
    let worker_lines = lines_of(&logs(&sb, "worker-"));
    let began = worker_lines
        .iter()
        .position(|l| l.contains("generating"))
        .unwrap();
    let end = worker_lines
        .iter()
        .rposition(|l| l.contains(&attempt))
        .unwrap();
    for line in &worker_lines[began..=end] {
        assert!(line.contains(&attempt), "outside the job's span: {line}");
    }
    for span in [
        "load",
        "encode",
        "step{n=1}",
        "step{n=3}",
        "decode",
        "write",
    ] {
        let closed = worker_lines[began..=end]
            .iter()
            .any(|l| l.contains(&format!(":{span}")) && l.contains("close time.busy="));
        assert!(
            closed,
            "no timed {span} span in {:#?}",
            &worker_lines[began..=end]
        );
    }
    assert!(!worker_lines.iter().any(|l| l.contains("step{n=4}")));

    // `imagelab job N --log` needs a daemon; the story spans both processes, in order.
    let _daemon = start(&sb, &[]);
    let story = stdout(&imagelab(&sb, &["job", &id.to_string(), "--log"]));
    let story: Vec<&str> = story.lines().collect();
    assert!(
        story[0].starts_with("daemon ") && story[0].contains("submitted"),
        "{story:#?}"
    );
    assert!(story
        .iter()
        .any(|l| l.starts_with("worker ") && l.contains("step{n=2}")));
    let last_daemon = story
        .iter()
        .rposition(|l| l.starts_with("daemon "))
        .unwrap();
    let last_worker = story
        .iter()
        .rposition(|l| l.starts_with("worker "))
        .unwrap();
    assert!(story[last_daemon].contains("done"), "{story:#?}");
    let first_worker = story.iter().position(|l| l.starts_with("worker ")).unwrap();
    assert!(first_worker > 0 && last_worker > first_worker);
    let times: Vec<&str> = story
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    let parsed: Vec<time::OffsetDateTime> = times
        .iter()
        .map(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
        })
        .collect();
    assert!(parsed.windows(2).all(|w| w[0] <= w[1]), "{story:#?}");
    let other = stdout(&imagelab(&sb, &["job", &id.to_string(), "--log", "--json"]));
    let other: serde_json::Value = serde_json::from_str(&other).unwrap();
    assert_eq!(other["lines"].as_array().unwrap().len(), story.len());
}

#[test]
fn the_filter_and_json_format_apply_to_the_daemon_and_its_worker() {
    let sb = tiny_sandbox();
    let env = [
        ("IMAGELAB_LOG", "info,imagelab_daemon=debug"),
        ("IMAGELAB_LOG_FORMAT", "json"),
    ];
    let _daemon = start(&sb, &env);
    let id = submit_tiny(&sb, "3");
    assert_eq!(finished(&sb, id), "done");
    let files = [logs(&sb, "daemon-"), logs(&sb, "worker-")].concat();
    assert_eq!(files.len(), 2, "{files:?}");
    let mut progress = 0;
    for line in lines_of(&files) {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["timestamp"].is_string() && value["level"].is_string(),
            "{line}"
        );
        if value["fields"]["message"] == "progress" {
            assert_eq!(value["span"]["id"], id, "{line}");
            progress += 1;
        }
    }
    assert_eq!(progress, 3, "one debug line per step");
    let story: serde_json::Value = serde_json::from_str(&stdout(&imagelab(
        &sb,
        &["job", &id.to_string(), "--log", "--json"],
    )))
    .unwrap();
    let sources: Vec<&str> = story["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&"daemon") && sources.contains(&"worker"),
        "{story}"
    );
}

#[test]
fn a_warn_filter_keeps_info_lines_out() {
    let sb = tiny_sandbox();
    let _daemon = start(&sb, &[("IMAGELAB_LOG", "warn")]);
    let id = submit_tiny(&sb, "1");
    assert_eq!(finished(&sb, id), "done");
    let lines = lines_of(&[logs(&sb, "daemon-"), logs(&sb, "worker-")].concat());
    assert!(lines.iter().all(|l| !l.contains(" INFO ")), "{lines:#?}");
}

#[test]
fn bad_log_settings_are_refused_by_name() {
    let sb = tiny_sandbox();
    for (key, value) in [
        ("IMAGELAB_LOG", "imagelab=loud"),
        ("IMAGELAB_LOG_FORMAT", "xml"),
    ] {
        let out = sb
            .imagelab()
            .args(["daemon", "--worker", "cpu"])
            .env(key, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}={value} was taken");
        assert!(err.contains(&format!("{key}=\"{value}\"")), "{err}");
        assert!(!sb.path("home/daemon.json").exists());
    }
}

#[test]
fn a_worker_panic_is_logged_in_the_jobs_span_before_it_dies() {
    let sb = tiny_sandbox();
    let _daemon = start(&sb, &[("IMAGELAB_WORKER_PANIC_AT_STEP", "2")]);
    let id = submit_tiny(&sb, "4");
    // Every attempt panics: the job is retried, then dead.
    assert_eq!(finished(&sb, id), "dead");
    let workers = logs(&sb, "worker-");
    assert!(
        workers.len() >= 3,
        "one worker per attempt at least: {workers:?}"
    );
    let lines = lines_of(&workers);
    for attempt in 1..=3 {
        let span = format!("job{{id={id} attempt={attempt}}}:step{{n=2}}");
        let panicked = lines.iter().any(|l| {
            l.contains(" ERROR ")
                && l.contains(&span)
                && l.contains("imagelab::panic")
                && l.contains("IMAGELAB_WORKER_PANIC_AT_STEP=2")
        });
        assert!(panicked, "no panic line in {span}: {lines:#?}");
    }
    let story = stdout(&imagelab(&sb, &["job", &id.to_string(), "--log"]));
    assert!(story.contains("panicked"), "{story}");
    assert!(
        story
            .lines()
            .any(|l| l.starts_with("daemon ") && l.contains("dead")),
        "{story}"
    );
}
