//! `imagelab daemon` as a real process and the client commands against it: submit (flags,
//! a job file, --count), jobs, job, cancel, queue pause/resume, daemon status; and a clear
//! message when no daemon runs.
#![allow(clippy::unwrap_used)]

mod common;

use common::daemon::{imagelab, start_daemon, stdout, Running};
use common::{fixtures, Sandbox};
use std::process::Command;
use std::time::{Duration, Instant};

fn start(sb: &Sandbox) -> Running {
    start_daemon(sb, &[])
}

#[test]
fn client_commands_drive_a_running_daemon() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("models/checkpoints/tiny.safetensors"), b"x").unwrap();
    let _daemon = start(&sb);

    let submitted = imagelab(
        &sb,
        &[
            "submit", "--model", "tiny", "--prompt", "a fox", "--seed", "7", "--count", "3",
            "--json",
        ],
    );
    let said = String::from_utf8_lossy(&submitted.stderr);
    assert!(
        said.contains("warning: this daemon runs no worker"),
        "{said}"
    );
    let ids: serde_json::Value = serde_json::from_str(stdout(&submitted).trim()).unwrap();
    // This daemon has no worker (no NVML here, no --worker): the answer says so.
    let warning = ids["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("--worker cpu"), "{ids}");
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

    // A waiting job moves up; the cancelled one is cleared away, the waiting ones stay.
    let second = ids[1].to_string();
    let out = stdout(&imagelab(&sb, &["priority", &second, "interactive"]));
    assert!(out.contains("Interactive"), "{out}");
    assert_eq!(job_json(&sb, ids[1])["priority"], "interactive");
    let out = stdout(&imagelab(&sb, &["queue", "clear"]));
    assert!(out.starts_with("removed 1 finished jobs"), "{out}");
    assert!(!imagelab(&sb, &["job", &ids[0].to_string()])
        .status
        .success());
    let out = imagelab(&sb, &["priority", &second, "urgent"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("urgent"));

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

fn job_json(sb: &Sandbox, id: u64) -> serde_json::Value {
    serde_json::from_str(&stdout(&imagelab(sb, &["job", &id.to_string(), "--json"]))).unwrap()
}

fn wait_for(
    sb: &Sandbox,
    id: u64,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    // Generous: CI machines have two cores, and the retried job runs all its steps again.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let job = job_json(sb, id);
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} never {what}: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The PIDs of `parent`'s child processes (from /proc).
fn children_of(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{parent}/task"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids
}

#[test]
fn a_cpu_worker_runs_queued_jobs_and_survives_being_killed() {
    let sb = Sandbox::new();
    std::fs::copy(
        fixtures().join("sd1.safetensors"),
        sb.path("models/checkpoints/tiny.safetensors"),
    )
    .unwrap();
    let daemon = start_daemon(&sb, &["--worker", "cpu"]);
    let base = [
        "submit", "--model", "tiny", "--prompt", "a fox", "--width", "64", "--height", "64",
        "--seed", "3",
    ];

    // A job runs to completion and its image lands in output/ under the job's own name.
    let submitted = imagelab(&sb, &[&base[..], &["--steps", "2"]].concat());
    let said = String::from_utf8_lossy(&submitted.stderr);
    assert!(
        !said.contains("warning"),
        "a daemon with a worker warned: {said}"
    );
    let id: u64 = stdout(&submitted).trim().parse().unwrap();
    let job = wait_for(&sb, id, "finished", |j| {
        j["state"] != "queued" && j["state"] != "leased"
    });
    assert_eq!(job["state"], "done", "{job}");
    let name = format!("job{id:010}_000.png");
    assert_eq!(job["outputs"][0], name.as_str());
    assert!(sb.path("output").join(&name).exists());
    let first = id;

    // A job pinned to a GPU this daemon has no worker for is queued, with a warning.
    let pinned = imagelab(&sb, &[&base[..], &["--gpu", "GPU-nowhere"]].concat());
    let said = String::from_utf8_lossy(&pinned.stderr);
    assert!(
        said.contains("pinned to GPU GPU-nowhere") && said.contains("(cpu)"),
        "{said}"
    );
    let pinned_id = stdout(&pinned).trim().to_string();
    stdout(&imagelab(&sb, &["cancel", &pinned_id]));

    // Killing the worker in the middle of a job costs one attempt; the job still finishes.
    let id: u64 = stdout(&imagelab(&sb, &[&base[..], &["--steps", "400"]].concat()))
        .trim()
        .parse()
        .unwrap();
    wait_for(&sb, id, "started", |j| j["state"] == "leased");
    std::thread::sleep(Duration::from_millis(300));
    let workers = children_of(daemon.0.id());
    assert_eq!(workers.len(), 1, "one worker child: {workers:?}");
    // 400 steps take seconds even on a fast CPU: the kill lands mid-job.
    assert_eq!(
        job_json(&sb, id)["state"],
        "leased",
        "the job finished before the kill"
    );
    Command::new("kill")
        .args(["-9", &workers[0].to_string()])
        .status()
        .unwrap();
    let job = wait_for(&sb, id, "finished after the kill", |j| {
        j["state"] == "done" || j["state"] == "dead"
    });
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["attempts"], 1, "the killed attempt is counted: {job}");
    let after = children_of(daemon.0.id());
    assert_eq!(after.len(), 1, "a new worker replaced the killed one");
    assert_ne!(after[0], workers[0]);
    assert!(stdout(&imagelab(&sb, &["daemon", "status"])).contains("done"));

    // Favorites: a job with a rating, an image by its path, listed, removed, and counted by
    // the analytics that read jobs.log.
    let out = stdout(&imagelab(
        &sb,
        &["fav", &first.to_string(), "--rating", "5"],
    ));
    assert_eq!(out.trim(), format!("starred job {first} (5/5)"));
    let image = format!("output/job{id:010}_000.png");
    assert!(stdout(&imagelab(&sb, &["fav", &image])).contains(&format!("job{id:010}_000.png")));
    let favs: serde_json::Value =
        serde_json::from_str(&stdout(&imagelab(&sb, &["favs", "--json"]))).unwrap();
    assert_eq!(favs.as_array().unwrap().len(), 2, "{favs}");
    assert_eq!(favs[0]["rating"], 5);
    assert_eq!(
        stdout(&imagelab(&sb, &["unfav", &image])).trim(),
        "unstarred"
    );
    for (args, needle) in [
        (vec!["fav", "999999"], "999999"),
        (vec!["fav", &first.to_string(), "--rating", "9"], "rating"),
        (vec!["fav", "../secret.png"], "image"),
    ] {
        let out = imagelab(&sb, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    let out = imagelab(&sb, &["analyze", "--out", "report.json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("2 images, 1 favorites"),
        "{err}"
    );
}
