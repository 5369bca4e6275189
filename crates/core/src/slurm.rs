//! The `slurm:` section of the settings file: whether the daemon hands jobs to a Slurm
//! cluster, and how it asks (`sbatch` arguments, how many jobs at once, how often it looks).

use serde::{Deserialize, Serialize};

/// How the daemon uses Slurm; `enabled` (or `imagelab daemon --slurm`) turns it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmSettings {
    pub enabled: bool,
    /// `sbatch --partition`; none uses the cluster's default partition.
    pub partition: Option<String>,
    /// `sbatch --gres` for one job.
    pub gres: String,
    /// Jobs handed to Slurm at once (pending or running there); the rest wait in our queue.
    pub max_submitted: usize,
    /// More `sbatch` arguments (account, QoS, time limit …), passed as written.
    pub sbatch_args: Vec<String>,
    /// How often Slurm is asked about its jobs and the workers' progress files are read.
    pub poll_ms: u64,
    /// `imagelab worker --device` inside the job (`cuda`: the GPU Slurm gives it).
    pub device: String,
    /// The `imagelab` binary on the nodes; none uses the daemon's own (a shared path).
    pub program: Option<String>,
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            enabled: false,
            partition: None,
            gres: "gpu:1".into(),
            max_submitted: 8,
            sbatch_args: Vec::new(),
            poll_ms: 1000,
            device: "cuda".into(),
            program: None,
        }
    }
}

impl SlurmSettings {
    /// Refuses settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_submitted == 0 {
            return Err("slurm.max_submitted: 0 would never submit a job (at least 1)".into());
        }
        if self.poll_ms < 50 {
            return Err(format!("slurm.poll_ms: {} is below 50", self.poll_ms));
        }
        if self.gres.trim().is_empty() {
            return Err("slurm.gres: empty (for example gpu:1)".into());
        }
        Ok(())
    }
}
