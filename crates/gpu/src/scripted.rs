//! A fake probe for tests: GPUs whose utilization, memory and processes follow a script in time.
//!
//! The script is a list of changes `at(t, gpu, |g| …)`; a snapshot at time T shows each GPU's
//! initial state with every change at or before T applied in order. Time comes from a
//! [`FakeClock`] shared with the code under test, so "wait 5 s" in a test takes no time.

use std::time::Duration;

use crate::clock::{Clock, FakeClock};
use crate::error::GpuError;
use crate::sample::{GpuProbe, GpuProcess, GpuSample, UNKNOWN_USER};

/// The mutable state of one fake GPU, changed by a script step.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeGpu {
    sample: GpuSample,
    /// Memory not held by any listed process (driver, graphics); processes add to it.
    base_used_mib: u64,
}

impl FakeGpu {
    pub fn util(&mut self, pct: u32) -> &mut Self {
        self.sample.utilization_pct = Some(pct);
        self
    }

    /// Memory used outside any compute process (a desktop's Xorg, say).
    pub fn base_memory(&mut self, mib: u64) -> &mut Self {
        self.base_used_mib = mib;
        self
    }

    /// A compute process owned by an unresolvable user.
    pub fn process(&mut self, pid: u32, used_mib: u64) -> &mut Self {
        self.process_as(pid, used_mib, UNKNOWN_USER)
    }

    /// A compute process owned by `user`; replaces an earlier entry with the same PID.
    pub fn process_as(&mut self, pid: u32, used_mib: u64, user: &str) -> &mut Self {
        self.remove_process(pid);
        self.sample.processes.push(GpuProcess {
            pid,
            used_mib: Some(used_mib),
            user: user.to_string(),
        });
        self.sample.processes.sort_by_key(|p| p.pid);
        self
    }

    pub fn remove_process(&mut self, pid: u32) -> &mut Self {
        self.sample.processes.retain(|p| p.pid != pid);
        self
    }

    pub fn clear_processes(&mut self) -> &mut Self {
        self.sample.processes.clear();
        self
    }

    pub fn temperature(&mut self, celsius: u32) -> &mut Self {
        self.sample.temperature_c = Some(celsius);
        self
    }

    pub fn power(&mut self, watts: f64) -> &mut Self {
        self.sample.power_w = Some(watts);
        self
    }

    fn to_sample(&self) -> GpuSample {
        let mut sample = self.sample.clone();
        let process_mib: u64 = sample.processes.iter().filter_map(|p| p.used_mib).sum();
        sample.memory_used_mib = self.base_used_mib.saturating_add(process_mib);
        sample.memory_free_mib = sample
            .memory_total_mib
            .saturating_sub(sample.memory_used_mib);
        sample
    }
}

type Change = Box<dyn Fn(&mut FakeGpu) -> &mut FakeGpu + Send>;

struct Step {
    at: Duration,
    gpu: u32,
    change: Change,
}

/// Plays back a scripted timeline of GPU states against a [`FakeClock`].
pub struct ScriptedProbe {
    clock: FakeClock,
    gpus: Vec<FakeGpu>,
    steps: Vec<Step>,
    unavailable: Option<String>,
    snapshots: usize,
}

impl std::fmt::Debug for ScriptedProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedProbe")
            .field("gpus", &self.gpus)
            .field("steps", &self.steps.len())
            .field("snapshots", &self.snapshots)
            .finish()
    }
}

impl ScriptedProbe {
    /// An empty machine whose time is `clock`'s.
    pub fn new(clock: FakeClock) -> Self {
        ScriptedProbe {
            clock,
            gpus: Vec::new(),
            steps: Vec::new(),
            unavailable: None,
            snapshots: 0,
        }
    }

    /// A machine where NVML cannot be loaded: every snapshot fails with `reason`.
    pub fn unavailable(reason: &str) -> Self {
        let mut probe = Self::new(FakeClock::new());
        probe.unavailable = Some(reason.to_string());
        probe
    }

    /// Adds an idle GPU (0% utilization, no memory used, 35 °C, 70 W).
    pub fn gpu(mut self, index: u32, uuid: &str, name: &str, total_mib: u64) -> Self {
        self.gpus.push(FakeGpu {
            sample: GpuSample {
                index,
                uuid: uuid.to_string(),
                name: name.to_string(),
                memory_total_mib: total_mib,
                memory_used_mib: 0,
                memory_free_mib: total_mib,
                utilization_pct: Some(0),
                temperature_c: Some(35),
                power_w: Some(70.0),
                processes: Vec::new(),
            },
            base_used_mib: 0,
        });
        self.gpus.sort_by_key(|g| g.sample.index);
        self
    }

    /// From time `at` on, GPU `gpu` (an index) is changed by `change`.
    pub fn at<F>(mut self, at: Duration, gpu: u32, change: F) -> Self
    where
        F: Fn(&mut FakeGpu) -> &mut FakeGpu + Send + 'static,
    {
        self.steps.push(Step {
            at,
            gpu,
            change: Box::new(change),
        });
        // Stable: steps at the same time apply in the order they were written.
        self.steps.sort_by_key(|s| s.at);
        self
    }

    pub fn clock(&self) -> FakeClock {
        self.clock.clone()
    }

    /// How many snapshots were taken, so tests can check how often a caller looked.
    pub fn snapshots_taken(&self) -> usize {
        self.snapshots
    }

    /// The state at an explicit time, without touching the clock.
    pub fn snapshot_at(&mut self, now: Duration) -> Result<Vec<GpuSample>, GpuError> {
        self.snapshots += 1;
        if let Some(reason) = &self.unavailable {
            return Err(GpuError::NvmlUnavailable {
                reason: reason.clone(),
            });
        }
        let mut gpus = self.gpus.clone();
        for step in self.steps.iter().take_while(|s| s.at <= now) {
            let gpu = gpus
                .iter_mut()
                .find(|g| g.sample.index == step.gpu)
                .ok_or_else(|| {
                    GpuError::Script(format!(
                        "a step names GPU {}, which the script does not have",
                        step.gpu
                    ))
                })?;
            (step.change)(gpu);
        }
        Ok(gpus.iter().map(FakeGpu::to_sample).collect())
    }
}

impl GpuProbe for ScriptedProbe {
    fn snapshot(&mut self) -> Result<Vec<GpuSample>, GpuError> {
        let now = self.clock.now();
        self.snapshot_at(now)
    }
}
