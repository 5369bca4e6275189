//! The Slurm backend against a real Slurm 22.05: the single-node test cluster of
//! `scripts/slurm-test-cluster.sh` (two fake GPUs), a real `imagelab daemon --slurm` and
//! jobs that run the tiny model on the CPU inside Slurm. Four one-GPU jobs run at most two
//! at a time and all finish; a cancel reaches Slurm; a job that dies inside Slurm is
//! retried, then dead; a kill -9 of the daemon mid-job loses and duplicates nothing; with
//! Slurm down the jobs wait and the daemon says why.
#![allow(clippy::unwrap_used)]

mod common;

use common::daemon::{imagelab, stdout, Running};
use common::{tiny_sandbox, Sandbox};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The test cluster's slurm.conf, started once for the binary. The tests take turns, so
/// each one sees both GPUs. `None` (the test says "skipped") when not root: slurmd and
/// the fake GPUs need root, as CI's `.ci/run` has.
fn cluster() -> Option<(&'static Path, std::sync::MutexGuard<'static, ()>)> {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    static TURN: Mutex<()> = Mutex::new(());
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("skipped: the Slurm test cluster needs root");
        return None;
    }
    let conf = CONF.get_or_init(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slurm-test-cluster.sh");
        let out = Command::new("bash").arg(script).arg("up").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = text
            .lines()
            .find_map(|l| l.strip_prefix("export SLURM_CONF="))
            .expect("the cluster script prints SLURM_CONF");
        PathBuf::from(conf)
    });
    Some((conf, TURN.lock().unwrap_or_else(|e| e.into_inner())))
}

/// A sandbox whose config turns Slurm on (CPU jobs, a quick poll, `max_attempts` 2).
fn slurm_sandbox() -> Sandbox {
    let sb = tiny_sandbox();
    std::fs::write(
        sb.path("home/config.yaml"),
        "scheduler:\n  max_attempts: 2\nslurm:\n  device: cpu\n  poll_ms: 200\n",
    )
    .unwrap();
    sb
}

/// `imagelab daemon --slurm` against `conf`, with `env`, once `daemon.json` is written.
fn start(sb: &Sandbox, conf: &Path, env: &[(&str, &str)]) -> Running {
    let conf = conf.display().to_string();
    let mut env = env.to_vec();
    env.push(("SLURM_CONF", &conf));
    common::daemon::start_daemon_with(sb, &["--slurm"], &env)
}

fn submit(sb: &Sandbox, steps: u32, seed: u32) -> u64 {
    let (steps, seed) = (steps.to_string(), seed.to_string());
    let args = [
        "submit", "--model", "tiny", "--prompt", "a fox", "--width", "64", "--height", "64",
        "--steps", &steps, "--seed", &seed,
    ];
    stdout(&imagelab(sb, &args)).trim().parse().unwrap()
}

fn job(sb: &Sandbox, id: u64) -> serde_json::Value {
    serde_json::from_str(&stdout(&imagelab(sb, &["job", &id.to_string(), "--json"]))).unwrap()
}

/// Waits until `done(job)` holds (or fails after `secs`).
fn wait_for(
    sb: &Sandbox,
    id: u64,
    secs: u64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let job = job(sb, id);
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} never got there: {job}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn finished(sb: &Sandbox, id: u64) -> String {
    let job = wait_for(sb, id, 240, |j| {
        !matches!(j["state"].as_str(), Some("queued" | "leased"))
    });
    job["state"].as_str().unwrap().to_string()
}

/// This sandbox's Slurm jobs in the cluster's completion log, as (name, state, start, end).
fn completed(sb: &Sandbox, conf: &Path) -> Vec<(String, String, String, String)> {
    let token = std::fs::read_to_string(sb.path("jobs/slurm/queue-token")).unwrap();
    let log = conf.parent().unwrap().join("jobcomp.txt");
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let field = |line: &str, key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .unwrap_or("")
            .to_string()
    };
    text.lines()
        .filter(|l| field(l, "Name=").starts_with(&format!("imagelab-{}-", token.trim())))
        .map(|l| {
            (
                field(l, "Name="),
                field(l, "JobState="),
                field(l, "StartTime="),
                field(l, "EndTime="),
            )
        })
        .collect()
}

/// [`completed`] once it holds at least `n` jobs (Slurm logs a job's end a moment after
/// the worker's result is in), or after 30 s.
fn completed_at_least(
    sb: &Sandbox,
    conf: &Path,
    n: usize,
) -> Vec<(String, String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = completed(sb, conf);
        if runs.len() >= n || Instant::now() > deadline {
            return runs;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// This sandbox's jobs Slurm lists now, as (name, state).
fn in_slurm(sb: &Sandbox, conf: &Path) -> Vec<(String, String)> {
    let Ok(token) = std::fs::read_to_string(sb.path("jobs/slurm/queue-token")) else {
        return Vec::new();
    };
    let out = Command::new("squeue")
        .args(["-h", "-o", "%j|%T"])
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('|'))
        .filter(|(name, _)| name.starts_with(&format!("imagelab-{}-", token.trim())))
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

#[test]
fn four_one_gpu_jobs_share_two_gpus_and_all_finish() {
    let Some((conf, _turn)) = cluster() else {
        return;
    };
    let sb = slurm_sandbox();
    let _daemon = start(&sb, conf, &[]);
    let ids: Vec<u64> = (0..4).map(|i| submit(&sb, 24, i)).collect();
    // Two wait in Slurm for a GPU: to the user they are queued, with Slurm's id and reason.
    let deadline = Instant::now() + Duration::from_secs(60);
    let pending = loop {
        let waiting = ids.iter().map(|id| job(&sb, *id)).find(|j| {
            j["state"] == "queued"
                && j["slurm"]["state"] == "PENDING"
                && j["slurm"]["slurm_id"].is_u64()
        });
        if let Some(job) = waiting {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "no job was seen pending in Slurm"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !pending["slurm"]["reason"].as_str().unwrap().is_empty(),
        "{pending}"
    );
    let gpus = stdout(&imagelab(&sb, &["gpus"]));
    assert!(
        gpus.contains("slurm nodes") && gpus.contains("gpu:2"),
        "{gpus}"
    );
    for id in &ids {
        assert_eq!(finished(&sb, *id), "done", "{}", job(&sb, *id));
    }
    let outputs = sb.outputs();
    assert_eq!(outputs.len(), 4, "{outputs:?}");
    assert!(outputs.iter().all(|p| p.extension().unwrap() == "png"));
    let runs = completed_at_least(&sb, conf, 4);
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert!(runs.iter().all(|r| r.1 == "COMPLETED"), "{runs:?}");
    // At no time more than two of them ran (the node has two GPUs), and two did run at once.
    // Counted at each start: the jobs running at that instant (start ≤ t < end).
    let running_at = |a: &(String, String, String, String)| {
        runs.iter().filter(|b| b.2 <= a.2 && a.2 < b.3).count()
    };
    let most = runs.iter().map(running_at).max().unwrap();
    assert!(most <= 2, "{most} at once: {runs:?}");
}

#[test]
fn a_cancel_reaches_slurm_and_ends_the_job() {
    let Some((conf, _turn)) = cluster() else {
        return;
    };
    let sb = slurm_sandbox();
    let _daemon = start(&sb, conf, &[]);
    let id = submit(&sb, 400, 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !in_slurm(&sb, conf)
        .iter()
        .any(|(_, state)| state == "RUNNING")
    {
        assert!(Instant::now() < deadline, "the job never ran in Slurm");
        std::thread::sleep(Duration::from_millis(100));
    }
    stdout(&imagelab(&sb, &["cancel", &id.to_string()]));
    assert_eq!(finished(&sb, id), "cancelled");
    assert!(in_slurm(&sb, conf).is_empty(), "{:?}", in_slurm(&sb, conf));
    let runs = completed_at_least(&sb, conf, 1);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].1, "CANCELLED", "{runs:?}");
    assert!(
        sb.outputs().is_empty(),
        "a cancelled job wrote {:?}",
        sb.outputs()
    );
}

#[test]
fn a_job_that_dies_inside_slurm_is_retried_then_dead() {
    let Some((conf, _turn)) = cluster() else {
        return;
    };
    let sb = slurm_sandbox();
    // Every worker Slurm starts panics at step 1 (Slurm passes the daemon's environment on).
    let _daemon = start(&sb, conf, &[("IMAGELAB_WORKER_PANIC_AT_STEP", "1")]);
    let id = submit(&sb, 4, 1);
    assert_eq!(finished(&sb, id), "dead");
    let job = job(&sb, id);
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Slurm job") && error.contains("FAILED"),
        "{job}"
    );
    let runs = completed_at_least(&sb, conf, 2);
    let names: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(runs.len(), 2, "two attempts (max_attempts 2): {runs:?}");
    assert!(names[0].ends_with(&format!("-{id}-1")) && names[1].ends_with(&format!("-{id}-2")));
}

#[test]
fn a_killed_daemon_loses_and_duplicates_nothing() {
    let Some((conf, _turn)) = cluster() else {
        return;
    };
    let sb = slurm_sandbox();
    let mut daemon = start(&sb, conf, &[]);
    let ids: Vec<u64> = (0..3).map(|i| submit(&sb, 60, i)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while in_slurm(&sb, conf)
        .iter()
        .filter(|(_, s)| s == "RUNNING")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the jobs never ran: {:?}",
            in_slurm(&sb, conf)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.0.kill().unwrap(); // SIGKILL
    daemon.0.wait().unwrap();
    // As if it had died between sbatch answering and the id being written: the next
    // daemon must find that job by its name, not submit it again.
    let record = sb.path(&format!("jobs/slurm/{}-1/record.json", ids[0]));
    let unknown = format!("{{\"job\":{},\"attempt\":1,\"slurm_id\":null}}", ids[0]);
    std::fs::write(&record, unknown).unwrap();
    let _again = start(&sb, conf, &[]);
    for id in &ids {
        assert_eq!(finished(&sb, *id), "done", "{}", job(&sb, *id));
    }
    let runs = completed_at_least(&sb, conf, 3);
    let mut names: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(runs.len(), 3, "each job ran once: {runs:?}");
    assert_eq!(names.len(), 3, "{runs:?}");
    assert!(
        names.iter().all(|n| n.ends_with("-1")),
        "no second attempt: {runs:?}"
    );
    assert_eq!(sb.outputs().len(), 3);
}

#[test]
fn local_workers_and_slurm_share_the_queue() {
    let Some((conf, _turn)) = cluster() else {
        return;
    };
    let sb = slurm_sandbox();
    // Slurm may hold three, so even if it looks first after the resume, one is left for
    // the CPU worker.
    std::fs::write(
        sb.path("home/config.yaml"),
        "slurm:\n  device: cpu\n  poll_ms: 200\n  max_submitted: 3\n",
    )
    .unwrap();
    let conf = conf.display().to_string();
    let _daemon = common::daemon::start_daemon_with(
        &sb,
        &["--slurm", "--worker", "cpu"],
        &[("SLURM_CONF", &conf)],
    );
    // Queued while paused, then released at once with the CPU worker's child up: the
    // worker takes one, Slurm the rest (a CPU worker left to itself may finish them all
    // before Slurm's next look).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !daemon_status(&sb)["workers"]
        .as_array()
        .is_some_and(|w| w.iter().any(|w| w["name"] == "cpu" && w["state"] == "idle"))
    {
        assert!(Instant::now() < deadline, "the CPU worker never got ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    stdout(&imagelab(&sb, &["queue", "pause"]));
    let ids: Vec<u64> = (0..4).map(|i| submit(&sb, 12, i)).collect();
    stdout(&imagelab(&sb, &["queue", "resume"]));
    let mut workers = Vec::new();
    for id in &ids {
        assert_eq!(finished(&sb, *id), "done");
        workers.push(job(&sb, *id)["worker"].as_str().unwrap().to_string());
    }
    assert!(workers.iter().any(|w| w == "cpu"), "{workers:?}");
    assert!(workers.iter().any(|w| w == "slurm"), "{workers:?}");
    assert_eq!(sb.outputs().len(), 4);
}

#[test]
fn with_slurm_down_jobs_wait_and_the_daemon_says_why() {
    let Some((conf, _turn)) = cluster() else {
        return;
    };
    let sb = slurm_sandbox();
    // The same cluster settings, pointed at a controller port where nothing listens.
    let text = std::fs::read_to_string(conf).unwrap();
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("SlurmctldPort="))
        .unwrap();
    let down = sb.path("slurm-down.conf");
    let moved = text.replace(&format!("SlurmctldPort={port}"), "SlurmctldPort=9");
    std::fs::write(&down, moved).unwrap();
    let _daemon = start(&sb, &down, &[]);
    let id = submit(&sb, 4, 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let reason = loop {
        let status = daemon_status(&sb);
        let slurm = status["workers"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["name"] == "slurm").cloned());
        if let Some(reason) = slurm.and_then(|w| w["reason"].as_str().map(str::to_string)) {
            break reason;
        }
        assert!(Instant::now() < deadline, "no reason shown: {status}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        reason.contains("Slurm") && reason.contains("squeue"),
        "{reason}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(job(&sb, id)["state"], "queued");
}

/// `GET /v1/gpus` of the sandbox's daemon.
fn daemon_status(sb: &Sandbox) -> serde_json::Value {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path("home/daemon.json")).unwrap())
            .unwrap();
    let url = format!("http://{}/v1/gpus", info["address"].as_str().unwrap());
    let out = Command::new("curl")
        .args([
            "-sf",
            "-H",
            &format!("Authorization: Bearer {}", info["token"].as_str().unwrap()),
            &url,
        ])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn a_night_run_keeps_at_most_max_submitted_jobs_in_slurm() {
    let Some((conf, _turn)) = cluster() else {
        return;
    };
    let sb = tiny_sandbox();
    std::fs::write(
        sb.path("home/config.yaml"),
        "slurm:\n  device: cpu\n  poll_ms: 200\n  max_submitted: 1\n",
    )
    .unwrap();
    std::fs::create_dir_all(sb.path("themes")).unwrap();
    std::fs::write(
        sb.path("themes/lights.yaml"),
        "templates: [\"a {red|white} lighthouse\"]\nmodels: [tiny]\nsettings: {size: 64x64, steps: 6}\n",
    )
    .unwrap();
    let _daemon = start(&sb, conf, &[]);
    stdout(&imagelab(
        &sb,
        &[
            "night",
            "--theme",
            "lights",
            "--for",
            "1h",
            "--max-jobs",
            "4",
        ],
    ));
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut most = 0;
    while sb.outputs().len() < 4 {
        most = most.max(in_slurm(&sb, conf).len());
        assert!(Instant::now() < deadline, "the run made {:?}", sb.outputs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        most <= 1,
        "{most} of our jobs were in Slurm at once (max_submitted 1)"
    );
    // Slurm logs a job's end a moment after its image is written.
    assert_eq!(completed_at_least(&sb, conf, 4).len(), 4);
}
