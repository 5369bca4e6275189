//! The GPU and worker calls: the GPUs with their workers and their recent history, and loading or unloading a
//! model on a worker (the GUI's "load model" and "clear model" buttons).

use crate::{Client, Result};
use imagelab_core::events::{GpuStatusView, ModelRequest, WorkerStatus};

impl Client {
    /// The GPUs and the workers on them.
    pub fn gpus(&self) -> Result<GpuStatusView> {
        self.call("GET", "/v1/gpus", None)
    }

    /// Each GPU's last ten minutes of samples (`GET /v1/gpus/history`).
    pub fn gpu_history(&self) -> Result<imagelab_core::events::GpuHistoryView> {
        self.call("GET", "/v1/gpus/history", None)
    }

    /// Loads a checkpoint on a worker (the first one when none is named).
    pub fn load_model(&self, request: &ModelRequest) -> Result<Vec<WorkerStatus>> {
        self.post_json("/v1/workers/load", request)
    }

    /// Drops a checkpoint (or, without a model, every one) from a worker or all of them.
    pub fn unload_model(&self, request: &ModelRequest) -> Result<Vec<WorkerStatus>> {
        self.post_json("/v1/workers/unload", request)
    }
}
