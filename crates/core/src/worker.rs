//! The line protocol between the daemon and an `imagelab worker` child process: one JSON
//! object per line, commands on the child's stdin, events on its stdout. Keeping the engine
//! in a child means a CUDA out-of-memory error, a sticky CUDA fault or a segfault costs one
//! job attempt and a worker restart, never the daemon.
//!
//! The child reads stdin on a thread of its own, so a `cancel` arrives while a job runs;
//! the engine stops at the next step boundary and the child answers `cancelled`.

use crate::events::{ComponentVram, Preview};
use crate::params::GenerationParams;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One job for the worker; `params.seed` is already resolved (≥ 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkRequest {
    pub job: u64,
    /// Which attempt at the job this is (1 for the first), so the worker's log lines carry
    /// the same job span as the daemon's. 0 from a sender that does not say.
    #[serde(default)]
    pub attempt: u32,
    pub params: GenerationParams,
    /// Where the images go, and the file stem of image `i`: `{stems[i]}.png`.
    pub output_dir: PathBuf,
    pub stems: Vec<String>,
    /// Send a preview with every `preview_every`-th step (0: none).
    #[serde(default)]
    pub preview_every: usize,
}

/// What the daemon asks of a worker.
// A command lives for one line of the pipe; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WorkerCommand {
    /// Run a job; answered by `progress` lines, then `done`, `failed` or `cancelled`.
    Generate(WorkRequest),
    /// Load a checkpoint (with a VAE and text encoders replacing its own, when named) into
    /// the pipeline cache; answered by `models` (or `failed` with job 0).
    Load {
        model: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vae: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip: Option<String>,
    },
    /// Drop one checkpoint from the cache, or all of them; answered by `models`.
    Unload { model: Option<String> },
    /// Stop this job at the next step boundary; ignored when it is not running.
    Cancel { job: u64 },
}

/// What the worker reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// The worker started and reads requests.
    Ready { pid: u32 },
    Progress {
        job: u64,
        done: usize,
        total: usize,
        #[serde(default)]
        preview: Option<Preview>,
    },
    Done {
        job: u64,
        outputs: Vec<String>,
        seeds: Vec<i64>,
        model_hash: Option<String>,
        step_time_ms: Option<f64>,
    },
    /// `retryable` is false for errors another attempt cannot fix (bad input, a missing or
    /// unknown model).
    Failed {
        job: u64,
        error: String,
        retryable: bool,
    },
    /// The job stopped early because the daemon asked; nothing was written.
    Cancelled { job: u64 },
    /// The pipeline cache now holds these checkpoints (file names, most recently used
    /// last) using this much memory; sent after every load, unload and job.
    Models {
        loaded: Vec<String>,
        vram: Vec<ComponentVram>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_as_tagged_lines() {
        let cancel = WorkerCommand::Cancel { job: 3 };
        let line = serde_json::to_string(&cancel).unwrap();
        assert_eq!(line, r#"{"op":"cancel","job":3}"#);
        let generate: WorkerCommand = serde_json::from_str(
            r#"{"op":"generate","job":1,"params":{"model":"m"},"output_dir":"/o","stems":["s"]}"#,
        )
        .unwrap();
        let WorkerCommand::Generate(request) = generate else {
            panic!("not a generate command");
        };
        assert_eq!(request.params.model, "m");
        assert_eq!(request.preview_every, 0);
    }
}
