//! The supervisor: actix actors that run queued jobs on worker child processes.
//!
//! * [`actor::Supervisor`] polls the GPUs (NVML, about once a second), feeds the non-sharing
//!   idle policy, keeps the lease ledger and dispatches: a free worker whose GPUs are idle
//!   by the policy leases the next job (priority, then model affinity, then FIFO).
//! * One [`worker::GpuWorker`] per GPU (or GPU pair in the split layout) owns one
//!   `imagelab worker` child, speaks the JSON-lines protocol of `imagelab_core::worker`
//!   with it, and turns its reports — or its death — into queue transitions and events.
//!
//! Each actor runs on an arbiter (thread) of its own, so a worker's disk flush or a slow
//! NVML call never holds up another worker or the HTTP server.

mod actor;
mod child;
pub mod history;
pub mod slurm;
mod worker;

pub use actor::{CancelJob, Kick, ModelCommand};

use crate::events::EventBus;
use actix::prelude::*;
use imagelab_core::events::GpuStatusView;
use imagelab_gpu::{Clock, GpuError, GpuProbe, IdlePolicyConfig, SystemClock};
use imagelab_queue::Queue;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// One worker: a name, the device its child runs on, and the GPUs it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSpec {
    pub name: String,
    /// Passed to `imagelab worker --device` (`cpu` or `cuda`).
    pub device: String,
    /// The GPU UUIDs it owns (`cpu` for a CPU worker); two, UNet GPU first, for a pair.
    /// Recorded in leases and matched against job placements and NVML samples.
    pub gpus: Vec<String>,
    /// `CUDA_VISIBLE_DEVICES` for the child (UUIDs, so the child sees exactly its GPUs
    /// whatever the enumeration order); `None` leaves the environment alone.
    pub cuda_visible_devices: Option<String>,
    /// Extra arguments for `imagelab worker` (`--split` for a pair).
    pub args: Vec<String>,
}

impl WorkerSpec {
    /// A worker on the CPU (what CI and machines without CUDA run).
    pub fn cpu(name: &str) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
            device: "cpu".into(),
            gpus: vec!["cpu".into()],
            cuda_visible_devices: Some(String::new()),
            args: Vec::new(),
        }
    }

    /// A worker on one GPU, addressed by its UUID (or `cuda:N` without NVML).
    pub fn gpu(name: &str, gpu: &str, visible: &str) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
            device: "cuda".into(),
            gpus: vec![gpu.into()],
            cuda_visible_devices: Some(visible.into()),
            args: Vec::new(),
        }
    }

    /// A split-layout worker: the UNet on `unet`, text encoders and VAE on `rest`.
    pub fn pair(name: &str, unet: (&str, &str), rest: (&str, &str)) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
            device: "cuda".into(),
            gpus: vec![unet.0.into(), rest.0.into()],
            cuda_visible_devices: Some(format!("{},{}", unet.1, rest.1)),
            args: vec!["--split".into()],
        }
    }

    /// Whether NVML samples matter for this worker (not for the CPU).
    pub fn on_gpus(&self) -> bool {
        self.device != "cpu"
    }

    /// Whether two GPU workers would share a GPU (which the non-sharing policy forbids).
    pub fn on_gpus_shared(&self, other: &WorkerSpec) -> bool {
        self.on_gpus() && other.on_gpus() && self.gpus.iter().any(|g| other.gpus.contains(g))
    }
}

/// Publishes a job's new state with the worker (or backend) that holds it.
pub(crate) fn publish_job(events: &EventBus, job: &imagelab_queue::Job, worker: &str) {
    use imagelab_queue::JobState;
    let error = match &job.state {
        JobState::Failed { error, .. } | JobState::Dead { error, .. } => Some(error.clone()),
        _ => None,
    };
    events.publish(imagelab_core::events::DaemonEvent::Job {
        id: job.id.0,
        state: job.state.name().to_string(),
        worker: Some(worker.to_string()),
        error,
    });
}

/// Makes the GPU probe on the supervisor's thread (NVML handles stay on one thread).
pub type ProbeFactory = Box<dyn FnOnce() -> Result<Box<dyn GpuProbe + Send>, GpuError> + Send>;

/// How the supervisor runs.
pub struct SupervisorOptions {
    pub workers: Vec<WorkerSpec>,
    /// The `imagelab` binary (its `worker` subcommand is the child).
    pub program: PathBuf,
    pub output_dir: PathBuf,
    pub policy: IdlePolicyConfig,
    /// Where GPU samples come from; `None` uses NVML when a worker is on a GPU.
    pub probe: Option<ProbeFactory>,
    /// The policy's time; tests pass the scripted probe's fake clock.
    pub clock: Box<dyn Clock + Send>,
    /// A preview every this many steps (0: none).
    pub preview_every: usize,
    /// Names the workers' log files: `worker-<instance>-<worker>-<start>.log`.
    pub instance_id: String,
    /// How long a crashed child waits before it is started again.
    pub restart_delay: Duration,
    /// Hand jobs to a Slurm cluster too (or only, with no workers).
    pub slurm: Option<slurm::SlurmOptions>,
}

impl std::fmt::Debug for SupervisorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorOptions")
            .field("workers", &self.workers)
            .field("program", &self.program)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl SupervisorOptions {
    pub fn new(workers: Vec<WorkerSpec>, program: PathBuf, output_dir: PathBuf) -> Self {
        SupervisorOptions {
            workers,
            program,
            output_dir,
            policy: IdlePolicyConfig::default(),
            probe: None,
            clock: Box::new(SystemClock::new()),
            preview_every: 5,
            instance_id: format!("{}", std::process::id()),
            restart_delay: Duration::from_secs(1),
            slurm: None,
        }
    }
}

/// The running supervisor: its address, the status it publishes, and its thread.
pub struct SupervisorHandle {
    addr: Addr<actor::Supervisor>,
    status: Arc<RwLock<GpuStatusView>>,
    history: Arc<RwLock<history::GpuHistoryStore>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SupervisorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorHandle").finish_non_exhaustive()
    }
}

/// What the HTTP handlers hold: the supervisor's address and its published status.
#[derive(Clone)]
pub struct SupervisorLink {
    pub addr: Addr<actor::Supervisor>,
    status: Arc<RwLock<GpuStatusView>>,
    history: Arc<RwLock<history::GpuHistoryStore>>,
}

impl SupervisorLink {
    /// Workers that are free or busy with our jobs (not blocked by another user of their
    /// GPU, not down): what the overnight runner keeps the queue fed for. Slurm counts
    /// one more than the jobs it holds (its own row and one per Slurm job, pending ones
    /// included), so a night run's supply grows up to `max_submitted` and no further; a
    /// Slurm that cannot be reached counts nothing.
    pub fn available_workers(&self) -> usize {
        use imagelab_core::events::WorkerState;
        let workers = self.status().workers;
        let (slurm, local): (Vec<_>, Vec<_>) = workers
            .iter()
            .partition(|w| w.device == slurm::SLURM_WORKER);
        let usable = |w: &imagelab_core::events::WorkerStatus| {
            !matches!(
                w.state,
                WorkerState::Blocked { .. } | WorkerState::Down { .. }
            )
        };
        let slurm_up = slurm
            .iter()
            .any(|w| w.name == slurm::SLURM_WORKER && usable(w));
        local.iter().filter(|w| usable(w)).count() + if slurm_up { slurm.len() } else { 0 }
    }

    pub fn kick(&self) {
        self.addr.do_send(Kick);
    }

    pub fn cancel(&self, job: u64) {
        self.addr.do_send(CancelJob(job));
    }

    pub fn status(&self) -> GpuStatusView {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The last ten minutes of GPU samples.
    pub fn history(&self) -> imagelab_core::events::GpuHistoryView {
        self.history.read().map(|h| h.view()).unwrap_or_default()
    }
}

impl SupervisorHandle {
    pub fn link(&self) -> SupervisorLink {
        SupervisorLink {
            addr: self.addr.clone(),
            status: self.status.clone(),
            history: self.history.clone(),
        }
    }

    /// Starts the supervisor and its workers on a thread (an actix system) of their own.
    pub fn start(queue: Arc<Queue>, events: EventBus, options: SupervisorOptions) -> Self {
        let status = Arc::new(RwLock::new(GpuStatusView::default()));
        let shared = status.clone();
        let history = Arc::new(RwLock::new(history::GpuHistoryStore::default()));
        let shared_history = history.clone();
        let (addr_tx, addr_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("imagelab-supervisor".into())
            .spawn(move || {
                let system = System::new();
                system.block_on(async move {
                    let addr =
                        actor::Supervisor::new(queue, events, shared, shared_history, options)
                            .start();
                    let _ = addr_tx.send(addr);
                });
                system.run().ok();
            })
            .expect("cannot start the supervisor thread");
        let addr = addr_rx
            .recv()
            .expect("the supervisor thread ended before starting");
        SupervisorHandle {
            addr,
            status,
            history,
            thread: Some(thread),
        }
    }

    /// "There may be new work": dispatch now instead of at the next poll.
    pub fn kick(&self) {
        self.addr.do_send(Kick);
    }

    /// Tells the worker running `job` (if any) to stop it.
    pub fn cancel(&self, job: u64) {
        self.addr.do_send(CancelJob(job));
    }

    pub fn addr(&self) -> &Addr<actor::Supervisor> {
        &self.addr
    }

    /// The last published GPU and worker status.
    pub fn status(&self) -> GpuStatusView {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The PIDs of the worker children now running.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.status().workers.iter().filter_map(|w| w.pid).collect()
    }

    /// Stops every worker (their running jobs go back to the queue unused) and the thread.
    pub fn stop(mut self) {
        let (done_tx, done_rx) = mpsc::channel();
        self.addr.do_send(actor::Stop(done_tx));
        let _ = done_rx.recv_timeout(Duration::from_secs(30));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
