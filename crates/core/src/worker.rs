//! The line protocol between the daemon and an `imagelab worker` child process: one JSON
//! object per line, requests on the child's stdin, events on its stdout. Keeping the engine
//! in a child means a CUDA out-of-memory error, a sticky CUDA fault or a segfault costs one
//! job attempt and a worker restart, never the daemon.

use crate::params::GenerationParams;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One job for the worker; `params.seed` is already resolved (≥ 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkRequest {
    pub job: u64,
    pub params: GenerationParams,
    /// Where the images go, and the file stem of image `i`: `{stems[i]}.png`.
    pub output_dir: PathBuf,
    pub stems: Vec<String>,
}

/// What the worker reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// The worker started and reads requests.
    Ready {
        pid: u32,
    },
    Progress {
        job: u64,
        done: usize,
        total: usize,
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
}
