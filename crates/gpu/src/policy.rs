//! The non-sharing idle policy: a pure state machine fed timestamped samples.
//!
//! A GPU is idle (free for a new job of ours) only when it is selected, not leased by us, has no
//! compute process except our own workers, holds less foreign memory than a floor, and has been
//! quiet (all of the above plus utilization under a threshold) for K consecutive samples.
//! Time comes from the caller as a `Duration`, so tests replay timelines exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::GpuError;
use crate::sample::GpuSample;

/// The policy's settings, as they appear in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdlePolicyConfig {
    /// GPUs we may use, by UUID (`GPU-…`) or NVML index; empty means all of them.
    pub gpus: Vec<String>,
    /// Memory used by anything but our workers must stay under this many MiB. Graphics
    /// processes (a desktop's Xorg) are not listed as compute processes but do use memory.
    pub foreign_memory_floor_mib: u64,
    /// Utilization (percent) must stay under this to count as quiet.
    pub utilization_threshold_pct: u32,
    /// K: how many consecutive quiet samples make a GPU idle (a stranger between epochs
    /// looks quiet for a moment; we should not grab the card then).
    pub consecutive_samples: u32,
    /// After we lease a GPU, unknown processes on it count as ours for this long, because our
    /// worker's CUDA context can show up before we know its PID.
    pub lease_grace_ms: u64,
    /// How often to sample (the daemon's poll period, and `gpu-pick`'s between samples).
    pub sample_interval_ms: u64,
    /// When a stranger appears on a GPU running our job, stop the job at once instead of
    /// letting it finish.
    pub yield_immediately: bool,
}

impl Default for IdlePolicyConfig {
    fn default() -> Self {
        IdlePolicyConfig {
            gpus: Vec::new(),
            foreign_memory_floor_mib: 512,
            utilization_threshold_pct: 10,
            consecutive_samples: 3,
            lease_grace_ms: 30_000,
            sample_interval_ms: 1_000,
            yield_immediately: false,
        }
    }
}

impl IdlePolicyConfig {
    pub fn lease_grace(&self) -> Duration {
        Duration::from_millis(self.lease_grace_ms)
    }

    pub fn sample_interval(&self) -> Duration {
        Duration::from_millis(self.sample_interval_ms)
    }

    /// Checks the settings and parses the GPU selection.
    pub fn validate(&self) -> Result<Vec<GpuSelector>, GpuError> {
        let invalid = |field, message: &str| GpuError::InvalidConfig {
            field,
            message: message.to_string(),
        };
        if self.consecutive_samples == 0 {
            return Err(invalid("consecutive_samples", "must be at least 1"));
        }
        if !(1..=100).contains(&self.utilization_threshold_pct) {
            return Err(invalid(
                "utilization_threshold_pct",
                "must be between 1 and 100 (a GPU is quiet below it)",
            ));
        }
        if self.sample_interval_ms == 0 {
            return Err(invalid("sample_interval_ms", "must be at least 1"));
        }
        self.gpus.iter().map(|s| GpuSelector::parse(s)).collect()
    }
}

/// One entry of the GPU selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuSelector {
    Index(u32),
    Uuid(String),
}

impl GpuSelector {
    pub fn parse(text: &str) -> Result<Self, GpuError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(GpuError::InvalidConfig {
                field: "gpus",
                message: "an empty entry; expected a GPU UUID (GPU-…) or an index".to_string(),
            });
        }
        Ok(match text.parse::<u32>() {
            Ok(index) => GpuSelector::Index(index),
            Err(_) => GpuSelector::Uuid(text.to_string()),
        })
    }

    /// UUIDs compare without regard to case, with or without nvidia-smi's `GPU-` prefix.
    pub fn matches(&self, gpu: &GpuSample) -> bool {
        match self {
            GpuSelector::Index(index) => gpu.index == *index,
            GpuSelector::Uuid(uuid) => {
                strip_gpu_prefix(uuid).eq_ignore_ascii_case(strip_gpu_prefix(&gpu.uuid))
            }
        }
    }
}

fn strip_gpu_prefix(uuid: &str) -> &str {
    match uuid.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case("GPU-") => &uuid[4..],
        _ => uuid,
    }
}

/// Why a GPU is not idle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NotIdle {
    NotSelected,
    Leased,
    ForeignProcesses {
        pids: Vec<u32>,
    },
    ForeignMemory {
        used_mib: u64,
        floor_mib: u64,
    },
    Busy {
        utilization_pct: u32,
        threshold_pct: u32,
    },
    Settling {
        quiet_samples: u32,
        needed: u32,
    },
    LowFreeMemory {
        free_mib: u64,
        min_free_mib: u64,
    },
}

impl fmt::Display for NotIdle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotIdle::NotSelected => write!(f, "not selected in the config"),
            NotIdle::Leased => write!(f, "running one of our jobs"),
            NotIdle::ForeignProcesses { pids } => {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                write!(f, "used by other processes (PID {})", pids.join(", "))
            }
            NotIdle::ForeignMemory {
                used_mib,
                floor_mib,
            } => {
                write!(f, "{used_mib} MiB used by others (floor {floor_mib} MiB)")
            }
            NotIdle::Busy {
                utilization_pct,
                threshold_pct,
            } => {
                write!(
                    f,
                    "utilization {utilization_pct}% (threshold {threshold_pct}%)"
                )
            }
            NotIdle::Settling {
                quiet_samples,
                needed,
            } => {
                write!(f, "quiet for {quiet_samples} of {needed} samples")
            }
            NotIdle::LowFreeMemory {
                free_mib,
                min_free_mib,
            } => {
                write!(f, "{free_mib} MiB free (need {min_free_mib} MiB)")
            }
        }
    }
}

/// The policy's judgement of one GPU at one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuVerdict {
    pub index: u32,
    pub uuid: String,
    pub selected: bool,
    /// Free for a new job of ours.
    pub idle: bool,
    pub leased: bool,
    pub in_grace: bool,
    /// Compute processes that are neither our workers nor covered by a lease's grace window.
    pub foreign_pids: Vec<u32>,
    pub foreign_memory_mib: u64,
    pub memory_free_mib: u64,
    pub quiet_samples: u32,
    /// A stranger is on a GPU running our job and the user asked us to yield at once.
    pub should_yield: bool,
    /// Empty exactly when `idle`.
    pub reasons: Vec<NotIdle>,
}

#[derive(Debug, Clone, Default)]
struct GpuState {
    quiet_samples: u32,
    leased_at: Option<Duration>,
    /// Samples left, after our job ended, in which utilization still counts as ours: NVML
    /// averages utilization over the last period, so the first samples after a job show
    /// that job's own load, which must not keep the GPU from our next one.
    own_load_samples: u32,
}

/// How many samples after a release utilization is taken for our own job's tail.
const OWN_LOAD_SAMPLES: u32 = 2;

/// The idle state machine over all GPUs, keyed by UUID (indices can change across reboots).
#[derive(Debug, Clone)]
pub struct IdlePolicy {
    config: IdlePolicyConfig,
    selectors: Vec<GpuSelector>,
    states: BTreeMap<String, GpuState>,
}

impl IdlePolicy {
    pub fn new(config: IdlePolicyConfig) -> Result<Self, GpuError> {
        let selectors = config.validate()?;
        Ok(IdlePolicy {
            config,
            selectors,
            states: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &IdlePolicyConfig {
        &self.config
    }

    pub fn is_selected(&self, gpu: &GpuSample) -> bool {
        self.selectors.is_empty() || self.selectors.iter().any(|s| s.matches(gpu))
    }

    /// Selection entries that match no GPU in `samples`, so the caller can warn about typos.
    pub fn unmatched_selectors(&self, samples: &[GpuSample]) -> Vec<String> {
        self.config
            .gpus
            .iter()
            .zip(&self.selectors)
            .filter(|(_, s)| !samples.iter().any(|g| s.matches(g)))
            .map(|(text, _)| text.clone())
            .collect()
    }

    /// Records that we started a job on `uuid` at `now`; its grace window starts.
    pub fn lease(&mut self, uuid: &str, now: Duration) {
        self.states.entry(uuid.to_string()).or_default().leased_at = Some(now);
    }

    /// Records that our job on `uuid` ended.
    pub fn release(&mut self, uuid: &str) {
        if let Some(state) = self.states.get_mut(uuid) {
            if state.leased_at.take().is_some() {
                state.own_load_samples = OWN_LOAD_SAMPLES;
            }
        }
    }

    /// Feeds one sample of every GPU taken at `now`; `own_pids` are our workers' PIDs.
    pub fn observe(
        &mut self,
        now: Duration,
        samples: &[GpuSample],
        own_pids: &BTreeSet<u32>,
    ) -> Vec<GpuVerdict> {
        // Forget GPUs that vanished (fell off the bus), but keep leases: the daemon releases those.
        self.states
            .retain(|uuid, s| s.leased_at.is_some() || samples.iter().any(|g| &g.uuid == uuid));
        samples
            .iter()
            .map(|gpu| self.judge(now, gpu, own_pids))
            .collect()
    }

    fn judge(&mut self, now: Duration, gpu: &GpuSample, own_pids: &BTreeSet<u32>) -> GpuVerdict {
        let selected = self.is_selected(gpu);
        let config = &self.config;
        let state = self.states.entry(gpu.uuid.clone()).or_default();
        let leased = state.leased_at.is_some();
        let in_grace = state
            .leased_at
            .is_some_and(|t| now.saturating_sub(t) < config.lease_grace());

        let (ours, foreign): (Vec<_>, Vec<_>) = gpu
            .processes
            .iter()
            .partition(|p| in_grace || own_pids.contains(&p.pid));
        let foreign_pids: Vec<u32> = foreign.iter().map(|p| p.pid).collect();
        let our_memory: u64 = ours.iter().filter_map(|p| p.used_mib).sum();
        let foreign_memory_mib = gpu.memory_used_mib.saturating_sub(our_memory);
        let utilization_pct = gpu.utilization_pct.unwrap_or(0);

        let mut reasons = Vec::new();
        if !selected {
            reasons.push(NotIdle::NotSelected);
        }
        if leased {
            reasons.push(NotIdle::Leased);
        }
        if !foreign_pids.is_empty() {
            reasons.push(NotIdle::ForeignProcesses {
                pids: foreign_pids.clone(),
            });
        }
        // While our job runs, its memory and utilization are ours; per-process memory can lag
        // the total, so strangers on a leased GPU are caught by their processes only.
        let memory_over = !leased && foreign_memory_mib >= config.foreign_memory_floor_mib;
        if memory_over {
            reasons.push(NotIdle::ForeignMemory {
                used_mib: foreign_memory_mib,
                floor_mib: config.foreign_memory_floor_mib,
            });
        }
        let own_tail = state.own_load_samples > 0;
        state.own_load_samples = state.own_load_samples.saturating_sub(1);
        let busy = !leased && !own_tail && utilization_pct >= config.utilization_threshold_pct;
        if busy {
            reasons.push(NotIdle::Busy {
                utilization_pct,
                threshold_pct: config.utilization_threshold_pct,
            });
        }

        // A stranger, their memory or load breaks the quiet streak at once; our own leased
        // work does not, so a GPU we release is free again without waiting K more samples.
        let quiet = foreign_pids.is_empty() && !memory_over && !busy;
        state.quiet_samples = if quiet {
            state.quiet_samples.saturating_add(1)
        } else {
            0
        };
        if quiet && state.quiet_samples < config.consecutive_samples {
            reasons.push(NotIdle::Settling {
                quiet_samples: state.quiet_samples,
                needed: config.consecutive_samples,
            });
        }

        GpuVerdict {
            index: gpu.index,
            uuid: gpu.uuid.clone(),
            selected,
            idle: reasons.is_empty(),
            leased,
            in_grace,
            should_yield: leased && !foreign_pids.is_empty() && config.yield_immediately,
            foreign_pids,
            foreign_memory_mib,
            memory_free_mib: gpu.memory_free_mib,
            quiet_samples: state.quiet_samples,
            reasons,
        }
    }
}
