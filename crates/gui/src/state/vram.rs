//! The VRAM panel as data: for each GPU its total, used and free memory, and what each
//! loaded checkpoint's parts (UNet, VAE, text encoders) hold there, grouped by GPU. A
//! worker names devices as it sees them (`cuda:0` is the first of *its* GPUs), so parts
//! are mapped back to GPUs through the worker's UUID list; CPU parts form their own group.

use imagelab_core::events::{ComponentVram, GpuStatusView, WorkerStatus};

/// One part of a loaded checkpoint on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartLine {
    pub model: String,
    /// "UNet (checkpoint)", "VAE", "CLIP 1 (text encoder)", …
    pub label: String,
    pub bytes: u64,
}

/// One device's memory and the parts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGroup {
    /// "GPU 0 · NVIDIA H200" or "CPU (system memory)".
    pub title: String,
    /// Whole-device figures from NVML, in bytes (none for the CPU).
    pub total: Option<u64>,
    pub used: Option<u64>,
    pub parts: Vec<PartLine>,
}

impl DeviceGroup {
    pub fn free(&self) -> Option<u64> {
        Some(self.total?.saturating_sub(self.used?))
    }

    /// What our loaded parts hold on this device.
    pub fn ours(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    /// The used share for the level bar, 0 to 1.
    pub fn fraction_used(&self) -> f64 {
        match (self.total, self.used) {
            (Some(total), Some(used)) if total > 0 => (used as f64 / total as f64).clamp(0.0, 1.0),
            _ => 0.0,
        }
    }
}

/// A component name as people say it.
pub fn component_label(component: &str) -> String {
    match component {
        "unet" => "UNet (checkpoint)".into(),
        "vae" => "VAE".into(),
        // PixArt-Σ's parts: its DiT, and T5-XXL (9.5 GB in bf16, the largest part).
        "transformer" => "Transformer (checkpoint)".into(),
        "t5" => "T5 (text encoder)".into(),
        other => match other
            .strip_prefix("text_encoder_")
            .and_then(|i| i.parse::<u32>().ok())
        {
            // The engine counts encoders from 0 (SDXL: CLIP-L, then OpenCLIP-G).
            Some(i) => format!("CLIP {} (text encoder)", i + 1),
            None => other.replace('_', " "),
        },
    }
}

/// The UUID of the GPU a worker's device name means, or `None` for the CPU.
fn gpu_of<'a>(worker: &'a WorkerStatus, device: &str) -> Option<&'a str> {
    let index = match device.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest.strip_prefix(':')?.parse::<usize>().ok()?,
        None => return None,
    };
    worker.gpus.get(index).map(String::as_str)
}

const MIB: u64 = 1 << 20;

/// The panel's groups: every GPU NVML lists (even with nothing loaded), then a CPU group
/// when a part lives in system memory, then GPUs a worker names that NVML did not list.
pub fn device_groups(status: &GpuStatusView) -> Vec<DeviceGroup> {
    let mut groups: Vec<(Option<String>, DeviceGroup)> = status
        .gpus
        .iter()
        .map(|g| {
            let group = DeviceGroup {
                title: format!("GPU {} · {}", g.index, g.name),
                total: Some(g.memory_total_mib * MIB),
                used: Some(g.memory_used_mib * MIB),
                parts: Vec::new(),
            };
            (Some(g.uuid.clone()), group)
        })
        .collect();
    for worker in &status.workers {
        for part in &worker.vram {
            let key = gpu_of(worker, &part.device).map(str::to_string);
            let at = match groups.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    let title = match &key {
                        None => "CPU (system memory)".to_string(),
                        Some(uuid) => format!("GPU {uuid}"),
                    };
                    let group = DeviceGroup {
                        title,
                        total: None,
                        used: None,
                        parts: Vec::new(),
                    };
                    groups.push((key, group));
                    groups.len() - 1
                }
            };
            groups[at].1.parts.push(line(part));
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

fn line(part: &ComponentVram) -> PartLine {
    PartLine {
        model: part.model.clone(),
        label: component_label(&part.component),
        bytes: part.bytes,
    }
}

/// Bytes as people read them: `4.78 GiB`, `160 MiB`, `0 B`.
pub fn human_bytes(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else if bytes >= MIB {
        format!("{:.0} MiB", b / MIB as f64)
    } else if bytes >= 1024 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// Whether every worker runs on the CPU (or there are none): images are slow then.
pub fn cpu_only(status: &GpuStatusView) -> bool {
    status.workers.iter().all(|w| w.device == "cpu")
}

/// Whether the workers show what a Load (`load`) or Clear of `model` asked for; names
/// compare with or without `.safetensors`, as workers and the form may write them.
pub fn model_settled(workers: &[WorkerStatus], model: &str, load: bool) -> bool {
    let stem = |name: &str| name.trim_end_matches(".safetensors").to_string();
    let wanted = stem(model);
    let loaded = workers
        .iter()
        .any(|w| w.models_loaded.iter().any(|m| stem(m) == wanted));
    loaded == load
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagelab_core::events::{GpuView, WorkerState};

    #[test]
    fn a_model_change_is_settled_when_the_workers_show_it() {
        let workers = vec![worker("cpu", "cpu", &["cpu"], Vec::new())];
        assert!(model_settled(&workers, "xl", true));
        assert!(model_settled(&workers, "xl.safetensors", true));
        assert!(!model_settled(&workers, "xl", false));
        assert!(!model_settled(&workers, "sd15", true));
        assert!(model_settled(&workers, "sd15", false));
        assert!(!model_settled(&[], "xl", true));
    }

    fn gpu(index: u32, uuid: &str, used: u64) -> GpuView {
        GpuView {
            index,
            uuid: uuid.into(),
            name: "NVIDIA RTX 4090".into(),
            memory_total_mib: 24_564,
            memory_used_mib: used,
            utilization_pct: 0,
            idle: true,
            reason: None,
        }
    }

    fn part(model: &str, component: &str, device: &str, bytes: u64) -> ComponentVram {
        ComponentVram {
            model: model.into(),
            component: component.into(),
            device: device.into(),
            bytes,
        }
    }

    fn worker(name: &str, device: &str, gpus: &[&str], vram: Vec<ComponentVram>) -> WorkerStatus {
        WorkerStatus {
            name: name.into(),
            device: device.into(),
            gpus: gpus.iter().map(|g| g.to_string()).collect(),
            state: WorkerState::Idle,
            models_loaded: vec!["xl.safetensors".into()],
            vram,
            pid: None,
        }
    }

    #[test]
    fn a_split_pair_shows_each_part_on_its_gpu() {
        let status = GpuStatusView {
            nvml_error: None,
            gpus: vec![gpu(0, "GPU-a", 6000), gpu(1, "GPU-b", 2000)],
            workers: vec![worker(
                "gpu0+1",
                "cuda",
                &["GPU-a", "GPU-b"],
                vec![
                    part("xl.safetensors", "unet", "cuda:0", 5 << 30),
                    part("xl.safetensors", "text_encoder_0", "cuda:1", 246 << 20),
                    part("xl.safetensors", "text_encoder_1", "cuda:1", 1390 << 20),
                    part("xl.safetensors", "vae", "cuda:1", 160 << 20),
                ],
            )],
            ..Default::default()
        };
        let groups = device_groups(&status);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].title, "GPU 0 · NVIDIA RTX 4090");
        assert_eq!(groups[0].parts.len(), 1);
        assert_eq!(groups[0].parts[0].label, "UNet (checkpoint)");
        let labels: Vec<&str> = groups[1].parts.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(
            labels,
            ["CLIP 1 (text encoder)", "CLIP 2 (text encoder)", "VAE"]
        );
        assert_eq!(groups[1].ours(), (246 + 1390 + 160) << 20);
        assert_eq!(groups[0].free(), Some((24_564 - 6000) * MIB));
        assert!((groups[1].fraction_used() - 2000.0 / 24_564.0).abs() < 1e-9);
    }

    #[test]
    fn two_workers_map_their_own_cuda_0_to_different_gpus() {
        let status = GpuStatusView {
            nvml_error: None,
            gpus: vec![gpu(0, "GPU-a", 0), gpu(1, "GPU-b", 0)],
            workers: vec![
                worker(
                    "gpu1",
                    "cuda",
                    &["GPU-b"],
                    vec![part("b.safetensors", "unet", "cuda:0", 7)],
                ),
                worker(
                    "gpu0",
                    "cuda",
                    &["GPU-a"],
                    vec![part("a.safetensors", "unet", "cuda", 9)],
                ),
            ],
            ..Default::default()
        };
        let groups = device_groups(&status);
        assert_eq!(groups[0].parts[0].model, "a.safetensors");
        assert_eq!(groups[1].parts[0].model, "b.safetensors");
    }

    #[test]
    fn cpu_parts_have_a_group_without_device_totals() {
        let status = GpuStatusView {
            nvml_error: Some("no libnvidia-ml".into()),
            gpus: vec![],
            workers: vec![worker(
                "cpu",
                "cpu",
                &["cpu"],
                vec![part("m", "unet", "cpu", 3 << 20)],
            )],
            ..Default::default()
        };
        let groups = device_groups(&status);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].title, "CPU (system memory)");
        assert_eq!((groups[0].total, groups[0].free()), (None, None));
        assert!(cpu_only(&status));
        assert_eq!(human_bytes(3 << 20), "3 MiB");
        assert_eq!(human_bytes(5 << 30), "5.00 GiB");
        assert_eq!(human_bytes(12), "12 B");
    }

    #[test]
    fn pixart_parts_are_labelled_as_people_say_them() {
        let labels: Vec<String> = ["transformer", "t5", "vae", "text_encoder_1", "odd_part"]
            .iter()
            .map(|c| component_label(c))
            .collect();
        assert_eq!(
            labels,
            [
                "Transformer (checkpoint)",
                "T5 (text encoder)",
                "VAE",
                "CLIP 2 (text encoder)",
                "odd part"
            ]
        );
    }
}
