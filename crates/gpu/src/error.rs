//! Errors of the GPU layer, and the exit statuses the `gpus` / `gpu-pick` commands map them to.

use thiserror::Error;

/// Exit status when the command did what was asked.
pub const EXIT_OK: i32 = 0;
/// Exit status of `gpu-pick` when fewer GPUs are idle than asked for (or the wait timed out).
pub const EXIT_NOT_ENOUGH_IDLE: i32 = 1;
/// Exit status when NVML cannot be used at all (no driver, no `libnvidia-ml.so.1`), or a query failed.
pub const EXIT_NVML_UNAVAILABLE: i32 = 2;

#[derive(Debug, Error)]
pub enum GpuError {
    /// NVML could not be loaded or initialised; `reason` is NVML's own words.
    #[error("NVML is unavailable, so GPUs cannot be listed or checked for idleness: {reason} (is the NVIDIA driver installed?)")]
    NvmlUnavailable { reason: String },
    /// NVML is loaded but a query about one GPU failed (for example the GPU fell off the bus).
    #[error("NVML query {what} failed for GPU {gpu}: {reason}")]
    Query {
        gpu: String,
        what: &'static str,
        reason: String,
    },
    /// The idle policy's settings make no sense (for example K = 0 consecutive samples).
    #[error("invalid GPU policy setting `{field}`: {message}")]
    InvalidConfig {
        field: &'static str,
        message: String,
    },
    /// A scripted fake was told about a GPU it does not have (a mistake in a test's script).
    #[error("scripted probe: {0}")]
    Script(String),
}

impl GpuError {
    /// The exit status a command should end with when it fails with this error.
    pub fn exit_code(&self) -> i32 {
        EXIT_NVML_UNAVAILABLE
    }
}
