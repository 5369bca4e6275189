//! `imagelab daemon`: which workers to run (one per selected GPU by default, addressed by
//! UUID; `cpu`, `cuda:N` or a split pair `cuda:N+M` by hand), the scheduler settings from
//! config.yaml, and the daemon in the foreground until SIGINT/SIGTERM.

use crate::logging;
use anyhow::{bail, Context, Result};
use imagelab_core::config::{settings_dir, Config};
use imagelab_core::scheduler::OnRestart;
use imagelab_daemon::WorkerSpec;
use imagelab_daemon::{QueueOptions, RecoveryPolicy};
use imagelab_gpu::{GpuProbe, GpuSample, IdlePolicy, IdlePolicyConfig, NvmlProbe};
use std::process::ExitCode;

/// The idle policy from config.yaml (`gpus:` and the `scheduler:` section).
pub fn policy_config(config: &Config) -> IdlePolicyConfig {
    let s = &config.scheduler;
    IdlePolicyConfig {
        gpus: config.gpus.clone(),
        foreign_memory_floor_mib: s.foreign_memory_floor_mib,
        utilization_threshold_pct: s.utilization_threshold_pct,
        consecutive_samples: s.consecutive_samples,
        lease_grace_ms: s.lease_grace_ms,
        sample_interval_ms: s.sample_interval_ms,
        yield_immediately: s.yield_immediately,
    }
}

/// One look at the GPUs through NVML (never CUDA: the daemon itself must not create a CUDA
/// context, which would take memory on a card); `None` without NVML.
fn nvml_samples() -> Option<Vec<GpuSample>> {
    NvmlProbe::new().ok()?.snapshot().ok()
}

/// A GPU named `cuda:N` by the user, as a (UUID, CUDA_VISIBLE_DEVICES entry) pair. With
/// NVML the UUID addresses it, whatever order CUDA would enumerate in; without, the index.
fn gpu_address(index: u32, samples: Option<&[GpuSample]>) -> Result<(String, String)> {
    match samples {
        Some(samples) => match samples.iter().find(|g| g.index == index) {
            Some(gpu) => Ok((gpu.uuid.clone(), gpu.uuid.clone())),
            None => bail!(
                "--worker cuda:{index}: NVML lists no GPU {index} (it has {})",
                samples.len()
            ),
        },
        None => Ok((format!("cuda:{index}"), index.to_string())),
    }
}

fn parse_index(text: &str, whole: &str) -> Result<u32> {
    text.trim().parse().with_context(|| {
        format!("--worker {whole:?}: expected cpu, cuda:N or cuda:N+M (a split pair)")
    })
}

/// Turns `--worker` values into worker specs.
pub fn plan_workers(texts: &[String], samples: Option<&[GpuSample]>) -> Result<Vec<WorkerSpec>> {
    let mut specs: Vec<WorkerSpec> = Vec::new();
    for text in texts {
        let spec = if text.trim() == "cpu" {
            WorkerSpec::cpu("cpu")
        } else if let Some(rest) = text.trim().strip_prefix("cuda:") {
            match rest.split_once('+') {
                None => {
                    let index = parse_index(rest, text)?;
                    let (uuid, visible) = gpu_address(index, samples)?;
                    WorkerSpec::gpu(&format!("gpu{index}"), &uuid, &visible)
                }
                Some((unet, other)) => {
                    let (a, b) = (parse_index(unet, text)?, parse_index(other, text)?);
                    if a == b {
                        bail!("--worker {text:?}: a split pair needs two different GPUs");
                    }
                    let unet = gpu_address(a, samples)?;
                    let rest = gpu_address(b, samples)?;
                    WorkerSpec::pair(
                        &format!("gpu{a}+{b}"),
                        (&unet.0, &unet.1),
                        (&rest.0, &rest.1),
                    )
                }
            }
        } else {
            bail!("--worker {text:?}: expected cpu, cuda:N or cuda:N+M (a split pair)");
        };
        if let Some(clash) = specs
            .iter()
            .find(|s| s.on_gpus_shared(&spec) || s.name == spec.name)
        {
            bail!(
                "--worker {text:?}: its GPU is already used by worker {}",
                clash.name
            );
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// One worker per GPU selected in the config, as NVML lists them.
fn default_workers(config: &Config, samples: Option<&[GpuSample]>) -> Vec<WorkerSpec> {
    let (Some(samples), Ok(policy)) = (samples, IdlePolicy::new(policy_config(config))) else {
        return Vec::new();
    };
    samples
        .iter()
        .filter(|g| policy.is_selected(g))
        .map(|g| WorkerSpec::gpu(&format!("gpu{}", g.index), &g.uuid, &g.uuid))
        .collect()
}

/// Runs the daemon in the foreground.
pub fn run(worker_args: &[String], slurm: bool) -> Result<ExitCode> {
    // First, while this is the only thread: the worker children must not inherit
    // NOTIFY_SOCKET and pose as the service (NotifyAccess=main drops their messages).
    let notify = imagelab_daemon::NotifyConfig::take_from_env();
    let log = logging::init("daemon", logging::Kind::Service)?;
    let config = Config::load()?;
    let slurm = slurm || config.slurm.enabled;
    if slurm {
        config
            .slurm
            .validate()
            .map_err(|e| anyhow::anyhow!("config.yaml: {e}"))?;
    }
    let samples = nvml_samples();
    let workers = if !worker_args.is_empty() {
        plan_workers(worker_args, samples.as_deref())?
    } else if !config.workers.is_empty() {
        plan_workers(&config.workers, samples.as_deref())
            .context("the workers: list in config.yaml is not valid")?
    } else if slurm {
        Vec::new()
    } else {
        default_workers(&config, samples.as_deref())
    };
    let mut daemon =
        imagelab_daemon::DaemonConfig::from_folders(&config.folders(), &settings_dir());
    daemon.policy = policy_config(&config);
    imagelab_gpu::IdlePolicy::new(daemon.policy.clone())
        .context("the scheduler settings in config.yaml are not valid")?;
    let s = &config.scheduler;
    daemon.preview_every = s.preview_every;
    daemon.recovery = match s.on_restart {
        OnRestart::Requeue => RecoveryPolicy::Requeue,
        OnRestart::Pause => RecoveryPolicy::Pause,
    };
    daemon.queue = QueueOptions {
        default_max_attempts: s.max_attempts.max(1),
        history_limit: Some(s.history_limit),
        max_interruptions: s.max_interruptions.max(1),
    };
    daemon.instance_id = Some(log.instance_id.clone());
    daemon.workers = workers;
    daemon.worker_program = Some(std::env::current_exe()?);
    if slurm {
        daemon.slurm = Some(config.slurm.clone());
    }
    daemon.notify = notify;
    daemon.night = imagelab_daemon::night::NightOptions::from_config(&config);
    eprintln!("imagelab daemon: logging to {}", log.path.display());
    if log.journal {
        eprintln!("imagelab daemon: and to the journal");
    }
    if slurm {
        eprintln!(
            "slurm: up to {} jobs at once with --gres={}",
            config.slurm.max_submitted, config.slurm.gres
        );
    }
    if daemon.workers.is_empty() && slurm {
        eprintln!("workers: none local; Slurm runs the jobs");
    } else if daemon.workers.is_empty() {
        eprintln!(
            "note: no GPU found through NVML and no --worker given: jobs will queue but not run"
        );
    } else {
        let names: Vec<String> = daemon
            .workers
            .iter()
            .map(|w| format!("{} ({})", w.name, w.gpus.join(", ")))
            .collect();
        eprintln!("workers: {}", names.join("; "));
    }
    imagelab_daemon::run_foreground(daemon)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, uuid: &str) -> GpuSample {
        GpuSample {
            index,
            uuid: uuid.into(),
            name: "Fake".into(),
            memory_total_mib: 1,
            memory_used_mib: 0,
            memory_free_mib: 1,
            utilization_pct: Some(0),
            temperature_c: None,
            power_w: None,
            processes: Vec::new(),
        }
    }

    fn texts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn gpus_are_addressed_by_uuid_when_nvml_knows_them() {
        let samples = [gpu(0, "GPU-aaa"), gpu(1, "GPU-bbb")];
        let specs = plan_workers(&texts(&["cuda:1", "cpu"]), Some(&samples)).unwrap();
        assert_eq!(specs[0].gpus, ["GPU-bbb"]);
        assert_eq!(specs[0].cuda_visible_devices.as_deref(), Some("GPU-bbb"));
        assert_eq!(specs[1].gpus, ["cpu"]);
        let pair = plan_workers(&texts(&["cuda:0+1"]), Some(&samples)).unwrap();
        assert_eq!(pair[0].gpus, ["GPU-aaa", "GPU-bbb"]);
        assert_eq!(
            pair[0].cuda_visible_devices.as_deref(),
            Some("GPU-aaa,GPU-bbb")
        );
        assert_eq!(pair[0].args, ["--split"]);
    }

    #[test]
    fn without_nvml_indices_are_used() {
        let specs = plan_workers(&texts(&["cuda:3"]), None).unwrap();
        assert_eq!(specs[0].gpus, ["cuda:3"]);
        assert_eq!(specs[0].cuda_visible_devices.as_deref(), Some("3"));
    }

    #[test]
    fn bad_worker_values_are_named() {
        let samples = [gpu(0, "GPU-aaa")];
        for (bad, needle) in [
            ("gpu0", "gpu0"),
            ("cuda:x", "cuda:x"),
            ("cuda:5", "no GPU 5"),
            ("cuda:0+0", "two different"),
        ] {
            let err = plan_workers(&texts(&[bad]), Some(&samples))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
        let err = plan_workers(&texts(&["cuda:0", "cuda:0"]), Some(&samples))
            .unwrap_err()
            .to_string();
        assert!(err.contains("already used"), "{err}");
    }
}
