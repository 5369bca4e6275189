//! What the daemon tells watchers: the event stream (`GET /v1/events`, server-sent events,
//! one JSON [`DaemonEvent`] per `data:` line) and the worker and GPU status views that
//! `GET /v1/gpus` returns and the stream repeats whenever they change.

use serde::{Deserialize, Serialize};

/// A small RGB preview of a job in progress: a cheap linear latent-to-RGB projection,
/// PNG-encoded and base64'd so it travels inside a JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub width: u32,
    pub height: u32,
    pub png_base64: String,
}

/// Device memory one loaded component holds, as the engine counted it while loading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentVram {
    /// `model`, `unet`, `vae`, `clip_l`, `clip_g`, …: the checkpoint first, then the part.
    pub model: String,
    pub component: String,
    /// `cpu`, `cuda:0`, …
    pub device: String,
    pub bytes: u64,
}

/// What a worker is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WorkerState {
    /// Its child process is starting (or restarting after a crash).
    Starting,
    /// Ready for a job.
    Idle,
    /// Running this job.
    Busy { job: u64 },
    /// Loading or unloading a model on request.
    Loading { model: String },
    /// Its GPU is not idle by the policy (someone else uses it), so nothing is dispatched.
    Blocked { reason: String },
    /// The child could not be started; the worker retries.
    Down { error: String },
}

impl WorkerState {
    /// A short lowercase name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Idle => "idle",
            WorkerState::Busy { .. } => "busy",
            WorkerState::Loading { .. } => "loading",
            WorkerState::Blocked { .. } => "blocked",
            WorkerState::Down { .. } => "down",
        }
    }
}

/// One worker: a child process on one GPU, or on a pair in the split layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub name: String,
    /// What the child runs on (`cpu`, `cuda`).
    pub device: String,
    /// The GPU UUIDs it owns (`cpu` for a CPU worker); the UNet's GPU first for a pair.
    pub gpus: Vec<String>,
    #[serde(flatten)]
    pub state: WorkerState,
    /// Checkpoints in its pipeline cache, most recently used last.
    pub models_loaded: Vec<String>,
    pub vram: Vec<ComponentVram>,
    pub pid: Option<u32>,
}

/// One GPU as the supervisor last sampled it, with the idle policy's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuView {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_total_mib: u64,
    pub memory_used_mib: u64,
    pub utilization_pct: u32,
    /// Whether the policy lets a new job start there now.
    pub idle: bool,
    /// Why not, when it does not.
    pub reason: Option<String>,
}

/// `GET /v1/gpus`: the GPUs (empty without NVML) and the workers on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GpuStatusView {
    /// Why there are no GPU samples, when NVML is unavailable.
    pub nvml_error: Option<String>,
    pub gpus: Vec<GpuView>,
    pub workers: Vec<WorkerStatus>,
    /// The Slurm cluster's nodes as `sinfo` reports them (empty without the Slurm backend).
    #[serde(default)]
    pub slurm_nodes: Vec<SlurmNodeView>,
    /// Our jobs in Slurm now, by queue job id.
    #[serde(default)]
    pub slurm_jobs: std::collections::BTreeMap<u64, SlurmJobView>,
}

/// One Slurm node and its GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmNodeView {
    pub name: String,
    /// `idle`, `mix`, `alloc`, `down`, `drain` … as `sinfo` abbreviates them.
    pub state: String,
    /// Configured and used generic resources (`gpu:2`, `gpu:1(IDX:0)`).
    pub gres: String,
    pub gres_used: String,
}

/// A queue job handed to Slurm: its Slurm id (none until `sbatch` answered), its state
/// there (`PENDING`, `RUNNING` …) and, while pending, Slurm's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmJobView {
    pub slurm_id: Option<u64>,
    pub state: String,
    pub reason: String,
}

/// One GPU sample in the history: the figures, the idle policy's verdict, and the jobs of
/// ours running there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuHistoryPoint {
    /// Wall-clock time of the sample, ms since the Unix epoch.
    pub at_ms: u64,
    pub utilization_pct: Option<u32>,
    pub memory_used_mib: u64,
    pub temperature_c: Option<u32>,
    /// Whether the policy would let a new job of ours start.
    pub idle: bool,
    /// Why not, when not (someone else's process, a lease of ours, …).
    pub reason: Option<String>,
    /// Our jobs running on this GPU at the sample.
    pub our_jobs: Vec<u64>,
}

/// One GPU's recent samples, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuHistory {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_total_mib: u64,
    pub points: Vec<GpuHistoryPoint>,
}

/// `GET /v1/gpus/history`: each GPU over the last `window_secs` (empty without NVML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GpuHistoryView {
    pub window_secs: u64,
    pub nvml_error: Option<String>,
    pub gpus: Vec<GpuHistory>,
}

/// `POST /v1/workers/load` and `/v1/workers/unload`: the GUI's "load model" and "clear
/// model" buttons. Without `worker`, the first worker (load) or every worker (unload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelRequest {
    #[serde(default)]
    pub worker: Option<String>,
    /// A checkpoint in `models/checkpoints/`; for unload, none clears the whole cache.
    #[serde(default)]
    pub model: Option<String>,
    /// Load only: a VAE in `models/vae/` replacing the checkpoint's own.
    #[serde(default)]
    pub vae: Option<String>,
    /// Load only: text encoder weights in `models/clip/` replacing the checkpoint's own.
    #[serde(default)]
    pub clip: Option<String>,
}

/// One event on the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DaemonEvent {
    /// A job changed state (queued, leased, done, failed, dead, cancelled).
    Job {
        id: u64,
        state: String,
        worker: Option<String>,
        error: Option<String>,
    },
    /// A sampling step finished on a worker.
    Progress {
        job: u64,
        worker: String,
        done: usize,
        total: usize,
        preview: Option<Preview>,
    },
    /// A worker's state, models or VRAM changed.
    Worker(WorkerStatus),
    /// A load asked through `POST /v1/workers/load` failed on a worker; `error` is the
    /// engine's message (a VAE or CLIP that does not fit the model, a broken file, …).
    LoadFailed {
        worker: String,
        model: String,
        error: String,
    },
    /// The queue was paused or resumed.
    Queue { paused: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_status_flattens_its_state() {
        let status = WorkerStatus {
            name: "gpu0".into(),
            device: "cuda".into(),
            gpus: vec!["GPU-1".into()],
            state: WorkerState::Busy { job: 7 },
            models_loaded: vec!["a.safetensors".into()],
            vram: Vec::new(),
            pid: Some(42),
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "busy");
        assert_eq!(json["job"], 7);
        let back: WorkerStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn events_are_tagged() {
        let event = DaemonEvent::Queue { paused: true };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(text, r#"{"event":"queue","paused":true}"#);
        let worker: DaemonEvent = serde_json::from_str(
            r#"{"event":"worker","name":"w","device":"cpu","gpus":["cpu"],"state":"idle","models_loaded":[],"vram":[],"pid":null}"#,
        )
        .unwrap();
        assert!(matches!(
            worker,
            DaemonEvent::Worker(WorkerStatus {
                state: WorkerState::Idle,
                ..
            })
        ));
        let failed = DaemonEvent::LoadFailed {
            worker: "w".into(),
            model: "m".into(),
            error: "e".into(),
        };
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"event":"load_failed","worker":"w","model":"m","error":"e"}"#
        );
    }
}
