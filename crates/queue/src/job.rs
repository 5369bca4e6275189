//! The job record the queue stores: what to generate (the spec), how urgently and where
//! (priority, placement), where it came from, and the state it is in.

use imagelab_core::params::GenerationParams;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// A job's id: increasing in submission order, so sorting by id is FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for JobId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(JobId)
    }
}

/// How urgently a job should run. The derived order puts the most urgent first, which is
/// also the order of the on-disk queued index.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Someone is waiting at the GUI or CLI.
    Interactive,
    #[default]
    Normal,
    /// Overnight themed runs: only when nothing else waits.
    Background,
}

impl Priority {
    /// The byte the queued index sorts by (0 = most urgent).
    pub(crate) fn rank(self) -> u8 {
        match self {
            Priority::Interactive => 0,
            Priority::Normal => 1,
            Priority::Background => 2,
        }
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "interactive" | "high" => Ok(Priority::Interactive),
            "normal" => Ok(Priority::Normal),
            "background" | "low" | "overnight" => Ok(Priority::Background),
            other => Err(format!(
                "unknown priority {other:?}: expected interactive, normal or background"
            )),
        }
    }
}

/// Who submitted the job; recorded for analytics and the job list filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    #[default]
    Cli,
    Api,
    Gui,
    NightRun,
    OneShot,
}

/// Which GPU(s) a job may run on. GPUs are named by UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Any single-GPU worker (or a split pair).
    #[default]
    Any,
    /// Only the worker on this GPU.
    Gpu(String),
    /// UNet on the first GPU, text encoders and VAE on the second: only the pair worker.
    Split(String, String),
}

impl Placement {
    /// Whether a worker owning exactly `gpus` (in order) may run a job with this placement.
    pub fn accepts(&self, gpus: &[String]) -> bool {
        match self {
            Placement::Any => !gpus.is_empty(),
            Placement::Gpu(uuid) => gpus.len() == 1 && gpus[0] == *uuid,
            Placement::Split(unet, rest) => gpus.len() == 2 && gpus[0] == *unet && gpus[1] == *rest,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JobSpec {
    /// The engine's parameters (model, prompt, seed, batch, …).
    pub params: GenerationParams,
    /// A style profile name, applied to the prompt by the worker.
    pub style: Option<String>,
    /// The checkpoint's hash when the submitter knew it; the worker's report may fill it in.
    pub model_hash: Option<String>,
    /// The theme a generated prompt came from (its shown name); analytics groups by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theme: Option<String>,
    /// The first 12 hex digits of the theme file's sha256: which version of the theme.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theme_hash: Option<String>,
    /// The template the prompt was expanded from, as written in the theme.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Regenerates the prompt from the theme (`Theme::generate_from_prompt_seed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_seed: Option<u64>,
    /// The overnight run that submitted the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub night_run: Option<String>,
}

/// What a worker reports when a job succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Completion {
    /// Output files, one per image, named with [`crate::output_stem`].
    pub outputs: Vec<String>,
    /// The seeds actually used, one per image (a spec seed of −1 is drawn by the worker).
    pub seeds: Vec<i64>,
    pub model_hash: Option<String>,
    /// Mean time of one sampling step, in milliseconds.
    pub step_time_ms: Option<f64>,
}

/// When things happened, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Timings {
    pub queued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub step_time_ms: Option<f64>,
}

/// The state of a job. Terminal states: `Done`, `Failed`, `Dead`, `Cancelled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Leased {
        worker: String,
        gpu_uuids: Vec<String>,
        /// 1 for the first attempt; a worker's report must name it, so a report from a
        /// lease that was since recovered or re-granted is refused.
        attempt: u32,
        since_ms: u64,
    },
    Done {
        outputs: Vec<String>,
        finished_at_ms: u64,
        timings: Timings,
    },
    /// A failure that retrying cannot fix (a missing model, invalid input).
    Failed {
        error: String,
        finished_at_ms: u64,
    },
    /// Failed on every allowed attempt.
    Dead {
        error: String,
        finished_at_ms: u64,
    },
    Cancelled {
        finished_at_ms: u64,
    },
}

impl JobState {
    /// The state's name, as in `jobs --state NAME`.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Leased { .. } => "leased",
            JobState::Done { .. } => "done",
            JobState::Failed { .. } => "failed",
            JobState::Dead { .. } => "dead",
            JobState::Cancelled { .. } => "cancelled",
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.finished_at_ms().is_some()
    }

    /// When a terminal state was reached; `None` while the job is queued or leased.
    pub fn finished_at_ms(&self) -> Option<u64> {
        match self {
            JobState::Queued | JobState::Leased { .. } => None,
            JobState::Done { finished_at_ms, .. }
            | JobState::Failed { finished_at_ms, .. }
            | JobState::Dead { finished_at_ms, .. }
            | JobState::Cancelled { finished_at_ms } => Some(*finished_at_ms),
        }
    }
}

/// One job, as stored (one record per job: its state lives inside, so it can never be in
/// two states at once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub priority: Priority,
    pub source: Source,
    pub placement: Placement,
    pub created_at_ms: u64,
    /// Attempts used up by what the job itself did: its worker reported an error, crashed
    /// or ran out of memory.
    pub attempts: u32,
    pub max_attempts: u32,
    pub state: JobState,
    /// Times the daemon stopped or crashed while the job ran. The job did nothing wrong,
    /// so these use no attempt; they have a cap of their own against a crash loop.
    #[serde(default)]
    pub interruptions: u32,
    /// Set when cancel was asked while the job ran; the worker's report then ends it as
    /// cancelled.
    #[serde(default)]
    pub cancel_requested: bool,
    /// The last retryable error, kept so a job that later succeeds still shows why it retried.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the current or last lease started (kept after the lease ends for the timings).
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    /// The worker and GPUs of the current or last lease.
    #[serde(default)]
    pub last_worker: Option<String>,
    #[serde(default)]
    pub last_gpus: Vec<String>,
    /// Filled from the worker's completion report.
    #[serde(default)]
    pub completion: Option<Completion>,
}

/// What a client submits; the queue assigns the id, times and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NewJob {
    pub spec: JobSpec,
    pub priority: Priority,
    pub source: Source,
    pub placement: Placement,
    /// `None` takes the queue's default.
    pub max_attempts: Option<u32>,
}

impl NewJob {
    pub fn new(params: GenerationParams) -> Self {
        NewJob {
            spec: JobSpec {
                params,
                ..JobSpec::default()
            },
            ..NewJob::default()
        }
    }

    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    pub fn source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    pub fn max_attempts(mut self, max: u32) -> Self {
        self.max_attempts = Some(max);
        self
    }
}

/// Deterministic file stem for image `image_index` of job `job_id`: a retry overwrites its
/// own earlier file instead of adding a second one, and names sort by job then image.
pub fn output_stem(job_id: JobId, image_index: u32) -> String {
    format!("job{:010}_{:03}", job_id.0, image_index)
}

/// Milliseconds since the Unix epoch; a clock before 1970 reads as 0 rather than failing.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
