//! The daemon's scheduling settings (config.yaml's `scheduler:` section): when a GPU counts
//! as free for our next job, what a restart does with interrupted jobs, retries, history
//! and previews. Plain data here; the daemon turns it into the GPU policy and queue options.

use serde::{Deserialize, Serialize};

/// What happens to jobs that were running when the daemon stopped or crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnRestart {
    /// Back to the queue, and carry on.
    #[default]
    Requeue,
    /// Back to the queue, with dispatch paused until someone resumes it.
    Pause,
}

/// `scheduler:` in config.yaml. Every field is optional in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Memory (MiB) that processes other than our workers may hold on a GPU we use.
    pub foreign_memory_floor_mib: u64,
    /// A GPU is quiet while its utilization (percent) stays under this.
    pub utilization_threshold_pct: u32,
    /// How many consecutive quiet samples make a GPU idle.
    pub consecutive_samples: u32,
    /// After we start a job, unknown processes on its GPU count as ours for this long
    /// (our worker's CUDA context appears before we learn its PID).
    pub lease_grace_ms: u64,
    /// How often the GPUs are sampled.
    pub sample_interval_ms: u64,
    /// Stop our job at once (and queue it again) when someone else starts using its GPU,
    /// instead of letting it finish.
    pub yield_immediately: bool,
    pub on_restart: OnRestart,
    /// Attempts a job gets before it is dead (its worker failed, crashed or ran out of
    /// memory).
    pub max_attempts: u32,
    /// Daemon stops or crashes a running job may live through before it is dead; they use
    /// no attempt.
    pub max_interruptions: u32,
    /// Finished jobs kept in the queue (jobs.log keeps every one).
    pub history_limit: usize,
    /// A preview image every this many steps (0: none).
    pub preview_every: usize,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            foreign_memory_floor_mib: 512,
            utilization_threshold_pct: 10,
            consecutive_samples: 3,
            lease_grace_ms: 30_000,
            sample_interval_ms: 1_000,
            yield_immediately: false,
            on_restart: OnRestart::Requeue,
            max_attempts: 3,
            max_interruptions: 20,
            history_limit: 10_000,
            preview_every: 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_section_keeps_the_other_defaults() {
        let settings: SchedulerSettings =
            serde_yaml::from_str("yield_immediately: true\non_restart: pause\n").unwrap();
        assert!(settings.yield_immediately);
        assert_eq!(settings.on_restart, OnRestart::Pause);
        assert_eq!(settings.consecutive_samples, 3);
    }

    #[test]
    fn a_misspelt_field_is_named() {
        let err = serde_yaml::from_str::<SchedulerSettings>("yeild_immediately: true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("yeild_immediately"), "{err}");
    }
}
