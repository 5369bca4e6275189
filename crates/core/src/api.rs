//! The daemon's HTTP protocol: the request and response bodies every client (CLI, GUI)
//! shares. Deliberately separate from the queue's stored types, so a client compiles with
//! this crate alone and the storage format can change without breaking the wire format.

use crate::params::GenerationParams;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever a request or response changes incompatibly; `/v1/health` reports it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Most jobs one submission may create (a batch's entries times their `count`): a larger
/// number is almost always a runaway script, and every job costs a flushed write.
pub const MAX_JOBS_PER_SUBMIT: u32 = 1000;

/// Most jobs one `GET /v1/jobs` returns when the query does not say.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// Most jobs one `GET /v1/jobs` may return.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// The file in the settings folder where a running daemon publishes its address and token.
pub const DAEMON_INFO_FILE: &str = "daemon.json";

/// How urgently a job should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JobPriority {
    /// Someone is waiting at the GUI or CLI.
    Interactive,
    #[default]
    Normal,
    /// Overnight runs: only when nothing else waits.
    Background,
}

/// Who submitted a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum JobSource {
    Cli,
    #[default]
    Api,
    Gui,
    NightRun,
    OneShot,
}

/// One submission: `count` jobs of this spec. With `count` > 1 the seeds are S, S+1, …
/// (or one random seed per job when the spec's seed is −1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub spec: GenerationParams,
    /// A style profile name, applied to the prompt by the worker.
    #[serde(default)]
    pub style: Option<String>,
    #[serde(default)]
    pub priority: JobPriority,
    #[serde(default = "one")]
    pub count: u32,
    /// Run only on this GPU (UUID); `None` = any GPU.
    #[serde(default)]
    pub gpu: Option<String>,
    #[serde(default)]
    pub source: JobSource,
}

fn one() -> u32 {
    1
}

impl SubmitRequest {
    /// One job of `spec` with the defaults (normal priority, any GPU, source `api`).
    pub fn new(spec: GenerationParams) -> Self {
        SubmitRequest {
            spec,
            style: None,
            priority: JobPriority::default(),
            count: 1,
            gpu: None,
            source: JobSource::default(),
        }
    }
}

/// Several submissions accepted or refused together: `{"jobs": [ … ]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    pub jobs: Vec<SubmitRequest>,
}

/// The ids of the jobs a submission created, in order (all jobs of the first entry, then
/// the second's, …), each with the seed it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub ids: Vec<u64>,
    pub seeds: Vec<i64>,
    /// What the jobs may run into, such as no worker to take them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// When things happened, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JobTimings {
    pub queued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// Mean time of one sampling step.
    pub step_time_ms: Option<f64>,
}

/// `GET /v1/jobs/{id}/log`: every line the daemon and its workers wrote in the job's span,
/// oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLog {
    pub id: u64,
    pub lines: Vec<JobLogLine>,
}

/// One line of a job's log, as written (text or JSON, per `IMAGELAB_LOG_FORMAT`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLogLine {
    /// `daemon` or `worker`.
    pub source: String,
    /// The log file's name, inside the daemon's `logs/` folder.
    pub file: String,
    pub text: String,
}

/// A job as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: u64,
    /// `queued`, `leased`, `done`, `failed`, `dead` or `cancelled`.
    pub state: String,
    pub priority: JobPriority,
    pub source: JobSource,
    /// The GPU the job is pinned to, if any.
    pub gpu: Option<String>,
    pub spec: GenerationParams,
    pub style: Option<String>,
    /// Attempts used up so far, and how many it may use.
    pub attempts: u32,
    pub max_attempts: u32,
    /// Times the daemon stopped or crashed while the job ran, each time putting it back
    /// in the queue without using an attempt.
    #[serde(default)]
    pub interruptions: u32,
    pub timings: JobTimings,
    /// The worker and GPUs of the current or last attempt.
    pub worker: Option<String>,
    pub gpus: Vec<String>,
    /// Output file names inside `output/`, once done.
    pub outputs: Vec<String>,
    pub seeds: Vec<i64>,
    /// Why it failed (or the last retryable error of a job that retried).
    pub error: Option<String>,
    pub cancel_requested: bool,
    /// For a job handed to Slurm: its Slurm id, state and reason. While Slurm keeps it
    /// pending, `state` says `queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<crate::events::SlurmJobView>,
    /// Where a generated prompt came from: the theme's name and content hash, the template
    /// and the prompt seed that remake it, and the overnight run that submitted the job.
    /// Absent for jobs submitted with a prompt of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theme_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub night_run: Option<String>,
}

/// The query of `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    /// Only jobs in this state (`queued`, `leased`, `done`, `failed`, `dead`, `cancelled`).
    pub state: Option<String>,
    /// At most this many, newest first; default [`DEFAULT_LIST_LIMIT`].
    pub limit: Option<usize>,
}

/// The job states a [`ListQuery`] may filter on.
pub const JOB_STATES: &[&str] = &["queued", "leased", "done", "failed", "dead", "cancelled"];

/// `POST /v1/jobs/{id}/priority`: move a queued or running job to another priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRequest {
    pub priority: JobPriority,
}

/// `POST /v1/queue/clear`: how many finished jobs were removed from the queue (they stay in
/// `jobs.log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearResponse {
    pub removed: usize,
}

/// `GET /v1/queue`: whether dispatch is paused and how many jobs are in each state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct QueueStatus {
    pub paused: bool,
    /// State name → number of jobs; every state is present.
    pub counts: BTreeMap<String, usize>,
}

/// `GET /v1/models`: file names in each model folder, and each checkpoint's family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ModelList {
    pub checkpoints: Vec<ModelEntry>,
    pub vae: Vec<String>,
    pub clip: Vec<String>,
    /// The LoRAs in `models/loras/`, each with the family it was made for (`None`: its
    /// tensors do not tell) or why it cannot be read.
    #[serde(default)]
    pub loras: Vec<ModelEntry>,
    /// The textual-inversion embeddings in `models/embeddings/`, likewise.
    #[serde(default)]
    pub embeddings: Vec<ModelEntry>,
}

/// One checkpoint: its family as its tensors name it (`sd1`, `sd2`, `sd2-v`, `sdxl`, …;
/// see [`crate::family::inspect`]), or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    pub family: Option<String>,
    pub error: Option<String>,
}

/// One image in `output/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub name: String,
    pub bytes: u64,
}

/// `GET /v1/health` (with `GET /v1/openapi.yaml`, the calls that need no token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub protocol: u32,
    pub version: String,
}

/// Every 4xx/5xx answer's body: a message, and the request field it is about when there is
/// one (a dotted path such as `spec.width` or `jobs[2].spec.sampler`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    #[serde(default)]
    pub field: Option<String>,
}

/// What `daemon.json` holds: where the daemon listens and the token every call must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// `host:port`, e.g. `127.0.0.1:41234`.
    pub address: String,
    pub token: String,
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_submission_takes_the_defaults() {
        let req: SubmitRequest = serde_json::from_str(r#"{"spec":{"model":"a"}}"#).unwrap();
        assert_eq!(req.count, 1);
        assert_eq!(req.priority, JobPriority::Normal);
        assert_eq!(req.source, JobSource::Api);
        assert_eq!(req, SubmitRequest::new(req.spec.clone()));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<SubmitRequest>(r#"{"spec":{},"cuont":2}"#).unwrap_err();
        assert!(err.to_string().contains("cuont"), "{err}");
    }
}

/// Star (or unstar) a job's images or one image in `output/`, with an optional 1–5 rating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FavoriteRequest {
    #[serde(default)]
    pub job: Option<u64>,
    /// A file name inside `output/`.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub rating: Option<u8>,
}

/// A favorite as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FavoriteView {
    pub job: Option<u64>,
    pub image: Option<String>,
    pub rating: Option<u8>,
    /// When it was starred, in milliseconds since the Unix epoch.
    pub at: u64,
}
