//! GPU introspection for imagelab: what each GPU is doing (NVML, or a scripted fake in tests),
//! whether it is idle by the non-sharing policy, and the `gpus` / `gpu-pick` commands' logic.
//!
//! Everything here is synchronous and free of tokio/actix so the CLI and the daemon's supervisor
//! can both call it. The policy never reads a real clock: callers pass the time, so tests replay
//! timelines deterministically.

mod clock;
mod error;
mod nvml;
mod pick;
mod policy;
mod report;
mod sample;
mod scripted;
mod users;

pub use clock::{Clock, FakeClock, SystemClock};
pub use error::{GpuError, EXIT_NOT_ENOUGH_IDLE, EXIT_NVML_UNAVAILABLE, EXIT_OK};
pub use nvml::NvmlProbe;
pub use pick::{cuda_visible_devices, pick, PickError, PickOptions, PickedGpu, Unpicked};
pub use policy::{GpuSelector, GpuVerdict, IdlePolicy, IdlePolicyConfig, NotIdle};
pub use report::{gpus_report, GpuStatus, GpusReport, MemoryStatus, ProcessStatus};
pub use sample::{GpuProbe, GpuProcess, GpuSample, UNKNOWN_USER};
pub use scripted::{FakeGpu, ScriptedProbe};
pub use users::UserTable;
