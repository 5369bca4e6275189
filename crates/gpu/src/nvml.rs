//! The real probe: reads every GPU through NVML (`libnvidia-ml.so.1`, loaded at run time).
//!
//! Loading happens in [`NvmlProbe::new`], so a machine without the driver gets a clear
//! [`GpuError::NvmlUnavailable`] there instead of a link error or a panic.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use crate::error::GpuError;
use crate::sample::{GpuProbe, GpuProcess, GpuSample};
use crate::users::UserTable;

const MIB: u64 = 1024 * 1024;

pub struct NvmlProbe {
    nvml: Nvml,
}

impl std::fmt::Debug for NvmlProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NvmlProbe")
    }
}

impl NvmlProbe {
    /// Loads `libnvidia-ml.so.1` and initialises NVML.
    pub fn new() -> Result<Self, GpuError> {
        let nvml = Nvml::init().map_err(|e| GpuError::NvmlUnavailable {
            reason: init_reason(&e),
        })?;
        Ok(NvmlProbe { nvml })
    }

    fn sample_device(&self, index: u32, users: &UserTable) -> Result<GpuSample, GpuError> {
        let gpu = index.to_string();
        let device = self
            .nvml
            .device_by_index(index)
            .map_err(query(&gpu, "device_by_index"))?;
        let uuid = device.uuid().map_err(query(&gpu, "uuid"))?;
        let name = device.name().map_err(query(&uuid, "name"))?;
        let memory = device.memory_info().map_err(query(&uuid, "memory_info"))?;
        // Utilization, temperature and power are not supported on every GPU (MIG, some
        // consumer cards); a missing reading is shown as such rather than failing the look.
        let utilization_pct = device.utilization_rates().ok().map(|u| u.gpu);
        let temperature_c = device.temperature(TemperatureSensor::Gpu).ok();
        let power_w = device.power_usage().ok().map(|mw| f64::from(mw) / 1000.0);
        let processes = compute_processes(&device, &uuid, users)?;
        Ok(GpuSample {
            index,
            uuid,
            name,
            memory_total_mib: memory.total / MIB,
            memory_used_mib: memory.used / MIB,
            memory_free_mib: memory.free / MIB,
            utilization_pct,
            temperature_c,
            power_w,
            processes,
        })
    }
}

impl GpuProbe for NvmlProbe {
    fn snapshot(&mut self) -> Result<Vec<GpuSample>, GpuError> {
        let count = self
            .nvml
            .device_count()
            .map_err(query("(all)", "device_count"))?;
        let users = UserTable::load();
        (0..count)
            .map(|index| self.sample_device(index, &users))
            .collect()
    }
}

fn compute_processes(
    device: &Device<'_>,
    uuid: &str,
    users: &UserTable,
) -> Result<Vec<GpuProcess>, GpuError> {
    let mut processes: Vec<GpuProcess> = device
        .running_compute_processes()
        .map_err(query(uuid, "running_compute_processes"))?
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            used_mib: match p.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => Some(bytes / MIB),
                UsedGpuMemory::Unavailable => None,
            },
            user: users.user_of_pid(p.pid),
        })
        .collect();
    processes.sort_by_key(|p| p.pid);
    Ok(processes)
}

fn query<'a>(gpu: &'a str, what: &'static str) -> impl Fn(NvmlError) -> GpuError + 'a {
    move |e| GpuError::Query {
        gpu: gpu.to_string(),
        what,
        reason: e.to_string(),
    }
}

/// NVML's reason for failing to start, in words a user can act on.
fn init_reason(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(inner) => {
            format!("could not load the NVML library: {inner}")
        }
        NvmlError::DriverNotLoaded => "the NVIDIA kernel driver is not loaded".to_string(),
        NvmlError::NoPermission => "no permission to talk to the NVIDIA driver".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's supervisor owns a probe on its own thread.
    #[test]
    fn probes_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<NvmlProbe>();
        assert_send::<crate::ScriptedProbe>();
        assert_send::<crate::IdlePolicy>();
    }

    /// On a machine without the driver (CI), initialising must be an error, not a panic.
    /// Where a driver exists, a snapshot must succeed instead.
    #[test]
    fn init_without_driver_is_a_clear_error() {
        match NvmlProbe::new() {
            Err(GpuError::NvmlUnavailable { reason }) => {
                assert!(!reason.is_empty());
                let message = GpuError::NvmlUnavailable { reason }.to_string();
                assert!(message.contains("NVML is unavailable"), "{message}");
            }
            Err(other) => panic!("expected NvmlUnavailable, got {other}"),
            Ok(mut probe) => {
                let gpus = probe.snapshot().map_err(|e| e.to_string());
                assert!(gpus.is_ok(), "{gpus:?}");
            }
        }
    }
}
