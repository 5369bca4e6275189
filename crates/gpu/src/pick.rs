//! `imagelab gpu-pick`: sample the GPUs until enough are idle by the policy (or give up), and
//! print their indices for `CUDA_VISIBLE_DEVICES`. Exit statuses: 0 picked, 1 not enough idle
//! (or the wait timed out), 2 NVML unavailable.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::clock::Clock;
use crate::error::{GpuError, EXIT_NOT_ENOUGH_IDLE, EXIT_NVML_UNAVAILABLE};
use crate::policy::{GpuVerdict, IdlePolicy, IdlePolicyConfig, NotIdle};
use crate::sample::GpuProbe;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickOptions {
    /// How many GPUs to pick (at least 1).
    pub count: usize,
    /// Keep sampling until enough GPUs are idle.
    pub wait: bool,
    /// With `wait`: give up after this long; `None` waits for ever.
    pub timeout: Option<Duration>,
    /// A picked GPU must have at least this much memory free.
    pub min_free_mib: u64,
    /// Processes that do not count as strangers (the caller's own workers).
    pub own_pids: BTreeSet<u32>,
}

impl Default for PickOptions {
    fn default() -> Self {
        PickOptions {
            count: 1,
            wait: false,
            timeout: None,
            min_free_mib: 0,
            own_pids: BTreeSet::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PickedGpu {
    pub index: u32,
    pub uuid: String,
}

/// A GPU that was not picked, and why (for the message on exit 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpicked {
    pub index: u32,
    pub reasons: Vec<NotIdle>,
}

#[derive(Debug, Error)]
pub enum PickError {
    #[error("{} of the {wanted} GPU(s) asked for are idle{}", idle.len(), explain(unpicked))]
    NotEnoughIdle {
        wanted: usize,
        idle: Vec<u32>,
        unpicked: Vec<Unpicked>,
    },
    #[error("waited {waited:?}: {} of the {wanted} GPU(s) asked for are idle{}", idle.len(), explain(unpicked))]
    TimedOut {
        wanted: usize,
        waited: Duration,
        idle: Vec<u32>,
        unpicked: Vec<Unpicked>,
    },
    /// Waiting cannot help: the config selects fewer GPUs than asked for.
    #[error(
        "asked for {wanted} GPU(s) but only {selected} are present and selected in the config"
    )]
    TooFewSelected { wanted: usize, selected: usize },
    #[error("invalid gpu-pick option: {0}")]
    InvalidOptions(String),
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

impl PickError {
    /// The exit status `gpu-pick` ends with.
    pub fn exit_code(&self) -> i32 {
        match self {
            PickError::NotEnoughIdle { .. }
            | PickError::TimedOut { .. }
            | PickError::TooFewSelected { .. } => EXIT_NOT_ENOUGH_IDLE,
            // Usage errors share clap's status 2; NVML trouble is 2 by the issue.
            PickError::InvalidOptions(_) | PickError::Gpu(_) => EXIT_NVML_UNAVAILABLE,
        }
    }
}

fn explain(unpicked: &[Unpicked]) -> String {
    let parts: Vec<String> = unpicked
        .iter()
        .filter(|u| !u.reasons.contains(&NotIdle::NotSelected))
        .map(|u| {
            let reasons: Vec<String> = u.reasons.iter().map(ToString::to_string).collect();
            format!("GPU {}: {}", u.index, reasons.join(", "))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

/// Comma-separated indices, ready for `CUDA_VISIBLE_DEVICES` under `CUDA_DEVICE_ORDER=PCI_BUS_ID`.
pub fn cuda_visible_devices(picked: &[PickedGpu]) -> String {
    let indices: Vec<String> = picked.iter().map(|g| g.index.to_string()).collect();
    indices.join(",")
}

/// Samples every `config.sample_interval_ms` until `options.count` GPUs are idle, lowest
/// indices first. Without `wait` it gives up after K samples (the fewest that can show a GPU
/// idle), so one call takes about (K − 1) sample intervals.
pub fn pick(
    probe: &mut dyn GpuProbe,
    config: &IdlePolicyConfig,
    options: &PickOptions,
    clock: &mut dyn Clock,
) -> Result<Vec<PickedGpu>, PickError> {
    if options.count == 0 {
        return Err(PickError::InvalidOptions(
            "--count must be at least 1".to_string(),
        ));
    }
    let mut policy = IdlePolicy::new(config.clone())?;
    let needed_samples = config.consecutive_samples.max(1);
    let start = clock.now();
    let mut taken = 0u32;
    loop {
        let samples = probe.snapshot()?;
        let now = clock.now();
        let verdicts = policy.observe(now, &samples, &options.own_pids);
        taken = taken.saturating_add(1);

        let selected = verdicts.iter().filter(|v| v.selected).count();
        if selected < options.count {
            return Err(PickError::TooFewSelected {
                wanted: options.count,
                selected,
            });
        }
        let (idle, unpicked) = split_idle(verdicts, options.min_free_mib);
        if idle.len() >= options.count {
            return Ok(idle.into_iter().take(options.count).collect());
        }
        let idle_indices = || idle.iter().map(|g| g.index).collect();
        let waited = now.saturating_sub(start);
        if !options.wait {
            if taken >= needed_samples {
                return Err(PickError::NotEnoughIdle {
                    wanted: options.count,
                    idle: idle_indices(),
                    unpicked,
                });
            }
        } else if let Some(timeout) = options.timeout {
            if waited >= timeout {
                return Err(PickError::TimedOut {
                    wanted: options.count,
                    waited,
                    idle: idle_indices(),
                    unpicked,
                });
            }
            // Never sleep past the deadline, so the last look happens right at it.
            clock.sleep(config.sample_interval().min(timeout - waited));
            continue;
        }
        clock.sleep(config.sample_interval());
    }
}

/// Idle GPUs with enough free memory (by index), and the others with their reasons.
fn split_idle(mut verdicts: Vec<GpuVerdict>, min_free_mib: u64) -> (Vec<PickedGpu>, Vec<Unpicked>) {
    verdicts.sort_by_key(|v| v.index);
    let mut idle = Vec::new();
    let mut unpicked = Vec::new();
    for mut verdict in verdicts {
        if verdict.memory_free_mib < min_free_mib {
            verdict.reasons.push(NotIdle::LowFreeMemory {
                free_mib: verdict.memory_free_mib,
                min_free_mib,
            });
        }
        if verdict.reasons.is_empty() {
            idle.push(PickedGpu {
                index: verdict.index,
                uuid: verdict.uuid,
            });
        } else {
            unpicked.push(Unpicked {
                index: verdict.index,
                reasons: verdict.reasons,
            });
        }
    }
    (idle, unpicked)
}
