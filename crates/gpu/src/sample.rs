//! What one look at the GPUs returns, and the probe trait both NVML and the scripted fake implement.

use serde::{Deserialize, Serialize};

use crate::error::GpuError;

/// The user name shown when a process's owner cannot be resolved (gone, another PID namespace).
pub const UNKNOWN_USER: &str = "unknown";

/// One compute process (a CUDA context) on a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProcess {
    pub pid: u32,
    /// GPU memory the process holds; `None` when the driver does not say (WDDM, some containers).
    pub used_mib: Option<u64>,
    /// Owner's login name from `/proc/<pid>/status` and `/etc/passwd`, or [`UNKNOWN_USER`].
    pub user: String,
}

/// The state of one GPU at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    /// NVML index, which is the CUDA index under `CUDA_DEVICE_ORDER=PCI_BUS_ID`.
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_total_mib: u64,
    pub memory_used_mib: u64,
    pub memory_free_mib: u64,
    /// Percent of the last sample period a kernel ran; `None` when the GPU cannot report it.
    pub utilization_pct: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
    pub processes: Vec<GpuProcess>,
}

/// Something that can look at the GPUs: NVML on a real machine, [`crate::ScriptedProbe`] in tests.
pub trait GpuProbe {
    /// One look at every GPU, sorted by index.
    fn snapshot(&mut self) -> Result<Vec<GpuSample>, GpuError>;
}

impl<P: GpuProbe + ?Sized> GpuProbe for &mut P {
    fn snapshot(&mut self) -> Result<Vec<GpuSample>, GpuError> {
        (**self).snapshot()
    }
}

impl<P: GpuProbe + ?Sized> GpuProbe for Box<P> {
    fn snapshot(&mut self) -> Result<Vec<GpuSample>, GpuError> {
        (**self).snapshot()
    }
}
