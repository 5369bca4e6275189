//! Dispatch latency and throughput of the supervisor, with fake workers
//! (`imagelab-fake-worker`: the worker protocol, each step a sleep) on scripted idle GPUs,
//! so the NVML policy path runs exactly as on a real machine.
//!
//! * latency: an idle GPU whose worker has the model cached gets a job — time from the
//!   submission's acknowledgement to the lease, and to the child's first step report;
//!   and, on a busy worker, the gap from one job's end to the next one's start;
//! * throughput: N = 1, 2, 4, 8 GPUs, 20-step jobs of 10 ms steps, 25 jobs per GPU.
//!
//! `cargo build --release -p imagelab-daemon --bins --examples &&
//!  target/release/examples/dispatch_bench`

use imagelab_core::api::{SubmitBatch, SubmitRequest};
use imagelab_core::events::{DaemonEvent, WorkerState};
use imagelab_core::GenerationParams;
use imagelab_daemon::{Daemon, DaemonConfig, RunningDaemon, WorkerSpec};
use imagelab_gpu::{FakeClock, GpuError, GpuProbe, ScriptedProbe};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;
type Events = mpsc::Receiver<(Instant, DaemonEvent)>;

/// The fake worker sits beside this example's folder (`target/<profile>/`).
fn fake_worker() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no target folder")?;
    let path = dir.join("imagelab-fake-worker");
    if !path.is_file() {
        return Err(format!("{} is missing: build with --bins", path.display()).into());
    }
    Ok(path)
}

/// A daemon on `gpus` fake GPUs, all idle, one fake worker on each, in `dir`.
fn start(dir: &Path, gpus: u32, step_ms: u64) -> Result<RunningDaemon, Error> {
    for sub in ["models/checkpoints", "models/vae", "models/clip", "output"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::fs::write(dir.join("models/checkpoints/m.safetensors"), b"x")?;
    // Read by the fake worker children this process starts.
    std::env::set_var("FAKE_STEP_MS", step_ms.to_string());
    let clock = FakeClock::new();
    let mut probe = ScriptedProbe::new(clock.clone());
    let mut workers = Vec::new();
    for i in 0..gpus {
        let uuid = format!("GPU-{i:04}");
        probe = probe.gpu(i, &uuid, "Fake H200", 141_000);
        workers.push(WorkerSpec::gpu(&format!("gpu{i}"), &uuid, &uuid));
    }
    let mut config = DaemonConfig::in_folder(dir, &dir.join("settings"));
    config.workers = workers;
    config.worker_program = Some(fake_worker()?);
    config.preview_every = 0;
    // The default policy otherwise: a sample a second, idle after three quiet samples.
    let probe = std::sync::Mutex::new(Some(probe));
    config.probe = Some(Box::new(move || {
        let taken = probe.lock().ok().and_then(|mut p| p.take());
        taken
            .map(|p| Box::new(p) as Box<dyn GpuProbe + Send>)
            .ok_or_else(|| GpuError::Script("the probe was already taken".into()))
    }));
    config.clock = Some(Box::new(clock));
    let daemon = Daemon::start(config)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !daemon
        .gpu_status()
        .workers
        .iter()
        .all(|w| w.state == WorkerState::Idle)
    {
        if Instant::now() > deadline {
            return Err("the workers never became idle".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(daemon)
}

fn params(steps: u32) -> GenerationParams {
    GenerationParams {
        model: "m.safetensors".into(),
        prompt: "a lighthouse".into(),
        width: 512,
        height: 512,
        steps,
        seed: 1,
        ..GenerationParams::default()
    }
}

/// Events with the time they arrived, collected on a thread.
fn collect_events(daemon: &RunningDaemon) -> Events {
    let mut rx = daemon.events().subscribe();
    let (tx, out) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(event) = rx.blocking_recv() {
            if tx.send((Instant::now(), event)).is_err() {
                return;
            }
        }
    });
    out
}

fn wait_event(events: &Events, wanted: impl Fn(&DaemonEvent) -> bool) -> Result<Instant, Error> {
    loop {
        let (at, event) = events.recv_timeout(Duration::from_secs(30))?;
        if wanted(&event) {
            return Ok(at);
        }
    }
}

fn job_is(event: &DaemonEvent, id: u64, wanted: &str) -> bool {
    matches!(event, DaemonEvent::Job { id: j, state, .. } if *j == id && state == wanted)
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "  {name:<42} p50 {:7.2} ms   p95 {:7.2} ms   max {:7.2} ms   (n = {})",
        at(0.5),
        at(0.95),
        ms[ms.len() - 1],
        ms.len()
    );
}

fn latency() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let daemon = start(dir.path(), 1, 1)?;
    let client = imagelab_client::Client::from_info(daemon.info());
    let events = collect_events(&daemon);
    let (mut to_lease, mut to_step) = (Vec::new(), Vec::new());
    for i in 0..101 {
        let id = client.submit(&SubmitRequest::new(params(2)))?.ids[0];
        let acked = Instant::now();
        let leased = wait_event(&events, |e| job_is(e, id, "leased"))?;
        let first = wait_event(
            &events,
            |e| matches!(e, DaemonEvent::Progress { job, .. } if *job == id),
        )?;
        wait_event(&events, |e| job_is(e, id, "done"))?;
        // The first job "loads" the model; the rest find it cached.
        if i > 0 {
            to_lease.push(leased.saturating_duration_since(acked).as_secs_f64() * 1e3);
            // Less the fake step itself (1 ms).
            to_step.push(first.saturating_duration_since(acked).as_secs_f64() * 1e3 - 1.0);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    report("idle GPU: submission acked → leased", to_lease);
    report("idle GPU: submission acked → first step", to_step);

    // Back to back: 100 queued jobs on one worker; the gap between one's end and the next.
    client.pause()?;
    let batch = SubmitBatch {
        jobs: vec![SubmitRequest {
            count: 100,
            ..SubmitRequest::new(params(2))
        }],
    };
    let ids = client.submit_batch(&batch)?.ids;
    client.resume()?;
    let (mut done_at, mut leased_at) = (BTreeMap::new(), BTreeMap::new());
    while done_at.len() < ids.len() {
        let (at, event) = events.recv_timeout(Duration::from_secs(30))?;
        if let DaemonEvent::Job { id, state, .. } = event {
            match state.as_str() {
                "done" => done_at.insert(id, at),
                "leased" => leased_at.insert(id, at),
                _ => None,
            };
        }
    }
    let gaps: Vec<f64> = ids
        .windows(2)
        .map(|w| {
            leased_at[&w[1]]
                .saturating_duration_since(done_at[&w[0]])
                .as_secs_f64()
                * 1e3
        })
        .collect();
    report("busy GPU: one job done → next leased", gaps);
    daemon.stop()?;
    Ok(())
}

fn throughput(gpus: u32) -> Result<f64, Error> {
    let dir = tempfile::tempdir()?;
    let daemon = start(dir.path(), gpus, 10)?;
    let client = imagelab_client::Client::from_info(daemon.info());
    let events = collect_events(&daemon);
    let jobs = 25 * gpus;
    client.pause()?;
    let batch = SubmitBatch {
        jobs: vec![SubmitRequest {
            count: jobs,
            ..SubmitRequest::new(params(20))
        }],
    };
    client.submit_batch(&batch)?;
    let started = Instant::now();
    client.resume()?;
    let mut done = 0;
    while done < jobs {
        let (_, event) = events.recv_timeout(Duration::from_secs(60))?;
        if matches!(event, DaemonEvent::Job { ref state, .. } if state == "done") {
            done += 1;
        }
    }
    let rate = f64::from(jobs) / started.elapsed().as_secs_f64();
    daemon.stop()?;
    Ok(rate)
}

fn main() -> Result<(), Error> {
    println!("dispatch latency (1 fake GPU, model cached, 2-step jobs of 1 ms steps):");
    latency()?;
    println!("throughput (20-step jobs of 10 ms steps = 200 ms of work each, 25 jobs per GPU):");
    let one = throughput(1)?;
    for n in [1u32, 2, 4, 8] {
        let rate = if n == 1 { one } else { throughput(n)? };
        println!(
            "  N = {n}: {rate:6.2} jobs/s = {:.3} × N × rate(N = 1)   (the steps alone allow {:.2})",
            rate / (f64::from(n) * one),
            f64::from(n) * 5.0
        );
    }
    Ok(())
}
