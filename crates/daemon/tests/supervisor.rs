//! The supervisor against fake workers (`imagelab-fake-worker`, the worker protocol
//! without an engine) and scripted GPUs: jobs run and finish, the idle policy holds jobs
//! back from a GPU someone else uses, yield-immediately gives a running job back, cancel
//! stops a running job, a crashed or out-of-memory worker restarts, model affinity, and
//! the load/unload/GPU-status routes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{auth, raw, spec, Lab};
use imagelab_core::api::SubmitRequest;
use imagelab_core::events::{DaemonEvent, WorkerState};
use imagelab_daemon::{DaemonConfig, RunningDaemon, WorkerSpec};
use imagelab_gpu::{FakeClock, GpuProbe, ScriptedProbe};
use std::time::{Duration, Instant};

fn fake_worker_config(lab: &Lab, workers: Vec<WorkerSpec>) -> DaemonConfig {
    let mut config = lab.config();
    config.workers = workers;
    config.worker_program = Some(env!("CARGO_BIN_EXE_imagelab-fake-worker").into());
    config.restart_delay = Duration::from_millis(50);
    config.policy.sample_interval_ms = 20;
    config
}

fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn job_state(lab: &Lab, id: u64) -> String {
    lab.client().get(id).unwrap().state
}

fn submit(lab: &Lab, prompt: &str, steps: u32) -> u64 {
    let mut params = spec(1);
    params.prompt = prompt.into();
    params.steps = steps;
    lab.client()
        .submit(&SubmitRequest::new(params))
        .unwrap()
        .ids[0]
}

fn worker_state(daemon: &RunningDaemon, name: &str) -> Option<WorkerState> {
    daemon
        .gpu_status()
        .workers
        .into_iter()
        .find(|w| w.name == name)
        .map(|w| w.state)
}

#[test]
fn jobs_run_on_every_worker_and_their_events_are_published() {
    let lab = Lab::new();
    let config = fake_worker_config(&lab, vec![WorkerSpec::cpu("w1"), WorkerSpec::cpu("w2")]);
    let daemon = imagelab_daemon::Daemon::start(config).unwrap();
    let mut events = daemon.events().subscribe();
    // Queued together, so both workers are free when dispatch starts.
    lab.client().pause().unwrap();
    let ids: Vec<u64> = (0..6).map(|_| submit(&lab, "a lighthouse", 3)).collect();
    wait_for("both workers to start", Duration::from_secs(20), || {
        let workers = daemon.gpu_status().workers;
        workers
            .iter()
            .all(|w| w.state == WorkerState::Idle)
            .then_some(())
    });
    lab.client().resume().unwrap();
    for id in &ids {
        wait_for("jobs to finish", Duration::from_secs(20), || {
            (job_state(&lab, *id) == "done").then_some(())
        });
    }
    let mut workers_used = std::collections::BTreeSet::new();
    for id in &ids {
        let job = lab.client().get(*id).unwrap();
        assert_eq!(job.outputs.len(), 1);
        assert!(lab.path().join("output").join(&job.outputs[0]).is_file());
        workers_used.insert(job.worker.unwrap());
    }
    assert_eq!(
        workers_used.len(),
        2,
        "both workers took jobs: {workers_used:?}"
    );
    let mut seen_progress = 0;
    let mut seen_done = 0;
    while let Ok(event) = events.try_recv() {
        match event {
            DaemonEvent::Progress { total, .. } => {
                assert_eq!(total, 3);
                seen_progress += 1;
            }
            DaemonEvent::Job { state, .. } if state == "done" => seen_done += 1,
            _ => {}
        }
    }
    assert_eq!(seen_done, 6);
    assert_eq!(seen_progress, 18, "three steps for each of six jobs");
    daemon.stop().unwrap();
}

/// One fake GPU, `GPU-A`, on a fake clock; a stranger (PID 4242) holds it from `busy.0`
/// to `busy.1`.
fn scripted_gpu(clock: &FakeClock, busy: (u64, u64)) -> ScriptedProbe {
    ScriptedProbe::new(clock.clone())
        .gpu(0, "GPU-A", "Fake GPU", 24_000)
        .at(Duration::from_secs(busy.0), 0, |g| {
            g.process(4242, 2_000).util(90)
        })
        .at(Duration::from_secs(busy.1), 0, |g| {
            g.remove_process(4242).util(0)
        })
}

fn gpu_config(lab: &Lab, probe: ScriptedProbe, clock: &FakeClock, yield_now: bool) -> DaemonConfig {
    let mut config = fake_worker_config(lab, vec![WorkerSpec::gpu("gpu0", "GPU-A", "0")]);
    config.policy.consecutive_samples = 2;
    config.policy.lease_grace_ms = 0;
    config.policy.yield_immediately = yield_now;
    let probe = std::sync::Mutex::new(Some(probe));
    config.probe = Some(Box::new(move || {
        Ok(Box::new(probe.lock().unwrap().take().unwrap()) as Box<dyn GpuProbe + Send>)
    }));
    config.clock = Some(Box::new(clock.clone()));
    config
}

#[test]
fn no_job_starts_on_a_gpu_a_stranger_uses() {
    let lab = Lab::new();
    let clock = FakeClock::new();
    let probe = scripted_gpu(&clock, (0, 100));
    let daemon = imagelab_daemon::Daemon::start(gpu_config(&lab, probe, &clock, false)).unwrap();
    let id = submit(&lab, "a lighthouse", 2);
    let reason = wait_for(
        "the worker to show as blocked",
        Duration::from_secs(10),
        || match worker_state(&daemon, "gpu0") {
            Some(WorkerState::Blocked { reason }) => Some(reason),
            _ => None,
        },
    );
    assert!(reason.contains("4242"), "{reason}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        job_state(&lab, id),
        "queued",
        "nothing runs while the stranger is there"
    );
    let gpus = lab.client().get(id).unwrap();
    assert!(gpus.worker.is_none());
    // The stranger leaves; after two quiet samples the job runs.
    clock.set(Duration::from_secs(101));
    wait_for("the job to finish", Duration::from_secs(10), || {
        (job_state(&lab, id) == "done").then_some(())
    });
    // The history shows the stranger's time, not idle and why, then the quiet GPU.
    let history = lab.client().gpu_history().unwrap();
    assert_eq!(history.window_secs, 600);
    let gpu = &history.gpus[0];
    assert_eq!((gpu.uuid.as_str(), gpu.memory_total_mib), ("GPU-A", 24_000));
    let blocked = gpu.points.iter().find(|p| !p.idle).expect("a busy sample");
    assert!(
        blocked
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("4242")),
        "{blocked:?}"
    );
    assert_eq!(blocked.utilization_pct, Some(90));
    assert!(
        gpu.points.iter().any(|p| p.idle),
        "no idle sample after the stranger left"
    );
    assert!(gpu.points.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    daemon.stop().unwrap();
}

#[test]
fn a_running_job_finishes_when_a_stranger_arrives_unless_told_to_yield() {
    for yield_now in [false, true] {
        let lab = Lab::new();
        let clock = FakeClock::new();
        clock.set(Duration::from_secs(1));
        // The stranger comes at t = 10 s and leaves at t = 20 s.
        let probe = scripted_gpu(&clock, (10, 20));
        let mut config = gpu_config(&lab, probe, &clock, yield_now);
        config.policy.consecutive_samples = 1;
        let daemon = imagelab_daemon::Daemon::start(config).unwrap();
        // 200 steps of 5 ms: a second of work.
        let id = submit(&lab, "a lighthouse", 200);
        wait_for("the job to start", Duration::from_secs(10), || {
            (job_state(&lab, id) == "leased").then_some(())
        });
        clock.set(Duration::from_secs(10));
        if yield_now {
            wait_for("the job to be given back", Duration::from_secs(10), || {
                (job_state(&lab, id) == "queued").then_some(())
            });
            let job = lab.client().get(id).unwrap();
            assert_eq!(job.attempts, 0, "a yield costs no attempt");
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(job_state(&lab, id), "queued");
            clock.set(Duration::from_secs(21));
        }
        wait_for("the job to finish", Duration::from_secs(20), || {
            (job_state(&lab, id) == "done").then_some(())
        });
        // Samples taken while it ran name it as ours.
        let history = lab.client().gpu_history().unwrap();
        assert!(
            history.gpus[0].points.iter().any(|p| p.our_jobs == [id]),
            "no sample shows job {id} on the GPU"
        );
        daemon.stop().unwrap();
    }
}

#[test]
fn cancelling_a_running_job_stops_it_and_the_worker_takes_the_next() {
    let lab = Lab::new();
    let daemon =
        imagelab_daemon::Daemon::start(fake_worker_config(&lab, vec![WorkerSpec::cpu("w")]))
            .unwrap();
    let long = submit(&lab, "a lighthouse", 1_000);
    let next = submit(&lab, "a harbour", 2);
    wait_for("the long job to start", Duration::from_secs(10), || {
        (job_state(&lab, long) == "leased").then_some(())
    });
    let started = Instant::now();
    lab.client().cancel(long).unwrap();
    wait_for("the cancel", Duration::from_secs(5), || {
        (job_state(&lab, long) == "cancelled").then_some(())
    });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped at a step, not at the end"
    );
    wait_for("the next job", Duration::from_secs(10), || {
        (job_state(&lab, next) == "done").then_some(())
    });
    let outputs = lab.client().get(long).unwrap().outputs;
    assert!(outputs.is_empty());
    daemon.stop().unwrap();
}

#[test]
fn a_crashed_or_out_of_memory_worker_restarts_and_the_job_retries() {
    let lab = Lab::new();
    let daemon =
        imagelab_daemon::Daemon::start(fake_worker_config(&lab, vec![WorkerSpec::cpu("w")]))
            .unwrap();
    let first_pid = wait_for("the worker", Duration::from_secs(10), || {
        daemon.worker_pids().first().copied()
    });
    for prompt in ["crash", "oom"] {
        let id = submit(&lab, prompt, 3);
        let job = wait_for("the job to die", Duration::from_secs(20), || {
            let job = lab.client().get(id).unwrap();
            (job.state == "dead").then_some(job)
        });
        assert_eq!(job.attempts, 3, "{prompt}: every attempt was used");
        assert!(job.error.is_some());
    }
    let ok = submit(&lab, "a lighthouse", 2);
    wait_for(
        "a normal job after the crashes",
        Duration::from_secs(10),
        || (job_state(&lab, ok) == "done").then_some(()),
    );
    let pid = daemon.worker_pids()[0];
    assert_ne!(pid, first_pid, "the worker was started again");
    // A permanent failure fails at once, without retries.
    let failed = submit(&lab, "fail", 2);
    let job = wait_for("the failure", Duration::from_secs(10), || {
        let job = lab.client().get(failed).unwrap();
        (job.state == "failed").then_some(job)
    });
    assert_eq!(job.attempts, 1);
    daemon.stop().unwrap();
}

#[test]
fn a_worker_with_the_model_loaded_takes_its_job_first() {
    let lab = Lab::new();
    for name in ["a.safetensors", "b.safetensors"] {
        std::fs::write(lab.path().join("models/checkpoints").join(name), b"x").unwrap();
    }
    let daemon = imagelab_daemon::Daemon::start(fake_worker_config(
        &lab,
        vec![WorkerSpec::cpu("wa"), WorkerSpec::cpu("wb")],
    ))
    .unwrap();
    let client = lab.client();
    wait_for("idle workers", Duration::from_secs(10), || {
        let status = client.gpus().ok()?;
        status
            .workers
            .iter()
            .all(|w| w.state == WorkerState::Idle)
            .then_some(())
    });
    // Load b on wa and a on wb through the API, then pause so both jobs wait together.
    for (worker, model) in [("wa", "b.safetensors"), ("wb", "a.safetensors")] {
        let body = format!(r#"{{"worker":"{worker}","model":"{model}"}}"#);
        let (status, text) = raw(
            &daemon,
            "POST",
            "/v1/workers/load",
            &[&auth(&daemon), "Content-Type: application/json"],
            &body,
        );
        assert_eq!(status, 202, "{text}");
    }
    wait_for("the models to load", Duration::from_secs(10), || {
        let status = client.gpus().ok()?;
        let loaded = |name: &str| {
            status
                .workers
                .iter()
                .find(|w| w.name == name)
                .map(|w| w.models_loaded.clone())
        };
        (loaded("wa")? == ["b.safetensors"] && loaded("wb")? == ["a.safetensors"]).then_some(())
    });
    let vram = client.gpus().unwrap().workers[0].vram.clone();
    assert_eq!(vram.len(), 1, "the worker reports its components' memory");
    client.pause().unwrap();
    let mut ids = Vec::new();
    for model in [
        "a.safetensors",
        "b.safetensors",
        "a.safetensors",
        "b.safetensors",
    ] {
        let mut params = spec(1);
        params.model = model.into();
        params.steps = 2;
        ids.push(client.submit(&SubmitRequest::new(params)).unwrap().ids[0]);
    }
    client.resume().unwrap();
    for id in &ids {
        wait_for("the jobs", Duration::from_secs(10), || {
            (job_state(&lab, *id) == "done").then_some(())
        });
    }
    for id in ids {
        let job = client.get(id).unwrap();
        let expected = if job.spec.model == "a.safetensors" {
            "wb"
        } else {
            "wa"
        };
        assert_eq!(
            job.worker.as_deref(),
            Some(expected),
            "job {id} ({})",
            job.spec.model
        );
    }
    // Unloading everywhere empties both caches.
    let (status, _) = raw(
        &daemon,
        "POST",
        "/v1/workers/unload",
        &[&auth(&daemon), "Content-Type: application/json"],
        "{}",
    );
    assert_eq!(status, 202);
    wait_for("the caches to empty", Duration::from_secs(10), || {
        let status = client.gpus().ok()?;
        status
            .workers
            .iter()
            .all(|w| w.models_loaded.is_empty())
            .then_some(())
    });
    daemon.stop().unwrap();
}

#[test]
fn model_commands_name_what_is_wrong() {
    let lab = Lab::new();
    let daemon =
        imagelab_daemon::Daemon::start(fake_worker_config(&lab, vec![WorkerSpec::cpu("w")]))
            .unwrap();
    let post = |path: &str, body: &str| {
        raw(
            &daemon,
            "POST",
            path,
            &[&auth(&daemon), "Content-Type: application/json"],
            body,
        )
    };
    let (status, text) = post(
        "/v1/workers/load",
        r#"{"worker":"nope","model":"tiny.safetensors"}"#,
    );
    assert_eq!(status, 404, "{text}");
    let error: imagelab_core::api::ApiError = serde_json::from_str(&text).unwrap();
    assert!(
        error.error.contains("\"nope\"") && error.error.contains("\"w\""),
        "{text}"
    );
    assert_eq!(error.field.as_deref(), Some("worker"));
    let (status, text) = post("/v1/workers/load", r#"{"model":"../../etc/passwd"}"#);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("model"), "{text}");
    let (status, text) = post("/v1/workers/load", r#"{}"#);
    assert_eq!(status, 400, "{text}");
    // A VAE or text encoder resolves only inside its own folder.
    std::fs::write(lab.path().join("models/checkpoints/tiny.safetensors"), b"x").unwrap();
    for field in ["vae", "clip"] {
        let body = format!(
            r#"{{"model":"tiny.safetensors","{field}":"../checkpoints/tiny.safetensors"}}"#
        );
        let (status, text) = post("/v1/workers/load", &body);
        assert_eq!(status, 400, "{field}: {text}");
        let error: imagelab_core::api::ApiError = serde_json::from_str(&text).unwrap();
        assert_eq!(error.field.as_deref(), Some(field), "{text}");
    }
    let (status, _) = raw(&daemon, "GET", "/v1/gpus", &[], "");
    assert_eq!(status, 401);
    daemon.stop().unwrap();
    // Without workers there is nothing to load onto.
    let lab = Lab::new();
    let daemon = lab.start();
    let (status, text) = raw(
        &daemon,
        "POST",
        "/v1/workers/load",
        &[&auth(&daemon), "Content-Type: application/json"],
        r#"{"model":"tiny.safetensors"}"#,
    );
    assert_eq!(status, 409, "{text}");
    daemon.stop().unwrap();
}

#[test]
fn a_failed_load_is_an_event_naming_the_worker_model_and_reason() {
    let lab = Lab::new();
    std::fs::write(lab.path().join("models/checkpoints/tiny.safetensors"), b"x").unwrap();
    std::fs::write(lab.path().join("models/vae/misfit.safetensors"), b"x").unwrap();
    let daemon =
        imagelab_daemon::Daemon::start(fake_worker_config(&lab, vec![WorkerSpec::cpu("w")]))
            .unwrap();
    let client = lab.client();
    wait_for("an idle worker", Duration::from_secs(10), || {
        let status = client.gpus().ok()?;
        (status.workers.first()?.state == WorkerState::Idle).then_some(())
    });
    let mut events = client.events().unwrap();
    let (status, text) = raw(
        &daemon,
        "POST",
        "/v1/workers/load",
        &[&auth(&daemon), "Content-Type: application/json"],
        r#"{"model":"tiny.safetensors","vae":"misfit.safetensors"}"#,
    );
    assert_eq!(status, 202, "{text}");
    let failure = loop {
        match events.next().expect("the stream ended").unwrap() {
            imagelab_core::events::DaemonEvent::LoadFailed {
                worker,
                model,
                error,
            } => break (worker, model, error),
            _ => continue,
        }
    };
    assert_eq!(failure.0, "w");
    assert_eq!(failure.1, "tiny.safetensors");
    assert!(failure.2.contains("misfit.safetensors"), "{}", failure.2);
    // The worker is usable again: nothing stays loading.
    wait_for(
        "the worker to be idle again",
        Duration::from_secs(10),
        || {
            let status = client.gpus().ok()?;
            let worker = status.workers.first()?;
            (worker.state == WorkerState::Idle && worker.models_loaded.is_empty()).then_some(())
        },
    );
    daemon.stop().unwrap();
}
