//! The first slice of the supervisor: one thread per configured worker, each owning an
//! `imagelab worker` child process. A thread leases the next job for its worker (priority,
//! then model affinity, then FIFO — the queue decides), hands it to the child, and turns
//! the child's report — or its death — into the queue transition. A crashed or killed
//! child costs one attempt and is restarted; the daemon stays up.
//!
//! Not yet here: the NVML idle policy gating dispatch, actix actors, progress events.

use imagelab_core::worker::{WorkRequest, WorkerCommand, WorkerEvent};
use imagelab_queue::{output_stem, Completion, Job, JobState, Queue, WorkerView};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One worker: a name, the device its child runs on, and the GPU it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSpec {
    pub name: String,
    /// Passed to `imagelab worker --device`.
    pub device: String,
    /// The GPU's UUID (or `cpu`), recorded in leases and matched against job placements.
    pub gpu: String,
    /// `CUDA_VISIBLE_DEVICES` for the child; `None` leaves the environment alone.
    pub cuda_visible_devices: Option<String>,
}

impl WorkerSpec {
    pub fn cpu(name: &str) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
            device: "cpu".into(),
            gpu: "cpu".into(),
            cuda_visible_devices: Some(String::new()),
        }
    }
}

/// The child processes and their threads.
pub struct Supervisor {
    stop: Arc<AtomicBool>,
    children: Vec<Arc<Mutex<Option<Child>>>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("workers", &self.threads.len())
            .finish()
    }
}

struct WorkerProcess {
    child: Arc<Mutex<Option<Child>>>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn spawn(
    program: &PathBuf,
    spec: &WorkerSpec,
    slot: &Arc<Mutex<Option<Child>>>,
) -> std::io::Result<WorkerProcess> {
    let mut cmd = Command::new(program);
    cmd.args(["worker", "--device", &spec.device])
        .env("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(visible) = &spec.cuda_visible_devices {
        cmd.env("CUDA_VISIBLE_DEVICES", visible);
    }
    let mut child = cmd.spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let stdout = BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?,
    );
    if let Ok(mut guard) = slot.lock() {
        *guard = Some(child);
    }
    Ok(WorkerProcess {
        child: slot.clone(),
        stdin,
        stdout,
    })
}

impl WorkerProcess {
    fn kill(&mut self) {
        if let Ok(mut guard) = self.child.lock() {
            if let Some(mut child) = guard.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// The next event line, or `None` when the child died or spoke nonsense.
    fn next_event(&mut self) -> Option<WorkerEvent> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => return serde_json::from_str(&line).ok(),
            }
        }
    }
}

fn lease_attempt(job: &Job) -> Option<u32> {
    match &job.state {
        JobState::Leased { attempt, .. } => Some(*attempt),
        _ => None,
    }
}

/// Runs one leased job on the child; returns false when the child must be restarted.
fn run_job(
    queue: &Queue,
    process: &mut WorkerProcess,
    job: &Job,
    output_dir: &Path,
    stop: &AtomicBool,
) -> bool {
    let Some(attempt) = lease_attempt(job) else {
        return true;
    };
    let images = job.spec.params.batch;
    let request = WorkRequest {
        job: job.id.0,
        params: job.spec.params.clone(),
        output_dir: output_dir.to_path_buf(),
        stems: (0..images).map(|i| output_stem(job.id, i)).collect(),
        preview_every: 0,
    };
    let sent = serde_json::to_string(&WorkerCommand::Generate(request))
        .map_err(std::io::Error::other)
        .and_then(|line| writeln!(process.stdin, "{line}").and_then(|_| process.stdin.flush()));
    if sent.is_err() {
        let _ = queue.fail(job.id, attempt, "the worker process is gone", true);
        return false;
    }
    loop {
        match process.next_event() {
            Some(WorkerEvent::Progress { .. })
            | Some(WorkerEvent::Ready { .. })
            | Some(WorkerEvent::Models { .. }) => continue,
            Some(WorkerEvent::Cancelled { .. }) => {
                let _ = queue.cancel(job.id);
                return true;
            }
            Some(WorkerEvent::Done {
                outputs,
                seeds,
                model_hash,
                step_time_ms,
                ..
            }) => {
                let completion = Completion {
                    outputs,
                    seeds,
                    model_hash,
                    step_time_ms,
                };
                if let Err(e) = queue.complete(job.id, attempt, completion) {
                    log::warn!("job {}: cannot record completion: {e}", job.id.0);
                }
                return true;
            }
            Some(WorkerEvent::Failed {
                error, retryable, ..
            }) => {
                let _ = queue.fail(job.id, attempt, &error, retryable);
                return true;
            }
            None if stop.load(Ordering::SeqCst) => {
                // The daemon is stopping and killed the child: not the job's fault.
                let _ = queue.release(job.id, attempt);
                return false;
            }
            None => {
                log::warn!(
                    "job {}: the worker process died; the job goes back to the queue",
                    job.id.0
                );
                let _ = queue.fail(
                    job.id,
                    attempt,
                    "the worker process died during the job",
                    true,
                );
                return false;
            }
        }
    }
}

fn worker_loop(
    queue: Arc<Queue>,
    spec: WorkerSpec,
    program: PathBuf,
    output_dir: PathBuf,
    stop: Arc<AtomicBool>,
    slot: Arc<Mutex<Option<Child>>>,
) {
    let mut process: Option<WorkerProcess> = None;
    let mut loaded: Vec<String> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if process.is_none() {
            match spawn(&program, &spec, &slot) {
                Ok(mut p) => {
                    // The child says it is ready before reading requests.
                    match p.next_event() {
                        Some(WorkerEvent::Ready { .. }) => process = Some(p),
                        _ => {
                            p.kill();
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                    }
                    loaded.clear();
                }
                Err(e) => {
                    log::error!(
                        "worker {}: cannot start {}: {e}",
                        spec.name,
                        program.display()
                    );
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let view = WorkerView::new(spec.name.clone(), spec.gpu.clone(), &loaded);
        let job = match queue.next_for_worker(&view) {
            Ok(Some(job)) => job,
            Ok(None) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => {
                log::warn!("worker {}: {e}", spec.name);
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        let Some(p) = process.as_mut() else { continue };
        if run_job(&queue, p, &job, &output_dir, &stop) {
            let model = job.spec.params.model.clone();
            loaded.retain(|m| *m != model);
            loaded.push(model);
        } else {
            p.kill();
            process = None;
        }
    }
    if let Some(mut p) = process {
        p.kill();
    }
}

impl Supervisor {
    /// Starts one thread (and child process) per worker.
    pub fn start(
        queue: Arc<Queue>,
        workers: &[WorkerSpec],
        program: PathBuf,
        output_dir: PathBuf,
    ) -> Supervisor {
        let stop = Arc::new(AtomicBool::new(false));
        let mut children = Vec::new();
        let mut threads = Vec::new();
        for spec in workers {
            let slot = Arc::new(Mutex::new(None));
            children.push(slot.clone());
            let (queue, spec, program, output_dir, stop) = (
                queue.clone(),
                spec.clone(),
                program.clone(),
                output_dir.clone(),
                stop.clone(),
            );
            let name = format!("worker-{}", spec.name);
            if let Ok(handle) = std::thread::Builder::new()
                .name(name)
                .spawn(move || worker_loop(queue, spec, program, output_dir, stop, slot))
            {
                threads.push(handle);
            }
        }
        Supervisor {
            stop,
            children,
            threads,
        }
    }

    /// The PIDs of the running worker children (for tests and the GPU policy's "ours").
    pub fn worker_pids(&self) -> Vec<u32> {
        self.children
            .iter()
            .filter_map(|slot| slot.lock().ok().and_then(|g| g.as_ref().map(Child::id)))
            .collect()
    }

    /// Stops the threads and kills the children (their jobs are re-queued at the next start).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for slot in &self.children {
            if let Ok(mut guard) = slot.lock() {
                if let Some(child) = guard.as_mut() {
                    let _ = child.kill();
                }
            }
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
