//! The overnight runner over HTTP against a real daemon: start, the jobs it queues, 409 on
//! a second start, the feed refilling a drained queue, stop, resume after a restart, and
//! every refused request answering 400 with the field named.
#![allow(clippy::unwrap_used)]

mod common;

use common::{api_error, auth, raw, Lab};
use imagelab_client::Client;
use imagelab_core::api::{JobPriority, JobSource, JobView, ListQuery};
use imagelab_core::night::{NightRequest, NightState};
use imagelab_daemon::{Daemon, RunningDaemon};
use std::time::{Duration, Instant};

const THEME: &str = "\
name: lighthouses
templates:
  - \"a {red|white} lighthouse on a {cliff|reef} at {dawn|dusk}\"
negative: blurry
models: [tiny]
settings: {size: 512x512, steps: 4}
";

const MATURE: &str = "\
templates: [\"a portrait\"]
profile: spicy
models: [tiny]
";

const PROFILES: &str = "\
profiles:
  - {id: spicy, name: Spicy, group: custom, prompt: \"{prompt}, spicy\", mature: true}
";

fn lab() -> Lab {
    let lab = Lab::new();
    let themes = lab.path().join("themes");
    std::fs::create_dir_all(themes.join("profiles")).unwrap();
    std::fs::write(themes.join("lighthouses.yaml"), THEME).unwrap();
    std::fs::write(themes.join("mature.yaml"), MATURE).unwrap();
    std::fs::write(themes.join("broken.yaml"), "templates: [\"a {cat\"]\n").unwrap();
    std::fs::write(themes.join("profiles/test.yaml"), PROFILES).unwrap();
    let bad_yaml = "templates:\n  - \"a cat\"\n  oops: [\n";
    std::fs::write(themes.join("bad_yaml.yaml"), bad_yaml).unwrap();
    lab
}

/// A daemon on `lab` whose generator ticks every 100 ms.
fn start(lab: &Lab) -> RunningDaemon {
    let mut config = lab.config();
    config.night.tick = Duration::from_millis(100);
    Daemon::start(config).unwrap()
}

fn hour(themes: &[&str]) -> NightRequest {
    NightRequest {
        themes: themes.iter().map(|t| t.to_string()).collect(),
        duration_secs: Some(3600),
        seed: Some(7),
        ..NightRequest::default()
    }
}

fn run_jobs(client: &Client, run: &str) -> Vec<JobView> {
    let query = ListQuery {
        state: None,
        limit: Some(1000),
    };
    let mut jobs: Vec<JobView> = client
        .list(&query)
        .unwrap()
        .into_iter()
        .filter(|j| j.night_run.as_deref() == Some(run))
        .collect();
    jobs.sort_by_key(|j| j.id);
    jobs
}

fn queued(jobs: &[JobView]) -> Vec<u64> {
    jobs.iter()
        .filter(|j| j.state == "queued")
        .map(|j| j.id)
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_run_queues_background_jobs_refills_stops_and_resumes_after_a_restart() {
    let lab = lab();
    let daemon = start(&lab);
    let client = lab.client();
    let (status, _, message) = api_error(client.night_status().unwrap_err());
    assert!(
        status == 404 && message.contains("no overnight run"),
        "{message}"
    );

    let started = client.night_start(&hour(&["lighthouses"])).unwrap();
    assert_eq!(started.state, NightState::Running);
    assert_eq!(
        (started.submitted, started.seed),
        (2, 7),
        "two jobs for one worker"
    );
    assert_eq!(started.models, vec!["tiny.safetensors"]);
    let run = started.run_id.clone();
    let jobs = run_jobs(&client, &run);
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        assert_eq!(
            (job.priority, job.source),
            (JobPriority::Background, JobSource::NightRun)
        );
        assert_eq!(job.theme.as_deref(), Some("lighthouses"));
        assert!(job.theme_hash.is_some() && job.template.is_some() && job.prompt_seed.is_some());
        assert!(job.spec.prompt.contains("lighthouse") && job.spec.seed >= 0);
        assert_eq!(
            (job.spec.model.as_str(), job.spec.width),
            ("tiny.safetensors", 512)
        );
    }

    let (status, _, message) = api_error(client.night_start(&hour(&["lighthouses"])).unwrap_err());
    assert_eq!(status, 409, "{message}");
    assert!(message.contains(&run), "{message}");

    // Jobs leaving the queue (cancelled here; no worker runs in this test) are replaced.
    for id in queued(&jobs) {
        client.cancel(id).unwrap();
    }
    wait_until("the refill", || queued(&run_jobs(&client, &run)).len() == 2);
    assert_eq!(client.night_status().unwrap().submitted, 4);

    // A restart resumes the run: same id, counter continued, and it keeps feeding.
    daemon.stop().unwrap();
    let daemon = start(&lab);
    // The new daemon wrote a new token to daemon.json.
    let client = lab.client();
    let resumed = client.night_status().unwrap();
    assert_eq!(
        (resumed.run_id.as_str(), resumed.state),
        (run.as_str(), NightState::Running)
    );
    assert_eq!(resumed.submitted, 4);
    for id in queued(&run_jobs(&client, &run)) {
        client.cancel(id).unwrap();
    }
    wait_until("the refill after restart", || {
        queued(&run_jobs(&client, &run)).len() == 2
    });
    let seeds: Vec<u64> = run_jobs(&client, &run)
        .iter()
        .map(|j| j.prompt_seed.unwrap())
        .collect();
    let unique: std::collections::HashSet<u64> = seeds.iter().copied().collect();
    assert_eq!((seeds.len(), unique.len()), (6, 6), "no prompt seed twice");

    let stopped = client.night_stop().unwrap();
    assert_eq!(stopped.state, NightState::Stopped);
    assert!(
        queued(&run_jobs(&client, &run)).is_empty(),
        "queued jobs withdrawn"
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(run_jobs(&client, &run).len(), 6, "nothing added after stop");
    assert_eq!(client.night_status().unwrap().state, NightState::Stopped);
    drop(daemon);
}

#[test]
fn bad_requests_answer_400_naming_the_field() {
    let lab = lab();
    let daemon = start(&lab);
    let client = lab.client();
    let refused = |request: NightRequest| -> (Option<String>, String) {
        let (status, field, message) = api_error(client.night_start(&request).unwrap_err());
        assert_eq!(status, 400, "{message}");
        (field, message)
    };
    let (field, message) = refused(hour(&["nope"]));
    assert_eq!(field.as_deref(), Some("themes[0]"));
    assert!(
        message.contains("\"nope\"") && message.contains("lighthouses"),
        "{message}"
    );
    let (field, message) = refused(hour(&["mature"]));
    assert_eq!(field.as_deref(), Some("themes[0]"));
    assert!(
        message.contains("mature.yaml") && message.contains("mature"),
        "{message}"
    );
    let (field, message) = refused(hour(&["broken"]));
    assert_eq!(field.as_deref(), Some("themes[0]"));
    assert!(
        message.contains("broken.yaml templates[0]:1:3") && message.contains("unbalanced"),
        "file, line and column: {message}"
    );
    let (field, message) = refused(hour(&["lighthouses", "bad_yaml"]));
    assert_eq!(field.as_deref(), Some("themes[1]"));
    assert!(
        message.contains("bad_yaml.yaml") && message.contains("line 3"),
        "{message}"
    );
    let both = NightRequest {
        ends_at_ms: Some(u64::MAX / 2),
        ..hour(&["lighthouses"])
    };
    assert_eq!(refused(both).0.as_deref(), Some("ends_at_ms"));
    let neither = NightRequest {
        duration_secs: None,
        ..hour(&["lighthouses"])
    };
    assert_eq!(refused(neither).0.as_deref(), Some("ends_at_ms"));
    let past = NightRequest {
        duration_secs: None,
        ends_at_ms: Some(1_000),
        ..hour(&["lighthouses"])
    };
    let (field, message) = refused(past);
    assert!(
        field.as_deref() == Some("ends_at_ms") && message.contains("past"),
        "{message}"
    );
    let zero = NightRequest {
        max_jobs: Some(0),
        ..hour(&["lighthouses"])
    };
    assert_eq!(refused(zero).0.as_deref(), Some("max_jobs"));
    let model = NightRequest {
        models: vec!["missing".into()],
        ..hour(&["lighthouses"])
    };
    let (field, message) = refused(model);
    assert!(
        field.as_deref() == Some("models[0]") && message.contains("missing"),
        "{message}"
    );
    let escape = NightRequest {
        models: vec!["../../secret".into()],
        ..hour(&["lighthouses"])
    };
    assert_eq!(refused(escape).0.as_deref(), Some("models[0]"));

    // Malformed JSON and unknown fields are 400 too; nothing was started by any of this.
    let (status, body) = raw(
        &daemon,
        "POST",
        "/v1/night",
        &[&auth(&daemon), "Content-Type: application/json"],
        r#"{"themes":["lighthouses"],"duration_secs":60,"max_job":3}"#,
    );
    assert!(status == 400 && body.contains("max_job"), "{status} {body}");
    assert_eq!(api_error(client.night_status().unwrap_err()).0, 404);
    let (status, _) = raw(&daemon, "GET", "/v1/night", &[], "");
    assert_eq!(status, 401, "the token is required");
}

#[test]
fn a_run_is_worked_off_by_the_supervisors_workers_and_logged_with_its_theme() {
    let lab = lab();
    let mut config = lab.config();
    config.night.tick = Duration::from_millis(50);
    config.workers = vec![
        imagelab_daemon::WorkerSpec::cpu("w1"),
        imagelab_daemon::WorkerSpec::cpu("w2"),
    ];
    config.worker_program = Some(env!("CARGO_BIN_EXE_imagelab-fake-worker").into());
    let daemon = Daemon::start(config).unwrap();
    let client = lab.client();
    wait_until("both workers to start", || {
        let workers = daemon.gpu_status().workers;
        workers
            .iter()
            .all(|w| w.state == imagelab_core::events::WorkerState::Idle)
    });
    let status = client
        .night_start(&NightRequest {
            max_jobs: Some(12),
            ..hour(&["lighthouses"])
        })
        .unwrap();
    let run = status.run_id.clone();
    // Two workers: the run never keeps more than four of its jobs waiting.
    let mut deepest = 0;
    wait_until("the run's twelve jobs to finish", || {
        let jobs = run_jobs(&client, &run);
        deepest = deepest.max(queued(&jobs).len());
        jobs.len() == 12 && jobs.iter().all(|j| j.state == "done")
    });
    assert!(deepest <= 4, "{deepest} of the run's jobs waited at once");
    let workers: std::collections::BTreeSet<_> = run_jobs(&client, &run)
        .into_iter()
        .filter_map(|j| j.worker)
        .collect();
    assert_eq!(workers.len(), 2, "both workers ran the night's jobs");
    wait_until("the run to finish", || {
        client.night_status().unwrap().state != NightState::Running
    });
    // jobs.log, which analytics reads, names the theme of every job of the run.
    let log = std::fs::read_to_string(lab.path().join("jobs/jobs.log")).unwrap();
    let themed = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["spec"]["night_run"] == run.as_str())
        .inspect(|v| assert_eq!(v["spec"]["theme"], "lighthouses", "{v}"))
        .count();
    assert_eq!(themed, 12);
    daemon.stop().unwrap();
}
